"""Live in-band DTMF through real pyalsaaudio: keys from ALSA capture reach the loop as Digits.

The end-to-end test plays a key sequence (the 3103 create flow, as a handset sends it)
mixed with the French prompts at -10 dB (the echo of our own prompts) through ALSA's
``file`` plugin ``infile``. ALSA reads its configuration once per process, so that runs
in a subprocess with a test-owned asoundrc. The clock is injected: the reader thread's
pacing is checked on counts, never on wall-clock sleeps.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("numpy")

import numpy as np

from gatewayd.dtmf.capture import InbandDtmfCapture
from gatewayd.dtmf.signals import from_pcm, key_sequence, silence, to_pcm
from gatewayd.errors import DeviceError, ProfileError
from gatewayd.events import Digit
from gatewayd.prompts import PromptCatalogue, default_audio_dir

REPO = Path(__file__).resolve().parent.parent
PERIOD_S = 0.02

#: Runs in the subprocess: capture from argv[1] until argv[2] periods are read, print JSON.
CHILD = r"""
import asyncio, json, sys
from gatewayd.dtmf.capture import InbandDtmfCapture

class Clock:
    def __init__(self):
        self.now = 100.0
    def __call__(self):
        return self.now
    def sleep(self, seconds):
        self.now += seconds

async def main(device, periods):
    clock = Clock()
    digits = []
    capture = InbandDtmfCapture(device, clock=clock, sleep=clock.sleep)
    loop = asyncio.get_running_loop()
    capture.start(loop, lambda d: digits.append([d.key, d.party]))
    deadline = loop.time() + 30.0
    while capture.stats().periods < periods and loop.time() < deadline:
        await asyncio.sleep(0.005)
    capture.close()
    await asyncio.sleep(0)  # run the deliveries queued before close
    stats = capture.stats()
    print(json.dumps({"digits": digits, "periods": stats.periods,
                      "dropped": stats.dropped_keys, "running": stats.running}))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""

#: The create flow as keyed on a handset: dial 3103, 3 (personalise), 2 (code), 1 (create),
#: the code and #, 1 (confirm); plus an "A" that an ordinary keypad does not have.
GROUPS = ["3103", "3", "2", "1", "A", "4827#", "1"]
PROMPTS = [
    "main_menu",
    "personalise_menu",
    "code_none_yet",
    "code_enter_new",
    "code_you_entered",
    "digit_4",
    "digit_8",
    "digit_2",
    "digit_7",
    "code_confirm_menu",
    "code_saved",
]


def prompt_echo(gain_db: float) -> np.ndarray:
    catalogue = PromptCatalogue.load(default_audio_dir(), "fr")
    parts = [from_pcm(catalogue.pcm(prompt)) for prompt in PROMPTS]
    return np.concatenate(parts) * 10 ** (gain_db / 20)


def keyed_line() -> bytes:
    """The key groups, 80 ms tones 120 ms apart, 1.2 s between groups, over the prompt echo."""
    rng = np.random.default_rng(31)
    parts = [silence(0.7)]
    for group in GROUPS:
        parts.append(key_sequence(group, rng, on_s=0.08, off_s=0.12, lead_s=0.0, tail_s=1.2))
    keys = np.concatenate(parts)
    echo = prompt_echo(-10.0)
    line = np.zeros(max(len(keys), len(echo)) + 8000)  # 1 s of silence at the end
    line[: len(keys)] += keys
    line[: len(echo)] += echo
    return to_pcm(line)


