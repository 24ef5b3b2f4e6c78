"""Benchmarks of the running daemon on the sim profile (not tests; numbers go in README).

    python3 bench/daemon.py [latency|idle|rss|ready|all] [--keys 200] [--idle-seconds 60]

- latency: a key sent on sim.sock -> the first audio of the prompt it causes, read
  live from a FIFO that ALSA's ``file`` plugin writes into; p50/p99 over N keys.
- idle: CPU use and wake-ups (context switches of all threads) over S seconds idle.
- rss: resident memory after start.
- ready: exec to sd_notify READY=1 (so no heavy import on the start path).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gatewayd.prompts import PromptCatalogue, default_audio_dir
from tests.daemon_process import DaemonProcess, make_profile

PERIOD = 320  # bytes: 20 ms at 8 kHz S16 mono
TICKS = os.sysconf("SC_CLK_TCK")


class FifoTap:
    """Reads what the daemon's ALSA ``file`` plugin writes, timestamping each chunk."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self.data = bytearray()
        self.stamps: list[tuple[float, int]] = []  # (time, length of data after this chunk)
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        fd = os.open(self.path, os.O_RDONLY)  # blocks until ALSA opens it for writing
        while chunk := os.read(fd, 65536):
            now = time.perf_counter()
            with self._cond:
                self.data += chunk
                self.stamps.append((now, len(self.data)))
                self._cond.notify_all()
        os.close(fd)

    def wait_for(self, needle: bytes, start: int, timeout: float = 5.0) -> tuple[float, int]:
        """When (perf_counter) the first chunk holding ``needle`` after ``start`` arrived."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                at = self.data.find(needle, start)
                if at >= 0:
                    end = at + len(needle)
                    stamp = next(t for t, length in self.stamps if length >= end)
                    return stamp, end
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("prompt never reached the tap")
                self._cond.wait(left)

    def size(self) -> int:
        with self._cond:
            return len(self.data)


def first_sound(pcm: bytes) -> bytes:
    """The first period that is not silence (prompts start with a little silence)."""
    for off in range(0, len(pcm) - PERIOD, PERIOD):
        chunk = pcm[off : off + PERIOD]
        if chunk.strip(b"\0"):
            return chunk
    raise ValueError("silent prompt")


def key_latencies(daemon: DaemonProcess, tap: FifoTap, keys: int) -> list[float]:
    """``keys`` menu keys (3, *, 3...) on the handset: ms from each key to its prompt's sound.

    The daemon plays into ``tap`` (ALSA's ``file`` plugin); sorted, for percentiles.
    """
    catalogue = PromptCatalogue.load(default_audio_dir(), "fr")
    targets = {
        "3": first_sound(catalogue.pcm("personalise_menu")),
        "*": first_sound(catalogue.pcm("main_menu")),
    }
    assert daemon.sim("handset offhook") == "ok"
    assert daemon.sim("handset press 3103") == "ok"
    tap.wait_for(targets["*"], 0, timeout=30)
    latencies = []
    for i in range(keys):
        key = "3" if i % 2 == 0 else "*"
        start = tap.size()
        sent = time.perf_counter()
        assert daemon.sim(f"handset press {key}") == "ok"
        heard, _ = tap.wait_for(targets[key], start, timeout=30)
        latencies.append((heard - sent) * 1000)
    return sorted(latencies)


def bench_latency(keys: int) -> str:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        tap = FifoTap(tmp / "tap.fifo")
        profile = make_profile(
            tmp, **{'playback = "null"': f"playback = \"file:FILE='{tap.path}',FORMAT=raw\""}
        )
        daemon = DaemonProcess(tmp, profile).start()
        try:
            latencies = key_latencies(daemon, tap, keys)
        finally:
            daemon.stop()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    verdict = "met" if p99 <= 40 else "MISSED"
    return (
        f"| key-to-audio latency ({keys} keys) | p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
        f"max {latencies[-1]:.1f} ms | p99 <= 40 ms: {verdict} |"
    )


def _proc_times(pid: int) -> tuple[float, int]:
    """CPU seconds and context switches (all threads) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS
    switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                switches += int(line.split()[1])
    return cpu, switches


def bench_idle(seconds: float) -> str:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        daemon = DaemonProcess(tmp, make_profile(tmp)).start()
        assert daemon.proc is not None
        try:
            time.sleep(1.0)  # let start-up settle
            cpu0, sw0 = _proc_times(daemon.proc.pid)
            time.sleep(seconds)
            cpu1, sw1 = _proc_times(daemon.proc.pid)
        finally:
            daemon.stop()
    cpu_pct = (cpu1 - cpu0) / seconds * 100
    wakeups = (sw1 - sw0) / seconds
    verdict = "met" if cpu_pct <= 0.2 and wakeups <= 2 else "MISSED"
    return (
        f"| idle CPU over {seconds:.0f} s | {cpu_pct:.3f} % of a core, {wakeups:.2f} wake-ups/s "
        f"| <= 0.2 %, <= 2 wake-ups/s: {verdict} |"
    )


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def bench_rss_and_ready(runs: int = 10) -> list[str]:
    readies, rss = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            profile = make_profile(tmp)
            daemon = DaemonProcess(tmp, profile)
            t0 = time.perf_counter()
            daemon.start()
            readies.append((time.perf_counter() - t0) * 1000)
            assert daemon.proc is not None
            rss.append(rss_mb(daemon.proc.pid))
            daemon.stop()
    ready = statistics.median(readies)
    mem = max(rss)
    return [
        f"| RSS after start ({runs} starts) | {statistics.median(rss):.1f} MB median, "
        f"{mem:.1f} MB max | <= 35 MB: {'met' if mem <= 35 else 'MISSED'} |",
        f"| exec to READY=1 ({runs} starts) | {ready:.0f} ms median, {max(readies):.0f} ms max "
        f"| <= 800 ms: {'met' if ready <= 800 else 'MISSED'} |",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "what", nargs="?", default="all", choices=["latency", "idle", "rss", "ready", "all"]
    )
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    args = parser.parse_args()
    rows = []
    if args.what in ("latency", "all"):
        rows.append(bench_latency(args.keys))
    if args.what in ("rss", "ready", "all"):
        rows.extend(bench_rss_and_ready())
    if args.what in ("idle", "all"):
        rows.append(bench_idle(args.idle_seconds))
    print("| benchmark | result | target |")
    print("|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
