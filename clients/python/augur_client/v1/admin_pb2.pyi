from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CanaryAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CANARY_ACTION_UNSPECIFIED: _ClassVar[CanaryAction]
    CANARY_ACTION_PROMOTE: _ClassVar[CanaryAction]
    CANARY_ACTION_ROLLBACK: _ClassVar[CanaryAction]
    CANARY_ACTION_HOLD: _ClassVar[CanaryAction]
    CANARY_ACTION_RESUME: _ClassVar[CanaryAction]
CANARY_ACTION_UNSPECIFIED: CanaryAction
CANARY_ACTION_PROMOTE: CanaryAction
CANARY_ACTION_ROLLBACK: CanaryAction
CANARY_ACTION_HOLD: CanaryAction
CANARY_ACTION_RESUME: CanaryAction

class GetStatsRequest(_message.Message):
    __slots__ = ("reset",)
    RESET_FIELD_NUMBER: _ClassVar[int]
    reset: bool
    def __init__(self, reset: _Optional[bool] = ...) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("scenes", "cache")
    SCENES_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    scenes: _containers.RepeatedCompositeFieldContainer[SceneStats]
    cache: CacheStats
    def __init__(self, scenes: _Optional[_Iterable[_Union[SceneStats, _Mapping]]] = ..., cache: _Optional[_Union[CacheStats, _Mapping]] = ...) -> None: ...

class CacheStats(_message.Message):
    __slots__ = ("hits", "negative_hits", "misses", "coalesced", "store_reads", "evictions", "hit_ratio")
    HITS_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_HITS_FIELD_NUMBER: _ClassVar[int]
    MISSES_FIELD_NUMBER: _ClassVar[int]
    COALESCED_FIELD_NUMBER: _ClassVar[int]
    STORE_READS_FIELD_NUMBER: _ClassVar[int]
    EVICTIONS_FIELD_NUMBER: _ClassVar[int]
    HIT_RATIO_FIELD_NUMBER: _ClassVar[int]
    hits: int
    negative_hits: int
    misses: int
    coalesced: int
    store_reads: int
    evictions: int
    hit_ratio: float
    def __init__(self, hits: _Optional[int] = ..., negative_hits: _Optional[int] = ..., misses: _Optional[int] = ..., coalesced: _Optional[int] = ..., store_reads: _Optional[int] = ..., evictions: _Optional[int] = ..., hit_ratio: _Optional[float] = ...) -> None: ...

class SceneStats(_message.Message):
    __slots__ = ("scene", "stages", "fallbacks")
    SCENE_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    FALLBACKS_FIELD_NUMBER: _ClassVar[int]
    scene: str
    stages: _containers.RepeatedCompositeFieldContainer[StageLatency]
    fallbacks: _containers.RepeatedCompositeFieldContainer[FeatureFallbacks]
    def __init__(self, scene: _Optional[str] = ..., stages: _Optional[_Iterable[_Union[StageLatency, _Mapping]]] = ..., fallbacks: _Optional[_Iterable[_Union[FeatureFallbacks, _Mapping]]] = ...) -> None: ...

class StageLatency(_message.Message):
    __slots__ = ("stage", "count", "p50_ms", "p90_ms", "p99_ms", "max_ms")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    P50_MS_FIELD_NUMBER: _ClassVar[int]
    P90_MS_FIELD_NUMBER: _ClassVar[int]
    P99_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_MS_FIELD_NUMBER: _ClassVar[int]
    stage: str
    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    def __init__(self, stage: _Optional[str] = ..., count: _Optional[int] = ..., p50_ms: _Optional[float] = ..., p90_ms: _Optional[float] = ..., p99_ms: _Optional[float] = ..., max_ms: _Optional[float] = ...) -> None: ...

