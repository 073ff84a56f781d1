"""The client against a real `augur serve` (conftest.py): Predict, errors, GetFeatures,
ReportEvents and ModelAdmin, through the typed API only."""
from __future__ import annotations

import math
import time

import grpc
import pytest

from augur_client import AdminClient, Candidate, Client, Event, EventStatus, RpcError
from servers import free_ports, start_augur, wait_until

ITEMS = ["i0", "i1", "i2", "i3", "i4"]
CONTEXT = {"hour": 20, "device": "ios"}


@pytest.fixture
def client(augur):
    with Client(augur.addr, scene="ranking", timeout=30) as c:
        yield c


def test_predict_returns_one_finite_score_per_candidate_in_order(client):
    scores = client.predict("u1", ITEMS, context=CONTEXT, request_id="py-predict-1")
    assert [s.item_id for s in scores] == ITEMS
    assert all(s.finite and 0.0 <= s.score <= 1.0 for s in scores), scores
    assert {(s.request_id, s.model_name, s.model_version) for s in scores} == {("py-predict-1", "ranking", "1")}
    # Known user and items, full context: nothing was served from a default.
    assert all(not s.fallbacks for s in scores), scores
    # Deterministic: the same request scores the same.
    again = client.predict("u1", ITEMS, context=CONTEXT)
    assert [s.score for s in again] == [s.score for s in scores]
    assert again[0].request_id and again[0].request_id != "py-predict-1"  # generated when empty


def test_predict_reports_fallbacks_per_candidate(client):
    scores = client.predict("nobody", ["i0", "no-such-item"], context={"hour": 3})
    assert len(scores) == 2
    # The unknown user's row is missing for both candidates, the unknown item's only for itself;
    # `device` was not sent.
    assert scores[0].fallbacks.get("user_age") == "missing_row"
    assert scores[1].fallbacks.get("item_price") == "missing_row"
    assert "item_price" not in scores[0].fallbacks
    assert scores[0].fallbacks.get("device") == "missing_field"


def test_request_time_item_features_change_the_score(client):
    cheap, dear = client.predict("u1", [Candidate("i0", {"price": 1.0}), Candidate("i0", {"price": 900.0})])
    assert cheap.score != dear.score


@pytest.mark.parametrize(
    ("call", "field"),
    [
        pytest.param(lambda c: c.predict("u1", []), "candidates", id="candidates"),
        pytest.param(lambda c: c.predict("u1", ["i0", ""]), "candidates[1].item_id", id="candidates[1].item_id"),
        pytest.param(lambda c: c.predict("u1", ["i0"], context={"hour": "noon"}), "context.hour", id="context.hour"),
        pytest.param(lambda c: c.predict("u1", ["i0"], context={"weather": "rain"}), "context.weather", id="context.weather"),
        pytest.param(lambda c: c.predict("u1", ["i0"], scene=""), "scene", id="scene"),
        pytest.param(lambda c: c.get_features("u1", [Candidate("i0", {"colour": "red"})]), "candidates[0].features.colour", id="candidates[0].features.colour"),
    ],
)
def test_bad_request_raises_invalid_argument_naming_the_field(client, call, field):
    with pytest.raises(RpcError) as raised:
        call(client)
    error = raised.value
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT and error.code_name == "INVALID_ARGUMENT"
    assert error.field == field, error.message
    assert str(error).startswith(f"{error.method}: INVALID_ARGUMENT: {field}: "), str(error)


def test_other_status_codes_come_through(client, augur):
    with pytest.raises(RpcError) as raised:
        client.predict("u1", ["i0"], scene="no-such-scene")
    assert raised.value.code is grpc.StatusCode.NOT_FOUND and "no-such-scene" in raised.value.message
    assert raised.value.field is None
    with pytest.raises(RpcError) as raised:
        client.predict("u1", ["i0"], model_version="99")
    assert raised.value.code is grpc.StatusCode.NOT_FOUND
    # A deadline nobody can meet.
    with pytest.raises(RpcError) as raised:
        client.predict("u1", ITEMS * 20, timeout=1e-6)
    assert raised.value.code is grpc.StatusCode.DEADLINE_EXCEEDED


def test_nothing_listening_is_unavailable_after_one_retry(augur):
    (dead,) = free_ports(1)
    with Client([f"127.0.0.1:{dead}"], scene="ranking", timeout=5) as c:
        with pytest.raises(RpcError) as raised:
            c.predict("u1", ["i0"])
        assert raised.value.code is grpc.StatusCode.UNAVAILABLE
        with pytest.raises(RpcError, match="not ready"):
            c.wait_ready(timeout=0.5)
    # With a live endpoint beside the dead one, every call lands (the retry goes to the next one).
    with Client([f"127.0.0.1:{dead}", augur.addr], scene="ranking", timeout=30) as c:
        for _ in range(4):
            assert len(c.predict("u1", ["i0", "i1"])) == 2


