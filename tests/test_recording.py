"""The recorder: a caller's speech in, the same samples stored, tails of silence and tones cut."""

from __future__ import annotations

import array
import errno
import itertools
import math
import random
import sys
import tempfile
import wave
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewayd.tones import TonePlan, tone_periods
from gatewayd.voicemail import recording
from gatewayd.voicemail.messages import MessageStore, StoreLimits
from gatewayd.voicemail.recording import (
    TAIL_KEEP_S,
    FrameClassifier,
    RecorderSettings,
    Recording,
    RecordingResult,
)
from tests.harness import FakeClock

REPO = Path(__file__).resolve().parent.parent
SPEECH_WAV = REPO / "audio" / "demo" / "caller_message.wav"
RATE = 8000


def load_speech() -> bytes:
    with wave.open(str(SPEECH_WAV), "rb") as wav:
        assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (8000, 2, 1)
        return wav.readframes(wav.getnframes())


SPEECH = load_speech()


def samples_of(pcm: bytes) -> array.array[int]:
    values = array.array("h", pcm)
    if sys.byteorder == "big":
        values.byteswap()
    return values


def pcm_of(values: Sequence[float]) -> bytes:
    out = array.array("h", (max(-32768, min(32767, round(v))) for v in values))
    if sys.byteorder == "big":
        out.byteswap()
    return out.tobytes()


def speech_end(pcm: bytes) -> int:
    """Bytes up to the last sample of audible speech (above -60 dBFS)."""
    values = samples_of(pcm)
    last = max(n for n, x in enumerate(values) if abs(x) > 33)
    return 2 * (last + 1)


def silence(seconds: float) -> bytes:
    return bytes(2 * round(seconds * RATE))


def noise(seconds: float, level_dbfs: float, seed: int = 1) -> list[float]:
    """White noise whose RMS is ``level_dbfs`` relative to a full-scale sine."""
    rng = random.Random(seed)
    sigma = 32767 / math.sqrt(2) * 10 ** (level_dbfs / 20)
    return [rng.gauss(0, sigma) for _ in range(round(seconds * RATE))]


def tone(name: str, seconds: float) -> bytes:
    periods = itertools.islice(tone_periods(TonePlan.france()[name]), round(seconds * 50))
    return b"".join(periods)


def with_noise(pcm: bytes, level_dbfs: float) -> bytes:
    values = samples_of(pcm)
    return pcm_of(
        [x + n for x, n in zip(values, noise(len(values) / RATE, level_dbfs), strict=True)]
    )


@pytest.fixture
def store(tmp_path: Path):
    with MessageStore(tmp_path / "state", wall_clock=FakeClock(1.7e9), monotonic=FakeClock()) as s:
        yield s


def feed(rec: Recording, pcm: bytes, chunk: int = 320) -> RecordingResult | None:
    for start in range(0, len(pcm), chunk):
        result = rec.feed(pcm[start : start + chunk])
        if result is not None:
            return result
    return None


def stored(store: MessageStore, result: RecordingResult) -> bytes:
    assert result.message is not None, result
    return store.pcm(result.message.id)


def test_the_stored_message_is_the_sent_speech_up_to_the_hang_up(store) -> None:
    rec = recording.start("message", store, RecorderSettings(), caller="0612345678")
    sent = SPEECH + silence(1.0)
    assert feed(rec, sent) is None
    result = rec.stop("hangup")
    kept = stored(store, result)
    assert result.reason == "hangup"
    assert kept == sent[: len(kept)]  # the same samples, in order, nothing added
    assert speech_end(SPEECH) <= len(kept) <= len(SPEECH) + 2 * RATE * TAIL_KEEP_S
    assert result.seconds == len(kept) / 2 / RATE
    assert store.list()[0].caller == "0612345678"


@pytest.mark.parametrize("chunk", [1, 7, 333, 4000])
def test_chunk_sizes_do_not_change_the_message(store, chunk: int) -> None:
    rec = recording.start("message", store, RecorderSettings())
    feed(rec, SPEECH + silence(1.0), chunk)
    reference = recording.start("message", store, RecorderSettings())
    feed(reference, SPEECH + silence(1.0))
    assert stored(store, rec.stop("key")) == stored(store, reference.stop("key"))


def test_hash_key_ends_the_recording(store) -> None:
    rec = recording.start("message", store, RecorderSettings())
    feed(rec, SPEECH)
    result = rec.stop("key")
    assert result.reason == "key" and result.message is not None
    assert rec.stop("hangup") is result and rec.feed(SPEECH) is result


@pytest.mark.parametrize("noise_dbfs", [None, -70.0, -55.0, -45.0, -35.0])
def test_ten_seconds_of_silence_end_the_recording(store, noise_dbfs: float | None) -> None:
    rec = recording.start("message", store, RecorderSettings())
    sent = SPEECH + silence(12.0)
    if noise_dbfs is not None:
        sent = with_noise(sent, noise_dbfs)
    result = feed(rec, sent)
    assert result is not None and result.reason == "silence"
    # It ended 10 s after the speech, not at the end of what was sent...
    assert rec.seconds == pytest.approx(len(SPEECH) / 2 / RATE + 10.0, abs=0.5)
    # ...and the silence is not kept.
    kept = stored(store, result)
    assert kept == sent[: len(kept)]
    assert speech_end(SPEECH) - 2 * RATE * 0.1 <= len(kept) <= len(SPEECH) + 2 * RATE * 0.4


def test_line_noise_that_starts_after_the_speech_counts_as_silence(store) -> None:
    # The sim's speech has digitally silent pauses; the noise appears only after it.
    rec = recording.start("message", store, RecorderSettings())
    noisy_tail = pcm_of(noise(14.0, -35.0))
    result = feed(rec, SPEECH + noisy_tail)
    assert result is not None and result.reason == "silence"
    assert rec.seconds <= len(SPEECH) / 2 / RATE + 10.0 + 2.0
    kept = stored(store, result)
    assert len(kept) <= len(SPEECH) + 2 * RATE * 2.0


