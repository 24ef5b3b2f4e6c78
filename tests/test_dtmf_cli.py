"""``dtmf decode FILE [--raw] [--mask]``: what a technician reads from a recording of a line."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

pytest.importorskip("numpy")

import numpy as np

from gatewayd.dtmf.cli import main
from gatewayd.dtmf.signals import key_sequence, silence, to_pcm

KEYS = "3103*#"
LEAD_S = 0.25
ON_S = 0.09
OFF_S = 0.11


def recording() -> bytes:
    rng = np.random.default_rng(11)
    return to_pcm(key_sequence(KEYS, rng, on_s=ON_S, off_s=OFF_S, lead_s=LEAD_S))


def write_wav(path: Path, pcm: bytes, rate: int = 8000, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    return path


def rows(out: str) -> list[list[str]]:
    return [line.split("\t") for line in out.splitlines()]


def test_decode_wav_prints_key_start_and_duration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_wav(tmp_path / "line.wav", recording())
    assert main(["decode", str(path)]) == 0
    captured = capsys.readouterr()
    lines = rows(captured.out)
    assert [line[0] for line in lines] == list(KEYS)
    for i, (_, start, duration) in enumerate(lines):
        assert float(start) == pytest.approx(LEAD_S + i * (ON_S + OFF_S), abs=0.004)
        assert int(duration) == pytest.approx(ON_S * 1000, abs=4)
    assert "6 key(s)" in captured.err


def test_decode_raw(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "line.raw"
    path.write_bytes(recording())
    assert main(["decode", "--raw", str(path)]) == 0
    assert "".join(line[0] for line in rows(capsys.readouterr().out)) == KEYS


def test_mask_hides_digits_but_not_star_and_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_wav(tmp_path / "line.wav", recording())
    assert main(["decode", "--mask", str(path)]) == 0
    out = capsys.readouterr().out
    assert "".join(line[0] for line in rows(out)) == "*****#"


def test_silence_is_no_key_and_success(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_wav(tmp_path / "quiet.wav", to_pcm(silence(1.0)))
    assert main(["decode", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "0 key(s)" in captured.err


def test_wrong_rate_says_how_to_convert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_wav(tmp_path / "cd.wav", recording(), rate=44100)
    assert main(["decode", str(path)]) == 2
    err = capsys.readouterr().err
    assert "44100 Hz" in err and "sox" in err


def test_not_a_wav_points_to_raw(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "line.raw"
    path.write_bytes(recording())
    assert main(["decode", str(path)]) == 2
    assert "--raw" in capsys.readouterr().err


def test_missing_file_is_an_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.wav"
    assert main(["decode", "--raw", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err


def test_gatewayd_dtmf_decode_is_the_command_line_entry(tmp_path: Path) -> None:
    import subprocess
    import sys

    wav = write_wav(tmp_path / "line.wav", recording())
    done = subprocess.run(
        [sys.executable, "-m", "gatewayd", "dtmf", "decode", str(wav)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    expected = [row[0] for row in rows(_decoded(wav))]
    assert expected  # the recording has keys
    assert [row[0] for row in rows(done.stdout)] == expected
    missing = subprocess.run(
        [sys.executable, "-m", "gatewayd", "dtmf", "decode", str(tmp_path / "nope.wav")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 2 and "nope.wav" in missing.stderr


def _decoded(wav: Path) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["decode", str(wav)]) == 0
    return out.getvalue()
