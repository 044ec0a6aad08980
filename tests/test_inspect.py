"""Graph inspection: networkx and DOT views, node kinds, layout, stage diffs, notebook HTML."""
from __future__ import annotations

import json

import networkx as nx

import tracegrad as tg
from tracegrad import nn
from tracegrad.ir import inspect
from tracegrad.passes import run_pipeline
from tracegrad.viz import View, render_html, report_data


def _f(x, w):
    return ((x @ w).relu() * 2 + 1).exp().sum()


def _graph():
    return tg.trace(_f, tg.randn(4, 3), tg.randn(3, 5))


def _training_step_graph():
    tg.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = tg.optim.SGD(model.parameters(), lr=0.1)

    def step(x):
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()
        return loss

    x = tg.randn(5, 3)
    step(x)  # makes the .grad slots, so the trace below is the steady state
    return tg.trace(step, x)


def test_to_networkx_nodes_edges_and_attributes():
    g = _graph()
    G = g.to_networkx()
    assert G.number_of_nodes() == inspect.node_count(g) == len(g.inputs) + len(g.eqns)
    assert nx.is_directed_acyclic_graph(G)
    ops = [G.nodes[e.out.id]["op"] for e in g.eqns]
    assert ops == [e.prim.name for e in g.eqns]
    mm = next(e for e in g.eqns if e.prim.name == "matmul")
    assert set(G.predecessors(mm.out.id)) == {v.id for v in g.inputs}
    a = G.nodes[mm.out.id]
    assert a["kind"] == "matmul" and a["shape"] == (4, 5) and a["dtype"] == "float32"
    assert a["src"].startswith("test_inspect.py:")
    assert G.nodes[g.outputs[0].id]["output"] == "out0"
    assert {G.nodes[v.id]["kind"] for v in g.inputs} == {"input"}


def test_kinds_cover_the_legend():
    g = _graph()
    kinds = {inspect.eqn_kind(g, e) for e in g.eqns}
    assert {"matmul", "elementwise", "reduction"} <= kinds
    final, _ = run_pipeline(g)
    assert "fusion" in {inspect.eqn_kind(final, e) for e in final.eqns}


def test_training_step_marks_backward_and_optimizer_equations():
    g = _training_step_graph()
    phases = [inspect.eqn_phase(g, e) for e in g.eqns]
    # forward first, then the backward the engine recorded, then the optimizer update
    runs = [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p]
    assert runs == ["forward", "backward", "optimizer"]
    kinds = {inspect.eqn_kind(g, e) for e in g.eqns}
    assert {"gradient", "update"} <= kinds
    # phases follow the equations through the passes; the autodiff pass's are backward
    final, _ = run_pipeline(g)
    runs = [e.phase for i, e in enumerate(final.eqns)
            if i == 0 or final.eqns[i - 1].phase != e.phase]
    assert runs == ["forward", "backward", "optimizer"]
    assert "gradient" in {inspect.eqn_kind(final, e) for e in final.eqns}


def test_layered_layout_puts_edges_downward():
    G = _training_step_graph().to_networkx()
    pos = inspect.layered_layout(G)
    assert set(pos) == set(G.nodes)
    assert all(pos[u][0] < pos[v][0] for u, v in G.edges)
    assert len(set(pos.values())) == len(pos)  # no two nodes share a slot


def test_to_dot_has_fused_regions_as_clusters():
    final, _ = run_pipeline(_graph())
    dot = final.to_dot()
    assert dot.startswith('digraph "_f" {') and dot.rstrip().endswith("}")
    n_fused = final.count("fusion")
    assert n_fused >= 1 and dot.count("subgraph \"cluster_") == n_fused
    assert dot.count("->") >= final.to_networkx().number_of_edges()


