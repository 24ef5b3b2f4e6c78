"""``gatewayd selftest``: every part a profile names, against real parts and broken set-ups.

The modem is the V.253 simulator on a pty, GPIO the fake backend (and the real
libgpiod backend on a chip that is not there), ALSA the ``null`` device.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayd.line.modem_sim import ModemSimulator
from gatewayd.prompts import AUDIO_DIR_ENV, default_audio_dir
from gatewayd.selftest import (
    EXIT_BAD_PROFILE,
    EXIT_FAILED,
    EXIT_OK,
    check_alsa,
    default_profile,
    main,
)
from gatewayd.voicemail.hashing import create_pepper
from tests.daemon_process import REPO

PROFILES = REPO / "hw_profiles"


def hardware_profile(tmp: Path, shipped: str, **replace: str) -> Path:
    """A shipped hardware profile with its state and pepper in ``tmp``, plus replacements."""
    text = (PROFILES / f"{shipped}.toml").read_text()
    replace = {
        'state_dir = "/var/lib/gatewayd"': f'state_dir = "{tmp / "state"}"',
        'pepper_file = "pepper"': f'pepper_file = "{tmp / "pepper"}"',
        **replace,
    }
    for old, new in replace.items():
        assert old in text, f"{shipped}.toml no longer has {old!r}"
        text = text.replace(old, new)
    path = tmp / f"{shipped}-test.toml"
    path.write_text(text)
    return path


def run(profile: Path | str, tmp: Path) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = main(str(profile), None, str(tmp / "run"), out=out)
    return code, out.getvalue().splitlines()


def line_of(lines: list[str], name: str) -> str:
    """The check line whose check name starts with ``name``."""
    found = [
        line
        for line in lines
        if line.startswith(("ok    ", "FAIL  ")) and line[6:].startswith(name)
    ]
    assert found, f"no line about {name!r} in {lines}"
    return found[0]


@pytest.fixture
def modem(tmp_path: Path) -> Iterator[ModemSimulator]:
    with ModemSimulator("usr5637", link=tmp_path / "ttyACM0") as sim:
        yield sim


@pytest.fixture
def console_port(tmp_path: Path) -> Iterator[Path]:
    master, slave = os.openpty()
    tty.setraw(master)
    link = tmp_path / "ttyS0"
    link.symlink_to(os.ttyname(slave))
    yield link
    os.close(master)
    os.close(slave)


@pytest.fixture
def modem_profile(tmp_path: Path, modem: ModemSimulator, console_port: Path) -> Path:
    profile = hardware_profile(
        tmp_path,
        "usr5637-modem",
        **{
            'port = "/dev/ttyACM0"': f'port = "{modem.port}"',
            "# [console]\n": f'[console]\nport = "{console_port}"\n',
        },
    )
    create_pepper(tmp_path / "pepper")
    return profile


def provision_tech_code(tmp_path: Path, profile: Path) -> None:
    from gatewayd.provision import main as provision

    out = io.StringIO()
    assert (
        provision(
            str(profile),
            etc_dir=str(tmp_path / "etc"),
            state_dir=str(tmp_path / "state"),
            runtime_dir=str(tmp_path / "run"),
            tech_code=True,
            stdin=io.StringIO("582046\n"),
            out=out,
        )
        == 0
    ), out.getvalue()


# --- all good ------------------------------------------------------------------------------


def test_a_modem_box_passes_every_check(
    tmp_path: Path, modem: ModemSimulator, modem_profile: Path
) -> None:
    provision_tech_code(tmp_path, modem_profile)
    code, lines = run(modem_profile, tmp_path)
    assert code == EXIT_OK, lines
    assert lines[0].startswith("gatewayd selftest: profile usr5637-modem-test")
    assert line_of(lines, f"modem {modem.port}").endswith("answers AT with OK at 115200 baud")
    assert line_of(lines, f"modem {modem.port}").startswith("ok ")
    assert "AT" in modem.commands  # the simulator really was asked
    assert line_of(lines, "console").startswith("ok ")
    assert line_of(lines, "prompts (fr)").startswith("ok ")
    assert line_of(lines, "technician code").startswith("ok ")
    assert line_of(lines, "pepper").startswith("ok ")
    assert lines[-1].startswith("selftest: all ")
    assert all(line.startswith(("ok    ", "gatewayd selftest", "selftest:")) for line in lines)


def test_a_slic_box_on_the_fake_gpio_backend_and_alsa_null_passes(tmp_path: Path) -> None:
    profile = hardware_profile(
        tmp_path,
        "gpiod-ag1171-mt8870",
        **{
            'gpio_backend = "gpiod"': 'gpio_backend = "fake"',
            'gpio_chip = "/dev/gpiochip0"\n': "",
            'playback = "plughw:CARD=Device"': 'playback = "null"',
            'capture = ""': 'capture = "null"',
        },
    )
    create_pepper(tmp_path / "pepper")
    code, lines = run(profile, tmp_path)
    assert code == EXIT_OK, lines
    gpio = [line for line in lines if line.startswith("ok    gpio ")]
    assert [line.split()[2] for line in gpio] == ["shk", "rm", "fr", "std", "q1", "q2", "q3", "q4"]
    assert "output" in line_of(lines, "gpio rm") and "input" in line_of(lines, "gpio shk")
    assert line_of(lines, "audio playback 'null'").startswith("ok ")
    assert line_of(lines, "audio capture 'null'").startswith("ok ")
    assert "not created yet" in line_of(lines, "state ")


# --- broken set-ups --------------------------------------------------------------------------


def test_wrong_modem_port_fails_with_the_fix(tmp_path: Path, modem_profile: Path) -> None:
    broken = modem_profile.read_text().replace(str(tmp_path / "ttyACM0"), "/dev/ttyNOPE9")
    modem_profile.write_text(broken)
    code, lines = run(modem_profile, tmp_path)
    assert code == EXIT_FAILED
    failed = line_of(lines, "modem /dev/ttyNOPE9")
    assert failed.startswith("FAIL  ") and "cannot open the port" in failed
    assert "Fix: check line.port" in failed and "dialout" in failed
    assert lines[-1].startswith("selftest: ") and "failed" in lines[-1]


def test_a_port_where_no_modem_answers_fails(tmp_path: Path, console_port: Path) -> None:
    profile = hardware_profile(
        tmp_path,
        "usr5637-modem",
        **{
            'port = "/dev/ttyACM0"': f'port = "{console_port}"',  # a pty nobody answers on
            "command_timeout_s = 3.0": "command_timeout_s = 0.3",
        },
    )
    create_pepper(tmp_path / "pepper")
    code, lines = run(profile, tmp_path)
    assert code == EXIT_FAILED
    failed = line_of(lines, f"modem {console_port}")
    assert failed.startswith("FAIL  ") and "no OK to AT within 0.3 s" in failed


def test_a_missing_prompt_fails_and_names_it(
    tmp_path: Path, modem_profile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    audio = tmp_path / "audio"
    shutil.copytree(default_audio_dir() / "fr", audio / "fr")
    shutil.copy(default_audio_dir() / "prompts.toml", audio / "prompts.toml")
    (audio / "fr" / "code_saved.wav").unlink()
    (audio / "fr" / "goodbye.wav").write_bytes(b"RIFF....WAVE")  # and a broken one
    monkeypatch.setenv(AUDIO_DIR_ENV, str(audio))
    code, lines = run(modem_profile, tmp_path)
    assert code == EXIT_FAILED
    failed = line_of(lines, "prompts (fr)")
    assert failed.startswith("FAIL  ") and "2 of " in failed
    assert "code_saved: " in failed and "file not found" in failed and "goodbye: " in failed
    assert "Fix: regenerate them (audio/generate.sh)" in failed


def test_an_unreadable_state_file_fails(tmp_path: Path, modem_profile: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "gatewayd.json").write_text('{"mailbox": {"1": {"fail')
    code, lines = run(modem_profile, tmp_path)
    assert code == EXIT_FAILED
    failed = line_of(lines, "state ")
    assert failed.startswith("FAIL  ") and "does not parse" in failed
    assert "Restore the file from a backup" in failed


def test_a_missing_or_open_pepper_fails(tmp_path: Path, modem_profile: Path) -> None:
    (tmp_path / "pepper").chmod(0o644)
    code, lines = run(modem_profile, tmp_path)
    assert code == EXIT_FAILED
    assert "Fix: chmod 600" in line_of(lines, "pepper")
    (tmp_path / "pepper").unlink()
    code, lines = run(modem_profile, tmp_path)
    assert "gatewayd provision" in line_of(lines, "pepper") and code == EXIT_FAILED


def test_a_console_without_a_technician_code_fails(tmp_path: Path, modem_profile: Path) -> None:
    code, lines = run(modem_profile, tmp_path)
    assert code == EXIT_FAILED
    assert "Fix: gatewayd provision --profile PROFILE --tech-code" in line_of(
        lines, "technician code"
    )


def test_unusable_gpio_and_alsa_devices_fail(tmp_path: Path) -> None:
    profile = hardware_profile(
        tmp_path,
        "gpiod-ag1171-mt8870",
        **{
            'gpio_chip = "/dev/gpiochip0"': f'gpio_chip = "{tmp_path / "gpiochip9"}"',
            'playback = "plughw:CARD=Device"': 'playback = "gatewayd_no_such_pcm"',
        },
    )
    create_pepper(tmp_path / "pepper")
    code, lines = run(profile, tmp_path)
    assert code == EXIT_FAILED
    assert any(line.startswith("FAIL  gpio") for line in lines), lines
    alsa = line_of(lines, "audio playback 'gatewayd_no_such_pcm'")
    assert alsa.startswith("FAIL  ") and "aplay -L" in alsa


def test_a_bad_profile_exits_2(tmp_path: Path) -> None:
    code, lines = run(tmp_path / "nope.toml", tmp_path)
    assert code == EXIT_BAD_PROFILE and lines[0].startswith("FAIL  profile: ")


def test_refuses_while_the_daemon_holds_the_devices(tmp_path: Path, modem_profile: Path) -> None:
    (tmp_path / "run").mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as ctl:
        ctl.bind(str(tmp_path / "run" / "ctl.sock"))
        ctl.listen()
        code, lines = run(modem_profile, tmp_path)
    assert code == EXIT_FAILED and "systemctl stop gatewayd" in lines[-1]


def test_without_a_profile_the_provisioned_one_is_checked(
    tmp_path: Path, modem_profile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gatewayd.paths

    assert default_profile() == "sim" or Path(default_profile()).is_file()
    etc = tmp_path / "etc"
    etc.mkdir()
    shutil.copy(modem_profile, etc / "profile.toml")
    monkeypatch.setattr(gatewayd.paths, "DEFAULT_ETC_DIR", etc)
    assert default_profile() == str(etc / "profile.toml")
    out = io.StringIO()
    main(None, None, str(tmp_path / "run"), out=out)
    assert out.getvalue().startswith(f"gatewayd selftest: profile profile ({etc / 'profile.toml'})")


def test_alsa_library_messages_stay_out_of_the_output(capfd: pytest.CaptureFixture[str]) -> None:
    check = check_alsa("nosuchdevice")
    captured = capfd.readouterr()
    assert not check.ok
    assert "ALSA lib" not in captured.err + captured.out  # not between the check lines
    assert "ALSA says:" in check.line()  # quoted in the failure, where it helps
