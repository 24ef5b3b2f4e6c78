"""Issue 15 point 10: tests that see what behaviour hides. Each fails on one planted bug that
passed the whole suite before: the directory fsync after ``os.replace`` removed, the temporary
file's fsync removed, the per-call limit changed, ``hmac.compare_digest`` replaced by ``==``."""

from __future__ import annotations

import hmac
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gatewayd.errors import ProfileError
from gatewayd.profile import load_profile
from gatewayd.voicemail import atomicdb, auditlog
from gatewayd.voicemail.config import Keys, Policy, VoicemailConfig
from gatewayd.voicemail.hashing import CodeHasher
from gatewayd.voicemail.policy import SecretCodeService
from gatewayd.voicemail.repository import MemorySecrets
from gatewayd.voicemail.store import Store
from tests.conftest import TEST_PEPPER
from tests.daemon_process import make_profile
from tests.harness import FakeClock, Phone


class SyscallLog:
    """Records os.open/os.fsync/os.replace as (call, path) so the order can be asserted."""

    def __init__(self, monkeypatch) -> None:
        self.calls: list[tuple[str, str]] = []
        self._fds: dict[int, str] = {}
        real_open, real_fsync, real_replace = os.open, os.fsync, os.replace

        def open_(path, flags, mode=0o777, **kwargs):
            fd = real_open(path, flags, mode, **kwargs)
            self._fds[fd] = str(path)
            return fd

        def fsync(fd: int) -> None:
            self.calls.append(("fsync", self._fds.get(fd, "?")))
            real_fsync(fd)

        def replace(src, dst) -> None:
            self.calls.append(("replace", f"{src} -> {dst}"))
            real_replace(src, dst)

        for module in (atomicdb, auditlog):
            monkeypatch.setattr(module.os, "open", open_)
            monkeypatch.setattr(module.os, "fsync", fsync)
            monkeypatch.setattr(module.os, "replace", replace)


def test_a_state_write_fsyncs_the_file_then_renames_then_fsyncs_the_directory(
    tmp_path: Path, monkeypatch
) -> None:
    path = tmp_path / "state" / "gatewayd.json"
    with Store(path) as store:
        log = SyscallLog(monkeypatch)
        store.update_mailbox(failures=1)
    tmp_prefix = f"{path.parent}/.{path.name}.tmp-"
    assert len(log.calls) == 3, log.calls
    (fsync_file, file), (replace, move), (fsync_dir, directory) = log.calls
    assert (fsync_file, replace, fsync_dir) == ("fsync", "replace", "fsync")
    assert file.startswith(tmp_prefix)  # the data is on disk before the rename...
    assert move == f"{file} -> {path}"
    assert directory == str(path.parent)  # ...and the rename is on disk before we go on


