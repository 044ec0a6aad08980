"""The runtime layer: compile()'s arguments, the module wrapper, threads, interrupts,
random="eager", jax's configuration, and the guards' own texts."""
from __future__ import annotations

import os
import threading
import warnings

import numpy as np
import pytest

import tracegrad as tg


def _steps(n, f, *args):
    return [f(*args) for _ in range(n)]


# ---- compile()'s arguments ------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {"mode": "default"}, {"mode": "reduce-overhead"}, {"mode": "max-autotune"},
    {"mode": "max-autotune-no-cudagraphs"}, {"backend": "inductor"}, {"backend": "jax"},
    {"dynamic": False}, {"dynamic": True}, {"options": {}}, {"fullgraph": True},
])
def test_compile_accepts_torch_values(kwargs):
    f = tg.compile(lambda x: x * 2 + 1, **kwargs)
    x = tg.arange(3.)
    assert [r.tolist() for r in _steps(3, f, x)] == [[1., 3., 5.]] * 3
    assert f.cache_info().hits == 2


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "fast"}, "unknown mode 'fast'"),
    ({"backend": "cudagraphs"}, "backend 'cudagraphs' is not available"),
    ({"backend": lambda gm, ex: gm}, "is not available"),
    ({"dynamic": "yes"}, "dynamic must be None, True or False"),
    ({"options": {"triton.cudagraphs": True}}, "inductor settings"),
    ({"random": "torch"}, "random must be 'device' or 'eager'"),
])
def test_compile_refuses_unknown_values_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tg.compile(lambda x: x, **kwargs)


def test_eager_backends_and_disable_run_the_function_itself():
    fn = lambda x: x + 1  # noqa: E731
    assert tg.compile(fn, backend="eager") is fn
    assert tg.compile(fn, disable=True) is fn


def _gen(x):
    yield x


async def _coro(x):
    return x


@pytest.mark.parametrize("target, message", [
    (_gen, "generator or async function"), (_coro, "generator or async function"),
    (tg.nn.Linear, "not the class Linear"), (3, "expects a callable"),
])
def test_compile_refuses_what_it_cannot_compile_at_compile_time(target, message):
    with pytest.raises(TypeError, match=message):
        tg.compile(target)


def test_compiled_module_is_module_like_as_torchs():
    tg.manual_seed(0)
    m = tg.nn.Sequential(tg.nn.Linear(3, 4), tg.nn.Dropout(0.5), tg.nn.Linear(4, 1))
    cm = tg.compile(m)
    assert isinstance(cm, tg.nn.Module)
    assert [id(p) for p in cm.parameters()] == [id(p) for p in m.parameters()]
    assert list(cm.state_dict()) == [f"_orig_mod.{k}" for k in m.state_dict()]
    assert cm._orig_mod is m and cm.training is m.training
    x = tg.ones(2, 3)
    cm.eval()
    assert not m.training and not m[1].training
    got = [cm(x) for _ in range(3)]
    for g in got:
        np.testing.assert_allclose(g.detach().numpy(), m(x).detach().numpy(), rtol=1e-6)
    assert cm.cache_info().hits == 2
    cm.train()
    assert m.training and m[1].training
    assert "OptimizedModule" in repr(cm) and "(_orig_mod): Sequential" in repr(cm)


# ---- jax's configuration ----------------------------------------------------------

def test_using_tracegrad_leaves_jax_x64_off_for_the_users_own_jax():
    import jax.numpy as jnp
    before = jnp.arange(3.0).dtype
    f = tg.compile(lambda x: x * 2)
    x64 = tg.ones(3, dtype=tg.float64)
    out = _steps(3, f, x64)[-1]
    assert out.dtype is tg.float64 and out.numpy().dtype == np.float64
    assert before == jnp.arange(3.0).dtype == jnp.float32


# ---- random="eager" ----------------------------------------------------------------

def _dropout_run(compiled, steps=5):
    tg.manual_seed(0)
    m = tg.nn.Sequential(tg.nn.Linear(8, 16), tg.nn.ReLU(), tg.nn.Dropout(0.3),
                         tg.nn.Linear(16, 1))
    opt = tg.optim.SGD(m.parameters(), lr=0.1)

    def step(x):
        opt.zero_grad()
        noise = tg.randn(4, 1)
        loss = (m(x) + noise * 0.1).pow(2).mean()
        loss.backward()
        opt.step()
        return loss, noise

    f = tg.compile(step, random="eager") if compiled else step
    x = tg.ones(4, 8)
    out = [f(x) for _ in range(steps)]
    return [(loss.item(), noise.numpy()) for loss, noise in out], m[0].weight.detach().numpy()


