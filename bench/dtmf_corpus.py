"""Builds the DTMF talk-off corpus in a cache directory (never committed): speech and music.

    python3 bench/dtmf_corpus.py [--minutes 64] [--music-minutes 12] [--cache DIR] [--force]

- **speech**: espeak-ng reading French and English sentences with several voices,
  speeds and pitches, band-limited to 300-3400 Hz and resampled to 8 kHz by sox, each
  utterance at a random active level between -26 and -10 dBm0. The sentences are the
  message catalogues Debian installs (``/usr/share/locale/fr/LC_MESSAGES/*.mo``: the
  English originals and their French translations): real prose in both languages with
  no download. A short built-in text is used where none is installed.
- **music**: synthetic, made here with numpy: chords and melodies in equal temperament
  on harmonic-rich instruments and on near-sine "flutes", with vibrato, envelopes and
  percussion, band-limited the same way.

Output: ``<cache>/dtmf-corpus/{speech,music}.raw`` (8 kHz S16_LE mono) and
``manifest.json`` (parameters, sources, durations, sha256). The corpus is rebuilt only
when the parameters change. Nothing here is a test; CI never runs it.
"""

from __future__ import annotations

import argparse
import gettext
import hashlib
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gatewayd.dtmf.signals import amplitude, to_pcm

RATE = 8000
#: Version of the recipe: bump to force a rebuild everywhere.
RECIPE = 3
FRENCH_VOICES = ("fr+m1", "fr+f2", "fr+m3", "fr+f4", "fr-be+m7", "fr-ch+f5", "fr+klatt")
ENGLISH_VOICES = ("en+m1", "en-us+f2", "en-gb-x-rp+m3", "en+f4", "en-us+m7", "en-gb-scotland+f5")
#: Active speech levels drawn per utterance, dBm0 (a telephone talker is about -20).
SPEECH_LEVELS_DBM0 = (-26.0, -10.0)
FALLBACK_TEXT = {
    "fr": (
        "Bonjour, vous êtes bien sur la messagerie vocale. Pour écouter vos messages, "
        "tapez un. Pour personnaliser votre messagerie, tapez trois. Votre demande est "
        "prise en compte. Vous avez saisi trois codes secrets erronés. Veuillez contacter "
        "votre service clients. Le code secret est nécessaire pour accéder à distance à "
        "votre messagerie par téléphone."
    ),
    "en": (
        "Hello, you have reached the voicemail service. To listen to your messages, press "
        "one. To personalise your mailbox, press three. Your request has been recorded. "
        "You have entered three wrong secret codes. Please contact customer service. A "
        "secret code is needed to reach your mailbox remotely by telephone."
    ),
}


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/gatewayd-bench`` or ``~/.cache/gatewayd-bench``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gatewayd-bench"


def _clean(text: str) -> str | None:
    """A catalogue message as speakable prose, or None for format strings and jargon."""
    text = re.sub(r"%[-+ #0-9.*]*[a-zA-Z]|\{[^}]*\}|\$\{?\w+\}?|<[^>]*>", " ", text)
    text = re.sub(r"[\x00-\x1f_|\\/`*=\[\]]+", " ", text)
    text = re.sub(r"\s+", " ", text).strip()
    words = text.split()
    if len(words) < 5 or sum(ch.isalpha() for ch in text) < 0.8 * len(text.replace(" ", "")):
        return None
    return text


def catalogue_sentences() -> tuple[list[str], list[str], list[str]]:
    """(French sentences, English sentences, source files) from installed .mo catalogues."""
    french: dict[str, None] = {}
    english: dict[str, None] = {}
    sources: list[str] = []
    for path in sorted(Path("/usr/share/locale/fr/LC_MESSAGES").glob("*.mo")):
        try:
            with path.open("rb") as handle:
                catalogue = gettext.GNUTranslations(handle)
        except (OSError, ValueError, LookupError):  # unreadable, or an odd encoding: skip it
            continue
        sources.append(path.name)
        for msgid, msgstr in catalogue._catalog.items():  # type: ignore[attr-defined]
            if not isinstance(msgid, str) or not isinstance(msgstr, str):
                continue
            en = _clean(msgid)
            fr = _clean(msgstr)
            if en and fr and en != fr:
                english[en] = None
                french[fr] = None
    return list(french), list(english), sources


def _speak(text: str, voice: str, speed: int, pitch: int) -> np.ndarray | None:
    """espeak-ng -> sox (300-3400 Hz, 8 kHz) -> float samples; None if either tool fails."""
    # The text goes on stdin so a sentence starting with "-" is never taken for an option.
    espeak = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout"],
        input=text.encode(),
        capture_output=True,
        check=False,
    )
    if espeak.returncode or len(espeak.stdout) < 1000:
        return None
    sox = subprocess.run(
        [
            "sox",
            "-t",
            "wav",
            "-",
            "-r",
            str(RATE),
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
        ],
        input=espeak.stdout,
        capture_output=True,
        check=False,
    )
    if sox.returncode:
        print(f"\nsox refused an utterance ({sox.stderr.decode(errors='replace').strip()})")
        return None
    return np.frombuffer(sox.stdout, dtype="<i2").astype(np.float64)


