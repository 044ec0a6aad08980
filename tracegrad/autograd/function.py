"""Custom differentiable functions: subclass ``Function`` with forward and backward.

The ctx handed to forward/backward is the backward node itself (as in PyTorch),
an instance of ``<Name>Backward``.
"""
from __future__ import annotations

from . import grad_mode
from .graph import FREED_MESSAGE, Node, _raise_modified, _seq


class FunctionCtx:
    """What forward can tell backward: saved tensors and flags."""

    def save_for_backward(self, *tensors):
        self._to_save = tensors

    def mark_non_differentiable(self, *tensors):
        self._non_differentiable = set(id(t) for t in tensors)

    def mark_dirty(self, *tensors):
        self._dirty = set(id(t) for t in tensors)

    def set_materialize_grads(self, value: bool):
        self._materialize = bool(value)

    @property
    def saved_tensors(self):
        from ..tensor import Tensor

        saved = self._saved
        if saved is None:
            if getattr(self, "_released", False):
                raise RuntimeError(FREED_MESSAGE)
            return ()
        out = []
        for kind, obj, vc, version in saved:
            if obj is None:
                out.append(None)
                continue
            if vc[0] != version:
                if kind == "input":
                    _raise_modified(self, obj, vc[0], version)
                _raise_modified(self, None, vc[0], version, shape=obj[0].shape,
                                dtype=obj[0].dtype)
            if kind == "output":
                data, nr = obj
                t = Tensor._make(data, vc)
                t.grad_fn = self
                t._rg = True
                if nr:
                    t._out_nr = nr
                out.append(t)
            else:
                out.append(obj)
        return tuple(out)

    saved_variables = saved_tensors


class BackwardCFunction(FunctionCtx, Node):
    """Base of the node classes made for each Function subclass."""

    _fn_cls = None

    def apply(self, *grads):
        from .. import functions as F
        from ..tensor import Tensor

        if self._released:
            raise RuntimeError(FREED_MESSAGE)
        grads = list(grads)
        if self._materialize:
            for i, g in enumerate(grads):
                if g is None:
                    shape, dtype = self._out_meta[i]
                    grads[i] = F.zeros(shape, dtype=dtype)
        result = self._fn_cls.backward(self, *grads)
        if not isinstance(result, tuple):
            result = (result,)
        n = len(self.next_functions)
        if len(result) < n or any(r is not None for r in result[n:]):
            raise RuntimeError(f"function {self.name()} returned an incorrect number of gradients "
                               f"(expected {n}, got {len(result)})")
        out = []
        for i, (g, (fn, _)) in enumerate(zip(result, self.next_functions, strict=False)):
            if fn is None or g is None:
                out.append(None)
                continue
            if not isinstance(g, Tensor):
                raise TypeError(f"function {self.name()} returned a gradient of type "
                                f"{type(g).__name__} at index {i}; expected a Tensor or None")
            shape, dtype = self._in_meta[i]
            if g.shape != shape:
                try:
                    g = F.sum_to(g, shape)
                except Exception:
                    g = None
                if g is None or g.shape != shape:
                    raise RuntimeError(
                        f"Function {self.name()} returned an invalid gradient at index {i} - got "
                        f"{list(result[i].shape)} but expected shape compatible with {list(shape)}")
            if g.dtype is not dtype:
                g = g.to(dtype)
            out.append(g)
        return tuple(out)

    def _release(self):
        self._released = True
        self._saved = None


class _FunctionMeta(type):
    def __init__(cls, name, bases, attrs):
        super().__init__(name, bases, attrs)
        cls._backward_cls = type(name + "Backward", (BackwardCFunction,), {"_fn_cls": cls})


