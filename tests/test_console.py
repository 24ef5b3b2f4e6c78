"""The console's command language: login and lock-out, idle logout, privileges, questions.

A real :class:`TechnicianAuth` over a real state file, on a fake clock; the
daemon is a small fake that records what the console asked of it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatewayd.console import (
    CONFIRM_PROMPT,
    LOGIN_PROMPT,
    PROMPT,
    PROMPT_LOGGED_IN,
    CommandError,
    Console,
    Deferred,
    LoginOutcome,
    PendingLogin,
    Reply,
    Stream,
    TechnicianAuth,
    _format_audit,
    format_event,
    technician_code_problem,
)
from gatewayd.paths import GPIO_SOCKET
from gatewayd.selftest import Check
from gatewayd.voicemail.hashing import CodeHasher, create_pepper
from gatewayd.voicemail.policy import SecretCodeService
from gatewayd.voicemail.store import Store
from tests.conftest import FAST_POLICY, TEST_PEPPER
from tests.daemon_process import DaemonProcess
from tests.harness import FakeClock
from tests.test_gpio_slic import GpioSock, fake_profile_text

TECH_CODE = "582046"
SUBSCRIBER_CODE = "4931"


class FakeBox:
    """The daemon side of the console: a real code service, everything else recorded."""

    def __init__(self, service: SecretCodeService) -> None:
        self.service = service
        self.calls: list[tuple[str, Any]] = []
        self.listing: list[dict[str, Any]] = []
        self.level = "info"
        self.ring_error: str | None = None

    def status(self) -> dict[str, Any]:
        return {
            "profile": "test",
            "line": {"driver": "sim", "handset": "on-hook", "ringing": False, "last_keys": ""},
            "menu": "idle",
            **self.service.status().as_dict(),
        }

    def reset_code(self, origin: str) -> None:
        self.calls.append(("reset", origin))
        self.service.reset(origin)

    def audit(self, last: int) -> list[dict[str, Any]]:
        return self.service.audit_log(last)

    def messages(self) -> list[dict[str, Any]]:
        return list(self.listing)

    def profile_summary(self) -> dict[str, Any]:
        return {"profile": "test", "board": "bench", "console": "/dev/ttyS0 115200 8N1"}

    def ring(self, seconds: float) -> None:
        if self.ring_error:
            raise CommandError(self.ring_error)
        self.calls.append(("ring", seconds))

    def play_prompt(self, prompt_id: str) -> None:
        if prompt_id != "main_menu":
            raise CommandError(f"unknown prompt id {prompt_id!r}")
        self.calls.append(("play", prompt_id))

    def play_tone(self, name: str, seconds: float) -> None:
        self.calls.append(("tone", (name, seconds)))

    def self_check(self) -> list[Check]:
        self.calls.append(("selftest", None))
        return [Check("state", True, "readable"), Check("pepper", False, "missing", "provision")]

    def log_level(self) -> str:
        return self.level

    def set_log_level(self, level: str) -> None:
        self.level = level


@pytest.fixture
def hasher() -> CodeHasher:
    return CodeHasher(TEST_PEPPER, n=FAST_POLICY.scrypt_n)


@pytest.fixture
def box(store: Store, clock: FakeClock, hasher: CodeHasher) -> FakeBox:
    return FakeBox(SecretCodeService(store, hasher, FAST_POLICY, clock))


@pytest.fixture
def auth(store: Store, clock: FakeClock, hasher: CodeHasher) -> TechnicianAuth:
    technician = TechnicianAuth(store, hasher, clock)
    technician.set_code(TECH_CODE, "test")
    return technician


@pytest.fixture
def console(box: FakeBox, auth: TechnicianAuth, clock: FakeClock) -> Console:
    return Console(box, "console", interactive=True, auth=auth, clock=clock)


def say(console: Console, line: str) -> Reply:
    answer = console.run(line)
    if isinstance(answer, Deferred):  # a login code: compared here, as the worker would
        answer = answer.finish(answer.compare())
    assert isinstance(answer, Reply), answer
    return answer


def text(reply: Reply) -> str:
    return "\n".join(reply.lines)


def login(console: Console, code: str = TECH_CODE) -> Reply:
    assert say(console, "login").lines == ()
    assert console.prompt == LOGIN_PROMPT and console.secret_input
    return say(console, code)


# --- without login --------------------------------------------------------------------


def test_status_shows_failures_and_lock_but_no_digits(box: FakeBox, console: Console) -> None:
    box.service.set_code(SUBSCRIBER_CODE, "handset")
    for _ in range(3):
        box.service.check("1111", "remote")
    shown = text(say(console, "status"))
    assert "failures: 3" in shown and "locked: no" in shown and "code_set: yes" in shown
    assert SUBSCRIBER_CODE not in shown
    as_json = json.loads(say(console, "status --json").lines[0])
    assert as_json["failures"] == 3 and as_json["cooldown_remaining_s"] > 0


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("version", "gatewayd "),
        ("line", "handset: on-hook"),
        ("profile", "console: /dev/ttyS0 115200 8N1"),
        ("loglevel", "log level: info"),
        ("audit", "tech_code_set  by test"),
        ("help", "login"),
    ],
)
def test_public_commands_answer_without_login(console: Console, line: str, expected: str) -> None:
    reply = say(console, line)
    assert reply.ok and expected in text(reply)


def test_events_is_a_stream(console: Console) -> None:
    assert console.run("events") == Stream(as_json=False)
    assert console.run("events --json") == Stream(as_json=True)


@pytest.mark.parametrize(
    "line", ["reset", "reset --yes", "ring", "play main_menu", "tone dial", "selftest"]
)
def test_privileged_commands_need_a_login(box: FakeBox, console: Console, line: str) -> None:
    reply = say(console, line)
    assert not reply.ok and "needs a technician login" in text(reply)
    assert box.calls == []


def test_setting_the_log_level_needs_a_login(box: FakeBox, console: Console) -> None:
    assert not say(console, "loglevel debug").ok and box.level == "info"
    login(console)
    assert say(console, "loglevel debug").lines == ("ok: log level debug",)
    assert box.level == "debug"
    assert not say(console, "loglevel loud").ok


@pytest.mark.parametrize(
    "line", ["frobnicate", "\x00\xff", "status --yaml", "audit x", "audit ١٢", "'unclosed"]
)
def test_unknown_or_malformed_commands_get_a_clear_error(console: Console, line: str) -> None:
    reply = say(console, line)
    assert not reply.ok and reply.lines[0].startswith("error ")
    assert console.prompt == PROMPT


# --- login, lock-out, idle logout ----------------------------------------------------------


def test_login_with_the_technician_code_opens_the_privileged_commands(
    box: FakeBox, console: Console, store: Store
) -> None:
    assert console.prompt == PROMPT and not console.logged_in
    reply = login(console)
    assert reply.ok and reply.lines[0].startswith("ok: logged in")
    assert console.prompt == PROMPT_LOGGED_IN and not console.secret_input
    assert say(console, "ring 2.5").lines == ("ok: ringing the handset for 2.5 s",)
    assert say(console, "play main_menu").ok
    assert say(console, "tone busy 4").ok
    assert box.calls == [("ring", 2.5), ("play", "main_menu"), ("tone", ("busy", 4.0))]
    assert [r["what"] for r in store.audit_log()][-1] == "tech_login"
    assert say(console, "logout").lines == ("ok: logged out",)
    assert not say(console, "ring").ok


def test_the_code_is_never_echoed_logged_or_stored(
    console: Console, state_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    replies = [login(console, "999999"), login(console)]
    shown = "\n".join(text(r) for r in replies)
    assert TECH_CODE not in shown and "999999" not in shown
    assert TECH_CODE not in caplog.text and "999999" not in caplog.text
    assert TECH_CODE not in state_path.read_text() and "999999" not in state_path.read_text()


def test_three_wrong_codes_delay_logins_60_s_then_doubling(
    console: Console, clock: FakeClock, store: Store
) -> None:
    assert text(login(console, "000000")) == "error wrong code"
    assert text(login(console, "111111")) == "error wrong code"
    third = login(console, "222222")
    assert "3 in a row" in text(third) and "60 s" in text(third)
    # During the delay even the right code is not looked at, and nothing is counted.
    refused = say(console, "login")
    assert not refused.ok and "try again in 60 s" in text(refused)
    assert store.technician().failures == 3
    clock.advance(59)
    assert "try again in 1 s" in text(say(console, "login"))
    clock.advance(1)
    for wrong in ("333333", "444444"):
        assert text(login(console, wrong)) == "error wrong code"
    assert "120 s" in text(login(console, "555555"))
    clock.advance(120)
    assert login(console).ok
    assert store.technician().failures == 0
    whats = [r["what"] for r in store.audit_log()]
    assert whats.count("tech_login_failure") == 6 and whats.count("tech_lockout") == 2


def test_the_failure_counts_before_the_comparison_and_survives_a_restart(
    store: Store, clock: FakeClock, hasher: CodeHasher, auth: TechnicianAuth
) -> None:
    for wrong in ("000000", "111111", "222222"):
        assert auth.login(wrong, "console").outcome is LoginOutcome.WRONG
    assert store.technician().failures == 3
    restarted = TechnicianAuth(store, hasher, clock)  # a reboot: the delay starts again in full
    assert restarted.delay_remaining() == 60
    assert restarted.login(TECH_CODE, "console").outcome is LoginOutcome.DELAYED


def test_delays_double_up_to_the_cap() -> None:
    delays = [TechnicianAuth.delay_for(n) for n in range(1, 25)]
    assert delays[:9] == [0, 0, 60, 0, 0, 120, 0, 0, 240]
    assert delays[-1] == 3600 and max(delays) == 3600


def test_a_box_without_a_technician_code_refuses_login(
    box: FakeBox, store: Store, hasher: CodeHasher, clock: FakeClock
) -> None:
    console = Console(
        box, "console", interactive=True, auth=TechnicianAuth(store, hasher, clock), clock=clock
    )
    reply = say(console, "login")
    assert not reply.ok and "gatewayd provision --tech-code" in text(reply)
    assert not console.secret_input


def test_an_empty_code_cancels_the_login_without_counting(console: Console, store: Store) -> None:
    assert say(console, "login").lines == ()
    assert say(console, "").lines == ("login cancelled",)
    assert store.technician().failures == 0 and console.prompt == PROMPT


def test_idle_logout_after_5_minutes(box: FakeBox, console: Console, clock: FakeClock) -> None:
    login(console)
    clock.advance(299)
    assert console.idle_remaining() == pytest.approx(1)
    assert say(console, "version").ok  # input: the idle time starts again
    clock.advance(299)
    assert console.expire_idle() is None
    clock.advance(1)
    reply = say(console, "ring")
    assert reply.lines[0] == "logged out: no input for 5 min"
    assert "needs a technician login" in reply.lines[1]
    assert box.calls == [] and console.prompt == PROMPT


def test_an_unanswered_login_prompt_expires(
    console: Console, clock: FakeClock, store: Store
) -> None:
    assert say(console, "login").lines == ()
    clock.advance(301)
    assert say(console, "status").ok  # the next person's command is not taken for a code
    assert store.technician().failures == 0


# --- reset -----------------------------------------------------------------------------


def test_reset_asks_for_confirmation_on_the_serial_console(
    box: FakeBox, console: Console, store: Store
) -> None:
    box.service.set_code(SUBSCRIBER_CODE, "handset")
    login(console)
    assert "clears the subscriber's secret code" in text(say(console, "reset"))
    assert console.prompt == CONFIRM_PROMPT
    assert say(console, "no").lines == ("reset cancelled: nothing changed",)
    assert box.service.status().code_set
    say(console, "reset")
    assert say(console, "yes").lines[0].startswith("ok: secret code reset")
    assert not box.service.status().code_set
    assert store.audit_log(1)[0] == {**store.audit_log(1)[0], "what": "reset", "origin": "console"}
    assert say(console, "reset --yes").ok  # no question with --yes


def test_ctrl_c_cancels_a_question(console: Console, box: FakeBox) -> None:
    login(console)
    say(console, "reset")
    console.cancel()
    assert console.prompt == PROMPT_LOGGED_IN
    assert not say(console, "yes").ok  # now just an unknown command
    assert box.calls == []


# --- the control socket: trusted, not interactive -------------------------------------------


def test_the_control_socket_runs_everything_without_login(box: FakeBox) -> None:
    ctl = Console(box, "ctl", trusted=True)
    assert say(ctl, "reset").lines[0].startswith("error ")  # one line per connection: --yes
    assert say(ctl, "reset --yes").ok
    assert say(ctl, "ring 3").ok and say(ctl, "loglevel warning").ok
    assert "needs a technician login" not in text(say(ctl, "help"))
    assert not say(ctl, "login").ok and not say(ctl, "logout").ok
    assert box.calls == [("reset", "ctl"), ("ring", 3.0)]


def test_command_errors_are_answered_not_raised(box: FakeBox) -> None:
    ctl = Console(box, "ctl", trusted=True)
    assert text(say(ctl, "play nope")) == "error unknown prompt id 'nope'"
    box.ring_error = "the sim line cannot ring the handset (a SLIC line can)"
    assert text(say(ctl, "ring")).startswith("error the sim line cannot ring")
    for bad in ("ring 0", "ring -1", "ring nan", "ring 61", "tone", "tone dial 11", "play"):
        assert not say(ctl, bad).ok, bad


def test_selftest_lists_every_check_and_fails_on_any(box: FakeBox) -> None:
    reply = say(Console(box, "ctl", trusted=True), "selftest")
    assert not reply.ok
    assert reply.lines == (
        "ok    state: readable",
        "FAIL  pepper: missing. Fix: provision",
        "selftest: 1 of 2 checks failed",
    )


def test_no_command_can_read_or_set_the_subscriber_code(
    box: FakeBox, console: Console, store: Store
) -> None:
    box.service.set_code(SUBSCRIBER_CODE, "handset")
    before = store.mailbox()
    login(console)
    args = ["", SUBSCRIBER_CODE, f"--code {SUBSCRIBER_CODE}", "--json", "set 1234"]
    for name in ("help", "status", "line", "profile", "audit", "version", "loglevel"):
        for arg in args:
            reply = console.run(f"{name} {arg}")
            assert isinstance(reply, Reply)
            shown = text(reply).replace(f"{name} {arg}", "")
            assert SUBSCRIBER_CODE not in shown, (name, arg)
            assert before.code_hash is not None and before.code_hash.hex() not in shown
    for line in ("code", "setcode 1234", "set code 1234", "password", "code get"):
        assert "unknown command" in text(say(console, line))
    after = store.mailbox()
    assert (after.code_hash, after.salt) == (before.code_hash, before.salt)


@pytest.mark.parametrize(
    ("code", "ok"),
    [
        ("582046", True),
        ("9137", True),
        ("31415926", True),
        ("123", False),
        ("123456789", False),
        ("5820a6", False),
        ("٥٨٢٠", False),
        ("7777", False),
        ("3456", False),
        ("876543", False),
    ],
)
def test_technician_code_rules(code: str, ok: bool) -> None:
    assert (technician_code_problem(code) is None) is ok


# --- through the daemon: ctl.sock on a SLIC line (fake GPIO) -------------------------------


@pytest.fixture
def slic_daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    pepper = tmp_path / "pepper"
    create_pepper(pepper)
    path = tmp_path / "slic.toml"
    path.write_text(
        fake_profile_text(
            **{
                'state_dir = "/var/lib/gatewayd"': f'state_dir = "{tmp_path / "state"}"',
                'pepper_file = "pepper"': f'pepper_file = "{pepper}"',
            }
        )
    )
    daemon = DaemonProcess(tmp_path, path).start()
    yield daemon
    if daemon.proc is not None and daemon.proc.poll() is None:
        daemon.stop()


def test_ring_play_and_tone_reach_the_line_and_the_audio(slic_daemon: DaemonProcess) -> None:
    events = slic_daemon.events()
    assert slic_daemon.ctl("ring 30") == "ok: ringing the handset for 30 s\n"
    assert json.loads(slic_daemon.ctl("status --json"))["line"]["ringing"] is True
    assert events.wait_for(lambda e: e["type"] == "ring")["origin"] == "console"
    assert slic_daemon.ctl("play main_menu").startswith("ok: playing main_menu")
    assert events.wait_for(lambda e: e["type"] == "prompt")["id"] == "main_menu"
    assert slic_daemon.ctl("tone busy 1").startswith("ok: playing tone busy")
    assert events.wait_for(lambda e: e["type"] == "tone")["name"] == "busy"
    assert slic_daemon.ctl("play nope").startswith("error unknown prompt id 'nope'")
    assert slic_daemon.ctl("tone nope").startswith("error unknown tone 'nope'")
    gpio = GpioSock(slic_daemon.runtime_dir / GPIO_SOCKET)
    try:
        assert gpio("lift") == "ok"  # a lift stops the ringing; no ringing off-hook
        events.wait_for(lambda e: e["type"] == "hook" and e["state"] == "off")
        assert json.loads(slic_daemon.ctl("status --json"))["line"]["ringing"] is False
        assert slic_daemon.ctl("ring").startswith("error the line is busy")
    finally:
        gpio.close()
    shown = slic_daemon.ctl("profile")
    assert "driver=gpio-slic" in shown and "gpio=fake" in shown
    assert "selftest: all" in slic_daemon.ctl("selftest")
    events.close()


def test_audit_columns_line_up_whatever_the_names() -> None:
    records = [
        {"what": "reset", "origin": "console", "time": 0},
        {"what": "message_index_unreadable", "origin": "provision", "time": 0, "n": 1},
        {"what": "tech_login", "origin": "ctl", "time": 0},
    ]
    lines = _format_audit(records)
    assert len({line.index(" by ") for line in lines}) == 1
    assert len({line.index(" by ") + 4 + len("provision ") for line in lines}) == 1
    assert lines[1].endswith("by provision n=1")


def test_events_show_the_wall_clock_time_of_day() -> None:
    event = {"type": "ring", "t": 812.5, "time": "2026-12-01T09:30:05.250+01:00"}
    assert format_event(event) == "09:30:05.250 ring"


def test_a_failing_comparison_leaves_the_try_counted_and_its_delay_armed(
    auth: TechnicianAuth, store: Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    for wrong in ("000000", "111111"):
        assert auth.login(wrong, "console").outcome is LoginOutcome.WRONG

    def broken(*args: object) -> bool:
        raise RuntimeError("bug in the comparison")

    monkeypatch.setattr(auth._hasher, "verify", broken)
    pending = auth.begin_login(TECH_CODE, "console")
    assert isinstance(pending, PendingLogin) and TECH_CODE not in repr(pending)
    with pytest.raises(RuntimeError):
        auth.verify(pending)  # in the worker: never settled
    # The 3rd try is on disk and its 60 s delay runs, although no verdict came.
    assert store.technician().failures == 3
    assert auth.login(TECH_CODE, "console").outcome is LoginOutcome.DELAYED
    clock.advance(60)
    monkeypatch.undo()
    assert auth.login(TECH_CODE, "console").outcome is LoginOutcome.OK


def test_a_login_code_is_answered_after_its_comparison(
    box: FakeBox, auth: TechnicianAuth, clock: FakeClock
) -> None:
    console = Console(box, "console", interactive=True, auth=auth, clock=clock)
    say(console, "login")
    answer = console.run(TECH_CODE)
    assert isinstance(answer, Deferred) and console.prompt == PROMPT  # no login before it
    assert text(answer.finish(answer.compare())).startswith("ok: logged in")
    assert console.prompt == PROMPT_LOGGED_IN
    say(console, "logout")
    say(console, "login")
    answer = console.run(TECH_CODE)
    assert isinstance(answer, Deferred)
    assert text(answer.finish(None)) == "error the code could not be checked; see the log"
    assert console.prompt == PROMPT
