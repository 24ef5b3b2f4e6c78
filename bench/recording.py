"""Recording a message: CPU, flash writes, hang-up-to-listed time, and the silence detector.

    python3 bench/recording.py [--hours 1] [--dir DIR] [--vad] [--kills N]

- **CPU**: process CPU seconds per hour of recorded audio (recorder + store), fed as
  fast as possible in 20 ms chunks: speech with pauses over -55 dBFS line noise, in
  180 s messages (the default ``max_message_s``); then the recorder's classifier alone
  and the store's writer alone.
- **Writes**: bytes and fsyncs per minute of message, counted by wrapping ``os.write``
  and ``os.fsync`` (directory fsyncs included), with the injected clock advancing 20 ms
  per chunk as in a real call, so the 2 s fsync cadence is the real one.
- **Finish**: wall time from ``stop("hangup")`` of a 180 s message to its index entry
  (trim, header, fsync, rename, dir fsync, SHA-256, index write); put ``--dir`` on the
  board's flash to measure there.
- **Detector** (``--vad``): the energy detector against webrtcvad (``pip install
  webrtcvad-wheels``; not a dependency) on a corpus of espeak-ng speech followed by 12 s
  of silence, line noise at several levels, or a busy/dial tone: how many recordings
  ended by silence detection, and the trim error (kept end minus true speech end).
- **SIGKILL** (``--kills N``): the campaign of tests/test_messages.py with N kills.

Prints Markdown tables. CI never runs this.
"""

from __future__ import annotations

import argparse
import array
import itertools
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ is not installed

from gatewayd.tones import TonePlan, tone_periods
from gatewayd.voicemail import messages, recording
from gatewayd.voicemail.messages import MessageStore, StoreLimits
from gatewayd.voicemail.recording import FRAME_BYTES, FrameClassifier, RecorderSettings

REPO = Path(__file__).resolve().parents[1]
RATE = 8000
PHRASES = [
    "Bonjour, c'est Paul. Rappelle-moi quand tu peux, s'il te plaît. À bientôt.",
    "Allô, ici le cabinet du docteur Martin. Votre rendez-vous de jeudi est déplacé "
    "à neuf heures trente. Merci de nous rappeler.",
    "Salut, c'est maman. Rien de grave, je voulais juste prendre des nouvelles. Bisous.",
]


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def to_pcm(values: Iterator[float] | list[float]) -> bytes:
    out = array.array("h", (max(-32768, min(32767, round(v))) for v in values))
    if sys.byteorder == "big":
        out.byteswap()
    return out.tobytes()


def samples(pcm: bytes) -> array.array[int]:
    values = array.array("h", pcm)
    if sys.byteorder == "big":
        values.byteswap()
    return values


