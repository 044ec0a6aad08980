"""Views, and in-place ops through them while gradients are recorded.

NOTE: [In-place through a view]. A view (``y[0]``, ``y.t()``, ``y.view(12)``,
``y.expand(...)``, ``split``/``chunk``/``unbind`` pieces) is a NumPy view of its
base's array and shares the base's version counter. It is a ``tensor._View``,
which carries a ``ViewInfo``: the *root* base (never itself a view) and the view
ops that remake the view from it, ``((prim, params, input shape), ...)``, so a view
of a view replays both. From that, as PyTorch does:

* an in-place op through a view while recording (``y[0].mul_(3)``) gives the base
  a ``CopySlices`` node: y_new = y_old with the view's region replaced by
  op(view). Its backward sends ``g`` with the region zeroed to y's old history and
  the region ``view_fn(g)`` to the op's node (whose own history leads back into
  y's old history through the view's old grad_fn), so the engine's sum is
  ``g`` with the region replaced by the op's vector-Jacobian product;
* a view's ``grad_fn`` (and requires_grad) is read through its version: once the
  shared counter moved (the base or another view was written, or the view itself
  was), the grad_fn is rebuilt from the base's current history as an
  ``AsStridedBackward0`` node (scatter the gradient into the base's shape). So a
  view made before an in-place op on its base still differentiates through it.

Both backward rules are written with tracegrad ops (``replay`` and ``scatter``
below), so create_graph and the compiler see ordinary primitives. Refused, with
PyTorch's messages: writing through a view of a leaf that requires grad, through
a view made under no_grad with grad mode on, and through one output of a
multi-view op (split/chunk/unbind). Writing through an ``expand`` view fails
earlier (its array is read-only: overlapping memory), as in PyTorch.
"""
from __future__ import annotations

import re
import weakref

from .graph import Node, _seq

NO_GRAD = "no_grad"  # ViewInfo.kind of a view made while grad mode was off

_MULTI_OUTPUT_ADVICE = (
    "This view is the output of a function that returns multiple views. Such functions do "
    "not allow the output views to be modified inplace. You should replace the inplace "
    "operation by an out-of-place one.")
_NO_GRAD_ADVICE = (
    "Given that this use case is ambiguous and error-prone, it is forbidden. You can clarify "
    "your code by moving both the view and the inplace either both inside the no_grad block "
    "(if you don't want the inplace to be tracked) or both outside (if you want the inplace "
    "to be tracked).")


class ViewInfo:
    """How a view is remade from its root ``base``: ``ops`` replayed in order.

    ``ops`` is None when a primitive this module cannot replay made the view (none
    does today); ``version`` is the shared version counter's value when the view's
    grad_fn was last set; ``kind`` is None, NO_GRAD, or (output number, op name,
    whether it had a grad_fn) for one output of a multi-view op.
    """

    __slots__ = ("base", "ops", "version", "kind")

    def __init__(self, base, ops, version, kind):
        self.base = base
        self.ops = ops
        self.version = version
        self.kind = kind


class _late:
    """Names bound on first use (this module loads before tensor.py and functions.py)."""

    F = None

    @classmethod
    def load(cls):
        from .. import functions as F, primitives as P
        from ..tensor import Tensor, apply, trace_state
        cls.F, cls.apply, cls.trace_state, cls.Tensor = F, apply, trace_state, Tensor
        cls.replayable = {P.getitem_p, P.reshape_p, P.permute_p, P.broadcast_to_p, P.diagonal_p,
                          P.unfold_p}
        cls.getitem_p, cls.reshape_p, cls.permute_p = P.getitem_p, P.reshape_p, P.permute_p
        cls.diagonal_p, cls.unfold_p = P.diagonal_p, P.unfold_p
        cls.inverse_perm = P._inverse_perm
        cls.TENSOR = P.TENSOR


def view_info(parent, prim, params, args, grad_enabled) -> ViewInfo:
    """The ViewInfo of ``prim(*args)``, a view of ``parent`` (one of args)."""
    if _late.F is None:
        _late.load()
    op = (prim, params, parent._data.shape)
    replayable = prim in _late.replayable and len(args) == 1
    kind = None if grad_enabled else NO_GRAD
    version = parent._vc[0]
    info = parent.__dict__.get("_view")
    if info is None:
        return ViewInfo(parent, (op,) if replayable else None, version, kind)
    ops = info.ops + (op,) if replayable and info.ops is not None else None
    if info.kind is not None:  # a view of a view made under no_grad, or of a split piece
        kind = NO_GRAD if info.kind == NO_GRAD else 0
    return ViewInfo(info.base, ops, version, kind)


