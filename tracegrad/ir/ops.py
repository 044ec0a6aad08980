"""The namespace printed graphs run in: one function per primitive, over tensors.

Also the IR-only primitives: ``fusion`` (a fused elementwise region, whose
``graph`` param is a sub-Graph) and ``const`` for literals.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..primitives import PRIMITIVES, Primitive, TENSOR  # noqa: F401  (TENSOR appears in printed params)


def _run_subgraph(*args, graph):
    from .interpreter import evaluate
    return evaluate(graph, args)[0]


def _fusion_shape(*args, graph):
    v = graph.outputs[0]
    return v.shape, v.dtype


def _fusion_jax(args, p):
    # the codegen inlines fused regions; this is used only if asked for one expression
    return f"{p['graph'].name}({', '.join(args)})[0]"


fusion_p = Primitive("fusion", _run_subgraph, _fusion_shape, _fusion_jax, vjp=None,
                     differentiable=False, variadic=True)


def _call(prim):
    def call(*args, **params):
        from ..functions import _as_tensor
        from ..tensor import apply
        for k, v in list(params.items()):
            if k == "dtype" and isinstance(v, str):
                params[k] = dtypes.from_name(v)
        if prim is fusion_p:
            fn = params["graph"]
            return fn(*args)[0] if callable(fn) else apply(prim, tuple(map(_as_tensor, args)), params)
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
