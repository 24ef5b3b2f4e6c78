"""MT8870 / HT9170 DTMF decoder on GPIO: Q1-Q4 latched on the rising edge of StD.

The decoder validates a tone itself and raises StD; Q1-Q4 are valid before that
edge (HARDWARE.md §2), so the key is read on the rising edge. It is handed on
when StD falls, once the pulse has proved longer than a glitch: the falling
edge is the only point where that can be measured without a timer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from gatewayd.errors import ProfileError
from gatewayd.events import DTMF_KEYS, Digit, Party
from gatewayd.gpio.base import GpioBackend, Pull

LOGGER = logging.getLogger(__name__)

#: Zarlink MT8870D datasheet, Table 1: the code Q4 Q3 Q2 Q1 as an integer -> key.
#: 1-9 are their own binary value, 0 is 10, and D is 0000.
Q_CODES: dict[int, str] = {
    0b0001: "1",
    0b0010: "2",
    0b0011: "3",
    0b0100: "4",
    0b0101: "5",
    0b0110: "6",
    0b0111: "7",
    0b1000: "8",
    0b1001: "9",
    0b1010: "0",
    0b1011: "*",
    0b1100: "#",
    0b1101: "A",
    0b1110: "B",
    0b1111: "C",
    0b0000: "D",
}

#: StD pulses shorter than this are noise, not a tone: the decoder's own guard time keeps
#: a real StD high for about as long as the tone (40 ms and more), so 5 ms is a wide margin.
STD_GLITCH_MS = 5.0


def decode_q(q4: bool, q3: bool, q2: bool, q1: bool) -> str:
    """The key for output levels Q4..Q1 (datasheet order); every one of the 16 codes is a key."""
    return Q_CODES[(q4 << 3) | (q3 << 2) | (q2 << 1) | int(q1)]


class Mt8870Reader:
    """Reads keys from an MT8870 on ``gpio`` and hands each one to ``on_digit`` as a ``Digit``.

    ``q_pins`` are (Q1, Q2, Q3, Q4). ``on_digit`` runs where the backend's edge
    callbacks run (see ``GpioBackend.edge_thread``). Keys outside ``allowed_keys``
    (A-D on a board whose keypad has none) are ignored.
    """

    def __init__(
        self,
        gpio: GpioBackend,
        std_pin: int,
        q_pins: Sequence[int],
        allowed_keys: str = "0123456789*#",
        *,
        on_digit: Callable[[Digit], None],
        glitch_ms: float = STD_GLITCH_MS,
        pull: Pull = "off",
        party: Party = "handset",
    ) -> None:
        if len(q_pins) != 4:
            raise ProfileError(f"MT8870 needs 4 Q pins (Q1, Q2, Q3, Q4), got {len(q_pins)}")
        unknown = set(allowed_keys) - DTMF_KEYS
        if unknown:
            raise ProfileError(
                f"MT8870 allowed_keys may only hold DTMF keys 0-9 * # A-D (got {allowed_keys!r})"
            )
        self._gpio = gpio
        self._q_pins = tuple(q_pins)
        self._allowed = frozenset(allowed_keys)
        self._on_digit = on_digit
        self._glitch_ns = round(glitch_ms * 1_000_000)
        self._party: Party = party
        self._latched: str | None = None
        self._rise_ns = 0
        for pin in self._q_pins:
            gpio.setup_input(pin, pull=pull)
        # StD is a clean logic output with its own guard time: no debounce on top of it.
        gpio.setup_input(std_pin, pull=pull, callback=self.on_std_edge)

    def on_std_edge(self, pin: int, level: bool, timestamp_ns: int) -> None:
        """StD edge callback: latch the key on the rise, hand it on at the fall."""
        if level:
            q1, q2, q3, q4 = (self._gpio.read(q) for q in self._q_pins)
            self._latched = decode_q(q4, q3, q2, q1)
            self._rise_ns = timestamp_ns
            return
        key, self._latched = self._latched, None
        if key is None:
            return  # a fall without a rise seen (reader started mid-tone)
        if timestamp_ns - self._rise_ns < self._glitch_ns:
            LOGGER.debug("StD glitch of %.1f ms ignored", (timestamp_ns - self._rise_ns) / 1e6)
            return
        if key not in self._allowed:
            # Only keys outside 0-9 can be named: a digit may belong to a secret code.
            shown = "?" if key.isdigit() else key
            LOGGER.info("DTMF key %s is not on this keypad; ignored", shown)
            return
        self._on_digit(Digit(key, party=self._party))
