"""The voice prompt catalogue: prompt texts from ``audio/prompts.toml``, PCM from ``audio/<lang>/``.

Every prompt is a WAV file, 8000 Hz, 16-bit signed little-endian, mono (made by
``audio/generate.sh``). A missing or broken WAV never stops a call: it is logged
once, with its path and the reason, and a short beep plays in its place.
"""

from __future__ import annotations

import array
import logging
import math
import os
import re
import sys
import threading
import tomllib
import wave
from pathlib import Path

from gatewayd.errors import ProfileError

LOGGER = logging.getLogger(__name__)

#: PCM format of every prompt (and of the beep that replaces a broken one).
SAMPLE_RATE = 8000
SAMPLE_WIDTH = 2
CHANNELS = 1

#: Name of the catalogue file inside the audio directory.
CATALOGUE_NAME = "prompts.toml"
#: Environment variable naming the audio directory (for a box where ``audio/`` is elsewhere).
AUDIO_DIR_ENV = "GATEWAYD_AUDIO_DIR"

# Ids and languages become file names: keeping them to this alphabet rules out path tricks.
_ID_RE = re.compile(r"[a-z0-9_]+")
_LANGUAGE_RE = re.compile(r"[a-z]{2,3}")


def _make_beep(seconds: float = 0.2, frequency: float = 1000.0, level_dbfs: float = -12.0) -> bytes:
    """A sine beep as S16_LE mono PCM, with 5 ms ramps so it does not click."""
    count = round(seconds * SAMPLE_RATE)
    ramp = round(0.005 * SAMPLE_RATE)
    amplitude = 32767 * 10 ** (level_dbfs / 20)
    samples = array.array("h")
    for n in range(count):
        envelope = min(1.0, n / ramp, (count - 1 - n) / ramp)
        samples.append(
            round(amplitude * envelope * math.sin(2 * math.pi * frequency * n / SAMPLE_RATE))
        )
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


#: What plays instead of a missing or broken prompt: 200 ms of 1 kHz at -12 dBFS.
BEEP_PCM = _make_beep()


class _BadWav(Exception):
    """A prompt file that cannot be played; the message is the reason."""


def _read_pcm(path: Path) -> bytes:
    """Return the PCM frames of a prompt WAV, or raise _BadWav saying what is wrong."""
    try:
        with wave.open(str(path), "rb") as wav:
            rate = wav.getframerate()
            width = wav.getsampwidth()
            channels = wav.getnchannels()
            frame_count = wav.getnframes()
            frames = wav.readframes(frame_count)
    except FileNotFoundError:
        raise _BadWav("file not found") from None
    except IsADirectoryError:
        raise _BadWav("is a directory, not a WAV file") from None
    except PermissionError:
        raise _BadWav("permission denied") from None
    except (wave.Error, EOFError) as exc:
        raise _BadWav(f"not a PCM WAV file ({exc or 'truncated header'})") from None
    except OSError as exc:
        raise _BadWav(f"cannot be read ({exc.strerror or exc})") from None
    expected = f"expected {SAMPLE_RATE} Hz, {SAMPLE_WIDTH * 8}-bit, {CHANNELS} channel"
    if rate != SAMPLE_RATE:
        raise _BadWav(f"sample rate is {rate} Hz, {expected}")
    if width != SAMPLE_WIDTH:
        raise _BadWav(f"sample width is {width * 8}-bit, {expected}")
    if channels != CHANNELS:
        raise _BadWav(f"{channels} channels, {expected}")
    if frame_count == 0:
        raise _BadWav("holds no audio frames")
    if len(frames) != frame_count * SAMPLE_WIDTH * CHANNELS:
        raise _BadWav(
            f"truncated: header says {frame_count} frames, data holds "
            f"{len(frames) // (SAMPLE_WIDTH * CHANNELS)}"
        )
    return frames


def check_wav(path: Path) -> str | None:
    """None if ``path`` is a playable prompt (8000 Hz, 16-bit, mono, not empty), else why not."""
    try:
        _read_pcm(path)
    except _BadWav as exc:
        return str(exc)
    return None


