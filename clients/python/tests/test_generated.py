"""The committed stubs in augur_client/v1 are what generate.sh makes from proto/augur/v1 now: a proto
change without a regeneration fails here."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
GENERATED = PACKAGE / "augur_client" / "v1"
PROTOS = PACKAGE.parents[1] / "proto" / "augur" / "v1"


def generated_files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*_pb2*"))}


def test_every_proto_has_committed_stubs():
    names = {p.stem for p in PROTOS.glob("*.proto")}
    assert names, PROTOS
    expected = {f"{n}{suffix}" for n in names for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")}
    assert set(generated_files(GENERATED)) == expected


def test_regenerating_gives_the_committed_files(tmp_path):
    subprocess.run(
        ["bash", str(PACKAGE / "generate.sh"), str(tmp_path)],
        check=True,
        env={**os.environ, "PYTHON": sys.executable},
    )
    fresh, committed = generated_files(tmp_path), generated_files(GENERATED)
    assert sorted(fresh) == sorted(committed)
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated stubs {stale}: run clients/python/generate.sh and commit the result"
