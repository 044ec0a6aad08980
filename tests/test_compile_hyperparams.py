"""Compiled training steps with learning-rate schedulers: float hyperparameters in
param_groups are inputs (NOTE: [Dynamic hyperparameters]), so a new lr is not a
recompile; what the optimizer branches on (a zero momentum, nesterov) still is."""
import copy
import warnings

import numpy as np
import pytest

import tracegrad as tg

S = tg.optim.lr_scheduler


def _np(t):
    return t.detach().numpy()


def _pair(make_opt, make_sched):
    """Two identical models, optimizers and schedulers: one compiled step, one eager."""
    tg.manual_seed(1)
    model_c = tg.nn.Sequential(tg.nn.Linear(8, 16), tg.nn.ReLU(), tg.nn.Linear(16, 3))
    model_e = copy.deepcopy(model_c)
    opt_c, opt_e = make_opt(model_c.parameters()), make_opt(model_e.parameters())
    sched_c, sched_e = make_sched(opt_c), make_sched(opt_e)

    def make_step(model, opt):
        def train_step(x, y):
            opt.zero_grad()
            loss = tg.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss
        return train_step

    return ((tg.compile(make_step(model_c, opt_c)), model_c, opt_c, sched_c),
            (make_step(model_e, opt_e), model_e, opt_e, sched_e))


CASES = [
    ("SGD-StepLR", lambda p: tg.optim.SGD(p, lr=0.1, momentum=0.9),
     lambda o: S.StepLR(o, step_size=4, gamma=0.5)),
    ("SGD-nesterov-CosineAnnealingLR",
     lambda p: tg.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
     lambda o: S.CosineAnnealingLR(o, T_max=10)),
    ("SGD-OneCycleLR", lambda p: tg.optim.SGD(p, lr=0.1),
     lambda o: S.OneCycleLR(o, max_lr=0.2, total_steps=30)),
    ("Adam-OneCycleLR", lambda p: tg.optim.Adam(p, lr=1e-2),
     lambda o: S.OneCycleLR(o, max_lr=0.05, total_steps=30)),
    ("AdamW-amsgrad-CosineAnnealingLR", lambda p: tg.optim.AdamW(p, lr=1e-2, amsgrad=True),
     lambda o: S.CosineAnnealingLR(o, T_max=30, eta_min=1e-4)),
    ("RMSprop-centered-StepLR",
     lambda p: tg.optim.RMSprop(p, lr=1e-3, momentum=0.5, centered=True),
     lambda o: S.StepLR(o, step_size=5, gamma=0.7)),
    ("Adagrad-OneCycleLR", lambda p: tg.optim.Adagrad(p, lr=0.05, lr_decay=0.01),
     lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=30, cycle_momentum=False)),
    ("SGD-CyclicLR-triangular2", lambda p: tg.optim.SGD(p, lr=0.1, momentum=0.9),
     lambda o: S.CyclicLR(o, 0.01, 0.2, step_size_up=4, step_size_down=6, mode="triangular2")),
    ("Adam-CyclicLR-exp_range", lambda p: tg.optim.Adam(p, lr=1e-2),
     lambda o: S.CyclicLR(o, 1e-3, 0.05, step_size_up=5, mode="exp_range", gamma=0.95)),
]


