"""Listening to messages and changing the greeting (DESIGN.md §7.3, §7.4), told as a
subscriber's day: on the pure call flow, with a mailbox in memory and a fake clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from gatewayd.events import MessageAudio, PendingGreeting, RecordingEnded, StartRecording
from gatewayd.voicemail.config import VoicemailConfig
from gatewayd.voicemail.ivr import Ivr
from gatewayd.voicemail.policy import SecretCodeService
from tests.conftest import FAST_POLICY
from tests.harness import FakeClock, Phone

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@dataclass
class Stored:
    received: datetime
    caller: str | None
    seconds: float
    folder: str = "new"


@dataclass
class MemoryMailbox:
    """The mailbox as the call flow sees it, in memory."""

    messages: dict[str, Stored] = field(default_factory=dict)
    greeting: bytes | None = None
    pending: bytes | None = None
    lost: set[str] = field(default_factory=set)  # files that vanished since the summary

    def new_count(self) -> int:
        return self.counts()[0]

    def is_full(self) -> bool:
        return False

    def has_greeting(self) -> bool:
        return self.greeting is not None

    def counts(self) -> tuple[int, int]:
        new = sum(m.folder == "new" for m in self.messages.values())
        return new, len(self.messages) - new

    def playlist(self) -> list[str]:
        ordered = sorted(self.messages, key=lambda i: self.messages[i].received)
        return [i for i in ordered if self.messages[i].folder == "new"] + [
            i for i in ordered if self.messages[i].folder == "saved"
        ]

    def envelope(self, message_id: str) -> tuple[datetime, str | None, float]:
        m = self.messages[message_id]
        return m.received, m.caller, m.seconds

    def playable(self, message_id: str) -> bool:
        return message_id in self.messages and message_id not in self.lost

    def mark_saved(self, message_id: str) -> None:
        self.messages[message_id].folder = "saved"

    def delete(self, message_id: str) -> None:
        del self.messages[message_id]

    def keep_greeting(self) -> bool:
        self.greeting, self.pending = self.pending, None
        return self.greeting is not None

    def clear_greeting(self) -> None:
        self.greeting = None


@pytest.fixture
def mailbox() -> MemoryMailbox:
    return MemoryMailbox(
        {
            "m1": Stored(datetime(2026, 11, 30, 21, 15, tzinfo=UTC), "0612345678", 12.0),
            "m2": Stored(datetime(2026, 12, 1, 7, 0, tzinfo=UTC), None, 8.0),
        }
    )


@pytest.fixture
def phone(service: SecretCodeService, clock: FakeClock, mailbox: MemoryMailbox) -> Phone:
    config = VoicemailConfig(policy=FAST_POLICY)
    phone = Phone(service, config, clock)
    phone.ivr = Ivr(service, config, clock, mailbox, wall_clock=lambda: NOW)
    return phone


def played_messages(phone: Phone) -> list[str]:
    return [
        p.message_id
        for a in phone.actions
        if hasattr(a, "prompts")
        for p in a.prompts
        if isinstance(p, MessageAudio)
    ]


def test_two_new_messages_heard_deleted_and_kept_from_the_handset(
    phone: Phone, mailbox: MemoryMailbox
) -> None:
    phone.lift()
    assert phone.hear() == ["tone:mwi"]  # new messages wait: the stuttered dial tone
    phone.dial("3103")
    phone.hear()
    phone.press("1")
    heard = phone.hear()
    # "Vous avez deux nouveaux messages." then the first one's envelope, its audio, its menu.
    assert heard[:4] == ["summary_you_have", "digit_2", "summary_new_many", "envelope_received"]
    assert "weekday_0" in heard and "day_30" in heard and "month_11" in heard  # Paris time
    assert "caller_number" in heard  # spoken, but its digits are never shown
    assert "0612345678" not in str(phone.events) and "num_12" not in heard
    assert heard[-2:] == ["message_audio", "listen_menu"]
    assert played_messages(phone) == ["m1"]
    assert mailbox.messages["m1"].folder == "saved"  # heard to its end
    phone.press("2")  # delete it
    heard = phone.hear()
    assert heard[0] == "message_deleted" and heard[-2:] == ["message_audio", "listen_menu"]
    assert "m1" not in mailbox.messages
    assert played_messages(phone) == ["m1", "m2"]
    phone.press("3")  # keep the second
    assert phone.hear() == ["message_kept", "no_more_new", "main_menu"]
    phone.hang_up()
    assert list(mailbox.messages) == ["m2"] and mailbox.messages["m2"].folder == "saved"
    phone.lift()
    assert phone.hear() == ["tone:dial"]  # no new message left: the plain dial tone


def test_hash_skips_a_message_and_it_becomes_saved(phone: Phone, mailbox: MemoryMailbox) -> None:
    phone.auto_finish = False
    phone.lift()
    phone.dial("3103")
    phone.finish_prompt()
    phone.press("1")
    phone.finish_prompt()  # the summary and envelope; the audio now plays
    assert phone.ivr.state == "listening"
    phone.press("#")  # next, during the message
    assert mailbox.messages["m1"].folder == "saved"
    assert played_messages(phone) == ["m1"]
    phone.finish_prompt()  # m2's envelope
    assert played_messages(phone) == ["m1", "m2"]


def test_back_and_forward_5_s_within_a_message(
    phone: Phone, mailbox: MemoryMailbox, clock: FakeClock
) -> None:
    phone.auto_finish = False
    phone.lift()
    phone.dial("3103")
    phone.finish_prompt()
    phone.press("1")
    phone.finish_prompt()
    clock.advance(3.0)
    phone.press("6")  # forward 5 s from 3 s: 8 s
    last = [a for a in phone.actions if hasattr(a, "prompts")][-1]
    assert last.prompts == (MessageAudio("m1", 8.0),)
    clock.advance(1.0)
    phone.press("4")  # back 5 s from 9 s: 4 s
    last = [a for a in phone.actions if hasattr(a, "prompts")][-1]
    assert last.prompts == (MessageAudio("m1", 4.0),)
    phone.press("4")  # back again, 4 s -> 0 s (not before the start)
    last = [a for a in phone.actions if hasattr(a, "prompts")][-1]
    assert last.prompts == (MessageAudio("m1", 0.0),)


def test_a_message_that_vanished_is_skipped_with_an_apology(
    phone: Phone, mailbox: MemoryMailbox
) -> None:
    mailbox.lost.add("m1")
    phone.lift()
    phone.dial("3103")
    phone.hear()
    phone.press("1")
    heard = phone.hear()
    assert "message_unavailable" in heard
    assert played_messages(phone) == ["m2"]


def test_an_empty_mailbox_says_so_and_stays_in_the_main_menu(
    phone: Phone, mailbox: MemoryMailbox
) -> None:
    mailbox.messages.clear()
    phone.lift()
    assert phone.hear() == ["tone:dial"]
    phone.dial("3103")
    phone.hear()
    phone.press("1")
    assert phone.hear() == ["no_messages", "main_menu"]


def test_a_remote_caller_with_the_code_listens_too(phone: Phone, mailbox: MemoryMailbox) -> None:
    phone.service.set_code("4931", "handset")
    phone.call_for_code()
    phone.press("4931#")
    phone.hear()
    phone.press("1")
    assert played_messages(phone) == ["m1"]
    phone.press("2")
    assert "m1" not in mailbox.messages


def test_a_new_greeting_recorded_heard_back_and_kept(phone: Phone, mailbox: MemoryMailbox) -> None:
    phone.lift()
    phone.dial("3103")
    phone.press("3")  # personalise
    phone.press("1")  # votre annonce
    heard = phone.hear()
    assert heard[-3:] == ["greeting_is_standard", "greeting_standard", "greeting_menu_standard"]
    phone.press("1")  # record
    assert phone.hear() == ["greeting_record_prompt", "beep"]
    start = [a for a in phone.actions if isinstance(a, StartRecording)][-1]
    assert start.kind == "greeting" and start.party == "handset" and start.max_s == 60.0
    phone.press("#")
    mailbox.pending = b"\x01\x00" * 16000
    phone.send(RecordingEnded("key", kept=True, seconds=2.0))
    heard = phone.hear()
    assert heard == ["greeting_new", str(PendingGreeting()), "greeting_confirm_menu"]
    phone.press("1")  # keep it
    assert phone.hear()[:3] == ["greeting_saved", "greeting_yours", "greeting_own"]
    assert mailbox.greeting == b"\x01\x00" * 16000
    phone.press("3")  # back to the standard greeting
    assert phone.hear()[0] == "greeting_standard_restored"
    assert mailbox.greeting is None


def test_a_greeting_recording_ended_by_a_hang_up_is_not_kept(
    phone: Phone, mailbox: MemoryMailbox
) -> None:
    phone.lift()
    phone.dial("3103")
    phone.press("31")
    phone.press("1")
    phone.hang_up()
    phone.send(RecordingEnded("hangup", kept=False))
    assert mailbox.greeting is None
    assert phone.ivr.state == "idle"
