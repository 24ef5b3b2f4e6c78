"""The ``events`` stream: the declared events (``eventtypes``) fanned out to console and
control-socket clients, each stamped with ``"t"`` (monotonic seconds, for programs) and
``"time"`` (local wall-clock ISO 8601, for people).

Each subscriber has a bounded queue; a client too slow to keep up is dropped
rather than letting the daemon's memory grow.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # declarations for the type checker; tests check events against them
    from gatewayd.eventtypes import Event, StampedEvent

LOGGER = logging.getLogger(__name__)

#: Events a subscriber may fall behind by before it is dropped.
SUBSCRIBER_QUEUE = 1000


class Subscription:
    """One reader of the stream; ``closed`` is set when it was dropped for falling behind."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[StampedEvent] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self.closed = False


class EventBus:
    """Publish events (stamped with monotonic ``t``) to every subscriber and to listeners."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        self._subscribers: set[Subscription] = set()
        self._listeners: list[Callable[[StampedEvent], None]] = []

    def publish(self, event: Event) -> None:
        """Send ``event`` to everyone; must be called on the loop thread."""
        wall = datetime.fromtimestamp(self._wall_clock()).astimezone()
        stamped: StampedEvent = {
            **event,
            "t": round(self._clock(), 3),
            "time": wall.isoformat(timespec="milliseconds"),
        }
        for listener in self._listeners:
            listener(stamped)
        for sub in list(self._subscribers):
            try:
                sub.queue.put_nowait(stamped)
            except asyncio.QueueFull:
                LOGGER.warning(
                    "an events client fell %d events behind; dropping it", SUBSCRIBER_QUEUE
                )
                sub.closed = True
                self._subscribers.discard(sub)

    def add_listener(self, listener: Callable[[StampedEvent], None]) -> None:
        """Call ``listener`` synchronously for every event (console, logs)."""
        self._listeners.append(listener)

    def subscribe(self) -> Subscription:
        """Start receiving events."""
        sub = Subscription()
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop receiving events; safe to call twice."""
        self._subscribers.discard(sub)
        sub.closed = True

    @property
    def subscriber_count(self) -> int:
        """How many clients stream events now."""
        return len(self._subscribers)
