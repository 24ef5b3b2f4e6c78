"""The GPIO backend interface every backend (``rpi``, ``gpiod``, ``fake``) implements.

Pins are numbered as the backend's hardware numbers them: BCM numbers for
``rpi``, line offsets on the chip for ``gpiod``, any integer for ``fake``.
Levels are electrical: ``True`` is high. Edge timestamps are nanoseconds on the
monotonic clock (``time.monotonic_ns()``; the fake uses its own virtual clock).
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from types import TracebackType
from typing import ClassVar, Literal, Self

from gatewayd.errors import DeviceError, ProfileError

LOGGER = logging.getLogger(__name__)

Pull = Literal["up", "down", "off"]
PULLS: frozenset[str] = frozenset({"up", "down", "off"})

#: ``callback(pin, level, timestamp_ns)``: the debounced level of ``pin`` changed.
EdgeCallback = Callable[[int, bool, int], None]


class GpioError(DeviceError):
    """A GPIO line cannot be used as asked (busy, not set up, wrong direction, closed)."""


class UnknownBackendError(ProfileError):
    """The profile names a GPIO backend gatewayd does not have; the message lists the known ones."""


class BackendUnavailableError(DeviceError):
    """The named GPIO backend cannot run on this machine; the message says what to do instead."""


class GpioBackend(ABC):
    """Base class of GPIO backends: the public methods check, the ``_`` methods do the I/O.

    A backend must override ``_setup_input``, ``_setup_output``, ``_read``,
    ``_write`` and ``_close``; it may override ``attach`` (backends that deliver
    edges on an asyncio loop). It sets ``edge_thread`` to say where callbacks run.

    Contract for edge callbacks: ``callback(pin, level, timestamp_ns)`` is called
    once per change of the *debounced* level (a line that has been stable for
    ``debounce_ms``), never twice in a row with the same level; the timestamp is
    when the backend saw the change, so it lags the wire by up to ``debounce_ms``
    on both edges alike and durations between edges are kept.
    """

    #: Registry name of the backend (``open_backend(name)``).
    name: ClassVar[str] = ""
    #: Where edge callbacks run, for the driver that must hand them to the loop.
    edge_thread: ClassVar[str] = ""

    def __init__(self) -> None:
        self._inputs: dict[int, EdgeCallback | None] = {}
        #: Output pin -> its idle level (the ``initial`` it was set up with), restored on close.
        self._outputs: dict[int, bool] = {}
        self._closed = False

    # --- public API: checks, then the backend's implementation ----------------

    def setup_input(
        self,
        pin: int,
        *,
        pull: Pull = "off",
        debounce_ms: float = 0.0,
        callback: EdgeCallback | None = None,
    ) -> None:
        """Make ``pin`` an input; with ``callback``, report its debounced level changes."""
        self._check_new_pin(pin)
        if pull not in PULLS:
            raise GpioError(f"GPIO {pin}: pull must be one of up, down, off (got {pull!r})")
        if debounce_ms < 0:
            raise GpioError(f"GPIO {pin}: debounce_ms must be >= 0 (got {debounce_ms})")
        self._setup_input(pin, pull, float(debounce_ms), callback)
        self._inputs[pin] = callback

    def setup_output(self, pin: int, initial: bool) -> None:
        """Make ``pin`` an output driven at ``initial``, which is also its level after close."""
        self._check_new_pin(pin)
        self._setup_output(pin, bool(initial))
        self._outputs[pin] = bool(initial)

    def read(self, pin: int) -> bool:
        """The level of a set-up pin now (inputs: not debounced; outputs: the driven level)."""
        self._check_open()
        if pin not in self._inputs and pin not in self._outputs:
            raise GpioError(f"GPIO {pin} was not set up; call setup_input or setup_output first")
        return self._read(pin)

    def write(self, pin: int, level: bool) -> None:
        """Drive output ``pin`` to ``level``."""
        self._check_open()
        if pin not in self._outputs:
            what = "an input" if pin in self._inputs else "not set up"
            raise GpioError(f"GPIO {pin} is {what}; only pins set up as outputs can be written")
        self._write(pin, bool(level))

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:  # noqa: B027 - optional hook
        """Give the backend the daemon's loop; only backends that deliver edges on it use it."""

    def close(self) -> None:
        """Drive outputs back to their idle level and release every line; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for pin, idle in self._outputs.items():
            try:
                self._write(pin, idle)
            except Exception:  # shutdown must release the other lines anyway
                LOGGER.exception("GPIO %d: could not restore its idle level on close", pin)
        try:
            self._close()
        finally:
            self._inputs.clear()
            self._outputs.clear()

    @property
    def closed(self) -> bool:
        """Whether ``close()`` has run."""
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- what a backend implements ---------------------------------------------

    @abstractmethod
    def _setup_input(
        self, pin: int, pull: Pull, debounce_ms: float, callback: EdgeCallback | None
    ) -> None:
        """Request ``pin`` as an input (checked: new pin, valid pull, debounce >= 0)."""

    @abstractmethod
    def _setup_output(self, pin: int, initial: bool) -> None:
        """Request ``pin`` as an output driven at ``initial`` (checked: new pin)."""

    @abstractmethod
    def _read(self, pin: int) -> bool:
        """Read a pin that was set up."""

    @abstractmethod
    def _write(self, pin: int, level: bool) -> None:
        """Drive a pin that was set up as an output."""

    @abstractmethod
    def _close(self) -> None:
        """Release every line (outputs were already driven to their idle level); called once."""

    # --- helpers -----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise GpioError(f"the {self.name or type(self).__name__} GPIO backend is closed")

    def _check_new_pin(self, pin: int) -> None:
        self._check_open()
        if pin in self._inputs or pin in self._outputs:
            raise GpioError(f"GPIO {pin} is already set up; each pin is set up once")
