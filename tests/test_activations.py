"""Issue 12's elementwise ops and activations against torch: values at kinks and special
points, gradients there as torch defines them, grad_fn names, in-place forms, modules
and their reprs. The op table (tests/op_table.py) covers forward/gradcheck/compiled."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import tracegrad as tg

torch = pytest.importorskip("torch")

KINK_POINTS = [-7.0, -3.0, -1.0, -0.5, -0.2, 0.0, 0.2, 0.5, 1.0, 3.0, 6.0, 7.0, 25.0]


def _F(T):
    return T.nn.functional


KINKS = {
    "hardtanh": lambda T, x: _F(T).hardtanh(x),
    "hardtanh_bounds": lambda T, x: _F(T).hardtanh(x, -0.5, 3.0),
    "relu6": lambda T, x: _F(T).relu6(x),
    "hardsigmoid": lambda T, x: _F(T).hardsigmoid(x),
    "hardswish": lambda T, x: _F(T).hardswish(x),
    "elu": lambda T, x: _F(T).elu(x, 2.0),
    "celu": lambda T, x: _F(T).celu(x, 0.5),
    "selu": lambda T, x: _F(T).selu(x),
    "silu": lambda T, x: _F(T).silu(x),
    "mish": lambda T, x: _F(T).mish(x),
    "softplus": lambda T, x: _F(T).softplus(x),
    "softplus_threshold": lambda T, x: _F(T).softplus(x, 2.0, 1.0),
    "softsign": lambda T, x: _F(T).softsign(x),
    "logsigmoid": lambda T, x: _F(T).logsigmoid(x),
    "threshold": lambda T, x: _F(T).threshold(x, 1.0, -2.0),
    "tanhshrink": lambda T, x: _F(T).tanhshrink(x),
    "softshrink": lambda T, x: _F(T).softshrink(x, 0.5),
    "hardshrink": lambda T, x: _F(T).hardshrink(x, 0.5),
    "leaky_relu": lambda T, x: _F(T).leaky_relu(x, 0.2),
    "rrelu_eval": lambda T, x: _F(T).rrelu(x),
    "prelu": lambda T, x: _F(T).prelu(x, T.tensor([0.25], dtype=x.dtype)),
    "abs": lambda T, x: T.abs(x),
    "copysign": lambda T, x: T.copysign(x, T.tensor(-1.0, dtype=x.dtype)),
    "frac": lambda T, x: T.frac(x * 0.7),
    "trunc": lambda T, x: T.trunc(x * 0.7),
    "sinc": lambda T, x: T.sinc(x),
    "logit_eps": lambda T, x: T.logit(x * 0.1 + 0.5, eps=0.2),
    "xlogy": lambda T, x: T.xlogy(x, T.tensor(2.0, dtype=x.dtype)),
    "xlogy_other": lambda T, x: T.xlogy(T.tensor(0.0, dtype=x.dtype), x),
    "nan_to_num": lambda T, x: T.nan_to_num(x / x.round()),
    "logaddexp": lambda T, x: T.logaddexp(x, -x),
    "logaddexp2": lambda T, x: T.logaddexp2(x, T.tensor(0.0, dtype=x.dtype)),
    "atan2_at_0": lambda T, x: T.atan2(x, T.tensor(1.0, dtype=x.dtype)),
    "hypot": lambda T, x: T.hypot(x, T.tensor(1.0, dtype=x.dtype)),
    "exp2": lambda T, x: T.exp2(x),
    "deg2rad": lambda T, x: T.deg2rad(x),
    "rad2deg": lambda T, x: T.rad2deg(x),
    "erfc": lambda T, x: T.erfc(x),
    "asinh": lambda T, x: T.asinh(x),
    "atan": lambda T, x: T.atan(x),
    "sinh": lambda T, x: T.sinh(x * 0.1),
    "cosh": lambda T, x: T.cosh(x * 0.1),
    "lgamma": lambda T, x: T.lgamma(x.abs() + 0.5),
    "digamma": lambda T, x: T.digamma(x.abs() + 0.5),
    "trigamma": lambda T, x: T.polygamma(1, x.abs() + 0.5),
    "float_power": lambda T, x: T.float_power(x, 2),
}


def _run(T, fn, dtype):
    x = T.tensor(KINK_POINTS, dtype=getattr(T, dtype), requires_grad=True)
    out = fn(T, x)
    (g,) = T.autograd.grad(out, x, T.ones_like(out), allow_unused=True)
    return (out.detach().numpy(), None if g is None else g.numpy(),
            type(out.grad_fn).__name__)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(KINKS))
def test_values_and_gradients_at_kinks(name, dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NumPy warnings either
        ours = _run(tg, KINKS[name], dtype)
    theirs = _run(torch, KINKS[name], dtype)
    tol = 1e-12 if dtype == "float64" else 2e-6
    np.testing.assert_allclose(ours[0], theirs[0], rtol=tol, atol=tol)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=tol, atol=tol)
    assert ours[2] == theirs[2]


SPECIAL = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 1e-30, 1e30]
UNARY = ["asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "exp2", "erfc",
         "erfinv", "lgamma", "digamma", "frac", "trunc", "fix", "sinc", "deg2rad", "rad2deg",
         "signbit", "isposinf", "isneginf", "isnan", "isinf", "isreal", "logit", "square",
         "nan_to_num", "arcsin", "arccos", "arctan", "arcsinh", "arccosh", "arctanh"]


@pytest.mark.parametrize("name", UNARY)
def test_unary_special_values(name):
    """nan, infinities, signed zeros: values and dtypes as torch, and no NumPy warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = getattr(tg, name)(tg.tensor(SPECIAL))
        ours_m = getattr(tg.tensor(SPECIAL), name)()
    theirs = getattr(torch, name)(torch.tensor(SPECIAL))
    assert str(ours.dtype) == str(theirs.dtype)
    for o in (ours, ours_m):
        np.testing.assert_allclose(o.numpy(), theirs.numpy(), rtol=2e-6, atol=0)


