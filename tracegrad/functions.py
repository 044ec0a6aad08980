"""tracegrad's functions (the ``torch.*`` namespace): wrappers over the primitives.

Wrappers do the torch-facing work (type promotion, dim normalisation, 1-d matmul
cases, default arguments) and then ``apply`` one primitive. Composite ops are
plain functions over primitives; where PyTorch shows its own grad_fn name for a
composite (``std`` -> ``StdBackward0``) the last primitive is recorded under that
name.
"""
from __future__ import annotations

import builtins
import collections
import math
import numbers

import numpy as np

from . import dtypes, primitives as P
from ._storage import make_writable, overlaps_itself
from .amp import autocast_mode as _amp
from .amp.autocast_mode import state as _autocast  # NOTE: [Autocast]
from .autograd import views as _views
from .dtypes import DType, as_dtype, result_type
from .tensor import (
    Size,
    Tensor,
    _not_a_view,
    _op_state,
    _View,
    apply,
    commit_inplace,
    trace_state,
)

_bool, _int, _pyfloat, _slice = builtins.bool, builtins.int, builtins.float, builtins.slice


# ----------------------------------------------------------------------------
# devices (devices/creation helper). NOTE: [One device]. Eager tensors live in host
# memory, so the only device a tensor reports is the CPU; compiled functions run on
# whatever device jax has (jax.devices()). Asking for another device fails at once with
# an error that says so, of the type a CPU-only PyTorch raises.

_DEVICE_TYPES = ("cpu", "cuda", "ipu", "xpu", "mkldnn", "opengl", "opencl", "ideep", "hip", "ve",
                 "fpga", "maia", "xla", "lazy", "vulkan", "mps", "meta", "hpu", "mtia",
                 "privateuseone")

_WHERE = ("tracegrad's eager tensors live on the CPU, and compiled functions "
          "(tracegrad.compile) run on whatever device jax has (jax.devices()); use "
          "device='cpu', e.g. device = 'cuda' if torch.cuda.is_available() else 'cpu'")


class CudaNotAvailableError(RuntimeError, AssertionError):
    """A CUDA device was asked for. PyTorch built without CUDA raises AssertionError
    ("Torch not compiled with CUDA enabled"); this is both that and a RuntimeError."""


def _no_device_error(kind: str) -> Exception:
    if kind == "cuda":
        return CudaNotAvailableError(f"Torch not compiled with CUDA enabled: {_WHERE}")
    if kind == "mps":
        return RuntimeError(f"PyTorch is not linked with support for mps devices: {_WHERE}")
    return RuntimeError(f"tracegrad has no {kind!r} device: {_WHERE}")


class device:
    """A device: ``tracegrad.device('cpu')``, ``device('cpu:0')``, ``device('cuda', 1)``.

    Any of PyTorch's device names makes a device object (so a script can name one), but
    tensors can only be made on the CPU (NOTE: [One device]).

    >>> device('cpu:0')
    device(type='cpu', index=0)
    >>> str(device('cpu'))
    'cpu'
    """

    __slots__ = ("type", "index", "_prev")

    def __init__(self, type="cpu", index=None):
        if isinstance(type, device):
            if index is not None:
                raise TypeError("device(): a device object takes no index")
            type, index = type.type, type.index
        elif isinstance(type, (_int, np.integer)) and not isinstance(type, _bool):
            raise RuntimeError("Cannot access accelerator device when none is available.")
        elif not isinstance(type, str):
            raise TypeError(f"device() expected a string, a device or an int, got "
                            f"{builtins.type(type).__name__}")
        else:
            name, sep, idx = type.partition(":")
            if sep:
                if index is not None:
                    raise RuntimeError(f"type (string) must not include an index because index "
                                       f"was passed explicitly: {type}")
                if not idx.isdigit():
                    raise RuntimeError(f"Invalid device string: '{type}'")
                index = _int(idx)
            if name not in _DEVICE_TYPES:
                raise RuntimeError("Expected one of " + ", ".join(_DEVICE_TYPES) +
                                   f" device type at start of device string: {type}")
            type = name
        if index is not None:
            if isinstance(index, _bool) or not isinstance(index, (_int, np.integer)):
                raise TypeError(f"device(): index must be an int, got "
                                f"{builtins.type(index).__name__}")
            if index < 0:
                raise RuntimeError(f"Device index must not be negative, got {index}")
            index = _int(index)
        self.type, self.index, self._prev = type, index, None

    def __repr__(self):
        if self.index is None:
            return f"device(type='{self.type}')"
        return f"device(type='{self.type}', index={self.index})"

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"


    def __eq__(self, other):
        return isinstance(other, device) and (other.type, other.index) == (self.type, self.index)

    def __hash__(self):
        return hash((self.type, self.index))

    def __reduce__(self):
        return (device, (self.type, self.index))

    def __enter__(self):  # ``with tracegrad.device('cpu'):`` sets the default device
        self._prev = _default_device
        set_default_device(self)
        return self

    def __exit__(self, *exc):
        set_default_device(self._prev)
        return False


_CPU = device("cpu")
_default_device = None  # what set_default_device set (None: the CPU)


def _check_device(dev) -> None:
    """Accept None, 'cpu', 'cpu:N' or a CPU device; refuse any other device clearly."""
    if dev is None or dev is _CPU or dev == "cpu":
        return
    if isinstance(dev, (_int, np.integer)) and not isinstance(dev, _bool):
        raise _no_device_error("cuda")  # device=0 is cuda:0, as in PyTorch
    d = dev if isinstance(dev, device) else device(dev)
    if d.type != "cpu":
        raise _no_device_error(d.type)


def set_default_device(device_) -> None:
    """``torch.set_default_device``: only the CPU (or None) is accepted (NOTE: [One device])."""
    global _default_device
    _check_device(device_)
    _default_device = None if device_ is None else device(device_)


def get_default_device() -> device:
    """The device new tensors are made on: always the CPU."""
    return _CPU


# ----------------------------------------------------------------------------
# conversion helpers

_CONSTS: dict = {}  # (value, dtype) -> read-only 0-d tensor; see _const


def _const(value, dtype: DType) -> Tensor:
    """A Python number as a 0-d tensor of ``dtype`` (an operand of ``x * 2``).

    Eager constants are shared: they are read-only and never exposed, and making one
    costs as much as the op it feeds. -0.0 and 0.0 compare equal, so a float zero's
    sign is part of its key."""
    tracer = trace_state.current
    if tracer is None and value.__class__ in _CACHEABLE:
        key = (value, dtype, math.copysign(1.0, value) if value == 0 else 0)
        t = _CONSTS.get(key)
        if t is None:
            if len(_CONSTS) > 1024:
                _CONSTS.clear()
            data = np.asarray(value, dtype=dtype.np)
            data.flags.writeable = False
            t = _CONSTS[key] = Tensor._make(data)
        return t
    t = Tensor._make(np.asarray(value, dtype=dtype.np))
    if tracer is not None:
        tracer.constant(t)
        t._wrapped = True  # a Python number: ``lr * 2`` of a traced float ``lr`` is one too
    return t


_CACHEABLE = frozenset({_pyfloat, _int, _bool})


def _scalar_category(s) -> int:
    if isinstance(s, (_bool, np.bool_)):
        return 0
    if isinstance(s, (_int, np.integer)):
        return 1
    if isinstance(s, (_pyfloat, np.floating)):
        return 2
    raise TypeError(f"unsupported operand of type {type(s).__name__}; expected a Tensor or a "
                    "Python number")


_SCALAR_DEFAULTS = (dtypes.bool_, dtypes.int64, None)


def _dtype_with_scalar(d: DType, s) -> DType:
    cat = _scalar_category(s)
    if cat <= d._category:
        return d
    return _SCALAR_DEFAULTS[cat] or dtypes.get_default_dtype()


def _coerce(a, b):
    """Two operands -> two tensors of the promoted dtype."""
    if isinstance(a, Tensor):
        if isinstance(b, Tensor):
            if a._data.dtype is b._data.dtype:
                return a, b
            da, db = a.dtype, b.dtype
            if da is db:
                return a, b
            rt = result_type(a, b)
            return (a if da is rt else cast(a, rt)), (b if db is rt else cast(b, rt))
        da = _dtype_of(a)
        if b.__class__ is _pyfloat and da._category == 2:
            return a, _const(b, da)
        rt = _dtype_with_scalar(da, b)
        return (a if da is rt else cast(a, rt)), _const(b, rt)
    if isinstance(b, Tensor):
        db = b.dtype
        rt = _dtype_with_scalar(db, a)
        return _const(a, rt), (b if db is rt else cast(b, rt))
    raise TypeError("at least one operand must be a Tensor")


def _as_tensor(x) -> Tensor:
    if isinstance(x, Tensor):
        return _unwrapped(x) if x._wrapped else x
    return tensor(x)


def _unwrapped(x: Tensor) -> Tensor:
    """A traced Python number (``Tensor._wrapped``: a compiled function's float argument)
    given to a function: eager makes a tensor of the number, of the default dtype for a
    float, and the result is a tensor, not a number."""
    t = cast(x, dtypes.get_default_dtype()) if _dtype_of(x).is_floating_point else x
    if t is x:
        return Tensor._make(x._data, x._vc)  # the same traced value, not a number
    t._wrapped = False
    return t


def _float(x: Tensor) -> Tensor:
    """Ops defined on floats promote integer and bool inputs to the default dtype."""
    return x if _dtype_of(x).is_floating_point else cast(x, dtypes.get_default_dtype())


def _dtype_of(t: Tensor) -> DType:
    """``t.dtype`` on the per-op path: read from the array, which the op reads anyway
    (the property also serves deferred compiled values without fetching them)."""
    d = t._data.dtype
    return d if d.__class__ is DType else dtypes._BY_NP[d]


def _dim(d, ndim: int) -> int:
    lo, hi = -builtins.max(ndim, 1), builtins.max(ndim, 1) - 1
    if not isinstance(d, (_int, np.integer)) or isinstance(d, _bool):
        raise TypeError(f"dim must be an int, got {type(d).__name__}")
    if d < lo or d > hi:
        raise IndexError(f"Dimension out of range (expected to be in range of [{lo}, {hi}], "
                         f"but got {d})")
    return _int(d) % builtins.max(ndim, 1) if ndim else 0


def _axes(dim, ndim: int) -> tuple:
    if dim is None or (isinstance(dim, (tuple, list)) and len(dim) == 0):
        return tuple(range(ndim))
    if isinstance(dim, (tuple, list)):
        out = tuple(sorted({_dim(d, ndim) for d in dim}))
        if len(out) != len(dim):
            raise RuntimeError(f"dim {list(dim)} appears multiple times in the list of dims")
        return out
    d = _dim(dim, ndim)  # a 0-d tensor takes dim 0 or -1, and only those
    return (d,) if ndim else ()


def _shape_args(shape) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, Size)):
        shape = shape[0]
    out = []
    for s in shape:
        if isinstance(s, Tensor):
            s = s.item()
        if not isinstance(s, (_int, np.integer)) or isinstance(s, _bool):
            raise TypeError(f"sizes must be ints, got {s!r} of type {type(s).__name__}")
        out.append(_int(s))
    return tuple(out)


# ----------------------------------------------------------------------------
# elementwise

def cast(x: Tensor, dtype) -> Tensor:
    dtype = as_dtype(dtype)
    if x.dtype is dtype:
        return x
    if x._rg and not dtype.is_floating_point:  # an integer / bool copy has no gradient
        x = x.detach()
    return apply(P.cast_p, (x,), {"dtype": dtype})


def add(a, b, *, alpha=1):
    if alpha != 1:
        b = mul(b, alpha)
    a, b = _coerce(a, b)
    return apply(P.add_p, (a, b))


def sub(a, b, *, alpha=1):
    if alpha != 1:
        b = mul(b, alpha)
    a, b = _coerce(a, b)
    return apply(P.sub_p, (a, b))


def rsub(a, b):
    """b - a, recorded as PyTorch's RsubBackward1."""
    b, a = _coerce(b, a)
    return apply(P.sub_p, (b, a), name="RsubBackward1")


def mul(a, b):
    a, b = _coerce(a, b)
    return apply(P.mul_p, (a, b))


def div(a, b, *, rounding_mode=None):
    a, b = _coerce(a, b)
    if rounding_mode is None:
        a, b = _float(a), _float(b)
        return apply(P.div_p, (a, b))
    q = apply(P.div_p, (_float(a), _float(b)))
    if rounding_mode == "floor":
        q = apply(P.floor_p, (q,), name="DivBackward2")
    elif rounding_mode == "trunc":
        q = trunc(q, _name="DivBackward2")
    else:
        raise ValueError(f"div expected rounding_mode to be one of None, 'trunc', or 'floor' "
                         f"but found '{rounding_mode}'")
    return cast(q, a.dtype)


true_divide = divide = div
multiply = mul
subtract = sub


def trunc(x, *, _name="TruncBackward0"):
    x = _as_tensor(x)
    return apply(P.where_p, (x < 0, ceil(x), floor(x)), name=_name)


def floor_divide(a, b):
    return div(a, b, rounding_mode="floor")


def remainder(a, b):
    """The remainder with the sign of ``b`` (Python's %), as ATen computes it."""
    a, b_ = _coerce(a, b)
    name = "RemainderBackward1" if isinstance(b, Tensor) else "RemainderBackward0"
    return apply(P.remainder_p, (a, b_), name=name)


def fmod(a, b):
    """The remainder with the sign of ``a`` (C's fmod), unlike remainder's sign of ``b``."""
    a, b_ = _coerce(a, b)
    name = "FmodBackward1" if isinstance(b, Tensor) else "FmodBackward0"
    return apply(P.fmod_p, (a, b_), name=name)


def pow(x, exponent):
    if not isinstance(x, Tensor):
        exponent = _as_tensor(exponent)
        if isinstance(x, numbers.Number):
            e = _float(exponent) if not isinstance(x, _int) else exponent
            return apply(P.rpow_scalar_p, (e,), {"base": x})
        return pow(tensor(x), exponent)
    if isinstance(exponent, Tensor):
        x, exponent = _coerce(x, exponent)
        return apply(P.pow_p, (x, exponent))
    if isinstance(exponent, _pyfloat) and not x.dtype.is_floating_point:
        x = _float(x)
    return apply(P.pow_scalar_p, (x,), {"exponent": exponent})


def neg(x):
    return apply(P.neg_p, (x,))


negative = neg


def _unary(prim, float_only=True):
    def fn(input):
        x = _as_tensor(input)
        return apply(prim, (_float(x) if float_only else x,))
    fn.__name__ = prim.name
    fn.__doc__ = f"Elementwise {prim.name}."
    return fn


exp = _unary(P.exp_p)
log = _unary(P.log_p)
log1p = _unary(P.log1p_p)
sin = _unary(P.sin_p)
cos = _unary(P.cos_p)
tan = _unary(P.tan_p)
tanh = _unary(P.tanh_p)
sigmoid = _unary(P.sigmoid_p)
sqrt = _unary(P.sqrt_p)
rsqrt = _unary(P.rsqrt_p)
erf = _unary(P.erf_p)
abs = _unary(P.abs_p, float_only=False)
absolute = abs
sign = _unary(P.sign_p, float_only=False)
floor = _unary(P.floor_p, float_only=False)
ceil = _unary(P.ceil_p, float_only=False)
logical_not = _unary(P.logical_not_p, float_only=False)
isfinite = _unary(P.isfinite_p, float_only=False)


def relu(input):
    return apply(P.relu_p, (_as_tensor(input),))


def gelu(input, approximate: str = "none"):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return apply(P.gelu_p, (_float(_as_tensor(input)),), {"approximate": approximate})


def _gelu_backward(grad, input):
    """GELU's derivative times ``grad`` (torch.ops.aten.gelu_backward, approximate='none'):
    one primitive, NOTE: [Fused GELU backward]."""
    return apply(P.gelu_backward_p, (grad, input))


def round(input, decimals: int = 0):
    x = _as_tensor(input)
    if decimals:
        s = 10.0 ** decimals
        return apply(P.round_p, (x * s,)) / s
    return apply(P.round_p, (x,))


expm1 = _unary(P.expm1_p)


def log2(input):
    lx = log(input)
    return apply(P.div_p, (lx, _const(math.log(2), lx.dtype)), name="Log2Backward0")


def log10(input):
    lx = log(input)
    return apply(P.div_p, (lx, _const(math.log(10), lx.dtype)), name="Log10Backward0")


def square(input):
    return pow(input, 2)


def reciprocal(input):
    x = _float(_as_tensor(input))
    return apply(P.div_p, (_const(1, x.dtype), x), name="ReciprocalBackward0")


def rdiv(a, b):
    """b / a for a tensor ``a`` and a Python number ``b``: b * reciprocal(a), as PyTorch
    records it (MulBackward0 over ReciprocalBackward0)."""
    if isinstance(b, Tensor):
        return div(b, a)
    return mul(reciprocal(a), b)


def isnan(input):
    return ne(input, input)


def isinf(input):
    x = _as_tensor(input)
    return logical_and(logical_not(isfinite(x)), eq(x, x))


def clamp(input, min=None, max=None, *, _name=None):
    x = _as_tensor(input)
    if min is None and max is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        # tensor bounds: selects, so a tie at a bound sends the gradient to x (PyTorch's
        # ClampBackward0), unlike maximum/minimum, which split it
        if min is not None:
            x, lo = _coerce(x, min)
            x = apply(P.where_p, (lt(x, lo), lo, x),
                      name="ClampBackward0" if max is None else None)
        if max is not None:
            x, hi = _coerce(x, max)
            x = apply(P.where_p, (gt(x, hi), hi, x), name="ClampBackward0")
        return x
    if (isinstance(min, _pyfloat) or isinstance(max, _pyfloat)) and not x.dtype.is_floating_point:
        x = _float(x)
    return apply(P.clamp_p, (x,), {"min": min, "max": max}, name=_name or "ClampBackward1")


clip = clamp


def clamp_min(input, min):
    return clamp(input, min=min, _name="ClampMinBackward0")


def clamp_max(input, max):
    return clamp(input, max=max, _name="ClampMaxBackward0")


def _binary(prim):
    def fn(input, other):
        a, b = _coerce(input, other)
        return apply(prim, (a, b))
    fn.__name__ = prim.name
    return fn


maximum = _binary(P.maximum_p)
minimum = _binary(P.minimum_p)
eq = _binary(P.eq_p)
ne = _binary(P.ne_p)
lt = _binary(P.lt_p)
le = _binary(P.le_p)
gt = _binary(P.gt_p)
ge = _binary(P.ge_p)
greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne


def _logical(prim):
    def fn(input, other):
        return apply(prim, (_as_tensor(input), _as_tensor(other)))
    fn.__name__ = prim.name
    return fn


logical_and = _logical(P.logical_and_p)
logical_or = _logical(P.logical_or_p)
logical_xor = _logical(P.logical_xor_p)


def where(condition, input=None, other=None):
    """where(cond, x, y): x where cond holds, else y (scalars allowed)."""
    if input is None and other is None:
        return nonzero(condition, as_tuple=True)
    cond = _as_tensor(condition)
    if cond.dtype is not dtypes.bool_:
        if cond.dtype is not dtypes.uint8:
            raise RuntimeError("where expected condition to be a boolean tensor, but got a "
                               f"tensor with dtype {_torch_type_name(cond.dtype)}")
        cond = ne(cond, 0)
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):
        # two numbers: the dtype their kinds give (bool, int64 or the default float)
        cat = builtins.max(_scalar_category(input), _scalar_category(other))
        dt = _SCALAR_DEFAULTS[cat] or dtypes.get_default_dtype()
        input, other = _const(input, dt), _const(other, dt)
    x, y = _coerce(input, other)
    return apply(P.where_p, (cond, x, y))


def masked_fill(input, mask, value):
    x = input
    if _as_tensor(mask).dtype is not dtypes.bool_:
        raise RuntimeError("masked_fill_ only supports boolean masks, but got mask with dtype "
                           f"{_C_TYPE_NAMES.get(_as_tensor(mask).dtype.name)}")
    v = value if isinstance(value, Tensor) else _const(value, x.dtype)
    if v.dtype is not x.dtype:
        v = cast(v, x.dtype)
    return apply(P.where_p, (_as_tensor(mask), v, x), name="MaskedFillBackward0")


def _torch_type_name(dtype: DType) -> str:
    from .tensor import _TORCH_TYPE_NAMES
    return _TORCH_TYPE_NAMES[dtype.name]


# the C type names some ATen messages print for a dtype (its caffe2 TypeMeta name)
_C_TYPE_NAMES = {"float32": "float", "float64": "double", "float16": "c10::Half",
                 "int64": "long int", "int32": "int", "int16": "short int",
                 "int8": "signed char", "uint8": "unsigned char", "bool": "bool"}


