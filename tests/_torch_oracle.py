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


def weighted_sums(outs_t, outs_p, np_dtype, tol):
    """Compare tracegrad results ``outs_t`` with torch's ``outs_p`` (shape, dtype, values),
    then return (loss_t, loss_p): each side's results summed with the same fixed random
    weights, so one backward of each checks every result's gradient path."""
    import numpy as np
    import torch

    assert len(outs_t) == len(outs_p)
    rng = np.random.default_rng(1)
    loss_t, loss_p = 0, 0
    for o_t, o_p in zip(outs_t, outs_p, strict=True):
        assert o_t.shape == tuple(o_p.shape) and str(o_t.dtype) == str(o_p.dtype)
        np.testing.assert_allclose(o_t.detach().numpy(), o_p.detach().numpy(), rtol=tol, atol=tol)
        w = rng.standard_normal(o_p.shape).astype(np_dtype)
        loss_t = loss_t + (o_t * tracegrad.tensor(w)).sum()
        loss_p = loss_p + (o_p * torch.tensor(w)).sum()
    return loss_t, loss_p
