"""The Python state a trace can read: found by one walk, used twice.

NOTE: [Reachable Python state]. A trace runs the user's Python once; what it read
through Python (a global tensor, a closure cell, ``cfg["temp"]``, a module's
submodule, an optimizer's state) is baked into the graph. ``Reach(fn)`` walks what
``fn`` can reach: the globals its code loads and its closure cells, then, a few
levels down, functions (their globals and cells too), modules, optimizers, lists,
dicts, sets, tuples, NumPy arrays and the attributes of objects of the user's own
classes. Each place is a *slot* (a dict key, a list index, a cell) with the object
it held. Two uses:

* side effects: a walk before the trace, re-read after it; any change is Python
  state that compiled calls would not change again, so such calls run eagerly;
* guards: a walk after the trace; a compiled call runs only while every slot
  still holds the same object (or an equal plain value), every container has its
  size, every small array its contents, every module tree its structure.

Library objects (a logger, numpy itself, tracegrad's own modules) are not walked:
they are not the user's state. Containers larger than ``ITEMS`` are guarded by
size only and not walked; see docs/architecture.md for what that leaves out.
"""
from __future__ import annotations

import argparse
import collections
import collections.abc
import dis
import functools
import math
import os
import random as _py_random
import sys
import types

import numpy as np

from ..tensor import Tensor

MISSING = object()
DEPTH = 6      # how far from the function's own names the walk goes
ITEMS = 256    # containers larger than this are guarded by size only
ARRAY = 4096   # NumPy arrays up to this many elements are guarded by contents

STATIC_TYPES = (bool, int, float, str, type(None), bytes, complex)
_CONTAINERS = (list, dict, set, collections.deque)
_MODULE_TABLES = frozenset({"_parameters", "_buffers", "_modules", "_non_persistent_buffers"})
# a module's own entries, left out of its fingerprint's identities (tables, flags, hooks)
_MODULE_OWN = _MODULE_TABLES | {"training", "_forward_hooks", "_forward_pre_hooks",
                                "_backward_hooks", "_backward_pre_hooks"}


def static_value(v) -> bool:
    return v.__class__ in STATIC_TYPES or isinstance(v, (np.generic,)) or (
        v.__class__ is tuple and all(static_value(x) for x in v))


def same(now, then) -> bool:
    """The slot still holds ``then``: the same object, or an equal plain value."""
    if now is then:
        return True
    if then.__class__ is frozenset:  # a set's contents (_SetView)
        return now == then
    if then.__class__ is float and now.__class__ is float:  # -0.0 is not 0.0; nan is nan
        return (now == then and math.copysign(1.0, now) == math.copysign(1.0, then)) or (
            now != now and then != then)
    if now.__class__ is not then.__class__ or not static_value(then):
        return False
    try:
        return bool(now == then) or (now != now and then != then)  # (nan is nan's value)
    except Exception:  # (an array-valued comparison)
        return False


@functools.cache
def module_types():
    from ..nn.module import Module
    from ..optim.optimizer import Optimizer
    return Module, Optimizer


@functools.cache
def global_names(code) -> tuple:
    """The names ``code`` (and the functions and comprehensions nested in it) loads as
    globals. ``co_names`` alone also holds attribute names: ``opt.step()`` is no read
    of a global ``step``."""
    names = set()
    for ins in dis.get_instructions(code):
        if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME", "STORE_GLOBAL", "DELETE_GLOBAL"):
            names.add(ins.argval)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names.update(global_names(c))
    return tuple(sorted(names))


@functools.cache
def attribute_names(code) -> frozenset:
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= attribute_names(c)
    return frozenset(names)


@functools.cache
def _library_dirs() -> tuple:
    import sysconfig
    dirs = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("stdlib", "purelib",
                                                                 "platlib")}
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return tuple(d + os.sep for d in dirs) + (pkg + os.sep,)


@functools.cache
def _user_path(path: str | None, modname: str) -> bool:
    if modname.startswith("tracegrad") and not modname.startswith("tracegrad_"):
        return False
    if path is None:
        return modname == "__main__"
    path = os.path.realpath(path)
    return not path.startswith(_library_dirs()) and "importlib" not in path


def users_class(cls) -> bool:
    mod = sys.modules.get(cls.__module__)
    if mod is None or cls.__module__ == "builtins":
        return False
    return _user_path(getattr(mod, "__file__", None), cls.__module__)


