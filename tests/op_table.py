"""The op table: one row per op, shared by test_ops.py and test_op_parity_torch.py.

A row's ``fn(T, *xs)`` takes the module (``tracegrad`` or ``torch``) and the input
tensors, so the same row runs on both. ``shapes`` lists sample input shapes
(broadcasting and 0-d samples included); ``domain`` names where inputs are drawn
(one name for all inputs, or one per input); ``ref`` is the NumPy forward
reference over float64 arrays (None: checked against torch only).

Each row generates: forward vs ``ref``; gradcheck (and a random-direction
<J u, v> == <u, J^T v> check) in float64; gradgradcheck when ``gradgrad``; and,
with torch installed, values, gradients and grad_fn names vs torch.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import special

# ----------------------------------------------------------------------------
# input domains: fn(rng, shape) -> float64 array


def _distinct(rng, shape):
    # all values distinct and at least 0.2 apart, none near zero: no ties, no kinks
    n = int(np.prod(shape, dtype=np.int64))
    vals = (rng.permutation(n) - n / 2 + 0.25) * 0.4 + rng.uniform(0, 0.05, n)
    vals[np.abs(vals) < 0.1] += 0.3
    return vals.reshape(shape)


def _nonint(rng, shape):
    # fractional part in [0.15, 0.35]: away from floor/ceil/round kinks
    return np.floor(rng.normal(0, 2, shape)) + rng.uniform(0.15, 0.35, shape)


DOMAINS: dict[str, Callable] = {
    "real": lambda rng, s: rng.standard_normal(s),
    "pos": lambda rng, s: rng.uniform(0.5, 2.0, s),
    "nonzero": lambda rng, s: rng.choice([-1.0, 1.0], s) * rng.uniform(0.3, 2.0, s),
    "unit": lambda rng, s: rng.uniform(-0.8, 0.8, s),
    "prob": lambda rng, s: rng.uniform(0.1, 0.9, s),
    "distinct": _distinct,
    "nonint": _nonint,
    "small": lambda rng, s: rng.uniform(-1.2, 1.2, s),
}


def make_inputs(row, shapes, seed=0):
    """float64 NumPy arrays for one sample of ``row``."""
    rng = np.random.default_rng(seed)
    doms = row.domain if isinstance(row.domain, tuple) else (row.domain,) * len(shapes)
    return [np.asarray(DOMAINS[d](rng, s), dtype=np.float64)
            for d, s in zip(doms, shapes, strict=True)]


@dataclass
class Row:
    name: str
    fn: Callable                      # fn(T, *tensors) -> tensor or tuple of tensors
    shapes: list                      # list of samples; each a tuple of input shapes
    domain: object = "real"           # a DOMAINS key, or one key per input
    ref: Callable | None = None       # NumPy forward reference (float64 arrays)
    rtol: float = 1e-7
    atol: float = 1e-9
    grad: bool = True                 # differentiable: run gradcheck
    gradgrad: bool = True             # twice differentiable: run gradgradcheck
    grad_inputs: tuple | None = None  # which inputs require grad (default: all)
    f32_tol: float = 1e-5             # float32 parity tolerance vs torch
    fd_eps: float = 1e-6              # finite-difference step (larger when float32 is inside)
    fd_tol: float = 1e-6              # gradcheck atol
    prims: tuple = field(default=())  # primitives this row is meant to exercise (doc only)

    def __repr__(self):
        return self.name


def _s(*shapes):
    """One sample per shape, for one-input ops."""
    return [(s,) for s in shapes]


UNARY_SHAPES = _s((2, 3), (), (3,))
BINARY_SHAPES = [((2, 3), (2, 3)), ((2, 3), (3,)), ((2, 1), (1, 3)), ((), (2, 3)), ((), ())]
REDUCE_SHAPES = _s((2, 3), (3,), ())
MAT_SHAPES = _s((2, 3))


def _bce(T, x, y):
    """BCE-with-logits per element: the primitive in tracegrad, F.* in torch."""
    if T.__name__ == "tracegrad":
        from tracegrad import primitives as P
        from tracegrad.tensor import apply
        return apply(P.bce_logits_p, (x, y))
    return T.nn.functional.binary_cross_entropy_with_logits(x, y, reduction="none")


def _gelu(T, x, approximate="none"):
    if T.__name__ == "tracegrad":
        return T.gelu(x, approximate=approximate)
    return T.nn.functional.gelu(x, approximate=approximate)


def _plus_full(T, x):
    """x + a constant filled tensor (the ``full`` primitive records such constants
    when tracing; eager code can run it directly)."""
    if T.__name__ == "tracegrad":
        from tracegrad import primitives as P
        from tracegrad.tensor import apply
        c = apply(P.full_p, (), {"shape": tuple(x.shape), "value": 1.5, "dtype": x.dtype})
    else:
        c = T.full(tuple(x.shape), 1.5, dtype=x.dtype)
    return x + c


def _plus_random_times_zero(T, x):
    """x + 0 * uniform noise: checks the ``random`` primitive's shape, dtype and range."""
    if T.__name__ == "tracegrad":
        from tracegrad import primitives as P
        from tracegrad.tensor import apply
        key = T.zeros(2, dtype=T.int64)
        r = apply(P.random_p, (key,), {"dist": "uniform", "shape": tuple(x.shape),
                                       "dtype": x.dtype})
    else:
        r = T.rand(tuple(x.shape), dtype=x.dtype)
    assert ((r >= 0) & (r < 1)).all()
    return x + r * 0


def _seti(x, key, value):
    y = x * 1
    y[key] = value
    return y


def _np_seti(x, key, value):
    y = x * 1
    y[key] = value
    return y


def _iadd(x, y):
    z = x * 1
    z += y
    return z


def _ipow(x):
    z = x * 1
    z **= 2
    return z


def _inplace(method):
    def fn(T, x, y):
        z = x * 1.0  # a non-leaf: in-place ops on it are recorded
        return getattr(z, method)(y)
    return fn


def _setitem_mask(T, x):
    g = x.clone()
    g[x < 0] = 0
    return g


def _setitem_slice(T, x, v):
    g = x.clone()
    g[0, 1:] = v
    return g


def _setitem_index(T, x, v):
    g = x * 2
    g[T.tensor([2, 0])] = v
    return g


def _np_norm(p, axis=None, keepdims=False):
    def ref(x):
        a = np.abs(x)
        if p == math.inf:
            return np.amax(a, axis=axis, keepdims=keepdims)
        return np.sum(a ** p, axis=axis, keepdims=keepdims) ** (1 / p)
    return ref


