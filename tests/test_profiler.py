"""The profiler: op names and counts forward and backward, PyTorch's table layout,
record_function ranges, nesting (self vs total), chrome trace export, compiled
functions as one event per call, and the seed programs' usage."""
from __future__ import annotations

import json

import pytest

import tracegrad as tg
from tracegrad.autograd import profiler


def _counts(prof):
    return {e.key: e.count for e in prof.key_averages()}


def test_seed000_loop_table():
    x = tg.randn(2, 3, requires_grad=True)
    y = tg.rand(2, 3, requires_grad=True)
    z = tg.ones(2, 3, requires_grad=True)
    with tg.autograd.profiler.profile(use_cuda=False) as prf:
        for _ in range(100):
            z = (z / x) * y
    assert _counts(prf) == {"aten::div": 100, "aten::mul": 100}
    table = prf.key_averages().table(sort_by="self_cpu_time_total")
    lines = table.splitlines()
    assert lines[0] == lines[2] == lines[-2]
    assert lines[0] == "-" * 13 + "  " + ("-" * 12 + "  ") * 6
    assert lines[1][:15] == "         Name  "  # right-aligned, as PyTorch
    assert [c.strip() for c in lines[1].split("  ") if c.strip()] == [
        "Name", "Self CPU %", "Self CPU", "CPU total %", "CPU total", "CPU time avg",
        "# of Calls"]
    assert lines[-1].startswith("Self CPU time total: ")
    rows = [ln.split() for ln in lines[3:-2]]
    assert {r[0] for r in rows} == {"aten::div", "aten::mul"}
    assert all(r[-1] == "100" for r in rows)
    selfs = [float(r[1].rstrip("%")) for r in rows]
    assert selfs == sorted(selfs, reverse=True) and sum(selfs) == pytest.approx(100, abs=0.05)


def test_seed001_custom_function_forward_and_backward(capsys):
    class Func(tg.autograd.Function):
        @staticmethod
        def forward(ctx, x, y):
            expx, expy = tg.exp(x), tg.exp(y)
            ctx.save_for_backward(expx, expy)
            return 3 * x + 2 * y + expx + expy

        @staticmethod
        def backward(ctx, grad_output):
            expx, expy = ctx.saved_tensors
            return grad_output * (3 + expx), grad_output * (2 + expy)

    x = tg.tensor([1., 2.], requires_grad=True)
    y = tg.tensor([3., 4.], requires_grad=True)
    with tg.autograd.profiler.profile() as prof:
        z = Func.apply(x, y)
        z.backward(tg.tensor([1., 1.]))
    print(prof)
    out = capsys.readouterr().out
    assert "FuncBackward" in out and "aten::exp" in out and "Self CPU time total" in out
    counts = _counts(prof)
    assert counts["aten::exp"] == 2 and counts["FuncBackward"] == 1


def test_backward_nodes_nest_their_ops():
    a = tg.ones(3, requires_grad=True)
    with profiler.profile() as prof:
        (a * 2).sum().backward()
    evs = {e.key: e for e in prof.key_averages()}
    assert {"aten::mul", "aten::sum", "MulBackward0", "SumBackward0", "aten::expand"} <= set(evs)
    mb = evs["MulBackward0"]
    assert mb.self_cpu_time_total <= mb.cpu_time_total
    assert prof.self_cpu_time_total == pytest.approx(
        sum(e.self_cpu_time_total for e in prof.events()))


def test_record_function_context_and_decorator():
    @profiler.record_function("decorated")
    def work(t):
        return t * 2

    with profiler.profile() as prof:
        with profiler.record_function("block"):
            tg.ones(2) + 1
        work(tg.ones(2))
        work(tg.ones(2))
    counts = _counts(prof)
    assert counts["block"] == 1 and counts["decorated"] == 2 and counts["aten::mul"] == 2
    evs = {e.key: e for e in prof.key_averages()}
    assert evs["decorated"].cpu_time_total >= evs["aten::mul"].cpu_time_total
    assert evs["decorated"].self_cpu_time_total < evs["decorated"].cpu_time_total
    with profiler.record_function("outside a profile"):  # a no-op
        pass


def test_chrome_trace(tmp_path):
    with profiler.profile() as prof:
        with profiler.record_function("outer"):
            (tg.ones(4, requires_grad=True) * 3).sum().backward()
    path = tmp_path / "trace.json"
    prof.export_chrome_trace(str(path))
    data = json.loads(path.read_text())
    events = data["traceEvents"]
    assert {e["name"] for e in events} >= {"outer", "aten::mul", "MulBackward0"}
    for e in events:
        assert e["ph"] == "X" and e["dur"] >= 0 and e["ts"] >= 0
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
    outer = next(e for e in events if e["name"] == "outer")
    mul = next(e for e in events if e["name"] == "aten::mul")
    assert outer["ts"] <= mul["ts"] and mul["ts"] + mul["dur"] <= outer["ts"] + outer["dur"]


def test_compiled_function_is_one_event_per_call():
    @tg.compile
    def step(x):
        return (x * 2).sin().sum()

    x = tg.ones(3)
    step(x)  # traced outside the profile
    with tg.profiler.profile(activities=[tg.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step(x)
    counts = _counts(prof)
    assert counts["tracegrad::compiled::step"] == 3
    assert counts["tracegrad::compile"] == 1 and counts["tracegrad::xla_first_call"] == 1
    assert "aten::mul" not in counts  # the compiled calls run no eager ops


def test_table_options_and_errors():
    with profiler.profile() as prof:
        for _ in range(3):
            tg.ones(2) * 2
        tg.ones(2) + 1
    t = prof.key_averages().table(sort_by="count", row_limit=1)
    assert len(t.splitlines()) == 6 and "aten::mul" in t and "aten::add" not in t
    assert "aten::add" in prof.table()  # unaggregated: one row per event
    assert len(prof.table().splitlines()) == 5 + 4
    with pytest.raises(RuntimeError, match="didn't finish"):
        p = profiler.profile()
        p.__enter__()
        try:
            p.key_averages()
        finally:
            p.__exit__(None, None, None)
    with profiler.profile(enabled=False) as off:
        tg.ones(2) * 2
    assert off.function_events is None
