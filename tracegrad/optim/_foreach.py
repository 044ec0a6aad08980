"""Eager optimizer updates as in-place NumPy kernels (perf, issue 14).

NOTE: [Eager optimizer kernels]. ``step()`` is written once with tracegrad's in-place
tensor ops, so a traced step records it (optimizer.py). Run eagerly, that form costs a
dozen taped-op dispatches per parameter (Adam: ~15), while the update itself is a few
NumPy loops: most of a small model's optimizer time was dispatch. Eagerly, and only then,
``Adam.step`` and ``SGD.step`` hand each parameter's arrays to the kernels here, which do
the same arithmetic in the same order and dtype with NumPy ``out=`` calls (so the results
are bit-identical to the taped form, and to PyTorch's formulas as far as that form is),
then bump each written tensor's version counter as many times as the taped form's
in-place ops did (the checks of saved tensors read them).

``plain(*tensors)`` decides: no tracer, no per-op hooks (forward AD, profiler, anomaly
mode), plain (non-view) tensors holding float32/float64 NumPy arrays that can be written
(``make_writable`` drops a compiled call's device copy). Anything else takes the taped
form. ``USE_KERNELS`` turns the kernels off (tests compare both forms).
"""
from __future__ import annotations

import numpy as np

from .._storage import make_writable
from ..autograd._op_hooks import state as _op_state
from ..tensor import Tensor, _View, trace_state

USE_KERNELS = True
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def eager() -> bool:
    """Kernels may run at all: not tracing, no per-op hooks, not turned off. Checked before
    step() reads anything for them, so a traced step reads only what its taped form reads
    (a group value read while tracing is baked in and guarded)."""
    return USE_KERNELS and trace_state.current is None and not _op_state.active


def plain(params: list, *more: list) -> bool:
    """Whether the kernels may update these tensors (lists of Tensors, None skipped)."""
    if not USE_KERNELS or trace_state.current is not None or _op_state.active:
        return False
    for group in (params, *more):
        for t in group:
            if t is None:
                continue
            if t.__class__ is _View or not isinstance(t, Tensor) or t._fw_grad is not None:
                return False
            data = t._data
            if data.__class__ is not np.ndarray or data.dtype not in _FLOATS:
                return False
    return True


def alike(p: Tensor, *others) -> bool:
    """The arrays of ``others`` (None skipped) have ``p``'s shape and dtype."""
    d = p._data
    return all(t is None or (t._data.dtype == d.dtype and t._data.shape == d.shape)
               for t in others)


def numbers(group: dict, keys) -> bool:
    """The group's hyperparameters ``keys`` are Python numbers (a Tensor ``lr``, as torch
    allows, takes the taped form)."""
    for k in keys:
        v = dict.__getitem__(group, k)
        for x in (v if isinstance(v, tuple) else (v,)):
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                return False
    return True


def writable(tensors) -> bool:
    """make_writable on every array the kernels will write; False if one cannot be."""
    return all(make_writable(t._data) for t in tensors)


def bump(t: Tensor, n: int = 1) -> None:
    t._vc[0] += n


def adam(p, grad, m, v, v_max, step, *, lr, beta1, beta2, eps, weight_decay, decoupled,
         maximize) -> None:
    """One Adam/AdamW update of ``p`` (Tensors; ``v_max`` None without amsgrad), as
    ``Adam.step``'s taped form computes it, op for op."""
    P, G, M, V = p._data, grad._data, m._data, v._data
    dt = P.dtype
    S = step._data
    np.add(S, 1, out=S)
    bump(step)
    g = np.negative(G) if maximize else G
    if weight_decay != 0:
        if decoupled:
            np.multiply(P, 1 - lr * weight_decay, out=P)
            bump(p)
        else:
            g = g + P * weight_decay
    # _lerp_(m, g, 1 - beta1)
    w = 1 - beta1
    tmp = np.subtract(g, M, out=np.empty_like(M))  # (an array for 0-d parameters too)
    if abs(w) < 0.5:
        np.multiply(tmp, w, out=tmp)
        np.add(M, tmp, out=M)
    else:
        np.multiply(tmp, 1 - w, out=tmp)
        np.subtract(g, tmp, out=M)
    bump(m)
    # v.mul_(beta2).add_(g * (1 - beta2) * g)
    np.multiply(V, beta2, out=V)
    np.multiply(g, 1 - beta2, out=tmp)
    np.multiply(tmp, g, out=tmp)
    np.add(V, tmp, out=V)
    bump(v, 2)
    t = S.astype(np.float64)
    # (lr / x is rdiv: lr * reciprocal(x), as the taped form and PyTorch record it)
    step_size = (np.divide(1.0, 1 - beta1 ** t) * lr).astype(dt)
    bc2_sqrt = np.sqrt(1 - beta2 ** t).astype(dt)
    if v_max is not None:
        VM = v_max._data
        np.maximum(VM, V, out=VM)
        bump(v_max)
        V = VM
    # denom = (v.sqrt() / bias_correction2_sqrt).add_(eps); p.sub_(m * step_size / denom)
    denom = np.sqrt(V, out=np.empty_like(V))
    np.divide(denom, bc2_sqrt, out=denom)
    np.add(denom, eps, out=denom)
    np.multiply(M, step_size, out=tmp)
    np.divide(tmp, denom, out=tmp)
    np.subtract(P, tmp, out=P)
    bump(p)


def sgd(p, grad, buf, *, lr, momentum, dampening, weight_decay, nesterov, maximize):
    """One SGD update of ``p`` as ``SGD.step``'s taped form computes it. ``buf`` is the
    momentum buffer Tensor (None: no momentum, or its first step: returns the new buffer's
    array, a copy of the step's gradient)."""
    P, G = p._data, grad._data
    g = np.negative(G) if maximize else G
    if weight_decay != 0:
        g = g + P * weight_decay
    new_buf = None
    if momentum != 0:
        if buf is None:
            new_buf = np.array(g, dtype=P.dtype)  # (a 0-d array, not a NumPy scalar)
            b = new_buf
        else:
            b = buf._data
            np.multiply(b, momentum, out=b)
            np.add(b, g * (1 - dampening), out=b)
            bump(buf, 2)
        g = g + b * momentum if nesterov else b
    np.add(P, g * -lr, out=P)
    bump(p)
    return new_buf
