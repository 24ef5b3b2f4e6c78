"""The technician's console on the profile's ``[console]`` serial port (115200 8N1 by default).

Made for picocom, minicom or screen: characters are echoed, backspace (BS or
DEL) and Ctrl-U edit the line, CR, LF or CRLF end it, Ctrl-C cancels it (or a
question, or an ``events`` stream), arrow-key escape sequences are ignored,
and a line longer than :data:`MAX_LINE` characters is refused as a whole.
The technician code is never echoed. Commands are those of
:class:`gatewayd.console.Console`.

The port is read on the daemon's loop (pyserial with ``timeout=0`` and
``loop.add_reader``) and written through a bounded queue and
``loop.add_writer``: a terminal that stops reading never blocks the daemon.
A port that fails (a USB-serial adapter pulled out) ends the session and is
reopened with back-off; a port missing at start is waited for the same way.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from gatewayd.console import Answer, Console, Deferred, Reply, Stream, format_event
from gatewayd.errors import DeviceError, GatewaydError
from gatewayd.eventbus import EventBus, Subscription
from gatewayd.seriallink import Backoff, SerialLink
from gatewayd.worker import compare_off_loop

LOGGER = logging.getLogger(__name__)

#: Longest command line, in characters; a longer one is refused when it ends.
MAX_LINE = 256
#: Output kept for a terminal that does not read (a full pty); beyond it output is dropped.
MAX_OUTBOX_BYTES = 64 * 1024
#: First wait before reopening a failed or missing port, doubled up to the second.
REOPEN_FIRST_S = 2.0
REOPEN_MAX_S = 60.0
#: An escape sequence longer than this is not one: stop swallowing bytes.
_MAX_ESCAPE = 16

_CR, _LF, _ETX, _BS, _NAK, _ESC, _DEL, _BEL = 0x0D, 0x0A, 0x03, 0x08, 0x15, 0x1B, 0x7F, 0x07


@dataclass(frozen=True)
class EnteredLine:
    """A line the technician ended with CR or LF; ``too_long`` if it went past the cap."""

    text: str
    too_long: bool = False


@dataclass(frozen=True)
class Interrupt:
    """Ctrl-C: the line (or the question, or the stream) is cancelled."""


Entry = EnteredLine | Interrupt


class LineEditor:
    """Terminal bytes to lines, with the echo a terminal in raw mode expects. No I/O.

    ``echo`` receives what to send back; ``on_entry`` is called at the end of
    each line (after its echo), before the next byte is looked at, so it may
    switch :attr:`secret` for the next line.
    """

    def __init__(
        self,
        echo: Callable[[bytes], None],
        on_entry: Callable[[Entry], None],
        max_line: int = MAX_LINE,
    ) -> None:
        self._echo = echo
        self._on_entry = on_entry
        self.max_line = max_line
        #: While True, typed characters are not echoed (a code is being entered).
        self.secret = False
        self._chars: list[str] = []
        self._overflow = False
        self._after_cr = False
        self._escape = 0  # 0: none, 1: after ESC, 2: inside a CSI/SS3 sequence
        self._escape_length = 0

    @property
    def text(self) -> str:
        """The line typed so far."""
        return "".join(self._chars)

    def reset(self) -> None:
        """Forget the current line (the port was reopened)."""
        self._chars.clear()
        self._overflow = False
        self._after_cr = False
        self._escape = 0

    def feed(self, data: bytes) -> None:
        """Take bytes from the terminal."""
        for byte in data:
            self._byte(byte)

    def _byte(self, byte: int) -> None:
        if self._escape:
            self._escape_byte(byte)
            return
        after_cr, self._after_cr = self._after_cr, False
        if byte in (_CR, _LF):
            if byte == _LF and after_cr:
                return  # the LF of a CRLF
            self._after_cr = byte == _CR
            self._end_line()
        elif byte == _ETX:
            self._chars.clear()
            self._overflow = False
            self._echo(b"^C\r\n")
            self._on_entry(Interrupt())
        elif byte in (_BS, _DEL):
            if self._chars:
                self._chars.pop()
                if not self.secret:
                    self._echo(b"\b \b")
        elif byte == _NAK:  # Ctrl-U: erase the line
            if not self.secret:
                self._echo(b"\b \b" * len(self._chars))
            self._chars.clear()
            self._overflow = False
        elif byte == _ESC:
            self._escape, self._escape_length = 1, 0
        elif 0x20 <= byte < 0x7F:
            if len(self._chars) < self.max_line:
                self._chars.append(chr(byte))
                if not self.secret:
                    self._echo(bytes((byte,)))
            elif not self._overflow:
                self._overflow = True
                self._echo(bytes((_BEL,)))
        # Any other byte (controls, non-ASCII, line noise at a wrong baud rate) is dropped.

    def _escape_byte(self, byte: int) -> None:
        self._escape_length += 1
        if self._escape == 1:
            # ESC [ and ESC O start a sequence (arrows, function keys); ESC x is two bytes.
            self._escape = 2 if byte in (0x5B, 0x4F) else 0
        elif 0x40 <= byte <= 0x7E or self._escape_length > _MAX_ESCAPE:
            self._escape = 0

    def _end_line(self) -> None:
        entry = EnteredLine(self.text, too_long=self._overflow)
        self._chars.clear()
        self._overflow = False
        self._echo(b"\r\n")
        self._on_entry(entry)


def _answer(run: Callable[[], Answer]) -> Answer:
    """What the console answered, or the error line: the console outlives any command."""
    try:
        return run()
    except GatewaydError as exc:  # e.g. the state file became unreadable: say so
        return Reply((f"error {exc}",), ok=False)
    except Exception:
        LOGGER.exception("console command failed")
        return Reply(("error the command failed; see the log",), ok=False)


class SerialConsole:
    """Serves one :class:`Console` session on a serial port, on the running asyncio loop."""

    def __init__(
        self,
        port: str,
        baudrate: int,
        console: Console,
        bus: EventBus,
        *,
        banner: str = "gatewayd technician console",
        max_line: int = MAX_LINE,
        reopen_first_s: float = REOPEN_FIRST_S,
        reopen_max_s: float = REOPEN_MAX_S,
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self.banner = banner
        self._console = console
        self._bus = bus
        self._reopen_first_s = reopen_first_s
        self._backoff = Backoff(reopen_first_s, reopen_max_s)
        self._editor = LineEditor(self._send, self._on_entry, max_line)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._link = SerialLink(
            port,
            baudrate,
            what="console port",
            hint="Check console.port in the profile, that no getty uses it (systemctl mask "
            "serial-getty@...) and that gatewayd may open it (group dialout)",
            on_data=self._on_data,
            on_fault=self._fault,
            on_empty=self._report_dropped_output,
            exclusive=True,
        )
        self._outbox = self._link.outbox
        self._dropped_output = False
        self._reopen: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._stream_task: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        self._outage_logged = False
        self._closed = False
        #: A login code being compared in a worker; input meanwhile is held here.
        self._checking: asyncio.Task[None] | None = None
        self._held = bytearray()
        self._queued: collections.deque[Entry] = collections.deque()
        #: Counts the sessions the port ended (a fault): a verdict is for its own session.
        self._session = 0

    @property
    def connected(self) -> bool:
        """True while the port is open."""
        return self._link.is_open

    # --- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the port and greet; a port that cannot be opened is retried, never fatal."""
        self._loop = asyncio.get_running_loop()
        self._try_open()

    async def close(self) -> None:
        """Stop serving and close the port; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for handle in (self._reopen, self._idle_timer):
            if handle is not None:
                handle.cancel()
        if self._checking is not None:
            # A login code being compared: let it settle (audit) before the state closes.
            with contextlib.suppress(Exception):
                await self._checking
        self._stop_stream(announce=False)
        if self._link.is_open:
            with contextlib.suppress(OSError):
                os.write(self._link.fd, self._outbox.peek(4096) + b"\r\ngatewayd stopping.\r\n")
        self._link.close()

    def _try_open(self) -> None:
        self._reopen = None
        if self._closed:
            return
        try:
            self._open()
        except DeviceError as exc:
            delay = self._backoff.next()
            level = logging.DEBUG if self._outage_logged else logging.ERROR
            LOGGER.log(level, "%s; retrying in %g s", exc, delay)
            self._outage_logged = True
            assert self._loop is not None
            self._reopen = self._loop.call_later(delay, self._try_open)
            return
        self._outage_logged = False
        self._backoff.reset()
        LOGGER.info("technician console on %s (%d baud 8N1)", self.port, self.baudrate)
        self._send_text(f"\n{self.banner}; type `help`\n{self._console.prompt}")

    def _open(self) -> None:
        assert self._loop is not None
        self._link.open(self._loop)
        self._editor.reset()

    def _fault(self, reason: str) -> None:
        """The port failed: end the session, close, and reopen with back-off."""
        LOGGER.error(
            "console port %s failed (%s); the technician session ended, reopening in %g s",
            self.port,
            reason,
            self._reopen_first_s,
        )
        self._outage_logged = True
        self._session += 1
        self._queued.clear()
        self._held.clear()
        self._stop_stream(announce=False)
        self._console.end_session()
        self._link.close()
        if not self._closed and self._loop is not None and self._reopen is None:
            self._backoff.reset()
            self._reopen = self._loop.call_later(self._backoff.next(), self._try_open)

    # --- input ---------------------------------------------------------------------------

    def _on_data(self, data: bytes) -> None:
        if self._stream_task is not None:
            self._stop_stream(announce=True)  # any key ends an events stream
            return
        if self._checking is not None:
            # A code is being compared: typed-ahead input waits (bounded) for the answer.
            self._held += data[: max(0, self._editor.max_line * 2 - len(self._held))]
            return
        self._editor.feed(data)

    def _on_entry(self, entry: Entry) -> None:
        if self._checking is not None:
            self._queued.append(entry)  # typed ahead of a verdict: run after it, in order
            return
        self._take(entry)

    def _take(self, entry: Entry) -> None:
        if isinstance(entry, Interrupt):
            self._console.cancel()
        elif entry.too_long:
            self._send_text(
                f"error line too long (max {self._editor.max_line} characters); ignored\n"
            )
        elif not self._run(entry.text):
            self._editor.secret = self._console.secret_input  # what is typed ahead is no code
            return  # the prompt comes with the verdict
        self._ready_for_input()

    def _ready_for_input(self) -> None:
        if self._stream_task is None and self._link.is_open:
            self._editor.secret = self._console.secret_input
            self._send_text(self._console.prompt)
        self._arm_idle_timer()

    def _run(self, line: str) -> bool:
        """Run one line; False when its answer waits for a code comparison."""
        answer = _answer(lambda: self._console.run(line))
        if isinstance(answer, Stream):
            self._start_stream(answer)
            return True
        if isinstance(answer, Deferred):
            assert self._loop is not None
            self._checking = self._loop.create_task(self._finish_check(answer))
            return False
        self._send_reply(answer)
        return True

    def _send_reply(self, answer: Reply) -> None:
        if answer.lines:
            self._send_text("\n".join(answer.lines) + "\n")

    async def _finish_check(self, deferred: Deferred) -> None:
        """The comparison runs in a worker; its reply, the prompt, then the held input."""
        session = self._session
        ok = await compare_off_loop(deferred.compare)
        # Settled (counted, audited) whatever happened since; a failure is answered too.
        answer = _answer(lambda: deferred.finish(ok))
        assert isinstance(answer, Reply)
        self._checking = None
        if session != self._session or self._closed:
            self._console.end_session()  # the port was lost meanwhile: nobody stays logged in
            self._queued.clear()
            self._held.clear()
            return
        self._send_reply(answer)
        self._ready_for_input()
        while self._queued and self._checking is None:
            self._take(self._queued.popleft())
        if self._checking is None and self._held:
            held, self._held = bytes(self._held), bytearray()
            self._on_data(held)

    # --- events stream ---------------------------------------------------------------------

    def _start_stream(self, stream: Stream) -> None:
        assert self._loop is not None
        self._send_text("events (press any key to stop):\n")
        self._subscription = self._bus.subscribe()
        self._stream_task = self._loop.create_task(self._pump(self._subscription, stream.as_json))

    async def _pump(self, subscription: Subscription, as_json: bool) -> None:
        while True:
            event = await subscription.queue.get()
            text = json.dumps(event, sort_keys=True) if as_json else format_event(event)
            self._send_text(text + "\n")
            if subscription.closed and subscription.queue.empty():
                # The bus dropped us for falling behind (a slow terminal): say so and stop.
                self._send_text("events stopped: the terminal fell behind\n")
                self._stream_task = None
                self._bus.unsubscribe(subscription)
                self._subscription = None
                self._send_text(self._console.prompt)
                return

    def _stop_stream(self, *, announce: bool) -> None:
        task, self._stream_task = self._stream_task, None
        if task is not None:
            task.cancel()
        if self._subscription is not None:
            self._bus.unsubscribe(self._subscription)
            self._subscription = None
            if announce:
                self._send_text(f"events stopped\n{self._console.prompt}")

    # --- idle logout ----------------------------------------------------------------------

    def _arm_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        remaining = self._console.idle_remaining()
        if remaining is not None and self._loop is not None and not self._closed:
            self._idle_timer = self._loop.call_later(remaining, self._on_idle_timer)

    def _on_idle_timer(self) -> None:
        self._idle_timer = None
        notice = self._console.expire_idle()
        if notice is not None and self._link.is_open:
            if self._stream_task is not None:
                self._send_text(f"{notice}\n")  # the stream goes on: events need no login
            else:
                self._editor.secret = self._console.secret_input
                typed = "" if self._editor.secret else self._editor.text
                self._send_text(f"\n{notice}\n{self._console.prompt}{typed}")
        self._arm_idle_timer()

    # --- output ---------------------------------------------------------------------------

    def _send_text(self, text: str) -> None:
        self._send(text.replace("\n", "\r\n").encode("utf-8", errors="replace"))

    def _send(self, data: bytes) -> None:
        """Queue ``data`` and write what the port takes now; never blocks the loop."""
        if not self._link.is_open or not data:
            return
        if len(self._outbox) + len(data) > MAX_OUTBOX_BYTES:
            self._dropped_output = True  # the terminal does not read: drop, say so later
            return
        try:
            self._outbox.write(data)
        except OSError as exc:
            self._fault(f"writing to the port failed ({exc})")

    def _report_dropped_output(self) -> None:
        if self._dropped_output:  # the terminal caught up: say that some output was lost
            self._dropped_output = False
            self._outbox.extend(b"\r\n[output dropped: the terminal did not keep up]\r\n")
