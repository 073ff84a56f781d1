"""The typed side of the API: what goes in (values, candidates, events) and what comes out (scores,
features, event results, model status), and the conversions to and from the generated messages."""
from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from .v1 import admin_pb2, prediction_pb2

if TYPE_CHECKING:
    import numpy

# A request-time feature value. Python ints become int_value, floats float_value, str
# string_value, a non-empty list of one of them the matching list; augur checks each against the
# scene's spec (ints widen to floats, nothing else converts). A FeatureValue message passes as is
# (an empty list has no type: build the FeatureValue yourself).
Value = Union[int, float, str, Sequence[int], Sequence[float], Sequence[str], prediction_pb2.FeatureValue]


def feature_value(value: Value) -> prediction_pb2.FeatureValue:
    """One Python value as a FeatureValue; TypeError for what has no feature type."""
    if isinstance(value, prediction_pb2.FeatureValue):
        return value
    if isinstance(value, bool):
        raise TypeError("a bool is not a feature value: send 0/1 or a string")
    if isinstance(value, int):
        return prediction_pb2.FeatureValue(int_value=value)
    if isinstance(value, float):
        return prediction_pb2.FeatureValue(float_value=value)
    if isinstance(value, str):
        return prediction_pb2.FeatureValue(string_value=value)
    if isinstance(value, (list, tuple)):
        if not value:
            raise TypeError("an empty list has no feature type: pass a FeatureValue")
        if all(isinstance(v, str) for v in value):
            return prediction_pb2.FeatureValue(string_list=prediction_pb2.StringList(values=value))
        if any(isinstance(v, bool) for v in value):
            raise TypeError("a bool is not a feature value: send 0/1 or a string")
        if all(isinstance(v, int) for v in value):
            return prediction_pb2.FeatureValue(int_list=prediction_pb2.IntList(values=value))
        if all(isinstance(v, (int, float)) for v in value):
            return prediction_pb2.FeatureValue(float_list=prediction_pb2.FloatList(values=value))
        raise TypeError(f"a list of mixed or unsupported types is not a feature value: {value!r}")
    raise TypeError(f"{type(value).__name__} is not a feature value (int, float, str or a list of one)")


def feature_map(values: Mapping[str, Value] | None) -> dict[str, prediction_pb2.FeatureValue]:
    return {key: feature_value(v) for key, v in (values or {}).items()}


@dataclass(frozen=True)
class Candidate:
    """An item to score, with request-time item features that override the store's values."""

    item_id: str
    features: Mapping[str, Value] = field(default_factory=dict)

    def to_proto(self) -> prediction_pb2.Candidate:
        return prediction_pb2.Candidate(item_id=self.item_id, features=feature_map(self.features))


def candidates(items: Sequence[str | Candidate]) -> list[prediction_pb2.Candidate]:
    if isinstance(items, str):
        raise TypeError("items must be a sequence of item ids or Candidates, not one string")
    return [Candidate(item).to_proto() if isinstance(item, str) else item.to_proto() for item in items]


def _reason(reason: int) -> str:
    # FALLBACK_REASON_MISSING_ROW -> missing_row
    return prediction_pb2.FallbackReason.Name(reason).removeprefix("FALLBACK_REASON_").lower()


@dataclass(frozen=True)
class Fallback:
    """A feature served from its spec default: why (`missing_row`, `missing_field`, `parse_error`,
    `timeout`, `store_error`) and for which candidates (empty: all of them)."""

    feature: str
    reason: str
    candidates: tuple[int, ...] = ()

    @classmethod
    def from_proto(cls, f: prediction_pb2.Fallback) -> Fallback:
        return cls(f.feature, _reason(f.reason), tuple(f.candidates))

    def applies_to(self, index: int) -> bool:
        return not self.candidates or index in self.candidates


@dataclass(frozen=True)
class Score:
    """One candidate's score, with what answered it. `request_id` and `item_id` are what an
    Event needs (`Event.of(score, "click")`); `fallbacks` maps each feature served from its
    default for this candidate to the reason."""

    item_id: str
    score: float
    request_id: str
    model_name: str
    model_version: str
    fallbacks: Mapping[str, str] = field(default_factory=dict)

    @property
    def finite(self) -> bool:
        return math.isfinite(self.score)


def scores(request: prediction_pb2.PredictRequest, response: prediction_pb2.PredictResponse) -> list[Score]:
    fallbacks = [Fallback.from_proto(f) for f in response.fallbacks]
    if len(response.scores) != len(request.candidates):
        raise ValueError(f"augur answered {len(response.scores)} scores for {len(request.candidates)} candidates")
    return [
        Score(
            item_id=c.item_id,
            score=s,
            request_id=response.request_id,
            model_name=response.model_name,
            model_version=response.model_version,
            fallbacks={f.feature: f.reason for f in fallbacks if f.applies_to(i)},
        )
        for i, (c, s) in enumerate(zip(request.candidates, response.scores))
    ]


