"""RAdam: Adam whose adaptive step is switched on once the variance of its second
moment is tractable (Liu et al., 2019).

For each parameter p with gradient g (negated when ``maximize``), at step t:

    g = g + weight_decay * p            (L2 penalty in the gradient)
    p = p * (1 - lr * weight_decay)     (decoupled_weight_decay, instead)
    m = m + (1 - beta1) * (g - m)
    v = beta2 * v + (1 - beta2) * g * g
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * t * beta2**t / (1 - beta2**t)
    r = sqrt((rho_t - 4) (rho_t - 2) rho_inf / ((rho_inf - 4) (rho_inf - 2) rho_t))
    p = p - lr * m / (1 - beta1**t) * sqrt(1 - beta2**t) / (sqrt(v) + eps) * r   (rho_t > 5)
    p = p - lr * m / (1 - beta1**t)                                               (otherwise)

Which of the two runs depends on the step count, which is data (a 0-d tensor in the
state): both are computed and one is selected, so a traced step needs no branch.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from .. import dtypes, functions as T
from ..autograd.grad_mode import no_grad
from ..tensor import Tensor
from .adam import _check_betas, _lerp_, _step_dtype
from .optimizer import Optimizer, _branch, _check_nonnegative, _hyper, _implementation_flags


class RAdam(Optimizer):
    """RAdam: ``RAdam(model.parameters(), lr=1e-3, betas=(0.9, 0.999))``.

    >>> import tracegrad as tg
    >>> w = tg.tensor([1.0], requires_grad=True)
    >>> opt = tg.optim.RAdam([w], lr=0.1)
    >>> (w * w).sum().backward(); opt.step()
    >>> w  # the first steps are plain momentum steps
    tensor([0.8000], requires_grad=True)
    """

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled_weight_decay: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False,
                 capturable: bool = False, differentiable: bool = False):
        _check_nonnegative("learning rate", lr)
        _check_nonnegative("epsilon value", eps)
        _check_betas(betas)
        _check_nonnegative("weight_decay value", weight_decay)
        flags = _implementation_flags(foreach, None, capturable, differentiable)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        maximize=maximize, foreach=foreach, capturable=capturable,
                        decoupled_weight_decay=decoupled_weight_decay,
                        differentiable=flags["differentiable"])
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = T.zeros((), dtype=_step_dtype())
            state["exp_avg"] = T.zeros_like(p)
            state["exp_avg_sq"] = T.zeros_like(p)
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
                state["step"].add_(1)
                if _branch(group, "weight_decay") != 0:
                    weight_decay = _hyper(group, "weight_decay")
                    if group["decoupled_weight_decay"]:
                        p.mul_(1 - lr * weight_decay)
                    else:
                        g = g + p * weight_decay
                m, v = state["exp_avg"], state["exp_avg_sq"]
                _lerp_(m, g, 1 - beta1)
                v.mul_(beta2).add_(g * (1 - beta2) * g)
                # scalars in float64, as PyTorch computes them from Python floats
                t = state["step"].to(dtypes.float64)
                bias_correction1 = 1 - beta1 ** t
                bias_correction2 = 1 - beta2 ** t
                momentum_step = m / bias_correction1 * lr
                rho_inf = 2 / (1 - beta2) - 1
                rho_t = rho_inf - 2 * t * beta2 ** t / bias_correction2
                rectify = rho_t > 5.0
                # (rho_t > 5 implies rho_inf > 5: the ratio is positive where it is used)
                ratio = T.where(rectify, (rho_t - 4) * (rho_t - 2) * rho_inf, 1.0) / \
                    T.where(rectify, (rho_inf - 4) * (rho_inf - 2) * rho_t, 1.0)
                adaptive_lr = bias_correction2 ** 0.5 / v.sqrt().add_(eps)
                rectified = momentum_step * adaptive_lr * ratio ** 0.5
                p.sub_(T.where(rectify, rectified, momentum_step))
        return loss
