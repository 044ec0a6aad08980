"""Turning a list of samples into a batch (``torch.utils.data._utils.collate``).

``default_collate`` stacks tensors and NumPy arrays along a new first dimension, makes
Python ints int64 tensors and floats float64 tensors (bools bool ones), keeps strings as a
list, and recurses into dicts, namedtuples, tuples and lists (a batch of pairs is a pair of
batches), with PyTorch's types and dtypes. ``collate(batch, collate_fn_map=...)`` lets a
custom map of ``type -> function`` extend it, as in PyTorch.

>>> import tracegrad as tg
>>> default_collate([(0, 1.5), (1, 2.5)])
[tensor([0, 1]), tensor([1.5000, 2.5000], dtype=torch.float64)]
"""
from __future__ import annotations

import collections
import copy
import re
from collections.abc import Callable

import numpy as np

__all__ = ["default_collate", "default_convert", "collate", "default_collate_fn_map"]

_NP_STR_OBJ = re.compile(r"[SaUO]")  # NumPy dtypes of strings and objects: not tensors

default_collate_err_msg_format = ("default_collate: batch must contain tensors, numpy arrays, "
                                  "numbers, dicts or lists; found {}")


def _tg():
    import tracegrad
    return tracegrad


def _from_numpy(x):
    """``torch.as_tensor`` of a NumPy array or scalar: its own dtype, memory shared."""
    return _tg().as_tensor(np.asarray(x))


def default_convert(data):
    """NumPy arrays and scalars in ``data`` become tensors (of their dtype), recursing
    into mappings, namedtuples and sequences; used when auto-batching is off
    (``batch_size=None``).

    >>> default_convert({"x": np.arange(2)})
    {'x': tensor([0, 1])}
    """
    tg = _tg()
    elem_type = type(data)
    if isinstance(data, tg.Tensor):
        return data
    if elem_type.__module__ == "numpy" and elem_type.__name__ not in ("str_", "string_"):
        if elem_type.__name__ == "ndarray" and _NP_STR_OBJ.search(data.dtype.str):
            return data
        return _from_numpy(data)
    if isinstance(data, collections.abc.Mapping):
        return _rebuild_mapping(data, {k: default_convert(data[k]) for k in data})
    if isinstance(data, tuple) and hasattr(data, "_fields"):  # a namedtuple
        return elem_type(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]  # a list, as PyTorch's
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
        return _rebuild_sequence(data, [default_convert(d) for d in data])
    return data


def _rebuild_mapping(like, values: dict):
    # the batch's mapping type where it can be copied or built from a dict; else a dict
    try:
        if isinstance(like, collections.abc.MutableMapping):
            clone = copy.copy(like)
            clone.update(values)
            return clone
        return type(like)(values)
    except TypeError:
        return values


def _rebuild_sequence(like, values: list):
    try:
        if isinstance(like, collections.abc.MutableSequence):
            clone = copy.copy(like)
            for i, v in enumerate(values):
                clone[i] = v
            return clone
        return type(like)(values)
    except TypeError:
        return values


def collate(batch, *, collate_fn_map: dict[type | tuple[type, ...], Callable] | None = None):
    """Collate ``batch`` (a list of samples): the first sample's type picks the rule, an
    exact entry of ``collate_fn_map`` first, then the first entry it is an instance of,
    then containers (mappings, namedtuples, sequences), recursively."""
    elem = batch[0]
    elem_type = type(elem)
    if collate_fn_map is not None:
        if elem_type in collate_fn_map:
            return collate_fn_map[elem_type](batch, collate_fn_map=collate_fn_map)
        for kind in collate_fn_map:
            if isinstance(elem, kind):
                return collate_fn_map[kind](batch, collate_fn_map=collate_fn_map)
    if isinstance(elem, collections.abc.Mapping):
        return _rebuild_mapping(elem, {k: collate([d[k] for d in batch],
                                                  collate_fn_map=collate_fn_map)
                                       for k in elem})
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # a namedtuple
        return elem_type(*(collate(s, collate_fn_map=collate_fn_map)
                           for s in zip(*batch, strict=False)))
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        if any(len(e) != size for e in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        columns = [collate(s, collate_fn_map=collate_fn_map) for s in zip(*batch, strict=False)]
        if isinstance(elem, tuple):
            return columns  # a list, as PyTorch's
        return _rebuild_sequence(elem, columns)
    raise TypeError(default_collate_err_msg_format.format(elem_type))


def collate_tensor_fn(batch, *, collate_fn_map=None):
    from ....tensor import Tensor, trace_state
    first = batch[0]
    if trace_state.current is None and all(
            type(t) is type(first) and not t.requires_grad and t.dtype is first.dtype
            and t.shape == first.shape for t in batch):
        # the common case (samples of one dtype and shape, no autograd): one np.stack
        return Tensor._make(np.stack([t._concrete("default_collate") for t in batch]))
    return _tg().stack(list(batch), 0)


def collate_numpy_array_fn(batch, *, collate_fn_map=None):
    if _NP_STR_OBJ.search(batch[0].dtype.str) is not None:
        raise TypeError(default_collate_err_msg_format.format(batch[0].dtype))
    return collate([_from_numpy(b) for b in batch], collate_fn_map=collate_fn_map)


def collate_numpy_scalar_fn(batch, *, collate_fn_map=None):
    return _from_numpy(np.array(batch))


def collate_float_fn(batch, *, collate_fn_map=None):
    tg = _tg()
    return tg.tensor(batch, dtype=tg.float64)


def collate_int_fn(batch, *, collate_fn_map=None):
    return _tg().tensor(batch)  # int64, or bool for bools


def collate_str_fn(batch, *, collate_fn_map=None):
    return batch


def _default_map() -> dict:
    from ....tensor import Tensor
    return {Tensor: collate_tensor_fn,
            np.ndarray: collate_numpy_array_fn,
            (np.bool_, np.number, np.object_): collate_numpy_scalar_fn,
            float: collate_float_fn,
            int: collate_int_fn,
            str: collate_str_fn,
            bytes: collate_str_fn}


default_collate_fn_map: dict = _default_map()


def default_collate(batch):
    """Collate a list of samples into a batch with ``default_collate_fn_map`` (see the
    module docstring).

    >>> import tracegrad as tg
    >>> default_collate([{"x": tg.zeros(2), "y": 0}, {"x": tg.ones(2), "y": 1}])
    {'x': tensor([[0., 0.],
            [1., 1.]]), 'y': tensor([0, 1])}
    """
    return collate(batch, collate_fn_map=default_collate_fn_map)
