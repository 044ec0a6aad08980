"""Graph passes: each a pure, named function Graph -> Graph; the pipeline is a flat list.

    autodiff   expand grad requests into backward equations (passes/autodiff.py)
    dce        eliminate_dead_code
    cse        eliminate_common_subexpressions
    simplify   algebraic simplification and constant folding (a table of rewrites)
    fusion     group elementwise chains into fused regions
"""
from __future__ import annotations

import time

from ..ir.graph import gc_paused
from .autodiff import expand_grads
from .cse import eliminate_common_subexpressions
from .dce import eliminate_dead_code
from .fusion import fuse_elementwise
from .simplify import simplify

PIPELINE = [
    ("autodiff", expand_grads),
    ("dce", eliminate_dead_code),
    ("cse", eliminate_common_subexpressions),
    ("simplify", simplify),
    ("dce_after_simplify", eliminate_dead_code),
    ("fusion", fuse_elementwise),
]


def evaluate(graph, args) -> list:
    """The reference interpreter on ``graph`` with its gradient requests expanded."""
    from ..ir.interpreter import evaluate as run
    from .autodiff import expand_grads
    return run(expand_grads(graph), args)


def run_pipeline(graph, passes=None, verify: bool = False):
    """Run the passes in order; returns (final graph, [(stage name, graph, seconds)])."""
    with gc_paused():
        return _run_pipeline(graph, passes, verify)


def _run_pipeline(graph, passes, verify):
    from ..ir.graph import verify as verify_graph

    stages = [("traced", graph, graph.meta.get("seconds", 0.0))]
    for name, fn in (passes or PIPELINE):
        t0 = time.perf_counter()
        graph = fn(graph)
        dt = time.perf_counter() - t0
        graph = graph.replace(meta={**graph.meta, "stage": name, "seconds": dt})
        if verify:
            verify_graph(graph)
        stages.append((name, graph, dt))
    return graph, stages
