"""augur_client: a typed Python client for augur's gRPC API (proto/augur/v1).

    from augur_client import Client, Event

    with Client("127.0.0.1:50051", scene="ranking") as augur:      # or Client.discover("etcd://127.0.0.1:2379/augur")
        scores = augur.predict("u42", ["i1", "i2", "i3"], context={"hour": 20, "device": "ios"})
        augur.report_events([Event.of(scores[0], "impression"), Event.of(scores[0], "click")])

Failed calls raise RpcError (status code, message, and the field for INVALID_ARGUMENT). The
generated stubs are in augur_client.v1 for anything this API does not cover (StreamFeatures).
"""
from .client import AdminClient, Client
from .errors import AugurError, DiscoveryError, RpcError
from .types import (
    Candidate,
    Event,
    EventResult,
    EventStatus,
    Fallback,
    Features,
    Layout,
    ModelInfo,
    Score,
    Tensor,
    Value,
    VersionInfo,
    feature_value,
)

__all__ = [
    "AdminClient",
    "AugurError",
    "Candidate",
    "Client",
    "DiscoveryError",
    "Event",
    "EventResult",
    "EventStatus",
    "Fallback",
    "Features",
    "Layout",
    "ModelInfo",
    "RpcError",
    "Score",
    "Tensor",
    "Value",
    "VersionInfo",
    "feature_value",
]