def mark_multi_output(views) -> None:
    """``views`` are the outputs of one multi-view op (split, chunk, unbind)."""
    for i, v in enumerate(views):
        info = v.__dict__.get("_view")
        if info is not None and info.kind is None:
            info.kind = i


def replay(t, ops):
    """``t`` seen through the view ops: view_fn(t)."""
    apply = _late.apply
    for prim, params, _ in ops:
        t = apply(prim, (t,), params)
    return t


def scatter(base, v, ops):
    """``base`` with the region ``ops`` select replaced by ``v``, out of place; with
    ``base`` None, into zeros (then an expand's duplicates are summed: its VJP)."""
    if not ops:
        return v
    F = _late.F
    if any(op[0] is _late.unfold_p for op in ops):
        return _scatter_by_position(base, v, ops)
    (prim, params, in_shape), rest = ops[0], ops[1:]
    inner = None if base is None else _late.apply(prim, (base,), params)
    v = scatter(inner, v, rest)
    if prim is _late.getitem_p:
        if base is None:
            base = F.zeros(in_shape, dtype=v.dtype)
        return F._index_put(base, v, (), params["index"])
    if prim is _late.reshape_p:
        return F.reshape(v, in_shape)
    if prim is _late.permute_p:
        return F.permute(v, _late.inverse_perm(params["perm"]))
    if prim is _late.diagonal_p:
        placed = F._diag_embed(v, shape=in_shape, **params)
        if base is None:
            return placed
        on_diagonal = F._diag_embed(F.ones(v.shape, dtype=F.dtypes.bool_), shape=in_shape,
                                    **params)
        return F.where(on_diagonal, placed, base)
    if prim is _late.unfold_p:  # Tensor.unfold's windows back at their places in the dim
        dim, size, step = params["dim"], params["size"], params["step"]
        idx = F._unfold_index(in_shape[dim], size, step)
        v = F.movedim(v, -1, dim + 1)
        index = (slice(None),) * dim + (_late.TENSOR,)
        if base is None:  # (overlapping windows add up: the VJP)
            return F._index_add(F.zeros(in_shape, dtype=v.dtype), v, (idx,), index)
        return F._index_put(base, v, (idx,), index)
    if base is not None:  # pragma: no cover - expand views cannot be written to
        raise RuntimeError("cannot write through an expanded view")
    return F.sum_to(v, in_shape)


def _scatter_by_position(base, v, ops):
    # Through unfold windows that share elements, region-by-region scattering would put
    # an alias's stale value over a written one: scatter by the flat position of each
    # view element in the base instead (the view ops replayed on the positions)
    F = _late.F
    shape = ops[0][2]
    n = 1
    for d in shape:
        n *= d
    pos = F.reshape(replay(F.reshape(F.arange(n), shape), ops), (-1,))
    flat_v = F.reshape(v, (-1,))
    if base is None:
        out = F._index_add(F.zeros((n,), dtype=v.dtype), flat_v, (pos,), (_late.TENSOR,))
    else:
        out = F._index_put(F.reshape(base, (-1,)), flat_v, (pos,), (_late.TENSOR,))
    return F.reshape(out, shape)


def check_inplace(view, node):
    """Refuse an in-place op through ``view`` (grad mode on; ``node`` the op's, or
    None) as PyTorch does; else return the view's grad_fn before the write."""
    info = view._view
    base = info.base
    if node is None and not view._rg and not base._rg:
        return None
    if info.kind is not None:
        raise RuntimeError(_refusal(view, indirect=False))
    if info.ops is None:
        raise RuntimeError("this view was made by an op tracegrad cannot replay, so an in-place "
                           "op through it cannot be recorded; clone() it first")
    if view._rg and base._rg and base.grad_fn is None:
        raise RuntimeError("a view of a leaf Variable that requires grad is being used in an "
                           "in-place operation.")
    return view._view_grad_fn


