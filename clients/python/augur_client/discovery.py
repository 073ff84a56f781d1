"""Finding augur instances: a fixed `host:port[,host:port]` list, or the etcd keys augur registers.

`etcd://host:port[,host:port]/<service>` reads what src/registry/etcd.rs writes and gRPC-Go's
etcd resolver (and augur's own Rust client, src/client/discovery.rs) read: one key
`<service>/<host:port>` per instance, valued `{"Op":0,"Addr":"host:port","Metadata":...}`. The
keys are read with one prefix range over etcd's JSON gateway (`POST /v3/kv/range`, keys base64),
with urllib only. Unlike the Rust client this does not watch: the list is read when asked
(`Client.discover` reads it at start, again every `refresh_s` and after an UNAVAILABLE).
"""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass

from .errors import DiscoveryError


@dataclass(frozen=True)
class EtcdTarget:
    """`etcd://host:port[,host:port]/<service>`: etcd client endpoints and the service name."""

    endpoints: tuple[str, ...]
    service: str

    def __str__(self) -> str:
        return f"etcd://{','.join(self.endpoints)}/{self.service}"


def _host_ports(text: str, target: str) -> list[str]:
    hosts = [h.strip() for h in text.split(",")]
    for host in hosts:
        name, sep, port = host.rpartition(":")
        if not sep or not name or not port.isdigit() or not 0 < int(port) < 65536:
            raise DiscoveryError(f"`{target}`: every endpoint must be host:port, not `{host}`")
    return hosts


def parse_addresses(target: str) -> list[str]:
    """`host:port[,host:port]` -> the list; DiscoveryError for anything else."""
    if "://" in target:
        raise DiscoveryError(f"`{target}`: a scheme is not an address (use Client.discover for etcd://)")
    return _host_ports(target, target)


def parse_etcd(target: str) -> EtcdTarget:
    """Parses `etcd://host:port[,host:port]/<service>` (trailing slashes ignored)."""
    rest = target.removeprefix("etcd://")
    if rest == target:
        raise DiscoveryError(f"`{target}`: expected etcd://host:port/<service>")
    hosts, sep, service = rest.partition("/")
    service = service.rstrip("/")
    if not sep or not service:
        raise DiscoveryError(f"`{target}`: expected etcd://host:port/<service> (the service name is empty)")
    return EtcdTarget(tuple(_host_ports(hosts, target)), service)


def _prefix_end(prefix: bytes) -> bytes:
    """etcd's range_end for "every key starting with prefix": the prefix with its last byte + 1."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"  # every key


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def read_registered(target: EtcdTarget, timeout: float = 5.0) -> dict[str, str]:
    """Every instance registered under `<service>/`: etcd key -> `host:port`, in key order.

    The first etcd endpoint that answers is used; DiscoveryError when none does. Keys whose value
    is not a gRPC naming endpoint (no `Addr`, or an `Op` other than 0 = Add) are skipped, as the
    Rust client skips them.
    """
    prefix = f"{target.service}/".encode()
    body = json.dumps({"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))}).encode()
    failures = []
    for endpoint in target.endpoints:
        request = urllib.request.Request(
            f"http://{endpoint}/v3/kv/range", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as e:
            failures.append(f"{endpoint}: HTTP {e.code} {e.read()[:200]!r}")
            continue
        except (OSError, ValueError) as e:  # refused, timed out, not JSON
            failures.append(f"{endpoint}: {e}")
            continue
        found = {}
        for kv in answer.get("kvs", []):  # absent when nothing matches
            key = base64.b64decode(kv["key"]).decode("utf-8", "replace")
            try:
                update = json.loads(base64.b64decode(kv.get("value", "")))
            except ValueError:
                continue
            if isinstance(update, dict) and update.get("Op", 0) == 0 and isinstance(update.get("Addr"), str):
                found[key] = update["Addr"]
        return found
    raise DiscoveryError(f"no etcd endpoint of `{target}` answered: {'; '.join(failures)}")
