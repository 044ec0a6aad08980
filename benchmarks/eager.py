"""Eager-mode overhead: tracegrad's tape beside torch eager.

    python benchmarks/eager.py [--rounds 7]

Rows:
  * a 150-op elementwise chain on a 3-element tensor (y*1.01, y+0.01, sin, x50,
    then sum): per-op overhead of the tape, forward and forward+backward;
  * one training step of the seed two-layer net (64x1000x100x10, by-hand SGD).

Prints one table from one run. Times are the median of interleaved rounds; the
ratio is tracegrad/torch of those, and "spread" is the range of the per-round
tracegrad/torch ratios (the run's noise).
"""
from __future__ import annotations

import argparse

from _util import pin_threads

THREADS = pin_threads()  # before numpy is imported

import numpy as np  # noqa: E402  (after pin_threads)
from _util import (  # noqa: E402  (after pin_threads)
    compare,
    env_lines,
    fmt_time,
    optional_torch,
    print_table,
    ratio,
    set_torch_threads,
)

import tracegrad as tg  # noqa: E402  (after pin_threads)

CHAIN_REPEATS = 50               # (mul, add, sin) x 50 = 150 ops, then sum
CHAIN_OPS = 3 * CHAIN_REPEATS + 1
SEED_SHAPE = (64, 1000, 100, 10)  # N, D_in, H, D_out
LR = 1e-6


def chain(x):
    y = x
    for _ in range(CHAIN_REPEATS):
        y = y * 1.01
        y = y + 0.01
        y = y.sin()
    return y.sum()


def chain_cases(lib):
    """(forward, forward without grad, forward+backward) callables for tg or torch."""
    lib.manual_seed(0)
    x = lib.randn(3, requires_grad=True)

    def forward():
        chain(x)

    def forward_no_grad():
        with lib.no_grad():
            chain(x)

    def forward_backward():
        chain(x).backward()

    return forward, forward_no_grad, forward_backward


def seed_data(seed: int = 0):
    """x, y, w1, w2 of the seed net as float32 NumPy arrays."""
    rng = np.random.default_rng(seed)
    N, D_in, H, D_out = SEED_SHAPE
    return (rng.standard_normal((N, D_in), np.float32),
            rng.standard_normal((N, D_out), np.float32),
            rng.standard_normal((D_in, H), np.float32),
            rng.standard_normal((H, D_out), np.float32))


def seed_step_case(lib):
    """The tutorial's training step for tg or torch: relu(x @ w1) @ w2, squared error,
    by-hand SGD. Returns (step, (x, y)); the weights live in the step's closure."""
    xa, ya, w1a, w2a = seed_data()
    x, y = lib.tensor(xa), lib.tensor(ya)
    w1, w2 = lib.tensor(w1a, requires_grad=True), lib.tensor(w2a, requires_grad=True)

    def step(x, y):
        nonlocal w1, w2
        y_pred = x.mm(w1).clamp(min=0).mm(w2)
        loss = (y_pred - y).pow(2).sum()
        loss.backward()
        with lib.no_grad():
            w1 -= LR * w1.grad
            w2 -= LR * w2.grad
            w1.grad.zero_()
            w2.grad.zero_()
        return loss

    return step, (x, y)


def _bind(case):
    step, args = case
    return lambda: step(*args)


def _cpu(t):
    return " / ".join(f"{v.cpu_over_wall:.2f}" for v in t.values())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds")
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS/torch threads (read by pin_threads at import)")
    ap.add_argument("--min-batch", type=float, default=0.05,
                    help="seconds of calls per candidate per round")
    args = ap.parse_args(argv)

    torch = optional_torch()
    set_torch_threads(torch, THREADS)  # the same count numpy's BLAS was given

    rows_spec = []   # (label, unit, per-op divisor, target ratio, tg fn, torch fn)
    tg_cases = chain_cases(tg)
    th_cases = chain_cases(torch) if torch is not None else (None, None, None)
    labels = ["150-op chain, forward (grad on)", "150-op chain, forward (no_grad)",
              "150-op chain, forward+backward"]
    targets = [1.0, None, 1.0]
    for label, target, tfn, pfn in zip(labels, targets, tg_cases, th_cases, strict=False):
        rows_spec.append((label + ", per op", "us", CHAIN_OPS, target, tfn, pfn))
    rows_spec.append(("seed two-layer net step (64x1000x100x10)", "ms", 1, 1.1,
                      _bind(seed_step_case(tg)),
                      _bind(seed_step_case(torch)) if torch is not None else None))

    rows = []
    for label, unit, per, target, tfn, pfn in rows_spec:
        cands = {"tracegrad": tfn}
        if pfn is not None:
            cands["torch"] = pfn
        t = compare(cands, rounds=args.rounds, min_batch_s=args.min_batch)
        tg_s = t["tracegrad"].median / per
        if pfn is None:
            rows.append([label, fmt_time(tg_s, unit), "n/a", "n/a",
                         f"<= {target}x" if target else "-", "n/a",
                         f"{t['tracegrad'].spread:.0%} (tg alone)", _cpu(t)])
            continue
        r, lo, hi = ratio(t["tracegrad"], t["torch"])
        met = "-" if target is None else ("yes" if r <= target else "NO")
        rows.append([label, fmt_time(tg_s, unit), fmt_time(t["torch"].median / per, unit),
                     f"{r:.2f}x", f"<= {target}x" if target else "(info)", met,
                     f"{lo:.2f}-{hi:.2f}x", _cpu(t)])

    footer = [f"per op = chain time / {CHAIN_OPS} forward ops (150 elementwise + sum); "
              "chain input: float32[3] with requires_grad=True",
              f"times: median of {args.rounds} interleaved rounds; ratio = tracegrad/torch of "
              f"those; spread = min-max of the {args.rounds} per-round ratios (noise)"]
    footer += env_lines(torch)
    print_table("tracegrad eager vs torch eager", ["benchmark", "tracegrad", "torch", "ratio",
                                                    "target", "met?", "spread",
                                                    "CPU/wall tg/torch"], rows, footer)


if __name__ == "__main__":
    main()
