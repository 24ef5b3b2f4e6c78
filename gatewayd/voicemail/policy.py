"""The security policy of the secret code (DESIGN.md §2): who may do what, counter, cool-down, lock.

The smart-card rule: a try is counted and made durable *before* the code is
compared, so a hang-up or a power cut after the last digit never gives a free
try. Cool-downs run on the injected monotonic clock (a box may have no
real-time clock) and start again in full after a restart.

The cool-down and the lock follow from the durable count alone: the cool-down a
wrong code would start is armed as soon as the count is on disk, before the
comparison, so nothing that fails afterwards (the comparison, the audit, the lock
flag) can skip it. A state that cannot be written stops code checks (fail
closed): :attr:`Access.UNAVAILABLE` until a write can land again.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from gatewayd.errors import PolicyError, StateFileError
from gatewayd.voicemail.codes import CODE_LENGTH, Refusal, refusal_reason
from gatewayd.voicemail.config import Policy
from gatewayd.voicemail.hashing import CodeHasher
from gatewayd.voicemail.repository import FieldValue, SecretsRepository

LOGGER = logging.getLogger(__name__)

#: Origins that may create or modify the code: only the box's own handset (DESIGN §2.1).
HANDSET = "handset"


class Access(enum.Enum):
    """Whether a code check may be attempted now."""

    OPEN = "open"
    NO_CODE = "no_code"
    COOLDOWN = "cooldown"
    LOCKED = "locked"
    #: The state cannot be written: no try could be counted, so none is allowed.
    UNAVAILABLE = "unavailable"


class ServiceUnavailable(PolicyError):
    """The state cannot be written, so a code check cannot be counted: checks stop."""


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one code check."""

    ok: bool
    #: Consecutive failures after this check (0 after a right code).
    failures: int
    #: Cool-down started by this failure, in seconds (0 if none).
    cooldown_s: float = 0.0
    #: This failure locked access until a reset.
    locked: bool = False


@dataclass
class PendingCheck:
    """A try counted on disk whose comparison has not been made yet (never shows the code)."""

    origin: str
    #: Consecutive failures on disk, this try included.
    failures: int
    salt: bytes = field(repr=False)
    code_hash: bytes = field(repr=False)
    code: str = field(repr=False)
    #: The cost the stored hash was made with.
    kdf: str | None = None
    #: The cool-down this try starts if the code is wrong (armed already, from the count).
    cooldown_s: float = 0.0
    #: This try reaches the lock threshold if the code is wrong.
    locks: bool = False
    #: A right code under an old cost: the new (hash, salt) at the profile's cost.
    rehash: tuple[bytes, bytes] | None = field(default=None, repr=False)
    #: How many times a right code had cleared the counter when this try was counted.
    clears: int = 0


@dataclass(frozen=True)
class NewHash:
    """A new code as it is stored: its hash, salt and cost (never the digits)."""

    code_hash: bytes = field(repr=False)
    salt: bytes = field(repr=False)
    kdf: str


