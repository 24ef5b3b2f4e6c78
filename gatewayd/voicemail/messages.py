"""The message store of the mailbox (DESIGN.md §7.2) and the subscriber's greeting (§7.4).

Audio lives under ``<state-dir>/messages/`` as 8 kHz 16-bit mono WAV files, mode
0600 in a 0700 directory. The index (id, received time UTC, duration, caller,
folder, recovered flag, SHA-256 of the WAV file) is its own TinyDB file,
``messages/index.json``, written with the secrets store's atomic storage: one
change is one atomic file replacement.

A recording streams into ``<id>.wav.part`` through a :class:`MessageWriter`:
fsynced every :data:`FSYNC_EVERY_S` (injected clock), so a power cut loses at
most that much. When it ends: trim, fix the header, fsync, rename to
``<id>.wav``, fsync the directory, then add the index entry. Opening the store
repairs what a crash left: a long enough ``.part`` is recovered (flagged), a WAV
with no entry is adopted, an entry whose file is gone or fails its checksum is
dropped, a WAV that does not parse is deleted; each with an audit line, never
an exception. The caller's number is in the index only: never in logs above
debug, audit lines, file names or reprs.

No asyncio here: the daemon calls this on its event-loop thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import logging
import os
import secrets
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from tinydb import TinyDB

from gatewayd.errors import GatewaydError, StateFileError
from gatewayd.voicemail.store import AtomicJSONStorage, fsync_dir

LOGGER = logging.getLogger(__name__)

#: Audio format of every message and greeting (what the trunk delivers and the player plays).
RATE = 8000
SAMPLE_BYTES = 2
#: fsync a recording in progress at least this often: what a power cut may lose.
FSYNC_EVERY_S = 2.0
#: Audio kept in memory before an ``os.write``: fewer system calls than one per 20 ms
#: chunk; well under FSYNC_EVERY_S, and a SIGKILL loses at most this much.
WRITE_BUFFER_BYTES = RATE * SAMPLE_BYTES // 2  # 0.5 s
HEADER_BYTES = 44
INDEX_NAME = "index.json"
MESSAGES_DIR = "messages"
GREETINGS_DIR = "greetings"
GREETING_NAME = "greeting.wav"
PART_SUFFIX = ".part"
INDEX_SCHEMA = 1

Folder = Literal["new", "saved"]
#: ``audit(what, details)``: what the store repaired or could not do. Details never hold
#: the caller's number; the daemon writes them to the audit log.
AuditCallback = Callable[[str, Mapping[str, object]], None]
#: Test hook called with the name of each step of a recording's I/O before it runs
#: (``"write"``, ``"fsync"``, ``"finish"``, ``"rename"``, ``"index"``).
FaultHook = Callable[[str], None]


class MessageError(GatewaydError, OSError):
    """A message cannot be read: see the subclasses."""


class MessageNotFoundError(MessageError, FileNotFoundError):
    """No such message, or its audio file vanished (its index entry is dropped)."""


class MessageCorruptError(MessageError):
    """The message's audio no longer matches its checksum (its entry and file are dropped)."""


class RecordingWriteError(GatewaydError, OSError):
    """Writing a recording failed (disk full, I/O error): the recording has stopped.

    What was written before the error is kept by :meth:`MessageWriter.finish` if long enough.
    """


class GreetingError(GatewaydError, ValueError):
    """A greeting that cannot be stored (too long, not whole 16-bit frames, empty)."""


@dataclass(frozen=True)
class StoreLimits:
    """The quota and length numbers of ``[voicemail.mailbox]`` that the store applies."""

    min_message_s: float = 2.0
    max_messages: int = 30
    max_total_s: float = 3600.0
    greeting_max_s: float = 60.0


