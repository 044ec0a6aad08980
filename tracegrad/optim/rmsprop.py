"""RMSprop, with PyTorch's centered and momentum variants.

For each parameter p with gradient g (negated when ``maximize``):

    g = g + weight_decay * p
    s = alpha * s + (1 - alpha) * g * g
    a = a + (1 - alpha) * (g - a)                (centered: a running mean of g)
    avg = sqrt(s - a * a) + eps  if centered else  sqrt(s) + eps
    buf = momentum * buf + g / avg; p = p - lr * buf    (momentum > 0)
    p = p - lr * g / avg                                (otherwise)
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from .. import functions as T
from ..autograd.grad_mode import no_grad
from ..tensor import Tensor
from .adam import _lerp_, _step_dtype
from .optimizer import Optimizer, _branch, _check_nonnegative, _hyper, _implementation_flags


class RMSprop(Optimizer):
    """RMSprop: ``RMSprop(model.parameters(), lr=1e-2, alpha=0.99, momentum=0.9)``."""

    def __init__(self, params: Iterable, lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum: float = 0.0,
                 centered: bool = False, capturable: bool = False,
                 foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False):
        _check_nonnegative("learning rate", lr)
        _check_nonnegative("epsilon value", eps)
        _check_nonnegative("momentum value", momentum)
        _check_nonnegative("weight_decay value", weight_decay)
        _check_nonnegative("alpha value", alpha)
        flags = _implementation_flags(foreach, None, capturable, differentiable)
        # PyTorch's key order, so state_dict()s print alike
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, capturable=capturable, foreach=foreach,
                        maximize=maximize, differentiable=flags["differentiable"])
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, group: dict) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = T.zeros((), dtype=_step_dtype())
            state["square_avg"] = T.zeros_like(p)
            if _branch(group, "momentum") > 0:
                state["momentum_buffer"] = T.zeros_like(p)
            if group["centered"]:
                state["grad_avg"] = T.zeros_like(p)
        return state

    @no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None):
        """Update every parameter that has a gradient; returns ``closure()`` if given."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr, alpha, eps = _hyper(group, "lr"), _hyper(group, "alpha"), _hyper(group, "eps")
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = -p.grad if group["maximize"] else p.grad
                state = self._init_state(p, group)
                state["step"].add_(1)
                if _branch(group, "weight_decay") != 0:
                    g = g + p * _hyper(group, "weight_decay")
                square_avg = state["square_avg"]
                square_avg.mul_(alpha).add_(g * (1 - alpha) * g)
                if group["centered"]:
                    grad_avg = _lerp_(state["grad_avg"], g, 1 - alpha)
                    avg = (square_avg - grad_avg * grad_avg).sqrt()
                else:
                    avg = square_avg.sqrt()
                avg = avg.add_(eps)
                if _branch(group, "momentum") > 0:
                    buf = state["momentum_buffer"]
                    buf.mul_(_hyper(group, "momentum")).add_(g / avg)
                    p.add_(buf * -lr)
                else:
                    p.add_(g * -lr / avg)
        return loss
