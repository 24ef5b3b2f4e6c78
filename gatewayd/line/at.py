"""V.253 modem text side, without I/O: AT response lines, modem families, audio format.

:class:`AtResponseReader` splits what a modem writes into lines and classifies them (final
result code, ``RING``, caller ID, command echo, information). Lines are capped in length
so garbage on the port cannot grow a buffer; a non-ASCII byte never raises.

:data:`FAMILIES` holds, per modem family, the command sequences (init, answer, play,
hang-up) and the sample format of ``+VTX`` audio. Sources: HARDWARE.md §1 (callattendant
``modem.py``, mgetty ``V253modem.c``) and the USR and Conexant AT references.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from gatewayd.errors import GatewaydError, ProfileError

LOGGER = logging.getLogger(__name__)

#: Final result codes after which a command may count as done.
SUCCESS_RESULTS = frozenset({"OK", "CONNECT", "VCON"})
FAILURE_RESULTS = frozenset(
    {"ERROR", "NO CARRIER", "BUSY", "NO DIALTONE", "NO DIAL TONE", "NO ANSWER"}
)
#: Longest line kept, in bytes; longer garbage is dropped up to the next CR or LF.
DEFAULT_MAX_LINE = 256

_CALLER_ID_RE = re.compile(r"(DATE|TIME|NMBR|NAME|DDN_NMBR|MESG)\s*=\s*(.*)")


class AtLineKind(enum.Enum):
    """What a modem line is."""

    FINAL = "final"  # a final result code: OK, ERROR, CONNECT, VCON, NO CARRIER...
    RING = "ring"  # unsolicited RING (text mode; voice mode rings are <DLE>R)
    CALLER_ID = "caller_id"  # DATE=, TIME=, NMBR=, NAME= after the first RING
    ECHO = "echo"  # the modem echoing a command (ATE1)
    INFO = "info"  # anything else: ATI0 answer, +VSM=? list, DRON=...


@dataclass(frozen=True)
class AtLine:
    """One line from the modem, without its CR/LF; ``field``/``value`` for caller ID."""

    text: str
    kind: AtLineKind
    field: str | None = None
    value: str | None = None

    @property
    def is_final(self) -> bool:
        """True for a final result code (the command it answers is over)."""
        return self.kind is AtLineKind.FINAL

    @property
    def is_success(self) -> bool:
        """True for ``OK``, ``CONNECT`` (with or without a speed) and ``VCON``."""
        return self.is_final and self.text.split(" ", 1)[0] in SUCCESS_RESULTS


def classify_line(text: str) -> AtLine:
    """Classify one line of modem text (already stripped of CR/LF and blanks)."""
    upper = text.upper()
    if upper in SUCCESS_RESULTS or upper in FAILURE_RESULTS or upper.startswith("CONNECT "):
        return AtLine(text, AtLineKind.FINAL)
    if upper == "RING" or upper.startswith("RING "):
        return AtLine(text, AtLineKind.RING)
    match = _CALLER_ID_RE.fullmatch(text)
    if match is not None:
        return AtLine(text, AtLineKind.CALLER_ID, match.group(1), match.group(2).strip())
    if upper.startswith("AT"):
        return AtLine(text, AtLineKind.ECHO)
    return AtLine(text, AtLineKind.INFO)


class AtResponseReader:
    """Split modem text into :class:`AtLine` objects; keeps a partial line between reads.

    A line longer than ``max_line`` bytes is dropped with a warning and the reader skips to
    the next CR or LF, so at most ``max_line`` bytes are ever held.
    """

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        if max_line < 1:
            raise ProfileError(f"AT line cap must be at least 1 byte, not {max_line}")
        self._max_line = max_line
        self._partial = bytearray()
        self._discarding = False  # inside an overlong line: skip to the next CR/LF

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished line held for the next read (never above ``max_line``)."""
        return len(self._partial)

    def reset(self) -> None:
        """Forget any partial line (after a port reopen or a modem reset)."""
        self._partial.clear()
        self._discarding = False

    def feed(self, data: bytes) -> list[AtLine]:
        """Take one read; return the complete, non-blank lines it finished."""
        lines: list[AtLine] = []
        start = 0
        for end, byte in enumerate(data):
            if byte not in (0x0D, 0x0A):
                continue
            self._take(data[start:end])
            start = end + 1
            if self._discarding:
                self._discarding = False
            elif self._partial:
                line = self._decode(bytes(self._partial))
                if line is not None:
                    lines.append(line)
            self._partial.clear()
        self._take(data[start:])
        return lines

    def _take(self, chunk: bytes) -> None:
        if self._discarding or not chunk:
            return
        if len(self._partial) + len(chunk) > self._max_line:
            LOGGER.warning(
                "modem line longer than %d bytes dropped (garbage on the port?)", self._max_line
            )
            self._partial.clear()
            self._discarding = True
            return
        self._partial += chunk

    @staticmethod
    def _decode(raw: bytes) -> AtLine | None:
        text = raw.decode("ascii", errors="replace").strip()
        return classify_line(text) if text else None


