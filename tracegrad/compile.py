"""``@tracegrad.compile``: trace once, run as one XLA program, equal to eager.

A call looks up its input signature (shapes, dtypes, requires_grad, grad mode,
static Python values; Python floats are dynamic) in a cache. A miss traces the
function (which runs it eagerly: the first call's results *are* eager's), then
the graph goes through the passes and is lowered to jax and jitted on the next
call. A hit checks the guards on lifted state (parameters, optimizer buffers,
``.grad`` slots), runs the XLA program, and writes updated state back.
"""
from __future__ import annotations

import builtins
import collections
import contextlib
import functools
import logging
import os
import sys
import threading
import time
import warnings
import weakref

import numpy as np

from . import dtypes
from ._storage import (
    array,
    defer,
    defer_new,
    is_private,
    lazy,
    lookup,
    make_writable,
    meta,
    remember,
)
from .autograd._op_hooks import state as _op_state
from .autograd.grad_mode import _state as _grad_state, is_grad_enabled
from .autograd.profiler import _record_range, record_function
from .ir.graph import Const
from .ir.tracer import GraphBreak, Tracer, user_site
from .tensor import Tensor

# ---- pytrees of arguments and results ---------------------------------------

def _flatten_args(args, kwargs):
    flat = []

    def walk(x, path):
        if isinstance(x, (list, tuple)) and not isinstance(x, Tensor):
            for i, y in enumerate(x):
                walk(y, f"{path}_{i}")
        elif isinstance(x, dict):
            for k in sorted(x, key=str):
                walk(x[k], f"{path}_{k}")
        else:
            flat.append((path, x))

    for i, a in enumerate(args):
        walk(a, f"arg{i}")
    for k in sorted(kwargs):
        walk(kwargs[k], k)
    return flat, None


_ARG_PATHS = [f"arg{i}" for i in range(16)]


def _flatten_out(x):
    if isinstance(x, Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return [y for e in x for y in _flatten_out(e)]
    if isinstance(x, dict):
        return [y for k in x for y in _flatten_out(x[k])]
    return [x]


def _rebuild(x, leaves):
    if isinstance(x, Tensor):
        return next(leaves)
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)(*[_rebuild(e, leaves) for e in x])
    if isinstance(x, (list, tuple)):
        return type(x)(_rebuild(e, leaves) for e in x)
    if isinstance(x, dict):
        return {k: _rebuild(v, leaves) for k, v in x.items()}
    return x


def _float_outputs(outs) -> frozenset:
    """Outputs computed from Python float arguments alone (``lr * 0.5``, or the float
    itself). The trace made the floats 0-d tensors so that a new value does not
    recompile, marked ``_wrapped`` as are the results of arithmetic on them alone (the
    tracer's ``bind``); eager would return floats (bools for ``lr > 0.5``) here, so
    compiled calls do too."""
    return frozenset(j for j, t in enumerate(outs) if t._wrapped)


def _with_floats(result, outs, which, given=None):
    """``result`` with its tensor leaves ``outs[j]`` for ``j`` in ``which`` as floats, and
    the 0-d tensors that stood for float arguments (``given``: id -> float) as those."""
    if not which and not given:
        return result
    given = given or {}
    leaves = [t.item() if j in which else given.get(id(t), t) for j, t in enumerate(outs)]
    return _rebuild(result, iter(leaves))


def _signature(v):
    if isinstance(v, Tensor):
        shape, dtype = meta(v)  # a deferred argument stays on the device
        return ("T", shape, dtype, v._rg)  # a NumPy dtype: hashable, prints its name
    if isinstance(v, float):
        return ("F",)
    if v is None or isinstance(v, (bool, int, str, bytes)):
        return ("S", type(v).__name__, v)
    if isinstance(v, dtypes.DType):
        return ("S", "dtype", v.name)
    return ("O", type(v).__name__, id(v))


def _aliases(flat):
    """``(i, j)`` for each tensor argument ``i`` whose array is that of an earlier one
    ``j``. A trace follows arrays (NOTE: [Concrete tracing]), so ``f(x, x)`` and
    ``f(x, y)`` are different programs: the pairs are part of the cache key."""
    first, pairs = {}, []
    for i, (_, v) in enumerate(flat):
        if isinstance(v, Tensor):
            j = first.setdefault(id(array(v)), i)
            if j != i:
                pairs.append((i, j))
    return tuple(pairs)


def _describe(path, old, new):
    if old[0] == "T" and new[0] == "T":
        if old[1] != new[1]:
            return f"{path}: shape {old[1]} -> {new[1]}"
        if old[2] != new[2]:
            return f"{path}: dtype {old[2]} -> {new[2]}"
        return f"{path}: requires_grad {old[3]} -> {new[3]}"
    return f"{path}: {old[1:] if len(old) > 1 else old[0]} -> {new[1:] if len(new) > 1 else new[0]}"


# ---- one compiled specialisation --------------------------------------------

