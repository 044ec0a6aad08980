"""Neural-network functions (``torch.nn.functional``), composed from tracegrad's ops.

Each function is a plain composite over the primitives, so it traces and
differentiates like any other code. Where PyTorch shows its own grad_fn name for
a composite (``mse_loss`` -> ``MseLossBackward0``), the last primitive is recorded
under that name; ``binary_cross_entropy_with_logits`` uses the ``bce_logits_p``
primitive because the composite would overflow for large logits.

>>> import tracegrad as tg
>>> import tracegrad.nn.functional as F
>>> F.relu(tg.tensor([-1.0, 2.0]))
tensor([0., 2.])
"""
from __future__ import annotations

import functools
import math
import warnings

import numpy as np

from .. import dtypes, functions as T, primitives as P
from ..tensor import Tensor, apply, commit_inplace, trace_state

__all__ = [
    "relu", "leaky_relu", "gelu", "sigmoid", "tanh", "softmax", "log_softmax", "linear", "dropout",
    "embedding", "layer_norm", "mse_loss", "l1_loss", "nll_loss", "cross_entropy",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "conv1d", "conv2d", "conv3d",
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
    "adaptive_max_pool2d", "adaptive_max_pool3d", "batch_norm", "pad",
]

_REDUCTIONS = ("none", "mean", "sum")


# ----------------------------------------------------------------------------
# helpers: recording the last op of a composite under PyTorch's grad_fn name

def _binop(prim, a, b, name: str | None = None) -> Tensor:
    a, b = T._coerce(a, b)
    return apply(prim, (a, b), name=name)


def _reduce_all(prim, x: Tensor, name: str | None = None) -> Tensor:
    return apply(prim, (x,), {"axis": tuple(range(x.ndim)), "keepdim": False}, name=name)


def _eager() -> bool:
    """True unless a function is being traced (data-dependent checks only run eagerly)."""
    return trace_state.current is None


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")  # PyTorch's text


def _reduce(loss: Tensor, reduction: str, name: str | None) -> Tensor:
    """Reduce elementwise losses ('none' returns them as they are)."""
    if reduction == "none":
        return loss
    return _reduce_all(P.mean_p if reduction == "mean" else P.sum_p, loss, name)


def _last_name(reduction: str, name: str) -> str | None:
    """The grad_fn name for the elementwise step: it is the last op only for 'none'."""
    return name if reduction == "none" else None


def _broadcast_target(input: Tensor, target: Tensor, fn: str) -> tuple[Tensor, Tensor]:
    if target.shape != input.shape:
        warnings.warn(f"Using a target size ({target.shape}) that is different to the input size "
                      f"({input.shape}). This will likely lead to incorrect results due to "
                      "broadcasting. Please ensure they have the same size.", stacklevel=3)
        input, target = T.broadcast_tensors(input, target)
    return input, target


# ----------------------------------------------------------------------------
# activations

def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """max(x, 0), elementwise."""
    return input.relu_() if inplace else T.relu(input)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """x where x > 0, else negative_slope * x."""
    x = T._float(input)
    # x times a constant slope map: the one recorded op reads x, so the in-place form
    # can snapshot it
    slope = T.where(x > 0, T.ones_like(x), negative_slope)
    out = _binop(P.mul_p, x, slope, "LeakyReluBackward0")
    return commit_inplace(input, out) if inplace else out


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """x * Phi(x) (``approximate='tanh'``: the tanh approximation)."""
    return T.gelu(input, approximate=approximate)


def sigmoid(input: Tensor) -> Tensor:
    return T.sigmoid(input)


def tanh(input: Tensor) -> Tensor:
    return T.tanh(input)


def softmax(input: Tensor, dim: int | None = None, dtype=None) -> Tensor:
    return T.softmax(input, dim, dtype=dtype)


def log_softmax(input: Tensor, dim: int | None = None, dtype=None) -> Tensor:
    return T.log_softmax(input, dim, dtype=dtype)


# ----------------------------------------------------------------------------
# layers

def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """input @ weight.T + bias; a 2-D input with a bias is one ``addmm``.

    >>> import tracegrad as tg
    >>> linear(tg.ones(2, 3), tg.ones(4, 3), tg.zeros(4)).shape
    torch.Size([2, 4])
    """
    wt = T.t(weight)
    if input.ndim == 2:
        return T.matmul(input, wt) if bias is None else T.addmm(bias, input, wt)
    if bias is None:
        return T.matmul(input, wt)
    lead = input.shape[:-1]
    flat = T.reshape(input, (-1, input.shape[-1]))
    out = T.addmm(bias, flat, wt)
    return T.reshape(out, lead + (weight.shape[0],))


def _uniform_like(input: Tensor) -> Tensor:
    """float64 U(0, 1) of input's shape, drawn in input's memory order: torch's noise is
    ``empty_like(input)``, which keeps a dense permuted layout (a transposed attention
    output), and bernoulli_ fills it in memory order."""
    data = input._data
    if data.flags.c_contiguous or data.ndim < 2:
        return T.rand(*input.shape, dtype=dtypes.float64)
    perm = sorted(range(data.ndim), key=lambda d: -data.strides[d])
    if not np.transpose(data, perm).flags.c_contiguous:  # not dense: empty_like is contiguous
        return T.rand(*input.shape, dtype=dtypes.float64)
    u = T.rand(*[input.shape[d] for d in perm], dtype=dtypes.float64)
    return T.permute(u, tuple(int(i) for i in np.argsort(perm)))


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p).

    The mask comes from tracegrad's default generator (``tracegrad.manual_seed``).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        out = T.mul(input, 0.0)
    else:
        # PyTorch's CPU dropout: noise = bernoulli_(1 - p), i.e. a float64 uniform < 1 - p
        keep = _uniform_like(input) < 1.0 - p
        out = T.mul(input, T.div(T.cast(keep, input.dtype), 1.0 - p))
    return commit_inplace(input, out) if inplace else out


def _no_grad_embedding_renorm_(weight: Tensor, input: Tensor, max_norm: float,
                               norm_type: float) -> None:
    """max_norm: the rows of ``weight`` that ``input`` picks and whose norm exceeds max_norm
    are scaled in place to max_norm / (norm + 1e-7) of themselves, with no gradient
    recorded, as torch's embedding_renorm_ (each row once, however often it is picked)."""
    from ..autograd.grad_mode import no_grad
    if weight.ndim != 2:
        raise RuntimeError(f"embedding_renorm_(): Expected 2-D tensor for argument #1 'self' "
                           f"(got {weight.ndim}-D)")
    with no_grad():
        rows = T.unique(T.reshape(T.cast(input, dtypes.int64), (-1,)))
        picked = T.getitem(weight, (rows,))
        norms = T.cast(T.norm(picked, norm_type, 1), dtypes.float64)
        scale = T.where(norms > max_norm, float(max_norm) / (norms + 1e-7), 1.0)
        T.setitem(weight, (rows,), picked * T.unsqueeze(T.cast(scale, weight.dtype), 1))


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None,
              max_norm: float | None = None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """Rows of ``weight`` picked by the integer tensor ``input``.

    The row at ``padding_idx`` gets no gradient.
    """
    if scale_grad_by_freq or sparse:
        raise NotImplementedError("embedding: scale_grad_by_freq and sparse are not supported")
    if input.dtype.is_floating_point or input.dtype is dtypes.bool_:
        raise RuntimeError("Expected tensor for argument #1 'indices' to have one of the following "
                           f"scalar types: Long, Int; but got {input.dtype} instead")
    if max_norm is not None:
        _no_grad_embedding_renorm_(weight, input, max_norm, norm_type)
    idx = T.cast(input, dtypes.int64)
    n = weight.shape[0]
    lo, hi = (int(idx.min()), int(idx.max())) if _eager() and idx.numel() else (0, 0)
    if lo < 0 or hi >= n:
        raise IndexError(f"index out of range in self (indices must lie in [0, {n}), "
                         f"got {lo if lo < 0 else hi})")
    table = weight
    if padding_idx is not None:
        if padding_idx < 0:
            padding_idx += n
        # the padding row is read from a detached copy, so it receives no gradient
        is_pad = T.reshape(T.arange(n) == padding_idx, (n,) + (1,) * (weight.ndim - 1))
        table = T.where(is_pad, weight.detach(), weight)
    return apply(P.getitem_p, (table, idx), {"index": (P.TENSOR,)}, name="EmbeddingBackward0")


