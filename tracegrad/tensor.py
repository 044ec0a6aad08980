"""Tensor, and ``apply``: the one place a primitive is run and recorded.

A Tensor wraps an array (a NumPy array in eager mode, an IR value while a
function is being traced). ``apply(prim, args, params)`` evaluates the primitive
and, when grad mode is on and an input requires grad, records the backward node
that makes the output's ``grad_fn``.
"""
from __future__ import annotations

import threading
import warnings
import weakref

import numpy as np

from . import _storage, dtypes
from ._epochs import counting
from ._quiet import QUIET as _QUIET, enter as _quiet_enter, leave as _quiet_leave
from ._storage import make_writable
from .autograd import grad_mode, views as _views
from .autograd._op_hooks import (
    apply_hooked as _apply_hooked,
    copy_tangent as _copy_tangent,
    impl as _op_impl,
    on_inplace as _on_inplace,
    state as _op_state,
)
from .autograd.graph import AccumulateGrad, RemovableHandle, _HookDict, make_node

_EMPTY: dict = {}
_grad_state = grad_mode._state


class Size(tuple):
    """A shape; prints as PyTorch's ``torch.Size([2, 3])``."""

    def __repr__(self):
        return f"torch.Size({list(self)})"

    def numel(self) -> int:
        n = 1
        for d in self:
            n *= d
        return n


# NOTE: [Tensor meta epoch]. Counts every change to an existing tensor's requires_grad,
# hooks or data (``.data =``): what a compiled call's guards on the state tensors it reads
# check (runtime/guards.TensorsGuard). While it has not moved, they hold.
META_EPOCH = [0]


class _TensorHookDict(_HookDict):
    """A tensor's hook table: adding or removing a hook moves the meta epoch."""

    __slots__ = ()
    locals().update(counting(_HookDict, META_EPOCH, ("__setitem__", "pop")))


class _TraceState(threading.local):
    """The active tracing context of this thread, if any (set by tracegrad.ir.tracer and
    passes.autodiff.GraphBuilder). Per thread: eager ops of another thread are never
    recorded into a trace, and two threads can trace at once."""

    current = None


class TracingContext:
    """What library code (modules, optimizers, the autograd engine) may tell or ask the
    active tracing context. The defaults are a context that records ops and nothing
    else (passes.autodiff.GraphBuilder); ir.tracer.Tracer overrides them."""

    recording = True
    phase = "forward"
    ran_backward = False

    def note_python_state(self, obj) -> None:
        """A module was called or an optimizer stepped: its Python values are guarded."""

    def hyperparameter(self, group: dict, key: str, index: int | None = None):
        """An optimizer hyperparameter used in arithmetic (NOTE: [Dynamic hyperparameters])."""
        value = dict.__getitem__(group, key)
        return value if index is None else value[index]

    def note_branch(self, group: dict, key: str) -> None:
        """``step()`` branches on ``group[key]``'s sign."""

    def note_group_read(self, group: dict, key: str) -> None:
        """Python code read ``group[key]`` itself (not through ``_hyper``)."""

    def note_hook(self, t) -> None:
        """``t.register_hook`` was called while tracing."""

    def note_meta_write(self, t, op) -> None:
        """An in-place op changed ``t``'s shape while tracing (``unsqueeze_``, ``t_``)."""

    def graph_break(self, reason: str, depth: int = 3) -> None:
        """Python needs a value the graph cannot give: stop recording (Tracer)."""

    def check_backward_nodes(self, nodes) -> None:
        """A backward inside the trace reaches these nodes."""

    def symbolic_grads(self, outputs, roots, seeds, inputs, retain_graph):
        """backward()/autograd.grad as grad requests, or None to run the tape."""
        return None


trace_state = _TraceState()


