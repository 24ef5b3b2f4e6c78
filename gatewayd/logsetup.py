"""Logging set-up: journald priority prefixes under systemd, timestamps otherwise.

Under systemd, stderr is a stream to journald and ``$JOURNAL_STREAM`` holds its
``device:inode``; lines then start with ``<N>`` (the syslog priority) and carry
no timestamp (journald adds its own). A child whose stderr went elsewhere
inherits the variable, so the prefixes are used only when stderr *is* that
stream. The level comes from the profile (``[logging] level``) and can be
changed at run time from the console (``loglevel``). Code digits are never
logged: callers log facts (counts, outcomes), never keys.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

#: Raw serial bytes (keys masked) are logged at this level, below DEBUG.
TRACE = 5
logging.addLevelName(TRACE, "TRACE")

#: Level names the profile and the console accept.
LEVELS: dict[str, int] = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

#: syslog priorities for journald's ``<N>`` line prefixes.
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class JournalFormatter(logging.Formatter):
    """``<N>logger: message``: journald reads the priority, adds its own timestamp."""

    def format(self, record: logging.LogRecord) -> str:
        """Every line of the record (tracebacks too) with the record's priority prefix."""
        priority = _PRIORITY.get(record.levelno, 6 if record.levelno > logging.DEBUG else 7)
        text = super().format(record)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines())


def stream_is_journal(stream: TextIO) -> bool:
    """True if ``stream`` is the journald stream named by ``$JOURNAL_STREAM`` (``dev:inode``)."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = expected.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        status = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False  # no file descriptor (a test's StringIO): not the journal
    return (status.st_dev, status.st_ino) == (int(device), int(inode))


def level_number(level: str) -> int:
    """The logging level of a name of :data:`LEVELS`; ValueError names the choices."""
    try:
        return LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}") from None


def setup_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Configure the root logger for the daemon's stderr (or ``stream``), replacing handlers."""
    target = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(target)
    if stream_is_journal(target):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_number(level))


def set_level(level: str) -> None:
    """Change the root logger's level at run time (the console's ``loglevel LEVEL``)."""
    logging.getLogger().setLevel(level_number(level))


def current_level() -> str:
    """The root logger's level as a name of :data:`LEVELS` (or logging's own name)."""
    number = logging.getLogger().getEffectiveLevel()
    for name, value in LEVELS.items():
        if value == number:
            return name
    return logging.getLevelName(number).lower()