def layer_norm(input: Tensor, normalized_shape, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalise over the last ``len(normalized_shape)`` dims, then scale and shift."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(shape)
    if tuple(input.shape[input.ndim - k:]) != shape:
        raise RuntimeError(f"Given normalized_shape={list(shape)}, expected input with shape "
                           f"[*, {', '.join(map(str, shape))}], but got input of size "
                           f"{input.shape}")
    axes = tuple(range(input.ndim - k, input.ndim))
    name = "NativeLayerNormBackward0"
    # one primitive for the normalisation (NOTE: [Fused layer norm]), then the affine part
    out = apply(P.layer_norm_p, (T._float(input),), {"axes": axes, "eps": float(eps)},
                name=name)
    if weight is None and bias is None:
        return out
    if bias is None:
        return _binop(P.mul_p, out, weight, name)
    if weight is not None:
        out = out * weight
    return _binop(P.add_p, out, bias, name)


# ----------------------------------------------------------------------------
# padding. ``pad`` lists (left, right) amounts from the last dim backwards, as
# PyTorch's; a negative amount crops. 'reflect', 'replicate' and 'circular' read
# each output element from one input element: one gather (getitem with an index
# array per padded dim), whose gradient sums back into the input, as PyTorch's.

_PAD_MODES = ("constant", "reflect", "replicate", "circular")
_PAD_GRAD_NAMES = {"reflect": "ReflectionPad{}DBackward0",
                   "replicate": "ReplicationPad{}DBackward0", "circular": "CopySlices"}


def pad(input: Tensor, pad, mode: str = "constant", value: float | None = None) -> Tensor:
    """Pad (or, with negative amounts, crop) the last ``len(pad) // 2`` dims.

    ``mode``: 'constant' (fill with ``value``, default 0; any number of dims),
    'reflect' (mirror without repeating the edge), 'replicate' (repeat the edge) or
    'circular' (wrap around); the last three pad 1 to 3 dims of an input with at most
    one more dim (a batch) before the channel dim, as PyTorch's.

    >>> import tracegrad as tg
    >>> pad(tg.tensor([[[1.0, 2.0, 3.0]]]), (2, 1), mode="reflect")
    tensor([[[3., 2., 1., 2., 3., 2.]]])
    """
    if mode not in _PAD_MODES:
        raise NotImplementedError(f"Unrecognised padding mode {mode}")
    amounts = tuple(pad)
    for i, a in enumerate(amounts):
        if not isinstance(a, (int, np.integer)):
            raise TypeError(f"pad(): argument 'pad' (position 2) must be tuple of ints, but found "
                            f"element of type {type(a).__name__} at pos {i}")
    amounts = tuple(int(a) for a in amounts)
    if len(amounts) % 2:
        raise RuntimeError("Padding length must be divisible by 2")
    if len(amounts) > 2 * input.ndim:
        raise RuntimeError(f"Padding length should be less than or equal to two times the input "
                           f"dimension but got padding length {len(amounts)} and input of "
                           f"dimension {input.ndim}")
    k = len(amounts) // 2
    # (lo, hi) per padded dim, in dim order
    pairs = [(amounts[2 * (k - 1 - i)], amounts[2 * (k - 1 - i) + 1]) for i in range(k)]
    if mode == "constant":
        return _constant_pad(input, pairs, 0 if value is None else value)
    if value is not None and value != 0:
        raise RuntimeError(f'Padding mode "{mode}" doesn\'t take in value argument')
    if k not in (1, 2, 3) or input.ndim not in (k + 1, k + 2):
        raise NotImplementedError(
            f"Padding size {len(amounts)} is not supported for {input.ndim}D input tensor.\n"
            "Supported combinations for non-constant padding:\n"
            "  - 2D or 3D input: padding size = 2 (pads last dimension)\n"
            "  - 3D or 4D input: padding size = 4 (pads last 2 dimensions)\n"
            "  - 4D or 5D input: padding size = 6 (pads last 3 dimensions)")
    _check_pad(mode, input, pairs)
    index = [_pad_index(mode, n, lo, hi) for n, (lo, hi) in zip(input.shape[-k:], pairs,
                                                                  strict=True)]
    # one index array per padded dim, shaped to broadcast into the output's padded dims
    tensors = [T.tensor(ix.reshape((-1,) + (1,) * (k - 1 - i))) for i, ix in enumerate(index)]
    return apply(P.getitem_p, (input, *tensors), {"index": (Ellipsis,) + (P.TENSOR,) * k},
                 name=_PAD_GRAD_NAMES[mode].format(k))


def _check_pad(mode: str, input: Tensor, pairs) -> None:
    """PyTorch's checks for reflection, replication and circular padding, in its order."""
    k, shape = len(pairs), list(input.shape)
    sizes = shape[-k:]
    if mode == "circular":
        for n, (lo, hi) in zip(sizes, pairs, strict=True):
            if lo > n or hi > n:
                raise RuntimeError("Padding value causes wrapping around more than once.")
            if n + lo + hi < 0:
                raise RuntimeError("Negative padding value is resulting in an empty dimension")
            if n + lo + hi > 0 and n + min(lo, 0) + min(hi, 0) <= 0:
                raise RuntimeError(f"circular padding ({lo}, {hi}) crops all {n} elements of a "
                                   f"dimension and has nothing left to wrap around")
        return
    non_batch = shape[1:] if input.ndim == k + 2 else shape
    if 0 in non_batch:
        raise RuntimeError(f"Expected {k + 1}D or {k + 2}D (batch mode) tensor with possibly 0 "
                           f"batch size and other non-zero dimensions for input, but got: {shape}")
    if mode == "reflect":
        for i in reversed(range(k)):  # the last dim is PyTorch's argument #4, then #6, #8
            (lo, hi), n = pairs[i], sizes[i]
            if lo >= n or hi >= n:
                raise RuntimeError(f"Argument #{4 + 2 * (k - 1 - i)}: Padding size should be less "
                                   f"than the corresponding input dimension, but got: padding "
                                   f"({lo}, {hi}) at dimension {input.ndim - k + i} of input "
                                   f"{shape}")
    out = [n + lo + hi for n, (lo, hi) in zip(sizes, pairs, strict=True)]
    if min(out) < 1:
        letters = "DHW"[3 - k:]
        got = {1: "W: {}", 2: "H: {}, W: {} ", 3: "D: {} H: {}, W: {}"}[k].format(*sizes)
        calc = " ".join(f"{c}: {o}" for c, o in zip(letters, out, strict=True))
        raise RuntimeError(f"input ({got}) is too small. Calculated output {calc}")
    if input.dtype is dtypes.bool_:
        kernel = "reflection" if mode == "reflect" else "replication"
        raise NotImplementedError(f"\"{kernel}_pad{k}d\" not implemented for 'Bool'")


def _pad_index(mode: str, n: int, lo: int, hi: int) -> np.ndarray:
    """The input position (of n) each output position reads, along one padded dim."""
    p = np.arange(n + lo + hi) - lo
    if mode == "reflect":
        p = np.abs(p)
        return np.where(p >= n, 2 * (n - 1) - p, p)
    if mode == "replicate":
        return np.clip(p, 0, n - 1)
    # circular: wrap around what is left after cropping (negative amounts crop first)
    start, kept = max(-lo, 0), n - max(-lo, 0) - max(-hi, 0)
    if kept <= 0:
        return np.zeros(0, np.int64)
    return start + (p + lo - max(lo, 0)) % kept


def _constant_pad(input: Tensor, pairs, value) -> Tensor:
    """Crop the negative amounts, then place the rest in a tensor filled with ``value``."""
    k = len(pairs)
    crop, place, out_shape = [], [], list(input.shape)
    for i, (lo, hi) in enumerate(pairs):
        dim = input.ndim - k + i
        n = input.shape[dim]
        kept = n + min(lo, 0)
        if kept < 0 or kept + min(hi, 0) < 0:
            raise RuntimeError("narrow(): length must be non-negative.")
        kept += min(hi, 0)
        crop.append(slice(max(-lo, 0), max(-lo, 0) + kept))
        place.append(slice(max(lo, 0), max(lo, 0) + kept))
        out_shape[dim] = kept + max(lo, 0) + max(hi, 0)
    name = "ConstantPadNdBackward0"
    x = input
    if any(lo < 0 or hi < 0 for lo, hi in pairs):
        x = T.getitem(input, (Ellipsis, *crop), [])
    if all(lo <= 0 and hi <= 0 for lo, hi in pairs):
        return apply(P.copy_p, (x,), name=name)  # a new tensor, as PyTorch's
    base = T.full(tuple(out_shape), value, dtype=input.dtype)
    return T._index_put(base, x, [], (Ellipsis, *place), name=name)


# ----------------------------------------------------------------------------
# convolution and pooling (N, C, *spatial; an input without the batch dim is
# treated as a batch of one, as PyTorch does)

def _ntuple(value, n: int, what: str) -> tuple:
    if isinstance(value, int):
        return (value,) * n
    value = tuple(value)
    if len(value) == 1:
        return value * n
    if len(value) != n:
        raise RuntimeError(f"expected {what} to be a single integer value or a list of {n} "
                           f"values to match the convolution dimensions, but got "
                           f"{what}={list(value)}")
    return value


def _batched(input: Tensor, nsp: int, fn: str) -> tuple[Tensor, bool]:
    if input.ndim not in (nsp + 1, nsp + 2):
        raise RuntimeError(f"Expected {nsp + 1}D (unbatched) or {nsp + 2}D (batched) input to "
                           f"{fn}, but got input of size: {list(input.shape)}")
    if input.ndim == nsp + 1:
        return T.unsqueeze(input, 0), True
    return input, False


_C_TYPE = {"float64": "double", "float32": "float", "float16": "c10::Half",
           "bfloat16": "c10::BFloat16", "int64": "long int", "int32": "int"}


def _check_conv_dtypes(x, weight, bias) -> None:
    """torch's convolutions take one dtype: input, weight and bias alike."""
    if weight.dtype is not x.dtype:
        raise RuntimeError(f"expected scalar type {_SCALAR_NAME[x.dtype.name]} but found "
                           f"{_SCALAR_NAME[weight.dtype.name]}")
    if bias is not None and bias.dtype is not x.dtype:
        raise RuntimeError(f"Input type ({_C_TYPE.get(x.dtype.name, x.dtype.name)}) and bias "
                           f"type ({_C_TYPE.get(bias.dtype.name, bias.dtype.name)}) should be "
                           f"the same")


def _conv_nd(nsp, input, weight, bias, stride, padding, dilation, groups):
    _check_conv_dtypes(input, weight, bias)
    x, unbatched = _batched(input, nsp, f"conv{nsp}d")
    stride = _ntuple(stride, nsp, "stride")
    dilation = _ntuple(dilation, nsp, "dilation")
    if isinstance(padding, str):
        if padding == "valid":
            pads = ((0, 0),) * nsp
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise RuntimeError("padding='same' is not supported for strided convolutions")
            # the odd one out goes on the right, as PyTorch pads
            total = [d * (k - 1) for d, k in zip(dilation, weight.shape[2:], strict=False)]
            pads = tuple((t // 2, t - t // 2) for t in total)
        else:
            raise RuntimeError(f"Invalid padding string: '{padding}'")
    else:
        pads = tuple((p, p) for p in _ntuple(padding, nsp, "padding"))
    params = {"stride": stride, "padding": pads, "dilation": dilation,
              "lhs_dilation": (1,) * nsp, "groups": groups}
    P.conv_p.shape(x, weight, **params)  # PyTorch's errors before any work
    out = T._conv(x, weight, **params)
    if bias is not None:
        o = weight.shape[0]
        if bias.ndim != 1 or bias.shape[0] != o:
            raise RuntimeError(f"Given weight of size {list(weight.shape)}, expected bias to be "
                               f"1-dimensional with {o} elements, but got bias of size "
                               f"{list(bias.shape)} instead")
        out = _binop(P.add_p, out, T.reshape(bias, (o,) + (1,) * nsp), "ConvolutionBackward0")
    return T.squeeze(out, 0) if unbatched else out


def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> Tensor:
    """1-d convolution (cross-correlation) of (N, C, L) with weight (O, C/groups, k)."""
    return _conv_nd(1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> Tensor:
    """2-d convolution (cross-correlation) of (N, C, H, W) with weight (O, C/groups, kh, kw).

    ``padding`` is an int, a pair, or 'valid' / 'same' (stride 1 only).

    >>> import tracegrad as tg
    >>> conv2d(tg.ones(1, 1, 4, 4), tg.ones(2, 1, 3, 3), padding=1).shape
    torch.Size([1, 2, 4, 4])
    """
    return _conv_nd(2, input, weight, bias, stride, padding, dilation, groups)


def conv3d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> Tensor:
    """3-d convolution (cross-correlation) of (N, C, D, H, W) with weight (O, C/groups, *k)."""
    return _conv_nd(3, input, weight, bias, stride, padding, dilation, groups)


# ----------------------------------------------------------------------------
# pooling. NOTE: [One pooling path] max, avg and adaptive pooling each have one
# N-d function (2-d and 3-d); the 1-d forms run the 2-d one on the input with a
# unit dim inserted before the last and squeeze it out after, which is how
# PyTorch computes them (so their grad_fn is SqueezeBackward1, as torch's). Each
# checks its arguments in PyTorch's order, with PyTorch's messages.

_COUNT = {1: "one", 2: "two", 3: "three"}
_DIM_LETTERS = {2: "HW", 3: "THW"}


def _pool_param(value, nsp: int, message: str) -> tuple:
    """An int, or a sequence of one or ``nsp`` ints, as ``nsp`` ints."""
    if isinstance(value, int):
        return (value,) * nsp
    value = tuple(value)
    if len(value) == 1:
        return value * nsp
    if len(value) != nsp:
        raise RuntimeError(message)
    return value


def _omitted(stride) -> bool:
    return stride is None or (not isinstance(stride, int) and len(stride) == 0)


def _pool_window(fn: str, nsp: int, kernel_size, stride, padding, dilation, either="either "):
    """kernel, stride (default: the kernel), padding, dilation as tuples of ``nsp`` ints."""
    n = _COUNT[nsp]
    kernel = _pool_param(kernel_size, nsp, f"{fn}: kernel_size must {either}be a single int, or "
                                           f"a tuple of {n} ints")
    stride = kernel if _omitted(stride) else _pool_param(
        stride, nsp, f"{fn}: stride must {either}be omitted, a single int, or a tuple of {n} ints")
    padding = _pool_param(padding, nsp, f"{fn}: padding must {either}be a single int, or a tuple "
                                        f"of {n} ints")
    dilation = _pool_param(dilation, nsp, f"{fn}: dilation must be either a single int, or a "
                                          f"tuple of {n} ints")
    return kernel, stride, padding, dilation


def _check_pool(where: str, x: Tensor, kernel, stride, padding, dilation, ceil_mode,
                avg3d: bool = False) -> None:
    """PyTorch's ``pooling_output_shape`` and ``pool{2,3}d_shape_check``, in their order."""
    nsp = len(kernel)
    for k, s, p, d in zip(kernel, stride, padding, dilation, strict=True):
        if s == 0:
            raise RuntimeError("stride should not be zero")
        if p < 0:
            raise RuntimeError(f"pad must be non-negative, but got pad: {p}")
        if p > int(((k - 1) * d + 1) / 2):  # C++ division truncates
            raise RuntimeError(f"pad should be at most half of effective kernel size, but got "
                               f"pad={p}, kernel_size={k} and dilation={d}")
    letters = _DIM_LETTERS[nsp]

    def listing(prefix, values):
        return " ".join(f"{prefix}{c}: {v}" for c, v in zip(letters, values, strict=True))

    if min(kernel) <= 0:
        raise RuntimeError(f"kernel size should be greater than zero, but got "
                           f"{listing('k', kernel)}")
    if min(stride) <= 0:
        raise RuntimeError(f"stride should be greater than zero, but got {listing('d', stride)}")
    if min(dilation) <= 0:
        raise RuntimeError(f"dilation should be greater than zero, but got "
                           f"{listing('dilation', dilation)}")
    shape = list(x.shape)
    non_batch = shape[1:] if x.ndim == nsp + 2 else shape
    if nsp == 2 and (x.ndim not in (3, 4) or 0 in non_batch):
        raise RuntimeError(f"Expected 3D or 4D (batch mode) tensor with optional 0 dim batch size "
                           f"for input, but got:{shape}")
    if nsp == 3 and 0 in non_batch:
        raise RuntimeError(f"{where}: Expected input's non-batch dimensions to have positive "
                           f"length, but input has a shape of {shape} and non-batch dimension 0 "
                           f"has length zero!")
    sp = tuple(x.shape[-nsp:])
    if avg3d and any(n < k for n, k in zip(sp, kernel, strict=True)):
        sizes = " ".join(f"{c}: {n}" for c, n in zip(letters, sp, strict=True))
        raise RuntimeError(f"input image ({sizes}) smaller than kernel size "
                           f"({listing('k', kernel)})")
    if any(k // 2 < p for k, p in zip(kernel, padding, strict=True)):
        if nsp == 2:
            detail = (f"padW = {padding[1]}, padH = {padding[0]}, kW = {kernel[1]}, "
                      f"kH = {kernel[0]}")
        else:
            detail = (f"kT: {kernel[0]} kW: {kernel[2]} kH: {kernel[1]} padT: {padding[0]} "
                      f"padW: {padding[2]} padH: {padding[1]}")
        raise RuntimeError(f"pad should be smaller than or equal to half of kernel size, but got "
                           f"{detail}")
    out, _ = P._pool_geometry(sp, kernel, stride, padding, dilation, ceil_mode)
    if min(out) < 1:
        c = x.shape[-nsp - 1]
        raise RuntimeError(f"Given input size: ({'x'.join(map(str, (c,) + sp))}). Calculated "
                           f"output size: ({'x'.join(map(str, (c,) + out))}). Output size is too "
                           f"small")


def _max_pool(nsp, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    fn = f"max_pool{nsp}d"
    kernel, stride, padding, dilation = _pool_window(fn, nsp, kernel_size, stride, padding,
                                                     dilation)
    if input.ndim not in (nsp + 1, nsp + 2):
        raise RuntimeError(f"non-empty {nsp + 1}D or {nsp + 2}D (batch mode) tensor expected for "
                           f"input")
    _check_pool(f"{fn}_with_indices_out_cpu_template()", input, kernel, stride, padding,
                dilation, ceil_mode)
    unbatched = input.ndim == nsp + 1
    x = T.unsqueeze(input, 0) if unbatched else input
    params = {"kernel": kernel, "stride": stride, "padding": padding, "dilation": dilation,
              "ceil_mode": bool(ceil_mode)}
    idx = apply(P.pool_argmax_p, (x,), params)
    n, c = x.shape[:2]
    flat_in, flat_out = math.prod(x.shape[2:]), math.prod(idx.shape[2:])
    picked = T.gather(T.reshape(x, (n, c, flat_in)), 2, T.reshape(idx, (n, c, flat_out)))
    if unbatched:  # PyTorch pools a (C, *spatial) input as it is: no squeeze in the graph
        idx = T.squeeze(idx, 0)
    out = T.reshape(picked, idx.shape, _name=f"MaxPool{nsp}DWithIndicesBackward0")
    return (out, idx) if return_indices else out


def _window_sizes(n, out, k, s, p, count_pad):
    """Elements each window averages over, along one dim (PyTorch's divisor)."""
    start = np.arange(out) * s - p
    end = np.minimum(start + k, n + p)
    if count_pad:
        return end - start
    return np.minimum(end, n) - np.maximum(start, 0)


def _avg_pool(nsp, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
              divisor_override):
    """The mean of each window: a convolution with a ones kernel, divided by the window's
    size (counting zero padding if ``count_include_pad``) or ``divisor_override``."""
    fn = f"avg_pool{nsp}d"
    kernel, stride, padding, dilation = _pool_window(fn, nsp, kernel_size, stride, padding, 1,
                                                     "either " if nsp == 2 else "")
    if nsp == 3 and input.ndim not in (4, 5):
        raise RuntimeError("non-empty 4D or 5D (batch mode) tensor expected for input")
    if divisor_override is not None and divisor_override == 0:
        raise RuntimeError("divisor must be not zero")
    if input.ndim < nsp + 1:  # PyTorch reads the channel count as input.size(-3) first
        raise IndexError(f"Dimension out of range (expected to be in range of "
                         f"[{-max(input.ndim, 1)}, {max(input.ndim, 1) - 1}], but got -3)")
    _check_pool(f"{fn}()", input, kernel, stride, padding, dilation, ceil_mode, avg3d=nsp == 3)
    sp = tuple(input.shape[-nsp:])
    planes = math.prod(input.shape[:-nsp])
    out, pads = P._pool_geometry(sp, kernel, stride, padding, dilation, ceil_mode)
    ones = T.ones((1, 1) + kernel, dtype=input.dtype)
    sums = T._conv(T.reshape(input, (planes, 1) + sp), ones, stride=stride, padding=pads,
                   dilation=dilation, lhs_dilation=(1,) * nsp, groups=1)
    sums = T.reshape(sums, tuple(input.shape[:-nsp]) + out)
    if divisor_override:
        divisor = divisor_override
    else:
        per_dim = [_window_sizes(sp[i], out[i], kernel[i], stride[i], padding[i],
                                 count_include_pad) for i in range(nsp)]
        sizes = functools.reduce(np.multiply.outer, per_dim)
        divisor = int(sizes.flat[0]) if (sizes == sizes.flat[0]).all() else \
            T.tensor(sizes, dtype=input.dtype)
    return _binop(P.div_p, sums, divisor, f"AvgPool{nsp}DBackward0")


def _adaptive_size(kind: str, nsp: int, input: Tensor, output_size) -> tuple:
    """``output_size`` as ``nsp`` ints (a None entry keeps that input size), checked as
    PyTorch checks it for ``adaptive_{kind}_pool{nsp}d``."""
    fn = f"adaptive_{kind}_pool{nsp}d"
    if isinstance(output_size, int):
        out = (output_size,) * nsp
    else:  # torch.nn.functional's _list_with_default
        out = tuple(output_size)
        if input.ndim <= len(out):
            raise ValueError(f"Input dimension should be at least {len(out) + 1}")
        out = tuple(input.shape[input.ndim - len(out) + i] if v is None else v
                    for i, v in enumerate(out))
    shape = list(input.shape)
    if kind == "avg":
        if len(out) != nsp:
            raise RuntimeError(f"{fn}: output_size must be {nsp}")
        if min(out) < 0:
            got = ", ".join(map(str, out[:2])) + "".join(f",{o}" for o in out[2:])
            raise RuntimeError(f"{fn}: elements of output_size must be greater than or equal to "
                               f"0 but received {{{got}}}")
        if input.ndim not in (nsp + 1, nsp + 2):
            raise RuntimeError(f"{fn}(): Expected {nsp + 1}D or {nsp + 2}D tensor, but got {shape}")
        checked = range(input.ndim - nsp, input.ndim)
    else:
        if input.ndim not in (nsp + 1, nsp + 2):
            raise RuntimeError(f"{fn}(): Expected {nsp + 1}D or {nsp + 2}D tensor, but got: "
                               f"{shape}")
        checked = range(1, input.ndim)
    for i in checked:
        if shape[i] == 0:
            raise RuntimeError(f"{fn}(): Expected input to have non-zero size for non-batch "
                               f"dimensions, but input has sizes {shape} with dimension {i} being "
                               f"empty")
    if kind == "max":
        if len(out) != nsp:
            raise RuntimeError(f"{fn}(): internal error: output_size.size() must be {nsp}")
        if min(out) < 0:
            full = shape[:-nsp] + list(out)
            raise RuntimeError(f"Trying to create tensor with negative dimension {min(out)}: "
                               f"{full}")
    return out


def _adaptive_bounds(n: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Window i covers input [floor(i n / out), ceil((i + 1) n / out))."""
    i = np.arange(out)
    return (i * n) // out, -((-(i + 1) * n) // out)


def _adaptive_matrix(n: int, out: int) -> np.ndarray:
    """(out, n): row i averages window i."""
    a = np.zeros((out, n))
    for i, (start, end) in enumerate(zip(*_adaptive_bounds(n, out), strict=True)):
        a[i, start:end] = 1.0 / (end - start)
    return a


def _adaptive_avg_pool(nsp, input, output_size):
    """Averaging matrices applied along each spatial dim: the last from the right, the
    others from the left (``A_h @ x @ A_w.T`` in 2-d), so any sizes work."""
    out = _adaptive_size("avg", nsp, input, output_size)
    if all(o == 1 for o in out):  # PyTorch takes the mean here (MeanBackward1)
        return T.mean(input, tuple(range(-nsp, 0)), keepdim=True)
    name = f"AdaptiveAvgPool{nsp}DBackward0"
    sp = tuple(input.shape[-nsp:])
    mats = [_adaptive_matrix(n, o) for n, o in zip(sp, out, strict=True)]
    mats = [T.tensor(m, dtype=input.dtype) for m in mats[:-1] + [mats[-1].T]]
    y = apply(P.matmul_p, (input, mats[-1]), name=name if nsp == 1 else None)
    for i in reversed(range(nsp - 1)):
        last = name if i == 0 else None
        rest = out[i + 1:]
        if len(rest) == 1:  # dim -2: a left matmul broadcasts over the leading dims
            y = apply(P.matmul_p, (mats[i], y), name=last)
        else:  # fold the dims after it into one, multiply, unfold
            lead = tuple(y.shape[:y.ndim - nsp + i])
            y = T.matmul(mats[i], T.reshape(y, lead + (sp[i], math.prod(rest))))
            y = T.reshape(y, lead + (out[i],) + rest, _name=last)
    return y


def _adaptive_max_pool(nsp, input, output_size, return_indices):
    """The first maximum (row-major) of each adaptive window, as PyTorch picks it.

    Windows differ in size, so each is read at the flat input indices of its widest
    neighbour's shape, a short one repeating its last element (a repeat is never a
    first maximum); the maximum's index selects the value with ``gather``, so the
    gradient goes to that element alone."""
    out = _adaptive_size("max", nsp, input, output_size)
    sp = tuple(input.shape[-nsp:])
    lead = tuple(input.shape[:-nsp])
    # flat[*out, *k]: the flat input index of offset k in the window at out
    bounds = [_adaptive_bounds(n, o) for n, o in zip(sp, out, strict=True)]
    widths = [max(int((end - start).max(initial=1)), 1) for start, end in bounds]
    flat = np.zeros(out + tuple(widths), np.int64)
    place = 1
    for i in reversed(range(nsp)):
        start, end = bounds[i]
        at = np.minimum(start[:, None] + np.arange(widths[i]), end[:, None] - 1)
        shape = [1] * (2 * nsp)
        shape[i], shape[nsp + i] = out[i], widths[i]
        flat = flat + at.reshape(shape) * place
        place *= sp[i]
    flat = T.tensor(flat.reshape(out + (math.prod(widths),)))
    x = T.reshape(input, lead + (math.prod(sp),))
    windows = T.getitem(x, (Ellipsis, P.TENSOR), [flat])        # *lead, *out, K
    best = T.argmax(windows, -1)
    idx = T.squeeze(T.gather(T.broadcast_to(flat, windows.shape), -1, T.unsqueeze(best, -1)), -1)
    picked = T.gather(x, -1, T.reshape(idx, lead + (math.prod(out),)))
    values = T.reshape(picked, idx.shape, _name=f"AdaptiveMaxPool{nsp}DBackward0")
    return (values, idx) if return_indices else values


def _check_1d(fn: str, input: Tensor) -> None:
    if input.ndim not in (2, 3):
        raise RuntimeError(f"Expected 2 to 3 dimensions, but got {input.ndim}-dimensional tensor "
                           f"for argument #1 'self' (while checking arguments for {fn})")


def _one_int(fn: str, what: str, value) -> int:
    """A 1-d size argument: an int or a sequence of one (PyTorch's argument parser)."""
    if isinstance(value, int):
        return value
    if value is None or not all(isinstance(v, int) for v in value):
        raise TypeError(f"{fn}(): argument '{what}' (position 2) must be tuple of ints, not "
                        f"{type(value).__name__}")
    if len(value) != 1:
        raise RuntimeError(f"{fn}() argument '{what}' should contain one int (got {len(value)})")
    return value[0]


def _squeeze_1d(out):
    """The 1-d result of a 2-d pool run on ``input.unsqueeze(-2)``."""
    if isinstance(out, tuple):
        return tuple(T.squeeze(o, -2) for o in out)
    return T.squeeze(out, -2)


def max_pool1d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,
               ceil_mode: bool = False, return_indices: bool = False):
    """The maximum over each window of (N, C, L) or (C, L); see ``max_pool2d``.

    >>> import tracegrad as tg
    >>> max_pool1d(tg.tensor([[[1.0, 3.0, 2.0, 0.0]]]), 2)
    tensor([[[3., 2.]]])
    """
    shape = list(input.shape)
    if input.ndim not in (2, 3) or 0 in shape[-2:]:
        raise RuntimeError(f"max_pool1d: Expected 2D or 3D (batch mode) tensor with optional 0 dim "
                           f"batch size for input, but got:{shape}")
    args = {}
    for what, value, also in (("kernel_size", kernel_size, "an int, list of ints or"),
                              ("stride", stride, "None, an int, list of ints, or"),
                              ("padding", padding, "an int, list of ints, or"),
                              ("dilation", dilation, "an int, list of ints or")):
        if what == "stride" and _omitted(value):
            value = args["kernel_size"]
        value = (value,) if isinstance(value, int) else tuple(value)
        if len(value) != 1:
            raise RuntimeError(f"max_pool1d() {what} must be {also} tuple of ints of size 1 but "
                               f"got size {len(value)}")
        args[what] = value[0]
    k, s, p, d = args.values()
    for what, value, ok, rule in (("kernel_size", k, k > 0, "be greater than zero"),
                                  ("stride", s, s > 0, "be greater than zero"),
                                  ("padding", p, p >= 0, "be non-negative")):
        if not ok:
            raise RuntimeError(f"max_pool1d() {what} must {rule}, but got {value}")
    if p > k // 2:
        raise RuntimeError(f"max_pool1d() padding should be at most half of kernel size, but got "
                           f"padding={p} and kernel_size={k}")
    if d <= 0:
        raise RuntimeError(f"max_pool1d() dilation must be greater than zero, but got {d}")
    (out,), _ = P._pool_geometry(shape[-1:], (k,), (s,), (p,), (d,), ceil_mode)
    if out <= 0:
        raise RuntimeError(f"max_pool1d() Invalid computed output size: {out}")
    return _squeeze_1d(_max_pool(2, T.unsqueeze(input, -2), (1, k), (1, s), (0, p), (1, d),
                                 ceil_mode, return_indices))


def max_pool2d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,
               ceil_mode: bool = False, return_indices: bool = False):
    """The maximum over each window; padding counts as -inf. The gradient goes to the
    first maximum of a window (row-major), summed where windows overlap.

    ``return_indices``: also the flat (h * W + w) index of each maximum.

    >>> import tracegrad as tg
    >>> max_pool2d(tg.arange(16.0).reshape(1, 1, 4, 4), 2)
    tensor([[[[ 5.,  7.],
              [13., 15.]]]])
    """
    return _max_pool(2, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool3d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,
               ceil_mode: bool = False, return_indices: bool = False):
    """The maximum over each window of (N, C, D, H, W) or (C, D, H, W); see ``max_pool2d``
    (indices are flat over D, H, W)."""
    return _max_pool(3, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def avg_pool1d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True) -> Tensor:
    """The mean of each window of (N, C, L) or (C, L); see ``avg_pool2d``.

    >>> import tracegrad as tg
    >>> avg_pool1d(tg.tensor([[[1.0, 3.0, 2.0, 0.0]]]), 2)
    tensor([[[2., 1.]]])
    """
    k = _one_int("avg_pool1d", "kernel_size", kernel_size)
    s = k if _omitted(stride) else _one_int("avg_pool1d", "stride", stride)
    p = _one_int("avg_pool1d", "padding", padding)
    _check_1d("avg_pool1d", input)
    return _squeeze_1d(_avg_pool(2, T.unsqueeze(input, -2), (1, k), (1, s), (0, p), ceil_mode,
                                 count_include_pad, None))


def avg_pool2d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    """The mean of each window: a convolution with a ones kernel, divided by the
    window's size (counting zero padding if ``count_include_pad``).

    >>> import tracegrad as tg
    >>> avg_pool2d(tg.arange(16.0).reshape(1, 1, 4, 4), 2)
    tensor([[[[ 2.5000,  4.5000],
              [10.5000, 12.5000]]]])
    """
    return _avg_pool(2, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override)


def avg_pool3d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    """The mean of each window of (N, C, D, H, W) or (C, D, H, W); see ``avg_pool2d``."""
    return _avg_pool(3, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override)


def adaptive_avg_pool1d(input: Tensor, output_size) -> Tensor:
    """Average over the ``output_size`` windows that split L (see ``adaptive_avg_pool2d``)."""
    o = _one_int("adaptive_avg_pool1d", "output_size", output_size)
    _check_1d("adaptive_avg_pool1d", input)
    return _squeeze_1d(_adaptive_avg_pool(2, T.unsqueeze(input, -2), (1, o)))


def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:
    """Average over the windows that split H and W into ``output_size`` (a None entry
    keeps that dim): ``A_h @ x @ A_w.T`` with averaging matrices, so any sizes work.

    >>> import tracegrad as tg
    >>> adaptive_avg_pool2d(tg.ones(2, 3, 5, 7), (1, 1)).shape
    torch.Size([2, 3, 1, 1])
    """
    return _adaptive_avg_pool(2, input, output_size)


def adaptive_avg_pool3d(input: Tensor, output_size) -> Tensor:
    """Average over the windows that split D, H and W into ``output_size``."""
    return _adaptive_avg_pool(3, input, output_size)


def adaptive_max_pool1d(input: Tensor, output_size, return_indices: bool = False):
    """The maximum over the ``output_size`` windows that split L (see
    ``adaptive_max_pool2d``)."""
    o = _one_int("adaptive_max_pool1d", "output_size", output_size)
    _check_1d("adaptive_max_pool1d", input)
    return _squeeze_1d(_adaptive_max_pool(2, T.unsqueeze(input, -2), (1, o), return_indices))


def _torch_adaptive_max_pool1d(input: Tensor, output_size):
    """``torch.adaptive_max_pool1d``: values and indices, always."""
    return adaptive_max_pool1d(input, output_size, return_indices=True)


def adaptive_max_pool2d(input: Tensor, output_size, return_indices: bool = False):
    """The maximum over the windows that split H and W into ``output_size`` (window i
    of n inputs into o covers [floor(i n / o), ceil((i + 1) n / o))); ``return_indices``:
    also the flat (h * W + w) index of each maximum.

    >>> import tracegrad as tg
    >>> adaptive_max_pool2d(tg.arange(12.0).reshape(1, 3, 4), (2, 2))
    tensor([[[ 5.,  7.],
             [ 9., 11.]]])
    """
    return _adaptive_max_pool(2, input, output_size, return_indices)


def adaptive_max_pool3d(input: Tensor, output_size, return_indices: bool = False):
    """The maximum over the windows that split D, H and W into ``output_size``."""
    return _adaptive_max_pool(3, input, output_size, return_indices)


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalise each channel (dim 1) by the batch's statistics (``training``) or the
    running ones; then scale by ``weight`` and shift by ``bias``.

    In training the running statistics, when given, are updated in place:
    ``r = (1 - momentum) * r + momentum * batch_stat``, with the batch variance
    unbiased (n - 1) there and biased in the normalisation, as PyTorch.

    >>> import tracegrad as tg
    >>> x = tg.tensor([[1.0], [3.0]])
    >>> batch_norm(x, tg.zeros(1), tg.ones(1), training=True, eps=0.0)
    tensor([[-1.],
            [ 1.]])
    """
    if input.ndim < 2:
        raise ValueError(f"batch_norm: expected at least 2-D input (N, C, ...), got "
                         f"{list(input.shape)}")
    c = input.shape[1]
    axes = (0,) + tuple(range(2, input.ndim))
    per_channel = (1, c) + (1,) * (input.ndim - 2)
    if training:
        count = input.numel() // c if c else 0
        if count <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input "
                             f"size {input.shape}")
        mean = T.mean(input, axes, keepdim=True)
        var = T.var(input, axes, keepdim=True, correction=0)
        from ..autograd.grad_mode import no_grad
        with no_grad():
            if running_mean is not None:
                running_mean.mul_(1 - momentum).add_(T.reshape(mean, (c,)) * momentum)
            if running_var is not None:
                unbiased = T.reshape(var, (c,)) * (count / (count - 1))
                running_var.mul_(1 - momentum).add_(unbiased * momentum)
    else:
        if running_mean is None or running_var is None:
            raise RuntimeError("batch_norm: running_mean and running_var must be given when "
                               "not training")
        mean = T.reshape(running_mean, per_channel)
        var = T.reshape(running_var, per_channel)
    name = "NativeBatchNormBackward0"
    centred = input - mean
    rstd = T.rsqrt(var + eps)
    if weight is None and bias is None:
        return _binop(P.mul_p, centred, rstd, name)
    out = centred * rstd
    if bias is None:
        return _binop(P.mul_p, out, T.reshape(weight, per_channel), name)
    if weight is not None:
        out = out * T.reshape(weight, per_channel)
    return _binop(P.add_p, out, T.reshape(bias, per_channel), name)


def _torch_batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps,
                      cudnn_enabled=True):
    """``torch.batch_norm``'s argument order."""
    return batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)


# ----------------------------------------------------------------------------
# losses

def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Mean (or sum, or elementwise) squared error."""
    _check_reduction(reduction)
    input, target = _broadcast_target(input, target, "mse_loss")
    d = input - target
    name = "MseLossBackward0"
    return _reduce(_binop(P.mul_p, d, d, _last_name(reduction, name)), reduction, name)


def l1_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Mean (or sum, or elementwise) absolute error."""
    _check_reduction(reduction)
    input, target = _broadcast_target(input, target, "l1_loss")
    return _reduce(T.abs(input - target), reduction, None)


def _class_dim_to_last(x: Tensor) -> Tensor:
    """(N, C, d1, ...) -> (N, d1, ..., C): the class dim last, for gather and sums."""
    if x.ndim <= 2:
        return x
    return T.permute(x, (0,) + tuple(range(2, x.ndim)) + (1,))


def _check_targets(input: Tensor, target: Tensor, fn: str) -> None:
    if target.dtype.is_floating_point or target.dtype is dtypes.bool_:
        raise RuntimeError(f"{fn}: expected target of integer class indices (Long), got "
                           f"{target.dtype}")
    expected = input.shape[:1] + input.shape[2:] if input.ndim >= 2 else ()
    if tuple(target.shape) != tuple(expected):
        raise ValueError(f"{fn}: expected target of shape {list(expected)} for input of shape "
                         f"{list(input.shape)}, got {list(target.shape)}")


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None,
             ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of class indices ``target`` under log-probabilities ``input``.

    ``input`` is (C,), (N, C) or (N, C, d1, ...); targets equal to ``ignore_index``
    contribute nothing, and 'mean' divides by the total weight of the other targets.
    """
    _check_reduction(reduction)
    _check_targets(input, target, "nll_loss")
    n_classes = input.shape[1] if input.ndim >= 2 else input.shape[0]
    logp = _class_dim_to_last(input)
    valid = target != ignore_index
    safe = T.where(valid, target, 0)
    if _eager() and T.any(T.logical_and(valid, T.logical_or(safe < 0, safe >= n_classes))):
        raise IndexError(f"nll_loss: Target out of bounds (classes are 0..{n_classes - 1})")
    safe = T.cast(safe, dtypes.int64)
    picked = T.squeeze(T.gather(logp, -1, T.unsqueeze(safe, -1)), -1)
    w = T.cast(valid, input.dtype)
    if weight is not None:
        w = w * T.getitem(weight, safe)
    name = "NllLoss2DBackward0" if input.ndim >= 3 else "NllLossBackward0"
    if reduction == "none":
        return _binop(P.mul_p, T.neg(picked), w, name)
    total = _reduce_all(P.sum_p, T.neg(picked) * w, name if reduction == "sum" else None)
    if reduction == "sum":
        return total
    return _binop(P.div_p, total, T.sum(w), name)


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                  ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """log_softmax over the class dim (dim 1, or 0 for a 1-D input), then nll_loss.

    ``target`` is either class indices or, if floating point, class probabilities.
    With ``label_smoothing`` ε the target mixes (1-ε) of itself with ε spread
    uniformly over the classes.

    >>> import tracegrad as tg
    >>> cross_entropy(tg.zeros(1, 4), tg.tensor([2]))  # log(4): uniform over 4 classes
    tensor(1.3863)
    """
    _check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    class_dim = 1 if input.ndim >= 2 else 0
    n_classes = input.shape[class_dim]
    logp = T.log_softmax(input, class_dim)
    if target.dtype.is_floating_point:
        return _soft_cross_entropy(logp, target, weight, reduction, label_smoothing, class_dim)
    nll = nll_loss(logp, target, weight, ignore_index, reduction)
    if label_smoothing == 0.0:
        return nll
    # the uniform part: -sum_c w_c log p_c per element, zero where the target is ignored
    valid = target != ignore_index
    lp = _class_dim_to_last(logp)
    smooth = T.neg(T.sum(lp * weight if weight is not None else lp, -1))
    smooth = T.where(valid, smooth, 0.0)
    if reduction == "mean":
        if weight is not None:
            safe = T.cast(T.where(valid, target, 0), dtypes.int64)
            denom = T.sum(T.where(valid, T.getitem(weight, safe), 0.0))
        else:
            denom = T.sum(valid)
        smooth = T.sum(smooth) / denom
    elif reduction == "sum":
        smooth = T.sum(smooth)
    return (1.0 - label_smoothing) * nll + smooth * (label_smoothing / n_classes)


def _soft_cross_entropy(logp, target, weight, reduction, label_smoothing, class_dim):
    if target.shape != logp.shape:
        raise ValueError(f"cross_entropy: probability targets must have the input's shape "
                         f"{list(logp.shape)}, got {list(target.shape)}")
    n_classes = logp.shape[class_dim]
    if label_smoothing > 0.0:
        target = target * (1.0 - label_smoothing) + label_smoothing / n_classes
    lp = _class_dim_to_last(logp)
    tg = _class_dim_to_last(target)
    terms = lp * tg if weight is None else lp * tg * weight
    loss = T.neg(T.sum(terms, -1))
    if reduction == "none":
        return loss
    if reduction == "sum":
        return T.sum(loss)
    # 'mean' averages over all positions, not classes
    return _binop(P.div_p, T.sum(loss), loss.numel(), "DivBackward1")


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                         reduction: str = "mean") -> Tensor:
    """-(y log x + (1 - y) log(1 - x)) for probabilities x; each log is clamped at -100."""
    _check_reduction(reduction)
    if target.shape != input.shape:
        raise ValueError(f"Using a target size ({target.shape}) that is different to the input "
                         f"size ({input.shape}) is deprecated. Please ensure they have the same "
                         "size.")
    data = input.__dict__.get("_data")
    if data.__class__ is np.ndarray and trace_state.current is None:
        with np.errstate(invalid="ignore"):
            inside = ((data >= 0) & (data <= 1)).all()  # nan is outside
        if not inside:
            raise RuntimeError("all elements of input should be between 0 and 1")
    tdata = target.__dict__.get("_data") if isinstance(target, T.Tensor) else None
    if tdata.__class__ is np.ndarray and trace_state.current is None:
        with np.errstate(invalid="ignore"):
            if not ((tdata >= 0) & (tdata <= 1)).all():
                raise RuntimeError("all elements of target should be between 0 and 1")
    log_x = T.clamp(T.log(input), min=-100.0)
    log_1mx = T.clamp(T.log(1.0 - input), min=-100.0)
    name = "BinaryCrossEntropyBackward0"
    nll = target * log_x + (1.0 - target) * log_1mx
    if weight is None:
        loss = apply(P.neg_p, (nll,), name=_last_name(reduction, name))
    else:
        loss = _binop(P.mul_p, T.neg(nll), weight, _last_name(reduction, name))
    return _reduce(loss, reduction, name)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                     reduction: str = "mean",
                                     pos_weight: Tensor | None = None) -> Tensor:
    """BCE on logits, finite for any logit (no sigmoid is formed).

    With ``pos_weight`` p the positive term is scaled: the loss is
    bce(x, y) + (p - 1) * y * softplus(-x), and softplus(-x) = bce(x, 1).

    >>> import tracegrad as tg
    >>> binary_cross_entropy_with_logits(tg.tensor([1000.0]), tg.tensor([0.0])).item()
    1000.0
    """
    _check_reduction(reduction)
    if target.shape != input.shape:
        raise ValueError(f"Target size ({target.shape}) must be the same as input size "
                         f"({input.shape})")
    name = "BinaryCrossEntropyWithLogitsBackward0"
    last = _last_name(reduction, name)
    x, y = T._coerce(input, target)
    if pos_weight is None and weight is None:
        return _reduce(apply(P.bce_logits_p, (x, y), name=last), reduction, name)
    loss = apply(P.bce_logits_p, (x, y))
    if pos_weight is not None:
        softplus_neg = apply(P.bce_logits_p, (x, T.ones_like(x)))
        extra = (pos_weight - 1.0) * y * softplus_neg
        loss = _binop(P.add_p, loss, extra, last if weight is None else None)
    if weight is not None:
        loss = _binop(P.mul_p, loss, weight, last)
    return _reduce(loss, reduction, name)


# ----------------------------------------------------------------------------
# devices/creation helper: autocast (NOTE: [Autocast] in amp/autocast_mode.py). Convs run
# in the autocast dtype, the losses in float32; the checks cost one attribute read.

def _autocast_wrap(fn, cast_inputs):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        if _autocast.enabled:
            args = tuple(cast_inputs(a)[0] if isinstance(a, Tensor) else a for a in args)
            kwargs = {k: cast_inputs(v)[0] if isinstance(v, Tensor) else v
                      for k, v in kwargs.items()}
        return fn(*args, **kwargs)
    return run


from ..amp.autocast_mode import lower as _lower, state as _autocast, upper as _upper  # noqa: E402


def _conv_rounded_once(conv):
    # a bfloat16/float16 convolution with a bias rounds once, as addmm (functions.py)
    @functools.wraps(conv)
    def run(nsp, input, weight, bias, *args):
        dt = input.dtype
        if bias is not None and dt in T._ROUND_ONCE and weight.dtype is dt and bias.dtype is dt:
            return T._rounded_once(conv, dt, nsp, input, weight, bias, *args)
        return conv(nsp, input, weight, bias, *args)
    return run


_conv_nd = _autocast_wrap(_conv_rounded_once(_conv_nd), _lower)
mse_loss = _autocast_wrap(mse_loss, _upper)
l1_loss = _autocast_wrap(l1_loss, _upper)
nll_loss = _autocast_wrap(nll_loss, _upper)
cross_entropy = _autocast_wrap(cross_entropy, _upper)
binary_cross_entropy = _autocast_wrap(binary_cross_entropy, _upper)
binary_cross_entropy_with_logits = _autocast_wrap(binary_cross_entropy_with_logits, _upper)


# ----------------------------------------------------------------------------
# opsa: more activations (issue 12). Composites over primitives; the last op of each
# is recorded under PyTorch's grad_fn name, and the gradient at a kink is PyTorch's
# (a strict or non-strict comparison picks the branch, as its backward kernel does).

__all__ += [
    "silu", "elu", "celu", "selu", "softplus", "softsign", "hardtanh", "hardsigmoid",
    "hardswish", "relu6", "mish", "logsigmoid", "glu", "prelu", "rrelu", "threshold",
    "tanhshrink", "softshrink", "hardshrink", "softmin",
]

_SELU_ALPHA = 1.6732632423543772848170429916717
_ONE_SIXTH_F32 = float(np.float32(1.0) / np.float32(6.0))
_SELU_SCALE = 1.0507009873554804934193349852946


def _finish_act(input: Tensor, out: Tensor, inplace: bool) -> Tensor:
    return commit_inplace(input, out) if inplace else out


def _select(cond: Tensor, a, b, name: str | None = None) -> Tensor:
    """where(cond, a, b) with number operands made tensors of b's (or a's) dtype."""
    like = a if isinstance(a, Tensor) else b
    a = a if isinstance(a, Tensor) else T._const(a, like.dtype)
    b = b if isinstance(b, Tensor) else T._const(b, like.dtype)
    return apply(P.where_p, (cond, a, b), name=name)


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """x * sigmoid(x)."""
    x = T._float(input)
    return _finish_act(input, _binop(P.mul_p, x, T.sigmoid(x), "SiluBackward0"), inplace)


@T._quietly
def _elu(input, alpha, scale, input_scale, name):
    x = T._float(input)
    # (the negative branch on min(x, 0): exp of a large x would overflow, and 0 * inf = nan
    # come back through the branch not taken)
    xn = T.clamp(x, max=0.0)
    neg = T.expm1(xn * input_scale) * alpha if input_scale != 1 else T.expm1(xn) * alpha
    if scale != 1:
        return _select(x > 0, x * scale, neg * scale, name)
    return _select(x > 0, x, neg, name)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """x where x > 0, else alpha * (exp(x) - 1)."""
    return _finish_act(input, _elu(input, alpha, 1, 1, "EluBackward0"), inplace)


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """x where x > 0, else alpha * (exp(x / alpha) - 1)."""
    if alpha == 0:
        raise RuntimeError("ZeroDivisionError")
    return _finish_act(input, _elu(input, alpha, 1, 1 / alpha, "CeluBackward0"), inplace)


def selu(input: Tensor, inplace: bool = False) -> Tensor:
    """scale * elu(x, alpha) with the self-normalising constants."""
    return _finish_act(input, _elu(input, _SELU_ALPHA, _SELU_SCALE, 1, "EluBackward0"), inplace)


@T._quietly
def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold."""
    x = T._float(input)
    bx = x * beta if beta != 1 else x
    # (clamped: above the threshold the branch is not taken, and exp(bx) = inf there would
    # send 0 * inf = nan back through it)
    soft = T.log1p(T.exp(T.clamp(bx, max=threshold)))
    if beta != 1:
        soft = soft / beta
    return _select(bx > threshold, x, soft, "SoftplusBackward0")


def softsign(input: Tensor) -> Tensor:
    """x / (1 + |x|)."""
    x = T._float(input)
    return x / (T.abs(x) + 1)


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0,
             inplace: bool = False) -> Tensor:
    """x clamped to [min_val, max_val]; the gradient is 0 at the bounds (as PyTorch)."""
    if min_val > max_val:
        raise ValueError("min_val cannot be greater than max_val")
    x = input if input.dtype.is_floating_point else T._float(input)
    inner = _select(x >= max_val, max_val, x)
    # x itself at min_val (torch keeps x there: relu6(-0.0) is -0.0); gradient 0 there
    low = _select(x < min_val, min_val, x.detach())
    return _finish_act(input, _select(x <= min_val, low, inner, "HardtanhBackward0"), inplace)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    """min(max(x, 0), 6)."""
    return hardtanh(input, 0.0, 6.0, inplace)


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    """(x + 3) / 6 clamped to [0, 1]; the gradient is 0 at -3 and 3."""
    x = T._float(input)
    # ATen's backward multiplies by 1/6 rounded to float32 in every dtype (its forward
    # divides by 6): the value is (x + 3) / 6, the slope that float32 sixth
    slope = x * _ONE_SIXTH_F32
    inner = _select(x >= 3, 1.0, ((x + 3) / 6).detach() + (slope - slope.detach()))
    return _finish_act(input, _select(x <= -3, 0.0, inner, "HardsigmoidBackward0"), inplace)


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    """x * hardsigmoid(x), with PyTorch's gradient: 0 up to -3, x/3 + 1/2, then 1 from 3."""
    x = T._float(input)
    inner = _select(x < 3, x * (x + 3) / 6, x)
    # x * 0 below -3: torch's kernel gives -0.0 there
    return _finish_act(input, _select(x <= -3, x * 0, inner, "HardswishBackward0"), inplace)


@T._quietly
def mish(input: Tensor, inplace: bool = False) -> Tensor:
    """x * tanh(softplus(x))."""
    x = T._float(input)
    # softplus past 20 is x to the last bit of tanh; clamped there, a large x's gradient
    # is tanh(sp) = 1, not 0 * exp(x) = 0 * inf = nan
    sp = T.log1p(T.exp(T.clamp(x, max=20.0)))
    return _finish_act(input, _binop(P.mul_p, x, T.tanh(sp), "MishBackward0"), inplace)


@T._quietly
def logsigmoid(input: Tensor) -> Tensor:
    """log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)), finite for any x."""
    x = T._float(input)
    return _binop(P.sub_p, T.minimum(x, 0.0), T.log1p(T.exp(-T.abs(x))), "LogSigmoidBackward0")


def glu(input: Tensor, dim: int = -1) -> Tensor:
    """a * sigmoid(b), a and b the two halves of input along ``dim``."""
    if input.ndim == 0:
        raise RuntimeError("glu does not support scalars because halving size must be even")
    d = T._dim(dim, input.ndim)
    n = input.shape[d]
    if n % 2:
        raise RuntimeError(f"Halving dimension must be even, but dimension {d} is size {n}")
    a, b = T.split(input, n // 2, d)
    return _binop(P.mul_p, a, T.sigmoid(b), "GluBackward0")


_SCALAR_NAME = {"float64": "Double", "float32": "Float", "float16": "Half", "bfloat16": "BFloat16",
                "int64": "Long", "int32": "Int", "int16": "Short", "int8": "Char", "uint8": "Byte",
                "bool": "Bool"}


def prelu(input: Tensor, weight: Tensor) -> Tensor:
    """x where x > 0, else weight * x, one weight per channel (dim 1) or one for all."""
    x = input
    if weight.dtype is not x.dtype:
        raise RuntimeError(f"prelu: Type promoting not supported. Got "
                           f"{_SCALAR_NAME[x.dtype.name]} and {_SCALAR_NAME[weight.dtype.name]}")
    if weight.numel() != 1:
        channels = x.shape[1] if x.ndim >= 2 else 1
        if x.ndim == 0 or weight.numel() != channels:
            raise RuntimeError(f"Mismatch of parameter numbers and input channel size. Found "
                               f"parameter numbers = {weight.numel()} and channel size = "
                               f"{channels}.")
        w = T.reshape(weight, (channels,) + (1,) * (x.ndim - 2))
    else:
        w = T.reshape(weight, ()) if x.ndim == 0 else T.reshape(weight, (1,) * x.ndim)
    return _select(x > 0, x, w * x, "PreluKernelBackward0")


def rrelu(input: Tensor, lower: float = 1.0 / 8, upper: float = 1.0 / 3,
          training: bool = False, inplace: bool = False) -> Tensor:
    """Leaky ReLU with slope (lower + upper) / 2 (eval); in training each non-positive
    element's slope is drawn from U(lower, upper): eagerly from PyTorch's stream (one
    float64 draw per such element, in order, as ATen's loop), traced from a jax key."""
    x = T._float(input)
    if training:
        gen = T._gen(None)
        data = x.__dict__.get("_data")
        if trace_state.current is None and data.__class__ is np.ndarray:
            nonpos = data <= 0
            # at::uniform_real_distribution<double>(lower, upper), the bounds in x's
            # precision (opmath): 53 bits of random64() times (upper - lower) plus lower
            lo, hi = float(data.dtype.type(lower)), float(data.dtype.type(upper))
            bits = gen._random64(int(nonpos.sum())) & np.uint64(2 ** 53 - 1)
            r = bits.astype(np.float64) * 2.0 ** -53 * (hi - lo) + lo
            slopes = np.ones(data.shape, data.dtype)
            slopes[nonpos] = r.astype(data.dtype)
            slope = Tensor._make(slopes)
        else:
            slope = T._draw_uniform(gen, tuple(x.shape), x.dtype, lower, upper)
            slope = _select(x <= 0, slope, 1.0)
    else:
        slope = T.where(x <= 0, T._const((lower + upper) / 2, x.dtype), T._const(1.0, x.dtype))
    return _finish_act(input, _binop(P.mul_p, x, slope, "RreluWithNoiseBackward0"), inplace)


def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:
    """x where x > threshold, else value."""
    x = input
    return _finish_act(input, _select(x > threshold, x, value, "ThresholdBackward0"), inplace)


def tanhshrink(input: Tensor) -> Tensor:
    """x - tanh(x)."""
    x = T._float(input)
    return x - T.tanh(x)


def softshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    """x - lambd above lambd, x + lambd below -lambd, 0 between."""
    if lambd < 0:
        raise RuntimeError(f"lambda must be greater or equal to 0, but found to be {lambd}.")
    x = T._float(input)
    inner = _select(x < -lambd, x + lambd, x * 0)  # (torch's -0.0 for negative x)
    return _select(x > lambd, x - lambd, inner, "SoftshrinkBackward0")


def hardshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    """x where |x| > lambd, else 0."""
    x = T._float(input)
    keep = T.logical_or(x > lambd, x < -lambd)
    return _select(keep, x, 0.0, "HardshrinkBackward0")


def softmin(input: Tensor, dim: int | None = None, dtype=None) -> Tensor:
    """softmax(-x)."""
    return T.softmax(-input, dim, dtype=dtype)

# ---- end of opsa activations ------------------------------------------------


# ============================================================================
# nn extras: more losses and distances (issue 11). Each is a composite over the
# primitives in PyTorch's own formula (ATen's Loss.cpp / Distance.cpp), with its
# checks and messages; the last op carries PyTorch's grad_fn name where PyTorch
# computes the loss as one op (SmoothL1LossBackward0, ...).

__all__ += [
    "smooth_l1_loss", "huber_loss", "kl_div", "poisson_nll_loss", "gaussian_nll_loss",
    "margin_ranking_loss", "hinge_embedding_loss", "soft_margin_loss",
    "multilabel_soft_margin_loss", "cosine_embedding_loss", "triplet_margin_loss",
    "multi_margin_loss", "multilabel_margin_loss", "cosine_similarity", "pairwise_distance",
    "normalize",
]


def _legacy_reduction(size_average, reduce, reduction: str) -> str:
    """The old ``size_average``/``reduce`` flags, mapped to a reduction as PyTorch does."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    ret = "mean" if size_average and reduce else "sum" if reduce else "none"
    warnings.warn("size_average and reduce args will be deprecated, please use "
                  f"reduction='{ret}' instead.", stacklevel=3)
    return ret


def _straight_through(x: Tensor, value: Tensor) -> Tensor:
    """``value``'s numbers with ``x``'s gradient (identity), as an in-place edit under
    no_grad is in PyTorch: x - x is exactly 0 for finite x, so the value is exact."""
    return (x - x.detach()) + value.detach()


def _safe_softplus(x: Tensor) -> Tensor:
    """log(1 + exp(x)), finite for any x (the logits-BCE primitive against target 0)."""
    return apply(P.bce_logits_p, (x, T.zeros_like(x)))


def smooth_l1_loss(input: Tensor, target: Tensor, size_average=None, reduce=None,
                   reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """0.5 d² / beta where |d| < beta, else |d| - 0.5 beta (d = input - target).

    >>> import tracegrad as tg
    >>> smooth_l1_loss(tg.tensor([0.5, 3.0]), tg.tensor([0.0, 0.0]), reduction="none")
    tensor([0.1250, 2.5000])
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    input, target = _broadcast_target(input, target, "smooth_l1_loss")
    if beta == 0.0:
        return l1_loss(input, target, reduction)
    _check_reduction(reduction)
    if beta < 0:
        raise RuntimeError("smooth_l1_loss does not support negative values for beta.")
    name = "SmoothL1LossBackward0"
    d = input - target
    z = T.abs(d)
    loss = apply(P.where_p, T.broadcast_tensors(z < beta, d * d * (0.5 / beta), z - 0.5 * beta),
                 name=_last_name(reduction, name))
    return _reduce(loss, reduction, name)


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0,
               weight: Tensor | None = None) -> Tensor:
    """0.5 d² where |d| < delta, else delta (|d| - 0.5 delta); optionally weighted."""
    input, target = _broadcast_target(input, target, "huber_loss")
    if weight is not None and weight.shape != input.shape:
        raise ValueError("Weights and input must have the same size.")
    _check_reduction(reduction)
    if not delta > 0:
        raise RuntimeError("huber_loss does not support non-positive values for delta.")
    name = "HuberLossBackward0"
    d = input - target
    z = T.abs(d)
    last = _last_name(reduction, name) if weight is None else None
    loss = apply(P.where_p, T.broadcast_tensors(z < delta, d * d * 0.5, (z - 0.5 * delta) * delta),
                 name=last)
    if weight is None:
        return _reduce(loss, reduction, name)
    return _reduce(loss * weight, reduction, None)


def _xlogy_self(t: Tensor) -> Tensor:
    """t log t, 0 where t == 0 (torch.xlogy(t, t)); the log never sees the zeros, so
    their gradient is finite."""
    zero = t == 0
    safe = T.where(zero, T.ones_like(t), t)
    return T.where(zero, T.zeros_like(t), safe * T.log(safe))


def kl_div(input: Tensor, target: Tensor, size_average=None, reduce=None,
           reduction: str = "mean", log_target: bool = False) -> Tensor:
    """KL divergence with ``input`` as log-probabilities: target (log target - input).

    'batchmean' sums and divides by the batch size (the mathematical KL per sample);
    'mean' averages over every element (and warns, as PyTorch).
    """
    if size_average is not None or reduce is not None:
        reduction = _legacy_reduction(size_average, reduce, reduction)
    elif reduction == "mean":
        warnings.warn("reduction: 'mean' divides the total loss by both the batch size and the "
                      "support size.'batchmean' divides only by the batch size, and aligns with "
                      "the KL div math definition.'mean' will be changed to behave the same as "
                      "'batchmean' in the next major release.", stacklevel=2)
    base = "sum" if reduction == "batchmean" else reduction
    _check_reduction(base)
    input, target = T._coerce(input, target)
    if log_target:
        loss = T.exp(target) * (target - input)
    else:
        loss = _xlogy_self(target) - target * input
    out = _reduce(loss, base, None)
    if reduction == "batchmean" and input.ndim != 0:
        out = out / input.shape[0]
    return out


def poisson_nll_loss(input: Tensor, target: Tensor, log_input: bool = True, full: bool = False,
                     size_average=None, eps: float = 1e-8, reduce=None,
                     reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of ``target`` under Poisson(rate): exp(input) - target input
    for log rates, else input - target log(input + eps); ``full`` adds Stirling's term."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if reduction not in _REDUCTIONS:
        raise ValueError(reduction + " is not a valid value for reduction")
    if log_input:
        loss = T.exp(input) - target * input
    else:
        loss = input - target * T.log(input + eps)
    if full:
        # target log target - target + 0.5 log(2 pi target), only where target > 1
        big = target > 1
        t = T.where(big, target, T.ones_like(target))
        stirling = t * T.log(t) - t + 0.5 * T.log(2 * math.pi * t)
        loss = loss + T.where(big, stirling, T.zeros_like(stirling))
    return _reduce(loss, reduction, None)


def gaussian_nll_loss(input: Tensor, target: Tensor, var, full: bool = False,
                      eps: float = 1e-6, reduction: str = "mean") -> Tensor:
    """0.5 (log var + (input - target)² / var), var clamped below at ``eps`` (the clamp
    passes the gradient through, as PyTorch's no-grad clamp does).

    ``var`` may have the input's shape, lack its last dim, or differ from it in one
    dim of size 1 (one variance shared along that dim).
    """
    if isinstance(var, float):
        if var < 0:
            raise ValueError("var has negative entry/entries")
        var = var * T.ones_like(input)
    elif _eager() and bool(T.any(var < 0)):
        raise ValueError("var has negative entry/entries")
    if var.shape != input.shape:
        if tuple(input.shape[:-1]) == tuple(var.shape):
            var = T.unsqueeze(var, -1)
        elif input.ndim == var.ndim and sum(
                y for x, y in zip(input.shape, var.shape, strict=True) if x != y) == 1:
            pass
        else:
            raise ValueError("var is of incorrect size")
    if reduction not in _REDUCTIONS:
        raise ValueError(reduction + " is not valid")
    var = _straight_through(var, T.clamp(var.detach(), min=eps))
    loss = 0.5 * (T.log(var) + (input - target) ** 2 / var)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction, None)


def margin_ranking_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0,
                        size_average=None, reduce=None, reduction: str = "mean") -> Tensor:
    """max(0, -target (input1 - input2) + margin): target 1 wants input1 ranked higher."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if input1.ndim != input2.ndim or input1.ndim != target.ndim:
        raise RuntimeError("margin_ranking_loss : All input tensors should have same dimension "
                           f"but got sizes: input1: {input1.shape}, input2: {input2.shape}, "
                           f"target: {target.shape} ")
    loss = T.clamp_min(T.neg(target) * (input1 - input2) + margin, 0)
    return _reduce(loss, reduction, None)


def hinge_embedding_loss(input: Tensor, target: Tensor, margin: float = 1.0, size_average=None,
                         reduce=None, reduction: str = "mean") -> Tensor:
    """input where target is 1, max(0, margin - input) where it is -1."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    zeros = T.zeros_like(input)
    margin_clamp = T.clamp_min(margin - input, 0)
    output_margin = T.where(target != 1, margin_clamp, zeros)
    output_self = T.where(target != -1, input, zeros)
    return _reduce(output_margin + output_self, reduction, None)


def soft_margin_loss(input: Tensor, target: Tensor, size_average=None, reduce=None,
                     reduction: str = "mean") -> Tensor:
    """log(1 + exp(-target input)), the logistic loss for targets ±1."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    name = "SoftMarginLossBackward0"
    x, y = T._coerce(input, target)
    z = T.neg(x) * y
    loss = apply(P.log1p_p, (T.exp(z),), name=_last_name(reduction, name))
    return _reduce(loss, reduction, name)


def multilabel_soft_margin_loss(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                size_average=None, reduce=None,
                                reduction: str = "mean") -> Tensor:
    """Per-class logistic loss, averaged over the classes (the last dim)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    # -(t log sigmoid(x) + (1 - t) log sigmoid(-x)), with -log sigmoid(x) = softplus(-x)
    loss = target * _safe_softplus(T.neg(input)) + (1 - target) * _safe_softplus(input)
    if weight is not None:
        loss = loss * weight
    class_dim = input.ndim - 1
    loss = T.sum(loss, class_dim) / input.shape[class_dim]
    if reduction not in _REDUCTIONS:
        raise ValueError(reduction + " is not valid")
    return _reduce(loss, reduction, None)


def cosine_embedding_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0,
                          size_average=None, reduce=None, reduction: str = "mean") -> Tensor:
    """1 - cos(x1, x2) where target is 1, max(0, cos(x1, x2) - margin) where it is -1."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    targ_dim = target.ndim
    if targ_dim not in (0, 1):
        raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
    want = 2 if targ_dim == 1 else 1
    if input1.ndim != want or input2.ndim != want:
        raise RuntimeError(f"{targ_dim}D target tensor expects {want}D input tensors, but found "
                           f"inputs with sizes {list(input1.shape)} and {list(input2.shape)}.")
    epsilon = 1e-12
    prod_sum = T.sum(input1 * input2, targ_dim)
    mag_square1 = T.sum(input1 * input1, targ_dim) + epsilon
    mag_square2 = T.sum(input2 * input2, targ_dim) + epsilon
    cos = prod_sum / T.sqrt(mag_square1 * mag_square2)
    zeros = T.zeros_like(cos)
    output_pos = T.where(target == 1, 1 - cos, zeros)
    output_neg = T.where(target == -1, T.clamp_min(cos - margin, 0), zeros)
    return _reduce(output_pos + output_neg, reduction, None)


def pairwise_distance(x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6,
                      keepdim: bool = False) -> Tensor:
    """The p-norm of x1 - x2 + eps along the last dim (inputs broadcast).

    >>> import tracegrad as tg
    >>> pairwise_distance(tg.tensor([[0.0, 0.0]]), tg.tensor([[3.0, 4.0]]), eps=0.0)
    tensor([5.])
    """
    ndim = max(x1.ndim, x2.ndim)
    d = x1 - x2 + eps
    axis = () if ndim == 0 else (ndim - 1,)
    ord_ = float(p)
    return apply(P.norm_p, (d,), {"ord": ord_, "axis": axis, "keepdim": bool(keepdim)},
                 name="NormBackward1")


def triplet_margin_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 1.0,
                        p: float = 2, eps: float = 1e-6, swap: bool = False, size_average=None,
                        reduce=None, reduction: str = "mean") -> Tensor:
    """max(0, margin + d(anchor, positive) - d(anchor, negative)) with pairwise distances;
    ``swap`` uses d(positive, negative) where it is smaller."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if margin <= 0:
        raise ValueError(f"margin must be greater than 0, got {margin}")
    a_dim, p_dim, n_dim = anchor.ndim, positive.ndim, negative.ndim
    if not a_dim == p_dim == n_dim:
        raise RuntimeError("The anchor, positive, and negative tensors are expected to have the "
                           f"same number of dimensions, but got: anchor {a_dim}D, positive "
                           f"{p_dim}D, and negative {n_dim}D inputs")
    dist_pos = pairwise_distance(anchor, positive, p, eps)
    dist_neg = pairwise_distance(anchor, negative, p, eps)
    if swap:
        dist_neg = T.minimum(dist_neg, pairwise_distance(positive, negative, p, eps))
    loss = T.clamp_min(margin + dist_pos - dist_neg, 0)
    return _reduce(loss, reduction, None)


