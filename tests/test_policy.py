"""Failure counter, cool-downs and lock (DESIGN.md §2.3), over the real store on disk and over
the in-memory repository: the policy is pure rules over :class:`SecretsRepository`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gatewayd.errors import PolicyError
from gatewayd.voicemail.config import Policy
from gatewayd.voicemail.policy import Access, SecretCodeService
from gatewayd.voicemail.repository import MemorySecrets, SecretsRepository
from gatewayd.voicemail.store import Store
from tests.conftest import make_service
from tests.harness import FakeClock


@dataclass
class Backend:
    """A repository as the box sees it across power cuts: ``boot`` opens what survived."""

    boot: Callable[[], contextlib.AbstractContextManager[SecretsRepository]]
    #: The failure counter a power cut right now would leave.
    durable_failures: Callable[[], int]


def _file_backend(path: Path) -> Backend:
    def durable_failures() -> int:
        return int(json.loads(path.read_text())["mailbox"]["1"]["failures"])

    return Backend(boot=lambda: Store(path), durable_failures=durable_failures)


def _memory_backend() -> Backend:
    memory = MemorySecrets()
    return Backend(
        boot=lambda: contextlib.nullcontext(memory),
        durable_failures=lambda: memory.mailbox().failures,
    )


@pytest.fixture(params=["file", "memory"])
def backend(request: pytest.FixtureRequest, state_path: Path) -> Backend:
    return _file_backend(state_path) if request.param == "file" else _memory_backend()


@pytest.fixture
def service(backend: Backend, clock: FakeClock) -> Iterator[SecretCodeService]:
    with backend.boot() as secrets:
        yield make_service(secrets, clock)


def fail(service: SecretCodeService, times: int) -> None:
    for _ in range(times):
        assert not service.check("1111", "remote").ok


def test_the_try_is_on_disk_before_the_comparison(service, backend, monkeypatch) -> None:
    service.set_code("4931", "handset")
    seen: list[int] = []
    hasher = service._hasher  # spy on the comparison: what does the file say at that moment?

    real_verify = hasher.verify

    def verify(code: str, salt: bytes, expected: bytes) -> bool:
        seen.append(backend.durable_failures())
        return bool(real_verify(code, salt, expected))

    monkeypatch.setattr(hasher, "verify", verify)
    service.check("1111", "remote")
    service.check("4931", "remote")
    assert seen == [1, 2]  # counted first, on disk, for a wrong and for a right code
    assert service.status().failures == 0


def test_cooldowns_double_and_are_capped() -> None:
    policy = Policy()
    assert [policy.cooldown_seconds(n) for n in (1, 2, 3, 6, 9)] == [0, 0, 900, 1800, 3600]
    assert Policy(lock_after=100).cooldown_seconds(99) == 24 * 3600


def test_three_failures_start_a_cooldown_on_the_monotonic_clock(service, clock) -> None:
    service.set_code("4931", "handset")
    fail(service, 3)
    assert service.access() is Access.COOLDOWN
    with pytest.raises(PolicyError):
        service.check("4931", "remote")  # refused, and not counted
    assert service.status().failures == 3
    clock.advance(899)
    assert service.access() is Access.COOLDOWN
    clock.advance(1)
    assert service.access() is Access.OPEN
    fail(service, 3)
    assert service.status().cooldown_remaining_s == 1800


def test_a_cooldown_is_rearmed_in_full_after_a_restart(backend, clock) -> None:
    with backend.boot() as store:
        service = make_service(store, clock)
        service.set_code("4931", "handset")
        fail(service, 3)
        clock.advance(800)  # 100 s left when the power goes
    restarted = FakeClock(start=5.0)  # the monotonic clock restarts with the box
    with backend.boot() as store:
        service = make_service(store, restarted)
        assert service.access() is Access.COOLDOWN
        assert service.status().cooldown_remaining_s == 900


def test_ten_failures_lock_until_a_reset_even_across_restarts(backend, clock) -> None:
    with backend.boot() as store:
        service = make_service(store, clock)
        service.set_code("4931", "handset")
        for _ in range(3):
            fail(service, 3)
            clock.advance(24 * 3600)
        fail(service, 1)
        assert service.access() is Access.LOCKED
    with backend.boot() as store:
        service = make_service(store, clock)
        assert service.access() is Access.LOCKED
        with pytest.raises(PolicyError):
            service.check("4931", "remote")
        service.reset("console")
        assert service.access() is Access.NO_CODE
        assert service.status().failures == 0 and not service.status().locked
        assert service.audit_log(1)[0]["what"] == "reset"


def test_a_right_code_clears_the_counter(service) -> None:
    service.set_code("4931", "handset")
    fail(service, 2)
    assert service.check("4931", "remote").ok
    assert service.status().failures == 0


def test_create_or_modify_from_the_handset_clears_the_counter(service, clock) -> None:
    service.set_code("4931", "handset")
    fail(service, 3)
    assert service.set_code("5827", "handset") == "modified"
    assert service.status().failures == 0
    assert service.access() is Access.OPEN


def test_only_the_handset_may_set_the_code(service) -> None:
    for origin in ("remote", "console", "ctl"):
        with pytest.raises(PolicyError, match="fixed line"):
            service.set_code("4931", origin)
    assert not service.status().code_set


def test_reset_clears_code_counter_lock_and_protection(service) -> None:
    service.set_code("4931", "handset")
    service.set_protection(True, "handset")
    fail(service, 2)
    service.reset("ctl")
    status = service.status()
    assert (status.code_set, status.failures, status.locked, status.protection) == (
        False,
        0,
        False,
        False,
    )
    assert [r["what"] for r in service.audit_log()] == [
        "created",
        "protection_on",
        "failure",
        "failure",
        "reset",
    ]


def test_the_audit_log_has_what_origin_time_and_never_digits(store, clock) -> None:
    service = make_service(store, clock)  # the file: digits must not reach the disk
    service.set_code("4931", "handset")
    fail(service, 3)
    service.reset("console")
    records = service.audit_log()
    assert {"what", "origin", "time"} <= set(records[0])
    assert "4931" not in store.path.read_text() and "1111" not in store.path.read_text()


# --- checks whose comparisons overlap (the daemon compares in a worker) -------------------


def test_a_wrong_code_compared_across_a_right_one_still_counts(service, backend) -> None:
    # Two calls, one right after the other, faster than scrypt: both tries are counted
    # before either comparison; the right one clears the counter, the wrong one after it
    # must still be counted (and audited), or it would be a free guess.
    service.set_code("4931", "handset")
    wrong = service.begin_check("2580", "remote")
    right = service.begin_check("4931", "handset")
    assert service.status().failures == 2
    assert service.settle(right, service.verify(right)).ok
    assert service.status().failures == 0
    result = service.settle(wrong, service.verify(wrong))
    assert not result.ok and result.failures == 1
    assert service.status().failures == 1
    assert service.audit_log(1)[0]["what"] == "failure"


def test_a_wrong_code_still_counts_when_the_counter_climbed_back_after_a_right_one(
    service,
) -> None:
    # The counter was cleared by a right code while the wrong try was compared, then new
    # tries were counted: the counter is back above the wrong try's place, yet its count
    # was wiped. Found by the property tests (back-to-back calls): it must count again.
    service.set_code("4931", "handset")
    wrong = service.begin_check("2580", "remote")  # counted as failure 1
    right = service.begin_check("4931", "handset")
    assert service.settle(right, service.verify(right)).ok  # cleared: failure 1 is gone
    later = [service.begin_check("4931", "remote") for _ in range(2)]  # counted as 1 and 2
    assert service.status().failures == 2
    result = service.settle(wrong, service.verify(wrong))
    assert not result.ok and result.failures == 3
    assert service.status().failures == 3
    for pending in later:
        assert service.settle(pending, service.verify(pending)).ok
    assert service.status().failures == 0


def test_wrong_codes_compared_side_by_side_count_once_each(service) -> None:
    service.set_code("4931", "handset")
    first = service.begin_check("2580", "remote")
    second = service.begin_check("1379", "remote")
    assert service.settle(first, service.verify(first)).failures == 1
    assert service.settle(second, service.verify(second)).failures == 2
    assert service.status().failures == 2


def test_a_reset_during_a_comparison_voids_its_verdict(service) -> None:
    service.set_code("4931", "handset")
    pending = service.begin_check("4931", "remote")
    service.reset("ctl")
    with pytest.raises(PolicyError, match="overtaken"):
        service.settle(pending, service.verify(pending))
    assert service.status().failures == 0 and not service.status().code_set
