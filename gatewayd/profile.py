"""Hardware profiles: one TOML file per board, validated once at load (DESIGN.md §4).

``load_profile("sim")`` or ``load_profile("./board.toml")`` returns a frozen
:class:`Profile`. Every problem found is a :class:`~gatewayd.errors.ProfileError`
whose message names the file, the key as a dotted path (``line.pins.shk``) and
what was expected; all problems of a file are reported at once. Every key is
documented in ``hw_profiles/README.md``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import math
import re
import tomllib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, Protocol, TypeVar, cast

from gatewayd.errors import ProfileError
from gatewayd.paths import shipped_profiles_dir
from gatewayd.voicemail.config import Keys, Policy, Timeouts, VoicemailConfig

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

LOGGER = logging.getLogger(__name__)

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
LANGUAGES: Final = ("fr", "en")
#: Tone plans gatewayd.tones provides (TonePlan.france()); add a name here with its plan.
TONE_PLANS: Final = ("fr",)
#: SLIC and MT8870 signals, in the order of ``[line.pins]``.
PIN_NAMES: Final = ("shk", "rm", "fr", "std", "q1", "q2", "q3", "q4")
#: The SLIC's own signals, needed whatever decodes DTMF.
SLIC_PIN_NAMES: Final = ("shk", "rm", "fr")
#: The ALSA "device" name meaning "audio goes through the voice modem (+VTX)".
MODEM_AUDIO: Final = "modem"

SIM_STATE_DIR: Final = "~/.local/state/gatewayd"
HARDWARE_STATE_DIR: Final = "/var/lib/gatewayd"

# RPi.GPIO in BCM mode: the 40-pin header carries GPIO 0-27.
_RPI_MAX_BCM: Final = 27
# Python toggles F/R itself while ringing: real ring currents are 16-50 Hz, and
# much above 100 Hz the toggling thread cannot keep time.
_RING_HZ_RANGE: Final = (10.0, 100.0)
# Tones are synthesised for 8 kHz telephone audio (gatewayd.tones): below Nyquist.
_TONE_MAX_HZ: Final = 4000.0
_SCRYPT_MIN_N: Final = 2**10

_DIGITS = re.compile(r"[0-9]+")
_TONE_NAME = re.compile(r"[a-z][a-z0-9_]*")


# --- the profile -------------------------------------------------------------


@dataclass(frozen=True)
class BoardSection:
    """``[board]``: which board this profile describes."""

    name: str
    notes: str = ""


@dataclass(frozen=True)
class SlicPins:
    """``[line.pins]``: GPIO numbers (BCM, or line offsets on ``gpio_chip`` for gpiod).

    The decoder pins (``std``, ``q1``-``q4``) are always set when ``dtmf = "mt8870"``;
    with ``dtmf = "inband"`` there may be no decoder, and absent ones are None.
    """

    shk: int
    rm: int
    fr: int
    std: int | None = None
    q1: int | None = None
    q2: int | None = None
    q3: int | None = None
    q4: int | None = None


@dataclass(frozen=True)
class HookTiming:
    """On-hook break classifier thresholds in ms: bounce < pulse < flash < hang-up."""

    bounce_ms: int = 25
    pulse_max_ms: int = 90
    flash_max_ms: int = 900


@dataclass(frozen=True)
class SlicSection:
    """The ``gpio-slic`` keys of ``[line]``: a SLIC (e.g. Ag1171), DTMF by MT8870 or in-band."""

    gpio_backend: GpioBackend
    pins: SlicPins
    gpio_chip: str = "/dev/gpiochip0"
    shk_active_high: bool = True
    ring_frequency_hz: float = 50.0
    dtmf: DtmfSource = "mt8870"
    hook: HookTiming = field(default_factory=HookTiming)


@dataclass(frozen=True)
class ModemSection:
    """The ``v253-modem`` keys of ``[line]`` (a voice modem on a serial port)."""

    port: str
    baudrate: int = 115200
    family: ModemFamily = "generic"
    command_timeout_s: float = 3.0


@dataclass(frozen=True)
class LineSection:
    """``[line]``: the line driver; ``slic``/``modem`` are set only for their driver."""

    driver: Driver
    answer_after_rings: int = 2
    ring_on_s: float = 1.5
    ring_off_s: float = 3.5
    slic: SlicSection | None = None
    modem: ModemSection | None = None


@dataclass(frozen=True)
class AudioSection:
    """``[audio]``: ALSA device names; ``"modem"`` means the voice modem is the audio path."""

    playback: str = "default"
    capture: str = ""


@dataclass(frozen=True)
class ConsoleSection:
    """``[console]``: the technician's serial console."""

    port: str
    baudrate: int = 115200


