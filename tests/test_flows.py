"""The 3103 call flows of DESIGN.md §1, told as the operator's guide tells them."""

from __future__ import annotations

import pytest

from gatewayd.events import (
    Digit,
    Hangup,
    LineEvent,
    LineFault,
    OffHook,
    OnHook,
    Play,
    PlaybackDone,
    RemoteAnswered,
    RemoteHangup,
    StartRecording,
    StopAudio,
    StopRecording,
    TimerExpired,
)
from gatewayd.voicemail.config import VoicemailConfig
from gatewayd.voicemail.policy import SecretCodeService
from gatewayd.voicemail.store import Store
from tests.conftest import FAST_POLICY, make_service
from tests.harness import FakeClock, Phone

READBACK_4931 = [
    "code_you_entered",
    *("digit_4", "digit_9", "digit_3", "digit_1"),
    "code_confirm_menu",
]


def create_code(phone: Phone, code: str) -> None:
    """Lift, dial 3103, 3, 2, 1, key the code and #, 1 to confirm, hang up."""
    phone.lift()
    phone.dial("3103")
    phone.press("3")
    phone.press("2")
    phone.press("1")
    phone.press(code + "#")
    phone.press("1")
    phone.hang_up()
    phone.hear()  # forget what was heard while creating it


def test_create_a_code_from_the_handset(phone: Phone, service: SecretCodeService) -> None:
    phone.lift()
    assert phone.hear() == ["tone:dial"]
    phone.dial("3103")
    assert phone.hear() == ["main_menu"]
    phone.press("3")
    assert phone.hear() == ["personalise_menu"]
    phone.press("2")
    assert phone.hear() == ["code_none_yet", "code_menu_new"]
    phone.press("1")
    assert phone.hear() == ["code_enter_new"]
    phone.press("4931#")
    assert phone.hear() == READBACK_4931
    phone.press("1")
    assert phone.hear() == ["code_saved", "code_active", "code_menu_set"]
    phone.hang_up()
    assert service.status().code_set
    assert service.check("4931", "remote").ok
    assert phone.events_of("code") == [{"type": "code", "action": "created", "origin": "handset"}]


def test_the_first_key_stops_the_dial_tone(phone: Phone) -> None:
    phone.lift()
    out = phone.send(Digit("3"))
    assert StopAudio() in out


def test_a_code_survives_reopening_the_store(state_path, clock: FakeClock) -> None:
    with Store(state_path) as store:
        create_code(
            Phone(make_service(store, clock), VoicemailConfig(policy=FAST_POLICY), clock), "4931"
        )
    with Store(state_path) as store:  # a power cut and a reboot
        assert make_service(store, clock).check("4931", "remote").ok


def test_key_2_at_read_back_keys_another_code(phone: Phone, service: SecretCodeService) -> None:
    phone.lift()
    phone.dial("3103")
    phone.press("321")
    phone.press("4931#")
    phone.hear()
    phone.press("2")
    assert phone.hear() == ["code_enter_new"]
    phone.press("5827#")
    phone.press("1")
    assert service.check("5827", "remote").ok


def test_modify_the_code_without_the_old_one(phone: Phone, service: SecretCodeService) -> None:
    create_code(phone, "4931")
    phone.lift()
    phone.dial("3103")
    phone.press("32")
    assert phone.hear()[-1] == "code_menu_set"
    phone.press("1")
    assert phone.hear() == ["code_enter_new"]
    phone.press("5827#1")
    phone.hang_up()
    assert service.check("5827", "remote").ok
    assert phone.events_of("code")[-1]["action"] == "modified"


def test_a_hang_up_before_confirmation_changes_nothing(phone: Phone, service) -> None:
    create_code(phone, "4931")
    phone.lift()
    phone.dial("3103")
    phone.press("321")
    phone.press("5827#")
    phone.hang_up()  # heard the read-back, never pressed 1
    assert service.check("4931", "remote").ok