def nonzero(input, *, as_tuple=False):
    a = _as_tensor(input)._concrete("nonzero()")
    if a.ndim == 0:  # PyTorch: a 0-d input counts as one element with no coordinates
        hit = _int(_bool(a))
        if as_tuple:
            return (Tensor._make(np.zeros(hit, np.int64)),)
        return Tensor._make(np.zeros((hit, 0), np.int64))
    idx = np.nonzero(a)
    if as_tuple:
        return tuple(Tensor._make(i.astype(np.int64)) for i in idx)
    return Tensor._make(np.stack(idx, axis=1).astype(np.int64))


def argwhere(input) -> Tensor:
    """The coordinates of the nonzero entries, one row each (nonzero())."""
    return nonzero(input)


# ----------------------------------------------------------------------------
# reductions

def sum(input, dim=None, keepdim: _bool = False, *, dtype=None):
    x = _as_tensor(input)
    if dtype is not None:
        x = cast(x, dtype)
    elif not x.dtype.is_floating_point:
        x = cast(x, dtypes.int64)
    return apply(P.sum_p, (x,), {"axis": _axes(dim, x.ndim), "keepdim": _bool(keepdim)},
                 name="SumBackward0" if dim is None else "SumBackward1")


def mean(input, dim=None, keepdim: _bool = False, *, dtype=None):
    x = _as_tensor(input)
    if dtype is not None:
        x = cast(x, dtype)
    if not x.dtype.is_floating_point:
        raise RuntimeError("mean(): could not infer output dtype. Input dtype must be either a "
                           f"floating point or complex dtype. Got: {_TYPE_WORD[x.dtype.name]}. "
                           "Convert first, e.g. x.float().mean()")
    return apply(P.mean_p, (x,), {"axis": _axes(dim, x.ndim), "keepdim": _bool(keepdim)},
                 name="MeanBackward0" if dim is None else "MeanBackward1")


_TYPE_WORD = {"float32": "Float", "float64": "Double", "float16": "Half", "int64": "Long",
              "int32": "Int", "int16": "Short", "int8": "Char", "uint8": "Byte", "bool": "Bool",
              "bfloat16": "BFloat16"}


def prod(input, dim=None, keepdim: _bool = False, *, dtype=None):
    x = _as_tensor(input)
    if dtype is not None:
        x = cast(x, dtype)
    elif not x.dtype.is_floating_point:
        x = cast(x, dtypes.int64)
    return apply(P.prod_p, (x,), {"axis": _axes(dim, x.ndim), "keepdim": _bool(keepdim)},
                 name="ProdBackward0" if dim is None else "ProdBackward1")


def _amax_amin(extreme_p, name, input, dim, keepdim):
    x = _as_tensor(input)
    axis = _axes(dim, x.ndim)
    if x.ndim and len(axis) == x.ndim and not keepdim:
        # amax() of all entries: reduced with keepdim, so the rule spreads a NaN result's
        # gradient as torch's amax does (NaN everywhere), not as max() does
        r = apply(extreme_p, (x,), {"axis": axis, "keepdim": True})
        return _not_a_view(apply(P.reshape_p, (r,), {"shape": ()}, name=name))
    return apply(extreme_p, (x,), {"axis": axis, "keepdim": _bool(keepdim)}, name=name)


def amax(input, dim=(), keepdim: _bool = False):
    return _amax_amin(P.amax_p, "AmaxBackward0", input, dim, keepdim)


def amin(input, dim=(), keepdim: _bool = False):
    return _amax_amin(P.amin_p, "AminBackward0", input, dim, keepdim)


_minmax = collections.namedtuple("return_types", ["values", "indices"])


class _MinMax(_minmax):
    pass


def _max_min(extreme_p, arg_p, name, input, dim, keepdim, other):
    x = _as_tensor(input)
    if other is not None:
        return (maximum if extreme_p is P.amax_p else minimum)(x, other)
    if dim is None:
        if x.numel() == 0:
            raise RuntimeError(f"{name}(): Expected reduction dim to be specified for "
                               "input.numel() == 0.")
        return apply(extreme_p, (x,), {"axis": tuple(range(x.ndim)), "keepdim": False})
    if isinstance(dim, Tensor):
        return (maximum if extreme_p is P.amax_p else minimum)(x, dim)
    axis = _axes(dim, x.ndim)
    if x.ndim:
        idx = apply(arg_p, (x,), {"axis": axis or (0,), "keepdim": True})
    else:
        idx = Tensor._make(np.zeros((), np.int64))
    if not x.ndim:
        _dim(dim, 0)
        return _MinMax(apply(P.copy_p, (x,), name=f"{name.title()}Backward0"), idx)
    grad_name = f"{name.title()}Backward0"
    if keepdim:
        return _MinMax(apply(P.gather_p, (x, idx), {"axis": axis[0]}, name=grad_name), idx)
    values = apply(P.gather_p, (x, idx), {"axis": axis[0]})
    shape = values.shape[:axis[0]] + values.shape[axis[0] + 1:]
    values = apply(P.reshape_p, (values,), {"shape": shape}, name=grad_name)
    return _MinMax(_not_a_view(values), _not_a_view(squeeze(idx, axis[0])))


def max(input, dim=None, keepdim: _bool = False, *, other=None):
    """max(x) -> the largest value; max(x, dim) -> (values, indices); max(x, y) -> maximum."""
    return _max_min(P.amax_p, P.argmax_p, "max", input, dim, keepdim, other)


def min(input, dim=None, keepdim: _bool = False, *, other=None):
    return _max_min(P.amin_p, P.argmin_p, "min", input, dim, keepdim, other)


def _arg(prim, input, dim, keepdim):
    x = _as_tensor(input)
    if dim is None:
        r = apply(prim, (reshape(x, (-1,)),), {"axis": (0,), "keepdim": False})
        return _not_a_view(reshape(r, (1,) * x.ndim)) if keepdim else r
    return apply(prim, (x,), {"axis": (_dim(dim, x.ndim),), "keepdim": _bool(keepdim)})


def argmax(input, dim=None, keepdim: _bool = False):
    return _arg(P.argmax_p, input, dim, keepdim)


def argmin(input, dim=None, keepdim: _bool = False):
    return _arg(P.argmin_p, input, dim, keepdim)


def _correction(unbiased, correction):
    if correction is not None:
        return _int(correction)
    return 1 if unbiased is None or unbiased else 0


def var(input, dim=None, unbiased=None, keepdim: _bool = False, *, correction=None):
    x = _float(_as_tensor(input))
    if isinstance(dim, _bool):  # var(x, False): the old positional 'unbiased'
        dim, unbiased = None, dim
    return apply(P.var_p, (x,), {"axis": _axes(dim, x.ndim),
                                 "correction": _correction(unbiased, correction),
                                 "keepdim": _bool(keepdim)})


def std(input, dim=None, unbiased=None, keepdim: _bool = False, *, correction=None):
    v = var(input, dim, unbiased, keepdim, correction=correction)
    # PyTorch's std gradient is 0 where the std is 0 (sqrt's would be inf, and the
    # var rule's 0 * inf nan); a nan std (one element) keeps its nan gradient
    nonzero = ne(v, 0)
    s = apply(P.sqrt_p, (apply(P.where_p, (nonzero, v, _const(1, v.dtype))),))
    return apply(P.where_p, (nonzero, s, _const(0, v.dtype)), name="StdBackward0")


def logsumexp(input, dim, keepdim: _bool = False):
    x = _float(_as_tensor(input))
    return apply(P.logsumexp_p, (x,), {"axis": _axes(dim, x.ndim), "keepdim": _bool(keepdim)})


def norm(input, p="fro", dim=None, keepdim: _bool = False, dtype=None):
    x = _float(_as_tensor(input))
    if p in ("fro", None):
        p = 2
    if p == "nuc" or (isinstance(p, str) and dim is not None):
        from . import linalg
        return linalg.matrix_norm(x, p, (-2, -1) if dim is None else dim, keepdim)
    return apply(P.norm_p, (x,), {"ord": _pyfloat(p) if p != math.inf else math.inf,
                                  "axis": _axes(dim, x.ndim), "keepdim": _bool(keepdim)})


def cumsum(input, dim, *, dtype=None):
    x = _as_tensor(input)
    if dtype is not None:
        x = cast(x, dtype)
    elif not x.dtype.is_floating_point:
        x = cast(x, dtypes.int64)
    d = _dim(dim, x.ndim)
    if x.ndim == 0:
        r = apply(P.cumsum_p, (reshape(x, (1,)),), {"axis": 0})
        return _not_a_view(apply(P.reshape_p, (r,), {"shape": ()}, name="CumsumBackward0"))
    return apply(P.cumsum_p, (x,), {"axis": d})


def _normalize_along(prim, grad_name, input, dim, dtype):
    """softmax / log_softmax: a 0-d input goes through a 1-element vector."""
    x = _float(_as_tensor(input))
    if dtype is not None:
        x = cast(x, dtype)
    if x.ndim == 0:
        _dim(dim, 0)
        r = apply(prim, (reshape(x, (1,)),), {"axis": 0})
        return _not_a_view(apply(P.reshape_p, (r,), {"shape": ()}, name=grad_name))
    return apply(prim, (x,), {"axis": _dim(_default_dim(dim, x), x.ndim)})


def softmax(input, dim=None, dtype=None):
    return _normalize_along(P.softmax_p, "SoftmaxBackward0", input, dim, dtype)


def log_softmax(input, dim=None, dtype=None):
    return _normalize_along(P.log_softmax_p, "LogSoftmaxBackward0", input, dim, dtype)


def _default_dim(dim, x):
    if dim is not None:
        return dim
    import warnings
    warnings.warn("Implicit dimension choice for softmax has been deprecated. Change the call "
                  "to include dim=X as an argument.", stacklevel=3)
    return 0 if x.ndim in (0, 1, 3) else 1


def all(input, dim=None, keepdim: _bool = False):
    x = _as_tensor(input)
    return eq(sum(logical_not(cast(x, dtypes.bool_)), dim, keepdim), 0)


def any(input, dim=None, keepdim: _bool = False):
    x = _as_tensor(input)
    return gt(sum(cast(x, dtypes.bool_), dim, keepdim), 0)


def _values(x):
    """The numbers of a tensor (one that requires grad too: comparing needs no graph)."""
    return np.asarray(x.detach() if isinstance(x, Tensor) else x)


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False) -> _bool:
    """Whether every entry isclose(). Traced, the answer stays a 0-d bool tensor, so a
    compiled function breaks the graph only where Python reads it (``if allclose(..)``)."""
    close = all(isclose(input, other, rtol, atol, equal_nan))
    return close if trace_state.current is not None else _bool(close._data)


def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """|input - other| <= atol + rtol * |other|, elementwise (equal infinities are close;
    NaNs only with equal_nan). Made of elementwise ops: no graph break when compiled."""
    a, b = _as_tensor(input), _as_tensor(other)
    if a.dtype is not b.dtype:
        raise RuntimeError(f"{_TYPE_WORD[a.dtype.name]} did not match "
                           f"{_TYPE_WORD[b.dtype.name]}")
    a, b = a.detach(), b.detach()
    close = eq(a, b)
    if equal_nan and a.dtype.is_floating_point:
        close = logical_or(close, logical_and(isnan(a), isnan(b)))
    if rtol == 0 and atol == 0 or a.dtype is dtypes.bool_:
        return close
    if not a.dtype.is_floating_point:
        a, b = cast(a, dtypes.get_default_dtype()), cast(b, dtypes.get_default_dtype())
    error = abs(a - b)
    return logical_or(close, logical_and(isfinite(error), le(error, atol + rtol * abs(b))))


def equal(input, other) -> _bool:
    return input.shape == other.shape and _bool(np.array_equal(_values(input),
                                                               _values(other)))


# ----------------------------------------------------------------------------
# matmul

def matmul(input, other):
    if _autocast.enabled:
        input, other = _amp.lower(input, other)
    a, b = _coerce(input, other)
    if a is not input or b is not other:  # PyTorch does not promote matmul operands
        raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: "
                           f"{_C_TYPE[input.dtype.name]} != {_C_TYPE[other.dtype.name]}")
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError("both arguments to matmul need to be at least 1D, but they are "
                           f"{a.ndim}D and {b.ndim}D")
    if a.ndim >= 2 and b.ndim >= 2:
        return apply(P.matmul_p, (a, b), name=_matmul_name(a, b))
    if a.ndim == 1 and b.ndim == 1:
        if a.shape[0] != b.shape[0]:
            raise RuntimeError(f"inconsistent tensor size, expected tensor [{a.shape[0]}] and src "
                               f"[{b.shape[0]}] to have the same number of elements, but got "
                               f"{a.shape[0]} and {b.shape[0]} elements respectively")
        r = apply(P.matmul_p, (reshape(a, (1, -1)), reshape(b, (-1, 1))))
        return _not_a_view(apply(P.reshape_p, (r,), {"shape": ()}, name="DotBackward0"))
    if b.ndim == 1:
        r = apply(P.matmul_p, (a, reshape(b, (-1, 1))))
        return _not_a_view(apply(P.reshape_p, (r,), {"shape": r.shape[:-1]},
                                 name="MvBackward0" if a.ndim == 2 else "UnsafeViewBackward0"))
    r = apply(P.matmul_p, (reshape(a, (1, -1)), b))
    shape = r.shape[:-2] + r.shape[-1:]
    return _not_a_view(apply(P.reshape_p, (r,), {"shape": shape},
                             name="SqueezeBackward4" if b.ndim == 2 else "UnsafeViewBackward0"))


_C_TYPE = {"float32": "float", "float64": "double", "float16": "c10::Half", "int64": "long int",
           "int32": "int", "int16": "short int", "int8": "signed char", "uint8": "unsigned char",
           "bool": "bool", "bfloat16": "c10::BFloat16"}


def _matmul_name(a, b) -> str:
    # NOTE: [matmul grad_fn names]. PyTorch's name for the last node depends on how it
    # folds the batch: a 2-d first operand (or a 3-d one with batch 1 against a 3-d
    # second) times a batched second one is computed transposed and shows
    # CloneBackward0 when the first operand requires grad; other batched products show
    # UnsafeViewBackward0. Only the name differs; the primitive is the same.
    if a.ndim == 2 and b.ndim == 2:
        return "MmBackward0"

    def matrix_like(t, other):
        return t.ndim <= 2 or (t.ndim == 3 and other.ndim == 3 and t.shape[0] == 1)

    if a.ndim >= 3 and matrix_like(b, a):
        return "UnsafeViewBackward0"
    if b.ndim >= 3 and matrix_like(a, b) and a._rg:
        # the transposed result is copied to contiguous, unless it already is one
        # (a single row or column): then the transpose itself is the last node
        return "TransposeBackward0" if 1 in (a.shape[-2], b.shape[-1]) else "CloneBackward0"
    return "UnsafeViewBackward0"


def mm(input, mat2):
    if input.ndim != 2 or mat2.ndim != 2:
        raise RuntimeError(f"mm: expected 2D tensors, got {input.ndim}D and {mat2.ndim}D "
                           "(use matmul for batched or 1D operands)")
    return matmul(input, mat2)


def bmm(input, mat2):
    if input.ndim != 3 or mat2.ndim != 3:
        raise RuntimeError(f"bmm: expected 3D tensors, got {input.ndim}D and {mat2.ndim}D")
    if input.shape[0] != mat2.shape[0]:
        raise RuntimeError(f"bmm: batch sizes differ: {input.shape[0]} and {mat2.shape[0]}")
    if _autocast.enabled:
        input, mat2 = _amp.lower(input, mat2)
    a, b = _coerce(input, mat2)
    return apply(P.matmul_p, (a, b), name="BmmBackward0")


def mv(input, vec):
    return matmul(input, vec)


def dot(input, other):
    if input.ndim != 1 or other.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {input.ndim}D and {other.ndim}D tensors")
    return matmul(input, other)


def outer(input, vec2):
    return mul(reshape(input, (-1, 1)), reshape(vec2, (1, -1)))


def addmm(input, mat1, mat2, *, beta=1, alpha=1):
    if _autocast.enabled:
        input, mat1, mat2 = _amp.lower(input, mat1, mat2)
    if mat1.dtype in _ROUND_ONCE and isinstance(input, Tensor) and input.dtype is mat1.dtype:
        return _rounded_once(addmm, mat1.dtype, input, mat1, mat2, beta=beta, alpha=alpha)
    prod_ = matmul(mat1, mat2)
    if alpha != 1:
        prod_ = prod_ * alpha
    base = input if beta == 1 else input * beta
    a, b = _coerce(base, prod_)
    return apply(P.add_p, (a, b), name="AddmmBackward0")


# ----------------------------------------------------------------------------
# shapes

def _infer_shape(shape, numel):
    shape = list(shape)
    for i, s in enumerate(shape):
        if s < -1:
            raise RuntimeError(f"invalid shape dimension {s} at index {i} of shape {shape}")
    neg = [i for i, s in enumerate(shape) if s == -1]
    if len(neg) > 1:
        raise RuntimeError("only one dimension can be inferred")
    if neg:
        rest = 1
        for s in shape:
            if s != -1:
                rest *= s
        if rest == 0 or numel % rest:
            raise RuntimeError(f"shape '{shape}' is invalid for input of size {numel}")
        shape[neg[0]] = numel // rest
    return tuple(shape)


def reshape(input, *shape, _name=None):
    x = input
    shape = _infer_shape(_shape_args(shape), x.numel())
    if shape == x.shape:
        return apply(P.reshape_p, (x,), {"shape": shape}, name=_name) if x._rg else x
    if _name is None and x._rg and not _viewable(x, shape):
        _name = "UnsafeViewBackward0"  # PyTorch copies, then views the copy
    return apply(P.reshape_p, (x,), {"shape": shape}, name=_name)


