"""AlsaPlayer through real pyalsaaudio: ALSA's ``file`` plugin captures what reached ALSA.

Pacing is checked with an injected clock that only moves when the test says so,
so "at most 3 periods ahead" is asserted on counts and captured bytes, not on
wall-clock sleeps.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import alsaaudio
import pytest

from gatewayd.audio import AlsaPlayer, Clip, ToneClip
from gatewayd.errors import DeviceError
from gatewayd.tones import TonePlan
from tests.test_tones import classify, runs

PERIOD_S = 0.02
PERIOD_BYTES = 320


class ManualClock:
    """A monotonic clock that moves only when the test advances it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance_periods(self, periods: float) -> None:
        self.now += periods * PERIOD_S


def fast_clock() -> float:
    """Real time, 50 times faster: sequences end quickly but the player still paces."""
    return time.monotonic() * 50


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Wait (bounded) for the player thread to reach a state."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.002)


class Calls:
    """Records the player's callbacks, with the player clock's time of each."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.log: list[tuple[str, int | None]] = []
        self.done_at: float | None = None
        self.done = threading.Event()

    def on_clip_start(self, index: int) -> None:
        self.log.append(("start", index))

    def on_done(self) -> None:
        self.log.append(("done", None))
        self.done_at = self.clock()
        self.done.set()


def pattern(periods: float, seed: int) -> bytes:
    """Recognisable PCM: a sawtooth that differs per seed, ``periods`` periods long."""
    frames = round(periods * PERIOD_BYTES / 2)
    return b"".join(((seed * 1000 + n) % 30000).to_bytes(2, "little") for n in range(frames))


def padded(pcm: bytes) -> bytes:
    """PCM padded with silence to whole periods, as the player writes it."""
    return pcm + bytes(-len(pcm) % PERIOD_BYTES)


@pytest.fixture
def capture(tmp_path: Path) -> tuple[str, Path]:
    """A ``file:`` ALSA device (built into alsa.conf) and the raw file it writes."""
    path = tmp_path / "out.raw"
    return f"file:FILE='{path}',FORMAT=raw", path


# --- what reaches ALSA -------------------------------------------------------


def test_sequence_reaches_alsa_in_order_and_reports_progress(
    capture: tuple[str, Path],
) -> None:
    device, path = capture
    clips = [Clip("a", pattern(2.5, 1)), Clip("b", pattern(4, 2)), Clip("c", pattern(0.3, 3))]
    calls = Calls()
    with AlsaPlayer(device, clock=fast_clock) as player:
        player.play(clips, calls.on_clip_start, calls.on_done)
        assert calls.done.wait(5)
    assert calls.log == [("start", 0), ("start", 1), ("start", 2), ("done", None)]
    assert path.read_bytes() == b"".join(padded(clip.pcm) for clip in clips)
    assert player.stats.sequences_done == 1
    assert player.stats.sequences_stopped == 0


def test_done_comes_when_the_audio_has_played_out_not_when_it_was_queued(
    capture: tuple[str, Path],
) -> None:
    device, path = capture
    clock = ManualClock()
    start = clock.now
    calls = Calls(clock)
    with AlsaPlayer(device, clock=clock) as player:
        player.play([Clip("five", pattern(5, 1))], calls.on_clip_start, calls.on_done)
        wait_for(lambda: player.stats.periods_written == 3, "the first 3 periods")
        clock.advance_periods(2.25)
        wait_for(lambda: player.stats.periods_written == 5, "all 5 periods written")
        assert not calls.done.is_set()
        clock.advance_periods(3)
        assert calls.done.wait(5)
    assert calls.done_at is not None
    assert calls.done_at - start >= 5 * PERIOD_S
    assert path.read_bytes() == pattern(5, 1)


@pytest.mark.parametrize("ahead", [3, 1])
def test_player_stays_at_most_three_periods_ahead_and_stop_cuts_there(
    capture: tuple[str, Path], ahead: int
) -> None:
    device, path = capture
    clock = ManualClock()
    calls = Calls(clock)
    long_prompt = pattern(100, 7)
    kwargs = {} if ahead == 3 else {"max_ahead_periods": ahead}  # 3 is the default
    with AlsaPlayer(device, clock=clock, **kwargs) as player:
        player.play([Clip("long", long_prompt)], calls.on_clip_start, calls.on_done)
        wait_for(lambda: player.stats.periods_written >= ahead, "the first periods")
        # Frozen clock: the 'file' device would swallow all 100 periods at once; the
        # player must hold at 3. Let 5.25 periods of time pass: 5 + 3 may be written.
        clock.advance_periods(5.25)
        wait_for(lambda: player.stats.periods_written >= 5 + ahead, "periods after the tick")
        player.stop()
        stats_at_stop = player.stats
    assert stats_at_stop.last_stop_ahead_periods == pytest.approx(ahead - 0.25)
    assert player.stats.periods_written == 5 + ahead  # nothing after the stop
    assert player.stats.last_stop_late_periods == 0
    assert player.stats.sequences_stopped == 1
    # What reached ALSA: elapsed (5) + 3 periods, the start of the prompt, nothing more.
    assert path.read_bytes() == long_prompt[: (5 + ahead) * PERIOD_BYTES]
    assert calls.log == [("start", 0)]
    assert not calls.done.is_set()


def test_stop_in_the_last_periods_of_a_prompt_still_cancels_done(
    capture: tuple[str, Path],
) -> None:
    device, _ = capture
    clock = ManualClock()
    calls = Calls(clock)
    with AlsaPlayer(device, clock=clock) as player:
        player.play([Clip("short", pattern(2, 1))], calls.on_clip_start, calls.on_done)
        # Both periods are queued; the prompt is still playing out when the key comes.
        wait_for(lambda: player.stats.periods_written == 2, "the whole prompt queued")
        player.stop()
        clock.advance_periods(10)
    assert calls.log == [("start", 0)]
    assert player.stats.sequences_stopped == 1
    assert player.stats.sequences_done == 0


def test_play_replaces_the_current_sequence_without_reporting_it_done(
    capture: tuple[str, Path],
) -> None:
    device, path = capture
    clock = ManualClock()
    first, second = Calls(clock), Calls(clock)
    menu, error = pattern(50, 1), pattern(2, 2)
    with AlsaPlayer(device, clock=clock) as player:
        player.play([Clip("menu", menu)], first.on_clip_start, first.on_done)
        wait_for(lambda: player.stats.periods_written >= 3, "the menu to start")
        player.play([Clip("invalid_key", error)], second.on_clip_start, second.on_done)
        wait_for(lambda: player.stats.periods_written >= 5, "the error prompt")
        clock.advance_periods(2.5)
        assert second.done.wait(5)
    assert first.log == [("start", 0)]
    assert second.log == [("start", 0), ("done", None)]
    assert path.read_bytes() == menu[: 3 * PERIOD_BYTES] + error
    assert player.stats.sequences_stopped == 1
    assert player.stats.last_stop_ahead_periods == pytest.approx(3)


def test_tone_clip_plays_its_cadence_until_stopped(capture: tuple[str, Path]) -> None:
    device, path = capture
    clock = ManualClock()
    calls = Calls(clock)
    with AlsaPlayer(device, clock=clock) as player:
        player.play([ToneClip("busy", TonePlan.france()["busy"])], None, calls.on_done)
        wait_for(lambda: player.stats.periods_written >= 3, "the tone to start")
        clock.advance_periods(147.25)  # 3 s of busy tone, minus the 3 periods ahead
        wait_for(lambda: player.stats.periods_written >= 150, "three seconds of tone")
        player.stop()
    captured = path.read_bytes()
    assert len(captured) == 150 * PERIOD_BYTES
    periods = [captured[i : i + PERIOD_BYTES] for i in range(0, len(captured), PERIOD_BYTES)]
    # France busy: 440 Hz, 0.5 s on / 0.5 s off = 25 periods each, decoded from the bytes.
    assert runs([classify(p) for p in periods]) == [("on", 25), ("off", 25)] * 3
    assert not calls.done.is_set()


def test_stop_is_harmless_when_idle_and_close_is_idempotent(capture: tuple[str, Path]) -> None:
    device, path = capture
    player = AlsaPlayer(device, clock=fast_clock)
    player.stop()
    player.stop()
    calls = Calls()
    player.play([Clip("beep", pattern(1, 4))], None, calls.on_done)
    assert calls.done.wait(5)
    player.stop()
    player.close()
    player.close()
    assert player.stats.sequences_stopped == 0
    assert player.stats.last_stop_ahead_periods is None
    assert path.read_bytes() == pattern(1, 4)
    with pytest.raises(DeviceError, match="closed"):
        player.play([Clip("late", pattern(1, 5))])


def test_empty_sequence_is_done_at_once(capture: tuple[str, Path]) -> None:
    calls = Calls()
    with AlsaPlayer(capture[0], clock=fast_clock) as player:
        player.play([], calls.on_clip_start, calls.on_done)
        assert calls.done.wait(5)
    assert calls.log == [("done", None)]


def test_a_broken_callback_does_not_stop_the_audio(
    capture: tuple[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    device, path = capture
    calls = Calls()

    def broken(index: int) -> None:
        raise RuntimeError("bug in the daemon")

    with AlsaPlayer(device, clock=fast_clock) as player:
        player.play([Clip("a", pattern(1, 1)), Clip("b", pattern(1, 2))], broken, calls.on_done)
        assert calls.done.wait(5)
    assert path.read_bytes() == pattern(1, 1) + pattern(1, 2)
    assert "on_clip_start callback" in caplog.text


def test_on_done_may_start_the_next_sequence(capture: tuple[str, Path]) -> None:
    device, path = capture
    second = Calls()
    with AlsaPlayer(device, clock=fast_clock) as player:

        def play_next() -> None:  # runs on the player thread, with its lock held
            player.play([Clip("next", pattern(1, 2))], None, second.on_done)

        player.play([Clip("first", pattern(1, 1))], None, play_next)
        assert second.done.wait(5)
    assert path.read_bytes() == pattern(1, 1) + pattern(1, 2)


def test_bad_sequences_are_refused() -> None:
    with pytest.raises(ValueError, match="whole number of 16-bit frames"):
        Clip("odd", b"\x00\x01\x02")
    with AlsaPlayer("null") as player, pytest.raises(ValueError, match="must be last"):
        player.play([ToneClip("dial", TonePlan.france()["dial"]), Clip("x", b"")])


# --- the device ----------------------------------------------------------------


def test_unknown_device_raises_device_error_naming_it() -> None:
    with pytest.raises(DeviceError) as info:
        AlsaPlayer("gatewayd_no_such_pcm")
    message = str(info.value)
    assert "'gatewayd_no_such_pcm'" in message
    assert "No such file or directory" in message  # ALSA's own reason
    assert isinstance(info.value.__cause__, alsaaudio.ALSAAudioError)


def test_fallback_to_null_logs_a_warning_and_still_plays(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(DeviceError):
        AlsaPlayer.open_with_fallback("gatewayd_no_such_pcm", allow_null_fallback=False)
    caplog.set_level(logging.WARNING, logger="gatewayd.audio")
    calls = Calls()
    with AlsaPlayer.open_with_fallback(
        "gatewayd_no_such_pcm", allow_null_fallback=True, clock=fast_clock
    ) as player:
        assert player.device == "null"
        player.play([Clip("menu", pattern(2, 1))], None, calls.on_done)
        assert calls.done.wait(5)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "'gatewayd_no_such_pcm'" in warnings[0].getMessage()
    assert "No such file or directory" in warnings[0].getMessage()
    assert "'null'" in warnings[0].getMessage()


class FlakyPcm:
    """A real ALSA PCM whose write() sometimes reports a full buffer, an underrun, or
    takes only part of the data, as a real sound card does under load."""

    def __init__(self, pcm: Any) -> None:
        self.pcm = pcm
        self.calls = 0

    def write(self, data: bytes | memoryview) -> int:
        self.calls += 1
        if self.calls % 3 == 0:
            return 0  # buffer full
        if self.calls % 5 == 0:
            return -32  # -EPIPE: underrun, stream already re-prepared
        if self.calls % 2 == 0 and len(data) >= 4:
            return int(self.pcm.write(data[: len(data) // 4 * 2]))  # partial write
        return int(self.pcm.write(data))

    def drop(self) -> Any:
        return self.pcm.drop()

    def close(self) -> Any:
        return self.pcm.close()

    def info(self) -> dict[str, Any]:
        return dict(self.pcm.info())


class FlakyPlayer(AlsaPlayer):
    def _open_device(self) -> Any:
        return FlakyPcm(super()._open_device())


class DyingPcm(FlakyPcm):
    """A real ALSA PCM that fails after two periods, like a USB sound card pulled out."""

    def write(self, data: bytes | memoryview) -> int:
        self.calls += 1
        if self.calls > 2:
            raise alsaaudio.ALSAAudioError("No such device [usb]")
        return int(self.pcm.write(data))


class DyingOncePlayer(AlsaPlayer):
    opens = 0

    def _open_device(self) -> Any:
        self.opens += 1
        pcm = super()._open_device()
        return DyingPcm(pcm) if self.opens == 1 else pcm


def test_a_device_failing_mid_prompt_keeps_the_call_flow_going(
    capture: tuple[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    device, path = capture
    first, second = Calls(), Calls()
    with DyingOncePlayer(device, clock=fast_clock) as player:
        player.play([Clip("menu", pattern(6, 1))], None, first.on_done)
        # The rest of the prompt is silent but keeps its timing, and still ends.
        assert first.done.wait(5)
        assert player.stats.periods_written == 6
        player.play([Clip("goodbye", pattern(2, 2))], None, second.on_done)
        assert second.done.wait(5)
    assert player.opens == 2  # reopened for the next prompt
    assert player.stats.device_errors == 1
    assert path.read_bytes().endswith(pattern(2, 2))
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert device in errors[0].getMessage()
    assert "No such device" in errors[0].getMessage()


def test_full_buffer_and_underruns_lose_and_repeat_nothing(capture: tuple[str, Path]) -> None:
    device, path = capture
    clips = [Clip("a", pattern(6, 1)), Clip("b", pattern(3.5, 2))]
    calls = Calls()
    with FlakyPlayer(device, clock=fast_clock) as player:
        player.play(clips, None, calls.on_done)
        assert calls.done.wait(5)
    assert path.read_bytes() == b"".join(padded(clip.pcm) for clip in clips)
    assert player.stats.buffer_full > 0
    assert player.stats.underruns > 0
    assert player.stats.periods_written == 10
