"""Structured control flow: ``cond``, ``while_loop``, ``scan``, ``fori_loop``.

The signatures are torch's higher-order ops (``torch.cond``,
``torch._higher_order_ops.while_loop`` and ``scan``); carries and operands are pytrees
(tuples, lists, dicts) of tensors.

>>> import tracegrad as tg
>>> c, ys = tg.scan(lambda c, x: (c + x, c * x), tg.zeros(2), tg.ones(3, 2))
>>> c.tolist(), ys.shape
([3.0, 3.0], torch.Size([3, 2]))

NOTE: [Structured control flow]. Eagerly each op runs the Python (the tape records what
ran: a scan is its steps, a cond the branch it took; as torch's, an eager cond also runs the
other branch, traced under no_grad with its writes undone, to check that the branches agree
and to give the tensors either reads a zero gradient, as the compiled cond's VJP does).
Under ``tracegrad.compile`` the tracer still runs the Python for real (NOTE: [Concrete
tracing]), so the tracing call's results are eager's, but each op becomes ONE equation
whose bodies are sub-Graphs:

* a body is traced once into its own equation list with fresh input Vars
  (``Tracer.open_body``); a tensor it reads from outside becomes an extra input of
  the equation (closure capture), parameters lifted as usual first. Body inputs are
  copies of the operands (their own arrays), so the body never confuses a carry with
  the same tensor read through a closure;
* ``cond`` traces both branches on the real operands and returns what the branch the
  real predicate picked returned; a data-dependent predicate is not a graph break;
* ``scan`` traces its first step, runs the other steps with recording suspended (the
  tape still records them), and stacks the ys. A carry that gains gradient after the
  first step (an RNN's zero initial state) is found by a fixpoint: the first step is
  traced again with that carry's input marked as carrying gradient, so the body's
  ``grad_mask`` holds for every step. When gradients may flow, the body also returns
  its input carries as extra ys: the per-step residuals of the reverse scan;
* ``while_loop`` traces ``cond_fn`` and ``body_fn`` once each; it is forward-only when
  compiled (a carry or capture that requires grad is a graph break: use ``scan`` or
  ``fori_loop`` with Python bounds, which are scans, for a fixed trip count).

A body that writes a tensor from outside in place, draws random numbers, calls
``.item()`` or ``backward()`` is a graph break naming the body and the line. The VJP of
``cond`` is a ``cond`` of the branches' VJPs; the VJP of ``scan`` is a reversed ``scan``
whose body re-runs the forward body's step from the saved carry and applies its VJP
(passes/autodiff.vjp_graph on the body). The equations have several results
(``Eqn.outs``); the verifier, DCE, CSE, simplify and fusion recurse into the bodies,
and codegen lowers them to ``lax.cond`` / ``lax.while_loop`` / ``lax.scan``.
"""
from __future__ import annotations

import numpy as np

from . import dtypes
from ._pytree import flatten_out, rebuild, template
from .primitives import JAX_HELPERS, Primitive, ShapeError
from .tensor import Tensor, trace_state

__all__ = ["cond", "while_loop", "scan", "fori_loop"]


# ----------------------------------------------------------------------------
# pytrees and checks

def _flat(tree, what: str):
    leaves = flatten_out(tree)
    for i, x in enumerate(leaves):
        if not isinstance(x, Tensor):
            raise TypeError(f"{what} must be a pytree of tensors (tuples, lists, dicts), but "
                            f"leaf {i} is {type(x).__name__}: {x!r}")
    return leaves, template(tree)


def _aval(t) -> str:
    from .ir.graph import type_str
    return type_str(t)


def _fn_name(fn) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _fn_site(fn) -> str:
    import os
    code = getattr(fn, "__code__", None)
    if code is None:
        return _fn_name(fn)
    return f"{_fn_name(fn)} ({os.path.basename(code.co_filename)}:{code.co_firstlineno})"


def _same_avals(what, a_name, a, b_name, b):
    """Two lists of tensors (or Vars) agree in count, shapes and dtypes, else a clear error."""
    if len(a) != len(b):
        raise RuntimeError(f"{what}: {a_name} gives {len(a)} tensors but {b_name} gives "
                           f"{len(b)}; they must have the same structure")
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if tuple(x.shape) != tuple(y.shape) or x.dtype is not y.dtype:
            raise RuntimeError(f"{what}: {a_name} gives {_aval(x)} at leaf {i} but {b_name} "
                               f"gives {_aval(y)}; they must have the same shapes and dtypes")


def _pred(pred, what: str):
    """A predicate: a Python bool, or a one-element bool tensor (torch.cond's rule)."""
    if isinstance(pred, (bool, np.bool_)):
        return bool(pred)
    if isinstance(pred, Tensor):
        if pred.numel() != 1 or pred.dtype is not dtypes.bool_:
            raise RuntimeError(f"{what}: the predicate must be a Python bool or a tensor with "
                               f"one bool element, got a {_aval(pred)} tensor; compare it "
                               "(x.sum() > 0) or index it")
        return bool(np.asarray(pred._data).reshape(()))  # its value, never a graph break
    raise RuntimeError(f"{what}: the predicate must be a Python bool or a one-element bool "
                       f"tensor, got {type(pred).__name__}")


def _tracer():
    """The tracer recording this thread's ops right now, if any."""
    from .ir.tracer import Tracer
    t = trace_state.current
    if t.__class__ is Tracer and t.recording and not t._suspended:
        return t
    return None


class _suspended:
    """Ops run for real (and on the tape) but are not recorded into the graph."""

    def __init__(self, tracer):
        self.tracer = tracer

    def __enter__(self):
        self.tracer._suspended += 1

    def __exit__(self, *exc):
        self.tracer._suspended -= 1
        return False


def _copies(tracer, leaves):
    """Body inputs: copies of the operands with their own arrays (and tape edges)."""
    from .primitives import copy_p
    from .tensor import apply
    with _suspended(tracer):
        return [apply(copy_p, (x,)) for x in leaves]


def _carries_grad(tracer, v) -> bool:
    from .autograd import grad_mode
    if not grad_mode.is_grad_enabled():
        return False
    scope = tracer._scope
    return v in tracer._grad_vars or (scope is not None and v in scope.diff)


_body_ids = __import__("itertools").count()


