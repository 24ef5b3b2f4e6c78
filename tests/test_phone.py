"""The keyboard handset: event lines as the user reads them, keys and script lines as sim commands.

The daemon is the fake of test_cli.py (real unix sockets); prompt texts come
from the real catalogue; the terminal is a real pseudo-terminal.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatewayd.phone import (
    BANNER,
    KEY_HELP,
    Phone,
    after_the_beep,
    format_event,
    keys_of,
    run_phone,
)
from gatewayd.prompts import PromptCatalogue, default_audio_dir
from tests.test_cli import FakeDaemon

CATALOGUE = PromptCatalogue.load(default_audio_dir(), "fr")

OFF_HOOK = json.dumps({"line": {"handset": "off-hook", "remote": "idle"}})
ON_HOOK = json.dumps({"line": {"handset": "on-hook", "remote": "idle"}})


class Screen(io.StringIO):
    """What the phone printed, with a wait for a text to appear (it prints from threads)."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = threading.Condition()

    def write(self, text: str) -> int:
        with self._changed:
            count = super().write(text)
            self._changed.notify_all()
        return count

    def wait_for(self, text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while text not in self.getvalue():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{text!r} not shown; screen:\n{self.getvalue()}")
                self._changed.wait(left)


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="gw-phone-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_fake(runtime_dir: Path, **options: Any) -> FakeDaemon:
    options.setdefault("ctl_answers", {"status --json": [ON_HOOK], "status": ["menu: idle"]})
    return FakeDaemon(runtime_dir, **options)


@pytest.fixture
def fake(runtime_dir: Path) -> Iterator[FakeDaemon]:
    daemon = start_fake(runtime_dir)
    yield daemon
    daemon.close()


# --- what the user reads -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "shown"),
    [
        ({"type": "hook", "party": "handset", "state": "off"}, "  handset off-hook"),
        ({"type": "hook", "party": "handset", "state": "on"}, "  handset on-hook"),
        ({"type": "hook", "party": "remote", "state": "on"}, "  the remote caller hung up"),
        ({"type": "call", "party": "handset", "state": "start"}, "  ☎ handset call starts"),
        (
            {"type": "call", "party": "remote", "state": "end", "reason": "hangup"},
            "  ☎ remote call ends (hangup)",
        ),
        ({"type": "ring"}, "  ☎ ring…"),
        ({"type": "key", "party": "handset", "key": "3"}, "  key 3"),
        ({"type": "key", "party": "handset", "key": "masked"}, "  key •"),
        ({"type": "key", "party": "remote", "key": "masked"}, "  remote key •"),
        ({"type": "prompt", "id": "digit_masked"}, "  box says: •"),
        ({"type": "tone", "name": "dial"}, "  ♪ dial tone"),
        ({"type": "tone", "name": "congestion"}, "  ♪ congestion tone"),
        ({"type": "menu", "state": "code_menu"}, "  → secret-code menu"),
        ({"type": "menu", "state": "future_menu"}, "  → future_menu"),
        (
            {"type": "code", "action": "created", "origin": "handset"},
            "  ✔ secret code created (from the handset)",
        ),
        ({"type": "code", "action": "reset", "origin": "ctl"}, "  ✔ secret code reset (by ctl)"),
        ({"type": "protection", "state": "on"}, "  fixed-line code request on"),
        ({"type": "auth", "result": "ok", "failures": 0}, "  ✔ code accepted"),
        ({"type": "auth", "result": "fail", "failures": 2}, "  ✘ wrong code (2 in a row)"),
        ({"type": "cooldown", "seconds": 900}, "  ⏳ cool-down: 15 min before the next try"),
        ({"type": "cooldown", "seconds": 5400}, "  ⏳ cool-down: 1 h 30 min before the next try"),
        ({"type": "cooldown", "seconds": 45}, "  ⏳ cool-down: 45 s before the next try"),
        (
            {"type": "lock"},
            "  ✘ access locked until an advisor reset (`gatewayd ctl reset --yes`)",
        ),
        ({"type": "line", "state": "fault", "reason": "modem gone"}, "  ⚠ line fault: modem gone"),
        ({"type": "voltage", "volts": 48, "t": 3.5}, "  event voltage: volts=48"),
        ({"type": "auth", "result": "maybe"}, "  event auth: result=maybe"),
        ({"no": "type"}, "  event ?: no=type"),
    ],
)
def test_each_event_reads_as_a_line(event: dict[str, Any], shown: str) -> None:
    assert format_event({**event, "t": 12.3}, CATALOGUE) == shown


