"""The tracer: runs the user's Python once, eagerly, and records every primitive.

NOTE: [Concrete tracing]. Tracing executes the function for real on NumPy
arrays (so the first call *is* the eager call: same values, same state left
behind) while recording each primitive into a Graph. A Var is attached to each
NumPy array the trace has seen (``vars``, keyed by array identity), so aliases
that share an array (``detach()``, ``.data``) share a Var, and an in-place write
moves the array to a new Var. Arrays the trace has not seen come from outside
the function (module parameters, optimizer state, ``.grad`` slots, globals):
they are lifted to graph inputs, and if the function writes to them they
become outputs that the compiled function writes back.

Where Python asks for a value (``.item()``, ``bool()``, ``.tolist()``,
``.numpy()``) the trace cannot continue as a graph: the tracer stops recording,
the call finishes eagerly, and the caller falls back to eager (or raises with
``fullgraph=True``). A view whose base is written in place, then read again,
stops the trace the same way. Never a silently wrong graph.
"""
from __future__ import annotations

import os
import sys
import time
import weakref

import numpy as np

from .. import dtypes
from ..tensor import Tensor, TracingContext, _compute, _track_view, record, trace_state
from .graph import Const, Eqn, Graph, Var
from .sources import (
    Arg,
    EagerDraw,
    Grad,
    GroupValue,
    Names,
    RngKey,
    Scalar,
    State,
    legal_name,
    reachable,
    tensor_name,
)

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_USER_FILE: dict = {}  # co_filename -> its basename, or None for tracegrad's own files
USER_PATHS: dict = {}  # basename -> co_filename, for showing a source line's text


def _user_file(fn: str):
    name = _USER_FILE.get(fn, False)
    if name is False:
        internal = fn.startswith(_PKG_DIR) or "importlib" in fn
        name = _USER_FILE[fn] = None if internal else os.path.basename(fn)
        if name is not None:
            USER_PATHS.setdefault(name, fn)
    return name


def source_text(site: str) -> str:
    """The text of the line ``site`` ("model.py:12") names, stripped; "" if unknown."""
    import linecache
    name, _, line = site.rpartition(":")
    path = USER_PATHS.get(name)
    if path is None or not line.isdigit():
        return ""
    return linecache.getline(path, int(line)).strip()


def user_site(depth: int = 2) -> str:
    """file:line of the innermost frame outside tracegrad (the user's code)."""
    f = sys._getframe(depth)
    while f is not None:
        name = _user_file(f.f_code.co_filename)
        if name is not None:
            return f"{name}:{f.f_lineno}"
        f = f.f_back
    return ""


def user_frame_full(depth: int = 2) -> str:
    f = sys._getframe(depth)
    while f is not None:
        fn = f.f_code.co_filename
        if not fn.startswith(_PKG_DIR) and "importlib" not in fn:
            return f"{fn}:{f.f_lineno}"
        f = f.f_back
    return "<unknown>"


class GraphBreak(Exception):
    """Raised (with fullgraph=True) where Python needs a traced value."""


class _StopTracing(Exception):
    pass


