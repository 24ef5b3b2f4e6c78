"""The daemon as a subprocess, driven through its sockets exactly as a user or an agent would.

Readiness is the daemon's own sd_notify ``READY=1`` on a datagram socket the
test binds; waits are condition waits with generous time-outs, never sleeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gatewayd.paths import shipped_profiles_dir

REPO = Path(__file__).resolve().parent.parent
#: The sim profile gatewayd ships: the checkout's, or the installed wheel's (CI smoke test).
SIM_PROFILE = shipped_profiles_dir() / "sim.toml"
READY_TIMEOUT_S = 20.0


def make_profile(tmp: Path, **replace: str) -> Path:
    """The shipped sim profile with fast test values (one ring, cheap scrypt) and overrides."""
    text = SIM_PROFILE.read_text()
    values = {
        "answer_after_rings = 2": "answer_after_rings = 1",
        "scrypt_n = 16384": "scrypt_n = 1024",
        "cooldown_first_s = 900.0": "cooldown_first_s = 900.0",
        **replace,
    }
    for old, new in values.items():
        assert old in text, f"sim.toml no longer has {old!r}"
        text = text.replace(old, new)
    path = tmp / "test-sim.toml"
    path.write_text(text)
    return path


class Events:
    """A live ``events --json`` stream, collected on a thread."""

    def __init__(self, ctl_path: Path) -> None:
        self.items: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(str(ctl_path))
        self._sock.sendall(b"events --json\n")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        # Live once the daemon says so: no event after this point can be missed.
        self.wait_for(lambda e: e["type"] == "subscribed")

    def _read(self) -> None:
        with self._sock.makefile("r", encoding="utf-8") as lines:
            for line in lines:
                with self._cond:
                    self.items.append(json.loads(line))
                    self._cond.notify_all()

    def wait_for(
        self, match: Callable[[dict[str, Any]], bool], *, after: int = 0, timeout: float = 15.0
    ) -> dict[str, Any]:
        """The first event at index >= ``after`` that matches; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.items[after:]:
                    if match(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching event; got {self.items[after:]}")
                self._cond.wait(left)

    def index_of(self, event: dict[str, Any]) -> int:
        with self._cond:
            return self.items.index(event)

    def mark(self) -> int:
        with self._cond:
            return len(self.items)

    def of_type(self, kind: str, after: int = 0) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self.items[after:] if e["type"] == kind]

    def close(self) -> None:
        self._sock.close()


class DaemonProcess:
    """``python -m gatewayd run`` on a test profile, with its state and sockets in ``tmp``."""

    def __init__(self, tmp: Path, profile: Path) -> None:
        self.tmp = tmp
        self.profile = profile
        self.state_dir = tmp / "state"
        self.runtime_dir = tmp / "run"
        self.log_path = tmp / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._sim: socket.socket | None = None
        self._sim_lines: Any = None

    @property
    def state_file(self) -> Path:
        return self.state_dir / "gatewayd.json"

    def start(
        self,
        extra_env: dict[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> DaemonProcess:
        notify_path = self.tmp / "notify.sock"
        notify_path.unlink(missing_ok=True)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(notify_path))
        env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), **(extra_env or {})}
        env.pop("JOURNAL_STREAM", None)
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gatewayd",
                "run",
                "--profile",
                str(self.profile),
                "--state-dir",
                str(self.state_dir),
                "--runtime-dir",
                str(self.runtime_dir),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
            preexec_fn=preexec_fn,  # e.g. bench/slow_board.py: join a CPU cgroup
        )
        # Wait for READY=1, or for the daemon to exit (then say why, from its log).
        notify.settimeout(0.2)
        deadline = time.monotonic() + READY_TIMEOUT_S
        try:
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    message = notify.recv(4096).decode()
                except TimeoutError:
                    continue
                if "READY=1" in message.split("\n"):
                    return self
        finally:
            notify.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        raise AssertionError(f"daemon not ready; log:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def sim(self, command: str) -> str:
        """One sim-socket command on a persistent connection; returns the answer line."""
        if self._sim is None:
            self._sim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._sim.connect(str(self.runtime_dir / "sim.sock"))
            self._sim_lines = self._sim.makefile("rw", encoding="utf-8")
        self._sim_lines.write(command + "\n")
        self._sim_lines.flush()
        answer: str = self._sim_lines.readline().strip()
        return answer

    def ctl(self, command: str | bytes) -> str:
        """One control-socket command; returns the whole answer."""
        data = command if isinstance(command, bytes) else command.encode() + b"\n"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(self.runtime_dir / "ctl.sock"))
            sock.settimeout(15)
            # The daemon may hang up on an over-long line: then read what it said.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(data)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def events(self) -> Events:
        return Events(self.runtime_dir / "ctl.sock")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self._sim is not None:
            self._sim.close()
            self._sim = None
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=15)
        self.log.close()
        return code
