"""Time of one code check on a real state file, at the policy's scrypt cost and cheaper ones.

Run from the repository root: ``python3 bench/verify.py [--n 16384] [--runs 50]``.
A check is what a caller waits for after ``#``: the durable count (one atomic
file replacement with fsyncs), the peppered scrypt, then the clearing write
(right code) or the audit write (wrong code). The state file holds a full audit
table (``AUDIT_MAX`` records), as on a box in service, so each write is the
largest it gets. Wrong-code runs reset the mailbox and set the code again
between runs, outside the timing, so no cool-down refuses the next check.
Right, wrong and scrypt-alone runs are interleaved, so a busy machine slows
all columns alike; the load average is printed with the table.

Prints a markdown table row per scrypt cost; exit status 1 if the median at
the default cost (``Policy().scrypt_n``) is over ``--target-ms`` (150 ms).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

try:
    import gatewayd  # noqa: F401
except ModuleNotFoundError:  # run from a checkout that is not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatewayd.voicemail.config import Policy
from gatewayd.voicemail.hashing import CodeHasher
from gatewayd.voicemail.policy import HANDSET, SecretCodeService
from gatewayd.voicemail.store import AUDIT_MAX, Store

CODE, WRONG_CODE = "4931", "1111"
WARM_UP_RUNS = 2
TARGET_MS = 150.0


@dataclasses.dataclass(frozen=True)
class Row:
    """Timings at one scrypt cost, in milliseconds."""

    n: int
    right: list[float]
    wrong: list[float]
    scrypt: list[float]
    state_bytes: int


def p90(samples: list[float]) -> float:
    """90th percentile (inclusive method: a value between two samples, never beyond the max)."""
    return statistics.quantiles(samples, n=10, method="inclusive")[8]


def timed(action: Callable[[], object]) -> float:
    """Milliseconds one call of ``action`` takes."""
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000.0


def measure(n: int, runs: int, directory: Path) -> Row:
    """Check timings at scrypt cost ``n`` on a state file in ``directory``."""
    policy = dataclasses.replace(Policy(), scrypt_n=n)
    hasher = CodeHasher(secrets.token_bytes(32), n=n, r=policy.scrypt_r, p=policy.scrypt_p)
    path = directory / f"state-n{n}.json"
    with Store(path) as store:
        with store.transaction():
            for i in range(AUDIT_MAX):
                store.audit("failure", "remote", failures=i % 3 + 1)
        service = SecretCodeService(store, hasher, policy, time.monotonic)
        service.set_code(CODE, HANDSET)

        def right() -> None:
            if not service.check(CODE, "remote").ok:
                raise RuntimeError("the right code was refused")

        def wrong() -> None:
            if service.check(WRONG_CODE, "remote").ok:
                raise RuntimeError("a wrong code was accepted")

        salt = hasher.new_salt()
        right_ms: list[float] = []
        wrong_ms: list[float] = []
        scrypt_ms: list[float] = []
        # Interleaved, so a busy neighbour slows all three columns alike.
        for _ in range(WARM_UP_RUNS + runs):
            right_ms.append(timed(right))
            wrong_ms.append(timed(wrong))
            service.reset("bench")  # outside the timing: back to a code and no failures
            service.set_code(CODE, HANDSET)
            scrypt_ms.append(timed(lambda: hasher.hash(CODE, salt)))
        for samples in (right_ms, wrong_ms, scrypt_ms):
            del samples[:WARM_UP_RUNS]
        state_bytes = path.stat().st_size
    return Row(n, right_ms, wrong_ms, scrypt_ms, state_bytes)


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, or the machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main(argv: list[str] | None = None) -> int:
    """Measure and print the table; 1 if the default cost misses the target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--n",
        type=int,
        action="append",
        help="scrypt n to measure (repeatable; default: the policy's, 2**13 and 2**12)",
    )
    parser.add_argument("--runs", type=int, default=50, help="timed checks per code and cost")
    parser.add_argument("--dir", type=Path, help="directory for the state files (default: a temp)")
    parser.add_argument("--target-ms", type=float, default=TARGET_MS)
    args = parser.parse_args(argv)
    default_n = Policy().scrypt_n
    costs = args.n or [default_n, 2**13, 2**12]
    logging.basicConfig(level=logging.ERROR)  # the wrong-code warnings are the point, not news

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="gatewayd-verify-") as tmp:
        rows = [measure(n, args.runs, Path(tmp)) for n in costs]

    load = os.getloadavg()[0]
    print(
        f"CPU: {cpu_name()} ({os.cpu_count()} cores, load {load:.1f}), "
        f"Python {platform.python_version()}, {args.runs} runs per cell"
    )
    print()
    print(
        "| scrypt n | right code median | right p90 | wrong code median | wrong p90 "
        "| scrypt alone median | state file |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| 2**{row.n.bit_length() - 1}{' (default)' if row.n == default_n else ''} "
            f"| {statistics.median(row.right):.1f} ms | {p90(row.right):.1f} ms "
            f"| {statistics.median(row.wrong):.1f} ms | {p90(row.wrong):.1f} ms "
            f"| {statistics.median(row.scrypt):.1f} ms | {row.state_bytes / 1024:.0f} KiB |"
        )
    missed = [
        row
        for row in rows
        if row.n == default_n
        and max(statistics.median(row.right), statistics.median(row.wrong)) > args.target_ms
    ]
    if missed:
        print(f"\nmedian over the {args.target_ms:.0f} ms target at the default cost")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
