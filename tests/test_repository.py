"""One contract for every SecretsRepository: the TinyDB file on the box and the in-memory one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayd.voicemail import repository
from gatewayd.voicemail.repository import AUDIT_MAX, MemorySecrets, SecretsRepository
from gatewayd.voicemail.store import Store

WALL_CLOCK = 1_700_000_000.0
HASH, SALT = b"\x01" * 32, b"\x02" * 16


@pytest.fixture(params=["file", "memory"])
def secrets(request: pytest.FixtureRequest, state_path: Path) -> Iterator[SecretsRepository]:
    if request.param == "memory":
        yield MemorySecrets(wall_clock=lambda: WALL_CLOCK)
        return
    with Store(state_path, wall_clock=lambda: WALL_CLOCK) as store:
        yield store


def test_a_new_repository_has_no_code_and_no_failures(secrets: SecretsRepository) -> None:
    mailbox = secrets.mailbox()
    assert (mailbox.code_set, mailbox.failures, mailbox.locked, mailbox.protection) == (
        False,
        0,
        False,
        False,
    )
    assert secrets.audit_log() == []


def test_updates_are_read_back(secrets: SecretsRepository) -> None:
    secrets.update_mailbox(code_hash=HASH, salt=SALT, failures=2)
    secrets.update_mailbox(protection=True)
    mailbox = secrets.mailbox()
    assert (mailbox.code_hash, mailbox.salt, mailbox.failures, mailbox.protection) == (
        HASH,
        SALT,
        2,
        True,
    )


def test_a_transaction_that_raises_changes_nothing(secrets: SecretsRepository) -> None:
    secrets.update_mailbox(failures=1)
    with pytest.raises(RuntimeError), secrets.transaction():
        secrets.update_mailbox(failures=5, locked=True)
        secrets.audit("lock", "remote", failures=5)
        raise RuntimeError("power cut")
    assert (secrets.mailbox().failures, secrets.mailbox().locked) == (1, False)
    assert secrets.audit_log() == []


def test_audit_records_have_what_origin_time_and_details(secrets: SecretsRepository) -> None:
    secrets.audit("failure", "remote", failures=1)
    secrets.audit("cooldown", "remote", seconds=900.0)
    assert secrets.audit_log() == [
        {"what": "failure", "origin": "remote", "time": WALL_CLOCK, "failures": 1},
        {"what": "cooldown", "origin": "remote", "time": WALL_CLOCK, "seconds": 900.0},
    ]
    assert secrets.audit_log(1)[0]["what"] == "cooldown"


def test_the_audit_log_keeps_the_newest_records(
    secrets: SecretsRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert AUDIT_MAX == 1000  # the shipped cap; a small one keeps this test fast
    monkeypatch.setattr(repository, "AUDIT_MAX", 5)
    monkeypatch.setattr("gatewayd.voicemail.store.AUDIT_MAX", 5)
    with secrets.transaction():
        for failures in range(1, 9):
            secrets.audit("failure", "remote", failures=failures)
    assert [r["failures"] for r in secrets.audit_log()] == [4, 5, 6, 7, 8]


def test_unknown_fields_and_audit_events_are_refused(secrets: SecretsRepository) -> None:
    with pytest.raises(KeyError, match="pin"):
        secrets.update_mailbox(pin=1234)
    with pytest.raises(ValueError, match="peeked"):
        secrets.audit("peeked", "remote")
    assert secrets.mailbox().failures == 0 and secrets.audit_log() == []


def test_memory_counts_the_writes_a_file_would_make() -> None:
    memory = MemorySecrets()
    memory.update_mailbox(failures=1)
    with memory.transaction():
        memory.update_mailbox(failures=0)
        memory.audit("created", "handset")
    with memory.transaction():
        pass
    assert memory.writes == 2
