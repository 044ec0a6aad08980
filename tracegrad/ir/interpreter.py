"""The reference interpreter: run a Graph with each primitive's NumPy impl."""
from __future__ import annotations

import numpy as np

from .graph import Const, Graph


def evaluate(graph: Graph, args) -> list:
    """Evaluate ``graph`` on NumPy arrays (or tensors); returns a list of arrays.

    Gradient requests (``grad`` equations) are defined by their expansion, a pass:
    ``tracegrad.passes.evaluate`` expands them first."""
    env = {}
    for v, a in zip(graph.inputs, args, strict=False):
        env[v] = np.asarray(getattr(a, "_data", a))

    def read(v):
        return v.value if isinstance(v, Const) else env[v]

    for e in graph.eqns:
        out = e.prim.impl(*[read(v) for v in e.inputs], **e.params)
        if getattr(e.prim, "multiple_results", False):
            for v, o in zip(e.outs, out, strict=True):
                env[v] = np.asarray(o)
        else:
            env[e.out] = np.asarray(out)
    return [read(v) for v in graph.outputs]
