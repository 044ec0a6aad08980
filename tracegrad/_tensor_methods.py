"""Tensor methods and operators, attached to Tensor from the functions module.

Kept apart from tensor.py so that file reads as the data structure and the
recording step; every method here is a thin call into ``functions``.
"""
from __future__ import annotations

import weakref

import numpy as np

from . import dtypes, functions as F, primitives as P
from ._storage import make_writable
from .autograd.grad_mode import _state as _grad_state
from .tensor import (
    META_EPOCH as _META_EPOCH,
    Tensor,
    _on_inplace,
    _op_state,
    _View,
    apply,
    commit_inplace,
    trace_state,
)

# ---- operators --------------------------------------------------------------
Tensor.__add__ = F.add
Tensor.__radd__ = F.add  # PyTorch's operand order: self first
Tensor.__sub__ = F.sub
Tensor.__rsub__ = lambda self, other: F.rsub(self, other)
Tensor.__mul__ = F.mul
Tensor.__rmul__ = F.mul
Tensor.__truediv__ = F.div
Tensor.__rtruediv__ = lambda self, other: F.rdiv(self, other)
Tensor.__floordiv__ = lambda self, other: F.floor_divide(self, other)
Tensor.__rfloordiv__ = lambda self, other: F.floor_divide(other, self)
Tensor.__mod__ = lambda self, other: F.remainder(self, other)
Tensor.__pow__ = F.pow
Tensor.__rpow__ = lambda self, other: F.pow(other, self)
Tensor.__matmul__ = F.matmul
Tensor.__rmatmul__ = lambda self, other: F.matmul(other, self)
Tensor.__neg__ = lambda self: F.neg(self)
Tensor.__pos__ = lambda self: self
Tensor.__abs__ = lambda self: F.abs(self)

Tensor.__eq__ = F.eq
Tensor.__ne__ = F.ne
Tensor.__lt__ = F.lt
Tensor.__le__ = F.le
Tensor.__gt__ = F.gt
Tensor.__ge__ = F.ge
Tensor.__getitem__ = F.getitem
Tensor.__setitem__ = F.setitem

# ---- opsa: bitwise operators (issue 12): bitwise on integers, logical on bools ----
Tensor.__and__ = F.bitwise_and
Tensor.__or__ = F.bitwise_or
Tensor.__xor__ = F.bitwise_xor
Tensor.__rand__ = lambda self, other: F.bitwise_and(other, self)
Tensor.__ror__ = lambda self, other: F.bitwise_or(other, self)
Tensor.__rxor__ = lambda self, other: F.bitwise_xor(other, self)
Tensor.__lshift__ = F.bitwise_left_shift
Tensor.__rshift__ = F.bitwise_right_shift
Tensor.__rlshift__ = lambda self, other: F.bitwise_left_shift(other, self)
Tensor.__rrshift__ = lambda self, other: F.bitwise_right_shift(other, self)
Tensor.__invert__ = F._invert
# ---- end of opsa operators ----

# ---- plain methods ----------------------------------------------------------
for _name in [
    "add", "sub", "mul", "div", "pow", "neg", "exp", "log", "log1p", "sin", "cos", "tan", "tanh",
    "sigmoid", "relu", "sqrt", "rsqrt", "erf", "abs", "sign", "floor", "ceil", "round", "clamp",
    "clip", "clamp_min", "clamp_max", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge",
    "logical_and", "logical_or", "logical_xor", "logical_not", "isfinite", "isnan", "isinf",
    "masked_fill", "sum", "mean", "prod", "amax", "amin", "max", "min", "argmax", "argmin",
    "var", "std", "logsumexp", "norm", "cumsum", "softmax", "log_softmax", "all", "any",
    "matmul", "mm", "bmm", "mv", "dot", "outer", "reshape", "view", "flatten", "unflatten",
    "squeeze", "unsqueeze", "permute", "transpose", "swapaxes", "t", "expand", "broadcast_to",
    "flip", "split", "chunk", "unbind", "select", "narrow", "gather", "index_select",
    "masked_select", "nonzero", "clone", "expm1", "log2", "log10", "square", "reciprocal",
    "trunc", "remainder", "fmod", "floor_divide", "tril", "triu", "multiply", "subtract", "divide",
    "true_divide", "negative", "absolute", "greater", "less", "greater_equal", "less_equal",
    "not_equal", "allclose", "isclose", "equal", "take_along_dim", "scatter_add", "addmm",
    "bernoulli",
]:
    setattr(Tensor, _name, getattr(F, _name))  # the function itself: no wrapper call

