#!/bin/sh
# /usr/bin/gatewayd of the Debian package. Debian 12's python3-tinydb (3.15) and
# python3-alsaaudio (0.8.4) are older than gatewayd needs (4.8, 0.10): newer ones are
# bundled in /usr/lib/gatewayd/vendor (debian/rules); the daemon's own subprocesses
# inherit the path.
PYTHONPATH=/usr/lib/gatewayd/vendor${PYTHONPATH:+:$PYTHONPATH}
export PYTHONPATH
exec /usr/bin/python3 -m gatewayd "$@"
