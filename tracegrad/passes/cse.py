"""Common-subexpression elimination."""
from __future__ import annotations

from ..ir.graph import Const, Graph
from .rewrite import is_structured, map_bodies, substitute


def _value_key(v):
    if isinstance(v, Const):
        return ("const", v.dtype.name, v.value.shape, v.value.tobytes())
    return v


def params_key(params: dict):
    return tuple((k, repr(v)) for k, v in sorted(params.items()))


def eliminate_common_subexpressions(graph: Graph) -> Graph:
    """Reuse the first of several identical equations (same primitive, inputs, params).

    before:                      after:
        v0 = exp(x)                  v0 = exp(x)
        v1 = exp(x)                  v2 = add(v0, v0)
        v2 = add(v0, v1)
    """
    seen: dict = {}
    mapping: dict = {}
    eqns = []
    for e in graph.eqns:
        inputs = tuple(mapping.get(v, v) for v in e.inputs)
        e = e.replace(inputs=inputs) if inputs != e.inputs else e
        if e.prim.name == "random":
            eqns.append(e)
            continue
        if is_structured(e):  # within each body; two loops are never merged
            eqns.append(map_bodies(e, eliminate_common_subexpressions))
            continue
        key = (e.prim.name, tuple(_value_key(v) for v in inputs), params_key(e.params))
        prev = seen.get(key)
        if prev is not None:
            mapping[e.out] = prev
            continue
        seen[key] = e.out
        eqns.append(e)
    return substitute(graph.replace(eqns=eqns), mapping) if mapping else graph.replace(eqns=eqns)
