"""``tracegrad viz``: one self-contained HTML file that draws compiled graphs.

Python does the graph work (networkx: topological generations per container,
grouping, stage diffs) and emits JSON; ``viewer.js`` (inline, no network)
turns rows and orders into coordinates and draws SVG, so expanding a fused
region or a group only re-places boxes.

NOTE: [Report data]. Node keys are strings: ``str(Var.id)`` for inputs and
equations, ``F<id>`` for a fused region (id of its output Var; the region's
equations keep their own keys), ``G<n>`` for a group. A stage holds
``kids`` (container key -> child keys, "" is the top), ``pos`` (key ->
[layer, order] inside its container), ``edges`` (leaf-level pairs) and the
diff against the previous stage. Node attributes live once in ``nodes``,
shared by all stages, since passes keep surviving Vars.

Big graphs (more than ``group_above`` top-level nodes) are grouped, collapsed
by default: inputs in chunks, equations in runs of consecutive equations from
one source line, runs in spans of lines when there are many. Runs are
intervals of the topological order, so the grouped graph stays acyclic.
"""
from __future__ import annotations

import html
import json
from importlib import resources

import networkx as nx

from ..ir.graph import Const, Graph, type_str
from ..ir.inspect import KIND_COLORS, eqn_kind, eqn_phase, input_kind, stage_diff

GROUP_ABOVE = 400
RUN_CAP = 120
TOP_CAP = 150


class View:
    """One graph through its stages: ``stages`` is [(name, Graph, seconds)]."""

    def __init__(self, title: str, stages, sources=None, info: str = ""):
        self.title = title
        self.stages = list(stages)
        self.sources = sources
        self.info = info


def _label(e) -> str:
    if e.prim.name == "fusion":
        return f"{e.params['graph'].name} ({len(e.params['graph'].eqns)})"
    return e.prim.name


def _params_text(e) -> str:
    parts = []
    for k, v in e.params.items():
        if isinstance(v, Graph):
            continue
        parts.append(f"{k}={getattr(v, 'name', v) if hasattr(v, 'np') else v!r}")
    for v in e.inputs:
        if isinstance(v, Const):
            parts.append(f"const {v.value.item()!r}" if v.value.ndim == 0
                         else f"const {type_str(v)}")
    s = ", ".join(parts)
    return s if len(s) <= 120 else s[:117] + "..."