BINARY = ["atan2", "arctan2", "hypot", "copysign", "logaddexp", "logaddexp2", "xlogy",
          "float_power", "remainder", "fmod", "heaviside"]


@pytest.mark.parametrize("name", BINARY)
def test_binary_special_values(name):
    a = np.array(SPECIAL, np.float32)[:, None] * np.ones(len(SPECIAL), np.float32)
    b = a.T.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = getattr(tg, name)(tg.tensor(a), tg.tensor(b))
    theirs = getattr(torch, name)(torch.tensor(a), torch.tensor(b))
    assert str(ours.dtype) == str(theirs.dtype)
    # atol: torch's vectorised log1p/exp2 (SLEEF) are 1 ulp off libm's near 1.0
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["asin", "acos", "atan", "sinh", "cosh", "asinh", "atanh",
                                  "exp2", "erfc", "erfinv", "lgamma", "digamma", "frac", "fix",
                                  "sinc", "deg2rad", "rad2deg", "logit", "nan_to_num", "arcsin",
                                  "arctanh", "square", "trunc"])
def test_inplace_forms(name):
    x0 = np.array([-0.7, 0.1, 0.6])
    t = tg.tensor(x0)
    r = getattr(t, name + "_")()
    assert r is t
    np.testing.assert_allclose(t.numpy(), getattr(torch, name)(torch.tensor(x0)).numpy(),
                               rtol=1e-12)


def test_binary_inplace_and_scalar_remainder():
    for name in ["atan2_", "arctan2_", "hypot_", "copysign_", "xlogy_"]:
        t, y = tg.tensor([-0.7, 0.1, 0.6]), tg.tensor([2.0, -1.0, 0.5])
        want = getattr(torch.tensor([-0.7, 0.1, 0.6]), name)(torch.tensor([2.0, -1.0, 0.5]))
        assert getattr(t, name)(y) is t
        np.testing.assert_allclose(t.numpy(), want.numpy(), rtol=1e-12)
    for T in (tg, torch):
        assert (100 % T.tensor([3, -3, 7, -7])).tolist() == [1, -2, 2, -5]
        np.testing.assert_allclose((-7.5 % T.tensor([2.0, -2.0])).numpy(), [0.5, -1.5])
    for T in (tg, torch):  # remainder(Scalar, Tensor) has no derivative
        y = 3.0 % T.tensor([2.0], requires_grad=True)
        assert y.requires_grad and type(y.grad_fn).__name__ == "NotImplemented"
        with pytest.raises(RuntimeError, match="derivative for aten::remainder is not "
                                               "implemented"):
            y.sum().backward()


def test_polygamma_and_float_power_forms():
    x = np.array([0.3, 1.7, 4.0])
    for n in range(4):
        np.testing.assert_allclose(tg.polygamma(n, tg.tensor(x)).numpy(),
                                   torch.polygamma(n, torch.tensor(x)).numpy(), rtol=1e-10)
        np.testing.assert_allclose(tg.tensor(x).polygamma(n).numpy(),
                                   torch.tensor(x).polygamma(n).numpy(), rtol=1e-10)
    assert tg.float_power(tg.tensor([2]), 2).dtype is tg.float64
    assert tg.float_power(2, tg.tensor([3.0])).tolist() == [8.0]
    with pytest.raises(RuntimeError, match="float_power_ has dtype Float"):
        tg.tensor([2.0]).float_power_(2)
    t = tg.tensor([2.0], dtype=tg.float64)
    assert t.float_power_(2) is t and t.tolist() == [4.0]


