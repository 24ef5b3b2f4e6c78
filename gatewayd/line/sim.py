"""The ``sim`` line: a handset and a remote caller driven through ``<runtime>/sim.sock``.

Protocol (DESIGN.md §6), one text command per line, each answered ``ok`` or
``error <reason>``::

    handset offhook | handset onhook | handset flash | handset press KEYS
    remote call | remote press KEYS | remote hangup

Keys go out in real time, as a handset sends them: each key is an 80 ms tone
then an 80 ms gap; ``press`` answers once the last key is sent. ``remote call``
rings the box at the profile's cadence and is answered after the profile's
number of rings; it answers ``ok`` once the call is answered.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gatewayd.events import (
    DTMF_KEYS,
    Digit,
    Flash,
    OffHook,
    OnHook,
    Party,
    RemoteAnswered,
    RemoteHangup,
    Ring,
)
from gatewayd.line.base import EventSink, LineDriver
from gatewayd.unixsock import UnixSocketServer, line_commands

if TYPE_CHECKING:
    from gatewayd.profile import Profile

LOGGER = logging.getLogger(__name__)

KEY_TONE_S = 0.080
KEY_GAP_S = 0.080
#: Longest command line accepted; a longer one is answered with an error and dropped.
MAX_LINE = 1024
#: Longest KEYS argument of one ``press`` (a handset could not send more in one go).
MAX_KEYS = 64


class SimLine(LineDriver):
    """A simulated line: the handset and the remote caller are sim-socket commands."""

    name = "sim"

    def __init__(
        self,
        emit: EventSink,
        socket_path: Path,
        *,
        answer_after_rings: int = 2,
        ring_on_s: float = 1.5,
        ring_off_s: float = 3.5,
    ) -> None:
        super().__init__(emit)
        self.socket_path = socket_path
        self._answer_after_rings = answer_after_rings
        self._ring_on_s = ring_on_s
        self._ring_off_s = ring_off_s
        self._socket = UnixSocketServer(
            socket_path, line_commands(self._command, MAX_LINE), max_line=MAX_LINE, what="sim line"
        )
        self._handset_off = False
        self._remote_state = "idle"  # idle | ringing | connected
        self._ring_task: asyncio.Task[None] | None = None
        self._key_locks: dict[Party, asyncio.Lock] = {}
        self._last_keys = ""

    @classmethod
    def from_profile(cls, profile: Profile, emit: EventSink, runtime_dir: Path) -> SimLine:
        """The sim line of a ``driver = "sim"`` profile, on ``<runtime_dir>/sim.sock``."""
        line = profile.line
        return cls(
            emit,
            runtime_dir / "sim.sock",
            answer_after_rings=line.answer_after_rings,
            ring_on_s=line.ring_on_s,
            ring_off_s=line.ring_off_s,
        )

    async def _start(self) -> None:
        await self._socket.start()

    async def _close(self) -> None:
        if self._ring_task:
            self._ring_task.cancel()
        await self._socket.close()

    def hang_up(self) -> None:
        """The box hangs up the remote caller."""
        if self._remote_state != "idle":
            LOGGER.info("sim: the box hung up the remote call")
        self._stop_ringing()
        self._remote_state = "idle"

    def status(self) -> dict[str, Any]:
        return {
            "handset": "off-hook" if self._handset_off else "on-hook",
            "remote": self._remote_state,
            "ringing": self._remote_state == "ringing",
        }

    # --- the socket ----------------------------------------------------------------

    async def _command(self, line: str) -> str:
        words = line.split()
        party, action, args = words[0], words[1] if len(words) > 1 else "", words[2:]
        try:
            if party == "handset":
                return await self._handset(action, args)
            if party == "remote":
                return await self._remote(action, args)
        except _SimError as exc:
            return f"error {exc}"
        return f"error unknown party {party[:32]!r}: use handset or remote"

    async def _handset(self, action: str, args: list[str]) -> str:
        if action in ("offhook", "onhook", "flash") and args:
            raise _SimError(f"handset {action} takes no argument")
        if action == "offhook":
            if self._handset_off:
                raise _SimError("the handset is already off-hook")
            self._handset_off = True
            self.emit(OffHook())
        elif action == "onhook":
            if not self._handset_off:
                raise _SimError("the handset is already on-hook")
            self._handset_off = False
            self.emit(OnHook())
        elif action == "flash":
            if not self._handset_off:
                raise _SimError("flash needs the handset off-hook")
            self.emit(Flash())
        elif action == "press":
            if not self._handset_off:
                raise _SimError("lift the handset first (handset offhook)")
            await self._press("handset", args)
        else:
            raise _SimError(
                f"unknown handset action {action[:32]!r}: offhook, onhook, flash, press"
            )
        return "ok"

    async def _remote(self, action: str, args: list[str]) -> str:
        if action in ("call", "hangup") and args:
            raise _SimError(f"remote {action} takes no argument")
        if action == "call":
            if self._remote_state != "idle":
                raise _SimError(f"a remote call is already {self._remote_state}")
            if self._handset_off:
                raise _SimError("line busy: the handset is off-hook")
            await self._ring_and_answer()
        elif action == "press":
            if self._remote_state != "connected":
                raise _SimError("no remote call in progress (remote call first)")
            await self._press("remote", args)
        elif action == "hangup":
            if self._remote_state == "idle":
                raise _SimError("no remote call to hang up")
            was_connected = self._remote_state == "connected"
            self.hang_up()
            if was_connected:
                self.emit(RemoteHangup())
        else:
            raise _SimError(f"unknown remote action {action[:32]!r}: call, press, hangup")
        return "ok"

    async def _press(self, party: Party, args: list[str]) -> None:
        if len(args) != 1:
            raise _SimError("press takes one argument: KEYS (0-9 * #)")
        keys = args[0]
        if len(keys) > MAX_KEYS:
            raise _SimError(f"too many keys at once (max {MAX_KEYS})")
        bad = sorted({k for k in keys if k not in DTMF_KEYS})
        if bad:
            raise _SimError(f"invalid key(s) {''.join(bad)[:16]!r}: keys are 0-9 * # A-D")
        lock = self._key_locks.setdefault(party, asyncio.Lock())
        async with lock:  # two press commands never interleave their tones
            for key in keys:
                if party == "remote" and self._remote_state != "connected":
                    raise _SimError("the remote call ended while keys were being sent")
                if party == "handset" and not self._handset_off:
                    raise _SimError("the handset went on-hook while keys were being sent")
                # A decoder reports the key as its tone starts being recognised.
                self.emit(Digit(key, party))
                await asyncio.sleep(KEY_TONE_S + KEY_GAP_S)

    async def _ring_and_answer(self) -> None:
        self._remote_state = "ringing"
        answered = asyncio.get_running_loop().create_future()
        self._ring_task = asyncio.create_task(self._ring(answered))
        try:
            await answered
        except asyncio.CancelledError:
            raise _SimError("the call was not answered") from None

    async def _ring(self, answered: asyncio.Future[None]) -> None:
        rings = 0
        try:
            while self._remote_state == "ringing":
                rings += 1
                self.emit(Ring())
                if rings >= self._answer_after_rings:
                    self._remote_state = "connected"
                    LOGGER.info("sim: remote call answered after %d ring(s)", rings)
                    self.emit(RemoteAnswered())
                    answered.set_result(None)
                    return
                await asyncio.sleep(self._ring_on_s + self._ring_off_s)
        finally:
            if not answered.done():
                answered.cancel()

    def _stop_ringing(self) -> None:
        if self._ring_task is not None and not self._ring_task.done():
            self._ring_task.cancel()
        self._ring_task = None


class _SimError(Exception):
    """A sim command that cannot be carried out; answered ``error <reason>``."""
