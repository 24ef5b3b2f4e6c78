"""Voicemail settings: keys, timeouts, security policy and mailbox, with the DESIGN.md defaults.

Every number of DESIGN.md §1-§2 and §7 lives here, declared once with its range
and doc line (:mod:`gatewayd.schema`): profiles (``[voicemail]``), the README's
tables and tests all take them from these declarations.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from gatewayd.schema import (
    Bool,
    Int,
    PowerOfTwo,
    Real,
    Text,
    TimeZone,
    setting,
    subtable,
)

LANGUAGES: Final = ("fr", "en")
#: Tone plans gatewayd.tones provides (TonePlan.france()); add a name here with its plan.
TONE_PLANS: Final = ("fr",)

_KEY = Text(
    pattern=re.compile(r"[0-9*#]"), what="a single DTMF key, one of 0-9 * #", allow_empty=False
)
_SECONDS = Real(above=0, unit="s")
_COUNT = Int(minimum=1)
#: The most memory a code check may take: a quarter of the smallest supported board's
#: 512 MiB, leaving the rest to the system (DESIGN.md: the box also routes and records).
SCRYPT_MAX_BYTES = 128 * 2**20


@dataclass(frozen=True)
class Keys:
    """Menu keys (``[voicemail.keys]``); the operator's guide omits them, these are defaults."""

    main_listen: str = setting(_KEY, "main menu: listen to messages", "1")
    main_personalise: str = setting(_KEY, 'main menu: "Personnaliser votre messagerie"', "3")
    personalise_code: str = setting(_KEY, 'personalise menu: "Votre code secret"', "2")
    code_create: str = setting(_KEY, "secret-code menu, no code yet: create one", "1")
    code_modify: str = setting(_KEY, "secret-code menu, a code exists: modify it", "1")
    code_protection: str = setting(
        _KEY, 'secret-code menu: turn "code required from the fixed line" on/off', "2"
    )
    confirm_yes: str = setting(_KEY, "after the read-back: the code suits", "1")
    confirm_retry: str = setting(_KEY, "after the read-back: key another code", "2")
    back: str = setting(_KEY, "back to the previous menu", "*")
    end_entry: str = setting(_KEY, "ends a code entry", "#")
    personalise_greeting: str = setting(_KEY, 'personalise menu: "Votre annonce"', "1")
    listen_replay: str = setting(_KEY, "a message: hear it again", "1")
    listen_delete: str = setting(_KEY, "a message: delete it", "2")
    listen_keep: str = setting(_KEY, "a message: keep it (saved), next", "3")
    listen_next: str = setting(_KEY, "a message: next (a new one heard or skipped is saved)", "#")
    listen_back: str = setting(_KEY, "a message playing: back 5 s", "4")
    listen_forward: str = setting(_KEY, "a message playing: forward 5 s", "6")
    greeting_record: str = setting(_KEY, "greeting menu: record a new greeting", "1")
    greeting_default: str = setting(_KEY, "greeting menu: back to the standard greeting", "3")
    greeting_keep: str = setting(_KEY, "the new greeting played back: keep it", "1")
    greeting_retry: str = setting(_KEY, "the new greeting played back: record it again", "2")
    greeting_skip: str = setting(_KEY, "during the greeting: skip to the beep", "#")
    greeting_code: str = setting(_KEY, "during the greeting: ask for the code (remote access)", "*")
    end_recording: str = setting(_KEY, "while a message is recorded: end it", "#")

    def check(self, key: Callable[[str], str]) -> Iterator[tuple[str, str]]:
        """Keys a caller could not tell apart: two options of one menu (or an option and
        ``back``) on the same key, and entry keys that are digits or equal."""
        # flow.py imports Keys: the menus are read here, when a profile is checked.
        from gatewayd.voicemail.flow import MENUS, exclusive

        for menu in MENUS.values():
            options = [(option.key, option.when) for option in menu.options]
            if menu.announced:
                options.append(("back", None))
            for index, (field, when) in enumerate(options):
                for other, other_when in options[:index]:
                    same = field != other and getattr(self, field) == getattr(self, other)
                    if same and not exclusive(when, other_when):
                        yield (
                            field,
                            f"expected a key other than {key(other)} "
                            f"({getattr(self, other)!r}): both are keys of the {menu.state} menu",
                        )
        if self.back == self.end_entry:
            yield (
                "end_entry",
                f"expected a key other than {key('back')} ({self.back!r}): a code entry "
                "could not be ended",
            )
        for field in ("back", "end_entry"):
            if getattr(self, field).isdigit():
                yield field, f"expected * or #, got {getattr(self, field)!r}: codes are digits"


