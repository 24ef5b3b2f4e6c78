"""In-band DTMF: hear keys in the line's audio, for SLIC boards without a decoder chip.

Modules (import them only when a profile asks for ``dtmf = "inband"``: they need numpy,
the ``[inband]`` extra, and importing this package alone imports nothing heavy):

- :mod:`gatewayd.dtmf.detector`: the detector (PCM in, key start/end events out);
- :mod:`gatewayd.dtmf.capture`: ALSA capture feeding it on a thread, keys to the loop;
- :mod:`gatewayd.dtmf.cli`: ``gatewayd dtmf decode FILE``;
- :mod:`gatewayd.dtmf.signals`: test signals and the Q.24 conformance suite.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from gatewayd import install
from gatewayd.errors import ProfileError

#: The ``[inband]`` extra of pyproject.toml (what ``pip install 'gatewayd[inband]'`` adds).
NUMPY_REQUIREMENT = "numpy>=1.24"
#: The profile key that needs numpy, for the daemon's error.
FOR_PROFILE = 'line.dtmf = "inband" decodes keys from the audio'


def install_hint(package_file: Path | None = None) -> str:
    """How to get numpy for the way this gatewayd was installed: Debian package, venv, other."""
    return install.install_hint(NUMPY_REQUIREMENT, "inband", "python3-numpy", package_file)


def require_numpy(what: str = FOR_PROFILE) -> None:
    """Raise ProfileError saying what to install when numpy (the ``[inband]`` extra) is missing.

    ``what`` names what needs it (the profile key, or a command).
    """
    if importlib.util.find_spec("numpy") is None:
        raise ProfileError(f"{what} and needs numpy, which is not installed: {install_hint()}")