class Function(metaclass=_FunctionMeta):
    """Define an op by its forward and backward.

    >>> import tracegrad as tg
    >>> class Cube(tg.autograd.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         ctx.save_for_backward(x)
    ...         return x ** 3
    ...     @staticmethod
    ...     def backward(ctx, g):
    ...         (x,) = ctx.saved_tensors
    ...         return 3 * x ** 2 * g
    >>> x = tg.tensor([2.], requires_grad=True)
    >>> Cube.apply(x).backward()
    >>> x.grad
    tensor([12.])
    """

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("You must implement the forward function for custom "
                                  "autograd.Function.")

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError("You must implement either the backward or vjp method for "
                                  "your custom autograd.Function to use it with backward mode AD.")

    vjp = backward

    @classmethod
    def apply(cls, *args, **kwargs):
        from ..tensor import Tensor, trace_state

        tracer = trace_state.current
        ctx = cls._backward_cls.__new__(cls._backward_cls)
        ctx._to_save = ()
        ctx._non_differentiable = set()
        ctx._dirty = set()
        ctx._materialize = True
        ctx._released = False
        ctx._saved = None
        ctx._seq = next(_seq)
        ctx._pre_hooks = None
        ctx._post_hooks = None
        ctx._retain_grad = None
        ctx.metadata = None
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        record = grad_mode.is_grad_enabled() and any(ctx.needs_input_grad)
        with grad_mode.no_grad():
            raw = cls.forward(ctx, *args, **kwargs)
        single = not isinstance(raw, tuple)
        outs = (raw,) if single else raw
        if not record:
            return raw
        nf = []
        for a in args:
            if isinstance(a, Tensor) and a._rg:
                nf.append((a.grad_fn if a.grad_fn is not None else a._accumulator(), a._out_nr))
            else:
                nf.append((None, 0))
        ctx.next_functions = tuple(nf)
        ctx._in_meta = [(a.shape, a.dtype) if isinstance(a, Tensor) else None for a in args]
        ctx._out_meta = []
        ctx._n_out = len(outs)
        wrapped = []
        out_ids = {}
        arg_ids = {id(a) for a in args if isinstance(a, Tensor)}
        for nr, o in enumerate(outs):
            if not isinstance(o, Tensor):
                wrapped.append(o)
                ctx._out_meta.append(None)
                continue
            ctx._out_meta.append((o.shape, o.dtype))
            if id(o) in arg_ids and id(o) not in ctx._dirty:
                o2 = Tensor._make(o._data, o._vc)  # an input returned as is: a new alias
            else:
                o2 = o
            out_ids[id(o)] = (nr, o2)
            if id(o) not in ctx._non_differentiable and o2.dtype.is_floating_point:
                o2.grad_fn = ctx
                o2._rg = True
                if nr:
                    o2._out_nr = nr
            wrapped.append(o2)
        saved = []
        for t in ctx._to_save:
            if t is None:
                saved.append(("input", None, None, None))
            elif id(t) in out_ids:
                nr, o2 = out_ids[id(t)]
                saved.append(("output", (o2._data, nr), o2._vc, o2._vc[0]))
            else:
                saved.append(("input", t, t._vc, t._vc[0]))
        ctx._saved = saved
        ctx._to_save = ()
        if tracer is not None:
            tracer.note_custom_function(ctx, args, wrapped)
        return wrapped[0] if single else tuple(wrapped)


def once_differentiable(fn):
    """Mark a backward as not differentiable again: it runs under no_grad, and when a
    graph is being built (create_graph=True) its results carry a node that raises if
    anything tries to differentiate through them."""
    import functools

    @functools.wraps(fn)
    def wrapper(ctx, *args):
        from ..tensor import Tensor

        building = grad_mode.is_grad_enabled()
        with grad_mode.no_grad():
            result = fn(ctx, *args)
        if not building:
            return result
        deps = [a for a in args if isinstance(a, Tensor) and a.requires_grad]
        deps += [t for t in ctx.saved_tensors if isinstance(t, Tensor) and t.requires_grad]
        if not deps:
            return result
        def wrap(r):
            return _OnceDifferentiableError.apply(r, *deps) if isinstance(r, Tensor) else r

        return tuple(map(wrap, result)) if isinstance(result, tuple) else wrap(result)
    return wrapper


class _OnceDifferentiableError(Function):
    """Marks the result of a @once_differentiable backward inside a recorded graph."""

    @staticmethod
    def forward(ctx, result, *deps):
        return result.clone()

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError("trying to differentiate twice a function that was marked with "
                           "@once_differentiable; write its backward with differentiable "
                           "tracegrad ops (and drop the decorator) to support double backward")


