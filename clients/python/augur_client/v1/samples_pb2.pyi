from augur_client.v1 import prediction_pb2 as _prediction_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Snapshot(_message.Message):
    __slots__ = ("request_id", "timestamp_ms", "scene", "model_name", "model_version", "user_id", "item_ids", "scores", "inputs", "fallbacks", "shared")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    SCENE_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    FALLBACKS_FIELD_NUMBER: _ClassVar[int]
    SHARED_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    timestamp_ms: int
    scene: str
    model_name: str
    model_version: str
    user_id: str
    item_ids: _containers.RepeatedScalarFieldContainer[str]
    scores: _containers.RepeatedScalarFieldContainer[float]
    inputs: _containers.RepeatedCompositeFieldContainer[_prediction_pb2.Tensor]
    fallbacks: _containers.RepeatedCompositeFieldContainer[_prediction_pb2.Fallback]
    shared: _containers.RepeatedCompositeFieldContainer[SharedColumns]
    def __init__(self, request_id: _Optional[str] = ..., timestamp_ms: _Optional[int] = ..., scene: _Optional[str] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., user_id: _Optional[str] = ..., item_ids: _Optional[_Iterable[str]] = ..., scores: _Optional[_Iterable[float]] = ..., inputs: _Optional[_Iterable[_Union[_prediction_pb2.Tensor, _Mapping]]] = ..., fallbacks: _Optional[_Iterable[_Union[_prediction_pb2.Fallback, _Mapping]]] = ..., shared: _Optional[_Iterable[_Union[SharedColumns, _Mapping]]] = ...) -> None: ...

class SharedColumns(_message.Message):
    __slots__ = ("input", "columns", "int64_values", "float_values")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    INT64_VALUES_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUES_FIELD_NUMBER: _ClassVar[int]
    input: int
    columns: _containers.RepeatedScalarFieldContainer[int]
    int64_values: _containers.RepeatedScalarFieldContainer[int]
    float_values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, input: _Optional[int] = ..., columns: _Optional[_Iterable[int]] = ..., int64_values: _Optional[_Iterable[int]] = ..., float_values: _Optional[_Iterable[float]] = ...) -> None: ...

class Label(_message.Message):
    __slots__ = ("type", "timestamp_ms", "value")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    type: str
    timestamp_ms: int
    value: float
    def __init__(self, type: _Optional[str] = ..., timestamp_ms: _Optional[int] = ..., value: _Optional[float] = ...) -> None: ...

class Sample(_message.Message):
    __slots__ = ("sample_id", "revision", "request_id", "item_id", "position", "timestamp_ms", "scene", "model_name", "model_version", "user_id", "score", "inputs", "fallbacks", "labels", "emitted_ms")
    SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    SCENE_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    FALLBACKS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    EMITTED_MS_FIELD_NUMBER: _ClassVar[int]
    sample_id: str
    revision: int
    request_id: str
    item_id: str
    position: int
    timestamp_ms: int
    scene: str
    model_name: str
    model_version: str
    user_id: str
    score: float
    inputs: _containers.RepeatedCompositeFieldContainer[_prediction_pb2.Tensor]
    fallbacks: _containers.RepeatedCompositeFieldContainer[_prediction_pb2.Fallback]
    labels: _containers.RepeatedCompositeFieldContainer[Label]
    emitted_ms: int
    def __init__(self, sample_id: _Optional[str] = ..., revision: _Optional[int] = ..., request_id: _Optional[str] = ..., item_id: _Optional[str] = ..., position: _Optional[int] = ..., timestamp_ms: _Optional[int] = ..., scene: _Optional[str] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., user_id: _Optional[str] = ..., score: _Optional[float] = ..., inputs: _Optional[_Iterable[_Union[_prediction_pb2.Tensor, _Mapping]]] = ..., fallbacks: _Optional[_Iterable[_Union[_prediction_pb2.Fallback, _Mapping]]] = ..., labels: _Optional[_Iterable[_Union[Label, _Mapping]]] = ..., emitted_ms: _Optional[int] = ...) -> None: ...

class LogRecord(_message.Message):
    __slots__ = ("sample", "orphan")
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    ORPHAN_FIELD_NUMBER: _ClassVar[int]
    sample: Sample
    orphan: _prediction_pb2.Event
    def __init__(self, sample: _Optional[_Union[Sample, _Mapping]] = ..., orphan: _Optional[_Union[_prediction_pb2.Event, _Mapping]] = ...) -> None: ...
