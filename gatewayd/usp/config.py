"""The profile's ``[usp]`` table: broker, endpoint IDs, controllers and their roles, TLS, limits.

Pure (stdlib only): the daemon validates the raw table with :func:`parse_usp` at
start, so a mistake names the file, the key and the fix before anything connects.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from gatewayd.errors import ProfileError

#: Roles a controller may hold: ``viewer`` reads and subscribes, ``advisor`` also runs the
#: reset, ``admin`` also writes the mailbox settings.
ROLES: Final = ("viewer", "advisor", "admin")
#: systemd credentials (``LoadCredential=``) the unit may hand over instead of files.
CERT_CREDENTIAL: Final = "gatewayd-usp-cert"
KEY_CREDENTIAL: Final = "gatewayd-usp-key"
#: An Endpoint ID: ``authority-scheme:[authority-id]:instance-id`` (TR-369 "Endpoint Identifier").
_ENDPOINT_ID_RE: Final = re.compile(r"[A-Za-z0-9]+:[A-Za-z0-9._%-]*:[A-Za-z0-9._%:-]+")
_TOPIC_RE: Final = re.compile(r"[^#+\x00]{1,1024}")
_VENDOR_RE: Final = re.compile(r"[A-Z][A-Z0-9]{1,15}")

_KEYS: Final = (
    "broker_url",
    "endpoint_id",
    "agent_topic",
    "vendor_prefix",
    "ca_file",
    "cert_file",
    "key_file",
    "allow_plaintext",
    "keepalive_s",
    "connect_timeout_s",
    "retry_initial_s",
    "retry_multiplier",
    "retry_max_s",
    "requests_per_minute",
    "max_record_bytes",
    "manufacturer",
    "model",
    "serial_number",
    "controller",
)
_CONTROLLER_KEYS: Final = ("endpoint_id", "topic", "roles")


@dataclass(frozen=True)
class ControllerConfig:
    """A controller the agent answers: its Endpoint ID, its MQTT topic and its roles."""

    endpoint_id: str
    topic: str
    roles: frozenset[str]

    def may(self, role: str) -> bool:
        """Whether this controller holds ``role`` (``admin`` implies ``advisor``)."""
        return role in self.roles or (role == "advisor" and "admin" in self.roles)


@dataclass(frozen=True)
class UspConfig:
    """A validated ``[usp]`` table (DESIGN.md §8)."""

    host: str
    port: int
    tls: bool
    endpoint_id: str
    agent_topic: str
    vendor_prefix: str
    controllers: tuple[ControllerConfig, ...]
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive_s: int = 60
    connect_timeout_s: float = 10.0
    retry_initial_s: float = 5.0
    retry_multiplier: float = 2.0
    retry_max_s: float = 300.0
    requests_per_minute: int = 30
    max_record_bytes: int = 65536
    manufacturer: str = "gatewayd"
    model: str = ""
    serial_number: str = ""
    source: str = field(default="", compare=False)

    @property
    def prefix(self) -> str:
        """The vendor parameter prefix, ``X_<VENDOR>_``."""
        return f"X_{self.vendor_prefix}_"

    def controller(self, endpoint_id: str) -> ControllerConfig | None:
        """The configured controller with this Endpoint ID, if any."""
        for controller in self.controllers:
            if controller.endpoint_id == endpoint_id:
                return controller
        return None


class _Reader:
    """Reads one TOML table, collecting ``FILE: usp.KEY: problem`` lines."""

    def __init__(self, source: str, path: str, data: Mapping[str, object]) -> None:
        self.source = source
        self.path = path
        self.data = data
        self.problems: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.problems.append(f"{self.source}: {self.path}.{key}: {message}")

    def check_keys(self, allowed: tuple[str, ...]) -> None:
        for name in self.data:
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = (
                    f'did you mean "{close[0]}"?' if close else f"known keys: {', '.join(allowed)}"
                )
                self.add(name, f"unknown key; {hint}")

    def text(
        self,
        key: str,
        default: str | None = None,
        pattern: re.Pattern[str] | None = None,
        expected: str = "a string",
    ) -> str:
        raw = self.data.get(key, default)
        if raw is None:
            self.add(key, f"missing required key; expected {expected}")
            return ""
        if not isinstance(raw, str) or (pattern is not None and not pattern.fullmatch(raw)):
            self.add(key, f"expected {expected}, got {raw!r}")
            return ""
        return raw

    def number(
        self, key: str, default: float, low: float, high: float, integer: bool = False
    ) -> float:
        raw = self.data.get(key, default)
        ok_type = isinstance(raw, int) if integer else isinstance(raw, int | float)
        if isinstance(raw, bool) or not ok_type:
            kind = "an integer" if integer else "a number"
            self.add(key, f"expected {kind} from {low:g} to {high:g}, got {raw!r}")
            return default
        assert isinstance(raw, int | float)
        if not low <= raw <= high:
            self.add(key, f"expected a value from {low:g} to {high:g}, got {raw!r}")
            return default
        return float(raw)

    def path_of(self, key: str) -> Path | None:
        raw = self.data.get(key)
        if raw is None:
            return None
        if not isinstance(raw, str) or not raw:
            self.add(key, f"expected a file path, got {raw!r}")
            return None
        return Path(raw).expanduser()


def _broker(reader: _Reader) -> tuple[str, int, bool]:
    url = reader.text("broker_url", expected='a URL like "mqtts://broker.example.net:8883"')
    if not url:
        return "", 0, True
    parts = urlsplit(url)
    if parts.scheme not in ("mqtts", "mqtt") or not parts.hostname:
        reader.add("broker_url", f'expected "mqtts://HOST[:PORT]" (TLS), got {url!r}')
        return "", 0, True
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        reader.add("broker_url", f"the port of {url!r} is not a number from 1 to 65535")
        return "", 0, tls
    if not tls and reader.data.get("allow_plaintext") is not True:
        reader.add(
            "broker_url",
            "mqtt:// sends the advisor's requests in clear; use mqtts:// with ca_file, cert_file "
            "and key_file (or set allow_plaintext = true on a lab bench only)",
        )
    return parts.hostname, port, tls


def _controllers(reader: _Reader) -> tuple[ControllerConfig, ...]:
    raw = reader.data.get("controller")
    if not isinstance(raw, list) or not raw or not all(isinstance(c, dict) for c in raw):
        reader.add(
            "controller",
            "expected at least one [[usp.controller]] table with endpoint_id, topic and roles",
        )
        return ()
    controllers: list[ControllerConfig] = []
    for index, table in enumerate(raw):
        sub = _Reader(reader.source, f"{reader.path}.controller[{index}]", table)
        sub.check_keys(_CONTROLLER_KEYS)
        endpoint_id = sub.text(
            "endpoint_id", pattern=_ENDPOINT_ID_RE, expected='an Endpoint ID like "self::advisor"'
        )
        topic = sub.text("topic", pattern=_TOPIC_RE, expected="an MQTT topic without + or #")
        roles = sub.data.get("roles")
        if not (isinstance(roles, list) and roles and all(r in ROLES for r in roles)):
            sub.add("roles", f"expected a non-empty list of {', '.join(ROLES)}, got {roles!r}")
            roles = []
        if any(c.endpoint_id == endpoint_id for c in controllers):
            sub.add("endpoint_id", f"{endpoint_id!r} is listed twice; keep one entry")
        reader.problems.extend(sub.problems)
        controllers.append(ControllerConfig(endpoint_id, topic, frozenset(roles)))
    return tuple(controllers)


def parse_usp(table: Mapping[str, object], source: str | Path, *, model: str = "") -> UspConfig:
    """Validate the raw ``[usp]`` table of the profile ``source``; ProfileError lists problems."""
    reader = _Reader(str(source), "usp", table)
    reader.check_keys(_KEYS)
    host, port, tls = _broker(reader)
    endpoint_id = reader.text(
        "endpoint_id", pattern=_ENDPOINT_ID_RE, expected='an Endpoint ID like "os::00D09E-1234"'
    )
    agent_topic = reader.text(
        "agent_topic", f"usp/agent/{endpoint_id}", _TOPIC_RE, "an MQTT topic without + or #"
    )
    vendor = reader.text(
        "vendor_prefix", pattern=_VENDOR_RE, expected='2-16 capitals and digits, e.g. "GWD"'
    )
    files = {key: reader.path_of(key) for key in ("ca_file", "cert_file", "key_file")}
    if tls and files["ca_file"] is None:
        reader.add("ca_file", "missing: the operator's CA certificate (PEM) pins the broker")
    config = UspConfig(
        host=host,
        port=port,
        tls=tls,
        endpoint_id=endpoint_id,
        agent_topic=agent_topic,
        vendor_prefix=vendor,
        controllers=_controllers(reader),
        ca_file=files["ca_file"],
        cert_file=files["cert_file"],
        key_file=files["key_file"],
        keepalive_s=int(reader.number("keepalive_s", 60, 5, 3600, integer=True)),
        connect_timeout_s=reader.number("connect_timeout_s", 10.0, 0.5, 120.0),
        retry_initial_s=reader.number("retry_initial_s", 5.0, 0.05, 3600.0),
        retry_multiplier=reader.number("retry_multiplier", 2.0, 1.0, 10.0),
        retry_max_s=reader.number("retry_max_s", 300.0, 0.1, 86400.0),
        requests_per_minute=int(reader.number("requests_per_minute", 30, 1, 100000, True)),
        max_record_bytes=int(reader.number("max_record_bytes", 65536, 1024, 16 << 20, True)),
        manufacturer=reader.text("manufacturer", "gatewayd"),
        model=reader.text("model", model),
        serial_number=reader.text("serial_number", endpoint_id.rsplit(":", 1)[-1]),
        source=str(source),
    )
    if reader.problems:
        if len(reader.problems) == 1:
            raise ProfileError(reader.problems[0])
        raise ProfileError(
            f"{source}: {len(reader.problems)} problems in [usp]:\n" + "\n".join(reader.problems)
        )
    return config


def tls_files(config: UspConfig) -> tuple[Path | None, Path | None]:
    """The box's certificate and key: systemd credentials if present, else the profile's files."""
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials:
        cert, key = Path(credentials) / CERT_CREDENTIAL, Path(credentials) / KEY_CREDENTIAL
        if cert.is_file() and key.is_file():
            return cert, key
    return config.cert_file, config.key_file
