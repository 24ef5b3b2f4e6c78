"""systemd integration: sd_notify datagrams (READY, watchdog pings from the loop) and journald logs.

The daemon runs in-process on its own loop thread; the test binds the
``$NOTIFY_SOCKET`` datagram socket systemd would.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayd import logsetup
from gatewayd.daemon import Daemon
from gatewayd.profile import load_profile
from gatewayd.sdnotify import notify, watchdog_interval
from tests.daemon_process import make_profile

#: Ping period asked of the daemon in these tests: WATCHDOG_USEC / 2.
PING_S = 0.05


def receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(10)
    return sock


# --- the protocol ---------------------------------------------------------------------------


def test_notify_sends_one_datagram_to_a_path(tmp_path: Path, monkeypatch) -> None:
    with receiver(str(tmp_path / "notify")) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
        assert notify("READY=1\nSTATUS=serving sim") is True
        assert sock.recv(4096) == b"READY=1\nSTATUS=serving sim"


def test_an_at_sign_means_the_abstract_namespace(monkeypatch) -> None:
    name = f"gatewayd-test-{uuid.uuid4().hex}"
    with receiver("\0" + name) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify("WATCHDOG=1") is True
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_without_systemd_notify_does_nothing(monkeypatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False


def test_a_vanished_socket_is_a_warning_not_a_crash(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert notify("WATCHDOG=1") is False
    assert "sd_notify" in caplog.text


@pytest.mark.parametrize(
    ("usec", "pid", "interval"),
    [
        ("4000000", None, 2.0),
        ("4000000", "self", 2.0),
        ("4000000", "1", None),  # meant for another process
        (None, None, None),
        ("soon", None, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch, usec, pid, interval) -> None:
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(os.getpid()) if value == "self" else value)
    assert watchdog_interval() == interval


# --- the daemon --------------------------------------------------------------------------------


class Collector:
    """Datagrams from the daemon, with what was true on disk when READY=1 came."""

    def __init__(self, sock: socket.socket, ready_check) -> None:
        self.sock = sock
        self.messages: list[str] = []
        self.ready_facts: dict[str, bool] = {}
        self._cond = threading.Condition()
        self._ready_check = ready_check
        self._paused = threading.Event()
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.05)
        while True:
            if self._paused.is_set():
                self._idle.set()  # acknowledged: this thread no longer reads
                self._paused.wait()
                while self._paused.is_set():
                    time.sleep(0.01)
                self._idle.clear()
                continue
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._cond:
                if b"READY=1" in data.split(b"\n"):
                    self.ready_facts = self._ready_check()
                self.messages.append(data.decode())
                self._cond.notify_all()

    def wait_for(self, count: int, text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(text in m for m in self.messages) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{count} x {text!r} not received: {self.messages}"
                self._cond.wait(left)

    def pause(self) -> None:
        """Stop reading (the loop's own check reads the socket meanwhile)."""
        self._paused.set()
        assert self._idle.wait(5)

    def resume(self) -> None:
        self._paused.clear()


@pytest.fixture
def daemon_with_watchdog(
    tmp_path: Path, monkeypatch
) -> Iterator[tuple[Daemon, Collector, asyncio.AbstractEventLoop]]:
    address = str(tmp_path / "notify.sock")
    sock = receiver(address)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", str(int(PING_S * 2 * 1_000_000)))
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    state, run = tmp_path / "state", tmp_path / "run"
    daemon = Daemon(load_profile(make_profile(tmp_path)), state, run)

    def ready_facts() -> dict[str, bool]:
        return {
            "state file": (state / "gatewayd.json").exists(),
            "line socket": (run / "sim.sock").exists(),
            "control socket": (run / "ctl.sock").exists(),
        }

    collector = Collector(sock, ready_facts)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(daemon.start(), loop).result(20)
    yield daemon, collector, loop
    asyncio.run_coroutine_threadsafe(daemon.close(), loop).result(20)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()
    sock.close()


def test_ready_once_the_store_and_the_line_are_up_then_watchdog_pings(
    daemon_with_watchdog,
) -> None:
    _, collector, _ = daemon_with_watchdog
    collector.wait_for(1, "READY=1")
    assert collector.messages[0].startswith("READY=1\nSTATUS=serving ")
    assert collector.ready_facts == {
        "state file": True,
        "line socket": True,
        "control socket": True,
    }
    collector.wait_for(3, "WATCHDOG=1")
    assert all(m == "WATCHDOG=1" for m in collector.messages[1:])


def test_pings_stop_while_the_loop_is_blocked_and_resume_after(daemon_with_watchdog) -> None:
    _, collector, loop = daemon_with_watchdog
    collector.wait_for(2, "WATCHDOG=1")
    collector.pause()
    blocked = asyncio.run_coroutine_threadsafe(_block_and_count(collector.sock), loop)
    queued_before, queued_during = blocked.result(10)
    assert queued_before >= 1  # the pings were flowing up to the block
    assert queued_during == 0  # a stalled loop sends nothing: systemd would restart it
    collector.resume()
    seen = sum("WATCHDOG=1" in m for m in collector.messages)
    collector.wait_for(seen + 2, "WATCHDOG=1")  # the loop runs again: so do the pings


def test_pings_stop_when_the_state_file_becomes_unreadable(
    daemon_with_watchdog, tmp_path: Path
) -> None:
    _, collector, _ = daemon_with_watchdog
    collector.wait_for(2, "WATCHDOG=1")
    state_file = tmp_path / "state" / "gatewayd.json"
    good = state_file.read_bytes()
    state_file.write_text('{"mailbox": {"1": {"fail')  # the disk went bad under the daemon
    seen = sum("WATCHDOG=1" in m for m in collector.messages)
    time.sleep(6 * PING_S)  # six health checks, all failing
    assert sum("WATCHDOG=1" in m for m in collector.messages) <= seen + 1  # one in flight
    state_file.write_bytes(good)
    collector.wait_for(seen + 3, "WATCHDOG=1")  # readable again: the pings resume


async def _block_and_count(sock: socket.socket) -> tuple[int, int]:
    """On the daemon's loop: drain the notify socket, block 8 ping periods, count what came."""

    def drain() -> int:
        count = 0
        while True:
            try:
                sock.recv(4096, socket.MSG_DONTWAIT)
            except (BlockingIOError, TimeoutError):  # nothing queued (the socket has a timeout)
                return count
            count += 1

    await asyncio.sleep(3 * PING_S)  # let pings queue up while nobody reads
    before = drain()
    time.sleep(8 * PING_S)  # the stall: nothing else runs on this loop meanwhile
    return before, drain()


# --- journald-friendly logs ---------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_priority_prefixes_when_stderr_is_the_journal(
    tmp_path: Path, monkeypatch, restore_logging
) -> None:
    with (tmp_path / "journal").open("w+") as stream:
        status = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{status.st_dev}:{status.st_ino}")
        logsetup.setup_logging("debug", stream=stream)
        logger = logging.getLogger("gatewayd.test")
        logger.info("ready")
        logger.warning("line lost\nretrying")
        logger.debug("detail")
        stream.seek(0)
        assert stream.read().splitlines() == [
            "<6>gatewayd.test: ready",
            "<4>gatewayd.test: line lost",
            "<4>retrying",
            "<7>gatewayd.test: detail",
        ]


def test_timestamps_when_the_journal_stream_is_someone_elses(
    tmp_path: Path, monkeypatch, restore_logging
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "1:1")  # inherited, but our stderr went elsewhere
    with (tmp_path / "log").open("w+") as stream:
        logsetup.setup_logging("info", stream=stream)
        logging.getLogger("gatewayd.test").error("boom")
        stream.seek(0)
        line = stream.read().strip()
    assert not line.startswith("<") and line.endswith("ERROR   gatewayd.test: boom")
    assert line[:4].isdigit()  # 2026-...


def test_the_level_is_set_from_the_profile_and_changed_at_run_time(restore_logging) -> None:
    logsetup.setup_logging("warning")
    assert logsetup.current_level() == "warning"
    logsetup.set_level("trace")
    assert logsetup.current_level() == "trace"
    assert logging.getLogger("gatewayd.line.v253").isEnabledFor(logsetup.TRACE)
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        logsetup.set_level("loud")
