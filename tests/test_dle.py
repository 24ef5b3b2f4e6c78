"""The V.253 <DLE> decoder and encoder: events, escaping, DTMF bursts, any chunking."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewayd.errors import ProfileError
from gatewayd.line.dle import (
    DEFAULT_HANGUP_CODES,
    DLE_BARGE_IN,
    DLE_ETX,
    DleDecoder,
    DtmfDigit,
    DtmfEnd,
    DtmfStart,
    HandsetOffHook,
    HandsetOnHook,
    ModemEvent,
    OtherEvent,
    RemoteHangup,
    RingEvent,
    StreamEnd,
    dle_encode,
    redact_dtmf,
)


def keys(events: list[ModemEvent]) -> str:
    return "".join(e.key for e in events if isinstance(e, DtmfDigit))


def decode_in_chunks(data: bytes, cuts: list[int], **kwargs) -> tuple[bytes, list[ModemEvent]]:
    decoder = DleDecoder(**kwargs)
    audio = bytearray()
    events: list[ModemEvent] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        chunk_audio, chunk_events = decoder.feed(data[start:cut])
        audio += chunk_audio
        events += chunk_events
        start = max(start, cut)
    return bytes(audio), events


# --- events ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "event"),
    [
        (b"\x10R", RingEvent()),
        (b"\x10H", HandsetOffHook("H")),
        (b"\x10P", HandsetOffHook("P")),
        (b"\x10h", HandsetOnHook("h")),
        (b"\x10p", HandsetOnHook("p")),
        (b"\x10b", RemoteHangup("busy")),
        (b"\x10l", RemoteHangup("loop_break")),
        (b"\x10s", RemoteHangup("silence")),
        (b"\x10d", RemoteHangup("dial_tone")),
        (b"\x10\x03", RemoteHangup("end_of_stream")),
        (b"\x10/", DtmfStart()),
        (b"\x10~", DtmfEnd()),
        (b"\x10\x7f", DtmfEnd()),
        (b"\x10u", OtherEvent("u")),
        (b"\x10q", OtherEvent("q")),
        (b"\x10X", OtherEvent("X")),
        (b"\x10\xff", OtherEvent("\xff")),
    ],
)
def test_each_code_decodes_to_its_event_and_leaves_no_audio(raw: bytes, event: ModemEvent) -> None:
    assert DleDecoder().feed(raw) == (b"", [event])


def test_events_are_stripped_from_the_audio_around_them() -> None:
    audio, events = DleDecoder().feed(b"ab\x10Rcd\x10ue")
    assert audio == b"abcde"
    assert events == [RingEvent(), OtherEvent("u")]


def test_doubled_dle_is_one_data_byte_and_dle_sub_is_two() -> None:
    assert DleDecoder().feed(b"\x01\x10\x10\x02\x10\x1a\x03") == (b"\x01\x10\x02\x10\x10\x03", [])


def test_a_trailing_dle_waits_for_the_next_read() -> None:
    decoder = DleDecoder()
    assert decoder.feed(b"ab\x10") == (b"ab", [])
    assert decoder.pending == 1
    assert decoder.feed(b"Rc") == (b"c", [RingEvent()])
    assert decoder.pending == 0


def test_reset_forgets_a_trailing_dle() -> None:
    decoder = DleDecoder()
    decoder.feed(b"\x10")
    decoder.reset()
    assert decoder.feed(b"R") == (b"R", [])


# --- DTMF -----------------------------------------------------------------------------------


@pytest.mark.parametrize("end", [b"~", b"\x7f"])
def test_tilde_and_del_both_end_a_burst_and_a_repeat_counts_once(end: bytes) -> None:
    _, events = DleDecoder().feed(b"\x10/\x105\x105\x105\x10" + end)
    assert events == [DtmfStart(), DtmfDigit("5"), DtmfEnd()]


@pytest.mark.parametrize("end", [b"~", b"\x7f"])
def test_after_either_end_the_same_key_counts_again(end: bytes) -> None:
    burst = b"\x10/\x105\x105\x10" + end
    _, events = DleDecoder().feed(burst + burst)
    assert keys(events) == "55"


def test_a_burst_split_across_reads_still_counts_once() -> None:
    decoder = DleDecoder()
    _, first = decoder.feed(b"\x10/\x105\x10")
    _, second = decoder.feed(b"5\x10~")
    assert keys(first + second) == "5"


def test_bare_digits_without_burst_framing_each_count() -> None:
    _, events = DleDecoder().feed(b"\x105\x105\x103")
    assert keys(events) == "553"


def test_different_keys_within_one_burst_each_count() -> None:
    _, events = DleDecoder().feed(b"\x10/\x101\x102\x10~")
    assert keys(events) == "12"


def test_a_code_dialled_as_the_modem_sends_it() -> None:
    bursts = [b"\x10/\x10%c\x10%c\x10~" % (key, key) for key in b"3103#"]
    raw = b"".join(bursts)
    assert keys(DleDecoder().feed(raw)[1]) == "3103#"


def test_digit_repr_and_logs_never_show_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _, events = DleDecoder().feed(b"\x10/\x107\x10~\x108")
    digits = [e for e in events if isinstance(e, DtmfDigit)]
    assert [d.key for d in digits] == ["7", "8"]
    assert repr(digits[0]) == "DtmfDigit(key='?')"
    assert "7" not in repr(events) and "8" not in str(events)
    assert caplog.records  # the decoder did log something ...
    assert not any(d in message for message in caplog.messages for d in "78")  # not the keys


# --- hang-up set and streams ----------------------------------------------------------------


def test_the_hang_up_set_is_a_parameter() -> None:
    decoder = DleDecoder(hangup_codes={"b", "L"})
    _, events = decoder.feed(b"\x10b\x10L\x10s\x10\x03")
    assert events == [
        RemoteHangup("busy"),
        RemoteHangup("polarity_reversal"),
        OtherEvent("s"),
        OtherEvent("\x03"),
    ]
    assert decoder.hangup_codes == frozenset({"b", "L"})
    assert DleDecoder().hangup_codes == DEFAULT_HANGUP_CODES


@pytest.mark.parametrize("code", ["5", "R", "H", "p", "~", "x", "bl"])
def test_a_hang_up_code_that_means_something_else_is_refused(code: str) -> None:
    with pytest.raises(ProfileError, match="cannot end a call"):
        DleDecoder(hangup_codes={code})


def test_etx_inside_a_stream_ends_the_stream_then_means_hang_up_again() -> None:
    decoder = DleDecoder(in_stream=True)
    assert decoder.feed(b"\x01\x02\x10\x03") == (b"\x01\x02", [StreamEnd()])
    assert decoder.in_stream is False
    assert decoder.feed(b"\x10\x03") == (b"", [RemoteHangup("end_of_stream")])


# --- encoding -------------------------------------------------------------------------------


def test_encode_doubles_dle_and_nothing_else() -> None:
    assert dle_encode(b"\x01\x10\x03\x10\x10") == b"\x01\x10\x10\x03\x10\x10\x10\x10"
    assert DLE_ETX == b"\x10\x03"
    assert DLE_BARGE_IN == b"\x10\x18\x10\x03"


def test_redact_masks_keys_after_dle_and_at_the_start_of_a_read() -> None:
    assert redact_dtmf(b"5\x10/\x105\x10~a3\x10#\x10R") == b"?\x10/\x10?\x10~a3\x10?\x10R"


# --- any bytes, any chunking ----------------------------------------------------------------

_cuts = st.lists(st.integers(min_value=0, max_value=600), max_size=40)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600), cuts=_cuts)
def test_decoding_does_not_depend_on_chunking(data: bytes, cuts: list[int]) -> None:
    whole = DleDecoder().feed(data)
    assert decode_in_chunks(data, cuts) == whole


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=600).map(
        lambda b: b.replace(b"\x11", b"\x10")  # more DLEs than uniform bytes would give
    ),
    cuts=_cuts,
)
def test_random_bytes_never_raise_and_never_pile_up(data: bytes, cuts: list[int]) -> None:
    decoder = DleDecoder()
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        chunk = data[start:cut]
        audio, _ = decoder.feed(chunk)
        # At most one byte is held back, so a read never yields more than it brought plus one.
        assert decoder.pending <= 1
        assert len(audio) <= len(chunk) + 1
        start = max(start, cut)


@settings(max_examples=300, deadline=None)
@given(audio=st.binary(max_size=600), cuts=_cuts)
def test_encoded_audio_decodes_back_intact(audio: bytes, cuts: list[int]) -> None:
    assert decode_in_chunks(dle_encode(audio), cuts) == (audio, [])
