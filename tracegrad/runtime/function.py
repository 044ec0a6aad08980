"""``tracegrad.compile``: the compiled function, its cache, and the tracing call.

A call looks up its input signature (shapes, dtypes, requires_grad, grad mode,
static Python values, the arguments' structure; Python floats are dynamic) in a
cache. A miss traces the function, which runs it eagerly: the first call's results
*are* eager's. The next call builds the entry (passes, codegen, ``jax.jit``). A hit
checks the entry's guards (runtime/guards.py) and runs the XLA program.
"""
from __future__ import annotations

import builtins
import contextlib
import functools
import logging
import os
import threading
import time
import warnings
import weakref

import numpy as np

from .._pytree import flatten_args, flatten_out, structure, substitute
from .._storage import meta
from ..autograd._op_hooks import state as _op_state
from ..autograd.grad_mode import _state as _grad_state, is_grad_enabled
from ..autograd.profiler import record_function
from ..ir.sources import Names, arg_names, display_path
from ..ir.tracer import GraphBreak, Tracer, user_site
from ..tensor import Tensor, trace_state
from .entry import Entry
from .guards import STATE_ARGUMENT
from .outputs import (
    aliased_output,
    aliases,
    describe_change,
    float_outputs,
    remember_constant_state,
    same_outputs,
    signature,
    with_floats,
)
from .pystate import Snapshot, argument_objects, module_types

# Every CompiledFunction, for inspection tools; ``tracegrad.cli`` also sets
# ``_retained`` to a list so functions made inside a script outlive it.
_registry: weakref.WeakSet[CompiledFunction] = weakref.WeakSet()
_retained: list | None = None

_ARG_PATHS = [f"arg{i}" for i in range(16)]


