"""One serial port on the asyncio loop, for the modem driver and the technician's console.

:class:`SerialLink` opens the port with pyserial (``timeout=0``), reads it from the loop
(``loop.add_reader``: no thread, no polling) and hands each read to ``on_data``; writes go
through an :class:`~gatewayd.outqueue.OutputQueue` (never blocking the loop). A read or a
deferred write that fails calls ``on_fault`` once with the reason; the owner decides what
the loss means and when to reopen, with :class:`Backoff` for the delays.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import serial

from gatewayd.errors import DeviceError
from gatewayd.outqueue import OutputQueue

#: Bytes asked of one read; a read returns what the port holds, up to this.
READ_CHUNK = 4096


class Backoff:
    """Reopen delays: ``first``, doubled after each failed try, up to ``maximum``."""

    def __init__(self, first: float, maximum: float) -> None:
        if not 0 < first <= maximum:
            raise ValueError("back-off needs 0 < first <= maximum")
        self.first = first
        self.maximum = maximum
        self.delay = first

    def reset(self) -> None:
        """The port works again: the next outage starts from ``first``."""
        self.delay = self.first

    def next(self) -> float:
        """The delay before the next try; the one after it is doubled."""
        delay = self.delay
        self.delay = min(delay * 2, self.maximum)
        return delay


class SerialLink:
    """A serial port read and written on the loop; see the module docstring.

    ``what`` and ``hint`` make the open error (``cannot open the {what} {port}: ... {hint}``).
    """

    def __init__(
        self,
        port: str,
        baudrate: int,
        *,
        what: str,
        hint: str,
        on_data: Callable[[bytes], None],
        on_fault: Callable[[str], None],
        on_empty: Callable[[], None] | None = None,
        exclusive: bool = False,
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self._what = what
        self._hint = hint
        self._on_data = on_data
        self._on_fault = on_fault
        self._exclusive = exclusive
        self._serial: Any = None  # serial.Serial while open
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self.outbox = OutputQueue(
            on_error=lambda error: self._fault(f"writing to the port failed ({error})"),
            on_empty=on_empty,
        )

    @property
    def is_open(self) -> bool:
        """True while the port is open."""
        return self._serial is not None

    @property
    def fd(self) -> int:
        """The open port's file descriptor (-1 when closed)."""
        return self._fd

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        """Open the port (8N1) and start reading; raises DeviceError naming port and fix."""
        try:
            port = serial.Serial(
                self.port,
                self.baudrate,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                timeout=0,
                # Writes never go through pyserial (it spins on EAGAIN when non-blocking).
                write_timeout=0,
                exclusive=self._exclusive or None,
            )
        except (serial.SerialException, OSError, ValueError) as error:
            raise DeviceError(
                f"cannot open the {self._what} {self.port}: {error}. {self._hint}"
            ) from error
        self._loop = loop
        self._serial = port
        self._fd = port.fileno()
        self.outbox.attach(loop, self._fd)
        with contextlib.suppress(serial.SerialException, OSError):
            port.reset_input_buffer()  # whatever a previous user left unread
        loop.add_reader(self._fd, self._on_readable)

    def close(self) -> None:
        """Stop reading and writing and close the port; safe when closed."""
        port, self._serial = self._serial, None
        if port is None:
            return
        if self._loop is not None and self._fd >= 0:
            self._loop.remove_reader(self._fd)
        self.outbox.detach()
        self._fd = -1
        with contextlib.suppress(Exception):  # a vanished device may fail to close cleanly
            port.close()

    def write(self, data: bytes) -> None:
        """Queue ``data`` and write what the port takes now; OSError if the write fails."""
        self.outbox.write(data)

    def flush_output(self) -> None:
        """Drop what waits for the port, ours and the OS's (barge-in); OSError on failure."""
        self.outbox.clear()
        port = self._serial
        if port is not None:
            try:
                port.reset_output_buffer()
            except serial.SerialException as error:
                raise OSError(str(error)) from error

    def _fault(self, reason: str) -> None:
        self._on_fault(reason)

    def _on_readable(self) -> None:
        port = self._serial
        if port is None:
            return
        try:
            data: bytes = port.read(READ_CHUNK)
        except (serial.SerialException, OSError) as error:
            self._fault(f"reading the port failed ({error})")
            return
        if data:
            self._on_data(data)
