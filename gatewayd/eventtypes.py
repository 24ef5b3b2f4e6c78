"""Every event of the ``events`` stream, declared once (DESIGN.md §6).

Each event is a ``TypedDict`` whose ``type`` is a ``Literal``; its docstring's
first line says when it is sent. The publishers (the IVR's ``Notify``, the
daemon, the control socket) build these, mypy checks them, and README's table
"Events (`events --json`)" is generated from here::

    python -m gatewayd.eventtypes --readme    # rewrite the table in README.md
    python -m gatewayd.eventtypes --check     # exit 1 if README's table is stale

The bus adds ``"t"`` (seconds, monotonic) and ``"time"`` (wall clock, ISO 8601) to each
event as it publishes it.
No event ever holds a digit of a code.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired, TypedDict

from gatewayd.events import Party

#: A technician's console command caused this (``ring``, ``play``, ``tone``).
ConsoleOrigin = Annotated[Literal["console"], "when a console command caused it"]


class SubscribedEvent(TypedDict):
    """first line of every stream: from here on no event is missed"""

    type: Literal["subscribed"]


class HookEvent(TypedDict):
    """handset lifted / hung up; remote hang-up"""

    type: Literal["hook"]
    party: Party
    state: Literal["off", "on"]


class CallEvent(TypedDict):
    """a call starts or ends"""

    type: Literal["call"]
    party: Party
    state: Literal["start", "end"]
    reason: NotRequired[
        Annotated[str, "on end: `hangup`, `ended`, `line_fault`, `error`, `caller_gave_up`"]
    ]
    by: NotRequired[
        Annotated[Literal["handset"], "on a remote start: the subscriber took the call"]
    ]


class RingEvent(TypedDict):
    """the line rings"""

    type: Literal["ring"]
    origin: NotRequired[ConsoleOrigin]
    seconds: NotRequired[Annotated[float, "with `origin`: how long the console rings"]]


class KeyEvent(TypedDict):
    """a key"""

    type: Literal["key"]
    party: Party
    key: Annotated[str, "`0-9*#ABCD`, or `masked` during code entry"]


class MenuEvent(TypedDict):
    """the IVR enters a menu"""

    type: Literal["menu"]
    state: Annotated[
        str,
        "`main_menu`, `personalise_menu`, `code_menu`, `code_entry`, `code_confirm`, "
        "`code_check`, `greeting`, `recording`",
    ]


class PromptEvent(TypedDict):
    """a prompt starts playing"""

    type: Literal["prompt"]
    id: Annotated[str, "a prompt id; read-back digits as `digit_masked`"]
    parts: NotRequired[
        Annotated[
            list[list[str]],
            "a composed menu's fragments, one list per sentence "
            '(`[["say_listen", "press", "digit_1"], ...]`)',
        ]
    ]
    origin: NotRequired[ConsoleOrigin]


class PromptEndEvent(TypedDict):
    """the prompts finished playing (not stopped)"""

    type: Literal["prompt_end"]


class ToneEvent(TypedDict):
    """a tone starts"""

    type: Literal["tone"]
    name: Annotated[str, "`dial`, `busy`, `congestion`, `ringback`..."]
    origin: NotRequired[ConsoleOrigin]


class StopEvent(TypedDict):
    """audio stopped (barge-in, hang-up)"""

    type: Literal["stop"]


class CodeEvent(TypedDict):
    """the code changed"""

    type: Literal["code"]
    action: Literal["created", "modified", "reset"]
    origin: Annotated[str, "`handset`, `console`, `ctl`..."]


class ProtectionEvent(TypedDict):
    """the "code required from the fixed line" setting changed"""

    type: Literal["protection"]
    state: Literal["on", "off"]


class AuthEvent(TypedDict):
    """a code was checked"""

    type: Literal["auth"]
    result: Literal["ok", "fail"]
    failures: Annotated[int, "consecutive failures now"]
    party: Party


class CooldownEvent(TypedDict):
    """a cool-down started, or a caller met one"""

    type: Literal["cooldown"]
    seconds: float


class LockEvent(TypedDict):
    """access is locked until a reset"""

    type: Literal["lock"]


class LineEvent(TypedDict):
    """the line hardware failed (e.g. the modem was unplugged)"""

    type: Literal["line"]
    state: Literal["fault"]
    reason: str


class MessageEvent(TypedDict):
    """a mailbox message was left, listened to, kept, deleted or recovered at start (§7)"""

    type: Literal["message"]
    action: Literal["deposited", "heard", "saved", "deleted", "recovered"]
    id: Annotated[str, "the message's id, as `messages --json` shows it"]
    seconds: Annotated[float, "its duration"]


class MwiEvent(TypedDict):
    """the message-waiting indication turned on or off (§7.5)"""

    type: Literal["mwi"]
    state: Literal["on", "off"]


#: Every event, in README order.
EVENT_TYPES: tuple[type[Any], ...] = (
    SubscribedEvent,
    HookEvent,
    CallEvent,
    RingEvent,
    KeyEvent,
    MenuEvent,
    PromptEvent,
    PromptEndEvent,
    ToneEvent,
    StopEvent,
    CodeEvent,
    ProtectionEvent,
    AuthEvent,
    CooldownEvent,
    LockEvent,
    LineEvent,
    MessageEvent,
    MwiEvent,
)

Event = (
    SubscribedEvent
    | HookEvent
    | CallEvent
    | RingEvent
    | KeyEvent
    | MenuEvent
    | PromptEvent
    | PromptEndEvent
    | ToneEvent
    | StopEvent
    | CodeEvent
    | ProtectionEvent
    | AuthEvent
    | CooldownEvent
    | LockEvent
    | LineEvent
    | MessageEvent
    | MwiEvent
)
#: An event as it goes on the wire: an :data:`Event` plus ``"t"`` and ``"time"``.
StampedEvent = dict[str, Any]

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- events:begin -->", "<!-- events:end -->"


# --- the table, and a check of an event against its declaration -------------------------


def _strip(hint: Any) -> tuple[Any, str, bool]:
    """(the bare type, its note, whether it is optional) of one field's annotation."""
    optional = False
    note = ""
    while True:
        origin = typing.get_origin(hint)
        if origin is NotRequired:
            optional, hint = True, typing.get_args(hint)[0]
        elif origin is Annotated:
            hint, note = hint.__origin__, hint.__metadata__[0]
        else:
            return hint, note, optional