def _viewable(x: Tensor, shape: tuple) -> _bool:
    """Whether ``x`` (its array's strides) can be viewed with ``shape`` without a copy."""
    data = x.__dict__.get("_data")
    if data.__class__ is not np.ndarray or data.flags.c_contiguous:
        return True
    strides = tuple(st // data.itemsize for st in data.strides)
    return _view_strides(data.shape, strides, shape) is not None


def view(input, *shape):
    if len(shape) == 1 and (isinstance(shape[0], (DType, np.dtype)) or shape[0] in (
            _pyfloat, _int, _bool)):
        # view(dtype): the same memory read as another dtype (no gradient, as in PyTorch)
        dt = as_dtype(shape[0])
        if dt is input.dtype:
            return input
        P.bitcast_p.shape(input, dtype=dt)  # PyTorch's errors
        return apply(P.bitcast_p, (input,), {"dtype": dt})
    x = input
    new = _infer_shape(_shape_args(shape), x.numel())
    if not _viewable(x, new):
        raise RuntimeError("view size is not compatible with input tensor's size and stride "
                           "(at least one dimension spans across two contiguous subspaces). "
                           "Use .reshape(...) instead.")
    return reshape(x, new)


def _view_strides(old_shape, old_strides, new_shape):
    """The strides a view of shape ``new_shape`` has over memory laid out as
    (``old_shape``, ``old_strides``), or None where no view can (ATen's computeStride):
    the old dims split into runs that are contiguous with each other, and each run must
    be made of whole new dims."""
    if not old_shape:
        return (1,) * len(new_shape)
    numel = math.prod(old_shape)
    if numel == 0:
        return tuple(old_strides) if tuple(old_shape) == tuple(new_shape) else ()
    new_strides = [0] * len(new_shape)
    view_d = len(new_shape) - 1
    chunk_base = old_strides[-1]
    tensor_numel = view_numel = 1
    for d in range(len(old_shape) - 1, -1, -1):
        tensor_numel *= old_shape[d]
        if d == 0 or (old_shape[d - 1] != 1
                      and old_strides[d - 1] != tensor_numel * chunk_base):
            while view_d >= 0 and (view_numel < tensor_numel or new_shape[view_d] == 1):
                new_strides[view_d] = view_numel * chunk_base
                view_numel *= new_shape[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return None
            if d > 0:
                chunk_base = old_strides[d - 1]
                tensor_numel = view_numel = 1
    return tuple(new_strides) if view_d == -1 else None


def flatten(input, start_dim: _int = 0, end_dim: _int = -1):
    x = input
    if x.ndim == 0:
        _dim(start_dim, 0)
        _dim(end_dim, 0)
        return reshape(x, (1,))
    s, e = _dim(start_dim, x.ndim), _dim(end_dim, x.ndim)
    if s > e:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    if s == e:
        return x
    shape = x.shape[:s] + (math.prod(x.shape[s:e + 1]),) + x.shape[e + 1:]
    return reshape(x, shape)


def unflatten(input, dim, sizes):
    d = _dim(dim, input.ndim)
    return reshape(input, input.shape[:d] + tuple(sizes) + input.shape[d + 1:])


def squeeze(input, dim=None, *, _name=None):
    x = input
    if dim is None:
        shape = tuple(s for s in x.shape if s != 1)
        return apply(P.reshape_p, (x,), {"shape": shape}, name=_name or "SqueezeBackward0")
    axes = _axes(dim, x.ndim)
    shape = tuple(s for i, s in enumerate(x.shape) if not (i in axes and s == 1))
    return apply(P.reshape_p, (x,), {"shape": shape}, name=_name or (
        "SqueezeBackward1" if not isinstance(dim, (tuple, list)) else "SqueezeBackward2"))


def unsqueeze(input, dim: _int, *, _name="UnsqueezeBackward0"):
    x = input
    d = _dim(dim, x.ndim + 1)
    shape = x.shape[:d] + (1,) + x.shape[d:]
    return apply(P.reshape_p, (x,), {"shape": shape}, name=_name)


def permute(input, *dims):
    x = input
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = dims[0]
    perm = tuple(_dim(d, x.ndim) for d in dims)
    if len(perm) != x.ndim or sorted(perm) != list(range(x.ndim)):
        raise RuntimeError(f"permute(sparse_coo): number of dimensions in the tensor input does "
                           f"not match the length of the desired ordering of dimensions i.e. "
                           f"input.dim() = {x.ndim} is not equal to len(dims) = {len(dims)}"
                           if len(perm) != x.ndim else f"permute(): duplicate dims in {list(dims)}")
    return apply(P.permute_p, (x,), {"perm": perm})


def transpose(input, dim0: _int, dim1: _int, _name="TransposeBackward0"):
    x = input
    if x.ndim < 2:
        _dim(dim0, x.ndim)
        _dim(dim1, x.ndim)
        return x if not x._rg else apply(P.reshape_p, (x,), {"shape": x.shape}, name=_name)
    a, b = _dim(dim0, x.ndim), _dim(dim1, x.ndim)
    perm = list(range(x.ndim))
    perm[a], perm[b] = perm[b], perm[a]
    return apply(P.permute_p, (x,), {"perm": tuple(perm)}, name=_name)


swapaxes = swapdims = transpose


def t(input, *, _name="TBackward0"):
    if input.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {input.ndim}D")
    return transpose(input, 0, -1, _name=_name) if input.ndim == 2 else \
        (apply(P.reshape_p, (input,), {"shape": input.shape}, name=_name) if input._rg else input)


def broadcast_to(input, size):
    x = input
    size = _shape_args((size,))
    if size == x.shape:
        return x
    return apply(P.broadcast_to_p, (x,), {"shape": size})


def expand(input, *sizes):
    x = input
    sizes = _shape_args(sizes)
    if len(sizes) < x.ndim:
        raise RuntimeError(f"expand: the number of sizes provided ({len(sizes)}) must be greater "
                           f"or equal to the number of dimensions in the tensor ({x.ndim})")
    off = len(sizes) - x.ndim
    shape = tuple(x.shape[i - off] if (s == -1 and i >= off) else s for i, s in enumerate(sizes))
    if shape == x.shape:
        return x
    return apply(P.broadcast_to_p, (x,), {"shape": shape})


def broadcast_tensors(*tensors):
    shape = P.broadcast_shapes(*[t.shape for t in tensors])
    return tuple(broadcast_to(t, shape) for t in tensors)


def flip(input, dims):
    x = input
    if isinstance(dims, _int):
        dims = (dims,)
    return apply(P.flip_p, (x,), {"axes": tuple(_dim(d, x.ndim) for d in dims)})


def cat(tensors, dim: _int = 0):
    tensors = [_as_tensor(t) for t in tensors]
    if not tensors:
        raise RuntimeError("torch.cat(): expected a non-empty list of Tensors")
    rt = result_type(*tensors)
    tensors = [cast(t, rt) for t in tensors]
    if len(tensors) == 1:
        return tensors[0].clone() if tensors[0]._rg else tensors[0]
    return apply(P.cat_p, tuple(tensors), {"axis": _dim(dim, tensors[0].ndim)})


concat = concatenate = cat


def stack(tensors, dim: _int = 0):
    tensors = [_as_tensor(t) for t in tensors]
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    shape0 = tensors[0].shape
    for i, t_ in enumerate(tensors):
        if t_.shape != shape0:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got "
                               f"{list(shape0)} at entry 0 and {list(t_.shape)} at entry {i}")
    d = _dim(dim, tensors[0].ndim + 1)
    parts = [reshape(t_, t_.shape[:d] + (1,) + t_.shape[d:]) for t_ in tensors]
    rt = result_type(*parts)
    parts = tuple(cast(p, rt) for p in parts)
    if len(parts) == 1:  # a copy, as PyTorch's: never a view of the input
        return apply(P.copy_p, parts, name="StackBackward0")
    return apply(P.cat_p, parts, {"axis": d}, name="StackBackward0")


def split(tensor_, split_size_or_sections, dim: _int = 0):
    x = tensor_
    d = _dim(dim, x.ndim)
    n = x.shape[d]
    if isinstance(split_size_or_sections, (_int, np.integer)):
        step = _int(split_size_or_sections)
        if step <= 0:
            raise RuntimeError(f"split expects split_size be positive, but got {step}")
        sizes = [builtins.min(step, n - i) for i in range(0, n, step)] or [0]
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != n:
            raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {n} "
                               f"(input tensor's size at dimension {d}), but got "
                               f"split_sizes={sizes}")
    out, start = [], 0
    if isinstance(split_size_or_sections, (_int, np.integer)):
        name = "SplitBackward0"
    else:
        name = "SplitWithSizesBackward0"
    for s in sizes:
        idx = (_slice(None),) * d + (_slice(start, start + s),)
        out.append(apply(P.getitem_p, (x,), {"index": idx}, name=name))
        start += s
    _views.mark_multi_output(out)
    return tuple(out)


def chunk(input, chunks: _int, dim: _int = 0):
    if chunks <= 0:
        raise RuntimeError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
    n = input.shape[_dim(dim, input.ndim)]
    step = -(-n // chunks) if n else 1
    return split(input, step, dim)


def unbind(input, dim: _int = 0):
    d = _dim(dim, input.ndim)
    out = tuple(apply(P.getitem_p, (input,), {"index": (_slice(None),) * d + (i,)},
                      name="UnbindBackward0") for i in range(input.shape[d]))
    _views.mark_multi_output(out)
    return out


def select(input, dim, index):
    d = _dim(dim, input.ndim)
    return getitem(input, (_slice(None),) * d + (_int(index),))


def narrow(input, dim, start, length):
    if input.ndim == 0:
        raise RuntimeError("narrow() cannot be applied to a 0-dim tensor.")
    d = _dim(dim, input.ndim)
    if isinstance(start, Tensor):
        start = start.item()
    size = input.shape[d]
    if not -size <= start <= size:
        raise IndexError(f"start out of range (expected to be in range of [{-size}, {size}], "
                         f"but got {start})")
    if length < 0:
        raise RuntimeError("narrow(): length must be non-negative.")
    start = start % size if start < 0 else start
    if start + length > size:
        raise RuntimeError(f"start ({start}) + length ({length}) exceeds dimension size "
                           f"({size}).")
    index, _ = _parse_index(input, (_slice(None),) * d + (_slice(start, start + length),))
    return apply(P.getitem_p, (input,), {"index": index}, name="SliceBackward0")


def _check_matrix_like(x, name):
    if x.ndim < 2:
        raise RuntimeError(f"{name}: input tensor must have at least 2 dimensions")


def tril(input, diagonal=0):
    _check_matrix_like(input, "tril")
    n, m = input.shape[-2:]
    mask = Tensor._make(np.tril(np.ones((n, m), bool), diagonal))
    return apply(P.where_p, (mask, input, _const(0, input.dtype)), name="TrilBackward0")


def triu(input, diagonal=0):
    _check_matrix_like(input, "triu")
    n, m = input.shape[-2:]
    mask = Tensor._make(np.triu(np.ones((n, m), bool), diagonal))
    return apply(P.where_p, (mask, input, _const(0, input.dtype)), name="TriuBackward0")


# ----------------------------------------------------------------------------
# indexing

def _parse_index(x: Tensor, key):
    if not isinstance(key, tuple):
        key = (key,)
    static, tensors = [], []
    for k in key:
        if isinstance(k, Tensor):
            if k.dtype is dtypes.bool_ or k.dtype._category == 1:
                static.append(P.TENSOR)
                tensors.append(k if k.dtype is dtypes.bool_ else cast(k, dtypes.int64))
            else:
                raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
        elif isinstance(k, (list, np.ndarray)):
            arr = np.asarray(k)
            if arr.dtype.kind not in "biu":
                raise IndexError(f"index arrays must be integer or bool, got {arr.dtype}")
            static.append(P.TENSOR)
            tensors.append(Tensor._make(arr if arr.dtype == np.bool_ else arr.astype(np.int64)))
        elif isinstance(k, _slice):
            static.append(_slice(*(None if v is None else _int(v)
                                   for v in (k.start, k.stop, k.step))))
            if k.step is not None and _int(k.step) <= 0:
                raise ValueError("step must be greater than zero")
        elif k is None or k is Ellipsis:
            static.append(k)
        elif isinstance(k, (_bool, np.bool_)):
            static.append(P.TENSOR)
            tensors.append(Tensor._make(np.asarray(k)))
        elif isinstance(k, (_int, np.integer)):
            static.append(_int(k))
        else:
            raise IndexError(f"only integers, slices (`:`), ellipsis (`...`), None and long or "
                             f"byte Variables are valid indices (got {type(k).__name__})")
    _check_bounds(x.shape, static, tensors)
    return tuple(static), tuple(tensors)


def _check_bounds(shape, static, tensors=()):
    # ints are checked here so the error names the dim, as PyTorch does; a bool mask
    # consumes as many dims as it has (a 0-d mask none), any other entry one
    masks = iter(tensors)
    widths, int_indices = [], []
    for s in static:
        if s is P.TENSOR:
            t = next(masks)
            widths.append(t.ndim if t.dtype is dtypes.bool_ else 1)
            int_indices.append(None if t.dtype is dtypes.bool_ else t._data)
        else:
            widths.append(0 if s is None or s is Ellipsis else 1)
    n_consumed = builtins.sum(widths)
    dim = 0
    for s, w in zip(static, widths, strict=True):
        if s is Ellipsis:
            dim += len(shape) - n_consumed
            continue
        if dim + w > len(shape):
            raise IndexError(f"too many indices for tensor of dimension {len(shape)}")
        if isinstance(s, _int) and not (-shape[dim] <= s < shape[dim]):
            raise IndexError(f"index {s} is out of bounds for dimension {dim} "
                             f"with size {shape[dim]}")
        if s is P.TENSOR:
            a = int_indices.pop(0)
            if a.__class__ is np.ndarray and a.size:
                bad = a[(a < -shape[dim]) | (a >= shape[dim])]
                if bad.size:
                    raise IndexError(f"index {bad.flat[0]} is out of bounds for dimension {dim} "
                                     f"with size {shape[dim]}")
        dim += w


def getitem(x: Tensor, key, tensors=None) -> Tensor:
    # a bare slice (x[:], not x[:, ...]) takes PyTorch's one-slice path, which always
    # records a slice; in a tuple, a slice keeping the whole dim records nothing
    name = "SliceBackward0" if isinstance(key, _slice) else None
    if tensors is None:
        key, tensors = _parse_index(x, key)
    elif not isinstance(key, tuple):
        key = (key,)
    return apply(P.getitem_p, (x,) + tuple(tensors), {"index": key}, name=name)


def _index_add(base: Tensor, g: Tensor, tensors, index) -> Tensor:
    """base with g added at base[index] (duplicate indices accumulate)."""
    return apply(P.index_add_p, (base, g) + tuple(tensors), {"index": index})


def _index_put(base: Tensor, v: Tensor, tensors, index, name=None) -> Tensor:
    """base with base[index] set to v, out of place."""
    if v.dtype is not base.dtype:
        v = cast(v, base.dtype)
    return apply(P.index_put_p, (base, v) + tuple(tensors), {"index": index}, name=name)


def setitem(x: Tensor, key, value) -> None:
    index, tensors = _parse_index(x, key)
    v = value if isinstance(value, Tensor) else _const(value, x.dtype)
    if not tensors and x._data.__class__ is np.ndarray and x.ndim > 1 and \
            overlaps_itself(x._data) and not overlaps_itself(x._data[index]):
        # a write into part of overlapping unfold windows: torch writes just that part
        getitem(x, key).copy_(v)
        return
    from .autograd.grad_mode import _state
    recording = _state.enabled and (x._rg or v._rg)
    if not recording and trace_state.current is None and x._data.__class__ is np.ndarray \
            and not _op_state.active:  # forward AD, profiler, anomaly mode see every op
        if not make_writable(x._data):
            commit_inplace(x, x)  # raises the clear error
        np_index = P._fill(index, [t._data for t in tensors]) if tensors else index
        x._data[np_index] = v._data
        x._vc[0] += 1
        return
    # an index that selects all of x (full slices, ...) makes no view in PyTorch: the
    # write is a plain fill_ (0-d value) or copy_ on x, and is named so
    name = None
    if not tensors and P._getitem_name({"index": index}, x) == "AliasBackward0":
        name = "FillBackward3" if v.ndim == 0 else "CopyBackwards"
    commit_inplace(x, _index_put(x, v, tensors, index, name=name))


def gather(input, dim, index):
    x = _as_tensor(input)
    index = _index_arg(index, "gather")
    if x.ndim == 0 and index.ndim == 0:
        _dim(dim, 0)
        r = apply(P.gather_p, (reshape(x, (1,)), reshape(index, (1,))), {"axis": 0})
        return _back_to_0d(r, 0, "GatherBackward0")
    d = _dim(dim, x.ndim)
    if index.ndim == x.ndim:
        _check_index_values(index, x.shape[d], d)
    return apply(P.gather_p, (x, index), {"axis": d})


def take_along_dim(input, indices, dim):
    return gather(input, dim, indices)


def _scatter_add(base, idx, g, axis: _int):
    """base with g added at base[.., idx, ..] along ``axis`` (the transpose of gather)."""
    return apply(P.scatter_add_p, (base, idx, g), {"axis": axis})


def scatter_add(input, dim, index, src):
    x0 = input
    x, d, index, src = _scatter_args(input, dim, index, src, "scatter_add")
    r = _scatter_add(x, index, src, d)
    return _back_to_0d(r, x0.ndim) if x0.ndim == 0 else r


def index_select(input, dim, index):
    x = input
    d = _dim(dim, x.ndim)
    idx = (_slice(None),) * d + (P.TENSOR,)
    return apply(P.getitem_p, (x, cast(_as_tensor(index), dtypes.int64)), {"index": idx},
                 name="IndexSelectBackward0")


def masked_select(input, mask):
    """The elements of ``input`` where ``mask`` (broadcast with it) is True, as a 1-d tensor."""
    x, m = _as_tensor(input), _as_tensor(mask)
    if m.dtype is not dtypes.bool_:
        raise RuntimeError("masked_select: expected BoolTensor for mask")
    shape = P.broadcast_shapes(x.shape, m.shape)
    x = x if x.shape == shape else broadcast_to(x, shape)
    m = m if m.shape == shape else broadcast_to(m, shape)
    return apply(P.getitem_p, (x, m), {"index": (P.TENSOR,)}, name="MaskedSelectBackward0")


# ----------------------------------------------------------------------------
# sum_to: the one place gradients are reduced back over broadcast dimensions

def _conv(x: Tensor, w: Tensor, *, stride, padding, dilation, lhs_dilation, groups) -> Tensor:
    """The ``conv`` primitive (see NOTE: [One conv primitive]); nn.functional.conv*d wrap it."""
    return apply(P.conv_p, (x, w), {"stride": tuple(stride), "padding": tuple(padding),
                                    "dilation": tuple(dilation),
                                    "lhs_dilation": tuple(lhs_dilation), "groups": groups})


def sum_to(g: Tensor, shape: tuple) -> Tensor:
    """Sum ``g`` down to ``shape`` (the inverse of broadcasting ``shape`` up to g's)."""
    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape)
                                      if s == 1 and g.shape[lead + i] != 1)
    r = apply(P.sum_p, (g,), {"axis": axes, "keepdim": False}) if axes else g
    if r.shape != shape:
        r = _not_a_view(apply(P.reshape_p, (r,), {"shape": shape}))
    return r


# ----------------------------------------------------------------------------
# creation

from .random import (  # noqa: E402,F401
    Generator,
    default_generator,
    get_rng_state,
    initial_seed,
    manual_seed,
    seed,
    set_rng_state,
)


def _gen(generator) -> Generator:
    if generator is None:
        return default_generator
    if not isinstance(generator, Generator):
        raise TypeError(f"generator must be a tracegrad.Generator, got {type(generator).__name__}")
    return generator


def _finish(data: np.ndarray, requires_grad: _bool, dev=None, random=None) -> Tensor:
    _check_device(dev)
    t = Tensor._make(data)
    tracer = trace_state.current
    if tracer is not None:
        # made inside a traced function: a literal, or a random op drawn afresh per call
        # (``random`` names the distribution, its static parameters and the generator)
        tracer.random(t, **random) if random else tracer.constant(t)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _np_from_data(data, dtype):
    if isinstance(data, Tensor):
        arr = np.array(data._concrete("tensor()"))
    elif isinstance(data, np.ndarray):
        arr = np.array(data)
        if dtype is None:
            return arr if arr.dtype in dtypes._BY_NP else arr.astype(_default_for(arr))
    elif isinstance(data, (list, tuple)) and _contains_tensor(data):
        arr = np.array(_to_nested(data))
    elif isinstance(data, np.generic):
        arr = np.array(data)
        if dtype is None and arr.dtype in dtypes._BY_NP:
            return arr  # a NumPy scalar keeps its dtype, as torch (np.float64 -> float64)
    else:
        arr = np.array(data)
        if dtype is None and isinstance(data, (list, tuple)):
            inferred = _sequence_dtype(data)
            if inferred is not None:
                return arr.astype(inferred.np)
    with np.errstate(over="ignore", invalid="ignore"):  # 1e300 -> inf in float32, as torch
        if dtype is not None:
            return arr.astype(as_dtype(dtype).np)
        return arr.astype(_default_for(arr), copy=False)


def _leaf_types(data, acc: set) -> set:
    kinds = set(map(type, data))
    if list in kinds or tuple in kinds:
        for d in data:
            if isinstance(d, (list, tuple)):
                _leaf_types(d, acc)
        kinds -= {list, tuple}
    acc |= kinds
    return acc


def _sequence_dtype(data):
    """torch's dtype for a nested list holding NumPy scalars (each keeps its dtype and
    they promote with the Python numbers as torch's ``promoteTypes``: [np.int32(1)] is
    int32, [np.float16(1), 2] float16), or None when it holds none (the default rule)."""
    kinds = _leaf_types(data, set())
    if not builtins.any(issubclass(k, np.generic) for k in kinds):
        return None
    out = None
    for k in kinds:
        if issubclass(k, np.generic):
            d = dtypes._BY_NP.get(np.dtype(k))
            if d is None:
                return None  # a NumPy type torch has no dtype for: the default rule
        elif issubclass(k, _bool):
            d = dtypes.bool_
        elif issubclass(k, int):
            d = dtypes.int64
        elif issubclass(k, float):
            d = dtypes.get_default_dtype()
        else:
            return None
        out = d if out is None else dtypes._promote(out, d)
    return out


def _contains_tensor(data):
    return builtins.any(isinstance(d, Tensor)
                        or (isinstance(d, (list, tuple)) and _contains_tensor(d))
                        for d in data)


def _to_nested(data):
    if isinstance(data, Tensor):
        return data.tolist()
    if isinstance(data, (list, tuple)):
        return [_to_nested(d) for d in data]
    return data


def _default_for(arr: np.ndarray):
    k = arr.dtype.kind
    if k == "b":
        return np.bool_
    if k in "iu":
        return np.int64 if arr.dtype != np.uint8 else np.uint8
    if k == "f":
        return dtypes.get_default_dtype().np if arr.dtype == np.float64 else arr.dtype
    if arr.dtype == dtypes.bfloat16.np:
        return arr.dtype
    raise TypeError(f"can't convert data of dtype {arr.dtype} to a tensor; "
                    "expected numbers or bools")


def tensor(data, *, dtype=None, device=None, requires_grad: _bool = False,
           pin_memory=False) -> Tensor:
    """Make a tensor from a (nested) list, a number, a NumPy array or a tensor (copied).

    >>> import tracegrad as tg
    >>> tg.tensor([[1, 2], [3, 4]])
    tensor([[1, 2],
            [3, 4]])
    """
    if dtype is not None and not isinstance(dtype, DType) and dtype not in (float, int, _bool):
        raise TypeError(f"tensor(): argument 'dtype' must be torch.dtype, not "
                        f"{type(dtype).__name__}")
    if isinstance(data, np.ndarray) and data.dtype == np.float64 and dtype is None:
        arr = np.array(data)
    else:
        arr = _np_from_data(data, dtype)
    return _finish(arr, requires_grad, device)


def as_tensor(data, dtype=None, device=None) -> Tensor:
    _check_device(device)
    if isinstance(data, Tensor) and data._wrapped:
        data = _unwrapped(data)
    if isinstance(data, Tensor) and (dtype is None or as_dtype(dtype) is data.dtype):
        return data
    if isinstance(data, np.ndarray) and dtype is None and data.dtype in dtypes._BY_NP:
        return Tensor._make(data)
    return tensor(data, dtype=dtype, device=device)


