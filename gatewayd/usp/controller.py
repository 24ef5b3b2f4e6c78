"""A minimal USP controller over MQTT 5, for ``gatewayd advisor``, the tests and the fleet bench.

One connection, one topic of its own; requests are matched to answers by
``msg_id``; notifications (and Connect/Disconnect Records) land on a queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiomqtt
from google.protobuf.message import DecodeError
from paho.mqtt.packettypes import PacketTypes

from gatewayd.errors import GatewaydError
from gatewayd.usp.agent import NO_DELAY, mqtt_properties
from gatewayd.usp.records import CONTENT_TYPE, Header, Msg, Record, new_msg, wrap

LOGGER = logging.getLogger(__name__)


class ControllerError(GatewaydError, RuntimeError):
    """A request got no answer, or an Error; the message says which."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Received:
    """Something an agent sent us unasked: a Notify, a Connect or a Disconnect Record."""

    from_id: str
    kind: str  # "notify", "mqtt_connect", "disconnect"
    msg: Msg | None
    record: Record


class UspController:
    """``async with UspController(...) as c: await c.get(box, topic, ["Device."])``."""

    def __init__(
        self,
        host: str,
        port: int,
        endpoint_id: str,
        topic: str,
        tls_context: ssl.SSLContext | None,
        *,
        timeout_s: float = 10.0,
    ) -> None:
        self.endpoint_id = endpoint_id
        self.topic = topic
        self.timeout_s = timeout_s
        connect = mqtt_properties(PacketTypes.CONNECT)
        connect.UserProperty = [("usp-endpoint-id", endpoint_id)]
        self._client = aiomqtt.Client(
            host,
            port,
            # Not the Endpoint ID: a `watch` and a `reset` of the same controller run at once,
            # and a broker drops the older of two connections with one ClientId.
            identifier=None,
            protocol=aiomqtt.ProtocolVersion.V5,
            properties=connect,
            tls_context=tls_context,
            timeout=timeout_s,
            socket_options=NO_DELAY,
        )
        self._pending: dict[str, asyncio.Future[Msg]] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None
        self.received: asyncio.Queue[Received] = asyncio.Queue()

    async def __aenter__(self) -> UspController:
        await self._client.__aenter__()
        await self._client.subscribe(self.topic, qos=1)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._reader
        with contextlib.suppress(aiomqtt.MqttError):
            await self._client.__aexit__(exc_type, exc, tb)

    async def _read(self) -> None:
        async for message in self._client.messages:
            record = Record()
            try:
                record.ParseFromString(bytes(message.payload))
            except DecodeError:
                LOGGER.warning("controller: undecodable record on %s", message.topic)
                continue
            kind = record.WhichOneof("record_type")
            if kind != "no_session_context":
                self.received.put_nowait(Received(record.from_id, str(kind), None, record))
                continue
            msg = Msg()
            try:
                msg.ParseFromString(record.no_session_context.payload)
            except DecodeError:
                continue
            future = self._pending.pop(msg.header.msg_id, None)
            if future is not None and not future.done():
                future.set_result(msg)
            elif msg.body.WhichOneof("msg_body") == "request":
                self.received.put_nowait(Received(record.from_id, "notify", msg, record))

    def new_request(self, msg_type: int) -> Msg:
        """An empty request of ``msg_type`` with a fresh msg_id, to fill."""
        return new_msg(f"{self.endpoint_id}-{next(self._ids)}", msg_type)

    async def send_raw(
        self, agent_topic: str, payload: bytes, content_type: str | None = CONTENT_TYPE
    ) -> None:
        """Publish bytes as they are on the agent's topic (tests use it for garbage)."""
        props = mqtt_properties(PacketTypes.PUBLISH)
        props.ResponseTopic = self.topic
        if content_type is not None:
            props.ContentType = content_type
        await self._client.publish(agent_topic, payload, qos=1, properties=props)

    async def request(
        self, agent_id: str, agent_topic: str, msg: Msg, *, version: str = "1.4"
    ) -> Msg:
        """Send ``msg`` to the agent; its answer (Response or Error), or ControllerError."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Msg] = loop.create_future()
        self._pending[msg.header.msg_id] = future
        await self.send_raw(agent_topic, wrap(msg, agent_id, self.endpoint_id, version))
        try:
            return await asyncio.wait_for(future, self.timeout_s)
        except TimeoutError as exc:
            raise ControllerError(
                f"no answer from {agent_id} on {agent_topic} within {self.timeout_s:g} s "
                "(is the box online, and is this controller listed in its [usp] profile?)"
            ) from exc
        finally:
            self._pending.pop(msg.header.msg_id, None)

    async def get(self, agent_id: str, agent_topic: str, paths: list[str]) -> dict[str, str]:
        """Get ``paths``: ``{full parameter path: value}``; ControllerError on any error."""
        msg = self.new_request(Header.GET)
        msg.body.request.get.param_paths.extend(paths)
        answer = _checked(await self.request(agent_id, agent_topic, msg))
        values: dict[str, str] = {}
        for result in answer.body.response.get_resp.req_path_results:
            if result.err_code:
                raise ControllerError(f"{result.requested_path}: {result.err_msg}", result.err_code)
            for resolved in result.resolved_path_results:
                for name, value in resolved.result_params.items():
                    values[resolved.resolved_path + name] = value
        return values

    async def operate(
        self, agent_id: str, agent_topic: str, command: str, command_key: str
    ) -> dict[str, str]:
        """Run a synchronous command; its output arguments, or ControllerError."""
        msg = self.new_request(Header.OPERATE)
        operate = msg.body.request.operate
        operate.command, operate.command_key, operate.send_resp = command, command_key, True
        answer = _checked(await self.request(agent_id, agent_topic, msg))
        for result in answer.body.response.operate_resp.operation_results:
            if result.HasField("cmd_failure"):
                raise ControllerError(result.cmd_failure.err_msg, result.cmd_failure.err_code)
            return dict(result.req_output_args.output_args)
        raise ControllerError("the agent answered without an operation result")

    async def subscribe(
        self,
        agent_id: str,
        agent_topic: str,
        notif_type: str,
        references: list[str],
        *,
        persistent: bool = False,
    ) -> str:
        """Add a ``Device.LocalAgent.Subscription.``; its instantiated path."""
        msg = self.new_request(Header.ADD)
        create = msg.body.request.add.create_objs.add(obj_path="Device.LocalAgent.Subscription.")
        settings: dict[str, Any] = {
            "NotifType": notif_type,
            "ReferenceList": ",".join(references),
            "Enable": "true",
            "Persistent": "true" if persistent else "false",
        }
        for name, value in settings.items():
            create.param_settings.add(param=name, value=value, required=True)
        answer = _checked(await self.request(agent_id, agent_topic, msg))
        result = answer.body.response.add_resp.created_obj_results[0]
        if result.oper_status.HasField("oper_failure"):
            failure = result.oper_status.oper_failure
            raise ControllerError(failure.err_msg, failure.err_code)
        return str(result.oper_status.oper_success.instantiated_path)


def _checked(answer: Msg) -> Msg:
    if answer.body.HasField("error"):
        error = answer.body.error
        details = "; ".join(f"{p.param_path}: {p.err_msg}" for p in error.param_errs)
        raise ControllerError(
            f"USP error {error.err_code}: {error.err_msg}" + (f" ({details})" if details else ""),
            error.err_code,
        )
    return answer
