#!/usr/bin/env python3
"""Write the split twin of a DeepFM that train.py wrote: same weights, request-level part once.

A feature spec with request-level inputs (docs/features.md, "Request-level inputs") feeds the
model its user and context columns once per request ([R, w] inputs, `level: request`) and a row ->
request index (int64 [N], `request_index`). The split graph computes per request:
  the request-level embeddings E_r = Gather(E, user_ids)         [R, w_r, k]
  their FM partial sums  s_r = sum E_r,  q_r = sum E_r^2        [R, k] each
  their first-order sum + the request dense columns' linear term [R, 1]
  the first dense layer's request slice h_r = x_r @ W0[rows of x_r]  [R, H0]
packs them into one [R, H0 + 2k + 1] tensor, gathers it per row by the index (one Gather), and
adds the item-level part: s = s_i + s_r[idx], FM = 0.5 * sum((s)^2 - (q_i + q_r[idx])),
h0 = relu(x_i @ W0[rows of x_i] + h_r[idx] + b0), then the rest of the MLP as in the flat graph.
With the same weights its scores equal the flat graph's up to float summation order (<= 1e-6).

The layout (which stored columns each request-level input holds) comes from the split spec:
features in declaration order, each `length` columns wide (1 without one), a request-level
input's columns counted in the input it is `part_of`.

  python split.py --model flat.onnx --spec features/ranking_split.yaml --out split.onnx
  python split.py --self-test          # random DeepFM: flat vs split scores through ORT
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from onnx_graph import Graph, f32  # noqa: E402
from train import DeepFM, warm_start  # noqa: E402


def layout_from_spec(path: str | Path) -> dict:
    """{"index": name, "inputs": {flat input: {"name": request input, "columns": [...]}}}."""
    import yaml

    spec = yaml.safe_load(Path(path).read_text())
    inputs = {i["name"]: i for i in spec["inputs"]}
    home = {n: i.get("part_of", n) if i.get("level") == "request" else n for n, i in inputs.items()}
    next_col = {n: 0 for n in inputs}
    split = {}
    for f in spec["features"]:
        name = f["input"]
        width = int(f.get("length") or 1)
        at = home[name]
        cols = list(range(next_col[at], next_col[at] + width))
        next_col[at] += width
        if at != name:
            split.setdefault(at, {"name": name, "columns": []})["columns"].extend(cols)
    for req in (i for i in inputs.values() if i.get("level") == "request"):
        if "part_of" not in req:
            raise SystemExit(f"{path}: request-level input {req['name']!r} has no part_of (not supported here)")
    return {"index": spec.get("request_index"), "inputs": split}


def export_split_onnx(model: DeepFM, meta: dict, layout: dict, path: str, props: dict) -> None:
    from onnx import TensorProto, helper

    g = Graph()
    op, const, add_all, cat = g.op, g.const, g.add_all, g.cat
    p, k = model.p, model.k
    index = layout["index"]
    axis1 = const("c/axes_1", np.array([1], np.int64))
    graph_inputs = []
    elem = {"int64": TensorProto.INT64, "float32": TensorProto.FLOAT}

    def columns_of(s):
        req = layout["inputs"].get(s["name"])
        rc = req["columns"] if req else []
        ic = [c for c in range(s["width"]) if c not in rc]
        return req, rc, ic

    # Per side: embeddings [*, w, k], first-order sums, first-layer rows (of W0) in x order.
    side = {"req": {"embs": [], "lins": [], "dense": [], "rows": [], "dense_rows": []},
            "item": {"embs": [], "lins": [], "dense": [], "rows": [], "dense_rows": []}}
    off = 0
    for j, s in enumerate(model.int_specs):
        req, rc, ic = columns_of(s)
        E = const(f"w/{s['name']}/embedding", f32(p[f"emb{j}"]))
        W1 = const(f"w/{s['name']}/first_order", f32(p[f"lin{j}"]))
        for key, cols, name, dim in (("item", ic, s["name"], "N"), ("req", rc, req and req["name"], "R")):
            if not cols:
                continue
            graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.INT64, [dim, len(cols)]))
            side[key]["embs"].append(op("Gather", [E, name], axis=0))
            side[key]["lins"].append(op("ReduceSum", [op("Gather", [W1, name], axis=0), axis1], keepdims=1))
            side[key]["rows"] += [off + c * k + d for c in cols for d in range(k)]
        off += s["width"] * k
    off = model.F * k
    wd_all = p["w_dense"] if model.d else None
    for s in model.float_specs:
        req, rc, ic = columns_of(s)
        for key, cols, name, dim in (("item", ic, s["name"], "N"), ("req", rc, req and req["name"], "R")):
            if not cols:
                continue
            graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [dim, len(cols)]))
            side[key]["dense"].append(name)
            side[key]["dense_rows"] += [off + c for c in cols]
        off += s["width"]
    graph_inputs.append(helper.make_tensor_value_info(index, TensorProto.INT64, ["N"]))

    W0 = p["W0"] if model.L else None
    H0 = W0.shape[1] if model.L else 0

    def side_terms(key):
        """(embedding sum, square sum, linear [*,1], first-layer slice [*,H0]) of one side."""
        sd = side[key]
        out = {}
        lin_parts = list(sd["lins"])
        x_parts = []
        if sd["embs"]:
            e = cat(sd["embs"])                                                     # *,w,k
            out["s"] = op("ReduceSum", [e, axis1], keepdims=0)                      # *,k
            out["q"] = op("ReduceSum", [op("Mul", [e, e]), axis1], keepdims=0)      # *,k
            width = len(sd["rows"]) // k
            x_parts.append(op("Reshape", [e, const(f"c/flat_{key}", np.array([0, width * k], np.int64))]))
        if sd["dense"]:
            dense = cat(sd["dense"])
            cols = [r - model.F * k for r in sd["dense_rows"]]
            lin_parts.append(op("MatMul", [dense, const(f"w/dense/linear_{key}", f32(wd_all[cols][:, None]))]))
            x_parts.append(dense)
        out["lin"] = add_all(lin_parts) if lin_parts else None
        if model.L and x_parts:
            rows = sd["rows"] + sd["dense_rows"]
            out["h"] = op("MatMul", [cat(x_parts), const(f"w/mlp/0/weight_{key}", f32(W0[rows]))])
        return out

    item, req = side_terms("item"), side_terms("req")
    # Pack the request side, gather it per row once, and split it again.
    packed, sizes = [], []
    for name, size in (("h", H0), ("s", k), ("q", k), ("lin", 1)):
        if req.get(name):
            packed.append(req[name])
            sizes.append((name, size))
    gathered = {}
    if packed:
        packed_rows = op("Gather", [cat(packed), index], axis=0)                    # N, H0+2k+1
        if len(sizes) == 1:
            gathered[sizes[0][0]] = packed_rows
        else:
            outs = g.op_outputs("Split", [packed_rows, const("c/req_split", np.array([n for _, n in sizes], np.int64))],
                                [f"t_req_{name}" for name, _ in sizes], axis=1)
            gathered = dict(zip([n for n, _ in sizes], outs))

    def both(name):
        xs = [x for x in (item.get(name), gathered.get(name)) if x]
        return add_all(xs) if xs else None

    terms = []
    lin = both("lin")
    if lin:
        terms.append(lin)
    s_, q_ = both("s"), both("q")
    if s_:
        fm = op("ReduceSum", [op("Sub", [op("Mul", [s_, s_]), q_]), axis1], keepdims=1)
        terms.append(op("Mul", [fm, const("c/half", np.array([0.5], np.float32))]))
    if model.L:
        h = op("Relu", [op("Add", [both("h"), const("w/mlp/0/bias", f32(p["b0"]))])])
        for l in range(1, model.L):
            W = const(f"w/mlp/{l}/weight", f32(p[f"W{l}"]))
            b = const(f"w/mlp/{l}/bias", f32(p[f"b{l}"]))
            h = op("Relu", [op("Add", [op("MatMul", [h, W]), b])])
    else:
        raise SystemExit("split export needs at least one hidden layer")
    W = const("w/mlp/out/weight", f32(p["W_out"]))
    b = const("w/mlp/out/bias", f32(p["b_out"]))
    terms.append(op("Add", [op("MatMul", [h, W]), b]))
    logit = op("Add", [add_all(terms), const("w/bias", f32(p["bias"]))], out="logit")
    op("Squeeze", [op("Sigmoid", [logit]), axis1], out=meta["output"])

    g.save(path, "augur_deepfm_split", graph_inputs,
           [helper.make_tensor_value_info(meta["output"], TensorProto.FLOAT, ["N"])],
           "DeepFM CTR model, request-level part computed once per request (tools/train/split.py)", props)


def load_flat(path: str) -> tuple[DeepFM, dict]:
    """The DeepFM a flat model train.py wrote holds (inputs, k and hidden read from the graph)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    names = set(inits)
    inputs = []
    for i in m.graph.input:
        t = i.type.tensor_type
        dtype = {7: "int64", 1: "float32"}[t.elem_type]
        spec = {"name": i.name, "dtype": dtype, "width": t.shape.dim[1].dim_value}
        if dtype == "int64":
            spec["vocab"] = inits[f"w/{i.name}/embedding"].shape[0]
        inputs.append(spec)
    k = next(inits[f"w/{s['name']}/embedding"].shape[1] for s in inputs if s["dtype"] == "int64")
    hidden, l = [], 0
    while f"w/mlp/{l}/weight" in names:
        hidden.append(inits[f"w/mlp/{l}/weight"].shape[1])
        l += 1
    model = DeepFM(inputs, k, hidden, np.random.default_rng(0))
    warm_start(model, path)
    output = m.graph.output[0].name
    return model, {"inputs": inputs, "output": output}


