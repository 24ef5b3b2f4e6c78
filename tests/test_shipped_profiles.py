"""Every shipped profile loads, names a known driver, and is documented in hw_profiles/README.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatewayd.line import DRIVERS
from gatewayd.profile import load_profile, shipped_profile_names

README = Path(__file__).resolve().parent.parent / "hw_profiles" / "README.md"
EXPECTED = {
    "sim",
    "rpi-ag1171-mt8870",
    "rpi5-ag1171-mt8870",
    "gpiod-ag1171-mt8870",
    "usr5637-modem",
    "conexant-modem",
    "generic-v253-modem",
}


def test_the_shipped_profiles_are_all_there() -> None:
    assert set(shipped_profile_names()) == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_shipped_profile_loads_and_is_documented(name: str) -> None:
    profile = load_profile(name)
    assert profile.line.driver in DRIVERS
    assert f"`{name}`" in README.read_text()
    if name != "sim":  # hardware is provisioned, never self-peppered
        assert not profile.storage.create_pepper
        assert profile.storage.state_dir == "/var/lib/gatewayd"
