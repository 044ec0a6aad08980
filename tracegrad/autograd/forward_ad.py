"""Forward-mode AD: dual tensors whose tangents ride along every primitive call.

>>> import tracegrad as tg
>>> import tracegrad.autograd.forward_ad as fwAD
>>> x, v = tg.tensor([1., 2.]), tg.tensor([1., 0.])
>>> with fwAD.dual_level():
...     y = (fwAD.make_dual(x, v) ** 2).sum()
...     fwAD.unpack_dual(y).tangent
tensor(2.)

A tangent is stored on the tensor (``_fw_grad``). While a dual level is open,
``tensor.apply`` takes the hooked path (``_op_hooks``) and calls ``propagate``
after each primitive: the output's tangent is the primitive's JVP applied to the
inputs' tangents. A primitive's JVP is its ``jvp`` rule from the op table when it
has one, else one derived from its VJP rules (see NOTE: [Derived JVP]). Rules run
with propagation paused, so a rule's own ops carry no tangents of their own, but
they are recorded by the tape like any op: a tangent can be differentiated in
reverse mode, and forward mode runs over a backward pass (forward-over-reverse).

One level at a time, as in PyTorch; leaving it drops every tangent made in it.
"""
from __future__ import annotations

import itertools
import weakref
from collections import namedtuple

from . import grad_mode
from ._op_hooks import impl as _hook_impl, refresh, state
from .graph import Node

__all__ = ["dual_level", "enter_dual_level", "exit_dual_level", "make_dual", "unpack_dual",
           "UnpackedDualTensor"]

UnpackedDualTensor = namedtuple("UnpackedDualTensor", ["primal", "tangent"])

_levels = itertools.count()
_carriers: list = []  # weakrefs of tensors (and nodes) holding a tangent of the open level


def enter_dual_level() -> int:
    """Open a dual level (prefer the ``dual_level`` context manager)."""
    if state.fw_level is not None:
        raise RuntimeError("Nested forward mode AD is not supported at the moment: a dual "
                           "level is already open")
    state.fw_level = next(_levels)
    refresh()
    return state.fw_level


def exit_dual_level(*, level: int | None = None) -> None:
    """Close the open dual level; every tangent made in it is dropped."""
    if state.fw_level is None or (level is not None and level != state.fw_level):
        raise RuntimeError("Trying to exit a forward AD level that was not the last one "
                           "that was created")
    for ref in _carriers:
        obj = ref()
        if obj is None:
            continue
        if not isinstance(obj, Node):  # a tensor (a view, a Parameter)
            obj._fw_grad = None
        elif obj.metadata is not None:
            obj.metadata.pop("out_tangent", None)
    _carriers.clear()
    state.fw_level = None
    state.fw_paused = False
    refresh()


class dual_level:
    """Context manager for a forward AD level: dual tensors made inside it lose their
    tangents when it exits."""

    def __enter__(self) -> int:
        return enter_dual_level()

    def __exit__(self, *exc) -> None:
        exit_dual_level()


def _check_level(level, what):
    if state.fw_level is None:
        raise RuntimeError(f"{what} needs an open forward AD level: use it inside "
                           "`with forward_ad.dual_level():`")
    if level is not None and level != state.fw_level:
        raise RuntimeError(f"{what}: level {level} is not the open forward AD level")


def _attach(t, tangent) -> None:
    """Set ``t``'s tangent at the open level (None clears it)."""
    if t._fw_grad is None and tangent is not None:
        _carriers.append(weakref.ref(t))
    t._fw_grad = tangent


def _alias(t):
    """A new tensor with ``t``'s data and autograd history, without a tangent."""
    from ..tensor import Tensor
    if not t.requires_grad:
        return Tensor._make(t._data, t._vc)
    paused, state.fw_paused = state.fw_paused, True
    try:
        return t.view_as(t)  # ViewBackward0: gradients flow back to t
    finally:
        state.fw_paused = paused


def make_dual(tensor, tangent, *, level: int | None = None):
    """A view of ``tensor`` carrying ``tangent`` as its forward-mode derivative."""
    from ..tensor import Tensor
    _check_level(level, "make_dual")
    if not isinstance(tensor, Tensor) or not isinstance(tangent, Tensor):
        raise TypeError("make_dual expects a primal Tensor and a tangent Tensor")
    if not tensor.dtype.is_floating_point or not tangent.dtype.is_floating_point:
        raise ValueError(f"Expected primal and tangent to be floating point, got "
                         f"{tensor.dtype} and {tangent.dtype}")
    if tangent.shape != tensor.shape:
        raise RuntimeError(f"Trying to set a forward gradient that has a different size than "
                           f"that of the original Tensor: the primal has size "
                           f"{list(tensor.shape)} and the tangent {list(tangent.shape)}")
    if tangent.dtype is not tensor.dtype:
        tangent = tangent.to(tensor.dtype)
    dual = _alias(tensor)
    _attach(dual, tangent)
    return dual


