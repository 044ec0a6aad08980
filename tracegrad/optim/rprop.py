"""Rprop: resilient backpropagation, a per-element step size driven by gradient signs.

For each parameter p with gradient g (negated when ``maximize``), elementwise:

    s = sign(g * g_prev)
    step_size = clamp(step_size * (etaplus if s > 0, etaminus if s < 0, 1 if s == 0),
                      step_size_min, step_size_max)
    g = 0 where s < 0         (after a sign change, skip this step and forget g)
    p = p - sign(g) * step_size;  g_prev = g

step_size starts at lr, so lr is read only at the first step.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from .. import functions as T
from ..autograd.grad_mode import no_grad
from ..tensor import Tensor
from .adam import _step_dtype
from .optimizer import Optimizer, _check_nonnegative, _hyper, _implementation_flags


class Rprop(Optimizer):
    """Rprop: ``Rprop(model.parameters(), lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50))``.

    >>> import tracegrad as tg
    >>> w = tg.tensor([1.0, -1.0], requires_grad=True)
    >>> opt = tg.optim.Rprop([w], lr=0.1)
    >>> (w * w).sum().backward(); opt.step()
    >>> w
    tensor([ 0.9000, -0.9000], requires_grad=True)
    """

    def __init__(self, params: Iterable, lr: float = 1e-2,
                 etas: tuple[float, float] = (0.5, 1.2),
                 step_sizes: tuple[float, float] = (1e-6, 50), *, capturable: bool = False,
                 foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False):
        _check_nonnegative("learning rate", lr)
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise ValueError(f"Invalid eta values: {etas[0]}, {etas[1]}")
        flags = _implementation_flags(foreach, None, capturable, differentiable)
        defaults = dict(lr=lr, etas=etas, step_sizes=step_sizes, foreach=foreach,
                        maximize=maximize, differentiable=flags["differentiable"],
                        capturable=capturable)
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, group: dict) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = T.zeros((), dtype=_step_dtype())
            state["prev"] = T.zeros_like(p)
            lr = group["lr"]
            lr = lr.item() if isinstance(lr, Tensor) else lr
            state["step_size"] = T.full_like(p, lr)
        return state

    @no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None):
        """Update every parameter that has a gradient; returns ``closure()`` if given."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            etaminus, etaplus = _hyper(group, "etas", 0), _hyper(group, "etas", 1)
            step_size_min = _hyper(group, "step_sizes", 0)
            step_size_max = _hyper(group, "step_sizes", 1)
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = -p.grad if group["maximize"] else p.grad
                state = self._init_state(p, group)
                state["step"].add_(1)
                prev, step_size = state["prev"], state["step_size"]
                sign = (g * prev).sign()
                flipped = sign < 0
                factor = T.where(sign > 0, _like(etaplus, g),
                                 T.where(flipped, _like(etaminus, g), _like(1.0, g)))
                step_size.mul_(factor).clamp_(_like(step_size_min, g), _like(step_size_max, g))
                g = T.where(flipped, T.zeros_like(g), g)
                p.sub_(g.sign() * step_size)
                prev.copy_(g)
        return loss


def _like(value, ref: Tensor) -> Tensor:
    """``value`` (a Python float, or a traced 0-d hyperparameter) as a 0-d tensor of
    ``ref``'s dtype: PyTorch writes the etas into the gradient's dtype."""
    if isinstance(value, Tensor):
        return value.to(ref.dtype)
    return T.tensor(value, dtype=ref.dtype)
