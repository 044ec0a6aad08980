"""tracegrad.compile beside a hand-written jax.jit step and torch eager.

    python benchmarks/compile.py [--rounds 7] [--threads 1] [--max-nodes 100000]

Rows:
  * steady-state training steps (forward + backward + SGD), ms/step, for the seed
    two-layer net (64x1000x100x10, by-hand SGD) and an MLP (512x784x1024x10,
    nn.Linear + ReLU + cross_entropy, optim.SGD): tracegrad.compile of the whole
    step, tracegrad eager, jax.jit(value_and_grad) with the update inside the jit
    and donated params, torch eager;
  * first calls: tracegrad.compile's calls until the first compiled run (trace,
    passes, codegen, XLA compile) vs jax.jit's first call, each measured in a fresh
    process after a warm-up, fastest of 5;
  * a cache-hit call of f(x) = x * 2 + 1 on float32[3] vs jax.jit, to a host
    result and the call alone (dispatch);
  * trace + passes time vs graph size (about 1k, 10k, 100k equations).

Prints one table from one run. Times are the median of interleaved rounds (steady
state: pooled over a few fresh processes, as XLA's step time moves with where its
threads land; first calls: alternating fresh processes); ratios are tracegrad/peer of
those, and "spread" is the range of the per-round (paired) ratios: the run's noise.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from _util import pin_threads

THREADS = pin_threads()  # before numpy and jax are imported

import jax  # noqa: E402  (after pin_threads)
import jax.numpy as jnp  # noqa: E402  (after pin_threads)
import numpy as np  # noqa: E402  (after pin_threads)
from _util import (  # noqa: E402  (after pin_threads)
    Timing,
    compare,
    cpu_line,
    env_lines,
    fmt_time,
    optional_torch,
    print_table,
    ratio,
    set_torch_threads,
    time_once,
)
from eager import LR as SEED_LR, SEED_SHAPE, seed_data, seed_step_case  # noqa: E402  (after pin_threads)

import tracegrad as tg  # noqa: E402  (after pin_threads)
from tracegrad import nn, optim  # noqa: E402  (after pin_threads)
from tracegrad.codegen.jax_lower import lower, to_jax_source, x64  # noqa: E402  (after pin_threads)

# tracegrad lowers with 64-bit types enabled; switch it on up front so the jax peer
# runs in the same mode and no jit cache is dropped halfway through the run
jax.config.update("jax_enable_x64", True)

MLP_SHAPE = (512, 784, 1024, 10)   # batch, in, hidden, classes
MLP_LR = 0.01


# ---- the seed two-layer net -----------------------------------------------------------

def seed_tg(compiled: bool):
    """The tutorial step with tracegrad tensors (benchmarks/eager.py's), compiled or eager."""
    step, args = seed_step_case(tg)
    return (tg.compile(step) if compiled else step), args


def _seed_loss(params, x, y):
    w1, w2 = params
    y_pred = jnp.maximum(x @ w1, 0) @ w2
    return jnp.sum((y_pred - y) ** 2)


def seed_jax():
    xa, ya, w1a, w2a = seed_data()
    return _jax_sgd_step(_seed_loss, SEED_LR), [jnp.asarray(w1a), jnp.asarray(w2a)], \
        (jnp.asarray(xa), jnp.asarray(ya))


# ---- the MLP ---------------------------------------------------------------------------

def mlp_data(seed=0):
    rng = np.random.default_rng(seed)
    B, D, H, C = MLP_SHAPE
    return rng.standard_normal((B, D), np.float32), rng.integers(0, C, B)


def mlp_tg(compiled: bool):
    B, D, H, C = MLP_SHAPE
    xa, ya = mlp_data()
    tg.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, H), nn.ReLU(), nn.Linear(H, C))
    opt = optim.SGD(model.parameters(), lr=MLP_LR)

    def step(x, y):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    fn = tg.compile(step) if compiled else step
    return fn, (tg.tensor(xa), tg.tensor(ya))


def mlp_torch(torch):
    B, D, H, C = MLP_SHAPE
    xa, ya = mlp_data()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(D, H), torch.nn.ReLU(), torch.nn.Linear(H, C))
    opt = torch.optim.SGD(model.parameters(), lr=MLP_LR)

    def step(x, y):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step, (torch.from_numpy(xa), torch.from_numpy(ya))