def _graph(body, inputs, name, origin):
    from .ir.graph import Graph
    return Graph(inputs, body.eqns, body.outputs, name=f"{name}_{next(_body_ids)}",
                 meta={"origin": origin})


def _union_captures(bodies):
    """Outer Vars any of ``bodies`` reads, in order; per body its input Var for each
    (a fresh, unused one where that body does not read it)."""
    from .ir.graph import Var
    outer: dict = {}
    for b in bodies:
        for o, _ in b.captured():
            outer.setdefault(o, None)
    outer = list(outer)
    per_body = []
    for b in bodies:
        mine = {o: i for o, i in b.captured()}
        per_body.append([mine.get(o) or Var(o.shape, o.dtype) for o in outer])
    return outer, per_body


def _emit(tracer, prim, inputs, params, out_avals, grad_mask, grad_name):
    from .ir.graph import Eqn, Var
    from .ir.tracer import user_site
    outs = [Var(s, d) for s, d in out_avals]
    tracer._add(Eqn(prim, inputs, params, None, user_site(3), grad_name, grad_mask,
                    outs=outs))
    if grad_mask is not None:
        tracer._grad_vars.update(outs)
        if tracer._scope is not None:
            tracer._scope.diff.update(outs)
    return outs


def _mask(tracer, in_vars, tensors=None):
    from .ir.graph import Const
    m = tuple(not isinstance(v, Const) and ((tensors is not None and i < len(tensors)
                                              and tensors[i]._rg) or _carries_grad(tracer, v))
              for i, v in enumerate(in_vars))
    return m if any(m) else None


# ----------------------------------------------------------------------------
# cond

def cond(pred, true_fn, false_fn, operands=()):
    """``true_fn(*operands)`` if ``pred`` else ``false_fn(*operands)`` (``torch.cond``).

    ``pred`` is a Python bool or a one-element bool tensor; both branches must return
    the same structure of tensors with the same shapes and dtypes. Compiled, both
    branches are traced and the predicate is data: one ``cond`` equation.

    >>> import tracegrad as tg
    >>> x = tg.tensor([1.0, -2.0])
    >>> tg.cond(x.sum() > 0, lambda a: a * 2, lambda a: -a, (x,)).tolist()
    [-1.0, 2.0]
    """
    if not isinstance(operands, (tuple, list)):
        raise RuntimeError(f"cond: operands must be a tuple or list of tensors, got "
                           f"{type(operands).__name__}")
    p = _pred(pred, "cond")
    tracer = _tracer()
    if tracer is None or not isinstance(pred, Tensor) or tracer.is_literal(pred):
        fn = true_fn if p else false_fn
        out = fn(*operands)
        leaves, tmpl = _flat(out, f"cond: the output of {_fn_name(fn)}")
        if trace_state.current is None and isinstance(pred, Tensor):
            leaves = _other_branch(true_fn, false_fn, p, operands, leaves, tmpl)
            return rebuild(tmpl, iter(leaves))
        return out
    return _trace_cond(tracer, pred, p, true_fn, false_fn, tuple(operands))


def _other_branch(true_fn, false_fn, p, operands, results, tmpl):
    """As torch's cond, eagerly: the branch not taken runs too (traced, under no_grad, its
    writes to outside state undone), so branches that disagree in structure, shapes or
    dtypes are an error, and the operands and the tensors either branch reads get a zero
    gradient from the results (not none), as they do when compiled (see _trace_cond)."""
    from .autograd import grad_mode
    from .ir.tracer import Tracer
    other = false_fn if p else true_fn
    leaves, op_tmpl = _flat(tuple(operands), "cond: operands")
    probe = Tracer(name="cond_branch")
    args = [Tensor._make(np.array(x._data)) for x in leaves]
    out = None
    try:
        with probe, grad_mode.no_grad():
            for i, a in enumerate(args):
                probe.add_arg(a, f"operand{i}", i)
            out = other(*rebuild(op_tmpl, iter(args)))
    except Exception:  # the branch not taken may fail on these values: what it read counts
        pass
    finally:
        probe.rollback()
    if out is not None:
        o_leaves, o_tmpl = _flat(out, f"cond: the output of {_fn_name(other)}")
        t_name, f_name = f"true_fn {_fn_site(true_fn)}", f"false_fn {_fn_site(false_fn)}"
        (t, tt), (f, ft) = ((results, tmpl), (o_leaves, o_tmpl)) if p else \
            ((o_leaves, o_tmpl), (results, tmpl))
        if tt != ft:
            raise RuntimeError(f"cond: {t_name} returned {tt!r} but {f_name} returned {ft!r}; "
                               "both branches must return the same structure")
        _same_avals("cond", t_name, t, f_name, f)
    if not grad_mode.is_grad_enabled():
        return results
    read = [t for src, t, _, _ in probe.captured if src.kind != "arg"]
    extras = [t for t in [*leaves, *read] if t._rg]
    if not extras:
        return results
    from .tensor import apply
    return [apply(touch_p, (r, *extras)) if r.dtype.is_floating_point else r for r in results]


