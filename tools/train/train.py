#!/usr/bin/env python3
"""Train a small DeepFM CTR model in pure numpy on an `augur features export` directory
and write it as ONNX for the augur service.

Export contract (DIR):
  DIR/meta.json     {"output": "ctr", "label": "label", "rows": N,
                     "inputs": [{"name", "dtype": "int64"|"float32", "width", "vocab" (int64 only)}]}
  DIR/features.npz  one 2-D array [N, width] per input, keyed by input name
                    (int64: ids in [0, vocab), 0 = missing but an ordinary id;
                    float32: dense features, already normalised by the service),
                    plus the label array (key meta["label"], default "label"), float32 [N] of 0/1.

Model: each int64 input has its own embedding table [vocab, k] and first-order weights [vocab];
  logit = bias + sum(first-order) + dense @ w        (linear)
        + 0.5 * sum_k((sum_f e)^2 - sum_f e^2)       (FM over all embedded fields)
        + MLP(concat(flatten(e), dense))             (deep, ReLU hidden layers -> 1)
  output = sigmoid(logit), float32 [N].
Training: BCE + L2 (weight matrices and the embedding/first-order rows touched by a batch),
hand-written Adam (lazy/sparse rows for the tables), manual backprop.

  python train.py --train DIR [--valid DIR] --out model.onnx [--report r.json] [--scores s.npy]
                  [--init served.onnx --init-version N] [--lineage lineage.json] [--shuffle-labels]
                  [--ipw [--ipw-clip 10]]
  python train.py --train DIR --gradcheck          # finite-difference check of the backprop only

--init warm-starts from a model this script wrote (same inputs, --embed-dim and --hidden): its
weights are the starting point instead of random ones. --lineage writes what `augur models
publish --lineage` records in the version's marker: the run's parameters, the sample window the
training rows came from (meta.json "window", written by samples.py) and the warm-start version.
Beside --out it writes reference.json (--reference PATH elsewhere, '' none): per feature of
meta.json "features", its training distribution (reference.py), which augur compares the served
values with (drift).
--shuffle-labels permutes the labels before training: a deliberately useless model, for testing
the publish gate. --ipw weighs each training row by the inverse of its propensity (the probability
the caller showed the item with, reported as the impression event's value and kept by samples.py),
clipped at --ipw-clip and normalised to mean 1: the served model chose what was shown, and
without the correction the next model learns mostly about what the last one liked.
"""
from __future__ import annotations

import os

# One core: keep BLAS single-threaded (must happen before numpy is imported).
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metrics import auc, logloss  # noqa: E402
from onnx_graph import PRODUCER, Graph, f32  # noqa: E402

SCORE_CHUNK = 16384


class ExportError(ValueError):
    pass


# --------------------------------------------------------------------------- data


def read_meta(d: Path) -> dict:
    try:
        meta = json.loads((d / "meta.json").read_text())
    except FileNotFoundError:
        raise ExportError(f"{d}: no meta.json")
    inputs = meta.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ExportError(f"{d}/meta.json: 'inputs' must be a non-empty list")
    if not isinstance(meta.get("output"), str) or not meta["output"]:
        raise ExportError(f"{d}/meta.json: 'output' must be a non-empty string")
    names = set()
    for s in inputs:
        name, dt, w = s.get("name"), s.get("dtype"), s.get("width")
        if not isinstance(name, str) or not name or name in names:
            raise ExportError(f"{d}/meta.json: bad or duplicate input name {name!r}")
        names.add(name)
        if dt not in ("int64", "float32"):
            raise ExportError(f"{d}/meta.json: input {name!r}: dtype {dt!r} is not int64/float32")
        if not isinstance(w, int) or w <= 0:
            raise ExportError(f"{d}/meta.json: input {name!r}: width {w!r} must be a positive int")
        if dt == "int64" and (not isinstance(s.get("vocab"), int) or s["vocab"] <= 0):
            raise ExportError(f"{d}/meta.json: int64 input {name!r} needs a positive int 'vocab'")
    if meta["output"] in names:
        raise ExportError(f"{d}/meta.json: output name {meta['output']!r} clashes with an input")
    return meta


