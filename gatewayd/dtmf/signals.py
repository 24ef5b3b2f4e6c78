"""Test signals for DTMF receivers, and the ITU-T Q.24 conformance suite built from them.

Levels follow the G.711 convention: a sine of amplitude ``32768 * 10**((L - 3.14) / 20)``
is L dBm0 (a full-scale sine is +3.14 dBm0). Every generator takes a seeded
``numpy.random.Generator`` so each case is random (tone phases, start offset, noise) yet
the same on every run. Signals are float64 sample arrays until :func:`to_pcm` rounds and
clips them to S16, as a codec would.

The suite (:func:`conformance_suite`) is shared by ``tests/test_dtmf_conformance.py``
(our detector) and ``bench/dtmf.py`` (ours, spandsp and multimon-ng side by side).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import numpy.typing as npt

from gatewayd.dtmf.detector import COL_HZ, DBM0_FULL_SCALE, KEYPAD, ROW_HZ, SAMPLE_RATE

Signal = npt.NDArray[np.float64]

#: Level per tone of an ordinary key in the suite: a typical handset sends about -7 to
#: -10 dBm0 per tone.
KEY_LEVEL_DBM0 = -10.0
#: Tone and pause of an ordinary key in the suite (a handset's usual 50 ms / 50 ms).
KEY_ON_S = 0.05
KEY_OFF_S = 0.05
#: Silence before the first key: at most this, drawn at random so keys fall anywhere
#: in a 20 ms period.
MAX_LEAD_S = 0.02
#: Silence after the last key, so every receiver has time to end it.
TAIL_S = 0.2
ALL_KEYS = "123A456B789C*0#D"


def amplitude(level_dbm0: float) -> float:
    """Peak amplitude (S16 units) of a sine at ``level_dbm0``."""
    return float(32768.0 * 10.0 ** ((level_dbm0 - DBM0_FULL_SCALE) / 20.0))


def key_frequencies(key: str) -> tuple[float, float]:
    """(row, column) frequencies of a key of the 16-key pad."""
    index = KEYPAD.index(key)
    return ROW_HZ[index // 4], COL_HZ[index % 4]


def silence(seconds: float) -> Signal:
    """Zeros lasting ``seconds`` (rounded to whole samples)."""
    return np.zeros(round(seconds * SAMPLE_RATE))


def sine(seconds: float, freq_hz: float, level_dbm0: float, rng: np.random.Generator) -> Signal:
    """A sine at a random phase."""
    n = np.arange(round(seconds * SAMPLE_RATE))
    phase = rng.uniform(0.0, 2.0 * np.pi)
    return amplitude(level_dbm0) * np.sin(2.0 * np.pi * freq_hz * n / SAMPLE_RATE + phase)


@dataclass(frozen=True)
class ToneShape:
    """How a key is sent: levels per tone (twist) and frequency errors (relative, + Hz)."""

    low_dbm0: float = KEY_LEVEL_DBM0
    high_dbm0: float = KEY_LEVEL_DBM0
    #: Relative frequency error of the row (low group) and column (high group) tones.
    low_error: float = 0.0
    high_error: float = 0.0
    #: Absolute error added to each tone, in Hz (sign follows the relative error's).
    low_error_hz: float = 0.0
    high_error_hz: float = 0.0

    @staticmethod
    def twisted(twist_db: float, strong_dbm0: float = KEY_LEVEL_DBM0) -> ToneShape:
        """Twist ``twist_db`` > 0: high group weaker (normal); < 0: high group stronger."""
        if twist_db >= 0:
            return ToneShape(low_dbm0=strong_dbm0, high_dbm0=strong_dbm0 - twist_db)
        return ToneShape(low_dbm0=strong_dbm0 + twist_db, high_dbm0=strong_dbm0)

    def frequencies(self, key: str) -> tuple[float, float]:
        """The frequencies actually sent for ``key``."""
        low, high = key_frequencies(key)
        return (
            low * (1.0 + self.low_error) + self.low_error_hz,
            high * (1.0 + self.high_error) + self.high_error_hz,
        )


def key_tone(
    key: str,
    seconds: float,
    rng: np.random.Generator,
    shape: ToneShape = ToneShape(),
    interruptions: Sequence[tuple[float, float]] = (),
) -> Signal:
    """A key's tone pair; each (at_s, gap_s) interruption silences it, and it resumes at a new
    random phase (a real keypad restarts its oscillators)."""
    low, high = shape.frequencies(key)
    if not interruptions:
        return sine(seconds, low, shape.low_dbm0, rng) + sine(seconds, high, shape.high_dbm0, rng)
    parts: list[Signal] = []
    t = 0.0
    for at_s, gap_s in interruptions:
        parts.append(key_tone(key, at_s - t, rng, shape))
        parts.append(silence(gap_s))
        t = at_s + gap_s
    parts.append(key_tone(key, seconds - t, rng, shape))
    return np.concatenate(parts)


def key_sequence(
    keys: str,
    rng: np.random.Generator,
    *,
    on_s: float = KEY_ON_S,
    off_s: float = KEY_OFF_S,
    shape: ToneShape = ToneShape(),
    lead_s: float | None = None,
    tail_s: float = TAIL_S,
) -> Signal:
    """Keys sent one after another: a random lead-in, then tone, pause, tone, pause..."""
    lead = rng.uniform(0.0, MAX_LEAD_S) if lead_s is None else lead_s
    parts = [silence(lead)]
    for i, key in enumerate(keys):
        parts.append(key_tone(key, on_s, rng, shape))
        if i < len(keys) - 1:
            parts.append(silence(off_s))
    parts.append(silence(tail_s))
    return np.concatenate(parts)


def power_dbm0(signal: Signal) -> float:
    """Mean power of ``signal`` in dBm0 (a sine's power is its level)."""
    mean_square = float(np.mean(signal * signal))
    # A sine of amplitude A at L dBm0 has mean square A^2 / 2.
    return 10.0 * math.log10(max(mean_square, 1e-12) * 2.0 / 32768.0**2) + DBM0_FULL_SCALE


def white_noise(seconds: float, level_dbm0: float, rng: np.random.Generator) -> Signal:
    """Gaussian white noise (flat to 4 kHz) of mean power ``level_dbm0``."""
    rms = amplitude(level_dbm0) / math.sqrt(2.0)
    noise: Signal = rms * rng.standard_normal(round(seconds * SAMPLE_RATE))
    return noise


def dial_tone(seconds: float, level_dbm0: float, rng: np.random.Generator) -> Signal:
    """The French dial tone: 440 Hz, continuous."""
    return sine(seconds, 440.0, level_dbm0, rng)


def mix(*signals: Signal) -> Signal:
    """Sum of signals, the shorter ones padded with silence at their end."""
    length = max(len(s) for s in signals)
    out = np.zeros(length)
    for s in signals:
        out[: len(s)] += s
    return out


def to_pcm(signal: Signal) -> bytes:
    """S16_LE bytes, rounded and clipped as a codec would."""
    return bytes(np.clip(np.rint(signal), -32768, 32767).astype("<i2").tobytes())


def from_pcm(pcm: bytes) -> Signal:
    """Float samples of S16_LE bytes."""
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


# --- the conformance suite -------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One conformance case: the keys a receiver must report for the signal ``build`` makes."""

    #: Which point of the suite (e.g. "twist-normal"); a point passes when all its cases do.
    point: str
    name: str
    expected: str = field(repr=False)
    build: Callable[[], bytes] = field(repr=False, compare=False)


#: The suite's points, in the order the benchmark prints them, with what each checks.
POINTS: dict[str, str] = {
    "keys": "all 16 keys decoded",
    "freq-accept": "both tones off by +/-(1.5 % + 2 Hz) accepted",
    "freq-reject": "a tone off by +/-3.5 % rejected",
    "twist-normal": "high group 8 dB weaker accepted",
    "twist-reverse": "high group 4 dB stronger accepted",
    "level-accept": "-25 to 0 dBm0 per tone accepted",
    "level-reject": "-55 dBm0 and below rejected",
    "short-accept": "tones of 40 ms and more accepted",
    "short-reject": "tones of 23 ms and less rejected",
    "interruption": "a 10 ms interruption inside a key bridged",
    "pause": "a 40 ms pause between two equal keys separates them",
    "cycle": "500 keys at a 93 ms cycle",
    "noise": "white noise at 15 dB SNR",
    "dial-tone": "440 Hz dial tone up to +15 dB over the pair",
}


Maker = Callable[[np.random.Generator], Signal]


def _rng(name: str, seed: int) -> np.random.Generator:
    """A generator seeded by the case name, so adding a case does not change the others."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _case(
    point: str, name: str, expected: str, make: Callable[[np.random.Generator], Signal], seed: int
) -> Case:
    full = f"{point}/{name}"

    def build() -> bytes:
        return to_pcm(make(_rng(full, seed)))

    return Case(point, full, expected, build)


def conformance_suite(seed: int = 2024) -> list[Case]:
    """Every case of the Q.24 points in :data:`POINTS` (signals are built on demand)."""
    cases: list[Case] = []

    def add(point: str, name: str, expected: str, make: Maker) -> None:
        cases.append(_case(point, name, expected, make, seed))

    for key in ALL_KEYS:
        add("keys", key, key * 2, partial(key_sequence, key * 2))

    # Frequency: the worst accepted error on both tones, in each direction.
    for key in ALL_KEYS:
        for low_sign, high_sign in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
            shape = ToneShape(
                low_error=0.015 * low_sign,
                high_error=0.015 * high_sign,
                low_error_hz=2.0 * low_sign,
                high_error_hz=2.0 * high_sign,
            )
            name = f"{key}/low{'+-'[low_sign < 0]}high{'+-'[high_sign < 0]}"
            add("freq-accept", name, key, partial(key_sequence, key, shape=shape))
    for key in ALL_KEYS:
        for which, sign in (("low", 1), ("low", -1), ("high", 1), ("high", -1)):
            error = 0.035 * sign
            shape = ToneShape(low_error=error) if which == "low" else ToneShape(high_error=error)
            name = f"{key}/{which}{'+-'[sign < 0]}3.5%"
            add("freq-reject", name, "", partial(key_sequence, key, shape=shape))

    for key in ALL_KEYS:
        normal = ToneShape.twisted(8.0)
        reverse = ToneShape.twisted(-4.0)
        add("twist-normal", f"{key}/8dB", key, partial(key_sequence, key, shape=normal))
        add("twist-reverse", f"{key}/4dB", key, partial(key_sequence, key, shape=reverse))

    for level in (-25.0, -20.0, -15.0, -10.0, -5.0, 0.0):
        shape = ToneShape(low_dbm0=level, high_dbm0=level)
        add(
            "level-accept",
            f"{level:+.0f}dBm0",
            ALL_KEYS,
            partial(key_sequence, ALL_KEYS, shape=shape),
        )
    for level in (-55.0, -60.0):
        shape = ToneShape(low_dbm0=level, high_dbm0=level)
        add("level-reject", f"{level:+.0f}dBm0", "", partial(key_sequence, ALL_KEYS, shape=shape))

    for ms in (40, 45, 50):
        add(
            "short-accept",
            f"{ms}ms",
            ALL_KEYS,
            partial(key_sequence, ALL_KEYS, on_s=ms / 1000, off_s=0.06),
        )
    for ms in (23, 20, 15, 10):
        add(
            "short-reject",
            f"{ms}ms",
            "",
            partial(key_sequence, ALL_KEYS, on_s=ms / 1000, off_s=0.06),
        )

    for key in ALL_KEYS:
        add("interruption", f"{key}/10ms", key, partial(interrupted_key, key, gap_s=0.010))
        add("pause", f"{key}/40ms", key * 2, partial(key_sequence, key * 2, off_s=0.040))

    for on_ms in (40, 53):
        keys = "".join(_rng(f"cycle/{on_ms}", seed).choice(list(ALL_KEYS), 500))
        add(
            "cycle",
            f"{on_ms}on{93 - on_ms}off",
            keys,
            partial(key_sequence, keys, on_s=on_ms / 1000, off_s=(93 - on_ms) / 1000),
        )

    for run in range(4):
        add("noise", f"15dB/{run}", ALL_KEYS, partial(noisy_keys, snr_db=15.0))

    for over_db in (0.0, 10.0, 15.0):
        add(
            "dial-tone",
            f"+{over_db:.0f}dB",
            ALL_KEYS,
            partial(keys_over_dial_tone, over_db=over_db),
        )
    # The dial tone alone, at the level it has 15 dB over the cases' pair: no key.
    add("dial-tone", "alone", "", partial(dial_tone, 2.0, DIAL_TEST_KEY_DBM0 + 18.0))
    return cases


#: Level per tone of the keys in the dial-tone cases: low enough that the dial tone 15 dB
#: over the pair (-2 dBm0) and the keys add up without clipping.
DIAL_TEST_KEY_DBM0 = -20.0


def interrupted_key(key: str, rng: np.random.Generator, gap_s: float) -> Signal:
    """One 100 ms key with one interruption of ``gap_s`` in its middle (30 to 60 ms in)."""
    at_s = rng.uniform(0.03, 0.06)
    lead = silence(rng.uniform(0.0, MAX_LEAD_S))
    tone = key_tone(key, 0.1, rng, interruptions=[(at_s, gap_s)])
    return np.concatenate([lead, tone, silence(TAIL_S)])


def pair_power_dbm0(shape: ToneShape) -> float:
    """Power of the tone pair (both tones together) in dBm0."""
    return float(10.0 * np.log10(10 ** (shape.low_dbm0 / 10) + 10 ** (shape.high_dbm0 / 10)))


def noisy_keys(rng: np.random.Generator, snr_db: float, shape: ToneShape = ToneShape()) -> Signal:
    """The 16 keys in white noise ``snr_db`` under the pair's power."""
    keys = key_sequence(ALL_KEYS, rng, shape=shape)
    noise = white_noise(len(keys) / SAMPLE_RATE, pair_power_dbm0(shape) - snr_db, rng)
    return keys + noise


def keys_over_dial_tone(rng: np.random.Generator, over_db: float) -> Signal:
    """The 16 keys at -20 dBm0 per tone over a 440 Hz dial tone ``over_db`` above the pair."""
    shape = ToneShape(low_dbm0=DIAL_TEST_KEY_DBM0, high_dbm0=DIAL_TEST_KEY_DBM0)
    keys = key_sequence(ALL_KEYS, rng, shape=shape, lead_s=0.3 + rng.uniform(0, MAX_LEAD_S))
    tone = dial_tone(len(keys) / SAMPLE_RATE, pair_power_dbm0(shape) + over_db, rng)
    return keys + tone


def points(cases: Sequence[Case]) -> Iterator[tuple[str, list[Case]]]:
    """Cases grouped by point, in :data:`POINTS` order."""
    for point in POINTS:
        yield point, [c for c in cases if c.point == point]