def from_numpy(ndarray: np.ndarray) -> Tensor:
    """A tensor sharing memory with the NumPy array."""
    if not isinstance(ndarray, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(ndarray).__name__})")
    dtypes.from_numpy_dtype(ndarray.dtype)
    return Tensor._make(ndarray)


def _creation_dtype(dtype):
    return as_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()


def zeros(*size, dtype=None, device=None, requires_grad: _bool = False, out=None) -> Tensor:
    return _finish(np.zeros(_shape_args(size), _creation_dtype(dtype).np), requires_grad, device)


def ones(*size, dtype=None, device=None, requires_grad: _bool = False) -> Tensor:
    return _finish(np.ones(_shape_args(size), _creation_dtype(dtype).np), requires_grad, device)


def empty(*size, dtype=None, device=None, requires_grad: _bool = False) -> Tensor:
    return _finish(np.zeros(_shape_args(size), _creation_dtype(dtype).np), requires_grad, device)


def full(size, fill_value, *, dtype=None, device=None, requires_grad: _bool = False) -> Tensor:
    if dtype is None:
        dtype = (dtypes.bool_ if isinstance(fill_value, _bool) else dtypes.int64
                 if isinstance(fill_value, _int) else dtypes.get_default_dtype())
    return _finish(np.full(_shape_args((size,)), fill_value, as_dtype(dtype).np), requires_grad,
                   device)


def eye(n, m=None, *, dtype=None, device=None, requires_grad: _bool = False) -> Tensor:
    return _finish(np.eye(n, m, dtype=_creation_dtype(dtype).np), requires_grad, device)


def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad: _bool = False):
    if end is None:
        start, end = 0, start
    if dtype is None:
        is_int = builtins.all(isinstance(v, (_int, np.integer)) for v in (start, end, step))
        dtype = dtypes.int64 if is_int else dtypes.get_default_dtype()
    dtype = as_dtype(dtype)
    if step == 0:
        raise RuntimeError("step must be nonzero")
    if not (math.isfinite(start) and math.isfinite(end)):
        raise RuntimeError(f"unsupported range: {start} -> {end}")
    if not ((step > 0 and end >= start) or (step < 0 and end <= start)):
        raise RuntimeError("upper bound and lower bound inconsistent with step sign")
    n = _int(math.ceil((end - start) / step))
    data = (start + np.arange(builtins.max(n, 0), dtype=np.float64) * step).astype(dtype.np)
    return _finish(data, requires_grad, device)


def _fma64(a, b, c):
    """a * b + c rounded once, in float64 (C's fma, which PyTorch's compiled kernels
    contract ``start + step * i`` to): Dekker's error-free product and Knuth's sum."""
    a, b, c = (np.asarray(v, np.float64) for v in (a, b, c))
    p = a * b
    split = 134217729.0  # 2**27 + 1
    ta, tb = split * a, split * b
    ah, bh = ta - (ta - a), tb - (tb - b)
    al, bl = a - ah, b - bh
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    s = p + c
    bb = s - p
    t = (p - (s - bb)) + (c - bb)
    return s + (t + e)


def _linspace_values(start, end, steps: _int, dtype: DType) -> np.ndarray:
    """PyTorch's linspace kernel: each half from its nearer end (``start + step * i``,
    ``end - step * (steps - 1 - i)``); integer dtypes truncate ``start``/``end`` first,
    step in float64, and truncate each value, as ``linspace(5, 10, 3, dtype=int32)``
    -> ``[5, 7, 10]``."""
    i = np.arange(steps)
    half = steps // 2
    if not dtype.is_floating_point:
        s0, e0 = _int(start), _int(end)
        if steps == 1:
            return np.full(1, s0, dtype.np)
        step = (_pyfloat(e0) - _pyfloat(s0)) / (steps - 1)
        fwd = _fma64(step, i, s0)
        bwd = _fma64(-step, steps - 1 - i, e0)
        return np.trunc(np.where(i < half, fwd, bwd)).astype(dtype.np)
    t = dtype.np.type
    s0, e0 = t(start), t(end)
    if steps == 1:
        return np.full(1, s0, dtype.np)
    # in the output precision; one rounding per value (fma), done in float64: exact for
    # float32 and float16 operands, Dekker's product for float64
    step = (e0 - s0) / t(steps - 1)
    with np.errstate(over="ignore", invalid="ignore"):
        fwd = _fma64(step, i, s0)
        bwd = _fma64(-step, steps - 1 - i, e0)
        return np.where(i < half, fwd, bwd).astype(dtype.np)


def _check_steps(steps):
    if not isinstance(steps, (_int, np.integer)) or isinstance(steps, _bool):
        raise TypeError(f"linspace(): argument 'steps' must be int, not {type(steps).__name__}")
    if steps < 0:
        raise RuntimeError("number of steps must be non-negative")
    return _int(steps)


def linspace(start, end, steps, *, dtype=None, device=None, requires_grad: _bool = False):
    """``steps`` evenly spaced values from ``start`` to ``end``, as PyTorch computes them.

    >>> linspace(5, 10, 3, dtype=int32)
    tensor([ 5,  7, 10], dtype=torch.int32)
    """
    dtype = _creation_dtype(dtype)
    data = _linspace_values(start, end, _check_steps(steps), dtype)
    return _finish(data, requires_grad, device)


def logspace(start, end, steps, base=10.0, *, dtype=None, device=None,
             requires_grad: _bool = False):
    """``base ** linspace(start, end, steps)``, each half from its nearer end (PyTorch's
    kernel: exponents in float64 for integer dtypes).

    >>> logspace(0, 3, 4)
    tensor([   1.,   10.,  100., 1000.])
    """
    dtype = _creation_dtype(dtype)
    steps = _check_steps(steps)
    if dtype.is_floating_point:
        exps = _linspace_values(start, end, steps, dtype)
        with np.errstate(over="ignore"):  # std::pow(double base, exponent)
            data = np.power(_pyfloat(base), exps.astype(np.float64))
    else:
        i = np.arange(steps)
        # as linspace, the ends are truncated first (but one step is base ** start)
        start_f, start, end = start, _int(start), _int(end)
        if steps == 1:
            exps = np.full(1, _pyfloat(start_f))
        else:
            step = (_pyfloat(end) - _pyfloat(start)) / (steps - 1)
            exps = np.where(i < steps // 2, _fma64(step, i, start),
                            _fma64(-step, steps - 1 - i, end))
        with np.errstate(over="ignore", invalid="ignore"):
            data = np.trunc(np.power(_pyfloat(base), exps)).astype(dtype.np)
    return _finish(data.astype(dtype.np), requires_grad, device)


def _random_shape(size) -> tuple:
    shape = _shape_args(size)
    if builtins.any(d < 0 for d in shape):
        bad = next(d for d in shape if d < 0)
        raise RuntimeError(f"Trying to create tensor with negative dimension {bad}: {list(shape)}")
    return shape


# NOTE: [Random draws while tracing]. Every random tensor, out of place (rand) or
# filled in place (uniform_, nn.init, dropout), comes from one of the _draw_*
# helpers below. Eagerly they return the generator's PyTorch-stream numbers; inside
# a trace the same numbers (the first call is eager's) are recorded as a ``random``
# equation fed by a per-call key from that generator, never as a constant. Parameters
# that are traced tensors (a Python float argument of a compiled function becomes
# one) are applied with tensor ops to a standard draw, so they stay dynamic too.

def _draw(g: Generator, data: np.ndarray, dist: str, redraw=None, **params) -> Tensor:
    # ``redraw()`` makes the same draw again (compile(random="eager") draws it each call)
    return _finish(data, False, random={"dist": dist, "generator": g, "redraw": redraw,
                                        **params})


def _static_number(x):
    """``x`` as a Python number, or None if it is a tensor whose value a trace must not
    bake in (an input of the compiled function, or computed from one)."""
    if not isinstance(x, Tensor):
        return x
    tracer = trace_state.current
    if x.ndim == 0 and (tracer is None or tracer.is_literal(x)):
        return x._data.item()
    return None


def _draw_uniform(g: Generator, shape, dtype: DType, low=0.0, high=1.0) -> Tensor:
    lo, hi = _static_number(low), _static_number(high)
    if lo is None or hi is None:  # U(0, 1) * (high - low) + low, in tensor ops
        u = _draw_uniform(g, shape, dtype)
        return cast(add(mul(u, sub(high, low)), low), dtype)
    lo, hi = _pyfloat(lo), _pyfloat(hi)
    data = g.uniform(shape, dtype, lo, hi)
    bounds = {} if (lo, hi) == (0.0, 1.0) else {"low": lo, "high": hi}
    return _draw(g, data, "uniform", lambda: g.uniform(shape, dtype, lo, hi), **bounds)


def _draw_normal(g: Generator, shape, dtype: DType, mean=0.0, std=1.0) -> Tensor:
    m, s = _static_number(mean), _static_number(std)
    if m is None or s is None:  # N(0, 1) * std + mean, in tensor ops
        return cast(add(mul(_draw_normal(g, shape, dtype), std), mean), dtype)
    m, s = _pyfloat(m), _pyfloat(s)
    data = g.normal(shape, dtype, m, s)
    moments = {} if (m, s) == (0.0, 1.0) else {"mean": m, "std": s}
    return _draw(g, data, "normal", lambda: g.normal(shape, dtype, m, s), **moments)


def _draw_integers(g: Generator, shape, dtype: DType, low: _int, high: _int) -> Tensor:
    return _draw(g, g.integers(shape, low, high, dtype), "randint",
                 lambda: g.integers(shape, low, high, dtype), low=low, high=high)


def _draw_full_range(g: Generator, shape, dtype: DType) -> Tensor:
    """``random_()``: [0, 2**mantissa] for floats, [0, max] for ints, {0, 1} for bools."""
    if dtype is dtypes.bool_:
        high = 2
    elif dtype.is_floating_point:
        high = 2 ** (np.finfo(dtype.np).nmant + 1) + 1
    else:
        high = _int(np.iinfo(dtype.np).max) + 1
    return _draw(g, g.full_range(shape, dtype), "randint", lambda: g.full_range(shape, dtype),
                 low=0, high=high)


def _draw_bernoulli(g: Generator, shape, p) -> Tensor:
    """Booleans, True with probability ``p``: one uniform per element, ``u < p`` (as
    ``Generator.bernoulli``, whose checks and uniform dtype this follows)."""
    if not isinstance(p, Tensor):
        if not 0 <= p <= 1:
            raise RuntimeError(f"bernoulli_ expects p to be in [0, 1], but got p={p}")
        return lt(_draw_uniform(g, shape, dtypes.float64), p)
    arr = p._data
    # checked on eager calls and on the call that traces; compiled calls do not re-check
    if isinstance(arr, np.ndarray) and np.any((arr < 0) | (arr > 1)):
        raise RuntimeError("bernoulli_ expects all elements of p to be in [0, 1]")
    udtype = dtypes.float64 if p.dtype is dtypes.float64 else dtypes.float32
    return lt(_draw_uniform(g, shape, udtype), broadcast_to(cast(p, udtype), shape))


def rand(*size, generator=None, dtype=None, device=None, requires_grad: _bool = False) -> Tensor:
    _check_device(device)
    t = _draw_uniform(_gen(generator), _random_shape(size), _creation_dtype(dtype))
    return t.requires_grad_(True) if requires_grad else t


def randn(*size, generator=None, dtype=None, device=None, requires_grad: _bool = False) -> Tensor:
    _check_device(device)
    t = _draw_normal(_gen(generator), _random_shape(size), _creation_dtype(dtype))
    return t.requires_grad_(True) if requires_grad else t


def randint(*args, low=None, high=None, size=None, generator=None, dtype=None, device=None,
            requires_grad: _bool = False, out=None, layout=None, pin_memory: _bool = False):
    """Integers in [low, high): ``randint(high, size)``, ``randint(low, high, size)``, any of
    them by keyword, with ``generator=``, ``dtype=`` (int64 unless given; floats and bool
    too), ``out=``; drawn as torch's (``draw % (high - low) + low``).

    >>> import tracegrad as tg
    >>> _ = tg.manual_seed(0)
    >>> randint(3, 10, (3,))
    tensor([7, 6, 3])
    """
    pos = list(args)
    if len(pos) > 3:
        raise TypeError(f"randint() takes at most 3 positional arguments ({len(pos)} given)")
    if len(pos) == 3:
        low, high, size = pos
    elif len(pos) == 2:
        if size is not None or high is not None:
            low, high = pos if high is None else (pos[0], high)
            if size is None:
                size = pos[1]
        else:
            high, size = pos
    elif len(pos) == 1:
        if high is None:
            high = pos[0]
        else:
            low = pos[0]
    if high is None:
        raise TypeError("randint() missing required argument 'high' (pos 1)")
    if size is None:
        raise TypeError("randint() missing required argument 'size' (pos 2)")
    for what, v in (("low", low), ("high", high)):
        if v is not None and (isinstance(v, _bool) or not isinstance(v, (_int, np.integer))):
            if isinstance(v, Tensor) and v.ndim == 0 and not v.dtype.is_floating_point:
                continue
            raise TypeError(f"randint(): argument '{what}' must be int, not "
                            f"{type(v).__name__}")
    if not isinstance(size, (tuple, list, Size)):
        raise TypeError(f"randint(): argument 'size' must be tuple of ints, not "
                        f"{type(size).__name__}")
    _check_device(device)
    dtype = as_dtype(dtype) if dtype is not None else dtypes.int64
    low = 0 if low is None else _int(low)
    t = _draw_integers(_gen(generator), _random_shape((size,)), dtype, low, _int(high))
    if requires_grad and not dtype.is_floating_point:  # checked after the draw, as torch's
        raise RuntimeError("Only Tensors of floating point and complex dtype can require "
                           "gradients")
    if out is not None:
        return out.copy_(t)
    return t.requires_grad_(True) if requires_grad else t


def randperm(n, *, generator=None, dtype=None, device=None) -> Tensor:
    (n,) = _random_shape((n,))
    _check_device(device)
    g = _gen(generator)
    np_dtype = as_dtype(dtype or dtypes.int64).np
    data = g.permutation(n).astype(np_dtype)
    return _draw(g, data, "permutation", lambda: g.permutation(n).astype(np_dtype))


def _not_implemented_for(kernel: str, dtype: DType) -> NotImplementedError:
    from .random import not_implemented_for
    return not_implemented_for(kernel, dtype)


def _zero_grad_of(value: Tensor, name: str, *inputs) -> Tensor:
    """``value``, recorded as an op of ``inputs`` whose gradient is zero (PyTorch's
    ``torch.normal`` and ``torch.bernoulli`` record such a node, e.g. NormalBackward1):
    ``where(False, input, value)`` per input that requires grad."""
    never = _const(False, dtypes.bool_)
    for x in inputs:
        if isinstance(x, Tensor) and x.requires_grad:
            value = apply(P.where_p, (never, cast(x, value.dtype), value), name=name)
    return value


def normal(mean, std=1.0, size=None, *, generator=None, dtype=None, layout=None, device=None,
           pin_memory: _bool = False, requires_grad: _bool = False) -> Tensor:
    """Normal random numbers: PyTorch's ``torch.normal`` overloads and its stream.

    * ``normal(mean: Tensor, std: Tensor)``: one draw per element of their broadcast
      shape, in ``mean``'s dtype: ``N(0, 1) * std + mean``;
    * ``normal(mean: Tensor, std: float = 1.0)``: ``N(0, std) + mean``, shaped as ``mean``;
    * ``normal(mean: float, std: Tensor)``: ``N(0, 1) * std + mean``, shaped as ``std``;
    * ``normal(mean: float, std: float, size)``: a new tensor, as ``randn`` (``dtype``,
      ``requires_grad``).

    Each is computed in PyTorch's order and rounding, so after ``manual_seed`` the values
    equal torch's bit for bit. The tensor forms record a node whose gradient is zero
    (NormalBackward1/2/3), as PyTorch's.

    >>> import tracegrad as tg
    >>> _ = tg.manual_seed(0)
    >>> normal(tg.zeros(3), 0.1)
    tensor([ 0.1541, -0.0293, -0.2179])
    """
    g = _gen(generator)
    if size is not None:  # floats (or, in a compiled function, float arguments: 0-d tensors)
        if builtins.any(isinstance(v, Tensor) and v.ndim for v in (mean, std)):
            raise TypeError("normal(): size is taken only with a float mean and std")
        _check_device(device)
        dt = _creation_dtype(dtype)
        if not dt.is_floating_point:
            raise _not_implemented_for("normal_kernel_cpu", dt)
        shape = _random_shape((size,) if isinstance(size, (_int, np.integer)) else size)
        t = _draw_normal(g, shape, dt, mean, std)
        return t.requires_grad_(True) if requires_grad else t
    if not isinstance(mean, Tensor) and not isinstance(std, Tensor):
        raise TypeError("normal() received an invalid combination of arguments - got "
                        "(float, float): pass a size, or mean or std as a tensor")
    if dtype is not None or requires_grad:
        raise TypeError("normal(): dtype and requires_grad are taken only with a float mean and "
                        "std and a size")
    like = mean if isinstance(mean, Tensor) else std
    if not like.dtype.is_floating_point:
        raise _not_implemented_for("normal_kernel_cpu", like.dtype)
    if isinstance(std, Tensor):
        _check_normal_std(std)
    elif std < 0:
        raise RuntimeError(f"normal expects std >= 0.0, but found std {std:g}")
    with _no_grad():
        if not isinstance(std, Tensor):  # a Tensor mean, a float std: N(0, std) + mean
            value = add(_draw_normal(g, tuple(mean.shape), mean.dtype, 0.0, std), mean)
            name = "NormalBackward1"
        elif not isinstance(mean, Tensor):  # a float mean, a Tensor std
            noise = _draw_normal(g, tuple(std.shape), std.dtype)
            value = add(mul(noise, std), full((), mean, dtype=std.dtype))
            name = "NormalBackward2"
        else:
            shape = P.broadcast_shapes(tuple(mean.shape), tuple(std.shape))
            scaled = cast(mul(_draw_normal(g, shape, mean.dtype), std), mean.dtype)
            value = cast(add(scaled, mean), mean.dtype)
            name = "NormalBackward3"
    return _zero_grad_of(value, name, mean, std)


def _check_normal_std(std: Tensor) -> None:
    arr = std._data  # checked eagerly (and on the call that traces), as bernoulli's p
    if isinstance(arr, np.ndarray) and arr.size and not (arr >= 0).all():
        raise RuntimeError("normal expects all elements of std >= 0.0")


def _no_grad():
    from .autograd.grad_mode import no_grad
    return no_grad()


def bernoulli(input, p=None, *, generator=None) -> Tensor:
    """0/1 draws in ``input``'s dtype: each element is 1 with probability ``input``
    (its values, in [0, 1]) or, given, the float ``p``. One uniform per element,
    ``u < p``, from the generator's PyTorch stream (float64 uniforms for float64
    probabilities and a float ``p``, float32 ones otherwise), so after ``manual_seed``
    the values equal torch's.

    >>> import tracegrad as tg
    >>> _ = tg.manual_seed(0)
    >>> bernoulli(tg.tensor([0.0, 0.5, 1.0]))
    tensor([0., 0., 1.])
    """
    g = _gen(generator)
    if p is not None:  # PyTorch records a node whose backward raises; this records none
        shape, prob = tuple(input.shape), _static_number(p)
        if prob is None:  # a float argument of a compiled function: u < p, u in float64
            draws = lt(_draw_uniform(g, shape, dtypes.float64), cast(p, dtypes.float64))
        else:
            draws = _draw_bernoulli(g, shape, _pyfloat(prob))
        return cast(draws, input.dtype)
    if not input.dtype.is_floating_point:
        raise _not_implemented_for("bernoulli_tensor_cpu_p_", input.dtype)
    probs = input.detach()
    arr = probs._data
    if isinstance(arr, np.ndarray) and np.any((arr < 0) | (arr > 1)):
        raise RuntimeError("bernoulli expects all elements of input (the probabilities) to be "
                           "in [0, 1]")
    value = cast(_draw_bernoulli(g, tuple(input.shape), probs), input.dtype)
    return _zero_grad_of(value, "BernoulliBackward0", input)


def randint_like(input, low=0, high=None, *, generator=None, dtype=None, layout=None,
                 device=None, requires_grad: _bool = False, memory_format=None) -> Tensor:
    """Integers in [low, high) shaped as ``input``, in its dtype unless ``dtype`` is given
    (``randint_like(x, high)`` or ``randint_like(x, low, high)``), drawn as torch's.

    >>> import tracegrad as tg
    >>> _ = tg.manual_seed(0)
    >>> randint_like(tg.zeros(4), 10)
    tensor([4., 9., 3., 0.])
    """
    if high is None:
        low, high = 0, low
    _check_device(device)
    dtype = as_dtype(dtype) if dtype is not None else input.dtype
    t = _draw_integers(_gen(generator), tuple(input.shape), dtype, _int(low), _int(high))
    return t.requires_grad_(True) if requires_grad else t


