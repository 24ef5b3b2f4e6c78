"""ALSA playback of prompt sequences and tones, stoppable within a few 20 ms periods.

:class:`AlsaPlayer` owns one playback PCM (8 kHz, S16_LE, mono, non-blocking) and
one thread that writes it. The thread paces itself on its own clock: it never
writes more than ``max_ahead_periods`` periods ahead of real time, so a stop (a
key pressed during a prompt: barge-in) takes effect within that bound even on
ALSA plugins such as ``null`` and ``file`` that consume audio instantly.

Callbacks (``on_clip_start``, ``on_done``) run **on the player thread**, with the
player's lock held so that none fires after :meth:`AlsaPlayer.stop` has returned.
They must be quick and must not block: the daemon hands them to its event loop
with ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, Self

import alsaaudio

from gatewayd.errors import DeviceError
from gatewayd.pcm import FRAME_BYTES, RATE
from gatewayd.pcm import PERIOD_FRAMES as DEFAULT_PERIOD_FRAMES
from gatewayd.tones import Tone, tone_periods

LOGGER = logging.getLogger(__name__)
#: Periods the player may write ahead of real time: bounds the stop latency (60 ms).
DEFAULT_MAX_AHEAD_PERIODS = 3
#: How long close() waits for the player thread to drop and close the PCM.
CLOSE_TIMEOUT_S = 2.0
#: The device used when the profile's device cannot be opened and fallback is allowed.
NULL_DEVICE = "null"


@dataclass(frozen=True)
class Clip:
    """A prompt to play: 8 kHz S16_LE mono PCM.

    ``label`` is for the caller's own bookkeeping; the player never logs it (a label
    such as ``digit_3`` would give away a digit of a code being read back).
    """

    label: str
    pcm: bytes

    def __post_init__(self) -> None:
        if len(self.pcm) % FRAME_BYTES:
            raise ValueError(
                f"clip {self.label!r}: {len(self.pcm)} bytes is not a whole number of 16-bit frames"
            )


@dataclass(frozen=True)
class ToneClip:
    """A tone to play until stopped or replaced; it never ends by itself."""

    label: str
    tone: Tone


AudioClip = Clip | ToneClip
ClipStartCallback = Callable[[int], None]
DoneCallback = Callable[[], None]


class AudioOutput(Protocol):
    """What the daemon plays prompts and tones through: ALSA, or a line's own path (modem).

    Callbacks may run on another thread; ``on_done`` only when the sequence ended
    naturally, never after ``stop()`` or a replacing ``play()``.
    """

    def play(
        self,
        clips: Sequence[AudioClip],
        on_clip_start: ClipStartCallback | None = None,
        on_done: DoneCallback | None = None,
    ) -> None:
        """Replace whatever plays with ``clips``, back to back."""
        ...

    def stop(self) -> None:
        """Stop at once; safe when idle and from any thread."""
        ...

    def close(self) -> None:
        """Stop and release the device; safe to call twice."""
        ...


@dataclass(frozen=True)
class PlayerStats:
    """Counters of an :class:`AlsaPlayer`, for tests, benches and the self-test."""

    #: Periods written since the player was created (paced but not heard while the
    #: device is failed).
    periods_written: int = 0
    #: Sequences that ended by themselves (``on_done`` was called).
    sequences_done: int = 0
    #: Sequences cut by stop(), play() or close() while playing.
    sequences_stopped: int = 0
    #: At the last stop of a playing sequence: periods written minus periods of real
    #: time elapsed since it started (what was queued ahead of the listener).
    last_stop_ahead_periods: float | None = None
    #: Real seconds from that stop() call to ``pcm.drop()`` returning on the player thread.
    last_stop_drop_s: float | None = None
    #: Periods written after that stop() call (a write that was already in progress).
    last_stop_late_periods: int = 0
    #: Times ``write()`` returned 0 (ALSA buffer full).
    buffer_full: int = 0
    #: Times ``write()`` returned a negative value (underrun, -EPIPE).
    underruns: int = 0
    #: Times the device failed (open or write) and the player went silent.
    device_errors: int = 0


class _Pcm(Protocol):
    """The part of ``alsaaudio.PCM`` the player uses."""

    def write(self, data: bytes | memoryview) -> int: ...
    def drop(self) -> Any: ...
    def close(self) -> Any: ...
    def info(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class PlayJob:
    """One play() request of a player; stale once ``generation`` differs from the player's.

    Shared by every :class:`AudioOutput` (ALSA, the modem's ``+VTX``); ``clips`` come
    from :func:`checked_clips`.
    """

    clips: tuple[AudioClip, ...]
    on_clip_start: ClipStartCallback | None
    on_done: DoneCallback | None
    generation: int


def checked_clips(clips: Sequence[AudioClip]) -> tuple[AudioClip, ...]:
    """The clips of a ``play()``; ValueError if a tone (which never ends) is not the last."""
    clips = tuple(clips)
    for index, clip in enumerate(clips[:-1]):
        if isinstance(clip, ToneClip):
            raise ValueError(
                f"tone clip {clip.label!r} at index {index} never ends: it must be last"
            )
    return clips


def clip_periods(clip: AudioClip, period_frames: int, *, pad: bool) -> Iterator[bytes]:
    """A clip as S16_LE periods (a tone never ends); ``pad`` fills a prompt's last period
    with silence (a device that needs whole periods)."""
    if isinstance(clip, ToneClip):
        yield from tone_periods(clip.tone, period_frames, RATE)
        return
    size = period_frames * FRAME_BYTES
    for offset in range(0, len(clip.pcm), size):
        period = clip.pcm[offset : offset + size]
        yield period + bytes(size - len(period)) if pad else period


def run_callback(player: str, name: str, callback: Callable[..., None], *args: int) -> None:
    """Run a player's user callback; a broken one must not take the audio down with it."""
    try:
        callback(*args)
    except Exception:
        LOGGER.exception("%s callback of the %s raised", name, player)


class AlsaPlayer:
    """Plays clip sequences on an ALSA device from a dedicated thread; stop() is immediate.

    ``device`` is an ALSA PCM name (``default``, ``plughw:1,0``, ``null``,
    ``file:FILE='/tmp/out.raw',FORMAT=raw``). The PCM is opened at once, so a
    bad device raises :class:`DeviceError` here. ``clock`` (seconds, monotonic)
    paces the writes; tests inject one. Subclasses may override
    :meth:`_open_device` to wrap the PCM.
    """

    def __init__(
        self,
        device: str,
        *,
        period_frames: int = DEFAULT_PERIOD_FRAMES,
        max_ahead_periods: int = DEFAULT_MAX_AHEAD_PERIODS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if period_frames <= 0:
            raise ValueError(f"period_frames must be positive, got {period_frames}")
        if max_ahead_periods < 1:
            raise ValueError(f"max_ahead_periods must be at least 1, got {max_ahead_periods}")
        self.device = device
        self._what = f"ALSA player for {device!r}"
        self.period_frames = period_frames
        self.max_ahead_periods = max_ahead_periods
        self._period_s = period_frames / RATE
        self._clock = clock
        # An RLock under the condition: a callback (run with the lock held) may call
        # play() or stop() on the same thread.
        self._cond = threading.Condition(threading.RLock())
        self._pending: PlayJob | None = None
        self._active: PlayJob | None = None
        self._generation = 0
        self._closed = False
        self._stats = PlayerStats()
        self._seq_start = 0.0
        self._seq_written = 0
        self._stop_called_at: float | None = None
        self._pcm: _Pcm | None = self._open_device()
        self._device_failed_logged = False
        self._thread = threading.Thread(target=self._run, name="gatewayd-audio", daemon=True)
        self._thread.start()

    @classmethod
    def open_with_fallback(
        cls,
        device: str,
        allow_null_fallback: bool,
        *,
        period_frames: int = DEFAULT_PERIOD_FRAMES,
        max_ahead_periods: int = DEFAULT_MAX_AHEAD_PERIODS,
        clock: Callable[[], float] = time.monotonic,
    ) -> AlsaPlayer:
        """Open ``device``; if that fails and fallback is allowed, warn and play to ``null``."""
        try:
            return cls(
                device,
                period_frames=period_frames,
                max_ahead_periods=max_ahead_periods,
                clock=clock,
            )
        except DeviceError as exc:
            if not allow_null_fallback:
                raise
            LOGGER.warning(
                "ALSA playback device %r cannot be used (%s); playing to %r instead: "
                "prompts and tones will not be heard",
                device,
                exc,
                NULL_DEVICE,
            )
            return cls(
                NULL_DEVICE,
                period_frames=period_frames,
                max_ahead_periods=max_ahead_periods,
                clock=clock,
            )

    # --- public API, safe from any thread ----------------------------------

    @property
    def stats(self) -> PlayerStats:
        """A snapshot of the player's counters."""
        with self._cond:
            return self._stats

    @property
    def playing(self) -> bool:
        """True while a sequence is queued or playing."""
        with self._cond:
            return self._pending is not None or self._active is not None

    def play(
        self,
        clips: Sequence[AudioClip],
        on_clip_start: ClipStartCallback | None = None,
        on_done: DoneCallback | None = None,
    ) -> None:
        """Stop whatever plays, then play ``clips`` back to back.

        ``on_clip_start(index)`` is called as clip ``index`` starts and ``on_done()``
        once when the last clip has played out; neither is called for a sequence that
        is stopped or replaced. Both run on the player thread. A :class:`ToneClip`
        never ends, so it may only be the last clip.
        """
        clips = checked_clips(clips)
        with self._cond:
            if self._closed or not self._thread.is_alive():
                raise DeviceError(f"ALSA player for {self.device!r} is closed or has failed")
            self._stop_locked()
            self._pending = PlayJob(clips, on_clip_start, on_done, self._generation)
            self._cond.notify_all()

    def stop(self) -> None:
        """Stop at once (barge-in, hang-up); a no-op when idle. Returns without waiting."""
        with self._cond:
            self._stop_locked()
            self._cond.notify_all()

    def close(self) -> None:
        """Stop, drop and close the PCM, and end the player thread; safe to call twice."""
        with self._cond:
            self._closed = True
            self._stop_locked()
            self._cond.notify_all()
        if threading.current_thread() is self._thread:
            return  # called from a callback: the thread closes the PCM as it exits
        self._thread.join(CLOSE_TIMEOUT_S)
        if self._thread.is_alive():
            LOGGER.warning(
                "ALSA player for %r did not stop within %.1f s", self.device, CLOSE_TIMEOUT_S
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- for subclasses ------------------------------------------------------

    def _open_device(self) -> _Pcm:
        """Open the playback PCM; raise DeviceError naming the device and ALSA's reason."""
        try:
            pcm: _Pcm = alsaaudio.PCM(
                alsaaudio.PCM_PLAYBACK,
                alsaaudio.PCM_NONBLOCK,
                rate=RATE,
                channels=1,
                format=alsaaudio.PCM_FORMAT_S16_LE,
                periodsize=self.period_frames,
                # The buffer holds exactly what the player keeps ahead: no deeper queue
                # to drain before a new prompt is heard (ALSA's file plugin, which emits
                # what overflows the buffer, showed 40 ms key-to-audio with 4 periods, 20
                # with 3: bench/daemon.py latency). Writes that find it full just wait.
                periods=max(2, self.max_ahead_periods),
                device=self.device,
            )
        except alsaaudio.ALSAAudioError as exc:
            raise DeviceError(
                f"ALSA playback device {self.device!r} cannot be opened: {exc}. "
                "Check the [audio] playback device of the profile ('aplay -L' lists them)."
            ) from exc
        info = pcm.info()
        got = (info.get("rate"), info.get("channels"), info.get("format"))
        if got != (RATE, 1, alsaaudio.PCM_FORMAT_S16_LE):
            pcm.close()
            raise DeviceError(
                f"ALSA playback device {self.device!r} does not play {RATE} Hz mono S16_LE "
                f"(it offers rate={got[0]}, channels={got[1]}, format={info.get('format_name')}); "
                "use a converting device such as 'plughw:CARD,0' or 'default'."
            )
        return pcm

    # --- player thread -------------------------------------------------------

    def _stop_locked(self) -> None:
        """Cancel the pending and the playing sequence; caller holds the lock."""
        self._pending = None
        self._generation += 1
        if self._active is not None and self._stop_called_at is None:
            elapsed_periods = (self._clock() - self._seq_start) / self._period_s
            self._stats = replace(
                self._stats,
                last_stop_ahead_periods=self._seq_written - elapsed_periods,
                last_stop_drop_s=None,
                last_stop_late_periods=0,
            )
            self._stop_called_at = time.perf_counter()

    def _current(self, job: PlayJob) -> bool:
        """True while ``job`` has not been stopped or replaced; caller holds the lock."""
        return job.generation == self._generation

    def _run(self) -> None:
        """Player thread: wait (untimed) for a job, play it, repeat until closed."""
        try:
            while True:
                with self._cond:
                    while self._pending is None and not self._closed:
                        self._cond.wait()  # idle: no timeout, no polling
                    job = self._pending
                    if self._closed or job is None:
                        return
                    self._active = job
                    self._pending = None
                    self._stop_called_at = None
                    self._seq_start = self._clock()
                    self._seq_written = 0
                try:
                    finished = self._play_job(job)
                finally:
                    with self._cond:
                        self._active = None
                if not finished:
                    self._drop()
        except Exception:
            LOGGER.exception("ALSA player for %r crashed; audio is off", self.device)
        finally:
            self._release_pcm()

    def _play_job(self, job: PlayJob) -> bool:
        """Play every clip of ``job``; False as soon as it is stopped or replaced."""
        if self._pcm is None:
            self._reopen()
            with self._cond:
                self._seq_start = self._clock()  # reopening took time: start from now
        for index, clip in enumerate(job.clips):
            if not self._announce_clip(job, index):
                return False
            for period in clip_periods(clip, self.period_frames, pad=True):
                slot = self._seq_start + (self._seq_written + 1 - self.max_ahead_periods) * (
                    self._period_s
                )
                if not self._wait_until(job, slot) or not self._write(job, period):
                    return False
        # Done when the last period has played out by our clock, not when it was queued.
        if not self._wait_until(job, self._seq_start + self._seq_written * self._period_s):
            return False
        return self._finish(job)

    def _announce_clip(self, job: PlayJob, index: int) -> bool:
        """Call ``on_clip_start(index)`` if ``job`` is still current; False if it was stopped."""
        with self._cond:
            if not self._current(job):
                return False
            if job.on_clip_start is not None:
                run_callback(self._what, "on_clip_start", job.on_clip_start, index)
            return True

    def _finish(self, job: PlayJob) -> bool:
        """Count ``job`` as done and call ``on_done()``, unless it was stopped meanwhile."""
        with self._cond:
            if not self._current(job):
                return False
            # No longer active: a stop() from now on has nothing to interrupt.
            self._active = None
            self._stats = replace(self._stats, sequences_done=self._stats.sequences_done + 1)
            if job.on_done is not None:
                run_callback(self._what, "on_done", job.on_done)
            return True

    def _wait_until(self, job: PlayJob, deadline: float) -> bool:
        """Timed wait until the clock reaches ``deadline``; False if ``job`` is stopped first."""
        with self._cond:
            while self._current(job):
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return True
                # Capped at one period: an injected clock may jump ahead of real time.
                self._cond.wait(min(remaining, self._period_s))
            return False

    def _pause(self, job: PlayJob, seconds: float) -> bool:
        """Timed wait of ``seconds`` of real time (the device's time, not the pacing
        clock's); False if ``job`` is stopped meanwhile."""
        with self._cond:
            if seconds > 0 and self._current(job):
                self._cond.wait(seconds)
            return self._current(job)

    def _write(self, job: PlayJob, period: bytes) -> bool:
        """Write one period (retrying on a full buffer or an underrun); False if stopped."""
        data = memoryview(period)
        underruns_in_a_row = 0
        while data and self._pcm is not None:
            try:
                frames = self._pcm.write(data)  # non-blocking; releases the GIL
            except alsaaudio.ALSAAudioError as exc:
                self._device_failed(exc)
                break
            if frames > 0:
                data = data[frames * FRAME_BYTES :]
                underruns_in_a_row = 0
            elif frames == 0:
                # Buffer full: the device runs slower than our clock. Wait a little,
                # interruptibly, rather than spin.
                with self._cond:
                    self._stats = replace(self._stats, buffer_full=self._stats.buffer_full + 1)
                if not self._pause(job, self._period_s / 4):
                    return False
            else:
                # -EPIPE: an underrun; pyalsaaudio has re-prepared the stream, so write
                # again at once. Should it keep failing, retry at a quarter-period pace.
                with self._cond:
                    self._stats = replace(self._stats, underruns=self._stats.underruns + 1)
                underruns_in_a_row += 1
                pause = self._period_s / 4 if underruns_in_a_row > 1 else 0.0
                if not self._pause(job, pause):
                    return False
        with self._cond:
            # Counted even when the device is gone: pacing goes on so the call flow
            # keeps its timing while the audio is silent.
            self._seq_written += 1
            late = self._stats.last_stop_late_periods + int(self._stop_called_at is not None)
            self._stats = replace(
                self._stats,
                periods_written=self._stats.periods_written + 1,
                last_stop_late_periods=late,
            )
            return self._current(job)

    def _drop(self) -> None:
        """Discard what ALSA still holds (from the writing thread: drop() keeps the GIL)."""
        if self._pcm is not None:
            try:
                self._pcm.drop()
            except alsaaudio.ALSAAudioError as exc:
                self._device_failed(exc)
        with self._cond:
            drop_s = None
            if self._stop_called_at is not None:
                drop_s = time.perf_counter() - self._stop_called_at
            self._stats = replace(
                self._stats,
                sequences_stopped=self._stats.sequences_stopped + 1,
                last_stop_drop_s=drop_s,
            )

    def _device_failed(self, exc: Exception) -> None:
        """The PCM broke (device unplugged): close it and go on silently until reopened."""
        level = logging.DEBUG if self._device_failed_logged else logging.ERROR
        LOGGER.log(
            level,
            "ALSA playback device %r failed: %s; audio is silent until it can be reopened",
            self.device,
            exc,
        )
        self._device_failed_logged = True
        with self._cond:
            self._stats = replace(self._stats, device_errors=self._stats.device_errors + 1)
        self._release_pcm()

    def _reopen(self) -> None:
        """Try to reopen a failed device at the start of a sequence."""
        try:
            self._pcm = self._open_device()
        except DeviceError as exc:
            self._device_failed(exc)
            return
        LOGGER.info("ALSA playback device %r reopened", self.device)
        self._device_failed_logged = False

    def _release_pcm(self) -> None:
        """Drop then close the PCM (close() drains, so it would block on queued audio)."""
        pcm, self._pcm = self._pcm, None
        if pcm is None:
            return
        for step in (pcm.drop, pcm.close):
            try:
                step()
            except alsaaudio.ALSAAudioError as exc:
                LOGGER.debug("ALSA playback device %r: %s failed: %s", self.device, step, exc)
