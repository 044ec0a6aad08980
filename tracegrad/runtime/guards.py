"""Guards: what must still hold for a compiled entry to run instead of a trace.

Each kind is one class with its check (``holds(call)``, fast), the text of its
failure (``failure(call)``, for recompile messages) and its description
(``text()``, for explain). ``call`` is the flattened arguments of this call; guards
on the ``.grad`` of an argument read this call's argument (``Entry.owner``).

The checks are identity checks of the places a trace read and counters tracegrad
keeps (a module tree's mutation epoch), so a cache hit costs O(places), not a walk.
"""
from __future__ import annotations

import types

import numpy as np

from .._storage import array, lookup, meta
from ..tensor import Tensor
from .pystate import (
    MISSING,
    module_fingerprint,
    module_types,
    python_values,
    read_slot,
    same,
    static_value,
)


class Guard:
    name = ""

    def holds(self, call) -> bool:
        raise NotImplementedError

    def failure(self, call) -> str | None:
        return None if self.holds(call) else f"{self.name}: changed"

    def text(self) -> str:
        return self.name


class TensorGuard(Guard):
    """A state tensor keeps its shape, dtype, requires_grad and (no) hooks."""


    def __init__(self, name, t):
        self.name, self.t = name, t
        self.shape, self.dtype, self.rg = tuple(t.shape), t.dtype, t.requires_grad
        self.hooks = _hooks(t)

    def holds(self, call):
        t = self.t
        s, d = meta(t)
        return s == self.shape and d == self.dtype.np and t._rg is self.rg and \
            _hooks(t) == self.hooks

    def failure(self, call):
        t = self.t
        if tuple(t.shape) != self.shape:
            return f"{self.name}: shape {self.shape} -> {tuple(t.shape)}"
        if t.dtype is not self.dtype:
            return f"{self.name}: dtype {self.dtype} -> {t.dtype}"
        if t.requires_grad != self.rg:
            return f"{self.name}: requires_grad {self.rg} -> {t.requires_grad}"
        if _hooks(t) != self.hooks:
            return f"{self.name}: tensor hooks {self.hooks} -> {_hooks(t)}"
        return None

    def text(self):
        return f"{self.name}: shape {self.shape} dtype {self.dtype.name} requires_grad {self.rg}"


def _hooks(t):
    h = t.__dict__.get("_hooks")
    return len(h) if h else 0


class TensorsGuard(Guard):
    """Every state tensor keeps its shape, dtype, requires_grad and hooks (one
    ``TensorGuard`` each). Fast path: NOTE: [Tensor meta epoch] has not moved since the
    members last held."""

    def __init__(self, members):
        from ..tensor import META_EPOCH
        self.name = "state tensors"
        self.members = members
        self.counter = META_EPOCH
        self.epoch = META_EPOCH[0]

    def holds(self, call):
        if self.counter[0] == self.epoch:
            return True
        if all(g.holds(call) for g in self.members):
            self.epoch = self.counter[0]
            return True
        return False

    def failure(self, call):
        for g in self.members:
            if not g.holds(call):
                return g.failure(call)
        return None

    def text(self):
        return "\n".join(g.text() for g in self.members)


class GradGuard(Guard):
    """A ``.grad`` slot the trace read keeps its shape (or stays absent/present)."""


    def __init__(self, name, owner_of, shape, presence_only=False):
        self.name, self.owner, self.shape = name, owner_of, shape
        self.presence_only = presence_only

    def holds(self, call):
        g = self.owner(call)._grad
        if self.presence_only:
            return (g is None) is (self.shape is None)
        return (g is None and self.shape is None) or (
            g is not None and self.shape is not None and tuple(g.shape) == self.shape)

    def failure(self, call):
        if self.holds(call):
            return None
        g = self.owner(call)._grad
        if self.presence_only:
            return (f"{self.name}: {'None' if self.shape is None else 'a tensor'} -> "
                    f"{'None' if g is None else 'a tensor'}")
        return f"{self.name}: {self.shape} -> {None if g is None else tuple(g.shape)}"

    def text(self):
        if self.presence_only:
            return f"{self.name} is {'None' if self.shape is None else 'not None'}"
        return f"{self.name}: shape {self.shape}"


