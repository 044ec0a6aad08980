"""The namespace printed graphs run in: one function per primitive, over tensors.

Also the IR-only primitives: ``fusion`` (a fused elementwise region, whose
``graph`` param is a sub-Graph) and ``const`` for literals.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..primitives import PRIMITIVES, TENSOR, Primitive  # noqa: F401  (TENSOR appears in printed params)


def _run_subgraph(*args, graph):
    from .interpreter import evaluate
    return evaluate(graph, args)[0]


def _fusion_shape(*args, graph):
    v = graph.outputs[0]
    return v.shape, v.dtype


def _fusion_jax(args, p):
    # the codegen inlines fused regions; this is used only if asked for one expression
    return f"{p['graph'].name}({', '.join(args)})[0]"


fusion_p = Primitive("fusion", _run_subgraph, _fusion_shape, _fusion_jax, vjp=None, kind="control",
                     differentiable=False, variadic=True)


def _grad_shape(*args, n_roots, group):
    wrt = args[-1]
    return wrt.shape, wrt.dtype


def _grad_unexpanded(*args, **params):
    raise RuntimeError("a grad request must be expanded by the autodiff pass "
                       "(tracegrad.passes.autodiff.expand_grads) before it runs")


def _grad_jax(args, p):
    raise RuntimeError("grad requests are expanded by the autodiff pass before lowering")


# ``g = grad(*roots, *seeds, wrt, n_roots=k, group=i)``: the gradient of the roots
# (weighted by the seeds) w.r.t. ``wrt``, as asked for by backward()/autograd.grad
# inside a traced function. All requests of one group come from one call and are
# expanded together by passes/autodiff.expand_grads.
grad_p = Primitive("grad", _grad_unexpanded, _grad_shape, _grad_jax, vjp=None, kind="control",
                   differentiable=False, variadic=True)


def _graft_shape(value, like):
    return value.shape, value.dtype


# ``y = graft(value, like)``: ``value``, with the gradient going to ``like``. The tracer
# records it where eager changes a tensor's data behind autograd's back (an in-place
# write through ``detach()``): the new value, the old autograd history.
graft_p = Primitive("graft", lambda value, like: value, _graft_shape, "{0}", kind="control",
                    vjp=(None, lambda g, out, value, like: g), save=(), grad_name="GraftBackward0")

# primitives that exist only in graphs (no eager entry point, no op-table row)
IR_ONLY = {"fusion": "passes/fusion.py wraps a subgraph", "grad": "expanded by passes/autodiff.py",
           "graft": "recorded by ir/tracer.py for an in-place write through detach()"}


def _call(prim):
    def call(*args, **params):
        from ..functions import _as_tensor
        from ..tensor import apply
        for k, v in list(params.items()):
            if k == "dtype" and isinstance(v, str):
                params[k] = dtypes.from_name(v)
        if prim is fusion_p:
            fn = params["graph"]
            if callable(fn):
                return fn(*args)[0]
            return apply(prim, tuple(map(_as_tensor, args)), params)
        return apply(prim, tuple(_as_tensor(a) for a in args), params)
    call.__name__ = prim.name
    return call


def const(value, dtype):
    from ..tensor import Tensor
    return Tensor._make(np.asarray(value, dtype=dtypes.from_name(dtype).np))


NAMESPACE = {name: _call(p) for name, p in PRIMITIVES.items()}
NAMESPACE["const"] = const
NAMESPACE["TENSOR"] = TENSOR
NAMESPACE["inf"] = float("inf")


def _structured_namespace():
    # cond/scan/while_loop print with their bodies as nested defs (tracegrad/control_flow.py)
    from ..control_flow import PRINTED
    return PRINTED


NAMESPACE.update(_structured_namespace())
# structured ops have no op-table row either: their bodies are Python functions
IR_ONLY.update({name: "tracegrad/control_flow.py; tested by tests/test_control_flow.py"
                for name in ("cond", "scan", "while_loop", "cond_touch")})
