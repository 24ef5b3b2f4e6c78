"""End to end: ``gatewayd run`` as a subprocess, driven through sim.sock and ctl.sock."""

from __future__ import annotations

import itertools
import json
import os
import signal
import wave
from pathlib import Path

import pytest

from gatewayd.prompts import PromptCatalogue, default_audio_dir
from tests.daemon_process import DaemonProcess, make_profile

CODE = "4931"
PERIOD_BYTES = 320  # 20 ms at 8 kHz, S16_LE mono


@pytest.fixture
def daemon(tmp_path: Path):
    proc = DaemonProcess(tmp_path, make_profile(tmp_path)).start()
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        proc.stop()


def state_without_hashes(path: Path) -> str:
    """The state file with the hash and salt values removed (random hex could hold any 4 digits)."""
    data = json.loads(path.read_text())
    for doc in data["mailbox"].values():
        assert doc["code_hash"] != CODE.encode().hex()  # not merely encoded
        doc["code_hash"] = doc["salt"] = "<removed>"
    return json.dumps(data)


def create_code(daemon: DaemonProcess, code: str) -> None:
    for command in (
        "handset offhook",
        "handset press 3103",
        "handset press 3",
        "handset press 2",
        "handset press 1",
        f"handset press {code}#",
        "handset press 1",
        "handset onhook",
    ):
        assert daemon.sim(command) == "ok", command


def test_create_a_code_through_the_sim_socket(daemon: DaemonProcess) -> None:
    events = daemon.events()
    create_code(daemon, CODE)
    created = events.wait_for(lambda e: e["type"] == "code")
    assert created["action"] == "created" and created["origin"] == "handset"
    events.wait_for(lambda e: e["type"] == "call" and e["state"] == "end")
    kinds = [e["type"] for e in events.items]
    assert {"hook", "call", "tone", "key", "menu", "prompt"} <= set(kinds)
    masked = [e["key"] for e in events.of_type("key")]
    assert masked[7:12] == ["masked"] * 5 and CODE not in "".join(masked)
    stream = json.dumps(events.items)
    assert CODE not in stream and "digit_4" not in stream
    assert CODE not in state_without_hashes(daemon.state_file)
    status = json.loads(daemon.ctl("status --json"))
    assert status["code_set"] is True and status["failures"] == 0
    assert CODE not in daemon.ctl("status") + daemon.ctl("audit")


def test_modify_then_remote_access_then_three_wrong_codes(daemon: DaemonProcess) -> None:
    create_code(daemon, CODE)
    events = daemon.events()
    for command in (
        "handset offhook",
        "handset press 3103",
        "handset press 321",
        "handset press 5827#",
        "handset press 1",
        "handset onhook",
    ):
        assert daemon.sim(command) == "ok"
    assert events.wait_for(lambda e: e["type"] == "code")["action"] == "modified"

    events.wait_for(lambda e: e["type"] == "call" and e["state"] == "end")  # the handset's
    mark = events.mark()
    assert daemon.sim("remote call") == "ok"
    assert daemon.sim("remote press *") == "ok"  # in the greeting: the code
    assert daemon.sim("remote press 5827#") == "ok"
    assert events.wait_for(lambda e: e["type"] == "auth", after=mark)["result"] == "ok"
    events.wait_for(lambda e: e["type"] == "menu" and e["state"] == "main_menu", after=mark)
    assert daemon.sim("remote hangup") == "ok"
    events.wait_for(lambda e: e["type"] == "call" and e.get("reason") == "hangup", after=mark)

    mark = events.mark()
    assert daemon.sim("remote call") == "ok"
    assert daemon.sim("remote press *") == "ok"  # in the greeting: the code
    for wrong in ("1111", "2222", "3333"):
        assert daemon.sim(f"remote press {wrong}#") == "ok"
    last = events.wait_for(lambda e: e.get("id") == "code_too_many_failures", after=mark)
    end = events.wait_for(lambda e: e["type"] == "call" and e.get("reason") == "ended", after=mark)
    assert events.index_of(end) > events.index_of(last)
    assert [e["failures"] for e in events.of_type("auth", mark)] == [1, 2, 3]
    assert events.of_type("cooldown", mark)[0]["seconds"] == 900
    status = json.loads(daemon.ctl("status --json"))
    assert status["failures"] == 3 and status["cooldown_remaining_s"] > 800
    # During the cool-down a caller is not even asked for the code.
    mark = events.mark()
    assert daemon.sim("remote call") == "ok"
    assert daemon.sim("remote press *") == "ok"  # in the greeting: the code
    events.wait_for(lambda e: e.get("id") == "code_too_many_failures", after=mark)
    events.wait_for(lambda e: e["type"] == "call" and e["state"] == "end", after=mark)
    assert not events.of_type("auth", mark)


