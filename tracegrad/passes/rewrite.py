"""Small helpers shared by the passes."""
from __future__ import annotations

from ..ir.graph import Graph


def substitute(graph: Graph, mapping: dict) -> Graph:
    """Replace uses of Vars by other Vars (following chains) in eqns and outputs."""
    def find(v):
        while v in mapping:
            v = mapping[v]
        return v

    eqns = []
    for e in graph.eqns:
        inputs = tuple(find(v) for v in e.inputs)
        eqns.append(e.replace(inputs=inputs) if inputs != e.inputs else e)
    return graph.replace(eqns=eqns, outputs=[find(v) for v in graph.outputs])


def map_bodies(e, fn):
    """``e`` with ``fn`` applied to each sub-Graph in its params (the bodies of cond, scan
    and while_loop; a pass recurses into them this way)."""
    params = {k: fn(v) if isinstance(v, Graph) else v for k, v in e.params.items()}
    if all(params[k] is e.params[k] for k in params):
        return e
    return e.replace(params=params)


def is_structured(e) -> bool:
    return getattr(e.prim, "multiple_results", False)


def use_counts(graph: Graph) -> dict:
    counts: dict = {}
    for e in graph.eqns:
        for v in e.inputs:
            counts[v] = counts.get(v, 0) + 1
    for v in graph.outputs:
        counts[v] = counts.get(v, 0) + 1
    return counts