def _like(fn):
    def like(input, *, dtype=None, layout=None, device=None, requires_grad: _bool = False,
             memory_format=None, **kw):
        return fn(input.shape, dtype=dtype or input.dtype, device=device,
                  requires_grad=requires_grad, **kw)
    like.__name__ = fn.__name__ + "_like"
    return like


zeros_like = _like(zeros)
ones_like = _like(ones)
empty_like = _like(empty)
rand_like = _like(rand)
randn_like = _like(randn)


def full_like(input, fill_value, *, dtype=None, device=None, requires_grad: _bool = False):
    return full(input.shape, fill_value, dtype=dtype or input.dtype, device=device,
                requires_grad=requires_grad)


def clone(input, *, memory_format=None):
    return apply(P.copy_p, (input,))


def numel(input) -> _int:
    return input.numel()


def is_tensor(obj) -> _bool:
    return isinstance(obj, Tensor)


def is_floating_point(input) -> _bool:
    return input.dtype.is_floating_point


def _deepcopy_tensor(t: Tensor, memo):
    if t.grad_fn is not None:
        raise RuntimeError("Only Tensors created explicitly by the user (graph leaves) support "
                           "the deepcopy protocol at the moment. Use .detach() first.")
    new = Tensor._make(np.array(t._concrete("deepcopy")))
    if type(t) is not Tensor and type(t) is not _View:  # a Parameter, say
        new.__class__ = type(t)
        skip = ("_data", "_vc", "_grad", "_acc", "grad_fn")
        new.__dict__.update({k: v for k, v in t.__dict__.items() if k not in skip})
    new._rg = t._rg
    if t._grad is not None:
        new._grad = Tensor._make(np.array(t._grad._data))
    memo[id(t)] = new
    return new


def _rebuild_tensor(data, requires_grad):
    t = Tensor._make(data)
    t._rg = requires_grad
    return t


# ----------------------------------------------------------------------------
# devices/creation helper (to the end of the file): the legacy constructors, and
# bfloat16/float16 results that PyTorch rounds once
#
# The legacy constructors: Tensor(2, 3), FloatTensor([1, 2])

def _legacy_new(dtype, args: tuple, kwargs: dict) -> Tensor:
    """``torch.Tensor(*args)`` / ``torch.FloatTensor(*args)``: ints or a Size make a tensor
    of that shape (PyTorch leaves it uninitialised; tracegrad fills it with zeros), a
    sequence or array makes one of that data, a tensor is returned as an alias, nothing
    makes an empty 1-d tensor. ``dtype`` None is ``Tensor``: the default dtype."""
    name = "new" if dtype is None else f"{_TYPE_WORD[dtype.name]}Tensor"
    dev = kwargs.pop("device", None)
    if kwargs:
        raise TypeError(f"{name}() got unexpected keyword arguments {sorted(kwargs)}; "
                        "it takes sizes or data and device=. Use tracegrad.tensor(data, "
                        "dtype=...) or tracegrad.empty(*size, dtype=...) instead")
    _check_device(dev)
    dt = dtype or dtypes.get_default_dtype()
    if not args:
        return empty(0, dtype=dt)
    if len(args) == 1 and isinstance(args[0], Tensor):
        x = args[0]
        if dtype is not None and x.dtype is not dtype:
            raise TypeError(f"expected a tensor of dtype {dtype} for {name}(), got one of "
                            f"{x.dtype}; convert it with .to({dtype})")
        return x.detach()
    if isinstance(args[0], Size) and len(args) == 1:
        return zeros(_random_shape(args), dtype=dt)
    if builtins.all(isinstance(a, (_int, np.integer)) and not isinstance(a, _bool)
                    for a in args):
        return zeros(_random_shape(args), dtype=dt)
    if len(args) == 1 and isinstance(args[0], (list, tuple, np.ndarray)):
        return tensor(args[0], dtype=dt)
    raise TypeError(f"{name}(): data must be a sequence (got {type(args[0]).__name__}); pass "
                    "sizes as ints, or a (nested) list, tuple or array of data")


class _LegacyTensorType(type):
    """The metaclass of FloatTensor & co.: calling one constructs a tensor of its dtype,
    ``isinstance(x, FloatTensor)`` checks x's dtype, as in PyTorch."""

    def __call__(cls, *args, **kwargs):
        return _legacy_new(cls.dtype, args, kwargs)

    def __instancecheck__(cls, obj):
        return isinstance(obj, Tensor) and obj.dtype is cls.dtype

    def __repr__(cls):
        return f"<class 'torch.{cls.__name__}'>"


def _legacy_type(name: str, dtype: DType):
    return _LegacyTensorType(name, (), {"dtype": dtype, "__module__": "tracegrad"})


FloatTensor = _legacy_type("FloatTensor", dtypes.float32)
DoubleTensor = _legacy_type("DoubleTensor", dtypes.float64)
HalfTensor = _legacy_type("HalfTensor", dtypes.float16)
BFloat16Tensor = _legacy_type("BFloat16Tensor", dtypes.bfloat16)
LongTensor = _legacy_type("LongTensor", dtypes.int64)
IntTensor = _legacy_type("IntTensor", dtypes.int32)
ShortTensor = _legacy_type("ShortTensor", dtypes.int16)
CharTensor = _legacy_type("CharTensor", dtypes.int8)
ByteTensor = _legacy_type("ByteTensor", dtypes.uint8)
BoolTensor = _legacy_type("BoolTensor", dtypes.bool_)
_LEGACY_TYPES = {t.__name__: t for t in (FloatTensor, DoubleTensor, HalfTensor, BFloat16Tensor,
                                         LongTensor, IntTensor, ShortTensor, CharTensor,
                                         ByteTensor, BoolTensor)}


# bfloat16/float16 products with a bias. PyTorch's CPU kernels
# (addmm, convolution with a bias) accumulate the product and the bias in float32 and
# round once; so tracegrad computes them in float32 from the (exact) upcast operands and
# casts the result, naming that cast as the float32 result's last node (AddmmBackward0).
_ROUND_ONCE = (dtypes.bfloat16, dtypes.float16)


def _rounded_once(fn, dt: DType, *args, **kwargs) -> Tensor:
    saved = _autocast.enabled
    _autocast.enabled = False  # the float32 computation is not lowered again
    try:
        out = fn(*(cast(a, dtypes.float32) if isinstance(a, Tensor) and a.dtype is dt else a
                   for a in args), **kwargs)
    finally:
        _autocast.enabled = saved
    name = type(out.grad_fn).__name__ if out.grad_fn is not None else None
    return apply(P.cast_p, (out,), {"dtype": dt}, name=name)


# std of bfloat16: one rounding of the float32 result, not var's and then sqrt's
_std_rounded_twice = std


def std(input, dim=None, unbiased=None, keepdim: _bool = False, *, correction=None):
    """The standard deviation; of a bfloat16 tensor, rounded once (as PyTorch's kernel)."""
    if isinstance(input, Tensor) and input.dtype is dtypes.bfloat16:
        return _rounded_once(_std_rounded_twice, dtypes.bfloat16, input, dim, unbiased, keepdim,
                             correction=correction)
    return _std_rounded_twice(input, dim, unbiased, keepdim, correction=correction)


# multinomial (utils.data: WeightedRandomSampler draws with it)

def multinomial(input, num_samples, replacement: _bool = False, *, generator=None,
                out=None) -> Tensor:
    """Indices drawn from the categories of each row of ``input`` (weights, not
    necessarily summing to one), from PyTorch's CPU stream (``Generator.multinomial``).

    >>> import tracegrad as tg
    >>> _ = tg.manual_seed(0)
    >>> tg.multinomial(tg.tensor([0.1, 0.0, 0.9]), 4, replacement=True)
    tensor([2, 2, 2, 2])
    """
    if generator is not None and not isinstance(generator, Generator):
        raise TypeError("multinomial(): argument 'generator' must be torch.Generator, not "
                        f"{type(generator).__name__}")
    g = _gen(generator)
    if not isinstance(input, Tensor):
        raise TypeError("multinomial(): argument 'input' (position 1) must be Tensor, not "
                        f"{type(input).__name__}")
    if input.ndim not in (1, 2):
        raise RuntimeError("prob_dist must be 1 or 2 dim")
    if not input.dtype.is_floating_point:
        from .random import _SCALAR_NAMES
        raise RuntimeError("multinomial only supports floating-point dtypes for input, got: "
                           f"{_SCALAR_NAMES[input.dtype.name]}")
    n = _int(num_samples)
    if n <= 0:
        raise RuntimeError("cannot sample n_sample <= 0 samples")
    if not replacement and n > input.shape[-1]:
        raise RuntimeError("cannot sample n_sample > prob_dist.size(-1) samples without "
                           "replacement")
    if input.shape[-1] > 2 ** 24:
        raise RuntimeError("number of categories cannot exceed 2^24")
    tracer = trace_state.current
    if tracer is not None:
        # the draw depends on the probabilities' values through a binary search or a
        # sort, which has no fresh-per-call random equation: the call runs eagerly
        tracer.graph_break("torch.multinomial inside a compiled function (it is drawn "
                           "eagerly, from PyTorch's stream)", depth=3)
    probs = np.asarray(input.detach()._concrete("multinomial"))
    result = _finish(g.multinomial(probs, n, _bool(replacement)), False)
    if out is not None:
        out.copy_(result)
        return out
    return result


def _tensor_multinomial(self, num_samples, replacement: _bool = False, *, generator=None):
    return multinomial(self, num_samples, replacement, generator=generator)


Tensor.multinomial = _tensor_multinomial


# ----------------------------------------------------------------------------
# opsa: bitwise ops and more elementwise math (issue 12)

def _quietly(fn):
    """Run a composite with NumPy's floating point warnings off (NOTE: [Quiet NumPy
    kernels] in primitives.py): its inner add/sub/mul may meet inf - inf by design."""
    import functools

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)
    return run


def _int_operands(kernel: str, a, b):
    """Promote two operands of a bitwise op; floats have no such kernel in PyTorch."""
    a, b = _coerce(a, b)
    dt = _dtype_of(a)
    if dt.is_floating_point:
        raise _not_implemented_for(kernel, dt)
    return a, b


def bitwise_and(input, other):
    """Bitwise AND of integer tensors; logical AND of bool tensors.

    >>> bitwise_and(tensor([1, -8, 6], dtype=int32), 0x1337)
    tensor([   1, 4912,    6], dtype=torch.int32)
    """
    return apply(P.bitwise_and_p, _int_operands("bitwise_and_cpu", input, other))


def bitwise_or(input, other):
    """Bitwise OR of integer tensors; logical OR of bool tensors."""
    return apply(P.bitwise_or_p, _int_operands("bitwise_or_cpu", input, other))


def bitwise_xor(input, other):
    """Bitwise XOR of integer tensors; logical XOR of bool tensors."""
    return apply(P.bitwise_xor_p, _int_operands("bitwise_xor_cpu", input, other))


def bitwise_not(input):
    """Bitwise NOT of an integer tensor (``~x == -x - 1``); logical NOT of a bool tensor."""
    x = _as_tensor(input)
    if _dtype_of(x).is_floating_point:
        raise _not_implemented_for("bitwise_not_cpu", _dtype_of(x))
    return apply(P.bitwise_not_p, (x,))


def _shift(prim, kernel, input, other):
    a, b = _int_operands(kernel, input, other)
    if _dtype_of(a) is dtypes.bool_:
        raise _not_implemented_for(kernel, dtypes.bool_)
    return apply(prim, (a, b))


def bitwise_left_shift(input, other):
    """``input << other``; a shift by a negative amount or by the bit width or more gives 0.

    >>> bitwise_left_shift(tensor([1, -8, 6], dtype=int32), 2)
    tensor([  4, -32,  24], dtype=torch.int32)
    """
    return _shift(P.lshift_p, "lshift_cpu", input, other)


def bitwise_right_shift(input, other):
    """``input >> other`` (arithmetic for signed types); out-of-range shifts give the sign."""
    return _shift(P.rshift_p, "rshift_cpu", input, other)


def _invert(x):
    """``~x``: PyTorch's operator refuses floats with a TypeError (bitwise_not with a
    NotImplementedError)."""
    if _dtype_of(x).is_floating_point:
        raise TypeError("~ (operator.invert) is only implemented on integer and Boolean-type "
                        "tensors")
    return bitwise_not(x)



asin = _unary(P.asin_p)
acos = _unary(P.acos_p)
atan = _unary(P.atan_p)
sinh = _unary(P.sinh_p)
cosh = _unary(P.cosh_p)
asinh = _unary(P.asinh_p)
acosh = _unary(P.acosh_p)
atanh = _unary(P.atanh_p)
exp2 = _unary(P.exp2_p)
erfc = _unary(P.erfc_p)
erfinv = _unary(P.erfinv_p)
lgamma = _unary(P.lgamma_p)
digamma = _unary(P.digamma_p)
arcsin, arccos, arctan, arcsinh, arccosh, arctanh = asin, acos, atan, asinh, acosh, atanh


def polygamma(n, input):
    """The n-th derivative of digamma (``polygamma(0, x) == digamma(x)``)."""
    if not isinstance(n, (_int, np.integer)) or n < 0:
        raise RuntimeError("polygamma(n, x) does not support negative n.")
    x = _float(_as_tensor(input))
    if n == 0:
        return apply(P.digamma_p, (x,))
    return apply(P.polygamma_p, (x,), {"n": _int(n)})


def _float_pair(a, b):
    a, b = _coerce(a, b)
    return _float(a), _float(b)


def atan2(input, other):
    """The angle of (other, input), in (-pi, pi]."""
    return apply(P.atan2_p, _float_pair(input, other))


arctan2 = atan2


def hypot(input, other):
    """sqrt(input**2 + other**2), without overflow."""
    return apply(P.hypot_p, _float_pair(input, other))


def signbit(input):
    """True where the sign bit is set (-0.0 and -nan included)."""
    x = _as_tensor(input)
    if not _dtype_of(x).is_floating_point:
        return ne(x, x) if not _dtype_of(x).is_signed else lt(x, 0)
    return apply(P.signbit_p, (x,))


def copysign(input, other):
    """|input| with the sign of other (-0.0 counts as negative).

    >>> copysign(tensor([1.0, -2.0, 3.0]), tensor([-0.0, 1.0, -1.0]))
    tensor([-1.,  2., -3.])
    """
    x, y = _float_pair(input, other)
    return apply(P.copysign_p, (x, y),
                 name=None if isinstance(other, Tensor) else "CopysignBackward1")


@_quietly
def logaddexp(input, other):
    """log(exp(input) + exp(other)), computed without overflow."""
    x, y = _float_pair(input, other)
    m = maximum(x, y)
    # equal infinities: log(2 * exp(inf)) is inf, and inf - inf would be nan
    same_inf = logical_and(isinf(x), eq(x, y))
    rest = log1p(exp(neg(abs(sub(x, y)))))
    return apply(P.where_p, (same_inf, x, m + rest), name="LogaddexpBackward0")


@_quietly
def logaddexp2(input, other):
    """log2(2**input + 2**other), computed without overflow."""
    x, y = _float_pair(input, other)
    m = maximum(x, y)
    same_inf = logical_and(isinf(x), eq(x, y))
    rest = log1p(exp2(neg(abs(sub(x, y))))) * (1 / math.log(2))
    return apply(P.where_p, (same_inf, x, m + rest), name="Logaddexp2Backward0")


def xlogy(input, other):
    """input * log(other), 0 where input == 0 (unless other is nan)."""
    name = ("XlogyBackward1" if not isinstance(input, Tensor) else
            "XlogyBackward2" if not isinstance(other, Tensor) else "XlogyBackward0")
    return apply(P.xlogy_p, _float_pair(input, other), name=name)


@_quietly
def logit(input, eps=None):
    """log(p / (1 - p)); with ``eps``, p is clamped to [eps, 1 - eps] first."""
    x = _float(_as_tensor(input))
    if eps is not None:
        x = clamp(x, eps, 1 - eps)
    return apply(P.log_p, (x / (1 - x),), name="LogitBackward0")


@_quietly
def frac(input):
    """input - trunc(input), with input's sign."""
    x = _as_tensor(input)
    if not _dtype_of(x).is_floating_point:
        raise _not_implemented_for("frac_cpu", _dtype_of(x))
    return apply(P.sub_p, (x, trunc(x)), name="FracBackward0")


fix = trunc


@_quietly
def sinc(input):
    """sin(pi x) / (pi x), and 1 at 0."""
    x = _float(_as_tensor(input))
    zero = eq(x, 0)
    px = where(zero, ones_like(x), x) * math.pi  # no 0 / 0 off the branch taken
    return apply(P.where_p, (zero, ones_like(x), sin(px) / px), name="SincBackward0")


def deg2rad(input):
    """Degrees to radians."""
    x = _float(_as_tensor(input))
    return apply(P.mul_p, (x, _const(math.pi / 180, _dtype_of(x))), name="Deg2RadBackward0")


def rad2deg(input):
    """Radians to degrees."""
    x = _float(_as_tensor(input))
    return apply(P.mul_p, (x, _const(180 / math.pi, _dtype_of(x))), name="Rad2DegBackward0")


def float_power(input, exponent):
    """input ** exponent in float64 (PyTorch's float_power)."""
    if isinstance(input, Tensor):
        x = cast(input, dtypes.float64)
        e = cast(exponent, dtypes.float64) if isinstance(exponent, Tensor) else _pyfloat(exponent)
        return pow(x, e)
    return pow(_pyfloat(input), cast(exponent, dtypes.float64))


@_quietly
def nan_to_num(input, nan=0.0, posinf=None, neginf=None):
    """nan, +inf and -inf replaced by ``nan``, ``posinf`` (default: the dtype's largest
    finite value) and ``neginf`` (its lowest)."""
    x = _as_tensor(input)
    dt = _dtype_of(x)
    if not dt.is_floating_point:
        return apply(P.copy_p, (x,), name="NanToNumBackward0")
    info = np.finfo(dt.np)
    hi = _pyfloat(info.max) if posinf is None else posinf
    lo = _pyfloat(info.min) if neginf is None else neginf
    r = where(isnan(x), _const(_pyfloat(nan), dt), x)
    r = where(eq(x, math.inf), _const(_pyfloat(hi), dt), r)
    return apply(P.where_p, (eq(x, -math.inf), _const(_pyfloat(lo), dt), r),
                 name="NanToNumBackward0")


def heaviside(input, values):
    """0 where input < 0, ``values`` where input == 0, 1 where input > 0."""
    x, v = _as_tensor(input), _as_tensor(values)
    if x.dtype is not v.dtype:
        raise RuntimeError("heaviside is not yet implemented for tensors with different dtypes")
    return apply(P.heaviside_p, (x, v))


def isposinf(input):
    """True where input is +inf."""
    x = _as_tensor(input)
    return eq(x, math.inf) if _dtype_of(x).is_floating_point else zeros_like(x, dtype=dtypes.bool_)


def isneginf(input):
    """True where input is -inf."""
    x = _as_tensor(input)
    return eq(x, -math.inf) if _dtype_of(x).is_floating_point else zeros_like(x, dtype=dtypes.bool_)


def isreal(input):
    """True everywhere: tracegrad has no complex dtypes."""
    return ones_like(_as_tensor(input), dtype=dtypes.bool_)


def rremainder(a, b):
    """``b % a`` for a Python number ``b`` (PyTorch's remainder(Scalar, Tensor)): the
    result has the divisor's sign. PyTorch has no derivative for it: backward raises."""
    return apply(P.rremainder_p, _coerce(b, a))



# numpy-style names PyTorch accepts on reductions: axis= for dim=, keepdims= for keepdim=
_UNSET = object()


def _numpy_names(fn, keepdims: _bool = True):
    import functools

    @functools.wraps(fn)
    def call(*args, axis=_UNSET, keepdims=_UNSET, **kwargs):
        if axis is not _UNSET:
            if "dim" in kwargs:
                raise TypeError(f"{fn.__name__}() received an invalid combination of arguments "
                                "- got both 'dim' and its alias 'axis'")
            kwargs["dim"] = axis
        if keepdims is not _UNSET:
            if not has_keepdim:
                raise TypeError(f"{fn.__name__}() got an unexpected keyword argument 'keepdims'")
            if "keepdim" in kwargs:
                raise TypeError(f"{fn.__name__}() received an invalid combination of arguments "
                                "- got both 'keepdim' and its alias 'keepdims'")
            kwargs["keepdim"] = keepdims
        return fn(*args, **kwargs)
    has_keepdim = keepdims
    return call


sum = _numpy_names(sum)
mean = _numpy_names(mean)
prod = _numpy_names(prod)
amax = _numpy_names(amax)
amin = _numpy_names(amin)
max = _numpy_names(max)
min = _numpy_names(min)
argmax = _numpy_names(argmax)
argmin = _numpy_names(argmin)
var = _numpy_names(var)
std = _numpy_names(std)
logsumexp = _numpy_names(logsumexp)
all = _numpy_names(all)
any = _numpy_names(any)
cumsum = _numpy_names(cumsum, keepdims=False)
softmax = _numpy_names(softmax, keepdims=False)
log_softmax = _numpy_names(log_softmax, keepdims=False)
squeeze = _numpy_names(squeeze, keepdims=False)
unsqueeze = _numpy_names(unsqueeze, keepdims=False)

