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
from ..tensor import Tensor, TracingContext, trace_state


class GraphBuilder(TracingContext):
    """The active tracer while rules run symbolically: ops append equations."""

    def __init__(self, src: str = "autodiff"):
        self.eqns: list[Eqn] = []
        self.src = src
        self.module = ""  # the forward equation's, while its rule runs
        self.recording = True

    def enter_module(self, m):
        pass

    def exit_module(self):
        pass

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
        self.eqns.append(Eqn(prim, in_vars, dict(params), v, self.src, module=self.module,
                             phase="backward"))
        return Tensor._make(v)

    def constant(self, t: Tensor) -> Tensor:
        arr = t._data
        flat = arr.reshape(-1)
        if arr.ndim and flat.size > 1 and np.all(flat == flat[0]):
            from ..primitives import full_p
            v = Var(arr.shape, t.dtype)
            self.eqns.append(Eqn(full_p, (), {"shape": arr.shape, "value": flat[0].item(),
                                              "dtype": t.dtype}, v, self.src,
                                 module=self.module, phase="backward"))
            t._data = v
        return t

    def random(self, t, dist, generator=None, **params):
        raise RuntimeError("random ops inside a VJP rule are not supported")

    def is_literal(self, t):
        return not isinstance(t._data, Var)

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

    def note_alias(self, t):
        pass


def _wrap(v) -> Tensor:
    if isinstance(v, Const):
        return Tensor._make(v.value)
    return Tensor._make(v)


def _rule_grads(prim, e, g) -> list:
    args = [_wrap(v) for v in e.inputs]
    out = _wrap(e.out)
    if prim.vjp_all is not None:
        return list(prim.vjp_all(g, out, *args, **e.params))
    return [rule(g, out, *args, **e.params) if (rule is not None and e.grad_mask[i])
            else None for i, rule in enumerate(prim.vjp)]


def vjp_graph(graph: Graph, seeds: dict, wrt: list,
              src: str = "autodiff") -> tuple[list[Eqn], list]:
    """Backward equations for ``graph``.

    seeds: {output Var: cotangent Var}; wrt: Vars to differentiate with respect to.
    Returns (new equations, one cotangent Var or None per ``wrt``). The equations a
    forward equation's rule emits carry its source line and module path (phase
    "backward"), so ``model.fc1``'s backward is found where its forward is.
    """
    from ..functions import sum_to

    builder = GraphBuilder(src)
    ct: dict = {v: _wrap(s) for v, s in seeds.items()}
    wanted = set(wrt)
    with builder, no_grad():
        for e in reversed(graph.eqns):
            prim = e.prim
            if getattr(prim, "multiple_results", False):
                # cond/scan: their rule emits structured equations (tracegrad/control_flow.py)
                cts = [ct.get(o) for o in e.outs]
                if e.grad_mask is None or all(c is None for c in cts):
                    continue
                for o in e.outs:
                    if o not in wanted:
                        ct.pop(o, None)
                builder.src, builder.module = e.src or src, e.module
                grads = prim.graph_vjp(e, cts)
            else:
                g = ct.get(e.out)
                if g is None or e.grad_mask is None or not prim.differentiable:
                    continue
                if e.out not in wanted:
                    del ct[e.out]
                builder.src, builder.module = e.src or src, e.module
                grads = _rule_grads(prim, e, g)
            for i, (v, gi) in enumerate(zip(e.inputs, grads, strict=False)):
                if gi is None or not e.grad_mask[i] or isinstance(v, Const):
                    continue
                if tuple(gi.shape) != v.shape:
                    gi = sum_to(gi, v.shape)
                if gi.dtype is not v.dtype:
                    gi = gi.to(v.dtype)
                prev = ct.get(v)
                ct[v] = gi if prev is None else prev + gi
    grads = []
    for w in wrt:
        g = ct.get(w)
        grads.append(None if g is None else g._data if isinstance(g._data, Var) else Const(g._data))
    return builder.eqns, grads


def expand_grads(graph: Graph) -> Graph:
    """Replace each ``grad`` request by the backward equations that compute it.

    ``loss.backward()`` inside a traced function records, per leaf, a request
    ``g = grad(loss, seed, w, n_roots=1, group=0)``; this pass walks the equations
    before it in reverse, applying each primitive's VJP rule (``vjp_graph``).

    before:                          after:
        v0 = mul(x, w)                   v0 = mul(x, w)
        v1 = sum(v0, ...)                v1 = sum(v0, ...)
        g = grad(v1, c, w, ...)          v2 = reshape(c, ...)
                                         v3 = broadcast_to(v2, ...)
                                         g = mul(v3, x)
    """
    from ..ir.ops import grad_p
    from .rewrite import substitute

    if not any(e.prim is grad_p for e in graph.eqns):
        return graph
    groups: dict = {}
    for e in graph.eqns:
        if e.prim is grad_p:
            groups.setdefault(e.params["group"], []).append(e)
    out: list[Eqn] = []
    mapping: dict = {}
    done = set()

    def find(v):
        while v in mapping:
            v = mapping[v]
        return v

    for e in graph.eqns:
        if e.prim is not grad_p:
            inputs = tuple(find(v) for v in e.inputs)
            out.append(e.replace(inputs=inputs) if inputs != e.inputs else e)
            continue
        gid = e.params["group"]
        if gid in done:
            continue
        done.add(gid)
        requests = groups[gid]
        k = e.params["n_roots"]
        roots = [find(v) for v in e.inputs[:k]]
        seeds = {}
        for r, s in zip(roots, (find(v) for v in e.inputs[k:2 * k]), strict=False):
            seeds[r] = s  # a root given twice: the builder adds both seeds below
        wrt = [find(r.inputs[-1]) for r in requests]
        prefix = Graph(graph.inputs, out, roots)
        new_eqns, grads = vjp_graph(prefix, seeds, wrt, src=e.src)
        out.extend(new_eqns)
        for r, gv in zip(requests, grads, strict=False):
            if gv is None:
                from ..primitives import full_p
                z = Var(r.out.shape, r.out.dtype)
                out.append(Eqn(full_p, (), {"shape": r.out.shape, "value": 0,
                                            "dtype": r.out.dtype}, z, e.src, module=e.module,
                               phase="backward"))
                gv = z
            mapping[r.out] = gv
    return substitute(graph.replace(eqns=out), mapping)
