"""Device copies of host arrays, kept between compiled calls.

NOTE: [Device cache]. After a compiled call writes state back (parameters,
``.grad`` slots, optimizer buffers), the XLA result stays here beside the NumPy
array it was copied into, so the next call can pass the device value instead of
copying the array to the device again. Arrays in the cache are made read-only:
every in-place write tracegrad does first calls ``make_writable``, which drops
the device copy, so a stale device value can never be used; a write from
outside tracegrad (``t.numpy()[0] = 1``) fails loudly instead of being missed.
A cached value may also carry the constant every element is known to have (a
``zero_()`` left by the compiled call), which later traces can specialise on.
"""
from __future__ import annotations

import weakref

_DEVICE: dict[int, tuple] = {}   # id(array) -> (weakref to array, device value, constant)


def _forget(key):
    _DEVICE.pop(key, None)


def remember(arr, device_value, constant=None) -> None:
    key = id(arr)
    entry = _DEVICE.get(key)
    if entry is None or entry[0]() is not arr:
        weakref.finalize(arr, _forget, key)
    _DEVICE[key] = (weakref.ref(arr), device_value, constant)
    arr.flags.writeable = False


def lookup(arr):
    """(device value, constant or None) for ``arr``, or None."""
    entry = _DEVICE.get(id(arr))
    if entry is not None and entry[0]() is arr:
        return entry[1], entry[2]
    return None


def make_writable(arr) -> bool:
    """Before writing into ``arr`` in place: drop its device copy. Returns whether
    ``arr`` can be written (False for genuinely read-only arrays, e.g. expand views)."""
    if arr.flags.writeable:
        return True
    entry = _DEVICE.pop(id(arr), None)
    if entry is not None and entry[0]() is arr:
        arr.flags.writeable = True
        return True
    return False
