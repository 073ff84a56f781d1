"""`Client`: augur.v1.Prediction for Python callers; `AdminClient`: augur.v1.ModelAdmin.

One gRPC channel per augur endpoint; calls go round-robin over them. Predict and GetFeatures are
retried once, on the next endpoint, after UNAVAILABLE (a draining instance or a closing
connection), as augur's Rust client does; ReportEvents is not retried (a retried batch would come
back as DUPLICATE). Every failed call raises `RpcError` with the status code and message.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grpc

from . import discovery, types
from .errors import DiscoveryError, RpcError
from .types import Candidate, Event, EventResult, EventStatus, Features, ModelInfo, Score, Value
from .v1 import admin_pb2, admin_pb2_grpc, prediction_pb2, prediction_pb2_grpc

_DEFAULT = object()


class _Channels:
    """The channels (and Prediction stubs) of one client, keyed by address, used in turn."""

    def __init__(
        self,
        addresses: Sequence[str],
        credentials: grpc.ChannelCredentials | None,
        options: Sequence[tuple[str, Any]],
    ) -> None:
        self._credentials = credentials
        self._options = list(options)
        self._lock = threading.Lock()
        self._channels: dict[str, tuple[grpc.Channel, prediction_pb2_grpc.PredictionStub]] = {}
        self._turn = 0
        self._closed = False
        self.replace(addresses)

    def _open(self, address: str) -> grpc.Channel:
        if self._credentials is not None:
            return grpc.secure_channel(address, self._credentials, options=self._options)
        return grpc.insecure_channel(address, options=self._options)

    def replace(self, addresses: Sequence[str]) -> None:
        """Opens channels to new addresses and closes those no longer listed."""
        with self._lock:
            if self._closed:
                return
            wanted = list(dict.fromkeys(addresses))
            for gone in [a for a in self._channels if a not in wanted]:
                self._channels.pop(gone)[0].close()
            for address in wanted:
                if address not in self._channels:
                    channel = self._open(address)
                    self._channels[address] = (channel, prediction_pb2_grpc.PredictionStub(channel))

    def addresses(self) -> list[str]:
        with self._lock:
            return list(self._channels)

    def channels(self) -> list[tuple[str, grpc.Channel]]:
        with self._lock:
            return [(address, channel) for address, (channel, _) in self._channels.items()]

    def next(self) -> prediction_pb2_grpc.PredictionStub:
        with self._lock:
            if self._closed:
                raise ValueError("the client is closed")
            if not self._channels:
                raise DiscoveryError("no augur endpoint is known")
            entries = list(self._channels.values())
            _, stub = entries[self._turn % len(entries)]
            self._turn += 1
            return stub

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for channel, _ in self._channels.values():
                channel.close()
            self._channels.clear()


class Client:
    """A Prediction client.

        with Client("127.0.0.1:50051", scene="ranking") as augur:
            for s in augur.predict("u42", ["i1", "i2"], context={"hour": 20, "device": "ios"}):
                print(s.item_id, s.score, s.model_version)

    `addr` is `host:port`, `host:port,host:port` or a list of them; `Client.discover` finds them in
    etcd. `scene` is the default for calls that name none; `timeout` (seconds, None = no deadline)
    the default deadline, which augur also uses to budget its feature fetch; `token` is sent as
    `authorization: Bearer <token>` (server.auth_token); `credentials` switches to TLS.
    """

    def __init__(
        self,
        addr: str | Sequence[str],
        *,
        scene: str = "",
        timeout: float | None = 10.0,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        addresses = discovery.parse_addresses(addr) if isinstance(addr, str) else list(addr)
        if not addresses:
            raise DiscoveryError("no augur address given")
        self.scene = scene
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._channels = _Channels(addresses, credentials, options)
        self._etcd: discovery.EtcdTarget | None = None
        self._etcd_timeout = 5.0
        self._refresh_s: float | None = None
        self._read_at = 0.0

    @classmethod
    def discover(
        cls,
        target: str,
        *,
        refresh_s: float | None = 30.0,
        etcd_timeout: float = 5.0,
        **kwargs: Any,
    ) -> Client:
        """A client over every augur registered in etcd: `etcd://host:port[,host:port]/<service>`
        (the `registry.services` name, `augur` by default). The list is read now, again on the
        first call after `refresh_s` seconds (None: never), and after an UNAVAILABLE.
        DiscoveryError when etcd does not answer or nothing is registered."""
        etcd = discovery.parse_etcd(target)
        found = discovery.read_registered(etcd, timeout=etcd_timeout)
        if not found:
            raise DiscoveryError(f"no augur instance is registered under `{etcd.service}/` in {etcd}")
        client = cls(list(found.values()), **kwargs)
        client._etcd = etcd
        client._etcd_timeout = etcd_timeout
        client._refresh_s = refresh_s
        client._read_at = time.monotonic()
        return client

    @property
    def addresses(self) -> list[str]:
        """The endpoints calls go to now."""
        return self._channels.addresses()

    def refresh(self) -> list[str]:
        """Reads etcd again (discovered clients); keeps the current list when etcd fails or lists
        nothing. Returns the endpoints in use."""
        if self._etcd is not None:
            self._read_at = time.monotonic()
            try:
                found = discovery.read_registered(self._etcd, timeout=self._etcd_timeout)
            except DiscoveryError:
                found = {}
            if found:
                self._channels.replace(list(found.values()))
        return self.addresses

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Blocks until every endpoint's channel is connected; RpcError(UNAVAILABLE) after timeout."""
        deadline = time.monotonic() + timeout
        for address, channel in self._channels.channels():
            try:
                grpc.channel_ready_future(channel).result(timeout=max(0.0, deadline - time.monotonic()))
            except grpc.FutureTimeoutError:
                raise RpcError("connect", grpc.StatusCode.UNAVAILABLE, f"{address} not ready in {timeout}s") from None

    def _stub(self) -> prediction_pb2_grpc.PredictionStub:
        if self._etcd is not None and self._refresh_s is not None and time.monotonic() - self._read_at > self._refresh_s:
            self.refresh()
        return self._channels.next()

    def _call(self, method: str, request: Any, timeout: Any, retry: bool) -> Any:
        deadline = self.timeout if timeout is _DEFAULT else timeout
        error: RpcError | None = None
        for attempt in range(2 if retry else 1):
            if attempt:
                self.refresh()
            try:
                return getattr(self._stub(), method)(request, timeout=deadline, metadata=self._metadata)
            except grpc.RpcError as e:
                error = RpcError.from_grpc(method, e)
            if error.code is not grpc.StatusCode.UNAVAILABLE:
                break
        assert error is not None
        raise error

    def _scene(self, scene: str | None) -> str:
        return self.scene if scene is None else scene

    def predict(
        self,
        user: str,
        items: Sequence[str | Candidate],
        *,
        context: Mapping[str, Value] | None = None,
        scene: str | None = None,
        request_id: str = "",
        model_version: str = "",
        timeout: float | None = _DEFAULT,  # type: ignore[assignment]
    ) -> list[Score]:
        """Scores every item for `user`; one Score per item, in order. `model_version` pins a
        version ("3") or label ("stable", "canary"); empty lets routing decide. `request_id`
        (generated by augur when empty) is what later events join on."""
        request = prediction_pb2.PredictRequest(
            request_id=request_id,
            scene=self._scene(scene),
            user_id=user,
            context=types.feature_map(context),
            candidates=types.candidates(items),
            model_version=model_version,
        )
        response = self._call("Predict", request, timeout, retry=True)
        return types.scores(request, response)

    def get_features(
        self,
        user: str,
        items: Sequence[str | Candidate],
        *,
        context: Mapping[str, Value] | None = None,
        scene: str | None = None,
        timeout: float | None = _DEFAULT,  # type: ignore[assignment]
    ) -> Features:
        """The model inputs Predict would build for this request, without running the model."""
        request = prediction_pb2.GetFeaturesRequest(
            scene=self._scene(scene),
            user_id=user,
            context=types.feature_map(context),
            candidates=types.candidates(items),
        )
        return Features.from_proto(self._call("GetFeatures", request, timeout, retry=True))

    def report_events(
        self,
        events: Iterable[Event],
        *,
        timeout: float | None = _DEFAULT,  # type: ignore[assignment]
    ) -> list[EventResult]:
        """Reports impressions, clicks, conversions...; one EventResult per event, in order. One
        bad event is REJECTED with a reason and never fails the batch. Needs samples.enabled on
        the server (else RpcError FAILED_PRECONDITION)."""
        request = prediction_pb2.ReportEventsRequest(events=[e.to_proto() for e in events])
        response = self._call("ReportEvents", request, timeout, retry=False)
        return [EventResult(EventStatus(r.status), r.reason) for r in response.results]

    def close(self) -> None:
        self._channels.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AdminClient:
    """ModelAdmin on augur's admin gRPC port (`admin.grpc_listen`; `token` = admin.auth_token)."""

    def __init__(self, addr: str, *, timeout: float | None = 10.0, token: str | None = None) -> None:
        (address,) = discovery.parse_addresses(addr)
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._channel = grpc.insecure_channel(address)
        self._stub = admin_pb2_grpc.ModelAdminStub(self._channel)

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            error = RpcError.from_grpc(method, e)
        raise error

    def list_models(self) -> list[ModelInfo]:
        return [ModelInfo.from_proto(m) for m in self._call("ListModels", admin_pb2.ListModelsRequest()).models]

    def reload(self, model: str = "") -> list[ModelInfo]:
        """Polls the buckets and rescans the repositories now (`model` empty: all)."""
        return [ModelInfo.from_proto(m) for m in self._call("Reload", admin_pb2.ReloadRequest(model=model)).models]

    def set_canary(self, model: str, version: int, weight: float) -> ModelInfo:
        """Routes `weight` (0..1) of users to `version`; weight 0 clears the canary."""
        return ModelInfo.from_proto(
            self._call("SetCanary", admin_pb2.SetCanaryRequest(model=model, version=version, weight=weight))
        )

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
