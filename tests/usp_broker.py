"""A real mosquitto for the USP tests and the fleet bench: TLS, per-client certificates, ACLs.

:class:`Pki` makes an operator CA, the broker's certificate (localhost) and one
client certificate per identity with ``openssl``; :class:`Mosquitto` runs the
broker on a loopback port with ``require_certificate`` and
``use_identity_as_username`` so the topic ACLs apply to each certificate's CN.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def have_mosquitto() -> bool:
    """Whether the broker and openssl are installed (.ci/run installs both)."""
    return Path(MOSQUITTO).exists() and shutil.which("openssl") is not None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class Pki:
    """An operator CA in ``directory`` and the certificates it signs (EC P-256: fast)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.ca = directory / "ca.pem"
        _openssl(
            "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=directory
        )
        _openssl(
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=test operator CA",
            cwd=directory,
        )
        self.server_cert, self.server_key = self.issue("localhost", server=True)

    @classmethod
    def reuse(cls, directory: Path) -> Pki:
        """A CA (and its certificates) made earlier in ``directory``."""
        pki = cls.__new__(cls)
        pki.dir, pki.ca = directory, directory / "ca.pem"
        pki.server_cert, pki.server_key = directory / "localhost.pem", directory / "localhost.key"
        return pki

    def issue(self, name: str, *, server: bool = False) -> tuple[Path, Path]:
        """A certificate and key with CN ``name`` (the broker's username for ACLs)."""
        stem = "".join(c if c.isalnum() else "_" for c in name)
        key, csr, cert = f"{stem}.key", f"{stem}.csr", f"{stem}.pem"
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key, cwd=self.dir)
        _openssl("req", "-new", "-key", key, "-out", csr, "-subj", f"/CN={name}", cwd=self.dir)
        ext = self.dir / f"{stem}.ext"
        ext.write_text(
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
            if server
            else "extendedKeyUsage=clientAuth\n"
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            cert,
            "-days",
            "2",
            "-extfile",
            ext.name,
            cwd=self.dir,
        )
        return self.dir / cert, self.dir / key


class Mosquitto:
    """mosquitto on 127.0.0.1:``port`` with mutual TLS and an ACL per client CN."""

    def __init__(
        self,
        directory: Path,
        pki: Pki,
        acl: Iterable[tuple[str, str, str]],
        port: int | None = None,
        pattern_acl: Iterable[str] = (),
    ) -> None:
        self.dir = directory
        self.port = port or free_port()
        self.log = directory / "mosquitto.log"
        # "pattern" rules apply to every client, %u standing for its certificate's CN.
        acl_lines: list[str] = [f"pattern {rule}" for rule in pattern_acl] + [""]
        for user, access, topic in acl:
            acl_lines += [f"user {user}", f"topic {access} {topic}", ""]
        (directory / "acl").write_text("\n".join(acl_lines))
        self.conf = directory / "mosquitto.conf"
        self.conf.write_text(
            "\n".join(
                [
                    "per_listener_settings false",
                    "allow_anonymous false",
                    "persistence false",
                    "user root",
                    f"log_dest file {self.log}",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "max_connections -1",
                    # A controller reading a fleet's Connect Records falls behind for a moment:
                    # keep its QoS 1 messages instead of dropping past the default 1000.
                    "max_queued_messages 0",
                    "set_tcp_nodelay true",
                    f"acl_file {directory / 'acl'}",
                    f"listener {self.port} 127.0.0.1",
                    f"cafile {pki.ca}",
                    f"certfile {pki.server_cert}",
                    f"keyfile {pki.server_key}",
                    "require_certificate true",
                    "use_identity_as_username true",
                    "",
                ]
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"mosquitto exited: {err}\n{self.log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"mosquitto not listening on {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def url(self) -> str:
        return f"mqtts://localhost:{self.port}"
