"""TR-369 (USP) management over MQTT 5: the agent, its data model and a minimal controller.

Needs the ``usp`` extra (``pip install 'gatewayd[usp]'``: aiomqtt, paho-mqtt, protobuf).
Only :mod:`gatewayd.usp.config` and :mod:`gatewayd.usp.datamodel` are pure stdlib; the
daemon imports the rest only when the profile has a ``[usp]`` table.
"""

from __future__ import annotations

import importlib

from gatewayd.errors import GatewaydError


class UspUnavailableError(GatewaydError, ImportError):
    """The profile asks for USP but the ``usp`` extra is not installed."""


def require_usp() -> None:
    """Raise UspUnavailableError naming the fix when aiomqtt or protobuf is missing."""
    for module in ("aiomqtt", "google.protobuf"):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise UspUnavailableError(
                f"the profile has a [usp] table but {module} is not installed; install the "
                "extra (pip install 'gatewayd[usp]') or remove [usp] from the profile"
            ) from exc