def test_advisor_reset_through_the_control_socket(daemon: DaemonProcess) -> None:
    create_code(daemon, CODE)
    events = daemon.events()
    assert daemon.ctl("reset").startswith("error ")  # asks for confirmation
    assert json.loads(daemon.ctl("status --json"))["code_set"] is True
    assert daemon.ctl("reset --yes").startswith("ok")
    reset = events.wait_for(lambda e: e["type"] == "code")
    assert reset == {**reset, "action": "reset", "origin": "ctl"}
    status = json.loads(daemon.ctl("status --json"))
    assert (status["code_set"], status["failures"], status["locked"]) == (False, 0, False)
    assert "reset" in daemon.ctl("audit 1")
    mark = events.mark()
    assert daemon.sim("remote call") == "ok"
    assert daemon.sim("remote press *") == "ok"  # in the greeting: the code
    events.wait_for(lambda e: e.get("id") == "code_create_first", after=mark)


def test_sim_errors_are_answered_and_the_daemon_goes_on(daemon: DaemonProcess) -> None:
    assert daemon.sim("handset press 1") == "error lift the handset first (handset offhook)"
    assert daemon.sim("handset offhook") == "ok"
    assert daemon.sim("handset offhook").startswith("error ")
    assert daemon.sim("handset press 12x").startswith("error invalid key")
    assert daemon.sim("modem explode").startswith("error unknown party")
    assert daemon.sim("remote call") == "error line busy: the handset is off-hook"
    assert daemon.sim("remote press 1").startswith("error no remote call")
    assert daemon.sim("handset onhook") == "ok"


def test_bad_control_clients_are_dropped_and_the_daemon_goes_on(daemon: DaemonProcess) -> None:
    assert daemon.ctl(b"\xff\xfe\x00garbage\n").startswith("error unknown command")
    assert daemon.ctl(b"x" * (1024 * 1024) + b"\n").startswith("error line too long")
    events = daemon.events()
    events.close()  # disconnect mid-stream
    assert daemon.sim("handset offhook") == "ok"
    assert json.loads(daemon.ctl("status --json"))["line"]["handset"] == "off-hook"
    assert "status" in daemon.ctl("help")


def test_sigterm_runs_one_clean_shutdown(daemon: DaemonProcess) -> None:
    create_code(daemon, CODE)
    assert daemon.sim("handset offhook") == "ok"
    assert daemon.stop(signal.SIGTERM) == 0
    assert not (daemon.runtime_dir / "sim.sock").exists()
    assert not (daemon.runtime_dir / "ctl.sock").exists()
    assert "stopped" in daemon.log_text()
    restarted = DaemonProcess(daemon.tmp, daemon.profile).start()
    try:
        assert json.loads(restarted.ctl("status --json"))["code_set"] is True
    finally:
        assert restarted.stop(signal.SIGINT) == 0


