"""The prompt catalogue: every prompt of DESIGN.md §6 is there, playable, in French and English,
and a missing or broken WAV turns into a logged beep instead of a dead call."""

from __future__ import annotations

import array
import itertools
import logging
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from gatewayd.errors import GatewaydError, ProfileError
from gatewayd.prompts import (
    BEEP_PCM,
    PROMPT_CACHE_BYTES,
    PromptCatalogue,
    check_wav,
    default_audio_dir,
)
from gatewayd.voicemail.config import Keys
from gatewayd.voicemail.flow import announcements

REPO_AUDIO = Path(__file__).resolve().parent.parent / "audio"
#: Menus and entries are composed from fragments with the profile's keys (here the defaults).
COMPOSED = announcements(Keys())


def said(catalogue: PromptCatalogue, prompt_id: str) -> str:
    """What a prompt says: a catalogue text, or a composed menu written out."""
    if prompt_id in COMPOSED:
        return catalogue.text_of(COMPOSED[prompt_id])
    return catalogue.text(prompt_id)


LANGUAGES = ("fr", "en")

#: DESIGN.md §6, written out so a prompt dropped from the catalogue fails here.
DESIGN_IDS = (
    "main_menu",
    "personalise_menu",
    "code_none_yet",
    "code_menu_set",
    "code_enter_new",
    "code_you_entered",
    "digit_0",
    "digit_1",
    "digit_2",
    "digit_3",
    "digit_4",
    "digit_5",
    "digit_6",
    "digit_7",
    "digit_8",
    "digit_9",
    "code_confirm_menu",
    "code_saved",
    "code_bad_length",
    "code_trivial",
    "code_is_current",
    "code_enter",
    "code_wrong",
    "code_too_many_failures",
    "code_locked",
    "code_only_fixed_line",
    "code_create_first",
    "protection_on",
    "protection_off",
    "invalid_key",
    "goodbye",
)
#: Ids the IVR uses beyond §6.
EXTRA_IDS = ("code_menu_new", "no_messages")

#: The operator's phrases (DESIGN.md §1), word for word.
OPERATOR_PHRASES = {
    "code_none_yet": "Vous n'avez pas encore choisi de code secret, un code secret est "
    "nécessaire pour accéder à distance à votre messagerie par téléphone.",
    "code_enter_new": "Veuillez composer les 4 chiffres du code secret que vous avez choisi, "
    "suivis de la touche dièse.",
    "code_you_entered": "Vous avez composé le",
    "code_saved": "Votre demande est prise en compte.",
    "code_wrong": "Code erroné.",
    "code_too_many_failures": "Vous avez saisi 3 codes secrets erronés. "
    "Veuillez contacter votre service clients.",
}


