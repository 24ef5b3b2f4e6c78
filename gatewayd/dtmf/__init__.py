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

from gatewayd.errors import ProfileError

#: What to install when numpy is missing.
INSTALL_HINT = "pip install 'gatewayd[inband]' (or: apt-get install python3-numpy)"


def require_numpy() -> None:
    """Raise ProfileError saying what to install when numpy (the ``[inband]`` extra) is missing."""
    if importlib.util.find_spec("numpy") is None:
        raise ProfileError(
            'line.dtmf = "inband" decodes keys from the audio and needs numpy, which is not '
            f"installed: {INSTALL_HINT}"
        )
