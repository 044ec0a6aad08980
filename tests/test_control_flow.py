"""Structured control flow (tracegrad/control_flow.py): cond, while_loop, scan, fori_loop.

Each program in PROGRAMS is written once over a library namespace (tracegrad, or torch
with its higher-order ops), beside the plain Python it means. It is checked:
eager against the Python (values, gradients); against torch where torch runs it eagerly
(float32 and float64); compiled against eager over several training steps with
data that changes which branch runs (loss, grads, parameters, optimizer state); its
printed IR execs to the same values; the graph verifies after every pass.
"""
from __future__ import annotations

import copy
import types
import warnings

import numpy as np
import pytest

import tracegrad as tg
from tracegrad.ir.graph import verify
from tracegrad.ir.tracer import GraphBreak
from tracegrad.passes import PIPELINE, run_pipeline

torch = pytest.importorskip("torch")
from torch._higher_order_ops.scan import scan as torch_scan  # noqa: E402
from torch._higher_order_ops.while_loop import while_loop as torch_while_loop  # noqa: E402

TG = types.SimpleNamespace(lib=tg, cond=tg.cond, scan=tg.scan, while_loop=tg.while_loop)
TORCH = types.SimpleNamespace(lib=torch, cond=torch.cond, scan=torch_scan,
                              while_loop=torch_while_loop)


# ---- the programs: (cf, params, x) -> loss, and the Python they mean --------------

def cond_data(cf, p, x):
    # each branch reads a parameter the other does not
    out = cf.cond(x.sum() > 0, lambda a: (a * p["v"]).sin(), lambda a: (a - p["s0"]).cos(),
                  (x,))
    return out.sum()


def cond_data_ref(lib, p, x):
    out = (x * p["v"]).sin() if x.sum() > 0 else (x - p["s0"]).cos()
    return out.sum()


def cond_two_outputs(cf, p, x):
    a, b = cf.cond(x.mean() < 0.1, lambda u, v: (u @ v, (u * 2).tanh()),
                   lambda u, v: (u @ v.exp(), u.sigmoid()), (x, p["w"]))
    return a.sum() + b.pow(2).sum()


def cond_two_outputs_ref(lib, p, x):
    u, v = x, p["w"]
    a, b = (u @ v, (u * 2).tanh()) if x.mean() < 0.1 else (u @ v.exp(), u.sigmoid())
    return a.sum() + b.pow(2).sum()


def scan_rnn(cf, p, x):  # zero initial state: the carry gains gradient after step one
    def step(h, xt):
        h = cf.lib.tanh(h @ p["w"] + xt)
        return h, h * p["v"]
    c, ys = cf.scan(step, cf.lib.zeros(x.shape[1], dtype=x.dtype), x)
    return c.sum() + ys.pow(2).sum()


def scan_rnn_ref(lib, p, x):
    h, ys = lib.zeros(x.shape[1], dtype=x.dtype), []
    for xt in x:
        h = lib.tanh(h @ p["w"] + xt)
        ys.append(h * p["v"])
    return h.sum() + lib.stack(ys).pow(2).sum()


def scan_reverse_dim1(cf, p, x):  # pytree carry and ys, dim=1, reverse
    def step(c, xt):
        s = (c["s"] * p["v"]).tanh() + xt.sin()
        return {"s": s, "n": c["n"] + xt}, (s.tanh(), xt * c["n"])
    c, (y1, y2) = cf.scan(step, {"s": p["s0"], "n": cf.lib.zeros_like(p["s0"])}, x.t(),
                          dim=1, reverse=True)
    return c["s"].sum() + c["n"].sum() * 0.5 + y1.mean() + (y2 * y1).sum()


def scan_reverse_dim1_ref(lib, p, x):
    s, n, y1, y2 = p["s0"], lib.zeros_like(p["s0"]), [], []
    xt_all = x.t()
    for t in reversed(range(xt_all.shape[1])):
        xt = xt_all[:, t]
        s_new = (s * p["v"]).tanh() + xt.sin()
        y1.append(s_new.tanh())
        y2.append(xt * n)
        s, n = s_new, n + xt
    y1, y2 = lib.stack(y1[::-1], 1), lib.stack(y2[::-1], 1)
    return s.sum() + n.sum() * 0.5 + y1.mean() + (y2 * y1).sum()