class ConstantGuard(Guard):
    """State the last call left filled with one value (a zeroed ``.grad``) still is."""


    def __init__(self, name, tensor_of, value):
        self.name, self.tensor_of, self.value = name, tensor_of, value

    def holds(self, call):
        t = self.tensor_of(call)
        arr = None if t is None else t.__dict__.get("_data")  # (a deferred value is no constant)
        cached = None if arr is None else lookup(arr)
        return cached is not None and cached[1] == self.value

    def failure(self, call):
        return None if self.holds(call) else \
            f"{self.name}: no longer filled with {self.value!r} as the last call left it"

    def text(self):
        return f"{self.name}: filled with {self.value!r}"


STATE_ARGUMENT = " is state the compiled function reads, or an alias of it"


class NotStateGuard(Guard):
    """No tensor argument is (an alias of) state the trace read as a separate array."""


    def __init__(self, state):
        self.name, self.state = "arguments", state  # id(array) -> tensor

    def _which(self, call):
        for path, v in call:
            if isinstance(v, Tensor):
                arr = array(v)
                t = self.state.get(id(arr))
                if t is not None and array(t) is arr:
                    return path
        return None

    def holds(self, call):
        return self._which(call) is None

    def failure(self, call):
        path = self._which(call)
        return None if path is None else f"{path}{STATE_ARGUMENT}"

    def text(self):
        return f"arguments: none is one of the {len(self.state)} state tensors the trace read"


class PlacesGuard(Guard):
    """Every Python place the trace could read holds what it held (NOTE: [Reachable
    Python state] in pystate.py): slots by identity or equal plain value, containers by
    size, small NumPy arrays by contents."""


    def __init__(self, name, reach):
        self.name = name
        self.sizes = [(c, n) for c, n, _ in reach.sizes]
        self.slots = [(c, k, v) for c, k, v, _ in reach.slots + reach.tensor_slots]
        # split by kind of container, so the loops need no dispatch
        self.dict_slots = [(c, k, v) for c, k, v in self.slots if type(c) is dict]
        self.cell_slots = [(c, v) for c, k, v in self.slots if type(c) is types.CellType]
        self.other_slots = [(c, k, v) for c, k, v in self.slots
                            if type(c) is not dict and type(c) is not types.CellType]
        self.arrays = [(a, c) for a, c, _ in reach.arrays]
        self._labels = reach

    def holds(self, call):
        for c, n in self.sizes:
            if len(c) != n:
                return False
        for c, k, v in self.dict_slots:
            now = c.get(k, MISSING)
            if now is not v and not same(now, v):
                return False
        for c, v in self.cell_slots:
            try:
                now = c.cell_contents
            except ValueError:
                now = MISSING
            if now is not v and not same(now, v):
                return False
        for c, k, v in self.other_slots:
            now = read_slot(c, k)
            if now is not v and not same(now, v):
                return False
        for a, c in self.arrays:
            if a.shape != c.shape or not np.array_equal(a, c, equal_nan=True):
                return False
        return True

    def failure(self, call):
        r = self._labels
        for c, k, v, label in r.slots:
            now = read_slot(c, k)
            if not same(now, v):
                return f"{label}: {slot_change(v, now)} (Python state the trace read)"
        changed = r.changed()
        return None if changed is None else f"{changed} (Python state the trace read)"

    def text(self):
        r = self._labels
        names = sorted({label.split("[")[0].split(".")[0] for *_, label in r.slots})
        return (f"python: {len(r.slots)} places unchanged ({', '.join(names[:12])}"
                f"{', ...' if len(names) > 12 else ''}), {len(r.sizes)} container sizes, "
                f"{len(r.arrays)} arrays")


def slot_change(old, new) -> str:
    """How a Python place changed, in words: ``2.0 -> 3.0``, ``replaced by another SGD``,
    ``deleted (it held an SGD)``, ``an SGD -> None``."""
    def show(v):
        if static_value(v):
            return repr(v)
        name = type(v).__name__
        # "an Adam", "an SGD" (an acronym is read letter by letter), "a Linear"
        spelled = len(name) > 1 and name[1].isupper()
        an = name[:1] in "AEIOU" or (spelled and name[:1] in "FHLMNRSX")
        return f"{'an' if an else 'a'} {name}"
    if new is MISSING:
        return f"deleted (it held {show(old)})"
    if old is MISSING:
        return f"assigned {show(new)} (it did not exist)"
    if type(old) is type(new) and not static_value(old):
        return f"replaced by another {type(new).__name__} object"
    return f"{show(old)} -> {show(new)}"


