"""Device placement and write-back: what a compiled call hands XLA, and what it keeps.

See NOTE: [Device cache] and NOTE: [Deferred write-back] in ``_storage.py``.
"""
from __future__ import annotations

import numpy as np

from .._storage import defer_new, lazy, lookup, make_writable, remember
from ..codegen.jax_lower import x64
from ..tensor import Tensor

KEEP_ON_DEVICE = 4096  # elements: inputs this large keep a device copy between calls


def new_tensor(value, result=False):
    """A new tensor holding a compiled call's device value until it is read (NOTE:
    [Deferred write-back])."""
    t = object.__new__(Tensor)
    t._vc = [0]
    defer_new(t, value, result)
    return t


def result_tensor(value):
    return new_tensor(value, True)


def dead():
    return None


def device_put(arr):
    # a copy: on CPU, jax wraps a NumPy array's memory without copying it, and the
    # cached value must not change when the array is written after make_writable
    import jax

    with x64():
        return jax.device_put(arr.copy())


_DEVICE_CONSTANTS: dict = {}


def device_constant(value, shape, dtype, sharding=None, put=None):
    """A shared device array filled with ``value`` (placed ``put(array, sharding)`` on a
    mesh)."""
    key = (repr(value), tuple(shape), np.dtype(dtype).str, sharding)
    c = _DEVICE_CONSTANTS.get(key)
    if c is None:
        import jax

        # device_put of a host array: no XLA program to compile (jnp.full would be one)
        with x64():
            host = np.full(shape, value, dtype)
            c = jax.device_put(host) if put is None else put(host, sharding)
            _DEVICE_CONSTANTS[key] = c
    return c


def write_back(arr, value, const, copy=True):
    """Store a compiled call's result into the host array ``arr``; keep the device value."""
    if const is not None:
        cached = lookup(arr)
        if cached is not None and repr(cached[1]) == repr(const[0]):  # -0.0, nan exact
            return  # already filled with that value (a grad zeroed every step)
        make_writable(arr)
        if copy:
            arr[...] = const[0]
        remember(arr, None, constant=const[0])  # a device copy is made only if needed
    else:
        make_writable(arr)
        if copy:
            arr[...] = np.asarray(value)
        remember(arr, value)


def forget(t):
    """After a failed call: ``t``'s device value may be gone (donated); use the host copy."""
    if t is not None and lazy(t) is None:  # a deferred tensor has no host copy to fall back to
        make_writable(t._data)
