"""Backward-graph nodes: one per recorded primitive call, plus AccumulateGrad for leaves.

A node keeps what its primitive's VJP rule reads (input tensors, the output's data)
and the versions those had when saved. Each node's class is named as PyTorch names
it (``MulBackward0``), so ``print(y.grad_fn)`` reads the same.

NOTE: [No reference cycles]. A node never holds its own output tensor, only the
output's array; when a rule needs the output it gets a fresh tensor whose grad_fn
is the node. Leaves hold their AccumulateGrad weakly. So a graph is freed by
reference counting alone when the last tensor referring to it goes away.
"""
from __future__ import annotations

import itertools
import re
import weakref

_seq = itertools.count()
_LEAF_SEQ = 1 << 62  # AccumulateGrad runs as soon as it is ready, as in PyTorch

FREED_MESSAGE = (
    "Trying to backward through the graph a second time (or directly access saved tensors "
    "after they have already been freed). Saved intermediate values of the graph are freed "
    "when you call .backward() or autograd.grad(). Specify retain_graph=True if you need to "
    "backward through the graph a second time or if you need to access saved tensors after "
    "calling backward.")


class RemovableHandle:
    """Returned by register_hook; ``remove()`` unregisters the hook."""

    _ids = itertools.count()

    def __init__(self, hooks: dict):
        self._hooks = weakref.ref(hooks) if _weakrefable(hooks) else (lambda: hooks)
        self.id = next(RemovableHandle._ids)

    def remove(self) -> None:
        hooks = self._hooks()
        if hooks is not None:
            hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def _weakrefable(obj) -> bool:
    try:
        weakref.ref(obj)
        return True
    except TypeError:
        return False


class _HookDict(dict):
    """A dict that can be weakly referenced (plain dicts cannot)."""

    __slots__ = ("__weakref__",)


class Node:
    """Base of all backward functions (``grad_fn`` objects)."""

    __slots__ = ("next_functions", "_seq", "__dict__", "__weakref__")
    _n_out = 1
    # rarely set: class-level defaults, so recording a node does not pay for them
    _pre_hooks = None
    _post_hooks = None
    _retain_grad = None
    metadata = None

    def name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"<{type(self).__name__} object at {hex(id(self))}>"

    def register_hook(self, fn) -> RemovableHandle:
        """fn(grad_inputs, grad_outputs) runs after this node computes its gradients."""
        if self._post_hooks is None:
            self._post_hooks = _HookDict()
        h = RemovableHandle(self._post_hooks)
        self._post_hooks[h.id] = fn
        return h

    def register_prehook(self, fn) -> RemovableHandle:
        """fn(grad_outputs) runs before this node; may return replacement gradients."""
        return self._add_pre_hook(lambda g: _first(fn((g,))))

    def _add_pre_hook(self, fn) -> RemovableHandle:
        if self._pre_hooks is None:
            self._pre_hooks = _HookDict()
        h = RemovableHandle(self._pre_hooks)
        self._pre_hooks[h.id] = fn
        return h

    def __call__(self, *grads):
        r = self.apply(*grads)
        return tuple(r) if r.__class__ is list else r


def _first(r):
    if r is None:
        return None
    return r[0] if isinstance(r, tuple) else r


class _late:
    """Names bound after import (tensor.py and functions.py import this module)."""

    Tensor = None
    sum_to = None
    apply = None

    @classmethod
    def load(cls):
        from .._storage import make_writable
        from ..functions import sum_to
        from ..primitives import copy_p
        from ..tensor import Tensor, apply, trace_state
        from .grad_mode import is_grad_enabled
        cls.Tensor, cls.sum_to, cls.apply, cls.trace_state = Tensor, sum_to, apply, trace_state
        cls.make_writable, cls.is_grad_enabled, cls.copy_p = make_writable, is_grad_enabled, copy_p


