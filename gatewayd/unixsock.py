"""Unix stream sockets for the daemon's local interfaces (ctl.sock, sim.sock, gpio.sock).

:class:`UnixSocketServer` binds a socket file (mode 0660 by default: its file
mode is its access control), tracks its clients so :meth:`UnixSocketServer.close`
ends them, and removes the file. :func:`line_commands` is the protocol of the
sim and fake-GPIO sockets: one command per line, one answer line each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import socket
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gatewayd.errors import GatewaydError

LOGGER = logging.getLogger(__name__)

SOCKET_MODE = 0o660
#: After an over-long line, at most this much more input is read (and dropped) before closing.
DISCARD_MAX_BYTES = 4 * 1024 * 1024
DISCARD_TIMEOUT_S = 2.0
#: Clients at once per socket unless :func:`set_client_limit` (the profile's ``[sockets]``) says.
DEFAULT_MAX_CLIENTS = 32
#: File descriptors kept for the rest of the daemon (serial, audio, state, log, accept) when
#: the open-file limit caps the clients of the :data:`SOCKETS_PER_DAEMON` sockets.
FD_RESERVE = 64
SOCKETS_PER_DAEMON = 3
#: The same error is logged at most once per this many seconds (with a count of the others).
REPEAT_LOG_INTERVAL_S = 60.0
#: sun_path holds 108 bytes with its terminating NUL.
UNIX_PATH_MAX = 107
#: How long a connect to an existing socket file may take to tell a live daemon from a stale file.
PROBE_TIMEOUT_S = 1.0

ClientHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


_client_limit = DEFAULT_MAX_CLIENTS


def set_client_limit(configured: int) -> int:
    """Set the clients-per-socket cap of this process (the profile's ``sockets.max_clients``).

    Lowered so that every socket full still leaves :data:`FD_RESERVE` descriptors under
    the soft open-file limit; returns the cap in force.
    """
    global _client_limit
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = configured
    if soft != resource.RLIM_INFINITY:
        cap = max(2, min(configured, (soft - FD_RESERVE) // SOCKETS_PER_DAEMON))
    if cap < configured:
        LOGGER.warning(
            "open-file limit %d: at most %d clients per socket (sockets.max_clients is %d); "
            "raise LimitNOFILE= for more",
            soft,
            cap,
            configured,
        )
    _client_limit = cap
    return cap


def client_limit() -> int:
    """The clients-per-socket cap in force."""
    return _client_limit


class RepeatedLog:
    """Logs a repeated message at most once per interval, with how many were left out."""

    def __init__(self, clock: Callable[[], float], interval: float = REPEAT_LOG_INTERVAL_S):
        self._clock = clock
        self._interval = interval
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def allow(self, key: str) -> int | None:
        """None to stay quiet; else how many of ``key`` were left out since the last one."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._left_out[key] = self._left_out.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._left_out.pop(key, 0)


class SocketError(GatewaydError, OSError):
    """A socket file cannot be ours: too long a path, not a socket, or a live one."""


def prepare_socket_path(path: Path, what: str) -> None:
    """Make ``path`` ready to bind: its directory exists, a stale socket file is removed.

    Refuses (:class:`SocketError`, naming the path and the fix) a path too long for
    AF_UNIX, a path that is not a socket, and a socket another process answers on
    (a second daemon must not take the first one's sockets).
    """
    if len(os.fsencode(path)) > UNIX_PATH_MAX:
        raise SocketError(
            f"{path}: {len(os.fsencode(path))} bytes, longer than the {UNIX_PATH_MAX} a unix "
            "socket path may have; choose a shorter --runtime-dir"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SocketError(
            f"{path.parent}: cannot create the runtime directory ({exc.strerror or exc}); "
            "create it writable for gatewayd, or choose another --runtime-dir"
        ) from exc
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise SocketError(
            f"{path}: exists and is not a socket (the {what} socket goes there); "
            "move it away, or choose another --runtime-dir"
        )
    if socket_answers(path):
        raise SocketError(
            f"{path}: another process answers on this socket (is gatewayd already running?); "
            "stop it first, or choose another --runtime-dir"
        )
    LOGGER.info("removing the stale socket %s (nothing answers on it)", path)
    path.unlink(missing_ok=True)


def socket_answers(path: Path) -> bool:
    """Whether a process accepts connections on the unix socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(PROBE_TIMEOUT_S)
        try:
            probe.connect(str(path))
        except TimeoutError:
            return True  # a listener with a full backlog is still a listener
        except OSError:
            return False  # refused (stale file) or gone
    return True


async def discard_input(reader: asyncio.StreamReader) -> None:
    """Swallow what a misbehaving client is still sending (bounded), so it can read our error.

    Closing a unix socket with unread input resets the connection, and the client
    would lose the answer.
    """
    budget = DISCARD_MAX_BYTES
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(DISCARD_TIMEOUT_S):
            while budget > 0 and (chunk := await reader.read(65536)):
                budget -= len(chunk)


async def refuse_long_line(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_line: int
) -> None:
    """Answer an over-long line with an error the client can read, then give up on it."""
    writer.write(f"error line too long (max {max_line} bytes)\n".encode())
    await writer.drain()
    await discard_input(reader)


def line_commands(command: Callable[[str], Awaitable[str]], max_line: int) -> ClientHandler:
    """A client handler: each line is passed to ``command``, its answer written back."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                raw = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                if not exc.partial.strip():
                    return
                raw = exc.partial  # a last command without its newline
            except asyncio.LimitOverrunError:
                await refuse_long_line(reader, writer, max_line)
                return
            line = raw.decode("utf-8", errors="replace").strip()
            if line:
                writer.write((await command(line) + "\n").encode())
                await writer.drain()

    return serve


class UnixSocketServer:
    """A unix stream socket whose clients are served by ``handler`` (one task each)."""

    def __init__(
        self,
        path: Path,
        handler: ClientHandler,
        *,
        max_line: int,
        what: str,
        mode: int = SOCKET_MODE,
    ) -> None:
        self.path = path
        self._handler = handler
        self._max_line = max_line
        self._what = what
        self._mode = mode
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task[Any]] = set()
        self._repeats = RepeatedLog(time.monotonic)
        #: The inode of the socket file we bound (None: not bound, nothing of ours to remove).
        self._inode: int | None = None

    async def start(self) -> None:
        """Bind the socket (replacing a stale one, never a live one) and accept clients.

        Raises :class:`SocketError` naming the path and the fix when the path is too
        long, is not a socket, or another process answers on it.
        """
        prepare_socket_path(self.path, self._what)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=self._max_line
            )
        except OSError as exc:
            raise SocketError(
                f"{self.path}: cannot create the {self._what} socket ({exc.strerror or exc}); "
                "check that the runtime directory is writable (or choose another --runtime-dir)"
            ) from exc
        self._inode = self.path.stat().st_ino
        os.chmod(self.path, self._mode)
        LOGGER.info("%s listening on %s", self._what, self.path)

    async def close(self) -> None:
        """Stop accepting, end the clients, remove our socket; safe to call twice."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._clients):
            task.cancel()
        inode, self._inode = self._inode, None
        # Only the file we bound: never a socket another daemon put there after us.
        with contextlib.suppress(OSError):
            if inode is not None and self.path.stat().st_ino == inode:
                self.path.unlink()

    @property
    def client_count(self) -> int:
        """Clients connected now."""
        return len(self._clients)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._clients) >= client_limit():
            await self._refuse_busy(writer)
            return
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            await self._handler(reader, writer)
        except (ConnectionError, asyncio.CancelledError, TimeoutError):
            pass  # the client left, or the daemon is closing
        except Exception:
            LOGGER.exception("%s: a client failed; the others go on", self._what)
        finally:
            if task is not None:
                self._clients.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _refuse_busy(self, writer: asyncio.StreamWriter) -> None:
        """Tell a client past the cap, without waiting on it, and close."""
        left_out = self._repeats.allow("busy")
        if left_out is not None:
            LOGGER.warning(
                "%s: %d clients connected, refusing more (busy)%s",
                self._what,
                len(self._clients),
                f"; {left_out} more refused since the last message" if left_out else "",
            )
        with contextlib.suppress(Exception):
            writer.write(
                f"error busy ({client_limit()} clients connected; try again later)\n".encode()
            )
            async with asyncio.timeout(1.0):
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()