Tensor.flip = lambda self, *dims: F.flip(self, dims[0] if len(dims) == 1 else dims)  # x.flip(0, 1)
Tensor.float = lambda self: F.cast(self, dtypes.float32)
Tensor.double = lambda self: F.cast(self, dtypes.float64)
Tensor.half = lambda self: F.cast(self, dtypes.float16)
Tensor.bfloat16 = lambda self: F.cast(self, dtypes.bfloat16)
Tensor.long = lambda self: F.cast(self, dtypes.int64)
Tensor.int = lambda self: F.cast(self, dtypes.int32)
Tensor.bool = lambda self: F.cast(self, dtypes.bool_)
Tensor.type_as = lambda self, other: F.cast(self, other.dtype)
Tensor.view_as = lambda self, other: F.reshape(self, other.shape)
Tensor.reshape_as = lambda self, other: F.reshape(self, other.shape)
Tensor.expand_as = lambda self, other: F.expand(self, other.shape)
Tensor.T = property(lambda self: F.permute(self, tuple(reversed(range(self.ndim)))))
Tensor.mT = property(lambda self: F.transpose(self, -2, -1))



# ---- in-place methods: compute out of place, then commit into self ----------
def _inplace(fn):
    def m(self, *args, **kwargs):
        return commit_inplace(self, fn(self, *args, **kwargs))
    m.__name__ = fn.__name__ + "_"
    return m


for _name in ["add", "sub", "mul", "div", "pow", "neg", "exp", "log", "log1p", "sin", "cos", "tan",
              "tanh", "sigmoid", "relu", "sqrt", "rsqrt", "abs", "sign", "floor", "ceil", "round",
              "clamp", "clip", "clamp_min", "clamp_max", "masked_fill", "t", "erf", "reciprocal",
              "square", "trunc", "remainder", "floor_divide", "logical_not", "squeeze",
              "unsqueeze", "transpose"]:
    setattr(Tensor, _name + "_", _inplace(getattr(F, _name)))


def _inplace_arith(fn, ufunc):
    """add_/sub_/mul_/div_: with nothing to record, the ufunc writes straight into
    self's array (one pass, as ``w -= lr * w.grad`` should be); else as _inplace."""
    slow = _inplace(fn)

    def m(self, other, *, alpha=1):
        data = self._data
        if (alpha == 1 and isinstance(other, Tensor) and not (_grad_state.enabled and
                (self._rg or other._rg)) and trace_state.current is None
                and not _op_state.active and other._data.dtype is data.dtype
                and data.dtype.kind == "f" and make_writable(data)):
            try:
                ufunc(data, other._data, out=data)
            except ValueError:  # the other operand does not broadcast into self
                return slow(self, other)
            self._vc[0] += 1
            return self
        return slow(self, other, alpha=alpha) if alpha != 1 else slow(self, other)
    m.__name__ = fn.__name__ + "_"
    return m


Tensor.add_ = _inplace_arith(F.add, np.add)
Tensor.sub_ = _inplace_arith(F.sub, np.subtract)
Tensor.mul_ = _inplace_arith(lambda a, b, **_: F.mul(a, b), np.multiply)
Tensor.div_ = _inplace_arith(lambda a, b, **_: F.div(a, b), np.divide)


