"""gatewayd: the telephony daemon of a home gateway box (voicemail 3103 secret-code service)."""

__version__ = "0.1.0"