@dataclass(frozen=True)
class Message:
    """One stored message; ``caller`` is None when withheld or unknown (never in a repr)."""

    id: str
    received: float  # seconds since the epoch, UTC
    seconds: float
    folder: Folder
    recovered: bool
    sha256: str
    caller: str | None = field(default=None, repr=False)

    @property
    def received_utc(self) -> datetime:
        """Reception time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.received, UTC)

    def to_doc(self) -> dict[str, Any]:
        """The index document."""
        return {
            "id": self.id,
            "received": self.received,
            "seconds": self.seconds,
            "folder": self.folder,
            "recovered": self.recovered,
            "sha256": self.sha256,
            "caller": self.caller,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Message:
        """Parse an index document; ValueError/KeyError/TypeError if malformed."""
        folder = doc["folder"]
        if folder not in ("new", "saved"):
            raise ValueError(f"folder {folder!r}")
        caller = doc.get("caller")
        if caller is not None and not isinstance(caller, str):
            raise TypeError("caller must be a string or null")
        message_id = str(doc["id"])
        if not _valid_id(message_id):
            raise ValueError(f"id {message_id!r}")
        return cls(
            id=message_id,
            received=float(doc["received"]),
            seconds=float(doc["seconds"]),
            folder=folder,
            recovered=bool(doc["recovered"]),
            sha256=str(doc["sha256"]),
            caller=caller,
        )


def _valid_id(message_id: str) -> bool:
    # Ids become file names: a strict alphabet rules out path tricks from an edited index.
    return 0 < len(message_id) <= 40 and all(
        c.isascii() and (c.isalnum() or c == "-") for c in message_id
    )


def wav_header(frames: int) -> bytes:
    """The 44-byte header of an 8 kHz 16-bit mono PCM WAV holding ``frames`` frames."""
    data_bytes = frames * SAMPLE_BYTES
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        1,  # mono
        RATE,
        RATE * SAMPLE_BYTES,
        SAMPLE_BYTES,
        8 * SAMPLE_BYTES,
        b"data",
        data_bytes,
    )


_HEADER_PREFIX = wav_header(0)[:36] + b"data"


class _BadWav(ValueError):
    """A WAV file that is not one of ours; the message says why."""


def read_wav_pcm(path: Path) -> bytes:
    """The PCM of a message or greeting WAV; _BadWav if it is not a whole 8 kHz/16-bit/mono file."""
    raw = path.read_bytes()
    if len(raw) < HEADER_BYTES:
        raise _BadWav(f"{len(raw)} bytes, shorter than a WAV header")
    if raw[:4] != b"RIFF" or raw[8:40] != _HEADER_PREFIX[8:40]:
        # Only our own layout: the store writes every file itself (and adopts no others).
        raise _BadWav("not an 8000 Hz 16-bit mono PCM WAV written by gatewayd")
    (riff_size,) = struct.unpack_from("<I", raw, 4)
    (data_size,) = struct.unpack_from("<I", raw, 40)
    body = len(raw) - HEADER_BYTES
    if data_size != body or riff_size != 36 + data_size or data_size % SAMPLE_BYTES:
        raise _BadWav(
            f"truncated or padded: header says {data_size} audio bytes, file holds {body}"
        )
    return raw[HEADER_BYTES:]


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _replace_durably(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` atomically: temp file 0600, fsync, rename, fsync the dir."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        try:
            _write_all(fd, content)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


class MessageStore:
    """Messages (audio files + their index) and the greeting, under a state directory.

    ``wall_clock`` gives reception times (UTC epoch seconds), ``monotonic`` paces the
    fsyncs of a recording; both are injected for tests. Opening repairs what a crash
    left behind (see the module docstring) and reports each repair to ``audit``.
    """

    def __init__(
        self,
        state_dir: Path,
        limits: StoreLimits = StoreLimits(),
        *,
        audit: AuditCallback | None = None,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        fault: FaultHook | None = None,
    ) -> None:
        self.limits = limits
        self.directory = _private_dir(Path(state_dir) / MESSAGES_DIR)
        self.greetings_directory = Path(state_dir) / GREETINGS_DIR
        self._audit_callback = audit
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        self._fault = fault
        self._writers: set[str] = set()
        self._messages: dict[str, Message] = {}
        self._db = self._open_index()
        self._table = self._db.table("messages")
        self._load_and_repair()

    def __enter__(self) -> MessageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the index; safe to call twice."""
        self._db.close()

    # --- audit and faults ---------------------------------------------------

    def _audit(self, what: str, **details: object) -> None:
        LOGGER.warning("mailbox: %s %s", what, details)
        if self._audit_callback is not None:
            try:
                self._audit_callback(what, details)
            except Exception:  # an audit sink failing must not lose a message
                LOGGER.exception("mailbox: the audit callback failed on %s", what)

    def _step(self, name: str) -> None:
        if self._fault is not None:
            self._fault(name)

    # --- open and repair ------------------------------------------------------

    def _open_index(self) -> TinyDB:
        path = self.directory / INDEX_NAME
        db = TinyDB(str(path), storage=AtomicJSONStorage)
        try:
            meta = db.table("meta").all()
        except StateFileError:
            # Our writes are atomic, so this is outside damage. The audio is still there:
            # set the index aside for the technician and rebuild it by adopting every file.
            db.close()
            aside = path.with_name(f"{INDEX_NAME}.unreadable-{int(self._wall_clock())}")
            os.replace(path, aside)
            self._audit("message_index_unreadable", moved_to=aside.name)
            db = TinyDB(str(path), storage=AtomicJSONStorage)
            meta = []
        if not meta:
            db.table("meta").insert({"schema": INDEX_SCHEMA})
        elif meta[0].get("schema") != INDEX_SCHEMA:
            db.close()
            raise StateFileError(
                f"{path}: message index schema {meta[0].get('schema')!r}, this gatewayd "
                f"reads {INDEX_SCHEMA}. Install the gatewayd version that wrote it."
            )
        return db

    def _load_and_repair(self) -> None:
        drop: list[int] = []
        for doc in self._table.all():
            try:
                message = Message.from_doc(doc)
            except (KeyError, TypeError, ValueError) as exc:
                self._audit("message_dropped", reason="malformed_entry", detail=str(exc)[:80])
                drop.append(doc.doc_id)
                continue
            path = self._audio_path(message.id)
            if not path.exists():
                self._audit("message_dropped", id=message.id, reason="file_missing")
                drop.append(doc.doc_id)
            elif _sha256(path) != message.sha256:
                self._audit("message_dropped", id=message.id, reason="checksum")
                path.unlink(missing_ok=True)
                drop.append(doc.doc_id)
            else:
                self._messages[message.id] = message
        if drop:
            self._table.remove(doc_ids=drop)
        for part in sorted(self.directory.glob("*.wav" + PART_SUFFIX)):
            self._recover_part(part)
        for wav in sorted(self.directory.glob("*.wav")):
            if wav.name[: -len(".wav")] not in self._messages:
                self._adopt(wav)
        # Temporary files of an interrupted index or greeting write.
        for stale in [*self.directory.glob(".*.tmp-*"), *self.greetings_directory.glob(".*.tmp-*")]:
            stale.unlink(missing_ok=True)

    def _recover_part(self, part: Path) -> None:
        message_id = part.name[: -len(".wav" + PART_SUFFIX)]
        try:
            with part.open("r+b") as f:
                size = os.fstat(f.fileno()).st_size
                frames = max(0, size - HEADER_BYTES) // SAMPLE_BYTES
                seconds = frames / RATE
                if not _valid_id(message_id) or seconds < self.limits.min_message_s:
                    f.close()
                    part.unlink()
                    self._audit("recording_discarded", reason="too_short", seconds=seconds)
                    return
                f.truncate(HEADER_BYTES + frames * SAMPLE_BYTES)
                f.seek(0)
                f.write(wav_header(frames))
                f.flush()
                os.fsync(f.fileno())
            final = self._audio_path(message_id)
            os.replace(part, final)
            fsync_dir(self.directory)
        except OSError as exc:
            LOGGER.error("mailbox: cannot recover %s (%s); left for the next start", part, exc)
            return
        received = _time_of_id(message_id, default=final.stat().st_mtime)
        self._index(final, message_id, received, None, recovered=True)
        self._audit("message_recovered", id=message_id, seconds=seconds)

    def _adopt(self, wav: Path) -> None:
        message_id = wav.name[: -len(".wav")]
        try:
            if not _valid_id(message_id):
                raise _BadWav("not a message file name")
            frames = len(read_wav_pcm(wav)) // SAMPLE_BYTES
        except (OSError, _BadWav) as exc:
            wav.unlink(missing_ok=True)
            self._audit("message_dropped", file=wav.name[:60], reason="corrupt", detail=str(exc))
            return
        os.chmod(wav, 0o600)
        received = _time_of_id(message_id, default=wav.stat().st_mtime)
        self._index(wav, message_id, received, None, recovered=False)
        self._audit("message_adopted", id=message_id, seconds=frames / RATE)

    def _index(
        self, path: Path, message_id: str, received: float, caller: str | None, recovered: bool
    ) -> Message:
        frames = (path.stat().st_size - HEADER_BYTES) // SAMPLE_BYTES
        message = Message(
            id=message_id,
            received=received,
            seconds=frames / RATE,
            folder="new",
            recovered=recovered,
            sha256=_sha256(path),
            caller=caller,
        )
        self._messages[message_id] = message
        try:
            self._step("index")
            self._table.insert(message.to_doc())
        except OSError as exc:
            # The WAV is in place: listed now (in memory), adopted again by the next open.
            LOGGER.error(
                "mailbox: cannot write the index (%s); the next start adopts %s", exc, path.name
            )
            self._audit("message_index_error", id=message_id)
        return message

    # --- queries ----------------------------------------------------------------

    def _audio_path(self, message_id: str) -> Path:
        return self.directory / f"{message_id}.wav"

    def list(self) -> list[Message]:
        """New messages oldest first, then saved ones oldest first."""
        return sorted(
            self._messages.values(),
            key=lambda m: (m.folder != "new", m.received, m.id),
        )

    def counts(self) -> tuple[int, int]:
        """``(new, saved)``."""
        new = sum(1 for m in self._messages.values() if m.folder == "new")
        return new, len(self._messages) - new

    @property
    def total_seconds(self) -> float:
        """Audio held, in seconds."""
        return sum(m.seconds for m in self._messages.values())

    @property
    def seconds_left(self) -> float:
        """How much more audio ``max_total_s`` allows (0 when full)."""
        return max(0.0, self.limits.max_total_s - self.total_seconds)

    @property
    def full(self) -> bool:
        """No room for a new message: ``max_messages`` or ``max_total_s`` reached (§7.1)."""
        return (
            len(self._messages) >= self.limits.max_messages
            or self.seconds_left < self.limits.min_message_s
        )

    def get(self, message_id: str) -> Message:
        """The index entry of one message; MessageNotFoundError if there is none."""
        try:
            return self._messages[message_id]
        except KeyError:
            raise MessageNotFoundError(f"no message {message_id!r} in {self.directory}") from None

    def audio_path(self, message_id: str) -> Path:
        """The WAV file of a message, checked against its checksum first."""
        self._checked_pcm(message_id)
        return self._audio_path(message_id)

    def pcm(self, message_id: str) -> bytes:
        """The audio of a message (8 kHz S16_LE mono), verified against its checksum.

        A file that vanished raises MessageNotFoundError, one that fails its checksum
        MessageCorruptError; either way the message is dropped from the index.
        """
        return self._checked_pcm(message_id)

    def _checked_pcm(self, message_id: str) -> bytes:
        message = self.get(message_id)
        path = self._audio_path(message_id)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            self._drop(message, "file_missing")
            raise MessageNotFoundError(f"{path}: the audio file of this message is gone") from None
        if hashlib.sha256(raw).hexdigest() != message.sha256:
            self._drop(message, "checksum")
            path.unlink(missing_ok=True)
            raise MessageCorruptError(f"{path}: the audio no longer matches its checksum")
        return raw[HEADER_BYTES:]

    def _drop(self, message: Message, reason: str) -> None:
        self._audit("message_dropped", id=message.id, reason=reason)
        self._messages.pop(message.id, None)
        self._table.remove(lambda doc: doc.get("id") == message.id)

    # --- changes --------------------------------------------------------------

    def mark_saved(self, message_id: str) -> Message:
        """Move a message to the saved folder (one atomic index write)."""
        message = self.get(message_id)
        if message.folder == "saved":
            return message
        saved = dataclasses.replace(message, folder="saved")
        self._table.update({"folder": "saved"}, lambda doc: doc.get("id") == message_id)
        self._messages[message_id] = saved
        return saved

    def delete(self, message_id: str) -> None:
        """Delete a message: its audio file, then its index entry; nothing is left behind."""
        message = self.get(message_id)
        # File first: a crash in between leaves an entry without file, dropped at the next
        # open; the other order would leave a file that the next open adopts (resurrects).
        self._audio_path(message_id).unlink(missing_ok=True)
        fsync_dir(self.directory)
        self._messages.pop(message_id, None)
        self._table.remove(lambda doc: doc.get("id") == message.id)

    def writer(self, caller: str | None = None) -> MessageWriter:
        """Start recording a new message into a ``.part`` file."""
        received = self._wall_clock()
        while True:
            stamp = datetime.fromtimestamp(received, UTC).strftime("%Y%m%dT%H%M%SZ")
            message_id = f"{stamp}-{secrets.token_hex(2)}"
            if message_id not in self._messages and message_id not in self._writers:
                break
        self._writers.add(message_id)
        try:
            return MessageWriter(self, message_id, received, caller)
        except BaseException:
            self._writers.discard(message_id)
            raise

    # --- greeting (§7.4) ------------------------------------------------------------

    @property
    def greeting_path(self) -> Path:
        """Where the subscriber's greeting lives (it may not exist)."""
        return self.greetings_directory / GREETING_NAME

    def greeting_pcm(self) -> bytes | None:
        """The subscriber's own greeting, or None (none recorded, or unreadable: logged)."""
        try:
            return read_wav_pcm(self.greeting_path)
        except FileNotFoundError:
            return None
        except (OSError, _BadWav) as exc:
            LOGGER.error(
                "%s: the greeting is unusable (%s); the standard one plays", self.greeting_path, exc
            )
            return None

    def set_greeting(self, pcm: bytes) -> None:
        """Store ``pcm`` (8 kHz S16_LE mono) as the greeting, atomically and durably."""
        if not pcm or len(pcm) % SAMPLE_BYTES:
            raise GreetingError("a greeting must hold whole 16-bit frames, and at least one")
        seconds = len(pcm) / SAMPLE_BYTES / RATE
        if seconds > self.limits.greeting_max_s + 1e-9:
            raise GreetingError(
                f"a greeting of {seconds:.1f} s is longer than greeting_max_s = "
                f"{self.limits.greeting_max_s:g} s ([voicemail.mailbox] in the profile)"
            )
        _private_dir(self.greetings_directory)
        _replace_durably(self.greeting_path, wav_header(len(pcm) // SAMPLE_BYTES) + pcm)

    def clear_greeting(self) -> None:
        """Go back to the standard greeting."""
        with contextlib.suppress(FileNotFoundError):
            self.greeting_path.unlink()
            fsync_dir(self.greetings_directory)


def _time_of_id(message_id: str, default: float) -> float:
    """The UTC start time encoded in an id (``20261201T024512Z-3f9a``), else ``default``."""
    try:
        stamp = datetime.strptime(message_id.split("-")[0], "%Y%m%dT%H%M%SZ")
    except ValueError:
        return default
    return stamp.replace(tzinfo=UTC).timestamp()


class MessageWriter:
    """A recording in progress: PCM in, a ``.part`` file fsynced every FSYNC_EVERY_S.

    :meth:`write` raises RecordingWriteError on a disk error (the recording has then
    stopped); :meth:`finish` keeps what was written if long enough; :meth:`discard`
    removes it.
    """

    def __init__(
        self, store: MessageStore, message_id: str, received: float, caller: str | None
    ) -> None:
        self.id = message_id
        self._store = store
        self._received = received
        self._caller = caller
        self.part_path = store.directory / f"{message_id}.wav{PART_SUFFIX}"
        self._buffer = bytearray()
        self._odd = b""
        #: Whole frames handed to the kernel (what a SIGKILL cannot take away).
        self.frames_written = 0
        self.error: OSError | None = None
        self.closed = False
        self._fd = os.open(self.part_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_all(self._fd, wav_header(0))
            os.fsync(self._fd)
            fsync_dir(store.directory)  # the .part itself survives a power cut
        except BaseException:
            os.close(self._fd)
            self.part_path.unlink(missing_ok=True)
            raise
        self._last_sync = store._monotonic()

    @property
    def frames(self) -> int:
        """Frames accepted so far (written or buffered)."""
        return self.frames_written + len(self._buffer) // SAMPLE_BYTES

    def write(self, pcm: bytes) -> None:
        """Append PCM; raises RecordingWriteError if the disk refuses (recording stopped)."""
        if self.error is not None:
            raise RecordingWriteError(self.error.errno, f"recording stopped: {self.error}")
        if self.closed:
            raise ValueError("write() on a finished recording")
        data = self._odd + pcm
        whole = len(data) - len(data) % SAMPLE_BYTES
        self._buffer += data[:whole]
        self._odd = data[whole:]
        now = self._store._monotonic()
        if len(self._buffer) >= WRITE_BUFFER_BYTES or now - self._last_sync >= FSYNC_EVERY_S:
            self._flush(sync=now - self._last_sync >= FSYNC_EVERY_S)

    def _flush(self, sync: bool) -> None:
        try:
            if self._buffer:
                self._store._step("write")
                data = bytes(self._buffer)
                self._buffer.clear()
                written = 0
                try:
                    while written < len(data):
                        written += os.write(self._fd, data[written:])
                finally:
                    # Count whole frames that reached the file, even when a write fails midway.
                    self.frames_written += written // SAMPLE_BYTES
            if sync:
                self._store._step("fsync")
                os.fsync(self._fd)
                self._last_sync = self._store._monotonic()
        except OSError as exc:
            self._buffer.clear()
            self.error = exc
            name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            self._store._audit("recording_write_error", id=self.id, errno=name)
            raise RecordingWriteError(
                exc.errno, f"{self.part_path}: recording stopped: {exc}"
            ) from exc

    def finish(self, keep_frames: int | None = None) -> Message | None:
        """End the recording, keeping its first ``keep_frames`` frames (all by default).

        Shorter than ``min_message_s``: discarded, returns None. Otherwise the message
        is renamed into place and indexed. An I/O error while finishing leaves the
        ``.part`` for the next open to recover, and returns None.
        """
        if self.closed:
            raise ValueError("finish() called twice")
        if self.error is None and self._buffer:
            with contextlib.suppress(RecordingWriteError):
                self._flush(sync=False)
        frames = (
            self.frames_written if keep_frames is None else min(keep_frames, self.frames_written)
        )
        if frames / RATE < self._store.limits.min_message_s:
            self.discard()
            return None
        store = self._store
        try:
            store._step("finish")
            os.ftruncate(self._fd, HEADER_BYTES + frames * SAMPLE_BYTES)
            os.pwrite(self._fd, wav_header(frames), 0)
            os.fsync(self._fd)
            os.close(self._fd)
            self.closed = True
            store._step("rename")
            final = store._audio_path(self.id)
            os.replace(self.part_path, final)
            fsync_dir(store.directory)
        except OSError as exc:
            self._close_fd()
            LOGGER.error(
                "mailbox: cannot finish %s (%s); the next start recovers it", self.part_path, exc
            )
            store._audit(
                "recording_write_error", id=self.id, errno=errno.errorcode.get(exc.errno or 0, "?")
            )
            store._writers.discard(self.id)
            return None
        store._writers.discard(self.id)
        message = store._index(final, self.id, self._received, self._caller, recovered=False)
        LOGGER.info("mailbox: message %s recorded, %.1f s", self.id, message.seconds)
        LOGGER.debug("mailbox: message %s from %s", self.id, self._caller)
        return message

    def discard(self) -> None:
        """Drop the recording: the ``.part`` file is removed."""
        self._close_fd()
        self.part_path.unlink(missing_ok=True)
        self._store._writers.discard(self.id)

    def _close_fd(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                os.close(self._fd)