def multi_margin_loss(input: Tensor, target: Tensor, p: int = 1, margin: float = 1.0,
                      weight: Tensor | None = None, size_average=None, reduce=None,
                      reduction: str = "mean") -> Tensor:
    """Multi-class hinge loss: sum over classes i != y of max(0, margin - x[y] + x[i])^p,
    divided by the number of classes (and scaled by weight[y])."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if p not in (1, 2):
        raise ValueError("only p == 1 and p == 2 supported")
    if weight is not None and weight.ndim != 1:
        raise ValueError("weight must be one-dimensional")
    nd = input.ndim
    if not ((nd == 2 and input.shape[1] != 0) or (nd == 1 and input.shape[0] != 0) or nd == 0):
        raise RuntimeError("Expected non-empty vector or matrix with optional 0-dim batch size, "
                           f"but got: {list(input.shape)}")
    nframe = input.shape[0] if nd == 2 else 1
    if not (target.ndim <= 1 and target.numel() == nframe):
        raise RuntimeError("multi_margin_loss: target tensor should be 1-D with size equal to the "
                           "number of input samples (batch size). Expected target size "
                           f"[{nframe}], but got {list(target.shape)}. Input has shape "
                           f"{list(input.shape)}.")
    x = T.reshape(input, (nframe, -1))
    n_classes = x.shape[1]
    y = T.cast(T.reshape(target, (nframe, 1)), dtypes.int64)
    if _eager() and bool(T.any(T.logical_or(y < 0, y >= n_classes))):
        raise RuntimeError("target out of range")
    z = margin - T.gather(x, 1, y) + x
    h = T.clamp_min(z, 0)
    if p == 2:
        h = h * h
    if weight is not None:
        h = h * T.getitem(weight, y)
    is_target = T.arange(n_classes) == y
    per_sample = T.sum(T.where(is_target, T.zeros_like(h), h), 1) / n_classes
    name = "MultiMarginLossBackward0"
    if reduction == "none":
        shape = tuple(target.shape) if nd <= 1 else (nframe,)
        return apply(P.reshape_p, (per_sample,), {"shape": shape}, name=name)
    return _reduce(per_sample, reduction, name)


def multilabel_margin_loss(input: Tensor, target: Tensor, size_average=None, reduce=None,
                           reduction: str = "mean") -> Tensor:
    """Multi-label hinge loss: ``target`` lists each sample's classes, ended by the first
    -1; every listed class j and unlisted class i add max(0, 1 - x[j] + x[i]), and the
    sum is divided by the number of classes."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    nd = input.ndim
    if not ((nd == 2 and input.shape[1] != 0) or (nd == 1 and input.shape[0] != 0) or nd == 0):
        raise RuntimeError("Expected non-empty vector or matrix with optional 0-dim batch size, "
                           f"but got: {list(input.shape)}")
    if target.shape != input.shape:
        raise RuntimeError(f"inconsistent target size: {list(target.shape)} for input of size: "
                           f"{list(input.shape)}")
    if target.dtype is not dtypes.int64:
        raise RuntimeError(f"expected scalar type Long but found "
                           f"{_SCALAR_TYPE_NAMES.get(target.dtype.name, 'Float')}")
    nframe = input.shape[0] if nd == 2 else 1
    x = T.reshape(input, (nframe, -1))
    n_classes = x.shape[1]
    y = T.reshape(target, (nframe, n_classes))
    # the listed classes: the entries before the first -1
    listed = T.cumsum(T.cast(y == -1, dtypes.int64), 1) == 0
    if _eager() and bool(T.any(T.logical_or(y < -1, y >= n_classes))):  # every entry
        raise RuntimeError("argument #2 'target' is out of range")
    safe = T.where(listed, y, 0)
    hit = T.logical_and(T.unsqueeze(safe, 2) == T.arange(n_classes), T.unsqueeze(listed, 2))
    is_target = T.any(hit, 1)                                              # (N, C)
    z = 1 - T.unsqueeze(T.gather(x, 1, safe), 2) + T.unsqueeze(x, 1)       # (N, listed, C)
    keep = T.logical_and(T.unsqueeze(listed, 2), T.unsqueeze(T.logical_not(is_target), 1))
    h = T.where(keep, T.clamp_min(z, 0), T.zeros_like(z))
    per_sample = T.sum(h, (1, 2)) / n_classes
    name = "MultilabelMarginLossBackward0"
    if reduction == "none":
        return apply(P.reshape_p, (per_sample,), {"shape": (nframe,) if nd == 2 else ()},
                     name=name)
    return _reduce(per_sample, reduction, name)


