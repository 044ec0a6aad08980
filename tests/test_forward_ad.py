"""Forward mode (tracegrad.autograd.forward_ad): every op-table row's tangents against
its VJP (<J v, u> == <v, J^T u>), a sample against torch.func.jvp, explicit JVP rules
against the derived (double-VJP) ones, forward-over-reverse, levels and errors."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from op_table import ROWS, ROWS_BY_NAME, as_outputs, grad_outputs, make_inputs, make_tensors

import tracegrad as tg
import tracegrad.autograd.forward_ad as fwAD
from tracegrad import primitives as P
from tracegrad.autograd.forward_ad import derived_jvp
from tracegrad.tensor import apply

# Forward mode does not follow an in-place write through a view (the tangent of the base
# stays the old one): y = x * 1; y[0].mul_(3) has the same defect. Known, strict xfail.
_VIEW_WRITE_ROWS = {"diagonal_inplace"}
FIRST_SAMPLES = [(r, r.shapes[0]) if r.name not in _VIEW_WRITE_ROWS else pytest.param(
    (r, r.shapes[0]), marks=pytest.mark.xfail(strict=True, reason="fw AD: write through view"))
    for r in ROWS if r.grad]


def _duals(row, arrays, seed=3):
    """Leaves (float64, requiring grad as the row says), their duals and the tangents."""
    xs = make_tensors(tg, arrays, tg.float64, row)
    rng = np.random.default_rng(seed)
    vs = [tg.tensor(rng.standard_normal(a.shape)) if x.requires_grad else None
          for a, x in zip(arrays, xs, strict=True)]
    duals = [fwAD.make_dual(x, v) if v is not None else x for x, v in zip(xs, vs, strict=True)]
    return xs, vs, duals


@pytest.mark.parametrize("pair", FIRST_SAMPLES, ids=lambda p: p[0].name)
def test_tangents_transpose_the_vjp(pair):
    """<J v, u> == <v, J^T u> for every differentiable row (forward vs reverse mode)."""
    row, shapes = pair
    arrays = make_inputs(row, shapes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with fwAD.dual_level():
            xs, vs, duals = _duals(row, arrays)
            outs = as_outputs(row.fn(tg, *duals))
            tangents = [fwAD.unpack_dual(o).tangent for o in outs]
        outs_g = grad_outputs(outs)
        if not outs_g:
            return
        rng = np.random.default_rng(5)
        us = [tg.tensor(rng.standard_normal(tuple(o.shape))) for o in outs_g]
        leaves = [x for x in xs if x.requires_grad]
        grads = tg.autograd.grad(outs_g, leaves, us, allow_unused=True)
    lhs = 0.0
    for o, t in zip(outs, tangents, strict=True):
        if o.dtype.is_floating_point and o.requires_grad:
            u = us[[id(q) for q in outs_g].index(id(o))]
            if t is not None:
                assert t.shape == o.shape
                lhs += float((t * u).sum())
    given = [v for v in vs if v is not None]
    rhs = sum(float((g * v).sum()) for g, v in zip(grads, given, strict=True)
              if g is not None)
    f32 = row.fd_eps > 1e-6  # the row casts to float32 inside
    assert lhs == pytest.approx(rhs, rel=1e-5 if f32 else 1e-7, abs=1e-9)


TORCH_SAMPLE = ["add", "mul", "div", "pow", "exp", "log", "sin", "tanh", "sigmoid", "gelu",
                "sqrt", "clamp_both", "maximum", "where", "matmul_bcast", "sum_dim", "mean_dim",
                "prod_dim", "amax_dim", "var_dim", "norm_p3", "logsumexp", "cumsum", "softmax",
                "log_softmax", "bce_with_logits", "permute", "expand", "cat", "getitem_index",
                "gather", "scatter_add", "setitem_slice", "mul_", "to_dtype"]


@pytest.mark.parametrize("name", [n for n in TORCH_SAMPLE if n in ROWS_BY_NAME])
def test_jvp_matches_torch_func(name):
    torch = pytest.importorskip("torch")
    row = ROWS_BY_NAME[name]
    arrays = make_inputs(row, row.shapes[0])
    want_grad = [row.grad_inputs is None or i in row.grad_inputs for i in range(len(arrays))]
    rng = np.random.default_rng(3)
    tangents = [rng.standard_normal(a.shape) for a in arrays]
    fixed = [a for a, w in zip(arrays, want_grad, strict=True) if not w]

    def call(T, diff):
        it, fx = iter(diff), iter(fixed)
        args = [next(it) if w else T.tensor(next(fx)) for w in want_grad]
        return tuple(as_outputs(row.fn(T, *args)))

    prim = tuple(torch.tensor(a) for a, w in zip(arrays, want_grad, strict=True) if w)
    tan = tuple(torch.tensor(t) for t, w in zip(tangents, want_grad, strict=True) if w)
    _, want = torch.func.jvp(lambda *d: call(torch, d), prim, tan)
    with fwAD.dual_level():
        duals = [fwAD.make_dual(tg.tensor(a), tg.tensor(t))
                 for a, t, w in zip(arrays, tangents, want_grad, strict=True) if w]
        got = [fwAD.unpack_dual(o).tangent for o in call(tg, duals)]
    for g, w in zip(got, want, strict=True):
        if not w.dtype.is_floating_point:
            continue
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-9, atol=1e-12)


# logcumsumexp's VJP (PyTorch's) takes log|g| of the cotangent's sign parts to stay stable,
# so it is linear in g but not through linear ops: the double-VJP trick at g = 0 gives 0.
# Its explicit rule is checked against the VJP by test_tangents_transpose_the_vjp instead.
EXPLICIT = [p for p in P.PRIMITIVES.values() if p.jvp is not None and not callable(p.jvp)
            and not p.variadic and p.name != "logcumsumexp"]


def _sample_args(prim, rng):
    """Float64 sample inputs for a non-variadic primitive with an explicit rule."""
    n = len(prim.jvp)
    params = {}
    x = rng.uniform(0.5, 1.5, (2, 3))
    if prim.name == "matmul":
        return [x, rng.standard_normal((3, 4))], params
    if prim.name == "where":
        return [x > 1.0, x, rng.standard_normal((2, 3))], params
    if prim.name == "gather":
        return [x, np.array([[0, 2, 1], [1, 1, 0]])], {"axis": 1}
    if prim.name == "conv":
        return [rng.standard_normal((2, 4, 5, 4)), rng.standard_normal((6, 2, 3, 2))], {
            "stride": (2, 1), "padding": ((1, 0), (1, 1)), "dilation": (1, 2),
            "lhs_dilation": (1, 1), "groups": 2}
    params = {"sum": {"axis": (1,), "keepdim": False}, "mean": {"axis": (0,), "keepdim": True},
              "logsumexp": {"axis": (1,), "keepdim": False}, "cumsum": {"axis": 1},
              "softmax": {"axis": 1}, "log_softmax": {"axis": 0}, "reshape": {"shape": (3, 2)},
              "permute": {"perm": (1, 0)}, "broadcast_to": {"shape": (4, 2, 3)},
              "flip": {"axes": (0,)}, "clamp": {"min": 0.7, "max": 1.2},
              "cast": {"dtype": tg.float32}, "gelu": {"approximate": "none"},
              "pow_scalar": {"exponent": 2.5}, "rpow_scalar": {"base": 2.0},
              "polygamma": {"n": 2},

              "cumprod": {"axis": 1}, "diagonal": {"offset": 1, "dim1": 0, "dim2": 1},
              "diag_embed": {"offset": 0, "dim1": 0, "dim2": 2, "shape": (3, 2, 3)},
              "unfold": {"dim": 1, "size": 2, "step": 1},
              }.get(prim.name, {})
    return [x] + [rng.uniform(0.5, 1.5, (2, 3)) for _ in range(n - 1)], params


@pytest.mark.parametrize("prim", EXPLICIT, ids=lambda p: p.name)
def test_explicit_rule_equals_derived(prim):
    """Each explicit JVP rule gives what the VJP-derived JVP gives (the baseline)."""
    rng = np.random.default_rng(0)
    arrays, params = _sample_args(prim, rng)
    args = tuple(tg.tensor(a) for a in arrays)
    out = apply(prim, args, params)
    tangents = [tg.tensor(rng.standard_normal(a.shape)) if a.dtype.kind == "f" else None
                for a in arrays]
    explicit = None
    for t, rule in zip(tangents, prim.jvp, strict=False):
        if t is not None and rule is not None:
            c = rule(t, out, *args, **params)
            explicit = c if explicit is None else explicit + c
    explicit = tg.broadcast_to(explicit, out.shape).to(out.dtype)
    derived = derived_jvp(prim, args, params, out, tangents)
    np.testing.assert_allclose(explicit.numpy(), derived.numpy(), rtol=1e-6, atol=1e-9)


def test_forward_over_reverse_through_saved_outputs():
    """The tangent of a gradient is H v, also where VJP rules read the op's output."""
    torch = pytest.importorskip("torch")
    x0 = np.array([0.3, -0.7, 1.1])
    v0 = np.array([1.0, 0.5, -2.0])

    def f(T, x):
        return (x.exp() * x.tanh() + x.sigmoid() ** 2).sum()

    with fwAD.dual_level():
        x = fwAD.make_dual(tg.tensor(x0, requires_grad=True), tg.tensor(v0))
        (g,) = tg.autograd.grad(f(tg, x), x, create_graph=True)
        hv = fwAD.unpack_dual(g).tangent
    xt = torch.tensor(x0)
    want = torch.autograd.functional.hvp(lambda x: f(torch, x), xt, torch.tensor(v0))[1]
    np.testing.assert_allclose(hv.detach().numpy(), want.numpy(), rtol=1e-10)


