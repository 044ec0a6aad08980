"""Looking at graphs: networkx and DOT views, node kinds, layered layout, notebook display.

    >>> import tracegrad as tg
    >>> g = tg.trace(lambda x: (x * 2).sin().sum(), tg.ones(3))
    >>> nx_graph = g.to_networkx()
    >>> nx_graph.number_of_nodes() == node_count(g)
    True
    >>> g.to_dot().splitlines()[0]
    'digraph "<lambda>" {'

A graph's nodes are its inputs and its equations (a fused region is one node
whose ``graph`` param holds the region). Nodes are keyed by Var identity:
``Var.id`` of an input or of an equation's output. Passes keep the Var objects
of the equations they leave alone, so the same key names the same node in
every stage, and ``stage_diff`` can say what a pass added or removed.

NOTE: [Node kinds]. Colours follow ``node_kind``: inputs are ``input``
(arguments) or ``parameter``/``state`` (tensors captured from Python); an
equation is ``gradient`` in the backward phase and ``update`` in the optimizer
phase (NOTE: [Phases] in ir/graph.py: ``Eqn.phase``); otherwise its primitive's
``kind`` decides (``primitives.KINDS``: ``matmul``, ``reduction``, ``elementwise``,
``conv``, ``pool``, ``index`` (gather, scatter), ``layout`` for pure data movement,
...; a fused region is ``fusion``). ``op_kind`` is the primitive's own kind whatever
the phase (the viewer shows it on every box).
"""
from __future__ import annotations

import html
import json

import networkx as nx

from .graph import Const, Graph, type_str

KIND_COLORS = {
    "input": "#9ecae1", "parameter": "#fdd49e", "state": "#e0e0e0",
    "elementwise": "#c7e9c0", "reduction": "#fcbba1", "matmul": "#dadaeb",
    "fusion": "#fee391", "layout": "#f0f0f0", "gradient": "#d4b9da", "update": "#c6dbef",
    "scan": "#fdd0a2", "normalization": "#fdae6b", "loss": "#fb6a4a", "conv": "#bcbddc",
    "pool": "#9e9ac8", "index": "#d9d9d9", "creation": "#ffffcc", "random": "#ccebc5",
    "control": "#fee391",
}


def node_count(graph: Graph) -> int:
    """Nodes drawn for ``graph``: its inputs and its top-level equations."""
    return len(graph.inputs) + len(graph.eqns)


def eqn_phase(graph: Graph, e) -> str:
    """"forward", "backward", "optimizer" or "other" (NOTE: [Phases] in ir/graph.py)."""
    if graph.meta.get("all_backward"):
        return "backward"
    return e.phase


def op_kind(e) -> str:
    """The primitive's kind (``conv``, ``pool``, ``index``, ...); a fused region's is
    ``fusion``."""
    return "fusion" if e.prim.name == "fusion" else e.prim.kind


def input_label(graph: Graph, v, name: str | None) -> str:
    """An input's full source name (``model.fc1.weight``; NOTE: [Input names])."""
    return graph.meta.get("input_labels", {}).get(v) or name or f"in{v.id}"


def eqn_kind(graph: Graph, e) -> str:
    name = e.prim.name
    if name == "fusion":
        return "fusion"
    phase = eqn_phase(graph, e)
    if phase == "backward":
        return "gradient"
    if phase == "optimizer":
        return "update"
    return e.prim.kind


def input_kind(name: str | None, source=None) -> str:
    """``input`` for arguments, ``parameter`` or ``state`` for captured tensors.

    ``source`` is the tracer's record of where the input comes from (a compiled
    function's ``Entry.trace.sources``, ir/sources.py); without it the input name decides.
    """
    if source is not None:
        kind = source.kind
        if kind in ("arg", "scalar", "group"):
            return "input"
        if kind == "tensor" and getattr(source.tensor, "_is_param", False):
            return "parameter"
        return "state"
    name = name or ""
    if name.startswith(("arg", "grad_out", "res")):
        return "input"
    if name == "p" or (name.startswith("p_") and not name.endswith("_grad")):
        return "parameter"
    return "state"