def _trace_cond(tracer, pred, p, true_fn, false_fn, operands):
    leaves, tmpl = _flat(operands, "cond: operands")
    pv = tracer.var_of(pred)
    in_vars = [tracer.var_of(x) for x in leaves]
    if not tracer.recording:
        return (true_fn if p else false_fn)(*operands)
    picked, other = (true_fn, false_fn) if p else (false_fn, true_fn)
    in_diff = [_carries_grad(tracer, v) for v in in_vars]  # (in this scope, not the body's)
    bodies, results = {}, {}
    for fn in (other, picked):  # the picked branch last: its results are the call's
        which = "true_fn" if fn is true_fn else "false_fn"
        body = tracer.open_body(f"cond branch {which} {_fn_site(fn)}")
        out = None
        try:
            args = _copies(tracer, leaves)
            for a, d in zip(args, in_diff, strict=True):
                tracer.body_input(a, d)
            try:
                out = fn(*rebuild(tmpl, iter(args)))
            except Exception as err:
                if fn is picked or not tracer.recording:
                    raise
                tracer.graph_break(f"cond: {which} {_fn_site(fn)} raised {err!r} when traced "
                                   "on this call's operands (the branch not taken runs too)")
            out_leaves, out_tmpl = _flat(out, f"cond: the output of {which}") \
                if out is not None else ([], None)
        finally:
            tracer.close_body(out_leaves if out is not None and tracer.recording else None)
        bodies[which], results[which] = body, (out, out_leaves, out_tmpl)
        if not tracer.recording:  # a graph break: the call finishes eagerly
            return (true_fn if p else false_fn)(*operands) if fn is other else out
    t_out, f_out = results["true_fn"], results["false_fn"]
    if t_out[2] != f_out[2]:
        raise RuntimeError(f"cond: true_fn {_fn_site(true_fn)} returned {t_out[2]!r} but "
                           f"false_fn {_fn_site(false_fn)} returned {f_out[2]!r}; both "
                           "branches must return the same structure")
    _same_avals("cond", f"true_fn {_fn_site(true_fn)}", t_out[1],
                f"false_fn {_fn_site(false_fn)}", f_out[1])
    tb, fb = bodies["true_fn"], bodies["false_fn"]
    outer, caps = _union_captures([tb, fb])
    gt = _graph(tb, tb.inputs + caps[0], "cond_true", f"true_fn {_fn_site(true_fn)}")
    gf = _graph(fb, fb.inputs + caps[1], "cond_false", f"false_fn {_fn_site(false_fn)}")
    inputs = [pv] + in_vars + outer
    mask = _mask(tracer, inputs, [pred] + leaves)
    outs = _emit(tracer, cond_p, inputs, {"true_graph": gt, "false_graph": gf},
                 [(tuple(t.shape), t.dtype) for t in t_out[1]], mask, "CondBackward0")
    chosen = results["true_fn" if p else "false_fn"]
    results = chosen[1]
    # every tensor either branch reads gets a tape edge from the results (zero gradient
    # where the branch taken does not read it), so a backward() inside the trace asks the
    # graph for their gradients: on a later call the other branch may be the one taken
    extras = [t for t in [*leaves, *tb.tensors, *fb.tensors] if t is not None and t._rg]
    if extras and mask is not None:
        from .tensor import apply
        with _suspended(tracer):
            results = [apply(touch_p, (r, *extras)) if r.dtype.is_floating_point else r
                       for r in results]
    bound = [tracer.bind_result(t, v) for t, v in zip(results, outs, strict=True)]
    return rebuild(chosen[2], iter(bound))


# ----------------------------------------------------------------------------
# scan

def scan(combine_fn, init, xs, dim: int = 0, reverse: bool = False):
    """Fold ``combine_fn(carry, x) -> (next_carry, y)`` over ``xs`` along ``dim``
    (``torch._higher_order_ops.scan``); returns ``(final_carry, ys)``, the ys stacked
    along ``dim``. ``reverse=True`` runs from the last slice to the first (ys keep the
    slices' order). Compiled, the body is traced once: one ``scan`` equation.

    >>> import tracegrad as tg
    >>> c, ys = tg.scan(lambda c, x: (c * x, c), tg.tensor(1.0), tg.tensor([2.0, 3.0, 4.0]))
    >>> c.item(), ys.tolist()
    (24.0, [1.0, 2.0, 6.0])
    """
    init_leaves, init_tmpl = _flat(init, "scan: init")
    xs_leaves, xs_tmpl = _flat(xs, "scan: xs")
    if not xs_leaves:
        raise RuntimeError("scan: xs must hold at least one tensor (its size along dim is "
                           "the number of steps)")
    dims, length = [], None
    for i, x in enumerate(xs_leaves):
        if x.dim() == 0:
            raise RuntimeError(f"scan: xs leaf {i} is 0-d; each xs tensor needs the scanned "
                               "dimension")
        if not -x.dim() <= dim < x.dim():
            raise IndexError(f"scan: dim {dim} is out of range for xs leaf {i} of shape "
                             f"{list(x.shape)}")
        d = dim % x.dim()
        dims.append(d)
        if length is None:
            length = x.shape[d]
        elif x.shape[d] != length:
            raise RuntimeError(f"scan: all xs must have the same size along dim {dim}, but "
                               f"leaf 0 has {length} and leaf {i} has {x.shape[d]}")
    if length == 0:
        raise RuntimeError(f"scan: xs has size 0 along dim {dim}; scan needs at least one "
                           "step")
    tracer = _tracer()
    if tracer is not None:
        return _trace_scan(tracer, combine_fn, init_leaves, init_tmpl, xs_leaves, xs_tmpl,
                           dims, length, bool(reverse))
    from . import functions as T
    steps = [T.unbind(x, d) for x, d in zip(xs_leaves, dims, strict=True)]
    carry, ys_steps, y_tmpl = init_leaves, [], None
    for t in (range(length - 1, -1, -1) if reverse else range(length)):
        carry, y, y_tmpl = _step(combine_fn, init_leaves, init_tmpl, carry,
                                 rebuild(xs_tmpl, iter([s[t] for s in steps])), y_tmpl)
        ys_steps.append(y)
    return _stack_ys(init_tmpl, carry, ys_steps, y_tmpl, dims[0], reverse)


def _step(combine_fn, init_leaves, init_tmpl, carry, x, y_tmpl):
    out = combine_fn(rebuild(init_tmpl, iter(carry)), x)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise RuntimeError(f"scan: combine_fn {_fn_site(combine_fn)} must return a pair "
                           f"(next_carry, y), got {type(out).__name__}")
    c_leaves, c_tmpl = _flat(out[0], "scan: the next carry")
    y_leaves, tmpl = _flat(out[1], "scan: y")
    if c_tmpl != init_tmpl:
        raise RuntimeError(f"scan: combine_fn {_fn_site(combine_fn)} returned a carry "
                           f"{c_tmpl!r} but init is {init_tmpl!r}; the carry must keep its "
                           "structure")
    _same_avals("scan", "init", init_leaves, f"the carry combine_fn {_fn_site(combine_fn)} "
                "returns", c_leaves)
    if y_tmpl is not None and tmpl != y_tmpl:
        raise RuntimeError(f"scan: combine_fn {_fn_site(combine_fn)} returned y {tmpl!r} "
                           f"after {y_tmpl!r}; every step must return the same structure")
    return c_leaves, y_leaves, tmpl


