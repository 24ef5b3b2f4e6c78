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
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

from gatewayd.errors import ProfileError
from gatewayd.events import ComposedPrompt, MaskedPrompt, OwnGreeting, PromptRef, SpokenDigit
from gatewayd.paths import shipped_dir
from gatewayd.voicemail.config import Keys
from gatewayd.voicemail.flow import announcements

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
#: The beep before a recording (DESIGN §7.1: 1000 Hz, 500 ms), made here, not recorded.
RECORD_BEEP_ID = "beep"
RECORD_BEEP_PCM = _make_beep(seconds=0.5, frequency=1000.0, level_dbfs=-10.0)


#: PCM kept in memory: 256 KiB is 16 s of prompts, the menus of a call (issue 13: frugal).
PROMPT_CACHE_BYTES = 256 * 1024


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
    """``$GATEWAYD_AUDIO_DIR`` if set, else the ``audio`` folder gatewayd ships."""
    configured = os.environ.get(AUDIO_DIR_ENV)
    if configured:
        return Path(configured)
    return shipped_dir("audio")


class PromptCatalogue:
    """Prompt texts and PCM in one language; build it with :meth:`load`."""

    def __init__(
        self,
        audio_dir: Path,
        language: str,
        texts: dict[str, str],
        composed: Mapping[str, ComposedPrompt] | None = None,
        cache_bytes: int = PROMPT_CACHE_BYTES,
    ) -> None:
        """Use :meth:`load`; this takes texts already checked."""
        self.audio_dir = audio_dir
        self.language = language
        self._texts = dict(texts)
        self._composed = dict(composed or {})
        #: The prompts read last, most recent at the end, at most ``cache_bytes`` of PCM:
        #: the menus a call goes through stay in memory, the whole catalogue (~5 MB) never.
        self._pcm: OrderedDict[str, bytes] = OrderedDict()
        self._cached_bytes = 0
        self.cache_bytes = cache_bytes
        #: Prompts found missing or broken: a beep, without reading or logging again.
        self._unplayable: set[str] = set()
        # The audio thread and the event loop may both ask for a prompt; one read, one log line.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, audio_dir: Path, language: str, keys: Keys | None = None) -> PromptCatalogue:
        """Read ``audio_dir/prompts.toml``; every prompt must have a text in ``language``.

        The menus composed with ``keys`` (default: the default keys) are known by id too,
        so ``play main_menu`` says the profile's keys.
        """
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
        return cls(audio_dir, language, texts, announcements(keys or Keys()))

    @property
    def ids(self) -> frozenset[str]:
        """Every prompt id of the catalogue."""
        return frozenset(self._texts)

    @property
    def composed_ids(self) -> frozenset[str]:
        """The ids of the composed menus and entries (no WAV of their own)."""
        return frozenset(self._composed)

    def knows(self, prompt_id: str) -> bool:
        """Whether ``prompt_id`` is a prompt or a composed menu of this catalogue."""
        return prompt_id in self._texts or prompt_id in self._composed or prompt_id == "beep"

    def text(self, prompt_id: str) -> str:
        """What the prompt says, in the catalogue's language (the id itself if unknown)."""
        if prompt_id in self._composed:
            return self.compose_text(self._composed[prompt_id].sentences)
        return self._texts.get(prompt_id, prompt_id)

    def wav_path(self, prompt_id: str) -> Path:
        """Where the prompt's WAV file is expected (for a known id)."""
        return self.audio_dir / self.language / f"{prompt_id}.wav"

    def pcm(self, prompt_id: str) -> bytes:
        """The prompt as S16_LE 8 kHz mono PCM; a beep (logged once) if it cannot be played."""
        if prompt_id in self._composed:
            return self.pcm_of(self._composed[prompt_id])
        if prompt_id == RECORD_BEEP_ID:
            return RECORD_BEEP_PCM
        with self._lock:
            cached = self._pcm.get(prompt_id)
            if cached is not None:
                self._pcm.move_to_end(prompt_id)
                return cached
            if prompt_id in self._unplayable:
                return BEEP_PCM  # said once in the log already
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
            if pcm is BEEP_PCM:
                self._unplayable.add(prompt_id)
            else:
                self._remember(prompt_id, pcm)
            return pcm

    def _remember(self, prompt_id: str, pcm: bytes) -> None:
        """Cache ``pcm``, forgetting the prompts used longest ago beyond ``cache_bytes``."""
        if len(pcm) > self.cache_bytes:
            return  # a long prompt is read again from flash each time (a few ms)
        self._pcm[prompt_id] = pcm
        self._cached_bytes += len(pcm)
        while self._cached_bytes > self.cache_bytes:
            _, dropped = self._pcm.popitem(last=False)
            self._cached_bytes -= len(dropped)

    @property
    def cached_bytes(self) -> int:
        """PCM held in memory now (bounded by ``cache_bytes``)."""
        return self._cached_bytes

    def pcm_of(self, ref: PromptRef) -> bytes:
        """The PCM of a prompt reference: an id, a spoken digit, or a composed menu."""
        if isinstance(ref, SpokenDigit):
            return self.pcm(ref.prompt_id())
        if isinstance(ref, ComposedPrompt | MaskedPrompt):
            return b"".join(self.pcm(fragment) for fragment in ref.fragments)
        if isinstance(ref, OwnGreeting):
            # The daemon plays the subscriber's greeting from the mailbox; here, the standard one.
            return self.pcm("greeting_standard")
        if isinstance(ref, str):
            return self.pcm(ref)
        # Mailbox audio the daemon could not read (it logged why): a beep in its place.
        return BEEP_PCM

    def compose_text(self, sentences: Sequence[Sequence[str]]) -> str:
        """What a composed prompt says, written: "Pour écouter vos messages, tapez 1. ..."

        A sentence is a phrase, then its joining words and key: a comma after the phrase,
        a full stop at the end; spoken digits are written as digits.
        """
        written = []
        for sentence in sentences:
            words = [self._written(fragment) for fragment in sentence]
            if not words:
                continue
            text = words[0] if len(words) == 1 else f"{words[0]}, {' '.join(words[1:])}"
            written.append(text if text.endswith((".", "?", "!")) else f"{text}.")
        return " ".join(written)

    def _written(self, fragment: str) -> str:
        if fragment.startswith("digit_") and fragment[6:].isdigit():
            return fragment[6:]
        return self.text(fragment)

    def text_of(self, ref: PromptRef) -> str:
        """What a prompt reference says, written (a spoken digit stays masked)."""
        if isinstance(ref, ComposedPrompt):
            return self.compose_text(ref.sentences)
        return self.text(str(ref))

    def problems(self) -> dict[str, str]:
        """Prompt id -> why its WAV cannot be played, for every broken prompt (for selftest)."""
        found: dict[str, str] = {}
        for composed in self._composed.values():
            for fragment in composed.fragments:
                if fragment not in self._texts:
                    found[fragment] = (
                        f"{self.audio_dir / CATALOGUE_NAME}: fragment [{fragment}] of "
                        f"{composed.id} is missing; add it and run audio/generate.sh"
                    )
        for prompt_id in sorted(self._texts):
            reason = check_wav(self.wav_path(prompt_id))
            if reason is not None:
                found[prompt_id] = f"{self.wav_path(prompt_id)}: {reason}"
        return found
