"""What every line driver provides (DESIGN.md §3).

A driver turns its hardware (or the sim socket) into :mod:`gatewayd.events`
line events, delivered on the asyncio loop through the ``emit`` callback, and
carries out line actions. It knows nothing of voicemail.

Must override: :meth:`LineDriver._start`, :meth:`LineDriver._close`.
Must provide: ``from_profile(profile, emit, runtime_dir)`` (a classmethod building the
driver from its profile section; see :func:`gatewayd.line.open_line`).
May override: :meth:`LineDriver.hang_up` (end a remote call), :meth:`LineDriver.status`,
:meth:`LineDriver.audio_output` (a line that is its own audio path, e.g. a voice modem).
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gatewayd.events import LineEvent

if TYPE_CHECKING:
    from gatewayd.audio import AudioOutput

LOGGER = logging.getLogger(__name__)

EventSink = Callable[[LineEvent], None]


class LineDriver(abc.ABC):
    """Base class of line drivers; ``start``/``close`` own the checks, backends the work."""

    #: The profile's ``line.driver`` value.
    name = "base"

    def __init__(self, emit: EventSink) -> None:
        self._emit = emit
        self._started = False
        self._closed = False

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

    def hang_up(self) -> None:
        """End the remote call, if any (the IVR's ``Hangup`` action)."""
        LOGGER.debug("%s line: no remote call to hang up", self.name)

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