@pytest.mark.parametrize("entry", ["493#", "49315#", "#"])
def test_a_code_that_is_not_four_digits_is_refused(phone: Phone, service, entry: str) -> None:
    phone.lift()
    phone.dial("3103")
    phone.press("321")
    phone.hear()
    phone.press(entry)
    assert phone.hear() == ["code_bad_length", "code_enter_new"]
    assert not service.status().code_set


@pytest.mark.parametrize("trivial", ["0000", "1234", "8901", "1212", "1122", "2580", "1984"])
def test_a_trivial_code_is_refused_with_its_own_prompt(phone: Phone, service, trivial) -> None:
    phone.lift()
    phone.dial("3103")
    phone.press("321")
    phone.hear()
    phone.press(trivial + "#")
    assert phone.hear() == ["code_trivial", "code_enter_new"]
    assert not service.status().code_set


def test_the_previous_code_is_refused_as_the_current_one(phone: Phone, service) -> None:
    create_code(phone, "4931")
    phone.lift()
    phone.dial("3103")
    phone.press("321")
    phone.hear()
    phone.press("4931#")
    # Not "too easy to guess": the caller is told it is the code they have now.
    assert phone.hear() == ["code_is_current", "code_enter_new"]


def test_three_invalid_entries_go_back_to_the_code_menu(phone: Phone) -> None:
    phone.lift()
    phone.dial("3103")
    phone.press("321")
    phone.hear()
    phone.press("1#")
    phone.press("0000#")
    phone.press("12#")
    assert phone.hear()[-3:] == ["code_bad_length", "code_none_yet", "code_menu_new"]
    assert phone.ivr.state == "code_menu"


def test_star_goes_back_one_menu_everywhere(phone: Phone) -> None:
    phone.lift()
    phone.dial("3103")
    phone.press("321")
    phone.press("49*")  # abandon the entry
    assert phone.ivr.state == "code_menu"
    phone.press("*")
    assert phone.ivr.state == "personalise_menu"
    phone.press("*")
    assert phone.ivr.state == "main_menu"


def test_an_invalid_key_plays_an_error_and_replays_the_menu(phone: Phone) -> None:
    phone.lift()
    phone.dial("3103")
    phone.hear()
    phone.press("7")
    assert phone.hear() == ["invalid_key", "main_menu"]


def test_a_silent_menu_is_replayed_twice_then_goodbye(phone: Phone) -> None:
    phone.lift()
    phone.dial("3103")
    phone.hear()
    phone.wait(8)
    assert phone.hear() == ["main_menu"]
    phone.wait(8)
    assert phone.hear() == ["main_menu"]
    phone.wait(7.9)
    assert phone.hear() == []
    phone.wait(0.1)
    assert phone.hear() == ["goodbye", "tone:busy"]


def test_a_key_during_a_prompt_stops_it_and_is_acted_on(phone: Phone) -> None:
    phone.auto_finish = False
    phone.lift()
    phone.dial("3103")
    assert isinstance(phone.playing, Play)  # the main menu is playing
    out = phone.send(Digit("3"))
    assert out.index(StopAudio()) < next(i for i, a in enumerate(out) if isinstance(a, Play))
    assert phone.ivr.state == "personalise_menu"


def test_dial_timeouts_give_congestion(phone: Phone) -> None:
    phone.lift()
    phone.hear()
    phone.wait(14.9)
    assert phone.hear() == []
    phone.wait(0.1)
    assert phone.hear() == ["tone:congestion"]
    phone.hang_up()
    phone.lift()
    phone.dial("31")
    phone.wait(5)
    assert phone.hear()[-1] == "tone:congestion"


def test_a_number_we_do_not_serve_gets_congestion(phone: Phone) -> None:
    phone.lift()
    phone.dial("0142")
    assert phone.hear() == ["tone:dial", "tone:congestion"]
    phone.press("3103")
    assert phone.hear() == []  # dead line until on-hook