def scan_cond_inside(cf, p, x):  # a data-dependent branch in every step, reading a param
    def step(h, xt):
        h2 = cf.cond(xt.sum() > 0, lambda a, b: (a * b * p["v"]).tanh(), lambda a, b: a - b,
                     (h, xt))
        return h2 @ p["w"], h2.sum()
    c, ys = cf.scan(step, p["s0"].detach(), x)
    return c.sum() + (ys * ys).sum()


def scan_cond_inside_ref(lib, p, x):
    h, ys = p["s0"].detach(), []
    for xt in x:
        h2 = (h * xt * p["v"]).tanh() if xt.sum() > 0 else h - xt
        h = h2 @ p["w"]
        ys.append(h2.sum())
    return h.sum() + (lib.stack(ys) ** 2).sum()


def fori(cf, p, x):
    if cf.lib is not tg:
        pytest.skip("fori_loop is tracegrad's (jax's) convenience")
    return tg.fori_loop(0, 3, lambda i, v: (v @ p["w"]).sin() + x[i], p["s0"]).sum()


def fori_ref(lib, p, x):
    v = p["s0"]
    for i in range(3):
        v = (v @ p["w"]).sin() + x[i]
    return v.sum()


def while_newton(cf, p, x):  # forward only: sqrt(x) by Newton steps until converged
    def body(i, y):
        return i + 1, 0.5 * (y + x.abs() / y)
    i, y = cf.while_loop(lambda i, y: (i < 30) & ((y * y - x.abs()).abs().max() > 1e-6),
                         body, (cf.lib.zeros((), dtype=cf.lib.int64), x.abs() + 1))
    return y.sum() + i


def while_newton_ref(lib, p, x):
    i, y = 0, x.abs() + 1
    while i < 30 and (y * y - x.abs()).abs().max() > 1e-6:
        i, y = i + 1, 0.5 * (y + x.abs() / y)
    return y.sum() + i


PROGRAMS = {  # name: (program, reference, x shape, differentiable, torch runs it eagerly)
    "cond_data": (cond_data, cond_data_ref, (3,), True, True),
    "cond_two_outputs": (cond_two_outputs, cond_two_outputs_ref, (3, 3), True, True),
    "scan_rnn": (scan_rnn, scan_rnn_ref, (5, 3), True, True),
    "scan_reverse_dim1": (scan_reverse_dim1, scan_reverse_dim1_ref, (4, 3), True, True),
    "scan_cond_inside": (scan_cond_inside, scan_cond_inside_ref, (4, 3), True, False),
    "fori": (fori, fori_ref, (3, 3), True, False),
    "while_newton": (while_newton, while_newton_ref, (3,), False, True),
}


def make_params(lib, dtype, seed=0):
    rng = np.random.default_rng(seed)
    raw = {"w": rng.normal(size=(3, 3)) * 0.5, "v": rng.normal(size=3),
           "s0": rng.normal(size=3)}
    return {k: lib.tensor(v, dtype=dtype, requires_grad=True) for k, v in raw.items()}


def make_data(lib, shape, dtype, n=4, seed=1):
    rng = np.random.default_rng(seed)
    # alternating signs: the predicates change between steps
    return [lib.tensor(rng.normal(size=shape) + (0.8 if k % 2 else -0.8), dtype=dtype)
            for k in range(n)]


def _np(t):
    return t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)


def _grads(lib, loss, params):
    return [None if g is None else _np(g)
            for g in lib.autograd.grad(loss, list(params.values()), allow_unused=True)]


def _close(a, b, tol, none_is_zero=False):
    if none_is_zero and (a is None) != (b is None):  # cond: zero for the branch not taken
        a, b = (np.zeros_like(b) if a is None else a), (np.zeros_like(a) if b is None else b)
    assert (a is None) == (b is None)
    if a is not None:
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_eager_matches_python_and_torch(name, dtype):
    prog, ref, shape, diff, torch_ok = PROGRAMS[name]
    tol = 1e-5 if dtype == "float32" else 1e-12
    for k, (x_tg, x_t) in enumerate(zip(make_data(tg, shape, getattr(tg, dtype), n=2),
                                        make_data(torch, shape, getattr(torch, dtype), n=2),
                                        strict=True)):
        p = make_params(tg, getattr(tg, dtype))
        loss = prog(TG, p, x_tg)
        want = ref(tg, p, x_tg)
        np.testing.assert_allclose(_np(loss), _np(want), rtol=tol, atol=tol)
        if diff:
            for a, b in zip(_grads(tg, loss, p), _grads(tg, want, p), strict=True):
                _close(a, b, tol, none_is_zero=True)
        if not torch_ok or k != (dtype == "float64"):
            continue  # torch on one of the two (each call of a torch HOP is a dynamo trace)
        pt = make_params(torch, getattr(torch, dtype))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lt = prog(TORCH, pt, x_t)
        np.testing.assert_allclose(_np(loss), _np(lt), rtol=10 * tol, atol=10 * tol)
        if diff:
            for a, b in zip(_grads(tg, prog(TG, p, x_tg), p), _grads(torch, lt, pt),
                            strict=True):
                _close(a, b, 10 * tol)


