"""GPIO backends chosen by name (a profile's ``gpio_backend``), imported only when asked for.

``open_backend("rpi")`` (RPi.GPIO / rpi-lgpio), ``open_backend("gpiod", chip=...,
loop=...)`` (libgpiod v2) and ``open_backend("fake")`` (no hardware) all return a
``GpioBackend``. An unknown name raises ``UnknownBackendError``; a backend that
cannot run on this machine raises ``BackendUnavailableError`` saying what to do.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from typing import Any

from gatewayd.errors import ProfileError
from gatewayd.gpio.base import (
    BackendUnavailableError,
    EdgeCallback,
    GpioBackend,
    GpioError,
    Pull,
    UnknownBackendError,
)

LOGGER = logging.getLogger(__name__)

#: Backend name -> (module, class); modules are imported by ``open_backend`` only.
BACKENDS: dict[str, tuple[str, str]] = {
    "rpi": ("gatewayd.gpio.rpi", "RpiGpioBackend"),
    "gpiod": ("gatewayd.gpio.gpiod_backend", "GpiodBackend"),
    "fake": ("gatewayd.gpio.fake", "FakeGpio"),
}

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "EdgeCallback",
    "GpioBackend",
    "GpioError",
    "Pull",
    "UnknownBackendError",
    "backend_class",
    "open_backend",
]


def backend_class(name: str) -> type[GpioBackend]:
    """The class registered as ``name``, imported now; the backend's library is not loaded yet."""
    try:
        module_name, class_name = BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise UnknownBackendError(
            f"unknown GPIO backend {name!r}: set gpio_backend to one of {known}"
        ) from None
    cls: type[GpioBackend] = getattr(importlib.import_module(module_name), class_name)
    return cls


def open_backend(name: str, **options: Any) -> GpioBackend:
    """Open the GPIO backend registered as ``name`` with its own ``options`` (e.g. gpiod's chip)."""
    cls = backend_class(name)
    try:
        inspect.signature(cls).bind(**options)
    except TypeError:
        accepted = [
            p.name for p in inspect.signature(cls).parameters.values() if p.kind != p.VAR_KEYWORD
        ]
        raise ProfileError(
            f"GPIO backend {name!r} does not take option(s) {', '.join(sorted(options))}; "
            f"it takes: {', '.join(accepted) or 'none'}"
        ) from None
    LOGGER.info("opening GPIO backend %s", name)
    return cls(**options)