def test_random_eager_draws_the_eager_generators_numbers_each_call():
    eager, w_eager = _dropout_run(False)
    comp, w_comp = _dropout_run(True)
    for (le, ne), (lc, nc) in zip(eager, comp, strict=True):
        assert np.array_equal(ne, nc)          # the draws themselves: bit for bit
        assert lc == pytest.approx(le, rel=1e-5)
    np.testing.assert_allclose(w_comp, w_eager, rtol=1e-5, atol=1e-7)
    # and the generator is left where eager leaves it
    tg.manual_seed(0)
    _dropout_run(False)
    after_eager = tg.randn(3).numpy()
    _dropout_run(True)
    assert np.array_equal(tg.randn(3).numpy(), after_eager)


def test_random_eager_matches_torch_bit_for_bit():
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    want = [torch.randn(5).numpy() for _ in range(3)]
    tg.manual_seed(3)
    f = tg.compile(lambda x: x + tg.randn(5), random="eager")
    got = [f(tg.zeros(5)).numpy() for _ in range(3)]
    for a, b in zip(got, want, strict=True):
        assert np.array_equal(a, b)
    assert f.cache_info().hits == 2


# ---- threads -----------------------------------------------------------------------

def test_eager_ops_in_another_thread_are_not_recorded_into_a_trace():
    started, release = threading.Event(), threading.Event()
    other = {}

    def slow(x):
        started.set()
        release.wait(5)
        return x * 2

    f = tg.compile(slow)

    def worker():
        started.wait(5)
        other["y"] = (tg.ones(3) + 1).sum()  # eager, while the main thread traces
        release.set()

    t = threading.Thread(target=worker)
    t.start()
    got = f(tg.arange(3.))
    t.join()
    assert got.tolist() == [0., 2., 4.] and other["y"].item() == 6.0
    g = f.explain(tg.arange(3.)).stages["traced"]
    assert [e.prim.name for e in g.eqns] == ["mul"]


def test_two_threads_call_compiled_functions_at_once():
    tg.manual_seed(0)
    w = tg.randn(16, 16)
    f = tg.compile(lambda x: (x @ w).tanh().sum())
    xs = [tg.randn(8, 16) for _ in range(4)]
    want = [(x @ w).tanh().sum().item() for x in xs]
    got, errors = {}, []

    def worker(k):
        try:
            got[k] = [f(xs[k]).item() for _ in range(20)]
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k in range(4):
        assert got[k] == pytest.approx([want[k]] * 20, rel=1e-5)


# ---- interrupts --------------------------------------------------------------------

def _counting_step():
    tg.manual_seed(1)
    m = tg.nn.Linear(64, 64)
    opt = tg.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    count = tg.zeros(())

    def step(x):
        opt.zero_grad()
        loss = m(x).pow(2).mean()
        loss.backward()
        opt.step()
        count.add_(1)
        return loss

    return m, opt, count, step


_INTERRUPTED_LOOP = r"""
import os, signal, sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_compile_runtime import _counting_step
import tracegrad as tg

m, opt, count, step = _counting_step()
f = tg.compile(step)
x = tg.ones(32, 64)
for _ in range(3):
    f(x)  # traced, built, run: from here on every call is a cache hit
interrupted = 0
armed = [False]  # interrupt only inside compiled calls (the loop itself is no test)
signal.signal(signal.SIGALRM,
              lambda *a: os.kill(os.getpid(), signal.SIGINT) if armed[0] else None)
signal.setitimer(signal.ITIMER_REAL, 0.002, 0.0007)
for _ in range(300):
    try:
        armed[0] = True
        f(x)
        armed[0] = False
    except KeyboardInterrupt:
        armed[0] = False
        interrupted += 1
signal.setitimer(signal.ITIMER_REAL, 0, 0)
signal.signal(signal.SIGINT, signal.default_int_handler)
n = int(count.item())  # every tensor is readable: no deleted (donated) buffers
w = m.weight.detach().numpy().copy()
buf = opt.state[m.weight]["momentum_buffer"].numpy().copy()
m2, opt2, count2, step2 = _counting_step()
for _ in range(n):
    step2(x)
ok = np.allclose(w, m2.weight.detach().numpy(), rtol=1e-4, atol=1e-6) and np.allclose(
    buf, opt2.state[m2.weight]["momentum_buffer"].numpy(), rtol=1e-4, atol=1e-6)
print("RESULT", n, interrupted, ok)
"""


