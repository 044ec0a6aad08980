"""Elementwise fusion: chains of elementwise equations become one ``fusion`` node.

A region is a tree of elementwise equations in which every value but the root's
is used exactly once, inside the region. The fused node sits where the root was
and carries the region as a sub-Graph, so the printed graph shows it as a
nested ``def``. (XLA fuses again on its own; the region is what users see.)
"""
from __future__ import annotations

import itertools

from ..ir.graph import Const, Eqn, Graph, Var, like
from ..ir.ops import fusion_p
from .rewrite import is_structured, map_bodies, use_counts

_region_ids = itertools.count()


def fuse_elementwise(graph: Graph) -> Graph:
    """Group single-use elementwise chains into fused regions.

    before:                      after:
        v0 = mul(x, y)               def fused_0(x, y):
        v1 = exp(v0)                     v0 = mul(x, y)
        v2 = add(v1, x)                  v1 = exp(v0)
                                         v2 = add(v1, x)
                                         return (v2,)
                                     v2 = fusion(x, y, graph=fused_0)
    """
    if any(is_structured(e) for e in graph.eqns):  # fuse within cond/scan/while bodies
        graph = graph.replace(eqns=[map_bodies(e, fuse_elementwise) if is_structured(e) else e
                                    for e in graph.eqns])
    uses = use_counts(graph)
    producer = {e.out: e for e in graph.eqns}
    region_of: dict = {}          # out var -> region (list of eqns)
    for e in graph.eqns:
        if e.prim.kind != "elementwise":
            continue
        parts = []
        for v in e.inputs:
            p = producer.get(v)
            if p is not None and p.prim.kind == "elementwise" and uses.get(v, 0) == 1 \
                    and v in region_of:
                parts.append(region_of.pop(v))
        # the input regions are disjoint trees, so any order of them, then e, is
        # topological; growing the largest in place keeps a long chain O(n)
        parts.sort(key=len, reverse=True)
        region = parts[0] if parts else []
        for q in parts[1:]:
            region.extend(q)
        region.append(e)
        region_of[e.out] = region
    fused_at = {}
    absorbed = set()
    for root, region in region_of.items():
        if len(region) < 2:
            continue
        fused_at[root] = region
        absorbed.update(id(x) for x in region)
    if not fused_at:
        return graph
    eqns = []
    for e in graph.eqns:
        if e.out in fused_at:
            eqns.append(_make_fusion(fused_at[e.out], e))
        elif id(e) not in absorbed:
            eqns.append(e)
    return graph.replace(eqns=eqns)


def _make_fusion(region, root) -> Eqn:
    defined = {e.out for e in region}
    outer_inputs: dict = {}  # an ordered set
    for e in region:
        for v in e.inputs:
            if v not in defined and not isinstance(v, Const):
                outer_inputs.setdefault(v, None)
    outer_inputs = list(outer_inputs)
    # the sub-graph gets its own Vars for its inputs
    sub_inputs = [Var(v.shape, v.dtype) for v in outer_inputs]
    rename = dict(zip(outer_inputs, sub_inputs, strict=True))
    sub_eqns = [e.replace(inputs=tuple(rename.get(v, v) for v in e.inputs)) for e in region]
    sub = Graph(sub_inputs, sub_eqns, [root.out], name=f"fused_{next(_region_ids)}")
    return like(Eqn(fusion_p, tuple(outer_inputs), {"graph": sub}, root.out,
                    grad_name=root.grad_name), root)
