#!/usr/bin/env python3
"""Write the split twin of a DeepFM that train.py wrote: same weights, request-level part once.

A feature spec with request-level inputs (docs/features.md, "Request-level inputs") feeds the
model its user and context columns once per request ([R, w] inputs, `level: request`) and a row ->
request index (int64 [N], `request_index`). Each id input's embedding table E [V, k] and
first-order weights w1 [V] become one table T = [E | w1 - 0.5 |e|^2] [V, k+1] (onnx_graph.fm_table),
so per side (request, item) one Gather gives x = the first layer's input (gathered rows flattened,
then the dense columns) and one MatMul by a 0/1 "sum matrix" gives s = [sum of embeddings | sum of
g + dense linear terms] [*, k+1]. Per request, once:
  h_r = x_r @ W0[rows of x_r] + b0                      [R, H0]
  s_r = x_r @ S_r + [0 .. 0, bias + b_out]              [R, k+1]
per row, each gathered by the index (two Gathers) straight into an item-side op:
  h0  = relu(x_i @ W0[rows of x_i] + h_r[idx])          (ORT runs it as one FusedGemm)
  s   = x_i @ S_i + s_r[idx]                            (one Gemm)
  logit = MLP(h0) + sum_{d<k} 0.5 s_d^2 + s_k           (FM + first order + dense linear + biases)
W0 has zero rows for the g columns (9 of 154 on the benchmark model: cheaper than a second gather
or a slice). With the same weights the scores equal the flat graph's up to float rounding
(<= 1e-6). Why this shape and not the packed [R, H0 + 2k + 1] row of the first version:
BENCHMARKS.md, "Flat vs split graph".

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
from onnx_graph import Graph, f32, fm_table  # noqa: E402
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


def split_sides(g: Graph, model: DeepFM, layout: dict) -> tuple[dict, list]:
    """The graph inputs, and per side ("item", "req") what its first layer is made of:
    "x" the parts of its input in column order (fm_table rows gathered and flattened, then dense
    columns), "rows" the [*, w, k+1] gathers, "w0" each x column's W0 row (None: a g column, no
    row) and "sum" each x column's place in s ((d, weight): d < k FM dimension d, k the linear
    part)."""
    from onnx import TensorProto, helper

    p, k = model.p, model.k
    wd = p["w_dense"] if model.d else None
    graph_inputs = []
    side = {key: {"x": [], "rows": [], "w0": [], "sum": []} for key in ("item", "req")}

    def columns_of(s):
        req = layout["inputs"].get(s["name"])
        rc = req["columns"] if req else []
        ic = [c for c in range(s["width"]) if c not in rc]
        return req, rc, ic

    off = 0
    for j, s in enumerate(model.int_specs):
        req, rc, ic = columns_of(s)
        table = g.const(f"w/{s['name']}/fm_table", fm_table(p[f"emb{j}"], p[f"lin{j}"]))
        for key, cols, name, dim in (("item", ic, s["name"], "N"), ("req", rc, req and req["name"], "R")):
            if not cols:
                continue
            graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.INT64, [dim, len(cols)]))
            rows = g.op("Gather", [table, name], axis=0)                                # *,w,k+1
            shape = g.const(f"c/flat_{key}_{s['name']}", np.array([0, len(cols) * (k + 1)], np.int64))
            side[key]["rows"].append(rows)
            side[key]["x"].append(g.op("Reshape", [rows, shape]))
            for c in cols:
                side[key]["w0"] += [off + c * k + d for d in range(k)] + [None]
                side[key]["sum"] += [(d, 1.0) for d in range(k + 1)]
        off += s["width"] * k
    for s in model.float_specs:
        req, rc, ic = columns_of(s)
        for key, cols, name, dim in (("item", ic, s["name"], "N"), ("req", rc, req and req["name"], "R")):
            if not cols:
                continue
            graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [dim, len(cols)]))
            side[key]["x"].append(name)
            side[key]["w0"] += [off + c for c in cols]
            side[key]["sum"] += [(k, float(wd[off - model.F * k + c])) for c in cols]
        off += s["width"]
    graph_inputs.append(helper.make_tensor_value_info(layout["index"], TensorProto.INT64, ["N"]))
    return side, graph_inputs


def side_weights(model: DeepFM, sd: dict) -> tuple[np.ndarray, np.ndarray]:
    """(W0 rows [len(x), H0], sum matrix [len(x), k+1]) of one side from `split_sides`."""
    W0, k = model.p["W0"], model.k
    w = np.stack([W0[r] if r is not None else np.zeros(W0.shape[1], W0.dtype) for r in sd["w0"]])
    S = np.zeros((len(sd["sum"]), k + 1))
    for i, (d, v) in enumerate(sd["sum"]):
        S[i, d] = v
    return f32(w), f32(S)


def logit_tail(model: DeepFM) -> np.ndarray:
    """[0 .. 0, bias + b_out]: the logit's constants, added into column k of s once per request."""
    tail = np.zeros(model.k + 1)
    tail[model.k] = float(model.p["bias"][0]) + float(model.p["b_out"][0])
    return f32(tail)