def load_export(d: str | Path) -> dict:
    """Load and validate an export dir. Returns meta, per-input arrays, ids list, dense, label."""
    d = Path(d)
    meta = read_meta(d)
    label_key = meta.get("label", "label")
    try:
        npz = np.load(d / "features.npz", allow_pickle=False)
    except FileNotFoundError:
        raise ExportError(f"{d}: no features.npz")
    with npz:
        keys = set(npz.files)
        missing = [s["name"] for s in meta["inputs"] if s["name"] not in keys]
        if label_key not in keys:
            missing.append(label_key)
        if missing:
            raise ExportError(f"{d}/features.npz: missing arrays {missing}")
        arrays = {}
        for s in meta["inputs"]:
            a = npz[s["name"]]
            if a.ndim != 2 or a.shape[1] != s["width"]:
                raise ExportError(f"{d}: input {s['name']!r} has shape {a.shape}, "
                                  f"meta says [N, {s['width']}]")
            if s["dtype"] == "int64":
                if a.dtype.kind not in "iu":
                    raise ExportError(f"{d}: input {s['name']!r} is {a.dtype}, expected int64")
                a = a.astype(np.int64, copy=False)
                if a.size and (a.min() < 0 or a.max() >= s["vocab"]):
                    raise ExportError(f"{d}: input {s['name']!r} has ids in [{a.min()}, {a.max()}]"
                                      f", outside [0, {s['vocab']})")
            else:
                if a.dtype.kind != "f":
                    raise ExportError(f"{d}: input {s['name']!r} is {a.dtype}, expected float32")
                a = a.astype(np.float32, copy=False)
                if not np.isfinite(a).all():
                    raise ExportError(f"{d}: input {s['name']!r} has non-finite values")
            arrays[s["name"]] = np.ascontiguousarray(a)
        y = npz[label_key]
    if y.ndim != 1:
        raise ExportError(f"{d}: label has shape {y.shape}, expected [N]")
    y = y.astype(np.float32)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ExportError(f"{d}: label must be 0/1")
    n = y.shape[0]
    propensity = None
    if meta.get("propensity"):
        with np.load(d / "features.npz", allow_pickle=False) as again:
            if meta["propensity"] in again.files:
                propensity = again[meta["propensity"]].astype(np.float32)
        if propensity is None or propensity.shape != (n,) or not ((propensity > 0) & (propensity <= 1)).all():
            raise ExportError(f"{d}: propensity must be [N] values in (0, 1]")
    for name, a in arrays.items():
        if a.shape[0] != n:
            raise ExportError(f"{d}: input {name!r} has {a.shape[0]} rows, label has {n}")
    if "rows" in meta and meta["rows"] != n:
        raise ExportError(f"{d}: meta.json says rows={meta['rows']}, arrays have {n}")
    ints = [s for s in meta["inputs"] if s["dtype"] == "int64"]
    floats = [s for s in meta["inputs"] if s["dtype"] == "float32"]
    dense = (np.concatenate([arrays[s["name"]] for s in floats], axis=1) if floats
             else np.zeros((n, 0), np.float32))
    return {"dir": str(d), "meta": meta, "arrays": arrays, "rows": n, "label": y, "propensity": propensity,
            "ids": [arrays[s["name"]] for s in ints], "dense": np.ascontiguousarray(dense)}


def same_schema(a: dict, b: dict) -> None:
    def key(m):
        return ([(s["name"], s["dtype"], s["width"], s.get("vocab")) for s in m["inputs"]],
                m["output"])
    if key(a) != key(b):
        raise ExportError("train and valid exports have different inputs/output in meta.json")


# --------------------------------------------------------------------------- model


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free