def _reshape_inplace(fn):
    # shape-changing in-place ops rebind self's data (the shape changes). The op runs
    # on an alias of self, so the recorded node keeps the old shape to map the
    # gradient back (self itself is about to take the new one).
    def m(self, *args):
        if self._rg and self.grad_fn is None and _grad_state.enabled:
            raise RuntimeError("a leaf Variable that requires grad is being used in an "
                               "in-place operation.")
        alias = Tensor._make(self._data, self._vc)
        view = self.__dict__.get("_view")
        if view is not None:  # then out is a view of the same base, one op further
            alias.__class__, alias._view = _View, view
        alias.grad_fn, alias._rg, alias._out_nr = self.grad_fn, self._rg, self._out_nr
        alias._fw_grad = self._fw_grad  # a forward-mode tangent follows the data
        out = fn(alias, *args)
        self._data = out._data
        _META_EPOCH[0] += 1  # the shape changed (NOTE: [Tensor meta epoch])
        tracer = trace_state.current
        if tracer is not None:
            tracer.note_meta_write(self, fn)
        if view is not None:
            self._view = out._view
        if out.grad_fn is not None:
            self.grad_fn = out.grad_fn
            if self._retains_grad:  # retain_grad follows the tensor to its new grad_fn
                out.grad_fn._retain_grad = weakref.ref(self)
        self._vc[0] += 1
        if view is not None:
            self._view.version = self._vc[0]  # its grad_fn is the op's node, not stale
        if _op_state.active:  # forward AD, anomaly mode (autograd/_op_hooks.py)
            _on_inplace(self, out)
        return self
    return m


# PyTorch names the in-place forms' nodes apart from the out-of-place ones
Tensor.squeeze_ = _reshape_inplace(lambda x, dim=None: F.squeeze(
    x, dim, _name="SqueezeBackward3" if dim is None else "SqueezeBackward4"))
Tensor.unsqueeze_ = _reshape_inplace(lambda x, dim: F.unsqueeze(x, dim, _name="UnsqueezeBackward1"))
Tensor.t_ = _reshape_inplace(lambda x: F.t(x, _name="TBackward1"))
Tensor.transpose_ = _reshape_inplace(
    lambda x, d0, d1: F.transpose(x, d0, d1, _name="TransposeBackward1"))

Tensor.__iadd__ = Tensor.add_
Tensor.__isub__ = Tensor.sub_
Tensor.__imul__ = Tensor.mul_
Tensor.__itruediv__ = Tensor.div_
Tensor.__ipow__ = Tensor.pow_
Tensor.__imatmul__ = lambda self, other: commit_inplace(self, F.matmul(self, other))


def _fill_(self, value, _name=None):
    """Set every element to ``value``."""
    if _grad_state.enabled and self._rg:
        # a select that always takes ``value``: self gets a zero gradient and nothing of
        # self's is saved (self * 0 would save self, which this very op overwrites)
        v = F.cast(value, self.dtype) if isinstance(value, Tensor) else F._const(value, self.dtype)
        name = _name or ("FillBackward3" if isinstance(value, Tensor) else "FillBackward2")
        everywhere = F._const(True, dtypes.bool_)
        return commit_inplace(self, apply(P.where_p, (everywhere, v, self), name=name))
    if self._data.__class__ is np.ndarray and trace_state.current is None:
        if not make_writable(self._data):
            commit_inplace(self, self)
        self._data[...] = value._data if isinstance(value, Tensor) else value
        self._vc[0] += 1
        return self
    if isinstance(value, Tensor):
        return commit_inplace(self, F.broadcast_to(F.cast(value, self.dtype), self.shape))
    # traced: a constant fill, which the compiler sees as full(shape, value)
    return commit_inplace(self, F.full(tuple(self.shape), value, dtype=self.dtype))


Tensor.fill_ = _fill_
Tensor.zero_ = lambda self: _fill_(self, 0, _name="ZeroBackward0")


def _copy_(self, src, non_blocking=False):
    src = F._as_tensor(src)
    src = F.broadcast_to(F.cast(src, self.dtype), self.shape)
    if _grad_state.enabled and (self._rg or src._rg):
        # a select that always takes src: self's old value gets a zero gradient (and is
        # cut from the graph even when src does not require grad)
        everywhere = F._const(True, dtypes.bool_)
        return commit_inplace(self, apply(P.where_p, (everywhere, src, self),
                                          name="CopyBackwards"))
    if (self._data.__class__ is np.ndarray and src._data.__class__ is np.ndarray
            and trace_state.current is None):
        if not make_writable(self._data):
            commit_inplace(self, self)
        self._data[...] = src._data
        self._vc[0] += 1
        return self
    return commit_inplace(self, apply(P.copy_p, (src,)))


Tensor.copy_ = _copy_


