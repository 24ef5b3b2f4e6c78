"""Hardware profiles: the shipped sim profile, full hardware profiles, and every kind of mistake.

Each error test writes a real TOML file and checks that the message names that
file, the key as a dotted path, and what was expected: what a technician reads.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from gatewayd.errors import GatewaydError, ProfileError
from gatewayd.paths import shipped_profiles_dir
from gatewayd.profile import (
    README,
    README_TABLES,
    HookTiming,
    ModemSection,
    SlicPins,
    load_profile,
    render_readme,
    shipped_profile_names,
)
from gatewayd.profile import main as profile_main
from gatewayd.tones import TonePlan
from gatewayd.voicemail.config import Keys, Mailbox, Policy, Timeouts, VoicemailConfig


@pytest.fixture(autouse=True)
def _shipped_dir_from_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see the repository's hw_profiles/, whatever the caller's environment says."""
    monkeypatch.delenv("GATEWAYD_PROFILES_DIR", raising=False)


SLIC_FULL = """
[board]
name = "Raspberry Pi 4 + Ag1171 + MT8870"
notes = "MT8870 outputs through a 74LVC245 level shifter"

[line]
driver = "gpio-slic"
gpio_backend = "gpiod"
gpio_chip = "/dev/gpiochip4"
ring_on_s = 1.5
ring_off_s = 3.5
shk_active_high = false
ring_frequency_hz = 25
dtmf = "mt8870"
bounce_ms = 20
pulse_max_ms = 100
flash_max_ms = 800

[line.pins]
shk = 17
rm = 27
fr = 22
std = 23
q1 = 5
q2 = 6
q3 = 13
q4 = 19

[audio]
playback = "plughw:CARD=Device"
capture = "plughw:CARD=Device"

[console]
port = "/dev/ttyAMA0"
baudrate = 57600

[voicemail]
access_number = "3103"
language = "en"
line_number = "0140000000"
mailbox_exists = false
tone_plan = "fr"

[voicemail.keys]
back = "#"
end_entry = "*"
listen_next = "*"

[voicemail.timeouts]
menu = 6
entry_tries = 2

[voicemail.policy]
lock_after = 6
scrypt_n = 4096
cooldown_first_s = 60

[tones.dial]
frequencies = [440]
cadence = []
level_dbfs = -10

[tones.busy]
frequencies = [425]
cadence = [0.5, 0.5]

[storage]
state_dir = "/var/lib/gatewayd"
pepper_file = "/etc/gatewayd/pepper"
create_pepper = false

[logging]
level = "debug"
"""

MODEM = """
[board]
name = "USB voice modem (USR 5637)"

[line]
driver = "v253-modem"
port = "/dev/ttyACM0"
family = "usr5637"
answer_after_rings = 4
command_timeout_s = 2

[console]
port = "/dev/ttyS0"
"""


