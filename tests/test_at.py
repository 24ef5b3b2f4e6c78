"""AT response lines, modem families and the 8-bit audio conversion."""

from __future__ import annotations

import array
import logging
import sys
import wave
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewayd.errors import ProfileError
from gatewayd.line.at import (
    FAMILIES,
    AtLine,
    AtLineKind,
    AtResponseReader,
    AudioFormatError,
    convert_s16le,
    detect_family,
    encode_command,
    expected_results,
    get_family,
    s16le_to_s8,
    s16le_to_u8,
)

PROMPT = Path(__file__).resolve().parent.parent / "audio" / "fr" / "goodbye.wav"


def texts(lines: list[AtLine]) -> list[str]:
    return [line.text for line in lines]


# --- lines ----------------------------------------------------------------------------------


def test_lines_split_on_cr_lf_and_blank_lines_are_skipped() -> None:
    lines = AtResponseReader().feed(b"\r\nOK\r\n\r\n5601\rRING\n\n")
    assert texts(lines) == ["OK", "5601", "RING"]


def test_a_line_split_across_reads_comes_out_once_complete() -> None:
    reader = AtResponseReader()
    assert reader.feed(b"\r\nNO CAR") == []
    assert reader.buffered == 6
    assert texts(reader.feed(b"RIER\r\n")) == ["NO CARRIER"]
    assert reader.buffered == 0


@pytest.mark.parametrize(
    ("text", "success"),
    [
        ("OK", True),
        ("CONNECT", True),
        ("CONNECT 57600", True),
        ("VCON", True),
        ("ERROR", False),
        ("NO CARRIER", False),
        ("BUSY", False),
        ("NO DIALTONE", False),
        ("NO ANSWER", False),
    ],
)
def test_final_result_codes(text: str, success: bool) -> None:
    (line,) = AtResponseReader().feed(text.encode() + b"\r\n")
    assert line.kind is AtLineKind.FINAL and line.is_final
    assert line.is_success is success


@pytest.mark.parametrize(
    ("raw", "field", "value"),
    [
        (b"DATE=0321", "DATE", "0321"),
        (b"TIME=1805", "TIME", "1805"),
        (b"NMBR = 0123456789", "NMBR", "0123456789"),  # USR puts blanks around "="
        (b"NAME=DUPONT J", "NAME", "DUPONT J"),
    ],
)
def test_caller_id_lines_give_field_and_value(raw: bytes, field: str, value: str) -> None:
    (line,) = AtResponseReader().feed(b"\r\n" + raw + b"\r\n")
    assert line.kind is AtLineKind.CALLER_ID
    assert (line.field, line.value) == (field, value)
    assert not line.is_final


def test_ring_echo_and_information_lines() -> None:
    lines = AtResponseReader().feed(b"RING\r\nATZ\r\r\n5601\r\n+VSM: 128,8000\r\n")
    assert [line.kind for line in lines] == [
        AtLineKind.RING,
        AtLineKind.ECHO,
        AtLineKind.INFO,
        AtLineKind.INFO,
    ]


def test_an_overlong_line_is_dropped_and_the_reader_resyncs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader = AtResponseReader(max_line=256)
    with caplog.at_level(logging.WARNING):
        lines = reader.feed(b"G" * 1000 + b"\r\nOK\r\n")
    assert texts(lines) == ["OK"]
    assert "longer than 256 bytes" in caplog.text


def test_an_overlong_line_fed_byte_by_byte_is_dropped_whole() -> None:
    reader = AtResponseReader(max_line=16)
    lines: list[AtLine] = []
    for byte in b"x" * 40 + b"OK\r\nERROR\r\n":
        lines += reader.feed(bytes([byte]))
        assert reader.buffered <= 16
    # The tail of the garbage ("...xxOK") is not taken for a line of its own.
    assert texts(lines) == ["ERROR"]


def test_a_line_of_exactly_the_cap_is_kept() -> None:
    assert texts(AtResponseReader(max_line=4).feed(b"BUSY\r\n")) == ["BUSY"]


def test_non_ascii_bytes_do_not_raise() -> None:
    lines = AtResponseReader().feed(b"\xff\xfe\x80OK\r\n\x00\x10\r\nOK\r\n")
    assert lines[-1].text == "OK" and lines[-1].is_success
    assert not lines[0].is_final  # "\ufffd\ufffd\ufffdOK" is not OK


def test_cap_must_be_positive() -> None:
    with pytest.raises(ProfileError):
        AtResponseReader(max_line=0)


