"""Derivatives of whole functions: jacobian, hessian, vjp, jvp, hvp, vhp.

>>> import tracegrad as tg
>>> from tracegrad.autograd.functional import jacobian
>>> def exp_adder(x, y):
...     return 2 * x.exp() + 3 * y
>>> jacobian(exp_adder, (tg.tensor([0.]), tg.tensor([1.])))
(tensor([[2.]]), tensor([[3.]]))

Signatures and return conventions are PyTorch's: a tuple of inputs gives a tuple
of results (a tuple of tuples for ``jacobian`` of a tuple-valued function and for
``hessian``), a single Tensor gives a Tensor. Results are detached unless
``create_graph=True``; with ``strict=True`` an output that does not depend on an
input is an error instead of zeros.

How each is computed:

* ``vjp``, ``vhp``: reverse mode (``vhp`` is reverse over reverse);
* ``jvp``: forward mode (dual tensors, ``forward_ad``); inside an already open
  dual level, the double-VJP trick instead;
* ``hvp``: forward over reverse (the JVP of the gradient);
* ``jacobian``: one backward pass per output element (``strategy="reverse-mode"``)
  or one forward pass per input element (``"forward-mode"``); ``vectorize=True``
  is accepted and runs the same loop;
* ``hessian``: the Jacobian of the gradient.

All of it is made of recorded primitives, so under ``tracegrad.compile`` each
becomes part of one XLA program.
"""
from __future__ import annotations

import numpy as np

from . import grad_mode
from ._op_hooks import state
from .forward_ad import dummy_cotangent

__all__ = ["vjp", "jvp", "jacobian", "hessian", "hvp", "vhp"]


# ----------------------------------------------------------------------------
# arguments and results

def _tuplify(x, what: str, fn: str):
    """(was it a tuple, the tensors as a tuple), checking every entry is a Tensor."""
    from ..tensor import Tensor
    is_tuple = isinstance(x, tuple)
    items = x if is_tuple else (x,)
    for i, t in enumerate(items):
        if not isinstance(t, Tensor):
            where = f"the value at index {i}" if is_tuple else f"the given {what}"
            raise TypeError(f"The {what} given to {fn} must be either a Tensor or a tuple of "
                            f"Tensors but {where} has type {type(t).__name__}.")
    return is_tuple, items


def _untuple(items, is_tuple: bool):
    return tuple(items) if is_tuple else items[0]


def _untuple2(rows, outer_tuple: bool, inner_tuple: bool):
    rows = [_untuple(r, inner_tuple) for r in rows]
    return tuple(rows) if outer_tuple else rows[0]


def _prepare(tensors, create_graph: bool, need_graph: bool):
    """Fresh leaves for the function to run on; with create_graph, inputs that require
    grad stay connected to the caller's graph so the result can be differentiated."""
    out = []
    for t in tensors:
        if create_graph and t.requires_grad:
            out.append(t.view_as(t))
        else:
            out.append(t.detach().requires_grad_(need_graph))
    return tuple(out)


def _finish(tensors, create_graph: bool):
    return tuple(t if create_graph or t is None else t.detach() for t in tensors)


def _check_v(v, refs, refs_tuple: bool, what: str):
    if len(v) != len(refs):
        if refs_tuple:
            raise RuntimeError(f"v is a tuple of invalid length: should be {len(refs)} but got "
                               f"{len(v)}.")
        raise RuntimeError("The given v should contain a single Tensor.")
    for i, (a, b) in enumerate(zip(v, refs, strict=True)):
        if a.shape != b.shape:
            raise RuntimeError(f"Entry {i} in v has invalid size: should be {b.shape} (the "
                               f"shape of the {what}) but got {a.shape}.")


def _check_differentiable(outputs, strict: bool):
    if strict:
        for i, o in enumerate(outputs):
            if not o.requires_grad:
                raise RuntimeError(f"Output {i} of the user-provided function does not require "
                                   "gradients. The outputs must be computed in a differentiable "
                                   "manner from the input when running in strict mode.")


def _call_checked(func, inputs, strict: bool, fn: str):
    """``func(*inputs)`` as ``(returned a tuple, outputs)``, checked for strict mode."""
    out_tuple, outputs = _tuplify(func(*inputs), "outputs of the user-provided function", fn)
    _check_differentiable(outputs, strict)
    return out_tuple, outputs


def _contract(g, us, v, create_graph: bool):
    """d/du <g(u), v> for ``g`` linear in the dummy cotangents ``us`` (None where none flows)."""
    pairs = [(gi, vi) for gi, vi in zip(g, v, strict=False) if gi is not None]
    if not pairs:
        return (None,) * len(us)
    return _grads([p[0] for p in pairs], us, [p[1] for p in pairs], create_graph)


