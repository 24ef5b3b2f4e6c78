"""The one PCM format of the box: 8000 Hz, signed 16-bit little-endian, mono, 20 ms periods.

Prompts, tones, the ALSA player, the modem's voice stream (after conversion) and the
caller's captured audio all use it; the constants live here once.
"""

from __future__ import annotations

import wave
from pathlib import Path

#: Frames per second.
RATE = 8000
#: Bytes per sample (signed 16-bit little-endian).
SAMPLE_WIDTH = 2
CHANNELS = 1
#: Bytes per frame.
FRAME_BYTES = SAMPLE_WIDTH * CHANNELS
#: One audio period: 20 ms.
PERIOD_S = 0.020
PERIOD_FRAMES = round(RATE * PERIOD_S)
PERIOD_BYTES = PERIOD_FRAMES * FRAME_BYTES


class WavError(ValueError):
    """A WAV file that is not usable as box audio; the message says why and what is expected."""


def read_wav(path: Path, *, max_seconds: float) -> bytes:
    """The PCM frames of an 8 kHz 16-bit mono WAV no longer than ``max_seconds``.

    Raises :class:`WavError` naming the problem (missing, wrong format, too long, empty);
    the size is checked from the header before any audio is read.
    """
    expected = f"expected {RATE} Hz, {SAMPLE_WIDTH * 8}-bit, mono"
    try:
        with wave.open(str(path), "rb") as wav:
            rate, width, channels = wav.getframerate(), wav.getsampwidth(), wav.getnchannels()
            count = wav.getnframes()
            if (rate, width, channels) != (RATE, SAMPLE_WIDTH, CHANNELS):
                got = f"{rate} Hz, {width * 8}-bit, {channels} channel(s)"
                raise WavError(f"{path}: {got}; {expected}")
            if count > max_seconds * RATE:
                raise WavError(
                    f"{path}: {count / RATE:.0f} s of audio is too long "
                    f"(at most {max_seconds:.0f} s)"
                )
            frames = wav.readframes(count)
    except FileNotFoundError:
        raise WavError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise WavError(f"{path}: is a directory, not a WAV file") from None
    except (wave.Error, EOFError) as exc:
        why = exc or "truncated header"
        raise WavError(f"{path}: not a PCM WAV file ({why}); {expected}") from None
    except OSError as exc:
        raise WavError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not frames:
        raise WavError(f"{path}: holds no audio frames")
    if len(frames) != count * FRAME_BYTES:
        raise WavError(f"{path}: truncated (header says {count} frames)")
    return frames