def test_reverse_over_forward():
    """A tangent is an ordinary recorded tensor: it can be differentiated."""
    x = tg.tensor([0.5, 1.5], requires_grad=True)
    v = tg.tensor([1.0, 2.0])
    with fwAD.dual_level():
        y = fwAD.make_dual(x, v).sin().sum()
        t = fwAD.unpack_dual(y).tangent      # sum(cos(x) * v)
    (g,) = tg.autograd.grad(t, x)
    np.testing.assert_allclose(g.numpy(), (-np.sin(x.detach().numpy()) * v.numpy()))


def test_levels_and_dual_api():
    x = tg.tensor([1.0, 2.0])
    with fwAD.dual_level() as level:
        d = fwAD.make_dual(x, tg.ones(2), level=level)
        p, t = fwAD.unpack_dual(d)
        assert isinstance(fwAD.unpack_dual(d), fwAD.UnpackedDualTensor)
        assert fwAD.unpack_dual(p).tangent is None and p.tolist() == [1.0, 2.0]
        y = d * 3
        with pytest.raises(RuntimeError, match="Nested"):
            fwAD.enter_dual_level()
        with pytest.raises(RuntimeError, match="size"):
            fwAD.make_dual(x, tg.ones(3))
        z = d.clone()
        z.mul_(d)                          # in place: the tangent follows
        assert fwAD.unpack_dual(z).tangent.tolist() == [2.0, 4.0]
        with tg.no_grad():                 # forward AD does not depend on grad mode
            assert fwAD.unpack_dual(d.exp()).tangent is not None
        assert fwAD.unpack_dual(d.detach()).tangent is None
    assert fwAD.unpack_dual(y).tangent is None   # dropped when the level closed
    with pytest.raises(RuntimeError, match="dual_level"):
        fwAD.make_dual(x, tg.ones(2))


def test_tangents_under_compile():
    def f(x, v):
        with fwAD.dual_level():
            y = (fwAD.make_dual(x, v).sin() * 2).prod()   # prod: the derived rule
            return fwAD.unpack_dual(y).tangent

    c = tg.compile(f)
    x, v = tg.tensor([0.2, 0.4, 0.9]), tg.tensor([1.0, -1.0, 0.5])
    want = f(x, v)
    for _ in range(2):
        np.testing.assert_allclose(c(x, v).numpy(), want.numpy(), rtol=1e-6)
    assert c.cache_info().hits == 1
