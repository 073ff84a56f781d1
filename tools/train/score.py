#!/usr/bin/env python3
"""Offline AUC of ONNX models on one `augur features export` directory, scored with onnxruntime
(the model as served, through train.py's loader and scorer), so `scripts/loop.sh` can compare
the serving model with the one just trained on the same held-out events.

  python score.py --export DIR --model old=models/ranking/1/model.onnx --model new=new.onnx [--json]
                  [--oracle DIR/impressions.csv]

Prints one line per model: `NAME auc 0.6543 rows N`; --json prints {"NAME": auc, ...} instead.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from metrics import auc  # noqa: E402
from train import load_export, ort_scores  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", required=True, help="features export directory (meta.json, features.npz)")
    ap.add_argument("--model", action="append", required=True, metavar="NAME=PATH", help="repeatable")
    ap.add_argument("--oracle", metavar="IMPRESSIONS_CSV",
                    help="the impressions.csv the export was made from, with its `p` column (the true "
                         "click probability each label was drawn from): its AUC is the ceiling, printed as `oracle`")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    data = load_export(args.export)
    output = data["meta"].get("output", "ctr")
    results = {}
    if args.oracle:
        import csv
        with open(args.oracle, newline="") as f:
            p = np.array([float(r["p"]) for r in csv.DictReader(f)], np.float64)
        if p.shape[0] != data["rows"]:
            ap.error(f"--oracle has {p.shape[0]} rows, the export {data['rows']}")
        results["oracle"] = auc(data["label"], p)
    for spec in args.model:
        name, sep, path = spec.partition("=")
        if not sep:
            ap.error(f"--model {spec!r} is not NAME=PATH")
        results[name] = auc(data["label"], ort_scores(path, data, output))
    if args.json:
        print(json.dumps(results))
    else:
        for name, value in results.items():
            print(f"{name} auc {value:.4f} rows {data['rows']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
