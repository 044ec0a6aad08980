"""tracegrad.optim.lr_scheduler: lr values step by step vs torch, pinned values, warnings,
checkpoints; and optimizers + schedulers training a small model vs torch."""
import copy
import math
import warnings

import numpy as np
import pytest

import tracegrad as tg

# name -> make(lib, optimizer); every scheduler of the API, some in more than one setting
SCHEDULERS = {
    "StepLR": lambda lib, o: lib.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5),
    "MultiStepLR": lambda lib, o: lib.optim.lr_scheduler.MultiStepLR(o, [2, 5, 5, 9], 0.3),
    "ExponentialLR": lambda lib, o: lib.optim.lr_scheduler.ExponentialLR(o, gamma=0.9),
    "CosineAnnealingLR": lambda lib, o: lib.optim.lr_scheduler.CosineAnnealingLR(o, T_max=7),
    "CosineAnnealingLR-eta_min": lambda lib, o: lib.optim.lr_scheduler.CosineAnnealingLR(
        o, T_max=10, eta_min=1e-3),
    "LambdaLR": lambda lib, o: lib.optim.lr_scheduler.LambdaLR(
        o, [lambda e: 0.95 ** e, lambda e: 1 / (e + 1)]),
    "MultiplicativeLR": lambda lib, o: lib.optim.lr_scheduler.MultiplicativeLR(
        o, lambda e: 0.9 if e % 2 else 1.0),
    "LinearLR": lambda lib, o: lib.optim.lr_scheduler.LinearLR(o, 0.25, 1.0, total_iters=6),
    "ConstantLR": lambda lib, o: lib.optim.lr_scheduler.ConstantLR(o, 0.5, total_iters=4),
    "PolynomialLR": lambda lib, o: lib.optim.lr_scheduler.PolynomialLR(o, 10, power=2.0),
    "OneCycleLR": lambda lib, o: lib.optim.lr_scheduler.OneCycleLR(o, [1.0, 0.1],
                                                                   total_steps=25),
    "OneCycleLR-small": lambda lib, o: lib.optim.lr_scheduler.OneCycleLR(
        o, [0.01, 0.005], total_steps=25, pct_start=0.2),
    "OneCycleLR-linear-3phase": lambda lib, o: lib.optim.lr_scheduler.OneCycleLR(
        o, 0.5, epochs=5, steps_per_epoch=5, anneal_strategy="linear", three_phase=True),
    "CosineAnnealingWarmRestarts": lambda lib, o: lib.optim.lr_scheduler
        .CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=0.01),
    "SequentialLR": lambda lib, o: lib.optim.lr_scheduler.SequentialLR(o, [
        lib.optim.lr_scheduler.LinearLR(o, 0.1, total_iters=4),
        lib.optim.lr_scheduler.CosineAnnealingLR(o, T_max=12)], milestones=[4]),
    "ChainedScheduler": lambda lib, o: lib.optim.lr_scheduler.ChainedScheduler([
        lib.optim.lr_scheduler.ConstantLR(o, 0.5, total_iters=3),
        lib.optim.lr_scheduler.ExponentialLR(o, gamma=0.8)]),
    "CyclicLR": lambda lib, o: lib.optim.lr_scheduler.CyclicLR(o, 0.01, [0.1, 0.05],
                                                               step_size_up=4),
    "CyclicLR-triangular2-asym": lambda lib, o: lib.optim.lr_scheduler.CyclicLR(
        o, [0.01, 0.02], 0.1, step_size_up=3, step_size_down=5, mode="triangular2",
        base_momentum=[0.85, 0.7], max_momentum=0.95),
    "CyclicLR-exp_range": lambda lib, o: lib.optim.lr_scheduler.CyclicLR(
        o, 0.001, 0.1, step_size_up=2, step_size_down=4, mode="exp_range", gamma=0.9),
    "CyclicLR-scale_fn-cycle": lambda lib, o: lib.optim.lr_scheduler.CyclicLR(
        o, 0.01, 0.1, step_size_up=3, scale_fn=lambda x: 1 / (1 + 0.5 * x)),
    "CyclicLR-scale_fn-iterations": lambda lib, o: lib.optim.lr_scheduler.CyclicLR(
        o, 0.01, 0.1, step_size_up=3, scale_fn=lambda x: 0.97 ** x, scale_mode="iterations",
        cycle_momentum=False),
    "CyclicLR-bad-mode-with-scale_fn": lambda lib, o: lib.optim.lr_scheduler.CyclicLR(
        o, 0.01, 0.1, step_size_up=1, mode="nope", scale_fn=lambda x: 0.5),
}


