"""The wheel is self-contained: every subpackage and every shipped folder is in it."""

from __future__ import annotations

import tomllib
from pathlib import Path

from gatewayd.paths import shipped_dir, shipped_profiles_dir
from gatewayd.prompts import default_audio_dir

REPO = Path(__file__).resolve().parent.parent


def _setuptools() -> dict[str, object]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    table = data["tool"]["setuptools"]
    assert isinstance(table, dict)
    return table


def test_every_subpackage_is_listed_for_the_wheel() -> None:
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "gatewayd").rglob("__init__.py")
    }
    listed = set(_setuptools()["packages"])  # type: ignore[call-overload]
    assert on_disk <= listed, f"add {sorted(on_disk - listed)} to [tool.setuptools] packages"


def test_shipped_folders_map_to_package_data() -> None:
    mapping = _setuptools()["package-dir"]
    assert mapping == {
        "gatewayd._data.audio": "audio",
        "gatewayd._data.hw_profiles": "hw_profiles",
        "gatewayd._data.systemd": "systemd",
    }


def test_a_checkout_finds_the_top_level_folders(monkeypatch) -> None:
    monkeypatch.delenv("GATEWAYD_PROFILES_DIR", raising=False)
    monkeypatch.delenv("GATEWAYD_AUDIO_DIR", raising=False)
    assert (shipped_profiles_dir() / "sim.toml").is_file()
    assert (default_audio_dir() / "prompts.toml").is_file()
    assert (shipped_dir("systemd") / "gatewayd.service").is_file()


def test_package_data_wins_over_the_checkout(tmp_path: Path, monkeypatch) -> None:
    """An installed wheel has gatewayd/_data/NAME: that is what is used."""
    package = tmp_path / "site" / "gatewayd"
    (package / "_data" / "hw_profiles").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    monkeypatch.setattr("gatewayd.paths._package_dir", lambda: package)
    assert shipped_dir("hw_profiles") == package / "_data" / "hw_profiles"
    assert shipped_dir("audio") == tmp_path / "site" / "audio"
