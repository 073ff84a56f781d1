#!/usr/bin/env python3
"""Writes the DeepFM-shaped benchmark model of DESIGN.md, so every benchmark measures one shape.

opset 17; inputs `ids` int64 [N,16] (ids in [0, 2,000,000)) and `dense` float32 [N,4]; output
`ctr` float32 [N]. One embedding E [2M,16] and first-order weights W1 [2M] gathered by `ids`;
linear = sum of the 16 gathered W1 + dense weights; FM = 0.5 * sum over the 16 dims of
((sum of vectors)^2 - sum of squared vectors); deep = concat(flattened embeddings [N,256], dense)
-> 256 -> 128 -> 64 (ReLU) -> 1; ctr = sigmoid(deep + linear + FM). Random weights, fixed seed
(throughput does not depend on what weights learned). ~136 MB: generated, never committed.

--split writes the split twin instead (same seed, same weights): the request-level columns of
features/bench_split.yaml (7 of 16 ids, 3 of 4 dense) as inputs `user_ids` [R,7], `user_dense`
[R,3] and the row -> request index `request_index` [N], computed once per request and gathered
per row (tools/train/split.py). Same scores as the flat model within 1e-6.

  python tools/bench_model/make_deepfm.py --out target/bench-model/bench/1/model.onnx
  python tools/bench_model/make_deepfm.py --split --out target/bench-model/bench_split/1/model.onnx
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from split import export_split_onnx, layout_from_spec  # noqa: E402
from train import DeepFM, export_onnx  # noqa: E402

SPLIT_SPEC = Path(__file__).resolve().parents[2] / "features" / "bench_split.yaml"

VOCAB, FIELDS, DENSE, K, HIDDEN = 2_000_000, 16, 4, 16, [256, 128, 64]


def bench_model(seed: int) -> tuple[DeepFM, dict]:
    """The benchmark DeepFM with its random weights, and its meta (inputs, output)."""
    meta = {
        "scene": "bench",
        "output": "ctr",
        "inputs": [
            {"name": "ids", "dtype": "int64", "width": FIELDS, "vocab": VOCAB},
            {"name": "dense", "dtype": "float32", "width": DENSE},
        ],
    }
    rng = np.random.default_rng(seed)
    model = DeepFM(meta["inputs"], K, HIDDEN, rng)
    model.p["lin0"] = rng.normal(0.0, 0.01, VOCAB).astype(np.float32)
    model.p["w_dense"] = rng.normal(0.0, 0.1, DENSE).astype(np.float32)
    return model, meta


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--split", action="store_true", help=f"write the split twin ({SPLIT_SPEC.name})")
    a = ap.parse_args()
    model, meta = bench_model(a.seed)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    props = {"seed": a.seed, "purpose": "benchmark shape (DESIGN.md)"}
    if a.split:
        export_split_onnx(model, meta, layout_from_spec(SPLIT_SPEC), a.out, {**props, "split": SPLIT_SPEC.name})
    else:
        export_onnx(model, meta, a.out, props)
    print(f"wrote {a.out} ({Path(a.out).stat().st_size / 1e6:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
