"""Module: the base class of every layer, and of the models built from layers.

A Module keeps three ordered tables, filled by plain attribute assignment:
``_parameters`` (Parameters), ``_buffers`` (non-learned tensors such as running
statistics, added with ``register_buffer``) and ``_modules`` (child modules).
Everything else (``parameters()``, ``state_dict()``, ``to()``, ``repr``) walks
those tables.

>>> import tracegrad as tg
>>> class Net(Module):
...     def __init__(self):
...         super().__init__()
...         self.fc = tg.nn.Linear(3, 2)
...     def forward(self, x):
...         return self.fc(x).relu()
>>> [name for name, _ in Net().named_parameters()]
['fc.weight', 'fc.bias']
"""
from __future__ import annotations

import collections
import itertools
import warnings
from collections.abc import Callable, Iterator, Mapping

from .. import dtypes
from .._epochs import counting
from ..autograd.function import Function
from ..autograd.grad_mode import is_grad_enabled, no_grad
from ..autograd.graph import RemovableHandle, _HookDict
from ..tensor import Tensor, trace_state
from .parameter import Parameter

# NOTE: [Module epoch]. Counts every change to any module's structure: registrations,
# attribute assignments, deletions, hooks added or removed, train()/eval(), load_state_dict.
# A compiled call's guard on the module trees it used (runtime/guards.ModulesGuard) is one
# comparison with this while nothing changed.
EPOCH = [0]


class _ModuleHookDict(_HookDict):
    """A module's hook table: adding or removing a hook moves the module epoch."""

    __slots__ = ()
    locals().update(counting(_HookDict, EPOCH, ("__setitem__", "pop", "__delitem__", "clear")))



class _ModuleTable(dict):
    """A module's ``_parameters``/``_buffers``/``_modules``: a direct write
    (``m._buffers["x"] = t``) moves the module epoch too."""

    __slots__ = ()
    locals().update(counting(dict, EPOCH, ("__setitem__", "__delitem__", "pop", "update")))


class _IncompatibleKeys(collections.namedtuple("IncompatibleKeys",
                                               ["missing_keys", "unexpected_keys"])):
    """What ``load_state_dict`` returns; prints as PyTorch's does."""

    __slots__ = ()

    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


def _indent(text: str, spaces: int) -> str:
    """Indent every line but the first (a child's repr sits after '(name): ')."""
    lines = text.split("\n")
    return "\n".join(lines[:1] + [" " * spaces + line for line in lines[1:]])


