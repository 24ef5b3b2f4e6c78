"""What the mailbox says about its messages, as prompt ids (DESIGN.md §7.3).

The summary ("Vous avez deux nouveaux messages et un message sauvegardé") and each
message's envelope ("Message reçu le mardi premier décembre à une heure, du zéro six,
douze, ...") are composed from the prompts of ``audio/prompts.toml``: numbers, weekdays,
months and a few fragments, so any count, date and number is said with no WAV to make.
Pure: no I/O and no clock of its own (``now`` is an argument); the IVR plays the ids.

Choices, as a French or an English speaker says them:

- French uses the 24-hour clock: "à une heure", "à 22 heures", "à 22 heures 15" (no
  "zéro" for minutes 0), and "à minuit" / "à midi" for 0 h and 12 h ("minuit 15");
  hours and minutes are feminine ("une heure", "vingt et une heures", "trente et une").
- English uses the 12-hour clock: "at ten fifteen p.m.", "at one oh five a.m.", "at ten
  p.m.", "at midnight", "at noon", "twelve fifteen a.m."; the date is "Monday, November
  thirtieth".
- The year is said only when it is not the current year in the box's time zone
  (French "deux mille vingt-cinq", English "twenty twenty-five").
- The caller: a French number (10 digits starting with 0, or +33 / 0033 and 9 digits)
  in pairs in French ("zéro six, douze, trente-quatre") and digit by digit in English;
  any other number digit by digit, ``+`` said as the international prefix 00 and ``*``
  / ``#`` as their keys; withheld: "d'un numéro masqué"; unknown or unreadable: nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, tzinfo

from gatewayd.events import WITHHELD
from gatewayd.voicemail.config import LANGUAGES

# Numbers with their own prompt: digit_0 ... digit_9, num_10 ... num_99, and the French
# feminine ones of hours and minutes (num_1f "une", num_21f "vingt et une", ...).
_FEMININE = frozenset({1, 21, 31, 41, 51})
# Characters a caller ID may be written with besides the digits and keys.
_SEPARATORS = re.compile(r"[\s.\-()/]")
_CALLER = re.compile(r"[0-9+*#]+")
_FRENCH_INTERNATIONAL = re.compile(r"(?:\+33|0033)([1-9][0-9]{8})")
_FRENCH_NATIONAL = re.compile(r"0[0-9]{9}")
_KEYS = {"*": ("key_star",), "#": ("key_hash",), "+": ("digit_0", "digit_0")}


def _check_language(language: str) -> None:
    if language not in LANGUAGES:
        raise ValueError(
            f"no spoken messages in language {language!r}: expected one of "
            f"{', '.join(LANGUAGES)} ([voicemail] language)"
        )


def number(value: int, language: str, *, feminine: bool = False) -> tuple[str, ...]:
    """The prompt ids saying ``value`` (0-9999; beyond, digit by digit) in ``language``.

    ``feminine`` gives French "une" for units of one (une heure, vingt et une minutes).
    """
    _check_language(language)
    if value < 0:
        raise ValueError(f"cannot say a negative number ({value})")
    return tuple(_number(value, language, feminine))


def _number(value: int, language: str, feminine: bool) -> Iterator[str]:
    if value > 9999:
        yield from (f"digit_{d}" for d in str(value))
    elif value >= 1000:
        thousands, rest = divmod(value, 1000)
        if not (language == "fr" and thousands == 1):  # "mille", "one thousand"
            yield from _number(thousands, language, False)
        yield "num_thousand"
        if rest:
            if language == "en" and rest < 100:
                yield "word_and"  # one thousand and five
            yield from _number(rest, language, feminine)
    elif value >= 100:
        hundreds, rest = divmod(value, 100)
        if not (language == "fr" and hundreds == 1):  # "cent", "one hundred"
            yield f"digit_{hundreds}"
        # French writes "deux cents" but "deux cent un"; both sound alike.
        yield "num_hundreds" if language == "fr" and hundreds > 1 and not rest else "num_hundred"
        if rest:
            if language == "en":
                yield "word_and"  # two hundred and five
            yield from _number(rest, language, feminine)
    elif feminine and language == "fr" and value in _FEMININE:
        yield f"num_{value}f"
    elif value >= 10:
        yield f"num_{value}"
    else:
        yield f"digit_{value}"


def summary(new: int, saved: int, language: str) -> tuple[str, ...]:
    """What the mailbox says first: "Vous avez 2 nouveaux messages et 1 message sauvegardé."."""
    _check_language(language)
    if new < 0 or saved < 0:
        raise ValueError(f"message counts cannot be negative (new={new}, saved={saved})")
    if not new and not saved:
        return ("no_messages",)
    if new:
        said = ["summary_you_have", *_number(new, language, False)]
        said.append("summary_new_one" if new == 1 else "summary_new_many")
    else:
        said = ["summary_no_new"]
    if saved:
        said += ["word_and", *_number(saved, language, False)]
        said.append("summary_saved_one" if saved == 1 else "summary_saved_many")
    return tuple(said)


def no_more_new(language: str) -> tuple[str, ...]:
    """After the last new message: "Vous n'avez plus de nouveau message."."""
    _check_language(language)
    return ("no_more_new",)


def envelope(
    received: datetime, caller: str | None, tz: str, language: str, now: datetime
) -> tuple[str, ...]:
    """What is said before a message: when it came, in the box's zone ``tz``, and from whom.

    ``received`` and ``now`` are aware datetimes (UTC in the index); ``caller`` is the
    number, :data:`~gatewayd.events.WITHHELD`, or None when unknown. The ids after
    ``envelope_from`` say the caller's number: like a code's digits, they must not reach
    events or logs above debug level (mask them, as :class:`~gatewayd.events.SpokenDigit`).
    """
    _check_language(language)
    for name, moment in (("received", received), ("now", now)):
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"{name} must be an aware datetime (UTC), got {moment.isoformat()}")
    zone = _zone(tz)
    local = received.astimezone(zone)
    this_year = now.astimezone(zone).year
    said = ["envelope_received", f"weekday_{local.weekday()}"]
    if language == "fr":
        said += [f"day_{local.day}", f"month_{local.month}"]
    else:
        said += [f"month_{local.month}", f"day_{local.day}"]
    if local.year != this_year:
        said += _year(local.year, language)
    said.append("envelope_at")
    said += (
        _time_fr(local.hour, local.minute)
        if language == "fr"
        else _time_en(local.hour, local.minute)
    )
    said += _caller(caller, language)
    return tuple(said)


def _zone(tz: str) -> tzinfo:
    import zoneinfo  # when a date is said, not at every start (issue 13)

    try:
        return zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {tz!r}: set [voicemail.mailbox] timezone to an IANA name "
            'such as "Europe/Paris"'
        ) from None


def _year(year: int, language: str) -> list[str]:
    """French says a year as a number; English in pairs: twenty twenty-five, nineteen oh five."""
    century, rest = divmod(year, 100)
    if language == "fr" or not 1100 <= year <= 9999 or 2000 <= year <= 2009:
        return list(_number(year, language, False))  # two thousand and five
    if not rest:
        return [*_number(century, language, False), "num_hundred"]  # nineteen hundred
    if rest < 10:
        return [*_number(century, language, False), "zero_lead", f"digit_{rest}"]
    return [*_number(century, language, False), *_number(rest, language, False)]


def _time_fr(hour: int, minute: int) -> list[str]:
    """24-hour clock: une heure, vingt-deux heures quinze, minuit, midi trente."""
    if hour == 0:
        said = ["time_midnight"]
    elif hour == 12:
        said = ["time_noon"]
    else:
        said = [*_number(hour, "fr", True), "hour_one" if hour == 1 else "hour_many"]
    if minute:
        said += _number(minute, "fr", True)
    return said


def _time_en(hour: int, minute: int) -> list[str]:
    """12-hour clock: ten fifteen p.m., one oh five a.m., noon, midnight."""
    if not minute and hour in (0, 12):
        return ["time_midnight" if hour == 0 else "time_noon"]
    said = list(_number(hour % 12 or 12, "en", False))
    if minute:
        said += ["zero_lead", f"digit_{minute}"] if minute < 10 else _number(minute, "en", False)
    said.append("time_am" if hour < 12 else "time_pm")
    return said


def _caller(caller: str | None, language: str) -> list[str]:
    """From whom: a French number in pairs (French), other numbers digit by digit."""
    if caller is None:
        return []
    if caller == WITHHELD:
        return ["envelope_withheld"]
    digits = _SEPARATORS.sub("", caller)
    if not _CALLER.fullmatch(digits):
        return []  # not a number we can say: as if unknown
    international = _FRENCH_INTERNATIONAL.fullmatch(digits)
    if international:
        digits = "0" + international.group(1)  # as dialled from the box's line
    said = ["envelope_from"]
    if language == "fr" and _FRENCH_NATIONAL.fullmatch(digits):
        for start in range(0, 10, 2):
            tens, unit = digits[start], digits[start + 1]
            if tens == "0":
                said += ["zero_lead", f"digit_{unit}"]  # zéro six
            else:
                said.append(f"num_{tens}{unit}")  # douze, soixante-dix-huit
        return said
    for char in digits:
        said += _KEYS.get(char, (f"digit_{char}",))
    return said
