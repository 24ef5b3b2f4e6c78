"""One daemon per state directory: an exclusive ``flock`` on ``gatewayd.lock`` (issue 15.4).

Two daemons on one state would work from stale caches (a failure counter going
back, documents written twice). The lock is held for the daemon's life and
released by the kernel when the process ends, even on SIGKILL: a stale lock file
is harmless, it is never removed. The file holds the owner's pid, for the message
that refuses a second daemon.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path

from gatewayd.errors import GatewaydError

LOGGER = logging.getLogger(__name__)

LOCK_FILE = "gatewayd.lock"


class StateDirError(GatewaydError, OSError):
    """The state directory cannot be used: not a directory, not writable, or in use."""


class StateLock:
    """The exclusive lock on a state directory; :meth:`release` is safe to call twice."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / LOCK_FILE
        self._fd: int | None = None

    @classmethod
    def acquire(cls, state_dir: Path) -> StateLock:
        """Create the state directory if needed and lock it; StateDirError naming the fix."""
        lock = cls(state_dir)
        lock._acquire()
        return lock

    def _acquire(self) -> None:
        directory = self.state_dir
        if directory.exists() and not directory.is_dir():
            raise StateDirError(
                f"{directory}: the state directory is not a directory; "
                "move that file away, or choose another --state-dir"
            )
        try:
            directory.mkdir(parents=True, exist_ok=True)
            # Read-only: an fd open for writing would keep the file system from going read-only.
            fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise StateDirError(
                f"{self.path}: cannot create the state lock ({exc.strerror or exc}); the state "
                "directory must be writable by gatewayd on a read-write file system "
                "(or choose another --state-dir)"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_pid(fd)
            os.close(fd)
            raise StateDirError(
                f"{directory}: another gatewayd (pid {owner}) uses this state directory; "
                "stop it first (systemctl stop gatewayd), or choose another --state-dir"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise StateDirError(f"{self.path}: cannot lock ({exc.strerror or exc})") from exc
        try:
            pid_fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW)
            try:
                os.write(pid_fd, f"{os.getpid()}\n".encode())
            finally:
                os.close(pid_fd)
        except OSError as exc:  # the lock holds all the same; only the pid is not shown
            LOGGER.warning("%s: could not write our pid (%s)", self.path, exc)
        self._fd = fd
        LOGGER.debug("locked the state directory %s", directory)

    def release(self) -> None:
        """Unlock (closing the file does it); the file stays, empty of meaning."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def _read_pid(fd: int) -> str:
    """The pid the owner wrote, or ``unknown``."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"
