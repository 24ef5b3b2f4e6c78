"""The fake handset of a ``gpio_backend = "fake"`` SLIC line, served on ``gpio.sock``.

It plays the handset, the SLIC and the MT8870 on the fake GPIO's wires, on the loop's
clock, one command per line, each answered ``ok``, ``error <reason>`` or a value::

    lift | hang | flash | press KEYS | dial DIGITS | drive PIN 0|1 | read PIN | history N | help
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from gatewayd.errors import DeviceError
from gatewayd.events import DTMF_KEYS
from gatewayd.gpio import GpioError
from gatewayd.gpio.fake import FakeGpio, HistoryEntry
from gatewayd.line.hook import SHK_DEBOUNCE_MS
from gatewayd.line.mt8870 import Q_CODES

if TYPE_CHECKING:
    from gatewayd.profile import SlicSection

NS_PER_S = 1_000_000_000

#: Longest KEYS of one ``press`` or ``dial`` (a handset could not send more in one go).
MAX_KEYS = 64
#: Most entries one ``history N`` returns.
MAX_HISTORY = 1000

# How the fake handset keys and dials (seconds). A DTMF key is an 80 ms tone and an
# 80 ms gap, as the sim line sends them; a rotary dial runs at 10 pulses/s with a
# 60 ms break and a 40 ms make per pulse (the usual 60/40 ratio).
KEY_TONE_S = 0.080
KEY_GAP_S = 0.080
PULSE_BREAK_S = 0.060
PULSE_MAKE_S = 0.040
#: Pause between dialled digits: the time to pull the dial round again, well over the
#: classifier's 300 ms end-of-digit gap.
DIAL_GAP_S = 0.700
#: Extra time a fake action waits after the classifier's own threshold, so its event
#: has reached the daemon when the command is answered.
SETTLE_MARGIN_S = 0.050

#: MT8870 code (Q4 Q3 Q2 Q1 as an integer) for each key: what the fake decoder outputs.
_KEY_CODES: dict[str, int] = {key: code for code, key in Q_CODES.items()}


def _ns(seconds: float) -> int:
    return round(seconds * NS_PER_S)


class FakeHandsetError(DeviceError):
    """A fake-handset action that makes no sense now (lift when already off-hook...)."""


class FakeHandset:
    """The handset, SLIC and MT8870 of a ``fake``-backend line, played on the loop's clock.

    The fake GPIO only moves its virtual clock when told to: this keeps it on loop
    time (advanced before every wire change, and by a timer while a debounced edge
    is pending), so the driver sees edges when a real board would report them.
    For tests and technicians only: the Q pins' history spells the keys pressed.
    """

    def __init__(self, gpio: FakeGpio, loop: asyncio.AbstractEventLoop, slic: SlicSection) -> None:
        self.gpio = gpio
        self.slic = slic
        self._loop = loop
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at_ns: int | None = None
        self._closed = False

    # --- wires -------------------------------------------------------------------

    def sync(self) -> None:
        """Bring the fake's clock to loop time, reporting the debounced edges now due."""
        self._advance_to(_ns(self._loop.time()))

    def drive(self, pin: int, level: bool) -> None:
        """Drive input wire ``pin`` to ``level`` now (loop time)."""
        self.sync()
        self.gpio.drive(pin, level)
        self._arm()

    def read(self, pin: int) -> bool:
        """The level on a wire now: what gatewayd drives on an output, else the world's."""
        self.sync()
        return self.gpio.level(pin)

    def history(self, last: int) -> list[HistoryEntry]:
        """The last ``last`` level changes (world and gatewayd), oldest first."""
        self.sync()
        return self.gpio.history[-last:] if last > 0 else []

    @property
    def off_hook(self) -> bool:
        """Whether the handset is off the hook, as the SHK wire says."""
        return self.gpio.level(self.slic.pins.shk) == self.slic.shk_active_high

    def close(self) -> None:
        """Cancel the pending-edge timer; safe to call twice."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at_ns = None

    def _advance_to(self, t_ns: int) -> None:
        if not self._closed and t_ns > self.gpio.now_ns:
            self.gpio.advance_to(t_ns)

    def _arm(self) -> None:
        """One timer for the next pending debounced edge, if any."""
        if self._closed:
            return
        due = self.gpio.next_edge_ns()
        if due == self._timer_at_ns and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at_ns = None
        if due is not None:
            self._timer_at_ns = due
            self._timer = self._loop.call_at(due / NS_PER_S, self._edge_due, due)

    def _edge_due(self, due_ns: int) -> None:
        self._timer = self._timer_at_ns = None
        # At least ``due_ns``: the loop may fire a hair early, and the edge is due.
        self._advance_to(max(_ns(self._loop.time()), due_ns))
        self._arm()

    # --- the handset -----------------------------------------------------------------

    def _set_hook(self, off_hook: bool) -> None:
        self.drive(self.slic.pins.shk, off_hook == self.slic.shk_active_high)

    def _need_off_hook(self, action: str) -> None:
        if not self.off_hook:
            hint = "already on-hook" if action == "hang" else "on-hook; lift it first (lift)"
            raise FakeHandsetError(f"{action}: the handset is {hint}")

    async def lift(self) -> None:
        """Lift the handset; returns once the driver has seen it."""
        async with self._lock:
            if self.off_hook:
                raise FakeHandsetError("lift: the handset is already off-hook")
            self._set_hook(True)
            await asyncio.sleep(SHK_DEBOUNCE_MS / 1000 + SETTLE_MARGIN_S)

    async def hang(self) -> None:
        """Hang up; returns once the break is long enough to be an on-hook, not a flash."""
        async with self._lock:
            self._need_off_hook("hang")
            self._set_hook(False)
            await asyncio.sleep(
                (self.slic.hook.flash_max_ms + SHK_DEBOUNCE_MS) / 1000 + SETTLE_MARGIN_S
            )

    async def flash(self) -> None:
        """A register-recall break halfway between the pulse and flash limits."""
        async with self._lock:
            self._need_off_hook("flash")
            hook = self.slic.hook
            self._set_hook(False)
            await asyncio.sleep((hook.pulse_max_ms + hook.flash_max_ms) / 2 / 1000)
            self._set_hook(True)
            await asyncio.sleep((hook.bounce_ms + SHK_DEBOUNCE_MS) / 1000 + SETTLE_MARGIN_S)

    async def press(self, keys: str) -> None:
        """Key DTMF tones: per key, Q1-Q4 set then StD high for 80 ms, then an 80 ms gap."""
        _check_keys(keys, DTMF_KEYS, "press", "0-9 * # A-D")
        pins = self.slic.pins
        std, q_pins = pins.std, (pins.q1, pins.q2, pins.q3, pins.q4)
        if std is None or any(pin is None for pin in q_pins):
            raise FakeHandsetError("press: this line has no MT8870 (dtmf is not mt8870)")
        async with self._lock:
            self._need_off_hook("press")
            for key in keys:
                code = _KEY_CODES[key]
                for bit, pin in enumerate(q_pins):
                    assert pin is not None
                    self.drive(pin, bool(code >> bit & 1))
                self.drive(std, True)
                await asyncio.sleep(KEY_TONE_S)
                self.drive(std, False)
                await asyncio.sleep(KEY_GAP_S)

    async def dial(self, digits: str) -> None:
        """Dial with a rotary dial: 10 pulses/s (60 ms break, 40 ms make), "0" is 10 pulses.

        Returns once the last digit has been recognised.
        """
        _check_keys(digits, frozenset("0123456789"), "dial", "0-9")
        async with self._lock:
            self._need_off_hook("dial")
            for digit in digits:
                for _ in range(10 if digit == "0" else int(digit)):
                    self._set_hook(False)
                    await asyncio.sleep(PULSE_BREAK_S)
                    self._set_hook(True)
                    await asyncio.sleep(PULSE_MAKE_S)
                await asyncio.sleep(DIAL_GAP_S)

    async def chatter(self, pin: int, hz: float, duration_ms: float, final_level: bool) -> None:
        """A bounce storm in real time: ``pin`` flips every half period of ``hz``, then settles."""
        if hz <= 0 or duration_ms < 0:
            raise FakeHandsetError(
                f"chatter needs hz > 0 and duration_ms >= 0 ({hz}, {duration_ms})"
            )
        start = self._loop.time()
        half_period = 1 / (2 * hz)
        level = self.gpio.level(pin)
        flips = int(duration_ms / 1000 / half_period)
        for n in range(1, flips + 1):
            await asyncio.sleep(max(0.0, start + n * half_period - self._loop.time()))
            level = not level
            self.drive(pin, level)
        await asyncio.sleep(max(0.0, start + duration_ms / 1000 - self._loop.time()))
        self.drive(pin, final_level)

    # --- the socket's command language -------------------------------------------------

    async def command(self, line: str) -> str:
        """Run one gpio.sock command; the answer line (``ok``, ``error ...`` or a value)."""
        words = line.split()
        if not words:
            return "error empty command; try help"
        name, args = words[0], words[1:]
        try:
            return await self._run(name, args)
        except (FakeHandsetError, GpioError) as exc:
            return f"error {exc}"

    async def _run(self, name: str, args: list[str]) -> str:
        arity = {"lift": 0, "hang": 0, "flash": 0, "help": 0, "press": 1, "dial": 1}
        arity |= {"read": 1, "history": 1, "drive": 2}
        if name not in arity:
            return f"error unknown command {name[:32]!r}; try help"
        if len(args) != arity[name]:
            return f"error {name} takes {arity[name]} argument(s): {_USAGE[name]}"
        if name == "lift":
            await self.lift()
        elif name == "hang":
            await self.hang()
        elif name == "flash":
            await self.flash()
        elif name == "press":
            await self.press(args[0])
        elif name == "dial":
            await self.dial(args[0])
        elif name == "drive":
            if args[1] not in ("0", "1"):
                return f"error drive: the level is 0 or 1 (got {args[1][:16]!r})"
            self.drive(_pin(args[0]), args[1] == "1")
        elif name == "read":
            return "1" if self.read(_pin(args[0])) else "0"
        elif name == "history":
            return json.dumps([_entry(e) for e in self.history(_count(args[0]))])
        else:
            return "ok " + " | ".join(_USAGE.values())
        return "ok"


_USAGE: dict[str, str] = {
    "lift": "lift",
    "hang": "hang",
    "flash": "flash",
    "press": "press KEYS",
    "dial": "dial DIGITS",
    "drive": "drive PIN 0|1",
    "read": "read PIN",
    "history": "history N",
    "help": "help",
}


def _check_keys(keys: str, allowed: frozenset[str], action: str, shown: str) -> None:
    if len(keys) > MAX_KEYS:
        raise FakeHandsetError(f"{action}: too many keys at once (max {MAX_KEYS})")
    if any(key not in allowed for key in keys):
        raise FakeHandsetError(f"{action}: keys are {shown}")


def _pin(text: str) -> int:
    if not text.isdigit() or len(text) > 6:
        raise FakeHandsetError(f"a pin is a number >= 0 (got {text[:16]!r})")
    return int(text)


def _count(text: str) -> int:
    if not text.isdigit() or len(text) > 6 or not 1 <= int(text) <= MAX_HISTORY:
        raise FakeHandsetError(f"history N: N is a number from 1 to {MAX_HISTORY}")
    return int(text)


def _entry(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "t": round(entry.t_ns / NS_PER_S, 6),
        "pin": entry.pin,
        "level": int(entry.level),
        "dir": entry.direction,
    }