def users_function(f) -> bool:
    code = getattr(f, "__code__", None)
    if code is None:
        return False
    return _user_path(code.co_filename if not code.co_filename.startswith("<") else None,
                      getattr(f, "__module__", None) or "__main__") or \
        code.co_filename.startswith("<")


def plain_object(obj) -> bool:
    """An instance of a class of the user's own code (a trainer whose method is compiled,
    a config), whose attributes are Python state like a module's."""
    Module, Optimizer = module_types()
    return (obj is not None and hasattr(obj, "__dict__")
            and not isinstance(obj, (type, Module, Optimizer, Tensor, types.ModuleType,
                                     types.FunctionType, types.MethodType))
            and (users_class(type(obj)) or type(obj) in _NAMESPACES))


_NAMESPACES = (types.SimpleNamespace, argparse.Namespace)  # attribute bags: user state


def argument_objects(flat) -> list:
    """Arguments that are Python objects (a config, a dataclass): their attributes are state
    the trace reads, like a global's. (Tensors and plain values are in the cache key.)"""
    return [v for _, v in flat if plain_object(v)]


def python_values(obj) -> dict:
    """The plain Python values (bools, numbers, strings, None) a module or an optimizer
    holds: its attributes (``training``, a ``scale``) or its hyperparameters."""
    Module, Optimizer = module_types()
    if isinstance(obj, Optimizer):
        out = {f"param_groups[{i}][{k!r}]": v for i, g in enumerate(obj.param_groups)
               for k, v in g.items() if k != "params" and static_value(v)}
        out.update((k, v) for k, v in vars(obj).items()  # a subclass's self.n_steps
                   if static_value(v) and not k.startswith("_"))
        return out
    if isinstance(obj, Module):
        return {k: v for k, v in vars(obj).items() if static_value(v)}
    return {}


def module_fingerprint(m):
    d = m.__dict__
    return (tuple((k, id(v)) for k, v in d["_parameters"].items()),
            tuple((k, id(v)) for k, v in d["_buffers"].items()),
            tuple((k, id(v)) for k, v in d["_modules"].items()),
            tuple(d["_forward_hooks"]), tuple(d["_forward_pre_hooks"]),
            tuple(_hook_keys(d)),
            tuple(sorted((k, _plain(v)) for k, v in d.items() if static_value(v))),
            tuple(sorted((k, id(v)) for k, v in d.items()
                         if not static_value(v) and k not in _MODULE_OWN
                         and not isinstance(v, Tensor))))


def _hook_keys(d):
    for k in ("_backward_hooks", "_backward_pre_hooks", "_state_dict_hooks",
              "_load_state_dict_pre_hooks"):
        h = d.get(k)
        if h:
            yield k, tuple(h)


def _plain(v):
    return (type(v).__name__, v if v == v else "nan")