class _Entry:
    def __init__(self, key, trace=None, result=None, eager_reason=None, paths=None,
                 flat=None, fn=None):
        self.key = key
        self.fn = fn
        # argument tensors of the tracing call, by id: a ``.grad`` slot of an argument
        # (read or written by the step) is this call's argument's, not the traced one's
        self._arg_tensors = [v for _, v in flat or () if isinstance(v, Tensor)]
        self._arg_index = {}
        for i, (_, v) in enumerate(flat or ()):
            if isinstance(v, Tensor):
                self._arg_index.setdefault(id(v), i)
        self.trace = trace
        self.result_template = result
        self.eager_reason = eager_reason
        self.paths = paths or []
        self.lowered = None
        self.stages = None
        self.timings = {}
        self.guards = []
        self._checks = []
        self._seen = {}  # input position -> weakref to the host array passed last time
        if trace is not None:
            self._make_guards()
            self._compile_checks()

    def _make_guards(self):
        tr = self.trace
        for src in tr.sources:
            if src[0] == "tensor":
                t = src[1]
                self.guards.append((f"{_name(t)}", "tensor", t, tuple(t.shape), t.dtype,
                                    t.requires_grad))
            elif src[0] == "grad":
                owner = src[1]
                g = owner._grad
                self.guards.append((f"{_name(owner)}.grad", "grad", owner,
                                    None if g is None else tuple(g.shape), None, None))
        for owner, was_none, _shape in tr.grad_reads:
            self.guards.append((f"{_name(owner)}.grad", "grad_presence", owner, was_none,
                                None, None))
        dynamic = {}  # NOTE: [Dynamic hyperparameters]: (id(group), key) -> sign guarded
        for g, k, _, signed in tr.hyperparameters:
            dynamic[id(g), k] = dynamic.get((id(g), k), False) or signed
        for obj in tr.python_state:
            self.guards.append((type(obj).__name__, "python", obj,
                                _python_values(obj, dynamic), dynamic, None))
        fn_values = _python_values(self.fn) if self.fn is not None else None
        if fn_values:
            self.guards.append((getattr(self.fn, "__name__", "f"), "python", self.fn,
                                fn_values, None, None))
        for src, value in tr.const_sources:
            desc = f"{_name(src[1])}.grad" if src[0] == "grad" else _name(src[1])
            self.guards.append((desc, "constant", src, value, None, None))
        state = {id(array(s[1])): s[1] for s in tr.sources if s[0] == "tensor"}
        if state and self._arg_index:
            # the trace read this state and its arguments as different arrays: an
            # argument that is (an alias of) that state is another program
            self.guards.append(("arguments", "not_state", state, None, None, None))

    def _owner(self, owner, flat):
        """The tensor whose ``.grad`` this call uses: ``owner``, or if ``owner`` was an
        argument of the tracing call, this call's argument in the same place."""
        i = self._arg_index.get(id(owner))
        return owner if i is None else flat[i][1]

    def _compile_checks(self):
        """Fast forms of the guards, each ``check(flat) -> bool``. Tensor guards read a
        deferred tensor's metadata without fetching its value (_storage.meta)."""
        checks = []
        for guard in self.guards:
            desc, kind, obj, a, b, c = guard
            if kind == "tensor":
                checks.append(_tensor_check(obj, a, b.np, c))
            elif kind == "python":
                checks.append(_PythonGuard(obj, a, b).holds)
            elif kind == "not_state":
                checks.append(functools.partial(_state_argument, obj))
            elif kind == "grad_presence" and id(obj) not in self._arg_index:
                checks.append(functools.partial(_grad_presence, obj, a))
            elif kind == "constant" and (obj[0] != "grad" or id(obj[1]) not in self._arg_index):
                checks.append(functools.partial(_still_constant, obj, a))
            else:  # .grad slots of arguments and shapes of .grad: checked the long way
                checks.append(functools.partial(self._guard_holds, guard))
        self._checks = checks

    def _guard_holds(self, guard, flat):
        return self._describe_failure(flat, only=guard) is None

    def check_guards(self, flat):
        """None when every guard holds, else a description of the first that fails."""
        for check in self._checks:
            if not check(flat):
                return self._describe_failure(flat)
        return None

    def _describe_failure(self, flat, only=None):
        for desc, kind, obj, a, b, c in (only,) if only is not None else self.guards:
            if kind == "tensor":
                if tuple(obj.shape) != a:
                    return f"{desc}: shape {a} -> {tuple(obj.shape)}"
                if obj.dtype is not b:
                    return f"{desc}: dtype {b} -> {obj.dtype}"
                if obj.requires_grad != c:
                    return f"{desc}: requires_grad {c} -> {obj.requires_grad}"
            elif kind == "grad":
                g = self._owner(obj, flat)._grad
                if g is None or tuple(g.shape) != a:
                    return f"{desc}: {a} -> {None if g is None else tuple(g.shape)}"
            elif kind == "grad_presence":
                g = self._owner(obj, flat)._grad
                if (g is None) != a:
                    return f"{desc}: {'None' if a else 'a tensor'} -> " \
                           f"{'None' if g is None else 'a tensor'}"
            elif kind == "python":
                now = _python_values(obj, b)
                if now != a:
                    changed = next((k for k in a if a[k] != now.get(k, _MISSING)), "")
                    why = ("a dynamic hyperparameter: the optimizer branches on its sign"
                           if isinstance(a.get(changed), _Dynamic)
                           else "a Python value the trace baked in")
                    return (f"{desc}.{changed}: {a.get(changed)!r} -> "
                            f"{now.get(changed, '<deleted>')!r} ({why})")
            elif kind == "not_state":
                path = _state_argument(obj, flat, describe=True)
                if path is not None:
                    return f"{path}{_STATE_ARGUMENT}"
            elif kind == "constant":
                t = self._owner(obj[1], flat)._grad if obj[0] == "grad" else obj[1]
                cached = lookup(t._data) if t is not None else None
                if cached is None or cached[1] != a:
                    return f"{desc}: no longer filled with {a!r} as the last call left it"
        return None

    def build(self):
        from .codegen.jax_lower import lower
        from .passes import run_pipeline
        t0 = time.perf_counter()
        final, stages = run_pipeline(self.trace.graph)
        t1 = time.perf_counter()
        self.plan, program = _output_plan(final, self.trace)
        # state the call overwrites is donated: XLA may reuse its buffer for the result
        written = set(map(_source_key, self.trace.writes))
        self.donate = tuple(i for i, s in enumerate(self.trace.sources)
                            if s[0] in ("tensor", "arg") and _source_key(s) in written)
        self.lowered = lower(program, donate=self.donate)
        tr = self.trace
        self._pure = (not tr.writes and not tr.grad_effects and tr.autograd is None
                      and not tr.same_outputs and not tr.float_outputs
                      and all(pos == k for k, (pos, _) in enumerate(self.plan)))
        self._first_call = True
        t2 = time.perf_counter()
        self.stages = stages
        self.final = final
        self.timings.update(passes=t1 - t0, codegen=t2 - t1)
        _record_range("tracegrad::compile", t0, t2)  # a profiler event, when one runs
        from .logs import enabled, log
        if enabled("stages"):
            for name, g, _ in stages[1:]:
                log("stages", f"tracegrad.compile: {g.name} after {name}:\n{g}")

    def run(self, flat):
        if self.lowered is None:
            self.build()
        tr = self.trace
        inputs = self._inputs(flat)
        t0 = time.perf_counter()
        try:
            outs = self.lowered.fn(*inputs)
        except BaseException:
            for i in self.donate:  # a donated device value may be gone: use the host copy
                _forget_source(self.trace.sources[i], flat)
            raise
        if self._first_call:
            self._first_call = False
            self.timings["xla_first_call"] = time.perf_counter() - t0
            _record_range("tracegrad::xla_first_call", t0, time.perf_counter())
        if self._pure:  # no state to write back: just the results
            tmpl = self.result_template
            if tmpl.__class__ is Tensor:
                return _result(outs[0])
            return _rebuild(tmpl, map(_result, outs))
        del inputs  # (host arrays among them would look shared to defer())
        values = [outs[pos] if pos is not None else None for pos, _ in self.plan]
        n = tr.n_out
        results = [_result(o) for o in values[:n]]
        for j in tr.float_outputs:
            results[j] = values[j].item()  # a float, or a bool for a comparison (a > 0.5)
        k = n
        for src in tr.writes:
            kind = src[0]
            if kind == "arg":
                t = flat[src[1]][1]
            elif kind == "tensor":
                t = src[1]
            else:
                t = self._owner(src[1], flat)._grad
            const = self.plan[k][1]
            if const is not None or not defer(t, values[k]):
                _write_back(t._data, values[k], const)
            t._vc[0] += 1
            k += 1
        for owner, has in tr.grad_effects:
            owner = self._owner(owner, flat)
            if has:
                const = self.plan[k][1]
                if const is None:  # a new .grad, on the device until read
                    owner._grad = _new_tensor(values[k])
                else:
                    arr = np.full(const[1], const[0], const[2])
                    _write_back(arr, values[k], const, copy=False)
                    owner._grad = Tensor._make(arr)
                k += 1
            else:
                owner._grad = None
        outs = values
        for j, (kind, ref) in tr.same_outputs.items():  # that very tensor, as in eager
            results[j] = flat[ref][1] if kind == "arg" else results[ref] if kind == "out" \
                else ref
        if tr.autograd is not None and is_grad_enabled():
            tr.autograd.attach(results, outs[k:], flat)
        # non-tensor parts of the result keep the values they had when traced
        return _rebuild(self.result_template, iter(results))

    def _inputs(self, flat):
        inputs = []
        for src in self.trace.sources:
            kind = src[0]
            if kind == "scalar":
                inputs.append(np.float64(flat[src[1]][1]))
                continue
            if kind == "group":  # NOTE: [Dynamic hyperparameters]
                v = src[1][src[2]]
                inputs.append(np.float64(v if src[3] is None else v[src[3]]))
                continue
            if kind == "rng":  # a key from the generator the trace drew from
                from .random import default_generator
                inputs.append((src[1] if len(src) > 1 else default_generator)._key_data())
                continue
            t = (flat[src[1]][1] if kind == "arg" else src[1] if kind == "tensor"
                 else self._owner(src[1], flat)._grad)
            pair = lazy(t)
            if pair is not None:  # NOTE: [Deferred write-back]
                inputs.append(pair[1])
                continue
            arr = t._data
            cached = lookup(arr)
            if cached is None:
                pos = len(inputs)
                if pos not in self.donate and (
                        arr.size >= _KEEP_ON_DEVICE or self._seen.get(pos, _dead)() is arr) \
                        and is_private(t, held=1):  # (``arr`` here is one reference)
                    # a large input (a data batch), or one passed again: keep its device
                    # copy for the next call (NOTE: [Device cache]), unless the array is
                    # also the user's (``from_numpy``) or has views: caching makes it
                    # read-only, and a NumPy view made before would write around it
                    value = _device_put(arr)
                    remember(arr, value)
                    inputs.append(value)
                else:
                    self._seen[pos] = weakref.ref(arr)
                    # a copy: on CPU jax would use the array's memory in place, reading
                    # it after this call returns (async dispatch, and a deferred
                    # write-back no longer waits for the results) and holding it while
                    # the results live, which would make deferral back off
                    inputs.append(arr.copy())
            elif cached[0] is not None:
                inputs.append(cached[0])
            elif len(inputs) in self.donate:
                inputs.append(arr)  # never donate a shared device constant
            else:
                inputs.append(_device_constant(cached[1], arr.shape, arr.dtype))
        return inputs