def _short_params(e) -> str:
    parts = []
    for k, v in e.params.items():
        if isinstance(v, Graph):
            continue
        text = getattr(v, "name", None) if hasattr(v, "np") else None
        parts.append(f"{k}={text or v!r}")
    s = ", ".join(parts)
    return s if len(s) <= 80 else s[:77] + "..."


def _const_args(e) -> list[str]:
    out = []
    for v in e.inputs:
        if isinstance(v, Const):
            out.append(repr(v.value.item()) if v.value.ndim == 0 else f"const{type_str(v)}")
    return out


def to_networkx(graph: Graph, sources=None) -> nx.DiGraph:
    """A ``networkx.DiGraph``: one node per input and per top-level equation.

    Nodes are keyed by ``Var.id``; attributes: ``label``, ``kind``, ``op`` (the
    primitive, or "input"), ``shape``, ``dtype``, ``src``, ``phase``, ``output``
    (the output name or None) and, for a fused region, ``graph`` (the sub-Graph).
    Edges carry ``arg``, the input position. Constants are not nodes.
    """
    g = nx.DiGraph(name=graph.name, stage=graph.meta.get("stage"))
    out_names = {}
    for v, n in zip(graph.outputs, graph.output_names, strict=False):
        out_names.setdefault(v, n or "out")
    known = graph.meta.get("input_sources", {})
    srcs = sources or [known.get(v) for v in graph.inputs]
    for v, name, src in zip(graph.inputs, graph.input_names, srcs, strict=False):
        g.add_node(v.id, label=input_label(graph, v, name), kind=input_kind(name, src),
                   op="input", shape=v.shape, dtype=v.dtype.name, src="", phase="input",
                   output=out_names.get(v), var=v, module="", name=name,
                   source=src.kind if src is not None else "")
    for e in graph.eqns:
        attrs = dict(label=e.prim.name, kind=eqn_kind(graph, e), op=e.prim.name,
                     shape=e.out.shape, dtype=e.out.dtype.name, src=e.src or "",
                     phase=eqn_phase(graph, e), output=out_names.get(e.out), var=e.out,
                     grad_name=e.grad_name, params=_short_params(e), consts=_const_args(e),
                     module=e.module, op_kind=op_kind(e))
        if e.prim.name == "fusion":
            sub = e.params["graph"]
            attrs["graph"] = sub
            attrs["label"] = f"{sub.name} ({len(sub.eqns)})"
        g.add_node(e.out.id, **attrs)
        for i, v in enumerate(e.inputs):
            if not isinstance(v, Const) and v.id in g:
                g.add_edge(v.id, e.out.id, arg=i)
    return g


def layered_layout(g: nx.DiGraph) -> dict:
    """{node: (layer, order)}: layers are topological generations (longest path
    from a source would stretch edges; generations keep the drawing compact), and
    within a layer nodes sit near the mean position of their predecessors."""
    pos: dict = {}
    prev_order: dict = {}
    for layer, nodes in enumerate(nx.topological_generations(g)):
        def barycenter(n):
            ps = [prev_order[p] for p in g.predecessors(n) if p in prev_order]
            return (sum(ps) / len(ps)) if ps else float("inf")
        nodes = sorted(nodes, key=lambda n: (barycenter(n), str(n)))
        for order, n in enumerate(nodes):
            pos[n] = (layer, order)
            prev_order[n] = order
    return pos


