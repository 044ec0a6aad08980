"""Adam and AdamW.

For each parameter p with gradient g (negated when ``maximize``), at step t:

    g = g + weight_decay * p            (Adam: L2 penalty in the gradient)
    p = p * (1 - lr * weight_decay)     (AdamW: decoupled decay, instead)
    m = m + (1 - beta1) * (g - m)
    v = beta2 * v + (1 - beta2) * g * g
    v_max = max(v_max, v)               (amsgrad: normalise by v_max below)
    denom = sqrt(v) / sqrt(1 - beta2**t) + eps
    p = p - lr / (1 - beta1**t) * m / denom

The step count t is a 0-d tensor in the state, so a traced step reads it as data.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from .. import dtypes, functions as T
from ..autograd.grad_mode import no_grad
from ..tensor import Tensor
from . import _foreach
from .optimizer import Optimizer, _branch, _check_nonnegative, _hyper, _implementation_flags


def _lerp_(start: Tensor, end: Tensor, weight: float | Tensor) -> Tensor:
    """start += weight * (end - start), in place, rounded as PyTorch's lerp_ rounds it.

    A traced (0-d tensor) weight takes both forms and selects, so no branch depends on
    its value."""
    if isinstance(weight, Tensor):
        diff = end - start
        return start.copy_(T.where(weight.abs() < 0.5, start + diff * weight,
                                   end - diff * (1 - weight)))
    if abs(weight) < 0.5:
        return start.add_((end - start) * weight)
    return start.copy_(end - (end - start) * (1 - weight))


def _check_betas(betas) -> None:
    for i, beta in enumerate(betas):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {beta}")


def _step_dtype():
    # as PyTorch: the step counter is float64 only when that is the default dtype
    return dtypes.float64 if dtypes.get_default_dtype() is dtypes.float64 else dtypes.float32


_ADAM_NUMBERS = ("lr", "betas", "eps", "weight_decay")


class Adam(Optimizer):
    """Adam: ``Adam(model.parameters(), lr=1e-3)``; ``decoupled_weight_decay`` makes it AdamW."""

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None,
                 decoupled_weight_decay: bool = False):
        _check_nonnegative("learning rate", lr)
        _check_nonnegative("epsilon value", eps)
        _check_nonnegative("weight_decay value", weight_decay)
        _check_betas(betas)
        flags = _implementation_flags(foreach, fused, capturable, differentiable)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize, **flags,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, amsgrad: bool) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = T.zeros((), dtype=_step_dtype())
            state["exp_avg"] = T.zeros_like(p)
            state["exp_avg_sq"] = T.zeros_like(p)
            if amsgrad:
                state["max_exp_avg_sq"] = T.zeros_like(p)
        return state

    @no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None):
        """Update every parameter that has a gradient; returns ``closure()`` if given."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr, eps = _hyper(group, "lr"), _hyper(group, "eps")
            beta1, beta2 = _hyper(group, "betas", 0), _hyper(group, "betas", 1)
            amsgrad = group["amsgrad"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self._init_state(p, amsgrad)
                if self._kernel_step(p, state, group, amsgrad):
                    continue
                g = -p.grad if group["maximize"] else p.grad
                step = state["step"]
                step.add_(1)
                if _branch(group, "weight_decay") != 0:
                    weight_decay = _hyper(group, "weight_decay")
                    if group["decoupled_weight_decay"]:
                        p.mul_(1 - lr * weight_decay)
                    else:
                        g = g + p * weight_decay
                m, v = state["exp_avg"], state["exp_avg_sq"]
                _lerp_(m, g, 1 - beta1)
                v.mul_(beta2).add_(g * (1 - beta2) * g)
                # bias corrections in float64 (PyTorch computes them as Python floats)
                t = step.to(dtypes.float64)
                step_size = (lr / (1 - beta1 ** t)).to(p.dtype)
                bias_correction2_sqrt = T.sqrt(1 - beta2 ** t).to(p.dtype)
                if amsgrad:
                    v_max = state["max_exp_avg_sq"]
                    v_max.copy_(T.maximum(v_max, v))
                    v = v_max
                denom = (v.sqrt() / bias_correction2_sqrt).add_(eps)
                p.sub_(m * step_size / denom)
        return loss

    @staticmethod
    def _kernel_step(p: Tensor, state: dict, group: dict, amsgrad: bool) -> bool:
        """The update as NumPy kernels when eager (NOTE: [Eager optimizer kernels])."""
        if not _foreach.eager():  # (traced: read nothing here, the taped form reads it)
            return False
        m, v, step = state["exp_avg"], state["exp_avg_sq"], state["step"]
        v_max = state["max_exp_avg_sq"] if amsgrad else None
        written = (p, m, v, step) if v_max is None else (p, m, v, step, v_max)
        if not (_foreach.plain(written, (p.grad,)) and _foreach.alike(p, p.grad, m, v, v_max)
                and _foreach.numbers(group, _ADAM_NUMBERS) and _foreach.writable(written)):
            return False
        hyper = dict(group)  # (a plain copy: eager reads, nothing for a tracer to note)
        beta1, beta2 = hyper["betas"]
        _foreach.adam(p, p.grad, m, v, v_max, step, lr=hyper["lr"], beta1=beta1, beta2=beta2,
                      eps=hyper["eps"], weight_decay=hyper["weight_decay"],
                      decoupled=hyper["decoupled_weight_decay"], maximize=hyper["maximize"])
        return True


class AdamW(Adam):
    """Adam with decoupled weight decay (default 1e-2): p shrinks by lr * weight_decay
    each step instead of the decay entering the gradient."""

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         foreach=foreach, capturable=capturable,
                         differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)