class DeepFM:
    def __init__(self, inputs, k, hidden, rng, dtype=np.float32, base_rate=0.5, emb_std=0.01):
        self.int_specs = [s for s in inputs if s["dtype"] == "int64"]
        self.float_specs = [s for s in inputs if s["dtype"] == "float32"]
        self.F = sum(s["width"] for s in self.int_specs)
        self.d = sum(s["width"] for s in self.float_specs)
        self.k, self.hidden, self.dtype = k, list(hidden), dtype
        self.L = len(self.hidden)
        base_rate = min(max(base_rate, 1e-4), 1 - 1e-4)
        p = {"bias": np.array([np.log(base_rate / (1 - base_rate))])}
        if self.d:
            p["w_dense"] = np.zeros(self.d)
        for j, s in enumerate(self.int_specs):
            p[f"emb{j}"] = rng.normal(0.0, emb_std, (s["vocab"], k))
            p[f"lin{j}"] = np.zeros(s["vocab"])
        dims = [self.F * k + self.d] + self.hidden
        for l in range(self.L):  # He init for ReLU layers
            p[f"W{l}"] = rng.normal(0.0, np.sqrt(2.0 / dims[l]), (dims[l], dims[l + 1]))
            p[f"b{l}"] = np.zeros(dims[l + 1])
        p["W_out"] = rng.normal(0.0, np.sqrt(2.0 / (dims[-1] + 1)), (dims[-1], 1))  # Glorot
        p["b_out"] = np.zeros(1)
        self.p = {n: np.ascontiguousarray(v, dtype=dtype) for n, v in p.items()}
        self.sparse = {f"{t}{j}" for j in range(len(self.int_specs)) for t in ("emb", "lin")}
        self.decayed = {"W_out"} | {f"W{l}" for l in range(self.L)} | ({"w_dense"} if self.d else set())

    # forward / backward ------------------------------------------------------
    def forward(self, ids, dense, cache=False):
        p, B = self.p, dense.shape[0]
        logit = np.full(B, p["bias"][0], dtype=self.dtype)
        parts, e, s = [], None, None
        if self.F:
            e = np.concatenate([p[f"emb{j}"][x] for j, x in enumerate(ids)], axis=1)  # B,F,k
            for j, x in enumerate(ids):
                logit += p[f"lin{j}"][x].sum(axis=1)
            s = e.sum(axis=1)  # B,k
            logit += 0.5 * (s * s - (e * e).sum(axis=1)).sum(axis=1)
            parts.append(e.reshape(B, -1))
        if self.d:
            logit += dense @ p["w_dense"]
            parts.append(dense)
        h = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
        hs = [h]
        for l in range(self.L):
            h = np.maximum(h @ p[f"W{l}"] + p[f"b{l}"], 0.0)
            hs.append(h)
        logit += h @ p["W_out"][:, 0] + p["b_out"][0]
        if not cache:
            return logit
        return logit, {"ids": ids, "dense": dense, "e": e, "s": s, "hs": hs}

    def backward(self, c, g, l2):
        """g = dLoss/dlogit [B]. Returns (dense grads {name: array},
        sparse grads {name: (unique rows, grad rows)}), including L2."""
        p, B, k = self.p, g.shape[0], self.k
        gr = {"bias": np.array([g.sum()], dtype=self.dtype)}
        if self.d:
            gr["w_dense"] = c["dense"].T @ g
        hs = c["hs"]
        dout = g[:, None]
        gr["W_out"] = hs[-1].T @ dout
        gr["b_out"] = dout.sum(axis=0)
        dh = dout @ p["W_out"].T
        for l in reversed(range(self.L)):
            da = dh * (hs[l + 1] > 0)
            gr[f"W{l}"] = hs[l].T @ da
            gr[f"b{l}"] = da.sum(axis=0)
            if l or self.F:
                dh = da @ p[f"W{l}"].T
        sp = {}
        if self.F:
            e, s = c["e"], c["s"]
            de = dh[:, :self.F * k].reshape(B, self.F, k) + g[:, None, None] * (s[:, None, :] - e)
            off = 0
            for j, x in enumerate(c["ids"]):
                w = x.shape[1]
                rows, inv = np.unique(x.ravel(), return_inverse=True)
                inv = inv.ravel()
                ge = np.zeros((rows.size, k), dtype=self.dtype)
                np.add.at(ge, inv, de[:, off:off + w].reshape(-1, k))
                gl = np.bincount(inv, weights=np.repeat(g, w), minlength=rows.size)
                E, W1 = p[f"emb{j}"], p[f"lin{j}"]
                if l2:
                    ge += l2 * E[rows]
                    gl += l2 * W1[rows]
                sp[f"emb{j}"] = (rows, ge)
                sp[f"lin{j}"] = (rows, gl.astype(self.dtype))
                off += w
        if l2:
            for n in self.decayed:
                gr[n] = gr[n] + l2 * p[n]
        return gr, sp

    def loss(self, ids, dense, y, l2):
        """Objective minimised per batch (used by the gradient check)."""
        z = self.forward(ids, dense)
        bce = np.mean(np.logaddexp(0.0, z) - y * z)
        reg = sum(float((self.p[n] ** 2).sum()) for n in self.decayed)
        for j, x in enumerate(ids):
            rows = np.unique(x)
            reg += float((self.p[f"emb{j}"][rows] ** 2).sum() + (self.p[f"lin{j}"][rows] ** 2).sum())
        return float(bce + 0.5 * l2 * reg)

    def predict(self, ids, dense, chunk=SCORE_CHUNK):
        n = dense.shape[0]
        out = np.empty(n, dtype=np.float32)
        for a in range(0, n, chunk):
            sl = slice(a, a + chunk)
            out[sl] = sigmoid(self.forward([x[sl] for x in ids], dense[sl]))
        return out