def test_an_audit_record_is_fsynced(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "state" / "gatewayd.json"
    with Store(path) as store:
        store.audit("reset", "ctl")  # creates the log: its directory entry is fsynced too
        log = SyscallLog(monkeypatch)
        store.audit("reset", "ctl")
    assert log.calls == [("fsync", str(auditlog.audit_path(path)))]


def test_the_per_call_limit_ends_the_call_before_any_cool_down() -> None:
    """``tries_per_call`` apart from ``cooldown_every``: the call ends at 3, no cool-down yet."""
    policy = Policy(scrypt_n=2**10, tries_per_call=3, cooldown_every=5)
    clock = FakeClock()
    hasher = CodeHasher(TEST_PEPPER, n=policy.scrypt_n)
    service = SecretCodeService(MemorySecrets(), hasher, policy, clock)
    service.set_code("4931", "handset")
    phone = Phone(service, VoicemailConfig(policy=policy), clock)
    phone.call_for_code()
    for _ in range(2):
        phone.press("1111#")
        assert not phone.hung_up
    phone.hear()
    phone.press("1111#")
    assert phone.hear()[-1] == "code_too_many_failures"
    assert phone.hung_up and not phone.events_of("cooldown")
    assert service.status().failures == 3 and service.status().cooldown_remaining_s == 0


def test_the_code_comparison_is_constant_time(monkeypatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    hasher = CodeHasher(TEST_PEPPER, n=2**10)
    salt = hasher.new_salt()
    stored = hasher.hash("4931", salt)
    assert hasher.verify("4931", salt, stored) and not hasher.verify("1111", salt, stored)
    assert [b for _, b in compared] == [stored, stored]


# --- point 9: calls cannot be held forever -------------------------------------------------


def _phone_with_code(policy: Policy | None = None) -> Phone:
    clock = FakeClock()
    policy = policy or Policy(scrypt_n=2**10)
    service = SecretCodeService(MemorySecrets(), CodeHasher(TEST_PEPPER, n=2**10), policy, clock)
    service.set_code("4931", "handset")
    return Phone(service, VoicemailConfig(policy=policy), clock)


def _hold(phone: Phone, keys: str, every: float, at_most: float) -> float:
    """Press ``keys`` in turn every ``every`` seconds until the call ends; how long it lasted."""
    start = phone.clock.now
    turn = 0
    while phone.ivr.party is not None and phone.ivr.state != "dead":
        assert phone.clock.now - start < at_most, f"call still held in {phone.ivr.state}"
        phone.press(keys[turn % len(keys)])
        turn += 1
        phone.wait(every)
    return phone.clock.now - start


def test_star_every_six_seconds_cannot_hold_the_code_check() -> None:
    phone = _phone_with_code()
    phone.call_for_code()
    limit = phone.config.timeouts.code_check_max
    lasted = _hold(phone, "*", 6.0, at_most=10 * limit)
    assert lasted <= limit + 6.0
    assert phone.hung_up and "goodbye" in phone.hear()


def test_a_digit_every_six_seconds_cannot_hold_the_code_check() -> None:
    phone = _phone_with_code()
    phone.call_for_code()
    limit = phone.config.timeouts.code_check_max
    assert _hold(phone, "1", 6.0, at_most=10 * limit) <= limit + 6.0
    assert phone.service.status().failures == 0  # nothing was ever submitted


def test_menus_cannot_hold_a_call_past_the_call_limit() -> None:
    phone = _phone_with_code()
    phone.lift()
    phone.dial("3103")
    limit = phone.config.timeouts.call_max
    lasted = _hold(phone, "3*", 6.0, at_most=10 * limit)  # personalise, back, forever
    assert limit - 6.0 <= lasted <= limit + 6.0
    assert phone.hear()[-2:] == ["goodbye", "tone:busy"]


def test_a_right_code_lifts_the_code_check_limit() -> None:
    phone = _phone_with_code()
    phone.call_for_code()
    phone.press("4931#")
    limit = phone.config.timeouts.code_check_max
    lasted = _hold(phone, "3*", 6.0, at_most=10 * phone.config.timeouts.call_max)
    assert lasted > limit  # then only the call limit applies


# --- point 7: profiles that cannot work are refused -----------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ('main_personalise = "3"', 'main_personalise = "1"', "voicemail.keys.main_personalise"),
        ('code_protection = "2"', 'code_protection = "1"', "voicemail.keys.code_protection"),
        ('confirm_retry = "2"', 'confirm_retry = "*"', "voicemail.keys.confirm_retry"),
        ('back = "*"', 'back = "#"', "voicemail.keys.end_entry"),
        ('end_entry = "#"', 'end_entry = "5"', "voicemail.keys.end_entry"),
        ("scrypt_n = 16384 ", "scrypt_n = 1048576 ", "voicemail.policy.scrypt_n"),
    ],
)
def test_a_profile_that_cannot_work_is_refused(tmp_path: Path, old: str, new: str, named: str):
    path = make_profile(tmp_path, **{"scrypt_n = 16384": "scrypt_n = 16384", old: new})
    with pytest.raises(ProfileError, match=re.escape(named)):
        load_profile(path)
    selftest = subprocess.run(
        [sys.executable, "-m", "gatewayd", "selftest", "--profile", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert selftest.returncode != 0 and "all ok" not in selftest.stdout + selftest.stderr


def test_keys_apart_in_different_menus_and_exclusive_options_are_fine(tmp_path: Path) -> None:
    # '#' skips the greeting and ends an entry; '*' asks for the code and goes back;
    # create and modify share '1' (never offered together).
    assert load_profile(make_profile(tmp_path)).voicemail.keys == Keys()
