"""Shared fixtures for the op tests."""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # op_table is importable as a module

# Compiled programs persist in a cache folder (tracegrad.config.cache_dir): the suite's go to
# a folder of its own, removed at exit, never to the user's ~/.cache. Set before tracegrad is
# imported, and inherited by the subprocesses tests start.
_CACHE = tempfile.mkdtemp(prefix="tracegrad-test-cache-")
os.environ["TRACEGRAD_CACHE_DIR"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, True)


class PrimCalls(list):
    """Every primitive call made while the ``prim_calls`` fixture is active:
    (prim, input avals, params, output aval) tuples."""


class _Aval:
    """Shape and dtype of a tensor at the time of a call; bool masks keep their value
    (the shape of x[mask] depends on it)."""

    __slots__ = ("shape", "dtype", "ndim", "value")

    def __init__(self, t):
        self.shape, self.dtype, self.ndim = tuple(t.shape), t.dtype, len(t.shape)
        self.value = t._data.copy() if t.dtype.name == "bool" else None


@pytest.fixture
def prim_calls(monkeypatch):
    """Record primitive calls by wrapping ``tracegrad.tensor.apply`` wherever a module
    imported it (forward ops and the VJP rules run during backward alike)."""
    import tracegrad  # noqa: F401  (loads tracegrad.tensor)

    tensor_mod = sys.modules["tracegrad.tensor"]  # the attribute is tracegrad.tensor()
    original = tensor_mod.apply
    calls = PrimCalls()

    def recording_apply(prim, args, params=tensor_mod._EMPTY, name=None):
        out = original(prim, args, params, name)
        calls.append((prim, [_Aval(a) for a in args], dict(params), _Aval(out)))
        return out

    for mod in list(sys.modules.values()):
        if getattr(mod, "__name__", "").startswith("tracegrad") and \
                getattr(mod, "apply", None) is original:
            monkeypatch.setattr(mod, "apply", recording_apply)
    return calls
