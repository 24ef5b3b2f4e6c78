"""Hardware profiles: one TOML file per board, validated once at load (DESIGN.md §4).

``load_profile("sim")`` or ``load_profile("./board.toml")`` returns a frozen
:class:`Profile`. Each table is a dataclass whose keys are declared once, with
kind, default and doc line (:mod:`gatewayd.schema`): the validator, the defaults
and ``hw_profiles/README.md``'s tables (``python -m gatewayd.profile --readme``)
all come from those declarations. Every problem is a
:class:`~gatewayd.errors.ProfileError` naming the file, the key as a dotted path
(``line.pins.shk``) and what was expected; all problems of a file at once.

Adding a table (e.g. ``[usp]``): declare a frozen dataclass whose fields are
:func:`~gatewayd.schema.setting` calls (rules between keys go in a ``check``
method), then add its name to ``_SECTIONS``, a field to :class:`Profile`, a
``read(root.child_or_empty("usp"), UspSection)`` in ``_build_profile`` and an
entry in ``README_TABLES`` (plus ``<!-- schema:usp --><!-- /schema -->`` in the
README, filled by ``python -m gatewayd.profile --readme``).
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, cast

from gatewayd.errors import ProfileError
from gatewayd.paths import NotARegularFile, read_regular_file, shipped_profiles_dir
from gatewayd.schema import (
    Bool,
    Int,
    Problems,
    Real,
    Reals,
    Table,
    Text,
    declared,
    describe,
    given,
    group,
    keys_of,
    quoted,
    read,
    render_table,
    setting,
    subtable,
)
from gatewayd.tones import DEFAULT_LEVEL_DBFS
from gatewayd.voicemail.config import (
    LANGUAGES,
    TONE_PLANS,
    Keys,
    Mailbox,
    Policy,
    Timeouts,
    VoicemailConfig,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["LANGUAGES", "TONE_PLANS"]  # re-exported: they used to live here

LOGGER = logging.getLogger(__name__)

#: A profile larger than this is not a profile (``/dev/zero``, a log file...).
PROFILE_MAX_BYTES = 1024 * 1024

Driver = Literal["sim", "gpio-slic", "v253-modem"]
GpioBackend = Literal["rpi", "gpiod", "fake"]
DtmfSource = Literal["mt8870", "inband"]
ModemFamily = Literal["generic", "usr5637", "conexant"]
LogLevel = Literal["debug", "info", "warning", "error"]

DRIVERS: Final[tuple[Driver, ...]] = ("sim", "gpio-slic", "v253-modem")
GPIO_BACKENDS: Final[tuple[GpioBackend, ...]] = ("rpi", "gpiod", "fake")
DTMF_SOURCES: Final[tuple[DtmfSource, ...]] = ("mt8870", "inband")
MODEM_FAMILIES: Final[tuple[ModemFamily, ...]] = ("generic", "usr5637", "conexant")
LOG_LEVELS: Final[tuple[LogLevel, ...]] = ("debug", "info", "warning", "error")
#: The ALSA "device" name meaning "audio goes through the voice modem (+VTX)".
MODEM_AUDIO: Final = "modem"

SIM_STATE_DIR: Final = "~/.local/state/gatewayd"
HARDWARE_STATE_DIR: Final = "/var/lib/gatewayd"

# RPi.GPIO in BCM mode: the 40-pin header carries GPIO 0-27.
_RPI_MAX_BCM: Final = 27
# Tones are synthesised for 8 kHz telephone audio (gatewayd.tones): below Nyquist.
_TONE_MAX_HZ: Final = 4000.0
_TONE_NAME = re.compile(r"[a-z][a-z0-9_]*")
_SERIAL = "a serial device path, e.g. {}"
_ALSA = Text(what="an ALSA device name", allow_empty=False)


# --- the tables, each key declared once ------------------------------------------------


@dataclass(frozen=True)
class BoardSection:
    """``[board]``: which board this profile describes."""

    name: str = setting(
        Text(what="a non-empty string", allow_empty=False),
        "the board's name, shown by `selftest` and in logs",
    )
    notes: str = setting(Text(), "free text for technicians (parts, revision, quirks)", "")


_PIN = Int(minimum=0)


@dataclass(frozen=True)
class SlicPins:
    """``[line.pins]``: GPIO numbers (BCM, or line offsets on ``gpio_chip`` for gpiod).

    The decoder pins (``std``, ``q1``-``q4``) are always set when ``dtmf = "mt8870"``;
    with ``dtmf = "inband"`` there may be no decoder, and absent ones are None.
    """

    shk: int = setting(_PIN, "SLIC switch-hook output (input to us)")
    rm: int = setting(_PIN, "SLIC ring mode (output: high only while ringing)")
    fr: int = setting(
        _PIN, "SLIC forward/reverse (output: toggled at `ring_frequency_hz` while ringing)"
    )
    std: int | None = setting(
        _PIN,
        'DTMF decoder "delayed steering" (input: a key is valid on its rising edge)',
        None,
        default_doc="required with `mt8870`",
    )
    q1: int | None = setting(
        _PIN,
        "DTMF decoder code bit 0 (input; read on the StD edge)",
        None,
        default_doc="required with `mt8870`",
    )
    q2: int | None = setting(
        _PIN, "DTMF decoder code bit 1", None, default_doc="required with `mt8870`"
    )
    q3: int | None = setting(
        _PIN, "DTMF decoder code bit 2", None, default_doc="required with `mt8870`"
    )
    q4: int | None = setting(
        _PIN, "DTMF decoder code bit 3", None, default_doc="required with `mt8870`"
    )

    def check(self, key: Callable[[str], str]) -> Iterator[tuple[str, str]]:
        """Each pin is wired to one signal."""
        used_by: dict[int, str] = {}
        for field_ in dataclasses.fields(self):
            number = getattr(self, field_.name)
            if number in used_by:
                yield (
                    field_.name,
                    f"pin {number} is already used by {key(used_by[number])}; "
                    "each pin may be used once",
                )
            elif number is not None:
                used_by[number] = field_.name


#: SLIC and MT8870 signals, in the order of ``[line.pins]``.
PIN_NAMES: Final = keys_of(SlicPins)
#: The SLIC's own signals, needed whatever decodes DTMF.
SLIC_PIN_NAMES: Final = ("shk", "rm", "fr")


@dataclass(frozen=True)
class HookTiming:
    """On-hook break classifier thresholds in ms: bounce < pulse < flash < hang-up."""

    bounce_ms: int = setting(
        Int(minimum=1, unit="ms"), "an on-hook break shorter than this is contact bounce", 25
    )
    pulse_max_ms: int = setting(
        Int(minimum=1, unit="ms"), "a break up to this long is a dial pulse", 90
    )
    flash_max_ms: int = setting(
        Int(minimum=1, unit="ms"),
        "a break up to this long is a flash (register recall); longer is a hang-up",
        900,
    )

    def check(self, key: Callable[[str], str]) -> Iterator[tuple[str, str]]:
        """The classifier needs bounce < pulse < flash, else a break has two meanings."""
        rule = "the thresholds must increase: bounce_ms < pulse_max_ms < flash_max_ms"
        if self.pulse_max_ms <= self.bounce_ms:
            yield (
                "pulse_max_ms",
                f"expected a value greater than {key('bounce_ms')} ({self.bounce_ms}), "
                f"got {self.pulse_max_ms}; {rule}",
            )
        elif self.flash_max_ms <= self.pulse_max_ms:
            yield (
                "flash_max_ms",
                f"expected a value greater than {key('pulse_max_ms')} ({self.pulse_max_ms}), "
                f"got {self.flash_max_ms}; {rule}",
            )


@dataclass(frozen=True)
class SlicSection:
    """The ``gpio-slic`` keys of ``[line]``: a SLIC (e.g. Ag1171), DTMF by MT8870 or in-band."""

    gpio_backend: GpioBackend = setting(
        Text(choices=GPIO_BACKENDS),
        "GPIO library: RPi.GPIO (or rpi-lgpio), libgpiod v2, or the in-package fake "
        "(tests, no hardware)",
    )
    pins: SlicPins = subtable(SlicPins, required=True)
    gpio_chip: str = setting(
        Text(what="a GPIO chip device, e.g. /dev/gpiochip0", allow_empty=False),
        '*gpio_backend = "gpiod" only*: the GPIO chip; on a Pi 5 it may be `gpiochip4`',
        "/dev/gpiochip0",
    )
    shk_active_high: bool = setting(
        Bool(), "SHK (switch-hook) reads high when the handset is off-hook (Ag1171)", True
    )
    # Python toggles F/R itself: real ring currents are 16-50 Hz, and much above 100 Hz
    # the toggling thread cannot keep time.
    ring_frequency_hz: float = setting(
        Real(above=10, at_most=100, unit="Hz"), "F/R toggling frequency while ringing", 50.0
    )
    dtmf: DtmfSource = setting(
        Text(choices=DTMF_SOURCES),
        "where keys come from: the decoder's StD/Q1-Q4 pins, or decoded from `audio.capture`",
        "mt8870",
    )
    hook: HookTiming = group(HookTiming)


@dataclass(frozen=True)
class ModemSection:
    """The ``v253-modem`` keys of ``[line]`` (a voice modem on a serial port)."""

    port: str = setting(
        Text(what=_SERIAL.format("/dev/ttyACM0"), allow_empty=False),
        "serial device; prefer the stable name under `/dev/serial/by-id/`",
    )
    baudrate: int = setting(
        Int(minimum=1),
        "serial speed (8 kHz 8-bit voice needs more than 80 kbit/s on a real UART; "
        "USB CDC-ACM ignores it)",
        115200,
    )
    family: ModemFamily = setting(
        Text(choices=MODEM_FAMILIES),
        "command dialect: init string, voice format, handset detection",
        "generic",
    )
    command_timeout_s: float = setting(
        Real(above=0, unit="s"), "how long to wait for `OK` after an AT command", 3.0
    )


#: ``[line]`` is a union selected by ``driver``: the dataclass holding each driver's keys.
LINE_VARIANTS: Final[Mapping[Driver, type[DataclassInstance] | None]] = {
    "sim": None,
    "gpio-slic": SlicSection,
    "v253-modem": ModemSection,
}
#: Deprecated ``[line]`` keys -> (drivers that still accept them, where they moved).
LINE_DEPRECATED: Final[Mapping[str, tuple[tuple[Driver, ...], str]]] = {
    "answer_after_rings": (("sim", "v253-modem"), "voicemail.mailbox.answer_after_rings"),
}


@dataclass(frozen=True)
class LineSection:
    """``[line]``: the line driver; ``slic``/``modem`` are set only for their driver."""

    driver: Driver = setting(
        Text(choices=DRIVERS),
        "the line driver: simulated line, a SLIC on GPIO, or a V.253 voice modem on a serial port",
    )
    ring_on_s: float = setting(
        Real(above=0, unit="s"), "ring cadence: ringing time (France: 1.5 s)", 1.5
    )
    ring_off_s: float = setting(
        Real(above=0, unit="s"), "ring cadence: silence between rings (France: 3.5 s)", 3.5
    )
    slic: SlicSection | None = None
    modem: ModemSection | None = None
    #: Deprecated: a copy of ``voicemail.mailbox.answer_after_rings`` for older callers.
    answer_after_rings: int = Mailbox.answer_after_rings


@dataclass(frozen=True)
class AudioSection:
    """``[audio]``: ALSA device names; ``"modem"`` means the voice modem is the audio path."""

    playback: str = setting(
        _ALSA,
        "ALSA device prompts and tones are played on (`default`, `hw:1,0`, "
        '`plughw:CARD=Device`, `null`...). On a `v253-modem` profile it must be `"modem"`: '
        'the modem is the audio path (`+VTX`); `"modem"` is refused on other drivers',
        "default",
        by_driver={"v253-modem": MODEM_AUDIO},
    )
    capture: str = setting(
        Text(what='an ALSA device name or ""'),
        'ALSA capture device, `""` for none. Required when `line.dtmf = "inband"`; on '
        '`v253-modem` only `""` or `"modem"`',
        "",
    )


@dataclass(frozen=True)
class ConsoleSection:
    """``[console]``: the technician's serial console."""

    port: str = setting(
        Text(what=_SERIAL.format("/dev/ttyS0"), allow_empty=False),
        "serial device, e.g. `/dev/ttyS0`, `/dev/ttyAMA0`; must differ from `line.port`",
        default_doc="required if the section is present",
    )
    baudrate: int = setting(Int(minimum=1), "serial speed", 115200)


