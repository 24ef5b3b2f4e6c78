"""Hook switch: a handset on the fake SHK wire, through the backend's debounce and the classifier.

``HookLine`` does what the gpio-slic driver does: it feeds debounced SHK edges
to the classifier and keeps one timer armed at ``poll_deadline()``, all on the
fake backend's virtual clock.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewayd.errors import ProfileError
from gatewayd.events import Digit, Flash, OffHook, OnHook
from gatewayd.gpio.fake import FakeGpio
from gatewayd.line.hook import (
    INTER_DIGIT_GAP_MS,
    SHK_DEBOUNCE_MS,
    HookClassifier,
    HookEvent,
    TimedEvent,
)

SHK = 17
MS = 1_000_000


class HookLine:
    """A handset wired to SHK (high = off-hook), and the driver's loop around the classifier."""

    def __init__(self, classifier: HookClassifier | None = None) -> None:
        self.gpio = FakeGpio()
        self.hook = classifier or HookClassifier()
        self.events: list[TimedEvent] = []
        self.gpio.setup_input(SHK, pull="down", debounce_ms=SHK_DEBOUNCE_MS, callback=self._edge)

    def _edge(self, pin: int, level: bool, t_ns: int) -> None:
        self.events += self.hook.feed(level, t_ns / MS)

    def run_to(self, t_ms: float) -> None:
        """Let time pass to ``t_ms``: debounced edges and the classifier's timer, in time order."""
        target = round(t_ms * MS)
        while True:
            deadline = self.hook.poll_deadline()
            timer_ns = math.ceil(deadline * MS) if deadline is not None else None
            due = [t for t in (timer_ns, self.gpio.next_edge_ns()) if t is not None and t <= target]
            if not due:
                break
            step = max(min(due), self.gpio.now_ns)
            self.gpio.advance_to(step)  # edges due by then reach the classifier first
            if deadline is not None and timer_ns is not None and timer_ns <= step:
                self.events += self.hook.on_timer(max(deadline, step / MS))
        self.gpio.advance_to(target)

    def set_hook(self, off_hook: bool, at_ms: float, bounce_ms: float = 0.0) -> None:
        """Move the hook switch at ``at_ms``, with ``bounce_ms`` of 2 kHz contact chatter."""
        self.run_to(at_ms)
        if bounce_ms:
            self.gpio.chatter(SHK, hz=2000, duration_ms=bounce_ms, final_level=off_hook)
        else:
            self.gpio.drive(SHK, off_hook)

    def dial(
        self, digits: str, start_ms: float, pps: float = 10.0, break_ratio: float = 0.6
    ) -> float:
        """Dial ``digits`` on a rotary dial from ``start_ms``; returns when the dial is at rest."""
        period = 1000.0 / pps
        t = start_ms
        for digit in digits:
            for _ in range(10 if digit == "0" else int(digit)):
                self.set_hook(False, t, bounce_ms=2)
                self.set_hook(True, t + period * break_ratio, bounce_ms=2)
                t += period
            t += 700.0  # the subscriber winds the dial for the next digit
        return t

    def kinds(self) -> list[HookEvent]:
        return [event for _, event in self.events]


def lifted(at_ms: float = 100.0) -> HookLine:
    line = HookLine()
    line.set_hook(True, at_ms)
    line.run_to(at_ms + 50)
    assert line.kinds() == [OffHook()]
    return line


def test_a_bounce_storm_on_lifting_is_one_off_hook() -> None:
    line = HookLine()
    line.run_to(100)
    line.gpio.chatter(SHK, hz=1000, duration_ms=200, final_level=True)
    line.run_to(2000)
    assert line.events == [TimedEvent(300 + SHK_DEBOUNCE_MS, OffHook())]


def test_a_bounce_storm_on_hanging_up_is_one_on_hook() -> None:
    line = lifted()
    line.run_to(1000)
    line.gpio.chatter(SHK, hz=1000, duration_ms=200, final_level=False)
    line.run_to(5000)
    assert line.kinds() == [OffHook(), OnHook()]
    assert line.events[1].t_ms == 1200 + SHK_DEBOUNCE_MS  # the break starts where the storm ends


def test_dial_pulses_3_1_0_3_at_10_pps_are_four_digits() -> None:
    line = lifted()
    end = line.dial("3103", start_ms=1000, pps=10, break_ratio=0.6)
    line.run_to(end)
    assert line.kinds() == [OffHook(), Digit("3"), Digit("1"), Digit("0"), Digit("3")]
    assert [event.key for _, event in line.events[1:] if isinstance(event, Digit)] == list("3103")
    # The first digit is complete one inter-digit gap after its last make.
    last_make_of_3 = 1000 + 200 + 60 + 2 + SHK_DEBOUNCE_MS
    assert line.events[1].t_ms == pytest.approx(last_make_of_3 + INTER_DIGIT_GAP_MS)


@settings(deadline=None, max_examples=60)
@given(
    digits=st.text(alphabet="0123456789", min_size=1, max_size=5),
    pps=st.floats(min_value=8.0, max_value=12.0),
    break_ratio=st.floats(min_value=0.55, max_value=0.67),
)
def test_any_dial_within_tolerance_dials_its_digits(
    digits: str, pps: float, break_ratio: float
) -> None:
    line = lifted()
    end = line.dial(digits, start_ms=1000, pps=pps, break_ratio=break_ratio)
    line.run_to(end)
    assert line.kinds() == [OffHook(), *(Digit(d) for d in digits)]