class CompiledFunction:
    """What ``tracegrad.compile(fn)`` returns. Call it like ``fn``."""

    def __init__(self, fn, fullgraph=False, cache_limit=8, name=None, random="device",
                 placement=None):
        self.fn = fn
        self.fullgraph = fullgraph
        self.random = random
        self.cache_limit = cache_limit
        self.name = name or getattr(fn, "__name__", None) or type(fn).__name__
        # one cache per placement (runtime/sharding.py; None: one device): the mesh is part
        # of the cache key, kept outside the per-call key so one-device calls pay nothing
        self._placement = placement
        self._cache: dict = {}
        self._caches: dict = {placement: self._cache}
        self._placement_change: str | None = None
        self._profiled = False
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0
        self._warned: set = set()
        self.recompile_reasons: list = []
        self.graph_breaks: list = []
        self.traces = 0         # calls that traced (each ran eagerly while recording)
        self.eager_calls = 0    # calls that ran eagerly without tracing (a cached break, ...)
        self.compiled_calls = 0  # calls that ran a compiled program
        self._params = arg_names(fn)  # names for argument paths: x, not arg0
        with contextlib.suppress(AttributeError, TypeError):
            functools.update_wrapper(self, fn)
        _registry.add(self)
        if _retained is not None:
            _retained.append(self)

    # --- placement -----------------------------------------------------------------
    @property
    def mesh(self):
        """The ``jax.sharding.Mesh`` calls run on, or None (one device)."""
        return None if self._placement is None else self._placement.mesh

    def reshard(self, mesh=None, *, axis=None, shard_state=False):
        """Run later calls on ``mesh`` (None: one device), as ``compile(fn, mesh=mesh,
        axis=axis, shard_state=shard_state)`` would. Each placement keeps its own programs
        (a new one recompiles, and says so in ``recompile_reasons``); the state moves to
        the new placement with its values at the next call. Returns ``self``."""
        from .sharding import Placement
        if shard_state and mesh is None:
            raise ValueError("tracegrad.compile: shard_state=True needs a mesh= to shard over")
        new = None if mesh is None else Placement(mesh, axis, shard_state)
        if new == self._placement:
            return self
        old, self._placement = self._placement, new
        self._cache = self._caches.setdefault(new, {})
        self._placement_change = None
        if not self._cache and any(self._caches.values()):
            self._placement_change = (f"placement changed: {old or 'one device'} -> "
                                      f"{new or 'one device'}")
        return self

    # --- cache -------------------------------------------------------------------
    def cache_info(self):
        from collections import namedtuple
        info = namedtuple("CacheInfo", ["hits", "misses", "entries"])
        return info(self.hits, self.misses, sum(map(len, self._caches.values())))

    def _key(self, flat, args, kwargs):
        return (tuple(signature(v) for _, v in flat), is_grad_enabled(), aliases(flat),
                structure(args, kwargs))

    def __call__(self, *args, **kwargs):
        if trace_state.current is not None:
            # called while this thread traces (a compiled function inside another):
            # trace through it, so the outer graph holds its equations
            return self.fn(*args, **kwargs)
        if _op_state.active:
            if _op_state.anomaly or _op_state.fw_level is not None:
                # anomaly mode and forward AD watch every op: eager does what they ask
                return self.fn(*args, **kwargs)
            if not self._profiled:
                self._profiled = True  # this call's own event; the call below runs it
                try:
                    with record_function(f"tracegrad::compiled::{self.name}"):
                        return self(*args, **kwargs)
                finally:
                    self._profiled = False
        key = None
        if not kwargs and len(args) <= len(_ARG_PATHS):  # the common case, fast
            sig = []
            for a in args:
                if a.__class__ is not Tensor:
                    break
                d = a.__dict__.get("_data")
                if d is None:  # deferred: read its metadata, keep it on the device
                    shape, dtype = meta(a)
                    sig.append(("T", shape, dtype, a._rg))
                else:
                    sig.append(("T", d.shape, d.dtype, a._rg))  # as signature()
            else:
                d = None  # (a reference to an array makes it look shared: defer())
                flat = list(zip(_ARG_PATHS, args, strict=False))
                key = (tuple(sig), _grad_state.enabled,
                       aliases(flat) if len(args) > 1 else (), None)
        if key is None:
            flat = flatten_args(args, kwargs)
            key = self._key(flat, args, kwargs)
        if self._placement is not None:  # before anything runs or changes
            self._placement.check_batch(flat, self.fn)
        entry = self._cache.get(key)
        if entry is not None:
            if entry.eager_reason is not None:
                self.hits += 1
                self.eager_calls += 1
                return self._eager(args, kwargs, flat)
            failed = entry.check_guards(flat) if entry.guards else None
            if failed is None:
                self.hits += 1
                self.compiled_calls += 1
                return entry.run(flat, (args, kwargs))
            if failed.endswith(STATE_ARGUMENT):
                # a trace of this call would read that state through the argument, and
                # nothing would stop it from being reused with another argument: eager
                failed = self.display(failed[:-len(STATE_ARGUMENT)]) + STATE_ARGUMENT
                self._warn_once(("state argument", failed), f"tracegrad.compile: "
                                f"{self.name}: {failed}; this call runs eagerly")
                self.eager_calls += 1
                return self._eager(args, kwargs, flat)
            self._report_recompile(failed)
            del self._cache[key]
        else:
            self._report_signature_change(key, flat)
        self.misses += 1
        if len(self._cache) >= self.cache_limit:
            self._warn_once("limit", f"tracegrad.compile: {self.name} recompiled "
                            f"{self.cache_limit} times (cache_limit); running it eagerly from "
                            "now on for new signatures")
            self.eager_calls += 1
            return self._eager(args, kwargs, flat)
        with self._lock:
            return self._trace_and_run(args, kwargs, flat, key)

    def _eager(self, args, kwargs, flat):
        """A call that runs eagerly; with several processes, on the global batch (as the
        tracing call does), so every process computes and leaves the same values."""
        if self._placement is not None and self._placement.multi:
            flat = self._placement.global_arguments(flat)
            args, kwargs = substitute(args, kwargs, {
                i: v for i, (_, v) in enumerate(flat) if isinstance(v, Tensor)})
        return self.fn(*args, **kwargs)

    def _report_signature_change(self, key, flat):
        if not self._cache:
            if self._placement_change is not None:
                self._report_recompile(self._placement_change)
                self._placement_change = None
            return
        prev = next(reversed(self._cache))
        reasons = []
        for (path, _), old, new in zip(flat, prev[0], key[0], strict=False):
            if old != new:
                reasons.append(_argument_change(self.display(path), old, new))
        if prev[1] != key[1]:
            reasons.append(f"grad mode {prev[1]} -> {key[1]}")
        if prev[2] != key[2]:
            reasons.append(f"arguments sharing memory (position, first position) "
                           f"{prev[2]} -> {key[2]}")
        if len(prev[0]) != len(key[0]):
            reasons.append(f"number of inputs {len(prev[0])} -> {len(key[0])}")
        elif not reasons and prev[3] != key[3]:
            reasons.append("the arguments' structure (containers, keys) changed")
        if reasons:
            self._report_recompile("; ".join(reasons))

    def display(self, path: str) -> str:
        """An argument's name in messages and graphs: ``x``, not ``arg0``."""
        return display_path(self._params, path)

    def _report_recompile(self, reason):
        self.recompile_reasons.append(reason)
        site = user_site(3)
        if (site, "recompile") not in self._warned:
            self._warned.add((site, "recompile"))
            from ..logs import log
            log("recompiles", f"tracegrad.compile: recompiling {self.name} at {site}: {reason}")

    def _warn_once(self, key, msg):
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(msg, stacklevel=3)

    # --- tracing -----------------------------------------------------------------
    def _trace_and_run(self, args, kwargs, flat, key):
        self.traces += 1
        if self._placement is not None and self._placement.multi:
            # each process holds its slice: trace (and run) the step on the global batch,
            # so every process builds the same program (NOTE: [Global-batch semantics])
            flat = self._placement.global_arguments(flat)
            args, kwargs = substitute(args, kwargs, {
                i: v for i, (_, v) in enumerate(flat) if isinstance(v, Tensor)})
        t0 = time.perf_counter()
        # Python floats become 0-d tensor inputs, so a new value does not recompile
        float_map = {}
        for i, (_path, v) in enumerate(flat):
            if isinstance(v, float):
                float_map[i] = Tensor._make(np.asarray(v, np.float64))
        call_args, call_kwargs = substitute(args, kwargs, float_map)
        before = Snapshot(self.fn, argument_objects(flat))
        r = before.reach  # NOTE: [Input names]: what the function reaches, by its names
        names = Names([*r.modules, *r.optimizers,
                       *((v, label) for *_, v, label in r.slots + r.tensor_slots
                         if isinstance(v, Tensor))])
        tracer = Tracer(self.fullgraph, name=self.name, eager_random=self.random == "eager",
                        names=names)
        try:
            with tracer, _output_breaks(tracer):
                for i, (path, v) in enumerate(flat):
                    if isinstance(v, Tensor):
                        tracer.add_arg(v, self.display(path), i)
                    elif i in float_map:
                        tracer.add_scalar(float_map[i], self.display(path), i)
                result = self.fn(*call_args, **call_kwargs)
                outs = [t for t in flatten_out(result) if isinstance(t, Tensor)]
                tracer.check_views(outs)
                if not tracer.ran_backward and any(t.requires_grad for t in outs) \
                        and tracer.custom_function_reached(outs):
                    tracer.graph_break("an output's gradient goes through a custom "
                                       "autograd.Function, whose backward is Python; call "
                                       "backward() inside the compiled function, or compile "
                                       "the code around it", depth=3)
        except GraphBreak:
            tracer.rollback()  # fullgraph=True refused to run it: nothing half-updated
            raise
        # any other exception is the user's: the tracing call ran eagerly, so it leaves
        # what eager leaves (the writes made before the raise stay)
        trace_seconds = time.perf_counter() - t0
        given = {id(t): flat[i][1] for i, t in float_map.items()}
        reason = _eager_reason(before, tracer, outs, flat, key, self.display)
        same = {}
        if reason is None and tracer.break_reason is None:
            same = same_outputs(outs, flat, tracer)
            shared = aliased_output(outs, flat, tracer, same)
            if shared is not None:
                reason = (f"{shared}, which eager returns as the same memory; compiled "
                          "calls return new tensors")
            elif any(outs[j].requires_grad for j in same) and not tracer.ran_backward:
                reason = (f"output {min(same)} is an input or state tensor itself, and the "
                          "outputs' gradients would need a compiled backward attached to it")
        if reason is not None and tracer.break_reason is None:
            code = getattr(self.fn, "__code__", None)
            site = (f"{os.path.basename(code.co_filename)}:{code.co_firstlineno}"
                    if code is not None else self.name)
            if self.fullgraph:
                raise GraphBreak(f"{site}: {reason}. tracegrad.compile(fullgraph=True) needs "
                                 "a function whose only effects are on tensors: move it out "
                                 "of the compiled function, or drop fullgraph=True to run "
                                 "such calls eagerly.")
            tracer.break_reason = (site, reason)
        if tracer.break_reason is not None:
            site, reason = tracer.break_reason
            self.graph_breaks.append((site, reason))
            self._warn_once(("break", site), f"tracegrad.compile: graph break in {self.name} "
                            f"at {site}: {reason}; this call ran eagerly and calls with the "
                            "same signature will run eagerly too")
            from ..logs import log
            log("breaks", f"tracegrad.compile: graph break at {site}: {reason}")
            self._cache[key] = Entry(key, eager_reason=f"graph break at {site}: {reason}")
            return with_floats(result, outs, (), given)
        needs_autograd = not tracer.ran_backward and any(t.requires_grad for t in outs)
        escaped = tracer.escaped(outs)
        if escaped:
            # tensors left in reference cycles (garbage) look held: collect the young
            # generations, where the trace's objects mostly are. A full collection costs
            # 0.1-0.3 s with jax (and torch) loaded; one the young ones miss only costs
            # another trace on the next call
            import gc
            del escaped
            gc.collect(1)
            escaped = tracer.escaped(outs)
        if escaped:
            # new state was created (e.g. an optimizer's first step): trace again next call
            self._report_recompile(f"the previous call created {len(escaped)} new tensor(s) "
                                   "kept in Python state")
            return with_floats(result, outs, (), given)
        changed = before.structure_change()
        if changed is not None:
            reason = f"a Python side effect ({changed}), which compiled calls would skip"
            self.graph_breaks.append((self.name, reason))
            self._warn_once(("break", "structure"), f"tracegrad.compile: {self.name}: {reason};"
                            " calls with this signature run eagerly")
            self._cache[key] = Entry(key, eager_reason=reason)
            return with_floats(result, outs, (), given)
        trace = tracer.finish(outs)
        shared = _argument_state(flat, before.reach, trace.python_state)
        if shared is not None:
            # the trace read that state through the argument, as one array: a later call
            # with another argument would follow the argument. Not cached: it ran eagerly
            self._warn_once(("state argument", shared), f"tracegrad.compile: {self.name}: "
                            f"{self.display(shared)}{STATE_ARGUMENT}; this call ran eagerly")
            return with_floats(result, outs, (), given)
        trace.float_outputs = float_outputs(outs)
        # results whose graph the backward inside used up: eager returns them with it
        trace.spent = {j: t.grad_fn.name() for j, t in enumerate(outs)
                       if tracer.ran_backward and t.grad_fn is not None and j not in same}
        trace.same_outputs = same
        trace.graph.meta["seconds"] = trace_seconds
        remember_constant_state(trace, _written_tensors(trace, flat))
        if needs_autograd:
            from .backward import split_forward_backward
            trace.autograd = split_forward_backward(trace, outs, flat)
        entry = Entry(key, trace, result, paths=[self.display(p) for p, _ in flat], flat=flat,
                      fn=self.fn, placement=self._placement)
        entry.timings["trace"] = trace_seconds
        self._cache[key] = entry
        from ..logs import log
        log("graphs", f"tracegrad.compile: traced {self.name}:\n{trace.graph}")
        return with_floats(result, outs, trace.float_outputs)

    # --- inspection --------------------------------------------------------------
    def explain(self, *args, **kwargs):
        """Trace (if needed), compile, and report every stage for these inputs."""
        from .explain import ExplainReport
        flat = flatten_args(args, kwargs)
        key = self._key(flat, args, kwargs)
        if not kwargs and len(args) <= len(_ARG_PATHS) and all(
                a.__class__ is Tensor for a in args):
            key = key[:3] + (None,)  # (as the fast path keys positional tensors)
        entry = self._cache.get(key)
        if entry is None:
            self(*args, **kwargs)
            entry = self._cache.get(key)
        if entry is None:
            # traced but not cached (new state created); the next call caches it
            self(*args, **kwargs)
            entry = self._cache.get(key)
        return ExplainReport(self, entry)