def split_feed(arrays: dict, layout: dict, requests: np.ndarray) -> dict:
    """Flat per-row arrays + each row's request (rows of one request equal in the request-level
    columns) -> the split model's feed."""
    first = np.unique(requests, return_index=True)[1]
    index = np.searchsorted(np.unique(requests), requests).astype(np.int64)
    feed = {}
    for name, a in arrays.items():
        req = layout["inputs"].get(name)
        rc = req["columns"] if req else []
        ic = [c for c in range(a.shape[1]) if c not in rc]
        feed[name] = np.ascontiguousarray(a[:, ic])
        if req:
            feed[req["name"]] = np.ascontiguousarray(a[first][:, rc])
    feed[layout["index"]] = index
    return feed


def self_test() -> None:
    import tempfile

    import onnxruntime as ort
    from train import export_onnx

    rng = np.random.default_rng(3)
    inputs = [{"name": "ids", "dtype": "int64", "width": 6, "vocab": 50},
              {"name": "dense", "dtype": "float32", "width": 3}]
    meta = {"output": "ctr", "inputs": inputs}
    model = DeepFM(inputs, 4, [8, 5], rng)
    model.p["lin0"] = rng.normal(0, 0.3, 50).astype(np.float32)
    model.p["w_dense"] = rng.normal(0, 0.3, 3).astype(np.float32)
    model.p["emb0"] *= 30
    layout = {"index": "request_index",
              "inputs": {"ids": {"name": "user_ids", "columns": [0, 2, 5]},
                         "dense": {"name": "user_dense", "columns": [1]}}}
    requests = np.repeat(np.arange(4), [1, 7, 3, 9])
    n = len(requests)
    ids = rng.integers(0, 50, (n, 6))
    dense = rng.normal(0, 1, (n, 3)).astype(np.float32)
    per_req_ids = rng.integers(0, 50, (4, 3))
    per_req_dense = rng.normal(0, 1, (4, 1)).astype(np.float32)
    ids[:, [0, 2, 5]] = per_req_ids[requests]
    dense[:, [1]] = per_req_dense[requests]
    with tempfile.TemporaryDirectory() as d:
        flat, split = f"{d}/flat.onnx", f"{d}/split.onnx"
        export_onnx(model, meta, flat, {})
        export_split_onnx(model, meta, layout, split, {})
        reloaded, _ = load_flat(flat)
        export_split_onnx(reloaded, meta, layout, f"{d}/split2.onnx", {})
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        run = lambda path, feed: ort.InferenceSession(path, so, providers=["CPUExecutionProvider"]).run(["ctr"], feed)[0]  # noqa: E731
        a = run(flat, {"ids": ids, "dense": dense})
        feed = split_feed({"ids": ids, "dense": dense}, layout, requests)
        b = run(split, feed)
        c = run(f"{d}/split2.onnx", feed)
        ref = 1 / (1 + np.exp(-model.forward([ids], dense)))
    diff = float(np.abs(a - b).max())
    assert a.shape == b.shape == (n,), (a.shape, b.shape)
    assert diff <= 1e-6, f"flat vs split: max abs diff {diff}"
    assert np.array_equal(b, c), "split of the reloaded flat model differs"
    assert float(np.abs(a - ref).max()) <= 1e-5
    assert a.std() > 0.01, "scores too flat to compare"
    print(f"split self-test ok: {n} rows, 4 requests, max |flat - split| = {diff:.2e}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="flat model written by train.py")
    ap.add_argument("--spec", help="the split feature spec (request-level inputs)")
    ap.add_argument("--out", help="split model to write")
    ap.add_argument("--self-test", action="store_true", help="run the self-test and exit")
    a = ap.parse_args()
    if a.self_test:
        self_test()
        return 0
    if not (a.model and a.spec and a.out):
        ap.error("--model, --spec and --out are required")
    model, meta = load_flat(a.model)
    layout = layout_from_spec(a.spec)
    export_split_onnx(model, meta, layout, a.out, {"split_of": a.model, "spec": a.spec})
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