def _random_(draw):
    """An in-place random fill: ``draw`` (a ``functions._draw_*`` helper, see NOTE:
    [Random draws while tracing]) makes the sample, which is copied into self."""
    def m(self, *args, generator=None, **kwargs):
        with _no_grad():
            return _copy_(self, draw(self, F._gen(generator), *args, **kwargs))
    m.__name__ = draw.__name__
    return m


def _no_grad():
    from .autograd.grad_mode import no_grad
    return no_grad()


def uniform_(self, g, a=0.0, b=1.0):
    return F._draw_uniform(g, tuple(self.shape), self.dtype, a, b)


def normal_(self, g, mean=0.0, std=1.0):
    return F._draw_normal(g, tuple(self.shape), self.dtype, mean, std)


def bernoulli_(self, g, p=0.5):
    return F._draw_bernoulli(g, tuple(self.shape), p)


def random_(self, g, *bounds):
    # random_() -> [0, 2**mantissa] or [0, max]; random_(to); random_(from, to)
    if not bounds:
        return F._draw_full_range(g, tuple(self.shape), self.dtype)
    low, high = (0, bounds[0]) if len(bounds) == 1 else bounds
    if high is None:
        high = 2 ** (np.finfo(self.dtype.np).nmant + 1) + 1 if self.dtype.is_floating_point \
            else int(np.iinfo(self.dtype.np).max) + 1
    return F._draw_integers(g, tuple(self.shape), self.dtype, int(low), int(high))


Tensor.uniform_ = _random_(uniform_)
Tensor.normal_ = _random_(normal_)
Tensor.bernoulli_ = _random_(bernoulli_)
Tensor.random_ = _random_(random_)


# ---- devices/creation: exponential_, geometric_, cauchy_, log_normal_ ---------
# Eagerly, each draws PyTorch's stream exactly (Generator.exponential & co., NOTE:
# [Scalar double transforms] in random.py). Traced, the same transform is written in
# tensor ops over a uniform (or normal) draw, so compiled calls draw afresh (NOTE:
# [Random draws while tracing]); those values follow jax's stream, not torch's.

def _transformed_fill(kernel: str, grad_name: str, traced):
    exact = getattr(F.Generator, kernel)

    def m(self, *args, generator=None):
        g = F._gen(generator)
        shape, dtype = tuple(self.shape), self.dtype
        if trace_state.current is None:
            value = Tensor._make(exact(g, shape, dtype, *args))
        else:
            exact(g, (0,), dtype, *args)  # the argument checks, drawing nothing
            with _no_grad():
                value = F.cast(traced(g, shape, *args), dtype)
        if _grad_state.enabled and self._rg:  # PyTorch's node: a zero gradient for self
            everywhere = F._const(True, dtypes.bool_)
            return commit_inplace(self, apply(P.where_p, (everywhere, value, self),
                                              name=grad_name))
        with _no_grad():
            return _copy_(self, value)
    m.__name__ = kernel + "_"
    return m


def _u64(g, shape):
    return F._draw_uniform(g, shape, dtypes.float64)


Tensor.exponential_ = _transformed_fill(
    "exponential", "ExponentialBackward0",
    lambda g, shape, lambd=1.0: F.mul(F.log1p(F.neg(_u64(g, shape))), -1.0 / lambd))
Tensor.geometric_ = _transformed_fill(
    "geometric", "GeometricBackward0",
    lambda g, shape, p: F.ceil(F.div(F.log(_u64(g, shape)), float(np.log1p(-p)))))
Tensor.cauchy_ = _transformed_fill(
    "cauchy", "CauchyBackward0",
    lambda g, shape, median=0.0, sigma=1.0: F.add(
        F.mul(F.tan(F.mul(F.sub(_u64(g, shape), 0.5), float(np.pi))), sigma), median))
Tensor.log_normal_ = _transformed_fill(
    "log_normal", "LogNormalBackward0",
    lambda g, shape, mean=1.0, std=2.0: F.exp(F._draw_normal(g, shape, dtypes.float64, mean,
                                                             std)))


# ---- devices/creation: .to, .cpu, .cuda, device queries, new_* ---------------
# (NOTE: [One device] in functions.py: the CPU is the only device a tensor can be on.)