class Reach:
    """The places ``fn`` can reach, with what they hold now (NOTE: [Reachable Python
    state]). ``slots``: (container, key, object, label) where the container is a dict
    (``key`` a key), a list (an index) or a cell (``key`` None); ``sizes``: (container,
    length, label); ``arrays``: (array, copy, label); ``modules``, ``optimizers``,
    ``generators`` (Python and NumPy random generators: (object, label))."""

    def __init__(self, fn, extra=()):
        self.slots: list = []
        self.sizes: list = []
        self.arrays: list = []
        self.modules: list = []
        self.optimizers: list = []
        self.generators: list = []
        self.iterators: list = []
        self.tensor_slots: list = []  # guarded like slots, not checked for side effects
        self.big: list = []  # (container, label): too large to guard; checked for side effects
        self._seen: set = set()
        self._py_modules: list = []
        self._attrs: set = set()
        self._walk_root(fn)
        for obj in extra:  # modules and optimizers the trace used, however it got them
            self._value(obj, type(obj).__name__, DEPTH)
        self._module_attributes()

    # ---- the walk -----------------------------------------------------------
    def _walk_root(self, fn):
        Module, _ = module_types()
        if isinstance(fn, Module):
            self._value(fn, "self", DEPTH)
            return
        if isinstance(fn, types.MethodType):
            self._value(fn.__self__, "self", DEPTH)
            fn = fn.__func__
        if isinstance(fn, functools.partial):
            for i, a in enumerate(fn.args):
                self._value(a, f"partial.args[{i}]", DEPTH)
            for k, a in fn.keywords.items():
                self._value(a, f"partial.{k}", DEPTH)
            fn = fn.func
        if isinstance(fn, types.FunctionType):
            self._function(fn, fn.__name__, DEPTH + 1)
        elif not isinstance(fn, types.BuiltinFunctionType):
            self._value(fn, "self", DEPTH)

    def _function(self, f, label, depth):
        if id(f) in self._seen:
            return
        self._seen.add(id(f))
        self._function_body(f, label, depth)

    def _function_body(self, f, label, depth):
        code = f.__code__
        self._attrs |= attribute_names(code)
        g = f.__globals__
        for name in global_names(code):
            v = g.get(name, MISSING)
            self.slots.append((g, name, v, name))
            if v is not MISSING:
                self._value(v, name, depth - 1)
        for name, cell in zip(code.co_freevars, f.__closure__ or (), strict=False):
            try:
                v = cell.cell_contents
            except ValueError:  # an empty cell
                v = MISSING
            self.slots.append((cell, None, v, name))
            if v is not MISSING:
                self._value(v, name, depth - 1)
        self.slots.append((_FunctionAttrs(f), "__defaults__", f.__defaults__,
                           f"{label}.__defaults__"))
        self.slots.append((_FunctionAttrs(f), "__kwdefaults__", f.__kwdefaults__,
                           f"{label}.__kwdefaults__"))
        for i, d in enumerate(f.__defaults__ or ()):
            self._value(d, f"{label}.__defaults__[{i}]", depth - 1)
        for k, d in (f.__kwdefaults__ or {}).items():
            self._value(d, f"{label}.{k}", depth - 1)

    def _value(self, v, label, depth):
        if depth < 0 or v is None or v.__class__ in STATIC_TYPES or id(v) in self._seen:
            return
        Module, Optimizer = module_types()
        if isinstance(v, Tensor):
            return
        self._seen.add(id(v))
        cls = v.__class__
        if isinstance(v, Module):
            for name, m in v.named_modules() if hasattr(v, "named_modules") else [("", v)]:
                self._seen.add(id(m))
                self.modules.append((m, f"{label}.{name}" if name else label))
                for k, x in vars(m).items():
                    if k in _MODULE_TABLES:  # (the module's own tables: ModulesGuard's)
                        continue
                    if isinstance(x, Tensor):  # a plain tensor attribute: guarded, but its
                        # reassignment while tracing (weight_norm's) is no side effect
                        self.tensor_slots.append((vars(m), k, x, f"{label}.{k}"))
                        continue
                    if x.__class__ in _CONTAINERS or x.__class__ is tuple or plain_object(x):
                        self._value(x, f"{label}.{k}", depth - 1)
                    elif isinstance(x, dict) and k.endswith("hooks"):  # hook functions
                        for i, h in enumerate(x.values()):
                            self._value(h, f"{label}.{k}[{i}]", depth - 1)
                for k, t in list(m._parameters.items()) + list(m._buffers.items()):
                    for i, h in enumerate((getattr(t, "__dict__", {}).get("_hooks") or
                                           {}).values()):
                        self._value(h, f"{label}.{k}._hooks[{i}]", depth - 1)
                self._methods(type(m), depth)
        elif isinstance(v, Optimizer):
            self.optimizers.append((v, label))
        elif cls is list or cls is collections.deque:
            self.sizes.append((v, len(v), label))
            if len(v) > ITEMS:
                self.big.append((v, label))
            else:
                for i, x in enumerate(v):
                    self.slots.append((v, i, x, f"{label}[{i}]"))
                    self._value(x, f"{label}[{i}]", depth - 1)
        elif cls is tuple or cls.__bases__ == (tuple,) and hasattr(v, "_fields"):
            if len(v) <= ITEMS:
                for i, x in enumerate(v):
                    self._value(x, f"{label}[{i}]", depth - 1)
        elif isinstance(v, dict):
            self.sizes.append((v, len(v), label))
            if len(v) > ITEMS:
                self.big.append((v, label))
            else:
                for k, x in list(v.items()):
                    self.slots.append((v, k, x, f"{label}[{k!r}]"))
                    self._value(x, f"{label}[{k!r}]", depth - 1)
        elif cls is set or cls is frozenset:
            if len(v) <= ITEMS:
                self.slots.append((_SetView(v), None, frozenset(v), label))
            else:
                self.sizes.append((v, len(v), label))
        elif isinstance(v, np.ndarray):
            if v.size <= ARRAY and v.dtype != object:
                self.arrays.append((v, v.copy(), label))
            elif v.dtype != object:
                self.big.append((v, label))
        elif isinstance(v, (_py_random.Random, np.random.Generator, np.random.RandomState)):
            self.generators.append((v, label))
        elif isinstance(v, types.FunctionType):
            if users_function(v):
                self._function_body(v, label, depth)
        elif isinstance(v, types.MethodType):
            self._value(v.__self__, f"{label}.__self__", depth - 1)
            self._value(v.__func__, label, depth)
        elif isinstance(v, functools.partial):
            self._value(v.func, f"{label}.func", depth - 1)
            for i, a in enumerate(v.args):
                self._value(a, f"{label}.args[{i}]", depth - 1)
            for k, a in v.keywords.items():
                self._value(a, f"{label}.{k}", depth - 1)
        elif isinstance(v, type):
            if users_class(v):  # a class used as a namespace (its attributes, methods)
                self._methods(v, depth)
        elif isinstance(v, types.ModuleType):
            if _user_path(getattr(v, "__file__", None), v.__name__):
                self._py_modules.append((v, label))
        elif plain_object(v):
            d = vars(v)
            self.sizes.append((d, len(d), label))
            for k, x in list(d.items()):
                self.slots.append((d, k, x, f"{label}.{k}"))
                self._value(x, f"{label}.{k}", depth - 1)
            self._methods(cls, depth)
        elif hasattr(v, "__self__") and isinstance(getattr(v, "__self__", None), Module):
            self._value(v.__self__, label, depth)  # a bound method of a module (C-level)
        elif hasattr(cls, "__next__"):  # an iterator: its position is state no slot shows
            self.iterators.append((v, label))
        elif isinstance(v, (collections.abc.Mapping, list)) or (
                hasattr(cls, "__slots__") and users_class(cls)):
            self._other(v, label, depth)

    def _other(self, v, label, depth):
        """A mapping that is no dict (ChainMap, UserDict), a list subclass, or an object
        of a user's class with ``__slots__``: its items or slots, read through a view."""
        if isinstance(v, collections.abc.Mapping):
            keys = list(v.keys())
            view = _View(lambda k, m=v: m.get(k, MISSING))
            self.sizes.append((v, len(v), label))
        elif isinstance(v, list):
            keys = list(range(len(v)))
            view = _View(lambda i, xs=v: xs[i] if i < len(xs) else MISSING)
            self.sizes.append((v, len(v), label))
        else:
            keys = [n for k in type(v).__mro__ for n in getattr(k, "__slots__", ())
                    if isinstance(n, str) and not n.startswith("__")]
            view = _View(lambda k, o=v: getattr(o, k, MISSING))
        if len(keys) > ITEMS:
            self.big.append((v, label))
            return
        for k in keys:
            x = view.read(k)
            self.slots.append((view, k, x, f"{label}[{k!r}]"))
            self._value(x, f"{label}[{k!r}]", depth - 1)
        self._methods(type(v), depth)

    def _methods(self, cls, depth):
        """The functions of a user's class (``forward``, helpers): their globals too."""
        for klass in cls.__mro__:
            if klass is object or not users_class(klass) or id(klass) in self._seen:
                continue
            self._seen.add(id(klass))
            attrs = vars(klass)
            for name, f in attrs.items():
                if isinstance(f, (staticmethod, classmethod)):
                    f = f.__func__
                if isinstance(f, types.FunctionType):
                    self._function(f, f"{klass.__name__}.{name}", depth)
                elif isinstance(f, property):
                    if f.fget is not None:
                        self._function(f.fget, f"{klass.__name__}.{name}", depth)
                elif not name.startswith("__") and (static_value(f) or f.__class__ in
                                                     _CONTAINERS or f.__class__ is tuple):
                    # a class attribute (``scale = 2.0`` in the class body): state too
                    self.slots.append((attrs, name, f, f"{klass.__name__}.{name}"))
                    self._value(f, f"{klass.__name__}.{name}", depth - 1)

    def _module_attributes(self):
        """A user's Python module (``import config``): the attributes the code names."""
        for mod, label in self._py_modules:
            d = vars(mod)
            for name in sorted(self._attrs & d.keys()):
                v = d[name]
                self.slots.append((d, name, v, f"{label}.{name}"))
                self._value(v, f"{label}.{name}", DEPTH - 1)

    # ---- reading it again ---------------------------------------------------
    def changed(self) -> str | None:
        """The first place that no longer holds what it held (a description), else None."""
        for c, n, label in self.sizes:
            if len(c) != n:
                return f"{label} ({type(c).__name__}) changed: {n} -> {len(c)} items"
        for c, k, v, label in self.slots:
            now = read_slot(c, k)
            if not same(now, v):
                return f"{label}: {_show(v)} -> {_show(now)}"
        for arr, copy, label in self.arrays:
            if arr.shape != copy.shape or not np.array_equal(arr, copy, equal_nan=True):
                return f"{label}: the NumPy array's contents changed"
        return None


