"""``systemd/gatewayd.service``: what systemd itself says of it, and that it fits provision.

``systemd-analyze verify`` needs the ``ExecStart=`` binary to exist: the test
verifies a copy whose ``/usr/local/bin/gatewayd`` is this Python running
``-m gatewayd`` (the same program), with the GPIO drop-in beside it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gatewayd.paths import DEFAULT_ETC_DIR, PEPPER_CREDENTIAL, PROFILE_FILE
from gatewayd.provision import PEPPER_FILE
from tests.daemon_process import REPO

UNIT = REPO / "systemd" / "gatewayd.service"
GPIO_DROP_IN = REPO / "systemd" / "gpio.conf"
INSTALLED_BINARY = "/usr/local/bin/gatewayd"
MAX_EXPOSURE = 2.0

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not installed (Debian package systemd; .ci/run installs it)",
)


def settings(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment, in order (keys may repeat)."""
    found: list[tuple[str, str, str]] = []
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.append((section, key.strip(), value.strip()))
    return found


def values(key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v in settings(UNIT) if (s, k) == (section, key)]


def installable_copy(tmp: Path, unit_text: str | None = None) -> Path:
    """The unit (and the GPIO drop-in) in ``tmp``, runnable here."""
    text = unit_text if unit_text is not None else UNIT.read_text()
    assert f"ExecStart={INSTALLED_BINARY} " in text
    text = text.replace(
        f"ExecStart={INSTALLED_BINARY} ", f"ExecStart={sys.executable} -m gatewayd "
    )
    copy = tmp / "gatewayd.service"
    copy.write_text(text)
    (tmp / "gatewayd.service.d").mkdir(exist_ok=True)
    shutil.copy(GPIO_DROP_IN, tmp / "gatewayd.service.d" / "gpio.conf")
    return copy


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=unit.parent,
    )


@needs_systemd_analyze
def test_systemd_analyze_verify_has_nothing_to_say(tmp_path: Path) -> None:
    result = verify(installable_copy(tmp_path))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@needs_systemd_analyze
def test_verify_does_catch_a_broken_unit(tmp_path: Path) -> None:
    broken = UNIT.read_text().replace("Type=notify", "Type=notfy")
    result = verify(installable_copy(tmp_path, broken))
    assert "notfy" in result.stdout + result.stderr


@needs_systemd_analyze
def test_security_exposure_is_at_most_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=yes",
            f"--threshold={round(MAX_EXPOSURE * 10)}",
            str(installable_copy(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    match = re.search(r"Overall exposure level for gatewayd\.service: (\d+\.\d+)", result.stdout)
    assert match is not None, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE and result.returncode == 0


def test_notify_watchdog_and_restart() -> None:
    assert values("Type") == ["notify"] and values("NotifyAccess") == ["main"]
    assert values("WatchdogSec") and values("Restart") == ["on-failure"]


def test_the_unit_reads_what_provision_writes() -> None:
    (exec_start,) = values("ExecStart")
    assert exec_start == f"{INSTALLED_BINARY} run --profile {DEFAULT_ETC_DIR / PROFILE_FILE}"
    assert values("LoadCredential") == [f"{PEPPER_CREDENTIAL}:{DEFAULT_ETC_DIR / PEPPER_FILE}"]
    assert values("ConditionPathExists", "Unit") == [str(DEFAULT_ETC_DIR / PROFILE_FILE)]
    assert values("StateDirectory") == ["gatewayd"] and values("RuntimeDirectory") == ["gatewayd"]


def test_hardening_and_devices() -> None:
    for key, expected in {
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "DevicePolicy": "closed",
        "SupplementaryGroups": "dialout audio",
        "RestrictAddressFamilies": "AF_UNIX",
        "SystemCallArchitectures": "native",
    }.items():
        assert values(key) == [expected], key
    assert {"char-ttyS rw", "char-ttyACM rw", "char-alsa rw"} <= set(values("DeviceAllow"))
    assert values("SystemCallFilter") == ["@system-service", "~@privileged @resources"]