def _grads(outputs, inputs, grad_outputs, create_graph: bool):
    """autograd.grad over the outputs that require grad; None where nothing flows."""
    from . import grad
    if grad_outputs is None:
        grad_outputs = (None,) * len(outputs)
    pairs = [(o, g) for o, g in zip(outputs, grad_outputs, strict=False) if o.requires_grad]
    if not pairs:
        return (None,) * len(inputs)
    return grad([o for o, _ in pairs], inputs, [g for _, g in pairs], retain_graph=True,
                create_graph=create_graph, allow_unused=True)


def _zeros_where_none(grads, refs, strict: bool, message):
    from .. import functions as F
    out = []
    for i, (g, r) in enumerate(zip(grads, refs, strict=False)):
        if g is None:
            if strict:
                raise RuntimeError(message(i))
            g = F.zeros_like(r)
        out.append(g)
    return tuple(out)


def _independent(i):
    return (f"The output of the user-provided function is independent of input {i}. This is "
            "not allowed in strict mode.")


def _single_output(out, fn: str):
    from ..tensor import Tensor
    if not isinstance(out, Tensor):
        raise RuntimeError(f"The function given to {fn} should return a single Tensor")
    if out.numel() != 1:
        raise RuntimeError(f"The Tensor returned by the function given to {fn} should contain "
                           "a single element")
    return out


# ----------------------------------------------------------------------------
# products