@pytest.mark.parametrize(
    "event",
    [
        {"type": "prompt_end"},
        {"type": "stop"},
        {"type": "tone", "name": None},
    ],
)
def test_audio_stopping_is_not_worth_a_line(event: dict[str, Any]) -> None:
    # Every key cuts the audio: a line each time would drown what the box says.
    assert format_event(event, CATALOGUE) is None


def test_prompts_show_their_text_from_the_catalogue() -> None:
    shown = format_event({"type": "prompt", "id": "code_enter_new", "t": 1.0}, CATALOGUE)
    assert shown == (
        "  box says: « Veuillez composer les 4 chiffres du code secret que vous avez choisi, "
        "suivis de la touche dièse. »"
    )
    saved = format_event({"type": "prompt", "id": "code_saved"}, CATALOGUE)
    assert saved == "  box says: « Votre demande est prise en compte. »"


def test_prompts_without_a_catalogue_show_their_id() -> None:
    assert format_event({"type": "prompt", "id": "goodbye"}, None) == "  box says: « [goodbye] »"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
_KNOWN = "hook call ring key menu prompt prompt_end tone stop code protection auth cooldown lock"
_TYPES = st.sampled_from([*_KNOWN.split(), "line", "new_in_v2"]) | _JSON
_FIELDS = st.sampled_from(["party", "state", "key", "id", "name", "result", "failures"])


@given(kind=_TYPES, fields=st.dictionaries(_FIELDS | st.text(max_size=5), _JSON, max_size=5))
def test_no_event_crashes_the_formatter(kind: object, fields: dict[str, Any]) -> None:
    shown = format_event({**fields, "type": kind}, CATALOGUE)
    assert shown is None or isinstance(shown, str)


def test_escape_sequences_from_arrow_keys_are_not_phone_keys() -> None:
    # Ctrl-Left is ESC [ 1 ; 5 D: its 1 and 5 must not dial.
    assert list(keys_of(b"\x1b[1;5D3\x1b[A \x1bOPq")) == ["3", " ", "q"]


# --- scripted (stdin is not a terminal) ---------------------------------------------------


def test_script_lines_become_sim_commands(fake: FakeDaemon) -> None:
    screen = Screen()
    script = io.StringIO(
        "# create nothing, just lift and dial\n"
        "lift\n"
        "press 3103\n"
        "\n"
        "wait prompt:main_menu 10\n"
        "hangup\n"
        "quit\n"
        "press 9\n"  # after quit: never sent
    )
    assert run_phone(fake.runtime_dir, script, screen) == 0
    assert fake.sim_commands == ["handset offhook", "handset press 3103", "handset onhook"]
    # Subscribed (the order against other ctl requests depends on the fake's threads).
    assert b"events --json\n" in fake.ctl_received
    # The phone's own notice may land between event lines (two threads write the screen).
    shown = "".join(
        line
        for line in screen.getvalue().splitlines(keepends=True)
        if not line.startswith("gatewayd phone:")
    )
    assert "  handset off-hook\n  ♪ dial tone\n" in shown
    assert "  box says: « Pour écouter vos messages, tapez 1." in shown


def test_keys_go_to_the_remote_caller_during_a_remote_call(fake: FakeDaemon) -> None:
    script = io.StringIO("call\npress 4931#\nremote hangup\npress 1\nquit\n")
    assert run_phone(fake.runtime_dir, script, Screen()) == 0
    assert fake.sim_commands == [
        "remote call",
        "remote press 4931#",
        "remote hangup",
        "handset press 1",
    ]