class Tracer(TracingContext):
    def __init__(self, fullgraph: bool = False, name: str = "f", eager_random: bool = False,
                 names: Names | None = None):
        self.fullgraph = fullgraph
        self.names = names if names is not None else Names()  # NOTE: [Input names]
        self.labels: dict = {}            # input Var -> its full source name
        self.module = ""                  # the module call stack's path, for new eqns
        self._modules: list = []          # [(module, path)] while their forward runs
        self.eager_random = eager_random
        self.name = name
        self.eqns: list[Eqn] = []
        self.vars: dict[int, Var] = {}
        self._keep: list = []             # arrays whose ids key ``vars``
        self.inputs: list[Var] = []
        self.input_names: list[str] = []
        self.sources: list[tuple] = []    # how to fetch each input at call time
        self.captured: list[tuple] = []   # (source, tensor, array, input var)
        self._captured_ids: set[int] = set()  # id(array) of each captured (held above)
        self.grad_owner: dict[int, Tensor] = {}
        self.grad_reads: dict[int, tuple] = {}   # id(owner) -> (owner, grad was None, shape)
        self.grad_writes: dict[int, Tensor] = {}
        self.break_reason: tuple | None = None
        self.recording = True
        self._views: dict[int, list] = {}
        self._stale: set[int] = set()
        self._created: list = []          # weakrefs of tensors made during the trace
        self._made_nodes = weakref.WeakSet()  # backward nodes made during the trace
        self._suspended = 0               # >0 while the tape runs for a grad request
        self._n_grad_groups = 0
        self.const_captures: list = []    # (source, value): state specialised as a constant
        self._snapshots: dict[int, tuple] = {}  # id(array) -> (array, copy) before first write
        self._grad_snapshots: dict[int, tuple] = {}
        self.rng_keys: dict = {}          # id(generator) -> its per-call key input
        self.leaf_versions: dict = {}     # id(leaf) -> Vars it took by in-place writes
        self.n_random = 0
        self.ran_backward = False
        self.custom_functions: list = []  # backward nodes of custom autograd.Functions
        self.python_state: dict = {}      # id -> module/optimizer whose Python values are guarded
        self.hyperparameters: dict = {}   # (id(group), key, index) -> (group, key, index, tensor)
        self.branched: set = set()        # (id(group), key): the step branched on its sign
        self.group_reads: set = set()     # (id(group), key): read by Python code itself
        self._names_used: set = set()
        self._name_next: dict = {}        # base name -> the next suffix to try
        # NOTE: [Phases]: "backward" while the autograd engine runs (autograd/engine.py),
        # "optimizer" inside Optimizer.step/zero_grad, "other" after a backward
        self._phase = "forward"
        self._phase_t0 = time.perf_counter()
        self.phase_seconds: dict = {}     # phase -> seconds spent tracing in it
        self._grad_vars: set = set()      # Vars with autograd history (for graft, below)
        self._meta: list = []             # (tensor, name, shape, dtype, rg, hooks) at capture
        self.hooked = False               # a tensor hook was registered while tracing
        self.hooked_state = None          # ... on a tensor from outside: what, for the warning
        self._scope = None                # the body being traced (NOTE: [Structured control flow])
        self._root_eqns = self.eqns       # the top level's equations, while a body records
        self._late: set = set()           # top-level inputs lifted while a body records
        self._escaped: set = set()        # ids of arrays bound only inside a finished body

    # ---- phases and the module stack ----------------------------------------
    @property
    def phase(self) -> str:
        return self._phase

    @phase.setter
    def phase(self, value: str) -> None:
        now = time.perf_counter()
        self.phase_seconds[self._phase] = (self.phase_seconds.get(self._phase, 0.0)
                                           + now - self._phase_t0)
        self._phase_t0 = now
        self._phase = value

    def enter_module(self, m) -> None:
        """``m.__call__`` starts: equations recorded until ``exit_module`` carry its path
        (``model.blocks.2.attn``): its name among the named roots, else its path under
        the module that called it (a module made or passed in the call)."""
        name = self.names.get(m)
        if name is None:
            name = type(m).__name__
            if self._modules:
                parent, ppath = self._modules[-1]
                for path, sub in parent.named_modules():
                    if sub is m and path:
                        name = f"{ppath}.{path}"
                        break
            self.names.add(m, name)
        self._modules.append((m, name))
        self.module = name

    def exit_module(self) -> None:
        self._modules.pop()
        self.module = self._modules[-1][1] if self._modules else ""

    def _add(self, e: Eqn) -> Eqn:
        e.module, e.phase = self.module, self._phase
        self.eqns.append(e)
        return e

    # ---- activation ---------------------------------------------------------
    def __enter__(self):
        if trace_state.current is not None:
            raise RuntimeError("tracegrad: a trace is already active on this thread")
        trace_state.current = self
        from .graph import gc_paused
        self._gc = gc_paused()
        self._gc.__enter__()
        return self

    def __exit__(self, *exc):
        self._gc.__exit__(*exc)
        if trace_state.current is self:
            trace_state.current = None
        return False

    # ---- inputs ---------------------------------------------------------------
    def _new_input(self, arr, dtype, source, name):
        v = Var(arr.shape, dtype)
        self.inputs.append(v)
        self.labels[v] = source.name
        if self._scope is not None:
            self._late.add(v)
        base = legal_name(name or source.name)
        n, i = base, self._name_next.get(base, 0)
        if i:
            n = f"{base}_{i}"
        while n in self._names_used:  # (from where the last one with this base stopped)
            i += 1
            n = f"{base}_{i}"
        self._name_next[base] = i + 1
        self._names_used.add(n)
        self.input_names.append(n)
        self.sources.append(source)
        return v

    def add_arg(self, t: Tensor, name: str, index: int) -> None:
        arr = t._data
        if id(arr) in self.vars:
            return
        src = Arg(index, name)
        v = self._new_input(arr, t.dtype, src, name)
        self._bind_array(arr, v)
        self._note_meta(t, name)
        if t._rg:
            self._grad_vars.add(v)
        self.captured.append((src, t, arr, v))
        self._captured_ids.add(id(arr))

    def add_scalar(self, t: Tensor, name: str, index: int) -> None:
        v = self._new_input(t._data, t.dtype, Scalar(index, name), name)
        self._bind_array(t._data, v)
        t._wrapped = True

    def hyperparameter(self, group: dict, key: str, index: int | None = None):
        """``group[key]`` (or ``group[key][index]``), a float in an optimizer's param
        group, as a 0-d float64 input that every compiled call reads from the dict.

        NOTE: [Dynamic hyperparameters]. A scheduler changes ``lr`` (OneCycleLR also
        momentum or beta1) between steps; read this way the value is data, like a float
        argument, so a new value is not a recompile. The guards leave these keys out of
        the Python-value comparison and keep only their sign (zero, positive, negative,
        nan) where the step branched on it (``if weight_decay != 0``, ``note_branch``),
        and otherwise only that it is still a float."""
        slot = (id(group), key, index)
        got = self.hyperparameters.get(slot)
        if got is not None:
            return got[3]
        value = dict.__getitem__(group, key)
        if index is not None:
            value = value[index]
        if not self.recording or self._suspended:
            return value
        t = Tensor._make(np.asarray(value, np.float64))
        source = GroupValue(group, key, index, self.names.get(group, ""))
        v = self._new_input(t._data, t.dtype, source, None)
        self._bind_array(t._data, v)
        t._wrapped = True
        self.hyperparameters[slot] = (group, key, index, t)
        return t

    def note_group_read(self, group: dict, key: str) -> None:
        """Python code read ``group[key]`` itself: its value is baked in, so a dynamic
        hyperparameter read this way is guarded by value too."""
        if self.recording and not self._suspended:
            self.group_reads.add((id(group), key))

    def note_branch(self, group: dict, key: str) -> None:
        """The step's Python code branches on ``group[key]`` (on its sign): a dynamic
        hyperparameter keeps a guard on that (NOTE: [Dynamic hyperparameters])."""
        self.branched.add((id(group), key))

    def _capture(self, t: Tensor) -> Var:
        arr = t._data
        owner = self.grad_owner.get(id(t))
        if owner is not None:
            source = Grad(owner, self.names.get(owner, ""))
        else:
            source = State(t, self.names.get(t, ""))
        name = source.name
        from .._storage import lookup
        cached = lookup(arr)
        if cached is not None and cached[1] is not None:
            # state a compiled call left filled with one value (e.g. a zeroed .grad):
            # specialise on it, guarded, instead of reading it as an input
            from ..primitives import full_p
            v = Var(arr.shape, t.dtype)
            e = Eqn(full_p, (), {"shape": arr.shape, "value": cached[1], "dtype": t.dtype}, v,
                    "state", module=self.module, phase=self._phase)
            self._root_eqns.append(e)
            if self._scope is not None:
                self._late.add(v)
            self.const_captures.append((source, cached[1]))
        else:
            v = self._new_input(arr, t.dtype, source, None)
        self._bind_array(arr, v)
        self._note_meta(t, name)
        if t._rg:
            self._grad_vars.add(v)
        self.captured.append((source, t, arr, v))
        self._captured_ids.add(id(arr))
        return v

    def _note_meta(self, t, name):
        h = t.__dict__.get("_hooks")
        self._meta.append((t, name, tuple(t.shape), t.dtype, t._rg, len(h) if h else 0))

    def note_meta_write(self, t, op) -> None:
        """An in-place op changed the shape of ``t``; on a tensor from outside the call
        that is Python state compiled calls would not change again."""
        if self.recording and self.hooked_state is None \
                and not any(r() is t for r in self._created):
            self.hooked_state = f"an in-place shape change of {tensor_name(t)}"

    def meta_change(self) -> str | None:
        if self.hooked_state is not None:
            return f"{self.hooked_state} on a tensor from outside the function"
        return self._meta_change()

    def _meta_change(self) -> str | None:
        """An argument or state tensor whose shape, dtype, requires_grad or hooks the trace
        changed (``x.unsqueeze_(0)``, ``w.requires_grad_()``, ``p.register_hook``): compiled
        calls would not change them again."""
        for t, name, shape, dtype, rg, hooks in self._meta:
            h = t.__dict__.get("_hooks")
            now = (tuple(t.shape), t.dtype, t._rg, len(h) if h else 0)
            if now != (shape, dtype, rg, hooks):
                what = ("shape" if now[0] != shape else "dtype" if now[1] is not dtype
                        else "requires_grad" if now[2] != rg else "hooks")
                return f"{name}: its {what} changed while tracing"
        return None

    def note_hook(self, t) -> None:
        """``t.register_hook`` while tracing: Python in the gradient path; on a tensor made
        before the call (a parameter), also Python state compiled calls would not change."""
        if self.recording:
            self.hooked = True
            if not any(r() is t for r in self._created):
                self.hooked_state = f"{tensor_name(t)}.register_hook"

    def _bind_array(self, arr, v):
        self.vars[id(arr)] = v
        self._keep.append(arr)

    def var_of(self, t: Tensor) -> Var:
        arr = t._data
        key = id(arr)
        v = self.vars.get(key)
        if v is None:
            v = self._capture(t)
            return v if self._scope is None else self._scope.resolve(v, t)
        if self._escaped and key in self._escaped:
            self.graph_break("a tensor made inside a cond/scan/while_loop body was used "
                             "outside it; return it from the body instead", depth=4)
        if key in self._stale:
            self.graph_break("a view was read after its base tensor was modified in place "
                             "(tracing cannot follow NumPy views)", depth=4)
        if t._rg and isinstance(v, Const) and self.recording and not self._suspended:
            # a literal that became a leaf (requires_grad_()): gradients need a Var
            from ..primitives import copy_p
            w = Var(v.shape, v.dtype)
            self._add(Eqn(copy_p, (v,), {}, w, user_site(4)))
            self.vars[key] = w
            return w
        return v if self._scope is None else self._scope.resolve(v, t)

    # ---- recording --------------------------------------------------------------
    def bind(self, prim, args, params, name):
        data = _compute(prim, args, params)
        for a in args:
            if a._data is data:
                data = data.view()
                break
        out = Tensor._make(data)
        if data.base is not None:
            _track_view(out, prim, params, args)
        record(prim, args, params, out, name)
        if out.grad_fn is not None:
            self._made_nodes.add(out.grad_fn)
        if self._suspended:
            return out
        if self.recording and prim.name in _MASKABLE:
            prim, args, params = self._mask_indexing(prim, args, params)
        if self.recording:
            in_vars = [self.var_of(a) for a in args]
            if self.recording:
                v = Var(data.shape, out.dtype)
                mask = tuple(a._rg for a in args) if out.grad_fn is not None else None
                if self._scope is not None and self._scope.diff:
                    mask = self._scope.mask(prim, in_vars, mask, v)
                self._add(Eqn(prim, in_vars, dict(params), v, user_site(3),
                              out.grad_fn.name() if out.grad_fn is not None else name, mask))
                self._bind_array(data, v)
                if mask is not None:
                    self._grad_vars.add(v)
                self._note_view(data)
                if args and all(a._wrapped for a in args):
                    out._wrapped = True  # arithmetic on Python numbers only: still one
                self._created.append(weakref.ref(out))
        return out

    def symbolic_grads(self, outputs, roots, seeds, inputs, retain_graph):
        """backward()/autograd.grad inside the trace, as grad requests.

        The tape runs for real (values for this eager call) with recording
        suspended; then one ``grad`` equation per differentiated tensor records
        the request, for the autodiff pass to expand. Returns (tensors, grads), or
        None when the recorded tape must be used instead (hooks, retain_grad,
        custom Functions, or graph parts made outside this trace).
        """
        from ..autograd.engine import _discover, run_backward
        from ..autograd.graph import AccumulateGrad, PrimitiveNode
        from .ops import grad_p

        if not self.recording or self._suspended:
            return None
        if self._scope is not None:
            self.graph_break(f"backward() inside {self._scope.what}: differentiate the "
                             "result of the structured op outside its body", depth=4)
            return None
        root_nodes = [n for n, _ in roots]
        _, nodes = _discover(root_nodes)
        for n in nodes:
            if n._pre_hooks or n._post_hooks or n._retain_grad is not None:
                return None
            if n.__class__ is AccumulateGrad:
                if n.variable._hooks:
                    return None
            elif not isinstance(n, PrimitiveNode) or n not in self._made_nodes:
                return None
        if inputs is None:
            inputs = [n.variable for n in nodes if n.__class__ is AccumulateGrad]
            inputs.sort(key=lambda t: self.var_of(t).id)
        inputs = list(inputs)
        root_vars = [self.var_of(o) for o in outputs]
        seed_vars = [self.var_of(g) for g in seeds]
        wrt_vars = [self.var_of(t) for t in inputs]
        if not self.recording:
            return None
        where = [t.grad_fn if t.grad_fn is not None else t._accumulator() for t in inputs]
        self._suspended += 1
        try:
            got = run_backward(roots, seeds, retain_graph=retain_graph, create_graph=False,
                               capture=set(where), accumulate=False)
        finally:
            self._suspended -= 1
        group = self._n_grad_groups
        self._n_grad_groups += 1
        site = user_site(3)
        grads = []
        for node, wv in zip(where, wrt_vars, strict=True):
            g = got.get(node)
            if g is None:
                grads.append(None)
                continue
            g = Tensor._make(g._data.copy())  # its own array: one Var per request
            v = Var(g.shape, g.dtype)
            self._add(Eqn(grad_p, (*root_vars, *seed_vars, wv),
                          {"n_roots": len(root_vars), "group": group}, v, site)).phase = "backward"
            self._bind_array(g._data, v)
            grads.append(g)
        return inputs, grads

    def _mask_indexing(self, prim, args, params):
        """Boolean-mask indexing makes shapes depend on data. ``x[mask] = scalar`` over
        the whole tensor is recorded as ``where(mask, scalar, x)``; other uses stop
        the trace."""
        from ..primitives import TENSOR, where_p
        n_fixed = 1 if prim.name == "getitem" else 2
        idx = args[n_fixed:]
        if not any(t.dtype is dtypes.bool_ for t in idx):
            return prim, args, params
        if prim.name == "index_put" and params["index"] == (TENSOR,) \
                and tuple(idx[0].shape) == tuple(args[0].shape) and args[1].ndim == 0:
            return where_p, (idx[0], args[1], args[0]), {}
        self.graph_break("boolean-mask indexing gives a shape that depends on the data; "
                         "use torch.where(mask, x, y) to keep shapes fixed", depth=5)
        return prim, args, params

    def _note_view(self, data):
        base = data.base
        if base is None or not isinstance(base, np.ndarray):
            return
        while isinstance(base.base, np.ndarray):
            base = base.base
        self._views.setdefault(id(base), []).append(id(data))

    def constant(self, t: Tensor) -> Tensor:
        """A tensor made inside the function from Python values: a literal."""
        if self.recording and not self._suspended:  # (not for the tape's own zeros)
            self._created.append(weakref.ref(t))  # kept in Python state: lazily made state
            arr = t._data
            if arr.size <= 1 or arr.ndim == 0:
                self._bind_array(arr, Const(arr.copy()))
            else:
                flat = arr.reshape(-1)
                if np.all(flat == flat[0]):
                    from ..primitives import full_p
                    v = Var(arr.shape, t.dtype)
                    self._add(Eqn(full_p, (), {"shape": arr.shape, "value": flat[0].item(),
                                               "dtype": t.dtype}, v, user_site(3)))
                    self._bind_array(arr, v)
                else:
                    self._bind_array(arr, Const(arr.copy()))
        return t

    def random(self, t: Tensor, dist: str, generator=None, redraw=None, **params) -> Tensor:
        """A random tensor made inside the function: fresh on every compiled call.

        Its equation reads a key that each compiled call draws from ``generator`` (the
        default one unless given), so a seeded generator makes calls repeatable. With
        ``random="eager"`` (``eager_random``) it is an input instead, drawn each call by
        ``redraw()`` from the generator's own stream: the numbers eager (and torch) draw."""
        if self.recording and self.eager_random and redraw is not None:
            self._created.append(weakref.ref(t))
            v = self._new_input(t._data, t.dtype, EagerDraw(redraw, dist), f"{dist}_draw")
            self._bind_array(t._data, v)
            return t
        if self.recording and self._scope is not None and not self._suspended:
            self.graph_break(f"{self._scope.what} draws random numbers; a body must be a "
                             "pure function of its inputs (draw outside, pass the numbers "
                             "in as xs or operands)", depth=4)
        if self.recording:
            from ..primitives import random_p
            from ..random import default_generator
            self._created.append(weakref.ref(t))
            g = default_generator if generator is None else generator
            key = self.rng_keys.get(id(g))
            if key is None:
                source = RngKey(None if g is default_generator else g)
                key = self._new_input(np.zeros((2,), np.uint32), _UINT32, source, "rng")
                self.rng_keys[id(g)] = key
            v = Var(t.shape, t.dtype)
            p = {"dist": dist, "shape": tuple(t.shape), "dtype": t.dtype, **params,
                 "index": self.n_random}
            self.n_random += 1
            self._add(Eqn(random_p, (key,), p, v, user_site(3)))
            self._bind_array(t._data, v)
        return t

    def is_literal(self, t: Tensor) -> bool:
        """Whether ``t``'s value is fixed in the graph (a literal), so reading it bakes in
        nothing that can change between calls."""
        return not self.recording or isinstance(self.vars.get(id(t._data)), Const)

    def note_alias(self, t: Tensor) -> None:
        """``t`` (a ``detach()`` or ``.data`` alias) was made during the trace: if Python
        state keeps it, the function builds state lazily (see ``escaped``)."""
        if self.recording:
            self._created.append(weakref.ref(t))

    def note_python_state(self, obj) -> None:
        """A module was called or an optimizer stepped: the Python values it reads
        (``training``, ``lr``, ...) are baked into the graph, so they are guarded."""
        self.python_state.setdefault(id(obj), obj)

    def note_custom_function(self, ctx, args, outputs) -> None:
        """A custom ``autograd.Function`` ran (its forward was recorded op by op). Its
        backward is Python: a backward run inside the trace records the tape's ops;
        outputs that keep its node need the eager tape (see ``custom_function_reached``)."""
        self.custom_functions.append(ctx)
        self._made_nodes.add(ctx)

    def note_view_node(self, node) -> None:
        """A CopySlices or AsStridedBackward0 node was made (autograd/views.py)."""
        self._made_nodes.add(node)

    def check_backward_nodes(self, nodes) -> None:
        """A backward inside the trace reaches these nodes. A node made before the call
        (an argument's ``grad_fn``, a graph kept from an earlier call) is history the
        guards do not see: the next call's argument may have another, so stop."""
        if not self.recording:
            return
        from ..autograd.graph import AccumulateGrad
        for n in nodes:
            if n.__class__ is not AccumulateGrad and n not in self._made_nodes:
                self.graph_break("backward() reaches autograd history made outside the "
                                 "compiled function (e.g. an argument with a grad_fn); "
                                 "compile the code that builds it too, or pass a detached "
                                 "leaf", depth=3)
                return

    def custom_function_reached(self, outputs) -> bool:
        """Whether a custom Function's node is in the autograd graph of ``outputs``."""
        if not self.custom_functions:
            return False
        targets = {id(c) for c in self.custom_functions}
        return any(id(node) in targets for node in _graph_nodes(outputs))

    def check_views(self, outputs) -> None:
        """After the call: an output, or state from outside the function, whose array was
        written through a view (``w[0].add_(1)``, ``x.t()[0, 1] = 5``) is not in the
        graph (tracing follows arrays, not NumPy views): stop, never a stale result."""
        if not self.recording or not self._stale:
            return
        arrays = [t._data for t in outputs] + [c[2] for c in self.captured
                                                if c[0].kind != "scalar"]
        if any(id(a) in self._stale for a in arrays):
            self.graph_break("a tensor was modified in place through a view and then "
                             "returned or kept as state (tracing cannot follow NumPy views); "
                             "write to the tensor itself (x[0] = ..., x.copy_(...))", depth=3)

    # ---- in-place writes and .grad slots ---------------------------------------
    def before_inplace(self, dst: Tensor) -> None:
        """Called before ``dst``'s array is written in place."""
        arr = dst._data
        key = id(arr)
        if self._scope is not None and self.recording and not self._suspended \
                and not self._scope.made_here(self.vars.get(key)):
            self.graph_break(f"{self._scope.what} writes in place to a tensor from outside "
                             "it; a body must be a pure function: return the new value "
                             "(as part of the carry) instead", depth=4)
            return
        if self.recording and not self._suspended and key not in self.vars:
            # state from outside written before it is read (buf.uniform_(), buf.copy_(x)):
            # lift it like any other, so the write is an output that calls write back
            self._capture(dst)
        if key not in self._snapshots and key in self._captured_ids:
            self._snapshots[key] = (arr, arr.copy())
        if not self.recording:
            return
        if arr.base is not None or key in self._views:
            root = arr
            while isinstance(root.base, np.ndarray):
                root = root.base
            for vid in self._views.get(id(root), ()):
                if vid != key:
                    self._stale.add(vid)
            if root is not arr:
                self._stale.add(id(root))

    def after_inplace(self, dst: Tensor, src: Tensor) -> None:
        """``dst``'s array now holds ``src``'s value."""
        if not self.recording:
            return
        v = self.var_of(src)
        if not self.recording:
            return
        if v.dtype is not dst.dtype:
            from ..primitives import cast_p
            w = Var(v.shape, dst.dtype)
            self._add(Eqn(cast_p, (v,), {"dtype": dst.dtype}, w, user_site(3)))
            v = w
        old = self.vars.get(id(dst._data))
        if not dst._rg and old in self._grad_vars and v not in self._grad_vars \
                and not self._suspended:
            # a write through a detached alias (``y.detach().mul_(2)``): eager's ``y`` has
            # the new value and keeps its history; the graph says the same with a graft
            from .ops import graft_p
            w = Var(v.shape, v.dtype)
            self._add(Eqn(graft_p, (v, old), {}, w, user_site(3), "GraftBackward0",
                          (False, True)))
            self._grad_vars.add(w)
            v = w
        self.vars[id(dst._data)] = v
        self._stale.discard(id(dst._data))
        if dst._rg and dst.grad_fn is None:
            # a leaf written under no_grad (nn.init, reset_parameters): later uses read
            # the new Var, and their gradients still belong to the leaf
            self.leaf_versions.setdefault(id(dst), []).append(v)

    def note_grad_read(self, owner: Tensor, g) -> None:
        if id(owner) in self.grad_writes:
            return
        self.grad_reads.setdefault(id(owner), (owner, g is None, None if g is None else g.shape))
        if g is not None:
            self.grad_owner[id(g)] = owner

    def note_grad_write(self, owner: Tensor) -> None:
        if id(owner) not in self._grad_snapshots:
            self._grad_snapshots[id(owner)] = (owner, owner._grad)
        self.grad_writes[id(owner)] = owner

    # ---- graph breaks -----------------------------------------------------------
    def concretize(self, t: Tensor, what: str):
        arr = t._data
        if self.recording:
            v = self.vars.get(id(arr))
            if not isinstance(v, Const):
                self.graph_break(f"{what} needs the value of a traced tensor", depth=4)
        return arr

    def graph_break(self, reason: str, depth: int = 3) -> None:
        site = user_frame_full(depth)
        if self._scope is not None and self._scope.what not in reason:
            reason = f"{reason} (inside {self._scope.what})"
        if self.fullgraph:
            trace_state.current = None
            self.recording = False
            raise GraphBreak(
                f"{site}: {reason}. tracegrad.compile(fullgraph=True) needs one graph: keep "
                "this computation in tensors (e.g. use torch.where instead of an if on a "
                "tensor, and return the tensor instead of calling .item()), or drop "
                "fullgraph=True to let this call run eagerly.")
        if self.break_reason is None:
            self.break_reason = (site, reason)
        self.recording = False
        trace_state.current = None

    # ---- after the call ---------------------------------------------------------
    def rollback(self) -> None:
        """Undo writes to state from outside the function (an exception was raised)."""
        from .._storage import make_writable
        for arr, copy in self._snapshots.values():
            make_writable(arr)
            arr[...] = copy
        for owner, old in self._grad_snapshots.values():
            owner._grad = old

    def escaped(self, outputs) -> list:
        """Tensors made during the trace that Python state still holds (not outputs,
        not .grad slots): a sign that the function builds new state lazily."""
        held = list(outputs)
        # tensors the outputs' autograd graphs hold are not Python state
        for node in _graph_nodes(outputs):
            held.extend(getattr(node, "inputs", None) or ())
        # nor is the base a held view keeps alive ((x * 2)[0] returned, or fed to an op)
        held.extend(v.base for v in (getattr(t, "_view", None) for t in held) if v is not None)
        keep = {id(t) for t in held}
        keep.update(id(c[1]) for c in self.captured)  # state from outside (or its alias)
        keep.update(id(o._grad) for o in self.grad_writes.values() if o._grad is not None)
        out = []
        for r in self._created:
            t = r()
            if t is not None and id(t) not in keep:
                out.append(t)
        return out

    def finish(self, outputs) -> TraceResult:
        """Build the graph: outputs, written-back state and .grad slot effects."""
        out_vars = [self.var_of(t) for t in outputs]
        writes = []
        for source, _t, arr, v in self.captured:
            if source.kind == "scalar":
                continue
            now = self.vars.get(id(arr))
            if now is not v:
                writes.append((source, now))
        grad_effects = []
        for owner in self.grad_writes.values():
            g = owner._grad
            grad_effects.append((owner, None if g is None else self.var_of(g)))
        graph_outputs = out_vars + [v for _, v in writes] + [v for _, v in grad_effects
                                                               if v is not None]
        names = ([f"out{i}" for i in range(len(out_vars))]
                 + [f"write_{legal_name(s.name)}" for s, _ in writes]
                 + [f"grad_{legal_name(self.names.get(o, tensor_name(o)))}"
                    for o, v in grad_effects if v is not None])
        labels = ([f"out{i}" for i in range(len(out_vars))]
                  + [f"new {s.name}" for s, _ in writes]
                  + [f"{self.names.get(o, tensor_name(o))}.grad"
                     for o, v in grad_effects if v is not None])
        out_labels: dict = {}
        for v, label in zip(graph_outputs, labels, strict=True):
            out_labels.setdefault(v, label)
        self.phase = self._phase  # (closes the last phase's time)
        graph = Graph(self.inputs, self.eqns, graph_outputs, self.input_names, names,
                      name=self.name, meta={"stage": "traced", "input_labels": self.labels,
                                            "output_labels": out_labels,
                                            "input_sources": dict(zip(self.inputs, self.sources,
                                                                      strict=True)),
                                            "phase_seconds": dict(self.phase_seconds)})
        result = TraceResult(graph, self.sources, len(out_vars), [s for s, _ in writes],
                             [(o, v is not None) for o, v in grad_effects],
                             list(self.grad_reads.values()), [c[1] for c in self.captured])
        result.const_sources = list(self.const_captures)
        result.python_state = list(self.python_state.values())
        result.hyperparameters = [(g, k, i, (id(g), k) in self.branched)
                                  for g, k, i, _ in self.hyperparameters.values()]
        result.leaf_versions = self.leaf_versions
        result.group_reads = self.group_reads
        result.names = self.names
        return result


    # ---- bodies of structured ops (NOTE: [Structured control flow]) -------------
    def open_body(self, what: str) -> _Body:
        """Start recording a body (``what``: "scan body step (model.py:12)") into its own
        equation list; ``close_body`` ends it."""
        body = _Body(self, self._scope, what)
        self._scope = body
        body.saved_eqns, self.eqns = self.eqns, body.eqns
        return body

    def body_input(self, t: Tensor, differentiable: bool = False) -> Var:
        """A fresh input Var of the open body, bound to ``t``'s array (which must be one
        the trace has not seen: an alias made for the body)."""
        v = Var(t._data.shape, t.dtype)
        self._bind_array(t._data, v)
        self._scope.inputs.append(v)
        if differentiable or t._rg:
            self._scope.diff.add(v)
        return v

    def close_body(self, outputs=None) -> _Body:
        """End the open body; ``outputs`` (tensors) become its results. Arrays bound only
        inside it can no longer be read (``_escaped``)."""
        body = self._scope
        try:
            if outputs is not None and self.recording:
                body.outputs = [self.var_of(t) for t in outputs]
                body.out_diff = [t._rg or v in body.diff
                                 for t, v in zip(outputs, body.outputs, strict=True)]
        finally:
            self._scope = body.parent
            self.eqns = body.saved_eqns
            for arr in self._keep[body.keep_from:]:
                if body.owns(self.vars.get(id(arr))):
                    self._escaped.add(id(arr))
        return body

    def bind_result(self, t: Tensor, v: Var) -> Tensor:
        """``t`` (a result the eager run made) is ``v`` from now on. A tensor the trace
        knows from outside the op (an operand or a captured tensor returned unchanged) is
        returned as a copy: its own array keeps its own Var."""
        key = id(t._data)
        if key in self.vars and key not in self._escaped:
            from ..primitives import copy_p
            from ..tensor import apply
            self._suspended += 1
            try:
                t = apply(copy_p, (t,))
            finally:
                self._suspended -= 1
            key = id(t._data)
        self._escaped.discard(key)
        self._bind_array(t._data, v)
        self._created.append(weakref.ref(t))
        return t


