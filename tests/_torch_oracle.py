"""Run the same snippet against tracegrad and, when installed, PyTorch."""
from __future__ import annotations

import pytest

import tracegrad


def run_both(fn):
    """fn(lib) -> value; returns str(value) under tracegrad after checking it equals
    str(value) under torch (when torch is installed). Exceptions become 'Type: msg'."""
    def run(lib):
        try:
            return str(fn(lib))
        except Exception as e:  # the error itself is what is compared
            return f"{type(e).__name__}"
    ours = run(tracegrad)
    try:
        import torch
    except ImportError:
        return ours
    assert ours == run(torch)
    return ours


def torch_or_skip():
    return pytest.importorskip("torch")
