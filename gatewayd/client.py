"""Blocking clients of the daemon's sockets: ``sim.sock``, ``ctl.sock`` and sd_notify readiness.

Used by ``gatewayd sim``, ``gatewayd ctl``, the keyboard handset (``phone``)
and ``demo``. Every wait has a time-out, except an ``events`` stream, which
lasts until the caller closes it. Errors say which socket and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

from gatewayd.errors import GatewaydError
from gatewayd.paths import CTL_SOCKET, SIM_SOCKET

#: How long an ordinary sim command (hook, flash, hang-up) may take to be answered.
SIM_TIMEOUT_S = 10.0
#: Extra time per key of ``press``: the daemon answers once every key was sent (80 + 80 ms each).
KEY_PERIOD_S = 0.160
#: ``remote call`` is answered once the box answers the call, after the profile's rings.
CALL_TIMEOUT_S = 120.0
#: ``remote say`` is answered once the WAV was sent in real time (at most 10 min of audio).
SAY_TIMEOUT_S = 600.0 + SIM_TIMEOUT_S
#: How long a control command (other than ``events``) may take to be answered.
CTL_TIMEOUT_S = 15.0
#: How often :meth:`ReadyListener.wait` checks that the daemon is still running.
READY_POLL_S = 0.2


class DaemonUnreachableError(GatewaydError, ConnectionError):
    """The daemon's socket cannot be reached, or the daemon went away or did not answer."""


