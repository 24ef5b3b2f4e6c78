"""GPIO backend on libgpiod v2 (the ``gpiod`` package from PyPI), for any Linux board.

One line request per pin, on one chip. Debounce is the kernel's (the line's
``debounce_period``), which reports an edge once the line has been stable for
that long. Edge events are read from each request's fd on the daemon's asyncio
loop (``loop.add_reader``), so callbacks run on the loop thread: no polling, no
extra thread. ``gpiod`` is imported when the backend is opened, not before.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from datetime import timedelta
from typing import Any

from gatewayd.gpio.base import (
    BackendUnavailableError,
    EdgeCallback,
    GpioBackend,
    GpioError,
    Pull,
)
from gatewayd.install import install_hint

LOGGER = logging.getLogger(__name__)

DEFAULT_CHIP = "/dev/gpiochip0"
CONSUMER = "gatewayd"


def _import_gpiod() -> Any:
    try:
        import gpiod
    except ImportError as exc:
        raise BackendUnavailableError(
            "GPIO backend 'gpiod': the gpiod module (libgpiod v2) is not installed; "
            f"run {install_hint('gpiod>=2.1', 'gpiod', None)}"
        ) from exc
    if not hasattr(gpiod, "request_lines"):
        raise BackendUnavailableError(
            "GPIO backend 'gpiod': the installed gpiod module is the old libgpiod v1 API "
            "(Debian's python3-libgpiod); gatewayd needs v2: run "
            f"{install_hint('gpiod>=2.1', 'gpiod', None)}"
        )
    return gpiod


class GpiodBackend(GpioBackend):
    """libgpiod v2 on one chip (``/dev/gpiochipN``); pins are line offsets on that chip.

    Edge callbacks run on the asyncio loop passed as ``loop`` or to ``attach()``.
    """

    name = "gpiod"
    edge_thread = "the asyncio loop given as loop= or to attach(loop) (add_reader on the line fd)"

    def __init__(
        self,
        chip: str = DEFAULT_CHIP,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        consumer: str = CONSUMER,
    ) -> None:
        super().__init__()
        self._gpiod = _import_gpiod()
        self._chip_path = chip
        self._consumer = consumer
        self._loop = loop
        self._requests: dict[int, Any] = {}
        self._callbacks: dict[int, EdgeCallback] = {}
        self._reported: dict[int, bool] = {}
        self._watched_fds: dict[int, int] = {}  # pin -> fd registered on the loop
        try:
            self._chip = self._gpiod.Chip(chip)
        except FileNotFoundError as exc:
            raise BackendUnavailableError(
                f"GPIO backend 'gpiod': GPIO chip {chip} does not exist; list the chips with "
                "`gpiodetect` (or ls /dev/gpiochip*) and name the right one in the hardware "
                "profile (the Pi 5 header is gpiochip4 or gpiochip0 depending on the kernel)"
            ) from exc
        except PermissionError as exc:
            raise BackendUnavailableError(
                f"GPIO backend 'gpiod': no permission to open {chip}; run gatewayd as a member "
                "of the group that owns it (usually 'gpio')"
            ) from exc
        except OSError as exc:
            raise BackendUnavailableError(
                f"GPIO backend 'gpiod': {chip} is not a usable GPIO chip ({exc.strerror}); "
                "name a /dev/gpiochipN device in the hardware profile"
            ) from exc

    # --- loop -----------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver edges on ``loop`` from now on, including for inputs already set up."""
        self._check_open()
        for pin in list(self._watched_fds):
            self._unwatch(pin)
        self._loop = loop
        for pin in self._callbacks:
            self._watch(pin)

    def _watch(self, pin: int) -> None:
        loop = self._loop
        if loop is None:
            try:
                loop = self._loop = asyncio.get_running_loop()
            except RuntimeError:
                # Events wait in the kernel's buffer until attach(loop) is called.
                LOGGER.debug("GPIO %d on %s: edges wait for attach()", pin, self._chip_path)
                return
        fd = self._requests[pin].fd
        loop.add_reader(fd, self._on_readable, pin)
        self._watched_fds[pin] = fd

    def _unwatch(self, pin: int) -> None:
        fd = self._watched_fds.pop(pin, None)
        if fd is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(fd)

    def _on_readable(self, pin: int) -> None:
        """Loop thread: read the kernel's edge events for ``pin`` and report level changes."""
        try:
            events = self._requests[pin].read_edge_events()
        except OSError as exc:
            # Stop watching rather than spin on a dead fd; the line driver sees no more edges.
            LOGGER.error("GPIO %d on %s: cannot read edge events (%s)", pin, self._chip_path, exc)
            self._unwatch(pin)
            return
        rising = self._gpiod.EdgeEvent.Type.RISING_EDGE
        for event in events:
            level = event.event_type == rising
            if level == self._reported[pin]:
                continue
            self._reported[pin] = level
            self._callbacks[pin](pin, level, int(event.timestamp_ns))

    # --- GpioBackend --------------------------------------------------------------------

    def _request(self, pin: int, settings: Any) -> Any:
        try:
            return self._chip.request_lines(config={pin: settings}, consumer=self._consumer)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                raise GpioError(
                    f"GPIO line {pin} on {self._chip_path} is busy: another program holds it "
                    "(`gpioinfo` names the consumer); stop it or pick another pin"
                ) from exc
            raise GpioError(
                f"cannot request GPIO line {pin} on {self._chip_path} ({exc}); check the pin "
                "number against `gpioinfo`"
            ) from exc
        except ValueError as exc:  # an offset the chip does not have
            raise GpioError(
                f"GPIO line {pin} does not exist on {self._chip_path} ({exc}); "
                "check the pin number against `gpioinfo`"
            ) from exc

    def _setup_input(
        self, pin: int, pull: Pull, debounce_ms: float, callback: EdgeCallback | None
    ) -> None:
        line = self._gpiod.line
        bias = {"up": line.Bias.PULL_UP, "down": line.Bias.PULL_DOWN, "off": line.Bias.DISABLED}
        settings = self._gpiod.LineSettings(
            direction=line.Direction.INPUT,
            bias=bias[pull],
            edge_detection=line.Edge.BOTH if callback is not None else line.Edge.NONE,
            debounce_period=timedelta(milliseconds=debounce_ms),
        )
        request = self._request(pin, settings)
        self._requests[pin] = request
        if callback is None:
            return
        self._callbacks[pin] = callback
        self._reported[pin] = request.get_value(pin) == line.Value.ACTIVE
        self._watch(pin)

    def _setup_output(self, pin: int, initial: bool) -> None:
        line = self._gpiod.line
        settings = self._gpiod.LineSettings(
            direction=line.Direction.OUTPUT,
            output_value=line.Value.ACTIVE if initial else line.Value.INACTIVE,
        )
        self._requests[pin] = self._request(pin, settings)

    def _read(self, pin: int) -> bool:
        return bool(self._requests[pin].get_value(pin) == self._gpiod.line.Value.ACTIVE)

    def _write(self, pin: int, level: bool) -> None:
        value = self._gpiod.line.Value
        try:
            self._requests[pin].set_value(pin, value.ACTIVE if level else value.INACTIVE)
        except OSError as exc:
            raise GpioError(f"cannot drive GPIO line {pin} on {self._chip_path} ({exc})") from exc

    def _close(self) -> None:
        for pin in list(self._watched_fds):
            self._unwatch(pin)
        self._callbacks.clear()
        for request in self._requests.values():
            request.release()
        self._requests.clear()
        self._chip.close()
