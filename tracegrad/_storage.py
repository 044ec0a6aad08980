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
parameters to the host. Its results and the ``.grad`` slots it creates start out
deferred too (``defer_new``): a loss nobody reads is never copied, and the call
returns as soon as XLA has the work (jax's async dispatch), so Python can trace
ahead. A deferred tensor's ``_data`` assigned since (``p.data = ...``)
wins over its device value (``lazy``). The reference count a private array has is
measured at import (``_PRIVATE_REFS``), not assumed, as it differs between Pythons.

Device values never share memory with host arrays: on CPU, jax would wrap a NumPy
array's memory in place and read it after the call returns (async dispatch), so
inputs are copied first (``compile._device_put``, ``_Entry._inputs``). Only arrays
nothing else can reach become cached inputs (a user's ``from_numpy`` buffer stays
writable), and a write through a view drops the device copies of its bases.
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
    if arr.base is not None and not _sole_view(arr):
        # a view whose memory is reachable some other way (a NumPy base the user
        # holds): a raw write there would go around the read-only flag. Not cached
        return
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
    """Before writing into ``arr`` in place: drop its device copy, and those of the
    arrays it is a view of (a write through a view changes them too). Returns whether
    ``arr`` can be written (False for genuinely read-only arrays, e.g. expand views)."""
    base = arr.base
    if base is not None:
        return _make_view_writable(arr, base)
    return arr.flags.writeable or _uncache(arr)


def _uncache(arr) -> bool:
    """Drop ``arr``'s device copy and make it writable again; False if it had none."""
    entry = _DEVICE.pop(id(arr), None)
    if entry is not None and entry[0]() is arr:
        arr.flags.writeable = True
        return True
    return False


def _make_view_writable(view, base) -> bool:
    if view.ndim > 1 and overlaps_itself(view):  # unfold windows sharing elements
        return False
    ours = False  # is some base one the cache made read-only (now or before)?
    while isinstance(base, np.ndarray):
        if not base.flags.writeable:
            _uncache(base)
        ref = _WATCHED.get(id(base))
        ours = ours or (ref is not None and ref() is base)
        base = base.base
    if view.flags.writeable or _uncache(view):
        return True
    # a view made while its base was in the cache is read-only as the base was then;
    # unlock it, unless it is read-only for its own reasons (an expand view repeats
    # elements; a view of an array the user made read-only stays so)
    repeats = any(s == 0 and n > 1 for s, n in zip(view.strides, view.shape, strict=True))
    if not ours or repeats:
        return False
    try:
        view.flags.writeable = True
    except ValueError:  # a base is still read-only
        return False
    return True


def overlaps_itself(arr) -> bool:
    """Whether two elements of ``arr`` share memory (overlapping ``unfold`` windows, an
    ``expand``): PyTorch refuses in-place writes into such a tensor. Strides that nest
    (each at least the span of the smaller ones) cannot overlap; others are checked
    element by element."""
    span = arr.itemsize
    for stride, n in sorted((abs(s), n) for s, n in zip(arr.strides, arr.shape, strict=True)
                            if n > 1):
        if stride < span:
            break
        span += stride * (n - 1)
    else:
        return False
    offsets = np.zeros(1, np.int64)
    for stride, n in zip(arr.strides, arr.shape, strict=True):
        offsets = (offsets[:, None] + np.arange(n, dtype=np.int64) * stride).reshape(-1)
    return len(np.unique(offsets)) != offsets.size


# ---- deferred write-back (NOTE: [Deferred write-back]) ------------------------------

def _refs(d) -> int:
    arr = d["_data"]
    return sys.getrefcount(arr)


# the count ``_refs`` gives for an array only the dict ``d`` holds: measured, not
# assumed, as what a frame's locals and getrefcount's argument add differs between
# Python versions (3.14 borrows references to locals)
_PRIVATE_REFS = _refs({"_data": np.empty(0)})


def _base_refs(arr) -> int:
    base = arr.base
    return sys.getrefcount(base)


# the count ``_base_refs`` gives for a view's base that only the view holds (the flat
# buffer ``randn`` reshapes), measured alike
_SOLE_VIEW_REFS = _base_refs(np.empty(4).reshape(2, 2))


def _sole_view(arr) -> bool:
    """Whether ``arr`` is a view of a NumPy array nothing else holds: no raw NumPy handle
    can write around it (``arr``'s read-only flag guards all of that memory)."""
    base = arr.base
    return (base.__class__ is np.ndarray and base.base is None
            and _base_refs(arr) == _SOLE_VIEW_REFS + 1)  # (+ the local ``base`` here)


def is_private(t, held: int = 0) -> bool:
    """Whether nothing but tensor ``t`` (and the caller's ``held`` references) can reach
    its array: no alias, saved reference or other view of its memory. The array may be
    a view of a NumPy array that nothing else holds (``randn`` reshapes a flat buffer)."""
    d = t.__dict__
    if _refs(d) != _PRIVATE_REFS + held:
        return False
    return d["_data"].base is None or _sole_view(d["_data"])


def lazy(t):
    """``(array, device value)`` of a deferred tensor, else None."""
    d = t.__dict__
    pair = d.get("_lazy")
    if pair is not None and "_data" in d:  # ``_data`` was assigned since: it wins
        del d["_lazy"]
        return None
    return pair


def defer(t, device_value) -> bool:
    """Make ``device_value`` the value of tensor ``t`` without copying it to the host,
    if no one else can see ``t``'s array. Returns whether it did."""
    pair = lazy(t)
    d = t.__dict__
    if pair is not None:
        d["_lazy"] = (array(t), device_value)
        return True
    if not is_private(t):
        return False
    arr = d.pop("_data")
    _DEVICE.pop(id(arr), None)  # its device copy (if any) is older than device_value
    d["_lazy"] = (arr, device_value)
    return True


def device_value(t):
    """The device value of a deferred tensor, else None."""
    pair = lazy(t)
    return None if pair is None else pair[1]


def array(t):
    """``t``'s host array, without materialising a deferred value into it."""
    pair = lazy(t)
    if pair is None:
        return t._data
    if pair[0] is None:  # a result's array, made now: its identity keys aliasing
        pair = t.__dict__["_lazy"] = (np.empty(pair[1].shape, pair[1].dtype),) + pair[1:]
    return pair[0]


def meta(t):
    """(shape, NumPy dtype) of ``t`` without materialising a deferred value."""
    pair = lazy(t)
    v = t._data if pair is None else pair[1]
    return v.shape, v.dtype


_RESULT = "result"  # marks the pair of a compiled call's result


def defer_new(t, device_value, result: bool = False) -> None:
    """Give new tensor ``t`` (no ``_data`` yet) the value ``device_value``, copied to the
    host on first read. A compiled call's results (``result``) and the ``.grad`` slots it
    creates are made so: a loss never read is never copied, and the call returns without
    waiting for XLA. A result's array stays the user's to write: it is not kept beside
    its device value when read, as state's is."""
    # a result's array is made when first needed (``array``): most are read once or never
    t.__dict__["_lazy"] = ((None, device_value, _RESULT) if result else
                           (np.empty(device_value.shape, device_value.dtype), device_value))


def host_value(value):
    """The host copy of a device value. A value sharded over devices other processes own
    cannot be read by this process alone (NOTE: [Reading sharded state] in
    distributed/spmd.py)."""
    if not getattr(value, "is_fully_addressable", True) \
            and not getattr(value, "is_fully_replicated", False):
        raise RuntimeError(
            f"this tensor (shape {tuple(value.shape)}) is sharded over devices of several "
            f"processes ({value.sharding}), so one process cannot read it alone; call "
            "tracegrad.distributed.gather(tensor_or_module_or_optimizer) in every process "
            "at the same point, then read it")
    return np.asarray(value)


def materialise(t, full=None):
    """Copy a deferred tensor's device value (or ``full``, its gathered host value) into
    its array and give it back."""
    d = t.__dict__
    pair = d.pop("_lazy")
    arr, value = pair[0], pair[1]
    if arr is None:  # a result never passed anywhere: a new array, the user's
        try:
            d["_data"] = arr = np.array(host_value(value) if full is None else full)
        except BaseException:
            d["_lazy"] = pair
            raise
        return arr
    try:
        arr.flags.writeable = True
        arr[...] = host_value(value) if full is None else full
    except BaseException:
        d["_lazy"] = pair
        raise
    d["_data"] = arr
    if len(pair) == 2:  # state: the device value stays valid for the next compiled call
        remember(arr, value)
    return arr
