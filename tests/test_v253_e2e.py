"""End to end on a voice modem: ``gatewayd run`` on a v253-modem profile whose port is the
modem simulator's pty, driven by the simulator (rings, handset, keys) and the control socket.

What the daemon said is checked as the bytes that reached the modem through ``+VTX``.
"""

from __future__ import annotations

import json
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gatewayd.line.at import FAMILIES, convert_s16le, to_s16le
from gatewayd.line.modem_sim import ModemSimulator
from gatewayd.prompts import PromptCatalogue, default_audio_dir
from gatewayd.voicemail.hashing import create_pepper
from gatewayd.voicemail.messages import read_wav_pcm
from tests.daemon_process import DaemonProcess, Events

CODE = "4931"
FAMILY = "generic"
PROFILE = Path(__file__).resolve().parent.parent / "hw_profiles" / "generic-v253-modem.toml"
CALLER_WAV = PROFILE.parent.parent / "audio" / "demo" / "caller_message.wav"
WAIT_S = 15.0

pytestmark = pytest.mark.slow


def modem_profile(tmp: Path, port: str) -> Path:
    """The shipped generic modem profile on ``port``, answering at once, with a cheap scrypt."""
    text = PROFILE.read_text()
    for old, new in (
        ('port = "/dev/ttyACM0"', f'port = "{port}"'),
        ("answer_after_rings = 2", "answer_after_rings = 1"),
    ):
        assert old in text, f"{PROFILE.name} no longer has {old!r}"
        text = text.replace(old, new)
    text += "\n[voicemail.policy]\nscrypt_n = 1024\n"
    path = tmp / "test-modem.toml"
    path.write_text(text)
    return path


@pytest.fixture
def box(tmp_path: Path) -> Iterator[tuple[ModemSimulator, DaemonProcess]]:
    with ModemSimulator(FAMILY) as sim:
        create_pepper(tmp_path / "state" / "pepper")  # what `gatewayd provision` does
        daemon = DaemonProcess(tmp_path, modem_profile(tmp_path, sim.port)).start()
        try:
            yield sim, daemon
        finally:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.stop()
            assert "Traceback" not in daemon.log_text()


