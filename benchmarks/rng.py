"""Random numbers: tracegrad's PyTorch-stream generator beside torch's CPU generator.

    python benchmarks/rng.py [--rounds 15]

Rows: rand, randn (float32 and float64) and randint of 1000x100, randperm(10000),
nn.Linear(1000, 100) construction (kaiming-uniform init), dropout on 1000x100.
Each tracegrad/torch pair draws the same numbers (see tracegrad/random.py).

Prints one table from one run. Times are the median of interleaved rounds; the
ratio is tracegrad/torch of those, and "spread" is the range of the per-round
tracegrad/torch ratios (the run's noise).
"""
from __future__ import annotations

import argparse

from _util import pin_threads

THREADS = pin_threads()  # before numpy is imported

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

SHAPE = (1000, 100)


def cases(lib):
    """(label, zero-argument callable) rows for tg or torch."""
    ones = lib.ones(*SHAPE)
    return [
        ("rand 1000x100 float32", lambda: lib.rand(*SHAPE)),
        ("randn 1000x100 float32", lambda: lib.randn(*SHAPE)),
        ("randn 1000x100 float64", lambda: lib.randn(*SHAPE, dtype=lib.float64)),
        ("randn 15 (scalar path)", lambda: lib.randn(15)),
        ("randint(0, 10) 1000x100", lambda: lib.randint(0, 10, SHAPE)),
        ("randperm(10000)", lambda: lib.randperm(10000)),
        ("nn.Linear(1000, 100) init", lambda: lib.nn.Linear(1000, 100)),
        ("dropout(p=0.5) 1000x100", lambda: lib.nn.functional.dropout(ones, 0.5)),
    ]


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
    set_torch_threads(torch, THREADS)
    peer = cases(torch) if torch is not None else [(label, None) for label, _ in cases(tg)]

    rows = []
    for (label, tfn), (_, pfn) in zip(cases(tg), peer, strict=True):
        cands = {"tracegrad": tfn} if pfn is None else {"tracegrad": tfn, "torch": pfn}
        t = compare(cands, rounds=args.rounds, min_batch_s=args.min_batch)
        if pfn is None:
            rows.append([label, fmt_time(t["tracegrad"].median, "ms"), "n/a", "n/a", "n/a",
                         _cpu(t)])
            continue
        r, lo, hi = ratio(t["tracegrad"], t["torch"])
        rows.append([label, fmt_time(t["tracegrad"].median, "ms"),
                     fmt_time(t["torch"].median, "ms"), f"{r:.2f}x", f"{lo:.2f}-{hi:.2f}x",
                     _cpu(t)])

    footer = [f"times: median of {args.rounds} interleaved rounds; ratio = tracegrad/torch of "
              f"those; spread = min-max of the {args.rounds} per-round ratios (noise)"]
    footer += env_lines(torch)
    print_table("random numbers: tracegrad vs torch (CPU)",
                ["benchmark", "tracegrad", "torch", "ratio", "spread",
                 "CPU/wall tg/torch"], rows, footer)


if __name__ == "__main__":
    main()
