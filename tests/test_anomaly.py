"""Anomaly mode: NaN in backward names the node and the forward line, in-place
errors name the line of the in-place op, the switches nest and restore."""
from __future__ import annotations

import inspect
import warnings

import pytest

import tracegrad as tg
from tracegrad import autograd


def _line_of(marker, fn):
    src, start = inspect.getsourcelines(fn)
    return start + next(i for i, s in enumerate(src) if marker in s)


def test_nan_names_the_backward_and_the_forward_line():
    def run():
        x = tg.zeros(2, requires_grad=True)
        y = x / x  # FORWARD
        y.sum().backward()

    with pytest.warns(UserWarning, match="Anomaly Detection has been enabled"):
        with autograd.detect_anomaly():
            with pytest.raises(RuntimeError) as info:
                run()
    msg = str(info.value)
    # d(x/x)/dx = 1/x is inf at 0; the divisor's gradient -x/x**2 is 0/0 (as PyTorch)
    assert msg.startswith("Function 'DivBackward0' returned nan values in its 1th output.")
    assert f"test_anomaly.py\", line {_line_of('# FORWARD', run)}, in run" in msg
    assert "y = x / x" in msg


def test_without_anomaly_mode_nan_passes_silently():
    x = tg.zeros(2, requires_grad=True)
    (x / x).sum().backward()
    assert x.grad.isnan().all()


def test_inplace_error_names_the_inplace_line():
    def run():
        a = tg.tensor([1.0, 2.0], requires_grad=True)
        b = a.exp()
        c = b * 2
        b.add_(1)  # INPLACE
        c.sum().backward()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with autograd.detect_anomaly():
            with pytest.raises(RuntimeError) as info:
                run()
    msg = str(info.value)
    assert "modified by an inplace operation" in msg
    assert f"test_anomaly.py:{_line_of('# INPLACE', run)}" in msg
    assert "Error detected in ExpBackward0" in msg  # as PyTorch: mul saved only the 2


def test_set_detect_anomaly_function_context_and_decorator():
    assert not autograd.is_anomaly_enabled()
    autograd.set_detect_anomaly(True)
    try:
        assert autograd.is_anomaly_enabled()
        y = tg.ones(2, requires_grad=True) * 3
        assert "traceback_" in y.grad_fn.metadata
    finally:
        autograd.set_detect_anomaly(False)
    assert not autograd.is_anomaly_enabled()
    with autograd.set_detect_anomaly(True, check_nan=False):
        assert not autograd.anomaly_mode.is_anomaly_check_nan_enabled()
        x = tg.zeros(1, requires_grad=True)
        (x / x).sum().backward()       # NaN allowed when check_nan=False
    assert not autograd.is_anomaly_enabled()

    @autograd.detect_anomaly()
    def step():
        return autograd.is_anomaly_enabled()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert step() and not autograd.is_anomaly_enabled()
    assert tg.ones(2, requires_grad=True).mul(2).grad_fn.metadata is None


def test_anomaly_under_create_graph_and_compile():
    x = tg.tensor([0.0, 1.0], requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with autograd.detect_anomaly():
            (g,) = autograd.grad((x * x).sum(), x, create_graph=True)   # 2x = [0, 2]
            with pytest.raises(RuntimeError, match="'SqrtBackward0' returned nan"):
                (g.sqrt() * 0).sum().backward()                         # 0 / (2 sqrt(0))

            @tg.compile
            def f(x):
                return (x * 2).sum()
            assert float(f(tg.ones(3))) == 6.0
