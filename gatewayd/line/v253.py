"""The ``v253-modem`` line: a V.253 voice modem on a serial port, also the box's audio path.

:class:`V253ModemLine` opens the profile's port with pyserial and reads it from the asyncio
loop (``loop.add_reader`` on the port's fd, ``timeout=0``): no reading thread, no polling.
Every read goes through :class:`~gatewayd.line.dle.DleDecoder` first (``<DLE>`` events:
rings, DTMF keys, handset hook, remote hang-up) and the rest through
:class:`~gatewayd.line.at.AtResponseReader` (``OK``, ``CONNECT``, ``RING``, caller ID).
Commands are sent one at a time under one lock, each waiting for its final result for at
most ``line.command_timeout_s``; the sequences (init, answer, play, hang-up) are those of
the profile's modem family (:data:`gatewayd.line.at.FAMILIES`).

What the driver reports (:mod:`gatewayd.events`):

The modem is both a trunk (its LINE jack: :meth:`V253ModemLine.trunk`) and a station (its
PHONE jack, which the network rings by itself: :meth:`V253ModemLine.station`).

- ``<DLE>R`` or ``RING`` -> :class:`Ring` with the caller ID the modem sent between the
  first and second ring (``AT+VCID=1``: ``NMBR=``; ``P``/``O`` -> :data:`WITHHELD`); the
  driver never answers by itself: the service's ``Answer`` runs the family's answer
  sequence -> :class:`RemoteAnswered`; a caller who gives up while it rings (no ring for
  one cadence) -> :class:`RemoteHangup`;
- :meth:`~_ModemTrunk.start_capture`: ``+VRX``, the DLE-unescaped 8-bit samples converted
  to S16_LE for the sink; ``<DLE>!`` stops it (so does a playback, which needs the line:
  the receive starts again after it while the capture is on); ``<DLE>s`` (silence) is
  only logged then, the recorder judges silence;
- ``<DLE>H``/``h`` (Conexant ``P``/``p``) -> :class:`OffHook` / :class:`OnHook`;
- DTMF keys -> :class:`Digit`, from party ``remote`` during an answered call, else ``handset``;
- a hang-up code (busy, dial tone, loop break, silence...) or an unsolicited ``NO CARRIER``
  during a remote call -> :class:`RemoteHangup`, and the driver hangs up;
- the port failing or vanishing -> :class:`LineFault`; the driver then reopens the port
  with exponential back-off (:data:`RECONNECT_FIRST_S` doubling up to
  :data:`RECONNECT_MAX_S`) and re-runs the init. A modem missing at start is waited for
  the same way (the daemon serves its sockets meanwhile); a modem that refuses the
  family's init stops the start with a :class:`~gatewayd.errors.DeviceError`.

:meth:`V253ModemLine.audio_output` is the box's :class:`~gatewayd.audio.AudioOutput`: prompts
and tones are played with ``+VTX``, converted to the family's 8-bit format, DLE-escaped and
paced at real time at most :data:`MAX_AHEAD_PERIODS` periods ahead, so a barge-in
(``<DLE><CAN><DLE><ETX>`` after flushing the OS queue) cuts them within 60 ms.

Raw serial bytes are logged at :data:`TRACE` only, with DTMF keys masked; a key is never
logged, and a caller's number only at DEBUG.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gatewayd.audio import (
    AudioClip,
    ClipStartCallback,
    DoneCallback,
    PlayJob,
    checked_clips,
    clip_periods,
    run_callback,
)
from gatewayd.errors import DeviceError, ProfileError
from gatewayd.events import (
    WITHHELD,
    Digit,
    LineFault,
    OffHook,
    OnHook,
    Party,
    RemoteAnswered,
    RemoteHangup,
    Ring,
)
from gatewayd.line import dle
from gatewayd.line.at import (
    AtLine,
    AtLineKind,
    AtResponseReader,
    ModemFamily,
    convert_s16le,
    detect_family,
    encode_command,
    expected_results,
    get_family,
    to_s16le,
)
from gatewayd.line.base import AudioSink, DriverTrunk, EventSink, LineDriver, Station
from gatewayd.logsetup import TRACE
from gatewayd.pcm import PERIOD_FRAMES
from gatewayd.seriallink import Backoff, SerialLink

if TYPE_CHECKING:
    from gatewayd.profile import Profile

LOGGER = logging.getLogger(__name__)

#: First wait before reopening a lost modem; doubled after each failed try ...
RECONNECT_FIRST_S = 1.0
#: ... up to this.
RECONNECT_MAX_S = 30.0
#: A ringing call counts as given up when no ring came for one cadence plus this margin.
RING_SILENCE_MARGIN_S = 3.0
#: Periods written ahead of real time: bounds how late a barge-in cuts a prompt (60 ms).
MAX_AHEAD_PERIODS = 3
#: Most bytes queued for a modem that does not take them (1 s of audio): then it is stuck.
MAX_OUTBOX_BYTES = 8000
#: How long close() lets a playback end and the line hang up before closing the port anyway.
CLOSE_GRACE_S = 2.0

CallState = Literal["idle", "ringing", "answering", "remote"]
_PortState = Literal["closed", "opening", "connected", "lost"]


class ModemCommandError(DeviceError):
    """The modem answered a command with an error result (``ERROR``, ``NO CARRIER``...)."""


class ModemTimeoutError(ModemCommandError):
    """The modem did not answer a command within ``line.command_timeout_s``."""


class ModemLostError(DeviceError):
    """The modem's port failed or is closed: the command or playback cannot go on."""