def test_a_caller_with_a_number_speaks_a_wav_given_by_a_relative_path(
    fake: FakeDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    script = io.StringIO("call 0612345678\nremote say hello.wav\nremote hangup\nquit\n")
    assert run_phone(fake.runtime_dir, script, Screen()) == 0
    assert fake.sim_commands == [
        "remote call 0612345678",
        f"remote say {tmp_path / 'hello.wav'}",  # the daemon reads it: made absolute
        "remote hangup",
    ]


def test_a_refused_command_is_shown_and_fails_the_script(runtime_dir: Path) -> None:
    daemon = start_fake(
        runtime_dir, sim_answers={"handset press 1": "error lift the handset first"}
    )
    screen = Screen()
    try:
        code = run_phone(runtime_dir, io.StringIO("press 1\nflash\n"), screen)
    finally:
        daemon.close()
    assert code == 1
    assert "  ! handset press 1: lift the handset first" in screen.getvalue()
    assert daemon.sim_commands == ["handset press 1", "handset flash"]  # the script went on


def test_a_wait_that_times_out_fails_the_script(fake: FakeDaemon) -> None:
    screen = Screen()
    assert run_phone(fake.runtime_dir, io.StringIO("wait lock 0.05\n"), screen) == 1
    assert "no lock event within 0.05 s" in screen.getvalue()


def test_an_unknown_script_line_says_where_the_list_is(fake: FakeDaemon) -> None:
    screen = Screen()
    assert run_phone(fake.runtime_dir, io.StringIO("dial 3103\nhelp\n"), screen) == 1
    shown = screen.getvalue()
    assert "cannot run 'dial 3103'; `help` lists the commands" in shown
    assert "press KEYS" in shown and fake.sim_received == []


def test_no_daemon_is_exit_2_naming_the_socket(runtime_dir: Path) -> None:
    screen = Screen()
    assert run_phone(runtime_dir / "nowhere", io.StringIO("lift\n"), screen) == 2
    assert str(runtime_dir / "nowhere" / "sim.sock") in screen.getvalue()
    assert "is the daemon running?" in screen.getvalue()


def test_a_daemon_without_a_sim_line_is_refused_at_once(runtime_dir: Path) -> None:
    daemon = start_fake(runtime_dir, sim=False)
    screen = Screen()
    try:
        assert run_phone(runtime_dir, io.StringIO("lift\n"), screen) == 2
    finally:
        daemon.close()
    assert "does not run the sim profile" in screen.getvalue()
    assert daemon.ctl_received == []


# --- the keyboard ------------------------------------------------------------------------


def test_keys_are_queued_in_order_without_waiting(fake: FakeDaemon) -> None:
    phone = Phone(fake.runtime_dir, Screen(), catalogue=CATALOGUE)
    phone.start()
    for key in " 3103f x":
        assert phone.handle_key(key) is True
    assert phone.handle_key("q") is False
    phone.close()  # waits for the queued commands
    handset = [c for c in fake.sim_commands if c.startswith("handset")]
    assert handset == [
        "handset offhook",
        "handset press 3",
        "handset press 1",
        "handset press 0",
        "handset press 3",
        "handset flash",
        "handset onhook",
    ]
    assert "remote hangup" in fake.sim_commands


def test_x_hangs_up_a_remote_call_that_is_still_ringing(runtime_dir: Path) -> None:
    answered = threading.Event()
    daemon = start_fake(
        runtime_dir,
        hold={"remote call": answered},  # the box is still ringing: no answer yet
        sim_answers={"remote call": "error the call was not answered"},
    )
    screen = Screen()
    phone = Phone(runtime_dir, screen, catalogue=CATALOGUE)
    try:
        phone.start()
        phone.handle_key("r")
        daemon.wait_for_sim("remote call")
        phone.handle_key("x")
        daemon.wait_for_sim("remote hangup")  # sent while `remote call` is still unanswered
        answered.set()
        screen.wait_for("  ! remote call: the call was not answered")
        assert phone.key_party() == "handset"
    finally:
        phone.close()
        daemon.close()
    assert daemon.sim_commands == ["remote call", "remote hangup"]


def test_space_follows_the_box_when_the_hook_state_was_wrong(runtime_dir: Path) -> None:
    answers = {"status --json": [ON_HOOK]}
    daemon = start_fake(
        runtime_dir,
        ctl_answers=answers,
        sim_answers={"handset offhook": "error the handset is already off-hook"},
    )
    screen = Screen()
    phone = Phone(runtime_dir, screen, catalogue=CATALOGUE, wait_for_answers=True)
    try:
        phone.start()
        answers["status --json"] = [OFF_HOOK]  # someone else lifted it meanwhile
        phone.toggle_handset()  # refused: already off-hook; the phone asks the box
        phone.toggle_handset()  # so SPACE now hangs up
        phone.close()
    finally:
        daemon.close()
    assert daemon.sim_commands == ["handset offhook", "handset onhook"]
    assert "already off-hook" in screen.getvalue()


def test_the_terminal_ui_reads_keys_and_restores_the_terminal(fake: FakeDaemon) -> None:
    master, slave = os.openpty()
    before = termios.tcgetattr(slave)
    screen = Screen()
    phone = Phone(fake.runtime_dir, screen, catalogue=CATALOGUE)
    phone.start()
    ui = threading.Thread(target=phone.run_keys, args=(slave,))
    try:
        ui.start()
        screen.wait_for(BANNER)  # printed once the terminal is in cbreak mode
        assert not termios.tcgetattr(slave)[3] & (termios.ICANON | termios.ECHO)
        os.write(master, b" 3\x1b[1;5D?q")  # keys act without Enter; the escape is ignored
        ui.join(10)
        assert not ui.is_alive()
        phone.close()
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)
    assert fake.sim_commands == ["handset offhook", "handset press 3", "handset onhook"]
    shown = screen.getvalue()
    assert "  SPACE    lift / hang up the handset" in shown  # the ? help screen
    assert "(hanging up before leaving)" in shown


