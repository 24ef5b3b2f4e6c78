"""The gpio-slic line on the fake GPIO: hook, dial, keys, ringing, gpio.sock, and the whole daemon.

In-process tests run the real driver on an asyncio loop whose clock is virtual
(``VirtualTimeLoop``: when nothing is ready, time jumps to the next timer), so
timings are exact and a 5 s ring costs no real time. The handset is the driver's
own :class:`FakeHandset`, the same one gpio.sock plays. The end-to-end tests run
``gatewayd run`` as a subprocess on a fake-backend copy of the shipped Raspberry
Pi profile and drive it through gpio.sock and ctl.sock, as a technician would.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import selectors
import socket
import stat
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gatewayd.errors import ProfileError
from gatewayd.events import Digit, LineEvent, OffHook
from gatewayd.gpio import BackendUnavailableError, UnknownBackendError
from gatewayd.gpio.fake import FakeGpio
from gatewayd.line import gpio_slic, open_line
from gatewayd.line.fake_handset import FakeHandset, FakeHandsetError
from gatewayd.line.gpio_slic import (
    MAX_LINE,
    GpioSlicLine,
    InbandDtmfUnavailableError,
    SlicLineError,
)
from gatewayd.line.hook import SHK_DEBOUNCE_MS
from gatewayd.line.ringer import RM_DROP_DELAY_S
from gatewayd.paths import GPIO_SOCKET
from gatewayd.profile import PIN_NAMES, Profile, SlicSection, load_profile
from tests.daemon_process import DaemonProcess

REPO = Path(__file__).resolve().parent.parent
PROFILES = REPO / "hw_profiles"
RPI_PROFILE = PROFILES / "rpi-ag1171-mt8870.toml"
SLIC_PROFILES = {
    "rpi-ag1171-mt8870": "rpi",
    "rpi5-ag1171-mt8870": "gpiod",
    "gpiod-ag1171-mt8870": "gpiod",
}
# The shipped Pi wiring (BCM), which the fake copies keep.
SHK, RM, FR, STD = 17, 27, 22, 23
Q_PINS = (5, 6, 13, 26)
DEBOUNCE_S = SHK_DEBOUNCE_MS / 1000
CODE = "4931"
T = TypeVar("T")


# --- a loop on a virtual clock -----------------------------------------------------------


class _JumpingSelector(selectors.EpollSelector):
    """Never sleeps while a timer is pending: moves the loop's clock to it instead."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # no timer at all: only real I/O (a worker thread) can wake us
            return super().select(None)
        self._loop.now += timeout
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose ``time()`` is virtual: the test's injected clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self.now


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on a virtual-time loop."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(coroutine)


# --- the line under test -------------------------------------------------------------


def fake_profile_text(**replace: str) -> str:
    """The shipped Pi profile on the fake backend, with test values and ``replace`` applied."""
    text = RPI_PROFILE.read_text()
    values = {
        'gpio_backend = "rpi"': 'gpio_backend = "fake"',
        'playback = "plughw:CARD=Device"': 'playback = "null"',
        "scrypt_n = 16384": "scrypt_n = 1024",
        **replace,
    }
    for old, new in values.items():
        assert old in text, f"{RPI_PROFILE.name} no longer has {old!r}"
        text = text.replace(old, new)
    return text


def load_fake_profile(tmp_path: Path, **replace: str) -> Profile:
    path = tmp_path / "fake-slic.toml"
    path.write_text(fake_profile_text(**replace))
    return load_profile(path)


