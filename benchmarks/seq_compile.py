"""Compile time against sequence length: an LSTM training step under tracegrad.compile.

    python benchmarks/seq_compile.py [--rounds 5] [--threads 1] [--unrolled-max 16]

For T = 16, 128, 1024 (batch 8, input 32, hidden 64, one nn.LSTM layer, a linear head,
mean-squared loss, SGD), one row per way of running the step:

  * tracegrad.compile, nn.LSTM: the time loop is one ``scan`` equation;
  * tracegrad.compile, a Python loop over the same cell (the unrolled program), for T up to
    ``--unrolled-max`` (its graph, passes and XLA compile grow with T);
  * jax.jit of a hand-written ``lax.scan`` LSTM step (value_and_grad, SGD inside the jit);
  * tracegrad eager (the same nn.LSTM step, no compile);
  * torch eager nn.LSTM and torch.compile of the same step.

Columns: equations in the traced graph and in the final one; trace and passes time (the
trace runs the step once for real, so it grows with T even when the graph does not);
"to 1st compiled": the calls until a compiled step has run (tracegrad: the tracing calls,
which run eagerly, then the first cache hit: passes, codegen, XLA compile and run; jax and
torch.compile: their first call; eager: the first call), jax and torch.compile warmed up
on a tiny program first, so their one-time start-up is not counted; the steady-state
step time (median of interleaved rounds). All start from the same weights, and the first
losses are checked to agree. One process, one pinned CPU.

The trace column grows with T because concrete tracing runs the step once eagerly (its
results are the first call's); compare it with the tracegrad eager row. The graph and the
passes do not grow with T; the unrolled program's do.
"""
from __future__ import annotations

import argparse
import copy

from _util import pin_threads

THREADS = pin_threads()  # before numpy and jax are imported

import jax  # noqa: E402  (after pin_threads)
import jax.numpy as jnp  # noqa: E402  (after pin_threads)
import numpy as np  # noqa: E402  (after pin_threads)
from _util import (  # noqa: E402  (after pin_threads)
    compare,
    cpu_line,
    env_lines,
    fmt_time,
    optional_torch,
    print_table,
    set_torch_threads,
    time_once,
)

import tracegrad as tg  # noqa: E402  (after pin_threads)
from tracegrad.nn import rnn as tg_rnn  # noqa: E402  (after pin_threads)

B, IN, H, LR = 8, 32, 64, 0.05
LENGTHS = (16, 128, 1024)


def tracegrad_steps(T, x, y):
    """(scan step, unrolled step), each with its own copy of the same weights."""
    tg.manual_seed(0)
    lstm, head = tg.nn.LSTM(IN, H), tg.nn.Linear(H, 1)
    models = []
    for _ in range(3):
        m = tg.nn.ModuleList([copy.deepcopy(lstm), copy.deepcopy(head)])
        models.append((m, tg.optim.SGD(m.parameters(), lr=LR)))

    def scan_step(x, y, m=models[0][0], opt=models[0][1]):
        opt.zero_grad()
        out, _ = m[0](x)
        loss = ((m[1](out) - y) ** 2).mean()
        loss.backward()
        opt.step()
        return loss

    def unrolled_step(x, y, m=models[1][0], opt=models[1][1]):
        opt.zero_grad()
        cell = m[0]
        xw = tg.nn.functional.linear(x, cell.weight_ih_l0, cell.bias_ih_l0)
        h = c = tg.zeros(B, H)
        outs = []
        for t in range(x.shape[0]):  # the Python loop compile unrolls
            h, c = tg_rnn._lstm_step(xw[t], h, c, cell.weight_hh_l0, cell.bias_hh_l0, None)
            outs.append(h)
        loss = ((m[1](tg.stack(outs)) - y) ** 2).mean()
        loss.backward()
        opt.step()
        return loss

    def eager_step(x, y, m=models[2][0], opt=models[2][1]):
        return scan_step(x, y, m, opt)

    return lstm, head, scan_step, unrolled_step, eager_step


def warm_up(torch):
    """One tiny jit and torch.compile first, so no row pays their start-up."""
    jax.jit(lambda a: a * 2)(jnp.ones(2)).block_until_ready()
    if torch is not None:
        f = torch.compile(lambda a: (a * 2).sum())
        f(torch.ones(2, requires_grad=True)).backward()


