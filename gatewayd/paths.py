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
#: The pepper ``gatewayd provision`` creates in :data:`DEFAULT_ETC_DIR` (the unit's credential).
PROVISIONED_PEPPER = "pepper"
#: The provisioned profile's name in :data:`DEFAULT_ETC_DIR`.
PROFILE_FILE = "profile.toml"
#: The daemon's state file in the state directory.
STATE_FILE = "gatewayd.json"
#: Sockets in the runtime directory: the console (always), the sim line (sim profile), the
#: fake handset (``gpio_backend = "fake"``).
CTL_SOCKET = "ctl.sock"
SIM_SOCKET = "sim.sock"
GPIO_SOCKET = "gpio.sock"


def shipped_dir(name: str) -> Path:
    """A folder gatewayd ships (``audio``, ``hw_profiles``, ``systemd``), as a real directory.

    An installed wheel or Debian package holds it as package data, ``gatewayd/_data/NAME``
    (pyproject.toml maps the repository's top-level folders there); a checkout (editable
    install, or the sources on ``sys.path``) has it at the top of the repository.
    """
    package = _package_dir()
    packaged = package / "_data" / name
    if packaged.is_dir():
        return packaged
    if not package.is_dir():
        # A zipped install: the audio thread and the ALSA checks need real files.
        raise RuntimeError(
            f"gatewayd's {name}/ is inside an archive ({package}): install gatewayd "
            "unpacked (pip install, or the Debian package), not as a zip"
        )
    return package.parent / name


def _package_dir() -> Path:
    """The installed ``gatewayd`` package's folder (not importlib.resources: its imports
    cost half a megabyte at every start, issue 13)."""
    return Path(__file__).resolve().parent


def shipped_profiles_dir() -> Path:
    """Shipped profiles: ``$GATEWAYD_PROFILES_DIR``, else the ``hw_profiles`` gatewayd ships."""
    override = os.environ.get(PROFILES_DIR_ENV)
    if override:
        return Path(override).expanduser()
    return shipped_dir("hw_profiles")


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


def resolve_pepper_path(profile: Profile, state_dir: Path, etc_dir: Path | None = None) -> Path:
    """The box's pepper, the one answer for the daemon, ``selftest`` and ``provision``.

    1. ``$CREDENTIALS_DIRECTORY/gatewayd-pepper`` if present (the unit's ``LoadCredential=``);
    2. on a provisioned box, ``/etc/gatewayd/pepper`` (``etc_dir``) if it exists and the
       profile does not make its own pepper (only the sim profile does): the unit hands
       exactly that file to the daemon, so ``selftest --profile usr5637-modem`` run by hand
       checks the pepper the service will use;
    3. else ``storage.pepper_file``, relative to ``state_dir`` when relative.
    """
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials:
        credential = Path(credentials) / PEPPER_CREDENTIAL
        if credential.is_file():
            LOGGER.debug("pepper from systemd credential %s", credential)
            return credential
    provisioned = ((etc_dir or DEFAULT_ETC_DIR) / PROVISIONED_PEPPER).absolute()
    if not profile.storage.create_pepper and provisioned.is_file():
        LOGGER.debug("pepper %s (the provisioned box's)", provisioned)
        return provisioned
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


# --- finding a running `gatewayd demo` ----------------------------------------------------


def demo_pointer_path() -> Path:
    """The file where a running ``gatewayd demo`` writes its socket directory.

    ``$XDG_RUNTIME_DIR/gatewayd-demo``, else ``gatewayd-demo-UID`` in the temp dir.
    """
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "gatewayd-demo"
    import tempfile  # the demo only: not loaded by the daemon

    return Path(tempfile.gettempdir()) / f"gatewayd-demo-{os.getuid()}"


def running_demo_dir() -> Path | None:
    """The socket directory of this user's running demo, or None.

    The pointer and the directory it names must be this user's: in a shared temp dir
    another user could write a pointer to their own daemon.
    """
    pointer = demo_pointer_path()
    try:
        if pointer.lstat().st_uid != os.getuid():
            return None
        directory = Path(pointer.read_text(encoding="utf-8").strip())
        if not directory.is_absolute() or directory.stat().st_uid != os.getuid():
            return None
    except (OSError, ValueError):
        return None
    return directory if (directory / CTL_SOCKET).exists() else None


def find_runtime_dir(option: str | None) -> Path:
    """The socket dir a client (ctl, phone, sim) talks to.

    As :func:`resolve_runtime_dir`; but when neither the option nor
    ``$RUNTIME_DIRECTORY`` names one and no daemon has its sockets there, a running
    ``gatewayd demo`` of this user is found through :func:`demo_pointer_path`.
    """
    chosen = resolve_runtime_dir(option)
    if option or _first_entry("RUNTIME_DIRECTORY") or (chosen / CTL_SOCKET).exists():
        return chosen
    demo = running_demo_dir()
    if demo is not None:
        LOGGER.debug("runtime dir %s (the running gatewayd demo)", demo)
        return demo
    return chosen


def point_to_demo(runtime_dir: Path) -> Path:
    """Write the demo pointer (atomically) naming ``runtime_dir``; returns the pointer."""
    pointer = demo_pointer_path()
    tmp = pointer.with_name(f".{pointer.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"{runtime_dir}\n".encode())
    finally:
        os.close(fd)
    os.replace(tmp, pointer)
    return pointer


def forget_demo(runtime_dir: Path) -> None:
    """Remove the demo pointer if it still names ``runtime_dir`` (a newer demo keeps its own)."""
    pointer = demo_pointer_path()
    try:
        if pointer.read_text(encoding="utf-8").strip() == str(runtime_dir):
            pointer.unlink()
    except OSError:
        pass