def test_get_features_matches_the_spec_layout(client):
    features = client.get_features("u1", ITEMS, context=CONTEXT)
    assert set(features.inputs) == {"ids", "dense"}
    ids, dense = features.inputs["ids"], features.inputs["dense"]
    assert ids.dtype == "int64" and dense.dtype == "float32"
    assert ids.shape[0] == dense.shape[0] == len(ITEMS)
    assert len(ids.values) == ids.shape[0] * ids.shape[1]
    assert {"user_id", "item_id", "hour", "device", "user_activity", "item_price"} <= set(features.layout)
    assert features.layout["item_price"].input == "dense"
    # Context is shared by every candidate, item ids differ per candidate.
    hour = features.column("hour")
    assert len(hour) == len(ITEMS) and all(h == hour[0] for h in hour)
    assert len({tuple(c) for c in features.column("item_id")}) == len(ITEMS)
    assert features.column("hour") != client.get_features("u1", ITEMS, context={**CONTEXT, "hour": 3}).column("hour")
    assert all(math.isfinite(v) for v in dense.values)
    assert not features.fallbacks
    # Tensor.to_numpy, for callers that have numpy (tools/train does).
    np = pytest.importorskip("numpy")
    assert ids.to_numpy().shape == tuple(ids.shape) and ids.to_numpy().dtype == np.int64


def test_report_events_answers_each_event(client, augur):
    scores = client.predict("u1", ITEMS, context=CONTEXT, request_id=f"py-events-{time.time_ns()}")
    # The prediction's snapshot reaches the join store asynchronously (a bounded queue, then the
    # joiner); an event that overtakes it would end as an orphan, as in `augur simulate`. Wait
    # until every snapshot queued so far is held (none leaves: no sample is due within the window).
    def all_held() -> bool:
        return augur.metric("augur_samples_pending") >= augur.metric('augur_samples_snapshots_total{scene="ranking"}') > 0

    wait_until("the prediction held in the join store", 30, all_held, augur.log)
    first, second = scores[0], scores[1]
    results = client.report_events(
        [
            Event.of(first, "impression"),
            Event.of(first, "click", value=1.5),
            Event.of(second, "impression"),
            Event.of(first, "click"),  # again: a duplicate
            Event("py-unknown-request", "i0", "click"),  # no such prediction
            Event.of(first, "teleport"),  # not a configured event type
            Event(first.request_id, "", "click"),  # empty item id
        ]
    )
    assert [r.status for r in results] == [
        EventStatus.ACCEPTED,
        EventStatus.ACCEPTED,
        EventStatus.ACCEPTED,
        EventStatus.DUPLICATE,
        EventStatus.ORPHAN,
        EventStatus.REJECTED,
        EventStatus.REJECTED,
    ], results
    assert results[0].accepted and not results[3].accepted
    assert "teleport" in results[5].reason or "type" in results[5].reason, results[5]
    assert "item_id" in results[6].reason, results[6]
    assert client.report_events([]) == []


def test_report_events_without_sample_logging_is_failed_precondition(tmp_path):
    server = start_augur(tmp_path, samples=False)
    try:
        with Client(server.addr, scene="ranking", timeout=30) as c:
            assert len(c.predict("u1", ["i0"])) == 1
            with pytest.raises(RpcError) as raised:
                c.report_events([Event("r", "i0", "click")])
    finally:
        server.stop()
    assert raised.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert "samples.enabled" in raised.value.message


def test_admin_lists_the_served_model(augur):
    with AdminClient(augur.admin_addr) as admin:
        models = {m.scene: m for m in admin.list_models()}
    assert models["ranking"].name == "ranking"
    assert [v.version for v in models["ranking"].versions] == [1]
    assert models["ranking"].version_labelled("stable") == 1
    with AdminClient(augur.admin_addr) as admin:
        assert {m.scene for m in admin.reload("ranking")} >= {"ranking"}
        with pytest.raises(RpcError) as raised:
            admin.set_canary("ranking", 1, 2.0)
    assert raised.value.code is grpc.StatusCode.INVALID_ARGUMENT, raised.value


def test_closed_client_refuses_calls(augur):
    c = Client(augur.addr, scene="ranking")
    with c:
        c.wait_ready(timeout=10)
        assert c.addresses == [augur.addr]
    with pytest.raises(ValueError, match="closed"):
        c.predict("u1", ["i0"])
