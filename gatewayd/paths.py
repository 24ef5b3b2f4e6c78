"""Where gatewayd finds its profiles, state, sockets and pepper (DESIGN.md §6).

Each ``resolve_*`` function applies one documented order (command-line option,
then the systemd variable, then the profile or a fixed default), so the CLI,
the daemon and ``selftest`` agree on every path.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # profile.py imports this module: avoid the import cycle at run time
    from gatewayd.profile import Profile

LOGGER = logging.getLogger(__name__)

#: Overrides the shipped profiles directory (a packaged install, or tests).
PROFILES_DIR_ENV = "GATEWAYD_PROFILES_DIR"
#: Name of the pepper credential under ``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=``).
PEPPER_CREDENTIAL = "gatewayd-pepper"
#: Runtime directory when neither the option nor systemd nor XDG names one.
DEFAULT_RUNTIME_DIR = Path("/run/gatewayd")
#: Where ``gatewayd provision`` writes the box's profile and pepper.
DEFAULT_ETC_DIR = Path("/etc/gatewayd")
#: The provisioned profile's name in :data:`DEFAULT_ETC_DIR`.
PROFILE_FILE = "profile.toml"
#: The daemon's state file in the state directory.
STATE_FILE = "gatewayd.json"
#: Sockets in the runtime directory: the console (always), the sim line (sim profile), the
#: fake handset (``gpio_backend = "fake"``).
CTL_SOCKET = "ctl.sock"
SIM_SOCKET = "sim.sock"
GPIO_SOCKET = "gpio.sock"


def shipped_profiles_dir() -> Path:
    """Shipped profiles: ``$GATEWAYD_PROFILES_DIR``, else ``hw_profiles/`` next to the package."""
    override = os.environ.get(PROFILES_DIR_ENV)
    if override:
        return Path(override).expanduser()
    return Path(__file__).resolve().parent.parent / "hw_profiles"


def _first_entry(variable: str) -> str | None:
    """First entry of a colon-separated systemd directory variable, or None when unset or empty."""
    # systemd joins several StateDirectory=/RuntimeDirectory= entries with ':'; ours is the first.
    value = os.environ.get(variable, "")
    first = value.split(":", 1)[0]
    return first or None


def resolve_state_dir(option: str | None, profile: Profile) -> Path:
    """State dir: the option, else ``$STATE_DIRECTORY``, else the profile's ``[storage]``."""
    if option:
        chosen, origin = Path(option).expanduser(), "--state-dir"
    elif (from_systemd := _first_entry("STATE_DIRECTORY")) is not None:
        chosen, origin = Path(from_systemd), "$STATE_DIRECTORY"
    else:
        chosen, origin = Path(profile.storage.state_dir).expanduser(), "storage.state_dir"
    # Absolute so that a later chdir (or a relative --state-dir) cannot move the state file.
    chosen = chosen.absolute()
    LOGGER.debug("state dir %s (from %s)", chosen, origin)
    return chosen


def resolve_runtime_dir(option: str | None) -> Path:
    """Socket dir: option, ``$RUNTIME_DIRECTORY``, ``$XDG_RUNTIME_DIR/gatewayd``, /run/gatewayd."""
    if option:
        chosen, origin = Path(option).expanduser(), "--runtime-dir"
    elif (from_systemd := _first_entry("RUNTIME_DIRECTORY")) is not None:
        chosen, origin = Path(from_systemd), "$RUNTIME_DIRECTORY"
    elif xdg := os.environ.get("XDG_RUNTIME_DIR"):
        chosen, origin = Path(xdg) / "gatewayd", "$XDG_RUNTIME_DIR"
    else:
        chosen, origin = DEFAULT_RUNTIME_DIR, "default"
    chosen = chosen.absolute()
    LOGGER.debug("runtime dir %s (from %s)", chosen, origin)
    return chosen


def resolve_pepper_path(profile: Profile, state_dir: Path) -> Path:
    """Pepper: ``$CREDENTIALS_DIRECTORY/gatewayd-pepper`` if present, else ``storage.pepper_file``.

    A relative ``pepper_file`` is taken relative to ``state_dir``.
    """
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials:
        credential = Path(credentials) / PEPPER_CREDENTIAL
        if credential.is_file():
            LOGGER.debug("pepper from systemd credential %s", credential)
            return credential
    configured = Path(profile.storage.pepper_file).expanduser()
    chosen = configured if configured.is_absolute() else state_dir / configured
    LOGGER.debug("pepper file %s (from storage.pepper_file)", chosen)
    return chosen


class NotARegularFile(OSError):
    """A path that must be a regular file is a symlink, a FIFO, a device, or too large."""


def read_regular_file(path: Path, max_bytes: int) -> bytes:
    """Read a regular file of at most ``max_bytes``, never following a symlink, never blocking.

    FileNotFoundError if absent; :class:`NotARegularFile` (saying what it is) for a
    symlink (dangling or not), a FIFO, a device, a directory or a file too large;
    OSError otherwise. A FIFO or ``/dev/zero`` would hang or fill memory.
    """
    if path.is_symlink():
        target = os.readlink(path)
        dangling = "" if path.exists() else ", which does not exist"
        raise NotARegularFile(f"is a symlink to {target}{dangling}; put the real file there")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except IsADirectoryError:
        raise NotARegularFile("is a directory, not a file") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "not a regular file"
            raise NotARegularFile(f"is {kind}; put a regular file there")
        if info.st_size > max_bytes:
            raise NotARegularFile(f"is {info.st_size} bytes, more than the {max_bytes} expected")
        chunks = []
        budget = max_bytes + 1
        while budget > 0 and (chunk := os.read(fd, min(budget, 1 << 20))):
            chunks.append(chunk)
            budget -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:
            raise NotARegularFile(f"grew past the {max_bytes} bytes expected while read")
        return data
    finally:
        os.close(fd)
