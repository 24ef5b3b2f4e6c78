"""The ``sim`` line: a handset (station) and a remote caller (trunk) on ``<runtime>/sim.sock``.

Protocol (DESIGN.md §6), one text command per line, each answered ``ok`` or
``error <reason>``::

    handset offhook | handset onhook | handset flash | handset press KEYS
    remote call [NUMBER] | remote press KEYS | remote say PATH | remote hangup

Keys go out in real time, as a handset sends them: each key is an 80 ms tone
then an 80 ms gap; ``press`` answers once the last key is sent.

``remote call [NUMBER]`` rings the box at the profile's cadence, one ``Ring`` event per
ring with the caller ID (NUMBER: up to 20 of ``0-9 + * #``, or ``withheld``; none: unknown).
The line never answers by itself: the service answers (``Answer``). The command answers
``ok`` once the call is answered, or once it stopped ringing otherwise (the handset was
lifted and took the call, or ``remote hangup`` from another connection); ``error`` when the
network gives up after :data:`MAX_RINGS` unanswered rings.

``remote say PATH`` streams a WAV (8 kHz, 16-bit, mono, at most :data:`MAX_SAY_S` s) as the
caller's voice, in real time (one 20 ms period at a time), to whoever captures the trunk's
audio; nobody capturing: the audio is lost, as on a real line. ``ok`` once all of it was
sent; ``error <reason>`` and nothing sent for a bad file or when no call is connected.
PATH is read by the daemon: give an absolute path (``gatewayd sim`` makes it absolute).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gatewayd.events import (
    DTMF_KEYS,
    WITHHELD,
    Digit,
    Flash,
    OffHook,
    OnHook,
    Party,
    RemoteAnswered,
    RemoteHangup,
    Ring,
)
from gatewayd.line.base import AudioSink, DriverTrunk, EventSink, LineDriver, Station
from gatewayd.paths import SIM_SOCKET
from gatewayd.pcm import PERIOD_BYTES, PERIOD_S, WavError, read_wav
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
#: Rings after which the network gives up on an unanswered call (about 2 minutes in France).
MAX_RINGS = 25
#: Longest WAV ``remote say`` accepts.
MAX_SAY_S = 600.0
#: Longest caller number.
MAX_NUMBER = 20
_NUMBER_CHARS = frozenset("0123456789+*#")


class SimLine(LineDriver):
    """A simulated line: the handset and the remote caller are sim-socket commands."""

    name = "sim"

    def __init__(
        self,
        emit: EventSink,
        socket_path: Path,
        *,
        ring_on_s: float = 1.5,
        ring_off_s: float = 3.5,
    ) -> None:
        super().__init__(emit)
        self.socket_path = socket_path
        self._ring_on_s = ring_on_s
        self._ring_off_s = ring_off_s
        self._socket = UnixSocketServer(
            socket_path, line_commands(self._command, MAX_LINE), max_line=MAX_LINE, what="sim line"
        )
        self._handset_off = False
        self._station_ringing = False
        # idle | ringing | connected (the box answered) | handset (the subscriber took it)
        self._remote_state = "idle"
        self._ring_task: asyncio.Task[None] | None = None
        self._call_settled: asyncio.Future[str | None] | None = None
        # Who captures each party's voice; the silence sent while they do not speak.
        self._captures: dict[Party, AudioSink] = {}
        self._line_tasks: dict[Party, asyncio.Task[None]] = {}
        self._saying: set[Party] = set()
        self._key_locks: dict[Party, asyncio.Lock] = {}
        self._say_lock = asyncio.Lock()
        self._station = _SimStation(self)
        self._trunk = DriverTrunk(self)

    @classmethod
    def from_profile(cls, profile: Profile, emit: EventSink, runtime_dir: Path) -> SimLine:
        """The sim line of a ``driver = "sim"`` profile, on ``<runtime_dir>/sim.sock``."""
        line = profile.line
        return cls(
            emit, runtime_dir / SIM_SOCKET, ring_on_s=line.ring_on_s, ring_off_s=line.ring_off_s
        )

    async def _start(self) -> None:
        await self._socket.start()

    def start_capture(self, on_audio: AudioSink, party: Party = "remote") -> None:
        """The caller's (or handset's) audio goes to ``on_audio``: ``say``, else silence.

        A real line never stops delivering audio while a call is up: between ``say``
        commands the party is silent, and the capture hears that silence in real time.
        """
        self._captures[party] = on_audio
        task = self._line_tasks.get(party)
        if task is None or task.done():
            loop = asyncio.get_running_loop()
            self._line_tasks[party] = loop.create_task(self._silent_line(party))

    def stop_capture(self, party: Party = "remote") -> None:
        """The caller's (or handset's) audio is dropped from now on."""
        self._captures.pop(party, None)
        task = self._line_tasks.pop(party, None)
        if task is not None:
            task.cancel()

    async def _silent_line(self, party: Party) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        index = 0
        silence = bytes(PERIOD_BYTES)
        while (sink := self._captures.get(party)) is not None:
            if party not in self._saying:
                sink(silence)
            index += 1
            await asyncio.sleep(max(0.0, start + index * PERIOD_S - loop.time()))

    async def _close(self) -> None:
        self._end_remote(None)
        await self._socket.close()

    def status(self) -> dict[str, Any]:
        return {
            "handset": "off-hook" if self._handset_off else "on-hook",
            "remote": self._remote_state,
            "ringing": self._remote_state == "ringing",
            "station_ringing": self._station_ringing,
        }

    # --- station and trunk (called by the service, on the loop) ---------------------

    def _ring_station(self, on: bool) -> None:
        if on != self._station_ringing:
            LOGGER.info("sim: the handset %s ringing", "starts" if on else "stops")
        self._station_ringing = on

    def answer(self) -> None:
        """The service answers the ringing call (the trunk's ``answer``)."""
        if self._remote_state != "ringing":
            LOGGER.info("sim: no ringing call to answer")
            return
        self._stop_ringing()
        self._remote_state = "connected"
        LOGGER.info("sim: the box answered the remote call")
        # Never emit from inside the service's own action: the event comes next on the loop.
        asyncio.get_running_loop().call_soon(self._announce_answer)

    def _announce_answer(self) -> None:
        if self._remote_state == "connected":
            self.emit(RemoteAnswered())
            self._settle(None)

    def hang_up(self) -> None:
        """The box hangs up the remote caller (ringing or connected)."""
        if self._remote_state != "idle":
            LOGGER.info("sim: the box hung up the remote call")
        self._end_remote(None)

    # --- the socket ----------------------------------------------------------------

    async def _command(self, line: str) -> str:
        words = line.split()
        party, action, args = words[0], words[1] if len(words) > 1 else "", words[2:]
        try:
            if party == "handset":
                if action == "say":  # the subscriber speaks into the handset (a greeting)
                    return await self._say(
                        "handset", line.split(None, 2)[2] if len(words) > 2 else ""
                    )
                return await self._handset(action, args)
            if party == "remote":
                if action == "say":  # the path may hold spaces: it is the rest of the line
                    return await self._say(
                        "remote", line.split(None, 2)[2] if len(words) > 2 else ""
                    )
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
            self._station_ringing = False
            if self._remote_state == "ringing":
                LOGGER.info("sim: the handset took the ringing call")
                self._stop_ringing()
                self._remote_state = "handset"
                self._settle(None)
            self.emit(OffHook())
        elif action == "onhook":
            if not self._handset_off:
                raise _SimError("the handset is already on-hook")
            self._handset_off = False
            if self._remote_state == "handset":
                self._end_remote(None)
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
        if action == "hangup" and args:
            raise _SimError("remote hangup takes no argument")
        if action == "call":
            if len(args) > 1:
                raise _SimError("remote call takes at most one argument: the caller's NUMBER")
            caller = _caller_id(args[0]) if args else None
            if self._remote_state != "idle":
                raise _SimError(f"a remote call is already {self._remote_state}")
            if self._handset_off:
                raise _SimError("line busy: the handset is off-hook")
            await self._call(caller)
        elif action == "press":
            if self._remote_state not in ("connected", "handset"):
                raise _SimError("no remote call in progress (remote call first)")
            await self._press("remote", args)
        elif action == "hangup":
            if self._remote_state == "idle":
                raise _SimError("no remote call to hang up")
            # Said before the state goes idle: the box's own hang_up() that may follow logs
            # nothing, so the log never blames the box for the caller's hang-up.
            LOGGER.info("sim: the remote caller hung up")
            self._end_remote(None)
            self.emit(RemoteHangup())
        else:
            raise _SimError(f"unknown remote action {action[:32]!r}: call, press, say, hangup")
        return "ok"

    def _speaking(self, party: Party) -> bool:
        if party == "handset":
            return self._handset_off
        return self._remote_state in ("connected", "handset")

    async def _say(self, party: Party, argument: str) -> str:
        path = Path(argument.strip())
        if not argument.strip():
            raise _SimError(f"{party} say takes one argument: PATH of an 8 kHz 16-bit mono WAV")
        if not self._speaking(party):
            raise _SimError(
                "lift the handset first (handset offhook)"
                if party == "handset"
                else "no remote call connected (remote call first)"
            )
        try:
            pcm = await asyncio.to_thread(read_wav, path, max_seconds=MAX_SAY_S)
        except WavError as exc:
            raise _SimError(str(exc)) from None
        async with self._say_lock:  # two say commands never mix their audio
            loop = asyncio.get_running_loop()
            start = loop.time()
            self._saying.add(party)
            try:
                for index, offset in enumerate(range(0, len(pcm), PERIOD_BYTES)):
                    if not self._speaking(party):
                        raise _SimError(f"the {party} hung up while the audio was being sent")
                    sink = self._captures.get(party)
                    if sink is not None:
                        sink(pcm[offset : offset + PERIOD_BYTES])
                    # Paced against the start, so the stream never drifts from real time.
                    await asyncio.sleep(max(0.0, start + (index + 1) * PERIOD_S - loop.time()))
            finally:
                self._saying.discard(party)
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
                if party == "remote" and self._remote_state not in ("connected", "handset"):
                    raise _SimError("the remote call ended while keys were being sent")
                if party == "handset" and not self._handset_off:
                    raise _SimError("the handset went on-hook while keys were being sent")
                # A decoder reports the key as its tone starts being recognised.
                self.emit(Digit(key, party))
                await asyncio.sleep(KEY_TONE_S + KEY_GAP_S)

    async def _call(self, caller: str | None) -> None:
        self._remote_state = "ringing"
        settled: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._call_settled = settled
        self._ring_task = asyncio.create_task(self._ring(caller))
        error = await settled
        if error is not None:
            raise _SimError(error)

    async def _ring(self, caller: str | None) -> None:
        for _ in range(MAX_RINGS):
            self.emit(Ring(caller))
            await asyncio.sleep(self._ring_on_s + self._ring_off_s)
        LOGGER.info("sim: no answer after %d rings; the caller gives up", MAX_RINGS)
        self._ring_task = None  # this task is ending: do not cancel it
        self._end_remote(f"the call was not answered after {MAX_RINGS} rings")
        self.emit(RemoteHangup())

    def _settle(self, error: str | None) -> None:
        settled, self._call_settled = self._call_settled, None
        if settled is not None and not settled.done():
            settled.set_result(error)

    def _end_remote(self, error: str | None) -> None:
        self._stop_ringing()
        self._remote_state = "idle"
        self.stop_capture()
        self._settle(error)

    def _stop_ringing(self) -> None:
        if self._ring_task is not None and not self._ring_task.done():
            self._ring_task.cancel()
        self._ring_task = None


class _SimStation(Station):
    """The sim handset: its ringing is shown in ``status`` (``station_ringing``); it speaks
    with ``handset say PATH``."""

    def __init__(self, line: SimLine) -> None:
        self._line = line

    def ring(self, on: bool) -> None:
        self._line._ring_station(on)

    def start_capture(self, on_audio: AudioSink) -> bool:
        self._line.start_capture(on_audio, "handset")
        return True

    def stop_capture(self) -> None:
        self._line.stop_capture("handset")


def _caller_id(number: str) -> str:
    """The caller ID of ``remote call NUMBER``; raises _SimError for a malformed number."""
    if number.lower() in (WITHHELD, "private"):
        return WITHHELD
    if len(number) > MAX_NUMBER or not set(number) <= _NUMBER_CHARS:
        raise _SimError(f"caller number must be up to {MAX_NUMBER} of 0-9 + * #, or withheld")
    return number


class _SimError(Exception):
    """A sim command that cannot be carried out; answered ``error <reason>``."""