def _stack_ys(init_tmpl, carry, ys_steps, y_tmpl, dim, reverse):
    from . import functions as T
    if reverse:
        ys_steps = ys_steps[::-1]
    first = ys_steps[0]
    for k, y in enumerate(ys_steps[1:], 1):
        _same_avals("scan", "step 0's y", first, f"step {k}'s y", y)
    ys = [T.stack([y[i] for y in ys_steps], dim) for i in range(len(first))]
    return rebuild(init_tmpl, iter(carry)), rebuild(y_tmpl, iter(ys))


def _moved(shape, dim):
    """perm moving ``dim`` to the front, and the one moving it back."""
    n = len(shape)
    to_front = (dim, *[i for i in range(n) if i != dim])
    back = tuple(list(range(1, dim + 1)) + [0] + list(range(dim + 1, n)))
    return to_front, back


def _permute_var(tracer, v, perm):
    from .ir.graph import Eqn, Var
    from .ir.tracer import user_site
    from .primitives import permute_p
    if perm == tuple(range(len(perm))):
        return v
    w = Var(tuple(v.shape[p] for p in perm), v.dtype)
    mask = (True,) if _carries_grad(tracer, v) else None
    tracer._add(Eqn(permute_p, (v,), {"perm": perm}, w, user_site(4), "PermuteBackward0",
                    mask))
    if mask:
        tracer._grad_vars.add(w)
        if tracer._scope is not None:
            tracer._scope.diff.add(w)
    return w


def _trace_scan(tracer, combine_fn, init_leaves, init_tmpl, xs_leaves, xs_tmpl, dims,
                length, reverse):
    from . import functions as T
    init_vars = [tracer.var_of(c) for c in init_leaves]
    xs_vars = [tracer.var_of(x) for x in xs_leaves]
    if not tracer.recording:
        return scan(combine_fn, rebuild(init_tmpl, iter(init_leaves)),
                    rebuild(xs_tmpl, iter(xs_leaves)), dims[0], reverse)
    with _suspended(tracer):
        steps = [T.unbind(x, d) for x, d in zip(xs_leaves, dims, strict=True)]
    t0 = length - 1 if reverse else 0
    what = f"scan body {_fn_site(combine_fn)}"
    diff = [_carries_grad(tracer, v) for v in init_vars]
    x_diff = [_carries_grad(tracer, v) for v in xs_vars]
    while True:  # the fixpoint on which carries carry gradient (see the NOTE)
        body = tracer.open_body(what)
        outs = None
        try:
            carry_in = _copies(tracer, init_leaves)
            for a, d in zip(carry_in, diff, strict=True):
                tracer.body_input(a, d)
            x_in = [s[t0] for s in steps]
            for a, d in zip(x_in, x_diff, strict=True):
                tracer._escaped.discard(id(a._data))
                tracer.body_input(a, d)
            c_leaves, y_leaves, y_tmpl = _step(combine_fn, init_leaves, init_tmpl, carry_in,
                                               rebuild(xs_tmpl, iter(x_in)), None)
            outs = c_leaves + y_leaves
        finally:
            tracer.close_body(outs if tracer.recording else None)
        if not tracer.recording:  # a graph break inside: finish eagerly
            return _finish_scan(tracer, combine_fn, init_leaves, init_tmpl, xs_tmpl, steps,
                                c_leaves, [y_leaves], y_tmpl, length, reverse, dims[0])
        grown = [d or od for d, od in zip(diff, body.out_diff, strict=False)]
        if grown == diff:
            break
        diff = grown
    n_c = len(init_leaves)
    body_inputs = list(body.inputs)
    carry_vars, x_vars = body_inputs[:n_c], body_inputs[n_c:]
    outer, (cap_inner,) = _union_captures([body])
    mask = _mask(tracer, init_vars + xs_vars + outer, init_leaves + xs_leaves)
    if mask is not None:  # the per-step carries: residuals for the reverse scan
        body.outputs = body.outputs + [v for v, d in zip(carry_vars, diff, strict=True) if d]
    g = _graph(body, carry_vars + x_vars + cap_inner, "scan_body", what)
    moved = [_permute_var(tracer, v, _moved(v.shape, d)[0])
             for v, d in zip(xs_vars, dims, strict=True)]
    avals = [(tuple(v.shape), v.dtype) for v in body.outputs[:n_c]]
    avals += [((length, *v.shape), v.dtype) for v in body.outputs[n_c:]]
    out_vars = _emit(tracer, scan_p, init_vars + moved + outer,
                     {"body": g, "n_carry": n_c, "n_xs": len(xs_vars), "length": length,
                      "reverse": reverse}, avals, mask, "ScanBackward0")
    final, ys = _finish_scan(tracer, combine_fn, init_leaves, init_tmpl, xs_tmpl, steps,
                             c_leaves, [y_leaves], y_tmpl, length, reverse, dims[0])
    final_leaves = flatten_out(final)
    ys_leaves = flatten_out(ys) if y_leaves else []
    bound_c = [tracer.bind_result(t, v) for t, v in zip(final_leaves, out_vars, strict=False)]
    bound_y = []
    for t, v in zip(ys_leaves, out_vars[n_c:n_c + len(y_leaves)], strict=True):
        bound_y.append(tracer.bind_result(t, _permute_var(tracer, v, _moved(t.shape,
                                                                          dims[0])[1])))
    return rebuild(init_tmpl, iter(bound_c)), rebuild(y_tmpl, iter(bound_y))


def _finish_scan(tracer, combine_fn, init_leaves, init_tmpl, xs_tmpl, steps, carry, ys_steps,
                 y_tmpl, length, reverse, dim):
    """Steps 2..length for real (recording suspended), then the stacked ys."""
    order = range(length - 2, -1, -1) if reverse else range(1, length)
    ctx = _suspended(tracer) if tracer.recording else _nothing()
    with ctx:
        for t in order:
            carry, y, y_tmpl = _step(combine_fn, init_leaves, init_tmpl, carry,
                                     rebuild(xs_tmpl, iter([s[t] for s in steps])),
                                     y_tmpl)
            ys_steps.append(y)
        return _stack_ys(init_tmpl, carry, ys_steps, y_tmpl, dim, reverse)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _touch_vjp(g, out, x, *extras):
    from . import functions as T
    return (g, *[T.zeros_like(e) for e in extras])