def _train_step(prog, params, opt):
    def step(x):
        opt.zero_grad()
        loss = prog(TG, params, x)
        loss.backward()
        opt.step()
        return loss
    return step


COMPILED = [("cond_data", "float32", "adam"), ("cond_two_outputs", "float64", "sgd"),
            ("scan_rnn", "float32", "adam"), ("scan_reverse_dim1", "float32", "sgd"),
            ("scan_cond_inside", "float32", "adam"), ("fori", "float64", "adam")]


@pytest.mark.parametrize("name,dtype,optim", COMPILED)
def test_compiled_training_matches_eager(name, dtype, optim):
    prog, _, shape, _, _ = PROGRAMS[name]
    dt = getattr(tg, dtype)
    runs = []
    for compiled in (False, True):
        p = make_params(tg, dt)
        opt = (tg.optim.Adam(list(p.values()), lr=0.05) if optim == "adam"
               else tg.optim.SGD(list(p.values()), lr=0.02, momentum=0.9))
        step = _train_step(prog, p, opt)
        if compiled:
            step = tg.compile(step, fullgraph=True)
        losses = [float(step(x)) for x in make_data(tg, shape, dt, n=3)]
        state = [_np(v) for s in opt.state.values() for v in s.values()
                 if isinstance(v, tg.Tensor)]
        runs.append((losses, [_np(t) for t in p.values()],
                     [None if t.grad is None else _np(t.grad) for t in p.values()], state))
        if compiled:
            assert step.explain(make_data(tg, shape, dt)[0]).graph_breaks == []
    tol = 2e-5 if dtype == "float32" else 1e-12
    (l0, p0, g0, s0), (l1, p1, g1, s1) = runs
    assert np.isfinite(l0).all()
    np.testing.assert_allclose(l0, l1, rtol=tol, atol=tol)
    for a, b in zip(p0 + g0 + s0, p1 + g1 + s1, strict=True):
        _close(a, b, tol)
    assert len(s0) == len(s1)


def test_compiled_while_loop_matches_eager_without_grad():
    x_all = make_data(tg, (3,), tg.float64)
    f = tg.compile(lambda x: while_newton(TG, None, x), fullgraph=True)
    for x in x_all:
        np.testing.assert_allclose(_np(f(x)), _np(while_newton_ref(tg, None, x)), rtol=1e-12)
    g = tg.trace(lambda x: while_newton(TG, None, x), x_all[0])
    assert g.count("while_loop") == 1


