"""Adagrad, with PyTorch's learning-rate decay and initial accumulator value.

For each parameter p with gradient g (negated when ``maximize``), at step t:

    g = g + weight_decay * p
    sum = sum + g * g                 (sum starts at initial_accumulator_value)
    clr = lr / (1 + (t - 1) * lr_decay)
    p = p - clr * g / (sqrt(sum) + eps)

As in PyTorch the state is made when the optimizer is, not at the first step.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from .. import dtypes, functions as T
from ..autograd.grad_mode import no_grad
from ..tensor import Tensor
from .adam import _step_dtype
from .optimizer import Optimizer, _branch, _check_nonnegative, _hyper, _implementation_flags


class Adagrad(Optimizer):
    """Adagrad: ``Adagrad(model.parameters(), lr=1e-2, lr_decay=0.0)``."""

    def __init__(self, params: Iterable, lr: float = 1e-2, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10, foreach: bool | None = None, *, maximize: bool = False,
                 differentiable: bool = False, fused: bool | None = None):
        _check_nonnegative("learning rate", lr)
        _check_nonnegative("lr_decay value", lr_decay)
        _check_nonnegative("weight_decay value", weight_decay)
        _check_nonnegative("initial_accumulator_value value", initial_accumulator_value)
        _check_nonnegative("epsilon value", eps)
        flags = _implementation_flags(foreach, fused, False, differentiable)
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach,
                        maximize=maximize, differentiable=flags["differentiable"], fused=fused)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                state["step"] = T.zeros((), dtype=_step_dtype())
                state["sum"] = T.full_like(p, group["initial_accumulator_value"])

    @no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None):
        """Update every parameter that has a gradient; returns ``closure()`` if given."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr, lr_decay = _hyper(group, "lr"), _hyper(group, "lr_decay")
            eps = _hyper(group, "eps")
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = -p.grad if group["maximize"] else p.grad
                step = self.state[p]["step"]
                step.add_(1)
                if _branch(group, "weight_decay") != 0:
                    g = g + p * _hyper(group, "weight_decay")
                # in float64, as PyTorch computes clr from Python floats
                clr = lr / (1 + (step.to(dtypes.float64) - 1) * lr_decay)
                state_sum = self.state[p]["sum"]
                state_sum.add_(g * g)
                std = state_sum.sqrt().add_(eps)
                p.add_(g * -clr / std)
        return loss
