"""The ``gatewayd`` command line: help, exit codes, and the exact bytes sent to the sockets.

A tiny fake daemon (real unix sockets served by threads) stands in for the
daemon, so these tests check the client side alone; the daemon itself is
driven end to end by test_daemon_e2e.py and test_demo.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatewayd import __version__
from gatewayd.cli import main
from gatewayd.client import (
    CommandFailedError,
    DaemonUnreachableError,
    ReadyListener,
    SimClient,
    ctl_request,
)
from gatewayd.sdnotify import notify

REPO = Path(__file__).resolve().parent.parent
SUBCOMMANDS = ("run", "demo", "phone", "sim", "ctl")

CANNED_EVENTS: list[dict[str, Any]] = [
    {"type": "hook", "party": "handset", "state": "off", "t": 1.0},
    {"type": "tone", "name": "dial", "t": 1.01},
    {"type": "prompt", "id": "main_menu", "t": 2.0},
]


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False  # an events client may stay connected after the test


class FakeDaemon:
    """sim.sock and ctl.sock served by threads: answers are canned, what arrives is recorded.

    ``sim_answers`` maps a sim command to its answer line (default ``ok``);
    ``ctl_answers`` maps a control command to its answer lines. ``events --json``
    streams ``events`` then holds the connection until the client leaves, as the
    daemon does (or closes it at once with ``close_events``).
    """

    def __init__(
        self,
        runtime_dir: Path,
        *,
        sim_answers: dict[str, str] | None = None,
        ctl_answers: dict[str, list[str]] | None = None,
        events: list[dict[str, Any]] | None = None,
        close_events: bool = False,
        sim: bool = True,
        hold: dict[str, threading.Event] | None = None,
    ) -> None:
        self.runtime_dir = runtime_dir
        self.sim_answers = sim_answers or {}
        self.ctl_answers = ctl_answers or {}
        self.events = CANNED_EVENTS if events is None else events
        self.close_events = close_events
        #: A sim command listed here is answered only once its event is set (or after 10 s).
        self.hold = hold or {}
        self._arrived = threading.Condition()
        #: Every raw line received on sim.sock (all connections, in arrival order).
        self.sim_received: list[bytes] = []
        self.ctl_received: list[bytes] = []
        self._servers: list[_Server] = []
        if sim:
            self._serve(runtime_dir / "sim.sock", self._sim_handler())
        self._serve(runtime_dir / "ctl.sock", self._ctl_handler())

    @property
    def sim_commands(self) -> list[str]:
        return [raw.decode().rstrip("\n") for raw in self.sim_received]

    def wait_for_sim(self, command: str, timeout: float = 10.0) -> None:
        """Wait until ``command`` arrived on sim.sock."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: command in self.sim_commands, timeout):
                raise AssertionError(f"{command!r} never sent; got {self.sim_commands}")

    def _serve(self, path: Path, handler: type[socketserver.StreamRequestHandler]) -> None:
        server = _Server(str(path), handler)
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        self._servers.append(server)

    def _sim_handler(self) -> type[socketserver.StreamRequestHandler]:
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for raw in self.rfile:
                    with fake._arrived:
                        fake.sim_received.append(raw)
                        fake._arrived.notify_all()
                    command = raw.decode().strip()
                    if command in fake.hold:
                        fake.hold[command].wait(10)
                    answer = fake.sim_answers.get(command, "ok")
                    self.wfile.write(answer.encode() + b"\n")

        return Handler

    def _ctl_handler(self) -> type[socketserver.StreamRequestHandler]:
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                raw = self.rfile.readline()
                fake.ctl_received.append(raw)
                command = raw.decode().strip()
                if command == "events --json":
                    for event in fake.events:
                        self.wfile.write(json.dumps(event).encode() + b"\n")
                    self.wfile.flush()
                    if not fake.close_events:
                        self.rfile.read()  # until the client disconnects
                    return
                lines = fake.ctl_answers.get(command, [f"error unknown command {command!r}"])
                self.wfile.write("".join(f"{line}\n" for line in lines).encode())

        return Handler

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    # Not tmp_path: its long name could pass the 107-byte limit of a unix socket path.
    path = Path(tempfile.mkdtemp(prefix="gw-cli-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fake(runtime_dir: Path) -> Iterator[FakeDaemon]:
    daemon = FakeDaemon(
        runtime_dir,
        sim_answers={"handset press 9": "error lift the handset first (handset offhook)"},
        ctl_answers={
            "status": ["profile: sim", "menu: idle", "code_set: no"],
            "audit 5": ["no audit records"],
            "reset": ["error reset clears the code; confirm with `reset --yes`"],
        },
    )
    yield daemon
    daemon.close()


# --- help and version --------------------------------------------------------------


def test_top_level_help_names_every_subcommand_and_the_first_thing_to_run(capsys) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert f"\n    {name} " in text, name
    assert "Run `gatewayd demo` first" in text


@pytest.mark.parametrize(
    ("name", "mentions"),
    [
        ("run", ["--profile", "--state-dir", "--runtime-dir", "--log-level"]),
        ("demo", ["--state-dir", "SPACE"]),
        ("phone", ["--runtime-dir", "help"]),
        ("sim", ["PARTY", "ACTION", "KEYS", "offhook", "hangup"]),
        ("ctl", ["COMMAND", "events --json", "reset --yes"]),
    ],
)
def test_each_subcommand_has_help(name: str, mentions: list[str], capsys) -> None:
    assert main([name, "--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: gatewayd {name}")
    for word in mentions:
        assert word in text


def test_python_dash_m_gatewayd_is_the_same_program() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gatewayd", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert all(name in result.stdout for name in SUBCOMMANDS)
    version = subprocess.run(
        [sys.executable, "-m", "gatewayd", "--version"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )
    assert version.stdout.strip() == f"gatewayd {__version__}"


def test_no_subcommand_is_a_usage_error(capsys) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


def test_run_with_a_missing_profile_says_which_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    result = subprocess.run(
        [sys.executable, "-m", "gatewayd", "run", "--profile", str(missing)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )
    assert result.returncode == 2
    assert str(missing) in result.stderr


# --- without a daemon -----------------------------------------------------------------


@pytest.mark.parametrize(
    "argv", [["sim", "handset", "offhook"], ["ctl", "status"], ["ctl", "events", "--json"]]
)
def test_no_daemon_is_exit_2_naming_the_socket(argv: list[str], tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main([argv[0], "--runtime-dir", str(run), *argv[1:]]) == 2
    err = capsys.readouterr().err
    assert str(run / f"{argv[0]}.sock") in err
    assert "is the daemon running?" in err and "gatewayd run" in err


def test_runtime_dir_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "from-systemd"))
    assert main(["ctl", "status"]) == 2
    assert str(tmp_path / "from-systemd" / "ctl.sock") in capsys.readouterr().err


def test_a_stale_socket_is_told_apart(runtime_dir: Path, capsys) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(runtime_dir / "ctl.sock"))
    stale.close()  # the file stays, nobody listens: a daemon that was killed
    assert main(["ctl", "--runtime-dir", str(runtime_dir), "status"]) == 2
    assert "nobody listens" in capsys.readouterr().err


def test_sim_on_a_daemon_without_the_sim_profile_says_so(runtime_dir: Path, capsys) -> None:
    daemon = FakeDaemon(runtime_dir, sim=False)
    try:
        assert main(["sim", "--runtime-dir", str(runtime_dir), "handset", "offhook"]) == 2
    finally:
        daemon.close()
    assert "does not run the sim profile" in capsys.readouterr().err


# --- sim ----------------------------------------------------------------------------------


def test_sim_press_sends_exactly_one_command_line(fake: FakeDaemon, capsys) -> None:
    code = main(["sim", "--runtime-dir", str(fake.runtime_dir), "handset", "press", "3103"])
    assert code == 0
    assert fake.sim_received == [b"handset press 3103\n"]
    assert capsys.readouterr().out == "ok\n"


@pytest.mark.parametrize(
    ("argv", "sent"),
    [
        (["handset", "offhook"], "handset offhook"),
        (["handset", "flash"], "handset flash"),
        (["remote", "call"], "remote call"),
        (["remote", "call", "0612345678"], "remote call 0612345678"),
        (["remote", "press", "4931#"], "remote press 4931#"),
        (["remote", "say", "/tmp/voice.wav"], "remote say /tmp/voice.wav"),
        (["remote", "hangup"], "remote hangup"),
    ],
)
def test_sim_commands(argv: list[str], sent: str, fake: FakeDaemon) -> None:
    assert main(["sim", "--runtime-dir", str(fake.runtime_dir), *argv]) == 0
    assert fake.sim_commands == [sent]


def test_sim_remote_say_sends_an_absolute_path(
    fake: FakeDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["sim", "--runtime-dir", str(fake.runtime_dir), "remote", "say", "v.wav"]) == 0
    assert fake.sim_commands == [f"remote say {tmp_path / 'v.wav'}"]


@pytest.mark.parametrize(
    "argv", [["handset", "offhook", "1"], ["remote", "say"], ["remote", "hangup", "x"]]
)
def test_sim_arguments_that_do_not_fit_are_usage_errors(argv: list[str], fake: FakeDaemon) -> None:
    assert main(["sim", "--runtime-dir", str(fake.runtime_dir), *argv]) == 2
    assert fake.sim_commands == []


def test_sim_error_answer_is_exit_1_with_the_reason(fake: FakeDaemon, capsys) -> None:
    assert main(["sim", "--runtime-dir", str(fake.runtime_dir), "handset", "press", "9"]) == 1
    captured = capsys.readouterr()
    assert "lift the handset first" in captured.err and captured.out == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["handset", "call"],  # a remote action
        ["remote", "offhook"],
        ["handset", "press"],  # no keys
        ["handset", "offhook", "12"],  # keys without press
        ["caller", "press", "1"],  # not a party
    ],
)
def test_sim_usage_errors_are_exit_2_and_send_nothing(
    argv: list[str], fake: FakeDaemon, capsys
) -> None:
    assert main(["sim", "--runtime-dir", str(fake.runtime_dir), *argv]) == 2
    assert "usage: gatewayd sim" in capsys.readouterr().err
    assert fake.sim_received == []


def test_sim_client_keeps_one_connection_for_several_commands(fake: FakeDaemon) -> None:
    with SimClient(fake.runtime_dir) as sim:
        assert sim.send("handset offhook") == "ok"
        with pytest.raises(CommandFailedError) as failed:
            sim.send("handset press 9")
        assert failed.value.reason == "lift the handset first (handset offhook)"
        assert sim.send("handset onhook") == "ok"
    assert fake.sim_commands == ["handset offhook", "handset press 9", "handset onhook"]


def test_sim_client_says_when_the_daemon_goes_away(runtime_dir: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(runtime_dir / "sim.sock"))
        server.listen()
        sim = SimClient(runtime_dir)
        peer, _ = server.accept()
        peer.close()  # the daemon stops without answering
        with pytest.raises(DaemonUnreachableError, match=r"did (it|the daemon) stop\?"):
            sim.send("handset offhook")
        sim.close()


# --- ctl -----------------------------------------------------------------------------------


def test_ctl_status_prints_the_answer(fake: FakeDaemon, capsys) -> None:
    assert main(["ctl", "--runtime-dir", str(fake.runtime_dir), "status"]) == 0
    assert capsys.readouterr().out == "profile: sim\nmenu: idle\ncode_set: no\n"
    assert fake.ctl_received == [b"status\n"]


def test_ctl_joins_the_command_words(fake: FakeDaemon, capsys) -> None:
    assert main(["ctl", "--runtime-dir", str(fake.runtime_dir), "audit", "5"]) == 0
    assert fake.ctl_received == [b"audit 5\n"]
    assert capsys.readouterr().out == "no audit records\n"


def test_ctl_error_answer_is_exit_1_on_stderr(fake: FakeDaemon, capsys) -> None:
    assert main(["ctl", "--runtime-dir", str(fake.runtime_dir), "reset"]) == 1
    captured = capsys.readouterr()
    assert "confirm with `reset --yes`" in captured.err and captured.out == ""


def test_ctl_without_a_command_is_a_usage_error(fake: FakeDaemon, capsys) -> None:
    assert main(["ctl", "--runtime-dir", str(fake.runtime_dir)]) == 2
    assert fake.ctl_received == []


def test_ctl_events_streams_until_ctrl_c_then_exits_quietly(fake: FakeDaemon) -> None:
    client = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gatewayd",
            "ctl",
            "--runtime-dir",
            str(fake.runtime_dir),
            "events",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert client.stdout is not None
        streamed = [json.loads(client.stdout.readline()) for _ in CANNED_EVENTS]
        assert streamed == CANNED_EVENTS
        client.send_signal(signal.SIGINT)  # the fake holds the stream open: only Ctrl-C ends it
        assert client.wait(timeout=15) == 0
        assert client.stderr is not None
        assert client.stderr.read() == ""  # no traceback
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert fake.ctl_received == [b"events --json\n"]


def test_ctl_answer_close_wakes_a_reader_on_another_thread(fake: FakeDaemon) -> None:
    answer = ctl_request(fake.runtime_dir, "events --json")
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(answer))
    reader.start()
    # Closing from this thread ends the stream: the reader returns instead of blocking forever.
    while len(seen) < len(CANNED_EVENTS) and reader.is_alive():
        reader.join(0.05)
    answer.close()
    reader.join(10)
    assert not reader.is_alive()
    assert [json.loads(line) for line in seen] == CANNED_EVENTS


