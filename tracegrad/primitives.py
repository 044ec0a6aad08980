"""The op table: every primitive of tracegrad, declared once.

Each primitive carries, side by side:

* ``impl``   its NumPy implementation, ``impl(*arrays, **params) -> array``;
* ``shape``  its shape/dtype rule, ``shape(*avals, **params) -> (shape, dtype)``,
  where an aval is anything with ``.shape`` and ``.dtype`` (a Tensor, an IR Var);
* ``vjp``    its reverse-mode rule, one function per input,
  ``rule(g, out, *inputs, **params) -> gradient``, written with tracegrad's own
  ops so the same rule serves the eager tape, ``create_graph`` higher-order
  gradients and the graph-level autodiff pass (where it emits IR);
* ``jvp``    its forward-mode rule, one per input, ``rule(t, out, *inputs, **params)``
  giving that input's tangent contribution (the caller sums them and broadcasts to
  the output); a variadic primitive's is one rule over the tuple of tangents.
  Without one, forward mode derives the JVP from the VJP rules (exact, slower:
  see NOTE: [Derived JVP] in autograd/forward_ad.py). An elementwise op's Jacobian
  is diagonal, so its VJP rule applied to a tangent *is* its JVP rule;
* ``kind``   what it is (one of ``KINDS``: elementwise, reduction, matmul, layout, ...),
  read by fusion and the inspector;
* ``jax``    its lowering, a format string over the argument names and params
  (``"jnp.exp({0})"``) or a function returning such source text.

Rules may return a gradient in the broadcast shape of the output; the caller sums
it back to the input's shape (``sum_to``). Composite ops live in ``functions.py``
as plain functions over these primitives.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import special as _special

from . import _quiet, dtypes

PRIMITIVES: dict[str, Primitive] = {}

# What a primitive is, for the passes and the inspector that ask: fusion merges
# "elementwise" chains; the viewer colours by kind. "control" is the IR-only
# structure (fused regions, gradient requests, sub-graphs).
KINDS = frozenset({
    "elementwise",    # out[i] = f(in[i], ...), broadcasting allowed
    "reduction",      # reduces over axes (sum, amax, argmax, var, norm, logsumexp)
    "scan",           # cumulative along an axis (cumsum)
    "normalization",  # softmax-like: reduce and broadcast back in one op
    "loss",           # fused loss kernels (BCE with logits)
    "matmul",         # contractions
    "conv",           # convolutions
    "pool",           # windowed reductions (max-pool indices)
    "layout",         # reshape, permute, broadcast, flip, cat: moves data, no arithmetic
    "index",          # getitem, gather, scatter, index_put
    "creation",       # constants and fills
    "random",         # draws from a key
    "control",        # IR-only: fusion regions, grad requests, sub-graphs
})


class Primitive:
    """One row of the op table. See the module docstring for the fields."""

    __slots__ = ("name", "impl", "shape", "vjp", "vjp_all", "jvp", "jax", "grad_name",
                 "save", "save_out", "differentiable", "variadic", "kind", "_rec", "raw_impl",
                 "__weakref__")

    def __init__(self, name, impl, shape, jax, *, kind, vjp=None, vjp_all=None, jvp=None,
                 grad_name=None, save=(), save_out=False, differentiable=True, variadic=False):
        if name in PRIMITIVES:
            raise ValueError(f"primitive {name!r} declared twice")
        if kind not in KINDS:
            raise ValueError(f"primitive {name!r}: kind {kind!r} is not one of {sorted(KINDS)}")
        self.name = name
        self.impl = impl
        self.shape = shape
        self.jax = jax
        self.vjp = vjp              # tuple: one rule per input (None: no gradient)
        self.vjp_all = vjp_all      # or one rule returning a tuple (variadic prims)
        self.jvp = jvp              # forward rules (None: derived from the VJP)
        # grad_fn class name as PyTorch shows it; a str, or fn(params, *avals) -> str
        self.grad_name = grad_name or (name.title().replace("_", "") + "Backward0")
        # inputs the rules read: indices, or {input: indices its rule reads}
        self.save = save
        self.save_out = save_out    # the rules read the output value
        self.differentiable = differentiable
        self.variadic = variadic
        self.kind = kind            # one of KINDS: read by fusion and the inspector
        self._rec = None            # autograd.graph's per-primitive recording cache
        self.raw_impl = None        # the unwrapped kernel of a quiet one (NOTE: [Quiet ...])
        PRIMITIVES[name] = self

    def __repr__(self):
        return self.name

    def node_name(self, params, args) -> str:
        n = self.grad_name
        return n if n.__class__ is str else n(params, *args)


# ----------------------------------------------------------------------------
# shape rules

class ShapeError(RuntimeError):
    pass


def broadcast_shapes(*shapes) -> tuple:
    """NumPy/PyTorch broadcasting, with PyTorch's error message."""
    ndim = max(len(s) for s in shapes)
    out = [1] * ndim
    for k, s in enumerate(shapes):
        off = ndim - len(s)
        for i in reversed(range(len(s))):  # from the last dim, as PyTorch's infer_size
            d = s[i]
            o = out[off + i]
            if o == 1:
                out[off + i] = d
            elif d != 1 and d != o:
                a = "ab"[k] if k < 2 else f"#{k}"
                raise ShapeError(
                    f"The size of tensor a ({o}) must match the size of tensor {a} ({d}) "
                    f"at non-singleton dimension {off + i}")
    return tuple(out)


def _same(x, **_):
    return x.shape, x.dtype


def _binary(x, y, **_):
    if x.dtype is not y.dtype:
        raise ShapeError(f"binary op on mixed dtypes {x.dtype} and {y.dtype}; promote first")
    return broadcast_shapes(x.shape, y.shape), x.dtype


def _compare(x, y, **_):
    return broadcast_shapes(x.shape, y.shape), dtypes.bool_


def _reduced_shape(shape, axis, keepdim):
    if keepdim:
        return tuple(1 if i in axis else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axis)


def _reduce(x, *, axis, keepdim, **_):
    return _reduced_shape(x.shape, axis, keepdim), x.dtype


def _reduce_index(x, *, axis, keepdim):
    return _reduced_shape(x.shape, axis, keepdim), dtypes.int64


def _kept(shape, axis):
    """The shape a reduction has with keepdim=True."""
    return tuple(1 if i in axis else d for i, d in enumerate(shape))


# ----------------------------------------------------------------------------
# helpers the rules use; ``T`` is tracegrad.functions, bound at the end of this
# file (functions.py imports this module, and rules only run after both loaded)


def _bcast_back(g, x, axis, keepdim):
    """Undo a reduction's shape change: reshape g to keepdim form, expand to x."""
    if not keepdim and g.ndim:  # a 0-d g broadcasts to any shape as it is
        g = T.reshape(g, _kept(x.shape, axis))
    return T.broadcast_to(g, x.shape)


def _zero(g, out, *xs, **_):
    return T.zeros_like(g)


def _jnp(fn):
    return f"jnp.{fn}({{0}})"


# ----------------------------------------------------------------------------
# elementwise, one input

def _unary(name, impl, jax, vjp, *, save=(0,), save_out=False, grad_name=None):
    # elementwise: the Jacobian is diagonal, so the VJP rule is also the JVP rule
    return Primitive(name, impl, _same, jax, vjp=(vjp,), jvp=(vjp,), save=save, kind="elementwise",
                     save_out=save_out, grad_name=grad_name)


def _sigmoid_impl(x):
    return _special.expit(x).astype(x.dtype, copy=False)


_SQRT_HALF = math.sqrt(0.5)  # M_SQRT1_2


def _gelu_impl(x, *, approximate):
    if approximate == "tanh":
        c = np.asarray(math.sqrt(2.0 / math.pi), x.dtype)
        return (0.5 * x * (1.0 + np.tanh(c * (x + 0.044715 * x ** 3)))).astype(x.dtype)
    if x.dtype.kind != "f":
        return (0.5 * x * (1.0 + _special.erf(x * _SQRT_HALF))).astype(x.dtype)
    if x.dtype.itemsize < 4:  # half: in float32, as torch's opmath does
        return _gelu_impl(x.astype(np.float32), approximate=approximate).astype(x.dtype)
    # torch: x * 0.5 * (1 + erf(x * M_SQRT1_2)), all in x's dtype (a float64 scalar such as
    # np.sqrt(2.0) would promote a float32 array to float64 under NumPy 2's rules)
    e = np.multiply(x, np.asarray(_SQRT_HALF, x.dtype), out=np.empty_like(x))  # 0-d too
    _gelu_erf_(e)
    e += 1
    e *= x
    e *= 0.5
    return e


def _gelu_erf_(z):
    # (defined with the fused GELU backward, NOTE: [Float32 erf for GELU])
    return _erf_float32_(z) if z.dtype == np.float32 else _special.erf(z, out=z)


def _gelu_vjp(g, out, x, *, approximate):
    if approximate == "tanh":
        c = math.sqrt(2.0 / math.pi)
        inner = c * (x + 0.044715 * x * x * x)
        t = T.tanh(inner)
        dinner = c * (1.0 + 3 * 0.044715 * x * x)
        return g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dinner)
    return T._gelu_backward(g, x)  # NOTE: [Fused GELU backward]


neg_p = _unary("neg", np.negative, "-{0}", lambda g, out, x: -g, save=())
exp_p = _unary("exp", np.exp, _jnp("exp"), lambda g, out, x: g * out, save=(), save_out=True)
log_p = _unary("log", np.log, _jnp("log"), lambda g, out, x: g / x)
expm1_p = _unary("expm1", np.expm1, _jnp("expm1"), lambda g, out, x: g * (out + 1),
                 save=(), save_out=True)
log1p_p = _unary("log1p", np.log1p, _jnp("log1p"), lambda g, out, x: g / (x + 1),
                 grad_name="Log1PBackward0")
sin_p = _unary("sin", np.sin, _jnp("sin"), lambda g, out, x: g * T.cos(x))
cos_p = _unary("cos", np.cos, _jnp("cos"), lambda g, out, x: g * -T.sin(x))
tan_p = _unary("tan", np.tan, _jnp("tan"), lambda g, out, x: g * (out * out + 1),
               save=(), save_out=True)
tanh_p = _unary("tanh", np.tanh, _jnp("tanh"), lambda g, out, x: g * (1 - out * out),
                save=(), save_out=True)
sigmoid_p = _unary("sigmoid", _sigmoid_impl, "jax.nn.sigmoid({0})",
                   lambda g, out, x: g * (out * (1 - out)), save=(), save_out=True)
relu_p = _unary("relu", lambda x: np.maximum(x, 0, dtype=x.dtype), "jax.nn.relu({0})",
                lambda g, out, x: g * (out > 0), save=(), save_out=True)
abs_p = _unary("abs", np.abs, _jnp("abs"), lambda g, out, x: g * T.sign(x))
sqrt_p = _unary("sqrt", np.sqrt, _jnp("sqrt"), lambda g, out, x: g / (2 * out),
                save=(), save_out=True)
rsqrt_p = _unary("rsqrt", lambda x: (1 / np.sqrt(x)).astype(x.dtype, copy=False),
                 "lax.rsqrt({0})", lambda g, out, x: g * (-0.5 * out * out * out),
                 save=(), save_out=True)
erf_p = _unary("erf", lambda x: _special.erf(x).astype(x.dtype, copy=False),
               "jax.scipy.special.erf({0})",
               lambda g, out, x: g * ((2 / math.sqrt(math.pi)) * T.exp(-(x * x))))
# piecewise constant: the gradient is zero (PyTorch returns zeros too)
sign_p = _unary("sign", np.sign, _jnp("sign"), _zero, save=())
floor_p = _unary("floor", np.floor, _jnp("floor"), _zero, save=())
ceil_p = _unary("ceil", np.ceil, _jnp("ceil"), _zero, save=())
round_p = _unary("round", np.round, _jnp("round"), _zero, save=())

gelu_p = Primitive("gelu", _gelu_impl, _same,
                   "jax.nn.gelu({0}, approximate={approximate!r} == 'tanh')",
                   vjp=(_gelu_vjp,), jvp=(_gelu_vjp,), save=(0,), kind="elementwise")


def _clamp_impl(x, *, min, max):
    if max is None:  # np.maximum is the faster kernel for the common clamp(min=0)
        return np.maximum(x, x.dtype.type(min))
    if min is None:
        return np.minimum(x, x.dtype.type(max))
    return np.clip(x, min, max).astype(x.dtype, copy=False)


def _clamp_vjp(g, out, x, *, min, max):
    if min is None:
        return g * (x <= max)
    if max is None:
        return g * (x >= min)
    return g * T.logical_and(x >= min, x <= max)


clamp_p = Primitive("clamp", _clamp_impl, _same, "jnp.clip({0}, {min}, {max})",
                    vjp=(_clamp_vjp,), jvp=(_clamp_vjp,), save=(0,),
                    grad_name=lambda p, x: ("ClampMinBackward0" if p["max"] is None else
                                            "ClampMaxBackward0" if p["min"] is None else
                                            "ClampBackward1"), kind="elementwise")


def _cast_shape(x, *, dtype):
    return x.shape, dtype


def _cast_vjp(g, out, x, *, dtype):
    return T.cast(g, x.dtype)


cast_p = Primitive("cast", lambda x, *, dtype: x.astype(dtype.np), _cast_shape,
                   "{0}.astype(jnp.{dtype.name})", vjp=(_cast_vjp,),
                   jvp=(lambda t, out, x, *, dtype: T.cast(t, dtype),),
                   grad_name="ToCopyBackward0", kind="elementwise")
copy_p = Primitive("copy", np.copy, _same, "{0}", vjp=(lambda g, out, x: g,),
                   jvp=(lambda t, out, x: t,),
                   grad_name="CloneBackward0", kind="elementwise")

# ----------------------------------------------------------------------------
# elementwise, two inputs


def _pow_vjp_base(g, out, x, y):
    # y * x**(y-1) is 0 * inf at x == 0, y == 0; the derivative there is 0 (as PyTorch)
    y0 = y == 0
    safe_power = x ** T.where(y0, T.ones_like(y), y - 1)  # no 0**-1 off the branch taken
    return g * T.where(y0, T.zeros_like(out), y * safe_power)


def _pow_vjp_exp(g, out, x, y):
    # d/dy x**y = out * log(x); PyTorch defines it as 0 where x == 0 and y >= 0
    defined_zero = T.logical_and(x == 0, y >= 0)
    log_x = T.log(T.where(defined_zero, T.ones_like(x), x))  # no log(0) off the branch taken
    return g * T.where(defined_zero, T.zeros_like(out), out * log_x)


def _maximum_vjp(pick):
    def rule(g, out, x, y):
        # ties split the gradient evenly between the two inputs
        return T.where(x == y, g / 2, g * pick(x, y))
    return rule


def _binop(name, impl, jax, rules, save, *, save_out=False, grad_name=None):
    # elementwise (the rules are g times a local derivative): each rule is its JVP too
    return Primitive(name, impl, _binary, jax, vjp=rules, jvp=rules, save=save, kind="elementwise",
                     save_out=save_out, grad_name=grad_name)


add_p = _binop("add", np.add, "{0} + {1}", (lambda g, o, x, y: g, lambda g, o, x, y: g), ())
sub_p = _binop("sub", np.subtract, "{0} - {1}", (lambda g, o, x, y: g, lambda g, o, x, y: -g), ())
# save as {input: inputs its rule reads}: only what a needed gradient reads is kept
# (and version-checked), so x*y with only x requiring grad lets y change in place
mul_p = _binop("mul", np.multiply, "{0} * {1}",
               (lambda g, o, x, y: g * y, lambda g, o, x, y: g * x), {0: (1,), 1: (0,)})
div_p = _binop("div", np.true_divide, "{0} / {1}",
               (lambda g, o, x, y: g / y, lambda g, o, x, y: -g * x / (y * y)),
               {0: (1,), 1: (0, 1)})
pow_p = _binop("pow", np.power, "{0} ** {1}", (_pow_vjp_base, _pow_vjp_exp), (0, 1),
               save_out=True, grad_name="PowBackward1")
maximum_p = _binop("maximum", np.maximum, "jnp.maximum({0}, {1})",
                   (_maximum_vjp(lambda x, y: x > y), _maximum_vjp(lambda x, y: y > x)), (0, 1))
minimum_p = _binop("minimum", np.minimum, "jnp.minimum({0}, {1})",
                   (_maximum_vjp(lambda x, y: x < y), _maximum_vjp(lambda x, y: y < x)), (0, 1))


def _pow_scalar_vjp(g, out, x, *, exponent):
    if exponent == 0:
        return T.zeros_like(g)
    return g * (exponent * (x if exponent == 2 else x ** (exponent - 1)))


def _pow_scalar_impl(x, *, exponent):
    # ATen's pow(Tensor, Scalar) on float/double: rsqrt and reciprocal kernels for -0.5
    # and -1, products for 2, 3, -2 (bit for bit what PyTorch returns); other exponents go
    # to SLEEF's pow (1 ulp), which float32 is nearest to computed in float64 and rounded
    if x.dtype.kind == "f" and x.dtype.itemsize >= 4:
        one = x.dtype.type(1)
        if exponent == 2:
            return x * x
        if exponent == 3:
            return x * x * x
        if exponent == -0.5:
            return one / np.sqrt(x)
        if exponent == -1:
            return one / x
        if exponent == -2:
            return one / (x * x)
        if x.dtype.itemsize == 4:
            return np.power(x.astype(np.float64), float(exponent)).astype(x.dtype)
    elif x.dtype.kind in "iu" and exponent in (2, 3):
        return x * x if exponent == 2 else x * x * x
    return np.power(x, x.dtype.type(exponent))


pow_scalar_p = Primitive("pow_scalar", _pow_scalar_impl,
                         _same, "{0} ** {exponent!r}", vjp=(_pow_scalar_vjp,),
                         jvp=(_pow_scalar_vjp,), save=(0,),
                         grad_name="PowBackward0", kind="elementwise")


def _scalar_log(base) -> float:
    # std::log of PyTorch's Scalar: log(0) = -inf, log(negative) = nan
    return math.log(base) if base > 0 else -math.inf if base == 0 else math.nan


def _rpow_scalar_vjp(g, out, x, *, base):
    # PyTorch's pow_backward_exponent for a Scalar base: grad * (result * log(base)), and
    # 0 where base == 0 and the exponent >= 0 (0 ** -1 = inf gives inf * -inf = -inf)
    if base == 0:  # out is inf (x < 0), 1 or 0 elsewhere: no 0 * -inf off the branch taken
        zero = x >= 0
        d = T.where(zero, T.ones_like(out), out) * -math.inf
        return g * T.where(zero, T.zeros_like(out), d)
    return g * (out * _scalar_log(base))


rpow_scalar_p = Primitive("rpow_scalar", lambda x, *, base: np.power(x.dtype.type(base), x),
                          _same, "({base!r}) ** {0}", vjp=(_rpow_scalar_vjp,),
                          jvp=(_rpow_scalar_vjp,), save_out=True,
                          grad_name="PowBackward2", kind="elementwise")


def _cmp(name, impl, jax):
    return Primitive(name, impl, _compare, jax, differentiable=False, kind="elementwise")


