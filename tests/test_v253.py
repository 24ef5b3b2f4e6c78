"""The v253-modem line driver in-process: real pyserial on the modem simulator's pty.

Each test runs its own asyncio loop (``asyncio.run``), as the daemon does. Waits are
condition waits with a deadline; timing asserts are bounds computed from measured times.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gatewayd.audio import Clip, ToneClip
from gatewayd.errors import DeviceError
from gatewayd.events import (
    WITHHELD,
    Digit,
    LineEvent,
    LineFault,
    OffHook,
    OnHook,
    RemoteAnswered,
    RemoteHangup,
    Ring,
)
from gatewayd.line import open_line
from gatewayd.line.at import FAMILIES, convert_s16le, to_s16le
from gatewayd.line.modem_sim import ModemSimulator
from gatewayd.line.v253 import MAX_AHEAD_PERIODS, V253ModemLine
from gatewayd.logsetup import TRACE
from gatewayd.pcm import PERIOD_FRAMES
from gatewayd.profile import load_profile
from gatewayd.tones import TonePlan, tone_periods

REPO = Path(__file__).resolve().parent.parent
WAIT_S = 5.0
RATE = 8000


def run(body: Coroutine[Any, Any, None]) -> None:
    """Run one async test body on a fresh loop, with an overall deadline."""
    asyncio.run(asyncio.wait_for(body, 30))


@dataclass
class Rig:
    """A started driver on a simulator, and the events it emitted."""

    sim: ModemSimulator
    line: V253ModemLine
    events: list[LineEvent] = field(default_factory=list)
    #: The service's part, played by the rig: answer at this ring of a call.
    answer_after_rings: int = 2

    async def until(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not ready():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {what}: events {self.events}, modem commands {self.sim.commands}"
                )
            await asyncio.sleep(0.005)

    def of(self, kind: type) -> list[LineEvent]:
        return [event for event in self.events if isinstance(event, kind)]

    async def answered_call(self) -> None:
        self.sim.ring(self.answer_after_rings)
        await self.until(lambda: bool(self.of(RemoteAnswered)), "answer")


@contextlib.asynccontextmanager
async def modem(family: str = "generic", **options: Any) -> AsyncIterator[Rig]:
    with ModemSimulator(family) as sim:
        events: list[LineEvent] = []
        answer_after = options.pop("answer_after_rings", 2)
        rings = 0

        def emit(event: LineEvent) -> None:  # the service: answer at the n-th ring
            nonlocal rings
            events.append(event)
            if isinstance(event, Ring):
                rings += 1
                if rings == answer_after:
                    line.answer()
            elif isinstance(event, RemoteHangup | RemoteAnswered):
                rings = 0

        settings: dict[str, Any] = {"off_hook_settle_s": 0.0, "command_timeout_s": 2.0}
        settings.update(options)
        line = V253ModemLine(emit, sim.port, family=family, **settings)
        await line.start()
        try:
            yield Rig(sim, line, events, answer_after)
        finally:
            await line.close()


def s16(samples: list[int]) -> bytes:
    return array.array("h", samples).tobytes()


def clip_with_dle_bytes(seconds: float, *, reverse: bool = False) -> bytes:
    """S16_LE audio whose 8-bit form holds every byte value, DLE and <DLE><ETX> included."""
    # u8 keeps the high byte with its top bit flipped: sample v * 256 - 32768 becomes byte v.
    ramp = [value * 256 - 32768 for value in range(256)]
    dle, etx = 0x10 * 256 - 32768, 0x03 * 256 - 32768
    samples = [dle, etx, dle, dle, *ramp]
    if reverse:
        samples.reverse()
    count = int(seconds * RATE)
    return s16((samples * (count // len(samples) + 1))[:count])


class Player:
    """Callbacks of one play() call."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.done_at: float | None = None

    def on_clip_start(self, index: int) -> None:
        self.started.append(index)

    def on_done(self) -> None:
        assert self.done_at is None, "on_done called twice"
        self.done_at = time.monotonic()


# --- init ---------------------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_start_runs_the_family_init_and_leaves_the_modem_in_voice_mode(family: str) -> None:
    async def body() -> None:
        async with modem(family) as rig:
            init = list(FAMILIES[family].init)
            assert rig.sim.commands[: len(init)] == init
            assert rig.sim.voice_mode and not rig.sim.line_off_hook
            assert rig.line.status() == {
                "port": rig.sim.port,
                "family": family,
                "connected": True,
                "call": "idle",
                "handset": "on-hook",
            }

    run(body())


