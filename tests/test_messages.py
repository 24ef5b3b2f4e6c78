"""The message store on real files: what a subscriber keeps after crashes, full disks and damage."""

from __future__ import annotations

import errno
import json
import math
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gatewayd.voicemail.messages import (
    FSYNC_EVERY_S,
    GreetingError,
    MessageCorruptError,
    MessageNotFoundError,
    MessageStore,
    RecordingWriteError,
    StoreLimits,
    read_wav_pcm,
)
from tests.harness import FakeClock

REPO = Path(__file__).resolve().parent.parent
WALL = 1_764_626_400.0  # 2025-12-01 22:00:00 UTC


def tone(seconds: float, frequency: float = 700.0, amplitude: int = 8000) -> bytes:
    """A test signal (S16_LE), distinct per frequency."""
    count = round(seconds * 8000)
    return b"".join(
        round(amplitude * math.sin(2 * math.pi * frequency * n / 8000)).to_bytes(
            2, "little", signed=True
        )
        for n in range(count)
    )


class Audit:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, object]]] = []

    def __call__(self, what: str, details) -> None:
        self.lines.append((what, dict(details)))

    def whats(self) -> list[str]:
        return [what for what, _ in self.lines]


@pytest.fixture
def audit() -> Audit:
    return Audit()


def open_store(tmp_path: Path, audit: Audit | None = None, **kwargs) -> MessageStore:
    kwargs.setdefault("wall_clock", FakeClock(WALL))
    return MessageStore(tmp_path / "state", audit=audit, **kwargs)


def record(store: MessageStore, pcm: bytes, caller: str | None = None, chunk: int = 320):
    writer = store.writer(caller)
    for start in range(0, len(pcm), chunk):
        writer.write(pcm[start : start + chunk])
    return writer.finish()


def files(store: MessageStore) -> list[str]:
    return sorted(p.name for p in store.directory.iterdir())


def test_a_recorded_message_is_listed_and_plays_back_exactly(tmp_path: Path, audit) -> None:
    audio = tone(3.0)
    with open_store(tmp_path, audit) as store:
        message = record(store, audio, caller="0612345678")
        assert message is not None
        assert store.list() == [message]
        assert store.counts() == (1, 0)
        assert store.pcm(message.id) == audio
        assert message.seconds == 3.0 and message.folder == "new" and not message.recovered
        assert message.received_utc.isoformat() == "2025-12-01T22:00:00+00:00"
        assert "0612345678" not in repr(message) and "0612345678" not in message.id
        assert read_wav_pcm(store.audio_path(message.id)) == audio
    # The index is its own file, and a second open finds the same message.
    with open_store(tmp_path, audit) as store:
        assert store.list() == [message]
        assert store.get(message.id).caller == "0612345678"
    assert audit.lines == []


