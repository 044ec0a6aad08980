"""Every row of the op table against PyTorch: values, gradients and grad_fn names,
on identical float64 and float32 inputs."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from op_table import (
    as_outputs,
    cotangents,
    grad_outputs,
    make_inputs,
    make_tensors,
    sample_id,
    samples,
)

import tracegrad as tg

torch = pytest.importorskip("torch")

DTYPES = {"float64": (tg.float64, torch.float64), "float32": (tg.float32, torch.float32)}


def _np(t):
    return t.detach().cpu().numpy() if hasattr(t, "cpu") and not isinstance(t, tg.Tensor) \
        else t.detach().numpy()


def _grad_fn_name(t):
    return None if t.grad_fn is None else type(t.grad_fn).__name__


def _run(T, row, arrays, dtype):
    xs = make_tensors(T, arrays, dtype, row)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outs = as_outputs(row.fn(T, *xs))
    return xs, outs


def _grads(T, xs, outs):
    gouts = grad_outputs(outs)
    wrt = [x for x in xs if x.requires_grad]
    if not gouts or not wrt:
        return []
    seeds = [T.tensor(c, dtype=o.dtype) for o, c in zip(gouts, cotangents(gouts), strict=True)]
    gs = T.autograd.grad(gouts, wrt, seeds, allow_unused=True)
    return [np.zeros(tuple(x.shape)) if g is None else _np(g) for g, x in zip(gs, wrt, strict=True)]


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("pair", samples(), ids=sample_id)
def test_matches_torch(pair, dtype):
    row, shapes = pair
    arrays = make_inputs(row, shapes)
    tg_dtype, torch_dtype = DTYPES[dtype]
    f64 = dtype == "float64"
    tol = dict(rtol=1e-10, atol=1e-12) if f64 else dict(rtol=row.f32_tol, atol=row.f32_tol)

    txs, touts = _run(tg, row, arrays, tg_dtype)
    pxs, pouts = _run(torch, row, arrays, torch_dtype)
    assert len(touts) == len(pouts)
    for t, p in zip(touts, pouts, strict=True):
        assert tuple(t.shape) == tuple(p.shape)
        assert str(t.dtype) == str(p.dtype)
        np.testing.assert_allclose(_np(t), _np(p), **tol)
        assert _grad_fn_name(t) == _grad_fn_name(p)

    for gt, gp in zip(_grads(tg, txs, touts), _grads(torch, pxs, pouts), strict=True):
        np.testing.assert_allclose(gt, gp, **tol)


# ---- kinks and ties, as torch defines them ---------------------------------

TIES = {
    "relu_at_0": (lambda T, x: T.relu(x), [[0.0, -1.0, 2.0]]),
    "abs_at_0": (lambda T, x: T.abs(x), [[0.0, -1.0, 2.0]]),
    "clamp_at_edges": (lambda T, x: T.clamp(x, -1.0, 1.0), [[-1.0, 1.0, 0.0, 2.0]]),
    "clamp_min_edge": (lambda T, x: T.clamp(x, min=0.0), [[0.0, 1.0]]),
    "maximum_tie": (lambda T, x: T.maximum(x, T.tensor([1.0, 0.0, 3.0], dtype=x.dtype)),
                    [[1.0, 2.0, 3.0]]),
    "minimum_tie": (lambda T, x: T.minimum(x, x.detach()), [[1.0, 2.0]]),
    "amax_ties": (lambda T, x: T.amax(x, 1), [[[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]]),
    "amin_ties": (lambda T, x: x.amin(), [[1.0, 1.0, 3.0]]),
    "max_all_ties": (lambda T, x: x.max(), [[[3.0, 1.0, 3.0], [3.0, 0.0, 0.0]]]),
    "min_all_ties": (lambda T, x: T.min(x), [[0.0, 1.0, 0.0]]),
    "max_dim_ties": (lambda T, x: T.max(x, 1).values, [[[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]]),
    "min_dim_ties": (lambda T, x: x.min(0)[0], [[[1.0, 1.0], [1.0, 0.0]]]),
    "norm_inf_ties": (lambda T, x: T.norm(x, math.inf), [[-2.0, 2.0, 1.0]]),
    "norm_at_0": (lambda T, x: T.norm(x), [[0.0, 0.0]]),
    "norm_p1_at_0": (lambda T, x: T.norm(x, 1), [[0.0, 1.0]]),
    "sqrt_norm_dim_at_0": (lambda T, x: T.norm(x, dim=1), [[[0.0, 0.0], [3.0, 4.0]]]),
    "sign_at_0": (lambda T, x: T.sign(x), [[0.0, 1.0]]),
    "pow_0_base": (lambda T, x: x ** 2, [[0.0, 1.0]]),
    "pow_tensor_0_base": (lambda T, x: x ** T.tensor([2.0, 0.0], dtype=x.dtype), [[0.0, 0.0]]),
    "pow_0_exponent": (lambda T, x: T.tensor([0.0, 2.0], dtype=x.dtype) ** x, [[2.0, 0.0]]),
    "prod_zero": (lambda T, x: x.prod(0), [[[0.0, 2.0], [3.0, 0.0]]]),
    "argmax_ties": (lambda T, x: T.argmax(x, 1).to(x.dtype) + x.sum(), [[[1.0, 3.0, 3.0]]]),
    "round_half": (lambda T, x: T.round(x), [[0.5, 1.5, 2.5, -0.5]]),
    "var_one_element": (lambda T, x: x.var(), [[2.0]]),
    "std_0d": (lambda T, x: x[0].std(), [[2.0]]),
    "var_dim_one_row": (lambda T, x: x.var(0), [[[1.0, 2.0]]]),
    "sqrt_at_0": (lambda T, x: T.sqrt(x), [[0.0, 4.0]]),
    "log_at_0": (lambda T, x: T.log(x), [[0.0, 1.0]]),
    "div_by_0": (lambda T, x: 1.0 / x, [[0.0, 2.0]]),
    "softmax_neg_inf": (lambda T, x: T.softmax(x.masked_fill(x < 0, float("-inf")), 0),
                        [[-1.0, 1.0, 2.0]]),
    "logsumexp_all_neg_inf": (lambda T, x: T.logsumexp(x * float("inf"), 0), [[-1.0, -2.0]]),
    "max_pool2d_all_equal": (lambda T, x: T.nn.functional.max_pool2d(x, 2, 1),
                             [[[[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]]]),
    "max_pool2d_pad_ties": (lambda T, x: T.nn.functional.max_pool2d(x, 3, 2, 1),
                            [[[[2.0, 0.0, 2.0], [2.0, 2.0, 0.0], [0.0, 2.0, 2.0]]]]),
}


@pytest.mark.parametrize("name", list(TIES))
def test_kinks_match_torch(name):
    fn, (data,) = TIES[name]
    results = []
    for T in (tg, torch):
        x = T.tensor(data, dtype=T.float64, requires_grad=True)
        out = fn(T, x)
        out.backward(T.ones_like(out))
        results.append((_np(out), _np(x.grad), _grad_fn_name(out)))
    (tv, tgrad, tname), (pv, pgrad, pname) = results
    np.testing.assert_allclose(tv, pv, rtol=1e-12, atol=0)  # nan and inf where torch has them
    np.testing.assert_allclose(tgrad, pgrad, rtol=1e-12, atol=0)
    assert tname == pname


# ---- dtype promotion ---------------------------------------------------------

PROMOTION = {
    "int_times_float": lambda T: T.tensor([1, 2]) * 1.5,
    "int_plus_int": lambda T: T.tensor([1, 2]) + 3,
    "int_div_int": lambda T: T.tensor([1, 2]) / T.tensor([2, 2]),
    "int_div_scalar": lambda T: T.tensor([3]) / 2,
    "f32_plus_f64_0d": lambda T: T.tensor([1.0]) + T.tensor(2.0, dtype=T.float64),
    "f32_plus_f64": lambda T: T.tensor([1.0]) + T.tensor([2.0], dtype=T.float64),
    "int_plus_f64_0d": lambda T: T.tensor([1]) + T.tensor(2.0, dtype=T.float64),
    "bool_times_float": lambda T: T.tensor([True, False]) * 2.5,
    "bool_times_f64": lambda T: T.tensor([True, False]) * T.tensor([2.0], dtype=T.float64),
    "bool_plus_bool": lambda T: T.tensor([True]) + T.tensor([True]),
    "bool_plus_int": lambda T: T.tensor([True]) + 1,
    "sum_bool": lambda T: T.tensor([True, True, False]).sum(),
    "sum_int32": lambda T: T.tensor([1, 2], dtype=T.int32).sum(),
    "prod_bool": lambda T: T.tensor([True, True]).prod(),
    "cumsum_bool": lambda T: T.tensor([True, True]).cumsum(0),
    "int32_times_int64_0d": lambda T: T.tensor([1], dtype=T.int32) * T.tensor(2),
    "int_pow_float": lambda T: T.tensor([2]) ** 0.5,
    "int_pow_int": lambda T: T.tensor([2]) ** 2,
    "float_rpow_int": lambda T: 2 ** T.tensor([0.5]),
    "int_rpow": lambda T: 2 ** T.tensor([3]),
    "sqrt_int": lambda T: T.sqrt(T.tensor([4])),
    "exp_bool": lambda T: T.exp(T.tensor([True])),
    "where_mixed": lambda T: T.where(T.tensor([True, False]), T.tensor([1]), 2.5),
    "where_f64_scalar": lambda T: T.where(T.tensor([True]), T.tensor([1.0], dtype=T.float64), 0),
    "maximum_int_float": lambda T: T.maximum(T.tensor([1]), T.tensor([0.5])),
    "int_eq_float": lambda T: T.tensor([1]) == 1.0,
    "clamp_int_float": lambda T: T.clamp(T.tensor([1, 5]), 0.5, 2.5),
    "clamp_int_int": lambda T: T.clamp(T.tensor([1, 5]), 0, 2),
    "abs_int": lambda T: T.abs(T.tensor([-1, 2])),
    "neg_int": lambda T: -T.tensor([1]),
    "matmul_int": lambda T: T.tensor([[1, 2]]) @ T.tensor([[3], [4]]),
    "floor_div": lambda T: T.tensor([7, -7]) // 2,
    "remainder": lambda T: T.tensor([7, -7]) % 3,
    "mean_f64": lambda T: T.tensor([1.0, 2.0], dtype=T.float64).mean(),
    "cat_mixed": lambda T: T.cat([T.tensor([1]), T.tensor([2.5])]),
    "float_long": lambda T: T.tensor([1.7, -1.7]).long(),
    "float_to_int": lambda T: T.tensor([1.7]).to(T.int32),
    "softmax_int_input": lambda T: T.tensor([1.0, 2.0]).softmax(0),
    "round_int": lambda T: T.round(T.tensor([3])),
    "argmax_flat": lambda T: T.tensor([[1, 5], [7, 2]]).argmax(),
}


@pytest.mark.parametrize("name", list(PROMOTION))
def test_promotion_matches_torch(name):
    t = PROMOTION[name](tg)
    p = PROMOTION[name](torch)
    assert str(t.dtype) == str(p.dtype)
    assert tuple(t.shape) == tuple(p.shape)
    np.testing.assert_allclose(t.numpy(), p.numpy(), rtol=1e-6)


# ---- error messages ----------------------------------------------------------

ERRORS = {
    "binary_shapes": lambda T: T.ones(2, 3) + T.ones(2, 4),
    "binary_shapes_3d": lambda T: T.ones(4, 2, 3) * T.ones(5, 1, 3),
    "matmul_2d": lambda T: T.ones(2, 3) @ T.ones(4, 5),
    "mm": lambda T: T.mm(T.ones(2, 3), T.ones(2, 3)),
    "reshape": lambda T: T.ones(2, 3).reshape(4, 2),
    "view_infer": lambda T: T.ones(2, 3).view(-1, 4),
    "index_int": lambda T: T.ones(2, 3)[2],
    "index_int_dim1": lambda T: T.ones(2, 3)[:, 3],
    "index_too_many": lambda T: T.ones(2)[0, 0],
    "dim_sum": lambda T: T.ones(2, 3).sum(2),
    "dim_softmax": lambda T: T.ones(2, 3).softmax(-3),
    "dim_unsqueeze": lambda T: T.ones(2, 3).unsqueeze(4),
    "dim_cat": lambda T: T.cat([T.ones(2), T.ones(2)], 1),
    "cat_shapes": lambda T: T.cat([T.ones(2, 3), T.ones(2, 2)], 0),
    "expand": lambda T: T.ones(2, 3).expand(3, 3),
    "mean_int": lambda T: T.tensor([1, 2]).mean(),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_errors_match_torch(name):
    with pytest.raises(Exception) as p:
        ERRORS[name](torch)
    with pytest.raises(Exception) as t:
        ERRORS[name](tg)
    # same exception kind, and torch's first line appears in ours
    assert issubclass(t.type, p.type) or p.type is RuntimeError and t.type.__name__ in (
        "RuntimeError", "ShapeError")
    first = str(p.value).splitlines()[0]
    assert first in str(t.value)
