"""``torch.onnx``: exporting is not supported.

tracegrad's compiled functions lower to jax (``train_step.explain(...).source`` shows the
program), not to ONNX. To get an ONNX file, load the model's ``state_dict`` into the same
model written for PyTorch and call ``torch.onnx.export`` there.
"""
from __future__ import annotations

__all__ = ["export", "is_in_onnx_export", "dynamo_export"]

_HOW = ("tracegrad cannot export to ONNX: its compiled functions lower to jax/XLA, not ONNX. "
        "Load the model's state_dict into the same model written for PyTorch and call "
        "torch.onnx.export there, or use the jax program tracegrad.compile builds "
        "(compiled_fn.explain(*args).source)")


def export(model, args=(), f=None, *a, **kw):
    raise NotImplementedError(_HOW)


dynamo_export = export


def is_in_onnx_export() -> bool:
    return False
