"""The ``gpio-slic`` line: a Silvertel Ag1171 SLIC and an MT8870 DTMF decoder on GPIO.

The SLIC feeds the box's own handset; prompts and tones go through ALSA (the
sound card wired to the SLIC's VIN/VOUT), so :meth:`audio_output` stays None.

- SHK (switch-hook) is an input debounced by the backend (``SHK_DEBOUNCE_MS``);
  each debounced edge goes to a :class:`~gatewayd.line.hook.HookClassifier`,
  which turns breaks into ``OffHook``, ``OnHook``, ``Flash`` and dial-pulse
  ``Digit``s.
- StD and Q1-Q4 of the MT8870 give DTMF keys (:class:`~gatewayd.line.mt8870.Mt8870Reader`).
- RM and F/R ring the handset (:class:`~gatewayd.line.ringer.Ringer`) when a
  technician asks (:meth:`GpioSlicLine.ring`); lifting the handset stops it at once.

No polling and no busy wait: edges arrive as backend callbacks (on the loop for
``gpiod`` and ``fake``, on a background thread for ``rpi``, handed to the loop
with ``call_soon_threadsafe``), and the hook classifier, the ringer and the end
of a ring share ONE ``loop.call_at`` timer armed for the earliest deadline.

With ``gpio_backend = "fake"`` the line also serves ``<runtime_dir>/gpio.sock``
(mode 0660), where a test or a technician plays the handset (:class:`FakeHandset`),
one command per line, each answered ``ok``, ``error <reason>`` or a value::

    lift | hang | flash | press KEYS | dial DIGITS | drive PIN 0|1 | read PIN | history N | help
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gatewayd.errors import DeviceError, GatewaydError, ProfileError
from gatewayd.events import Digit, Flash, LineEvent, LineFault, OffHook, OnHook
from gatewayd.gpio import GpioBackend, open_backend
from gatewayd.gpio.fake import FakeGpio
from gatewayd.line.base import EventSink, LineDriver, Station
from gatewayd.line.fake_handset import FakeHandset
from gatewayd.line.hook import SHK_DEBOUNCE_MS, HookClassifier, TimedEvent
from gatewayd.line.mt8870 import Mt8870Reader
from gatewayd.line.ringer import Ringer
from gatewayd.paths import GPIO_SOCKET
from gatewayd.unixsock import UnixSocketServer, line_commands

if TYPE_CHECKING:
    from gatewayd.profile import Profile, SlicSection

LOGGER = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000

#: Longest command line accepted on gpio.sock; a longer one is answered with an error.
MAX_LINE = 1024
#: Longest a station ring asked by the service lasts if nobody stops it (the network gives up).
MAX_STATION_RING_S = 180.0
#: What ``status()["last_event"]`` calls each event; never a digit's key.
_EVENT_NAMES: dict[type, str] = {
    OffHook: "off-hook",
    OnHook: "on-hook",
    Flash: "flash",
    Digit: "digit",
}


class SlicLineError(DeviceError):
    """The SLIC line cannot do what was asked now (not started, handset off the hook...)."""


class InbandDtmfUnavailableError(DeviceError):
    """``dtmf = "inband"`` without numpy (the ``[inband]`` extra) or without a capture device."""


def _ns(seconds: float) -> int:
    return round(seconds * NS_PER_S)


class GpioSlicLine(LineDriver):
    """A handset on an Ag1171 SLIC, keys from an MT8870, all on one GPIO backend.

    The backend named by the profile is opened by :meth:`start` (its library is
    imported only then); its errors (``UnknownBackendError``,
    ``BackendUnavailableError``, ``GpioError``) come out of ``start`` unchanged.
    """

    name = "gpio-slic"

    def __init__(
        self,
        emit: EventSink,
        slic: SlicSection,
        *,
        ring_on_s: float = 1.5,
        ring_off_s: float = 3.5,
        fake_socket: Path | None = None,
        source: str = "",
        capture_device: str = "",
        call_progress_hz: tuple[float, ...] = (440.0,),
    ) -> None:
        super().__init__(emit)
        self.slic = slic
        self._source = source or "the hardware profile"
        self._capture_device = capture_device
        self._call_progress_hz = call_progress_hz
        self._capture: Any = None
        _check_dtmf_source(slic, self._source, capture_device)
        self._ring_on_s = ring_on_s
        self._ring_off_s = ring_off_s
        self._fake_socket = fake_socket
        hook = slic.hook
        self._classifier = HookClassifier(hook.bounce_ms, hook.pulse_max_ms, hook.flash_max_ms)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._gpio: GpioBackend | None = None
        self._ringer: Ringer | None = None
        self._mt8870: Mt8870Reader | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._ring_until: float | None = None
        self._last_event = "none"
        self._handset: FakeHandset | None = None
        self._server: UnixSocketServer | None = None
        self._station = _SlicStation(self)  # a station only: no trunk

    @classmethod
    def from_profile(cls, profile: Profile, emit: EventSink, runtime_dir: Path) -> GpioSlicLine:
        """The line of a ``driver = "gpio-slic"`` profile; the fake backend adds gpio.sock."""
        slic = profile.line.slic
        if slic is None:
            raise ProfileError(
                f"{profile.source}: line: the gpio-slic driver needs line.gpio_backend and "
                "[line.pins]"
            )
        return cls(
            emit,
            slic,
            ring_on_s=profile.line.ring_on_s,
            ring_off_s=profile.line.ring_off_s,
            fake_socket=runtime_dir / GPIO_SOCKET if slic.gpio_backend == "fake" else None,
            source=str(profile.source),
            capture_device=profile.audio.capture,
            call_progress_hz=_call_progress_hz(profile),
        )

    # --- what the daemon and the technician see ------------------------------------

    @property
    def gpio(self) -> GpioBackend | None:
        """The open GPIO backend (None before :meth:`start`)."""
        return self._gpio

    @property
    def fake_handset(self) -> FakeHandset | None:
        """The handset played on the fake backend (None on real hardware or before start)."""
        return self._handset

    @property
    def off_hook(self) -> bool:
        """Whether the handset is off the hook (a break not yet classified still counts)."""
        return self._classifier.off_hook

    @property
    def ringing(self) -> bool:
        """Whether the handset is being rung (in a burst or in the pause between two)."""
        return self._ringer is not None and self._ringer.ringing

    def status(self) -> dict[str, Any]:
        """Backend, hook state, ringing and the last hook/key event (never a key's value)."""
        return {
            "backend": self.slic.gpio_backend,
            "handset": "off-hook" if self.off_hook else "on-hook",
            "ringing": self.ringing,
            "last_event": self._last_event,
        }

    def ring(self, seconds: float) -> None:
        """Ring the handset for ``seconds`` at the profile's cadence; a lift stops it at once.

        Ringing again while ringing moves the end to ``seconds`` from now.
        """
        loop, ringer = self._started_parts()
        if not (math.isfinite(seconds) and seconds > 0):
            raise SlicLineError(f"ring needs a number of seconds > 0 (got {seconds})")
        if self.off_hook:
            raise SlicLineError("cannot ring the handset: it is off the hook")
        now = self._now(loop)
        ringer.start(now)
        self._ring_until = now + seconds
        LOGGER.info("ringing the handset for %.1f s", seconds)
        self._rearm()

    def stop_ringing(self) -> None:
        """Stop ringing now (F/R forward at once, RM low 20 ms later); nothing if not ringing."""
        self._started_parts()
        self._stop_ringing()

    # --- start and close ---------------------------------------------------------

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._gpio = self._open_gpio(loop)
        try:
            self._setup_lines(self._gpio)
            if self._fake_socket is not None:
                if not isinstance(self._gpio, FakeGpio):
                    raise SlicLineError("gpio.sock needs the fake GPIO backend")
                self._handset = FakeHandset(self._gpio, loop, self.slic)
                self._server = UnixSocketServer(
                    self._fake_socket,
                    line_commands(self._handset.command, MAX_LINE),
                    max_line=MAX_LINE,
                    what="fake GPIO handset (gpio.sock)",
                )
                await self._server.start()
        except BaseException:
            await self._release()
            raise
        level = self._gpio.read(self.slic.pins.shk)
        if level == self.slic.shk_active_high:
            # A handset already off the hook is a lift now, delivered once start() has
            # returned: the daemon opens its audio right after, before it can take events.
            loop.call_soon(self._on_shk_edge, self.slic.pins.shk, level, _ns(loop.time()))
        LOGGER.info(
            "gpio-slic line ready on the %s GPIO backend (handset %s)",
            self.slic.gpio_backend,
            "off-hook" if self.off_hook else "on-hook",
        )

    async def _close(self) -> None:
        loop, ringer, gpio = self._loop, self._ringer, self._gpio
        if loop is not None and ringer is not None and gpio is not None and not gpio.closed:
            if ringer.ringing:
                ringer.stop(self._now(loop))
            # RM must drop over 10 ms after F/R is forward again (HARDWARE.md §2); the
            # backend's close() would drop both at once, so let the ringer do it first.
            deadline = ringer.next_deadline()
            if deadline is not None:
                await asyncio.sleep(max(0.0, deadline - loop.time()))
                ringer.on_timer(max(self._now(loop), deadline))
        await self._release()

    def _capture_fault(self, reason: str) -> None:
        LOGGER.error("in-band DTMF capture on %r failed: %s", self._capture_device, reason)
        self.emit(LineFault(f"audio capture {self._capture_device}: {reason}"))

    async def _release(self) -> None:
        """Stop serving, cancel the timer, close the backend (outputs to their idle levels)."""
        self._ring_until = None
        if self._capture is not None:
            self._capture.close()
            self._capture = None
        if self._server is not None:
            await self._server.close()
            self._server = None
        if self._handset is not None:
            self._handset.close()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None
        if self._gpio is not None:
            self._gpio.close()

    def _open_gpio(self, loop: asyncio.AbstractEventLoop) -> GpioBackend:
        options: dict[str, Any] = {}
        if self.slic.gpio_backend == "gpiod":
            options["chip"] = self.slic.gpio_chip
        elif self.slic.gpio_backend == "fake":
            # The fake's virtual clock starts at loop time; FakeHandset keeps it there.
            options["clock_ns"] = _ns(loop.time())
        gpio = open_backend(self.slic.gpio_backend, **options)
        gpio.attach(loop)
        return gpio

    def _setup_lines(self, gpio: GpioBackend) -> None:
        pins = self.slic.pins
        # Outputs first, at their idle levels (F/R forward, RM low): a quiet line at once.
        self._ringer = Ringer(
            gpio,
            pins.rm,
            pins.fr,
            self.slic.ring_frequency_hz,
            on_s=self._ring_on_s,
            off_s=self._ring_off_s,
        )
        # Pull SHK towards on-hook: a SLIC unplugged or unpowered must not look like a lift.
        gpio.setup_input(
            pins.shk,
            pull="down" if self.slic.shk_active_high else "up",
            debounce_ms=SHK_DEBOUNCE_MS,
            callback=self._shk_edge_any_thread,
        )
        self._open_dtmf(gpio)

    def _open_dtmf(self, gpio: GpioBackend) -> None:
        """Where keys come from: the decoder's StD/Q1-Q4 pins, or (later) the audio capture."""
        pins = self.slic.pins
        if self.slic.dtmf == "inband":
            # Keys decoded from the line's audio (no decoder chip): numpy is imported only here.
            from gatewayd.dtmf.capture import InbandDtmfCapture

            loop = self._loop
            assert loop is not None
            self._capture = InbandDtmfCapture(
                self._capture_device, call_progress_hz=self._call_progress_hz
            )
            self._capture.start(loop, on_digit=self._key_any_thread, on_fault=self._capture_fault)
            return
        q_pins = (pins.q1, pins.q2, pins.q3, pins.q4)
        if pins.std is None or any(pin is None for pin in q_pins):
            raise ProfileError(
                f'{self._source}: line.pins: dtmf = "mt8870" needs std, q1, q2, q3 and q4'
            )
        self._mt8870 = Mt8870Reader(
            gpio,
            pins.std,
            [pin for pin in q_pins if pin is not None],
            on_digit=self._key_any_thread,
        )

    def _now(self, loop: asyncio.AbstractEventLoop) -> float:
        """Loop time; on the fake backend the world's clock catches up first, so the edges
        due by now come in before gatewayd acts and its writes are stamped right."""
        if self._handset is not None:
            self._handset.sync()
        return loop.time()

    def _started_parts(self) -> tuple[asyncio.AbstractEventLoop, Ringer]:
        if self._loop is None or self._ringer is None or self._closed:
            raise SlicLineError("the gpio-slic line is not running (start it first)")
        return self._loop, self._ringer

    # --- edges in (any thread) -> the loop ---------------------------------------

    def _shk_edge_any_thread(self, pin: int, level: bool, timestamp_ns: int) -> None:
        self._on_loop(self._on_shk_edge, pin, level, timestamp_ns)

    def _key_any_thread(self, digit: Digit) -> None:
        self._on_loop(self._on_key, digit)

    def _on_loop(self, callback: Callable[..., None], *args: object) -> None:
        """Run ``callback`` on the loop: now if on the loop thread, else handed over."""
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            callback(*args)
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop closed while a late edge was on its way
            LOGGER.debug("GPIO edge after the loop closed; dropped")

    # --- on the loop ---------------------------------------------------------------

    def _on_shk_edge(self, pin: int, level: bool, timestamp_ns: int) -> None:
        if self._closed or self._ringer is None:
            return
        off_hook = level == self.slic.shk_active_high
        # No log per edge: counting dial pulses in a log would spell a dialled code.
        if off_hook and self._ringer.ringing:
            self._stop_ringing("the handset was lifted")
        # Backend timestamps are on the monotonic clock, which is also the loop's time():
        # the classifier's deadlines can be armed with loop.call_at as they are.
        self._deliver(self._classifier.feed(off_hook, timestamp_ns / NS_PER_MS))
        self._rearm()

    def _on_key(self, digit: Digit) -> None:
        if self._closed:
            return
        self._last_event = "digit"
        LOGGER.debug("DTMF key from the MT8870")  # never which key: it may be a code digit
        self.emit(digit)

    def _deliver(self, events: list[TimedEvent]) -> None:
        for timed in events:
            event: LineEvent = timed.event
            self._last_event = _EVENT_NAMES[type(event)]
            if isinstance(event, Digit):
                LOGGER.debug("dial-pulse digit")  # never which one
            else:
                LOGGER.info("handset: %s", self._last_event)
            self.emit(event)

    def _stop_ringing(self, why: str = "stopped") -> None:
        self._ring_until = None
        if self._loop is None or self._ringer is None or not self._ringer.ringing:
            return
        LOGGER.info("ringing ends: %s", why)
        self._ringer.stop(self._now(self._loop))
        self._rearm()

    def _rearm(self) -> None:
        """Arm the one timer for the earliest of hook, ringer and ring-end deadlines."""
        loop = self._loop
        if loop is None or self._closed:
            return
        deadlines: list[float] = []
        hook_ms = self._classifier.poll_deadline()
        if hook_ms is not None:
            deadlines.append(hook_ms / 1000)
        if self._ringer is not None and (ring_at := self._ringer.next_deadline()) is not None:
            deadlines.append(ring_at)
        if self._ring_until is not None:
            deadlines.append(self._ring_until)
        when = min(deadlines, default=None)
        if when == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None
        if when is not None:
            self._timer_at = when
            self._timer = loop.call_at(when, self._on_timer, when)

    def _on_timer(self, when: float) -> None:
        self._timer = self._timer_at = None
        if self._closed or self._loop is None or self._ringer is None:
            return
        # asyncio may run a timer a hair before ``when``: the deadline it was armed for
        # is due all the same (else it would be re-armed at once, again and again).
        now = max(self._now(self._loop), when)
        if self._ring_until is not None and now >= self._ring_until:
            self._stop_ringing("ring time over")
        ring_at = self._ringer.next_deadline()
        if ring_at is not None and ring_at <= now:
            self._ringer.on_timer(now)
        now_ms = now * 1000
        hook_ms = self._classifier.poll_deadline()
        if hook_ms is not None and hook_ms / 1000 <= now:
            now_ms = max(now_ms, hook_ms)  # the same float the timer was armed from
        self._deliver(self._classifier.on_timer(now_ms))
        self._rearm()


class _SlicStation(Station):
    """The SLIC's handset: the service rings it through the Ag1171's ringer."""

    def __init__(self, line: GpioSlicLine) -> None:
        self._line = line

    def ring(self, on: bool) -> None:
        """Ring until told to stop (at most :data:`MAX_STATION_RING_S`), or stop now."""
        if not on:
            self._line.stop_ringing()
        elif self._line.off_hook:
            LOGGER.info("the handset is off the hook: not ringing it")
        else:
            self._line.ring(MAX_STATION_RING_S)


def _call_progress_hz(profile: Profile) -> tuple[float, ...]:
    """The tone plan's frequencies: our own tones echoed on the capture are not keys."""
    from gatewayd.tones import TonePlan

    plan = TonePlan.from_mapping(profile.tones, str(profile.source), base=TonePlan.france())
    return tuple(sorted({f for tone in plan.values() for f in tone.frequencies}))


def _check_dtmf_source(slic: SlicSection, source: str, capture_device: str) -> None:
    """Refuse at construction an in-band set-up that cannot work, saying what to do."""
    if slic.dtmf != "inband":
        return
    if not capture_device:
        raise InbandDtmfUnavailableError(
            f'{source}: audio.capture: dtmf = "inband" decodes keys from the line\'s audio; '
            "name the ALSA capture device of the SLIC's sound card (arecord -L lists them)"
        )
    from gatewayd.dtmf import require_numpy

    try:
        require_numpy()
    except GatewaydError as exc:
        raise InbandDtmfUnavailableError(
            f'{source}: line.dtmf = "inband": {exc}; or wire an MT8870/HT9170 decoder to '
            'StD/Q1-Q4 and set dtmf = "mt8870"'
        ) from exc