# ``y = cond_touch(x, *extras)``: ``x``, with zero gradients for ``extras``; only on the
# tracing call's tape (see _trace_cond), never in a graph
touch_p = Primitive("cond_touch", lambda x, *extras: x, lambda x, *extras: (x.shape, x.dtype),
                    "{0}", kind="control", vjp_all=_touch_vjp, variadic=True,
                    grad_name="CondBackward0")


# ----------------------------------------------------------------------------
# while_loop and fori_loop

def while_loop(cond_fn, body_fn, carried_inputs):
    """``while cond_fn(*carry): carry = body_fn(*carry)`` (torch's ``while_loop``).

    ``carried_inputs`` is a tuple of tensors; ``body_fn`` returns a tuple of the same
    shapes and dtypes and ``cond_fn`` a one-element bool tensor. Compiled, it is one
    ``while_loop`` equation, forward-only: its trip count is data, so it has no reverse
    mode (``scan``, or ``fori_loop`` with Python bounds, differentiates).

    >>> import tracegrad as tg
    >>> i, s = tg.while_loop(lambda i, s: i < 3, lambda i, s: (i + 1, s * 2),
    ...                      (tg.tensor(0), tg.ones(2)))
    >>> i.item(), s.tolist()
    (3, [8.0, 8.0])
    """
    if not isinstance(carried_inputs, (tuple, list)):
        raise RuntimeError("while_loop: carried_inputs must be a tuple or list of tensors, "
                           f"got {type(carried_inputs).__name__}")
    leaves, tmpl = _flat(tuple(carried_inputs), "while_loop: carried_inputs")
    tracer = _tracer()
    if tracer is not None:
        return _trace_while(tracer, cond_fn, body_fn, leaves, tmpl)
    return _run_while(cond_fn, body_fn, leaves, tmpl, leaves)


def _run_while(cond_fn, body_fn, leaves, tmpl, carry):
    while _pred(cond_fn(*rebuild(tmpl, iter(carry))), f"while_loop: cond_fn "
                f"{_fn_site(cond_fn)}"):
        carry = _while_step(body_fn, leaves, tmpl, carry)
    return tuple(rebuild(tmpl, iter(carry)))


def _while_step(body_fn, leaves, tmpl, carry):
    out = body_fn(*rebuild(tmpl, iter(carry)))
    if not isinstance(out, (tuple, list)):
        out = (out,)
    new, new_tmpl = _flat(tuple(out), f"while_loop: the output of body_fn {_fn_site(body_fn)}")
    if new_tmpl != tmpl:
        raise RuntimeError(f"while_loop: body_fn {_fn_site(body_fn)} returned {new_tmpl!r} "
                           f"but carried_inputs are {tmpl!r}; they must have the same "
                           "structure")
    _same_avals("while_loop", "carried_inputs", leaves, f"body_fn {_fn_site(body_fn)}", new)
    return new


_WHILE_GRAD = ("while_loop: a carried input or a tensor the body reads requires grad, and a "
               "compiled while_loop is forward-only (its trip count is data); use scan or "
               "fori_loop with Python int bounds for a fixed number of steps, or run the loop "
               "under torch.no_grad()")


def _trace_while(tracer, cond_fn, body_fn, leaves, tmpl):
    in_vars = [tracer.var_of(x) for x in leaves]
    if tracer.recording and any(_carries_grad(tracer, v) for v in in_vars):
        tracer.graph_break(_WHILE_GRAD)
    if not tracer.recording:
        return _run_while(cond_fn, body_fn, leaves, tmpl, leaves)
    traced = {}
    for name, fn in (("cond_fn", cond_fn), ("body_fn", body_fn)):
        body = tracer.open_body(f"while_loop {name} {_fn_site(fn)}")
        result = None
        try:
            args = _copies(tracer, leaves)
            for a in args:
                tracer.body_input(a)
            if name == "cond_fn":
                pred = fn(*rebuild(tmpl, iter(args)))
                p = _pred(pred, f"while_loop: cond_fn {_fn_site(fn)}")
                result = [pred]
                if not isinstance(pred, Tensor):
                    tracer.graph_break(f"while_loop: cond_fn {_fn_site(fn)} returned a Python "
                                       "bool; return a tensor (i < n) so the trip count is "
                                       "data")
            else:
                result = _while_step(fn, leaves, tmpl, args)
        finally:
            tracer.close_body(result if tracer.recording else None)
        traced[name] = (body, result)
        if tracer.recording and any(body.out_diff):
            tracer.graph_break(_WHILE_GRAD)
        if not tracer.recording:
            return _run_while(cond_fn, body_fn, leaves, tmpl, leaves)
    (cb, _), (bb, first) = traced["cond_fn"], traced["body_fn"]
    outer, caps = _union_captures([cb, bb])
    gc = _graph(cb, cb.inputs + caps[0], "while_cond", f"cond_fn {_fn_site(cond_fn)}")
    gb = _graph(bb, bb.inputs + caps[1], "while_body", f"body_fn {_fn_site(body_fn)}")
    outs = _emit(tracer, while_p, in_vars + outer,
                 {"cond_graph": gc, "body_graph": gb, "n_carry": len(leaves)},
                 [(tuple(t.shape), t.dtype) for t in leaves], None, None)
    with _suspended(tracer):
        carry = _run_while(cond_fn, body_fn, leaves, tmpl, first) if p else leaves
    carry = flatten_out(tuple(carry)) if carry is not leaves else leaves
    bound = [tracer.bind_result(t, v) for t, v in zip(carry, outs, strict=True)]
    return tuple(rebuild(tmpl, iter(bound)))


def fori_loop(lower, upper, body_fun, init_val):
    """``val = body_fun(i, val)`` for ``i`` in ``range(lower, upper)`` (jax's ``fori_loop``).

    With Python int bounds it is a ``scan`` over the indices (differentiable); with
    tensor bounds a ``while_loop``. ``i`` is a 0-d int64 tensor.

    >>> import tracegrad as tg
    >>> tg.fori_loop(0, 4, lambda i, v: v + i, tg.tensor(0.5)).item()
    6.5
    """
    from . import functions as T
    if isinstance(lower, int) and isinstance(upper, int):
        if upper <= lower:
            return init_val
        final, _ = scan(lambda v, i: (body_fun(i, v), ()), init_val,
                        T.arange(lower, upper, dtype=dtypes.int64))
        return final
    lo = lower if isinstance(lower, Tensor) else T.tensor(lower, dtype=dtypes.int64)
    hi = upper if isinstance(upper, Tensor) else T.tensor(upper, dtype=dtypes.int64)
    leaves, tmpl = _flat(init_val, "fori_loop: init_val")
    out = while_loop(lambda i, n, *c: i < n,
                     lambda i, n, *c: (i + 1, n, *flatten_out(body_fun(i, rebuild(tmpl,
                                                                                  iter(c))))),
                     (lo, hi, *leaves))
    return rebuild(tmpl, iter(out[2:]))


