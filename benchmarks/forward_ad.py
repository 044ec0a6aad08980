"""Forward mode, anomaly mode and profiler costs, in one table.

    python benchmarks/forward_ad.py [--rounds 7]

Rows:
  * "jvp <prim>": pushing a tangent through one primitive call with its explicit
    JVP rule from the op table (A) vs the rule derived from its VJP by the
    double-VJP trick (B; NOTE: [Derived JVP] in tracegrad/autograd/forward_ad.py).
    The primal op alone is the "op" column, for scale.
  * "<workload>: <mode>": the same workload with nothing on (A) vs anomaly mode,
    the profiler, or an open dual level without duals (B). Workloads: a 151-op
    elementwise chain on a 3-element tensor, forward + backward (per-op overhead),
    and one training step of the seed two-layer net (64x1000x100x10).

Times are the median of interleaved rounds; "B/A" is their ratio and "spread"
the range of the per-round ratios (the run's noise).
"""
from __future__ import annotations

import argparse
import warnings

from _util import pin_threads

THREADS = pin_threads()  # before numpy is imported

import numpy as np  # noqa: E402  (after pin_threads)
from _util import compare, env_lines, fmt_time, print_table, ratio  # noqa: E402  (after pin_threads)

import tracegrad as tg  # noqa: E402  (after pin_threads)
import tracegrad.autograd.forward_ad as fwAD  # noqa: E402  (after pin_threads)
from tracegrad import primitives as P  # noqa: E402  (after pin_threads)
from tracegrad.autograd import profiler  # noqa: E402  (after pin_threads)
from tracegrad.autograd._op_hooks import state  # noqa: E402  (after pin_threads)
from tracegrad.autograd.forward_ad import derived_jvp  # noqa: E402  (after pin_threads)
from tracegrad.demo import two_layer_step  # noqa: E402  (after pin_threads)
from tracegrad.tensor import apply  # noqa: E402  (after pin_threads)

SHAPE = (64, 100)


def jvp_cases(rng):
    """(label, prim, args, params) with float32 inputs of the benchmark's shape."""
    x = tg.tensor(rng.uniform(0.5, 1.5, SHAPE).astype(np.float32))
    y = tg.tensor(rng.uniform(0.5, 1.5, SHAPE).astype(np.float32))
    w = tg.tensor(rng.standard_normal((SHAPE[1], 32)).astype(np.float32))
    return [
        ("exp", P.exp_p, (x,), {}),
        ("tanh", P.tanh_p, (x,), {}),
        ("mul", P.mul_p, (x, y), {}),
        ("div", P.div_p, (x, y), {}),
        ("matmul", P.matmul_p, (x, w), {}),
        ("sum(dim=1)", P.sum_p, (x,), {"axis": (1,), "keepdim": False}),
        ("softmax", P.softmax_p, (x,), {"axis": 1}),
        ("log_softmax", P.log_softmax_p, (x,), {"axis": 1}),
        ("reshape", P.reshape_p, (x,), {"shape": (100, 64)}),
        ("broadcast_to", P.broadcast_to_p, (x[0],), {"shape": SHAPE}),
    ]


def explicit_jvp(prim, args, params, out, tangents):
    t = None
    for ti, rule in zip(tangents, prim.jvp, strict=False):
        if ti is not None and rule is not None:
            c = rule(ti, out, *args, **params)
            t = c if t is None else t + c
    return t


def chain(x):
    y = x
    for _ in range(50):
        y = (y * 1.01 + 0.01).sin()
    return y.sum()


def chain_step(x):
    x.grad = None
    chain(x).backward()


def make_two_layer(seed=0):
    tg.manual_seed(seed)
    x, y = tg.randn(64, 1000), tg.randn(64, 10)
    w1 = tg.randn(1000, 100, requires_grad=True)
    w2 = tg.randn(100, 10, requires_grad=True)
    return lambda: two_layer_step(x, y, w1, w2, 1e-6)


class _Mode:
    """Turn a mode on around each call (entering it is part of what is measured only
    for the profiler, whose results are built when it exits)."""

    @staticmethod
    def anomaly(fn):
        def run():
            tg.autograd.set_detect_anomaly(True)
            try:
                fn()
            finally:
                tg.autograd.set_detect_anomaly(False)
        return run

    @staticmethod
    def profiler(fn):
        def run():
            with profiler.profile():
                fn()
        return run

    @staticmethod
    def dual_level(fn):
        def run():
            with fwAD.dual_level():
                fn()
        return run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    rows = []
    for label, prim, xs, params in jvp_cases(rng):
        out = apply(prim, xs, params)
        ts = [tg.tensor(rng.standard_normal(tuple(a.shape)).astype(np.float32)) for a in xs]

        def with_rule(prim=prim, xs=xs, params=params, out=out, ts=ts):
            state.fw_paused = True  # as forward_ad.propagate runs rules
            try:
                return explicit_jvp(prim, xs, params, out, ts)
            finally:
                state.fw_paused = False

        t = compare({"op": lambda prim=prim, xs=xs, params=params: apply(prim, xs, params),
                     "explicit": with_rule,
                     "derived": lambda prim=prim, xs=xs, params=params, out=out, ts=ts:
                         derived_jvp(prim, xs, params, out, ts)},
                    rounds=args.rounds, min_batch_s=0.03)
        r, lo, hi = ratio(t["derived"], t["explicit"])
        rows.append([f"jvp {label} {list(xs[0].shape)}", fmt_time(t["op"].median, "us"),
                     fmt_time(t["explicit"].median, "us"), fmt_time(t["derived"].median, "us"),
                     f"{r:.2f}x", f"{lo:.2f}-{hi:.2f}"])

    x = tg.tensor([0.1, 0.2, 0.3], requires_grad=True)
    workloads = [("chain 151 ops fwd+bwd", lambda: chain_step(x)),
                 ("two-layer step", make_two_layer())]
    for wname, fn in workloads:
        for mode in ("anomaly", "profiler", "dual_level"):
            t = compare({"off": fn, "on": getattr(_Mode, mode)(fn)}, rounds=args.rounds,
                        min_batch_s=0.05)
            r, lo, hi = ratio(t["on"], t["off"])
            label = {"anomaly": "anomaly mode", "profiler": "profiler on",
                     "dual_level": "dual level open, no duals"}[mode]
            rows.append([f"{wname}: {label}", "", fmt_time(t["off"].median, "us"),
                         fmt_time(t["on"].median, "us"), f"{r:.2f}x", f"{lo:.2f}-{hi:.2f}"])

    print_table("tracegrad forward mode / anomaly mode / profiler costs (float32)",
                ["case", "op", "A (explicit / off)", "B (derived / on)", "B/A", "spread"],
                rows, env_lines())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
