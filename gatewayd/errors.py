"""One exception root for gatewayd; specific errors also inherit the matching builtin."""

from __future__ import annotations


class GatewaydError(Exception):
    """Root of every error gatewayd raises on purpose."""


class ProfileError(GatewaydError, ValueError):
    """A hardware profile is malformed: the message names the file, the key and the fix."""


class StateFileError(GatewaydError, OSError):
    """The state file cannot be read safely; the daemon refuses to start (fails closed)."""


class PepperError(GatewaydError, OSError):
    """The per-box pepper is missing or unusable; the box needs provisioning."""


class PolicyError(GatewaydError, RuntimeError):
    """An operation the security policy refuses (e.g. setting a code from a remote call)."""


class DeviceError(GatewaydError, OSError):
    """A device (serial port, ALSA PCM, GPIO line) cannot be used; says which and why."""
