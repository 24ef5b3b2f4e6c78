"""The TinyDB store: atomic replacement, one document per mailbox, schema, fail closed."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from gatewayd.errors import StateFileError
from gatewayd.voicemail import repository
from gatewayd.voicemail.auditlog import audit_path
from gatewayd.voicemail.hashing import HASH_BYTES, SALT_BYTES
from gatewayd.voicemail.store import SCHEMA_VERSION, AtomicJSONStorage, Store
from tests.conftest import make_service
from tests.harness import FakeClock


def test_a_new_store_has_a_schema_and_an_empty_mailbox(state_path: Path) -> None:
    with Store(state_path) as store:
        mailbox = store.mailbox()
        assert (mailbox.code_set, mailbox.failures, mailbox.locked) == (False, 0, False)
    data = json.loads(state_path.read_text())
    assert data["meta"]["1"]["schema"] == SCHEMA_VERSION
    assert len(data["mailbox"]) == 1


def test_one_mailbox_update_is_one_file_replacement(state_path: Path) -> None:
    steps: list[str] = []
    with Store(state_path, fault=steps.append) as store:
        steps.clear()
        store.update_mailbox(code_hash=b"\x01" * 32, salt=b"\x02" * 16, failures=0)
        assert steps == ["write", "fsync", "replace", "fsync_dir"]
        steps.clear()
        with store.transaction():
            store.update_mailbox(failures=1)
            store.audit("failure", "remote", failures=1)
            store.audit("cooldown", "remote", seconds=900)
        # The secrets first, in one replacement; then both audit records in one append.
        assert steps == ["write", "fsync", "replace", "fsync_dir", "audit_write", "audit_fsync"]


def test_a_failed_transaction_leaves_the_file_as_it_was(state_path: Path) -> None:
    with Store(state_path) as store:
        before = state_path.read_bytes()
        with pytest.raises(RuntimeError), store.transaction():
            store.update_mailbox(failures=5)
            raise RuntimeError("power cut")
        assert state_path.read_bytes() == before
        assert store.mailbox().failures == 0


def test_stale_temp_files_are_removed_at_open(state_path: Path) -> None:
    Store(state_path).close()
    stale = state_path.with_name(f".{state_path.name}.tmp-12345")
    stale.write_text('{"half": ')
    Store(state_path).close()
    assert not stale.exists()


@pytest.mark.parametrize(
    "content",
    [b"", b'{"mailbox": {"1": {"failu', b"\x00\x00\x00", b"[]", b'{"mailbox": {}}'],
    ids=["empty", "truncated", "zeros", "list", "no-schema"],
)
def test_an_unreadable_state_file_is_never_read_as_empty(state_path: Path, content) -> None:
    state_path.parent.mkdir(parents=True)
    state_path.write_bytes(content)
    with pytest.raises(StateFileError) as err:
        Store(state_path)
    assert str(state_path) in str(err.value)
    assert "Restore the file from a backup" in str(err.value)
    assert state_path.read_bytes() == content  # left untouched for the technician


def test_a_future_schema_is_refused(state_path: Path) -> None:
    Store(state_path).close()
    data = json.loads(state_path.read_text())
    data["meta"]["1"]["schema"] = SCHEMA_VERSION + 1
    state_path.write_text(json.dumps(data))
    with pytest.raises(StateFileError, match="schema"):
        Store(state_path)


def test_a_malformed_mailbox_fails_closed(state_path: Path) -> None:
    Store(state_path).close()
    data = json.loads(state_path.read_text())
    data["mailbox"]["1"]["failures"] = "three"
    state_path.write_text(json.dumps(data))
    with pytest.raises(StateFileError, match="malformed mailbox"):
        Store(state_path)


def test_the_state_file_is_private(state_path: Path) -> None:
    Store(state_path).close()
    assert state_path.stat().st_mode & 0o077 == 0


def test_storage_reads_none_for_a_missing_file(tmp_path: Path) -> None:
    assert AtomicJSONStorage(str(tmp_path / "absent.json")).read() is None


# --- the audit log, in its own file ------------------------------------------------------


def _v1_file(path: Path, audit: int) -> dict[str, object]:
    """A state file as gatewayd wrote it with schema 1: the audit table inside."""
    mailbox = {
        "mailbox": "default",
        "code_hash": "ab" * HASH_BYTES,
        "salt": "cd" * SALT_BYTES,
        "failures": 2,
        "locked": False,
        "protection": True,
    }
    records = {
        str(n): {"what": "failure", "origin": "remote", "time": 1.5e9 + n, "failures": n}
        for n in range(1, audit + 1)
    }
    data = {"meta": {"1": {"schema": 1}}, "mailbox": {"1": mailbox}, "audit": records}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return data


def test_a_schema_1_file_is_migrated_and_keeps_its_secrets_and_audit(state_path: Path) -> None:
    _v1_file(state_path, audit=3)
    with Store(state_path) as store:
        mailbox = store.mailbox()
        assert (mailbox.code_hash, mailbox.failures, mailbox.protection) == (
            b"\xab" * HASH_BYTES,
            2,
            True,
        )
        assert [r["failures"] for r in store.audit_log()] == [1, 2, 3]
        store.audit("reset", "console")
    data = json.loads(state_path.read_text())
    assert data["meta"]["1"]["schema"] == SCHEMA_VERSION == 2
    assert "audit" not in data
    with Store(state_path) as store:  # and it opens again, as schema 2
        assert [r["what"] for r in store.audit_log()] == ["failure"] * 3 + ["reset"]


def test_a_migration_interrupted_after_the_log_is_redone_without_duplicates(
    state_path: Path,
) -> None:
    _v1_file(state_path, audit=3)
    before = state_path.read_bytes()
    with Store(state_path):
        pass
    state_path.write_bytes(before)  # as if the power went before the state file was replaced
    with Store(state_path) as store:
        assert [r["failures"] for r in store.audit_log()] == [1, 2, 3]


def test_a_change_of_the_secrets_writes_bytes_not_the_whole_audit_log(
    state_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Store(state_path) as store:
        with store.transaction():
            for n in range(repository.AUDIT_MAX):
                store.audit("failure", "remote", failures=n % 10 + 1)
        log_size = audit_path(state_path).stat().st_size
        sizes: list[int] = []
        real_write = os.write

        def write(fd: int, data: bytes | memoryview) -> int:
            sizes.append(len(data))
            return real_write(fd, data)

        monkeypatch.setattr(os, "write", write)
        store.update_mailbox(failures=1)
        store.audit("failure", "remote", failures=1)
        monkeypatch.undo()
    assert log_size > 50_000
    assert sum(sizes) < 1_000  # a small state file and one audit line


def test_the_log_rotates_at_the_cap_and_keeps_the_newest(
    state_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(repository, "AUDIT_MAX", 4)
    with Store(state_path) as store:
        for n in range(1, 11):
            store.audit("failure", "remote", failures=n)
        assert [r["failures"] for r in store.audit_log()] == [7, 8, 9, 10]
    log = audit_path(state_path)
    lines = [len(p.read_bytes().splitlines()) for p in (log.with_name(log.name + ".1"), log)]
    assert lines == [4, 2]  # at most twice the cap on the flash


def test_a_torn_last_audit_line_is_cut_off_at_open(
    state_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Store(state_path) as store:
        store.audit("created", "handset")
    log = audit_path(state_path)
    with log.open("ab") as torn:
        torn.write(b'{"what":"fail')  # the power went during an append
    with Store(state_path) as store:
        store.audit("reset", "console")
        assert [r["what"] for r in store.audit_log()] == ["created", "reset"]
    assert "torn last audit record" in caplog.text


def test_an_audit_that_cannot_be_written_never_skips_the_count(
    state_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    def full_disk(step: str) -> None:
        if step.startswith("audit_"):
            raise OSError(28, "No space left on device")

    with Store(state_path) as store:
        make_service(store, clock).set_code("4931", "handset")
    with Store(state_path, fault=full_disk) as store, caplog.at_level(logging.ERROR):
        result = make_service(store, clock).check("1111", "remote")
        assert (result.ok, result.failures) == (False, 1)
    with Store(state_path) as store:
        assert store.mailbox().failures == 1  # counted, on disk
        assert [r["what"] for r in store.audit_log()] == ["created"]
    assert "could not append 1 audit record" in caplog.text
    assert str(audit_path(state_path)) in caplog.text
