"""Tensor dtypes with PyTorch's names, and PyTorch's type-promotion rules.

A dtype wraps a NumPy dtype. It prints as PyTorch prints it (``torch.float32``)
so programs written for PyTorch print the same text under tracegrad.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np


class DType:
    __slots__ = ("name", "np", "is_floating_point", "is_signed", "itemsize", "_category")

    def __init__(self, name: str, np_dtype, category: int):
        self.name = name
        self.np = np.dtype(np_dtype)
        self.is_floating_point = category == 2
        self.is_signed = self.np.kind in "if" or category == 2
        self.itemsize = self.np.itemsize
        self._category = category  # 0 bool, 1 integer, 2 floating

    def __repr__(self) -> str:
        return f"torch.{self.name}"

    def __reduce__(self):
        return (from_name, (self.name,))


bool_ = DType("bool", np.bool_, 0)
uint8 = DType("uint8", np.uint8, 1)
int8 = DType("int8", np.int8, 1)
int16 = DType("int16", np.int16, 1)
int32 = DType("int32", np.int32, 1)
int64 = DType("int64", np.int64, 1)
float16 = DType("float16", np.float16, 2)
float32 = DType("float32", np.float32, 2)
float64 = DType("float64", np.float64, 2)
# bfloat16 (devices/creation helper): ml_dtypes' bfloat16 on the NumPy side (its ufuncs
# compute in float32 and round once, as PyTorch's CPU kernels do), jnp.bfloat16 in jax
bfloat16 = DType("bfloat16", ml_dtypes.bfloat16, 2)

ALL = (bool_, uint8, int8, int16, int32, int64, float16, float32, float64, bfloat16)
_BY_NP = {d.np: d for d in ALL}
_BY_NAME = {d.name: d for d in ALL}
_ALIASES = {"float": float32, "double": float64, "half": float16, "long": int64,
            "int": int32, "short": int16, "bool": bool_}

_default_float = float32


def from_name(name: str) -> DType:
    return _BY_NAME[name]


def get_default_dtype() -> DType:
    return _default_float


def set_default_dtype(d: DType) -> None:
    global _default_float
    d = as_dtype(d)
    if not d.is_floating_point:
        raise TypeError(f"only floating-point types are supported as the default type, got {d}")
    _default_float = d


def from_numpy_dtype(np_dtype) -> DType:
    try:
        return _BY_NP[np.dtype(np_dtype)]
    except KeyError:
        raise TypeError(f"tracegrad has no dtype for numpy dtype {np.dtype(np_dtype)}; "
                        "supported: " + ", ".join(str(d.np) for d in ALL)) from None


def as_dtype(d) -> DType:
    """Accept a tracegrad dtype, a NumPy dtype, a Python type or a name."""
    if isinstance(d, DType):
        return d
    if d is float:  # Python's float is a double, whatever the default dtype (as torch)
        return float64
    if d is int:
        return int64
    if d is bool:
        return bool_
    if isinstance(d, str):
        d = d.removeprefix("torch.")
        if d in _BY_NAME:
            return _BY_NAME[d]
        if d in _ALIASES:
            return _ALIASES[d]
        raise TypeError(f"unknown dtype name {d!r}")
    return from_numpy_dtype(d)


def _scalar_category(x) -> int:
    if isinstance(x, (bool, np.bool_)):
        return 0
    if isinstance(x, (int, np.integer)):
        return 1
    return 2


def result_type(*operands) -> DType:
    """PyTorch's promotion: dimensioned tensors outrank 0-d tensors, which outrank
    Python scalars; a lower-priority operand only matters when it brings a higher
    category (bool < integer < floating)."""
    tiers = [None, None, None]  # best dtype per priority: dim tensors, 0-d tensors, scalars
    for x in operands:
        d = getattr(x, "dtype", None)
        if isinstance(d, DType):
            # a traced Python float (Tensor._wrapped) promotes as the float does
            tier = 2 if x._wrapped else 0 if x.ndim else 1
        else:
            cat = _scalar_category(x)
            d = (bool_, int64, _default_float)[cat]
            tier = 2
        cur = tiers[tier]
        tiers[tier] = d if cur is None else _promote(cur, d)
    out = None
    for d in tiers:
        if d is None:
            continue
        if out is None:
            out = d
        elif d._category > out._category:
            # a lower-priority operand of a higher category: use its dtype, except that
            # a Python float brings the default float type
            out = d if d is not tiers[2] else (bool_, int64, _default_float)[d._category]
    return out


def _promote(a: DType, b: DType) -> DType:
    # across categories the higher one wins outright (int64 + float32 -> float32, where
    # NumPy would widen to float64); within one, NumPy's rule matches PyTorch's
    if a is b:
        return a
    if a._category != b._category:
        return a if a._category > b._category else b
    return from_numpy_dtype(np.promote_types(a.np, b.np))
