"""tracegrad.autograd: backward, grad, custom Functions, gradcheck, grad mode."""
from __future__ import annotations

from .anomaly_mode import detect_anomaly, is_anomaly_enabled, set_detect_anomaly
from .engine import run_backward
from .function import Function, FunctionCtx, once_differentiable
from .grad_mode import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from .gradcheck import GradcheckError, gradcheck, gradgradcheck

__all__ = ["backward", "grad", "Function", "FunctionCtx", "no_grad", "enable_grad",
           "set_grad_enabled", "is_grad_enabled", "inference_mode", "gradcheck",
           "gradgradcheck", "GradcheckError", "once_differentiable", "detect_anomaly",
           "set_detect_anomaly", "is_anomaly_enabled", "functional", "forward_ad", "profiler"]


def _as_tuple(x):
    if x is None:
        return None
    from ..tensor import Tensor
    if isinstance(x, Tensor):
        return (x,)
    return tuple(x)


def _seed_grads(outputs, grad_outputs, create_graph):
    """The starting gradients, validated the way PyTorch validates them."""
    from .. import functions as F
    from ..tensor import Tensor

    if grad_outputs is None:
        grad_outputs = (None,) * len(outputs)
    if len(grad_outputs) != len(outputs):
        raise RuntimeError(f"got {len(grad_outputs)} tensors in grad_outputs but "
                           f"{len(outputs)} outputs; pass one gradient per output")
    seeds = []
    for i, (out, g) in enumerate(zip(outputs, grad_outputs, strict=True)):
        if g is None:
            if out.numel() != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            if not out.dtype.is_floating_point:
                raise RuntimeError(f"grad can be implicitly created only for real scalar "
                                   f"outputs but got {out.dtype}")
            g = F.ones_like(out)
        else:
            if not isinstance(g, Tensor):
                g = F.tensor(g, dtype=out.dtype)
            if g.shape != out.shape:
                raise RuntimeError(f"Mismatch in shape: grad_output[{i}] has a shape of "
                                   f"{g.shape} and output[{i}] has a shape of {out.shape}.")
            if g.dtype is not out.dtype:
                g = g.detach().to(out.dtype)
            if not create_graph:
                g = g.detach()
        seeds.append(g)
    return seeds


def _roots(outputs):
    from ..tensor import trace_state
    if trace_state.current is not None:
        # a compiled function that runs backward inside returns plain tensors
        trace_state.current.ran_backward = True
    roots = []
    for i, t in enumerate(outputs):
        if not t.requires_grad:
            raise RuntimeError(f"element {i} of tensors does not require grad and does not have "
                               "a grad_fn")
        roots.append((t.grad_fn, t._out_nr) if t.grad_fn is not None else (t._accumulator(), 0))
    return roots


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False,
             grad_variables=None, inputs=None):
    """Accumulate into ``.grad`` of graph leaves the gradient of ``tensors``.

    >>> import tracegrad as tg
    >>> a = tg.tensor([1., 2.], requires_grad=True)
    >>> tg.autograd.backward(2 * a, grad_tensors=tg.tensor([1., 1.]))
    >>> a.grad
    tensor([2., 2.])
    """
    outputs = _as_tuple(tensors)
    if grad_tensors is None:
        grad_tensors = grad_variables
    grads = _as_tuple(grad_tensors)
    if retain_graph is None:
        retain_graph = create_graph
    roots = _roots(outputs)
    seeds = _seed_grads(outputs, grads, create_graph)
    only = None
    if inputs is not None:
        inputs = _as_tuple(inputs)
        if not inputs:
            raise RuntimeError("'inputs' argument to backward() cannot be empty.")
        only = set()
        for t in inputs:
            if not t.requires_grad:
                raise RuntimeError("One of the differentiated Tensors does not require grad")
            if t.grad_fn is None:
                only.add(t._accumulator())
            else:
                t.retain_grad()
                only.add(t.grad_fn)
    traced = _traced_grads(outputs, roots, seeds, inputs, retain_graph, create_graph)
    if traced is not None:
        from ..tensor import trace_state
        from .graph import accumulate_into
        tracer = trace_state.current
        prev, tracer.phase = tracer.phase, "backward"  # (the .grad writes are backward's)
        try:
            with no_grad():  # as inside the engine without create_graph: accumulate in place
                for t, g in zip(*traced, strict=False):
                    if g is not None:
                        accumulate_into(t, g)
        finally:
            tracer.phase = "other" if prev == "forward" else prev
        return
    run_backward(roots, seeds, retain_graph=retain_graph, create_graph=create_graph,
                 accumulate_only=only)


def _traced_grads(outputs, roots, seeds, inputs, retain_graph, create_graph):
    """Inside a traced function: record grad requests for the autodiff pass.

    Returns (tensors, gradients) or None where the tape must run as recorded
    (create_graph, hooks, custom Functions, graphs from outside the trace)."""
    from ..tensor import trace_state
    tracer = trace_state.current
    if tracer is None or create_graph:
        return None
    if inputs is not None and any(t.grad_fn is not None for t in inputs):
        return None
    return tracer.symbolic_grads(outputs, roots, seeds, inputs, retain_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         only_inputs=True, allow_unused=None, is_grads_batched=False, materialize_grads=False):
    """Return the gradients of ``outputs`` w.r.t. ``inputs`` (no ``.grad`` is touched).

    >>> import tracegrad as tg
    >>> x = tg.tensor([3.], requires_grad=True)
    >>> (g,) = tg.autograd.grad(x ** 2, x, create_graph=True)
    >>> g
    tensor([6.], grad_fn=<MulBackward0>)
    """
    from .. import functions as F

    outputs = _as_tuple(outputs)
    inputs = _as_tuple(inputs)
    if allow_unused is None:
        allow_unused = materialize_grads
    if retain_graph is None:
        retain_graph = create_graph
    for t in inputs:
        if not t.requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    roots = _roots(outputs)
    seeds = _seed_grads(outputs, _as_tuple(grad_outputs), create_graph)
    traced = _traced_grads(outputs, roots, seeds, inputs, retain_graph, create_graph)
    if traced is not None:
        result = list(traced[1])
    else:
        where = [(t.grad_fn, t._out_nr) if t.grad_fn is not None else (t._accumulator(), 0)
                 for t in inputs]
        got = run_backward(roots, seeds, retain_graph=retain_graph, create_graph=create_graph,
                           capture={node for node, _ in where}, accumulate=False)
        result = []
        for node, nr in where:
            g = got.get(node)
            result.append(g[nr] if isinstance(g, list) else g)
    for i, g in enumerate(result):
        if g is None:
            if materialize_grads:
                result[i] = F.zeros_like(inputs[i])
            elif not allow_unused:
                raise RuntimeError(f"The differentiated Tensor at index {i} appears to not have "
                                   "been used in the graph. Set allow_unused=True if this is "
                                   "the desired behavior.")
    return tuple(result)


from . import forward_ad, functional, profiler  # noqa: E402  (they use grad above)