def test_files_are_0600_in_a_0700_directory(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        message = record(store, tone(2.5))
        assert message is not None
        store.set_greeting(tone(1.0))
        assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
        assert stat.S_IMODE(store.greetings_directory.stat().st_mode) == 0o700
        for path in [*store.directory.iterdir(), store.greeting_path]:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_recording_is_fsynced_every_two_seconds(tmp_path: Path) -> None:
    monotonic = FakeClock()
    steps: list[str] = []
    with open_store(tmp_path, monotonic=monotonic, fault=steps.append) as store:
        writer = store.writer()
        chunk = tone(0.02)
        for _ in range(500):  # 10 s of 20 ms chunks, in (injected) real time
            writer.write(chunk)
            monotonic.advance(0.02)
        assert steps.count("fsync") == 10 / FSYNC_EVERY_S - 1  # t=2, 4, 6, 8 (10 is finish)
        # What is on disk is never more than half a second behind.
        assert writer.frames - writer.frames_written <= 4000
        assert writer.finish() is not None


def test_a_message_shorter_than_the_minimum_leaves_nothing(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        assert record(store, tone(1.9)) is None
        assert store.list() == [] and files(store) == ["index.json"]


def test_list_order_mark_saved_and_delete(tmp_path: Path) -> None:
    wall = FakeClock(WALL)
    with open_store(tmp_path, wall_clock=wall) as store:
        ids = []
        for n in range(3):
            message = record(store, tone(2.0 + n, 500 + 100 * n))
            assert message is not None
            ids.append(message.id)
            wall.advance(60)
        store.mark_saved(ids[0])
        assert [m.id for m in store.list()] == [ids[1], ids[2], ids[0]]
        assert store.counts() == (2, 1)
        store.delete(ids[1])
        assert [m.id for m in store.list()] == [ids[2], ids[0]]
        store.delete(ids[2])
        store.delete(ids[0])
        assert files(store) == ["index.json"]
        with pytest.raises(MessageNotFoundError):
            store.pcm(ids[0])
    with open_store(tmp_path) as store:
        assert store.list() == []
        index = json.loads((store.directory / "index.json").read_text())
        assert index["messages"] == {}


def test_saved_survives_reopen(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        message = record(store, tone(2.0))
        assert message is not None
        store.mark_saved(message.id)
    with open_store(tmp_path) as store:
        assert store.counts() == (0, 1)


def kill_midway(store: MessageStore, seconds: float) -> str:
    """A recording whose process died: its .part stays, the writer is never finished."""
    writer = store.writer("0612345678")
    audio = tone(seconds)
    for start in range(0, len(audio), 320):
        writer.write(audio[start : start + 320])
    writer._flush(sync=True)
    os.close(writer._fd)
    return writer.id


def test_a_killed_recording_is_recovered_when_long_enough(tmp_path: Path, audit) -> None:
    with open_store(tmp_path, audit) as store:
        long_id = kill_midway(store, 3.0)
        short_id = kill_midway(store, 1.0)
    with open_store(tmp_path, audit) as store:
        [message] = store.list()
        assert message.id == long_id and message.recovered and message.folder == "new"
        assert message.seconds == 3.0 and message.caller is None
        assert store.pcm(long_id) == tone(3.0)
        assert message.received == WALL  # from the id's time stamp
        assert not any(name.endswith(".part") for name in files(store))
        assert short_id not in "".join(files(store))
    assert sorted(audit.whats()) == ["message_recovered", "recording_discarded"]
    assert "0612345678" not in repr(audit.lines)


def test_an_audio_file_without_index_entry_is_adopted(tmp_path: Path, audit) -> None:
    with open_store(tmp_path) as store:
        message = record(store, tone(2.5))
        assert message is not None
    index = tmp_path / "state" / "messages" / "index.json"
    data = json.loads(index.read_text())
    data["messages"] = {}
    index.write_text(json.dumps(data))
    with open_store(tmp_path, audit) as store:
        [adopted] = store.list()
        assert adopted.id == message.id and adopted.sha256 == message.sha256
        assert adopted.seconds == 2.5
    assert audit.whats() == ["message_adopted"]


def test_an_entry_whose_file_is_gone_or_altered_is_dropped_at_open(tmp_path: Path, audit) -> None:
    with open_store(tmp_path) as store:
        gone, altered, fine = (record(store, tone(2.0, f)) for f in (500, 600, 700))
        assert gone and altered and fine
    (tmp_path / "state" / "messages" / f"{gone.id}.wav").unlink()
    path = tmp_path / "state" / "messages" / f"{altered.id}.wav"
    raw = bytearray(path.read_bytes())
    raw[1000] ^= 0xFF
    path.write_bytes(bytes(raw))
    with open_store(tmp_path, audit) as store:
        assert [m.id for m in store.list()] == [fine.id]
        assert files(store) == [f"{fine.id}.wav", "index.json"]
    assert sorted(d["reason"] for _, d in audit.lines) == ["checksum", "file_missing"]


def test_reading_a_damaged_message_raises_and_drops_it(tmp_path: Path, audit) -> None:
    with open_store(tmp_path, audit) as store:
        altered, gone = record(store, tone(2.0)), record(store, tone(2.0, 900))
        assert altered and gone
        path = store.directory / f"{altered.id}.wav"
        path.write_bytes(path.read_bytes()[:-2] + b"\x00\x01")
        with pytest.raises(MessageCorruptError):
            store.pcm(altered.id)
        (store.directory / f"{gone.id}.wav").unlink()
        with pytest.raises(MessageNotFoundError):
            store.audio_path(gone.id)
        assert store.list() == []
    assert [d["reason"] for _, d in audit.lines] == ["checksum", "file_missing"]


@pytest.mark.parametrize(
    "content",
    [b"", b"RIFF\x00", b"garbage" * 100, "truncated"],
    ids=["empty", "short-header", "garbage", "truncated"],
)
def test_a_corrupt_or_truncated_wav_is_dropped_with_an_audit_line(
    tmp_path: Path, audit, content: bytes | str
) -> None:
    with open_store(tmp_path) as store:
        good = record(store, tone(2.0))
        assert good is not None
        donor = store.directory / f"{good.id}.wav"
        data = donor.read_bytes()[:-1000] if isinstance(content, str) else content
        bad = store.directory / "20251201T220100Z-beef.wav"
        bad.write_bytes(data)
    with open_store(tmp_path, audit) as store:
        assert [m.id for m in store.list()] == [good.id]
        assert not bad.exists()
    assert [(w, d["reason"]) for w, d in audit.lines] == [("message_dropped", "corrupt")]


def test_an_unreadable_index_is_set_aside_and_the_audio_adopted(tmp_path: Path, audit) -> None:
    with open_store(tmp_path) as store:
        message = record(store, tone(2.0))
        assert message is not None
    (tmp_path / "state" / "messages" / "index.json").write_text('{"messages": {"1": {"id"')
    with open_store(tmp_path, audit) as store:
        assert [m.id for m in store.list()] == [message.id]
        assert any(n.startswith("index.json.unreadable-") for n in files(store))
    assert audit.whats() == ["message_index_unreadable", "message_adopted"]


def full(store: MessageStore) -> bool:
    # A function, not the property inline: mypy would narrow it across the asserts.
    return store.full


def test_quota_of_messages_and_of_seconds(tmp_path: Path) -> None:
    with open_store(tmp_path, limits=StoreLimits(max_messages=2, max_total_s=100)) as store:
        assert not full(store)
        record(store, tone(2.0))
        assert not full(store)
        record(store, tone(2.0))
        assert full(store)
        store.delete(store.list()[0].id)
        assert not full(store)
    with open_store(tmp_path, limits=StoreLimits(max_total_s=5)) as store:
        assert store.seconds_left == 3.0 and not full(store)
        record(store, tone(2.0))
        assert store.seconds_left == 1.0 and full(store)  # less than min_message_s left


def test_disk_full_while_recording_keeps_what_was_written(tmp_path: Path, audit) -> None:
    writes = 0

    def fault(step: str) -> None:
        nonlocal writes
        if step == "write":
            writes += 1
            if writes == 6:  # 2.5 s are on disk (5 writes of 0.5 s), then the disk is full
                raise OSError(errno.ENOSPC, "No space left on device")

    with open_store(tmp_path, audit, fault=fault) as store:
        writer = store.writer()
        audio = tone(5.0)
        with pytest.raises(RecordingWriteError) as info:
            for start in range(0, len(audio), 320):
                writer.write(audio[start : start + 320])
        assert info.value.errno == errno.ENOSPC
        message = writer.finish()
        assert message is not None and message.seconds == 2.5
        assert store.pcm(message.id) == audio[:40000]
    assert audit.whats() == ["recording_write_error"]
    assert audit.lines[0][1]["errno"] == "ENOSPC"


def test_a_short_write_then_enospc_from_the_kernel(tmp_path: Path, monkeypatch) -> None:
    real_write = os.write
    budget = {"bytes": 44 + 3 * 16000 + 1}  # the "disk" holds the header, 3 s and an odd byte

    def full_disk_write(fd: int, data) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".part"):
            if budget["bytes"] == 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            data = bytes(data)[: budget["bytes"]]
            budget["bytes"] -= len(data)
        return real_write(fd, data)

    with open_store(tmp_path) as store:
        monkeypatch.setattr(os, "write", full_disk_write)
        writer = store.writer()
        audio = tone(6.0)
        with pytest.raises(RecordingWriteError):
            for start in range(0, len(audio), 320):
                writer.write(audio[start : start + 320])
        message = writer.finish()
        monkeypatch.undo()
        assert message is not None and message.seconds == 3.0
        assert store.pcm(message.id) == audio[:48000]


def test_a_write_error_too_early_keeps_nothing(tmp_path: Path) -> None:
    def fault(step: str) -> None:
        if step == "write":
            raise OSError(errno.EIO, "Input/output error")

    with open_store(tmp_path, fault=fault) as store:
        writer = store.writer()
        with pytest.raises(RecordingWriteError):
            for _ in range(100):
                writer.write(tone(0.1))
        assert writer.finish() is None
        assert files(store) == ["index.json"]


def test_a_full_disk_when_indexing_keeps_the_message(tmp_path: Path, audit) -> None:
    def fault(step: str) -> None:
        if step == "index":
            raise OSError(errno.ENOSPC, "No space left on device")

    with open_store(tmp_path, audit, fault=fault) as store:
        message = record(store, tone(2.5))
        assert message is not None and store.list() == [message]
        assert store.pcm(message.id) == tone(2.5)
    with open_store(tmp_path, audit) as store:
        assert [m.id for m in store.list()] == [message.id]
    assert audit.whats() == ["message_index_error", "message_adopted"]


def test_the_caller_number_is_only_in_the_index_and_debug_logs(tmp_path: Path, caplog) -> None:
    caplog.set_level("DEBUG")
    with open_store(tmp_path) as store:
        message = record(store, tone(2.0), caller="0612345678")
        assert message is not None
        kill_midway(store, 3.0)
    with open_store(tmp_path) as store:
        store.mark_saved(message.id)
        store.delete(message.id)
    loud = [r.getMessage() for r in caplog.records if r.levelno > 10]
    assert loud and not any("0612345678" in line for line in loud)
    assert any("0612345678" in r.getMessage() for r in caplog.records)  # debug only
    names = [p.name for p in (tmp_path / "state").rglob("*")]
    assert not any("0612345678" in name for name in names)


def test_the_greeting_is_stored_replaced_and_cleared(tmp_path: Path) -> None:
    with open_store(tmp_path, limits=StoreLimits(greeting_max_s=3)) as store:
        assert store.greeting_pcm() is None
        store.set_greeting(tone(2.0))
        store.set_greeting(tone(3.0, 900))
        assert store.greeting_pcm() == tone(3.0, 900)
        with pytest.raises(GreetingError, match="greeting_max_s"):
            store.set_greeting(tone(3.1))
        with pytest.raises(GreetingError):
            store.set_greeting(b"\x00")
        assert store.greeting_pcm() == tone(3.0, 900)
        assert sorted(p.name for p in store.greetings_directory.iterdir()) == ["greeting.wav"]
        store.greeting_path.write_bytes(b"RIFF junk")
        assert store.greeting_pcm() is None  # the standard greeting plays instead
        store.clear_greeting()
        store.clear_greeting()
        assert store.greeting_pcm() is None


def test_an_interrupted_greeting_write_keeps_the_old_greeting(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.set_greeting(tone(2.0))
        # What a kill during set_greeting leaves: a half-written temporary file.
        stale = store.greetings_directory / ".greeting.wav.tmp-4242"
        stale.write_bytes(b"RIFF half")
    with open_store(tmp_path) as store:
        assert store.greeting_pcm() == tone(2.0)
        assert not stale.exists()


# --- SIGKILL while recording --------------------------------------------------------------

CHILD = r"""
import sys, time, math, random
from pathlib import Path
from gatewayd.voicemail.messages import MessageStore, StoreLimits
seed, state = int(sys.argv[1]), Path(sys.argv[2])
rng = random.Random(seed)
wave = [round(8000 * math.sin(2 * math.pi * 700 * n / 8000)) for n in range(160)]
chunk = b"".join(x.to_bytes(2, "little", signed=True) for x in wave)
store = MessageStore(state, StoreLimits(min_message_s=0.5, max_messages=10**6, max_total_s=1e9))
print("ready", flush=True)
while True:
    writer = store.writer()
    print("begin", writer.id, flush=True)
    for _ in range(rng.randrange(10, 150)):
        writer.write(chunk)
        print("wrote", writer.id, writer.frames_written, flush=True)
        time.sleep(0.001)
    message = writer.finish()
    print("done", writer.id, message.seconds if message else 0, flush=True)
"""


def crash_campaign(tmp_path: Path, kills: int, seed: int = 3103) -> dict[str, int]:
    """Kill a recording child ``kills`` times at random moments; check every reopen."""
    rng = random.Random(seed)
    state = tmp_path / "state"
    finished: set[str] = set()
    stats = {"kills": 0, "finished": 0, "recovered": 0, "in_progress_short": 0}
    limits = StoreLimits(min_message_s=0.5, max_messages=10**6, max_total_s=1e9)
    for round_ in range(kills):
        log = tmp_path / "child.log"
        with log.open("w") as out:
            child = subprocess.Popen(
                [sys.executable, "-c", CHILD, str(round_), str(state)], stdout=out, cwd=REPO
            )
            while "ready" not in log.read_text():
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.4))
            child.send_signal(signal.SIGKILL)
            child.wait()
        stats["kills"] += 1
        written: dict[str, int] = {}
        ended: set[str] = set()  # finished, or discarded as too short
        # The last line may be cut by the kill: only whole lines count.
        for line in log.read_text().split("\n")[:-1]:
            parts = line.split()
            if parts[0] == "done":
                ended.add(parts[1])
                if float(parts[2]) > 0:
                    finished.add(parts[1])
                    stats["finished"] += 1
            elif parts[0] == "wrote":
                written[parts[1]] = int(parts[2])
        with MessageStore(state, limits) as store:
            listed = {m.id: m for m in store.list()}
            assert finished <= set(listed), "a finished message was lost"
            assert not list(store.directory.glob("*.part")), "a .part survived an open"
            for message_id, frames in written.items():
                if message_id in ended:
                    assert (message_id in listed) == (message_id in finished)
                    continue
                if frames >= 4000:  # killed while recording, long enough: recovered
                    assert message_id in listed, (message_id, frames)
                    assert listed[message_id].seconds >= frames / 8000
                    stats["recovered"] += 1
                    finished.add(message_id)
                else:
                    stats["in_progress_short"] += 1
            for message_id in listed:
                store.pcm(message_id)  # every listed message checks out
            finished = set(listed)
    return stats


def test_sigkill_while_recording_loses_no_finished_message(tmp_path: Path) -> None:
    """20 kills here; the long run: GATEWAYD_RECORDING_KILLS=200 pytest -k sigkill (or bench)."""
    kills = int(os.environ.get("GATEWAYD_RECORDING_KILLS", "20"))
    stats = crash_campaign(tmp_path, kills)
    assert stats["kills"] == kills
    assert stats["finished"] > 0 and stats["recovered"] + stats["in_progress_short"] > 0, stats
