from augur_client.v1 import prediction_pb2 as _prediction_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EntityKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENTITY_KIND_UNSPECIFIED: _ClassVar[EntityKind]
    ENTITY_KIND_USER: _ClassVar[EntityKind]
    ENTITY_KIND_ITEM: _ClassVar[EntityKind]
    ENTITY_KIND_CONTEXT: _ClassVar[EntityKind]
ENTITY_KIND_UNSPECIFIED: EntityKind
ENTITY_KIND_USER: EntityKind
ENTITY_KIND_ITEM: EntityKind
ENTITY_KIND_CONTEXT: EntityKind

class FeatureUpdate(_message.Message):
    __slots__ = ("entity", "entity_id", "features", "event_time_ms")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _prediction_pb2.FeatureValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_prediction_pb2.FeatureValue, _Mapping]] = ...) -> None: ...
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    entity: EntityKind
    entity_id: str
    features: _containers.MessageMap[str, _prediction_pb2.FeatureValue]
    event_time_ms: int
    def __init__(self, entity: _Optional[_Union[EntityKind, str]] = ..., entity_id: _Optional[str] = ..., features: _Optional[_Mapping[str, _prediction_pb2.FeatureValue]] = ..., event_time_ms: _Optional[int] = ...) -> None: ...
