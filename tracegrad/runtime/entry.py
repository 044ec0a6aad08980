"""One compiled specialisation: its guards, its build (passes, codegen, jit), its run.

A run fetches each source's value for this call (device values where state stays
on the device), calls the XLA program, and writes the state it changed back, all
or nothing (NOTE: [Uninterruptible write-back] in faults.py).
"""
from __future__ import annotations

import time
import weakref

import numpy as np

from .._pytree import LEAF, rebuild, template
from .._storage import array, defer, is_private, lazy, lookup, remember
from ..autograd.profiler import _record_range
from ..ir.sources import Arg, EagerDraw, Grad, GroupValue, RngKey, Scalar, State
from ..tensor import Tensor
from . import faults, sharding
from .backward import mark_spent
from .device import (
    KEEP_ON_DEVICE,
    dead,
    device_constant,
    device_put,
    forget,
    new_tensor,
    result_tensor,
    write_back,
)
from .guards import (
    ConstantGuard,
    GradGuard,
    ModulesGuard,
    NotStateGuard,
    OptimizerGuard,
    PlacesGuard,
    TensorGuard,
    TensorsGuard,
    first_failure,
)
from .outputs import output_plan
from .pystate import Reach, argument_objects


class Entry:
    def __init__(self, key, trace=None, result=None, eager_reason=None, paths=None,
                 flat=None, fn=None, placement=None):
        self.key = key
        self.fn = fn
        self.placement = placement  # runtime/sharding.py: None runs on one device
        # argument tensors of the tracing call, by id: a ``.grad`` slot of an argument
        # (read or written by the step) is this call's argument's, not the traced one's
        self._objects = argument_objects(flat or ())
        self._arg_index = {}
        for i, (_, v) in enumerate(flat or ()):
            if isinstance(v, Tensor):
                self._arg_index.setdefault(id(v), i)
        self.trace = trace
        self.result_template = None if result is None else template(result)
        self.eager_reason = eager_reason
        self.paths = paths or []
        self.lowered = None
        self.stages = None
        self.timings = {}
        self.guards = []
        self._seen = {}  # input position -> weakref to the host array passed last time
        self._first_call = True
        if trace is not None:
            self.guards = self._make_guards()

    # ---- guards -------------------------------------------------------------------
    def owner_of(self, owner):
        """``call -> tensor``: ``owner``, or if ``owner`` was an argument of the tracing
        call, this call's argument in the same place (whose ``.grad`` the call uses)."""
        i = self._arg_index.get(id(owner))
        if i is None:
            return lambda call: owner
        return lambda call: call[i][1]

    def _make_guards(self):
        tr = self.trace
        guards = []
        tensors = [TensorGuard(s.name, s.tensor) for s in tr.sources if isinstance(s, State)]
        if tensors:
            guards.append(TensorsGuard(tensors))
        for src in tr.sources:
            if isinstance(src, Grad):
                g = src.owner._grad
                guards.append(GradGuard(src.name, self.owner_of(src.owner),
                                        None if g is None else tuple(g.shape)))
        for owner, was_none, _shape in tr.grad_reads:
            guards.append(GradGuard(Grad(owner, tr.names.get(owner, "")).name,
                                    self.owner_of(owner), None if was_none else (),
                                    presence_only=True))
        for src, value in tr.const_sources:
            if isinstance(src, Grad):
                get = self.owner_of(src.owner)
                guards.append(ConstantGuard(src.name, lambda c, g=get: g(c)._grad, value))
            else:
                guards.append(ConstantGuard(src.name, lambda c, t=src.tensor: t, value))
        state = {id(array(s.tensor)): s.tensor for s in tr.sources if isinstance(s, State)}
        if state and self._arg_index:
            # the trace read this state and its arguments as different arrays: an
            # argument that is (an alias of) that state is another program
            guards.append(NotStateGuard(state))
        reach = Reach(self.fn, [*tr.python_state, *self._objects])
        dynamic = {}  # NOTE: [Dynamic hyperparameters]: (id(group), key) -> sign guarded
        for g, k, _, signed in tr.hyperparameters:
            if (id(g), k) not in tr.group_reads:  # (read by Python too: guarded by value)
                dynamic[id(g), k] = dynamic.get((id(g), k), False) or signed
        stepped = {id(o) for o in tr.python_state}
        for opt, label in reach.optimizers:
            guards.append(OptimizerGuard(label, opt, dynamic, id(opt) in stepped))
        if reach.modules:
            guards.append(ModulesGuard(reach.modules))
        if reach.slots or reach.sizes or reach.arrays or reach.tensor_slots:
            guards.append(PlacesGuard(getattr(self.fn, "__name__", "f"), reach))
        return guards

    def check_guards(self, call):
        """None when every guard holds, else a description of the first that fails."""
        return first_failure(self.guards, call)

    # ---- build --------------------------------------------------------------------
    def build(self):
        from ..codegen.jax_lower import lower
        from ..passes import run_pipeline
        t0 = time.perf_counter()
        final, stages = run_pipeline(self.trace.graph)
        t1 = time.perf_counter()
        self.plan, program = output_plan(final, self.trace)
        self.program = program
        # state the call overwrites is donated: XLA may reuse its buffer for the result
        written = {s.key for s in self.trace.writes}
        self.donate = tuple(i for i, s in enumerate(self.trace.sources)
                            if isinstance(s, (State, Arg)) and s.key in written)
        self.lowered = lower(program, donate=self.donate, **self._shardings(program))
        tr = self.trace
        self._pure = (not tr.writes and not tr.grad_effects and tr.autograd is None
                      and not tr.same_outputs and not tr.float_outputs and not tr.spent
                      and all(pos == k for k, (pos, _) in enumerate(self.plan)))
        self._fetch = [_fetcher(s, self) for s in tr.sources]
        # a call that writes no state and draws nothing can run again for a double backward
        self._replayable = not tr.writes and not tr.grad_effects and not any(
            isinstance(s, (RngKey, EagerDraw)) for s in tr.sources)
        self._first_call = True
        t2 = time.perf_counter()
        self.stages = stages
        self.final = final
        self.timings.update(passes=t1 - t0, codegen=t2 - t1)
        _record_range("tracegrad::compile", t0, t2)  # a profiler event, when one runs
        from ..logs import enabled, log
        if enabled("stages"):
            for name, g, _ in stages[1:]:
                log("stages", f"tracegrad.compile: {g.name} after {name}:\n{g}")

    def _shardings(self, program):
        """``jax.jit``'s in/out shardings on a mesh (NOTE: [Global-batch semantics]): the
        written state comes back as it went in, so it stays put between calls."""
        pl = self.placement
        if pl is None:
            return {}
        sharding.USED[0] = True
        tr = self.trace
        sharded = pl.sharded_ids(tr.python_state)
        self._in_sh = [pl.for_source(s, v.shape, sharded)
                       for s, v in zip(tr.sources, program.inputs, strict=True)]
        self._local = [pl.multi and isinstance(s, Arg) for s in tr.sources]
        result = pl.replicated() if pl.multi else None  # (readable in every process)
        out = [result] * len(program.outputs)
        by_source = {s.key: sh for s, sh in zip(tr.sources, self._in_sh, strict=True)}
        k = tr.n_out
        for src in tr.writes:
            pos = self.plan[k][0]
            if pos is not None:
                out[pos] = by_source.get(src.key) or pl.for_source(
                    src, program.outputs[pos].shape, sharded)
            k += 1
        for owner, has in tr.grad_effects:
            if has:
                pos = self.plan[k][0]
                if pos is not None:  # a new .grad: placed as its owner
                    out[pos] = pl.state(program.outputs[pos].shape, owner, sharded)
                k += 1
        return {"in_shardings": tuple(self._in_sh), "out_shardings": tuple(out)}

    def placed_inputs(self, flat):
        """This call's inputs as the XLA program takes them (on the mesh, if any)."""
        inputs = self._inputs(flat)
        if self.placement is not None:
            return self.placement.put_all(inputs, self._in_sh, self._local)
        if sharding.USED[0]:
            return sharding.to_one_device(inputs)
        return inputs

    # ---- run ----------------------------------------------------------------------
    def run(self, flat, call=None):
        """Run on this call's flattened arguments; ``call`` is ``(args, kwargs)``, kept
        only for a double backward through the results (backward.py)."""
        if self._first_call:
            return self._first_run(flat, call)
        inputs = self.placed_inputs(flat)
        if self._pure:  # no state to write back, nothing donated: just the results
            outs = self.lowered.fn(*inputs)
            tmpl = self.result_template
            if tmpl is LEAF:
                return result_tensor(outs[0])
            return rebuild(tmpl, map(result_tensor, outs))
        with faults.CRITICAL:  # NOTE: [Uninterruptible write-back]
            try:
                outs = self.lowered.fn(*inputs)
            except BaseException:
                for i in self.donate:  # a donated device value may be gone: use the host copy
                    forget(self._fetch[i](flat))
                raise
            del inputs  # (host arrays among them would look shared to defer())
            return self._write_back(flat, outs, call)

    def _first_run(self, flat, call):
        """The first run: build, install the SIGINT guard, time XLA's compile and run."""
        if self.lowered is None:
            self.build()
        faults.install()
        self._first_call = False
        t0 = time.perf_counter()
        try:
            return self.run(flat, call)
        finally:
            self.timings["xla_first_call"] = time.perf_counter() - t0
            _record_range("tracegrad::xla_first_call", t0, time.perf_counter())

    def _write_back(self, flat, outs, call):
        tr = self.trace
        values = [outs[pos] if pos is not None else None for pos, _ in self.plan]
        n = tr.n_out
        results = [result_tensor(o) for o in values[:n]]
        for j in tr.float_outputs:
            results[j] = values[j].item()  # a float, or a bool for a comparison (a > 0.5)
        k = n
        for src in tr.writes:
            if isinstance(src, Grad):
                t = self.owner_of(src.owner)(flat)._grad
            else:
                t = self._fetch_tensor(src, flat)
            const = self.plan[k][1]
            if const is not None or not defer(t, values[k]):
                write_back(t._data, values[k], const)
            t._vc[0] += 1
            k += 1
        for owner, has in tr.grad_effects:
            owner = self.owner_of(owner)(flat)
            if has:
                const = self.plan[k][1]
                if const is None:  # a new .grad, on the device until read
                    owner._grad = new_tensor(values[k])
                else:
                    arr = np.full(const[1], const[0], const[2])
                    write_back(arr, values[k], const, copy=False)
                    owner._grad = Tensor._make(arr)
                k += 1
            else:
                owner._grad = None
        if tr.spent:
            mark_spent(results, tr.spent)
        for j, (kind, ref) in tr.same_outputs.items():  # that very tensor, as in eager
            results[j] = flat[ref][1] if kind == "arg" else results[ref] if kind == "out" \
                else ref
        if tr.autograd is not None:  # (grad mode is in the key: as when traced)
            replay = None
            if call is not None and self._replayable:
                replay = (self.fn, *call)
            tr.autograd.attach(results, values[k:], flat, replay)
        # non-tensor parts of the result keep the values they had when traced
        return rebuild(self.result_template, iter(results))

    @staticmethod
    def _fetch_tensor(src, flat):
        return flat[src.index][1] if isinstance(src, Arg) else src.tensor

    def _inputs(self, flat):
        inputs = []
        for pos, fetch in enumerate(self._fetch):
            got = fetch(flat)
            if not isinstance(got, Tensor):
                inputs.append(got)  # a number or a key
                continue
            t = got
            pair = lazy(t)
            if pair is not None:  # NOTE: [Deferred write-back]
                inputs.append(pair[1])
                continue
            arr = t._data
            cached = lookup(arr)
            if cached is None:
                if pos not in self.donate and (
                        arr.size >= KEEP_ON_DEVICE or self._seen.get(pos, dead)() is arr) \
                        and is_private(t, held=1):  # (``arr`` here is one reference)
                    # a large input (a data batch), or one passed again: keep its device
                    # copy for the next call (NOTE: [Device cache]), unless the array is
                    # also the user's (``from_numpy``) or has views: caching makes it
                    # read-only, and a NumPy view made before would write around it
                    value = device_put(arr) if self.placement is None else \
                        self.placement.put(arr, self._in_sh[pos], self._local[pos])
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
            elif pos in self.donate:
                inputs.append(arr)  # never donate a shared device constant
            elif self.placement is None:
                inputs.append(device_constant(cached[1], arr.shape, arr.dtype))
            else:
                inputs.append(device_constant(cached[1], arr.shape, arr.dtype,
                                              self._in_sh[pos], self.placement.put))
        return inputs


def _fetcher(src, entry):
    """``call -> value`` for one source: a tensor, or a number/key ready for XLA."""
    if isinstance(src, Arg):
        i = src.index
        return lambda call: call[i][1]
    if isinstance(src, Scalar):
        i = src.index
        return lambda call: np.float64(call[i][1])
    if isinstance(src, State):
        t = src.tensor
        return lambda call: t
    if isinstance(src, Grad):
        owner = entry.owner_of(src.owner)
        return lambda call: owner(call)._grad
    if isinstance(src, GroupValue):  # NOTE: [Dynamic hyperparameters]
        return lambda call: np.float64(src.value())
    if isinstance(src, (RngKey, EagerDraw)):  # a key, or the eager generator's numbers
        return lambda call: src.value()
    raise TypeError(f"unknown source {src!r}")
