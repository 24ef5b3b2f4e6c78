"""A V.253 voice modem simulated on a pseudo-terminal, for tests and technicians' dry runs.

:class:`ModemSimulator` opens a pty and answers on its master side like a voice modem of
one family (``generic``, ``usr5637``, ``conexant``): it echoes per ``ATE``, answers AT
commands with ``OK``/``ERROR`` (and ``ERROR`` for a command its family does not know, so a
profile with the wrong family fails here first), takes ``+VTX`` audio up to
``<DLE><ETX>`` and keeps it. Its other methods play the outside world: :meth:`ring`,
:meth:`lift_handset`, :meth:`press`, :meth:`remote_hangup`, :meth:`unplug`...

:attr:`ModemSimulator.port` is a symlink (in a temporary directory unless one is given)
to the pty's slave side: open it with pyserial like ``/dev/ttyACM0``. After
:meth:`~ModemSimulator.replug` the pty is new and may have another ``/dev/pts`` number,
but the symlink is re-pointed, so reopening the same ``port`` path works, as with a udev
symlink on a real box.

Technicians run ``gatewayd sim modem --family usr5637`` (or ``python -m
gatewayd.line.modem_sim``): it prints the port to put in a profile and reads commands
(``ring``, ``callerid NUMBER``, ``lift``, ``hangup``, ``press KEYS``, ``say WAV``,
``remote-hangup [b|d|s]``, ``quit``...) from the terminal. While the box receives
(``+VRX``), :meth:`ModemSimulator.say` sends a caller's voice as DLE-framed samples.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import errno
import logging
import os
import re
import select
import shutil
import sys
import tempfile
import threading
import time
import tty
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

from gatewayd.errors import DeviceError, GatewaydError
from gatewayd.line.at import FAMILIES, ModemFamily, convert_s16le, get_family
from gatewayd.line.dle import CAN, DLE, DTMF_END_CODES, DTMF_KEYS, ETX, dle_encode, redact_dtmf
from gatewayd.logsetup import TRACE
from gatewayd.pcm import PERIOD_FRAMES, RATE, WavError, read_wav

LOGGER = logging.getLogger(__name__)

#: Longest command line a modem takes (longer ones answer ERROR).
MAX_COMMAND_LINE = 256
#: Most audio kept for one playback (10 min at 8 kHz); the rest is counted, not kept.
MAX_PLAYBACK_BYTES = 8000 * 600
#: Longest WAV the prompt's ``say`` sends.
MAX_SAY_S = 600.0
#: Name of the symlink made in a temporary directory when no ``link`` is given.
LINK_NAME = "ttyV253"

HistoryKind = Literal["command", "event", "playback", "state"]


class SimulatorUsageError(GatewaydError, ValueError):
    """A simulator method was given something a phone line cannot do (a key that is no key)."""


@dataclass(frozen=True)
class HistoryEntry:
    """Something the simulator received or did, at ``t`` seconds (its clock)."""

    t: float
    kind: HistoryKind
    detail: str


@dataclass(frozen=True)
class _SimTraits:
    """What the simulated modem of a family answers (from the vendors' AT references)."""

    identity: str
    vsm_list: tuple[str, ...]
    vsm_codes: frozenset[int]
    vsm_rates: frozenset[int]
    vls_result: str
    vendor_commands: frozenset[str]


_TRAITS = {
    "generic": _SimTraits(
        identity="GATEWAYD V.253 SIMULATOR",
        vsm_list=(
            '1,"8-BIT LINEAR",8,0,(7200,8000,11025),(0),(0)',
            '4,"ULAW",8,0,(8000),(0),(0)',
            '5,"ALAW",8,0,(8000),(0),(0)',
        ),
        vsm_codes=frozenset({1, 4, 5}),
        vsm_rates=frozenset({7200, 8000, 11025}),
        vls_result="VCON",  # V.253 allows it; vgetty accepts VCON or OK
        vendor_commands=frozenset(),
    ),
    "usr5637": _SimTraits(
        identity="5601",
        vsm_list=(
            '1,"UNSIGNED PCM",8,0,(7200,8000),(0),(0)',
            '128,"8-BIT LINEAR",8,0,(7200,8000),(0),(0)',
            '129,"ADPCM",4,0,(7200,8000),(0),(0)',
            '130,"UNSIGNED PCM",8,0,(7200,8000),(0),(0)',
            '131,"ULAW",8,0,(7200,8000),(0),(0)',
            '132,"ALAW",8,0,(7200,8000),(0),(0)',
            '133,"LINEAR",16,0,(7200,8000),(0),(0)',
        ),
        vsm_codes=frozenset({1, 128, 129, 130, 131, 132, 133}),
        vsm_rates=frozenset({7200, 8000}),
        vls_result="OK",
        vendor_commands=frozenset(),
    ),
    "conexant": _SimTraits(
        identity="56000",
        vsm_list=(
            '1,"UNSIGNED PCM",8,0,8000,0,0',
            '129,"IMA ADPCM",4,0,8000,0,0',
            '130,"UNSIGNED PCM",8,0,8000,0,0',
            '140,"2 Bit ADPCM",2,0,8000,0,0',
            '141,"4 Bit ADPCM",4,0,8000,0,0',
        ),
        vsm_codes=frozenset({1, 129, 130, 140, 141}),
        vsm_rates=frozenset({8000}),
        vls_result="OK",
        vendor_commands=frozenset({"-SCID", "-STE"}),
    ),
}

# Voice commands every family takes (in voice mode) and simply acknowledges.
_ACK_VOICE_COMMANDS = frozenset(
    {"+VSD", "+VGT", "+VGR", "+VIT", "+VNH", "+VDR", "+VRA", "+VRN", "+VTS", "+VTD", "+VSP"}
)
_ACK_COMMANDS = frozenset({"+IFC", "+GCI", "+VCID"})
_NUMERIC_RESULTS = {
    "OK": "0",
    "CONNECT": "1",
    "RING": "2",
    "NO CARRIER": "3",
    "ERROR": "4",
    "NO DIALTONE": "6",
    "BUSY": "7",
    "NO ANSWER": "8",
}
_BASIC_RE = re.compile(r"(&?[A-Z])(\d*)")
_S_REGISTER_RE = re.compile(r"S(\d+)(=\d*|\?)")
_EXTENDED_RE = re.compile(r"([+\-#][A-Z]+)(=\?|\?|=.*)?")

Mode = Literal["command", "transmit", "receive"]


class _ModemState:
    """Settings a modem loses on ATZ or power-up."""

    def __init__(self) -> None:
        self.echo = True
        self.verbose = True
        self.fclass = 0
        self.caller_id = 0
        self.line = 0  # +VLS: 0 on-hook, 1 line off-hook, ...
        self.vsm: str | None = None
        self.ste = 0  # Conexant -STE bits: 2 = report extension pickup


class ModemSimulator:
    """A V.253 modem of one family on a pty; :attr:`port` is what a profile names.

    Runs its own thread (select on the pty master and a wake-up pipe, no polling). The
    ``clock`` times :attr:`history`; ``on_history`` is called (on the simulator's thread)
    for every new entry. ``close()`` is safe to call twice.
    """

    def __init__(
        self,
        family: str = "generic",
        *,
        link: str | os.PathLike[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_history: Callable[[HistoryEntry], None] | None = None,
        max_history: int = 10_000,
        max_playbacks: int = 100,
    ) -> None:
        self.family: ModemFamily = get_family(family)
        self._traits = _TRAITS[self.family.name]
        self._clock = clock
        self._on_history = on_history
        self._lock = threading.RLock()
        self._history: deque[HistoryEntry] = deque(maxlen=max_history)
        self._playbacks: deque[bytes] = deque(maxlen=max_playbacks)
        self._aborted: deque[bytes] = deque(maxlen=max_playbacks)
        if link is None:
            self._link_dir: Path | None = Path(tempfile.mkdtemp(prefix="gatewayd-modem-sim-"))
            self._link = self._link_dir / LINK_NAME
        else:
            self._link_dir = None
            self._link = Path(link)
            if self._link.exists() and not self._link.is_symlink():
                raise DeviceError(f"{self._link} exists and is not a symlink: choose another path")
        self._handset_off_hook = False
        self._closed = False
        self._plugged = False
        self._master = -1
        self._slave = -1
        self._wake_r = -1
        self._wake_w = -1
        self._tty_path = ""
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._outbox = bytearray()
        self._mode: Mode = "command"
        try:
            self._plug()
        except DeviceError:
            if self._link_dir is not None:
                shutil.rmtree(self._link_dir, ignore_errors=True)
            raise

    # --- properties ------------------------------------------------------------------------

    @property
    def port(self) -> str:
        """The stable serial port path (a symlink to the current pty slave)."""
        return str(self._link)

    @property
    def tty_path(self) -> str:
        """The current pty slave (``/dev/pts/N``); it changes on :meth:`replug`."""
        return self._tty_path

    @property
    def plugged(self) -> bool:
        """False between :meth:`unplug` and :meth:`replug`."""
        return self._plugged

    @property
    def history(self) -> list[HistoryEntry]:
        """Commands received, events injected and playbacks, oldest first (a copy)."""
        with self._lock:
            return list(self._history)

    @property
    def playbacks(self) -> list[bytes]:
        """Audio of each completed ``+VTX`` playback, un-escaped, oldest first (a copy)."""
        with self._lock:
            return list(self._playbacks)

    @property
    def aborted_playbacks(self) -> list[bytes]:
        """Audio of each playback ended by barge-in (``<DLE><CAN>``), discarded (a copy)."""
        with self._lock:
            return list(self._aborted)

    @property
    def commands(self) -> list[str]:
        """The AT command lines received, oldest first."""
        return [entry.detail for entry in self.history if entry.kind == "command"]

    @property
    def voice_mode(self) -> bool:
        """True once the DTE sent ``AT+FCLASS=8`` (until ``ATZ`` or a replug)."""
        with self._lock:
            return self._state.fclass == 8

    @property
    def handset_off_hook(self) -> bool:
        """True while the simulated handset is lifted (kept across ATZ and replug)."""
        return self._handset_off_hook

    @property
    def line_off_hook(self) -> bool:
        """True while the modem holds the line (``+VLS`` not 0, or ``ATH1``)."""
        with self._lock:
            return self._state.line != 0

    # --- the outside world -------------------------------------------------------------------

    def ring(self, times: int = 1) -> None:
        """Ring the line: ``RING`` lines in data mode, ``<DLE>R`` in voice mode."""
        with self._lock:
            self._check_plugged()
            for _ in range(times):
                if self._state.fclass == 8:
                    self._send(b"\x10R")
                else:
                    self._send_result("RING")
            self._record("event", f"ring x{times}")

    def caller_id(self, number: str, name: str = "GATEWAYD SIM", *, spaced: bool = False) -> None:
        """Send caller-ID lines (``DATE=`` ... ``NAME=``) now, if ``+VCID`` is on.

        ``number`` ``P`` or ``O`` is a withheld (private, out of area) number; ``spaced``
        writes ``NMBR = ...`` as some modems do.
        """
        with self._lock:
            self._check_plugged()
            if not self._state.caller_id:
                self._record("event", "caller ID not reported (+VCID=0)")
                return
            now = datetime.datetime.now()
            equals = " = " if spaced else "="
            for field, value in (
                ("DATE", f"{now:%m%d}"),
                ("TIME", f"{now:%H%M}"),
                ("NMBR", number),
                ("NAME", name),
            ):
                self._send_info(f"{field}{equals}{value}")
            self._record("event", "caller ID")

    def say(self, pcm: bytes, *, realtime: bool = False) -> bool:
        """The caller speaks: S16_LE 8 kHz ``pcm`` sent as ``+VRX`` samples (family format).

        Only while the DTE receives (after ``AT+VRX``): False, and nothing sent, otherwise.
        The samples are DLE-escaped; ``realtime`` paces them at 8000 per second (a thread,
        20 ms at a time) instead of sending them at once; pacing stops when the receive ends.
        """
        if len(pcm) % 2:
            raise SimulatorUsageError("say() takes S16_LE audio (an even number of bytes)")
        samples = convert_s16le(pcm, self.family.sample_format)
        with self._lock:
            self._check_plugged()
            if self._mode != "receive":
                self._record("event", "voice not sent (the DTE is not receiving, no +VRX)")
                return False
            self._record("event", f"caller voice: {len(samples)} samples")
            if not realtime:
                self._send(dle_encode(samples))
                return True
        thread = threading.Thread(
            target=self._say_paced, args=(samples,), name="modem-sim-say", daemon=True
        )
        thread.start()
        return True

    def _say_paced(self, samples: bytes) -> None:
        start = time.monotonic()
        for offset in range(0, len(samples), PERIOD_FRAMES):
            with self._lock:
                if self._mode != "receive" or not self._plugged:
                    return
                self._send(dle_encode(samples[offset : offset + PERIOD_FRAMES]))
            time.sleep(max(0.0, start + (offset + PERIOD_FRAMES) / RATE - time.monotonic()))

    def lift_handset(self) -> None:
        """Lift the handset on the modem's phone jack (``<DLE>H``; Conexant ``<DLE>P``)."""
        self._handset(off_hook=True)

    def hang_up_handset(self) -> None:
        """Put the handset back (``<DLE>h``; Conexant ``<DLE>p``)."""
        self._handset(off_hook=False)

    def press(self, keys: str, burst_repeat: int = 1, *, end: str = "~") -> None:
        """Key DTMF: ``<DLE>/``, the key ``burst_repeat`` times, then ``end`` (``~`` or DEL)."""
        bad = [key for key in keys if key not in DTMF_KEYS]
        if bad or burst_repeat < 1 or end not in DTMF_END_CODES:
            raise SimulatorUsageError(
                "press() takes keys among 0-9 * # A-D, burst_repeat >= 1 and end '~' or '\\x7f'"
            )
        with self._lock:
            self._check_plugged()
            if self._state.fclass != 8:
                # Modems detect DTMF in voice mode only.
                self._record("event", f"press {len(keys)} key(s) not reported (not in voice mode)")
                return
            burst = bytearray()
            for key in keys:
                burst += b"\x10/" + (b"\x10" + key.encode()) * burst_repeat
                burst += b"\x10" + end.encode("latin-1")
            self._send(bytes(burst))
            # Never the keys themselves: they may be a secret code.
            self._record("event", f"press {len(keys)} key(s)")

    def remote_hangup(self, code: str = "b") -> None:
        """The far end hangs up: ``<DLE>code`` (``b`` busy, ``l`` loop break, ``s``, ``d``...)."""
        if len(code) != 1 or code == chr(DLE):
            raise SimulatorUsageError("remote_hangup() takes one DLE code character, e.g. 'b'")
        with self._lock:
            self._check_plugged()
            if self._state.fclass != 8:
                self._record("event", f"remote hang-up {code!r} not reported (not in voice mode)")
                return
            self._send(b"\x10" + code.encode("latin-1"))
            self._record("event", f"remote hang-up {code!r}")

    def drop_call(self) -> None:
        """The line drops (loop current lost): a voice stream ends (``<DLE><ETX>``), then
        ``NO CARRIER``; the modem is on-hook in command mode."""
        with self._lock:
            self._check_plugged()
            if self._mode != "command":
                self._send(b"\x10\x03")
                self._mode = "command"
            self._state.line = 0
            self._send_result("NO CARRIER")
            self._record("event", "line dropped (NO CARRIER)")

    def unplug(self) -> None:
        """Pull the USB cable: the pty goes away, the DTE's reads and writes fail (EIO)."""
        with self._lock:
            if not self._plugged:
                return
            self._record("state", "unplugged")
        self._unplug()
        with contextlib.suppress(FileNotFoundError):
            self._link.unlink()

    def replug(self) -> None:
        """Plug the modem back: a new pty at power-on defaults; :attr:`port` points to it."""
        if self._closed:
            raise DeviceError("modem simulator is closed: make a new one")
        if not self._plugged:
            self._plug()

    def close(self) -> None:
        """Stop the thread, close the pty and remove the symlink (and its temporary dir)."""
        if self._closed:
            return
        self.unplug()
        self._closed = True
        if self._link_dir is not None:
            shutil.rmtree(self._link_dir, ignore_errors=True)

    def __enter__(self) -> ModemSimulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- plugging ----------------------------------------------------------------------------

    def _plug(self) -> None:
        opened: list[int] = []
        try:
            master, slave = os.openpty()
            opened += (master, slave)
            # Raw on both sides before any DTE opens the port: no echo, no CR/LF rewriting.
            tty.setraw(master)
            tty.setraw(slave)
            os.set_blocking(master, False)
            wake_r, wake_w = os.pipe()
            opened += (wake_r, wake_w)
            os.set_blocking(wake_r, False)
            os.set_blocking(wake_w, False)
            tty_path = os.ttyname(slave)
            # Make the new link beside the old one, then rename over it: never a missing port.
            temporary = self._link.with_name(self._link.name + ".new")
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            os.symlink(tty_path, temporary)
            os.replace(temporary, self._link)
        except OSError as error:
            for fd in opened:
                os.close(fd)
            raise DeviceError(
                f"modem simulator: cannot open a pseudo-terminal linked at {self._link}: {error}"
            ) from error
        with self._lock:
            # The simulator keeps the slave open: else the master reads EIO until a DTE opens.
            self._master, self._slave = master, slave
            self._wake_r, self._wake_w = wake_r, wake_w
            self._tty_path = tty_path
            self._state = _ModemState()
            self._mode = "command"
            self._command = bytearray()
            self._command_overflow = False
            self._escape = False
            self._audio = bytearray()
            self._discarded = bytearray()
            self._flushed = False
            self._audio_dropped = 0
            self._outbox.clear()
            self._stopping = False
            self._plugged = True
            self._record("state", f"plugged in ({self.family.name}, {self._tty_path})")
        self._thread = threading.Thread(
            target=self._run, name=f"modem-sim-{self.family.name}", daemon=True
        )
        self._thread.start()

    def _unplug(self) -> None:
        with self._lock:
            self._stopping = True
            self._plugged = False
            self._wake()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            for fd in (self._master, self._slave, self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._master = self._slave = self._wake_r = self._wake_w = -1
            self._outbox.clear()

    def _check_plugged(self) -> None:
        if not self._plugged:
            raise DeviceError("modem simulator is unplugged: call replug() first")

    # --- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:
            LOGGER.exception("modem simulator thread failed")
            self._record("state", "simulator thread failed (see log)")

    def _loop(self) -> None:
        master, wake_r = self._master, self._wake_r
        while True:
            with self._lock:
                if self._stopping:
                    return
                writers = [master] if self._outbox else []
            readable, writable, _ = select.select([master, wake_r], writers, [])
            if wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
            if master in readable:
                try:
                    data = os.read(master, 4096)
                except BlockingIOError:
                    data = None
                except OSError as error:
                    LOGGER.warning("modem simulator: reading the pty failed: %s", error)
                    return
                if data == b"":
                    return  # end of file: the pty is gone
                if data:
                    LOGGER.log(TRACE, "modem sim <- %r", data)
                    with self._lock:
                        self._receive(data)
            if master in writable:
                with self._lock:
                    try:
                        written = os.write(master, self._outbox)
                    except BlockingIOError:
                        written = 0
                    except OSError as error:
                        if error.errno != errno.EIO:
                            raise
                        written = len(self._outbox)  # nobody to read it
                    del self._outbox[:written]

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"\0")

    # --- output ------------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        # Logged whole, as queued: a write may split a <DLE>key pair and defeat the mask.
        LOGGER.log(TRACE, "modem sim -> %r", redact_dtmf(data))
        self._outbox += data
        if threading.current_thread() is not self._thread:
            self._wake()  # the thread may be asleep in select() without the master to write

    def _send_result(self, result: str) -> None:
        if self._state.verbose:
            self._send(f"\r\n{result}\r\n".encode("ascii"))
        else:
            self._send(f"{_NUMERIC_RESULTS.get(result, result)}\r".encode("ascii"))

    def _send_info(self, line: str) -> None:
        prefix = "\r\n" if self._state.verbose else ""
        self._send(f"{prefix}{line}\r\n".encode("ascii", errors="replace"))

    def _record(self, kind: HistoryKind, detail: str) -> None:
        entry = HistoryEntry(self._clock(), kind, detail)
        with self._lock:
            self._history.append(entry)
        LOGGER.debug("modem sim %s: %s", kind, detail)
        if self._on_history is not None:
            self._on_history(entry)

    # --- input -------------------------------------------------------------------------------

    def _receive(self, data: bytes) -> None:
        index = 0
        while index < len(data):
            if self._mode == "transmit":
                index = self._receive_audio(data, index)
            elif self._mode == "receive":
                index = self._receive_while_recording(data, index)
            else:
                index = self._receive_command(data, index)

    def _receive_command(self, data: bytes, index: int) -> int:
        while index < len(data) and self._mode == "command":
            byte = data[index]
            index += 1
            if self._state.echo:
                self._send(bytes([byte]))
            if byte == 0x0D:
                self._end_command_line()
            elif byte == 0x0A:
                continue
            elif byte == 0x08:
                del self._command[-1:]
            elif len(self._command) < MAX_COMMAND_LINE:
                self._command.append(byte)
            else:
                self._command_overflow = True
        return index

    def _end_command_line(self) -> None:
        raw = bytes(self._command)
        overflow = self._command_overflow
        self._command.clear()
        self._command_overflow = False
        # Modems ignore what comes before "AT" (line noise, a late barge-in sequence).
        start = raw.upper().find(b"AT")
        if start < 0:
            return
        line = raw[start:].decode("ascii", errors="replace").strip()
        self._record("command", line)
        if overflow:
            self._send_result("ERROR")
            return
        self._execute(line[2:])

    def _receive_audio(self, data: bytes, index: int) -> int:
        while index < len(data):
            if self._escape:
                self._escape = False
                code = data[index]
                index += 1
                if code == DLE:
                    self._keep_audio(b"\x10")
                elif code == ETX:
                    self._end_playback()
                    return index
                elif code == CAN:
                    self._discarded += self._audio
                    self._audio.clear()
                    self._flushed = True
                else:
                    self._record("event", f"ignored <DLE>{chr(code)!r} during +VTX")
                continue
            next_dle = data.find(DLE, index)
            if next_dle < 0:
                self._keep_audio(data[index:])
                return len(data)
            self._keep_audio(data[index:next_dle])
            self._escape = True
            index = next_dle + 1
        return index

    def _keep_audio(self, chunk: bytes) -> None:
        room = MAX_PLAYBACK_BYTES - len(self._audio) - len(self._discarded)
        self._audio += chunk[: max(room, 0)]
        self._audio_dropped += max(len(chunk) - max(room, 0), 0)

    def _end_playback(self) -> None:
        audio = bytes(self._audio)
        if self._flushed:
            discarded = bytes(self._discarded) + audio
            self._aborted.append(discarded)
            self._record("playback", f"barge-in: {len(discarded)} bytes discarded")
        else:
            self._playbacks.append(audio)
            note = f" ({self._audio_dropped} more not kept)" if self._audio_dropped else ""
            self._record("playback", f"played {len(audio)} bytes{note}")
        self._audio.clear()
        self._discarded.clear()
        self._flushed = False
        self._audio_dropped = 0
        self._mode = "command"
        self._send_result("OK")

    def _receive_while_recording(self, data: bytes, index: int) -> int:
        while index < len(data):
            byte = data[index]
            index += 1
            if self._escape:
                self._escape = False
                if byte in b"!^":
                    self._record("event", "recording stopped by the DTE")
                    self._mode = "command"
                    self._send(b"\x10\x03")
                    self._send_result("OK")
                    return index
            elif byte == DLE:
                self._escape = True
        return index

    # --- commands ----------------------------------------------------------------------------

    def _execute(self, body: str) -> None:
        """Run the commands after "AT"; answer info lines, then one final result."""
        infos: list[str] = []
        result = "OK"
        upper = body.upper()
        index = 0
        while index < len(upper):
            char = upper[index]
            if char in " ;":
                index += 1
                continue
            if char in "+-#":
                end = upper.find(";", index)
                end = len(upper) if end < 0 else end
                outcome = self._extended(upper[index:end], infos)
                index = end + 1
            elif (s_match := _S_REGISTER_RE.match(upper, index)) is not None:
                if s_match.group(2) == "?":
                    infos.append("000")
                outcome = "OK"
                index = s_match.end()
            elif (match := _BASIC_RE.match(upper, index)) is not None:
                outcome = self._basic(match.group(1), match.group(2), infos)
                index = match.end()
            else:
                outcome = "ERROR"
            if outcome != "OK":
                # VCON replaces the final OK; any other result ends the line.
                result = outcome
                if outcome != "VCON":
                    break
        if result == "ERROR":
            infos.clear()
        for line in infos:
            self._send_info(line)
        self._send_result(result)

    def _basic(self, name: str, value: str, infos: list[str]) -> str:
        number = int(value) if value else 0
        state = self._state
        if name in ("Z", "&F"):
            self._state = _ModemState()
            self._mode = "command"
        elif name == "E":
            state.echo = number != 0
        elif name == "V":
            state.verbose = number != 0
        elif name == "H":
            state.line = 1 if number else 0
        elif name == "I":
            infos.append(self._traits.identity if number == 0 else "GATEWAYD MODEM SIMULATOR")
        elif name == "&V":
            infos.append(f"E{int(state.echo)} V{int(state.verbose)} +FCLASS={state.fclass}")
        elif name == "D":
            return "NO DIALTONE"
        elif name not in ("Q", "L", "M", "X", "&W", "&C", "&D", "&K"):
            return "ERROR"
        return "OK"

    def _extended(self, command: str, infos: list[str]) -> str:
        match = _EXTENDED_RE.fullmatch(command)
        if match is None:
            return "ERROR"
        name, argument = match.group(1), match.group(2) or ""
        state = self._state
        voice = state.fclass == 8
        if name == "+FCLASS":
            return self._fclass(argument, infos)
        if name in self._traits.vendor_commands:
            if name == "-STE" and argument.startswith("=") and argument[1:].isdigit():
                state.ste = int(argument[1:])
            return "OK"
        if name == "+VCID" and argument.startswith("=") and argument[1:].isdigit():
            state.caller_id = int(argument[1:])
            return "OK"
        if name in _ACK_COMMANDS:
            return "OK"
        if not name.startswith("+V") or not voice:
            # Unknown command, or a voice command outside voice mode (modems say ERROR).
            return "ERROR"
        if name == "+VSM":
            return self._vsm(argument, infos)
        if name == "+VLS":
            if argument == "=?":
                infos.append("0,1,2,3")
                return "OK"
            if argument == "?":
                infos.append(str(state.line))
                return "OK"
            if not argument[1:].isdigit():
                return "ERROR"
            state.line = int(argument[1:])
            return self._traits.vls_result if state.line else "OK"
        if name in ("+VTX", "+VRX"):
            if argument or state.line == 0:
                return "ERROR"
            self._mode = "transmit" if name == "+VTX" else "receive"
            self._escape = False
            return "CONNECT"
        if name in _ACK_VOICE_COMMANDS:
            return "OK"
        return "ERROR"

    def _fclass(self, argument: str, infos: list[str]) -> str:
        if argument == "=?":
            infos.append("0,1,8")
        elif argument == "?":
            infos.append(str(self._state.fclass))
        elif argument in ("=0", "=1", "=8"):
            self._state.fclass = int(argument[1:])
            if self._state.fclass != 8:
                self._state.line = 0
        else:
            return "ERROR"
        return "OK"

    def _vsm(self, argument: str, infos: list[str]) -> str:
        if argument == "=?":
            infos.extend(self._traits.vsm_list)
            return "OK"
        if argument == "?":
            infos.append(self._state.vsm or "1,8000,0,0")
            return "OK"
        parts = argument[1:].split(",")
        if not all(part.strip().isdigit() for part in parts) or len(parts) > 4:
            return "ERROR"
        code = int(parts[0])
        rate = int(parts[1]) if len(parts) > 1 else 8000
        if code not in self._traits.vsm_codes or rate not in self._traits.vsm_rates:
            return "ERROR"
        self._state.vsm = argument[1:]
        return "OK"

    def _handset(self, *, off_hook: bool) -> None:
        off_code, on_code = self.family.handset_codes
        code = off_code if off_hook else on_code
        with self._lock:
            self._check_plugged()
            self._handset_off_hook = off_hook
            what = "handset lifted" if off_hook else "handset hung up"
            if self._state.fclass != 8:
                self._record("event", f"{what}: not reported (not in voice mode)")
                return
            if code in "Pp" and not self._state.ste & 2:
                # Conexant reports extension pickup only when -STE asks for it.
                self._record("event", f"{what}: not reported (-STE bit 1 is off)")
                return
            self._send(b"\x10" + code.encode("ascii"))
            self._record("event", f"{what} (<DLE>{code})")


# --- technician's prompt ---------------------------------------------------------------------

_HELP = """commands:
  ring [N]              ring N times (default 1)
  callerid NUMBER       send caller-ID lines (needs +VCID=1; P = withheld)
  say WAV               the caller speaks (8 kHz 16-bit mono WAV, real time; during +VRX)
  lift | hangup         lift / hang up the handset on the modem's phone jack
  press KEYS [REPEAT]   key DTMF (0-9 * # A-D), each key repeated REPEAT times in its burst
  remote-hangup [CODE]  the far end hangs up (default b = busy; d = dial tone, s = silence)
  drop                  the line drops (NO CARRIER)
  unplug | replug       pull / plug the USB cable back
  history               what the modem received and did
  quit                  stop"""


def _run_prompt_command(sim: ModemSimulator, words: list[str]) -> bool:
    """Run one prompt command; False means quit."""
    verb, args = words[0].lower(), words[1:]
    if verb in ("quit", "exit"):
        return False
    if verb == "ring":
        sim.ring(int(args[0]) if args else 1)
    elif verb == "callerid" and args:
        sim.caller_id(args[0])
    elif verb == "say" and args:
        try:
            pcm = read_wav(Path(" ".join(args)), max_seconds=MAX_SAY_S)
        except WavError as error:
            print(f"error: {error}", flush=True)
            return True
        if not sim.say(pcm, realtime=True):
            print("error: the box is not receiving (no AT+VRX): nothing sent", flush=True)
    elif verb == "lift":
        sim.lift_handset()
    elif verb == "hangup":
        sim.hang_up_handset()
    elif verb == "press" and args:
        sim.press(args[0], int(args[1]) if len(args) > 1 else 1)
    elif verb == "remote-hangup":
        sim.remote_hangup(args[0] if args else "b")
    elif verb == "drop":
        sim.drop_call()
    elif verb == "unplug":
        sim.unplug()
    elif verb == "replug":
        sim.replug()
        print(f"port {sim.port} -> {sim.tty_path}", flush=True)
    elif verb == "history":
        for entry in sim.history:
            print(f"{entry.t:12.3f} {entry.kind:8} {entry.detail}", flush=True)
    else:
        print(_HELP, flush=True)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gatewayd.line.modem_sim``: a simulated modem and a prompt to drive it."""
    parser = argparse.ArgumentParser(
        prog="gatewayd sim modem",
        description="Simulate a V.253 voice modem on a pseudo-terminal (dry-run a profile).",
    )
    parser.add_argument("--family", choices=sorted(FAMILIES), default="generic")
    parser.add_argument("--link", help="symlink to create for the port (default: a temp dir)")
    options = parser.parse_args(argv)

    def show(entry: HistoryEntry) -> None:
        if entry.kind in ("command", "playback"):
            print(f"  [{entry.kind}] {entry.detail}", flush=True)

    interactive = sys.stdin.isatty()
    with ModemSimulator(options.family, link=options.link, on_history=show) as sim:
        print(f"port: {sim.port}", flush=True)
        print(f"family {sim.family.name} on {sim.tty_path}; type 'help'", flush=True)
        while True:
            try:
                line = input("modem> " if interactive else "")
            except (EOFError, KeyboardInterrupt):
                break
            words = line.split()
            if not words:
                continue
            try:
                if not _run_prompt_command(sim, words):
                    break
            except (ValueError, DeviceError) as error:
                print(f"error: {error}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