@dataclass(frozen=True)
class StorageSection:
    """``[storage]``: state directory (``~`` not yet expanded) and pepper file."""

    state_dir: str
    pepper_file: str = "pepper"
    create_pepper: bool = False


@dataclass(frozen=True)
class LoggingSection:
    """``[logging]``: log level."""

    level: LogLevel = "info"


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
    tone_plan: str
    #: ``[tones.NAME]`` overrides, checked but left raw: the tone module parses them.
    tones: dict[str, dict[str, object]] = field(hash=False)
    storage: StorageSection
    logging: LoggingSection
    #: ``[usp]`` (TR-369 management), raw: validated by gatewayd.usp.config when the daemon starts.
    usp: dict[str, object] | None = field(default=None, hash=False)


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
    try:
        text = source.read_bytes().decode("utf-8")
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
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line L, column C)": keep it, it is the useful part.
        raise ProfileError(f"{source}: TOML syntax error: {exc}") from exc
    profile = _build_profile(data, source)
    LOGGER.debug("loaded profile %s (driver %s) from %s", profile.name, profile.line.driver, source)
    return profile


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


# --- value kinds ---------------------------------------------------------------

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
D = TypeVar("D")
DC = TypeVar("DC", bound="DataclassInstance")


class _Invalid(Exception):
    """A value does not fit its kind; the message completes "expected ..."."""


class _Kind(Protocol[T_co]):
    """How one key's value is checked and converted, and how to describe what is expected."""

    @property
    def expected(self) -> str:
        """Words completing "expected ...", e.g. ``an integer >= 1``."""
        ...

    def parse(self, raw: object) -> T_co:
        """The converted value, or :class:`_Invalid` with a more precise "expected"."""
        ...


def _is_number(raw: object) -> bool:
    """TOML integers and floats, but not booleans (``bool`` is an ``int`` subclass in Python)."""
    return isinstance(raw, int | float) and not isinstance(raw, bool)


def _quoted(choices: Iterable[str]) -> str:
    """``"a", "b", "c"`` for a message."""
    return ", ".join(f'"{choice}"' for choice in choices)


def _describe(raw: object) -> str:
    """A TOML-flavoured description of a value, for the "got ..." part of a message."""
    if isinstance(raw, bool):
        return f"boolean {'true' if raw else 'false'}"
    if isinstance(raw, int):
        return f"integer {raw}"
    if isinstance(raw, float):
        return f"float {raw}"
    if isinstance(raw, str):
        return f"string {json.dumps(raw, ensure_ascii=False)}"
    if isinstance(raw, dict):
        return "a table"
    if isinstance(raw, list):
        shown = json.dumps(raw, default=str, ensure_ascii=False)
        return f"array {shown if len(shown) <= 60 else shown[:57] + '...'}"
    return f"{type(raw).__name__} {raw}"  # TOML dates and times


