"""``tracegrad viz``: one self-contained HTML file that draws compiled graphs.

Python does the graph work (networkx: topological generations per container,
grouping, stage diffs) and emits JSON; ``viewer.js`` (inline, no network)
turns rows and orders into coordinates and draws SVG, so expanding a fused
region or a group only re-places boxes.

NOTE: [Report data]. Node keys are strings: ``str(Var.id)`` for inputs and
equations, ``F<id>`` for a fused region (id of its output Var; the region's
equations keep their own keys), ``G...`` for a group. A stage holds ``kids``
(container key -> child keys, "" is the top), ``pos`` (key -> [layer, order]
inside its container), ``edges`` (leaf-level pairs), ``groups`` (key -> [label,
leaves, kind, title]), ``open`` (the groups shown expanded at first) and the diff
against the previous stage. Node attributes live once in ``nodes``, shared by all
stages, since passes keep surviving Vars.

NOTE: [Viewer grouping]. Every graph is grouped the same way: the top holds the
inputs (by kind of source) and one band per run of equations of one phase
(forward, backward, optimizer, other: NOTE: [Phases] in ir/graph.py); inside a band,
the module tree (``model`` > ``blocks.2`` > ``attn``, from ``Eqn.module``); inside a
module, runs of equations from one source line. Each group is an interval of the
topological order (a module called twice is two groups), so every container's graph
is acyclic and rows are its topological generations. A container with more than
``TOP_CAP`` children (``OPEN_KIDS`` in a big graph) is split into ``SPANS`` consecutive
spans. Small graphs open every group; big ones open bands and then groups, breadth
first, while fewer than ``OPEN_CAP`` boxes show.
"""
from __future__ import annotations

import html
import json
from importlib import resources

import networkx as nx

from ..ir.graph import Const, Graph, type_str
from ..ir.inspect import (
    KIND_COLORS,
    eqn_kind,
    eqn_phase,
    input_kind,
    input_label,
    op_kind,
    stage_diff,
)
from ..ir.tracer import source_text

GROUP_ABOVE = 400
RUN_CAP = 120
TOP_CAP = 150
OPEN_CAP = 40
OPEN_KIDS = 24
SPANS = 12


class View:
    """One graph through its stages: ``stages`` is [(name, Graph, seconds)].

    ``panels`` (optional): ``counts`` (a line), ``guards``, ``breaks``, ``recompiles``
    (lists of text), ``jax`` and ``hlo`` (program text). A view with no stages is a
    function that runs eagerly: ``eager`` says why (a graph break with its line)."""

    def __init__(self, title: str, stages, sources=None, info: str = "", panels=None,
                 eager: str = ""):
        self.title = title
        self.stages = list(stages)
        self.sources = sources
        self.info = info
        self.panels = dict(panels or {})
        self.eager = eager


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


def _module_parts(path: str) -> list[str]:
    """``model.blocks.2.attn`` -> ``["model", "blocks.2", "attn"]`` (an index stays with
    its container's name)."""
    out: list[str] = []
    for p in path.split(".") if path else []:
        if p.isdigit() and out:
            out[-1] += "." + p
        else:
            out.append(p)
    return out


_INPUT_GROUPS = {"arg": "arguments", "scalar": "arguments", "tensor": "state",
                 "grad": ".grad slots", "group": "hyperparameters", "rng": "random keys",
                 "draw": "random keys"}