def vjp(func, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """``(func(*inputs), v^T J)``: the vector-Jacobian product, by reverse mode.

    >>> import tracegrad as tg
    >>> vjp(lambda x: x * 2, tg.ones(3), tg.tensor([1., 2., 3.]))[1]
    tensor([2., 4., 6.])
    """
    with grad_mode.enable_grad():
        in_tuple, inputs = _tuplify(inputs, "inputs", "vjp")
        inputs = _prepare(inputs, create_graph, True)
        out_tuple, outputs = _call_checked(func, inputs, strict, "vjp")
        if v is None:
            if len(outputs) != 1 or outputs[0].numel() != 1:
                raise RuntimeError("The vector v can only be None if the user-provided function "
                                   "returns a single Tensor with a single element.")
        else:
            _, v = _tuplify(v, "v", "vjp")
            v = _prepare(v, create_graph, False)
            _check_v(v, outputs, out_tuple, "output")
        grads = _grads(outputs, inputs, v, create_graph)
        grads = _zeros_where_none(grads, inputs, strict, _independent)
    return (_untuple(_finish(outputs, create_graph), out_tuple),
            _untuple(_finish(grads, create_graph), in_tuple))


def jvp(func, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """``(func(*inputs), J v)``: the Jacobian-vector product, by forward mode.

    >>> import tracegrad as tg
    >>> jvp(lambda x: x ** 2, tg.tensor([1., 2.]), tg.tensor([1., 1.]))[1]
    tensor([2., 4.])
    """
    from .. import functions as F
    from . import forward_ad as fwAD

    in_tuple, inputs = _tuplify(inputs, "inputs", "jvp")
    if v is None:
        if len(inputs) != 1 or inputs[0].numel() != 1:
            raise RuntimeError("The vector v can only be None if the input to the user-provided "
                               "function is a single Tensor with a single element.")
        v = (F.ones_like(inputs[0]),)
    else:
        _, v = _tuplify(v, "v", "jvp")
        _check_v(v, inputs, in_tuple, "input")
    if state.fw_level is not None:
        return _jvp_by_double_vjp(func, inputs, in_tuple, v, create_graph, strict)
    with grad_mode.enable_grad():
        inputs = _prepare(inputs, create_graph, True)
        v = _prepare(v, create_graph, False)
        with fwAD.dual_level():
            duals = tuple(fwAD.make_dual(x, t) for x, t in zip(inputs, v, strict=False))
            out_tuple, outputs = _tuplify(func(*duals), "outputs of the user-provided function",
                                          "jvp")
            tangents = [fwAD.unpack_dual(o).tangent for o in outputs]
        _check_differentiable(outputs, strict)
        tangents = _zeros_where_none(tangents, outputs, strict, _output_independent)
    return (_untuple(_finish(outputs, create_graph), out_tuple),
            _untuple(_finish(tangents, create_graph), out_tuple))


def _output_independent(i):
    return (f"Output {i} of the user-provided function is independent of the inputs. This is "
            "not allowed in strict mode.")


def _jvp_by_double_vjp(func, inputs, in_tuple, v, create_graph, strict):
    """J v as d/du <J^T u, v> (u a dummy cotangent): for when a dual level is already open."""
    with grad_mode.enable_grad():
        inputs = _prepare(inputs, create_graph, True)
        out_tuple, outputs = _call_checked(func, inputs, strict, "jvp")
        us = tuple(dummy_cotangent(o) for o in outputs)
        g = _grads(outputs, inputs, us, create_graph=True)
        jv = _contract(g, us, v, create_graph)
        jv = _zeros_where_none(jv, outputs, strict, _output_independent)
    return (_untuple(_finish(outputs, create_graph), out_tuple),
            _untuple(_finish(jv, create_graph), out_tuple))


def vhp(func, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """``(func(*inputs), v^T H)`` for a scalar ``func``, by reverse over reverse.

    >>> import tracegrad as tg
    >>> vhp(lambda x: (x ** 3).sum(), tg.tensor([1., 2.]), tg.tensor([1., 1.]))[1]
    tensor([ 6., 12.])
    """
    with grad_mode.enable_grad():
        in_tuple, inputs = _tuplify(inputs, "inputs", "vhp")
        inputs = _prepare(inputs, create_graph, True)
        out = _single_output(func(*inputs), "vhp")
        _check_differentiable((out,), strict)
        v = _vector_for(v, inputs, in_tuple, create_graph, "vhp")
        g = _zeros_where_none(_grads((out,), inputs, None, True), inputs, strict, _independent)
        vh = _zeros_where_none(_grads(g, inputs, v, create_graph), inputs, strict, _independent)
    return (_finish((out,), create_graph)[0], _untuple(_finish(vh, create_graph), in_tuple))


def hvp(func, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """``(func(*inputs), H v)`` for a scalar ``func``: the JVP of its gradient.

    >>> import tracegrad as tg
    >>> hvp(lambda x: (x ** 3).sum(), tg.tensor([1., 2.]), tg.tensor([1., 0.]))[1]
    tensor([6., 0.])
    """
    in_tuple, xs = _tuplify(inputs, "inputs", "hvp")
    v = _vector_for(v, xs, in_tuple, create_graph, "hvp")
    if state.fw_level is not None:
        return _hvp_by_double_vjp(func, xs, in_tuple, v, create_graph, strict)
    value = []

    def gradient(*ys):
        out = _single_output(func(*ys), "hvp")
        _check_differentiable((out,), strict)
        value.append(out)
        return _zeros_where_none(_grads((out,), ys, None, True), ys, strict, _independent)

    _, hv = jvp(gradient, xs, v, create_graph=create_graph)
    return _finish(value[:1], create_graph)[0], _untuple(hv, in_tuple)


def _hvp_by_double_vjp(func, inputs, in_tuple, v, create_graph, strict):
    with grad_mode.enable_grad():
        inputs = _prepare(inputs, create_graph, True)
        out = _single_output(func(*inputs), "hvp")
        g = _zeros_where_none(_grads((out,), inputs, None, True), inputs, strict, _independent)
        us = tuple(dummy_cotangent(x) for x in inputs)
        gu = _grads(g, inputs, us, create_graph=True)
        hv = _contract(gu, us, v, create_graph)
        hv = _zeros_where_none(hv, inputs, strict, _independent)
    return _finish((out,), create_graph)[0], _untuple(_finish(hv, create_graph), in_tuple)


def _vector_for(v, inputs, in_tuple, create_graph, fn):
    from .. import functions as F
    if v is None:
        if len(inputs) != 1 or inputs[0].numel() != 1:
            raise RuntimeError("The vector v can only be None if the input to the user-provided "
                               "function is a single Tensor with a single element.")
        return (F.ones_like(inputs[0]),)
    _, v = _tuplify(v, "v", fn)
    _check_v(v, inputs, in_tuple, "input")
    return _prepare(v, create_graph, False)


# ----------------------------------------------------------------------------
# full matrices

def jacobian(func, inputs, create_graph: bool = False, strict: bool = False,
             vectorize: bool = False, strategy: str = "reverse-mode"):
    """The Jacobian of ``func`` at ``inputs``: entry [i][j] has shape
    ``outputs[i].shape + inputs[j].shape``.

    >>> import tracegrad as tg
    >>> jacobian(lambda x: x ** 2, tg.tensor([1., 2.]))
    tensor([[2., 0.],
            [0., 4.]])
    """
    if strategy not in ("forward-mode", "reverse-mode"):
        raise ValueError('Expected strategy to be either "forward-mode" or "reverse-mode". Hint: '
                         'If your function has more outputs than inputs, "forward-mode" tends to '
                         'be more performant. Otherwise, prefer to use "reverse-mode".')
    if strategy == "forward-mode" and state.fw_level is None:
        return _jacobian_forward(func, inputs, create_graph, strict)
    from .. import functions as F
    with grad_mode.enable_grad():
        in_tuple, inputs = _tuplify(inputs, "inputs", "jacobian")
        inputs = _prepare(inputs, create_graph, True)
        out_tuple, outputs = _call_checked(func, inputs, strict, "jacobian")
        blocks = []
        for i, out in enumerate(outputs):
            rows = [[] for _ in inputs]  # rows[j]: d out[k] / d inputs[j], for each k
            if out.requires_grad:
                for k in range(out.numel()):
                    grads = _grads((out,), inputs, (_basis(out, k),), create_graph)
                    for j, g in enumerate(grads):
                        if g is None:
                            if strict:
                                raise RuntimeError(f"Output {i} of the user-provided function "
                                                   f"is independent of input {j}. This is not "
                                                   "allowed in strict mode.")
                            g = F.zeros_like(inputs[j])
                        rows[j].append(g)
            blocks.append(tuple(_assemble(rows[j], out, x, rows_first=True)
                                for j, x in enumerate(inputs)))
    blocks = [_finish(b, create_graph) for b in blocks]
    return _untuple2(blocks, out_tuple, in_tuple)


def _basis(like, k):
    """The k-th unit tensor of ``like``'s shape and dtype."""
    from .. import functions as F
    e = np.zeros(like.numel(), like.dtype.np)
    e[k] = 1
    return F.tensor(e.reshape(tuple(like.shape)), dtype=like.dtype)


def _assemble(parts, out, x, rows_first):
    """Stack per-element derivatives into a block of shape out.shape + x.shape."""
    from .. import functions as F
    shape = tuple(out.shape) + tuple(x.shape)
    if not parts:
        return F.zeros(shape, dtype=out.dtype)
    stacked = F.stack(parts, 0 if rows_first else -1)
    return F.reshape(stacked, shape)


def _jacobian_forward(func, inputs, create_graph, strict):
    """One JVP per input element: column by column."""
    from .. import functions as F
    in_tuple, xs = _tuplify(inputs, "inputs", "jacobian")
    columns = [[] for _ in xs]   # columns[j]: per element of xs[j], the tuple of J v
    out_tuple, outputs = None, None
    for j, x in enumerate(xs):
        for k in range(x.numel()):
            v = tuple(_basis(y, k) if m == j else F.zeros_like(y) for m, y in enumerate(xs))
            outs, jv = jvp(func, xs, v, create_graph=create_graph, strict=strict)
            out_tuple = isinstance(outs, tuple)
            outputs = outs if out_tuple else (outs,)
            columns[j].append(jv if out_tuple else (jv,))
    if outputs is None:  # every input is empty: evaluate once for the output shapes
        out_tuple, outputs = _tuplify(func(*xs), "outputs of the user-provided function",
                                      "jacobian")
    blocks = []
    for i, out in enumerate(outputs):
        row = []
        for j, x in enumerate(xs):
            cols = [c[i] for c in columns[j]]
            if cols:
                # J[..out, ..x]: stack columns last, then split the last axis to x's shape
                stacked = F.stack(cols, -1)
                row.append(F.reshape(stacked, tuple(out.shape) + tuple(x.shape)))
            else:
                row.append(_assemble([], out, x, True))
        blocks.append(tuple(row))
    return _untuple2(blocks, out_tuple, in_tuple)


def hessian(func, inputs, create_graph: bool = False, strict: bool = False,
            vectorize: bool = False, outer_jacobian_strategy: str = "reverse-mode"):
    """The Hessian of a scalar ``func``: the Jacobian of its gradient. For a tuple of
    inputs, entry [i][j] has shape ``inputs[i].shape + inputs[j].shape``.

    >>> import tracegrad as tg
    >>> hessian(lambda x: (x ** 3).sum(), tg.tensor([1., 2.]))
    tensor([[ 6.,  0.],
            [ 0., 12.]])
    """
    in_tuple, inputs = _tuplify(inputs, "inputs", "hessian")

    def scalar(*xs):
        return _single_output(func(*xs), "hessian").reshape(())

    def gradient(*xs):
        g = jacobian(scalar, xs, create_graph=True, strict=strict)
        return g

    h = jacobian(gradient, inputs, create_graph=create_graph, strict=strict,
                 vectorize=vectorize, strategy=outer_jacobian_strategy)
    return _untuple2(h, in_tuple, in_tuple)
