"""The serial console driven like picocom would: real pyserial on a pseudo-terminal.

The console runs on its own asyncio loop thread, its port opened with pyserial
on the pty's slave side; the test is the technician's terminal on the master
side. Login lock-out and idle logout run on a fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import random
import select
import socket
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gatewayd.console import (
    IDLE_LOGOUT_S,
    LOGIN_PROMPT,
    Console,
    LoginResult,
    PendingLogin,
    TechnicianAuth,
)
from gatewayd.eventbus import EventBus
from gatewayd.provision import main as provision
from gatewayd.serial_console import MAX_LINE, LineEditor, SerialConsole
from gatewayd.voicemail.hashing import CodeHasher
from gatewayd.voicemail.policy import SecretCodeService
from gatewayd.voicemail.store import Store
from tests.conftest import FAST_POLICY, TEST_PEPPER
from tests.daemon_process import REPO, make_profile
from tests.harness import FakeClock
from tests.test_console import TECH_CODE, FakeBox

SUBSCRIBER_CODE = "4931"
PROMPTS = (b"gatewayd> ", b"gatewayd# ", LOGIN_PROMPT.encode(), b"anything else cancels: ")


class Terminal:
    """The technician's side of the cable: raw bytes in and out of the pty master."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.buffer = b""

    def type(self, data: bytes | str) -> None:
        os.write(self.master, data.encode() if isinstance(data, str) else data)

    def read_until(self, *markers: bytes, timeout: float = 10.0) -> bytes:
        """Everything up to and including the first of ``markers`` (consumed)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [(self.buffer.find(m), m) for m in markers if m in self.buffer]
            if found:
                at, marker = min(found)
                end = at + len(marker)
                out, self.buffer = self.buffer[:end], self.buffer[end:]
                return out
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"none of {markers} in {self.buffer[-400:]!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                self.buffer += os.read(self.master, 65536)

    def command(self, line: str, end: bytes = b"\r") -> str:
        """Type ``line``, return what came back up to the next prompt (echo included)."""
        self.type(line.encode() + end)
        return self.read_until(*PROMPTS).decode(errors="replace")


def answer_of(shown: str) -> str:
    """The reply lines of :meth:`Terminal.command`'s output, without echo and prompt."""
    lines = shown.split("\r\n")
    return "\n".join(lines[1:-1])


