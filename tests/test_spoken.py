"""What the mailbox says about its messages (DESIGN.md §7.3): the summary and each
message's envelope, as prompt ids that the shipped catalogue knows and that read, once
their texts are joined, as a French (or English) speaker says them."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest

from gatewayd.events import WITHHELD
from gatewayd.prompts import PromptCatalogue, check_wav, default_audio_dir
from gatewayd.voicemail.spoken import envelope, no_more_new, number, summary

PARIS = "Europe/Paris"
#: "Now" for every envelope: Tuesday 1 December 2026, 04:39 in Paris.
NOW = datetime(2026, 12, 1, 3, 39, tzinfo=UTC)
FRENCH_MOBILE = "0612345678"


@cache
def catalogue(language: str) -> PromptCatalogue:
    return PromptCatalogue.load(default_audio_dir(), language)


def written(ids: Iterable[str], language: str) -> str:
    """The prompts' texts joined: what the line says, written (punctuation aside)."""
    ids = tuple(ids)
    unknown = [i for i in ids if not catalogue(language).knows(i)]
    assert not unknown, f"not in the {language} catalogue: {unknown}"
    text = " ".join(catalogue(language).text(i) for i in ids)
    return _plain(text)


def _plain(sentence: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[,.]", " ", sentence)).strip()


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def paris(
    received: datetime, caller: str | None = None, language: str = "fr", now: datetime = NOW
) -> tuple[str, ...]:
    return envelope(received, caller, PARIS, language, now)


# --- the envelope as prompt ids -------------------------------------------------


def test_envelope_of_the_design_example_in_prompt_ids() -> None:
    # 21:15 UTC is 22:15 in Paris (winter, UTC+1).
    assert paris(utc(2026, 11, 30, 21, 15), FRENCH_MOBILE) == (
        "envelope_received",
        "weekday_0",
        "day_30",
        "month_11",
        "envelope_at",
        "num_22",
        "hour_many",
        "num_15",
        "envelope_from",
        "zero_lead",
        "digit_6",
        "num_12",
        "num_34",
        "num_56",
        "num_78",
    )
    assert paris(utc(2026, 11, 30, 21, 15), FRENCH_MOBILE, "en") == (
        "envelope_received",
        "weekday_0",
        "month_11",
        "day_30",
        "envelope_at",
        "num_10",
        "num_15",
        "time_pm",
        "envelope_from",
        *(f"digit_{d}" for d in FRENCH_MOBILE),
    )


@pytest.mark.parametrize(
    ("received", "french", "english"),
    [
        pytest.param(
            utc(2026, 12, 1, 0, 0),
            ("weekday_1", "day_1", "month_12", "envelope_at", "num_1f", "hour_one"),
            ("weekday_1", "month_12", "day_1", "envelope_at", "digit_1", "time_am"),
            id="first-of-the-month-at-1h",
        ),
        pytest.param(
            utc(2026, 11, 28, 23, 0),
            ("weekday_6", "day_29", "month_11", "envelope_at", "time_midnight"),
            ("weekday_6", "month_11", "day_29", "envelope_at", "time_midnight"),
            id="midnight",
        ),
        pytest.param(
            utc(2026, 11, 27, 11, 0),
            ("weekday_4", "day_27", "month_11", "envelope_at", "time_noon"),
            ("weekday_4", "month_11", "day_27", "envelope_at", "time_noon"),
            id="noon",
        ),
        pytest.param(
            utc(2026, 11, 30, 21, 0),
            ("weekday_0", "day_30", "month_11", "envelope_at", "num_22", "hour_many"),
            ("weekday_0", "month_11", "day_30", "envelope_at", "num_10", "time_pm"),
            id="minutes-0",
        ),
    ],
)
def test_envelope_dates_in_prompt_ids(
    received: datetime, french: tuple[str, ...], english: tuple[str, ...]
) -> None:
    assert paris(received) == ("envelope_received", *french)
    assert paris(received, language="en") == ("envelope_received", *english)


# --- the envelope as it is heard -------------------------------------------------

ENVELOPES = [
    pytest.param(
        utc(2026, 11, 30, 21, 15),
        FRENCH_MOBILE,
        "Message reçu le lundi 30 novembre à 22 heures 15, du 06 12 34 56 78",
        "Message reçu le lundi trente novembre à vingt-deux heures quinze, "
        "du zéro six, douze, trente-quatre, cinquante-six, soixante-dix-huit",
        "Message received on Monday, November thirtieth at ten fifteen p.m., "
        "from zero six one two three four five six seven eight",
        id="22h15-french-mobile",
    ),
    pytest.param(
        utc(2026, 12, 1, 0, 0),
        None,
        "le premier décembre à une heure, caller unknown",
        "Message reçu le mardi premier décembre à une heure",
        "Message received on Tuesday, December first at one a.m.",
        id="1st-at-1h-unknown-caller",
    ),
    pytest.param(
        utc(2026, 11, 28, 23, 0),
        WITHHELD,
        "midnight, the day after in Paris than in UTC, withheld number",
        "Message reçu le dimanche vingt-neuf novembre à minuit, d'un numéro masqué",
        "Message received on Sunday, November twenty-ninth at midnight, from a withheld number",
        id="midnight-withheld",
    ),
    pytest.param(
        utc(2026, 11, 28, 23, 5),
        None,
        "five past midnight",
        "Message reçu le dimanche vingt-neuf novembre à minuit cinq",
        "Message received on Sunday, November twenty-ninth at twelve oh five a.m.",
        id="00h05",
    ),
    pytest.param(
        utc(2026, 11, 27, 11, 0),
        "3103",
        "noon, a short number said digit by digit",
        "Message reçu le vendredi vingt-sept novembre à midi, du trois un zéro trois",
        "Message received on Friday, November twenty-seventh at noon, from three one zero three",
        id="noon-short-number",
    ),
    pytest.param(
        utc(2026, 11, 27, 11, 30),
        None,
        "half past noon",
        "Message reçu le vendredi vingt-sept novembre à midi trente",
        "Message received on Friday, November twenty-seventh at twelve thirty p.m.",
        id="12h30",
    ),
    pytest.param(
        utc(2026, 11, 30, 21, 0),
        None,
        "minutes 0: no zéro",
        "Message reçu le lundi trente novembre à vingt-deux heures",
        "Message received on Monday, November thirtieth at ten p.m.",
        id="minutes-0",
    ),
    pytest.param(
        utc(2026, 11, 30, 20, 1),
        None,
        "feminine hours and minutes",
        "Message reçu le lundi trente novembre à vingt et une heures une",
        "Message received on Monday, November thirtieth at nine oh one p.m.",
        id="21h01",
    ),
    pytest.param(
        utc(2026, 11, 30, 20, 31),
        None,
        "feminine minutes",
        "Message reçu le lundi trente novembre à vingt et une heures trente et une",
        "Message received on Monday, November thirtieth at nine thirty-one p.m.",
        id="21h31",
    ),
    pytest.param(
        utc(2025, 12, 31, 22, 59),
        "+33 6 12 34 56 78",
        "last year: the year is said; +33 is a French number",
        "Message reçu le mercredi trente et un décembre deux mille vingt-cinq "
        "à vingt-trois heures cinquante-neuf, du zéro six, douze, trente-quatre, "
        "cinquante-six, soixante-dix-huit",
        "Message received on Wednesday, December thirty-first, twenty twenty-five, "
        "at eleven fifty-nine p.m., from zero six one two three four five six seven eight",
        id="previous-year",
    ),
    pytest.param(
        utc(2025, 12, 31, 23, 30),
        "0100203005",
        "still 2025 in UTC but 2026 in Paris: no year; pairs with zeros",
        "Message reçu le jeudi premier janvier à minuit trente, "
        "du zéro un, zéro zéro, vingt, trente, zéro cinq",
        "Message received on Thursday, January first at twelve thirty a.m., "
        "from zero one zero zero two zero three zero zero five",
        id="new-year-in-paris",
    ),
    pytest.param(
        utc(2026, 3, 29, 0, 30),
        "+447700900123",
        "before the spring DST change: UTC+1; a foreign number digit by digit, + is 00",
        "Message reçu le dimanche vingt-neuf mars à une heure trente, "
        "du zéro zéro quatre quatre sept sept zéro zéro neuf zéro zéro un deux trois",
        "Message received on Sunday, March twenty-ninth at one thirty a.m., "
        "from zero zero four four seven seven zero zero nine zero zero one two three",
        id="dst-spring-before",
    ),
    pytest.param(
        utc(2026, 3, 29, 1, 30),
        "*31#",
        "after the spring DST change: UTC+2 (2 h never happens that night); keys",
        "Message reçu le dimanche vingt-neuf mars à trois heures trente, du étoile trois un dièse",
        "Message received on Sunday, March twenty-ninth at three thirty a.m., "
        "from star three one hash",
        id="dst-spring-after",
    ),
    pytest.param(
        utc(2026, 10, 25, 0, 30),
        None,
        "autumn DST change, first 2:30 (UTC+2)",
        "Message reçu le dimanche vingt-cinq octobre à deux heures trente",
        "Message received on Sunday, October twenty-fifth at two thirty a.m.",
        id="dst-autumn-first",
    ),
    pytest.param(
        utc(2026, 10, 25, 1, 30),
        None,
        "autumn DST change, second 2:30 (UTC+1)",
        "Message reçu le dimanche vingt-cinq octobre à deux heures trente",
        "Message received on Sunday, October twenty-fifth at two thirty a.m.",
        id="dst-autumn-second",
    ),
    pytest.param(
        utc(2026, 8, 14, 23, 45),
        "not a number",
        "summer (UTC+2) across midnight; an unreadable caller ID is said as unknown",
        "Message reçu le samedi quinze août à une heure quarante-cinq",
        "Message received on Saturday, August fifteenth at one forty-five a.m.",
        id="summer-unreadable-caller",
    ),
]


@pytest.mark.parametrize(("received", "caller", "what", "french", "english"), ENVELOPES)
def test_envelope_reads_as_spoken(
    received: datetime, caller: str | None, what: str, french: str, english: str
) -> None:
    assert written(paris(received, caller), "fr") == _plain(french), what
    assert written(paris(received, caller, "en"), "en") == _plain(english), what


def test_year_is_said_when_now_is_in_another_year_in_the_box_zone() -> None:
    received = utc(2026, 12, 31, 21, 0)  # 22:00 on 31 December in Paris
    new_year_in_paris = utc(2026, 12, 31, 23, 30)  # still 2026 in UTC
    assert written(paris(received, now=new_year_in_paris), "fr") == _plain(
        "Message reçu le jeudi trente et un décembre deux mille vingt-six à vingt-deux heures"
    )
    assert "num_26" not in paris(received, now=utc(2026, 12, 31, 22, 30))


def test_the_same_instant_in_another_zone() -> None:
    received = utc(2026, 12, 1, 2, 15)
    assert written(envelope(received, None, "America/New_York", "en", NOW), "en") == (
        "Message received on Monday November thirtieth at nine fifteen p m"
    )
    assert written(envelope(received, None, "Asia/Tokyo", "fr", NOW), "fr") == (
        "Message reçu le mardi premier décembre à onze heures quinze"
    )


@pytest.mark.parametrize(
    ("year", "english"),
    [
        (2025, "twenty twenty-five"),
        (2010, "twenty ten"),
        (2005, "two thousand and five"),
        (2000, "two thousand"),
        (1999, "nineteen ninety-nine"),
        (1970, "nineteen seventy"),
        (1905, "nineteen oh five"),
        (1900, "nineteen hundred"),
    ],
)
def test_english_years(year: int, english: str) -> None:
    # 1 January at noon UTC is 1 January in Paris whatever the year.
    said = written(paris(utc(year, 1, 1, 12, 0), language="en"), "en")
    assert f" January first {english} at " in said, said


def test_a_clock_never_set_still_gives_a_french_year() -> None:
    """A box whose clock started at 1970 stamped a message: said, not refused."""
    assert written(paris(utc(1970, 1, 1, 0, 0)), "fr") == _plain(
        "Message reçu le jeudi premier janvier mille neuf cent soixante-dix à une heure"
    )


def test_every_minute_of_a_dst_day_is_said_in_french_grammar() -> None:
    """All 1440 minutes (and the DST hour) give known prompts and well-formed French."""
    start = utc(2026, 3, 28, 23, 0)  # midnight in Paris, the night clocks go forward
    for minute in range(24 * 60):
        received = start + timedelta(minutes=minute)
        hour = received.astimezone(ZoneInfo(PARIS)).hour
        said = written(paris(received), "fr")
        time = said.split(" à ", 1)[1]
        assert not re.search(r"\bun heures?\b|\bheures? zéro|\bzéro heure", time), said
        assert time.startswith("une heure") == (hour == 1), said
        assert time.startswith("vingt et une heures") == (hour == 21), said
        assert time.startswith("minuit") == (hour == 0), said
        assert time.startswith("midi") == (hour == 12), said
        english = written(paris(received, language="en"), "en")
        assert re.search(r" at (midnight|noon|[a-z -]+ [ap] m)$", english), english


def test_every_day_of_a_leap_year_is_known() -> None:
    day = utc(2024, 1, 1, 12, 0)
    seen: set[str] = set()
    while day.year == 2024:
        for language in ("fr", "en"):
            seen.update(paris(day, FRENCH_MOBILE, language))
        day += timedelta(days=1)
    assert {f"day_{d}" for d in range(1, 32)} <= seen
    assert {f"month_{m}" for m in range(1, 13)} | {f"weekday_{w}" for w in range(7)} <= seen
    for language in ("fr", "en"):
        assert all(catalogue(language).knows(i) for i in seen)


# --- the summary -----------------------------------------------------------------

NEW_FR = {
    1: "un nouveau message",
    2: "deux nouveaux messages",
    21: "vingt et un nouveaux messages",
    30: "trente nouveaux messages",
}
SAVED_FR = {1: "un message sauvegardé", 2: "deux messages sauvegardés"}
NEW_EN = {
    1: "one new message",
    2: "two new messages",
    21: "twenty-one new messages",
    30: "thirty new messages",
}
SAVED_EN = {1: "one saved message", 2: "two saved messages"}


def expected_summary(new: int, saved: int, language: str) -> str:
    new_words, saved_words = (NEW_FR, SAVED_FR) if language == "fr" else (NEW_EN, SAVED_EN)
    if language == "fr":
        sentence = f"Vous avez {new_words[new]}" if new else "Vous n'avez aucun nouveau message"
    else:
        sentence = f"You have {new_words[new]}" if new else "You have no new messages"
    if saved:
        sentence += f" {'et' if language == 'fr' else 'and'} {saved_words[saved]}"
    return sentence


@pytest.mark.parametrize("language", ["fr", "en"])
@pytest.mark.parametrize("saved", [0, 1, 2])
@pytest.mark.parametrize("new", [0, 1, 2, 21, 30])
def test_summary_reads_as_spoken(new: int, saved: int, language: str) -> None:
    assert written(summary(new, saved, language), language) == expected_summary(
        new, saved, language
    )


def test_summary_in_prompt_ids() -> None:
    assert summary(2, 1, "fr") == (
        "summary_you_have",
        "digit_2",
        "summary_new_many",
        "word_and",
        "digit_1",
        "summary_saved_one",
    )
    assert summary(0, 3, "fr") == ("summary_no_new", "word_and", "digit_3", "summary_saved_many")
    assert summary(0, 0, "fr") == ("no_messages",)  # the phrase of DESIGN.md §7.3


def test_design_sentences() -> None:
    assert written(summary(2, 1, "fr"), "fr") == _plain(
        "Vous avez deux nouveaux messages et un message sauvegardé."
    )
    assert written(summary(0, 0, "fr"), "fr") == _plain("Vous n'avez aucun nouveau message.")
    assert written(summary(0, 0, "en"), "en") == _plain("You have no new messages.")
    assert written(no_more_new("fr"), "fr") == _plain("Vous n'avez plus de nouveau message.")
    assert written(no_more_new("en"), "en") == _plain("You have no more new messages.")


def test_a_full_mailbox_of_a_thousand() -> None:
    assert written(summary(1000, 0, "fr"), "fr") == "Vous avez mille nouveaux messages"
    assert written(summary(999, 1, "en"), "en") == (
        "You have nine hundred and ninety-nine new messages and one saved message"
    )


# --- numbers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "french", "english"),
    [
        (0, "zéro", "zero"),
        (1, "un", "one"),
        (16, "seize", "sixteen"),
        (21, "vingt et un", "twenty-one"),
        (70, "soixante-dix", "seventy"),
        (71, "soixante et onze", "seventy-one"),
        (80, "quatre-vingts", "eighty"),
        (81, "quatre-vingt-un", "eighty-one"),
        (91, "quatre-vingt-onze", "ninety-one"),
        (100, "cent", "one hundred"),
        (101, "cent un", "one hundred and one"),
        (200, "deux cents", "two hundred"),
        (280, "deux cent quatre-vingts", "two hundred and eighty"),
        (999, "neuf cent quatre-vingt-dix-neuf", "nine hundred and ninety-nine"),
        (1000, "mille", "one thousand"),
        (1005, "mille cinq", "one thousand and five"),
        (2026, "deux mille vingt-six", "two thousand and twenty-six"),
        (2300, "deux mille trois cents", "two thousand three hundred"),
    ],
)
def test_numbers(value: int, french: str, english: str) -> None:
    assert written(number(value, "fr"), "fr") == french
    assert written(number(value, "en"), "en") == english