@pytest.mark.parametrize("name", [n for n in PROGRAMS if n != "while_newton"])
def test_printed_ir_runs_and_verifies_after_every_pass(name):
    prog, _, shape, _, _ = PROGRAMS[name]
    p = make_params(tg, tg.float64)
    ws = list(p.values())
    x = make_data(tg, shape, tg.float64)[1]

    def f(x, *ws):
        q = dict(zip(p, ws, strict=True))
        loss = prog(TG, q, x)
        return (loss, *[g for g in tg.autograd.grad(loss, list(ws), allow_unused=True)
                        if g is not None])

    g = tg.trace(f, x, *ws)
    assert any(getattr(e.prim, "multiple_results", False) for e in g.eqns)
    verify(g)
    want = [_np(t) for t in f(x, *ws)]
    final, stages = run_pipeline(g, verify=True)
    assert [s[0] for s in stages[1:]] == [n for n, _ in PIPELINE]
    text = str(final)
    assert "    def " in text and "_body" in text or "cond_true" in text
    got = final.to_callable()(x, *ws)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(_np(a), b, rtol=1e-10, atol=1e-12)
    from tracegrad.passes import evaluate
    for a, b in zip(evaluate(g, [x, *ws]), want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_one_scan_equation_whatever_the_length_and_bodies_name_their_source():
    w = tg.randn(3, 3, requires_grad=True)

    def f(x):
        def step(h, xt):
            return (h @ w + xt).tanh(), h
        return tg.scan(step, tg.zeros(3), x)[0].sum()

    sizes = []
    for T in (2, 50):
        g = tg.trace(f, tg.randn(T, 3))
        assert g.count("scan") == 1
        sizes.append((len(g), len(next(e for e in g.eqns if e.prim.name == "scan")
                                  .params["body"].eqns)))
    assert sizes[0] == sizes[1]
    text = str(g)
    assert "# scan body test_one_scan_equation_whatever_the_length" in text
    assert "test_control_flow.py:" in text.split("def scan_body")[1].split("\n")[1]


def test_dce_prunes_unused_scan_outputs_and_keeps_body_signatures():
    from tracegrad.passes.dce import eliminate_dead_code

    def f(x):
        c, ys = tg.scan(lambda c, x: (c + x, (x.exp(), x.sin())), tg.zeros(3), x)
        return c * 2, ys[0]

    g = tg.trace(lambda x: f(x)[0], tg.randn(4, 3))
    e = next(e for e in g.eqns if e.prim.name == "scan")
    assert len(e.outs) == 3
    d = verify(eliminate_dead_code(g))
    e2 = next(e for e in d.eqns if e.prim.name == "scan")
    assert len(e2.outs) == 1 and len(e2.params["body"].inputs) == len(e.params["body"].inputs)
    assert [q.prim.name for q in e2.params["body"].eqns] == ["add"]


PASS_CASES = [  # (pass, body, what the body keeps)
    ("cse", lambda c, x: (c + x.exp() * x.exp(), c), lambda names: names.count("exp") == 1),
    ("simplify", lambda c, x: (c * 1.0 + x, c), lambda names: "mul" not in names),
    ("fusion", lambda c, x: ((c + x).sin().exp(), c), lambda names: names == ["fusion"]),
]


@pytest.mark.parametrize("name,body,check", PASS_CASES, ids=[c[0] for c in PASS_CASES])
def test_passes_recurse_into_bodies(name, body, check):
    from tracegrad.passes import PIPELINE
    fn = dict(PIPELINE)[name]
    x = tg.randn(4, 3)
    g = tg.trace(lambda x: tg.scan(body, tg.zeros(3), x), x)
    out = verify(fn(g))
    e = next(e for e in out.eqns if e.prim.name == "scan")
    assert check([q.prim.name for q in e.params["body"].eqns]), str(out)
    assert len(e.params["body"].inputs) == len(
        next(q for q in g.eqns if q.prim.name == "scan").params["body"].inputs)
    for a, b in zip(out.to_callable()(x), g.to_callable()(x), strict=True):
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-6)


def test_eager_rnn_is_bit_identical_to_its_python_loop():
    from tracegrad.nn import rnn
    tg.manual_seed(0)
    m = tg.nn.LSTM(3, 4)
    x = tg.randn(6, 2, 3)
    out, (h, c) = m(x)
    xw = tg.nn.functional.linear(x, m.weight_ih_l0, m.bias_ih_l0)
    hh = cc = tg.zeros(2, 4)
    outs = []
    for t in range(6):
        hh, cc = rnn._lstm_step(xw[t], hh, cc, m.weight_hh_l0, m.bias_hh_l0, None)
        outs.append(hh)
    np.testing.assert_array_equal(_np(out), _np(tg.stack(outs)))
    np.testing.assert_array_equal(_np(c[0]), _np(cc))


def test_cond_predicate_is_data_and_both_branches_compile_once():
    def f(x):
        return tg.cond(x.sum() > 0, lambda a: a * 2, lambda a: a - 1, (x,))

    cf = tg.compile(f, fullgraph=True)
    for v in (1.0, -1.0, 2.0, -3.0):
        x = tg.full((2,), v)
        np.testing.assert_array_equal(_np(cf(x)), _np(x * 2 if v > 0 else x - 1))
    assert (cf.misses, cf.hits) == (1, 3)  # traced once; then the compiled program


def test_cond_returning_an_operand_unchanged_returns_a_copy_when_traced():
    x = tg.randn(3)
    cf = tg.compile(lambda x: tg.cond(x.sum() > 0, lambda a: a, lambda a: -a, (x,)),
                    fullgraph=True)
    for v in (x, -x, x.abs(), -x.abs()):
        np.testing.assert_array_equal(_np(cf(v)), _np(v if v.sum() > 0 else -v))