class Rig:
    """A started gpio-slic line on the fake backend, the events it emitted, and its handset."""

    def __init__(self, tmp_path: Path, **replace: str) -> None:
        self.profile = load_fake_profile(tmp_path, **replace)
        self.runtime_dir = tmp_path / "run"
        self.events: list[tuple[float, LineEvent]] = []
        self.emit_threads: set[int] = set()
        self.marks: dict[str, float] = {}
        self.line = GpioSlicLine.from_profile(self.profile, self._emit, self.runtime_dir)

    def _emit(self, event: LineEvent) -> None:
        self.emit_threads.add(threading.get_ident())
        self.events.append((asyncio.get_running_loop().time(), event))

    async def __aenter__(self) -> Rig:
        await self.line.start()
        self.loop = asyncio.get_running_loop()
        handset = self.line.fake_handset
        assert handset is not None and isinstance(handset.gpio, FakeGpio)
        self.handset: FakeHandset = handset
        self.gpio: FakeGpio = handset.gpio
        self.t0 = self.loop.time()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.line.close()

    def seen(self) -> list[str]:
        """The events as a user would name them; digits with their key."""
        return [
            f"digit {event.key}" if isinstance(event, Digit) else type(event).__name__
            for _, event in self.events
        ]

    def changes(self, pin: int) -> list[tuple[float, bool]]:
        """(seconds after t0, level) of each change gatewayd made on ``pin``, setup excluded."""
        entries = [e for e in self.gpio.history if e.pin == pin and e.direction == "out"]
        return [(round(e.t_ns / 1e9 - self.t0, 6), e.level) for e in entries[1:]]

    def mark(self, name: str) -> None:
        """Note the loop time now as ``marks[name]`` (seconds after t0)."""
        self.marks[name] = self.loop.time() - self.t0

    async def wait(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def with_rig(tmp_path: Path, body: Callable[[Rig], Awaitable[None]], **replace: str) -> Rig:
    rig = Rig(tmp_path, **replace)

    async def main() -> None:
        async with rig:
            await body(rig)

    run(main())
    return rig


# --- hook switch ---------------------------------------------------------------------------


@pytest.mark.parametrize("active_high", [True, False])
def test_lift_is_off_hook_and_a_2_s_break_is_on_hook(tmp_path: Path, active_high: bool) -> None:
    replace = {} if active_high else {"shk_active_high = true": "shk_active_high = false"}
    stamps: dict[str, Any] = {}

    async def body(rig: Rig) -> None:
        assert rig.line.status() == {
            "backend": "fake",
            "handset": "on-hook",
            "ringing": False,
            "last_event": "none",
        }
        rig.handset.drive(SHK, active_high)
        await rig.wait(1.0)
        stamps["lifted"] = rig.line.status()
        rig.handset.drive(SHK, not active_high)
        await rig.wait(2.0)
        stamps["hung"] = rig.line.status()

    rig = with_rig(tmp_path, body, **replace)
    assert rig.seen() == ["OffHook", "OnHook"]
    (lift_t, _), (hang_t, _) = rig.events
    # Seen once SHK has been stable for the debounce; the on-hook once the break is
    # longer than a flash (900 ms).
    assert lift_t - rig.t0 == pytest.approx(DEBOUNCE_S, abs=1e-6)
    assert hang_t - rig.t0 == pytest.approx(1.0 + DEBOUNCE_S + 0.900, abs=1e-6)
    assert stamps["lifted"]["handset"] == "off-hook"
    assert stamps["lifted"]["last_event"] == "off-hook"
    assert stamps["hung"]["handset"] == "on-hook"
    assert stamps["hung"]["last_event"] == "on-hook"


@pytest.mark.parametrize("lifting", [True, False], ids=["lift", "hang-up"])
def test_a_1_khz_bounce_storm_of_200_ms_is_one_transition(tmp_path: Path, lifting: bool) -> None:
    async def body(rig: Rig) -> None:
        if not lifting:
            await rig.handset.lift()
        start = len(rig.events)
        await rig.handset.chatter(SHK, 1000, 200, final_level=lifting)
        await rig.wait(2.0)
        del rig.events[:start]

    rig = with_rig(tmp_path, body)
    flips = [e for e in rig.gpio.history if e.pin == SHK and e.direction == "in"]
    assert len(flips) > 300  # the storm did happen on the wire
    assert rig.seen() == (["OffHook"] if lifting else ["OnHook"])


def test_a_flash_is_flash_and_the_call_goes_on(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        await rig.handset.lift()
        await rig.handset.flash()
        await rig.wait(2.0)
        assert rig.line.off_hook
        assert rig.line.status()["last_event"] == "flash"

    rig = with_rig(tmp_path, body)
    assert rig.seen() == ["OffHook", "Flash"]


def test_rotary_dial_3_1_0_3_is_four_digits(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        await rig.handset.lift()
        await rig.handset.dial("3103")

    rig = with_rig(tmp_path, body)
    assert rig.seen() == ["OffHook", "digit 3", "digit 1", "digit 0", "digit 3"]
    assert all(e.party == "handset" for _, e in rig.events if isinstance(e, Digit))
    pulses = [e for e in rig.gpio.history if e.pin == SHK and e.direction == "in" and not e.level]
    assert len(pulses) == 3 + 1 + 10 + 3


def test_the_fake_handset_refuses_what_a_handset_cannot_do(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        with pytest.raises(FakeHandsetError, match="on-hook; lift it first"):
            await rig.handset.dial("3")
        with pytest.raises(FakeHandsetError, match="on-hook; lift it first"):
            await rig.handset.press("3")
        await rig.handset.lift()
        with pytest.raises(FakeHandsetError, match="already off-hook"):
            await rig.handset.lift()
        with pytest.raises(FakeHandsetError, match="keys are 0-9"):
            await rig.handset.dial("3#")

    rig = with_rig(tmp_path, body)
    assert rig.seen() == ["OffHook"]


# --- MT8870 -----------------------------------------------------------------------------


def test_mt8870_keys_3103_are_digits_when_each_tone_ends(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        await rig.handset.lift()
        rig.mark("keys")
        await rig.handset.press("3103")

    rig = with_rig(tmp_path, body)
    assert rig.seen() == ["OffHook", "digit 3", "digit 1", "digit 0", "digit 3"]
    assert all(e.party == "handset" for _, e in rig.events if isinstance(e, Digit))
    # Each key is handed on as StD falls, 80 ms into its tone; keys come every 160 ms.
    assert [t - rig.t0 - rig.marks["keys"] for t, _ in rig.events[1:]] == pytest.approx(
        [0.080 + 0.160 * n for n in range(4)], abs=1e-6
    )


def test_an_std_glitch_is_ignored_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(rig: Rig) -> None:
        await rig.handset.lift()
        rig.handset.drive(STD, True)
        await rig.wait(0.002)  # 2 ms: under the 5 ms glitch bound, no decoder does that
        rig.handset.drive(STD, False)
        await rig.wait(0.5)
        await rig.handset.press("5")

    with caplog.at_level(logging.DEBUG, logger="gatewayd.line.mt8870"):
        rig = with_rig(tmp_path, body)
    assert rig.seen() == ["OffHook", "digit 5"]
    assert any("StD glitch of 2.0 ms ignored" in r.getMessage() for r in caplog.records)


def test_no_key_reaches_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def body(rig: Rig) -> None:
        await rig.handset.lift()
        await rig.handset.press("4931#")
        await rig.handset.dial("4931")

    with caplog.at_level(logging.DEBUG):
        rig = with_rig(tmp_path, body)
    assert [e.key for _, e in rig.events if isinstance(e, Digit)] == list("4931#4931")
    # The keys went through the logging driver (so the check below means something)...
    assert "DTMF key from the MT8870" in caplog.text and "dial-pulse digit" in caplog.text
    # ...and none of them reached the log.
    assert CODE not in caplog.text


def test_edges_from_a_backend_thread_reach_the_daemon_on_the_loop_thread(
    tmp_path: Path,
) -> None:
    """As with RPi.GPIO, whose callbacks run on its own thread."""

    def wire_side(gpio: FakeGpio, start_ns: int) -> None:
        ms = 1_000_000
        gpio.drive(SHK, True, at_ns=start_ns + 1 * ms)
        gpio.advance_to(start_ns + 50 * ms)  # SHK settles: callback on this thread
        for pin, level in zip(Q_PINS, (True, True, False, False), strict=True):  # key 3
            gpio.drive(pin, level)
        gpio.drive(STD, True, at_ns=start_ns + 100 * ms)
        gpio.drive(STD, False, at_ns=start_ns + 180 * ms)

    async def body(rig: Rig) -> None:
        await rig.loop.run_in_executor(None, wire_side, rig.gpio, rig.gpio.now_ns)
        await rig.wait(0.5)

    rig = with_rig(tmp_path, body)
    assert rig.seen() == ["OffHook", "digit 3"]
    assert rig.emit_threads == {threading.main_thread().ident}


# --- ringing --------------------------------------------------------------------------------


def test_ring_toggles_fr_at_50_hz_with_rm_high_only_in_bursts_and_a_lift_stops_it(
    tmp_path: Path,
) -> None:
    async def body(rig: Rig) -> None:
        rig.line.ring(30.0)
        assert rig.line.status()["ringing"] is True
        await rig.wait(5.505)  # into the second burst (1.5 s on / 3.5 s off)
        rig.handset.drive(SHK, True)  # lifted
        await rig.wait(1.0)
        assert rig.line.status()["ringing"] is False

    rig = with_rig(tmp_path, body)
    fr = rig.changes(FR)
    first_burst = [t for t, _ in fr if t <= 1.5]
    assert len(first_burst) == 150  # 1.5 s at 50 Hz: 100 changes a second
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(first_burst)}
    assert gaps == {0.010}
    assert not [t for t, _ in fr if 1.5 < t < 5.0]  # the pause is silent
    # The lift is seen 10 ms after it happens (debounce): F/R forward at once, RM 20 ms later.
    lift_seen = round(5.505 + DEBOUNCE_S, 6)
    assert fr[-1] == (lift_seen, True)
    assert max(t for t, _ in fr) == lift_seen
    rm = rig.changes(RM)
    drop = RM_DROP_DELAY_S
    assert rm == [
        (0.0, True),
        (1.5 + drop, False),
        (5.0, True),
        (round(lift_seen + drop, 6), False),
    ]
    assert rig.seen() == ["OffHook"]
    assert (rig.events[0][0] - rig.t0) == pytest.approx(lift_seen, abs=1e-6)


def test_ring_ends_by_itself_and_is_refused_off_hook(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        rig.line.ring(6.0)  # ends 1 s into the second burst
        await rig.wait(8.0)
        assert rig.line.ringing is False
        await rig.handset.lift()
        with pytest.raises(SlicLineError, match="off the hook"):
            rig.line.ring(5.0)
        with pytest.raises(SlicLineError, match="seconds > 0"):
            rig.line.ring(0)

    rig = with_rig(tmp_path, body)
    assert max(t for t, _ in rig.changes(FR)) == pytest.approx(6.0, abs=1e-6)
    assert rig.changes(RM)[-1] == (6.0 + RM_DROP_DELAY_S, False)
    assert rig.gpio.level(FR) is True and rig.gpio.level(RM) is False


def test_stop_ringing_puts_fr_forward_at_once_and_drops_rm_after(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        rig.line.ring(30.0)
        await rig.wait(0.515)  # F/R reversed right now
        rig.line.stop_ringing()
        await rig.wait(1.0)
        assert rig.line.status()["ringing"] is False

    rig = with_rig(tmp_path, body)
    assert rig.changes(FR)[-1] == (0.515, True)
    assert rig.changes(RM)[-1] == (round(0.515 + RM_DROP_DELAY_S, 6), False)


def test_closing_mid_burst_leaves_the_line_quiet_rm_last(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        rig.line.ring(30.0)
        await rig.wait(0.755)  # F/R reversed right now
        assert rig.gpio.level(FR) is False and rig.gpio.level(RM) is True

    rig = with_rig(tmp_path, body)
    assert rig.gpio.closed
    assert rig.gpio.level(FR) is True and rig.gpio.level(RM) is False
    (fr_back, _), (rm_drop, _) = rig.changes(FR)[-1], rig.changes(RM)[-1]
    assert rm_drop - fr_back > 0.010
    with pytest.raises(SlicLineError, match="not running"):
        rig.line.ring(1.0)


# --- opening the line ----------------------------------------------------------------------


def test_inband_dtmf_without_a_capture_device_says_which_key(tmp_path: Path) -> None:
    path = tmp_path / "inband.toml"
    path.write_text(fake_profile_text(**{'dtmf = "mt8870"': 'dtmf = "inband"'}))
    with pytest.raises(ProfileError) as caught:
        load_profile(path)  # refused at load, before any hardware is touched
    message = str(caught.value)
    assert "inband.toml" in message and "audio.capture" in message


def test_inband_dtmf_without_numpy_says_what_to_install(tmp_path, monkeypatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "numpy" else real_find_spec(name, *a),
    )
    text = fake_profile_text(
        **{'dtmf = "mt8870"': 'dtmf = "inband"', 'capture = ""': 'capture = "hw:1,0"'}
    )
    path = tmp_path / "inband.toml"
    path.write_text(text)
    with pytest.raises(InbandDtmfUnavailableError) as caught:
        open_line(load_profile(path), lambda event: None, tmp_path)
    message = str(caught.value)
    assert "inband.toml" in message and "[inband] extra" in message
    assert 'dtmf = "mt8870"' in message


def test_the_registry_opens_this_driver_for_gpio_slic(tmp_path: Path) -> None:
    line = open_line(load_fake_profile(tmp_path), lambda event: None, tmp_path)
    assert isinstance(line, GpioSlicLine)
    assert line.gpio is None  # nothing is opened before start()


def test_a_backend_that_cannot_run_here_says_so_at_start(tmp_path: Path) -> None:
    profile = load_profile(RPI_PROFILE)
    line = GpioSlicLine.from_profile(profile, lambda event: None, tmp_path)
    with pytest.raises(BackendUnavailableError, match="GPIO backend 'rpi'"):
        run(line.start())


def test_a_missing_gpio_chip_is_named_at_start(tmp_path: Path) -> None:
    profile = load_profile(PROFILES / "rpi5-ag1171-mt8870.toml")
    line = GpioSlicLine.from_profile(profile, lambda event: None, tmp_path)
    with pytest.raises(BackendUnavailableError, match="gpiochip") as caught:
        run(line.start())
    assert "gpiodetect" in str(caught.value)


def test_an_unknown_backend_name_is_the_registry_error(tmp_path: Path) -> None:
    slic = load_fake_profile(tmp_path).line.slic
    assert slic is not None
    bogus = SlicSection(gpio_backend="lgpio", pins=slic.pins)  # type: ignore[arg-type]
    line = GpioSlicLine(lambda event: None, bogus)
    with pytest.raises(UnknownBackendError, match="fake, gpiod, rpi"):
        run(line.start())


def test_a_handset_already_off_the_hook_at_start_is_a_lift_once_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def open_lifted(name: str, **options: Any) -> FakeGpio:
        gpio = FakeGpio(**options)
        gpio.drive(SHK, True)  # the handset was off the hook before the daemon started
        return gpio

    monkeypatch.setattr(gpio_slic, "open_backend", open_lifted)
    events: list[LineEvent] = []

    async def main() -> list[LineEvent]:
        line = GpioSlicLine.from_profile(load_fake_profile(tmp_path), events.append, tmp_path)
        await line.start()
        # Not during start(): the daemon sets up its audio right after it returns.
        at_start = list(events)
        await asyncio.sleep(0.1)
        assert line.off_hook
        await line.close()
        return at_start

    assert run(main()) == []
    assert events == [OffHook()]


# --- gpio.sock --------------------------------------------------------------------------------


async def ask(path: Path, *commands: str) -> list[str]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    answers = []
    for command in commands:
        writer.write(command.encode() + b"\n")
        await writer.drain()
        answers.append((await reader.readline()).decode().strip())
    writer.close()
    await writer.wait_closed()
    return answers


def test_gpio_sock_plays_the_handset_and_answers_each_command(tmp_path: Path) -> None:
    answers: dict[str, Any] = {}

    async def body(rig: Rig) -> None:
        path = rig.runtime_dir / GPIO_SOCKET
        answers["mode"] = stat.S_IMODE(path.stat().st_mode)
        answers["session"] = await ask(
            path,
            "read 27",
            "read 22",
            "press 1",
            "lift",
            "lift",
            "press 31",
            "dial 2",
            "flash",
            "hang",
            "hang",
            "drive 27 1",
            "drive 17 2",
            "drive x 1",
            "press 3x",
            "dial #",
            "history 0",
            "ring",
            "history 2",
        )

    rig = with_rig(tmp_path, body)
    assert answers["mode"] == 0o660
    session = answers["session"]
    assert session[:2] == ["0", "1"]  # RM low, F/R forward: a quiet line
    assert session[2].startswith("error press: the handset is on-hook")
    assert session[3:5] == ["ok", "error lift: the handset is already off-hook"]
    assert session[5:9] == ["ok"] * 4
    assert session[9] == "error hang: the handset is already on-hook"
    assert session[10].startswith("error fake GPIO 27 is an output of gatewayd")
    assert session[11] == "error drive: the level is 0 or 1 (got '2')"
    assert session[12].startswith("error a pin is a number")
    assert session[13] == "error press: keys are 0-9 * # A-D"
    assert session[14] == "error dial: keys are 0-9"
    assert session[15].startswith("error history N: N is a number from 1 to")
    assert session[16] == "error unknown command 'ring'; try help"
    last_two = json.loads(session[17])
    assert [(e["pin"], e["dir"]) for e in last_two] == [(SHK, "in"), (SHK, "in")]
    assert [e["level"] for e in last_two] == [1, 0]  # the flash's make, then the hang-up
    assert rig.seen() == ["OffHook", "digit 3", "digit 1", "digit 2", "Flash", "OnHook"]
    assert not (rig.runtime_dir / GPIO_SOCKET).exists()  # removed on close


def test_gpio_sock_refuses_an_overlong_line(tmp_path: Path) -> None:
    answers: list[str] = []

    async def body(rig: Rig) -> None:
        reader, writer = await asyncio.open_unix_connection(str(rig.runtime_dir / GPIO_SOCKET))
        writer.write(b"press " + b"1" * (MAX_LINE * 2) + b"\n")
        await writer.drain()
        writer.write_eof()
        answers.append((await reader.readline()).decode().strip())
        writer.close()

    with_rig(tmp_path, body)
    assert answers == [f"error line too long (max {MAX_LINE} bytes)"]


# --- shipped hardware profiles -------------------------------------------------------------


@pytest.mark.parametrize(("name", "backend"), sorted(SLIC_PROFILES.items()))
def test_shipped_slic_profiles_load_with_every_signal_on_its_own_pin(
    name: str, backend: str
) -> None:
    profile = load_profile(name)
    slic = profile.line.slic
    assert profile.line.driver == "gpio-slic" and slic is not None
    assert slic.gpio_backend == backend and slic.dtmf == "mt8870"
    pins = [getattr(slic.pins, pin) for pin in PIN_NAMES]
    assert None not in pins and len(set(pins)) == len(PIN_NAMES)
    assert profile.audio.capture == ""  # keys come from the decoder
    assert profile.storage.create_pepper is False
    if name.startswith("rpi"):
        # Off the I2C pins (board pull-ups) and the console UART.
        assert not {2, 3, 14, 15} & set(pins)


def test_the_pi_5_profile_names_its_chip_and_says_to_check_it() -> None:
    slic = load_profile("rpi5-ag1171-mt8870").line.slic
    assert slic is not None and slic.gpio_chip == "/dev/gpiochip4"
    assert "gpiodetect" in (PROFILES / "rpi5-ag1171-mt8870.toml").read_text()


# --- the whole daemon -----------------------------------------------------------------------


class GpioSock:
    """A technician's connection to gpio.sock."""

    def __init__(self, path: Path) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(30)
        self._sock.connect(str(path))
        self._lines = self._sock.makefile("rw", encoding="utf-8")

    def __call__(self, command: str) -> str:
        self._lines.write(command + "\n")
        self._lines.flush()
        answer: str = self._lines.readline().strip()
        return answer

    def close(self) -> None:
        self._lines.close()
        self._sock.close()


@pytest.fixture
def slic_daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    # Hardware profiles never create a pepper: provision one, as `gatewayd provision` would.
    pepper = tmp_path / "pepper"
    pepper.write_bytes(os.urandom(32))
    pepper.chmod(0o600)
    path = tmp_path / "slic.toml"
    path.write_text(
        fake_profile_text(
            **{
                'state_dir = "/var/lib/gatewayd"': f'state_dir = "{tmp_path / "state"}"',
                'pepper_file = "pepper"': f'pepper_file = "{pepper}"',
            }
        )
    )
    daemon = DaemonProcess(tmp_path, path).start()
    yield daemon
    if daemon.proc is not None and daemon.proc.poll() is None:
        daemon.stop()


@pytest.mark.slow
@pytest.mark.parametrize("access", ["press", "dial"], ids=["dtmf", "rotary"])
def test_the_daemon_on_a_slic_creates_a_code(slic_daemon: DaemonProcess, access: str) -> None:
    events = slic_daemon.events()
    gpio = GpioSock(slic_daemon.runtime_dir / GPIO_SOCKET)
    try:
        for command in (
            "lift",
            f"{access} 3103",
            "press 3",
            "press 2",
            "press 1",
            f"press {CODE}#",
            "press 1",
            "hang",
        ):
            assert gpio(command) == "ok", command
    finally:
        gpio.close()
    created = events.wait_for(lambda e: e["type"] == "code")
    assert created["action"] == "created" and created["origin"] == "handset"
    events.wait_for(lambda e: e["type"] == "hook" and e["state"] == "on")
    hooks = [e["state"] for e in events.of_type("hook")]
    assert hooks == ["off", "on"]
    keys = [e["key"] for e in events.of_type("key")]
    assert keys[:4] == list("3103") and keys[7:12] == ["masked"] * 5
    assert CODE not in json.dumps(events.items)
    status = json.loads(slic_daemon.ctl("status --json"))
    assert status["code_set"] is True
    assert status["line"]["backend"] == "fake" and status["line"]["handset"] == "on-hook"
    assert CODE not in slic_daemon.log_text()
    events.close()
    assert slic_daemon.stop() == 0
