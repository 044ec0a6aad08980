"""Optimizer: the base class holding parameter groups and per-parameter state.

Subclasses implement ``step()``. Updates are written with tracegrad's in-place
tensor ops under ``no_grad`` (never raw NumPy), and all state lives in tracegrad
Tensors, so the same ``step()`` runs eagerly and under ``tracegrad.compile``.
Hyperparameters stay Python floats in ``param_groups``; ``step()`` reads the ones it
does arithmetic with through ``_hyper`` (a 0-d tensor input while tracing, NOTE:
[Dynamic hyperparameters] in ir/tracer.py) and branches only on their sign.

NOTE: [Optimizer state identity]. ``state`` is keyed by the Parameter objects
themselves; ``state_dict()`` replaces them with their position across all
groups (0, 1, ...), so a checkpoint loads into a fresh model's optimizer.
"""
from __future__ import annotations

import copy
import functools
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from .._epochs import counting
from ..autograd.grad_mode import enable_grad
from ..tensor import Tensor, trace_state


class _RequiredParameter:
    """Marks a hyperparameter with no default (e.g. SGD's lr in old PyTorch)."""

    def __repr__(self):
        return "<required parameter>"


required = _RequiredParameter()


def _check_nonnegative(what: str, value) -> None:
    """Raise a clear error unless ``value`` is a number >= 0 (``what`` names it)."""
    if isinstance(value, Tensor):
        value = value.item()
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{what} must be a number, got {type(value).__name__}")
    if not value >= 0.0:
        raise ValueError(f"Invalid {what}: {value}")


# NOTE: [Optimizer epoch]. Counts every change to any optimizer's structure: its
# attributes, its param_groups list, a group's entries and params list, its state dict and
# each parameter's state dict. A compiled call's guard on an optimizer it stepped
# (runtime/guards.OptimizerGuard) is one comparison with this while nothing changed. A
# group's float that compiled steps read as an input (``lr`` set by a scheduler) moves it
# only when its sign changes, unless a trace baked that key in (``baked``).
EPOCH = [0]


_LIST_MUTATORS = ("__setitem__", "__delitem__", "__iadd__", "__imul__", "append", "extend",
                  "insert", "pop", "remove", "clear", "sort", "reverse")
_DICT_MUTATORS = ("__setitem__", "__delitem__", "pop", "popitem", "clear", "update",
                  "setdefault", "__ior__")


class TrackedList(list):
    """A list whose changes move the optimizer epoch (param_groups, a group's params)."""

    __slots__ = ()
    locals().update(counting(list, EPOCH, _LIST_MUTATORS))

    def __reduce__(self):
        return list, (list(self),)


class TrackedDict(dict):
    """A parameter's state dict: its changes move the optimizer epoch."""

    __slots__ = ()
    locals().update(counting(dict, EPOCH, _DICT_MUTATORS))

    def __reduce__(self):
        return dict, (dict(self),)


class TrackedState(defaultdict):
    """``Optimizer.state``: a defaultdict of TrackedDicts whose changes move the epoch."""

    __slots__ = ()
    locals().update(counting(defaultdict, EPOCH, _DICT_MUTATORS))

    def __init__(self, items=()):
        super().__init__(TrackedDict)
        for k, v in dict(items).items():
            self[k] = v

    def __missing__(self, key):
        EPOCH[0] += 1
        return super().__missing__(key)

    def __setitem__(self, key, value):
        EPOCH[0] += 1
        if type(value) is dict:
            value = TrackedDict(value)
        super().__setitem__(key, value)

    def __reduce__(self):
        return _plain_state, (dict(self),)

    def __deepcopy__(self, memo):
        out = TrackedState()
        memo[id(self)] = out
        for k, v in self.items():
            out[copy.deepcopy(k, memo)] = copy.deepcopy(v, memo)
        return out


def _plain_state(items):
    return defaultdict(dict, items)


def _sign(v):
    return (v > 0) - (v < 0) if v == v else 2


