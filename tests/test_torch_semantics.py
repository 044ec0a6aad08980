"""Values, dtypes and errors that must be PyTorch's exactly (issue 12, part A).

Each test runs the same snippet on tracegrad and torch and compares values, dtypes and
error types and messages; they skip without torch.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import tracegrad as tg

torch = pytest.importorskip("torch")


def _both(fn):
    """fn(T) under tracegrad and torch: (value, type name) or (error type, message)."""
    out = []
    for T in (tg, torch):
        try:
            r = fn(T)
        except Exception as e:  # the error itself is what is compared
            out.append(("raised", type(e).__name__, str(e).split("\n")[0]))
            continue
        out.append(r)
    return out


def _same(fn):
    ours, theirs = _both(fn)
    if _raised(theirs) or _raised(ours):
        assert _raised(ours) and ours == theirs, (ours, theirs)
        return
    _assert_same_tensors(ours, theirs)


def _raised(r):
    return isinstance(r, tuple) and len(r) == 3 and isinstance(r[0], str) and r[0] == "raised"


def _assert_same_tensors(ours, theirs):
    if isinstance(theirs, (tuple, list)):
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            _assert_same_tensors(a, b)
        return
    if isinstance(theirs, torch.Tensor):
        assert str(ours.dtype) == str(theirs.dtype)
        assert tuple(ours.shape) == tuple(theirs.shape)
        a, b = ours.detach().numpy(), theirs.detach().numpy()
        np.testing.assert_array_equal(a, b)
        if a.dtype.kind == "f":  # the sign of zero too (a nan's sign is not shown by torch)
            np.testing.assert_array_equal(np.signbit(a) & ~np.isnan(a),
                                          np.signbit(b) & ~np.isnan(b))
        return
    assert ours == theirs


# ---- bitwise ops ------------------------------------------------------------

def _i32(T):
    return T.tensor([1, -8, 6], dtype=T.int32)


@pytest.mark.parametrize("expr", [
    lambda T: _i32(T) & 0x1337,
    lambda T: _i32(T) | 0x1337,
    lambda T: _i32(T) ^ 0x1337,
    lambda T: ~_i32(T),
    lambda T: 5 & _i32(T),
    lambda T: 5 | _i32(T),
    lambda T: 5 ^ _i32(T),
    lambda T: _i32(T) & T.tensor([3]),               # promotes to int64
    lambda T: T.tensor([True, False]) & True,        # bool stays bool: logical
    lambda T: T.tensor([True, False]) | T.tensor([False, False]),
    lambda T: ~T.tensor([True, False]),
    lambda T: T.tensor([True]) & 1,                  # bool with an int: int64
    lambda T: T.bitwise_and(5, _i32(T)),
    lambda T: T.bitwise_not(_i32(T)),
    lambda T: _i32(T).bitwise_xor(3),
    lambda T: _i32(T) << 2,
    lambda T: _i32(T) >> 1,
    lambda T: 2 << _i32(T).abs(),
    lambda T: _i32(T).__rrshift__(100),
    lambda T: T.bitwise_left_shift(_i32(T), 40),     # out of range: 0
    lambda T: _i32(T) << -1,
    lambda T: T.tensor([-8, 8]) >> 70,               # out of range: the sign
    lambda T: T.tensor([1, 255], dtype=T.uint8) << 9,
    lambda T: T.tensor([1, 255], dtype=T.uint8) >> 8,
    lambda T: T.tensor([3], dtype=T.int8) << 7,      # wraps
    lambda T: T.tensor([True]) << 1,
    lambda T: T.bitwise_right_shift(T.tensor([-5, 5]), T.tensor([1, 2])),
    lambda T: T.tensor([1.0]) & 1,
    lambda T: T.tensor([1.0]) | 1,
    lambda T: T.tensor([1.0]) ^ T.tensor([1.0]),
    lambda T: _i32(T) | 3.0,
    lambda T: ~T.tensor([1.0]),
    lambda T: T.bitwise_not(T.tensor([1.0])),
    lambda T: T.tensor([1.0]) << 1,
    lambda T: T.tensor([1.5]).__rrshift__(3),
    lambda T: T.bitwise_left_shift(T.tensor([1.0]), 1),
], ids=lambda f: "")
def test_bitwise(expr):
    _same(expr)


@pytest.mark.parametrize("op", ["__iand__", "__ior__", "__ixor__", "__ilshift__", "__irshift__",
                                "bitwise_and_", "bitwise_or_", "bitwise_xor_",
                                "bitwise_left_shift_", "bitwise_right_shift_"])
def test_bitwise_inplace(op):
    def f(T):
        t = _i32(T)
        r = getattr(t, op)(3)
        return t, r is t
    _same(f)
    _same(lambda T: (lambda t: (t.bitwise_not_(), t))(_i32(T)))
    _same(lambda T: getattr(T.tensor([True]), op)(1))  # int64 result into bool: refused


def test_bitwise_compiled_matches_eager():
    def f(x, y):
        return (x & 0x1337) | (y << 3) ^ ~x, (x >> 40) + (x << 70), y >> y
    x, y = tg.tensor([1, -8, 6, 2 ** 40]), tg.tensor([3, 1, -1, 64])
    want = f(x, y)
    cf = tg.compile(f)
    for _ in range(3):
        for got, w in zip(cf(x, y), want, strict=True):
            np.testing.assert_array_equal(got.numpy(), w.numpy())
    t = torch.tensor([1, -8, 6, 2 ** 40]), torch.tensor([3, 1, -1, 64])
    for got, w in zip(want, f(*t), strict=True):
        np.testing.assert_array_equal(got.numpy(), w.numpy())


# ---- linspace / logspace ----------------------------------------------------

@pytest.mark.parametrize("steps", [1, 2, 3, 5, 7, 10, 17, 33, 100, 1000])
@pytest.mark.parametrize("ends", [(5, 10), (-3.3, 7.1), (1000.0, -2.5), (-3, 100), (0, 1)])
@pytest.mark.parametrize("dtype", ["int32", "int64", "int16"])
def test_linspace_integer_dtype(steps, ends, dtype):
    _same(lambda T: T.linspace(*ends, steps, dtype=getattr(T, dtype)))


def test_linspace_examples():
    assert tg.linspace(5, 10, 3, dtype=tg.int32).tolist() == [5, 7, 10]
    _same(lambda T: T.linspace(0, 1, 5))
    _same(lambda T: T.linspace(-1, 1, 7, dtype=T.float64))
    _same(lambda T: T.linspace(0, 1, -1))


@pytest.mark.parametrize("args", [(0, 3, 4), (0, 3, 4, 2.0), (-1.5, 2, 5, 3.0), (1, 3, 5),
                                  (0.5, 1, 1), (0, 1, 0)])
@pytest.mark.parametrize("dtype", [None, "float64", "int64"])
def test_logspace(args, dtype):
    kw = {} if dtype is None else {"dtype": dtype}
    ours, theirs = _both(lambda T: T.logspace(
        *args, **({k: getattr(T, v) for k, v in kw.items()})))
    assert str(ours.dtype) == str(theirs.dtype)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)


# ---- pow: gradients of a scalar base, small integer exponents bit for bit ------

@pytest.mark.parametrize("base", [-2.0, 0.0, 1.0, 2.5, -0.5])
def test_rpow_scalar_gradient(base):
    def f(T):
        x = T.tensor([1.0, 2.0, -1.0, 0.0, 0.5, -2.5, math.nan], requires_grad=True)
        y = base ** x
        return y, T.autograd.grad(y.sum(), x)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no NumPy warning on the way
        _same(f)


def test_tensor_pow_gradients_match_torch():
    def f(T):
        x = T.tensor([0.0, 0.0, -2.0, 2.0, 0.0], requires_grad=True)
        y = T.tensor([0.0, -1.0, 0.5, 3.0, 2.0], requires_grad=True)
        return T.autograd.grad((x ** y).sum(), (x, y))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _same(f)


@pytest.mark.parametrize("exponent", [2, 3, -1, -2, -0.5, 0, 1, 2.0, 3.0])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_small_integer_powers_bit_identical(exponent, dtype):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal(20000) * rng.choice([1e-3, 1.0, 1e3], 20000)).astype(dtype)
    a = np.concatenate([a, np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, 3e38], dtype)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = (tg.tensor(a) ** exponent).numpy()
    theirs = (torch.from_numpy(a) ** exponent).numpy()
    np.testing.assert_array_equal(ours.view(f"u{a.itemsize}"), theirs.view(f"u{a.itemsize}"))


def test_integer_tensor_powers():
    _same(lambda T: T.tensor([3, -2, 0], dtype=T.int32) ** 3)
    _same(lambda T: T.tensor([3, -2, 0]) ** 2)


# ---- shapes: masked_select, dims of 0-d tensors, view, reshape ------------------

def test_masked_select():
    _same(lambda T: T.masked_select(T.arange(6.0).reshape(2, 3), T.tensor(True)))
    _same(lambda T: T.masked_select(T.arange(6.0).reshape(2, 3), T.tensor([True, False, True])))
    _same(lambda T: T.masked_select(T.tensor(2.0), T.tensor([[True, False], [True, True]])))
    _same(lambda T: T.masked_select(T.ones(2), T.tensor([1.0, 0.0])))

    def grad(T):
        x = T.arange(6.0).reshape(2, 3).requires_grad_()
        y = x.masked_select(T.tensor([True, False, True]))
        return y, T.autograd.grad((y * T.arange(4.0)).sum(), x)[0], type(y.grad_fn).__name__
    _same(grad)


@pytest.mark.parametrize("op", [
    lambda T, x: x.sum(1), lambda T, x: x.sum((0, 1)), lambda T, x: x.mean(-2),
    lambda T, x: x.squeeze(1), lambda T, x: x.unsqueeze(2), lambda T, x: x.flatten(1),
    lambda T, x: x.softmax(1), lambda T, x: x.log_softmax(-2), lambda T, x: x.transpose(0, 1),
    lambda T, x: x.argmax(1), lambda T, x: x.max(1), lambda T, x: x.cumsum(1),
    lambda T, x: x.std(1), lambda T, x: x.norm(dim=1), lambda T, x: x.logsumexp(1),
    lambda T, x: x.all(1), lambda T, x: x.flip(1), lambda T, x: x.amax(1),
    lambda T, x: x.prod(1), lambda T, x: x.var(-2), lambda T, x: x.any(-2),
    lambda T, x: x.sum(0), lambda T, x: x.sum(-1), lambda T, x: x.squeeze(-1),
], ids=lambda f: "")
def test_dims_of_a_0d_tensor(op):
    _same(lambda T: op(T, T.tensor(1.5)))


@pytest.mark.parametrize("view", [
    lambda x: x.t().view(-1),
    lambda x: x.t().view(3, 2),
    lambda x: x.t().view(3, 1, 2),
    lambda x: x.t().contiguous().view(-1),
    lambda x: x[:, ::2].view(-1),
    lambda x: x[:, 1:].view(2, 2),
    lambda x: x[:1].view(-1),
    lambda x: x.expand(2, 2, 3).view(4, 3),
    lambda x: x.expand(2, 2, 3).view(2, 6),
    lambda x: x.unsqueeze(0).expand(2, 2, 3).view(2, 2, 3, 1),
    lambda x: x.reshape(1, 2, 3).permute(1, 0, 2).view(2, 3),
    lambda x: x.reshape(2, 3, 1).transpose(1, 2).view(2, 3),
    lambda x: x.t().reshape(-1),
], ids=lambda f: "")
def test_view_checks_strides(view):
    def f(T):
        x = T.arange(6.0).reshape(2, 3)
        v = view(x)
        return v, v.is_contiguous()
    _same(f)


def test_view_of_a_4d_permute():
    for perm, shape in [((0, 2, 1, 3), (2, 12)), ((0, 2, 1, 3), (2, 3, 2, 2)),
                        ((1, 0, 2, 3), (3, 2, 4)), ((0, 1, 3, 2), (6, 4)),
                        ((0, 1, 3, 2), (2, 3, 4)), ((2, 3, 0, 1), (4, 6))]:
        _same(lambda T, perm=perm, shape=shape:
              T.arange(24.0).reshape(2, 3, 2, 2).permute(*perm).view(*shape))


def test_contiguous():
    def f(T):
        x = T.arange(6.0).reshape(2, 3).requires_grad_()
        c = x.t().contiguous()
        same = x.contiguous() is x
        return c, c.is_contiguous(), x.t().is_contiguous(), same, type(c.grad_fn).__name__
    _same(f)


# ---- errors -------------------------------------------------------------------

@pytest.mark.parametrize("expr", [
    lambda T: T.nn.functional.binary_cross_entropy(T.tensor([1.5]), T.tensor([1.0])),
    lambda T: T.nn.functional.binary_cross_entropy(T.tensor([-0.5]), T.tensor([1.0])),
    lambda T: T.nn.functional.binary_cross_entropy(T.tensor([math.nan]), T.tensor([1.0])),
    lambda T: T.gather(T.ones(3), 0, T.tensor([0.0])),
    lambda T: T.gather(T.ones(3), 0, T.tensor([True])),
    lambda T: T.gather(T.ones(3), 0, T.tensor([0], dtype=T.int32)),
    lambda T: T.where(T.tensor([1.0]), T.ones(1), T.zeros(1)),
    lambda T: T.where(T.tensor([1, 0]), T.ones(2), T.zeros(2)),
    lambda T: T.ones(2).masked_fill(T.tensor([1.0, 0.0]), 3),
    lambda T: T.ones(2).masked_fill(T.tensor([1, 0]), 3),
    lambda T: T.ones(2).masked_fill(T.tensor([1, 0], dtype=T.uint8), 3),
    lambda T: T.ones(3).narrow(0, 2, 2),
    lambda T: T.ones(3).narrow(0, 4, 0),
    lambda T: T.ones(3).narrow(0, -4, 1),
    lambda T: T.ones(3).narrow(0, 1, -1),
    lambda T: T.ones(3).narrow(0, 3, 0),
    lambda T: T.ones(3).narrow(0, -1, 1),
    lambda T: T.ones(3).narrow(1, 0, 1),
    lambda T: T.ones(6).reshape(-2, 3),
    lambda T: T.ones(6).view(-3, -1),
    lambda T: T.ones(6).reshape(2, -1, -1),
    lambda T: T.arange(0, 3, 0),
    lambda T: T.arange(0.0, 3, 0.0),
    lambda T: T.arange(1, 0, 1),
    lambda T: T.arange(0, 3, -1),
    lambda T: T.arange(0, 0, -1),
    lambda T: T.arange(0, math.inf),
    lambda T: T.tensor([1.0], dtype="float32"),
    lambda T: T.tensor([1.0], dtype=float),
    lambda T: T.arange(6.0).reshape(2, 3).t().view(-1),
], ids=lambda f: "")
def test_errors_match_torch(expr):
    _same(expr)


# ---- NumPy's RuntimeWarnings do not leak from eager ops -------------------------

@pytest.mark.parametrize("expr", [
    lambda T: T.tensor([1.0, 0.0, -1.0]) / 0,
    lambda T: T.log(T.tensor([0.0, -1.0])),
    lambda T: T.log1p(T.tensor([-1.0, -2.0])),
    lambda T: T.log2(T.tensor([0.0])),
    lambda T: T.exp(T.tensor([1000.0])),
    lambda T: T.expm1(T.tensor([1000.0])),
    lambda T: T.sqrt(T.tensor([-1.0])),
    lambda T: T.rsqrt(T.tensor([0.0, -1.0])),
    lambda T: T.tensor([-1.0, 0.0]) ** 0.5,
    lambda T: T.tensor([0.0]) ** -1,
    lambda T: T.tensor([-8.0]) ** T.tensor([1 / 3]),
    lambda T: T.tensor([math.nan, math.inf]).long(),
    lambda T: T.tensor([0.0]).reciprocal(),
    lambda T: T.tensor([1.0, 0.0]) % 0.0,
    lambda T: T.tensor([1e300]).float(),
], ids=lambda f: "")
def test_no_numpy_warnings(expr):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = expr(tg)
    theirs = expr(torch)
    assert str(ours.dtype) == str(theirs.dtype)
    if ours.dtype.is_floating_point:
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_users_numpy_error_state_is_left_alone():
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        tg.log(tg.tensor([0.0]))
        np.log(np.zeros(1))
    assert len(w) == 1 and "divide by zero" in str(w[0].message)


# ---- compile: constants of every kind, int max-pool ----------------------------

@pytest.mark.parametrize("src", ["math.nan", "math.inf", "-math.inf", "-0.0", "1e-30", "2.5"])
def test_compiled_float_constants(src):
    # the constant is baked into the generated jax source (a global, not a closure cell)
    fn = eval(f"lambda x: x * {src} + tg.full((2,), {src})", {"tg": tg, "math": math})
    f = tg.compile(fn)
    x = tg.tensor([1.0, -2.0])
    want = eval(f"torch.tensor([1.0, -2.0]) * {src} + torch.full((2,), {src})",
                {"torch": torch, "math": math}).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no graph break: really compiled
        warnings.simplefilter("ignore", RuntimeWarning)  # inf - inf in add (see the NOTE)
        for _ in range(3):  # trace, build, cached
            got = f(x).numpy()
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(np.signbit(got) & ~np.isnan(got),
                                          np.signbit(want) & ~np.isnan(want))


@pytest.mark.parametrize("const", [2 ** 63 - 1, -2 ** 63, 0, True, False])
def test_compiled_int_and_bool_constants(const):
    f = tg.compile(lambda x: x * 0 + const)
    x = tg.tensor([1, 2])
    for _ in range(3):
        assert f(x).tolist() == [int(const)] * 2


def test_compiled_float16_constant_and_clamp_to_nan():
    f = tg.compile(lambda x: x.half() * 65504.0 + tg.tensor(0.0999, dtype=tg.float16))
    g = tg.compile(lambda x: tg.clamp(x, min=-math.inf, max=math.nan))
    x = tg.tensor([1.0, 0.5])
    want = (torch.tensor([1.0, 0.5]).half() * 65504.0
            + torch.tensor(0.0999, dtype=torch.float16)).numpy()
    want_g = torch.clamp(torch.tensor([1.0, 0.5]), min=-math.inf, max=math.nan).numpy()
    for _ in range(3):
        np.testing.assert_array_equal(f(x).numpy(), want)
        np.testing.assert_array_equal(g(x).numpy(), want_g)


@pytest.mark.parametrize("dtype", ["int64", "int32", "float32"])
def test_compiled_max_pool_indices_of_int_tensor(dtype):
    f = tg.compile(lambda x: tg.nn.functional.max_pool2d(x, 2, padding=1, return_indices=True))
    x = (tg.arange(16) - 20).reshape(1, 1, 4, 4).to(getattr(tg, dtype))
    want = torch.nn.functional.max_pool2d(
        (torch.arange(16) - 20).reshape(1, 1, 4, 4).to(getattr(torch, dtype)), 2, padding=1,
        return_indices=True)
    for _ in range(3):
        for got, w in zip(f(x), want, strict=True):
            np.testing.assert_array_equal(got.numpy(), w.numpy())


# ---- numpy-style names on reductions ----------------------------------------------

@pytest.mark.parametrize("name", ["sum", "mean", "prod", "amax", "amin", "max", "min", "argmax",
                                  "argmin", "var", "std", "logsumexp", "all", "any", "cumsum",
                                  "softmax", "log_softmax", "squeeze", "unsqueeze"])
@pytest.mark.parametrize("kw", [{"axis": 1}, {"dim": 1, "keepdims": True},
                                {"axis": 0, "keepdims": True}, {"axis": 1, "dim": 1}])
def test_axis_and_keepdims_aliases(name, kw):
    def f(T, method):
        x = T.tensor([[1.0, 5.0, 3.0], [4.0, 2.0, 6.0]])
        r = getattr(x, name)(**kw) if method else getattr(T, name)(x, **kw)
        return tuple(r) if isinstance(r, tuple) else r
    for method in (False, True):
        ours, theirs = _both(lambda T, method=method: f(T, method))
        if _raised(theirs):
            assert _raised(ours) and ours[1] == theirs[1]
        else:
            _assert_same_tensors(ours, theirs)