def test_protection_on_asks_the_code_from_the_fixed_line(phone: Phone, service) -> None:
    create_code(phone, "4931")
    phone.lift()
    phone.dial("3103")
    phone.press("322")
    assert phone.hear()[-3:] == ["protection_on", "code_active", "code_menu_set"]
    phone.hang_up()
    phone.lift()
    phone.dial("3103")
    assert phone.hear()[-1] == "code_enter"
    phone.press("4931#")
    assert phone.hear() == ["main_menu"]
    phone.press("322")  # and off again
    assert "protection_off" in phone.hear()
    assert not service.status().protection


def test_remote_access_with_the_right_code(phone: Phone, service) -> None:
    create_code(phone, "4931")
    phone.call_for_code()
    assert phone.hear() == ["code_enter"]
    phone.press("4931#")
    assert phone.hear() == ["main_menu"]
    assert phone.events_of("auth")[-1]["result"] == "ok"


def test_remote_caller_can_never_create_or_modify(phone: Phone, service) -> None:
    create_code(phone, "4931")
    phone.call_for_code()
    phone.press("4931#")
    phone.hear()
    phone.press("3")
    phone.press("2")
    assert phone.hear() == ["personalise_menu", "code_only_fixed_line", "personalise_menu"]
    assert phone.ivr.state == "personalise_menu"


def test_remote_call_with_no_code_is_told_to_create_one_first(phone: Phone) -> None:
    phone.call_for_code()
    # DESIGN §1.3: a code must first be created from the fixed line; then on with the
    # greeting: the beep, and the caller may leave a message.
    assert phone.hear() == ["code_create_first", "beep"]
    assert any(isinstance(a, StartRecording) for a in phone.actions)
    assert not phone.hung_up


def test_three_wrong_codes_end_the_remote_call(phone: Phone, service) -> None:
    create_code(phone, "4931")
    phone.call_for_code()
    phone.hear()
    phone.press("1111#")
    assert phone.hear() == ["code_wrong", "code_enter"]
    phone.press("2222#")
    phone.hear()
    phone.press("3333#")
    assert phone.hear() == ["code_too_many_failures"]
    assert phone.hung_up
    assert [e["failures"] for e in phone.events_of("auth")] == [1, 2, 3]
    assert phone.events_of("cooldown") == [{"type": "cooldown", "seconds": 900}]


def test_cooldown_then_the_right_code_opens_access(phone: Phone, service, clock) -> None:
    create_code(phone, "4931")
    phone.call_for_code()
    phone.press("1111#2222#3333#")
    phone.hung_up = False
    phone.call_for_code()  # during the cool-down: not even asked
    assert phone.hear()[-1] == "code_too_many_failures"
    assert phone.hung_up
    clock.advance(15 * 60)
    phone.call_for_code()
    phone.press("4931#")
    assert phone.hear()[-1] == "main_menu"
    assert service.status().failures == 0


def test_ten_wrong_codes_lock_until_reset(phone: Phone, service, clock) -> None:
    create_code(phone, "4931")
    for _ in range(3):
        phone.call_for_code()
        phone.press("1111#2222#3333#")
        clock.advance(25 * 3600)
    phone.call_for_code()
    phone.hear()
    phone.press("4444#")
    assert phone.hear() == ["code_wrong", "code_locked"]
    assert service.status().locked
    phone.call_for_code()
    assert phone.hear() == ["code_locked"]
    service.reset("ctl")
    assert not service.status().code_set and service.status().failures == 0
    phone.call_for_code()
    assert phone.hear() == ["code_create_first", "beep"]  # and the caller may leave a message


def test_main_menu_1_says_there_are_no_messages(phone: Phone) -> None:
    phone.lift()
    phone.dial("3103")
    phone.hear()
    phone.press("1")
    assert phone.hear() == ["no_messages", "main_menu"]


