"""The sim line's socket: the caller's number and voice, and what it refuses (DESIGN.md §6)."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from gatewayd.client import SimClient
from gatewayd.events import (
    WITHHELD,
    Answer,
    LineEvent,
    OffHook,
    RemoteAnswered,
    RemoteHangup,
    Ring,
    RingStation,
)
from gatewayd.line import sim
from gatewayd.line.sim import SimLine
from gatewayd.pcm import PERIOD_BYTES, RATE
from gatewayd.voicemail.config import Mailbox, VoicemailConfig
from gatewayd.voicemail.ivr import Ivr
from gatewayd.voicemail.policy import SecretCodeService
from tests.conftest import FAST_POLICY
from tests.daemon_process import DaemonProcess, make_profile
from tests.harness import FakeClock

NUMBER = "0612345678"


def run(body: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(body, 30))


async def sim_command(socket_path: Path, command: str) -> str:
    """One command on its own connection to a sim socket; the answer line."""
    reader, writer = await asyncio.open_unix_connection(str(socket_path))
    try:
        writer.write(command.encode() + b"\n")
        await writer.drain()
        return (await reader.readline()).decode().strip()
    finally:
        writer.close()


class Rig:
    def __init__(self, line: SimLine) -> None:
        self.line = line
        self.events: list[LineEvent] = []
        self.audio: list[bytes] = []

    async def send(self, command: str) -> str:
        return await sim_command(self.line.socket_path, command)

    async def until_rings(self, count: int) -> None:
        while len([e for e in self.events if isinstance(e, Ring)]) < count:
            await asyncio.sleep(0.005)

    async def connected_call(self) -> None:
        call = asyncio.create_task(self.send("remote call"))
        await self.until_rings(1)
        trunk = self.line.trunk()
        assert trunk is not None
        trunk.start_capture(self.audio.append)
        trunk.answer()
        assert await call == "ok"


@asynccontextmanager
async def sim_line(tmp_path: Path) -> AsyncIterator[Rig]:
    rig: Rig
    line = SimLine(
        lambda e: rig.events.append(e), tmp_path / "sim.sock", ring_on_s=0.01, ring_off_s=0.01
    )
    rig = Rig(line)
    await line.start()
    try:
        yield rig
    finally:
        await line.close()


def wav(path: Path, pcm: bytes, *, rate: int = RATE, width: int = 2, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(pcm)
    return path


def test_remote_call_gives_the_caller_id_and_withheld(tmp_path: Path) -> None:
    async def body() -> None:
        async with sim_line(tmp_path) as rig:
            for argument, caller in ((NUMBER, NUMBER), ("withheld", WITHHELD), ("", None)):
                rig.events.clear()
                call = asyncio.create_task(rig.send(f"remote call {argument}".strip()))
                await rig.until_rings(2)
                assert {e.caller for e in rig.events if isinstance(e, Ring)} == {caller}
                assert not any(isinstance(e, RemoteAnswered) for e in rig.events)
                assert await rig.send("remote hangup") == "ok"
                assert await call == "ok"  # the caller hung up: the call command ends

    run(body())


@pytest.mark.parametrize("number", ["06-12", "1" * 21, "abc", "1 2"])
def test_a_malformed_caller_number_is_refused_and_nothing_rings(
    number: str, tmp_path: Path
) -> None:
    async def body() -> None:
        async with sim_line(tmp_path) as rig:
            answer = await rig.send(f"remote call {number}")
            assert answer.startswith("error ")
            assert rig.events == [] and rig.line.status()["remote"] == "idle"

    run(body())


def test_lifting_the_handset_while_it_rings_takes_the_call(tmp_path: Path) -> None:
    async def body() -> None:
        async with sim_line(tmp_path) as rig:
            call = asyncio.create_task(rig.send(f"remote call {NUMBER}"))
            await rig.until_rings(1)
            assert await rig.send("handset offhook") == "ok"
            assert await call == "ok"
            rings = len([e for e in rig.events if isinstance(e, Ring)])
            await asyncio.sleep(0.1)  # five ring cycles: no more rings
            assert len([e for e in rig.events if isinstance(e, Ring)]) == rings
            assert isinstance(rig.events[-1], OffHook)
            assert rig.line.status()["remote"] == "handset"
            rig.line.answer()  # too late: nothing to answer
            await asyncio.sleep(0)
            assert not any(isinstance(e, RemoteAnswered) for e in rig.events)

    run(body())


def test_the_caller_gives_up_after_the_networks_rings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sim, "MAX_RINGS", 3)

    async def body() -> None:
        async with sim_line(tmp_path) as rig:
            answer = await rig.send("remote call")
            assert answer == "error the call was not answered after 3 rings"
            assert [type(e) for e in rig.events] == [Ring, Ring, Ring, RemoteHangup]
            assert rig.line.status()["remote"] == "idle"

    run(body())


def test_remote_say_streams_the_wav_in_periods_as_the_callers_voice(tmp_path: Path) -> None:
    pcm = bytes(range(256)) * 25  # 3200 frames: 0.4 s, not a whole number of periods

    async def body() -> None:
        async with sim_line(tmp_path) as rig:
            await rig.connected_call()
            assert await rig.send(f"remote say {wav(tmp_path / 'v.wav', pcm)}") == "ok"
            # Around the words, the line's silence, period by period, as a real line gives.
            said = [chunk for chunk in rig.audio if any(chunk)]
            assert b"".join(said) == pcm
            assert {len(chunk) for chunk in said[:-1]} == {PERIOD_BYTES}
            silent = [chunk for chunk in rig.audio if not any(chunk)]
            assert all(chunk == bytes(PERIOD_BYTES) for chunk in silent)

    run(body())


def test_remote_say_without_a_capture_drops_the_audio(tmp_path: Path) -> None:
    async def body() -> None:
        async with sim_line(tmp_path) as rig:
            await rig.connected_call()
            rig.line.stop_capture()
            before = len(rig.audio)  # the line's silence, until the capture stopped
            assert await rig.send(f"remote say {wav(tmp_path / 'v.wav', b'12' * 400)}") == "ok"
            assert len(rig.audio) == before

    run(body())


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: d / "missing.wav", "file not found"),
        (lambda d: wav(d / "w.wav", b"\1\0" * 800, rate=16000), "16000 Hz"),
        (lambda d: wav(d / "w.wav", b"\1\0" * 800, channels=2), "2 channel(s)"),
        (lambda d: wav(d / "w.wav", b"\1" * 800, width=1), "8-bit"),
        (lambda d: wav(d / "w.wav", b"\1\0" * RATE * 2), "too long"),
        (lambda d: d, "is a directory"),
        (lambda d: (d / "t.txt").write_text("hello") and d / "t.txt", "not a PCM WAV file"),
    ],
)
def test_remote_say_refuses_a_bad_file_and_sends_nothing(
    make: Any, reason: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sim, "MAX_SAY_S", 1.0)

    async def body() -> None:
        async with sim_line(tmp_path) as rig:
            await rig.connected_call()
            answer = await rig.send(f"remote say {make(tmp_path)}")
            assert answer.startswith("error ") and reason in answer
            assert not [chunk for chunk in rig.audio if any(chunk)]  # only the line's silence

    run(body())


def test_remote_say_needs_a_connected_call(tmp_path: Path) -> None:
    async def body() -> None:
        async with sim_line(tmp_path) as rig:
            path = wav(tmp_path / "v.wav", b"\0\0" * 800)
            assert (await rig.send(f"remote say {path}")).startswith("error no remote call")
            assert (await rig.send("remote say")).startswith("error remote say takes")

    run(body())


def test_the_station_ringing_shows_in_the_status(tmp_path: Path) -> None:
    async def body() -> None:
        async with sim_line(tmp_path) as rig:
            station = rig.line.station()
            assert station is not None
            station.ring(True)
            assert rig.line.status()["station_ringing"] is True
            assert await rig.send("handset offhook") == "ok"  # a lift stops it
            assert rig.line.status()["station_ringing"] is False

    run(body())


# --- the daemon ----------------------------------------------------------------------------


def test_lifting_the_handset_while_it_rings_stops_the_daemon_answering(tmp_path: Path) -> None:
    profile = make_profile(
        tmp_path,
        **{
            "answer_after_rings = 2": "answer_after_rings = 3",
            "ring_on_s = 1.5": "ring_on_s = 1.5",
            "ring_off_s = 3.5": "ring_off_s = 3.5",  # 10 s to the 3rd ring,
        },
    )
    daemon = DaemonProcess(tmp_path, profile).start()
    try:
        events = daemon.events()
        with daemon_sim_async(daemon, "remote call") as call:
            events.wait_for(lambda e: e["type"] == "ring")
            assert daemon.sim("handset offhook") == "ok"
            assert call() == "ok"
        start = events.wait_for(lambda e: e["type"] == "call" and e["state"] == "start")
        assert (start["party"], start.get("by")) == ("remote", "handset"), events.items
        # The subscriber took it: the box stays out (no greeting, no menu, no recording).
        assert not [e for e in events.items if e["type"] in ("prompt", "menu", "tone")]
        assert daemon.sim("handset onhook") == "ok"
        end = events.wait_for(lambda e: e["type"] == "call" and e["state"] == "end")
        assert end["party"] == "remote" and end["reason"] == "hangup"
    finally:
        daemon.stop()


class daemon_sim_async:
    """Send a sim command on its own connection and thread; the value waits for its answer."""

    def __init__(self, daemon: DaemonProcess, command: str) -> None:
        import concurrent.futures

        def send() -> str:
            with SimClient(daemon.runtime_dir) as client:
                return client.send(command)

        self._pool = concurrent.futures.ThreadPoolExecutor(1)
        self._future = self._pool.submit(send)

    def __enter__(self) -> Any:
        return lambda: self._future.result(timeout=30)

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)


# --- the service answers, not the driver ---------------------------------------------------


def test_the_service_answers_at_the_profiles_ring_unless_the_handset_is_lifted(
    service: SecretCodeService, clock: FakeClock
) -> None:
    config = VoicemailConfig(policy=FAST_POLICY, mailbox=Mailbox(answer_after_rings=3))
    ivr = Ivr(service, config, clock)
    rings = [ivr.handle(Ring(NUMBER)) for _ in range(3)]
    assert rings == [[RingStation(on=True)], [], [RingStation(on=False), Answer()]]
    ivr.handle(RemoteHangup())  # the caller gave up: the next call counts afresh
    assert ivr.handle(Ring()) == [RingStation(on=True)] and ivr.handle(Ring()) == []
    lifted = ivr.handle(OffHook())  # the subscriber takes the call: the box never answers it
    assert RingStation(on=False) in lifted
    assert all(Answer() not in ivr.handle(Ring()) for _ in range(5))


def test_the_log_says_who_hung_up(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        async with sim_line(tmp_path) as rig:
            await rig.connected_call()
            assert await rig.send("remote hangup") == "ok"
            trunk = rig.line.trunk()
            assert trunk is not None
            trunk.hang_up()  # the service's reaction to RemoteHangup: nothing left to hang up

    caplog.set_level("INFO", logger="gatewayd.line.sim")
    run(body())
    said = [r.getMessage() for r in caplog.records]
    assert "sim: the remote caller hung up" in said
    assert "sim: the box hung up the remote call" not in said