class Module:
    """Base class of layers and models; subclasses define ``forward``.

    Assigning a Parameter, a Module or (for names registered with
    ``register_buffer``) a Tensor to an attribute registers it.
    """

    training: bool
    _version = 1

    def __init__(self, *args, **kwargs):
        if args or kwargs:
            raise TypeError(f"{type(self).__name__}.__init__() got unexpected arguments; "
                            "Module.__init__ takes none")
        set_ = object.__setattr__
        set_(self, "training", True)
        set_(self, "_parameters", _ModuleTable())
        set_(self, "_buffers", _ModuleTable())
        set_(self, "_non_persistent_buffers", set())
        set_(self, "_modules", _ModuleTable())
        set_(self, "_forward_hooks", _ModuleHookDict())
        set_(self, "_forward_pre_hooks", _ModuleHookDict())
        EPOCH[0] += 1

    # ---- calling ------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required '
                                  '"forward" function')

    def __call__(self, *args, **kwargs):
        tracer = trace_state.current
        if tracer is not None:
            return self._traced_call(tracer, args, kwargs)
        d = self.__dict__
        if not (self._forward_pre_hooks or self._forward_hooks or d.get("_backward_hooks")
                or d.get("_backward_pre_hooks")):
            return self.forward(*args, **kwargs)
        return self._call_with_hooks(args, kwargs)

    def _traced_call(self, tracer, args, kwargs):
        tracer.note_python_state(self)  # its Python attributes (training, ...) are guarded
        tracer.enter_module(self)  # the equations recorded inside carry its path
        try:  # (with no hooks, _call_with_hooks is forward: tracing is not the hot path)
            return self._call_with_hooks(args, kwargs)
        finally:
            tracer.exit_module()

    def register_forward_pre_hook(self, hook: Callable, *, prepend: bool = False,
                                  with_kwargs: bool = False) -> RemovableHandle:
        """``hook(module, args)`` runs before forward; a non-None return replaces args.

        With ``with_kwargs`` it is ``hook(module, args, kwargs)`` and returns None or a
        new ``(args, kwargs)``; ``prepend`` runs it before the hooks already there.
        """
        h = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[h.id] = hook
        if with_kwargs:
            self._hook_flags("_forward_pre_hooks_with_kwargs")[h.id] = True
        if prepend:
            _move_first(self._forward_pre_hooks, h.id)
        return h

    def register_forward_hook(self, hook: Callable, *, prepend: bool = False,
                              with_kwargs: bool = False,
                              always_call: bool = False) -> RemovableHandle:
        """``hook(module, args, output)`` runs after forward; a non-None return replaces output.

        With ``with_kwargs`` it is ``hook(module, args, kwargs, output)``; with
        ``always_call`` it also runs when forward raises; ``prepend`` runs it first.
        """
        h = RemovableHandle(self._forward_hooks)
        self._forward_hooks[h.id] = hook
        if with_kwargs:
            self._hook_flags("_forward_hooks_with_kwargs")[h.id] = True
        if always_call:
            self._hook_flags("_forward_hooks_always_called")[h.id] = True
        if prepend:
            _move_first(self._forward_hooks, h.id)
        return h

    # ---- registration -------------------------------------------------------
    def _check_ready(self, what: str) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {what} before Module.__init__() call")

    def _check_name(self, name, kind: str) -> None:
        # PyTorch's checks and messages, in its order (add_module tests the name clash first)
        if not isinstance(name, str):
            raise TypeError(f"{kind} name should be a string. Got {_type_name(name)}")
        own = {"parameter": self._parameters, "buffer": self._buffers,
               "module": self._modules}[kind]
        taken = hasattr(self, name) and name not in own
        if taken and kind == "module":
            raise KeyError(f"attribute '{name}' already exists")
        if "." in name:
            raise KeyError(f'module name can\'t contain ".", got: {name}' if kind == "module"
                           else f'{kind} name can\'t contain "."')
        if name == "":
            raise KeyError(f'{kind} name can\'t be empty string ""')
        if taken:
            raise KeyError(f"attribute '{name}' already exists")

    def _owns(self, name: str) -> bool:
        return name in self._parameters or name in self._buffers or name in self._modules

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add ``param`` (a Parameter, or None for an absent one) under ``name``."""
        self._check_ready("parameters")
        self._check_name(name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{_type_name(param)}' object to parameter '{name}' "
                            "(torch.nn.Parameter or None required)")
        if param is not None and param.grad_fn is not None:
            raise ValueError(f"Cannot assign non-leaf Tensor to parameter '{name}'. Model "
                             "parameters must be created explicitly: wrap the tensor in "
                             "nn.Parameter(t.detach())")
        self._parameters[name] = param
        EPOCH[0] += 1

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Add a non-learned tensor; persistent buffers are part of ``state_dict``."""
        self._check_ready("buffers")
        self._check_name(name, "buffer")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{_type_name(tensor)}' object to buffer '{name}' "
                            "(torch Tensor or None required)")
        self._buffers[name] = tensor
        EPOCH[0] += 1
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Add a child module under ``name``."""
        self._check_ready("child modules")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{_type_name(module)} is not a Module subclass")
        self._check_name(name, "module")
        self._modules[name] = module
        EPOCH[0] += 1

    register_module = add_module

    def __setattr__(self, name: str, value) -> None:
        EPOCH[0] += 1
        d = self.__dict__
        params, buffers, modules = d.get("_parameters"), d.get("_buffers"), d.get("_modules")
        if isinstance(value, Parameter):
            self._check_ready("parameters")
            self._forget(name, keep=self._parameters)  # a replacement keeps its position
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{_type_name(value)}' as parameter '{name}' "
                                "(torch.nn.Parameter or None expected)")
            params[name] = None
        elif isinstance(value, Module):
            self._check_ready("module")
            self._forget(name, keep=modules)
            modules[name] = value
        elif modules is not None and name in modules:
            if value is not None:
                raise TypeError(f"cannot assign '{_type_name(value)}' as child module '{name}' "
                                "(torch.nn.Module or None expected)")
            modules[name] = None
        elif buffers is not None and name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{_type_name(value)}' as buffer '{name}' "
                                "(torch.Tensor or None expected)")
            buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name: str, keep: dict | None = None) -> None:
        self.__dict__.pop(name, None)
        for table in (self._parameters, self._buffers, self._modules):
            if table is not keep:
                table.pop(name, None)
        self._non_persistent_buffers.discard(name)

    def __getattr__(self, name: str):
        # only called when normal lookup fails: look in the three tables
        d = self.__dict__
        for table in ("_parameters", "_buffers", "_modules"):
            t = d.get(table)
            if t is not None and name in t:
                return t[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        EPOCH[0] += 1
        if self._owns(name):
            self._forget(name)
        else:
            object.__delattr__(self, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers)
                      | set(self._modules))

    def get_submodule(self, target: str) -> Module:
        """The module at dotted path ``target`` ('' is self)."""
        mod = self
        for part in target.split(".") if target else ():
            if not hasattr(mod, part):
                raise AttributeError(f"{mod._get_name()} has no attribute `{part}`")
            mod = getattr(mod, part)
            if not isinstance(mod, Module):
                raise AttributeError(f"`{part}` is not an nn.Module")
        return mod

    def get_parameter(self, target: str) -> Parameter:
        """The parameter at dotted path ``target`` ('fc.weight')."""
        owner, _, name = target.rpartition(".")
        mod = self.get_submodule(owner)
        if not hasattr(mod, name):
            raise AttributeError(f"{mod._get_name()} has no attribute `{name}`")
        param = getattr(mod, name)
        if not isinstance(param, Parameter):
            raise AttributeError(f"`{name}` is not an nn.Parameter")
        return param

    # ---- walking ------------------------------------------------------------
    def named_modules(self, memo: set | None = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Module]]:
        """(dotted name, module) for self and every descendant, depth first."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if self in memo:
                return
            memo.add(self)
        yield prefix, self
        for name, child in self._modules.items():
            if child is None:
                continue
            yield from child.named_modules(memo, f"{prefix}.{name}" if prefix else name,
                                           remove_duplicate)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen = set()
        for name, child in self._modules.items():
            if child is not None and child not in seen:
                seen.add(child)
                yield name, child

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def _named_members(self, table: str, prefix: str, recurse: bool, remove_duplicate: bool):
        mods = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) \
            if recurse else [(prefix, self)]
        seen = set()
        for mod_prefix, mod in mods:
            for name, value in getattr(mod, table).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), value

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter) pairs; a parameter shared by two modules appears once."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Tensor]]:
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # ---- modes and gradients ------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode (Dropout drops) on self and all descendants."""
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        EPOCH[0] += 1
        return self

    def eval(self) -> Module:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter's ``.grad`` (to None by default, else to zeros)."""
        for p in self.parameters():
            _zero_grad(p, set_to_none)

    def apply(self, fn: Callable[[Module], None]) -> Module:
        """Call ``fn`` on every descendant, children first, then on self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ---- dtype and device -----------------------------------------------------
    def _apply_to_tensors(self, convert: Callable[[Tensor], Tensor]) -> Module:
        """Replace each parameter's and buffer's data with ``convert(data)``, keeping the
        Parameter objects (optimizers hold them)."""
        with no_grad():
            for m in self.modules():
                for p in m._parameters.values():
                    if p is None:
                        continue
                    p.data = convert(p.data)
                    if p._grad is not None:
                        p._grad = convert(p._grad)
                for name, b in m._buffers.items():
                    if b is not None:
                        m._buffers[name] = convert(b)
        EPOCH[0] += 1
        return self

    def to(self, *args, **kwargs) -> Module:
        """to(dtype) / to(device) / to(device, dtype) / to(tensor): convert floating
        parameters and buffers in place."""
        dtype = kwargs.pop("dtype", None)
        device = kwargs.pop("device", None)
        kwargs.pop("non_blocking", None)
        if kwargs:
            raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
        for a in args:
            if isinstance(a, Tensor):
                dtype = a.dtype
            elif isinstance(a, dtypes.DType):
                dtype = a
            else:
                device = a
        from ..functions import _check_device
        _check_device(device)
        if dtype is None:
            return self
        dtype = dtypes.as_dtype(dtype)
        if not dtype.is_floating_point:
            raise TypeError(f"nn.Module.to only accepts floating point or complex dtypes, but "
                            f"got desired dtype={dtype}")
        return self._apply_to_tensors(lambda t: t.to(dtype) if t.is_floating_point() else t)

    def float(self) -> Module:
        return self.to(dtypes.float32)

    def double(self) -> Module:
        return self.to(dtypes.float64)

    def half(self) -> Module:
        return self.to(dtypes.float16)

    def bfloat16(self) -> Module:
        return self.to(dtypes.bfloat16)

    def cpu(self) -> Module:
        return self

    def cuda(self, device=None) -> Module:
        return self.to("cuda")

    def type(self, dst_type) -> Module:
        """Cast every parameter and buffer (integer ones too) to ``dst_type``."""
        dst_type = dtypes.as_dtype(dst_type)
        return self._apply_to_tensors(lambda t: t.to(dst_type))

    # ---- state_dict -----------------------------------------------------------
    def state_dict(self, *, destination: dict | None = None, prefix: str = "",
                   keep_vars: bool = False) -> collections.OrderedDict[str, Tensor]:
        """Parameters and persistent buffers by dotted name; the tensors share memory
        with the module's (detached unless ``keep_vars``)."""
        if destination is None:
            destination = collections.OrderedDict()
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers:
                destination[prefix + name] = b if keep_vars else b.detach()
        for name, child in self._modules.items():
            if child is not None:
                child.state_dict(destination=destination, prefix=f"{prefix}{name}.",
                                 keep_vars=keep_vars)
        return destination

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Copy tensors from ``state_dict`` into this module's parameters and buffers.

        With ``strict`` (the default) missing or unexpected keys are an error; a shape
        mismatch always is. Returns ``(missing_keys, unexpected_keys)``.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict)}.")
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = self._unexpected_keys(state_dict)
        errors = []
        if strict:
            if missing:
                errors.append("Missing key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in missing) + ". ")
            if unexpected:
                errors.append("Unexpected key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in unexpected) + ". ")
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            if not isinstance(value, Tensor):
                errors.append(f'While copying the parameter named "{key}", expected torch.Tensor '
                              f"or Tensor-like object from checkpoint but received "
                              f"{type(value)}")
            elif value.shape != target.shape:
                errors.append(f"size mismatch for {key}: copying a param with shape {value.shape} "
                              f"from checkpoint, the shape in current model is {target.shape}.")
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                               + "\n\t".join(errors))
        with no_grad():
            for key, target in own.items():
                if key in state_dict:
                    self._load_one(key, target, state_dict[key], assign)
        return _IncompatibleKeys(missing, unexpected)

    def _load_one(self, key: str, target: Tensor, value: Tensor, assign: bool) -> None:
        if not assign:
            target.copy_(value)
            return
        owner, _, name = key.rpartition(".")
        mod = self.get_submodule(owner)
        if name in mod._parameters:
            mod._parameters[name] = Parameter(value.detach(), target.requires_grad)
        else:
            mod._buffers[name] = value
        EPOCH[0] += 1

    # ---- printing -------------------------------------------------------------
    def extra_repr(self) -> str:
        """The text inside this module's parentheses (its settings); '' by default."""
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): {_indent(repr(m), 2)}" for name, m in self._modules.items()]
        return _layout(self._get_name(), extra_lines, child_lines)

    # ==== nn extras (issue 11): hooks with kwargs / always_call, full backward hooks,
    # set_submodule, get_buffer, load_state_dict's unexpected keys. Hook flags live in
    # tables made on first use (the names PyTorch uses), so modules that never register
    # such a hook carry nothing extra.
    def _hook_flags(self, name: str) -> dict:
        table = self.__dict__.get(name)
        if table is None:
            table = _ModuleHookDict()  # (its changes move the module epoch)
            object.__setattr__(self, name, table)
            EPOCH[0] += 1
        return table

    def _call_with_hooks(self, args: tuple, kwargs: dict):
        d = self.__dict__
        pre_kw = d.get("_forward_pre_hooks_with_kwargs", ())
        post_kw = d.get("_forward_hooks_with_kwargs", ())
        always = d.get("_forward_hooks_always_called", ())
        called = set()
        result = None
        try:
            for hook_id, hook in tuple(self._forward_pre_hooks.items()):
                if hook_id in pre_kw:
                    out = hook(self, args, kwargs)
                    if out is not None:
                        if not (isinstance(out, tuple) and len(out) == 2):
                            raise RuntimeError("forward pre-hook must return None or a tuple of "
                                               f"(new_args, new_kwargs), but got {out}.")
                        args, kwargs = out
                else:
                    out = hook(self, args)
                    if out is not None:
                        args = out if isinstance(out, tuple) else (out,)
            bw = None
            if d.get("_backward_hooks") or d.get("_backward_pre_hooks"):
                bw = _BackwardHook(self)
                args = bw.setup_input_hook(args)
            result = self.forward(*args, **kwargs)
            for hook_id, hook in tuple(self._forward_hooks.items()):
                if hook_id in always:
                    called.add(hook_id)
                out = hook(self, args, kwargs, result) if hook_id in post_kw \
                    else hook(self, args, result)
                if out is not None:
                    result = out
            if bw is not None:
                result = bw.setup_output_hook(result)
            return result
        except Exception:
            for hook_id, hook in tuple(self._forward_hooks.items()):
                if hook_id not in always or hook_id in called:
                    continue
                try:
                    out = hook(self, args, kwargs, result) if hook_id in post_kw \
                        else hook(self, args, result)
                    if out is not None:
                        result = out
                except Exception as e:
                    warnings.warn("module forward hook with ``always_call=True`` raised an "
                                  "exception that was silenced as another error was raised in "
                                  f"forward: {e}", stacklevel=2)
            raise

    def register_full_backward_pre_hook(self, hook: Callable,
                                        prepend: bool = False) -> RemovableHandle:
        """``hook(module, grad_output)`` runs when the gradients of the module's outputs are
        known; a non-None return replaces grad_output."""
        table = self._hook_flags("_backward_pre_hooks")
        h = RemovableHandle(table)
        table[h.id] = hook
        if prepend:
            _move_first(table, h.id)
        return h

    def register_full_backward_hook(self, hook: Callable,
                                    prepend: bool = False) -> RemovableHandle:
        """``hook(module, grad_input, grad_output)`` runs when the gradients with respect to
        the module's inputs are computed; a non-None return replaces grad_input.

        >>> import tracegrad as tg
        >>> lin = tg.nn.Linear(2, 1)
        >>> seen = []
        >>> _ = lin.register_full_backward_hook(lambda m, gi, go: seen.append(go[0].shape))
        >>> lin(tg.ones(3, 2, requires_grad=True)).sum().backward()
        >>> seen
        [torch.Size([3, 1])]
        """
        table = self._hook_flags("_backward_hooks")
        h = RemovableHandle(table)
        table[h.id] = hook
        if prepend:
            _move_first(table, h.id)
        return h

    def _unexpected_keys(self, state_dict, prefix: str = "") -> list[str]:
        """The keys no module claims, in PyTorch's order: module by module (pre-order),
        each in the state_dict's order."""
        local = {n for n, p in self._parameters.items() if p is not None}
        local |= {n for n, b in self._buffers.items()
                  if b is not None and n not in self._non_persistent_buffers}
        found = []
        for key in state_dict:
            if not key.startswith(prefix):
                continue
            head, dot, _ = key[len(prefix):].partition(".")
            if (head not in self._modules) if dot else (head not in local):
                found.append(key)
        for name, child in self._modules.items():
            if child is not None:
                found += child._unexpected_keys(state_dict, f"{prefix}{name}.")
        return found

    def set_submodule(self, target: str, module: Module, strict: bool = False) -> None:
        """Put ``module`` at dotted path ``target``; with ``strict`` the name must exist."""
        if target == "":
            raise ValueError("Cannot set the submodule without a target name!")
        if not isinstance(module, Module):
            raise ValueError(f"`module` is not an nn.Module, found {type(module)}")
        owner, _, name = target.rpartition(".")
        parent = self.get_submodule(owner)
        if strict and not hasattr(parent, name):
            raise AttributeError(f"{parent._get_name()} has no attribute `{name}`")
        if hasattr(parent, name) and not isinstance(getattr(parent, name), Module):
            raise AttributeError(f"`{name}` is not an nn.Module")
        setattr(parent, name, module)

    def get_buffer(self, target: str) -> Tensor:
        """The buffer at dotted path ``target`` ('bn.running_mean')."""
        owner, _, name = target.rpartition(".")
        mod = self.get_submodule(owner)
        if not hasattr(mod, name):
            raise AttributeError(f"{mod._get_name()} has no attribute `{name}`")
        buffer = getattr(mod, name)
        if name not in mod._buffers:
            raise AttributeError(f"`{name}` is not a buffer")
        return buffer