# ----------------------------------------------------------------------------
# the primitives: NumPy impls (the reference interpreter), signature rules, lowering,
# reverse mode. Their equations bind several results (``Eqn.outs``).

class StructuredPrimitive(Primitive):
    """A primitive whose params hold sub-Graphs and whose equation has several results.
    ``shape`` returns one (shape, dtype) per result; ``lower(args, fns, params)`` gives
    the jax expression (a tuple) over the argument names and the bodies' function names;
    ``graph_vjp(eqn, cts)`` emits the reverse-mode equations (passes/autodiff.py);
    ``prune(eqn, live)`` drops results no one uses (passes/dce.py)."""

    multiple_results = True

    def __init__(self, name, impl, shape, lower, graph_vjp, prune, *, differentiable):
        super().__init__(name, impl, shape, lower, kind="control", differentiable=differentiable,
                         variadic=True, grad_name=f"{name.title().replace('_', '')}Backward0")
        self.lower = lower
        self.graph_vjp = graph_vjp
        self.prune = prune


def _evaluate(graph, args):
    from .ir.interpreter import evaluate
    return evaluate(graph, args)


def _check_signature(what, graph, avals):
    if len(graph.inputs) != len(avals):
        raise ShapeError(f"{what}: {graph.name} takes {len(graph.inputs)} inputs, the equation "
                         f"passes {len(avals)}")
    for i, (v, a) in enumerate(zip(graph.inputs, avals, strict=True)):
        if tuple(v.shape) != tuple(a.shape) or v.dtype is not a.dtype:
            raise ShapeError(f"{what}: input {i} of {graph.name} is {_aval(v)}, the equation "
                             f"passes {_aval(a)}")


# cond: ``outs = cond(pred, *operands, *captures, true_graph=, false_graph=)``

def _cond_impl(pred, *args, true_graph, false_graph):
    return _evaluate(true_graph if bool(np.asarray(pred).reshape(())) else false_graph, args)


def _cond_shape(pred, *args, true_graph, false_graph):
    _check_signature("cond", true_graph, args)
    _check_signature("cond", false_graph, args)
    _same_avals("cond", "true_graph", true_graph.outputs, "false_graph", false_graph.outputs)
    return [(v.shape, v.dtype) for v in true_graph.outputs]


def _cond_lower(args, fns, params):
    return f"_tg_cond({args[0]}, {fns['true_graph']}, {fns['false_graph']}, " \
           f"({', '.join(args[1:])}{',' if len(args) == 2 else ''}))"


def _tg_cond(pred, true_fn, false_fn, operands):
    from jax import lax
    return lax.cond(pred.reshape(()), lambda ops: tuple(true_fn(*ops)),
                    lambda ops: tuple(false_fn(*ops)), operands)


# scan: ``*carry, *ys = scan(*init, *xs, *consts, body=, n_carry=, n_xs=, length=, reverse=)``
# with ``body(*carry, *x, *consts) -> (*next_carry, *y)``; xs and ys scan dimension 0.

def _scan_impl(*args, body, n_carry, n_xs, length, reverse):
    carry = list(args[:n_carry])
    xs, consts = args[n_carry:n_carry + n_xs], list(args[n_carry + n_xs:])
    ys = [None] * length
    for t in (range(length - 1, -1, -1) if reverse else range(length)):
        out = _evaluate(body, carry + [x[t] for x in xs] + consts)
        carry, ys[t] = out[:n_carry], out[n_carry:]
    n_y = len(body.outputs) - n_carry
    return carry + [np.stack([y[i] for y in ys]) for i in range(n_y)]


def _scan_shape(*args, body, n_carry, n_xs, length, reverse):
    carry, xs, consts = args[:n_carry], args[n_carry:n_carry + n_xs], args[n_carry + n_xs:]
    for i, x in enumerate(xs):
        if not x.shape or x.shape[0] != length:
            raise ShapeError(f"scan: xs {i} is {_aval(x)}, its first dimension must be the "
                             f"length {length}")
    from .ir.graph import Var
    _check_signature("scan", body, list(carry) + [Var(x.shape[1:], x.dtype) for x in xs]
                     + list(consts))
    _same_avals("scan", "init", carry, "the body's next carry", body.outputs[:n_carry])
    return [(v.shape, v.dtype) for v in body.outputs[:n_carry]] + \
        [((length, *v.shape), v.dtype) for v in body.outputs[n_carry:]]


def _scan_lower(args, fns, params):
    n, m = params["n_carry"], params["n_xs"]
    tup = lambda xs: f"({', '.join(xs)}{',' if len(xs) == 1 else ''})"  # noqa: E731
    return (f"_tg_scan({fns['body']}, {tup(args[:n])}, {tup(args[n:n + m])}, "
            f"{tup(args[n + m:])}, length={params['length']}, reverse={params['reverse']})")


def _tg_scan(body, init, xs, consts, length, reverse):
    from jax import lax
    n = len(init)

    def step(carry, x):
        out = body(*carry, *x, *consts)
        return tuple(out[:n]), tuple(out[n:])

    carry, ys = lax.scan(step, init, xs, length=length, reverse=reverse)
    return (*carry, *ys)


# while_loop: ``*carry = while_loop(*init, *captures, cond_graph=, body_graph=, n_carry=)``

def _while_impl(*args, cond_graph, body_graph, n_carry):
    carry, consts = list(args[:n_carry]), list(args[n_carry:])
    while bool(np.asarray(_evaluate(cond_graph, carry + consts)[0]).reshape(())):
        carry = _evaluate(body_graph, carry + consts)
    return carry


