"""The agent's data model (DESIGN.md §8): supported paths, instantiated values, path matching.

Pure: values come from a :class:`Facts` snapshot (the service's ``status()`` plus
the agent's own settings and subscriptions); nothing here does I/O. What it can
show is a closed list of parameters: there is no parameter for a code, a message
or a caller's number, so no request can reach one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

ValueKind = Literal["boolean", "unsignedInt", "string", "dateTime", "int"]

#: USP error codes used by the agent (TR-369 "Error Codes").
MESSAGE_FAILED: Final = 7000
MESSAGE_NOT_SUPPORTED: Final = 7001
REQUEST_DENIED: Final = 7002
INTERNAL_ERROR: Final = 7003
INVALID_ARGUMENTS: Final = 7004
RESOURCES_EXCEEDED: Final = 7005
PERMISSION_DENIED: Final = 7006
INVALID_PATH_SYNTAX: Final = 7008
UNSUPPORTED_PARAMETER: Final = 7010
INVALID_TYPE: Final = 7011
INVALID_VALUE: Final = 7012
NOT_WRITABLE: Final = 7013
OBJECT_NOT_EXIST: Final = 7016
OBJECT_NOT_CREATED: Final = 7017
NOT_CREATABLE: Final = 7019
COMMAND_FAILURE: Final = 7022
REQUIRED_PARAM_FAILED: Final = 7021
DUPLICATE_KEY: Final = 7025
INVALID_PATH: Final = 7026
INVALID_COMMAND_ARGS: Final = 7027
RECORD_NOT_PARSED: Final = 7100
SESSION_TERMINATED: Final = 7105
SESSION_CONTEXT_NOT_ALLOWED: Final = 7106

VOICE: Final = "Device.Services.VoiceService.1."
MAILBOX: Final = VOICE + "CallControl.Mailbox.1."
CALLING_FEATURES: Final = VOICE + "CallControl.CallingFeatures.Set.1."
SUBSCRIPTION_TABLE: Final = "Device.LocalAgent.Subscription."
NOTIF_TYPES: Final = ("ValueChange", "Event", "OperationComplete")
MAX_SUBSCRIPTIONS: Final = 32

_SEGMENT_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*|[0-9]+|\*")


class PathError(ValueError):
    """A path the agent cannot serve, with the USP error code to answer."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ParamSpec:
    """One supported parameter; ``low``/``high`` bound a writable unsigned integer."""

    name: str
    kind: ValueKind
    writable: bool = False
    low: int = 0
    high: int = 0


@dataclass(frozen=True)
class CommandSpec:
    """A synchronous command (``Name()``) with its argument names."""

    name: str
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class EventSpec:
    """An event (``Name!``) with its argument names."""

    name: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class ObjectSpec:
    """A supported object, ``{i}`` standing for instance numbers."""

    path: str
    params: tuple[ParamSpec, ...] = ()
    multi: bool = False
    creatable: bool = False
    commands: tuple[CommandSpec, ...] = ()
    events: tuple[EventSpec, ...] = ()

    def param(self, name: str) -> ParamSpec | None:
        """The parameter ``name`` of this object, if supported."""
        return next((p for p in self.params if p.name == name), None)