class ModulesGuard(Guard):
    """The module trees the trace used keep their structure: the same submodules,
    parameters, buffers and hooks, and the same plain attributes (``training``).

    Fast path: ``nn.module.EPOCH`` counts every registration, attribute assignment and
    hook change of any module; while it has not moved, nothing changed. Otherwise the
    trees' fingerprints are compared (and the epoch remembered when they agree)."""


    def __init__(self, modules):
        from ..nn import module as _m
        self.name = "modules"
        self.modules = [m for m, _ in modules]
        self.labels = [label for _, label in modules]
        self.counter = _m.EPOCH
        self.epoch = _m.EPOCH[0]
        self.fingerprint = [module_fingerprint(m) for m in self.modules]

    def holds(self, call):
        if self.counter[0] == self.epoch:
            return True
        if all(module_fingerprint(m) == f for m, f in
               zip(self.modules, self.fingerprint, strict=True)):
            self.epoch = self.counter[0]
            return True
        return False

    def failure(self, call):
        for m, f, label in zip(self.modules, self.fingerprint, self.labels, strict=True):
            now = module_fingerprint(m)
            if now != f:
                return f"{label}: {_fingerprint_change(f, now)}"
        return None

    def text(self):
        return f"modules: {len(self.modules)} module(s) unchanged (structure, hooks, attributes)"


def _fingerprint_change(old, new):
    what = ("parameters", "buffers", "submodules", "forward hooks", "forward pre-hooks",
            "other hooks", "attributes")
    for name, a, b in zip(what, old, new, strict=True):
        if a != b:
            if name == "attributes":
                da, db = dict(a), dict(b)
                k = next(k for k in da.keys() | db.keys() if da.get(k) != db.get(k))
                if k not in db:
                    return f"attribute {k!r} removed (it was {da[k][1]!r}; the trace baked it in)"
                if k not in da:
                    return f"attribute {k!r} added ({db[k][1]!r})"
                return f"{k}: {da[k][1]!r} -> {db[k][1]!r} (a Python value the trace baked in)"
            if name in ("parameters", "buffers", "submodules"):
                ka, kb = dict(a), dict(b)
                k = next(k for k in ka.keys() | kb.keys() if ka.get(k) != kb.get(k))
                how = "replaced" if k in ka and k in kb else "added or removed"
                return f"{name[:-1]} {k!r} {how}"
            return f"{name} added or removed"
    return "changed"


