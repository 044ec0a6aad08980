"""Containers whose changes move a counter: the epochs compiled calls' guards compare.

NOTE: [Tensor meta epoch] (tensor.py), [Module epoch] (nn/module.py), [Optimizer epoch]
(optim/optimizer.py): each is a one-item list; a container class made with ``counting``
moves it on every call of the named mutating methods.

>>> counter = [0]
>>> Counted = type("Counted", (dict,), counting(dict, counter, ("__setitem__",)))
>>> d = Counted(); d["a"] = 1; counter[0]
1
"""
from __future__ import annotations


def counting(base, counter: list, names) -> dict:
    """Methods for a subclass of ``base``: each of ``names`` moves ``counter[0]``, then
    does what ``base``'s does."""
    def wrap(name):
        method = getattr(base, name)

        def counted(self, *args, **kwargs):
            counter[0] += 1
            return method(self, *args, **kwargs)
        counted.__name__ = counted.__qualname__ = name
        return counted
    return {name: wrap(name) for name in names}