class _Builder:
    def __init__(self, group_above: int):
        self.nodes: dict = {}
        self.group_above = group_above
        self._groups = 0

    def node(self, key, label, kind, var, src="", phase="forward", op="", params="",
             grad_name=None):
        if key not in self.nodes:
            self.nodes[key] = [label, kind, type_str(var), src, phase, op, params,
                               grad_name or ""]

    def stage(self, graph: Graph, sources) -> dict:
        kids: dict = {"": []}
        parent: dict = {}
        groups: dict = {}
        edges = []
        srcs = sources or [None] * len(graph.inputs)
        top_items = []          # (key, group hint) in topological order
        for v, name, s in zip(graph.inputs, graph.input_names, srcs, strict=False):
            key = str(v.id)
            self.node(key, name or f"in{v.id}", input_kind(name, s), v, op="input")
            top_items.append((key, None))
        for e in graph.eqns:
            kind = eqn_kind(graph, e)
            phase = eqn_phase(graph, e)
            if e.prim.name == "fusion":
                sub = e.params["graph"]
                fkey = f"F{e.out.id}"
                self.node(fkey, _label(e), "fusion", e.out, e.src or "", phase, "fusion",
                          "", e.grad_name)
                kids[fkey] = []
                outer = dict(zip(sub.inputs, e.inputs, strict=False))
                for x in sub.eqns:
                    k = str(x.out.id)
                    self.node(k, x.prim.name, eqn_kind(graph, x), x.out, x.src or "",
                              eqn_phase(graph, x), x.prim.name, _params_text(x), x.grad_name)
                    kids[fkey].append(k)
                    parent[k] = fkey
                    for v in x.inputs:
                        if not isinstance(v, Const):
                            edges.append((str(outer.get(v, v).id), k))
                top_items.append((fkey, e.src or "?"))
            else:
                key = str(e.out.id)
                self.node(key, e.prim.name, kind, e.out, e.src or "", phase, e.prim.name,
                          _params_text(e), e.grad_name)
                for v in e.inputs:
                    if not isinstance(v, Const):
                        edges.append((str(v.id), key))
                top_items.append((key, e.src or "?"))
        if len(top_items) > self.group_above:
            self._group(top_items, kids, parent, groups)
        else:
            for key, _ in top_items:
                kids[""].append(key)
                parent[key] = ""
        pos = self._layout(kids, parent, edges)
        outs = {}
        for v, n in zip(graph.outputs, graph.output_names, strict=False):
            if not isinstance(v, Const):
                outs.setdefault(str(v.id), n or "out")
        return {"kids": kids, "pos": pos, "edges": edges, "groups": groups, "outs": outs,
                "count": len(graph.inputs) + len(graph.eqns), "eqns": len(graph.eqns)}

    # ---- grouping for big graphs ------------------------------------------------
    def _new_group(self, label, members, kids, parent, groups):
        self._groups += 1
        gkey = f"G{self._groups}"
        groups[gkey] = [label, _leaf_count(members, kids)]
        kids[gkey] = list(members)
        for m in members:
            parent[m] = gkey
        return gkey

    def _group(self, items, kids, parent, groups):
        runs = []                  # (label, [keys])
        inputs = [k for k, hint in items if hint is None]
        for i in range(0, len(inputs), RUN_CAP):
            chunk = inputs[i:i + RUN_CAP]
            runs.append((f"inputs {i + 1}-{i + len(chunk)}", chunk))
        cur, cur_src = [], None
        for key, hint in items:
            if hint is None:
                continue
            if cur and (hint != cur_src or len(cur) >= RUN_CAP):
                runs.append((cur_src, cur))
                cur = []
            cur_src = hint
            cur.append(key)
        if cur:
            runs.append((cur_src, cur))
        keys = []
        for label, members in runs:
            if len(members) == 1:
                keys.append(members[0])
            else:
                keys.append(self._new_group(f"{label} ({len(members)})", members, kids,
                                            parent, groups))
        if len(keys) > TOP_CAP:
            per = -(-len(keys) // TOP_CAP)
            spans = []
            for i in range(0, len(keys), per):
                chunk = keys[i:i + per]
                first, last = _span_label(chunk[0], groups), _span_label(chunk[-1], groups)
                label = first if first == last else f"{first} .. {last}"
                spans.append(self._new_group(label, chunk, kids, parent, groups)
                             if len(chunk) > 1 else chunk[0])
            keys = spans
        kids[""] = keys
        for k in keys:
            parent[k] = ""

    # ---- layout: rows are topological generations inside each container ---------
    def _layout(self, kids, parent, edges) -> dict:
        graphs = {c: nx.DiGraph() for c in kids}
        for c, ks in kids.items():
            graphs[c].add_nodes_from(ks)

        def chain(k):
            out = [k]
            while k in parent:
                k = parent[k]
                out.append(k)
            return out

        chains: dict = {}
        for u, v in edges:
            cu = chains.get(u) or chains.setdefault(u, chain(u))
            cv = chains.get(v) or chains.setdefault(v, chain(v))
            if u not in parent or v not in parent:
                continue
            sv = set(cv)
            for i, c in enumerate(cu[1:], 1):
                if c in sv:
                    a, b = cu[i - 1], cv[cv.index(c) - 1]
                    if a != b:
                        graphs[c].add_edge(a, b)
                    break
        from ..ir.inspect import layered_layout
        pos = {}
        for g in graphs.values():
            for k, (layer, order) in layered_layout(g).items():
                pos[k] = [layer, order]
        return pos


def _leaf_count(members, kids) -> int:
    return sum(_leaf_count(kids[m], kids) if m in kids and m.startswith("G") else 1
               for m in members)


def _span_label(key, groups) -> str:
    if key in groups:
        return groups[key][0].rsplit(" (", 1)[0]
    return key


def _same_graph(a: Graph, b: Graph) -> bool:
    return (len(a.eqns) == len(b.eqns) and all(x is y for x, y in zip(a.eqns, b.eqns, strict=True))
            and a.outputs == b.outputs)


def report_data(views: list[View], group_above: int = GROUP_ABOVE) -> dict:
    """The JSON the viewer draws (see NOTE: [Report data])."""
    b = _Builder(group_above)
    out_views = []
    for view in views:
        stages = []
        prev = None
        for i, (name, graph, seconds) in enumerate(view.stages):
            if prev is not None and _same_graph(prev, graph):
                st = dict(stages[-1], same_as=i - 1)
            else:
                st = b.stage(graph, view.sources)
            st = {k: v for k, v in st.items() if k not in ("added", "removed", "fused")}
            st["name"] = name
            st["seconds"] = seconds
            if prev is not None:
                st.update({k: [str(x) for x in v] for k, v in stage_diff(prev, graph).items()})
            else:
                st.update(added=[], removed=[], fused=[])
            stages.append(st)
            prev = graph
        out_views.append({"title": view.title, "info": view.info, "stages": stages})
    return {"nodes": b.nodes, "views": out_views, "colors": {**KIND_COLORS, "group": "#f4f4f4"}}


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def render_html(views: list[View], title: str = "tracegrad graphs",
                group_above: int = GROUP_ABOVE) -> str:
    """The whole report: data, CSS and JS inline, so it opens with no network."""
    data = json.dumps(report_data(views, group_above), separators=(",", ":"))
    # "</" inside a <script> would end it early
    data = data.replace("</", "<\\/")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_asset('viewer.css')}</style></head>"
            f"<body><script id=\"tg-data\" type=\"application/json\">{data}</script>"
            f"<script>{_asset('viewer.js')}</script></body></html>\n")