class _Body:
    """A body being recorded: its own equations and inputs, and the outer Vars it reads
    (each becomes an extra input: closure capture). A Var is the body's own when it was
    made after the body opened, unless it is a top-level input lifted meanwhile."""

    def __init__(self, tracer, parent, what):
        self.tracer = tracer
        self.parent = parent
        self.what = what
        self.start = Var((), dtypes.bool_).id
        self.eqns: list = []
        self.inputs: list = []
        self.captures: dict = {}   # outer Var -> the body's input Var for it
        self.diff: set = set()     # body Vars that carry gradient beyond ``_rg``
        self.outputs: list = []
        self.out_diff: list = []
        self.keep_from = len(tracer._keep)
        self.saved_eqns = None
        self.tensors: list = []    # the captured tensors, in capture order

    def owns(self, v) -> bool:
        return v is not None and not isinstance(v, Const) and v.id >= self.start \
            and v not in self.tracer._late

    def made_here(self, v) -> bool:
        """Made by the body's own equations (not an input: those are the caller's)."""
        return self.owns(v) and v not in self.inputs

    def resolve(self, v, t=None):
        """The body's Var for ``v`` (a capture input if ``v`` is from outside; ``t`` is
        its tensor, kept for ``captured_tensors``)."""
        if isinstance(v, Const) or self.owns(v):
            return v
        inner = self.captures.get(v)
        if inner is None:
            outer = v if self.parent is None else self.parent.resolve(v, t)
            inner = Var(v.shape, v.dtype)
            self.captures[v] = inner
            self.tensors.append(t)
            self.outer_of = getattr(self, "outer_of", {})
            self.outer_of[inner] = outer
            if outer in self.tracer._grad_vars or (self.parent is not None
                                                   and outer in self.parent.diff):
                self.diff.add(inner)
                self.tracer._grad_vars.add(inner)
        return inner

    def captured(self) -> list:
        """[(outer Var in the enclosing scope, the body's input Var)] in capture order."""
        of = getattr(self, "outer_of", {})
        return [(of[inner], inner) for inner in self.captures.values()]

    def mask(self, prim, in_vars, mask, v):
        """The grad mask of an equation in the body: an input carries gradient if its
        tensor requires grad or its Var does in every later step (a carry that becomes
        differentiable after the first step)."""
        from ..autograd import grad_mode
        if not prim.differentiable or not grad_mode.is_grad_enabled():
            return mask
        m = tuple((mask is not None and mask[i]) or iv in self.diff
                  for i, iv in enumerate(in_vars))
        if any(m):
            self.diff.add(v)
            return m
        return mask


