"""Output for a non-blocking file descriptor on the asyncio loop (serial ports).

pyserial's ``write()`` spins on EAGAIN when the port is non-blocking, so the
modem driver and the serial console queue their bytes here instead: what the
port takes is written at once, the rest when the loop says the fd is writable.
The loop never blocks and never polls.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable


class OutputQueue:
    """Bytes waiting for a non-blocking fd; ``on_error`` hears of a failed deferred write.

    ``on_empty`` runs each time the queue drains, and may :meth:`extend` it (a late notice).
    Callers set their own limit on :func:`len` (a modem that stops taking data is a fault,
    a terminal that stops reading just loses output).
    """

    def __init__(
        self,
        on_error: Callable[[OSError], None],
        on_empty: Callable[[], None] | None = None,
    ) -> None:
        self._on_error = on_error
        self._on_empty = on_empty
        self._data = bytearray()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd = -1

    def __len__(self) -> int:
        return len(self._data)

    def attach(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        """Start writing to ``fd`` (a freshly opened port), with an empty queue."""
        self._data.clear()
        self._loop, self._fd = loop, fd

    def detach(self) -> None:
        """Stop writing (the port is closing): unregister from the loop, drop the queue."""
        if self._loop is not None and self._fd >= 0:
            self._loop.remove_writer(self._fd)
        self._data.clear()
        self._fd = -1

    def clear(self) -> None:
        """Drop what is queued (barge-in)."""
        self._data.clear()

    def peek(self, size: int) -> bytes:
        """The first ``size`` queued bytes, without taking them."""
        return bytes(self._data[:size])

    def extend(self, data: bytes) -> None:
        """Queue ``data`` without writing now (from ``on_empty``)."""
        self._data += data

    def write(self, data: bytes) -> None:
        """Queue ``data`` and write what the fd takes now; raises OSError if the write fails."""
        self._data += data
        self.drain()

    def drain(self) -> None:
        """Write as much as the fd takes; wait for it to be writable for the rest."""
        if self._loop is None or self._fd < 0:
            return
        try:
            written = os.write(self._fd, self._data) if self._data else 0
        except BlockingIOError:
            written = 0
        del self._data[:written]
        if not self._data and self._on_empty is not None:
            self._on_empty()
        if self._data:
            self._loop.add_writer(self._fd, self._on_writable)
        else:
            self._loop.remove_writer(self._fd)

    def _on_writable(self) -> None:
        try:
            self.drain()
        except OSError as error:
            self._on_error(error)
