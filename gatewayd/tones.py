"""Call-progress tones (dial, busy, congestion, ringback) and their PCM generator.

A :class:`TonePlan` maps tone names to :class:`Tone` definitions; the French
plan (HARDWARE.md §3, Asterisk ``indications.conf`` ``[fr]``) is the default and
a profile may override or add tones with ``[tones.NAME]`` tables.
:func:`tone_periods` turns a tone into an endless stream of 8 kHz S16_LE mono
periods for the audio player. Stdlib only: it runs on the player thread of a
small board.
"""

from __future__ import annotations

import array
import math
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gatewayd.errors import ProfileError
from gatewayd.pcm import PERIOD_FRAMES as PERIOD_FRAMES  # re-exported: tones are PCM
from gatewayd.pcm import RATE as RATE

#: Default level of each frequency component, in dBFS (a full-scale sine is 0 dBFS).
DEFAULT_LEVEL_DBFS = -13.0
#: Length of the fade at each on/off edge of a cadence: long enough to avoid a click,
#: short enough (4 ms) not to change the cadence a listener hears.
RAMP_SECONDS = 0.004

_FULL_SCALE = 32767
_TONE_KEYS = frozenset({"frequencies", "cadence", "level_dbfs", "repeats"})


@dataclass(frozen=True)
class Tone:
    """One tone: a sum of sines, either continuous or switched on/off by a repeating cadence.

    ``cadence`` holds ``(on_s, off_s)`` pairs played in order and repeated; empty means
    continuous. ``level_dbfs`` is the level of each frequency component. ``repeats``
    > 0 plays the cadence that many times, then the tone stays on (France's
    message-waiting dial tone, DESIGN.md §7.5: 100 ms on / 100 ms off six times).
    """

    name: str
    frequencies: tuple[float, ...]
    cadence: tuple[tuple[float, float], ...] = ()
    level_dbfs: float = DEFAULT_LEVEL_DBFS
    repeats: int = 0

    def __post_init__(self) -> None:
        problem = _tone_problem(self.frequencies, self.cadence, self.level_dbfs)
        if self.repeats < 0:
            problem = f"repeats must be 0 (forever) or more, got {self.repeats}"
        if problem:
            raise ValueError(f"tone {self.name!r}: {problem}")

    @property
    def continuous(self) -> bool:
        """True when the tone never pauses (no cadence)."""
        return not self.cadence


def _tone_problem(
    frequencies: tuple[float, ...],
    cadence: tuple[tuple[float, float], ...],
    level_dbfs: float,
) -> str | None:
    """Why these tone values cannot be played, or None when they can."""
    if not frequencies:
        return "needs at least one frequency"
    for frequency in frequencies:
        if not 0 < frequency < RATE / 2:
            return f"frequency {frequency:g} Hz is outside 0-{RATE // 2} Hz (8 kHz sampling)"
    for on_s, off_s in cadence:
        if on_s < 0 or off_s < 0 or not (math.isfinite(on_s) and math.isfinite(off_s)):
            return f"cadence step ({on_s:g}, {off_s:g}) must be finite, non-negative seconds"
    if cadence and sum(on_s for on_s, _ in cadence) <= 0:
        return "cadence is never on: at least one 'on' duration must be above 0"
    if cadence and sum(on_s + off_s for on_s, off_s in cadence) < 1 / RATE:
        return "cadence is shorter than one sample"
    if not (math.isfinite(level_dbfs) and level_dbfs <= 0):
        return f"level {level_dbfs:g} dBFS must be 0 or below"
    # The components add up in phase now and then: their peaks must fit in 16 bits.
    if len(frequencies) * 10 ** (level_dbfs / 20) > 1.0 + 1e-9:
        return (
            f"{len(frequencies)} components at {level_dbfs:g} dBFS each would clip; "
            f"lower level_dbfs to {20 * math.log10(1 / len(frequencies)):.1f} or below"
        )
    return None