def test_scan_reads_the_same_tensor_as_carry_and_through_its_closure():
    h0 = tg.ones(2)
    f = lambda x: tg.scan(lambda c, x: (c + h0 * x, c), h0, x)  # noqa: E731
    cf = tg.compile(f, fullgraph=True)
    x = tg.arange(1.0, 7.0).reshape(3, 2)
    for _ in range(2):
        for a, b in zip(cf(x), f(x), strict=True):
            np.testing.assert_array_equal(_np(a), _np(b))


def test_lstm_time_loop_is_one_scan_and_graph_size_is_flat():
    tg.manual_seed(0)
    lstm = tg.nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    counts = []
    for T in (3, 40):
        x = tg.randn(T, 2, 3)
        g = tg.trace(lambda x: lstm(x)[0].sum(), x)
        assert g.count("scan") == 4  # layers x directions
        counts.append(len(g))
    assert counts[0] == counts[1]


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_compiled_rnn_training_matches_eager(mode):
    tg.manual_seed(0)
    kw = {"proj_size": 2, "num_layers": 2} if mode == "LSTM" else {"bidirectional": True}
    m1 = getattr(tg.nn, mode)(3, 4, batch_first=True, **kw)
    m2 = copy.deepcopy(m1)
    xs = [tg.randn(2, 5, 3) for _ in range(3)]  # (the RNN's tanh loop is scan_rnn above)
    results = []
    for m, compiled in ((m1, False), (m2, True)):
        opt = tg.optim.Adam(m.parameters(), lr=0.01)

        def step(x, m=m, opt=opt):
            opt.zero_grad()
            out, h = m(x)
            loss = out.pow(2).mean() + (h[0] if mode == "LSTM" else h).sum()
            loss.backward()
            opt.step()
            return loss

        fn = tg.compile(step, fullgraph=True) if compiled else step
        results.append(([float(fn(x)) for x in xs], [_np(p) for p in m.parameters()]))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_compiled_forward_differentiated_outside_through_scan():
    w = tg.randn(3, 3, dtype=tg.float64, requires_grad=True)
    x = tg.randn(4, 3, dtype=tg.float64)
    f = lambda x: scan_rnn(TG, {"w": w, "v": w[0]}, x)  # noqa: E731
    cf = tg.compile(f, fullgraph=True)
    for _ in range(2):
        w.grad = None
        cf(x).backward()
        got = _np(w.grad)
        w.grad = None
        f(x).backward()
        np.testing.assert_allclose(got, _np(w.grad), rtol=1e-12)


def test_create_graph_through_scan_and_cond_eager_and_compiled():
    def f(x, w):
        h = tg.scan(lambda c, xt: ((c * w + xt).tanh(), c), tg.zeros(3, dtype=x.dtype), x)[0]
        h = tg.cond(h.sum() > 0, lambda a: a.sin(), lambda a: a * a, (h,))
        g, = tg.autograd.grad(h.sum(), w, create_graph=True)
        return (g * g).sum()

    def ref(x, w):
        c = tg.zeros(3, dtype=x.dtype)
        for xt in x:
            c = (c * w + xt).tanh()
        h = c.sin() if c.sum() > 0 else c * c
        g, = tg.autograd.grad(h.sum(), w, create_graph=True)
        return (g * g).sum()

    x = tg.randn(4, 3, dtype=tg.float64)
    w = tg.randn(3, dtype=tg.float64, requires_grad=True)
    gg = tg.autograd.grad(f(x, w), w)[0]
    np.testing.assert_allclose(_np(gg), _np(tg.autograd.grad(ref(x, w), w)[0]), rtol=1e-12)

    def step(x, w):
        loss = f(x, w)
        loss.backward()
        return loss

    cs = tg.compile(step)
    for _ in range(2):
        w.grad = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cs(x, w)
        np.testing.assert_allclose(_np(w.grad), _np(gg), rtol=1e-10)


# ---- errors ------------------------------------------------------------------------

def _trace(fn, *args):
    return tg.trace(fn, *args)