@dataclass(frozen=True)
class Tensor:
    """A row-major [rows, width] model input, exactly what the model receives."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # "int64" or "float32"
    values: Sequence[int] | Sequence[float]

    @classmethod
    def from_proto(cls, t: prediction_pb2.Tensor) -> Tensor:
        if len(t.int64_values) or not len(t.float_values):
            return cls(t.name, tuple(t.shape), "int64", list(t.int64_values))
        return cls(t.name, tuple(t.shape), "float32", list(t.float_values))

    def rows(self) -> list[list[int] | list[float]]:
        width = self.shape[-1] if self.shape else 0
        return [list(self.values[r * width : (r + 1) * width]) for r in range(self.shape[0] if self.shape else 0)]

    def to_numpy(self) -> numpy.ndarray:
        import numpy  # only for callers that have it: the client does not depend on numpy

        return numpy.asarray(self.values, dtype=self.dtype).reshape(self.shape)


@dataclass(frozen=True)
class Layout:
    """Where one spec feature sits: input tensor, first column, width."""

    feature: str
    input: str
    offset: int
    width: int


@dataclass(frozen=True)
class Features:
    """GetFeatures' answer: the model inputs Predict would build, how to read them, and the
    features served from defaults."""

    inputs: Mapping[str, Tensor]
    layout: Mapping[str, Layout]
    fallbacks: Sequence[Fallback]

    @classmethod
    def from_proto(cls, r: prediction_pb2.GetFeaturesResponse) -> Features:
        return cls(
            inputs={t.name: Tensor.from_proto(t) for t in r.inputs},
            layout={x.feature: Layout(x.feature, x.input, x.offset, x.width) for x in r.layout},
            fallbacks=[Fallback.from_proto(f) for f in r.fallbacks],
        )

    def column(self, feature: str) -> list[list[int] | list[float]]:
        """One feature's encoded values, one list (of its width) per candidate."""
        where = self.layout[feature]
        return [row[where.offset : where.offset + where.width] for row in self.inputs[where.input].rows()]


class EventStatus(enum.Enum):
    """What augur did with one reported event (proto EventStatus)."""

    UNSPECIFIED = 0
    ACCEPTED = 1
    DUPLICATE = 2
    ORPHAN = 3
    REJECTED = 4


@dataclass(frozen=True)
class Event:
    """Something that happened to a served candidate: `type` is impression, click, conversion or
    a custom type of `samples.join.event_types`; `timestamp_ms` 0 means when augur receives it."""

    request_id: str
    item_id: str
    type: str
    timestamp_ms: int = 0
    value: float | None = None

    @classmethod
    def of(cls, score: Score, type: str, timestamp_ms: int = 0, value: float | None = None) -> Event:
        return cls(score.request_id, score.item_id, type, timestamp_ms, value)

    def to_proto(self) -> prediction_pb2.Event:
        event = prediction_pb2.Event(
            request_id=self.request_id, item_id=self.item_id, type=self.type, timestamp_ms=self.timestamp_ms
        )
        if self.value is not None:
            event.value.value = self.value
        return event


@dataclass(frozen=True)
class EventResult:
    """One event's answer; `reason` says why for REJECTED."""

    status: EventStatus
    reason: str = ""

    @property
    def accepted(self) -> bool:
        return self.status is EventStatus.ACCEPTED


@dataclass(frozen=True)
class VersionInfo:
    version: int
    state: str
    labels: tuple[str, ...]
    traffic_weight: float


@dataclass(frozen=True)
class ModelInfo:
    """One scene's model repository as ModelAdmin reports it (versions listed once loaded)."""

    name: str
    scene: str
    versions: tuple[VersionInfo, ...]
    source: str
    source_latest: int
    last_error: str
    raw: Any = field(repr=False, compare=False, default=None)  # the admin_pb2.ModelStatus

    @classmethod
    def from_proto(cls, m: admin_pb2.ModelStatus) -> ModelInfo:
        versions = tuple(VersionInfo(v.version, v.state, tuple(v.labels), v.traffic_weight) for v in m.versions)
        return cls(m.name, m.scene, versions, m.source, m.source_latest, m.last_error, m)

    def version_labelled(self, label: str) -> int | None:
        return next((v.version for v in self.versions if label in v.labels), None)