def test_a_profile_naming_the_wrong_family_fails_at_start_and_says_which_key() -> None:
    async def body() -> None:
        with ModemSimulator("generic") as sim:
            line = V253ModemLine(lambda event: None, sim.port, family="conexant")
            with pytest.raises(DeviceError, match=r"ERROR.*AT-SCID.*line\.family"):
                await line.start()
            await line.close()

    run(body())


def test_a_modem_missing_at_start_is_waited_for_and_used_once_plugged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = tmp_path / "ttyACM9"

    async def body() -> None:
        events: list[LineEvent] = []
        line = V253ModemLine(events.append, str(port), reconnect_first_s=0.02)
        await line.start()  # the daemon starts and serves its sockets meanwhile
        try:
            assert line.status()["connected"] is False
            errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
            assert len(errors) == 1 and "ttyACM9" in errors[0]
            assert "Is the modem plugged in?" in errors[0]
            with ModemSimulator("generic", link=port) as sim:
                rig = Rig(sim, line, events)
                await rig.until(lambda: line.status()["connected"], "the modem")
                assert sim.commands[: len(FAMILIES["generic"].init)] == list(
                    FAMILIES["generic"].init
                )
                assert events == []  # nothing was lost: no LineFault
        finally:
            await line.close()

    run(body())


# --- calls --------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["usr5637", "conexant"])
def test_the_call_is_answered_after_the_profiles_number_of_rings(family: str) -> None:
    async def body() -> None:
        async with modem(family, answer_after_rings=2) as rig:
            before = len(rig.sim.commands)
            rig.sim.ring()
            await rig.until(lambda: len(rig.of(Ring)) == 1, "first ring")
            assert rig.line.status()["call"] == "ringing"  # decided on the ring, not answered
            rig.sim.ring()
            await rig.until(lambda: bool(rig.of(RemoteAnswered)), "answer")
            assert rig.events == [Ring(), Ring(), RemoteAnswered()]
            assert rig.sim.commands[before:] == list(FAMILIES[family].answer)
            assert rig.sim.line_off_hook and rig.line.status()["call"] == "remote"

    run(body())


def test_a_caller_who_gives_up_is_forgotten_and_the_next_call_counts_afresh() -> None:
    async def body() -> None:
        async with modem(answer_after_rings=2, ring_silence_s=0.05) as rig:
            rig.sim.ring()
            await rig.until(lambda: len(rig.of(Ring)) == 1, "first call's ring")
            await rig.until(lambda: rig.line.status()["call"] == "idle", "ringing forgotten")
            assert rig.events == [Ring(), RemoteHangup()]  # the service stops waiting
            rig.sim.ring()
            await rig.until(lambda: len(rig.of(Ring)) == 2, "second call's ring")
            assert rig.line.status()["call"] == "ringing" and not rig.of(RemoteAnswered)

    run(body())


def test_keys_during_a_remote_call_are_the_remote_partys_even_while_a_prompt_plays() -> None:
    async def body() -> None:
        async with modem(answer_after_rings=1) as rig:
            await rig.answered_call()
            rig.sim.press("4")
            await rig.until(lambda: len(rig.of(Digit)) == 1, "key 4")
            player = Player()
            rig.line.audio_output().play(
                [ToneClip("dial", TonePlan.france()["dial"])], on_clip_start=player.on_clip_start
            )
            await rig.until(lambda: player.started == [0], "+VTX data state")
            rig.sim.press("9#", burst_repeat=3)  # a modem that repeats the key in its burst
            await rig.until(lambda: len(rig.of(Digit)) == 3, "keys during +VTX")
            assert rig.of(Digit) == [
                Digit("4", "remote"),
                Digit("9", "remote"),
                Digit("#", "remote"),
            ]

    run(body())


