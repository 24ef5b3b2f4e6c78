"""Issue 15 point 1: the cool-down and the lock follow from the durable count, whatever fails
after it; a state that cannot be written stops code checks (fail closed)."""

from __future__ import annotations

import contextlib
import errno
from pathlib import Path
from typing import Any

import pytest

from gatewayd.voicemail.config import VoicemailConfig
from gatewayd.voicemail.policy import Access, ServiceUnavailable
from gatewayd.voicemail.repository import AuditDetail, FieldValue, MemorySecrets
from gatewayd.voicemail.store import Store
from tests.conftest import FAST_POLICY, make_service
from tests.harness import FakeClock, Phone

RIGHT = "4931"
WRONG = "1111"


def enospc() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


class FullAfterCount(MemorySecrets):
    """A repository whose disk fills up once armed: every write after the next one fails."""

    def __init__(self) -> None:
        super().__init__()
        self.writes_left: int | None = None  # None: no fault

    def _spend(self) -> None:
        if self.writes_left is not None:
            if self.writes_left <= 0:
                raise enospc()
            self.writes_left -= 1

    def update_mailbox(self, **fields: FieldValue) -> None:
        self._spend()
        super().update_mailbox(**fields)

    def audit(self, what: str, origin: str, **details: AuditDetail) -> None:
        self._spend()  # the audit write is the one that does not fit
        super().audit(what, origin, **details)

    def check_writable(self) -> None:
        if self.writes_left is not None and self.writes_left <= 0:
            raise enospc()


def test_enospc_after_the_count_still_starts_the_cooldown() -> None:
    clock = FakeClock()
    secrets = FullAfterCount()
    service = make_service(secrets, clock)
    service.set_code(RIGHT, "handset")
    for _ in range(2):
        assert not service.check(WRONG, "remote").ok
    secrets.writes_left = 1  # the count of the third try fits, the audit after it does not
    with contextlib.suppress(Exception):
        service.check(WRONG, "remote")
    assert secrets.mailbox().failures == 3
    # The third failure's cool-down is in force: no fourth try, not even the right code.
    assert service.access() is not Access.OPEN
    assert service.status().cooldown_remaining_s > 0 or not service.writable
    secrets.writes_left = None  # space freed: the cool-down still holds
    assert service.access() is Access.COOLDOWN
    clock.advance(FAST_POLICY.cooldown_first_s + 1)
    assert service.access() is Access.OPEN
    assert service.check(RIGHT, "remote").ok


def test_a_comparison_that_raises_after_the_count_still_starts_the_cooldown(monkeypatch) -> None:
    clock = FakeClock()
    service = make_service(MemorySecrets(), clock)
    service.set_code(RIGHT, "handset")
    for _ in range(2):
        service.check(WRONG, "remote")

    def broken(*args: Any) -> bool:
        raise MemoryError("scrypt")

    monkeypatch.setattr(service._hasher, "verify", broken)
    with pytest.raises(MemoryError):
        service.check(RIGHT, "remote")
    assert service.access() is Access.COOLDOWN  # counted as a failure until proven right


def test_a_count_that_cannot_be_written_stops_code_checks() -> None:
    clock = FakeClock()
    secrets = FullAfterCount()
    service = make_service(secrets, clock)
    service.set_code(RIGHT, "handset")
    secrets.writes_left = 0
    with pytest.raises(ServiceUnavailable):
        service.check(RIGHT, "remote")  # nothing compared: the right code gets nowhere
    assert secrets.mailbox().failures == 0
    assert service.access() is Access.UNAVAILABLE
    assert not service.writable
    secrets.writes_left = None
    assert service.access() is Access.OPEN  # writable again: checks resume
    assert service.check(RIGHT, "remote").ok


def test_a_real_store_that_fills_up_after_the_count(tmp_path: Path) -> None:
    """The store's own fault hook: the count's replacement lands, the next write gets ENOSPC."""
    writes: dict[str, int | None] = {"left": None}

    def fault(step: str) -> None:
        if step in ("write", "audit_write") and writes["left"] is not None:
            if writes["left"] <= 0:
                raise enospc()
            writes["left"] -= 1

    clock = FakeClock()
    with Store(tmp_path / "gatewayd.json", fault=fault) as store:
        service = make_service(store, clock)
        service.set_code(RIGHT, "handset")
        for _ in range(FAST_POLICY.lock_after - 1):
            clock.advance(FAST_POLICY.cooldown_cap_s + 1)
            service.check(WRONG, "remote")
        clock.advance(FAST_POLICY.cooldown_cap_s + 1)
        writes["left"] = 1  # the count lands; the lock flag and the audit do not
        with contextlib.suppress(Exception):
            service.check(WRONG, "remote")
        assert store.mailbox().failures == FAST_POLICY.lock_after
        assert service.access() is Access.LOCKED
    writes["left"] = None
    with Store(tmp_path / "gatewayd.json") as reopened:
        assert make_service(reopened, clock).access() is Access.LOCKED


