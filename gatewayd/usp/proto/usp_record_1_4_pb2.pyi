from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Record(_message.Message):
    __slots__ = ("version", "to_id", "from_id", "payload_security", "mac_signature", "sender_cert", "no_session_context", "session_context", "websocket_connect", "mqtt_connect", "stomp_connect", "disconnect", "uds_connect")
    class PayloadSecurity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PLAINTEXT: _ClassVar[Record.PayloadSecurity]
        TLS12: _ClassVar[Record.PayloadSecurity]
    PLAINTEXT: Record.PayloadSecurity
    TLS12: Record.PayloadSecurity
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TO_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SECURITY_FIELD_NUMBER: _ClassVar[int]
    MAC_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SENDER_CERT_FIELD_NUMBER: _ClassVar[int]
    NO_SESSION_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    SESSION_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    WEBSOCKET_CONNECT_FIELD_NUMBER: _ClassVar[int]
    MQTT_CONNECT_FIELD_NUMBER: _ClassVar[int]
    STOMP_CONNECT_FIELD_NUMBER: _ClassVar[int]
    DISCONNECT_FIELD_NUMBER: _ClassVar[int]
    UDS_CONNECT_FIELD_NUMBER: _ClassVar[int]
    version: str
    to_id: str
    from_id: str
    payload_security: Record.PayloadSecurity
    mac_signature: bytes
    sender_cert: bytes
    no_session_context: NoSessionContextRecord
    session_context: SessionContextRecord
    websocket_connect: WebSocketConnectRecord
    mqtt_connect: MQTTConnectRecord
    stomp_connect: STOMPConnectRecord
    disconnect: DisconnectRecord
    uds_connect: UDSConnectRecord
    def __init__(self, version: _Optional[str] = ..., to_id: _Optional[str] = ..., from_id: _Optional[str] = ..., payload_security: _Optional[_Union[Record.PayloadSecurity, str]] = ..., mac_signature: _Optional[bytes] = ..., sender_cert: _Optional[bytes] = ..., no_session_context: _Optional[_Union[NoSessionContextRecord, _Mapping]] = ..., session_context: _Optional[_Union[SessionContextRecord, _Mapping]] = ..., websocket_connect: _Optional[_Union[WebSocketConnectRecord, _Mapping]] = ..., mqtt_connect: _Optional[_Union[MQTTConnectRecord, _Mapping]] = ..., stomp_connect: _Optional[_Union[STOMPConnectRecord, _Mapping]] = ..., disconnect: _Optional[_Union[DisconnectRecord, _Mapping]] = ..., uds_connect: _Optional[_Union[UDSConnectRecord, _Mapping]] = ...) -> None: ...

class NoSessionContextRecord(_message.Message):
    __slots__ = ("payload",)
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    def __init__(self, payload: _Optional[bytes] = ...) -> None: ...

class SessionContextRecord(_message.Message):
    __slots__ = ("session_id", "sequence_id", "expected_id", "retransmit_id", "payload_sar_state", "payloadrec_sar_state", "payload")
    class PayloadSARState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        NONE: _ClassVar[SessionContextRecord.PayloadSARState]
        BEGIN: _ClassVar[SessionContextRecord.PayloadSARState]
        INPROCESS: _ClassVar[SessionContextRecord.PayloadSARState]
        COMPLETE: _ClassVar[SessionContextRecord.PayloadSARState]
    NONE: SessionContextRecord.PayloadSARState
    BEGIN: SessionContextRecord.PayloadSARState
    INPROCESS: SessionContextRecord.PayloadSARState
    COMPLETE: SessionContextRecord.PayloadSARState
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_ID_FIELD_NUMBER: _ClassVar[int]
    RETRANSMIT_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SAR_STATE_FIELD_NUMBER: _ClassVar[int]
    PAYLOADREC_SAR_STATE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    session_id: int
    sequence_id: int
    expected_id: int
    retransmit_id: int
    payload_sar_state: SessionContextRecord.PayloadSARState
    payloadrec_sar_state: SessionContextRecord.PayloadSARState
    payload: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, session_id: _Optional[int] = ..., sequence_id: _Optional[int] = ..., expected_id: _Optional[int] = ..., retransmit_id: _Optional[int] = ..., payload_sar_state: _Optional[_Union[SessionContextRecord.PayloadSARState, str]] = ..., payloadrec_sar_state: _Optional[_Union[SessionContextRecord.PayloadSARState, str]] = ..., payload: _Optional[_Iterable[bytes]] = ...) -> None: ...

class WebSocketConnectRecord(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MQTTConnectRecord(_message.Message):
    __slots__ = ("version", "subscribed_topic")
    class MQTTVersion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        V3_1_1: _ClassVar[MQTTConnectRecord.MQTTVersion]
        V5: _ClassVar[MQTTConnectRecord.MQTTVersion]
    V3_1_1: MQTTConnectRecord.MQTTVersion
    V5: MQTTConnectRecord.MQTTVersion
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBED_TOPIC_FIELD_NUMBER: _ClassVar[int]
    version: MQTTConnectRecord.MQTTVersion
    subscribed_topic: str
    def __init__(self, version: _Optional[_Union[MQTTConnectRecord.MQTTVersion, str]] = ..., subscribed_topic: _Optional[str] = ...) -> None: ...

class STOMPConnectRecord(_message.Message):
    __slots__ = ("version", "subscribed_destination")
    class STOMPVersion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        V1_2: _ClassVar[STOMPConnectRecord.STOMPVersion]
    V1_2: STOMPConnectRecord.STOMPVersion
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBED_DESTINATION_FIELD_NUMBER: _ClassVar[int]
    version: STOMPConnectRecord.STOMPVersion
    subscribed_destination: str
    def __init__(self, version: _Optional[_Union[STOMPConnectRecord.STOMPVersion, str]] = ..., subscribed_destination: _Optional[str] = ...) -> None: ...

class UDSConnectRecord(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DisconnectRecord(_message.Message):
    __slots__ = ("reason", "reason_code")
    REASON_FIELD_NUMBER: _ClassVar[int]
    REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    reason: str
    reason_code: int
    def __init__(self, reason: _Optional[str] = ..., reason_code: _Optional[int] = ...) -> None: ...
