"""Names, module paths and phases in the IR (issue 16): every graph input is named by
where it came from, every equation carries the module call stack it was recorded in and
its phase, through autodiff, CSE, simplify and fusion, and recompile messages use the
same names."""
from __future__ import annotations

import warnings

import pytest

import tracegrad as tg
from tracegrad import nn
from tracegrad.ir import inspect
from tracegrad.ir.sources import display_path, legal_name
from tracegrad.passes import run_pipeline


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc2(self.fc1(x).relu())


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.Linear(4, 4)
        self.mlp = nn.Sequential(nn.Linear(4, 4), nn.GELU())

    def forward(self, x):
        return self.mlp(self.attn(x)) + x


class Tower(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([Block() for _ in range(3)])
        self.head = nn.Linear(4, 1)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def _steady_graph(step, *args, calls=2):
    """The traced graph a compiled step keeps once its state exists."""
    for _ in range(calls):
        step(*args)
    entry = list(step._cache.values())[-1]
    return entry.trace.graph


model = MLP()
opt = tg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


@tg.compile
def sgd_step(x):
    opt.zero_grad()
    loss = model(x).pow(2).mean()
    loss.backward()
    opt.step()
    return loss


def test_inputs_are_named_by_their_sources_in_the_printed_header():
    tg.manual_seed(0)
    g = _steady_graph(sgd_step, tg.randn(8, 4))
    labels = [g.meta["input_labels"][v] for v in g.inputs]
    assert labels == [
        "x", "model.fc1.weight", "model.fc1.bias", "model.fc2.weight", "model.fc2.bias",
        "opt.param_groups[0].lr", "opt.param_groups[0].momentum",
        "opt.state[model.fc1.weight].momentum_buffer", "opt.param_groups[0].dampening",
        "opt.state[model.fc1.bias].momentum_buffer",
        "opt.state[model.fc2.weight].momentum_buffer", "opt.state[model.fc2.bias].momentum_buffer",
    ]
    assert g.input_names == [legal_name(n) for n in labels]
    text = str(g)
    header = text.split("\ndef ")[0].splitlines()
    assert header[1] == "# inputs:"
    assert "#   model_fc1_weight" in header[2] and header[2].endswith("  model.fc1.weight")
    assert any(ln.endswith("  opt.state[model.fc1.weight].momentum_buffer") for ln in header)
    assert "def sgd_step(x, model_fc1_weight, model_fc1_bias," in text
    assert "arg0" not in text and " p_1" not in text
    g.to_callable()  # the names are legal Python


def test_every_equation_has_a_phase_and_the_printer_marks_the_boundaries():
    tg.manual_seed(0)
    g = _steady_graph(sgd_step, tg.randn(8, 4))
    runs = [e.phase for i, e in enumerate(g.eqns) if i == 0 or g.eqns[i - 1].phase != e.phase]
    assert runs == ["forward", "backward", "optimizer"]
    markers = [ln.strip() for ln in str(g).splitlines() if ln.strip().startswith("# ----")]
    assert markers == ["# ---- forward ----", "# ---- backward ----", "# ---- optimizer ----"]
    final, stages = run_pipeline(g)
    for name, sg, _ in stages:
        runs = [e.phase for i, e in enumerate(sg.eqns)
                if i == 0 or sg.eqns[i - 1].phase != e.phase]
        assert runs == ["forward", "backward", "optimizer"], name


def test_module_paths_follow_forward_equations_into_backward_and_fusion():
    tg.manual_seed(0)
    g = _steady_graph(sgd_step, tg.randn(8, 4))
    fwd = [e for e in g.eqns if e.phase == "forward"]
    mm = [e for e in fwd if e.prim.name == "matmul"]
    assert [e.module for e in mm] == ["model.fc1", "model.fc2"]
    assert {e.module for e in fwd if e.prim.name == "relu"} == {"model"}
    assert {e.module for e in fwd if e.prim.name in ("pow_scalar", "mean")} == {""}
    assert "model.fc1" in str(g).splitlines()[next(
        i for i, ln in enumerate(str(g).splitlines()) if " matmul(" in ln)]
    final, stages = run_pipeline(g)
    by = {n: sg for n, sg, _ in stages}
    bwd = [e for e in by["autodiff"].eqns if e.phase == "backward"]
    # the VJP of fc1's matmul is fc1's backward, at fc1's forward source line
    bwd_mm = [e for e in bwd if e.prim.name == "matmul"]
    assert {e.module for e in bwd_mm} == {"model.fc1", "model.fc2"}
    fc1_src = mm[0].src
    assert {e.src for e in bwd_mm if e.module == "model.fc1"} == {fc1_src}
    for e in final.eqns:
        assert e.phase in ("forward", "backward", "optimizer")
        if e.prim.name == "fusion":
            inner = e.params["graph"].eqns
            assert e.module == inner[-1].module and e.phase == inner[-1].phase
    fused_bwd = {e.module for e in final.eqns if e.prim.name == "fusion" and e.phase == "backward"}
    assert fused_bwd, "a fused backward region keeps a module path"
    assert {e.module for e in final.eqns if e.phase == "optimizer"} == {""}


def test_nested_module_lists_give_dotted_paths():
    tg.manual_seed(0)
    tower = Tower()
    g = tg.trace(lambda x: tower(x).sum(), tg.randn(2, 4))
    mods = {e.module for e in g.eqns}
    assert {"tower.blocks.0.attn", "tower.blocks.1.attn", "tower.blocks.2.mlp.1",
            "tower.head"} <= mods
    assert [v for v in g.meta["input_labels"].values() if "blocks.1.attn" in v] == [
        "tower.blocks.1.attn.weight", "tower.blocks.1.attn.bias"]
    # blocks.1.attn's backward, found by module and phase
    final, stages = run_pipeline(tg.trace(_tower_step(tower), tg.randn(2, 4)))
    autodiff = dict((n, sg) for n, sg, _ in stages)["autodiff"]
    assert any(e.module == "tower.blocks.1.attn" and e.phase == "backward"
               for e in autodiff.eqns)


def _tower_step(tower):
    def step(x):
        tower(x).sum().backward()
        return tower.head.weight.grad
    return step


def test_a_module_made_inside_the_call_is_named_under_its_caller():
    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Sequential(nn.Linear(3, 3))

        def forward(self, x):
            return self.inner(x)

    def f(m, x):
        return m(x).sum()

    g = tg.trace(f, Outer(), tg.randn(2, 3))
    assert {e.module for e in g.eqns if e.prim.name == "matmul"} == {"Outer.inner.0"}


model_g = nn.Linear(3, 2)
opt_g = tg.optim.Adam(model_g.parameters(), lr=0.01)


@tg.compile
def accumulate(x):
    model_g(x).sum().backward()  # no zero_grad: the .grad slots are inputs
    tg.nn.utils.clip_grad_norm_(model_g.parameters(), 1.0)
    opt_g.step()
    return model_g.weight.grad.sum()


def test_grad_slots_group_values_and_clipping_between_backward_and_step():
    tg.manual_seed(0)
    g = _steady_graph(accumulate, tg.randn(4, 3))
    labels = set(g.meta["input_labels"].values())
    assert {"model_g.weight.grad", "model_g.bias.grad", "opt_g.param_groups[0].lr",
            "opt_g.param_groups[0].betas[0]", "opt_g.state[model_g.weight].exp_avg_sq"} <= labels
    runs = [e.phase for i, e in enumerate(g.eqns) if i == 0 or g.eqns[i - 1].phase != e.phase]
    assert runs == ["forward", "backward", "other", "optimizer", "other"]
    names = [n for n in g.output_names if n.startswith("write_")]
    assert "write_model_g_weight" in names and "write_opt_g_state_model_g_weight_exp_avg" in names


def test_random_draws_read_an_input_named_rng():
    drop = nn.Dropout(0.5)
    g = tg.trace(lambda x: drop(x).sum(), tg.ones(4, 4))
    assert "rng" in g.input_names and g.meta["input_labels"][g.inputs[-1]] == "rng"
    assert {e.module for e in g.eqns if e.prim.name == "random"} == {"drop"}


def test_recompile_messages_use_the_argument_names():
    f = tg.compile(lambda x, n: x * n)
    f(tg.ones(8, 4), 3)
    f(tg.ones(16, 4), 3)
    f(tg.ones(16, 4), 4)
    assert f.recompile_reasons == ["x: shape (8, 4) -> (16, 4)",
                                   "n: 3 -> 4 (an int argument is baked into the graph)"]


def test_recompile_reasons_name_state_by_its_source():
    tg.manual_seed(0)
    m = nn.Sequential(nn.Linear(2, 2))
    o = tg.optim.SGD(m.parameters(), lr=0.1)

    def step(x):
        o.zero_grad()
        m(x).sum().backward()
        o.step()

    cf = tg.compile(step)
    x = tg.randn(3, 2)
    for _ in range(3):
        cf(x)
    m.eval()
    cf(x)
    m.train()
    m[0].weight.requires_grad_(False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cf(x)
    m[0].weight.requires_grad_(True)
    for _ in range(3):
        cf(x)
    o.param_groups[0]["nesterov"] = True
    o.param_groups[0]["momentum"] = 0.5
    cf(x)
    reasons = cf.recompile_reasons
    assert "m: training: True -> False (a Python value the trace baked in)" in reasons
    assert "m.0.weight: requires_grad True -> False" in reasons
    assert ("o.param_groups[0]['momentum']: 0.0 -> 0.5 (a Python value the trace baked in)"
            in reasons)
    assert not any("<deleted>" in r or "arg0" in r for r in reasons)


def test_a_replaced_or_deleted_optimizer_reads_sensibly():
    g = {}
    exec("import tracegrad as tg\n"
         "w = tg.ones(2, requires_grad=True)\n"
         "opt = tg.optim.SGD([w], lr=0.1)\n"
         "def step():\n"
         "    opt.zero_grad()\n"
         "    (w * 2).sum().backward()\n"
         "    opt.step()\n", g)
    cf = tg.compile(g["step"])
    for _ in range(3):
        cf()
    g["opt"] = tg.optim.SGD([g["w"]], lr=0.1)
    cf()
    assert cf.recompile_reasons[-1] == ("opt: replaced by another SGD object (Python state "
                                        "the trace read)")
    del g["opt"]
    with pytest.raises(NameError):
        cf()
    assert cf.recompile_reasons[-1] == ("opt: deleted (it held an SGD) (Python state the trace "
                                        "read)")


@pytest.mark.parametrize("params,path,want", [
    (["x", "y"], "arg0", "x"), (["x", "y"], "arg1_0", "y_0"), (["a", "*rest"], "arg3", "rest_2"),
    ([], "arg0", "arg0"), (["x"], "lr", "lr"),
])
def test_display_paths(params, path, want):
    assert display_path(params, path) == want


@pytest.mark.parametrize("name,want", [
    ("model.fc1.weight", "model_fc1_weight"), ("opt.param_groups[0].lr", "opt_param_groups_0_lr"),
    ("opt.state[model.fc1.weight].exp_avg", "opt_state_model_fc1_weight_exp_avg"),
    ("0.weight", "_0_weight"), ("rng", "rng"),
])
def test_legal_names(name, want):
    assert legal_name(name) == want


def test_json_and_networkx_carry_names_modules_and_phases():
    tg.manual_seed(0)
    g = _steady_graph(sgd_step, tg.randn(8, 4))
    data = inspect.to_json(g)
    inputs = [n for n in data["nodes"] if n["op"] == "input"]
    assert inputs[1]["label"] == "model.fc1.weight" and inputs[1]["name"] == "model_fc1_weight"
    assert inputs[1]["source"] == "tensor" and inputs[1]["kind"] == "parameter"
    assert not any(n["src"] == "" for n in data["nodes"] if n["op"] != "input")
    mods = {n["module"] for n in data["nodes"] if n["op"] == "matmul"}
    assert mods == {"model.fc1", "model.fc2"}
    assert {n["phase"] for n in data["nodes"]} == {"input", "forward", "backward", "optimizer"}


def test_outputs_say_what_they_write():
    tg.manual_seed(0)
    g = _steady_graph(sgd_step, tg.randn(8, 4))
    assert "grad_model_fc1_weight" in g.output_names
    assert "write_opt_state_model_fc1_weight_momentum_buffer" in g.output_names
    labels = set(g.meta["output_labels"].values())
    assert {"model.fc1.weight.grad", "new model.fc1.weight",
            "new opt.state[model.fc1.weight].momentum_buffer"} <= labels
    from tracegrad.viz import View, report_data
    st = report_data([View("s", [("traced", g, 0.0)])])["views"][0]["stages"][0]
    assert "model.fc2.bias.grad" in st["outs"].values()


def test_explain_has_honest_counts_and_a_per_phase_table():
    tg.manual_seed(0)
    x = tg.randn(8, 4)
    _steady_graph(sgd_step, x)
    report = sgd_step.explain(x)
    assert report.counts.startswith(f"{sgd_step.traces} trace(s), 1 compiled program(s); "
                                    f"calls: {sgd_step.traces} traced, ")
    head, *rows = report.phases
    assert head.split() == ["phase", "traced", "autodiff", "final", "trace", "ms"]
    table = {r.split()[0]: [int(c) for c in r.split()[1:4]] for r in rows}
    for col, stage in enumerate(("traced", "autodiff", "final")):
        g = report.stages[stage]
        for phase in ("forward", "backward", "optimizer"):
            assert table[phase][col] == sum(e.phase == phase for e in g.eqns)
    assert "phases (equations per stage" in str(report)


def _guard_case(change):
    """A compiled SGD step on a small model, three calls, ``change(state)``, one call:
    the recompile reasons."""
    tg.manual_seed(0)
    st = {"m": nn.Sequential(nn.Linear(2, 2)), "scale": 2.0}
    st["o"] = tg.optim.SGD(st["m"].parameters(), lr=0.1)
    ns = dict(st)
    exec("def step(x):\n"
         "    (m(x).sum() * scale).backward()\n"
         "    o.step()\n"
         "    o.zero_grad(set_to_none=False)\n", ns)  # (leaves .grad filled with 0.0)
    cf = tg.compile(ns["step"])
    x = tg.randn(3, 2)
    for _ in range(3):
        cf(x)
    n = len(cf.recompile_reasons)
    change(ns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cf(tg.randn(5, 2) if ns.get("new_shape") else x)
    return cf.recompile_reasons[n:]


@pytest.mark.parametrize("change,reason", [
    (lambda ns: ns.update(new_shape=True), "x: shape (3, 2) -> (5, 2)"),
    (lambda ns: ns.update(scale=3.0), "scale: 2.0 -> 3.0 (Python state the trace read)"),
    (lambda ns: ns["m"].eval(), "m: training: True -> False (a Python value the trace baked in)"),
    (lambda ns: ns["m"][0].register_forward_hook(lambda *a: None),
     "m.0: forward hooks added or removed"),
    (lambda ns: ns["m"][0].weight.requires_grad_(False), "m.0.weight: requires_grad True -> False"),
    (lambda ns: ns["m"][0].weight.grad.add_(1.0),
     "m.0.weight.grad: no longer filled with 0.0 as the last call left it"),
    (lambda ns: ns["o"].param_groups[0].update(nesterov=True, momentum=0.9),
     "o.param_groups[0]['momentum']: 0.0 -> 0.9 (a Python value the trace baked in)"),
    (lambda ns: ns.update(o=tg.optim.SGD(ns["m"].parameters(), lr=0.1)),
     "o: replaced by another SGD object (Python state the trace read)"),
], ids=["signature", "global", "module attribute", "hook", "tensor", "constant", "optimizer",
        "replaced"])
def test_every_guard_kind_says_what_changed_by_name(change, reason):
    assert _guard_case(change)[:1] == [reason]
