"""Hook-switch classification: debounced hook edges in, OffHook/OnHook/Flash/dial digits out.

Pure logic with injected time (milliseconds, any monotonic origin): the line
driver feeds each debounced SHK edge to ``feed()``, arms one timer for
``poll_deadline()`` and calls ``on_timer()`` when it fires. An on-hook *break*
during a call is classified by its length (DESIGN.md §4, HARDWARE.md §3):

=====================  ==========================================
break                  meaning
=====================  ==========================================
under ``bounce_ms``    hook-switch bounce: ignored
up to ``pulse_max_ms`` one dial pulse (also 25-30 ms, see below)
up to ``flash_max_ms`` Flash (register recall)
longer                 OnHook, timestamped at the start of the break
=====================  ==========================================

Breaks between ``bounce_ms`` and the 30 ms where the suggested pulse range
starts count as pulses: no real break is that short on purpose, and a worn dial
whose contacts open a little late should still dial. A make (off-hook) shorter
than ``bounce_ms`` inside a break is bounce too: the break goes on, so a bouncy
hang-up cannot turn into a pulse or a flash.
"""

from __future__ import annotations

import enum
import logging
from typing import NamedTuple

from gatewayd.errors import ProfileError
from gatewayd.events import Digit, Flash, OffHook, OnHook, Party

LOGGER = logging.getLogger(__name__)

#: Off-hook time after the last pulse that ends a dialled digit. Between pulses the
#: line is made for only 33-40 ms at 10 pps (under 60 ms even on a slow 8 pps dial),
#: while between digits the subscriber must pull the dial round again, which takes
#: well over 300 ms; 300 ms also keeps the digit well ahead of the IVR's 5 s timeout.
INTER_DIGIT_GAP_MS = 300.0

#: Suggested backend debounce for the SHK input: above contact chatter (a few ms), well
#: under the shortest make between dial pulses (33 ms at 10 pps, 67/33).
SHK_DEBOUNCE_MS = 10.0

#: A pulse train longer than this is not a digit (a 10-pulse train dials "0").
MAX_PULSES = 10

HookEvent = OffHook | OnHook | Flash | Digit


class TimedEvent(NamedTuple):
    """A hook event and when it happened (ms, on the clock the edges were given in)."""

    t_ms: float
    event: HookEvent


class _State(enum.Enum):
    IDLE = "on-hook"
    OFF_HOOK = "off-hook"
    BREAK = "break"  # on-hook during a call, not classified yet
    MAKE = "make"  # off-hook again after a break, not yet longer than bounce_ms


class HookClassifier:
    """Turns debounced hook edges into ``OffHook``, ``OnHook``, ``Flash`` and dial-pulse digits."""

    def __init__(
        self,
        bounce_ms: float = 25.0,
        pulse_max_ms: float = 90.0,
        flash_max_ms: float = 900.0,
        *,
        inter_digit_ms: float = INTER_DIGIT_GAP_MS,
        party: Party = "handset",
    ) -> None:
        if not 0 <= bounce_ms < pulse_max_ms < flash_max_ms or inter_digit_ms <= 0:
            raise ProfileError(
                "hook timing must satisfy 0 <= bounce_ms < pulse_max_ms < flash_max_ms and "
                f"inter_digit_ms > 0 (got bounce_ms={bounce_ms}, pulse_max_ms={pulse_max_ms}, "
                f"flash_max_ms={flash_max_ms}, inter_digit_ms={inter_digit_ms})"
            )
        self.bounce_ms = bounce_ms
        self.pulse_max_ms = pulse_max_ms
        self.flash_max_ms = flash_max_ms
        self.inter_digit_ms = inter_digit_ms
        self.party: Party = party
        self._state = _State.IDLE
        self._break_start = 0.0
        self._make_at = 0.0
        self._pulses = 0
        self._last_pulse_make = 0.0

    @property
    def off_hook(self) -> bool:
        """Whether the handset counts as off-hook (a break not yet classified still does)."""
        return self._state is not _State.IDLE

    def feed(self, off_hook: bool, t_ms: float) -> list[TimedEvent]:
        """One debounced hook edge at ``t_ms``; returns the events it completes."""
        events = self.on_timer(t_ms)  # a late timer must not reorder events
        state = self._state
        if state is _State.IDLE and off_hook:
            self._state = _State.OFF_HOOK
            self._pulses = 0
            events.append(TimedEvent(t_ms, OffHook()))
        elif state is _State.OFF_HOOK and not off_hook:
            self._state = _State.BREAK
            self._break_start = t_ms
        elif state is _State.BREAK and off_hook:
            self._state = _State.MAKE
            self._make_at = t_ms
        elif state is _State.MAKE and not off_hook:
            self._state = _State.BREAK  # a make too short to count: the same break goes on
            events += self.on_timer(t_ms)
        return events

    def poll_deadline(self) -> float | None:
        """When ``on_timer`` must be called next (ms), or None if no timer is needed."""
        state = self._state
        if state is _State.BREAK:
            return self._break_start + self.flash_max_ms
        if state is _State.MAKE:
            return self._make_at + self.bounce_ms
        if state is _State.OFF_HOOK and self._pulses:
            return self._last_pulse_make + self.inter_digit_ms
        return None

    def on_timer(self, t_ms: float) -> list[TimedEvent]:
        """Time is now ``t_ms``: returns the events whose deadline has passed (may be none)."""
        events: list[TimedEvent] = []
        while (deadline := self.poll_deadline()) is not None and deadline <= t_ms:
            state = self._state
            if state is _State.BREAK:
                if self._pulses:
                    LOGGER.debug("hang-up during dialling: the unfinished digit is dropped")
                self._pulses = 0
                self._state = _State.IDLE
                events.append(TimedEvent(self._break_start, OnHook()))
            elif state is _State.MAKE:
                self._state = _State.OFF_HOOK
                events += self._classify_break(self._make_at - self._break_start)
            else:  # off-hook long enough after the last pulse: the digit is complete
                events += self._end_digit(deadline)
        return events

    def _classify_break(self, break_ms: float) -> list[TimedEvent]:
        if break_ms < self.bounce_ms:
            return []
        if break_ms < self.pulse_max_ms:
            self._pulses += 1
            self._last_pulse_make = self._make_at
            return []
        # A flash right after pulses ends their digit first.
        return [*self._end_digit(self._break_start), TimedEvent(self._break_start, Flash())]

    def _end_digit(self, t_ms: float) -> list[TimedEvent]:
        pulses, self._pulses = self._pulses, 0
        if not pulses:
            return []
        if pulses > MAX_PULSES:
            LOGGER.warning("dial pulse train too long to be a digit; ignored")
            return []
        key = "0" if pulses == MAX_PULSES else str(pulses)
        return [TimedEvent(t_ms, Digit(key, party=self.party))]
