"""A stand-in for the daemon's service, for the agent-only bench and tests: plays the box.

``lock()`` and ``reset_code()`` change its state and publish the same events the
daemon does, so the agent's notifications can be driven without a line.
"""

from __future__ import annotations

from typing import Any

from gatewayd.eventbus import EventBus


class FakeService:
    """Code state in memory, with an :class:`EventBus` like the daemon's."""

    def __init__(self) -> None:
        self.bus = EventBus()
        self.code_set = True
        self.failures = 0
        self.locked = False
        self.messages_new = 0
        self.resets: list[str] = []

    def status(self) -> dict[str, Any]:
        """What ``Daemon.status()`` gives, for the fields the agent reads."""
        return {
            "code_set": self.code_set,
            "failures": self.failures,
            "locked": self.locked,
            "cooldown_remaining_s": 0.0,
            "protection": False,
            "messages_new": self.messages_new,
            "messages_saved": 0,
        }

    def lock(self) -> None:
        """Ten wrong codes: locked."""
        self.failures, self.locked = 10, True
        self.bus.publish({"type": "lock"})

    def reset_code(self, origin: str) -> None:
        """The advisor reset: code, counter and lock cleared."""
        self.code_set, self.failures, self.locked = False, 0, False
        self.resets.append(origin)
        self.bus.publish({"type": "code", "action": "reset", "origin": origin})
