"""The USP agent's logic without a broker: Records in, Records out, over a fake service.

Messages are real protobuf Records built with the Broadband Forum schemas; the
clock is injected (rate limits), the state is a dict (idempotence across restarts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gatewayd.errors import ProfileError
from gatewayd.usp.config import parse_usp
from gatewayd.usp.core import AgentCore, Outbound
from gatewayd.usp.datamodel import MAILBOX
from gatewayd.usp.fake import FakeService
from gatewayd.usp.records import (
    Header,
    Msg,
    Record,
    new_msg,
    wrap,
)

BOX = "os::00D09E-000042"
ADVISOR = "self::advisor-desk"
VIEWER = "self::helpdesk-viewer"
ADMIN = "self::noc-admin"
RESET = f"{MAILBOX}X_GWD_ResetCode()"

TABLE: dict[str, object] = {
    "broker_url": "mqtts://localhost:8883",
    "endpoint_id": BOX,
    "vendor_prefix": "GWD",
    "ca_file": "/nonexistent/ca.pem",
    "requests_per_minute": 100,
    "controller": [
        {"endpoint_id": ADVISOR, "topic": "usp/controller/advisor", "roles": ["advisor"]},
        {"endpoint_id": VIEWER, "topic": "usp/controller/viewer", "roles": ["viewer"]},
        {"endpoint_id": ADMIN, "topic": "usp/controller/admin", "roles": ["admin"]},
    ],
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Box:
    """An AgentCore over a FakeService, with a saved state like the file on disk."""

    def __init__(self, state: dict[str, Any] | None = None, **table: object) -> None:
        self.table = {**TABLE, **table}
        self.service = FakeService()
        self.clock = Clock()
        self.saved: dict[str, Any] = state or {}
        self.core = self.make()
        self.ids = 0

    def make(self) -> AgentCore:
        return AgentCore(
            parse_usp(self.table, "test.toml", model="sim"),
            self.service,
            clock=self.clock,
            wall_clock=lambda: 1.7e9,
            state=self.saved,
            persist=self.saved.update,
        )

    def send(self, body: Msg, sender: str = ADVISOR, **kw: Any) -> list[Outbound]:
        return self.core.handle(wrap(body, BOX, sender), response_topic="usp/reply", **kw).replies

    def ask(self, msg_type: int, sender: str = ADVISOR) -> Msg:
        self.ids += 1
        return new_msg(f"m{self.ids}", msg_type)

    def answer(self, body: Msg, sender: str = ADVISOR) -> Msg:
        replies = self.send(body, sender)
        assert len(replies) >= 1, "no answer"
        record = Record()
        record.ParseFromString(replies[0].payload)
        assert (record.to_id, record.from_id) == (sender, BOX)
        msg = Msg()
        msg.ParseFromString(record.no_session_context.payload)
        assert msg.header.msg_id == body.header.msg_id
        return msg

    def get(self, *paths: str, sender: str = ADVISOR) -> Msg:
        msg = self.ask(Header.GET)
        msg.body.request.get.param_paths.extend(paths)
        return self.answer(msg, sender)

    def reset(self, ticket: str, sender: str = ADVISOR) -> Msg:
        msg = self.ask(Header.OPERATE)
        op = msg.body.request.operate
        op.command, op.command_key, op.send_resp = RESET, ticket, True
        return self.answer(msg, sender)

    def set(
        self, obj: str, params: dict[str, str], allow_partial: bool = False, sender: str = ADMIN
    ) -> Msg:
        msg = self.ask(Header.SET)
        msg.body.request.set.allow_partial = allow_partial
        update = msg.body.request.set.update_objs.add(obj_path=obj)
        for name, value in params.items():
            update.param_settings.add(param=name, value=value, required=True)
        return self.answer(msg, sender)


def flat(answer: Msg) -> dict[str, str]:
    values = {}
    for result in answer.body.response.get_resp.req_path_results:
        assert result.err_code == 0, result.err_msg
        for resolved in result.resolved_path_results:
            for name, value in resolved.result_params.items():
                values[resolved.resolved_path + name] = value
    return values


def test_get_a_partial_path_shows_the_code_state_and_never_a_code() -> None:
    box = Box()
    box.service.lock()
    values = flat(box.get(MAILBOX))
    assert values[MAILBOX + "X_GWD_Locked"] == "true"
    assert values[MAILBOX + "X_GWD_Failures"] == "10"
    assert values[MAILBOX + "MaxMsg"] == "30"
    everything = flat(box.get("Device."))
    assert not [p for p in everything if "Code" in p and not p.endswith("CodeSet")]
    assert everything["Device.DeviceInfo.ModelName"] == "sim"


def test_get_with_a_wildcard_and_a_single_parameter() -> None:
    box = Box()
    values = flat(box.get("Device.LocalAgent.Controller.*.EndpointID"))
    assert sorted(values.values()) == sorted([ADVISOR, VIEWER, ADMIN])
    one = box.get("Device.Services.VoiceService.1.CallControl.Mailbox.*.X_GWD_CodeSet")
    [result] = one.body.response.get_resp.req_path_results
    [resolved] = result.resolved_path_results
    assert resolved.resolved_path == MAILBOX and dict(resolved.result_params) == {
        "X_GWD_CodeSet": "true"
    }


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("Device.Nothing.", 7026),
        ("Device.DeviceInfo.Password", 7026),
        ("Device.Services.VoiceService.1.CallControl.Mailbox.1.X_GWD_Code", 7026),
        ("Device.LocalAgent.Subscription.7.Enable", 7016),
        ("Device.LocalAgent.Subscription.[Enable==true].", 7008),
        ("Secret.", 7008),
    ],
)
def test_get_errors_name_the_path(path: str, code: int) -> None:
    [result] = Box().get(path).body.response.get_resp.req_path_results
    assert result.err_code == code


def test_advisor_reset_is_audited_with_the_ticket_and_idempotent() -> None:
    box = Box()
    box.service.lock()
    first = box.reset("INC-1234")
    [result] = first.body.response.operate_resp.operation_results
    assert dict(result.req_output_args.output_args) == {"Status": "Reset"}
    assert box.service.resets == [f"usp {ADVISOR} ticket INC-1234"]
    box.service.lock()  # locked again later: a replayed ticket must not reset it
    again = box.reset("INC-1234")
    [result] = again.body.response.operate_resp.operation_results
    assert dict(result.req_output_args.output_args) == {"Status": "AlreadyDone"}
    assert box.service.locked and len(box.service.resets) == 1
    restarted = Box(box.saved)  # the ledger survives a restart of the agent
    restarted.service.lock()
    restarted.reset("INC-1234")
    assert restarted.service.resets == []


@pytest.mark.parametrize(
    ("sender", "ticket", "code"),
    [
        (VIEWER, "INC-1", 7006),
        (ADVISOR, "", 7027),
        (ADVISOR, "x" * 65, 7027),
        (ADVISOR, "rm -rf /", 7027),
    ],
)
def test_reset_refused_in_the_response_fields(sender: str, ticket: str, code: int) -> None:
    box = Box()
    box.service.lock()
    answer = box.reset(ticket, sender=sender)
    [result] = answer.body.response.operate_resp.operation_results
    assert result.cmd_failure.err_code == code
    assert box.service.locked and box.service.resets == []


def test_untrusted_or_misaddressed_records_are_dropped_unanswered() -> None:
    box = Box()
    msg = box.ask(Header.GET)
    msg.body.request.get.param_paths.append("Device.")
    handled = box.core.handle(wrap(msg, BOX, "self::intruder"))
    assert handled.replies == [] and "not a listed controller" in handled.outcome
    handled = box.core.handle(wrap(msg, "os::someone-else", ADVISOR))
    assert handled.replies == [] and "not this agent" in handled.outcome


def test_rate_limit_per_controller_with_an_injected_clock() -> None:
    box = Box(requests_per_minute=5)
    codes = []
    for _ in range(7):
        msg = box.ask(Header.GET)
        msg.body.request.get.param_paths.append("Device.DeviceInfo.")
        answer = box.answer(msg)
        codes.append(answer.body.error.err_code if answer.body.HasField("error") else 0)
    assert codes == [0, 0, 0, 0, 0, 7005, 7005]
    assert flat(box.get("Device.DeviceInfo.UpTime", sender=VIEWER))  # others are not limited
    box.clock.now += 12.0  # 5 a minute: one more after 12 s
    assert not box.get("Device.DeviceInfo.").body.HasField("error")


def test_set_validates_like_the_profile_and_needs_admin() -> None:
    box = Box()
    ok = box.set(MAILBOX, {"MaxMsg": "40", "Enable": "false"})
    [result] = ok.body.response.set_resp.updated_obj_results
    [done] = result.oper_status.oper_success.updated_inst_results
    assert dict(done.updated_params) == {"MaxMsg": "40", "Enable": "false"}
    assert flat(box.get(MAILBOX + "MaxMsg"))[MAILBOX + "MaxMsg"] == "40"
    assert box.saved["settings"][MAILBOX + "MaxMsg"] == "40"
    for params, code in [
        ({"MaxMsg": "0"}, 7012),
        ({"MaxMsg": "many"}, 7011),
        ({"X_GWD_Locked": "false"}, 7013),
        ({"Colour": "red"}, 7010),
    ]:
        refused = box.set(MAILBOX, params)
        assert refused.body.error.err_code == code, params
        assert refused.body.error.param_errs[0].err_code == code
    partial = box.set(MAILBOX, {"MaxMsg": "5000"}, allow_partial=True)
    [result] = partial.body.response.set_resp.updated_obj_results
    assert result.oper_status.oper_failure.updated_inst_failures[0].param_errs[0].err_code == 7012
    denied = box.set(MAILBOX, {"MaxMsg": "10"}, sender=ADVISOR)
    assert denied.body.error.err_code == 7006
    assert flat(box.get(MAILBOX + "MaxMsg"))[MAILBOX + "MaxMsg"] == "40"


def _subscribe(
    box: Box, notif_type: str, refs: str, sender: str = ADVISOR, persistent: str = "false"
) -> Msg:
    msg = box.ask(Header.ADD)
    create = msg.body.request.add.create_objs.add(obj_path="Device.LocalAgent.Subscription.")
    for name, value in {
        "NotifType": notif_type,
        "ReferenceList": refs,
        "Persistent": persistent,
    }.items():
        create.param_settings.add(param=name, value=value)
    return box.answer(msg, sender)


def _notifications(outs: list[Outbound]) -> list[Any]:
    found = []
    for out in outs:
        record = Record()
        record.ParseFromString(out.payload)
        msg = Msg()
        msg.ParseFromString(record.no_session_context.payload)
        found.append(msg.body.request.notify)
    return found


def test_subscriptions_bring_value_change_locked_event_and_operation_complete() -> None:
    box = Box()
    box.core.on_connected("usp/agent/box", first=False)
    _subscribe(box, "ValueChange", MAILBOX)
    _subscribe(box, "Event", f"{MAILBOX}X_GWD_Locked!")
    _subscribe(box, "OperationComplete", RESET, sender=VIEWER)
    box.service.lock()
    notes = _notifications(box.core.on_service_event({"type": "lock"}))
    changes = {
        n.value_change.param_path: n.value_change.param_value
        for n in notes
        if n.HasField("value_change")
    }
    assert changes == {MAILBOX + "X_GWD_Locked": "true", MAILBOX + "X_GWD_Failures": "10"}
    [event] = [n.event for n in notes if n.HasField("event")]
    assert (event.event_name, dict(event.params)) == ("X_GWD_Locked!", {"Failures": "10"})
    msg = box.ask(Header.OPERATE)
    op = msg.body.request.operate
    op.command, op.command_key, op.send_resp = RESET, "T-9", True
    outs = box.send(msg)
    [complete] = _notifications(outs[1:])
    assert complete.oper_complete.command_key == "T-9"
    assert outs[1].topic == "usp/controller/viewer"  # the subscriber's topic, not the caller's


def test_add_rejects_bad_subscriptions_and_delete_only_own() -> None:
    box = Box()
    for refs, kind, code in [
        ("Device.Nope.", "ValueChange", 7026),
        (MAILBOX, "Telepathy", 7012),
        (f"{MAILBOX}X_GWD_Unlocked!", "Event", 7012),
    ]:
        assert _subscribe(box, kind, refs).body.error.err_code == code
    added = _subscribe(box, "ValueChange", MAILBOX)
    path = added.body.response.add_resp.created_obj_results[0].oper_status.oper_success
    assert path.instantiated_path == "Device.LocalAgent.Subscription.1."
    msg = box.ask(Header.DELETE)
    msg.body.request.delete.obj_paths.append("Device.LocalAgent.Subscription.*.")
    other = box.answer(msg, VIEWER).body.response.delete_resp.deleted_obj_results[0]
    assert other.oper_status.oper_success.unaffected_path_errs[0].err_code == 7006
    msg = box.ask(Header.DELETE)
    msg.body.request.delete.obj_paths.append("Device.LocalAgent.Subscription.1.")
    mine = box.answer(msg).body.response.delete_resp.deleted_obj_results[0]
    assert list(mine.oper_status.oper_success.affected_paths) == [
        "Device.LocalAgent.Subscription.1."
    ]


def test_boot_goes_to_persistent_subscribers_after_a_restart() -> None:
    box = Box()
    _subscribe(box, "Event", "Device.Boot!", persistent="true")
    restarted = Box(box.saved)
    outs = restarted.core.on_connected("usp/agent/box", first=True)
    connects = [o for o in outs if Record.FromString(o.payload).HasField("mqtt_connect")]
    assert len(connects) == 3
    [boot] = _notifications([o for o in outs if o not in connects])
    assert boot.event.event_name == "Boot!"


def test_get_supported_dm_lists_the_command_and_event() -> None:
    box = Box()
    msg = box.ask(Header.GET_SUPPORTED_DM)
    req = msg.body.request.get_supported_dm
    req.obj_paths.append("Device.Services.")
    req.return_commands = req.return_events = req.return_params = True
    answer = box.answer(msg)
    [result] = answer.body.response.get_supported_dm_resp.req_obj_results
    objs = {o.supported_obj_path: o for o in result.supported_objs}
    mailbox = objs["Device.Services.VoiceService.{i}.CallControl.Mailbox.{i}."]
    assert [c.command_name for c in mailbox.supported_commands] == ["X_GWD_ResetCode()"]
    assert [e.event_name for e in mailbox.supported_events] == ["X_GWD_Locked!"]


def _malformed() -> list[tuple[str, bytes, str, int]]:
    """(name, payload, expected outcome prefix, expected USP error code or 0)."""
    box_msg = new_msg("x1", Header.GET)
    box_msg.body.request.get.param_paths.append("Device.")
    no_id = new_msg("", Header.GET)
    no_type = new_msg("x2", Header.GET)
    no_type.body.request.SetInParent()
    notify_in = new_msg("x3", Header.NOTIFY)
    notify_in.body.request.notify.subscription_id = "s"
    session = Record(version="1.4", to_id=BOX, from_id=ADVISOR)
    session.session_context.session_id = 1
    e2e = Record(version="1.4", to_id=BOX, from_id=ADVISOR, payload_security=Record.TLS12)
    e2e.no_session_context.payload = b"\x01\x02"
    bad_payload = Record(version="1.4", to_id=BOX, from_id=ADVISOR)
    bad_payload.no_session_context.payload = b"\xff\xff\xff"
    empty_record = Record(version="1.4", to_id=BOX, from_id=ADVISOR)
    # A request of a type this schema does not know: field 99 of Request, a 1-byte string.
    future = new_msg("x4", Header.GET)
    future_bytes = future.SerializeToString() + b"\x12\x06\x0a\x04\x9a\x06\x01\x41"
    stray_response = new_msg("x5", Header.GET_RESP)
    stray_response.body.response.get_resp.SetInParent()
    future_record = Record(version="1.4", to_id=BOX, from_id=ADVISOR)
    future_record.no_session_context.payload = future_bytes
    return [
        ("random bytes", b"\x00\xffgarbage\x13\x37" * 5, "dropped", 0),
        ("empty payload", b"", "dropped", 0),
        ("oversized record", wrap(box_msg, BOX, ADVISOR) + b"\x00" * 70000, "dropped", 0),
        ("truncated record", wrap(box_msg, BOX, ADVISOR)[:-3], "dropped", 0),
        ("record without record type", empty_record.SerializeToString(), "dropped", 0),
        ("payload not a Msg", bad_payload.SerializeToString(), "dropped", 0),
        ("Msg without msg_id", wrap(no_id, BOX, ADVISOR), "dropped", 0),
        ("TLS12 payload security", e2e.SerializeToString(), "dropped", 0),
        ("session context record", session.SerializeToString(), "answered", 7106),
        ("record version 9.9", wrap(box_msg, BOX, ADVISOR, version="9.9"), "answered", 7104),
        ("request with no type", wrap(no_type, BOX, ADVISOR), "answered", 7001),
        ("Notify sent to the agent", wrap(notify_in, BOX, ADVISOR), "answered", 7001),
        ("request of an unknown type", future_record.SerializeToString(), "answered", 7001),
        ("a response sent to the agent", wrap(stray_response, BOX, ADVISOR), "ignored", 0),
    ]


@pytest.mark.parametrize(
    ("name", "payload", "outcome", "code"), _malformed(), ids=[m[0] for m in _malformed()]
)
def test_malformed_records_get_an_error_or_are_dropped(
    name: str, payload: bytes, outcome: str, code: int
) -> None:
    box = Box()
    handled = box.core.handle(payload)
    assert handled.outcome.startswith(outcome), handled.outcome
    assert handled.error_code == code
    assert bool(handled.replies) == (outcome == "answered")
    assert flat(box.get("Device.DeviceInfo."))  # and the agent still answers


def test_config_errors_name_the_file_key_and_fix() -> None:
    bad = {
        **TABLE,
        "broker_url": "http://x",
        "vendor_prefix": "gwd",
        "keepalive_s": 1,
        "controler": [],
    }
    with pytest.raises(ProfileError) as caught:
        parse_usp(bad, "/etc/gatewayd/profile.toml")
    text = str(caught.value)
    assert "/etc/gatewayd/profile.toml: 4 problems in [usp]" in text
    assert "usp.broker_url" in text and "usp.vendor_prefix" in text
    assert 'did you mean "controller"' in text and "usp.keepalive_s" in text
    with pytest.raises(ProfileError, match="allow_plaintext"):
        parse_usp({**TABLE, "broker_url": "mqtt://localhost"}, "p.toml")
    with pytest.raises(ProfileError, match=r"controller\[0\]\.roles"):
        parse_usp(
            {**TABLE, "controller": [{"endpoint_id": ADVISOR, "topic": "t", "roles": ["root"]}]},
            "p.toml",
        )


def test_answers_in_the_version_asked_and_on_the_reply_to_suffix() -> None:
    box = Box()
    msg = box.ask(Header.GET)
    msg.body.request.get.param_paths.append("Device.DeviceInfo.UpTime")
    old_style = "usp/agent/box/reply-to=usp%2Fcontroller%2Fmqtt311"
    [reply] = box.core.handle(wrap(msg, BOX, ADVISOR, version="1.0"), topic=old_style).replies
    assert reply.topic == "usp/controller/mqtt311"
    assert Record.FromString(reply.payload).version == "1.0"
    [plain] = box.core.handle(wrap(msg, BOX, ADVISOR, version="1.3")).replies
    assert plain.topic == "usp/controller/advisor"  # no Response Topic: the profile's topic
    assert Record.FromString(plain.payload).version == "1.3"


def test_get_instances_of_the_controllers_table() -> None:
    box = Box()
    for first_level, expected in [
        (True, [f"Device.LocalAgent.Controller.{i}." for i in (1, 2, 3)]),
        (False, sorted(
            [f"Device.LocalAgent.Controller.{i}." for i in (1, 2, 3)]
            + [f"Device.LocalAgent.Controller.{i}.MTP.1." for i in (1, 2, 3)]
        )),
    ]:  # fmt: skip
        msg = box.ask(Header.GET_INSTANCES)
        msg.body.request.get_instances.obj_paths.append("Device.LocalAgent.Controller.")
        msg.body.request.get_instances.first_level_only = first_level
        [result] = box.answer(msg).body.response.get_instances_resp.req_path_results
        assert [i.instantiated_obj_path for i in result.curr_insts] == expected


def test_the_profile_passes_usp_through_for_the_agent_to_validate(tmp_path: Path) -> None:
    from gatewayd.profile import load_profile
    from tests.daemon_process import make_profile

    profile = make_profile(tmp_path)
    profile.write_text(
        profile.read_text()
        + f'\n[usp]\nbroker_url = "mqtts://broker:8883"\nendpoint_id = "{BOX}"\n'
        'vendor_prefix = "GWD"\nca_file = "/etc/ca.pem"\n\n[[usp.controller]]\n'
        f'endpoint_id = "{ADVISOR}"\ntopic = "usp/c"\nroles = ["advisor"]\n'
    )
    loaded = load_profile(profile)
    assert loaded.usp is not None
    config = parse_usp(loaded.usp, loaded.source, model=loaded.board.name)
    assert (config.host, config.port, config.agent_topic) == ("broker", 8883, f"usp/agent/{BOX}")
    advisor = config.controller(ADVISOR)
    assert advisor is not None and advisor.may("advisor") and not advisor.may("admin")


def test_a_flood_of_dropped_records_is_logged_a_few_lines_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from gatewayd.usp.agent import DROP_LOG_PER_MINUTE, UspAgent

    clock = Clock()
    table = {**TABLE, "broker_url": "mqtt://localhost", "allow_plaintext": True}
    agent = UspAgent(parse_usp(table, "test.toml"), FakeService(), None, None, clock=clock)
    with caplog.at_level("WARNING", logger="gatewayd.usp.agent"):
        for _ in range(DROP_LOG_PER_MINUTE + 30):
            agent._log_record(9, "usp/agent/box", "dropped: not a USP Record")
        clock.now += 61
        agent._log_record(9, "usp/agent/box", "dropped: not a USP Record")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == DROP_LOG_PER_MINUTE + 2
    assert "30 more records dropped unlogged" in lines[-2]


def test_connack_subscribe_topics_and_response_information() -> None:
    from paho.mqtt.packettypes import PacketTypes

    from gatewayd.usp.agent import connack_topics, mqtt_properties

    assert connack_topics(None, "usp/agent/box") == (["usp/agent/box"], "usp/agent/box")
    connack = mqtt_properties(PacketTypes.CONNACK)
    connack.UserProperty = [("subscribe-topic", "fleet/+/in"), ("other", "x"),
                            ("subscribe-topic", "fleet/box/in")]  # fmt: skip
    assert connack_topics(connack, "usp/agent/box") == (
        ["fleet/+/in", "fleet/box/in", "usp/agent/box"],
        "fleet/box/in",
    )
    connack.ResponseInformation = "replies/box"
    assert connack_topics(connack, "usp/agent/box")[1] == "replies/box"
