"""Eager optimizer kernels (NOTE: [Eager optimizer kernels]): bit-identical to the taped
form of step(), used only where they may be, and the traced step still records ops."""
import numpy as np
import pytest
from test_optim import OPTIMIZER_CASES

import tracegrad as tg
from tracegrad.optim import _foreach

# the optimizers with kernels, as tests/test_optim.py runs them, and Adam's lerp with a
# small beta1 (its other branch)
CASES = [c for c in OPTIMIZER_CASES if c[0] in ("SGD", "Adam", "AdamW")] + [
    ("Adam", {"lr": 0.05, "betas": (0.3, 0.99), "eps": 1e-6}),
]
IDS = [f"{n}-{'-'.join(k)}" for n, k in CASES]


def _run(name, kwargs, dtype, kernels, steps=4):
    """A few steps on a small model; returns params, state arrays, versions, kernel calls."""
    old = _foreach.USE_KERNELS
    _foreach.USE_KERNELS = kernels
    try:
        rng = np.random.default_rng(0)
        dt = getattr(tg, dtype)
        lin = tg.nn.Linear(4, 3).to(dt)
        with tg.no_grad():
            lin.weight.copy_(tg.tensor(rng.standard_normal((3, 4))))
            lin.bias.copy_(tg.tensor(rng.standard_normal(3)))
        x = tg.tensor(rng.standard_normal((8, 4)), dtype=dt)
        y = tg.tensor(rng.standard_normal((8, 3)), dtype=dt)
        scale = tg.nn.Parameter(tg.tensor(1.5, dtype=dt))  # a 0-d parameter too
        ps = [*lin.parameters(), scale]
        opt = getattr(tg.optim, name)(ps, **kwargs)
        for _ in range(steps):
            opt.zero_grad()
            ((lin(x) * scale - y) ** 2).mean().backward()
            opt.step()
        params = [p.detach().numpy().copy() for p in ps]
        state = [{k: v.numpy().copy() for k, v in opt.state[p].items()} for p in ps]
        versions = [p._version for p in ps] + \
            [v._version for p in ps for v in opt.state[p].values()]
        return params, state, versions
    finally:
        _foreach.USE_KERNELS = old


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name, kwargs", CASES, ids=IDS)
def test_kernels_are_bit_identical_to_the_taped_step(name, kwargs, dtype):
    fast = _run(name, kwargs, dtype, kernels=True)
    taped = _run(name, kwargs, dtype, kernels=False)
    for a, b in zip(fast[0], taped[0], strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    for sa, sb in zip(fast[1], taped[1], strict=True):
        assert sa.keys() == sb.keys()
        for k in sa:
            assert sa[k].dtype == sb[k].dtype and np.array_equal(sa[k], sb[k]), k
    assert fast[2] == taped[2]  # the same version counts as the taped in-place ops


def _counting(monkeypatch):
    calls = []
    for fn in ("adam", "sgd"):
        real = getattr(_foreach, fn)
        monkeypatch.setattr(_foreach, fn, lambda *a, _r=real, _n=fn, **k:
                            calls.append(_n) or _r(*a, **k))
    return calls


def test_eager_step_uses_the_kernels(monkeypatch):
    calls = _counting(monkeypatch)
    lin = tg.nn.Linear(3, 2)
    opt = tg.optim.AdamW(lin.parameters())
    lin(tg.ones(4, 3)).sum().backward()
    opt.step()
    assert calls == ["adam", "adam"]


@pytest.mark.parametrize("make, view", [
    (lambda w: tg.optim.Adam([w], lr=tg.tensor(0.1)), False),  # a Tensor lr
    (lambda w: tg.optim.SGD([w], lr=0.1, momentum=0.9), True),  # a parameter that is a view
])
def test_taped_form_where_kernels_do_not_apply(monkeypatch, make, view):
    calls = _counting(monkeypatch)
    w = tg.zeros(2, 3)[0] if view else tg.zeros(3)
    w.requires_grad_(True)
    opt = make(w)
    (w * tg.tensor([1.0, 2.0, 3.0])).sum().backward()
    opt.step()
    assert calls == []
    assert not np.array_equal(w.detach().numpy(), np.zeros(3))


def test_kernel_step_bumps_versions_so_saved_tensor_checks_fire():
    w = tg.ones(3, requires_grad=True)
    opt = tg.optim.SGD([w], lr=0.1)
    (w * w).sum().backward()
    loss = (w * w).sum()  # saves w
    opt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_compiled_adam_step_still_matches_eager(monkeypatch):
    def build():
        tg.manual_seed(0)
        lin = tg.nn.Linear(4, 2)
        opt = tg.optim.Adam(lin.parameters(), lr=0.1, weight_decay=0.01)

        def step(x):
            opt.zero_grad()
            loss = lin(x).pow(2).mean()
            loss.backward()
            opt.step()
            return loss
        return lin, opt, step

    x = tg.ones(5, 4)
    lin_e, opt_e, step_e = build()
    lin_c, opt_c, step_c = build()
    step_c = tg.compile(step_c)
    for _ in range(4):
        le, lc = step_e(x).item(), step_c(x).item()
        assert abs(le - lc) <= 1e-6 * max(1.0, abs(le))
    for pe, pc in zip(lin_e.parameters(), lin_c.parameters(), strict=True):
        np.testing.assert_allclose(pe.detach().numpy(), pc.detach().numpy(), rtol=1e-5,
                                   atol=1e-6)
        for k in ("exp_avg", "exp_avg_sq", "step"):
            np.testing.assert_allclose(opt_e.state[pe][k].numpy(), opt_c.state[pc][k].numpy(),
                                       rtol=1e-5, atol=1e-7)