eq_p = _cmp("eq", np.equal, "{0} == {1}")
ne_p = _cmp("ne", np.not_equal, "{0} != {1}")
lt_p = _cmp("lt", np.less, "{0} < {1}")
le_p = _cmp("le", np.less_equal, "{0} <= {1}")
gt_p = _cmp("gt", np.greater, "{0} > {1}")
ge_p = _cmp("ge", np.greater_equal, "{0} >= {1}")
logical_and_p = _cmp("logical_and", np.logical_and, "jnp.logical_and({0}, {1})")
logical_or_p = _cmp("logical_or", np.logical_or, "jnp.logical_or({0}, {1})")
logical_xor_p = _cmp("logical_xor", np.logical_xor, "jnp.logical_xor({0}, {1})")
logical_not_p = Primitive("logical_not", np.logical_not, lambda x: (x.shape, dtypes.bool_),
                          "jnp.logical_not({0})", differentiable=False, kind="elementwise")
isfinite_p = Primitive("isfinite", np.isfinite, lambda x: (x.shape, dtypes.bool_),
                       "jnp.isfinite({0})", differentiable=False, kind="elementwise")


def _where_shape(c, x, y):
    _binary(x, y)
    return broadcast_shapes(c.shape, x.shape, y.shape), x.dtype


where_p = Primitive(
    "where", np.where, _where_shape, "jnp.where({0}, {1}, {2})",
    vjp=(None,
         lambda g, out, c, x, y: T.where(c, g, T.zeros_like(g)),
         lambda g, out, c, x, y: T.where(c, T.zeros_like(g), g)),
    save=(0,), kind="elementwise")
where_p.jvp = where_p.vjp  # elementwise: each rule is its own JVP

# ----------------------------------------------------------------------------
# reductions (axis: a tuple of non-negative ints, normalised by the caller)


def _sum_impl(x, *, axis, keepdim):
    # np.add.reduce is np.sum without its Python wrapper (~1 us less a call), and a
    # warning it raises names this module, which _quiet's filter drops
    return np.add.reduce(x, axis=axis, keepdims=keepdim)


def _mean_impl(x, *, axis, keepdim):
    if x.size == 0:  # nan (0 / 0), without NumPy's "Mean of empty slice" warning
        with np.errstate(all="ignore"):
            count = math.prod(x.shape[a] for a in axis)
            total = np.add.reduce(x, axis=axis, keepdims=keepdim)
            return (total / np.array(count, total.dtype)).astype(total.dtype, copy=False)
    return np.mean(x, axis=axis, keepdims=keepdim)


def _full_or_dim(name0, name1):
    return lambda p, x: name0 if (len(p["axis"]) == len(x.shape) and not p["keepdim"]) else name1


sum_p = Primitive("sum", _sum_impl, _reduce, "jnp.sum({0}, axis={axis}, keepdims={keepdim})",
                  vjp=(lambda g, out, x, *, axis, keepdim: _bcast_back(g, x, axis, keepdim),),
                  jvp=(lambda t, out, x, *, axis, keepdim: T.sum(t, axis, keepdim=keepdim),),
                  grad_name=_full_or_dim("SumBackward0", "SumBackward1"), kind="reduction")


def _mean_vjp(g, out, x, *, axis, keepdim):
    n = 1
    for a in axis:
        n *= x.shape[a]
    return _bcast_back(g, x, axis, keepdim) / max(n, 1)


mean_p = Primitive("mean", _mean_impl, _reduce, "jnp.mean({0}, axis={axis}, keepdims={keepdim})",
                   vjp=(_mean_vjp,),
                   jvp=(lambda t, out, x, *, axis, keepdim: T.mean(t, axis, keepdim=keepdim),),
                   grad_name=_full_or_dim("MeanBackward0", "MeanBackward1"), kind="reduction")


def _prod_vjp(g, out, x, *, axis, keepdim):
    # the product of the other elements; exact with zeros (one zero: its own
    # gradient is the product of the rest; two or more: all zero)
    is_zero = x == 0
    nzeros = T.sum(T.cast(is_zero, x.dtype), axis, keepdim=True)
    prod_nonzero = T.prod(T.where(is_zero, T.ones_like(x), x), axis, keepdim=True)
    others = T.where(is_zero, prod_nonzero * (nzeros == 1),
                     prod_nonzero * (nzeros == 0) / T.where(is_zero, T.ones_like(x), x))
    return _bcast_back(g, x, axis, keepdim) * others


prod_p = Primitive("prod", lambda x, *, axis, keepdim: np.prod(x, axis=axis, keepdims=keepdim),
                   _reduce, "jnp.prod({0}, axis={axis}, keepdims={keepdim})",
                   vjp=(_prod_vjp,), save=(0,),
                   grad_name=_full_or_dim("ProdBackward0", "ProdBackward1"), kind="reduction")


def _extreme_vjp(g, out, x, *, axis, keepdim):
    # ties share the gradient evenly
    ob = _bcast_back(out, x, axis, keepdim)
    hit = x == ob
    if len(axis) == len(x.shape) and not keepdim and x.dtype.is_floating_point:
        # max()/min() (MaxBackward1): torch's evenly_distribute_backward gives a NaN
        # result's gradient to the NaN entries (amax() would give NaN everywhere: the
        # params cannot tell them apart, and this is the one real code meets)
        hit = T.logical_or(hit, T.logical_and(T.isnan(x), T.isnan(ob)))
        # (put into zeros: the other entries get 0 even where the gradient is nan or inf)
        share = _bcast_back(g, x, axis, keepdim) / T.sum(T.cast(hit, x.dtype), axis,
                                                          keepdim=True)
        return T.where(hit, share, T.zeros_like(share))
    hit = T.cast(hit, x.dtype)
    count = T.sum(hit, axis, keepdim=True)
    return _bcast_back(g, x, axis, keepdim) * hit / count


amax_p = Primitive("amax", lambda x, *, axis, keepdim: np.amax(x, axis=axis, keepdims=keepdim),
                   _reduce, "jnp.max({0}, axis={axis}, keepdims={keepdim})",
                   vjp=(_extreme_vjp,), save=(0,), save_out=True,
                   grad_name=_full_or_dim("MaxBackward1", "AmaxBackward0"), kind="reduction")
amin_p = Primitive("amin", lambda x, *, axis, keepdim: np.amin(x, axis=axis, keepdims=keepdim),
                   _reduce, "jnp.min({0}, axis={axis}, keepdims={keepdim})",
                   vjp=(_extreme_vjp,), save=(0,), save_out=True,
                   grad_name=_full_or_dim("MinBackward1", "AminBackward0"), kind="reduction")


def _arg_impl(fn):
    def impl(x, *, axis, keepdim):
        (a,) = axis
        return fn(x, axis=a, keepdims=keepdim).astype(np.int64)
    return impl


argmax_p = Primitive("argmax", _arg_impl(np.argmax), _reduce_index,
                     "jnp.argmax({0}, axis={axis[0]}, keepdims={keepdim})", differentiable=False,
                     kind="reduction")
argmin_p = Primitive("argmin", _arg_impl(np.argmin), _reduce_index,
                     "jnp.argmin({0}, axis={axis[0]}, keepdims={keepdim})", differentiable=False,
                     kind="reduction")


def _logsumexp_impl(x, *, axis, keepdim):
    m = np.amax(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return (out if keepdim else np.squeeze(out, axis)).astype(x.dtype, copy=False)


logsumexp_p = Primitive(
    "logsumexp", _logsumexp_impl, _reduce,
    "jax.scipy.special.logsumexp({0}, axis={axis}, keepdims={keepdim})",
    vjp=(lambda g, out, x, *, axis, keepdim:
         _bcast_back(g, x, axis, keepdim) * T.exp(x - _bcast_back(out, x, axis, keepdim)),),
    jvp=(lambda t, out, x, *, axis, keepdim:
         T.sum(t * T.exp(x - _bcast_back(out, x, axis, keepdim)), axis, keepdim=keepdim),),
    save=(0,), save_out=True, kind="reduction")


def _var_impl(x, *, axis, correction, keepdim):
    n = 1
    for a in axis:
        n *= x.shape[a]
    with np.errstate(divide="ignore", invalid="ignore"):
        if n - correction > 0:
            return np.var(x, axis=axis, ddof=correction, keepdims=keepdim).astype(x.dtype,
                                                                                 copy=False)
        with warnings.catch_warnings():  # "Degrees of freedom <= 0": torch's nan, silently
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.var(x, axis=axis, ddof=correction, keepdims=keepdim).astype(x.dtype,
                                                                                 copy=False)


def _var_shape(x, *, axis, correction, keepdim):
    return _reduced_shape(x.shape, axis, keepdim), x.dtype


def _var_vjp(g, out, x, *, axis, correction, keepdim):
    n = 1
    for a in axis:
        n *= x.shape[a]
    centred = x - T.mean(x, axis, keepdim=True)
    dof = max(n - correction, 0)
    scale = 2.0 / dof if dof else math.inf  # no degrees of freedom: nan, as the value
    return _bcast_back(g, x, axis, keepdim) * centred * scale


var_p = Primitive("var", _var_impl, _var_shape,
                  "jnp.var({0}, axis={axis}, ddof={correction}, keepdims={keepdim})",
                  vjp=(_var_vjp,), save=(0,), kind="reduction")


def _norm_impl(x, *, ord, axis, keepdim):
    a = np.abs(x)
    if ord == 2:
        r = np.sqrt(np.sum(a * a, axis=axis, keepdims=keepdim))
    elif ord == math.inf:
        r = np.amax(a, axis=axis, keepdims=keepdim)
    elif ord == -math.inf:
        r = np.amin(a, axis=axis, keepdims=keepdim)
    elif ord == 0:
        r = np.sum(a != 0, axis=axis, keepdims=keepdim)
    elif ord == 1:
        r = np.sum(a, axis=axis, keepdims=keepdim)
    elif ord == 0:  # the count of nonzeros (nn extras, issue 11)
        r = np.sum(a != 0, axis=axis, keepdims=keepdim)
    elif ord == -math.inf:
        r = np.amin(a, axis=axis, keepdims=keepdim)
    else:
        r = np.sum(a ** ord, axis=axis, keepdims=keepdim) ** (1.0 / ord)
    return np.asarray(r, dtype=x.dtype)


def _norm_vjp(g, out, x, *, ord, axis, keepdim):
    gb = _bcast_back(g, x, axis, keepdim)
    ob = _bcast_back(out, x, axis, keepdim)
    if ord == 1:
        return gb * T.sign(x)
    if ord == 0:  # piecewise constant
        return None  # no gradient (torch: an undefined one, so .grad stays None)
    if ord in (math.inf, -math.inf):
        hit = T.cast(T.abs(x) == ob, x.dtype)
        return gb * T.sign(x) * hit / T.sum(hit, axis, keepdim=True)
    # |x|^(p-1) sign(x) / out^(p-1); zero where the norm is zero (as PyTorch)
    safe = T.where(ob == 0, T.ones_like(ob), ob)
    scale = x / safe if ord == 2 else T.sign(x) * (T.abs(x) / safe) ** (ord - 1)
    return gb * T.where(ob == 0, T.zeros_like(x), scale)


norm_p = Primitive("norm", _norm_impl,
                   lambda x, *, ord, axis, keepdim: _reduce(x, axis=axis, keepdim=keepdim),
                   # a vector norm over any number of axes (jnp.linalg.norm would take
                   # two axes as a matrix norm)
                   "jnp.linalg.vector_norm({0}, ord={ord!r}, axis={axis}, keepdims={keepdim})",
                   vjp=(_norm_vjp,), save=(0,), save_out=True,
                   grad_name="LinalgVectorNormBackward0", kind="reduction")


def _vector_norm_jax_fn(x, ord, axis, keepdim):
    """The vector norm over ``axis`` (jnp.linalg.norm would take two axes as a matrix)."""
    import jax.numpy as jnp
    a = jnp.abs(x)
    if ord == 2:
        return jnp.sqrt(jnp.sum(a * a, axis=axis, keepdims=keepdim))
    if ord == math.inf:
        return jnp.max(a, axis=axis, keepdims=keepdim)
    if ord == -math.inf:
        return jnp.min(a, axis=axis, keepdims=keepdim)
    if ord == 0:
        return jnp.sum(a != 0, axis=axis, keepdims=keepdim).astype(x.dtype)
    if ord == 1:
        return jnp.sum(a, axis=axis, keepdims=keepdim)
    return jnp.sum(a ** ord, axis=axis, keepdims=keepdim) ** (1.0 / ord)


def _cumsum_impl(x, *, axis):
    return np.cumsum(x, axis=axis, dtype=x.dtype)


cumsum_p = Primitive("cumsum", _cumsum_impl, lambda x, *, axis: (x.shape, x.dtype),
                     "jnp.cumsum({0}, axis={axis})",
                     vjp=(lambda g, out, x, *, axis:
                          T.flip(T.cumsum(T.flip(g, (axis,)), axis), (axis,)),),
                     jvp=(lambda t, out, x, *, axis: T.cumsum(t, axis),), kind="scan")


def _softmax_impl(x, *, axis):
    # (in place after the first subtraction: one full-size array instead of three)
    e = np.subtract(x, np.amax(x, axis=axis, keepdims=True), dtype=x.dtype)
    np.exp(e, out=e)
    e /= np.sum(e, axis=axis, keepdims=True)
    return e


def _log_softmax_impl(x, *, axis):
    shifted = np.subtract(x, np.amax(x, axis=axis, keepdims=True), dtype=x.dtype)
    log_sum = np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
    shifted -= log_sum
    return shifted


softmax_p = Primitive(
    "softmax", _softmax_impl, lambda x, *, axis: (x.shape, x.dtype),
    "jax.nn.softmax({0}, axis={axis})",
    vjp=(lambda g, out, x, *, axis: out * (g - T.sum(g * out, (axis,), keepdim=True)),),
    save_out=True, kind="normalization")
softmax_p.jvp = softmax_p.vjp  # its Jacobian diag(s) - s s^T is symmetric
log_softmax_p = Primitive(
    "log_softmax", _log_softmax_impl, lambda x, *, axis: (x.shape, x.dtype),
    "jax.nn.log_softmax({0}, axis={axis})",
    vjp=(lambda g, out, x, *, axis: g - T.exp(out) * T.sum(g, (axis,), keepdim=True),),
    jvp=(lambda t, out, x, *, axis: t - T.sum(t * T.exp(out), (axis,), keepdim=True),),
    save_out=True, grad_name="LogSoftmaxBackward0", kind="normalization")


def _bce_logits_impl(x, y):
    # (1 - y) * x - log_sigmoid(x), with log_sigmoid(x) = min(x, 0) - log1p(exp(-|x|)):
    # finite for any logit, and rounded in PyTorch's order (same float32 bits)
    log_sigmoid = np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))
    return ((1 - y) * x - log_sigmoid).astype(x.dtype, copy=False)


bce_logits_p = Primitive(
    "bce_with_logits", _bce_logits_impl, _binary,
    "(1 - {1}) * {0} - jax.nn.log_sigmoid({0})",
    vjp=(lambda g, out, x, y: g * (T.sigmoid(x) - y), lambda g, out, x, y: -g * x),
    save=(0, 1), grad_name="BinaryCrossEntropyWithLogitsBackward0", kind="loss")
bce_logits_p.jvp = bce_logits_p.vjp  # elementwise

# ----------------------------------------------------------------------------
# matrix multiply (both operands at least 2-d; 1-d cases are handled by matmul())


def _matmul_shape(x, y):
    if x.dtype is not y.dtype:
        raise ShapeError(f"expected both matmul operands to have the same dtype, "
                         f"got {x.dtype} and {y.dtype}")
    if len(x.shape) < 2 or len(y.shape) < 2:
        raise ShapeError("matmul primitive needs operands of rank >= 2")
    if x.shape[-1] != y.shape[-2]:
        a = "x".join(map(str, x.shape))
        b = "x".join(map(str, y.shape))
        raise ShapeError(f"mat1 and mat2 shapes cannot be multiplied ({a} and {b})")
    batch = broadcast_shapes(x.shape[:-2], y.shape[:-2])
    return batch + (x.shape[-2], y.shape[-1]), x.dtype


matmul_p = Primitive(
    "matmul", np.matmul, _matmul_shape, "{0} @ {1}",
    vjp=(lambda g, out, x, y: T.matmul(g, T.swapaxes(y, -1, -2)),
         lambda g, out, x, y: T.matmul(T.swapaxes(x, -1, -2), g)),
    jvp=(lambda t, out, x, y: T.matmul(t, y), lambda t, out, x, y: T.matmul(x, t)),
    save={0: (1,), 1: (0,)},
    grad_name=lambda p, x, y: ("MmBackward0" if len(x.shape) == len(y.shape) == 2
                               else "UnsafeViewBackward0"), kind="matmul")

# ----------------------------------------------------------------------------
# shape and data movement


def _reshape_shape(x, *, shape):
    if math.prod(shape) != math.prod(x.shape):
        raise ShapeError(f"shape '{list(shape)}' is invalid for input of size {math.prod(x.shape)}")
    return tuple(shape), x.dtype


reshape_p = Primitive("reshape", lambda x, *, shape: np.reshape(x, shape), _reshape_shape,
                      "jnp.reshape({0}, {shape})",
                      vjp=(lambda g, out, x, *, shape: T.reshape(g, x.shape),),
                      jvp=(lambda t, out, x, *, shape: T.reshape(t, shape),),
                      grad_name="ViewBackward0", kind="layout")


def _permute_shape(x, *, perm):
    if sorted(perm) != list(range(len(x.shape))):
        raise ShapeError(f"permute: {perm} is not a permutation of the {len(x.shape)} dims")
    return tuple(x.shape[i] for i in perm), x.dtype


def _inverse_perm(perm):
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


permute_p = Primitive("permute", lambda x, *, perm: np.transpose(x, perm), _permute_shape,
                      "jnp.transpose({0}, {perm})",
                      vjp=(lambda g, out, x, *, perm: T.permute(g, _inverse_perm(perm)),),
                      jvp=(lambda t, out, x, *, perm: T.permute(t, perm),), kind="layout")


def _broadcast_to_shape(x, *, shape):
    try:
        out = broadcast_shapes(x.shape, shape)
    except ShapeError:
        out = None
    if out != tuple(shape):
        off = len(shape) - len(x.shape)
        bad = next((i for i, d in enumerate(x.shape) if d != 1 and d != shape[off + i]), None)
        if off < 0 or bad is None:
            raise ShapeError(f"the number of sizes provided ({len(shape)}) must be greater or "
                             f"equal to the number of dimensions in the tensor ({len(x.shape)})")
        raise ShapeError(f"The expanded size of the tensor ({shape[off + bad]}) must match the "
                         f"existing size ({x.shape[bad]}) at non-singleton dimension {off + bad}.  "
                         f"Target sizes: {list(shape)}.  Tensor sizes: {list(x.shape)}")
    return tuple(shape), x.dtype


broadcast_to_p = Primitive("broadcast_to", lambda x, *, shape: np.broadcast_to(x, shape),
                           _broadcast_to_shape, "jnp.broadcast_to({0}, {shape})",
                           vjp=(lambda g, out, x, *, shape: T.sum_to(g, x.shape),),
                           jvp=(lambda t, out, x, *, shape: T.broadcast_to(t, shape),),
                           grad_name="ExpandBackward0", kind="layout")
flip_p = Primitive("flip", lambda x, *, axes: np.flip(x, axes).copy(),  # a copy, as torch
                   lambda x, *, axes: (x.shape, x.dtype),
                   "jnp.flip({0}, {axes})", vjp=(lambda g, out, x, *, axes: T.flip(g, axes),),
                   jvp=(lambda t, out, x, *, axes: T.flip(t, axes),), kind="layout")


