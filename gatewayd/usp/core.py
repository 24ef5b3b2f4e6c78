"""The agent's request handling: a received USP Record in, Records to publish out. No I/O.

:class:`AgentCore` checks the Record (size, version, type, sender, trust), runs
the Message against the data model and the service, and returns what to
publish and where. Clocks are injected; the agent's own state (settings,
persistent subscriptions, the ``command_key`` ledger) goes through ``persist``.
Every received Record ends in one :class:`Handled` outcome, logged by the edge.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from google.protobuf.message import DecodeError

from gatewayd import __version__
from gatewayd.usp import datamodel as dm
from gatewayd.usp.config import ControllerConfig, UspConfig
from gatewayd.usp.datamodel import DataModel, Facts, PathError, Subscription
from gatewayd.usp.records import (
    RESPONSE_TYPE,
    SUPPORTED_VERSIONS,
    VERSION,
    Header,
    Msg,
    Record,
    disconnect_record,
    error_msg,
    mqtt_connect_record,
    new_msg,
    wrap,
)

LOGGER = logging.getLogger(__name__)

#: How many ``command_key`` tickets the idempotence ledger remembers.
LEDGER_MAX: Final = 500
_TICKET_CHARS: Final = frozenset(string.ascii_letters + string.digits + "-_.:/#")
_TICKET_MAX: Final = 64
#: Service events after which parameter values may have changed.
REFRESH_EVENTS: Final = frozenset({"code", "auth", "lock", "cooldown", "message", "mwi"})


class ServiceView(Protocol):
    """What the agent may see and do on the service (the daemon, or a fake in the bench)."""

    def status(self) -> dict[str, Any]:
        """Code and line state, never digits; ``messages_new``/``messages_saved`` if known."""
        ...

    def reset_code(self, origin: str) -> None:
        """The advisor reset, audited with ``origin``."""
        ...


@dataclass(frozen=True)
class Outbound:
    """One Record to publish on ``topic``."""

    topic: str
    payload: bytes


@dataclass
class Handled:
    """What became of one received Record: ``outcome`` is a short, loggable phrase."""

    outcome: str
    replies: list[Outbound] = field(default_factory=list)
    error_code: int = 0


class _Bucket:
    """A token bucket: ``per_minute`` requests, refilled continuously."""

    def __init__(self, per_minute: int, now: float) -> None:
        self.capacity = float(per_minute)
        self.tokens = float(per_minute)
        self.rate = per_minute / 60.0
        self.stamp = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


def _ticket_problem(command_key: str) -> str | None:
    if not command_key:
        return "command_key is empty: give the advisor's ticket (gatewayd advisor --ticket)"
    if len(command_key) > _TICKET_MAX or not set(command_key) <= _TICKET_CHARS:
        return f"command_key must be 1-{_TICKET_MAX} letters, digits or -_.:/#"
    return None


class AgentCore:
    """One agent's USP logic over a :class:`ServiceView`."""

    def __init__(
        self,
        config: UspConfig,
        service: ServiceView,
        *,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        state: Mapping[str, Any] | None = None,
        persist: Callable[[dict[str, Any]], None] = lambda state: None,
    ) -> None:
        self.config = config
        self.service = service
        self.model = DataModel(config.prefix)
        self._clock = clock
        self._wall_clock = wall_clock
        self._started = clock()
        self._persist = persist
        self._buckets: dict[str, _Bucket] = {}
        #: Our "reply to" topic (CONNACK's subscribe-topic, else the profile's agent_topic).
        self.reply_topic = config.agent_topic
        state = state or {}
        self.settings: dict[str, str] = {
            k: v for k, v in dict(state.get("settings", {})).items() if k in dm.SETTING_DEFAULTS
        }
        self.ledger: dict[str, dict[str, Any]] = dict(state.get("ledger", {}))
        self.subscriptions: dict[int, Subscription] = {}
        for raw in state.get("subscriptions", []):
            sub = Subscription(
                instance=int(raw["instance"]),
                owner=str(raw["owner"]),
                sub_id=str(raw["sub_id"]),
                notif_type=str(raw["notif_type"]),
                references=tuple(raw["references"]),
                enable=bool(raw["enable"]),
                persistent=True,
            )
            if config.controller(sub.owner) is not None:
                self.subscriptions[sub.instance] = sub
        self._next_instance = max(self.subscriptions, default=0) + 1
        self._last_values: dict[str, str] = {}
        self._msg_counter = 0

    # --- state -----------------------------------------------------------------------

    def _save(self) -> None:
        self._persist(
            {
                "settings": dict(self.settings),
                "ledger": self.ledger,
                "subscriptions": [
                    {
                        "instance": s.instance,
                        "owner": s.owner,
                        "sub_id": s.sub_id,
                        "notif_type": s.notif_type,
                        "references": list(s.references),
                        "enable": s.enable,
                    }
                    for s in self.subscriptions.values()
                    if s.persistent
                ],
            }
        )

    def values(self) -> dict[str, str]:
        """Every instantiated parameter and its value, now."""
        try:
            status = self.service.status()
        except Exception:  # the service's own errors must not take the agent down
            LOGGER.exception("usp: could not read the service's status")
            status = {}
        controllers = tuple((c.endpoint_id, c.topic) for c in self.config.controllers)
        facts = Facts(
            status=status,
            settings=self.settings,
            subscriptions=self.subscriptions.values(),
            controllers=controllers,
            endpoint_id=self.config.endpoint_id,
            manufacturer=self.config.manufacturer,
            model=self.config.model,
            serial_number=self.config.serial_number,
            software_version=__version__,
            uptime_s=int(self._clock() - self._started),
            owners={c.endpoint_id: i for i, c in enumerate(self.config.controllers, start=1)},
        )
        return dm.instantiated(facts, self.config.prefix)

    def _next_msg_id(self, kind: str) -> str:
        self._msg_counter += 1
        return f"{self.config.endpoint_id}-{kind}-{int(self._wall_clock())}-{self._msg_counter}"

    def _to_controller(
        self, controller_id: str, msg: Msg, version: str = VERSION, reply_to: str | None = None
    ) -> Outbound:
        """A Record for a controller: on ``reply_to`` (answers) else its profile topic."""
        controller = self.config.controller(controller_id)
        assert controller is not None
        topic = reply_to or controller.topic
        return Outbound(topic, wrap(msg, controller_id, self.config.endpoint_id, version))

    # --- connection and notifications --------------------------------------------------

    def on_connected(self, reply_topic: str, first: bool) -> list[Outbound]:
        """Connect Records to every controller, then Boot! (first connection of this run)."""
        self.reply_topic = reply_topic
        out = [
            Outbound(
                c.topic, mqtt_connect_record(c.endpoint_id, self.config.endpoint_id, reply_topic)
            )
            for c in self.config.controllers
        ]
        self._last_values = self.values()
        if first:
            params = {
                "CommandKey": "",
                "Cause": "LocalReboot",
                "FirmwareUpdated": "false",
                "ParameterMap": "{}",
            }
            out.extend(self._event("Device.", "Boot!", params))
        return out

    def _event(self, obj_path: str, name: str, params: Mapping[str, str]) -> list[Outbound]:
        out: list[Outbound] = []
        for sub in self._subscribed("Event", obj_path + name):
            msg = new_msg(self._next_msg_id("event"), Header.NOTIFY)
            notify = msg.body.request.notify
            notify.subscription_id = sub.sub_id
            notify.event.obj_path = obj_path
            notify.event.event_name = name
            notify.event.params.update(params)
            out.append(self._to_controller(sub.owner, msg))
        return out

    def _subscribed(self, notif_type: str, path: str) -> list[Subscription]:
        return [
            s
            for s in self.subscriptions.values()
            if s.enable and s.notif_type == notif_type and s.matches(path)
        ]

    def on_service_event(self, event: Mapping[str, Any]) -> list[Outbound]:
        """ValueChange (and ``X_<VENDOR>_Locked!``) for what a service event changed."""
        if event.get("type") not in REFRESH_EVENTS:
            return []
        return self.refresh()

    def refresh(self) -> list[Outbound]:
        """Compare values with the last ones; notify subscribers of the changes."""
        values = self.values()
        changed = {
            path: value
            for path, value in values.items()
            if self._last_values.get(path) != value
            and not path.endswith(".UpTime")
            and not path.endswith("CooldownRemaining")
        }
        self._last_values = values
        out: list[Outbound] = []
        for path, value in changed.items():
            for sub in self._subscribed("ValueChange", path):
                msg = new_msg(self._next_msg_id("vc"), Header.NOTIFY)
                notify = msg.body.request.notify
                notify.subscription_id = sub.sub_id
                notify.value_change.param_path = path
                notify.value_change.param_value = value
                out.append(self._to_controller(sub.owner, msg))
        locked = dm.MAILBOX + f"{self.config.prefix}Locked"
        if changed.get(locked) == "true":
            failures = values.get(dm.MAILBOX + f"{self.config.prefix}Failures", "0")
            out.extend(
                self._event(dm.MAILBOX, f"{self.config.prefix}Locked!", {"Failures": failures})
            )
        return out

    # --- records in --------------------------------------------------------------------

    def handle(
        self, payload: bytes, *, response_topic: str | None = None, topic: str = ""
    ) -> Handled:
        """One PUBLISH received on the agent's topic: what to answer, and the outcome."""
        if len(payload) > self.config.max_record_bytes:
            return Handled(
                f"dropped: {len(payload)} bytes exceeds max_record_bytes "
                f"({self.config.max_record_bytes})"
            )
        record = Record()
        try:
            record.ParseFromString(payload)
        except DecodeError:
            return Handled("dropped: not a USP Record (protobuf decode failed)")
        if record.to_id != self.config.endpoint_id:
            return Handled(f"dropped: to_id {record.to_id[:64]!r} is not this agent")
        controller = self.config.controller(record.from_id)
        if controller is None:
            return Handled(f"dropped: from_id {record.from_id[:64]!r} is not a listed controller")
        # Answers go to the request's Response Topic, else its /reply-to= suffix, else the
        # controller's topic in the profile; notifications always to the profile's topic.
        reply_to = response_topic or _reply_to_suffix(topic) or controller.topic
        kind = record.WhichOneof("record_type")
        version = record.version if record.version in SUPPORTED_VERSIONS else VERSION
        if kind == "session_context":
            reason = "E2E Session Context is not supported; send no_session_context Records"
            out = Outbound(
                reply_to,
                disconnect_record(
                    controller.endpoint_id,
                    self.config.endpoint_id,
                    dm.SESSION_CONTEXT_NOT_ALLOWED,
                    reason,
                    version,
                ),
            )
            return Handled(
                "answered: Disconnect 7106 (session context)", [out], dm.SESSION_CONTEXT_NOT_ALLOWED
            )
        if kind in (
            "mqtt_connect",
            "disconnect",
            "websocket_connect",
            "stomp_connect",
            "uds_connect",
        ):
            return Handled(f"ignored: {kind} record from {controller.endpoint_id}")
        if kind != "no_session_context":
            return Handled("dropped: Record without a record type")
        if record.payload_security != Record.PLAINTEXT:
            return Handled("dropped: payload_security TLS12 (USP layer security) is not supported")
        msg = Msg()
        try:
            msg.ParseFromString(record.no_session_context.payload)
        except DecodeError:
            return Handled("dropped: payload is not a USP Msg (no msg_id to answer)")
        msg_id = msg.header.msg_id
        if not msg_id:
            return Handled("dropped: Msg without msg_id")
        if record.version not in SUPPORTED_VERSIONS:
            refusal = error_msg(
                msg_id,
                7104,
                f"Record version {record.version[:16]!r} not "
                f"supported; use one of {', '.join(SUPPORTED_VERSIONS)}",
            )
            return Handled(
                "answered: Error 7104 (record version)",
                [self._to_controller(controller.endpoint_id, refusal, VERSION, reply_to)],
                7104,
            )
        body = msg.body.WhichOneof("msg_body")
        if body != "request":
            return Handled(f"ignored: {body or 'empty'} body from {controller.endpoint_id}")
        bucket = self._buckets.setdefault(
            controller.endpoint_id, _Bucket(self.config.requests_per_minute, self._clock())
        )
        if not bucket.take(self._clock()):
            refusal = error_msg(
                msg_id,
                dm.RESOURCES_EXCEEDED,
                f"rate limit: at most {self.config.requests_per_minute} "
                "requests a minute per controller",
            )
            return Handled(
                "answered: Error 7005 (rate limit)",
                [self._to_controller(controller.endpoint_id, refusal, version, reply_to)],
                dm.RESOURCES_EXCEEDED,
            )
        answer: Msg | None
        try:
            answer, extra = self._request(controller, msg)
        except Exception:  # a bug must cost one answer, not the agent
            LOGGER.exception("usp: request %s from %s failed", msg_id, controller.endpoint_id)
            answer, extra = error_msg(msg_id, dm.INTERNAL_ERROR, "internal error"), []
        replies = (
            []
            if answer is None
            else [self._to_controller(controller.endpoint_id, answer, version, reply_to)]
        )
        code = (
            answer.body.error.err_code
            if answer is not None and answer.body.HasField("error")
            else 0
        )
        what = msg.body.request.WhichOneof("req_type") or "unknown"
        outcome = f"answered: Error {code} ({what})" if code else f"answered: {what}"
        return Handled(outcome, replies + extra, code)

    # --- messages ----------------------------------------------------------------------

    def _request(self, controller: ControllerConfig, msg: Msg) -> tuple[Msg | None, list[Outbound]]:
        request = msg.body.request
        kind = request.WhichOneof("req_type")
        msg_id = msg.header.msg_id
        if kind == "get":
            return self._get(msg_id, request.get), []
        if kind == "get_supported_dm":
            return self._get_supported_dm(msg_id, request.get_supported_dm), []
        if kind == "get_instances":
            return self._get_instances(msg_id, request.get_instances), []
        if kind == "get_supported_protocol":
            answer = new_msg(msg_id, Header.GET_SUPPORTED_PROTO_RESP)
            answer.body.response.get_supported_protocol_resp.agent_supported_protocol_versions = (
                ",".join(SUPPORTED_VERSIONS)
            )
            return answer, []
        if kind == "set":
            return self._set(controller, msg_id, request.set), []
        if kind == "add":
            return self._add(controller, msg_id, request.add), []
        if kind == "delete":
            return self._delete(controller, msg_id, request.delete), []
        if kind == "operate":
            return self._operate(controller, msg_id, request.operate)
        return error_msg(
            msg_id,
            dm.MESSAGE_NOT_SUPPORTED,
            f"{kind or 'an unknown request'} is not supported by this agent",
        ), []

    def _get(self, msg_id: str, get: Any) -> Msg:
        values = self.values()
        answer = new_msg(msg_id, RESPONSE_TYPE[Header.GET])
        resp = answer.body.response.get_resp
        for path in get.param_paths:
            result = resp.req_path_results.add(requested_path=path)
            try:
                found = self.model.get(path, values)
            except PathError as exc:
                result.err_code, result.err_msg = exc.code, str(exc)
                continue
            if not found and "*" not in path and not self._empty_object(path):
                result.err_code = dm.OBJECT_NOT_EXIST
                result.err_msg = f"{path[:80]!r} is not instantiated"
                continue
            depth = get.max_depth
            base = len(path.split(".")) if path.endswith(".") else 0
            for obj, params in found.items():
                if depth and base and len(obj.split(".")) - base >= depth:
                    continue
                resolved = result.resolved_path_results.add(resolved_path=obj)
                resolved.result_params.update(params)
        return answer

    def _empty_object(self, path: str) -> bool:
        """A supported object path with no parameters below it now (R-GET.1b: not an error)."""
        if not path.endswith("."):
            return False
        parts = path[:-1].split(".")
        if parts[-1].isdigit():
            return False
        wanted = dm.template(parts) + "."
        return any(o.path.startswith(wanted) for o in self.model.objects)

    def _get_supported_dm(self, msg_id: str, req: Any) -> Msg:
        answer = new_msg(msg_id, Header.GET_SUPPORTED_DM_RESP)
        resp = answer.body.response.get_supported_dm_resp
        gsdm = type(resp)
        for path in req.obj_paths or ["Device."]:
            result = resp.req_obj_results.add(req_obj_path=path)
            wanted = dm.template(path.rstrip(".").split(".")) + "."
            specs = [o for o in self.model.objects if o.path.startswith(wanted)]
            if not path.endswith(".") or not specs:
                result.err_code = dm.INVALID_PATH
                result.err_msg = f"{path[:80]!r} is not a supported object path"
                continue
            if req.first_level_only:
                depth = wanted.count(".")
                specs = [o for o in specs if o.path.count(".") - depth <= 1]
            for spec in specs:
                obj = result.supported_objs.add(supported_obj_path=spec.path)
                obj.is_multi_instance = spec.multi
                obj.access = gsdm.OBJ_ADD_DELETE if spec.creatable else gsdm.OBJ_READ_ONLY
                if req.return_params:
                    for p in spec.params:
                        obj.supported_params.add(
                            param_name=p.name,
                            access=gsdm.PARAM_READ_WRITE if p.writable else gsdm.PARAM_READ_ONLY,
                            value_type={
                                "boolean": gsdm.PARAM_BOOLEAN,
                                "unsignedInt": gsdm.PARAM_UNSIGNED_INT,
                                "int": gsdm.PARAM_INT,
                                "dateTime": gsdm.PARAM_DATE_TIME,
                            }.get(p.kind, gsdm.PARAM_STRING),
                            value_change=gsdm.VALUE_CHANGE_ALLOWED,
                        )
                if req.return_commands:
                    for c in spec.commands:
                        obj.supported_commands.add(
                            command_name=c.name,
                            input_arg_names=c.inputs,
                            output_arg_names=c.outputs,
                            command_type=gsdm.CMD_SYNC,
                        )
                if req.return_events:
                    for e in spec.events:
                        obj.supported_events.add(event_name=e.name, arg_names=e.args)
        return answer

    def _get_instances(self, msg_id: str, req: Any) -> Msg:
        values = self.values()
        answer = new_msg(msg_id, Header.GET_INSTANCES_RESP)
        resp = answer.body.response.get_instances_resp
        for path in req.obj_paths:
            result = resp.req_path_results.add(requested_path=path)
            try:
                objects = self._instances_under(path, values, req.first_level_only)
            except PathError as exc:
                result.err_code, result.err_msg = exc.code, str(exc)
                continue
            for obj in objects:
                result.curr_insts.add(instantiated_obj_path=obj)
        return answer

    def _instances_under(
        self, path: str, values: Mapping[str, str], first_level_only: bool
    ) -> list[str]:
        """Object instances at or below an object path (only the next level if asked)."""
        self.model.check_supported(path)
        depth = path.count(".")
        found: set[str] = set()
        for full in values:
            if full.startswith(path):
                parts = full.split(".")
                for i, part in enumerate(parts[:-1]):
                    prefix = ".".join(parts[: i + 1]) + "."
                    below = prefix.startswith(path) and len(prefix) > len(path)
                    near = not first_level_only or prefix.count(".") <= depth + 1
                    if part.isdigit() and below and near:
                        found.add(prefix)
        return sorted(found)

    # --- Set ---------------------------------------------------------------------------

    def _set(self, controller: ControllerConfig, msg_id: str, req: Any) -> Msg:
        answer = new_msg(msg_id, Header.SET_RESP)
        resp = answer.body.response.set_resp
        values = self.values()
        staged: dict[str, str] = {}
        failures: list[tuple[str, int, str]] = []
        for update in req.update_objs:
            result = resp.updated_obj_results.add(requested_path=update.obj_path)
            status = result.oper_status
            if not controller.may("admin"):
                failure = (
                    update.obj_path,
                    dm.PERMISSION_DENIED,
                    f"controller {controller.endpoint_id} has no admin role",
                )
                status.oper_failure.err_code, status.oper_failure.err_msg = failure[1:]
                failures.append(failure)
                continue
            try:
                objects = self.model.resolve_objects(update.obj_path, values)
                if not objects:
                    raise PathError(
                        dm.OBJECT_NOT_EXIST, f"{update.obj_path[:80]!r} has no instance"
                    )
            except PathError as exc:
                status.oper_failure.err_code, status.oper_failure.err_msg = exc.code, str(exc)
                failures.append((update.obj_path, exc.code, str(exc)))
                continue
            object_changes: dict[str, dict[str, str]] = {}
            param_errors: dict[str, list[tuple[str, int, str]]] = {}
            failed = False
            for obj in objects:
                spec = self.model.object_spec(dm.template(obj[:-1].split(".")) + ".")
                assert spec is not None
                for setting in update.param_settings:
                    param = spec.param(setting.param)
                    try:
                        if param is None:
                            raise PathError(
                                dm.UNSUPPORTED_PARAMETER,
                                f"{setting.param[:40]!r} is not a parameter of {obj}",
                            )
                        if not param.writable:
                            raise PathError(dm.NOT_WRITABLE, f"{setting.param} is read-only")
                        canonical = self.model.check_value(param, setting.value)
                    except PathError as exc:
                        param_errors.setdefault(obj, []).append((setting.param, exc.code, str(exc)))
                        failed = failed or setting.required
                        continue
                    object_changes.setdefault(obj, {})[param.name] = canonical
            if failed or (not object_changes and param_errors):
                first = next(iter(param_errors.values()))[0]
                status.oper_failure.err_code = dm.REQUIRED_PARAM_FAILED
                status.oper_failure.err_msg = f"required parameter failed: {first[2]}"
                for obj, errs in param_errors.items():
                    inst = status.oper_failure.updated_inst_failures.add(affected_path=obj)
                    for name, code, text in errs:
                        inst.param_errs.add(param=name, err_code=code, err_msg=text)
                        failures.append((obj + name, code, text))
                continue
            for obj, changes in object_changes.items():
                done = status.oper_success.updated_inst_results.add(affected_path=obj)
                done.updated_params.update(changes)
                for name, value in changes.items():
                    staged[obj + name] = value
                for name, code, text in param_errors.get(obj, []):
                    done.param_errs.add(param=name, err_code=code, err_msg=text)
        if failures and not req.allow_partial:
            code = failures[0][1] if len({f[1] for f in failures}) == 1 else dm.MESSAGE_FAILED
            return error_msg(msg_id, code, "Set failed; nothing was changed", failures)
        if staged:
            self.settings.update(staged)
            self._save()
            LOGGER.info(
                "usp: %s set %s",
                controller.endpoint_id,
                ", ".join(f"{k}={v}" for k, v in staged.items()),
            )
        return answer

    # --- Add / Delete of subscriptions ---------------------------------------------------

    def _add(self, controller: ControllerConfig, msg_id: str, req: Any) -> Msg:
        answer = new_msg(msg_id, Header.ADD_RESP)
        resp = answer.body.response.add_resp
        failures: list[tuple[str, int, str]] = []
        created: list[Subscription] = []
        for create in req.create_objs:
            result = resp.created_obj_results.add(requested_path=create.obj_path)
            try:
                sub = self._new_subscription(controller, create, created)
            except PathError as exc:
                result.oper_status.oper_failure.err_code = exc.code
                result.oper_status.oper_failure.err_msg = str(exc)
                failures.append((create.obj_path, exc.code, str(exc)))
                continue
            created.append(sub)
            success = result.oper_status.oper_success
            success.instantiated_path = f"{dm.SUBSCRIPTION_TABLE}{sub.instance}."
            success.unique_keys["ID"] = sub.sub_id
        if failures and not req.allow_partial:
            self._next_instance -= len(created)
            return error_msg(msg_id, failures[0][1], "Add failed; nothing was created", failures)
        for sub in created:
            self.subscriptions[sub.instance] = sub
        if any(s.persistent for s in created):
            self._save()
        return answer

    def _new_subscription(
        self, controller: ControllerConfig, create: Any, pending: list[Subscription]
    ) -> Subscription:
        if create.obj_path not in (dm.SUBSCRIPTION_TABLE, "Device.LocalAgent.Subscription"):
            self.model.check_supported(create.obj_path)  # 7026/7008 for a path that is not ours
            raise PathError(
                dm.NOT_CREATABLE,
                f"{create.obj_path[:80]!r} is not creatable; only {dm.SUBSCRIPTION_TABLE} is",
            )
        if len(self.subscriptions) + len(pending) >= dm.MAX_SUBSCRIPTIONS:
            raise PathError(dm.OBJECT_NOT_CREATED, f"at most {dm.MAX_SUBSCRIPTIONS} subscriptions")
        settings = {s.param: s.value for s in create.param_settings}
        unknown = set(settings) - {"Enable", "ID", "NotifType", "ReferenceList", "Persistent"}
        if unknown:
            raise PathError(
                dm.UNSUPPORTED_PARAMETER,
                f"unknown Subscription parameter {sorted(unknown)[0][:40]!r}",
            )
        notif_type = settings.get("NotifType", "")
        if notif_type not in dm.NOTIF_TYPES:
            raise PathError(
                dm.INVALID_VALUE, f"NotifType must be one of {', '.join(dm.NOTIF_TYPES)}"
            )
        references = tuple(
            r.strip() for r in settings.get("ReferenceList", "").split(",") if r.strip()
        )
        if not references:
            raise PathError(dm.INVALID_VALUE, "ReferenceList is empty")
        for ref in references:
            self._check_reference(ref)
        bool_spec = dm.ParamSpec("Enable", "boolean")
        enable = self.model.check_value(bool_spec, settings.get("Enable", "true")) == "true"
        persistent = (
            self.model.check_value(
                dm.ParamSpec("Persistent", "boolean"), settings.get("Persistent", "false")
            )
            == "true"
        )
        sub_id = settings.get("ID") or f"sub-{self._next_instance}"
        if len(sub_id) > 64 or any(
            s.sub_id == sub_id for s in [*self.subscriptions.values(), *pending]
        ):
            raise PathError(dm.DUPLICATE_KEY, f"a subscription with ID {sub_id[:64]!r} exists")
        sub = Subscription(
            self._next_instance,
            controller.endpoint_id,
            sub_id,
            notif_type,
            references,
            enable,
            persistent,
        )
        self._next_instance += 1
        return sub

    def _check_reference(self, ref: str) -> None:
        base = ref[:-1] if ref.endswith("!") else ref[:-2] if ref.endswith("()") else None
        if base is None:
            self.model.check_supported(ref)
            return
        obj, _, name = base.rpartition(".")
        parts, _ = dm.segments(obj + ".")
        spec = self.model.object_spec(dm.template(parts) + ".")
        names = [e.name for e in spec.events] + [c.name for c in spec.commands] if spec else []
        if name + ref[len(base) :] not in names:
            raise PathError(dm.INVALID_VALUE, f"{ref[:80]!r} is not a supported event or command")

    def _delete(self, controller: ControllerConfig, msg_id: str, req: Any) -> Msg:
        answer = new_msg(msg_id, Header.DELETE_RESP)
        resp = answer.body.response.delete_resp
        values = self.values()
        doomed: list[int] = []
        failures: list[tuple[str, int, str]] = []
        for path in req.obj_paths:
            result = resp.deleted_obj_results.add(requested_path=path)
            try:
                if not path.startswith(dm.SUBSCRIPTION_TABLE):
                    self.model.check_supported(path)
                    raise PathError(dm.PERMISSION_DENIED, f"{path[:80]!r} cannot be deleted")
                objects = self.model.resolve_objects(path, values)
            except PathError as exc:
                result.oper_status.oper_failure.err_code = exc.code
                result.oper_status.oper_failure.err_msg = str(exc)
                failures.append((path, exc.code, str(exc)))
                continue
            success = result.oper_status.oper_success
            for obj in objects:
                instance = int(obj.rstrip(".").rsplit(".", 1)[-1])
                sub = self.subscriptions[instance]
                if sub.owner != controller.endpoint_id:
                    success.unaffected_path_errs.add(
                        unaffected_path=obj,
                        err_code=dm.PERMISSION_DENIED,
                        err_msg="another controller's subscription",
                    )
                    continue
                doomed.append(instance)
                success.affected_paths.append(obj)
        if failures and not req.allow_partial:
            return error_msg(msg_id, failures[0][1], "Delete failed; nothing was deleted", failures)
        for instance in doomed:
            self.subscriptions.pop(instance, None)
        if doomed:
            self._save()
        return answer

    # --- Operate -----------------------------------------------------------------------

    def _operate(
        self, controller: ControllerConfig, msg_id: str, req: Any
    ) -> tuple[Msg | None, list[Outbound]]:
        answer = new_msg(msg_id, Header.OPERATE_RESP)
        result = answer.body.response.operate_resp.operation_results.add(
            executed_command=req.command
        )
        extra: list[Outbound] = []
        try:
            obj, command = self.model.command(req.command)
            objects = self.model.resolve_objects(obj, self.values())
            if len(objects) != 1:
                raise PathError(dm.OBJECT_NOT_EXIST, f"{req.command[:80]!r} names no instance")
            if not controller.may("advisor"):
                raise PathError(
                    dm.PERMISSION_DENIED, f"controller {controller.endpoint_id} has no advisor role"
                )
            problem = _ticket_problem(req.command_key)
            if problem is not None:
                raise PathError(dm.INVALID_COMMAND_ARGS, problem)
            if req.input_args:
                raise PathError(dm.INVALID_COMMAND_ARGS, f"{command.name} takes no arguments")
        except PathError as exc:
            result.cmd_failure.err_code, result.cmd_failure.err_msg = exc.code, str(exc)
            LOGGER.warning(
                "usp: %s refused to %s: %s", req.command[:80], controller.endpoint_id, exc
            )
            return (answer if req.send_resp else None), extra
        executed = objects[0] + command.name
        result.executed_command = executed
        done = self.ledger.get(req.command_key)
        if done is not None:
            LOGGER.warning(
                "usp: %s replayed ticket %s (done by %s); not reset again",
                controller.endpoint_id,
                req.command_key,
                done.get("controller"),
            )
            outputs = {"Status": "AlreadyDone"}
        else:
            origin = f"usp {controller.endpoint_id} ticket {req.command_key}"
            try:
                self.service.reset_code(origin)
            except Exception as exc:  # the service refused or failed: say so, go on
                LOGGER.exception("usp: reset for %s failed", controller.endpoint_id)
                result.cmd_failure.err_code = dm.COMMAND_FAILURE
                result.cmd_failure.err_msg = f"reset failed: {type(exc).__name__}"
                return (answer if req.send_resp else None), extra
            self.ledger[req.command_key] = {
                "controller": controller.endpoint_id,
                "time": round(self._wall_clock(), 3),
            }
            while len(self.ledger) > LEDGER_MAX:
                self.ledger.pop(next(iter(self.ledger)))
            self._save()
            LOGGER.warning(
                "usp audit: code reset by %s, ticket %s", controller.endpoint_id, req.command_key
            )
            outputs = {"Status": "Reset"}
        result.req_output_args.output_args.update(outputs)
        for sub in self._subscribed("OperationComplete", executed):
            note = new_msg(self._next_msg_id("oc"), Header.NOTIFY)
            notify = note.body.request.notify
            notify.subscription_id = sub.sub_id
            oc = notify.oper_complete
            oc.obj_path, oc.command_name, oc.command_key = objects[0], command.name, req.command_key
            oc.req_output_args.output_args.update(outputs)
            extra.append(self._to_controller(sub.owner, note))
        return (answer if req.send_resp else None), extra


def _reply_to_suffix(topic: str) -> str | None:
    """The MQTT 3.1.1-style ``/reply-to=`` suffix of a topic, '%2F' meaning '/' (R-MQTT.25)."""
    marker = "/reply-to="
    if marker not in topic:
        return None
    suffix = topic.rsplit(marker, 1)[1].strip().replace("%2F", "/")
    return suffix or None
