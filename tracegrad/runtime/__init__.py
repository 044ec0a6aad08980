"""The compiled function at call time: after codegen in pipeline order.

    api.py        compile(): torch.compile's arguments, checked at once
    function.py   CompiledFunction: the cache, the tracing call
    module.py     compile(module): a module whose calls run compiled
    entry.py      one specialisation: its guards, build, run and write-back
    guards.py     the guard kinds (tensor, .grad, constant, Python places, modules, optimizers)
    pystate.py    the Python state a trace can reach (side effects and guards)
    outputs.py    the cache key; results returned as eager returns them
    device.py     device placement, write-back, deferred results
    faults.py     all-or-nothing calls under Ctrl-C
    backward.py   a compiled backward behind the outputs' grad_fn
    explain.py    compiled.explain()
"""
from __future__ import annotations

from . import function
from .api import compile
from .function import CompiledFunction

__all__ = ["CompiledFunction", "compile", "function"]
