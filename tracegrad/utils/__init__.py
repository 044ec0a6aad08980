"""``torch.utils``: submodules load on first use (``tracegrad.utils.checkpoint``)."""
from __future__ import annotations

import importlib


def __getattr__(name):
    try:
        mod = importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module 'tracegrad.utils' has no attribute {name!r}") from None
    globals()[name] = mod
    return mod
