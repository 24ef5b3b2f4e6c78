"""Atomic, durable TinyDB files that fail closed (DESIGN.md §2.5), for every store of the box.

TinyDB's stock ``JSONStorage`` rewrites its file in place and truncates after
the fsync, so a kill or a power cut can leave a file that does not parse.
:class:`AtomicJSONStorage` writes a temporary file in the same directory,
fsyncs it, ``os.replace``s it over the old file and fsyncs the directory: after
a crash the file holds the old state or the new one, never a mix. A file that
does not parse is never treated as empty. :func:`open_atomic_db` opens any
store file (the secrets, the message index) this way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.storages import Storage

from gatewayd.errors import StateFileError
from gatewayd.paths import NotARegularFile, read_regular_file

LOGGER = logging.getLogger(__name__)

#: What to do about an unreadable file, unless the store names its own fix.
DEFAULT_FIX_HINT = (
    "gatewayd will not start on a file it cannot read. Restore the file from a backup, "
    "or move it away and start again."
)

Fault = Callable[[str], None]


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}.tmp-"


def temp_files(path: Path) -> list[Path]:
    """Temporary files of an interrupted atomic write of ``path``."""
    return sorted(path.parent.glob(_tmp_prefix(path) + "*"))


#: A state or index file larger than this is not ours (ours are a few KiB).
MAX_FILE_BYTES = 16 * 1024 * 1024


def fsync_dir(directory: Path) -> None:
    """fsync a directory so a rename inside it survives a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(
    path: Path, payload: bytes, step: Fault | None = None, *, mode: int = 0o600
) -> None:
    """Replace ``path`` with ``payload``: temporary file, fsync, rename, fsync of the directory.

    ``step`` is called with the name of each step before it runs (the fault-injection hook);
    the file gets ``mode`` whatever the umask.
    """
    step = step or (lambda name: None)
    tmp = path.with_name(f"{_tmp_prefix(path)}{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode is masked by the umask
        try:
            step("write")
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            step("fsync")
            os.fsync(fd)
        finally:
            os.close(fd)
        step("replace")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    step("fsync_dir")
    fsync_dir(path.parent)


class AtomicJSONStorage(Storage):
    """A TinyDB storage that replaces its file atomically and durably on every write.

    ``fault`` is a test hook called with the name of each write step
    (``"write"``, ``"fsync"``, ``"replace"``, ``"fsync_dir"``) before it runs.
    ``fix_hint`` ends every "cannot read" error: what the technician should do.
    """

    def __init__(
        self, path: str, fault: Fault | None = None, fix_hint: str = DEFAULT_FIX_HINT
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self._fault = fault
        self._fix_hint = fix_hint
        self._batch: dict[str, Any] | None = None
        self._batch_depth = 0
        self._dirty = False
        self._remove_stale_temp_files()

    def _remove_stale_temp_files(self) -> None:
        for stale in temp_files(self.path):
            LOGGER.warning("removing stale temporary file %s (left by an interrupted write)", stale)
            stale.unlink(missing_ok=True)

    def _step(self, name: str) -> None:
        if self._fault is not None:
            self._fault(name)

    def unreadable(self, problem: str) -> StateFileError:
        """The error for a file this storage refuses: names the file, the problem and the fix."""
        return StateFileError(f"{self.path}: {problem}. {self._fix_hint}")

    def read(self) -> dict[str, Any] | None:
        """The whole database, or None for a new (absent) file; raises on anything unreadable."""
        if self._batch is not None:
            copy: dict[str, Any] = json.loads(json.dumps(self._batch))
            return copy  # a copy: TinyDB mutates what it reads
        try:
            raw = read_regular_file(self.path, MAX_FILE_BYTES)
        except FileNotFoundError:
            return None
        except NotARegularFile as exc:
            raise self.unreadable(f"the file {exc}") from None
        except OSError as exc:
            raise self.unreadable(f"cannot read the file ({exc})") from exc
        if not raw:
            # Our writes never leave an empty file: this is truncation, not a new database.
            raise self.unreadable("the file is empty (truncated)")
        try:
            data = json.loads(raw)
        except RecursionError:
            raise self.unreadable("the file does not parse (nested too deep)") from None
        except ValueError as exc:  # bad JSON, bad UTF-8, an integer of thousands of digits
            raise self.unreadable(f"the file does not parse ({exc})") from None
        if not isinstance(data, dict):
            raise self.unreadable("the file is not a JSON object")
        for table, docs in data.items():
            if not isinstance(docs, dict) or not all(
                isinstance(doc, dict) and doc_id.isdigit() for doc_id, doc in docs.items()
            ):
                raise self.unreadable(f"table {table!r} is not a table of documents")
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
        write_atomically(self.path, payload, self._step)

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


def open_atomic_db(
    path: Path, *, fault: Fault | None = None, fix_hint: str = DEFAULT_FIX_HINT
) -> tuple[TinyDB, AtomicJSONStorage]:
    """Open (or create, with its directory) a TinyDB file on :class:`AtomicJSONStorage`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = TinyDB(str(path), storage=AtomicJSONStorage, fault=fault, fix_hint=fix_hint)
    storage = db.storage
    assert isinstance(storage, AtomicJSONStorage)
    return db, storage
