"""Structural ops beside the op table: integer, bool, 0-d and empty inputs, ties,
in-place forms and misuse, each case run on tracegrad and torch and compared (values,
dtypes, shapes, grad_fn names, gradients; error types and messages)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import tracegrad as tg

torch = pytest.importorskip("torch")


def _x(T):
    return T.arange(12.0, dtype=T.float64).reshape(3, 4).requires_grad_() * 1


def _s(T):
    return T.arange(1.0, 9.0, dtype=T.float64).reshape(2, 4).requires_grad_() * 1


def _idx(T):
    return T.tensor([[0, 1, 2, 0], [2, 0, 1, 1]])


def _nan(T):
    return T.tensor([1.0, float("nan"), 3.0, float("nan"), 0.0])


def _ties(T):
    return T.tensor([3.0, 1.0, 3.0, 2.0, 1.0, 3.0, float("nan"), 2.0])


CASES = {
    # ---- cumulative -----------------------------------------------------------
    "cummax_ties_take_later": lambda T: T.cummax(T.tensor([1.0, 3.0, 3.0, 2.0, 5.0, 5.0]), 0),
    "cummin_ties": lambda T: T.cummin(T.tensor([[2.0, 1.0, 1.0], [0.0, 0.0, 3.0]]), 1),
    "cummax_nan": lambda T: T.cummax(_nan(T), 0),
    "cummin_nan": lambda T: T.cummin(_nan(T), 0),
    "cummax_0d": lambda T: T.cummax(T.tensor(2.0), 0),
    "cummax_int": lambda T: T.cummax(T.tensor([1, 3, 2]), 0),
    "cummin_int32": lambda T: T.tensor([4, 3, 5], dtype=T.int32).cummin(-1),
    "cummax_bool": lambda T: T.cummax(T.tensor([True, False, True]), 0),
    "cummax_empty": lambda T: T.cummax(T.ones(0, 3), 0),
    "cummax_grad_ties": lambda T: T.cummax(T.tensor([1.0, 3.0, 3.0], requires_grad=True), 0)[0],
    "cumprod_int": lambda T: T.cumprod(T.tensor([1, 2, 3]), 0),
    "cumprod_bool": lambda T: T.cumprod(T.tensor([True, True, False]), 0),
    "cumprod_dtype": lambda T: T.tensor([1, 2, 3]).cumprod(0, dtype=T.float64),
    "cumprod_empty": lambda T: T.cumprod(T.ones(2, 0), 1),
    "cumprod_0d": lambda T: T.cumprod(T.tensor(3.0, requires_grad=True), 0),
    "cumsum_inplace": lambda T: T.tensor([1.0, 2.0], requires_grad=True).clone().cumsum_(0),
    "cumprod_inplace": lambda T: T.tensor([1.0, 2.0], requires_grad=True).clone().cumprod_(0),
    "logcumsumexp_spread": lambda T: T.logcumsumexp(
        T.tensor([-1000.0, 0.0, 1000.0], requires_grad=True), 0),
    "logcumsumexp_0d": lambda T: T.logcumsumexp(T.tensor(2.0), 0),
    "logcumsumexp_neg_inf": lambda T: T.logcumsumexp(
        T.tensor([float("-inf"), float("-inf"), 1.0], requires_grad=True), 0),
    "logcumsumexp_empty": lambda T: T.logcumsumexp(T.ones(0), 0),
    # ---- scatter / gather -------------------------------------------------------
    "scatter_value": lambda T: _x(T).scatter(0, _idx(T), 2.5),
    "scatter_old_add": lambda T: _x(T).detach().scatter(0, _idx(T), _s(T).detach(), reduce="add"),
    "scatter_old_multiply_value": lambda T: _x(T).detach().scatter(0, _idx(T), 2.0,
                                                                  reduce="multiply"),
    "scatter_add_small_index": lambda T: T.scatter_add(_x(T), 0, _idx(T)[:, :2], _s(T).detach()),
    "scatter_int32_index": lambda T: T.scatter(_x(T), 0, _idx(T).int(), _s(T)),
    "gather_int32_index": lambda T: T.gather(_x(T), 0, _idx(T).int()),
    "gather_small_index": lambda T: T.gather(_x(T), 1, T.tensor([[0], [1]])),
    "scatter_int_mean": lambda T: T.scatter_reduce(T.tensor([1, 2, 3]), 0, T.tensor([0, 0, 2]),
                                                   T.tensor([5, 6, 7]), "mean"),
    "scatter_int_mean_exclude": lambda T: T.scatter_reduce(
        T.tensor([1, 2, 3]), 0, T.tensor([0, 0, 2]), T.tensor([5, 6, 7]), "mean",
        include_self=False),
    "scatter_int_amin_exclude": lambda T: T.scatter_reduce(
        T.tensor([1, 2, 3]), 0, T.tensor([0, 0, 2]), T.tensor([5, 6, 7]), "amin",
        include_self=False),
    "scatter_amax_exclude": lambda T: T.scatter_reduce(
        T.tensor([1.0, 2, 3]), 0, T.tensor([0, 0, 2]), T.tensor([5.0, 6, 7]), "amax",
        include_self=False),
    "scatter_amax_ties_share": lambda T: T.scatter_reduce(
        T.tensor([5.0, 2.0], requires_grad=True), 0, T.tensor([0, 0, 1]),
        T.tensor([5.0, 1.0, 2.0], requires_grad=True), "amax"),
    "scatter_prod_zeros": lambda T: T.scatter_reduce(
        T.tensor([0.0, 2.0, 3.0], requires_grad=True), 0, T.tensor([0, 1, 1, 2]),
        T.tensor([4.0, 0.0, 5.0, 0.0], requires_grad=True), "prod"),
    "scatter_0d": lambda T: T.tensor(3.0).scatter(0, T.tensor(0), T.tensor(5.0)),
    "gather_0d": lambda T: T.tensor(3.0, requires_grad=True).gather(0, T.tensor(0)),
    "scatter_bool": lambda T: T.zeros(3, dtype=T.bool).scatter(0, T.tensor([1]), True),
    "scatter_neg_dim": lambda T: _x(T).scatter(-1, T.tensor([[3], [0]]), -1.0),
    "scatter_empty_index": lambda T: _x(T).scatter(0, T.zeros(0, 4, dtype=T.int64), 1.0),
    "scatter_inplace_value": lambda T: _x(T).scatter_(0, _idx(T), 3.0),
    "scatter_reduce_inplace": lambda T: _x(T).scatter_reduce_(0, _idx(T), _s(T), "amax"),
    "scatter_add_inplace": lambda T: _x(T).scatter_add_(0, _idx(T), _s(T)),
    # ---- sorting: ties as PyTorch's CPU kernels break them (stable sort; median along
    # a dim; mode: the smallest most frequent value, at its last index) -----------------
    "sort_ties_nan": lambda T: T.sort(_ties(T)),
    "sort_ties_descending": lambda T: T.sort(_ties(T), descending=True),
    "sort_stable_descending": lambda T: T.sort(_ties(T), stable=True, descending=True),
    "argsort_ties": lambda T: T.argsort(_ties(T), descending=True),
    "sort_bool": lambda T: T.sort(T.tensor([True, False, True]), descending=True),
    "sort_uint8": lambda T: T.sort(T.tensor([3, 1, 2], dtype=T.uint8), descending=True),
    "sort_int_dim0": lambda T: T.tensor([[3, 1, 2], [0, 5, -1]]).sort(0, descending=True),
    "sort_empty": lambda T: T.sort(T.ones(0, 3), 1),
    "sort_0d": lambda T: T.sort(T.tensor(2.0, requires_grad=True)),
    "topk_nan_first": lambda T: T.topk(_ties(T)[5:], 2),
    "topk_smallest_skips_nan": lambda T: T.topk(_ties(T), 3, largest=False),
    "topk_0d": lambda T: T.topk(T.tensor(2.0), 1),
    "topk_zero": lambda T: T.topk(T.ones(3), 0),
    "kthvalue_ties_elsewhere": lambda T: T.kthvalue(_ties(T)[:7], 3),
    "median_ties_share_gradient": lambda T: T.median(T.tensor([1.0, 2.0, 2.0, 3.0],
                                                              requires_grad=True)),
    "median_dim_ties": lambda T: T.median(T.tensor([1.0, 2.0, 2.0, 3.0], requires_grad=True),
                                          0),
    "median_lower_of_even": lambda T: T.median(T.tensor([1.0, 2.0, 3.0, 4.0]), 0),
    "median_nan": lambda T: T.median(_ties(T)),
    "median_nan_dim": lambda T: T.median(_ties(T), 0),
    "nanmedian": lambda T: T.nanmedian(_ties(T)),
    "nanmedian_dim": lambda T: T.nanmedian(_ties(T), 0),
    "median_int": lambda T: T.median(T.tensor([[3, 1, 2], [0, 5, -1]])),
    "median_int_keepdim": lambda T: T.tensor([[3, 1, 2], [0, 5, -1]]).median(1, keepdim=True),
    "median_empty": lambda T: T.median(T.ones(0)),
    "median_0d": lambda T: T.median(T.tensor(2.0), 0),
    "mode_ties": lambda T: T.mode(_ties(T)[:7]),
    "mode_int_rows": lambda T: T.mode(T.tensor([[1, 2, 2, 1], [3, 3, 1, 1]]), 1),
    "mode_keepdim": lambda T: T.tensor([[1, 2, 2, 1], [3, 3, 1, 1]]).mode(0, keepdim=True),
    "unique": lambda T: T.unique(T.tensor([3, 1, 2, 3, 1]), return_inverse=True,
                                 return_counts=True),
    "unique_plain_float": lambda T: T.tensor([3.0, 1.0, 3.0]).unique(),
    "unique_dim0": lambda T: T.unique(T.tensor([[1, 2], [1, 2], [0, 5]]), dim=0,
                                      return_inverse=True, return_counts=True),
    "unique_dim1": lambda T: T.unique(T.tensor([[1, 2, 1], [1, 2, 1], [0, 5, 0]]), dim=1,
                                      return_inverse=True),
    "unique_0d": lambda T: T.unique(T.tensor(3), return_inverse=True),
    "unique_consecutive": lambda T: T.unique_consecutive(
        T.tensor([1, 1, 2, 2, 3, 1, 1]), return_inverse=True, return_counts=True),
    "unique_consecutive_dim": lambda T: T.tensor([[1, 1, 2], [1, 1, 2]]).unique_consecutive(
        return_counts=True, dim=1),
    "where_two_floats": lambda T: T.where(T.tensor([True, False]), 1.0, 0.0),
    "where_two_ints": lambda T: T.where(T.tensor([True, False]), 1, 0),
    "where_int_float": lambda T: T.where(T.tensor([True, False]), 1, 0.5),
    "where_two_bools": lambda T: T.where(T.tensor([True, False]), True, False),
    "nonzero_0d": lambda T: T.nonzero(T.tensor(3.0)),
    "nonzero_0d_zero": lambda T: T.nonzero(T.tensor(0.0)),
    "nonzero_0d_tuple": lambda T: T.nonzero(T.tensor(3.0), as_tuple=True),
    "argwhere": lambda T: T.argwhere(T.tensor([[0, 1], [1, 1]])),
    "argwhere_0d": lambda T: T.argwhere(T.tensor(3.0)),
    "isclose_int": lambda T: T.isclose(T.tensor([1, 2]), T.tensor([1, 3]), atol=1),
    "isclose_inf": lambda T: T.isclose(T.tensor([float("inf"), 1.0]),
                                       T.tensor([float("inf"), float("inf")])),
    "isclose_nan": lambda T: T.isclose(T.tensor([float("nan")]), T.tensor([float("nan")]),
                                       equal_nan=True),
    "repeat_int": lambda T: T.tensor([1, 2]).repeat(2, 2),
    "repeat_0d": lambda T: T.tensor(2.0).repeat(3),
    "repeat_interleave_counts": lambda T: T.repeat_interleave(T.tensor([2, 1])),
    "repeat_interleave_0d": lambda T: T.tensor(3.0).repeat_interleave(2),
    "cartesian_prod_int": lambda T: T.cartesian_prod(T.tensor([1, 2]), T.tensor([3, 4, 5])),
    "trace_int": lambda T: T.trace(T.arange(6).reshape(2, 3)),
    "unfold_0d": lambda T: T.tensor(5.0).unfold(0, 1, 1),
    "diag_int": lambda T: T.diag(T.tensor([1, 2]), -1),
    "diagonal_empty": lambda T: T.ones(2, 3).diagonal(5),
    "one_hot_0d": lambda T: T.nn.functional.one_hot(T.tensor(1), 3),
    "view_dtype_bool": lambda T: T.tensor([True, False]).view(T.uint8),
    "view_dtype_half": lambda T: T.tensor([1.0, 2.0]).view(T.float16),
    "einsum_list": lambda T: T.einsum("ij,jk->ik", [T.ones(2, 3), T.ones(3, 2)]),
    "cdist_p0": lambda T: T.cdist(T.tensor([[0.0, 1.0]], requires_grad=True),
                                  T.tensor([[0.0, 2.0], [1.0, 1.0]])),
    "unique_consecutive_2d": lambda T: T.unique_consecutive(T.tensor([[1, 1, 2], [2, 1, 1]]),
                                                            return_inverse=True),
}

ERRORS = {
    "cummax_dim": lambda T: T.cummax(T.ones(2, 3), 2),
    "logcumsumexp_int": lambda T: T.logcumsumexp(T.tensor([1, 2]), 0),
    "scatter_bad_reduce": lambda T: _x(T).scatter(0, _idx(T), _s(T), reduce="mean"),
    "scatter_value_bad_reduce": lambda T: T.ones(2).scatter(0, T.tensor([0]), 1.0, reduce="sum"),
    "scatter_reduce_bad": lambda T: _x(T).scatter_reduce(0, _idx(T), _s(T), "foo"),
    "gather_out_of_bounds": lambda T: T.gather(_x(T), 1, T.tensor([[4]])),
    "gather_negative": lambda T: T.gather(_x(T), 1, T.tensor([[-1]])),
    "gather_ndim": lambda T: T.gather(_x(T), 1, T.tensor([0])),
    "gather_float_index": lambda T: T.gather(_x(T), 1, T.tensor([[0.0]])),
    "gather_index_too_big": lambda T: T.gather(_x(T), 0, T.tensor([[0, 1, 2, 0, 1]])),
    "scatter_float_index": lambda T: T.scatter(_x(T), 1, T.tensor([[0.0]]), _s(T)),
    "scatter_out_of_bounds": lambda T: _x(T).scatter(0, T.tensor([[3]]), _s(T)),
    "scatter_dtype": lambda T: _x(T).scatter(0, _idx(T), _s(T).float()),
    "scatter_index_too_big": lambda T: _x(T).scatter(0, T.tensor([[0, 1, 2, 0, 1]]),
                                                     T.ones(2, 5, dtype=T.float64)),
    "scatter_src_too_small": lambda T: _x(T).scatter(0, _idx(T), T.ones(1, 4, dtype=T.float64)),
    "topk_k_too_big": lambda T: T.topk(T.ones(3), 4),
    "kthvalue_k_0": lambda T: T.kthvalue(T.ones(3), 0),
    "kthvalue_k_too_big": lambda T: T.kthvalue(T.ones(2, 3), 4, 1),
    "median_empty_dim": lambda T: T.median(T.ones(0, 2), 0),
    "nanmedian_empty_dim": lambda T: T.nanmedian(T.ones(2, 0), 1),
    "mode_empty": lambda T: T.mode(T.ones(0)),
    "sort_dim": lambda T: T.sort(T.ones(2), 1),
    "max_unpool_output_size_low": lambda T: T.nn.functional.max_unpool2d(
        T.ones(1, 1, 2, 2), T.tensor([[[[0, 1], [2, 3]]]]), 2, output_size=(2, 2)),
    "max_unpool_output_size_high": lambda T: T.nn.functional.max_unpool2d(
        T.ones(1, 1, 2, 2), T.tensor([[[[0, 1], [2, 3]]]]), 2, output_size=(9, 9)),
    "max_unpool_bad_index": lambda T: T.nn.functional.max_unpool2d(
        T.ones(1, 1, 2, 2), T.tensor([[[[0, 1], [2, 99]]]]), 2),
    "view_dtype_size": lambda T: T.ones(3).view(T.float64),
    "view_dtype_0d": lambda T: T.tensor(1.0).view(T.float64),
    "interpolate_mode_dims": lambda T: T.nn.functional.interpolate(T.ones(1, 2, 4, 5), 7,
                                                                   mode="linear"),
    "interpolate_align_nearest": lambda T: T.nn.functional.interpolate(
        T.ones(1, 2, 4, 5), 7, align_corners=True),
    "interpolate_both": lambda T: T.nn.functional.interpolate(T.ones(1, 2, 4), 7,
                                                              scale_factor=2),
    "interpolate_neither": lambda T: T.nn.functional.interpolate(T.ones(1, 2, 4)),
    "interpolate_size_dims": lambda T: T.nn.functional.interpolate(T.ones(1, 2, 4, 5), (3,)),
    "fold_blocks": lambda T: T.nn.functional.fold(T.ones(1, 8, 8), (4, 4), 2),
    "fold_channels": lambda T: T.nn.functional.fold(T.ones(1, 7, 9), (4, 4), 2),
    "conv_transpose_channels": lambda T: T.nn.functional.conv_transpose2d(
        T.ones(2, 3, 4, 5), T.ones(2, 2, 3, 2)),
    "conv_transpose_output_padding": lambda T: T.nn.functional.conv_transpose2d(
        T.ones(2, 3, 4, 5), T.ones(3, 2, 3, 2), output_padding=1),
    "one_hot_too_small": lambda T: T.nn.functional.one_hot(T.tensor([0, 2]), 2),
    "one_hot_float": lambda T: T.nn.functional.one_hot(T.tensor([0.0, 2.0])),
    "one_hot_negative": lambda T: T.nn.functional.one_hot(T.tensor([-1, 2])),
    "one_hot_empty": lambda T: T.nn.functional.one_hot(T.zeros(0, dtype=T.int64)),
    "cdist_columns": lambda T: T.cdist(T.ones(3, 2), T.ones(4, 3)),
    "einsum_operands": lambda T: T.einsum("ij,jk->ik", T.ones(2, 3)),
    "einsum_output_label": lambda T: T.einsum("ij->ik", T.ones(2, 3)),
    "einsum_subscripts": lambda T: T.einsum("ijk->ik", T.ones(2, 3)),
    "repeat_dims": lambda T: T.ones(2, 3).repeat(2),
    "repeat_interleave_sizes": lambda T: T.repeat_interleave(T.ones(2, 2), T.tensor([1, 2, 3]),
                                                             dim=0),
    "roll_align": lambda T: T.ones(2, 3).roll((1,), (0, 1)),
    "rot90_same_dims": lambda T: T.ones(2, 3).rot90(1, (0, 0)),
    "rot90_1d": lambda T: T.ones(3).rot90(),
    "meshgrid_indexing": lambda T: T.meshgrid(T.ones(2), T.ones(2), indexing="foo"),
    "unfold_size": lambda T: T.ones(2, 3).unfold(1, 4, 1),
    "unfold_step": lambda T: T.ones(2, 3).unfold(1, 2, 0),
    "trace_dims": lambda T: T.trace(T.ones(2, 3, 4)),
    "diag_dims": lambda T: T.diag(T.ones(2, 3, 4)),
    "diagonal_same_dims": lambda T: T.ones(2, 3, 4).diagonal(0, 1, 1),
    "tril_1d": lambda T: T.ones(3).tril(),
    "cross_no_dim_of_3": lambda T: T.cross(T.ones(2, 2), T.ones(2, 2)),
    "linalg_cross_length": lambda T: T.linalg.cross(T.ones(3, 2), T.ones(3, 2)),
    "linalg_cross_ndim": lambda T: T.linalg.cross(T.ones(2, 3), T.ones(3)),
    "lerp_dtypes": lambda T: T.lerp(T.ones(2), T.ones(2, dtype=T.float64), 0.5),
    "isclose_dtypes": lambda T: T.isclose(T.ones(1), T.ones(1, dtype=T.float64)),
    "linalg_inv_square": lambda T: T.linalg.inv(T.ones(2, 3)),
    "linalg_inv_singular": lambda T: T.linalg.inv(T.zeros(2, 2)),
    "linalg_inv_1d": lambda T: T.linalg.inv(T.ones(3)),
    "linalg_inv_int": lambda T: T.linalg.inv(T.tensor([[1, 2], [3, 4]])),
    "linalg_det_square": lambda T: T.linalg.det(T.ones(2, 3)),
    "linalg_cholesky_not_pd": lambda T: T.linalg.cholesky(-T.eye(2)),
    "linalg_solve_singular": lambda T: T.linalg.solve(T.zeros(2, 2), T.ones(2)),
    "scatter_add_src_ndim": lambda T: T.scatter_add(T.zeros(2, 2), 0, T.tensor([[0, 1]]),
                                                    T.ones(1, 2, 3)),
}


def _np(t):
    return t.detach().numpy()


def _outs(r):
    return list(r) if isinstance(r, tuple) else [r]


def _name(t):
    return None if t.grad_fn is None else type(t.grad_fn).__name__


def _run(T, fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outs = _outs(fn(T))
    grads = []
    for o in outs:
        if o.requires_grad:
            leaves = [t for t in _leaves(o)]
            if leaves:
                gs = T.autograd.grad(o, leaves, T.ones_like(o), allow_unused=True)
                grads += [None if g is None else _np(g) for g in gs]
    return outs, grads


def _leaves(o):
    """The leaf tensors that requires grad reached from ``o`` (by walking next_functions)."""
    seen, found, stack = set(), [], [o.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        if hasattr(fn, "variable"):
            found.append(fn.variable)
        stack.extend(f for f, _ in fn.next_functions)
    return found


@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch(name):
    touts, tgrads = _run(tg, CASES[name])
    pouts, pgrads = _run(torch, CASES[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_result, p_result = CASES[name](tg), CASES[name](torch)
        if isinstance(p_result, tuple):  # torch.return_types.<name>, or a plain tuple
            assert type(t_result).__name__ == type(p_result).__name__
    assert len(touts) == len(pouts)
    for t, p in zip(touts, pouts, strict=True):
        assert tuple(t.shape) == tuple(p.shape)
        assert str(t.dtype) == str(p.dtype)
        np.testing.assert_allclose(_np(t), p.detach().numpy(), rtol=1e-12, atol=0)
        assert _name(t) == _name(p)
    assert len(tgrads) == len(pgrads)
    for a, b in zip(tgrads, pgrads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", list(ERRORS))
def test_errors_match_torch(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception) as p:
            ERRORS[name](torch)
        with pytest.raises(Exception) as t:
            ERRORS[name](tg)
    # torch.linalg.LinAlgError is torch._C._LinAlgError, a RuntimeError; ours is its own
    expected = RuntimeError if p.type.__name__ == "_LinAlgError" else p.type
    assert issubclass(t.type, expected), (t.type, p.type)
    assert str(p.value).splitlines()[0] in str(t.value)


# ---- compiled: isclose is elementwise ops; allclose breaks only where Python reads it ----

def test_isclose_compiles_without_a_graph_break():
    @tg.compile(fullgraph=True)
    def f(x, y):
        return tg.isclose(x, y, rtol=1e-3) & (x > 0)

    x, y = tg.tensor([1.0, 2.0, -1.0]), tg.tensor([1.0005, 2.1, -1.0])
    for _ in range(3):
        assert f(x, y).tolist() == [True, False, False]


def test_allclose_breaks_the_graph_only_when_its_answer_is_read():
    @tg.compile(fullgraph=True)
    def unused(x, y):
        tg.allclose(x, y)
        return x * 2

    x = tg.tensor([1.0, 2.0])
    for _ in range(3):
        assert unused(x, x).tolist() == [2.0, 4.0]

    @tg.compile(fullgraph=True)
    def read(x, y):
        return x * 2 if tg.allclose(x, y) else x

    with pytest.raises(Exception, match="(?i)graph break|data-dependent|bool"):
        read(x, x)
    assert tg.allclose(x, x) is True and tg.allclose(x, x + 1) is False


def test_structural_ops_compile_to_the_same_values():
    """A small program mixing the new ops, compiled vs eager (values and gradients)."""
    def f(x, w):
        y = tg.einsum("bij,jk->bik", x, w).cumsum(1).roll(1, 2)
        top = y.topk(2, dim=-1).values
        s = tg.sort(y.flatten(1), descending=True).values[:, :3]
        d = tg.linalg.det(w[:2, :3] @ w[:2, :3].mT + tg.eye(2, dtype=w.dtype))
        up = tg.nn.functional.interpolate(y, scale_factor=2, mode="linear")
        return top.sum() + s.sum() + d + up.mean() + y.cummax(1).values.sum()

    rng = np.random.default_rng(0)
    xs, ws = rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5))

    def run(fn):
        x = tg.tensor(xs, requires_grad=True)
        w = tg.tensor(ws, requires_grad=True)
        out = fn(x, w)
        out.backward()
        return out.item(), x.grad.numpy(), w.grad.numpy()

    eager = run(f)
    cf = tg.compile(f, fullgraph=True)  # no graph break: the whole program is compiled
    run(cf)
    compiled = run(cf)
    np.testing.assert_allclose(compiled[0], eager[0], rtol=1e-6)
    for c, e in zip(compiled[1:], eager[1:], strict=True):
        np.testing.assert_allclose(c, e, rtol=1e-6, atol=1e-9)