def _move_first(table: dict, key) -> None:
    """Make ``key`` the first entry of ``table`` (a hook registered with prepend=True)."""
    items = list(table.items())
    table.clear()
    table[key] = dict(items)[key]
    table.update((k, v) for k, v in items if k != key)


class BackwardHookFunction(Function):
    """Identity on the module's input (or output) tensors; its backward hands their
    gradients to ``callback``, which may replace them. PyTorch's node of the same name."""

    @staticmethod
    def forward(ctx, callback, materialize, *tensors):
        ctx.callback = callback
        # as PyTorch: an unused output's gradient is None, an input's is zeros
        ctx.set_materialize_grads(materialize)
        ctx.mark_non_differentiable(*[t for t in tensors if not t.requires_grad])
        return tensors

    @staticmethod
    def backward(ctx, *grads):
        return (None, None, *ctx.callback(grads))


class _BackwardHook:
    """One forward call's full backward hooks (PyTorch's torch.utils.hooks.BackwardHook):
    the outputs' gradients are caught first, then the inputs' ones are handed to the
    hooks together with them."""

    def __init__(self, module: Module):
        self.module = module
        d = module.__dict__
        self.hooks = tuple(d.get("_backward_hooks", {}).values())
        self.pre_hooks = tuple(d.get("_backward_pre_hooks", {}).values())
        self.grad_outputs = None
        self.input_index = self.output_index = None
        self.n_inputs = self.n_outputs = 0

    @staticmethod
    def _wrap(values: tuple, callback, materialize: bool):
        index = [i for i, v in enumerate(values) if isinstance(v, Tensor)]
        if not any(values[i].requires_grad for i in index) or not is_grad_enabled():
            return values, None
        new = BackwardHookFunction.apply(callback, materialize, *(values[i] for i in index))
        out = list(values)
        for i, t in zip(index, new, strict=True):
            out[i] = t
        return tuple(out), index

    @staticmethod
    def _pack(index, grads, n: int) -> tuple:
        out = [None] * n
        for i, g in zip(index, grads, strict=True):
            out[i] = g
        return tuple(out)

    def setup_input_hook(self, args: tuple) -> tuple:
        self.n_inputs = len(args)
        args, self.input_index = self._wrap(args, self._on_input_grads, True)
        return args

    def setup_output_hook(self, result):
        single = isinstance(result, Tensor)
        if not single and not isinstance(result, tuple):
            warnings.warn("For backward hooks to be called, module output should be a Tensor "
                          f"or a tuple of Tensors but received {type(result)}", stacklevel=3)
            return result
        values = (result,) if single else result
        self.n_outputs = len(values)
        values, self.output_index = self._wrap(values, self._on_output_grads, False)
        return values[0] if single else values

    def _on_output_grads(self, grads):
        grad_outputs = self._pack(self.output_index, grads, self.n_outputs)
        for hook in self.pre_hooks:
            out = hook(self.module, grad_outputs)
            if out is not None:
                out = out if isinstance(out, tuple) else (out,)
                if len(out) != len(grad_outputs):
                    raise RuntimeError("Backward pre hook returned an invalid number of "
                                       f"grad_output, got {len(out)}, but expected "
                                       f"{len(grad_outputs)}")
                grad_outputs = out
        self.grad_outputs = grad_outputs
        if self.input_index is None and self.hooks:  # no input needs a gradient: run them now
            warnings.warn("Full backward hook is firing when gradients are computed with respect "
                          "to module outputs since no inputs require gradients. See "
                          "https://docs.pytorch.org/docs/main/generated/torch.nn.Module.html"
                          "#torch.nn.Module.register_full_backward_hook for more details.",
                          stacklevel=2)
            grad_inputs = (None,) * self.n_inputs
            for hook in self.hooks:
                out = hook(self.module, grad_inputs, grad_outputs)
                if out is not None and not (isinstance(out, tuple)
                                            and all(g is None for g in out)):
                    raise RuntimeError("Backward hook for Modules where no input requires "
                                       "gradient should always return None or None for all "
                                       "gradients.")
            self.grad_outputs = None
        return tuple(grad_outputs[i] for i in self.output_index)

    def _on_input_grads(self, grads):
        grad_inputs = self._pack(self.input_index, grads, self.n_inputs)
        for hook in self.hooks:
            out = hook(self.module, grad_inputs, self.grad_outputs)
            if out is not None:
                out = out if isinstance(out, tuple) else (out,)
                if len(out) != len(grad_inputs):
                    raise RuntimeError("Backward hook returned an invalid number of grad_input, "
                                       f"got {len(out)}, but expected {len(grad_inputs)}")
                grad_inputs = out
        self.grad_outputs = None
        return tuple(grad_inputs[i] for i in self.input_index)


