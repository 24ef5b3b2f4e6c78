"""``gatewayd dtmf`` without numpy: help works, and decode says how to get numpy here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gatewayd.dtmf import install_hint

#: Runs gatewayd's command line in a Python where numpy cannot be imported.
WITHOUT_NUMPY = (
    "import sys; sys.modules['numpy'] = None; "
    "from gatewayd.cli import main; sys.exit(main(sys.argv[1:]))"
)


def gatewayd_without_numpy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_NUMPY, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("args", [("dtmf", "--help"), ("dtmf", "decode", "--help")])
def test_help_works_without_numpy(args: tuple[str, ...]) -> None:
    result = gatewayd_without_numpy(*args)
    assert result.returncode == 0, result.stderr
    assert "decode" in result.stdout


def test_decode_without_numpy_says_what_to_run_in_this_venv(tmp_path: Path) -> None:
    result = gatewayd_without_numpy("dtmf", "decode", str(tmp_path / "line.wav"))
    assert result.returncode == 2
    assert "gatewayd dtmf decode" in result.stderr
    assert "line.dtmf" not in result.stderr  # a command-line user has no profile key to set
    if sys.prefix != sys.base_prefix:  # the suite runs in a venv: its own pip, by path
        assert f"{sys.prefix}/bin/pip install 'numpy>=1.24'" in result.stderr


def test_the_debian_package_is_told_to_use_apt() -> None:
    hint = install_hint(Path("/usr/lib/python3/dist-packages/gatewayd/dtmf/__init__.py"))
    assert hint == "sudo apt install python3-numpy"


def test_the_debian_package_gets_what_debian_lacks_beside_its_bundled_modules() -> None:
    from gatewayd.install import install_hint as hint

    packaged = Path("/usr/lib/python3/dist-packages/gatewayd/install.py")
    assert hint("gpiod>=2.1", "gpiod", None, packaged) == (
        "sudo pip install --target /usr/lib/gatewayd/vendor 'gpiod>=2.1'"
    )
