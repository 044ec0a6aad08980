"""tracegrad.autograd.functional: the seed examples, finite differences, torch parity
over a sample of op-table rows, return conventions, strict mode, create_graph, and
the transforms under tracegrad.compile (one XLA program, cached)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from op_table import ROWS_BY_NAME, as_outputs, make_inputs

import tracegrad as tg
from tracegrad.autograd import functional as F

SAMPLE = ["add", "mul", "div", "pow", "exp", "log", "sin", "tanh", "sigmoid", "gelu", "sqrt",
          "rsqrt", "clamp_both", "maximum", "where", "matmul_2d", "matmul_bcast", "sum_dim",
          "mean_dim", "prod_dim", "amax_dim", "var_dim", "norm_p3", "logsumexp", "cumsum",
          "softmax", "log_softmax", "bce_with_logits", "permute", "expand", "cat", "flip",
          "getitem_index", "gather", "scatter_add", "setitem_slice", "div_", "reciprocal"]
SAMPLE = [n for n in SAMPLE if n in ROWS_BY_NAME]


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def assert_same(got, want, rtol=1e-8, atol=1e-10):
    """Nested tuples of tensors (tracegrad vs torch or NumPy), structure included."""
    if isinstance(want, (tuple, list)):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert_same(g, w, rtol, atol)
        return
    w = want.detach().numpy() if hasattr(want, "detach") else np.asarray(want)
    assert tuple(got.shape) == w.shape
    np.testing.assert_allclose(got.detach().numpy(), w, rtol=rtol, atol=atol)


def _row_fn(T, row, n_in):
    """The row as a function of its inputs, with one tensor (or a tuple) out."""
    def f(*xs):
        outs = [o for o in as_outputs(row.fn(T, *xs)) if o.dtype.is_floating_point]
        return outs[0] if len(outs) == 1 else tuple(outs)
    return f


def _scalar_fn(T, row, n_in, weights):
    """A scalar function of the row: sum(out * w) over its float outputs."""
    f = _row_fn(T, row, n_in)

    def s(*xs):
        outs = _as_tuple(f(*xs))
        total = None
        for o, w in zip(outs, weights, strict=True):
            term = (o * T.tensor(w)).sum()
            total = term if total is None else total + term
        return total
    return s


def _setup(row):
    arrays = make_inputs(row, row.shapes[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        outs = _as_tuple(_row_fn(tg, row, len(arrays))(*[tg.tensor(a) for a in arrays]))
    rng = np.random.default_rng(7)
    weights = [rng.standard_normal(tuple(o.shape)) for o in outs]
    vs = [rng.standard_normal(a.shape) for a in arrays]
    return arrays, weights, vs


# ---- the seed programs ----------------------------------------------------------

def exp_adder(x, y):
    return 2 * x.exp() + 3 * y


def do_some_doubling(x):
    y = x * 2
    while y.data.norm() < 1000:
        y = y * 2
    return y


def test_seed_exp_adder_jacobians():
    x, y = tg.tensor([0.7212]), tg.tensor([0.2079])
    jx, jy = F.jacobian(exp_adder, (x, y))
    assert_same((jx, jy), (2 * np.exp(x.numpy())[None], np.array([[3.0]])), rtol=1e-6)
    x3, y3 = tg.tensor([0.2080, 0.2604, 0.4415]), tg.tensor([0.5220, 0.9867, 0.4288])
    jx, jy = tg.autograd.functional.jacobian(exp_adder, (x3, y3))
    assert_same((jx, jy), (np.diag(2 * np.exp(x3.numpy())), 3 * np.eye(3)), rtol=1e-6)
    assert repr(jy) == "tensor([[3., 0., 0.],\n        [0., 3., 0.],\n        [0., 0., 3.]])"


def test_seed_doubling_vjp():
    x = tg.tensor([0.3, -0.2, 0.5])
    out, g = F.vjp(do_some_doubling, x, v=tg.tensor([0.1, 1.0, 0.0001]))
    assert out.tolist() == pytest.approx([614.4, -409.6, 1024.0], rel=1e-6)
    assert g.tolist() == pytest.approx([204.8, 2048.0, 0.2048], rel=1e-6)  # 2**11 * v
    assert out.grad_fn is None and g.grad_fn is None


def test_seed_programs_against_torch():
    torch = pytest.importorskip("torch")
    x, y = np.array([0.2080, 0.2604, 0.4415]), np.array([0.5220, 0.9867, 0.4288])
    want = torch.autograd.functional.jacobian(exp_adder, (torch.tensor(x), torch.tensor(y)))
    assert_same(F.jacobian(exp_adder, (tg.tensor(x), tg.tensor(y))), want)
    want = torch.autograd.functional.hessian(lambda x, y: exp_adder(x, y).sum(),
                                             (torch.tensor(x), torch.tensor(y)))
    assert_same(F.hessian(lambda x, y: exp_adder(x, y).sum(), (tg.tensor(x), tg.tensor(y))),
                want)


# ---- finite differences ---------------------------------------------------------

def _numeric_jacobian(f, arrays, eps=1e-6):
    """Central differences: J[out..., in...] for each input."""
    cols = []
    for j, a in enumerate(arrays):
        rows = []
        for k in range(a.size):
            def at(delta, j=j, k=k):
                b = [x.copy() for x in arrays]
                b[j].reshape(-1)[k] += delta
                return f(*[tg.tensor(x) for x in b]).numpy()
            rows.append((at(eps) - at(-eps)) / (2 * eps))
        out_shape = rows[0].shape
        cols.append(np.moveaxis(np.stack(rows), 0, -1).reshape(out_shape + a.shape))
    return cols


@pytest.mark.parametrize("name", ["mul", "div", "tanh", "matmul_bcast", "softmax", "prod_dim",
                                  "norm_p3", "cat"])
def test_jacobian_and_hessian_vs_finite_differences(name):
    row = ROWS_BY_NAME[name]
    arrays, weights, _ = _setup(row)
    f = _row_fn(tg, row, len(arrays))
    xs = tuple(tg.tensor(a) for a in arrays)
    got = F.jacobian(f, xs)
    for g, want in zip(got, _numeric_jacobian(f, arrays), strict=True):
        np.testing.assert_allclose(g.numpy(), want, rtol=1e-6, atol=1e-7)
    s = _scalar_fn(tg, row, len(arrays), weights)
    h = F.hessian(s, xs)

    def grad_j(j):
        return lambda *ys: F.vjp(s, ys)[1][j]
    for j in range(len(xs)):
        for i, want in enumerate(_numeric_jacobian(grad_j(j), arrays)):
            np.testing.assert_allclose(h[j][i].numpy(), want, rtol=1e-5, atol=1e-6)


# ---- torch parity over a sample of the op table ------------------------------------

@pytest.mark.parametrize("name", SAMPLE)
def test_transforms_match_torch(name):
    torch = pytest.importorskip("torch")
    row = ROWS_BY_NAME[name]
    arrays, weights, vs = _setup(row)
    n = len(arrays)
    TF = torch.autograd.functional

    def both(call):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ours = call(tg, F)
            theirs = call(torch, TF)
        assert_same(ours, theirs, rtol=1e-7, atol=1e-9)

    def ins(T):
        return tuple(T.tensor(a) for a in arrays)

    def vins(T):
        return tuple(T.tensor(v) for v in vs)

    def wouts(T):
        w = tuple(T.tensor(w) for w in weights)
        return w if len(w) > 1 else w[0]

    both(lambda T, FF: FF.jacobian(_row_fn(T, row, n), ins(T)))
    both(lambda T, FF: FF.vjp(_row_fn(T, row, n), ins(T), wouts(T)))
    both(lambda T, FF: FF.jvp(_row_fn(T, row, n), ins(T), vins(T)))
    if row.gradgrad:
        both(lambda T, FF: FF.hessian(_scalar_fn(T, row, n, weights), ins(T)))
        both(lambda T, FF: FF.hvp(_scalar_fn(T, row, n, weights), ins(T), vins(T)))
        both(lambda T, FF: FF.vhp(_scalar_fn(T, row, n, weights), ins(T), vins(T)))


def test_forward_mode_strategies_match_reverse():
    x = tg.tensor([[0.3, -1.2, 0.5]], dtype=tg.float64)
    y = tg.tensor([0.7, 0.1, -0.4], dtype=tg.float64)

    def f(x, y):
        return (x * y).sin().sum(0), (x.exp() @ y.reshape(3, 1)).tanh()
    rev = F.jacobian(f, (x, y))
    assert_same(F.jacobian(f, (x, y), strategy="forward-mode", vectorize=True), rev)

    def s(x, y):
        return ((x * y).sin() * x).sum()
    assert_same(F.hessian(s, (x, y), outer_jacobian_strategy="forward-mode"), F.hessian(s, (x, y)))
    with pytest.raises(ValueError, match="forward-mode"):
        F.jacobian(f, (x, y), strategy="sideways")


# ---- conventions, strict, create_graph ---------------------------------------------

def test_return_conventions():
    x, y = tg.tensor([1.0, 2.0]), tg.tensor([3.0])
    assert isinstance(F.jacobian(lambda x: x * 2, x), tg.Tensor)
    assert F.jacobian(lambda x: x * 2, x).shape == (2, 2)
    jac = F.jacobian(lambda x, y: (x * y, y.sum()), (x, y))
    assert [[tuple(b.shape) for b in row] for row in jac] == [[(2, 2), (2, 1)], [(2,), (1,)]]
    assert isinstance(F.jacobian(lambda x: (x, x * 2), x), tuple)
    h = F.hessian(lambda x, y: (x * x * y).sum(), (x, y))
    assert [[tuple(b.shape) for b in row] for row in h] == [[(2, 2), (2, 1)], [(1, 2), (1, 1)]]
    out, v = F.vjp(lambda x: (x ** 2).sum(), x)   # v=None: a single-element output
    assert float(out) == 5.0 and v.tolist() == [2.0, 4.0]
    out, jv = F.jvp(lambda x: x ** 2, tg.tensor([3.0]))
    assert jv.tolist() == [6.0]
    with pytest.raises(RuntimeError, match="single element"):
        F.vjp(lambda x: x * 2, x)
    with pytest.raises(RuntimeError, match="single Tensor"):
        F.hessian(lambda x: (x, x), x)
    with pytest.raises(RuntimeError, match="single element"):
        F.hessian(lambda x: x * 2, x)
    with pytest.raises(TypeError, match="Tensor or a tuple of Tensors"):
        F.jacobian(lambda x: x, [x])
    with pytest.raises(RuntimeError, match="invalid size"):
        F.jvp(lambda x: x, x, tg.ones(3))


def test_independent_outputs_zero_or_strict_error():
    x, y = tg.tensor([1.0, 2.0]), tg.tensor([3.0, 4.0])
    jx, jy = F.jacobian(lambda x, y: x * 2, (x, y))
    assert jy.tolist() == [[0.0, 0.0], [0.0, 0.0]]
    with pytest.raises(RuntimeError, match="independent of input 1"):
        F.jacobian(lambda x, y: x * 2, (x, y), strict=True)
    with pytest.raises(RuntimeError, match="does not require gradients"):
        F.vjp(lambda x: tg.ones(2), x, tg.ones(2), strict=True)
    assert F.hessian(lambda x: x.sum(), x).tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_create_graph_keeps_results_differentiable():
    x = tg.tensor([0.5, 1.5], requires_grad=True)
    _, g = F.vjp(lambda x: (x ** 3).sum(), x, create_graph=True)
    assert g.requires_grad
    (gg,) = tg.autograd.grad(g.sum(), x)
    np.testing.assert_allclose(gg.numpy(), 6 * x.detach().numpy())
    j = F.jacobian(lambda x: x.sin(), x, create_graph=True)
    (gj,) = tg.autograd.grad(j.sum(), x)
    np.testing.assert_allclose(gj.numpy(), -np.sin(x.detach().numpy()))
    _, jv = F.jvp(lambda x: x.exp(), x, tg.ones(2), create_graph=True)
    (gjv,) = tg.autograd.grad(jv.sum(), x)
    np.testing.assert_allclose(gjv.numpy(), np.exp(x.detach().numpy()))
    assert not F.jacobian(lambda x: x.sin(), x).requires_grad


def test_jvp_and_hvp_inside_an_open_dual_level_use_the_double_vjp():
    import tracegrad.autograd.forward_ad as fwAD
    x, v = tg.tensor([0.5, 1.5]), tg.tensor([1.0, -1.0])
    want_jv = F.jvp(lambda x: x.sin() * x, x, v)[1]
    want_hv = F.hvp(lambda x: (x.sin() * x).sum(), x, v)[1]
    with fwAD.dual_level():
        assert_same(F.jvp(lambda x: x.sin() * x, x, v)[1], want_jv.numpy())
        assert_same(F.hvp(lambda x: (x.sin() * x).sum(), x, v)[1], want_hv.numpy())


# ---- under tracegrad.compile ----------------------------------------------------------

def _f(x):
    return (x.sin() * x.exp()).sum() + (x[0] * x[1]) ** 2


@pytest.mark.parametrize("transform", [
    lambda x: F.hessian(_f, x),
    lambda x: F.jacobian(lambda x: x.tanh() * x, x),
    lambda x: F.jvp(lambda x: x.tanh() * x.sum(), x, x * 0 + 1)[1],
    lambda x: F.hvp(_f, x, tg.ones(3))[1],
    lambda x: F.vjp(lambda x: x.exp() * 2, x, x)[1],
], ids=["hessian", "jacobian", "jvp", "hvp", "vjp"])
def test_compiled_transform_equals_eager_and_is_cached(transform):
    x = tg.tensor([0.3, -0.5, 0.8])
    want = transform(x)
    c = tg.compile(transform)
    for _ in range(2):
        got = c(x)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    assert c.cache_info().hits == 1 and c.cache_info().misses == 1
    x2 = tg.tensor([1.1, 0.2, -0.4])
    np.testing.assert_allclose(c(x2).numpy(), transform(x2).numpy(), rtol=1e-5, atol=1e-6)
    assert c.cache_info().hits == 2
