"""Algebraic simplification and constant folding: a table of local rewrites.

Each rule sees one equation (and what produced its inputs) and returns the Var
that can replace its output, or None. Rules never change a value's shape or
dtype (the replacement must already have the output's shape and dtype).
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Const, Eqn, Graph, like
from .rewrite import is_structured, map_bodies, substitute


def _scalar_value(v, producers):
    """The single value every element of ``v`` has, if known at compile time."""
    if isinstance(v, Const):
        flat = v.value.reshape(-1)
        if flat.size and np.all(flat == flat[0]):
            return flat[0].item()
        return None
    e = producers.get(v)
    if e is None:
        return None
    if e.prim.name == "full":
        return e.params["value"]
    if e.prim.name in ("broadcast_to", "reshape"):
        return _scalar_value(e.inputs[0], producers)
    return None


def _same_type(a, b):
    return a.shape == b.shape and a.dtype is b.dtype


def _is(v, producers, value):
    s = _scalar_value(v, producers)
    return s is not None and s == value


def _identity_rule(e, producers):
    """x*1, 1*x, x+0, 0+x, x-0, x/1, x**1 -> x"""
    name = e.prim.name
    if name in ("mul", "add"):
        unit = 1 if name == "mul" else 0
        x, y = e.inputs
        if _is(y, producers, unit) and _same_type(x, e.out):
            return x
        if _is(x, producers, unit) and _same_type(y, e.out):
            return y
    if name in ("sub", "div"):
        unit = 0 if name == "sub" else 1
        x, y = e.inputs
        if _is(y, producers, unit) and _same_type(x, e.out):
            return x
    if name == "pow_scalar" and e.params["exponent"] == 1 and _same_type(e.inputs[0], e.out):
        return e.inputs[0]
    return None


def _noop_shape_rule(e, producers):
    """reshape/broadcast_to to the same shape, cast to the same dtype, identity permute,
    copy (values are immutable in the graph) -> x"""
    name = e.prim.name
    x = e.inputs[0] if e.inputs else None
    if name in ("reshape", "broadcast_to", "cast", "copy") and _same_type(x, e.out):
        return x
    if name == "permute" and e.params["perm"] == tuple(range(len(e.params["perm"]))):
        return x
    return None


def _double_transpose_rule(e, producers):
    """permute(permute(x, p), q) -> x when q undoes p"""
    if e.prim.name != "permute":
        return None
    inner = producers.get(e.inputs[0])
    if inner is None or inner.prim.name != "permute":
        return None
    p, q = inner.params["perm"], e.params["perm"]
    if tuple(p[i] for i in q) == tuple(range(len(q))):
        return inner.inputs[0]
    return None


def _reshape_of_reshape_rule(e, producers):
    """reshape(reshape(x)) -> reshape(x); back to x's own shape -> x"""
    if e.prim.name != "reshape":
        return None
    inner = producers.get(e.inputs[0])
    if inner is None or inner.prim.name != "reshape":
        return None
    x = inner.inputs[0]
    if _same_type(x, e.out):
        return x
    return like(Eqn(inner.prim, (x,), e.params, e.out, grad_name=e.grad_name), e)


RULES = [_identity_rule, _noop_shape_rule, _double_transpose_rule, _reshape_of_reshape_rule]

_FOLD_LIMIT = 1 << 16  # fold constants up to this many elements


def _fold(e):
    """All inputs constant: compute it now (small results only)."""
    if e.prim.name in ("random", "fusion") or not all(isinstance(v, Const) for v in e.inputs):
        return None
    if not e.inputs or int(np.prod(e.out.shape)) > _FOLD_LIMIT:
        return None
    value = np.asarray(e.prim.impl(*[v.value for v in e.inputs], **e.params))
    if value.shape != e.out.shape or value.dtype != e.out.dtype.np:
        return None
    return Const(value)


def simplify(graph: Graph) -> Graph:
    """Apply the rewrite table until nothing changes; fold constant subexpressions.

    before:                      after:
        v0 = mul(x, 1.0)             v1 = sin(x)
        v1 = sin(v0)
    """
    producers: dict = {}
    mapping: dict = {}
    eqns = []

    def find(v):
        while v in mapping:
            v = mapping[v]
        return v

    for e in graph.eqns:
        inputs = tuple(find(v) for v in e.inputs)
        if inputs != e.inputs:
            e = e.replace(inputs=inputs)
        if is_structured(e):  # cond/scan/while_loop: simplify within the bodies
            eqns.append(map_bodies(e, simplify))
            continue
        folded = _fold(e)
        if folded is not None:
            mapping[e.out] = folded
            continue
        replaced = False
        for rule in RULES:
            r = rule(e, producers)
            if r is None:
                continue
            if isinstance(r, Eqn):
                e = r
                continue
            mapping[e.out] = r
            replaced = True
            break
        if not replaced:
            producers[e.out] = e
            eqns.append(e)
    return substitute(graph.replace(eqns=eqns), mapping) if mapping else graph.replace(eqns=eqns)
