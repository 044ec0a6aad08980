"""Gradients *of* a compiled function: a compiled backward graph behind a grad_fn.

When a compiled function's outputs require grad (``tracegrad.compile(model)``
in an eager training loop), the autodiff pass (``vjp_graph``) differentiates the
traced graph. The forward program also returns the residuals the backward
equations read; the backward program takes residuals and output gradients and
returns input gradients. Calls attach a ``CompiledFunctionBackward`` node to
the outputs, so ``loss.backward()`` runs the compiled backward.
"""
from __future__ import annotations

import numpy as np

from ..autograd.grad_mode import enable_grad, is_grad_enabled
from ..autograd.graph import FREED_MESSAGE, Node, _seq
from ..ir.graph import Const, Eqn, Graph, Var
from ..ir.sources import Arg, State
from ..passes.autodiff import vjp_graph
from ..primitives import add_p
from ..tensor import Tensor


class CompiledBackward:
    def __init__(self, graph: Graph, residuals, wrt_sources, grad_outputs, out_meta, n_seeds):
        self.graph = graph                  # inputs: residuals + seeds; outputs: grads
        self.residuals = residuals
        self.wrt_sources = wrt_sources      # (source index, source) per gradient output
        self.grad_outputs = grad_outputs    # which forward outputs have a grad_fn
        self.out_meta = out_meta
        self.n_seeds = n_seeds
        self.lowered = None

    def lower(self):
        if self.lowered is None:
            from ..codegen.jax_lower import lower
            from ..passes import run_pipeline
            final, _ = run_pipeline(self.graph)
            self.lowered = lower(final)
        return self.lowered

    def attach(self, results, residual_values, flat, replay=None):
        tensors = []
        for _, src in self.wrt_sources:
            tensors.append(flat[src.index][1] if isinstance(src, Arg) else src.tensor)
        node = CompiledFunctionBackward()
        node.next_functions = tuple(
            (t.grad_fn, t._out_nr) if t.grad_fn is not None else (t._accumulator(), 0)
            for t in tensors)
        node._seq = next(_seq)
        node._pre_hooks = node._post_hooks = node._retain_grad = None
        node.metadata = None
        node._n_out = len(self.grad_outputs)
        node.program = self
        node.residuals = list(residual_values)  # device values, passed straight back
        node.in_meta = [(t.shape, t.dtype) for t in tensors]
        node.replay = None if replay is None else (*replay, tensors, self.grad_outputs)
        for nr, j in enumerate(self.grad_outputs):
            out = results[j]
            out.grad_fn = node
            out._rg = True
            out._out_nr = nr


class CompiledFunctionBackward(Node):
    __slots__ = ("program", "residuals", "in_meta", "_n_out", "replay")

    def apply(self, *grads):
        from .. import functions as F

        if self.residuals is None:
            raise RuntimeError(FREED_MESSAGE)
        if is_grad_enabled():  # create_graph=True: the gradients need a graph of their own
            return self._replayed(grads)
        seeds = []
        for g, (shape, dtype) in zip(grads, self.program.out_meta, strict=False):
            seeds.append(np.zeros(shape, dtype.np) if g is None else np.asarray(g._data))
        outs = self.program.lower().fn(*self.residuals, *seeds)
        result = []
        for o, (shape, dtype) in zip(outs, self.in_meta, strict=False):
            result.append(F.zeros(shape, dtype=dtype) if o is None else Tensor._make(np.array(o)))
        return tuple(result)

    def _release(self):
        self.residuals = None

    def _replayed(self, grads):
        """Gradients with a graph (``create_graph=True``): the compiled backward gives
        values only, so the call runs again eagerly, on the same arguments and state, and
        the tape differentiates that (a WGAN-GP penalty through a compiled critic)."""
        from .. import functions as F
        from .._pytree import flatten_out
        from ..autograd import grad as autograd_grad
        if self.replay is None:
            raise RuntimeError(
                "create_graph=True (double backward) through a tracegrad.compile'd call that "
                "writes state or draws random numbers is not supported: it would have to run "
                "again. Call the module eagerly for this backward, or compile the whole step "
                "including autograd.grad")
        fn, args, kwargs, tensors, grad_outputs = self.replay
        with enable_grad():
            out = fn(*args, **kwargs)
            leaves = [t for t in flatten_out(out) if isinstance(t, Tensor)]
            roots = [leaves[j] for j in grad_outputs]
            seeds = [F.zeros_like(r) if g is None else g for g, r in zip(grads, roots,
                                                                         strict=True)]
            got = autograd_grad(roots, tensors, grad_outputs=seeds, create_graph=True,
                                allow_unused=True)
        return tuple(F.zeros(shape, dtype=dtype) if g is None else g
                     for g, (shape, dtype) in zip(got, self.in_meta, strict=True))