def _np_softmax(x, axis=-1):
    e = np.exp(x - np.amax(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _np_gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def _np_round(x):
    return np.round(x)


def _np_index(x):
    return x[[0, 2, 0]]


# ---- convolution and pooling references (direct loops over kernel offsets) -----

def _np_conv(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    nsp = x.ndim - 2
    st, dl = (stride,) * nsp if isinstance(stride, int) else stride, \
        (dilation,) * nsp if isinstance(dilation, int) else dilation
    if isinstance(padding, str):
        same = padding == "same"
        total = [d * (k - 1) if same else 0 for d, k in zip(dl, w.shape[2:], strict=True)]
        pads = [(t // 2, t - t // 2) for t in total]
    else:
        pads = [(p, p) for p in ((padding,) * nsp if isinstance(padding, int) else padding)]
    xp = np.pad(x, [(0, 0), (0, 0)] + pads)
    n, c = x.shape[:2]
    o, cg, ks = w.shape[0], w.shape[1], w.shape[2:]
    out_sp = [(xp.shape[2 + i] - dl[i] * (ks[i] - 1) - 1) // st[i] + 1 for i in range(nsp)]
    out = np.zeros((n, o, *out_sp))
    og = o // groups
    for off in np.ndindex(*ks):
        idx = tuple(slice(off[i] * dl[i], off[i] * dl[i] + st[i] * (out_sp[i] - 1) + 1, st[i])
                    for i in range(nsp))
        patch = xp[(slice(None), slice(None)) + idx]           # n, c, *out
        for g in range(groups):
            wk = w[(slice(g * og, (g + 1) * og), slice(None)) + off]  # og, cg
            out[:, g * og:(g + 1) * og] += np.einsum("oc,nc...->no...", wk,
                                                     patch[:, g * cg:(g + 1) * cg])
    if b is not None:
        out += b.reshape((1, o) + (1,) * nsp)
    return out


def _np_pool(x, nsp, k, s, p, reduce, ceil_mode=False, count_include_pad=True, dilation=1,
             divisor=None):
    """Pooling over the last ``nsp`` dims, one output position at a time."""
    k, s, p, d = ((v,) * nsp if isinstance(v, int) else tuple(v) for v in (k, s, p, dilation))
    sp = x.shape[-nsp:]
    out = []
    for n, ki, si, pi, di in zip(sp, k, s, p, d, strict=True):
        o = (n + 2 * pi - di * (ki - 1) - 1 + (si - 1 if ceil_mode else 0)) // si + 1
        if ceil_mode and (o - 1) * si >= n + pi:
            o -= 1
        out.append(o)
    res = np.zeros(x.shape[:-nsp] + tuple(out))
    for pos in np.ndindex(*out):
        taps = [np.arange(pos[i] * s[i] - p[i], pos[i] * s[i] - p[i] + d[i] * (k[i] - 1) + 1,
                          d[i]) for i in range(nsp)]
        inside = [t[(t >= 0) & (t < sp[i])] for i, t in enumerate(taps)]
        win = x[(Ellipsis,) + np.ix_(*inside)].reshape(x.shape[:-nsp] + (-1,))
        if reduce == "max":
            res[(Ellipsis,) + pos] = win.max(-1)
            continue
        if divisor is None:  # windows clipped to the padded input, or to the input
            ends = [min(t[-1] + 1, sp[i] + p[i]) - t[0] for i, t in enumerate(taps)]
            divisor_here = np.prod(ends) if count_include_pad else win.shape[-1]
        else:
            divisor_here = divisor
        res[(Ellipsis,) + pos] = win.sum(-1) / divisor_here
    return res


def _np_pool2d(x, k, s, p, reduce, ceil_mode=False, count_include_pad=True):
    return _np_pool(x, 2, k, s, p, reduce, ceil_mode, count_include_pad)


def _np_adaptive(x, out, reduce="avg"):
    nsp = len(out)
    sp = x.shape[-nsp:]
    res = np.zeros(x.shape[:-nsp] + tuple(out))
    for pos in np.ndindex(*out):
        win = x[(Ellipsis,) + tuple(slice((i * n) // o, -((-(i + 1) * n) // o))
                                    for i, n, o in zip(pos, sp, out, strict=True))]
        axes = tuple(range(-nsp, 0))
        res[(Ellipsis,) + pos] = win.max(axes) if reduce == "max" else win.mean(axes)
    return res


def _np_pad(x, amounts, mode, **kw):
    """np.pad with F.pad's amounts (last dim first); positive amounts only."""
    k = len(amounts) // 2
    pairs = [(0, 0)] * (x.ndim - k) + [(amounts[2 * (k - 1 - i)], amounts[2 * (k - 1 - i) + 1])
                                       for i in range(k)]
    return np.pad(x, pairs, mode, **kw)


def _np_adaptive_avg(x, oh, ow):
    return _np_adaptive(x, (oh, ow))


def _np_batch_norm(x, mean, var, w, b, eps=1e-5):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return ((x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * w.reshape(shape)
            + b.reshape(shape))


def _np_batch_norm_train(x, w, b):
    axes = (0,) + tuple(range(2, x.ndim))
    return _np_batch_norm(x, x.mean(axes), x.var(axes), w, b)


def _bn_train(T, x, w, b):
    c = x.shape[1]
    rm, rv = T.zeros(c, dtype=x.dtype), T.ones(c, dtype=x.dtype)
    out = T.nn.functional.batch_norm(x, rm, rv, w, b, training=True, momentum=0.3)
    return out, rm, rv  # the running statistics after the in-place update


def _np_bn_train_stats(x, w, b):
    axes = (0,) + tuple(range(2, x.ndim))
    n = x.size // x.shape[1]
    return (_np_batch_norm_train(x, w, b), 0.3 * x.mean(axes),
            0.7 + 0.3 * x.var(axes) * n / (n - 1))


def _F(T):
    return T.nn.functional


ROWS: list[Row] = [
    # ---- arithmetic -------------------------------------------------------
    Row("add", lambda T, x, y: x + y, BINARY_SHAPES, ref=np.add),
    Row("sub", lambda T, x, y: x - y, BINARY_SHAPES, ref=np.subtract),
    Row("mul", lambda T, x, y: x * y, BINARY_SHAPES, ref=np.multiply),
    Row("div", lambda T, x, y: x / y, BINARY_SHAPES, domain=("real", "nonzero"), ref=np.divide),
    Row("pow", lambda T, x, y: x ** y, BINARY_SHAPES, domain=("pos", "real"), ref=np.power),
    Row("neg", lambda T, x: -x, UNARY_SHAPES, ref=np.negative),
    Row("add_alpha", lambda T, x, y: T.add(x, y, alpha=2), BINARY_SHAPES[:2],
        ref=lambda x, y: x + 2 * y),
    Row("add_scalar", lambda T, x: x + 2.5, UNARY_SHAPES, ref=lambda x: x + 2.5),
    Row("radd_scalar", lambda T, x: 2.5 + x, UNARY_SHAPES, ref=lambda x: 2.5 + x),
    Row("sub_scalar", lambda T, x: x - 2, UNARY_SHAPES, ref=lambda x: x - 2),
    Row("rsub_scalar", lambda T, x: 2.0 - x, UNARY_SHAPES, ref=lambda x: 2.0 - x),
    Row("mul_scalar", lambda T, x: x * 3, UNARY_SHAPES, ref=lambda x: x * 3),
    Row("rmul_scalar", lambda T, x: 3.0 * x, UNARY_SHAPES, ref=lambda x: 3.0 * x),
    Row("div_scalar", lambda T, x: x / 4, UNARY_SHAPES, ref=lambda x: x / 4),
    Row("rdiv_scalar", lambda T, x: 2.0 / x, UNARY_SHAPES, domain="nonzero", ref=lambda x: 2.0 / x),
    Row("pow_scalar_2", lambda T, x: x ** 2, UNARY_SHAPES, ref=lambda x: x ** 2),
    Row("pow_scalar_3", lambda T, x: x ** 3, UNARY_SHAPES, ref=lambda x: x ** 3),
    Row("pow_scalar_half", lambda T, x: x ** 0.5, UNARY_SHAPES, domain="pos", ref=np.sqrt),
    Row("pow_scalar_neg", lambda T, x: x ** -1.5, UNARY_SHAPES, domain="pos",
        ref=lambda x: x ** -1.5),
    Row("pow_scalar_0", lambda T, x: x ** 0, UNARY_SHAPES, ref=lambda x: x ** 0),
    Row("rpow_scalar", lambda T, x: 2.0 ** x, UNARY_SHAPES, ref=lambda x: 2.0 ** x),
    Row("square", lambda T, x: T.square(x), UNARY_SHAPES, ref=np.square),
    Row("reciprocal", lambda T, x: T.reciprocal(x), UNARY_SHAPES, domain="nonzero",
        ref=np.reciprocal),
    Row("add_", _inplace("add_"), BINARY_SHAPES[:2], ref=np.add),
    Row("sub_", _inplace("sub_"), BINARY_SHAPES[:2], ref=np.subtract),
    Row("mul_", _inplace("mul_"), BINARY_SHAPES[:2], ref=np.multiply),
    Row("div_", _inplace("div_"), BINARY_SHAPES[:2], domain=("real", "nonzero"), ref=np.divide),
    Row("iadd_scalar", lambda T, x: (x * 1.0).add_(3), UNARY_SHAPES, ref=lambda x: x + 3),
    Row("imul_scalar", lambda T, x: (x * 1.0).mul_(3), UNARY_SHAPES, ref=lambda x: x * 3),
    # ---- matrix products --------------------------------------------------
    Row("matmul_2d", lambda T, a, b: a @ b, [((2, 3), (3, 4))], ref=np.matmul),
    Row("matmul_batched", lambda T, a, b: a @ b, [((2, 2, 3), (2, 3, 4))], ref=np.matmul),
    Row("matmul_bcast", lambda T, a, b: T.matmul(a, b),
        [((2, 2, 3), (3, 4)), ((3, 2), (2, 2, 3)), ((1, 2, 3), (2, 3, 2)),
         ((2, 1, 2, 3), (3, 3, 2))],
        ref=np.matmul),
    Row("matmul_1d_1d", lambda T, a, b: T.matmul(a, b), [((3,), (3,))], ref=np.matmul),
    Row("matmul_2d_1d", lambda T, a, b: T.matmul(a, b), [((2, 3), (3,))], ref=np.matmul),
    Row("matmul_1d_2d", lambda T, a, b: T.matmul(a, b), [((3,), (3, 2)), ((3,), (2, 3, 2))],
        ref=np.matmul),
    Row("matmul_x_grad", lambda T, a, b: a @ b, [((3, 2), (2, 2, 3))], ref=np.matmul,
        grad_inputs=(0,)),
    Row("matmul_y_grad", lambda T, a, b: a @ b, [((3, 2), (2, 2, 3))], ref=np.matmul,
        grad_inputs=(1,)),
    Row("matmul_3d_1d", lambda T, a, b: T.matmul(a, b), [((2, 2, 3), (3,))], ref=np.matmul),
    Row("mm", lambda T, a, b: T.mm(a, b), [((2, 3), (3, 2))], ref=np.matmul),
    Row("bmm", lambda T, a, b: T.bmm(a, b), [((2, 2, 3), (2, 3, 1))], ref=np.matmul),
    # ---- elementwise unary ------------------------------------------------
    Row("exp", lambda T, x: T.exp(x), UNARY_SHAPES, ref=np.exp),
    Row("log", lambda T, x: T.log(x), UNARY_SHAPES, domain="pos", ref=np.log),
    Row("log1p", lambda T, x: T.log1p(x), UNARY_SHAPES, domain="pos", ref=np.log1p),
    Row("sin", lambda T, x: T.sin(x), UNARY_SHAPES, ref=np.sin),
    Row("cos", lambda T, x: T.cos(x), UNARY_SHAPES, ref=np.cos),
    Row("tan", lambda T, x: T.tan(x), UNARY_SHAPES, domain="unit", ref=np.tan),
    Row("tanh", lambda T, x: T.tanh(x), UNARY_SHAPES, ref=np.tanh),
    Row("sigmoid", lambda T, x: T.sigmoid(x), UNARY_SHAPES, ref=special.expit),
    Row("relu", lambda T, x: T.relu(x), UNARY_SHAPES, domain="nonzero",
        ref=lambda x: np.maximum(x, 0)),
    Row("gelu", lambda T, x: _gelu(T, x), UNARY_SHAPES,
        ref=lambda x: 0.5 * x * (1 + special.erf(x / math.sqrt(2)))),
    Row("gelu_tanh", lambda T, x: _gelu(T, x, "tanh"), UNARY_SHAPES,
        ref=_np_gelu_tanh),
    Row("abs", lambda T, x: T.abs(x), UNARY_SHAPES, domain="nonzero", ref=np.abs),
    Row("sqrt", lambda T, x: T.sqrt(x), UNARY_SHAPES, domain="pos", ref=np.sqrt),
    Row("rsqrt", lambda T, x: T.rsqrt(x), UNARY_SHAPES, domain="pos", ref=lambda x: 1 / np.sqrt(x)),
    Row("erf", lambda T, x: T.erf(x), UNARY_SHAPES, ref=special.erf),
    Row("sign", lambda T, x: T.sign(x), UNARY_SHAPES, domain="nonzero", ref=np.sign),
    Row("floor", lambda T, x: T.floor(x), UNARY_SHAPES, domain="nonint", ref=np.floor),
    Row("ceil", lambda T, x: T.ceil(x), UNARY_SHAPES, domain="nonint", ref=np.ceil),
    Row("round", lambda T, x: T.round(x), UNARY_SHAPES, domain="nonint", ref=_np_round),
    Row("clamp_both", lambda T, x: T.clamp(x, -0.5, 0.5), UNARY_SHAPES, domain="distinct",
        ref=lambda x: np.clip(x, -0.5, 0.5)),
    Row("clamp_min", lambda T, x: T.clamp(x, min=0.1), UNARY_SHAPES, domain="distinct",
        ref=lambda x: np.maximum(x, 0.1)),
    Row("clamp_max", lambda T, x: x.clamp(max=0.1), UNARY_SHAPES, domain="distinct",
        ref=lambda x: np.minimum(x, 0.1)),
    Row("clip", lambda T, x: T.clip(x, -0.5, 0.5), UNARY_SHAPES, domain="distinct",
        ref=lambda x: np.clip(x, -0.5, 0.5)),
    Row("clamp_tensor", lambda T, x, lo: T.clamp(x, min=lo), [((2, 3), (3,))],
        domain=("distinct", "unit"), ref=np.maximum),
    Row("clamp_tensor_max", lambda T, x, hi: T.clamp(x, max=hi), [((2, 3), (3,))],
        domain=("distinct", "unit"), ref=np.minimum),
    Row("clamp_tensor_both", lambda T, x, lo: T.clamp(x, lo, lo + 0.5), [((2, 3), (2, 3))],
        domain=("distinct", "unit"), ref=lambda x, lo: np.clip(x, lo, lo + 0.5)),
    Row("clamp_min_fn", lambda T, x: T.clamp_min(x, 0.1), UNARY_SHAPES, domain="distinct",
        ref=lambda x: np.maximum(x, 0.1)),
    Row("clamp_max_method", lambda T, x: x.clamp_max(0.1), UNARY_SHAPES, domain="distinct",
        ref=lambda x: np.minimum(x, 0.1)),
    Row("maximum", lambda T, x, y: T.maximum(x, y), BINARY_SHAPES, domain="distinct",
        ref=np.maximum),
    Row("minimum", lambda T, x, y: T.minimum(x, y), BINARY_SHAPES, domain="distinct",
        ref=np.minimum),
    Row("where", lambda T, x, y: T.where(x > 0, x, y), BINARY_SHAPES, domain="nonzero",
        ref=lambda x, y: np.where(x > 0, x, y)),
    Row("where_scalar", lambda T, x: T.where(x > 0, x, 0.0), UNARY_SHAPES, domain="nonzero",
        ref=lambda x: np.where(x > 0, x, 0.0)),
    Row("masked_fill", lambda T, x: x.masked_fill(x < 0, 1.5), UNARY_SHAPES, domain="nonzero",
        ref=lambda x: np.where(x < 0, 1.5, x)),
    # ---- comparisons and logical ops (bool outputs) -----------------------
    Row("eq", lambda T, x, y: x == y.round(), BINARY_SHAPES, domain="nonint", grad=False,
        ref=lambda x, y: x == np.round(y)),
    Row("ne", lambda T, x, y: x != y, BINARY_SHAPES, grad=False, ref=np.not_equal),
    Row("lt", lambda T, x, y: x < y, BINARY_SHAPES, grad=False, ref=np.less),
    Row("le", lambda T, x, y: x <= y, BINARY_SHAPES, grad=False, ref=np.less_equal),
    Row("gt", lambda T, x, y: x > y, BINARY_SHAPES, grad=False, ref=np.greater),
    Row("ge", lambda T, x, y: x >= y, BINARY_SHAPES, grad=False, ref=np.greater_equal),
    Row("gt_scalar", lambda T, x: x > 0.5, UNARY_SHAPES, grad=False, ref=lambda x: x > 0.5),
    Row("logical_and", lambda T, x, y: T.logical_and(x > 0, y > 0), BINARY_SHAPES, grad=False,
        ref=lambda x, y: (x > 0) & (y > 0)),
    Row("logical_or", lambda T, x, y: T.logical_or(x > 0, y > 0), BINARY_SHAPES, grad=False,
        ref=lambda x, y: (x > 0) | (y > 0)),
    Row("logical_xor", lambda T, x, y: T.logical_xor(x > 0, y > 0), BINARY_SHAPES, grad=False,
        ref=lambda x, y: (x > 0) ^ (y > 0)),
    Row("logical_not", lambda T, x: T.logical_not(x > 0), UNARY_SHAPES, grad=False,
        ref=lambda x: ~(x > 0)),
    Row("isfinite", lambda T, x: T.isfinite(x / x.round()), UNARY_SHAPES, domain="small",
        grad=False, ref=lambda x: np.isfinite(x / np.round(x))),
    # ---- reductions -------------------------------------------------------
    Row("sum", lambda T, x: x.sum(), REDUCE_SHAPES, ref=np.sum),
    Row("sum_dim", lambda T, x: x.sum(1), MAT_SHAPES, ref=lambda x: x.sum(1)),
    Row("sum_dims_keepdim", lambda T, x: x.sum((0, -1), keepdim=True), _s((2, 3, 2)),
        ref=lambda x: x.sum((0, 2), keepdims=True)),
    Row("mean", lambda T, x: x.mean(), REDUCE_SHAPES, ref=np.mean),
    Row("mean_dim", lambda T, x: T.mean(x, 0, keepdim=True), MAT_SHAPES,
        ref=lambda x: x.mean(0, keepdims=True)),
    Row("prod", lambda T, x: x.prod(), REDUCE_SHAPES, ref=np.prod),
    Row("prod_dim", lambda T, x: x.prod(1), MAT_SHAPES, ref=lambda x: x.prod(1)),
    Row("prod_one_zero", lambda T, x: (x * T.tensor([1.0, 0.0, 1.0], dtype=x.dtype)).prod(-1),
        MAT_SHAPES, ref=lambda x: (x * [1, 0, 1]).prod(-1)),
    Row("prod_two_zeros", lambda T, x: (x * T.tensor([0.0, 0.0, 1.0], dtype=x.dtype)).prod(),
        _s((3,), (2, 3)), ref=lambda x: (x * [0, 0, 1]).prod()),
    Row("amax", lambda T, x: T.amax(x), REDUCE_SHAPES, domain="distinct", ref=np.amax),
    Row("amax_dim", lambda T, x: T.amax(x, 1, keepdim=True), MAT_SHAPES, domain="distinct",
        ref=lambda x: x.max(1, keepdims=True)),
    Row("amin_dim", lambda T, x: x.amin(-1), MAT_SHAPES, domain="distinct",
        ref=lambda x: x.min(-1)),
    Row("amin", lambda T, x: x.amin(), REDUCE_SHAPES, domain="distinct", ref=np.amin),
    Row("max", lambda T, x: x.max(), REDUCE_SHAPES, domain="distinct", ref=np.max),
    Row("min", lambda T, x: T.min(x), REDUCE_SHAPES, domain="distinct", ref=np.min),
    Row("max_dim", lambda T, x: T.max(x, 1), MAT_SHAPES, domain="distinct",
        ref=lambda x: (x.max(1), x.argmax(1))),
    Row("max_dim_keepdim", lambda T, x: x.max(dim=0, keepdim=True), MAT_SHAPES, domain="distinct",
        ref=lambda x: (x.max(0, keepdims=True), x.argmax(0)[None])),
    Row("min_dim", lambda T, x: T.min(x, -1), MAT_SHAPES, domain="distinct",
        ref=lambda x: (x.min(-1), x.argmin(-1))),
    Row("max_binary", lambda T, x, y: T.max(x, y), BINARY_SHAPES[:2], domain="distinct",
        ref=np.maximum),
    Row("var", lambda T, x: x.var(), _s((2, 3), (3,)), ref=lambda x: x.var(ddof=1)),
    Row("var_dim", lambda T, x: T.var(x, 1, keepdim=True), MAT_SHAPES,
        ref=lambda x: x.var(1, ddof=1, keepdims=True)),
    Row("var_biased", lambda T, x: T.var(x, 0, unbiased=False), MAT_SHAPES,
        ref=lambda x: x.var(0)),
    Row("std", lambda T, x: x.std(), _s((2, 3), (3,)), ref=lambda x: x.std(ddof=1)),
    Row("std_dim", lambda T, x: T.std(x, dim=0), MAT_SHAPES, ref=lambda x: x.std(0, ddof=1)),
    Row("logsumexp", lambda T, x: T.logsumexp(x, 1), MAT_SHAPES,
        ref=lambda x: special.logsumexp(x, 1)),
    Row("logsumexp_all", lambda T, x: T.logsumexp(x, (0, 1), keepdim=True), MAT_SHAPES,
        ref=lambda x: special.logsumexp(x, (0, 1), keepdims=True)),
    Row("logsumexp_0d", lambda T, x: T.logsumexp(x, 0), _s(()), ref=lambda x: x),
    Row("norm", lambda T, x: x.norm(), REDUCE_SHAPES, domain="nonzero", ref=_np_norm(2)),
    Row("norm_p1", lambda T, x: T.norm(x, p=1), _s((2, 3), (3,)), domain="nonzero",
        ref=_np_norm(1)),
    Row("norm_inf", lambda T, x: T.norm(x, p=math.inf), _s((2, 3), (3,)), domain="distinct",
        ref=_np_norm(math.inf)),
    Row("norm_p3", lambda T, x: T.norm(x, p=3), _s((2, 3), (3,)), domain="nonzero",
        ref=_np_norm(3)),
    Row("norm_dim", lambda T, x: T.norm(x, dim=1), MAT_SHAPES, domain="nonzero",
        ref=_np_norm(2, axis=1)),
    Row("norm_p1_dim", lambda T, x: T.norm(x, 1, dim=0, keepdim=True), MAT_SHAPES,
        domain="nonzero", ref=_np_norm(1, axis=0, keepdims=True)),
    Row("norm_inf_dim", lambda T, x: T.norm(x, math.inf, dim=1), MAT_SHAPES, domain="distinct",
        ref=_np_norm(math.inf, axis=1)),
    Row("norm_p3_dim", lambda T, x: T.norm(x, 3, dim=1), MAT_SHAPES, domain="nonzero",
        ref=_np_norm(3, axis=1)),
    Row("argmax", lambda T, x: x.argmax(), REDUCE_SHAPES, domain="distinct", grad=False,
        ref=np.argmax),
    Row("argmax_dim", lambda T, x: T.argmax(x, 1, keepdim=True), MAT_SHAPES, domain="distinct",
        grad=False, ref=lambda x: x.argmax(1)[:, None]),
    Row("argmin_dim", lambda T, x: x.argmin(dim=0), MAT_SHAPES, domain="distinct", grad=False,
        ref=lambda x: x.argmin(0)),
    Row("cumsum", lambda T, x: x.cumsum(1), MAT_SHAPES, ref=lambda x: x.cumsum(1)),
    Row("cumsum_1d", lambda T, x: T.cumsum(x, 0), _s((3,), ()),
        ref=lambda x: np.cumsum(x).reshape(x.shape)),
    Row("softmax", lambda T, x: T.softmax(x, -1), _s((2, 3), (3,)), ref=_np_softmax),
    Row("softmax_dim0", lambda T, x: x.softmax(0), MAT_SHAPES, ref=lambda x: _np_softmax(x, 0)),
    Row("log_softmax", lambda T, x: T.log_softmax(x, 1), MAT_SHAPES,
        ref=lambda x: np.log(_np_softmax(x, 1))),
    Row("log_softmax_1d", lambda T, x: x.log_softmax(0), _s((3,)),
        ref=lambda x: np.log(_np_softmax(x, 0))),
    Row("bce_with_logits", _bce, [((2, 3), (2, 3)), ((), ())], domain=("real", "prob"),
        ref=lambda x, y: -(y * np.log(special.expit(x)) + (1 - y) * np.log(1 - special.expit(x)))),
    # ---- shapes -----------------------------------------------------------
    Row("reshape", lambda T, x: x.reshape(3, 2), MAT_SHAPES, ref=lambda x: x.reshape(3, 2)),
    Row("reshape_infer", lambda T, x: T.reshape(x, (-1,)), MAT_SHAPES, ref=lambda x: x.reshape(-1)),
    Row("reshape_0d", lambda T, x: x.reshape(1, 1), _s(()), ref=lambda x: x.reshape(1, 1)),
    Row("view", lambda T, x: x.view(6), MAT_SHAPES, ref=lambda x: x.reshape(6)),
    Row("flatten", lambda T, x: x.flatten(), _s((2, 3, 2)), ref=lambda x: x.reshape(-1)),
    Row("flatten_range", lambda T, x: T.flatten(x, 1), _s((2, 3, 2)),
        ref=lambda x: x.reshape(2, 6)),
    Row("squeeze", lambda T, x: x.squeeze(), _s((2, 1, 3)), ref=np.squeeze),
    Row("squeeze_dim", lambda T, x: x.squeeze(1), _s((2, 1, 3)), ref=lambda x: x.squeeze(1)),
    Row("unsqueeze", lambda T, x: x.unsqueeze(-1), _s((2, 3), ()), ref=lambda x: x[..., None]),
    Row("unsqueeze_mid", lambda T, x: T.unsqueeze(x, 1), _s((2, 3)), ref=lambda x: x[:, None]),
    Row("transpose", lambda T, x: x.transpose(0, 2), _s((2, 3, 2)), ref=lambda x: x.swapaxes(0, 2)),
    Row("t", lambda T, x: x.t(), MAT_SHAPES, ref=lambda x: x.T),
    Row("T_prop", lambda T, x: x.T, MAT_SHAPES, ref=lambda x: x.T),
    Row("permute", lambda T, x: x.permute(2, 0, 1), _s((2, 3, 2)),
        ref=lambda x: x.transpose(2, 0, 1)),
    Row("expand", lambda T, x: x.expand(2, 3), _s((3,), (2, 1)),
        ref=lambda x: np.broadcast_to(x, (2, 3))),
    Row("expand_0d", lambda T, x: x.expand(2, 2), _s(()), ref=lambda x: np.broadcast_to(x, (2, 2))),
    Row("broadcast_to", lambda T, x: T.broadcast_to(x, (2, 2, 3)), _s((2, 1, 3)),
        ref=lambda x: np.broadcast_to(x, (2, 2, 3))),
    Row("cat", lambda T, x, y: T.cat([x, y], 1), [((2, 3), (2, 2))],
        ref=lambda x, y: np.concatenate([x, y], 1)),
    Row("cat3", lambda T, x, y, z: T.cat((x, y, z)), [((1, 3), (2, 3), (1, 3))],
        ref=lambda x, y, z: np.concatenate([x, y, z])),
    Row("stack", lambda T, x, y: T.stack([x, y], -1), [((2, 3), (2, 3)), ((), ())],
        ref=lambda x, y: np.stack([x, y], -1)),
    Row("stack_dim0", lambda T, x, y: T.stack((x, y)), [((3,), (3,))],
        ref=lambda x, y: np.stack([x, y])),
    Row("split", lambda T, x: T.split(x, 2, 1), MAT_SHAPES,
        ref=lambda x: tuple(np.split(x, [2], 1))),
    Row("split_sizes", lambda T, x: x.split([1, 2], dim=1), MAT_SHAPES,
        ref=lambda x: tuple(np.split(x, [1], 1))),
    Row("chunk", lambda T, x: x.chunk(2, 0), _s((3, 2)), ref=lambda x: (x[:2], x[2:])),
    Row("flip", lambda T, x: T.flip(x, (0, 1)), MAT_SHAPES,
        ref=lambda x: x[::-1, ::-1]),
    # ---- indexing ---------------------------------------------------------
    Row("getitem_int", lambda T, x: x[1], MAT_SHAPES, ref=lambda x: x[1]),
    Row("getitem_neg_int", lambda T, x: x[:, -1], MAT_SHAPES, ref=lambda x: x[:, -1]),
    Row("getitem_slice", lambda T, x: x[:, 1:], MAT_SHAPES, ref=lambda x: x[:, 1:]),
    Row("getitem_step", lambda T, x: x[::2, ::2], _s((3, 4)), ref=lambda x: x[::2, ::2]),
    Row("getitem_none", lambda T, x: x[None, :, None], MAT_SHAPES, ref=lambda x: x[None, :, None]),
    Row("getitem_ellipsis", lambda T, x: x[..., 1], _s((2, 3, 2)), ref=lambda x: x[..., 1]),
    Row("getitem_mask", lambda T, x: x[x > 0], _s((2, 3)), domain="nonzero",
        ref=lambda x: x[x > 0]),
    Row("getitem_index", lambda T, x: x[T.tensor([0, 2, 0])], _s((3, 2)), ref=_np_index),
    Row("getitem_index_dup", lambda T, x: x[:, T.tensor([[1, 1], [0, 1]])], MAT_SHAPES,
        ref=lambda x: x[:, [[1, 1], [0, 1]]]),
    Row("getitem_index_pair", lambda T, x: x[T.tensor([1, 0, 1]), T.tensor([2, 2, 2])], MAT_SHAPES,
        ref=lambda x: x[[1, 0, 1], [2, 2, 2]]),
    Row("setitem_mask", _setitem_mask, UNARY_SHAPES, domain="nonzero",
        ref=lambda x: np.where(x < 0, 0, x)),
    Row("setitem_slice", _setitem_slice, [((2, 3), (2,)), ((2, 3), ())],
        ref=lambda x, v: _np_setitem_slice(x, v)),
    Row("setitem_index", _setitem_index, [((3, 2), (2,))],
        ref=lambda x, v: _np_setitem_index(x, v)),
    Row("gather", lambda T, x: T.gather(x, 1, T.tensor([[0, 0], [2, 1]])), MAT_SHAPES,
        ref=lambda x: np.take_along_axis(x, np.array([[0, 0], [2, 1]]), 1)),
    Row("gather_dim0", lambda T, x: x.gather(0, T.tensor([[1, 0, 1]])), MAT_SHAPES,
        ref=lambda x: np.take_along_axis(x, np.array([[1, 0, 1]]), 0)),
    Row("scatter_add", lambda T, x, s: x.scatter_add(1, T.tensor([[0, 0], [2, 1]]), s),
        [((2, 3), (2, 2))], ref=lambda x, s: _np_scatter_add(x, s)),
    Row("index_select", lambda T, x: T.index_select(x, 1, T.tensor([2, 0, 2])), MAT_SHAPES,
        ref=lambda x: x[:, [2, 0, 2]]),
    # ---- casts ------------------------------------------------------------
    Row("float", lambda T, x: x.float(), UNARY_SHAPES, ref=lambda x: x.astype(np.float32),
        rtol=1e-6, fd_eps=1e-3, fd_tol=1e-3),
    Row("double", lambda T, x: x.float().double(), UNARY_SHAPES,
        ref=lambda x: x.astype(np.float32).astype(np.float64), rtol=1e-6, fd_eps=1e-3,
        fd_tol=1e-3),
    Row("long", lambda T, x: (x * 3).long(), UNARY_SHAPES, domain="nonint", grad=False,
        ref=lambda x: (x * 3).astype(np.int64)),
    Row("to_dtype", lambda T, x: x.to(T.float32) * 2, UNARY_SHAPES,
        ref=lambda x: x.astype(np.float32) * 2, rtol=1e-6, fd_eps=1e-3, fd_tol=1e-3),
    Row("clone", lambda T, x: x.clone(), UNARY_SHAPES, ref=np.copy),
    # ---- more composites and method forms (checked against torch; ref where simple) ----
    Row("softmax_0d", lambda T, x: T.softmax(x, 0), _s(()), ref=lambda x: np.ones(())),
    Row("log_softmax_0d", lambda T, x: T.log_softmax(x, -1), _s(()), ref=lambda x: np.zeros(())),
    Row("var_dims", lambda T, x: x.var((0, 1)), MAT_SHAPES, ref=lambda x: x.var(ddof=1)),
    Row("var_correction0", lambda T, x: T.var(x, 1, correction=0), MAT_SHAPES,
        ref=lambda x: x.var(1)),
    Row("std_keepdim", lambda T, x: x.std(1, keepdim=True), MAT_SHAPES,
        ref=lambda x: x.std(1, ddof=1, keepdims=True)),
    Row("amax_dims", lambda T, x: x.amax((0, 1)), MAT_SHAPES, domain="distinct", ref=np.amax),
    Row("sum_0d_dim", lambda T, x: x.sum(0), _s(()), ref=lambda x: x),
    Row("sum_empty_dims", lambda T, x: x.sum(()), MAT_SHAPES, ref=np.sum),
    Row("sum_neg_dim", lambda T, x: x.sum(-2), MAT_SHAPES, ref=lambda x: x.sum(0)),
    Row("mean_dims", lambda T, x: x.mean((-1, 0)), MAT_SHAPES, ref=np.mean),
    Row("prod_0d", lambda T, x: x.prod(), _s(()), ref=lambda x: x),
    Row("max_0d_dim", lambda T, x: x.max(0), _s(()), ref=lambda x: (x, np.int64(0))),
    Row("argmax_keepdim_all", lambda T, x: x.argmax(keepdim=True), MAT_SHAPES, domain="distinct",
        grad=False, ref=lambda x: np.argmax(x).reshape(1, 1)),
    Row("unbind", lambda T, x: x.unbind(1), MAT_SHAPES, ref=lambda x: tuple(x.T)),
    Row("select", lambda T, x: x.select(1, 0), MAT_SHAPES, ref=lambda x: x[:, 0]),
    Row("narrow", lambda T, x: x.narrow(1, 1, 2), MAT_SHAPES, ref=lambda x: x[:, 1:3]),
    Row("squeeze_dims", lambda T, x: x.squeeze((0, 2)), _s((1, 2, 1, 3)),
        ref=lambda x: x.reshape(2, 3)),
    Row("expand_neg1", lambda T, x: x.expand(4, -1), _s((1, 3)),
        ref=lambda x: np.broadcast_to(x, (4, 3))),
    Row("mT", lambda T, x: x.mT, _s((2, 2, 3)), ref=lambda x: x.swapaxes(-1, -2)),
    Row("div_floor", lambda T, x: T.div(x, 0.7, rounding_mode="floor"), UNARY_SHAPES,
        domain="nonint", ref=lambda x: np.floor(x / 0.7)),
    Row("div_trunc", lambda T, x: T.div(x, 0.7, rounding_mode="trunc"), UNARY_SHAPES,
        domain="nonint", ref=lambda x: np.trunc(x / 0.7)),
    Row("remainder_scalar", lambda T, x: x % 0.7, UNARY_SHAPES, domain="nonint",
        ref=lambda x: np.mod(x, 0.7)),
    Row("remainder_tensor", lambda T, x, y: T.remainder(x, y), [((2, 3), (3,))],
        domain=("nonint", "pos"), ref=np.mod, rtol=1e-6),
    Row("trunc", lambda T, x: T.trunc(x), UNARY_SHAPES, domain="nonint", ref=np.trunc),
    Row("fmod_scalar", lambda T, x: T.fmod(x, 0.7), UNARY_SHAPES, domain="nonint",
        ref=lambda x: np.fmod(x, 0.7), rtol=1e-6),
    Row("fmod_tensor", lambda T, x, y: T.fmod(x, y), [((2, 3), (3,))], domain=("nonint", "pos"),
        ref=np.fmod, rtol=1e-6),
    Row("expm1", lambda T, x: T.expm1(x), UNARY_SHAPES, ref=np.expm1),
    Row("expm1_tiny", lambda T, x: T.expm1(x * 1e-9), _s((3,)), ref=lambda x: np.expm1(x * 1e-9),
        rtol=1e-12, atol=0),
    Row("log2", lambda T, x: T.log2(x), UNARY_SHAPES, domain="pos", ref=np.log2),
    Row("log10", lambda T, x: T.log10(x), UNARY_SHAPES, domain="pos", ref=np.log10),
    Row("outer", lambda T, x, y: T.outer(x, y), [((2,), (3,))], ref=np.outer),
    Row("dot", lambda T, x, y: T.dot(x, y), [((3,), (3,))], ref=np.dot),
    Row("mv", lambda T, x, y: T.mv(x, y), [((2, 3), (3,))], ref=np.matmul),
    Row("addmm", lambda T, b, x, y: T.addmm(b, x, y),
        [((2, 2), (2, 3), (3, 2)), ((2,), (2, 3), (3, 2))],
        ref=lambda b, x, y: b + x @ y),
    Row("tril", lambda T, x: x.tril(), _s((3, 3), (2, 3)), ref=np.tril),
    Row("triu", lambda T, x: T.triu(x, 1), _s((3, 3)), ref=lambda x: np.triu(x, 1)),
    Row("relu_", lambda T, x: (x * 1).relu_(), UNARY_SHAPES, domain="nonzero",
        ref=lambda x: np.maximum(x, 0)),
    Row("sigmoid_", lambda T, x: (x * 1).sigmoid_(), UNARY_SHAPES, ref=special.expit),
    Row("clamp_", lambda T, x: (x * 1).clamp_(min=0.1), UNARY_SHAPES, domain="distinct",
        ref=lambda x: np.maximum(x, 0.1)),
    Row("masked_fill_", lambda T, x: (x * 1).masked_fill_(x > 0, 2.0), UNARY_SHAPES,
        domain="nonzero", ref=lambda x: np.where(x > 0, 2.0, x)),
    Row("exp_", lambda T, x: (x * 1).exp_(), UNARY_SHAPES, ref=np.exp),
    Row("pow_", lambda T, x: _ipow(x), UNARY_SHAPES, ref=np.square),
    Row("t_", lambda T, x: (x * 1).t_(), MAT_SHAPES, ref=lambda x: x.T),
    Row("transpose_", lambda T, x: (x * 1).transpose_(0, 1), MAT_SHAPES, ref=lambda x: x.T),
    Row("unsqueeze_", lambda T, x: (x * 1).unsqueeze_(0), MAT_SHAPES, ref=lambda x: x[None]),
    Row("squeeze_", lambda T, x: (x * 1).squeeze_(), _s((2, 1, 3)), ref=np.squeeze),
    Row("squeeze_dim_", lambda T, x: (x * 1).squeeze_(1), _s((2, 1, 3)), ref=np.squeeze),
    Row("fill_", lambda T, x: (x * 1).fill_(2.0) * x, UNARY_SHAPES, ref=lambda x: 2 * x),
    Row("fill_tensor", lambda T, x, v: (x * 1).fill_(v), [((2, 3), ())],
        ref=lambda x, v: np.broadcast_to(v, x.shape)),
    Row("zero_", lambda T, x: (x * 1).zero_() + x, UNARY_SHAPES, ref=lambda x: x),
    Row("copy_", lambda T, x, y: (x * 1).copy_(y), [((2, 3), (3,))],
        ref=lambda x, y: np.broadcast_to(y, x.shape)),
    Row("setitem_int", lambda T, x: _seti(x, 0, 5.0), _s((2, 3), (3,)),
        ref=lambda x: _np_seti(x, 0, 5.0)),
    Row("setitem_column", lambda T, x: _seti(x, (slice(None), 1), x[:, 0]), MAT_SHAPES,
        ref=lambda x: _np_seti(x, (slice(None), 1), x[:, 0])),
    Row("setitem_ellipsis", lambda T, x: _seti(x, (Ellipsis, 0), 1.0), MAT_SHAPES,
        ref=lambda x: _np_seti(x, (Ellipsis, 0), 1.0)),
    Row("setitem_masked_values", lambda T, x: _seti(x, x > 0.5, x[x > 0.5] * 2), MAT_SHAPES,
        ref=lambda x: np.where(x > 0.5, 2 * x, x)),
    Row("iadd_tensor", lambda T, x, y: _iadd(x, y), BINARY_SHAPES[:2], ref=np.add),
    Row("getitem_list", lambda T, x: x[[1, 0]], MAT_SHAPES, ref=lambda x: x[[1, 0]]),
    Row("getitem_bool_rows", lambda T, x: x[T.tensor([True, False])], MAT_SHAPES,
        ref=lambda x: x[[True, False]]),
    Row("getitem_neg_slices", lambda T, x: x[-1:, -2:], MAT_SHAPES, ref=lambda x: x[-1:, -2:]),
    Row("getitem_int_int", lambda T, x: x[1, 2], MAT_SHAPES, ref=lambda x: x[1, 2]),
    Row("getitem_slice_index", lambda T, x: x[1:, T.tensor([0, 2])], MAT_SHAPES,
        ref=lambda x: x[1:, [0, 2]]),
    Row("getitem_split_indices", lambda T, x: x[T.tensor([0]), :, T.tensor([1])], _s((1, 2, 3)),
        ref=lambda x: x[[0], :, [1]]),
    Row("stack_neg", lambda T, x: T.stack([x, x * 2], -3), MAT_SHAPES,
        ref=lambda x: np.stack([x, 2 * x], -3)),
    Row("cat_empty_part", lambda T, x: T.cat([x, x[:0]], 0), MAT_SHAPES, ref=lambda x: x),
    Row("split_uneven", lambda T, x: x.split(2, -1), MAT_SHAPES,
        ref=lambda x: (x[:, :2], x[:, 2:])),
    Row("chunk_three", lambda T, x: x.chunk(3, 1), MAT_SHAPES,
        ref=lambda x: (x[:, :1], x[:, 1:2], x[:, 2:])),
    Row("where_bcast_cond", lambda T, x: T.where(x[0] > 0, x, x * 2), MAT_SHAPES,
        ref=lambda x: np.where(x[0] > 0, x, 2 * x)),
    Row("minimum_0d", lambda T, x: T.minimum(x, T.tensor(0.0, dtype=x.dtype)), MAT_SHAPES,
        domain="nonzero", ref=lambda x: np.minimum(x, 0)),
    Row("masked_fill_0d_mask", lambda T, x: x.masked_fill(x[0, 0] > 0, 0.0), MAT_SHAPES,
        ref=lambda x: x * (x[0, 0] <= 0)),
    Row("index_select_dim0", lambda T, x: x.index_select(0, T.tensor([1, 1])), MAT_SHAPES,
        ref=lambda x: x[[1, 1]]),
    Row("gather_3d", lambda T, x: x.gather(2, T.tensor([[[0], [2]]])), _s((1, 2, 3)),
        ref=lambda x: np.take_along_axis(x, np.array([[[0], [2]]]), 2)),
    Row("pow_tensor_0d_exponent", lambda T, x, y: x ** y, [((2, 3), ())], domain=("pos", "real"),
        ref=np.power),
    Row("rpow_int_base", lambda T, x: 2 ** x, UNARY_SHAPES, ref=lambda x: 2.0 ** x),
    Row("sum_dtype", lambda T, x: x.float().sum(dtype=T.float64), MAT_SHAPES,
        ref=lambda x: x.astype(np.float32).sum(dtype=np.float64), rtol=1e-6, fd_eps=1e-3,
        fd_tol=1e-3),
    # ---- convolution and pooling ------------------------------------------
    Row("conv2d", lambda T, x, w, b: _F(T).conv2d(x, w, b), [((2, 3, 5, 4), (4, 3, 3, 2), (4,))],
        ref=_np_conv),
    Row("conv2d_stride_pad", lambda T, x, w, b: _F(T).conv2d(x, w, b, stride=2, padding=1),
        [((2, 2, 6, 5), (3, 2, 3, 3), (3,)), ((1, 1, 5, 5), (2, 1, 2, 2), (2,))],
        ref=lambda x, w, b: _np_conv(x, w, b, 2, 1)),
    Row("conv2d_dilation", lambda T, x, w: _F(T).conv2d(x, w, stride=(1, 2), padding=(2, 1),
                                                        dilation=(2, 1)),
        [((2, 2, 6, 5), (3, 2, 3, 2))], ref=lambda x, w: _np_conv(x, w, None, (1, 2), (2, 1),
                                                                  (2, 1))),
    Row("conv2d_groups", lambda T, x, w, b: _F(T).conv2d(x, w, b, stride=2, groups=2),
        [((2, 4, 5, 5), (6, 2, 3, 3), (6,))], ref=lambda x, w, b: _np_conv(x, w, b, 2, 0, 1, 2)),
    Row("conv2d_depthwise", lambda T, x, w: _F(T).conv2d(x, w, padding=1, groups=3),
        [((1, 3, 4, 4), (3, 1, 3, 3))], ref=lambda x, w: _np_conv(x, w, None, 1, 1, 1, 3)),
    Row("conv2d_same", lambda T, x, w: _F(T).conv2d(x, w, padding="same", dilation=2),
        [((1, 2, 5, 6), (2, 2, 2, 3))], ref=lambda x, w: _np_conv(x, w, None, 1, "same", 2)),
    Row("conv2d_valid_x_grad", lambda T, x, w: T.conv2d(x, w, padding="valid"),
        [((1, 2, 4, 4), (2, 2, 3, 3))], ref=_np_conv, grad_inputs=(0,)),
    Row("conv2d_unbatched", lambda T, x, w, b: _F(T).conv2d(x, w, b, padding=1),
        [((2, 4, 3), (3, 2, 3, 3), (3,))], ref=lambda x, w, b: _np_conv(x[None], w, b, 1, 1)[0]),
    Row("conv1d", lambda T, x, w, b: _F(T).conv1d(x, w, b, stride=2, padding=2, dilation=2),
        [((2, 3, 9), (4, 3, 3), (4,))], ref=lambda x, w, b: _np_conv(x, w, b, 2, 2, 2)),
    Row("conv1d_groups_same", lambda T, x, w: T.conv1d(x, w, padding="same", groups=2),
        [((2, 4, 6), (4, 2, 4))], ref=lambda x, w: _np_conv(x, w, None, 1, "same", 1, 2)),
    Row("conv3d", lambda T, x, w, b: _F(T).conv3d(x, w, b, stride=(1, 2, 1), padding=(1, 0, 1)),
        [((1, 2, 3, 4, 3), (2, 2, 2, 2, 2), (2,))],
        ref=lambda x, w, b: _np_conv(x, w, b, (1, 2, 1), (1, 0, 1))),
    Row("max_pool2d", lambda T, x: _F(T).max_pool2d(x, 2), _s((2, 3, 4, 6), (1, 2, 5, 5)),
        domain="distinct", ref=lambda x: _np_pool2d(x, 2, 2, 0, "max")),
    Row("max_pool2d_overlap_pad", lambda T, x: T.max_pool2d(x, 3, stride=2, padding=1),
        _s((2, 2, 5, 6)), domain="distinct", ref=lambda x: _np_pool2d(x, 3, 2, 1, "max")),
    Row("max_pool2d_ceil", lambda T, x: _F(T).max_pool2d(x, 3, 2, ceil_mode=True),
        _s((1, 2, 6, 5)), domain="distinct",
        ref=lambda x: _np_pool2d(x, 3, 2, 0, "max", ceil_mode=True)),
    Row("max_pool2d_dilation", lambda T, x: _F(T).max_pool2d(x, (2, 3), (1, 2), (1, 1), (2, 1)),
        _s((1, 2, 5, 6)), domain="distinct"),
    Row("max_pool2d_indices", lambda T, x: _F(T).max_pool2d(x, 2, 1, return_indices=True),
        _s((1, 2, 3, 4), (2, 3, 3)), domain="distinct"),
    Row("max_pool2d_ties", lambda T, x: _F(T).max_pool2d(T.round(x * 0.5), 3, 1, 1) * x,
        _s((1, 2, 4, 5)), domain="nonint"),
    Row("avg_pool2d", lambda T, x: _F(T).avg_pool2d(x, 2), _s((2, 3, 4, 6), (2, 5, 5)),
        ref=lambda x: _np_pool2d(x.reshape((-1,) + x.shape[-3:]), 2, 2, 0, "avg").reshape(
            x.shape[:-2] + (x.shape[-2] // 2, x.shape[-1] // 2))),
    Row("avg_pool2d_pad", lambda T, x: _F(T).avg_pool2d(x, 3, 2, 1), _s((1, 2, 5, 6)),
        ref=lambda x: _np_pool2d(x, 3, 2, 1, "avg")),
    Row("avg_pool2d_exclude_pad_ceil",
        lambda T, x: _F(T).avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
        _s((1, 2, 6, 5)),
        ref=lambda x: _np_pool2d(x, 3, 2, 1, "avg", ceil_mode=True, count_include_pad=False)),
    Row("avg_pool2d_ceil", lambda T, x: _F(T).avg_pool2d(x, 2, 3, ceil_mode=True),
        _s((1, 1, 5, 7)), ref=lambda x: _np_pool2d(x, 2, 3, 0, "avg", ceil_mode=True)),
    Row("adaptive_avg_pool2d_1x1", lambda T, x: _F(T).adaptive_avg_pool2d(x, (1, 1)),
        _s((2, 3, 4, 5)), ref=lambda x: x.mean((2, 3), keepdims=True)),
    Row("adaptive_avg_pool2d", lambda T, x: _F(T).adaptive_avg_pool2d(x, (2, 3)),
        _s((2, 3, 4, 6), (2, 3, 5, 7), (3, 4, 9)), ref=lambda x: _np_adaptive_avg(x, 2, 3)),
    Row("adaptive_avg_pool2d_none", lambda T, x: _F(T).adaptive_avg_pool2d(x, (None, 2)),
        _s((1, 2, 3, 4)), ref=lambda x: _np_adaptive_avg(x, 3, 2)),
    Row("max_pool1d", lambda T, x: _F(T).max_pool1d(x, 3, 2, 1), _s((2, 3, 8), (2, 7)),
        domain="distinct", ref=lambda x: _np_pool(x, 1, 3, 2, 1, "max")),
    Row("max_pool1d_dilation_ceil_indices",
        lambda T, x: _F(T).max_pool1d(x, 2, 2, 1, 2, ceil_mode=True, return_indices=True),
        _s((1, 2, 8)), domain="distinct"),
    Row("max_pool3d", lambda T, x: _F(T).max_pool3d(x, (2, 3, 2), (1, 2, 2), (1, 1, 0)),
        _s((2, 2, 3, 5, 4), (2, 4, 3, 4)), domain="distinct",
        ref=lambda x: _np_pool(x, 3, (2, 3, 2), (1, 2, 2), (1, 1, 0), "max")),
    Row("max_pool3d_dilation_ceil_indices",
        lambda T, x: _F(T).max_pool3d(x, 2, 2, 1, (1, 2, 1), ceil_mode=True,
                                      return_indices=True),
        _s((1, 2, 4, 5, 4)), domain="distinct"),
    Row("max_pool3d_ties", lambda T, x: _F(T).max_pool3d(T.round(x * 0.5), 2, 1, 1) * 2.0,
        _s((1, 1, 3, 3, 2)), domain="nonint", grad=False),
    Row("avg_pool1d", lambda T, x: _F(T).avg_pool1d(x, 3, 2, 1), _s((2, 3, 8), (2, 7)),
        ref=lambda x: _np_pool(x, 1, 3, 2, 1, "avg")),
    Row("avg_pool1d_exclude_pad_ceil",
        lambda T, x: _F(T).avg_pool1d(x, 4, 3, 2, ceil_mode=True, count_include_pad=False),
        _s((1, 2, 9)), ref=lambda x: _np_pool(x, 1, 4, 3, 2, "avg", True, False)),
    Row("avg_pool3d", lambda T, x: _F(T).avg_pool3d(x, (2, 3, 2), (1, 2, 2), (1, 1, 0)),
        _s((2, 2, 3, 5, 4), (2, 4, 3, 4)),
        ref=lambda x: _np_pool(x, 3, (2, 3, 2), (1, 2, 2), (1, 1, 0), "avg")),
    Row("avg_pool3d_exclude_pad_ceil",
        lambda T, x: _F(T).avg_pool3d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
        _s((1, 2, 4, 5, 4)), ref=lambda x: _np_pool(x, 3, 3, 2, 1, "avg", True, False)),
    Row("avg_pool3d_divisor", lambda T, x: _F(T).avg_pool3d(x, 2, 1, 1, divisor_override=3),
        _s((1, 1, 3, 2, 3)), ref=lambda x: _np_pool(x, 3, 2, 1, 1, "avg", divisor=3)),
    Row("adaptive_avg_pool1d", lambda T, x: _F(T).adaptive_avg_pool1d(x, 3),
        _s((2, 3, 7), (2, 8)), ref=lambda x: _np_adaptive(x, (3,))),
    Row("adaptive_avg_pool1d_1", lambda T, x: _F(T).adaptive_avg_pool1d(x, 1), _s((2, 3, 5)),
        ref=lambda x: _np_adaptive(x, (1,))),
    Row("adaptive_avg_pool3d", lambda T, x: _F(T).adaptive_avg_pool3d(x, (2, 3, 2)),
        _s((2, 2, 3, 5, 4), (2, 5, 4, 3)), ref=lambda x: _np_adaptive(x, (2, 3, 2))),
    Row("adaptive_avg_pool3d_none", lambda T, x: _F(T).adaptive_avg_pool3d(x, (None, 2, 1)),
        _s((1, 2, 3, 5, 4)), ref=lambda x: _np_adaptive(x, (3, 2, 1))),
    Row("adaptive_avg_pool3d_1", lambda T, x: _F(T).adaptive_avg_pool3d(x, 1),
        _s((1, 2, 3, 2, 2)), ref=lambda x: x.mean((2, 3, 4), keepdims=True)),
    Row("adaptive_max_pool1d", lambda T, x: _F(T).adaptive_max_pool1d(x, 3, True),
        _s((2, 3, 7), (2, 8)), domain="distinct"),
    Row("adaptive_max_pool2d", lambda T, x: _F(T).adaptive_max_pool2d(x, (2, 3)),
        _s((2, 3, 5, 7), (3, 4, 4)), domain="distinct", ref=lambda x: _np_adaptive(x, (2, 3),
                                                                                    "max")),
    Row("adaptive_max_pool2d_grow_indices",
        lambda T, x: _F(T).adaptive_max_pool2d(x, (4, None), return_indices=True),
        _s((1, 2, 3, 4)), domain="distinct"),
    Row("adaptive_max_pool2d_ties", lambda T, x: _F(T).adaptive_max_pool2d(T.round(x), 2) * x[
        ..., :2, :2], _s((1, 2, 4, 5)), domain="nonint"),
    Row("adaptive_max_pool3d", lambda T, x: _F(T).adaptive_max_pool3d(x, (2, 3, 2)),
        _s((2, 2, 3, 5, 4), (2, 5, 4, 3)), domain="distinct",
        ref=lambda x: _np_adaptive(x, (2, 3, 2), "max")),
    Row("adaptive_max_pool3d_indices",
        lambda T, x: _F(T).adaptive_max_pool3d(x, (1, None, 2), return_indices=True),
        _s((1, 2, 3, 2, 5)), domain="distinct"),
    # ---- padding (nn.functional.pad) ---------------------------------------
    Row("pad_constant", lambda T, x: _F(T).pad(x, (1, 2, 0, 1), value=0.5),
        _s((2, 3, 4), (3, 2)),
        ref=lambda x: _np_pad(x, (1, 2, 0, 1), "constant", constant_values=0.5)),
    Row("pad_constant_crop", lambda T, x: _F(T).pad(x, (-1, 2, 1, -2)), _s((2, 4, 5)),
        ref=lambda x: np.pad(x[:, :2, 1:], ((0, 0), (1, 0), (0, 2)))),
    Row("pad_constant_only_crop", lambda T, x: _F(T).pad(x, (0, -1)), _s((2, 3))),
    Row("pad_reflect_1d", lambda T, x: _F(T).pad(x, (2, 1), mode="reflect"),
        _s((2, 3, 5), (2, 4)),
        ref=lambda x: _np_pad(x, (2, 1), "reflect")),
    Row("pad_reflect_2d", lambda T, x: _F(T).pad(x, (1, 2, 3, 0), mode="reflect"),
        _s((2, 2, 4, 5), (2, 4, 3)), ref=lambda x: _np_pad(x, (1, 2, 3, 0), "reflect")),
    Row("pad_reflect_3d", lambda T, x: _F(T).pad(x, (1, 1, 2, 0, 0, 2), mode="reflect"),
        _s((1, 2, 3, 4, 3)), ref=lambda x: _np_pad(x, (1, 1, 2, 0, 0, 2), "reflect")),
    Row("pad_reflect_crop", lambda T, x: _F(T).pad(x, (-1, 3, 1, -1), mode="reflect"),
        _s((1, 3, 4, 5))),
    Row("pad_replicate_1d", lambda T, x: _F(T).pad(x, (3, 1), mode="replicate"), _s((2, 3, 2)),
        ref=lambda x: _np_pad(x, (3, 1), "edge")),
    Row("pad_replicate_2d", lambda T, x: _F(T).pad(x, (0, 2, 1, 1), mode="replicate"),
        _s((2, 2, 3, 4), (2, 1, 3)), ref=lambda x: _np_pad(x, (0, 2, 1, 1), "edge")),
    Row("pad_replicate_3d_crop", lambda T, x: _F(T).pad(x, (1, -1, 2, 0, -1, 1), mode="replicate"),
        _s((1, 2, 3, 4, 3))),
    Row("pad_circular_1d", lambda T, x: _F(T).pad(x, (2, 3), mode="circular"),
        _s((2, 3, 3), (2, 4)),
        ref=lambda x: _np_pad(x, (2, 3), "wrap")),
    Row("pad_circular_2d", lambda T, x: _F(T).pad(x, (1, 2, 3, 0), mode="circular"),
        _s((2, 2, 3, 4)), ref=lambda x: _np_pad(x, (1, 2, 3, 0), "wrap")),
    Row("pad_circular_3d_crop", lambda T, x: _F(T).pad(x, (1, 1, 2, -1, 0, 2), mode="circular"),
        _s((1, 2, 3, 4, 3))),
    Row("batch_norm_train", lambda T, x, w, b: _bn_train(T, x, w, b)[0],
        [((4, 3), (3,), (3,)), ((2, 3, 4, 5), (3,), (3,))], ref=_np_batch_norm_train, rtol=1e-6),
    Row("batch_norm_running_stats", _bn_train, [((4, 3), (3,), (3,)), ((2, 3, 2, 2), (3,), (3,))],
        ref=_np_bn_train_stats, rtol=1e-6, grad=False),
    Row("batch_norm_train_no_affine",
        lambda T, x: _F(T).batch_norm(x, None, None, training=True), _s((3, 2, 4)),
        ref=lambda x: _np_batch_norm_train(x, np.ones(2), np.zeros(2)), rtol=1e-6),
    Row("batch_norm_eval", lambda T, x, m, v, w, b: _F(T).batch_norm(x, m, v, w, b),
        [((2, 3, 4, 2), (3,), (3,), (3,), (3,))], domain=("real", "real", "pos", "real", "real"),
        ref=_np_batch_norm, grad_inputs=(0, 3, 4)),
    Row("batch_norm_torch_ns", lambda T, x, w, b: T.batch_norm(x, w, b, None, None, True, 0.1,
                                                               1e-5, False),
        [((3, 2, 3), (2,), (2,))], ref=_np_batch_norm_train, rtol=1e-6),
    # ---- creation primitives (recorded by the tracer; runnable eagerly) -----
    Row("full", _plus_full, UNARY_SHAPES, ref=lambda x: x + 1.5),
    Row("random", _plus_random_times_zero, UNARY_SHAPES, ref=lambda x: x),
    # ---- opsa: bitwise ops, contiguous (issue 12) ---------------------------
    Row("bitwise_and", lambda T, x, y: x.long() & y.long(), BINARY_SHAPES, domain="nonint",
        grad=False, ref=lambda x, y: _i64(x) & _i64(y)),
    Row("bitwise_and_int32_scalar", lambda T, x: ((x * 100).int() & 0x1337).long(), UNARY_SHAPES,
        domain="nonint", grad=False, ref=lambda x: (x * 100).astype(np.int32) & 0x1337),
    Row("bitwise_or", lambda T, x, y: T.bitwise_or(x.long(), y.long()), BINARY_SHAPES,
        domain="nonint", grad=False, ref=lambda x, y: _i64(x) | _i64(y)),
    Row("bitwise_xor", lambda T, x, y: x.long() ^ y.long(), BINARY_SHAPES, domain="nonint",
        grad=False, ref=lambda x, y: _i64(x) ^ _i64(y)),
    Row("rxor_scalar", lambda T, x: (5 ^ x.int()).long(), UNARY_SHAPES, domain="nonint", grad=False,
        ref=lambda x: 5 ^ x.astype(np.int32)),
    Row("bitwise_not", lambda T, x: ~x.long(), UNARY_SHAPES, domain="nonint", grad=False,
        ref=lambda x: ~_i64(x)),
    Row("bitwise_bool", lambda T, x, y: ((x > 0) & (y > 0)) | ~(x > y) ^ (y < 0),
        BINARY_SHAPES, grad=False,
        ref=lambda x, y: ((x > 0) & (y > 0)) | ~(x > y) ^ (y < 0)),
    Row("lshift", lambda T, x, y: x.long() << (y * 20).long().abs(), BINARY_SHAPES,
        domain="nonint", grad=False, ref=lambda x, y: _np_shift(_i64(x), _i64(np.abs(y * 20)))),
    Row("rshift", lambda T, x, y: ((x * 1e4).int() >> (y * 20).int()).long(), BINARY_SHAPES,
        domain="nonint", grad=False,
        ref=lambda x, y: _np_shift((x * 1e4).astype(np.int32), (y * 20).astype(np.int32),
                                   left=False)),
    Row("rlshift_scalar", lambda T, x: 3 << x.long().abs(), UNARY_SHAPES, domain="nonint",
        grad=False, ref=lambda x: _np_shift(np.int64(3), np.abs(_i64(x)))),
    Row("contiguous_view", lambda T, x: x.t().contiguous().view(-1) * 2, MAT_SHAPES,
        ref=lambda x: x.T.reshape(-1) * 2),
    # ---- opsa: more elementwise math (issue 12) ------------------------------
    Row("asin", lambda T, x: T.asin(x), UNARY_SHAPES, domain="unit", ref=np.arcsin),
    Row("acos", lambda T, x: x.acos(), UNARY_SHAPES, domain="unit", ref=np.arccos),
    Row("atan", lambda T, x: T.arctan(x), UNARY_SHAPES, ref=np.arctan),
    Row("sinh", lambda T, x: T.sinh(x), UNARY_SHAPES, ref=np.sinh),
    Row("cosh", lambda T, x: x.cosh(), UNARY_SHAPES, ref=np.cosh),
    Row("asinh", lambda T, x: T.asinh(x), UNARY_SHAPES, ref=np.arcsinh),
    Row("acosh", lambda T, x: T.arccosh(x * x + 1.5), UNARY_SHAPES,
        ref=lambda x: np.arccosh(x * x + 1.5)),
    Row("atanh", lambda T, x: T.atanh(x), UNARY_SHAPES, domain="unit", ref=np.arctanh),
    Row("atan2", lambda T, y, x: T.atan2(y, x), BINARY_SHAPES, domain=("real", "nonzero"),
        ref=np.arctan2),
    Row("arctan2_method", lambda T, y, x: y.arctan2(x), BINARY_SHAPES[:1],
        domain=("real", "nonzero"), ref=np.arctan2),
    Row("hypot", lambda T, x, y: T.hypot(x, y), BINARY_SHAPES, domain="nonzero", ref=np.hypot),
    Row("exp2", lambda T, x: T.exp2(x), UNARY_SHAPES, ref=np.exp2),
    Row("erfc", lambda T, x: T.erfc(x), UNARY_SHAPES, ref=special.erfc),
    Row("erfinv", lambda T, x: T.erfinv(x), UNARY_SHAPES, domain="unit", ref=special.erfinv),
    Row("lgamma", lambda T, x: T.lgamma(x), UNARY_SHAPES, domain="pos", ref=special.gammaln),
    Row("digamma", lambda T, x: x.digamma(), UNARY_SHAPES, domain="pos", ref=special.psi),
    Row("polygamma_1", lambda T, x: T.polygamma(1, x), UNARY_SHAPES, domain="pos",
        ref=lambda x: special.polygamma(1, x)),
    Row("polygamma_2_method", lambda T, x: x.polygamma(2), UNARY_SHAPES, domain="pos",
        ref=lambda x: special.polygamma(2, x), rtol=1e-6),
    Row("copysign", lambda T, x, y: T.copysign(x, y), BINARY_SHAPES, domain="nonzero",
        ref=np.copysign),  # other's gradient: zeros, as torch's
    Row("logaddexp", lambda T, x, y: T.logaddexp(x, y), BINARY_SHAPES, ref=np.logaddexp),
    Row("logaddexp2", lambda T, x, y: T.logaddexp2(x, y), BINARY_SHAPES, ref=np.logaddexp2),
    Row("xlogy", lambda T, x, y: T.xlogy(x, y), BINARY_SHAPES, domain=("real", "pos"),
        ref=special.xlogy),
    Row("special_xlogy_scalar", lambda T, y: T.special.xlogy(2.0, y), UNARY_SHAPES,
        domain="pos", ref=lambda y: special.xlogy(2.0, y)),
    Row("logit", lambda T, x: T.logit(x), UNARY_SHAPES, domain="prob", ref=special.logit),
    Row("logit_eps", lambda T, x: x.logit(eps=0.25), UNARY_SHAPES, domain="prob",
        ref=lambda x: special.logit(np.clip(x, 0.25, 0.75))),
    Row("frac", lambda T, x: T.frac(x), UNARY_SHAPES, domain="nonint",
        ref=lambda x: x - np.trunc(x)),
    Row("fix", lambda T, x: x.fix(), UNARY_SHAPES, domain="nonint", ref=np.trunc),
    Row("sinc", lambda T, x: T.sinc(x), UNARY_SHAPES, ref=np.sinc),
    Row("deg2rad", lambda T, x: T.deg2rad(x), UNARY_SHAPES, ref=np.deg2rad),
    Row("rad2deg", lambda T, x: x.rad2deg(), UNARY_SHAPES, ref=np.rad2deg),
    Row("float_power", lambda T, x: T.float_power(x, 2.5), UNARY_SHAPES, domain="pos",
        ref=lambda x: x ** 2.5),
    Row("float_power_tensor", lambda T, x, y: x.float_power(y), BINARY_SHAPES,
        domain=("pos", "real"), ref=np.power),
    Row("nan_to_num", lambda T, x: T.nan_to_num(T.where(x > 0, x, -math.inf), neginf=-7.0),
        UNARY_SHAPES, domain="nonzero", ref=lambda x: np.where(x > 0, x, -7.0)),
    Row("nan_to_num_nan", lambda T, x: T.where(x > 0, x, math.nan).nan_to_num(2.0) + x,
        UNARY_SHAPES, domain="nonzero", ref=lambda x: np.where(x > 0, x, 2.0) + x),
    Row("signbit", lambda T, x: T.signbit(x), UNARY_SHAPES, grad=False, ref=np.signbit),
    Row("heaviside", lambda T, x, y: T.heaviside(x.round(), y), BINARY_SHAPES, domain="nonint",
        grad=False, ref=lambda x, y: np.heaviside(np.round(x), y)),
    Row("isposinf_isneginf", lambda T, x: T.isposinf(x * math.inf) | x.isneginf(),
        UNARY_SHAPES, domain="nonzero", grad=False, ref=lambda x: x > 0),
    Row("rremainder_scalar", lambda T, x: 2.5 % x, UNARY_SHAPES, domain="nonzero",
        grad=False, ref=lambda x: np.mod(2.5, x)),
    Row("asin_", lambda T, x: (x * 1.0).asin_(), UNARY_SHAPES[:1], domain="unit",
        ref=np.arcsin),
    Row("atan2_", lambda T, y, x: (y * 1.0).atan2_(x), BINARY_SHAPES[:2],
        domain=("real", "nonzero"), ref=np.arctan2),
    # ---- opsa: activations ------------------------------------------------
    Row("silu", lambda T, x: _F(T).silu(x), UNARY_SHAPES, ref=lambda x: x * special.expit(x)),
    Row("elu", lambda T, x: _F(T).elu(x, 1.5), UNARY_SHAPES, domain="nonzero",
        ref=lambda x: np.where(x > 0, x, 1.5 * np.expm1(x))),
    Row("celu", lambda T, x: _F(T).celu(x, 0.5), UNARY_SHAPES, domain="nonzero",
        ref=lambda x: np.where(x > 0, x, 0.5 * np.expm1(x / 0.5))),
    Row("selu", lambda T, x: _F(T).selu(x), UNARY_SHAPES, domain="nonzero",
        ref=lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x))),
    Row("softplus", lambda T, x: _F(T).softplus(x), UNARY_SHAPES,
        ref=lambda x: np.logaddexp(0, x)),
    Row("softplus_beta_threshold", lambda T, x: _F(T).softplus(x, 2.0, 1.0), UNARY_SHAPES,
        domain="distinct", ref=lambda x: np.where(2 * x > 1, x, np.logaddexp(0, 2 * x) / 2)),
    Row("softsign", lambda T, x: _F(T).softsign(x), UNARY_SHAPES, domain="nonzero",
        ref=lambda x: x / (1 + np.abs(x))),
    Row("hardtanh", lambda T, x: _F(T).hardtanh(x), UNARY_SHAPES, domain="distinct",
        ref=lambda x: np.clip(x, -1, 1)),
    Row("relu6", lambda T, x: _F(T).relu6(x * 4), UNARY_SHAPES, domain="distinct",
        ref=lambda x: np.clip(x * 4, 0, 6)),
    Row("hardsigmoid", lambda T, x: _F(T).hardsigmoid(x * 2), UNARY_SHAPES, domain="nonzero",
        ref=lambda x: np.clip(x * 2 + 3, 0, 6) / 6),
    Row("hardswish", lambda T, x: _F(T).hardswish(x * 2), UNARY_SHAPES, domain="nonzero",
        ref=lambda x: x * 2 * np.clip(x * 2 + 3, 0, 6) / 6),
    Row("mish", lambda T, x: _F(T).mish(x), UNARY_SHAPES,
        ref=lambda x: x * np.tanh(np.logaddexp(0, x))),
    Row("logsigmoid", lambda T, x: _F(T).logsigmoid(x), UNARY_SHAPES, domain="nonzero",
        ref=lambda x: -np.logaddexp(0, -x)),
    Row("glu", lambda T, x: _F(T).glu(x, 1), [((2, 4),), ((3, 2),)],
        ref=lambda x: np.split(x, 2, 1)[0] * special.expit(np.split(x, 2, 1)[1])),
    Row("prelu", lambda T, x, w: _F(T).prelu(x, w), [((2, 3, 2), (3,)), ((2, 3), (1,)),
                                                       ((), (1,))],
        domain=("nonzero", "real"),
        ref=lambda x, w: np.where(x > 0, x, (w.reshape((-1,) + (1,) * (x.ndim - 2))
                                             if x.ndim >= 2 else w.reshape(())) * x)),
    Row("rrelu_eval", lambda T, x: _F(T).rrelu(x), UNARY_SHAPES, domain="nonzero",
        ref=lambda x: np.where(x > 0, x, x * (1 / 8 + 1 / 3) / 2)),
    Row("threshold", lambda T, x: _F(T).threshold(x, 0.3, -2.0), UNARY_SHAPES,
        domain="distinct", ref=lambda x: np.where(x > 0.3, x, -2.0)),
    Row("tanhshrink", lambda T, x: _F(T).tanhshrink(x), UNARY_SHAPES, ref=lambda x: x - np.tanh(x)),
    Row("softshrink", lambda T, x: _F(T).softshrink(x, 0.2), UNARY_SHAPES, domain="distinct",
        ref=lambda x: np.where(x > 0.2, x - 0.2, np.where(x < -0.2, x + 0.2, 0))),
    Row("hardshrink", lambda T, x: _F(T).hardshrink(x, 0.2), UNARY_SHAPES, domain="distinct",
        ref=lambda x: np.where(np.abs(x) > 0.2, x, 0)),
    Row("softmin", lambda T, x: _F(T).softmin(x, 1), [((2, 3),)],
        ref=lambda x: _np_softmax(-x, 1)),
    # ---- nn extras (issue 11): vector norms over several dims, p = 0 and -inf ----
    Row("norm_two_dims", lambda T, x: T.norm(x, dim=(0, 1)), _s((2, 3, 4)), domain="nonzero",
        ref=_np_norm(2, axis=(0, 1))),
    Row("norm_p3_three_dims_keepdim", lambda T, x: T.norm(x, 3, dim=(0, 2, 3), keepdim=True),
        _s((2, 3, 2, 2)), domain="nonzero", ref=_np_norm(3, axis=(0, 2, 3), keepdims=True)),
    Row("norm_p0_dim", lambda T, x: T.norm(x * (x > 0), 0, dim=1), MAT_SHAPES, domain="nonzero",
        ref=lambda x: np.sum(x > 0, axis=1).astype(x.dtype)),
    Row("norm_ninf_dim", lambda T, x: T.norm(x, -math.inf, dim=1), MAT_SHAPES,
        domain="distinct", ref=lambda x: np.amin(np.abs(x), axis=1)),
]


def _i64(x):
    return x.astype(np.int64)


def _np_shift(a, b, left=True):
    """ATen's shifts: a shift out of [0, bits) gives 0 (left) or the sign fill (right)."""
    a, b = np.broadcast_arrays(a, b)
    bits = a.dtype.itemsize * 8
    out = []
    for u, v in zip(a.ravel().tolist(), b.ravel().tolist(), strict=True):
        if left:
            r = 0 if not 0 <= v < bits else (u << v)
            r = (r + 2 ** (bits - 1)) % 2 ** bits - 2 ** (bits - 1)  # wrap as C does
        else:
            r = u >> (v if 0 <= v < bits - 1 else bits - 1)
        out.append(r)
    return np.array(out, a.dtype).reshape(a.shape)


def _np_setitem_slice(x, v):
    g = x.copy()
    g[0, 1:] = v
    return g


def _np_setitem_index(x, v):
    g = x * 2
    g[[2, 0]] = v
    return g


def _np_scatter_add(x, s):
    out = x.copy()
    idx = np.array([[0, 0], [2, 1]])
    for i in range(2):
        for j in range(2):
            out[i, idx[i, j]] += s[i, j]
    return out


# ==== structural ops (opsb): cumulative scans, scatter, sorting ====================

def _with_zeros(rng, shape):
    # real values with exact zeros at fixed places (one or more per row): cumprod and
    # scatter_reduce('prod') gradients at zeros
    x = rng.standard_normal(shape)
    flat = x.reshape(-1)
    flat[1::3] = 0.0
    return x


DOMAINS["with_zeros"] = _with_zeros


def _np_cum_extreme(x, axis, op):
    """(values, indices) of the running max/min, the later index on ties."""
    x = np.moveaxis(x, axis, -1)
    vals, idx = np.empty_like(x), np.zeros(x.shape, np.int64)
    for pos in np.ndindex(*x.shape[:-1]):
        best, at = None, 0
        for j, v in enumerate(x[pos]):
            if best is None or (v >= best if op == "max" else v <= best):
                best, at = v, j
            vals[pos + (j,)], idx[pos + (j,)] = best, at
    return np.moveaxis(vals, -1, axis), np.moveaxis(idx, -1, axis)


def _np_logcumsumexp(x, axis):
    return np.logaddexp.accumulate(x, axis=axis)


_SC_IDX = [[0, 1, 2, 0], [2, 0, 1, 1]]            # no duplicate targets within a column pair
_SC_DUP = [[0, 0, 2, 2], [0, 0, 2, 2]]            # every target hit twice


def _np_scatter_reduce(x, s, idx, reduce, include_self=True, axis=0):
    out = x.copy()
    idx = np.asarray(idx)
    hits = {}
    for pos in np.ndindex(*idx.shape):
        tgt = list(pos)
        tgt[axis] = idx[pos]
        hits.setdefault(tuple(tgt), []).append(s[pos])
    for tgt, vals in hits.items():
        vals = ([x[tgt]] if include_self or reduce == "none" else []) + vals
        out[tgt] = {"none": lambda v: v[-1], "sum": np.sum, "prod": np.prod, "mean": np.mean,
                    "amax": np.max, "amin": np.min}[reduce](vals)
    return out


def _sr(reduce, include_self=True, idx=_SC_IDX):
    return lambda T, x, s: x.scatter_reduce(0, T.tensor(idx), s, reduce,
                                            include_self=include_self)


def _inplace_on_copy(method, *args, **kwargs):
    def fn(T, x, *more):
        y = x * 1.0
        return getattr(y, method)(*[a(T) if callable(a) else a for a in args], *more, **kwargs)
    return fn


def _eye(T, x):
    return T.eye(x.shape[-1], dtype=x.dtype)


def _wc(T, x):
    return x + 3 * _eye(T, x)


def _np_wc(x):
    return x + 3 * np.eye(x.shape[-1])


def _spd(T, x):
    return x @ x.mT + _eye(T, x)


def _np_spd(x):
    return x @ np.swapaxes(x, -1, -2) + np.eye(x.shape[-1])


def _eigh_signless(T, x):
    w, v = T.linalg.eigh(x)
    return w, v.abs()


def _svd_signless(T, x):
    u, s, vh = T.linalg.svd(x, full_matrices=False)
    return u.abs(), s, vh.abs()


def _svd_full_leading(T, x):
    u, s, vh = T.linalg.svd(x, full_matrices=True)
    k = min(x.shape[-2:])
    return u[..., :k].abs(), s, vh[..., :k, :].abs()


def _diag_mul_(x):
    y = x * 1.0
    y.diagonal(0, -2, -1).mul_(3)
    return y


ROWS += [
    Row("cummax", lambda T, x: T.cummax(x, -1), _s((2, 3), (4,), ()), domain="distinct",
        ref=lambda x: _np_cum_extreme(x, x.ndim - 1, "max") if x.ndim else
        (x, np.zeros((), np.int64))),
    Row("cummax_dim0", lambda T, x: x.cummax(0), _s((3, 2)), domain="distinct",
        ref=lambda x: _np_cum_extreme(x, 0, "max")),
    Row("cummin", lambda T, x: T.cummin(x, -1), _s((2, 4), (5,)), domain="distinct",
        ref=lambda x: _np_cum_extreme(x, x.ndim - 1, "min")),
    Row("cummin_values_0d", lambda T, x: x.cummin(0).values * 2, _s(()),
        ref=lambda x: x * 2),
    Row("cumprod", lambda T, x: T.cumprod(x, 1), _s((2, 4)), ref=lambda x: np.cumprod(x, 1)),
    Row("cumprod_dim0_0d", lambda T, x: x.cumprod(0), _s((4,), ()), ref=lambda x: np.cumprod(
        x.reshape(-1), 0).reshape(x.shape)),
    Row("cumprod_zeros", lambda T, x: T.cumprod(x, -1), _s((2, 5), (7,)), domain="with_zeros",
        ref=lambda x: np.cumprod(x, -1), gradgrad=False),
    Row("cumprod_", _inplace_on_copy("cumprod_", 0), _s((3, 2)), ref=lambda x: np.cumprod(x, 0)),
    Row("cumsum_", _inplace_on_copy("cumsum_", 1), _s((3, 2)), ref=lambda x: np.cumsum(x, 1)),
    Row("logcumsumexp", lambda T, x: T.logcumsumexp(x, 1), _s((2, 4)),
        ref=lambda x: _np_logcumsumexp(x, 1)),
    Row("logcumsumexp_spread", lambda T, x: (x * 30).logcumsumexp(0), _s((5,), (3, 2), ()),
        ref=lambda x: _np_logcumsumexp(np.atleast_1d(x * 30), 0).reshape(x.shape)),
    # scatter: x (3, 4), src (2, 4) or larger (only its index-shaped corner is read)
    Row("scatter", lambda T, x, s: x.scatter(0, T.tensor(_SC_IDX), s), [((3, 4), (2, 4))],
        ref=lambda x, s: _np_scatter_reduce(x, s, _SC_IDX, "none")),
    # a src larger than the index: torch's backward refuses the index-shaped gradient
    # ("returned an invalid gradient"); tracegrad pads it, so only values are compared
    Row("scatter_large_src", lambda T, x, s: x.scatter(0, T.tensor(_SC_IDX), s),
        [((3, 4), (3, 5))], grad=False,
        ref=lambda x, s: _np_scatter_reduce(x, s[:2, :4], _SC_IDX, "none")),
    Row("scatter_value", lambda T, x: T.scatter(x, 1, T.tensor([[3], [0], [1]]), -1.5),
        _s((3, 4)), ref=lambda x: _np_scatter_reduce(x, np.full((3, 1), -1.5),
                                                     [[3], [0], [1]], "none", axis=1)),
    Row("scatter_", _inplace_on_copy("scatter_", 0, lambda T: T.tensor(_SC_IDX)),
        [((3, 4), (2, 4))], ref=lambda x, s: _np_scatter_reduce(x, s, _SC_IDX, "none")),
    Row("scatter_reduce_add_old", lambda T, x, s: x.scatter(0, T.tensor(_SC_DUP), s,
                                                            reduce="add"),
        [((3, 4), (2, 4))], grad=False,
        ref=lambda x, s: _np_scatter_reduce(x, s, _SC_DUP, "sum")),
    Row("scatter_multiply_value_old",
        lambda T, x: x.scatter(1, T.tensor([[0, 0], [2, 1], [3, 3]]), 2.0, reduce="multiply"),
        _s((3, 4)), grad=False,
        ref=lambda x: _np_scatter_reduce(x, np.full((3, 2), 2.0), [[0, 0], [2, 1], [3, 3]],
                                         "prod", axis=1)),
    Row("scatter_add_dup", lambda T, x, s: T.scatter_add(x, 0, T.tensor(_SC_DUP), s),
        [((3, 4), (2, 4))], ref=lambda x, s: _np_scatter_reduce(x, s, _SC_DUP, "sum")),
    Row("scatter_add_large_src", lambda T, x, s: T.scatter_add(x, 0, T.tensor(_SC_DUP), s),
        [((3, 4), (2, 6))], grad=False,
        ref=lambda x, s: _np_scatter_reduce(x, s[:, :4], _SC_DUP, "sum")),
    Row("scatter_add_", _inplace_on_copy("scatter_add_", 0, lambda T: T.tensor(_SC_DUP)),
        [((3, 4), (2, 4))], ref=lambda x, s: _np_scatter_reduce(x, s, _SC_DUP, "sum")),
    Row("scatter_reduce_sum", _sr("sum", idx=_SC_DUP), [((3, 4), (2, 4))],
        ref=lambda x, s: _np_scatter_reduce(x, s, _SC_DUP, "sum")),
    Row("scatter_reduce_sum_exclude", _sr("sum", False, _SC_DUP), [((3, 4), (2, 4))],
        ref=lambda x, s: _np_scatter_reduce(x, s, _SC_DUP, "sum", False)),
    Row("scatter_reduce_prod", _sr("prod", idx=_SC_DUP), [((3, 4), (2, 4))],
        ref=lambda x, s: _np_scatter_reduce(x, s, _SC_DUP, "prod")),
    Row("scatter_reduce_prod_exclude", _sr("prod", False, _SC_DUP), [((3, 4), (2, 4))],
        ref=lambda x, s: _np_scatter_reduce(x, s, _SC_DUP, "prod", False)),
    Row("scatter_reduce_prod_zeros", _sr("prod", idx=_SC_DUP), [((3, 4), (2, 4))],
        domain="with_zeros", ref=lambda x, s: _np_scatter_reduce(x, s, _SC_DUP, "prod"),
        gradgrad=False),
    Row("scatter_reduce_mean", _sr("mean", idx=_SC_DUP), [((3, 4), (2, 4))],
        ref=lambda x, s: _np_scatter_reduce(x, s, _SC_DUP, "mean")),
    Row("scatter_reduce_mean_exclude", _sr("mean", False, _SC_DUP), [((3, 4), (2, 4))],
        ref=lambda x, s: _np_scatter_reduce(x, s, _SC_DUP, "mean", False)),
    Row("scatter_reduce_amax", _sr("amax", idx=_SC_DUP), [((3, 4), (2, 4))], domain="distinct",
        ref=lambda x, s: _np_scatter_reduce(x, s, _SC_DUP, "amax")),
    Row("scatter_reduce_amax_exclude", _sr("amax", False, _SC_DUP), [((3, 4), (2, 4))],
        domain="distinct", ref=lambda x, s: _np_scatter_reduce(x, s, _SC_DUP, "amax", False)),
    Row("scatter_reduce_amin", _sr("amin", idx=_SC_DUP), [((3, 4), (2, 4))], domain="distinct",
        ref=lambda x, s: _np_scatter_reduce(x, s, _SC_DUP, "amin")),
    Row("scatter_reduce_amin_exclude", _sr("amin", False), [((3, 4), (2, 4))],
        domain="distinct", ref=lambda x, s: _np_scatter_reduce(x, s, _SC_IDX, "amin", False)),
    Row("scatter_reduce_", _inplace_on_copy("scatter_reduce_", 1, lambda T: T.tensor(
        [[0, 0], [1, 1], [2, 0]]), reduce="mean"), [((3, 4), (3, 2))],
        ref=lambda x, s: _np_scatter_reduce(x, s, [[0, 0], [1, 1], [2, 0]], "mean", axis=1)),
    Row("gather_small_index", lambda T, x: x.gather(1, T.tensor([[2], [0]])), _s((3, 4)),
        ref=lambda x: np.take_along_axis(x[:2], np.array([[2], [0]]), 1)),
    Row("gather_small_index_dim0", lambda T, x: T.gather(x, 0, T.tensor([[2, 0], [1, 1],
                                                                          [0, 2], [2, 2]])),
        _s((3, 4)), ref=lambda x: np.take_along_axis(x[:, :2], np.array(
            [[2, 0], [1, 1], [0, 2], [2, 2]]), 0)),
    # sorting and order statistics (distinct values: no ties in gradient rows)
    Row("sort", lambda T, x: T.sort(x), _s((2, 4), (5,), ()), domain="distinct",
        ref=lambda x: (np.sort(x, -1), np.argsort(x, -1)) if x.ndim else
        (x, np.zeros((), np.int64))),
    Row("sort_descending_dim0", lambda T, x: x.sort(0, descending=True), _s((4, 3)),
        domain="distinct", ref=lambda x: (-np.sort(-x, 0), np.argsort(-x, 0))),
    Row("argsort", lambda T, x: T.argsort(x, 1, descending=True) * 1.0 + x, _s((3, 4)),
        domain="distinct", ref=lambda x: np.argsort(-x, 1) + x),
    Row("msort", lambda T, x: T.msort(x), _s((4, 2)), domain="distinct",
        ref=lambda x: np.sort(x, 0)),
    Row("sort_stable", lambda T, x: x.sort(dim=-1, descending=True, stable=True), _s((3, 4), ()),
        domain="distinct", ref=lambda x: (-np.sort(-x, 1), np.argsort(-x, 1)) if x.ndim else
        (x, np.zeros((), np.int64))),
    Row("topk_unsorted", lambda T, x: x.topk(4, 1, sorted=False)[0].sort(1)[0], _s((3, 5)),
        domain="distinct", ref=lambda x: np.sort(-np.sort(-x, 1)[:, :4], 1)),
    Row("topk", lambda T, x: T.topk(x, 2), _s((3, 5), (4,)), domain="distinct",
        ref=lambda x: (-np.sort(-x, -1)[..., :2], np.argsort(-x, -1)[..., :2])),
    Row("topk_smallest_dim0", lambda T, x: x.topk(3, 0, largest=False), _s((4, 2)),
        domain="distinct", ref=lambda x: (np.sort(x, 0)[:3], np.argsort(x, 0)[:3])),
    Row("kthvalue", lambda T, x: T.kthvalue(x, 2), _s((3, 4), (5,)), domain="distinct",
        ref=lambda x: (np.sort(x, -1)[..., 1], np.argsort(x, -1)[..., 1])),
    Row("kthvalue_0d", lambda T, x: T.kthvalue(x, 1, 0), _s(()),
        ref=lambda x: (x, np.zeros((), np.int64))),
    Row("kthvalue_keepdim", lambda T, x: x.kthvalue(3, 0, keepdim=True), _s((4, 2)),
        domain="distinct", ref=lambda x: (np.sort(x, 0)[2:3], np.argsort(x, 0)[2:3])),
    Row("median", lambda T, x: T.median(x), _s((3, 4), (5,), ()), domain="distinct",
        ref=lambda x: np.sort(x.reshape(-1))[(x.size - 1) // 2]),
    Row("median_dim", lambda T, x: T.median(x, 1), _s((3, 4), (2, 5)), domain="distinct",
        ref=lambda x: (np.sort(x, 1)[:, (x.shape[1] - 1) // 2],
                       np.argsort(x, 1)[:, (x.shape[1] - 1) // 2])),
    Row("median_dim_keepdim_0d", lambda T, x: x.median(0, keepdim=True), _s((4, 2), ()),
        domain="distinct"),
    Row("nanmedian", lambda T, x: T.nanmedian(x), _s((3, 4)), domain="distinct",
        ref=lambda x: np.sort(x.reshape(-1))[(x.size - 1) // 2]),
    Row("nanmedian_dim", lambda T, x: x.nanmedian(-1), _s((3, 4)), domain="distinct",
        ref=lambda x: (np.sort(x, 1)[:, 1], np.argsort(x, 1)[:, 1])),
    Row("median_ties", lambda T, x: T.median(T.round(x)) * x, _s((3, 4)), domain="nonint"),
    Row("mode", lambda T, x: T.mode(T.round(x * 0.5), 1), _s((3, 5)), domain="nonint",
        grad=False),
    Row("mode_grad", lambda T, x: T.cat([x, x[:, :1]], 1).mode(1), _s((3, 4)),
        domain="distinct"),
    # shape ops
    Row("repeat", lambda T, x: x.repeat(2, 1, 3), _s((2, 3), (3,), ()),
        ref=lambda x: np.tile(x, (2, 1, 3))),
    Row("tile", lambda T, x: T.tile(x, (2,)), _s((2, 3), ()), ref=lambda x: np.tile(x, 2)),
    Row("repeat_interleave", lambda T, x: x.repeat_interleave(2, dim=1), _s((2, 3)),
        ref=lambda x: np.repeat(x, 2, 1)),
    Row("repeat_interleave_flat", lambda T, x: T.repeat_interleave(x, 3), _s((2, 2), ()),
        ref=lambda x: np.repeat(x, 3)),
    Row("repeat_interleave_tensor", lambda T, x: T.repeat_interleave(
        x, T.tensor([1, 0, 2]), dim=-1, output_size=3), _s((2, 3)),
        ref=lambda x: np.repeat(x, [1, 0, 2], -1)),
    Row("roll", lambda T, x: x.roll(1), _s((2, 3), (4,)),
        ref=lambda x: np.roll(x.reshape(-1), 1).reshape(x.shape)),
    Row("roll_dims", lambda T, x: T.roll(x, (1, -2), (0, -1)), _s((3, 4)),
        ref=lambda x: np.roll(x, (1, -2), (0, 1))),
    Row("rot90", lambda T, x: x.rot90(), _s((2, 3)), ref=np.rot90),
    Row("rot90_k", lambda T, x: T.rot90(x, -1, (2, 0)), _s((2, 3, 4)),
        ref=lambda x: np.rot90(x, -1, (2, 0))),
    Row("rot90_2", lambda T, x: T.rot90(x, 2), _s((2, 3)), ref=lambda x: np.rot90(x, 2)),
    Row("meshgrid_ij", lambda T, x, y: T.meshgrid(x, y, indexing="ij"), [((3,), (2,))],
        ref=lambda x, y: tuple(np.meshgrid(x, y, indexing="ij"))),
    Row("meshgrid_xy", lambda T, x, y, z: T.meshgrid(x, y, z, indexing="xy"),
        [((3,), (2,), (4,))], ref=lambda x, y, z: tuple(np.meshgrid(x, y, z, indexing="xy"))),
    Row("cartesian_prod", lambda T, x, y: T.cartesian_prod(x, y), [((3,), (2,))],
        ref=lambda x, y: np.array([[a, b] for a in x for b in y])),
    Row("unfold_windows", lambda T, x: x.unfold(1, 3, 2), _s((2, 7), (2, 6, 2)),
        ref=lambda x: np.moveaxis(np.stack([x[:, i:i + 3] for i in range(0, x.shape[1] - 2,
                                                                         2)], 1), 2, -1)),
    Row("trace", lambda T, x: T.trace(x), _s((3, 3), (2, 4)), ref=lambda x: np.trace(x)),
    Row("ger", lambda T, x, y: T.ger(x, y), [((3,), (2,))], ref=np.outer),
    Row("addmv", lambda T, b, m, v: T.addmv(b, m, v, beta=0.5, alpha=2),
        [((2,), (2, 3), (3,)), ((), (2, 3), (3,))], ref=lambda b, m, v: 0.5 * b + 2 * m @ v),
    Row("baddbmm", lambda T, b, x, y: T.baddbmm(b, x, y, beta=2, alpha=0.5),
        [((2, 2, 4), (2, 2, 3), (2, 3, 4)), ((4,), (2, 2, 3), (2, 3, 4))],
        ref=lambda b, x, y: 2 * b + 0.5 * x @ y),
    Row("addbmm", lambda T, b, x, y: T.addbmm(b, x, y, alpha=2), [((2, 4), (3, 2, 3), (3, 3, 4))],
        ref=lambda b, x, y: b + 2 * (x @ y).sum(0)),
    Row("addmm_beta_alpha", lambda T, b, x, y: T.addmm(b, x, y, beta=0.5, alpha=-2),
        [((2, 4), (2, 3), (3, 4)), ((4,), (2, 3), (3, 4))],
        ref=lambda b, x, y: 0.5 * b - 2 * x @ y),
    Row("cross", lambda T, x, y: T.cross(x, y, dim=1), [((2, 3), (2, 3)), ((3, 3, 2), (1, 3, 2))],
        ref=lambda x, y: np.cross(x, y, axis=1)),
    Row("linalg_cross", lambda T, x, y: T.linalg.cross(x, y), [((2, 3), (1, 3))], ref=np.cross),
    Row("std_mean", lambda T, x: T.std_mean(x, 1), _s((2, 3)),
        ref=lambda x: (x.std(1, ddof=1), x.mean(1))),
    Row("var_mean", lambda T, x: T.var_mean(x, correction=0), _s((2, 3), (4,)),
        ref=lambda x: (x.var(), x.mean())),
    Row("lerp", lambda T, x, y: T.lerp(x, y, 0.3), [((2, 3), (2, 3)), ((2, 3), (3,))],
        ref=lambda x, y: x + 0.3 * (y - x)),
    Row("lerp_tensor_weight", lambda T, x, y, w: x.lerp(y, w), [((2, 3), (2, 3), (3,))],
        ref=lambda x, y, w: x + w * (y - x)),
    Row("where_two_scalars", lambda T, x: T.where(x > 0, 1.5, -2.0) * x, _s((2, 3), ()),
        domain="nonzero", ref=lambda x: np.where(x > 0, 1.5, -2.0) * x),
    Row("isclose", lambda T, x, y: T.isclose(x, x + y * 1e-6, rtol=1e-6, atol=1e-7),
        BINARY_SHAPES[:3], grad=False,
        ref=lambda x, y: np.isclose(x, x + y * 1e-6, rtol=1e-6, atol=1e-7)),
    Row("allclose_as_values", lambda T, x: x * 1.0 if T.allclose(x, x + 1e-9) else -x,
        _s((2, 3)), ref=lambda x: x),
    Row("diag_embed_vector", lambda T, x: T.diag(x, 1), _s((3,)), ref=lambda x: np.diag(x, 1)),
    Row("diag_of_matrix", lambda T, x: T.diag(x, -1), _s((3, 4)), ref=lambda x: np.diag(x, -1)),
    Row("diagonal", lambda T, x: x.diagonal(), _s((3, 3), (2, 4)), ref=np.diagonal),
    Row("diagonal_batched", lambda T, x: T.diagonal(x, 1, -1, 0), _s((3, 2, 4)),
        ref=lambda x: np.diagonal(x, 1, 2, 0)),
    Row("diagonal_inplace", lambda T, x: _diag_mul_(x), _s((3, 3), (2, 3, 3)),
        ref=lambda x: x * (1 + 2 * np.eye(3))),
    Row("diag_embed", lambda T, x: T.diag_embed(x, -1, 0, 2), _s((2, 3)),
        ref=lambda x: np.stack([np.diag(r, -1) for r in x], 1)),

    # einsum: each path (diagonal, implicit output, ellipsis, batched contraction, outer)
    Row("einsum_matmul", lambda T, a, b: T.einsum("ij,jk->ik", a, b), [((2, 3), (3, 4))],
        ref=lambda a, b: np.einsum("ij,jk->ik", a, b)),
    Row("einsum_batched", lambda T, a, b: T.einsum("bij,bjk->bik", a, b),
        [((2, 2, 3), (2, 3, 4))], ref=lambda a, b: np.einsum("bij,bjk->bik", a, b)),
    Row("einsum_diagonal", lambda T, a: T.einsum("ii->i", a), _s((3, 3)),
        ref=lambda a: np.einsum("ii->i", a)),
    Row("einsum_trace", lambda T, a: T.einsum("ii", a), _s((3, 3)), ref=np.trace),
    Row("einsum_ellipsis", lambda T, a, b: T.einsum("...j,j->...", a, b), [((2, 4, 3), (3,))],
        ref=lambda a, b: np.einsum("...j,j->...", a, b)),
    Row("einsum_outer", lambda T, a, b: T.einsum("i,j->ij", a, b), [((2,), (3,))], ref=np.outer),
    Row("einsum_three", lambda T, a, b, c: T.einsum("bn,anm,bm->ba", a, b, c),
        [((2, 3), (4, 3, 5), (2, 5))], ref=lambda a, b, c: np.einsum("bn,anm,bm->ba", a, b, c)),
    Row("einsum_implicit", lambda T, a, b: T.einsum("ij,jk", a, b), [((2, 3), (3, 4))],
        ref=lambda a, b: a @ b),
    Row("einsum_batch_diag", lambda T, a: T.einsum("...ii->...i", a), _s((2, 3, 3)),
        ref=lambda a: np.einsum("...ii->...i", a)),
    Row("einsum_full_contraction", lambda T, a, b: T.einsum("ijk,kji->", a, b),
        [((2, 3, 4), (4, 3, 2))], ref=lambda a, b: np.einsum("ijk,kji->", a, b)),
    Row("cdist", lambda T, a, b: T.cdist(a, b), [((3, 2), (4, 2)), ((2, 3, 2), (2, 4, 2))],
        ref=lambda a, b: np.sqrt(((a[..., :, None, :] - b[..., None, :, :]) ** 2).sum(-1))),
    Row("cdist_p1", lambda T, a, b: T.cdist(a, b, p=1), [((3, 2), (4, 2))], domain="distinct",
        ref=lambda a, b: np.abs(a[:, None] - b[None]).sum(-1)),
    Row("cdist_p3", lambda T, a, b: T.cdist(a, b, p=3.0), [((3, 2), (4, 2))],
        ref=lambda a, b: (np.abs(a[:, None] - b[None]) ** 3).sum(-1) ** (1 / 3)),
    Row("normalize", lambda T, x: _F(T).normalize(x), _s((2, 3), (2, 3, 2)),
        ref=lambda x: x / np.sqrt((x ** 2).sum(1, keepdims=True))),
    Row("normalize_p1_dim0", lambda T, x: _F(T).normalize(x, 1.0, 0), _s((3, 2)),
        domain="nonzero", ref=lambda x: x / np.abs(x).sum(0, keepdims=True)),
    Row("one_hot", lambda T, x: _F(T).one_hot(T.tensor([[0, 3], [1, 1]]), 5) * x, _s((5,)),
        ref=lambda x: np.eye(5)[[[0, 3], [1, 1]]] * x),
    Row("unfold_im2col", lambda T, x: _F(T).unfold(x, (2, 3), dilation=(2, 1), padding=1,
                                                   stride=(1, 2)), _s((2, 2, 5, 4), (2, 4, 5))),
    Row("fold_col2im", lambda T, x: _F(T).fold(x, (4, 5), 2, stride=(2, 1), padding=(0, 1)),
        _s((2, 8, 12), (8, 12))),
    Row("unfold_fold_module", lambda T, x: T.nn.Fold((4, 4), 2, stride=2)(T.nn.Unfold(2)(x)),
        _s((1, 2, 3, 3))),
    Row("conv_transpose2d", lambda T, x, w, b: _F(T).conv_transpose2d(
        x, w, b, stride=2, padding=1, output_padding=1, groups=2, dilation=(1, 2)),
        [((2, 4, 3, 4), (4, 3, 3, 2), (6,))]),
    Row("conv_transpose1d", lambda T, x, w: T.conv_transpose1d(x, w, stride=3, padding=2),
        [((2, 3, 5), (3, 2, 3)), ((3, 5), (3, 2, 3))]),
    Row("conv_transpose3d", lambda T, x, w, b: _F(T).conv_transpose3d(x, w, b, stride=(2, 1, 2)),
        [((1, 2, 3, 3, 2), (2, 2, 2, 2, 2), (2,))]),
    # torch.linalg (well-conditioned inputs: x + 3 I; symmetric ones x + x^T; sign-free
    # views of eigenvectors and singular vectors, whose signs LAPACK builds may choose)
    Row("linalg_inv", lambda T, x: T.linalg.inv(_wc(T, x)), _s((3, 3), (2, 2, 2)),
        ref=lambda x: np.linalg.inv(_np_wc(x)), f32_tol=1e-4),
    Row("linalg_det", lambda T, x: T.linalg.det(_wc(T, x)), _s((3, 3), (2, 2, 2)),
        ref=lambda x: np.linalg.det(_np_wc(x)), f32_tol=1e-4),
    Row("linalg_slogdet", lambda T, x: T.linalg.slogdet(_wc(T, x) - 6 * _eye(T, x)),
        _s((3, 3)), ref=lambda x: np.linalg.slogdet(_np_wc(x) - 6 * np.eye(3)), f32_tol=1e-4),
    Row("logdet", lambda T, x: T.logdet(_spd(T, x)), _s((3, 3)),
        ref=lambda x: np.linalg.slogdet(_np_spd(x))[1], f32_tol=1e-4),
    Row("linalg_solve", lambda T, a, b: T.linalg.solve(_wc(T, a), b),
        [((3, 3), (3, 2)), ((2, 3, 3), (3, 2)), ((3, 3), (3,))],
        ref=lambda a, b: np.linalg.solve(_np_wc(a), b), f32_tol=1e-4),
    Row("linalg_cholesky", lambda T, x: T.linalg.cholesky(_spd(T, x)), _s((3, 3), (2, 2, 2)),
        ref=lambda x: np.linalg.cholesky(_np_spd(x)), f32_tol=1e-4),
    Row("linalg_cholesky_upper", lambda T, x: T.linalg.cholesky(_spd(T, x), upper=True),
        _s((3, 3)), ref=lambda x: np.linalg.cholesky(_np_spd(x)).T, f32_tol=1e-4),
    Row("linalg_qr", lambda T, x: tuple(t.abs() for t in T.linalg.qr(x)), _s((4, 3), (3, 3)),
        ref=lambda x: tuple(np.abs(t) for t in np.linalg.qr(x)), f32_tol=1e-4),
    Row("linalg_eigh", lambda T, x: _eigh_signless(T, x + x.mT), _s((3, 3), (2, 3, 3)),
        ref=lambda x: (np.linalg.eigh(x + np.swapaxes(x, -1, -2))[0],
                       np.abs(np.linalg.eigh(x + np.swapaxes(x, -1, -2))[1])), f32_tol=1e-4),
    Row("linalg_eigvalsh", lambda T, x: T.linalg.eigvalsh(x + x.mT), _s((4, 4)),
        ref=lambda x: np.linalg.eigvalsh(x + x.T), f32_tol=1e-4),
    Row("linalg_svd", lambda T, x: _svd_signless(T, x), _s((4, 3), (3, 4), (2, 3, 3)),
        ref=lambda x: tuple(np.abs(t) if t.ndim == x.ndim else t for t in
                            np.linalg.svd(x, full_matrices=False)), f32_tol=1e-4),
    Row("linalg_svdvals", lambda T, x: T.linalg.svdvals(x), _s((4, 3), (2, 2, 3)),
        ref=lambda x: np.linalg.svd(x, compute_uv=False), f32_tol=1e-4),
    Row("linalg_pinv", lambda T, x: T.linalg.pinv(x), _s((4, 3), (2, 3)),
        ref=np.linalg.pinv, f32_tol=1e-4),
    Row("linalg_lstsq", lambda T, a, b: T.linalg.lstsq(a, b).solution, [((4, 3), (4, 2))],
        ref=lambda a, b: np.linalg.lstsq(a, b, rcond=None)[0], f32_tol=1e-4),
    Row("linalg_vector_norm", lambda T, x: T.linalg.vector_norm(x, 3, dim=(0, -1)),
        _s((2, 3, 2)), ref=lambda x: (np.abs(x) ** 3).sum((0, 2)) ** (1 / 3)),
    Row("linalg_vector_norm_inf", lambda T, x: T.linalg.vector_norm(x, -math.inf, dim=1,
                                                                    keepdim=True),
        _s((2, 3)), domain="distinct", ref=lambda x: np.abs(x).min(1, keepdims=True)),
    Row("linalg_vector_norm_0", lambda T, x: T.linalg.vector_norm(x, 0) + x.sum(), _s((2, 3)),
        domain="nonzero", ref=lambda x: 6.0 + x.sum()),
    Row("linalg_matrix_norm_fro", lambda T, x: T.linalg.matrix_norm(x), _s((3, 4), (2, 2, 3)),
        ref=lambda x: np.sqrt((x ** 2).sum((-2, -1)))),
    Row("linalg_matrix_norm_nuc", lambda T, x: T.linalg.matrix_norm(x, "nuc"), _s((3, 4)),
        ref=lambda x: np.linalg.norm(x, "nuc"), f32_tol=1e-4),
    Row("linalg_matrix_norm_2", lambda T, x: T.linalg.norm(x, 2), _s((3, 4)),
        ref=lambda x: np.linalg.norm(x, 2), f32_tol=1e-4),
    Row("linalg_matrix_norm_m2", lambda T, x: T.linalg.matrix_norm(x, -2), _s((3, 4)),
        ref=lambda x: np.linalg.norm(x, -2), f32_tol=1e-4),
    Row("linalg_matrix_norm_inf", lambda T, x: T.linalg.matrix_norm(x, math.inf), _s((3, 4)),
        domain="distinct", ref=lambda x: np.linalg.norm(x, np.inf)),
    Row("linalg_matrix_norm_m1_keepdim", lambda T, x: T.linalg.matrix_norm(
        x, -1, dim=(0, 2), keepdim=True), _s((3, 2, 4)), domain="distinct",
        ref=lambda x: np.abs(x).sum(0, keepdims=True).min(2, keepdims=True)),
    Row("linalg_norm_vector", lambda T, x: T.linalg.norm(x, 1), _s((4,)), domain="nonzero",
        ref=lambda x: np.abs(x).sum()),
    Row("movedim", lambda T, x: T.movedim(x, (0, 1), (2, 0)), _s((2, 3, 4)),
        ref=lambda x: np.moveaxis(x, (0, 1), (2, 0))),
    # interpolate: every mode, by size and by scale factor, with and without align_corners
    Row("interpolate_nearest", lambda T, x: _F(T).interpolate(x, scale_factor=1.7),
        _s((1, 2, 5), (1, 2, 3, 4))),
    Row("interpolate_nearest_exact", lambda T, x: _F(T).interpolate(x, (3, 7),
                                                                    mode="nearest-exact"),
        _s((1, 2, 4, 5))),
    Row("interpolate_nearest_3d", lambda T, x: _F(T).interpolate(x, 5), _s((1, 1, 3, 4, 2))),
    Row("interpolate_linear", lambda T, x: _F(T).interpolate(x, 8, mode="linear"),
        _s((2, 2, 5))),
    Row("interpolate_linear_align", lambda T, x: _F(T).interpolate(
        x, scale_factor=0.6, mode="linear", align_corners=True), _s((1, 2, 5))),
    Row("interpolate_bilinear", lambda T, x: _F(T).interpolate(
        x, scale_factor=(1.5, 0.75), mode="bilinear"), _s((1, 2, 4, 5))),
    Row("interpolate_bilinear_recompute", lambda T, x: _F(T).interpolate(
        x, scale_factor=1.7, mode="bilinear", recompute_scale_factor=True), _s((1, 1, 3, 4))),
    Row("interpolate_bicubic", lambda T, x: _F(T).interpolate(x, (6, 3), mode="bicubic"),
        _s((1, 2, 4, 5))),
    Row("interpolate_bicubic_align", lambda T, x: _F(T).interpolate(
        x, scale_factor=2, mode="bicubic", align_corners=True), _s((1, 1, 3, 3))),
    Row("interpolate_trilinear", lambda T, x: _F(T).interpolate(x, (4, 3, 5), mode="trilinear"),
        _s((1, 1, 3, 4, 2))),
    Row("upsampling_bilinear2d", lambda T, x: T.nn.UpsamplingBilinear2d(scale_factor=2)(x),
        _s((1, 2, 3, 3))),
    # (non-overlapping windows: with overlaps PyTorch's backward, a gather, counts a value
    # once per window that picked it, which is not the derivative gradcheck measures)
    Row("max_unpool2d", lambda T, x: _F(T).max_unpool2d(*_F(T).max_pool2d(
        x, 2, return_indices=True), 2, output_size=(5, 5)), _s((1, 2, 4, 5)), domain="distinct"),
    Row("max_unpool1d", lambda T, x: _F(T).max_unpool1d(*_F(T).max_pool1d(
        x, 2, return_indices=True), 2, output_size=(7,)), _s((2, 2, 6)), domain="distinct"),
    Row("max_unpool3d_module", lambda T, x: T.nn.MaxUnpool3d(2)(*T.nn.MaxPool3d(
        2, return_indices=True)(x)), _s((1, 1, 2, 4, 4)), domain="distinct"),
    Row("view_dtype", lambda T, x: (x.float().view(T.int32) // 65536).long(), _s((2, 3)),
        grad=False,
        ref=lambda x: x.astype(np.float32).view(np.int32) // 65536),
    Row("view_dtype_wider", lambda T, x: x.float().view(T.float64) * 0 + x.sum(), _s((2, 4)),
        fd_eps=1e-3, fd_tol=1e-3, rtol=1e-6),
    Row("embedding_bag_mean", lambda T, w: _F(T).embedding_bag(
        T.tensor([0, 1, 2, 1, 4, 3, 3]), w, T.tensor([0, 2, 2, 5])), _s((5, 4))),
    Row("embedding_bag_sum_2d_padding", lambda T, w: _F(T).embedding_bag(
        T.tensor([[0, 1, 2], [1, 4, 4]]), w, mode="sum", padding_idx=4), _s((5, 3))),
    Row("embedding_bag_max_last_offset", lambda T, w: _F(T).embedding_bag(
        T.tensor([0, 1, 2, 1, 4, 3, 3]), w, T.tensor([0, 2, 5, 6]), mode="max",
        include_last_offset=True), _s((5, 4)), domain="distinct"),
    Row("embedding_bag_per_sample_weights", lambda T, w, p: T.nn.functional.embedding_bag(
        T.tensor([0, 1, 2, 1]), w, T.tensor([0, 1]), mode="sum", per_sample_weights=p),
        [((3, 2), (4,))]),
    # full_matrices: the completing columns are no function of A (LAPACK picks them), so
    # values are compared, and gradients through the first min(m, n) columns only
    Row("linalg_svd_full", lambda T, x: tuple(t.abs() for t in T.linalg.svd(x)[::2]),
        _s((4, 3), (2, 4)), ref=lambda x: tuple(np.abs(t) for t in np.linalg.svd(x)[::2]),
        f32_tol=1e-4, grad=False),
    Row("linalg_svd_full_grad", lambda T, x: _svd_full_leading(T, x), _s((4, 3), (2, 4)),
        f32_tol=1e-4),
    Row("torch_svd", lambda T, x: tuple(t.abs() for t in T.svd(x)), _s((4, 3)),
        ref=lambda x: (np.abs(np.linalg.svd(x, False)[0]), np.linalg.svd(x, False)[1],
                       np.abs(np.linalg.svd(x, False)[2].T)), f32_tol=1e-4),
    Row("norm_nuc", lambda T, x: T.norm(x, "nuc"), _s((3, 4)),
        ref=lambda x: np.linalg.norm(x, "nuc"), f32_tol=1e-4),
]

# ==== end of structural ops (opsb) ====


# ==== issue 12 follow-up (opsfix): unfold as a view, antialiased/area interpolate ====
ROWS += [
    Row("unfold_overlapping", lambda T, x: x.unfold(0, 3, 1), _s((5,), (4, 2))),
    Row("unfold_gapped_neg_dim", lambda T, x: x.unfold(-1, 2, 3), _s((3, 8), (2, 2, 7))),
    Row("unfold_of_a_transpose", lambda T, x: x.t().unfold(1, 2, 2) * 2, _s((4, 3))),
    Row("unfold_whole_dim", lambda T, x: x.unfold(1, 4, 1), _s((2, 4))),
    Row("interpolate_area", lambda T, x: _F(T).interpolate(x, size=(2, 3), mode="area"),
        _s((1, 2, 5, 7))),
    Row("interpolate_bilinear_antialias",
        lambda T, x: _F(T).interpolate(x, size=(3, 2), mode="bilinear", antialias=True),
        _s((1, 2, 7, 5))),
    Row("interpolate_bicubic_antialias_align",
        lambda T, x: _F(T).interpolate(x, scale_factor=0.5, mode="bicubic", antialias=True,
                                       align_corners=True), _s((2, 1, 6, 8))),
    Row("linalg_qr_wide", lambda T, x: tuple(t.abs() for t in T.linalg.qr(x)),
        _s((3, 5), (2, 2, 4)), ref=lambda x: tuple(np.abs(t) for t in np.linalg.qr(x)),
        f32_tol=1e-4),
    Row("linalg_qr_complete", lambda T, x: tuple(t.abs() for t in T.linalg.qr(x, "complete")),
        _s((3, 3), (2, 4)), ref=lambda x: tuple(np.abs(t) for t in np.linalg.qr(x, "complete")),
        f32_tol=1e-4),
    # unique of an input that requires grad records torch's node (no derivative)
    Row("unique_of_a_grad_input", lambda T, x: T.unique(x.detach().requires_grad_()).detach(),
        _s((5,), (2, 3)), grad=False, ref=lambda x: np.unique(x)),
    Row("linalg_qr_r_only", lambda T, x: T.linalg.qr(x, mode="r")[1].abs(), _s((4, 3), (2, 3)),
        grad=False, ref=lambda x: np.abs(np.linalg.qr(x, mode="r")), f32_tol=1e-4),
]
# ==== end of opsfix ====


# ==== perf (issue 14): fused primitives (NOTE: [Fused GELU backward] & co.) ====
def _gelu_backward(T, g, x):
    if T.__name__ == "tracegrad":
        return T.functions._gelu_backward(g, x)
    return T.ops.aten.gelu_backward(g, x)


def _np_gelu_backward(g, x):
    return g * (0.5 * (1 + special.erf(x / math.sqrt(2)))
                + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi))


def _np_layer_norm(x, k=1, w=None, b=None):
    axes = tuple(range(x.ndim - k, x.ndim))
    y = (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + 1e-5)
    return y if w is None else y * w + b


ROWS += [
    Row("gelu_backward", _gelu_backward, [((2, 3), (2, 3)), ((), ()), ((4,), (4,))],
        ref=_np_gelu_backward),
    Row("layer_norm_last", lambda T, x: _F(T).layer_norm(x, x.shape[-1:]),
        _s((2, 5), (4,), (2, 3, 4)), ref=_np_layer_norm),
    Row("layer_norm_last_two", lambda T, x: _F(T).layer_norm(x, x.shape[-2:]),
        _s((2, 3, 4), (3, 4)), ref=lambda x: _np_layer_norm(x, 2)),
    Row("layer_norm_affine", lambda T, x, w, b: _F(T).layer_norm(x, (4,), w, b),
        [((3, 4), (4,), (4,)), ((2, 2, 4), (4,), (4,))], ref=lambda x, w, b:
        _np_layer_norm(x, 1, w, b)),
]
# ==== end of perf ====


ROWS_BY_NAME = {r.name: r for r in ROWS}
assert len(ROWS_BY_NAME) == len(ROWS), "duplicate row names"


def samples():
    """(row, shapes) pairs, with ids, for pytest.mark.parametrize."""
    out = []
    for r in ROWS:
        for shapes in r.shapes:
            out.append((r, shapes))
    return out


def sample_id(pair):
    r, shapes = pair
    return f"{r.name}-" + ",".join("x".join(map(str, s)) or "0d" for s in shapes)


# ----------------------------------------------------------------------------
# running a row on a module (tracegrad or torch)


def as_outputs(out) -> list:
    """A row's result as a flat list of tensors."""
    return list(out) if isinstance(out, tuple) else [out]


def make_tensors(T, arrays, dtype, row):
    """Module tensors for ``arrays``; the row's grad inputs require grad."""
    want = row.grad_inputs if row.grad_inputs is not None else range(len(arrays))
    return [T.tensor(a, dtype=dtype, requires_grad=row.grad and i in want)
            for i, a in enumerate(arrays)]


def cotangents(outs, seed=1):
    """One random float64 array per float output (its gradient seed)."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(tuple(o.shape)) for o in outs]


def grad_outputs(outs):
    """The outputs a gradient flows from: floating point and requiring grad."""
    return [o for o in outs if o.dtype.is_floating_point and o.requires_grad]


# ==== attention (issue 13): F.scaled_dot_product_attention, one primitive ====
_ATTN_BOOL = np.array([[1, 0, 1, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 0, 1], [0, 1, 0, 0, 1]],
                      dtype=bool)  # row 1 attends to nothing: zeros, as torch's safe softmax


def _sdpa(T, q, k, v, **kw):
    return _F(T).scaled_dot_product_attention(q, k, v, **kw)


ROWS += [
    Row("sdpa", _sdpa, [((2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 6)),
                        ((3, 4, 8), (3, 5, 8), (3, 5, 8)), ((4, 8), (5, 8), (5, 8))]),
    Row("sdpa_causal_scale", lambda T, q, k, v: _sdpa(T, q, k, v, is_causal=True, scale=0.3),
        [((2, 2, 5, 4), (2, 2, 3, 4), (2, 2, 3, 4)), ((5, 4), (5, 4), (5, 3))]),
    Row("sdpa_bool_mask", lambda T, q, k, v: _sdpa(T, q, k, v, attn_mask=T.tensor(_ATTN_BOOL)),
        [((2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 8)), ((4, 8), (5, 8), (5, 8))]),
    Row("sdpa_float_mask", lambda T, q, k, v, m: _sdpa(T, q, k, v, attn_mask=m),
        [((2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 8), (4, 5)),
         ((2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 8), (3, 1, 5))]),
    Row("sdpa_broadcast_batch", _sdpa, [((2, 3, 4, 8), (1, 3, 5, 8), (2, 1, 5, 8))]),
    Row("sdpa_gqa", lambda T, q, k, v: _sdpa(T, q, k, v, enable_gqa=True, is_causal=True),
        [((2, 4, 4, 8), (2, 2, 4, 8), (2, 2, 4, 8)), ((2, 4, 3, 8), (2, 2, 5, 8), (2, 1, 5, 6))],
        domain=("real", "real", "pos")),  # (positive values: no float32 cancellation)
]
# ==== end of attention ====