class Adam:
    """Adam; rows of the embedding/first-order tables are updated lazily (only rows seen in
    the batch move, with the global step's bias correction), everything else densely."""

    def __init__(self, params, lr, b1=0.9, b2=0.999, eps=1e-8):
        self.p, self.lr, self.b1, self.b2, self.eps, self.t = params, lr, b1, b2, eps, 0
        self.m = {n: np.zeros_like(v) for n, v in params.items()}
        self.v = {n: np.zeros_like(v) for n, v in params.items()}

    def step(self, dense_grads, sparse_grads):
        self.t += 1
        b1, b2 = self.b1, self.b2
        lr_t = self.lr * np.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        for n, g in dense_grads.items():
            m, v = self.m[n], self.v[n]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            self.p[n] -= lr_t * m / (np.sqrt(v) + self.eps)
        for n, (rows, g) in sparse_grads.items():
            m = b1 * self.m[n][rows] + (1 - b1) * g
            v = b2 * self.v[n][rows] + (1 - b2) * g * g
            self.m[n][rows], self.v[n][rows] = m, v
            self.p[n][rows] -= lr_t * m / (np.sqrt(v) + self.eps)


def gradcheck(inputs, k, hidden, seed, batch=12, l2=1e-2, per_param=8, verbose=True) -> float:
    """Central-difference check of DeepFM.backward in float64. Returns the max relative error."""
    rng = np.random.default_rng(seed)
    m = DeepFM(inputs, k, hidden, rng, dtype=np.float64, emb_std=0.3)
    for n in m.p:  # make every parameter non-trivial
        if not n.startswith("emb"):
            m.p[n] += rng.normal(0.0, 0.1, m.p[n].shape)
    # Few distinct ids so rows repeat within and across rows (exercises np.add.at).
    ids = [rng.integers(0, min(s["vocab"], 5), (batch, s["width"])) for s in m.int_specs]
    dense = rng.normal(0.0, 1.0, (batch, m.d))
    y = rng.integers(0, 2, batch).astype(np.float64)
    z, c = m.forward(ids, dense, cache=True)
    gd, gs = m.backward(c, (sigmoid(z) - y) / batch, l2)
    worst, h = 0.0, 1e-6
    for n, P in m.p.items():
        if n in m.sparse:
            rows, grows = gs[n]
            r = rng.integers(0, rows.size, per_param)
            cols = rng.integers(0, P.shape[1], per_param) if P.ndim == 2 else None
            idx = [(rows[a], cols[i]) if P.ndim == 2 else (rows[a],) for i, a in enumerate(r)]
            ana = [grows[a, cols[i]] if P.ndim == 2 else grows[a] for i, a in enumerate(r)]
        else:
            flat = rng.integers(0, P.size, per_param)
            idx = [np.unravel_index(f, P.shape) for f in flat]
            ana = [gd[n][i] for i in idx]
        err = 0.0
        for i, a in zip(idx, ana):
            old = P[i]
            P[i] = old + h
            lp = m.loss(ids, dense, y, l2)
            P[i] = old - h
            lm = m.loss(ids, dense, y, l2)
            P[i] = old
            num = (lp - lm) / (2 * h)
            err = max(err, abs(num - a) / max(1e-7, abs(num) + abs(a)))
        worst = max(worst, err)
        if verbose:
            print(f"gradcheck {n:8s} {str(P.shape):14s} max rel err {err:.2e}", file=sys.stderr)
    return worst


