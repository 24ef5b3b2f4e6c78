"""Long SIGKILL campaign: gatewayd's Store against TinyDB's stock JSONStorage.

Run from the repository root: ``python3 bench/crash.py [--kills 2000] [--seed 3103] [--dir DIR]``.
The same harness as tests/test_crash.py (tests/crash_child.py), with more kills
and a choice of directory (put it on the flash or disk of the board under test:
fsync cost decides how often a kill lands inside a write). Prints a markdown
table; exit status 1 if the Store ever left a file it refuses or broke an
invariant (code rolled back, counter lowered, temporary file kept).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ is not installed

from tests.crash_child import run_stock_campaign, run_store_campaign


def main(argv: list[str] | None = None) -> int:
    """Run both campaigns and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kills", type=int, default=2000, help="SIGKILLs per storage")
    parser.add_argument("--seed", type=int, default=3103)
    parser.add_argument("--dir", type=Path, help="where the state files live (default: a temp)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # one stale-temp-file warning per kill otherwise

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="gatewayd-crash-") as tmp:
        started = time.monotonic()
        (Path(tmp) / "store").mkdir()
        (Path(tmp) / "stock").mkdir()
        ours = run_store_campaign(Path(tmp) / "store", args.kills, args.seed)
        stock = run_stock_campaign(Path(tmp) / "stock", args.kills, args.seed)
        elapsed = time.monotonic() - started

    print(f"{args.kills} SIGKILLs per storage, 0-50 ms after the worker is ready ({elapsed:.0f} s)")
    print()
    print("| storage | kills | mid-operation | unparsable after kill | stale temp removed |")
    print("|---|---|---|---|---|")
    print(
        f"| gatewayd AtomicJSONStorage | {ours.kills} | {ours.in_flight} "
        f"| {ours.unparsable} | {ours.stale_temp_files} |"
    )
    print(
        f"| TinyDB stock JSONStorage | {stock.kills} | {stock.in_flight} "
        f"| {stock.unparsable} ({100 * stock.unparsable / max(stock.kills, 1):.1f}%) | - |"
    )
    print()
    print(
        "Store operations confirmed between kills: "
        + ", ".join(f"{word} {count}" for word, count in sorted(ours.confirmed.items()))
        + f"; in-flight operations found complete after the kill: {ours.landed}"
    )
    for violation in ours.violations:
        print(f"VIOLATION {violation}")
    return 1 if ours.violations or ours.unparsable else 0


if __name__ == "__main__":
    sys.exit(main())