def write(tmp_path: Path, text: str, name: str = "board.toml") -> Path:
    """A profile file written where the test can name it."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problem(path: Path) -> str:
    """The ProfileError message loading the file gives (the test fails if it loads)."""
    with pytest.raises(ProfileError) as caught:
        load_profile(str(path))
    return str(caught.value)


# --- profiles that load --------------------------------------------------------


def test_shipped_sim_profile_runs_anywhere_with_design_defaults() -> None:
    profile = load_profile("sim")

    assert profile.name == "sim"
    assert profile.source == shipped_profiles_dir() / "sim.toml"
    assert profile.board.name == "sim"
    assert profile.line.driver == "sim"
    assert profile.line.answer_after_rings == 2
    assert profile.line.slic is None and profile.line.modem is None
    assert profile.audio.playback == "null"
    assert profile.console is None
    # The values written out in sim.toml are config.py's defaults, but for a quick answer.
    assert profile.voicemail == VoicemailConfig(mailbox=Mailbox(answer_after_rings=2))
    assert profile.tone_plan == "fr"
    assert profile.tones == {}
    assert profile.storage.state_dir == "~/.local/state/gatewayd"
    assert profile.storage.pepper_file == "pepper"
    assert profile.storage.create_pepper is True
    assert profile.logging.level == "info"


def test_sim_is_listed_and_loads_by_path_too() -> None:
    assert "sim" in shipped_profile_names()
    by_path = load_profile(str(shipped_profiles_dir() / "sim.toml"))
    assert by_path == load_profile("sim")


def test_full_gpio_slic_profile_loads_every_key(tmp_path: Path) -> None:
    path = write(tmp_path, SLIC_FULL, "pi4_ag1171.toml")
    profile = load_profile(str(path))

    assert profile.name == "pi4_ag1171"
    assert profile.source == path
    assert profile.board.notes.startswith("MT8870 outputs")
    line = profile.line
    assert line.driver == "gpio-slic" and line.modem is None
    assert line.slic is not None
    assert line.slic.gpio_backend == "gpiod"
    assert line.slic.gpio_chip == "/dev/gpiochip4"
    assert line.slic.pins == SlicPins(shk=17, rm=27, fr=22, std=23, q1=5, q2=6, q3=13, q4=19)
    assert line.slic.shk_active_high is False
    assert line.slic.ring_frequency_hz == 25.0
    assert isinstance(line.slic.ring_frequency_hz, float)
    assert line.slic.dtmf == "mt8870"
    assert line.slic.hook == HookTiming(bounce_ms=20, pulse_max_ms=100, flash_max_ms=800)
    assert profile.audio.capture == "plughw:CARD=Device"
    assert profile.console is not None and profile.console.baudrate == 57600

    voicemail = profile.voicemail
    assert voicemail.language == "en"
    assert voicemail.line_number == "0140000000"
    assert voicemail.mailbox_exists is False
    assert voicemail.keys == Keys(back="#", end_entry="*", listen_next="*")
    assert voicemail.timeouts == Timeouts(menu=6.0, entry_tries=2)
    assert voicemail.policy == Policy(lock_after=6, scrypt_n=4096, cooldown_first_s=60.0)
    assert profile.tones == {
        "dial": {"frequencies": [440.0], "cadence": [], "level_dbfs": -10.0},
        "busy": {"frequencies": [425.0], "cadence": [0.5, 0.5]},
    }
    assert profile.storage.state_dir == "/var/lib/gatewayd"
    assert profile.storage.pepper_file == "/etc/gatewayd/pepper"
    assert profile.storage.create_pepper is False
    assert profile.logging.level == "debug"


def test_minimal_gpio_slic_profile_gets_documented_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[board]\nname = "b"\n[line]\ndriver = "gpio-slic"\ngpio_backend = "rpi"\n'
        "[line.pins]\nshk = 17\nrm = 27\nfr = 22\nstd = 23\nq1 = 5\nq2 = 6\nq3 = 13\nq4 = 19\n",
    )
    profile = load_profile(str(path))

    assert profile.line.slic is not None
    assert profile.line.slic.hook == HookTiming(bounce_ms=25, pulse_max_ms=90, flash_max_ms=900)
    assert profile.line.slic.ring_frequency_hz == 50.0
    assert profile.line.slic.shk_active_high is True
    assert profile.line.slic.dtmf == "mt8870"
    assert profile.line.ring_on_s == 1.5 and profile.line.ring_off_s == 3.5
    assert profile.audio.playback == "default"
    # A hardware profile keeps its state in /var/lib and never makes its own pepper.
    assert profile.storage.state_dir == "/var/lib/gatewayd"
    assert profile.storage.create_pepper is False


def test_inband_dtmf_needs_no_decoder_pins_but_a_capture_device(tmp_path: Path) -> None:
    base = (
        '[board]\nname = "b"\n[line]\ndriver = "gpio-slic"\ngpio_backend = "fake"\n'
        'dtmf = "inband"\n[line.pins]\nshk = 1\nrm = 2\nfr = 3\n'
    )
    loaded = load_profile(str(write(tmp_path, base + '[audio]\ncapture = "hw:1,0"\n')))
    assert loaded.line.slic is not None
    assert loaded.line.slic.pins == SlicPins(shk=1, rm=2, fr=3)

    message = problem(write(tmp_path, base, "no_capture.toml"))
    assert "no_capture.toml: audio.capture: missing" in message
    assert 'line.dtmf = "inband"' in message


def test_v253_modem_profile_plays_through_the_modem(tmp_path: Path) -> None:
    profile = load_profile(str(write(tmp_path, MODEM, "usb_modem.toml")))

    assert profile.line.driver == "v253-modem" and profile.line.slic is None
    assert profile.line.answer_after_rings == 4
    assert profile.line.modem == ModemSection(
        port="/dev/ttyACM0", baudrate=115200, family="usr5637", command_timeout_s=2.0
    )
    assert profile.audio.playback == "modem"
    assert profile.console is not None and profile.console.port == "/dev/ttyS0"
    assert profile.storage.create_pepper is False


# --- mistakes ---------------------------------------------------------------------

SIM_HEAD = '[board]\nname = "b"\n[line]\ndriver = "sim"\n'


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[board]\nname = "b"\n[line\ndriver = "sim"\n')
    message = problem(path)
    assert message.startswith(f"{path}: TOML syntax error")
    assert "line 3" in message


def test_unknown_section_suggests_the_closest(tmp_path: Path) -> None:
    path = write(tmp_path, SIM_HEAD + '[audoi]\nplayback = "null"\n')
    assert problem(path) == f'{path}: audoi: unknown section; did you mean "audio"?'


def test_unknown_key_suggests_the_closest_dotted_key(tmp_path: Path) -> None:
    path = write(tmp_path, SIM_HEAD + "answer_after_ring = 3\n")
    assert problem(path) == (
        f'{path}: line.answer_after_ring: unknown key; did you mean "line.answer_after_rings"?'
    )


def test_unknown_nested_key_is_named_with_its_full_path(tmp_path: Path) -> None:
    path = write(tmp_path, SIM_HEAD + "[voicemail.policy]\nlock_aftr = 3\n")
    assert problem(path) == (
        f"{path}: voicemail.policy.lock_aftr: unknown key; "
        'did you mean "voicemail.policy.lock_after"?'
    )


def test_unknown_key_without_a_close_match_lists_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path, SIM_HEAD + "[logging]\nzzz = 1\n")
    assert problem(path) == f"{path}: logging.zzz: unknown key; known keys of [logging]: level"


def test_missing_required_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[board]\nnotes = "n"\n[line]\ndriver = "sim"\n')
    assert problem(path) == (
        f"{path}: board.name: missing required key; expected a non-empty string"
    )


def test_missing_required_section(tmp_path: Path) -> None:
    path = write(tmp_path, '[board]\nname = "b"\n')
    assert problem(path) == f"{path}: line: missing required section [line]"


def test_missing_pin(tmp_path: Path) -> None:
    path = write(tmp_path, SLIC_FULL.replace("q2 = 6\n", ""))
    assert problem(path) == (
        f"{path}: line.pins.q2: missing required key; expected an integer >= 0"
    )


@pytest.mark.parametrize(
    ("toml_line", "key", "expected"),
    [
        # TOML booleans are Python ints: they must still be refused as numbers.
        (
            "answer_after_rings = true",
            "line.answer_after_rings",
            "expected an integer from 1 to 15, got boolean true",
        ),
        (
            'answer_after_rings = "2"',
            "line.answer_after_rings",
            'expected an integer from 1 to 15, got string "2"',
        ),
        (
            "answer_after_rings = 2.0",
            "line.answer_after_rings",
            "expected an integer from 1 to 15, got float 2.0",
        ),
        ("ring_on_s = false", "line.ring_on_s", "expected a number > 0 s, got boolean false"),
        (
            "[voicemail]\nmailbox_exists = 1",
            "voicemail.mailbox_exists",
            "expected a boolean (true or false), got integer 1",
        ),
        (
            "[voicemail]\naccess_number = 3103",
            "voicemail.access_number",
            'expected a string of digits 0-9, e.g. "3103", got integer 3103',
        ),
        (
            "[voicemail.policy]\nlock_after = true",
            "voicemail.policy.lock_after",
            "expected an integer >= 1, got boolean true",
        ),
        (
            '[voicemail.timeouts]\nmenu = "8"',
            "voicemail.timeouts.menu",
            'expected a number > 0 s, got string "8"',
        ),
        (
            "[voicemail.keys]\nback = 0",
            "voicemail.keys.back",
            "expected a single DTMF key, one of 0-9 * #, got integer 0",
        ),
        (
            "[console]\nport = 1",
            "console.port",
            "expected a serial device path, e.g. /dev/ttyS0, got integer 1",
        ),
        ("voicemail = 3", "voicemail", "expected a table [voicemail], got integer 3"),
    ],
)
def test_wrong_type(tmp_path: Path, toml_line: str, key: str, expected: str) -> None:
    if toml_line.startswith("voicemail ="):
        text = toml_line + "\n" + SIM_HEAD  # a top-level key must come before any table
    else:
        text = SIM_HEAD + toml_line + "\n"
    path = write(tmp_path, text)
    assert problem(path) == f"{path}: {key}: {expected}"


@pytest.mark.parametrize(
    ("toml_line", "key", "expected"),
    [
        (
            "answer_after_rings = 0",
            "line.answer_after_rings",
            "expected an integer from 1 to 15, got integer 0",
        ),
        ("ring_off_s = 0", "line.ring_off_s", "expected a number > 0 s, got integer 0"),
        (
            '[voicemail]\nlanguage = "de"',
            "voicemail.language",
            'expected one of "fr", "en", got string "de"',
        ),
        (
            '[voicemail]\nline_number = "123"',
            "voicemail.line_number",
            'expected "" or a string of at least 4 digits, got string "123"',
        ),
        (
            "[voicemail.policy]\nscrypt_n = 512",
            "voicemail.policy.scrypt_n",
            "expected a power of two >= 1024 (2**10), got integer 512",
        ),
        (
            "[voicemail.policy]\nscrypt_n = 10000",
            "voicemail.policy.scrypt_n",
            "expected a power of two >= 1024 (2**10), got integer 10000",
        ),
        (
            "[voicemail.policy]\ntries_per_call = 0",
            "voicemail.policy.tries_per_call",
            "expected an integer >= 1, got integer 0",
        ),
        (
            "[voicemail.policy]\ncooldown_cap_s = 60",
            "voicemail.policy.cooldown_cap_s",
            "expected a value >= voicemail.policy.cooldown_first_s (900), got 60",
        ),
        (
            "[voicemail.timeouts]\nentry_tries = 0",
            "voicemail.timeouts.entry_tries",
            "expected an integer >= 1, got integer 0",
        ),
        (
            "[voicemail.timeouts]\nmenu_replays = -1",
            "voicemail.timeouts.menu_replays",
            "expected an integer >= 0, got integer -1",
        ),
        (
            '[voicemail.keys]\nconfirm_yes = "A"',
            "voicemail.keys.confirm_yes",
            'expected a single DTMF key, one of 0-9 * #, got string "A"',
        ),
        (
            '[voicemail.keys]\nconfirm_yes = "11"',
            "voicemail.keys.confirm_yes",
            'expected a single DTMF key, one of 0-9 * #, got string "11"',
        ),
        (
            "[tones.busy]\nfrequencies = [440]\ncadence = [0.5]",
            "tones.busy.cadence",
            "expected an array of on/off durations, each >= 0 s, in on/off pairs "
            "(an even count), got array [0.5]",
        ),
        (
            "[tones.busy]\nfrequencies = [440]\ncadence = [0, 0.5]",
            "tones.busy.cadence",
            "the tone is never on: at least one 'on' value must be > 0",
        ),
        (
            "[tones.dial]\nfrequencies = [440, 4000]",
            "tones.dial.frequencies",
            "expected an array of frequencies, each > 0 and < 4000 Hz, got array [440, 4000]",
        ),
        (
            "[tones.dial]\nfrequencies = [440]\nlevel_dbfs = 3",
            "tones.dial.level_dbfs",
            "expected a number <= 0 dBFS, got integer 3",
        ),
        (
            "[tones.dial]\ncadence = [1, 1]",
            "tones.dial.frequencies",
            "missing required key; expected an array of frequencies, each > 0 and < 4000 Hz",
        ),
        (
            "ring_on_s = inf",
            "line.ring_on_s",
            "expected a number > 0 s, got float inf",
        ),
        (
            '[storage]\nstate_dir = "state"',
            "storage.state_dir",
            'expected an absolute path or one starting with ~, got string "state"',
        ),
        (
            '[voicemail]\ntone_plan = "de"',
            "voicemail.tone_plan",
            'expected one of "fr", got string "de"',
        ),
        (
            '[logging]\nlevel = "verbose"',
            "logging.level",
            'expected one of "debug", "info", "warning", "error", got string "verbose"',
        ),
    ],
)
def test_out_of_range(tmp_path: Path, toml_line: str, key: str, expected: str) -> None:
    path = write(tmp_path, SIM_HEAD + toml_line + "\n")
    assert problem(path) == f"{path}: {key}: {expected}"


def test_rpi_pins_must_be_on_the_header(tmp_path: Path) -> None:
    text = SLIC_FULL.replace('"gpiod"', '"rpi"').replace('gpio_chip = "/dev/gpiochip4"\n', "")
    path = write(tmp_path, text.replace("q4 = 19", "q4 = 40"))
    assert problem(path) == (
        f"{path}: line.pins.q4: expected an integer from 0 to 27, got integer 40"
    )


def test_unknown_driver_lists_the_drivers_and_suggests_one(tmp_path: Path) -> None:
    path = write(tmp_path, '[board]\nname = "b"\n[line]\ndriver = "gpio_slic"\n')
    assert problem(path) == (
        f'{path}: line.driver: expected one of "sim", "gpio-slic", "v253-modem" '
        '(did you mean "gpio-slic"?), got string "gpio_slic"'
    )


def test_pin_used_twice(tmp_path: Path) -> None:
    path = write(tmp_path, SLIC_FULL.replace("std = 23", "std = 17"))
    assert problem(path) == (
        f"{path}: line.pins.std: pin 17 is already used by line.pins.shk; each pin may be used once"
    )


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        (
            SIM_HEAD + 'port = "/dev/ttyACM0"\n',
            "line.port",
            'only used with driver "v253-modem"; this profile\'s driver is "sim"; remove it',
        ),
        (
            MODEM.replace("[console]", "[line.pins]\nshk = 1\n[console]"),
            "line.pins",
            'only used with driver "gpio-slic"; this profile\'s driver is "v253-modem"; remove it',
        ),
        (
            SLIC_FULL.replace("ring_on_s", "answer_after_rings = 2\nring_on_s"),
            "line.answer_after_rings",
            'only used with driver "sim" or "v253-modem"; this profile\'s driver is "gpio-slic"; '
            "remove it",
        ),
        (
            SLIC_FULL.replace('"gpiod"', '"rpi"'),
            "line.gpio_chip",
            'only used with line.gpio_backend = "gpiod" (this profile has "rpi"); remove it',
        ),
        (
            SIM_HEAD + '[audio]\nplayback = "modem"\n',
            "audio.playback",
            '"modem" is only valid with driver "v253-modem" (this profile\'s driver is "sim"); '
            "name an ALSA device",
        ),
        (
            MODEM + '[audio]\nplayback = "default"\n',
            "audio.playback",
            'expected "modem" on a v253-modem profile (the modem plays the audio, +VTX), got '
            '"default"; remove the key or set it to "modem"',
        ),
    ],
    ids=[
        "port-on-sim",
        "pins-on-modem",
        "answer-on-slic",
        "gpio_chip-on-rpi",
        "modem-audio-on-sim",
        "alsa-audio-on-modem",
    ],
)
def test_key_of_another_driver(tmp_path: Path, text: str, key: str, expected: str) -> None:
    path = write(tmp_path, text)
    assert problem(path) == f"{path}: {key}: {expected}"


def test_hardware_profile_may_not_create_a_pepper(tmp_path: Path) -> None:
    path = write(tmp_path, MODEM + "[storage]\ncreate_pepper = true\n")
    message = problem(path)
    assert message.startswith(f"{path}: storage.create_pepper: must be false on a hardware profile")
    assert "`gatewayd provision`" in message


def test_hook_thresholds_must_increase(tmp_path: Path) -> None:
    path = write(tmp_path, SLIC_FULL.replace("flash_max_ms = 800", "flash_max_ms = 100"))
    assert problem(path) == (
        f"{path}: line.flash_max_ms: expected a value greater than line.pulse_max_ms (100), "
        "got 100; the thresholds must increase: bounce_ms < pulse_max_ms < flash_max_ms"
    )


def test_console_cannot_share_the_modem_port(tmp_path: Path) -> None:
    path = write(tmp_path, MODEM.replace("/dev/ttyS0", "/dev/ttyACM0"))
    assert problem(path) == (
        f'{path}: console.port: "/dev/ttyACM0" is already used by line.port (the modem); '
        "the console needs its own port"
    )


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[board]\n[line]\ndriver = "sim"\nanswer_after_rings = 0\n'
        "[voicemail.policy]\nlock_after = true\n[bogus]\n",
    )
    lines = problem(path).splitlines()
    assert lines[0] == f"{path}: 4 problems:"
    assert sorted(lines[1:]) == sorted(
        [
            f"{path}: bogus: unknown section; known sections: "
            "audio, board, console, line, logging, sockets, storage, tones, usp, voicemail",
            f"{path}: board.name: missing required key; expected a non-empty string",
            f"{path}: line.answer_after_rings: expected an integer from 1 to 15, got integer 0",
            f"{path}: voicemail.policy.lock_after: expected an integer >= 1, got boolean true",
        ]
    )


def test_unknown_profile_name_lists_shipped_profiles() -> None:
    with pytest.raises(ProfileError) as caught:
        load_profile("simm")
    message = str(caught.value)
    assert message.startswith('unknown profile "simm"; shipped profiles: ')
    assert "sim" in message.split("shipped profiles: ")[1]
    assert 'did you mean "sim"?' in message


def test_missing_profile_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    message = problem(path)
    assert message.startswith(f"{path}: no such profile file")


def test_profile_errors_are_value_errors_under_the_gatewayd_root(tmp_path: Path) -> None:
    path = write(tmp_path, "[board\n")
    with pytest.raises(GatewaydError):
        load_profile(str(path))
    with pytest.raises(ValueError):
        load_profile(str(path))


# --- the README documents what the loader accepts ----------------------------------


def _leaf_keys(table: dict[str, object]) -> set[str]:
    """Every key name of a parsed TOML document, tables included."""
    keys: set[str] = set()
    for name, value in table.items():
        keys.add(name)
        if isinstance(value, dict):
            keys |= _leaf_keys(value)
    return keys


def test_readme_documents_every_key_the_example_profiles_use() -> None:
    readme = (shipped_profiles_dir() / "README.md").read_text(encoding="utf-8")
    sim = (shipped_profiles_dir() / "sim.toml").read_text(encoding="utf-8")
    used: set[str] = set()
    for text in (SLIC_FULL, MODEM, sim):
        used |= _leaf_keys(tomllib.loads(text))
    used -= {"dial", "busy"}  # tone names, not keys
    # Keys appear as `key` in a table row, sections as [section], [parent.section], [section.X].
    forms = ("`{}`", "[{}]", ".{}]", "[{}.")
    undocumented = sorted(
        key for key in used if not any(form.format(key) in readme for form in forms)
    )
    assert undocumented == []


def test_readme_toml_examples_load(tmp_path: Path) -> None:
    readme = (shipped_profiles_dir() / "README.md").read_text(encoding="utf-8")
    examples = re.findall(r"```toml\n(.*?)```", readme, flags=re.DOTALL)
    assert examples
    for number, example in enumerate(examples):
        path = write(tmp_path, SIM_HEAD + example, f"example{number}.toml")
        assert load_profile(str(path)).line.driver == "sim"


def test_readme_key_tables_are_generated_from_the_declarations() -> None:
    # Regenerate with: python -m gatewayd.profile --readme
    readme = README.read_text(encoding="utf-8")
    assert render_readme(readme) == readme
    for name in README_TABLES:
        assert f"<!-- schema:{name} -->" in readme


def test_the_readme_generator_rewrites_a_stale_table(tmp_path: Path) -> None:
    stale = write(tmp_path, "# x\n<!-- schema:logging -->\n| old |\n<!-- /schema -->\n", "R.md")
    assert profile_main(["--readme", str(stale)]) == 0
    text = stale.read_text(encoding="utf-8")
    assert "| old |" not in text and '| `level` | `"debug"` or' in text


# --- [voicemail.mailbox] ------------------------------------------------------------


def test_mailbox_defaults_are_design_section_7(tmp_path: Path) -> None:
    profile = load_profile(str(write(tmp_path, SLIC_FULL)))
    assert profile.voicemail.mailbox == Mailbox()
    assert (Mailbox().answer_after_rings, Mailbox().max_message_s) == (5, 180.0)
    assert Mailbox().timezone == "Europe/Paris"
    # The line's attribute mirrors the mailbox (line drivers read it until they move).
    assert profile.line.answer_after_rings == 5


def test_mailbox_keys_load(tmp_path: Path) -> None:
    text = SIM_HEAD + (
        "[voicemail.mailbox]\nanswer_after_rings = 3\nmax_silence_s = 5\nmax_messages = 10\n"
        'timezone = "America/Montreal"\n'
    )
    profile = load_profile(str(write(tmp_path, text)))
    assert profile.voicemail.mailbox == Mailbox(
        answer_after_rings=3, max_silence_s=5.0, max_messages=10, timezone="America/Montreal"
    )
    assert profile.line.answer_after_rings == 3


@pytest.mark.parametrize(
    ("toml_lines", "key", "expected"),
    [
        (
            "answer_after_rings = 0",
            "answer_after_rings",
            "expected an integer from 1 to 15, got integer 0",
        ),
        (
            'timezone = "Europe/Pariss"',
            "timezone",
            'expected an IANA time zone name, e.g. "Europe/Paris" (did you mean "Europe/Paris"?), '
            'got string "Europe/Pariss"',
        ),
        (
            'timezone = "../../etc/passwd"',
            "timezone",
            'expected an IANA time zone name, e.g. "Europe/Paris", got string "../../etc/passwd"',
        ),
        (
            "min_message_s = 20\nmax_message_s = 10",
            "min_message_s",
            "expected a value below voicemail.mailbox.max_message_s (10), got 20",
        ),
        (
            "max_message_s = 600\nmax_total_s = 300",
            "max_message_s",
            "expected a value <= voicemail.mailbox.max_total_s (300), got 600",
        ),
        ("max_messages = 0", "max_messages", "expected an integer from 1 to 1000, got integer 0"),
        ("max_silence_s = 0", "max_silence_s", "expected a number > 0 and <= 60 s, got integer 0"),
        (
            "maxmessages = 3",
            "maxmessages",
            'unknown key; did you mean "voicemail.mailbox.max_messages"?',
        ),
    ],
)
def test_mailbox_mistakes(tmp_path: Path, toml_lines: str, key: str, expected: str) -> None:
    path = write(tmp_path, SIM_HEAD + "[voicemail.mailbox]\n" + toml_lines + "\n")
    assert problem(path) == f"{path}: voicemail.mailbox.{key}: {expected}"


@pytest.mark.parametrize("head", [SIM_HEAD, MODEM.replace("[console]", "[x]")])
def test_answer_after_rings_in_line_is_a_deprecated_alias(
    tmp_path: Path, head: str, caplog: pytest.LogCaptureFixture
) -> None:
    text = head.replace("answer_after_rings = 4\n", "").replace("[x]", "[console]")
    text = text.replace('driver = "sim"\n', 'driver = "sim"\nanswer_after_rings = 3\n').replace(
        'family = "usr5637"\n', 'family = "usr5637"\nanswer_after_rings = 3\n'
    )
    path = write(tmp_path, text)
    with caplog.at_level("WARNING", logger="gatewayd.profile"):
        profile = load_profile(str(path))
    assert profile.voicemail.mailbox.answer_after_rings == 3
    assert profile.line.answer_after_rings == 3
    assert f"{path}: line.answer_after_rings is deprecated" in caplog.text
    assert "[voicemail.mailbox]" in caplog.text


def test_answer_after_rings_set_twice_is_refused(tmp_path: Path) -> None:
    text = SIM_HEAD + "answer_after_rings = 3\n[voicemail.mailbox]\nanswer_after_rings = 4\n"
    path = write(tmp_path, text)
    assert problem(path) == (
        f"{path}: line.answer_after_rings: deprecated, and "
        "voicemail.mailbox.answer_after_rings is set too; remove this one"
    )


def test_shipped_profiles_set_the_ring_count_in_the_mailbox(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING", logger="gatewayd.profile"):
        rings = {
            name: load_profile(name).voicemail.mailbox.answer_after_rings
            for name in shipped_profile_names()
        }
    assert "deprecated" not in caplog.text
    assert rings["sim"] == 2 and rings["usr5637-modem"] == 2  # as before the move
    assert rings["rpi-ag1171-mt8870"] == 5  # a station-only board: the DESIGN default


def test_a_message_waiting_tone_can_be_given(tmp_path: Path) -> None:
    # DESIGN §7.5: 440 Hz, 100 ms on / 100 ms off six times, then continuous.
    mwi = "[tones.mwi]\nfrequencies = [440]\ncadence = [0.1, 0.1]\nrepeats = 6\n"
    profile = load_profile(str(write(tmp_path, SIM_HEAD + mwi)))
    assert profile.tones == {"mwi": {"frequencies": [440.0], "cadence": [0.1, 0.1], "repeats": 6}}
    # What the daemon does with it: the tone module reads the same table.
    tone = TonePlan.from_mapping(profile.tones, str(profile.source))["mwi"]
    assert (tone.cadence, tone.repeats) == (((0.1, 0.1),), 6)

    path = write(tmp_path, SIM_HEAD + mwi.replace("repeats = 6", "repeats = -1"), "bad.toml")
    assert problem(path) == f"{path}: tones.mwi.repeats: expected an integer >= 0, got integer -1"