@dataclass(frozen=True)
class ToneSection:
    """``[tones.NAME]``: one whole tone; keys not given take these defaults, not the plan's."""

    frequencies: list[float] = setting(
        Reals(Real(above=0, below=_TONE_MAX_HZ, unit="Hz"), what="frequencies", non_empty=True),
        "frequencies mixed together, e.g. `[440]` (audio is sampled at 8 kHz)",
    )
    cadence: list[float] = setting(
        Reals(Real(at_least=0, unit="s"), what="on/off durations", even_length=True),
        'on, off, on, off... repeated, e.g. `[0.5, 0.5]`; `[]` is a continuous tone; some "on" '
        "must be > 0",
        [],
    )
    level_dbfs: float = setting(
        Real(at_most=0, unit="dBFS"),
        "level of each frequency, in dB relative to full scale; several frequencies must not "
        "add up above 0 dBFS",
        DEFAULT_LEVEL_DBFS,
    )
    repeats: int = setting(
        Int(minimum=0),
        "times the cadence plays before the tone stays on; `0` repeats it forever "
        "(message waiting, `mwi`: `cadence = [0.1, 0.1]`, `repeats = 6`)",
        0,
    )

    def check(self, key: Callable[[str], str]) -> Iterator[tuple[str, str]]:
        """A cadence must switch the tone on at some point."""
        if self.cadence and not any(self.cadence[0::2]):
            yield "cadence", "the tone is never on: at least one 'on' value must be > 0"


