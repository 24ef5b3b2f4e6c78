"""``gatewayd provision --usp-cert FILE --usp-key FILE``: install the box's USP TLS identity.

The certificate (0644) and key (0600) are copied next to the pepper, as
``usp-cert.pem`` and ``usp-key.pem``, after checking that they form a pair; the
profile's ``[usp] cert_file``/``key_file`` name them (or the unit hands them over
as the systemd credentials ``gatewayd-usp-cert``/``gatewayd-usp-key``).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from gatewayd.errors import GatewaydError
from gatewayd.voicemail.atomicdb import write_atomically

CERT_FILE = "usp-cert.pem"
KEY_FILE = "usp-key.pem"


class UspProvisionError(GatewaydError, ValueError):
    """The certificate or key cannot be installed; says which file and why."""


def provision_usp_identity(cert: Path, key: Path, etc_dir: Path) -> tuple[Path, Path]:
    """Check that ``cert`` and ``key`` pair up, copy them into ``etc_dir``; the installed paths."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_cert_chain(str(cert), str(key))
    except FileNotFoundError as exc:
        raise UspProvisionError(f"{exc.filename}: no such file") from exc
    except ssl.SSLError as exc:
        raise UspProvisionError(
            f"{cert} and {key} are not a PEM certificate and its private key ({exc.reason}); "
            "give the box's certificate and the key it was issued for"
        ) from exc
    etc_dir.mkdir(parents=True, exist_ok=True)
    cert_target, key_target = etc_dir / CERT_FILE, etc_dir / KEY_FILE
    write_atomically(key_target, key.read_bytes(), mode=0o600)
    write_atomically(cert_target, cert.read_bytes(), mode=0o644)
    return cert_target, key_target
