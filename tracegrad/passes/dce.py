"""Dead-code elimination."""
from __future__ import annotations

from ..ir.graph import Const, Graph


def eliminate_dead_code(graph: Graph) -> Graph:
    """Drop equations whose results no output needs (primitives have no side effects).

    before:                      after:
        def f(x):                    def f(x):
            v0 = exp(x)                  v1 = sin(x)
            v1 = sin(x)                  return (v1,)
            return (v1,)
    """
    live = {v for v in graph.outputs if not isinstance(v, Const)}
    kept = []
    for e in reversed(graph.eqns):
        if getattr(e.prim, "multiple_results", False):
            # cond/scan/while_loop: live if any result is; unused results go, the bodies
            # are cleaned with their signatures kept
            if any(v in live for v in e.outs):
                e = e.prim.prune(e, live)
                kept.append(e)
                live.update(v for v in e.inputs if not isinstance(v, Const))
            continue
        if e.out in live:
            kept.append(e)
            live.update(v for v in e.inputs if not isinstance(v, Const))
    kept.reverse()
    return graph.replace(eqns=kept)
