"""V.253 ``<DLE>`` framing, without I/O: split a modem's byte stream into audio and events.

A voice modem shields its events in the byte stream with the DLE byte (0x10): ``<DLE>R``
is a ring, ``<DLE>/<DLE>5<DLE>~`` a DTMF ``5``, ``<DLE><ETX>`` the end of a stream. Data
bytes equal to DLE are doubled. :class:`DleDecoder` undoes this; it keeps its state across
reads, so a read may end anywhere (after a lone DLE, inside a DTMF burst) and the result
never depends on how the stream was chunked. Sources: HARDWARE.md §1 (mgetty ``IS_101.c``,
callattendant, pycallblock).

Outside a voice data stream the "audio" a decoder returns is the modem's text (``OK``,
``RING``, caller-ID lines): feed it to :class:`gatewayd.line.at.AtResponseReader`::

    text, events = decoder.feed(serial_bytes)
    lines = reader.feed(text)

Event classes are plain frozen dataclasses. :class:`RemoteHangup` here is a *modem* event;
import this module as ``dle`` to keep it apart from ``gatewayd.events.RemoteHangup``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gatewayd.errors import ProfileError

LOGGER = logging.getLogger(__name__)

DLE = 0x10
ETX = 0x03
CAN = 0x18
SUB = 0x1A

#: Host to modem: end a ``+VTX`` playback once the buffered audio has played (modem: ``OK``).
DLE_ETX = b"\x10\x03"
#: Host to modem: barge-in, ``<DLE><CAN><DLE><ETX>``: drop the buffered audio (modem: ``OK``).
DLE_BARGE_IN = b"\x10\x18\x10\x03"
#: Barge-in after flushing the OS output queue (``reset_output_buffer()``). The flush can cut a
#: doubled DLE in half, leaving the modem waiting for a second DLE: plain ``DLE_BARGE_IN`` would
#: then read as data and an end of playback that plays the buffer out. The leading CAN makes
#: ``<DLE><CAN>`` in that case, and is one inaudible audio sample otherwise.
DLE_BARGE_IN_AFTER_FLUSH = bytes([CAN]) + DLE_BARGE_IN
#: Host to modem: abort a ``+VRX`` recording (modem: ``<DLE><ETX>`` then ``OK``).
DLE_ABORT_RECEIVE = b"\x10!"

#: Keys a modem reports as ``<DLE>key``.
DTMF_KEYS = frozenset("0123456789*#ABCD")
#: Start of a DTMF tone.
DTMF_START_CODE = "/"
#: End of a DTMF tone: ``~`` (mgetty, callattendant, pycallblock) or DEL (Silicon Labs AN93,
#: Intel MD566x). Both are accepted.
DTMF_END_CODES = frozenset("~\x7f")
RING_CODE = "R"
#: Local handset (``H``) or extension (Conexant ``P``, needs ``-STE``) off-hook.
OFF_HOOK_CODES = frozenset("HP")
#: ``p`` is on-hook as in mgetty (callattendant treats it as off-hook, which looks like a bug).
ON_HOOK_CODES = frozenset("hp")
END_OF_STREAM_CODE = "\x03"

#: Why a code may end a call, by code; a hang-up set may only use these.
HANGUP_REASONS: Mapping[str, str] = MappingProxyType(
    {
        "b": "busy",
        "d": "dial_tone",
        "l": "loop_break",
        "L": "polarity_reversal",
        "s": "silence",
        "q": "quiet",
        "\x03": "end_of_stream",
    }
)
#: Codes that mean the remote party is gone (callattendant aborts on these, plus loop break).
DEFAULT_HANGUP_CODES = frozenset({"b", "l", "s", "d", "\x03"})


@dataclass(frozen=True)
class DtmfDigit:
    """One DTMF key; its repr never shows the key (it may be a digit of a secret code)."""

    key: str

    def __repr__(self) -> str:
        return "DtmfDigit(key='?')"


@dataclass(frozen=True)
class DtmfStart:
    """A DTMF tone started (``<DLE>/``)."""


@dataclass(frozen=True)
class DtmfEnd:
    """A DTMF tone ended (``<DLE>~`` or ``<DLE><DEL>``)."""


@dataclass(frozen=True)
class RingEvent:
    """The line rings (``<DLE>R``, voice mode)."""


@dataclass(frozen=True)
class HandsetOffHook:
    """The local handset (``H``) or an extension (Conexant ``P``) went off-hook."""

    code: str = "H"


@dataclass(frozen=True)
class HandsetOnHook:
    """The local handset (``h``) or an extension (Conexant ``p``) went on-hook."""

    code: str = "h"


@dataclass(frozen=True)
class RemoteHangup:
    """The far end is gone: ``reason`` is a value of :data:`HANGUP_REASONS` (``busy``...)."""

    reason: str


@dataclass(frozen=True)
class StreamEnd:
    """``<DLE><ETX>`` while a voice data stream was open: the stream ended normally."""


@dataclass(frozen=True)
class OtherEvent:
    """Any other ``<DLE>x`` (tones, underrun, caller-ID packet marks...): ``code`` is ``x``."""

    code: str


ModemEvent = (
    DtmfDigit
    | DtmfStart
    | DtmfEnd
    | RingEvent
    | HandsetOffHook
    | HandsetOnHook
    | RemoteHangup
    | StreamEnd
    | OtherEvent
)

# Codes with a fixed meaning: a hang-up set that named one of them would make it ambiguous.
_RESERVED_CODES = (
    DTMF_KEYS
    | DTMF_END_CODES
    | OFF_HOOK_CODES
    | ON_HOOK_CODES
    | {DTMF_START_CODE, RING_CODE, chr(DLE), chr(SUB)}
)


def _check_hangup_codes(codes: Iterable[str]) -> frozenset[str]:
    checked = frozenset(codes)
    for code in sorted(checked):
        if code not in HANGUP_REASONS or code in _RESERVED_CODES:
            usable = ", ".join(repr(c) for c in HANGUP_REASONS)
            raise ProfileError(
                f"DLE hang-up code {code!r} cannot end a call: use codes among {usable}"
            )
    return checked


class DleDecoder:
    """Stateful ``<DLE>`` decoder: :meth:`feed` returns ``(audio, events)`` for each read.

    ``hangup_codes`` are the codes reported as :class:`RemoteHangup` (default
    :data:`DEFAULT_HANGUP_CODES`). Set :attr:`in_stream` while a voice data stream
    (``+VRX``) is open: ``<DLE><ETX>`` then means :class:`StreamEnd` (and clears it)
    rather than a hang-up. The decoder holds at most one byte between reads.
    """

    def __init__(
        self, hangup_codes: Iterable[str] = DEFAULT_HANGUP_CODES, *, in_stream: bool = False
    ) -> None:
        self._hangup_codes = _check_hangup_codes(hangup_codes)
        self.in_stream = in_stream
        self._escape = False  # the previous read ended on a lone DLE
        self._in_burst = False  # between <DLE>/ and <DLE>~
        self._burst_key: str | None = None  # last key reported in the current burst

    @property
    def hangup_codes(self) -> frozenset[str]:
        """The codes this decoder reports as :class:`RemoteHangup`."""
        return self._hangup_codes

    @property
    def pending(self) -> int:
        """Bytes held back for the next read (0, or 1 after a trailing DLE)."""
        return 1 if self._escape else 0

    def reset(self) -> None:
        """Forget any partial escape or DTMF burst (after a port reopen or a modem reset)."""
        self._escape = False
        self._in_burst = False
        self._burst_key = None

    def feed(self, data: bytes) -> tuple[bytes, list[ModemEvent]]:
        """Decode one read: the bytes that are not events (audio or text), and the events."""
        audio = bytearray()
        events: list[ModemEvent] = []
        for byte in data:
            if not self._escape:
                if byte == DLE:
                    self._escape = True
                else:
                    audio.append(byte)
                continue
            self._escape = False
            if byte == DLE:
                audio.append(DLE)
            elif byte == SUB:
                audio += b"\x10\x10"
            else:
                event = self._event(chr(byte))
                if event is not None:
                    events.append(event)
        return bytes(audio), events

    def feed_stream(self, data: bytes) -> tuple[bytes, list[ModemEvent], bytes]:
        """Like :meth:`feed`, but stop after the end of a voice stream (``<DLE><ETX>``).

        Returns ``(audio, events, rest)``: ``rest`` is what follows the stream's end,
        undecoded (the modem's text again, such as ``OK``); empty if the stream goes on.
        """
        escape = self._escape
        for index, byte in enumerate(data):
            if escape and byte == ETX and self.in_stream:
                audio, events = self.feed(data[: index + 1])
                return audio, events, data[index + 1 :]
            escape = not escape and byte == DLE
        audio, events = self.feed(data)
        return audio, events, b""

    def _event(self, code: str) -> ModemEvent | None:
        if code in DTMF_KEYS:
            # Some modems repeat the key inside one burst (Intel 536EX): report it once.
            if self._in_burst and code == self._burst_key:
                return None
            if self._in_burst:
                self._burst_key = code
            LOGGER.debug("DTMF key (masked)")
            return DtmfDigit(code)
        if code == DTMF_START_CODE:
            self._in_burst = True
            self._burst_key = None
            return DtmfStart()
        if code in DTMF_END_CODES:
            self._in_burst = False
            self._burst_key = None
            return DtmfEnd()
        if code == RING_CODE:
            return RingEvent()
        if code in OFF_HOOK_CODES:
            return HandsetOffHook(code)
        if code in ON_HOOK_CODES:
            return HandsetOnHook(code)
        if code == END_OF_STREAM_CODE and self.in_stream:
            self.in_stream = False
            return StreamEnd()
        if code in self._hangup_codes:
            LOGGER.debug("DLE %r: remote hang-up (%s)", code, HANGUP_REASONS[code])
            return RemoteHangup(HANGUP_REASONS[code])
        LOGGER.debug("DLE event %r: no meaning for gatewayd", code)
        return OtherEvent(code)


def dle_encode(audio: bytes) -> bytes:
    """Escape audio for ``+VTX``: every 0x10 byte is doubled (an undoubled one is a command)."""
    return audio.replace(b"\x10", b"\x10\x10")


_KEY_BYTES = frozenset(ord(key) for key in DTMF_KEYS)


def redact_dtmf(data: bytes) -> bytes:
    """``data`` with the key of every ``<DLE>key`` replaced by ``?``, for raw-byte logs.

    A leading key byte is masked too: it may follow a DLE that ended the previous read.
    """
    masked = bytearray(data)
    for index, byte in enumerate(masked):
        if byte in _KEY_BYTES and (index == 0 or data[index - 1] == DLE):
            masked[index] = ord("?")
    return bytes(masked)