def test_special_namespace():
    x, y = [0.0, 0.0, 2.0], [0.0, math.nan, 3.0]
    np.testing.assert_allclose(tg.special.xlogy(tg.tensor(x), tg.tensor(y)).numpy(),
                               torch.special.xlogy(torch.tensor(x), torch.tensor(y)).numpy())
    for name in ["erfc", "erfinv", "expit", "logit", "exp2", "sinc", "digamma", "psi",
                 "gammaln"]:
        v = [0.2, 0.4]
        np.testing.assert_allclose(getattr(tg.special, name)(tg.tensor(v)).numpy(),
                                   getattr(torch.special, name)(torch.tensor(v)).numpy(),
                                   rtol=1e-6)


def test_heaviside_errors():
    for T in (tg, torch):
        with pytest.raises(RuntimeError, match="different dtypes"):
            T.heaviside(T.tensor([1.0]), T.tensor([1.0], dtype=T.float64))


# ---- functional forms: in-place, errors --------------------------------------

@pytest.mark.parametrize("name,args", [("elu", (1.5,)), ("celu", (0.5,)), ("selu", ()),
                                       ("silu", ()), ("hardtanh", (-0.5, 0.5)), ("relu6", ()),
                                       ("hardsigmoid", ()), ("hardswish", ()), ("mish", ()),
                                       ("threshold", (0.1, 3.0)), ("rrelu", ()),
                                       ("leaky_relu", (0.3,))])
def test_functional_inplace(name, args):
    x0 = [-2.0, -0.5, 0.0, 0.3, 4.0]
    t = tg.tensor(x0)
    out = getattr(tg.nn.functional, name)(t, *args, inplace=True)
    want = getattr(torch.nn.functional, name)(torch.tensor(x0), *args, inplace=True)
    assert out is t
    np.testing.assert_allclose(t.numpy(), want.numpy(), rtol=1e-6)


def test_functional_errors():
    for T in (tg, torch):
        with pytest.raises(RuntimeError, match="Halving dimension must be even, but dimension "
                                               "0 is size 3"):
            T.nn.functional.glu(T.ones(3), 0)
        with pytest.raises(RuntimeError, match="Mismatch of parameter numbers and input channel "
                                               "size. Found parameter numbers = 2 and channel "
                                               "size = 3."):
            T.nn.functional.prelu(T.ones(2, 3), T.ones(2))
        with pytest.raises(AssertionError, match=r"max_val \(-1.0\) must be greater than min_val "
                                             r"\(1.0\)"):
            T.nn.Hardtanh(1.0, -1.0)
        with pytest.raises(ValueError, match="min_val cannot be greater than max_val"):
            T.nn.functional.hardtanh(T.ones(1), 1.0, -1.0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bounds", [(1 / 8, 1 / 3), (0.1, 0.3)])
def test_rrelu_training_draws_torchs_stream(dtype, bounds):
    x0 = np.random.default_rng(0).standard_normal((30, 50)).astype(dtype)
    results = []
    for T in (tg, torch):
        T.manual_seed(3)
        x = T.tensor(x0, requires_grad=True)
        m = T.nn.RReLU(*bounds)
        y = m(x)
        y.backward(T.ones_like(y))
        after = T.rand(3)  # the generator continues in step
        results.append((y.detach().numpy(), x.grad.numpy(), after.numpy(),
                        type(y.grad_fn).__name__))
    for a, b in zip(*results, strict=True):
        if isinstance(a, str):
            assert a == b
        else:
            np.testing.assert_array_equal(a, b)


def test_rrelu_training_compiled_draws_in_range():
    f = tg.compile(lambda x: tg.nn.functional.rrelu(x, 0.1, 0.3, training=True))
    x = tg.tensor([-1.0, -2.0, 3.0, 0.0] * 50)
    for _ in range(3):
        y = f(x)
        neg = x.numpy() < 0
        slopes = y.numpy()[neg] / x.numpy()[neg]
        assert ((slopes >= 0.1 - 1e-7) & (slopes <= 0.3 + 1e-7)).all() and slopes.std() > 0
        np.testing.assert_array_equal(y.numpy()[~neg], x.numpy()[~neg])


def test_glu_softmin_softmax2d_values():
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 2))
    for fn in [lambda T, x: T.nn.functional.glu(x, 1), lambda T, x: T.nn.Softmin(2)(x),
               lambda T, x: T.nn.Softmax2d()(x), lambda T, x: T.nn.Softmax2d()(x[0]),
               lambda T, x: T.nn.GLU()(x)]:
        np.testing.assert_allclose(fn(tg, tg.tensor(x)).numpy(), fn(torch, torch.tensor(x))
                                   .numpy(), rtol=1e-12)