_MISSING = object()
_NO_DYNAMIC: dict = {}  # (id(group), key) -> sign guarded: no dynamic hyperparameters


_STATE_ARGUMENT = " is state the compiled function reads, or an alias of it"


def _state_argument(state, flat, describe=False):
    """Fast check: no tensor argument shares its array with ``state`` (id(array) ->
    tensor). With ``describe``: the path of the first one that does, or None."""
    for path, v in flat:
        if isinstance(v, Tensor):
            arr = array(v)
            t = state.get(id(arr))
            if t is not None and array(t) is arr:
                return path if describe else False
    return None if describe else True


def _same_outputs(outs, flat, tracer) -> dict:
    """Outputs that are a tensor argument, a state tensor or an earlier output itself
    (``return x.add_(1)``, ``return model.weight``, ``return y, y``): output index ->
    ("arg", i) | ("tensor", t) | ("out", k). Compiled calls return that very tensor, after
    its write-back, as eager does."""
    known = {}
    for i, (_, v) in enumerate(flat):
        if isinstance(v, Tensor):
            known.setdefault(id(v), ("arg", i))
    for c in tracer.captured:
        if c[0][0] == "tensor":
            known.setdefault(id(c[1]), ("tensor", c[1]))
    same = {}
    for j, t in enumerate(outs):
        if id(t) in known:
            same[j] = known[id(t)]
        else:
            known[id(t)] = ("out", j)
    return same


