"""Peak memory of a training loop: tracegrad.compile vs a hand-written jax.jit step, and
tracegrad eager vs torch eager, on the models of ``models.py``.

    python benchmarks/memory.py [--steps 20] [--threads 1] [--only NAME] [--no-gpt]

Each (model, system) runs in a fresh process of its own: the same imports for all (numpy,
jax, tracegrad through ``models.py``; torch too for the torch row), the model and its data
built from the same NumPy arrays, XLA's CPU backend started, then ``--steps`` training
steps. The process reports its resident set size before the loop (``/proc/self/status``
VmRSS: imports, weights, data) and its peak over its whole life (``ru_maxrss`` of
``resource.getrusage``); "loop" is the peak minus the RSS before the loop: what the steps
themselves added at their worst. torch's import alone is larger than the others', so the
eager ratio is given on both.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SYSTEMS = ("tracegrad.compile", "tg.compile warm", "jax.jit", "tracegrad eager", "torch eager")
MODEL_NAMES = {"seed": "seed net", "MLP": "MLP", "CNN": "CNN", "GPT": "GPT"}


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(model: str, system: str, steps: int) -> dict:
    from _util import pin_threads
    pin_threads()
    import jax
    import models

    import tracegrad as tg
    jax.devices()  # XLA's CPU backend up before the baseline, in every process alike
    lib_build, jax_build = next(v for k, v in models.MODELS.items() if k.startswith(model))
    if system == "jax.jit":
        if jax_build is None:
            return {"skip": "no hand-written jax step for this model"}
        run = models.jax_runner(jax_build)
    else:
        lib = tg
        if system == "torch eager":
            import torch
            torch.set_num_threads(1)
            lib = torch
        step, args = lib_build(lib)
        if system.startswith("tracegrad.compile"):
            step = tg.compile(step)

        def run():
            return step(*args).item()
    before = _rss_mb()
    losses = [run() for _ in range(steps)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"before": before, "peak": peak, "last_loss": losses[-1]}


def run_child(model: str, system: str, steps: int, threads: int, cache: str = "off") -> dict:
    env = dict(os.environ, TRACEGRAD_CACHE_DIR=cache,
               PYTHONPATH=os.pathsep.join([ROOT, HERE, os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, os.path.abspath(__file__), "--child", model, "--system", system,
           "--steps", str(steps), "--threads", str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only")
    ap.add_argument("--no-gpt", action="store_true")
    ap.add_argument("--child")
    ap.add_argument("--system")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.system, args.steps)))
        return 0
    sys.path[:0] = [ROOT, HERE]
    from _util import env_lines, optional_torch, print_table

    def mb(v):
        return "n/a" if v is None else f"{v:.0f}"

    rows = []
    for model, label in MODEL_NAMES.items():
        if (args.only and args.only.lower() not in model.lower()) or \
                (args.no_gpt and model == "GPT"):
            continue
        got = {}
        for s in SYSTEMS:
            if s == "tg.compile warm":  # a second run of the same script: programs loaded
                with tempfile.TemporaryDirectory(prefix="tg-mem-") as d:
                    run_child(model, "tracegrad.compile", args.steps, args.threads, d)
                    got[s] = run_child(model, "tracegrad.compile", args.steps, args.threads, d)
            else:
                got[s] = run_child(model, s, args.steps, args.threads)
        cells = [label]
        for s in SYSTEMS:
            g = got[s]
            cells.append("n/a" if "skip" in g else
                         f"{mb(g['peak'])} ({mb(g['peak'] - g['before'])})")

        def r(a, b, key, got=got):
            ga, gb = got[a], got[b]
            if "skip" in ga or "skip" in gb:
                return "n/a"
            if key == "peak":
                return f"{ga['peak'] / gb['peak']:.2f}x"
            la, lb = ga["peak"] - ga["before"], gb["peak"] - gb["before"]
            return f"{la / lb:.2f}x" if lb > 1 else f"+{la:.0f} vs +{lb:.0f} MB"
        cells += [r("tracegrad.compile", "jax.jit", "peak"),
                  r("tg.compile warm", "jax.jit", "peak"), r("tracegrad.compile", "jax.jit",
                                                                 "loop"),
                  r("tracegrad eager", "torch eager", "peak"),
                  r("tracegrad eager", "torch eager", "loop")]
        rows.append(cells)
    footer = [f"MB: peak RSS of the process (ru_maxrss), in parentheses the loop's part (peak "
              f"minus RSS before the first of {args.steps} steps); one fresh process per cell, "
              "imports alike (numpy, jax, tracegrad; torch also imports torch); tracegrad."
              "compile without the persistent cache (compiling, as jax.jit does), 'tg.compile "
              "warm' a second run with it (its programs loaded, not compiled)",
              "compile/jax, warm/jax and eager/torch: ratio of peaks; loop: of the loops' parts "
              "(targets: <= 1.2x). The jax.jit process builds its parameters with jnp before "
              "the loop (in its 'before'); tracegrad.compile's first calls trace eagerly and "
              "then compile, XLA's compiler heap staying in the RSS: compare peaks",
              *env_lines(optional_torch())]
    print_table("peak memory of a training loop (MB)",
                ["model", *SYSTEMS, "compile/jax peak", "warm/jax peak", "loop",
                 "eager/torch peak", "loop"],
                rows, footer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
