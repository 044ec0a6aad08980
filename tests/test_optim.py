"""tracegrad.optim: update formulas vs torch, state, checkpoints and argument errors."""
import copy

import numpy as np
import pytest

import tracegrad as tg
import tracegrad.nn as nn

OPTIMIZER_CASES = [
    ("SGD", {"lr": 0.01}),
    ("SGD", {"lr": 0.01, "momentum": 0.9}),
    ("SGD", {"lr": 0.01, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.01, "momentum": 0.8, "nesterov": True, "weight_decay": 0.05}),
    ("SGD", {"lr": 0.01, "momentum": 0.5, "maximize": True}),
    ("Adam", {"lr": 0.05}),
    ("Adam", {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-6}),
    ("Adam", {"lr": 0.05, "amsgrad": True}),
    ("Adam", {"lr": 0.05, "weight_decay": 0.1, "amsgrad": True}),
    ("Adam", {"lr": 0.05, "maximize": True}),
    ("AdamW", {"lr": 0.05}),
    ("AdamW", {"lr": 0.05, "weight_decay": 0.3, "amsgrad": True}),
    ("RMSprop", {"lr": 0.01}),
    ("RMSprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-6, "weight_decay": 0.1}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.9}),
    ("RMSprop", {"lr": 0.01, "centered": True}),
    ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5, "maximize": True}),
    ("Adagrad", {"lr": 0.1}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.05, "weight_decay": 0.1}),
    ("Adagrad", {"lr": 0.1, "initial_accumulator_value": 0.5, "eps": 1e-6, "maximize": True}),
    # PyTorch's implementation switches: accepted, same values
    ("SGD", {"lr": 0.01, "momentum": 0.9, "foreach": False, "fused": None}),
    ("Adam", {"lr": 0.05, "foreach": True}),
    ("AdamW", {"lr": 0.05, "fused": True}),
    ("RMSprop", {"lr": 0.01, "foreach": False, "capturable": False}),
    ("Adagrad", {"lr": 0.1, "foreach": True}),
]


def _train(lib, name, kwargs, steps=20, dtype="float64"):
    """20 steps on a small least-squares problem with a Linear layer and a loose weight."""
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
    opt = getattr(lib.optim, name)([{"params": lin.parameters()}, {"params": [v]}], **kwargs)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((lin(X) * v - Y) ** 2).mean()
        loss.backward()
        opt.step()
    return [t.detach().numpy() for t in (lin.weight, lin.bias, v)]


@pytest.mark.parametrize("name, kwargs", OPTIMIZER_CASES,
                         ids=[f"{n}-{'-'.join(k)}" for n, k in OPTIMIZER_CASES])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_optimizer_matches_torch(name, kwargs, dtype):
    torch = pytest.importorskip("torch")
    ours = _train(tg, name, kwargs, dtype=dtype)
    theirs = _train(torch, name, kwargs, dtype=dtype)
    tol = 1e-12 if dtype == "float64" else 1e-6
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=tol)


def test_sgd_first_step_by_hand():
    w = tg.tensor([1.0, -2.0], requires_grad=True)
    opt = tg.optim.SGD([w], lr=0.5, momentum=0.9)
    (w * w).sum().backward()  # grad = 2w = [2, -4]
    opt.step()
    assert w.tolist() == [0.0, 0.0]
    assert opt.state[w]["momentum_buffer"].tolist() == [2.0, -4.0]