class PrimitiveNode(Node):
    """The backward of one primitive call: applies the primitive's VJP rules.

    ``_saved`` holds (version counter, version when saved, tensor) for each input the
    rules read; it becomes None when backward frees the node. ``_out_data`` is the
    output's array when the rules read it (``prim.save_out``), with its counter and
    version in ``_out_vc`` and ``_out_version`` (set only then)."""

    __slots__ = ("prim", "params", "inputs", "_saved", "_out_data", "_out_vc", "_out_version")

    def apply(self, g):
        saved = self._saved
        if saved is None:
            raise RuntimeError(FREED_MESSAGE)
        for vc, expected, what in saved:
            if vc[0] != expected:
                _raise_modified(self, what, vc[0], expected)
        prim = self.prim
        inputs = self.inputs
        out = None
        if self._out_data is not None:
            out = self._saved_output()
        params = self.params
        next_functions = self.next_functions
        if prim.vjp_all is not None:
            grads = list(prim.vjp_all(g, out, *inputs, **params))
            for i, (fn, _) in enumerate(next_functions):
                if fn is None:
                    grads[i] = None
        else:
            grads = [None] * len(inputs)
            rules = prim.vjp
            for i, (fn, _) in enumerate(next_functions):
                if fn is not None and rules[i] is not None:
                    grads[i] = rules[i](g, out, *inputs, **params)
        for i, gi in enumerate(grads):
            if gi is not None:
                x = inputs[i]._data
                d = gi._data
                if d.shape != x.shape:
                    gi = grads[i] = _late.sum_to(gi, x.shape)
                if d.dtype is not x.dtype and gi.dtype is not inputs[i].dtype:
                    grads[i] = gi.to(inputs[i].dtype)
        return grads

    def _saved_output(self):
        """The output, for rules that read it: a fresh tensor whose grad_fn is this node
        (see NOTE: [No reference cycles])."""
        if _late.Tensor is None:
            _late.load()
        if self._out_vc[0] != self._out_version:
            _raise_modified(self, None, self._out_vc[0], self._out_version,
                            shape=self._out_data.shape, dtype=self._out_data.dtype)
        out = _late.Tensor._make(self._out_data, self._out_vc)
        out.grad_fn = self
        out._rg = True
        if self.metadata is not None:  # forward AD over this backward: out's tangent
            out._fw_grad = self.metadata.get("out_tangent")
        return out

    def _release(self):
        if self._saved or self._out_data is not None:
            self.inputs = None
            self._saved = None
            self._out_data = None


def _raise_modified(node, what, now, expected, shape=None, dtype=None):
    """A tensor ``node`` saved for backward was modified in place since.

    ``what`` is the saved input tensor, or None when the node's own output was saved
    (then its ``shape`` and ``dtype`` are given). The message names the tensor, the op
    that produced it and both versions, as PyTorch's does.
    """
    from ..dtypes import _BY_NP

    if what is not None:
        shape, dtype, producer = what.shape, what.dtype, what.grad_fn
    else:
        dtype, producer = _BY_NP.get(dtype, dtype), node
    desc = f"[{_tensor_type_name(dtype)} {list(shape)}]"
    if producer is not None:
        op = re.sub(r"Backward\d*$", "", producer.name())
        desc += f", which is output {getattr(what, '_out_nr', 0)} of {op},"
    raise RuntimeError(
        "one of the variables needed for gradient computation has been modified by an "
        f"inplace operation: {desc} is at version {now}; expected version {expected} instead. "
        f"Hint: {node.name()} saved this tensor for the backward pass and it was changed in "
        "place afterwards; compute the new value out of place (y = x + 1 rather than "
        "x.add_(1)) or modify a .clone() of it." + _anomaly_hint(node))


def _anomaly_hint(node):
    meta = getattr(node, "metadata", None)
    if meta and "inplace_site" in meta:
        return f" (modified in place at {meta['inplace_site']})"
    return ""


def _tensor_type_name(dtype):
    names = {"float32": "FloatTensor", "float64": "DoubleTensor", "int64": "LongTensor",
             "int32": "IntTensor", "bool": "BoolTensor", "float16": "HalfTensor"}
    return "torch." + names.get(getattr(dtype, "name", ""), "Tensor")


_node_classes: dict[str, type] = {}


def node_class(name: str) -> type:
    cls = _node_classes.get(name)
    if cls is None:
        cls = type(name, (PrimitiveNode,), {"__slots__": ()})
        _node_classes[name] = cls
    return cls