def _mlp_loss(params, x, y):
    w1, b1, w2, b2 = params
    h = jnp.maximum(x @ w1.T + b1, 0)
    logp = jax.nn.log_softmax(h @ w2.T + b2, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def mlp_jax():
    B, D, H, C = MLP_SHAPE
    xa, ya = mlp_data()
    rng = np.random.default_rng(1)
    bound1, bound2 = 1 / np.sqrt(D), 1 / np.sqrt(H)   # nn.Linear's default init range
    params = [rng.uniform(-bound1, bound1, (H, D)), rng.uniform(-bound1, bound1, H),
              rng.uniform(-bound2, bound2, (C, H)), rng.uniform(-bound2, bound2, C)]
    params = [jnp.asarray(p, jnp.float32) for p in params]
    return _jax_sgd_step(_mlp_loss, MLP_LR), params, (jnp.asarray(xa), jnp.asarray(ya))


def _jax_sgd_step(loss_fn, lr):
    """The hand-written peer: value_and_grad and the SGD update in one jit, params donated."""
    def step(params, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        return [p - lr * g for p, g in zip(params, grads, strict=False)], loss
    return jax.jit(step, donate_argnums=0)


def jax_runner(step, params, data):
    """A zero-argument callable doing one jax step (state kept in a closure) and blocking."""
    state = [params]

    def run():
        state[0], loss = step(state[0], *data)
        jax.block_until_ready((state[0], loss))
        return loss

    return run


# ---- steady state -----------------------------------------------------------------------

_MODELS = {"seed": ("seed net", seed_tg, seed_step_case, seed_jax, 1.05, 1 / 1.5),
           "mlp": ("MLP", mlp_tg, mlp_torch, mlp_jax, 1.05, None)}


def steady_child(model, rounds, min_batch) -> dict:
    """Run in a fresh process: every candidate's seconds per step, one value per round."""
    label, tg_build, torch_build, jax_build, _, _ = _MODELS[model]
    torch = optional_torch()
    set_torch_threads(torch, THREADS)
    comp, args_c = tg_build(True)
    eager, args_e = tg_build(False)
    # .item(): a compiled call returns before XLA is done (its loss is read lazily); the
    # other three candidates finish their step before returning
    cands = {"compile": lambda: comp(*args_c).item(), "eager": lambda: eager(*args_e),
             "jax": jax_runner(*jax_build())}
    if torch is not None:
        tstep, targs = torch_build(torch)
        cands["torch"] = lambda: tstep(*targs)
    t = compare(cands, rounds=rounds, min_batch_s=min_batch)
    info = comp.cache_info()
    assert info.hits > 0, f"{label}: compiled step never hit its cache ({info})"
    return {name: [v.per_round, v.cpu_per_round] for name, v in t.items()}


_CPU_NOTES: list[str] = []  # CPU/wall per candidate of each steady-state model


def steady_rows(model, processes, rounds, min_batch):
    """The steady-state rows of one model, from ``processes`` fresh processes (XLA's
    step time differs from process to process, with where its threads land: 0.35-0.49
    ms for the same seed-net program here), their rounds pooled."""
    label, _, _, _, target_jax, target_torch = _MODELS[model]
    t: dict[str, Timing] = {}
    for _ in range(processes):
        for name, (per_round, cpu) in _child(["--steady", model, "--rounds", str(rounds),
                                              "--min-batch", str(min_batch)]).items():
            t.setdefault(name, Timing()).per_round.extend(per_round)
            t[name].cpu_per_round.extend(cpu)
    _CPU_NOTES.append(f"{label}: " + cpu_line(t).split(": ", 1)[1])

    def row(what, peer_name, peer, target, ours="compile"):
        c = t[ours]
        if peer not in t:
            return [f"{label}: {what}", fmt_time(c.median, "ms"), peer_name, "n/a", "n/a",
                    _target_text(target), "n/a", "n/a"]
        r, lo, hi = ratio(c, t[peer])
        return [f"{label}: {what}", fmt_time(c.median, "ms"), peer_name,
                fmt_time(t[peer].median, "ms"), f"{r:.2f}x", _target_text(target),
                _met(r, target), f"{lo:.2f}-{hi:.2f}x"]

    return [row("compiled step vs jax.jit", "jax.jit", "jax", target_jax),
            row("compiled step vs torch eager", "torch eager", "torch", target_torch),
            row("compiled step vs tracegrad eager", "tracegrad eager", "eager", None),
            # the bound on the torch target: XLA's own step, hand-written, against torch
            row("jax.jit step (peer) vs torch eager", "torch eager", "torch", None,
                ours="jax")]


def _child(argv) -> dict:
    """Run this script in a fresh process with ``argv``; its last line of JSON."""
    cmd = [sys.executable, os.path.abspath(__file__), *argv, "--threads", str(THREADS)]
    # first calls compile from scratch, as jax.jit's do: no persistent cache (a warm start
    # is benchmarks/warm_start.py's row)
    env = dict(os.environ, TRACEGRAD_CACHE_DIR="off")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def _target_text(target):
    if target is None:
        return "(info)"
    if target < 1:
        return f"<= {target:.3g}x ({1 / target:.3g}x faster)"
    return f"<= {target:.3g}x"


def _met(r, target):
    return "-" if target is None else ("yes" if r <= target else "NO")


# ---- first calls (each in a fresh process) ---------------------------------------------------

def _warm_up():
    """Pay the one-time costs both sides share (jax backend, tracegrad's lowering imports)."""
    jax.block_until_ready(jax.jit(lambda a: a * 2 + 1)(jnp.ones(3, jnp.float32)))
    f = tg.compile(lambda a: a * 3 + 2)
    x = tg.ones(3)
    for _ in range(3):
        f(x)


def first_call_child(which: str) -> dict:
    """Run in a fresh process: time the first calls of one implementation."""
    _warm_up()
    lib, model = which.split("-")
    if lib == "jax":
        step, params, data = (seed_jax if model == "seed" else mlp_jax)()
        run = jax_runner(step, params, data)
        return {"total": time_once(run)}
    fn, args = (seed_tg if model == "seed" else mlp_tg)(True)
    calls = []
    while fn.cache_info().hits == 0 and len(calls) < 10:
        calls.append(time_once(lambda: fn(*args).item()))  # .item(): until XLA is done
    steady = min(time_once(lambda: fn(*args).item()) for _ in range(3))
    rep = fn.explain(*args)
    passes = sum(v for k, v in rep.timings.items()
                 if k not in ("trace", "codegen", "xla_first_call"))
    return {"total": sum(calls), "calls": calls, "trace": rep.timings["trace"],
            "passes": passes, "codegen": rep.timings["codegen"],
            "xla": rep.timings.get("xla_first_call", float("nan")), "steady": steady}


def first_call_rows(repeats: int):
    def child(which):
        return _child(["--first-call", which])

    rows, notes = [], []
    for model, label in (("seed", "seed net"), ("mlp", "MLP")):
        tg_runs, jax_runs = [], []
        for _ in range(repeats):  # alternate, so drift in machine load hits both
            tg_runs.append(child(f"tg-{model}"))
            jax_runs.append(child(f"jax-{model}"))
        tg_total = min(r["total"] for r in tg_runs)
        jax_total = min(r["total"] for r in jax_runs)
        ratios = sorted(a["total"] / b["total"] for a, b in zip(tg_runs, jax_runs, strict=False))
        r = tg_total / jax_total
        rows.append([f"{label}: first calls until compiled vs jax.jit first call",
                     fmt_time(tg_total, "ms"), "jax.jit", fmt_time(jax_total, "ms"),
                     f"{r:.2f}x", _target_text(1.5), _met(r, 1.5),
                     f"{ratios[0]:.2f}-{ratios[-1]:.2f}x"])
        best = min(tg_runs, key=lambda d: d["total"])
        calls = " + ".join(f"{c * 1e3:.0f}" for c in best["calls"])
        notes.append(f"  {label}: {len(best['calls'])} calls ({calls} ms); trace "
                     f"{best['trace'] * 1e3:.1f} ms, passes {best['passes'] * 1e3:.1f} ms, "
                     f"codegen {best['codegen'] * 1e3:.1f} ms, XLA first call "
                     f"{best['xla'] * 1e3:.1f} ms; steady compiled step "
                     f"{best['steady'] * 1e3:.1f} ms")
    return rows, notes


# ---- cache hit ------------------------------------------------------------------------------

def cache_hit_rows(rounds, min_batch):
    """f(x) = x * 2 + 1 on float32[3], two ways: to a host (NumPy) result, and the call
    alone (both return before XLA has run: jax's async dispatch, tracegrad's lazy result)."""
    f = tg.compile(lambda x: x * 2 + 1)
    x = tg.ones(3)
    jf = jax.jit(lambda x: x * 2 + 1)
    xj = jnp.ones(3, jnp.float32)
    t = compare({"tg host": lambda: f(x).numpy(), "jax host": lambda: np.asarray(jf(xj)),
                 "tg call": lambda: f(x), "jax call": lambda: jf(xj)},
                rounds=rounds, min_batch_s=min_batch)
    assert f.cache_info().misses <= 2 and f.cache_info().hits > 0
    rows = []
    for what, ours, peer in (("result on the host", "tg host", "jax host"),
                             ("call alone (dispatch)", "tg call", "jax call")):
        r, lo, hi = ratio(t[ours], t[peer])
        rows.append([f"cache-hit call, x * 2 + 1 on float32[3]: {what}",
                     fmt_time(t[ours].median, "us"), "jax.jit", fmt_time(t[peer].median, "us"),
                     f"{r:.2f}x", _target_text(2.0), _met(r, 2.0), f"{lo:.2f}-{hi:.2f}x"])
    return rows


# ---- trace + passes vs graph size ----------------------------------------------------------

def _chain_step(n_triples):
    def fn(x):
        y = x
        for _ in range(n_triples):
            y = y * 1.01
            y = y + 0.01
            y = y.sin()
        loss = y.sum()
        loss.backward()
        return loss, x.grad
    return fn


def scaling_rows(max_nodes: int):
    """trace, then run_pipeline, at growing sizes. A graph's size is its equation count
    after the autodiff stage (forward + backward), whether the backward was recorded
    while tracing or expanded by the autodiff pass."""
    from tracegrad.passes import run_pipeline
    rows, notes = [], []
    base = None
    for nodes in (1_000, 10_000, 100_000):
        if nodes > max_nodes:
            notes.append(f"  {nodes} nodes: skipped (--max-nodes {max_nodes})")
            continue
        n_triples = nodes // 6   # 3 forward + about 3 backward equations per triple
        best = None
        for _ in range(3 if nodes <= 10_000 else 1):
            x = tg.randn(3, requires_grad=True)
            t0 = time.perf_counter()
            g = tg.trace(_chain_step(n_triples), x)
            t1 = time.perf_counter()
            final, stages = run_pipeline(g)
            t2 = time.perf_counter()
            to_jax_source(final)
            t3 = time.perf_counter()
            if best is None or t3 - t0 < best[0]:
                best = (t3 - t0, t1 - t0, t2 - t1, g, final, stages, t3 - t2)
        total, tr, ps, g, final, stages, cg = best
        by_name = {name: graph for name, graph, _ in stages}
        size = len(by_name.get("autodiff", g).eqns)
        per_node = total / size
        base = base or per_node
        growth = per_node / base
        slowest = max(stages[1:], key=lambda s: s[2])
        rows.append([f"trace + passes + codegen, {size} equations", fmt_time(total, "s"), "-",
                     f"{per_node * 1e6:.1f} us/eqn", f"{growth:.2f}x",
                     "~1x per eqn (linear)", "yes" if growth <= 1.5 else "NO", "-"])
        notes.append(f"  {len(g.eqns)} traced eqns, {size} after autodiff, {len(final.eqns)} "
                     f"after passes: trace {tr:.3f} s, passes {ps:.3f} s (slowest pass: "
                     f"{slowest[0]} {slowest[2]:.3f} s), codegen {cg:.3f} s")
    return rows, notes


def _deep_mlp_step(n_layers, width=32):
    layers = []
    for _ in range(n_layers):
        layers += [nn.Linear(width, width), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(width, 10))
    opt = optim.SGD(model.parameters(), lr=0.01)

    def step(x, y):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def mlp_depth_rows(depths=(4, 32, 128, 512)):
    """An N-layer MLP's training step (Linear 32x32 + ReLU, cross_entropy, SGD), traced
    after its first call made the .grad slots: trace, passes, jax source, and jax's own
    tracing + XLA compile of it (``jax.jit(...).lower(...).compile()``)."""
    from tracegrad.passes import run_pipeline
    rows, notes, base = [], [], None
    x, y = tg.randn(16, 32), tg.randint(0, 10, (16,))
    for n in depths:
        step = _deep_mlp_step(n)
        step(x, y)
        best = None
        for _ in range(3 if n <= 128 else 1):
            t0 = time.perf_counter()
            g = tg.trace(step, x, y)
            t1 = time.perf_counter()
            final, stages = run_pipeline(g)
            t2 = time.perf_counter()
            to_jax_source(final)
            t3 = time.perf_counter()
            if best is None or t3 - t0 < best[0]:
                best = (t3 - t0, t1 - t0, t2 - t1, t3 - t2, g, final)
        total, tr, ps, cg, g, final = best
        lowered = lower(final)
        specs = [jax.ShapeDtypeStruct(v.shape, v.dtype.np) for v in final.inputs]
        t4 = time.perf_counter()
        with x64():
            low = lowered.jitted.lower(*specs)
        t5 = time.perf_counter()
        low.compile()
        t6 = time.perf_counter()
        per = total / len(g.eqns)
        base = base or per
        rows.append([f"MLP depth {n}: trace + passes + codegen ({len(g.eqns)} eqns)",
                     fmt_time(total, "s"), "-", f"{per * 1e6:.1f} us/eqn",
                     f"{per / base:.2f}x", "~1x per eqn (linear)",
                     "yes" if per / base <= 1.5 else "NO", "-"])
        notes.append(f"  depth {n}: {len(g.eqns)} traced eqns, {len(final.eqns)} after passes: "
                     f"trace {tr:.3f} s, passes {ps:.3f} s, codegen {cg:.3f} s; jax trace + "
                     f"lower {t5 - t4:.3f} s, XLA compile {t6 - t5:.3f} s")
    return rows, notes


# ---- main ------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds "
                    "(steady state: per process)")
    ap.add_argument("--processes", type=int, default=3,
                    help="fresh processes for the steady-state rows, rounds pooled")
    ap.add_argument("--min-batch", type=float, default=0.05,
                    help="seconds of calls per candidate per round")
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS/XLA/torch threads (read by pin_threads at import)")
    ap.add_argument("--first-call-repeats", type=int, default=5)
    ap.add_argument("--max-nodes", type=int, default=100_000,
                    help="largest graph for the trace+passes scaling rows")
    ap.add_argument("--first-call", help=argparse.SUPPRESS)  # child-process modes
    ap.add_argument("--steady", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.first_call:
        print(json.dumps(first_call_child(args.first_call)))
        return
    if args.steady:
        print(json.dumps(steady_child(args.steady, args.rounds, args.min_batch)))
        return

    started = time.perf_counter()
    torch = optional_torch()
    set_torch_threads(torch, THREADS)
    rows = []
    steady_rounds = max(3, args.rounds // args.processes)
    for model in _MODELS:
        rows += steady_rows(model, args.processes, steady_rounds, args.min_batch)
    fc_rows, fc_notes = first_call_rows(args.first_call_repeats)
    rows += fc_rows
    rows += cache_hit_rows(args.rounds, args.min_batch)
    sc_rows, sc_notes = scaling_rows(args.max_nodes)
    rows += sc_rows
    depth_rows, depth_notes = mlp_depth_rows()
    rows += depth_rows

    footer = [
        f"steady state: ms/step, median of {steady_rounds} interleaved rounds after warm-up in "
        f"each of {args.processes} fresh processes, pooled; ratio = tracegrad/peer of those; "
        "spread = min-max of the per-round ratios (noise)",
        *_CPU_NOTES,
        f"seed net {'x'.join(map(str, SEED_SHAPE))}, by-hand SGD; MLP "
        f"{'x'.join(map(str, MLP_SHAPE))}, Linear+ReLU+Linear, cross_entropy, SGD; float32",
        f"first calls: fresh process each, after a shared warm-up, fastest of "
        f"{args.first_call_repeats}, alternating (tracegrad: every call up to and including the "
        "first compiled run); tracegrad's fastest run:",
        *fc_notes,
        "cache hit: host result = f(x).numpy() vs np.asarray(jit_f(x)); call alone = f(x) vs "
        "jit_f(x), no wait (tracegrad's result is read lazily, jax's dispatch is async)",
        "trace + passes: tracegrad.trace of a (mul, add, sin) chain on float32[3] and "
        ".sum().backward(), then passes.run_pipeline; size = equations after autodiff "
        "(forward + backward); ratio column = seconds per equation relative to the smallest",
        *sc_notes,
        "MLP depth N: N x (Linear 32x32 + ReLU) + Linear 32x10, cross_entropy, SGD step, "
        "batch 16; trace + passes + codegen (jax source), fastest of 3 (1 at depth 512); "
        "ratio = seconds per traced equation relative to depth 4",
        *depth_notes,
        *env_lines(torch),
        f"total script time {time.perf_counter() - started:.0f} s",
    ]
    print_table("tracegrad.compile vs jax.jit and torch eager",
                ["benchmark", "tracegrad", "peer", "peer time", "ratio", "target", "met?",
                 "spread"], rows, footer)


if __name__ == "__main__":
    main()
