"""Tone plans and the tone generator: what a caller hears, decoded from the PCM itself."""

from __future__ import annotations

import array
import itertools
import math
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewayd.errors import ProfileError
from gatewayd.tones import RATE, Tone, TonePlan, beep_pcm, tone_pcm, tone_periods

PERIOD = 160


# --- helpers shared with test_audio ------------------------------------------


def samples_of(pcm: bytes) -> list[int]:
    """S16_LE bytes as a list of ints."""
    values = array.array("h", pcm)
    if sys.byteorder == "big":
        values.byteswap()
    return values.tolist()


def goertzel_ratio(samples: list[int], frequency: float, rate: int = RATE) -> float:
    """Share of the block's energy at ``frequency`` (about 1 for a pure tone, 0 for others)."""
    energy = sum(x * x for x in samples)
    if energy == 0:
        return 0.0
    coeff = 2 * math.cos(2 * math.pi * frequency / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2
    return 2 * power / (len(samples) * energy)


def classify(period: bytes, frequency: float = 440.0) -> str:
    """'on' for a period carrying the tone, 'off' for digital silence, else '?'."""
    samples = samples_of(period)
    sounding = [n for n, x in enumerate(samples) if x]
    if not sounding:
        return "off"
    # A period cut by a cadence edge holds the tone only in part: judge that part.
    burst = samples[sounding[0] : sounding[-1] + 1]
    return "on" if goertzel_ratio(burst, frequency) > 0.5 else "?"


def runs(labels: list[str]) -> list[tuple[str, int]]:
    """Run-length encoding: ['on', 'on', 'off'] -> [('on', 2), ('off', 1)]."""
    return [(label, len(list(group))) for label, group in itertools.groupby(labels)]


def rms_dbfs(samples: list[int]) -> float:
    """RMS level relative to a full-scale sine (0 dBFS)."""
    rms = math.sqrt(sum(x * x for x in samples) / len(samples))
    return 20 * math.log10(rms / (32767 / math.sqrt(2)))


def first_periods(tone: Tone, count: int, period_frames: int = PERIOD) -> list[bytes]:
    return list(itertools.islice(tone_periods(tone, period_frames), count))


# --- the French plan -----------------------------------------------------------


def test_france_plan_has_the_french_tones() -> None:
    plan = TonePlan.france()
    assert set(plan) == {"dial", "mwi", "busy", "congestion", "ringback"}
    assert all(tone.frequencies == (440.0,) for tone in plan.values())
    assert all(tone.level_dbfs == -13.0 for tone in plan.values())
    assert plan["dial"].cadence == () and plan["dial"].continuous
    assert plan["busy"].cadence == ((0.5, 0.5),)
    assert plan["congestion"].cadence == ((0.25, 0.25),)
    assert plan["ringback"].cadence == ((1.5, 3.5),)


@pytest.mark.parametrize(
    ("name", "on_periods", "off_periods"),
    [("busy", 25, 25), ("congestion", 12.5, 12.5), ("ringback", 75, 175)],
)
def test_cadence_of_generated_periods(name: str, on_periods: float, off_periods: float) -> None:
    tone = TonePlan.france()[name]
    cycles = 3
    count = round(cycles * (on_periods + off_periods))
    labels = [classify(p) for p in first_periods(tone, count)]
    found = runs(labels)
    assert [label for label, _ in found] == ["on", "off"] * cycles, found
    # Each run is within one period of the cadence (congestion edges fall mid-period)...
    for (_, on_run), (_, off_run) in zip(found[0::2], found[1::2], strict=True):
        assert abs(on_run - on_periods) <= 1, found
        assert abs(off_run - off_periods) <= 1, found
        # ...and the cadence does not drift: each cycle is exactly on + off long.
        assert on_run + off_run == on_periods + off_periods


def test_a_cadence_with_repeats_then_stays_on() -> None:
    # The message-waiting dial tone (DESIGN.md §7.5): 100 ms on / 100 ms off six times.
    mwi = Tone("mwi", (440.0,), ((0.1, 0.1),), repeats=6)
    labels = [classify(p) for p in first_periods(mwi, 6 * 10 + 100)]
    assert runs(labels) == [("on", 5), ("off", 5)] * 6 + [("on", 100)]


def test_cadence_edges_are_exact_to_the_sample() -> None:
    tone = TonePlan.france()["busy"]
    samples = samples_of(b"".join(first_periods(tone, 100)))  # two seconds
    amplitude = 32767 * 10 ** (-13 / 20)

    def peak(start: int, stop: int) -> int:
        return max(abs(x) for x in samples[start:stop])

    # On 0-0.5 s (frames 0-3999), off 0.5-1 s, on again from 1 s (frame 8000).
    assert all(x == 0 for x in samples[4000:8000])
    assert all(x == 0 for x in samples[12000:16000])
    # Full level until the 4 ms fade-out just before the edge, and right after the fade-in.
    assert peak(3900, 3960) > 0.95 * amplitude
    assert peak(3990, 4000) < 0.3 * amplitude
    assert peak(8000, 8010) < 0.3 * amplitude
    assert peak(8040, 8100) > 0.95 * amplitude


def test_dial_tone_is_continuous_at_minus_13_dbfs() -> None:
    periods = first_periods(TonePlan.france()["dial"], 150)  # three seconds
    assert all(len(p) == PERIOD * 2 for p in periods)
    assert all(classify(p) == "on" for p in periods)
    steady = samples_of(b"".join(periods[1:]))
    assert rms_dbfs(steady) == pytest.approx(-13.0, abs=0.1)
    assert goertzel_ratio(steady[:8000], 440.0) > 0.99
    assert goertzel_ratio(steady[:8000], 480.0) < 0.01


def test_mwi_stutters_six_times_then_stays_on() -> None:
    # 100 ms = 5 periods: six on/off pairs (60 periods), then a steady dial tone.
    tone = TonePlan.france()["mwi"]
    labels = [classify(p) for p in first_periods(tone, 60 + 250)]
    assert runs(labels) == [("on", 5), ("off", 5)] * 6 + [("on", 250)]
    steady = samples_of(b"".join(first_periods(tone, 120)[62:]))
    assert rms_dbfs(steady) == pytest.approx(-13.0, abs=0.1)
    assert goertzel_ratio(steady, 440.0) > 0.99


def test_a_repeating_cadence_is_not_steady() -> None:
    tone = Tone("x", (440.0,), ((0.1, 0.1),) * 6)
    labels = [classify(p) for p in first_periods(tone, 120)]
    assert runs(labels) == [("on", 5), ("off", 5)] * 12


def test_beep_is_half_a_second_of_1000_hz_without_click() -> None:
    samples = samples_of(beep_pcm())
    assert len(samples) == 4000
    assert goertzel_ratio(samples, 1000.0) > 0.99
    assert rms_dbfs(samples[200:3800]) == pytest.approx(-13.0, abs=0.1)
    # Fades at both ends: starts and ends near zero, never a jump.
    slope = 32767 * 10 ** (-13 / 20) * 2 * math.pi * 1000 / RATE
    assert abs(samples[0]) <= slope and abs(samples[-1]) <= slope
    assert max_step(samples) <= slope * 1.15
    assert len(tone_pcm(TonePlan.france()["dial"], 0.02)) == 320


def max_step(samples: list[int]) -> int:
    return max(abs(b - a) for a, b in itertools.pairwise(samples))


@pytest.mark.parametrize("name", ["dial", "busy", "congestion"])
def test_no_click_across_periods_or_cadence_edges(name: str) -> None:
    tone = TonePlan.france()[name]
    samples = samples_of(b"".join(first_periods(tone, 150)))
    amplitude = 32767 * 10 ** (-13 / 20)
    # A sine never moves faster than amplitude x 2*pi*f/rate per sample; the 4 ms fades
    # add a little. A phase jump or a hard cut at an edge would step by up to 2x amplitude.
    slope = amplitude * 2 * math.pi * 440 / RATE
    assert max_step(samples) <= slope * 1.15
    # ...and the very first sample starts from (near) zero.
    assert abs(samples[0]) <= slope


@pytest.mark.parametrize("period_frames", [1, 80, 137, 441])
def test_stream_does_not_depend_on_period_size(period_frames: int) -> None:
    tone = TonePlan.france()["congestion"]
    reference = b"".join(first_periods(tone, 50))  # one second in 160-frame periods
    count = -(-len(reference) // (period_frames * 2))
    other = first_periods(tone, count, period_frames)
    assert all(len(p) == period_frames * 2 for p in other)
    assert b"".join(other)[: len(reference)] == reference


def test_two_frequency_tone_holds_both() -> None:
    tone = Tone("us_dial", (350.0, 440.0), level_dbfs=-16.0)
    samples = samples_of(b"".join(first_periods(tone, 51)[1:]))
    assert goertzel_ratio(samples, 350.0) == pytest.approx(0.5, abs=0.02)
    assert goertzel_ratio(samples, 440.0) == pytest.approx(0.5, abs=0.02)
    assert max(abs(x) for x in samples) <= 32767


def test_tone_refuses_values_it_cannot_play() -> None:
    with pytest.raises(ValueError, match="outside"):
        Tone("x", (5000.0,))
    with pytest.raises(ValueError, match="clip"):
        Tone("x", (350.0, 440.0), level_dbfs=-1.0)
    with pytest.raises(ValueError, match="never on"):
        Tone("x", (440.0,), ((0.0, 1.0),))


# --- profiles: [tones.NAME] --------------------------------------------------


def test_from_mapping_reads_a_profile_and_keeps_the_base() -> None:
    data = {
        "busy": {"frequencies": [425], "cadence": [0.5, 0.5]},
        "special": {"frequencies": [950, 1400], "cadence": [0.3, 0, 0.3, 1], "level_dbfs": -20},
    }
    plan = TonePlan.from_mapping(data, "hw_profiles/x.toml", base=TonePlan.france())
    assert plan["busy"] == Tone("busy", (425.0,), ((0.5, 0.5),), -13.0)
    assert plan["special"].cadence == ((0.3, 0.0), (0.3, 1.0))
    assert plan["special"].level_dbfs == -20.0
    assert plan["dial"] == TonePlan.france()["dial"]
    assert set(TonePlan.from_mapping(data, "x.toml")) == {"busy", "special"}


@pytest.mark.parametrize(
    ("table", "key", "hint"),
    [
        ({"cadence": [0.5, 0.5]}, "tones.busy.frequencies", "missing"),
        ({"frequencies": []}, "tones.busy.frequencies", "empty"),
        ({"frequencies": 440}, "tones.busy.frequencies", "array"),
        ({"frequencies": ["440"]}, "tones.busy.frequencies", "numbers"),
        ({"frequencies": [True]}, "tones.busy.frequencies", "numbers"),
        ({"frequencies": [4400]}, "tones.busy.frequencies", "outside"),
        ({"frequencies": [440], "cadence": [0.5]}, "tones.busy.cadence", "pairs"),
        ({"frequencies": [440], "cadence": [0.5, -1]}, "tones.busy.cadence", "0 or more"),
        ({"frequencies": [440], "cadence": [0, 1]}, "tones.busy.cadence", "never on"),
        ({"frequencies": [440], "level_dbfs": "loud"}, "tones.busy.level_dbfs", "number"),
        ({"frequencies": [440], "level_dbfs": 3}, "tones.busy", "0 or below"),
        ({"frequencies": [440, 480], "level_dbfs": -3}, "tones.busy", "clip"),
        ({"frequencies": [440], "cadance": [1, 1]}, "tones.busy", "unknown key 'cadance'"),
        ("440", "tones.busy", "must be a table"),
    ],
)
def test_from_mapping_errors_name_the_file_and_key(table: object, key: str, hint: str) -> None:
    with pytest.raises(ProfileError) as info:
        TonePlan.from_mapping({"busy": table}, "hw_profiles/pi.toml")
    message = str(info.value)
    assert message.startswith("hw_profiles/pi.toml: ")
    assert key in message
    assert hint in message


def test_from_mapping_refuses_a_tones_value_that_is_not_a_table() -> None:
    with pytest.raises(ProfileError, match=r"^p\.toml: \[tones\] must be a table"):
        TonePlan.from_mapping([440], "p.toml")  # type: ignore[arg-type]


toml_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-10_000, 10_000)
    | st.floats(allow_nan=True)
    | st.text(max_size=5),
    lambda children: st.lists(children, max_size=5),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["frequencies", "cadence", "level_dbfs", "other"]), toml_values)
)
def test_from_mapping_gives_a_plan_or_a_profile_error(table: dict[str, object]) -> None:
    try:
        plan = TonePlan.from_mapping({"t": table}, "p.toml")
    except ProfileError as exc:
        assert str(exc).startswith("p.toml: tones.t")
    else:
        # Whatever was accepted really plays: one second of periods, all well-formed.
        assert all(len(p) == PERIOD * 2 for p in first_periods(plan["t"], 50))