def unpack_dual(tensor, *, level: int | None = None) -> UnpackedDualTensor:
    """``(primal, tangent)`` of a dual tensor; the tangent is None if it has none."""
    if state.fw_level is None or tensor._fw_grad is None:
        return UnpackedDualTensor(tensor, None)
    _check_level(level, "unpack_dual")
    return UnpackedDualTensor(_alias(tensor), tensor._fw_grad)


# ----------------------------------------------------------------------------
# propagation through one primitive

def propagate(prim, args, params, out) -> None:
    """Set ``out``'s tangent from its inputs' (called by ``_op_hooks.apply_hooked``)."""
    tangents = [a._fw_grad for a in args]
    if all(t is None for t in tangents) or not out.dtype.is_floating_point:
        return
    state.fw_paused = True
    try:
        rule = prim.jvp
        if rule is None:
            t = derived_jvp(prim, args, params, out, tangents)
        elif callable(rule):  # variadic primitives: one rule over all tangents
            t = rule(tangents, out, *args, **params)
        else:
            t = None
            for ti, ri in zip(tangents, rule, strict=False):
                if ti is not None and ri is not None:
                    c = ri(ti, out, *args, **params)
                    t = c if t is None else t + c
        if t is not None:
            if t.shape != out.shape:
                from ..functions import broadcast_to
                t = broadcast_to(t, out.shape)
            if t.dtype is not out.dtype:
                t = t.to(out.dtype)
    finally:
        state.fw_paused = False
    if t is None:
        return
    _attach(out, t)
    node = out.grad_fn
    if node is not None and getattr(node, "_out_data", None) is not None:
        # the VJP rules read the output; under forward-over-reverse they need its tangent
        if node.metadata is None:
            node.metadata = {}
        node.metadata["out_tangent"] = t
        _carriers.append(weakref.ref(node))


_hook_impl.propagate = propagate


# NOTE: [Derived JVP]. A primitive without a ``jvp`` rule gets one from its VJP
# rules, which are linear in the cotangent: with u a dummy cotangent,
# <J^T u, v> = <u, J v>, so J v is the gradient of <vjp(u), v> with respect to u.
# Exact (the VJP rules of this op table are all linear in u), but it runs the VJP
# rules and then a backward pass over them, whose fixed cost dominates small ops:
# 9-40x an explicit rule at 64x100 (benchmarks/forward_ad.py). So the common ops
# have explicit rules, and the derived one is the fallback for the rest.

def derived_jvp(prim, args, params, out, tangents):
    """J v for ``prim`` at ``args`` by transposing its VJP (the double-VJP trick)."""
    from .. import functions as F
    from ..functions import sum_to
    from ..tensor import Tensor, trace_state
    from . import grad as autograd_grad

    # a graph through the primals is only needed if the tangent itself will be
    # differentiated (reverse over forward); otherwise work on detached values
    keep = grad_mode._state.enabled and (
        any(t is not None and t.requires_grad for t in tangents)
        or any(a.requires_grad for a in args))
    if not keep:
        args = tuple(Tensor._make(a._data, a._vc) for a in args)
        out = Tensor._make(out._data, out._vc)
    tracer = trace_state.current
    ran_backward = tracer.ran_backward if tracer is not None else None
    with grad_mode.enable_grad():
        u = dummy_cotangent(out)
        if prim.vjp_all is not None:
            ws = prim.vjp_all(u, out, *args, **params)
        else:
            ws = [r(u, out, *args, **params) if r is not None and t is not None else None
                  for r, t in zip(prim.vjp, tangents, strict=False)]
        total = None
        for w, t, a in zip(ws, tangents, args, strict=False):
            if w is None or t is None:
                continue
            if w.shape != a.shape:
                w = sum_to(w, a.shape)
            term = (w * t).sum()
            total = term if total is None else total + term
        jv = None
        if total is not None and total.requires_grad:
            (jv,) = autograd_grad(total, u, create_graph=keep, allow_unused=True)
    if tracer is not None:
        tracer.ran_backward = ran_backward
    return jv if jv is not None else F.zeros_like(out)


def dummy_cotangent(like):
    """Zeros shaped like ``like``, requiring grad: the u of the double-VJP trick.

    Made by the ``full`` primitive rather than as a literal, so that a compiled
    function's trace has a value to differentiate with respect to (a 0-d literal
    would be a constant there).
    """
    from ..primitives import full_p
    from ..tensor import apply
    u = apply(full_p, (), {"shape": tuple(like.shape), "value": 0.0, "dtype": like.dtype})
    return u.requires_grad_()
