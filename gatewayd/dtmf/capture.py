"""Live in-band DTMF: ALSA capture -> detector -> ``Digit`` events on the asyncio loop.

Design: a **reader thread** owns the capture PCM (blocking ``read()`` of 20 ms periods),
feeds the detector and hands each recognised key to the loop with
``loop.call_soon_threadsafe(on_digit, Digit(...))``. The loop never blocks on ALSA and
never runs the detector; the thread never touches loop state. (PCM_NONBLOCK with
``loop.add_reader`` on the poll descriptors was not chosen: ALSA capture can need
several descriptors and ``revents`` demangling, and the detector's CPU would then be
spent on the loop thread.)

Keys are handed on when they are recognised (``KeyStart``), about 45 ms after the tone
begins, so a key pressed during a prompt stops it at once (barge-in). The event is the
same ``Digit(key, party)`` the MT8870 path emits; keys outside ``allowed_keys`` (A-D on
an ordinary keypad) are dropped, and no digit is ever logged.

The thread paces itself: it never reads more than ``max_ahead_periods`` periods ahead of
its clock. On a real sound card ``read()`` blocks until a period is captured, so this
never waits; on ALSA's ``file``/``null`` plugins (tests, benches), which return at once,
it turns a recorded file into a real-time stream. Tests inject ``clock``/``sleep``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import alsaaudio

from gatewayd.dtmf import require_numpy
from gatewayd.errors import DeviceError, ProfileError
from gatewayd.events import DTMF_KEYS, Digit, Party

LOGGER = logging.getLogger(__name__)

#: 8 kHz S16_LE mono, 20 ms periods: what the detector analyses.
RATE = 8000
PERIOD_FRAMES = 160
#: Periods in the ALSA capture buffer: 80 ms of slack before an overrun.
BUFFER_PERIODS = 4
#: How far the reader may run ahead of its clock (only ever reached on non-real-time
#: plugins such as ``file``; a sound card paces the reads itself).
DEFAULT_MAX_AHEAD_PERIODS = 2
#: How long close() waits for the reader thread (a blocked read returns within a period).
CLOSE_TIMEOUT_S = 2.0

DigitCallback = Callable[[Digit], None]
FaultCallback = Callable[[str], None]


class _CapturePcm(Protocol):
    def read(self) -> tuple[int, bytes]: ...
    def info(self) -> dict[str, Any]: ...
    def close(self) -> Any: ...


@dataclass(frozen=True)
class CaptureStats:
    """Counters of an :class:`InbandDtmfCapture` (no keys in them)."""

    #: Periods read and analysed.
    periods: int = 0
    #: Capture overruns (the thread fell more than a buffer behind; audio was lost).
    overruns: int = 0
    #: Keys handed to the loop.
    keys: int = 0
    #: Keys recognised but not on this keypad (``allowed_keys``).
    dropped_keys: int = 0
    #: Whether the reader thread is running.
    running: bool = False


class InbandDtmfCapture:
    """Reads ``device`` (an ALSA capture PCM name) and delivers keys as ``Digit`` events.

    ``call_progress_hz`` are the tone plan's frequencies (France: 440 Hz) whose echo must
    not mask a key pressed over them. ``start(loop, on_digit)`` opens the device (a bad
    one raises ``DeviceError`` there, naming it) and starts the reader thread;
    ``on_digit`` and ``on_fault`` run on the loop. ``close()`` stops the thread and
    releases the device; safe to call twice.
    """

    def __init__(
        self,
        device: str,
        *,
        party: Party = "handset",
        allowed_keys: str = "0123456789*#",
        call_progress_hz: Sequence[float] = (440.0,),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_ahead_periods: int = DEFAULT_MAX_AHEAD_PERIODS,
    ) -> None:
        unknown = set(allowed_keys) - DTMF_KEYS
        if unknown:
            raise ProfileError(
                f"in-band DTMF allowed_keys may only hold DTMF keys 0-9 * # A-D "
                f"(got {allowed_keys!r})"
            )
        require_numpy()
        # Imported here, not at module level: numpy loads only when a profile asks for it.
        from gatewayd.dtmf.detector import DetectorSettings, DtmfDetector

        self._device = device
        self._party: Party = party
        self._allowed = frozenset(allowed_keys)
        self._clock = clock
        self._sleep = sleep
        self._max_ahead = max_ahead_periods
        self._detector = DtmfDetector(DetectorSettings(discount_hz=tuple(call_progress_hz)))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stats = CaptureStats()
        self._closed = False

    @property
    def device(self) -> str:
        """The ALSA capture device name."""
        return self._device

    def stats(self) -> CaptureStats:
        """A snapshot of the counters."""
        with self._lock:
            running = self._thread is not None and self._thread.is_alive()
            return CaptureStats(
                self._stats.periods,
                self._stats.overruns,
                self._stats.keys,
                self._stats.dropped_keys,
                running,
            )

    def start(
        self,
        loop: asyncio.AbstractEventLoop,
        on_digit: DigitCallback,
        on_fault: FaultCallback | None = None,
    ) -> None:
        """Open the capture device and start hearing keys; raises DeviceError if it cannot."""
        if self._closed:
            raise DeviceError(f"in-band DTMF capture on {self._device!r} was closed")
        if self._thread is not None:
            return
        pcm = self._open()
        self._thread = threading.Thread(
            target=self._run,
            args=(pcm, loop, on_digit, on_fault),
            name=f"dtmf-capture:{self._device}",
            daemon=True,
        )
        self._thread.start()
        LOGGER.info("in-band DTMF: listening on ALSA capture %r", self._device)

    def close(self) -> None:
        """Stop the reader thread and release the device; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(CLOSE_TIMEOUT_S)
            if thread.is_alive():
                LOGGER.warning(
                    "in-band DTMF: capture thread on %r did not stop within %.1f s",
                    self._device,
                    CLOSE_TIMEOUT_S,
                )

    def __enter__(self) -> InbandDtmfCapture:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- reader thread ---------------------------------------------------------------

    def _open(self) -> _CapturePcm:
        try:
            pcm: _CapturePcm = alsaaudio.PCM(
                alsaaudio.PCM_CAPTURE,
                alsaaudio.PCM_NORMAL,
                rate=RATE,
                channels=1,
                format=alsaaudio.PCM_FORMAT_S16_LE,
                periodsize=PERIOD_FRAMES,
                periods=BUFFER_PERIODS,
                device=self._device,
            )
        except alsaaudio.ALSAAudioError as exc:
            raise DeviceError(
                f"ALSA capture device {self._device!r} cannot be opened ({exc}): check "
                "[audio] capture in the profile ('arecord -L' lists the devices)"
            ) from exc
        info = pcm.info()
        got = (info.get("rate"), info.get("channels"), info.get("period_size"))
        if got != (RATE, 1, PERIOD_FRAMES):
            pcm.close()
            raise DeviceError(
                f"ALSA capture device {self._device!r} gave rate {got[0]}, {got[1]} channel(s), "
                f"{got[2]}-frame periods; in-band DTMF needs {RATE} Hz mono with "
                f"{PERIOD_FRAMES}-frame periods: use a 'plug:' device that converts"
            )
        return pcm

    def _run(
        self,
        pcm: _CapturePcm,
        loop: asyncio.AbstractEventLoop,
        on_digit: DigitCallback,
        on_fault: FaultCallback | None,
    ) -> None:
        from gatewayd.dtmf.detector import KeyStart

        period_s = PERIOD_FRAMES / RATE
        started = self._clock()
        periods = 0
        try:
            while not self._stop.is_set():
                # After this read, never more than max_ahead periods ahead of the clock.
                wait = started + (periods + 1 - self._max_ahead) * period_s - self._clock()
                if wait > 0:
                    self._sleep(wait)
                    continue
                try:
                    length, data = pcm.read()
                except alsaaudio.ALSAAudioError as exc:
                    self._fault(loop, on_fault, f"ALSA capture {self._device!r} failed: {exc}")
                    return
                if length < 0:
                    # -EPIPE: overrun, the stream is already re-prepared; the lost audio
                    # cannot be recovered, so the detector simply continues.
                    if length == -errno.EPIPE:
                        with self._lock:
                            self._stats = _bump(self._stats, overruns=1)
                        LOGGER.warning("in-band DTMF: capture overrun on %r", self._device)
                    continue
                if not data:
                    continue
                periods += 1
                for event in self._detector.feed(data):
                    if isinstance(event, KeyStart):
                        self._deliver(loop, on_digit, event.key)
                with self._lock:
                    self._stats = _bump(self._stats, periods=1)
        finally:
            pcm.close()

    def _deliver(self, loop: asyncio.AbstractEventLoop, on_digit: DigitCallback, key: str) -> None:
        if key not in self._allowed:
            # Only non-digits can be named: a digit may belong to a secret code.
            LOGGER.info("in-band DTMF: key %s is not on this keypad; ignored", key)
            with self._lock:
                self._stats = _bump(self._stats, dropped_keys=1)
            return
        LOGGER.debug("in-band DTMF: key recognised (masked)")
        with self._lock:
            self._stats = _bump(self._stats, keys=1)
        try:
            loop.call_soon_threadsafe(on_digit, Digit(key, party=self._party))
        except RuntimeError:  # the loop is closed: the daemon is shutting down
            self._stop.set()

    def _fault(
        self, loop: asyncio.AbstractEventLoop, on_fault: FaultCallback | None, reason: str
    ) -> None:
        LOGGER.error("in-band DTMF: %s", reason)
        if on_fault is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
                loop.call_soon_threadsafe(on_fault, reason)


def _bump(stats: CaptureStats, **deltas: int) -> CaptureStats:
    values = {
        "periods": stats.periods,
        "overruns": stats.overruns,
        "keys": stats.keys,
        "dropped_keys": stats.dropped_keys,
    }
    for name, delta in deltas.items():
        values[name] += delta
    return CaptureStats(running=stats.running, **values)
