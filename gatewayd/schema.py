"""Settings declared once: kind (type and range), default, doc line; read and documented from it.

A profile table is a frozen dataclass whose fields are declared with
:func:`setting` (a key), :func:`subtable` (``[parent.name]``) or :func:`group`
(keys of the same table kept in their own dataclass). :func:`read` validates a
TOML table into that dataclass, :func:`render_table` writes its README table.
Every problem is reported as ``FILE: dotted.key: what was expected`` with a
did-you-mean for unknown keys. Stdlib only: the daemon imports it at start.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar, cast

from gatewayd.errors import ProfileError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
D = TypeVar("D")
DC = TypeVar("DC", bound="DataclassInstance")


# --- value kinds ---------------------------------------------------------------------


class Invalid(Exception):
    """A value does not fit its kind; the message completes "expected ..."."""


class Kind(Protocol[T_co]):
    """How one key's value is checked and converted, and how to describe what is expected."""

    @property
    def expected(self) -> str:
        """Words completing "expected ...", e.g. ``an integer >= 1``."""
        ...

    def parse(self, raw: object) -> T_co:
        """The converted value, or :class:`Invalid` with a more precise "expected"."""
        ...


def quoted(choices: Iterable[str]) -> str:
    """``"a", "b", "c"`` for a message."""
    return ", ".join(f'"{choice}"' for choice in choices)