@dataclass(frozen=True)
class Timeouts:
    """Call-flow timeouts in seconds (``[voicemail.timeouts]``)."""

    first_digit: float = setting(_SECONDS, "off-hook with no key: give up after this", 15.0)
    inter_digit: float = setting(_SECONDS, "between two dialled digits", 5.0)
    menu: float = setting(_SECONDS, "a menu with no key is replayed after this", 8.0)
    menu_replays: int = setting(
        Int(minimum=0), "replays of a silent menu before the goodbye prompt", 2
    )
    entry_tries: int = setting(
        _COUNT, "invalid code entries (bad length, trivial) before going back to the menu", 3
    )
    code_check_max: float = setting(
        _SECONDS,
        "a call asked for the code ends this long after the request unless the code is "
        "right (keys every few seconds cannot hold the line)",
        90.0,
    )
    call_max: float = setting(
        _SECONDS,
        "any call of the service (menus, greeting, message) ends after this (2 h: a full "
        "mailbox, 30 messages of 3 min, can be heard in one call); a call the subscriber "
        "took on the handset is never cut",
        7200.0,
    )


@dataclass(frozen=True)
class Policy:
    """Security policy numbers (``[voicemail.policy]``), DESIGN.md §2.3-§2.4."""

    tries_per_call: int = setting(_COUNT, "wrong codes before the call is ended", 3)
    cooldown_every: int = setting(
        _COUNT, "every group of this many consecutive failures starts a cool-down", 3
    )
    cooldown_first_s: float = setting(
        _SECONDS, "first cool-down (15 min), doubled at each following one", 15 * 60.0
    )
    cooldown_cap_s: float = setting(
        _SECONDS, "longest cool-down (24 h); at least `cooldown_first_s`", 24 * 3600.0
    )
    lock_after: int = setting(_COUNT, "consecutive failures that lock access until a reset", 10)
    #: n=2**14, r=8 keeps a check well under 150 ms on a laptop core.
    scrypt_n: int = setting(
        PowerOfTwo(2**10), "scrypt cost N; slow boards lower it (see `bench/verify.py`)", 2**14
    )
    scrypt_r: int = setting(_COUNT, "scrypt block size r", 8)
    scrypt_p: int = setting(_COUNT, "scrypt parallelism p", 1)

    def check(self, key: Callable[[str], str]) -> Iterator[tuple[str, str]]:
        """The cap is not below the first cool-down; scrypt fits the board's memory."""
        if self.cooldown_cap_s < self.cooldown_first_s:
            yield (
                "cooldown_cap_s",
                f"expected a value >= {key('cooldown_first_s')} ({self.cooldown_first_s:g}), "
                f"got {self.cooldown_cap_s:g}",
            )
        memory = self.scrypt_memory_bytes()
        if memory > SCRYPT_MAX_BYTES:
            yield (
                "scrypt_n",
                f"scrypt would need {memory // 2**20} MiB per check ({key('scrypt_n')} x "
                f"{key('scrypt_r')} x 128 bytes); at most {SCRYPT_MAX_BYTES // 2**20} MiB fits "
                "the boards (every check would fail): lower scrypt_n or scrypt_r",
            )

    def scrypt_memory_bytes(self) -> int:
        """Memory one scrypt check needs (128 * r * n, and the p lanes' blocks)."""
        return 128 * self.scrypt_r * (self.scrypt_n + self.scrypt_p)

    def cooldown_seconds(self, failures: int) -> float:
        """Cool-down started by the given consecutive failure count (0 if none starts)."""
        if failures <= 0 or failures % self.cooldown_every != 0:
            return 0.0
        group = failures // self.cooldown_every
        return float(min(self.cooldown_first_s * 2.0 ** (group - 1), self.cooldown_cap_s))


