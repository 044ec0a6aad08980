"""@tracegrad.compile: eager is the oracle. Values, state, cache, breaks, passes, printing."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
from op_table import ROWS, make_inputs

import tracegrad as tg
from tracegrad.codegen.jax_lower import MissingLowering, lower_eqn
from tracegrad.demo import two_layer_step
from tracegrad.ir.graph import Eqn, Var, verify
from tracegrad.ir.tracer import GraphBreak
from tracegrad.passes import PIPELINE, evaluate, run_pipeline
from tracegrad.passes.autodiff import expand_grads
from tracegrad.passes.cse import eliminate_common_subexpressions
from tracegrad.passes.dce import eliminate_dead_code
from tracegrad.passes.fusion import fuse_elementwise
from tracegrad.passes.simplify import simplify
from tracegrad.primitives import PRIMITIVES


def _np(t):
    return np.asarray(t.detach()._data)


# ---- the seed's two-layer net, by hand (the demo's step) ----------------------

_two_layer_step = two_layer_step


def test_seed_two_layer_net_compiled_equals_eager():
    tg.manual_seed(0)
    x, y = tg.randn(16, 50), tg.randn(16, 5)
    w1, w2 = tg.randn(50, 20, requires_grad=True), tg.randn(20, 5, requires_grad=True)
    e1, e2 = (w.detach().clone().requires_grad_() for w in (w1, w2))
    step = tg.compile(_two_layer_step)
    for _ in range(10):
        lc = step(x, y, w1, w2, 1e-4)
        le = _two_layer_step(x, y, e1, e2, 1e-4)
        np.testing.assert_allclose(lc.item(), le.item(), rtol=1e-5)
    np.testing.assert_allclose(_np(w1), _np(e1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(w2), _np(e2), rtol=1e-5, atol=1e-6)
    assert np.all(_np(w1.grad) == 0) and np.all(_np(w2.grad) == 0)
    info = step.cache_info()
    assert info.entries == 1 and info.hits >= 8


# ---- the example: nn + optim, 50 steps ------------------------------

def _mlp():
    return tg.nn.Sequential(tg.nn.Linear(8, 16), tg.nn.ReLU(), tg.nn.Linear(16, 3))


@pytest.mark.parametrize("make_opt", [
    lambda p: tg.optim.SGD(p, lr=1e-2, momentum=0.9),
    lambda p: tg.optim.SGD(p, lr=1e-2, momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda p: tg.optim.Adam(p, lr=1e-2),
    lambda p: tg.optim.AdamW(p, lr=1e-2),
], ids=["sgd_momentum", "sgd_nesterov", "adam", "adamw"])
def test_training_step_50_steps_equals_eager(make_opt):
    tg.manual_seed(1)
    model_c = _mlp()
    model_e = copy.deepcopy(model_c)
    opt_c, opt_e = make_opt(model_c.parameters()), make_opt(model_e.parameters())
    x = tg.randn(32, 8)
    y = tg.randint(0, 3, (32,))

    def make_step(model, opt):
        def train_step(x, y):
            opt.zero_grad()
            loss = tg.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss
        return train_step

    step_c = tg.compile(make_step(model_c, opt_c))
    step_e = make_step(model_e, opt_e)
    for _ in range(50):
        lc, le = step_c(x, y), step_e(x, y)
        np.testing.assert_allclose(lc.item(), le.item(), rtol=1e-4, atol=1e-6)
    for pc, pe in zip(model_c.parameters(), model_e.parameters(), strict=True):
        np.testing.assert_allclose(_np(pc), _np(pe), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(_np(pc.grad), _np(pe.grad), rtol=1e-4, atol=1e-5)
    assert step_c.cache_info().hits >= 45


# ---- eager vs compiled over the op table ---------------------------------------

def _first_shapes(row):
    return row.shapes[0]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_op_table_eager_vs_compiled(row):
    arrays = make_inputs(row, _first_shapes(row))
    xs = [tg.tensor(a) for a in arrays]

    def f(*xs):
        return row.fn(tg, *xs)

    cf = tg.compile(f)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cf(*xs)          # traces (runs eagerly)
        out_c = cf(*xs)  # compiled
    out_e = f(*xs)
    outs_c = out_c if isinstance(out_c, (tuple, list)) else (out_c,)
    outs_e = out_e if isinstance(out_e, (tuple, list)) else (out_e,)
    for c, e in zip(outs_c, outs_e, strict=True):
        np.testing.assert_allclose(_np(c), _np(e), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("row", [r for r in ROWS if r.grad], ids=lambda r: r.name)
def test_op_table_gradients_eager_vs_compiled(row):
    arrays = make_inputs(row, _first_shapes(row))
    which = row.grad_inputs if row.grad_inputs is not None else range(len(arrays))

    def grads(*xs):
        out = row.fn(tg, *xs)
        out = out[0] if isinstance(out, (tuple, list)) else out
        return tg.autograd.grad((out * out).sum(), [xs[i] for i in which], allow_unused=True,
                                materialize_grads=True)

    def fresh():
        return [tg.tensor(a, requires_grad=(i in which)) for i, a in enumerate(arrays)]

    cf = tg.compile(grads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cf(*fresh())
        got = cf(*fresh())
    want = grads(*fresh())
    for c, e in zip(got, want, strict=True):
        np.testing.assert_allclose(_np(c), _np(e), rtol=1e-6, atol=1e-8)


def test_every_primitive_has_a_jax_lowering():
    missing = [name for name, p in PRIMITIVES.items() if p.jax is None]
    assert not missing, f"primitives without a jax lowering: {missing}"


def test_missing_lowering_is_reported():
    fake = type("P", (), {"jax": None, "name": "fake"})()
    with pytest.raises(MissingLowering, match="fake"):
        lower_eqn(Eqn(fake, (), {}, Var((), tg.float32)), [])


# ---- cache, recompiles, dynamic floats -----------------------------------------

def test_cache_hits_and_recompile_reason(capsys, monkeypatch):
    monkeypatch.setenv("TRACEGRAD_LOGS", "recompiles")

    @tg.compile
    def f(x, scale):
        return (x * scale).sum()

    x = tg.ones(8, 4)
    f(x, 1.0)
    f(x, 2.0)                      # a new float: no recompile
    assert f(x, 3.0).item() == pytest.approx(96.0)
    assert f.cache_info().entries == 1
    f(tg.ones(16, 4), 1.0)
    assert f.cache_info().entries == 2
    assert any("shape (8, 4) -> (16, 4)" in r for r in f.recompile_reasons)
    assert "shape (8, 4) -> (16, 4)" in capsys.readouterr().err


def test_static_ints_specialise():
    @tg.compile
    def f(x, n):
        for _ in range(n):
            x = x * 2
        return x

    x = tg.ones(2)
    assert f(x, 2).tolist() == [4.0, 4.0]
    assert f(x, 3).tolist() == [8.0, 8.0]
    assert f(x, 3).tolist() == [8.0, 8.0]
    assert f.cache_info().entries == 2


@pytest.mark.parametrize("fn", [
    lambda x, w: (x * 2)[0],                       # a returned view of an intermediate
    lambda x, w: (x * 2).unsqueeze(0) * w,         # a view of one the backward graph holds
], ids=["view_out", "view_in_graph"])
def test_views_of_intermediates_are_not_new_state(fn):
    # the base a view keeps alive is not Python state: the trace is cached
    x, w = tg.randn(3, 2), tg.randn(2, requires_grad=True)
    f = tg.compile(fn)
    outs = [f(x, w) for _ in range(3)]
    assert f.cache_info().hits == 2
    for out in outs:
        np.testing.assert_allclose(out.detach().numpy(), fn(x, w).detach().numpy())


def test_compiled_backward_leaves_unused_inputs_without_grad():
    f = tg.compile(lambda x, w: (x * 2).sum())
    for _ in range(3):  # traced, then compiled
        x, w = tg.ones(3, requires_grad=True), tg.ones(2, requires_grad=True)
        f(x, w).backward()
        assert w.grad is None  # as eager: no output depends on w
        assert x.grad.tolist() == [2.0, 2.0, 2.0]
    assert f.cache_info().hits == 2


def test_cache_limit_falls_back_to_eager():
    f = tg.compile(lambda x: x + 1, cache_limit=2)
    with pytest.warns(UserWarning, match="cache_limit"):
        for n in range(1, 5):
            assert f(tg.ones(n)).tolist() == [2.0] * n


# ---- graph breaks ---------------------------------------------------------------

def _data_dependent(x):
    if x.sum() > 0:   # bool() of a traced tensor
        return x * 2
    return x * 3


def test_graph_break_falls_back_with_warning_naming_the_line():
    f = tg.compile(_data_dependent)
    with pytest.warns(UserWarning, match=r"test_compile.py:\d+"):
        assert f(tg.ones(3)).tolist() == [2.0, 2.0, 2.0]
    assert f(-tg.ones(3)).tolist() == [-3.0, -3.0, -3.0]   # eager again: the right branch
    assert f.graph_breaks and "bool()" in f.graph_breaks[0][1]


def test_fullgraph_raises_with_site_and_fix():
    f = tg.compile(_data_dependent, fullgraph=True)
    with pytest.raises(GraphBreak, match=r"test_compile.py:\d+: bool\(\).*torch.where"):
        f(tg.ones(3))


def test_item_in_traced_function_is_a_break_not_a_baked_value():
    @tg.compile
    def f(x):
        return x * x.sum().item()

    with pytest.warns(UserWarning, match="item"):
        f(tg.ones(2))
    assert f(tg.full((2,), 2.0)).tolist() == [8.0, 8.0]


# ---- random ops, exceptions, state --------------------------------------------

def test_random_ops_are_fresh_on_every_call():
    f = tg.compile(lambda x: x + tg.rand(4))
    x = tg.zeros(4)
    vals = [tuple(f(x).tolist()) for _ in range(4)]
    assert len(set(vals)) == 4
    assert all(0 <= v < 1 for row in vals for v in row)


def test_exception_leaves_what_eager_leaves():
    # the tracing call runs eagerly: the update made before the raise stays, as in eager
    def make():
        w = tg.ones(3, requires_grad=True)

        def step(x):
            loss = (w * x).sum()
            loss.backward()
            with tg.no_grad():
                w.sub_(0.5 * w.grad)
            raise ValueError("user error after the update")
        return w, step

    w, step = make()
    f = tg.compile(step)
    with pytest.raises(ValueError, match="user error"):
        f(tg.ones(3))
    we, step_e = make()
    with pytest.raises(ValueError, match="user error"):
        step_e(tg.ones(3))
    assert w.tolist() == we.tolist() == [0.5, 0.5, 0.5]
    assert w.grad.tolist() == we.grad.tolist()


def test_compiled_model_in_eager_loop_gives_eager_gradients():
    tg.manual_seed(3)
    model = _mlp()
    ref = copy.deepcopy(model)
    cmodel = tg.compile(model)
    x = tg.randn(5, 8)
    for _ in range(3):
        out = cmodel(x)
        assert out.grad_fn is not None
        out.pow(2).sum().backward()
        ref(x).pow(2).sum().backward()
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        np.testing.assert_allclose(_np(p.grad), _np(q.grad), rtol=1e-5, atol=1e-6)
    assert cmodel.cache_info().hits == 2


# ---- printing, verifying, interpreting ------------------------------------------

def _small(x, w):
    return (x @ w).relu().sum()


def test_printed_graph_is_pinned():
    g = tg.trace(_small, tg.ones(2, 3), tg.ones(3, 4))
    line = _small.__code__.co_firstlineno + 1
    site = f"test_compile.py:{line}"
    assert str(g) == "\n".join([
        "# stage: traced; 3 eqns",
        "def _small(x, w):",
        f"    v0 = matmul(x, w)                         # f32[2,4]  {site}",
        f"    v1 = relu(v0)                             # f32[2,4]  {site}",
        f"    v2 = sum(v1, axis=(0, 1), keepdim=False)  # f32[]  {site}",
        "    return (v2,)",
    ])


def test_printed_graph_runs_and_matches():
    x, w = tg.randn(2, 3), tg.randn(3, 4)
    g = tg.trace(_small, x, w)
    verify(g)
    fn = g.to_callable()
    assert fn(x, w)[0].item() == pytest.approx(_small(x, w).item())
    assert evaluate(g, [x, w])[0] == pytest.approx(_small(x, w).item())


def _step_graph():
    w1 = tg.randn(6, 4, requires_grad=True)
    w2 = tg.randn(4, 2, requires_grad=True)
    x, y = tg.randn(5, 6), tg.randn(5, 2)
    g = tg.trace(_two_layer_step, x, y, w1, w2, 1e-3)
    return g, [x, y, w1, w2, np.float64(1e-3)]


def _inputs_for(g, args):
    # the traced step lifts w.grad too (None at trace time: nothing to feed)
    return args[:len(g.inputs)]


@pytest.mark.parametrize("name,fn", PIPELINE, ids=[n for n, _ in PIPELINE])
def test_each_pass_keeps_values_and_verifies(name, fn):
    g, args = _step_graph()
    if name != "autodiff":
        g = expand_grads(g)  # the pipeline's order: every other pass sees expanded grads
    before = evaluate(g, _inputs_for(g, args))
    after_g = verify(fn(g))
    after = evaluate(after_g, _inputs_for(g, args))
    for a, b in zip(before, after, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    if name == "autodiff":
        assert g.count("grad") == 2 and after_g.count("grad") == 0
        assert after_g.count("matmul") > g.count("matmul")
    else:
        assert len(after_g.eqns) <= len(g.eqns)


def test_backward_in_trace_is_a_grad_request_that_autodiff_expands():
    g, args = _step_graph()
    names = [e.prim.name for e in g.eqns]
    assert names.count("grad") == 2 and "permute" not in names   # no backward ops yet
    expanded = expand_grads(g)
    # d loss / d w2 = relu(x @ w1)^T @ (2 (y_pred - y)): the transposed matmul is there
    assert expanded.count("permute") >= 2 and expanded.count("matmul") == 5


def test_hooks_keep_the_recorded_tape():
    w = tg.ones(3, requires_grad=True)
    seen = []

    def f(x):
        y = w * x
        y.register_hook(lambda g: seen.append(g.shape) or g * 2)
        y.sum().backward()
        return w.grad

    g = tg.trace(f, tg.ones(3))
    assert g.count("grad") == 0 and g.count("mul") >= 2  # the hook's op was recorded
    assert seen == [(3,)]


def test_dce_removes_unused():
    g = tg.trace(lambda x: (x.exp(), x.sin())[1], tg.ones(3))
    assert g.count("exp") == 1
    assert eliminate_dead_code(g).count("exp") == 0


def test_cse_merges_duplicates():
    g = tg.trace(lambda x: x.exp() + x.exp(), tg.ones(3))
    assert g.count("exp") == 2
    assert eliminate_common_subexpressions(g).count("exp") == 1


def test_simplify_rules():
    g = tg.trace(lambda x: ((x * 1.0 + 0.0).t().t()).reshape(6).reshape(2, 3).sin(),
                 tg.ones(2, 3))
    s = eliminate_dead_code(simplify(g))
    assert [e.prim.name for e in s.eqns] == ["sin"]


def test_constant_folding():
    g = tg.trace(lambda x: x + (tg.ones(()) * 2 + 1), tg.ones(3))
    s = eliminate_dead_code(simplify(g))
    assert [e.prim.name for e in s.eqns] == ["add"]


def test_fusion_groups_elementwise_chains():
    g = tg.trace(lambda x, y: ((x * y).exp() + x).sum(), tg.ones(3), tg.ones(3))
    f = fuse_elementwise(g)
    assert f.count("fusion") == 1 and f.count("sum") == 1 and len(f.eqns) == 2
    assert "def fused_" in str(f)
    np.testing.assert_allclose(evaluate(f, [np.ones(3, np.float32)] * 2),
                               evaluate(g, [np.ones(3, np.float32)] * 2))


def test_explain_report():
    f = tg.compile(_two_layer_step)
    w1 = tg.randn(6, 4, requires_grad=True)
    w2 = tg.randn(4, 2, requires_grad=True)
    x, y = tg.randn(5, 6), tg.randn(5, 2)
    f(x, y, w1, w2, 1e-3)
    report = f.explain(x, y, w1, w2, 1e-3)
    assert list(report.stages)[0] == "traced" and list(report.stages)[-1] == "final"
    assert "jnp" in report.source or "@" in report.source
    assert any("shape (5, 6)" in g for g in report.guards)
    assert "trace" in report.timings
    text = str(report)
    assert "stages" in text and "final graph" in text


def test_pipeline_stages_are_recorded():
    g, _ = _step_graph()
    final, stages = run_pipeline(g, verify=True)
    assert [s[0] for s in stages] == ["traced"] + [n for n, _ in PIPELINE]
    assert final.meta["stage"] == PIPELINE[-1][0]


def test_compiled_dropout_draws_a_fresh_mask_each_call():
    drop = tg.nn.Dropout(0.5)
    f = tg.compile(lambda x: drop(x))
    x = tg.ones(64)
    masks = {tuple((f(x) > 0).tolist()) for _ in range(4)}
    assert len(masks) == 4
    assert set(f(x).tolist()) <= {0.0, 2.0}


def test_literal_made_a_leaf_inside_the_trace_gets_gradients():
    def f(x):
        s = tg.tensor(2.0).requires_grad_()
        (g,) = tg.autograd.grad((s * x).sum(), s)
        return g

    cf = tg.compile(f)
    x = tg.tensor([1.0, 2.0, 3.0])
    assert cf(x).item() == 6.0
    assert cf(x).item() == 6.0          # the compiled call
    assert cf(x * 2).item() == 12.0


def _sgd_step_fn(w):
    def step(x):
        loss = (w * x).sum()
        loss.backward()
        with tg.no_grad():
            w.sub_(0.1 * w.grad)
            w.grad.zero_()
        return loss
    return step


@pytest.mark.parametrize("edit", [
    lambda w: w.data.mul_(0),                    # through a .data alias
    lambda w: tg.no_grad()(lambda: w.fill_(0.0))(),
    lambda w: tg.no_grad()(lambda: w.copy_(tg.zeros(3)))(),
])
def test_eager_writes_between_compiled_calls_are_seen(edit):
    w = tg.ones(3, requires_grad=True)
    f = tg.compile(_sgd_step_fn(w))
    x = tg.ones(3)
    for _ in range(4):
        f(x)
    assert np.allclose(w.tolist(), 0.6)
    edit(w)
    f(x)
    assert np.allclose(w.tolist(), -0.1)
    assert np.all(_np(w.grad) == 0)


def test_untracked_numpy_writes_to_compiled_state_fail_loudly():
    w = tg.ones(3, requires_grad=True)
    f = tg.compile(_sgd_step_fn(w))
    for _ in range(3):
        f(tg.ones(3))
    with pytest.raises(ValueError, match="read-only"):
        w.detach().numpy()[0] = 5.0


def test_zeroed_grads_are_specialised_as_constants():
    w = tg.ones(3, requires_grad=True)
    f = tg.compile(_sgd_step_fn(w))
    for _ in range(4):
        f(tg.ones(3))
    entry = next(iter(f._cache.values()))
    assert any(type(g).__name__ == "ConstantGuard" for g in entry.guards)
    assert "grad" not in " ".join(entry.trace.graph.input_names)


def test_large_inputs_keep_a_device_copy_that_eager_writes_invalidate():
    f = tg.compile(lambda x: x.sum())
    x = tg.ones(64, 100)
    assert f(x).item() == 6400 and f(x).item() == 6400
    x.mul_(2)                       # a tracked write: the device copy is dropped
    assert f(x).item() == 12800
    x[0, 0] = 0.0
    assert f(x).item() == 12798
    with pytest.raises(ValueError, match="read-only"):
        x.numpy()[0, 0] = 5.0       # an untracked write fails loudly, never goes stale


def test_compiled_backward_accumulates_into_the_same_grad_tensor():
    w = tg.ones(3, requires_grad=True)

    def step(x):
        (w * x).sum().backward()
        return w.grad

    f = tg.compile(step)
    f(tg.ones(3))
    g = w.grad
    for _ in range(4):
        f(tg.ones(3))
    assert w.grad is g                      # in place, as eager (no new grad tensors)
    assert w.grad.tolist() == [5.0, 5.0, 5.0]
    assert w.grad.grad_fn is None