@pytest.mark.parametrize("family", ["generic", "conexant"])
def test_the_handset_on_the_modems_phone_jack_lifts_keys_and_hangs_up(family: str) -> None:
    async def body() -> None:
        async with modem(family) as rig:
            rig.sim.lift_handset()
            await rig.until(lambda: bool(rig.of(OffHook)), "off-hook")
            assert rig.line.status()["handset"] == "off-hook"
            rig.sim.press("31")
            await rig.until(lambda: len(rig.of(Digit)) == 2, "keys")
            rig.sim.hang_up_handset()
            await rig.until(lambda: bool(rig.of(OnHook)), "on-hook")
            assert rig.events == [OffHook(), Digit("3"), Digit("1"), OnHook()]
            assert rig.of(Digit)[0] == Digit("3", "handset")

    run(body())


def test_prompts_to_the_handset_take_the_line_and_hanging_up_gives_it_back() -> None:
    async def body() -> None:
        async with modem() as rig:
            rig.sim.lift_handset()
            await rig.until(lambda: bool(rig.of(OffHook)), "off-hook")
            player = Player()
            rig.line.audio_output().play(
                [ToneClip("dial", TonePlan.france()["dial"])], on_clip_start=player.on_clip_start
            )
            await rig.until(lambda: player.started == [0], "dial tone")
            assert rig.sim.line_off_hook
            rig.sim.hang_up_handset()
            rig.line.audio_output().stop()  # what the call flow does on OnHook
            await rig.until(lambda: not rig.sim.line_off_hook, "line released")
            assert rig.sim.commands[-1] == "AT+VLS=0" and len(rig.sim.aborted_playbacks) == 1

    run(body())


@pytest.mark.parametrize(
    ("family", "code"), [("generic", "b"), ("usr5637", "l"), ("conexant", "s")]
)
def test_a_remote_hangup_ends_the_call_and_the_driver_hangs_up(family: str, code: str) -> None:
    async def body() -> None:
        async with modem(family, answer_after_rings=1) as rig:
            await rig.answered_call()
            rig.sim.remote_hangup(code)
            await rig.until(lambda: bool(rig.of(RemoteHangup)), "remote hang-up")
            hangup = list(FAMILIES[family].hangup)
            await rig.until(lambda: rig.sim.commands[-len(hangup) :] == hangup, "hang-up sequence")
            await rig.until(lambda: not rig.sim.line_off_hook, "line on-hook")
            assert rig.line.status()["call"] == "idle"
            rig.sim.press("5")  # after the call, keys are no longer the caller's
            await rig.until(lambda: bool(rig.of(Digit)), "key")
            assert rig.of(Digit) == [Digit("5", "handset")]

    run(body())


@pytest.mark.parametrize(("sent", "caller"), [("0612345678", "0612345678"), ("O", WITHHELD)])
def test_the_caller_id_between_rings_comes_with_the_next_ring_spaced_or_not(
    sent: str, caller: str
) -> None:
    async def body() -> None:
        async with modem("conexant", answer_after_rings=99) as rig:
            rig.sim.ring()
            await rig.until(lambda: len(rig.of(Ring)) == 1, "first ring")
            rig.sim.caller_id(sent, spaced=True)
            rig.sim.ring()
            await rig.until(lambda: len(rig.of(Ring)) == 2, "second ring")
            assert [e.caller for e in rig.events if isinstance(e, Ring)] == [None, caller]
            rig.sim.remote_hangup("d")  # the caller gives up: dial tone on the line
            await rig.until(lambda: bool(rig.of(RemoteHangup)), "hang-up while ringing")
            rig.sim.ring()  # a new call: the old caller ID is forgotten
            await rig.until(lambda: len(rig.of(Ring)) == 3, "next call's ring")
            assert [e.caller for e in rig.events if isinstance(e, Ring)][2] is None

    run(body())


async def receiving(rig: Rig) -> list[bytes]:
    """Answer, start capturing; the chunks the trunk delivers."""
    await rig.answered_call()
    chunks: list[bytes] = []
    rig.line.start_capture(chunks.append)
    await rig.until(lambda: "AT+VRX" in rig.sim.commands, "+VRX")
    await rig.until(lambda: rig.line._receiving, "receive data state")
    return chunks