def _set_active_level(x: np.ndarray, level_dbm0: float) -> np.ndarray:
    """Scale so the frames above -50 dB of the peak (the active speech) are at level_dbm0."""
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    power = (frames * frames).mean(axis=1)
    active = power[power > power.max() * 1e-5]
    if not len(active):
        return x
    target = amplitude(level_dbm0) ** 2 / 2.0
    scaled: np.ndarray = x * math.sqrt(target / float(active.mean()))
    return scaled


def build_speech(minutes: float, seed: int, out: Path) -> dict[str, object]:
    """Write ``minutes`` of speech, half French and half English; return its manifest part."""
    french, english, sources = catalogue_sentences()
    if len(french) < 50 or len(english) < 50:
        french = [s.strip() + "." for s in FALLBACK_TEXT["fr"].split(".") if s.strip()]
        english = [s.strip() + "." for s in FALLBACK_TEXT["en"].split(".") if s.strip()]
        sources = ["built-in text"]
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    rng.shuffle(french)
    rng.shuffle(english)
    target = int(minutes * 60 * RATE)
    per_language = {"fr": 0, "en": 0}
    voices_used: dict[str, int] = {}
    written = 0
    index = {"fr": 0, "en": 0}
    with out.open("wb") as sink:
        while written < target:
            lang = "fr" if per_language["fr"] <= per_language["en"] else "en"
            pool = french if lang == "fr" else english
            voices = FRENCH_VOICES if lang == "fr" else ENGLISH_VOICES
            # About 20 s of text per utterance: several catalogue messages in a row.
            parts: list[str] = []
            while sum(len(p) for p in parts) < 300:
                parts.append(pool[index[lang] % len(pool)])
                index[lang] += 1
            voice = rng.choice(voices)
            speech = _speak(". ".join(parts), voice, rng.randint(140, 200), rng.randint(25, 75))
            if speech is None:
                continue
            level = float(np_rng.uniform(*SPEECH_LEVELS_DBM0))
            pcm = to_pcm(_set_active_level(speech, level))
            sink.write(pcm)
            written += len(pcm) // 2
            per_language[lang] += len(pcm) // 2
            voices_used[voice] = voices_used.get(voice, 0) + len(pcm) // 2
            print(f"\rspeech {written / RATE / 60:5.1f} / {minutes:.0f} min", end="", flush=True)
    print()
    return {
        "seconds": written / RATE,
        "seconds_by_language": {k: v / RATE for k, v in per_language.items()},
        "seconds_by_voice": {k: v / RATE for k, v in sorted(voices_used.items())},
        "text_sources": sources,
        "sentences": {"fr": len(french), "en": len(english)},
    }


# --- synthetic music ---------------------------------------------------------------------

INSTRUMENTS = {
    # name: relative amplitudes of harmonics 1, 2, 3...
    "saw": [1.0 / k for k in range(1, 13)],
    "clarinet": [1.0 if k % 2 else 0.08 for k in range(1, 10)],
    "organ": [1.0, 0.5, 0.0, 0.3, 0.0, 0.0, 0.0, 0.2],
    "flute": [1.0, 0.06, 0.02],
    "sine": [1.0],
}


def _note_hz(midi: float) -> float:
    return float(440.0 * 2.0 ** ((midi - 69.0) / 12.0))


def _note(midi: float, seconds: float, instrument: str, rng: np.random.Generator) -> np.ndarray:
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    vibrato = 1.0 + rng.uniform(0.0, 0.006) * np.sin(2 * np.pi * rng.uniform(4.5, 6.5) * t)
    phase = 2 * np.pi * _note_hz(midi) * np.cumsum(vibrato) / RATE
    wave = np.zeros(n)
    for k, a in enumerate(INSTRUMENTS[instrument], start=1):
        if a and _note_hz(midi) * k < RATE / 2 - 200:
            wave += a * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    attack = min(n, int(rng.uniform(0.005, 0.06) * RATE))
    env = np.ones(n)
    env[:attack] = np.linspace(0.0, 1.0, attack)
    env *= np.exp(-t * rng.uniform(0.2, 3.0))
    release = min(n, int(0.03 * RATE))
    env[n - release :] *= np.linspace(1.0, 0.0, release)
    return wave * env


def _drum(seconds: float, rng: np.random.Generator) -> np.ndarray:
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    if rng.random() < 0.5:  # snare/hat: noise burst
        return rng.standard_normal(n) * np.exp(-t * rng.uniform(20, 60))
    sweep = 2 * np.pi * np.cumsum(150.0 * np.exp(-t * 20) + 50) / RATE  # kick
    return np.sin(sweep) * np.exp(-t * 12)