_MASKABLE = {"getitem", "index_add", "index_put"}
_UINT32 = dtypes.DType("uint32", np.uint32, 1)
dtypes._BY_NP.setdefault(np.dtype(np.uint32), _UINT32)


def _graph_nodes(outputs):
    """Each backward node reachable from ``outputs``' grad_fns, once."""
    stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
    seen = set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        stack.extend(n for n, _ in (getattr(node, "next_functions", None) or ()))


class TraceResult:
    def __init__(self, graph, sources, n_out, writes, grad_effects, grad_reads, captured):
        self.graph = graph
        self.sources = sources
        self.n_out = n_out
        self.writes = writes
        self.grad_effects = grad_effects
        self.grad_reads = grad_reads
        self.captured = captured
        self.autograd = None  # set when calls must return outputs with a grad_fn
        self.float_outputs = frozenset()  # outputs returned as Python floats (compile)
        self.same_outputs: dict = {}  # outputs that are an input itself (compile)
        self.spent: dict = {}  # outputs whose graph a backward inside used (compile)
        self.const_sources = []
        self.python_state = []
        # (group, key, index, sign guarded) read as inputs (source "group")
        self.hyperparameters = []
        self.leaf_versions = {}  # id(leaf tensor) -> later Vars it held (see Tracer)
        self.group_reads = set()
        self.names = Names()  # NOTE: [Input names]


def trace(fn, *args, **kwargs) -> Graph:
    """Trace ``fn(*args, **kwargs)`` into a Graph (running it once, eagerly).

    >>> import tracegrad as tg
    >>> g = tg.trace(lambda x: (x * 2).sin(), tg.ones(3))
    >>> [e.prim.name for e in g.eqns]
    ['mul', 'sin']
    """
    from .._pytree import flatten_args, flatten_out
    from .sources import arg_names, display_path
    tracer = Tracer(name=getattr(fn, "__name__", "f"), names=Names(reachable(fn)))
    flat = flatten_args(args, kwargs)
    params = arg_names(fn)
    with tracer:
        for i, (path, a) in enumerate(flat):
            if isinstance(a, Tensor):
                tracer.add_arg(a, display_path(params, path), i)
        result = fn(*args, **kwargs)
    outs = [t for t in flatten_out(result) if isinstance(t, Tensor)]
    if tracer.break_reason:
        site, reason = tracer.break_reason
        raise GraphBreak(f"{site}: {reason}")
    return tracer.finish(outs).graph
