"""``gatewayd demo`` end to end, as a newcomer runs it: in a terminal (a real pseudo-terminal).

The demo starts its own daemon on the sim profile; the test types the keys of
the README's walk-through and reads the screen.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayd.phone import BANNER

try:
    import gatewayd.daemon  # noqa: F401  (the demo runs it in a subprocess)
except ImportError as exc:  # pragma: no cover - only while the daemon is being written
    pytest.skip(
        f"gatewayd.daemon cannot be imported ({exc}): no daemon to demo", allow_module_level=True
    )

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
CODE = "4931"


class Terminal:
    """``gatewayd demo`` on a pseudo-terminal that is its controlling terminal."""

    def __init__(self, state_dir: Path | None, *options: str, **env_extra: str) -> None:
        self.master, slave = os.openpty()
        self.slave = slave
        self.initial_attrs = termios.tcgetattr(slave)
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gatewayd", "demo", *options]
            + (["--state-dir", str(state_dir)] if state_dir else []),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=REPO,
            env={**env, "PYTHONUNBUFFERED": "1", "LANG": "C.UTF-8", **env_extra},
            preexec_fn=_become_terminal_owner,
        )
        self._screen = b""
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError as exc:  # EIO once the demo closed the terminal
                if exc.errno != errno.EIO:
                    raise
                chunk = b""
            with self._changed:
                self._screen += chunk
                self._changed.notify_all()
            if not chunk:
                return

    @property
    def screen(self) -> str:
        with self._changed:
            return self._screen.decode("utf-8", errors="replace")

    def wait_for(self, text: str, timeout: float = 20.0) -> None:
        """Wait until ``text`` is on the screen (fails with the screen after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while text.encode() not in self._screen:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{text!r} never shown; screen:\n{self.screen}")
                self._changed.wait(left)

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.slave)
        self._reader.join(5)
        os.close(self.master)


def _become_terminal_owner() -> None:
    # A session of its own with the pty as controlling terminal: Ctrl-C typed there is a SIGINT.
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    # Its own XDG_RUNTIME_DIR: the demo's pointer file (how ctl finds it) stays in the test.
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    term = Terminal(tmp_path / "state", XDG_RUNTIME_DIR=str(xdg))
    yield term
    term.close()


def runtime_dir_of(term: Terminal) -> Path:
    term.wait_for("/gatewayd.log")
    found = re.search(r"daemon log in (\S+)/gatewayd\.log", term.screen)
    assert found, term.screen
    return Path(found.group(1))


def test_create_a_code_in_the_demo(terminal: Terminal) -> None:
    runtime = runtime_dir_of(terminal)
    terminal.wait_for(BANNER)
    for keys, then in [
        (" ", "♪ dial tone"),
        ("3103", "→ main menu"),
        ("3", "→ personalise menu"),
        ("2", "→ secret-code menu"),
        ("1", "box says: « Veuillez composer les 4 chiffres"),
        (f"{CODE}#", "box says: « Vous avez composé le »"),
        ("1", "box says: « Votre demande est prise en compte. »"),
    ]:
        terminal.type(keys)
        terminal.wait_for(then)
    assert "✔ secret code created (from the handset)" in terminal.screen
    terminal.type("q")
    assert terminal.proc.wait(timeout=30) == 0
    screen = terminal.screen
    assert CODE not in screen  # typed, never echoed; the daemon's key events are masked
    assert "key •" in screen
    assert "(hanging up before leaving)" in screen
    assert not runtime.exists()  # the temporary runtime dir is removed
    assert _processes_mentioning(str(runtime)) == []  # and its daemon stopped
    assert termios.tcgetattr(terminal.slave) == terminal.initial_attrs


def test_ctrl_c_leaves_the_demo_cleanly(terminal: Terminal) -> None:
    runtime = runtime_dir_of(terminal)
    terminal.wait_for(BANNER)
    terminal.type(" ")
    terminal.wait_for("♪ dial tone")
    terminal.type("\x03")  # Ctrl-C
    assert terminal.proc.wait(timeout=30) == 0
    assert "Traceback" not in terminal.screen
    assert not runtime.exists()
    assert _processes_mentioning(str(runtime)) == []
    assert termios.tcgetattr(terminal.slave) == terminal.initial_attrs


def test_a_daemon_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "state"
    not_a_dir.write_text("a file where the state dir should be\n")
    result = subprocess.run(
        [sys.executable, "-m", "gatewayd", "demo", "--state-dir", str(not_a_dir)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 1
    assert "gatewayd demo: the daemon exited with status" in result.stdout
    assert str(not_a_dir) in result.stdout  # the log tail says what went wrong
    runtime = re.search(r"daemon log in (\S+)/gatewayd\.log", result.stdout)
    assert runtime and not Path(runtime.group(1)).exists()


def test_ctl_finds_the_demo_and_fresh_starts_from_an_empty_box(tmp_path: Path) -> None:
    home, xdg = tmp_path / "home", tmp_path / "xdg"
    xdg.mkdir()
    old_state = home / ".local" / "state" / "gatewayd-demo"
    old_state.mkdir(parents=True)
    (old_state / "gatewayd.json").write_text("a box from an earlier demo")
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": str(xdg)}
    term = Terminal(None, "--fresh", **env)
    try:
        runtime = runtime_dir_of(term)
        term.wait_for(BANNER)
        assert f"sockets in {runtime}" in term.screen
        assert "emptied (--fresh)" in term.screen
        base = {k: v for k, v in os.environ.items() if k not in ("RUNTIME_DIRECTORY",)}
        status = subprocess.run(
            [sys.executable, "-m", "gatewayd", "ctl", "status"],
            env={**base, **env},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert status.returncode == 0, status.stderr
        assert "code_set: no" in status.stdout  # the earlier box is gone
        term.type("q")
        assert term.proc.wait(timeout=30) == 0
    finally:
        term.close()
    assert not (xdg / "gatewayd-demo").exists()  # the pointer goes with the demo