def test_to_json_is_serialisable_and_complete():
    final, _ = run_pipeline(_graph())
    data = json.loads(json.dumps(inspect.to_json(final)))
    assert len(data["nodes"]) == inspect.node_count(final)
    region = next(n for n in data["nodes"] if n["op"] == "fusion")["region"]
    assert region["nodes"] and region["outputs"][0]["id"] is not None


def test_stage_diff_accounts_for_every_node():
    g = _training_step_graph()
    _, stages = run_pipeline(g)
    for (_, before, _), (name, after, _) in zip(stages, stages[1:], strict=False):
        d = inspect.stage_diff(before, after)
        assert (inspect.node_count(after) - inspect.node_count(before)
                == len(d["added"]) - len(d["removed"]) - len(d["fused"])), name
    fusion = dict((n, g) for n, g, _ in stages)["fusion"]
    d = inspect.stage_diff(stages[-2][1], fusion)
    assert len(d["added"]) == fusion.count("fusion") and not d["removed"]


def test_repr_html_draws_every_node():
    g = _graph()
    html = g._repr_html_()
    assert html.count('<g class="node">') == inspect.node_count(g)
    assert "<svg" in html and "matmul" in html


def test_report_groups_big_graphs_and_stays_self_contained():
    g = _training_step_graph()
    _, stages = run_pipeline(g)
    data = report_data([View("step", stages)], group_above=10)
    top = data["views"][0]["stages"][0]["kids"][""]
    assert len(top) < inspect.node_count(g)
    assert any(k.startswith("G") for k in top)
    page = render_html([View("step", stages)])
    assert "<script src" not in page and "http://" not in page.replace(
        "http://www.w3.org/2000/svg", "")


class _Chain(nn.Module):
    def forward(self, x):
        for _ in range(20):
            x = (x * 1.01).sin()
        return x


def test_a_10k_equation_graph_opens_readable_by_default():
    from tracegrad.viz import OPEN_CAP, TOP_CAP
    blocks = nn.ModuleList([_Chain() for _ in range(260)])

    def f(x):
        for b in blocks:
            x = b(x)
        return x.sum()

    g = tg.trace(f, tg.ones(2))
    assert len(g.eqns) > 10_000
    st = report_data([View("big", [("traced", g, 0.0)])])["views"][0]["stages"][0]
    parent = {k: c for c, ks in st["kids"].items() for k in ks}
    opened = set(st["open"])

    def visible(k):
        c = parent[k]
        while c != "":
            if c not in opened:
                return False
            c = parent[c]
        return True

    shown = [k for k in parent if visible(k) and k not in opened]
    assert len(shown) <= OPEN_CAP + 10  # collapsed groups, not 10k boxes
    assert all(len(ks) <= TOP_CAP for ks in st["kids"].values())
    groups = st["groups"]
    assert [groups[k][0] for k in st["kids"][""]] == ["inputs", "forward"]
    # the module tree: blocks.0 .. blocks.259, in spans under ``blocks``
    titles = {g[3].split(" @ ")[0] for g in groups.values() if g[2] == "module"}
    assert {"blocks.0", "blocks.137", "blocks.259"} <= titles
    leaves = [k for k in parent if k not in st["kids"]]
    assert len(leaves) == len(g.inputs) + len(g.eqns)


def test_viewer_nodes_carry_module_source_text_and_op_kind():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Flatten())
    idx = tg.tensor([[0], [1]])
    g = tg.trace(lambda x: model(x).gather(1, idx).sum(), tg.randn(2, 1, 6, 6))
    data = report_data([View("cnn", [("traced", g, 0.0)])])
    by_op = {n[5]: n for n in data["nodes"].values()}
    assert by_op["conv"][9] == "conv" and by_op["conv"][8] == "model.0"
    assert by_op["pool_argmax"][9] == "pool" and by_op["gather"][9] == "index"
    src = by_op["gather"][3]
    assert data["lines"][src] == "g = tg.trace(lambda x: model(x).gather(1, idx).sum(), " \
                                 "tg.randn(2, 1, 6, 6))"