def _to(self, *args, non_blocking=False, copy=False, memory_format=None, **kwargs):
    """``to(dtype)``, ``to(device)``, ``to(device, dtype)``, ``to(other)`` (other's dtype and
    device), ``device=``/``dtype=`` by keyword. Returns self when nothing changes, unless
    ``copy=True``. A device other than the CPU is refused (NOTE: [One device]).

    >>> import tracegrad as tg
    >>> tg.ones(2).to('cpu', tg.float64)
    tensor([1., 1.], dtype=torch.float64)
    """
    dtype = kwargs.pop("dtype", None)
    dev = kwargs.pop("device", None)
    if kwargs:
        raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
    if len(args) > 2:
        raise TypeError(f"to() takes at most 2 positional arguments ({len(args)} given)")
    for a in args:
        if isinstance(a, Tensor):
            dtype = a.dtype
        elif isinstance(a, (dtypes.DType, np.dtype)) or a in (float, int, bool):
            dtype = a
        elif isinstance(a, (str, F.device, int)) and not isinstance(a, bool):
            dev = a
        else:
            raise TypeError(f"to() received an invalid argument {a!r} of type "
                            f"{type(a).__name__}; expected a dtype, a device or a tensor")
    F._check_device(dev)
    out = self if dtype is None else F.cast(self, dtype)
    if out is self and (copy or _indexed(dev)):  # 'cpu:0' is not self.device: a copy
        out = F.clone(self)
    return out


def _indexed(dev) -> bool:
    return dev is not None and F.device(dev).index is not None


def _cpu(self, memory_format=None):
    return self


def _cuda(self, device=None, non_blocking=False, memory_format=None):
    raise F._no_device_error("cuda")


def _type(self, dtype=None, non_blocking=False, **kwargs):
    """``x.type()`` -> 'torch.FloatTensor'; ``x.type(torch.LongTensor)``,
    ``x.type('torch.LongTensor')`` or ``x.type(torch.int64)`` converts."""
    if dtype is None:
        return f"torch.{F._TYPE_WORD[self.dtype.name]}Tensor"
    if isinstance(dtype, F._LegacyTensorType):
        return F.cast(self, dtype.dtype)
    if isinstance(dtype, str) and dtype.removeprefix("torch.") in F._LEGACY_TYPES:
        return F.cast(self, F._LEGACY_TYPES[dtype.removeprefix("torch.")].dtype)
    return F.cast(self, dtype)


def _sizes(size) -> tuple:
    return size[0] if len(size) == 1 and isinstance(size[0], (tuple, list)) else size


def _new_zeros(self, *size, dtype=None, device=None, requires_grad=False, **_):
    return F.zeros(*_sizes(size), dtype=dtype or self.dtype, device=device,
                   requires_grad=requires_grad)


def _new_ones(self, *size, dtype=None, device=None, requires_grad=False, **_):
    return F.ones(*_sizes(size), dtype=dtype or self.dtype, device=device,
                  requires_grad=requires_grad)


def _new_empty(self, *size, dtype=None, device=None, requires_grad=False, **_):
    return F.empty(*_sizes(size), dtype=dtype or self.dtype, device=device,
                   requires_grad=requires_grad)


def _new_full(self, size, fill_value, *, dtype=None, device=None, requires_grad=False, **_):
    return F.full(size, fill_value, dtype=dtype or self.dtype, device=device,
                  requires_grad=requires_grad)


def _new_tensor(self, data, *, dtype=None, device=None, requires_grad=False, **_):
    return F.tensor(data, dtype=dtype or self.dtype, device=device, requires_grad=requires_grad)


def _pin_memory(self, device=None):
    raise RuntimeError("Cannot access accelerator device when none is available. (Pinned "
                       "memory is for copies to an accelerator; " + F._WHERE + ")")


Tensor.to = _to
Tensor.cpu = _cpu
Tensor.cuda = _cuda
Tensor.type = _type
Tensor.new_zeros = _new_zeros
Tensor.new_ones = _new_ones
Tensor.new_empty = _new_empty
Tensor.new_full = _new_full
Tensor.new_tensor = _new_tensor
Tensor.pin_memory = _pin_memory
Tensor.is_pinned = lambda self, device=None: False
Tensor.get_device = lambda self: -1
Tensor.is_cpu = property(lambda self: True)
Tensor.is_mps = property(lambda self: False)
Tensor.is_meta = property(lambda self: False)


