"""``gatewayd provision``: make a flashed box ready for ``systemctl enable --now gatewayd``.

1. Creates the box's pepper, ``/etc/gatewayd/pepper`` (mode 0600, random, never
   overwritten without ``--force``): the unit hands it to the daemon as the
   systemd credential ``gatewayd-pepper`` (``LoadCredential=``). It lives outside
   the state directory, so a copied state file alone does not give the codes away.
2. Writes the chosen profile to ``/etc/gatewayd/profile.toml``, where the unit's
   ``ExecStart=`` looks, with ``storage.pepper_file`` pointing at that pepper (so
   ``gatewayd selftest`` run by hand finds it too). The TOML is edited with tomlkit
   (comments and layout kept, any spelling of ``[storage]``) and the result is
   validated before it atomically replaces the file: a profile that would not load
   is never written.
3. With ``--tech-code``: reads the technician code (4-8 digits) from a prompt
   that does not echo it, twice, or one line of standard input when that is not
   a terminal -- never from the command line, which ``ps`` shows to everyone --
   and stores its hash in the state file (``/var/lib/gatewayd/gatewayd.json``).

Run it as root with the daemon stopped.
"""

from __future__ import annotations

import getpass
import logging
import os
import sys
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import TextIO

from gatewayd.console import TechnicianAuth, technician_code_problem
from gatewayd.errors import GatewaydError, ProfileError
from gatewayd.paths import (
    DEFAULT_ETC_DIR,
    PROFILE_FILE,
    PROVISIONED_PEPPER,
    STATE_FILE,
    resolve_pepper_path,
    resolve_runtime_dir,
    resolve_state_dir,
)
from gatewayd.profile import (
    PROVISIONED_HEADER,
    Profile,
    load_profile,
    profile_from_text,
    provisioned_from,
)
from gatewayd.selftest import daemon_running
from gatewayd.voicemail.atomicdb import write_atomically
from gatewayd.voicemail.auditlog import audit_path
from gatewayd.voicemail.hashing import (
    CHECK_BUDGET_S,
    CodeHasher,
    create_pepper,
    fitted_n,
    load_pepper,
    time_one_check,
)
from gatewayd.voicemail.store import Store, fsync_dir

LOGGER = logging.getLogger(__name__)

#: Where the unit (systemd/gatewayd.service) expects the pepper, in the etc dir.
PEPPER_FILE = PROVISIONED_PEPPER
#: Tries at the technician code prompt before provision gives up.
CODE_TRIES = 3
#: Exit codes: done; something could not be done; bad arguments (profile, code).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class ProvisionError(GatewaydError, RuntimeError):
    """Provisioning cannot go on; the message says what to do."""


def read_technician_code(
    stdin: TextIO, ask: Callable[[str], str] = getpass.getpass, out: TextIO | None = None
) -> str:
    """The technician code: asked twice without echo on a terminal (up to :data:`CODE_TRIES`
    times when refused or mistyped), else one line of stdin."""
    if stdin.isatty():
        for attempt in range(1, CODE_TRIES + 1):
            code = ask("technician code (4-8 digits, not echoed): ")
            problem = technician_code_problem(code)
            if problem is None and ask("the same code again: ") == code:
                return code
            why = f"refused: {problem}" if problem is not None else "the two codes differ"
            if attempt < CODE_TRIES:
                print(f"technician code {why}; try again", file=out or sys.stdout, flush=True)
        raise ProvisionError(
            f"technician code {why}, {CODE_TRIES} times; nothing was changed "
            "(run `gatewayd provision` again)"
        )
    code = stdin.readline().strip()
    problem = technician_code_problem(code)
    if problem is not None:
        raise ProvisionError(f"technician code refused: {problem} (read from standard input)")
    return code


