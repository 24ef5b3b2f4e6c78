"""Ag1171 ringing, read off the fake GPIO's output history: F/R rate, cadence, RM timing, stop."""

from __future__ import annotations

import itertools

import pytest

from gatewayd.errors import ProfileError
from gatewayd.gpio.fake import FakeGpio, HistoryEntry
from gatewayd.line.hook import SHK_DEBOUNCE_MS, HookClassifier
from gatewayd.line.ringer import RM_DROP_DELAY_S, Ringer

RM, FR, SHK = 12, 13, 17
NS = 1_000_000_000


class RingLine:
    """The ringer on the fake GPIO, with the driver's one timer run on the virtual clock."""

    def __init__(self, late_s: float = 0.0, **cadence: float) -> None:
        self.gpio = FakeGpio()
        self.ringer = Ringer(self.gpio, RM, FR, **cadence)
        self.late_s = late_s  # how late every timer fires

    @property
    def now(self) -> float:
        return self.gpio.now_ns / NS

    def run_to(self, t_s: float) -> None:
        while (deadline := self.ringer.next_deadline()) is not None:
            fire_at = max(deadline + self.late_s, self.now)
            if fire_at > t_s:
                break
            self.gpio.advance_to(round(fire_at * NS))
            self.ringer.on_timer(fire_at)
        self.gpio.advance_to(round(t_s * NS))

    def changes(self, pin: int) -> list[tuple[float, bool]]:
        """(seconds, level) of every change gatewayd made on ``pin``, setup excluded."""
        entries = [e for e in self.gpio.history if e.pin == pin and e.direction == "out"]
        return [(e.t_ns / NS, e.level) for e in entries[1:]]


def between(changes: list[tuple[float, bool]], start: float, end: float) -> list[float]:
    return [t for t, _ in changes if start <= t < end]


def test_idle_outputs_are_forward_polarity_and_no_ring_mode() -> None:
    line = RingLine()
    assert line.gpio.level(FR) is True
    assert line.gpio.level(RM) is False
    assert line.ringer.next_deadline() is None


def assert_changes(actual: list[tuple[float, bool]], expected: list[tuple[float, bool]]) -> None:
    """Same levels in the same order, at the same times (to float precision)."""
    assert [level for _, level in actual] == [level for _, level in expected]
    assert [t for t, _ in actual] == pytest.approx([t for t, _ in expected])


def test_fr_toggles_at_50_hz_in_1_5_s_bursts_every_5_s() -> None:
    line = RingLine()
    line.ringer.start(0.0)
    line.run_to(12.0)
    rm = line.changes(RM)
    assert_changes(
        rm, [(0.0, True), (1.52, False), (5.0, True), (6.52, False), (10.0, True), (11.52, False)]
    )
    fr = line.changes(FR)
    for burst in (0.0, 5.0, 10.0):
        toggles = between(fr, burst, burst + 1.5 + 1e-9)
        assert len(toggles) == 150  # 75 periods in 1.5 s: 50 Hz
        steps = [b - a for a, b in zip([burst, *toggles], toggles, strict=False)]
        assert steps == pytest.approx([0.010] * 150)
    assert between(fr, 1.51, 5.0) == []  # silent between bursts
    assert line.gpio.level(FR) is True


def test_rm_is_high_whenever_fr_moves_and_drops_over_10_ms_after_fr_is_back_high() -> None:
    line = RingLine()
    line.ringer.start(0.0)
    line.run_to(12.0)
    rm_high_spans = []
    rm = line.changes(RM)
    for (rise, level), (fall, _) in zip(rm[::2], rm[1::2], strict=True):
        assert level is True
        rm_high_spans.append((rise, fall))
    fr = line.changes(FR)
    for t, _ in fr:
        assert any(rise <= t < fall for rise, fall in rm_high_spans), f"F/R moved at {t} s"
    for _, fall in rm_high_spans:
        last_fr_rise = max(t for t, level in fr if level and t <= fall)
        assert fall - last_fr_rise > 0.010
        assert fall - last_fr_rise == pytest.approx(RM_DROP_DELAY_S)


