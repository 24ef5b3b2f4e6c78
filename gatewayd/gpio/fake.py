"""A GPIO backend with no hardware that plays the outside world, on a virtual clock.

Tests (and a daemon on a laptop) drive input wires with ``drive()`` and
``chatter()``, move time with ``advance()``, and read what gatewayd wrote with
``level()`` and ``history``. Debounce works like rpi-lgpio and the kernel's
gpiod debounce: a change is reported only once the wire has been stable for
``debounce_ms``, timestamped at that moment.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, NamedTuple

from gatewayd.gpio.base import EdgeCallback, GpioBackend, GpioError, Pull

LOGGER = logging.getLogger(__name__)

NS_PER_MS = 1_000_000


class HistoryEntry(NamedTuple):
    """One level change on a wire: ``in`` = driven by the outside world, ``out`` = by gatewayd."""

    t_ns: int
    pin: int
    level: bool
    direction: Literal["in", "out"]


@dataclass
class _InputLine:
    pull: Pull
    debounce_ns: int
    callback: EdgeCallback | None
    reported: bool
    #: Virtual time at which the wire will have been stable for the debounce period.
    stable_at_ns: int | None = None


class FakeGpio(GpioBackend):
    """GPIO backend for tests and the sim profile: same interface, plus the outside world.

    ``clock_ns`` is where the virtual clock starts; it only moves through
    ``advance()``, ``advance_to()``, ``chatter()`` or ``drive(..., at_ns=...)``.
    Edge callbacks run on the caller's thread, inside those calls.
    """

    name = "fake"
    edge_thread = "the caller's thread, inside drive(), chatter(), advance() or advance_to()"

    def __init__(self, *, clock_ns: int = 0) -> None:
        super().__init__()
        self._now_ns = int(clock_ns)
        self._wires: dict[int, bool] = {}  # levels the outside world drives
        self._lines: dict[int, _InputLine] = {}
        self._driven: dict[int, bool] = {}  # levels gatewayd drives on its outputs
        self._links: dict[int, list[int]] = {}  # output pin -> input wires it drives
        #: Every level change, in time order: what the world drove and what gatewayd wrote.
        self.history: list[HistoryEntry] = []

    # --- the outside world -------------------------------------------------------

    @property
    def now_ns(self) -> int:
        """The virtual clock, in nanoseconds."""
        return self._now_ns

    def level(self, pin: int) -> bool:
        """The level on a wire now: what gatewayd drives on an output, else the outside world's."""
        if pin in self._driven:
            return self._driven[pin]
        if pin in self._wires:
            return self._wires[pin]
        line = self._lines.get(pin)
        return line is not None and line.pull == "up"  # an undriven wire follows its pull

    def drive(self, pin: int, level: bool, at_ns: int | None = None) -> None:
        """Drive input wire ``pin`` to ``level``, at ``at_ns`` (moving the clock there) or now."""
        if pin in self._driven:
            raise GpioError(f"fake GPIO {pin} is an output of gatewayd; the world cannot drive it")
        if at_ns is not None:
            self.advance_to(at_ns)
        self._set_wire(pin, bool(level))

    def connect(self, out_pin: int, in_pin: int) -> None:
        """Wire gatewayd's output ``out_pin`` to input ``in_pin`` (a loopback, as on a test rig)."""
        if in_pin in self._driven:
            raise GpioError(f"fake GPIO {in_pin} is an output of gatewayd; it cannot be wired in")
        self._links.setdefault(out_pin, []).append(in_pin)
        if out_pin in self._driven:
            self._set_wire(in_pin, self._driven[out_pin])

    def _set_wire(self, pin: int, level: bool) -> None:
        if level == self.level(pin):
            return
        self._wires[pin] = level
        self.history.append(HistoryEntry(self._now_ns, pin, level, "in"))
        line = self._lines.get(pin)
        if line is None:
            return
        line.stable_at_ns = self._now_ns + line.debounce_ns
        if line.debounce_ns == 0:
            self._settle(pin, line)

    def chatter(self, pin: int, hz: float, duration_ms: float, final_level: bool) -> None:
        """A bounce storm: flip ``pin`` every half period of ``hz`` for ``duration_ms``.

        The last flip, to ``final_level``, lands exactly at the end of the storm,
        where the clock is left.
        """
        if hz <= 0 or duration_ms < 0:
            raise GpioError(f"chatter needs hz > 0 and duration_ms >= 0 (got {hz}, {duration_ms})")
        start = self._now_ns
        end = start + round(duration_ms * NS_PER_MS)
        half_period = max(1, round(1e9 / (2 * hz)))
        flips = list(range(start + half_period, end, half_period))
        if len(flips) % 2 == (self.level(pin) != final_level):
            flips = flips[:-1]  # so the wire is still moving until the very end
        level = self.level(pin)
        for t in flips:
            level = not level
            self.drive(pin, level, at_ns=t)
        self.drive(pin, final_level, at_ns=end)

    def next_edge_ns(self) -> int | None:
        """When a pending wire change will have been stable for its debounce, or None.

        A harness that also runs timers advances to the earlier of this and its own
        next deadline, so edges and timers are handled in time order.
        """
        pending = [t for line in self._lines.values() if (t := line.stable_at_ns) is not None]
        return min(pending, default=None)

    def advance(self, ms: float) -> None:
        """Move the virtual clock ``ms`` forward, reporting the debounced edges that fall due."""
        if ms < 0:
            raise GpioError(f"the fake clock cannot go back (advance({ms}))")
        self.advance_to(self._now_ns + round(ms * NS_PER_MS))

    def advance_to(self, t_ns: int) -> None:
        """Move the virtual clock to ``t_ns``, reporting due debounced edges in time order."""
        if t_ns < self._now_ns:
            raise GpioError(f"the fake clock cannot go back (now {self._now_ns} ns, asked {t_ns})")
        while True:
            due = [
                (line.stable_at_ns, pin)
                for pin, line in self._lines.items()
                if line.stable_at_ns is not None and line.stable_at_ns <= t_ns
            ]
            if not due:
                break
            stable_at, pin = min(due)
            self._now_ns = stable_at
            self._settle(pin, self._lines[pin])
        self._now_ns = t_ns

    def _settle(self, pin: int, line: _InputLine) -> None:
        line.stable_at_ns = None
        level = self.level(pin)
        if level == line.reported:
            return  # the wire came back before it was stable: a glitch, not an edge
        line.reported = level
        if line.callback is not None:
            line.callback(pin, level, self._now_ns)

    # --- GpioBackend ----------------------------------------------------------------

    def _setup_input(
        self, pin: int, pull: Pull, debounce_ms: float, callback: EdgeCallback | None
    ) -> None:
        line = _InputLine(pull, round(debounce_ms * NS_PER_MS), callback, reported=False)
        self._lines[pin] = line
        line.reported = self.level(pin)

    def _setup_output(self, pin: int, initial: bool) -> None:
        if pin in self._wires:
            raise GpioError(f"fake GPIO {pin} is driven by the outside world; not an output")
        self._driven[pin] = initial
        self.history.append(HistoryEntry(self._now_ns, pin, initial, "out"))
        for in_pin in self._links.get(pin, ()):
            self._set_wire(in_pin, initial)

    def _read(self, pin: int) -> bool:
        return self.level(pin)

    def _write(self, pin: int, level: bool) -> None:
        if self._driven[pin] == level:
            return
        self._driven[pin] = level
        self.history.append(HistoryEntry(self._now_ns, pin, level, "out"))
        for in_pin in self._links.get(pin, ()):
            self._set_wire(in_pin, level)

    def _close(self) -> None:
        # Outputs keep their idle level so tests can check it after close.
        self._lines.clear()
