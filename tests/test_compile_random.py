"""Random ops inside @tracegrad.compile: fresh numbers on every call, never a constant.

One row per random entry point (out of place, in place, nn.init, dropout, randperm,
a user Generator). Each row's function is compiled and called several times (the
first call traces, the later ones run the XLA program); the draws must differ from
call to call and have the distribution's shape, dtype and range. The call that
traces is eager's, number for number.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import tracegrad as tg
from tracegrad import nn
from tracegrad.ir.tracer import GraphBreak
from tracegrad.passes import evaluate

N = 4096  # elements per draw: enough for a coarse mean check
CALLS = 4


def _empty(dtype=tg.float32, n=N):
    return tg.zeros(n, dtype=dtype)


def _kaiming_uniform(x):
    w = tg.zeros(64, N // 64)
    nn.init.kaiming_uniform_(w, a=math.sqrt(5))
    return w.reshape(-1) + x


def _init(init_fn, **kw):
    def f(x):
        w = tg.zeros(64, N // 64)
        init_fn(w, **kw)
        return w.reshape(-1) + x
    return f


def _in_range(lo, hi):
    return lambda v: lo <= v.min() and v.max() <= hi


def _values(allowed):
    return lambda v: set(np.unique(v).tolist()) <= set(allowed)


_FAN = N // 64  # fan_in of the (64, N // 64) weights above
_XAVIER = math.sqrt(6.0 / (64 + _FAN))

# name, fn(x) with x = zeros(N) float32, result dtype, check(values), expected mean or None
ROWS = [
    ("uniform_", lambda x: _empty().uniform_() + x, "float32", _in_range(0, 1), 0.5),
    ("uniform_(2,3)", lambda x: _empty().uniform_(2, 3) + x, "float32", _in_range(2, 3), 2.5),
    ("uniform_ f64", lambda x: _empty(tg.float64).uniform_(-1, 0), "float64",
     _in_range(-1, 0), -0.5),
    ("normal_", lambda x: _empty().normal_() + x, "float32", None, 0.0),
    ("normal_(5,2) f64", lambda x: _empty(tg.float64).normal_(5.0, 2.0), "float64", None, 5.0),
    ("normal_ few", lambda x: _empty(n=5).normal_(1.0, 0.5), "float32", None, None),
    ("bernoulli_(0.3)", lambda x: _empty().bernoulli_(0.3) + x, "float32",
     _values({0, 1}), 0.3),
    ("bernoulli_ default", lambda x: _empty(tg.int64).bernoulli_(), "int64",
     _values({0, 1}), 0.5),
    ("bernoulli_(tensor p)", lambda x: _empty().bernoulli_(x + 0.8), "float32",
     _values({0, 1}), 0.8),
    ("bernoulli_(p f64)", lambda x: _empty(tg.float64).bernoulli_(
        tg.full((N,), 0.25, dtype=tg.float64)), "float64", _values({0, 1}), 0.25),
    ("random_(0,5)", lambda x: _empty(tg.int64).random_(0, 5), "int64",
     _values(range(5)), 2.0),
    ("random_(5) f32", lambda x: _empty().random_(5) + x, "float32", _values(range(5)), 2.0),
    ("random_(-3,3) i32", lambda x: _empty(tg.int32).random_(-3, 3), "int32",
     _values(range(-3, 3)), -0.5),
    ("random_() i64", lambda x: _empty(tg.int64).random_(), "int64",
     _in_range(0, 2 ** 63 - 1), 2.0 ** 62),
    ("random_(-5, None) i64", lambda x: _empty(tg.int64).random_(-5, None), "int64",
     _in_range(-5, 2 ** 63 - 1), 2.0 ** 62),
    ("random_() f32", lambda x: _empty().random_() + x, "float32",
     _in_range(0, 2 ** 24), 2.0 ** 23),
    ("random_() bool", lambda x: _empty(tg.bool).random_(), "bool", _values({0, 1}), 0.5),
    ("random_() u8", lambda x: _empty(tg.uint8).random_(), "uint8", _in_range(0, 255), 127.5),
    ("init.uniform_", _init(nn.init.uniform_, a=-2.0, b=-1.0), "float32",
     _in_range(-2, -1), -1.5),
    ("init.normal_", _init(nn.init.normal_, mean=3.0, std=0.1), "float32", None, 3.0),
    ("init.kaiming_uniform_", _kaiming_uniform, "float32",
     _in_range(-1 / math.sqrt(_FAN), 1 / math.sqrt(_FAN)), 0.0),
    ("init.kaiming_normal_", _init(nn.init.kaiming_normal_), "float32", None, 0.0),
    ("init.xavier_uniform_", _init(nn.init.xavier_uniform_), "float32",
     _in_range(-_XAVIER, _XAVIER), 0.0),
    ("init.xavier_normal_", _init(nn.init.xavier_normal_), "float32", None, 0.0),
    ("rand", lambda x: tg.rand(N) + x, "float32", _in_range(0, 1), 0.5),
    ("randn f64", lambda x: tg.randn(N, dtype=tg.float64), "float64", None, 0.0),
    ("randint", lambda x: tg.randint(3, 9, (N,)), "int64", _values(range(3, 9)), 5.5),
    ("randint f32", lambda x: tg.randint(0, 4, (N,), dtype=tg.float32) + x, "float32",
     _values(range(4)), 1.5),
    ("randperm", lambda x: tg.randperm(N), "int64",
     lambda v: sorted(v.tolist()) == list(range(N)), (N - 1) / 2),
    ("rand_like", lambda x: tg.rand_like(x) + x, "float32", _in_range(0, 1), 0.5),
    ("randn_like", lambda x: tg.randn_like(x) + x, "float32", None, 0.0),
    ("dropout", lambda x: nn.functional.dropout(x + 1, 0.25), "float32",
     _values({0, float(np.float32(1 / 0.75))}), 1.0),
    ("Dropout inplace", lambda x: nn.Dropout(0.5, inplace=True)(x + 1), "float32",
     _values({0, 2}), 1.0),
    ("normal(t, t)", lambda x: tg.normal(x + 2.0, x + 0.5), "float32", None, 2.0),
    ("normal(t, 3.0)", lambda x: tg.normal(x - 1.0, 3.0), "float32", None, -1.0),
    ("normal(1.0, t) f64", lambda x: tg.normal(1.0, tg.full((N,), 2.0, dtype=tg.float64)),
     "float64", None, 1.0),
    ("normal(4.0, 0.5, size)", lambda x: tg.normal(4.0, 0.5, (N,)) + x, "float32", None, 4.0),
    ("bernoulli(t)", lambda x: tg.bernoulli(x + 0.7), "float32", _values({0, 1}), 0.7),
    ("bernoulli(t, 0.2) i64", lambda x: tg.bernoulli(tg.zeros(N, dtype=tg.int64), 0.2),
     "int64", _values({0, 1}), 0.2),
    ("randint_like", lambda x: tg.randint_like(x, 2, 6) + x, "float32", _values(range(2, 6)),
     3.5),
    ("generator=", lambda x: _empty().uniform_(generator=_GEN) + tg.rand(N, generator=_GEN),
     "float32", _in_range(0, 2), 1.0),
]
_GEN = tg.Generator().manual_seed(5)


def _calls(fn, n=CALLS, *args):
    f = tg.compile(fn, fullgraph=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no graph break, no fallback
        return [f(*args).numpy().copy() for _ in range(n)]


@pytest.mark.parametrize("name, fn, dtype, check, mean", ROWS, ids=[r[0] for r in ROWS])
def test_random_entry_point_is_fresh_on_every_compiled_call(name, fn, dtype, check, mean):
    outs = _calls(fn, CALLS, tg.zeros(N))
    for v in outs:
        assert v.dtype == np.dtype(dtype) and v.shape == outs[0].shape
        if check is not None:
            assert check(v), (name, v.min(), v.max())
        if mean is not None:
            scale = max(1.0, abs(mean), float(v.astype(np.float64).std()))
            assert abs(v.astype(np.float64).mean() - mean) < 0.1 * scale, (name, v.mean())
    for i in range(len(outs)):
        for j in range(i):
            assert not np.array_equal(outs[i], outs[j]), f"{name}: calls {j} and {i} agree"


@pytest.mark.parametrize("name, fn", [(r[0], r[1]) for r in ROWS if r[0] != "generator="],
                         ids=[r[0] for r in ROWS if r[0] != "generator="])
def test_the_call_that_traces_gives_eager_numbers(name, fn):
    x = tg.zeros(N)
    tg.manual_seed(11)
    eager = fn(x).numpy().copy()
    after_eager = tg.get_rng_state()
    tg.manual_seed(11)
    traced = tg.compile(fn)(x).numpy()
    np.testing.assert_array_equal(traced, eager)
    assert tg.get_rng_state().tolist() == after_eager.tolist()


@pytest.mark.parametrize("name, fn", [(r[0], r[1]) for r in ROWS[:6] + ROWS[18:20]],
                         ids=[r[0] for r in ROWS[:6] + ROWS[18:20]])
def test_manual_seed_makes_a_sequence_of_compiled_calls_repeatable(name, fn):
    f = tg.compile(fn)
    x = tg.zeros(N)
    f(x), f(x)  # trace, then build
    runs = []
    for _ in range(2):
        tg.manual_seed(1234)
        runs.append([f(x).numpy().copy() for _ in range(3)])
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(runs[0][0], runs[0][1])


def test_a_random_fill_records_a_random_op_not_a_constant():
    g = tg.trace(lambda x: x.clone().uniform_(2, 3) + tg.empty(3).bernoulli_(0.5), tg.zeros(3))
    randoms = [e for e in g.eqns if e.prim.name == "random"]
    assert [(e.params["dist"], e.params.get("low")) for e in randoms] == \
        [("uniform", 2.0), ("uniform", None)]
    (v,) = evaluate(g, [np.zeros(3, np.float32), np.zeros(2, np.uint32)])
    assert v.dtype == np.float32 and ((v >= 2) & (v < 4)).all()


def test_state_filled_in_place_is_updated_on_the_host():
    buf = tg.zeros(N)

    @tg.compile
    def refill(x):
        buf.uniform_(-1, 1)
        return buf * x

    seen = []
    for _ in range(CALLS):
        out = refill(tg.ones(N)).numpy().copy()
        host = buf.numpy().copy()
        np.testing.assert_array_equal(out, host)
        assert -1 <= host.min() and host.max() <= 1
        seen.append(host)
    assert len({h.tobytes() for h in seen}) == CALLS


def test_a_module_reinitialised_inside_the_step_gets_fresh_weights():
    tg.manual_seed(0)
    lin = nn.Linear(16, 8)

    @tg.compile
    def step(x):
        lin.reset_parameters()
        return lin(x)

    x = tg.randn(4, 16)
    weights = []
    for _ in range(CALLS):
        out = step(x)
        w, b = lin.weight.detach().numpy().copy(), lin.bias.detach().numpy().copy()
        np.testing.assert_allclose(out.detach().numpy(), x.numpy() @ w.T + b, rtol=1e-5,
                                   atol=1e-5)
        assert np.abs(w).max() <= 1 / 4 and np.abs(b).max() <= 1 / 4
        weights.append(w)
    assert len({w.tobytes() for w in weights}) == CALLS


def test_dropout_module_in_training_draws_fresh_masks_and_eval_is_identity():
    model = nn.Sequential(nn.Linear(8, 64), nn.Dropout(0.5))
    f = tg.compile(lambda x: model(x))
    x = tg.ones(2, 8)
    masks = {((f(x) == 0).numpy()).tobytes() for _ in range(CALLS)}
    assert len(masks) == CALLS
    model.eval()
    with tg.no_grad():
        np.testing.assert_array_equal(f(x).numpy(), model[0](x).numpy())


@pytest.mark.parametrize("draw", [
    lambda x, a, b: x.clone().uniform_(a, b),
    lambda x, a, b: x.clone().normal_(a, b) * 0 + a,  # the mean, as a dynamic float
    lambda x, a, b: x.clone().bernoulli_(b - a) * 0 + a,
    lambda x, a, b: tg.normal(a, b - a, (N,)) * 0 + a,
    lambda x, a, b: tg.bernoulli(x, b - a) * 0 + a,
], ids=["uniform_", "normal_", "bernoulli_", "normal(a, b, size)", "bernoulli(x, p)"])
def test_float_arguments_as_parameters_stay_dynamic(draw):
    f = tg.compile(draw, fullgraph=True)
    x = tg.zeros(N)
    for a, b in [(0.0, 1.0), (2.0, 3.0), (-5.0, -4.5), (10.0, 10.25)]:
        v = f(x, a, b).numpy()
        assert a <= v.min() and v.max() <= b, (a, b, v.min(), v.max())


def test_bernoulli_with_a_traced_p_draws_per_call():
    f = tg.compile(lambda p: tg.zeros(N).bernoulli_(p), fullgraph=True)
    p = tg.full((N,), 0.5)
    outs = [f(p).numpy().copy() for _ in range(CALLS)]
    assert len({o.tobytes() for o in outs}) == CALLS
    assert abs(f(p * 0.2).numpy().mean() - 0.1) < 0.03


@pytest.mark.parametrize("body", [
    lambda g, x: (g.manual_seed(3), x.clone().normal_(generator=g))[1],
    lambda g, x: (tg.manual_seed(3), x + tg.rand(64))[1],
    lambda g, x: x + tg.rand(64, generator=tg.Generator()),
    lambda g, x: (g.set_state(_STATE), x.clone().uniform_(generator=g))[1],
    lambda g, x: (g.get_state(), x)[1],
], ids=["Generator.manual_seed", "manual_seed", "Generator()", "set_state", "get_state"])
def test_reseeding_inside_a_compiled_function_runs_eagerly_with_a_warning(body):
    g = tg.Generator()
    x = tg.zeros(64)
    f = tg.compile(lambda x: body(g, x))
    with pytest.warns(UserWarning, match="generator"):
        outs = [f(x).numpy().copy() for _ in range(CALLS)]
    for o in outs[1:]:  # eager: the reseeded stream repeats on every call
        np.testing.assert_array_equal(o, outs[0])
    with pytest.raises(GraphBreak, match="inside a compiled function"):
        tg.compile(lambda x: body(g, x), fullgraph=True)(x)


_STATE = tg.Generator().manual_seed(8).get_state()


def test_a_user_generator_gives_the_compiled_calls_their_keys():
    before = tg.get_rng_state().tolist()
    h = tg.Generator().manual_seed(9)
    fh = tg.compile(lambda x: x + tg.rand(64, generator=h))
    x = tg.zeros(64)
    draws = [fh(x).numpy().copy() for _ in range(CALLS)]
    assert len({d.tobytes() for d in draws}) == CALLS
    assert tg.get_rng_state().tolist() == before  # the default generator was not used
    h.manual_seed(9)
    again = [fh(x).numpy().copy() for _ in range(2)]
    h.manual_seed(9)
    np.testing.assert_array_equal(fh(x).numpy(), again[0])


def test_gradients_reach_a_leaf_reinitialised_inside_the_compiled_function():
    lin = nn.Linear(16, 8)
    step = tg.compile(lambda x: (lin.reset_parameters(), lin(x))[1].sum())
    x = tg.randn(4, 16)
    for _ in range(CALLS):
        lin.zero_grad()
        step(x).backward()
        np.testing.assert_allclose(lin.weight.grad.numpy(), np.ones((8, 4)) @ x.numpy(),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(lin.bias.grad.numpy(), np.full(8, 4.0))


def test_gradients_add_over_uses_before_and_after_an_in_place_reinit():
    w = tg.ones(3, requires_grad=True)

    def f(x):
        before = (w * x).sum()
        with tg.no_grad():
            w.uniform_(2, 3)
        return before + (w * w * x).sum()

    cf = tg.compile(f)
    x = tg.tensor([1.0, 2.0, 3.0])
    for _ in range(CALLS):
        w.grad = None
        with tg.no_grad():
            w.fill_(1.0)
        cf(x).backward()
        expected = x.numpy() + 2 * w.detach().numpy() * x.numpy()  # d/dw at each use
        np.testing.assert_allclose(w.grad.numpy(), expected, rtol=1e-6)


def test_state_written_before_it_is_read_is_written_back():
    buf = tg.zeros(3)

    @tg.compile
    def f(x):
        buf.copy_(x * 2)
        return x + 1

    for i in range(CALLS):
        f(tg.full((3,), float(i)))
        assert buf.tolist() == [2.0 * i] * 3


def test_a_generator_argument_draws_from_that_generator():
    f = tg.compile(lambda x, gen: x + tg.rand(64, generator=gen))
    x = tg.zeros(64)
    g1, g2 = tg.Generator(), tg.Generator()
    for _ in range(3):
        g1.manual_seed(1), g2.manual_seed(1)
        np.testing.assert_array_equal(f(x, g1).numpy(), f(x, g2).numpy())