class _View:
    """A container of slots read by a function (``read(key)``, MISSING when absent)."""

    __slots__ = ("read",)

    def __init__(self, read):
        self.read = read


def _FunctionAttrs(f):
    return _View(lambda k: getattr(f, k, MISSING))


class _SetView:
    """A set as a slot container: the slot reads a frozen copy of it."""

    __slots__ = ("s",)

    def __init__(self, s):
        self.s = s


def read_slot(c, k):
    cls = c.__class__
    if cls is types.CellType:
        try:
            return c.cell_contents
        except ValueError:
            return MISSING
    if cls is _SetView:
        return frozenset(c.s)
    if cls is _View:
        return c.read(k)
    if isinstance(c, (dict, types.MappingProxyType)):  # (a class's __dict__)
        return c.get(k, MISSING)
    return c[k] if k < len(c) else MISSING


def _show(v):
    if v is MISSING:
        return "<deleted>"
    if static_value(v):
        return repr(v)
    return f"<a {type(v).__name__}>"


def random_state():
    """Python's and NumPy's global random state: drawing from them while tracing is a
    side effect (a compiled call would repeat the traced draw)."""
    return (_py_random.getstate(), _np_state(np.random.get_state()))


def _np_state(st):
    return (st[0], st[1].tobytes(), *st[2:])


