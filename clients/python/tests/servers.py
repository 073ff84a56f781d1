"""Real servers for the client tests: `augur serve` on its embedded defaults (demo catalogue in
memory, models/ranking v1) with a config file that moves every port to a free one on 127.0.0.1 and
turns sample logging on (for ReportEvents), started from the repo root like scripts/loop.sh does.

AUGUR_BIN names the binary (default: target/debug/augur); scripts/test.sh sets it. etcd: Debian's
`etcd` (scripts/setup.sh) on free ports in a temp dir; without it the etcd test skips, except under
CI=true, where it fails.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def free_ports(n: int) -> list[int]:
    """n distinct free ports (bound together, then released), as scripts/loop.sh picks them."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def augur_bin() -> Path:
    path = Path(os.environ.get("AUGUR_BIN") or ROOT / "target" / "debug" / "augur")
    if not path.is_file():
        pytest.fail(f"no augur binary at {path}: run `cargo build --bin augur` or set AUGUR_BIN", pytrace=False)
    return path


def wait_until(what: str, seconds: float, check, log: Path | None = None, process=None) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        if process is not None and process.poll() is not None:
            pytest.fail(f"{what}: the process exited ({process.returncode}):\n{tail(log)}", pytrace=False)
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not reached in {seconds}s\n{tail(log)}", pytrace=False)
        time.sleep(0.1)


def tail(log: Path | None, lines: int = 30) -> str:
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Augur:
    """One running `augur serve`."""

    addr: str  # public gRPC (Prediction)
    admin_addr: str  # admin gRPC (ModelAdmin)
    metrics_url: str
    log: Path
    process: subprocess.Popen

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as r:
            for line in r.read().decode().splitlines():
                key, _, value = line.rpartition(" ")
                if key == name:
                    return float(value)
        return 0.0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: the ordered drain (deregisters from etcd first)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_augur(work: Path, samples: bool = True, extra_toml: str = "") -> Augur:
    """`augur serve` on free ports; `samples` turns sample logging on (into `work`)."""
    grpc_port, admin_port, admin_grpc_port = free_ports(3)
    config = work / "augur.toml"
    config.write_text(
        f"""[server]
listen = "127.0.0.1:{grpc_port}"
[admin]
listen = "127.0.0.1:{admin_port}"
grpc_listen = "127.0.0.1:{admin_grpc_port}"
[samples]
enabled = {str(samples).lower()}
[samples.log]
dir = "{work / 'samples'}"
{extra_toml}"""
    )
    log = work / "serve.log"
    # From the repo root: the embedded defaults name demo/, features/ and models/ relatively, and
    # augur finds libonnxruntime.so in ./.venv.
    process = subprocess.Popen(
        [str(augur_bin()), "serve", "--config", str(config)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    augur = Augur(
        addr=f"127.0.0.1:{grpc_port}",
        admin_addr=f"127.0.0.1:{admin_grpc_port}",
        metrics_url=f"http://127.0.0.1:{admin_port}/metrics",
        log=log,
        process=process,
    )

    def ready() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=2) as r:
            return r.status == 200

    try:
        wait_until("augur ready (/readyz)", 120, ready, log, process)
    except BaseException:
        augur.stop()
        raise
    return augur


@dataclass
class Etcd:
    endpoint: str  # host:port of the client URL
    log: Path
    process: subprocess.Popen