def test_feminine_numbers_are_french_only() -> None:
    assert [written(number(n, "fr", feminine=True), "fr") for n in (1, 21, 31, 41, 51, 2)] == [
        "une",
        "vingt et une",
        "trente et une",
        "quarante et une",
        "cinquante et une",
        "deux",
    ]
    assert number(21, "en", feminine=True) == ("num_21",)


@pytest.mark.parametrize("language", ["fr", "en"])
def test_every_number_to_ten_thousand_is_known(language: str) -> None:
    for value in range(10000):
        ids = number(value, language)
        assert ids and all(catalogue(language).knows(i) for i in ids), value


# --- the prompts they use ----------------------------------------------------------


@pytest.mark.parametrize("language", ["fr", "en"])
def test_every_prompt_used_has_a_playable_wav(language: str) -> None:
    used = {f"day_{d}" for d in range(1, 32)} | {f"num_{n}" for n in range(10, 100)}
    for received, caller, *_ in (case.values for case in ENVELOPES):
        used.update(paris(received, caller, language))  # type: ignore[arg-type]
    for new in (0, 1, 2, 21, 1000):
        used.update(summary(new, 2, language))
    used.update(number(21, language, feminine=True) + no_more_new(language))
    for prompt_id in sorted(used):
        assert check_wav(catalogue(language).wav_path(prompt_id)) is None, prompt_id


# --- bad input ---------------------------------------------------------------------


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="received must be an aware datetime"):
        envelope(datetime(2026, 11, 30, 22, 15), None, PARIS, "fr", NOW)
    with pytest.raises(ValueError, match="now must be an aware datetime"):
        envelope(NOW, None, PARIS, "fr", datetime(2026, 11, 30, 22, 15))


def test_an_unknown_zone_names_the_profile_key() -> None:
    with pytest.raises(ValueError, match=r"'Europe/Pariss'.*\[voicemail.mailbox\] timezone"):
        envelope(NOW, None, "Europe/Pariss", "fr", NOW)


@pytest.mark.parametrize(
    "call",
    [
        lambda: summary(1, 0, "de"),
        lambda: no_more_new("de"),
        lambda: envelope(NOW, None, PARIS, "de", NOW),
        lambda: number(3, "de"),
    ],
    ids=["summary", "no_more_new", "envelope", "number"],
)
def test_an_unknown_language_is_refused(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match=r"'de'.*fr, en"):
        call()


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        summary(-1, 0, "fr")
    with pytest.raises(ValueError, match="negative"):
        number(-3, "en")
