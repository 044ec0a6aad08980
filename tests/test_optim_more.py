"""tracegrad.optim's Adadelta, Adamax, NAdam, RAdam, ASGD, Rprop and LBFGS: updates and
state vs torch, checkpoints (ours and torch's), argument errors, and compiled steps."""
import copy
import warnings

import numpy as np
import pytest

import tracegrad as tg
from tracegrad.ir.tracer import GraphBreak

CASES = [
    ("Adadelta", {}),
    ("Adadelta", {"lr": 0.5, "rho": 0.8, "eps": 1e-5, "weight_decay": 0.1}),
    ("Adadelta", {"lr": 2.0, "rho": 0.95, "maximize": True}),
    ("Adamax", {"lr": 0.05}),
    ("Adamax", {"lr": 0.05, "betas": (0.8, 0.9), "eps": 1e-6, "weight_decay": 0.1}),
    ("Adamax", {"lr": 0.02, "maximize": True}),
    ("NAdam", {"lr": 0.05}),
    ("NAdam", {"lr": 0.05, "betas": (0.8, 0.99), "momentum_decay": 0.01, "weight_decay": 0.1}),
    ("NAdam", {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("NAdam", {"lr": 0.02, "eps": 1e-6, "maximize": True}),
    ("RAdam", {"lr": 0.05}),  # rho_t > 5 from step 6 on: both cases run
    ("RAdam", {"lr": 0.05, "betas": (0.8, 0.9), "weight_decay": 0.1}),
    ("RAdam", {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("RAdam", {"lr": 0.002, "betas": (0.9, 0.5), "maximize": True}),  # rho_inf < 5: never
    ("ASGD", {"lr": 0.05}),
    ("ASGD", {"lr": 0.05, "lambd": 0.01, "alpha": 0.5, "t0": 5, "weight_decay": 0.1}),
    ("ASGD", {"lr": 0.02, "t0": 0, "maximize": True}),
    ("Rprop", {"lr": 0.05}),
    ("Rprop", {"lr": 0.05, "etas": (0.3, 1.7), "step_sizes": (1e-3, 0.2)}),
    ("Rprop", {"lr": 0.01, "maximize": True}),
    # PyTorch's implementation switches: accepted, same values
    ("NAdam", {"lr": 0.05, "foreach": True, "capturable": False}),
    ("Adadelta", {"foreach": False, "capturable": False, "differentiable": False}),
    ("Rprop", {"lr": 0.05, "foreach": True}),
]
NAMES = ["Adadelta", "Adamax", "NAdam", "RAdam", "ASGD", "Rprop"]


def _ids(cases):
    return [f"{n}-{'-'.join(k) or 'defaults'}" for n, k in cases]


def _problem(lib, dtype):
    """A Linear layer and a loose weight (two param groups) on a small least-squares fit."""
    rng = np.random.default_rng(0)
    w0, b0, v0 = rng.standard_normal((3, 4)), rng.standard_normal(3), rng.standard_normal(3)
    x, y = rng.standard_normal((8, 4)), rng.standard_normal((8, 3))
    dt = getattr(lib, dtype)
    lin = lib.nn.Linear(4, 3).to(dt)
    with lib.no_grad():
        lin.weight.copy_(lib.tensor(w0))
        lin.bias.copy_(lib.tensor(b0))
    v = lib.tensor(v0, dtype=dt, requires_grad=True)
    X, Y = lib.tensor(x, dtype=dt), lib.tensor(y, dtype=dt)
    params = [lin.weight, lin.bias, v]

    def loss_fn():
        return ((lin(X) * v - Y) ** 2).mean()
    return params, loss_fn


def _make(lib, name, params, kwargs):
    return getattr(lib.optim, name)([{"params": params[:2]}, {"params": params[2:]}], **kwargs)


def _steps(opt, loss_fn, n):
    for _ in range(n):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()


def _train(lib, name, kwargs, steps=20, dtype="float64"):
    params, loss_fn = _problem(lib, dtype)
    opt = _make(lib, name, params, kwargs)
    _steps(opt, loss_fn, steps)
    return params, opt, loss_fn


def _numpy(value):
    """A state value (tensors, lists of them, numbers) as NumPy / Python values."""
    if isinstance(value, (list, tuple)):
        return [_numpy(v) for v in value]
    if hasattr(value, "detach"):
        return value.detach().numpy()
    return value


def _assert_close(ours, theirs, dtype, what="", tol=None):
    """Equal types and shapes, values to 1e-10 (float64) or 2e-6 (float32) of their scale."""
    if tol is None:
        tol = 1e-10 if dtype == "float64" else 2e-6
    if isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), what
        for a, b in zip(ours, theirs, strict=True):
            _assert_close(a, b, dtype, what, tol)
        return
    if not isinstance(theirs, np.ndarray):
        assert type(ours) is type(theirs), what
        assert ours == pytest.approx(theirs, rel=tol, abs=tol), what
        return
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, what
    scale = max(1.0, float(np.abs(theirs).max(initial=0.0)))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=tol * scale, err_msg=what)


def _assert_state_close(opt, opt_torch, dtype, tol=None):
    sd, sd_torch = opt.state_dict(), opt_torch.state_dict()
    assert sorted(sd["state"]) == sorted(sd_torch["state"])
    for i, s in sd_torch["state"].items():
        assert list(sd["state"][i]) == list(s)
        for k, v in s.items():
            _assert_close(_numpy(sd["state"][i][k]), _numpy(v), dtype, f"state[{i}][{k!r}]",
                          tol)
    assert sd["param_groups"] == sd_torch["param_groups"]


@pytest.mark.parametrize("name, kwargs", CASES, ids=_ids(CASES))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_matches_torch(name, kwargs, dtype):
    torch = pytest.importorskip("torch")
    ours, opt, _ = _train(tg, name, kwargs, dtype=dtype)
    theirs, opt_torch, _ = _train(torch, name, kwargs, dtype=dtype)
    for a, b in zip(ours, theirs, strict=True):
        _assert_close(_numpy(a), _numpy(b), dtype, "param")
    _assert_state_close(opt, opt_torch, dtype)


@pytest.mark.parametrize("name, kwargs", [("NAdam", {"lr": 0.05}), ("ASGD", {"t0": 3}),
                                          ("RAdam", {"lr": 0.05}), ("Adamax", {})],
                         ids=["NAdam", "ASGD", "RAdam", "Adamax"])
def test_matches_torch_with_float64_default_dtype(name, kwargs):
    """The step counter (and NAdam's mu_product, ASGD's eta and mu) follow the default
    dtype: float64 here."""
    torch = pytest.importorskip("torch")
    results = []
    for lib in (tg, torch):
        old = lib.get_default_dtype()
        lib.set_default_dtype(lib.float64)
        try:
            results.append(_train(lib, name, kwargs, steps=8, dtype="float64"))
        finally:
            lib.set_default_dtype(old)
    (ours, opt, _), (theirs, opt_torch, _) = results
    assert str(opt.state[ours[0]]["step"].dtype) == "torch.float64"
    for a, b in zip(ours, theirs, strict=True):
        _assert_close(_numpy(a), _numpy(b), "float64")
    _assert_state_close(opt, opt_torch, "float64")


def test_defaults_match_torch():
    torch = pytest.importorskip("torch")

    def plain(group):
        return [(k, float(v) if isinstance(v, int) and not isinstance(v, bool) else v)
                for k, v in group.items() if k != "params"]
    for name in NAMES + ["LBFGS"]:
        groups = [getattr(lib.optim, name)([lib.zeros(1, requires_grad=True)]).param_groups[0]
                  for lib in (tg, torch)]
        assert plain(groups[0]) == plain(groups[1]), name


@pytest.mark.parametrize("name", NAMES + ["LBFGS"])
def test_signature_matches_torch(name):
    """Same parameter names, order, kinds (positional or keyword-only) and defaults."""
    torch = pytest.importorskip("torch")
    import inspect
    sigs = [[(p.name, p.kind, p.default) for p in
             inspect.signature(getattr(lib.optim, name).__init__).parameters.values()]
            for lib in (tg, torch)]
    assert sigs[0] == sigs[1]
    assert name in tg.optim.__all__


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_layout_matches_torch(name):
    torch = pytest.importorskip("torch")
    layouts = []
    for lib in (tg, torch):
        w = lib.zeros(2, requires_grad=True)
        opt = getattr(lib.optim, name)([w], lr=0.1)
        (w - 1).pow(2).sum().backward()
        opt.step()
        sd = opt.state_dict()
        state = sd["state"][0]
        layouts.append((list(sd), list(state), [str(v.dtype) for v in state.values()],
                        [tuple(v.shape) for v in state.values()], sd["param_groups"]))
    assert layouts[0] == layouts[1]


def test_nadam_state_holds_mu_product():
    w = tg.tensor([1.0, -2.0], requires_grad=True)
    opt = tg.optim.NAdam([w], lr=0.1, betas=(0.9, 0.999), momentum_decay=4e-3)
    for _ in range(2):
        (w * w).sum().backward()
        opt.step()
    state = opt.state[w]
    assert list(state) == ["step", "mu_product", "exp_avg", "exp_avg_sq"]
    mus = [0.9 * (1 - 0.5 * 0.96 ** (t * 4e-3)) for t in (1, 2)]
    assert state["step"].item() == 2.0 and state["mu_product"].dtype == tg.float32
    assert state["mu_product"].item() == pytest.approx(mus[0] * mus[1], rel=1e-6)


# ---- checkpoints ------------------------------------------------------------------

@pytest.mark.parametrize("name, kwargs", CASES[:-3], ids=_ids(CASES[:-3]))
def test_state_dict_round_trip(name, kwargs):
    """4 steps, checkpoint, 4 more == a fresh optimizer loaded from the checkpoint, 4 more."""
    params_a, loss_a = _problem(tg, "float32")
    opt_a = _make(tg, name, params_a, kwargs)
    _steps(opt_a, loss_a, 4)
    saved = copy.deepcopy(opt_a.state_dict())
    params_b, loss_b = _problem(tg, "float32")
    with tg.no_grad():
        for p, q in zip(params_a, params_b, strict=True):
            q.copy_(p)
    opt_b = _make(tg, name, params_b, {})  # defaults: the checkpoint brings the settings
    opt_b.load_state_dict(saved)
    assert opt_b.param_groups[0] == dict(opt_a.param_groups[0], params=params_b[:2])
    assert opt_b.state[params_b[0]] is not opt_a.state[params_a[0]]
    _steps(opt_a, loss_a, 4)
    _steps(opt_b, loss_b, 4)
    for p, q in zip(params_a, params_b, strict=True):
        assert np.array_equal(p.detach().numpy(), q.detach().numpy())
    for p, q in zip(params_a, params_b, strict=True):
        for k, v in opt_a.state[p].items():
            assert np.array_equal(v.numpy(), opt_b.state[q][k].numpy()), k


def _to_tg(value):
    """A torch state value with its tensors made tracegrad tensors (same dtype)."""
    if isinstance(value, dict):
        return {k: _to_tg(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_tg(v) for v in value)
    if hasattr(value, "detach"):
        return tg.tensor(value.detach().numpy())
    return value


@pytest.mark.parametrize("name, kwargs", CASES[:-3], ids=_ids(CASES[:-3]))
def test_loads_a_torch_state_dict(name, kwargs):
    """torch runs 4 steps and saves; tracegrad and a fresh torch optimizer both load that
    (float64 params, so the float32 scalars in the state are cast as torch casts them),
    and run 4 more steps alike."""
    torch = pytest.importorskip("torch")
    theirs, opt_torch, loss_theirs = _train(torch, name, kwargs, steps=4)
    saved = copy.deepcopy(opt_torch.state_dict())
    ours, loss_ours = _problem(tg, "float64")
    with tg.no_grad():
        for p, q in zip(ours, theirs, strict=True):
            p.copy_(tg.tensor(q.detach().numpy()))
    opt = _make(tg, name, ours, {})
    opt.load_state_dict(_to_tg(saved))
    opt_torch = _make(torch, name, theirs, {})
    opt_torch.load_state_dict(saved)
    _steps(opt, loss_ours, 4)
    _steps(opt_torch, loss_theirs, 4)
    for a, b in zip(ours, theirs, strict=True):
        _assert_close(_numpy(a), _numpy(b), "float64")
    _assert_state_close(opt, opt_torch, "float64")


# ---- argument errors: torch's types and messages ----------------------------------

BAD_ARGUMENTS = [
    ("Adadelta", {"lr": -1}), ("Adadelta", {"rho": 1.5}), ("Adadelta", {"rho": -0.1}),
    ("Adadelta", {"eps": -1e-6}), ("Adadelta", {"weight_decay": -0.5}),
    ("Adamax", {"lr": -1}), ("Adamax", {"eps": -1.0}), ("Adamax", {"betas": (1.0, 0.9)}),
    ("Adamax", {"betas": (0.9, -0.1)}), ("Adamax", {"weight_decay": -1}),
    ("NAdam", {"lr": -0.5}), ("NAdam", {"eps": -1e-8}), ("NAdam", {"betas": (-0.1, 0.9)}),
    ("NAdam", {"betas": (0.9, 1.0)}), ("NAdam", {"weight_decay": -1}),
    ("NAdam", {"momentum_decay": -1e-3}),
    ("RAdam", {"lr": -1}), ("RAdam", {"eps": -1}), ("RAdam", {"betas": (1.5, 0.9)}),
    ("RAdam", {"betas": (0.9, 2.0)}), ("RAdam", {"weight_decay": -0.1}),
    ("ASGD", {"lr": -1}), ("ASGD", {"weight_decay": -2}),
    ("Rprop", {"lr": -1}), ("Rprop", {"etas": (1.5, 1.2)}), ("Rprop", {"etas": (0.0, 1.2)}),
    ("Rprop", {"etas": (0.5, 0.9)}),
    ("LBFGS", {"lr": -1}),
]


@pytest.mark.parametrize("name, kwargs", BAD_ARGUMENTS, ids=_ids(BAD_ARGUMENTS))
def test_bad_arguments_match_torch(name, kwargs):
    torch = pytest.importorskip("torch")
    errors = []
    for lib in (tg, torch):
        with pytest.raises(Exception) as info:
            getattr(lib.optim, name)([lib.zeros(2, requires_grad=True)], **kwargs)
        errors.append((type(info.value), str(info.value)))
    assert errors[0] == errors[1]
    assert errors[0][1].startswith("Invalid ")


@pytest.mark.parametrize("name", NAMES)
def test_bad_argument_types_and_flags(name):
    p = tg.zeros(2, requires_grad=True)
    cls = getattr(tg.optim, name)
    with pytest.raises(TypeError, match="learning rate must be a number"):
        cls([p], lr="fast")
    with pytest.raises(NotImplementedError, match="differentiable=True"):
        cls([p], differentiable=True)
    with pytest.raises(TypeError, match="iterable of Tensors"):
        cls(p)


def test_lbfgs_errors_match_torch():
    torch = pytest.importorskip("torch")
    errors = []
    for lib in (tg, torch):
        w, v = lib.zeros(2, requires_grad=True), lib.zeros(1, requires_grad=True)
        with pytest.raises(ValueError) as groups:
            lib.optim.LBFGS([{"params": [w]}, {"params": [v]}])
        opt = lib.optim.LBFGS([w], line_search_fn="backtracking")

        def closure(opt=opt, w=w):
            opt.zero_grad()
            loss = ((w - 1) ** 2).sum()
            loss.backward()
            return loss
        with pytest.raises(RuntimeError) as search:
            opt.step(closure)
        with pytest.raises(TypeError, match="closure"):
            opt.step()
        errors.append((str(groups.value), str(search.value)))
    assert errors[0] == errors[1]
    assert errors[0] == ("LBFGS doesn't support per-parameter options (parameter groups)",
                         "only 'strong_wolfe' is supported")


# ---- compiled training steps --------------------------------------------------------

# (the defaults of each run compiled in SCHEDULED below)
COMPILED = [
    ("Adadelta", {"weight_decay": 0.1, "maximize": True}),
    ("Adamax", {"lr": 0.01, "weight_decay": 0.1}),
    ("NAdam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("NAdam", {"lr": 0.01, "weight_decay": 0.1}),
    ("RAdam", {"lr": 0.01, "weight_decay": 0.01, "decoupled_weight_decay": True}),
    ("ASGD", {"lr": 0.05, "lambd": 0.01, "weight_decay": 0.1}),
    ("Rprop", {"lr": 0.01}), ("Rprop", {"lr": 0.01, "etas": (0.4, 1.5), "maximize": True}),
]


def _np(t):
    return t.detach().numpy()


def _compiled_pair(name, kwargs, make_sched=None):
    tg.manual_seed(1)
    model_c = tg.nn.Sequential(tg.nn.Linear(8, 16), tg.nn.Tanh(), tg.nn.Linear(16, 3))
    model_e = copy.deepcopy(model_c)
    opts = [getattr(tg.optim, name)(m.parameters(), **kwargs) for m in (model_c, model_e)]
    scheds = [make_sched(o) for o in opts] if make_sched else [None, None]

    def make_step(model, opt):
        def train_step(x, y):
            opt.zero_grad()
            loss = tg.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss
        return train_step
    return ((tg.compile(make_step(model_c, opts[0])), model_c, opts[0], scheds[0]),
            (make_step(model_e, opts[1]), model_e, opts[1], scheds[1]))


def _assert_same_training(model_c, opt_c, model_e, opt_e):
    for pc, pe in zip(model_c.parameters(), model_e.parameters(), strict=True):
        np.testing.assert_allclose(_np(pc), _np(pe), rtol=1e-5, atol=1e-6)
        assert list(opt_c.state[pc]) == list(opt_e.state[pe])
        for k, v in opt_e.state[pe].items():
            assert opt_c.state[pc][k].dtype == v.dtype, k
            np.testing.assert_allclose(_np(opt_c.state[pc][k]), _np(v), rtol=1e-5, atol=1e-6,
                                       err_msg=k)


@pytest.mark.parametrize("name, kwargs", COMPILED, ids=_ids(COMPILED))
def test_compiled_step_equals_eager(name, kwargs):
    (step_c, model_c, opt_c, _), (step_e, model_e, opt_e, _) = _compiled_pair(name, kwargs)
    x, y = tg.randn(32, 8), tg.randint(0, 3, (32,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no graph break, no fallback to eager
        for _ in range(12):
            lc, le = step_c(x, y), step_e(x, y)
            np.testing.assert_allclose(lc.item(), le.item(), rtol=1e-5, atol=1e-6)
    _assert_same_training(model_c, opt_c, model_e, opt_e)
    info = step_c.cache_info()
    # the first call makes the state (not cached); every later one runs one program
    assert info.entries == 1 and info.hits == 10, step_c.recompile_reasons


S = tg.optim.lr_scheduler
SCHEDULED = [
    ("NAdam", {"lr": 0.01}, lambda o: S.StepLR(o, step_size=3, gamma=0.5)),
    # steps 1-5 unrectified, then rectified: one program
    ("RAdam", {"lr": 0.01}, lambda o: S.CosineAnnealingLR(o, T_max=10)),
    ("Adamax", {"lr": 0.01}, lambda o: S.OneCycleLR(o, max_lr=0.05, total_steps=20)),
    ("Adadelta", {}, lambda o: S.ExponentialLR(o, gamma=0.9)),
    # averaging starts at step 4: one program
    ("ASGD", {"lr": 0.05, "t0": 3}, lambda o: S.StepLR(o, step_size=2, gamma=0.7)),
]


@pytest.mark.parametrize("name, kwargs, make_sched", SCHEDULED, ids=[c[0] for c in SCHEDULED])
def test_compiled_step_reads_hyperparameters_as_inputs(name, kwargs, make_sched):
    """A scheduler's new lr (and OneCycleLR's beta1) is data: no recompile."""
    (step_c, model_c, opt_c, sched_c), (step_e, model_e, opt_e, sched_e) = \
        _compiled_pair(name, kwargs, make_sched)
    x, y = tg.randn(32, 8), tg.randint(0, 3, (32,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(15):
            step_c(x, y)
            step_e(x, y)
            sched_c.step()
            sched_e.step()
    assert opt_c.param_groups[0]["lr"] == opt_e.param_groups[0]["lr"]
    _assert_same_training(model_c, opt_c, model_e, opt_e)
    info = step_c.cache_info()
    assert info.entries == 1 and info.hits == 13, step_c.recompile_reasons


def test_nadam_hyperparameters_are_program_inputs():
    (step_c, _, opt, _), _ = _compiled_pair("NAdam", {"lr": 0.0123, "momentum_decay": 0.0071})
    x, y = tg.randn(4, 8), tg.randint(0, 3, (4,))
    for _ in range(3):
        step_c(x, y)
    report = step_c.explain(x, y)
    header = report.source.splitlines()[0]
    for name in ("lr", "betas_0", "betas_1", "eps", "momentum_decay"):
        assert f"param_groups_0_{name}" in header  # opt_param_groups_0_lr, ...
    assert "0.0123" not in report.source and "0.0071" not in report.source
    assert any("['decoupled_weight_decay'] == False" in g for g in report.guards)


# ---- LBFGS --------------------------------------------------------------------------

def _rosenbrock(lib, dtype):
    x = lib.tensor([-1.5, 2.0], dtype=getattr(lib, dtype), requires_grad=True)

    def loss_fn():
        return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
    return [x], loss_fn


def _regression(lib, dtype):
    """A Linear layer fit by least squares plus a quartic penalty (not a quadratic)."""
    rng = np.random.default_rng(0)
    dt = getattr(lib, dtype)
    X = lib.tensor(rng.standard_normal((20, 5)), dtype=dt)
    Y = lib.tensor(rng.standard_normal((20, 2)), dtype=dt)
    lin = lib.nn.Linear(5, 2).to(dt)
    with lib.no_grad():
        lin.weight.copy_(lib.tensor(rng.standard_normal((2, 5))))
        lin.bias.copy_(lib.tensor(rng.standard_normal(2)))

    def loss_fn():
        return ((lin(X) - Y) ** 2).mean() + 0.01 * (lin.weight ** 4).sum()
    return [lin.weight, lin.bias], loss_fn


def _lbfgs_steps(opt, loss_fn, n):
    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss
    return [float(opt.step(closure).detach()) for _ in range(n)]


def _lbfgs_run(lib, problem, kwargs, steps, dtype="float64"):
    params, loss_fn = problem(lib, dtype)
    opt = lib.optim.LBFGS(params, **kwargs)
    losses = _lbfgs_steps(opt, loss_fn, steps)
    return params, opt, loss_fn, losses


def _assert_lbfgs_close(ours, theirs, dtype, tol=None):
    (params, opt, _, losses), (params_t, opt_t, _, losses_t) = ours, theirs
    np.testing.assert_allclose(losses, losses_t, rtol=1e-9 if dtype == "float64" else 1e-5,
                               atol=1e-12)
    for a, b in zip(params, params_t, strict=True):
        _assert_close(_numpy(a), _numpy(b), dtype, "param", tol)
    if dtype == "float64":
        _assert_state_close(opt, opt_t, dtype, tol)  # the history, H_diag, t, counters...


LBFGS_CASES = [
    ({}, 2), ({"line_search_fn": "strong_wolfe"}, 5),
    ({"lr": 0.5, "history_size": 3, "max_iter": 7}, 5),
    ({"line_search_fn": "strong_wolfe", "history_size": 2, "max_iter": 12}, 2),
    ({"max_iter": 10, "max_eval": 6, "line_search_fn": "strong_wolfe"}, 4),
    ({"tolerance_grad": 1e-3, "tolerance_change": 1e-4}, 2),
]


@pytest.mark.parametrize("kwargs, steps", LBFGS_CASES, ids=_ids([("", k) for k, _ in
                                                                LBFGS_CASES]))
def test_lbfgs_rosenbrock_matches_torch(kwargs, steps):
    """Iterates, losses, evaluation counts and the whole state (float64), to 1e-8: torch's
    add(alpha=) fuses the multiply-add and its dot sums in another order, and Rosenbrock's
    valley grows those last-bit differences. Without a line search L-BFGS wanders on it,
    so only a few steps there."""
    torch = pytest.importorskip("torch")
    ours = _lbfgs_run(tg, _rosenbrock, kwargs, steps)
    theirs = _lbfgs_run(torch, _rosenbrock, kwargs, steps)
    _assert_lbfgs_close(ours, theirs, "float64", tol=1e-8)


@pytest.mark.parametrize("kwargs", [
    {}, {"line_search_fn": "strong_wolfe"}, {"history_size": 3, "max_iter": 5, "lr": 0.8},
    {"line_search_fn": "strong_wolfe", "history_size": 2, "max_iter": 6}])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_lbfgs_regression_matches_torch(kwargs, dtype):
    torch = pytest.importorskip("torch")
    if dtype == "float32":  # stop before the tolerances decide in float32 noise
        kwargs = dict(kwargs, max_iter=min(kwargs.get("max_iter", 20), 3))
    ours = _lbfgs_run(tg, _regression, kwargs, 4, dtype)
    theirs = _lbfgs_run(torch, _regression, kwargs, 4, dtype)
    _assert_lbfgs_close(ours, theirs, dtype)
    assert ours[1].state[ours[0][0]]["func_evals"] == theirs[1].state[theirs[0][0]]["func_evals"]


def test_lbfgs_converges_on_rosenbrock():
    (x,), opt, _, losses = _lbfgs_run(tg, _rosenbrock, {"line_search_fn": "strong_wolfe"}, 5)
    np.testing.assert_allclose(x.detach().numpy(), [1.0, 1.0], atol=1e-4)
    assert losses[-1] < 1e-8 and losses[0] > 1.0


def test_lbfgs_stops_at_once_when_the_gradient_vanishes():
    w = tg.ones(3, requires_grad=True)
    opt = tg.optim.LBFGS([w])
    losses = _lbfgs_steps(opt, lambda: ((w - 1) ** 2).sum(), 2)
    assert losses == [0.0, 0.0] and opt.state[w] == {"func_evals": 2, "n_iter": 0}


@pytest.mark.parametrize("kwargs", [{}, {"line_search_fn": "strong_wolfe", "history_size": 3}])
def test_lbfgs_state_dict_round_trip(kwargs):
    ours = _lbfgs_run(tg, _regression, dict(kwargs, max_iter=4), 2, "float32")
    params, opt, loss_fn, _ = ours
    saved = copy.deepcopy(opt.state_dict())
    assert list(saved["state"]) == [0]  # all of LBFGS's state sits with the first param
    fresh, fresh_loss = _regression(tg, "float32")
    with tg.no_grad():
        for p, q in zip(params, fresh, strict=True):
            q.copy_(p)
    opt_b = tg.optim.LBFGS(fresh)
    opt_b.load_state_dict(saved)
    assert opt_b.state[fresh[0]]["old_dirs"][0] is not opt.state[params[0]]["old_dirs"][0]
    assert _lbfgs_steps(opt, loss_fn, 2) == _lbfgs_steps(opt_b, fresh_loss, 2)
    for p, q in zip(params, fresh, strict=True):
        assert np.array_equal(p.detach().numpy(), q.detach().numpy())


def test_lbfgs_loads_a_torch_state_dict():
    torch = pytest.importorskip("torch")
    kwargs = {"line_search_fn": "strong_wolfe", "history_size": 3, "max_iter": 4}
    theirs, opt_t, loss_t, _ = _lbfgs_run(torch, _regression, kwargs, 2)
    saved = copy.deepcopy(opt_t.state_dict())
    ours, loss_ours = _regression(tg, "float64")
    with tg.no_grad():
        for p, q in zip(ours, theirs, strict=True):
            p.copy_(tg.tensor(q.detach().numpy()))
    opt = tg.optim.LBFGS(ours)
    opt.load_state_dict(_to_tg(saved))
    opt_t = torch.optim.LBFGS(theirs)
    opt_t.load_state_dict(saved)
    _assert_lbfgs_close((ours, opt, None, _lbfgs_steps(opt, loss_ours, 2)),
                        (theirs, opt_t, None, _lbfgs_steps(opt_t, loss_t, 2)), "float64")


def _lbfgs_pair(kwargs):
    tg.manual_seed(0)
    lin_c = tg.nn.Linear(5, 2)
    lin_e = copy.deepcopy(lin_c)
    X, Y = tg.randn(20, 5), tg.randn(20, 2)
    opts = [tg.optim.LBFGS(lin.parameters(), **kwargs) for lin in (lin_c, lin_e)]

    def make_closure(lin, opt):
        def closure():
            opt.zero_grad()
            loss = ((lin(X) - Y) ** 2).mean() + 0.01 * (lin.weight ** 4).sum()
            loss.backward()
            return loss
        return closure
    return [(lin, opt, make_closure(lin, opt)) for lin, opt in
            zip((lin_c, lin_e), opts, strict=True)]


@pytest.mark.parametrize("kwargs", [{"max_iter": 5}, {"line_search_fn": "strong_wolfe"}])
def test_lbfgs_step_in_a_compiled_function_is_a_graph_break(kwargs):
    (lin_c, opt_c, closure_c), (lin_e, opt_e, closure_e) = _lbfgs_pair(kwargs)
    step = tg.compile(lambda: opt_c.step(closure_c))
    with pytest.warns(UserWarning, match=r"graph break .*LBFGS.step\(\) branches on values"):
        loss_c = step()
    losses = [(float(loss_c), float(opt_e.step(closure_e)))]
    for _ in range(3):  # later calls run eagerly too: same values as eager
        losses.append((float(step()), float(opt_e.step(closure_e))))
    assert [a for a, _ in losses] == [b for _, b in losses]
    for pc, pe in zip(lin_c.parameters(), lin_e.parameters(), strict=True):
        assert np.array_equal(_np(pc), _np(pe))
    assert opt_c.state[lin_c.weight]["func_evals"] == opt_e.state[lin_e.weight]["func_evals"]


def test_lbfgs_step_with_fullgraph_raises():
    (_, opt, closure), _ = _lbfgs_pair({})
    step = tg.compile(lambda: opt.step(closure), fullgraph=True)
    with pytest.raises(GraphBreak, match=r"LBFGS.step\(\) branches on values.*fullgraph"):
        step()


@pytest.mark.parametrize("kwargs", [{"max_iter": 6}, {"line_search_fn": "strong_wolfe",
                                                      "max_iter": 6}])
def test_lbfgs_with_a_compiled_closure_equals_eager(kwargs):
    """The closure (forward and backward) compiles to one program; LBFGS calls it."""
    (lin_c, opt_c, closure_c), (lin_e, opt_e, closure_e) = _lbfgs_pair(kwargs)
    compiled = tg.compile(closure_c)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            np.testing.assert_allclose(float(opt_c.step(compiled)),
                                       float(opt_e.step(closure_e)), rtol=1e-5)
    for pc, pe in zip(lin_c.parameters(), lin_e.parameters(), strict=True):
        np.testing.assert_allclose(_np(pc), _np(pe), rtol=1e-4, atol=1e-5)
    assert compiled.cache_info().hits >= 10 and compiled.cache_info().entries == 1