def _argument_change(path, old, new) -> str:
    """``x: shape (8, 4) -> (16, 4)``, ``n: 3 -> 4 (an int is baked into the graph)``,
    ``x: a tensor -> a float``."""
    if old[0] == "T" and new[0] == "T":
        return describe_change(path, old, new)
    def show(s):
        if s[0] in ("T", "F"):
            return "a tensor" if s[0] == "T" else "a Python float"
        if s[0] == "O":
            return f"a {s[1]} object"
        return repr(s[2]) if len(s) > 2 else s[0]
    if old[0] == new[0] == "O":
        return f"{path}: another {new[1]} object (an object argument is baked into the graph)"
    if old[0] == new[0] == "S" and old[1] == new[1]:
        return (f"{path}: {old[2]!r} -> {new[2]!r} ({'an' if new[1][0] in 'aeiou' else 'a'} "
                f"{new[1]} argument is baked into the graph)")
    return f"{path}: {show(old)} -> {show(new)}"


def _eager_reason(before, tracer, outs, flat, key, display=str) -> str | None:
    """Why calls with this signature must run eagerly, decided after the trace."""
    changed = before.side_effect() or tracer.meta_change()
    if changed is not None:
        # compiled calls would not repeat it: run such calls eagerly
        return f"a Python side effect ({changed}), which compiled calls would skip"
    if tracer.hooked and not tracer.ran_backward and any(t.requires_grad for t in outs):
        return ("a tensor hook registered inside the function is on the outputs' gradient "
                "path, and a compiled backward would skip its Python; call backward() inside "
                "the compiled function, or register the hook outside")
    for i, j in key[2]:
        a, b = flat[i][1], flat[j][1]
        if a._data is not b._data:
            return (f"arguments {display(flat[j][0])} and {display(flat[i][0])} share memory "
                    "(one is a view of "
                    "the other); tracing follows arrays, not views")
    return None


