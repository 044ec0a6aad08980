"""Weight normalization (``torch.nn.utils.weight_norm``): weight = g * v / ||v||.

The weight parameter is replaced by two, ``<name>_g`` (the norms) and ``<name>_v``
(the direction), and a forward pre-hook recomputes the weight from them before every
call, so gradients reach g and v. PyTorch's old-style API, not the parametrizations one.
"""
from __future__ import annotations

import warnings

from ... import functions as T, primitives as P
from ...tensor import Tensor, apply
from ..module import Module
from ..parameter import Parameter

__all__ = ["WeightNorm", "weight_norm", "remove_weight_norm"]


def norm_except_dim(v: Tensor, pow: float = 2, dim: int = 0) -> Tensor:
    """The norm of ``v`` over every dim but ``dim``, kept as size-1 dims (``dim=-1``: the
    norm of the whole tensor, as PyTorch)."""
    if dim == -1:
        return T.norm(v, pow)
    dim = dim % v.ndim
    return T.norm(v, pow, dim=[d for d in range(v.ndim) if d != dim], keepdim=True)


class WeightNorm:
    """The forward pre-hook that recomputes ``module.<name>`` from g and v."""

    def __init__(self, name: str, dim: int | None) -> None:
        self.name = name
        self.dim = -1 if dim is None else dim

    def compute_weight(self, module: Module) -> Tensor:
        g = getattr(module, self.name + "_g")
        v = getattr(module, self.name + "_v")
        scale = g / norm_except_dim(v, 2, self.dim)
        # PyTorch's fused kernel (and its grad_fn name) serves the first and last dims
        fused = self.dim == 0 or self.dim == v.ndim - 1
        return apply(P.mul_p, T._coerce(v, scale),
                     name="WeightNormInterfaceBackward0" if fused else None)

    @staticmethod
    def apply(module: Module, name: str, dim: int | None) -> WeightNorm:
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, WeightNorm) and hook.name == name:
                raise RuntimeError(f"Cannot register two weight_norm hooks on the same "
                                   f"parameter {name}")
        fn = WeightNorm(name, dim)
        weight = getattr(module, name)
        del module._parameters[name]
        module.register_parameter(name + "_g", Parameter(norm_except_dim(weight, 2, fn.dim).data))
        module.register_parameter(name + "_v", Parameter(weight.data))
        setattr(module, name, fn.compute_weight(module))
        module.register_forward_pre_hook(fn)
        return fn

    def remove(self, module: Module) -> None:
        weight = self.compute_weight(module)
        delattr(module, self.name)
        del module._parameters[self.name + "_g"]
        del module._parameters[self.name + "_v"]
        setattr(module, self.name, Parameter(weight.data))

    def __call__(self, module: Module, inputs) -> None:
        setattr(module, self.name, self.compute_weight(module))


def weight_norm(module: Module, name: str = "weight", dim: int | None = 0) -> Module:
    """Reparametrize ``module.<name>`` as g * v / ||v|| (norms over all dims but ``dim``).

    >>> import tracegrad as tg
    >>> import warnings; warnings.simplefilter("ignore", FutureWarning)
    >>> lin = weight_norm(tg.nn.Linear(3, 2))
    >>> sorted(lin.state_dict())
    ['bias', 'weight_g', 'weight_v']
    """
    warnings.warn("`torch.nn.utils.weight_norm` is deprecated in favor of "
                  "`torch.nn.utils.parametrizations.weight_norm`.", FutureWarning, stacklevel=2)
    WeightNorm.apply(module, name, dim)
    return module


def remove_weight_norm(module: Module, name: str = "weight") -> Module:
    """Undo :func:`weight_norm`: ``module.<name>`` is a plain Parameter again."""
    for k, hook in module._forward_pre_hooks.items():
        if isinstance(hook, WeightNorm) and hook.name == name:
            hook.remove(module)
            del module._forward_pre_hooks[k]
            return module
    raise ValueError(f"weight_norm of '{name}' not found in {module}")