_cuts = st.lists(st.integers(min_value=0, max_value=800), max_size=40)
_modem_bytes = st.lists(
    st.sampled_from([b"\r", b"\n", b"OK", b"RING", b"NMBR=1", b"\xff", b"x" * 50]) | st.binary(),
    max_size=40,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(data=_modem_bytes, cuts=_cuts, cap=st.integers(min_value=1, max_value=64))
def test_any_bytes_any_chunking_same_lines_bounded_buffer(
    data: bytes, cuts: list[int], cap: int
) -> None:
    whole = AtResponseReader(max_line=cap).feed(data)
    reader = AtResponseReader(max_line=cap)
    lines: list[AtLine] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        lines += reader.feed(data[start:cut])
        assert reader.buffered <= cap
        start = max(start, cut)
    assert lines == whole
    assert all(len(line.text) <= cap for line in lines)


# --- commands and families ------------------------------------------------------------------


def test_encode_command_ends_with_cr_and_refuses_non_ascii() -> None:
    assert encode_command("AT+VLS=1") == b"AT+VLS=1\r"
    with pytest.raises(ProfileError, match="ASCII"):
        encode_command("AT+VLS=\u00e9")


def test_expected_results() -> None:
    assert expected_results("AT+VTX") == {"CONNECT"}
    assert expected_results("AT+FCLASS=8") == {"OK", "VCON"}


def test_families_follow_the_hardware_notes() -> None:
    generic, usr, conexant = FAMILIES["generic"], FAMILIES["usr5637"], FAMILIES["conexant"]
    assert generic.init[:5] == ("ATZ", "ATE0", "ATV1", "AT+FCLASS=8", "AT+VCID=1")
    assert usr.voice_mode_command == "AT+VSM=128,8000"
    assert "AT-SCID=1;+VCID=1;-STE=7" in conexant.init
    assert conexant.voice_mode_command == "AT+VSM=1,8000,0,0"
    assert generic.hangup == ("AT+VLS=0",)
    assert usr.hangup == conexant.hangup == ("ATH0",)
    assert conexant.handset_codes == ("P", "p") and usr.handset_codes == ("H", "h")
    for family in FAMILIES.values():
        assert family.play[-2:] == ("AT+VLS=1", "AT+VTX")
        assert "AT+FCLASS=8" in family.init and "AT+VLS=1" in family.answer
        assert family.sample_format in ("u8", "s8")


def test_unknown_family_names_the_known_ones() -> None:
    assert get_family("usr5637") is FAMILIES["usr5637"]
    with pytest.raises(ProfileError, match="generic, usr5637, conexant"):
        get_family("hayes")


def test_ati0_tells_the_families_apart() -> None:
    assert detect_family("5601") is FAMILIES["usr5637"]
    assert detect_family(" 56000 ") is FAMILIES["conexant"]
    assert detect_family("33600") is None


# --- audio ----------------------------------------------------------------------------------


def s16(*samples: int) -> bytes:
    data = array.array("h", samples)
    if sys.byteorder == "big":
        data.byteswap()
    return data.tobytes()


def test_s16le_to_u8_and_s8_known_values() -> None:
    pcm = s16(0, 32767, -32768, -1, 256, 255)
    assert s16le_to_u8(pcm) == bytes([0x80, 0xFF, 0x00, 0x7F, 0x81, 0x80])
    assert s16le_to_s8(pcm) == bytes([0x00, 0x7F, 0x80, 0xFF, 0x01, 0x00])
    assert convert_s16le(pcm, "u8") == s16le_to_u8(pcm)
    assert convert_s16le(pcm, "s8") == s16le_to_s8(pcm)


@given(st.lists(st.integers(min_value=-32768, max_value=32767), max_size=200))
def test_u8_is_the_high_byte_offset_by_128(samples: list[int]) -> None:
    assert list(s16le_to_u8(s16(*samples))) == [(s >> 8) + 128 for s in samples]


def test_odd_length_audio_is_refused() -> None:
    with pytest.raises(AudioFormatError, match="odd length"):
        s16le_to_u8(b"\x00\x01\x02")
    assert issubclass(AudioFormatError, ValueError)


def test_a_real_prompt_converts_to_one_byte_per_sample() -> None:
    with wave.open(str(PROMPT)) as wav:
        assert (wav.getsampwidth(), wav.getframerate()) == (2, 8000)
        pcm = wav.readframes(wav.getnframes())
    u8 = s16le_to_u8(pcm)
    assert len(u8) == len(pcm) // 2
    assert max(u8) > 0xA0 and min(u8) < 0x60  # speech swings both ways around 0x80
