"""Hashing of the secret code (DESIGN.md §2.4): scrypt(HMAC-SHA256(pepper, code), salt).

With only 10,000 possible codes a salted hash alone falls in minutes; the
per-box pepper, kept outside the state directory, is what protects a leaked
state file. Comparison is constant-time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path

from gatewayd.errors import PepperError
from gatewayd.paths import NotARegularFile, read_regular_file

LOGGER = logging.getLogger(__name__)

SALT_BYTES = 16
HASH_BYTES = 32
#: A pepper shorter than this is a provisioning mistake (e.g. an empty file), not a secret.
PEPPER_MIN_BYTES = 16
PEPPER_BYTES = 32
#: A pepper file larger than this is not a pepper (``/dev/zero``, a log file...).
PEPPER_MAX_BYTES = 4096
#: File name of the pepper in systemd's ``$CREDENTIALS_DIRECTORY`` (``LoadCredential=``).
PEPPER_CREDENTIAL = "gatewayd-pepper"
#: The label whose HMAC under the pepper is its fingerprint in the state (issue 15.6).
FINGERPRINT_LABEL = b"gatewayd pepper fingerprint v1"
#: A code check (one scrypt) should take no longer than this on the box (issue 13).
CHECK_BUDGET_S = 0.3
#: The lowest scrypt cost the profile schema accepts.
SCRYPT_N_FLOOR = 2**10


class CodeHasher:
    """Hashes and verifies codes with the box's pepper and the profile's scrypt cost."""

    def __init__(self, pepper: bytes, *, n: int = 2**14, r: int = 8, p: int = 1) -> None:
        if len(pepper) < PEPPER_MIN_BYTES:
            raise PepperError(f"pepper too short ({len(pepper)} bytes, need {PEPPER_MIN_BYTES})")
        if n < 2 or n & (n - 1):
            raise ValueError(f"scrypt n must be a power of two, got {n}")
        self._pepper = pepper
        self._n, self._r, self._p = n, r, p
        # scrypt needs 128*r*n bytes; give it that plus slack instead of OpenSSL's 32 MiB default.
        self._maxmem = 128 * r * n * (p + 1) + 1024 * 1024

    def __repr__(self) -> str:
        return f"CodeHasher(n={self._n}, r={self._r}, p={self._p})"

    @property
    def kdf(self) -> str:
        """The cost as stored beside a hash (``n:r:p``), so a new cost never voids old hashes."""
        return f"{self._n}:{self._r}:{self._p}"

    def for_kdf(self, kdf: str | None) -> CodeHasher:
        """This hasher at the cost a stored hash was made with (None: this one's)."""
        if kdf is None or kdf == self.kdf:
            return self
        try:
            n, r, p = (int(part) for part in kdf.split(":"))
        except ValueError:
            raise ValueError(f"stored scrypt cost {kdf[:40]!r} is not n:r:p") from None
        return type(self)(self._pepper, n=n, r=r, p=p)

    @staticmethod
    def new_salt() -> bytes:
        """A fresh random salt for a new code."""
        return secrets.token_bytes(SALT_BYTES)

    def hash(self, code: str, salt: bytes) -> bytes:
        """The stored form of ``code`` under ``salt``."""
        keyed = hmac.new(self._pepper, code.encode("ascii"), hashlib.sha256).digest()
        return hashlib.scrypt(
            keyed, salt=salt, n=self._n, r=self._r, p=self._p, maxmem=self._maxmem, dklen=HASH_BYTES
        )

    def verify(self, code: str, salt: bytes, expected: bytes) -> bool:
        """True if ``code`` hashes to ``expected`` (constant-time comparison)."""
        return hmac.compare_digest(self.hash(code, salt), expected)


def time_one_check(
    n: int, r: int, p: int, *, runs: int = 3, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Seconds one code check takes here at cost ``n, r, p`` (the median of ``runs``)."""
    hasher = CodeHasher(secrets.token_bytes(PEPPER_BYTES), n=n, r=r, p=p)
    salt, times = hasher.new_salt(), []
    for _ in range(runs):
        start = clock()
        hasher.hash("0000", salt)
        times.append(clock() - start)
    return sorted(times)[len(times) // 2]


def fitted_n(seconds: float, n: int, budget_s: float = CHECK_BUDGET_S) -> int:
    """The largest power-of-two cost whose check fits ``budget_s``, given ``seconds`` at ``n``.

    scrypt's time grows linearly with ``n``; never below :data:`SCRYPT_N_FLOOR`.
    """
    fitted = SCRYPT_N_FLOOR
    while fitted * 2 * seconds / n <= budget_s and fitted < 2**24:
        fitted *= 2
    return fitted


def pepper_path(configured: Path) -> Path:
    """Where the pepper is read from: systemd's credential if present, else ``configured``."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds:
        candidate = Path(creds) / PEPPER_CREDENTIAL
        if candidate.exists():
            return candidate
    return configured


def load_pepper(path: Path) -> bytes:
    """Read the pepper; a missing, unreadable or short file is a clear error, never a default."""
    try:
        pepper = read_regular_file(path, PEPPER_MAX_BYTES)
    except NotARegularFile as exc:
        raise PepperError(
            f"{path}: the pepper {exc} (at most {PEPPER_MAX_BYTES} bytes, mode 0600); "
            "restore the box's pepper file there"
        ) from None
    except FileNotFoundError:
        raise PepperError(
            f"{path}: pepper file missing; this box is not provisioned. "
            "Run `gatewayd provision` (or LoadCredential=gatewayd-pepper:... in the unit)."
        ) from None
    except OSError as exc:
        raise PepperError(
            f"{path}: cannot read the pepper ({exc.strerror}); check its owner and mode"
        ) from exc
    if len(pepper) < PEPPER_MIN_BYTES:
        raise PepperError(
            f"{path}: pepper is {len(pepper)} bytes, at least {PEPPER_MIN_BYTES} are needed; "
            "re-provision with `gatewayd provision --force` (this invalidates the stored code)"
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise PepperError(
            f"{path}: the pepper is readable or writable by others than its owner "
            f"(mode {mode:04o}); chmod 600 {path}"
        )
    return pepper


def pepper_fingerprint(pepper: bytes) -> str:
    """What the state stores to recognise its pepper: an HMAC of a fixed label, never the pepper."""
    return hmac.new(pepper, FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:32]


def create_pepper(path: Path) -> bytes:
    """Create a new random pepper at ``path`` (mode 0600); never overwrites an existing one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pepper = secrets.token_bytes(PEPPER_BYTES)
    if path.is_symlink():
        gone = "" if path.exists() else ", which does not exist"
        raise PepperError(
            f"{path}: is a symlink to {os.readlink(path)}{gone}; gatewayd neither follows nor "
            "replaces it. Restore the pepper file the link points to, or remove the link."
        )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise PepperError(f"{path}: a pepper already exists; it is never overwritten") from None
    try:
        os.write(fd, pepper)
        os.fsync(fd)
    finally:
        os.close(fd)
    LOGGER.info("created a new pepper at %s", path)
    return pepper
