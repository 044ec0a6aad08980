"""Reverse-mode autodiff as a graph transform.

``vjp_graph`` walks a graph's equations in reverse and applies each primitive's
VJP rule, the very rules the eager tape uses. The rules are written with
tracegrad ops; here they run on tensors whose data are IR Vars, under a
``GraphBuilder`` that turns every op into a new equation (shapes from the shape
rules, no numbers). Gradients flow only along the edges that carried gradient
when the graph was traced (``Eqn.grad_mask``), so ``detach()`` and ``no_grad``
regions stay cut exactly as in eager mode.
"""
from __future__ import annotations

import numpy as np

from ..autograd.grad_mode import no_grad
from ..ir.graph import Const, Eqn, Graph, Var
from ..tensor import Tensor, trace_state


class GraphBuilder:
    """The active tracer while rules run symbolically: ops append equations."""

    def __init__(self, src: str = "autodiff"):
        self.eqns: list[Eqn] = []
        self.src = src
        self.recording = True

    def __enter__(self):
        self._prev = trace_state.current
        trace_state.current = self
        return self

    def __exit__(self, *exc):
        trace_state.current = self._prev
        return False

    def var_of(self, t: Tensor):
        d = t._data
        if isinstance(d, Var):
            return d
        return Const(np.asarray(d))

    def bind(self, prim, args, params, name):
        in_vars = [self.var_of(a) for a in args]
        shape, dtype = prim.shape(*in_vars, **params)
        v = Var(shape, dtype)
        self.eqns.append(Eqn(prim, in_vars, dict(params), v, self.src))
        return Tensor._make(v)

    def constant(self, t: Tensor) -> Tensor:
        arr = t._data
        flat = arr.reshape(-1)
        if arr.ndim and flat.size > 1 and np.all(flat == flat[0]):
            from ..primitives import full_p
            v = Var(arr.shape, t.dtype)
            self.eqns.append(Eqn(full_p, (), {"shape": arr.shape, "value": flat[0].item(),
                                              "dtype": t.dtype}, v, self.src))
            t._data = v
        return t

    def random(self, t, dist, **params):
        raise RuntimeError("random ops inside a VJP rule are not supported")

    def concretize(self, t, what):
        raise RuntimeError(f"a VJP rule asked for {what} of a symbolic value")

    def graph_break(self, reason, depth=3):
        raise RuntimeError(reason)

    def before_inplace(self, dst):
        raise RuntimeError("VJP rules must not modify tensors in place")

    def after_inplace(self, dst, src):
        pass

    def note_grad_read(self, owner, g):
        pass

    def note_grad_write(self, owner):
        pass


def _wrap(v) -> Tensor:
    if isinstance(v, Const):
        return Tensor._make(v.value)
    return Tensor._make(v)


def vjp_graph(graph: Graph, seeds: dict, wrt: list) -> tuple[list[Eqn], list]:
    """Backward equations for ``graph``.

    seeds: {output Var: cotangent Var}; wrt: Vars to differentiate with respect to.
    Returns (new equations, one cotangent Var or None per ``wrt``).
    """
    from ..functions import sum_to

    builder = GraphBuilder()
    ct: dict = {v: _wrap(s) for v, s in seeds.items()}
    wanted = set(wrt)
    with builder, no_grad():
        for e in reversed(graph.eqns):
            g = ct.get(e.out)
            if g is None or e.grad_mask is None or not e.prim.differentiable:
                continue
            if e.out not in wanted:
                del ct[e.out]
            args = [_wrap(v) for v in e.inputs]
            out = _wrap(e.out)
            prim = e.prim
            if prim.vjp_all is not None:
                grads = list(prim.vjp_all(g, out, *args, **e.params))
            else:
                grads = [rule(g, out, *args, **e.params) if (rule is not None and e.grad_mask[i])
                         else None for i, rule in enumerate(prim.vjp)]
            for i, (v, gi) in enumerate(zip(e.inputs, grads)):
                if gi is None or not e.grad_mask[i] or isinstance(v, Const):
                    continue
                if tuple(gi.shape) != v.shape:
                    gi = sum_to(gi, v.shape)
                if gi.dtype is not v.dtype:
                    gi = gi.to(v.dtype)
                prev = ct.get(v)
                ct[v] = gi if prev is None else prev + gi
    return builder.eqns, [ct[w]._data if w in ct else None for w in wrt]


def expand_grads(graph: Graph) -> Graph:
    """The autodiff stage of the compile pipeline.

    Gradients requested inside a traced function (``loss.backward()``,
    ``autograd.grad``) were recorded while tracing by running these same VJP
    rules on traced values (the tape runs with hooks, retain_grad and custom
    Functions intact), so the traced graph already holds them; gradients *of* a
    compiled function come from ``vjp_graph``. This stage marks where autodiff
    happened: the equations tagged as backward.
    """
    return graph