def _aliased_output(outs, flat, tracer, same):
    """Which output (not one of ``same``) shares memory with (``detach()``, a view) a
    tensor argument, state the trace read or wrote, a ``.grad`` slot it set, or another
    output; else None. A compiled call returns a new tensor for it, so a write through
    one would miss the other."""
    others = [(path, array(v)) for path, v in flat if isinstance(v, Tensor)]
    others += [("state", c[2]) for c in tracer.captured if c[0][0] != "scalar"]
    others += [(f"{_name(o)}.grad", o._grad._data) for o in tracer.grad_writes.values()
               if o._grad is not None]
    for j, t in enumerate(outs):
        if t._wrapped or j in same:  # returned as a float, or as that very tensor
            continue
        arr = t._data
        for what, other in others:
            if np.may_share_memory(arr, other):
                return f"output {j} is {what} or shares its memory"
        others.append((f"output {j}", arr))
    return None


def _state_tensors(obj):
    """Tensors a function's closure and globals, a module or an optimizer hold."""
    Module, Optimizer = _module_types()
    if isinstance(obj, Module):
        return [*obj.parameters(), *obj.buffers()]
    if isinstance(obj, Optimizer):
        found = [p for g in obj.param_groups for p in g["params"]]
        return found + [v for st in obj.state.values() for v in st.values()
                        if isinstance(v, Tensor)]
    found = []
    _, slots, cells = _value_places(obj)
    for v in [v for *_, v in slots] + [v for _, v in cells]:
        if isinstance(v, Tensor):
            found.append(v)
        elif isinstance(v, (Module, Optimizer)):
            found += _state_tensors(v)
        elif isinstance(v, (list, tuple, dict)):
            vs = v.values() if isinstance(v, dict) else v
            found += [t for t in vs if isinstance(t, Tensor)]
    return found


def _argument_state(flat, owners):
    """The path of a tensor argument whose array is also state ``owners`` hold (a
    parameter passed to a step that also uses its model), else None."""
    args = {id(array(v)): path for path, v in flat if isinstance(v, Tensor)}
    for obj in owners:
        for t in _state_tensors(obj):
            path = args.get(id(array(t)))
            if path is not None:
                return path
    return None


def _grad_presence(owner, was_none, flat):
    return (owner._grad is None) is was_none


def _still_constant(src, value, flat):
    """The fast form of a "constant" guard on state that is not an argument."""
    t = src[1]._grad if src[0] == "grad" else src[1]
    arr = None if t is None else t.__dict__.get("_data")  # (a deferred value is no constant)
    cached = None if arr is None else lookup(arr)
    return cached is not None and cached[1] == value


def _tensor_check(t, shape, np_dtype, requires_grad):
    def check(flat):
        s, d = meta(t)
        return s == shape and d == np_dtype and t._rg is requires_grad
    return check


class _PythonGuard:
    """Guards the plain Python values a trace may have baked in (``_python_values``).

    Fast path: every place those values come from (closure cells, globals, a module's
    attributes, an optimizer's param groups) still holds the very object it held when
    traced. Otherwise the values are compared."""

    def __init__(self, obj, values, dynamic=_NO_DYNAMIC):
        self.obj, self.values, self.dynamic = obj, values, dynamic
        self.sizes, self.slots, self.cells = _value_places(obj, dynamic)
        # the compiled call reads dynamic values from these very dicts
        self.groups = list(getattr(obj, "param_groups", ())) if dynamic else []
        self.dynamic_slots = [(g, k, _Dynamic(v, dynamic[id(g), k])) for g in self.groups
                              for k, v in g.items() if (id(g), k) in dynamic]

    def holds(self, flat=None):
        for container, n in self.sizes:
            if len(container) != n:
                return _python_values(self.obj, self.dynamic) == self.values
        for d, k, v in self.slots:
            if d.get(k, _MISSING) is not v:
                return _python_values(self.obj, self.dynamic) == self.values
        for cell, v in self.cells:
            try:
                now = cell.cell_contents
            except ValueError:
                now = _MISSING
            if now is not v:
                return _python_values(self.obj, self.dynamic) == self.values
        if self.groups and any(g is not h for g, h in zip(self.obj.param_groups, self.groups,
                                                          strict=False)):
            return False
        for d, k, v in self.dynamic_slots:
            if _Dynamic(d.get(k, _MISSING), v.signed) != v:
                return False
        return True


def _value_places(obj, dynamic=_NO_DYNAMIC):
    """(containers whose size must not change, (dict, key, value) slots, (cell, value)
    pairs): where ``_python_values(obj)`` reads from, with what they hold now. An
    optimizer's dynamic hyperparameters are left out of the slots (they change every
    step); they are checked separately (``_PythonGuard.dynamic_slots``)."""
    Module, Optimizer = _module_types()
    if isinstance(obj, Optimizer):
        groups = obj.param_groups
        return ([(groups, len(groups))] + [(g, len(g)) for g in groups],
                [(g, k, v) for g in groups for k, v in g.items()
                 if (id(g), k) not in dynamic], [])
    if isinstance(obj, Module):
        d = vars(obj)
        return [(d, len(d))], [(d, k, v) for k, v in d.items()], []
    code = getattr(obj, "__code__", None)
    if code is None:
        return [], [], []
    cells = []
    for cell in getattr(obj, "__closure__", None) or ():
        try:
            cells.append((cell, cell.cell_contents))
        except ValueError:
            cells.append((cell, _MISSING))
    g = getattr(obj, "__globals__", {})
    return [], [(g, name, g.get(name, _MISSING)) for name in code.co_names], cells


@functools.cache
def _module_types():
    from .nn.module import Module
    from .optim.optimizer import Optimizer
    return Module, Optimizer
_STATIC_TYPES = (bool, int, float, str, type(None))


def _static_value(v):
    return v.__class__ in _STATIC_TYPES or (
        v.__class__ is tuple and all(x.__class__ in _STATIC_TYPES for x in v))