# PyTorch's C++ names of the non-float dtypes, as its messages print them
_SCALAR_TYPE_NAMES = {"int64": "Long", "int32": "Int", "int16": "Short", "int8": "Char",
                      "uint8": "Byte", "bool": "Bool"}


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """Cosine of the angle between x1 and x2 along ``dim`` (inputs broadcast).

    PyTorch 2.13's formula: each input is divided by its norm clamped below at
    ``eps`` (the clamp passes the gradient through), then the products are summed,
    so the result stays within [-1, 1].

    >>> import tracegrad as tg
    >>> cosine_similarity(tg.tensor([[1.0, 0.0]]), tg.tensor([[1.0, 1.0]]))
    tensor([0.7071])
    """
    a, b = T._coerce(x1, x2)
    if not a.dtype.is_floating_point:
        raise RuntimeError("expected common dtype to be floating point, yet common dtype is "
                           + _SCALAR_TYPE_NAMES.get(a.dtype.name, a.dtype.name))
    a, b = T.broadcast_tensors(a, b)
    axis = (T._dim(dim, a.ndim),) if a.ndim else ()

    def normed(v):
        n = apply(P.norm_p, (v,), {"ord": 2.0, "axis": axis, "keepdim": True})
        return v / _straight_through(n, T.clamp(n.detach(), min=eps))

    return _reduce_dim_sum(normed(a) * normed(b), axis)