class LoopThread:
    """An asyncio loop on a thread, as the daemon runs one."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, function, *args):
        async def call():
            return function(*args)

        return self.run(call())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def open_pty(link: Path) -> tuple[int, int]:
    master, slave = os.openpty()
    tty.setraw(master)
    link.unlink(missing_ok=True)
    link.symlink_to(os.ttyname(slave))
    return master, slave


class Bench:
    """A serial console on a pty, a fake box behind it, the terminal in front."""

    def __init__(
        self,
        tmp: Path,
        clock: FakeClock,
        *,
        console_clock: Callable[[], float] | None = None,
        idle_logout_s: float = IDLE_LOGOUT_S,
        auth: type[TechnicianAuth] = TechnicianAuth,
    ) -> None:
        self.clock = clock
        self.store = Store(tmp / "state" / "gatewayd.json")
        hasher = CodeHasher(TEST_PEPPER, n=FAST_POLICY.scrypt_n)
        self.box = FakeBox(SecretCodeService(self.store, hasher, FAST_POLICY, clock))
        self.auth = auth(self.store, hasher, clock)
        self.auth.set_code(TECH_CODE, "test")
        self.port = tmp / "ttyConsole"
        self.master, self.slave = open_pty(self.port)
        self.terminal = Terminal(self.master)
        self.bus = EventBus()
        self.loop = LoopThread()
        self.console = Console(
            self.box,
            "console",
            interactive=True,
            auth=self.auth,
            clock=console_clock or clock,
            idle_logout_s=idle_logout_s,
        )
        self.serial = SerialConsole(
            str(self.port), 115200, self.console, self.bus, reopen_first_s=0.05
        )
        self.loop.run(self.serial.start())

    def close(self) -> None:
        self.loop.run(self.serial.close())
        self.loop.stop()
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.store.close()


@pytest.fixture
def bench(tmp_path: Path, clock: FakeClock) -> Iterator[Bench]:
    opened = Bench(tmp_path, clock)
    opened.terminal.read_until(b"gatewayd> ")  # the banner and the first prompt
    yield opened
    opened.close()


def login(terminal: Terminal, code: str = TECH_CODE) -> str:
    assert terminal.command("login").endswith(LOGIN_PROMPT)
    terminal.type(code + "\r")
    return terminal.read_until(*PROMPTS).decode()


# --- typing ---------------------------------------------------------------------------


def test_echo_prompt_and_help(bench: Bench) -> None:
    shown = bench.terminal.command("help")
    assert shown.startswith("help\r\n") and shown.endswith("\r\ngatewayd> ")
    assert "status [--json]" in shown and "login" in shown and "reset" in shown


@pytest.mark.parametrize("end", [b"\r", b"\n", b"\r\n"])
def test_cr_lf_or_crlf_end_a_line_once(bench: Bench, end: bytes) -> None:
    shown = bench.terminal.command("version", end=end)
    assert answer_of(shown) == "gatewayd 0.1.0"
    bench.terminal.type(b"status\r")
    # The LF of a CRLF did not run an empty command: the next output is status's.
    assert bench.terminal.read_until(b"gatewayd> ").startswith(b"status\r\n")


def test_backspace_ctrl_u_and_arrow_keys(bench: Bench) -> None:
    shown = bench.terminal.command("verz\x7fsiox\bn")
    assert "\b \b" in shown and answer_of(shown) == "gatewayd 0.1.0"
    assert answer_of(bench.terminal.command("rm -rf /\x15version")) == "gatewayd 0.1.0"
    assert answer_of(bench.terminal.command("\x1b[A\x1b[Dversion\x1bOB")) == "gatewayd 0.1.0"


def test_unknown_command_gets_a_clear_answer(bench: Bench) -> None:
    assert answer_of(bench.terminal.command("frobnicate now")) == (
        "error unknown command 'frobnicate'; type `help` for the list"
    )


def test_a_10_kb_line_of_garbage_is_refused_and_the_console_goes_on(bench: Bench) -> None:
    rng = random.Random(3103)
    line_ends = {0x0D, 0x0A, 0x03, 0x15}  # no line end, Ctrl-C or Ctrl-U: one 10 kB line
    garbage = bytes(b for b in rng.randbytes(12_000) if b not in line_ends)[:10_240]
    bench.terminal.type(garbage + b"\r")
    shown = bench.terminal.read_until(b"gatewayd> ")
    assert f"error line too long (max {MAX_LINE} characters); ignored".encode() in shown
    assert len(shown) < 2 * MAX_LINE + 200  # at most one capped line was echoed
    assert answer_of(bench.terminal.command("version")) == "gatewayd 0.1.0"


def test_random_bytes_with_line_ends_never_stop_the_console(bench: Bench) -> None:
    noise = random.Random(7).randbytes(10_240)
    bench.terminal.type(noise + b"\x03\r")
    with contextlib.suppress(AssertionError):
        while True:  # drain every answer the noise produced
            bench.terminal.read_until(b"gatewayd> ", timeout=1.0)
    assert answer_of(bench.terminal.command("version")) == "gatewayd 0.1.0"


# --- login -----------------------------------------------------------------------------


def test_login_is_not_echoed_and_opens_privileged_commands(bench: Bench) -> None:
    assert "needs a technician login" in bench.terminal.command("ring 2")
    shown = login(bench.terminal)
    assert TECH_CODE not in shown and "*" not in shown
    assert "ok: logged in as technician" in shown and shown.endswith("gatewayd# ")
    assert answer_of(bench.terminal.command("ring 2")) == "ok: ringing the handset for 2 s"
    assert bench.box.calls == [("ring", 2.0)]
    assert bench.terminal.command("logout").endswith("gatewayd> ")


def test_three_wrong_logins_delay_the_next_60_s(bench: Bench) -> None:
    for wrong in ("000000", "111111"):
        assert "error wrong code" in login(bench.terminal, wrong)
    assert "logins refused for 60 s" in login(bench.terminal, "222222")
    shown = bench.terminal.command("login")
    assert "error too many wrong codes: try again in 60 s" in shown
    assert shown.endswith("gatewayd> ")  # no code asked
    bench.clock.advance(60)
    assert "ok: logged in" in login(bench.terminal)


def test_idle_logout_after_5_minutes(bench: Bench) -> None:
    login(bench.terminal)
    bench.clock.advance(301)
    shown = bench.terminal.command("reset --yes")
    assert "logged out: no input for 5 min" in shown and "needs a technician login" in shown
    assert bench.box.calls == []


def test_the_idle_logout_is_announced_without_input(tmp_path: Path) -> None:
    # The real clock and a short idle time: the console's own timer logs out and says so.
    bench = Bench(tmp_path, FakeClock(), idle_logout_s=0.2, console_clock=time.monotonic)
    try:
        bench.terminal.read_until(b"gatewayd> ")
        assert "ok: logged in" in login(bench.terminal)
        assert b"logged out: no input for 0.00333333 min" in bench.terminal.read_until(
            b"gatewayd> "
        )
    finally:
        bench.close()


class GatedAuth(TechnicianAuth):
    """The real technician check, whose comparison waits in its worker for the test."""

    entered = threading.Event()
    gate = threading.Event()

    def verify(self, pending: PendingLogin) -> bool:
        GatedAuth.entered.set()
        if not GatedAuth.gate.wait(10):
            raise TimeoutError("the test never opened the gate")
        return super().verify(pending)


@pytest.fixture
def gated_bench(tmp_path: Path, clock: FakeClock) -> Iterator[Bench]:
    GatedAuth.entered, GatedAuth.gate = threading.Event(), threading.Event()
    opened = Bench(tmp_path, clock, auth=GatedAuth)
    opened.terminal.read_until(b"gatewayd> ")
    yield opened
    GatedAuth.gate.set()
    opened.close()


def test_the_loop_goes_on_while_a_login_code_is_compared(gated_bench: Bench) -> None:
    bench = gated_bench
    assert bench.terminal.command("login").endswith(LOGIN_PROMPT)
    bench.terminal.type(TECH_CODE + "\rversion\r")  # the next command typed ahead
    assert GatedAuth.entered.wait(10)
    # The comparison waits in the worker: the try is on disk, the loop still runs.
    assert bench.store.technician().failures == 1
    assert bench.loop.call(lambda: "the loop answers") == "the loop answers"
    bench.loop.call(bench.bus.publish, {"type": "key", "party": "handset", "key": "masked"})
    GatedAuth.gate.set()
    shown = bench.terminal.read_until(b"gatewayd# ").decode()
    assert "ok: logged in as technician" in shown and TECH_CODE not in shown
    # The typed-ahead line ran after the verdict, as a command, not before it.
    assert "version\r\n" in shown  # echoed as typed: only the code line is secret
    assert bench.terminal.read_until(b"gatewayd# ") == b"gatewayd 0.1.0\r\ngatewayd# "
    assert bench.store.technician().failures == 0


def test_a_port_lost_during_the_comparison_logs_nobody_in(gated_bench: Bench) -> None:
    bench = gated_bench
    assert bench.terminal.command("login").endswith(LOGIN_PROMPT)
    bench.terminal.type(TECH_CODE + "\r")
    assert GatedAuth.entered.wait(10)
    bench.loop.call(bench.serial._fault, "test: cable pulled")
    GatedAuth.gate.set()
    # The port comes back: a new session, not logged in, although the code was right.
    bench.terminal.buffer = b""
    shown = bench.terminal.read_until(b"gatewayd> ", b"gatewayd# ")
    assert shown.endswith(b"gatewayd> ")
    assert "needs a technician login" in bench.terminal.command("ring 2")
    assert bench.box.calls == []


class DiskFullAuth(TechnicianAuth):
    """The login's verdict cannot be written (the state's disk is full)."""

    def settle(self, pending: PendingLogin, ok: bool) -> LoginResult:
        raise OSError(28, "No space left on device")


def test_a_verdict_that_cannot_be_written_is_answered_and_the_console_goes_on(
    tmp_path: Path, clock: FakeClock
) -> None:
    bench = Bench(tmp_path, clock, auth=DiskFullAuth)
    try:
        bench.terminal.read_until(b"gatewayd> ")
        shown = login(bench.terminal)
        assert "error the command failed; see the log" in shown and shown.endswith("gatewayd> ")
        assert answer_of(bench.terminal.command("version")) == "gatewayd 0.1.0"
        assert "needs a technician login" in bench.terminal.command("ring 2")
    finally:
        bench.close()


# --- what a technician does ---------------------------------------------------------------


def test_status_shows_failures_and_lock_but_no_digits(bench: Bench) -> None:
    service = bench.box.service
    service.set_code(SUBSCRIBER_CODE, "handset")
    for failures in range(1, 11):
        bench.clock.advance(100_000)  # past each cool-down
        service.check("1111" if failures % 2 else "2580", "remote")
    shown = answer_of(bench.terminal.command("status"))
    assert "failures: 10" in shown and "locked: yes" in shown and "code_set: yes" in shown
    assert SUBSCRIBER_CODE not in shown


def test_reset_asks_for_confirmation_then_clears_the_code(bench: Bench) -> None:
    bench.box.service.set_code(SUBSCRIBER_CODE, "handset")
    login(bench.terminal)
    shown = bench.terminal.command("reset")
    assert "clears the subscriber's secret code" in shown
    assert shown.endswith("anything else cancels: ")
    assert "ok: secret code reset" in bench.terminal.command("yes")
    assert not bench.store.mailbox().code_set
    assert bench.store.audit_log(1)[0]["origin"] == "console"


def test_events_stream_until_a_key_is_pressed(bench: Bench) -> None:
    bench.terminal.type("events\r")
    bench.terminal.read_until(b"press any key to stop):\r\n")
    bench.loop.call(bench.bus.publish, {"type": "key", "party": "handset", "key": "masked"})
    line = bench.terminal.read_until(b"\r\n").decode()
    assert "key" in line and "key=masked" in line and "party=handset" in line
    bench.terminal.type(" ")
    assert bench.terminal.read_until(b"gatewayd> ").endswith(b"events stopped\r\ngatewayd> ")
    assert bench.bus.subscriber_count == 0


def test_a_terminal_that_stops_reading_never_blocks_the_loop(bench: Bench) -> None:
    for _ in range(300):  # ~500 kB of help text, far more than the pty and the queue hold
        bench.terminal.type(b"help\r")
    deadline = time.monotonic() + 10
    while bench.loop.call(lambda: len(bench.serial._outbox)) == 0:
        assert time.monotonic() < deadline
    assert bench.loop.call(lambda: "the loop answers") == "the loop answers"
    shown = bench.terminal.read_until(b"[output dropped: the terminal did not keep up]\r\n")
    assert b"status [--json]" in shown
    assert answer_of(bench.terminal.command("version")) == "gatewayd 0.1.0"


def test_a_port_missing_at_start_is_waited_for(tmp_path: Path, clock: FakeClock) -> None:
    loop = LoopThread()
    port = tmp_path / "ttyLater"
    with Store(tmp_path / "gatewayd.json") as store:
        service = SecretCodeService(store, CodeHasher(TEST_PEPPER), FAST_POLICY, clock)
    console = Console(FakeBox(service), "console", interactive=True, clock=clock)
    serial_console = SerialConsole(
        str(port), 115200, console, EventBus(), reopen_first_s=0.05, reopen_max_s=0.1
    )
    loop.run(serial_console.start())  # no port yet: not an error
    assert not serial_console.connected
    master, slave = open_pty(port)
    try:
        assert b"gatewayd technician console" in Terminal(master).read_until(b"gatewayd> ")
    finally:
        loop.run(serial_console.close())
        loop.stop()
        os.close(master)
        os.close(slave)


# --- the editor alone -----------------------------------------------------------------------


def test_line_editor_switches_to_secret_before_the_next_byte() -> None:
    echoed = bytearray()
    lines: list[str] = []

    def on_entry(entry: object) -> None:
        lines.append(getattr(entry, "text", "^C"))
        editor.secret = lines[-1] == "login"

    editor = LineEditor(echoed.extend, on_entry)
    editor.feed(b"login\r" + TECH_CODE.encode() + b"\r")  # typed ahead in one read
    assert lines == ["login", TECH_CODE]
    assert bytes(echoed) == b"login\r\n\r\n"


# --- the daemon with a [console] section -----------------------------------------------------


def test_daemon_serves_the_console_with_the_provisioned_technician_code(tmp_path: Path) -> None:
    port = tmp_path / "ttyS9"
    master, slave = open_pty(port)
    sim = make_profile(tmp_path)
    sim.write_text(sim.read_text() + f'\n[console]\nport = "{port}"\n')
    etc, state, run = tmp_path / "etc", tmp_path / "state", tmp_path / "run"
    out = io.StringIO()
    assert (
        provision(
            str(sim),
            etc_dir=str(etc),
            state_dir=str(state),
            runtime_dir=str(run),
            tech_code=True,
            stdin=io.StringIO(TECH_CODE + "\n"),
            out=out,
        )
        == 0
    ), out.getvalue()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(20)
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock")}
    env.pop("JOURNAL_STREAM", None)
    script = (
        "import sys; from gatewayd.daemon import run_daemon; sys.exit(run_daemon(*sys.argv[1:]))"
    )
    log = (tmp_path / "daemon.log").open("wb")
    daemon = subprocess.Popen(
        [sys.executable, "-c", script, str(etc / "profile.toml"), str(state), str(run)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=REPO,
    )
    try:
        assert b"READY=1" in notify.recv(4096)
        terminal = Terminal(master)
        terminal.read_until(b"gatewayd> ")
        assert "ok: logged in" in login(terminal)
        assert "code_set: no" in terminal.command("status")
        assert "line cannot ring the handset" in terminal.command("ring")
        assert "ok: playing main_menu" in terminal.command("play main_menu")
        assert "selftest: all" in terminal.command("selftest")
        assert "ok: secret code reset" in terminal.command("reset --yes")
    finally:
        daemon.terminate()
        assert daemon.wait(15) == 0
        log.close()
        notify.close()
        os.close(master)
        os.close(slave)
    text = (tmp_path / "daemon.log").read_text()
    assert "technician console on" in text and TECH_CODE not in text