class _Dynamic:
    """A hyperparameter the trace reads as an input (NOTE: [Dynamic hyperparameters]):
    equal while each float in it is still a float, of the same sign when ``signed`` (the
    step's Python code branched on it); other values (an int, ...) compare as they are."""

    __slots__ = ("value", "signed", "facts")

    def __init__(self, value, signed):
        self.value, self.signed = value, signed
        self.facts = _float_facts(value, signed)

    def __eq__(self, other):
        return isinstance(other, _Dynamic) and self.facts == other.facts

    def __repr__(self):
        return repr(self.value)

    def guard_text(self):
        def text(f):
            if isinstance(f, tuple) and f and f[0] == "value":
                return f"== {f[1]!r}"
            if isinstance(f, tuple):
                return "(" + ", ".join(map(text, f)) + ")"
            if f in ("nan", "float"):
                return f"is {'a float' if f == 'float' else f}"
            return ("< 0", "== 0", "> 0")[f + 1]
        return f"{text(self.facts)} (dynamic input)"


def _float_facts(v, signed):
    if isinstance(v, float):  # (np.float64 too: a scheduler's lr * a NumPy factor)
        return "float" if not signed else "nan" if v != v else (v > 0) - (v < 0)
    if v.__class__ is tuple:
        return tuple(_float_facts(x, signed) for x in v)
    return ("value", v)


def _python_values(obj, dynamic=_NO_DYNAMIC) -> dict:
    """The plain Python values (bools, numbers, strings, None) a trace may have baked
    in: a module's attributes (``training``, a ``scale``), an optimizer's hyperparameters
    (``momentum``), a function's closure cells and the globals it names. Guarded by
    equality; the keys in ``dynamic`` (``(id(group), key)``) as ``_Dynamic``."""
    Module, Optimizer = _module_types()
    if isinstance(obj, Optimizer):
        return {f"param_groups[{i}][{k!r}]":
                _Dynamic(v, dynamic[id(g), k]) if (id(g), k) in dynamic else v
                for i, g in enumerate(obj.param_groups)
                for k, v in g.items()
                if k != "params" and ((id(g), k) in dynamic or _static_value(v))}
    if isinstance(obj, Module):
        return {k: v for k, v in vars(obj).items() if _static_value(v)}
    code = getattr(obj, "__code__", None)
    if code is None:
        return {}
    out = {}
    for name, cell in zip(code.co_freevars, getattr(obj, "__closure__", None) or (),
                          strict=False):
        try:
            v = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if _static_value(v):
            out[name] = v
    g = getattr(obj, "__globals__", {})
    for name in code.co_names:
        v = g.get(name, _MISSING)
        if v is not _MISSING and _static_value(v):
            out[name] = v
    return out


_SNAPSHOT_DEPTH = 3    # how far into containers and plain objects a snapshot looks
_SNAPSHOT_ITEMS = 1000  # a container larger than this is fingerprinted by its size only


def _python_snapshot(fn):
    """What a trace of ``fn`` could change in Python, which compiled calls would not
    repeat: the plain values (``_python_values``) of ``fn`` and of the modules and
    optimizers it can reach, and, a few levels down from what it names, the contents of
    lists, dicts, sets and deques and the plain attributes of user objects (a trainer, a
    config). Taken before and after a trace; any difference is a side effect."""
    Module, Optimizer = _module_types()
    owners, snap, seen = [fn], {}, set()
    places = _value_places(fn)
    values = [(n, v) for _, n, v in places[1]]
    values += [(name, v) for name, (_, v) in
               zip(getattr(getattr(fn, "__code__", None), "co_freevars", ()), places[2],
                   strict=False)]
    if isinstance(fn, Module):
        values.append(("self", fn))
    elif _plain_object(getattr(fn, "__self__", None)):  # a compiled method: its object
        values.append(("self", fn.__self__))

    def walk(name, v, depth):
        if id(v) in seen or depth < 0:
            return
        if isinstance(v, Module):
            seen.add(id(v))
            for m in v.modules():
                seen.add(id(m))
                if m is not fn:
                    owners.append(m)
                for k, x in vars(m).items():  # a list or dict a module keeps (history)
                    if x.__class__ in _CONTAINERS:
                        walk(f"{name}.{k}", x, depth - 1)
        elif isinstance(v, Optimizer):
            seen.add(id(v))
            owners.append(v)
        elif v.__class__ in _CONTAINERS:
            seen.add(id(v))
            items = list(v.items()) if isinstance(v, dict) else list(v)
            snap[name] = (type(v).__name__, len(items),
                          tuple(id(x) for kv in items for x in (kv if isinstance(v, dict)
                                                                 else (kv,)))
                          if len(items) <= _SNAPSHOT_ITEMS else None)
            if len(items) <= _SNAPSHOT_ITEMS:
                for i, x in enumerate(items):
                    k, x = x if isinstance(v, dict) else (i, x)
                    if x.__class__ in _CONTAINERS or isinstance(x, (Module, Optimizer)) \
                            or _plain_object(x):
                        walk(f"{name}[{k!r}]", x, depth - 1)
        elif _plain_object(v):
            seen.add(id(v))
            for k, x in vars(v).items():
                if _static_value(x):
                    snap[f"{name}.{k}"] = x
                else:
                    walk(f"{name}.{k}", x, depth - 1)

    for name, v in values:
        walk(name, v, _SNAPSHOT_DEPTH)
    for o in owners:  # (keyed by object too: two Linear layers are two owners)
        snap.update(((f"{_owner_name(o)}.{k}", id(o)), v)
                    for k, v in _python_values(o).items())
    return snap


@contextlib.contextmanager
def _output_breaks(tracer):
    """While ``tracer`` traces, ``print()`` and a logging record emitted on its thread are
    graph breaks: output compiled calls would skip (what ``_python_snapshot`` is to
    Python state)."""
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


_CONTAINERS = (list, dict, set, collections.deque)


def _plain_object(obj) -> bool:
    """An instance of a class of the user's own code (a trainer whose method is compiled,
    a config), whose plain attributes are Python state like a module's. Objects of the
    standard library and installed packages (a logger's cache, a jax object) are not."""
    Module, Optimizer = _module_types()
    return (obj is not None and hasattr(obj, "__dict__")
            and not isinstance(obj, (type, Module, Optimizer, Tensor))
            and _users_class(type(obj)))