@pytest.mark.parametrize("make_opt, make_sched", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_compiled_step_with_scheduler_equals_eager_without_recompiling(make_opt, make_sched):
    (step_c, model_c, opt_c, sched_c), (step_e, model_e, opt_e, sched_e) = \
        _pair(make_opt, make_sched)
    x, y = tg.randn(32, 8), tg.randint(0, 3, (32,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback-to-eager warning, no graph break
        for i in range(30):
            lc, le = step_c(x, y), step_e(x, y)
            sched_c.step()
            sched_e.step()
            if i == 1:
                misses = step_c.cache_info().misses  # after the optimizer made its state
            np.testing.assert_allclose(lc.item(), le.item(), rtol=1e-4, atol=1e-6)
            assert sched_c.get_last_lr() == sched_e.get_last_lr()
            assert opt_c.param_groups[0]["lr"] == opt_e.param_groups[0]["lr"]
            for pc, pe in zip(model_c.parameters(), model_e.parameters(), strict=True):
                np.testing.assert_allclose(_np(pc), _np(pe), rtol=1e-4, atol=1e-5)
    info = step_c.cache_info()
    assert info.misses == misses and info.entries == 1 and info.hits == 28, \
        step_c.recompile_reasons


def test_lr_is_a_scalar_input_of_the_program():
    (step_c, _, opt, sched), _ = _pair(lambda p: tg.optim.Adam(p, lr=0.0123),
                                       lambda o: S.ExponentialLR(o, 0.9))
    x, y = tg.randn(4, 8), tg.randint(0, 3, (4,))
    for _ in range(3):
        step_c(x, y)
        sched.step()
    report = step_c.explain(x, y)
    header = report.source.splitlines()[0]
    for name in ("lr", "betas_0", "betas_1", "eps"):
        # def train_step(x, y, ..., opt_param_groups_0_lr, ..._eps, ..._betas_0, ...)
        assert f"param_groups_0_{name}" in header
    assert "weight_decay" not in header  # 0: the step does not use it (guarded == 0.0)
    assert "0.0123" not in report.source and "0.9" not in report.source
    assert any("['lr'] is a float (dynamic input)" in g for g in report.guards)
    assert any("['weight_decay'] == 0.0," in g for g in report.guards)
    assert any("['amsgrad'] == False" in g for g in report.guards)


def test_flipping_what_the_optimizer_branches_on_retraces():
    (step_c, model_c, opt_c, _), (step_e, model_e, opt_e, _) = _pair(
        lambda p: tg.optim.SGD(p, lr=0.1), lambda o: S.ConstantLR(o, factor=1.0))
    x, y = tg.randn(8, 8), tg.randint(0, 3, (8,))

    def run(n):
        for _ in range(n):
            step_c(x, y)
            step_e(x, y)
        for pc, pe in zip(model_c.parameters(), model_e.parameters(), strict=True):
            np.testing.assert_allclose(_np(pc), _np(pe), rtol=1e-5, atol=1e-6)

    def set_group(**kw):
        for opt in (opt_c, opt_e):
            opt.param_groups[0].update(kw)

    run(3)
    set_group(momentum=0.9)  # 0 -> 0.9: the step now keeps a momentum buffer
    run(3)
    assert "['momentum']: 0.0 -> 0.9" in step_c.recompile_reasons[-2]
    n = len(step_c.recompile_reasons)
    set_group(momentum=0.5, lr=0.0, dampening=0.1)  # no branch changes: no retrace
    run(3)
    assert len(step_c.recompile_reasons) == n
    set_group(nesterov=True, dampening=0.0)  # a bool: guarded by value
    run(3)
    assert "['nesterov']: False -> True" in step_c.recompile_reasons[-1]
    set_group(weight_decay=1e-2)
    run(3)
    assert "['weight_decay']: 0.0 -> 0.01" in step_c.recompile_reasons[-1]
    set_group(momentum=0.0, nesterov=False)  # a dynamic value crossing zero
    run(3)
    assert "['momentum']: 0.5 -> 0.0 (a dynamic hyperparameter: the optimizer branches " \
           "on its sign)" in step_c.recompile_reasons[-1]


def test_amsgrad_flip_retraces_and_matches_eager():
    (step_c, model_c, opt_c, _), (step_e, model_e, opt_e, _) = _pair(
        lambda p: tg.optim.Adam(p, lr=1e-2), lambda o: S.ConstantLR(o, factor=1.0))
    x, y = tg.randn(8, 8), tg.randint(0, 3, (8,))
    for i in range(6):
        if i == 3:
            for opt in (opt_c, opt_e):
                opt.param_groups[0]["amsgrad"] = True
                for p in opt.param_groups[0]["params"]:  # (amsgrad's buffer, as torch needs)
                    opt.state[p]["max_exp_avg_sq"] = tg.zeros_like(p)
        step_c(x, y)
        step_e(x, y)
    assert any("['amsgrad']: False -> True" in r for r in step_c.recompile_reasons)
    for pc, pe in zip(model_c.parameters(), model_e.parameters(), strict=True):
        np.testing.assert_allclose(_np(pc), _np(pe), rtol=1e-5, atol=1e-6)


def test_custom_optimizer_reading_lr_directly_is_still_guarded():
    """A user's Optimizer that bakes group['lr'] in as a Python float keeps the value guard."""
    class PlainSGD(tg.optim.Optimizer):
        def __init__(self, params, lr):
            super().__init__(params, {"lr": lr})

        @tg.no_grad()
        def step(self):
            for group in self.param_groups:
                for p in group["params"]:
                    p.add_(p.grad, alpha=-group["lr"])

    w = tg.ones(3, requires_grad=True)
    opt = PlainSGD([w], lr=0.25)

    @tg.compile
    def step():
        opt.zero_grad()
        (w * w).sum().backward()
        opt.step()

    for _ in range(3):
        step()  # w: 1 -> 0.5 -> 0.25 -> 0.125
    opt.param_groups[0]["lr"] = 0.5
    step()  # w -= 0.5 * 2w
    assert w.tolist() == [0.0, 0.0, 0.0]
    assert any("['lr']: 0.25 -> 0.5 (a Python value the trace baked in)" in r
               for r in step.recompile_reasons)


def test_scheduler_step_inside_a_compiled_function_is_a_graph_break():
    (_, model, opt, sched), _ = _pair(lambda p: tg.optim.SGD(p, lr=0.1),
                                     lambda o: S.StepLR(o, step_size=1, gamma=0.5))

    @tg.compile
    def step(x, y):
        opt.zero_grad()
        tg.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        sched.step()

    x, y = tg.randn(4, 8), tg.randint(0, 3, (4,))
    with pytest.warns(UserWarning, match="graph break .*StepLR.step\\(\\)"):
        step(x, y)
    for _ in range(3):
        step(x, y)  # eager calls: the scheduler really steps
    assert sched.last_epoch == 4 and opt.param_groups[0]["lr"] == 0.1 * 0.5 ** 4


def test_numpy_float_lr_is_dynamic_too():
    """A NumPy float64 lr (a schedule computed with NumPy) is read each call as well."""
    w, we = tg.ones(3, requires_grad=True), tg.ones(3, requires_grad=True)
    opt, opt_e = tg.optim.SGD([w], lr=np.float64(0.1)), tg.optim.SGD([we], lr=np.float64(0.1))

    def make(w, opt):
        def step():
            opt.zero_grad()
            (w * w).sum().backward()
            opt.step()
        return step

    step_c, step_e = tg.compile(make(w, opt)), make(we, opt_e)
    for _ in range(6):
        step_c()
        step_e()
        for o in (opt, opt_e):
            o.param_groups[0]["lr"] = o.param_groups[0]["lr"] * np.float64(0.5)
    assert w.tolist() == we.tolist() and w.tolist()[0] < 0.7
    assert step_c.cache_info().misses == 2