def test_a_failure_inside_a_call_ends_that_call_but_not_the_daemon(daemon) -> None:
    create_code(daemon, CODE)
    daemon.state_file.write_text('{"mailbox": {"1": {"fail')  # the disk went bad under us
    events = daemon.events()
    assert daemon.sim("remote call") == "ok"
    assert daemon.sim("remote press *") == "ok"  # in the greeting: the code
    assert daemon.sim(f"remote press {CODE}#") == "ok"  # counting the try must write: it fails
    # Failed closed (issue 15.1): the caller is told and the box hangs up.
    events.wait_for(lambda e: e["type"] == "prompt" and e["id"] == "service_unavailable")
    end = events.wait_for(lambda e: e["type"] == "call" and e["state"] == "end")
    assert end["reason"] in ("ended", "error")
    assert not events.of_type("auth")  # failed closed: no access, nothing checked
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert "does not parse" in daemon.log_text()
    assert "status" in daemon.ctl("help")  # the service goes on
    assert daemon.sim("handset offhook") == "ok"


def test_a_hardware_profile_without_a_pepper_refuses_to_start(tmp_path: Path) -> None:
    profile = make_profile(tmp_path, **{"create_pepper = true": "create_pepper = false"})
    proc = DaemonProcess(tmp_path, profile)
    with pytest.raises(AssertionError, match="not ready"):
        proc.start()
    assert "gatewayd provision" in proc.log_text()


# --- what reached ALSA ------------------------------------------------------------------


def find_in_order(tap: bytes, clips: list[bytes]) -> list[int]:
    """Offsets of each clip in ``tap``, in order, with only silence between them."""
    offsets: list[int] = []
    pos = 0
    for clip in clips:
        at = tap.find(clip, pos)
        assert at >= 0, f"clip {len(offsets)} not found after byte {pos}"
        # Only silence between our clips (before the first: the tail of the previous call,
        # which ALSA's file plugin may write late).
        if offsets:
            assert not tap[pos:at].strip(b"\0"), f"non-silent bytes before clip {len(offsets)}"
        offsets.append(at)
        pos = at + len(clip)
    return offsets


@pytest.fixture
def tapped(tmp_path: Path):
    tap = tmp_path / "tap.raw"
    profile = make_profile(
        tmp_path, **{'playback = "null"': f"playback = \"file:FILE='{tap}',FORMAT=raw\""}
    )
    proc = DaemonProcess(tmp_path, profile).start()
    yield proc, tap
    if proc.proc is not None and proc.proc.poll() is None:
        proc.stop()


def test_the_pcm_that_reached_alsa_is_the_prompts_in_order(tapped) -> None:
    daemon, tap = tapped
    catalogue = PromptCatalogue.load(default_audio_dir(), "fr")
    create_code(daemon, CODE)
    events = daemon.events()
    start = tap.stat().st_size
    mark = events.mark()
    assert daemon.sim("remote call") == "ok"
    assert daemon.sim("remote press *") == "ok"  # in the greeting: the code
    for wrong in ("1111", "2222", "3333"):
        # Key only once the box has finished talking: nothing is cut.
        events.wait_for(lambda e: e["type"] == "prompt_end", after=mark)
        mark = events.mark()
        assert daemon.sim(f"remote press {wrong}#") == "ok"
    events.wait_for(lambda e: e["type"] == "call" and e["state"] == "end", after=mark)
    assert daemon.stop() == 0  # closing the PCM flushes the file plugin's last bytes
    heard = tap.read_bytes()[start:]
    order = [
        "code_enter",
        "code_wrong",
        "code_enter",
        "code_wrong",
        "code_enter",
        "code_too_many_failures",
    ]
    find_in_order(heard, [catalogue.pcm(p) for p in order])