def prompt_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Log records of gatewayd.prompts at WARNING or above."""
    return [
        r for r in caplog.records if r.name == "gatewayd.prompts" and r.levelno >= logging.WARNING
    ]


def write_wav(path: Path, rate: int = 8000, width: int = 2, channels: int = 1, frames: int = 800):
    """A WAV of silence in the given format."""
    with wave.open(str(path), "wb") as wav:
        wav.setframerate(rate)
        wav.setsampwidth(width)
        wav.setnchannels(channels)
        wav.writeframes(b"\x00" * frames * width * channels)


@pytest.fixture
def small_audio(tmp_path: Path) -> Path:
    """An audio dir with a two-prompt catalogue; only ``hello`` has a WAV (a ramp)."""
    (tmp_path / "prompts.toml").write_text(
        '[hello]\nfr = "Bonjour."\nen = "Hello."\n\n[bye]\nfr = "Au revoir."\nen = "Goodbye."\n',
        encoding="utf-8",
    )
    (tmp_path / "fr").mkdir()
    with wave.open(str(tmp_path / "fr" / "hello.wav"), "wb") as wav:
        wav.setframerate(8000)
        wav.setsampwidth(2)
        wav.setnchannels(1)
        wav.writeframes(array.array("h", range(-400, 400)).tobytes())
    return tmp_path


# --- the shipped catalogue ------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_design_prompt_has_a_text(language: str) -> None:
    catalogue = PromptCatalogue.load(REPO_AUDIO, language)
    missing = set(DESIGN_IDS + EXTRA_IDS) - catalogue.ids - set(COMPOSED)
    assert not missing
    for prompt_id in DESIGN_IDS + EXTRA_IDS:
        text = said(catalogue, prompt_id)
        assert text.strip() and text != prompt_id
    for composed in COMPOSED.values():  # every fragment of a composed prompt is in the catalogue
        assert set(composed.fragments) <= catalogue.ids


def test_french_and_english_texts_differ() -> None:
    french = PromptCatalogue.load(REPO_AUDIO, "fr")
    english = PromptCatalogue.load(REPO_AUDIO, "en")
    assert french.ids == english.ids
    # "six" is the one word the two languages share; the letter keys A-D are spoken as letters.
    same = {i for i in french.ids if french.text(i) == english.text(i)}
    assert same == {"digit_6", "key_a", "key_b", "key_c", "key_d"}


def test_operator_phrases_are_verbatim() -> None:
    catalogue = PromptCatalogue.load(REPO_AUDIO, "fr")
    for prompt_id, phrase in OPERATOR_PHRASES.items():
        assert said(catalogue, prompt_id) == phrase


def test_digits_are_spoken_in_french() -> None:
    catalogue = PromptCatalogue.load(REPO_AUDIO, "fr")
    spoken = [catalogue.text(f"digit_{d}") for d in range(10)]
    assert spoken == [
        "zéro",
        "un",
        "deux",
        "trois",
        "quatre",
        "cinq",
        "six",
        "sept",
        "huit",
        "neuf",
    ]


def test_menus_name_the_default_keys() -> None:
    catalogue = PromptCatalogue.load(REPO_AUDIO, "fr")
    assert said(catalogue, "main_menu") == (
        "Pour écouter vos messages, tapez 1. Pour personnaliser votre messagerie, tapez 3."
    )
    assert said(catalogue, "personalise_menu") == (
        "Pour votre annonce, tapez 1. Pour votre code secret, tapez 2. "
        "Pour revenir au menu précédent, tapez étoile."
    )
    assert said(catalogue, "code_confirm_menu") == (
        "Si ce code vous convient, tapez 1. Pour composer un autre code, tapez 2."
    )


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_prompt_has_a_playable_wav(language: str) -> None:
    catalogue = PromptCatalogue.load(REPO_AUDIO, language)
    assert catalogue.problems() == {}
    for prompt_id in sorted(catalogue.ids):
        path = REPO_AUDIO / language / f"{prompt_id}.wav"
        assert check_wav(path) is None, path
        with wave.open(str(path), "rb") as wav:
            seconds = wav.getnframes() / wav.getframerate()
        assert 0.2 < seconds < 20, (path, seconds)


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_wav_without_a_prompt(language: str) -> None:
    catalogue = PromptCatalogue.load(REPO_AUDIO, language)
    on_disk = {p.stem for p in (REPO_AUDIO / language).glob("*.wav")}
    assert on_disk == catalogue.ids


@pytest.mark.parametrize("language", LANGUAGES)
def test_prompts_are_normalised_speech(language: str) -> None:
    """Peak near -3 dBFS: neither clipped nor too quiet to hear on a line."""
    catalogue = PromptCatalogue.load(REPO_AUDIO, language)
    for prompt_id in sorted(catalogue.ids):
        samples = array.array("h", catalogue.pcm(prompt_id))
        if sys.byteorder == "big":
            samples.byteswap()
        peak = max(abs(s) for s in samples) / 32768
        assert 0.6 < peak < 0.75, (prompt_id, peak)


def test_pcm_is_the_wav_data_without_header() -> None:
    catalogue = PromptCatalogue.load(REPO_AUDIO, "fr")
    path = REPO_AUDIO / "fr" / "code_saved.wav"
    with wave.open(str(path), "rb") as wav:
        frames = wav.readframes(wav.getnframes())
    assert catalogue.pcm("code_saved") == frames
    assert len(frames) < path.stat().st_size


# --- runtime behaviour on a small catalogue --------------------------------------


def test_text_of_unknown_id_is_the_id(small_audio: Path) -> None:
    catalogue = PromptCatalogue.load(small_audio, "en")
    assert catalogue.ids == frozenset({"hello", "bye"})
    assert catalogue.text("hello") == "Hello."
    assert catalogue.text("no_such_prompt") == "no_such_prompt"


def test_pcm_is_read_once_and_cached(small_audio: Path) -> None:
    catalogue = PromptCatalogue.load(small_audio, "fr")
    first = catalogue.pcm("hello")
    assert first == array.array("h", range(-400, 400)).tobytes()
    (small_audio / "fr" / "hello.wav").unlink()
    assert catalogue.pcm("hello") == first


def test_the_whole_catalogue_never_stays_in_memory() -> None:
    # A month of calls plays every prompt: memory holds the recent ones, within the bound.
    catalogue = PromptCatalogue.load(default_audio_dir(), "fr")
    on_disk = 0
    for prompt_id in sorted(catalogue.ids):
        pcm = catalogue.pcm(prompt_id)
        assert pcm != BEEP_PCM, prompt_id
        on_disk += len(pcm)
        assert catalogue.cached_bytes <= PROMPT_CACHE_BYTES
    assert on_disk > 4 * PROMPT_CACHE_BYTES  # the bound did bite
    # The menus in use stay: the last ones asked are still there, and still right.
    last = sorted(catalogue.ids)[-1]
    assert catalogue.pcm(last) == catalogue.pcm(last) and catalogue.cached_bytes > 0
    first = sorted(catalogue.ids)[0]
    assert catalogue.pcm(first) == PromptCatalogue.load(default_audio_dir(), "fr").pcm(first)


def test_missing_wav_beeps_and_logs_its_path_once(
    small_audio: Path, caplog: pytest.LogCaptureFixture
) -> None:
    catalogue = PromptCatalogue.load(small_audio, "fr")
    caplog.set_level(logging.INFO, logger="gatewayd.prompts")
    assert catalogue.pcm("bye") == BEEP_PCM
    assert catalogue.pcm("bye") == BEEP_PCM
    records = prompt_errors(caplog)
    assert len(records) == 1
    message = records[0].getMessage()
    assert str(small_audio / "fr" / "bye.wav") in message
    assert "not found" in message


def test_unknown_id_beeps_and_logs_once(
    small_audio: Path, caplog: pytest.LogCaptureFixture
) -> None:
    catalogue = PromptCatalogue.load(small_audio, "fr")
    assert catalogue.pcm("no_such_prompt") == BEEP_PCM
    assert catalogue.pcm("no_such_prompt") == BEEP_PCM
    records = prompt_errors(caplog)
    assert len(records) == 1
    assert "no_such_prompt" in records[0].getMessage()
    assert "unknown prompt id" in records[0].getMessage()


@pytest.mark.parametrize(
    ("make_broken", "reason"),
    [
        (lambda p: write_wav(p, rate=44100), "44100 Hz"),
        (lambda p: write_wav(p, channels=2), "2 channels"),
        (lambda p: write_wav(p, width=1), "8-bit"),
        (lambda p: write_wav(p, frames=0), "no audio frames"),
        (lambda p: p.write_text("Bonjour, je suis un texte.\n", encoding="utf-8"), "not a PCM WAV"),
        (lambda p: p.write_bytes(b""), "not a PCM WAV"),
    ],
    ids=["44k1", "stereo", "8bit", "empty-wav", "text-file", "zero-bytes"],
)
def test_broken_wav_beeps_and_logs_path_and_reason(
    small_audio: Path, caplog: pytest.LogCaptureFixture, make_broken, reason: str
) -> None:
    path = small_audio / "fr" / "bye.wav"
    make_broken(path)
    assert reason in (check_wav(path) or "")
    catalogue = PromptCatalogue.load(small_audio, "fr")
    assert catalogue.pcm("bye") == BEEP_PCM
    catalogue.pcm("bye")
    records = prompt_errors(caplog)
    assert len(records) == 1
    assert str(path) in records[0].getMessage()
    assert reason in records[0].getMessage()
    assert catalogue.pcm("hello") != BEEP_PCM
    problems = catalogue.problems()
    assert problems["bye"] == f"{path}: {check_wav(path)}"
    assert "hello" not in problems


def test_truncated_wav_is_refused(small_audio: Path) -> None:
    path = small_audio / "fr" / "hello.wav"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "truncated" in (check_wav(path) or "")


def test_beep_is_short_audible_and_in_the_prompt_format() -> None:
    samples = array.array("h", BEEP_PCM)
    if sys.byteorder == "big":
        samples.byteswap()
    assert len(samples) == 1600  # 200 ms at 8 kHz
    peak_dbfs = max(abs(s) for s in samples) / 32768
    assert 0.2 < peak_dbfs < 0.26  # -12 dBFS is 0.251
    # 1 kHz at 8 kHz: 8 samples a period, so 2 rising zero crossings every 8 samples.
    crossings = sum(1 for a, b in itertools.pairwise(samples) if a < 0 <= b)
    assert 190 <= crossings <= 201


# --- catalogue errors --------------------------------------------------------------


def test_malformed_catalogue_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "prompts.toml"
    path.write_text('[hello]\nfr = "Bonjour\n', encoding="utf-8")
    with pytest.raises(ProfileError, match=r"prompts\.toml") as raised:
        PromptCatalogue.load(tmp_path, "fr")
    assert str(path) in str(raised.value)
    assert isinstance(raised.value, GatewaydError)


def test_missing_language_text_names_file_and_id(tmp_path: Path) -> None:
    path = tmp_path / "prompts.toml"
    path.write_text('[hello]\nfr = "Bonjour."\nen = "Hello."\n\n[bye]\nfr = "Au revoir."\n')
    assert PromptCatalogue.load(tmp_path, "fr").text("bye") == "Au revoir."
    with pytest.raises(ProfileError) as raised:
        PromptCatalogue.load(tmp_path, "en")
    assert str(path) in str(raised.value)
    assert "[bye]" in str(raised.value)
    assert "en" in str(raised.value)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ('greeting = "Bonjour."\n', "must be a table"),
        ('["../../etc/passwd"]\nfr = "x"\n', "a-z, 0-9 and _"),
        ('[hello]\nfr = ""\n', "[hello] has no fr text"),
        ("[hello]\nfr = 3\n", "[hello] has no fr text"),
        ("", "no prompt"),
    ],
)
def test_invalid_catalogue_entries_are_refused(tmp_path: Path, content: str, fragment: str) -> None:
    (tmp_path / "prompts.toml").write_text(content, encoding="utf-8")
    with pytest.raises(ProfileError, match=r"prompts\.toml") as raised:
        PromptCatalogue.load(tmp_path, "fr")
    assert fragment in str(raised.value)


def test_missing_catalogue_says_how_to_point_at_one(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as raised:
        PromptCatalogue.load(tmp_path, "fr")
    assert str(tmp_path / "prompts.toml") in str(raised.value)
    assert "GATEWAYD_AUDIO_DIR" in str(raised.value)


def test_language_must_be_a_code(small_audio: Path) -> None:
    with pytest.raises(ProfileError, match="language"):
        PromptCatalogue.load(small_audio, "../fr")


def test_default_audio_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GATEWAYD_AUDIO_DIR", raising=False)
    assert default_audio_dir() == REPO_AUDIO
    monkeypatch.setenv("GATEWAYD_AUDIO_DIR", str(tmp_path))
    assert default_audio_dir() == tmp_path


# --- the generator -------------------------------------------------------------------


@pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("sox")),
    reason="audio/generate.sh needs espeak-ng and sox (apt-get install espeak-ng sox)",
)
def test_generator_is_repeatable_and_matches_the_format(tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = ["bash", str(REPO_AUDIO / "generate.sh"), "--out", str(out), "code_wrong", "digit_7"]
    first = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    assert "4 written" in first.stdout
    made = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*.wav"))}
    assert set(made) == {
        Path(lang, f"{prompt_id}.wav")
        for lang in LANGUAGES
        for prompt_id in ("code_wrong", "digit_7")
    }
    for relative in made:
        assert check_wav(out / relative) is None
    second = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    assert "0 written, 4 unchanged" in second.stdout
    assert {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*.wav"))} == made


def test_generator_refuses_an_unknown_id(tmp_path: Path) -> None:
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        pytest.skip("audio/generate.sh needs espeak-ng and sox")
    result = subprocess.run(
        ["bash", str(REPO_AUDIO / "generate.sh"), "--out", str(tmp_path), "no_such_prompt"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "no_such_prompt" in result.stderr
    assert not list(tmp_path.rglob("*.wav"))
