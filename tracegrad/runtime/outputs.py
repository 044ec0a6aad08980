"""A compiled call's results: the cache key of its arguments, and what it returns.

Outputs are returned as eager returns them: floats for values made from float
arguments alone, the very tensor for an output that is an argument or state, and
never a new tensor for one that shares memory with another (such traces run
eagerly). State left filled with one value is written on the host (``output_plan``).
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from .._pytree import rebuild
from .._storage import array, meta, remember
from ..ir.graph import Const
from ..ir.sources import State, tensor_name
from ..tensor import Tensor


def signature(v):
    if isinstance(v, Tensor):
        shape, dtype = meta(v)  # a deferred argument stays on the device
        return ("T", shape, dtype, v._rg)  # a NumPy dtype: hashable, prints its name
    if isinstance(v, float):
        return ("F",)
    if v is None or isinstance(v, (bool, int, str, bytes)):
        return ("S", type(v).__name__, v)
    if isinstance(v, dtypes.DType):
        return ("S", "dtype", v.name)
    if isinstance(v, (np.integer, np.bool_, np.floating)):  # a value, baked in like an int
        return ("S", type(v).__name__, v.item())
    return ("O", type(v).__name__, id(v))


def aliases(flat):
    """``(i, j)`` for each tensor argument ``i`` whose array is that of an earlier one
    ``j`` (or a view of the same memory). A trace follows arrays (NOTE: [Concrete
    tracing]), so ``f(x, x)``, ``f(x, x[0])`` and ``f(x, y)`` are different programs:
    the pairs are part of the cache key."""
    first, pairs, seen = {}, [], []
    for i, (_, v) in enumerate(flat):
        if isinstance(v, Tensor):
            arr = array(v)
            j = first.setdefault(id(arr), i)
            if j == i:
                for k, other in seen:  # a view of an earlier argument: shares memory
                    if isinstance(arr, np.ndarray) and isinstance(other, np.ndarray) \
                            and np.may_share_memory(arr, other):
                        j = k
                        break
                seen.append((i, arr))
            if j != i:
                pairs.append((i, j))
    return tuple(pairs)


def describe_change(path, old, new):
    if old[0] == "T" and new[0] == "T":
        if old[1] != new[1]:
            return f"{path}: shape {old[1]} -> {new[1]}"
        if old[2] != new[2]:
            return f"{path}: dtype {old[2]} -> {new[2]}"
        return f"{path}: requires_grad {old[3]} -> {new[3]}"
    return f"{path}: {old[1:] if len(old) > 1 else old[0]} -> {new[1:] if len(new) > 1 else new[0]}"


def signature_text(s):
    if s[0] == "T":
        return f"tensor shape {s[1]} dtype {s[2]} requires_grad {s[3]}"
    if s[0] == "F":
        return "python float (dynamic)"
    return f"static {s[1:]!r}"


def float_outputs(outs) -> frozenset:
    """Outputs computed from Python float arguments alone (``lr * 0.5``, or the float
    itself). The trace made the floats 0-d tensors so that a new value does not
    recompile, marked ``_wrapped`` as are the results of arithmetic on them alone (the
    tracer's ``bind``); eager would return floats (bools for ``lr > 0.5``) here, so
    compiled calls do too."""
    return frozenset(j for j, t in enumerate(outs) if t._wrapped)


def with_floats(result, outs, which, given=None):
    """``result`` with its tensor leaves ``outs[j]`` for ``j`` in ``which`` as floats, and
    the 0-d tensors that stood for float arguments (``given``: id -> float) as those."""
    if not which and not given:
        return result
    given = given or {}
    leaves = [t.item() if j in which else given.get(id(t), t) for j, t in enumerate(outs)]
    return rebuild(result, iter(leaves))


def same_outputs(outs, flat, tracer) -> dict:
    """Outputs that are a tensor argument, a state tensor or an earlier output itself
    (``return x.add_(1)``, ``return model.weight``, ``return y, y``): output index ->
    ("arg", i) | ("tensor", t) | ("out", k). Compiled calls return that very tensor, after
    its write-back, as eager does."""
    known = {}
    for i, (_, v) in enumerate(flat):
        if isinstance(v, Tensor):
            known.setdefault(id(v), ("arg", i))
    for c in tracer.captured:
        if isinstance(c[0], State):
            known.setdefault(id(c[1]), ("tensor", c[1]))
    same = {}
    for j, t in enumerate(outs):
        if id(t) in known:
            same[j] = known[id(t)]
        else:
            known[id(t)] = ("out", j)
    return same


def aliased_output(outs, flat, tracer, same):
    """Which output (not one of ``same``) shares memory with (``detach()``, a view) a
    tensor argument, state the trace read or wrote, a ``.grad`` slot it set, or another
    output; else None. A compiled call returns a new tensor for it, so a write through
    one would miss the other."""
    others = [(path, array(v)) for path, v in flat if isinstance(v, Tensor)]
    others += [("state", c[2]) for c in tracer.captured if c[0].kind != "scalar"]
    others += [(f"{tensor_name(o)}.grad", o._grad._data) for o in tracer.grad_writes.values()
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


def output_plan(final, trace):
    """Which outputs the XLA program returns, and which are constants written on the host.

    State the step leaves filled with one value (``grad.zero_()``) is written with a
    NumPy fill and remembered as a constant, rather than returned from XLA."""
    from ..primitives import full_p
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
    from ..passes.dce import eliminate_dead_code
    return plan, eliminate_dead_code(final.replace(outputs=kept, output_names=None))


def remember_constant_state(trace, targets):
    """After the traced (eager) call: state it left filled with one value is
    remembered as such, so the next trace can specialise on it (e.g. zeroed grads).
    ``targets``: the written tensors, in the order of the graph's state outputs."""
    from ..primitives import full_p
    producers = {e.out: e for e in trace.graph.eqns}
    n = trace.n_out
    for t, v in zip(targets, trace.graph.outputs[n:], strict=False):
        e = producers.get(v)
        if t is not None and e is not None and e.prim is full_p:
            remember(t._data, None, constant=e.params["value"])
