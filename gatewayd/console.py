"""The console's command language, served on the control socket (and the serial console).

Commands never read or set the subscriber's code: ``status`` shows facts about
it (set or not, failures, cool-down, lock, protection), never digits.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gatewayd import __version__

HELP = """\
gatewayd console commands:
  help              this help
  status [--json]   line state, current menu, and the code's state (never its digits)
  events [--json]   stream live events (one per line) until you disconnect
  audit [N]         the last N audit records (default 20): what, origin, time
  reset --yes       advisor reset: clears the code, the failure counter, the lock and
                    the fixed-line protection; the subscriber then creates a new code
                    from the fixed line
  version           gatewayd version"""


class ServiceView(Protocol):
    """What the console needs from the daemon."""

    def status(self) -> dict[str, Any]:
        """Line, menu and code state, JSON-ready, without digits."""
        ...

    def reset_code(self, origin: str) -> None:
        """The advisor/technician reset."""
        ...

    def audit(self, last: int) -> list[dict[str, Any]]:
        """The last audit records."""
        ...


@dataclass(frozen=True)
class Reply:
    """Lines to send back; ``ok`` False when the command failed (lines start with ``error``)."""

    lines: tuple[str, ...]
    ok: bool = True


@dataclass(frozen=True)
class Stream:
    """Stream events until the client leaves, as JSON lines or human-readable lines."""

    as_json: bool


def _error(message: str) -> Reply:
    return Reply((f"error {message}",), ok=False)


def format_event(event: dict[str, Any]) -> str:
    """One human-readable line for an event (digits are already masked in events)."""
    kind = event.get("type", "?")
    rest = " ".join(f"{k}={v}" for k, v in event.items() if k not in ("type", "t"))
    return f"{event.get('t', 0):10.3f} {kind:8} {rest}".rstrip()


def _format_audit(record: dict[str, Any]) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(record.get("time", 0))))
    details = " ".join(f"{k}={v}" for k, v in record.items() if k not in ("what", "origin", "time"))
    return (
        f"{stamp} {record.get('what', '?'):14} by {record.get('origin', '?'):8} {details}".rstrip()
    )


class Console:
    """Parses and runs one command line against the daemon."""

    def __init__(self, service: ServiceView, origin: str) -> None:
        self._service = service
        self._origin = origin
        self._commands: dict[str, Callable[[list[str]], Reply | Stream]] = {
            "help": self._help,
            "status": self._status,
            "events": self._events,
            "audit": self._audit,
            "reset": self._reset,
            "version": self._version,
        }

    def run(self, line: str) -> Reply | Stream:
        """Run one command line."""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            return _error(f"cannot parse the command: {exc}")
        if not words:
            return Reply(())
        name, args = words[0], words[1:]
        command = self._commands.get(name)
        if command is None:
            shown = name if name.isprintable() else repr(name)
            return _error(f"unknown command {shown[:40]!r}; type `help` for the list")
        return command(args)

    def _help(self, args: list[str]) -> Reply:
        return Reply(tuple(HELP.splitlines()))

    def _version(self, args: list[str]) -> Reply:
        return Reply((f"gatewayd {__version__}",))

    def _status(self, args: list[str]) -> Reply:
        if args not in ([], ["--json"]):
            return _error("usage: status [--json]")
        status = self._service.status()
        if args:
            return Reply((json.dumps(status, sort_keys=True),))
        return Reply(tuple(f"{key}: {_show(value)}" for key, value in status.items()))

    def _events(self, args: list[str]) -> Reply | Stream:
        if args not in ([], ["--json"]):
            return _error("usage: events [--json]")
        return Stream(as_json=bool(args))

    def _audit(self, args: list[str]) -> Reply:
        if len(args) > 1 or (args and not args[0].isdigit()):
            return _error("usage: audit [N]")
        last = int(args[0]) if args else 20
        records = self._service.audit(max(1, min(last, 1000)))
        if not records:
            return Reply(("no audit records",))
        return Reply(tuple(_format_audit(r) for r in records))

    def _reset(self, args: list[str]) -> Reply:
        if args != ["--yes"]:
            return _error(
                "reset clears the code, the failure counter, the lock and the protection; "
                "confirm with `reset --yes`"
            )
        self._service.reset_code(self._origin)
        return Reply(
            ("ok: secret code reset; the subscriber can create a new one from the fixed line",)
        )


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_show(v)}" for k, v in value.items())
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
