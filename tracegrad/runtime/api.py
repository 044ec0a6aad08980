"""``tracegrad.compile(...)``: its arguments (torch.compile's), checked before anything runs."""
from __future__ import annotations

import inspect

from .function import CompiledFunction
from .pystate import module_types

_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_BACKENDS = (None, "inductor", "jax", "xla", "eager", "aot_eager")


def compile(model=None, *, fullgraph: bool = False, dynamic=None, backend=None, mode=None,
            options=None, disable: bool = False, cache_limit: int = 8, random: str = "device",
            mesh=None, axis=None, shard_state=False):
    """Compile ``model`` (a training step, a module, any tensor function) to XLA.

    ``random="device"`` (the default) draws a compiled call's random tensors (dropout
    masks, ``randn``, in-place fills) on the device from a per-call key: fresh and
    reproducible from the seed, but not torch's stream. ``random="eager"`` draws them
    with the eager generator and passes them in, so compiled calls give eager's (and
    torch's) numbers bit for bit, at the cost of drawing on the host.

    ``mesh`` (a ``jax.sharding.Mesh``, e.g. ``tracegrad.distributed.mesh()``) runs each
    call data parallel over its devices: tensor arguments split along dim 0 over the
    mesh axis ``axis`` (default: its first; a tuple of names splits over several),
    state replicated, or with ``shard_state=True`` split along dim 0 where it divides
    (``shard_state=[p, ...]``: only those parameters, with their grads and optimizer state;
    one whose dim 0 does not divide is an error).
    Results and the state left behind are the one-device call's (docs/distributed.md).

    ``mode``, ``backend``, ``dynamic`` and ``options`` take torch.compile's values:
    every mode compiles the same way here (XLA picks its own kernels), ``backend``
    "eager"/"aot_eager" run the function eagerly, ``dynamic=True`` is accepted but
    each new shape still compiles its own program. Anything else is refused.

    >>> import tracegrad as tg
    >>> @tg.compile
    ... def f(x):
    ...     return (x * 2).sin().sum()
    >>> float(f(tg.ones(3))) == float((tg.ones(3) * 2).sin().sum())
    True
    """
    if mode not in _MODES:
        raise ValueError(f"tracegrad.compile: unknown mode {mode!r}; expected one of "
                         f"{', '.join(repr(m) for m in _MODES)}")
    if callable(backend) or backend not in _BACKENDS:
        raise ValueError(f"tracegrad.compile: backend {backend!r} is not available; "
                         "tracegrad compiles with jax/XLA (backend=None, 'inductor', 'jax' "
                         "or 'xla'), or runs eagerly with 'eager'/'aot_eager'")
    if dynamic not in (None, True, False):
        raise ValueError(f"tracegrad.compile: dynamic must be None, True or False, got "
                         f"{dynamic!r}")
    if options:
        raise ValueError(f"tracegrad.compile: options {sorted(options)} are inductor "
                         "settings, which tracegrad does not have (it compiles with XLA); "
                         "pass options=None")
    if random not in ("device", "eager"):
        raise ValueError(f"tracegrad.compile: random must be 'device' or 'eager', got "
                         f"{random!r}")
    placement = None
    if mesh is not None:
        from .sharding import Placement
        placement = Placement(mesh, axis, shard_state)
    elif shard_state or axis is not None:
        raise ValueError(f"tracegrad.compile: {'shard_state' if shard_state else 'axis'}= "
                         "needs a mesh= to shard over (e.g. mesh=tracegrad.distributed.mesh())")
    if model is None:
        return lambda f: compile(f, fullgraph=fullgraph, dynamic=dynamic, backend=backend,
                                 mode=mode, options=options, disable=disable,
                                 cache_limit=cache_limit, random=random, mesh=mesh, axis=axis,
                                 shard_state=shard_state)
    if inspect.isclass(model):
        raise TypeError(f"tracegrad.compile takes a function or a module instance, not the "
                        f"class {model.__name__}; compile an instance "
                        f"(tracegrad.compile({model.__name__}(...))) or a function")
    if not callable(model):
        raise TypeError(f"tracegrad.compile expects a callable (a function or a module), "
                        f"got {type(model).__name__}")
    fn = getattr(model, "__func__", model)
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn) \
            or inspect.iscoroutinefunction(fn):
        raise TypeError(f"tracegrad.compile cannot compile {getattr(fn, '__name__', fn)!r}: "
                        "it is a generator or async function, whose body runs lazily; "
                        "compile the function that computes each item instead")
    if disable or backend in ("eager", "aot_eager"):
        return model
    Module, _ = module_types()
    if isinstance(model, Module):
        from .module import CompiledModule
        return CompiledModule(model, CompiledFunction(model, fullgraph=fullgraph,
                                                      cache_limit=cache_limit, random=random,
                                                      placement=placement))
    return CompiledFunction(model, fullgraph=fullgraph, cache_limit=cache_limit, random=random,
                            placement=placement)
