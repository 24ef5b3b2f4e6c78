"""How to add an optional dependency, said for the way this gatewayd was installed.

An error about a missing module tells the person at hand what to run: the Debian
package's ``apt``, or the ``pip`` of the venv gatewayd runs from (by its path), or a
user install — never ``pip install gatewayd[...]``, since gatewayd is on no index.
"""

from __future__ import annotations

import sys
from pathlib import Path

#: Where Debian packages (and so the gatewayd Debian package) install Python modules.
DEBIAN_MODULES = Path("/usr/lib/python3/dist-packages")
#: The gatewayd Debian package's private module directory (on /usr/bin/gatewayd's path).
DEBIAN_VENDOR = Path("/usr/lib/gatewayd/vendor")


def install_hint(
    requirement: str, extra: str, debian: str | None, package_file: Path | None = None
) -> str:
    """What to run to get ``requirement`` (pyproject's ``extra``) for this installation.

    ``debian`` is the Debian package that provides it in a fitting version, or None when
    Debian 12 has none (then pip installs it beside the Debian package's bundled modules).
    """
    here = (package_file or Path(__file__)).resolve()
    if DEBIAN_MODULES in here.parents:
        if debian is not None:
            return f"sudo apt install {debian}"
        return f"sudo pip install --target {DEBIAN_VENDOR} '{requirement}'"
    if sys.prefix != sys.base_prefix:
        return (
            f"{Path(sys.prefix) / 'bin' / 'pip'} install '{requirement}' "
            f"(the [{extra}] extra, into the venv gatewayd runs from, {sys.prefix})"
        )
    apt = f", or on Debian: sudo apt install {debian}" if debian else ""
    return (
        f"{Path(sys.executable).name} -m pip install --user '{requirement}' "
        f"(the [{extra}] extra){apt}"
    )