def test_lifting_the_handset_stops_the_ring_at_once() -> None:
    line = RingLine()
    hook = HookClassifier()

    def on_shk(pin: int, off_hook: bool, t_ns: int) -> None:  # what the line driver does
        for _, event in hook.feed(off_hook, t_ns / 1e6):
            line.ringer.stop(t_ns / NS)
            assert type(event).__name__ == "OffHook"

    line.gpio.setup_input(SHK, pull="down", debounce_ms=SHK_DEBOUNCE_MS, callback=on_shk)
    line.ringer.start(0.0)
    line.run_to(5.703)
    line.gpio.drive(SHK, True)  # lifted in the second burst, F/R low then
    line.run_to(30.0)
    seen_at = 5.703 + SHK_DEBOUNCE_MS / 1000
    assert not line.ringer.ringing
    fr, rm = line.changes(FR), line.changes(RM)
    assert fr[-1] == pytest.approx((seen_at, True))  # forward at once
    assert rm[-1] == pytest.approx((seen_at + RM_DROP_DELAY_S, False))
    assert line.ringer.next_deadline() is None  # nothing more, ever
    assert line.gpio.history[-1].t_ns == round((seen_at + RM_DROP_DELAY_S) * NS)


def test_stop_with_fr_already_high_drops_rm_after_the_delay() -> None:
    line = RingLine()
    line.ringer.start(0.0)
    line.run_to(0.025)  # F/R high since the toggle at 20 ms
    line.ringer.stop(0.025)
    line.run_to(1.0)
    assert line.changes(RM)[-1] == pytest.approx((0.020 + RM_DROP_DELAY_S, False))
    assert line.gpio.level(FR) is True


def test_stop_in_the_pause_does_nothing_more() -> None:
    line = RingLine()
    line.ringer.start(0.0)
    line.run_to(3.0)
    history = list(line.gpio.history)
    line.ringer.stop(3.0)
    line.run_to(20.0)
    assert line.gpio.history == history
    assert line.ringer.next_deadline() is None


def test_late_timers_keep_the_ring_frequency_and_cadence() -> None:
    line = RingLine(late_s=0.003)
    line.ringer.start(0.0)
    line.run_to(6.6)
    fr = line.changes(FR)
    second = between(fr, 5.0, 6.6)
    assert len(second) == 150
    assert [b - a for a, b in itertools.pairwise(second)] == pytest.approx([0.010] * 149)
    rm = line.changes(RM)
    assert rm[2][0] == pytest.approx(5.003)
    assert rm[3][0] - max(t for t, level in fr if level and t < rm[3][0]) > 0.010


def test_a_timer_that_fires_seconds_late_skips_to_the_current_burst() -> None:
    line = RingLine()
    line.ringer.start(0.0)
    line.run_to(0.5)
    line.gpio.advance_to(round(5.305 * NS))  # the daemon stalled for almost 5 s
    before = len(line.gpio.history)
    line.ringer.on_timer(5.305)
    assert len(line.gpio.history) - before <= 1  # no burst of missed toggles
    assert line.gpio.level(RM) is True
    assert line.ringer.next_deadline() == pytest.approx(5.31)


def test_start_twice_and_stop_when_idle_change_nothing() -> None:
    line = RingLine()
    line.ringer.stop(0.0)
    assert line.gpio.history == [
        HistoryEntry(0, FR, True, "out"),
        HistoryEntry(0, RM, False, "out"),
    ]
    line.ringer.start(0.0)
    line.run_to(0.5)
    line.ringer.start(0.5)  # a second RING while ringing: the cadence goes on
    line.run_to(2.0)
    assert_changes(line.changes(RM), [(0.0, True), (1.52, False)])


def test_close_of_the_backend_leaves_the_line_idle_even_mid_burst() -> None:
    line = RingLine()
    line.ringer.start(0.0)
    line.run_to(0.015)  # F/R low, RM high
    line.gpio.close()
    assert (line.gpio.level(RM), line.gpio.level(FR)) == (False, True)


@pytest.mark.parametrize(
    "cadence",
    [{"ring_frequency_hz": 0.0}, {"on_s": 0.0}, {"off_s": 0.01}],
)
def test_impossible_cadence_is_a_profile_error(cadence: dict[str, float]) -> None:
    with pytest.raises(ProfileError, match="ring_frequency_hz > 0"):
        Ringer(FakeGpio(), RM, FR, **cadence)
