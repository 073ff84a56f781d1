"""Building an ONNX graph node by node: what train.py's flat DeepFM export and split.py's split
twin share, so both name their nodes, tensors and initializers one way and write models the same
way (opset, IR version, producer, full check).

Node and tensor names come from one counter in creation order (`n3_Gather` -> `t3_gather`), so
the same calls always give the same bytes: a re-export of the same weights is byte-identical.

`fm_table` and `Graph.fm_linear_term` are the DeepFM rewrite split.py's graph is built on (and a
flat graph could use): the FM term and the first-order sum come out of one sum over gathered rows
instead of two gathers, two reductions over fields and a square sum (measured in BENCHMARKS.md,
"Flat vs split graph").
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

PRODUCER = "augur tools/train"
OPSET = 17
IR_VERSION = 9  # onnxruntime 1.31 loads IR <= 11; 9 is what opset 17 shipped with.


def f32(a) -> np.ndarray:
    """`a` as a contiguous float32 array (initializers are stored as ORT reads them)."""
    return np.ascontiguousarray(a, dtype=np.float32)


def fm_table(E, w1) -> np.ndarray:
    """[E | w1 - 0.5 |e|^2]: a DeepFM's embedding table [V, k] and first-order weights [V] as one
    [V, k+1] table, so one Gather fetches both.

    FM + first order of a row with fields f is 0.5 |sum e_f|^2 - 0.5 sum |e_f|^2 + sum w1_f
    = 0.5 |s|^2 + sum g_f with g = w1 - 0.5 |e|^2 per id: the square sum needs no pass over the
    gathered vectors at serve time, and summing the gathered rows gives [s | sum g] at once.
    g is computed in float64 (so it is the correctly rounded value), a block of rows at a time: a
    float64 copy of the benchmark model's whole table would be 256 MB more.
    """
    E = f32(E)
    table = np.empty((E.shape[0], E.shape[1] + 1), np.float32)
    table[:, :-1] = E
    w1 = np.asarray(w1, dtype=np.float64)
    for a in range(0, E.shape[0], 1 << 16):
        e = E[a:a + (1 << 16)].astype(np.float64)
        table[a:a + len(e), -1] = w1[a:a + len(e)] - 0.5 * (e * e).sum(axis=1)
    return table


class Graph:
    """Nodes and initializers of one graph under construction."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.inits: list = []
        self.counter = 0

    def const(self, name: str, arr) -> str:
        """An initializer `name` holding `arr`; returns its name."""
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def op(self, kind: str, inputs: list, out: str | None = None, **attrs) -> str:
        """One `kind` node; returns its output (`out`, or a name from the counter)."""
        from onnx import helper

        self.counter += 1
        out = out or f"t{self.counter}_{kind.lower()}"
        self.nodes.append(helper.make_node(kind, inputs, [out], name=f"n{self.counter}_{kind}", **attrs))
        return out

    def op_outputs(self, kind: str, inputs: list, outs: list, **attrs) -> list:
        """One `kind` node with several named outputs (Split); returns them."""
        from onnx import helper

        self.counter += 1
        self.nodes.append(helper.make_node(kind, inputs, outs, name=f"n{self.counter}_{kind}", **attrs))
        return outs

    def add_all(self, xs: list) -> str:
        """x0 + x1 + ..., left to right (the summation order the scores' last bits depend on)."""
        acc = xs[0]
        for x in xs[1:]:
            acc = self.op("Add", [acc, x])
        return acc

    def cat(self, xs: list, axis: int = 1) -> str:
        """Concat along `axis`, or the one tensor itself."""
        return self.op("Concat", xs, axis=axis) if len(xs) > 1 else xs[0]

    def fm_linear_term(self, s: str, k: int) -> str:
        """sum_{d<k} 0.5 s_d^2 + s_k of `s` [*, k+1] (field sums of `fm_table` rows, with every
        other linear term added into column k) as [*, 1]: FM + linear part of the logit."""
        half = np.full(k + 1, 0.5, np.float32)
        half[k] = 0.0
        last = np.zeros(k + 1, np.float32)
        last[k] = 1.0
        scaled = self.op("Add", [self.op("Mul", [s, self.const("c/fm_half", half)]), self.const("c/fm_last", last)])
        return self.op("ReduceSum", [self.op("Mul", [s, scaled]), self.const("c/fm_axes", np.array([1], np.int64))],
                       keepdims=1)

    def save(self, path: str, name: str, inputs: list, outputs: list, doc: str, props: dict) -> None:
        """Checks the model (full shape inference) and writes it to `path`, creating its folder."""
        import onnx
        from onnx import helper

        graph = helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name=PRODUCER, ir_version=IR_VERSION, doc_string=doc)
        helper.set_model_props(m, {k: str(v) for k, v in props.items()})
        onnx.checker.check_model(m, full_check=True)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        onnx.save(m, path)
