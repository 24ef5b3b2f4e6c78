"""The TinyDB store: atomic replacement, one document per mailbox, schema, fail closed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gatewayd.errors import StateFileError
from gatewayd.voicemail.store import SCHEMA_VERSION, AtomicJSONStorage, Store


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
        assert steps == ["write", "fsync", "replace", "fsync_dir"]


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