def _layout(name: str, extra_lines: list[str], child_lines: list[str]) -> str:
    lines = extra_lines + child_lines
    if not lines:
        return name + "()"
    if len(extra_lines) == 1 and not child_lines:
        return f"{name}({extra_lines[0]})"
    return name + "(\n  " + "\n  ".join(lines) + "\n)"


def _type_name(value) -> str:
    if isinstance(value, Tensor):
        return value.type()
    return type(value).__module__ + "." + type(value).__qualname__ \
        if type(value).__module__ != "builtins" else type(value).__name__


def _zero_grad(p: Tensor, set_to_none: bool) -> None:
    # through the .grad property, so a tracing compiler sees the slot change
    g = p.grad
    if g is None:
        return
    if set_to_none:
        p.grad = None
        return
    if g.grad_fn is not None:
        g = g.detach()
        p.grad = g
    else:
        g.requires_grad_(False)
    g.zero_()


# group consecutive equal reprs, as ModuleList prints them: "(0-2): 3 x Linear(...)"
def _grouped_child_lines(modules: dict) -> list[str]:
    items = [(name, repr(m)) for name, m in modules.items()]
    lines = []
    for text, group in itertools.groupby(items, key=lambda kv: kv[1]):
        names = [n for n, _ in group]
        if len(names) == 1:
            lines.append(f"({names[0]}): {_indent(text, 2)}")
        else:
            lines.append(f"({names[0]}-{names[-1]}): {len(names)} x {_indent(text, 2)}")
    return lines