def _fingerprint(c):
    """What a large container holds (trace time only: O(size))."""
    if isinstance(c, np.ndarray):
        return c.tobytes()
    if isinstance(c, collections.abc.Mapping):
        return tuple((k, id(v)) for k, v in c.items())
    return tuple(map(id, c))


def generator_state(g):
    if isinstance(g, _py_random.Random):
        return g.getstate()
    if isinstance(g, np.random.Generator):
        return repr(g.bit_generator.state)
    return _np_state(g.get_state())


class Snapshot:
    """Taken before a trace; ``side_effect()`` after it names the first change."""

    def __init__(self, fn, extra=()):
        self.reach = Reach(fn, extra)
        self.values = {id(o): python_values(o) for o, _ in
                       self.reach.modules + self.reach.optimizers}
        self.structure = [(m, label, module_fingerprint(m)) for m, label in self.reach.modules]
        self.random = random_state()
        self.generators = [(g, label, generator_state(g)) for g, label in self.reach.generators]
        self.big = [(c, label, _fingerprint(c)) for c, label in self.reach.big]

    def structure_change(self) -> str | None:
        """A module tree the trace changed (a submodule, parameter, buffer or hook added or
        replaced); asked after new state (which retraces) is ruled out."""
        for m, label, before in self.structure:
            if module_fingerprint(m) != before:
                return f"{label}: its submodules, parameters, buffers or hooks changed"
        return None

    def side_effect(self) -> str | None:
        changed = self.reach.changed()
        if changed is not None:
            return changed
        for o, label in self.reach.modules + self.reach.optimizers:
            now, then = python_values(o), self.values[id(o)]
            if now != then:
                k = next(k for k in now.keys() | then.keys()
                         if now.get(k, MISSING) != then.get(k, MISSING))
                return f"{label}.{k}: {_show(then.get(k, MISSING))} -> {_show(now.get(k, MISSING))}"
        if random_state() != self.random:
            return ("Python's or NumPy's global random generator was drawn from (random, "
                    "numpy.random); a compiled call would repeat the traced draw")
        for g, label, st in self.generators:
            if generator_state(g) != st:
                return f"{label}: a random generator was drawn from"
        for c, label, before in self.big:
            if _fingerprint(c) != before:
                return f"{label}: a large {type(c).__name__} changed"
        if self.reach.iterators:
            it, label = self.reach.iterators[0]
            return (f"{label} is an iterator ({type(it).__name__}) the function can advance; "
                    "compiled calls would not advance it")
        return None
