"""Crash-safe state of the voicemail service on TinyDB (DESIGN.md §2.5).

TinyDB's stock ``JSONStorage`` rewrites its file in place and truncates after
the fsync, so a kill or a power cut can leave a file that does not parse.
:class:`AtomicJSONStorage` writes a temporary file in the same directory,
fsyncs it, ``os.replace``s it over the old file and fsyncs the directory: after
a crash the file holds the old state or the new one, never a mix.

One TinyDB call is the unit of atomicity, so all of a mailbox (hash, salt,
failure counter, lock, protection) lives in one document. :meth:`Store.transaction`
widens the unit to several calls (a code change and its audit record land
together). A file that does not parse is never treated as empty: that would
bring back "no code yet" and a zero failure counter.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinydb import Query, TinyDB
from tinydb.storages import Storage

from gatewayd.errors import StateFileError
from gatewayd.voicemail.hashing import HASH_BYTES, SALT_BYTES

LOGGER = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MAILBOX_ID = "default"
#: Oldest audit records are dropped beyond this, so the state file stays small on flash.
AUDIT_MAX = 1000
#: Audit ``what`` values (never digits).
AUDIT_EVENTS = frozenset(
    {
        "created",
        "modified",
        "failure",
        "cooldown",
        "lock",
        "reset",
        "protection_on",
        "protection_off",
        # The technician's serial-console login (its code is not the subscriber's).
        "tech_code_set",
        "tech_login",
        "tech_login_failure",
        "tech_lockout",
    }
)
#: The one technician document (``technician`` table); absent in files written before it existed.
TECHNICIAN_ID = "technician"

_FIX_HINT = (
    "gatewayd will not start on a state it cannot read (that would forget the code and "
    "the failure counter). Restore the file from a backup, or move it away and have the "
    "advisor reset the code (the subscriber then creates a new one from the fixed line)."
)


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}.tmp-"


def fsync_dir(directory: Path) -> None:
    """fsync a directory so a rename inside it survives a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicJSONStorage(Storage):
    """A TinyDB storage that replaces its file atomically and durably on every write.

    ``fault`` is a test hook called with the name of each write step
    (``"write"``, ``"fsync"``, ``"replace"``, ``"fsync_dir"``) before it runs.
    """

    def __init__(self, path: str, fault: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self._fault = fault
        self._batch: dict[str, Any] | None = None
        self._batch_depth = 0
        self._dirty = False
        self._remove_stale_temp_files()

    def _remove_stale_temp_files(self) -> None:
        prefix = _tmp_prefix(self.path)
        for stale in self.path.parent.glob(prefix + "*"):
            LOGGER.warning("removing stale temporary file %s (left by an interrupted write)", stale)
            stale.unlink(missing_ok=True)

    def _step(self, name: str) -> None:
        if self._fault is not None:
            self._fault(name)

    def read(self) -> dict[str, Any] | None:
        """The whole database, or None for a new (absent) file; raises on anything unreadable."""
        if self._batch is not None:
            copy: dict[str, Any] = json.loads(json.dumps(self._batch))
            return copy  # a copy: TinyDB mutates what it reads
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateFileError(
                f"{self.path}: cannot read the state file ({exc}). {_FIX_HINT}"
            ) from exc
        if not raw:
            # Our writes never leave an empty file: this is truncation, not a new database.
            raise StateFileError(f"{self.path}: the state file is empty (truncated). {_FIX_HINT}")
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StateFileError(
                f"{self.path}: the state file does not parse ({exc}). {_FIX_HINT}"
            ) from None
        if not isinstance(data, dict):
            raise StateFileError(f"{self.path}: the state file is not a JSON object. {_FIX_HINT}")
        for table, docs in data.items():
            if not isinstance(docs, dict) or not all(
                isinstance(doc, dict) and doc_id.isdigit() for doc_id, doc in docs.items()
            ):
                raise StateFileError(
                    f"{self.path}: table {table!r} is not a table of documents. {_FIX_HINT}"
                )
        return data

    def write(self, data: dict[str, Any]) -> None:
        """Replace the file with ``data`` (or keep it for the end of a batch)."""
        if self._batch is not None:
            self._batch = json.loads(json.dumps(data))
            self._dirty = True
            return
        self._write_file(data)

    def _write_file(self, data: dict[str, Any]) -> None:
        payload = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        tmp = self.path.with_name(f"{_tmp_prefix(self.path)}{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            try:
                self._step("write")
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view) :]
                self._step("fsync")
                os.fsync(fd)
            finally:
                os.close(fd)
            self._step("replace")
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._step("fsync_dir")
        fsync_dir(self.path.parent)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group the writes of several TinyDB calls into one atomic file replacement."""
        if self._batch_depth == 0:
            self._batch = self.read() or {}
            self._dirty = False
        self._batch_depth += 1
        try:
            yield
        except BaseException:
            self._batch_depth -= 1
            if self._batch_depth == 0:
                self._batch = None  # discard: the file still holds the state before the batch
            raise
        self._batch_depth -= 1
        if self._batch_depth == 0:
            data, self._batch = self._batch, None
            if self._dirty and data is not None:
                self._write_file(data)

    def close(self) -> None:
        """Nothing is held open between writes."""


@dataclass(frozen=True)
class Mailbox:
    """A snapshot of the mailbox document; holds a hash and salt, never a code."""

    code_hash: bytes | None
    salt: bytes | None
    failures: int
    locked: bool
    protection: bool

    @property
    def code_set(self) -> bool:
        """Whether a code exists."""
        return self.code_hash is not None


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
    """The voicemail state file: one mailbox document, an audit table and a schema version."""

    def __init__(
        self,
        path: Path,
        *,
        wall_clock: Callable[[], float] = time.time,
        fault: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self._wall_clock = wall_clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = TinyDB(str(self.path), storage=AtomicJSONStorage, fault=fault)
        storage = self._db.storage
        assert isinstance(storage, AtomicJSONStorage)
        self._storage = storage
        self._mailboxes = self._db.table("mailbox")
        self._audit = self._db.table("audit")
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
            if self._storage.read():
                raise StateFileError(
                    f"{self.path}: no schema version in the state file. {_FIX_HINT}"
                )
            with self.transaction():
                self._meta.insert({"schema": SCHEMA_VERSION})
                self._mailboxes.insert(dict(_EMPTY_MAILBOX))
            LOGGER.info("created a new state file %s (schema %d)", self.path, SCHEMA_VERSION)
            return
        schema = meta[0].get("schema")
        if schema != SCHEMA_VERSION:
            raise StateFileError(
                f"{self.path}: state schema {schema!r}, this gatewayd reads {SCHEMA_VERSION}. "
                "Install the gatewayd version that wrote it, or restore a backup."
            )
        self.mailbox()  # validates the document now, not at the first call

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything written inside lands in the file at once, or not at all."""
        with self._storage.batch():
            yield

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
            return Mailbox(code_hash, salt, failures, locked, protection)
        except (KeyError, TypeError, ValueError) as exc:
            raise StateFileError(
                f"{self.path}: malformed mailbox document ({exc}). {_FIX_HINT}"
            ) from None

    def check_readable(self) -> None:
        """Read and validate the file itself (not TinyDB's caches): for health checks."""
        self._storage.read()
        self.mailbox()

    def update_mailbox(self, **fields: Any) -> None:
        """Update mailbox fields in one TinyDB call (one atomic file replacement)."""
        doc: dict[str, Any] = {}
        for key, value in fields.items():
            if key not in _EMPTY_MAILBOX or key == "mailbox":
                raise KeyError(f"unknown mailbox field {key!r}")
            doc[key] = value.hex() if isinstance(value, bytes) else value
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

    def update_technician(self, **fields: Any) -> None:
        """Update technician fields (``code_hash``, ``salt``, ``failures``) in one TinyDB call."""
        doc: dict[str, Any] = {}
        for key, value in fields.items():
            if key not in _EMPTY_TECHNICIAN or key == "technician":
                raise KeyError(f"unknown technician field {key!r}")
            doc[key] = value.hex() if isinstance(value, bytes) else value
        self._technicians.upsert(
            {**_EMPTY_TECHNICIAN, **self._technician_doc(), **doc},
            Query().technician == TECHNICIAN_ID,
        )

    def _technician_doc(self) -> dict[str, Any]:
        docs = self._technicians.all()
        return dict(docs[0]) if docs else {}

    def audit(self, what: str, origin: str, **details: int | float | bool) -> None:
        """Append an audit record (what, origin, time); never pass digits here."""
        if what not in AUDIT_EVENTS:
            raise ValueError(f"unknown audit event {what!r}")
        record: dict[str, Any] = {"what": what, "origin": origin, "time": self._wall_clock()}
        record.update(details)
        with self.transaction():
            self._audit.insert(record)
            if len(self._audit) > AUDIT_MAX:
                ids = sorted(r.doc_id for r in self._audit.all())
                self._audit.remove(doc_ids=ids[: len(ids) - AUDIT_MAX])

    def audit_log(self, last: int | None = None) -> list[dict[str, Any]]:
        """Audit records, oldest first; the last ``last`` ones if given."""
        records = [dict(r) for r in sorted(self._audit.all(), key=lambda r: r.doc_id)]
        return records[-last:] if last else records

    def close(self) -> None:
        """Close the database; safe to call twice."""
        if not self._closed:
            self._closed = True
            self._db.close()