def with_pepper_file(text: str, pepper: Path, source: Path, scrypt_n: int | None = None) -> str:
    """The profile ``text`` with ``storage.pepper_file`` set to ``pepper``, and a header.

    ``scrypt_n`` (``--fit-scrypt``) sets ``voicemail.policy.scrypt_n`` as well.

    The TOML is edited, not pattern-matched: comments and layout are kept, and every
    spelling of ``[storage]`` works (a table, a quoted header, dotted keys, an inline
    table). Re-provisioning from an already provisioned file keeps the origin its
    header names.
    """
    import tomlkit  # only provision edits TOML: `gatewayd run` never imports it
    from tomlkit.exceptions import TOMLKitError

    origin = provisioned_from(text)
    if origin is not None:
        text, source = text.partition("\n")[2], origin
    try:
        document = tomlkit.parse(text)
        storage = document.get("storage")
        if storage is None:
            storage = tomlkit.table()
            document.append("storage", storage)
        if not isinstance(storage, MutableMapping):
            raise ProfileError(
                f"{source}: storage: expected a table [storage], got {type(storage).__name__}"
            )
        storage["pepper_file"] = str(pepper)
        if scrypt_n is not None:
            voicemail = document.setdefault("voicemail", tomlkit.table())
            policy = voicemail.setdefault("policy", tomlkit.table())
            if not isinstance(policy, MutableMapping):
                raise ProfileError(f"{source}: voicemail.policy: expected a table")
            policy["scrypt_n"] = scrypt_n
    except TOMLKitError as exc:
        raise ProfileError(f"{source}: TOML syntax error: {exc}") from exc
    header = f"{PROVISIONED_HEADER} from {source}; storage.pepper_file names its pepper.\n"
    return header + document.as_string()


def provision_pepper(path: Path, force: bool) -> tuple[bytes, str]:
    """The box's pepper at ``path``: created, kept, or (``force``) replaced; and what happened."""
    if path.exists() and not force:
        return load_pepper(path), "kept (it exists; --force replaces it)"
    if not path.exists():
        return create_pepper(path), "created (mode 0600)"
    fresh = path.with_name(f".{path.name}.new-{os.getpid()}")
    fresh.unlink(missing_ok=True)
    create_pepper(fresh)
    os.replace(fresh, path)
    fsync_dir(path.parent)
    return load_pepper(path), "REPLACED (--force)"


def write_profile(loaded: Profile, target: Path, pepper: Path, scrypt_n: int | None = None) -> str:
    """Write ``loaded``'s file to ``target`` with its pepper path; keep a different old one.

    The new text is validated before anything is replaced: a profile the daemon could
    not load never reaches ``target``.
    """
    source_text = loaded.source.read_text(encoding="utf-8")
    text = with_pepper_file(source_text, pepper, loaded.source, scrypt_n)
    try:
        written = profile_from_text(text, target)
    except ProfileError as exc:
        raise ProvisionError(
            f"{target}: left unchanged: the profile written from {loaded.source} would not "
            f"load:\n{exc}"
        ) from exc
    if Path(written.storage.pepper_file) != pepper:
        raise ProvisionError(f"{target}: left unchanged: storage.pepper_file is not {pepper}")
    note = "written"
    if target.exists():
        old = target.read_text(encoding="utf-8", errors="replace")
        if old == text:
            return "unchanged"
        if loaded.source.resolve() != target.resolve():
            backup = target.with_name(target.name + ".old")
            write_atomically(backup, old.encode("utf-8"), mode=0o644)
            note = f"written (the previous one is kept as {backup})"
    write_atomically(target, text.encode("utf-8"), mode=0o644)
    return note


def set_technician_code(loaded: Profile, state_dir: Path, pepper: bytes, code: str) -> Path:
    """Hash ``code`` with the pepper and the profile's scrypt cost into the state file."""
    policy = loaded.voicemail.policy
    hasher = CodeHasher(pepper, n=policy.scrypt_n, r=policy.scrypt_r, p=policy.scrypt_p)
    if not state_dir.exists():
        state_dir.mkdir(mode=0o700, parents=True)
    path = state_dir / STATE_FILE
    with Store(path) as store:
        TechnicianAuth(store, hasher, time.monotonic).set_code(code, "provision")
    if os.geteuid() == 0:
        # The state file was just written by root: give it to the state dir's owner (the
        # service user, once systemd made the directory), or the daemon could not read it.
        owner = state_dir.stat()
        for written in (path, audit_path(path)):  # the audit log got its tech_code_set record
            if written.exists():
                os.chown(written, owner.st_uid, owner.st_gid)
    return path


