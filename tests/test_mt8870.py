"""MT8870 DTMF decoder: the datasheet code table, and keys read off the fake GPIO wires."""

from __future__ import annotations

import logging

import pytest

from gatewayd.errors import ProfileError
from gatewayd.events import Digit
from gatewayd.gpio.fake import FakeGpio
from gatewayd.line.mt8870 import STD_GLITCH_MS, Mt8870Reader, decode_q

Q_PINS = (20, 21, 22, 23)  # Q1, Q2, Q3, Q4
STD = 24
MS = 1_000_000

#: Zarlink MT8870D datasheet, Table 1, written out as printed (Q4 Q3 Q2 Q1).
DATASHEET = {
    "1": "0001",
    "2": "0010",
    "3": "0011",
    "4": "0100",
    "5": "0101",
    "6": "0110",
    "7": "0111",
    "8": "1000",
    "9": "1001",
    "0": "1010",
    "*": "1011",
    "#": "1100",
    "A": "1101",
    "B": "1110",
    "C": "1111",
    "D": "0000",
}


@pytest.mark.parametrize(("key", "code"), sorted(DATASHEET.items()))
def test_decode_q_follows_the_datasheet_table(key: str, code: str) -> None:
    q4, q3, q2, q1 = (bit == "1" for bit in code)
    assert decode_q(q4, q3, q2, q1) == key


def test_all_16_codes_are_distinct_keys() -> None:
    codes = [tuple(bool(n >> bit & 1) for bit in (3, 2, 1, 0)) for n in range(16)]
    assert sorted(decode_q(*code) for code in codes) == sorted(DATASHEET)


class Keypad:
    """A handset keying tones into an MT8870 whose outputs are wired to the fake GPIO."""

    def __init__(
        self, allowed_keys: str = "0123456789*#", glitch_ms: float = STD_GLITCH_MS
    ) -> None:
        self.gpio = FakeGpio()
        self.received: list[tuple[int, Digit]] = []
        self.reader = Mt8870Reader(
            self.gpio,
            STD,
            Q_PINS,
            allowed_keys,
            on_digit=lambda digit: self.received.append((self.gpio.now_ns, digit)),
            glitch_ms=glitch_ms,
        )

    def set_q(self, key: str) -> None:
        q4, q3, q2, q1 = (bit == "1" for bit in DATASHEET[key])
        for pin, level in zip(Q_PINS, (q1, q2, q3, q4), strict=True):
            self.gpio.drive(pin, level)

    def tone(self, key: str, at_ms: float, duration_ms: float = 80.0) -> None:
        """The decoder sets Q1-Q4, raises StD 10 µs later, and drops it when the tone ends."""
        self.gpio.advance_to(round(at_ms * MS))
        self.set_q(key)
        self.gpio.drive(STD, True, at_ns=round(at_ms * MS) + 10_000)
        self.gpio.drive(STD, False, at_ns=round((at_ms + duration_ms) * MS))

    def keys(self) -> str:
        return "".join(digit.key for _, digit in self.received)


def test_keys_are_read_on_std_and_handed_on_when_the_tone_ends() -> None:
    pad = Keypad()
    for n, key in enumerate("3103#"):
        pad.tone(key, at_ms=100 + 200 * n)
    assert pad.keys() == "3103#"
    assert all(digit.party == "handset" for _, digit in pad.received)
    assert [t for t, _ in pad.received] == [(180 + 200 * n) * MS for n in range(5)]


def test_q_is_latched_on_the_rising_edge_of_std() -> None:
    pad = Keypad()
    pad.set_q("7")
    pad.gpio.drive(STD, True, at_ns=1 * MS)
    pad.set_q("9")  # the outputs move while StD is high (next tone decoding): too late
    pad.gpio.drive(STD, False, at_ns=60 * MS)
    assert pad.keys() == "7"


def test_an_std_glitch_is_ignored() -> None:
    pad = Keypad()
    pad.tone("5", at_ms=100, duration_ms=3)  # StD high for 3 ms: noise, not a tone
    pad.tone("6", at_ms=300)
    assert pad.keys() == "6"


def test_a_pulse_of_exactly_the_glitch_limit_counts() -> None:
    pad = Keypad(glitch_ms=5.0)
    pad.gpio.advance_to(100 * MS)
    pad.set_q("8")
    pad.gpio.drive(STD, True)
    pad.gpio.drive(STD, False, at_ns=105 * MS)
    assert pad.keys() == "8"


def test_keys_the_keypad_lacks_are_ignored_and_named_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pad = Keypad()
    with caplog.at_level(logging.INFO, logger="gatewayd.line.mt8870"):
        pad.tone("A", at_ms=100)
        pad.tone("D", at_ms=300)
        pad.tone("1", at_ms=500)
    assert pad.keys() == "1"
    assert "DTMF key A is not on this keypad" in caplog.text
    assert "DTMF key D is not on this keypad" in caplog.text


def test_a_digit_the_keypad_lacks_is_never_named_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pad = Keypad(allowed_keys="*#")
    with caplog.at_level(logging.DEBUG, logger="gatewayd.line.mt8870"):
        pad.tone("7", at_ms=100)
        pad.tone("4", at_ms=300, duration_ms=2)  # a glitch carrying a digit
    assert pad.keys() == ""
    assert "DTMF key ? is not on this keypad" in caplog.text
    assert not any(d in record.getMessage() for record in caplog.records for d in "74")


def test_a_b_c_d_pass_when_the_keypad_has_them() -> None:
    pad = Keypad(allowed_keys="0123456789*#ABCD")
    for n, key in enumerate("ABCD"):
        pad.tone(key, at_ms=100 + 200 * n)
    assert pad.keys() == "ABCD"


def test_a_tone_already_on_at_start_is_not_a_key() -> None:
    gpio = FakeGpio()
    gpio.drive(STD, True)  # the reader starts in the middle of a tone
    received: list[Digit] = []
    Mt8870Reader(gpio, STD, Q_PINS, on_digit=received.append)
    gpio.drive(STD, False, at_ns=50 * MS)
    assert received == []


def test_wiring_mistakes_are_profile_errors() -> None:
    with pytest.raises(ProfileError, match="4 Q pins"):
        Mt8870Reader(FakeGpio(), STD, Q_PINS[:3], on_digit=print)
    with pytest.raises(ProfileError, match="allowed_keys"):
        Mt8870Reader(FakeGpio(), STD, Q_PINS, "0123X", on_digit=print)
