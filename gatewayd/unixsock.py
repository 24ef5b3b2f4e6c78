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
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gatewayd.errors import GatewaydError

LOGGER = logging.getLogger(__name__)

SOCKET_MODE = 0o660
#: After an over-long line, at most this much more input is read (and dropped) before closing.
DISCARD_MAX_BYTES = 4 * 1024 * 1024
DISCARD_TIMEOUT_S = 2.0
#: sun_path holds 108 bytes with its terminating NUL.
UNIX_PATH_MAX = 107
#: How long a connect to an existing socket file may take to tell a live daemon from a stale file.
PROBE_TIMEOUT_S = 1.0

ClientHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


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

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
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
