#!/usr/bin/env python3
"""Checks, through augur_client, that a running augur serves the model file we trained: for a few
requests from the demo catalogue it calls Predict (routing decides the version, nothing pinned)
and GetFeatures, then scores GetFeatures' tensors with onnxruntime on the local ONNX file (train.py's
scorer). It fails unless every answer came from --expect-version, every score is finite and in
[0, 1], and the served scores equal the local ones within --tolerance: the model answering is the
file we published, fed exactly the inputs the offline side computes for the same request.
`scripts/loop.sh` runs it after `augur serve` starts (v1) and after the swap (the new model, v2).

  python check_served.py --addr 127.0.0.1:50051 --model models/ranking/1/model.onnx --expect-version 1
  python check_served.py --discover etcd://127.0.0.1:2379/augur --model new.onnx --expect-version 2

Prints one line: `served: version 2, 20 requests x 10 candidates, max |served - local| 3e-08`.
"""
from __future__ import annotations

import argparse
import csv
import math
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from augur_client import AugurError, Client  # noqa: E402
from train import ort_scores  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def ids(path: Path, key: str) -> list[str]:
    with path.open(newline="") as f:
        return [row[key] for row in csv.DictReader(f)]


def check(client: Client, args: argparse.Namespace) -> tuple[float, int]:
    """Runs the requests; returns the largest served-vs-local difference and the fallback count.
    Raises AssertionError on the first violation."""
    users = ids(Path(args.users), "user_id")
    items = ids(Path(args.items), "item_id")
    rng = random.Random(args.seed)
    worst, fallbacks = 0.0, 0
    for i in range(args.requests):
        user = rng.choice(users)
        shown = rng.sample(items, args.candidates)
        context = {"hour": rng.randrange(24), "device": rng.choice(["ios", "android", "web"])}
        scores = client.predict(user, shown, context=context, request_id=f"check-served-{args.seed}-{i}")
        versions = {s.model_version for s in scores}
        if versions != {args.expect_version}:
            raise AssertionError(f"request {i}: answered by version(s) {sorted(versions)}, expected {args.expect_version}")
        bad = [s for s in scores if not (math.isfinite(s.score) and 0.0 <= s.score <= 1.0)]
        if bad:
            raise AssertionError(f"request {i}: scores not finite or outside [0, 1]: {bad}")
        fallbacks += sum(len(s.fallbacks) for s in scores)
        features = client.get_features(user, shown, context=context)
        data = {"rows": len(shown), "arrays": {name: t.to_numpy() for name, t in features.inputs.items()}}
        local = ort_scores(args.model, data, args.output)
        served = np.asarray([s.score for s in scores], dtype=np.float32)
        diff = float(np.max(np.abs(served - local)))
        if diff > args.tolerance:
            raise AssertionError(
                f"request {i}: served scores differ from {args.model} on GetFeatures' inputs by {diff:.3g} "
                f"(> {args.tolerance}): served {served.tolist()}, local {local.tolist()}"
            )
        worst = max(worst, diff)
    return worst, fallbacks


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--addr", help="augur's public gRPC address, host:port[,host:port]")
    where.add_argument("--discover", help="etcd://host:port/<service>")
    ap.add_argument("--model", required=True, help="the ONNX file that should be answering")
    ap.add_argument("--expect-version", required=True, help="the model version every answer must carry")
    ap.add_argument("--scene", default="ranking")
    ap.add_argument("--output", default="ctr", help="the model's output name (the spec's `output`)")
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--candidates", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tolerance", type=float, default=1e-5, help="largest allowed |served - local| score")
    ap.add_argument("--users", default=str(ROOT / "demo/users.csv"), help="user ids to draw from (user_id column)")
    ap.add_argument("--items", default=str(ROOT / "demo/items.csv"), help="item ids to draw from (item_id column)")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    args = ap.parse_args(argv)
    try:
        if args.discover:
            client = Client.discover(args.discover, scene=args.scene, timeout=args.timeout)
        else:
            client = Client(args.addr, scene=args.scene, timeout=args.timeout)
        with client:
            worst, fallbacks = check(client, args)
    except (AssertionError, AugurError) as e:  # AugurError: RpcError (status code) or DiscoveryError
        print(f"check_served: {e}", file=sys.stderr)
        return 1
    print(
        f"served: version {args.expect_version}, {args.requests} requests x {args.candidates} candidates, "
        f"max |served - local| {worst:.2g}, {fallbacks} fallbacks"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
