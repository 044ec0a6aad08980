"""Stochastic gradient descent, with momentum, dampening, Nesterov and weight decay.

For each parameter p with gradient g (negated when ``maximize``):

    g = g + weight_decay * p
    buf = g                                   (first step)
    buf = momentum * buf + (1 - dampening) * g   (later steps)
    g = g + momentum * buf  if nesterov else buf
    p = p - lr * g
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from ..autograd.grad_mode import no_grad
from ..tensor import Tensor
from .optimizer import Optimizer, _branch, _check_nonnegative, _hyper, _implementation_flags


class SGD(Optimizer):
    """SGD: ``SGD(model.parameters(), lr=0.1, momentum=0.9)``."""

    def __init__(self, params: Iterable, lr: float = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False,
                 *, maximize: bool = False, foreach: bool | None = None,
                 differentiable: bool = False, fused: bool | None = None):
        _check_nonnegative("learning rate", lr)
        _check_nonnegative("momentum value", momentum)
        _check_nonnegative("weight_decay value", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        flags = _implementation_flags(foreach, fused, False, differentiable)
        del flags["capturable"]  # (SGD has no such argument in PyTorch)
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize,
                        **flags)
        super().__init__(params, defaults)

    @no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None):
        """Update every parameter that has a gradient; returns ``closure()`` if given."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr = _hyper(group, "lr")
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = -p.grad if group["maximize"] else p.grad
                if _branch(group, "weight_decay") != 0:
                    g = g + p * _hyper(group, "weight_decay")
                if _branch(group, "momentum") != 0:
                    momentum = _hyper(group, "momentum")
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = g.detach().clone()
                        state["momentum_buffer"] = buf
                    else:
                        buf.mul_(momentum).add_(g * (1 - _hyper(group, "dampening")))
                    g = g + buf * momentum if group["nesterov"] else buf
                p.add_(g * -lr)
        return loss
