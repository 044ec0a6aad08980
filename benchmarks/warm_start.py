"""Warm starts: a second process running the same script reaches its compiled step faster.

    python benchmarks/warm_start.py [--repeats 3] [--threads 1] [--only NAME] [--no-gpt]

For each model of ``models.py`` (seed net, MLP, CNN, GPT), a cold process and then a warm
process run the same script against one fresh, temporary cache folder
(``TRACEGRAD_CACHE_DIR``): the cold one compiles and fills the folder, the warm one loads
from it. Each process first pays the costs every run shares (importing jax and tracegrad,
starting jax's CPU backend, one tiny compiled function, all outside the timed part), then
calls the compiled training step until a call has run the XLA program ("time to compiled
step": the tracing calls, which run eagerly, the passes, codegen and XLA's compile or
cache load, and that first compiled call). A third process with the cache off
(``TRACEGRAD_CACHE_DIR=off``) is the baseline the cold one is checked against (the cost
of writing the cache). Each triple runs ``--repeats`` times with new folders; the table
shows the median, and the whole process's wall time beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def child(model: str) -> dict:
    """In a fresh process: the time this script takes to reach its compiled step."""
    from _util import pin_threads
    pin_threads()
    import models

    import tracegrad as tg
    warm = tg.compile(lambda a: a * 3 + 2)  # shared one-time costs: jax, backend, lowering
    x = tg.ones(3)
    for _ in range(3):
        warm(x)
    build = next(b for label, (b, _) in models.MODELS.items() if label.startswith(model))
    step, args = build(tg)
    step = tg.compile(step)
    t0 = time.perf_counter()
    calls, last = 0, t0
    while step.cache_info().hits == 0 and calls < 10:
        last = time.perf_counter()
        step(*args).item()  # .item(): until XLA is done
        calls += 1
    total = time.perf_counter() - t0
    entry = next(e for e in step._cache.values() if e.lowered is not None)
    tm = entry.timings
    files = [f for f in os.listdir(tg.config.cache_dir)] if tg.config.cache_dir else []
    return {"total": total, "calls": calls, "built": last - t0,
            "trace": tm.get("trace", 0.0),
            "passes": tm.get("passes", 0.0), "codegen": tm.get("codegen", 0.0),
            "xla": tm.get("xla_first_call", 0.0), "entries": len(files)}


def run_child(model: str, cache: str, threads: int) -> dict:
    env = dict(os.environ, TRACEGRAD_CACHE_DIR=cache,
               PYTHONPATH=os.pathsep.join([ROOT, HERE, os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, os.path.abspath(__file__), "--child", model,
           "--threads", str(threads)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    out = done.stdout
    got = json.loads(out.strip().splitlines()[-1])
    got["process"] = time.perf_counter() - t0
    return got


MODEL_NAMES = {"seed": "seed net", "MLP": "MLP", "CNN": "CNN", "GPT": "GPT"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only")
    ap.add_argument("--no-gpt", action="store_true")
    ap.add_argument("--child")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    sys.path[:0] = [ROOT, HERE]  # (the footer reports the tracegrad the children import)
    from _util import env_lines, fmt_time, print_table

    rows, notes, missed = [], [], []
    for model, label in MODEL_NAMES.items():
        if (args.only and args.only.lower() not in model.lower()) or \
                (args.no_gpt and model == "GPT"):
            continue
        cold, warm, off = [], [], []
        for _ in range(args.repeats):  # cold, warm, off in turn: drift in load hits all
            with tempfile.TemporaryDirectory(prefix="tg-warm-") as d:
                cold.append(run_child(model, d, args.threads))
                warm.append(run_child(model, d, args.threads))
            off.append(run_child(model, "off", args.threads))

        def med(runs, k):
            return statistics.median(r[k] for r in runs)
        r = med(cold, "total") / med(warm, "total")
        rows.append([label, fmt_time(med(off, "total"), "ms"), fmt_time(med(cold, "total"), "ms"),
                     fmt_time(med(warm, "total"), "ms"), f"{r:.1f}x",
                     "yes" if r >= 5 else "NO",
                     f"{med(cold, 'process'):.2f} / {med(warm, 'process'):.2f} s",
                     str(cold[0]["entries"])])
        if r < 5:
            missed.append(label)
        for name, runs in (("cold", cold), ("warm", warm)):
            notes.append(f"  {label}, {name}: {runs[0]['calls']} calls; the eager tracing "
                         f"calls before the build {med(runs, 'built') * 1e3:.0f} ms (trace "
                         f"{med(runs, 'trace') * 1e3:.0f} ms of the last), passes "
                         f"{med(runs, 'passes') * 1e3:.0f} ms, codegen "
                         f"{med(runs, 'codegen') * 1e3:.0f} ms, XLA first call (compile or "
                         f"load, and run) {med(runs, 'xla') * 1e3:.0f} ms")
    footer = [f"time to compiled step: median of {args.repeats} (cold, warm, cache off) "
              "triples, each a fresh process after the shared warm-up; process = the whole "
              "child process's wall time (python start, imports, warm-up, the calls)",
              "cache entries: files the cold process left in the folder (its programs, the "
              "warm-up's included)", "where the time goes (median):", *notes, *env_lines()]
    print_table("warm start: time to the first compiled training step, cold vs warm cache",
                ["model", "cache off", "cold", "warm", "cold/warm", ">= 5x", "process cold/warm",
                 "cache entries"], rows, footer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
