"""Where a traced graph's inputs come from: one small class per kind of source.

The tracer makes a source for every graph input (``Tracer.sources``, in input
order); a compiled call asks each for this call's value (``runtime/entry.py``).

>>> Arg(0, "x").name, Scalar(1, "lr").kind
('x', 'scalar')

NOTE: [Input names]. Each input is named by where it came from, the way the user's
code reaches it: ``x`` (the function's parameter), ``model.fc1.weight`` (a module
the function reads, through ``named_parameters``), ``model.fc1.weight.grad``,
``opt.state[model.fc1.weight].exp_avg``, ``opt.param_groups[0].lr``, ``rng``. The
names come from ``Names``, built before the trace from the objects the function
reaches (runtime/pystate.py's walk, or ``reachable`` below). ``legal_name`` turns one
into a Python identifier for the printed graph, whose header maps one to the other.
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
    label: str = ""
    kind = "tensor"

    @property
    def name(self):
        return self.label or tensor_name(self.tensor)

    @property
    def key(self):
        return ("tensor", id(self.tensor))


@dataclass(frozen=True, eq=False)
class Grad(Source):
    """The ``.grad`` slot of ``owner`` (an argument's ``.grad`` is this call's argument's)."""

    owner: object = field(repr=False)
    label: str = ""
    kind = "grad"

    @property
    def name(self):
        return (self.label or tensor_name(self.owner)) + ".grad"

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
    label: str = ""   # the group's own name: "opt.param_groups[0]"
    kind = "group"

    @property
    def name(self):
        key = self.name_ if self.index is None else f"{self.name_}[{self.index}]"
        return f"{self.label}.{key}" if self.label else key

    def value(self):
        v = dict.__getitem__(self.group, self.name_)
        return v if self.index is None else v[self.index]


@dataclass(frozen=True, eq=False)
class RngKey(Source):
    """A fresh jax key drawn each call from ``generator`` (None: the default one)."""

    generator: object = field(default=None, repr=False)
    kind = "rng"
    name = "rng"

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


def legal_name(name: str) -> str:
    """A Python identifier for a source name: ``opt.state[model.fc1.weight].exp_avg`` ->
    ``opt_state_model_fc1_weight_exp_avg``."""
    out, prev = [], "_"
    for c in name:
        c = c if c.isalnum() or c == "_" else "_"
        if not (c == "_" and prev == "_"):
            out.append(c)
        prev = c
    s = "".join(out).rstrip("_") or "t"
    return "_" + s if s[0].isdigit() else s


class Names:
    """Display names of the tensors, modules and optimizer groups reachable from named
    roots (NOTE: [Input names]). ``add(obj, label)`` takes a module (its parameters,
    buffers and submodules by ``named_*``), an optimizer (its groups, their params not
    named otherwise, its state tensors) or a tensor; the first name found wins."""

    def __init__(self, roots=()):
        self._by_id: dict = {}  # id -> (object, name): the object keeps the id valid
        roots = list(roots)
        # a parameter is named by its module (model.fc1.weight) before its optimizer
        rank = [0 if hasattr(o, "named_modules") else 2 if hasattr(o, "_data") else 1
                for o, _ in roots]
        for _, obj, label in sorted(((r, i), o, lab) for r, i, (o, lab)
                                    in zip(rank, range(len(roots)), roots, strict=True)):
            self.add(obj, label)

    def get(self, obj, default=None):
        got = self._by_id.get(id(obj))
        return default if got is None or got[0] is not obj else got[1]

    def _set(self, obj, name):
        if id(obj) not in self._by_id:
            self._by_id[id(obj)] = (obj, name)

    def add(self, obj, label: str) -> None:
        if id(obj) in self._by_id:  # (a submodule of a root added before: named already)
            return
        if hasattr(obj, "named_modules") and hasattr(obj, "_parameters"):
            for path, m in obj.named_modules():
                prefix = f"{label}.{path}" if path else label
                self._set(m, prefix)
                for k, t in list(m._parameters.items()) + list(m._buffers.items()):
                    if t is not None:
                        self._set(t, f"{prefix}.{k}")
        elif hasattr(obj, "param_groups") and hasattr(obj, "state"):
            for i, g in enumerate(obj.param_groups):
                self._set(g, f"{label}.param_groups[{i}]")
                for j, p in enumerate(g["params"]):
                    self._set(p, f"{label}.param_groups[{i}].params[{j}]")
            for p, st in list(obj.state.items()):
                owner = self.get(p, tensor_name(p))
                for k, v in list(st.items()) if isinstance(st, dict) else ():
                    if hasattr(v, "_data"):
                        self._set(v, f"{label}.state[{owner}].{k}")
        elif hasattr(obj, "_data"):
            self._set(obj, label)


def reachable(fn, args=()) -> list:
    """(object, label) for the modules, optimizers and tensors ``fn`` names directly (its
    globals and closure cells), for ``tracegrad.trace``; compiled functions use the
    fuller walk of runtime/pystate.py."""
    out = []
    code = getattr(fn, "__code__", None)
    if code is not None:
        g = getattr(fn, "__globals__", {})
        out += [(g[n], n) for n in code.co_names if n in g]
        for n, cell in zip(code.co_freevars, getattr(fn, "__closure__", None) or (),
                           strict=False):
            try:
                out.append((cell.cell_contents, n))
            except ValueError:
                pass
    elif hasattr(fn, "named_modules"):
        out.append((fn, "self"))
    return out


def arg_names(fn) -> list:
    """The names of ``fn``'s positional parameters (``*args`` as ``args[i]`` later), for
    naming argument inputs ``x`` rather than ``arg0``."""
    import inspect
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return []
    out = []
    for p in params:
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            out.append(p.name)
        elif p.kind == p.VAR_POSITIONAL:
            out.append("*" + p.name)
            break
    return out


def display_path(names: list, path: str) -> str:
    """``arg0`` -> ``x``, ``arg1_0`` -> ``batch_0``, ``arg3`` past ``*args`` at 2 ->
    ``args_1``; a keyword argument's path is already its name."""
    if not path.startswith("arg"):
        return path
    digits = ""
    for c in path[3:]:
        if not c.isdigit():
            break
        digits += c
    if not digits:
        return path
    i, rest = int(digits), path[3 + len(digits):]
    star = next((k for k, n in enumerate(names) if n.startswith("*")), None)
    if star is not None and i >= star:
        return f"{names[star][1:]}_{i - star}{rest}"
    if i < len(names):
        return names[i] + rest
    return path