@dataclass(frozen=True)
class _Text:
    """A string, optionally from a set of choices or matching a pattern."""

    choices: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None
    what: str = "a string"
    allow_empty: bool = True

    @property
    def expected(self) -> str:
        """See :class:`_Kind`."""
        return f"one of {_quoted(self.choices)}" if self.choices else self.what

    def parse(self, raw: object) -> str:
        """See :class:`_Kind`."""
        if not isinstance(raw, str):
            raise _Invalid(self.expected)
        if self.choices and raw not in self.choices:
            close = difflib.get_close_matches(raw, self.choices, n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            raise _Invalid(self.expected + hint)
        if not raw and not self.allow_empty:
            raise _Invalid(f"{self.what} (not empty)")
        if raw and self.pattern is not None and not self.pattern.fullmatch(raw):
            raise _Invalid(self.what)
        return raw


@dataclass(frozen=True)
class _Int:
    """An integer (never a boolean) within bounds."""

    minimum: int | None = None
    maximum: int | None = None

    @property
    def expected(self) -> str:
        """See :class:`_Kind`."""
        if self.minimum is not None and self.maximum is not None:
            return f"an integer from {self.minimum} to {self.maximum}"
        if self.minimum is not None:
            return f"an integer >= {self.minimum}"
        return "an integer"

    def parse(self, raw: object) -> int:
        """See :class:`_Kind`."""
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise _Invalid(self.expected)
        if (self.minimum is not None and raw < self.minimum) or (
            self.maximum is not None and raw > self.maximum
        ):
            raise _Invalid(self.expected)
        return raw


@dataclass(frozen=True)
class _Real:
    """A finite number (integer or float, never a boolean) within bounds, converted to float."""

    above: float | None = None
    at_least: float | None = None
    below: float | None = None
    at_most: float | None = None
    unit: str = ""

    @property
    def expected(self) -> str:
        """See :class:`_Kind`."""
        bounds = [
            f"{sign} {bound:g}"
            for sign, bound in (
                (">", self.above),
                (">=", self.at_least),
                ("<", self.below),
                ("<=", self.at_most),
            )
            if bound is not None
        ]
        unit = f" {self.unit}" if self.unit else ""
        return " ".join(["a number", " and ".join(bounds)]).rstrip() + unit

    def parse(self, raw: object) -> float:
        """See :class:`_Kind`."""
        # TOML has inf and nan: neither is a duration, a frequency or a level.
        if not _is_number(raw) or not math.isfinite(cast(float, raw)):
            raise _Invalid(self.expected)
        value = float(cast(float, raw))
        if (
            (self.above is not None and value <= self.above)
            or (self.at_least is not None and value < self.at_least)
            or (self.below is not None and value >= self.below)
            or (self.at_most is not None and value > self.at_most)
        ):
            raise _Invalid(self.expected)
        return value


@dataclass(frozen=True)
class _Bool:
    """A TOML boolean (``true``/``false``, not 0/1 nor "yes")."""

    expected: str = "a boolean (true or false)"

    def parse(self, raw: object) -> bool:
        """See :class:`_Kind`."""
        if not isinstance(raw, bool):
            raise _Invalid(self.expected)
        return raw


@dataclass(frozen=True)
class _Reals:
    """An array of numbers, each within an open/closed range, converted to a list of floats."""

    item: _Real
    what: str
    even_length: bool = False
    non_empty: bool = False

    @property
    def expected(self) -> str:
        """See :class:`_Kind`."""
        return f"an array of {self.what}, each {self.item.expected.removeprefix('a number ')}"

    def parse(self, raw: object) -> list[float]:
        """See :class:`_Kind`."""
        if not isinstance(raw, list):
            raise _Invalid(self.expected)
        try:
            values = [self.item.parse(value) for value in raw]
        except _Invalid:
            raise _Invalid(self.expected) from None
        if self.non_empty and not values:
            raise _Invalid(f"{self.expected} (at least one)")
        if self.even_length and len(values) % 2:
            raise _Invalid(f"{self.expected}, in on/off pairs (an even count)")
        return values


# --- reading tables ----------------------------------------------------------


class _Problems:
    """Problems found in one file, each already formatted ``FILE: KEY: what is wrong``."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.lines: list[str] = []

    def add(self, key: str, message: str) -> None:
        """Record one problem with a key (a dotted path) of the file."""
        self.lines.append(f"{self.source}: {key}: {message}")

    def raise_if_any(self) -> None:
        """Raise one ProfileError listing every problem, if there were any."""
        if len(self.lines) == 1:
            raise ProfileError(self.lines[0])
        if self.lines:
            count = len(self.lines)
            raise ProfileError(f"{self.source}: {count} problems:\n" + "\n".join(self.lines))


_MISSING: Final = object()


class _Table:
    """One TOML table being validated, known by its dotted path."""

    def __init__(self, problems: _Problems, path: str, data: Mapping[str, object]) -> None:
        self.problems = problems
        self.path = path
        self.data = data

    def key(self, name: str) -> str:
        """Dotted path of a key of this table."""
        return f"{self.path}.{name}" if self.path else name

    def has(self, name: str) -> bool:
        """Whether the key is present."""
        return name in self.data

    def check_keys(
        self, allowed: Collection[str], elsewhere: Mapping[str, str] | None = None
    ) -> None:
        """Report unknown keys (with the closest known one) and keys that belong elsewhere.

        ``elsewhere`` maps a key that exists for another configuration (another driver)
        to the reason it is refused here.
        """
        elsewhere = elsewhere or {}
        for name in self.data:
            if name in allowed:
                continue
            if name in elsewhere:
                self.problems.add(self.key(name), elsewhere[name])
                continue
            close = difflib.get_close_matches(name, list(allowed), n=1) or (
                difflib.get_close_matches(name, list(elsewhere), n=1)
            )
            what = "section" if isinstance(self.data[name], dict) else "key"
            if close:
                hint = f'did you mean "{self.key(close[0])}"?'
            elif self.path:
                hint = f"known keys of [{self.path}]: {', '.join(sorted(allowed))}"
            else:
                hint = f"known sections: {', '.join(sorted(allowed))}"
            self.problems.add(self.key(name), f"unknown {what}; {hint}")

    def get(self, name: str, kind: _Kind[T], default: D) -> T | D:
        """The key's value if present and valid; otherwise ``default`` (a problem if invalid)."""
        raw = self.data.get(name, _MISSING)
        if raw is _MISSING:
            return default
        try:
            return kind.parse(raw)
        except _Invalid as exc:
            self.problems.add(self.key(name), f"expected {exc}, got {_describe(raw)}")
            return default

    def require(self, name: str, kind: _Kind[T]) -> T | None:
        """The key's value; None (and a problem) when missing or invalid."""
        if name not in self.data:
            self.problems.add(self.key(name), f"missing required key; expected {kind.expected}")
            return None
        return self.get(name, kind, None)

    def child(self, name: str, *, required: bool = False) -> _Table | None:
        """Sub-table ``[path.name]``; None when absent (a problem if required or not a table)."""
        raw = self.data.get(name, _MISSING)
        if raw is _MISSING:
            if required:
                self.problems.add(self.key(name), f"missing required section [{self.key(name)}]")
            return None
        if not isinstance(raw, dict):
            self.problems.add(
                self.key(name), f"expected a table [{self.key(name)}], got {_describe(raw)}"
            )
            return None
        return _Table(self.problems, self.key(name), raw)


def _empty(problems: _Problems, path: str) -> _Table:
    """An absent optional section, read as an empty table so every default applies."""
    return _Table(problems, path, {})


# --- sections ------------------------------------------------------------------

_SECTIONS: Final = (
    "board",
    "line",
    "audio",
    "console",
    "voicemail",
    "tones",
    "storage",
    "logging",
    "usp",
)
_LINE_COMMON: Final = ("driver", "ring_on_s", "ring_off_s")
_LINE_BY_DRIVER: Final[Mapping[str, tuple[str, ...]]] = {
    "sim": ("answer_after_rings",),
    "gpio-slic": (
        "gpio_backend",
        "gpio_chip",
        "pins",
        "shk_active_high",
        "ring_frequency_hz",
        "dtmf",
        "bounce_ms",
        "pulse_max_ms",
        "flash_max_ms",
    ),
    "v253-modem": ("answer_after_rings", "port", "baudrate", "family", "command_timeout_s"),
}


def _build_profile(data: Mapping[str, object], source: Path) -> Profile:
    """Validate parsed TOML into a Profile, or raise one ProfileError listing every problem."""
    problems = _Problems(source)
    root = _Table(problems, "", data)
    root.check_keys(_SECTIONS)

    board_table = root.child("board", required=True)
    board = _board(board_table) if board_table is not None else None
    line_table = root.child("line", required=True)
    line = _line(line_table) if line_table is not None else None
    # The driver alone decides several defaults and rules, even when [line] has other problems.
    raw_driver = line_table.data.get("driver") if line_table is not None else None
    driver = raw_driver if raw_driver in DRIVERS else None
    audio = _audio(root.child("audio") or _empty(problems, "audio"), driver, line)
    console_table = root.child("console")
    console = _console(console_table, line) if console_table is not None else None
    voicemail, tone_plan = _voicemail(root.child("voicemail") or _empty(problems, "voicemail"))
    tones = _tones(root.child("tones") or _empty(problems, "tones"))
    storage = _storage(root.child("storage") or _empty(problems, "storage"), driver)
    logging_section = _logging(root.child("logging") or _empty(problems, "logging"))
    usp_table = root.child("usp")

    problems.raise_if_any()
    if board is None or line is None or audio is None or voicemail is None or storage is None:
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
        tone_plan=tone_plan,
        tones=tones,
        storage=storage,
        logging=logging_section,
        usp=dict(usp_table.data) if usp_table is not None else None,
    )


