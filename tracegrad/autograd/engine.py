"""The backward engine: runs the recorded graph in reverse.

Iterative (no recursion, so a 100,000-node chain is fine). A node runs once all
the gradients flowing into it have arrived (dependency counting over the part of
the graph reachable from the roots); among ready nodes the most recently created
runs first, as in PyTorch, so hooks fire in the same order.
"""
from __future__ import annotations

import heapq

from . import grad_mode
from ._op_hooks import run_node_hooked, state as _hooks
from .graph import AccumulateGrad


def _discover(roots):
    """Dependency counts for every node reachable from ``roots`` (a list of nodes)."""
    deps: dict = {}
    seen = set()
    stack = []
    for r in roots:
        if r not in seen:
            seen.add(r)
            stack.append(r)
    while stack:
        node = stack.pop()
        for nxt, _ in node.next_functions:
            if nxt is None:
                continue
            deps[nxt] = deps.get(nxt, 0) + 1
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return deps, seen


def _needed(roots, nodes, targets):
    """Nodes from which some target is reachable (everything else can be skipped)."""
    needed = set(targets)
    # iterative post-order DFS
    state: dict = {}
    for r in roots:
        if r in state:
            continue
        stack = [(r, iter(r.next_functions))]
        state[r] = 0
        while stack:
            node, it = stack[-1]
            advanced = False
            for nxt, _ in it:
                if nxt is None:
                    continue
                if nxt not in state:
                    state[nxt] = 0
                    stack.append((nxt, iter(nxt.next_functions)))
                    advanced = True
                    break
            if not advanced:
                stack.pop()
                if node not in needed and any(n in needed for n, _ in node.next_functions
                                              if n is not None):
                    needed.add(node)
    return needed


def _tracer():
    from ..tensor import trace_state
    return trace_state.current


def run_backward(roots, seeds, *, retain_graph: bool, create_graph: bool,
                 capture=None, accumulate: bool = True, accumulate_only=None):
    """Propagate ``seeds`` (gradients of the roots, (node, output_nr) pairs) through
    the graph.

    capture: a set of nodes whose incoming gradient to record (for autograd.grad);
             returns {node: grad} (a list of grads for multi-output nodes).
    accumulate: whether AccumulateGrad nodes add into ``.grad``.
    accumulate_only: if given, only these AccumulateGrad nodes accumulate.
    """
    root_nodes = [n for n, _ in roots]
    deps, nodes = _discover(root_nodes)
    tracer = _tracer()
    if tracer is not None:
        tracer.check_backward_nodes(nodes)
    targets = None
    if capture is not None or accumulate_only is not None:
        targets = set(capture or ()) | set(accumulate_only or ())
        needed = _needed(root_nodes, nodes, targets)
    buffers: dict = {}
    for (node, nr), g in zip(roots, seeds, strict=False):
        _add_to_buffer(buffers, node, nr, g)
    ready = []
    for node in buffers:
        if deps.get(node, 0) == 0:
            heapq.heappush(ready, (-node._seq, id(node), node))
    captured: dict = {}
    prev = grad_mode._state.enabled
    grad_mode._state.enabled = create_graph
    # a tracer tags what it records from here on as backward (inspection only)
    tracer = _tracer()
    prev_phase = tracer.phase if tracer is not None else None
    if prev_phase is not None:
        tracer.phase = "backward"
    try:
        while ready:
            _, _, node = heapq.heappop(ready)
            g = buffers.pop(node, None)
            if g is not None:
                if node._pre_hooks:
                    for fn in list(node._pre_hooks.values()):
                        r = fn(g)
                        if r is not None:
                            g = _check_hook_result(r, g)
                if node._retain_grad is not None:
                    t = node._retain_grad()
                    if t is not None and t.grad_fn is node:
                        _retain(t, g)
                if capture is not None and node in capture:
                    captured[node] = g
            is_leaf = node.__class__ is AccumulateGrad
            if is_leaf:
                if g is not None and accumulate and (accumulate_only is None
                                                     or node in accumulate_only):
                    node.apply(g)
                continue
            if targets is not None and node not in needed:
                grads = None
            elif g is None:
                grads = None
            else:
                if _hooks.active:  # profiler, anomaly mode (_op_hooks)
                    grads = run_node_hooked(node, g)
                else:
                    grads = node.apply(g) if node._n_out == 1 else node.apply(*g)
                if node._post_hooks:
                    for fn in list(node._post_hooks.values()):
                        fn(grads, (g,))
                if not retain_graph:
                    node._release()
            for i, (nxt, nr) in enumerate(node.next_functions):
                if nxt is None:
                    continue
                if grads is not None:
                    gi = grads[i]
                    if gi is not None:
                        if nxt._n_out == 1:
                            old = buffers.get(nxt)
                            buffers[nxt] = gi if old is None else old + gi
                        else:
                            _add_to_buffer(buffers, nxt, nr, gi)
                d = deps[nxt] - 1
                deps[nxt] = d
                if d == 0:
                    heapq.heappush(ready, (-nxt._seq, id(nxt), nxt))
    finally:
        grad_mode._state.enabled = prev
        if prev_phase is not None:
            tracer.phase = "other" if prev_phase == "forward" else prev_phase
    return captured


def _add_to_buffer(buffers, node, nr, g):
    if node._n_out == 1:
        old = buffers.get(node)
        buffers[node] = g if old is None else old + g
        return
    buf = buffers.get(node)
    if buf is None:
        buf = buffers[node] = [None] * node._n_out
    buf[nr] = g if buf[nr] is None else buf[nr] + g


def _check_hook_result(r, g):
    if isinstance(g, list):
        return g
    if r.shape != g.shape:
        raise RuntimeError(f"hook returned a gradient of shape {list(r.shape)}, expected "
                           f"{list(g.shape)}")
    return r


def _retain(t, g):
    from ..primitives import copy_p
    from ..tensor import apply

    if t._grad is None:
        t._grad = apply(copy_p, (g,))  # recorded as CloneBackward0 under create_graph
    else:
        t._grad = t._grad + g
