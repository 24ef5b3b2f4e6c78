"""The control socket ``<runtime>/ctl.sock`` (mode 0660): one console command per connection.

The client sends one command line; the daemon writes the answer and closes
the connection, except ``events`` which streams until the client leaves. A
client that sends garbage gets an error; one that sends an over-long line, or
nothing for a while, is dropped; the daemon goes on either way.

The socket's file mode is its access control: a client that can connect may
run every console command (``reset --yes``, ``ring``...) without a login.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from gatewayd.console import Console, Reply, ServiceView, Stream, format_event
from gatewayd.errors import GatewaydError
from gatewayd.eventbus import EventBus

LOGGER = logging.getLogger(__name__)

MAX_LINE = 4096
#: A client has this long to send its command line.
COMMAND_TIMEOUT_S = 10.0
SOCKET_MODE = 0o660
#: After an over-long line, at most this much more input is read (and dropped) before closing.
DISCARD_MAX_BYTES = 4 * 1024 * 1024
DISCARD_TIMEOUT_S = 2.0


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


class ControlServer:
    """Serves :class:`Console` commands on a unix stream socket."""

    def __init__(self, path: Path, service: ServiceView, bus: EventBus) -> None:
        self.path = path
        self._service = service
        self._bus = bus
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Bind the socket (replacing a stale one) and accept clients."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(
            self._serve, path=str(self.path), limit=MAX_LINE
        )
        os.chmod(self.path, SOCKET_MODE)
        LOGGER.info("control socket listening on %s", self.path)

    async def close(self) -> None:
        """Stop accepting, end client streams, remove the socket; safe to call twice."""
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
            await self._one_command(reader, writer)
        except (ConnectionError, asyncio.CancelledError, TimeoutError):
            pass
        except Exception:
            LOGGER.exception("control client failed")
        finally:
            if task is not None:
                self._clients.discard(task)
            writer.close()

    async def _one_command(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\n"), COMMAND_TIMEOUT_S)
        except asyncio.IncompleteReadError as exc:
            raw = exc.partial  # a command without its newline, then EOF: still a command
        except asyncio.LimitOverrunError:
            writer.write(f"error line too long (max {MAX_LINE} bytes)\n".encode())
            await writer.drain()
            await discard_input(reader)
            return
        line = raw.decode("utf-8", errors="replace").strip()
        try:
            # Trusted: whoever may open the socket (its file mode) may run every command.
            answer = Console(self._service, origin="ctl", trusted=True).run(line)
        except GatewaydError as exc:  # e.g. the state file became unreadable: say so
            answer = Reply((f"error {exc}",), ok=False)
        if isinstance(answer, Reply):
            writer.write("".join(f"{text}\n" for text in answer.lines).encode())
            await writer.drain()
            return
        await self._stream(answer, reader, writer)

    async def _stream(
        self, stream: Stream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        sub = self._bus.subscribe()
        # The client never speaks again: its EOF (or anything it sends) ends the stream.
        gone = asyncio.ensure_future(reader.read(1))
        try:
            while not sub.closed:
                got = asyncio.ensure_future(sub.queue.get())
                done, _ = await asyncio.wait({got, gone}, return_when=asyncio.FIRST_COMPLETED)
                if gone in done:
                    got.cancel()
                    return
                event = got.result()
                text = json.dumps(event, sort_keys=True) if stream.as_json else format_event(event)
                writer.write((text + "\n").encode())
                await writer.drain()
        finally:
            gone.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gone
            self._bus.unsubscribe(sub)
