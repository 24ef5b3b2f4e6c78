"""The USP agent end to end: a real mosquitto (mutual TLS, ACLs), the daemon as a subprocess,
and ``gatewayd advisor`` as a technician would run it.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gatewayd.profile import load_profile
from gatewayd.usp.controller import UspController
from gatewayd.usp.datamodel import MAILBOX
from gatewayd.usp.records import Header, new_msg, wrap
from gatewayd.voicemail.hashing import CodeHasher, create_pepper, load_pepper
from gatewayd.voicemail.policy import SecretCodeService
from gatewayd.voicemail.store import Store
from tests.daemon_process import REPO, DaemonProcess, make_profile
from tests.usp_broker import Mosquitto, Pki, have_mosquitto

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not have_mosquitto(), reason="mosquitto/openssl not installed (.ci/run)"),
]

BOX = "os::00D09E-000042"
ADVISOR = "self::advisor-desk"
VIEWER = "self::helpdesk-viewer"
STRANGER = "self::stranger"
CODE = "4931"
TOPIC = {
    ADVISOR: "usp/controller/advisor",
    VIEWER: "usp/controller/viewer",
    STRANGER: "usp/controller/stranger",
}


@dataclass
class World:
    pki: Pki
    broker: Mosquitto
    certs: dict[str, tuple[Path, Path]]


def _acl() -> list[tuple[str, str, str]]:
    rules = [(BOX, "read", f"usp/agent/{BOX}"), (BOX, "write", "usp/controller/#")]
    for who, topic in TOPIC.items():
        rules += [(who, "read", topic), (who, "write", "usp/agent/#")]
    return rules


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("usp")
    pki = Pki(base / "pki")
    certs = {who: pki.issue(who) for who in (BOX, ADVISOR, VIEWER, STRANGER)}
    broker = Mosquitto(base, pki, _acl()).start()
    yield World(pki, broker, certs)
    broker.stop()


def usp_profile(tmp: Path, world: World, port: int | None = None) -> Path:
    cert, key = world.certs[BOX]
    profile = make_profile(tmp)
    controllers = "".join(
        f'\n[[usp.controller]]\nendpoint_id = "{who}"\ntopic = "{TOPIC[who]}"\n'
        f"roles = {json.dumps(roles)}\n"
        for who, roles in ((ADVISOR, ["advisor"]), (VIEWER, ["viewer"]))
    )
    profile.write_text(
        profile.read_text()
        + f"""
[usp]
broker_url = "mqtts://localhost:{port or world.broker.port}"
endpoint_id = "{BOX}"
vendor_prefix = "GWD"
ca_file = "{world.pki.ca}"
cert_file = "{cert}"
key_file = "{key}"
retry_initial_s = 0.2
retry_multiplier = 2.0
retry_max_s = 1.0
"""
        + controllers
    )
    return profile


def seed_locked_code(tmp: Path, profile: Path) -> None:
    """A box whose code was set from the handset, then locked by ten wrong tries."""
    loaded = load_profile(profile)
    state = tmp / "state"
    state.mkdir()
    create_pepper(state / "pepper")
    policy = loaded.voicemail.policy
    hasher = CodeHasher(load_pepper(state / "pepper"), n=policy.scrypt_n)
    store = Store(state / "gatewayd.json")
    SecretCodeService(store, hasher, policy, time.monotonic).set_code(CODE, "handset")
    store.update_mailbox(failures=10, locked=True)
    store.close()


def wait_for_log(daemon: DaemonProcess, text: str, count: int = 1, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while daemon.log_text().count(text) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} x{count} in the log:\n{daemon.log_text()}")
        time.sleep(0.05)


def advisor_args(world: World, who: str, *command: str, port: int | None = None) -> list[str]:
    cert, key = world.certs[who]
    return [
        sys.executable, "-m", "gatewayd", "advisor",
        "--broker", f"mqtts://localhost:{port or world.broker.port}",
        "--ca", str(world.pki.ca), "--cert", str(cert), "--key", str(key),
        "--endpoint-id", who, "--topic", TOPIC[who], "--timeout", "4",
        *command,
    ]  # fmt: skip


def advisor(
    world: World, who: str, *command: str, port: int | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        advisor_args(world, who, *command, port=port),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )


def ctl_status(daemon: DaemonProcess) -> dict[str, object]:
    status: dict[str, object] = json.loads(daemon.ctl("status --json"))
    return status


@pytest.fixture
def locked_box(tmp_path: Path, world: World) -> Iterator[DaemonProcess]:
    profile = usp_profile(tmp_path, world)
    seed_locked_code(tmp_path, profile)
    daemon = DaemonProcess(tmp_path, profile).start()
    wait_for_log(daemon, "usp: connected")
    yield daemon
    daemon.stop()


class Watch:
    """``gatewayd advisor watch BOX`` running, its JSON lines collected on a thread."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=REPO)
        self.lines: list[dict[str, object]] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(json.loads(line))
                self._cond.notify_all()

    def wait(self, **match: object) -> dict[str, object]:
        deadline = time.monotonic() + 15
        with self._cond:
            while True:
                for line in self.lines:
                    if all(line.get(k) == v for k, v in match.items()):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {match} in {self.lines}")
                self._cond.wait(left)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def test_advisor_resets_a_locked_code_end_to_end(locked_box: DaemonProcess, world: World) -> None:
    watch = Watch(advisor_args(world, ADVISOR, "watch", BOX))
    try:
        watch.wait(type="watching")
        status = advisor(world, ADVISOR, "status", BOX)
        assert status.returncode == 0, status.stderr
        assert f"{MAILBOX}X_GWD_Locked = true" in status.stdout
        assert f"{MAILBOX}X_GWD_CodeSet = true" in status.stdout
        assert "Device.DeviceInfo.ModelName = sim" in status.stdout

        reset = advisor(world, ADVISOR, "reset", BOX, "--ticket", "INC-1234")
        assert reset.returncode == 0, reset.stderr
        assert "code reset (ticket INC-1234)" in reset.stdout
        after = ctl_status(locked_box)
        assert (after["code_set"], after["locked"], after["failures"]) == (False, False, 0)
        watch.wait(type="value_change", path=f"{MAILBOX}X_GWD_Locked", value="false")
        done = watch.wait(type="oper_complete")
        assert done["command_key"] == "INC-1234" and done["box"] == BOX

        replay = advisor(world, ADVISOR, "reset", BOX, "--ticket", "INC-1234")
        assert replay.returncode == 0 and "already carried out" in replay.stdout
        audit = locked_box.ctl("audit 20")
        assert audit.count("reset") == 1 and "ticket INC-1234" in audit and ADVISOR in audit
        assert locked_box.stop() == 0
        watch.wait(type="disconnect", box=BOX)  # R-MTP.7: a Disconnect Record on the way out
    finally:
        watch.close()
    log = locked_box.log_text()
    assert CODE not in log and CODE not in json.dumps(watch.lines)