def _is_off_hook_command(command: str) -> bool:
    """True for ``AT+VLS=1``: the modem takes the line (it may need time to settle)."""
    return command.upper().replace(" ", "") == "AT+VLS=1"


class V253ModemLine(LineDriver):
    """A V.253 voice modem: line events from its ``<DLE>`` stream, prompts through ``+VTX``.

    ``off_hook_settle_s`` overrides the family's wait after ``AT+VLS=1``; the reconnect
    back-off and the pacing ``clock`` (seconds, monotonic) are injectable for tests.
    """

    name = "v253-modem"

    def __init__(
        self,
        emit: EventSink,
        port: str,
        *,
        family: str = "generic",
        baudrate: int = 115200,
        command_timeout_s: float = 3.0,
        ring_silence_s: float = 1.5 + 3.5 + RING_SILENCE_MARGIN_S,
        off_hook_settle_s: float | None = None,
        reconnect_first_s: float = RECONNECT_FIRST_S,
        reconnect_max_s: float = RECONNECT_MAX_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(emit)
        self._backoff = Backoff(reconnect_first_s, reconnect_max_s)
        self.port = port
        self.family: ModemFamily = get_family(family)
        self.baudrate = baudrate
        self.command_timeout_s = command_timeout_s
        self.ring_silence_s = ring_silence_s
        self.off_hook_settle_s = (
            self.family.off_hook_settle_s if off_hook_settle_s is None else off_hook_settle_s
        )
        self.reconnect_first_s = reconnect_first_s
        self.reconnect_max_s = reconnect_max_s
        self.clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._link = SerialLink(
            port,
            baudrate,
            what="modem port",
            hint="Is the modem plugged in? Check line.port in the profile (ls -l /dev/ttyACM* "
            "/dev/serial/by-id/) and that gatewayd may open it (group dialout)",
            on_data=self._on_readable,
            on_fault=self._fault,
        )
        self._port_state: _PortState = "closed"
        self._decoder = dle.DleDecoder()
        self._reader = AtResponseReader()
        self._io_lock = asyncio.Lock()
        # Bytes the port did not take yet (a full tty buffer).
        self._outbox = self._link.outbox
        self._final: asyncio.Future[AtLine] | None = None
        self._info_lines: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()  # every background task
        self._io_tasks: set[asyncio.Task[None]] = set()  # those a lost modem makes pointless
        self._reconnect_handle: asyncio.TimerHandle | None = None
        self._ring_timer: asyncio.TimerHandle | None = None
        self._call: CallState = "idle"
        self._rings = 0
        self._handset_off = False
        self._line_off_hook = False  # the modem holds the line (+VLS=1, answered)
        self._audio = ModemAudioOutput(self)
        self._caller: str | None = None  # caller ID of the ringing call (never logged)
        self._capture: AudioSink | None = None
        self._receiving = False  # the modem is in the +VRX data state
        self._vrx_pending = False  # AT+VRX sent, CONNECT not seen yet
        self._trunk = DriverTrunk(self, self._audio)  # the LINE jack
        self._station = _ModemStation(self)  # the PHONE jack, rung by the network itself

    @classmethod
    def from_profile(cls, profile: Profile, emit: EventSink, runtime_dir: Path) -> V253ModemLine:
        """The modem line of a ``driver = "v253-modem"`` profile (``runtime_dir`` is unused)."""
        line = profile.line
        modem = line.modem
        if modem is None:
            raise ProfileError(
                f"{profile.source}: line: the v253-modem driver needs line.port (and family)"
            )
        return cls(
            emit,
            modem.port,
            family=modem.family,
            baudrate=modem.baudrate,
            command_timeout_s=modem.command_timeout_s,
            ring_silence_s=line.ring_on_s + line.ring_off_s + RING_SILENCE_MARGIN_S,
        )

    # --- what the daemon sees ------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the port is open and the modem initialised."""
        return self._port_state == "connected"

    def audio_output(self) -> ModemAudioOutput:
        """The modem's ``+VTX`` player (one per line)."""
        return self._audio

    def status(self) -> dict[str, Any]:
        """Port, family, connection, call and handset state (never a key)."""
        return {
            "port": self.port,
            "family": self.family.name,
            "connected": self.connected,
            "call": self._call,
            "handset": "off-hook" if self._handset_off else "on-hook",
        }

    def hang_up(self) -> None:
        """End the remote call (the IVR's ``Hangup``): stop audio, run the hang-up sequence."""
        if self._call in ("remote", "answering"):
            LOGGER.info("modem on %s: hanging up the remote call", self.port)
        self._call_over()
        self._audio.stop()
        if self.connected:
            self._spawn(self._hang_up_line(), "hang up")

    def answer(self) -> None:
        """Answer the ringing call (the service's ``Answer``): the family's answer sequence."""
        if self._call != "ringing" or not self.connected:
            LOGGER.info("modem on %s: no ringing call to answer (%s)", self.port, self._call)
            return
        self._cancel_ring_timer()
        self._call = "answering"
        self._spawn(self._answer(), "answer")

    def start_capture(self, on_audio: AudioSink) -> None:
        """Send the caller's audio to ``on_audio`` (``+VRX``) until :meth:`stop_capture`."""
        self._capture = on_audio
        if self._call == "remote" and self.connected:
            self._spawn(self._start_receive(), "start receive")

    def stop_capture(self) -> None:
        """Stop the caller's audio (``<DLE>!``); safe when not capturing."""
        self._capture = None
        if self.connected and (self._receiving or self._vrx_pending):
            self._spawn(self._stop_receive(), "stop receive")

    def _call_over(self) -> None:
        self._call = "idle"
        self._rings = 0
        self._caller = None
        self._capture = None

    # --- life cycle ----------------------------------------------------------------------

    async def _start(self) -> None:
        """Open and initialise the modem; a modem that is not there yet is waited for.

        A missing port is not fatal (USB modems may enumerate after the daemon starts, and
        the control socket must serve meanwhile); a modem that refuses the family's init is:
        that is a profile to fix.
        """
        self._loop = asyncio.get_running_loop()
        self._port_state = "opening"
        try:
            self._open_port()
        except DeviceError as error:
            LOGGER.error(
                "%s; gatewayd runs without its line until the modem appears (next try in %g s)",
                error,
                self.reconnect_first_s,
            )
            self._port_state = "lost"
            self._backoff.reset()
            self._schedule_reconnect()
            return
        try:
            await self._initialise()
        except DeviceError:
            self._port_state = "closed"
            raise
        LOGGER.info(
            "modem on %s ready (family %s, %d baud)", self.port, self.family.name, self.baudrate
        )

    async def _close(self) -> None:
        self._audio.close()
        if self._reconnect_handle is not None:
            self._reconnect_handle.cancel()
        self._cancel_ring_timer()
        if self.connected and self._line_off_hook:
            # Do not leave the line off-hook: the subscriber's phone would stay dead.
            with contextlib.suppress(DeviceError, TimeoutError):
                await asyncio.wait_for(self._hang_up_line(), CLOSE_GRACE_S)
        self._port_state = "closed"
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_GRACE_S)
        self._close_port()

    async def _connect(self) -> None:
        """Open the port and run the family's init; raises DeviceError saying what to check."""
        self._port_state = "opening"
        self._open_port()
        await self._initialise()

    async def _initialise(self) -> None:
        """Run the family's init on the open port (closed again if it fails)."""
        try:
            async with self._io_lock:
                await self._run_init()
        except DeviceError:
            self._close_port()
            raise
        self._port_state = "connected"

    def _open_port(self) -> None:
        assert self._loop is not None
        self._link.open(self._loop)
        self._decoder.reset()
        self._decoder.in_stream = False
        self._reader.reset()
        self._line_off_hook = False
        self._receiving = self._vrx_pending = False

    def _close_port(self) -> None:
        if not self._link.is_open:
            return
        self._link.close()
        self._line_off_hook = False
        self._fail_waiter(ModemLostError(f"modem on {self.port} is not connected"))

    async def _run_init(self) -> None:
        try:
            for command in self.family.init:
                await self._command(command)
        except ModemTimeoutError:
            raise
        except ModemCommandError as error:
            raise ModemCommandError(
                f"{error}; during the init of family {self.family.name!r}: check line.family "
                "in the profile (generic, usr5637 or conexant)"
            ) from error
        self._line_off_hook = False
        # ATI0 only tells the technician when the profile names another family than the modem's.
        try:
            await self._command("ATI0")
        except ModemCommandError:
            return
        for reply in self._info_lines:
            seen = detect_family(reply)
            if seen is not None and seen.name != self.family.name:
                LOGGER.warning(
                    'modem on %s identifies as %s (ATI0 "%s") but the profile says family %r; '
                    'set line.family = "%s" if prompts or hook events misbehave',
                    self.port,
                    seen.description,
                    reply,
                    self.family.name,
                    seen.name,
                )

    # --- device loss and reconnection ------------------------------------------------------

    def _fault(self, reason: str) -> None:
        """The port failed: report it once, forget the call, and start reconnecting."""
        if self._port_state != "connected" or self._closed:
            # Opening (start or a reconnect try): the opener reports and retries.
            self._close_port()
            return
        self._port_state = "lost"
        self._close_port()
        current = asyncio.current_task()
        for task in list(self._io_tasks):
            if task is not current:
                task.cancel()
        self._audio.abandon()
        self._cancel_ring_timer()
        self._call_over()
        handset_was_off, self._handset_off = self._handset_off, False
        LOGGER.error(
            "modem on %s lost: %s. Is the modem plugged in? Check its USB cable and that %s "
            "exists; retrying in %g s (calls cannot be taken meanwhile)",
            self.port,
            reason,
            self.port,
            self.reconnect_first_s,
        )
        self.emit(LineFault(f"modem on {self.port}: {reason}"))
        if handset_was_off:
            # The modem reports hook changes only: after a loss the handset state is unknown,
            # and a call flow left "off-hook" would ignore the next lift.
            self.emit(OnHook())
        self._backoff.reset()
        self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        assert self._loop is not None
        self._reconnect_handle = self._loop.call_later(self._backoff.next(), self._start_reconnect)

    def _start_reconnect(self) -> None:
        self._reconnect_handle = None
        if self._closed:
            return
        self._spawn(self._reconnect(), "reconnect", io=False)

    async def _reconnect(self) -> None:
        first_try = self._backoff.delay == min(2 * self.reconnect_first_s, self.reconnect_max_s)
        try:
            await self._connect()
        except DeviceError as error:
            self._port_state = "lost"
            # Loud once, then quiet: an unplugged modem must not flood the journal.
            LOGGER.log(
                logging.WARNING if first_try else logging.DEBUG,
                "modem on %s still unavailable (%s); next try in %g s",
                self.port,
                error,
                self._backoff.delay,
            )
            if not self._closed:
                self._schedule_reconnect()
            return
        LOGGER.info("modem on %s is back (family %s)", self.port, self.family.name)

    # --- the serial port ---------------------------------------------------------------------

    def _on_readable(self, data: bytes) -> None:
        """What the modem sent: decode it, act on events and lines."""
        if LOGGER.isEnabledFor(TRACE):
            LOGGER.log(TRACE, "modem %s <- %r", self.port, dle.redact_dtmf(data))
        while data and self._link.is_open:  # an event's consequences may close the port
            data = self._on_data(data)

    def _on_data(self, data: bytes) -> bytes:
        """Act on one read: voice samples while receiving, else text; what is left to read."""
        if self._receiving:
            audio, events, rest = self._decoder.feed_stream(data)
            self._deliver(audio)
            if not self._decoder.in_stream:
                self._receiving = False  # <DLE><ETX>: the modem's text follows
            self._on_modem_events(events)
            return rest
        text, events = self._decoder.feed(data)
        self._on_modem_events(events)
        if not self._link.is_open:
            return b""
        audio = b""
        if self._vrx_pending:
            # The samples follow the CONNECT of +VRX at once, in the same read.
            end = text.find(b"CONNECT")
            end = text.find(b"\n", end) if end >= 0 else -1
            if end >= 0:
                text, audio = text[: end + 1], text[end + 1 :]
        for line in self._reader.feed(text):
            self._on_line(line)
        self._deliver(audio)
        return b""

    def _deliver(self, samples: bytes) -> None:
        """The caller's samples (the family's 8-bit format) to the capture sink, as S16_LE."""
        if samples and self._receiving and self._capture is not None:
            self._capture(to_s16le(samples, self.family.sample_format))

    def _on_modem_events(self, events: list[dle.ModemEvent]) -> None:
        for event in events:
            self._on_modem_event(event)
            if not self._link.is_open:
                return  # an event's consequences closed the port

    def _write(self, data: bytes, *, audio: bool = False) -> None:
        """Queue ``data`` for the modem and write what the port takes now; never blocks.

        A failure is a device fault (:class:`ModemLostError`); so is a modem that stops
        taking data (more than :data:`MAX_OUTBOX_BYTES` queued).
        """
        if not self._link.is_open:
            raise ModemLostError(f"modem on {self.port} is not connected")
        if LOGGER.isEnabledFor(TRACE):
            if audio:
                LOGGER.log(TRACE, "modem %s -> %d audio bytes", self.port, len(data))
            else:
                # Commands from the family tables and DLE controls: never a key. (redact_dtmf
                # would turn "ATZ" into "?TZ": a leading A may be a key after a split DLE.)
                LOGGER.log(TRACE, "modem %s -> %r", self.port, data)
        if len(self._outbox) + len(data) > MAX_OUTBOX_BYTES:
            self._fault(f"the modem takes no more data ({len(self._outbox)} bytes waiting)")
            raise ModemLostError(f"modem on {self.port} takes no more data")
        try:
            self._outbox.write(data)
        except OSError as error:
            self._fault(f"writing to the port failed ({error})")
            raise ModemLostError(f"modem on {self.port}: write failed ({error})") from error

    def _flush_output(self) -> None:
        """Drop what is queued for the modem, ours and the OS's (barge-in)."""
        if not self._link.is_open:
            raise ModemLostError(f"modem on {self.port} is not connected")
        try:
            self._link.flush_output()
        except OSError as error:
            self._fault(f"flushing the port failed ({error})")
            raise ModemLostError(f"modem on {self.port}: flush failed ({error})") from error

    async def _command(self, command: str) -> AtLine:
        """Send one AT command; its final result, or ModemCommandError/ModemTimeoutError."""
        return await self._send_and_wait(
            encode_command(command), command, expected_results(command)
        )

    async def _send_and_wait(self, data: bytes, what: str, expected: Collection[str]) -> AtLine:
        """Write ``data`` and wait for the next final result; it must be one of ``expected``."""
        assert self._loop is not None
        waiter: asyncio.Future[AtLine] = self._loop.create_future()
        self._fail_waiter(ModemCommandError(f"{what} sent before the previous answer"))
        self._final = waiter
        self._info_lines = []
        self._write(data, audio=False)
        try:
            result = await asyncio.wait_for(waiter, self.command_timeout_s)
        except TimeoutError:
            raise ModemTimeoutError(
                f"modem on {self.port} did not answer {what} within {self.command_timeout_s:g} s "
                "(line.command_timeout_s)"
            ) from None
        finally:
            if self._final is waiter:
                self._final = None
        if result.text.upper().split(" ", 1)[0] not in expected:
            raise ModemCommandError(
                f"modem on {self.port} answered {result.text!r} to {what} "
                f"(expected {' or '.join(sorted(expected))})"
            )
        return result

    def _fail_waiter(self, error: Exception) -> None:
        waiter, self._final = self._final, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
            waiter.exception()  # retrieved here: nobody may be awaiting it any more

    # --- what the modem says -----------------------------------------------------------------

    def _on_modem_event(self, event: dle.ModemEvent) -> None:
        match event:
            case dle.RingEvent():
                self._on_ring()
            case dle.DtmfDigit(key=key):
                party: Party = "remote" if self._call == "remote" else "handset"
                self.emit(Digit(key, party))
            case dle.HandsetOffHook():
                self._on_handset(off_hook=True)
            case dle.HandsetOnHook():
                self._on_handset(off_hook=False)
            case dle.RemoteHangup(reason="silence") if self._receiving:
                LOGGER.debug("modem on %s: silence from the caller", self.port)
            case dle.RemoteHangup(reason=reason):
                self._on_remote_hangup(reason)
            case _:
                pass  # tone starts/ends and unused codes: the decoder logs them at DEBUG

    def _on_line(self, line: AtLine) -> None:
        if line.kind is AtLineKind.FINAL:
            if self._vrx_pending and line.text.upper().startswith("CONNECT"):
                self._vrx_pending = False
                self._receiving = self._decoder.in_stream = True
            waiter = self._final
            if waiter is not None and not waiter.done():
                waiter.set_result(line)
            elif line.text.upper() == "NO CARRIER":
                self._on_remote_hangup("no_carrier")
            else:
                LOGGER.debug("modem on %s: unsolicited %r", self.port, line.text)
        elif line.kind is AtLineKind.RING:
            self._on_ring()
        elif line.kind is AtLineKind.CALLER_ID:
            if line.field == "NMBR":
                self._caller = caller_id(line.value or "")
                LOGGER.info("modem on %s: caller ID received", self.port)
            LOGGER.debug("modem on %s: caller ID %s=%s", self.port, line.field, line.value)
        elif line.kind is AtLineKind.INFO and self._final is not None:
            self._info_lines.append(line.text)

    def _on_ring(self) -> None:
        if self._call in ("answering", "remote") or not self.connected:
            LOGGER.debug("modem on %s: ring during a call (%s); ignored", self.port, self._call)
            return
        self._call = "ringing"
        self._rings += 1
        self._cancel_ring_timer()
        assert self._loop is not None
        self._ring_timer = self._loop.call_later(self.ring_silence_s, self._ringing_stopped)
        # After the rest of this read: caller-ID lines read with the ring come first.
        self._loop.call_soon(self._announce_ring)

    def _announce_ring(self) -> None:
        if self._call == "ringing":
            self.emit(Ring(self._caller))

    def _ringing_stopped(self) -> None:
        self._ring_timer = None
        if self._call == "ringing":
            LOGGER.info("modem on %s: the caller gave up after %d ring(s)", self.port, self._rings)
            self._call_over()
            self.emit(RemoteHangup())

    def _cancel_ring_timer(self) -> None:
        if self._ring_timer is not None:
            self._ring_timer.cancel()
            self._ring_timer = None

    async def _answer(self) -> None:
        rings, self._rings = self._rings, 0
        try:
            async with self._io_lock:
                await self._run_sequence(self.family.answer)
        except BaseException:
            self._call = "idle"
            raise
        if self._call != "answering":
            return  # hung up (or the modem was lost) while answering
        self._call = "remote"
        LOGGER.info("modem on %s answered a call after %d ring(s)", self.port, rings)
        self.emit(RemoteAnswered())

    def _on_handset(self, *, off_hook: bool) -> None:
        if off_hook == self._handset_off:
            return
        self._handset_off = off_hook
        if off_hook:
            if self._call == "ringing":
                # Picked up on the phone itself: the box does not answer this call.
                self._cancel_ring_timer()
                self._call_over()
            self.emit(OffHook())
            return
        self.emit(OnHook())
        if self._call not in ("answering", "remote") and self.connected:
            # Playing to the handset took the line (+VLS=1): give it back.
            self._spawn(self._release_line(), "release line")

    def _on_remote_hangup(self, reason: str) -> None:
        if self._call == "ringing":
            self._cancel_ring_timer()
            self._call_over()
            self.emit(RemoteHangup())
            return
        if self._call not in ("answering", "remote"):
            LOGGER.debug("modem on %s: %s with no remote call; ignored", self.port, reason)
            return
        LOGGER.info("modem on %s: the remote party hung up (%s)", self.port, reason)
        self._call_over()
        self.emit(RemoteHangup())
        self._audio.stop()
        if self.connected:
            self._spawn(self._hang_up_line(), "hang up")

    # --- sequences ---------------------------------------------------------------------------

    async def _run_sequence(self, commands: Sequence[str]) -> None:
        """Send ``commands`` in order (caller holds the I/O lock); wait after ``AT+VLS=1``."""
        for command in commands:
            await self._command(command)
            if _is_off_hook_command(command):
                self._line_off_hook = True
                if self.off_hook_settle_s > 0:
                    await asyncio.sleep(self.off_hook_settle_s)

    async def _hang_up_line(self) -> None:
        async with self._io_lock:
            await self._end_receive_locked()
            await self._run_sequence(self.family.hangup)
            self._line_off_hook = False

    async def _start_receive(self) -> None:
        async with self._io_lock:
            if self._capture is None or self._call != "remote" or self._receiving:
                return
            await self._command(self.family.voice_mode_command)
            self._vrx_pending = True
            try:
                await self._command("AT+VRX")
            finally:
                self._vrx_pending = False
            LOGGER.debug("modem on %s: receiving the caller's audio", self.port)

    async def _stop_receive(self) -> None:
        async with self._io_lock:
            await self._end_receive_locked()

    async def _end_receive_locked(self) -> None:
        """Leave ``+VRX`` (caller holds the I/O lock): ``<DLE>!``, ``<DLE><ETX>``, ``OK``."""
        if self._receiving:
            await self._send_and_wait(dle.DLE_ABORT_RECEIVE, "end of receive <DLE>!", ("OK",))
            self._receiving = self._decoder.in_stream = False

    async def _release_line(self) -> None:
        async with self._io_lock:
            if self._line_off_hook and self._call not in ("answering", "remote"):
                await self._run_sequence(self.family.hangup)
                self._line_off_hook = False

    # --- background tasks --------------------------------------------------------------------

    def _spawn(self, coroutine: Coroutine[Any, Any, None], what: str, *, io: bool = True) -> None:
        """Run ``coroutine`` as a task kept until done; ``io`` tasks end with the port."""
        assert self._loop is not None
        task = self._loop.create_task(coroutine, name=f"v253 {what}")
        self._tasks.add(task)
        if io:
            self._io_tasks.add(task)
        task.add_done_callback(lambda done: self._task_done(done, what))

    def _task_done(self, task: asyncio.Task[None], what: str) -> None:
        self._tasks.discard(task)
        self._io_tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return
        if isinstance(error, ModemLostError):
            LOGGER.debug("modem on %s: %s stopped: %s", self.port, what, error)
        elif isinstance(error, ModemTimeoutError):
            # A modem that stops answering is wedged: reopen and re-init it.
            self._fault(str(error))
        elif isinstance(error, ModemCommandError):
            LOGGER.error("%s (%s)", error, what)
        else:
            LOGGER.error("modem on %s: %s failed", self.port, what, exc_info=error)