def test_a_300_ms_break_is_a_flash_and_the_call_goes_on() -> None:
    line = lifted()
    line.set_hook(False, 1000, bounce_ms=3)
    line.set_hook(True, 1300, bounce_ms=3)
    line.run_to(3000)
    assert line.kinds() == [OffHook(), Flash()]
    assert line.hook.off_hook
    line.run_to(line.dial("5", start_ms=3000))
    assert line.kinds() == [OffHook(), Flash(), Digit("5")]


def test_a_2_s_break_is_on_hook_stamped_at_the_start_of_the_break() -> None:
    line = lifted()
    line.set_hook(False, 1000)
    line.run_to(1000 + SHK_DEBOUNCE_MS + 899)
    assert line.kinds() == [OffHook()]  # could still be a flash
    line.run_to(1000 + SHK_DEBOUNCE_MS + 900)
    assert line.events[-1] == TimedEvent(1000 + SHK_DEBOUNCE_MS, OnHook())
    line.set_hook(True, 3000)
    line.run_to(4000)
    assert line.kinds() == [OffHook(), OnHook(), OffHook()]  # lifting again is a new OffHook


def test_a_20_ms_break_is_nothing() -> None:
    line = lifted()
    line.set_hook(False, 1000)
    line.set_hook(True, 1020)
    line.run_to(3000)
    assert line.kinds() == [OffHook()]
    assert line.hook.off_hook


# --- the classifier alone: thresholds and odd sequences ----------------------------


def breaks(*durations: float, gap_ms: float = 1000.0) -> list[HookEvent]:
    """Events for a lifted handset then on-hook breaks of the given lengths, far apart."""
    hook = HookClassifier()
    events = hook.feed(True, 0.0)
    t = 100.0
    for duration in durations:
        events += hook.feed(False, t)
        events += hook.feed(True, t + duration)
        t += duration + gap_ms
        events += hook.on_timer(t)
    return [event for _, event in events]


@pytest.mark.parametrize(
    ("break_ms", "expected"),
    [
        (24.9, []),
        (25.0, [Digit("1")]),  # 25-30 ms: no suggested range; counted as a pulse
        (28.0, [Digit("1")]),
        (89.9, [Digit("1")]),
        (90.0, [Flash()]),
        (899.9, [Flash()]),
    ],
)
def test_break_thresholds(break_ms: float, expected: list[HookEvent]) -> None:
    assert breaks(break_ms) == [OffHook(), *expected]


def test_a_break_of_exactly_flash_max_is_a_hang_up() -> None:
    assert breaks(900.0) == [OffHook(), OnHook(), OffHook()]


def test_a_make_shorter_than_bounce_inside_a_break_does_not_split_it() -> None:
    hook = HookClassifier()
    events = hook.feed(True, 0.0)
    events += hook.feed(False, 1000.0)  # hanging up...
    events += hook.feed(True, 1050.0)  # ...the switch bounces closed for 10 ms
    events += hook.feed(False, 1060.0)
    events += hook.on_timer(5000.0)
    assert events == [TimedEvent(0.0, OffHook()), TimedEvent(1000.0, OnHook())]


def test_pulses_then_a_flash_end_the_digit_first() -> None:
    hook = HookClassifier()
    events = hook.feed(True, 0.0)
    for t in (1000.0, 1100.0):  # two pulses
        events += hook.feed(False, t)
        events += hook.feed(True, t + 60)
    events += hook.feed(False, 1200.0)  # then a 200 ms break, before the inter-digit gap
    events += hook.feed(True, 1400.0)
    events += hook.on_timer(3000.0)
    assert events[1:] == [TimedEvent(1200.0, Digit("2")), TimedEvent(1200.0, Flash())]


def test_hanging_up_mid_digit_drops_the_digit() -> None:
    hook = HookClassifier()
    events = hook.feed(True, 0.0)
    events += hook.feed(False, 1000.0)
    events += hook.feed(True, 1060.0)
    events += hook.feed(False, 1100.0)
    events += hook.on_timer(5000.0)
    assert [event for _, event in events] == [OffHook(), OnHook()]


def test_eleven_pulses_are_not_a_digit() -> None:
    assert breaks(*[60.0] * 11, gap_ms=40.0)[1:] == []


def test_a_late_timer_never_reorders_events() -> None:
    hook = HookClassifier()
    events = hook.feed(True, 0.0)
    events += hook.feed(False, 1000.0)
    events += hook.feed(True, 1060.0)
    # No on_timer call at all: the next edge comes long after the digit was complete.
    events += hook.feed(False, 3000.0)
    events += hook.feed(True, 3200.0)
    events += hook.on_timer(3300.0)
    assert events[1:] == [
        TimedEvent(1060.0 + INTER_DIGIT_GAP_MS, Digit("1")),
        TimedEvent(3000.0, Flash()),
    ]


def test_poll_deadline_says_when_the_next_decision_falls() -> None:
    hook = HookClassifier()
    assert hook.poll_deadline() is None
    hook.feed(True, 0.0)
    assert hook.poll_deadline() is None  # off-hook and quiet: no timer needed
    hook.feed(False, 500.0)
    assert hook.poll_deadline() == 500.0 + 900.0
    hook.feed(True, 560.0)
    assert hook.poll_deadline() == 560.0 + 25.0
    hook.on_timer(585.0)
    assert hook.poll_deadline() == 560.0 + INTER_DIGIT_GAP_MS


@pytest.mark.parametrize(
    "timing",
    [
        {"bounce_ms": 100.0},
        {"pulse_max_ms": 1000.0},
        {"bounce_ms": -1.0},
        {"inter_digit_ms": 0.0},
    ],
)
def test_inconsistent_hook_timing_is_a_profile_error(timing: dict[str, float]) -> None:
    with pytest.raises(ProfileError, match="bounce_ms < pulse_max_ms < flash_max_ms"):
        HookClassifier(**timing)  # type: ignore[arg-type]