@functools.cache
def _users_class(cls) -> bool:
    import sysconfig
    mod = sys.modules.get(cls.__module__)
    path = getattr(mod, "__file__", None)
    if mod is None or cls.__module__ == "builtins":
        return False
    if path is None:  # __main__ of an interactive session, or a namespace
        return cls.__module__ == "__main__"
    path = os.path.realpath(path)
    library = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("stdlib", "purelib",
                                                                     "platlib")}
    return not any(path.startswith(d + os.sep) for d in library) and \
        not cls.__module__.startswith("tracegrad")


def _owner_name(o):
    return getattr(o, "__name__", None) or type(o).__name__


def _side_effect(before, after):
    """A description of the first Python value a trace changed, else None."""
    for k in before.keys() | after.keys():
        old, new = before.get(k, _MISSING), after.get(k, _MISSING)
        if old is _MISSING or new is _MISSING or old != new:
            k = k[0] if isinstance(k, tuple) else k
            if isinstance(old, tuple) and isinstance(new, tuple) and len(old) == 3 \
                    and old[0] in ("list", "dict", "set", "deque"):
                return f"{k} ({old[0]}) changed: {old[1]} -> {new[1]} items"
            return f"{k}: {old!r} -> {new!r}"
    return None


def _output_plan(final, trace):
    """Which outputs the XLA program returns, and which are constants written on the host.

    State the step leaves filled with one value (``grad.zero_()``) is written with a
    NumPy fill and remembered as a constant, rather than returned from XLA."""
    from .primitives import full_p
    producers = {e.out: e for e in final.eqns}
    n_state = len(trace.writes) + sum(1 for _, has in trace.grad_effects if has)
    plan, kept = [], []
    for k, v in enumerate(final.outputs):
        const = None
        if trace.n_out <= k < trace.n_out + n_state:
            e = producers.get(v)
            if e is not None and e.prim is full_p:
                const = (e.params["value"], e.out.shape, e.out.dtype.np)
            elif isinstance(v, Const) and v.value.size and (v.value == v.value.flat[0]).all():
                const = (v.value.flat[0].item(), v.shape, v.dtype.np)
        if const is None:
            plan.append((len(kept), None))
            kept.append(v)
        else:
            plan.append((None, const))
    if len(kept) == len(final.outputs):
        return plan, final
    from .passes.dce import eliminate_dead_code
    return plan, eliminate_dead_code(final.replace(outputs=kept, output_names=None))


def _source_key(src):
    return (src[0], src[1] if src[0] in ("arg", "scalar") else id(src[1]))


def _forget_source(src, flat):
    t = flat[src[1]][1] if src[0] == "arg" else src[1]
    if lazy(t) is None:  # a deferred tensor has no host copy to fall back to
        make_writable(t._data)


def _remember_constant_state(trace, flat):
    """After the traced (eager) call: state it left filled with one value is
    remembered as such, so the next trace can specialise on it (e.g. zeroed grads)."""
    from .primitives import full_p
    producers = {e.out: e for e in trace.graph.eqns}
    n = trace.n_out
    targets = []
    for src in trace.writes:
        if src[0] == "arg":
            targets.append(flat[src[1]][1])
        elif src[0] == "tensor":
            targets.append(src[1])
        else:
            targets.append(src[1]._grad)
    targets += [owner._grad for owner, has in trace.grad_effects if has]
    for t, v in zip(targets, trace.graph.outputs[n:], strict=False):
        e = producers.get(v)
        if t is not None and e is not None and e.prim is full_p:
            remember(t._data, None, constant=e.params["value"])


_KEEP_ON_DEVICE = 4096  # elements: inputs this large keep a device copy between calls


def _new_tensor(value, result=False):
    """A new tensor holding a compiled call's device value until it is read (NOTE:
    [Deferred write-back])."""
    t = object.__new__(Tensor)
    t._vc = [0]
    defer_new(t, value, result)
    return t


def _result(value):
    return _new_tensor(value, True)


def _dead():
    return None




def _device_put(arr):
    # a copy: on CPU, jax wraps a NumPy array's memory without copying it, and the
    # cached value must not change when the array is written after make_writable
    import jax
    return jax.device_put(arr.copy())


_DEVICE_CONSTANTS: dict = {}


def _device_constant(value, shape, dtype):
    key = (repr(value), tuple(shape), np.dtype(dtype).str)
    c = _DEVICE_CONSTANTS.get(key)
    if c is None:
        import jax
        # device_put of a host array: no XLA program to compile (jnp.full would be one)
        c = _DEVICE_CONSTANTS[key] = jax.device_put(np.full(shape, value, dtype))
    return c


def _write_back(arr, value, const, copy=True):
    """Store a compiled call's result into the host array ``arr``; keep the device value."""
    if const is not None:
        cached = lookup(arr)
        if cached is not None and repr(cached[1]) == repr(const[0]):  # -0.0, nan exact
            return  # already filled with that value (a grad zeroed every step)
        make_writable(arr)
        if copy:
            arr[...] = const[0]
        remember(arr, None, constant=const[0])  # a device copy is made only if needed
    else:
        make_writable(arr)
        if copy:
            arr[...] = np.asarray(value)
        remember(arr, value)


def _name(t):
    return getattr(t, "_tg_name", None) or ("parameter" if getattr(t, "_is_param", False)
                                             else "tensor")


# ---- the public wrapper -------------------------------------------------------

# Every CompiledFunction, for inspection tools; ``tracegrad.cli`` also sets
# ``_retained`` to a list so functions made inside a script outlive it.
_registry: weakref.WeakSet[CompiledFunction] = weakref.WeakSet()
_retained: list | None = None


