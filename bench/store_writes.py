"""Bytes written to storage per change of the secrets (flash wear), for each kind of change.

Run from the repository root: ``python3 bench/store_writes.py [--audit N]``.
Opens a state file holding ``N`` audit records (default: the cap, as on a box
in service for a while), then counts the bytes ``os.write`` sends and the
fsyncs made by each operation of the code policy. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ is not installed

from gatewayd.voicemail.hashing import CodeHasher
from gatewayd.voicemail.policy import HANDSET, SecretCodeService
from gatewayd.voicemail.repository import AUDIT_MAX
from gatewayd.voicemail.store import Store
from tests.conftest import FAST_POLICY, TEST_PEPPER
from tests.harness import FakeClock


@contextmanager
def counting() -> Iterator[list[int]]:
    """Count bytes written and fsyncs made while inside: yields ``[bytes, fsyncs]``."""
    counts = [0, 0]
    real_write, real_fsync = os.write, os.fsync

    def write(fd: int, data: bytes | memoryview) -> int:
        written = real_write(fd, data)
        counts[0] += written
        return written

    def fsync(fd: int) -> None:
        counts[1] += 1
        real_fsync(fd)

    os.write, os.fsync = write, fsync  # type: ignore[assignment]
    try:
        yield counts
    finally:
        os.write, os.fsync = real_write, real_fsync


def main(argv: list[str] | None = None) -> int:
    """Measure each operation once and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--audit", type=int, default=AUDIT_MAX, help="audit records beforehand")
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)  # the policy's wrong-code warnings would only be noise
    hasher = CodeHasher(TEST_PEPPER, n=FAST_POLICY.scrypt_n)
    with tempfile.TemporaryDirectory(prefix="gatewayd-writes-") as tmp:
        path = Path(tmp) / "gatewayd.json"
        with Store(path) as store:
            with store.transaction():
                for n in range(args.audit):
                    store.audit("failure", "remote", failures=n % 10 + 1)
            service = SecretCodeService(store, hasher, FAST_POLICY, FakeClock())
            operations: list[tuple[str, Callable[[], object]]] = [
                ("create the code", lambda: service.set_code("4931", HANDSET)),
                ("wrong code", lambda: service.check("1111", "remote")),
                ("right code", lambda: service.check("4931", "remote")),
                ("protection on", lambda: service.set_protection(True, HANDSET)),
                ("reset", lambda: service.reset("console")),
            ]
            sizes = ", ".join(
                f"{p.name} {p.stat().st_size} bytes" for p in sorted(path.parent.iterdir())
            )
            print(f"{args.audit} audit records; files: {sizes}\n")
            print("| operation | bytes written | fsyncs |")
            print("|---|---:|---:|")
            for name, operation in operations:
                with counting() as counts:
                    operation()
                print(f"| {name} | {counts[0]} | {counts[1]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
