"""Client.discover against a real etcd (conftest.py) and an augur that registers in it
(`[registry] kind = "etcd"`): the keys src/registry/etcd.rs writes, read over etcd's JSON gateway."""
from __future__ import annotations

import base64
import json
import urllib.request

import pytest

from augur_client import Client, DiscoveryError
from augur_client.discovery import parse_etcd, read_registered
from servers import free_ports, start_augur, wait_until


def etcd_call(etcd, path: str, body: dict) -> dict:
    request = urllib.request.Request(f"http://{etcd.endpoint}/v3/kv/{path}", data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=5) as r:
        return json.load(r)


def put(etcd, key: str, value: str) -> None:
    etcd_call(etcd, "put", {"key": base64.b64encode(key.encode()).decode(), "value": base64.b64encode(value.encode()).decode()})


def delete(etcd, key: str) -> None:
    etcd_call(etcd, "deleterange", {"key": base64.b64encode(key.encode()).decode()})


def test_discover_finds_the_registered_augur_and_follows_changes(etcd, tmp_path):
    target = f"etcd://{etcd.endpoint}/augur"
    server = start_augur(
        tmp_path,
        samples=False,
        extra_toml=f'[registry]\nkind = "etcd"\nendpoints = ["http://{etcd.endpoint}"]\nlease_ttl_s = 5\n',
    )
    try:
        # augur registers once it reports SERVING, which may be just after /readyz turns 200.
        wait_until("augur registered in etcd", 30, lambda: read_registered(parse_etcd(target)), server.log)
        assert read_registered(parse_etcd(target)) == {f"augur/{server.addr}": server.addr}
        # Keys that are not gRPC naming endpoints, and keys of another service, are not augurs.
        put(etcd, "augur/not-an-endpoint", "not json")
        put(etcd, "augur/deleted", json.dumps({"Op": 1, "Addr": "127.0.0.1:1"}))
        put(etcd, "augurx/127.0.0.1:1", json.dumps({"Op": 0, "Addr": "127.0.0.1:1", "Metadata": None}))

        with Client.discover(target, scene="ranking", timeout=30) as client:
            assert client.addresses == [server.addr]
            scores = client.predict("u1", ["i0", "i1", "i2"], context={"hour": 20})
            assert len(scores) == 3 and all(s.finite for s in scores)
            # A second, dead, registration: calls that land on it are retried on the live one.
            (dead,) = free_ports(1)
            put(etcd, f"augur/127.0.0.1:{dead}", json.dumps({"Op": 0, "Addr": f"127.0.0.1:{dead}", "Metadata": None}))
            assert sorted(client.refresh()) == sorted([server.addr, f"127.0.0.1:{dead}"])
            for _ in range(4):
                assert len(client.predict("u1", ["i0"])) == 1
            delete(etcd, f"augur/127.0.0.1:{dead}")
            assert client.refresh() == [server.addr]

        # The first etcd endpoint down: the next one is asked.
        (down,) = free_ports(1)
        with Client.discover(f"etcd://127.0.0.1:{down},{etcd.endpoint}/augur", scene="ranking") as client:
            assert client.addresses == [server.addr]
    finally:
        server.stop()

    # SIGTERM deregisters (shutdown step 1): nothing is left to discover.
    assert read_registered(parse_etcd(target)) == {}
    with pytest.raises(DiscoveryError, match="no augur instance is registered under `augur/`"):
        Client.discover(target)


def test_discover_names_the_etcd_that_did_not_answer():
    (down,) = free_ports(1)
    with pytest.raises(DiscoveryError, match=f"no etcd endpoint of `etcd://127.0.0.1:{down}/augur` answered"):
        Client.discover(f"etcd://127.0.0.1:{down}/augur", etcd_timeout=2)