ERRORS = [
    ("cond branches give different shapes",
     lambda x: tg.cond(x.sum() > 0, lambda a: a, lambda a: a.sum(), (x,)),
     RuntimeError, r"true_fn .* gives f32\[3\] at leaf 0 but false_fn .* gives f32\[\]"),
    ("cond branches give different dtypes",
     lambda x: tg.cond(x.sum() > 0, lambda a: a, lambda a: a.double(), (x,)),
     RuntimeError, r"f32\[3\] .* f64\[3\]"),
    ("cond branches give different structures",
     lambda x: tg.cond(x.sum() > 0, lambda a: (a, a), lambda a: a, (x,)),
     RuntimeError, "same structure"),
    ("cond predicate not bool",
     lambda x: tg.cond(x.sum(), lambda a: a, lambda a: a, (x,)),
     RuntimeError, "one bool element"),
    ("cond operands not a tuple",
     lambda x: tg.cond(True, lambda a: a, lambda a: a, x),
     RuntimeError, "tuple or list"),
    ("scan carry changes shape",
     lambda x: tg.scan(lambda c, xt: (c.sum(), c), x[0], x),
     RuntimeError, r"init gives f32\[3\] at leaf 0 but the carry .* gives f32\[\]"),
    ("scan xs lengths differ",
     lambda x: tg.scan(lambda c, xt: (c, c), x[0], (x, x[:2])),
     RuntimeError, "same size along dim"),
    ("scan zero steps",
     lambda x: tg.scan(lambda c, xt: (c, c), x[0], x[:0]),
     RuntimeError, "at least one step"),
    ("scan dim out of range",
     lambda x: tg.scan(lambda c, xt: (c, c), x[0], x, dim=2),
     IndexError, "out of range"),
    ("scan body returns no pair",
     lambda x: tg.scan(lambda c, xt: c, x[0], x),
     RuntimeError, "must return a pair"),
    ("while body changes dtype",
     lambda x: tg.while_loop(lambda a: a.sum() < 10, lambda a: (a.double() + 1,), (x[0],)),
     RuntimeError, r"f32\[3\] .* f64\[3\]"),
]


@pytest.mark.parametrize("what,fn,exc,match", ERRORS, ids=[e[0] for e in ERRORS])
@pytest.mark.parametrize("traced", [False, True])
def test_bad_input_is_a_clear_error(what, fn, exc, match, traced):
    x = tg.randn(3, 3)
    with pytest.raises(exc, match=match):
        (lambda: _trace(lambda x: fn(x[0] if "cond" in what else x), x))() if traced \
            else fn(x[0] if "cond" in what else x)


W = tg.randn(3)
BREAKS = [
    ("in-place write to outside state",
     lambda c, x: (c + W.add_(1.0), c), "writes in place to a tensor from outside"),
    ("in-place write to a carry",
     lambda c, x: (c.mul_(2.0), c), "writes in place to a tensor from outside"),
    ("random numbers", lambda c, x: (c + tg.randn(3), c), "draws random numbers"),
    (".item()", lambda c, x: (c * float(x.sum().item()), c), "needs the value"),
]


@pytest.mark.parametrize("what,body,match", BREAKS, ids=[b[0] for b in BREAKS])
def test_impure_bodies_are_graph_breaks_naming_the_body(what, body, match):
    def f(x):
        return tg.scan(body, tg.zeros(3), x)[0]

    x = tg.randn(2, 3)
    with pytest.raises(GraphBreak, match=match) as info:
        tg.compile(f, fullgraph=True)(x)
    assert "scan body" in str(info.value) and "test_control_flow.py" in str(info.value)
    w0 = W.clone()
    want = f(x)  # eagerly the Python runs; compiled without fullgraph it runs eagerly too
    w1 = W.clone()
    W.copy_(w0)
    if what == "random numbers":
        tg.manual_seed(3)
        want = f(x)
        tg.manual_seed(3)
    with pytest.warns(UserWarning):
        got = tg.compile(f)(x)
    if what != "random numbers":
        np.testing.assert_array_equal(_np(W), _np(w1))
    np.testing.assert_allclose(_np(got), _np(want))


def test_differentiating_a_compiled_while_loop_is_a_clear_graph_break():
    w = tg.randn(3, requires_grad=True)

    def f(x):
        i, y = tg.while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, y * w), (tg.tensor(0), x))
        return y.sum()

    x = tg.randn(3)
    with pytest.raises(GraphBreak, match="compiled while_loop is forward-only"):
        tg.compile(f, fullgraph=True)(x)
    # eagerly the tape differentiates what ran, as torch's while_loop does
    f(x).backward()
    np.testing.assert_allclose(_np(w.grad), _np(3 * w.detach() ** 2 * x), rtol=1e-5)
    # and the graph-level rule refuses too
    from tracegrad.control_flow import while_p
    with pytest.raises(RuntimeError, match="forward-only"):
        while_p.graph_vjp(None, [None])
