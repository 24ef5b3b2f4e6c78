"""Benchmarks of the mailbox through the running daemon (sim profile; numbers go in README).

    python3 bench/mailbox.py [latency|idle|all] [--calls 10] [--idle-seconds 30]

- latency: a caller leaves a message (``remote say``), hangs up; the time from the hang-up
  command being answered to the message being listed by ``messages --json`` on ctl.sock
  (goal <= 1 s); p50 and max over N calls.
- idle: CPU and wake-ups of an idle daemon with an empty mailbox and with 30 stored
  messages (goal: unchanged, 0 wake-ups/s).
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

from bench.daemon import _proc_times
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", default="all", choices=["latency", "idle", "all"])
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    args = parser.parse_args()
    rows = []
    if args.what in ("latency", "all"):
        rows.append(bench_latency(args.calls))
    if args.what in ("idle", "all"):
        rows.append(bench_idle(args.idle_seconds, 0))
        rows.append(bench_idle(args.idle_seconds, 30))
    print("| benchmark | result | target |")
    print("|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
