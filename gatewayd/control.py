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
import time
from pathlib import Path
from typing import TYPE_CHECKING

from gatewayd.errors import GatewaydError
from gatewayd.eventbus import EventBus
from gatewayd.unixsock import RepeatedLog, UnixSocketServer, client_limit, refuse_long_line

if TYPE_CHECKING:  # the console module loads when the first client connects
    from gatewayd.console import ServiceView, Stream

LOGGER = logging.getLogger(__name__)

MAX_LINE = 4096
#: A client has this long to send its command line.
COMMAND_TIMEOUT_S = 10.0
#: Places of ctl.sock that ``events`` streams leave free for commands.
COMMAND_PLACES = 2


class ControlServer:
    """Serves :class:`Console` commands on a unix stream socket."""

    def __init__(self, path: Path, service: ServiceView, bus: EventBus) -> None:
        self.path = path
        self._service = service
        self._bus = bus
        self._socket = UnixSocketServer(
            path, self._one_command, max_line=MAX_LINE, what="control socket"
        )
        self._streams = 0
        self._repeats = RepeatedLog(time.monotonic)

    async def start(self) -> None:
        """Bind the socket (replacing a stale one) and accept clients."""
        await self._socket.start()

    async def close(self) -> None:
        """Stop accepting, end client streams, remove the socket; safe to call twice."""
        await self._socket.close()

    async def _one_command(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\n"), COMMAND_TIMEOUT_S)
        except asyncio.IncompleteReadError as exc:
            raw = exc.partial  # a command without its newline, then EOF: still a command
        except asyncio.LimitOverrunError:
            await refuse_long_line(reader, writer, MAX_LINE)
            return
        line = raw.decode("utf-8", errors="replace").strip()
        from gatewayd.console import Console, Deferred, Reply

        try:
            # Trusted: whoever may open the socket (its file mode) may run every command.
            answer = Console(self._service, origin="ctl", trusted=True).run(line)
        except GatewaydError as exc:  # e.g. the state file became unreadable: say so
            answer = Reply((f"error {exc}",), ok=False)
        except OSError as exc:  # e.g. the state's file system turned read-only: say so
            LOGGER.error("control command %r failed: %s", line.split()[:1], exc)
            answer = Reply(
                (
                    f"error the state could not be written ({exc.strerror or exc}); nothing "
                    "was changed. Check the state directory's disk (space, read-only).",
                ),
                ok=False,
            )
        # Trusted sessions have no login, so nothing here waits for a code comparison.
        assert not isinstance(answer, Deferred)
        if isinstance(answer, Reply):
            writer.write("".join(f"{text}\n" for text in answer.lines).encode())
            await writer.drain()
            return
        await self._stream(answer, reader, writer)

    async def _stream(
        self, stream: Stream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self._streams >= client_limit() - COMMAND_PLACES:
            # Streams never take the last places: a command (status, reset) always gets in.
            left_out = self._repeats.allow("busy")
            if left_out is not None:
                LOGGER.warning(
                    "%d event streams, refusing more (busy); %d more refused since the last one",
                    self._streams,
                    left_out,
                )
            writer.write(b"error busy (too many event streams; try again later)\n")
            await writer.drain()
            return
        self._streams += 1
        try:
            await self._stream_events(stream, reader, writer)
        finally:
            self._streams -= 1

    async def _stream_events(
        self, stream: Stream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        from gatewayd.console import format_event

        sub = self._bus.subscribe()
        # First line: the stream is live, so a client knows no later event can be missed.
        hello = {"type": "subscribed", "t": round(time.monotonic(), 3)}
        writer.write(
            ((json.dumps(hello) if stream.as_json else format_event(hello)) + "\n").encode()
        )
        await writer.drain()
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
