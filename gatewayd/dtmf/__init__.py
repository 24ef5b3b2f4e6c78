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
import sys
from pathlib import Path

from gatewayd.errors import ProfileError

#: The ``[inband]`` extra of pyproject.toml (what ``pip install 'gatewayd[inband]'`` adds).
NUMPY_REQUIREMENT = "numpy>=1.24"
#: Where Debian packages (and so the gatewayd Debian package) install Python modules.
DEBIAN_MODULES = Path("/usr/lib/python3/dist-packages")
#: The profile key that needs numpy, for the daemon's error.
FOR_PROFILE = 'line.dtmf = "inband" decodes keys from the audio'


def install_hint(package_file: Path | None = None) -> str:
    """How to get numpy for the way this gatewayd was installed: Debian package, venv, other."""
    here = (package_file or Path(__file__)).resolve()
    if DEBIAN_MODULES in here.parents:
        return "sudo apt install python3-numpy"
    if sys.prefix != sys.base_prefix:
        return (
            f"{Path(sys.prefix) / 'bin' / 'pip'} install '{NUMPY_REQUIREMENT}' "
            f"(the [inband] extra, into the venv gatewayd runs from, {sys.prefix})"
        )
    return (
        f"{Path(sys.executable).name} -m pip install --user '{NUMPY_REQUIREMENT}' "
        "(the [inband] extra), or on Debian: sudo apt install python3-numpy"
    )


#: Kept for callers that show the hint on its own.
INSTALL_HINT = install_hint()


def require_numpy(what: str = FOR_PROFILE) -> None:
    """Raise ProfileError saying what to install when numpy (the ``[inband]`` extra) is missing.

    ``what`` names what needs it (the profile key, or a command).
    """
    if importlib.util.find_spec("numpy") is None:
        raise ProfileError(f"{what} and needs numpy, which is not installed: {install_hint()}")
