"""The sim daemon on a board five times slower: a CPU quota beside an unthrottled run.

    python3 bench/slow_board.py [--quota 20] [--keys 60] [--checks 5] [--idle-seconds 20]

The throttled daemon joins a CPU cgroup before it execs (cgroup v2 ``cpu.max``, or v1
``cpu.cfs_quota_us``), ``--quota`` percent of one core in 10 ms periods (20 %: 2 ms per
10 ms, about the box's ARM SoC); the benchmark itself runs unthrottled. One table:
exec -> READY, RSS after start, key -> prompt p99, code check (last key -> verdict) at the
shipped ``scrypt_n`` and at the one ``gatewayd selftest`` fits under the same quota, a
control-socket ``status`` answered while a check runs (the loop does not stall), the
create flow's wall time, idle CPU and wake-ups. When the
machine does not let this process create a cgroup it says so and exits 0. gatewayd is
byte-compiled first, as the package installs it (``PYTHONDONTWRITEBYTECODE`` would
otherwise make every start compile every module).
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.daemon import FifoTap, _proc_times, key_latencies
from tests.daemon_process import DaemonProcess, make_profile

PERIOD_US = 10_000
V2_ROOT = Path("/sys/fs/cgroup")
V1_ROOT = Path("/sys/fs/cgroup/cpu")
CODE = "4739"
WRONG = "5827"
#: The shipped cost, not the tests' cheap one: the check is what the board pays.
SHIPPED_N = 16384


class Cgroup:
    """A CPU cgroup limited to ``percent`` of one core; :meth:`join` runs in the child."""

    def __init__(self, percent: float) -> None:
        quota = max(1000, round(PERIOD_US * percent / 100))
        name = f"gatewayd-slow-board-{os.getpid()}"
        errors = []
        for make in (self._v2, self._v1):
            try:
                self.path, self.procs = make(name, quota)
                return
            except OSError as exc:
                errors.append(str(exc))
        raise OSError("; ".join(errors))

    @staticmethod
    def _v2(name: str, quota: int) -> tuple[Path, Path]:
        if "cpu" not in (V2_ROOT / "cgroup.controllers").read_text().split():
            raise OSError(f"{V2_ROOT}: no cpu controller (cgroup v2)")
        path = V2_ROOT / name
        path.mkdir()
        (path / "cpu.max").write_text(f"{quota} {PERIOD_US}\n")
        return path, path / "cgroup.procs"

    @staticmethod
    def _v1(name: str, quota: int) -> tuple[Path, Path]:
        path = V1_ROOT / name
        path.mkdir()
        (path / "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
        (path / "cpu.cfs_quota_us").write_text(f"{quota}\n")
        return path, path / "cgroup.procs"

    def join(self) -> None:
        """Move the calling process (the daemon, between fork and exec) into the group."""
        self.procs.write_text("0\n")

    def remove(self) -> None:
        self.path.rmdir()


@contextmanager
def running(
    join: Callable[[], None] | None,
    scrypt_n: int = SHIPPED_N,
    replace: dict[str, str] | None = None,
) -> Iterator[DaemonProcess]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cost = {"scrypt_n = 16384": f"scrypt_n = {scrypt_n}"}
        daemon = DaemonProcess(tmp, make_profile(tmp, **cost, **(replace or {})))
        daemon.start(preexec_fn=join)
        try:
            yield daemon
        finally:
            daemon.stop()


def ready_and_rss(join: Callable[[], None] | None, runs: int) -> tuple[float, float]:
    readies, rss = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        with running(join) as daemon:
            readies.append((time.perf_counter() - t0) * 1000)
            assert daemon.proc is not None
            status = Path(f"/proc/{daemon.proc.pid}/status").read_text()
            rss += [int(line.split()[1]) / 1024 for line in status.splitlines() if "VmRSS" in line]
    return statistics.median(readies), statistics.median(rss)


def key_latency_p99(join: Callable[[], None] | None, keys: int) -> float:
    with tempfile.TemporaryDirectory() as tap_dir:
        tap = FifoTap(Path(tap_dir) / "tap.fifo")
        playback = {'playback = "null"': f"playback = \"file:FILE='{tap.path}',FORMAT=raw\""}
        with running(join, replace=playback) as daemon:
            latencies = key_latencies(daemon, tap, keys)
    return latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]


def create_code(daemon: DaemonProcess) -> float:
    """The create flow of tests/test_daemon_e2e.py; its wall time in ms, to the stored code."""
    events = daemon.events()
    t0 = time.perf_counter()
    for command in ("handset offhook", "handset press 3103", "handset press 321"):
        assert daemon.sim(command) == "ok", command
    assert daemon.sim(f"handset press {CODE}#") == "ok"
    assert daemon.sim("handset press 1") == "ok"
    events.wait_for(lambda e: e["type"] == "code", timeout=60)
    wall = (time.perf_counter() - t0) * 1000
    assert daemon.sim("handset onhook") == "ok"
    events.close()
    return wall


def code_checks(daemon: DaemonProcess, checks: int) -> tuple[list[float], list[float]]:
    """Last key ('#') sent -> the ``auth`` verdict, in ms (remote calls, right and wrong codes),
    and the round trips of a ``status`` on the control socket answered while the check ran."""
    times, status_ms = [], []
    for i in range(checks):
        events = daemon.events()
        mark = events.mark()
        assert daemon.sim("remote call") == "ok"
        assert daemon.sim("remote press *") == "ok"
        events.wait_for(lambda e: e.get("state") == "code_check", after=mark, timeout=60)
        assert daemon.sim(f"remote press {WRONG if i % 2 else CODE}") == "ok"
        sent = time.monotonic()
        assert daemon.sim("remote press #") == "ok"
        asked = time.perf_counter()
        answer = daemon.ctl("status")
        if "menu: code_check" in answer:  # answered before the verdict: the loop was free
            status_ms.append((time.perf_counter() - asked) * 1000)
        verdict = events.wait_for(lambda e: e["type"] == "auth", after=mark, timeout=60)
        times.append((verdict["t"] - sent) * 1000)
        assert daemon.sim("remote hangup") == "ok"
        events.wait_for(lambda e: e["type"] == "call" and e["state"] == "end", after=mark)
        events.close()
    return times, status_ms


def fitted_here(join: Callable[[], None] | None) -> int:
    """The ``scrypt_n`` that ``gatewayd selftest`` would fit on this board (same quota)."""
    script = (
        "from gatewayd.voicemail.hashing import fitted_n, time_one_check\n"
        f"print(fitted_n(time_one_check({SHIPPED_N}, 8, 1), {SHIPPED_N}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=join,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return int(out.stdout)


def idle(join: Callable[[], None] | None, seconds: float) -> tuple[float, float]:
    with running(join) as daemon:
        assert daemon.proc is not None
        time.sleep(1.0)  # let start-up settle
        cpu0, sw0 = _proc_times(daemon.proc.pid)
        time.sleep(seconds)
        cpu1, sw1 = _proc_times(daemon.proc.pid)
    return (cpu1 - cpu0) / seconds * 100, (sw1 - sw0) / seconds


def measure(join: Callable[[], None] | None, args: argparse.Namespace) -> dict[str, str]:
    ready, rss = ready_and_rss(join, args.starts)
    p99 = key_latency_p99(join, args.keys)
    with running(join) as daemon:
        create = create_code(daemon)
        checks, status_ms = code_checks(daemon, args.checks)
    fitted = fitted_here(join)
    with running(join, scrypt_n=fitted) as daemon:
        create_code(daemon)
        fitted_checks, fitted_status = code_checks(daemon, args.checks)
    cpu, wakeups = idle(join, args.idle_seconds)
    return {
        "exec -> READY (median)": f"{ready:.0f} ms",
        "RSS after start (median)": f"{rss:.1f} MB",
        f"key -> prompt p99 ({args.keys} keys)": f"{p99:.1f} ms",
        f"code check, last key -> verdict ({args.checks}, max), scrypt_n {SHIPPED_N}": (
            f"{max(checks):.0f} ms"
        ),
        "code check, same, at the fitted scrypt_n (selftest's choice on this board)": (
            f"{max(fitted_checks):.0f} ms (n = {fitted})"
        ),
        "ctl `status` answered while the comparison ran (of the checks, max)": (
            f"{len(status_ms + fitted_status)} of {2 * args.checks}, "
            f"{max(status_ms + fitted_status, default=0):.0f} ms"
        ),
        "create flow wall time": f"{create:.0f} ms",
        f"idle CPU, wake-ups ({args.idle_seconds:.0f} s)": f"{cpu:.3f} %, {wakeups:.2f}/s",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quota", type=float, default=20.0, help="percent of one core")
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--keys", type=int, default=60)
    parser.add_argument("--checks", type=int, default=5)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    args = parser.parse_args()
    # As installed on the box (the Debian package byte-compiles): no compiling at each start.
    compileall.compile_dir(Path(__file__).resolve().parent.parent / "gatewayd", quiet=1)
    try:
        group = Cgroup(args.quota)
    except OSError as exc:
        print(f"slow_board: cannot create a CPU cgroup here ({exc}); nothing measured.")
        print("Run as root on a host with cgroup v2 (cpu controller) or v1 cpu mounted.")
        return 0
    try:
        fast = measure(None, args)
        slow = measure(group.join, args)
    finally:
        group.remove()
    print(f"| sim daemon | unthrottled | {args.quota:.0f} % of one core |")
    print("|---|---:|---:|")
    for row, value in fast.items():
        print(f"| {row} | {value} | {slow[row]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