def test_untrusted_and_read_only_controllers_cannot_reset(
    locked_box: DaemonProcess, world: World
) -> None:
    stranger = advisor(world, STRANGER, "reset", BOX, "--ticket", "INC-9")
    assert stranger.returncode == 1 and "no answer" in stranger.stderr
    viewer = advisor(world, VIEWER, "reset", BOX, "--ticket", "INC-9")
    assert viewer.returncode == 1 and "no advisor role" in viewer.stderr
    assert advisor(world, VIEWER, "status", BOX).returncode == 0  # but may read
    assert ctl_status(locked_box)["locked"] is True
    wait_for_log(locked_box, f"from_id '{STRANGER}' is not a listed controller")


def _client(world: World, who: str, port: int) -> UspController:
    cert, key = world.certs[who]
    context = ssl.create_default_context(cafile=str(world.pki.ca))
    context.load_cert_chain(str(cert), str(key))
    return UspController("localhost", port, who, TOPIC[who], context, timeout_s=5)


async def _garbage_then_status(world: World, port: int) -> dict[str, str]:
    topic = f"usp/agent/{BOX}"
    async with _client(world, ADVISOR, port) as controller:
        get = new_msg("g1", Header.GET)
        get.body.request.get.param_paths.append("Device.")
        for payload, content_type in [
            (b"\x00garbage\xff" * 10, "usp.msg"),
            (b"", None),
            (wrap(get, BOX, ADVISOR) + b"\x00" * 70_000, "usp.msg"),
            (wrap(get, BOX, ADVISOR), "text/plain"),
            (wrap(get, BOX, ADVISOR, version="7.0"), None),
        ]:
            await controller.send_raw(topic, payload, content_type)
        return await controller.get(BOX, topic, [MAILBOX])


def test_garbage_on_the_agent_topic_and_a_broker_restart(tmp_path: Path, world: World) -> None:
    broker = Mosquitto(tmp_path, world.pki, _acl()).start()
    profile = usp_profile(tmp_path, world, port=broker.port)
    seed_locked_code(tmp_path, profile)
    daemon = DaemonProcess(tmp_path, profile).start()
    try:
        wait_for_log(daemon, "usp: connected")
        values = asyncio.run(_garbage_then_status(world, broker.port))
        assert values[f"{MAILBOX}X_GWD_Locked"] == "true"
        log = daemon.log_text()
        assert "not a USP Record" in log and "exceeds max_record_bytes" in log
        assert "is not usp.msg" in log and "Error 7104" in log

        broker.stop()  # mid-session: the service goes on without it
        wait_for_log(daemon, "retry 1 in")
        assert ctl_status(daemon)["locked"] is True  # answered while the agent retries
        broker.start()
        wait_for_log(daemon, "usp: connected", count=2)
        reset = advisor(world, ADVISOR, "reset", BOX, "--ticket", "INC-77", port=broker.port)
        assert reset.returncode == 0, reset.stderr
        assert ctl_status(daemon)["locked"] is False
    finally:
        daemon.stop()
        broker.stop()