# --- sd_notify readiness ----------------------------------------------------------------


def test_ready_listener_waits_for_ready_from_the_real_notifier(
    runtime_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ReadyListener(runtime_dir / "notify.sock") as ready:
        monkeypatch.setenv("NOTIFY_SOCKET", ready.address)
        assert notify("STATUS=starting")
        assert notify("READY=1\nSTATUS=serving sim")
        assert ready.wait(5.0) is True
        assert ready.status == "serving sim"
    assert not (runtime_dir / "notify.sock").exists()


def test_ready_listener_in_the_abstract_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    with ReadyListener(f"@gatewayd-test-{os.getpid()}") as ready:
        monkeypatch.setenv("NOTIFY_SOCKET", ready.address)
        assert notify("READY=1")
        assert ready.wait(5.0) is True


def test_ready_listener_gives_up_when_the_daemon_exits(runtime_dir: Path) -> None:
    with ReadyListener(runtime_dir / "notify.sock") as ready:
        checks: list[bool] = []

        def still_running() -> bool:
            checks.append(True)
            return len(checks) < 3

        assert ready.wait(60.0, still_running) is False
        assert len(checks) == 3  # returned at the third check, not after 60 s


def test_ready_listener_times_out_without_ready(runtime_dir: Path) -> None:
    with ReadyListener(runtime_dir / "notify.sock") as ready:
        assert ready.wait(0.05) is False


def test_selftest_and_provision_are_subcommands(tmp_path: Path) -> None:
    import subprocess
    import sys

    def gatewayd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gatewayd", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    ok = gatewayd("selftest", "--profile", "sim", "--state-dir", str(tmp_path / "state"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "selftest: all" in ok.stdout
    broken = tmp_path / "state2"
    broken.mkdir()
    (broken / "gatewayd.json").write_text('{"mailbox": {"1": {"fail')
    bad = gatewayd("selftest", "--profile", "sim", "--state-dir", str(broken))
    assert bad.returncode == 1 and "FAIL" in bad.stdout and "gatewayd.json" in bad.stdout
    help_text = gatewayd("provision", "--help")
    assert help_text.returncode == 0 and "--tech-code" in help_text.stdout
    assert "selftest" in gatewayd("--help").stdout and "provision" in gatewayd("--help").stdout


def test_run_accepts_every_level_ctl_loglevel_does() -> None:
    from gatewayd.cli import build_parser
    from gatewayd.logsetup import LEVELS

    for level in ("trace", "debug", "info", "warning", "error"):
        assert level in LEVELS
        assert build_parser().parse_args(["run", "--log-level", level]).log_level == level