def _reduce_dim_sum(x: Tensor, axis: tuple) -> Tensor:
    return apply(P.sum_p, (x,), {"axis": axis, "keepdim": False}, name="SumBackward1")


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12,
              out: Tensor | None = None) -> Tensor:
    """``input`` divided by its p-norm along ``dim`` (the norm clamped below at ``eps``).

    >>> import tracegrad as tg
    >>> normalize(tg.tensor([[3.0, 4.0]]))
    tensor([[0.6000, 0.8000]])
    """
    denom = T.clamp_min(T.norm(input, p, dim, keepdim=True), eps).expand_as(input)
    result = input / denom
    if out is None:
        return result
    out.copy_(result)
    return out


# ==== structural ops (opsb): normalize, one_hot, cdist, unfold/fold, transposed conv,
# embedding_bag ====

def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """(..., num_classes) int64 with a one at each entry's class; num_classes=-1: the
    largest class + 1 (read from the data)."""
    if tensor.dtype is not dtypes.int64:
        raise RuntimeError("one_hot is only applicable to index tensor of type LongTensor.")
    if num_classes == -1:
        values = tensor._concrete("one_hot(num_classes=-1)")
        if values.size == 0:
            raise RuntimeError("Can not infer total number of classes from empty tensor.")
        num_classes = int(values.max()) + 1
    if _eager() and tensor.numel():
        values = tensor._data
        if values.min() < 0:
            raise RuntimeError("Class values must be non-negative.")
        if values.max() >= num_classes:
            raise RuntimeError("Class values must be smaller than num_classes.")
    hit = T.eq(T.unsqueeze(tensor, -1), T.arange(num_classes))
    return T.cast(hit, dtypes.int64)