def right_code_on_a_full_disk(writes_left: int) -> tuple[Phone, FullAfterCount, list[str]]:
    """A caller keys the right code when only ``writes_left`` writes still fit."""
    clock = FakeClock()
    secrets = FullAfterCount()
    service = make_service(secrets, clock)
    service.set_code(RIGHT, "handset")
    phone = Phone(service, VoicemailConfig(policy=FAST_POLICY), clock)
    phone.call_for_code()
    secrets.writes_left = writes_left
    phone.hear()
    phone.press(RIGHT + "#")
    return phone, secrets, phone.hear()


def test_the_caller_hears_service_unavailable_and_the_right_code_does_not_open() -> None:
    phone, _, heard = right_code_on_a_full_disk(0)
    assert "service_unavailable" in heard
    assert phone.hung_up
    assert phone.ivr.state == "idle"
    assert not any(e.get("result") == "ok" for e in phone.events_of("auth"))
    # The next caller is told at once, without being asked for a code.
    phone.hung_up = False
    phone.call_for_code()
    assert phone.hear()[:1] == ["service_unavailable"]


def test_a_right_code_whose_clearing_cannot_be_written_does_not_open() -> None:
    # The count lands, the comparison (in the worker) says right, the clearing does not fit.
    phone, secrets, heard = right_code_on_a_full_disk(1)
    assert "service_unavailable" in heard and phone.hung_up
    assert not any(e.get("result") == "ok" for e in phone.events_of("auth"))
    assert secrets.mailbox().failures == 1  # the try stays counted
    assert phone.service.access() is Access.UNAVAILABLE


def test_a_verdict_failing_after_its_call_ended_leaves_the_next_call_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    service = make_service(MemorySecrets(), clock)
    service.set_code(RIGHT, "handset")
    phone = Phone(service, VoicemailConfig(policy=FAST_POLICY), clock)
    phone.call_for_code()
    phone.hold_checks = True
    phone.press(WRONG + "#")  # compared in the worker...
    phone.remote_hang_up()  # ...while the caller hangs up
    phone.lift()  # and the subscriber starts a call
    phone.dial("3103")
    state = phone.ivr.state

    def broken(*args: Any) -> Any:
        raise RuntimeError("bug in settling")

    monkeypatch.setattr(service, "settle", broken)
    phone.release_checks()
    assert phone.ivr.state == state and phone.ivr.party == "handset"  # not ended
    assert [e for e in phone.events_of("call") if e.get("reason") == "error"] == []


def test_store_check_writable_sees_a_full_disk(tmp_path: Path, monkeypatch) -> None:
    import os

    from gatewayd.errors import StateFileError

    with Store(tmp_path / "gatewayd.json") as store:
        store.check_writable()
        real = os.statvfs

        class Full:
            def __init__(self, path: Any) -> None:
                result = real(path)
                self.f_flag, self.f_frsize, self.f_bavail = result.f_flag, result.f_frsize, 0

        monkeypatch.setattr(os, "statvfs", Full)
        with pytest.raises(StateFileError, match="bytes free"):
            store.check_writable()


# --- point 2: after an error in a call, hang up or error tone, and keys masked -------------


class ReadOnlyAfter(MemorySecrets):
    """The state's file system turns read-only: every write raises EROFS once ``broken``."""

    broken = False

    def update_mailbox(self, **fields: FieldValue) -> None:
        if self.broken:
            raise OSError(errno.EROFS, "Read-only file system")
        super().update_mailbox(**fields)

    def check_writable(self) -> None:
        if self.broken:
            raise OSError(errno.EROFS, "Read-only file system")


def test_an_error_on_the_handset_gives_the_error_tone_and_masks_what_follows() -> None:
    clock = FakeClock()
    secrets = ReadOnlyAfter()
    phone = Phone(make_service(secrets, clock), VoicemailConfig(policy=FAST_POLICY), clock)
    phone.lift()
    phone.dial("3103")
    phone.press("321")  # personalise, code, create
    phone.press(RIGHT + "#")
    secrets.broken = True
    phone.hear()
    phone.press("1")  # keep it: storing the code fails
    assert phone.hear()[-1] == "tone:congestion"
    assert phone.ivr.state == "dead" and phone.ivr.masking
    mark = len(phone.events)
    phone.press("*****1*****4931#")
    keys = [e["key"] for e in phone.events[mark:] if e["type"] == "key"]
    assert keys == ["masked"] * 16
    phone.hang_up()
    assert phone.ivr.state == "idle" and phone.ivr.masking  # no call: nothing in clear


def test_an_error_in_a_remote_call_hangs_it_up_and_later_keys_are_masked(monkeypatch) -> None:
    clock = FakeClock()
    service = make_service(MemorySecrets(), clock)
    service.set_code(RIGHT, "handset")
    phone = Phone(service, VoicemailConfig(policy=FAST_POLICY), clock)
    phone.call_for_code()

    def broken(*args: Any) -> bool:
        raise RuntimeError("bug")

    monkeypatch.setattr(service._hasher, "verify", broken)
    phone.press("5827#")
    assert phone.hung_up
    assert phone.events_of("call")[-1]["reason"] == "error"
    assert phone.ivr.masking  # keys the modem still reports are masked
    mark = len(phone.events)
    phone.press("4931#", "remote")
    assert [e for e in phone.events[mark:] if e.get("key") not in (None, "masked")] == []
