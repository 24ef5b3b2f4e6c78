"""The in-band DTMF detector against ITU-T Q.24 points, on generated signals (seeded).

Each case of the shared suite (``gatewayd.dtmf.signals.conformance_suite``) is a test:
the keys the detector reports must be exactly the keys sent. Then what a user of the
detector relies on beyond the key string: timing of starts and ends, any chunking of
the input, and silence on speech and on our own prompts.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("numpy")

import numpy as np

from gatewayd.dtmf.detector import (
    PERIOD_BYTES,
    DtmfDetector,
    KeyEnd,
    KeyEvent,
    KeyStart,
)
from gatewayd.dtmf.signals import (
    ALL_KEYS,
    POINTS,
    Case,
    conformance_suite,
    from_pcm,
    key_sequence,
    key_tone,
    silence,
    to_pcm,
)
from gatewayd.prompts import default_audio_dir

SUITE = conformance_suite()


def decode(pcm: bytes, chunk: int = PERIOD_BYTES) -> list[KeyEvent]:
    """All events of a stream fed in ``chunk``-byte pieces, flushed at the end."""
    detector = DtmfDetector()
    events: list[KeyEvent] = []
    for offset in range(0, len(pcm), chunk):
        events += detector.feed(pcm[offset : offset + chunk])
    return events + detector.flush()


def keys_of(events: list[KeyEvent]) -> str:
    return "".join(e.key for e in events if isinstance(e, KeyStart))


def test_suite_covers_every_point() -> None:
    assert {case.point for case in SUITE} == set(POINTS)
    assert len({case.name for case in SUITE}) == len(SUITE)


@pytest.mark.parametrize("case", SUITE, ids=[case.name for case in SUITE])
def test_q24_case(case: Case) -> None:
    got = keys_of(decode(case.build()))
    # Compare the strings whole: a dropped or extra key shifts everything after it.
    assert got == case.expected


def test_every_key_start_has_one_end_with_its_duration() -> None:
    rng = np.random.default_rng(1)
    lead = 0.123
    signal = key_sequence(ALL_KEYS, rng, on_s=0.07, off_s=0.05, lead_s=lead)
    events = decode(to_pcm(signal))
    starts = [e for e in events if isinstance(e, KeyStart)]
    ends = [e for e in events if isinstance(e, KeyEnd)]
    assert [e.key for e in starts] == [e.key for e in ends] == list(ALL_KEYS)
    for i, (start, end) in enumerate(zip(starts, ends, strict=True)):
        sent_at = lead + i * 0.12
        assert start.start_s == end.start_s
        assert start.start_s == pytest.approx(sent_at, abs=0.003)
        assert end.duration_s == pytest.approx(0.07, abs=0.004)
        # Recognised while the tone still sounds (barge-in), ended after it stopped.
        assert sent_at + 0.04 <= start.at_s <= sent_at + 0.07 + 0.02
        assert end.at_s >= end.end_s


def test_a_long_key_is_one_key_whatever_its_length() -> None:
    rng = np.random.default_rng(2)
    signal = np.concatenate([silence(0.05), key_tone("5", 2.5, rng), silence(0.2)])
    events = decode(to_pcm(signal))
    assert keys_of(events) == "5"
    (end,) = [e for e in events if isinstance(e, KeyEnd)]
    assert end.duration_s == pytest.approx(2.5, abs=0.004)


@pytest.mark.parametrize("chunk", [2, 100, 318, 322, 1000, 16000])
def test_any_chunking_gives_the_same_events(chunk: int) -> None:
    rng = np.random.default_rng(3)
    pcm = to_pcm(key_sequence("159#", rng))
    assert decode(pcm, chunk) == decode(pcm)


def test_flush_ends_a_key_cut_by_the_end_of_the_stream() -> None:
    rng = np.random.default_rng(4)
    pcm = to_pcm(np.concatenate([silence(0.1), key_tone("7", 0.1, rng)]))
    detector = DtmfDetector()
    events = detector.feed(pcm)
    assert [type(e) for e in events] == [KeyStart]
    (end,) = detector.flush()
    assert isinstance(end, KeyEnd)
    assert end.end_s == pytest.approx(0.2, abs=0.004)
    assert detector.flush() == []


def test_events_never_show_their_key() -> None:
    start = KeyStart("7", 1.0, 1.05)
    end = KeyEnd("7", 1.0, 1.1, 1.15)
    assert "7" not in repr(start)
    assert "7" not in repr(end).replace("1.0", "")


def _prompt_pcm(language: str) -> bytes:
    folder = default_audio_dir() / language
    wavs = sorted(folder.glob("*.wav"))
    assert wavs, f"no prompts in {folder}"
    import wave

    pcm = b""
    for path in wavs:
        with wave.open(str(path), "rb") as wav:
            pcm += wav.readframes(wav.getnframes())
    return pcm


@pytest.mark.parametrize("gain_db", [0.0, -10.0])
@pytest.mark.parametrize("language", ["fr", "en"])
def test_our_own_prompts_never_make_keys(language: str, gain_db: float) -> None:
    """Echo of the prompts on the capture, at full level and at -10 dB."""
    prompts = from_pcm(_prompt_pcm(language)) * 10 ** (gain_db / 20)
    detector = DtmfDetector()
    events = detector.feed(to_pcm(prompts)) + detector.flush()
    assert events == []
    # The gate let some periods through: the per-step tests, not the gate alone, said no.
    assert detector.stats.analysed_periods > 0


def test_keys_over_our_prompts_are_heard_exactly() -> None:
    rng = np.random.default_rng(5)
    prompts = from_pcm(_prompt_pcm("fr"))[: 8000 * 12] * 10 ** (-10 / 20)
    keys = "3103321482" + "7#1"
    sent = key_sequence(keys, rng, on_s=0.08, off_s=0.8, lead_s=0.5)
    mixed = prompts.copy()
    mixed[: len(sent)] += sent[: len(mixed)]
    assert keys_of(decode(to_pcm(mixed))) == keys


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
@pytest.mark.parametrize("voice", ["fr+m3", "fr+f2", "en-us+f4"])
def test_speech_makes_no_keys(voice: str, tmp_path: Path) -> None:
    text = (
        "Vous avez composé le quatre huit deux sept. Si ce code vous convient, tapez un. "
        "Hello, this is a long sentence about telephones, music, and the weather in Paris, "
        "spoken quickly and slowly, with numbers like one nine four one and six three three."
    )
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "--stdout", text], capture_output=True, check=True
    ).stdout
    raw = subprocess.run(
        [
            "sox",
            "-t",
            "wav",
            "-",
            "-r",
            "8000",
            "-b",
            "16",
            "-e",
            "signed",
            "-c",
            "1",
            "-t",
            "raw",
            "-",
            "sinc",
            "300-3400",
            "norm",
            "-1",
        ],
        input=wav,
        capture_output=True,
        check=True,
    ).stdout
    assert len(raw) > 8000 * 2 * 5  # several seconds of speech, near full scale
    assert decode(raw) == []