def _while_shape(*args, cond_graph, body_graph, n_carry):
    _check_signature("while_loop", cond_graph, args)
    _check_signature("while_loop", body_graph, args)
    _same_avals("while_loop", "the carry", args[:n_carry], "body_graph", body_graph.outputs)
    return [(v.shape, v.dtype) for v in args[:n_carry]]


def _while_lower(args, fns, params):
    n = params["n_carry"]
    return (f"_tg_while({fns['cond_graph']}, {fns['body_graph']}, "
            f"({', '.join(args[:n])}{',' if n == 1 else ''}), "
            f"({', '.join(args[n:])}{',' if len(args) - n == 1 else ''}))")


def _tg_while(cond_fn, body_fn, init, consts):
    from jax import lax
    return lax.while_loop(lambda c: cond_fn(*c, *consts)[0].reshape(()),
                          lambda c: tuple(body_fn(*c, *consts)), init)


JAX_HELPERS.update({"_tg_cond": _tg_cond, "_tg_scan": _tg_scan, "_tg_while": _tg_while})


# reverse mode (called by passes/autodiff.vjp_graph under its GraphBuilder)

def _clone(graph, inputs):
    """``graph``'s equations over the Vars ``inputs``, every result a fresh Var:
    (equations, outputs)."""
    from .ir.graph import Var
    m = dict(zip(graph.inputs, inputs, strict=True))
    eqns = []
    for e in graph.eqns:
        outs = tuple(Var(v.shape, v.dtype) for v in e.outs)
        eqns.append(e.replace(inputs=tuple(m.get(v, v) for v in e.inputs), outs=outs))
        m.update(zip(e.outs, outs, strict=True))
    return eqns, [m.get(v, v) for v in graph.outputs]


def _zeros(eqns, like_shape, dtype, src):
    from .ir.graph import Eqn, Var
    from .primitives import full_p
    z = Var(like_shape, dtype)
    eqns.append(Eqn(full_p, (), {"shape": tuple(like_shape), "value": 0, "dtype": dtype}, z,
                    src))
    return z


def _body_vjp(graph, inputs, seeds, wrt, src):
    """Re-run ``graph`` on ``inputs``, then its VJP for ``seeds`` [(output index, cotangent
    Var)] w.r.t. the inputs at ``wrt``: (equations, one gradient Var per ``wrt``)."""
    from .ir.graph import Const, Eqn, Graph, Var
    from .passes.autodiff import vjp_graph
    from .primitives import add_p
    eqns, outs = _clone(graph, inputs)
    seed_map, extra = {}, []
    for j, ct in seeds:
        o = outs[j]
        if isinstance(o, Const):
            continue
        if o in seed_map:  # one value returned twice (an RNN's h as carry and as y)
            s = Var(o.shape, o.dtype)
            extra.append(Eqn(add_p, (seed_map[o], ct), {}, s, src))
            seed_map[o] = s
        else:
            seed_map[o] = ct
    bwd, grads = vjp_graph(Graph(inputs, eqns, outs), seed_map, [inputs[i] for i in wrt], src)
    eqns = eqns + extra + bwd
    return eqns, [g if g is not None else _zeros(eqns, inputs[i].shape, inputs[i].dtype, src)
                  for g, i in zip(grads, wrt, strict=True)]


def _differentiable(v, mask, i):
    from .ir.graph import Const
    return mask is not None and mask[i] and not isinstance(v, Const) \
        and v.dtype.is_floating_point


def _builder():
    return trace_state.current


def _cond_vjp(e, cts):
    from .ir.graph import Eqn, Graph, Var
    b = _builder()
    pred, rest = e.inputs[0], e.inputs[1:]
    wrt = [i for i, v in enumerate(rest) if _differentiable(v, e.grad_mask, i + 1)]
    seeded = [j for j, c in enumerate(cts) if c is not None and e.outs[j].dtype.is_floating_point]
    if not wrt or not seeded:
        return [None] * len(e.inputs)
    ct_vars = [b.var_of(cts[j]) for j in seeded]
    graphs = {}
    for key in ("true_graph", "false_graph"):
        g = e.params[key]
        new_in = [Var(v.shape, v.dtype) for v in rest]
        ct_in = [Var(e.outs[j].shape, e.outs[j].dtype) for j in seeded]
        eqns, grads = _body_vjp(g, new_in, list(zip(seeded, ct_in, strict=True)), wrt, b.src)
        graphs[key] = Graph(new_in + ct_in, eqns, grads, name=f"{g.name}_vjp",
                            meta={"origin": f"VJP of {g.meta.get('origin', g.name)}"})
    outs = [Var(rest[i].shape, rest[i].dtype) for i in wrt]
    b.eqns.append(Eqn(cond_p, (pred, *rest, *ct_vars), graphs, None, b.src, module=b.module,
                          phase="backward", outs=outs))
    result = [None] * len(e.inputs)
    for i, v in zip(wrt, outs, strict=True):
        result[i + 1] = Tensor._make(v)
    return result


