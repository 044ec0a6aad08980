"""Issue 12 follow-up: the deviations from torch left after the op sweep, each run on
tracegrad and torch and compared (values, dtypes, grad_fn names, gradients or their
absence, error types and messages)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import tracegrad as tg

torch = pytest.importorskip("torch")


def _grads(T, out, leaves, seed=None):
    seed = T.ones_like(out) if seed is None else seed
    gs = T.autograd.grad(out, leaves, seed, allow_unused=True)
    return [None if g is None else g.detach().numpy() for g in gs]


def _same_grads(a, b, rtol=1e-12, atol=0.0):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert (x is None) == (y is None), (x, y)
        if x is not None:
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


# ---- (1) copysign: other gets a zero gradient -------------------------------------------

@pytest.mark.parametrize("other_shape", [(4,), (2, 1), ()])
def test_copysign_gives_other_a_zero_gradient(other_shape):
    def run(T):
        x = T.tensor([0.0, -0.0, 1.5, -2.0], dtype=T.float64, requires_grad=True)
        y = T.tensor(np.linspace(-1, 1, int(np.prod(other_shape))).reshape(other_shape),
                     dtype=T.float64, requires_grad=True)
        out = T.copysign(x, y)
        return out, _grads(T, out, [x, y])
    (t, tgr), (p, pgr) = run(tg), run(torch)
    np.testing.assert_array_equal(t.detach().numpy(), p.detach().numpy())
    assert type(t.grad_fn).__name__ == type(p.grad_fn).__name__ == "CopysignBackward0"
    _same_grads(tgr, pgr)
    assert tgr[1].shape == other_shape and not tgr[1].any()


def test_copysign_with_a_scalar_other_is_copysign_backward1():
    for T in (tg, torch):
        x = T.tensor([1.0, -2.0], requires_grad=True)
        assert type(T.copysign(x, -1.0).grad_fn).__name__ == "CopysignBackward1"


# ---- (3) a p=0 norm has no gradient (None, not zeros) -----------------------------------

@pytest.mark.parametrize("fn", [
    lambda T, a, b: T.nn.functional.pairwise_distance(a, b, p=0).sum(),
    lambda T, a, b: T.linalg.vector_norm(a - b, 0),
    lambda T, a, b: (a * b).norm(p=0),
])
def test_p0_norms_leave_the_gradient_undefined(fn):
    def run(T):
        a = T.tensor([[1.0, 0.0, -2.0], [0.5, 3.0, 0.0]], dtype=T.float64, requires_grad=True)
        b = T.tensor([[0.0, 1.0, 2.0], [0.5, 1.0, 1.0]], dtype=T.float64, requires_grad=True)
        out = fn(T, a, b)
        out.backward()
        return out, a.grad, b.grad
    (t, ta, tb), (p, pa, pb) = run(tg), run(torch)
    assert t.item() == p.item()
    assert ta is None and tb is None and pa is None and pb is None


def test_p0_norm_unused_input_message_is_torchs():
    for T in (tg, torch):
        a = T.ones(3, requires_grad=True)
        with pytest.raises(RuntimeError) as e:
            T.autograd.grad(T.linalg.vector_norm(a, 0), a)
        assert str(e.value) == ("The differentiated Tensor at index 0 appears to not have been "
                                "used in the graph. Set allow_unused=True if this is the "
                                "desired behavior.")


# ---- (8) scatter(reduce=) is recorded but has no derivative ------------------------------

@pytest.mark.parametrize("src_is_tensor", [True, False])
@pytest.mark.parametrize("reduce", ["add", "multiply"])
def test_legacy_scatter_reduce_backward_raises_as_torch(reduce, src_is_tensor):
    def run(T):
        base = T.arange(6.0).reshape(2, 3).requires_grad_()
        src = T.full((2, 3), 2.0, requires_grad=True) if src_is_tensor else 2.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = base.scatter(0, T.tensor([[0, 1, 0], [1, 0, 1]]), src, reduce=reduce)
        with pytest.raises(RuntimeError) as e:
            out.sum().backward()
        return out, e.value
    (t, te), (p, pe) = run(tg), run(torch)
    np.testing.assert_array_equal(t.detach().numpy(), p.detach().numpy())
    assert type(t.grad_fn).__name__ == type(p.grad_fn).__name__ == "NotImplemented"
    assert str(te) == str(pe) == "derivative for aten::scatter is not implemented"


def test_legacy_scatter_reduce_compiles():
    def f(x):
        return x.scatter(1, tg.tensor([[0, 0], [2, 1]]), 3.0, reduce="multiply") * 2
    x = tg.arange(1.0, 7.0).reshape(2, 3)
    np.testing.assert_array_equal(tg.compile(f)(x).numpy(), f(x).numpy())


# ---- (9) interpolate: mode='area' and antialias=True -------------------------------------

@pytest.mark.parametrize("shape,kw", [
    ((1, 2, 9), dict(size=4)),
    ((1, 2, 9, 11), dict(size=(3, 4))),
    ((2, 1, 5, 7), dict(scale_factor=0.5)),
    ((1, 1, 4, 4), dict(size=(8, 6))),
    ((1, 2, 5, 6, 7), dict(size=(2, 3, 4))),
])
def test_interpolate_area_is_adaptive_average_pooling(shape, kw):
    a = np.random.default_rng(0).standard_normal(shape)

    def run(T):
        x = T.tensor(a, requires_grad=True)
        y = T.nn.functional.interpolate(x, mode="area", **kw)
        return y, _grads(T, y, [x], T.tensor(np.arange(y.numel()).reshape(y.shape) * 1.0))
    (t, tg_), (p, pg) = run(tg), run(torch)
    assert tuple(t.shape) == tuple(p.shape)
    np.testing.assert_allclose(t.detach().numpy(), p.detach().numpy(), rtol=1e-12, atol=1e-15)
    assert type(t.grad_fn).__name__ == type(p.grad_fn).__name__
    _same_grads(tg_, pg, atol=1e-12)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("shape,kw", [
    ((1, 2, 9, 11), dict(size=(3, 4))),
    ((1, 2, 9, 11), dict(size=(5, 2))),
    ((2, 1, 16, 6), dict(scale_factor=0.5)),
    ((1, 1, 7, 7), dict(scale_factor=(0.37, 1.6))),
    ((1, 1, 7, 5), dict(size=(20, 13))),
])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_interpolate_antialias_matches_torch(mode, align_corners, shape, kw, dtype):
    a = np.random.default_rng(1).standard_normal(shape)
    tol = 1e-12 if dtype == "float64" else 2e-6

    def run(T):
        x = T.tensor(a, dtype=getattr(T, dtype), requires_grad=True)
        y = T.nn.functional.interpolate(x, mode=mode, antialias=True,
                                        align_corners=align_corners, **kw)
        seed = T.tensor(np.linspace(-1, 1, y.numel()).reshape(y.shape), dtype=y.dtype)
        return y, _grads(T, y, [x], seed)
    (t, tg_), (p, pg) = run(tg), run(torch)
    assert tuple(t.shape) == tuple(p.shape)
    np.testing.assert_allclose(t.detach().numpy(), p.detach().numpy(), rtol=tol, atol=tol)
    assert type(t.grad_fn).__name__ == type(p.grad_fn).__name__
    _same_grads(tg_, pg, rtol=tol, atol=tol)


@pytest.mark.parametrize("call", [
    lambda T: T.nn.functional.interpolate(T.ones(1, 1, 4, 4), size=2, mode="area",
                                          align_corners=False),
    lambda T: T.nn.functional.interpolate(T.ones(1, 1, 4, 4), size=2, antialias=True),
    lambda T: T.nn.functional.interpolate(T.ones(1, 1, 4), size=2, mode="linear",
                                          antialias=True),
])
def test_interpolate_area_and_antialias_misuse_raise_as_torch(call):
    with pytest.raises(ValueError) as p:
        call(torch)
    with pytest.raises(ValueError) as t:
        call(tg)
    assert str(t.value) == str(p.value)


def test_interpolate_area_and_antialias_compile():
    def f(x):
        return (tg.nn.functional.interpolate(x, size=(3, 2), mode="area")
                + tg.nn.functional.interpolate(x, size=(3, 2), mode="bicubic", antialias=True))
    x = tg.randn(1, 2, 7, 5)
    np.testing.assert_allclose(tg.compile(f)(x).numpy(), f(x).numpy(), rtol=1e-5, atol=1e-6)


# ---- (12) stride, storage_offset, data_ptr -----------------------------------------------

LAYOUTS = {
    "contiguous": lambda T: T.ones(2, 3),
    "t": lambda T: T.ones(2, 3).t(),
    "permute": lambda T: T.arange(24.0).reshape(2, 3, 4).permute(2, 0, 1),
    "select": lambda T: T.arange(24.0).reshape(2, 3, 4)[:, 1],
    "slice_step": lambda T: T.arange(24.0).reshape(2, 3, 4)[1, 1:, ::2],
    "unsqueeze": lambda T: T.ones(2, 3).unsqueeze(1),
    "none_index": lambda T: T.ones(2, 3)[:, None],
    "leading_none": lambda T: T.ones(2, 3)[None],
    "expand": lambda T: T.ones(2, 3).expand(4, 2, 3),
    "size_one_dims": lambda T: T.ones(2, 1, 3),
    "size_one_t": lambda T: T.ones(3, 1).t(),
    "empty": lambda T: T.ones(0, 3),
    "zero_dim": lambda T: T.tensor(1.0),
    "flat_slice": lambda T: T.arange(24.0).view(-1)[5:],
    "diagonal": lambda T: T.ones(3, 4).diagonal(),
    "narrow": lambda T: T.arange(20.0).reshape(4, 5).narrow(1, 2, 2),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_stride_and_storage_offset_match_torch(name):
    t, p = LAYOUTS[name](tg), LAYOUTS[name](torch)
    assert t.stride() == p.stride()
    assert t.storage_offset() == p.storage_offset()
    assert t.is_contiguous() == p.is_contiguous()
    for d in range(-t.ndim, t.ndim):
        assert t.stride(d) == p.stride(d)


def test_stride_of_a_bad_dim_raises_as_torch():
    for call in (lambda T: T.tensor(1.0).stride(0), lambda T: T.ones(2, 3).stride(2)):
        with pytest.raises(IndexError) as p:
            call(torch)
        with pytest.raises(IndexError) as t:
            call(tg)
        assert str(t.value) == str(p.value)


def test_data_ptr_moves_with_the_view_offset():
    for T in (tg, torch):
        a = T.arange(12.0, dtype=T.float64).reshape(3, 4)
        assert a[0].data_ptr() == a.data_ptr()
        assert a[1, 2:].data_ptr() - a.data_ptr() == 6 * 8
        assert a.clone().data_ptr() != a.data_ptr()


# ---- (13) NumPy scalars keep their dtype -------------------------------------------------

SCALAR_DATA = [
    "np.float64(1.5)", "np.float32(2)", "np.int16(3)", "np.int32(-4)", "np.bool_(True)",
    "np.uint8(7)", "np.float16(0.5)",
    "[np.int32(1)]", "[np.int32(1), 2]", "[np.int32(1), 2.5]", "[np.float16(1), 2]",
    "[np.float16(1), 2.0]", "[[np.int8(1)], [np.uint8(2)]]", "[np.int32(1), np.int64(2)]",
    "[np.float64(1), np.int64(2)]", "[1, np.float64(2)]", "[np.float64(2), True]",
    "[np.int32(3), True]", "[np.bool_(True), np.bool_(False)]", "[[1, 2], [np.uint8(3), 4]]",
    "([np.float64(1.0), 2.0], [3.0, 4.0])", "[1, 2]", "[1.0, 2]", "[]",
]


@pytest.mark.parametrize("expr", SCALAR_DATA)
@pytest.mark.parametrize("make", ["tensor", "as_tensor"])
def test_numpy_scalars_keep_their_dtype_as_torch(expr, make):
    data = eval(expr)
    t, p = getattr(tg, make)(data), getattr(torch, make)(eval(expr))
    assert str(t.dtype) == str(p.dtype)
    assert t.tolist() == p.tolist()


# ---- (4) median()/nanmedian()/max()/min() of NaN inputs: the NaNs share the gradient ----

NAN_REDUCTIONS = {
    "median_nan": lambda x: x.median(),
    "median_one_nan_2d": lambda x: x.reshape(2, 3).median(),
    "nanmedian_all_nan": lambda x: (x * float("nan")).nanmedian(),
    "nanmedian_some_nan": lambda x: x.nanmedian(),
    "max_nan": lambda x: x.max(),
    "min_nan": lambda x: x.min(),
    "max_dim_nan": lambda x: x.reshape(2, 3).max(1)[0],
    "amax_dim_nan": lambda x: x.reshape(2, 3).amax(0),
    "median_no_nan_ties": lambda x: x.nan_to_num(2.0).median(),
}


@pytest.mark.parametrize("name", list(NAN_REDUCTIONS))
def test_nan_reductions_spread_the_gradient_as_torch(name):
    def run(T):
        x = T.tensor([1.0, float("nan"), 3.0, float("nan"), 0.0, 2.0], dtype=T.float64,
                     requires_grad=True)
        out = NAN_REDUCTIONS[name](x)
        return out, _grads(T, out, [x])
    (t, tgr), (p, pgr) = run(tg), run(torch)
    np.testing.assert_array_equal(t.detach().numpy(), p.detach().numpy())
    assert type(t.grad_fn).__name__ == type(p.grad_fn).__name__
    _same_grads(tgr, pgr)


def test_median_of_nans_gradient_compiles():
    x = tg.tensor([1.0, float("nan"), 3.0, float("nan")], requires_grad=True)
    f = tg.compile(lambda x: tg.autograd.grad(x.median(), x)[0])
    np.testing.assert_array_equal(f(x).numpy(), [0.0, 0.5, 0.0, 0.5])


# ---- (11) add/sub/mul/sum leak no NumPy warnings (inf - inf, inf * 0, overflow) ---------

_SCRIPT = """
import warnings
import numpy as np
import tracegrad as tg
x, y = tg.tensor([float("inf"), 3e38, 0.0], requires_grad=True), tg.tensor([float("inf")] * 3)
with warnings.catch_warnings(record=True) as seen:
    np.add(np.float32(3e38), np.float32(3e38))
    ((x - y) + (x + y) + x * y).sum().backward()
    tg.tensor([3e38, 3e38]).sum()
