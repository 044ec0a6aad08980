"""Compile-time work that must stay linear in the graph: the tracer's input naming and
its captured-state checks (benchmarks/compile.py times them; nothing is timed here)."""
from __future__ import annotations

import numpy as np

import tracegrad as tg
from tracegrad.ir.sources import Arg
from tracegrad.ir.tracer import Tracer


def test_input_names_stay_unique_and_in_order():
    tr = Tracer(False, name="f")
    arr = np.zeros(2, np.float32)
    names = ["t", "t", "t_1", "t", "w", "t", "w"]
    for i, n in enumerate(names):
        tr._new_input(arr, tg.float32, Arg(i, n), n)
    assert tr.input_names == ["t", "t_1", "t_1_1", "t_2", "w", "t_3", "w_1"]


def test_many_state_tensors_with_one_name_trace_and_match_eager():
    ws = [tg.randn(3) for _ in range(120)]

    def f(x):
        out = x
        for w in ws:
            out = out + w
        for w in ws[:50]:
            w.mul_(0.5)  # in-place writes to captured state
        return out

    x = tg.randn(3)
    g = tg.trace(f, x)
    assert len(set(g.input_names)) == len(g.input_names) == 121
    step = tg.compile(f)
    ws_copy = [w.detach().clone() for w in ws]
    for _ in range(3):
        got = step(x)
        want = x + sum(ws_copy[1:], ws_copy[0])
        for w in ws_copy[:50]:
            w.mul_(0.5)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5)
    for w, c in zip(ws, ws_copy, strict=True):
        np.testing.assert_allclose(w.numpy(), c.numpy(), rtol=1e-6)