def warm_start(model: DeepFM, path: str) -> None:
    """Copies the weights of an ONNX model export_onnx wrote into `model` (shapes must match)."""
    import onnx
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}
    names = {"bias": "w/bias", "W_out": "w/mlp/out/weight", "b_out": "w/mlp/out/bias"}
    if model.d:
        names["w_dense"] = "w/dense/linear"
    for j, s in enumerate(model.int_specs):
        names[f"emb{j}"] = f"w/{s['name']}/embedding"
        names[f"lin{j}"] = f"w/{s['name']}/first_order"
    for l in range(model.L):
        names[f"W{l}"], names[f"b{l}"] = f"w/mlp/{l}/weight", f"w/mlp/{l}/bias"
    for param, init in names.items():
        if init not in inits:
            raise ExportError(f"--init {path}: no initializer {init!r} (not a model this script wrote?)")
        value = inits[init].reshape(-1) if param == "w_dense" else inits[init]
        if value.shape != model.p[param].shape:
            raise ExportError(f"--init {path}: {init} has shape {value.shape}, this run needs "
                              f"{model.p[param].shape} (same inputs, --embed-dim and --hidden?)")
        model.p[param][...] = value


# --------------------------------------------------------------------------- ONNX


def export_onnx(model: DeepFM, meta: dict, path: str, props: dict) -> None:
    from onnx import TensorProto, helper

    g = Graph()
    op, const = g.op, g.const
    p = model.p
    axis1 = const("c/axes_1", np.array([1], np.int64))
    terms, deep_in = [], []
    if model.F:
        embs, lins = [], []
        for j, s in enumerate(model.int_specs):
            E = const(f"w/{s['name']}/embedding", f32(p[f"emb{j}"]))
            W1 = const(f"w/{s['name']}/first_order", f32(p[f"lin{j}"]))
            embs.append(op("Gather", [E, s["name"]], axis=0))                       # N,w,k
            lin = op("Gather", [W1, s["name"]], axis=0)                             # N,w
            lins.append(op("ReduceSum", [lin, axis1], keepdims=1))                  # N,1
        e = g.cat(embs)                                                             # N,F,k
        terms.append(g.add_all(lins))
        s_ = op("ReduceSum", [e, axis1], keepdims=0)                                # N,k
        sq_sum = op("Mul", [s_, s_])
        sum_sq = op("ReduceSum", [op("Mul", [e, e]), axis1], keepdims=0)            # N,k
        fm = op("ReduceSum", [op("Sub", [sq_sum, sum_sq]), axis1], keepdims=1)      # N,1
        terms.append(op("Mul", [fm, const("c/half", np.array([0.5], np.float32))]))
        shape = const("c/flat_shape", np.array([0, model.F * model.k], np.int64))  # 0 = keep N
        deep_in.append(op("Reshape", [e, shape]))                                   # N,F*k
    if model.d:
        dense = g.cat([s["name"] for s in model.float_specs])                       # N,d
        wd = const("w/dense/linear", f32(p["w_dense"][:, None]))
        terms.append(op("MatMul", [dense, wd]))                                     # N,1
        deep_in.append(dense)
    h = g.cat(deep_in)
    for l in range(model.L):
        W = const(f"w/mlp/{l}/weight", f32(p[f"W{l}"]))
        b = const(f"w/mlp/{l}/bias", f32(p[f"b{l}"]))
        h = op("Relu", [op("Add", [op("MatMul", [h, W]), b])])
    W = const("w/mlp/out/weight", f32(p["W_out"]))
    b = const("w/mlp/out/bias", f32(p["b_out"]))
    terms.append(op("Add", [op("MatMul", [h, W]), b]))                             # N,1
    logit = op("Add", [g.add_all(terms), const("w/bias", f32(p["bias"]))], out="logit")
    prob = op("Sigmoid", [logit])
    op("Squeeze", [prob, axis1], out=meta["output"])                               # N

    elem = {"int64": TensorProto.INT64, "float32": TensorProto.FLOAT}
    g.save(path, "augur_deepfm",
           [helper.make_tensor_value_info(s["name"], elem[s["dtype"]], ["N", s["width"]]) for s in meta["inputs"]],
           [helper.make_tensor_value_info(meta["output"], TensorProto.FLOAT, ["N"])],
           "DeepFM CTR model trained by tools/train/train.py", props)


