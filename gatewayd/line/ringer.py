"""Ringing an Ag1171 SLIC: RM high during each burst, F/R toggled at the ring frequency.

Pure schedule with injected time (seconds, e.g. ``loop.time()``): the driver
calls ``start(now)``/``stop(now)``, arms one timer for ``next_deadline()`` and
calls ``on_timer(now)`` when it fires; the ringer writes the two outputs itself.
HARDWARE.md §2: F/R held high is forward polarity, and RM is dropped only more
than 10 ms after F/R is back high, at the end of every burst and on stop.
"""

from __future__ import annotations

import logging

from gatewayd.errors import ProfileError
from gatewayd.gpio.base import GpioBackend

LOGGER = logging.getLogger(__name__)

#: Delay from F/R back high to RM low. The Ag1171 driver this follows waits "more than
#: 10 ms"; 20 ms keeps that true with a timer that fires a little early or a slow write.
RM_DROP_DELAY_S = 0.020


class Ringer:
    """Rings the line through an Ag1171's RM and F/R pins with a French 1.5 s / 3.5 s cadence.

    ``stop()`` (off-hook, caller gave up) ends the ringing at once: F/R goes high
    immediately and RM follows ``RM_DROP_DELAY_S`` later at the next ``on_timer``.
    """

    def __init__(
        self,
        gpio: GpioBackend,
        rm_pin: int,
        fr_pin: int,
        ring_frequency_hz: float = 50.0,
        on_s: float = 1.5,
        off_s: float = 3.5,
    ) -> None:
        if ring_frequency_hz <= 0 or on_s <= 0 or off_s <= RM_DROP_DELAY_S:
            raise ProfileError(
                "ringing needs ring_frequency_hz > 0, on_s > 0 and off_s > "
                f"{RM_DROP_DELAY_S} s (got {ring_frequency_hz} Hz, {on_s} s on, {off_s} s off)"
            )
        self._gpio = gpio
        self._rm_pin = rm_pin
        self._fr_pin = fr_pin
        self.on_s = on_s
        self.off_s = off_s
        self._half_period_s = 1.0 / (2.0 * ring_frequency_hz)
        # F/R first: it must already be forward when RM could be raised.
        gpio.setup_output(fr_pin, True)
        gpio.setup_output(rm_pin, False)
        self._fr = True
        self._fr_high_since = float("-inf")
        self._rm = False
        self._rm_drop_at: float | None = None
        self._burst_start: float | None = None  # None: not ringing
        self._in_burst = False
        self._next_toggle = 1  # index of the next F/R toggle in the burst

    @property
    def ringing(self) -> bool:
        """Whether ringing is on (between ``start`` and ``stop``), in a burst or a pause."""
        return self._burst_start is not None

    def start(self, now: float) -> None:
        """Start ringing now with a burst; does nothing if already ringing."""
        if self._burst_start is not None:
            return
        LOGGER.info("ringing starts")
        self._burst_start = now
        self._next_toggle = 1
        self.on_timer(now)

    def stop(self, now: float) -> None:
        """Stop ringing at once: F/R forward now, RM low once the drop delay has passed."""
        if self._burst_start is None:
            return
        LOGGER.info("ringing stops")
        self._burst_start = None
        self._in_burst = False
        self._set_fr(True, now)
        self._schedule_rm_drop()
        self._drop_rm_if_due(now)

    def next_deadline(self) -> float | None:
        """When ``on_timer`` must be called next (seconds), or None when nothing is pending."""
        deadlines: list[float] = []
        if self._rm_drop_at is not None:
            deadlines.append(self._rm_drop_at)
        start = self._burst_start
        if start is not None:
            if self._in_burst:
                toggle_at = start + self._next_toggle * self._half_period_s
                deadlines.append(min(toggle_at, start + self.on_s))
            else:
                deadlines.append(start + self.on_s + self.off_s)
        return min(deadlines, default=None)

    def on_timer(self, now: float) -> None:
        """Time is now ``now``: drive RM and F/R as the cadence says (late timers catch up)."""
        start = self._burst_start
        if start is not None:
            cycle = self.on_s + self.off_s
            while now >= start + cycle:  # a new burst (or several, if the timer was very late)
                start += cycle
                self._next_toggle = 1
            self._burst_start = start
            if now < start + self.on_s:
                self._in_burst = True
                self._rm_drop_at = None
                if not self._rm:
                    self._gpio.write(self._rm_pin, True)
                    self._rm = True
                if now >= start + self._next_toggle * self._half_period_s:
                    # A late timer skips the toggles it missed instead of bursting them out.
                    toggle = max(self._next_toggle, int((now - start) / self._half_period_s))
                    self._set_fr(toggle % 2 == 0, now)  # even toggles: back to forward
                    self._next_toggle = toggle + 1
            else:
                self._in_burst = False
                self._set_fr(True, now)
                self._schedule_rm_drop()
        self._drop_rm_if_due(now)

    def _set_fr(self, level: bool, now: float) -> None:
        if level == self._fr:
            return
        self._gpio.write(self._fr_pin, level)
        self._fr = level
        if level:
            self._fr_high_since = now

    def _schedule_rm_drop(self) -> None:
        if self._rm and self._rm_drop_at is None:
            self._rm_drop_at = self._fr_high_since + RM_DROP_DELAY_S

    def _drop_rm_if_due(self, now: float) -> None:
        if self._rm_drop_at is not None and now >= self._rm_drop_at:
            self._gpio.write(self._rm_pin, False)
            self._rm = False
            self._rm_drop_at = None