def test_a_key_during_a_prompt_cuts_it_within_three_periods(tapped) -> None:
    daemon, tap = tapped
    catalogue = PromptCatalogue.load(default_audio_dir(), "fr")
    events = daemon.events()
    assert daemon.sim("handset offhook") == "ok"
    assert daemon.sim("handset press 3103") == "ok"
    started = events.wait_for(lambda e: e.get("id") == "main_menu")
    offset = tap.stat().st_size
    assert daemon.sim("handset press 3") == "ok"  # during the 6 s main menu
    stop = events.wait_for(lambda e: e["type"] == "stop", after=events.index_of(started))
    events.wait_for(lambda e: e.get("id") == "personalise_menu")
    main_menu = catalogue.pcm("main_menu")
    assert daemon.stop() == 0  # closing the PCM flushes the file plugin's last bytes
    heard = tap.read_bytes()
    at = heard.rfind(main_menu[: PERIOD_BYTES * 5], 0, offset + PERIOD_BYTES)
    assert at >= 0
    played = 0
    while (
        heard[at + played : at + played + PERIOD_BYTES] == main_menu[played : played + PERIOD_BYTES]
    ):
        played += PERIOD_BYTES
    assert played < len(main_menu) // 2  # it was cut, far from its end
    elapsed_periods = (stop["t"] - started["t"]) / 0.020
    assert played / PERIOD_BYTES <= elapsed_periods + 3 + 1  # +1: the event stamps' rounding
    assert os.path.getsize(tap) > 0


# --- start-up, sockets and the sim line's timing ------------------------------------------


def test_the_sim_profile_makes_its_own_pepper_and_private_sockets(daemon: DaemonProcess) -> None:
    pepper = daemon.state_dir / "pepper"
    assert pepper.stat().st_mode & 0o777 == 0o600 and len(pepper.read_bytes()) >= 16
    assert "sim profile: created a pepper for this box at" in daemon.log_text()
    for name in ("sim.sock", "ctl.sock"):
        assert (daemon.runtime_dir / name).stat().st_mode & 0o777 == 0o660


def test_keys_are_sent_in_real_time(daemon: DaemonProcess) -> None:
    events = daemon.events()
    assert daemon.sim("handset offhook") == "ok"
    assert daemon.sim("handset press 3103") == "ok"
    events.wait_for(lambda e: e["type"] == "menu" and e["state"] == "main_menu")
    stamps = [e["t"] for e in events.of_type("key")]
    assert len(stamps) == 4
    # 80 ms tone + 80 ms gap per key: never faster than a handset can key.
    assert all(b - a >= 0.155 for a, b in itertools.pairwise(stamps))


def test_a_remote_call_rings_then_is_answered_per_the_profile(tmp_path: Path) -> None:
    profile = make_profile(
        tmp_path,
        **{
            "answer_after_rings = 2": "answer_after_rings = 3",
            "ring_on_s = 1.5": "ring_on_s = 0.1",
            "ring_off_s = 3.5": "ring_off_s = 0.1",
        },
    )
    daemon = DaemonProcess(tmp_path, profile).start()
    try:
        events = daemon.events()
        assert daemon.sim("remote call 0612345678") == "ok"
        start = events.wait_for(lambda e: e["type"] == "call" and e["state"] == "start")
        rings = [e for e in events.items[: events.index_of(start)] if e["type"] == "ring"]
        assert len(rings) == 3 and start["party"] == "remote"
        assert rings[2]["t"] - rings[0]["t"] >= 0.39  # two ring cycles of 0.2 s
        voice = tmp_path / "voice.wav"
        with wave.open(str(voice), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(b"\1\2" * 1600)
        assert daemon.sim(f"remote say {voice}") == "ok"  # nobody captures yet: dropped
        assert daemon.sim("remote hangup") == "ok"
        events.wait_for(lambda e: e["type"] == "call" and e["state"] == "end")
        assert "0612345678" not in str(events.items)  # the caller's number is never shown
    finally:
        daemon.stop()
    assert "0612345678" not in daemon.log_text()


def test_an_unusable_audio_device_falls_back_to_null_on_the_sim_only(tmp_path: Path) -> None:
    profile = make_profile(tmp_path, **{'playback = "null"': 'playback = "no_such_card"'})
    daemon = DaemonProcess(tmp_path, profile).start()
    try:
        log = daemon.log_text()
        assert "'no_such_card' cannot be used" in log and "'null' instead" in log
        create_code(daemon, CODE)  # the service works, silently
        assert json.loads(daemon.ctl("status --json"))["code_set"] is True
    finally:
        daemon.stop()
