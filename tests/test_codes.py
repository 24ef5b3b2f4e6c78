"""Code rules (DESIGN.md §2.2): exactly four digits, trivial codes refused with their reason."""

from __future__ import annotations

import pytest

from gatewayd.voicemail.codes import Refusal, refusal_reason


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("123", Refusal.BAD_LENGTH),
        ("12345", Refusal.BAD_LENGTH),
        ("", Refusal.BAD_LENGTH),
        ("12*4", Refusal.NOT_DIGITS),
        ("0000", Refusal.SAME_DIGIT),
        ("7777", Refusal.SAME_DIGIT),
        ("1234", Refusal.RUN_UP),
        ("6789", Refusal.RUN_UP),
        ("8901", Refusal.RUN_UP),
        ("9012", Refusal.RUN_UP),
        ("9876", Refusal.RUN_DOWN),
        ("3210", Refusal.RUN_DOWN),
        ("1098", Refusal.RUN_DOWN),
        ("1212", Refusal.ABAB),
        ("9090", Refusal.ABAB),
        ("1122", Refusal.AABB),
        ("9955", Refusal.AABB),
        ("2580", Refusal.KEYPAD_COLUMN),
        ("0852", Refusal.KEYPAD_COLUMN),
        ("1984", Refusal.YEAR),
        ("2031", Refusal.YEAR),
    ],
)
def test_refused_codes_with_their_reason(code: str, reason: Refusal) -> None:
    assert refusal_reason(code) is reason


@pytest.mark.parametrize("code", ["4931", "5827", "0472", "1357", "3103", "8642", "1899"])
def test_ordinary_codes_are_accepted(code: str) -> None:
    assert refusal_reason(code) is None


def test_the_last_four_digits_of_the_line_number_are_refused_when_configured() -> None:
    assert refusal_reason("4931") is None
    assert refusal_reason("4931", line_number="+33 1 45 67 49 31") is Refusal.LINE_NUMBER
    assert refusal_reason("4932", line_number="0145674931") is None


def test_the_trivial_list_is_a_few_hundred_codes_out_of_ten_thousand() -> None:
    refused = [c for c in (f"{i:04d}" for i in range(10_000)) if refusal_reason(c)]
    assert 300 <= len(refused) <= 500