@pytest.mark.parametrize("family", ["generic", "usr5637", "conexant"])
def test_the_callers_audio_arrives_unescaped_as_s16le_and_keys_and_silence_pass(
    family: str,
) -> None:
    async def body() -> None:
        async with modem(family, answer_after_rings=1) as rig:
            chunks = await receiving(rig)
            voice = clip_with_dle_bytes(0.5)
            rig.sim.remote_hangup("s")  # silence: the recorder's matter, not a hang-up
            assert rig.sim.say(voice)
            rig.sim.press("#")
            expected = to_s16le(convert_s16le(voice, "u8"), "u8")
            await rig.until(lambda: len(b"".join(chunks)) >= len(expected), "caller audio")
            assert b"".join(chunks) == expected
            await rig.until(lambda: bool(rig.of(Digit)), "key during +VRX")
            assert rig.of(Digit) == [Digit("#", "remote")] and not rig.of(RemoteHangup)

    run(body())


def test_stopping_the_capture_leaves_vrx_and_a_prompt_pauses_it() -> None:
    async def body() -> None:
        async with modem("usr5637", answer_after_rings=1) as rig:
            chunks = await receiving(rig)
            player = Player()
            rig.line.audio_output().play([Clip("beep", s16([1000] * 800))], on_done=player.on_done)
            await rig.until(lambda: player.done_at is not None, "the prompt played")
            vrx = [i for i, c in enumerate(rig.sim.commands) if c == "AT+VRX"]
            await rig.until(lambda: rig.sim.commands.count("AT+VRX") == 2, "receive resumed")
            assert "AT+VTX" in rig.sim.commands[vrx[0] :]  # the prompt came between the two
            await rig.until(lambda: rig.line._receiving, "receiving again")
            rig.line.stop_capture()
            await rig.until(lambda: not rig.line._receiving, "receive ended")
            assert not rig.sim.say(s16([5] * 80))  # the modem is no longer receiving
            assert chunks == [] and rig.line.status()["call"] == "remote"

    run(body())


@pytest.mark.parametrize("how", ["b", "d", "no carrier"])
def test_a_caller_hanging_up_during_vrx_ends_the_call(how: str) -> None:
    async def body() -> None:
        async with modem("generic", answer_after_rings=1) as rig:
            await receiving(rig)
            if how == "no carrier":
                rig.sim.drop_call()
            else:
                rig.sim.remote_hangup(how)
            await rig.until(lambda: bool(rig.of(RemoteHangup)), "remote hang-up")
            await rig.until(lambda: not rig.sim.line_off_hook, "line on-hook")
            assert rig.line.status()["call"] == "idle"

    run(body())


def test_the_ivr_hangup_stops_the_prompt_and_puts_the_line_on_hook() -> None:
    async def body() -> None:
        async with modem("usr5637", answer_after_rings=1) as rig:
            await rig.answered_call()
            player = Player()
            rig.line.audio_output().play(
                [Clip("goodbye", clip_with_dle_bytes(2.0))], on_done=player.on_done
            )
            await rig.until(lambda: "AT+VTX" in rig.sim.commands, "playback")
            rig.line.hang_up()
            await rig.until(lambda: rig.sim.commands[-1] == "ATH0", "ATH0")
            await rig.until(lambda: not rig.sim.line_off_hook, "line on-hook")
            assert len(rig.sim.aborted_playbacks) == 1 and player.done_at is None
            assert not rig.of(RemoteHangup)  # the box hung up: no event for the service

    run(body())


def test_closing_the_line_during_a_call_stops_the_prompt_and_hangs_up() -> None:
    async def body() -> None:
        with ModemSimulator("usr5637") as sim:
            events: list[LineEvent] = []
            line = V253ModemLine(events.append, sim.port, family="usr5637", off_hook_settle_s=0)
            await line.start()
            rig = Rig(sim, line, events)
            sim.ring(1)
            await rig.until(lambda: bool(rig.of(Ring)), "ring")
            line.answer()
            await rig.until(lambda: bool(rig.of(RemoteAnswered)), "answer")
            line.audio_output().play([ToneClip("busy", TonePlan.france()["busy"])])
            await rig.until(lambda: "AT+VTX" in sim.commands, "playback")
            await line.close()  # SIGTERM: the daemon's one shutdown path
            assert sim.commands[-1] == "ATH0" and not sim.line_off_hook
            assert len(sim.aborted_playbacks) == 1
            await line.close()  # twice is fine

    run(body())