def apply(prim, args: tuple, params: dict = _EMPTY, name: str | None = None,
          _hooked: bool = False) -> Tensor:
    """Run primitive ``prim`` on tensors ``args``; record its backward if needed."""
    if _op_state.active and not _hooked:  # forward AD, profiler, anomaly mode (_op_hooks)
        return _apply_hooked(prim, args, params, name)
    tracer = trace_state.current
    if tracer is not None:
        return tracer.bind(prim, args, params, name)
    raw = prim.raw_impl
    if raw is not None:  # NOTE: [Quiet NumPy kernels]: NumPy's warnings off, for this call
        token = _quiet_enter(_QUIET)
        try:
            if len(args) == 1:
                data = raw(args[0]._data, **params)
            elif len(args) == 2:
                data = raw(args[0]._data, args[1]._data, **params)
            else:
                data = raw(*[a._data for a in args], **params)
        except (ValueError, IndexError, TypeError) as e:
            _raise_shape_error(prim, args, params, e)
        finally:
            _quiet_leave(token)
    else:
        try:
            if len(args) == 1:
                data = prim.impl(args[0]._data, **params)
            elif len(args) == 2:
                data = prim.impl(args[0]._data, args[1]._data, **params)
            else:
                data = prim.impl(*[a._data for a in args], **params)
        except (ValueError, IndexError, TypeError) as e:
            _raise_shape_error(prim, args, params, e)
    if data.__class__ is not np.ndarray:
        data = np.asarray(data)
    out = _new(Tensor)
    out._data = data
    out._vc = [0]
    if data.base is not None:
        _track_view(out, prim, params, args)
    if prim.differentiable and _grad_state.enabled:
        for a in args:
            if a._rg:
                node = make_node(prim, args, params, name)
                if prim.save_out:
                    node._out_data = data
                    node._out_vc = out._vc
                    node._out_version = 0
                out.grad_fn = node
                out._rg = True
                break
    return out


_new = object.__new__


_op_impl.apply = apply


# NOTE: [In-place through a view] is in autograd/views.py: views are ``_View``s (end of
# this file) that know how to remake themselves from their base, so an in-place op
# through one rebases the base's history (CopySlices), as in PyTorch.
def _track_view(out, prim, params, args):
    """``out``'s array may be a view of an input's: then it shares that input's
    version counter, as in PyTorch (an in-place write through either invalidates
    what backward saved of the other), and becomes a ``_View`` that knows how it was
    made (NOTE: [In-place through a view] in autograd/views.py)."""
    data = out._data
    for a in args:
        if np.may_share_memory(data, a._data):
            out._vc = a._vc
            out._view = _views.view_info(a, prim, params, args, _grad_state.enabled)
            out.__class__ = _View
            return


def _compute(prim, args, params):
    """The NumPy value of ``prim(*args)``, with the shape rule's error on bad input."""
    try:
        data = prim.impl(*[a._data for a in args], **params)
    except (ValueError, IndexError, TypeError) as e:
        _raise_shape_error(prim, args, params, e)
    if data.__class__ is not np.ndarray:
        data = np.asarray(data)
    return data


def _raise_shape_error(prim, args, params, e):
    prim.shape(*args, **params)  # raises the shape rule's clear error if there is one
    raise RuntimeError(f"{prim.name}: {e}") from e


def record(prim, args, params, out, name=None):
    """Attach a backward node to an already computed ``out`` (used by the tracer)."""
    if prim.differentiable and _grad_state.enabled:
        for a in args:
            if a._rg:
                node = make_node(prim, args, params, name)
                if prim.save_out:
                    node._out_data = out._data
                    node._out_vc = out._vc
                    node._out_version = out._vc[0]
                out.grad_fn = node
                out._rg = True
                break
    return out


_TORCH_TYPE_NAMES = {"float32": "Float", "float64": "Double", "int64": "Long", "int32": "Int",
                     "bool": "Bool", "float16": "Half", "int16": "Short", "int8": "Char",
                     "uint8": "Byte", "bfloat16": "BFloat16"}


def commit_inplace(self: Tensor, out: Tensor) -> Tensor:
    """Make ``self`` hold ``out``: the tail of every in-place op.

    The caller computed ``out`` functionally from ``self``. Checks come first, so a
    refused in-place op leaves ``self`` untouched.
    """
    if self._rg and self.grad_fn is None and _grad_state.enabled:
        raise RuntimeError("a leaf Variable that requires grad is being used in an in-place "
                           "operation.")
    if out.shape != self.shape:
        raise RuntimeError(f"output with shape {list(self.shape)} doesn't match the broadcast "
                           f"shape {list(out.shape)}")
    sd, od = self.dtype, out.dtype
    if od is not sd and od._category > sd._category:
        raise RuntimeError(f"result type {_TORCH_TYPE_NAMES[od.name]} can't be cast to the "
                           f"desired output type {_TORCH_TYPE_NAMES[sd.name]}")
    node = out.grad_fn
    data = self._data
    if not make_writable(data):
        raise RuntimeError("unsupported operation: more than one element of the written-to "
                           "tensor refers to a single memory location. Please clone() the "
                           "tensor before performing the operation.")
    view = self.__class__ is _View
    if view:
        old_fn = _views.check_inplace(self, node) if _grad_state.enabled else None
    if node is not None and node.inputs is not None:
        _snapshot_saved_self(node, self)
    tracer = trace_state.current
    if tracer is not None:
        tracer.before_inplace(self)
    data[...] = out._data
    if tracer is not None:
        tracer.after_inplace(self, out)
    if node is not None:
        if view:  # the base's history takes the op; the view's is rebuilt from it
            _views.rebase(self, node, old_fn)
        else:
            self.grad_fn = node
            if not self._rg:
                META_EPOCH[0] += 1
            self._rg = True
            if self._retains_grad:  # retain_grad follows the tensor to its new grad_fn
                node._retain_grad = weakref.ref(self)
        if node._out_data is not None:
            node._out_data = self._data
            node._out_vc = self._vc
    self._vc[0] += 1
    if node is not None and node._out_data is not None:
        node._out_version = self._vc[0]
    if _op_state.active:
        _on_inplace(self, out)
    return self


