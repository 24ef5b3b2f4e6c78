"""The mailbox end to end: ``gatewayd run`` on the sim line, a caller who gets no answer
leaves a message (``remote say``), the box keeps it, says so, and the handset hears the
message-waiting tone.

The audio that reaches the store is checked sample for sample against what was sent.
"""

from __future__ import annotations

import json
import os
import signal
import wave
from pathlib import Path

import pytest

from gatewayd.pcm import RATE
from gatewayd.voicemail.messages import read_wav_pcm
from tests.daemon_process import REPO, DaemonProcess, Events, make_profile

pytestmark = pytest.mark.slow

CALLER_WAV = REPO / "audio" / "demo" / "caller_message.wav"
NUMBER = "0612345678"
#: A caller who stops talking is done after 2 s instead of 10 in these tests.
QUICK_SILENCE = {"max_silence_s = 10.0": "max_silence_s = 2.0"}


def speech() -> bytes:
    with wave.open(str(CALLER_WAV), "rb") as wav:
        return wav.readframes(wav.getnframes())


def write_wav(path: Path, pcm: bytes) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(pcm)
    return path


@pytest.fixture
def daemon(tmp_path: Path):
    # max_silence_s short: a caller who stops talking is done quickly in tests.
    profile = make_profile(tmp_path, **QUICK_SILENCE)
    proc = DaemonProcess(tmp_path, profile).start()
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        proc.stop()


def leave_message(daemon: DaemonProcess, wav: Path, *, hang_up: bool = True) -> None:
    events = daemon.events()
    mark = events.mark()
    assert daemon.sim(f"remote call {NUMBER}") == "ok"
    after_beep(events, mark)
    assert daemon.sim(f"remote say {wav}") == "ok"
    if hang_up:
        assert daemon.sim("remote hangup") == "ok"
    events.wait_for(lambda e: e["type"] == "call" and e["state"] == "end", after=mark)
    events.close()


def after_beep(events: Events, mark: int = 0) -> None:
    """Wait until the beep has played: from then on the box records."""
    beep = events.wait_for(lambda e: e.get("id") == "beep", after=mark)
    events.wait_for(lambda e: e["type"] == "prompt_end", after=events.index_of(beep) + 1)


def stored(daemon: DaemonProcess) -> list[dict[str, object]]:
    listing: list[dict[str, object]] = json.loads(daemon.ctl("messages --json"))
    return listing


