"""NAdam: Adam with Nesterov momentum and a momentum schedule (Dozat, 2016).

For each parameter p with gradient g (negated when ``maximize``), at step t:

    g = g + weight_decay * p            (L2 penalty in the gradient)
    p = p * (1 - lr * weight_decay)     (decoupled_weight_decay, instead)
    mu_t = beta1 * (1 - 0.5 * 0.96**(t * momentum_decay))
    mu_product = mu_product * mu_t      (the product of all mu so far, in the state)
    m = m + (1 - beta1) * (g - m)
    v = beta2 * v + (1 - beta2) * g * g
    denom = sqrt(v / (1 - beta2**t)) + eps
    p = p - lr * (1 - mu_t) / (1 - mu_product) * g / denom
          - lr * mu_{t+1} / (1 - mu_product * mu_{t+1}) * m / denom

``step`` and ``mu_product`` are 0-d tensors of PyTorch's scalar dtype (float32 unless
float64 is the default), so a traced step reads them as data.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from .. import dtypes, functions as T
from ..autograd.grad_mode import no_grad
from ..tensor import Tensor
from .adam import _check_betas, _lerp_, _step_dtype
from .optimizer import Optimizer, _branch, _check_nonnegative, _hyper, _implementation_flags


class NAdam(Optimizer):
    """NAdam: ``NAdam(model.parameters(), lr=2e-3, momentum_decay=4e-3)``.

    >>> import tracegrad as tg
    >>> w = tg.tensor([1.0], requires_grad=True)
    >>> opt = tg.optim.NAdam([w], lr=0.1)
    >>> (w * w).sum().backward(); opt.step()
    >>> list(opt.state[w])
    ['step', 'mu_product', 'exp_avg', 'exp_avg_sq']
    """

    def __init__(self, params: Iterable, lr: float = 2e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False, *, foreach: bool | None = None,
                 maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False):
        _check_nonnegative("learning rate", lr)
        _check_nonnegative("epsilon value", eps)
        _check_betas(betas)
        _check_nonnegative("weight_decay value", weight_decay)
        _check_nonnegative("momentum_decay value", momentum_decay)
        flags = _implementation_flags(foreach, None, capturable, differentiable)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        momentum_decay=momentum_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize,
                        foreach=foreach, capturable=capturable,
                        differentiable=flags["differentiable"])
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = T.zeros((), dtype=_step_dtype())
            state["mu_product"] = T.ones((), dtype=_step_dtype())
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
            momentum_decay = _hyper(group, "momentum_decay")
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = -p.grad if group["maximize"] else p.grad
                state = self._init_state(p)
                state["step"].add_(1)
                # the scalar schedule in float64, as PyTorch computes it from Python floats
                t = state["step"].to(dtypes.float64)
                bias_correction2 = 1 - beta2 ** t
                if _branch(group, "weight_decay") != 0:
                    weight_decay = _hyper(group, "weight_decay")
                    if group["decoupled_weight_decay"]:
                        p.mul_(1 - lr * weight_decay)
                    else:
                        g = g + p * weight_decay
                mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay))
                mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
                mu_product = state["mu_product"]
                # mu is rounded to the state's dtype first, as PyTorch rounds a Python float
                mu_product.mul_(mu.to(mu_product.dtype))
                m, v = state["exp_avg"], state["exp_avg_sq"]
                _lerp_(m, g, 1 - beta1)
                v.mul_(beta2).add_(g * (1 - beta2) * g)
                denom = (v / bias_correction2).sqrt().add_(eps)
                product = mu_product.to(dtypes.float64)
                product_next = product * mu_next
                p.add_(g * (-lr * (1.0 - mu) / (1.0 - product)) / denom)
                p.add_(m * (-lr * mu_next / (1.0 - product_next)) / denom)
        return loss