def _lr_trace(lib, make, steps=25, opt="SGD"):
    """lrs (and momentum / beta1) after construction and after each step, two groups."""
    w, v = lib.zeros(2, requires_grad=True), lib.zeros(1, requires_grad=True)
    optimizer = getattr(lib.optim, opt)([{"params": [w]}, {"params": [v], "lr": 0.1}],
                                        lr=1.0, **({"momentum": 0.9} if opt == "SGD" else {}))
    sched = make(lib, optimizer)
    key = "betas" if opt == "Adam" else "momentum"
    out = []
    for _ in range(steps):
        out.append((sched.get_last_lr(), [g[key] for g in optimizer.param_groups]))
        optimizer.step()
        sched.step()
    out.append((sched.get_last_lr(), [g[key] for g in optimizer.param_groups]))
    return out


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_scheduler_lrs_match_torch(name):
    torch = pytest.importorskip("torch")
    assert _lr_trace(tg, SCHEDULERS[name]) == _lr_trace(torch, SCHEDULERS[name])


@pytest.mark.parametrize("name", ["OneCycleLR", "CyclicLR", "CyclicLR-exp_range"])
def test_momentum_cycling_schedulers_cycle_adam_beta1_like_torch(name):
    torch = pytest.importorskip("torch")
    make = SCHEDULERS[name]
    assert _lr_trace(tg, make, opt="Adam") == _lr_trace(torch, make, opt="Adam")


# computed with torch 2.13 (first group, lr 1.0): run without torch too
PINNED = {
    "StepLR": [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25],
    "CosineAnnealingLR": [1.0, 0.9504844339512095, 0.8117449009293668, 0.6112604669781572,
                          0.38873953302184283, 0.18825509907063326, 0.04951556604879048, 0.0],
    "OneCycleLR": [0.040000000000000036, 0.09498110768645929, 0.2473289215690453,
                   0.462142393477445, 0.6902103457804172, 0.8792851591221286],
    "LinearLR": [0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0, 1.0],
    "CyclicLR-triangular2-asym": [0.01, 0.04, 0.07, 0.1, 0.082, 0.064, 0.046,
                                  0.028000000000000004, 0.01, 0.025, 0.04],
}


@pytest.mark.parametrize("name", list(PINNED))
def test_scheduler_pinned_values(name):
    got = [lrs[0] for lrs, _ in _lr_trace(tg, SCHEDULERS[name], steps=len(PINNED[name]) - 1)]
    np.testing.assert_allclose(got, PINNED[name], rtol=1e-12, atol=1e-15)


def test_initial_lr_and_last_epoch():
    w = tg.zeros(1, requires_grad=True)
    opt = tg.optim.SGD([w], lr=0.5)
    sched = tg.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)
    assert opt.param_groups[0]["initial_lr"] == 0.5 and sched.last_epoch == 0
    assert sched.base_lrs == [0.5]
    opt.step()
    sched.step()
    assert sched.last_epoch == 1 and opt.param_groups[0]["lr"] == 0.25
    with pytest.raises(KeyError, match="initial_lr"):
        tg.optim.lr_scheduler.StepLR(tg.optim.SGD([w], lr=0.1), 2, last_epoch=3)