def supported_model(prefix: str) -> tuple[ObjectSpec, ...]:
    """Every object the agent serves; ``prefix`` is ``X_<VENDOR>_``."""
    ro = ParamSpec
    return (
        ObjectSpec(
            "Device.",
            events=(
                EventSpec("Boot!", ("CommandKey", "Cause", "FirmwareUpdated", "ParameterMap")),
            ),
        ),
        ObjectSpec(
            "Device.DeviceInfo.",
            (
                ro("Manufacturer", "string"),
                ro("ModelName", "string"),
                ro("SerialNumber", "string"),
                ro("SoftwareVersion", "string"),
                ro("UpTime", "unsignedInt"),
            ),
        ),
        ObjectSpec("Device.LocalAgent.", (ro("EndpointID", "string"),)),
        ObjectSpec("Device.LocalAgent.Controller.{i}.", (ro("EndpointID", "string"),), multi=True),
        ObjectSpec(
            "Device.LocalAgent.Controller.{i}.MTP.{i}.",
            (ro("Protocol", "string"),),
            multi=True,
        ),
        ObjectSpec("Device.LocalAgent.Controller.{i}.MTP.{i}.MQTT.", (ro("Topic", "string"),)),
        ObjectSpec(
            SUBSCRIPTION_TABLE + "{i}.",
            (
                ro("Enable", "boolean"),
                ro("ID", "string"),
                ro("Recipient", "string"),
                ro("NotifType", "string"),
                ro("ReferenceList", "string"),
                ro("Persistent", "boolean"),
            ),
            multi=True,
            creatable=True,
        ),
        ObjectSpec("Device.Services."),
        ObjectSpec("Device.Services.VoiceService.{i}.", multi=True),
        ObjectSpec("Device.Services.VoiceService.{i}.CallControl."),
        ObjectSpec(
            "Device.Services.VoiceService.{i}.CallControl.Mailbox.{i}.",
            (
                ParamSpec("Enable", "boolean", writable=True),
                ParamSpec("MaxMsg", "unsignedInt", writable=True, low=1, high=1000),
                ParamSpec("MaxMessageTime", "unsignedInt", writable=True, low=10, high=3600),
                ParamSpec("MinSize", "unsignedInt", writable=True, low=0, high=60),
                ro(f"{prefix}CodeSet", "boolean"),
                ro(f"{prefix}Failures", "unsignedInt"),
                ro(f"{prefix}CooldownRemaining", "unsignedInt"),
                ro(f"{prefix}Locked", "boolean"),
                ro(f"{prefix}Protection", "boolean"),
                ro(f"{prefix}NewMessages", "unsignedInt"),
                ro(f"{prefix}SavedMessages", "unsignedInt"),
            ),
            multi=True,
            commands=(CommandSpec(f"{prefix}ResetCode()", outputs=("Status",)),),
            events=(EventSpec(f"{prefix}Locked!", ("Failures",)),),
        ),
        ObjectSpec("Device.Services.VoiceService.{i}.CallControl.CallingFeatures."),
        ObjectSpec(
            "Device.Services.VoiceService.{i}.CallControl.CallingFeatures.Set.{i}.",
            (
                ParamSpec("MWIEnable", "boolean", writable=True),
                ro("LineMessagesWaiting", "boolean"),
            ),
            multi=True,
        ),
    )


#: The writable mailbox settings and their defaults (DESIGN.md §7 numbers).
SETTING_DEFAULTS: Final[Mapping[str, str]] = {
    MAILBOX + "Enable": "true",
    MAILBOX + "MaxMsg": "30",
    MAILBOX + "MaxMessageTime": "180",
    MAILBOX + "MinSize": "2",
    CALLING_FEATURES + "MWIEnable": "true",
}


@dataclass
class Subscription:
    """One ``Device.LocalAgent.Subscription.{i}.``, owned by the controller that added it."""

    instance: int
    owner: str
    sub_id: str
    notif_type: str
    references: tuple[str, ...]
    enable: bool = True
    persistent: bool = False

    def matches(self, path: str) -> bool:
        """Whether a changed parameter or event path falls under this subscription."""
        return any(_covers(ref, path) for ref in self.references)


@dataclass
class Facts:
    """Everything the values come from, taken at one moment."""

    status: Mapping[str, object]
    settings: Mapping[str, str]
    subscriptions: Iterable[Subscription]
    controllers: tuple[tuple[str, str], ...]  # (endpoint id, topic)
    endpoint_id: str
    manufacturer: str
    model: str
    serial_number: str
    software_version: str
    uptime_s: int
    owners: Mapping[str, int] = field(default_factory=dict)


def _flag(value: object) -> str:
    return "true" if value else "false"