def to_dot(graph: Graph, sources=None) -> str:
    """Graphviz DOT text; fused regions become clusters holding their equations."""
    g = to_networkx(graph, sources)
    lines = [f"digraph {json.dumps(graph.name)} {{", "  rankdir=TB;",
             '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];']

    def node_line(key, label, kind, tooltip, indent="  ", extra=""):
        return (f'{indent}"{key}" [label={json.dumps(label)}, fillcolor="{KIND_COLORS[kind]}", '
                f'tooltip={json.dumps(tooltip)}{extra}];')

    for n, a in g.nodes(data=True):
        shape = type_str(a["var"])
        tip = f"{a['op']} {shape} {a['src']}".strip()
        label = f"{a['label']}\n{shape}"
        if a["output"]:
            label += f"\n-> {a['output']}"
        extra = ", penwidth=2" if a["output"] else ""
        if "graph" in a:
            sub = a["graph"]
            lines.append(f'  subgraph "cluster_{n}" {{')
            lines.append(f"    label={json.dumps(sub.name)}; style=dashed;")
            lines.append(node_line(n, label, "fusion", tip, "    ", extra))
            inner_ids = {}
            for e in sub.eqns:
                key = f"{n}.{e.out.id}"
                inner_ids[e.out] = key
                lines.append(node_line(key, f"{e.prim.name}\n{type_str(e.out)}",
                                       eqn_kind(sub, e), e.src or "", "    "))
            for e in sub.eqns:
                for v in e.inputs:
                    if v in inner_ids:
                        lines.append(f'    "{inner_ids[v]}" -> "{inner_ids[e.out]}";')
            if sub.outputs and sub.outputs[0] in inner_ids:
                lines.append(f'    "{inner_ids[sub.outputs[0]]}" -> "{n}" [style=dotted];')
            lines.append("  }")
        else:
            lines.append(node_line(n, label, a["kind"], tip, extra=extra))
    for u, v in g.edges():
        lines.append(f'  "{u}" -> "{v}";')
    lines.append("}")
    return "\n".join(lines)


def to_json(graph: Graph, sources=None) -> dict:
    """A JSON-ready dict: nodes (with kind, shape, dtype, src, inputs: ids, None for a
    constant) and outputs."""
    g = to_networkx(graph, sources)
    args = {e.out.id: [None if isinstance(v, Const) else v.id for v in e.inputs]
            for e in graph.eqns}
    nodes = []
    for n, a in g.nodes(data=True):
        node = {"id": n, "op": a["op"], "label": a["label"], "kind": a["kind"],
                "shape": list(a["shape"]), "dtype": a["dtype"], "src": a["src"],
                "phase": a["phase"], "module": a["module"], "inputs": args.get(n, [])}
        if a["op"] != "input":
            node["params"] = a["params"]
            node["grad_name"] = a["grad_name"]
            node["op_kind"] = a["op_kind"]
        else:
            node["name"] = a["name"]      # the legal name in the printed graph
            node["source"] = a["source"]  # arg, tensor, grad, group, rng, ...
        if "graph" in a:
            node["region"] = to_json(a["graph"])
        nodes.append(node)
    return {"name": graph.name, "stage": graph.meta.get("stage"),
            "seconds": graph.meta.get("seconds"), "nodes": nodes,
            "outputs": [{"name": n, "id": None if isinstance(v, Const) else v.id}
                        for v, n in zip(graph.outputs, graph.output_names, strict=False)]}


def node_keys(graph: Graph) -> tuple[set, set]:
    """(top-level node keys, keys of equations inside fused regions)."""
    top = {v.id for v in graph.inputs} | {e.out.id for e in graph.eqns
                                          if e.prim.name != "fusion"}
    top |= {f"F{e.out.id}" for e in graph.eqns if e.prim.name == "fusion"}
    inner = set()
    for e in graph.eqns:
        if e.prim.name == "fusion":
            inner |= {x.out.id for x in e.params["graph"].eqns}
    return top, inner