def _snapshot_saved_self(node, self):
    """The node saved ``self`` as an input, but self is about to be overwritten:
    give it a private copy of the old value, with the old autograd identity."""
    for i, a in enumerate(node.inputs):
        if a is self:
            old = Tensor._make(self._data.copy())
            if self._fw_grad is not None:  # forward AD over the backward needs it
                _copy_tangent(old, self)
            if trace_state.current is not None:
                trace_state.current.after_inplace(old, self)
            old.grad_fn = self.grad_fn
            old._rg = self._rg
            if self.grad_fn is None and self._rg:
                old._acc = self._acc
            inputs = list(node.inputs)
            inputs[i] = old
            node.inputs = tuple(inputs)
            node._saved = tuple((old._vc, old._vc[0], old) if t is self else (vc, v, t)
                                for vc, v, t in node._saved)


class Tensor:
    """An n-dimensional array that can record the operations applied to it.

    >>> import tracegrad as tg
    >>> x = tg.tensor([1., 2., 3.], requires_grad=True)
    >>> (x * x).sum().backward()
    >>> x.grad
    tensor([2., 4., 6.])
    """

    # class-level defaults: a new tensor only sets _data and _vc
    grad_fn = None
    _rg = False
    _grad = None
    _acc = None
    _retains_grad = False
    _hooks = None
    _is_param = False
    _out_nr = 0
    _fw_grad = None  # forward-mode tangent (autograd.forward_ad)
    _wrapped = False  # while tracing: a 0-d tensor standing in for a Python float
    __array_priority__ = 1000

    @classmethod
    def _make(cls, data, vc=None):
        t = object.__new__(Tensor)
        t._data = data
        t._vc = vc if vc is not None else [0]
        return t

    def __new__(cls, *args, **kwargs):
        # the legacy constructor: Tensor(2, 3) (zeros of that shape), Tensor([1, 2]) (data)
        from .functions import _legacy_new
        return _legacy_new(None, args, kwargs)

    def __init__(self, *args, **kwargs):
        pass  # all the work is in __new__

    # ---- basic properties -------------------------------------------------
    def _meta(self):
        """The array, or for a deferred compiled value (NOTE: [Deferred write-back]) its
        device value: shape and dtype without copying it to the host."""
        d = self.__dict__.get("_data")
        return d if d is not None else _storage.lazy(self)[1]

    @property
    def shape(self) -> Size:
        return Size(self._meta().shape)

    def size(self, dim: int | None = None):
        s = self._meta().shape
        if dim is None:
            return Size(s)
        return s[dim]

    @property
    def ndim(self) -> int:
        return len(self._meta().shape)

    def dim(self) -> int:
        return len(self._meta().shape)

    def numel(self) -> int:
        n = 1
        for d in self._meta().shape:
            n *= d
        return n

    nelement = numel

    @property
    def dtype(self) -> dtypes.DType:
        d = self._meta().dtype
        return d if d.__class__ is dtypes.DType else dtypes._BY_NP[d]

    @property
    def device(self):
        from .functions import device
        return device("cpu")

    @property
    def is_cuda(self) -> bool:
        return False

    def is_floating_point(self) -> bool:
        return self.dtype.is_floating_point

    def element_size(self) -> int:
        return self.dtype.itemsize

    def __len__(self):
        s = self._meta().shape
        if not s:
            raise TypeError("len() of a 0-d tensor")
        return s[0]

    # ---- autograd attributes ----------------------------------------------
    @property
    def requires_grad(self) -> bool:
        return self._rg

    @requires_grad.setter
    def requires_grad(self, flag: bool) -> None:
        self._set_requires_grad(flag)

    def _set_requires_grad(self, flag, setter=True):
        flag = bool(flag)
        if self.grad_fn is not None:
            if not flag or setter:
                raise RuntimeError(
                    "you can only change requires_grad flags of leaf variables."
                    + ("" if flag else " If you want to use a computed variable in a subgraph "
                       "that doesn't require differentiation use var_no_grad = var.detach()."))
            return
        if flag and not self.dtype.is_floating_point:
            raise RuntimeError("only Tensors of floating point dtype can require gradients "
                               f"(got {self.dtype}); convert first, e.g. x.float()")
        META_EPOCH[0] += 1
        self._rg = flag

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        self._set_requires_grad(requires_grad, setter=False)
        return self

    @property
    def _version(self) -> int:
        """How many times this tensor's data was modified in place."""
        return self._vc[0]

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def grad(self):
        if self.grad_fn is not None and not self._retains_grad:
            warnings.warn(
                "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. "
                "Its .grad attribute won't be populated during autograd.backward(). If you "
                "indeed want the .grad field to be populated for a non-leaf Tensor, use "
                ".retain_grad() on the non-leaf Tensor. If you access the non-leaf Tensor by "
                "mistake, make sure you access the leaf Tensor instead.", UserWarning,
                stacklevel=2)
        if trace_state.current is not None:
            trace_state.current.note_grad_read(self, self._grad)
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(f"assigned grad expected to be a Tensor or None but got "
                                f"{type(value).__name__}")
            if value.shape != self.shape:
                raise RuntimeError(f"assigned grad has data of a different size: "
                                   f"{list(value.shape)} vs {list(self.shape)}")
            if value.dtype is not self.dtype:
                raise RuntimeError(f"assigned grad has data of a different type: "
                                   f"{value.dtype} vs {self.dtype}")
        if trace_state.current is not None:
            trace_state.current.note_grad_write(self)
        self._grad = value

    @property
    def retains_grad(self) -> bool:
        return self._retains_grad

    def _accumulator(self) -> AccumulateGrad:
        acc = self._acc() if self._acc is not None else None
        if acc is None:
            acc = AccumulateGrad(self)
            self._acc = weakref.ref(acc)
            if self._hooks:
                for fn in self._hooks.values():
                    acc._add_pre_hook(fn)
        return acc

    def register_hook(self, hook) -> RemovableHandle:
        """Call ``hook(grad)`` when this tensor's gradient is computed; a non-None
        return value replaces the gradient."""
        if not self._rg:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is not None:
            node, nr = self.grad_fn, self._out_nr
            if node._n_out > 1:
                def on_output(grads, hook=hook):
                    if grads[nr] is not None:
                        r = hook(grads[nr])
                        if r is not None:
                            grads[nr] = r
                return node._add_pre_hook(on_output)
            return node._add_pre_hook(hook)
        if trace_state.current is not None:
            trace_state.current.note_hook(self)
        if self._hooks is None:
            self._hooks = _TensorHookDict()
        h = RemovableHandle(self._hooks)
        self._hooks[h.id] = hook
        acc = self._acc() if self._acc is not None else None
        if acc is not None:
            inner = acc._add_pre_hook(hook)
            outer_remove = h.remove

            def remove():
                outer_remove()
                inner.remove()
            h.remove = remove
        return h

    def retain_grad(self) -> None:
        """Populate ``.grad`` for this non-leaf tensor during backward."""
        if not self._rg:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if self.grad_fn is None or self._retains_grad:
            return
        self._retains_grad = True
        self.grad_fn._retain_grad = weakref.ref(self)

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        """Compute the gradient of this tensor w.r.t. graph leaves (see autograd.backward)."""
        from .autograd import backward
        backward(self, gradient, retain_graph, create_graph, inputs=inputs)

    def detach(self) -> Tensor:
        """A tensor sharing this one's data, cut from the graph."""
        t = Tensor._make(self._data, self._vc)
        if trace_state.current is not None:
            trace_state.current.note_alias(t)
        return t

    def detach_(self) -> Tensor:
        if self.grad_fn is not None and self._grad is None:
            pass
        self.grad_fn = None
        META_EPOCH[0] += 1
        self._rg = False
        return self

    @property
    def data(self) -> Tensor:
        t = Tensor._make(self._data)
        if trace_state.current is not None:
            trace_state.current.note_alias(t)
        return t

    @data.setter
    def data(self, value: Tensor):
        if trace_state.current is not None:
            trace_state.current.graph_break("assigning to .data")
        self.__dict__.pop("_lazy", None)  # a deferred compiled write-back is overwritten
        META_EPOCH[0] += 1
        self._data = value._data

    # ---- conversion ---------------------------------------------------------
    def numpy(self, *, force: bool = False) -> np.ndarray:
        if self._rg and not force:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. "
                               "Use tensor.detach().numpy() instead.")
        return self._concrete("numpy()")

    def _concrete(self, what: str):
        if trace_state.current is not None:
            return trace_state.current.concretize(self, what)
        d = self.__dict__.get("_data")
        # a compiled call's result is read here first, most often: fetch it directly
        return d if d is not None else _storage.materialise(self)

    def __array__(self, dtype=None, copy=None):
        if self._rg:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. "
                               "Use tensor.detach().numpy() instead.")
        a = self._concrete("__array__")
        return a if dtype is None else a.astype(dtype, copy=False)

    def item(self):
        a = self._concrete("item()")
        if a.size != 1:
            raise RuntimeError(f"a Tensor with {a.size} elements cannot be converted to Scalar")
        return a.reshape(()).item()

    def tolist(self):
        return self._concrete("tolist()").tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.dtype.is_floating_point or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __bool__(self):
        a = self._concrete("bool()")
        if a.size != 1:
            raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
        return bool(a.reshape(()).item())

    def __hash__(self):
        return id(self)

    def __iter__(self):
        if not self._data.shape:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._data.shape[0]))

    def __repr__(self):
        from ._format import tensor_repr
        return tensor_repr(self)

    def __format__(self, spec):
        if self.ndim == 0:
            return self.item().__format__(spec)
        return object.__format__(self, spec) if spec else repr(self)

    def __getattr__(self, name):
        # only reached when normal lookup fails: a deferred compiled write-back
        # (NOTE: [Deferred write-back] in _storage.py) is read for the first time
        if name == "_data" and "_lazy" in self.__dict__:
            return _storage.materialise(self)
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __deepcopy__(self, memo):
        from .functions import _deepcopy_tensor
        return _deepcopy_tensor(self, memo)

    def __reduce_ex__(self, proto):
        # torch's rebuild call (storage, offset, size, stride, ...): views of one buffer
        # pickle one storage, and tracegrad.save writes it under torch's names
        from .serialization import reduce_tensor
        return reduce_tensor(self)


