"""One durable file write for the USP part (its state file, the provisioned TLS identity)."""

from __future__ import annotations

import os
from pathlib import Path

from gatewayd.voicemail.store import fsync_dir


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Temporary file in the same directory, fsync, rename over ``path``, fsync the directory."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)  # O_CREAT's mode is masked by the umask
    os.replace(tmp, path)
    fsync_dir(path.parent)
