"""Adversarial whole programs against lazy results, float outputs and the Python
side-effect check of ``tracegrad.compile``: compiled calls against eager ones."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import tracegrad as tg
from tracegrad.ir.tracer import GraphBreak


def _eager(fn=None, **_):
    return fn if fn is not None else (lambda f: f)


def _same(program):
    """Run ``program(compile)`` compiled and eagerly; observations (values, dtypes and
    Python types) must match."""
    tg.manual_seed(0)
    got = program(tg.compile)
    tg.manual_seed(0)
    want = program(_eager)
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert type(a) is type(b), f"observation {i}: {type(a)} vs {type(b)}"
        if isinstance(a, tg.Tensor):
            assert a.dtype is b.dtype, f"observation {i}: {a.dtype} vs {b.dtype}"
            a, b = a.detach().numpy(), b.detach().numpy()
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"observation {i} differs")
    return got


def _calls(f, *args, n=4):
    return [f(*args) for _ in range(n)]


# ---- floats: a traced float promotes and comes back as the Python float it is ---------

def test_a_float_argument_times_a_0d_tensor_keeps_the_tensors_dtype():
    # eager: loss * 0.5 is float32; the traced float is a 0-d float64 tensor, which must
    # not promote as one (it was float64 results, silently)
    def program(comp):
        x = tg.randn(3)
        f = comp(lambda x, a: (x.sum() * a, x.mean() * (1 - a) + a, tg.arange(3) * a,
                               x.half().sum() * a, tg.ones(()) * a, a * tg.tensor(2.0)))
        return [t for a in (0.5, 1.5, 2.5) for t in f(x, a)]
    _same(program)


def test_a_comparison_of_float_arguments_is_a_bool():
    def program(comp):
        f = comp(lambda x, a: (x * a, a > 0.5, a * 2 <= 1.0))
        return [v for a in (0.25, 0.75, 1.0) for v in f(tg.ones(2), a)]
    _same(program)


@pytest.mark.parametrize("opt", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_a_0d_parameter_is_updated_in_its_own_dtype(opt):
    # optimizer hyperparameters are traced floats too: g * -lr stays float32
    def program(comp):
        scale = tg.nn.Parameter(tg.tensor(1.5))
        w = tg.nn.Parameter(tg.ones(3))
        o = getattr(tg.optim, opt)([scale, w], lr=0.1)

        @comp
        def step(x):
            o.zero_grad()
            loss = ((w * x).sum() * scale - 1.0) ** 2
            loss.backward()
            o.step()
            return loss
        x = tg.arange(3.0)
        return [t for _ in range(4) for t in (step(x), scale.detach().clone())]
    _same(program)


# ---- results that alias: eager's share memory, compiled calls' must not be new -------

def test_outputs_that_alias_arguments_state_or_each_other():
    def aliased(comp):
        f = comp(lambda x: (lambda y: (y, y, y.view(-1)))(x * 2))
        x = tg.arange(4.0)
        obs = []
        for _ in range(4):
            a, b, c = f(x)
            a.add_(1)
            obs += [b.clone(), c.clone(), a is b]
        return obs

    def argument(comp):
        f = comp(lambda x: (x, x.detach(), x * 1))
        x = tg.arange(4.0)
        obs = []
        for _ in range(4):
            a, b, _ = f(x)
            b.add_(1)
            obs += [a is x, x.clone()]
        return obs

    def state(comp):
        model = tg.nn.Linear(2, 2)
        o = tg.optim.SGD(model.parameters(), lr=0.1)

        @comp
        def step(x):
            o.zero_grad()
            model(x).sum().backward()
            o.step()
            return model.weight, model.bias.detach(), model.weight.grad
        obs = []
        for _ in range(4):
            w, b, g = step(tg.ones(1, 2))
            b.add_(1.0)
            obs += [w is model.weight, g is model.weight.grad, model.bias.clone()]
        return obs

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "tracegrad.compile")
        for program in (aliased, argument, state):
            _same(program)
    with pytest.raises(GraphBreak, match="output 0 is arg0"):
        tg.compile(lambda x: x.detach(), fullgraph=True)(tg.ones(2))
    # an output that is the argument or state itself is returned as that very tensor
    w = tg.zeros(2)
    g = tg.compile(lambda x: (x.mul_(2), w.add_(x), x * 1), fullgraph=True)
    x = tg.ones(2)
    for _ in range(4):
        a, b, _ = g(x)
        assert a is x and b is w
    assert x.tolist() == [16.0, 16.0] and w.tolist() == [30.0, 30.0]
    assert g.cache_info().hits == 3
    p = tg.ones(2, requires_grad=True)
    with pytest.raises(GraphBreak, match="output 0 is an input or state tensor itself"):
        tg.compile(lambda y: (p, (p * y).sum()), fullgraph=True)(tg.ones(2))
    f = tg.compile(lambda x, a: (a, a, x * a))       # a float returned twice is no alias
    _calls(f, tg.ones(2), 0.5)
    assert not f.graph_breaks and f.cache_info().hits == 3


# ---- Python side effects -------------------------------------------------------------

class _Trainer:
    def __init__(self):
        self.model = tg.nn.Linear(2, 2)
        self.opt = tg.optim.SGD(self.model.parameters(), lr=0.1)
        self.steps = 0
        self.history = []

    def step(self, x):
        self.steps += 1
        self.opt.zero_grad()
        loss = self.model(x).sum()
        loss.backward()
        self.opt.step()
        return loss


def test_a_compiled_methods_counter_on_its_object_is_not_skipped():
    t = _Trainer()
    step = tg.compile(t.step)
    with pytest.warns(UserWarning, match=r"self\.steps: 0 -> 1"):
        _calls(step, tg.ones(1, 2))
    assert t.steps == 4


@pytest.mark.parametrize("opt", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_training_loops_with_schedulers_and_submodule_lists_stay_compiled(opt):
    class Net(tg.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = tg.nn.ModuleList([tg.nn.Linear(4, 6), tg.nn.Linear(6, 2)])
            self.norm = tg.nn.BatchNorm1d(6)
            self.drop = tg.nn.Dropout(0.2)
            self.cfg = {"act": "relu"}

        def forward(self, x):
            x = self.drop(self.norm(self.layers[0](x)).relu())
            return self.layers[1](x)
    model = Net()
    o = getattr(tg.optim, opt)(model.parameters(), lr=0.01)
    sched = tg.optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.9)
    config = {"w": 0.5}

    @tg.compile
    def step(x, y):
        o.zero_grad()
        loss = ((model(x) - y) ** 2).mean() * config["w"]
        loss.backward()
        o.step()
        return loss
    x, y = tg.randn(8, 4), tg.randn(8, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(5):
            step(x, y)
            sched.step()
    assert not step.graph_breaks and step.cache_info().hits == 3


class _Config:
    def __init__(self):
        self.scale = 2.0
        self.seen = 0
        self.log = {"hist": [], "counts": {"n": 0}}


_EFFECTS = {  # each alone must be seen
    "setattr on a plain object": lambda st: setattr(st["cfg"], "seen", st["cfg"].seen + 1),
    "a nested dict": lambda st: st["cfg"].log["counts"].__setitem__(
        "n", st["cfg"].log["counts"]["n"] + 1),
    "a list in a dict": lambda st: st["hist"]["runs"]["loss"].append(1.0),
    "a deque": lambda st: st["q"].append(0),
    "a list a module keeps": lambda st: st["model"].history.append(0),
}


@pytest.mark.parametrize("effect", sorted(_EFFECTS))
def test_nested_containers_plain_objects_and_deques_are_not_skipped(effect):
    import collections
    model = tg.nn.Linear(2, 2)
    model.history = []
    st = {"cfg": _Config(), "hist": {"runs": {"loss": []}}, "q": collections.deque(),
          "model": model}
    do = _EFFECTS[effect]

    def step(x):
        do(st)
        return model(x).sum()
    f = tg.compile(step)
    with pytest.warns(UserWarning, match="side effect"):
        for _ in range(3):
            f(tg.ones(1, 2))
    assert (st["cfg"].seen + st["cfg"].log["counts"]["n"] + len(st["hist"]["runs"]["loss"])
            + len(st["q"]) + len(model.history)) == 3


def test_reading_nested_python_state_stays_compiled():
    cfg, table = _Config(), {"a": {"b": [1.0, 2.0]}}
    model = tg.nn.Linear(2, 2)
    f = tg.compile(lambda x: model(x * cfg.scale).sum() * table["a"]["b"][1])
    for _ in range(3):
        f(tg.ones(1, 2))
    assert not f.graph_breaks and f.cache_info().hits == 2


def test_functions_of_a_float_argument_give_tensors_as_in_eager():
    def fn(x, a):
        return tg.as_tensor(a), tg.exp(a), tg.as_tensor(a > 0.5), tg.sin(a) + x, a * 2
    f = tg.compile(fn)
    for a in (0.25, 0.5, 0.75, 1.0):
        got, want = f(tg.ones(2), a), fn(tg.ones(2), a)
        for g, w in zip(got, want, strict=True):
            assert type(g) is type(w)
            if isinstance(w, tg.Tensor):
                assert g.dtype == w.dtype
                np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-6)
            else:
                assert g == w
    assert f.cache_info().misses == 1