def ort_scores(path: str, data: dict, output: str) -> np.ndarray:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    n = data["rows"]
    out = np.empty(n, dtype=np.float32)
    for a in range(0, n, SCORE_CHUNK):
        feed = {k: v[a:a + SCORE_CHUNK] for k, v in data["arrays"].items()}
        (r,) = sess.run([output], feed)
        if r.dtype != np.float32 or r.shape != (min(SCORE_CHUNK, n - a),):
            raise AssertionError(f"ORT output {r.dtype} {r.shape} is not float32 [N]")
        out[a:a + SCORE_CHUNK] = r
    return out


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True, help="export dir with features.npz + meta.json")
    ap.add_argument("--valid", help="validation export dir (same inputs)")
    ap.add_argument("--out", help="ONNX model to write")
    ap.add_argument("--report", help="write metrics JSON here")
    ap.add_argument("--scores", help="write ORT scores of --valid (float32 [N]) as .npy")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--embed-dim", type=int, default=8)
    ap.add_argument("--hidden", default="64,32", help="comma-separated MLP sizes; '' = none")
    ap.add_argument("--l2", type=float, default=1e-6)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--init", help="warm start: an ONNX model this script wrote (e.g. the served version's)")
    ap.add_argument("--init-version", type=int, help="the version --init is, for the lineage")
    ap.add_argument("--lineage", help="write the run's lineage JSON here (for `augur models publish --lineage`)")
    ap.add_argument("--reference", help="training reference for drift (default: reference.json beside --out); "
                    "'' = none")
    ap.add_argument("--shuffle-labels", action="store_true",
                    help="permute the training labels: a deliberately degraded model (gate tests)")
    ap.add_argument("--ipw", action="store_true",
                    help="weigh each row by 1/propensity (samples.py's propensity array): off-policy correction")
    ap.add_argument("--ipw-clip", type=float, default=10.0,
                    help="largest weight before normalising (propensities below 1/clip count as 1/clip)")
    ap.add_argument("--gradcheck", action="store_true",
                    help="finite-difference check of the gradients first (exits if no --out)")
    a = ap.parse_args(argv)
    try:
        a.hidden_sizes = [int(x) for x in a.hidden.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--hidden: expected comma-separated ints, got {a.hidden!r}")
    if any(x <= 0 for x in a.hidden_sizes):
        ap.error("--hidden sizes must be positive")
    if not a.out and not a.gradcheck:
        ap.error("--out is required (unless only --gradcheck)")
    if a.scores and not a.valid:
        ap.error("--scores needs --valid")
    if a.init_version is not None and not a.init:
        ap.error("--init-version needs --init")
    if a.epochs < 0 or a.batch <= 0 or a.embed_dim <= 0 or a.lr <= 0 or a.l2 < 0:
        ap.error("--epochs >= 0, --batch/--embed-dim/--lr > 0, --l2 >= 0")
    return a


def nan_to_none(x):
    return None if x is None or not np.isfinite(x) else float(x)


def main(argv=None) -> int:
    t0 = time.perf_counter()
    a = parse_args(argv)
    log = lambda *m: print(*m, file=sys.stderr, flush=True)  # noqa: E731
    try:
        tr = load_export(a.train)
        va = load_export(a.valid) if a.valid else None
        if va is not None:
            same_schema(tr["meta"], va["meta"])
    except ExportError as e:
        log(f"train.py: {e}")
        return 2
    meta = tr["meta"]

    if a.gradcheck:
        worst = gradcheck(meta["inputs"], a.embed_dim, a.hidden_sizes, a.seed)
        ok = worst < 1e-5
        log(f"gradcheck: max relative error {worst:.2e} -> {'OK' if ok else 'FAILED'}")
        if not ok:
            return 1
        if not a.out:
            return 0

    rng = np.random.default_rng(a.seed)
    model = DeepFM(meta["inputs"], a.embed_dim, a.hidden_sizes, rng,
                   base_rate=float(tr["label"].mean()) if tr["rows"] else 0.5)
    if a.init:
        try:
            warm_start(model, a.init)
        except ExportError as e:
            log(f"train.py: {e}")
            return 2
    opt = Adam(model.p, a.lr)
    n, ids, dense, y = tr["rows"], tr["ids"], tr["dense"], tr["label"]
    if a.shuffle_labels:
        y = np.random.default_rng(a.seed + 1).permutation(y)
    # Inverse-propensity weights: the serving model chose what was shown, so its favourites are
    # over-represented; each row counts 1/p (clipped, then scaled to mean 1 so the learning rate
    # keeps its meaning). Without propensities (or without --ipw) every row counts 1.
    w = np.ones(n, np.float32)
    if a.ipw and tr["propensity"] is not None:
        w = 1.0 / np.maximum(tr["propensity"], 1.0 / a.ipw_clip)
        w = (w / w.mean()).astype(np.float32)
        log(f"ipw: weights {w.min():.2f}..{w.max():.2f} (clip {a.ipw_clip}), "
            f"{int((tr['propensity'] < 1).sum())} of {n} rows shown with p < 1")
    log(f"train {n} rows from {a.train}; inputs "
        + ", ".join(f"{s['name']}:{s['dtype']}[{s['width']}]" for s in meta["inputs"])
        + f"; k={a.embed_dim} hidden={a.hidden_sizes}")
    for ep in range(a.epochs):
        te = time.perf_counter()
        perm = rng.permutation(n)
        tot = 0.0
        for st in range(0, n, a.batch):
            b = perm[st:st + a.batch]
            yb, wb = y[b], w[b]
            z, c = model.forward([x[b] for x in ids], dense[b], cache=True)
            tot += float(np.sum(wb * (np.logaddexp(0.0, z) - yb * z)))
            gd, gs = model.backward(c, wb * (sigmoid(z) - yb) / b.size, a.l2)
            opt.step(gd, gs)
        msg = f"epoch {ep + 1}/{a.epochs}: train bce {tot / max(n, 1):.4f}"
        if va is not None:
            pv = model.predict(va["ids"], va["dense"])
            msg += f", valid auc {auc(va['label'], pv):.4f} logloss {logloss(va['label'], pv):.4f}"
        log(msg + f" ({time.perf_counter() - te:.1f}s)")

    export_onnx(model, meta, a.out, {
        "producer": PRODUCER, "seed": a.seed, "epochs": a.epochs, "train_rows": n,
        "scene": meta.get("scene", ""), "embed_dim": a.embed_dim,
        "hidden": ",".join(map(str, a.hidden_sizes)), "lr": a.lr, "batch": a.batch, "l2": a.l2,
    })

    # The training distribution of every feature, for drift (src/drift): beside the model, so
    # `augur models publish` carries it with the version.
    ref_path = a.reference if a.reference is not None else str(Path(a.out).with_name("reference.json"))
    if ref_path:
        from reference import summarise, write as write_reference
        reference = summarise(meta, tr["arrays"])
        if reference is None:
            log("train.py: meta.json names no features; no training reference written")
        else:
            write_reference(ref_path, reference)
            log(f"training reference: {ref_path} ({len(reference['features'])} features)")

    # Score with the exported graph, so the numbers are what the service would serve.
    res = {}
    for tag, d in (("train", tr), ("valid", va)):
        if d is None:
            res[tag] = (0, None, None, None)
            continue
        s = ort_scores(a.out, d, meta["output"])
        diff = float(np.max(np.abs(s - model.predict(d["ids"], d["dense"])))) if d["rows"] else 0.0
        assert diff <= 1e-4, f"numpy and ONNX Runtime disagree on {tag}: max abs diff {diff:.3g}"
        res[tag] = (d["rows"], auc(d["label"], s), logloss(d["label"], s), s)
        log(f"{tag}: numpy vs onnxruntime max abs diff {diff:.2e}")

    if a.scores:
        Path(a.scores).parent.mkdir(parents=True, exist_ok=True)
        np.save(a.scores, res["valid"][3].astype(np.float32))
    secs = time.perf_counter() - t0
    report = {
        "train_rows": res["train"][0], "valid_rows": res["valid"][0],
        "train_auc": nan_to_none(res["train"][1]), "valid_auc": nan_to_none(res["valid"][1]),
        "train_logloss": nan_to_none(res["train"][2]),
        "valid_logloss": nan_to_none(res["valid"][2]),
        "epochs": a.epochs, "seed": a.seed, "seconds": round(secs, 3),
    }
    if a.report:
        Path(a.report).parent.mkdir(parents=True, exist_ok=True)
        Path(a.report).write_text(json.dumps(report, indent=2) + "\n")
    if a.lineage:
        window = meta.get("window")
        lineage = {
            "run": {"producer": PRODUCER, "train": str(a.train), "epochs": a.epochs, "batch": a.batch,
                    "lr": a.lr, "embed_dim": a.embed_dim, "hidden": a.hidden_sizes, "l2": a.l2,
                    "seed": a.seed, "shuffle_labels": a.shuffle_labels, "init": a.init,
                    "ipw": a.ipw, "ipw_clip": a.ipw_clip,
                    "train_rows": n, "train_auc": report["train_auc"], "seconds": report["seconds"]},
            "samples": window,
            "warm_start_version": a.init_version,
        }
        Path(a.lineage).parent.mkdir(parents=True, exist_ok=True)
        Path(a.lineage).write_text(json.dumps(lineage, indent=2) + "\n")

    def fmt(x):
        return "n/a" if x is None else f"{x:.4f}"
    print(f"wrote {a.out}: train_auc={fmt(report['train_auc'])} "
          f"valid_auc={fmt(report['valid_auc'])} train_logloss={fmt(report['train_logloss'])} "
          f"valid_logloss={fmt(report['valid_logloss'])} rows={n}/{report['valid_rows']} "
          f"epochs={a.epochs} seed={a.seed} {secs:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