def test_the_terminal_is_restored_after_an_error(
    fake: FakeDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    master, slave = os.openpty()
    before = termios.tcgetattr(slave)
    screen = Screen()
    phone = Phone(fake.runtime_dir, screen, catalogue=CATALOGUE)
    raised: list[BaseException] = []

    def broken(key: str) -> bool:
        raise RuntimeError("bug")

    def ui() -> None:
        try:
            phone.run_keys(slave)
        except RuntimeError as exc:
            raised.append(exc)

    monkeypatch.setattr(phone, "handle_key", broken)
    thread = threading.Thread(target=ui)
    try:
        thread.start()
        screen.wait_for(BANNER)
        os.write(master, b"x")
        thread.join(10)
        assert [str(exc) for exc in raised] == ["bug"]
        assert termios.tcgetattr(slave) == before
    finally:
        phone.close()
        os.close(master)
        os.close(slave)


def test_the_ui_ends_when_the_daemon_stops(runtime_dir: Path) -> None:
    daemon = start_fake(runtime_dir, close_events=True)
    master, slave = os.openpty()
    screen = Screen()
    try:
        with os.fdopen(os.dup(slave), "r") as terminal:
            assert run_phone(runtime_dir, terminal, screen) == 1
    finally:
        daemon.close()
        os.close(master)
        os.close(slave)
    assert "the daemon closed the events stream" in screen.getvalue()


# --- m: a remote caller leaves a message ---------------------------------------------------

RECORDING = {"type": "menu", "state": "recording"}


@pytest.mark.parametrize(
    ("events", "ready"),
    [
        ([], None),
        ([{"type": "menu", "state": "greeting"}, {"type": "prompt_end"}], None),
        ([{"type": "menu", "state": "greeting"}, RECORDING], None),
        ([RECORDING, {"type": "prompt", "id": "beep"}, {"type": "prompt_end"}], True),
        ([{"type": "call", "party": "remote", "state": "end", "reason": "hangup"}], False),
        ([RECORDING, {"type": "menu", "state": "idle"}, {"type": "prompt_end"}], None),
    ],
)
def test_the_caller_speaks_only_after_the_beep(
    events: list[dict[str, Any]], ready: bool | None
) -> None:
    assert after_the_beep(events) is ready


def test_m_rings_waits_for_the_beep_then_speaks_the_demo_message(runtime_dir: Path) -> None:
    daemon = start_fake(runtime_dir, events=[{"type": "subscribed"}])
    screen = Screen()
    phone = Phone(runtime_dir, screen, catalogue=CATALOGUE)
    try:
        phone.start()
        phone.handle_key("m")
        daemon.wait_for_sim("remote call")
        for event in (
            {"type": "call", "party": "remote", "state": "start"},
            {"type": "menu", "state": "greeting"},
            {"type": "prompt_end"},
            RECORDING,
            {"type": "prompt", "id": "beep"},
            {"type": "prompt_end"},
        ):
            phone._on_event_line(json.dumps(event))  # as the events stream delivers them
        daemon.wait_for_sim("remote hangup")
    finally:
        phone.close()
        daemon.close()
    message = default_audio_dir() / "demo" / "caller_message.wav"
    assert message.is_file()
    assert daemon.sim_commands == ["remote call", f"remote say {message}", "remote hangup"]
    assert "  m        a remote caller leaves a message" in KEY_HELP


def test_m_speaks_nothing_when_the_box_hangs_up_first(runtime_dir: Path) -> None:
    daemon = start_fake(runtime_dir, events=[{"type": "subscribed"}])
    phone = Phone(runtime_dir, Screen(), catalogue=CATALOGUE)
    try:
        phone.start()
        phone.handle_key("m")
        daemon.wait_for_sim("remote call")
        phone._on_event_line(
            json.dumps({"type": "call", "party": "remote", "state": "end", "reason": "busy"})
        )
        phone.handle_key("r")  # the phone is free for a new call: the first one is over
        with daemon._arrived:
            assert daemon._arrived.wait_for(
                lambda: daemon.sim_commands.count("remote call") == 2, 10
            )
    finally:
        phone.close()
        daemon.close()
    assert not any(command.startswith("remote say") for command in daemon.sim_commands)