def test_without_usp_the_daemon_never_imports_it(tmp_path: Path) -> None:
    probe = (
        "import sys, gatewayd.cli\n"
        "from gatewayd.profile import load_profile\n"
        "assert load_profile('sim').usp is None\n"
        "import gatewayd.daemon\n"
        "print(sorted(m for m in sys.modules if m.startswith(('gatewayd.usp', 'aiomqtt', "
        "'google.protobuf', 'paho'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ},
        check=True,
    )
    assert out.stdout.strip() == "[]"


def test_bad_usp_table_stops_the_start_and_bad_tls_files_only_disable_management(
    tmp_path: Path, world: World
) -> None:
    profile = usp_profile(tmp_path, world)
    text = profile.read_text()
    profile.write_text(text.replace('vendor_prefix = "GWD"', 'vendor_prefix = "gwd"'))
    run = subprocess.run(
        [sys.executable, "-m", "gatewayd", "run", "--profile", str(profile), "--state-dir",
         str(tmp_path / "state"), "--runtime-dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=30, cwd=REPO,
    )  # fmt: skip
    assert run.returncode == 1
    assert f"{profile}: usp.vendor_prefix: expected 2-16 capitals" in run.stderr + run.stdout
    cert, _ = world.certs[BOX]
    profile.write_text(text.replace(str(cert), str(tmp_path / "missing.pem")))
    daemon = DaemonProcess(tmp_path, profile).start()
    try:
        wait_for_log(daemon, "the box runs without operator management")
        assert ctl_status(daemon)["code_set"] is False
    finally:
        daemon.stop()


def test_a_broker_that_refuses_the_box_is_retried_with_back_off(
    tmp_path: Path, world: World
) -> None:
    rogue_cert, rogue_key = Pki(tmp_path / "rogue").issue(BOX)  # not signed by the operator CA
    cert, key = world.certs[BOX]
    profile = usp_profile(tmp_path, world)
    profile.write_text(
        profile.read_text().replace(str(cert), str(rogue_cert)).replace(str(key), str(rogue_key))
    )
    daemon = DaemonProcess(tmp_path, profile).start()
    try:
        wait_for_log(daemon, "retry 3 in")
        assert "usp: connected" not in daemon.log_text()
        assert ctl_status(daemon)["code_set"] is False  # the service is there all along
    finally:
        daemon.stop()


def test_provision_installs_a_matching_certificate_and_key(tmp_path: Path, world: World) -> None:
    from gatewayd.usp.provision import UspProvisionError, provision_usp_identity

    cert, key = world.certs[BOX]
    _, other_key = world.certs[ADVISOR]
    with pytest.raises(UspProvisionError, match="not a PEM certificate and its private key"):
        provision_usp_identity(cert, other_key, tmp_path / "etc")
    assert not (tmp_path / "etc" / "usp-key.pem").exists()
    installed_cert, installed_key = provision_usp_identity(cert, key, tmp_path / "etc")
    assert installed_key.read_bytes() == key.read_bytes()
    assert (installed_cert.stat().st_mode & 0o777, installed_key.stat().st_mode & 0o777) == (
        0o644,
        0o600,
    )


async def _boot_after_restart(world: World, daemon: DaemonProcess) -> list[str]:
    topic = f"usp/agent/{BOX}"
    async with _client(world, ADVISOR, world.broker.port) as controller:
        await controller.subscribe(BOX, topic, "Event", ["Device.Boot!"], persistent=True)
        await asyncio.to_thread(daemon.stop)
        await asyncio.to_thread(daemon.start)
        seen: list[str] = []
        while "Boot!" not in seen:
            item = await asyncio.wait_for(controller.received.get(), 20)
            if item.msg is not None:
                seen.append(item.msg.body.request.notify.event.event_name)
            else:
                seen.append(item.kind)
        return seen


def test_boot_reaches_a_persistent_subscriber_after_a_restart(tmp_path: Path, world: World) -> None:
    daemon = DaemonProcess(tmp_path, usp_profile(tmp_path, world)).start()
    try:
        wait_for_log(daemon, "usp: connected")
        seen = asyncio.run(_boot_after_restart(world, daemon))
        # Disconnect on the way down, Connect and Boot! on the way up (R-MTP.6/7).
        assert seen == ["disconnect", "mqtt_connect", "Boot!"]
    finally:
        daemon.stop()