def run_child(tmp_path: Path, pcm: bytes) -> dict[str, Any]:
    infile = tmp_path / "line.raw"
    infile.write_bytes(pcm)
    conf = tmp_path / "asound.conf"
    conf.write_text(
        "</usr/share/alsa/alsa.conf>\n"
        f'pcm.gw_line_cap {{ type file slave.pcm "null" file "/dev/null" '
        f'infile "{infile}" format "raw" }}\n'
    )
    env = dict(os.environ, ALSA_CONFIG_PATH=str(conf), PYTHONPATH=str(REPO))
    # Stop a second before the end: ALSA's file plugin repeats stale data after EOF.
    periods = len(pcm) // 320 - 50
    done = subprocess.run(
        [sys.executable, "-c", CHILD, "gw_line_cap", str(periods)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    assert result["periods"] >= periods
    return result


def test_create_flow_keys_over_prompt_echo_come_out_exactly(tmp_path: Path) -> None:
    result = run_child(tmp_path, keyed_line())
    expected = [[key, "handset"] for key in "".join(GROUPS) if key != "A"]
    assert result["digits"] == expected
    assert result["dropped"] == 1  # the "A"
    assert result["running"] is False


def test_prompt_echo_alone_gives_no_key(tmp_path: Path) -> None:
    echo = prompt_echo(0.0)  # worse than the -10 dB the hybrid leaks: full level
    result = run_child(tmp_path, to_pcm(np.concatenate([echo, silence(1.0)])))
    assert result["digits"] == []
    assert result["dropped"] == 0


# --- in process, on ALSA's null capture ----------------------------------------------------
# null returns at once, with whatever its buffer memory held (not always zeros: checked
# with alsa-lib 1.2.8), so these tests assert on pacing and life cycle, never on keys.


class ManualClock:
    """A clock that only moves when the reader thread asks to sleep."""

    def __init__(self) -> None:
        self.now = 50.0
        self.sleeps: list[tuple[float, int]] = []
        self.capture: InbandDtmfCapture | None = None
        self.enough = threading.Event()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert self.capture is not None
        periods = self.capture.stats().periods
        self.sleeps.append((self.now, periods))
        self.now += seconds
        if periods >= 100:
            self.enough.set()


def test_reader_never_runs_more_than_two_periods_ahead_of_its_clock() -> None:
    clock = ManualClock()
    capture = InbandDtmfCapture("null", clock=clock, sleep=clock.sleep, max_ahead_periods=2)
    clock.capture = capture
    loop = asyncio.new_event_loop()
    try:
        capture.start(loop, lambda digit: None)
        assert clock.enough.wait(10.0)
    finally:
        capture.close()
        loop.close()
    assert len(clock.sleeps) >= 50
    for now, periods in clock.sleeps:
        # Periods read by `now` never exceed real time plus two periods (rounding aside).
        assert periods <= (now - 50.0) / PERIOD_S + 2 + 1e-6
    assert capture.stats().running is False


def test_start_twice_and_close_twice_are_harmless() -> None:
    clock = ManualClock()
    capture = InbandDtmfCapture("null", clock=clock, sleep=clock.sleep)
    clock.capture = capture
    digits: list[Digit] = []

    async def scenario() -> None:
        capture.start(asyncio.get_running_loop(), digits.append)
        capture.start(asyncio.get_running_loop(), digits.append)
        readers = [t for t in threading.enumerate() if t.name.startswith("dtmf-capture")]
        assert len(readers) == 1
        while not clock.enough.is_set():
            await asyncio.sleep(0.001)
        capture.close()
        capture.close()

    asyncio.run(scenario())
    stats = capture.stats()
    assert stats.periods >= 100 and not stats.running
    with pytest.raises(DeviceError, match="closed"):
        capture.start(asyncio.new_event_loop(), digits.append)


def test_a_missing_device_is_a_device_error_naming_it() -> None:
    capture = InbandDtmfCapture("gw_no_such_capture")
    with pytest.raises(DeviceError, match="gw_no_such_capture") as info:
        capture.start(asyncio.new_event_loop(), lambda digit: None)
    assert "[audio] capture" in str(info.value)
    capture.close()


def test_allowed_keys_must_be_dtmf_keys() -> None:
    with pytest.raises(ProfileError, match="allowed_keys"):
        InbandDtmfCapture("null", allowed_keys="0123E")


def test_importing_capture_does_not_import_numpy() -> None:
    code = "import sys, gatewayd.dtmf.capture; print('numpy' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "False"