# --- audio ----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_clips_reach_the_modem_converted_with_every_dle_byte_intact(family: str) -> None:
    first, second = clip_with_dle_bytes(0.25), clip_with_dle_bytes(0.1, reverse=True)

    async def body() -> None:
        async with modem(family, answer_after_rings=1) as rig:
            await rig.answered_call()
            player = Player()
            played_at = time.monotonic()
            rig.line.audio_output().play(
                [Clip("a", first), Clip("b", second)], player.on_clip_start, player.on_done
            )
            await rig.until(lambda: player.done_at is not None, "end of playback")
            sample_format = FAMILIES[family].sample_format
            expected = convert_s16le(first, sample_format) + convert_s16le(second, sample_format)
            assert b"\x10\x03" in expected and b"\x10\x10" in expected
            assert rig.sim.playbacks == [expected]
            assert player.started == [0, 1]
            # Paced at real time: never done sooner than the audio lasts, less what is ahead.
            assert player.done_at is not None
            assert player.done_at - played_at >= len(expected) / RATE
            assert rig.sim.commands[-1] == "AT+VTX"

    run(body())


def test_a_barge_in_cuts_the_prompt_within_three_periods_and_never_reports_it_done() -> None:
    prompt = clip_with_dle_bytes(3.0)

    async def body() -> None:
        async with modem(answer_after_rings=1) as rig:
            await rig.answered_call()
            output = rig.line.audio_output()
            player = Player()
            played_at = time.monotonic()
            output.play([Clip("menu", prompt)], player.on_clip_start, player.on_done)
            await rig.until(lambda: player.started == [0], "prompt start")
            await asyncio.sleep(0.2)  # let some of the prompt play
            stopped_at = time.monotonic()
            output.stop()
            await rig.until(lambda: bool(rig.sim.aborted_playbacks), "barge-in at the modem")
            # The barge-in's leading CAN reaches the modem as one last (inaudible) sample.
            discarded = rig.sim.aborted_playbacks[0].removesuffix(b"\x18")
            written_bound = (stopped_at - played_at) * RATE + MAX_AHEAD_PERIODS * PERIOD_FRAMES
            assert 0 < len(discarded) <= written_bound < len(prompt) // 2
            assert discarded == convert_s16le(prompt, "u8")[: len(discarded)]
            # The modem is back in command mode: the next prompt plays whole.
            again = Player()
            output.play([Clip("next", prompt[:1600])], on_done=again.on_done)
            await rig.until(lambda: again.done_at is not None, "next prompt")
            assert rig.sim.playbacks == [convert_s16le(prompt[:1600], "u8")]
            assert player.done_at is None

    run(body())