def _im2col_weight(c: int, kernel: tuple, dtype) -> Tensor:
    """(C*K, 1, *kernel) one-hot kernels: output channel c*K + k copies input channel c at
    kernel offset k (im2col's channel order)."""
    k = math.prod(kernel)
    eye = np.eye(k, dtype=dtype.np).reshape((k, 1) + tuple(kernel))
    w = Tensor._make(np.ascontiguousarray(np.tile(eye, (c, 1) + (1,) * len(kernel))))
    if trace_state.current is not None:
        trace_state.current.constant(w)
    return w


def _fold_params(kernel_size, dilation, padding, stride):
    return tuple(_ntuple(v, 2, what) for v, what in ((kernel_size, "kernel_size"),
                                                     (dilation, "dilation"),
                                                     (padding, "padding"), (stride, "stride")))


def unfold(input: Tensor, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """im2col: (N, C, H, W) -> (N, C * kh * kw, L), every kh x kw block as a column."""
    if input.ndim not in (3, 4):
        raise NotImplementedError(f"Input Error: Only 3D or 4D input Tensors are supported "
                                  f"(got {input.ndim}D)")
    x = T.unsqueeze(input, 0) if input.ndim == 3 else input
    kernel, dil, pad, st = _fold_params(kernel_size, dilation, padding, stride)
    c = x.shape[1]
    w = _im2col_weight(c, kernel, x.dtype)
    cols = T._conv(x, w, stride=st, padding=tuple((q, q) for q in pad), dilation=dil,
                   lhs_dilation=(1, 1), groups=c)
    shape = (x.shape[0], cols.shape[1], cols.shape[2] * cols.shape[3])[input.ndim == 3:]
    return T._not_a_view(apply(P.reshape_p, (cols,), {"shape": shape}, name="Im2ColBackward0"))


class _Aval:
    """A shape and dtype (what the conv VJP rule reads of the input it transposes)."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype, self.ndim = tuple(shape), dtype, len(shape)


def _conv_transpose(g: Tensor, weight: Tensor, out_shape: tuple, stride, padding, dilation,
                    groups: int) -> Tensor:
    """The transposed convolution of ``g`` (the conv primitive's input VJP): out_shape is
    the (N, C, *spatial) of the convolution's input."""
    return P._conv_vjp_x(g, None, _Aval(out_shape, g.dtype), weight, stride=tuple(stride),
                         padding=tuple((q, q) for q in padding), dilation=tuple(dilation),
                         lhs_dilation=(1,) * len(stride), groups=groups)


def fold(input: Tensor, output_size, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """col2im: (N, C * kh * kw, L) -> (N, C, H, W), summing overlapping blocks (unfold's
    adjoint)."""
    if input.ndim not in (2, 3):
        raise NotImplementedError(f"Input Error: Only unbatched (2D) or batched (3D) input "
                                  f"Tensors are supported (got {input.ndim}D)")
    x = T.unsqueeze(input, 0) if input.ndim == 2 else input
    size = _ntuple(output_size, 2, "output_size")
    kernel, dil, pad, st = _fold_params(kernel_size, dilation, padding, stride)
    k = math.prod(kernel)
    if x.shape[1] % k:
        raise RuntimeError(f"Expected size of input's dimension 1 to be divisible by the product "
                           f"of kernel_size, but got input.size(1)={x.shape[1]} and "
                           f"kernel_size=({kernel[0]}, {kernel[1]}).")
    blocks = [(size[i] + 2 * pad[i] - dil[i] * (kernel[i] - 1) - 1) // st[i] + 1 for i in (0, 1)]
    if blocks[0] * blocks[1] != x.shape[2]:
        raise RuntimeError(
            f"Given output_size=({size[0]}, {size[1]}), kernel_size=({kernel[0]}, {kernel[1]}), "
            f"dilation=({dil[0]}, {dil[1]}), padding=({pad[0]}, {pad[1]}), stride=({st[0]}, "
            f"{st[1]}), expected size of input's dimension 2 to match the calculated number of "
            f"sliding blocks {blocks[0]} * {blocks[1]} = {blocks[0] * blocks[1]}, but got "
            f"input.size(2)={x.shape[2]}.")
    c = x.shape[1] // k
    cols = T.reshape(x, (x.shape[0], x.shape[1], blocks[0], blocks[1]))
    out = _conv_transpose(cols, _im2col_weight(c, kernel, x.dtype), (x.shape[0], c) + size,
                          st, pad, dil, c)
    if input.ndim == 2:
        out = T._not_a_view(apply(P.reshape_p, (out,), {"shape": tuple(out.shape[1:])}))
    return T._named(out, "Col2ImBackward0")


def _conv_transpose_nd(nsp, input, weight, bias, stride, padding, output_padding, groups,
                       dilation):
    _check_conv_dtypes(input, weight, bias)
    x, unbatched = _batched(input, nsp, f"conv_transpose{nsp}d")
    stride = _ntuple(stride, nsp, "stride")
    padding = _ntuple(padding, nsp, "padding")
    output_padding = _ntuple(output_padding, nsp, "output_padding")
    dilation = _ntuple(dilation, nsp, "dilation")
    if weight.ndim != nsp + 2:
        raise RuntimeError(f"Expected {nsp + 2}-dimensional input and weight for {nsp}-d "
                           f"convolution, but got input of size {list(x.shape)} and weight of "
                           f"size {list(weight.shape)}")
    if x.shape[1] != weight.shape[0]:
        raise RuntimeError(f"Given transposed=1, weight of size {list(weight.shape)}, expected "
                           f"input{list(x.shape)} to have {weight.shape[0]} channels, but got "
                           f"{x.shape[1]} channels instead")
    for op, s, d in zip(output_padding, stride, dilation, strict=True):
        if op >= s and op >= d:
            raise RuntimeError("output padding must be smaller than either stride or dilation, "
                               f"but got output_padding_height: {output_padding[0]} "
                               f"output_padding_width: {output_padding[-1]} stride_height: "
                               f"{stride[0]} stride_width: {stride[-1]} dilation_height: "
                               f"{dilation[0]} dilation_width: {dilation[-1]}")
    cout = weight.shape[1] * groups
    sp = tuple((n - 1) * s - 2 * q + d * (k - 1) + op + 1 for n, s, q, d, k, op in
               zip(x.shape[2:], stride, padding, dilation, weight.shape[2:], output_padding,
                   strict=True))
    out = _conv_transpose(x, weight, (x.shape[0], cout) + sp, stride, padding, dilation, groups)
    if bias is not None:
        out = _binop(P.add_p, out, T.reshape(bias, (cout,) + (1,) * nsp), "ConvolutionBackward0")
    return T.squeeze(out, 0) if unbatched else out


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1) -> Tensor:
    """The transposed 1-d convolution (conv1d's input gradient); weight (C_in, C_out/groups, k)."""
    return _conv_transpose_nd(1, input, weight, bias, stride, padding, output_padding, groups,
                              dilation)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1) -> Tensor:
    """The transposed 2-d convolution ("deconvolution"): conv2d's gradient with respect to its
    input, made by the same ``conv`` primitive (input-dilated by the stride)."""
    return _conv_transpose_nd(2, input, weight, bias, stride, padding, output_padding, groups,
                              dilation)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1) -> Tensor:
    """The transposed 3-d convolution."""
    return _conv_transpose_nd(3, input, weight, bias, stride, padding, output_padding, groups,
                              dilation)


__all__ += ["normalize", "one_hot", "unfold", "fold", "conv_transpose1d", "conv_transpose2d",
            "conv_transpose3d"]


# ---- interpolate / upsampling (opsb) --------------------------------------------------
#
# Separable: each spatial dim is resampled in turn by index_select at the source taps,
# weighted by constant coefficients (PyTorch's source-coordinate rules: half-pixel or
# align_corners, the scale from scale_factor unless recomputed), so the gradient is the
# transposed resampling, and compiled code gathers on the device.

_INTERP_DIMS = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}
_INTERP_NAMES = {"nearest": "UpsampleNearest{}DBackward0",
                 "nearest-exact": "UpsampleNearestExact{}DBackward0",
                 "linear": "UpsampleLinear1DBackward0", "bilinear": "UpsampleBilinear2DBackward0",
                 "bicubic": "UpsampleBicubic2DBackward0",
                 "trilinear": "UpsampleTrilinear3DBackward0"}


def _const_array(a: np.ndarray) -> Tensor:
    t = Tensor._make(a)
    if trace_state.current is not None:
        trace_state.current.constant(t)
    return t


