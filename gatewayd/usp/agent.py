"""The USP agent's MQTT 5 edge (TR-369 MQTT binding) on the daemon's asyncio loop.

Connects with mutual TLS and the ``usp-endpoint-id`` user property, subscribes
(QoS 1) to CONNACK's ``subscribe-topic`` values or the profile's agent topic,
feeds each PUBLISH to :class:`~gatewayd.usp.core.AgentCore` and publishes what
it returns with Content Type ``usp.msg`` and our Response Topic. A broker that
is down, refuses or drops us is retried with jittered exponential back-off; the
service never waits on the broker (events reach the agent through a bounded
queue, dropped when full).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gatewayd.errors import GatewaydError
from gatewayd.eventbus import EventBus
from gatewayd.usp.config import UspConfig, parse_usp, tls_files
from gatewayd.usp.core import AgentCore, Outbound, ServiceView
from gatewayd.usp.datamodel import SESSION_TERMINATED
from gatewayd.usp.records import CONTENT_TYPE, CONTENT_TYPES, disconnect_record
from gatewayd.voicemail.atomicdb import write_atomically

LOGGER = logging.getLogger(__name__)

#: The agent's own small state (settings, persistent subscriptions, ticket ledger).
STATE_FILE: Final = "usp-agent.json"
#: Service events waiting for the agent; beyond this they are dropped (the service never waits).
EVENT_QUEUE: Final = 256
#: What a shutdown gives the Disconnect Records (R-MTP.7) before it goes on regardless.
CLOSE_TIMEOUT_S: Final = 1.0
#: Dropped records logged a minute; beyond, they are counted and summed up in one line.
DROP_LOG_PER_MINUTE: Final = 20
#: Small request/answer packets: without TCP_NODELAY, Nagle and delayed ACKs add ~40 ms a leg.
NO_DELAY: Final = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
#: Time given to one PUBLISH (QoS 1: until PUBACK) before the connection is deemed broken.
PUBLISH_TIMEOUT_S: Final = 10.0


class UspError(GatewaydError, RuntimeError):
    """The USP agent cannot start (bad TLS files); the message says what to fix."""


def backoff_delay(attempt: int, config: UspConfig, rng: random.Random) -> float:
    """Seconds before retry ``attempt`` (1, 2, ...): uniform in [m*k^(n-1), m*k^n], capped.

    The TR-369 retry shape (ConnectRetryTime, ConnectRetryIntervalMultiplier): random
    within the whole interval, so a fleet that lost its broker at once comes back spread out.
    """
    base, mult, cap = config.retry_initial_s, config.retry_multiplier, config.retry_max_s
    low = min(cap, base * mult ** (attempt - 1))
    high = min(cap, base * mult**attempt)
    return rng.uniform(low, high)


def tls_context(config: UspConfig) -> ssl.SSLContext | None:
    """Mutual TLS: the pinned operator CA, the box's certificate and key; None for mqtt://."""
    if not config.tls:
        return None
    cert, key = tls_files(config)
    try:
        context = ssl.create_default_context(cafile=str(config.ca_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if cert is not None and key is not None:
            context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise UspError(
            f"{config.source}: [usp] TLS files unusable ({exc}); check usp.ca_file, and the box's "
            "certificate and key (`gatewayd provision --usp-cert FILE --usp-key FILE`)"
        ) from exc
    if cert is None or key is None:
        LOGGER.warning("usp: no box certificate configured; the broker must not require one")
    return context


def mqtt_properties(packet_type: int) -> Properties:
    """Empty MQTT 5 properties for one packet type (paho's constructor is untyped)."""
    return Properties(packet_type)  # type: ignore[no-untyped-call]


def _reason_value(code: object) -> int:
    """A SUBACK reason code (paho ReasonCode or int) as a number."""
    value = getattr(code, "value", code)
    return value if isinstance(value, int) else 0x80


def load_state(path: Path) -> dict[str, Any]:
    """The agent's saved state; an unreadable file is kept aside and an empty state used."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        aside = path.with_name(path.name + ".bad")
        with contextlib.suppress(OSError):
            os.replace(path, aside)
        LOGGER.error("usp: %s unreadable (%s); kept as %s, starting afresh", path, exc, aside)
        return {}
    return data if isinstance(data, dict) else {}


def save_state(path: Path, state: Mapping[str, Any]) -> None:
    """Write the agent's state atomically and durably."""
    write_atomically(path, json.dumps(state, sort_keys=True).encode())


class _Client(aiomqtt.Client):
    """aiomqtt's client, keeping CONNACK's properties (subscribe-topic, Response Information)."""

    connack_properties: Properties | None = None

    def _on_connect(
        self,
        client: Any,
        userdata: Any,
        flags: Any,
        reason_code: Any,
        properties: Properties | None = None,
    ) -> None:
        self.connack_properties = properties
        super()._on_connect(client, userdata, flags, reason_code, properties)

    def _on_disconnect(
        self,
        client: Any,
        userdata: Any,
        flags: Any,
        reason_code: Any,
        properties: Properties | None = None,
    ) -> None:
        # A broker that drops us before CONNACK (e.g. TLS "unknown CA" under TLS 1.3) would
        # leave aiomqtt waiting for the whole connect timeout: fail the attempt now.
        if not self._connected.done():
            self._connected.set_exception(
                aiomqtt.MqttError(
                    f"the broker closed the connection before CONNACK ({reason_code})"
                )
            )
        super()._on_disconnect(client, userdata, flags, reason_code, properties)


def connack_topics(properties: Properties | None, agent_topic: str) -> tuple[list[str], str]:
    """What to subscribe to and our "reply to" topic, from CONNACK's properties.

    Every ``subscribe-topic`` user property, and the profile's topic (R-MQTT.15); the reply
    topic is CONNACK's Response Information (R-MQTT.21), else the first subscribed topic
    that is not a filter (a Response Topic cannot hold wildcards).
    """
    pairs = getattr(properties, "UserProperty", None) or []
    pushed = [str(value) for key, value in pairs if key == "subscribe-topic"]
    topics = list(dict.fromkeys([*pushed, agent_topic]))
    plain = [t for t in topics if "+" not in t and "#" not in t]
    reply = getattr(properties, "ResponseInformation", None) or plain[0]
    return topics, str(reply)


class UspAgent:
    """The agent: one task on the loop that connects, serves, and reconnects with back-off."""

    def __init__(
        self,
        config: UspConfig,
        service: ServiceView,
        bus: EventBus | None,
        state_path: Path | None,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._clock = clock
        self._state_path = state_path
        state = load_state(state_path) if state_path is not None else {}
        self.core = AgentCore(
            config,
            service,
            clock=clock,
            wall_clock=time.time,
            state=state,
            persist=self._persist,
        )
        self._tls = tls_context(config)
        self._rng = rng or random.Random()
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue(EVENT_QUEUE)
        self._task: asyncio.Task[None] | None = None
        self._client: _Client | None = None
        self._booted = False
        self._session_ok = False  # the last session got as far as subscribing
        #: Observable by tests and the bench: connections made, and the last back-off chosen.
        self.connections = 0
        self.connected_at = 0.0  # wall clock of the last connection (subscribed)
        self.connected = asyncio.Event()
        self.last_backoff_s = 0.0
        self._drop_window = clock() - 60.0
        self._drops_logged = self._drops_unlogged = 0
        if bus is not None:
            bus.add_listener(self._on_event)

    def _persist(self, state: dict[str, Any]) -> None:
        if self._state_path is None:
            return
        try:
            save_state(self._state_path, state)
        except OSError:
            LOGGER.exception("usp: could not save %s", self._state_path)

    def _on_event(self, event: dict[str, Any]) -> None:
        # Called synchronously by the EventBus on the loop: never block, never raise.
        try:
            self._events.put_nowait(event)
        except asyncio.QueueFull:
            LOGGER.warning("usp: %d service events pending; dropping one", EVENT_QUEUE)

    def start(self) -> None:
        """Start serving in the background (returns at once; the broker may be down)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="usp-agent")

    async def close(self) -> None:
        """Say goodbye to the controllers if connected, then stop. Idempotent."""
        client, self._client = self._client, None
        if client is not None:
            goodbyes = [
                self._publish(
                    client,
                    Outbound(
                        c.topic,
                        disconnect_record(
                            c.endpoint_id,
                            self.config.endpoint_id,
                            SESSION_TERMINATED,
                            "agent shutting down",
                        ),
                    ),
                )
                for c in self.config.controllers
            ]
            # A shutdown waits on the broker for one second at most, all controllers together.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*goodbyes), CLOSE_TIMEOUT_S)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                await self._session()
                reason = "the broker closed the connection"
            except asyncio.CancelledError:
                raise
            except aiomqtt.MqttError as exc:
                reason = str(exc) or type(exc).__name__
            except Exception as exc:  # any fault of one connection: log, back off, retry
                LOGGER.exception("usp: connection failed")
                reason = type(exc).__name__
            self._client = None
            self.connected.clear()
            attempt = 1 if self._session_ok else attempt + 1
            self._session_ok = False
            delay = backoff_delay(attempt, self.config, self._rng)
            self.last_backoff_s = delay
            LOGGER.warning(
                "usp: broker %s:%d: %s; retry %d in %.1f s",
                self.config.host,
                self.config.port,
                reason,
                attempt,
                delay,
            )
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        config = self.config
        connect = mqtt_properties(PacketTypes.CONNECT)
        connect.UserProperty = [("usp-endpoint-id", config.endpoint_id)]
        connect.RequestResponseInformation = 1
        client = _Client(
            config.host,
            config.port,
            identifier=config.endpoint_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            properties=connect,
            tls_context=self._tls,
            keepalive=config.keepalive_s,
            timeout=config.connect_timeout_s,
            logger=logging.getLogger("gatewayd.usp.mqtt"),
            socket_options=NO_DELAY,
        )
        async with client:
            topics, reply = connack_topics(client.connack_properties, config.agent_topic)
            granted = await client.subscribe([(t, 1) for t in topics])
            refused = [
                t
                for t, code in zip(topics, granted or [], strict=False)
                if _reason_value(code) >= 0x80
            ]
            if refused:
                raise aiomqtt.MqttError(
                    f"subscription to {', '.join(refused)} refused (check "
                    "the broker's ACL for this box's certificate)"
                )
            self._client = client
            self.connections += 1
            self.connected_at = time.time()
            self._session_ok = True
            LOGGER.info(
                "usp: connected to %s:%d as %s; subscribed to %s",
                config.host,
                config.port,
                config.endpoint_id,
                ", ".join(topics),
            )
            while not self._events.empty():
                self._events.get_nowait()
            for out in self.core.on_connected(reply, first=not self._booted):
                await self._publish(client, out)
            self._booted = True
            self.connected.set()
            events = asyncio.get_running_loop().create_task(self._forward_events(client))
            try:
                async for message in client.messages:
                    await self._receive(client, message)
            finally:
                events.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await events

    async def _forward_events(self, client: _Client) -> None:
        while True:
            event = await self._events.get()
            try:
                for out in self.core.on_service_event(event):
                    await self._publish(client, out)
            except aiomqtt.MqttError as exc:  # the message loop sees a lost connection too
                LOGGER.warning("usp: a notification was not sent: %s", exc)

    async def _receive(self, client: _Client, message: aiomqtt.Message) -> None:
        props = message.properties
        content_type = getattr(props, "ContentType", None)
        response_topic = getattr(props, "ResponseTopic", None)
        payload = bytes(message.payload)
        if content_type is not None and content_type not in CONTENT_TYPES:
            outcome = f"dropped: Content Type {str(content_type)[:40]!r} is not usp.msg"
            self._log_record(len(payload), str(message.topic), outcome)
            return
        handled = self.core.handle(payload, response_topic=response_topic, topic=str(message.topic))
        self._log_record(len(payload), str(message.topic), handled.outcome)
        for out in handled.replies:
            await self._publish(client, out)

    def _log_record(self, size: int, topic: str, outcome: str) -> None:
        """One line per record; drops at most DROP_LOG_PER_MINUTE a minute (a flood stays cheap)."""
        if outcome.startswith(("answered", "ignored")):
            LOGGER.info("usp: %d-byte record on %s: %s", size, topic, outcome)
            return
        now = self._clock()
        if now - self._drop_window >= 60.0:
            if self._drops_unlogged:
                LOGGER.warning("usp: %d more records dropped unlogged", self._drops_unlogged)
            self._drop_window, self._drops_logged, self._drops_unlogged = now, 0, 0
        if self._drops_logged < DROP_LOG_PER_MINUTE:
            self._drops_logged += 1
            LOGGER.warning("usp: %d-byte record on %s: %s", size, topic, outcome)
        else:
            self._drops_unlogged += 1

    async def _publish(self, client: _Client, out: Outbound) -> None:
        props = mqtt_properties(PacketTypes.PUBLISH)
        props.ContentType = CONTENT_TYPE
        props.ResponseTopic = self.core.reply_topic
        await client.publish(
            out.topic, out.payload, qos=1, properties=props, timeout=PUBLISH_TIMEOUT_S
        )


def start_agent(
    table: Mapping[str, object],
    source: str | Path,
    service: ServiceView,
    bus: EventBus | None,
    state_dir: Path | None,
    *,
    model: str = "",
) -> UspAgent:
    """Validate ``[usp]`` and start the agent on the running loop (raises ProfileError/UspError)."""
    config = parse_usp(table, source, model=model)
    agent = UspAgent(config, service, bus, state_dir / STATE_FILE if state_dir else None)
    agent.start()
    LOGGER.info(
        "usp: agent %s for broker %s:%d (%d controllers)",
        config.endpoint_id,
        config.host,
        config.port,
        len(config.controllers),
    )
    return agent