print(len(seen))
"""


def test_a_script_sees_no_numpy_warnings_from_hot_kernels():
    import pathlib
    import subprocess
    import sys
    root = pathlib.Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=root, capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stdout.strip() == "1", out.stdout + out.stderr  # NumPy's own warning only


def test_hot_kernels_leak_no_numpy_warnings():
    from tracegrad import _quiet
    inf = float("inf")
    x = tg.tensor([inf, 3e38, 0.0], requires_grad=True)
    y = tg.tensor([inf, 3e38, inf])
    with warnings.catch_warnings(record=True) as seen:
        _quiet.drop_hot_kernel_warnings()  # (pytest's collection dropped the import's filter)
        np.add(np.float32(3e38), np.float32(3e38))  # the recorder sees NumPy's own warning
        numpy_own = len(seen)
        outs = [x - y, x + y, x * y, (x * y).sum(), tg.tensor([3e38, 3e38]).sum(0, keepdim=True),
                tg.tensor([[3e38], [3e38]]).sum(0)]
        (x * y).sum().backward()
    assert numpy_own == 1 and len(seen) == 1, [str(w.message) for w in seen]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tx, ty = torch.tensor([inf, 3e38, 0.0], requires_grad=True), torch.tensor([inf, 3e38, inf])
        touts = [tx - ty, tx + ty, tx * ty, (tx * ty).sum(),
                 torch.tensor([3e38, 3e38]).sum(0, keepdim=True),
                 torch.tensor([[3e38], [3e38]]).sum(0)]
        (tx * ty).sum().backward()
    for a, b in zip(outs, touts, strict=True):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())


def test_sum_keeps_numpys_integer_and_bool_result_dtypes():
    for dt in ("int8", "int16", "int32", "uint8", "bool"):
        for T in (tg, torch):
            a = T.ones(2, 3, dtype=getattr(T, dt))
            assert str(a.sum().dtype) == "torch.int64", (T, dt)
            assert str(a.sum(1, keepdim=True).dtype) == "torch.int64", (T, dt)


# ---- (5) det of singular matrices: torch's linalg_det_backward ---------------------------

SINGULAR = {
    "rank1_2x2": [[1.0, 2.0], [2.0, 4.0]],
    "zero_row": [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [4.0, 5.0, 6.0]],
    "rank2_3x3": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]],
    "rank1_3x3": [[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [3.0, 6.0, 9.0]],
    "zero_diag_entry": [[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 3.0]],
    "zeros": [[0.0, 0.0], [0.0, 0.0]],
    "invertible": [[2.0, 1.0], [1.0, 3.0]],
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("create_graph", [False, True])
@pytest.mark.parametrize("name", list(SINGULAR))
def test_det_gradient_of_singular_matrices_matches_torch(name, create_graph, dtype):
    # first order: 0 where det is exactly 0; create_graph: the cofactors (SVD formula)
    def run(T):
        a = T.tensor(SINGULAR[name], dtype=getattr(T, dtype), requires_grad=True)
        d = T.linalg.det(a)
        (g,) = T.autograd.grad(d * 1.5, a, create_graph=create_graph)
        return g.detach().numpy()
    tol = 1e-10 if dtype == "float64" else 2e-5
    np.testing.assert_allclose(run(tg), run(torch), rtol=tol, atol=tol)


def test_det_second_derivative_through_the_singular_branch():
    # d/dA of sum(cofactors(A)) at a rank-deficient A, as torch computes it
    def run(T):
        a = T.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]], dtype=T.float64,
                     requires_grad=True)
        (g,) = T.autograd.grad(T.linalg.det(a), a, create_graph=True)
        (h,) = T.autograd.grad((g * T.arange(9.0, dtype=T.float64).reshape(3, 3)).sum(), a)
        return h.numpy()
    np.testing.assert_allclose(run(tg), run(torch), rtol=1e-9, atol=1e-9)


def test_det_gradient_of_a_batch_mixing_singular_and_invertible():
    def run(T, create_graph):
        a = T.tensor([SINGULAR["rank2_3x3"], [[2.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 3.0]]],
                     dtype=T.float64, requires_grad=True)
        (g,) = T.autograd.grad(T.linalg.det(a).sum(), a, create_graph=create_graph)
        return g.detach().numpy()
    for cg in (False, True):
        np.testing.assert_allclose(run(tg, cg), run(torch, cg), rtol=1e-10, atol=1e-10)


def test_det_gradient_of_a_singular_matrix_compiles():
    a = tg.tensor(SINGULAR["rank1_2x2"], dtype=tg.float64, requires_grad=True)
    for cg, expect in ((False, np.zeros((2, 2))), (True, [[4.0, -2.0], [-2.0, 1.0]])):
        f = tg.compile(lambda a, cg=cg: tg.autograd.grad(tg.linalg.det(a), a, create_graph=cg)[0])
        np.testing.assert_allclose(f(a).detach().numpy(), expect, atol=1e-12)


# ---- (2) Tensor.unfold is a view ---------------------------------------------------------

def test_unfold_is_a_view_that_writes_through():
    for T in (tg, torch):
        x = T.arange(6.0)
        u = x.unfold(0, 2, 2)
        assert u._base is x and u._is_view() and x._base is None
        assert (u.stride(), u.storage_offset()) == ((2, 1), 0)
        u[1] = -1.0
        assert x.tolist() == [0.0, 1.0, -1.0, -1.0, 4.0, 5.0]
        x.add_(1)  # and the other way
        assert u.tolist() == [[1.0, 2.0], [0.0, 0.0], [5.0, 6.0]]


@pytest.mark.parametrize("shape,args", [((6,), (0, 2, 2)), ((3, 4), (1, 2, 2)),
                                        ((4, 3), (0, 1, 3)), ((2, 7), (-1, 2, 3))])
def test_inplace_through_unfold_records_copyslices(shape, args):
    def run(T):
        a = T.arange(float(np.prod(shape)), dtype=T.float64).reshape(shape).requires_grad_()
        x = a * 1
        u = x.unfold(*args)
        u.mul_(T.arange(1.0, u.shape[-1] + 1, dtype=T.float64))
        out = (x * x).sum()
        return x, u, out, _grads(T, out, [a])
    (tx, tu, tout, tgr), (px, pu, pout, pgr) = run(tg), run(torch)
    assert tout.item() == pout.item()
    np.testing.assert_array_equal(tx.detach().numpy(), px.detach().numpy())
    assert type(tx.grad_fn).__name__ == type(px.grad_fn).__name__ == "CopySlices"
    assert type(tu.grad_fn).__name__ == type(pu.grad_fn).__name__
    assert tu.stride() == pu.stride() and tu.storage_offset() == pu.storage_offset()
    _same_grads(tgr, pgr)


def test_unfold_view_sees_an_inplace_change_of_its_base_in_backward():
    def run(T):
        a = T.arange(8.0, dtype=T.float64, requires_grad=True)
        x = a * 1
        u = x.unfold(0, 3, 1)  # overlapping windows
        x.mul_(2)
        out = (u * T.arange(u.numel(), dtype=T.float64).reshape(u.shape)).sum()
        return u, _grads(T, out, [a])
    (tu, tgr), (pu, pgr) = run(tg), run(torch)
    np.testing.assert_array_equal(tu.detach().numpy(), pu.detach().numpy())
    assert type(tu.grad_fn).__name__ == type(pu.grad_fn).__name__ == "AsStridedBackward0"
    _same_grads(tgr, pgr)


def test_writing_through_overlapping_unfold_windows_is_refused():
    # torch writes each shared element once per window it is in (an order-dependent
    # result); here the overlapping view is read-only, with torch's overlap message
    x = tg.arange(6.0)
    with pytest.raises(RuntimeError, match="more than one element of the written-to tensor"):
        x.unfold(0, 3, 1).mul_(2)
    assert x.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_unfold_view_compiles():
    def f(a):
        x = a * 1
        x.unfold(0, 2, 2).mul_(3)
        return (x * x).sum()
    a = tg.arange(6.0, requires_grad=True)
    g = tg.compile(lambda a: tg.autograd.grad(f(a), a)[0])
    np.testing.assert_allclose(g(a).numpy(), tg.autograd.grad(f(a), a)[0].numpy())
    np.testing.assert_allclose(tg.compile(lambda a: a.unfold(0, 3, 1).sum(-1))(a).detach().numpy(),
                               [3.0, 6.0, 9.0, 12.0])


# ---- (6) qr: wide matrices, mode='complete' and mode='r' ---------------------------------

@pytest.mark.parametrize("shape", [(4, 3), (3, 3), (3, 5), (2, 2, 4), (2, 3, 2)])
@pytest.mark.parametrize("mode", ["reduced", "complete"])
@pytest.mark.parametrize("which", ["q", "r", "both"])
def test_qr_gradients_match_torch(shape, mode, which):
    a = np.random.default_rng(0).standard_normal(shape)

    def run(T):
        x = T.tensor(a, requires_grad=True)
        q, r = T.linalg.qr(x, mode=mode)
        cq = T.tensor(np.linspace(-1, 1, q.numel()).reshape(q.shape))
        cr = T.tensor(np.cos(np.arange(r.numel())).reshape(r.shape))
        loss = (q * cq).sum() * (which != "r") + (r * cr).sum() * (which != "q")
        try:
            (g,) = T.autograd.grad(loss, x)
        except RuntimeError as e:
            return str(e)
        return q.detach().numpy(), r.detach().numpy(), g.numpy()
    t, p = run(tg), run(torch)
    if isinstance(p, str):  # complete mode of a tall matrix: no derivative
        assert t == p
        return
    for u, v in zip(t, p, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)


def test_qr_mode_r_gives_r_and_no_derivative():
    a = np.random.default_rng(2).standard_normal((2, 4, 3))
    out = {}
    for T in (tg, torch):
        x = T.tensor(a, requires_grad=True)
        q, r = T.linalg.qr(x, mode="r")
        assert tuple(q.shape) == (0,) and str(q.dtype) == "torch.float64"
        assert type(r.grad_fn).__name__ == "LinalgQrBackward0"
        with pytest.raises(RuntimeError) as e:
            r.sum().backward()
        out[T] = (r.detach().numpy(), str(e.value))
    np.testing.assert_allclose(out[tg][0], out[torch][0], rtol=1e-12, atol=1e-14)
    assert out[tg][1] == out[torch][1]


def test_qr_bad_mode_raises_as_torch():
    with pytest.raises(RuntimeError) as p:
        torch.linalg.qr(torch.ones(2, 2), mode="x")
    with pytest.raises(RuntimeError) as t:
        tg.linalg.qr(tg.ones(2, 2), mode="x")
    assert str(t.value) == str(p.value)


def test_qr_wide_and_complete_compile():
    def f(x):
        q, r = tg.linalg.qr(x, mode="complete")
        q2, r2 = tg.linalg.qr(x.t()[:2])
        return tg.autograd.grad((q.sum() + r.sum()) + (q2 * r2[:, :2]).sum(), x)[0]
    x = tg.tensor(np.random.default_rng(3).standard_normal((3, 4)), requires_grad=True)
    np.testing.assert_allclose(tg.compile(f)(x).numpy(), f(x).numpy(), rtol=1e-9, atol=1e-9)


# ---- (10) embedding / embedding_bag max_norm: the picked rows renormed in place ----------

@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0])
@pytest.mark.parametrize("max_norm", [1.0, 2.5])
def test_embedding_max_norm_renorms_the_picked_rows_as_torch(max_norm, norm_type):
    w0 = (np.random.default_rng(0).standard_normal((6, 3)) * 2).astype(np.float32)
    tol = 0 if norm_type in (1.0, 2.0) else 3e-7

    def run(T):
        w = T.tensor(w0, requires_grad=True)
        e = T.nn.functional.embedding(T.tensor([[0, 2, 2], [5, 0, 1]]), w, max_norm=max_norm,
                                      norm_type=norm_type)
        (e * T.arange(18.0).reshape(2, 3, 3)).sum().backward()
        w2 = T.tensor(w0, requires_grad=True)
        bag = T.nn.Embedding.from_pretrained(w2, freeze=False, max_norm=max_norm,
                                             norm_type=norm_type)
        b = T.nn.functional.embedding_bag(T.tensor([1, 2, 4, 5, 4]), w2, T.tensor([0, 2]),
                                          max_norm=max_norm, norm_type=norm_type)
        b.sum().backward()
        m = bag(T.tensor([3]))
        return [w.detach().numpy(), e.detach().numpy(), w.grad.numpy(), w2.detach().numpy(),
                b.detach().numpy(), w2.grad.numpy(), m.detach().numpy()], w._version
    (t, tv), (p, pv) = run(tg), run(torch)
    for a, b in zip(t, p, strict=True):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    assert tv == pv == 1
    assert not np.array_equal(t[0], w0)  # some rows were renormed


# ---- (7) unique / unique_consecutive record torch's node, whose backward raises ----------

@pytest.mark.parametrize("call", [
    lambda T, x: T.unique(x),
    lambda T, x: T.unique(x, sorted=False, return_inverse=True)[0],
    lambda T, x: x.unique(return_counts=True)[0],
    lambda T, x: T.unique(x.reshape(3, 2), dim=0),
    lambda T, x: T.unique_consecutive(x),
    lambda T, x: T.unique_consecutive(x.reshape(3, 2), dim=1),
])
def test_unique_records_torchs_node_and_its_backward_raises(call):
    def run(T):
        x = T.tensor([3.0, 1.0, 3.0, 3.0, 1.0, 2.0], requires_grad=True)
        u = call(T, x)
        with pytest.raises(NotImplementedError) as e:
            u.sum().backward()
        return u, str(e.value)
    (t, te), (p, pe) = run(tg), run(torch)
    np.testing.assert_array_equal(t.detach().numpy(), p.detach().numpy())
    assert type(t.grad_fn).__name__ == type(p.grad_fn).__name__
    assert te == pe


def test_unique_of_a_tensor_without_grad_has_no_node():
    x = tg.tensor([3.0, 1.0, 3.0], requires_grad=True)
    assert tg.unique(x.detach()).grad_fn is None
    with tg.no_grad():
        assert tg.unique(x).grad_fn is None
    assert not tg.unique(x, return_inverse=True)[1].requires_grad


@pytest.mark.parametrize("shape,size,mode", [
    ((1, 1, 5), 0, "nearest"), ((1, 1, 5), 0, "linear"), ((1, 1, 5, 3), (0, 2), "bilinear"),
    ((1, 1, 5, 3), (0, 2), "nearest-exact"), ((1, 1, 16, 2), (4, 0), "bicubic"),
    ((1, 1, 5, 3, 3), (0, 2, 2), "trilinear"),
])
def test_interpolate_to_an_empty_size_raises_as_torch(shape, size, mode):
    with pytest.raises(RuntimeError) as p:
        torch.nn.functional.interpolate(torch.ones(shape), size=size, mode=mode)
    with pytest.raises(RuntimeError) as t:
        tg.nn.functional.interpolate(tg.ones(shape), size=size, mode=mode)
    assert str(t.value) == str(p.value)


# ---- ties: the index torch's CPU kernels pick (NOTE: [CPU tie order]) --------------

def _tied(seed, n, levels, nans=False):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, levels, n).astype(np.float64)
    if nans:
        a[rng.integers(0, n, 3)] = np.nan
    return a


TIE_CASES = [(seed, n, levels, nans) for seed, (n, levels, nans) in enumerate(
    [(6, 2, False), (17, 3, False), (40, 2, True), (100, 5, False), (257, 3, True),
     (300, 1, False)])]


@pytest.mark.parametrize("seed,n,levels,nans", TIE_CASES)
def test_tied_topk_kthvalue_sort_pick_torchs_indices(seed, n, levels, nans):
    a = _tied(seed, n, levels, nans)
    rng = np.random.default_rng(seed + 100)
    for T_a, P_a in [(tg.tensor(a), torch.tensor(a)),
                     (tg.tensor(a).reshape(-1, 1).expand(-1, 2).t().contiguous(), None)]:
        if P_a is None:
            P_a = torch.tensor(T_a.numpy())
        for k in sorted({1, int(rng.integers(1, n + 1)), n}):
            for largest in (True, False):
                for srt in (True, False):
                    got = T_a.topk(k, -1, largest, srt).indices.tolist()
                    assert got == P_a.topk(k, -1, largest, srt).indices.tolist()
            assert T_a.kthvalue(k).indices.tolist() == P_a.kthvalue(k).indices.tolist()
        for desc in (True, False):
            assert T_a.sort(descending=desc).indices.tolist() == \
                P_a.sort(descending=desc).indices.tolist()
            assert T_a.sort(descending=desc, stable=True).indices.tolist() == \
                P_a.sort(descending=desc, stable=True).indices.tolist()
            assert T_a.argsort(descending=desc).tolist() == P_a.argsort(descending=desc).tolist()


@pytest.mark.parametrize("dtype", ["int64", "int32", "float32", "uint8", "bool"])
def test_tied_sort_and_topk_of_other_dtypes_match_torch(dtype):
    a = np.random.default_rng(7).integers(0, 3, (3, 50))
    t, p = tg.tensor(a).to(getattr(tg, dtype)), torch.tensor(a).to(getattr(torch, dtype))
    assert t.sort(1).indices.tolist() == p.sort(1).indices.tolist()
    assert t.sort(0, descending=True).indices.tolist() == \
        p.sort(0, descending=True).indices.tolist()
    if dtype != "bool":
        assert t.topk(5, 1).indices.tolist() == p.topk(5, 1).indices.tolist()
        assert t.kthvalue(20, 1).indices.tolist() == p.kthvalue(20, 1).indices.tolist()


def test_tied_topk_kthvalue_sort_compile_to_torchs_indices():
    a = _tied(3, 60, 3).reshape(3, 20)

    def f(x):
        return (x.topk(4, 1).indices, x.kthvalue(7, 1).indices, x.sort(0).indices,
                x.topk(6, 1, largest=False, sorted=False).indices,
                (x.topk(3, 1).values * x.kthvalue(2, 0).values.sum()).sum())

    cf = tg.compile(f)
    x = tg.tensor(a, requires_grad=True)
    for _ in range(3):
        got = cf(x)
    px = torch.tensor(a, requires_grad=True)
    want = (px.topk(4, 1).indices, px.kthvalue(7, 1).indices, px.sort(0).indices,
            px.topk(6, 1, largest=False, sorted=False).indices,
            (px.topk(3, 1).values * px.kthvalue(2, 0).values.sum()).sum())
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g.detach().numpy(), w.detach().numpy())
    got[-1].backward()
    want[-1].backward()
    np.testing.assert_array_equal(x.grad.numpy(), px.grad.numpy())


# ---- writes into the part of overlapping unfold windows that shares no element -----

UNFOLD_WRITES = {
    "one element": lambda v, y: v.__setitem__((0, 0), y[0] * 3),
    "a shared element": lambda v, y: v.__setitem__((1, 0), y[0] * 3),
    "a window": lambda v, y: v.__setitem__(2, y * 2),
    "a column, in place": lambda v, y: v[:, 0].mul_(2),
    "part of a window": lambda v, y: v.__setitem__((3, slice(1, None)), y[1:]),
}


@pytest.mark.parametrize("name", list(UNFOLD_WRITES))
def test_writes_into_unshared_parts_of_unfold_windows_match_torch(name):
    def run(T):
        a = T.arange(8., dtype=T.float64).requires_grad_()
        y = T.tensor([2.5, -1.0, 3.0], dtype=T.float64, requires_grad=True)
        w = a * 1
        v = w.unfold(0, 3, 1)
        UNFOLD_WRITES[name](v, y)
        out = (w * T.arange(8., dtype=T.float64)).sum() + (v * v).sum()
        ga, gy = T.autograd.grad(out, (a, y), allow_unused=True)
        return [w.detach().numpy(), ga.numpy(), None if gy is None else gy.numpy()]

    for got, want in zip(run(tg), run(torch), strict=True):
        if want is None:
            assert got is None
        else:
            np.testing.assert_array_equal(got, want)


def test_unfold_window_write_without_grad_matches_torch():
    for T in (tg, torch):
        x = T.arange(6.0)
        x.unfold(0, 3, 1)[0, 0] = 5.0
        assert x.tolist() == [5.0, 1.0, 2.0, 3.0, 4.0, 5.0]


# ---- linalg.lstsq drivers and LinAlgError messages ------------------------------------

_LA = np.random.default_rng(11)
LSTSQ_CASES = {"tall": ((4, 3), (4, 2)), "wide": ((2, 4), (2, 3)),
               "batched": ((2, 5, 3), (2, 5, 2)), "vector": ((4, 3), (4,))}


@pytest.mark.parametrize("driver", [None, "gels", "gelsy", "gelsd", "gelss"])
@pytest.mark.parametrize("case", list(LSTSQ_CASES))
def test_lstsq_fields_and_gradients_match_torchs_drivers(case, driver):
    sa, sb = LSTSQ_CASES[case]
    a, b = _LA.standard_normal(sa), _LA.standard_normal(sb)

    def run(T):
        ta, tb = T.tensor(a, requires_grad=True), T.tensor(b, requires_grad=True)
        r = T.linalg.lstsq(ta, tb, driver=driver)
        loss = (r.solution * 1.3).sum()
        if r.residuals.numel():
            loss = loss + r.residuals.sum()
        ga, gb = T.autograd.grad(loss, (ta, tb))
        return [f.detach().numpy() for f in r] + [ga.numpy(), gb.numpy()], \
            type(r.residuals.grad_fn).__name__

    (got, gname), (want, wname) = run(tg), run(torch)
    assert gname == wname
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-10)


def test_lstsq_bad_driver_raises_as_torch():
    for T in (tg, torch):
        with pytest.raises(RuntimeError, match="parameter `driver` should be one of"):
            T.linalg.lstsq(T.eye(2), T.eye(2), driver="gelsx")


SINGULAR_INV = {
    "2x2": [[1.0, 2.0], [2.0, 4.0]],
    "3x3 rank 2": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]],
    "zero": [[0.0, 0.0], [0.0, 0.0]],
    "batch": [[[1.0, 0.0], [0.0, 1.0]], [[1.0, 2.0], [2.0, 4.0]]],
}


@pytest.mark.parametrize("name", list(SINGULAR_INV))
@pytest.mark.parametrize("call", ["linalg.inv", "inverse"])
def test_inverse_of_a_singular_matrix_raises_torchs_linalg_error(name, call):
    def message(T):
        fn = T.linalg.inv if call == "linalg.inv" else T.inverse
        with pytest.raises(RuntimeError) as info:
            fn(T.tensor(SINGULAR_INV[name]))
        assert isinstance(info.value, T.linalg.LinAlgError)
        return str(info.value)

    assert message(tg) == message(torch)


# ---- singular det / slogdet as torch's LU leaves them (NOTE: [LAPACK LU]) ------------

def _rank_deficient(seed, count=40):
    rng = np.random.default_rng(seed)
    out = [np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]), np.array([[-0.0]]),
           np.array([[0.0, 1.0], [0.0, 1.0]]), np.array([[-1.0, 0.0], [1.0, 0.0]])]
    for _ in range(count):
        n = int(rng.integers(1, 5))
        r = int(rng.integers(0, n))
        a = rng.integers(-2, 3, (n, r)) @ rng.integers(-2, 3, (r, n)) if r else np.zeros((n, n))
        out.append(a.astype(np.float64) * rng.choice([-1.0, 1.0]))
    return out


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_singular_det_slogdet_values_signed_zeros_and_gradients_match_torch(dtype):
    def run(T, a):
        t = T.tensor(a, dtype=getattr(T, dtype), requires_grad=True)
        d = T.linalg.det(t)
        sign, logabs = T.linalg.slogdet(t)
        g, = T.autograd.grad(logabs.sum(), t)
        return [v.detach().numpy() for v in (d, sign, logabs, g)]

    for a in _rank_deficient(3):
        want_all = run(torch, a)
        if 0 < abs(want_all[0]) < 1e-10:
            continue  # a singular matrix whose LU leaves rounding noise, not an exact zero
        for got, want in zip(run(tg, a), want_all, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9, equal_nan=True)
            zero = (got == 0) & (want == 0)
            np.testing.assert_array_equal(np.signbit(got[zero]), np.signbit(want[zero]))


def test_singular_det_of_a_batch_matches_torch():
    a = np.stack([np.eye(3) * 2, [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]],
                  [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]])
    for fn in (lambda T, t: T.linalg.det(t), lambda T, t: T.linalg.slogdet(t)[0],
               lambda T, t: T.linalg.slogdet(t)[1]):
        got, want = fn(tg, tg.tensor(a)).numpy(), fn(torch, torch.tensor(a)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-12)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


@pytest.mark.parametrize("n,dtype", [(32767, "int64"), (32768, "int64"), (32768, "uint8")])
def test_long_tied_1d_sort_picks_torchs_kernel(n, dtype):
    # 1-d integers from GRAIN_SIZE (32768) up sort by fbgemm's (stable) radix sort in torch
    a = np.random.default_rng(n).integers(0, 10, n)
    t, p = tg.tensor(a).to(getattr(tg, dtype)), torch.tensor(a).to(getattr(torch, dtype))
    assert np.array_equal(t.sort().indices.numpy(), p.sort().indices.numpy())
