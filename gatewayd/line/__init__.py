"""Line drivers: turn hardware (or the sim socket) into LineEvents.

Drivers are chosen by the profile's ``line.driver`` and imported only when a
profile asks for them (python-can's interface registry pattern), with two
distinct errors: an unknown name, and a driver that cannot load here.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from gatewayd.errors import DeviceError, ProfileError

if TYPE_CHECKING:
    from gatewayd.line.base import EventSink, LineDriver
    from gatewayd.profile import Profile

#: ``line.driver`` name -> (module, class). Each class has
#: ``from_profile(profile, emit, runtime_dir) -> LineDriver``.
DRIVERS: dict[str, tuple[str, str]] = {
    "sim": ("gatewayd.line.sim", "SimLine"),
    "gpio-slic": ("gatewayd.line.gpio_slic", "GpioSlicLine"),
    "v253-modem": ("gatewayd.line.v253", "V253ModemLine"),
}


def open_line(profile: Profile, emit: EventSink, runtime_dir: Path) -> LineDriver:
    """Build the profile's line driver (not started yet)."""
    name = profile.line.driver
    try:
        module_name, class_name = DRIVERS[name]
    except KeyError:
        raise ProfileError(
            f"{profile.source}: line.driver: unknown driver {name!r}; "
            f"known drivers: {', '.join(sorted(DRIVERS))}"
        ) from None
    try:
        module = importlib.import_module(module_name)
        driver_class = getattr(module, class_name)
    except (ImportError, AttributeError) as exc:
        raise DeviceError(
            f"line driver {name!r} cannot load here ({exc}); check the installation "
            "(pip install gatewayd with the extra your board needs)"
        ) from exc
    line: LineDriver = driver_class.from_profile(profile, emit, runtime_dir)
    return line
