#!/usr/bin/env python3
"""Inference only: benchmark-shaped models in one onnxruntime process, 1 thread, items per
CPU-second (process_time). A round cycles through the models in short turns (`--slice`) until
each had `--seconds`, so that a change in the machine's load hits them alike and ratios within a
round hold on a busy machine. Each model gets the feed its inputs ask for, from one batch of `--requests`
requests of `--candidates` rows whose features/bench_split.yaml request-level columns (7 of 16
ids, 3 of 4 dense) are equal within a request; scores are compared with the first model's.

Run from the repo root after scripts/bench_split.sh (or make_deepfm.py) generated the models:

  .venv/bin/python tools/bench_model/ort_flat_vs_split.py
  .venv/bin/python tools/bench_model/ort_flat_vs_split.py flat=a.onnx split=b.onnx other=c.onnx --rounds 5
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

REQUEST_IDS, REQUEST_DENSE = [0, 1, 2, 3, 4, 14, 15], [0, 2, 3]
DEFAULT = ["flat=target/bench-model/bench/1/model.onnx", "split=target/bench-model/bench_split/1/model.onnx"]


def arrays(requests: int, candidates: int, seed: int = 1) -> dict:
    """Flat and split inputs of one batch, by input name."""
    rng = np.random.default_rng(seed)
    n = requests * candidates
    req = np.repeat(np.arange(requests), candidates)
    ids = rng.integers(0, 2_000_000, (n, 16))
    dense = rng.normal(size=(n, 4)).astype(np.float32)
    user_ids = rng.integers(0, 2_000_000, (requests, len(REQUEST_IDS)))
    user_dense = rng.normal(size=(requests, len(REQUEST_DENSE))).astype(np.float32)
    ids[:, REQUEST_IDS] = user_ids[req]
    dense[:, REQUEST_DENSE] = user_dense[req]
    item_ids = [c for c in range(16) if c not in REQUEST_IDS]
    item_dense = [c for c in range(4) if c not in REQUEST_DENSE]
    return {"ids": ids, "dense": dense, "user_ids": user_ids, "user_dense": user_dense,
            "request_index": req.astype(np.int64),
            "split": {"ids": ids[:, item_ids].copy(), "dense": dense[:, item_dense].copy()}}


def feed_for(session, a: dict) -> dict:
    names = [i.name for i in session.get_inputs()]
    split = "user_ids" in names
    return {n: (a["split"][n] if split and n in a["split"] else a[n]) for n in names}


def main() -> int:
    import onnxruntime as ort

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", default=DEFAULT, help="NAME=PATH; ratios are to the first")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0, help="CPU-seconds per model per round")
    ap.add_argument("--slice", type=float, default=0.2,
                    help="CPU-seconds per model per turn: a round cycles through the models in turns this long")
    ap.add_argument("--requests", type=int, default=3)
    ap.add_argument("--candidates", type=int, default=100)
    a = ap.parse_args()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    batch = arrays(a.requests, a.candidates)
    n = a.requests * a.candidates
    runs = []
    for spec in a.models:
        name, path = spec.split("=", 1)
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        runs.append((name, s, feed_for(s, batch)))
    first = runs[0][1].run(None, runs[0][2])[0]
    for name, s, f in runs[1:]:
        print(f"{name}: max |score - {runs[0][0]}| = {np.abs(s.run(None, f)[0] - first).max():.2e}")
    print(f"{a.requests} requests x {a.candidates} candidates; load average {open('/proc/loadavg').read().strip()}")
    got = {name: [] for name, _, _ in runs}
    for rnd in range(a.rounds):
        cpu, items = {m: 0.0 for m in got}, {m: 0 for m in got}
        while min(cpu.values()) < a.seconds:
            for name, s, f in runs:
                t = time.process_time()
                while time.process_time() - t < a.slice:
                    s.run(None, f)
                    items[name] += n
                cpu[name] += time.process_time() - t
        for m in got:
            got[m].append(items[m] / cpu[m])
        base = got[runs[0][0]][-1]
        print(f"round {rnd}: " + "  ".join(f"{m} {v[-1]:,.0f} ({v[-1] / base:.2f})" for m, v in got.items()))
    for name, v in got.items():
        r = [x / y for x, y in zip(v, got[runs[0][0]])]
        print(f"{name:>12}: median {np.median(v):,.0f} items/CPU-s; x {runs[0][0]}: median {np.median(r):.2f}, "
              f"range {min(r):.2f}-{max(r):.2f}")
    print(f"load average {open('/proc/loadavg').read().strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
