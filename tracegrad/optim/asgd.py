"""ASGD: SGD with a decaying step size and a running average of the iterates
(Polyak and Juditsky, 1992).

For each parameter p with gradient g (negated when ``maximize``), at step t, with eta
and mu from the previous step (eta starts at lr, mu at 1):

    g = g + weight_decay * p
    p = p * (1 - lambd * eta) - eta * g
    ax = ax + mu * (p - ax)      (ax = p while mu == 1)
    eta = lr / (1 + lambd * lr * t)**alpha
    mu = 1 / max(1, t - t0)

``step``, ``eta`` and ``mu`` are 0-d tensors in the state; the averaging's case is
selected on mu's value, so a traced step needs no branch.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from .. import dtypes, functions as T
from ..autograd.grad_mode import no_grad
from ..tensor import Tensor
from .adam import _step_dtype
from .optimizer import Optimizer, _branch, _check_nonnegative, _hyper, _implementation_flags


class ASGD(Optimizer):
    """Averaged SGD: ``ASGD(model.parameters(), lr=1e-2, t0=1e6)``; ``state[p]['ax']``
    holds the averaged parameters.

    >>> import tracegrad as tg
    >>> w = tg.tensor([1.0], requires_grad=True)
    >>> opt = tg.optim.ASGD([w], lr=0.1, lambd=0.0)
    >>> (w * w).sum().backward(); opt.step()
    >>> w, opt.state[w]["ax"]
    (tensor([0.8000], requires_grad=True), tensor([0.8000]))
    """

    def __init__(self, params: Iterable, lr: float = 1e-2, lambd: float = 1e-4,
                 alpha: float = 0.75, t0: float = 1e6, weight_decay: float = 0.0,
                 foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False, capturable: bool = False):
        _check_nonnegative("learning rate", lr)
        _check_nonnegative("weight_decay value", weight_decay)
        flags = _implementation_flags(foreach, None, capturable, differentiable)
        defaults = dict(lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=weight_decay,
                        foreach=foreach, maximize=maximize,
                        differentiable=flags["differentiable"], capturable=capturable)
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, group: dict) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = T.zeros((), dtype=_step_dtype())
            state["eta"] = T.as_tensor(group["lr"], dtype=_step_dtype()).detach() \
                .reshape(()).clone()
            state["mu"] = T.ones((), dtype=_step_dtype())
            state["ax"] = T.zeros_like(p)
        return state

    @no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None):
        """Update every parameter that has a gradient; returns ``closure()`` if given."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr, lambd = _hyper(group, "lr"), _hyper(group, "lambd")
            alpha, t0 = _hyper(group, "alpha"), _hyper(group, "t0")
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = -p.grad if group["maximize"] else p.grad
                state = self._init_state(p, group)
                step, eta, mu, ax = state["step"], state["eta"], state["mu"], state["ax"]
                step.add_(1)
                if _branch(group, "weight_decay") != 0:
                    g = g + p * _hyper(group, "weight_decay")
                # eta enters as a float64 number (PyTorch reads it with .item())
                eta_value = eta.to(dtypes.float64)
                p.mul_(1 - lambd * eta_value)
                p.add_(g * -eta_value)
                ax.copy_(T.where(mu != 1, ax + (p - ax) * mu, p))
                # PyTorch makes the new values with torch.as_tensor: rounded to the default
                # dtype, whatever the state's dtype (float64 after loading into float64 params)
                t, default = step.to(dtypes.float64), dtypes.get_default_dtype()
                eta.copy_((lr / (1 + lambd * lr * t) ** alpha).to(default))
                mu.copy_((1 / T.maximum(t - t0, T.ones_like(t))).to(default))
        return loss
