"""The code comparison (scrypt) runs off the event loop (issue 13 point 4).

The real daemon runs in-process on the sim profile with a hasher whose
comparison blocks until the test releases it: while it is held, the loop still
answers a ``status`` on the control socket and takes keys, and the try is
already on disk (DESIGN §2.3: counted before the comparison). No timing: the
gate is an Event, every wait is for something the daemon does.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import gatewayd.daemon
from gatewayd.daemon import Daemon
from gatewayd.eventbus import Subscription
from gatewayd.events import Digit, OffHook, OnHook
from gatewayd.paths import CTL_SOCKET, STATE_FILE
from gatewayd.profile import load_profile
from gatewayd.voicemail.auditlog import audit_path
from gatewayd.voicemail.hashing import CodeHasher
from tests.daemon_process import make_profile

CODE = "4739"
WRONG = "5827"
GIVE_UP_S = 30.0  # only a safety net for a broken daemon; never reached when it works


class GatedHasher(CodeHasher):
    """A real hasher whose comparisons wait, once armed, until the test opens the gate."""

    armed = False
    entered = threading.Event()
    gate = threading.Event()

    def verify(self, code: str, salt: bytes, expected: bytes) -> bool:
        if GatedHasher.armed:
            GatedHasher.entered.set()
            if not GatedHasher.gate.wait(GIVE_UP_S):
                raise TimeoutError("the test never opened the gate")
        return super().verify(code, salt, expected)

    def hash(self, code: str, salt: bytes) -> bytes:
        if GatedHasher.armed:
            GatedHasher.entered.set()
            if not GatedHasher.gate.wait(GIVE_UP_S):
                raise TimeoutError("the test never opened the gate")
        return super().hash(code, salt)


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[GatedHasher]]:
    monkeypatch.setattr(gatewayd.daemon, "CodeHasher", GatedHasher)
    GatedHasher.armed = False
    GatedHasher.entered = threading.Event()
    GatedHasher.gate = threading.Event()
    yield GatedHasher
    GatedHasher.gate.set()


def run_with_daemon(tmp_path: Path, body: Callable[[Daemon], Awaitable[None]]) -> None:
    """Start the sim daemon in this process, run ``body`` on its loop, close it."""

    async def main() -> None:
        profile = load_profile(str(make_profile(tmp_path)))
        box = Daemon(profile, tmp_path / "state", tmp_path / "run")
        await box.start()
        try:
            await body(box)
        finally:
            GatedHasher.gate.set()
            await box.close()

    asyncio.run(main())


def failures_on_disk(box: Daemon) -> int:
    data = json.loads((box.state_dir / STATE_FILE).read_bytes())
    (mailbox,) = [d for d in data["mailbox"].values() if d["mailbox"] == "default"]
    return int(mailbox["failures"])


async def next_event(sub: Subscription, kind: str) -> dict[str, Any]:
    while True:
        event = dict(await asyncio.wait_for(sub.queue.get(), GIVE_UP_S))
        if event["type"] == kind:
            return event


async def ctl(box: Daemon, command: str) -> str:
    reader, writer = await asyncio.open_unix_connection(str(box.runtime_dir / CTL_SOCKET))
    writer.write(f"{command}\n".encode())
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), GIVE_UP_S)
    writer.close()
    await writer.wait_closed()
    return answer.decode()


async def key_in_code(box: Daemon, code: str, gated: type[GatedHasher]) -> Subscription:
    """Lift, dial the service with protection on, key ``code#``; the comparison is then held."""
    service = box._service
    assert service is not None
    service.set_code(CODE, "handset")
    service.set_protection(True, "handset")
    box.feed(OffHook())
    for key in "3103":
        box.feed(Digit(key, "handset"))
    gated.armed = True
    for key in f"{code}#":
        box.feed(Digit(key, "handset"))
    sub = box.bus.subscribe()  # what happens from here on
    await asyncio.get_running_loop().run_in_executor(None, gated.entered.wait, GIVE_UP_S)
    assert gated.entered.is_set(), "the comparison never started"
    return sub


def test_the_loop_serves_status_and_keys_while_a_check_runs(
    tmp_path: Path, gated: type[GatedHasher]
) -> None:
    run_with_daemon(tmp_path, lambda box: served_while_held(box, gated))


async def served_while_held(daemon: Daemon, gated: type[GatedHasher]) -> None:
    sub = await key_in_code(daemon, CODE, gated)
    # Held in the worker: the try is on disk already, and the loop answers.
    assert failures_on_disk(daemon) == 1
    status = await ctl(daemon, "status")
    assert "code_check" in status and not gated.gate.is_set()
    daemon.feed(Digit("9", "handset"))  # a key meanwhile: taken (masked), not acted on
    assert (await next_event(sub, "key"))["key"] == "masked"
    assert not gated.gate.is_set()
    gated.gate.set()
    auth = await next_event(sub, "auth")
    assert auth["result"] == "ok" and auth["failures"] == 0
    assert (await next_event(sub, "menu"))["state"] == "main_menu"
    assert failures_on_disk(daemon) == 0


def test_a_hang_up_during_the_check_keeps_the_try_counted(
    tmp_path: Path, gated: type[GatedHasher]
) -> None:
    run_with_daemon(tmp_path, lambda box: hang_up_while_held(box, gated))


async def hang_up_while_held(daemon: Daemon, gated: type[GatedHasher]) -> None:
    sub = await key_in_code(daemon, WRONG, gated)
    daemon.feed(OnHook())
    assert (await next_event(sub, "call"))["state"] == "end"
    gated.gate.set()
    # The verdict still lands: the failure is counted and audited, no call to speak to.
    await asyncio.gather(*daemon._console_tasks)  # the comparison and its verdict
    assert b'"failure"' in audit_path(daemon.state_dir / STATE_FILE).read_bytes()
    assert failures_on_disk(daemon) == 1
    assert daemon.status()["menu"] == "idle"


def test_a_new_code_is_hashed_off_the_loop_and_stored_when_kept(
    tmp_path: Path, gated: type[GatedHasher]
) -> None:
    run_with_daemon(tmp_path, lambda box: create_while_held(box, gated))


async def create_while_held(daemon: Daemon, gated: type[GatedHasher]) -> None:
    sub = daemon.bus.subscribe()
    daemon.feed(OffHook())
    keys = daemon.profile.voicemail.keys
    # 3103, personalise, code, create; the new code and its end key.
    for key in ["3", "1", "0", "3", keys.main_personalise, keys.personalise_code, keys.code_create]:
        daemon.feed(Digit(key, "handset"))
    for key in CODE + keys.end_entry:
        daemon.feed(Digit(key, "handset"))
    while (await next_event(sub, "menu"))["state"] != "code_confirm":
        pass  # the main, personalise, code menus and the entry, until the read-back
    gated.armed = True
    daemon.feed(Digit(keys.confirm_yes, "handset"))  # keep it: the hash runs in the worker
    sub = daemon.bus.subscribe()  # what happens from here on
    await asyncio.get_running_loop().run_in_executor(None, gated.entered.wait, GIVE_UP_S)
    assert gated.entered.is_set(), "the hash never started"
    assert "code_set: no" in await ctl(daemon, "status")  # the loop answers meanwhile
    daemon.feed(Digit(keys.confirm_retry, "handset"))  # ignored while the code is hashed
    assert (await next_event(sub, "key"))["key"] == keys.confirm_retry
    gated.gate.set()
    event = await next_event(sub, "code")  # kept, not retried
    assert event["action"] == "created"
    assert "code_set: yes" in await ctl(daemon, "status")
    assert (await next_event(sub, "menu"))["state"] == "code_menu"
