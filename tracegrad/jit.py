"""``torch.jit``: TorchScript is not needed to run a model, so ``script`` and ``trace``
return what they are given (a function or module that runs as plain Python, with the same
results); ``ignore``, ``unused``, ``export`` are identity decorators, as PyTorch's are
outside scripting. Saving or loading TorchScript archives is not supported (use
``tracegrad.save`` of a state_dict); for a compiled program use ``tracegrad.compile``.
"""
from __future__ import annotations

__all__ = ["script", "trace", "trace_module", "ignore", "unused", "export", "is_scripting",
           "is_tracing", "save", "load", "freeze", "optimize_for_inference", "Final",
           "annotate", "ScriptModule", "ScriptFunction", "fork", "wait", "interface"]


def script(obj, optimize=None, _frames_up: int = 0, _rcb=None, example_inputs=None):
    """Return ``obj`` unchanged: it runs as Python (NOTE in the module docstring)."""
    return obj


def trace(func, example_inputs=None, optimize=None, check_trace: bool = True,
          check_inputs=None, check_tolerance: float = 1e-5, strict: bool = True, **kwargs):
    """Return ``func`` unchanged (calling it runs it, as a traced function would)."""
    if not callable(func):
        raise TypeError(f"trace expects a function or a module, got {type(func).__name__}")
    return func


def trace_module(mod, inputs, **kwargs):
    return mod


def ignore(drop=False, **kwargs):
    """``@torch.jit.ignore`` or ``@torch.jit.ignore(drop=True)``: identity."""
    if callable(drop):
        return drop
    return lambda fn: fn


def unused(fn):
    return fn


def export(fn):
    return fn


def interface(obj):
    return obj


def is_scripting() -> bool:
    return False


def is_tracing() -> bool:
    return False


def annotate(the_type, the_value):
    return the_value


class _FinalMeta(type):
    def __getitem__(cls, item):
        return item


class Final(metaclass=_FinalMeta):
    """``torch.jit.Final[int]``: the annotated type."""


def fork(fn, *args, **kwargs):
    return _Future(fn(*args, **kwargs))


def wait(future):
    return future.value()


class _Future:
    def __init__(self, value):
        self._value = value

    def value(self):
        return self._value

    def wait(self):
        return self._value


def _no_torchscript(*args, **kwargs):
    raise NotImplementedError("tracegrad has no TorchScript: save a model's weights with "
                              "tracegrad.save(model.state_dict(), path) and load them into the "
                              "model built in code; for a compiled program use "
                              "tracegrad.compile")


save = load = freeze = optimize_for_inference = _no_torchscript


class ScriptModule:
    def __init__(self, *args, **kwargs):
        _no_torchscript()


ScriptFunction = ScriptModule