def encode_command(command: str) -> bytes:
    """The bytes to send for one command line: ASCII, ended by CR."""
    try:
        return command.encode("ascii") + b"\r"
    except UnicodeEncodeError as error:
        raise ProfileError(f"AT command {command!r} must be ASCII") from error


def expected_results(command: str) -> frozenset[str]:
    """Final results that mean ``command`` worked: ``CONNECT`` for a data state, else OK/VCON."""
    upper = command.upper()
    if upper.endswith(("+VTX", "+VRX")):
        return frozenset({"CONNECT"})
    # vgetty accepts VCON as well as OK after +FCLASS=8 and +VLS.
    return frozenset({"OK", "VCON"})


# --- audio --------------------------------------------------------------------------------
# Prompts are 8 kHz mono S16_LE. Every family here plays 8 kHz, 8-bit linear samples, so
# one conversion is needed: keep the high byte of each sample (a 256 divide) and, for "u8"
# (offset binary, as in 8-bit WAV), add 128. The rate stays at 8000 Hz: no resampling.

#: ``u8``: unsigned, silence 0x80. ``s8``: two's complement, silence 0x00.
SampleFormat = Literal["u8", "s8"]


class AudioFormatError(GatewaydError, ValueError):
    """Audio bytes that cannot be converted (an odd byte count for 16-bit samples)."""


# High byte of a sample plus 128 is the same as flipping its top bit.
_FLIP_SIGN = bytes(b ^ 0x80 for b in range(256))


def s16le_to_s8(pcm: bytes) -> bytes:
    """S16_LE to signed 8-bit: keep the high byte of each sample (truncation, no dither)."""
    if len(pcm) % 2:
        raise AudioFormatError(f"S16_LE audio has an odd length ({len(pcm)} bytes)")
    return bytes(pcm[1::2])


def s16le_to_u8(pcm: bytes) -> bytes:
    """S16_LE to unsigned 8-bit (offset 128, WAV-8 style): silence 0x0000 becomes 0x80."""
    return s16le_to_s8(pcm).translate(_FLIP_SIGN)


def convert_s16le(pcm: bytes, sample_format: SampleFormat) -> bytes:
    """S16_LE to the 8-bit format a modem family plays."""
    return s16le_to_u8(pcm) if sample_format == "u8" else s16le_to_s8(pcm)


def to_s16le(samples: bytes, sample_format: SampleFormat) -> bytes:
    """A modem's 8-bit samples (``+VRX``) as S16_LE: each byte becomes a sample's high byte."""
    out = bytearray(2 * len(samples))
    out[1::2] = samples.translate(_FLIP_SIGN) if sample_format == "u8" else samples
    return bytes(out)


# --- modem families -----------------------------------------------------------------------