def _board(table: _Table) -> BoardSection | None:
    """``[board]``."""
    table.check_keys(("name", "notes"))
    name = table.require("name", _Text(what="a non-empty string", allow_empty=False))
    notes = table.get("notes", _Text(), "")
    return BoardSection(name=name, notes=notes) if name is not None else None


def _line(table: _Table) -> LineSection | None:
    """``[line]`` with the keys of its driver; keys of other drivers are refused by name."""
    driver = cast(Driver | None, table.require("driver", _Text(choices=DRIVERS)))
    every_line_key = set(_LINE_COMMON).union(*_LINE_BY_DRIVER.values())
    if driver is None:
        # Without a valid driver only unknown keys can be reported.
        table.check_keys(every_line_key)
        return None
    allowed = (*_LINE_COMMON, *_LINE_BY_DRIVER[driver])
    elsewhere = {}
    for name in every_line_key.difference(allowed):
        owners = [other for other, keys in _LINE_BY_DRIVER.items() if name in keys]
        elsewhere[name] = (
            f"only used with driver {' or '.join(_quoted([o]) for o in owners)}; "
            f'this profile\'s driver is "{driver}"; remove it'
        )
    table.check_keys(allowed, elsewhere)

    before = len(table.problems.lines)
    answer_after_rings = table.get("answer_after_rings", _Int(minimum=1), 2)
    ring_on_s = table.get("ring_on_s", _Real(above=0, unit="s"), 1.5)
    ring_off_s = table.get("ring_off_s", _Real(above=0, unit="s"), 3.5)
    slic = _slic(table) if driver == "gpio-slic" else None
    modem = _modem(table) if driver == "v253-modem" else None
    if len(table.problems.lines) != before:
        return None
    return LineSection(
        driver=driver,
        answer_after_rings=answer_after_rings,
        ring_on_s=ring_on_s,
        ring_off_s=ring_off_s,
        slic=slic,
        modem=modem,
    )


