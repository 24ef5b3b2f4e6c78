"""Path resolution: option, then systemd's variables, then the profile or a fixed default."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gatewayd.paths import (
    demo_pointer_path,
    find_runtime_dir,
    forget_demo,
    point_to_demo,
    resolve_pepper_path,
    resolve_runtime_dir,
    resolve_state_dir,
    running_demo_dir,
    shipped_profiles_dir,
)
from gatewayd.profile import Profile, StorageSection, load_profile

_ENV = (
    "GATEWAYD_PROFILES_DIR",
    "STATE_DIRECTORY",
    "RUNTIME_DIRECTORY",
    "XDG_RUNTIME_DIR",
    "CREDENTIALS_DIRECTORY",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start each test from an environment that names no directory."""
    for variable in _ENV:
        monkeypatch.delenv(variable, raising=False)


def sim_with_storage(
    state_dir: str = "~/.local/state/gatewayd", pepper_file: str = "pepper"
) -> Profile:
    """The shipped sim profile with other ``[storage]`` paths."""
    storage = StorageSection(state_dir=state_dir, pepper_file=pepper_file, create_pepper=True)
    return dataclasses.replace(load_profile("sim"), storage=storage)


# --- shipped profiles directory -----------------------------------------------------


def test_shipped_profiles_are_the_repository_hw_profiles() -> None:
    """In a checkout (editable install) the top-level hw_profiles/ is used."""
    directory = shipped_profiles_dir()
    assert directory == Path(__file__).resolve().parent.parent / "hw_profiles"
    assert (directory / "sim.toml").is_file()


def test_profiles_dir_override_is_used_to_find_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "lab.toml").write_text('[board]\nname = "lab bench"\n[line]\ndriver = "sim"\n')
    monkeypatch.setenv("GATEWAYD_PROFILES_DIR", str(tmp_path))

    assert shipped_profiles_dir() == tmp_path
    assert load_profile("lab").board.name == "lab bench"


# --- state dir ------------------------------------------------------------------------


def test_state_dir_option_wins_over_systemd_and_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/gatewayd")
    profile = sim_with_storage(state_dir="/srv/profile-state")
    assert resolve_state_dir(str(tmp_path / "opt"), profile) == tmp_path / "opt"


def test_state_dir_from_systemd_takes_its_first_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/gatewayd:/var/lib/other")
    profile = sim_with_storage(state_dir="/srv/profile-state")
    assert resolve_state_dir(None, profile) == Path("/var/lib/gatewayd")


def test_state_dir_falls_back_to_the_profile_with_home_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_state_dir(None, load_profile("sim")) == tmp_path / ".local/state/gatewayd"
    # An empty option or variable counts as not given.
    monkeypatch.setenv("STATE_DIRECTORY", "")
    assert resolve_state_dir("", load_profile("sim")) == tmp_path / ".local/state/gatewayd"


def test_relative_state_dir_option_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    resolved = resolve_state_dir("state", load_profile("sim"))
    assert resolved.is_absolute()
    assert resolved == tmp_path / "state"


# --- runtime dir ----------------------------------------------------------------------


def test_runtime_dir_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_runtime_dir(None) == Path("/run/gatewayd")

    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert resolve_runtime_dir(None) == Path("/run/user/1000/gatewayd")

    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/gatewayd-unit:/run/extra")
    assert resolve_runtime_dir(None) == Path("/run/gatewayd-unit")

    assert resolve_runtime_dir(str(tmp_path)) == tmp_path


# --- pepper -------------------------------------------------------------------------------


def test_relative_pepper_file_lives_in_the_state_dir(tmp_path: Path) -> None:
    assert resolve_pepper_path(load_profile("sim"), tmp_path) == tmp_path / "pepper"


def test_absolute_pepper_file_is_kept(tmp_path: Path) -> None:
    profile = sim_with_storage(pepper_file="/etc/gatewayd/pepper")
    assert resolve_pepper_path(profile, tmp_path) == Path("/etc/gatewayd/pepper")


def test_systemd_credential_wins_when_the_file_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    state_dir = tmp_path / "state"

    # Credentials directory without our credential: the profile's file is used.
    assert resolve_pepper_path(load_profile("sim"), state_dir) == state_dir / "pepper"

    (credentials / "gatewayd-pepper").write_bytes(b"\x00" * 32)
    assert resolve_pepper_path(load_profile("sim"), state_dir) == credentials / "gatewayd-pepper"


# --- a running demo is found by the clients -------------------------------------------------


def test_clients_find_a_running_demo_only_when_nothing_else_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    (tmp_path / "xdg").mkdir()
    demo = tmp_path / "demo-sockets"
    demo.mkdir()
    (demo / "ctl.sock").touch()
    usual = tmp_path / "xdg" / "gatewayd"

    assert find_runtime_dir(None) == usual  # no demo running: the usual place (and its error)
    point_to_demo(demo)
    assert find_runtime_dir(None) == demo
    assert find_runtime_dir(str(tmp_path / "mine")) == tmp_path / "mine"  # the option wins
    usual.mkdir()
    (usual / "ctl.sock").touch()
    assert find_runtime_dir(None) == usual  # a daemon in the usual place wins over the demo
    forget_demo(tmp_path / "another-demo")  # not ours to forget
    assert demo_pointer_path().exists()
    forget_demo(demo)
    assert not demo_pointer_path().exists()


def test_a_demo_that_stopped_is_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    point_to_demo(tmp_path / "gone")
    assert running_demo_dir() is None
    assert find_runtime_dir(None) == tmp_path / "gatewayd"
