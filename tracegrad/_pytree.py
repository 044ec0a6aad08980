"""Arguments and results as flat lists of leaves (tensors, numbers, anything else).

>>> [p for p, _ in flatten_args(((1, 2), {"b": 3, "a": 4}), {})]
['arg0_0', 'arg0_1', 'arg1_b', 'arg1_a']
"""
from __future__ import annotations

from .tensor import Tensor


def flatten_args(args, kwargs) -> list:
    """``[(path, leaf), ...]`` over lists, tuples (namedtuples too) and dicts, in their own
    order (a dict's insertion order: eager sees the dict as it is), then kwargs by name."""
    flat = []

    def walk(x, path):
        if isinstance(x, (list, tuple)):
            for i, y in enumerate(x):
                walk(y, f"{path}_{i}")
        elif isinstance(x, dict):
            for k in x:
                walk(x[k], f"{path}_{k}")
        else:
            flat.append((path, x))

    for i, a in enumerate(args):
        walk(a, f"arg{i}")
    for k in sorted(kwargs):
        walk(kwargs[k], k)
    return flat


def structure(args, kwargs):
    """What ``flatten_args`` drops: the containers' types, lengths and dict keys (part of
    the cache key: the same leaves in another structure are another call)."""
    def shape(x):
        if isinstance(x, (list, tuple)):
            return (type(x), tuple(shape(y) for y in x))
        if isinstance(x, dict):
            return (type(x), tuple((k, shape(v)) for k, v in x.items()))
        return None
    return tuple(shape(a) for a in args), tuple((k, shape(kwargs[k])) for k in sorted(kwargs))


def substitute(args, kwargs, replace: dict):
    """``args, kwargs`` with the leaf at flat position ``i`` replaced by ``replace[i]``."""
    if not replace:
        return args, kwargs
    counter = iter(range(1 << 62))

    def walk(x):
        if isinstance(x, tuple) and hasattr(x, "_fields"):
            return type(x)(*[walk(y) for y in x])
        if isinstance(x, (list, tuple)):
            return type(x)(walk(y) for y in x)
        if isinstance(x, dict):
            return type(x)((k, walk(v)) for k, v in x.items()) if type(x) is not dict \
                else {k: walk(v) for k, v in x.items()}
        i = next(counter)
        return replace.get(i, x)

    new_args = tuple(walk(a) for a in args)
    new_kwargs = {k: walk(kwargs[k]) for k in sorted(kwargs)}
    return new_args, new_kwargs


def flatten_out(x) -> list:
    if isinstance(x, Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return [y for e in x for y in flatten_out(e)]
    if isinstance(x, dict):
        return [y for k in x for y in flatten_out(x[k])]
    return [x]


class _Leaf:
    """Where a tensor stood in a result ``template`` (which keeps no tensor alive)."""

    __slots__ = ()

    def __repr__(self):
        return "LEAF"


LEAF = _Leaf()


def template(x):
    """``x`` with its tensors replaced by ``LEAF``: a compiled entry keeps the structure and
    the non-tensor values of a traced result, not the traced tensors (nor their graphs)."""
    return rebuild(x, _leaves())


def _leaves():
    while True:
        yield LEAF


def rebuild(x, leaves):
    """``x`` with its tensor leaves (or ``LEAF``s) replaced, in order, by ``leaves``."""
    if x is LEAF or isinstance(x, Tensor):
        return next(leaves)
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)(*[rebuild(e, leaves) for e in x])
    if isinstance(x, (list, tuple)):
        return type(x)(rebuild(e, leaves) for e in x)
    if isinstance(x, dict):
        return {k: rebuild(v, leaves) for k, v in x.items()}
    return x