class _Builder:
    def __init__(self, group_above: int):
        # key -> [label, kind, type, src, phase, op, params, grad_name, module, op_kind]
        self.nodes: dict = {}
        self.lines: dict = {}  # src -> the text of that line
        self.group_above = group_above

    def node(self, key, label, kind, var, src="", phase="forward", op="", params="",
             grad_name=None, module="", opk=""):
        if key not in self.nodes:
            self.nodes[key] = [label, kind, type_str(var), src, phase, op, params,
                               grad_name or "", module, opk]
            if src and src not in self.lines:
                self.lines[src] = source_text(src)

    def stage(self, graph: Graph, sources) -> dict:
        st = _Stage()
        known = graph.meta.get("input_sources", {})
        srcs = sources or [known.get(v) for v in graph.inputs]
        for v, name, s in zip(graph.inputs, graph.input_names, srcs, strict=False):
            key = str(v.id)
            kind = input_kind(name, s)
            self.node(key, input_label(graph, v, name), kind, v, op="input", phase="input",
                      params=name or "")
            group = _INPUT_GROUPS.get(getattr(s, "kind", ""), "inputs")
            if group == "state" and kind == "parameter":
                group = "parameters"
            st.inputs.setdefault(group, []).append(key)
        for e in graph.eqns:
            phase = eqn_phase(graph, e)
            if e.prim.name == "fusion":
                sub = e.params["graph"]
                key = f"F{e.out.id}"
                self.node(key, _label(e), "fusion", e.out, e.src or "", phase, "fusion",
                          "", e.grad_name, e.module, "fusion")
                st.kids[key] = []
                outer = dict(zip(sub.inputs, e.inputs, strict=False))
                for x in sub.eqns:
                    k = str(x.out.id)
                    self.node(k, x.prim.name, eqn_kind(graph, x), x.out, x.src or "",
                              eqn_phase(graph, x), x.prim.name, _params_text(x), x.grad_name,
                              x.module, op_kind(x))
                    st.kids[key].append(k)
                    st.parent[k] = key
                    for v in x.inputs:
                        if not isinstance(v, Const):
                            st.edges.append((str(outer.get(v, v).id), k))
            else:
                key = str(e.out.id)
                self.node(key, e.prim.name, eqn_kind(graph, e), e.out, e.src or "", phase,
                          e.prim.name, _params_text(e), e.grad_name, e.module, op_kind(e))
                for v in e.inputs:
                    if not isinstance(v, Const):
                        st.edges.append((str(v.id), key))
            st.items.append((key, phase, e.module, e.src or "?"))
        small = len(graph.inputs) + len(graph.eqns) <= self.group_above
        st.build(small)
        pos = _layout(st.kids, st.parent, st.edges)
        outs = {}
        labels = graph.meta.get("output_labels", {})
        for v, n in zip(graph.outputs, graph.output_names, strict=False):
            if not isinstance(v, Const):  # "new model.fc1.weight", "model.fc1.weight.grad"
                outs.setdefault(str(v.id), labels.get(v) or n or "out")
        phases: dict = {}
        for e in graph.eqns:
            p = eqn_phase(graph, e)
            phases[p] = phases.get(p, 0) + 1
        return {"kids": st.kids, "pos": pos, "edges": st.edges, "groups": st.groups,
                "outs": outs, "open": st.open, "phases": phases,
                "count": len(graph.inputs) + len(graph.eqns), "eqns": len(graph.eqns)}