def test_a_tone_plays_the_tone_generator_until_stopped() -> None:
    dial = TonePlan.france()["dial"]

    async def body() -> None:
        async with modem() as rig:
            rig.sim.lift_handset()
            output = rig.line.audio_output()
            player = Player()
            output.play([ToneClip("dial", dial)], player.on_clip_start, player.on_done)
            await rig.until(lambda: player.started == [0], "tone start")
            await asyncio.sleep(0.1)
            output.stop()
            await rig.until(lambda: bool(rig.sim.aborted_playbacks), "tone stopped")
            heard = rig.sim.aborted_playbacks[0].removesuffix(b"\x18")
            periods = tone_periods(dial, PERIOD_FRAMES, RATE)
            reference = b"".join(
                convert_s16le(next(periods), "u8") for _ in range(len(heard) // PERIOD_FRAMES + 1)
            )
            assert heard and heard == reference[: len(heard)]
            assert player.done_at is None

    run(body())


def test_a_tone_must_be_the_last_clip() -> None:
    async def body() -> None:
        async with modem() as rig:
            tone = ToneClip("dial", TonePlan.france()["dial"])
            with pytest.raises(ValueError, match="must be last"):
                rig.line.audio_output().play([tone, Clip("x", b"\0\0")])

    run(body())


# --- device loss ----------------------------------------------------------------------------


def test_an_unplugged_modem_is_a_line_fault_and_it_is_reopened_once_plugged_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gatewayd.line.v253")

    async def body() -> None:
        async with modem(answer_after_rings=1, reconnect_first_s=0.02, reconnect_max_s=0.08) as rig:
            rig.sim.lift_handset()
            await rig.until(lambda: bool(rig.of(OffHook)), "off-hook")
            rig.line.audio_output().play([ToneClip("dial", TonePlan.france()["dial"])])
            await rig.until(lambda: "AT+VTX" in rig.sim.commands, "dial tone")
            rig.sim.hang_up_handset()
            await rig.until(lambda: bool(rig.of(OnHook)), "on-hook")
            rig.sim.lift_handset()
            await rig.until(lambda: len(rig.of(OffHook)) == 2, "off-hook again")

            rig.sim.unplug()
            await rig.until(lambda: bool(rig.of(LineFault)), "line fault")
            fault = rig.of(LineFault)[0]
            assert isinstance(fault, LineFault) and rig.sim.port in fault.reason
            # The handset state is unknown once the modem is gone: reported on-hook.
            assert rig.events[-2:] == [fault, OnHook()]
            assert rig.line.status()["connected"] is False
            errors = [r for r in caplog.records if r.levelno == logging.ERROR]
            assert len(errors) == 1 and rig.sim.port in errors[0].getMessage()
            assert "Is the modem plugged in?" in errors[0].getMessage()
            rig.line.audio_output().play([Clip("lost", b"\0\0" * 800)])  # dropped, no crash
            await rig.until(
                lambda: any("still unavailable" in r.getMessage() for r in caplog.records),
                "a failed reconnect try",
            )

            commands_before = len(rig.sim.commands)
            rig.sim.replug()
            await rig.until(lambda: rig.line.status()["connected"], "reconnection")
            init = list(FAMILIES["generic"].init)
            assert rig.sim.commands[commands_before:][: len(init)] == init
            assert any("is back" in r.getMessage() for r in caplog.records)
            assert len(rig.of(LineFault)) == 1
            await rig.answered_call()  # a new call works
            assert rig.line.status()["call"] == "remote"

    run(body())


def test_a_modem_unplugged_mid_prompt_drops_the_prompt_without_on_done() -> None:
    async def body() -> None:
        async with modem(answer_after_rings=1, reconnect_first_s=0.02) as rig:
            await rig.answered_call()
            player = Player()
            rig.line.audio_output().play(
                [Clip("long", clip_with_dle_bytes(2.0))], None, player.on_done
            )
            await rig.until(lambda: "AT+VTX" in rig.sim.commands, "playback")
            rig.sim.unplug()
            await rig.until(lambda: bool(rig.of(LineFault)), "line fault")
            assert rig.line.status()["call"] == "idle" and player.done_at is None
            rig.sim.replug()
            await rig.until(lambda: rig.line.status()["connected"], "reconnection")
            assert player.done_at is None and not rig.sim.playbacks

    run(body())


# --- logs -----------------------------------------------------------------------------------


def test_raw_bytes_are_traced_with_every_key_masked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(TRACE, logger="gatewayd")

    async def body() -> None:
        async with modem(answer_after_rings=1) as rig:
            await rig.answered_call()
            rig.sim.caller_id("0612345678")
            rig.sim.press("7")
            await rig.until(lambda: bool(rig.of(Digit)), "key")

    run(body())
    traced = [
        r.getMessage() for r in caplog.records if r.levelno == TRACE and "<-" in r.getMessage()
    ]
    assert any("\\x10?" in message for message in traced)
    assert not any("\\x107" in r.getMessage() for r in caplog.records)
    above_debug = [r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG]
    assert "caller ID received" in " ".join(above_debug)
    assert not any("0612345678" in message for message in above_debug)


# --- profiles -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("usr5637-modem", "usr5637"),
        ("conexant-modem", "conexant"),
        ("generic-v253-modem", "generic"),
    ],
)
def test_each_shipped_modem_profile_loads_and_builds_its_driver(
    name: str, family: str, tmp_path: Path
) -> None:
    profile = load_profile(REPO / "hw_profiles" / f"{name}.toml")
    assert profile.line.driver == "v253-modem" and profile.line.modem is not None
    assert profile.line.modem.port == "/dev/ttyACM0" and profile.line.modem.baudrate == 115200
    assert profile.line.answer_after_rings == 2
    assert profile.audio.playback == "modem" and not profile.storage.create_pepper
    assert profile.storage.state_dir == "/var/lib/gatewayd"
    line = open_line(profile, lambda event: None, tmp_path)
    assert isinstance(line, V253ModemLine)
    assert line.family.name == family and line.trunk() is not None