@dataclass(frozen=True)
class ModemFamily:
    """Command sequences and audio format of one kind of voice modem.

    Each sequence is sent one command at a time, waiting for a result in
    :func:`expected_results`. ``play`` ends with ``AT+VTX``: then the audio follows,
    DLE-escaped, ended by ``<DLE><ETX>`` (or ``<DLE><CAN><DLE><ETX>`` on barge-in).
    """

    name: str
    description: str
    init: tuple[str, ...]
    answer: tuple[str, ...]
    play: tuple[str, ...]
    hangup: tuple[str, ...]
    #: What ``ATI0`` answers (``None``: no known product code).
    identify_reply: str | None
    #: Sample format of ``+VTX`` audio: ``u8`` (offset 128) or ``s8`` (two's complement).
    sample_format: SampleFormat
    sample_rate: int = 8000
    #: Some modems need time after ``+VLS=1`` before ``+VTX`` (callattendant waits 1 s).
    off_hook_settle_s: float = 0.0
    #: 8 kHz x 8 bit needs more than 80 kbit/s on a real UART (USB CDC-ACM ignores it).
    baudrate: int = 115200
    #: Codes the modem sends for the handset or extension: (off-hook, on-hook).
    handset_codes: tuple[str, str] = ("H", "h")

    @property
    def voice_mode_command(self) -> str:
        """The ``+VSM`` command of the play sequence."""
        return next(c for c in self.play if c.upper().startswith("AT+VSM="))


# ATZ restores the stored profile, so the init lists set everything they rely on.
# None writes the profile (&W): NVRAM wears out and the init runs at every start.
_GENERIC = ModemFamily(
    name="generic",
    description="any V.253 voice modem (vgetty's V253modem driver)",
    init=("ATZ", "ATE0", "ATV1", "AT+FCLASS=8", "AT+VCID=1", "AT+VNH=0"),
    answer=("AT+FCLASS=8", "AT+VLS=1"),
    # mgetty: +VSM=1 is 8-bit PCM, recorded files are ".ub" (unsigned bytes).
    play=("AT+VSM=1,8000", "AT+VLS=1", "AT+VTX"),
    hangup=("AT+VLS=0",),
    identify_reply=None,
    sample_format="u8",
)

_USR5637 = ModemFamily(
    name="usr5637",
    description="USRobotics 5637 USB (callattendant's USR sequences)",
    init=("ATZ", "ATE0", "ATV1", "AT+VCID=1", "AT+FCLASS=8"),
    answer=("AT+FCLASS=8", "AT+VSD=128,0", "AT+VLS=1"),
    # 128 = "8-BIT LINEAR" in USR's +VSM=? list. callattendant plays unsigned 8-bit WAV data
    # with it, so u8 it is. The list also names 1 and 130 "UNSIGNED PCM", so if prompts come
    # out as a loud buzz on a real unit, try s8 (or AT+VSM=130,8000 with u8).
    play=("AT+VSM=128,8000", "AT+VLS=1", "AT+VTX"),
    hangup=("ATH0",),
    identify_reply="5601",
    sample_format="u8",
    off_hook_settle_s=1.0,
)

_CONEXANT = ModemFamily(
    name="conexant",
    description="Conexant CX930xx USB sticks (Zoom 3095 and clones)",
    # -STE=7: report line in use, extension pickup (<DLE>P/p) and remote hang-up.
    init=("ATZ", "ATE0", "ATV1", "AT-SCID=1;+VCID=1;-STE=7", "AT+FCLASS=8"),
    answer=("AT+FCLASS=8", "AT+VSD=0,0", "AT+VLS=1"),
    # 1 = "UNSIGNED PCM" in Conexant's +VSM=? list.
    play=("AT+VSM=1,8000,0,0", "AT+VLS=1", "AT+VTX"),
    hangup=("ATH0",),
    identify_reply="56000",
    sample_format="u8",
    off_hook_settle_s=1.0,
    handset_codes=("P", "p"),
)

#: Known families by name.
FAMILIES: Mapping[str, ModemFamily] = MappingProxyType(
    {family.name: family for family in (_GENERIC, _USR5637, _CONEXANT)}
)


def get_family(name: str) -> ModemFamily:
    """The family called ``name``; an unknown name raises :class:`ProfileError`."""
    try:
        return FAMILIES[name]
    except KeyError:
        known = ", ".join(FAMILIES)
        raise ProfileError(f"unknown modem family {name!r}: use one of {known}") from None


def detect_family(identify_reply: str) -> ModemFamily | None:
    """The family whose ``ATI0`` answer is ``identify_reply``, if any."""
    reply = identify_reply.strip()
    for family in FAMILIES.values():
        if family.identify_reply == reply:
            return family
    return None