class FeatureFallbacks(_message.Message):
    __slots__ = ("feature", "reason", "count")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    feature: str
    reason: str
    count: int
    def __init__(self, feature: _Optional[str] = ..., reason: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class SetCanaryRequest(_message.Message):
    __slots__ = ("model", "version", "weight")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    weight: float
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., weight: _Optional[float] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelStatus]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelStatus, _Mapping]]] = ...) -> None: ...

class ModelStatus(_message.Message):
    __slots__ = ("name", "scene", "directory", "versions", "rescans", "loads", "rejected", "unloads", "last_error", "source", "source_latest", "rejected_versions", "quality", "rollout")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCENE_FIELD_NUMBER: _ClassVar[int]
    DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    RESCANS_FIELD_NUMBER: _ClassVar[int]
    LOADS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    UNLOADS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_LATEST_FIELD_NUMBER: _ClassVar[int]
    REJECTED_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    name: str
    scene: str
    directory: str
    versions: _containers.RepeatedCompositeFieldContainer[VersionStatus]
    rescans: int
    loads: int
    rejected: int
    unloads: int
    last_error: str
    source: str
    source_latest: int
    rejected_versions: _containers.RepeatedCompositeFieldContainer[RejectedVersion]
    quality: _containers.RepeatedCompositeFieldContainer[VersionQuality]
    rollout: RolloutStatus
    def __init__(self, name: _Optional[str] = ..., scene: _Optional[str] = ..., directory: _Optional[str] = ..., versions: _Optional[_Iterable[_Union[VersionStatus, _Mapping]]] = ..., rescans: _Optional[int] = ..., loads: _Optional[int] = ..., rejected: _Optional[int] = ..., unloads: _Optional[int] = ..., last_error: _Optional[str] = ..., source: _Optional[str] = ..., source_latest: _Optional[int] = ..., rejected_versions: _Optional[_Iterable[_Union[RejectedVersion, _Mapping]]] = ..., quality: _Optional[_Iterable[_Union[VersionQuality, _Mapping]]] = ..., rollout: _Optional[_Union[RolloutStatus, _Mapping]] = ...) -> None: ...

