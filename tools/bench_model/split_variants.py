#!/usr/bin/env python3
"""Measurement only: the split-graph variants that lost to tools/train/split.py's graph on the
benchmark model (BENCHMARKS.md, "Flat vs split graph"), written so the comparison can be re-run
with tools/bench_model/ort_flat_vs_split.py. Same seed and weights as make_deepfm.py; every
variant scores as the flat model within 1e-6.

  packed   the request part as one [R, H0 + k+1] row: one Gather, then a Split copy
  reduce   the item-side sums by ReduceSum over the gathered rows (+ a dense MatMul) instead of
           the one MatMul by the sum matrix
  pad32    the item-side first-layer input padded to K = 160 (a multiple of 32, Pad op) with
           zero weight rows
  fold     the sums as 17 more output columns of the item-side first-layer Gemm (so the Relu is
           a node of its own, layer 1 gets 17 zero rows, and a Slice takes the sums)
  flat_fm  the flat graph with split.py's fm_table rewrite and nothing request-level: how much of
           the split graph's gain is the rewrite alone

  .venv/bin/python tools/bench_model/split_variants.py --out-dir target/bench-model/variants
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_deepfm import SPLIT_SPEC, bench_model  # noqa: E402
from onnx_graph import Graph, f32  # noqa: E402
from split import layout_from_spec, logit_tail, logit_to_output, side_weights, split_sides  # noqa: E402

VARIANTS = ["packed", "reduce", "pad32", "fold", "flat_fm"]


def export_variant(model, meta: dict, layout: dict, path: str, variant: str) -> None:
    from onnx import TensorProto, helper

    g = Graph()
    op, const = g.op, g.const
    p, k, index = model.p, model.k, layout["index"]
    H0 = p["W0"].shape[1]
    side, graph_inputs = split_sides(g, model, layout)
    it, rq = side["item"], side["req"]
    b0, tail = const("w/mlp/0/bias", f32(p["b0"])), const("w/logit_bias", logit_tail(model))
    x_i = g.cat(it["x"])
    w_i, S_i = side_weights(model, it)
    if variant == "pad32":
        extra = -len(it["w0"]) % 32
        x_i = op("Pad", [x_i, const("c/pad", np.array([0, 0, 0, extra], np.int64))])
        w_i, S_i = (f32(np.concatenate([m, np.zeros((extra, m.shape[1]))])) for m in (w_i, S_i))
    if rq["x"]:
        x_r = g.cat(rq["x"])
        w_r, S_r = side_weights(model, rq)
        h_r = op("Add", [op("MatMul", [x_r, const("w/mlp/0/weight_req", w_r)]), b0])
        s_r = op("Add", [op("MatMul", [x_r, const("w/fm_sum_req", S_r)]), tail])
    else:
        h_r = s_r = None
    layer = 1
    if variant == "fold":
        both = op("Gather", [op("Concat", [h_r, s_r], axis=1), index], axis=0)
        y = op("Add", [op("MatMul", [x_i, const("w/mlp/0/weight_item", f32(np.concatenate([w_i, S_i], 1)))]), both])
        W1 = f32(np.concatenate([p["W1"], np.zeros((k + 1, p["W1"].shape[1]))]))
        h = op("Relu", [op("Add", [op("MatMul", [op("Relu", [y]), const("w/mlp/1/weight", W1)]),
                                   const("w/mlp/1/bias", f32(p["b1"]))])])
        ends = [const(n, np.array([v], np.int64))
                for n, v in (("c/s_from", H0), ("c/s_to", H0 + k + 1), ("c/s_axis", 1))]
        s, layer = op("Slice", [y] + ends), 2
    else:
        if h_r is None:
            h_g, s_g = b0, tail
        elif variant == "packed":
            rows = op("Gather", [op("Concat", [h_r, s_r], axis=1), index], axis=0)
            h_g, s_g = g.op_outputs("Split", [rows, const("c/split", np.array([H0, k + 1], np.int64))],
                                    ["t_req_h", "t_req_s"], axis=1)
        else:
            h_g, s_g = op("Gather", [h_r, index], axis=0), op("Gather", [s_r, index], axis=0)
        h = op("Relu", [op("Add", [op("MatMul", [x_i, const("w/mlp/0/weight_item", w_i)]), h_g])])
        if variant == "reduce":
            axis1 = const("c/axes_1_reduce", np.array([1], np.int64))
            s_i = g.add_all([op("ReduceSum", [r, axis1], keepdims=0) for r in it["rows"]])
            dense = [x for x in it["x"] if x in {s["name"] for s in model.float_specs}]
            if dense:
                n_dense = sum(1 for r in it["w0"] if r is not None and r >= model.F * k)  # x ends with them
                S_d = S_i[len(it["w0"]) - n_dense:]
                s_i = op("Add", [s_i, op("MatMul", [g.cat(dense), const("w/fm_sum_dense", S_d)])])
        else:
            s_i = op("MatMul", [x_i, const("w/fm_sum_item", S_i)])
        s = op("Add", [s_i, s_g])
    logit_to_output(g, model, h, s, layer, meta["output"])
    g.save(path, f"augur_deepfm_split_{variant}", graph_inputs,
           [helper.make_tensor_value_info(meta["output"], TensorProto.FLOAT, ["N"])], variant, {})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    a = ap.parse_args()
    model, meta = bench_model(1234)
    for v in a.variants.split(","):
        layout = layout_from_spec(SPLIT_SPEC) if v != "flat_fm" else {"index": "request_index", "inputs": {}}
        out = Path(a.out_dir) / f"{v}.onnx"
        export_variant(model, meta, layout, str(out), v)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
