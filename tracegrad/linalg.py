"""``torch.linalg``: linear algebra over the last two dims (batched).

>>> import tracegrad as tg
>>> tg.linalg.cross(tg.tensor([1., 0., 0.]), tg.tensor([0., 1., 0.]))
tensor([0., 0., 1.])
"""
from __future__ import annotations

from . import functions as F


def cross(input, other, *, dim: int = -1):
    """The cross product of 3-vectors along ``dim`` (inputs broadcast)."""
    return F._linalg_cross(input, other, dim)
