"""The audit log in its own append-only file, capped, apart from the secrets (flash wear).

Each record is one JSON line appended with ``O_APPEND`` and fsynced: a change
of the secrets writes a few hundred bytes instead of rewriting a state file
that holds a thousand audit records. When the file holds the cap
(:data:`~gatewayd.voicemail.repository.AUDIT_MAX`), it is renamed to ``.1``
(replacing the previous one) and a new file starts, so the two hold at most
twice the cap and :meth:`AuditLog.records` returns the newest ``AUDIT_MAX``.

The secrets file stays the authority: the store writes a change there first
and audits it after. A power cut during an append can leave a torn last line;
it is cut off when the log is opened, with a warning (that record is lost, the
change it described is not).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from gatewayd.voicemail import repository
from gatewayd.voicemail.atomicdb import Fault, fsync_dir, write_atomically

LOGGER = logging.getLogger(__name__)


def audit_path(state_path: Path) -> Path:
    """The audit log next to a state file: ``gatewayd.json`` -> ``gatewayd.audit.jsonl``."""
    return state_path.with_name(f"{state_path.stem}.audit.jsonl")


def _line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"


class AuditLog:
    """Append-only JSON-lines audit records; ``fault`` is called before each write step."""

    def __init__(self, path: Path, *, fault: Fault | None = None) -> None:
        self.path = path
        self.rotated = path.with_name(path.name + ".1")
        self._fault = fault
        self._count = self._repair()

    def _step(self, name: str) -> None:
        if self._fault is not None:
            self._fault(name)

    def _repair(self) -> int:
        """Cut a torn last line off; the number of records in the current file."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return 0
        if raw and not raw.endswith(b"\n"):
            keep = raw.rfind(b"\n") + 1
            LOGGER.warning(
                "%s: cutting off a torn last audit record (a write was interrupted)", self.path
            )
            with self.path.open("r+b") as log:
                log.truncate(keep)
                os.fsync(log.fileno())
            raw = raw[:keep]
        return raw.count(b"\n")

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append ``records`` durably (one write, one fsync); rotate first at the cap."""
        if not records:
            return
        if self._count >= repository.AUDIT_MAX:
            self._step("audit_rotate")
            os.replace(self.path, self.rotated)
            self._count = 0
        created = not self.path.exists()
        self._step("audit_write")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            view = memoryview(b"".join(_line(record) for record in records))
            while view:
                view = view[os.write(fd, view) :]
            self._step("audit_fsync")
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(self.path.parent)  # the new name (and a rotation) survive a power cut
        self._count += len(records)

    def replace(self, records: list[dict[str, Any]]) -> None:
        """Make the log hold exactly ``records``, atomically (the schema 1 migration)."""
        write_atomically(self.path, b"".join(_line(record) for record in records), self._fault)
        self.rotated.unlink(missing_ok=True)
        self._count = len(records)

    def records(self) -> list[dict[str, Any]]:
        """The newest ``AUDIT_MAX`` records, oldest first; lines that do not parse are skipped."""
        found: list[dict[str, Any]] = []
        for path in (self.rotated, self.path):
            try:
                lines = path.read_bytes().splitlines()
            except FileNotFoundError:
                continue
            for number, line in enumerate(lines, 1):
                try:
                    record = json.loads(line)
                except ValueError:
                    record = None
                if isinstance(record, dict):
                    found.append(record)
                else:
                    LOGGER.warning(
                        "%s:%d: skipping an audit line that does not parse", path, number
                    )
        return found[-repository.AUDIT_MAX :]