class ParamGroup(dict):
    """A param group: a dict that tells a tracer when the user's code reads a value.

    ``step()`` reads the floats it does arithmetic with through ``_hyper`` (dynamic
    inputs of a compiled step); a read from anywhere else (``return
    opt.param_groups[0]["lr"]``, ``loss * group["lr"]``) bakes the value into the trace,
    so it is guarded by value (NOTE: [Dynamic hyperparameters])."""

    __slots__ = ("baked",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.baked = set()  # keys a trace baked in: any change to them moves the epoch
        params = dict.get(self, "params")
        if type(params) is list:
            dict.__setitem__(self, "params", TrackedList(params))

    def __setitem__(self, key, value):
        old = dict.get(self, key)
        if not (old.__class__ is float and value.__class__ is float and key not in self.baked
                and _sign(old) == _sign(value)):
            EPOCH[0] += 1
        if key == "params" and type(value) is list:
            value = TrackedList(value)
        dict.__setitem__(self, key, value)

    locals().update(counting(dict, EPOCH, [m for m in _DICT_MUTATORS if m != "__setitem__"]))

    def __getitem__(self, key):
        tracer = trace_state.current
        if tracer is not None:
            tracer.note_group_read(self, key)
        return dict.__getitem__(self, key)

    def get(self, key, default=None):
        tracer = trace_state.current
        if tracer is not None:
            tracer.note_group_read(self, key)
        return dict.get(self, key, default)

    def __reduce__(self):  # pickles (and deep-copies) as the plain dict torch has
        return dict, (dict(self),)


def _hyper(group: dict, key: str, index: int | None = None):
    """``group[key]`` (``group[key][index]``) for arithmetic in ``step()``.

    Eagerly the Python value itself. While tracing, a float is a 0-d float64 tensor
    that each compiled call reads from the group, so a scheduler's new ``lr`` runs the
    same program; use it only in tensor expressions (``p.add_(g * -lr)``, not
    ``alpha=-lr``), and branch on it through ``_branch``. Read it where it is used
    (inside the branch that needs it), so an unused one is not an input."""
    value = dict.__getitem__(group, key)
    if index is not None:
        value = value[index]
    tracer = trace_state.current
    if tracer is None or not isinstance(value, float):
        return value
    return tracer.hyperparameter(group, key, index)


def _branch(group: dict, key: str):
    """``group[key]`` for a Python branch in ``step()`` (``if _branch(g, "momentum") != 0``).

    Branch on its sign only: while tracing, the compiled step stays valid while the
    sign is the same, and a value that crosses zero retraces."""
    tracer = trace_state.current
    if tracer is not None:
        tracer.note_branch(group, key)
    return dict.__getitem__(group, key)


def _implementation_flags(foreach, fused, capturable, differentiable) -> dict:
    """PyTorch's implementation switches, accepted so torch code runs unchanged; they
    choose kernels there and change no values, so they change nothing here."""
    if fused and foreach:
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
    if differentiable:
        raise NotImplementedError("differentiable=True (gradients through the optimizer "
                                  "step) is not supported by tracegrad.optim: step() runs "
                                  "under no_grad")
    return dict(foreach=foreach, capturable=capturable, differentiable=differentiable,
                fused=fused)


_SET_MESSAGE = ("optimizer parameters need to be organized in ordered collections, but the "
                "ordering of tensors in sets will change between runs. Please use a list instead.")


class Optimizer:
    """Base class: ``param_groups`` (dicts of params plus hyperparameters) and ``state``.

    >>> import tracegrad as tg
    >>> w = tg.zeros(2, requires_grad=True)
    >>> opt = tg.optim.SGD([w], lr=0.1)
    >>> (w - 1).pow(2).sum().backward(); opt.step()
    >>> w
    tensor([0.2000, 0.2000], requires_grad=True)
    """

    def __init__(self, params: Iterable, defaults: dict[str, Any]):
        self.defaults = defaults
        self.state: defaultdict[Tensor, dict] = TrackedState()
        self.param_groups: list[dict] = TrackedList()
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            f"Tensors or dicts, but got {params.type()}")
        if isinstance(params, set):
            raise TypeError(_SET_MESSAGE)
        try:
            groups = list(params)
        except TypeError:
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            f"Tensors or dicts, but got {type(params).__name__}") from None
        if len(groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict) -> None:
        """Add a group of params, with hyperparameters defaulting to the optimizer's."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError(_SET_MESSAGE)
        else:
            params = list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError("optimizer can only optimize Tensors, but one of the params is "
                                f"{type(p).__name__}")
            if p.grad_fn is not None:
                raise ValueError("can't optimize a non-leaf Tensor")
        if len({id(p) for p in params}) != len(params):
            warnings.warn("optimizer contains a parameter group with duplicate parameters; in "
                          "future, this will cause an error", stacklevel=3)
        group = ParamGroup(param_group, params=TrackedList(params))
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required "
                                 f"optimization parameter {name}")
            group.setdefault(name, default)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def __setattr__(self, name, value):
        EPOCH[0] += 1
        if name == "state" and not isinstance(value, TrackedState) and isinstance(value, dict):
            value = TrackedState(value)
        elif name == "param_groups" and type(value) is list:
            value = TrackedList(value)
        object.__setattr__(self, name, value)

    def __setstate__(self, state):
        self.__dict__.update(state)
        # (a pickled optimizer comes back with plain containers: track them again)
        self.state = self.__dict__.get("state", {})
        self.param_groups = [g if isinstance(g, ParamGroup) else ParamGroup(g)
                             for g in self.__dict__.get("param_groups", [])]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all optimized params (to None by default)."""
        from ..nn.module import _zero_grad
        tracer = trace_state.current
        prev = tracer.phase if tracer is not None else None
        if prev is not None:
            tracer.phase = "optimizer"  # NOTE: [Phases] in ir/graph.py
        try:
            for group in self.param_groups:
                for p in group["params"]:
                    _zero_grad(p, set_to_none)
        finally:
            if prev is not None:
                tracer.phase = prev

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if step is None or getattr(step, "_notes_tracer", False):
            return

        @functools.wraps(step)
        def traced_step(self, *args, **kwargs):
            tracer = trace_state.current
            self._opt_called = True  # (lr_scheduler warns when it steps first)
            if tracer is None:
                return step(self, *args, **kwargs)
            tracer.note_python_state(self)  # nesterov, amsgrad, ... are guarded
            prev, tracer.phase = tracer.phase, "optimizer"  # NOTE: [Phases] in ir/graph.py
            try:
                return step(self, *args, **kwargs)
            finally:
                tracer.phase = prev
        traced_step._notes_tracer = True
        cls.step = traced_step

    def step(self, closure: Callable[[], Tensor] | None = None):
        raise NotImplementedError(f"{type(self).__name__} does not implement step()")

    def _closure_loss(self, closure):
        if closure is None:
            return None
        with enable_grad():
            return closure()

    # ---- checkpoints ------------------------------------------------------------
    def state_dict(self) -> dict:
        """{'state': {index: {...}}, 'param_groups': [{..., 'params': [index, ...]}]}.

        The state tensors are the optimizer's own (not copies), as in PyTorch.
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            ids = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            packed["params"] = ids
            groups.append(packed)
        state = {index[id(p)]: dict(s) for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyperparameters and state saved by ``state_dict`` (tensors are copied)."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        for mine, saved in zip(self.param_groups, groups, strict=True):
            if len(mine["params"]) != len(saved["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't "
                                 "match the size of optimizer's group")
        by_index = {}
        for mine, saved in zip(self.param_groups, groups, strict=True):
            for p, i in zip(mine["params"], saved["params"], strict=True):
                by_index[i] = p
        self.state = TrackedState()
        for i, s in state_dict["state"].items():
            if i not in by_index:
                continue
            p = by_index[i]
            self.state[p] = {k: self._restore(k, v, p) for k, v in s.items()}
        for mine, saved in zip(self.param_groups, groups, strict=True):
            for k, v in saved.items():
                if k != "params":
                    mine[k] = copy.deepcopy(v)

    @staticmethod
    def _restore(key: str | None, value, param: Tensor):
        """A copy of one saved state value; tensors inside dicts, lists and tuples (LBFGS's
        history) are copied too, as PyTorch's load_state_dict does."""
        if isinstance(value, dict):
            return {k: Optimizer._restore(k, v, param) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(Optimizer._restore(None, v, param) for v in value)
        if not isinstance(value, Tensor):
            return copy.deepcopy(value)
        value = value.detach().clone()
        # floating state follows the param's dtype; the step counter keeps its own
        if key != "step" and value.is_floating_point():
            value = value.to(param.dtype)
        return value

    def __repr__(self) -> str:
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k != "params"):
                lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)

    def __getstate__(self):
        return self.__dict__
