"""One contract, every line driver: what the service may rely on from a station and a trunk.

Each driver runs on its real parts: the sim line on its Unix socket, gpio-slic on the fake
GPIO backend (its handset played through ``FakeHandset``), the V.253 modem on the shipped
simulator through pyserial on a pty. A driver's outside world is a small :class:`World`
(the handset and the caller); the tests are written once against it.
"""

from __future__ import annotations

import abc
import array
import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from gatewayd.events import (
    WITHHELD,
    Digit,
    LineEvent,
    OffHook,
    OnHook,
    RemoteAnswered,
    RemoteHangup,
    Ring,
)
from gatewayd.line.at import convert_s16le, to_s16le
from gatewayd.line.base import LineDriver, Station, Trunk
from gatewayd.line.gpio_slic import GpioSlicLine
from gatewayd.line.modem_sim import ModemSimulator
from gatewayd.line.sim import SimLine
from gatewayd.line.v253 import V253ModemLine
from gatewayd.pcm import RATE
from tests.test_gpio_slic import load_fake_profile
from tests.test_sim import sim_command

WAIT_S = 10.0
NUMBER = "0612345678"
DRIVERS = ["sim", "gpio-slic", "v253-modem"]
TRUNKS = ["sim", "v253-modem"]


def run(body: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(body, 60))


def speech(seconds: float) -> bytes:
    """A caller's voice: a warbling tone that crosses every 8-bit level, DLE bytes included."""
    count = round(seconds * RATE)
    samples = [
        round(30000 * math.sin(2 * math.pi * (300 + 200 * math.sin(n / 400)) * n / RATE))
        for n in range(count)
    ]
    return array.array("h", samples).tobytes()


class World(abc.ABC):
    """A driver under test and its outside world: the subscriber's handset, the caller."""

    def __init__(self) -> None:
        self.events: list[LineEvent] = []
        self.line: LineDriver

    def emit(self, event: LineEvent) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    async def until(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not ready():
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what}: events {self.events}")
            await asyncio.sleep(0.005)

    # the handset on the station
    @abc.abstractmethod
    async def lift(self) -> None: ...

    @abc.abstractmethod
    async def hang(self) -> None: ...

    @abc.abstractmethod
    async def press(self, keys: str) -> None: ...

    # the caller on the trunk (drivers with one)
    async def call(self, caller: str | None) -> None:
        """Ring the box twice; ``caller`` is sent as caller ID ("P" for withheld)."""
        raise NotImplementedError

    async def caller_press(self, keys: str) -> None:
        raise NotImplementedError

    async def caller_says(self, pcm: bytes, path: Path) -> None:
        """The caller speaks ``pcm`` (``path``: where a WAV of it may be written)."""
        raise NotImplementedError

    async def caller_hangs_up(self) -> None:
        raise NotImplementedError

    def heard(self, pcm: bytes) -> bytes:
        """What the trunk can deliver of ``pcm`` (a modem's 8-bit samples lose precision)."""
        return pcm


class SimWorld(World):
    def __init__(self, tmp_path: Path) -> None:
        super().__init__()
        self.socket_path = tmp_path / "sim.sock"
        self.line = SimLine(self.emit, self.socket_path, ring_on_s=0.05, ring_off_s=0.05)
        self.calls: list[asyncio.Task[str]] = []

    async def send(self, command: str) -> str:
        return await sim_command(self.socket_path, command)

    async def ok(self, command: str) -> None:
        answer = await self.send(command)
        assert answer == "ok", f"{command!r}: {answer}"

    async def lift(self) -> None:
        await self.ok("handset offhook")

    async def hang(self) -> None:
        await self.ok("handset onhook")

    async def press(self, keys: str) -> None:
        await self.ok(f"handset press {keys}")

    async def call(self, caller: str | None) -> None:
        number = {None: "", "P": " withheld"}.get(caller, f" {caller}")
        self.calls.append(asyncio.create_task(self.send(f"remote call{number}")))
        await self.until(lambda: len(self.of(Ring)) >= 2, "two rings")

    async def caller_press(self, keys: str) -> None:
        await self.ok(f"remote press {keys}")

    async def caller_says(self, pcm: bytes, path: Path) -> None:
        write_wav(path, pcm)
        await self.ok(f"remote say {path}")

    async def caller_hangs_up(self) -> None:
        await self.ok("remote hangup")


class SlicWorld(World):
    def __init__(self, tmp_path: Path) -> None:
        super().__init__()
        self.line = GpioSlicLine.from_profile(load_fake_profile(tmp_path), self.emit, tmp_path)

    @property
    def handset(self) -> Any:
        assert isinstance(self.line, GpioSlicLine) and self.line.fake_handset is not None
        return self.line.fake_handset

    async def lift(self) -> None:
        await self.handset.lift()

    async def hang(self) -> None:
        await self.handset.hang()

    async def press(self, keys: str) -> None:
        await self.handset.press(keys)


