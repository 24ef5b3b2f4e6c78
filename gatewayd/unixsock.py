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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

LOGGER = logging.getLogger(__name__)

SOCKET_MODE = 0o660
#: After an over-long line, at most this much more input is read (and dropped) before closing.
DISCARD_MAX_BYTES = 4 * 1024 * 1024
DISCARD_TIMEOUT_S = 2.0

ClientHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


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

    async def start(self) -> None:
        """Bind the socket (replacing a stale one) and accept clients."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(
            self._serve, path=str(self.path), limit=self._max_line
        )
        os.chmod(self.path, self._mode)
        LOGGER.info("%s listening on %s", self._what, self.path)

    async def close(self) -> None:
        """Stop accepting, end the clients, remove the socket; safe to call twice."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._clients):
            task.cancel()
        self.path.unlink(missing_ok=True)

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