# ---- end of opsa block -------------------------------------------------------


# ==== structural ops (opsb): cumulative scans, scatter, sorting and selection ====

def _return_type(name: str, fields=("values", "indices")):
    """A ``torch.return_types.<name>`` named tuple (its repr is torch's)."""
    base = collections.namedtuple(name, fields)

    def __repr__(self):
        body = ",\n".join(f"{f}={v!r}" for f, v in zip(fields, self, strict=True))
        return f"torch.return_types.{name}(\n{body})"
    cls = type(name, (base,), {"__slots__": (), "__repr__": __repr__})
    cls.__module__ = "torch.return_types"
    return cls


_cummax_t, _cummin_t = _return_type("cummax"), _return_type("cummin")


def _as_vector(x: Tensor) -> Tensor:
    return reshape(x, (1,)) if x.ndim == 0 else x


def _back_to_0d(r: Tensor, ndim: _int, name=None) -> Tensor:
    return _not_a_view(apply(P.reshape_p, (r,), {"shape": ()}, name=name)) if ndim == 0 else r


def _cum_extreme(op, input, dim):
    x = _as_tensor(input)
    d = _dim(dim, x.ndim)
    name = "CummaxBackward0" if op == "max" else "CumminBackward0"
    v = _as_vector(x)
    idx = apply(P.cumextreme_index_p, (v,), {"axis": d, "op": op})
    values = apply(P.gather_p, (v, idx), {"axis": d}, name=None if x.ndim == 0 else name)
    result = _cummax_t if op == "max" else _cummin_t
    return result(_back_to_0d(values, x.ndim, name), _back_to_0d(idx, x.ndim))


def cummax(input, dim):
    """(values, indices) of the running maximum along ``dim``; a tie takes the later index.

    >>> tracegrad.cummax(tracegrad.tensor([1., 3., 2., 3.]), 0).indices
    tensor([0, 1, 1, 3])
    """
    return _cum_extreme("max", input, dim)


def cummin(input, dim):
    """(values, indices) of the running minimum along ``dim``; a tie takes the later index."""
    return _cum_extreme("min", input, dim)


def cumprod(input, dim, *, dtype=None):
    """Running product along ``dim``; its gradient is exact where the input has zeros.

    >>> tracegrad.cumprod(tracegrad.tensor([1., 2., 3.]), 0)
    tensor([1., 2., 6.])
    """
    x = _as_tensor(input)
    if dtype is not None:
        x = cast(x, dtype)
    elif not x.dtype.is_floating_point:
        x = cast(x, dtypes.int64)
    d = _dim(dim, x.ndim)
    r = apply(P.cumprod_p, (_as_vector(x),), {"axis": d})
    return _back_to_0d(r, x.ndim, "CumprodBackward0")


def logcumsumexp(input, dim):
    """log(cumsum(exp(x))) along ``dim``, computed stably (no overflow, no log(0)).

    >>> tracegrad.logcumsumexp(tracegrad.tensor([0., 0.]), 0)
    tensor([0.0000, 0.6931])
    """
    x = _as_tensor(input)
    if not x.dtype.is_floating_point:
        raise _not_implemented_for("logcumsumexp_out_cpu", x.dtype)
    d = _dim(dim, x.ndim)
    r = apply(P.logcumsumexp_p, (_as_vector(x),), {"axis": d})
    return _back_to_0d(r, x.ndim, "LogcumsumexpBackward0")


def _index_arg(index, fn: str) -> Tensor:
    index = _as_tensor(index)
    if index.dtype._category != 1 or index.dtype is dtypes.bool_:
        raise RuntimeError(f"{fn}(): Expected dtype int32/int64 for index")
    return cast(index, dtypes.int64)


def _check_index_values(index: Tensor, size: _int, dim: _int) -> None:
    a = index._data
    if a.__class__ is np.ndarray and a.size:  # known values (eager, or a traced constant)
        bad = a[(a < 0) | (a >= size)]
        if bad.size:
            raise RuntimeError(f"index {bad.flat[0]} is out of bounds for dimension {dim} with "
                               f"size {size}")


def _scatter(base: Tensor, idx: Tensor, src: Tensor, axis: _int, reduce: str = "none",
             include_self: _bool = True) -> Tensor:
    """The ``scatter`` primitive (idx and src of one shape; see primitives.py)."""
    return apply(P.scatter_p, (base, idx, src), {"axis": axis, "reduce": reduce,
                                                 "include_self": _bool(include_self)})


def _scatter_args(input, dim, index, src, fn: str):
    """Checked, normalised (x, axis, index, src) for the scatter family; src sliced to
    the index's shape (PyTorch reads only that corner of it); 0-d made 1-d."""
    x = _as_tensor(input)
    index = _index_arg(index, fn)
    if x.ndim == 0 and index.ndim == 0:
        x, index = reshape(x, (1,)), reshape(index, (1,))
        if isinstance(src, Tensor) and src.ndim == 0:
            src = reshape(src, (1,))
    d = _dim(dim, x.ndim)
    if isinstance(src, Tensor):
        if src.dtype is not x.dtype:
            raise RuntimeError(f"{fn}(): Expected self.dtype to be equal to src.dtype")
        if not (index.ndim == x.ndim == src.ndim):
            raise RuntimeError("Index tensor must have the same number of dimensions as "
                               + ("self tensor" if index.ndim != x.ndim else "src tensor"))
    elif index.ndim != x.ndim:
        raise RuntimeError("Index tensor must have the same number of dimensions as self tensor")
    too_big = builtins.any(i > n for k, (i, n) in enumerate(zip(index.shape, x.shape,
                                                                 strict=True)) if k != d)
    if isinstance(src, Tensor):
        too_big = too_big or builtins.any(i > n for i, n in zip(index.shape, src.shape,
                                                                 strict=True))
    if too_big:
        src_part = (f" and to be no larger size than src {list(src.shape)}"
                    if isinstance(src, Tensor) else "")
        raise RuntimeError(f"Expected index {list(index.shape)} to be no larger than self "
                           f"{list(x.shape)} apart from dimension {d}{src_part}")
    _check_index_values(index, x.shape[d], d)
    if isinstance(src, Tensor):
        if src.shape != index.shape:
            src = getitem(src, tuple(_slice(0, n) for n in index.shape))
    else:
        src = broadcast_to(_const(src, x.dtype), index.shape)
    return x, d, index, src


_SCATTER_OLD_REDUCE = {"add": "sum", "multiply": "prod"}


def scatter(input, dim, index, src=None, *, value=None, reduce=None):
    """``input`` with ``src`` (a tensor, or the number ``value``) written at ``index``
    along ``dim``: out[i][index[i][j]] = src[i][j] for dim=1. ``reduce='add'|'multiply'``
    combines instead of writing (deprecated in PyTorch; see scatter_reduce).

    >>> tracegrad.zeros(3).scatter(0, tracegrad.tensor([2, 0]), tracegrad.tensor([5., 6.]))
    tensor([6., 0., 5.])
    """
    if src is None:
        src = value
    if src is None:
        raise TypeError("scatter() missing 1 required positional argument: 'src' (or value=)")
    x0 = input
    x, d, index, src_t = _scatter_args(input, dim, index, src, "scatter")
    if reduce is not None:
        if reduce not in _SCATTER_OLD_REDUCE:
            raise RuntimeError("reduce argument must be either add or multiply.")
        if isinstance(src, Tensor):
            import warnings
            warnings.warn("The reduce argument of torch.scatter with Tensor src is deprecated and "
                          "will be removed in a future PyTorch release. Use torch.scatter_reduce "
                          "instead for more reduction options.", UserWarning, stacklevel=2)
        r = apply(P.scatter_legacy_reduce_p, (x, index, src_t),
                  {"axis": d, "reduce": _SCATTER_OLD_REDUCE[reduce]})
    else:
        r = apply(P.scatter_p, (x, index, src_t), {"axis": d, "reduce": "none",
                                                   "include_self": True},
                  name=None if isinstance(src, Tensor) else "ScatterBackward1")
    return _back_to_0d(r, x0.ndim) if x0.ndim == 0 else r


_SCATTER_REDUCE = ("sum", "prod", "mean", "amax", "amin")


def scatter_reduce(input, dim, index, src, reduce, *, include_self: _bool = True):
    """``input`` with ``src`` reduced into it at ``index`` along ``dim``: reduce is one of
    sum, prod, mean, amax, amin; ``include_self=False`` leaves input's own values out
    where anything is scattered.

    >>> x = tracegrad.tensor([1., 2.])
    >>> x.scatter_reduce(0, tracegrad.tensor([0, 0]), tracegrad.tensor([5., 3.]), "amax")
    tensor([5., 2.])
    """
    if reduce not in _SCATTER_REDUCE:
        raise RuntimeError(f"reduce argument must be either sum, prod, mean, amax or amin, got "
                           f"{reduce}")
    x0 = input
    x, d, index, src = _scatter_args(input, dim, index, src, "scatter_reduce")
    r = _scatter(x, index, src, d, reduce, include_self)
    return _back_to_0d(r, x0.ndim) if x0.ndim == 0 else r


_sort_t, _topk_t, _kthvalue_t = (_return_type(n) for n in ("sort", "topk", "kthvalue"))
_median_t, _nanmedian_t, _mode_t = (_return_type(n) for n in ("median", "nanmedian", "mode"))


def _sort_index(x: Tensor, axis: _int, descending: _bool) -> Tensor:
    return apply(P.sort_index_p, (x,), {"axis": axis, "descending": _bool(descending)})


def _take(x: Tensor, idx: Tensor, axis: _int, keepdim: _bool, name: str) -> Tensor:
    """x's values at ``idx`` (size 1 along ``axis`` unless keepdim is moot), recorded as
    ``name``; the axis dropped unless keepdim."""
    if keepdim or idx.shape[axis] != 1:
        return apply(P.gather_p, (x, idx), {"axis": axis}, name=name)
    values = apply(P.gather_p, (x, idx), {"axis": axis})
    shape = values.shape[:axis] + values.shape[axis + 1:]
    return _not_a_view(apply(P.reshape_p, (values,), {"shape": shape}, name=name))


def _drop(idx: Tensor, axis: _int, keepdim: _bool) -> Tensor:
    return idx if keepdim else _not_a_view(squeeze(idx, axis))


def sort(input, dim: _int = -1, descending: _bool = False, stable: _bool = False):
    """(values, indices) sorted along ``dim``, NaN sorted as the largest value; equal values
    keep their order when ``stable``, else come in the order PyTorch's CPU ``std::sort``
    leaves them (NOTE: [CPU tie order]).

    >>> tracegrad.sort(tracegrad.tensor([3., 1., 2.]), descending=True).indices
    tensor([0, 2, 1])
    """
    x = _as_tensor(input)
    d = _dim(dim, x.ndim)
    v = _as_vector(x)
    idx = _sort_index(v, d, descending) if stable else apply(
        P.cpu_sort_index_p, (v,), {"axis": d, "descending": _bool(descending)})
    name = "SortBackward1" if stable else "SortBackward0"  # (torch's sort.stable overload)
    values = apply(P.gather_p, (v, idx), {"axis": d}, name=None if x.ndim == 0 else name)
    return _sort_t(_back_to_0d(values, x.ndim, name), _back_to_0d(idx, x.ndim))


def argsort(input, dim: _int = -1, descending: _bool = False, stable: _bool = False) -> Tensor:
    """The indices that sort ``input`` along ``dim`` (stable)."""
    return sort(input, dim, descending, stable).indices


def msort(input) -> Tensor:
    """``input`` sorted along its first dim."""
    return sort(input, 0).values


def topk(input, k: _int, dim: _int = -1, largest: _bool = True, sorted: _bool = True):
    """(values, indices) of the ``k`` largest (or smallest) entries along ``dim``, in
    order. Among equal values, the index PyTorch's CPU kernel picks (NOTE: [CPU tie order]).

    >>> tracegrad.topk(tracegrad.tensor([1., 5., 3.]), 2).values
    tensor([5., 3.])
    """
    x = _as_tensor(input)
    d = _dim(dim, x.ndim)
    v = _as_vector(x)
    if not 0 <= k <= v.shape[d]:
        raise RuntimeError("selected index k out of range")
    if x.ndim == 0:
        k = 1  # a 0-d result holds one value whatever k (0 or 1), as torch's
    idx = apply(P.topk_index_p, (v,), {"axis": d, "k": _int(k), "largest": _bool(largest),
                                       "sorted": _bool(sorted)})
    values = apply(P.gather_p, (v, idx), {"axis": d}, name=None if x.ndim == 0 else
                   "TopkBackward0")
    return _topk_t(_back_to_0d(values, x.ndim, "TopkBackward0"), _back_to_0d(idx, x.ndim))


def kthvalue(input, k: _int, dim: _int = -1, keepdim: _bool = False):
    """(values, indices) of the k-th smallest entry along ``dim`` (k counts from 1)."""
    x = _as_tensor(input)
    d = _dim(dim, x.ndim)
    v = _as_vector(x)
    if not 1 <= k <= v.shape[d]:
        raise RuntimeError(f"kthvalue(): selected number k out of range for dimension {d}")
    idx = apply(P.kthvalue_index_p, (v,), {"axis": d, "k": _int(k) - 1})
    return _select_result(_kthvalue_t, x, v, idx, d, keepdim, "KthvalueBackward0")


def _select_result(result, x, v, idx, d, keepdim, name):
    if x.ndim == 0:
        values = apply(P.gather_p, (v, idx), {"axis": 0})
        return result(_back_to_0d(values, 0, name), _back_to_0d(idx, 0))
    return result(_take(v, idx, d, keepdim, name), _drop(idx, d, keepdim))


def _median(input, dim, keepdim, ignore_nan: _bool):
    x = _as_tensor(input)
    fn = "nanmedian" if ignore_nan else "median"
    if dim is None:
        flat = reshape(x, (-1,))
        if flat.shape[0] == 0:  # nan, in torch's node (its gradient is empty)
            return apply(P.add_p, (sum(x), _const(math.nan, x.dtype)),
                         name="NanmedianBackward0" if ignore_nan else "MedianBackward0")
        idx = apply(P.median_index_p, (flat,), {"axis": 0, "ignore_nan": ignore_nan})
        m = reshape(apply(P.gather_p, (flat.detach(), idx), {"axis": 0}), ())
        # PyTorch's MedianBackward0 shares the gradient among the entries equal to the
        # median: the amax of those entries has that very gradient
        hit = eq(x, m)
        if x.dtype.is_floating_point:
            hit = logical_or(hit, logical_and(isnan(x), isnan(m)))
            lowest = -math.inf
        else:
            lowest = _int(np.iinfo(x.dtype.np).min)
        masked = where(hit, x, _const(lowest, x.dtype))
        return apply(P.amax_p, (masked,), {"axis": tuple(range(x.ndim)), "keepdim": False},
                     name="NanmedianBackward0" if ignore_nan else "MedianBackward0")
    d = _dim(dim, x.ndim)
    v = _as_vector(x)
    if v.shape[d] == 0:
        raise IndexError(f"{fn}(): Expected reduction dim {d} to have non-zero size.")
    idx = apply(P.median_index_p, (v,), {"axis": d, "ignore_nan": ignore_nan})
    name = "NanmedianBackward1" if ignore_nan else "MedianBackward1"
    return _select_result(_nanmedian_t if ignore_nan else _median_t, x, v, idx, d, keepdim, name)


def median(input, dim=None, keepdim: _bool = False):
    """The lower median (of all entries, or (values, indices) along ``dim``); NaN if
    there is a NaN.

    >>> tracegrad.median(tracegrad.tensor([1., 4., 2., 3.]))
    tensor(2.)
    """
    return _median(input, dim, keepdim, False)


def nanmedian(input, dim=None, keepdim: _bool = False):
    """median() of the entries that are not NaN."""
    return _median(input, dim, keepdim, True)


def mode(input, dim: _int = -1, keepdim: _bool = False):
    """(values, indices) of the most frequent value along ``dim`` (the smallest of equally
    frequent ones; its last index)."""
    x = _as_tensor(input)
    d = _dim(dim, x.ndim)
    v = _as_vector(x)
    if v.shape[d] == 0:
        raise IndexError(f"mode(): Expected reduction dim {d} to have non-zero size.")
    idx = apply(P.mode_index_p, (v,), {"axis": d})
    return _select_result(_mode_t, x, v, idx, d, keepdim, "ModeBackward0")


def _views_grad_enabled() -> _bool:
    from .autograd.grad_mode import _state
    return _state.enabled


def _unique_result(out, inverse, counts, return_inverse, return_counts, x=None, op=None):
    parts = [Tensor._make(out)]
    if x is not None and x._rg and _views_grad_enabled() and trace_state.current is None:
        parts[0] = apply(P.unique_values_p, (x, parts[0]), {"op": op})  # (torch's node)
    if return_inverse:
        parts.append(Tensor._make(inverse.astype(np.int64)))
    if return_counts:
        parts.append(Tensor._make(counts.astype(np.int64)))
    return parts[0] if len(parts) == 1 else tuple(parts)


def unique(input, sorted: _bool = True, return_inverse: _bool = False,
           return_counts: _bool = False, dim=None):
    """The distinct values (sorted), or distinct slices along ``dim``; optionally the
    index of each entry's value in the result and each value's count. The output's size
    depends on the data: inside a compiled function this is a graph break.

    >>> tracegrad.unique(tracegrad.tensor([3, 1, 3]), return_counts=True)
    (tensor([1, 3]), tensor([1, 2]))
    """
    x = _as_tensor(input)
    a = x._concrete("unique()")
    if dim is None:
        out, inv, cnt = np.unique(a.reshape(-1), return_inverse=True, return_counts=True)
        inv = inv.reshape(a.shape)
    else:
        d = _dim(dim, x.ndim)
        out, inv, cnt = np.unique(a, return_inverse=True, return_counts=True, axis=d)
        inv = inv.reshape(-1)
    return _unique_result(out, inv, cnt, return_inverse, return_counts, x,
                          "_unique2" if dim is None else "unique_dim")


def unique_consecutive(input, return_inverse: _bool = False, return_counts: _bool = False,
                       dim=None):
    """Collapse runs of equal consecutive values (or slices along ``dim``) to one."""
    x = _as_tensor(input)
    a = x._concrete("unique_consecutive()")
    d = 0 if dim is None else _dim(dim, x.ndim)
    flat = a.reshape(-1) if dim is None else np.moveaxis(a, d, 0)
    n = flat.shape[0]
    if n == 0:
        starts = np.zeros(0, bool)
    else:
        differs = (flat[1:] != flat[:-1]).reshape(n - 1, -1).any(axis=1)
        starts = np.concatenate([[True], differs])
    out = flat[starts]
    if dim is not None:
        out = np.moveaxis(out, 0, d)
    inv = np.cumsum(starts) - 1
    if dim is None:
        inv = inv.reshape(a.shape)
    cnt = np.diff(np.append(np.flatnonzero(starts), n))
    return _unique_result(np.ascontiguousarray(out), inv, cnt, return_inverse, return_counts,
                          x, "unique_consecutive")


# ---- shape ops (opsb): repeat, tile, roll, rot90, meshgrid, diagonals, unfold ---------

def _int_tuple(args) -> tuple:
    return _shape_args(args)


def _named(t: Tensor, name: str) -> Tensor:
    """``t`` with its last node named as PyTorch names the composite that made it (for
    ops whose last primitive is shared with another output, as std_mean's)."""
    from .autograd.graph import PrimitiveNode, node_class
    fn = t.grad_fn
    if isinstance(fn, PrimitiveNode):
        fn.__class__ = node_class(name)
    return t


def repeat(input, *sizes) -> Tensor:
    """``input`` tiled ``sizes`` times along each dim (leading sizes add dims).

    >>> tracegrad.tensor([1, 2]).repeat(2)
    tensor([1, 2, 1, 2])
    """
    x = _as_tensor(input)
    reps = _int_tuple(sizes)
    if len(reps) < x.ndim:
        raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number "
                           "of dimensions of tensor")
    shape = (1,) * (len(reps) - x.ndim) + tuple(x.shape)
    # (s0, s1, ..) -> (1, s0, 1, s1, ..) -> broadcast (r0, s0, r1, s1, ..) -> (r0*s0, r1*s1, ..)
    spread = reshape(x, tuple(d for s in shape for d in (1, s)))
    big = broadcast_to(spread, tuple(d for r, s in zip(reps, shape, strict=True) for d in (r, s)))
    out = tuple(r * s for r, s in zip(reps, shape, strict=True))
    return _not_a_view(apply(P.reshape_p, (big,), {"shape": out}, name="RepeatBackward0"))


def tile(input, dims) -> Tensor:
    """repeat() with ``dims`` padded with leading ones to the input's rank."""
    x = _as_tensor(input)
    reps = _int_tuple((dims,) if isinstance(dims, (_int, np.integer)) else (tuple(dims),))
    reps = (1,) * (x.ndim - len(reps)) + reps
    return repeat(x, reps)