class CompiledFunction:
    """What ``tracegrad.compile(fn)`` returns. Call it like ``fn``."""

    def __init__(self, fn, fullgraph=False, cache_limit=8, name=None):
        self.fn = fn
        self.fullgraph = fullgraph
        self.cache_limit = cache_limit
        self.name = name or getattr(fn, "__name__", "f")
        self._cache: dict = {}
        self._profiled = False
        self.hits = 0
        self.misses = 0
        self._warned: set = set()
        self._last_key_by_site: dict = {}
        self.recompile_reasons: list = []
        self.graph_breaks: list = []
        functools.update_wrapper(self, fn)
        _registry.add(self)
        if _retained is not None:
            _retained.append(self)

    # --- cache -------------------------------------------------------------------
    def cache_info(self):
        from collections import namedtuple
        info = namedtuple("CacheInfo", ["hits", "misses", "entries"])
        return info(self.hits, self.misses, len(self._cache))

    def _key(self, flat):
        return (tuple(_signature(v) for _, v in flat), is_grad_enabled(), _aliases(flat))

    def __call__(self, *args, **kwargs):
        if _op_state.profiler is not None and not self._profiled:
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
                    sig.append(("T", d.shape, d.dtype, a._rg))  # as _signature
            else:
                d = None  # (a reference to an array makes it look shared: defer())
                flat = list(zip(_ARG_PATHS, args, strict=False))
                key = (tuple(sig), _grad_state.enabled,
                       _aliases(flat) if len(args) > 1 else ())
        if key is None:
            flat, _ = _flatten_args(args, kwargs)
            key = self._key(flat)
        entry = self._cache.get(key)
        if entry is not None:
            if entry.eager_reason is not None:
                self.hits += 1
                return self.fn(*args, **kwargs)
            failed = entry.check_guards(flat) if entry._checks else None
            if failed is None:
                self.hits += 1
                return entry.run(flat)
            if failed.endswith(_STATE_ARGUMENT):
                # a trace of this call would read that state through the argument, and
                # nothing would stop it from being reused with another argument: eager
                self._warn_once(("state argument", failed), f"tracegrad.compile: "
                                f"{self.name}: {failed}; this call runs eagerly")
                return self.fn(*args, **kwargs)
            self._report_recompile(failed)
            del self._cache[key]
        else:
            self._report_signature_change(key, flat)
        self.misses += 1
        if len(self._cache) >= self.cache_limit:
            self._warn_once("limit", f"tracegrad.compile: {self.name} recompiled "
                            f"{self.cache_limit} times (cache_limit); running it eagerly from "
                            "now on for new signatures")
            return self.fn(*args, **kwargs)
        return self._trace_and_run(args, kwargs, flat, key)

    def _report_signature_change(self, key, flat):
        if not self._cache:
            return
        prev = next(reversed(self._cache))
        reasons = []
        for (path, _), old, new in zip(flat, prev[0], key[0], strict=False):
            if old != new:
                reasons.append(_describe(path, old, new))
        if prev[1] != key[1]:
            reasons.append(f"grad mode {prev[1]} -> {key[1]}")
        if prev[2] != key[2]:
            reasons.append(f"arguments sharing an array (position, first position) "
                           f"{prev[2]} -> {key[2]}")
        if len(prev[0]) != len(key[0]):
            reasons.append(f"number of inputs {len(prev[0])} -> {len(key[0])}")
        if reasons:
            self._report_recompile("; ".join(reasons))

    def _report_recompile(self, reason):
        self.recompile_reasons.append(reason)
        site = user_site(3)
        if (site, "recompile") not in self._warned:
            self._warned.add((site, "recompile"))
            from .logs import log
            log("recompiles", f"tracegrad.compile: recompiling {self.name} at {site}: {reason}")

    def _warn_once(self, key, msg):
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(msg, stacklevel=3)

    # --- tracing -----------------------------------------------------------------
    def _trace_and_run(self, args, kwargs, flat, key):
        tracer = Tracer(self.fullgraph, name=self.name)
        t0 = time.perf_counter()
        # Python floats become 0-d tensor inputs, so a new value does not recompile
        float_map = {}
        for i, (_path, v) in enumerate(flat):
            if isinstance(v, float):
                float_map[i] = Tensor._make(np.asarray(v, np.float64))
        call_args, call_kwargs = _substitute_floats(args, kwargs, float_map, flat)
        before = _python_snapshot(self.fn)
        try:
            with tracer, _output_breaks(tracer):
                for i, (path, v) in enumerate(flat):
                    if isinstance(v, Tensor):
                        tracer.add_arg(v, path, i)
                    elif i in float_map:
                        tracer.add_scalar(float_map[i], path, i)
                result = self.fn(*call_args, **call_kwargs)
                outs = [t for t in _flatten_out(result) if isinstance(t, Tensor)]
                tracer.check_views(outs)
                if not tracer.ran_backward and any(t.requires_grad for t in outs) \
                        and tracer.custom_function_reached(outs):
                    tracer.graph_break("an output's gradient goes through a custom "
                                       "autograd.Function, whose backward is Python; call "
                                       "backward() inside the compiled function, or compile "
                                       "the code around it", depth=3)
        except BaseException:
            tracer.rollback()
            raise
        trace_seconds = time.perf_counter() - t0
        given = {id(t): flat[i][1] for i, t in float_map.items()}
        changed = _side_effect(before, _python_snapshot(self.fn))
        reason = None
        if changed is not None:
            # compiled calls would not repeat it: run such calls eagerly
            reason = f"a Python side effect ({changed}), which compiled calls would skip"
        elif tracer.break_reason is None:
            same = _same_outputs(outs, flat, tracer)
            shared = _aliased_output(outs, flat, tracer, same)
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
            from .logs import log
            log("breaks", f"tracegrad.compile: graph break at {site}: {reason}")
            self._cache[key] = _Entry(key, eager_reason=f"graph break at {site}: {reason}")
            return _with_floats(result, outs, (), given)
        needs_autograd = not tracer.ran_backward and any(t.requires_grad for t in outs)
        escaped = tracer.escaped(outs)
        if escaped:
            import gc
            del escaped
            gc.collect()
            escaped = tracer.escaped(outs)
        if escaped:
            # new state was created (e.g. an optimizer's first step): trace again next call
            self._report_recompile(f"the previous call created {len(escaped)} new tensor(s) "
                                   "kept in Python state")
            return _with_floats(result, outs, (), given)
        trace = tracer.finish(outs)
        shared = _argument_state(flat, [self.fn, *trace.python_state])
        if shared is not None:
            # the trace read that state through the argument, as one array: a later call
            # with another argument would follow the argument. Not cached: it ran eagerly
            self._warn_once(("state argument", shared), f"tracegrad.compile: {self.name}: "
                            f"{shared}{_STATE_ARGUMENT}; this call ran eagerly")
            return _with_floats(result, outs, (), given)
        trace.float_outputs = _float_outputs(outs)
        trace.same_outputs = same
        trace.graph.meta["seconds"] = trace_seconds
        _remember_constant_state(trace, flat)
        if needs_autograd:
            from .compiled_autograd import split_forward_backward
            trace.autograd = split_forward_backward(trace, outs, flat)
        entry = _Entry(key, trace, result, paths=[p for p, _ in flat], flat=flat, fn=self.fn)
        entry.timings["trace"] = trace_seconds
        self._cache[key] = entry
        from .logs import log
        log("graphs", f"tracegrad.compile: traced {self.name}:\n{trace.graph}")
        return _with_floats(result, outs, trace.float_outputs)

    # --- inspection --------------------------------------------------------------
    def explain(self, *args, **kwargs) -> ExplainReport:
        """Trace (if needed), compile, and report every stage for these inputs."""
        flat, _ = _flatten_args(args, kwargs)
        key = self._key(flat)
        entry = self._cache.get(key)
        if entry is None:
            self(*args, **kwargs)
            entry = self._cache.get(key)
        if entry is None:
            # traced but not cached (new state created); the next call caches it
            self(*args, **kwargs)
            entry = self._cache.get(key)
        return ExplainReport(self, entry)


