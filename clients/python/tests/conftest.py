"""Fixtures: one `augur serve` for the session, and an etcd per module that asks for one
(servers.py starts them)."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest

from servers import Etcd, free_ports, start_augur, wait_until


@pytest.fixture(scope="session")
def augur(tmp_path_factory):
    server = start_augur(tmp_path_factory.mktemp("augur"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def etcd():
    binary = shutil.which("etcd")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("etcd is not on PATH under CI (scripts/setup.sh installs Debian's etcd-server)", pytrace=False)
        pytest.skip("etcd is not on PATH (scripts/setup.sh installs Debian's etcd-server); CI runs this test")
    with tempfile.TemporaryDirectory(prefix="augur-etcd-") as tmp:
        client_port, peer_port = free_ports(2)
        client, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
        log = Path(tmp) / "etcd.log"
        process = subprocess.Popen(
            [binary, "--name", "t", "--data-dir", f"{tmp}/data",
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"t={peer}", "--logger", "zap", "--log-level", "warn"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
        )

        def healthy() -> bool:
            with urllib.request.urlopen(f"{client}/health", timeout=1) as r:
                return b'"true"' in r.read()

        try:
            wait_until("etcd healthy", 30, healthy, log, process)
            yield Etcd(f"127.0.0.1:{client_port}", log, process)
        finally:
            process.kill()
            process.wait()
