"""The events of ``events --json`` are declared once; README's table is generated from them."""

from __future__ import annotations

import subprocess
import sys
import typing
from datetime import datetime
from pathlib import Path

import pytest

from gatewayd import eventtypes
from gatewayd.eventbus import EventBus
from gatewayd.eventtypes import EVENT_TYPES, README, problems, readme_with_table, table

REPO = Path(__file__).resolve().parent.parent


def test_readme_event_table_is_current() -> None:
    text = README.read_text(encoding="utf-8")
    assert readme_with_table(text) == text, (
        "README.md's event table is stale: run `python -m gatewayd.eventtypes --readme`"
    )


def test_the_check_command_fails_on_a_stale_readme(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "README.md"
    stale.write_text(
        "# x\n<!-- events:begin -->\n| type |\n<!-- events:end -->\ntail\n", encoding="utf-8"
    )
    monkeypatch.setattr(eventtypes, "README", stale)
    assert eventtypes.main(["--check"]) == 1
    assert "--readme" in capsys.readouterr().err
    assert eventtypes.main(["--readme"]) == 0
    assert eventtypes.main(["--check"]) == 0
    rewritten = stale.read_text(encoding="utf-8")
    assert rewritten.startswith("# x\n") and rewritten.endswith("<!-- events:end -->\ntail\n")
    assert "| `mwi` | `state` (`on`/`off`) |" in rewritten


def test_the_table_command_runs_as_a_module() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gatewayd.eventtypes", "--table"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == table()


def test_every_declared_event_is_a_row_with_its_fields_and_when() -> None:
    rows = table().splitlines()[2:]
    assert len(rows) == len(EVENT_TYPES) == len(typing.get_args(eventtypes.Event))
    for event_type, row in zip(EVENT_TYPES, rows, strict=True):
        name = typing.get_args(typing.get_type_hints(event_type)["type"])[0]
        assert row.startswith(f"| `{name}` |")
        for field in typing.get_type_hints(event_type):
            if field != "type":
                assert f"`{field}`" in row
        assert (event_type.__doc__ or "").strip() in row


def test_the_mailbox_events_of_design_section_6_are_declared() -> None:
    assert problems({"type": "message", "action": "deposited", "id": "7", "seconds": 12.5}) == []
    assert problems({"type": "mwi", "state": "on", "t": 1.0}) == []
    assert problems({"type": "mwi", "state": "blinking"}) != []


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ({"type": "wink"}, "undeclared event type 'wink'"),
        ({"type": "hook", "party": "handset"}, "missing 'state'"),
        ({"type": "hook", "party": "neighbour", "state": "on"}, "party='neighbour'"),
        ({"type": "auth", "result": "ok", "failures": True, "party": "remote"}, "failures=True"),
        ({"type": "lock", "code": "4931"}, "undeclared field 'code'"),
    ],
)
def test_an_event_unlike_its_declaration_is_found(event: dict[str, object], problem: str) -> None:
    found = problems(event)
    assert any(problem in text for text in found), found


def test_the_bus_stamps_declared_events() -> None:
    wall = datetime(2026, 12, 1, 9, 30, 5, 250000).astimezone()
    bus = EventBus(clock=lambda: 12.3456, wall_clock=wall.timestamp)
    seen: list[dict[str, object]] = []
    bus.add_listener(seen.append)
    bus.publish({"type": "cooldown", "seconds": 900})
    # t for programs (monotonic), time for people (the wall clock, ISO 8601 with its offset)
    assert seen == [
        {
            "type": "cooldown",
            "seconds": 900,
            "t": 12.346,
            "time": wall.isoformat(timespec="milliseconds"),
        }
    ]
    assert str(seen[0]["time"]).startswith("2026-12-01T09:30:05.250")
    assert problems(seen[0]) == []
