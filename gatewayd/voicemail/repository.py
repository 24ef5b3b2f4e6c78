"""What the code policy needs from storage, as an interface with no I/O (DESIGN.md §2.3-§2.5).

:class:`SecretCodeService` (``policy.py``) is pure rules over a
:class:`SecretsRepository`: read the mailbox's secrets document, update it in
one durable step, append to the audit log, and group several of those into one
atomic transaction. ``store.Store`` is the TinyDB file behind it on the box;
:class:`MemorySecrets` is the same contract in memory, for tests and tools.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

#: Oldest audit records are dropped beyond this, so the audit log stays small on flash.
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
        # The mailbox (DESIGN §7.2): repairs at start and losses while recording.
        "message_recovered",
        "message_adopted",
        "message_dropped",
        "recording_discarded",
        "recording_write_error",
        "message_index_error",
        "message_index_unreadable",
    }
)
#: Fields of the mailbox secrets document that :meth:`SecretsRepository.update_mailbox` takes.
MAILBOX_FIELDS = frozenset({"code_hash", "salt", "kdf", "failures", "locked", "protection"})

#: A value of a mailbox field: hash/salt bytes (or None), the counter, a flag.
FieldValue = bytes | str | int | bool | None
#: Extra fields an audit record may carry (``failures``, ``seconds``, a message id or a
#: reason); never digits of a code, never a caller's number.
AuditDetail = int | float | bool | str


@dataclass(frozen=True)
class Mailbox:
    """A snapshot of the mailbox document; holds a hash and salt, never a code."""

    code_hash: bytes | None
    salt: bytes | None
    failures: int
    locked: bool
    protection: bool
    #: The scrypt cost the hash was made with (``CodeHasher.kdf``); None: the profile's.
    kdf: str | None = None

    @property
    def code_set(self) -> bool:
        """Whether a code exists."""
        return self.code_hash is not None


EMPTY_MAILBOX = Mailbox(code_hash=None, salt=None, failures=0, locked=False, protection=False)


def check_mailbox_fields(fields: dict[str, FieldValue]) -> None:
    """KeyError naming the field when ``fields`` holds one the mailbox document does not have."""
    for key in fields:
        if key not in MAILBOX_FIELDS:
            raise KeyError(f"unknown mailbox field {key!r}")


def audit_record(
    what: str, origin: str, now: float, details: dict[str, AuditDetail]
) -> dict[str, Any]:
    """One audit record (what, origin, time, details); ValueError for an unknown ``what``."""
    if what not in AUDIT_EVENTS:
        raise ValueError(f"unknown audit event {what!r}")
    return {"what": what, "origin": origin, "time": now, **details}


class SecretsRepository(Protocol):
    """The mailbox secrets and their audit log, as the policy uses them.

    Each :meth:`update_mailbox` and :meth:`audit` is durable when it returns.
    Inside :meth:`transaction` the secrets land together when the block ends, or
    not at all if it raises; its audit records are appended after them (a crash
    in between may lose a record, never a change of the secrets).
    """

    def mailbox(self) -> Mailbox:
        """The secrets document now; raises if it cannot be read (never a blank one)."""
        ...

    def update_mailbox(self, **fields: FieldValue) -> None:
        """Change some fields of the secrets document in one durable step."""
        ...

    def audit(self, what: str, origin: str, **details: AuditDetail) -> None:
        """Append an audit record (an ``AUDIT_EVENTS`` value); never pass digits."""
        ...

    def audit_log(self, last: int | None = None) -> list[dict[str, Any]]:
        """Audit records, oldest first; the last ``last`` ones if given."""
        ...

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """Everything written inside lands at once, or not at all."""
        ...

    def check_writable(self) -> None:
        """Raise OSError if a write of the secrets cannot land now (a probe that writes nothing)."""
        ...


class MemorySecrets:
    """A :class:`SecretsRepository` in memory: the same rules as the file, no I/O.

    ``writes`` counts the durable steps a file would make (one per call outside a
    transaction, one per transaction that changed something).
    """

    def __init__(self, *, wall_clock: Callable[[], float] = time.time) -> None:
        self._wall_clock = wall_clock
        self._mailbox = EMPTY_MAILBOX
        self._audit: list[dict[str, Any]] = []
        self._depth = 0
        self._dirty = False
        self.writes = 0

    def mailbox(self) -> Mailbox:
        """The secrets document now."""
        return self._mailbox

    def update_mailbox(self, **fields: FieldValue) -> None:
        """Change some fields (same checks as the file)."""
        check_mailbox_fields(fields)
        values: dict[str, Any] = fields
        self._mailbox = Mailbox(**{**self._mailbox.__dict__, **values})
        self._wrote()

    def audit(self, what: str, origin: str, **details: AuditDetail) -> None:
        """Append a record, dropping the oldest beyond ``AUDIT_MAX``."""
        self._audit.append(audit_record(what, origin, self._wall_clock(), details))
        del self._audit[:-AUDIT_MAX]
        self._wrote()

    def audit_log(self, last: int | None = None) -> list[dict[str, Any]]:
        """Audit records, oldest first."""
        records = copy.deepcopy(self._audit)
        return records[-last:] if last else records

    def check_writable(self) -> None:
        """Memory is always writable."""

    def _wrote(self) -> None:
        if self._depth:
            self._dirty = True
        else:
            self.writes += 1

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing: an exception inside restores the state from before the block."""
        saved = (self._mailbox, copy.deepcopy(self._audit), self._dirty)
        if self._depth == 0:
            self._dirty = False
        self._depth += 1
        try:
            yield
        except BaseException:
            self._mailbox, self._audit, self._dirty = saved
            raise
        finally:
            self._depth -= 1
        if self._depth == 0 and self._dirty:
            self.writes += 1