@dataclass(frozen=True)
class StorageSection:
    """``[storage]``: state directory (``~`` not yet expanded) and pepper file."""

    state_dir: str = setting(
        Text(what="an absolute path or one starting with ~", allow_empty=False),
        "where the TinyDB state file lives. `--state-dir` and systemd's `$STATE_DIRECTORY` "
        "take precedence",
        HARDWARE_STATE_DIR,
        by_driver={"sim": SIM_STATE_DIR},
    )
    pepper_file: str = setting(
        Text(what="a file path (relative: inside the state dir)", allow_empty=False),
        "the per-box pepper file; a relative path is inside the state dir. A systemd "
        "credential `gatewayd-pepper` (`LoadCredential=`) takes precedence",
        "pepper",
    )
    create_pepper: bool = setting(
        Bool(),
        "create a random pepper if none exists. Only the `sim` driver may: on a hardware "
        "profile `true` is an error, because peppers come from `gatewayd provision`",
        False,
        by_driver={"sim": True},
    )

    def check(self, key: Callable[[str], str]) -> Iterator[tuple[str, str]]:
        """A relative state dir would depend on the daemon's working directory."""
        if not self.state_dir.startswith(("/", "~")):
            kind = declared(StorageSection, "state_dir").kind
            yield "state_dir", f"expected {kind.expected}, got {describe(self.state_dir)}"