def _substitute_floats(args, kwargs, float_map, flat):
    if not float_map:
        return args, kwargs
    it = iter(range(len(flat)))

    def walk(x):
        if isinstance(x, (list, tuple)) and not isinstance(x, Tensor):
            return type(x)(walk(y) for y in x)
        if isinstance(x, dict):
            return {k: walk(x[k]) for k in sorted(x, key=str)} | {}
        i = next(it)
        return float_map.get(i, x)

    new_args = tuple(walk(a) for a in args)
    new_kwargs = {k: walk(kwargs[k]) for k in sorted(kwargs)}
    return new_args, new_kwargs


class ExplainReport:
    """What compile did for one signature: stages, source, guards, breaks, timings."""

    def __init__(self, cf: CompiledFunction, entry: _Entry | None):
        self.function = cf.name
        self.graph_breaks = list(cf.graph_breaks)
        self.recompiles = list(cf.recompile_reasons)
        self.stages = {}
        self.source = ""
        self.guards = []
        self.timings = {}
        self.eager_reason = entry.eager_reason if entry else "not compiled"
        if entry is not None and entry.trace is not None:
            if entry.lowered is None:
                entry.build()
            for name, g, _ in entry.stages:
                self.stages[name] = g
            self.stages["final"] = entry.final
            self.source = entry.lowered.source
            self.guards = [_guard_text(g) for g in entry.guards]
            sig = [f"{p}: {_sig_text(s)}"
                   for p, s in zip(entry.paths, entry.key[0], strict=False)]
            self.guards = sig + [f"grad mode enabled == {entry.key[1]}"] + self.guards
            if entry.key[2]:
                self.guards.insert(len(sig) + 1, "arguments sharing an array "
                                   f"(position, first position): {entry.key[2]}")
            self.timings = {"trace": entry.timings.get("trace", 0.0)}
            for name, _g, dt in entry.stages[1:]:
                self.timings[name] = dt
            self.timings["codegen"] = entry.timings.get("codegen", 0.0)
            if "xla_first_call" in entry.timings:
                self.timings["xla_first_call"] = entry.timings["xla_first_call"]

    def __str__(self):
        lines = [f"tracegrad.compile report for {self.function}"]
        if self.eager_reason and not self.stages:
            lines.append(f"  runs eagerly: {self.eager_reason}")
        if self.graph_breaks:
            lines.append("  graph breaks:")
            lines += [f"    {site}: {reason}" for site, reason in self.graph_breaks]
        if self.recompiles:
            lines.append("  recompiles:")
            lines += [f"    {r}" for r in self.recompiles]
        if self.stages:
            lines.append("  stages (equations):")
            lines += [f"    {n:<20} {len(g.eqns):>6}" for n, g in self.stages.items()]
            lines.append("  guards:")
            lines += [f"    {g}" for g in self.guards]
            lines.append("  timings:")
            lines += [f"    {n:<20} {t * 1e3:9.3f} ms" for n, t in self.timings.items()]
            lines.append("  final graph:")
            lines += ["    " + ln for ln in str(self.stages["final"]).splitlines()]
        return "\n".join(lines)


def _sig_text(s):
    if s[0] == "T":
        return f"tensor shape {s[1]} dtype {s[2]} requires_grad {s[3]}"
    if s[0] == "F":
        return "python float (dynamic)"
    return f"static {s[1:]!r}"


def _guard_text(g):
    desc, kind, obj, a, b, c = g
    if kind == "tensor":
        return f"{desc}: shape {a} dtype {b.name} requires_grad {c}"
    if kind == "grad":
        return f"{desc}: shape {a}"
    if kind == "python":
        return f"{desc}: " + ", ".join(
            f"{k} {v.guard_text() if isinstance(v, _Dynamic) else f'== {v!r}'}"
            for k, v in a.items())
    if kind == "not_state":
        return f"{desc}: none is one of the {len(obj)} state tensors the trace read"
    if kind == "constant":
        return f"{desc}: filled with {a!r}"
    return f"{desc} is {'None' if a else 'not None'}"


def compile(fn=None, *, fullgraph: bool = False, cache_limit: int = 8, dynamic=None,
            backend=None, mode=None):
    """Compile ``fn`` (a training step, a model, any tensor function) to XLA.

    >>> import tracegrad as tg
    >>> @tg.compile
    ... def f(x):
    ...     return (x * 2).sin().sum()
    >>> float(f(tg.ones(3))) == float((tg.ones(3) * 2).sin().sum())
    True
    """
    if fn is None:
        return lambda f: compile(f, fullgraph=fullgraph, cache_limit=cache_limit)
    return CompiledFunction(fn, fullgraph=fullgraph, cache_limit=cache_limit)