def test_a_caller_leaves_a_message_and_the_box_keeps_what_was_said(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    events = daemon.events()
    sent = speech()
    leave_message(daemon, CALLER_WAV)
    deposited = events.wait_for(lambda e: e["type"] == "message")
    assert deposited["action"] == "deposited"
    assert events.wait_for(lambda e: e["type"] == "mwi")["state"] == "on"
    [message] = stored(daemon)
    assert message["folder"] == "new" and message["id"] == deposited["id"]
    # The samples kept are those sent: the line's silence until the caller spoke, then the
    # phrase sample for sample (its tail of silence trimmed, nothing else changed).
    kept = read_wav_pcm(daemon.state_dir / "messages" / f"{message['id']}.wav")
    spoke_at = kept.find(sent[: RATE // 5 * 2])  # the phrase's first 200 ms
    assert spoke_at >= 0 and kept[:spoke_at] == bytes(spoke_at)
    assert len(kept) - spoke_at > RATE * 2 * 3  # over 3 s of the 4.9 s phrase
    assert sent.startswith(kept[spoke_at:])
    status = json.loads(daemon.ctl("status --json"))
    assert (status["messages_new"], status["messages_saved"], status["mwi"]) == (1, 0, "on")
    # The caller's number never shows: not in events, the console, nor the log above debug.
    assert NUMBER not in json.dumps(events.items)
    assert NUMBER not in daemon.ctl("messages") and NUMBER not in daemon.log_text()
    # Lifting the handset: the message-waiting dial tone, not the plain one.
    mark = events.mark()
    assert daemon.sim("handset offhook") == "ok"
    tone = events.wait_for(lambda e: e["type"] == "tone", after=mark)
    assert tone["name"] == "mwi"
    assert daemon.sim("handset onhook") == "ok"


def test_silence_ends_the_message_and_the_box_says_goodbye(daemon: DaemonProcess) -> None:
    events = daemon.events()
    leave_message(daemon, CALLER_WAV, hang_up=False)  # the caller stays on, silent
    prompts = [e["id"] for e in events.of_type("prompt")]
    assert prompts[-2:] == ["message_recorded", "goodbye"]
    assert len(stored(daemon)) == 1


def test_a_hang_up_right_after_the_beep_leaves_no_message(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    events = daemon.events()
    leave_message(daemon, write_wav(tmp_path / "click.wav", b"\x00\x00" * 800))
    assert stored(daemon) == []
    assert not events.of_type("message")
    assert json.loads(daemon.ctl("status --json"))["mwi"] == "off"
    # The dial tone is plain.
    assert daemon.sim("handset offhook") == "ok"
    assert events.wait_for(lambda e: e["type"] == "tone")["name"] == "dial"


def test_hash_skips_to_the_beep_and_ends_the_message(daemon: DaemonProcess, tmp_path: Path) -> None:
    events = daemon.events()
    assert daemon.sim("remote call") == "ok"
    events.wait_for(lambda e: e.get("id") == "greeting_standard")
    assert daemon.sim("remote press 5#") == "ok"  # 5: garbage, ignored; #: to the beep
    after_beep(events)
    assert daemon.sim(f"remote say {CALLER_WAV}") == "ok"
    assert daemon.sim("remote press #") == "ok"
    events.wait_for(lambda e: e["type"] == "message")
    end = events.wait_for(lambda e: e["type"] == "call" and e["state"] == "end")
    assert end["reason"] == "ended"
    assert [e["id"] for e in events.of_type("prompt")][-2:] == ["message_recorded", "goodbye"]


def test_a_full_mailbox_says_so_and_takes_no_message(tmp_path: Path) -> None:
    profile = make_profile(tmp_path, **QUICK_SILENCE, **{"max_messages = 30": "max_messages = 1"})
    daemon = DaemonProcess(tmp_path, profile).start()
    try:
        leave_message(daemon, CALLER_WAV)
        assert len(stored(daemon)) == 1
        events = daemon.events()
        assert daemon.sim("remote call") == "ok"
        end = events.wait_for(lambda e: e["type"] == "call" and e["state"] == "end")
        assert end["reason"] == "ended"
        said = [e["id"] for e in events.of_type("prompt")]
        assert said == ["greeting_standard", "mailbox_full"]  # no beep
        assert len(stored(daemon)) == 1
    finally:
        daemon.stop()


def test_remote_say_refuses_bad_files_and_records_nothing(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    events = daemon.events()
    assert daemon.sim("remote call") == "ok"
    after_beep(events)
    stereo = tmp_path / "stereo.wav"
    with wave.open(str(stereo), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(b"\x00\x10" * 16000)
    for path in (tmp_path / "missing.wav", stereo, tmp_path):
        assert daemon.sim(f"remote say {path}").startswith("error "), path
    assert daemon.sim("remote hangup") == "ok"
    events.wait_for(lambda e: e["type"] == "call" and e["state"] == "end")
    assert stored(daemon) == []


def test_a_kill_during_a_recording_keeps_what_was_said(tmp_path: Path) -> None:
    profile = make_profile(tmp_path)
    daemon = DaemonProcess(tmp_path, profile).start()
    events = daemon.events()
    assert daemon.sim("remote call") == "ok"
    after_beep(events)
    long_speech = write_wav(tmp_path / "long.wav", speech() * 2)
    assert daemon.sim(f"remote say {long_speech}") == "ok"  # 9.8 s said, then the kill
    assert daemon.proc is not None
    os.kill(daemon.proc.pid, signal.SIGKILL)
    daemon.proc.wait()
    events.close()
    # A power cut loses at most the last 2 s: the next start recovers the message.
    daemon = DaemonProcess(tmp_path, profile).start()
    try:
        [message] = stored(daemon)
        assert message["recovered"] is True and message["folder"] == "new"
        assert float(str(message["seconds"])) >= 9.8 - 2.5
        assert "message_recovered" in daemon.ctl("audit 5")
    finally:
        daemon.stop()


def test_a_subscribers_day_two_messages_heard_deleted_and_kept(tmp_path: Path) -> None:
    """Two callers leave messages; the subscriber lifts the handset (message-waiting tone),
    hears "deux nouveaux messages", the first envelope and the message itself (the bytes
    that reached ALSA), deletes it, keeps the second; the dial tone is plain again."""
    tap = tmp_path / "tap.raw"
    profile = make_profile(
        tmp_path,
        **QUICK_SILENCE,
        **{'playback = "null"': f"playback = \"file:FILE='{tap}',FORMAT=raw\""},
    )
    daemon = DaemonProcess(tmp_path, profile).start()
    try:
        leave_message(daemon, CALLER_WAV)
        leave_message(daemon, CALLER_WAV)
        [first, second] = stored(daemon)
        events = daemon.events()
        mark = events.mark()
        assert daemon.sim("handset offhook") == "ok"
        assert events.wait_for(lambda e: e["type"] == "tone", after=mark)["name"] == "mwi"
        assert daemon.sim("handset press 3103") == "ok"
        events.wait_for(lambda e: e.get("state") == "main_menu", after=mark)
        start = tap.stat().st_size
        assert daemon.sim("handset press 1") == "ok"
        audio = events.wait_for(lambda e: e.get("id") == "message_audio", after=mark)
        said = [
            e["id"] for e in events.items[mark : events.index_of(audio)] if e["type"] == "prompt"
        ]
        at = said.index("summary_you_have")  # "Vous avez deux nouveaux messages."
        assert said[at : at + 3] == ["summary_you_have", "digit_2", "summary_new_many"]
        assert "envelope_received" in said and "0612345678" not in json.dumps(events.items)
        menu = events.wait_for(lambda e: e.get("id") == "listen_menu", after=mark, timeout=40)
        kept = read_wav_pcm(daemon.state_dir / "messages" / f"{first['id']}.wav")
        heard = tap.read_bytes()[start:]
        assert kept[:8000] in heard  # the message itself reached the line
        status = json.loads(daemon.ctl("status --json"))
        assert status["messages_new"] == 1  # the first was heard: saved
        mark = events.index_of(menu) + 1
        assert daemon.sim("handset press 2") == "ok"  # delete it
        deleted = events.wait_for(lambda e: e["type"] == "message", after=mark)
        assert (deleted["action"], deleted["id"]) == ("deleted", first["id"])
        assert not (daemon.state_dir / "messages" / f"{first['id']}.wav").exists()
        menu = events.wait_for(
            lambda e: e.get("id") == "listen_menu", after=events.index_of(deleted), timeout=40
        )
        assert daemon.sim("handset press 3") == "ok"  # keep the second
        events.wait_for(
            lambda e: e.get("id") == "no_more_new", after=events.index_of(menu), timeout=20
        )
        assert daemon.sim("handset onhook") == "ok"
        assert [m["id"] for m in stored(daemon)] == [second["id"]]
        assert stored(daemon)[0]["folder"] == "saved"
        assert json.loads(daemon.ctl("status --json"))["mwi"] == "off"
        mark = events.mark()
        assert daemon.sim("handset offhook") == "ok"
        assert events.wait_for(lambda e: e["type"] == "tone", after=mark)["name"] == "dial"
        # Resets keep the messages: the new code opens them.
        assert daemon.ctl("reset --yes").startswith("ok")
        assert len(stored(daemon)) == 1
    finally:
        daemon.stop()


def test_the_subscriber_records_a_greeting_and_callers_hear_it(tmp_path: Path) -> None:
    """Personalise, "Votre annonce", record after the beep (the handset speaks), hear it
    back, keep it; the next caller hears it instead of the standard greeting."""
    tap = tmp_path / "tap.raw"
    profile = make_profile(
        tmp_path,
        **QUICK_SILENCE,
        **{'playback = "null"': f"playback = \"file:FILE='{tap}',FORMAT=raw\""},
    )
    daemon = DaemonProcess(tmp_path, profile).start()
    try:
        events = daemon.events()
        assert daemon.sim("handset offhook") == "ok"
        assert daemon.sim("handset press 3103") == "ok"
        assert daemon.sim("handset press 3") == "ok"
        assert daemon.sim("handset press 1") == "ok"  # votre annonce
        menu = events.wait_for(lambda e: e.get("id") == "greeting_menu_standard", timeout=30)
        assert daemon.sim("handset press 1") == "ok"  # record
        beep = events.wait_for(lambda e: e.get("id") == "beep", after=events.index_of(menu))
        events.wait_for(lambda e: e["type"] == "prompt_end", after=events.index_of(beep) + 1)
        assert daemon.sim(f"handset say {CALLER_WAV}") == "ok"
        assert daemon.sim("handset press #") == "ok"
        back = events.wait_for(lambda e: e.get("id") == "greeting_new_audio", timeout=20)
        confirm = events.wait_for(
            lambda e: e.get("id") == "greeting_confirm_menu", after=events.index_of(back)
        )
        assert daemon.sim("handset press 1") == "ok"  # keep it
        events.wait_for(lambda e: e.get("id") == "greeting_saved", after=events.index_of(confirm))
        assert daemon.sim("handset onhook") == "ok"
        greeting = read_wav_pcm(daemon.state_dir / "greetings" / "greeting.wav")
        spoke_at = greeting.find(speech()[: RATE // 5 * 2])
        assert spoke_at >= 0 and speech().startswith(greeting[spoke_at:])
        # A caller now hears the subscriber's own greeting, then the beep.
        mark = events.mark()
        start = tap.stat().st_size
        assert daemon.sim("remote call") == "ok"
        own = events.wait_for(lambda e: e.get("id") == "greeting_own", after=mark)
        events.wait_for(lambda e: e.get("id") == "beep", after=events.index_of(own))
        assert daemon.sim("remote hangup") == "ok"
        assert daemon.stop() == 0
        assert greeting[spoke_at : spoke_at + 8000] in tap.read_bytes()[start:]
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.stop()