class OptimizerGuard(Guard):
    """An optimizer keeps its groups, their params, its state tensors and its
    hyperparameters. Float hyperparameters the trace reads as inputs (NOTE: [Dynamic
    hyperparameters]) only stay floats, and keep their sign where ``step()`` branches."""


    def __init__(self, name, opt, dynamic, stepped=True):
        self.name, self.opt, self.dynamic = name, opt, dynamic
        self.values = optimizer_values(opt, dynamic)
        d = vars(opt)
        groups, state = opt.param_groups, opt.state
        self.slots = [(d, "param_groups", groups)]
        self.slots += [(d, k, v) for k, v in d.items()  # a subclass's own settings
                       if static_value(v) and not k.startswith("_")]
        self.sizes = [(groups, len(groups))]
        if stepped:
            self.slots.append((d, "state", state))
            self.sizes.append((state, len(state)))
        for i, g in enumerate(groups):
            self.slots.append((groups, i, g))
            self.sizes.append((g, len(g)))
            params = g["params"]
            self.slots.append((g, "params", params))
            self.sizes.append((params, len(params)))
            self.slots += [(params, j, p) for j, p in enumerate(params)]
            self.slots += [(g, k, v) for k, v in g.items()
                           if k != "params" and (id(g), k) not in dynamic]
        for p, s in state.items() if stepped else ():  # (zero_grad() alone reads no state)
            self.slots.append((state, p, s))
            self.sizes.append((s, len(s)))
            self.slots += [(s, k, v) for k, v in s.items()]
        self.dynamic_slots = [(g, k, Dynamic(v, dynamic[id(g), k])) for g in groups
                              for k, v in g.items() if (id(g), k) in dynamic]
        for g in groups:  # floats baked into the trace: their changes move the epoch
            baked = getattr(g, "baked", None)
            if baked is not None:
                baked.update(k for k, v in g.items() if (id(g), k) not in dynamic
                             and isinstance(v, float))
        from ..optim.optimizer import EPOCH
        self.counter = EPOCH
        self.epoch = EPOCH[0]

    def holds(self, call):
        if self.counter[0] == self.epoch:  # NOTE: [Optimizer epoch]
            return True
        if self._holds():
            self.epoch = self.counter[0]
            return True
        return False

    def _holds(self):
        for c, n in self.sizes:
            if len(c) != n:
                return False
        for c, k, v in self.slots:
            now = c.get(k, MISSING) if isinstance(c, dict) else (c[k] if k < len(c) else MISSING)
            if now is not v and not same(now, v):
                return False
        for d, k, v in self.dynamic_slots:
            if Dynamic(d.get(k, MISSING), v.signed) != v:
                return False
        return True

    def failure(self, call):
        if self._holds():
            return None
        now = optimizer_values(self.opt, self.dynamic)
        for k in [*self.values, *(k for k in now if k not in self.values)]:
            a, b = self.values.get(k, MISSING), now.get(k, MISSING)
            if a != b:
                if b is MISSING:
                    return f"{self.name}.{k} removed (it was {a!r}; the trace baked it in)"
                if a is MISSING:
                    return f"{self.name}.{k} added ({b!r}), which the trace did not read"
                why = ("a dynamic hyperparameter: the optimizer branches on its sign"
                       if isinstance(a, Dynamic) else "a Python value the trace baked in")
                return f"{self.name}.{k}: {a!r} -> {b!r} ({why})"
        return (f"{self.name}: its param_groups, their params or its state changed "
                "(load_state_dict, add_param_group, new state tensors)")

    def text(self):
        return f"{self.name}: " + ", ".join(
            f"{k} {v.guard_text() if isinstance(v, Dynamic) else f'== {v!r}'}"
            for k, v in self.values.items()) + \
            f"; {len(self.slots)} places of its groups and state unchanged"


def optimizer_values(opt, dynamic) -> dict:
    return {f"param_groups[{i}][{k!r}]":
            Dynamic(v, dynamic[id(g), k]) if (id(g), k) in dynamic else v
            for i, g in enumerate(opt.param_groups)
            for k, v in g.items()
            if k != "params" and ((id(g), k) in dynamic or static_value(v))}


class Dynamic:
    """A hyperparameter the trace reads as an input (NOTE: [Dynamic hyperparameters]):
    equal while each float in it is still a float, of the same sign when ``signed`` (the
    step's Python code branched on it); other values (an int, ...) compare as they are."""


    def __init__(self, value, signed):
        self.value, self.signed = value, signed
        self.facts = _float_facts(value, signed)

    def __eq__(self, other):
        return isinstance(other, Dynamic) and self.facts == other.facts

    def __repr__(self):
        return repr(self.value)

    def guard_text(self):
        def text(f):
            if isinstance(f, tuple) and f and f[0] == "value":
                return f"== {f[1]!r}"
            if isinstance(f, tuple):
                return "(" + ", ".join(map(text, f)) + ")"
            if f in ("nan", "float"):
                return f"is {'a float' if f == 'float' else f}"
            return ("< 0", "== 0", "> 0")[f + 1]
        return f"{text(self.facts)} (dynamic input)"


def _float_facts(v, signed):
    if isinstance(v, float):  # (np.float64 too: a scheduler's lr * a NumPy factor)
        return "float" if not signed else "nan" if v != v else (v > 0) - (v < 0)
    if v.__class__ is tuple:
        return tuple(_float_facts(x, signed) for x in v)
    return ("value", v)


def first_failure(guards, call) -> str | None:
    """None when every guard holds, else the failure text of the first that fails."""
    for g in guards:
        if not g.holds(call):
            return g.failure(call) or f"{g.name}: changed"
    return None


__all__ = ["ConstantGuard", "Dynamic", "GradGuard", "Guard", "ModulesGuard", "NotStateGuard",
           "OptimizerGuard", "PlacesGuard", "STATE_ARGUMENT", "TensorGuard", "first_failure",
           "module_fingerprint", "module_types", "python_values"]