@pytest.mark.parametrize("name", ["busy", "dial", "congestion"])
def test_hang_up_tones_are_trimmed(store, name: str) -> None:
    rec = recording.start("message", store, RecorderSettings())
    sent = SPEECH + tone(name, 4.0)
    assert feed(rec, sent) is None
    kept = stored(store, rec.stop("hangup"))
    assert kept == sent[: len(kept)]
    assert speech_end(SPEECH) <= len(kept) <= len(SPEECH) + 2 * RATE * TAIL_KEEP_S


def test_a_dial_tone_after_the_caller_left_ends_the_recording(store) -> None:
    rec = recording.start("message", store, RecorderSettings())
    result = feed(rec, SPEECH + silence(0.5) + tone("dial", 15.0))
    assert result is not None and result.reason == "silence"
    assert len(stored(store, result)) <= len(SPEECH) + 2 * RATE * TAIL_KEEP_S


def test_the_maximum_length_ends_the_recording(store) -> None:
    rec = recording.start("message", store, RecorderSettings(max_message_s=3.0))
    result = feed(rec, SPEECH * 2, chunk=4000)
    assert result is not None and result.reason == "max_length"
    kept = stored(store, result)
    assert kept == SPEECH[: len(kept)]
    assert 2.0 <= result.seconds <= 3.0 and rec.seconds == 3.0


def test_what_the_quota_leaves_caps_the_length(tmp_path: Path) -> None:
    with MessageStore(tmp_path, StoreLimits(max_total_s=5.0)) as store:
        first = recording.start("message", store, RecorderSettings())
        feed(first, SPEECH[: 2 * RATE * 2])
        first_message = first.stop("key").message
        assert first_message is not None
        second = recording.start("message", store, RecorderSettings())
        result = feed(second, SPEECH)
        assert result is not None and result.reason == "max_length"
        assert second.seconds == pytest.approx(5.0 - first_message.seconds)


def test_a_hang_up_right_after_the_beep_leaves_no_message(store) -> None:
    rec = recording.start("message", store, RecorderSettings())
    feed(rec, SPEECH[: 2 * RATE * 1] + tone("busy", 3.0))
    result = rec.stop("hangup")
    assert result.message is None and result.seconds == 0.0
    assert store.list() == [] and [p.name for p in store.directory.iterdir()] == ["index.json"]


def test_a_disk_error_ends_the_recording_and_keeps_what_was_written(tmp_path: Path) -> None:
    writes = 0

    def fault(step: str) -> None:
        nonlocal writes
        if step == "write":
            writes += 1
            if writes == 7:
                raise OSError(errno.ENOSPC, "No space left on device")

    with MessageStore(tmp_path, fault=fault) as store:
        rec = recording.start("message", store, RecorderSettings())
        result = feed(rec, SPEECH)
        assert result is not None and result.reason == "error"
        assert result.error is not None and result.error.errno == errno.ENOSPC
        kept = stored(store, result)
        assert 2.0 <= result.seconds <= 3.0 and kept == SPEECH[: len(kept)]


def test_a_greeting_is_returned_for_hearing_back_not_stored(store) -> None:
    rec = recording.start("greeting", store, RecorderSettings(greeting_max_s=4.0))
    result = feed(rec, SPEECH)
    assert result is not None and result.reason == "max_length" and result.message is None
    assert result.pcm is not None and result.pcm == SPEECH[: len(result.pcm)]
    assert store.list() == [] and store.greeting_pcm() is None


def test_the_classifier_labels_a_corpus() -> None:
    """Frames of speech, quiet and tone as a listener would name them."""

    def labels(pcm: bytes) -> list[str]:
        classifier = FrameClassifier()
        return [
            classifier.classify(samples_of(pcm[i : i + 320])) for i in range(0, len(pcm) - 319, 320)
        ]

    assert set(labels(silence(1.0))) == {"quiet"}
    assert set(labels(pcm_of(noise(3.0, -40.0)))) == {"quiet"}
    assert labels(tone("dial", 2.0))[2:] == ["tone"] * 98
    speech = labels(SPEECH)
    assert speech.count("speech") > len(speech) / 2


@settings(max_examples=25, deadline=None)
@given(
    parts=st.lists(
        st.tuples(st.sampled_from(["speech", "quiet", "noise", "busy", "dial"]), st.floats(0.1, 3)),
        min_size=1,
        max_size=6,
    ),
    chunk=st.integers(1, 2000),
    end=st.sampled_from(["key", "hangup"]),
)
def test_whatever_is_sent_the_message_is_a_prefix_of_it(parts, chunk: int, end) -> None:
    makers = {
        "speech": lambda s: (SPEECH * 2)[: 2 * round(s * RATE)],
        "quiet": silence,
        "noise": lambda s: pcm_of(noise(s, -40.0)),
        "busy": lambda s: tone("busy", s),
        "dial": lambda s: tone("dial", s),
    }
    sent = b"".join(makers[kind](seconds) for kind, seconds in parts)
    with tempfile.TemporaryDirectory() as tmp, MessageStore(Path(tmp)) as store:
        rec = recording.start("message", store, RecorderSettings(max_silence_s=2.0))
        result = feed(rec, sent, chunk) or rec.stop(end)
        if result.message is None:
            assert result.seconds == 0.0 and store.list() == []
            assert [p.name for p in store.directory.iterdir()] == ["index.json"]
        else:
            kept = store.pcm(result.message.id)
            assert kept == sent[: len(kept)] and len(kept) >= 2 * RATE * 2
