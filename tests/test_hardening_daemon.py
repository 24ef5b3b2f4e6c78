"""Issue 15 (hardening), through the real daemon as a subprocess: what a careless operator or an
attacker meets on the console, the sockets and the state directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.daemon_process import DaemonProcess, make_profile
from tests.test_daemon_e2e import create_code

CODE = "5827"


@pytest.fixture
def daemon(tmp_path: Path):
    proc = DaemonProcess(tmp_path, make_profile(tmp_path)).start()
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        proc.stop()


def test_after_an_error_on_the_handset_status_shows_no_key_in_clear(daemon) -> None:
    create_code(daemon, CODE)
    events = daemon.events()
    for command in ("offhook", "press 3103", "press 3", "press 2", "press 1", "press 1357#"):
        assert daemon.sim(f"handset {command}") == "ok"
    daemon.state_file.write_text('{"mailbox": {"1": {"fail')  # the disk went bad under us
    assert daemon.sim("handset press 1") == "ok"  # keep the new code: storing it fails
    events.wait_for(lambda e: e["type"] == "tone" and e["name"] == "congestion")
    assert daemon.sim("handset press *****1*****4931#") == "ok"
    status = json.loads(daemon.ctl("status --json"))
    assert status["line"]["last_keys"].endswith("*" * 16)
    assert "4931" not in daemon.ctl("status") + daemon.ctl("line")
    assert all(e["key"] == "masked" for e in events.of_type("key")[-16:])
    assert daemon.sim("handset onhook") == "ok"