def _count(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "0"
    return str(max(0, int(value)))


def instantiated(facts: Facts, prefix: str) -> dict[str, str]:
    """Every instantiated parameter path and its value (strings, as USP carries them)."""
    status = facts.status
    values: dict[str, str] = {
        "Device.DeviceInfo.Manufacturer": facts.manufacturer,
        "Device.DeviceInfo.ModelName": facts.model,
        "Device.DeviceInfo.SerialNumber": facts.serial_number,
        "Device.DeviceInfo.SoftwareVersion": facts.software_version,
        "Device.DeviceInfo.UpTime": str(facts.uptime_s),
        "Device.LocalAgent.EndpointID": facts.endpoint_id,
    }
    for number, (endpoint_id, topic) in enumerate(facts.controllers, start=1):
        base = f"Device.LocalAgent.Controller.{number}."
        values[base + "EndpointID"] = endpoint_id
        values[base + "MTP.1.Protocol"] = "MQTT"
        values[base + "MTP.1.MQTT.Topic"] = topic
    for sub in facts.subscriptions:
        base = f"{SUBSCRIPTION_TABLE}{sub.instance}."
        owner = facts.owners.get(sub.owner, 0)
        values.update(
            {
                base + "Enable": _flag(sub.enable),
                base + "ID": sub.sub_id,
                base + "Recipient": f"Device.LocalAgent.Controller.{owner}" if owner else "",
                base + "NotifType": sub.notif_type,
                base + "ReferenceList": ",".join(sub.references),
                base + "Persistent": _flag(sub.persistent),
            }
        )
    values.update(SETTING_DEFAULTS)
    values.update(facts.settings)
    new = status.get("messages_new", 0)
    values.update(
        {
            MAILBOX + f"{prefix}CodeSet": _flag(status.get("code_set")),
            MAILBOX + f"{prefix}Failures": _count(status.get("failures")),
            MAILBOX + f"{prefix}CooldownRemaining": _count(status.get("cooldown_remaining_s")),
            MAILBOX + f"{prefix}Locked": _flag(status.get("locked")),
            MAILBOX + f"{prefix}Protection": _flag(status.get("protection")),
            MAILBOX + f"{prefix}NewMessages": _count(new),
            MAILBOX + f"{prefix}SavedMessages": _count(status.get("messages_saved", 0)),
            CALLING_FEATURES + "LineMessagesWaiting": _flag(_count(new) != "0"),
        }
    )
    return values


# --- paths -------------------------------------------------------------------------


def segments(path: str) -> tuple[list[str], bool]:
    """A path's segments and whether it names an object (ends with '.'); PathError if bad."""
    if not path.startswith("Device.") and path != "Device.":
        raise PathError(INVALID_PATH_SYNTAX, f"{path[:80]!r} does not start with 'Device.'")
    if "[" in path:
        raise PathError(INVALID_PATH_SYNTAX, "search expressions are not supported; use '*'")
    is_object = path.endswith(".")
    parts = (path[:-1] if is_object else path).split(".")
    for part in parts:
        if not _SEGMENT_RE.fullmatch(part):
            raise PathError(INVALID_PATH_SYNTAX, f"{path[:80]!r}: bad segment {part[:40]!r}")
    return parts, is_object


def template(parts: Iterable[str]) -> str:
    """Instance numbers and '*' as ``{i}``: the supported path of an instantiated one."""
    return ".".join("{i}" if p.isdigit() or p == "*" else p for p in parts)


def _match(pattern: list[str], concrete: list[str]) -> bool:
    """Segment-wise match; '*' matches any instance number."""
    if len(pattern) > len(concrete):
        return False
    for want, have in zip(pattern, concrete, strict=False):
        if want == "*":
            if not have.isdigit():
                return False
        elif want != have:
            return False
    return True


def _covers(reference: str, path: str) -> bool:
    """Whether a subscription's reference (object, parameter, event, command) covers ``path``."""
    ref_tail = reference.endswith(("!", "()"))
    if ref_tail != path.endswith(("!", "()")):
        return False
    try:
        ref_parts, ref_object = segments(reference.rstrip("!()"))
        parts, _ = segments(path.rstrip("!()"))
    except PathError:
        return False
    if ref_object:
        return _match(ref_parts, parts)
    return len(ref_parts) == len(parts) and _match(ref_parts, parts)


class DataModel:
    """The supported model for one vendor prefix, and lookups over instantiated values."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.objects = supported_model(prefix)
        self._by_path = {o.path: o for o in self.objects}

    def object_spec(self, object_template: str) -> ObjectSpec | None:
        """The supported object whose path is ``object_template`` (``{i}`` for instances)."""
        return self._by_path.get(object_template)

    def check_supported(self, path: str) -> tuple[list[str], bool]:
        """Segments of a path in the supported model; PathError 7008/7026 otherwise."""
        parts, is_object = segments(path)
        if is_object:
            wanted = template(parts) + "."
            if any(o.path.startswith(wanted) for o in self.objects):
                return parts, True
            raise PathError(INVALID_PATH, f"{path[:80]!r} is not in the supported data model")
        spec = self._by_path.get(template(parts[:-1]) + ".")
        if spec is None or spec.param(parts[-1]) is None:
            raise PathError(INVALID_PATH, f"{path[:80]!r} is not in the supported data model")
        return parts, False

    def get(self, path: str, values: Mapping[str, str]) -> dict[str, dict[str, str]]:
        """``{object path: {param name: value}}`` for a Get of ``path`` (partial or wildcards)."""
        parts, is_object = self.check_supported(path)
        found: dict[str, dict[str, str]] = {}
        for full, value in values.items():
            concrete = full.split(".")
            if is_object:
                hit = len(concrete) > len(parts) and _match(parts, concrete)
            else:
                hit = len(concrete) == len(parts) and _match(parts, concrete)
            if hit:
                obj, _, name = full.rpartition(".")
                found.setdefault(obj + ".", {})[name] = value
        return dict(sorted(found.items()))

    def resolve_objects(self, path: str, values: Mapping[str, str]) -> list[str]:
        """Instantiated object paths an object path (with '*') designates."""
        parts, is_object = self.check_supported(path)
        if not is_object:
            raise PathError(INVALID_PATH_SYNTAX, f"{path[:80]!r} is not an object path")
        objects: set[str] = set()
        for full in values:
            concrete = full.split(".")
            if len(concrete) > len(parts) and _match(parts, concrete):
                objects.add(".".join(concrete[: len(parts)]) + ".")
        return sorted(objects)

    def check_value(self, spec: ParamSpec, value: str) -> str:
        """The canonical form of a value written to ``spec``; PathError 7011/7012 if bad."""
        if spec.kind == "boolean":
            lowered = value.strip().lower()
            if lowered in ("true", "1"):
                return "true"
            if lowered in ("false", "0"):
                return "false"
            raise PathError(INVALID_TYPE, f"{spec.name}: expected true or false, got {value!r}")
        if spec.kind == "unsignedInt":
            if not value.strip().isdigit():
                raise PathError(
                    INVALID_TYPE, f"{spec.name}: expected an unsigned integer, got {value[:40]!r}"
                )
            number = int(value)
            if not spec.low <= number <= spec.high:
                raise PathError(
                    INVALID_VALUE,
                    f"{spec.name}: expected {spec.low} to {spec.high}, got {number}",
                )
            return str(number)
        return value

    def command(self, path: str) -> tuple[str, CommandSpec]:
        """The object path and command of ``Obj.Cmd()``; PathError 7026 when unknown."""
        if not path.endswith("()"):
            raise PathError(INVALID_PATH_SYNTAX, f"{path[:80]!r}: a command ends with '()'")
        obj, _, name = path.rpartition(".")
        parts, _ = segments(obj + ".")
        spec = self._by_path.get(template(parts) + ".")
        command = next((c for c in spec.commands if c.name == name), None) if spec else None
        if command is None:
            raise PathError(INVALID_PATH, f"{path[:80]!r} is not a supported command")
        return obj + ".", command