def _slic(table: _Table) -> SlicSection | None:
    """The gpio-slic keys of ``[line]`` and ``[line.pins]``."""
    backend = cast(GpioBackend | None, table.require("gpio_backend", _Text(choices=GPIO_BACKENDS)))
    if table.has("gpio_chip") and backend is not None and backend != "gpiod":
        table.problems.add(
            table.key("gpio_chip"),
            f'only used with line.gpio_backend = "gpiod" (this profile has "{backend}"); remove it',
        )
    chip = _Text(what="a GPIO chip device, e.g. /dev/gpiochip0", allow_empty=False)
    gpio_chip = table.get("gpio_chip", chip, "/dev/gpiochip0")
    dtmf = cast(DtmfSource, table.get("dtmf", _Text(choices=DTMF_SOURCES), "mt8870"))
    pins = _pins(table, backend, dtmf)
    shk_active_high = table.get("shk_active_high", _Bool(), True)
    lo, hi = _RING_HZ_RANGE
    ring_hz = table.get("ring_frequency_hz", _Real(above=lo, at_most=hi, unit="Hz"), 50.0)

    bounce_ms = table.get("bounce_ms", _Int(minimum=1), 25)
    pulse_max_ms = table.get("pulse_max_ms", _Int(minimum=1), 90)
    flash_max_ms = table.get("flash_max_ms", _Int(minimum=1), 900)
    # The classifier needs bounce < pulse < flash, else a break has two meanings.
    if pulse_max_ms <= bounce_ms:
        table.problems.add(
            table.key("pulse_max_ms"),
            f"expected a value greater than line.bounce_ms ({bounce_ms}), got {pulse_max_ms}; "
            "the thresholds must increase: bounce_ms < pulse_max_ms < flash_max_ms",
        )
    elif flash_max_ms <= pulse_max_ms:
        table.problems.add(
            table.key("flash_max_ms"),
            f"expected a value greater than line.pulse_max_ms ({pulse_max_ms}), got "
            f"{flash_max_ms}; the thresholds must increase: "
            "bounce_ms < pulse_max_ms < flash_max_ms",
        )
    if backend is None or pins is None:
        return None
    return SlicSection(
        gpio_backend=backend,
        pins=pins,
        gpio_chip=gpio_chip,
        shk_active_high=shk_active_high,
        ring_frequency_hz=ring_hz,
        dtmf=dtmf,
        hook=HookTiming(bounce_ms, pulse_max_ms, flash_max_ms),
    )