def default_audio_dir() -> Path:
    """``$GATEWAYD_AUDIO_DIR`` if set, else the ``audio/`` folder beside the package."""
    configured = os.environ.get(AUDIO_DIR_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent / "audio"


class PromptCatalogue:
    """Prompt texts and PCM in one language; build it with :meth:`load`."""

    def __init__(self, audio_dir: Path, language: str, texts: dict[str, str]) -> None:
        """Use :meth:`load`; this takes texts already checked."""
        self.audio_dir = audio_dir
        self.language = language
        self._texts = dict(texts)
        self._pcm: dict[str, bytes] = {}
        # The audio thread and the event loop may both ask for a prompt; one read, one log line.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, audio_dir: Path, language: str) -> PromptCatalogue:
        """Read ``audio_dir/prompts.toml``; every prompt must have a text in ``language``."""
        path = audio_dir / CATALOGUE_NAME
        if not _LANGUAGE_RE.fullmatch(language):
            raise ProfileError(
                f"{path}: language {language!r} is not a language code like 'fr' or 'en'"
            )
        try:
            with path.open("rb") as catalogue_file:
                document = tomllib.load(catalogue_file)
        except FileNotFoundError:
            raise ProfileError(
                f"{path}: prompt catalogue not found; set {AUDIO_DIR_ENV} to the folder "
                "holding prompts.toml and the <lang>/ WAV folders"
            ) from None
        except OSError as exc:
            raise ProfileError(f"{path}: cannot read the prompt catalogue: {exc}") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ProfileError(f"{path}: not valid TOML ({exc}); fix the file") from exc
        if not document:
            raise ProfileError(f"{path}: no prompt in the catalogue")
        texts: dict[str, str] = {}
        for prompt_id, entry in document.items():
            if not _ID_RE.fullmatch(prompt_id):
                raise ProfileError(
                    f"{path}: prompt id [{prompt_id}] may only use a-z, 0-9 and _ "
                    "(it names a WAV file)"
                )
            if not isinstance(entry, dict):
                raise ProfileError(
                    f"{path}: {prompt_id} must be a table [{prompt_id}] with one text per "
                    'language (fr = "...")'
                )
            text = entry.get(language)
            if not isinstance(text, str) or not text.strip():
                raise ProfileError(
                    f"{path}: [{prompt_id}] has no {language} text; add "
                    f'{language} = "..." and run audio/generate.sh'
                )
            texts[prompt_id] = text
        return cls(audio_dir, language, texts)

    @property
    def ids(self) -> frozenset[str]:
        """Every prompt id of the catalogue."""
        return frozenset(self._texts)

    def text(self, prompt_id: str) -> str:
        """What the prompt says, in the catalogue's language (the id itself if unknown)."""
        return self._texts.get(prompt_id, prompt_id)

    def wav_path(self, prompt_id: str) -> Path:
        """Where the prompt's WAV file is expected (for a known id)."""
        return self.audio_dir / self.language / f"{prompt_id}.wav"

    def pcm(self, prompt_id: str) -> bytes:
        """The prompt as S16_LE 8 kHz mono PCM; a beep (logged once) if it cannot be played."""
        with self._lock:
            cached = self._pcm.get(prompt_id)
            if cached is not None:
                return cached
            if prompt_id in self._texts:
                path = self.wav_path(prompt_id)
                try:
                    pcm = _read_pcm(path)
                except _BadWav as exc:
                    LOGGER.error("prompt %s: %s: %s; playing a beep instead", prompt_id, path, exc)
                    pcm = BEEP_PCM
            else:
                LOGGER.error(
                    "prompt %r: unknown prompt id, not in %s; playing a beep instead",
                    prompt_id,
                    self.audio_dir / CATALOGUE_NAME,
                )
                pcm = BEEP_PCM
            self._pcm[prompt_id] = pcm
            return pcm

    def problems(self) -> dict[str, str]:
        """Prompt id -> why its WAV cannot be played, for every broken prompt (for selftest)."""
        found: dict[str, str] = {}
        for prompt_id in sorted(self._texts):
            reason = check_wav(self.wav_path(prompt_id))
            if reason is not None:
                found[prompt_id] = f"{self.wav_path(prompt_id)}: {reason}"
        return found