def noise(seconds: float, level_dbfs: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    sigma = 32767 / math.sqrt(2) * 10 ** (level_dbfs / 20)
    return [rng.gauss(0, sigma) for _ in range(round(seconds * RATE))]


def mix(pcm: bytes, level_dbfs: float | None, seed: int = 1) -> bytes:
    if level_dbfs is None:
        return pcm
    values = samples(pcm)
    extra = noise(len(values) / RATE, level_dbfs, seed)
    return to_pcm(x + n for x, n in zip(values, extra, strict=True))


def tone(name: str, seconds: float) -> bytes:
    periods = itertools.islice(tone_periods(TonePlan.france()[name]), round(seconds * 50))
    return b"".join(periods)


def speak(text: str, out: Path) -> bytes:
    """espeak-ng + sox, as audio/generate.sh does; falls back to the shipped demo message."""
    try:
        raw = out.with_suffix(".raw.wav")
        subprocess.run(
            ["espeak-ng", "-b", "1", "-v", "fr", "-s", "150", "-w", str(raw), text],
            check=True,
            capture_output=True,
        )
        sox = "sox -R -V1 {raw} -r 8000 -b 16 -e signed-integer -c 1 -L {out} " + (
            "silence 1 0.01 0.1% reverse silence 1 0.01 0.1% reverse "
            "sinc 300-3400 rate 8000 gain -n -3 pad 0.02 0.1"
        )
        command = [word.format(raw=raw, out=out) for word in sox.split()]
        subprocess.run(command, check=True, capture_output=True)
        path = out
    except (OSError, subprocess.CalledProcessError):
        path = REPO / "audio" / "demo" / "caller_message.wav"
    with wave.open(str(path), "rb") as wav:
        return wav.readframes(wav.getnframes())


def speech_end(pcm: bytes) -> int:
    """Sample index just after the last audible speech sample (> -60 dBFS)."""
    values = samples(pcm)
    return max(n for n, x in enumerate(values) if abs(x) > 33) + 1


@contextmanager
def counting_io() -> Iterator[dict[str, int]]:
    """Count bytes passed to os.write and calls of os.fsync while inside."""
    counts = {"bytes": 0, "writes": 0, "fsyncs": 0}
    real_write, real_fsync = os.write, os.fsync

    def write(fd: int, data: Any) -> int:
        written = real_write(fd, data)
        counts["bytes"] += written
        counts["writes"] += 1
        return written

    def fsync(fd: int) -> None:
        counts["fsyncs"] += 1
        real_fsync(fd)

    os.write, os.fsync = write, fsync  # type: ignore[assignment]
    try:
        yield counts
    finally:
        os.write, os.fsync = real_write, real_fsync


def message_audio(speech: list[bytes], seconds: float, seed: int) -> bytes:
    """Speech with 0.5-2 s pauses over -55 dBFS line noise, ``seconds`` long."""
    rng = random.Random(seed)
    parts: list[bytes] = []
    total = 0
    while total < seconds * RATE * 2:
        part = rng.choice(speech) + bytes(2 * round(rng.uniform(0.5, 2.0) * RATE))
        parts.append(part)
        total += len(part)
    return mix(b"".join(parts)[: round(seconds * RATE) * 2], -55.0, seed)


def feed_all(rec: recording.Recording, pcm: bytes, clock: FakeClock | None = None) -> None:
    for start in range(0, len(pcm), FRAME_BYTES):
        if rec.feed(pcm[start : start + FRAME_BYTES]) is not None:
            return
        if clock is not None:
            clock.now += 0.02


def bench_cpu(directory: Path, speech: list[bytes], hours: float) -> list[tuple[str, str]]:
    audio = message_audio(speech, 180.0, seed=7)
    count = max(1, round(hours * 3600 / 180))
    limits = StoreLimits(max_messages=10**6, max_total_s=1e9)
    settings = RecorderSettings(max_message_s=180.0)
    rows: list[tuple[str, str]] = []
    with MessageStore(directory / "cpu", limits) as store:
        started = time.process_time()
        for _ in range(count):
            rec = recording.start("message", store, settings)
            feed_all(rec, audio)
            result = rec.stop("hangup")
            assert result.message is not None
            store.delete(result.message.id)
        cpu = time.process_time() - started
    audio_h = count * 180 / 3600
    rows.append(("recorder + store, CPU s per hour of audio", f"{cpu / audio_h:.1f}"))
    classifier = FrameClassifier()
    started = time.process_time()
    for start in range(0, len(audio) - FRAME_BYTES + 1, FRAME_BYTES):
        classifier.classify(samples(audio[start : start + FRAME_BYTES]))
    cpu = time.process_time() - started
    rows.append(("classifier alone, CPU s per hour", f"{cpu * 3600 / 180:.1f}"))
    with MessageStore(directory / "cpu2", limits) as store:
        started = time.process_time()
        writer = store.writer()
        for start in range(0, len(audio), FRAME_BYTES):
            writer.write(audio[start : start + FRAME_BYTES])
        message = writer.finish()
        cpu = time.process_time() - started
        assert message is not None
    rows.append(("store writer alone, CPU s per hour", f"{cpu * 3600 / 180:.1f}"))
    return rows


def bench_writes(directory: Path, speech: list[bytes]) -> list[tuple[str, str]]:
    audio = message_audio(speech, 60.0, seed=8)
    monotonic = FakeClock()
    limits = StoreLimits(max_messages=10**6, max_total_s=1e9)
    with MessageStore(directory / "writes", limits, monotonic=monotonic) as store:
        for _ in range(3):  # a few messages in the index, as on a used box
            rec = recording.start("message", store, RecorderSettings())
            feed_all(rec, audio, monotonic)
            rec.stop("hangup")
        with counting_io() as counts:
            rec = recording.start("message", store, RecorderSettings())
            feed_all(rec, audio, monotonic)
            finish_started = time.perf_counter()
            result = rec.stop("hangup")
            finish = time.perf_counter() - finish_started
        assert result.message is not None
        minutes = 60.0 / 60
        rows = [
            ("bytes written per minute of message", f"{counts['bytes'] / minutes:,.0f}"),
            ("  of which audio", f"{result.seconds * RATE * 2 / minutes:,.0f}"),
            ("write() calls per minute", f"{counts['writes'] / minutes:.0f}"),
            ("fsyncs per minute (file + directory)", f"{counts['fsyncs'] / minutes:.0f}"),
            ("finish of a 60 s message (ms, this disk)", f"{finish * 1000:.1f}"),
        ]
        audio3 = message_audio(speech, 179.0, seed=9)  # under max_message_s: stop() finishes
        rec = recording.start("message", store, RecorderSettings())
        feed_all(rec, audio3, monotonic)
        finish_started = time.perf_counter()
        rec.stop("hangup")
        rows.append(
            (
                "finish of a 180 s message (ms, this disk)",
                f"{(time.perf_counter() - finish_started) * 1000:.1f}",
            )
        )
    return rows


class WebrtcClassifier:
    """webrtcvad in the recorder's place: speech or quiet (it has no notion of tones)."""

    mode = 2

    def __init__(self) -> None:
        import webrtcvad  # type: ignore[import-not-found,import-untyped,unused-ignore]

        self._vad = webrtcvad.Vad(self.mode)

    def classify(self, frame: array.array[int]) -> str:
        pcm = frame.tobytes() if sys.byteorder == "little" else bytes(reversed(frame.tobytes()))
        return "speech" if self._vad.is_speech(pcm, RATE) else "quiet"


def bench_vad(directory: Path, speech: list[bytes]) -> list[tuple[str, ...]]:
    tails: dict[str, Callable[[], bytes]] = {
        "silence": lambda: bytes(2 * 12 * RATE),
        "noise -60": lambda: to_pcm(noise(12.0, -60.0, 3)),
        "noise -45": lambda: to_pcm(noise(12.0, -45.0, 4)),
        "noise -35": lambda: to_pcm(noise(12.0, -35.0, 5)),
        "noise -35, tail only": lambda: to_pcm(noise(12.0, -35.0, 6)),
        "busy": lambda: tone("busy", 12.0),
        "dial": lambda: tone("dial", 12.0),
    }
    cases = []
    for s_index, clip in enumerate(speech):
        for tail_name, make_tail in tails.items():
            level = {"noise -60": -60.0, "noise -45": -45.0, "noise -35": -35.0}.get(tail_name)
            cases.append((f"{s_index}/{tail_name}", mix(clip, level, s_index), make_tail(), clip))
    detectors: dict[str, Callable[[], Any]] = {"energy (gatewayd)": FrameClassifier}
    try:
        import webrtcvad  # type: ignore[import-not-found,import-untyped,unused-ignore]  # noqa: F401

        for mode in (1, 2, 3):
            detectors[f"webrtcvad mode {mode}"] = type(
                f"Webrtc{mode}", (WebrtcClassifier,), {"mode": mode}
            )
    except ImportError:
        print("webrtcvad not installed (pip install webrtcvad-wheels): energy detector only")
    rows: list[tuple[str, ...]] = []
    original = recording.FrameClassifier
    for name, factory in detectors.items():
        setattr(recording, "FrameClassifier", factory)  # noqa: B010 (a bench-only swap)
        ended_by_silence = 0
        errors: list[float] = []
        cut = 0
        try:
            with MessageStore(
                directory / f"vad-{len(rows)}", StoreLimits(max_messages=10**6, max_total_s=1e9)
            ) as store:
                for _, speech_pcm, tail, clean in cases:
                    rec = recording.start("message", store, RecorderSettings())
                    sent = speech_pcm + tail
                    result = None
                    for start in range(0, len(sent), FRAME_BYTES):
                        result = rec.feed(sent[start : start + FRAME_BYTES])
                        if result is not None:
                            break
                    if result is None:
                        result = rec.stop("hangup")
                    else:
                        ended_by_silence += result.reason == "silence"
                    kept = round(result.seconds * RATE)
                    error = (kept - speech_end(clean)) / RATE * 1000
                    errors.append(error)
                    cut += error < -20
        finally:
            setattr(recording, "FrameClassifier", original)  # noqa: B010
        rows.append(
            (
                name,
                f"{ended_by_silence}/{len(cases)}",
                f"{statistics.median(errors):+.0f}",
                f"{max(errors):+.0f}",
                str(cut),
            )
        )
    return rows


def table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benches and print the tables."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0, help="audio for the CPU figure")
    parser.add_argument("--dir", type=Path, help="where the store lives (default: a temp)")
    parser.add_argument("--vad", action="store_true", help="compare with webrtcvad")
    parser.add_argument("--kills", type=int, default=0, help="SIGKILL campaign length")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="gatewayd-rec-") as tmp:
        directory = Path(tmp)
        speech = [speak(text, directory / f"phrase{n}.wav") for n, text in enumerate(PHRASES)]
        print(table(("CPU", "value"), bench_cpu(directory, speech, args.hours)))
        print()
        print(table(("writes (60 s message)", "value"), bench_writes(directory, speech)))
        if args.vad:
            print()
            header = (
                "detector",
                "ended by silence",
                "median trim error ms",
                "worst trim error ms",
                "speech cut",
            )
            print(table(header, bench_vad(directory, speech)))
        if args.kills:
            from tests.test_messages import crash_campaign

            (directory / "kills").mkdir()
            stats = crash_campaign(directory / "kills", args.kills)
            print()
            print(table(("SIGKILL campaign", "count"), [(k, str(v)) for k, v in stats.items()]))
    return 0


if __name__ == "__main__":
    messages.LOGGER.disabled = True
    sys.exit(main())