def _pins(line: _Table, backend: GpioBackend | None, dtmf: DtmfSource) -> SlicPins | None:
    """``[line.pins]``: every signal wired, each to its own pin (decoder pins only for MT8870)."""
    table = line.child("pins", required=True)
    if table is None:
        return None
    table.check_keys(PIN_NAMES)
    kind = _Int(minimum=0, maximum=_RPI_MAX_BCM) if backend == "rpi" else _Int(minimum=0)
    required = PIN_NAMES if dtmf == "mt8870" else SLIC_PIN_NAMES
    numbers: dict[str, int] = {}
    used_by: dict[int, str] = {}
    before = len(table.problems.lines)
    for name in PIN_NAMES:
        number = table.require(name, kind) if name in required else table.get(name, kind, None)
        if number is None:
            continue
        if number in used_by:
            table.problems.add(
                table.key(name),
                f"pin {number} is already used by {table.key(used_by[number])}; "
                "each pin may be used once",
            )
            continue
        used_by[number] = name
        numbers[name] = number
    if len(table.problems.lines) != before:
        return None
    return SlicPins(**numbers)


def _modem(table: _Table) -> ModemSection | None:
    """The v253-modem keys of ``[line]``."""
    port = table.require(
        "port", _Text(what="a serial device path, e.g. /dev/ttyACM0", allow_empty=False)
    )
    baudrate = table.get("baudrate", _Int(minimum=1), 115200)
    family = cast(ModemFamily, table.get("family", _Text(choices=MODEM_FAMILIES), "generic"))
    timeout = table.get("command_timeout_s", _Real(above=0, unit="s"), 3.0)
    if port is None:
        return None
    return ModemSection(port=port, baudrate=baudrate, family=family, command_timeout_s=timeout)


def _audio(table: _Table, driver: Driver | None, line: LineSection | None) -> AudioSection | None:
    """``[audio]``: a voice modem is its own audio path; a SLIC plays through ALSA."""
    table.check_keys(("playback", "capture"))
    device = _Text(what="an ALSA device name", allow_empty=False)
    default_playback = MODEM_AUDIO if driver == "v253-modem" else "default"
    playback = table.get("playback", device, default_playback)
    capture = table.get("capture", _Text(what='an ALSA device name or ""'), "")
    before = len(table.problems.lines)
    if driver == "v253-modem":
        if playback != MODEM_AUDIO:
            table.problems.add(
                table.key("playback"),
                f'expected "{MODEM_AUDIO}" on a v253-modem profile (the modem plays the audio, '
                f'+VTX), got "{playback}"; remove the key or set it to "{MODEM_AUDIO}"',
            )
        if capture not in ("", MODEM_AUDIO):
            table.problems.add(
                table.key("capture"),
                f'expected "" or "{MODEM_AUDIO}" on a v253-modem profile (the modem reports '
                f'DTMF keys itself), got "{capture}"',
            )
    elif driver is not None:
        for name, value in (("playback", playback), ("capture", capture)):
            if value == MODEM_AUDIO:
                table.problems.add(
                    table.key(name),
                    f'"{MODEM_AUDIO}" is only valid with driver "v253-modem" '
                    f'(this profile\'s driver is "{driver}"); name an ALSA device',
                )
    if line is not None and line.slic is not None and line.slic.dtmf == "inband" and not capture:
        table.problems.add(
            table.key("capture"),
            'missing: line.dtmf = "inband" decodes keys from ALSA capture; '
            'name the capture device (e.g. "hw:1,0")',
        )
    if len(table.problems.lines) != before:
        return None
    return AudioSection(playback=playback, capture=capture)


