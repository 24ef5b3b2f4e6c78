"""Crash-safe state of the voicemail service on TinyDB (DESIGN.md §2.5).

The file is an :mod:`~gatewayd.voicemail.atomicdb` database: every write
replaces it atomically and durably, and a file that does not parse is never
treated as empty (that would bring back "no code yet" and a zero failure
counter). One TinyDB call is the unit of atomicity, so all of a mailbox (hash,
salt, failure counter, lock, protection) lives in one document.
:meth:`Store.transaction` widens the unit to several calls. The audit log is
its own append-only file (:mod:`~gatewayd.voicemail.auditlog`), written after
the secrets, so a change of the secrets no longer rewrites a thousand audit
records. :class:`Store` is the
:class:`~gatewayd.voicemail.repository.SecretsRepository` of the box.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinydb import Query

from gatewayd.errors import PepperError, StateFileError
from gatewayd.voicemail.atomicdb import AtomicJSONStorage, Fault, fsync_dir, open_atomic_db
from gatewayd.voicemail.auditlog import AuditLog, audit_path
from gatewayd.voicemail.hashing import HASH_BYTES, SALT_BYTES
from gatewayd.voicemail.repository import (
    AUDIT_EVENTS,
    AUDIT_MAX,
    AuditDetail,
    FieldValue,
    Mailbox,
    audit_record,
    check_mailbox_fields,
)

__all__ = [
    "AUDIT_EVENTS",
    "AUDIT_MAX",
    "MAILBOX_ID",
    "SCHEMA_VERSION",
    "TECHNICIAN_ID",
    "AtomicJSONStorage",
    "Mailbox",
    "Store",
    "Technician",
    "fsync_dir",
]

LOGGER = logging.getLogger(__name__)

#: 2: the audit log moved out of the state file into its own append-only file (auditlog.py).
SCHEMA_VERSION = 2
#: Schema 1 files (audit table inside) are migrated when opened.
_MIGRATED_SCHEMAS = frozenset({1})
MAILBOX_ID = "default"
#: Free space kept beyond a second copy of the state file: the temporary file's block
#: rounding and an audit record.
WRITE_MARGIN_BYTES = 64 * 1024
#: The one technician document (``technician`` table); absent in files written before it existed.
TECHNICIAN_ID = "technician"

_FIX_HINT = (
    "gatewayd will not start on a state it cannot read (that would forget the code and "
    "the failure counter). Restore the file from a backup, or move it away and have the "
    "advisor reset the code (the subscriber then creates a new one from the fixed line)."
)


@dataclass(frozen=True)
class Technician:
    """The technician's login: a hash and salt (never a code) and the consecutive failures."""

    code_hash: bytes | None
    salt: bytes | None
    failures: int

    @property
    def code_set(self) -> bool:
        """Whether a technician code was provisioned."""
        return self.code_hash is not None


_EMPTY_TECHNICIAN: dict[str, Any] = {
    "technician": TECHNICIAN_ID,
    "code_hash": None,
    "salt": None,
    "failures": 0,
}


_EMPTY_MAILBOX: dict[str, Any] = {
    "mailbox": MAILBOX_ID,
    "code_hash": None,
    "salt": None,
    "failures": 0,
    "locked": False,
    "protection": False,
}


def _stored(value: FieldValue) -> Any:
    """A field as the JSON file holds it: bytes as hex."""
    return value.hex() if isinstance(value, bytes) else value


def _secret_and_failures(doc: Mapping[str, Any]) -> tuple[bytes | None, bytes | None, int]:
    """A document's hash, salt and failure counter, checked; ValueError/KeyError if malformed."""
    code_hash, salt, failures = doc["code_hash"], doc["salt"], doc["failures"]
    if (code_hash is None) != (salt is None):
        raise ValueError("hash and salt must be set together")
    if not (isinstance(failures, int) and not isinstance(failures, bool) and failures >= 0):
        raise ValueError(f"failures={failures!r}")
    if code_hash is None:
        return None, None, failures
    hash_bytes, salt_bytes = bytes.fromhex(code_hash), bytes.fromhex(salt)
    if len(hash_bytes) != HASH_BYTES or len(salt_bytes) != SALT_BYTES:
        raise ValueError("hash or salt of the wrong length")
    return hash_bytes, salt_bytes, failures


