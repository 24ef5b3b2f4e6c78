"""USP Records and Messages (the Broadband Forum's protobuf schemas), for agent and controller.

Importing this module needs the ``usp`` extra (protobuf).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from gatewayd.usp.proto import usp_msg_1_4_pb2 as msg_pb
from gatewayd.usp.proto import usp_record_1_4_pb2 as record_pb

Msg = msg_pb.Msg
Record = record_pb.Record
Header = msg_pb.Header

#: Record versions the agent accepts; it answers in the version it was asked in.
SUPPORTED_VERSIONS: Final = ("1.0", "1.1", "1.2", "1.3", "1.4")
VERSION: Final = "1.4"
#: MQTT 5 Content Type of a USP Record (R-MQTT.27/27a).
CONTENT_TYPES: Final = ("usp.msg", "application/vnd.bbf.usp.msg")
CONTENT_TYPE: Final = "usp.msg"

#: Request type -> the response header type.
RESPONSE_TYPE: Final[Mapping[int, int]] = {
    Header.GET: Header.GET_RESP,
    Header.SET: Header.SET_RESP,
    Header.OPERATE: Header.OPERATE_RESP,
    Header.ADD: Header.ADD_RESP,
    Header.DELETE: Header.DELETE_RESP,
    Header.GET_SUPPORTED_DM: Header.GET_SUPPORTED_DM_RESP,
    Header.GET_INSTANCES: Header.GET_INSTANCES_RESP,
    Header.GET_SUPPORTED_PROTO: Header.GET_SUPPORTED_PROTO_RESP,
    Header.NOTIFY: Header.NOTIFY_RESP,
}


def new_msg(msg_id: str, msg_type: int) -> msg_pb.Msg:
    """An empty Msg with its header."""
    msg = msg_pb.Msg()
    msg.header.msg_id = msg_id
    msg.header.msg_type = msg_type  # type: ignore[assignment]
    return msg


def error_msg(
    msg_id: str, code: int, text: str, param_errs: Iterable[tuple[str, int, str]] = ()
) -> msg_pb.Msg:
    """A USP Error message answering ``msg_id``."""
    msg = new_msg(msg_id, Header.ERROR)
    msg.body.error.err_code = code
    msg.body.error.err_msg = text
    for path, err_code, err_text in param_errs:
        msg.body.error.param_errs.add(param_path=path, err_code=err_code, err_msg=err_text)
    return msg


def wrap(msg: msg_pb.Msg, to_id: str, from_id: str, version: str = VERSION) -> bytes:
    """A no-session-context Record carrying ``msg``, serialised."""
    record = record_pb.Record(version=version, to_id=to_id, from_id=from_id)
    record.no_session_context.payload = msg.SerializeToString()
    return record.SerializeToString()


def mqtt_connect_record(to_id: str, from_id: str, subscribed_topic: str) -> bytes:
    """The MQTT Connect Record an agent sends once connected (R-MTP.6)."""
    record = record_pb.Record(version=VERSION, to_id=to_id, from_id=from_id)
    record.mqtt_connect.version = record_pb.MQTTConnectRecord.V5
    record.mqtt_connect.subscribed_topic = subscribed_topic
    return record.SerializeToString()


def disconnect_record(
    to_id: str, from_id: str, code: int, reason: str, version: str = VERSION
) -> bytes:
    """A Disconnect Record with a reason code (R-MTP.9)."""
    record = record_pb.Record(version=version, to_id=to_id, from_id=from_id)
    record.disconnect.reason_code = code
    record.disconnect.reason = reason
    return record.SerializeToString()