class TonePlan(Mapping[str, Tone]):
    """Tone name → :class:`Tone`, read-only; made by :meth:`france` or :meth:`from_mapping`."""

    def __init__(self, tones: Mapping[str, Tone]) -> None:
        self._tones: Mapping[str, Tone] = MappingProxyType(dict(tones))

    def __getitem__(self, name: str) -> Tone:
        return self._tones[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tones)

    def __len__(self) -> int:
        return len(self._tones)

    def __repr__(self) -> str:
        return f"TonePlan({dict(self._tones)!r})"

    @classmethod
    def france(cls) -> TonePlan:
        """The French tones: 440 Hz dial (continuous), mwi, busy, congestion and ringback."""
        return cls(
            {
                "dial": Tone("dial", (440.0,)),
                # Message waiting (DESIGN.md §7.5): six 100 ms stutters, then the dial tone.
                "mwi": Tone("mwi", (440.0,), ((0.1, 0.1),), repeats=6),
                "busy": Tone("busy", (440.0,), ((0.5, 0.5),)),
                "congestion": Tone("congestion", (440.0,), ((0.25, 0.25),)),
                "ringback": Tone("ringback", (440.0,), ((1.5, 3.5),)),
            }
        )

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, object], source: str, *, base: TonePlan | None = None
    ) -> TonePlan:
        """Read a profile's ``[tones]`` table (``[tones.NAME]`` sub-tables) from file ``source``.

        Tones of ``base`` not named in ``data`` are kept; a bad value raises ProfileError.
        """
        if not isinstance(data, Mapping):
            raise ProfileError(
                f"{source}: [tones] must be a table of [tones.NAME] tables, "
                f"got {type(data).__name__}"
            )
        tones = dict(base or {})
        for name, table in data.items():
            tones[name] = _tone_from_table(name, table, source)
        return cls(tones)


def _tone_from_table(name: str, table: object, source: str) -> Tone:
    """One ``[tones.NAME]`` table as a Tone, or a ProfileError naming the file and key."""
    where = f"{source}: tones.{name}"
    if not isinstance(table, Mapping):
        raise ProfileError(
            f"{where} must be a table such as "
            f"[tones.{name}] frequencies = [440], got {type(table).__name__}"
        )
    unknown = sorted(str(key) for key in table if key not in _TONE_KEYS)
    if unknown:
        raise ProfileError(
            f"{where}: unknown key {unknown[0]!r}; expected {', '.join(sorted(_TONE_KEYS))}"
        )
    if "frequencies" not in table:
        raise ProfileError(f"{where}.frequencies is missing: give e.g. frequencies = [440]")
    frequencies = _numbers(table["frequencies"], f"{where}.frequencies", "frequencies = [440]")
    if not frequencies:
        raise ProfileError(f"{where}.frequencies is empty: give e.g. frequencies = [440]")
    for frequency in frequencies:
        if not 0 < frequency < RATE / 2:
            raise ProfileError(
                f"{where}.frequencies: {frequency:g} Hz is outside 0-{RATE // 2} Hz "
                "(the line is sampled at 8 kHz)"
            )
    flat = _numbers(table.get("cadence", []), f"{where}.cadence", "cadence = [0.5, 0.5]")
    if len(flat) % 2:
        raise ProfileError(
            f"{where}.cadence must list on/off seconds in pairs (on, off, on, off...), "
            f"got {len(flat)} values; e.g. cadence = [0.5, 0.5], or [] for a continuous tone"
        )
    if any(value < 0 for value in flat):
        raise ProfileError(f"{where}.cadence: durations must be 0 or more seconds, got {flat}")
    if flat and sum(flat[0::2]) <= 0:
        raise ProfileError(f"{where}.cadence: the tone is never on; an 'on' value must be > 0")
    level = table.get("level_dbfs", DEFAULT_LEVEL_DBFS)
    if isinstance(level, bool) or not isinstance(level, int | float):
        raise ProfileError(
            f"{where}.level_dbfs must be a number such as -13, got {type(level).__name__}"
        )
    repeats = table.get("repeats", 0)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 0:
        raise ProfileError(f"{where}.repeats must be an integer >= 0 (0: forever), got {repeats!r}")
    cadence = tuple((flat[i], flat[i + 1]) for i in range(0, len(flat), 2))
    problem = _tone_problem(frequencies, cadence, float(level))
    if problem:
        raise ProfileError(f"{where}: {problem}")
    return Tone(name, frequencies, cadence, float(level), repeats)