def repeat_interleave(input, repeats=None, dim=None, *, output_size=None) -> Tensor:
    """Each element (or slice along ``dim``) repeated ``repeats`` times in place; with a
    tensor of repeats, one count each. ``repeat_interleave(counts)`` gives the indices.

    >>> tracegrad.tensor([1, 2]).repeat_interleave(2)
    tensor([1, 1, 2, 2])
    """
    if repeats is None:  # repeat_interleave(repeats): arange(n) repeated
        counts = _as_tensor(input)
        c = counts._concrete("repeat_interleave()")
        return Tensor._make(np.repeat(np.arange(c.shape[0], dtype=np.int64), c))
    x = _as_tensor(input)
    if dim is None:
        x, d = reshape(x, (-1,)), 0
    else:
        d = _dim(dim, x.ndim)
    if isinstance(repeats, Tensor) and repeats.numel() != 1 or isinstance(repeats, (list, tuple)):
        r = np.asarray(_as_tensor(repeats)._concrete("repeat_interleave()")).reshape(-1)
        if r.shape[0] != x.shape[d]:
            raise RuntimeError(f"repeats must have the same size as input along dim, but got "
                               f"repeats.size(0) = {r.shape[0]} and input.size({d}) = "
                               f"{x.shape[d]}")
        if output_size is not None and _int(r.sum()) != output_size:
            raise RuntimeError("allocated size does not match required size")
        index = Tensor._make(np.repeat(np.arange(x.shape[d], dtype=np.int64), r))
        return index_select(x, d, index)
    n = _int(repeats.item() if isinstance(repeats, Tensor) else repeats)
    if n < 0:
        raise RuntimeError("repeats can not be negative")
    if x.ndim == 0:
        x = reshape(x, (1,))
    shape = tuple(x.shape)
    spread = reshape(x, shape[:d + 1] + (1,) + shape[d + 1:])
    big = broadcast_to(spread, shape[:d + 1] + (n,) + shape[d + 1:])
    return _not_a_view(apply(P.reshape_p, (big,),
                             {"shape": shape[:d] + (shape[d] * n,) + shape[d + 1:]}))


def _roll_one(x: Tensor, shift: _int, d: _int, name=None) -> Tensor:
    n = x.shape[d]
    if n == 0:
        return x
    s = shift % n
    pre = (_slice(None),) * d
    if s == 0:
        return apply(P.copy_p, (x,), name=name)
    tail = getitem(x, pre + (_slice(n - s, n),))
    head = getitem(x, pre + (_slice(0, n - s),))
    return apply(P.cat_p, (tail, head), {"axis": d}, name=name)


def roll(input, shifts, dims=None) -> Tensor:
    """Entries shifted cyclically by ``shifts`` along ``dims`` (the flattened tensor
    without dims).

    >>> tracegrad.tensor([1, 2, 3]).roll(1)
    tensor([3, 1, 2])
    """
    x = _as_tensor(input)
    shifts = (shifts,) if isinstance(shifts, (_int, np.integer)) else tuple(shifts)
    if dims is None:
        if len(shifts) != 1:
            raise RuntimeError(f"shifts and dimensions must align. shifts: {len(shifts)}, "
                               f"dims:0")
        flat = _roll_one(reshape(x, (-1,)), _int(shifts[0]), 0)
        return _not_a_view(apply(P.reshape_p, (flat,), {"shape": tuple(x.shape)},
                                 name="RollBackward0"))
    dims = (dims,) if isinstance(dims, (_int, np.integer)) else tuple(dims)
    if len(shifts) != len(dims):
        raise RuntimeError(f"shifts and dimensions must align. shifts: {len(shifts)}, "
                           f"dims:{len(dims)}")
    for k, (s, d) in enumerate(zip(shifts, dims, strict=True)):
        last = k == len(dims) - 1
        x = _roll_one(x, _int(s), _dim(d, x.ndim), "RollBackward0" if last else None)
    return x


def rot90(input, k: _int = 1, dims=(0, 1)) -> Tensor:
    """Rotation by 90 degrees ``k`` times in the plane of ``dims`` (from the first
    towards the second)."""
    x = _as_tensor(input)
    if len(dims) != 2:
        raise RuntimeError(f"expected total rotation dims == 2, but got dims = {len(dims)}")
    if x.ndim < 2:
        raise RuntimeError(f"expected total dims >= 2, but got total dims = {x.ndim}")
    a, b = _dim(dims[0], x.ndim), _dim(dims[1], x.ndim)
    if a == b:
        raise RuntimeError(f"expected rotation dims to be different, but got dim0 = {a} and "
                           f"dim1 = {b}")
    k %= 4
    name = "Rot90Backward0"
    if k == 0:
        return apply(P.copy_p, (x,), name=name)
    if k == 2:
        return apply(P.flip_p, (x,), {"axes": (a, b)}, name=name)
    perm = list(range(x.ndim))
    perm[a], perm[b] = perm[b], perm[a]
    if k == 1:
        return apply(P.permute_p, (flip(x, b),), {"perm": tuple(perm)}, name=name)
    return apply(P.flip_p, (permute(x, perm),), {"axes": (b,)}, name=name)


