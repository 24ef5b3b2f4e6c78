"""``gatewayd dtmf decode FILE [--raw]``: the keys in a recording of a line, with their timing.

A field tool: a technician records the line (``arecord -f S16_LE -r 8000 -c 1 line.wav``)
and reads which keys were sent, when, and for how long; ``bench/dtmf.py`` uses it too.
Output, one key per line: ``KEY  START_S  DURATION_MS`` (tab-separated), then a summary
line on stderr. WAV input must be 8000 Hz, 16-bit, mono; ``--raw`` reads headerless
8 kHz S16_LE mono. ``--mask`` prints ``*`` for digits (a recording may hold a secret code).

Exit status: 0 on success (even with no key found), 2 on a bad file or bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

from gatewayd.dtmf import require_numpy
from gatewayd.errors import ProfileError

#: Bytes read per call: 1 s of audio (the detector works on 20 ms periods either way).
CHUNK_BYTES = 16000


class _BadInput(Exception):
    """A file that cannot be decoded; the message says why and what to do."""


def _wav_chunks(path: Path) -> Iterator[bytes]:
    try:
        wav = wave.open(str(path), "rb")  # noqa: SIM115  (closed by the with below)
    except (wave.Error, EOFError) as exc:
        raise _BadInput(
            f"{path}: not a PCM WAV file ({exc or 'truncated header'}); "
            "for headerless audio use --raw"
        ) from None
    with wav:
        rate, width, channels = wav.getframerate(), wav.getsampwidth(), wav.getnchannels()
        if (rate, width, channels) != (8000, 2, 1):
            raise _BadInput(
                f"{path}: {rate} Hz, {width * 8}-bit, {channels} channel(s); expected 8000 Hz "
                f"16-bit mono: convert with 'sox {path.name} -r 8000 -b 16 -c 1 out.wav'"
            )
        while chunk := wav.readframes(CHUNK_BYTES // 2):
            yield chunk


def _raw_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk


def decode_file(path: Path, raw: bool = False) -> list[tuple[str, float, float]]:
    """(key, start_s, duration_s) of every key in the file, in order."""
    require_numpy("`gatewayd dtmf decode` finds the keys with numpy's FFT")
    from gatewayd.dtmf.detector import DtmfDetector, KeyEnd

    detector = DtmfDetector()
    keys: list[tuple[str, float, float]] = []
    try:
        chunks = _raw_chunks(path) if raw else _wav_chunks(path)
        for chunk in chunks:
            for event in detector.feed(chunk):
                if isinstance(event, KeyEnd):
                    keys.append((event.key, event.start_s, event.duration_s))
    except OSError as exc:
        raise _BadInput(f"{path}: cannot be read ({exc.strerror or exc})") from None
    for event in detector.flush():
        if isinstance(event, KeyEnd):
            keys.append((event.key, event.start_s, event.duration_s))
    return keys


def main(argv: list[str]) -> int:
    """``dtmf decode FILE [--raw] [--mask]``; ``argv`` excludes the program name."""
    parser = argparse.ArgumentParser(
        prog="gatewayd dtmf", description="In-band DTMF tools (needs the [inband] extra)."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    decode = commands.add_parser(
        "decode",
        help="print the keys in a recording: key, start (s), duration (ms)",
        description="Print each DTMF key in FILE with its start time and duration.",
    )
    decode.add_argument("file", type=Path, metavar="FILE", help="8 kHz 16-bit mono WAV, or raw")
    decode.add_argument("--raw", action="store_true", help="FILE is headerless 8 kHz S16_LE mono")
    decode.add_argument("--mask", action="store_true", help="print * instead of digits")
    args = parser.parse_args(argv)
    try:
        keys = decode_file(args.file, raw=args.raw)
    except (_BadInput, ProfileError) as exc:
        print(f"gatewayd dtmf decode: {exc}", file=sys.stderr)
        return 2
    for key, start_s, duration_s in keys:
        shown = "*" if args.mask and key.isdigit() else key
        print(f"{shown}\t{start_s:.3f}\t{duration_s * 1000:.0f}")
    print(f"{len(keys)} key(s)", file=sys.stderr)
    return 0