@dataclass(frozen=True)
class LoggingSection:
    """``[logging]``: log level."""

    level: LogLevel = setting(Text(choices=LOG_LEVELS), "log level of the daemon", "info")


@dataclass(frozen=True)
class SocketsSection:
    """``[sockets]``: limits of the local sockets (ctl.sock, sim.sock, gpio.sock)."""

    max_clients: int = setting(
        Int(minimum=4, maximum=1024),
        "clients at once on each socket (fewer if the open-file limit is low); past it a "
        "client is answered `error busy`; `events` streams leave 2 places for commands",
        32,
    )


@dataclass(frozen=True)
class Profile:
    """A validated hardware profile; ``name`` is the file's stem, ``source`` the file read."""

    name: str
    source: Path
    board: BoardSection
    line: LineSection
    audio: AudioSection
    console: ConsoleSection | None
    voicemail: VoicemailConfig
    #: ``[tones.NAME]`` overrides, checked but left raw: the tone module parses them.
    tones: dict[str, dict[str, object]] = field(hash=False)
    storage: StorageSection
    logging: LoggingSection
    sockets: SocketsSection
    #: ``[usp]`` (TR-369 management), raw: validated by gatewayd.usp.config when the daemon starts.
    usp: dict[str, object] | None = field(default=None, hash=False)

    @property
    def tone_plan(self) -> str:
        """``voicemail.tone_plan``."""
        return self.voicemail.tone_plan


