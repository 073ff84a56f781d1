"""The parts that need no server: values, targets, the etcd prefix range, error fields."""
from __future__ import annotations

import grpc
import pytest

from augur_client import DiscoveryError, RpcError, feature_value
from augur_client.discovery import EtcdTarget, _prefix_end, parse_addresses, parse_etcd


def test_python_values_become_typed_feature_values():
    assert feature_value(3).WhichOneof("kind") == "int_value"
    assert feature_value(3.5).float_value == 3.5
    assert feature_value("ios").string_value == "ios"
    assert list(feature_value([1, 2]).int_list.values) == [1, 2]
    assert list(feature_value((1, 2.5)).float_list.values) == [1.0, 2.5]
    assert list(feature_value(["a", "b"]).string_list.values) == ["a", "b"]
    for bad in (True, [], [1, "a"], {"a": 1}, None, [True]):
        with pytest.raises(TypeError):
            feature_value(bad)


def test_targets_parse_like_the_rust_client():
    assert parse_etcd("etcd://127.0.0.1:2379,10.0.0.2:2379/augur/") == EtcdTarget(("127.0.0.1:2379", "10.0.0.2:2379"), "augur")
    assert str(parse_etcd("etcd://h:1/augur")) == "etcd://h:1/augur"
    assert parse_addresses("a:1, b:2") == ["a:1", "b:2"]
    for bad in ("etcd://h:1", "etcd://h:1/", "etcd://h/augur", "http://h:1/augur"):
        with pytest.raises(DiscoveryError):
            parse_etcd(bad)
    for bad in ("h", "h:0", ":1", "h:x", "etcd://h:1/augur"):
        with pytest.raises(DiscoveryError):
            parse_addresses(bad)


def test_prefix_range_end():
    assert _prefix_end(b"augur/") == b"augur0"
    assert _prefix_end(b"a\xff") == b"b"
    assert _prefix_end(b"\xff") == b"\0"


def test_field_of_an_invalid_argument():
    e = RpcError("Predict", grpc.StatusCode.INVALID_ARGUMENT, "candidates[1].item_id: must not be empty")
    assert e.field == "candidates[1].item_id" and e.code_name == "INVALID_ARGUMENT"
    assert str(e) == "Predict: INVALID_ARGUMENT: candidates[1].item_id: must not be empty"
    assert RpcError("Predict", grpc.StatusCode.NOT_FOUND, "scene: unknown scene `x`").field is None
