"""``python -m gatewayd``: the same command line as ``gatewayd``."""

from gatewayd.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