def jax_step(lstm, head):
    """A hand-written lax.scan LSTM step, value_and_grad with SGD inside the jit."""
    p = {k: jnp.asarray(v.detach().numpy()) for k, v in
         [("w_ih", lstm.weight_ih_l0), ("w_hh", lstm.weight_hh_l0), ("b_ih", lstm.bias_ih_l0),
          ("b_hh", lstm.bias_hh_l0), ("w", head.weight), ("b", head.bias)]}

    def loss_fn(p, x, y):
        xw = x @ p["w_ih"].T + p["b_ih"]

        def cell(carry, xt):
            h, c = carry
            i, f, g, o = jnp.split(h @ p["w_hh"].T + p["b_hh"] + xt, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), h

        zeros = jnp.zeros((x.shape[1], H), x.dtype)
        _, hs = jax.lax.scan(cell, (zeros, zeros), xw)
        return jnp.mean((hs @ p["w"].T + p["b"] - y) ** 2)

    @jax.jit
    def step(p, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        return jax.tree_util.tree_map(lambda a, b: a - LR * b, p, g), loss

    return p, step


def torch_steps(torch, lstm, head):
    def make():
        m = torch.nn.ModuleList([torch.nn.LSTM(IN, H), torch.nn.Linear(H, 1)])
        with torch.no_grad():
            for (_, q), (_, s) in zip(m.named_parameters(),
                                      tg.nn.ModuleList([lstm, head]).named_parameters(),
                                      strict=True):
                q.copy_(torch.from_numpy(s.detach().numpy()))
        opt = torch.optim.SGD(m.parameters(), lr=LR)

        def step(x, y):
            opt.zero_grad()
            out, _ = m[0](x)
            loss = ((m[1](out) - y) ** 2).mean()
            loss.backward()
            opt.step()
            return loss
        return step
    return make(), torch.compile(make())


def _until_compiled(cf, x, y):
    while cf.hits == 0:
        float(cf(x, y))


def measure(T, torch, rng, rounds, unrolled_max, rows, footers):
    """The rows of one sequence length."""
    xn = rng.normal(size=(T, B, IN)).astype(np.float32)
    yn = rng.normal(size=(T, B, 1)).astype(np.float32)
    x, y = tg.tensor(xn), tg.tensor(yn)
    lstm, head, scan_step, unrolled_step, eager_step = tracegrad_steps(T, x, y)
    cands, first, losses, info = {}, {}, {}, {}
    variants = [("tracegrad scan", scan_step)]
    if T <= unrolled_max:
        variants.append(("tracegrad unrolled", unrolled_step))
    for name, fn in variants:
        cf = tg.compile(fn, fullgraph=True)
        box = {}
        # tracing calls run eagerly (the first SGD step's one is not cached: it makes the
        # optimizer's state); the first cache hit builds (passes, codegen, XLA) and runs
        first[name] = time_once(lambda cf=cf, box=box: box.setdefault("l", float(cf(x, y))))
        second = time_once(lambda cf=cf: _until_compiled(cf, x, y))
        losses[name] = box["l"]
        rep = cf.explain(x, y)
        passes = sum(v for k, v in rep.timings.items()
                     if k not in ("trace", "codegen", "xla_first_call"))
        info[name] = (len(rep.stages["traced"]), len(rep.stages["final"]),
                      rep.timings["trace"], passes, second)
        cands[name] = lambda cf=cf: float(cf(x, y))
    first["tracegrad eager"] = time_once(lambda: losses.setdefault(
        "tracegrad eager", float(eager_step(x, y))))
    cands["tracegrad eager"] = lambda: float(eager_step(x, y))
    p, jstep = jax_step(lstm, head)
    xj, yj = jnp.asarray(xn), jnp.asarray(yn)
    state = {"p": p}

    def jax_call():
        state["p"], loss = jstep(state["p"], xj, yj)
        return float(loss)
    first["jax.jit lax.scan"] = time_once(lambda: losses.setdefault("jax.jit lax.scan",
                                                                    jax_call()))
    cands["jax.jit lax.scan"] = jax_call
    if torch is not None:
        xt, yt = torch.from_numpy(xn), torch.from_numpy(yn)
        t_eager, t_comp = torch_steps(torch, lstm, head)
        for name, fn in (("torch eager", t_eager), ("torch.compile", t_comp)):
            first[name] = time_once(lambda fn=fn, name=name: losses.setdefault(
                name, fn(xt, yt).item()))
            cands[name] = lambda fn=fn: fn(xt, yt).item()
    ref = losses["torch eager"] if torch is not None else losses["jax.jit lax.scan"]
    for name, loss in losses.items():
        if not np.isclose(loss, ref, rtol=1e-4):
            raise SystemExit(f"T={T}: {name}'s first loss {loss} differs from {ref}")
    timings = compare(cands, rounds=rounds, warmup=2, min_batch_s=0.2)
    for name in cands:
        n_tr, n_fin, tr, ps, second = info.get(name, (None,) * 5)
        ready = first[name] + (second or 0.0)
        rows.append([f"T={T}", name, "-" if n_tr is None else str(n_tr),
                     "-" if n_fin is None else str(n_fin),
                     "-" if tr is None else fmt_time(tr, "s"),
                     "-" if ps is None else fmt_time(ps, "s"),
                     fmt_time(ready, "s"), fmt_time(timings[name].median, "ms")])
    footers.append(f"T={T}: first losses agree ({ref:.6f}); " + cpu_line(timings))
    if T > unrolled_max:
        footers.append(f"T={T}: the unrolled program is left out (--unrolled-max "
                       f"{unrolled_max})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--unrolled-max", type=int, default=16)
    args = ap.parse_args()
    torch = optional_torch()
    set_torch_threads(torch, THREADS)
    jax.config.update("jax_enable_x64", True)
    warm_up(torch)
    rows, footers = [], []
    rng = np.random.default_rng(0)
    for T in LENGTHS:
        measure(T, torch, rng, args.rounds, args.unrolled_max, rows, footers)
    print_table(f"LSTM training step (batch {B}, input {IN}, hidden {H}, SGD), "
                f"compile time against sequence length",
                ["length", "variant", "eqns traced", "eqns final", "trace", "passes",
                 "to 1st compiled", "step"], rows, footers + env_lines(torch))


if __name__ == "__main__":
    main()