def test_ctrl_c_during_compiled_steps_leaves_state_readable_and_whole(tmp_path):
    import subprocess
    import sys
    script = tmp_path / "loop.py"
    script.write_text(_INTERRUPTED_LOOP.format(tests=os.path.dirname(__file__)))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=600)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")]
    assert line, out.stdout + out.stderr
    _, n, interrupted, ok = line[0].split()
    # all or nothing: the parameters and momentum are those of exactly ``n`` whole steps
    assert ok == "True", line
    assert int(interrupted) > 0 and int(n) > 0


def test_an_exception_in_a_tracing_call_leaves_what_eager_leaves():
    m, opt, count, step = _counting_step()
    calls = {"n": 0}

    def failing(x):
        loss = step(x)
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("boom")
        return loss

    f = tg.compile(failing)
    x = tg.ones(4, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="boom"):
            f(x)
    # the tracing call ran eagerly: the step made before the raise stays, as in eager
    m2, opt2, count2, step2 = _counting_step()
    step2(x)
    assert count.item() == count2.item() == 1.0
    np.testing.assert_array_equal(m.weight.detach().numpy(), m2.weight.detach().numpy())


# ---- guard texts -------------------------------------------------------------------

def test_recompile_reasons_name_what_changed():
    cfg = {"temp": 2.0}
    g = tg.compile(lambda x: (x / cfg["temp"]).sum())
    x = tg.ones(3)
    _steps(3, g, x)
    cfg["temp"] = 4.0
    assert g(x).item() == 0.75
    assert "cfg['temp']: 2.0 -> 4.0" in g.recompile_reasons[-1]
    m = tg.nn.Sequential(tg.nn.Linear(3, 1))
    cm = tg.compile(m)
    _steps(3, cm, x)
    m[0] = tg.nn.Linear(3, 1)
    np.testing.assert_allclose(cm(x).detach().numpy(), m(x).detach().numpy(), rtol=1e-6)
    assert "submodule '0' replaced" in cm.recompile_reasons[-1]


def test_a_global_named_like_an_attribute_the_step_uses_does_not_retrace():
    ns = {"tg": tg}
    exec("m = tg.nn.Linear(3, 1)\nopt = tg.optim.SGD(m.parameters(), lr=0.1)\nstep = 0\n"
         "def train(x):\n    opt.zero_grad()\n    l = m(x).sum()\n    l.backward()\n"
         "    opt.step()\n    return l\n", ns)
    f = tg.compile(ns["train"])
    x = tg.ones(2, 3)
    for i in range(6):
        ns["step"] = i
        f(x)
    assert f.cache_info().hits >= 3, f.recompile_reasons


class _Scaled(tg.nn.Module):
    scale = 2.0  # a class attribute the forward reads

    def __init__(self):
        super().__init__()
        self.fc = tg.nn.Linear(3, 1)

    def forward(self, x):
        return self.fc(x) * self.scale


def test_a_class_attribute_the_forward_reads_is_guarded():
    m = _Scaled()
    cm = tg.compile(m)
    x = tg.ones(2, 3)
    _steps(3, cm, x)
    try:
        _Scaled.scale = 5.0
        np.testing.assert_allclose(cm(x).detach().numpy(), m(x).detach().numpy(), rtol=1e-6)
        assert "_Scaled.scale: 2.0 -> 5.0" in cm.recompile_reasons[-1]
    finally:
        _Scaled.scale = 2.0


def test_generated_jax_has_no_self_assignments():
    import re
    f = tg.compile(lambda x, w: ((x @ w).exp() + 1).sin().tanh().sum())
    x, w = tg.ones(4, 3), tg.ones(3, 2)
    _steps(3, f, x, w)
    src = f.explain(x, w).source
    assert "jnp.sin" in src
    assert not [ln for ln in src.splitlines() if re.match(r"\s*(\w+) = \1\s*$", ln)], src


def test_an_in_place_shape_change_of_state_between_calls_retraces():
    w = tg.ones(3)
    f = tg.compile(lambda x: x * w)
    x = tg.arange(3.)
    _steps(3, f, x)
    w.unsqueeze_(0)  # outside the compiled function: the state tensor's shape changes
    assert tuple(f(x).shape) == tuple((x * w).shape) == (1, 3)
    assert "shape (3,) -> (1, 3)" in f.recompile_reasons[-1]
