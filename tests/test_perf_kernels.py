"""The faster NumPy kernels of issue 14 against the plain forms they replace: the float32
erf inside GELU (NOTE: [Float32 erf for GELU]), the pooling argmax over window taps, and
scatter_add through flat indices. (Values vs torch: op_table rows and test_nn.)"""
import numpy as np
import pytest
from scipy import special

import tracegrad as tg
from tracegrad import primitives as P


def _ulps(a, b):
    return np.abs(a.view(np.int32).astype(np.int64) - b.view(np.int32).astype(np.int64))


def test_float32_erf_within_one_ulp_of_scipy():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(100_000).astype(np.float32) * 3,
                        np.linspace(-6, 6, 100_001, dtype=np.float32),
                        np.array([0.0, -0.0, 4.0, -4.0, 1e-30, 100.0], np.float32)])
    got = P._erf_float32_(x.copy())
    ref = special.erf(x)
    assert got.dtype == np.float32
    assert _ulps(got, ref).max() <= 1
    assert (got == ref).mean() > 0.97
    specials = P._erf_float32_(np.array([np.nan, np.inf, -np.inf] * 2000, np.float32))
    assert np.isnan(specials[0]) and specials[1] == 1 and specials[2] == -1


def test_small_arrays_keep_scipys_erf():
    x = np.linspace(-3, 3, 100, dtype=np.float32)
    assert np.array_equal(P._erf_float32_(x.copy()), special.erf(x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_backward_matches_the_composite_derivative(dtype):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((64, 128)) * 3).astype(dtype)
    g = rng.standard_normal((64, 128)).astype(dtype)
    got = P.gelu_backward_p.impl(g, x)
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    ref = g64 * (0.5 * (1 + special.erf(x64 / np.sqrt(2)))
                 + x64 * np.exp(-0.5 * x64 * x64) / np.sqrt(2 * np.pi))
    assert got.dtype == dtype
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 if dtype == np.float32 else 1e-14)


POOLS = [  # (input shape, kernel, stride, padding, dilation, ceil_mode)
    ((4, 3, 24, 24), (2, 2), (2, 2), (0, 0), (1, 1), False),
    ((2, 3, 9, 9), (3, 3), (1, 1), (1, 1), (1, 1), False),
    ((2, 2, 11, 10), (3, 2), (2, 3), (1, 1), (2, 1), True),
    ((2, 2, 7), (3,), (2,), (1,), (1,), True),
]


@pytest.mark.parametrize("shape, kernel, stride, padding, dilation, ceil", POOLS)
@pytest.mark.parametrize("ties", [False, True])
def test_pool_argmax_by_taps_is_numpys_argmax(shape, kernel, stride, padding, dilation, ceil,
                                              ties):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape)
    if ties:
        x = np.round(x)  # many equal values: the first maximum wins
    kw = dict(kernel=kernel, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil)
    out, pads = P._pool_geometry(x.shape[2:], kernel, stride, padding, dilation, ceil)
    win = P._window_view(P._pad_crop(x, pads, -np.inf), kernel, stride, dilation)
    win = win[(slice(None),) * 2 + tuple(slice(0, o) for o in out)]
    nsp = len(kernel)
    ref = np.argmax(win.reshape(win.shape[:2 + nsp] + (-1,)), axis=-1)
    assert np.array_equal(P._first_max_tap(win, nsp), ref)
    idx = P.pool_argmax_p.impl(x, **kw)
    assert idx.shape == tuple(x.shape[:2]) + out


def test_pool_argmax_with_nan_takes_the_first_nan():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, 1] = np.nan
    x[0, 0, 1, 0] = np.nan
    idx = P.pool_argmax_p.impl(x, kernel=(2, 2), stride=(2, 2), padding=(0, 0),
                               dilation=(1, 1), ceil_mode=False)
    assert idx[0, 0, 0, 0] == 1


def _scatter_add_grids(base, idx, g, axis):
    out = base.copy()
    grids = list(np.indices(idx.shape, sparse=True))
    grids[axis] = idx
    np.add.at(out, tuple(grids), g)
    return out


SCATTERS = [((4, 5, 6), (4, 5, 3), 2), ((4, 5, 6), (2, 5, 6), 0), ((4, 5, 6), (4, 2, 6), 1),
            ((7,), (10,), 0), ((3, 4), (2, 3), 1), ((3, 4), (2, 3), 0), ((3, 4), (3, 1), -1)]


@pytest.mark.parametrize("shape, ishape, axis", SCATTERS)
def test_scatter_add_by_flat_index_is_the_grid_form(shape, ishape, axis):
    rng = np.random.default_rng(3)
    base = rng.standard_normal(shape)
    n = shape[axis]
    idx = rng.integers(-n, n, ishape)  # repeats and negative indices
    g = rng.standard_normal(ishape)
    got = P.scatter_add_p.impl(base, idx, g, axis=axis % len(shape))
    assert np.array_equal(got, _scatter_add_grids(base, idx, g, axis % len(shape)))


def test_scatter_add_out_of_range_index_is_an_error():
    with pytest.raises(IndexError, match="out of bounds"):
        P.scatter_add_p.impl(np.zeros((2, 3)), np.array([[3]]), np.ones((1, 1)), axis=1)


def test_max_pool_grad_still_goes_to_the_first_maximum():
    x = tg.tensor([[[[1.0, 3.0], [3.0, 0.0]]]], requires_grad=True)
    tg.nn.functional.max_pool2d(x, 2).sum().backward()
    assert x.grad.tolist() == [[[[0.0, 1.0], [0.0, 0.0]]]]


ROW_ADDS = [((256, 8), (4, 16)), ((7,), (10,)), ((5, 2, 3), (2, 2)), ((6, 4), (0,))]


@pytest.mark.parametrize("shape, ishape", ROW_ADDS)
def test_index_add_of_rows_is_add_at(shape, ishape):
    rng = np.random.default_rng(4)
    base = rng.standard_normal(shape).astype(np.float32)
    rows = rng.integers(-shape[0], shape[0], ishape)  # repeats and negative rows
    g = rng.standard_normal(ishape + shape[1:]).astype(np.float32)
    ref = base.copy()
    np.add.at(ref, rows, g)
    assert np.array_equal(P.index_add_p.impl(base, g, rows, index=(P.TENSOR,)), ref)


def test_index_add_of_rows_out_of_range_is_an_error():
    with pytest.raises(IndexError, match="out of bounds"):
        P.index_add_p.impl(np.zeros((3, 2)), np.ones((1, 2)), np.array([3]), index=(P.TENSOR,))


def test_embedding_grad_sums_repeated_rows():
    w = tg.zeros(4, 2, requires_grad=True)
    tg.nn.functional.embedding(tg.tensor([[1, 1], [3, 1]]), w).sum().backward()
    assert w.grad.tolist() == [[0, 0], [3, 3], [0, 0], [1, 1]]