def _order_warnings(lib, optimizer_first):
    w = lib.zeros(1, requires_grad=True)
    opt = lib.optim.SGD([w], lr=0.1)
    sched = lib.optim.lr_scheduler.StepLR(opt, 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if optimizer_first:
            opt.step()
        sched.step()
    return [str(c.message) for c in caught]


def test_scheduler_step_before_optimizer_step_warns():
    caught = _order_warnings(tg, optimizer_first=False)
    assert len(caught) == 1 and "before `optimizer.step()`" in caught[0]
    assert _order_warnings(tg, optimizer_first=True) == []
    try:
        import torch
    except ImportError:
        return
    assert _order_warnings(torch, False) == caught and _order_warnings(torch, True) == []


def test_get_lr_outside_step_and_epoch_argument_warn():
    w = tg.zeros(1, requires_grad=True)
    opt = tg.optim.SGD([w], lr=1.0)
    sched = tg.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    with pytest.warns(UserWarning, match="get_last_lr"):
        sched.get_lr()
    opt.step()
    with pytest.warns(UserWarning, match="epoch parameter"):
        sched.step(5)  # the closed form: 1.0 * 0.5 ** (5 // 2)
    assert sched.get_last_lr() == [0.25]


def test_reduce_lr_on_plateau_matches_torch():
    metrics = [1.0, 0.9, 0.95, 0.96, 0.97, 0.99, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3]

    def run(lib, **kw):
        w = lib.zeros(1, requires_grad=True)
        opt = lib.optim.SGD([{"params": [w]}], lr=1.0)
        sched = lib.optim.lr_scheduler.ReduceLROnPlateau(opt, **kw)
        out = []
        for m in metrics:
            opt.step()
            sched.step(m)
            out.append((sched.get_last_lr(), sched.num_bad_epochs, sched.best))
        return out

    settings = [dict(patience=2), dict(mode="max", factor=0.5, patience=1, cooldown=2),
                dict(threshold_mode="abs", threshold=0.05, patience=0, min_lr=0.3)]
    got = [run(tg, **kw) for kw in settings]
    assert got[0][-1][0] == [0.0010000000000000002]  # pinned: reduced three times
    try:
        import torch
    except ImportError:
        return
    assert got == [run(torch, **kw) for kw in settings]


def test_scheduler_state_dict_round_trip():
    def make(lr):
        w = tg.zeros(1, requires_grad=True)
        opt = tg.optim.SGD([w], lr=lr)
        return opt, tg.optim.lr_scheduler.SequentialLR(opt, [
            tg.optim.lr_scheduler.LinearLR(opt, 0.1, total_iters=3),
            tg.optim.lr_scheduler.StepLR(opt, 2, 0.5)], milestones=[3])

    opt_a, sched_a = make(1.0)
    for _ in range(4):
        opt_a.step()
        sched_a.step()
    sd = copy.deepcopy(sched_a.state_dict())
    assert "optimizer" not in sd and sd["last_epoch"] == 4 and len(sd["_schedulers"]) == 2
    opt_b, sched_b = make(1.0)
    opt_b.load_state_dict(opt_a.state_dict())
    sched_b.load_state_dict(sd)
    for _ in range(5):
        for opt, sched in ((opt_a, sched_a), (opt_b, sched_b)):
            opt.step()
            sched.step()
        assert sched_a.get_last_lr() == sched_b.get_last_lr()
        assert opt_a.param_groups[0]["lr"] == opt_b.param_groups[0]["lr"]


class _Decay:
    """A callable-object scale_fn: CyclicLR's state_dict keeps its __dict__."""

    def __init__(self, rate):
        self.rate = rate

    def __call__(self, x):
        return self.rate ** x


def test_cyclic_lr_state_dict_round_trip_and_pickles():
    import pickle

    def make(rate):
        w = tg.zeros(1, requires_grad=True)
        opt = tg.optim.SGD([w], lr=0.1, momentum=0.9)
        return opt, tg.optim.lr_scheduler.CyclicLR(opt, 0.01, 0.1, step_size_up=2,
                                                   scale_fn=_Decay(rate))

    opt_a, sched_a = make(0.5)
    for _ in range(3):
        opt_a.step()
        sched_a.step()
    sd = pickle.loads(pickle.dumps(sched_a.state_dict()))
    assert sd["_scale_fn_custom"] == {"rate": 0.5} and "_scale_fn_ref" not in sd
    opt_b, sched_b = make(0.9)
    opt_b.load_state_dict(opt_a.state_dict())
    sched_b.load_state_dict(sd)
    assert sched_b._scale_fn_custom.rate == 0.5
    for _ in range(4):
        for opt, sched in ((opt_a, sched_a), (opt_b, sched_b)):
            opt.step()
            sched.step()
        assert sched_a.get_last_lr() == sched_b.get_last_lr()
        assert opt_a.param_groups[0]["momentum"] == opt_b.param_groups[0]["momentum"]
    # the built-in policies drop their scale function and rebuild it on load
    w = tg.zeros(1, requires_grad=True)
    sched = tg.optim.lr_scheduler.CyclicLR(tg.optim.SGD([w], lr=0.1, momentum=0.9), 0.01, 0.1,
                                           mode="exp_range", gamma=0.9)
    sd = pickle.loads(pickle.dumps(sched.state_dict()))
    sched.load_state_dict(sd)
    assert sched.scale_fn(2) == pytest.approx(0.81)


def test_scheduler_state_dict_keys_match_torch():
    torch = pytest.importorskip("torch")
    for name in ("StepLR", "CosineAnnealingLR", "OneCycleLR", "LambdaLR", "CyclicLR",
                 "CyclicLR-exp_range", "CyclicLR-scale_fn-cycle"):
        keys = []
        for lib in (tg, torch):
            w, v = lib.zeros(1, requires_grad=True), lib.zeros(1, requires_grad=True)
            opt = lib.optim.SGD([{"params": [w]}, {"params": [v]}], lr=0.1, momentum=0.9)
            keys.append(sorted(SCHEDULERS[name](lib, opt).state_dict()))
        assert keys[0] == keys[1], name


def test_scheduler_argument_errors():
    w = tg.zeros(1, requires_grad=True)
    opt = tg.optim.SGD([w], lr=0.1)
    S = tg.optim.lr_scheduler
    with pytest.raises(TypeError, match="is not an Optimizer"):
        S.StepLR(object(), 2)
    with pytest.raises(ValueError, match="between 0 and 1"):
        S.ConstantLR(opt, factor=2.0)
    with pytest.raises(ValueError, match="total_steps OR"):
        S.OneCycleLR(opt, 0.1)
    with pytest.raises(ValueError, match="Tried to step 3 times"):
        sched = S.OneCycleLR(opt, 0.1, total_steps=2)
        for _ in range(3):
            opt.step()
            sched.step()
    with pytest.raises(ValueError, match="momentum or beta1"):
        S.OneCycleLR(tg.optim.Adagrad([w]), 0.1, total_steps=5)
    with pytest.raises(ValueError, match="positive integer T_0"):
        S.CosineAnnealingWarmRestarts(opt, T_0=0)
    with pytest.raises(ValueError, match="mode is invalid and scale_fn is None"):
        S.CyclicLR(opt, 0.01, 0.1, mode="triangular3")
    with pytest.raises(ValueError, match="momentum or beta1"):
        S.CyclicLR(tg.optim.Adagrad([w]), 0.01, 0.1)
    with pytest.raises(ValueError, match="base_lr must have the same length"):
        S.CyclicLR(opt, [0.01, 0.02], 0.1)
    with pytest.raises(ValueError, match="does not support `ReduceLROnPlateau`"):
        S.SequentialLR(opt, [S.ReduceLROnPlateau(opt)], milestones=[])


# ---- optimizers + schedulers training a small model, vs torch ---------------------

TRAINING = [
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}, "StepLR"),
    ("Adam", {"lr": 0.01, "weight_decay": 0.01}, "CosineAnnealingLR"),
    ("AdamW", {"lr": 0.01, "amsgrad": True}, "OneCycleLR"),
    ("RMSprop", {"lr": 0.001, "momentum": 0.5, "centered": True}, "LinearLR"),
    ("RMSprop", {"lr": 0.001, "weight_decay": 0.1}, "OneCycleLR-small"),
    ("SGD", {"lr": 0.01}, "OneCycleLR-small"),
    ("Adagrad", {"lr": 0.05, "lr_decay": 0.01, "initial_accumulator_value": 0.1},
     "ExponentialLR"),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "foreach": False}, "SequentialLR"),
    ("SGD", {"lr": 0.05, "momentum": 0.5, "nesterov": True}, "CyclicLR-triangular2-asym"),
    ("Adam", {"lr": 0.01}, "CyclicLR-exp_range"),
]


