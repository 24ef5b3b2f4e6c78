"""End to end: a SLIC board without a decoder chip; the daemon hears the keys in the audio.

The line's audio is a recording (the create flow keyed on a handset, over the echo of
our own prompts at -10 dB) played into the daemon's ALSA capture through the ``file``
plugin's ``infile``, with a test-owned asoundrc given to the daemon subprocess.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")

from gatewayd.dtmf.signals import key_sequence, silence, to_pcm  # noqa: E402
from gatewayd.paths import GPIO_SOCKET  # noqa: E402
from tests.daemon_process import DaemonProcess  # noqa: E402
from tests.test_dtmf_capture import prompt_echo  # noqa: E402
from tests.test_gpio_slic import GpioSock, fake_profile_text  # noqa: E402

CODE = "4827"
#: Silence before the keys: the handset is lifted (through gpio.sock) well before them.
LEAD_S = 4.0


def recorded_line() -> bytes:
    rng = np.random.default_rng(3103)
    keys = key_sequence(f"3103321{CODE}#1", rng, on_s=0.08, off_s=0.12, lead_s=LEAD_S, tail_s=1)
    echo = prompt_echo(-10.0)
    # ALSA's file plugin repeats stale data after the end of the file: end on long silence.
    line = np.concatenate([np.zeros(max(len(keys), len(echo))), silence(60.0)])
    line[: len(keys)] += keys
    line[: len(echo)] += echo
    return bytes(to_pcm(line))


@pytest.mark.slow
def test_the_create_flow_keyed_in_band_stores_a_code(tmp_path: Path) -> None:
    infile = tmp_path / "line.raw"
    infile.write_bytes(recorded_line())
    asoundrc = tmp_path / "asound.conf"
    asoundrc.write_text(
        "</usr/share/alsa/alsa.conf>\n"
        f'pcm.gw_line_cap {{ type file slave.pcm "null" file "/dev/null" '
        f'infile "{infile}" format "raw" }}\n'
    )
    pepper = tmp_path / "pepper"
    pepper.write_bytes(os.urandom(32))
    pepper.chmod(0o600)  # a pepper others can read is refused at start
    profile = tmp_path / "inband.toml"
    profile.write_text(
        fake_profile_text(
            **{
                'dtmf = "mt8870"': 'dtmf = "inband"',
                'capture = ""': 'capture = "gw_line_cap"',
                'state_dir = "/var/lib/gatewayd"': f'state_dir = "{tmp_path / "state"}"',
                'pepper_file = "pepper"': f'pepper_file = "{pepper}"',
            }
        )
    )
    daemon = DaemonProcess(tmp_path, profile).start({"ALSA_CONFIG_PATH": str(asoundrc)})
    try:
        events = daemon.events()
        gpio = GpioSock(daemon.runtime_dir / GPIO_SOCKET)
        assert gpio("lift") == "ok"
        created = events.wait_for(lambda e: e["type"] == "code", timeout=30)
        assert created["action"] == "created" and created["origin"] == "handset"
        keys = [e["key"] for e in events.of_type("key")]
        assert keys[:7] == list("3103321")
        assert keys[7:12] == ["masked"] * 5  # the code and '#', never shown
        assert keys[12:] == ["1"]  # no key heard in our own prompts' echo
        assert gpio("hang") == "ok"
        gpio.close()
        assert json.loads(daemon.ctl("status --json"))["code_set"] is True
        assert CODE not in json.dumps(events.items) + daemon.log_text()
    finally:
        assert daemon.stop() == 0
