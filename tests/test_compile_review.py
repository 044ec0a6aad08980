"""Adversarial whole programs against lazy results, float outputs and the Python
side-effect check of ``tracegrad.compile``: compiled calls against eager ones."""
from __future__ import annotations

import numpy as np
import pytest

import tracegrad as tg


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
