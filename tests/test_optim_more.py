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


def _assert_close(ours, theirs, dtype, what=""):
    if isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), what
        for a, b in zip(ours, theirs, strict=True):
            _assert_close(a, b, dtype, what)
        return
    if not isinstance(theirs, np.ndarray):
        assert ours == pytest.approx(theirs, rel=1e-9), what
        return
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, what
    scale = max(1.0, float(np.abs(theirs).max(initial=0.0)))
    tol = 1e-10 if dtype == "float64" else 2e-6
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=tol * scale, err_msg=what)


def _assert_state_close(opt, opt_torch, dtype):
    sd, sd_torch = opt.state_dict(), opt_torch.state_dict()
    assert sorted(sd["state"]) == sorted(sd_torch["state"])
    for i, s in sd_torch["state"].items():
        assert list(sd["state"][i]) == list(s)
        for k, v in s.items():
            _assert_close(_numpy(sd["state"][i][k]), _numpy(v), dtype, f"state[{i}][{k!r}]")
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