# ---- modules ------------------------------------------------------------------

MODULES = [
    lambda nn: nn.SiLU(), lambda nn: nn.SiLU(True), lambda nn: nn.ELU(),
    lambda nn: nn.ELU(2.0, True),
    lambda nn: nn.CELU(), lambda nn: nn.CELU(0.5, True), lambda nn: nn.SELU(),
    lambda nn: nn.SELU(True), lambda nn: nn.Softplus(), lambda nn: nn.Softplus(2, 10),
    lambda nn: nn.Softsign(), lambda nn: nn.Hardtanh(), lambda nn: nn.Hardtanh(-2, 2, True),
    lambda nn: nn.Hardsigmoid(), lambda nn: nn.Hardsigmoid(True), lambda nn: nn.Hardswish(),
    lambda nn: nn.Hardswish(True), lambda nn: nn.ReLU6(), lambda nn: nn.ReLU6(True),
    lambda nn: nn.Mish(), lambda nn: nn.Mish(True), lambda nn: nn.LogSigmoid(),
    lambda nn: nn.GLU(), lambda nn: nn.GLU(2), lambda nn: nn.PReLU(), lambda nn: nn.PReLU(3, 0.1),
    lambda nn: nn.RReLU(), lambda nn: nn.RReLU(0.1, 0.3, True), lambda nn: nn.Softmin(),
    lambda nn: nn.Softmin(1), lambda nn: nn.Softmax2d(), lambda nn: nn.Threshold(0.1, 20),
    lambda nn: nn.Threshold(0.1, 20, True), lambda nn: nn.Tanhshrink(), lambda nn: nn.Softshrink(),
    lambda nn: nn.Softshrink(0.3), lambda nn: nn.Hardshrink(), lambda nn: nn.Hardshrink(1.5),
]


@pytest.mark.parametrize("make", MODULES, ids=lambda f: "")
def test_module_repr_and_forward(make):
    ours, theirs = make(tg.nn), make(torch.nn)
    assert repr(ours) == repr(theirs)
    ours.eval()
    theirs.eval()
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 2)).astype(np.float32)
    with torch.no_grad():
        want = theirs(torch.tensor(x)).numpy()
    np.testing.assert_allclose(ours(tg.tensor(x)).detach().numpy(), want, rtol=2e-6, atol=1e-7)


def test_prelu_module_learns_as_torch():
    ours, theirs = tg.nn.PReLU(3, 0.1), torch.nn.PReLU(3, 0.1)
    assert [n for n, _ in ours.named_parameters()] == ["weight"]
    np.testing.assert_array_equal(ours.weight.detach().numpy(), theirs.weight.detach().numpy())
    x = np.random.default_rng(2).standard_normal((4, 3, 2)).astype(np.float32)
    ours(tg.tensor(x)).pow(2).sum().backward()
    theirs(torch.tensor(x)).pow(2).sum().backward()
    np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=1e-5)


def test_activations_compile():
    def f(x, w):
        F = tg.nn.functional
        return (F.hardswish(x) + F.hardsigmoid(x) + F.mish(x) + F.elu(x) + F.softplus(x, 2, 1)
                + F.prelu(x, w) + F.hardtanh(x) + F.logsigmoid(x) + F.softshrink(x)
                + tg.logaddexp(x, -x) + tg.copysign(x, -x) + tg.sinc(x)).sum()
    cf = tg.compile(f)
    x0 = np.array([[-4.0, -3.0, -0.5, 0.0], [0.5, 1.0, 3.0, 5.0]])
    want = []
    for _ in range(3):
        x = tg.tensor(x0, requires_grad=True)
        w = tg.tensor([0.25], dtype=tg.float64, requires_grad=True)
        y = cf(x, w)
        y.backward()
        want.append((y.item(), x.grad.numpy().copy(), w.grad.numpy().copy()))
    x = tg.tensor(x0, requires_grad=True)
    w = tg.tensor([0.25], dtype=tg.float64, requires_grad=True)
    y = f(x, w)
    y.backward()
    for got in want:
        assert got[0] == pytest.approx(y.item(), rel=1e-12)
        np.testing.assert_allclose(got[1], x.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got[2], w.grad.numpy(), rtol=1e-10)


def test_heaviside_records_a_node_whose_backward_raises():
    for T in (tg, torch):
        x = T.tensor([1.0, 0.0, -2.0], requires_grad=True)
        y = T.heaviside(x, T.tensor([0.5]))
        assert y.requires_grad and type(y.grad_fn).__name__ == "NotImplemented"
        with pytest.raises(RuntimeError, match="derivative for aten::heaviside is not "
                                               "implemented"):
            y.sum().backward()