def until(ready: Callable[[], bool], what: str, daemon: DaemonProcess) -> None:
    """Wait for ``ready()`` (simulator state or the daemon's log), up to WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what}; daemon log:\n{daemon.log_text()}")
        time.sleep(0.02)


def menu(events: Events, state: str, after: int) -> None:
    events.wait_for(lambda e: e["type"] == "menu" and e["state"] == state, after=after)


def failures_reached(count: int) -> Callable[[dict[str, Any]], bool]:
    return lambda event: event["type"] == "auth" and event["failures"] == count


def heard(prompt: str) -> bytes:
    """A prompt as the modem must receive it: 8-bit, as the family plays it."""
    catalogue = PromptCatalogue.load(default_audio_dir(), "fr")
    return convert_s16le(catalogue.pcm(prompt), FAMILIES[FAMILY].sample_format)


def test_a_code_created_on_the_handset_then_a_remote_caller_keys_three_wrong_codes(
    box: tuple[ModemSimulator, DaemonProcess],
) -> None:
    sim, daemon = box
    events = daemon.events()

    # The subscriber lifts the phone on the modem's PHONE jack and creates a code.
    sim.lift_handset()
    events.wait_for(lambda e: e["type"] == "tone" and e["name"] == "dial")
    for keys, state in (
        ("3103", "main_menu"),
        ("3", "personalise_menu"),
        ("2", "code_menu"),
        ("1", "code_entry"),
        (f"{CODE}#", "code_confirm"),
    ):
        mark = events.mark()
        sim.press(keys)
        menu(events, state, mark)
        # The next keys come once the menu is being played to the modem: they cut it.
        events.wait_for(lambda e: e["type"] == "prompt", after=mark)
    sim.press("1")
    created = events.wait_for(lambda e: e["type"] == "code")
    assert (created["action"], created["origin"]) == ("created", "handset")
    sim.hang_up_handset()
    events.wait_for(lambda e: e["type"] == "call" and e["state"] == "end")
    until(lambda: not sim.line_off_hook, "line given back after the handset call", daemon)
    assert sim.aborted_playbacks  # the keys cut the dial tone and the menus (barge-in)
    assert json.loads(daemon.ctl("status --json"))["code_set"] is True

    # A remote caller: rings, is answered, keys * in the greeting, hears code_enter, keys
    # three wrong codes.
    mark = events.mark()
    sim.ring()
    events.wait_for(lambda e: e["type"] == "call" and e["party"] == "remote", after=mark)
    events.wait_for(lambda e: e.get("id") == "greeting_standard", after=mark)
    sim.press("*")
    events.wait_for(lambda e: e.get("id") == "code_enter", after=mark)
    events.wait_for(lambda e: e["type"] == "prompt_end", after=mark)
    assert sim.playbacks[-1] == heard("code_enter")
    for failures, wrong in enumerate(("1111", "2222", "3333"), start=1):
        sim.press(f"{wrong}#")
        auth = events.wait_for(failures_reached(failures), after=mark)
        assert auth["result"] == "fail" and auth["party"] == "remote"
    end = events.wait_for(
        lambda e: e["type"] == "call" and e["state"] == "end" and e["party"] == "remote",
        after=mark,
    )
    assert end["reason"] == "ended"
    until(lambda: not sim.line_off_hook, "the box hanging up", daemon)
    assert sim.commands[-len(FAMILIES[FAMILY].hangup) :] == list(FAMILIES[FAMILY].hangup)
    assert sim.playbacks[-1] == heard("code_too_many_failures")

    shown = [e["key"] for e in events.of_type("key")]
    assert CODE not in "".join(shown) and "masked" in shown
    assert CODE not in json.dumps(events.items) and CODE not in daemon.log_text()


def test_an_unplugged_modem_is_reported_and_the_box_takes_calls_again_once_replugged(
    box: tuple[ModemSimulator, DaemonProcess],
) -> None:
    sim, daemon = box
    events = daemon.events()
    sim.ring()
    events.wait_for(lambda e: e["type"] == "call" and e["state"] == "start")

    sim.unplug()
    end = events.wait_for(lambda e: e["type"] == "call" and e["state"] == "end")
    assert end["reason"] == "line_fault"
    until(lambda: "Is the modem plugged in?" in daemon.log_text(), "ERROR in the log", daemon)
    assert f"ERROR   gatewayd.line.v253: modem on {sim.port} lost" in daemon.log_text()
    status = json.loads(daemon.ctl("status --json"))  # the daemon still serves its sockets
    assert status["line"]["connected"] is False and status["line"]["port"] == sim.port

    sim.replug()
    until(lambda: f"modem on {sim.port} is back" in daemon.log_text(), "reconnection", daemon)
    assert json.loads(daemon.ctl("status --json"))["line"]["connected"] is True
    mark = events.mark()
    sim.ring()
    events.wait_for(lambda e: e["type"] == "call" and e["state"] == "start", after=mark)
    events.wait_for(lambda e: e.get("id") == "greeting_standard", after=mark)
    sim.press("*")
    events.wait_for(lambda e: e.get("id") == "code_create_first", after=mark)
    sim.remote_hangup()
    hangup = events.wait_for(lambda e: e["type"] == "call" and e["state"] == "end", after=mark)
    assert hangup["reason"] == "hangup"


def test_a_caller_with_caller_id_leaves_a_message_through_the_modem(tmp_path: Path) -> None:
    """Two rings with the caller ID between them, the box answers, greets, beeps, and the
    caller's +VRX audio (8-bit on the wire) is stored; the number never shows."""
    number = "0612345678"
    with ModemSimulator(FAMILY) as sim:
        create_pepper(tmp_path / "state" / "pepper")
        profile = modem_profile(tmp_path, sim.port)
        profile.write_text(
            profile.read_text().replace("answer_after_rings = 1", "answer_after_rings = 2")
        )
        daemon = DaemonProcess(tmp_path, profile).start()
        try:
            events = daemon.events()
            sim.ring()
            sim.caller_id(number)
            sim.ring()
            events.wait_for(lambda e: e.get("id") == "greeting_standard")
            beep = events.wait_for(lambda e: e.get("id") == "beep")
            events.wait_for(lambda e: e["type"] == "prompt_end", after=events.index_of(beep))
            until(lambda: sim.voice_mode and "AT+VRX" in sim.commands, "+VRX", daemon)
            with wave.open(str(CALLER_WAV), "rb") as wav:
                sent = wav.readframes(wav.getnframes())
            assert sim.say(sent)  # all at once; <DLE>b follows it on the same byte stream
            sim.remote_hangup("b")  # busy tone: the caller hung up after speaking
            message = events.wait_for(lambda e: e["type"] == "message")
            assert message["action"] == "deposited"
            kept = read_wav_pcm(daemon.state_dir / "messages" / f"{message['id']}.wav")
            heard = to_s16le(
                convert_s16le(sent, FAMILIES[FAMILY].sample_format), FAMILIES[FAMILY].sample_format
            )
            assert len(kept) > 2 * 8000 * 3 and heard.startswith(kept)
            assert number not in json.dumps(events.items) and number not in daemon.log_text()
            # The subscriber lifts the handset on the PHONE jack: the message-waiting tone.
            mark = events.mark()
            sim.lift_handset()
            tone = events.wait_for(lambda e: e["type"] == "tone", after=mark)
            assert tone["name"] == "mwi"
        finally:
            daemon.stop()