# ---- opsa: methods of issue 12's elementwise ops (functions.py's opsa block) ----
_OPSA_ELEMENTWISE = ["asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "arcsin",
                     "arccos", "arctan", "arcsinh", "arccosh", "arctanh", "atan2", "arctan2",
                     "exp2", "erfc", "erfinv", "lgamma", "digamma", "hypot", "copysign", "xlogy",
                     "logit", "frac", "fix", "sinc", "deg2rad", "rad2deg", "nan_to_num",
                     "heaviside", "fmod"]
_OPSA_METHODS = ["bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not", "bitwise_left_shift",
                 "bitwise_right_shift", "signbit", "logaddexp", "logaddexp2", "float_power",
                 "isposinf", "isneginf", "isreal"] + _OPSA_ELEMENTWISE
_OPSA_INPLACE = ["bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not", "bitwise_left_shift",
                 "bitwise_right_shift"] + _OPSA_ELEMENTWISE
for _name in _OPSA_METHODS:
    setattr(Tensor, _name, getattr(F, _name))
for _name in _OPSA_INPLACE:
    setattr(Tensor, _name + "_", _inplace(getattr(F, _name)))
for _name in ["sum", "mean", "prod", "amax", "amin", "max", "min", "argmax", "argmin", "var",
              "std", "logsumexp", "all", "any", "cumsum", "softmax", "log_softmax", "squeeze",
              "unsqueeze"]:
    setattr(Tensor, _name, getattr(F, _name))  # with numpy's axis= / keepdims= names
Tensor.polygamma = lambda self, n: F.polygamma(n, self)
Tensor.polygamma_ = lambda self, n: commit_inplace(self, F.polygamma(n, self))
Tensor.__rmod__ = lambda self, other: F.rremainder(self, other)


def _float_power_(self, exponent):
    if self.dtype is not dtypes.float64:
        raise RuntimeError(f"the base given to float_power_ has dtype "
                           f"{F._torch_type_name(self.dtype)} but the operation's result "
                           "requires dtype Double")
    return commit_inplace(self, F.float_power(self, exponent))


Tensor.float_power_ = _float_power_
Tensor.__iand__ = Tensor.bitwise_and_
Tensor.__ior__ = Tensor.bitwise_or_
Tensor.__ixor__ = Tensor.bitwise_xor_
Tensor.__ilshift__ = Tensor.bitwise_left_shift_
Tensor.__irshift__ = Tensor.bitwise_right_shift_


def _is_contiguous(self, memory_format=None) -> bool:
    """Row-major with no gaps (dims of size 1 may have any stride), as ATen's flag."""
    data = self.__dict__.get("_data")
    return data.__class__ is not np.ndarray or data.flags.c_contiguous


def _contiguous(self, memory_format=None):
    """self if row-major already, else a row-major copy (CloneBackward0), as ATen."""
    if _is_contiguous(self):
        return self
    return apply(P.contiguous_p, (self,))


Tensor.is_contiguous = _is_contiguous
Tensor.contiguous = _contiguous
# ---- end of opsa methods ----


# ---- structural ops (opsb): cumulative scans, scatter, sorting ---------------------
for _name in ["cummax", "cummin", "cumprod", "logcumsumexp", "scatter", "scatter_reduce"]:
    setattr(Tensor, _name, getattr(F, _name))
for _name in ["cumsum", "cumprod", "scatter", "scatter_reduce", "scatter_add"]:
    setattr(Tensor, _name + "_", _inplace(getattr(F, _name)))
for _name in ["sort", "argsort", "msort", "topk", "kthvalue", "median", "nanmedian", "mode",
              "unique", "unique_consecutive"]:
    setattr(Tensor, _name, getattr(F, _name))
Tensor.unfold = F._tensor_unfold
for _name in ["repeat", "tile", "repeat_interleave", "roll", "rot90", "trace", "ger",
              "addmv", "baddbmm", "addbmm", "cross", "lerp", "argwhere"]:
    setattr(Tensor, _name, getattr(F, _name))