def test_step_updates_in_place_and_backward_still_works():
    lin = nn.Linear(3, 2)
    alias = lin.weight.data
    weight = lin.weight
    before = alias.numpy().copy()
    opt = tg.optim.Adam(lin.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        lin(tg.ones(4, 3)).pow(2).sum().backward()
        opt.step()
    assert lin.weight is weight and lin.weight.is_leaf and lin.weight.grad_fn is None
    assert not np.array_equal(alias.numpy(), before)
    assert np.array_equal(alias.numpy(), lin.weight.detach().numpy())


def test_optimizer_state_is_tensors():
    w = tg.zeros(3, requires_grad=True)
    opt = tg.optim.Adam([w], amsgrad=True)
    w.sum().backward()
    opt.step()
    state = opt.state[w]
    assert set(state) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert all(isinstance(v, tg.Tensor) for v in state.values())
    assert state["step"].item() == 1.0


def test_zero_grad():
    w = tg.ones(2, requires_grad=True)
    opt = tg.optim.SGD([w], lr=0.1)
    (w * 3).sum().backward()
    opt.zero_grad(set_to_none=False)
    assert w.grad.tolist() == [0.0, 0.0]
    opt.zero_grad()
    assert w.grad is None
    opt.step()  # params without grads are skipped
    assert w.tolist() == [1.0, 1.0]


def test_closure_is_called_with_grad_enabled():
    w = tg.tensor([3.0], requires_grad=True)
    opt = tg.optim.SGD([w], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    with tg.no_grad():
        loss = opt.step(closure)
    assert loss.item() == 9.0 and w.tolist() == [1.5]


def _run_steps(opt_cls, params, n, **kwargs):
    opt = opt_cls(params, **kwargs)
    for _ in range(n):
        opt.zero_grad()
        sum((p * p * p).sum() for p in params).backward()
        opt.step()
    return opt


@pytest.mark.parametrize("opt_cls, kwargs", [
    (tg.optim.SGD, {"lr": 0.01, "momentum": 0.9}),
    (tg.optim.Adam, {"lr": 0.01, "amsgrad": True}),
    (tg.optim.AdamW, {"lr": 0.01}),
    (tg.optim.RMSprop, {"lr": 0.01, "momentum": 0.9, "centered": True}),
    (tg.optim.Adagrad, {"lr": 0.01, "lr_decay": 0.1}),
])
def test_state_dict_round_trip(opt_cls, kwargs):
    """3 steps, checkpoint, 3 more == a fresh optimizer loaded from the checkpoint, 3 more."""
    a = [tg.tensor([0.5, -1.0], requires_grad=True), tg.tensor([[2.0]], requires_grad=True)]
    opt_a = _run_steps(opt_cls, a, 3, **kwargs)
    sd = copy.deepcopy(opt_a.state_dict())
    assert sorted(sd["state"]) == [0, 1] and sd["param_groups"][0]["params"] == [0, 1]
    b = [p.detach().clone().requires_grad_() for p in a]
    opt_b = opt_cls(b, lr=123.0)
    opt_b.load_state_dict(sd)
    assert opt_b.param_groups[0]["lr"] == kwargs["lr"]
    assert opt_b.state[b[0]] is not opt_a.state[a[0]]
    for params, opt in ((a, opt_a), (b, opt_b)):
        for _ in range(3):
            opt.zero_grad()
            sum((p * p * p).sum() for p in params).backward()
            opt.step()
    for p, q in zip(a, b, strict=True):
        assert np.array_equal(p.detach().numpy(), q.detach().numpy())


@pytest.mark.parametrize("name, kwargs", [
    ("SGD", {"momentum": 0.9}), ("Adam", {"amsgrad": True}), ("AdamW", {}),
    ("RMSprop", {"momentum": 0.9, "centered": True}), ("Adagrad", {})])
def test_state_dict_matches_torch_layout(name, kwargs):
    torch = pytest.importorskip("torch")
    for lib in (torch, tg):
        w = lib.zeros(2, requires_grad=True)
        opt = getattr(lib.optim, name)([w], lr=0.1, **kwargs)
        w.sum().backward()
        opt.step()
        sd = opt.state_dict()
        keys = (list(sd), list(sd["state"][0]), list(sd["param_groups"][0]),
                sd["param_groups"][0]["params"], [str(v.dtype) for v in sd["state"][0].values()])
        if lib is torch:
            expected = keys
    assert keys == expected


def test_defaults_match_torch():
    torch = pytest.importorskip("torch")
    for name in ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad"):
        groups = [getattr(lib.optim, name)([lib.zeros(1, requires_grad=True)]).param_groups[0]
                  for lib in (tg, torch)]
        assert [(k, float(v) if isinstance(v, int) and not isinstance(v, bool) else v)
                for k, v in groups[0].items() if k != "params"] == \
               [(k, float(v) if isinstance(v, int) and not isinstance(v, bool) else v)
                for k, v in groups[1].items() if k != "params"], name


def test_load_state_dict_errors():
    w, v = tg.zeros(2, requires_grad=True), tg.zeros(2, requires_grad=True)
    sd = tg.optim.SGD([w, v], lr=0.1).state_dict()
    with pytest.raises(ValueError, match="doesn't match the size"):
        tg.optim.SGD([w], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="different number of parameter groups"):
        tg.optim.SGD([{"params": [w]}, {"params": [v]}], lr=0.1).load_state_dict(sd)


def test_param_groups_and_add_param_group():
    w, v = tg.zeros(1, requires_grad=True), tg.zeros(1, requires_grad=True)
    opt = tg.optim.SGD([{"params": [w], "lr": 1.0}], lr=0.1, momentum=0.5)
    opt.add_param_group({"params": v})
    assert [g["lr"] for g in opt.param_groups] == [1.0, 0.1]
    assert opt.param_groups[1]["momentum"] == 0.5
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [w]})
    assert "Parameter Group 1" in repr(opt)


