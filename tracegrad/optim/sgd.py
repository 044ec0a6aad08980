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
from . import _foreach
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
                if p.grad is None or self._kernel_step(p, group):
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

    def _kernel_step(self, p: Tensor, group: dict) -> bool:
        """The update as NumPy kernels when eager (NOTE: [Eager optimizer kernels])."""
        if not _foreach.eager():  # (traced: read nothing here, the taped form reads it)
            return False
        momentum = dict.__getitem__(group, "momentum")
        buf = self.state[p].get("momentum_buffer") if momentum != 0 else None
        if not (_foreach.plain((p, buf), (p.grad,)) and _foreach.alike(p, p.grad, buf)
                and _foreach.numbers(group, ("lr", "momentum", "dampening", "weight_decay"))
                and _foreach.writable((p,) if buf is None else (p, buf))):
            return False
        hyper = dict(group)
        new_buf = _foreach.sgd(p, p.grad, buf, lr=hyper["lr"], momentum=momentum,
                               dampening=hyper["dampening"], weight_decay=hyper["weight_decay"],
                               nesterov=hyper["nesterov"], maximize=hyper["maximize"])
        if new_buf is not None:
            self.state[p]["momentum_buffer"] = Tensor._make(new_buf)
        return True