class ModemWorld(World):
    def __init__(self, sim: ModemSimulator) -> None:
        super().__init__()
        self.sim = sim
        self.line = V253ModemLine(
            self.emit, sim.port, family=sim.family.name, off_hook_settle_s=0.0
        )

    async def lift(self) -> None:
        self.sim.lift_handset()
        await self.until(lambda: bool(self.of(OffHook)), "off-hook")

    async def hang(self) -> None:
        self.sim.hang_up_handset()
        await self.until(lambda: bool(self.of(OnHook)), "on-hook")

    async def press(self, keys: str) -> None:
        before = len(self.of(Digit))
        self.sim.press(keys)
        await self.until(lambda: len(self.of(Digit)) == before + len(keys), "keys")

    async def call(self, caller: str | None) -> None:
        self.sim.ring()  # caller ID comes between the first and the second ring
        await self.until(lambda: len(self.of(Ring)) == 1, "first ring")
        if caller is not None:
            self.sim.caller_id(caller)
        self.sim.ring()
        await self.until(lambda: len(self.of(Ring)) == 2, "second ring")

    async def caller_press(self, keys: str) -> None:
        await self.press(keys)

    async def caller_says(self, pcm: bytes, path: Path) -> None:
        await self.until(lambda: "AT+VRX" in self.sim.commands, "+VRX")
        await asyncio.sleep(0.05)  # the CONNECT reaches the driver
        assert self.sim.say(pcm)

    async def caller_hangs_up(self) -> None:
        self.sim.remote_hangup("b")

    def heard(self, pcm: bytes) -> bytes:
        return to_s16le(convert_s16le(pcm, "u8"), "u8")


def write_wav(path: Path, pcm: bytes) -> None:
    import wave

    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(pcm)


@contextlib.asynccontextmanager
async def world(driver: str, tmp_path: Path) -> AsyncIterator[World]:
    with contextlib.ExitStack() as stack:
        the_world: World
        if driver == "sim":
            the_world = SimWorld(tmp_path)
        elif driver == "gpio-slic":
            the_world = SlicWorld(tmp_path)
        else:
            the_world = ModemWorld(stack.enter_context(ModemSimulator("usr5637")))
        await the_world.line.start()
        try:
            yield the_world
        finally:
            await the_world.line.close()


# --- the station -------------------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_station_reports_lift_keys_and_hang_up(driver: str, tmp_path: Path) -> None:
    async def body() -> None:
        async with world(driver, tmp_path) as w:
            assert isinstance(w.line.station(), Station)
            await w.lift()
            await w.press("31#")
            await w.until(lambda: len(w.of(Digit)) == 3, "three keys")
            await w.hang()
            await w.until(lambda: bool(w.of(OnHook)), "on-hook")
            keys = [(d.key, d.party) for d in w.of(Digit)]
            assert keys == [("3", "handset"), ("1", "handset"), ("#", "handset")]
            assert [type(e) for e in w.events if not isinstance(e, Digit)] == [OffHook, OnHook]

    run(body())


def test_gpio_slic_is_a_station_only_and_the_service_can_ring_it(tmp_path: Path) -> None:
    async def body() -> None:
        async with world("gpio-slic", tmp_path) as w:
            assert w.line.trunk() is None
            station = w.line.station()
            assert station is not None
            station.ring(True)
            assert w.line.status()["ringing"]
            station.ring(False)
            assert not w.line.status()["ringing"]

    run(body())


# --- the trunk ---------------------------------------------------------------------------


def trunk_of(w: World) -> Trunk:
    trunk = w.line.trunk()
    assert isinstance(trunk, Trunk)
    return trunk


@pytest.mark.parametrize("driver", TRUNKS)
@pytest.mark.parametrize(("sent", "caller"), [(NUMBER, NUMBER), ("P", WITHHELD)])
def test_a_call_rings_with_its_caller_id_and_is_not_answered_without_answer(
    driver: str, sent: str, caller: str, tmp_path: Path
) -> None:
    async def body() -> None:
        async with world(driver, tmp_path) as w:
            await w.call(sent)
            assert w.of(Ring)[1].caller == caller
            await asyncio.sleep(0.3)
            status = w.line.status()
            assert not w.of(RemoteAnswered)
            assert status.get("ringing") is True or status.get("call") == "ringing"
            trunk_of(w).answer()
            await w.until(lambda: bool(w.of(RemoteAnswered)), "answer")

    run(body())


@pytest.mark.parametrize("driver", TRUNKS)
def test_an_answered_caller_keys_speaks_and_hangs_up(driver: str, tmp_path: Path) -> None:
    async def body() -> None:
        async with world(driver, tmp_path) as w:
            await w.call(None)
            trunk = trunk_of(w)
            trunk.answer()
            await w.until(lambda: bool(w.of(RemoteAnswered)), "answer")
            await w.caller_press("7*")
            await w.until(lambda: len(w.of(Digit)) == 2, "caller keys")
            assert [(d.key, d.party) for d in w.of(Digit)] == [("7", "remote"), ("*", "remote")]
            chunks: list[bytes] = []
            trunk.start_capture(chunks.append)
            voice = speech(0.5)
            await w.caller_says(voice, tmp_path / "voice.wav")
            expected = w.heard(voice)
            await w.until(lambda: expected in b"".join(chunks), "the caller's audio")
            # Before the words, only the line's silence (a real line never stops sending).
            heard = b"".join(chunks)
            assert not any(heard[: heard.find(expected)])
            trunk.stop_capture()
            await w.caller_hangs_up()
            await w.until(lambda: bool(w.of(RemoteHangup)), "caller hang-up")

    run(body())


@pytest.mark.parametrize("driver", TRUNKS)
def test_a_caller_who_hangs_up_while_it_rings_is_a_remote_hangup(
    driver: str, tmp_path: Path
) -> None:
    async def body() -> None:
        async with world(driver, tmp_path) as w:
            await w.call(NUMBER)
            await w.caller_hangs_up()
            await w.until(lambda: bool(w.of(RemoteHangup)), "hang-up before the answer")
            assert not w.of(RemoteAnswered)

    run(body())