def meshgrid(*tensors, indexing=None):
    """Coordinate grids of 1-d tensors: 'ij' (matrix) or 'xy' (Cartesian) indexing."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing is None:
        import warnings
        warnings.warn("torch.meshgrid: in an upcoming release, it will be required to pass the "
                      "indexing argument.", UserWarning, stacklevel=2)
        indexing = "ij"
    if indexing not in ("ij", "xy"):
        raise RuntimeError(f'torch.meshgrid: indexing must be one of "xy" or "ij", but '
                           f"received: {indexing}")
    ts = [reshape(_as_tensor(t), (-1,)) for t in tensors]
    for t in tensors:
        if _as_tensor(t).ndim > 1:
            raise RuntimeError("torch.meshgrid: Expected 0D or 1D tensor in the tensor list but "
                               f"got: {t}")
    # 'xy' puts the first two inputs' axes the other way round (x across columns)
    order = list(range(len(ts)))
    if indexing == "xy" and len(ts) >= 2:
        order[0], order[1] = 1, 0
    shape = [0] * len(ts)
    for i, t in enumerate(ts):
        shape[order[i]] = t.shape[0]
    shape = tuple(shape)
    grids = []
    for i, t in enumerate(ts):
        view = reshape(t, tuple(n if j == order[i] else 1 for j, n in enumerate(shape)))
        grids.append(apply(P.broadcast_to_p, (view,), {"shape": shape}))
    return tuple(grids)


def cartesian_prod(*tensors) -> Tensor:
    """All tuples of one element from each 1-d tensor, one per row (itertools.product)."""
    if len(tensors) == 1:
        return _as_tensor(tensors[0])
    grids = meshgrid(*tensors, indexing="ij")
    return stack([reshape(g, (-1,)) for g in grids], 1)


def _tensor_unfold(input, dimension: _int, size: _int, step: _int) -> Tensor:
    """Tensor.unfold: the windows of ``size`` every ``step`` along ``dimension``, as a new
    last dim: a view of input, as in PyTorch (read-only where windows overlap)."""
    x = _as_tensor(input)
    d = _dim(dimension, x.ndim)
    n = x.shape[d] if x.ndim else 1
    if size > n:
        raise RuntimeError(f"maximum size for tensor at dimension {d} is {n} but size is {size}")
    if step <= 0:
        raise RuntimeError(f"step is {step} but must be > 0")
    if x.ndim == 0:
        return reshape(x, (1,))
    return apply(P.unfold_p, (x,), {"dim": d, "size": _int(size), "step": _int(step)})


def _unfold_index(n: _int, size: _int, step: _int) -> Tensor:
    """The (windows, size) indices Tensor.unfold reads along a dim of length n (a constant
    of the trace when tracing): its VJP scatters through them."""
    index = Tensor._make(P.unfold_windows(n, size, step))
    if trace_state.current is not None:
        trace_state.current.constant(index)
    return index


def trace(input) -> Tensor:
    """The sum of the main diagonal of a matrix."""
    x = _as_tensor(input)
    if x.ndim != 2:
        raise RuntimeError(f"trace: expected a matrix, but got tensor with dim {x.ndim}")
    n = builtins.min(x.shape)
    d = getitem(x, (Tensor._make(np.arange(n)), Tensor._make(np.arange(n))))
    if not x.dtype.is_floating_point:
        d = cast(d, dtypes.int64)
    return apply(P.sum_p, (d,), {"axis": (0,), "keepdim": False}, name="TraceBackward0")


def ger(input, vec2) -> Tensor:
    return outer(input, vec2)


def addmv(input, mat, vec, *, beta=1, alpha=1) -> Tensor:
    """beta * input + alpha * (mat @ vec)."""
    return _add_scaled(input, mv(mat, vec), beta, alpha, "AddmvBackward0")


def baddbmm(input, batch1, batch2, *, beta=1, alpha=1) -> Tensor:
    """beta * input + alpha * (batch1 @ batch2), batch by batch."""
    return _add_scaled(input, bmm(batch1, batch2), beta, alpha, "BaddbmmBackward0")


def addbmm(input, batch1, batch2, *, beta=1, alpha=1) -> Tensor:
    """beta * input + alpha * sum_b (batch1[b] @ batch2[b])."""
    return _add_scaled(input, sum(bmm(batch1, batch2), 0), beta, alpha, "AddbmmBackward0")


def _add_scaled(input, product, beta, alpha, name):
    if alpha != 1:
        product = product * alpha
    base = input if beta == 1 else (zeros_like(input) if beta == 0 else input * beta)
    a, b = _coerce(base, product)
    return apply(P.add_p, (a, b), name=name)


def cross(input, other, dim=None) -> Tensor:
    """The cross product of 3-vectors along ``dim`` (the first dim of size 3 if None)."""
    a, b = _as_tensor(input), _as_tensor(other)
    if dim is None:
        import warnings
        warnings.warn("Using torch.cross without specifying the dim arg is deprecated.\n"
                      "Please either pass the dim explicitly or simply use torch.linalg.cross.\n"
                      "The default value of dim will change to agree with that of linalg.cross "
                      "in a future release.", UserWarning, stacklevel=2)
        shape = P.broadcast_shapes(a.shape, b.shape)
        dim = next((i for i, n in enumerate(shape) if n == 3), None)
        if dim is None:
            raise RuntimeError("no dimension of size 3 in input")
    return _linalg_cross(a, b, dim)


def _linalg_cross(a, b, dim=-1):
    a, b = _coerce(a, b)
    if a.ndim != b.ndim:
        raise RuntimeError("linalg.cross: inputs must have the same number of dimensions.")
    nd = a.ndim
    d = _dim(dim, nd)
    da, db = d - (nd - a.ndim), d - (nd - b.ndim)
    na = a.shape[da] if 0 <= da < a.ndim else 1
    nb = b.shape[db] if 0 <= db < b.ndim else 1
    if na != 3 or nb != 3:
        raise RuntimeError(f"linalg.cross: inputs dimension {dim} must have length 3. Got {na} "
                           f"and {nb}")
    a, b = broadcast_tensors(a, b)

    def c(t, i):
        return getitem(t, (_slice(None),) * d + (_slice(i, i + 1),))
    parts = [c(a, 1) * c(b, 2) - c(a, 2) * c(b, 1), c(a, 2) * c(b, 0) - c(a, 0) * c(b, 2),
             c(a, 0) * c(b, 1) - c(a, 1) * c(b, 0)]
    return apply(P.cat_p, tuple(parts), {"axis": d}, name="LinalgCrossBackward0")


def _std_var_mean(fn, name, input, dim, unbiased, keepdim, correction):
    x = _as_tensor(input)
    if isinstance(dim, _bool):
        dim, unbiased = None, dim
    spread = fn(x, dim, unbiased, keepdim, correction=correction)
    m = mean(_float(x), dim, keepdim)
    return (_named(spread, name), _named(m, name))


def std_mean(input, dim=None, unbiased=None, keepdim: _bool = False, *, correction=None):
    """(std, mean) over ``dim``."""
    return _std_var_mean(std, "StdMeanBackward0", input, dim, unbiased, keepdim, correction)


def var_mean(input, dim=None, unbiased=None, keepdim: _bool = False, *, correction=None):
    """(var, mean) over ``dim``."""
    return _std_var_mean(var, "VarMeanBackward0", input, dim, unbiased, keepdim, correction)


def lerp(input, end, weight) -> Tensor:
    """input + weight * (end - input), weight a number or a tensor."""
    a, b = _as_tensor(input), _as_tensor(end)
    if a.dtype is not b.dtype:
        raise RuntimeError(f"expected dtype {a.dtype.name.replace('32', '')} for `end` but got "
                           f"dtype {b.dtype.name.replace('64', '').replace('float', 'double')}")
    if isinstance(weight, Tensor):
        return apply(P.add_p, _coerce(a, weight * (b - a)), name="LerpBackward1")
    return apply(P.add_p, _coerce(a, (b - a) * weight), name="LerpBackward0")


def _diagonal(x: Tensor, offset: _int, dim1: _int, dim2: _int, name=None) -> Tensor:
    return apply(P.diagonal_p, (x,), {"offset": offset, "dim1": dim1, "dim2": dim2}, name=name)


def _diag_embed(v: Tensor, offset: _int, dim1: _int, dim2: _int, shape: tuple,
                name=None) -> Tensor:
    return apply(P.diag_embed_p, (v,), {"offset": offset, "dim1": dim1, "dim2": dim2,
                                        "shape": tuple(shape)}, name=name)


def diagonal(input, offset: _int = 0, dim1: _int = 0, dim2: _int = 1) -> Tensor:
    """The diagonal ``offset`` above the main one, of the matrices in dims (dim1, dim2),
    as a last dim. A view of ``input``, as in PyTorch (writes go through).

    >>> tracegrad.arange(9.).reshape(3, 3).diagonal(1)
    tensor([1., 5.])
    """
    x = _as_tensor(input)
    a, b = _dim(dim1, x.ndim), _dim(dim2, x.ndim)
    if a == b:
        raise RuntimeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    return _diagonal(x, _int(offset), a, b)


def diag_embed(input, offset: _int = 0, dim1: _int = -2, dim2: _int = -1) -> Tensor:
    """Matrices (in dims dim1, dim2 of the result) with ``input``'s last dim on their
    ``offset`` diagonal, zero elsewhere."""
    x = _as_tensor(input)
    nd = x.ndim + 1
    a, b = _dim(dim1, nd), _dim(dim2, nd)
    if a == b:
        raise RuntimeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    n = (x.shape[-1] if x.ndim else 1) + builtins.abs(_int(offset))
    rest = iter(x.shape[:-1])
    shape = tuple(n if i in (a, b) else next(rest) for i in range(nd))
    return _diag_embed(x if x.ndim else reshape(x, (1,)), _int(offset), a, b, shape)


def diag(input, diagonal: _int = 0) -> Tensor:
    """A vector -> the square matrix with it on the ``diagonal``-th diagonal; a matrix ->
    that diagonal (a copy)."""
    x = _as_tensor(input)
    if x.ndim == 1:
        n = x.shape[0] + builtins.abs(diagonal)
        return _diag_embed(x, diagonal, 0, 1, (n, n), name="DiagEmbedBackward0")
    if x.ndim == 2:
        d = _diagonal(x, diagonal, 0, 1)
        return apply(P.copy_p, (d,), name="DiagonalBackward0_copy")
    raise RuntimeError(f"diag(): Supports 1D or 2D tensors. Got {x.ndim}D")


# ---- einsum (opsb) -------------------------------------------------------------------
#
# NOTE: [einsum as matmul] einsum is a composite: a repeated label within one operand is a
# diagonal (the ``diagonal`` primitive), a label no later operand or the output needs is
# summed away at once, and each pair of operands is contracted with one batched ``matmul``
# (batch labels, then each side's own labels, the shared summed labels as the inner dim),
# or a broadcast multiply when nothing is summed. Gradients are those of the primitives:
# matmul's VJPs are matmuls, so backward costs what forward does and stays exact.


def _einsum_parse(equation: str, operands):
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise RuntimeError("einsum(): more operands were provided than specified in the "
                           "equation" if len(operands) > len(terms) else
                           "einsum(): fewer operands were provided than specified in the "
                           "equation")
    ell_dims = 0
    parsed = []
    for term, op in zip(terms, operands, strict=True):
        labels = term.replace("...", ".")
        for c in labels:
            if c != "." and not c.isalpha():
                raise RuntimeError(f"einsum(): invalid subscript given at index "
                                   f"{eq.index(c)} in the equation string, subscripts must "
                                   f"be in [a-zA-Z]")
        n_named = len(labels) - labels.count(".")
        if "." in labels:
            k = op.ndim - n_named
            ell_dims = builtins.max(ell_dims, k)
        elif n_named != op.ndim:
            raise RuntimeError(f"einsum(): the number of subscripts in the equation "
                               f"({n_named}) does not match the number of dimensions "
                               f"({op.ndim}) for operand {len(parsed)} and no ellipsis was "
                               f"given")
        parsed.append(labels)
    ell = [chr(0x100 + i) for i in range(ell_dims)]  # stand-in labels for ellipsis dims
    expanded = []
    for labels, op in zip(parsed, operands, strict=True):
        if "." in labels:
            k = op.ndim - (len(labels) - 1)
            labels = labels.replace(".", "".join(ell[ell_dims - k:]))
        expanded.append(labels)
    if arrow:
        out = rhs.replace("...", "".join(ell))
    else:
        counts = collections.Counter("".join(expanded))
        out = "".join(ell) + "".join(sorted(c for c in counts if counts[c] == 1
                                            and c not in ell))
    return expanded, out


def _einsum_diagonals(x: Tensor, labels: str):
    """Take the diagonal over each label repeated within one operand."""
    while True:
        seen = {}
        for i, c in enumerate(labels):
            if c in seen:
                j = seen[c]
                x = _diagonal(x, 0, j, i)  # the diagonal dim goes last
                labels = labels[:j] + labels[j + 1:i] + labels[i + 1:] + c
                labels = labels.replace(c, "", 1) if labels.count(c) > 1 else labels
                break
            seen[c] = i
        else:
            return x, labels


def _einsum_sum(x: Tensor, labels: str, keep) -> tuple:
    drop = tuple(i for i, c in enumerate(labels) if c not in keep)
    if drop:
        x = sum(x, drop)
        labels = "".join(c for c in labels if c in keep)
    return x, labels


def _einsum_pair(a, la, b, lb, keep):
    sizes = {}
    for t, labels in ((a, la), (b, lb)):
        for c, n in zip(labels, t.shape, strict=True):
            if n != 1 or c not in sizes:
                sizes[c] = n if sizes.get(c, 1) == 1 else sizes[c]
    batch = [c for c in la if c in lb and c in keep]
    summed = [c for c in la if c in lb and c not in keep]
    a_only = [c for c in la if c not in lb]
    b_only = [c for c in lb if c not in la]
    if not summed:  # nothing to contract: a broadcast product
        labels = batch + a_only + b_only
        pa = permute(a, [la.index(c) for c in batch + a_only])
        pb = permute(b, [lb.index(c) for c in batch + b_only])
        pa = reshape(pa, tuple(pa.shape) + (1,) * len(b_only))
        pb = reshape(pb, tuple(pb.shape[:len(batch)]) + (1,) * len(a_only)
                     + tuple(pb.shape[len(batch):]))
        return mul(pa, pb), "".join(labels)

    def arrange(t, labels, first, second):
        t = permute(t, [labels.index(c) for c in batch + first + second])
        t = broadcast_to(t, tuple(sizes[c] for c in batch) + tuple(t.shape[len(batch):]))
        return reshape(t, (math.prod(sizes[c] for c in batch),
                           math.prod(sizes[c] for c in first),
                           math.prod(sizes[c] for c in second)))
    ma = arrange(a, la, a_only, summed)
    mb = arrange(b, lb, summed, b_only)
    r = matmul(ma, mb)
    out = tuple(sizes[c] for c in batch + a_only + b_only)
    return reshape(r, out), "".join(batch + a_only + b_only)


def einsum(equation, *operands) -> Tensor:
    """Einstein summation: ``einsum('ij,jk->ik', a, b)`` is a @ b. Ellipsis, repeated
    labels in one operand (diagonals) and implicit output (labels seen once, sorted)
    are supported (see NOTE: [einsum as matmul]).

    >>> tracegrad.einsum('ii', tracegrad.eye(3))
    tensor(3.)
    """
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    ops = [_as_tensor(t) for t in operands]
    terms, out = _einsum_parse(equation, ops)
    for c in out:
        if out.count(c) > 1:
            raise RuntimeError(f"einsum(): output subscript {c} appears more than once in the "
                               f"output")
        if not builtins.any(c in t for t in terms):
            raise RuntimeError(f"einsum(): output subscript {c} does not appear in the "
                               f"equation for any input operand")
    if len(ops) == 1:  # as PyTorch: diagonals, one permute (output labels first), one sum
        x, labels = _einsum_diagonals(ops[0], terms[0])
        rest = [c for c in labels if c not in out]
        x = apply(P.permute_p, (x,), {"perm": tuple(labels.index(c) for c in list(out) + rest)})
        if rest:
            x = sum(x, tuple(range(len(out), len(out) + len(rest))))
        return x
    items = []
    for k, (t, labels) in enumerate(zip(ops, terms, strict=True)):
        t, labels = _einsum_diagonals(t, labels)
        later = out + "".join(terms[k + 1:]) + "".join(lb for _, lb in items)
        t, labels = _einsum_sum(t, labels, later)
        items.append((t, labels))
    x, lx = items[0]
    for k in range(1, len(items)):
        y, ly = items[k]
        keep = out + "".join(lb for _, lb in items[k + 1:])
        x, lx = _einsum_pair(x, lx, y, ly, keep)
    x, lx = _einsum_sum(x, lx, out)
    if lx != out:
        x = permute(x, [lx.index(c) for c in out])
    return x


def cdist(x1, x2, p: _pyfloat = 2.0, compute_mode=None) -> Tensor:
    """The p-norm distance between each row of x1 (..., P, M) and of x2 (..., R, M):
    (..., P, R). Computed from the differences (compute_mode is accepted and ignored)."""
    x1, x2 = _as_tensor(x1), _as_tensor(x2)
    if x1.ndim < 2 or x2.ndim < 2:
        raise RuntimeError(f"cdist only supports at least 2D tensors, X{1 if x1.ndim < 2 else 2}"
                           f" got: {builtins.min(x1.ndim, x2.ndim)}D")
    if x1.shape[-1] != x2.shape[-1]:
        raise RuntimeError(f"X1 and X2 must have the same number of columns. X1: "
                           f"{x1.shape[-1]} X2: {x2.shape[-1]}")
    if p < 0:
        raise RuntimeError(f"cdist only supports non-negative p values, got {p}")
    diff = sub(unsqueeze(x1, -2), unsqueeze(x2, -3))     # (..., P, R, M)
    if p == 0:  # the count of differing coordinates: piecewise constant, zero gradient
        count = cast(sum(ne(diff, 0), -1), diff.dtype)
        return apply(P.add_p, (count, sum(mul(diff, 0.0), -1)), name="CdistBackward0")
    return _named(norm(diff, p, -1), "CdistBackward0")


# ---- linear algebra helpers (opsb); the API is tracegrad/linalg.py ---------------------

def _check_linalg_input(x: Tensor, name: str, square: _bool = True) -> Tensor:
    if x.ndim < 2:
        raise RuntimeError(f"{name}: The input tensor A must have at least 2 dimensions.")
    if not x.dtype.is_floating_point:
        raise RuntimeError(f"{name}: Expected a floating point or complex tensor as input. Got "
                           f"{_TYPE_WORD[x.dtype.name]}")
    if square and x.shape[-1] != x.shape[-2]:
        raise RuntimeError(f"{name}: A must be batches of square matrices, but they are "
                           f"{x.shape[-2]} by {x.shape[-1]} matrices")
    return x


def _linalg_inv(x: Tensor) -> Tensor:
    return apply(P.inv_p, (x,))


def _linalg_solve(a: Tensor, b: Tensor) -> Tensor:
    batch = P.broadcast_shapes(tuple(a.shape[:-2]), tuple(b.shape[:-2]))
    a = broadcast_to(a, batch + tuple(a.shape[-2:]))
    b = broadcast_to(b, batch + tuple(b.shape[-2:]))
    return apply(P.solve_p, (a, b))


def _eigh_values(x: Tensor) -> Tensor:
    return apply(P.eigh_values_p, (x,))


def _eigh_vectors(x: Tensor) -> Tensor:
    return apply(P.eigh_vectors_p, (x,))


_SVD_PRIMS = {"u": "svd_u_p", "s": "svd_s_p", "vh": "svd_vh_p"}


def _svd_part(x: Tensor, part: str, full: _bool = False) -> Tensor:
    if part == "s":
        return apply(P.svd_s_p, (x,))
    return apply(getattr(P, _SVD_PRIMS[part]), (x,), {"full": _bool(full)})


def _qr_part(x: Tensor, part: str, mode: str = "reduced") -> Tensor:
    return apply(P.qr_q_p if part == "q" else P.qr_r_p, (x,), {"mode": mode})


def movedim(input, source, destination) -> Tensor:
    """``input`` with dims ``source`` moved to ``destination`` (the rest keep their order)."""
    x = _as_tensor(input)
    src = (source,) if isinstance(source, (_int, np.integer)) else tuple(source)
    dst = (destination,) if isinstance(destination, (_int, np.integer)) else tuple(destination)
    if len(src) != len(dst):
        raise RuntimeError(f"movedim: Invalid source or destination dims: source ({list(src)} "
                           f"dims) should contain the same number of dims as destination "
                           f"({list(dst)} dims)")
    src = [_dim(d, x.ndim) for d in src]
    dst = [_dim(d, x.ndim) for d in dst]
    rest = iter(d for d in range(x.ndim) if d not in src)
    perm = [0] * x.ndim
    placed = dict(zip(dst, src, strict=True))
    for i in range(x.ndim):
        perm[i] = placed[i] if i in placed else next(rest)
    return permute(x, perm)


moveaxis = movedim


def inverse(input) -> Tensor:
    """torch.inverse: linalg.inv."""
    from . import linalg
    return linalg.inv(input)


def det(input) -> Tensor:
    from . import linalg
    return linalg.det(input)


def slogdet(input):
    from . import linalg
    return linalg.slogdet(input)


def svd(input, some: _bool = True, compute_uv: _bool = True):
    """torch.svd (deprecated in PyTorch): (U, S, V), V = Vh^T; reduced unless some=False."""
    from . import linalg
    u, s, vh = linalg.svd(input, full_matrices=not some)
    return _return_type("svd", ("U", "S", "V"))(u, s, transpose(vh, -2, -1))


def logdet(input) -> Tensor:
    """log(det(A)): NaN where the determinant is negative, -inf where it is zero."""
    from . import linalg
    sign, logabs = linalg.slogdet(input)
    return apply(P.where_p, (lt(sign, 0), _const(math.nan, logabs.dtype), logabs),
                 name="WhereBackward0")


# ---- more of the torch namespace: composites over the primitives above --------------
# (ops real code reaches for next to issue 12's; no rules of their own)

def take(input, index) -> Tensor:
    """``input`` read as a 1-d tensor at ``index`` (any shape; negative entries count
    from the end)."""
    return getitem(reshape(_as_tensor(input), (-1,)), _index_arg(index, "take"))


def _along(d: _int):
    return (_slice(None),) * d + (P.TENSOR,)


def index_add(input, dim: _int, index, source, *, alpha=1) -> Tensor:
    """``input`` with ``alpha * source`` added at ``index`` along ``dim`` (repeats add up)."""
    x = _as_tensor(input)
    d = _dim(dim, x.ndim)
    src = _as_tensor(source)
    if alpha != 1:
        src = mul(src, alpha)
    return _index_add(x, src, (_index_arg(index, "index_add"),), _along(d))


def index_fill(input, dim: _int, index, value) -> Tensor:
    """``input`` with the slices at ``index`` along ``dim`` set to ``value``."""
    x = _as_tensor(input)
    d = _dim(dim, x.ndim)
    idx = reshape(_index_arg(index, "index_fill"), (-1,))
    n = x.shape[d] if x.ndim else 1
    hit = any(eq(unsqueeze(arange(n), 1), unsqueeze(remainder(idx, n), 0)), 1)
    mask = reshape(hit, (n,) + (1,) * (x.ndim - d - 1)) if x.ndim else reshape(hit, ())
    v = value if isinstance(value, Tensor) else _const(value, x.dtype)
    return where(mask, cast(v, x.dtype), x)


def sgn(input) -> Tensor:
    """sign(x) for real tensors."""
    return sign(input)


def kron(input, other) -> Tensor:
    """The Kronecker product: blocks ``input[i] * other``."""
    a, b = _as_tensor(input), _as_tensor(other)
    nd = builtins.max(a.ndim, b.ndim)
    a = reshape(a, (1,) * (nd - a.ndim) + tuple(a.shape))
    b = reshape(b, (1,) * (nd - b.ndim) + tuple(b.shape))
    wide = mul(reshape(a, tuple(s for n in a.shape for s in (n, 1))),
               reshape(b, tuple(s for n in b.shape for s in (1, n))))
    return reshape(wide, tuple(m * n for m, n in zip(a.shape, b.shape, strict=True)))


def tensordot(a, b, dims=2) -> Tensor:
    """Sum of products over ``dims`` (the last n of a with the first n of b, or two lists)."""
    x, y = _as_tensor(a), _as_tensor(b)
    if isinstance(dims, (_int, np.integer)):
        if dims < 0:
            raise RuntimeError(f"tensordot expects dims >= 0, but got dims={dims}")
        da, db = list(range(x.ndim - dims, x.ndim)), list(range(dims))
    else:
        da, db = ([d] if isinstance(d, (_int, np.integer)) else list(d) for d in dims)
    da, db = [_dim(d, x.ndim) for d in da], [_dim(d, y.ndim) for d in db]
    for i, j in zip(da, db, strict=True):
        if x.shape[i] != y.shape[j]:
            raise RuntimeError(f"contracted dimensions need to match, but first has size "
                               f"{x.shape[i]} in dim {i} and second has size {y.shape[j]} in "
                               f"dim {j}")
    fa = [d for d in range(x.ndim) if d not in da]
    fb = [d for d in range(y.ndim) if d not in db]
    k = math.prod(x.shape[d] for d in da)
    xa = reshape(permute(x, fa + da), (math.prod(x.shape[d] for d in fa), k))
    yb = reshape(permute(y, db + fb), (k, math.prod(y.shape[d] for d in fb)))
    return reshape(matmul(xa, yb), tuple(x.shape[d] for d in fa) + tuple(y.shape[d] for d in fb))


def inner(input, other) -> Tensor:
    """Sum of products over the last dims (a product when either is 0-d)."""
    a, b = _as_tensor(input), _as_tensor(other)
    if a.ndim == 0 or b.ndim == 0:
        return mul(a, b)
    return tensordot(a, b, ([-1], [-1]))


def fliplr(input) -> Tensor:
    x = _as_tensor(input)
    if x.ndim < 2:
        raise RuntimeError("Input must be >= 2-d.")
    return flip(x, (1,))


def flipud(input) -> Tensor:
    x = _as_tensor(input)
    if x.ndim < 1:
        raise RuntimeError("Input must be >= 1-d.")
    return flip(x, (0,))


def _atleast(nd, tensors):
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    out = []
    for t in tensors:
        t = _as_tensor(t)
        if t.ndim < nd:
            if t.ndim == 0:
                shape = (1,) * nd
            elif t.ndim == 1:
                shape = (1, t.shape[0], 1) if nd == 3 else (1, t.shape[0])
            else:
                shape = tuple(t.shape) + (1,)
            t = reshape(t, shape)
        out.append(t)
    return out[0] if len(out) == 1 else tuple(out)


def atleast_1d(*tensors):
    return _atleast(1, tensors)


def atleast_2d(*tensors):
    return _atleast(2, tensors)


def atleast_3d(*tensors):
    return _atleast(3, tensors)


def _seq(tensors, nd):
    ts = [_atleast(nd, [t]) for t in tensors]
    return ts


def hstack(tensors) -> Tensor:
    ts = _seq(tensors, 1)
    return cat(ts, 0 if ts[0].ndim == 1 else 1)


def vstack(tensors) -> Tensor:
    return cat(_seq(tensors, 2), 0)


row_stack = vstack


def dstack(tensors) -> Tensor:
    return cat(_seq(tensors, 3), 2)


def column_stack(tensors) -> Tensor:
    ts = [_as_tensor(t) for t in tensors]
    return cat([reshape(t, (t.numel(), 1)) if t.ndim < 2 else t for t in ts], 1)


def tensor_split(input, indices_or_sections, dim: _int = 0):
    """Views of ``input`` split along ``dim`` into n near-equal parts (the first
    ``size % n`` one longer) or at the given indices."""
    x = _as_tensor(input)
    d = _dim(dim, x.ndim)
    n = x.shape[d]
    if isinstance(indices_or_sections, Tensor):
        indices_or_sections = indices_or_sections.tolist()
    if isinstance(indices_or_sections, (_int, np.integer)):
        k = _int(indices_or_sections)
        if k <= 0:
            raise RuntimeError(f"number of sections must be larger than 0, got {k}")
        sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
        bounds = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    else:
        bounds = [0] + [builtins.min(builtins.max(_int(i) if i >= 0 else n + _int(i), 0), n)
                        for i in indices_or_sections] + [n]
    parts = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        lo = builtins.min(lo, n)
        parts.append(narrow(x, d, lo, builtins.max(hi - lo, 0)))
    return tuple(parts)


def _split_even(x, sections, d, fn):
    if isinstance(sections, (_int, np.integer)) and x.shape[d] % sections:
        raise RuntimeError(f"torch.{fn} attempted to split along dimension {d}, but the size of "
                           f"the dimension {x.shape[d]} is not divisible by the split_size "
                           f"{sections}!")
    return tensor_split(x, sections, d)


def hsplit(input, sections):
    x = _as_tensor(input)
    return _split_even(x, sections, 1 if x.ndim > 1 else 0, "hsplit")


def vsplit(input, sections):
    return _split_even(_as_tensor(input), sections, 0, "vsplit")


def nansum(input, dim=None, keepdim: _bool = False, *, dtype=None) -> Tensor:
    """sum() with NaN counted as zero."""
    x = _as_tensor(input)
    if x.dtype.is_floating_point:
        x = where(isnan(x), _const(0.0, x.dtype), x)
    return sum(x, dim, keepdim, dtype=dtype) if dim is not None else sum(x, dtype=dtype)


def nanmean(input, dim=None, keepdim: _bool = False, *, dtype=None) -> Tensor:
    """mean() of the entries that are not NaN."""
    x = _as_tensor(input)
    if not x.dtype.is_floating_point:
        raise RuntimeError(f"nanmean(): expected input to have floating point or complex dtype "
                           f"but got {_SCALAR_TYPE_NAME.get(x.dtype.name, x.dtype.name)}")
    count = nansum(cast(logical_not(isnan(x)), x.dtype), dim, keepdim)
    return div(nansum(x, dim, keepdim, dtype=dtype), count)


_SCALAR_TYPE_NAME = {"int64": "Long", "int32": "Int", "int16": "Short", "int8": "Char",
                     "uint8": "Byte", "bool": "Bool"}
_aminmax_t = _return_type("aminmax", ("min", "max"))


def aminmax(input, *, dim=None, keepdim: _bool = False):
    """(amin, amax) over ``dim`` (all entries if None)."""
    x = _as_tensor(input)
    axes = () if dim is None else dim
    return _aminmax_t(amin(x, axes, keepdim), amax(x, axes, keepdim))


def count_nonzero(input, dim=None) -> Tensor:
    """The number of nonzero entries (over ``dim``), int64."""
    x = _as_tensor(input)
    nz = ne(x, _const(0, x.dtype))
    return sum(nz, dim) if dim is not None else sum(nz)


def diff(input, n: _int = 1, dim: _int = -1, prepend=None, append=None) -> Tensor:
    """The n-th forward difference along ``dim`` (``!=`` for bool)."""
    x = _as_tensor(input)
    d = _dim(dim, x.ndim)
    parts = [t for t in (prepend, x, append) if t is not None]
    if len(parts) > 1:
        x = cat([_as_tensor(t) for t in parts], d)
    for _ in range(n):
        m = x.shape[d]
        hi, lo = narrow(x, d, 1, builtins.max(m - 1, 0)), narrow(x, d, 0, builtins.max(m - 1, 0))
        x = ne(hi, lo) if x.dtype is dtypes.bool_ else sub(hi, lo)
    return x


def addcmul(input, tensor1, tensor2, *, value=1) -> Tensor:
    """input + value * tensor1 * tensor2."""
    return add(input, mul(mul(tensor1, tensor2), value))


def addcdiv(input, tensor1, tensor2, *, value=1) -> Tensor:
    """input + value * tensor1 / tensor2 (floating point only)."""
    t1, t2 = _as_tensor(tensor1), _as_tensor(tensor2)
    if not t1.dtype.is_floating_point and not t2.dtype.is_floating_point:
        raise RuntimeError("Integer division with addcdiv is no longer supported, and in a "
                           "future release addcdiv will perform a true division of tensor1 and "
                           "tensor2. The historic addcdiv behavior can be implemented as "
                           "(input + value * torch.trunc(tensor1 / tensor2)).to(input.dtype) "
                           "for integer inputs and as (input + value * tensor1 / tensor2) for "
                           "float inputs. The future addcdiv behavior is just the latter "
                           "implementation: (input + value * tensor1 / tensor2), for all dtypes.")
    return add(input, mul(div(t1, t2), value))


def ravel(input) -> Tensor:
    return reshape(_as_tensor(input), (-1,))


_QUANTILE_MODES = ("linear", "lower", "higher", "midpoint", "nearest")


def _quantile(input, q, dim, keepdim, interpolation, ignore_nan):
    # torch's quantile_impl: sort, ranks q * (n - 1) (the last index where a row has a NaN;
    # for nanquantile, of the non-NaN count), then the two neighbours lerped
    fn = "nanquantile" if ignore_nan else "quantile"
    x = _as_tensor(input)
    if x.numel() == 0:
        raise RuntimeError(f"{fn}() input tensor must be non-empty")
    if x.dtype not in (dtypes.float32, dtypes.float64):
        raise RuntimeError(f"{fn}() input tensor must be either float or double dtype")
    if interpolation not in _QUANTILE_MODES:
        raise RuntimeError(f"{fn}() interpolation must be one of linear, lower, higher, "
                           f"midpoint or nearest. Got {interpolation}")
    if isinstance(q, Tensor):
        if q.ndim > 1:
            raise RuntimeError(f"{fn}() q must be a scalar or 1D tensor")
        if q.dtype is not x.dtype:
            raise RuntimeError(f"{fn}() q tensor must be same dtype as the input tensor")
        qa = q._data
        if qa.__class__ is np.ndarray and not ((qa >= 0) & (qa <= 1)).all():
            raise RuntimeError(f"{fn}() q values must be in the range [0, 1]")
        qt, one_q = q, q.ndim == 0
    else:
        if not 0 <= q <= 1:
            raise RuntimeError(f"{fn}() q must be in the range [0, 1] but got {q}")
        qt, one_q = full((), q, dtype=x.dtype), True
    if dim is None:
        v = reshape(x, (-1,))
    else:
        d = _dim(dim, x.ndim)
        v = movedim(x, d, -1) if x.ndim else reshape(x, (1,))
    srt = sort(v, -1).values
    n = srt.shape[-1]
    batch = tuple(srt.shape[:-1])
    qv = reshape(qt, (-1,) + (1,) * (len(batch) + 1))            # (Q, 1.., 1)
    if ignore_nan:
        valid = sum(cast(logical_not(isnan(srt)), x.dtype), -1, keepdim=True)
        ranks = mul(qv, sub(valid, 1))
        ranks = where(lt(ranks, 0), _const(0.0, x.dtype), ranks)
    else:
        ranks = where(any(isnan(srt), -1, keepdim=True), _const(float(n - 1), x.dtype),
                      mul(qv, float(n - 1)))
    if interpolation == "lower":
        ranks = floor(ranks)
    elif interpolation == "higher":
        ranks = ceil(ranks)
    elif interpolation == "nearest":
        ranks = round(ranks)
    shape = tuple(ranks.shape[:1]) + batch + (n,)
    rows = expand(unsqueeze(srt, 0), *shape)
    below = cast(ranks, dtypes.int64)
    out = gather(rows, -1, below)
    if interpolation in ("linear", "midpoint"):
        weights = full_like(ranks, 0.5) if interpolation == "midpoint" else \
            sub(ranks, cast(below, x.dtype))
        out = lerp(out, gather(rows, -1, cast(ceil(ranks), dtypes.int64)), weights)
    out = squeeze(out, -1)                                        # (Q, batch...)
    if keepdim:
        if dim is None:
            out = reshape(out, tuple(out.shape[:1]) + (1,) * x.ndim)
        elif x.ndim:
            out = unsqueeze(out, 1 + _dim(dim, x.ndim))
    return reshape(out, tuple(out.shape[1:])) if one_q else out


def quantile(input, q, dim=None, keepdim: _bool = False, *, interpolation: str = "linear"):
    """The q-th quantiles (q a float or a 1-d tensor in [0, 1]) of all entries or along
    ``dim``, between sorted neighbours as ``interpolation`` says; NaN where a row has one.

    >>> tracegrad.quantile(tracegrad.tensor([1., 2., 4.]), 0.75)
    tensor(3.)
    """
    return _quantile(input, q, dim, keepdim, interpolation, False)


def nanquantile(input, q, dim=None, keepdim: _bool = False, *, interpolation: str = "linear"):
    """quantile() of the entries that are not NaN."""
    return _quantile(input, q, dim, keepdim, interpolation, True)
