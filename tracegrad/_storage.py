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

NOTE: [Deferred write-back]. Copying every updated parameter back to its NumPy
array after each compiled step costs as much as a small step. When nothing but
the tensor itself can reach its array (no view, alias or saved reference: the
array's reference count says so), ``defer`` takes the array out of the tensor and
keeps the device value instead; the first read of ``tensor._data`` (any eager use,
printing, numpy()) lands in ``Tensor.__getattr__``, which copies the device value
into the same array and puts it back. A compiled call reads a deferred tensor's
device value directly, so a training loop of compiled steps never copies its
parameters to the host.
"""
from __future__ import annotations

import sys
import weakref

import numpy as np

_DEVICE: dict[int, tuple] = {}   # id(array) -> (weakref to array, device value, constant)
_WATCHED: dict[int, weakref.ref] = {}  # id(array) -> weakref, for arrays with a finalizer


def _forget(key):
    _DEVICE.pop(key, None)
    _WATCHED.pop(key, None)


def remember(arr, device_value, constant=None) -> None:
    key = id(arr)
    ref = _WATCHED.get(key)
    if ref is None or ref() is not arr:
        weakref.finalize(arr, _forget, key)
        ref = _WATCHED[key] = weakref.ref(arr)
    _DEVICE[key] = (ref, device_value, constant)
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


# ---- deferred write-back (NOTE: [Deferred write-back]) ------------------------------

# references to an array nobody else holds, as counted inside ``defer``: the tensor's
# __dict__, defer's local name and getrefcount's argument
_PRIVATE_REFS = 3


def defer(t, device_value) -> bool:
    """Make ``device_value`` the value of tensor ``t`` without copying it to the host,
    if no one else can see ``t``'s array. Returns whether it did."""
    d = t.__dict__
    lazy = d.get("_lazy")
    if lazy is not None:
        d["_lazy"] = (lazy[0], device_value)
        return True
    arr = d["_data"]
    if arr.base is not None or sys.getrefcount(arr) != _PRIVATE_REFS:
        return False
    _DEVICE.pop(id(arr), None)  # its device copy (if any) is older than device_value
    del d["_data"]
    d["_lazy"] = (arr, device_value)
    return True


def device_value(t):
    """The device value of a deferred tensor, else None."""
    lazy = t.__dict__.get("_lazy")
    return None if lazy is None else lazy[1]


def meta(t):
    """(shape, NumPy dtype) of ``t`` without materialising a deferred value."""
    lazy = t.__dict__.get("_lazy")
    v = t._data if lazy is None else lazy[1]
    return v.shape, v.dtype


def materialise(t):
    """Copy a deferred tensor's device value into its array and give it back."""
    d = t.__dict__
    arr, value = d.pop("_lazy")
    try:
        arr.flags.writeable = True
        arr[...] = np.asarray(value)
    except BaseException:
        d["_lazy"] = (arr, value)
        raise
    d["_data"] = arr
    remember(arr, value)  # the device value stays valid for the next compiled call
    return arr