def describe(raw: object) -> str:
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


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """``' (did you mean "x"?)'`` for the closest known word, or ``""``."""
    close = difflib.get_close_matches(word, list(known), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


@dataclass(frozen=True)
class Text:
    """A string, optionally from a set of choices or matching a pattern."""

    choices: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None
    what: str = "a string"
    allow_empty: bool = True

    @property
    def expected(self) -> str:
        """See :class:`Kind`."""
        return f"one of {quoted(self.choices)}" if self.choices else self.what

    def parse(self, raw: object) -> str:
        """See :class:`Kind`."""
        if not isinstance(raw, str):
            raise Invalid(self.expected)
        if self.choices and raw not in self.choices:
            raise Invalid(self.expected + did_you_mean(raw, self.choices))
        if not raw and not self.allow_empty:
            raise Invalid(f"{self.what} (not empty)")
        if raw and self.pattern is not None and not self.pattern.fullmatch(raw):
            raise Invalid(self.what)
        return raw


@dataclass(frozen=True)
class Int:
    """An integer (never a boolean) within bounds."""

    minimum: int | None = None
    maximum: int | None = None
    unit: str = ""

    @property
    def expected(self) -> str:
        """See :class:`Kind`."""
        unit = f" {self.unit}" if self.unit else ""
        if self.minimum is not None and self.maximum is not None:
            return f"an integer from {self.minimum} to {self.maximum}{unit}"
        if self.minimum is not None:
            return f"an integer >= {self.minimum}{unit}"
        return "an integer"

    def parse(self, raw: object) -> int:
        """See :class:`Kind`."""
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise Invalid(self.expected)
        if (self.minimum is not None and raw < self.minimum) or (
            self.maximum is not None and raw > self.maximum
        ):
            raise Invalid(self.expected)
        return raw


@dataclass(frozen=True)
class Real:
    """A finite number (integer or float, never a boolean) within bounds, converted to float."""

    above: float | None = None
    at_least: float | None = None
    below: float | None = None
    at_most: float | None = None
    unit: str = ""

    @property
    def expected(self) -> str:
        """See :class:`Kind`."""
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
        """See :class:`Kind`."""
        # TOML has inf and nan: neither is a duration, a frequency or a level.
        number = isinstance(raw, int | float) and not isinstance(raw, bool)
        if not number or not math.isfinite(cast(float, raw)):
            raise Invalid(self.expected)
        value = float(cast(float, raw))
        if (
            (self.above is not None and value <= self.above)
            or (self.at_least is not None and value < self.at_least)
            or (self.below is not None and value >= self.below)
            or (self.at_most is not None and value > self.at_most)
        ):
            raise Invalid(self.expected)
        return value


@dataclass(frozen=True)
class Bool:
    """A TOML boolean (``true``/``false``, not 0/1 nor "yes")."""

    expected: str = "a boolean (true or false)"

    def parse(self, raw: object) -> bool:
        """See :class:`Kind`."""
        if not isinstance(raw, bool):
            raise Invalid(self.expected)
        return raw


@dataclass(frozen=True)
class Reals:
    """An array of numbers, each within an open/closed range, converted to a list of floats."""

    item: Real
    what: str
    even_length: bool = False
    non_empty: bool = False

    @property
    def expected(self) -> str:
        """See :class:`Kind`."""
        return f"an array of {self.what}, each {self.item.expected.removeprefix('a number ')}"

    def parse(self, raw: object) -> list[float]:
        """See :class:`Kind`."""
        if not isinstance(raw, list):
            raise Invalid(self.expected)
        try:
            values = [self.item.parse(value) for value in raw]
        except Invalid:
            raise Invalid(self.expected) from None
        if self.non_empty and not values:
            raise Invalid(f"{self.expected} (at least one)")
        if self.even_length and len(values) % 2:
            raise Invalid(f"{self.expected}, in on/off pairs (an even count)")
        return values


@dataclass(frozen=True)
class PowerOfTwo:
    """An integer power of two with a floor (scrypt's cost parameter N)."""

    minimum: int

    @property
    def expected(self) -> str:
        """See :class:`Kind`."""
        return f"a power of two >= {self.minimum} (2**{self.minimum.bit_length() - 1})"

    def parse(self, raw: object) -> int:
        """See :class:`Kind`."""
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise Invalid(self.expected)
        if raw < self.minimum or raw & (raw - 1):
            raise Invalid(self.expected)
        return raw


@dataclass(frozen=True)
class TimeZone:
    """An IANA time zone name that this system's zoneinfo knows, e.g. ``Europe/Paris``."""

    expected: str = 'an IANA time zone name, e.g. "Europe/Paris"'

    def parse(self, raw: object) -> str:
        """See :class:`Kind`."""
        import zoneinfo  # only when a profile names a zone: the daemon starts without it

        if not isinstance(raw, str):
            raise Invalid(self.expected)
        try:
            zoneinfo.ZoneInfo(raw)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            # Listing every zone reads the whole database: only on this error path.
            raise Invalid(
                self.expected + did_you_mean(raw, zoneinfo.available_timezones())
            ) from None
        return raw


# --- declarations ----------------------------------------------------------------------


class _Required:
    """The default of a required key: there is none."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()
_SETTING: Final = "gatewayd.setting"
_TABLE: Final = "gatewayd.subtable"
_GROUP: Final = "gatewayd.group"


@dataclass(frozen=True)
class Setting:
    """One key: its kind, default (or REQUIRED), README doc line, driver-specific defaults."""

    kind: Kind[object]
    doc: str
    default: object = REQUIRED
    #: Default on some drivers (``line.driver``), e.g. a hardware state dir.
    by_driver: Mapping[str, object] = dataclasses.field(default_factory=dict)
    #: README "default" column when words say it better than a value.
    default_doc: str = ""

    def default_for(self, driver: str | None) -> object:
        """The default on this driver."""
        return self.by_driver.get(driver or "", self.default)


def setting(
    kind: Kind[object],
    doc: str,
    default: object = REQUIRED,
    *,
    by_driver: Mapping[str, object] | None = None,
    default_doc: str = "",
) -> Any:
    """A dataclass field that is a profile key (``Any``: it stands for the field's value)."""
    meta = {_SETTING: Setting(kind, doc, default, dict(by_driver or {}), default_doc)}
    if default is REQUIRED:
        return dataclasses.field(metadata=meta)
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def subtable(cls: type[DataclassInstance], *, required: bool = False) -> Any:
    """A field that is the sub-table ``[parent.NAME]``, read as dataclass ``cls``."""
    meta = {_TABLE: (cls, required)}
    if required:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default_factory=cls, metadata=meta)


def group(cls: type[DataclassInstance]) -> Any:
    """A field whose keys sit in the same table, gathered in dataclass ``cls``."""
    return dataclasses.field(default_factory=cls, metadata={_GROUP: cls})


def settings_of(cls: type[DataclassInstance]) -> Iterator[tuple[str, Setting]]:
    """Every key of a table with its declaration, in declaration order (groups flattened)."""
    for f in dataclasses.fields(cls):
        if _SETTING in f.metadata:
            yield f.name, f.metadata[_SETTING]
        elif _GROUP in f.metadata:
            yield from settings_of(f.metadata[_GROUP])


def subtables_of(cls: type[DataclassInstance]) -> Iterator[tuple[str, type[DataclassInstance]]]:
    """Every ``[parent.NAME]`` of a table, with its dataclass."""
    for f in dataclasses.fields(cls):
        if _TABLE in f.metadata:
            yield f.name, f.metadata[_TABLE][0]


def keys_of(cls: type[DataclassInstance]) -> tuple[str, ...]:
    """The key and sub-table names a table accepts."""
    return (*(name for name, _ in settings_of(cls)), *(name for name, _ in subtables_of(cls)))


# --- reading -----------------------------------------------------------------------------


class Problems:
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


MISSING: Final = object()


class Table:
    """One TOML table being validated, known by its dotted path."""

    def __init__(self, problems: Problems, path: str, data: Mapping[str, object]) -> None:
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

    def get(self, name: str, kind: Kind[T], default: D) -> T | D:
        """The key's value if present and valid; otherwise ``default`` (a problem if invalid)."""
        raw = self.data.get(name, MISSING)
        if raw is MISSING:
            return default
        try:
            return kind.parse(raw)
        except Invalid as exc:
            self.problems.add(self.key(name), f"expected {exc}, got {describe(raw)}")
            return default

    def require(self, name: str, kind: Kind[T]) -> T | None:
        """The key's value; None (and a problem) when missing or invalid."""
        if name not in self.data:
            self.problems.add(self.key(name), f"missing required key; expected {kind.expected}")
            return None
        return self.get(name, kind, None)

    def child(self, name: str, *, required: bool = False) -> Table | None:
        """Sub-table ``[path.name]``; None when absent (a problem if required or not a table)."""
        raw = self.data.get(name, MISSING)
        if raw is MISSING:
            if required:
                self.problems.add(self.key(name), f"missing required section [{self.key(name)}]")
            return None
        if not isinstance(raw, dict):
            self.problems.add(
                self.key(name), f"expected a table [{self.key(name)}], got {describe(raw)}"
            )
            return None
        return Table(self.problems, self.key(name), raw)

    def child_or_empty(self, name: str) -> Table:
        """An optional sub-table; absent (or not a table: a problem) reads as empty."""
        return self.child(name) or Table(self.problems, self.key(name), {})


class Checked(Protocol):
    """A table with rules between its keys: ``check`` yields (key, problem) pairs."""

    def check(self, key: Callable[[str], str]) -> Iterable[tuple[str, str]]:
        """Problems between keys; ``key`` turns a key name into its dotted path."""
        ...


def read(
    table: Table,
    cls: type[DC],
    *,
    driver: str | None = None,
    kinds: Mapping[str, Kind[object]] | None = None,
    required: Collection[str] = (),
    subtables: Mapping[str, Callable[[Table], object]] | None = None,
    check_keys: bool = True,
) -> DC | None:
    """Table ``cls`` from ``table``: every declared key checked; None if any problem.

    ``kinds`` replaces a key's kind, ``required`` makes keys required and ``subtables``
    reads a sub-table with another function, for rules that depend on another key
    (pins on the header, decoder pins with an MT8870). A table with a ``check`` method
    (:class:`Checked`) has its rules between keys checked once its keys are valid.
    """
    if check_keys:
        table.check_keys(keys_of(cls))
    kinds = kinds or {}
    subtables = subtables or {}
    before = len(table.problems.lines)
    values: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        if _SETTING in f.metadata:
            declared: Setting = f.metadata[_SETTING]
            kind = kinds.get(f.name, declared.kind)
            default = declared.default_for(driver)
            if default is REQUIRED or f.name in required:
                values[f.name] = table.require(f.name, kind)
            else:
                values[f.name] = table.get(f.name, kind, default)
        elif _GROUP in f.metadata:
            values[f.name] = read(table, f.metadata[_GROUP], driver=driver, check_keys=False)
        elif _TABLE in f.metadata:
            sub_cls, sub_required = f.metadata[_TABLE]
            sub = table.child(f.name, required=sub_required)
            if sub is None:
                values[f.name] = None if sub_required else sub_cls()
            elif f.name in subtables:
                values[f.name] = subtables[f.name](sub)
            else:
                values[f.name] = read(sub, sub_cls, driver=driver)
    if len(table.problems.lines) != before:
        return None
    result = cls(**values)
    if hasattr(result, "check"):
        for name, message in cast(Checked, result).check(table.key):
            table.problems.add(table.key(name), message)
    return None if len(table.problems.lines) != before else result


def declared(cls: type[DataclassInstance], name: str) -> Setting:
    """The declaration of key ``name`` of table ``cls``."""
    return cast(Setting, cls.__dataclass_fields__[name].metadata[_SETTING])


def given(table: Table, cls: type[DataclassInstance]) -> dict[str, object]:
    """The keys of ``cls`` present in ``table``, parsed (call after a successful :func:`read`)."""
    return {
        name: declared.kind.parse(table.data[name])
        for name, declared in settings_of(cls)
        if name in table.data
    }


# --- documentation -------------------------------------------------------------------------


def toml_value(value: object) -> str:
    """A default as it would be written in TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return str(value)


def _type_words(kind: Kind[object]) -> str:
    """The README "type" column: what the error message expects, without the article."""
    if isinstance(kind, Text) and kind.choices:
        return " or ".join(f'`"{choice}"`' for choice in kind.choices)
    expected = kind.expected
    for article in ("a ", "an "):
        if expected.startswith(article):
            return expected.removeprefix(article)
    return expected


def _default_words(declared: Setting) -> str:
    """The README "default" column."""
    if declared.default_doc:
        return declared.default_doc
    if declared.default is REQUIRED:
        return "required"
    words = f"`{toml_value(declared.default)}`"
    for driver, value in declared.by_driver.items():
        words += f"; `{toml_value(value)}` for {driver}"
    return words


def render_table(cls: type[DataclassInstance], *, notes: Mapping[str, str] | None = None) -> str:
    """The README table of ``cls``'s keys: key, type, default, meaning (``notes`` prefix one)."""
    notes = notes or {}
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, declared in settings_of(cls):
        note = notes.get(name, "")
        doc = f"{note}{declared.doc}".replace("|", "\\|")
        kind = _type_words(declared.kind).replace("|", "\\|")
        rows.append(f"| `{name}` | {kind} | {_default_words(declared)} | {doc} |")
    return "\n".join(rows) + "\n"
