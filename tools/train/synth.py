#!/usr/bin/env python3
"""Write a synthetic `augur features export` (train/ and valid/) with a learnable signal,
for testing train.py without the service:

  python synth.py --out /tmp/synth [--rows 20000 --valid-rows 5000 --width 6 --vocab 5000 --dense 2]

True logit = per-id effects + one pairwise id interaction + a linear and a non-linear dense term.
"""
import argparse
import json
from pathlib import Path

import numpy as np

from metrics import auc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--valid-rows", type=int, default=5000)
    ap.add_argument("--width", type=int, default=6)
    ap.add_argument("--vocab", type=int, default=5000)
    ap.add_argument("--dense", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--id-effect", type=float, default=1.0, help="std of the per-id logit effect")
    ap.add_argument("--zipf", type=float, default=1.0, help="popularity exponent of the ids")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    # Zipf-like popularity so ids recur; per-id effect and a latent vector for interactions.
    pop = 1.0 / np.arange(1, a.vocab + 1) ** a.zipf
    pop /= pop.sum()
    effect = rng.normal(0.0, a.id_effect, a.vocab)
    latent = rng.normal(0.0, 0.5, (a.vocab, 4))
    wd = rng.normal(0.0, 1.0, a.dense)

    for split, n in (("train", a.rows), ("valid", a.valid_rows)):
        ids = rng.choice(a.vocab, size=(n, a.width), p=pop).astype(np.int64)
        ids[rng.random((n, a.width)) < 0.05] = 0  # some "missing"
        dense = rng.normal(0.0, 1.0, (n, a.dense)).astype(np.float32)
        z = effect[ids].sum(1) / np.sqrt(a.width) + (latent[ids[:, 0]] * latent[ids[:, 1]]).sum(1)
        if a.dense:
            z += dense @ wd - 0.5 * dense[:, 0] ** 2
        z -= 0.5
        y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.float32)
        d = Path(a.out) / split
        d.mkdir(parents=True, exist_ok=True)
        arrays = {"ids": ids, "label": y}
        inputs = [{"name": "ids", "dtype": "int64", "width": a.width, "vocab": a.vocab}]
        if a.dense:
            arrays["dense"] = dense
            inputs.append({"name": "dense", "dtype": "float32", "width": a.dense})
        np.savez(d / "features.npz", **arrays)
        (d / "meta.json").write_text(json.dumps({"scene": "synthetic", "rows": n, "output": "ctr",
                                                 "label": "label", "inputs": inputs}, indent=1))
        print(f"{d}: {n} rows, positive rate {y.mean():.3f}, AUC of the true logit {auc(y, z):.4f}")


if __name__ == "__main__":
    main()
