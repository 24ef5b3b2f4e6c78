"""GPIO backend on RPi.GPIO (or its drop-in rpi-lgpio on a Pi 5), BCM pin numbers.

Debounce: RPi.GPIO's ``bouncetime`` only mutes edges for a while after the
last reported one, so it can swallow the final edge of a bounce and leave the
reported level wrong. This backend uses ``bouncetime`` to cut the callback
load, and reports from a settle timer instead: every edge (re)arms it, and when
it fires ``debounce_ms`` later the level is *re-read* and reported if it changed.
"""

from __future__ import annotations

import logging
import threading
import time
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

#: What to tell the technician for each RPi.GPIO failure we know (message fragment -> advice).
_KNOWN_FAILURES: tuple[tuple[str, str], ...] = (
    (
        "Cannot determine SOC peripheral base address",
        'RPi.GPIO cannot drive this board (a Raspberry Pi 5?): set gpio_backend = "gpiod" '
        "in the hardware profile, or replace RPi.GPIO with rpi-lgpio",
    ),
    (
        "only be run on a Raspberry Pi",
        'RPi.GPIO only runs on a Raspberry Pi: on another board set gpio_backend = "gpiod", '
        'or gpio_backend = "fake" to run without hardware',
    ),
    (
        "Failed to add edge detection",
        "RPi.GPIO cannot watch edges on this kernel (6.6 and later, raspberrypi/linux#6037): "
        'set gpio_backend = "gpiod" in the hardware profile, or replace RPi.GPIO with rpi-lgpio',
    ),
)


def explain_failure(exc: BaseException) -> str:
    """The message a technician sees when RPi.GPIO refuses to work here (``exc`` is its error)."""
    text = str(exc)
    for fragment, advice in _KNOWN_FAILURES:
        if fragment in text:
            return f"GPIO backend 'rpi': {advice} (RPi.GPIO said: {text})"
    return (
        f"GPIO backend 'rpi': RPi.GPIO failed ({text}); "
        'try gpio_backend = "gpiod" in the hardware profile'
    )


def _import_rpi_gpio() -> Any:
    try:
        import RPi.GPIO as gpio_module
    except ImportError as exc:
        raise BackendUnavailableError(
            "GPIO backend 'rpi': RPi.GPIO is not installed; on a Raspberry Pi run "
            f"{install_hint('RPi.GPIO>=0.7', 'rpi', 'python3-rpi.gpio')} (rpi-lgpio on a "
            'Pi 5), on other boards set gpio_backend = "gpiod"'
        ) from exc
    except RuntimeError as exc:  # raised at import time off a Pi
        raise BackendUnavailableError(explain_failure(exc)) from exc
    return gpio_module


class RpiGpioBackend(GpioBackend):
    """RPi.GPIO in BCM numbering; edge callbacks run on a background thread."""

    name = "rpi"
    edge_thread = (
        "a background thread (the backend's settle timer, fed by RPi.GPIO's event thread); "
        "hand edges to the loop with loop.call_soon_threadsafe"
    )

    def __init__(self) -> None:
        super().__init__()
        self._gpio = _import_rpi_gpio()
        self._gpio.setwarnings(False)  # a previous run that died leaves "already in use" noise
        self._call(self._gpio.setmode, self._gpio.BCM)
        self._lock = threading.RLock()
        self._callbacks: dict[int, EdgeCallback] = {}
        self._debounce_s: dict[int, float] = {}
        self._reported: dict[int, bool] = {}
        self._timers: dict[int, threading.Timer] = {}

    def _call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Call RPi.GPIO, turning its RuntimeErrors into errors that say what to do."""
        try:
            return function(*args, **kwargs)
        except RuntimeError as exc:
            if any(fragment in str(exc) for fragment, _ in _KNOWN_FAILURES):
                raise BackendUnavailableError(explain_failure(exc)) from exc
            raise GpioError(f"GPIO backend 'rpi': {exc}") from exc

    def _setup_input(
        self, pin: int, pull: Pull, debounce_ms: float, callback: EdgeCallback | None
    ) -> None:
        pud = {"up": self._gpio.PUD_UP, "down": self._gpio.PUD_DOWN, "off": self._gpio.PUD_OFF}
        self._call(self._gpio.setup, pin, self._gpio.IN, pull_up_down=pud[pull])
        if callback is None:
            return
        with self._lock:
            self._callbacks[pin] = callback
            self._debounce_s[pin] = debounce_ms / 1000.0
            self._reported[pin] = bool(self._gpio.input(pin))
        options: dict[str, int] = {}
        if debounce_ms >= 1:  # RPi.GPIO refuses a bouncetime of 0
            options["bouncetime"] = int(debounce_ms)
        self._call(
            self._gpio.add_event_detect, pin, self._gpio.BOTH, callback=self._on_edge, **options
        )

    def _on_edge(self, pin: int) -> None:
        """RPi.GPIO's thread: (re)start the settle timer, or report at once without debounce."""
        with self._lock:
            if pin not in self._callbacks:
                return  # an edge racing close()
            delay = self._debounce_s[pin]
            if delay <= 0:
                self._report_if_changed(pin)
                return
            old = self._timers.pop(pin, None)
            if old is not None:
                old.cancel()
            timer = threading.Timer(delay, self._settled, args=(pin,))
            timer.daemon = True
            self._timers[pin] = timer
            timer.start()

    def _settled(self, pin: int) -> None:
        with self._lock:
            self._timers.pop(pin, None)
            if pin in self._callbacks:
                self._report_if_changed(pin)

    def _report_if_changed(self, pin: int) -> None:
        # Re-read: the edge that called us may be stale and the last one may never come.
        level = bool(self._gpio.input(pin))
        if level == self._reported[pin]:
            return
        self._reported[pin] = level
        self._callbacks[pin](pin, level, time.monotonic_ns())

    def _setup_output(self, pin: int, initial: bool) -> None:
        initial_level = self._gpio.HIGH if initial else self._gpio.LOW
        self._call(self._gpio.setup, pin, self._gpio.OUT, initial=initial_level)

    def _read(self, pin: int) -> bool:
        return bool(self._call(self._gpio.input, pin))

    def _write(self, pin: int, level: bool) -> None:
        self._call(self._gpio.output, pin, self._gpio.HIGH if level else self._gpio.LOW)

    def _close(self) -> None:
        with self._lock:
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
            watched = list(self._callbacks)
            self._callbacks.clear()
        for pin in watched:
            self._gpio.remove_event_detect(pin)
        inputs = list(self._inputs)
        # Outputs stay driven at their idle level: cleanup() would float them, and a
        # floating RM input of the SLIC is not a state to leave a phone line in.
        if inputs:
            self._gpio.cleanup(inputs)