class _Stage:
    """The grouping of one stage (NOTE: [Viewer grouping])."""

    def __init__(self):
        self.kids: dict = {"": []}
        self.parent: dict = {}
        self.groups: dict = {}
        self.inputs: dict = {}     # input group name -> keys
        self.edges: list = []      # (from key, to key) between leaves
        self.items: list = []      # (key, phase, module, src) in topological order
        self.open: list = []
        self._seen: dict = {}

    def _group(self, parent, label, gkind, title, path):
        n = self._seen.get(path, 0)
        self._seen[path] = n + 1
        key = f"G{path}#{n}"
        self.groups[key] = [label, 0, gkind, title]
        self.kids[key] = []
        self.kids[parent].append(key)
        self.parent[key] = parent
        return key

    def _leaf(self, parent, key):
        self.kids[parent].append(key)
        self.parent[key] = parent

    def build(self, small: bool):
        if self.inputs:
            band = self._group("", "inputs", "band", "the graph's inputs, by source", "inputs")
            for name, keys in self.inputs.items():
                g = self._group(band, name, "inputs", f"{len(keys)} {name}", f"inputs/{name}")
                for k in keys:
                    self._leaf(g, k)
        band = None
        band_phase = None
        stack: list = []           # [(module part path, group key)]
        line = None                # (src, group key, first leaf) of the current run
        for key, phase, module, src in self.items:
            if phase != band_phase:
                band_phase = phase
                band = self._group("", phase, "band", f"{phase} phase", phase)
                stack, line = [], None
            parts = _module_parts(module)
            depth = 0
            while depth < len(stack) and depth < len(parts) and stack[depth][0] == parts[depth]:
                depth += 1
            if depth < len(stack):
                del stack[depth:]
                line = None
            for i in range(depth, len(parts)):
                parent = stack[-1][1] if stack else band
                path = ".".join(parts[:i + 1])
                g = self._group(parent, parts[i], "module", path, f"{phase}/{path}")
                stack.append((parts[i], g))
                line = None
            container = stack[-1][1] if stack else band
            if line is None or line["src"] != src or line["in"] != container:
                line = {"src": src, "in": container, "keys": [], "group": None}
            line["keys"].append(key)
            n = len(line["keys"])
            if n == 1:
                self._leaf(container, key)
            else:
                if n == 2:  # a second equation from this line: the run becomes a group
                    first = self.kids[container].pop()
                    where = ".".join(parts) or phase
                    line["group"] = self._group(container, src, "line", src,
                                                f"{phase}/{where}@{src}")
                    self._leaf(line["group"], first)
                self._leaf(line["group"], key)
        for g in list(self.groups):  # a module holding one line's run: one group
            if g not in self.groups:
                continue
            kids = self.kids[g]
            if self.groups[g][2] == "module" and len(kids) == 1 \
                    and self.groups.get(kids[0], [None] * 3)[2] == "line":
                line = kids[0]
                self.kids[g] = self.kids.pop(line)
                for k in self.kids[g]:
                    self.parent[k] = g
                self.groups[g][3] += " @ " + self.groups.pop(line)[0]
                del self.parent[line]
        cap = TOP_CAP if small else OPEN_KIDS
        for c in list(self.kids):
            if not c.startswith("F"):
                self._split(c, cap)
        for g in self.groups:
            self.groups[g][1] = self._leaves(g)
        self.open = self._default_open(small)

    def _split(self, c, cap):
        """More than ``cap`` children: SPANS consecutive spans of them (still intervals of
        the topological order), split again while one is too big."""
        keys = self.kids[c]
        if len(keys) <= cap:
            return
        per = max(2, -(-len(keys) // SPANS))
        spans = []
        for i in range(0, len(keys), per):
            chunk = keys[i:i + per]
            if len(chunk) == 1:
                spans.append(chunk[0])
                continue
            n = self._seen.get(c + "/span", 0)
            self._seen[c + "/span"] = n + 1
            key = f"G{c}/span#{n}"
            first, last = self._short(chunk[0]), self._short(chunk[-1])
            self.groups[key] = [f"{first} .. {last}" if first != last else first, 0, "span",
                                f"items {i + 1}-{i + len(chunk)}"]
            self.kids[key] = chunk
            for k in chunk:
                self.parent[k] = key
            self.parent[key] = c
            spans.append(key)
            self._split(key, cap)
        self.kids[c] = spans

    def _short(self, key):
        return self.groups[key][0] if key in self.groups else "node " + key

    def _leaves(self, g):
        return sum(self._leaves(k) if k in self.groups else 1 for k in self.kids[g])

    def _default_open(self, small):
        """Small graphs: every group. Big ones: the bands, then groups breadth first
        (not the inputs' lists, nor a group of more than OPEN_KIDS boxes) while fewer than
        OPEN_CAP boxes show."""
        if small:
            return list(self.groups)
        opened = [k for k in self.kids[""] if k in self.groups]
        shown = sum(len(self.kids[k]) for k in opened)
        frontier = [k for b in opened for k in self.kids[b]
                    if k in self.groups and self.groups[k][2] != "inputs"]
        while frontier:
            nxt = []
            for g in frontier:
                extra = len(self.kids[g]) - 1
                if extra + 1 > OPEN_KIDS or shown + extra > OPEN_CAP:
                    continue
                opened.append(g)
                shown += extra
                nxt += [k for k in self.kids[g] if k in self.groups]
            frontier = nxt
        return opened


def _layout(kids, parent, edges) -> dict:
    """[layer, order] of every key inside its container: each container's graph is the
    edges between its children (an edge between leaves counts for the children of
    their lowest common container)."""
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
        out_views.append({"title": view.title, "info": view.info, "stages": stages,
                          "panels": view.panels, "eager": view.eager})
    return {"nodes": b.nodes, "lines": b.lines, "views": out_views,
            "colors": {**KIND_COLORS, "group": "#f4f4f4"}}


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
