"""The V.253 modem simulator, driven through real pyserial on its pty, decoded by dle/at."""

from __future__ import annotations

import itertools
import os
import re
import select
import subprocess
import sys
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import serial

from gatewayd.errors import DeviceError
from gatewayd.line.at import (
    FAMILIES,
    AtLine,
    AtLineKind,
    AtResponseReader,
    convert_s16le,
    detect_family,
    encode_command,
    expected_results,
)
from gatewayd.line.dle import (
    DLE_BARGE_IN,
    DLE_BARGE_IN_AFTER_FLUSH,
    DLE_ETX,
    DleDecoder,
    DtmfDigit,
    HandsetOffHook,
    HandsetOnHook,
    ModemEvent,
    RemoteHangup,
    RingEvent,
    dle_encode,
)
from gatewayd.line.modem_sim import ModemSimulator, SimulatorUsageError
from gatewayd.logsetup import TRACE

ROOT = Path(__file__).resolve().parent.parent
PROMPT = ROOT / "audio" / "fr" / "code_saved.wav"
WAIT_S = 5.0  # upper bound for anything to arrive; normally a few milliseconds


class Dte:
    """The host side: real pyserial, bytes through DleDecoder then AtResponseReader."""

    def __init__(self, port: str) -> None:
        self.serial = serial.Serial(port, 115200, timeout=0.05)
        self.decoder = DleDecoder()
        self.reader = AtResponseReader()
        self.lines: list[AtLine] = []
        self.events: list[ModemEvent] = []

    def pump(self) -> None:
        text, events = self.decoder.feed(self.serial.read(max(1, self.serial.in_waiting)))
        self.events += events
        self.lines += self.reader.feed(text)

    def wait_for(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what}: lines {self.lines}, events {self.events}")
            self.pump()

    def command(self, command: str) -> AtLine:
        """Send one command; return its final result (other lines stay in .lines)."""
        self.lines.clear()
        self.serial.write(encode_command(command))
        self.wait_for(lambda: any(line.is_final for line in self.lines), f"answer to {command}")
        return next(line for line in self.lines if line.is_final)

    def run(self, commands: tuple[str, ...]) -> None:
        for command in commands:
            final = self.command(command)
            assert final.text in expected_results(command), (command, final)

    def wait_events(self, count: int) -> list[ModemEvent]:
        self.wait_for(lambda: len(self.events) >= count, f"{count} events")
        events, self.events = self.events, []
        return events

    def close(self) -> None:
        self.serial.close()


