"""``torch.utils.checkpoint``: activation checkpointing.

``checkpoint(fn, *args, use_reentrant=False)`` returns what ``fn(*args)`` returns, with the
same values, graph and gradients; it does not free the activations inside ``fn`` (tracegrad
keeps them; PyTorch's non-reentrant version frees and recomputes them, which changes the
memory used, not the numbers). ``use_reentrant=True`` is PyTorch's reentrant version: ``fn``
runs without recording, the result's grad_fn is ``CheckpointFunctionBackward``, and the
backward pass runs ``fn`` again (with the random state of the first run, unless
``preserve_rng_state=False``) to differentiate it. Called without ``use_reentrant``, as in
PyTorch 2.13, it warns and takes the reentrant version.

>>> import tracegrad as tg
>>> x = tg.ones(2, requires_grad=True)
>>> y = checkpoint(lambda a: (a * 2).sin(), x, use_reentrant=False)
>>> type(y.grad_fn).__name__
'SinBackward0'
"""
from __future__ import annotations

import warnings

from ..autograd.function import Function

__all__ = ["checkpoint", "checkpoint_sequential"]


def _default_reentrant(use_reentrant, stacklevel: int) -> bool:
    if use_reentrant is None:
        warnings.warn("torch.utils.checkpoint: the use_reentrant parameter should be passed "
                      "explicitly. Starting in PyTorch 2.9, calling checkpoint without "
                      "use_reentrant will raise an exception. use_reentrant=False is "
                      "recommended, but if you need to preserve the current default behavior, "
                      "you can pass use_reentrant=True. Refer to docs for more details on the "
                      "differences between the two variants.", stacklevel=stacklevel)
        return True
    return bool(use_reentrant)


def checkpoint(function, *args, use_reentrant: bool | None = None, context_fn=None,
               determinism_check: str = "default", debug: bool = False,
               preserve_rng_state: bool = True, **kwargs):
    """``function(*args, **kwargs)``, checkpointed (see the module docstring)."""
    reentrant = _default_reentrant(use_reentrant, 3)
    if not reentrant:
        return function(*args, **kwargs)
    if kwargs:
        raise ValueError("Unexpected keyword arguments: " + ",".join(kwargs))
    from ..tensor import Tensor
    if not any(isinstance(a, Tensor) and a.requires_grad for a in args):
        warnings.warn("None of the inputs have requires_grad=True. Gradients will be None",
                      stacklevel=2)
    return CheckpointFunction.apply(function, preserve_rng_state, *args)


class CheckpointFunction(Function):
    """The reentrant checkpoint: forward without recording, backward by rerunning."""

    @staticmethod
    def forward(ctx, run_function, preserve_rng_state, *args):
        from .. import random
        from ..autograd.grad_mode import no_grad
        from ..tensor import Tensor
        ctx.run_function = run_function
        ctx.rng_state = random.get_rng_state() if preserve_rng_state else None
        ctx.tensor_index = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
        ctx.inputs = list(args)
        ctx.save_for_backward(*(args[i] for i in ctx.tensor_index))
        with no_grad():
            return run_function(*args)

    @staticmethod
    def backward(ctx, *grads):
        from .. import autograd, random
        from ..autograd.grad_mode import enable_grad
        from ..tensor import Tensor
        inputs = list(ctx.inputs)
        for i, t in zip(ctx.tensor_index, ctx.saved_tensors, strict=True):
            d = t.detach()
            d.requires_grad_(t.requires_grad)
            inputs[i] = d
        with random.fork_rng(enabled=ctx.rng_state is not None):
            if ctx.rng_state is not None:
                random.set_rng_state(ctx.rng_state)
            with enable_grad():
                outputs = ctx.run_function(*inputs)
        if isinstance(outputs, Tensor):
            outputs = (outputs,)
        pairs = [(o, g) for o, g in zip(outputs, grads, strict=False)
                 if isinstance(o, Tensor) and o.requires_grad and g is not None]
        if not pairs:
            raise RuntimeError("none of output has requires_grad=True, this checkpoint() is "
                               "not necessary")
        autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
        return (None, None) + tuple(inp.grad if isinstance(inp, Tensor) else None
                                    for inp in inputs)


def checkpoint_sequential(functions, segments: int, input, use_reentrant: bool | None = None,
                          **kwargs):
    """Run a Sequential (or a list of modules) in ``segments`` checkpointed pieces; the last
    piece runs as is, as in PyTorch."""
    reentrant = _default_reentrant(use_reentrant, 3)
    if hasattr(functions, "children") and not isinstance(functions, (list, tuple)):
        functions = list(functions.children())
    functions = list(functions)
    if segments < 1:
        raise ValueError(f"checkpoint_sequential: segments must be >= 1, got {segments}")
    size = len(functions) // segments

    def run(start, end):
        def forward(x):
            for j in range(start, end + 1):
                x = functions[j](x)
            return x
        return forward

    end = -1
    for start in range(0, size * (segments - 1), size):
        end = start + size - 1
        input = checkpoint(run(start, end), input, use_reentrant=reentrant, **kwargs)
    return run(end + 1, len(functions) - 1)(input)
