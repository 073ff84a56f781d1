"""Building an ONNX graph node by node: what train.py's flat DeepFM export and split.py's split
twin share, so both name their nodes, tensors and initializers one way and write models the same
way (opset, IR version, producer, full check).

Node and tensor names come from one counter in creation order (`n3_Gather` -> `t3_gather`), so
the same calls always give the same bytes: a re-export of the same weights is byte-identical.
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
