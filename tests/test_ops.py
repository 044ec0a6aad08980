"""Table-driven op tests (no torch needed): forward vs NumPy, gradients vs finite
differences (first and second order), shape rules vs implementations, table
coverage of the primitives, kinks and ties, large inputs, dtype promotion, errors."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from op_table import (
    ROWS,
    as_outputs,
    cotangents,
    grad_outputs,
    make_inputs,
    make_tensors,
    sample_id,
    samples,
)

import tracegrad as tg
from tracegrad import primitives as P
from tracegrad.autograd import gradcheck, gradgradcheck

SAMPLES = samples()
GRAD_SAMPLES = [s for s in SAMPLES if s[0].grad]
GRADGRAD_SAMPLES = [s for s in GRAD_SAMPLES if s[0].gradgrad]


def _run(row, arrays, dtype=tg.float64):
    xs = make_tensors(tg, arrays, dtype, row)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return xs, as_outputs(row.fn(tg, *xs))


def _fn(row):
    def f(*xs):
        out = row.fn(tg, *xs)
        return tuple(out) if isinstance(out, tuple) else out
    return f


# ---- (1) forward against the NumPy reference --------------------------------

@pytest.mark.parametrize("pair", SAMPLES, ids=sample_id)
def test_forward_matches_numpy(pair):
    row, shapes = pair
    arrays = make_inputs(row, shapes)
    _, outs = _run(row, arrays)
    if row.ref is None:
        return
    with np.errstate(all="ignore"):
        expected = row.ref(*arrays)
    expected = list(expected) if isinstance(expected, tuple) else [expected]
    assert len(outs) == len(expected)
    for out, want in zip(outs, expected, strict=True):
        want = np.asarray(want)
        got = out.detach().numpy()
        assert got.shape == want.shape
        if want.dtype.kind in "bi":
            assert out.dtype in (tg.bool, tg.int64)
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=row.rtol, atol=row.atol)


# ---- (2) first-order gradients vs finite differences -------------------------

@pytest.mark.parametrize("pair", GRAD_SAMPLES, ids=sample_id)
def test_gradcheck(pair):
    row, shapes = pair
    xs = make_tensors(tg, make_inputs(row, shapes), tg.float64, row)
    assert gradcheck(_fn(row), tuple(xs), eps=row.fd_eps, atol=row.fd_tol, rtol=1e-4)


@pytest.mark.parametrize("pair", GRAD_SAMPLES, ids=sample_id)
def test_vjp_matches_directional_derivative(pair):
    """<J u, v> (central differences along a random u) equals <u, J^T v> (backward)."""
    row, shapes = pair
    arrays = make_inputs(row, shapes)
    xs, outs = _run(row, arrays)
    gouts = grad_outputs(outs)
    wrt = [i for i, x in enumerate(xs) if x.requires_grad]
    vs = cotangents(gouts)
    grads = tg.autograd.grad(gouts, [xs[i] for i in wrt],
                             [tg.tensor(v, dtype=tg.float64) for v in vs], allow_unused=True)
    rng = np.random.default_rng(7)
    us = {i: rng.standard_normal(arrays[i].shape) for i in wrt}
    vjp_side = sum(float(np.sum(us[i] * (0 if g is None else g.numpy())))
                   for i, g in zip(wrt, grads, strict=True))

    def f_at(step):
        moved = [a + step * us[i] if i in us else a for i, a in enumerate(arrays)]
        with tg.no_grad():
            _, o = _run(row, moved)
        return [t.numpy() for t in grad_outputs_values(o, gouts)]

    eps = row.fd_eps
    plus, minus = f_at(eps), f_at(-eps)
    jvp_side = sum(float(np.sum(v * (p - m) / (2 * eps)))
                   for v, p, m in zip(vs, plus, minus, strict=True))
    assert jvp_side == pytest.approx(vjp_side, rel=1e-5, abs=row.fd_tol)


def grad_outputs_values(outs, like):
    """The outputs at the positions of the gradient outputs (requires_grad is off here)."""
    return [o for o in outs if o.dtype.is_floating_point][:len(like)]


# ---- (3) second order ----------------------------------------------------------

@pytest.mark.parametrize("pair", GRADGRAD_SAMPLES, ids=sample_id)
def test_gradgradcheck(pair):
    row, shapes = pair
    xs = make_tensors(tg, make_inputs(row, shapes), tg.float64, row)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Input #.* is not a double precision")  # casts
        assert gradgradcheck(_fn(row), tuple(xs), eps=row.fd_eps, atol=max(row.fd_tol, 1e-5),
                             rtol=1e-3)


# ---- the table covers every primitive, and shape rules agree with impls ---------

def _exercise(row, shapes):
    """Forward, backward, and a create_graph backward of one sample."""
    xs, outs = _run(row, make_inputs(row, shapes))
    gouts = grad_outputs(outs)
    wrt = [x for x in xs if x.requires_grad]
    if gouts and wrt:
        seeds = [tg.tensor(v, dtype=tg.float64, requires_grad=True) for v in cotangents(gouts)]
        gs = tg.autograd.grad(gouts, wrt, seeds, create_graph=True, allow_unused=True)
        gs = [g for g in gs if g is not None and g.requires_grad]
        if gs:
            tg.autograd.grad(gs, wrt + seeds, [tg.ones_like(g) for g in gs], allow_unused=True)


# primitives that only passes create, never user code; each names where it is tested
from tracegrad.ir.ops import IR_ONLY as PASS_ONLY  # noqa: E402  (graph-only primitives; see tests/test_compile.py)


def test_every_primitive_has_a_row(prim_calls):
    for row, shapes in SAMPLES:
        _exercise(row, shapes)
    seen = {prim.name for prim, *_ in prim_calls}
    missing = sorted(set(P.PRIMITIVES) - seen - set(PASS_ONLY))
    assert not missing, f"primitives with no op-table row: {missing}"


@pytest.mark.parametrize("row", ROWS, ids=repr)
def test_shape_rules_match_impl(row, prim_calls):
    for shapes in row.shapes:
        _exercise(row, shapes)
    assert prim_calls
    for prim, avals, params, out in prim_calls:
        shape, dtype = prim.shape(*avals, **params)
        assert (tuple(shape), dtype) == (out.shape, out.dtype), (prim.name, params)


def test_every_primitive_has_a_lowering():
    for prim in P.PRIMITIVES.values():
        assert isinstance(prim.jax, str) or callable(prim.jax), prim.name


# ---- (5) kinks and ties, as PyTorch defines them ---------------------------------

def _grad_of(fn, data):
    x = tg.tensor(data, dtype=tg.float64, requires_grad=True)
    out = fn(x)
    out.backward(tg.ones_like(out))
    return x.grad.tolist()


@pytest.mark.parametrize("fn, data, expected", [
    (tg.relu, [0.0, -1.0, 2.0], [0.0, 0.0, 1.0]),
    (tg.abs, [0.0, -1.0, 2.0], [0.0, -1.0, 1.0]),
    (lambda x: tg.clamp(x, -1.0, 1.0), [-1.0, 1.0, 2.0], [1.0, 1.0, 0.0]),
    (lambda x: tg.maximum(x, tg.tensor([1.0, 0.0], dtype=tg.float64)), [1.0, 2.0], [0.5, 1.0]),
    (lambda x: tg.amax(x, 1), [[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]],
     [[0.0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]]),
    (lambda x: x.max(), [3.0, 1.0, 3.0], [0.5, 0.0, 0.5]),
    (lambda x: x.amin(), [0.0, 0.0, 1.0, 0.0], [1 / 3, 1 / 3, 0.0, 1 / 3]),
    (lambda x: tg.max(x, 1).values, [[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]],
     [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]),
    (lambda x: tg.norm(x, math.inf), [-2.0, 2.0, 1.0], [-0.5, 0.5, 0.0]),
    (tg.norm, [0.0, 0.0], [0.0, 0.0]),
    (lambda x: x ** 2, [0.0, 1.0], [0.0, 2.0]),
    (lambda x: x.prod(), [0.0, 2.0, 3.0], [6.0, 0.0, 0.0]),
    (lambda x: x.prod(), [0.0, 2.0, 0.0], [0.0, 0.0, 0.0]),
    (tg.floor, [0.5, 1.5], [0.0, 0.0]),
    (tg.round, [0.5, 1.2], [0.0, 0.0]),
    (tg.sign, [0.0, -2.0], [0.0, 0.0]),
], ids=lambda v: "" if not isinstance(v, list) else None)
def test_kinks_and_ties(fn, data, expected):
    np.testing.assert_allclose(_grad_of(fn, data), expected, rtol=1e-12)


def test_max_dim_ties_pick_the_returned_index():
    x = tg.tensor([[2.0, 5.0, 5.0]], requires_grad=True)
    values, indices = x.max(dim=1)
    values.sum().backward()
    assert x.grad.tolist() == [[0.0, 1.0, 0.0]] and indices.tolist() == [1]


# ---- (6) large magnitudes give finite values and gradients ------------------------

LARGE = [-1e4, -1000.0, -30.0, 0.0, 30.0, 1000.0, 1e4]


@pytest.mark.parametrize("dtype", [tg.float32, tg.float64], ids=str)
@pytest.mark.parametrize("name, fn", [
    ("sigmoid", tg.sigmoid),
    ("tanh", tg.tanh),
    ("softmax", lambda x: tg.softmax(x, 0)),
    ("log_softmax", lambda x: tg.log_softmax(x, 0)),
    ("logsumexp", lambda x: tg.logsumexp(x, 0)),
    ("logsumexp_2d", lambda x: tg.logsumexp(x.reshape(1, -1), 1)),
    ("bce_with_logits", lambda x: tg.tensor.__globals__["apply"](
        P.bce_logits_p, (x, tg.full(x.shape, 0.3, dtype=x.dtype)))),
])
def test_large_inputs_stay_finite(name, fn, dtype):
    x = tg.tensor(LARGE, dtype=dtype, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        out = fn(x)
        (out * tg.linspace(-1, 1, out.numel(), dtype=dtype).reshape(out.shape)).sum().backward()
    assert np.isfinite(out.detach().numpy()).all()
    assert np.isfinite(x.grad.numpy()).all()


def test_large_inputs_values():
    x = tg.tensor([-1e4, 1e4], dtype=tg.float64)
    assert tg.sigmoid(x).tolist() == [0.0, 1.0]
    assert tg.log_softmax(x, 0).tolist() == [-2e4, 0.0]
    assert tg.logsumexp(x, 0).item() == 1e4


# ---- in-place ops and __setitem__ -----------------------------------------------

def test_inplace_on_leaf_requiring_grad_is_refused():
    x = tg.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        x.add_(1)


def test_inplace_ops_record_their_own_grad_fn():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 1
    for method, name in [("add_", "AddBackward0"), ("sub_", "SubBackward0"),
                         ("mul_", "MulBackward0"), ("div_", "DivBackward0")]:
        getattr(y, method)(2.0)
        assert type(y.grad_fn).__name__ == name
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0]  # ((x + 2 - 2) * 2) / 2


def test_setitem_mask_zeroes_gradient():
    x = tg.tensor([-1.0, 2.0, -3.0], requires_grad=True)
    g = x.clone()
    g[x < 0] = 0
    (g * g).sum().backward()
    assert g.tolist() == [0.0, 2.0, 0.0]
    assert x.grad.tolist() == [0.0, 4.0, 0.0]


def test_setitem_value_gets_gradient():
    x = tg.zeros(2, 3)
    v = tg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x[1] = v
    (x * tg.arange(6.0).reshape(2, 3)).sum().backward()
    assert v.grad.tolist() == [3.0, 4.0, 5.0]


def test_getitem_duplicate_indices_accumulate():
    x = tg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x[tg.tensor([0, 2, 0, 0])].sum().backward()
    assert x.grad.tolist() == [3.0, 0.0, 1.0]


def test_getitem_0d_bool_mask():
    x = tg.tensor(2.0, requires_grad=True)
    assert x[x > 0].shape == (1,) and x[x < 0].shape == (0,)
    y = tg.ones(2, 3)
    assert y[tg.tensor(True)].shape == (1, 2, 3)
    with pytest.raises(IndexError, match="out of bounds for dimension 2 with size 4"):
        tg.ones(2, 3, 4)[tg.ones(2, 3, dtype=tg.bool), 4]


# ---- dtype promotion ----------------------------------------------------------------

@pytest.mark.parametrize("make, dtype", [
    (lambda: tg.tensor([1, 2]) * 1.5, tg.float32),
    (lambda: tg.tensor([1.0]) + tg.tensor(2.0, dtype=tg.float64), tg.float32),
    (lambda: tg.tensor([1.0]) + tg.tensor([2.0], dtype=tg.float64), tg.float64),
    (lambda: tg.tensor([1]) / tg.tensor([2]), tg.float32),
    (lambda: tg.tensor([True]) * 2.5, tg.float32),
    (lambda: tg.tensor([True]) * tg.tensor([2]), tg.int64),
    (lambda: tg.tensor([True, True]).sum(), tg.int64),
    (lambda: tg.tensor([1]) * tg.tensor([0.5]), tg.float32),
    (lambda: tg.tensor([1], dtype=tg.int32) * tg.tensor([0.5], dtype=tg.float16), tg.float16),
    (lambda: tg.tensor([1], dtype=tg.int32) + tg.tensor(2), tg.int32),
    (lambda: tg.cat([tg.tensor([1]), tg.tensor([2.5])]), tg.float32),
    (lambda: tg.tensor([1.0]).double(), tg.float64),
    (lambda: tg.tensor([1.5]).long(), tg.int64),
    (lambda: tg.tensor([1.5]).to(tg.float64), tg.float64),
])
def test_dtype_promotion(make, dtype):
    assert make().dtype is dtype


def test_int_division_is_true_division():
    assert tg.tensor([1, 3]).div(tg.tensor([2, 2])).tolist() == [0.5, 1.5]


# ---- clear errors ---------------------------------------------------------------------

@pytest.mark.parametrize("make, exc, message", [
    (lambda: tg.ones(2, 3) + tg.ones(2, 4), RuntimeError,
     r"The size of tensor a \(3\) must match the size of tensor b \(4\) at non-singleton "
     r"dimension 1"),
    (lambda: tg.ones(2, 3) @ tg.ones(4, 5), RuntimeError,
     r"mat1 and mat2 shapes cannot be multiplied \(2x3 and 4x5\)"),
    (lambda: tg.ones(2, 3).reshape(4, 2), RuntimeError,
     r"shape '\[4, 2\]' is invalid for input of size 6"),
    (lambda: tg.ones(2, 3).view(-1, 4), RuntimeError,
     r"shape '\[-1, 4\]' is invalid for input of size 6"),
    (lambda: tg.ones(2, 3)[2], IndexError, "index 2 is out of bounds for dimension 0 with size 2"),
    (lambda: tg.ones(2, 3)[:, -4], IndexError, "index -4 is out of bounds for dimension 1"),
    (lambda: tg.ones(2, 3)[tg.tensor([0, 5])], IndexError, "out of bounds"),
    (lambda: tg.ones(2, 3).sum(2), IndexError,
     r"Dimension out of range \(expected to be in range of \[-2, 1\], but got 2\)"),
    (lambda: tg.ones(2, 3).softmax(-3), IndexError, "Dimension out of range"),
    (lambda: tg.ones(2).unsqueeze(2), IndexError, "Dimension out of range"),
    (lambda: tg.cat([tg.ones(2, 3), tg.ones(2, 2)]), RuntimeError,
     "Sizes of tensors must match except in dimension 0"),
    (lambda: tg.ones(2, 3).expand(3, 3), RuntimeError,
     r"The expanded size of the tensor \(3\) must match the existing size \(2\)"),
])
def test_clear_errors(make, exc, message):
    with pytest.raises(exc, match=message):
        make()


def test_every_primitive_declares_a_kind_that_fusion_and_the_inspector_read():
    import tracegrad.ir.ops  # noqa: F401  (the IR-only primitives)
    from tracegrad.ir import inspect
    from tracegrad.primitives import KINDS, PRIMITIVES

    assert all(p.kind in KINDS for p in PRIMITIVES.values())
    assert PRIMITIVES["expm1"].kind == "elementwise"   # was missing from fusion's own list
    assert PRIMITIVES["conv"].kind == "conv"           # was drawn as "layout"
    assert set(KINDS) <= set(inspect.KIND_COLORS)
