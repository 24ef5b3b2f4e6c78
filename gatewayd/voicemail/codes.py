"""Code rules of DESIGN.md §2.2: exactly 4 digits, and the trivial codes refused with a reason.

The "previous code" rule needs the stored hash, so the policy applies it
(:meth:`gatewayd.voicemail.policy.SecretCodeService.refusal`); everything else is here.
"""

from __future__ import annotations

import enum
import itertools

CODE_LENGTH = 4

#: The only 4-key straight column of a phone keypad (2-5-8-0), both ways.
KEYPAD_COLUMNS = frozenset({"2580", "0852"})


class Refusal(enum.Enum):
    """Why a new code is refused; ``value`` is the reason given in logs and events."""

    BAD_LENGTH = "not exactly 4 digits"
    NOT_DIGITS = "only digits 0-9 are allowed"
    SAME_DIGIT = "all digits are the same"
    RUN_UP = "digits run upwards"
    RUN_DOWN = "digits run downwards"
    ABAB = "two digits repeated (ABAB)"
    AABB = "two pairs (AABB)"
    KEYPAD_COLUMN = "a straight keypad column"
    YEAR = "looks like a year (19xx/20xx)"
    PREVIOUS = "same as the previous code"
    LINE_NUMBER = "the last 4 digits of the line's number"

    @property
    def is_length(self) -> bool:
        """True for refusals that are about the shape of the entry, not about guessability."""
        return self in (Refusal.BAD_LENGTH, Refusal.NOT_DIGITS)


def _steps(code: str) -> set[int]:
    return {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(code)}


def refusal_reason(code: str, *, line_number: str = "") -> Refusal | None:
    """Return why ``code`` may not be chosen, or None if it is acceptable.

    ``line_number`` is the line's own number; its last 4 digits are refused when given.
    """
    if len(code) != CODE_LENGTH:
        return Refusal.BAD_LENGTH
    if not all(c in "0123456789" for c in code):
        return Refusal.NOT_DIGITS
    if len(set(code)) == 1:
        return Refusal.SAME_DIGIT
    steps = _steps(code)
    if steps == {1}:  # 1234, and wrapping 8901
        return Refusal.RUN_UP
    if steps == {9}:  # 9876, and wrapping 1098
        return Refusal.RUN_DOWN
    if code[0] == code[2] and code[1] == code[3]:
        return Refusal.ABAB
    if code[0] == code[1] and code[2] == code[3]:
        return Refusal.AABB
    if code in KEYPAD_COLUMNS:
        return Refusal.KEYPAD_COLUMN
    if code[:2] in ("19", "20"):
        return Refusal.YEAR
    line_digits = "".join(c for c in line_number if c.isdigit())
    if len(line_digits) >= CODE_LENGTH and code == line_digits[-CODE_LENGTH:]:
        return Refusal.LINE_NUMBER
    return None