def _written_tensors(trace, flat):
    from ..ir.sources import Arg, Grad
    out = []
    for src in trace.writes:
        if isinstance(src, Arg):
            out.append(flat[src.index][1])
        elif isinstance(src, Grad):
            out.append(src.owner._grad)
        else:
            out.append(src.tensor)
    out += [owner._grad for owner, has in trace.grad_effects if has]
    return out


def _argument_state(flat, reach, used):
    """The path of a tensor argument whose array is also state the function holds (a
    parameter passed to a step that also uses its model), else None."""
    from .._storage import array
    args = {id(array(v)): path for path, v in flat if isinstance(v, Tensor)}
    if not args:
        return None
    Module, Optimizer = module_types()
    tensors = [v for c, k, v, _ in reach.slots if isinstance(v, Tensor)]
    for obj in [m for m, _ in reach.modules] + [o for o, _ in reach.optimizers] + list(used):
        if isinstance(obj, Module):
            tensors += [*obj.parameters(recurse=False), *obj.buffers(recurse=False)]
        elif isinstance(obj, Optimizer):
            tensors += [p for g in obj.param_groups for p in g["params"]]
            tensors += [v for st in obj.state.values() for v in st.values()
                        if isinstance(v, Tensor)]
    for t in tensors:
        path = args.get(id(array(t)))
        if path is not None:
            return path
    return None


@contextlib.contextmanager
def _output_breaks(tracer):
    """While ``tracer`` traces, ``print()`` and a logging record emitted on its thread are
    graph breaks: output compiled calls would skip (what ``Snapshot`` is to Python
    state)."""
    thread = threading.get_ident()
    real_print, real_log = builtins.print, logging.Logger._log

    def breaks(what):
        if tracer.recording and threading.get_ident() == thread:
            tracer.graph_break(f"{what} is output that compiled calls would skip; do it "
                               "outside the compiled function, or return what to report")

    def traced_print(*args, **kwargs):
        breaks("print()")
        return real_print(*args, **kwargs)

    def traced_log(self, *args, **kwargs):  # (only records the logger's level lets out)
        breaks(f"logging ({self.name})")
        return real_log(self, *args, **kwargs)

    builtins.print, logging.Logger._log = traced_print, traced_log
    try:
        yield
    finally:
        builtins.print, logging.Logger._log = real_print, real_log