def _console(table: _Table, line: LineSection | None) -> ConsoleSection | None:
    """``[console]``: optional, but a present section must name its port."""
    table.check_keys(("port", "baudrate"))
    port = table.require(
        "port", _Text(what="a serial device path, e.g. /dev/ttyS0", allow_empty=False)
    )
    baudrate = table.get("baudrate", _Int(minimum=1), 115200)
    if port is None:
        return None
    if line is not None and line.modem is not None and line.modem.port == port:
        table.problems.add(
            table.key("port"),
            f'"{port}" is already used by line.port (the modem); the console needs its own port',
        )
        return None
    return ConsoleSection(port=port, baudrate=baudrate)


_KEY_KIND: Final = _Text(
    pattern=re.compile(r"[0-9*#]"), what="a single DTMF key, one of 0-9 * #", allow_empty=False
)


def _voicemail(table: _Table) -> tuple[VoicemailConfig | None, str]:
    """``[voicemail]`` and its ``keys``, ``timeouts`` and ``policy`` sub-tables."""
    table.check_keys(
        (
            "access_number",
            "language",
            "line_number",
            "mailbox_exists",
            "tone_plan",
            "keys",
            "timeouts",
            "policy",
        )
    )
    defaults = VoicemailConfig()
    digits = _Text(pattern=_DIGITS, what='a string of digits 0-9, e.g. "3103"', allow_empty=False)
    access_number = table.get("access_number", digits, defaults.access_number)
    language = table.get("language", _Text(choices=LANGUAGES), defaults.language)
    line_number = table.get(
        "line_number",
        _Text(pattern=re.compile(r"[0-9]{4,}"), what='"" or a string of at least 4 digits'),
        defaults.line_number,
    )
    mailbox_exists = table.get("mailbox_exists", _Bool(), defaults.mailbox_exists)
    tone_plan = table.get("tone_plan", _Text(choices=TONE_PLANS), "fr")

    before = len(table.problems.lines)
    keys = _fields_of(table.child("keys"), Keys(), _key_kind)
    timeouts = _fields_of(table.child("timeouts"), Timeouts(), _timeout_kind)
    policy = _fields_of(table.child("policy"), Policy(), _policy_kind)
    if policy.cooldown_cap_s < policy.cooldown_first_s:
        table.problems.add(
            table.key("policy.cooldown_cap_s"),
            f"expected a value >= voicemail.policy.cooldown_first_s ({policy.cooldown_first_s:g}),"
            f" got {policy.cooldown_cap_s:g}",
        )
    if len(table.problems.lines) != before:
        return None, tone_plan
    config = VoicemailConfig(
        access_number=access_number,
        language=language,
        line_number=line_number,
        mailbox_exists=mailbox_exists,
        keys=keys,
        timeouts=timeouts,
        policy=policy,
    )
    return config, tone_plan


def _key_kind(name: str, default: object) -> _Kind[object]:
    """Every ``[voicemail.keys]`` field is one DTMF key."""
    return _KEY_KIND


def _timeout_kind(name: str, default: object) -> _Kind[object]:
    """Timeouts are seconds > 0; counts are >= 0, except entry tries (0 would allow none)."""
    if isinstance(default, float):
        return _Real(above=0, unit="s")
    return _Int(minimum=1 if name == "entry_tries" else 0)


@dataclass(frozen=True)
class _PowerOfTwo:
    """An integer power of two with a floor (scrypt's cost parameter N)."""

    minimum: int

    @property
    def expected(self) -> str:
        """See :class:`_Kind`."""
        return f"a power of two >= {self.minimum} (2**{self.minimum.bit_length() - 1})"

    def parse(self, raw: object) -> int:
        """See :class:`_Kind`."""
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise _Invalid(self.expected)
        if raw < self.minimum or raw & (raw - 1):
            raise _Invalid(self.expected)
        return raw