@pytest.mark.parametrize("make, error, match", [
    (lambda p: tg.optim.SGD([p], lr=-0.1), ValueError, "Invalid learning rate: -0.1"),
    (lambda p: tg.optim.SGD([p], lr="fast"), TypeError, "learning rate must be a number"),
    (lambda p: tg.optim.SGD([p], lr=0.1, momentum=-1), ValueError, "Invalid momentum"),
    (lambda p: tg.optim.SGD([p], lr=0.1, weight_decay=-1), ValueError, "weight_decay"),
    (lambda p: tg.optim.SGD([p], lr=0.1, nesterov=True), ValueError, "Nesterov"),
    (lambda p: tg.optim.Adam([p], betas=(1.0, 0.9)), ValueError, "beta parameter at index 0"),
    (lambda p: tg.optim.Adam([p], betas=(0.9, -0.1)), ValueError, "beta parameter at index 1"),
    (lambda p: tg.optim.Adam([p], eps=-1e-8), ValueError, "Invalid epsilon"),
    (lambda p: tg.optim.AdamW([p], lr=-1), ValueError, "Invalid learning rate"),
    (lambda p: tg.optim.SGD(p, lr=0.1), TypeError, "iterable of Tensors"),
    (lambda p: tg.optim.SGD(3, lr=0.1), TypeError, "iterable of Tensors"),
    (lambda p: tg.optim.SGD([p, 3], lr=0.1), TypeError, "can only optimize Tensors"),
    (lambda p: tg.optim.SGD([], lr=0.1), ValueError, "empty parameter list"),
    (lambda p: tg.optim.SGD({p}, lr=0.1), TypeError, "ordered collections"),
    (lambda p: tg.optim.SGD([p * 2], lr=0.1), ValueError, "non-leaf"),
    (lambda p: tg.optim.RMSprop([p], alpha=-0.5), ValueError, "Invalid alpha value"),
    (lambda p: tg.optim.RMSprop([p], momentum=-0.5), ValueError, "Invalid momentum"),
    (lambda p: tg.optim.Adagrad([p], lr_decay=-1), ValueError, "Invalid lr_decay"),
    (lambda p: tg.optim.Adagrad([p], initial_accumulator_value=-1), ValueError,
     "initial_accumulator_value"),
    (lambda p: tg.optim.Adam([p], foreach=True, fused=True), RuntimeError,
     "`fused` and `foreach` cannot be `True` together"),
    (lambda p: tg.optim.SGD([p], differentiable=True), NotImplementedError,
     "differentiable=True"),
    (lambda p: tg.optim.RMSprop([p], differentiable=True), NotImplementedError,
     "differentiable=True"),
])
def test_bad_arguments(make, error, match):
    p = tg.zeros(2, requires_grad=True)
    with pytest.raises(error, match=match):
        make(p)