@dataclass(frozen=True)
class Mailbox:
    """The answering machine (``[voicemail.mailbox]``), DESIGN.md §7."""

    answer_after_rings: int = setting(
        Int(minimum=1, maximum=15),
        "an unanswered call from the network is answered after this many rings "
        "(5: about 25 s on the French cadence); lifting the handset cancels it",
        5,
    )
    max_silence_s: float = setting(
        Real(above=0, at_most=60, unit="s"), "a recording ends after this much silence", 10.0
    )
    max_message_s: float = setting(
        Real(above=0, at_most=3600, unit="s"),
        'longest message; then "durée maximale atteinte" and the recording ends',
        180.0,
    )
    min_message_s: float = setting(
        Real(at_least=0, at_most=60, unit="s"),
        "shorter messages (after trimming silence) are discarded: a hang-up after the beep",
        2.0,
    )
    max_messages: int = setting(
        Int(minimum=1, maximum=1000), "messages kept; a full mailbox takes no more", 30
    )
    max_total_s: float = setting(
        Real(above=0, at_most=86400, unit="s"),
        "total recorded time kept (60 min); a full mailbox takes no more",
        3600.0,
    )
    greeting_max_s: float = setting(
        Real(above=0, at_most=600, unit="s"), "longest personal greeting", 60.0
    )
    timezone: str = setting(
        TimeZone(), "time zone of the dates and times spoken with each message", "Europe/Paris"
    )

    def check(self, key: Callable[[str], str]) -> Iterator[tuple[str, str]]:
        """A message can be kept: min < max <= the mailbox's total."""
        if self.min_message_s >= self.max_message_s:
            yield (
                "min_message_s",
                f"expected a value below {key('max_message_s')} ({self.max_message_s:g}), "
                f"got {self.min_message_s:g}",
            )
        if self.max_message_s > self.max_total_s:
            yield (
                "max_message_s",
                f"expected a value <= {key('max_total_s')} ({self.max_total_s:g}), "
                f"got {self.max_message_s:g}",
            )


@dataclass(frozen=True)
class VoicemailConfig:
    """Everything the IVR and the policy need from a profile's ``[voicemail]`` section."""

    access_number: str = setting(
        Text(
            pattern=re.compile(r"[0-9]+"),
            what='a string of digits 0-9, e.g. "3103"',
            allow_empty=False,
        ),
        "the number dialled from the handset to reach the service",
        "3103",
    )
    language: str = setting(Text(choices=LANGUAGES), "prompt language (`audio/<lang>/`)", "fr")
    line_number: str = setting(
        Text(pattern=re.compile(r"[0-9]{4,}"), what='"" or a string of at least 4 digits'),
        "the line's own number; its last 4 digits are refused as a code",
        "",
    )
    mailbox_exists: bool = setting(
        Bool(), "whether main-menu key `main_listen` (listen to messages) is offered", True
    )
    tone_plan: str = setting(
        Text(choices=TONE_PLANS),
        "the national tone plan (dial, busy, congestion, ringback); `[tones.NAME]` changes "
        "single tones",
        "fr",
    )
    keys: Keys = subtable(Keys)
    timeouts: Timeouts = subtable(Timeouts)
    policy: Policy = subtable(Policy)
    mailbox: Mailbox = subtable(Mailbox)
