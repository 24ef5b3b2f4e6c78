"""Issue 15 (hardening), through the real daemon as a subprocess: what a careless operator or an
attacker meets on the console, the sockets and the state directory."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.daemon_process import REPO, DaemonProcess, make_profile
from tests.test_daemon_e2e import create_code

CODE = "5827"


@pytest.fixture
def daemon(tmp_path: Path):
    proc = DaemonProcess(tmp_path, make_profile(tmp_path)).start()
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        proc.stop()


def test_after_an_error_on_the_handset_status_shows_no_key_in_clear(daemon) -> None:
    create_code(daemon, CODE)
    events = daemon.events()
    for command in ("offhook", "press 3103", "press 3", "press 2", "press 1", "press 1357#"):
        assert daemon.sim(f"handset {command}") == "ok"
    daemon.state_file.write_text('{"mailbox": {"1": {"fail')  # the disk went bad under us
    assert daemon.sim("handset press 1") == "ok"  # keep the new code: storing it fails
    events.wait_for(lambda e: e["type"] == "tone" and e["name"] == "congestion")
    assert daemon.sim("handset press *****1*****4931#") == "ok"
    status = json.loads(daemon.ctl("status --json"))
    assert status["line"]["last_keys"].endswith("*" * 16)
    assert "4931" not in daemon.ctl("status") + daemon.ctl("line")
    assert all(e["key"] == "masked" for e in events.of_type("key")[-16:])
    assert daemon.sim("handset onhook") == "ok"


# --- point 4: one daemon per box ------------------------------------------------------------


def run_gatewayd(
    profile: Path, state_dir: Path, runtime_dir: Path, *args: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """``gatewayd run`` (or another command) to its end; a refused start ends at once."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "gatewayd",
            "run",
            "--profile",
            str(profile),
            "--state-dir",
            str(state_dir),
            "--runtime-dir",
            str(runtime_dir),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"},
    )


def assert_still_serving(daemon: DaemonProcess) -> None:
    assert json.loads(daemon.ctl("status --json"))["profile"]
    assert daemon.sim("handset offhook") == "ok"
    assert daemon.sim("handset onhook") == "ok"


def test_a_second_daemon_on_the_same_state_is_refused_with_the_first_ones_pid(daemon) -> None:
    create_code(daemon, CODE)
    second = run_gatewayd(daemon.profile, daemon.state_dir, daemon.tmp / "run2")
    assert second.returncode == 1
    assert daemon.proc is not None
    assert f"another gatewayd (pid {daemon.proc.pid}) uses this state directory" in second.stderr
    assert not (daemon.tmp / "run2" / "ctl.sock").exists()
    assert_still_serving(daemon)
    assert json.loads(daemon.ctl("status --json"))["code_set"] is True


def test_a_second_daemon_on_the_same_sockets_does_not_take_them(daemon) -> None:
    second = run_gatewayd(daemon.profile, daemon.tmp / "state2", daemon.runtime_dir)
    assert second.returncode == 1
    assert "another process answers on this socket" in second.stderr
    assert_still_serving(daemon)  # its sockets are still there and still its own


def test_sockets_left_by_a_killed_daemon_are_replaced(daemon) -> None:
    assert daemon.proc is not None
    daemon.proc.kill()
    daemon.proc.wait()
    assert (daemon.runtime_dir / "ctl.sock").exists()  # stale: nothing answers on it
    restarted = DaemonProcess(daemon.tmp, daemon.profile).start()
    try:
        assert_still_serving(restarted)
    finally:
        assert restarted.stop() == 0


# --- point 3: a client limit ----------------------------------------------------------------


def test_hundreds_of_subscribers_at_nofile_256_leave_the_box_usable(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path, make_profile(tmp_path))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # inherited by the daemon only
    try:
        daemon.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    subscribers: list[socket.socket] = []
    try:
        create_code(daemon, CODE)
        first = daemon.events()
        answers = []
        for _ in range(300):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(15)
            sock.connect(str(daemon.runtime_dir / "ctl.sock"))
            sock.sendall(b"events --json\n")
            answers.append(sock.recv(200).decode(errors="replace"))
            subscribers.append(sock)
        busy = [a for a in answers if a.startswith("error busy")]
        assert len(busy) > 250 and len(answers) - len(busy) <= 32
        # Commands still get in, the sim still answers, a code check still works.
        assert json.loads(daemon.ctl("status --json"))["code_set"] is True
        assert daemon.sim("remote call") == "ok"
        assert daemon.sim("remote press *") == "ok"
        assert daemon.sim(f"remote press {CODE}#") == "ok"
        first.wait_for(lambda e: e["type"] == "auth" and e["result"] == "ok")
        assert daemon.sim("remote hangup") == "ok"
        assert daemon.log_path.stat().st_size < 200_000  # no flood of tracebacks
        assert daemon.log_text().count("refusing more (busy)") == 1  # once a minute at most
        # A socket past its cap answers busy at once (the sim has one client already: ours).
        answers = []
        for _ in range(40):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(15)
            sock.connect(str(daemon.runtime_dir / "sim.sock"))
            subscribers.append(sock)
        for sock in subscribers[-40:]:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(b"handset onhook\n")  # a refused client was closed already
            answers.append(sock.recv(200).decode(errors="replace"))
        assert sum(a.startswith("error busy") for a in answers) == 40 - 31
    finally:
        for sock in subscribers:
            sock.close()
        daemon.stop()


# --- point 8: signals and shutdown ----------------------------------------------------------


def _sim_command_on_a_thread(
    daemon: DaemonProcess, command: str
) -> tuple[threading.Thread, list[str]]:
    answers: list[str] = []

    def send() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(str(daemon.runtime_dir / "sim.sock"))
            sock.sendall(command.encode() + b"\n")
            with contextlib.suppress(OSError):
                answers.append(sock.recv(200).decode())

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread, answers


def test_sigterm_during_a_ringing_remote_call_stops_the_daemon_for_good(tmp_path: Path) -> None:
    # Rings that last: the box answers after 3 rings, SIGTERM comes during the first one.
    profile = make_profile(tmp_path, **{"answer_after_rings = 2": "answer_after_rings = 3"})
    daemon = DaemonProcess(tmp_path, profile).start()
    events = daemon.events()
    thread, _answers = _sim_command_on_a_thread(daemon, "remote call")
    events.wait_for(lambda e: e["type"] == "ring")
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=10) == 0
    thread.join(timeout=10)
    assert not thread.is_alive()  # the command was answered (or its connection closed)
    log = daemon.log_text()
    after_stop = log[log.index("shutting down") :]
    assert "answered" not in after_stop and "Traceback" not in log
    assert not (daemon.runtime_dir / "ctl.sock").exists()


def test_sighup_is_logged_and_the_daemon_goes_on(daemon: DaemonProcess) -> None:
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    assert daemon.proc.poll() is None
    assert_still_serving(daemon)
    assert "SIGHUP" in daemon.log_text()
    assert daemon.stop() == 0


def test_concurrent_call_and_hangup_on_two_connections_are_both_answered(daemon) -> None:
    for _ in range(5):
        call, call_answers = _sim_command_on_a_thread(daemon, "remote call")
        hangup, hangup_answers = _sim_command_on_a_thread(daemon, "remote hangup")
        call.join(timeout=20)
        hangup.join(timeout=20)
        assert len(call_answers) == 1 and len(hangup_answers) == 1, (call_answers, hangup_answers)
        daemon.sim("remote hangup")  # whatever state that left, end it
    assert_still_serving(daemon)