def build_music(minutes: float, seed: int, out: Path) -> dict[str, object]:
    """Write ``minutes`` of synthetic music in 20-40 s pieces; return its manifest part."""
    rng = np.random.default_rng(seed + 1)
    target = int(minutes * 60 * RATE)
    written = 0
    pieces: dict[str, int] = {}
    scales = ([0, 2, 4, 5, 7, 9, 11], [0, 2, 3, 5, 7, 8, 10], [0, 2, 4, 7, 9])
    with out.open("wb") as sink:
        while written < target:
            beat = 60.0 / rng.uniform(70, 170)
            length = int(rng.uniform(20, 40) * RATE)
            piece = np.zeros(length + RATE)
            root = int(rng.integers(48, 66))
            scale = scales[int(rng.integers(len(scales)))]
            lead = str(rng.choice(list(INSTRUMENTS)))
            pad = str(rng.choice(list(INSTRUMENTS)))
            t = 0.0
            while t * RATE < length:
                start = int(t * RATE)
                # A chord every bar, a melody note every beat or half beat, drums on beats.
                if int(t / beat) % 4 == 0 and rng.random() < 0.9:
                    degree = int(rng.integers(0, 7))
                    for third in (0, 2, 4):
                        step = scale[(degree + third) % len(scale)] + 12 * (
                            (degree + third) // len(scale)
                        )
                        note = _note(root + step, 4 * beat, pad, rng) * 0.35
                        piece[start : start + len(note)] += note[: len(piece) - start]
                sub = beat / (2 if rng.random() < 0.4 else 1)
                step = scale[int(rng.integers(len(scale)))] + 12 * int(rng.integers(1, 3))
                note = _note(root + step, sub * rng.uniform(0.6, 1.0), lead, rng) * 0.6
                piece[start : start + len(note)] += note[: len(piece) - start]
                if rng.random() < 0.7:
                    hit = _drum(0.25, rng) * 0.4
                    piece[start : start + len(hit)] += hit[: len(piece) - start]
                t += sub
            piece = _band_limit(piece)
            level = float(rng.uniform(*SPEECH_LEVELS_DBM0))
            pcm = to_pcm(_set_active_level(piece, level))
            sink.write(pcm)
            written += len(pcm) // 2
            key = f"{lead}/{pad}"
            pieces[key] = pieces.get(key, 0) + len(pcm) // 2
            print(f"\rmusic  {written / RATE / 60:5.1f} / {minutes:.0f} min", end="", flush=True)
    print()
    return {
        "seconds": written / RATE,
        "seconds_by_instruments": {k: v / RATE for k, v in pieces.items()},
    }


def _band_limit(x: np.ndarray) -> np.ndarray:
    """300-3400 Hz by FFT masking with soft edges (music is made here, no sox round trip)."""
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1.0 / RATE)
    mask = np.clip((freqs - 250.0) / 100.0, 0.0, 1.0) * np.clip((3450.0 - freqs) / 100.0, 0.0, 1.0)
    return np.fft.irfft(spectrum * mask, len(x))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_corpus(
    cache: Path, minutes: float, music_minutes: float, seed: int = 7, force: bool = False
) -> tuple[Path, Path, dict[str, object]]:
    """Paths of speech.raw and music.raw (built if missing or stale) and the manifest."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed to build the corpus: apt-get install {tool}")
    folder = cache / "dtmf-corpus"
    folder.mkdir(parents=True, exist_ok=True)
    speech, music, manifest_path = (
        folder / "speech.raw",
        folder / "music.raw",
        folder / "manifest.json",
    )
    params = {"recipe": RECIPE, "minutes": minutes, "music_minutes": music_minutes, "seed": seed}
    if not force and manifest_path.exists() and speech.exists() and music.exists():
        manifest: dict[str, object] = json.loads(manifest_path.read_text())
        if manifest.get("params") == params:
            return speech, music, manifest
    started = time.monotonic()
    manifest = {"params": params}
    manifest["speech"] = build_speech(minutes, seed, speech)
    manifest["music"] = build_music(music_minutes, seed, music)
    manifest["sha256"] = {"speech.raw": _sha256(speech), "music.raw": _sha256(music)}
    manifest["espeak_ng"] = subprocess.run(
        ["espeak-ng", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    manifest["build_seconds"] = round(time.monotonic() - started, 1)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return speech, music, manifest


def main(argv: list[str] | None = None) -> int:
    """Command line: build (or check) the corpus and print its manifest."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=64.0, help="speech minutes (default 64)")
    parser.add_argument("--music-minutes", type=float, default=12.0)
    parser.add_argument("--cache", type=Path, default=default_cache())
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)
    _, _, manifest = ensure_corpus(
        args.cache, args.minutes, args.music_minutes, args.seed, args.force
    )
    print(json.dumps(manifest, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
