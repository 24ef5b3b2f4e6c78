"""Voicemail settings: keys, timeouts and security policy, with the DESIGN.md defaults.

Every number of DESIGN.md §1-§2 lives here, so profiles (``[voicemail]``) and
tests can change them in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Keys:
    """Menu keys (``[voicemail.keys]``); the operator's guide omits them, these are defaults."""

    main_listen: str = "1"
    main_personalise: str = "3"
    personalise_code: str = "2"
    code_create: str = "1"
    code_modify: str = "1"
    code_protection: str = "2"
    confirm_yes: str = "1"
    confirm_retry: str = "2"
    back: str = "*"
    end_entry: str = "#"
    #: During the greeting: skip to the beep, or ask for the code (DESIGN §7.1).
    greeting_skip: str = "#"
    greeting_code: str = "*"
    #: While recording a message: end it.
    end_recording: str = "#"


@dataclass(frozen=True)
class Timeouts:
    """Call-flow timeouts in seconds (``[voicemail.timeouts]``)."""

    first_digit: float = 15.0
    inter_digit: float = 5.0
    menu: float = 8.0
    #: A menu with no key is replayed this many times, then the call ends with ``goodbye``.
    menu_replays: int = 2
    #: Invalid code entries (bad length, trivial) before going back to the menu.
    entry_tries: int = 3


@dataclass(frozen=True)
class Policy:
    """Security policy numbers (``[voicemail.policy]``), DESIGN.md §2.3-§2.4."""

    tries_per_call: int = 3
    #: Every group of this many consecutive failures starts a cool-down.
    cooldown_every: int = 3
    cooldown_first_s: float = 15 * 60.0
    cooldown_cap_s: float = 24 * 3600.0
    lock_after: int = 10
    #: scrypt cost: n=2**14, r=8 keeps a check well under 150 ms on a laptop core;
    #: slower boards lower ``scrypt_n`` in their profile (see bench/verify.py).
    scrypt_n: int = 2**14
    scrypt_r: int = 8
    scrypt_p: int = 1

    def cooldown_seconds(self, failures: int) -> float:
        """Cool-down started by the given consecutive failure count (0 if none starts)."""
        if failures <= 0 or failures % self.cooldown_every != 0:
            return 0.0
        group = failures // self.cooldown_every
        return float(min(self.cooldown_first_s * 2.0 ** (group - 1), self.cooldown_cap_s))


@dataclass(frozen=True)
class Mailbox:
    """The answering machine (``[voicemail.mailbox]``), DESIGN.md §7."""

    #: Rings before the box answers an unanswered trunk call (about 25 s on the French cadence).
    answer_after_rings: int = 5
    #: Continuous silence that ends a message.
    max_silence_s: float = 10.0
    max_message_s: float = 180.0
    #: Messages shorter than this after trimming are discarded (a hang-up after the beep).
    min_message_s: float = 2.0
    max_messages: int = 30
    max_total_s: float = 3600.0
    greeting_max_s: float = 60.0
    timezone: str = "Europe/Paris"


@dataclass(frozen=True)
class VoicemailConfig:
    """Everything the IVR and the policy need from a profile's ``[voicemail]`` section."""

    access_number: str = "3103"
    language: str = "fr"
    #: The line's own number; its last 4 digits are refused as a code when given.
    line_number: str = ""
    #: Whether key ``1`` of the main menu reaches a mailbox (listen to messages).
    mailbox_exists: bool = True
    keys: Keys = field(default_factory=Keys)
    mailbox: Mailbox = field(default_factory=Mailbox)
    timeouts: Timeouts = field(default_factory=Timeouts)
    policy: Policy = field(default_factory=Policy)
