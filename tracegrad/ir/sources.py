"""Where a traced graph's inputs come from: one small class per kind of source.

The tracer makes a source for every graph input (``Tracer.sources``, in input
order); a compiled call asks each for this call's value (``runtime/entry.py``).

>>> Arg(0, "x").name, Scalar(1, "lr").kind
('x', 'scalar')
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, eq=False)
class Source:
    """A graph input's origin. ``key`` identifies it across traces of one function."""

    kind = "source"

    @property
    def key(self):
        return (self.kind, id(self))


@dataclass(frozen=True, eq=False)
class _Positional(Source):
    """An argument at position ``index`` of the flattened arguments, at ``path``."""

    index: int
    path: str = ""

    @property
    def name(self):
        return self.path or f"arg{self.index}"

    @property
    def key(self):
        return (self.kind, self.index)


class Arg(_Positional):
    """A tensor argument."""

    kind = "arg"


class Scalar(_Positional):
    """A Python float argument, a dynamic 0-d float64 input."""

    kind = "scalar"


@dataclass(frozen=True, eq=False)
class State(Source):
    """A tensor the function reached through Python (a parameter, a buffer, optimizer
    state, a global): lifted to an input, written back if the step writes it."""

    tensor: object = field(repr=False)
    kind = "tensor"

    @property
    def name(self):
        return tensor_name(self.tensor)

    @property
    def key(self):
        return ("tensor", id(self.tensor))


@dataclass(frozen=True, eq=False)
class Grad(Source):
    """The ``.grad`` slot of ``owner`` (an argument's ``.grad`` is this call's argument's)."""

    owner: object = field(repr=False)
    kind = "grad"

    @property
    def name(self):
        return tensor_name(self.owner) + "_grad"

    @property
    def key(self):
        return ("grad", id(self.owner))


@dataclass(frozen=True, eq=False)
class GroupValue(Source):
    """``group[key]`` (``group[key][index]``): an optimizer hyperparameter read each call
    (NOTE: [Dynamic hyperparameters] in ir/tracer.py)."""

    group: dict = field(repr=False)
    name_: str = ""
    index: int | None = None
    kind = "group"

    @property
    def name(self):
        return self.name_ if self.index is None else f"{self.name_}{self.index}"

    def value(self):
        v = dict.__getitem__(self.group, self.name_)
        return v if self.index is None else v[self.index]


@dataclass(frozen=True, eq=False)
class RngKey(Source):
    """A fresh jax key drawn each call from ``generator`` (None: the default one)."""

    generator: object = field(default=None, repr=False)
    kind = "rng"
    name = "rng_key"

    def value(self):
        if self.generator is None:
            from ..random import default_generator
            return default_generator._key_data()
        return self.generator._key_data()


@dataclass(frozen=True, eq=False)
class EagerDraw(Source):
    """A random tensor drawn by the eager generator on each call (``compile(...,
    random="eager")``): ``redraw()`` repeats the traced draw, in the same stream order."""

    redraw: object = field(repr=False)
    dist: str = ""
    kind = "draw"

    @property
    def name(self):
        return f"{self.dist}_draw"

    def value(self):
        return self.redraw()


def tensor_name(t) -> str:
    n = getattr(t, "_tg_name", None)
    if n:
        return n
    return "p" if getattr(t, "_is_param", False) else "t"
