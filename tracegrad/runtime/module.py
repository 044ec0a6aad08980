"""``tracegrad.compile(module)``: a module that runs its calls compiled.

As torch's ``OptimizedModule``: the original is the submodule ``_orig_mod`` (so
``state_dict()`` keys carry that prefix, as in torch), attributes it does not have
are the original's, and ``train()``/``eval()``/``parameters()``/``to()`` act on the
original. The compiled function's own tools (``cache_info``, ``explain``,
``recompile_reasons``) are there too.
"""
from __future__ import annotations

from ..nn.module import Module


class CompiledModule(Module):
    def __init__(self, mod: Module, compiled):
        super().__init__()
        self._orig_mod = mod
        object.__setattr__(self, "_compiled", compiled)

    @property
    def training(self):  # the original's, never a stale copy
        mod = self.__dict__.get("_modules", {}).get("_orig_mod")
        return True if mod is None else mod.training

    @training.setter
    def training(self, mode):  # (train()/eval() set the original's flag too)
        mod = self.__dict__.get("_modules", {}).get("_orig_mod")
        if mod is not None:
            object.__setattr__(mod, "training", mode)

    def forward(self, *args, **kwargs):
        return self.__dict__["_compiled"](*args, **kwargs)

    def __call__(self, *args, **kwargs):
        # the original's __call__ runs inside the compiled function (its hooks too)
        return self.__dict__["_compiled"](*args, **kwargs)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            pass
        d = self.__dict__
        compiled = d.get("_compiled")
        if compiled is not None and name in ("cache_info", "explain", "recompile_reasons",
                                             "graph_breaks", "hits", "misses", "fn",
                                             "_cache", "fullgraph", "cache_limit",
                                             "reshard"):
            return getattr(compiled, name)
        mod = d.get("_modules", {}).get("_orig_mod")
        if mod is None:
            raise AttributeError(name)
        return getattr(mod, name)

    def __repr__(self):
        inner = repr(self._orig_mod).replace("\n", "\n  ")
        return f"OptimizedModule(\n  (_orig_mod): {inner}\n)"