for _name in ["addmm", "addmv", "baddbmm", "addbmm", "lerp"]:
    setattr(Tensor, _name + "_", _inplace(getattr(F, _name)))
for _name in ["diagonal", "diag_embed", "diag"]:
    setattr(Tensor, _name, getattr(F, _name))
for _name in ["movedim", "moveaxis"]:
    setattr(Tensor, _name, getattr(F, _name))
Tensor.inverse = lambda self: _linalg().inv(self)
Tensor.det = lambda self: _linalg().det(self)
Tensor.slogdet = lambda self: _linalg().slogdet(self)


def _linalg():
    from . import linalg
    return linalg
# ---- end of opsb methods ----


# ---- layout queries (opsfix): stride, storage_offset, data_ptr ---------------------
def _layout_array(self):
    """The tensor's host array, or None while a compiled step holds its value (a
    deferred tensor: NOTE: [Deferred write-back]; its array is a fresh contiguous one)."""
    data = self.__dict__.get("_data")
    return data if data.__class__ is np.ndarray else None


def _stride(self, dim=None):
    """Strides in elements, as torch: ``tg.ones(2, 3).t().stride()`` is ``(1, 3)``.

    A size-1 dim NumPy gave stride 0 (``x[:, None]``) reports the stride torch's
    ``unsqueeze`` gives it (the next dim's extent, or 1 for the last)."""
    shape = self.shape
    data = _layout_array(self)
    if data is None or data.size == 0:  # (NumPy's strides of an empty array are arbitrary)
        strides = _contiguous_strides(shape)
    else:
        item = data.itemsize
        strides = [s // item for s in data.strides]
        for i in range(len(shape) - 1, -1, -1):
            if shape[i] == 1 and strides[i] == 0:
                strides[i] = strides[i + 1] * max(shape[i + 1], 1) if i + 1 < len(shape) else 1
        strides = tuple(strides)
    if dim is None:
        return strides
    if not shape:
        raise IndexError(f"Dimension specified as {dim} but tensor has no dimensions")
    return strides[F._dim(dim, len(shape))]


def _contiguous_strides(shape) -> tuple:
    out, acc = [], 1
    for n in reversed(shape):
        out.append(acc)
        acc *= max(n, 1)
    return tuple(reversed(out))


def _root_array(data: np.ndarray) -> np.ndarray:
    root = data
    while isinstance(root.base, np.ndarray):
        root = root.base
    return root


def _storage_offset(self) -> int:
    """Elements from the start of the base tensor's memory to this view's first element
    (0 for a tensor that owns its memory), as torch: ``tg.arange(6)[2:].storage_offset()``
    is 2."""
    data = _layout_array(self)
    if data is None or data.base is None or data.size == 0:
        return 0
    root = _root_array(data)
    start = data.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    return start // data.itemsize


def _data_ptr(self) -> int:
    """The address of the first element (views of one base differ by their offsets)."""
    data = self._data
    return data.__array_interface__["data"][0] if data.size else 0


def _view_base(self):
    """The tensor this one is a view of (its root base, as torch's ``_base``), or None."""
    info = self.__dict__.get("_view")
    return None if info is None else info.base


def _is_view(self) -> bool:
    return self.__dict__.get("_view") is not None


Tensor._base = property(_view_base)
Tensor._is_view = _is_view
Tensor.stride = _stride
Tensor.storage_offset = _storage_offset
Tensor.data_ptr = _data_ptr
# ---- end of opsfix methods ----


# more torch ops as methods (functions.py's composites block)
for _name in ["take", "index_add", "index_fill", "sgn", "kron", "inner", "fliplr", "flipud",
              "tensor_split", "hsplit", "vsplit", "nansum", "nanmean", "aminmax",
              "count_nonzero", "diff", "addcmul", "addcdiv", "ravel", "quantile", "nanquantile"]:
    setattr(Tensor, _name, getattr(F, _name))

Tensor.index_add_ = _inplace(F.index_add)
Tensor.index_fill_ = _inplace(F.index_fill)
Tensor.addcmul_ = _inplace(F.addcmul)
Tensor.addcdiv_ = _inplace(F.addcdiv)