def _cubic_weights(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    def near(x):   # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):    # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], -1)


def _resample_taps(n_in: int, n_out: int, mode: str, align_corners: bool, scale):
    """(indices (n_out, taps), weights (n_out, taps)) for one spatial dim."""
    dst = np.arange(n_out, dtype=np.float64)
    if mode in ("nearest", "nearest-exact"):
        s = (1.0 / scale) if scale is not None else n_in / n_out
        off = 0.5 if mode == "nearest-exact" else 0.0
        src = np.minimum(np.floor((dst + off) * s).astype(np.int64), n_in - 1)
        return src[:, None], np.ones((n_out, 1))
    if align_corners:
        s = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        src = dst * s
    else:
        s = (1.0 / scale) if scale is not None else n_in / n_out
        src = (dst + 0.5) * s - 0.5
        if mode != "bicubic":
            src = np.maximum(src, 0.0)
    base = np.floor(src)
    t = src - base
    base = base.astype(np.int64)
    if mode == "bicubic":
        idx = np.clip(base[:, None] + np.arange(-1, 3), 0, n_in - 1)
        return idx, _cubic_weights(t)
    idx = np.stack([np.minimum(base, n_in - 1), np.minimum(base + 1, n_in - 1)], -1)
    return idx, np.stack([1 - t, t], -1)


def _aa_filter(mode: str, x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    if mode == "bilinear":  # the triangle
        return np.where(x < 1.0, 1.0 - x, 0.0)
    a = -0.5  # Keys' cubic, as torch's (and Pillow's) antialiasing bicubic uses
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _resample_taps_aa(n_in: int, n_out: int, mode: str, align_corners: bool, scale):
    """Antialiased taps for one dim, as torch's separable AA kernels (Pillow's): each
    output averages the inputs under a filter widened by the downscaling factor,
    normalised to sum 1 (the unused taps of a short window get index 0, weight 0)."""
    if align_corners:
        s = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    else:
        s = (1.0 / scale) if scale is not None and scale > 0 else n_in / n_out
    half = 1.0 if mode == "bilinear" else 2.0  # the filter's support at scale 1
    support = half * s if s >= 1.0 else half
    inv = 1.0 / s if s >= 1.0 else 1.0
    center = s * (np.arange(n_out, dtype=np.float64) + 0.5)
    lo = np.maximum((center - support + 0.5).astype(np.int64), 0)
    hi = np.minimum((center + support + 0.5).astype(np.int64), n_in)
    width = int(np.max(hi - lo)) if n_out else 1
    j = np.arange(width)
    idx = lo[:, None] + j
    inside = j < (hi - lo)[:, None]
    w = np.where(inside, _aa_filter(mode, (idx - center[:, None] + 0.5) * inv), 0.0)
    total = w.sum(1, keepdims=True)
    w = np.where(total != 0, w / np.where(total != 0, total, 1.0), w)
    return np.where(inside, idx, 0), w


_AREA_POOLS = {1: adaptive_avg_pool1d, 2: adaptive_avg_pool2d, 3: adaptive_avg_pool3d}


def interpolate(input: Tensor, size=None, scale_factor=None, mode: str = "nearest",
                align_corners=None, recompute_scale_factor=None, antialias: bool = False):
    """Resize the spatial dims of (N, C, *spatial): nearest, nearest-exact, (bi/tri)linear,
    bicubic; as PyTorch computes source coordinates (align_corners, scale_factor,
    recompute_scale_factor).

    >>> import tracegrad as tg
    >>> interpolate(tg.tensor([[[0., 1.]]]), scale_factor=2, mode="linear")
    tensor([[[0.0000, 0.2500, 0.7500, 1.0000]]])
    """
    modes = ("nearest", "nearest-exact", "area") + tuple(_INTERP_DIMS)
    nsp = input.ndim - 2
    if mode not in modes or nsp not in (1, 2, 3):
        raise NotImplementedError(
            f"Input Error: Only 3D, 4D and 5D input Tensors supported (got {input.ndim}D) for "
            f"the modes: nearest | linear | bilinear | bicubic | trilinear | lanczos | area | "
            f"nearest-exact (got {mode})")
    if mode in ("nearest", "nearest-exact", "area"):
        if align_corners is not None:
            raise ValueError("align_corners option can only be set with the interpolating "
                             "modes: linear | bilinear | bicubic | trilinear")
    else:
        align_corners = bool(align_corners)
        if _INTERP_DIMS[mode] != nsp:
            raise NotImplementedError(f"Got {input.ndim}D input, but {mode} mode needs "
                                      f"{_INTERP_DIMS[mode] + 2}D input")
    if antialias and not (mode in ("bilinear", "bicubic") and input.ndim == 4):
        raise ValueError("Anti-alias option is restricted to bilinear, bicubic, and lanczos "
                         "modes and requires a 4-D tensor as input")
    if size is not None and scale_factor is not None:
        raise ValueError("only one of size or scale_factor should be defined")
    sp = tuple(input.shape[2:])
    if size is not None:
        out = (size,) * nsp if isinstance(size, int) else tuple(size)
        if len(out) != nsp:
            raise ValueError(f"Input and output must have the same number of spatial dimensions, "
                             f"but got input with spatial dimensions of {list(sp)} and output "
                             f"size of {tuple(size)}. Please provide input tensor in (N, C, d1, "
                             f"d2, ...,dK) format and output size in (o1, o2, ...,oK) format.")
        scales = (None,) * nsp
    elif scale_factor is not None:
        factors = ((float(scale_factor),) * nsp if isinstance(scale_factor, (int, float))
                   else tuple(float(f) for f in scale_factor))
        if len(factors) != nsp:
            raise ValueError(f"Input and scale_factor must have the same number of spatial "
                             f"dimensions, but got input with spatial dimensions of {list(sp)} "
                             f"and scale_factor of shape {tuple(scale_factor)}. Please provide "
                             f"input tensor in (N, C, d1, d2, ...,dK) format and scale_factor in "
                             f"(s1, s2, ...,sK) format.")
        out = tuple(int(math.floor(n * f)) for n, f in zip(sp, factors, strict=True))
        scales = (None,) * nsp if recompute_scale_factor else factors
    else:
        raise ValueError("either size or scale_factor should be defined")
    if mode == "area":  # the mean over each output cell's window: adaptive average pooling
        return _AREA_POOLS[nsp](input, out)
    if any(n <= 0 for n in sp + out):
        names = ("D", "H", "W")[3 - nsp:]
        shown = [", ".join(f"{k}: {v}" for k, v in zip(names, sizes, strict=True))
                 for sizes in (sp, out)]
        joint = " and output" if nsp == 1 else " output"  # (torch's 1-d kernel words it so)
        raise RuntimeError(f"Input and output sizes should be greater than 0, but got input "
                           f"({shown[0]}){joint} ({shown[1]})")
    taps_of = _resample_taps_aa if antialias else _resample_taps
    x = input
    for i in range(nsp):
        idx, w = taps_of(sp[i], out[i], mode, bool(align_corners), scales[i])
        axis = 2 + i
        taps = T.index_select(x, axis, _const_array(idx.reshape(-1)))
        shape = tuple(x.shape[:axis]) + idx.shape + tuple(x.shape[axis + 1:])
        taps = T.reshape(taps, shape)
        if idx.shape[1] == 1:
            x = T.squeeze(taps, axis + 1)
        else:
            wt = _const_array(w.astype(x.dtype.np).reshape(idx.shape + (1,) * (nsp - 1 - i)))
            x = T.sum(taps * wt, axis + 1)
    name = _INTERP_NAMES[mode].format(nsp)
    if antialias:
        name = name.replace("DBackward0", "DAaBackward0")
    return T._named(x, name) if x is not input else T._named(T.clone(x), name)


def upsample(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    return interpolate(input, size, scale_factor, mode, align_corners)


__all__ += ["interpolate", "upsample"]


# ---- max_unpool (opsb): scatter the pooled values back to their indices ----------------

def _max_unpool(nsp, input, indices, kernel_size, stride, padding, output_size):
    fn = f"max_unpool{nsp}d"
    k = _ntuple(kernel_size, nsp, "kernel_size")
    s = k if stride is None else _ntuple(stride, nsp, "stride")
    p = _ntuple(padding, nsp, "padding")
    unbatched = input.ndim == nsp + 1
    x = T.unsqueeze(input, 0) if unbatched else input
    idx = T.unsqueeze(indices, 0) if unbatched else indices
    if x.ndim != nsp + 2 or tuple(idx.shape) != tuple(x.shape):
        raise RuntimeError(f"{fn}: Expected shape of indices to be same as that of the input "
                           f"tensor ({list(x.shape)}) but got indices tensor with shape: "
                           f"{list(idx.shape)}")
    default = tuple((n - 1) * st - 2 * q + kk for n, st, q, kk in
                    zip(x.shape[2:], s, p, k, strict=True))
    if output_size is None:
        out = default
    else:
        out = tuple(output_size)[-nsp:]
        for d, (o, lo) in enumerate(zip(out, default, strict=True)):
            if not lo - s[d] < o < lo + s[d]:
                raise ValueError(f'invalid output_size "{tuple(output_size)}" (dim {d} must be '
                                 f"between {lo - s[d]} and {lo + s[d]})")
    plane = math.prod(out)
    n, c = x.shape[:2]
    flat_idx = T.reshape(T.cast(idx, dtypes.int64), (n, c, -1))
    if _eager() and flat_idx.numel():
        bad = flat_idx._data[(flat_idx._data < 0) | (flat_idx._data >= plane)]
        if bad.size:
            raise RuntimeError(f"Found an invalid max index: {bad.flat[0]} (output volumes are "
                               f"of size {'x'.join(map(str, out))})")
    base = T.zeros((n, c, plane), dtype=x.dtype)
    placed = T._scatter(base, flat_idx, T.reshape(x, (n, c, -1)), 2)
    name = f"MaxUnpool{max(nsp, 2)}DBackward0"
    r = T._not_a_view(apply(P.reshape_p, (placed,), {"shape": (n, c) + out}, name=name))
    return T.squeeze(r, 0) if unbatched else r


def max_unpool1d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """The inverse of max_pool1d: values put back at their indices, zeros elsewhere."""
    x = T.unsqueeze(input, -2)
    out = None if output_size is None else tuple(output_size)[:-1] + (1, tuple(output_size)[-1])
    r = _max_unpool(2, x, T.unsqueeze(indices, -2), (1, _one(kernel_size)),
                    None if stride is None else (1, _one(stride)), (0, _one(padding)), out)
    return T.squeeze(r, -2)


def _one(v):
    return v if isinstance(v, int) else tuple(v)[0]


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """The inverse of max_pool2d(return_indices=True)."""
    return _max_unpool(2, input, indices, kernel_size, stride, padding, output_size)


def max_unpool3d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """The inverse of max_pool3d(return_indices=True)."""
    return _max_unpool(3, input, indices, kernel_size, stride, padding, output_size)


__all__ += ["max_unpool1d", "max_unpool2d", "max_unpool3d"]


# ---- embedding_bag (opsb): per-bag sums, means or maxima of embedding rows --------------

def embedding_bag(input: Tensor, weight: Tensor, offsets: Tensor | None = None, max_norm=None,
                  norm_type: float = 2, scale_grad_by_freq: bool = False, mode: str = "mean",
                  sparse: bool = False, per_sample_weights: Tensor | None = None,
                  include_last_offset: bool = False, padding_idx: int | None = None) -> Tensor:
    """(bags, D): each bag's rows of ``weight`` reduced by ``mode`` (sum, mean, max); bags
    are the rows of a 2-d input, or the runs of a 1-d input that ``offsets`` start. An
    empty bag gives zeros; ``padding_idx`` entries are left out.

    >>> import tracegrad as tg
    >>> embedding_bag(tg.tensor([0, 1, 1]), tg.eye(2), tg.tensor([0, 1]), mode="sum")
    tensor([[1., 0.],
            [0., 2.]])
    """
    if scale_grad_by_freq or sparse:
        raise NotImplementedError("embedding_bag: scale_grad_by_freq and sparse are not "
                                  "supported")
    if max_norm is not None:
        _no_grad_embedding_renorm_(weight, input, max_norm, norm_type)
    if mode not in ("sum", "mean", "max"):
        raise ValueError(f"mode has to be one of sum, mean or max, but got {mode}")
    if per_sample_weights is not None and mode != "sum":
        raise NotImplementedError(f"embedding_bag: per_sample_weights was not None. "
                                  f"per_sample_weights is only supported for mode='sum' (got "
                                  f"mode='{mode}'). Please open a feature request on GitHub.")
    if input.ndim == 2:
        if offsets is not None:
            raise ValueError("if input is 2D, then offsets has to be None, as input is treated "
                             "is a mini-batch of fixed length sequences. However, found offsets "
                             f"of type {_torch_class(offsets)}")
        bags, per = input.shape
        flat = T.reshape(input, (-1,))
        seg = count_seg = _const_array(np.repeat(np.arange(bags, dtype=np.int64), per))
        if per_sample_weights is not None:
            per_sample_weights = T.reshape(per_sample_weights, (-1,))
    elif input.ndim == 1:
        if offsets is None:
            raise ValueError("offsets has to be a 1D Tensor but got None")
        if offsets.ndim != 1:
            raise ValueError("offsets has to be a 1D Tensor")
        flat = input
        starts = offsets[:-1] if include_last_offset else offsets
        bags = starts.shape[0]
        # bag of entry j: how many bag starts after the first are at or before j
        pos = T.arange(flat.shape[0])
        seg = T.sum(T.ge(T.unsqueeze(pos, 1), T.unsqueeze(starts[1:], 0)), 1)
        count_seg = seg
        if include_last_offset:  # entries past the last offset are summed into no bag (but
            seg = T.where(T.lt(pos, offsets[-1]), seg, bags)  # PyTorch counts them in the
            # last bag's mean)
    else:
        raise ValueError(f"input has to be 1D or 2D Tensor, but got Tensor of dimension "
                         f"{input.ndim}")
    idx = T.cast(flat, dtypes.int64)
    d = weight.shape[1]
    rows = apply(P.getitem_p, (weight, idx), {"index": (P.TENSOR,)})
    keep = None
    if padding_idx is not None:
        keep = T.ne(idx, padding_idx % weight.shape[0])
        seg = T.where(keep, seg, bags)   # padding entries go to a spare bag, dropped below
        count_seg = T.where(keep, count_seg, bags)
    if per_sample_weights is not None:
        rows = rows * T.unsqueeze(per_sample_weights, 1)
    target = T.expand(T.unsqueeze(seg, 1), (seg.shape[0], d))
    base = T.zeros((bags + 1, d), dtype=weight.dtype)   # row ``bags``: the spare bag
    name = "EmbeddingBagBackward0"
    if mode == "max":
        out = T._scatter(base, target, rows, 0, "amax", include_self=False)
    else:
        out = T._scatter(base, target, rows, 0, "sum")
        if mode == "mean":
            ones = T.ones((seg.shape[0], 1), dtype=weight.dtype)
            count = T._scatter(T.zeros((bags + 1, 1), dtype=weight.dtype),
                               T.unsqueeze(count_seg, 1), ones, 0, "sum")
            out = out / T.clamp_min(count, 1.0)
    return apply(P.getitem_p, (out,), {"index": (slice(0, bags),)}, name=name)


def _torch_class(x) -> str:
    return "<class 'torch.Tensor'>" if isinstance(x, Tensor) else str(type(x))


__all__ += ["embedding_bag"]


# ==== attention (issue 13): scaled_dot_product_attention, multi_head_attention_forward ====

def _c_type(dtype) -> str:
    return T._C_TYPE_NAMES.get(dtype.name, dtype.name)


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor,
                                 attn_mask: Tensor | None = None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> Tensor:
    """softmax(query @ key^T * scale + mask) @ value, over (..., L, E) x (..., S, E) x
    (..., S, Ev), as one ``attention`` primitive (NOTE: [One attention primitive]).

    ``attn_mask``: bool (True: may attend) or a float of query's dtype added to the scores,
    broadcast to (..., L, S); ``is_causal``: query i sees keys 0..i; ``dropout_p``: applied
    to the probabilities (always, as torch: pass 0.0 in eval); ``enable_gqa``: key and value
    may have fewer heads (dim -3) than query. A row with no key allowed gives zeros.

    >>> import tracegrad as tg
    >>> q = k = v = tg.ones(2, 3, 4, 8)
    >>> scaled_dot_product_attention(q, k, v, is_causal=True).shape
    torch.Size([2, 3, 4, 8])
    """
    q, k, v = query, key, value
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise RuntimeError(f"Expected query, key, and value to all be  at least 2 dimensional, "
                           f"but got query.dim: {q.ndim} key.dim: {k.ndim} and value.dim: "
                           f"{v.ndim} instead.")
    if not (q.dtype is k.dtype is v.dtype):
        raise RuntimeError(f"Expected query, key, and value to have the same dtype, but got "
                           f"query.dtype: {_c_type(q.dtype)} key.dtype: {_c_type(k.dtype)} and "
                           f"value.dtype: {_c_type(v.dtype)} instead.")
    if not q.dtype.is_floating_point:
        raise RuntimeError(f"scaled_dot_product_attention: expected query, key and value to be "
                           f"floating point, but got {_c_type(q.dtype)}")
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {dropout_p}")
    if q.shape[-1] != k.shape[-1]:
        raise RuntimeError(f"scaled_dot_product_attention: query and key must have the same "
                           f"embedding size (last dim), but got query.size(-1): {q.shape[-1]} "
                           f"and key.size(-1): {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise RuntimeError(f"scaled_dot_product_attention: key and value must have the same "
                           f"sequence length (dim -2), but got key.size(-2): {k.shape[-2]} and "
                           f"value.size(-2): {v.shape[-2]}")
    gqa = False
    if enable_gqa and q.ndim >= 3 and (k.shape[-3] != q.shape[-3] or v.shape[-3] != q.shape[-3]):
        if k.ndim < 3 or v.ndim < 3 or q.shape[-3] % k.shape[-3] or q.shape[-3] % v.shape[-3]:
            raise RuntimeError("Number of heads in key and value must divide the number of "
                               "heads in query")
        gqa = True
    out_shape, _ = P._attention_shape(q, k, v, scale=1.0, is_causal=False, mask=None,
                                      dropout_p=0.0, gqa=gqa)
    scores = out_shape[:-1] + (k.shape[-2],)
    args = [q, k, v]
    mask = None
    if attn_mask is not None:
        if is_causal:
            raise RuntimeError("_scaled_dot_product_attention: Explicit attn_mask should not be "
                               "set when is_causal=True")
        if attn_mask.dtype is dtypes.bool_:
            mask = "bool"
        elif attn_mask.dtype is q.dtype:
            mask = "float"
        else:
            raise RuntimeError(f"Expected attn_mask dtype to be bool or float or to match query "
                               f"dtype, but got attn_mask.dtype: {_c_type(attn_mask.dtype)} and  "
                               f"query.dtype: {_c_type(q.dtype)} instead.")
        P.broadcast_shapes(scores, tuple(attn_mask.shape))
        args.append(attn_mask)
    dropout_p = float(dropout_p)
    if dropout_p == 1.0:    # torch's dropout draws nothing for p = 1
        args.append(T.zeros(scores, dtype=dtypes.bool_))
    elif dropout_p > 0.0:   # the CPU math path's at::dropout: bernoulli_(1 - p) of the scores
        args.append(T.rand(*scores, dtype=dtypes.float64) < 1.0 - dropout_p)
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    return apply(P.attention_p, tuple(args),
                 {"scale": float(scale), "is_causal": bool(is_causal), "mask": mask,
                  "dropout_p": dropout_p, "gqa": gqa})


def _canonical_mask(mask: Tensor | None, mask_name: str, other_type, other_name: str,
                    target_type, check_other: bool = True) -> Tensor | None:
    """A bool mask (True: masked out) as a float one (-inf there, 0 elsewhere), as torch's
    ``F._canonical_mask``; a float mask as it is."""
    if mask is None:
        return None
    if mask.dtype is not dtypes.bool_ and not mask.dtype.is_floating_point:
        raise AssertionError(f"only bool and floating types of {mask_name} are supported")
    if check_other and other_type is not None and mask.dtype is not other_type:
        warnings.warn(f"Support for mismatched {mask_name} and {other_name} is deprecated. "
                      f"Use same type for both instead.", stacklevel=3)
    if mask.dtype is dtypes.bool_:
        return T.where(mask, T.full((), -math.inf, dtype=target_type),
                       T.zeros((), dtype=target_type))
    return mask


def _none_or_dtype(input: Tensor | None):
    return None if input is None else input.dtype


def _mha_shape_check(query, key, value, key_padding_mask, attn_mask, num_heads) -> bool:
    if query.ndim == 3:
        if key.ndim != 3 or value.ndim != 3:
            raise AssertionError(f"For batched (3-D) `query`, expected `key` and `value` to be "
                                 f"3-D but found {key.ndim}-D and {value.ndim}-D tensors "
                                 f"respectively")
        if key_padding_mask is not None and key_padding_mask.ndim != 2:
            raise AssertionError(f"For batched (3-D) `query`, expected `key_padding_mask` to be "
                                 f"`None` or 2-D but found {key_padding_mask.ndim}-D tensor "
                                 f"instead")
        if attn_mask is not None and attn_mask.ndim not in (2, 3):
            raise AssertionError(f"For batched (3-D) `query`, expected `attn_mask` to be `None`, "
                                 f"2-D or 3-D but found {attn_mask.ndim}-D tensor instead")
        return True
    if query.ndim == 2:
        if key.ndim != 2 or value.ndim != 2:
            raise AssertionError(f"For unbatched (2-D) `query`, expected `key` and `value` to be "
                                 f"2-D but found {key.ndim}-D and {value.ndim}-D tensors "
                                 f"respectively")
        if key_padding_mask is not None and key_padding_mask.ndim != 1:
            raise AssertionError(f"For unbatched (2-D) `query`, expected `key_padding_mask` to "
                                 f"be `None` or 1-D but found {key_padding_mask.ndim}-D tensor "
                                 f"instead")
        if attn_mask is not None:
            if attn_mask.ndim not in (2, 3):
                raise AssertionError(f"For unbatched (2-D) `query`, expected `attn_mask` to be "
                                     f"`None`, 2-D or 3-D but found {attn_mask.ndim}-D tensor "
                                     f"instead")
            expected = (num_heads, query.shape[0], key.shape[0])
            if attn_mask.ndim == 3 and tuple(attn_mask.shape) != expected:
                raise AssertionError(f"Expected `attn_mask` shape to be {expected} but got "
                                     f"{attn_mask.shape}")
        return False
    raise AssertionError(f"query should be unbatched 2D or batched 3D tensor but received "
                         f"{query.ndim}-D query tensor")


def multi_head_attention_forward(
        query: Tensor, key: Tensor, value: Tensor, embed_dim_to_check: int, num_heads: int,
        in_proj_weight: Tensor | None, in_proj_bias: Tensor | None, bias_k: Tensor | None,
        bias_v: Tensor | None, add_zero_attn: bool, dropout_p: float, out_proj_weight: Tensor,
        out_proj_bias: Tensor | None, training: bool = True,
        key_padding_mask: Tensor | None = None, need_weights: bool = True,
        attn_mask: Tensor | None = None, use_separate_proj_weight: bool = False,
        q_proj_weight: Tensor | None = None, k_proj_weight: Tensor | None = None,
        v_proj_weight: Tensor | None = None, static_k: Tensor | None = None,
        static_v: Tensor | None = None, average_attn_weights: bool = True,
        is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
    """torch's ``F.multi_head_attention_forward``: sequence-first (L, N, E) inputs (or
    unbatched (L, E)); masks True/-inf where a key is left out. With ``need_weights`` the
    scores are an explicit softmax (returned, averaged over heads if asked); without, one
    ``scaled_dot_product_attention``."""
    is_batched = _mha_shape_check(query, key, value, key_padding_mask, attn_mask, num_heads)
    if not is_batched:
        query, key, value = T.unsqueeze(query, 1), T.unsqueeze(key, 1), T.unsqueeze(value, 1)
        if key_padding_mask is not None:
            key_padding_mask = T.unsqueeze(key_padding_mask, 0)
    tgt_len, bsz, embed_dim = query.shape
    src_len = key.shape[0]
    key_padding_mask = _canonical_mask(key_padding_mask, "key_padding_mask",
                                       _none_or_dtype(attn_mask), "attn_mask", query.dtype)
    if is_causal and attn_mask is None:
        raise RuntimeError("Need attn_mask if specifying the is_causal hint. You may use the "
                           "Transformer module method `generate_square_subsequent_mask` to "
                           "create this mask.")
    if is_causal and key_padding_mask is None and not need_weights:
        attn_mask = None   # the hint: sdpa's own causal mask
    else:
        attn_mask = _canonical_mask(attn_mask, "attn_mask", None, "", query.dtype,
                                    check_other=False)
        if key_padding_mask is not None:
            is_causal = False
    if embed_dim != embed_dim_to_check:
        raise AssertionError(f"was expecting embedding dimension of {embed_dim_to_check}, but "
                             f"got {embed_dim}")
    head_dim = embed_dim // num_heads
    if head_dim * num_heads != embed_dim:
        raise AssertionError(f"embed_dim {embed_dim} not divisible by num_heads {num_heads}")
    if use_separate_proj_weight:
        if tuple(key.shape[:2]) != tuple(value.shape[:2]):
            raise AssertionError(f"key's sequence and batch dims {key.shape[:2]} do not match "
                                 f"value's {value.shape[:2]}")
        for name, w in (("q", q_proj_weight), ("k", k_proj_weight), ("v", v_proj_weight)):
            if w is None:
                raise AssertionError(f"use_separate_proj_weight is True but {name}_proj_weight "
                                     f"is None")
        b_q = b_k = b_v = None
        if in_proj_bias is not None:
            b_q, b_k, b_v = T.chunk(in_proj_bias, 3)
        q = linear(query, q_proj_weight, b_q)
        k = linear(key, k_proj_weight, b_k)
        v = linear(value, v_proj_weight, b_v)
    else:
        if tuple(key.shape) != tuple(value.shape):
            raise AssertionError(f"key shape {key.shape} does not match value shape "
                                 f"{value.shape}")
        if in_proj_weight is None:
            raise AssertionError("use_separate_proj_weight is False but in_proj_weight is None")
        if query is key and key is value:   # self-attention: one projection, split
            q, k, v = T.chunk(linear(query, in_proj_weight, in_proj_bias), 3, -1)
        else:
            w_q, w_k, w_v = T.chunk(in_proj_weight, 3)
            b_q = b_k = b_v = None
            if in_proj_bias is not None:
                b_q, b_k, b_v = T.chunk(in_proj_bias, 3)
            q, k, v = linear(query, w_q, b_q), linear(key, w_k, b_k), linear(value, w_v, b_v)
    if attn_mask is not None:
        if attn_mask.ndim == 2:
            if tuple(attn_mask.shape) != (tgt_len, src_len):
                raise RuntimeError(f"The shape of the 2D attn_mask is {attn_mask.shape}, but "
                                   f"should be {(tgt_len, src_len)}.")
            attn_mask = T.unsqueeze(attn_mask, 0)
        elif tuple(attn_mask.shape) != (bsz * num_heads, tgt_len, src_len):
            raise RuntimeError(f"The shape of the 3D attn_mask is {attn_mask.shape}, but should "
                               f"be {(bsz * num_heads, tgt_len, src_len)}.")
    if bias_k is not None and bias_v is not None:
        if static_k is not None:
            raise AssertionError("bias cannot be added to static key.")
        if static_v is not None:
            raise AssertionError("bias cannot be added to static value.")
        k = T.cat([k, T.expand(bias_k, (1, bsz, embed_dim))])
        v = T.cat([v, T.expand(bias_v, (1, bsz, embed_dim))])
        if attn_mask is not None:
            attn_mask = pad(attn_mask, (0, 1))
        if key_padding_mask is not None:
            key_padding_mask = pad(key_padding_mask, (0, 1))
    elif bias_k is not None:
        raise AssertionError("bias_k is set but bias_v is None")
    elif bias_v is not None:
        raise AssertionError("bias_v is set but bias_k is None")
    # (L, N, E) -> (N * heads, L, head_dim)
    q = T.transpose(T.reshape(q, (tgt_len, bsz * num_heads, head_dim)), 0, 1)
    k = (T.transpose(T.reshape(k, (k.shape[0], bsz * num_heads, head_dim)), 0, 1)
         if static_k is None else _static_kv("static_k", static_k, bsz * num_heads, head_dim))
    v = (T.transpose(T.reshape(v, (v.shape[0], bsz * num_heads, head_dim)), 0, 1)
         if static_v is None else _static_kv("static_v", static_v, bsz * num_heads, head_dim))
    if add_zero_attn:
        k = T.cat([k, T.zeros((bsz * num_heads, 1, head_dim), dtype=k.dtype)], 1)
        v = T.cat([v, T.zeros((bsz * num_heads, 1, head_dim), dtype=v.dtype)], 1)
        if attn_mask is not None:
            attn_mask = pad(attn_mask, (0, 1))
        if key_padding_mask is not None:
            key_padding_mask = pad(key_padding_mask, (0, 1))
    src_len = k.shape[1]
    if key_padding_mask is not None:
        if key_padding_mask.shape[0] != bsz:
            raise AssertionError(f"Expected key_padded_mask.shape[0] to be {bsz}, but got "
                                 f"{key_padding_mask.shape[0]}")
        if key_padding_mask.shape[1] != src_len:
            raise AssertionError(f"Expected key_padded_mask.shape[1] to be {src_len}, but got "
                                 f"{key_padding_mask.shape[1]}")
        kpm = T.reshape(T.expand(T.reshape(key_padding_mask, (bsz, 1, 1, src_len)),
                                 (bsz, num_heads, 1, src_len)), (bsz * num_heads, 1, src_len))
        attn_mask = kpm if attn_mask is None else attn_mask + kpm
    if not training:
        dropout_p = 0.0
    if need_weights:
        if is_causal and attn_mask is None:
            raise AssertionError("FIXME: is_causal not implemented for need_weights")
        q_scaled = q * math.sqrt(1.0 / float(head_dim))
        if attn_mask is not None:
            weights = T.baddbmm(attn_mask, q_scaled, T.transpose(k, -2, -1))
        else:
            weights = T.bmm(q_scaled, T.transpose(k, -2, -1))
        weights = softmax(weights, -1)
        if dropout_p > 0.0:
            weights = dropout(weights, p=dropout_p)
        out = T.bmm(weights, v)
        out = T.reshape(T.transpose(out, 0, 1), (tgt_len * bsz, embed_dim))
        out = T.reshape(linear(out, out_proj_weight, out_proj_bias), (tgt_len, bsz, embed_dim))
        weights = T.reshape(weights, (bsz, num_heads, tgt_len, src_len))
        if average_attn_weights:
            weights = T.mean(weights, 1)
        if not is_batched:
            out, weights = T.squeeze(out, 1), T.squeeze(weights, 0)
        return out, weights
    if attn_mask is not None:
        if attn_mask.shape[0] == 1 and attn_mask.ndim == 3:
            attn_mask = T.unsqueeze(attn_mask, 0)
        else:
            attn_mask = T.reshape(attn_mask, (bsz, num_heads, -1, src_len))
    q = T.reshape(q, (bsz, num_heads, tgt_len, head_dim))
    k = T.reshape(k, (bsz, num_heads, src_len, head_dim))
    v = T.reshape(v, (bsz, num_heads, src_len, head_dim))
    out = scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal)
    out = T.reshape(T.permute(out, (2, 0, 1, 3)), (bsz * tgt_len, embed_dim))
    out = T.reshape(linear(out, out_proj_weight, out_proj_bias), (tgt_len, bsz, embed_dim))
    if not is_batched:
        out = T.squeeze(out, 1)
    return out, None


def _static_kv(name: str, t: Tensor, rows: int, head_dim: int) -> Tensor:
    if t.shape[0] != rows:
        raise AssertionError(f"expecting {name}.size(0) of {rows}, but got {t.shape[0]}")
    if t.shape[2] != head_dim:
        raise AssertionError(f"expecting {name}.size(2) of {head_dim}, but got {t.shape[2]}")
    return t


__all__ += ["scaled_dot_product_attention", "multi_head_attention_forward"]
# ==== end of attention ====
