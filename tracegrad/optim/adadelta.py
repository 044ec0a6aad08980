"""Adadelta: steps sized by the ratio of two running RMS values, no lr schedule needed.

For each parameter p with gradient g (negated when ``maximize``):

    g = g + weight_decay * p
    s = rho * s + (1 - rho) * g * g                 (square_avg)
    delta = sqrt(u + eps) / sqrt(s + eps) * g       (u: acc_delta)
    u = rho * u + (1 - rho) * delta * delta
    p = p - lr * delta
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from .. import functions as T
from ..autograd.grad_mode import no_grad
from ..tensor import Tensor
from .adam import _step_dtype
from .optimizer import Optimizer, _branch, _check_nonnegative, _hyper, _implementation_flags


class Adadelta(Optimizer):
    """Adadelta: ``Adadelta(model.parameters(), lr=1.0, rho=0.9)``.

    >>> import tracegrad as tg
    >>> w = tg.tensor([1.0], requires_grad=True)
    >>> opt = tg.optim.Adadelta([w], lr=1.0)
    >>> (w * w).sum().backward(); opt.step()
    >>> sorted(opt.state[w])
    ['acc_delta', 'square_avg', 'step']
    """

    def __init__(self, params: Iterable, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0.0, foreach: bool | None = None, *,
                 capturable: bool = False, maximize: bool = False,
                 differentiable: bool = False):
        _check_nonnegative("learning rate", lr)
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        _check_nonnegative("epsilon value", eps)
        _check_nonnegative("weight_decay value", weight_decay)
        flags = _implementation_flags(foreach, None, capturable, differentiable)
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize,
                        capturable=capturable, foreach=foreach,
                        differentiable=flags["differentiable"])
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = T.zeros((), dtype=_step_dtype())
            state["square_avg"] = T.zeros_like(p)
            state["acc_delta"] = T.zeros_like(p)
        return state

    @no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None):
        """Update every parameter that has a gradient; returns ``closure()`` if given."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr, rho, eps = _hyper(group, "lr"), _hyper(group, "rho"), _hyper(group, "eps")
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self._init_state(p)
                state["step"].add_(1)
                g = -p.grad if group["maximize"] else p.grad
                if _branch(group, "weight_decay") != 0:
                    g = g + p * _hyper(group, "weight_decay")
                square_avg, acc_delta = state["square_avg"], state["acc_delta"]
                square_avg.mul_(rho).add_(g * (1 - rho) * g)
                std = (square_avg + eps).sqrt()
                delta = (acc_delta + eps).sqrt() / std * g
                acc_delta.mul_(rho).add_(delta * (1 - rho) * delta)
                p.add_(delta * -lr)
        return loss