_NO_EDGE = (None, 0)


def make_node(prim, args, params, name):
    """Record one primitive call: the node for the output of ``prim(*args)``."""
    if name is None:
        rec = prim._rec
        if rec is None:
            rec = prim._rec = _Recording(prim)
        cls = rec.cls or node_class(prim.node_name(params, args))
    else:
        rec = None
        cls = node_class(name)
    node = object.__new__(cls)
    node.prim = prim
    node.params = params
    node.inputs = args
    nf = []
    mask = 0
    bit = 1
    for a in args:
        if a._rg:
            fn = a.grad_fn
            nf.append((fn if fn is not None else a._accumulator(), a._out_nr))
            mask |= bit
        else:
            nf.append(_NO_EDGE)
        bit <<= 1
    node.next_functions = tuple(nf)
    save = prim.save
    if save.__class__ is dict:
        if rec is None:
            rec = prim._rec = prim._rec or _Recording(prim)
        save = rec.saved_for(mask)
    if save:
        saved = []
        for i in save:
            a = args[i]
            vc = a._vc
            saved.append((vc, vc[0], a))
        node._saved = tuple(saved)
    else:
        node._saved = ()
    node._out_data = None
    node._seq = next(_seq)
    return node


class _Recording:
    """Per-primitive facts make_node needs on every call, worked out once: the node
    class (when the name does not depend on the call) and, for primitives whose rules
    read different inputs (``save`` a dict), the inputs to save for each set of inputs
    that need a gradient (a bit mask)."""

    __slots__ = ("cls", "save", "by_mask")

    def __init__(self, prim):
        self.cls = node_class(prim.grad_name) if prim.grad_name.__class__ is str else None
        self.save = prim.save
        self.by_mask = {}

    def saved_for(self, mask):
        got = self.by_mask.get(mask)
        if got is None:
            got = self.by_mask[mask] = tuple(sorted(
                {j for i, rule in self.save.items() if mask >> i & 1 for j in rule}))
        return got


class AccumulateGrad(Node):
    """The backward of a leaf: adds the incoming gradient into ``variable.grad``."""

    __slots__ = ("variable",)

    def __init__(self, variable):
        self.variable = variable
        self.next_functions = ()
        self._seq = _LEAF_SEQ
        self._pre_hooks = None
        self._post_hooks = None
        self._retain_grad = None
        self.metadata = None

    def name(self) -> str:
        return "torch::autograd::AccumulateGrad"  # what PyTorch's Node.name() says

    def apply(self, g):
        accumulate_into(self.variable, g)
        return ()

    def _release(self):
        pass


def accumulate_into(t, g) -> None:
    """t.grad += g, as PyTorch does it: in place when no graph is being built."""
    if _late.apply is None:
        _late.load()
    make_writable, is_grad_enabled = _late.make_writable, _late.is_grad_enabled
    copy_p, apply, trace_state = _late.copy_p, _late.apply, _late.trace_state
    if g._data.shape != t._data.shape:
        raise RuntimeError(f"gradient of shape {list(g.shape)} does not match the shape "
                           f"{list(t.shape)} of the tensor it accumulates into")
    tracer = trace_state.current
    old = t._grad
    if tracer is not None:
        tracer.note_grad_read(t, old)
    if old is None:
        # a private copy: the incoming array may be shared with other gradients.
        # Under create_graph the copy is recorded, named as PyTorch names it.
        new = apply(copy_p, (g,), name="CopyBackwards")
        if tracer is not None:
            tracer.note_grad_write(t)
        t._grad = new
    elif is_grad_enabled():
        if tracer is not None:
            tracer.note_grad_write(t)
        t._grad = old + g
    elif tracer is not None:
        total = old + g  # first: reading old lets the tracer specialise on its value
        if not make_writable(old._data):
            tracer.note_grad_write(t)
            t._grad = total
            return
        tracer.before_inplace(old)
        old._data[...] = total._data
        tracer.after_inplace(old, total)
        old._vc[0] += 1
    elif not make_writable(old._data):  # a genuinely read-only array (an expand view)
        t._grad = old + g
    else:
        old._data += g._data
        old._vc[0] += 1
