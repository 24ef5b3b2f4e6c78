"""``python -m tests.imports_child OUT ARGS...``: gatewayd, listing its modules at READY=1.

For tests/test_start_imports.py: the daemon runs as it does on the box; when it
tells systemd READY=1, the names in ``sys.modules`` (every import so far,
``importlib.import_module`` ones included, which ``-X importtime`` misses) are
written to OUT, one a line.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gatewayd.sdnotify

_real_notify = gatewayd.sdnotify.notify


def _notify_and_list(message: str) -> bool:
    if "READY=1" in message.split("\n"):
        out = Path(sys.argv[1])
        part = out.with_suffix(".part")
        part.write_text("".join(f"{name}\n" for name, mod in sorted(sys.modules.items()) if mod))
        part.rename(out)
    return _real_notify(message)


gatewayd.sdnotify.notify = _notify_and_list  # before gatewayd.daemon binds it

if __name__ == "__main__":
    from gatewayd.cli import main

    raise SystemExit(main(sys.argv[2:]))