def logit_to_output(g: Graph, model: DeepFM, h: str, s: str, layer: int, output: str) -> None:
    """MLP layers `layer`.. on `h`, plus the FM + linear term of `s` [N, k+1], through the sigmoid
    to `output` [N]."""
    p = model.p
    for l in range(layer, model.L):
        W = g.const(f"w/mlp/{l}/weight", f32(p[f"W{l}"]))
        b = g.const(f"w/mlp/{l}/bias", f32(p[f"b{l}"]))
        h = g.op("Relu", [g.op("Add", [g.op("MatMul", [h, W]), b])])
    fm_lin = g.fm_linear_term(s, model.k)                                                # N,1
    logit = g.op("Add", [g.op("MatMul", [h, g.const("w/mlp/out/weight", f32(p["W_out"]))]), fm_lin], out="logit")
    g.op("Squeeze", [g.op("Sigmoid", [logit]), g.const("c/axes_1", np.array([1], np.int64))], out=output)


def export_split_onnx(model: DeepFM, meta: dict, layout: dict, path: str, props: dict) -> None:
    from onnx import TensorProto, helper

    if not model.L:
        raise SystemExit("split export needs at least one hidden layer")
    g = Graph()
    op, const = g.op, g.const
    p, index = model.p, layout["index"]
    side, graph_inputs = split_sides(g, model, layout)

    def first_layer(key):
        """(x @ W0 rows, x @ sum matrix) of one side, or None without columns."""
        if not side[key]["x"]:
            return None
        x = g.cat(side[key]["x"])
        w, S = side_weights(model, side[key])
        return op("MatMul", [x, const(f"w/mlp/0/weight_{key}", w)]), op("MatMul", [x, const(f"w/fm_sum_{key}", S)])

    # Once per request, then gathered per row: each gather feeds the C of an item-side Gemm.
    b0, tail = const("w/mlp/0/bias", f32(p["b0"])), const("w/logit_bias", logit_tail(model))
    req = first_layer("req")
    if req:
        h_req = op("Gather", [op("Add", [req[0], b0]), index], axis=0)                  # N,H0
        s_req = op("Gather", [op("Add", [req[1], tail]), index], axis=0)                # N,k+1
    else:
        h_req, s_req = b0, tail
    item = first_layer("item")
    h = op("Relu", [op("Add", [item[0], h_req]) if item else h_req])
    logit_to_output(g, model, h, op("Add", [item[1], s_req]) if item else s_req, 1, meta["output"])
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
    self_test_two_tables()


def self_test_two_tables() -> None:
    """Two id inputs (two fm_tables, request columns in both) and a dense input that is request-level
    as a whole (no item-side part): the sides' first-layer rows and sum matrices stay in x order."""
    import tempfile

    import onnxruntime as ort
    from train import export_onnx

    rng = np.random.default_rng(5)
    inputs = [{"name": "ids", "dtype": "int64", "width": 4, "vocab": 40},
              {"name": "tags", "dtype": "int64", "width": 3, "vocab": 30},
              {"name": "dense", "dtype": "float32", "width": 3},
              {"name": "ctx", "dtype": "float32", "width": 2}]
    meta = {"output": "ctr", "inputs": inputs}
    model = DeepFM(inputs, 4, [8, 5], rng)
    for j, vocab in enumerate((40, 30)):
        model.p[f"lin{j}"] = rng.normal(0, 0.3, vocab).astype(np.float32)
        model.p[f"emb{j}"] *= 30
    model.p["w_dense"] = rng.normal(0, 0.3, 5).astype(np.float32)
    request_columns = {"ids": [1, 3], "tags": [0], "ctx": [0, 1]}
    layout = {"index": "request_index",
              "inputs": {n: {"name": f"user_{n}", "columns": c} for n, c in request_columns.items()}}
    requests = np.repeat(np.arange(3), [5, 1, 7])
    n = len(requests)
    arrays = {s["name"]: (rng.integers(0, s["vocab"], (n, s["width"])) if s["dtype"] == "int64"
                          else rng.normal(0, 1, (n, s["width"])).astype(np.float32)) for s in inputs}
    first = np.unique(requests, return_index=True)[1]
    for name, cols in request_columns.items():
        arrays[name][:, cols] = arrays[name][first][:, cols][requests]
    with tempfile.TemporaryDirectory() as d:
        export_onnx(model, meta, f"{d}/flat.onnx", {})
        export_split_onnx(model, meta, layout, f"{d}/split.onnx", {})
        sessions = [ort.InferenceSession(f"{d}/{m}.onnx", providers=["CPUExecutionProvider"])
                    for m in ("flat", "split")]
        a = sessions[0].run(["ctr"], arrays)[0]
        wanted = {i.name for i in sessions[1].get_inputs()}
        b = sessions[1].run(["ctr"], {k: v for k, v in split_feed(arrays, layout, requests).items() if k in wanted})[0]
    diff = float(np.abs(a - b).max())
    assert "ctx" not in wanted and a.shape == b.shape == (n,), (wanted, a.shape, b.shape)
    assert diff <= 1e-6, f"two tables, flat vs split: max abs diff {diff}"
    assert a.std() > 0.01, "scores too flat to compare"
    print(f"split self-test ok: two id inputs, a request-level dense input, max |flat - split| = {diff:.2e}")


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