def _numbers(value: object, key: str, example: str) -> tuple[float, ...]:
    """A TOML array of numbers as floats, or a ProfileError naming ``key``."""
    if not isinstance(value, list | tuple):
        raise ProfileError(f"{key} must be an array of numbers, e.g. {example}")
    numbers: list[float] = []
    for item in value:
        # bool is an int subclass, but `true` is never a frequency or a duration.
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise ProfileError(f"{key} must hold only numbers, got {item!r}; e.g. {example}")
        if not math.isfinite(item):
            raise ProfileError(f"{key} must hold finite numbers, got {item!r}")
        numbers.append(float(item))
    return tuple(numbers)


def _envelope_steps(tone: Tone, rate: int) -> list[tuple[int, bool]]:
    """The cadence as (frames, on) steps; a continuous tone is one endless 'on' step."""
    steps: list[tuple[int, bool]] = []
    for on_s, off_s in tone.cadence:
        for seconds, on in ((on_s, True), (off_s, False)):
            frames = round(seconds * rate)
            if frames:
                steps.append((frames, on))
    return steps


def tone_periods(
    tone: Tone, period_frames: int = PERIOD_FRAMES, rate: int = RATE
) -> Iterator[bytes]:
    """Endless S16_LE mono periods of ``tone``, ``period_frames`` frames each.

    The sines are phase-continuous across periods, and every on/off edge of the
    cadence (and the very start) fades over 4 ms so it never clicks.
    """
    if period_frames <= 0:
        raise ValueError(f"period_frames must be positive, got {period_frames}")
    amplitude = _FULL_SCALE * 10 ** (tone.level_dbfs / 20)
    increments = [2 * math.pi * frequency / rate for frequency in tone.frequencies]
    phases = [0.0] * len(increments)
    ramp = max(1, round(RAMP_SECONDS * rate))
    steps = _envelope_steps(tone, rate)
    step_index = 0
    step_frames, step_on = steps[0] if steps else (0, True)
    cycles_left = tone.repeats  # 0: the cadence repeats forever
    position = 0  # frames already played in the current step (or since start if continuous)
    tau = 2 * math.pi

    while True:
        samples = array.array("h", bytes(2 * period_frames))
        for n in range(period_frames):
            if steps and position >= step_frames:
                step_index = (step_index + 1) % len(steps)
                step_frames, step_on = steps[step_index]
                position = 0
                if step_index == 0 and cycles_left:
                    cycles_left -= 1
                    if not cycles_left:  # the cadence is over: the tone stays on
                        steps, step_on = [], True
            if step_on:
                # Fade in over `ramp` frames, and out over the last `ramp` of a cadence step.
                gain = min(1.0, (position + 0.5) / ramp)
                if steps:
                    gain = min(gain, (step_frames - position - 0.5) / ramp)
                value = sum(math.sin(phase) for phase in phases)
                samples[n] = round(amplitude * gain * value)
            # The oscillators keep running through the silences: the next burst continues
            # the same sine, as a tone switched by a relay would.
            for k, increment in enumerate(increments):
                phases[k] = (phases[k] + increment) % tau
            position += 1
        if sys.byteorder == "big":
            samples.byteswap()
        yield samples.tobytes()


#: The beep before a recording (DESIGN.md §7.1): 1000 Hz for 500 ms.
BEEP = Tone("beep", (1000.0,))
BEEP_SECONDS = 0.5


def tone_pcm(tone: Tone, seconds: float, rate: int = RATE) -> bytes:
    """``seconds`` of ``tone`` as S16_LE mono PCM, faded out over the last 4 ms (a clip)."""
    frames = round(seconds * rate)
    pcm = next(tone_periods(tone, max(1, frames), rate))[: 2 * frames]
    samples = array.array("h", pcm)
    if sys.byteorder == "big":
        samples.byteswap()
    ramp = min(frames, max(1, round(RAMP_SECONDS * rate)))
    for k in range(ramp):
        n = frames - ramp + k
        samples[n] = round(samples[n] * (ramp - k - 0.5) / ramp)
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def beep_pcm(rate: int = RATE) -> bytes:
    """The 500 ms, 1000 Hz beep played before recording a message or a greeting."""
    return tone_pcm(BEEP, BEEP_SECONDS, rate)