@pytest.mark.parametrize(
    "events",
    [
        ["offhook", "offhook"],
        ["key", "onhook", "key"],
        ["onhook", "onhook"],
        ["remote_hangup", "key"],
        ["timer", "done"],
    ],
)
def test_events_in_impossible_orders_change_nothing(phone: Phone, service, events) -> None:
    make: dict[str, LineEvent] = {
        "offhook": OffHook(),
        "onhook": OnHook(),
        "key": Digit("5"),
        "remote_hangup": RemoteHangup(),
        "timer": TimerExpired("menu"),
        "done": PlaybackDone(99),
    }
    before = service.status()
    for name in events:
        phone.send(make[name])
    assert service.status() == before
    assert phone.ivr.state in ("idle", "dialing")
    assert Hangup() not in phone.actions


def test_keys_in_code_entry_are_masked_in_events(phone: Phone) -> None:
    create_code(phone, "4931")
    keys = [e["key"] for e in phone.events_of("key")]
    assert keys[:7] == ["3", "1", "0", "3", "3", "2", "1"]
    assert keys[7:12] == ["masked"] * 5
    assert "4931" not in repr(phone.actions)


def test_a_remote_call_during_a_handset_call_is_hung_up(phone: Phone) -> None:
    phone.lift()
    out = phone.send(RemoteAnswered())
    assert out == [Hangup()]
    assert phone.ivr.party == "handset"


@pytest.mark.parametrize("entry", ["12A4#", "D931#", "4C#"])
def test_a_non_digit_key_in_code_entry_is_a_bad_entry(phone: Phone, service, entry) -> None:
    phone.lift()
    phone.dial("3103")
    phone.press("321")
    phone.hear()
    phone.press(entry)
    assert phone.hear() == ["code_bad_length", "code_enter_new"]
    assert not service.status().code_set
    phone.press("4931#1")  # the next entry starts clean
    assert service.status().code_set


def test_a_wrong_length_code_check_is_not_counted(phone: Phone, service) -> None:
    create_code(phone, "4931")
    phone.call_for_code()
    phone.hear()
    phone.press("493#")
    assert phone.hear() == ["code_bad_length", "code_enter"]
    assert service.status().failures == 0
    phone.press("49311#")
    phone.press("4#")
    assert phone.hear()[-2:] == ["code_bad_length", "goodbye"]
    assert phone.hung_up and service.status().failures == 0


def test_a_trunk_that_vanishes_mid_recording_keeps_what_was_said(phone: Phone) -> None:
    """The modem is unplugged while a caller speaks: the recording is stopped, not dropped."""
    phone.call_in()  # greeting, beep, recording
    assert any(isinstance(a, StartRecording) for a in phone.actions)
    out = phone.send(LineFault("modem on /dev/ttyACM0 lost"))
    assert StopRecording("hangup") in out  # kept if long enough, as on a hang-up
    assert phone.ivr.state == "idle"


def test_keep_then_on_hook_before_the_hash_is_done_still_stores_the_code(
    phone: Phone, service: SecretCodeService
) -> None:
    phone.lift()
    phone.dial("3103")
    phone.press("321")
    phone.press("4931#")
    phone.hold_checks = True
    phone.press("1")  # keep: the hash goes to the worker
    assert phone.held and not service.status().code_set
    phone.press("2")  # "key another code" while it hashes: ignored
    phone.hang_up()
    phone.release_checks()
    assert service.status().code_set  # "keep" was pressed: the code is stored
    assert phone.events_of("code")[-1]["action"] == "created"
    assert phone.ivr.state == "idle"


def test_on_hook_while_the_new_code_is_compared_with_the_current_one_changes_nothing(
    phone: Phone, service: SecretCodeService
) -> None:
    create_code(phone, "4931")
    phone.lift()
    phone.dial("3103")
    phone.press("321")
    phone.hold_checks = True
    phone.press("8362#")  # compared with the current code in the worker
    assert phone.held
    phone.hang_up()
    phone.release_checks()
    assert service.check("4931", "remote").ok  # still the old code
    assert [e["action"] for e in phone.events_of("code")] == ["created"]
