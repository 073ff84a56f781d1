#!/usr/bin/env python3
"""Training reference for drift: per model input feature, a summary of its training distribution,
written as reference.json beside model.onnx (train.py does it after training; this CLI does it for
an existing model from the export it was trained on). augur reads it (src/drift/reference.rs) and
compares the served values with it (PSI); `augur models publish` carries it with the version.

  python reference.py --train DIR --out models/ranking/1/reference.json [--quantiles 10 --top 20]
  python reference.py --self-test

Format 1: {"format": 1, "scene", "rows", "features": [
  {"name", "input", "kind": "quantiles", "edges": [...], "shares": [...], "fallback_rate"}   dense
  {"name", "input", "kind": "top_values", "values": [...], "shares": [...], "fallback_rate"} ids
]}
- dense (float32 input): inner edges = the training quantiles 1/q .. (q-1)/q, deduplicated; a value x
  falls in bin searchsorted(edges, x, side="right") = #edges <= x; shares per bin (len(edges) + 1).
- ids (int64 input): the `top` most frequent ids over every column of the feature, most frequent
  first, each its own bin, then one "other" bin (shares: len(values) + 1).
- fallback_rate: training rows served from the feature's default (meta.json "fallbacks") / rows.
Feature columns come from meta.json "features" (name, input, offset, width), as `augur features
export` and samples.py write them; an export without them gets no reference.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

FORMAT = 1


def summarise(meta: dict, arrays: dict, quantiles: int = 10, top: int = 20) -> dict | None:
    """The reference of an export (meta.json + its arrays by input name); None without features."""
    features = meta.get("features") or []
    if not features:
        return None
    dtypes = {s["name"]: s["dtype"] for s in meta["inputs"]}
    rows = int(meta.get("rows", next(iter(arrays.values())).shape[0] if arrays else 0))
    fallbacks = meta.get("fallbacks") or {}
    out = []
    for f in features:
        a = arrays[f["input"]][:, f["offset"]:f["offset"] + f["width"]].reshape(-1)
        entry = {"name": f["name"], "input": f["input"]}
        if a.size == 0:
            continue
        if dtypes[f["input"]] == "float32":
            x = a.astype(np.float64)
            probs = np.arange(1, quantiles) / quantiles
            edges = np.unique(np.quantile(x, probs))
            counts = np.bincount(np.searchsorted(edges, x, side="right"), minlength=edges.size + 1)
            entry.update(kind="quantiles", edges=[float(e) for e in edges])
        else:
            values, counts_all = np.unique(a, return_counts=True)
            order = np.lexsort((values, -counts_all))[:top]  # most frequent first, ties by id
            kept = values[order]
            counts = np.append(counts_all[order], a.size - counts_all[order].sum())
            entry.update(kind="top_values", values=[int(v) for v in kept])
        shares = counts / counts.sum()
        entry["shares"] = [float(s) for s in shares]
        entry["fallback_rate"] = float(fallbacks.get(f["name"], 0)) / rows if rows else 0.0
        out.append(entry)
    return {"format": FORMAT, "scene": meta.get("scene", ""), "rows": rows, "features": out}


def write(path: str | Path, reference: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(reference, indent=1) + "\n")


def self_test() -> int:
    rng = np.random.default_rng(3)
    n = 1000
    meta = {"scene": "t", "rows": n, "inputs": [{"name": "ids", "dtype": "int64", "width": 3, "vocab": 50},
                                                 {"name": "dense", "dtype": "float32", "width": 1}],
            "features": [{"name": "a", "input": "ids", "offset": 0, "width": 1},
                         {"name": "tags", "input": "ids", "offset": 1, "width": 2},
                         {"name": "x", "input": "dense", "offset": 0, "width": 1}],
            "fallbacks": {"x": 100}}
    ids = np.stack([rng.integers(0, 5, n), rng.integers(10, 40, n), np.full(n, 10)], axis=1)
    dense = np.where(np.arange(n) < 100, 0.0, rng.normal(size=n)).astype(np.float32)[:, None]
    r = summarise(meta, {"ids": ids, "dense": dense}, quantiles=10, top=3)
    a, tags, x = r["features"]
    assert a["kind"] == "top_values" and len(a["values"]) == 3 and len(a["shares"]) == 4
    assert abs(sum(a["shares"]) - 1) < 1e-9 and a["shares"][3] > 0.3, a
    assert tags["values"][0] == 10 and abs(tags["shares"][0] - (n + np.sum(ids[:, 1] == 10)) / (2 * n)) < 1e-12
    assert x["kind"] == "quantiles" and all(b > c for b, c in zip(x["edges"][1:], x["edges"]))
    assert len(x["shares"]) == len(x["edges"]) + 1 and abs(x["fallback_rate"] - 0.1) < 1e-12
    # The 10% point mass at 0 makes ties: deduplicated edges still give shares that sum to 1.
    assert abs(sum(x["shares"]) - 1) < 1e-9
    assert summarise(dict(meta, features=[]), {"ids": ids, "dense": dense}) is None
    print("reference.py self-test OK")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", help="export dir (meta.json + features.npz) the model was trained on")
    ap.add_argument("--out", help="reference.json to write (beside the version's model.onnx)")
    ap.add_argument("--quantiles", type=int, default=10, help="bins of a dense feature (deciles: 10)")
    ap.add_argument("--top", type=int, default=20, help="most frequent ids kept per id feature")
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args(argv)
    if a.self_test:
        return self_test()
    if not a.train or not a.out:
        ap.error("--train and --out are required")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train import load_export
    data = load_export(a.train)
    reference = summarise(data["meta"], data["arrays"], a.quantiles, a.top)
    if reference is None:
        print(f"reference.py: {a.train}/meta.json names no features; no reference written", file=sys.stderr)
        return 2
    write(a.out, reference)
    print(f"wrote {a.out}: {len(reference['features'])} features, {reference['rows']} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