class DecideCanaryRequest(_message.Message):
    __slots__ = ("model", "version", "action", "reason")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    action: CanaryAction
    reason: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., action: _Optional[_Union[CanaryAction, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class RolloutStatus(_message.Message):
    __slots__ = ("canary_share", "min_impressions", "max_auc_drop", "max_calibration_error", "decision_window_s", "stable_version", "canary_version", "canary_since_ms", "decisions", "last_evaluation")
    CANARY_SHARE_FIELD_NUMBER: _ClassVar[int]
    MIN_IMPRESSIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_AUC_DROP_FIELD_NUMBER: _ClassVar[int]
    MAX_CALIBRATION_ERROR_FIELD_NUMBER: _ClassVar[int]
    DECISION_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    STABLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CANARY_VERSION_FIELD_NUMBER: _ClassVar[int]
    CANARY_SINCE_MS_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    LAST_EVALUATION_FIELD_NUMBER: _ClassVar[int]
    canary_share: float
    min_impressions: int
    max_auc_drop: float
    max_calibration_error: float
    decision_window_s: int
    stable_version: int
    canary_version: int
    canary_since_ms: int
    decisions: _containers.RepeatedCompositeFieldContainer[CanaryDecision]
    last_evaluation: CanaryDecision
    def __init__(self, canary_share: _Optional[float] = ..., min_impressions: _Optional[int] = ..., max_auc_drop: _Optional[float] = ..., max_calibration_error: _Optional[float] = ..., decision_window_s: _Optional[int] = ..., stable_version: _Optional[int] = ..., canary_version: _Optional[int] = ..., canary_since_ms: _Optional[int] = ..., decisions: _Optional[_Iterable[_Union[CanaryDecision, _Mapping]]] = ..., last_evaluation: _Optional[_Union[CanaryDecision, _Mapping]] = ...) -> None: ...

class CanaryDecision(_message.Message):
    __slots__ = ("version", "decision", "by", "at_ms", "stable_version", "reason", "replica", "stable_impressions", "canary_impressions", "stable_auc", "canary_auc", "auc_difference", "standard_error", "z", "canary_calibration", "window_start_ms", "window_end_ms")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    STABLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    STABLE_IMPRESSIONS_FIELD_NUMBER: _ClassVar[int]
    CANARY_IMPRESSIONS_FIELD_NUMBER: _ClassVar[int]
    STABLE_AUC_FIELD_NUMBER: _ClassVar[int]
    CANARY_AUC_FIELD_NUMBER: _ClassVar[int]
    AUC_DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    STANDARD_ERROR_FIELD_NUMBER: _ClassVar[int]
    Z_FIELD_NUMBER: _ClassVar[int]
    CANARY_CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_MS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_MS_FIELD_NUMBER: _ClassVar[int]
    version: int
    decision: str
    by: str
    at_ms: int
    stable_version: int
    reason: str
    replica: str
    stable_impressions: int
    canary_impressions: int
    stable_auc: float
    canary_auc: float
    auc_difference: float
    standard_error: float
    z: float
    canary_calibration: float
    window_start_ms: int
    window_end_ms: int
    def __init__(self, version: _Optional[int] = ..., decision: _Optional[str] = ..., by: _Optional[str] = ..., at_ms: _Optional[int] = ..., stable_version: _Optional[int] = ..., reason: _Optional[str] = ..., replica: _Optional[str] = ..., stable_impressions: _Optional[int] = ..., canary_impressions: _Optional[int] = ..., stable_auc: _Optional[float] = ..., canary_auc: _Optional[float] = ..., auc_difference: _Optional[float] = ..., standard_error: _Optional[float] = ..., z: _Optional[float] = ..., canary_calibration: _Optional[float] = ..., window_start_ms: _Optional[int] = ..., window_end_ms: _Optional[int] = ...) -> None: ...

class VersionQuality(_message.Message):
    __slots__ = ("version", "window_start_ms", "window_end_ms", "impressions", "positives", "ctr", "mean_score", "calibration", "calibration_difference", "log_loss", "auc", "auc_error_bound", "impressions_total", "events_total", "corrections_total", "positive_event")
    class EventsTotalEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_MS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_MS_FIELD_NUMBER: _ClassVar[int]
    IMPRESSIONS_FIELD_NUMBER: _ClassVar[int]
    POSITIVES_FIELD_NUMBER: _ClassVar[int]
    CTR_FIELD_NUMBER: _ClassVar[int]
    MEAN_SCORE_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    LOG_LOSS_FIELD_NUMBER: _ClassVar[int]
    AUC_FIELD_NUMBER: _ClassVar[int]
    AUC_ERROR_BOUND_FIELD_NUMBER: _ClassVar[int]
    IMPRESSIONS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    EVENTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CORRECTIONS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_EVENT_FIELD_NUMBER: _ClassVar[int]
    version: str
    window_start_ms: int
    window_end_ms: int
    impressions: int
    positives: int
    ctr: float
    mean_score: float
    calibration: float
    calibration_difference: float
    log_loss: float
    auc: float
    auc_error_bound: float
    impressions_total: int
    events_total: _containers.ScalarMap[str, int]
    corrections_total: int
    positive_event: str
    def __init__(self, version: _Optional[str] = ..., window_start_ms: _Optional[int] = ..., window_end_ms: _Optional[int] = ..., impressions: _Optional[int] = ..., positives: _Optional[int] = ..., ctr: _Optional[float] = ..., mean_score: _Optional[float] = ..., calibration: _Optional[float] = ..., calibration_difference: _Optional[float] = ..., log_loss: _Optional[float] = ..., auc: _Optional[float] = ..., auc_error_bound: _Optional[float] = ..., impressions_total: _Optional[int] = ..., events_total: _Optional[_Mapping[str, int]] = ..., corrections_total: _Optional[int] = ..., positive_event: _Optional[str] = ...) -> None: ...

class RejectedVersion(_message.Message):
    __slots__ = ("version", "stage", "reason", "detail", "rejected_at_ms")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    REJECTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    version: int
    stage: str
    reason: str
    detail: str
    rejected_at_ms: int
    def __init__(self, version: _Optional[int] = ..., stage: _Optional[str] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ..., rejected_at_ms: _Optional[int] = ...) -> None: ...

class VersionStatus(_message.Message):
    __slots__ = ("version", "state", "labels", "traffic_weight", "loaded_at_unix_ms", "load_ms", "warmup_ms", "warmup_rows", "batches", "rows", "expired", "rejected", "max_batch_rows", "max_queue_delay_us", "evaluation", "lineage", "inference_cpu_seconds", "drift")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LOAD_MS_FIELD_NUMBER: _ClassVar[int]
    WARMUP_MS_FIELD_NUMBER: _ClassVar[int]
    WARMUP_ROWS_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_ROWS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_DELAY_US_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_CPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DRIFT_FIELD_NUMBER: _ClassVar[int]
    version: int
    state: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    traffic_weight: float
    loaded_at_unix_ms: int
    load_ms: float
    warmup_ms: float
    warmup_rows: int
    batches: int
    rows: int
    expired: int
    rejected: int
    max_batch_rows: int
    max_queue_delay_us: int
    evaluation: PublishEvaluation
    lineage: Lineage
    inference_cpu_seconds: float
    drift: VersionDrift
    def __init__(self, version: _Optional[int] = ..., state: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., traffic_weight: _Optional[float] = ..., loaded_at_unix_ms: _Optional[int] = ..., load_ms: _Optional[float] = ..., warmup_ms: _Optional[float] = ..., warmup_rows: _Optional[int] = ..., batches: _Optional[int] = ..., rows: _Optional[int] = ..., expired: _Optional[int] = ..., rejected: _Optional[int] = ..., max_batch_rows: _Optional[int] = ..., max_queue_delay_us: _Optional[int] = ..., evaluation: _Optional[_Union[PublishEvaluation, _Mapping]] = ..., lineage: _Optional[_Union[Lineage, _Mapping]] = ..., inference_cpu_seconds: _Optional[float] = ..., drift: _Optional[_Union[VersionDrift, _Mapping]] = ...) -> None: ...

class VersionDrift(_message.Message):
    __slots__ = ("has_reference", "rows", "rows_total", "window_start_ms", "window_end_ms", "psi_threshold", "flagged", "features")
    HAS_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ROWS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_MS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_MS_FIELD_NUMBER: _ClassVar[int]
    PSI_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    FLAGGED_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    has_reference: bool
    rows: int
    rows_total: int
    window_start_ms: int
    window_end_ms: int
    psi_threshold: float
    flagged: int
    features: _containers.RepeatedCompositeFieldContainer[FeatureDrift]
    def __init__(self, has_reference: _Optional[bool] = ..., rows: _Optional[int] = ..., rows_total: _Optional[int] = ..., window_start_ms: _Optional[int] = ..., window_end_ms: _Optional[int] = ..., psi_threshold: _Optional[float] = ..., flagged: _Optional[int] = ..., features: _Optional[_Iterable[_Union[FeatureDrift, _Mapping]]] = ...) -> None: ...

class FeatureDrift(_message.Message):
    __slots__ = ("feature", "psi", "flagged", "fallback_rate", "reference_fallback_rate", "in_reference")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    PSI_FIELD_NUMBER: _ClassVar[int]
    FLAGGED_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_RATE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FALLBACK_RATE_FIELD_NUMBER: _ClassVar[int]
    IN_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    feature: str
    psi: float
    flagged: bool
    fallback_rate: float
    reference_fallback_rate: float
    in_reference: bool
    def __init__(self, feature: _Optional[str] = ..., psi: _Optional[float] = ..., flagged: _Optional[bool] = ..., fallback_rate: _Optional[float] = ..., reference_fallback_rate: _Optional[float] = ..., in_reference: _Optional[bool] = ...) -> None: ...

class PublishEvaluation(_message.Message):
    __slots__ = ("decision", "forced", "reasons", "baseline_version", "rows", "positives", "positive_event", "window_start_ms", "window_end_ms", "held_out_from_ms", "candidate", "baseline", "max_auc_drop", "max_log_loss_rise", "max_calibration_error", "evaluated_at_ms", "samples")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    FORCED_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    POSITIVES_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_EVENT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_MS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_MS_FIELD_NUMBER: _ClassVar[int]
    HELD_OUT_FROM_MS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    MAX_AUC_DROP_FIELD_NUMBER: _ClassVar[int]
    MAX_LOG_LOSS_RISE_FIELD_NUMBER: _ClassVar[int]
    MAX_CALIBRATION_ERROR_FIELD_NUMBER: _ClassVar[int]
    EVALUATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    decision: str
    forced: bool
    reasons: _containers.RepeatedScalarFieldContainer[str]
    baseline_version: int
    rows: int
    positives: int
    positive_event: str
    window_start_ms: int
    window_end_ms: int
    held_out_from_ms: int
    candidate: OfflineScores
    baseline: OfflineScores
    max_auc_drop: float
    max_log_loss_rise: float
    max_calibration_error: float
    evaluated_at_ms: int
    samples: str
    def __init__(self, decision: _Optional[str] = ..., forced: _Optional[bool] = ..., reasons: _Optional[_Iterable[str]] = ..., baseline_version: _Optional[int] = ..., rows: _Optional[int] = ..., positives: _Optional[int] = ..., positive_event: _Optional[str] = ..., window_start_ms: _Optional[int] = ..., window_end_ms: _Optional[int] = ..., held_out_from_ms: _Optional[int] = ..., candidate: _Optional[_Union[OfflineScores, _Mapping]] = ..., baseline: _Optional[_Union[OfflineScores, _Mapping]] = ..., max_auc_drop: _Optional[float] = ..., max_log_loss_rise: _Optional[float] = ..., max_calibration_error: _Optional[float] = ..., evaluated_at_ms: _Optional[int] = ..., samples: _Optional[str] = ...) -> None: ...

class OfflineScores(_message.Message):
    __slots__ = ("auc", "log_loss", "mean_score", "calibration")
    AUC_FIELD_NUMBER: _ClassVar[int]
    LOG_LOSS_FIELD_NUMBER: _ClassVar[int]
    MEAN_SCORE_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    auc: float
    log_loss: float
    mean_score: float
    calibration: float
    def __init__(self, auc: _Optional[float] = ..., log_loss: _Optional[float] = ..., mean_score: _Optional[float] = ..., calibration: _Optional[float] = ...) -> None: ...

class Lineage(_message.Message):
    __slots__ = ("run_json", "trained_from_ms", "trained_to_ms", "trained_rows", "trained_positives", "warm_start_version")
    RUN_JSON_FIELD_NUMBER: _ClassVar[int]
    TRAINED_FROM_MS_FIELD_NUMBER: _ClassVar[int]
    TRAINED_TO_MS_FIELD_NUMBER: _ClassVar[int]
    TRAINED_ROWS_FIELD_NUMBER: _ClassVar[int]
    TRAINED_POSITIVES_FIELD_NUMBER: _ClassVar[int]
    WARM_START_VERSION_FIELD_NUMBER: _ClassVar[int]
    run_json: str
    trained_from_ms: int
    trained_to_ms: int
    trained_rows: int
    trained_positives: int
    warm_start_version: int
    def __init__(self, run_json: _Optional[str] = ..., trained_from_ms: _Optional[int] = ..., trained_to_ms: _Optional[int] = ..., trained_rows: _Optional[int] = ..., trained_positives: _Optional[int] = ..., warm_start_version: _Optional[int] = ...) -> None: ...