def stage_diff(before: Graph, after: Graph) -> dict:
    """What a pass did, by node key: ``added`` (new top-level nodes), ``removed``
    (gone entirely) and ``fused`` (now inside a fused region).

    Fused regions are keyed ``F<id>`` (id of the region's output Var), so
    ``len(after) - len(before) == len(added) - len(removed) - len(fused)``.
    """
    top0, inner0 = node_keys(before)
    top1, inner1 = node_keys(after)
    return {"added": sorted(top1 - top0 - inner0, key=str),
            "removed": sorted(top0 - top1 - inner1, key=str),
            "fused": sorted((top0 - top1) & inner1, key=str)}


# ---- notebook display -------------------------------------------------------

_W, _H, _GX, _GY = 132, 34, 16, 30


def to_svg(graph: Graph, max_nodes: int = 1500) -> str:
    """A static SVG drawing (layered, top to bottom); hover a node for details."""
    g = to_networkx(graph)
    if g.number_of_nodes() > max_nodes:
        return ""
    pos = layered_layout(g)
    widths: dict = {}
    for layer, order in pos.values():
        widths[layer] = max(widths.get(layer, 0), order + 1)
    width = max(widths.values(), default=1) * (_W + _GX) + _GX
    height = len(widths) * (_H + _GY) + _GY

    def xy(n):
        layer, order = pos[n]
        offset = (width - widths[layer] * (_W + _GX) - _GX) / 2
        return offset + _GX + order * (_W + _GX), _GY + layer * (_H + _GY)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
             f'font-family="Helvetica,Arial,sans-serif" font-size="11">',
             '<g stroke="#888" fill="none">']
    for u, v in g.edges():
        (x0, y0), (x1, y1) = xy(u), xy(v)
        parts.append(f'<path d="M{x0 + _W / 2:.0f},{y0 + _H:.0f} C{x0 + _W / 2:.0f},'
                     f'{y0 + _H + _GY / 2:.0f} {x1 + _W / 2:.0f},{y1 - _GY / 2:.0f} '
                     f'{x1 + _W / 2:.0f},{y1:.0f}"/>')
    parts.append("</g>")
    for n, a in g.nodes(data=True):
        x, y = xy(n)
        tip = html.escape(f"{a['op']} {type_str(a['var'])} {a['src']} "
                          f"{a.get('params', '')}".strip())
        stroke = ' stroke="#222" stroke-width="2"' if a["output"] else ' stroke="#999"'
        parts.append(f'<g class="node"><title>{tip}</title><rect x="{x:.0f}" y="{y:.0f}" '
                     f'width="{_W}" height="{_H}" rx="5" fill="{KIND_COLORS[a["kind"]]}"{stroke}/>'
                     f'<text x="{x + _W / 2:.0f}" y="{y + 14:.0f}" text-anchor="middle">'
                     f'{html.escape(a["label"][:22])}</text><text x="{x + _W / 2:.0f}" '
                     f'y="{y + 27:.0f}" text-anchor="middle" fill="#555">'
                     f'{html.escape(type_str(a["var"]))}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def to_html(graph: Graph) -> str:
    """What a notebook shows for a Graph: a summary line and the SVG drawing."""
    stage = graph.meta.get("stage")
    head = (f"<b>{html.escape(graph.name)}</b>: {len(graph.inputs)} inputs, "
            f"{len(graph.eqns)} equations, {len(graph.outputs)} outputs"
            + (f" (stage {html.escape(stage)})" if stage else ""))
    svg = to_svg(graph)
    if not svg:
        svg = ("<p>too large to draw inline; use <code>tracegrad viz</code> for an "
               "interactive report</p>")
    legend = " ".join(f'<span style="background:{c};padding:1px 5px;border-radius:3px">'
                      f'{k}</span>' for k, c in KIND_COLORS.items())
    return (f'<div class="tracegrad-graph"><div>{head}</div><div style="font-size:11px;'
            f'margin:4px 0">{legend}</div><div style="overflow:auto;max-height:600px">'
            f"{svg}</div></div>")
