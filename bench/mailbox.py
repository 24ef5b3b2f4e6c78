"""Benchmarks of the mailbox through the running daemon (sim profile; numbers go in README).

    python3 bench/mailbox.py [latency|idle|listen|all] [--calls 10] [--idle-seconds 30]

- latency: a caller leaves a message (``remote say``), hangs up; the time from the hang-up
  command being answered to the message being listed by ``messages --json`` on ctl.sock
  (goal <= 1 s); p50 and max over N calls.
- idle: CPU and wake-ups of an idle daemon with an empty mailbox and with 30 stored
  messages (goal: unchanged, 0 wake-ups/s).
- listen: with 30 messages stored, main menu ``1`` -> first audio of the summary (goal
  <= 100 ms), a key during a message (replay) -> first audio of the message (p99 <= 40 ms),
  and RSS with 30 messages against an empty mailbox (no message audio held).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import wave
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.daemon import FifoTap, _proc_times, first_sound, rss_mb
from gatewayd.prompts import PromptCatalogue, default_audio_dir
from gatewayd.voicemail.messages import MessageStore
from tests.daemon_process import REPO, DaemonProcess, make_profile

CALLER_WAV = REPO / "audio" / "demo" / "caller_message.wav"
#: Tests and benches end a message quickly when the caller falls silent.
QUICK = {"max_silence_s = 10.0": "max_silence_s = 2.0"}


def _listed(daemon: DaemonProcess) -> int:
    return len(json.loads(daemon.ctl("messages --json")))


def bench_latency(calls: int) -> str:
    latencies = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        daemon = DaemonProcess(tmp, make_profile(tmp, **QUICK)).start()
        events = daemon.events()
        try:
            for n in range(calls):
                mark = events.mark()
                assert daemon.sim("remote call") == "ok"
                beep = events.wait_for(lambda e: e.get("id") == "beep", after=mark)
                events.wait_for(lambda e: e["type"] == "prompt_end", after=events.index_of(beep))
                assert daemon.sim(f"remote say {CALLER_WAV}") == "ok"
                assert daemon.sim("remote hangup") == "ok"
                t0 = time.perf_counter()
                while _listed(daemon) < n + 1:
                    time.sleep(0.002)
                latencies.append((time.perf_counter() - t0) * 1000)
        finally:
            events.close()
            daemon.stop()
    p50, worst = statistics.median(latencies), max(latencies)
    verdict = "met" if worst <= 1000 else "MISSED"
    return (
        f"| hang-up -> message listed ({calls} calls) | {p50:.1f} ms median, {worst:.1f} ms max "
        f"| <= 1 s: {verdict} |"
    )


def _fill(state_dir: Path, count: int) -> None:
    with wave.open(str(CALLER_WAV), "rb") as wav:
        pcm = wav.readframes(wav.getnframes())
    with MessageStore(state_dir) as store:
        for _ in range(count):
            writer = store.writer(None)
            writer.write(pcm)
            writer.finish()


def bench_idle(seconds: float, messages: int) -> str:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        _fill(tmp / "state", messages)
        daemon = DaemonProcess(tmp, make_profile(tmp)).start()
        assert daemon.proc is not None
        try:
            assert _listed(daemon) == messages
            time.sleep(1.0)
            cpu0, sw0 = _proc_times(daemon.proc.pid)
            time.sleep(seconds)
            cpu1, sw1 = _proc_times(daemon.proc.pid)
        finally:
            daemon.stop()
    cpu_pct = (cpu1 - cpu0) / seconds * 100
    wakeups = (sw1 - sw0) / seconds
    verdict = "met" if wakeups <= 0.1 else "MISSED"
    return (
        f"| idle, {messages} messages stored, {seconds:.0f} s | {cpu_pct:.3f} % of a core, "
        f"{wakeups:.2f} wake-ups/s | 0 wake-ups/s: {verdict} |"
    )


def bench_listen(keys: int) -> list[str]:
    catalogue = PromptCatalogue.load(default_audio_dir(), "fr")
    with wave.open(str(CALLER_WAV), "rb") as wav:
        message_start = first_sound(wav.readframes(wav.getnframes()))
    summary_start = first_sound(catalogue.pcm("summary_you_have"))
    with tempfile.TemporaryDirectory() as empty_name:
        empty = Path(empty_name)
        daemon = DaemonProcess(empty, make_profile(empty)).start()
        assert daemon.proc is not None
        rss_empty = rss_mb(daemon.proc.pid)
        daemon.stop()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        _fill(tmp / "state", 30)
        tap = FifoTap(tmp / "tap.fifo")
        profile = make_profile(
            tmp, **{'playback = "null"': f"playback = \"file:FILE='{tap.path}',FORMAT=raw\""}
        )
        daemon = DaemonProcess(tmp, profile).start()
        assert daemon.proc is not None
        rss_full = rss_mb(daemon.proc.pid)
        try:
            assert daemon.sim("handset offhook") == "ok"
            assert daemon.sim("handset press 3103") == "ok"
            start = tap.size()
            sent = time.perf_counter()
            assert daemon.sim("handset press 1") == "ok"
            heard, _ = tap.wait_for(summary_start, start)
            summary_ms = (heard - sent) * 1000
            tap.wait_for(message_start, start, timeout=30)
            latencies = []
            for _ in range(keys):
                start = tap.size()
                sent = time.perf_counter()
                assert daemon.sim("handset press 1") == "ok"  # replay, during the message
                heard, _ = tap.wait_for(message_start, start)
                latencies.append((heard - sent) * 1000)
            rss_listening = rss_mb(daemon.proc.pid)
        finally:
            daemon.stop()
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return [
        f"| main menu 1 -> first audio of the summary, 30 messages | {summary_ms:.1f} ms "
        f"| <= 100 ms: {'met' if summary_ms <= 100 else 'MISSED'} |",
        f"| key during a message -> message audio ({keys} replays) | p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms | p99 <= 40 ms: {'met' if p99 <= 40 else 'MISSED'} |",
        f"| RSS: empty mailbox / 30 messages / listening | {rss_empty:.1f} / {rss_full:.1f} / "
        f"{rss_listening:.1f} MB | no message audio held beyond what plays |",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "what", nargs="?", default="all", choices=["latency", "idle", "listen", "all"]
    )
    parser.add_argument("--keys", type=int, default=50)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    args = parser.parse_args()
    rows = []
    if args.what in ("latency", "all"):
        rows.append(bench_latency(args.calls))
    if args.what in ("listen", "all"):
        rows.extend(bench_listen(args.keys))
    if args.what in ("idle", "all"):
        rows.append(bench_idle(args.idle_seconds, 0))
        rows.append(bench_idle(args.idle_seconds, 30))
    print("| benchmark | result | target |")
    print("|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