def _cat_shape(*xs, axis):
    first = xs[0]
    size = 0
    for k, x in enumerate(xs):
        if x.dtype is not first.dtype:
            raise ShapeError(f"cat: mixed dtypes {first.dtype} and {x.dtype}")
        if len(x.shape) != len(first.shape) or any(
                a != b for i, (a, b) in enumerate(zip(x.shape, first.shape, strict=True))
                if i != axis):
            bad = next((i for i, (a, b) in enumerate(zip(x.shape, first.shape, strict=False))
                        if i != axis and a != b), None)
            detail = (f"Expected size {first.shape[bad]} but got size {x.shape[bad]} for tensor "
                      f"number {k} in the list." if bad is not None else
                      f"Tensors must have the same number of dimensions: got {len(first.shape)} "
                      f"and {len(x.shape)}")
            raise ShapeError(f"Sizes of tensors must match except in dimension {axis}. {detail}")
        size += x.shape[axis]
    shape = list(first.shape)
    shape[axis] = size
    return tuple(shape), first.dtype


def _cat_vjp(g, out, *xs, axis):
    grads, start = [], 0
    for x in xs:
        n = x.shape[axis]
        idx = (slice(None),) * axis + (slice(start, start + n),)
        grads.append(T.getitem(g, idx))
        start += n
    return tuple(grads)


def _cat_jvp(ts, out, *xs, axis):
    return T.cat([T.zeros_like(x) if t is None else t for t, x in zip(ts, xs, strict=False)], axis)


cat_p = Primitive("cat", lambda *xs, axis: np.concatenate(xs, axis=axis), _cat_shape,
                  lambda args, p: f"jnp.concatenate([{', '.join(args)}], axis={p['axis']})",
                  vjp_all=_cat_vjp, jvp=_cat_jvp, variadic=True, kind="layout")


# Indexing. ``index`` is a static tuple whose entries are ints, slices, None,
# Ellipsis or the marker TENSOR; the k-th TENSOR stands for the k-th tensor input
# after the first (integer or bool index tensors).

class _TensorSlot:
    __slots__ = ()

    def __repr__(self):
        return "TENSOR"

    def __reduce__(self):
        return "TENSOR"


TENSOR = _TensorSlot()


def _fill(index, arrays):
    it = iter(arrays)
    return tuple(next(it) if e is TENSOR else e for e in index)


def _getitem_impl(x, *idx, index):
    if idx:
        return x[_fill(index, idx)]
    out = x[index]
    if out.__class__ is not np.ndarray:  # all ints: a 0-d view, as PyTorch's, not a copy
        out = x[index + (Ellipsis,)]
    return out


def _known_value(aval):
    """The array behind an aval when it is known (an eager Tensor, an IR Const)."""
    for attr in ("_data", "value"):
        v = getattr(aval, attr, None)
        if v.__class__ is np.ndarray:
            return v
    return None


def _index_probe(i):
    # integer index arrays: only their shape matters; bool masks: the output shape
    # depends on how many entries are set, so the mask's value is needed
    if i.dtype is not dtypes.bool_:
        return np.zeros(i.shape, i.dtype.np)
    v = _known_value(i)
    if v is None:
        raise ShapeError("indexing with a boolean mask has a data-dependent shape; the mask's "
                         "value must be known (a constant) to compute it")
    return v


def _getitem_shape(x, *idx, index):
    # evaluate on a zero-size-free stand-in of the right shape, with index
    # arrays of the right shape and dtype; cheap since only shapes matter
    probe = np.lib.stride_tricks.as_strided(np.zeros((), x.dtype.np), x.shape, (0,) * len(x.shape))
    idx_arrays = [_index_probe(i) for i in idx]
    try:
        out = probe[_fill(index, idx_arrays)] if idx else probe[index]
    except IndexError as e:
        raise ShapeError(str(e)) from None
    return out.shape, x.dtype


def _getitem_name(p, x, *idx):
    # PyTorch names the last view op its indexing applied: select, unsqueeze, or a
    # slice, where a slice that keeps the whole dim (start 0, stop >= size, step 1;
    # tested before negative indices are wrapped) is skipped; nothing applied: alias
    if idx:
        return "IndexBackward0"
    index = p["index"]
    dim, name = 0, "AliasBackward0"
    for e in index:
        if e is Ellipsis:
            dim += len(x.shape) - sum(1 for k in index if k is not None and k is not Ellipsis)
        elif e is None:
            name = "UnsqueezeBackward0"
        elif isinstance(e, slice):
            if not ((e.start or 0) == 0 and (e.stop is None or e.stop >= x.shape[dim])
                    and e.step in (None, 1)):
                name = "SliceBackward0"
            dim += 1
        else:
            name = "SelectBackward0"
            dim += 1
    return name


def _getitem_vjp(g, out, x, *idx, index):
    return (T._index_add(T.zeros_like(x), g, idx, index),) + (None,) * len(idx)


getitem_p = Primitive("getitem", _getitem_impl, _getitem_shape,
                      lambda args, p: f"{args[0]}[{_index_source(p['index'], args[1:])}]",
                      vjp_all=_getitem_vjp, variadic=True, grad_name=_getitem_name,
                      jvp=lambda ts, out, x, *idx, index:
                          None if ts[0] is None else T.getitem(ts[0], index, idx), kind="index")


def _index_add_impl(base, g, *idx, index):
    out = base.copy()
    if idx:
        if len(idx) == 1 and index == (TENSOR,) and out.ndim >= 1 and idx[0].dtype.kind in "iu":
            return _rows_added(out, idx[0], g)
        np.add.at(out, _fill(index, idx), g)
    else:
        out[index] += g
    return out


def _rows_added(out, rows, g):
    """``np.add.at(out, rows, g)`` (an embedding's gradient) through flat element indices
    and NumPy's fast 1-d add.at (perf, issue 14): each element's additions happen in the
    same order, so the same rounding."""
    n = out.shape[0]
    if rows.size == 0:
        return out
    if rows.min() < 0:
        rows = np.where(rows < 0, rows + n, rows)
    if rows.min() < 0 or rows.max() >= n:
        bad = int(rows.min()) if rows.min() < 0 else int(rows.max())
        raise IndexError(f"index {bad} is out of bounds for axis 0 with size {n}")
    row = math.prod(out.shape[1:])
    flat = (rows.reshape(rows.shape + (1,)) * row + np.arange(row)).reshape(-1)
    vals = np.broadcast_to(g, rows.shape + out.shape[1:]).reshape(-1)
    np.add.at(out.reshape(-1), flat, vals)
    return out


def _index_add_vjp(gout, out, base, g, *idx, index):
    return (gout, T.getitem(gout, index, idx)) + (None,) * len(idx)


index_add_p = Primitive("index_add", _index_add_impl,
                        lambda base, g, *idx, index: (base.shape, base.dtype),
                        lambda args, p: (f"{args[0]}.at[{_index_source(p['index'], args[2:])}]"
                                         f".add({args[1]})"),
                        vjp_all=_index_add_vjp, variadic=True, grad_name="IndexAddBackward0",
                        kind="index")


def _index_put_impl(base, v, *idx, index):
    out = base.copy()
    out[_fill(index, idx) if idx else index] = v
    return out


def _index_put_vjp(gout, out, base, v, *idx, index):
    gbase = T._index_put(gout, T.zeros((), dtype=gout.dtype), idx, index)
    gv = T.sum_to(T.getitem(gout, index, idx), v.shape)
    return (gbase, gv) + (None,) * len(idx)


index_put_p = Primitive(
    "index_put", _index_put_impl, lambda base, v, *idx, index: (base.shape, base.dtype),
    lambda args, p: f"{args[0]}.at[{_index_source(p['index'], args[2:])}].set({args[1]})",
    vjp_all=_index_put_vjp, variadic=True,
    grad_name=lambda p, base, v, *idx: (
        "IndexPutBackward0" if any(i.shape or i.dtype is not dtypes.bool_ for i in idx)
        else "CopySlices"), kind="index")  # PyTorch writes through a view unless an index has dims


def _index_source(index, names):
    it = iter(names)
    parts = []
    for e in index:
        if e is TENSOR:
            parts.append(next(it))
        elif isinstance(e, slice):
            start, stop = ("" if v is None else str(v) for v in (e.start, e.stop))
            parts.append(f"{start}:{stop}" + ("" if e.step is None else f":{e.step}"))
        elif e is Ellipsis:
            parts.append("...")
        else:
            parts.append(repr(e))
    return ", ".join(parts) + ("," if len(parts) == 1 else "")


def _gather_shape(x, idx, *, axis):
    if len(idx.shape) != len(x.shape):
        raise ShapeError("Index tensor must have the same number of dimensions as input tensor")
    for d, (i, n) in enumerate(zip(idx.shape, x.shape, strict=True)):
        if d != axis and i > n:
            raise ShapeError(f"Size does not match at dimension {d} expected index "
                             f"{list(idx.shape)} to be no larger than self {list(x.shape)} "
                             f"apart from dimension {axis}")
    return idx.shape, x.dtype


def _gather_impl(x, idx, *, axis):
    # PyTorch lets the index be smaller than x off the axis: gather from that corner
    if any(i != n for d, (i, n) in enumerate(zip(idx.shape, x.shape, strict=True)) if d != axis):
        x = x[tuple(slice(None) if d == axis else slice(0, i) for d, i in enumerate(idx.shape))]
    return np.take_along_axis(x, idx, axis)


def _gather_jax(args, p):
    return f"_gather({args[0]}, {args[1]}, {p['axis']})"


def _gather_jax_fn(x, idx, axis):
    import jax.numpy as jnp
    if any(i != n for d, (i, n) in enumerate(zip(idx.shape, x.shape, strict=True)) if d != axis):
        x = x[tuple(slice(None) if d == axis else slice(0, i) for d, i in enumerate(idx.shape))]
    return jnp.take_along_axis(x, idx, axis=axis)


def _scatter_add_impl(base, idx, g, *, axis):
    out = base.copy()
    if out.ndim == 0 or idx.size == 0:
        grids = list(np.indices(idx.shape, sparse=True))
        grids[axis] = idx
        np.add.at(out, tuple(grids), g)
        return out
    # perf (issue 14): one flat index per element and a 1-d add.at (NumPy's fast path, same
    # order of additions) instead of a tuple of broadcast index grids
    n = out.shape[axis]
    if idx.min() < 0:
        idx = np.where(idx < 0, idx + n, idx)
    if idx.max() >= n:
        raise IndexError(f"index {int(idx.max())} is out of bounds for axis {axis} with size {n}")
    strides = [st // out.itemsize for st in out.strides]
    flat = idx * strides[axis]
    for d, size in enumerate(idx.shape):
        if d != axis and strides[d]:
            flat = flat + (np.arange(size) * strides[d]).reshape((-1,) + (1,) * (idx.ndim - d - 1))
    np.add.at(out.reshape(-1), flat.reshape(-1), np.broadcast_to(g, idx.shape).reshape(-1))
    return out


gather_p = Primitive(
    "gather", _gather_impl, _gather_shape, _gather_jax,
    vjp=(lambda g, out, x, idx, *, axis: T._scatter_add(T.zeros_like(x), idx, g, axis), None),
    jvp=(lambda t, out, x, idx, *, axis: T.gather(t, axis, idx), None),
    save=(1,), kind="index")
scatter_add_p = Primitive(
    "scatter_add", _scatter_add_impl, lambda base, idx, g, *, axis: (base.shape, base.dtype),
    lambda args, p: f"_scatter_add({args[0]}, {args[1]}, {args[2]}, {p['axis']})",
    vjp=(lambda gout, out, base, idx, g, *, axis: gout, None,
         lambda gout, out, base, idx, g, *, axis: T.gather(gout, axis, idx)),
    save=(1,), kind="index")


# ----------------------------------------------------------------------------
# convolution and window pooling, over N spatial dims (layout N, C, *spatial)
#
# NOTE: [One conv primitive] ``conv`` is lax.conv_general_dilated's contract with
# fixed layouts (x: N, C, *sp; w: O, C/groups, *k): window strides, explicit
# (lo, hi) padding per dim (negative crops), rhs (kernel) dilation, lhs (input)
# dilation and feature groups. With lhs dilation it is a transposed convolution,
# which is what both of its VJPs are: wrt x, the conv of g with the flipped,
# group-transposed kernel, input-dilated by the stride; wrt w, the conv of x (its
# batch and channel axes swapped) with g as the kernel, dilated by the stride and
# strided by the dilation. So double backward is more of the same primitive.
# Pooling needs no second primitive: avg_pool is a conv with a ones kernel,
# max_pool a gather at the indices ``pool_argmax`` finds.


def _dilate(n, d):
    """Size of n elements with d - 1 zeros between neighbours (lax._dilate_shape)."""
    return 0 if n == 0 else 1 + d * (n - 1)


def _window_view(x, window, stride, dilation):
    """(N, C, *out, *window) view of the windows of x (already padded)."""
    sp = x.shape[2:]
    out = tuple((n - _dilate(k, d)) // s + 1 for n, k, s, d in zip(sp, window, stride, dilation,
                                                                        strict=True))
    st = x.strides
    return np.lib.stride_tricks.as_strided(
        x, x.shape[:2] + out + tuple(window),
        st[:2] + tuple(t * s for t, s in zip(st[2:], stride, strict=True))
        + tuple(t * d for t, d in zip(st[2:], dilation, strict=True)), writeable=False)


def _pad_crop(x, padding, value=0):
    """Pad (lo, hi) per spatial dim; negative amounts crop."""
    pads = [(0, 0), (0, 0)] + [(max(lo, 0), max(hi, 0)) for lo, hi in padding]
    if any(p != (0, 0) for p in pads):
        x = np.pad(x, pads, constant_values=value)
    if any(lo < 0 or hi < 0 for lo, hi in padding):
        x = x[(slice(None),) * 2 + tuple(slice(max(-lo, 0), n - max(-hi, 0))
                                         for n, (lo, hi) in zip(x.shape[2:], padding, strict=True))]
    return x


def _conv_impl(x, w, *, stride, padding, dilation, lhs_dilation, groups):
    if _conv_scatter_cheaper(x, w, stride, padding, dilation, lhs_dilation, groups):
        return _conv_scatter(x, w, padding, dilation, lhs_dilation, groups)
    if _conv_by_output_position(x, w, stride, lhs_dilation, groups):
        return _conv_per_output(x, w, padding, dilation)
    return _conv_im2col(x, w, stride=stride, padding=padding, dilation=dilation,
                        lhs_dilation=lhs_dilation, groups=groups)