def _train(lib, opt_name, kwargs, sched_name, steps=25):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 5)), rng.standard_normal((16, 2))
    w1, b1 = rng.standard_normal((8, 5)) * 0.4, rng.standard_normal(8) * 0.1
    w2, b2 = rng.standard_normal((2, 8)) * 0.4, rng.standard_normal(2) * 0.1
    model = lib.nn.Sequential(lib.nn.Linear(5, 8), lib.nn.Tanh(), lib.nn.Linear(8, 2))
    with lib.no_grad():
        for p, a in zip(model.parameters(), (w1, b1, w2, b2), strict=True):
            p.copy_(lib.tensor(a, dtype=lib.float32))
    X, Y = lib.tensor(x, dtype=lib.float32), lib.tensor(y, dtype=lib.float32)
    groups = [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.02}]
    opt = getattr(lib.optim, opt_name)(groups, **kwargs)
    sched = SCHEDULERS[sched_name](lib, opt)
    lrs = []
    for _ in range(steps):
        opt.zero_grad()
        ((model(X) - Y) ** 2).mean().backward()
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr())
    return [p.detach().numpy() for p in model.parameters()], lrs


@pytest.mark.parametrize("opt_name, kwargs, sched_name", TRAINING,
                         ids=[f"{o}-{s}" for o, _, s in TRAINING])
def test_optimizer_with_scheduler_matches_torch(opt_name, kwargs, sched_name):
    torch = pytest.importorskip("torch")
    ours, our_lrs = _train(tg, opt_name, kwargs, sched_name)
    theirs, their_lrs = _train(torch, opt_name, kwargs, sched_name)
    assert our_lrs == their_lrs
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_training_with_scheduler_pinned():
    """Without torch too: Adam + CosineAnnealingLR ends where torch 2.13 ends."""
    params, lrs = _train(tg, "Adam", {"lr": 0.01}, "CosineAnnealingLR", steps=7)
    assert math.isclose(lrs[-1][0], 0.0, abs_tol=1e-15)
    np.testing.assert_allclose(params[3], [-0.22544108, 0.0810091], rtol=1e-5)