@pytest.fixture(params=sorted(FAMILIES))
def family(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sim(family: str) -> Iterator[ModemSimulator]:
    with ModemSimulator(family) as simulator:
        yield simulator


@pytest.fixture
def dte(sim: ModemSimulator) -> Iterator[Dte]:
    host = Dte(sim.port)
    yield host
    host.close()


@pytest.fixture
def voice_dte(sim: ModemSimulator, dte: Dte) -> Dte:
    """A DTE that ran its family's init sequence (voice mode, on-hook)."""
    dte.run(sim.family.init)
    return dte


def keys(events: list[ModemEvent]) -> str:
    return "".join(e.key for e in events if isinstance(e, DtmfDigit))


def prompt_audio(sample_format: str) -> bytes:
    with wave.open(str(PROMPT)) as wav:
        pcm = wav.readframes(wav.getnframes())
    return convert_s16le(pcm, "u8" if sample_format == "u8" else "s8")


# --- commands -------------------------------------------------------------------------------


def test_each_family_init_answer_and_hang_up_sequences_succeed(
    sim: ModemSimulator, dte: Dte
) -> None:
    dte.run(sim.family.init)
    assert sim.voice_mode
    dte.run(sim.family.answer)
    answered = sim.line_off_hook
    dte.run(sim.family.hangup)
    hung_up = not sim.line_off_hook
    assert answered and hung_up
    assert sim.commands == [*sim.family.init, *sim.family.answer, *sim.family.hangup]


def test_ati0_identifies_the_family(sim: ModemSimulator, dte: Dte) -> None:
    assert dte.command("ATI0").is_success
    (reply,) = [line.text for line in dte.lines if line.kind is AtLineKind.INFO]
    if sim.family.identify_reply is not None:
        assert detect_family(reply) is sim.family


def test_echo_follows_ate(sim: ModemSimulator, dte: Dte) -> None:
    dte.command("AT")
    assert [line.kind for line in dte.lines] == [AtLineKind.ECHO, AtLineKind.FINAL]
    dte.command("ATE0")
    dte.command("AT")
    assert [line.kind for line in dte.lines] == [AtLineKind.FINAL]


def test_voice_commands_need_voice_mode_and_vtx_needs_the_line(
    sim: ModemSimulator, dte: Dte
) -> None:
    assert dte.command(sim.family.voice_mode_command).text == "ERROR"
    dte.command("AT+FCLASS=8")
    assert dte.command("AT+VTX").text == "ERROR"  # still on-hook
    assert dte.command(sim.family.voice_mode_command).text == "OK"
    assert dte.command("AT+VSM=99,8000").text == "ERROR"
    assert dte.command("AT+VSM=?").text == "OK"
    assert len([line for line in dte.lines if line.kind is AtLineKind.INFO]) >= 3


def test_a_command_of_another_family_is_an_error() -> None:
    with ModemSimulator("usr5637") as sim:
        dte = Dte(sim.port)
        try:
            assert dte.command(FAMILIES["conexant"].init[3]).text == "ERROR"
            assert dte.command("AT+NOSUCH=1").text == "ERROR"
        finally:
            dte.close()


# --- playback -------------------------------------------------------------------------------


def test_playback_bytes_with_dle_and_etx_arrive_intact(sim: ModemSimulator, voice_dte: Dte) -> None:
    audio = bytes(range(256)) * 8 + b"\x10\x03\x10\x10\x03\x03\x10"
    voice_dte.run(sim.family.answer + sim.family.play)
    escaped = dle_encode(audio)
    for start in range(0, len(escaped), 333):  # odd chunks: some split a doubled DLE
        voice_dte.serial.write(escaped[start : start + 333])
    voice_dte.serial.write(DLE_ETX)
    voice_dte.wait_for(lambda: any(line.text == "OK" for line in voice_dte.lines), "OK")
    assert sim.playbacks == [audio]


def test_a_real_prompt_plays_in_the_family_format(sim: ModemSimulator, voice_dte: Dte) -> None:
    audio = prompt_audio(sim.family.sample_format)
    voice_dte.run(sim.family.answer + sim.family.play)
    voice_dte.serial.write(dle_encode(audio) + DLE_ETX)
    voice_dte.wait_for(lambda: any(line.text == "OK" for line in voice_dte.lines), "OK")
    assert sim.playbacks == [audio]
    voice_dte.run(sim.family.hangup)


def test_barge_in_discards_the_playback(sim: ModemSimulator, voice_dte: Dte) -> None:
    audio = b"\x80\x10\x81" * 100
    voice_dte.run(sim.family.answer + sim.family.play)
    voice_dte.serial.write(dle_encode(audio))
    voice_dte.serial.reset_output_buffer()  # drops what the modem has not read yet
    voice_dte.serial.write(DLE_BARGE_IN_AFTER_FLUSH)
    voice_dte.wait_for(lambda: any(line.text == "OK" for line in voice_dte.lines), "OK")
    assert sim.playbacks == []
    (discarded,) = sim.aborted_playbacks
    # Whatever reached the modem before the flush, and maybe the leading CAN as one sample.
    assert audio.startswith(discarded.removesuffix(b"\x18"))
    # The modem is back in command mode: the next playback works.
    voice_dte.run(sim.family.play)
    voice_dte.serial.write(dle_encode(b"\x01\x02") + DLE_ETX)
    voice_dte.wait_for(lambda: any(line.text == "OK" for line in voice_dte.lines), "OK")
    assert sim.playbacks == [b"\x01\x02"]


@pytest.mark.parametrize(
    ("barge_in", "aborted"), [(DLE_BARGE_IN, False), (DLE_BARGE_IN_AFTER_FLUSH, True)]
)
def test_barge_in_after_a_flush_that_cut_a_doubled_dle(
    sim: ModemSimulator, voice_dte: Dte, barge_in: bytes, aborted: bool
) -> None:
    voice_dte.run(sim.family.answer + sim.family.play)
    # What the modem got when the flush dropped the second half of a doubled DLE.
    voice_dte.serial.write(b"\x80\x81\x10")
    voice_dte.serial.write(barge_in)
    voice_dte.wait_for(lambda: any(line.text == "OK" for line in voice_dte.lines), "OK")
    assert bool(sim.aborted_playbacks) is aborted
    # Plain DLE_BARGE_IN reads as data here: the modem plays its buffer out instead.
    assert bool(sim.playbacks) is not aborted


def test_a_key_during_playback_reaches_the_host(sim: ModemSimulator, voice_dte: Dte) -> None:
    voice_dte.run(sim.family.answer + sim.family.play)
    voice_dte.serial.write(dle_encode(b"\x80" * 400))
    sim.press("9")
    events = voice_dte.wait_events(3)
    assert keys(events) == "9"
    voice_dte.serial.write(DLE_BARGE_IN)
    voice_dte.wait_for(lambda: any(line.text == "OK" for line in voice_dte.lines), "OK")


# --- the outside world ----------------------------------------------------------------------


def test_ring_lift_press_and_hang_up_decode_to_events(sim: ModemSimulator, voice_dte: Dte) -> None:
    sim.ring(2)
    assert voice_dte.wait_events(2) == [RingEvent(), RingEvent()]
    off_code, on_code = sim.family.handset_codes
    sim.lift_handset()
    assert voice_dte.wait_events(1) == [HandsetOffHook(off_code)]
    assert sim.handset_off_hook
    sim.press("3103#")
    assert keys(voice_dte.wait_events(15)) == "3103#"
    sim.hang_up_handset()
    assert voice_dte.wait_events(1) == [HandsetOnHook(on_code)]


@pytest.mark.parametrize("end", ["~", "\x7f"])
def test_repeated_digits_in_a_burst_count_once(
    sim: ModemSimulator, voice_dte: Dte, end: str
) -> None:
    sim.press("55", burst_repeat=3, end=end)
    assert keys(voice_dte.wait_events(6)) == "55"


@pytest.mark.parametrize(("code", "reason"), [("b", "busy"), ("l", "loop_break"), ("s", "silence")])
def test_remote_hang_up(sim: ModemSimulator, voice_dte: Dte, code: str, reason: str) -> None:
    voice_dte.run(sim.family.answer)
    sim.remote_hangup(code)
    assert voice_dte.wait_events(1) == [RemoteHangup(reason)]


def test_data_mode_rings_are_text_with_caller_id(sim: ModemSimulator, dte: Dte) -> None:
    dte.run(("ATE0", "AT+VCID=1"))
    dte.lines.clear()
    sim.ring()
    sim.caller_id("0123456789")
    dte.wait_for(lambda: any(line.field == "NAME" for line in dte.lines), "caller ID")
    assert dte.lines[0].kind is AtLineKind.RING
    assert {line.field: line.value for line in dte.lines[1:]}["NMBR"] == "0123456789"
    assert dte.events == []


def test_handset_and_keys_are_not_reported_outside_voice_mode(
    sim: ModemSimulator, dte: Dte
) -> None:
    sim.lift_handset()
    sim.press("12")
    dte.command("AT")  # answered after anything the modem had already queued
    assert dte.events == []
    assert [e.detail for e in sim.history if e.kind == "event"] == [
        "handset lifted: not reported (not in voice mode)",
        "press 2 key(s) not reported (not in voice mode)",
    ]


def test_conexant_reports_the_extension_only_with_ste() -> None:
    with ModemSimulator("conexant") as sim:
        dte = Dte(sim.port)
        try:
            dte.run(("AT+FCLASS=8",))
            sim.lift_handset()
            dte.command("AT")
            assert dte.events == []
            dte.run(("AT-STE=7",))
            sim.hang_up_handset()
            assert dte.wait_events(1) == [HandsetOnHook("p")]
        finally:
            dte.close()


# --- unplug, history, lifecycle -------------------------------------------------------------


def test_unplug_fails_the_host_and_replug_works_again(sim: ModemSimulator, dte: Dte) -> None:
    dte.run(("ATE0", "AT+FCLASS=8"))
    old_tty = sim.tty_path
    sim.unplug()
    assert not os.path.exists(sim.port)
    with pytest.raises((serial.SerialException, OSError)):
        dte.serial.read(1)
    with pytest.raises((serial.SerialException, OSError)):
        dte.serial.write(b"AT\r")
    with pytest.raises(DeviceError, match="replug"):
        sim.ring()
    dte.close()

    sim.replug()
    assert os.path.realpath(sim.port) == sim.tty_path
    again = Dte(sim.port)
    try:
        # Power-on defaults again: echo on, data mode.
        assert again.command("AT").is_success
        assert again.lines[0].kind is AtLineKind.ECHO
        assert not sim.voice_mode
    finally:
        again.close()
    assert old_tty  # the old path existed; the new one may or may not reuse its number


def test_history_is_timestamped_by_the_given_clock_and_never_shows_keys() -> None:
    ticks = itertools.count(100)
    with ModemSimulator("generic", clock=lambda: float(next(ticks))) as sim:
        dte = Dte(sim.port)
        try:
            dte.run(("AT+FCLASS=8",))
            sim.press("3103")
            dte.wait_events(12)
        finally:
            dte.close()
        history = sim.history
    times = [entry.t for entry in history]
    assert times == sorted(times) and times[0] >= 100
    assert [(e.kind, e.detail) for e in history[1:]] == [
        ("command", "AT+FCLASS=8"),
        ("event", "press 4 key(s)"),
    ]
    assert not any("3103" in entry.detail for entry in history)


def test_raw_byte_logs_never_show_keys(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(TRACE, logger="gatewayd.line.modem_sim")
    with ModemSimulator("generic") as sim:
        dte = Dte(sim.port)
        try:
            dte.run(("AT+FCLASS=8",))
            sim.press("3103", burst_repeat=2)
            assert keys(dte.wait_events(12)) == "3103"
        finally:
            dte.close()
    raw_logs = [r.getMessage() for r in caplog.records if r.levelno == TRACE]
    assert any("\\x10?" in message for message in raw_logs)  # the presses were logged ...
    assert not any(re.search(r"\\x10[0-9*#A-D]", message) for message in raw_logs)  # masked


def test_close_is_idempotent_and_removes_the_port(tmp_path: Path) -> None:
    link = tmp_path / "ttyModem"
    sim = ModemSimulator("usr5637", link=link)
    assert link.is_symlink()
    sim.close()
    sim.close()
    assert not link.exists() and not link.is_symlink()
    with pytest.raises(DeviceError):
        sim.replug()


@pytest.mark.parametrize(
    "call",
    [
        lambda sim: sim.press("12x"),
        lambda sim: sim.press("1", burst_repeat=0),
        lambda sim: sim.press("1", end="!"),
        lambda sim: sim.remote_hangup("bb"),
    ],
)
def test_impossible_line_actions_are_refused(call: Callable[[ModemSimulator], None]) -> None:
    with ModemSimulator() as sim, pytest.raises(SimulatorUsageError):
        call(sim)
    assert issubclass(SimulatorUsageError, ValueError)


def test_a_link_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    taken = tmp_path / "ttyS0"
    taken.write_text("")
    with pytest.raises(DeviceError, match="not a symlink"):
        ModemSimulator(link=taken)


# --- technician's prompt --------------------------------------------------------------------


def _readline(stream: object, fd: int) -> str:
    ready, _, _ = select.select([fd], [], [], WAIT_S)
    assert ready, "the simulator printed nothing"
    line = stream.readline()  # type: ignore[attr-defined]
    return str(line)


def test_the_command_line_simulator_rings_and_keys(tmp_path: Path) -> None:
    link = tmp_path / "modem"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gatewayd.line.modem_sim", "--family=usr5637", f"--link={link}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert _readline(proc.stdout, proc.stdout.fileno()).strip() == f"port: {link}"
        dte = Dte(str(link))
        try:
            dte.run(("ATE0", "ATI0"))
            assert any(line.text == "5601" for line in dte.lines)
            dte.run(("AT+FCLASS=8",))
            proc.stdin.write("ring\npress 42\n")
            proc.stdin.flush()
            events = dte.wait_events(7)
            assert events[0] == RingEvent()
            assert keys(events) == "42"
        finally:
            dte.close()
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        assert proc.wait(timeout=WAIT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not link.exists()


def test_gatewayd_sim_modem_runs_the_simulator_prompt(capsys: pytest.CaptureFixture[str]) -> None:
    from gatewayd.cli import main as cli_main

    assert cli_main(["sim", "modem", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: gatewayd sim modem") and "--family" in out