class Store:
    """The voicemail state file (schema, mailbox and technician documents) and its audit log."""

    def __init__(
        self,
        path: Path,
        *,
        wall_clock: Callable[[], float] = time.time,
        fault: Fault | None = None,
    ) -> None:
        self.path = Path(path)
        self._wall_clock = wall_clock
        self._db, self._storage = open_atomic_db(self.path, fault=fault, fix_hint=_FIX_HINT)
        self._mailboxes = self._db.table("mailbox")
        self._audit_log = AuditLog(audit_path(self.path), fault=fault)
        #: Audit records of the open transaction, appended once its secrets are on disk.
        self._pending_audit: list[dict[str, Any]] | None = None
        self._meta = self._db.table("meta")
        # No query cache: another process (``gatewayd provision``) may write this table.
        self._technicians = self._db.table("technician", cache_size=0)
        self._closed = False
        self._init_or_check()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _init_or_check(self) -> None:
        meta = self._meta.all()
        if not meta:
            # Only an absent file is new: `{}` or any JSON without our schema is not ours.
            if self._storage.read() is not None:
                raise StateFileError(
                    f"{self.path}: no schema version in the state file. {_FIX_HINT}"
                )
            with self.transaction():
                self._meta.insert({"schema": SCHEMA_VERSION})
                self._mailboxes.insert(dict(_EMPTY_MAILBOX))
            LOGGER.info("created a new state file %s (schema %d)", self.path, SCHEMA_VERSION)
            return
        schema = meta[0].get("schema")
        if schema != SCHEMA_VERSION and schema not in _MIGRATED_SCHEMAS:
            raise StateFileError(
                f"{self.path}: state schema {schema!r}, this gatewayd reads {SCHEMA_VERSION}. "
                "Install the gatewayd version that wrote it, or restore a backup."
            )
        self.mailbox()  # validates the document now, not at the first call
        if schema == 1:
            self._migrate_from_1()

    def _migrate_from_1(self) -> None:
        """Move the audit table out to the audit log; safe to redo if a crash interrupts it.

        The log is written whole (atomically) from the table first, then the state file
        drops the table and says schema 2: a crash between the two redoes the first step.
        """
        records = [dict(r) for r in sorted(self._db.table("audit").all(), key=lambda r: r.doc_id)]
        self._audit_log.replace(records)
        with self._storage.batch():
            self._db.drop_table("audit")
            self._meta.update({"schema": SCHEMA_VERSION})
        LOGGER.info(
            "%s: schema 1 -> %d, %d audit records moved to %s",
            self.path,
            SCHEMA_VERSION,
            len(records),
            self._audit_log.path,
        )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Secrets written inside land in the file at once, or not at all; then the audit.

        The audit records of the transaction are appended to the audit log once the
        secrets are on disk: a crash in between loses the record, never the change.
        """
        if self._pending_audit is not None:  # nested: the outer transaction writes
            with self._storage.batch():
                yield
            return
        self._pending_audit = []
        try:
            with self._storage.batch():
                yield
            pending = self._pending_audit
        finally:
            self._pending_audit = None
        self._append_audit(pending)

    def _append_audit(self, records: list[dict[str, Any]]) -> None:
        try:
            self._audit_log.append(records)
        except OSError as exc:
            # The change is already saved; the service goes on without its audit record.
            LOGGER.error(
                "%s: could not append %d audit record(s) (%s); the change itself is saved. "
                "Check the state directory's disk (space, errors).",
                self._audit_log.path,
                len(records),
                exc,
            )

    def mailbox(self) -> Mailbox:
        """Read the mailbox document; a missing or malformed one fails closed."""
        docs = self._mailboxes.search(Query().mailbox == MAILBOX_ID)
        if len(docs) != 1:
            raise StateFileError(
                f"{self.path}: expected one mailbox document, found {len(docs)}. " + _FIX_HINT
            )
        doc = docs[0]
        try:
            code_hash, salt, failures = _secret_and_failures(doc)
            locked, protection = doc["locked"], doc["protection"]
            if not (isinstance(locked, bool) and isinstance(protection, bool)):
                raise ValueError("locked/protection must be booleans")
            kdf = doc.get("kdf")  # absent in files written before issue 13
            if not (kdf is None or isinstance(kdf, str)):
                raise ValueError(f"kdf={kdf!r}")
            return Mailbox(code_hash, salt, failures, locked, protection, kdf)
        except (KeyError, TypeError, ValueError) as exc:
            raise StateFileError(
                f"{self.path}: malformed mailbox document ({exc}). {_FIX_HINT}"
            ) from None

    def check_readable(self) -> None:
        """Read and validate the file itself (not TinyDB's caches): for health checks."""
        self._storage.read()
        self.mailbox()

    def check_pepper(self, fingerprint: str, pepper_path: Path) -> None:
        """Refuse a pepper other than the state's (PepperError); record it on first use.

        With another pepper every right code would count as a failure and the
        subscriber would lock themself out.
        """
        meta = self._meta.all()
        stored = meta[0].get("pepper") if meta else None
        if stored is None:
            self._meta.update({"pepper": fingerprint})
            LOGGER.info("%s: recorded the pepper's fingerprint", self.path)
        elif stored != fingerprint:
            raise PepperError(
                f"{pepper_path}: not the pepper this state was made with ({self.path}); with it "
                "every right code would count as a failure. Restore the box's original pepper; "
                "if it is lost, move the state file away and have the advisor reset the code."
            )

    def check_writable(self) -> None:
        """StateFileError unless a rewrite of the state and an audit record can land now.

        Writes nothing (flash wear): the directory must be writable, its file system
        not read-only, with room for a second copy of the file (the atomic rewrite)
        and an audit record.
        """
        directory = self.path.parent
        try:
            fs = os.statvfs(directory)
        except OSError as exc:
            raise StateFileError(f"{directory}: cannot check the state directory ({exc})") from exc
        if fs.f_flag & os.ST_RDONLY:
            raise StateFileError(
                f"{directory}: the file system is read-only; the state cannot be written. "
                "Remount it read-write (or check the storage for errors)."
            )
        if not os.access(directory, os.W_OK):
            raise StateFileError(
                f"{directory}: not writable by this user; give the gatewayd user write access."
            )
        try:
            size = self.path.stat().st_size
        except OSError:
            size = 0
        needed = 2 * size + WRITE_MARGIN_BYTES
        free = fs.f_bavail * fs.f_frsize
        if free < needed:
            raise StateFileError(
                f"{directory}: {free} bytes free, a write of the state needs about {needed}. "
                "Free some space on that file system."
            )

    def update_mailbox(self, **fields: FieldValue) -> None:
        """Update mailbox fields in one TinyDB call (one atomic file replacement)."""
        check_mailbox_fields(fields)
        doc = {key: _stored(value) for key, value in fields.items()}
        self._mailboxes.update(doc, Query().mailbox == MAILBOX_ID)

    def technician(self) -> Technician:
        """Read the technician document; absent means no code and no failures yet."""
        docs = self._technicians.all()
        if not docs:
            return Technician(code_hash=None, salt=None, failures=0)
        if len(docs) != 1:
            raise StateFileError(
                f"{self.path}: expected one technician document, found {len(docs)}. "
                "Set the technician code again with `gatewayd provision --tech-code`."
            )
        doc = docs[0]
        try:
            return Technician(*_secret_and_failures(doc))
        except (KeyError, TypeError, ValueError) as exc:
            raise StateFileError(
                f"{self.path}: malformed technician document ({exc}). Set the technician "
                "code again with `gatewayd provision --tech-code`."
            ) from None

    def update_technician(self, **fields: FieldValue) -> None:
        """Update technician fields (``code_hash``, ``salt``, ``failures``) in one TinyDB call."""
        doc: dict[str, Any] = {}
        for key, value in fields.items():
            if key not in _EMPTY_TECHNICIAN or key == "technician":
                raise KeyError(f"unknown technician field {key!r}")
            doc[key] = _stored(value)
        self._technicians.upsert(
            {**_EMPTY_TECHNICIAN, **self._technician_doc(), **doc},
            Query().technician == TECHNICIAN_ID,
        )

    def _technician_doc(self) -> dict[str, Any]:
        docs = self._technicians.all()
        return dict(docs[0]) if docs else {}

    def audit(self, what: str, origin: str, **details: AuditDetail) -> None:
        """Append an audit record (what, origin, time); never pass digits here."""
        record = audit_record(what, origin, self._wall_clock(), details)
        if self._pending_audit is not None:
            self._pending_audit.append(record)
        else:
            self._append_audit([record])

    def audit_log(self, last: int | None = None) -> list[dict[str, Any]]:
        """Audit records, oldest first; the last ``last`` ones if given."""
        records = self._audit_log.records()
        return records[-last:] if last else records

    def close(self) -> None:
        """Close the database; safe to call twice."""
        if not self._closed:
            self._closed = True
            self._db.close()