def _refusal(view, indirect):
    """PyTorch's message for a view made under no_grad, or by a multi-view op, whose
    history would have to be rebased (``indirect``: its base or a sibling was written)."""
    kind = view._view.kind
    what = "its base or another view of its base has been" if indirect else "is being"
    fn = view._view_grad_fn
    op = re.sub(r"Backward\d*$", "", fn.name()) if fn is not None else None
    nr = 0 if kind == NO_GRAD else kind
    if kind == NO_GRAD or fn is None:
        prefix = (f"Output {nr} of {op} is a view of a view which was created in"
                  if fn is not None else "A view was created in")
        msg = f"{prefix} no_grad mode and {what} modified inplace with grad mode enabled."
    else:
        msg = f"Output {nr} of {op} is a view and {what} modified inplace."
    return msg + " " + (_NO_GRAD_ADVICE if kind == NO_GRAD else _MULTI_OUTPUT_ADVICE)


def rebase(view, node, old_fn) -> None:
    """``view`` was just written in place by the op whose node is ``node``: the root
    base's history becomes CopySlices over its old history and ``node``. ``old_fn``
    is the view's grad_fn before the write."""
    base = view._view.base
    _unhook(old_fn, base)
    cs = object.__new__(CopySlices)
    cs.ops = view._view.ops
    cs.next_functions = ((base.grad_fn, 0), (node, 0))
    _init_node(cs)
    base.grad_fn = cs
    if not base._rg:
        from ..tensor import META_EPOCH
        META_EPOCH[0] += 1
    base._rg = True
    if base._retains_grad:  # retain_grad follows the tensor to its new grad_fn
        cs._retain_grad = weakref.ref(base)
    _note_node(cs)


def _unhook(fn, base) -> None:
    """The view ops' nodes from the view's old grad_fn up to ``base`` hold the base
    (and the views between) as inputs, which would make a reference cycle once the
    base's history leads back to them: give them plain aliases instead (their rules
    read only shapes and dtypes)."""
    Tensor = _late.Tensor
    while fn is not None and getattr(fn, "prim", None) in _late.replayable and fn.inputs:
        t = fn.inputs[0]
        if t is not base and t.__dict__.get("_view") is None:
            return
        alias = Tensor._make(t._data, t._vc)
        alias.grad_fn = t.__dict__.get("_view_grad_fn", t.__dict__.get("grad_fn"))
        alias._rg = True
        fn.inputs = (alias,) + fn.inputs[1:]
        fn._saved = tuple((vc, v, alias if s is t else s) for vc, v, s in fn._saved)
        if t is base:
            return
        fn = fn.next_functions[0][0]


def refresh(view) -> None:
    """Rebuild a view's grad_fn from its base's current history (the shared version
    counter moved since it was set)."""
    info = view._view
    base = info.base
    if view._view_grad_fn is None and not base._rg:
        return  # no history to rebuild (yet: the base may come to require grad)
    if info.kind is not None:
        raise RuntimeError(_refusal(view, indirect=True))
    if info.ops is None:
        raise RuntimeError("the base of this view was modified in place, and the view was made "
                           "by an op tracegrad cannot replay; clone() it before modifying")
    fn = base.grad_fn
    node = object.__new__(AsStridedBackward0)
    node.ops = info.ops
    node.next_functions = ((fn if fn is not None else base._accumulator(), 0),)
    _init_node(node)
    if view._retains_grad:
        node._retain_grad = weakref.ref(view)
    view._view_grad_fn = node
    view._view_rg = True
    info.version = view._vc[0]
    _note_node(node)


def _init_node(node):
    node._seq = next(_seq)
    node._pre_hooks = None
    node._post_hooks = None
    node._retain_grad = None
    node.metadata = None


def _note_node(node):
    tracer = _late.trace_state.current
    if tracer is not None:
        tracer.note_view_node(node)


class CopySlices(Node):
    """The history of a base written through one of its views (see the module NOTE).

    next_functions: the base's history before the write, and the in-place op's node.
    """

    __slots__ = ("ops",)

    def name(self) -> str:
        return "torch::autograd::CopySlices"  # what PyTorch's Node.name() says

    def apply(self, g):
        g_view = replay(g, self.ops)
        rest = None
        if self.next_functions[0][0] is not None:
            rest = scatter(g, _late.F.zeros_like(g_view), self.ops)
        return rest, g_view

    def _release(self):
        pass


class AsStridedBackward0(Node):
    """A view's history rebuilt after its base changed: scatter into the base's shape."""

    __slots__ = ("ops",)

    def apply(self, g):
        return (scatter(None, g, self.ops),)

    def _release(self):
        pass