class _View(Tensor):
    """A tensor whose array is a view of another tensor's; ``_view`` says how it was
    made. Its grad_fn and requires_grad are rebuilt from the base's history once the
    shared version counter has moved (NOTE: [In-place through a view] in
    autograd/views.py); other tensors keep plain attributes, so the eager hot path
    pays nothing for this."""

    _view_grad_fn = None
    _view_rg = False

    @property
    def grad_fn(self):
        if self._view.version != self._vc[0]:
            _views.refresh(self)
        return self._view_grad_fn

    @grad_fn.setter
    def grad_fn(self, node):
        self._view_grad_fn = node
        self._view.version = self._vc[0]

    @property
    def _rg(self):
        # (a view made under no_grad, or by split, keeps its flag: PyTorch's would say
        # True with no grad_fn when its base requires grad, and then get no gradient)
        if self._view.version != self._vc[0] and self._view.kind is None:
            _views.refresh(self)
        return self._view_rg

    @_rg.setter
    def _rg(self, flag):
        self._view_rg = flag



def _not_a_view(t: Tensor) -> Tensor:
    """``t``, an op's result that is a NumPy view of the op's own intermediate (the
    reshape after a matmul), as a plain tensor: in PyTorch it is not a view, so an
    in-place op on it is an ordinary one. It keeps sharing the intermediate's version
    counter, which a backward node may have saved."""
    if t.__class__ is _View:
        grad_fn, rg = t.grad_fn, t._rg
        for k in ("_view", "_view_grad_fn", "_view_rg"):
            t.__dict__.pop(k, None)
        t.__class__ = Tensor
        if grad_fn is not None:
            t.grad_fn = grad_fn
        if rg:
            t._rg = True
    return t

from . import _tensor_methods  # noqa: E402,F401  (attaches the op methods)