def split_forward_backward(trace, outs, flat) -> CompiledBackward:
    """Differentiate ``trace.graph`` w.r.t. its inputs that require grad; extend the
    forward graph's outputs with the residuals the backward needs."""
    g = trace.graph
    wrt_sources, wrt_vars = [], []
    for idx, (src, v) in enumerate(zip(trace.sources, g.inputs, strict=False)):
        if isinstance(src, Arg) and flat[src.index][1].requires_grad:
            wrt_sources.append((idx, src))
            wrt_vars.append(v)
        elif isinstance(src, State) and src.tensor.requires_grad:
            wrt_sources.append((idx, src))
            wrt_vars.append(v)
    # a leaf written in place under no_grad held more than one Var; eager gives the
    # leaf the gradients of all its uses, so differentiate w.r.t. each and add them
    versions = []
    for _, src in wrt_sources:
        t = flat[src.index][1] if isinstance(src, Arg) else src.tensor
        versions.append(trace.leaf_versions.get(id(t), []))
    grad_outputs = [j for j, t in enumerate(outs) if t.requires_grad]
    seeds = {}
    seed_vars = []
    out_meta = []
    for j in grad_outputs:
        ov = g.outputs[j]
        sv = Var(ov.shape, ov.dtype)
        seed_vars.append(sv)
        out_meta.append((ov.shape, ov.dtype))
        if ov in seeds:  # the same value returned twice: add the seeds in the backward
            seeds[ov] = seeds[ov]
        seeds[ov] = sv
    later = [v for vs in versions for v in vs]
    bwd_eqns, grads = vjp_graph(g, seeds, wrt_vars + later)
    grads, later_grads = grads[:len(wrt_vars)], iter(grads[len(wrt_vars):])
    for i, vs in enumerate(versions):
        for _ in vs:
            grads[i] = _add_grads(bwd_eqns, grads[i], next(later_grads))
    # an input no output depends on gets no edge (eager leaves its .grad None)
    connected = [i for i, gv in enumerate(grads) if gv is not None]
    wrt_sources = [wrt_sources[i] for i in connected]
    wrt_vars = [wrt_vars[i] for i in connected]
    grads = [grads[i] for i in connected]
    defined_in_bwd = {v for e in bwd_eqns for v in e.outs} | set(seed_vars)
    residuals = []
    seen = set()
    for e in bwd_eqns:
        for v in e.inputs:
            if not isinstance(v, Const) and v not in defined_in_bwd and v not in seen:
                seen.add(v)
                residuals.append(v)
    grad_vars = grads
    for gv in grad_vars:
        if gv not in defined_in_bwd and gv not in seen and not isinstance(gv, Const):
            seen.add(gv)
            residuals.append(gv)
    residual_names = [f"res{i}" for i in range(len(residuals))]
    bwd = Graph(residuals + seed_vars, bwd_eqns, grad_vars,
                residual_names + [f"grad_out{i}" for i in range(len(seed_vars))],
                [f"grad_in{i}" for i in range(len(grad_vars))], name=f"{g.name}_backward",
                meta={"stage": "backward"})
    trace.graph = g.replace(outputs=g.outputs + residuals,
                            output_names=g.output_names + residual_names)
    return CompiledBackward(bwd, residuals, wrt_sources, grad_outputs, out_meta, len(seed_vars))


def _add_grads(eqns, a, b):
    """a + b as a backward equation (either may be None: no gradient)."""
    if a is None or b is None:
        return b if a is None else a
    out = Var(a.shape, a.dtype)
    eqns.append(Eqn(add_p, (a, b), {}, out, "autodiff", phase="backward"))
    return out


class SpentBackward(Node):
    """The grad_fn of a result whose graph a ``backward()`` inside the compiled call used
    up (``return loss`` after ``loss.backward()``): it requires grad and names its node as
    eager's does, and a second backward through it fails as eager's would."""

    __slots__ = ("_name",)

    def __init__(self, name):
        self._name = name
        self.next_functions = ()
        self._seq = next(_seq)

    def name(self):
        return self._name

    def apply(self, *grads):
        raise RuntimeError(FREED_MESSAGE + " (This is a result of a tracegrad.compile'd call "
                           "that ran backward() inside: its graph was used there.)")


def mark_spent(results, spent):
    """Give the results at ``spent`` (index -> grad_fn name) a SpentBackward node."""
    for j, name in spent.items():
        t = results[j]
        t.grad_fn = SpentBackward(name)
        t._rg = True