def _conv_im2col(x, w, *, stride, padding, dilation, lhs_dilation, groups):
    if any(d > 1 for d in lhs_dilation):
        spread = np.zeros(x.shape[:2] + tuple(_dilate(n, d) for n, d in
                                              zip(x.shape[2:], lhs_dilation, strict=True)), x.dtype)
        spread[(slice(None),) * 2 + tuple(slice(None, None, d) for d in lhs_dilation)] = x
        x = spread
    x = _pad_crop(x, padding)
    n, c = x.shape[:2]
    o, k = w.shape[0], w.shape[2:]
    nsp = len(k)
    win = _window_view(x, k, stride, dilation)            # N, C, *out, *k
    out_sp = win.shape[2:2 + nsp]
    # im2col, one matmul per group: (G, O/G, C/G * K) @ (G, C/G * K, N * P) -> (O, N, *out)
    perm = (1,) + tuple(range(2 + nsp, 2 + 2 * nsp)) + (0,) + tuple(range(2, 2 + nsp))
    cols = win.transpose(perm).reshape(groups, (c // groups) * math.prod(k), -1)
    out = np.matmul(w.reshape(groups, o // groups, -1), cols).reshape((o, n) + out_sp)
    return np.ascontiguousarray(out.swapaxes(0, 1))


# ---- perf (issue 14): conv as a scatter of per-tap products ----------------------------
# NOTE: [Conv by scatter] im2col copies C * K values per output position, so a conv whose
# output is much larger than its input (the VJP wrt x: g padded by k - 1 and, with a
# stride, input-dilated) spends its time copying zeros. Unit window stride allows the
# other order, torch's col2im: one matmul of every tap's (O, C) weights with the
# undilated, unpadded input, (K, O, C) @ (C, N * U), then each tap's (O, N, *U) product
# added into the output at its offset (every ld-th position when input-dilated by ld).
# Same sums, another order: the results agree with im2col to rounding.

def _conv_scatter_cheaper(x, w, stride, padding, dilation, lhs_dilation, groups):
    if any(s != 1 for s in stride) or x.dtype.kind not in "fc":
        return False
    sp, k = x.shape[2:], w.shape[2:]
    padded = [_dilate(n, ld) + lo + hi for n, ld, (lo, hi) in
              zip(sp, lhs_dilation, padding, strict=True)]
    out = [p - _dilate(kk, d) + 1 for p, kk, d in zip(padded, k, dilation, strict=True)]
    if min(out, default=1) <= 0 or 0 in x.shape[:2] or w.shape[0] == 0:
        return False
    # values made: O * U (scatter) against C * OUT (im2col copy, plus its padded input)
    return 2 * w.shape[0] * math.prod(sp) < x.shape[1] * math.prod(out)


def _conv_scatter(x, w, padding, dilation, lhs_dilation, groups):
    n, c, sp = x.shape[0], x.shape[1], x.shape[2:]
    o, k = w.shape[0], w.shape[2:]
    taps = math.prod(k)
    out_sp = tuple(_dilate(u, ld) + lo + hi - _dilate(kk, d) + 1 for u, ld, (lo, hi), kk, d in
                   zip(sp, lhs_dilation, padding, k, dilation, strict=True))
    # (K, G, O/G, C/G) @ (G, C/G, N * U) -> (K, O, N, *U)
    wk = np.moveaxis(w.reshape((groups, o // groups, c // groups, taps)), -1, 0)
    xc = np.moveaxis(x.reshape((n, groups, c // groups, -1)), 0, 2)
    z = np.matmul(wk, xc.reshape(groups, c // groups, -1)).reshape((taps, o, n) + sp)
    out = np.zeros((o, n) + out_sp, np.result_type(x, w))
    for t, tap in enumerate(np.ndindex(*k)):
        dst, src = [slice(None)] * 2, [slice(None)] * 2
        for i, u, ld, (lo, _), d, m in zip(tap, sp, lhs_dilation, padding, dilation, out_sp,
                                          strict=True):
            shift = lo - i * d                    # input u lands at y = u * ld + shift
            u0 = max(0, -(shift // ld))           # first u with y >= 0
            u1 = min(u, (m - 1 - shift) // ld + 1)  # one past the last u with y < m
            if u1 <= u0:
                break
            dst.append(slice(u0 * ld + shift, (u1 - 1) * ld + shift + 1, ld))
            src.append(slice(u0, u1))
        else:
            out[tuple(dst)] += z[t][tuple(src)]
    return np.ascontiguousarray(out.swapaxes(0, 1))


def _conv_by_output_position(x, w, stride, lhs_dilation, groups):
    """A kernel much larger than the output (the VJP wrt w: g is the kernel): one
    (N, C * K) @ (C * K, O) product per output position beats one im2col copy whose
    innermost axis is the short output row."""
    if groups != 1 or any(s != 1 for s in stride) or any(d != 1 for d in lhs_dilation):
        return False
    out = math.prod(max(n - k + 1, 0) for n, k in zip(x.shape[2:], w.shape[2:], strict=True))
    return 0 < 2 * out <= math.prod(w.shape[2:]) and x.dtype.kind in "fc"


def _conv_per_output(x, w, padding, dilation):
    x = _pad_crop(x, padding)
    n, o, k = x.shape[0], w.shape[0], w.shape[2:]
    out_sp = tuple(m - _dilate(kk, d) + 1 for m, kk, d in zip(x.shape[2:], k, dilation,
                                                               strict=True))
    wm = w.reshape(o, -1).T
    out = np.empty((n, o) + out_sp, np.result_type(x, w))
    for pos in np.ndindex(*out_sp):
        win = x[(slice(None),) * 2 + tuple(slice(p, p + _dilate(kk, d), d)
                                           for p, kk, d in zip(pos, k, dilation, strict=True))]
        out[(slice(None),) * 2 + pos] = win.reshape(n, -1) @ wm
    return out


# ---- end perf: conv by scatter ----------------------------------------------------------


def _conv_shape(x, w, *, stride, padding, dilation, lhs_dilation, groups):
    if x.dtype is not w.dtype:
        raise ShapeError(f"Input type ({_torch_type(x.dtype)}) and weight type "
                         f"({_torch_type(w.dtype)}) should be the same")
    nsp = len(stride)
    if len(x.shape) != nsp + 2 or len(w.shape) != nsp + 2:
        raise ShapeError(f"Expected {nsp + 2}-dimensional input and weight for {nsp}-d "
                         f"convolution, but got input of size {list(x.shape)} and weight of "
                         f"size {list(w.shape)}")
    if w.shape[0] % groups:
        raise ShapeError(f"Given groups={groups}, expected weight to be divisible by {groups} at "
                         f"dimension 0, but got weight of size {list(w.shape)} instead")
    if w.shape[1] * groups != x.shape[1]:
        raise ShapeError(f"Given groups={groups}, weight of size {list(w.shape)}, expected "
                         f"input{list(x.shape)} to have {w.shape[1] * groups} channels, but got "
                         f"{x.shape[1]} channels instead")
    padded = [_dilate(n, ld) + lo + hi for n, ld, (lo, hi) in
              zip(x.shape[2:], lhs_dilation, padding, strict=True)]
    kernel = [_dilate(k, d) for k, d in zip(w.shape[2:], dilation, strict=True)]
    if any(p < k for p, k in zip(padded, kernel, strict=True)):
        raise ShapeError(f"Calculated padded input size per channel: "
                         f"({' x '.join(map(str, padded))}). Kernel size: "
                         f"({' x '.join(map(str, kernel))}). Kernel size can't be greater than "
                         f"actual input size")
    out = tuple((p - k) // s + 1 for p, k, s in zip(padded, kernel, stride, strict=True))
    return (x.shape[0], w.shape[0]) + out, x.dtype


def _torch_type(dtype):
    return f"torch.{dtype.name.title().replace('Float64', 'Double').replace('Float32', 'Float')}" \
           f"Tensor"


def _conv_vjp_x(g, out, x, w, *, stride, padding, dilation, lhs_dilation, groups):
    # the transposed conv: kernel (G * C/G, O/G, *k) flipped, g input-dilated by stride
    o, cg, k = w.shape[0], w.shape[1], tuple(w.shape[2:])
    nsp = len(k)
    wt = T.reshape(w, (groups, o // groups, cg) + k)
    wt = T.permute(wt, (0, 2, 1) + tuple(range(3, 3 + nsp)))
    wt = T.flip(T.reshape(wt, (groups * cg, o // groups) + k), tuple(range(2, 2 + nsp)))
    pads = []
    for i in range(nsp):
        dk = _dilate(k[i], dilation[i])
        lo = dk - padding[i][0] - 1
        hi = (_dilate(x.shape[2 + i], lhs_dilation[i]) + dk - 1
              - _dilate(g.shape[2 + i], stride[i]) - lo)
        pads.append((lo, hi))
    return T._conv(g, wt, stride=lhs_dilation, padding=tuple(pads), dilation=dilation,
                   lhs_dilation=stride, groups=groups)


def _conv_vjp_w(g, out, x, w, *, stride, padding, dilation, lhs_dilation, groups):
    # x as (C/G, G * N, *sp) convolved with g as the kernel (O, N, *out): (C/G, O, *k)
    n, c, sp = x.shape[0], x.shape[1], tuple(x.shape[2:])
    nsp = len(sp)
    xt = T.reshape(x, (n, groups, c // groups) + sp)
    xt = T.reshape(T.permute(xt, (2, 1, 0) + tuple(range(3, 3 + nsp))),
                   (c // groups, groups * n) + sp)
    gt = T.swapaxes(g, 0, 1)
    pads = []
    for i in range(nsp):
        lo = padding[i][0]
        hi = (_dilate(g.shape[2 + i], stride[i]) - _dilate(sp[i], lhs_dilation[i])
              + _dilate(w.shape[2 + i], dilation[i]) - lo - 1)
        pads.append((lo, hi))
    gw = T._conv(xt, gt, stride=dilation, padding=tuple(pads), dilation=stride,
                 lhs_dilation=lhs_dilation, groups=groups)
    return T.swapaxes(gw, 0, 1)


def _conv_jax(args, p):
    return (f"lax.conv_general_dilated({args[0]}, {args[1]}, window_strides={p['stride']}, "
            f"padding={p['padding']}, lhs_dilation={p['lhs_dilation']}, "
            f"rhs_dilation={p['dilation']}, feature_group_count={p['groups']})")


conv_p = Primitive(
    "conv", _conv_impl, _conv_shape, _conv_jax,
    vjp=(_conv_vjp_x, _conv_vjp_w),
    jvp=(lambda t, out, x, w, **p: T._conv(t, w, **p),   # bilinear in (x, w)
         lambda t, out, x, w, **p: T._conv(x, t, **p)),
    save={0: (1,), 1: (0,)}, grad_name="ConvolutionBackward0", kind="conv")


def _pool_geometry(sp, kernel, stride, padding, dilation, ceil_mode):
    """Output sizes and the (lo, hi) padding that holds every window, as PyTorch counts:
    with ceil_mode a last partial window is kept if it starts inside the input or the
    left padding."""
    out, pads = [], []
    for n, k, s, p, d in zip(sp, kernel, stride, padding, dilation, strict=True):
        span = n + 2 * p - _dilate(k, d)
        o = (span + (s - 1 if ceil_mode else 0)) // s + 1
        if ceil_mode and (o - 1) * s >= n + p:
            o -= 1
        out.append(o)
        pads.append((p, max((o - 1) * s + _dilate(k, d) - n - p, p)))
    return tuple(out), tuple(pads)


def _lowest(dtype):
    """A padding value no element beats: -inf, or an integer dtype's least value."""
    dtype = np.dtype(dtype)
    return -np.inf if dtype.kind == "f" else False if dtype.kind == "b" else np.iinfo(dtype).min


def _pool_argmax_impl(x, *, kernel, stride, padding, dilation, ceil_mode):
    nsp = len(kernel)
    out, pads = _pool_geometry(x.shape[2:], kernel, stride, padding, dilation, ceil_mode)
    xp = _pad_crop(x, pads, _lowest(x.dtype))
    win = _window_view(xp, kernel, stride, dilation)[(slice(None),) * 2
                                                       + tuple(slice(0, o) for o in out)]
    if x.dtype.kind == "f" and not np.isnan(x).any():
        k = _first_max_tap(win, nsp)
    else:
        k = np.argmax(win.reshape(win.shape[:2 + nsp] + (math.prod(kernel),)), axis=-1)  # 1st
    starts, offsets = _pool_index_parts(x.shape[2:], out, kernel, stride, padding, dilation)
    return starts + offsets[k]


def _first_max_tap(win, nsp):
    """argmax over the window taps of ``win`` (N, C, *out, *k), the first on ties, without
    copying the windows out (perf, issue 14): one pass per tap over strided views. For
    NaN-free input only (argmax returns the first NaN)."""
    taps = list(np.ndindex(*win.shape[2 + nsp:]))
    lead = (slice(None),) * (2 + nsp)
    best = win[lead + taps[0]].copy()
    k = np.zeros(best.shape, np.uint8 if len(taps) < 256 else np.int64)
    better = np.empty(best.shape, np.bool_)
    for t, tap in enumerate(taps[1:], 1):
        cand = win[lead + tap]
        np.greater(cand, best, out=better)
        np.putmask(k, better, t)
        np.maximum(best, cand, out=best)
    return k


def _pool_index_parts(sp, out, kernel, stride, padding, dilation):
    """Flat input index = starts[position] + offsets[k], for the window at each output
    position and the offset k (flat over the kernel) inside it."""
    nsp = len(sp)
    coords = np.unravel_index(np.arange(math.prod(kernel)), kernel)
    offsets = np.zeros(math.prod(kernel), np.int64)
    starts = np.zeros(out, np.int64)
    place = 1
    for i in reversed(range(nsp)):
        offsets += coords[i] * dilation[i] * place
        first = np.arange(out[i]) * stride[i] - padding[i]
        starts = starts + (first * place).reshape((-1,) + (1,) * (nsp - 1 - i))
        place *= sp[i]
    return starts, offsets


def _pool_argmax_shape(x, *, kernel, stride, padding, dilation, ceil_mode):
    nsp = len(kernel)
    if len(x.shape) != nsp + 2:
        raise ShapeError(f"pool_argmax: expected a {nsp + 2}-d input, got {list(x.shape)}")
    for k, p, d in zip(kernel, padding, dilation, strict=True):
        if p > _dilate(k, d) // 2:
            raise ShapeError(f"pad should be at most half of effective kernel size, but got "
                             f"pad={p}, kernel_size={k} and dilation={d}")
    out, _ = _pool_geometry(x.shape[2:], kernel, stride, padding, dilation, ceil_mode)
    if any(o < 1 for o in out):
        sizes = "x".join(map(str, x.shape[1:]))
        raise ShapeError(f"Given input size: ({sizes}). Calculated output size: "
                         f"({'x'.join(map(str, (x.shape[1],) + out))}). Output size is too small")
    return tuple(x.shape[:2]) + out, dtypes.int64


def _pool_argmax_jax_fn(x, kernel, stride, padding, dilation, ceil_mode):
    """The jax form of ``pool_argmax`` (a helper the generated source calls): stack the
    K strided window slices of the -inf padded input and argmax over them (the first
    max on ties, as torch), then map (offset, position) to a flat input index."""
    import jax.numpy as jnp
    from jax import lax
    sp = x.shape[2:]
    out, pads = _pool_geometry(sp, kernel, stride, padding, dilation, ceil_mode)
    xp = lax.pad(x, jnp.array(_lowest(x.dtype), x.dtype), ((0, 0, 0),) * 2 + tuple(
        (lo, hi, 0) for lo, hi in pads))
    slices = []
    for offset in np.ndindex(*kernel):
        start = (0, 0) + tuple(j * d for j, d in zip(offset, dilation, strict=True))
        limit = tuple(xp.shape[:2]) + tuple(s + (o - 1) * st + 1 for s, o, st in
                                            zip(start[2:], out, stride, strict=True))
        slices.append(lax.slice(xp, start, limit, (1, 1) + tuple(stride)))
    k = jnp.argmax(jnp.stack(slices, -1), axis=-1)
    starts, offsets = _pool_index_parts(sp, out, kernel, stride, padding, dilation)
    return jnp.asarray(starts) + jnp.asarray(offsets)[k]


# helpers the generated jax source may call, beside the primitives that emit them
JAX_HELPERS = {"_pool_argmax": _pool_argmax_jax_fn, "_gather": _gather_jax_fn,
               "_vector_norm": _vector_norm_jax_fn}

pool_argmax_p = Primitive(
    "pool_argmax", _pool_argmax_impl, _pool_argmax_shape,
    "_pool_argmax({0}, {kernel}, {stride}, {padding}, {dilation}, {ceil_mode})",
    differentiable=False, kind="pool")


# ----------------------------------------------------------------------------
# creation: constants that fill a shape, and random numbers. Eager code makes
# these with NumPy directly; traced code records them so compiled functions
# build them on the device (and draw fresh random numbers on every call).


def _full_shape(*, shape, value, dtype):
    return tuple(shape), dtype


full_p = Primitive("full", lambda *, shape, value, dtype: np.full(shape, value, dtype.np),
                   _full_shape, "jnp.full({shape}, {value!r}, jnp.{dtype.name})",
                   vjp=(), differentiable=False, kind="creation")


def _random_impl(key, *, dist, shape, dtype, index=0, **p):
    # the interpreter's draw: fresh numbers from the default generator (the key is unused)
    from .random import default_generator as g
    if dist == "uniform":
        return g.uniform(shape, dtype, p.get("low", 0.0), p.get("high", 1.0))
    if dist == "normal":
        return g.normal(shape, dtype, p.get("mean", 0.0), p.get("std", 1.0))
    if dist == "permutation":
        return g.permutation(shape[0]).astype(dtype.np)
    return g.integers(shape, p["low"], p["high"], dtype)


_INT64_MAX = 2 ** 63 - 1


def _random_jax(args, p):
    # one key per call, split per random op by its index
    key = f"jax.random.fold_in(jax.random.wrap_key_data({args[0]}), {p.get('index', 0)})"
    shape, dt = p["shape"], f"jnp.{p['dtype'].name}"
    if p["dist"] == "uniform":
        bounds = f", {p['low']!r}, {p['high']!r}" if "low" in p else ""
        return f"jax.random.uniform({key}, {shape}, {dt}{bounds})"
    if p["dist"] == "normal":
        draw = f"jax.random.normal({key}, {shape}, {dt})"
        return f"({draw} * {p['std']!r} + {p['mean']!r}).astype({dt})" if "std" in p else draw
    if p["dist"] == "permutation":
        return f"jax.random.permutation({key}, {shape[0]}).astype({dt})"
    # integers in [low, high), drawn as int64 (any dtype, as Generator.integers) and
    # cast; high may be 2**63 (random_() on int64), one past what int64 can spell
    low, high = p["low"], p["high"]
    if high <= _INT64_MAX:
        draw = f"jax.random.randint({key}, {shape}, {low}, {high}, jnp.int64)"
    elif low > -2 ** 63:  # [low, 2**63) = [low - 1, 2**63 - 1) + 1
        draw = f"(jax.random.randint({key}, {shape}, {low - 1}, {_INT64_MAX}, jnp.int64) + 1)"
    else:  # every int64
        draw = f"lax.bitcast_convert_type(jax.random.bits({key}, {shape}, jnp.uint64), jnp.int64)"
    return draw if p["dtype"].name == "int64" else f"{draw}.astype({dt})"


random_p = Primitive("random", _random_impl,
                     lambda key, *, dist, shape, dtype, **_: (tuple(shape), dtype),
                     _random_jax, vjp=(None,), differentiable=False, kind="random")


# ----------------------------------------------------------------------------
# opsa: bitwise ops and more elementwise math (issue 12)
#
# Bitwise ops have integer/bool operands (functions.py refuses floats with PyTorch's
# error) and no gradient. Shifts follow ATen's lshift/rshift wrappers: a shift by a
# negative amount or by the bit width or more gives 0 (left) or the sign fill (right),
# where NumPy and C leave it undefined.


def _shift_limits(dtype):
    bits = np.dtype(dtype).itemsize * 8
    signed = np.dtype(dtype).kind == "i"
    return bits, signed


def _lshift_impl(a, b):
    bits, _ = _shift_limits(a.dtype)
    out_of_range = (b < 0) | (b >= bits)
    shifted = np.left_shift(a, np.where(out_of_range, 0, b).astype(a.dtype, copy=False))
    return np.where(out_of_range, a.dtype.type(0), shifted)


def _rshift_impl(a, b):
    bits, signed = _shift_limits(a.dtype)
    top = bits - 1 if signed else bits
    out_of_range = (b < 0) | (b >= top)
    b = np.where(out_of_range, 0, b).astype(a.dtype, copy=False)
    fill = np.right_shift(a, a.dtype.type(bits - 1)) if signed else a.dtype.type(0)
    return np.where(out_of_range, fill, np.right_shift(a, b))


def _lshift_jax(a, b):
    import jax.numpy as jnp
    bits = jnp.dtype(a.dtype).itemsize * 8
    out_of_range = (b < 0) | (b >= bits)
    shifted = jnp.left_shift(a, jnp.where(out_of_range, 0, b))
    return jnp.where(out_of_range, jnp.zeros_like(a), shifted)


def _rshift_jax(a, b):
    import jax.numpy as jnp
    bits = jnp.dtype(a.dtype).itemsize * 8
    signed = jnp.issubdtype(a.dtype, jnp.signedinteger)
    top = bits - 1 if signed else bits
    out_of_range = (b < 0) | (b >= top)
    fill = jnp.right_shift(a, bits - 1) if signed else jnp.zeros_like(a)
    return jnp.where(out_of_range, fill, jnp.right_shift(a, jnp.where(out_of_range, 0, b)))


JAX_HELPERS.update({"_torch_lshift": _lshift_jax, "_torch_rshift": _rshift_jax})


def _bitwise(name, impl, jax):
    return Primitive(name, impl, _binary, jax, differentiable=False, kind="elementwise")


bitwise_and_p = _bitwise("bitwise_and", np.bitwise_and, "jnp.bitwise_and({0}, {1})")
bitwise_or_p = _bitwise("bitwise_or", np.bitwise_or, "jnp.bitwise_or({0}, {1})")
bitwise_xor_p = _bitwise("bitwise_xor", np.bitwise_xor, "jnp.bitwise_xor({0}, {1})")
lshift_p = _bitwise("lshift", _lshift_impl, "_torch_lshift({0}, {1})")
rshift_p = _bitwise("rshift", _rshift_impl, "_torch_rshift({0}, {1})")
bitwise_not_p = Primitive("bitwise_not", np.invert, _same, "jnp.invert({0})",
                          differentiable=False, kind="elementwise")

# inverse trig, hyperbolic, exp2, special functions: NumPy/SciPy kernels (PyTorch's values
# up to their libm's rounding); VJP rules are derivatives.yaml's formulas


def _float_impl(fn):
    def impl(x):
        return fn(x).astype(x.dtype, copy=False)
    impl.__name__ = getattr(fn, "__name__", "impl")
    return impl


_LN2 = math.log(2.0)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_SQRT_PI_OVER_TWO = math.sqrt(math.pi) / 2.0

asin_p = _unary("asin", np.arcsin, _jnp("arcsin"),
                lambda g, out, x: g * T.rsqrt(-x * x + 1))
acos_p = _unary("acos", np.arccos, _jnp("arccos"),
                lambda g, out, x: g * -T.rsqrt(-x * x + 1))
atan_p = _unary("atan", np.arctan, _jnp("arctan"), lambda g, out, x: g / (x * x + 1))
sinh_p = _unary("sinh", np.sinh, _jnp("sinh"), lambda g, out, x: g * T.cosh(x))
cosh_p = _unary("cosh", np.cosh, _jnp("cosh"), lambda g, out, x: g * T.sinh(x))
asinh_p = _unary("asinh", np.arcsinh, _jnp("arcsinh"),
                 lambda g, out, x: g * T.rsqrt(x * x + 1))
acosh_p = _unary("acosh", np.arccosh, _jnp("arccosh"),
                 lambda g, out, x: g * T.rsqrt(x * x - 1))
atanh_p = _unary("atanh", np.arctanh, _jnp("arctanh"), lambda g, out, x: g / (-x * x + 1))
exp2_p = _unary("exp2", np.exp2, _jnp("exp2"), lambda g, out, x: g * (out * _LN2),
                save=(), save_out=True)
erfc_p = _unary("erfc", _float_impl(_special.erfc), "jax.scipy.special.erfc({0})",
                lambda g, out, x: g * (-_TWO_OVER_SQRT_PI * T.exp(-(x * x))))
erfinv_p = _unary("erfinv", _float_impl(_special.erfinv), "jax.scipy.special.erfinv({0})",
                  lambda g, out, x: g * (_SQRT_PI_OVER_TWO * T.exp(out * out)),
                  save=(), save_out=True)
def _lgamma_impl(x):
    # log|gamma(-inf)| is inf (SciPy's gammaln says -inf)
    return np.where(x == -np.inf, x.dtype.type(np.inf), _special.gammaln(x)).astype(x.dtype)


lgamma_p = _unary("lgamma", _lgamma_impl, "lax.lgamma({0})",
                  lambda g, out, x: g * T.digamma(x))
digamma_p = _unary("digamma", _float_impl(_special.psi), "lax.digamma({0})",
                   lambda g, out, x: g * T.polygamma(1, x))


def _trigamma(x):
    """ATen's calc_trigamma (reflection below 1/2, six recurrence steps, then the
    asymptotic series), in x's precision: PyTorch's polygamma(1, x) to the last bit."""
    t = x.dtype.type
    x = x.copy()
    sign = np.ones_like(x)
    result = np.zeros_like(x)
    low = x < t(0.5)
    if low.any():
        sin_pi_x = np.sin(t(math.pi) * x[low])
        result[low] -= t(math.pi * math.pi) / (sin_pi_x * sin_pi_x)
        sign[low] = -1
        x[low] = t(1) - x[low]
    for _ in range(6):
        result += t(1) / (x * x)
        x += t(1)
    ixx = t(1) / (x * x)
    series = t(1) + t(1) / (t(2) * x) + ixx * (t(1 / 6) - ixx * (t(1 / 30) - ixx * t(1 / 42)))
    result += series / x
    return sign * result


def _polygamma_impl(x, *, n):
    if n == 1:
        return _trigamma(x)
    return _special.polygamma(n, x).astype(x.dtype, copy=False)


def _polygamma_vjp(g, out, x, *, n):
    return g * T.polygamma(n + 1, x)


polygamma_p = Primitive("polygamma", _polygamma_impl, _same,
                        "jax.scipy.special.polygamma({n}, {0})", vjp=(_polygamma_vjp,),
                        jvp=(_polygamma_vjp,), save=(0,), kind="elementwise")
signbit_p = Primitive("signbit", np.signbit, lambda x: (x.shape, dtypes.bool_),
                      "jnp.signbit({0})", differentiable=False, kind="elementwise")


def _atan2_recip(x, y):
    # torch's atan2_backward: 1 / (x^2 + y^2), taken as 0 at the origin (a zero gradient
    # there, not 0 * inf = nan)
    den = x * x + y * y
    return T.where(den == 0, T.zeros_like(den), T.reciprocal(den))


atan2_p = _binop("atan2", np.arctan2, "jnp.arctan2({0}, {1})",
                 (lambda g, o, y, x: g * x * _atan2_recip(x, y),
                  lambda g, o, y, x: g * -y * _atan2_recip(x, y)), (0, 1))
hypot_p = _binop("hypot", np.hypot, "jnp.hypot({0}, {1})",
                 (lambda g, o, x, y: g * (x / o), lambda g, o, x, y: g * (y / o)), (0, 1),
                 save_out=True)


# remainder / fmod: ATen's kernels (remainder: fmod, moved into the divisor's sign when
# non-zero; so -1 % inf is inf and -0.0 % 2 is -0.0), not a - floor(a / b) * b, which
# gives nan for a finite a over an infinite b. Integer division by zero raises.
def _int_divisor_check(b):
    if b.dtype.kind in "iub" and not np.all(b):
        raise RuntimeError("ZeroDivisionError")


def _remainder_impl(a, b):
    _int_divisor_check(b)
    if a.dtype.kind != "f":
        return np.remainder(a, b)
    mod = np.fmod(a, b)
    move = (mod != 0) & ((b < 0) != (mod < 0))
    return np.where(move, mod + b, mod)


def _fmod_impl(a, b):
    _int_divisor_check(b)
    return np.fmod(a, b)


def _remainder_jax(a, b):
    import jax.numpy as jnp
    if not jnp.issubdtype(a.dtype, jnp.floating):
        return jnp.remainder(a, b)
    mod = jnp.fmod(a, b)
    return jnp.where((mod != 0) & ((b < 0) != (mod < 0)), mod + b, mod)


JAX_HELPERS["_torch_remainder"] = _remainder_jax

remainder_p = _binop("remainder", _remainder_impl, "_torch_remainder({0}, {1})",
                     (lambda g, o, x, y: g,
                      lambda g, o, x, y: -g * T.div(x, y, rounding_mode="floor")), {1: (0, 1)})
fmod_p = _binop("fmod", _fmod_impl, "jnp.fmod({0}, {1})",
                (lambda g, o, x, y: g,
                 lambda g, o, x, y: -g * T.div(x, y, rounding_mode="trunc")), {1: (0, 1)})


# xlogy: x * log(y), 0 where x == 0 unless y is nan; derivatives as PyTorch 2.13 gives
# them: d/dx = log(y) (0 where x == y == 0), d/dy = x / y
def _xlogy_impl(x, y):
    out = x * np.log(y)
    return np.where(np.isnan(y), y.dtype.type(np.nan),
                    np.where(x == 0, out.dtype.type(0), out)).astype(out.dtype, copy=False)


def _xlogy_vjp_x(g, out, x, y):
    both_zero = T.logical_and(x == 0, y == 0)
    return g * T.where(both_zero, T.zeros_like(y), T.log(y))


xlogy_p = _binop("xlogy", _xlogy_impl,
                 "jnp.where(jnp.isnan({1}), jnp.nan, jax.scipy.special.xlogy({0}, {1}))",
                 (_xlogy_vjp_x, lambda g, o, x, y: g * x / y), (0, 1))


# heaviside: PyTorch records it but has no derivative: backward raises, as its
# NotImplemented node does
def _heaviside_impl(x, v):
    return np.where(x == 0, v, (x > 0).astype(x.dtype))


def _no_derivative(op):
    def rule(g, out, *inputs, **params):
        raise RuntimeError(f"derivative for aten::{op} is not implemented")
    return rule


# remainder(Scalar, Tensor) (``2.5 % x``): recorded, but PyTorch has no derivative for it
rremainder_p = Primitive("rremainder", _remainder_impl, _binary, "_torch_remainder({0}, {1})",
                         vjp=(_no_derivative("remainder"), _no_derivative("remainder")),
                         grad_name="NotImplemented", kind="elementwise")
heaviside_p = Primitive("heaviside", _heaviside_impl, _binary,
                        "jnp.where({0} == 0, {1}, ({0} > 0).astype({0}.dtype))",
                        vjp=(_no_derivative("heaviside"), _no_derivative("heaviside")),
                        grad_name="NotImplemented", kind="elementwise")


# ``contiguous()`` of a strided array: a row-major copy (view() reads strides, as ATen's)
contiguous_p = Primitive("contiguous", np.ascontiguousarray, _same, "{0}",
                         vjp=(lambda g, out, x: g,), jvp=(lambda t, out, x: t,),
                         grad_name="CloneBackward0", kind="layout")


# NOTE: [Quiet NumPy kernels] (tracegrad/_quiet.py): the kernels that can raise a
# floating point flag run with NumPy's warnings off. Ops that cannot raise one (compares,
# selects, layout, bitwise, sign, floor, tanh...) are left as they are, and so are the
# four hottest (add, sub, mul, sum: +0.15 us on a ~1.6 us op), which warn only on
# overflow or inf - inf, inf * 0; composites that meet those by design run under
# functions._quietly.
_CANNOT_WARN = frozenset({
    "neg", "abs", "sign", "floor", "ceil", "round", "relu", "copy", "where", "eq", "ne", "lt",
    "le", "gt", "ge", "logical_and", "logical_or", "logical_xor", "logical_not", "isfinite",
    "maximum", "minimum", "amax", "amin", "argmax", "argmin", "bitwise_and", "bitwise_or",
    "bitwise_xor", "bitwise_not", "lshift", "rshift", "clamp", "sigmoid", "erf", "tanh",
    "signbit", "heaviside", "contiguous",
    "add", "sub", "mul", "sum"})  # hot: see the NOTE
for _p in list(PRIMITIVES.values()):
    if (_p.kind in ("elementwise", "reduction", "normalization", "loss", "scan")
            and _p.name not in _CANNOT_WARN and _p.raw_impl is None):
        _p.raw_impl = _p.impl  # tensor.apply runs it quietly itself (no wrapper call)
        _p.impl = _quiet.quiet(_p.impl)

# ---- end of opsa block -------------------------------------------------------


# ==== structural ops (opsb): cumulative scans, scatter with reductions, sorting ====
#
# Ops that return values and indices (cummax, sort, topk, kthvalue, median, mode)
# compute the *indices* with a non-differentiable primitive and take the values
# with ``gather``, whose VJP (a scatter-add at the indices) is exactly PyTorch's
# backward for them (value_selecting_reduction_backward, cummaxmin_backward).


def _axis_iota(shape, axis):
    """Positions along ``axis``, shaped to broadcast against an array of ``shape``."""
    return np.arange(shape[axis]).reshape((-1,) + (1,) * (len(shape) - 1 - axis))


def _cumextreme_index_impl(x, *, axis, op):
    # the last position holding the running extreme (PyTorch compares with >= / <=);
    # a NaN is the extreme from where it appears on, and the last NaN is its index
    acc = np.maximum if op == "max" else np.minimum
    m = acc.accumulate(x, axis=axis) if x.size else x
    hit = x == m
    if x.dtype.kind == "f":
        hit |= np.isnan(x)
    pos = np.where(hit, _axis_iota(x.shape, axis), 0)
    return np.maximum.accumulate(pos, axis=axis).astype(np.int64) if x.size else \
        np.zeros(x.shape, np.int64)


def _cumextreme_index_jax_fn(x, axis, op):
    import jax.numpy as jnp
    from jax import lax
    v = x.astype(jnp.int8) if x.dtype == jnp.bool_ else x
    m = lax.cummax(v, axis) if op == "max" else lax.cummin(v, axis)
    hit = v == m
    if jnp.issubdtype(v.dtype, jnp.floating):
        hit = hit | jnp.isnan(v)
    pos = jnp.where(hit, lax.broadcasted_iota(jnp.int64, v.shape, axis), 0)
    return lax.cummax(pos, axis)


cumextreme_index_p = Primitive(
    "cumextreme_index", _cumextreme_index_impl,
    lambda x, *, axis, op: (x.shape, dtypes.int64),
    "_cumextreme_index({0}, {axis}, {op!r})", differentiable=False, kind="scan")


def _reverse_cumsum(x, axis):
    return T.flip(T.cumsum(T.flip(x, (axis,)), axis), (axis,))


def _cumprod_vjp(g, out, x, *, axis):
    # exact with zeros (PyTorch's cumprod_backward): before the first zero along the
    # axis, sum_{j>=i} g_j out_j / x_i; at the first zero, the same sum over the
    # products that skip it (cumprod with that zero set to one); after it, zero
    is_zero = x == 0
    nzeros = T.cumsum(is_zero, axis)
    before = nzeros == 0
    first = T.logical_and(is_zero, nzeros == 1)
    safe_x = T.where(before, x, T.ones_like(x))
    skip_first = T.cumprod(T.where(first, T.ones_like(x), x), axis)
    at_first = _reverse_cumsum(g * skip_first, axis)
    return T.where(before, _reverse_cumsum(g * out, axis) / safe_x,
                   T.where(first, at_first, T.zeros_like(x)))


cumprod_p = Primitive("cumprod", lambda x, *, axis: np.cumprod(x, axis=axis, dtype=x.dtype),
                      lambda x, *, axis: (x.shape, x.dtype), "jnp.cumprod({0}, axis={axis})",
                      vjp=(_cumprod_vjp,), save=(0,), save_out=True, kind="scan")


def _logcumsumexp_impl(x, *, axis):
    if not x.size:
        return x.copy()
    with np.errstate(invalid="ignore"):
        return np.logaddexp.accumulate(x, axis=axis).astype(x.dtype, copy=False)


def _logcumsumexp_vjp(g, out, x, *, axis):
    # PyTorch's logcumsumexp_backward: the positive and negative parts of g in log
    # space, each summed backwards with logcumsumexp itself (stable for any x)
    log_pos, log_neg = _log_parts(g)

    def reverse_lcse(v):
        return T.flip(T.logcumsumexp(T.flip(v, (axis,)), axis), (axis,))
    return T.exp(reverse_lcse(log_pos - out) + x) - T.exp(reverse_lcse(log_neg - out) + x)


def _log_parts(v):
    """log of v's positive and negative parts (the dtype's lowest number where empty)."""
    lowest = float(np.finfo(v.dtype.np).min)
    log_abs = T.log(T.where(v == 0, 1.0, T.abs(v)))  # log(0) is never taken
    return T.where(v > 0, log_abs, lowest), T.where(v < 0, log_abs, lowest)


def _logcumsumexp_jvp(t, out, x, *, axis):
    # sum_{i<=j} t_i exp(x_i - out_j), each sign part summed in log space
    pos, neg = _log_parts(t)
    return (T.exp(T.logcumsumexp(pos + x, axis) - out)
            - T.exp(T.logcumsumexp(neg + x, axis) - out))


logcumsumexp_p = Primitive("logcumsumexp", _logcumsumexp_impl,
                           lambda x, *, axis: (x.shape, x.dtype),
                           "lax.cumlogsumexp({0}, axis={axis})", vjp=(_logcumsumexp_vjp,),
                           jvp=(_logcumsumexp_jvp,), save=(0,), save_out=True, kind="scan")


# scatter with a reduction: base with src's entries put (reduce "none") or reduced
# (sum, prod, mean, amax, amin) into base[.., idx, ..] along ``axis``; idx and src
# have the same shape, at most base's off the axis (the wrapper slices src).

_SCATTER_UFUNC = {"sum": np.add, "mean": np.add, "prod": np.multiply, "amax": np.maximum,
                  "amin": np.minimum}


def _scatter_where(idx, axis):
    grids = list(np.indices(idx.shape, sparse=True))
    grids[axis] = idx
    return tuple(grids)


def _scatter_identity(reduce, dtype):
    if reduce in ("sum", "mean"):
        return 0
    if reduce == "prod":
        return 1
    if dtype.kind == "f":
        return -np.inf if reduce == "amax" else np.inf
    if dtype.kind == "b":
        return reduce == "amin"
    info = np.iinfo(dtype)
    return info.min if reduce == "amax" else info.max


def _scatter_impl(base, idx, src, *, axis, reduce, include_self):
    out = base.copy()
    where = _scatter_where(idx, axis)
    if reduce == "none":
        out[where] = src
        return out
    if not include_self:
        out[where] = _scatter_identity(reduce, base.dtype)
    _SCATTER_UFUNC[reduce].at(out, where, src)
    if reduce == "mean":
        count = np.full(base.shape, 1 if include_self else 0, np.int64)
        np.add.at(count, where, 1)
        count = np.maximum(count, 1)
        out = (out / count).astype(out.dtype) if base.dtype.kind == "f" else out // count
    return out


def _scatter_jax_fn(base, idx, src, axis, reduce, include_self):
    import jax.numpy as jnp
    grids = list(jnp.meshgrid(*[jnp.arange(n) for n in idx.shape], indexing="ij", sparse=True))
    grids[axis] = idx
    where = tuple(grids)
    if reduce == "none":
        return base.at[where].set(src)
    out = base if include_self else base.at[where].set(
        _scatter_identity(reduce, np.dtype(base.dtype)))
    out = {"sum": out.at[where].add, "mean": out.at[where].add, "prod": out.at[where].multiply,
           "amax": out.at[where].max, "amin": out.at[where].min}[reduce](src)
    if reduce == "mean":
        count = jnp.full(base.shape, 1 if include_self else 0, jnp.int64).at[where].add(1)
        count = jnp.maximum(count, 1)
        out = (out / count).astype(out.dtype) if jnp.issubdtype(base.dtype, jnp.floating) \
            else out // count
    return out


def _scatter_shape(base, idx, src, *, axis, reduce, include_self):
    if base.dtype is not src.dtype:
        raise ShapeError("scatter(): Expected self.dtype to be equal to src.dtype")
    if not (len(idx.shape) == len(base.shape) == len(src.shape)):
        raise ShapeError("Index tensor must have the same number of dimensions as self tensor")
    if tuple(idx.shape) != tuple(src.shape) or any(
            i > b for d, (i, b) in enumerate(zip(idx.shape, base.shape, strict=True))
            if d != axis):
        raise ShapeError(f"Expected index {list(idx.shape)} to be no larger than self "
                         f"{list(base.shape)} apart from dimension {axis} and to be no larger "
                         f"size than src {list(src.shape)}")
    return base.shape, base.dtype


def _scatter_vjp_base(g, out, base, idx, src, *, axis, reduce, include_self):
    if reduce == "none":
        return T._scatter(g, idx, T.zeros_like(T.gather(g, axis, idx)), axis)
    if reduce == "sum":
        gb = g
    elif reduce == "mean":
        gb = g / _scatter_counts(g, idx, axis, include_self)
    elif reduce in ("amax", "amin"):
        gb = T.cast(base == out, g.dtype) * (g / _scatter_ties(out, base, idx, src, axis))
    else:  # prod: the product of the others, with a zero in base handled exactly
        nonzero_base = T.where(base == 0, T.ones_like(base), base)
        gb = g * T._scatter(nonzero_base, idx, src, axis, "prod", include_self) / nonzero_base
    if not include_self:
        gb = T._scatter(gb, idx, T.zeros_like(T.gather(gb, axis, idx)), axis)
    return gb


def _scatter_counts(g, idx, axis, include_self):
    ones = T.ones_like(T.gather(g, axis, idx))
    n = T._scatter(T.full_like(g, 1 if include_self else 0), idx, ones, axis, "sum")
    return T.where(n == 0, T.ones_like(n), n)


def _scatter_ties(out, base, idx, src, axis):
    # how many entries (base and src) equal the result: the gradient is shared among them
    value = T.gather(out, axis, idx)
    return T._scatter(T.cast(base == out, out.dtype), idx, T.cast(src == value, out.dtype),
                      axis, "sum")


def _scatter_vjp_src(g, out, base, idx, src, *, axis, reduce, include_self):
    if reduce in ("none", "sum"):
        return T.gather(g, axis, idx)
    if reduce == "mean":
        return T.gather(g / _scatter_counts(g, idx, axis, include_self), axis, idx)
    if reduce in ("amax", "amin"):
        value = T.gather(out, axis, idx)
        share = T.gather(g / _scatter_ties(out, base, idx, src, axis), axis, idx)
        return T.cast(src == value, g.dtype) * share
    # prod (PyTorch's scatter_reduce_backward): a src entry that is the only zero at its
    # place gets the product of the others; other entries (g * out) / src
    src_zero = src == 0
    nzeros = T.gather(T._scatter(T.zeros_like(base), idx, T.cast(src_zero, base.dtype), axis,
                                 "sum"), axis, idx)
    single_zero = T.logical_and(src_zero, nzeros == 1)
    masked_src = T.where(single_zero, T.ones_like(src), src)
    without = T._scatter(base, idx, masked_src, axis, "prod", include_self)
    return T.where(single_zero, T.gather(g * without, axis, idx),
                   T.gather(g * out, axis, idx) / T.where(src_zero, T.ones_like(src), src))


def _scatter_name(p, base, idx, src):
    return "ScatterBackward0" if p["reduce"] == "none" else "ScatterReduceBackward0"


scatter_p = Primitive(
    "scatter", _scatter_impl, _scatter_shape,
    "_scatter({0}, {1}, {2}, {axis}, {reduce!r}, {include_self})",
    vjp=(_scatter_vjp_base, None, _scatter_vjp_src), save=(0, 1, 2), save_out=True,
    grad_name=_scatter_name, kind="index")

JAX_HELPERS.update({"_cumextreme_index": _cumextreme_index_jax_fn, "_scatter": _scatter_jax_fn})

# sorting and order statistics: indices only (values are a gather at them)

def _sort_index_impl(x, *, axis, descending):
    # stable both ways: equal values keep their order; NaN is the largest value
    if not descending:
        return np.argsort(x, axis=axis, kind="stable").astype(np.int64, copy=False)
    n = x.shape[axis]
    rev = np.argsort(np.flip(x, axis), axis=axis, kind="stable")
    return (n - 1 - np.flip(rev, axis)).astype(np.int64)


def _sort_index_jax_fn(x, axis, descending):
    import jax.numpy as jnp
    v = x.astype(jnp.int8) if x.dtype == jnp.bool_ else x
    if not descending:
        return jnp.argsort(v, axis=axis, stable=True).astype(jnp.int64)
    rev = jnp.argsort(jnp.flip(v, axis), axis=axis, stable=True)
    return (v.shape[axis] - 1 - jnp.flip(rev, axis)).astype(jnp.int64)


sort_index_p = Primitive("sort_index", _sort_index_impl,
                         lambda x, *, axis, descending: (x.shape, dtypes.int64),
                         "_sort_index({0}, {axis}, {descending})", differentiable=False,
                         kind="index")


def _median_index_impl(x, *, axis, ignore_nan, xp=np):
    # the lower median's position (keepdim): the ((n - 1) // 2)-th in stable sorted order;
    # median with a NaN gives the (first) NaN, nanmedian counts only the other values
    order = (np.argsort(x, axis=axis, kind="stable") if xp is np
             else xp.argsort(x, axis=axis, stable=True))
    n = x.shape[axis]
    nans = xp.sum(xp.isnan(x), axis=axis, keepdims=True) if x.dtype.kind == "f" else \
        xp.zeros((1,) * x.ndim, np.int64)
    if ignore_nan:
        k = (xp.maximum(n - nans, 1) - 1) // 2
    else:
        k = xp.where(nans > 0, n - nans, (n - 1) // 2)
    return xp.take_along_axis(order, k.astype(np.int64), axis=axis).astype(np.int64)


def _median_index_jax_fn(x, axis, ignore_nan):
    import jax.numpy as jnp
    return _median_index_impl(x, axis=axis, ignore_nan=ignore_nan, xp=jnp)


def _kept_shape(x, *, axis, **_):
    return _kept(tuple(x.shape), (axis,)), dtypes.int64


median_index_p = Primitive("median_index", _median_index_impl, _kept_shape,
                           "_median_index({0}, {axis}, {ignore_nan})", differentiable=False,
                           kind="reduction")


def _mode_index_impl(x, *, axis, xp=np):
    # the most frequent value, the smallest of equally frequent ones (as PyTorch's CPU
    # kernel); its index is its last occurrence (keepdim)
    s = xp.sort(x, axis=axis)
    n = x.shape[axis]
    pos = xp.arange(n).reshape((-1,) + (1,) * (x.ndim - 1 - axis))
    first = [slice(None)] * x.ndim
    first[axis] = slice(0, 1)
    prev = [slice(None)] * x.ndim
    prev[axis] = slice(0, n - 1)
    nxt = [slice(None)] * x.ndim
    nxt[axis] = slice(1, n)
    new_run = xp.concatenate([xp.ones_like(s[tuple(first)], dtype=bool),
                              s[tuple(nxt)] != s[tuple(prev)]], axis=axis)
    run_start = (np.maximum.accumulate(np.where(new_run, pos, 0), axis=axis) if xp is np else
                 _jax_cummax(xp.where(new_run, pos, 0), axis))
    count = pos - run_start + 1
    best = xp.argmax(count == xp.max(count, axis=axis, keepdims=True), axis=axis)
    value = xp.take_along_axis(s, xp.expand_dims(best, axis), axis=axis)
    return xp.max(xp.where(x == value, pos, -1), axis=axis, keepdims=True).astype(np.int64)


def _jax_cummax(v, axis):
    from jax import lax
    return lax.cummax(v, axis)


def _mode_index_jax_fn(x, axis):
    import jax.numpy as jnp
    return _mode_index_impl(x, axis=axis, xp=jnp)


mode_index_p = Primitive("mode_index", _mode_index_impl, _kept_shape,
                         "_mode_index({0}, {axis})", differentiable=False, kind="reduction")

JAX_HELPERS.update({"_sort_index": _sort_index_jax_fn, "_median_index": _median_index_jax_fn,
                    "_mode_index": _mode_index_jax_fn})


# NOTE: [CPU tie order]. Among equal values, PyTorch's CPU ``sort(stable=False)``, ``topk``
# and ``kthvalue`` return whichever index their C++ algorithm leaves in place
# (tracegrad/_cpu_order.py replays them). No jnp sort gives that order, so the compiled
# program calls the same NumPy kernel back (``jax.pure_callback``): compiled and eager agree.

def _rows(x, axis, fn, width):
    """fn(row) -> list of indices, for each 1-d row of x along axis; int64 (..., width)."""
    moved = np.moveaxis(x, axis, -1)
    flat = moved.reshape(math.prod(moved.shape[:-1]), moved.shape[-1])
    out = np.array([fn(r) for r in flat], np.int64).reshape(moved.shape[:-1] + (width,))
    return np.ascontiguousarray(np.moveaxis(out, -1, axis))


def _cpu_sort_index_impl(x, *, axis, descending):
    from ._cpu_order import sort_order
    if x.ndim == 1 and x.dtype.kind in "iu" and not descending and x.size >= 32768:
        # torch's fbgemm radix sort (1-d integers, ascending, at least GRAIN_SIZE): stable
        return np.argsort(x, kind="stable").astype(np.int64)
    return _rows(x, axis, lambda r: sort_order(r, descending=descending), x.shape[axis])


def _topk_index_impl(x, *, axis, k, largest, sorted):
    from ._cpu_order import topk_order
    return _rows(x, axis, lambda r: topk_order(r, k, largest=largest, sorted=sorted), k)


def _kthvalue_index_impl(x, *, axis, k):
    from ._cpu_order import kthvalue_index
    return _rows(x, axis, lambda r: [kthvalue_index(r, k)], 1)


def _host_callback(impl):
    def lower(x, **params):
        import jax
        import jax.numpy as jnp
        shape, _ = impl.shape_of(x, **params)
        out = jax.ShapeDtypeStruct(shape, jnp.int64)
        return jax.pure_callback(lambda a: impl(np.asarray(a), **params), out, x,
                                 vmap_method="sequential")
    return lower


def _topk_index_shape(x, *, axis, k, **_):
    return x.shape[:axis] + (k,) + x.shape[axis + 1:], dtypes.int64


for _impl, _shape in ((_cpu_sort_index_impl, lambda x, **_: (x.shape, dtypes.int64)),
                      (_topk_index_impl, _topk_index_shape),
                      (_kthvalue_index_impl, _kept_shape)):
    _impl.shape_of = _shape

cpu_sort_index_p = Primitive("cpu_sort_index", _cpu_sort_index_impl,
                             _cpu_sort_index_impl.shape_of,
                             "_cpu_sort_index({0}, axis={axis}, descending={descending})",
                             differentiable=False, kind="index")
topk_index_p = Primitive("topk_index", _topk_index_impl, _topk_index_shape,
                         "_topk_index({0}, axis={axis}, k={k}, largest={largest}, "
                         "sorted={sorted})", differentiable=False, kind="index")
kthvalue_index_p = Primitive("kthvalue_index", _kthvalue_index_impl, _kept_shape,
                             "_kthvalue_index({0}, axis={axis}, k={k})", differentiable=False,
                             kind="reduction")
JAX_HELPERS.update({"_cpu_sort_index": _host_callback(_cpu_sort_index_impl),
                    "_topk_index": _host_callback(_topk_index_impl),
                    "_kthvalue_index": _host_callback(_kthvalue_index_impl)})


# diagonals: ``diagonal`` is a (writable) NumPy view, so the result is a view of its
# input as in PyTorch; ``diag_embed`` places a last dim on the diagonal of a zero
# tensor of ``shape``. Each is the other's VJP.

def _diag_length(n1, n2, offset):
    return max(0, min(n1 + min(offset, 0), n2 - max(offset, 0)))


def _diagonal_shape(x, *, offset, dim1, dim2):
    if dim1 == dim2:
        raise ShapeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    rest = tuple(n for i, n in enumerate(x.shape) if i not in (dim1, dim2))
    return rest + (_diag_length(x.shape[dim1], x.shape[dim2], offset),), x.dtype


def _diagonal_impl(x, *, offset, dim1, dim2):
    d = np.diagonal(x, offset, dim1, dim2)  # a read-only view whose base chain reaches x
    if x.flags.writeable:
        d.flags.writeable = True  # writes through it reach x, as through PyTorch's view
    return d


def _diag_embed_where(shape, offset, dim1, dim2):
    """Index arrays (for a result of ``shape``) of every diagonal element, laid out as
    the diagonal's own shape (other dims..., L)."""
    n = _diag_length(shape[dim1], shape[dim2], offset)
    rest = [s for i, s in enumerate(shape) if i not in (dim1, dim2)]
    grids = np.indices(tuple(rest) + (n,), sparse=True)
    it = iter(grids[:-1])
    index = []
    for i in range(len(shape)):
        if i == dim1:
            index.append(grids[-1] + max(-offset, 0))
        elif i == dim2:
            index.append(grids[-1] + max(offset, 0))
        else:
            index.append(next(it))
    return tuple(index)


def _diag_embed_impl(v, *, offset, dim1, dim2, shape):
    out = np.zeros(shape, v.dtype)
    out[_diag_embed_where(shape, offset, dim1, dim2)] = v
    return out


def _diag_embed_jax_fn(v, offset, dim1, dim2, shape):
    import jax.numpy as jnp
    return jnp.zeros(shape, v.dtype).at[_diag_embed_where(shape, offset, dim1, dim2)].set(v)


diagonal_p = Primitive(
    "diagonal", _diagonal_impl, _diagonal_shape,
    "jnp.diagonal({0}, offset={offset}, axis1={dim1}, axis2={dim2})",
    vjp=(lambda g, out, x, *, offset, dim1, dim2:
         T._diag_embed(g, offset, dim1, dim2, tuple(x.shape)),),
    jvp=(lambda t, out, x, **p: T._diagonal(t, **p),), kind="index")
diag_embed_p = Primitive(
    "diag_embed", _diag_embed_impl, lambda v, *, shape, **_: (tuple(shape), v.dtype),
    "_diag_embed({0}, {offset}, {dim1}, {dim2}, {shape})",
    vjp=(lambda g, out, v, *, offset, dim1, dim2, shape: T._diagonal(g, offset, dim1, dim2),),
    jvp=(lambda t, out, v, **p: T._diag_embed(t, **p),), kind="index")

JAX_HELPERS["_diag_embed"] = _diag_embed_jax_fn


# ----------------------------------------------------------------------------
# linear algebra (torch.linalg), over the last two dims, batched. A factorisation with
# several outputs (eigh, svd, qr) is one primitive per output, each with the part of the
# backward formula that its cotangent feeds (PyTorch's derivatives.yaml formulas, split
# by output: the engine sums the parts). Rules are written with these same ops, so
# double backward works where the formulas are differentiable.

def _mT(x):
    return T.swapaxes(x, -1, -2)


def _square_shape(name):
    def rule(x, **_):
        if len(x.shape) < 2:
            raise ShapeError(f"{name}: The input tensor A must have at least 2 dimensions.")
        if x.shape[-1] != x.shape[-2]:
            raise ShapeError(f"{name}: A must be batches of square matrices, but they are "
                             f"{x.shape[-2]} by {x.shape[-1]} matrices")
        return tuple(x.shape), x.dtype
    return rule


def _batch_scalar_shape(name):
    square = _square_shape(name)

    def rule(x, **_):
        square(x)
        return tuple(x.shape[:-2]), x.dtype
    return rule


def _inv_vjp(g, out, x):
    return -T.matmul(T.matmul(_mT(out), g), _mT(out))


# NOTE: [LAPACK LU]. torch factors A^T (its row-major A is A^T to column-major LAPACK)
# with getrf: partial pivoting on the first largest |entry|, columns scaled by the
# reciprocal pivot, a zero pivot left in place. Its det is (-1)^swaps prod(diag U), so the
# sign of an exact zero comes from there; slogdet's sign is (-1)^swaps prod(sgn(diag U));
# its backward solves with that LU (getrs), which gives a singular matrix's inf / nan
# pattern. These run only for singular matrices.

def lu_factor(m):
    """(LU, swaps, info) of one square matrix as LAPACK's getrf leaves them; info is the
    1-based first zero pivot (0: none)."""
    u = np.array(m)
    n = u.shape[0]
    swaps, info = [], 0
    with np.errstate(all="ignore"):
        for j in range(n):
            p = j + int(np.argmax(np.abs(u[j:, j])))
            swaps.append(p)
            if u[p, j] == 0:
                info = info or j + 1
            else:
                u[[j, p]] = u[[p, j]]
                u[j + 1:, j] *= 1 / u[j, j]
            u[j + 1:, j + 1:] -= np.outer(u[j + 1:, j], u[j, j + 1:])
    return u, swaps, info


def _lu_solve(lu, swaps, b):
    """getrs: solve (P L U) X = b, a column of X at a time, row by row (as torch's MKL
    does for a singular U: 0 / 0 is nan, no zero entry skipped)."""
    x = np.array(b, dtype=lu.dtype)
    n = lu.shape[0]
    with np.errstate(all="ignore"):
        for j, p in enumerate(swaps):
            x[[j, p]] = x[[p, j]]
        for k in range(n):
            x[k + 1:] -= np.outer(lu[k + 1:, k], x[k])
        for k in reversed(range(n)):
            x[k] /= lu[k, k]
            x[:k] -= np.outer(lu[:k, k], x[k])
    return x


def _near_singular(x):
    """Which matrices of x (batch mask) are so close to singular that LAPACK's own rounding
    decides whether a pivot is exactly zero (|det| within 1e3 eps of Hadamard's bound):
    those take the replayed LU."""
    with np.errstate(all="ignore"):
        bound = np.prod(np.linalg.norm(x, axis=-1), axis=-1)
        return np.abs(np.linalg.det(x)) <= 1e3 * np.finfo(x.dtype).eps * bound


def _inv_one(m):
    lu, swaps, _ = lu_factor(m.T)
    return _lu_solve(lu, swaps, np.eye(m.shape[0], dtype=m.dtype)).T


def _inv_impl(x):
    # (a singular matrix reaches here only from slogdet's backward: linalg.inv refuses it)
    with np.errstate(all="ignore"):
        near = _near_singular(x) if x.size else np.zeros(x.shape[:-2], bool)
        if not np.any(near):
            return np.linalg.inv(x).astype(x.dtype, copy=False)
        out = np.empty_like(x)
        for i in np.ndindex(*x.shape[:-2]):
            out[i] = _inv_one(x[i]) if near[i] else np.linalg.inv(x[i])
        return out


def _lu_det(m, part):
    lu, swaps, _ = lu_factor(m.T)
    d = np.diagonal(lu)
    flip = -1.0 if sum(p != j for j, p in enumerate(swaps)) % 2 else 1.0
    if part == "sign":
        return np.prod((d > 0).astype(m.dtype) - (d < 0)) * flip
    if part == "logabsdet":
        with np.errstate(divide="ignore"):
            return np.sum(np.log(np.abs(d)))
    return np.prod(d) * flip


_NUMPY_DET = {"det": lambda x: np.linalg.det(x), "sign": lambda x: np.linalg.slogdet(x)[0],
              "logabsdet": lambda x: np.linalg.slogdet(x)[1]}


def _det_impl(x, part="det"):
    r = np.array(_NUMPY_DET[part](x), x.dtype)
    if x.size:
        near = _near_singular(x)
        for i in np.ndindex(*near.shape):
            if near[i]:
                r[i] = _lu_det(x[i], part)
    return r


def _lu_det_jax_fn(x, part):
    # the same LU of A^T (jax's CPU lu is LAPACK's getrf): a singular matrix's zero keeps
    # the sign eager (and torch) give it
    import jax
    import jax.numpy as jnp
    lu, pivots, _ = jax.lax.linalg.lu(jnp.swapaxes(x, -1, -2))
    d = jnp.diagonal(lu, axis1=-2, axis2=-1)
    swaps = jnp.sum(pivots != jnp.arange(pivots.shape[-1], dtype=pivots.dtype), axis=-1)
    flip = jnp.where(swaps % 2 == 1, -1.0, 1.0).astype(x.dtype)
    if part == "sign":
        return jnp.prod(jnp.sign(d) + 0.0, axis=-1) * flip  # (+ 0.0: sgn(-0.0) is 0.0)
    if part == "logabsdet":
        return jnp.sum(jnp.log(jnp.abs(d)), axis=-1)
    return jnp.prod(d, axis=-1) * flip


JAX_HELPERS["_lu_det"] = _lu_det_jax_fn


inv_p = Primitive("inv", _inv_impl,
                  _square_shape("linalg.inv"), "jnp.linalg.inv({0})", vjp=(_inv_vjp,),
                  save_out=True, grad_name="LinalgInvExBackward0", kind="matmul")


def _det_vjp(g, out, x):
    # NOTE: [Singular det backward], as torch's linalg_det_backward: the gradient is
    # g det(A) A^-T where A is invertible. A first-order backward (grad mode off) solves
    # with A's LU, its zero pivots nudged to eps: where det(A) is exactly 0 that gives 0.
    # Under create_graph (grad mode on) a near-singular A (|det| < 100 eps) takes the SVD
    # formula instead, the cofactors: U diag(prod_{j != i} s_j) Vh * g det(U) det(Vh).
    from .autograd import grad_mode
    n = x.shape[-1]
    higher = grad_mode.is_grad_enabled()
    if higher:
        singular = T.abs(out) < 100.0 * float(np.finfo(x.dtype.np).eps)
    else:
        singular = out == 0
    mask = T.unsqueeze(T.unsqueeze(singular, -1), -1)
    safe = T.where(mask, T.eye(n, dtype=x.dtype), x)  # (the masked entries are not used)
    regular = T.unsqueeze(T.unsqueeze(g * out, -1), -1) * _mT(T._linalg_inv(safe))
    if not higher:
        return T.where(mask, T.zeros_like(regular), regular)
    u, s, vh = T._svd_part(x, "u"), T._svd_part(x, "s"), T._svd_part(x, "vh")
    alpha = T.apply(det_p, (u,)) * T.apply(det_p, (vh,))
    cofactors = T.matmul(u * T.unsqueeze(_prod_of_others(s) * T.unsqueeze(g * alpha, -1), -2),
                         vh)
    return T.where(mask, cofactors, regular)


def _prod_of_others(s):
    """p_i = prod_{j != i} s_j along the last dim, exact with zeros (no division)."""
    ones = T.ones_like(s[..., :1])
    before = T.cumprod(T.cat([ones, s[..., :-1]], -1), -1)
    after = T.flip(T.cumprod(T.flip(T.cat([s[..., 1:], ones], -1), (-1,)), -1), (-1,))
    return before * after


det_p = Primitive("det", _det_impl,
                  _batch_scalar_shape("linalg.det"), "_lu_det({0}, 'det')", vjp=(_det_vjp,),
                  save=(0,), save_out=True, grad_name="LinalgDetBackward0", kind="matmul")
logabsdet_p = Primitive(
    "logabsdet", lambda x: _det_impl(x, "logabsdet"),
    _batch_scalar_shape("linalg.slogdet"), "_lu_det({0}, 'logabsdet')",
    vjp=(lambda g, out, x: T.unsqueeze(T.unsqueeze(g, -1), -1) * _mT(T._linalg_inv(x)),),
    save=(0,), grad_name="LinalgSlogdetBackward0", kind="matmul")
# the sign of the determinant: piecewise constant (a zero gradient), recorded as torch does
det_sign_p = Primitive(
    "det_sign", lambda x: _det_impl(x, "sign"),
    _batch_scalar_shape("linalg.slogdet"), "_lu_det({0}, 'sign')",
    vjp=(lambda g, out, x: T.zeros(tuple(x.shape), dtype=g.dtype),),
    grad_name="LinalgSlogdetBackward0", kind="matmul")


def _solve_shape(a, b):
    _square_shape("linalg.solve")(a)
    if a.dtype is not b.dtype:
        raise ShapeError(f"linalg.solve: Expected A and B to have the same dtype, but found A "
                         f"of type {a.dtype} and B of type {b.dtype} instead")
    if len(b.shape) != len(a.shape) or b.shape[-2] != a.shape[-1]:
        raise ShapeError(f"linalg.solve: Incompatible shapes of A and B for the equation AX = B "
                         f"({a.shape[-2]}x{a.shape[-1]} and {b.shape[-2]}x{b.shape[-1]})")
    batch = broadcast_shapes(tuple(a.shape[:-2]), tuple(b.shape[:-2]))
    return batch + tuple(b.shape[-2:]), a.dtype


def _solve_vjp_b(g, out, a, b):
    return T._linalg_solve(_mT(a), g)


solve_p = Primitive(
    "solve", lambda a, b: np.linalg.solve(a, b).astype(a.dtype, copy=False), _solve_shape,
    "jnp.linalg.solve({0}, {1})",
    vjp=(lambda g, out, a, b: -T.matmul(_solve_vjp_b(g, out, a, b), _mT(out)), _solve_vjp_b),
    save=(0,), save_out=True, grad_name="LinalgSolveExBackward0", kind="matmul")


def _cholesky_vjp(g, out, x):
    # PyTorch's cholesky_backward: L^-H Phi(L^H gL) L^-1, Phi halving the diagonal and
    # mirroring the strict lower part (the gradient is symmetric)
    L = out
    ga = T.tril(T.matmul(_mT(L), g))
    ga = 0.5 * (ga + _mT(T.tril(ga, -1)))
    ga = T._linalg_solve(_mT(L), ga)                     # L^-H ga
    return _mT(T._linalg_solve(_mT(L), _mT(ga)))         # (L^-H ga) L^-1


cholesky_p = Primitive("cholesky", lambda x: np.linalg.cholesky(x).astype(x.dtype, copy=False),
                       _square_shape("linalg.cholesky"), "jnp.linalg.cholesky({0})",
                       vjp=(_cholesky_vjp,), save_out=True,
                       grad_name="LinalgCholeskyExBackward0", kind="matmul")


def _eigh_vals_shape(x):
    _square_shape("linalg.eigh")(x)
    return tuple(x.shape[:-1]), x.dtype


def _eigh_values_vjp(g, out, x):
    v = T._eigh_vectors(x)
    return T.matmul(v * T.unsqueeze(g, -2), _mT(v))


def _eigh_vectors_vjp(g, out, x):
    # V (sym(V^T gV) / E) V^T with E_ij = w_j - w_i off the diagonal (PyTorch projects
    # V^T gV onto the skew-symmetric matrices; divided by E that is symmetric)
    w, v = T._eigh_values(x), out
    e = T.unsqueeze(w, -2) - T.unsqueeze(w, -1)
    n = x.shape[-1]
    eye = T.eye(n, dtype=dtypes.bool_)
    k = T.matmul(_mT(v), g)
    inner = T.where(eye, 0.0, 0.5 * (k - _mT(k)) / T.where(eye, 1.0, e))
    return T.matmul(T.matmul(v, inner), _mT(v))


eigh_values_p = Primitive(
    "eigh_values", lambda x: np.linalg.eigh(x)[0].astype(x.dtype, copy=False), _eigh_vals_shape,
    "jnp.linalg.eigh({0}, symmetrize_input=False)[0]", vjp=(_eigh_values_vjp,), save=(0,),
    grad_name="LinalgEighBackward0", kind="matmul")
eigh_vectors_p = Primitive(
    "eigh_vectors", lambda x: np.linalg.eigh(x)[1].astype(x.dtype, copy=False),
    _square_shape("linalg.eigh"), "jnp.linalg.eigh({0}, symmetrize_input=False)[1]",
    vjp=(_eigh_vectors_vjp,), save=(0,), save_out=True, grad_name="LinalgEighBackward0",
    kind="matmul")


def _svd_shape(part):
    def rule(x, *, full=False):
        if len(x.shape) < 2:
            raise ShapeError("linalg.svd: The input tensor A must have at least 2 dimensions.")
        m, n = x.shape[-2:]
        k = min(m, n)
        batch = tuple(x.shape[:-2])
        return {"u": batch + (m, m if full else k), "s": batch + (k,),
                "vh": batch + (n if full else k, n)}[part], x.dtype
    return rule


def _svd_impl(part):
    index = {"u": 0, "s": 1, "vh": 2}[part]

    def impl(x, *, full=False):
        if part == "s":
            return np.linalg.svd(x, compute_uv=False).astype(x.dtype, copy=False)
        return np.linalg.svd(x, full_matrices=full)[index].astype(x.dtype, copy=False)
    return impl


def _svd_f(s):
    """F_ij = 1 / (s_j^2 - s_i^2) off the diagonal, 0 on it."""
    s2 = s * s
    d = T.unsqueeze(s2, -2) - T.unsqueeze(s2, -1)
    eye = T.eye(s.shape[-1], dtype=dtypes.bool_)
    return T.where(eye, 0.0, 1.0 / T.where(eye, 1.0, d))


def _svd_vjp_s(g, out, x):
    u, vh = T._svd_part(x, "u"), T._svd_part(x, "vh")
    return T.matmul(u * T.unsqueeze(g, -2), vh)


def _svd_vjp_u(g, out, x, *, full=False):
    # U (F o (U^T gU - gU^T U)) S V^T + (I - U U^T) gU S^-1 V^T; with full matrices only
    # the first min(m, n) columns carry a gradient (as PyTorch's svd_backward)
    kk = min(x.shape[-2:])
    u, s, vh = out, T._svd_part(x, "s"), T._svd_part(x, "vh")
    if full:
        u, g = u[..., :kk], g[..., :kk]
    k = T.matmul(_mT(u), g)
    inner = _svd_f(s) * (k - _mT(k))
    ga = T.matmul(T.matmul(u, inner * T.unsqueeze(s, -2)), vh)
    if x.shape[-2] > x.shape[-1]:
        proj = g - T.matmul(u, k)
        ga = ga + T.matmul(proj / T.unsqueeze(s, -2), vh)
    return ga


def _svd_vjp_vh(g, out, x, *, full=False):
    # U S (F o (V^T gV - gV^T V)) V^T + U S^-1 gV^T (I - V V^T), with gV = gVh^T
    kk = min(x.shape[-2:])
    vh, s, u = out, T._svd_part(x, "s"), T._svd_part(x, "u")
    if full:
        vh, g = vh[..., :kk, :], g[..., :kk, :]
    gv = _mT(g)
    k = T.matmul(vh, gv)
    inner = _svd_f(s) * (k - _mT(k))
    ga = T.matmul(T.matmul(u, T.unsqueeze(s, -1) * inner), vh)
    if x.shape[-1] > x.shape[-2]:
        proj = g - T.matmul(_mT(k), vh)
        ga = ga + T.matmul(u, proj / T.unsqueeze(s, -1))
    return ga


svd_u_p = Primitive("svd_u", _svd_impl("u"), _svd_shape("u"),
                    "jnp.linalg.svd({0}, full_matrices={full})[0]", vjp=(_svd_vjp_u,),
                    save=(0,), save_out=True, grad_name="LinalgSvdBackward0", kind="matmul")
svd_s_p = Primitive("svd_s", _svd_impl("s"), _svd_shape("s"),
                    "jnp.linalg.svd({0}, compute_uv=False)", vjp=(_svd_vjp_s,),
                    save=(0,), grad_name="LinalgSvdBackward0", kind="matmul")
svd_vh_p = Primitive("svd_vh", _svd_impl("vh"), _svd_shape("vh"),
                     "jnp.linalg.svd({0}, full_matrices={full})[2]", vjp=(_svd_vjp_vh,),
                     save=(0,), save_out=True, grad_name="LinalgSvdBackward0", kind="matmul")


def _qr_shape(part):
    def rule(x, *, mode="reduced"):
        if len(x.shape) < 2:
            raise ShapeError("linalg.qr: The input tensor A must have at least 2 dimensions.")
        m, n = x.shape[-2:]
        k = m if mode == "complete" else min(m, n)
        batch = tuple(x.shape[:-2])
        return (batch + (m, k) if part == "q" else batch + (k, n)), x.dtype
    return rule


def _qr_impl(part):
    index = 0 if part == "q" else 1

    def impl(x, *, mode="reduced"):
        if mode == "r":
            return np.linalg.qr(x, mode="r").astype(x.dtype, copy=False)
        return np.linalg.qr(x, mode=mode)[index].astype(x.dtype, copy=False)
    return impl


def _copyltu(m):
    low = T.tril(m, -1)
    return low + _mT(low) + T.diag_embed(T.diagonal(m, 0, -2, -1))


def _qr_square_backward(gq, gu, q, u):
    # torch's linalg_qr_backward for m >= n: [gQ + Q copyltu(M)] R^-T, M = R gR^T - gQ^T Q
    # (either cotangent may be None)
    m = T.matmul(u, _mT(gu)) if gu is not None else None
    if gq is not None:
        m = -T.matmul(_mT(gq), q) if m is None else m - T.matmul(_mT(gq), q)
    y = T.matmul(q, _copyltu(m))
    if gq is not None:
        y = y + gq
    return _mT(T._linalg_solve(u, _mT(y)))   # y R^-T


def _qr_backward(gq, gr, x, q, r, mode):
    if mode == "r":
        raise RuntimeError("The derivative of linalg.qr depends on Q, which is not computed when "
                           "mode='r'. Please use linalg.qr(A, mode='reduced') if you are going "
                           "to differentiate through linalg.qr.")
    rows, cols = x.shape[-2:]
    if mode == "complete" and rows > cols:
        raise RuntimeError("The QR decomposition is not differentiable when mode='complete' and "
                           "nrows > ncols.")
    if rows >= cols:
        return _qr_square_backward(gq, gr, q, r)
    # wide, as torch: A = [X | Y], R = [U | V]: gY = Q gV, and X's is the square case
    # with gQ + Y gV^T for Q's cotangent
    u = r[..., :, :rows]
    gu = gv = None
    if gr is not None:
        gu, gv = gr[..., :, :rows], gr[..., :, rows:]
        yv = T.matmul(x[..., :, rows:], _mT(gv))
        gq = yv if gq is None else gq + yv
    gx = _qr_square_backward(gq, gu, q, u)
    gy = T.matmul(q, gv) if gv is not None else T.zeros_like(x[..., :, rows:])
    return T.cat([gx, gy], -1)


def _qr_vjp_q(g, out, x, *, mode="reduced"):
    return _qr_backward(g, None, x, out, T._qr_part(x, "r", mode), mode)


def _qr_vjp_r(g, out, x, *, mode="reduced"):
    q = None if mode == "r" else T._qr_part(x, "q", mode)
    return _qr_backward(None, g, x, q, out, mode)


qr_q_p = Primitive("qr_q", _qr_impl("q"), _qr_shape("q"), "jnp.linalg.qr({0}, mode={mode!r})[0]",
                   vjp=(_qr_vjp_q,), save=(0,), save_out=True, grad_name="LinalgQrBackward0",
                   kind="matmul")
qr_r_p = Primitive("qr_r", _qr_impl("r"), _qr_shape("r"),
                   lambda args, p: (f"jnp.linalg.qr({args[0]}, mode='r')" if p["mode"] == "r"
                                    else f"jnp.linalg.qr({args[0]}, mode={p['mode']!r})[1]"),
                   vjp=(_qr_vjp_r,), save=(0,), save_out=True, grad_name="LinalgQrBackward0",
                   kind="matmul")


# Tensor.view(dtype): the same bytes read as another dtype; the last dim scales by the
# ratio of element sizes. No gradient (PyTorch's is not defined across dtypes).

def _bitcast_shape(x, *, dtype):
    a, b = np.dtype(x.dtype.np).itemsize, np.dtype(dtype.np).itemsize
    shape = tuple(x.shape)
    if a == b:
        return shape, dtype
    if not shape:
        raise ShapeError(f"self.dim() cannot be 0 to view {_TYPE_WORDS[x.dtype.name]} as "
                         f"{_TYPE_WORDS[dtype.name]} (different element sizes)")
    if (shape[-1] * a) % b:
        raise ShapeError(f"self.size(-1) must be divisible by {b // a} to view "
                         f"{_TYPE_WORDS[x.dtype.name]} as {_TYPE_WORDS[dtype.name]} (different "
                         f"element sizes), but got {shape[-1]}")
    return shape[:-1] + (shape[-1] * a // b,), dtype


_TYPE_WORDS = {"float32": "Float", "float64": "Double", "float16": "Half", "int64": "Long",
               "int32": "Int", "int16": "Short", "int8": "Char", "uint8": "Byte", "bool": "Bool"}


def _bitcast_jax(args, p):
    return f"_bitcast({args[0]}, jnp.{p['dtype'].name})"


def _bitcast_jax_fn(x, dtype):
    import jax.numpy as jnp
    from jax import lax
    a, b = np.dtype(x.dtype).itemsize, np.dtype(dtype).itemsize
    if a == b:
        return lax.bitcast_convert_type(x, dtype)
    if a > b:   # each element becomes a // b narrower ones: a new last dim, merged
        y = lax.bitcast_convert_type(x, dtype)
        return jnp.reshape(y, x.shape[:-1] + (x.shape[-1] * (a // b),))
    y = jnp.reshape(x, x.shape[:-1] + (x.shape[-1] // (b // a), b // a))
    return lax.bitcast_convert_type(y, dtype)


bitcast_p = Primitive("bitcast",
                      lambda x, *, dtype: np.ascontiguousarray(x).view(dtype.np),
                      _bitcast_shape, _bitcast_jax, differentiable=False, kind="layout")
JAX_HELPERS["_bitcast"] = _bitcast_jax_fn
# ==== end of structural ops (opsb) ====

from . import functions as T  # noqa: E402  (rules are written with tracegrad's own ops)

# ==== issue 12 follow-up (opsfix): copysign, legacy scatter reduce ====================

def _copysign_vjp_self(g, out, x, y):
    # torch's copysign_tensor_self_backward: g * (out / x), 0 where x is 0
    return g * T.where(x == 0, T.zeros_like(out), out / x)


# other gets a gradient of zeros, as in torch (its sign is a step function)
copysign_p = _binop("copysign", np.copysign, "jnp.copysign({0}, {1})",
                    (_copysign_vjp_self, lambda g, o, x, y: T.zeros_like(g)), (0,),
                    save_out=True)


def _scatter_legacy_impl(base, idx, src, *, axis, reduce):
    return _scatter_impl(base, idx, src, axis=axis, reduce=reduce, include_self=True)


def _scatter_legacy_shape(base, idx, src, *, axis, reduce):
    return _scatter_shape(base, idx, src, axis=axis, reduce=reduce, include_self=True)


# scatter(..., reduce='add'|'multiply'): recorded, but torch has no derivative for it
# (its NotImplemented node raises on backward)
scatter_legacy_reduce_p = Primitive(
    "scatter_legacy_reduce", _scatter_legacy_impl, _scatter_legacy_shape,
    "_scatter({0}, {1}, {2}, {axis}, {reduce!r}, True)",
    vjp=(_no_derivative("scatter"), None, _no_derivative("scatter")),
    grad_name="NotImplemented", kind="index")



# Tensor.unfold: the windows of ``size`` every ``step`` along ``dim`` as a new last dim,
# a strided view of x as in torch (NOTE: [In-place through a view] replays it). Windows
# that overlap (step < size) share memory, so that view is read-only.
def _unfold_geometry(shape, dim, size, step):
    n = shape[dim]
    nwin = (n - size) // step + 1
    return tuple(shape[:dim]) + (nwin,) + tuple(shape[dim + 1:]) + (size,)


def _unfold_impl(x, *, dim, size, step):
    shape = _unfold_geometry(x.shape, dim, size, step)
    st = x.strides
    strides = st[:dim] + (st[dim] * step,) + st[dim + 1:] + (st[dim],)
    # writable: a write into windows that share elements is refused when it is made
    # (_storage.overlaps_itself), one into a part of them that does not goes through
    return np.lib.stride_tricks.as_strided(x, shape, strides,
                                           writeable=x.flags.writeable)


def _unfold_shape(x, *, dim, size, step):
    n = x.shape[dim]
    if size > n:
        raise ShapeError(f"maximum size for tensor at dimension {dim} is {n} but size is {size}")
    if step <= 0:
        raise ShapeError(f"step is {step} but must be > 0")
    return _unfold_geometry(x.shape, dim, size, step), x.dtype


def unfold_windows(n, size, step):
    """(windows, size) int64 indices of the unfold windows along a dim of length n."""
    starts = np.arange(0, n - size + 1, step, dtype=np.int64)
    return starts[:, None] + np.arange(size, dtype=np.int64)


def _unfold_vjp(g, out, x, *, dim, size, step):
    # the windows' gradients summed back into x (overlapping windows add up)
    idx = T._unfold_index(x.shape[dim], size, step)
    g = T.movedim(g, -1, dim + 1)
    return T._index_add(T.zeros_like(x), g, (idx,), (slice(None),) * dim + (TENSOR,))


def _unfold_jax_fn(x, dim, size, step):
    import jax.numpy as jnp
    idx = unfold_windows(x.shape[dim], size, step)
    return jnp.moveaxis(jnp.take(x, idx, axis=dim), dim + 1, -1)


unfold_p = Primitive("unfold", _unfold_impl, _unfold_shape,
                     "_unfold({0}, {dim}, {size}, {step})", vjp=(_unfold_vjp,),
                     jvp=(lambda t, out, x, **p: T.apply(unfold_p, (t,), p),),
                     grad_name="UnfoldBackward0", kind="layout")
JAX_HELPERS["_unfold"] = _unfold_jax_fn


# unique / unique_consecutive (computed in NumPy: their sizes depend on the data) record
# torch's node when the input requires grad; its backward raises torch's error
_UNIQUE_NODES = {"_unique2": "Unique2Backward0", "unique_dim": "UniqueDimBackward0",
                 "unique_consecutive": "UniqueConsecutiveBackward0"}


def _unique_vjp(g, out, x, values, *, op):
    raise NotImplementedError(f"the derivative for '{op}' is not implemented.")


unique_values_p = Primitive(
    "unique_values", lambda x, values, *, op: values,
    lambda x, values, *, op: (tuple(values.shape), values.dtype), "{1}",
    vjp=(_unique_vjp, None), grad_name=lambda p, x, values: _UNIQUE_NODES[p["op"]],
    kind="index")
# ---- end of opsfix block -----------------------------------------------------------


# ----------------------------------------------------------------------------
# devices/creation helper: bfloat16 arithmetic. ml_dtypes' ufuncs compute each element
# in float32 and round once, as PyTorch's CPU kernels do; contractions, reductions,
# scans and normalisations must also accumulate in float32 and round once at the end
# (NumPy would sum in bfloat16, and ml_dtypes' matmul returns float32), and rsqrt must
# not round twice. Only these primitives pay for the check.

_BF16 = dtypes.bfloat16.np


def _bfloat16_in_float32(impl):
    # the operands of these primitives share a dtype (the wrappers promote), so the
    # first one's says whether this is bfloat16 work: one identity check otherwise
    def run(*args, **params):
        if getattr(args[0], "dtype", None) is _BF16:
            args = [a.astype(np.float32) if isinstance(a, np.ndarray) and a.dtype == _BF16
                    else a for a in args]
            out = np.asarray(impl(*args, **params))
            return out.astype(_BF16) if out.dtype == np.float32 else out
        return impl(*args, **params)
    run.__name__ = getattr(impl, "__name__", "impl")
    run.__wrapped__ = impl
    return run


def _logsumexp_bfloat16(impl):
    # PyTorch rounds each step to bfloat16 (x - max, exp, the float32-accumulated sum, log,
    # + max); only the sum needs float32 here, the ufuncs round as PyTorch does
    def run(x, *, axis, keepdim):
        if x.dtype != _BF16:
            return impl(x, axis=axis, keepdim=keepdim)
        m = np.amax(x, axis=axis, keepdims=True)
        m = np.where(np.isfinite(m), m, 0).astype(_BF16)
        total = np.sum(np.exp(x - m).astype(np.float32), axis=axis, keepdims=True)
        with np.errstate(divide="ignore"):
            out = np.log(total.astype(_BF16)) + m
        return out if keepdim else np.squeeze(out, axis)
    run.__wrapped__ = impl
    return run


for _prim in PRIMITIVES.values():
    _wrap = None
    if _prim is logsumexp_p:
        _wrap = _logsumexp_bfloat16
    elif _prim.kind in ("reduction", "scan", "normalization", "loss", "matmul", "conv",
                        "pool") and _prim.name != "prod" or _prim.name == "rsqrt":
        # (prod is left alone: PyTorch multiplies bfloat16 products in bfloat16)
        _wrap = _bfloat16_in_float32
    if _wrap is not None:
        _prim.impl = _wrap(_prim.impl)
        if _prim.raw_impl is not None:  # (the quiet kernels' own entry: NOTE above)
            _prim.raw_impl = _wrap(_prim.raw_impl)


# ==== attention (issue 13): scaled dot-product attention as one primitive =======

# NOTE: [One attention primitive] ``attention(q, k, v[, mask][, keep])`` is
# softmax(q @ k^T * scale + mask) @ v over the last two dims, all the leading dims
# broadcast. Inputs after v, by params: ``mask`` "bool" (True: attend) or "float"
# (added to the scores) or None; ``dropout_p`` > 0 adds ``keep``, a bool draw of the
# scores' shape made by the caller (functions._draw_*, so a compiled call draws fresh
# keys), kept entries scaled by 1 / (1 - dropout_p). ``gqa``: k and v have fewer heads
# (dim -3) than q, each repeated to q's. A row with every key masked gives zeros (torch's
# safe softmax). The rules recompute the probabilities (nothing beyond the inputs is
# saved) and are written with tracegrad ops, so create_graph and the graph autodiff pass
# use them too; the jax lowering is jax.nn.dot_product_attention where its contract is
# torch's (no mask, no dropout, one batch and one head dim, matching k/v head dims),
# jnp otherwise.


def _attention_inputs(q, k, v, rest, mask, dropout_p):
    it = iter(rest)
    m = next(it) if mask else None
    keep = next(it) if dropout_p > 0 else None
    return m, keep


def _keep_scale(dropout_p):
    return 0.0 if dropout_p == 1.0 else 1 / (1 - dropout_p)   # p = 1: nothing is kept


def _repeat_heads_np(x, hq):
    return x if x.ndim < 3 or x.shape[-3] == hq else np.repeat(x, hq // x.shape[-3], axis=-3)


def _attention_impl(q, k, v, *rest, scale, is_causal, mask, dropout_p, gqa):
    m, keep = _attention_inputs(q, k, v, rest, mask, dropout_p)
    if gqa:
        k, v = _repeat_heads_np(k, q.shape[-3]), _repeat_heads_np(v, q.shape[-3])
    s = np.matmul(q, np.swapaxes(k, -1, -2)) * q.dtype.type(scale)
    allowed = None
    if is_causal:
        allowed = np.tril(np.ones((q.shape[-2], k.shape[-2]), dtype=bool))
    if mask == "bool":
        allowed = m if allowed is None else allowed & m
    elif mask == "float":
        s = s + m
    if allowed is not None:
        s = np.where(allowed, s, -np.inf)
    top = np.amax(s, axis=-1, keepdims=True)
    top = np.where(np.isneginf(top), 0, top)  # a fully masked row: exp(-inf) = 0 everywhere
    e = np.exp(s - top)
    total = np.sum(e, axis=-1, keepdims=True)
    p = e / np.where(total == 0, 1, total)
    if keep is not None:
        p = p * np.where(keep, q.dtype.type(_keep_scale(dropout_p)), q.dtype.type(0))
    return np.matmul(p.astype(q.dtype, copy=False), v).astype(q.dtype, copy=False)


def _attention_shape(q, k, v, *rest, scale, is_causal, mask, dropout_p, gqa):
    kb, vb = tuple(k.shape[:-2]), tuple(v.shape[:-2])
    if gqa:  # k and v are repeated to q's heads first
        kb, vb = kb[:-1] + tuple(q.shape[-3:-2]), vb[:-1] + tuple(q.shape[-3:-2])
    batch = broadcast_shapes(tuple(q.shape[:-2]), kb, vb)
    return batch + (q.shape[-2], v.shape[-1]), q.dtype


def _repeat_heads(x, hq):
    """(..., h, s, e) -> (..., hq, s, e), each head repeated hq // h times in place."""
    h = x.shape[-3]
    if h == hq:
        return x
    lead, tail = tuple(x.shape[:-3]), tuple(x.shape[-2:])
    x = T.broadcast_to(T.unsqueeze(x, -3), lead + (h, hq // h) + tail)
    return T.reshape(x, lead + (hq,) + tail)


def _sum_heads(g, h):
    """The adjoint of _repeat_heads: (..., hq, s, e) summed back to h heads."""
    hq = g.shape[-3]
    if h == hq:
        return g
    lead, tail = tuple(g.shape[:-3]), tuple(g.shape[-2:])
    return T.sum(T.reshape(g, lead + (h, hq // h) + tail), (-3,))


def _attention_probs(q, k, m, *, scale, is_causal, mask):
    """softmax of the masked scores, rows with no key allowed all zeros; and the scores'
    mask of rows that are fully masked (None when there can be none)."""
    s = T.matmul(q, T.swapaxes(k, -1, -2)) * scale
    allowed = None
    if is_causal:
        allowed = T.tril(T.ones((q.shape[-2], k.shape[-2]), dtype=dtypes.bool_))
    if mask == "bool":
        allowed = m if allowed is None else T.logical_and(allowed, m)
    elif mask == "float":
        s = s + m
    if allowed is not None:
        s = T.where(allowed, s, T.full((), -math.inf, dtype=s.dtype))
    if allowed is None and mask != "float":
        return T.softmax(s, -1), None
    dead = T.all(T.isneginf(s), -1, keepdim=True)   # no gradient: a bool
    zero = T.zeros((), dtype=s.dtype)
    p = T.softmax(T.where(dead, zero, s), -1)
    return T.where(dead, zero, p), dead


def _attention_vjp(g, out, q, k, v, *rest, scale, is_causal, mask, dropout_p, gqa):
    m, keep = _attention_inputs(q, k, v, rest, mask, dropout_p)
    kk, vv = k, v
    if gqa:
        kk, vv = _repeat_heads(k, q.shape[-3]), _repeat_heads(v, q.shape[-3])
    p, _ = _attention_probs(q, kk, m, scale=scale, is_causal=is_causal, mask=mask)
    dropped = p
    if keep is not None:
        drop_scale = T.where(keep, T.full((), _keep_scale(dropout_p), dtype=p.dtype),
                             T.zeros((), dtype=p.dtype))
        dropped = p * drop_scale
    gv = T.matmul(T.swapaxes(dropped, -1, -2), g)
    gp = T.matmul(g, T.swapaxes(vv, -1, -2))
    if keep is not None:
        gp = gp * drop_scale
    gs = p * (gp - T.sum(gp * p, (-1,), keepdim=True))  # softmax's rule; 0 on masked keys
    gq = T.matmul(gs, kk) * scale
    gk = T.matmul(T.swapaxes(gs, -1, -2), q) * scale
    if gqa:
        gk, gv = _sum_heads(gk, k.shape[-3]), _sum_heads(gv, v.shape[-3])
    grads = [gq, gk, gv]
    if mask:
        grads.append(gs if mask == "float" else None)
    if keep is not None:
        grads.append(None)
    return tuple(grads)


def _attention_jax_fn(q, k, v, *rest, scale, is_causal, mask, dropout_p, gqa):
    import jax
    import jax.numpy as jnp
    m, keep = _attention_inputs(q, k, v, rest, mask, dropout_p)
    if gqa:  # repeated heads (jax's grouped einsum rounds float32 differently from torch)
        hq = q.shape[-3]
        k = k if k.shape[-3] == hq else jnp.repeat(k, hq // k.shape[-3], axis=-3)
        v = v if v.shape[-3] == hq else jnp.repeat(v, hq // v.shape[-3], axis=-3)
    same_lead = q.ndim == k.ndim == v.ndim and q.shape[:-3] == k.shape[:-3] == v.shape[:-3]
    if (mask is None and keep is None and q.ndim in (3, 4) and same_lead
            and q.shape[-3] == k.shape[-3] == v.shape[-3]
            and k.shape[-1] == v.shape[-1] == q.shape[-1]):
        # jax's layout is (batch, seq, heads, dim); torch's (batch, heads, seq, dim)
        o = jax.nn.dot_product_attention(jnp.swapaxes(q, -2, -3), jnp.swapaxes(k, -2, -3),
                                         jnp.swapaxes(v, -2, -3), scale=scale,
                                         is_causal=is_causal, implementation="xla")
        return jnp.swapaxes(o, -2, -3).astype(q.dtype)
    s = jnp.matmul(q, jnp.swapaxes(k, -1, -2)) * jnp.asarray(scale, q.dtype)
    allowed = None
    if is_causal:
        allowed = jnp.tril(jnp.ones((q.shape[-2], k.shape[-2]), bool))
    if mask == "bool":
        allowed = m if allowed is None else allowed & m
    elif mask == "float":
        s = s + m
    if allowed is not None:
        s = jnp.where(allowed, s, -jnp.inf)
    top = jax.lax.stop_gradient(jnp.max(s, axis=-1, keepdims=True))
    top = jnp.where(jnp.isneginf(top), 0, top)
    e = jnp.exp(s - top)
    total = jnp.sum(e, axis=-1, keepdims=True)
    p = e / jnp.where(total == 0, 1, total)
    if keep is not None:
        p = p * jnp.where(keep, jnp.asarray(_keep_scale(dropout_p), q.dtype), 0)
    return jnp.matmul(p.astype(q.dtype), v).astype(q.dtype)


def _attention_jax(args, p):
    params = ", ".join(f"{k}={p[k]!r}" for k in ("scale", "is_causal", "mask", "dropout_p",
                                                  "gqa"))
    return f"_attention({', '.join(args)}, {params})"


def _attention_grad_name(p, q, k, v, *rest):
    # torch's CPU dispatch: its flash kernel for 4-d inputs without dropout whose k/v head
    # dims match and whose mask needs no gradient; else the math path, ending in a matmul
    m, _ = _attention_inputs(q, k, v, rest, p["mask"], p["dropout_p"])
    if (len(q.shape) == 4 and p["dropout_p"] == 0 and q.shape[-1] == v.shape[-1]
            and k.shape[-3] == v.shape[-3] and not getattr(m, "requires_grad", False)):
        return "ScaledDotProductFlashAttentionForCpuBackward0"
    return "MmBackward0" if len(q.shape) == 2 else "UnsafeViewBackward0"


JAX_HELPERS["_attention"] = _attention_jax_fn
attention_p = Primitive(
    "attention", _bfloat16_in_float32(_attention_impl), _attention_shape, _attention_jax,
    vjp_all=_attention_vjp, variadic=True, save=(0, 1, 2), grad_name=_attention_grad_name,
    kind="matmul")
# ==== end of attention ====
# ---- perf (issue 14): fused GELU backward ------------------------------------------------
# NOTE: [Fused GELU backward]. GELU's derivative, g * (Phi(x) + x * phi(x)), as one
# primitive with a NumPy kernel that reuses two buffers (PyTorch's GeluBackward kernel,
# in x's dtype: cdf = 0.5 * (1 + erf(x * M_SQRT1_2)), pdf = kBeta * exp(x * x * -0.5)),
# instead of a dozen taped ops each allocating a full-size temporary. Its own VJP makes
# second derivatives: d/dg is gelu_backward again, d/dx is g * phi(x) * (2 - x * x).

_INV_SQRT_2PI = 0.5 * (2 / math.sqrt(math.pi)) * _SQRT_HALF  # kBeta = M_2_SQRTPI * M_SQRT1_2 / 2

# NOTE: [Float32 erf for GELU]. scipy's float32 erf evaluates its float64 kernel one element
# at a time (~10 ns each: 5 ms of a 16x64x512 GELU, a fifth of an eager GPT step). GELU's
# float32 erf is instead a rational function in float64, erf(z) ~ z * P(z^2) / Q(z^2) on
# |z| <= 4 (z clamped there: erf(4) rounds to 1 in float32), fitted for this file by
# weighted least squares (relative error below 5e-9, a tenth of a float32 ulp), evaluated
# in cache-sized chunks with NumPy's vectorised loops and rounded once to float32: about
# 98% of results equal scipy's correctly rounded ones, the rest differ by one ulp. Arrays
# under _FAST_ERF_MIN elements keep scipy's. The ``erf`` primitive itself stays scipy's.
_ERF_P = (1.1283791694471061, 0.18514514369940668, 0.054306014039080856,
          0.0038468958295738037, 0.00037942434894278586, 4.680651924229796e-06,
          -1.3173811962501837e-08)
_ERF_Q = (1.0, 0.4974140271655248, 0.11393159318435887, 0.01545590670323569,
          0.001306784351343564, 6.307372754130163e-05)
_FAST_ERF_MIN = 4096
_ERF_CHUNK = 1 << 15


def _erf_float32_(z):
    """erf of the float32 array ``z``, written into ``z`` (NOTE: [Float32 erf for GELU])."""
    if z.size < _FAST_ERF_MIN or not z.flags.c_contiguous:
        _special.erf(z, out=z)
        return z
    flat = z.reshape(-1)
    for start in range(0, flat.size, _ERF_CHUNK):
        part = flat[start:start + _ERF_CHUNK]
        w = np.clip(part, -4.0, 4.0, dtype=np.float64)
        u = w * w
        num = np.full_like(w, _ERF_P[-1])
        for c in _ERF_P[-2::-1]:
            num *= u
            num += c
        den = np.full_like(w, _ERF_Q[-1])
        for c in _ERF_Q[-2::-1]:
            den *= u
            den += c
        num *= w
        num /= den
        part[...] = num
    return z


def _gelu_backward_impl(g, x):
    if x.dtype.itemsize < 4:  # half, bfloat16: in float32, as torch's opmath
        return _gelu_backward_impl(g.astype(np.float32), x.astype(np.float32)).astype(x.dtype)
    dt = x.dtype
    cdf = np.multiply(x, np.asarray(_SQRT_HALF, dt), out=np.empty_like(x))  # 0-d too
    _gelu_erf_(cdf)
    cdf += 1
    cdf *= 0.5
    pdf = np.multiply(x, x, out=np.empty_like(x))
    pdf *= -0.5
    np.exp(pdf, out=pdf)
    pdf *= np.asarray(_INV_SQRT_2PI, dt)
    pdf *= x
    pdf += cdf
    pdf *= g
    return pdf


def _gelu_backward_shape(g, x):
    if tuple(g.shape) != tuple(x.shape) or g.dtype is not x.dtype:
        raise ShapeError(f"gelu_backward: grad {list(g.shape)} ({g.dtype}) and input "
                         f"{list(x.shape)} ({x.dtype}) must have one shape and dtype")
    return x.shape, x.dtype


def _gelu_backward_vjp_x(gg, out, g, x):
    pdf = T.exp(-0.5 * x * x) * _INV_SQRT_2PI
    return gg * g * (pdf * (2.0 - x * x))


gelu_backward_p = Primitive(
    "gelu_backward", _gelu_backward_impl, _gelu_backward_shape,
    f"{{0}} * (0.5 * (1.0 + jax.scipy.special.erf({{1}} * {_SQRT_HALF!r})) + {{1}} * "
    f"({_INV_SQRT_2PI!r} * jnp.exp({{1}} * {{1}} * -0.5)))",
    vjp=(lambda gg, out, g, x: T._gelu_backward(gg, x), _gelu_backward_vjp_x), save=(0, 1),
    kind="elementwise")
# ---- end perf: fused GELU backward ------------------------------------------------------


# ---- perf (issue 14): fused layer norm ---------------------------------------------------
# NOTE: [Fused layer norm]. layer_norm's normalisation, (x - mean) * rsqrt(var + eps) over
# the trailing ``axes``, as one primitive: the same NumPy calls as the composite it
# replaces (np.mean, np.var, 1 / sqrt), so the same values, but one taped op instead of
# five forward and about twenty backward. Its VJP, in tracegrad ops (so create_graph and
# the graph autodiff pass differentiate it again), reads the normalised output y:
#     dx = (g - mean(g) - y * mean(g * y)) * rstd,   rstd recomputed from x.
# The affine part (* weight + bias) stays mul/add in nn.functional.layer_norm. Half and
# bfloat16 inputs are normalised in float32 and rounded once (torch's opmath).

def _layer_norm_impl(x, *, axes, eps):
    if x.dtype.itemsize < 4:
        return _layer_norm_impl(x.astype(np.float32), axes=axes, eps=eps).astype(x.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.mean(x, axis=axes, keepdims=True).astype(x.dtype, copy=False)
        var = np.var(x, axis=axes, keepdims=True).astype(x.dtype, copy=False)
        var += np.asarray(eps, x.dtype)
        rstd = (1 / np.sqrt(var)).astype(x.dtype, copy=False)
    out = np.subtract(x, mean)
    out *= rstd
    return out


def _layer_norm_shape(x, *, axes, eps):
    if not x.dtype.is_floating_point:
        raise ShapeError(f"layer_norm: expected a floating point input, got {x.dtype}")
    if any(a >= len(x.shape) for a in axes):
        raise ShapeError(f"layer_norm: axes {axes} out of range for shape {list(x.shape)}")
    return x.shape, x.dtype


def _layer_norm_vjp(g, out, x, *, axes, eps):
    rstd = T.rsqrt(T.var(x, axes, keepdim=True, correction=0) + eps)
    gy = T.mean(g * out, axes, keepdim=True)
    return (g - T.mean(g, axes, keepdim=True) - out * gy) * rstd


layer_norm_p = Primitive(
    "layer_norm", _layer_norm_impl, _layer_norm_shape,
    "(({0} - jnp.mean({0}, axis={axes}, keepdims=True)) * "
    "lax.rsqrt(jnp.var({0}, axis={axes}, keepdims=True) + {eps!r}))",
    vjp=(_layer_norm_vjp,), save=(0,), save_out=True, grad_name="NativeLayerNormBackward0",
    kind="normalization")
# ---- end perf: fused layer norm ---------------------------------------------------------