_NAMES: dict[type[Any], str] = {}
_FIELDS: dict[type[Any], dict[str, tuple[Any, str, bool]]] = {}


def _event_name(event_type: type[Any]) -> str:
    if event_type in _NAMES:
        return _NAMES[event_type]
    literal = typing.get_type_hints(event_type)["type"]
    name: str = typing.get_args(literal)[0]
    _NAMES[event_type] = name
    return name


def _fields(event_type: type[Any]) -> dict[str, tuple[Any, str, bool]]:
    if event_type not in _FIELDS:
        hints = typing.get_type_hints(event_type, include_extras=True)
        _FIELDS[event_type] = {name: _strip(hint) for name, hint in hints.items() if name != "type"}
    return _FIELDS[event_type]


def _describe(name: str, hint: Any, note: str, optional: bool) -> str:
    if typing.get_origin(hint) is Literal and not note:
        note = "/".join(f"`{value}`" for value in typing.get_args(hint))
    notes = [*(["optional"] if optional else []), *([note] if note else [])]
    return f"`{name}`" + (f" ({'; '.join(notes)})" if notes else "")


def table() -> str:
    """README's event table, in Markdown."""
    rows = ["| type | fields | when |", "|---|---|---|"]
    for event_type in EVENT_TYPES:
        fields = ", ".join(
            _describe(name, hint, note, optional)
            for name, (hint, note, optional) in _fields(event_type).items()
        )
        when = (event_type.__doc__ or "").strip().splitlines()[0]
        cells = (f"`{_event_name(event_type)}`", fields, when)
        rows.append("|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|")
    return "\n".join(rows) + "\n"


def _matches(value: object, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arm) for arm in typing.get_args(hint))
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def problems(event: Mapping[str, object]) -> list[str]:
    """What in ``event`` (``"t"`` allowed) differs from its declaration; empty if nothing."""
    by_name = {_event_name(event_type): event_type for event_type in EVENT_TYPES}
    event_type = by_name.get(str(event.get("type")))
    if event_type is None:
        return [f"undeclared event type {event.get('type')!r}"]
    fields = _fields(event_type)
    found = []
    for name, (hint, _, optional) in fields.items():
        if name not in event:
            if not optional:
                found.append(f"{event['type']}: missing {name!r}")
        elif not _matches(event[name], hint):
            found.append(f"{event['type']}: {name}={event[name]!r} is not {hint}")
    extra = set(event) - set(fields) - {"type", "t", "time"}
    found.extend(f"{event['type']}: undeclared field {name!r}" for name in sorted(extra))
    return found


# --- README ------------------------------------------------------------------------------


def readme_with_table(text: str) -> str:
    """``text`` (README.md) with the table between the markers replaced by :func:`table`."""
    begin, end = text.find(BEGIN), text.find(END)
    if begin < 0 or end < begin:
        raise ValueError(f"README.md: the markers {BEGIN} and {END} are missing; add them")
    return f"{text[: begin + len(BEGIN)]}\n{table()}{text[end:]}"


def main(argv: list[str] | None = None) -> int:
    """``python -m gatewayd.eventtypes --readme|--check``."""
    parser = argparse.ArgumentParser(prog="python -m gatewayd.eventtypes", description=__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--readme", action="store_true", help="rewrite README.md's event table")
    group.add_argument("--check", action="store_true", help="exit 1 if README.md is stale")
    group.add_argument("--table", action="store_true", help="print the table")
    args = parser.parse_args(argv)
    if args.table:
        sys.stdout.write(table())
        return 0
    current = README.read_text(encoding="utf-8")
    wanted = readme_with_table(current)
    if args.check:
        if current != wanted:
            sys.stderr.write("README.md: the event table is stale; run " + _FIX + "\n")
            return 1
        return 0
    README.write_text(wanted, encoding="utf-8")
    return 0


_FIX = "`python -m gatewayd.eventtypes --readme`"

if __name__ == "__main__":
    sys.exit(main())