def _scan_vjp(e, cts):
    from .ir.graph import Eqn, Graph, Var
    b = _builder()
    p = e.params
    body, nc, nx, length = p["body"], p["n_carry"], p["n_xs"], p["length"]
    init, xs, consts = e.inputs[:nc], e.inputs[nc:nc + nx], e.inputs[nc + nx:]
    ny = len(body.outputs) - nc
    DC = [i for i in range(nc) if init[i].dtype.is_floating_point]
    DX = [i for i in range(nx) if _differentiable(xs[i], e.grad_mask, nc + i)]
    DK = [k for k in range(len(consts)) if _differentiable(consts[k], e.grad_mask, nc + nx + k)]
    YS = [j for j in range(ny) if cts[nc + j] is not None
          and e.outs[nc + j].dtype.is_floating_point]
    wanted = [i for i in DC if _differentiable(init[i], e.grad_mask, i)]
    if not (wanted or DX or DK) or not (YS or any(cts[i] is not None for i in DC)):
        return [None] * len(e.inputs)
    # the carries each step started from: ys the trace added (see the NOTE), or recomputed
    saved = {}
    for i in range(nc):
        for j in range(ny):
            if body.outputs[nc + j] is body.inputs[i]:
                saved[i] = e.outs[nc + j]
                break
    if len(saved) < nc:
        new_in = [Var(v.shape, v.dtype) for v in body.inputs]
        eqns, outs = _clone(body, new_in)
        g = Graph(new_in, eqns, outs[:nc] + new_in[:nc], name=f"{body.name}_carries",
                  meta=body.meta)
        res = [Var(v.shape, v.dtype) for v in init] + \
            [Var((length, *v.shape), v.dtype) for v in init]
        b.eqns.append(Eqn(scan_p, e.inputs, {**p, "body": g}, None, b.src, module=b.module,
                              phase="backward", outs=res))
        saved = dict(enumerate(res[nc:]))
    dc_in = [Var(init[i].shape, init[i].dtype) for i in DC]
    dk_in = [Var(consts[k].shape, consts[k].dtype) for k in DK]
    c_t = [Var(v.shape, v.dtype) for v in init]
    x_t = [Var(v.shape[1:], v.dtype) for v in xs]
    dy_t = [Var(e.outs[nc + j].shape[1:], e.outs[nc + j].dtype) for j in YS]
    k_in = [Var(v.shape, v.dtype) for v in consts]
    seeds = list(zip(DC, dc_in, strict=True)) + [(nc + j, d) for j, d in zip(YS, dy_t,
                                                                            strict=True)]
    wrt = DC + [nc + i for i in DX] + [nc + nx + k for k in DK]
    eqns, grads = _body_vjp(body, c_t + x_t + k_in, seeds, wrt, b.src)
    g_c, g_x, g_k = grads[:len(DC)], grads[len(DC):len(DC) + len(DX)], grads[len(DC) + len(DX):]
    from .primitives import add_p
    acc = []
    for d, g in zip(dk_in, g_k, strict=True):
        s = Var(d.shape, d.dtype)
        eqns.append(Eqn(add_p, (d, g), {}, s, b.src))
        acc.append(s)
    bwd_body = Graph(dc_in + dk_in + c_t + x_t + dy_t + k_in, eqns, g_c + acc + g_x,
                     name=f"{body.name}_vjp",
                     meta={"origin": f"VJP of {body.meta.get('origin', body.name)}"})

    def ct_or_zero(t, v):
        if t is not None:
            return b.var_of(t)
        return _zeros(b.eqns, v.shape, v.dtype, b.src)

    init_cts = [ct_or_zero(cts[i], e.outs[i]) for i in DC]
    init_cts += [_zeros(b.eqns, consts[k].shape, consts[k].dtype, b.src) for k in DK]
    inputs = (init_cts + [saved[i] for i in range(nc)] + list(xs)
              + [b.var_of(cts[nc + j]) for j in YS] + list(consts))
    outs = ([Var(init[i].shape, init[i].dtype) for i in DC]
            + [Var(consts[k].shape, consts[k].dtype) for k in DK]
            + [Var(xs[i].shape, xs[i].dtype) for i in DX])
    b.eqns.append(Eqn(scan_p, inputs, {"body": bwd_body, "n_carry": len(DC) + len(DK),
                                       "n_xs": nc + nx + len(YS), "length": length,
                                       "reverse": not p["reverse"]}, None, b.src, module=b.module,
                          phase="backward", outs=outs))
    result = [None] * len(e.inputs)
    for pos, i in enumerate(DC):
        if i in wanted:
            result[i] = Tensor._make(outs[pos])
    for pos, k in enumerate(DK):
        result[nc + nx + k] = Tensor._make(outs[len(DC) + pos])
    for pos, i in enumerate(DX):
        result[nc + i] = Tensor._make(outs[len(DC) + len(DK) + pos])
    return result


def _while_vjp(e, cts):
    raise RuntimeError(_WHILE_GRAD.replace("a carried input or a tensor the body reads "
                                           "requires grad, and ", ""))


# dead-code elimination inside (called by passes/dce.py): results nobody reads go, the
# bodies keep their signatures

def _dce(graph):
    from .passes.dce import eliminate_dead_code
    return eliminate_dead_code(graph)


def _cond_prune(e, live):
    keep = [j for j, v in enumerate(e.outs) if v in live]
    params = {}
    for key in ("true_graph", "false_graph"):
        g = e.params[key]
        params[key] = _dce(g.replace(outputs=[g.outputs[j] for j in keep]))
    return e.replace(params=params, outs=tuple(e.outs[j] for j in keep))


def _scan_prune(e, live):
    nc, body = e.params["n_carry"], e.params["body"]
    keep = list(range(nc)) + [j for j in range(nc, len(e.outs)) if e.outs[j] in live]
    g = _dce(body.replace(outputs=[body.outputs[j] for j in keep]))
    return e.replace(params={**e.params, "body": g}, outs=tuple(e.outs[j] for j in keep))


def _while_prune(e, live):
    return e.replace(params={**e.params, "cond_graph": _dce(e.params["cond_graph"]),
                             "body_graph": _dce(e.params["body_graph"])})


cond_p = StructuredPrimitive("cond", _cond_impl, _cond_shape, _cond_lower, _cond_vjp,
                             _cond_prune, differentiable=True)
scan_p = StructuredPrimitive("scan", _scan_impl, _scan_shape, _scan_lower, _scan_vjp,
                             _scan_prune, differentiable=True)
while_p = StructuredPrimitive("while_loop", _while_impl, _while_shape, _while_lower, _while_vjp,
                              _while_prune, differentiable=True)


# the printed graph's namespace (``Graph.to_callable``): a body prints as a nested def
# returning a tuple; these run it through the public functions above

def _printed_cond(pred, *args, true_graph, false_graph):
    return tuple(cond(pred, lambda *a: tuple(true_graph(*a)), lambda *a: tuple(false_graph(*a)),
                      args))


def _printed_scan(*args, body, n_carry, n_xs, length, reverse):
    init, xs, consts = args[:n_carry], args[n_carry:n_carry + n_xs], args[n_carry + n_xs:]

    def combine(c, x):
        out = tuple(body(*c, *x, *consts))
        return out[:n_carry], out[n_carry:]

    c, ys = scan(combine, tuple(init), tuple(xs), 0, reverse)
    return (*c, *ys)


def _printed_while(*args, cond_graph, body_graph, n_carry):
    consts = args[n_carry:]
    return while_loop(lambda *c: cond_graph(*c, *consts)[0],
                      lambda *c: tuple(body_graph(*c, *consts)), tuple(args[:n_carry]))


PRINTED = {"cond": _printed_cond, "scan": _printed_scan, "while_loop": _printed_while}
