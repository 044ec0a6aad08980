"""Tensor repr, digit for digit as PyTorch prints it."""
from __future__ import annotations

import numpy as np
import pytest

import tracegrad as tg

rs = np.random.RandomState(0)
CASES = [
    "T.tensor([1., 2., 3.])", "T.tensor([0.1, 2., 3.])", "T.tensor([1e-5, 1.])",
    "T.tensor([1e9, 1.])",
    "T.tensor([123456789., 1.])", "T.tensor(3.25)", "T.tensor(3.)", "T.tensor(-0.)", "T.tensor([])",
    "T.tensor([[1, 2], [3, 4]])", "T.tensor([True, False])", "T.tensor(True)", "T.tensor(7)",
    "T.tensor([float('nan'), 1.])", "T.tensor([float('inf'), -float('inf'), 1.5])",
    "T.tensor([float('nan')])", "T.tensor([1e100, 1e-100])", "T.tensor([[0.001, 1000.]])",
    "T.tensor([1e-4])", "T.tensor([99999.5, 1.])", "T.tensor([1e8, 1.])", "T.tensor([0.5, 1e-4])",
    "T.tensor([-5e-5])", "T.tensor([1.23456789e7])",
    "T.tensor([[[1., 2.], [3., 4.]], [[5., 6.], [7., 8.]]])",
    "T.tensor([2**31, 1])", "T.tensor([1000., 1.])", "T.tensor([1001., 1.])",
    "T.tensor(DATA[0])", "T.tensor(DATA[1])", "T.tensor(DATA[2])", "T.tensor(DATA[3])",
    "T.tensor(DATA[4])", "T.tensor(DATA[5])", "T.arange(2000)", "T.arange(2000).reshape(40, 50)",
    "T.ones(3, 1001)", "T.tensor([1., 2.], dtype=T.float64)",
    "T.tensor([1., 2.], dtype=T.float64, requires_grad=True)", "T.tensor([1, 2], dtype=T.int32)",
    "T.tensor([], dtype=T.float64)", "T.tensor([], dtype=T.int64)", "T.zeros(0, 3)",
    "T.zeros(2, 0, dtype=T.float64)", "T.tensor(DATA[6], requires_grad=True)",
    "T.tensor(DATA[6], requires_grad=True) * 2",
    "T.tensor(DATA[7], dtype=T.float64, requires_grad=True) * 2",
    "T.tensor(DATA[6], dtype=T.float64, requires_grad=True).sum()",
    "T.tensor(1.5, requires_grad=True)",
    "T.tensor([1, 2], dtype=T.uint8)", "T.tensor([1, 2], dtype=T.int16)",
    "T.tensor([1, 2], dtype=T.int8)",
    "T.tensor([[True, False], [False, True]])", "T.tensor([1e-3, 1e3], dtype=T.float64)",
    "T.linspace(0, 1, 100)", "T.tensor([0.12345678, 10000.5])", "T.full((3,), float('nan'))",
    "T.tensor([1e-20, 0.])", "T.tensor([-0.0, 1.0])", "T.tensor(DATA[8])",
]
DATA = [rs.randn(30).tolist(), rs.randn(7, 9).tolist(), (rs.randn(4, 20) * 1e4).tolist(),
        rs.randn(1200).tolist(), rs.randn(40, 40).tolist(), rs.randn(3, 3, 3, 50).tolist(),
        rs.randn(20).tolist(), rs.randn(3, 20).tolist(), (rs.randn(12) * 100).round().tolist()]


@pytest.mark.parametrize("expr", CASES)
def test_repr_matches_torch(expr):
    torch = pytest.importorskip("torch")
    assert repr(eval(expr, {"T": tg, "DATA": DATA})) == repr(eval(expr, {"T": torch, "DATA": DATA}))


@pytest.mark.parametrize("expr, expected", [
    ("T.tensor([1., 2., 3.])", "tensor([1., 2., 3.])"),
    ("T.tensor([0.1, 2.])", "tensor([0.1000, 2.0000])"),
    ("T.tensor([1e-5, 1.])", "tensor([1.0000e-05, 1.0000e+00])"),
    ("T.tensor(3.25)", "tensor(3.2500)"),
    ("T.tensor([])", "tensor([])"),
    ("T.zeros(0, 3)", "tensor([], size=(0, 3))"),
    ("T.tensor([], dtype=T.int64)", "tensor([], dtype=torch.int64)"),
    ("T.tensor([[1, 2], [3, 4]])", "tensor([[1, 2],\n        [3, 4]])"),
    ("T.tensor([True, False])", "tensor([ True, False])"),
    ("T.tensor([float('nan'), -float('inf'), 1.5])", "tensor([   nan,   -inf, 1.5000])"),
    ("T.tensor([1., 2.], dtype=T.float64)", "tensor([1., 2.], dtype=torch.float64)"),
    ("T.tensor([1., 2.], dtype=T.float64, requires_grad=True)",
     "tensor([1., 2.], dtype=torch.float64, requires_grad=True)"),
    ("T.tensor(1.5, requires_grad=True) * 2", "tensor(3., grad_fn=<MulBackward0>)"),
    ("T.arange(2000)", "tensor([   0,    1,    2,  ..., 1997, 1998, 1999])"),
    ("T.linspace(0., 6.283185307179586, 7, requires_grad=True).sin()",
     "tensor([ 0.0000e+00,  8.6603e-01,  8.6603e-01, -8.7423e-08, -8.6603e-01,\n"
     "        -8.6603e-01,  1.7485e-07], grad_fn=<SinBackward0>)"),
])
def test_repr_pinned(expr, expected):
    assert repr(eval(expr, {"T": tg})) == expected


def test_long_rows_wrap_and_suffix_moves_to_next_line():
    t = tg.tensor([[1.25, 2., 3., 4., 5., 6., 7., 8.]], dtype=tg.float64, requires_grad=True) * 1.5
    assert repr(t) == ("tensor([[ 1.8750,  3.0000,  4.5000,  6.0000,  7.5000,  9.0000, 10.5000, "
                       "12.0000]],\n"
                       "       dtype=torch.float64, grad_fn=<MulBackward0>)")


def test_set_printoptions():
    try:
        tg.set_printoptions(precision=2)
        assert repr(tg.tensor([0.12345])) == "tensor([0.12])"
        tg.set_printoptions(sci_mode=True)
        assert repr(tg.tensor([0.5])) == "tensor([5.00e-01])"  # precision=2 persists, as in torch
    finally:
        tg.set_printoptions(profile="default")
    assert repr(tg.tensor([0.12345])) == "tensor([0.1235])"