@dataclass(frozen=True)
class CodeStatus:
    """What ``status`` may show: never the code, only facts about it."""

    code_set: bool
    failures: int
    locked: bool
    cooldown_remaining_s: float
    protection: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for the console and the control socket."""
        return {
            "code_set": self.code_set,
            "failures": self.failures,
            "locked": self.locked,
            "cooldown_remaining_s": round(self.cooldown_remaining_s, 1),
            "protection": self.protection,
        }


class SecretCodeService:
    """Create, modify, check and reset the subscriber's code: pure rules over a repository.

    Every read and write of the secrets goes through ``secrets`` (the TinyDB
    ``Store`` on the box, ``MemorySecrets`` in tests); this class does no I/O.
    """

    def __init__(
        self,
        secrets: SecretsRepository,
        hasher: CodeHasher,
        policy: Policy,
        clock: Callable[[], float],
        *,
        line_number: str = "",
    ) -> None:
        self._secrets = secrets
        self._hasher = hasher
        self._policy = policy
        self._clock = clock
        self._line_number = line_number
        self._cooldown_until = 0.0
        #: A write of the secrets failed: code checks stop until the state is writable again.
        self._unwritable = False
        #: The hash a right code replaced by the same code at the profile's cost (re-hash).
        self._rehashed_from: bytes | None = None
        #: Right codes that cleared the counter since start: a try counted before one of
        #: them lost its count, whatever the counter reads now (it may have climbed back).
        self._clears = 0
        mailbox = secrets.mailbox()
        # Re-arm the current cool-down in full: the monotonic clock restarted with the box.
        if not self._is_locked(mailbox.failures, mailbox.locked):
            remaining = policy.cooldown_seconds(mailbox.failures)
            if remaining:
                self._cooldown_until = clock() + remaining
                LOGGER.info(
                    "cool-down of %d s re-armed after start (%d consecutive failures)",
                    remaining,
                    mailbox.failures,
                )

    @property
    def policy(self) -> Policy:
        """The policy numbers in force."""
        return self._policy

    def _is_locked(self, failures: int, locked_flag: bool) -> bool:
        return locked_flag or failures >= self._policy.lock_after

    @property
    def writable(self) -> bool:
        """False after a failed write of the secrets, until a probe finds the state writable."""
        return not self._still_unwritable()

    def _write(self, **fields: FieldValue) -> None:
        """A durable write of the mailbox; a failure makes the service unavailable (fail closed)."""
        try:
            self._secrets.update_mailbox(**fields)
        except (OSError, StateFileError) as exc:
            self._unwritable = True
            LOGGER.error(
                "the state cannot be written (%s); code checks stop until it can. "
                "Check the state directory's disk (space, read-only, errors).",
                exc,
            )
            raise ServiceUnavailable(f"the state cannot be written ({exc})") from exc

    def _still_unwritable(self) -> bool:
        """After a failed write: probe (writes nothing); True while the state is unwritable."""
        if not self._unwritable:
            return False
        try:
            self._secrets.check_writable()
        except (OSError, StateFileError) as exc:
            LOGGER.debug("state still not writable: %s", exc)
            return True
        self._unwritable = False
        LOGGER.warning("the state is writable again; code checks resume")
        return False

    def status(self) -> CodeStatus:
        """Current state of the code, without any secret."""
        mailbox = self._secrets.mailbox()
        locked = self._is_locked(mailbox.failures, mailbox.locked)
        remaining = 0.0 if locked else max(0.0, self._cooldown_until - self._clock())
        return CodeStatus(
            code_set=mailbox.code_set,
            failures=mailbox.failures,
            locked=locked,
            cooldown_remaining_s=remaining,
            protection=mailbox.protection,
        )

    def access(self) -> Access:
        """Whether a caller may be asked for the code now."""
        mailbox = self._secrets.mailbox()
        if not mailbox.code_set:
            return Access.NO_CODE
        if self._is_locked(mailbox.failures, mailbox.locked):
            return Access.LOCKED
        if self._clock() < self._cooldown_until:
            return Access.COOLDOWN
        if self._still_unwritable():
            return Access.UNAVAILABLE
        return Access.OPEN

    def check(self, code: str, origin: str) -> CheckResult:
        """Check a 4-digit code: count the try durably, then compare (all on the caller's thread).

        Raises :class:`PolicyError` if access is not open (no code, cool-down, lock):
        the caller must ask :meth:`access` first; nothing is counted then.
        :class:`ServiceUnavailable` if the count cannot be written (nothing is compared).
        Once the count is durable, the cool-down or lock it implies holds even if
        something after it raises. The daemon uses the three steps apart
        (:meth:`begin_check`, :meth:`verify` in a worker, :meth:`settle`) so the event
        loop never waits for scrypt.
        """
        pending = self.begin_check(code, origin)
        return self.settle(pending, self.verify(pending))

    def begin_check(self, code: str, origin: str) -> PendingCheck:
        """Step 1 (event loop): refuse when access is not open, else count the try durably."""
        if len(code) != CODE_LENGTH or not code.isdigit():
            raise ValueError("a code check needs exactly 4 digits")
        state = self.access()
        if state is not Access.OPEN:
            raise PolicyError(f"code check refused: {state.value}")
        mailbox = self._secrets.mailbox()
        assert mailbox.code_hash is not None and mailbox.salt is not None
        failures = mailbox.failures + 1
        self._write(failures=failures)  # durable before the comparison
        locked = failures >= self._policy.lock_after
        cooldown = 0.0 if locked else self._policy.cooldown_seconds(failures)
        if cooldown:
            # Armed from the durable count, before anything else can fail: a right code
            # clears it in settle(), an exception anywhere after this line leaves it in force.
            self._cooldown_until = self._clock() + cooldown
        return PendingCheck(
            origin,
            failures,
            mailbox.salt,
            mailbox.code_hash,
            code,
            mailbox.kdf,
            cooldown_s=cooldown,
            locks=locked,
            clears=self._clears,
        )

    def verify(self, pending: PendingCheck) -> bool:
        """Step 2 (any thread): the comparison itself; no storage, no shared state.

        A right code whose hash was made at another cost (``scrypt_n`` changed) is
        hashed again at the profile's cost here; :meth:`settle` stores it.
        """
        hasher = self._hasher.for_kdf(pending.kdf)
        ok = hasher.verify(pending.code, pending.salt, pending.code_hash)
        if ok and hasher is not self._hasher:
            salt = self._hasher.new_salt()
            pending.rehash = (self._hasher.hash(pending.code, salt), salt)
        return ok

    def settle(self, pending: PendingCheck, ok: bool) -> CheckResult:
        """Step 3 (event loop): clear the counter, or audit the failure and lock if due.

        Raises :class:`PolicyError` when the code was reset or changed while the
        comparison ran (the verdict is about a code that is gone); the try stays counted.
        :class:`ServiceUnavailable` when a right code's clearing cannot be written (the
        try stays counted, its cool-down in force).
        """
        mailbox = self._secrets.mailbox()
        if mailbox.code_hash != pending.code_hash and pending.code_hash != self._rehashed_from:
            raise PolicyError("code check overtaken: the code changed during the comparison")
        origin, failures = pending.origin, pending.failures
        locked, cooldown = pending.locks, pending.cooldown_s
        if ok:
            if pending.rehash is not None and mailbox.code_hash == pending.code_hash:
                code_hash, salt = pending.rehash
                self._write(
                    code_hash=code_hash, salt=salt, kdf=self._hasher.kdf, failures=0, locked=False
                )
                self._rehashed_from = pending.code_hash  # the same code: checks under way stand
                LOGGER.info(
                    "stored code re-hashed at the profile's scrypt cost %s", self._hasher.kdf
                )
            else:
                self._write(failures=0, locked=False)
            self._cooldown_until = 0.0
            self._clears += 1
            LOGGER.info("right code from %s; failure counter cleared", origin)
            return CheckResult(ok=True, failures=0)
        if self._clears != pending.clears:
            # A right code cleared the counter while this comparison ran (two calls, one
            # after the other, faster than scrypt): this wrong code counts after it, even
            # when tries counted since have taken the counter back past its old place.
            failures = mailbox.failures + 1
            self._write(failures=failures)
            locked = failures >= self._policy.lock_after
            cooldown = 0.0 if locked else self._policy.cooldown_seconds(failures)
            if cooldown:
                self._cooldown_until = self._clock() + cooldown
        try:
            with self._secrets.transaction():
                if locked:
                    self._secrets.update_mailbox(locked=True)
                self._secrets.audit("failure", origin, failures=failures)
                if cooldown:
                    self._secrets.audit("cooldown", origin, seconds=cooldown)
                if locked:
                    self._secrets.audit("lock", origin, failures=failures)
        except (OSError, StateFileError) as exc:
            # The count is on disk, so the lock (failures >= lock_after) and the cool-down hold.
            self._unwritable = True
            LOGGER.error(
                "could not write the lock flag or the audit of a failure (%s); the failure "
                "is counted. Code checks stop until the state is writable.",
                exc,
            )
        LOGGER.warning(
            "wrong code from %s (%d consecutive failures)%s",
            origin,
            failures,
            " - access locked until a reset"
            if locked
            else (f" - cool-down {cooldown:.0f} s" if cooldown else ""),
        )
        return CheckResult(ok=False, failures=failures, cooldown_s=cooldown, locked=locked)

    def refusal(self, code: str) -> Refusal | None:
        """Why ``code`` may not become the new code (trivial, previous code...), or None."""
        reason = self.quick_refusal(code)
        if reason is not None:
            return reason
        is_current = self.current_code_matcher(code)
        if is_current is not None and is_current():
            return Refusal.PREVIOUS
        return None

    def quick_refusal(self, code: str) -> Refusal | None:
        """The refusals that need no comparison (shape, trivial, the line's number)."""
        return refusal_reason(code, line_number=self._line_number)

    def current_code_matcher(self, code: str) -> Callable[[], bool] | None:
        """A comparison of ``code`` with the current code, to run in any thread (scrypt).

        Reads the stored hash now (on the caller's thread); None when no code is set.
        """
        mailbox = self._secrets.mailbox()
        if mailbox.code_hash is None or mailbox.salt is None:
            return None
        hasher, salt, code_hash = self._hasher.for_kdf(mailbox.kdf), mailbox.salt, mailbox.code_hash
        return lambda: hasher.verify(code, salt, code_hash)

    def hash_new_code(self, code: str) -> NewHash:
        """Step 1 of a new code, in any thread: its salt and hash at the profile's cost."""
        if self.quick_refusal(code) is not None:
            raise ValueError("code refused")
        salt = self._hasher.new_salt()
        return NewHash(self._hasher.hash(code, salt), salt, self._hasher.kdf)

    def set_code(self, code: str, origin: str) -> Literal["created", "modified"]:
        """Store a new code (create or modify) from the handset; returns "created" or "modified".

        Clears the failure counter, cool-down and lock, durably and with its audit record.
        """
        if origin != HANDSET:
            raise PolicyError("the code can only be created or modified from the fixed line")
        reason = self.refusal(code)
        if reason is not None:
            raise ValueError(f"code refused: {reason.value}")
        return self.store_code(self.hash_new_code(code), origin)

    def store_code(self, new: NewHash, origin: str) -> Literal["created", "modified"]:
        """Step 2 of a new code (event loop): store it, clear counter, cool-down and lock."""
        if origin != HANDSET:
            raise PolicyError("the code can only be created or modified from the fixed line")
        action: Literal["created", "modified"] = (
            "modified" if self._secrets.mailbox().code_set else "created"
        )
        with self._secrets.transaction():
            self._secrets.update_mailbox(
                code_hash=new.code_hash, salt=new.salt, kdf=new.kdf, failures=0, locked=False
            )
            self._secrets.audit(action, origin)
        self._cooldown_until = 0.0
        self._rehashed_from = None  # a new code: comparisons with the old one are void
        LOGGER.info("secret code %s from %s", action, origin)
        return action

    def set_protection(self, on: bool, origin: str) -> None:
        """Turn "code required from the fixed line" on or off (handset only, code must exist)."""
        if origin != HANDSET:
            raise PolicyError("protection can only be changed from the fixed line")
        if on and not self._secrets.mailbox().code_set:
            raise PolicyError("protection needs a code")
        with self._secrets.transaction():
            self._secrets.update_mailbox(protection=on)
            self._secrets.audit("protection_on" if on else "protection_off", origin)
        LOGGER.info("code required from the fixed line: %s", "on" if on else "off")

    def reset(self, origin: str) -> None:
        """Advisor or technician reset: clears code, counter, lock and protection; audited."""
        with self._secrets.transaction():
            self._secrets.update_mailbox(
                code_hash=None, salt=None, kdf=None, failures=0, locked=False, protection=False
            )
            self._secrets.audit("reset", origin)
        self._cooldown_until = 0.0
        self._rehashed_from = None
        LOGGER.warning("secret code reset by %s", origin)

    def audit_log(self, last: int | None = None) -> list[dict[str, Any]]:
        """The audit records (never digits), oldest first."""
        return self._secrets.audit_log(last)