class CommandFailedError(GatewaydError, RuntimeError):
    """The daemon answered ``error <reason>``; ``reason`` is its text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _connect(path: Path, timeout: float | None) -> socket.socket:
    """A connected unix stream socket, or DaemonUnreachableError saying why and what to do."""
    if len(str(path).encode()) > 107:  # sun_path is 108 bytes with its NUL
        raise DaemonUnreachableError(
            f"{path}: socket path too long for a unix socket (max 107 bytes); "
            "use a shorter --runtime-dir"
        )
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError as exc:
        sock.close()
        raise DaemonUnreachableError(_why_unreachable(path, exc)) from exc
    return sock


def _why_unreachable(path: Path, exc: OSError) -> str:
    start = (
        "start it with `gatewayd run` or `gatewayd demo` (a running demo is found without "
        "options), or give its --runtime-dir"
    )
    if exc.errno == errno.ENOENT:
        if path.name == SIM_SOCKET and (path.parent / CTL_SOCKET).exists():
            # The daemon runs, but only the sim profile has a sim socket.
            return (
                f"{path}: no sim socket: the daemon in {path.parent} does not run the sim "
                "profile (`gatewayd run --profile sim` has one)"
            )
        return f"{path}: no such socket; is the daemon running? {start}"
    if exc.errno == errno.ECONNREFUSED:
        return f"{path}: nobody listens (a stale socket: the daemon is not running); {start}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (
            f"{path}: permission denied; the socket is mode 0660: run as the daemon's user, "
            "a member of its group, or root"
        )
    if isinstance(exc, TimeoutError):
        return f"{path}: the daemon did not accept the connection in time; is it stuck?"
    return f"{path}: cannot connect: {exc.strerror or exc}"


def _read_line(sock: socket.socket, buffer: bytearray) -> bytes | None:
    """One line (without its newline) from ``sock``, or None at end of stream."""
    while True:
        end = buffer.find(b"\n")
        if end >= 0:
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            return line
        chunk = sock.recv(65536)
        if not chunk:
            if buffer:  # a last line without its newline is still a line
                line = bytes(buffer)
                buffer.clear()
                return line
            return None
        buffer += chunk


class SimClient:
    """One connection to ``<runtime>/sim.sock``: send commands, get ``ok`` or an exception.

    Not thread-safe: one client per thread (commands on one connection run one after the other).
    """

    def __init__(self, runtime_dir: Path) -> None:
        self.path = runtime_dir / SIM_SOCKET
        self._sock = _connect(self.path, SIM_TIMEOUT_S)
        self._buffer = bytearray()

    def send(self, line: str) -> str:
        """Send one command (e.g. ``handset press 3103``); its ``ok`` answer, or raise.

        Raises CommandFailedError on ``error <reason>``, DaemonUnreachableError if the
        daemon went away or did not answer in time.
        """
        command = line.strip()
        if not command or "\n" in command:
            raise ValueError(f"one sim command per call, got {line!r}")
        self._sock.settimeout(command_timeout(command))
        try:
            self._sock.sendall(command.encode() + b"\n")
            raw = _read_line(self._sock, self._buffer)
        except TimeoutError as exc:
            raise DaemonUnreachableError(
                f"{self.path}: no answer to {command!r} in time; is the daemon stuck?"
            ) from exc
        except OSError as exc:
            raise DaemonUnreachableError(
                f"{self.path}: connection lost ({exc.strerror or exc}); did the daemon stop?"
            ) from exc
        if raw is None:
            raise DaemonUnreachableError(
                f"{self.path}: the daemon closed the connection; did it stop?"
            )
        answer = raw.decode("utf-8", errors="replace").strip()
        if answer.startswith("error"):
            raise CommandFailedError(answer.removeprefix("error").strip() or "unknown error")
        return answer

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        self._sock.close()

    def __enter__(self) -> SimClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def command_timeout(command: str) -> float:
    """How long the daemon may take to answer this sim command."""
    words = command.split()
    if words[1:2] == ["call"]:
        return CALL_TIMEOUT_S
    if words[1:2] == ["say"]:
        return SAY_TIMEOUT_S
    if words[1:2] == ["press"] and len(words) > 2:
        return SIM_TIMEOUT_S + KEY_PERIOD_S * len(words[2])
    return SIM_TIMEOUT_S


class ControlAnswer(Iterator[str]):
    """The lines the daemon answers to one control command; ``close()`` ends a stream early.

    ``close()`` may be called from another thread: a reader blocked on the stream then
    sees its end.
    """

    def __init__(self, sock: socket.socket, path: Path, timeout: float | None) -> None:
        self.path = path
        self._sock = sock
        self._timeout = timeout
        self._buffer = bytearray()
        self._done = False
        self._reading = False

    def __iter__(self) -> ControlAnswer:
        return self

    def __next__(self) -> str:
        if self._done:
            self._sock.close()
            raise StopIteration
        self._reading = True
        try:
            raw = _read_line(self._sock, self._buffer)
        except TimeoutError as exc:
            self._done = True
            raise DaemonUnreachableError(
                f"{self.path}: no answer within {self._timeout:.0f} s; is the daemon stuck?"
            ) from exc
        except OSError as exc:
            if self._done:  # closed by close() from another thread: a normal end
                raise StopIteration from None
            self._done = True
            raise DaemonUnreachableError(
                f"{self.path}: connection lost ({exc.strerror or exc}); did the daemon stop?"
            ) from exc
        finally:
            self._reading = False
            if self._done:
                self._sock.close()
        if raw is None:
            self._done = True
            self._sock.close()
            raise StopIteration
        return raw.decode("utf-8", errors="replace").rstrip("\r")

    def close(self) -> None:
        """End the answer (and a stream); safe to call twice and from another thread."""
        self._done = True
        # shutdown() wakes a recv() blocked in another thread; close() alone would not, and
        # closing the descriptor under that thread could hand its number to another file:
        # the reading thread closes it on its way out.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        if not self._reading:
            self._sock.close()

    def __enter__(self) -> ControlAnswer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def ctl_request(runtime_dir: Path, command: str) -> ControlAnswer:
    """Send one console command to ``<runtime>/ctl.sock``; iterate the answer's lines.

    Connects at once (DaemonUnreachableError if it cannot). Lines starting with
    ``error `` are errors. ``events`` answers stream until closed, with no time-out.
    """
    command = command.strip()
    if "\n" in command:
        raise ValueError(f"one control command per connection, got {command!r}")
    streaming = command.split()[:1] == ["events"]
    timeout = None if streaming else CTL_TIMEOUT_S
    path = runtime_dir / CTL_SOCKET
    sock = _connect(path, CTL_TIMEOUT_S)
    try:
        sock.sendall(command.encode() + b"\n")
    except OSError as exc:
        sock.close()
        raise DaemonUnreachableError(
            f"{path}: connection lost ({exc.strerror or exc}); did the daemon stop?"
        ) from exc
    sock.settimeout(timeout)
    return ControlAnswer(sock, path, timeout)


class ReadyListener:
    """The datagram socket a daemon's sd_notify ``READY=1`` reaches (bind it before the start).

    ``address`` is the value for the daemon's ``$NOTIFY_SOCKET``; a path starting
    with ``@`` is in the abstract namespace, as with systemd.
    """

    def __init__(self, path: str | Path) -> None:
        self.address = str(path)
        bound = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self._sock.bind(bound)
        except OSError as exc:
            self._sock.close()
            raise DaemonUnreachableError(
                f"{self.address}: cannot bind the notify socket: {exc.strerror or exc}"
            ) from exc
        self.status = ""

    def wait(self, timeout: float, still_running: Callable[[], bool] | None = None) -> bool:
        """True once ``READY=1`` arrives; False after ``timeout`` s or once the daemon exited.

        The last ``STATUS=`` text received is kept in :attr:`status`.
        """
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if still_running is not None and not still_running():
                return False
            self._sock.settimeout(min(left, READY_POLL_S))
            try:
                message = self._sock.recv(4096).decode("utf-8", errors="replace")
            except TimeoutError:
                continue
            fields = message.split("\n")
            for field in fields:
                if field.startswith("STATUS="):
                    self.status = field.removeprefix("STATUS=")
            if "READY=1" in fields:
                return True
        return False

    def close(self) -> None:
        """Close and unlink the socket; safe to call twice."""
        self._sock.close()
        if not self.address.startswith("@"):
            with contextlib.suppress(OSError):
                Path(self.address).unlink()

    def __enter__(self) -> ReadyListener:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