# --- loading -----------------------------------------------------------------


def shipped_profile_names() -> list[str]:
    """Names of the profiles shipped in :func:`~gatewayd.paths.shipped_profiles_dir`, sorted."""
    directory = shipped_profiles_dir()
    if not directory.is_dir():
        return []
    return sorted(path.stem for path in directory.glob("*.toml"))


def load_profile(name_or_path: str | Path) -> Profile:
    """Load and validate a profile: a bare name (``sim``) is a shipped profile, else a file path."""
    source = _locate(name_or_path)
    # A symlinked profile is fine (it is only read); a FIFO or /dev/zero is refused.
    readable = source.resolve() if source.is_symlink() and source.exists() else source
    try:
        text = read_regular_file(readable, PROFILE_MAX_BYTES).decode("utf-8")
    except NotARegularFile as exc:
        raise ProfileError(f"{source}: the profile {exc}") from None
    except FileNotFoundError as exc:
        raise ProfileError(
            f"{source}: no such profile file; give an existing .toml path or a shipped "
            f"profile name ({_names_or_none()})"
        ) from exc
    except IsADirectoryError as exc:
        raise ProfileError(f"{source}: is a directory, not a profile file") from exc
    except OSError as exc:
        raise ProfileError(f"{source}: cannot read the profile: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ProfileError(
            f"{source}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from exc
    profile = profile_from_text(text, source)
    LOGGER.debug("loaded profile %s (driver %s) from %s", profile.name, profile.line.driver, source)
    return profile


def profile_from_text(text: str, source: Path) -> Profile:
    """Validate the TOML ``text`` of file ``source`` (which need not exist yet) as a profile."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line L, column C)": keep it, it is the useful part.
        raise ProfileError(f"{source}: TOML syntax error: {exc}") from exc
    profile = _build_profile(data, source)
    origin = provisioned_from(text)
    # /etc/gatewayd/profile.toml is named after the profile it was provisioned from.
    return dataclasses.replace(profile, name=origin.stem) if origin is not None else profile


#: The first line ``gatewayd provision`` writes in the profiles it provisions.
PROVISIONED_HEADER = "# Provisioned by `gatewayd provision`"
_PROVISIONED_RE = re.compile(
    re.escape(PROVISIONED_HEADER) + r" from (.+); storage\.pepper_file names its pepper\."
)


def provisioned_from(text: str) -> Path | None:
    """The profile a provisioned profile's ``text`` was made from (its header says), or None."""
    origin = _PROVISIONED_RE.fullmatch(text.partition("\n")[0])
    return Path(origin.group(1)) if origin is not None else None


def _names_or_none() -> str:
    """Shipped profile names for an error message."""
    names = shipped_profile_names()
    return ", ".join(names) if names else f"none found in {shipped_profiles_dir()}"


def _locate(name_or_path: str | Path) -> Path:
    """The file a ``--profile`` argument designates; unknown bare names are an error."""
    if isinstance(name_or_path, Path):
        return name_or_path.expanduser()
    if not name_or_path:
        raise ProfileError(f"empty profile name; shipped profiles: {_names_or_none()}")
    if "/" in name_or_path or name_or_path.endswith(".toml"):
        return Path(name_or_path).expanduser()
    candidate = shipped_profiles_dir() / f"{name_or_path}.toml"
    if not candidate.is_file():
        close = difflib.get_close_matches(name_or_path, shipped_profile_names(), n=1)
        hint = f'; did you mean "{close[0]}"?' if close else ""
        raise ProfileError(
            f'unknown profile "{name_or_path}"; shipped profiles: {_names_or_none()}{hint} '
            "(to use another file, give its path, e.g. ./my_board.toml)"
        )
    return candidate


# --- the rules between keys --------------------------------------------------------

_SECTIONS: Final = (
    "board",
    "line",
    "audio",
    "console",
    "voicemail",
    "tones",
    "storage",
    "logging",
    "sockets",
    "usp",
)


def _build_profile(data: Mapping[str, object], source: Path) -> Profile:
    """Validate parsed TOML into a Profile, or raise one ProfileError listing every problem."""
    problems = Problems(source)
    root = Table(problems, "", data)
    root.check_keys(_SECTIONS)

    board_table = root.child("board", required=True)
    board = read(board_table, BoardSection) if board_table is not None else None
    line_table = root.child("line", required=True)
    line = _line(line_table) if line_table is not None else None
    # The driver alone decides several defaults and rules, even when [line] has other problems.
    raw_driver = line_table.data.get("driver") if line_table is not None else None
    driver = raw_driver if raw_driver in DRIVERS else None
    audio = _audio(root.child_or_empty("audio"), driver, line)
    console_table = root.child("console")
    console = _console(console_table, line) if console_table is not None else None
    voicemail_table = root.child_or_empty("voicemail")
    voicemail = read(voicemail_table, VoicemailConfig)
    if line_table is not None:
        line, voicemail = _moved_answer_after_rings(line_table, voicemail_table, line, voicemail)
    tones = _tones(root.child_or_empty("tones"))
    storage = _storage(root.child_or_empty("storage"), driver)
    logging_section = read(root.child_or_empty("logging"), LoggingSection)
    sockets = read(root.child_or_empty("sockets"), SocketsSection)
    usp_table = root.child("usp")

    problems.raise_if_any()
    if (
        board is None
        or line is None
        or audio is None
        or voicemail is None
        or storage is None
        or logging_section is None
        or sockets is None
    ):
        # Each of these is None only after a problem was recorded, and we raised above.
        raise AssertionError("profile section missing without a recorded problem")
    return Profile(
        name=source.stem,
        source=source,
        board=board,
        line=line,
        audio=audio,
        console=console,
        voicemail=voicemail,
        tones=tones,
        storage=storage,
        logging=logging_section,
        sockets=sockets,
        usp=dict(usp_table.data) if usp_table is not None else None,
    )


def _line(table: Table) -> LineSection | None:
    """``[line]``: the common keys, and those of the driver's variant; others refused by name."""
    driver = cast(Driver | None, table.require("driver", Text(choices=DRIVERS)))
    owners: dict[str, list[Driver]] = {}
    for name_driver, variant in LINE_VARIANTS.items():
        for name in keys_of(variant) if variant is not None else ():
            owners.setdefault(name, []).append(name_driver)
    for name, (drivers, _) in LINE_DEPRECATED.items():
        owners.setdefault(name, []).extend(drivers)
    common = keys_of(LineSection)
    if driver is None:
        # Without a valid driver only unknown keys can be reported.
        table.check_keys({*common, *owners})
        return None
    allowed = {*common, *(name for name, drivers in owners.items() if driver in drivers)}
    elsewhere = {
        name: f"only used with driver {' or '.join(quoted([o]) for o in drivers)}; "
        f'this profile\'s driver is "{driver}"; remove it'
        for name, drivers in owners.items()
        if name not in allowed
    }
    table.check_keys(allowed, elsewhere)

    before = len(table.problems.lines)
    line = read(table, LineSection, check_keys=False)
    slic = _slic(table) if driver == "gpio-slic" else None
    modem = read(table, ModemSection, check_keys=False) if driver == "v253-modem" else None
    if line is None or len(table.problems.lines) != before:
        return None
    return dataclasses.replace(line, slic=slic, modem=modem)


def _moved_answer_after_rings(
    line_table: Table,
    voicemail_table: Table,
    line: LineSection | None,
    voicemail: VoicemailConfig | None,
) -> tuple[LineSection | None, VoicemailConfig | None]:
    """Deprecated ``line.answer_after_rings`` sets ``voicemail.mailbox.answer_after_rings``."""
    name = "answer_after_rings"
    drivers, moved_to = LINE_DEPRECATED[name]
    rings = None
    if line_table.has(name) and line_table.data.get("driver") in drivers:
        mailbox = voicemail_table.data.get("mailbox")
        rings = line_table.get(name, declared(Mailbox, name).kind, None)
        if isinstance(mailbox, dict) and name in mailbox:
            line_table.problems.add(
                line_table.key(name), f"deprecated, and {moved_to} is set too; remove this one"
            )
        elif isinstance(rings, int):
            LOGGER.warning(
                "%s: line.%s is deprecated; move it to [voicemail.mailbox]",
                line_table.problems.source,
                name,
            )
    if line is None or voicemail is None:
        return line, voicemail
    if isinstance(rings, int):
        mailbox_config = dataclasses.replace(voicemail.mailbox, answer_after_rings=rings)
        voicemail = dataclasses.replace(voicemail, mailbox=mailbox_config)
    line = dataclasses.replace(line, answer_after_rings=voicemail.mailbox.answer_after_rings)
    return line, voicemail


def _slic(table: Table) -> SlicSection | None:
    """The gpio-slic keys of ``[line]`` and ``[line.pins]``, with the rules between them."""
    backend = table.data.get("gpio_backend")
    if table.has("gpio_chip") and backend in GPIO_BACKENDS and backend != "gpiod":
        table.problems.add(
            table.key("gpio_chip"),
            f'only used with line.gpio_backend = "gpiod" (this profile has "{backend}"); remove it',
        )
    dtmf = table.data.get("dtmf", declared(SlicSection, "dtmf").default)
    # Which pins are required, and their range, depend on the backend and the DTMF source.
    kind = Int(minimum=0, maximum=_RPI_MAX_BCM) if backend == "rpi" else _PIN
    required = PIN_NAMES if dtmf == "mt8870" else SLIC_PIN_NAMES

    def pins(pins_table: Table) -> SlicPins | None:
        return read(pins_table, SlicPins, kinds=dict.fromkeys(PIN_NAMES, kind), required=required)

    return read(table, SlicSection, subtables={"pins": pins}, check_keys=False)


def _audio(table: Table, driver: Driver | None, line: LineSection | None) -> AudioSection | None:
    """``[audio]``: a voice modem is its own audio path; a SLIC plays through ALSA."""
    audio = read(table, AudioSection, driver=driver)
    if audio is None:
        return None
    before = len(table.problems.lines)
    if driver == "v253-modem":
        if audio.playback != MODEM_AUDIO:
            table.problems.add(
                table.key("playback"),
                f'expected "{MODEM_AUDIO}" on a v253-modem profile (the modem plays the audio, '
                f'+VTX), got "{audio.playback}"; remove the key or set it to "{MODEM_AUDIO}"',
            )
        if audio.capture not in ("", MODEM_AUDIO):
            table.problems.add(
                table.key("capture"),
                f'expected "" or "{MODEM_AUDIO}" on a v253-modem profile (the modem reports '
                f'DTMF keys itself), got "{audio.capture}"',
            )
    elif driver is not None:
        for name in ("playback", "capture"):
            if getattr(audio, name) == MODEM_AUDIO:
                table.problems.add(
                    table.key(name),
                    f'"{MODEM_AUDIO}" is only valid with driver "v253-modem" '
                    f'(this profile\'s driver is "{driver}"); name an ALSA device',
                )
    slic = line.slic if line is not None else None
    if slic is not None and slic.dtmf == "inband" and not audio.capture:
        table.problems.add(
            table.key("capture"),
            'missing: line.dtmf = "inband" decodes keys from ALSA capture; '
            'name the capture device (e.g. "hw:1,0")',
        )
    return None if len(table.problems.lines) != before else audio


def _console(table: Table, line: LineSection | None) -> ConsoleSection | None:
    """``[console]``: optional, but a present section must name its own port."""
    console = read(table, ConsoleSection)
    modem = line.modem if line is not None else None
    if console is not None and modem is not None and modem.port == console.port:
        table.problems.add(
            table.key("port"),
            f'"{console.port}" is already used by line.port (the modem); '
            "the console needs its own port",
        )
        return None
    return console


def _tones(table: Table) -> dict[str, dict[str, object]]:
    """``[tones.NAME]``: whole tones (added or replacing the plan's), parsed by gatewayd.tones."""
    tones: dict[str, dict[str, object]] = {}
    for name in table.data:
        tone = table.child(name)
        if tone is None:
            continue
        if not _TONE_NAME.fullmatch(name):
            table.problems.add(
                tone.path, "expected a tone name of lowercase letters, digits and _ (e.g. dial)"
            )
            continue
        if read(tone, ToneSection) is not None:
            # Only the keys given: the tone module fills in the others.
            tones[name] = given(tone, ToneSection)
    return tones


def _storage(table: Table, driver: Driver | None) -> StorageSection | None:
    """``[storage]``: hardware profiles never create a pepper, ``gatewayd provision`` does."""
    storage = read(table, StorageSection, driver=driver)
    if storage is not None and storage.create_pepper and driver not in (None, "sim"):
        table.problems.add(
            table.key("create_pepper"),
            f'must be false on a hardware profile (driver "{driver}"): peppers come from '
            "`gatewayd provision` (installed as the systemd credential gatewayd-pepper or as "
            "storage.pepper_file), never created by the daemon; remove the key",
        )
        return None
    return storage


# --- hw_profiles/README.md's tables ------------------------------------------------------

#: ``<!-- schema:NAME -->`` blocks of the README, and the table each is written from.
README_TABLES: Final[Mapping[str, type[DataclassInstance]]] = {
    "board": BoardSection,
    "line": LineSection,
    "line.gpio-slic": SlicSection,
    "line.pins": SlicPins,
    "line.v253-modem": ModemSection,
    "audio": AudioSection,
    "console": ConsoleSection,
    "voicemail": VoicemailConfig,
    "voicemail.keys": Keys,
    "voicemail.timeouts": Timeouts,
    "voicemail.policy": Policy,
    "voicemail.mailbox": Mailbox,
    "tones.NAME": ToneSection,
    "storage": StorageSection,
    "logging": LoggingSection,
    "sockets": SocketsSection,
}
_README_BLOCK = re.compile(r"(<!-- schema:(\S+) -->\n).*?(<!-- /schema -->)", re.DOTALL)


def readme_table(name: str) -> str:
    """The README table of block ``name``: its keys, and ``[line]``'s deprecated ones."""
    text = render_table(README_TABLES[name])
    if name == "line":
        for key, (drivers, moved_to) in LINE_DEPRECATED.items():
            only = ", ".join(drivers)
            doc = f"*{only}*: use `{moved_to}` (still read, with a warning)"
            text += f"| `{key}` | deprecated | – | {doc} |\n"
    return text


def render_readme(text: str) -> str:
    """``text`` (the README) with every ``<!-- schema:NAME -->`` block regenerated."""
    return _README_BLOCK.sub(lambda m: m[1] + readme_table(m[2]) + m[3], text)


def main(argv: list[str] | None = None) -> int:
    """``python -m gatewayd.profile --readme [FILE]``: regenerate the README's key tables."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m gatewayd.profile", description=main.__doc__)
    parser.add_argument("--readme", nargs="?", const=str(README), metavar="FILE", required=True)
    path = Path(parser.parse_args(argv).readme)
    text = path.read_text(encoding="utf-8")
    updated = render_readme(text)
    if updated != text:
        path.write_text(updated, encoding="utf-8")
    print(f"{path}: {'updated' if updated != text else 'already current'}")
    return 0


#: The README of the repository's shipped profiles.
README: Final = Path(__file__).resolve().parent.parent / "hw_profiles" / "README.md"

if __name__ == "__main__":
    raise SystemExit(main())