def caller_id(number: str) -> str | None:
    """``Ring.caller`` from a modem's ``NMBR`` value: ``P``/``O`` (private, out of area) are
    :data:`WITHHELD`; an empty value is unknown."""
    value = number.strip()
    if value.upper() in ("P", "O"):
        return WITHHELD
    return value or None


class _ModemStation(Station):
    """The modem's PHONE jack: the network rings it, prompts go through ``+VTX`` too."""

    def __init__(self, line: V253ModemLine) -> None:
        self._line = line

    def audio_output(self) -> ModemAudioOutput:
        return self._line.audio_output()


class ModemAudioOutput:
    """Plays clips and tones through the modem (``+VTX``); implements AudioOutput.

    Runs on the line's asyncio loop: ``play`` starts a task, timers pace the writes at real
    time at most :data:`MAX_AHEAD_PERIODS` periods ahead, and ``stop`` wakes the task, which
    flushes the port and sends the barge-in sequence. Callbacks run on the loop thread;
    ``on_done`` only after ``<DLE><ETX>`` was acknowledged and the audio has played out.
    """

    def __init__(self, line: V253ModemLine, max_ahead_periods: int = MAX_AHEAD_PERIODS) -> None:
        self._line = line
        self._rate = line.family.sample_rate
        self._period_s = PERIOD_FRAMES / self._rate
        self._ahead_s = max_ahead_periods * self._period_s
        self._generation = 0
        self._wakeup: asyncio.Future[None] | None = None
        self._closed = False

    def play(
        self,
        clips: Sequence[AudioClip],
        on_clip_start: ClipStartCallback | None = None,
        on_done: DoneCallback | None = None,
    ) -> None:
        """Stop whatever plays, then play ``clips`` back to back (a tone only as the last)."""
        clips = checked_clips(clips)
        if self._closed:
            raise DeviceError(f"modem player on {self._line.port} is closed")
        loop = self._line._loop
        if loop is None:
            raise DeviceError(f"modem on {self._line.port} is not started")
        if not self._on_loop(loop):
            loop.call_soon_threadsafe(self.play, clips, on_clip_start, on_done)
            return
        self._stop_now()
        job = PlayJob(clips, on_clip_start, on_done, self._generation)
        self._line._spawn(self._run(job), "playback")

    def stop(self) -> None:
        """Stop at once (barge-in); a no-op when idle; safe from any thread."""
        loop = self._line._loop
        if loop is not None and not self._on_loop(loop):
            loop.call_soon_threadsafe(self._stop_now)
            return
        self._stop_now()

    def close(self) -> None:
        """Stop, and refuse further plays; safe to call twice (the line closes the port)."""
        self._closed = True
        self.stop()

    def abandon(self) -> None:
        """The modem is gone: whatever was playing is dropped without ``on_done``."""
        self._stop_now()

    # --- loop side --------------------------------------------------------------------------

    @staticmethod
    def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
        try:
            return asyncio.get_running_loop() is loop
        except RuntimeError:
            return False

    def _stop_now(self) -> None:
        self._generation += 1
        waiter, self._wakeup = self._wakeup, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _current(self, job: PlayJob) -> bool:
        return job.generation == self._generation

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds`` on a loop timer, or less if stop() comes first."""
        loop = self._line._loop
        assert loop is not None
        waiter: asyncio.Future[None] = loop.create_future()
        self._wakeup = waiter
        handle = loop.call_later(seconds, _resolve, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            if self._wakeup is waiter:
                self._wakeup = None

    async def _wait_until(self, job: PlayJob, deadline: float) -> bool:
        """Wait until the clock reaches ``deadline``; False as soon as ``job`` is stopped."""
        while self._current(job):
            remaining = deadline - self._line.clock()
            if remaining <= 0:
                return True
            # Capped at one period: an injected clock may run ahead of the loop's.
            await self._pause(min(remaining, self._period_s))
        return False

    async def _run(self, job: PlayJob) -> None:
        line = self._line
        try:
            await self._play_locked(job)
        finally:
            if line._capture is not None and line.connected:
                line._spawn(line._start_receive(), "resume receive")

    async def _play_locked(self, job: PlayJob) -> None:
        line = self._line
        async with line._io_lock:
            if not self._current(job):
                return
            if not line.connected:
                LOGGER.debug("modem on %s not connected: playback dropped", line.port)
                return
            await line._end_receive_locked()  # half duplex: the playback takes the line
            for command in line.family.play:
                if _is_off_hook_command(command):
                    if line._line_off_hook:
                        continue
                    await line._command(command)
                    line._line_off_hook = True
                    if line.off_hook_settle_s > 0:
                        await self._wait_until(job, line.clock() + line.off_hook_settle_s)
                else:
                    await line._command(command)
                if not self._current(job) and not command.upper().endswith("+VTX"):
                    return  # stopped before the data state: nothing to end
            # Data state (after CONNECT): only <DLE><ETX> or a barge-in gets the modem out.
            start = line.clock()
            sent = await self._stream(job, start)
            if sent is None:
                await self._barge_in()
                return
            await line._send_and_wait(dle.DLE_ETX, "end of playback <DLE><ETX>", ("OK",))
            # Done when the audio has played out by our clock, not when it was queued.
            if not await self._wait_until(job, start + sent / self._rate):
                return
            if self._current(job) and job.on_done is not None:
                run_callback("modem player", "on_done", job.on_done)

    async def _stream(self, job: PlayJob, start: float) -> int | None:
        """Write every clip, paced; the samples written, or None once ``job`` is stopped."""
        line = self._line
        sent = 0
        for index, clip in enumerate(job.clips):
            if not self._current(job):
                return None
            if job.on_clip_start is not None:
                run_callback("modem player", "on_clip_start", job.on_clip_start, index)
            for chunk in self._chunks(clip):
                slot = start + (sent + len(chunk)) / self._rate - self._ahead_s
                if not await self._wait_until(job, slot):
                    return None
                line._write(dle.dle_encode(chunk), audio=True)
                sent += len(chunk)
        return sent if self._current(job) else None

    def _chunks(self, clip: AudioClip) -> Iterator[bytes]:
        """The clip in the family's 8-bit format, one period at a time (a tone never ends)."""
        sample_format = self._line.family.sample_format
        for period in clip_periods(clip, PERIOD_FRAMES, pad=False):
            yield convert_s16le(period, sample_format)

    async def _barge_in(self) -> None:
        """Drop the queued audio and leave the data state: flush, ``<CAN><DLE><CAN><DLE><ETX>``."""
        line = self._line
        line._flush_output()
        await line._send_and_wait(dle.DLE_BARGE_IN_AFTER_FLUSH, "barge-in <DLE><CAN>", ("OK",))


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