def _policy_kind(name: str, default: object) -> _Kind[object]:
    """Policy counts are >= 1, durations > 0 s; scrypt N is a power of two >= 2**10."""
    if name == "scrypt_n":
        return _PowerOfTwo(_SCRYPT_MIN_N)
    if isinstance(default, float):
        return _Real(above=0, unit="s")
    return _Int(minimum=1)


class _KindFactory(Protocol):
    """Chooses the kind of a config field from its name and default value."""

    def __call__(self, name: str, default: object) -> _Kind[object]:
        """The kind for this field."""
        ...


def _fields_of(table: _Table | None, defaults: DC, kind_of: _KindFactory) -> DC:
    """A config dataclass from a TOML table: one key per field, its defaults elsewhere."""
    if table is None:
        return defaults
    # Keys come from the dataclass itself, so a field added to config.py is a profile key at once.
    names = [f.name for f in dataclasses.fields(defaults)]
    table.check_keys(names)
    changes: dict[str, object] = {}
    for name in names:
        default = getattr(defaults, name)
        changes[name] = table.get(name, kind_of(name, default), default)
    return dataclasses.replace(defaults, **changes)


_TONE_KEYS: Final[Mapping[str, _Kind[object]]] = {
    "frequencies": _Reals(
        _Real(above=0, below=_TONE_MAX_HZ, unit="Hz"), what="frequencies", non_empty=True
    ),
    "cadence": _Reals(_Real(at_least=0, unit="s"), what="on/off durations", even_length=True),
    "level_dbfs": _Real(at_most=0, unit="dBFS"),
}


def _tones(table: _Table) -> dict[str, dict[str, object]]:
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
        tone.check_keys(tuple(_TONE_KEYS))
        # The table defines the whole tone, so it must say what to play.
        overrides: dict[str, object] = {
            "frequencies": tone.require("frequencies", _TONE_KEYS["frequencies"])
        }
        for key in ("cadence", "level_dbfs"):
            value = tone.get(key, _TONE_KEYS[key], _MISSING)
            if value is not _MISSING:
                overrides[key] = value
        cadence = overrides.get("cadence")
        if isinstance(cadence, list) and cadence and not any(cadence[0::2]):
            tone.problems.add(
                tone.key("cadence"), "the tone is never on: at least one 'on' value must be > 0"
            )
        tones[name] = overrides
    return tones


def _storage(table: _Table, driver: Driver | None) -> StorageSection | None:
    """``[storage]``: hardware profiles never create a pepper, ``gatewayd provision`` does."""
    table.check_keys(("state_dir", "pepper_file", "create_pepper"))
    hardware = driver is not None and driver != "sim"
    path = _Text(what="an absolute path or one starting with ~", allow_empty=False)
    state_dir = table.get("state_dir", path, HARDWARE_STATE_DIR if hardware else SIM_STATE_DIR)
    if not state_dir.startswith(("/", "~")):
        # Relative to what? The working directory of a daemon is not a place to keep codes.
        table.problems.add(
            table.key("state_dir"), f"expected {path.what}, got {_describe(state_dir)}"
        )
    pepper_file = table.get(
        "pepper_file",
        _Text(what="a file path (relative: inside the state dir)", allow_empty=False),
        "pepper",
    )
    create_pepper = table.get("create_pepper", _Bool(), not hardware)
    if create_pepper and hardware:
        table.problems.add(
            table.key("create_pepper"),
            f'must be false on a hardware profile (driver "{driver}"): peppers come from '
            "`gatewayd provision` (installed as the systemd credential gatewayd-pepper or as "
            "storage.pepper_file), never created by the daemon; remove the key",
        )
        return None
    return StorageSection(state_dir=state_dir, pepper_file=pepper_file, create_pepper=create_pepper)


def _logging(table: _Table) -> LoggingSection:
    """``[logging]``."""
    table.check_keys(("level",))
    level = cast(LogLevel, table.get("level", _Text(choices=LOG_LEVELS), "info"))
    return LoggingSection(level=level)
