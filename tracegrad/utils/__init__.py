"""``torch.utils``: ``data`` (datasets and loaders) and submodules that load on first use
(``tracegrad.utils.checkpoint``)."""
from __future__ import annotations

import importlib

from . import data  # noqa: F401  (torch.utils.data, reachable as an attribute)


def __getattr__(name):
    try:
        mod = importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module 'tracegrad.utils' has no attribute {name!r}") from None
    globals()[name] = mod
    return mod
