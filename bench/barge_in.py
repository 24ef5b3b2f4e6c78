"""Barge-in latency of the ALSA player: stop a long prompt at random moments.

Run from the repository root: ``python3 bench/barge_in.py [--stops 200] [--seed 1]``.
For each device (``null``, and a ``file:`` device writing a raw capture) it plays
a 30 s prompt, calls ``stop()`` at a random moment, and measures:

- periods written ahead of real time when stop() was called (what a device that
  cannot drop would still play; the target is at most 3 periods = 60 ms),
- how long ``stop()`` takes to return to its caller,
- how long until the player thread has dropped the PCM,
- periods written after the stop() call (a write already in progress).

Exit status 1 if any stop found more than ``max_ahead_periods`` periods ahead.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

try:
    import gatewayd  # noqa: F401
except ModuleNotFoundError:  # run from a checkout that is not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatewayd.audio import AlsaPlayer, Clip, PlayerStats

PERIOD_MS = 20.0
PROMPT_SECONDS = 30.0
WAIT_TIMEOUT_S = 5.0


@dataclass
class Sample:
    """One stop."""

    ahead_periods: float
    stop_return_ms: float
    drop_ms: float
    late_periods: int


def long_prompt(seconds: float) -> Clip:
    """A 440 Hz prompt-like clip (the content does not matter to the player)."""
    frames = round(seconds * 8000)
    one_cycle_frames = 200  # 11 cycles of 440 Hz in 200 frames at 8 kHz
    cycle = b"".join(
        round(8000 * math.sin(2 * math.pi * 440 * n / 8000)).to_bytes(2, "little", signed=True)
        for n in range(one_cycle_frames)
    )
    return Clip("long_prompt", (cycle * (frames // one_cycle_frames + 1))[: frames * 2])


def wait_stats(player: AlsaPlayer, ready: str, baseline: int) -> PlayerStats:
    """Poll the player's stats until counter ``ready`` exceeds ``baseline`` (bench only)."""
    deadline = time.monotonic() + WAIT_TIMEOUT_S
    while time.monotonic() < deadline:
        stats = player.stats
        if getattr(stats, ready) > baseline:
            return stats
        time.sleep(0.0005)
    raise TimeoutError(f"player stats {ready} did not move within {WAIT_TIMEOUT_S} s")


def run_device(device: str, stops: int, max_delay_s: float, rng: random.Random) -> list[Sample]:
    """Play and stop ``stops`` times on ``device``; one Sample per stop."""
    clip = long_prompt(PROMPT_SECONDS)
    samples: list[Sample] = []
    with AlsaPlayer(device) as player:
        for _ in range(stops):
            before = player.stats
            player.play([clip])
            wait_stats(player, "periods_written", before.periods_written)  # it is playing
            time.sleep(rng.uniform(0.0, max_delay_s))
            started = time.perf_counter()
            player.stop()
            returned = time.perf_counter()
            after = wait_stats(player, "sequences_stopped", before.sequences_stopped)
            assert after.last_stop_ahead_periods is not None
            assert after.last_stop_drop_s is not None
            samples.append(
                Sample(
                    ahead_periods=after.last_stop_ahead_periods,
                    stop_return_ms=(returned - started) * 1000,
                    drop_ms=after.last_stop_drop_s * 1000,
                    late_periods=after.last_stop_late_periods,
                )
            )
    return samples


def percentile(values: list[float], pct: int) -> float:
    """The pct-th percentile (inclusive method)."""
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def main(argv: list[str] | None = None) -> int:
    """Run the bench and print one table row per device."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stops", type=int, default=200, help="stops per device")
    parser.add_argument("--max-delay", type=float, default=0.2, help="seconds before a stop")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory(prefix="barge_in_") as tmp:
        devices = {"null": "null", "file": f"file:FILE='{Path(tmp) / 'capture.raw'}',FORMAT=raw"}
        header = (
            f"{'device':<6} {'stops':>5} | {'ahead periods p50/p99/max':>26} | "
            f"{'ahead ms p50/p99':>16} | {'stop() ms p50/p99':>17} | "
            f"{'drop ms p50/p99':>16} | {'late':>4} | target"
        )
        print(f"barge-in: {args.stops} random stops per device, seed {args.seed}, 20 ms periods")
        print(header)
        print("-" * len(header))
        worst = 0.0
        for name, device in devices.items():
            samples = run_device(device, args.stops, args.max_delay, rng)
            ahead = [s.ahead_periods for s in samples]
            returns = [s.stop_return_ms for s in samples]
            drops = [s.drop_ms for s in samples]
            worst = max(worst, *ahead)
            met = "met" if max(ahead) <= 3 else "MISSED"
            ahead_p50, ahead_p99 = percentile(ahead, 50), percentile(ahead, 99)
            print(
                f"{name:<6} {len(samples):>5} | "
                f"{ahead_p50:>8.2f} /{ahead_p99:>6.2f} /{max(ahead):>6.2f}"
                f" | {ahead_p50 * PERIOD_MS:>7.1f} /{ahead_p99 * PERIOD_MS:>6.1f}"
                f" | {percentile(returns, 50):>8.3f} /{percentile(returns, 99):>6.3f}"
                f" | {percentile(drops, 50):>7.3f} /{percentile(drops, 99):>6.3f}"
                f" | {max(s.late_periods for s in samples):>4} | <= 3 periods: {met}"
            )
    return 0 if worst <= 3 else 1


if __name__ == "__main__":
    sys.exit(main())
