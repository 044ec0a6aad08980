"""Adamax: Adam with the infinity norm in place of the second moment.

For each parameter p with gradient g (negated when ``maximize``), at step t:

    g = g + weight_decay * p
    m = m + (1 - beta1) * (g - m)
    u = max(beta2 * u, |g| + eps)                    (exp_inf)
    p = p - lr / (1 - beta1**t) * m / u
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from .. import dtypes, functions as T
from ..autograd.grad_mode import no_grad
from ..tensor import Tensor
from .adam import _check_betas, _lerp_, _step_dtype
from .optimizer import Optimizer, _branch, _check_nonnegative, _hyper, _implementation_flags


class Adamax(Optimizer):
    """Adamax: ``Adamax(model.parameters(), lr=2e-3, betas=(0.9, 0.999))``.

    >>> import tracegrad as tg
    >>> w = tg.tensor([1.0, -1.0], requires_grad=True)
    >>> opt = tg.optim.Adamax([w], lr=0.1)
    >>> (w * w).sum().backward(); opt.step()
    >>> w
    tensor([ 0.9000, -0.9000], requires_grad=True)
    """

    def __init__(self, params: Iterable, lr: float = 2e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, foreach: bool | None = None, *,
                 maximize: bool = False, differentiable: bool = False,
                 capturable: bool = False):
        _check_nonnegative("learning rate", lr)
        _check_nonnegative("epsilon value", eps)
        _check_betas(betas)
        _check_nonnegative("weight_decay value", weight_decay)
        flags = _implementation_flags(foreach, None, capturable, differentiable)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        foreach=foreach, maximize=maximize,
                        differentiable=flags["differentiable"], capturable=capturable)
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = T.zeros((), dtype=_step_dtype())
            state["exp_avg"] = T.zeros_like(p)
            state["exp_inf"] = T.zeros_like(p)
        return state

    @no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None):
        """Update every parameter that has a gradient; returns ``closure()`` if given."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr, eps = _hyper(group, "lr"), _hyper(group, "eps")
            beta1, beta2 = _hyper(group, "betas", 0), _hyper(group, "betas", 1)
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = -p.grad if group["maximize"] else p.grad
                state = self._init_state(p)
                step = state["step"]
                step.add_(1)
                if _branch(group, "weight_decay") != 0:
                    g = g + p * _hyper(group, "weight_decay")
                m, exp_inf = state["exp_avg"], state["exp_inf"]
                _lerp_(m, g, 1 - beta1)
                exp_inf.copy_(T.maximum(exp_inf.mul_(beta2), g.abs() + eps))
                # the bias correction in float64, as PyTorch computes it from Python floats
                clr = lr / (1 - beta1 ** step.to(dtypes.float64))
                p.add_(m * -clr / exp_inf)
        return loss
