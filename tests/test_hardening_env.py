"""Issue 15 point 5: every broken environment gets one clear line (the path and the fix), a
documented exit code (1: the daemon cannot start, 2: the profile), no traceback, no hang, and
nothing left behind. Each case runs the real ``gatewayd run`` as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.daemon_process import DaemonProcess, make_profile
from tests.test_hardening_daemon import run_gatewayd


@dataclass
class Box:
    """Where one broken start happens."""

    tmp: Path
    profile: Path
    state_dir: Path
    runtime_dir: Path

    @property
    def state_file(self) -> Path:
        return self.state_dir / "gatewayd.json"


def _state_dir_is_a_file(box: Box) -> None:
    box.state_dir.write_text("not a directory\n")


def _runtime_dir_too_long(box: Box) -> None:
    box.runtime_dir = box.tmp / ("r" * 120)


def _ctl_sock_is_a_directory(box: Box) -> None:
    (box.runtime_dir / "ctl.sock").mkdir(parents=True)


def _state_file_dangling_symlink(box: Box) -> None:
    box.state_dir.mkdir()
    box.state_file.symlink_to(box.tmp / "moved-away.json")


def _state_file_is(content: str) -> Callable[[Box], None]:
    def setup(box: Box) -> None:
        box.state_dir.mkdir()
        box.state_file.write_text(content)

    return setup


def _state_file_fifo(box: Box) -> None:
    box.state_dir.mkdir()
    os.mkfifo(box.state_file)


def _pepper(path: str) -> Callable[[Box], None]:
    def setup(box: Box) -> None:
        box.profile = make_profile(box.tmp, **{'pepper_file = "pepper"': f'pepper_file = "{path}"'})

    return setup


def _pepper_fifo(box: Box) -> None:
    os.mkfifo(box.tmp / "pepper.fifo")
    _pepper(str(box.tmp / "pepper.fifo"))(box)


def _profile_fifo(box: Box) -> None:
    box.profile = box.tmp / "profile.toml"
    os.mkfifo(box.profile)


def _profile_dev_zero(box: Box) -> None:
    box.profile = Path("/dev/zero")


CASES: dict[str, tuple[Callable[[Box], None], int, str]] = {
    "state dir is a file": (_state_dir_is_a_file, 1, "is not a directory"),
    "runtime dir too long for AF_UNIX": (_runtime_dir_too_long, 1, "longer than the 107"),
    "ctl.sock is a directory": (
        _ctl_sock_is_a_directory,
        1,
        "ctl.sock: exists and is not a socket",
    ),
    "state file dangling symlink": (
        _state_file_dangling_symlink,
        1,
        "is a symlink to",
    ),
    "state file {}": (_state_file_is("{}"), 1, "no schema version"),
    "state file of another program": (_state_file_is('{"_default": {}}'), 1, "no schema version"),
    "state file FIFO": (_state_file_fifo, 1, "is a FIFO"),
    "state file 5000-digit integer": (
        _state_file_is('{"meta": {"1": {"schema": ' + "7" * 5000 + "}}}"),
        1,
        "does not parse",
    ),
    "state file nested 100000 deep": (
        _state_file_is("[" * 100_000 + "]" * 100_000),
        1,
        "does not parse",
    ),
    "pepper /dev/zero": (_pepper("/dev/zero"), 1, "the pepper is not a regular file"),
    "pepper FIFO": (_pepper_fifo, 1, "the pepper is a FIFO"),
    "profile /dev/zero": (_profile_dev_zero, 2, "the profile is not a regular file"),
    "profile FIFO": (_profile_fifo, 2, "the profile is a FIFO"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_broken_environment_gets_one_clear_line(tmp_path: Path, case: str) -> None:
    setup, code, message = CASES[case]
    box = Box(tmp_path, make_profile(tmp_path), tmp_path / "state", tmp_path / "run")
    setup(box)
    before = sorted(p.name for p in box.state_dir.iterdir()) if box.state_dir.is_dir() else None
    try:
        result = run_gatewayd(box.profile, box.state_dir, box.runtime_dir, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{case}: gatewayd hung at start")
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert message in output, output
    assert "Traceback" not in output, output
    # Nothing left behind: no socket, and a state we refused is exactly as it was.
    if box.runtime_dir.is_dir():
        assert not [p for p in box.runtime_dir.iterdir() if p.is_socket()]
    if before is not None and code == 1 and "state" in case:
        after = sorted(p.name for p in box.state_dir.iterdir())
        assert set(after) - set(before) <= {"gatewayd.lock"}, after
    if case == "state file dangling symlink":
        assert box.state_file.is_symlink() and not (box.tmp / "moved-away.json").exists()


# --- a read-only file system (needs mount: root with CAP_SYS_ADMIN, as on the dev machine) ---


@pytest.fixture
def small_fs(tmp_path: Path):
    """A 4 MiB tmpfs at ``tmp_path/fs``; remount it read-only with ``remount("ro")``."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")

    def remount(mode: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{mode}", str(mount_point)], check=True)

    try:
        yield mount_point, remount
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_state_on_a_read_only_file_system_refuses_to_start(tmp_path: Path, small_fs) -> None:
    mount_point, remount = small_fs
    first = DaemonProcess(tmp_path, make_profile(tmp_path))
    first.state_dir = mount_point / "state"
    first.start()
    assert first.stop() == 0
    remount("ro")
    result = run_gatewayd(first.profile, first.state_dir, tmp_path / "run2", timeout=20)
    assert result.returncode == 1
    assert "Read-only file system" in result.stderr and str(first.state_dir) in result.stderr
    assert "Traceback" not in result.stderr


CTL = [sys.executable, "-m", "gatewayd", "ctl", "--runtime-dir"]


def test_ctl_reset_on_a_read_only_state_says_so_and_fails(tmp_path: Path, small_fs) -> None:
    mount_point, remount = small_fs
    daemon = DaemonProcess(tmp_path, make_profile(tmp_path))
    daemon.state_dir = mount_point / "state"
    daemon.start()
    try:
        remount("ro")
        result = subprocess.run(
            [*CTL, str(daemon.runtime_dir), "reset", "--yes"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 1, result
        assert "could not be written" in result.stderr and "Read-only" in result.stderr
        # The daemon goes on, and says the code checks are stopped rather than open.
        status = json.loads(daemon.ctl("status --json"))
        assert status["profile"]
    finally:
        remount("rw")
        daemon.stop()


# --- point 6: the pepper is checked ---------------------------------------------------------


def _started_once(tmp_path: Path) -> DaemonProcess:
    """A sim box that made its pepper and a code, then stopped."""
    from tests.test_daemon_e2e import create_code
    from tests.test_hardening_daemon import CODE

    daemon = DaemonProcess(tmp_path, make_profile(tmp_path)).start()
    create_code(daemon, CODE)
    assert daemon.stop() == 0
    return daemon


def test_a_replaced_pepper_refuses_to_start(tmp_path: Path) -> None:
    box = _started_once(tmp_path)
    pepper = box.state_dir / "pepper"
    state_before = box.state_file.read_bytes()
    assert pepper.read_bytes().hex() not in state_before.decode()  # a fingerprint, not the pepper
    pepper.unlink()
    fd = os.open(pepper, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, os.urandom(32))
    os.close(fd)
    result = run_gatewayd(box.profile, box.state_dir, box.runtime_dir, timeout=20)
    assert result.returncode == 1, result.stderr
    assert "not the pepper this state was made with" in result.stderr
    assert box.state_file.read_bytes() == state_before  # no failure counted, nothing changed


@pytest.mark.parametrize("problem", ["world readable", "symlink", "dangling symlink"])
def test_an_unsafe_pepper_is_refused_at_start(tmp_path: Path, problem: str) -> None:
    box = _started_once(tmp_path)
    pepper = box.state_dir / "pepper"
    if problem == "world readable":
        pepper.chmod(0o644)
        expected = "readable or writable by others than its owner (mode 0644); chmod 600"
    elif problem == "symlink":
        real = tmp_path / "real-pepper"
        pepper.rename(real)
        pepper.symlink_to(real)
        expected = "the pepper is a symlink to"
    else:
        pepper.unlink()
        pepper.symlink_to(tmp_path / "lost-pepper")
        expected = "which does not exist"
    result = run_gatewayd(box.profile, box.state_dir, box.runtime_dir, timeout=20)
    assert result.returncode == 1, result.stderr
    assert expected in result.stderr and "already exists" not in result.stderr
    assert "Traceback" not in result.stderr
