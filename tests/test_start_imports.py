"""What ``gatewayd run --profile sim`` imports before READY=1 (issue 13 point 2).

On the box's SoC every module costs start time and memory: a sim or SLIC
``run`` loads only what its profile uses. The console, the self-test, the
provisioning tool, the modem drivers (and pyserial with them), numpy and
tomlkit load when something asks for them, never at start. The daemon runs as
a subprocess (tests/imports_child.py lists ``sys.modules`` at READY=1); no timing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.daemon_process import REPO, make_profile
from tests.test_gpio_slic import fake_profile_text

#: Loaded on demand only: the first control client, the console's ``selftest``, a modem...
NOT_AT_START = {
    "gatewayd.console",
    "gatewayd.selftest",
    "gatewayd.provision",
    "gatewayd.serial_console",
    "gatewayd.client",
    "gatewayd.phone",
    "gatewayd.line.at",
    "gatewayd.line.v253",
    "gatewayd.line.modem_sim",
    "gatewayd.line.gpio_slic",
    "gatewayd.gpio",
    "gatewayd.dtmf",
    "gatewayd.usp",
    "serial",
    "numpy",
    "tomlkit",
    "ssl",  # asyncio loads it unless told there is none: the daemon speaks no TLS
    "importlib.resources",  # and with it tempfile, shutil, lzma, bz2: package data by path
    "tempfile",
    "gatewayd.eventtypes",  # declarations for the type checker and the tests
}
#: What a sim run needs: without these the test would pass on a daemon that did nothing.
AT_START = {"gatewayd.daemon", "gatewayd.line.sim", "gatewayd.voicemail.ivr", "tinydb"}
READY_TIMEOUT_S = 30.0


def modules_at_ready(tmp: Path, profile: Path | None = None) -> set[str]:
    out = tmp / "modules.txt"
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.imports_child",
            str(out),
            "run",
            "--profile",
            str(profile or make_profile(tmp)),
            "--state-dir",
            str(tmp / "state"),
            "--runtime-dir",
            str(tmp / "run"),
        ],
        cwd=REPO,
        env={**os.environ, "NOTIFY_SOCKET": ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S  # a safety net, not a measurement
        while not out.exists():
            assert child.poll() is None, child.communicate()[1].decode()
            assert time.monotonic() < deadline, "the daemon never got ready"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGTERM)
        child.communicate(timeout=READY_TIMEOUT_S)
    return set(out.read_text().split())


def test_sim_run_imports_only_what_its_profile_uses(tmp_path: Path) -> None:
    modules = modules_at_ready(tmp_path)
    assert modules >= AT_START
    loaded = {m for m in modules if m in NOT_AT_START or m.split(".")[0] in NOT_AT_START}
    loaded |= {m for m in modules for lazy in NOT_AT_START if m.startswith(lazy + ".")}
    assert loaded == set()


def loaded_of(modules: set[str], lazy: set[str]) -> set[str]:
    return {m for m in modules for name in lazy if m == name or m.startswith(name + ".")}


def test_a_slic_run_loads_its_gpio_code_but_no_modem_console_or_inband_dtmf(
    tmp_path: Path,
) -> None:
    pepper = tmp_path / "pepper"  # a hardware profile is provisioned, never makes one
    pepper.write_bytes(os.urandom(32))
    pepper.chmod(0o600)
    profile = tmp_path / "fake-slic.toml"  # the shipped Pi profile on the fake GPIO backend
    profile.write_text(fake_profile_text(**{'pepper_file = "pepper"': f'pepper_file = "{pepper}"'}))
    modules = modules_at_ready(tmp_path, profile)
    assert modules >= {"gatewayd.line.gpio_slic", "gatewayd.gpio", "gatewayd.voicemail.ivr"}
    lazy = NOT_AT_START - {"gatewayd.line.gpio_slic", "gatewayd.gpio"}
    assert loaded_of(modules, lazy) == set()
