"""What every line driver provides (DESIGN.md §3).

A driver turns its hardware (or the sim socket) into :mod:`gatewayd.events`
line events, delivered on the asyncio loop through the ``emit`` callback, and
carries out line actions. It knows nothing of voicemail.

Must override: :meth:`LineDriver._start`, :meth:`LineDriver._close`.
Must provide: ``from_profile(profile, emit, runtime_dir)`` (a classmethod building the
driver from its profile section; see :func:`gatewayd.line.open_line`).
Should set: ``self._station`` and ``self._trunk`` in ``__init__`` (what the line is: a
:class:`Station` is the subscriber's handset, a :class:`Trunk` carries calls from the
network; None when the line has no such side).
May override: :meth:`LineDriver.status`, :meth:`LineDriver.audio_output` (a line that is
its own audio path, e.g. a voice modem).

A trunk emits ``Ring(caller)`` once per ring and never answers by itself: the service
decides (``Answer``), the trunk then emits ``RemoteAnswered``; ``RemoteHangup`` when the
caller hangs up (also before the answer), ``Digit(key, "remote")`` for the caller's keys.
A station emits ``OffHook``/``OnHook``/``Flash``/``Digit(key, "handset")``.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from gatewayd.events import LineEvent

if TYPE_CHECKING:
    from gatewayd.audio import AudioOutput

LOGGER = logging.getLogger(__name__)

EventSink = Callable[[LineEvent], None]
#: Receives the caller's audio: signed 16-bit little-endian mono 8 kHz PCM, on the loop thread.
AudioSink = Callable[[bytes], None]


class Station:
    """The subscriber's handset side of a line: hook and keys come in as events.

    May override: :meth:`ring` (a station that can be rung on request),
    :meth:`audio_output` (a station with its own audio path; None plays through ALSA),
    :meth:`start_capture`/:meth:`stop_capture` (a station whose microphone can be recorded).
    """

    def ring(self, on: bool) -> None:
        """Start (``on``) or stop ringing the handset; default: it rings by itself."""
        LOGGER.debug("this station rings by itself; ring(%s) ignored", on)

    def audio_output(self) -> AudioOutput | None:
        """Where prompts and tones for the handset are played; None: the ALSA player."""
        return None

    def start_capture(self, on_audio: AudioSink) -> bool:
        """Deliver the handset microphone's audio to ``on_audio`` (recording a greeting).

        False when this station has no audio input the service can record from.
        """
        return False

    def stop_capture(self) -> None:
        """Stop delivering the handset's audio; safe when not capturing."""


class Trunk:
    """The network side of a line: incoming calls, their caller and the caller's audio.

    Must override: :meth:`answer`, :meth:`hang_up`, :meth:`start_capture`,
    :meth:`stop_capture`. May override: :meth:`audio_output`.
    """

    def answer(self) -> None:
        """Answer the ringing call; emit ``RemoteAnswered`` once connected."""
        raise NotImplementedError

    def hang_up(self) -> None:
        """End the call (ringing or connected); no event is emitted for the box's own hang-up."""
        raise NotImplementedError

    def start_capture(self, on_audio: AudioSink) -> None:
        """Deliver the caller's audio to ``on_audio`` in real time until :meth:`stop_capture`."""
        raise NotImplementedError

    def stop_capture(self) -> None:
        """Stop delivering the caller's audio; safe when not capturing."""
        raise NotImplementedError

    def audio_output(self) -> AudioOutput | None:
        """Where prompts are played to the caller; None: the ALSA player."""
        return None


class _TrunkCalls(Protocol):
    def answer(self) -> None: ...
    def hang_up(self) -> None: ...
    def start_capture(self, on_audio: AudioSink) -> None: ...
    def stop_capture(self) -> None: ...


class DriverTrunk(Trunk):
    """A trunk whose calls are its driver's own ``answer``, ``hang_up``, ``start_capture``
    and ``stop_capture`` methods; ``output`` is where prompts to the caller play."""

    def __init__(self, driver: _TrunkCalls, output: AudioOutput | None = None) -> None:
        self._driver = driver
        self._output = output

    def answer(self) -> None:
        self._driver.answer()

    def hang_up(self) -> None:
        self._driver.hang_up()

    def start_capture(self, on_audio: AudioSink) -> None:
        self._driver.start_capture(on_audio)

    def stop_capture(self) -> None:
        self._driver.stop_capture()

    def audio_output(self) -> AudioOutput | None:
        return self._output


class LineDriver(abc.ABC):
    """Base class of line drivers; ``start``/``close`` own the checks, backends the work."""

    #: The profile's ``line.driver`` value.
    name = "base"

    def __init__(self, emit: EventSink) -> None:
        self._emit = emit
        self._started = False
        self._closed = False
        #: What :meth:`station` and :meth:`trunk` return: set by the driver's __init__.
        self._station: Station | None = None
        self._trunk: Trunk | None = None

    async def start(self) -> None:
        """Open the hardware and begin emitting events."""
        if self._started:
            return
        await self._start()
        self._started = True

    async def close(self) -> None:
        """Release the hardware; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self._close()

    def emit(self, event: LineEvent) -> None:
        """Deliver an event to the service (on the loop thread)."""
        self._emit(event)

    def station(self) -> Station | None:
        """The subscriber's handset side, or None (a trunk-only line)."""
        return self._station

    def trunk(self) -> Trunk | None:
        """The network side, or None (a station-only line such as gpio-slic)."""
        return self._trunk

    def hang_up(self) -> None:
        """End the remote call, if any (the IVR's ``Hangup`` action)."""
        trunk = self.trunk()
        if trunk is None:
            LOGGER.debug("%s line: no remote call to hang up", self.name)
        else:
            trunk.hang_up()

    def audio_output(self) -> AudioOutput | None:
        """The line's own audio path (a modem's ``+VTX``), or None to play through ALSA.

        Called after :meth:`start`.
        """
        return None

    def status(self) -> dict[str, Any]:
        """Line facts for ``status``/``line`` (hook, ringing, ...); never code digits."""
        return {}

    @abc.abstractmethod
    async def _start(self) -> None:
        """Open the device, register fds/timers on the loop."""

    @abc.abstractmethod
    async def _close(self) -> None:
        """Unregister and close everything opened by ``_start``."""