def _fit_scrypt(loaded: Profile, say: Callable[[str], None]) -> int:
    """Time one code check on this board; the ``scrypt_n`` that keeps it under budget."""
    policy = loaded.voicemail.policy
    took = time_one_check(policy.scrypt_n, policy.scrypt_r, policy.scrypt_p)
    fitted = fitted_n(took, policy.scrypt_n)
    say(
        f"scrypt_n: a check takes {took * 1000:.0f} ms at {policy.scrypt_n} here; "
        f"{fitted} keeps it under {CHECK_BUDGET_S * 1000:.0f} ms (written to the profile; "
        "the stored code is re-hashed at its next right entry)"
    )
    return fitted


def main(
    profile: str,
    *,
    etc_dir: str | None = None,
    state_dir: str | None = None,
    runtime_dir: str | None = None,
    tech_code: bool = False,
    force: bool = False,
    fit_scrypt: bool = False,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
) -> int:
    """``gatewayd provision``: pepper, profile, and (``tech_code``) the technician code."""
    stream = out or sys.stdout

    def say(text: str) -> None:
        print(text, file=stream, flush=True)

    try:
        loaded = load_profile(profile)
    except ProfileError as exc:
        say(f"gatewayd provision: {exc}")
        return EXIT_USAGE
    if daemon_running(resolve_runtime_dir(runtime_dir)):
        say("gatewayd provision: gatewayd is running; stop it first (systemctl stop gatewayd)")
        return EXIT_FAILED
    etc = Path(etc_dir) if etc_dir else DEFAULT_ETC_DIR
    pepper_path = (etc / PEPPER_FILE).absolute()
    target = (etc / PROFILE_FILE).absolute()
    try:
        # Ask for the code first: a typo then stops everything before anything is written.
        code = read_technician_code(stdin or sys.stdin, out=stream) if tech_code else None
    except ProvisionError as exc:
        say(f"gatewayd provision: {exc}")
        return EXIT_USAGE
    try:
        etc.mkdir(mode=0o755, parents=True, exist_ok=True)
        pepper, pepper_note = provision_pepper(pepper_path, force)
        say(f"pepper {pepper_path}: {pepper_note}")
        fitted = _fit_scrypt(loaded, say) if fit_scrypt else None
        profile_note = write_profile(loaded, target, pepper_path, fitted)
        say(f"profile {target}: {profile_note} (from {loaded.source})")
        written = load_profile(target)
        states = resolve_state_dir(state_dir, written)
        if code is not None:
            path = set_technician_code(written, states, pepper, code)
            say(f"technician code: set (hashed in {path})")
        elif force and "REPLACED" in pepper_note and (states / STATE_FILE).exists():
            say(
                "warning: codes stored before were hashed with the old pepper and no longer "
                "verify: set the technician code again (--tech-code) and reset the subscriber's "
                "code (console `reset`)"
            )
        if resolve_pepper_path(written, states, etc) != pepper_path:
            say(f"note: $CREDENTIALS_DIRECTORY overrides {pepper_path} in this environment")
    except PermissionError as exc:
        say(f"gatewayd provision: {exc}; run it as root (sudo gatewayd provision ...)")
        return EXIT_FAILED
    except (GatewaydError, OSError) as exc:
        say(f"gatewayd provision: {exc}")
        return EXIT_FAILED
    say(
        f"next: gatewayd selftest --profile {target}, then systemctl enable --now gatewayd "
        "(the unit reads this profile and this pepper)"
    )
    return EXIT_OK
