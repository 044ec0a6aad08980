"""What a compiled training step's cache hit costs outside XLA, as models grow.

    python benchmarks/cache_hit.py [--rounds 15] [--threads 1]

For the seed net (64x1000x100x10, SGD), an MLP (512x784x1024x10, SGD momentum) and a
LeNet-style CNN (32x1x28x28, Adam), each a whole step under tracegrad.compile:
  * guards: one check of every guard of the entry (identity checks and epochs): the
    part of a cache hit that grows with what the step reads;
  * step: a call and waiting for its loss;
  * jax.jit step: the same step written by hand in jax (value_and_grad, the update
    inside the jit, donated parameters), waited for (none for the CNN yet).
On one pinned CPU a call cannot return before XLA is done (its worker thread shares
the core), so the host cost shows as the step's difference to the jax.jit step.
The process is pinned to one CPU (os.sched_setaffinity) and all threads to one.
Median of interleaved rounds; the last column checks that tracegrad's and the
hand-written step's losses agree.
"""
from __future__ import annotations

import sys

from _util import pin_threads

THREADS = pin_threads()  # before numpy and jax are imported (and pins to one CPU)

import jax  # noqa: E402  (after pin_threads)
import jax.numpy as jnp  # noqa: E402  (after pin_threads)
from _util import compare, env_lines, fmt_time, print_table  # noqa: E402  (after pin_threads)

import tracegrad as tg  # noqa: E402  (after pin_threads)
import tracegrad.nn.functional as F  # noqa: E402  (after pin_threads)


def _seed():
    tg.manual_seed(0)
    n, d_in, h, d_out = 64, 1000, 100, 10
    x, y = tg.randn(n, d_in), tg.randn(n, d_out)
    w1 = tg.randn(d_in, h, requires_grad=True)
    w2 = tg.randn(h, d_out, requires_grad=True)

    def step(x, y):
        loss = (x.mm(w1).clamp(min=0).mm(w2) - y).pow(2).sum()
        loss.backward()
        with tg.no_grad():
            w1.sub_(1e-6 * w1.grad)
            w2.sub_(1e-6 * w2.grad)
            w1.grad.zero_()
            w2.grad.zero_()
        return loss

    def jax_step(p, x, y):
        def loss_fn(p):
            return jnp.sum((jnp.maximum(x @ p[0], 0) @ p[1] - y) ** 2)
        loss, g = jax.value_and_grad(loss_fn)(p)
        return [a - 1e-6 * b for a, b in zip(p, g, strict=True)], loss
    params = [w1.detach().numpy().copy(), w2.detach().numpy().copy()]
    return step, (x, y), jax_step, params, (x.numpy(), y.numpy())


def _mlp():
    tg.manual_seed(0)
    m = tg.nn.Sequential(tg.nn.Linear(784, 1024), tg.nn.ReLU(), tg.nn.Linear(1024, 10))
    opt = tg.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    x, y = tg.randn(512, 784), tg.randint(0, 10, (512,))

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        return loss

    def jax_step(p, x, y):
        def loss_fn(p):
            h = jnp.maximum(x @ p[0].T + p[1], 0) @ p[2].T + p[3]
            return -jnp.mean(jax.nn.log_softmax(h)[jnp.arange(x.shape[0]), y])
        loss, g = jax.value_and_grad(loss_fn)(p)
        return [a - 0.01 * b for a, b in zip(p, g, strict=True)], loss
    params = [t.detach().numpy().copy() for t in m.parameters()]
    return step, (x, y), jax_step, params, (x.numpy(), y.numpy())


def _cnn():
    tg.manual_seed(0)
    m = tg.nn.Sequential(tg.nn.Conv2d(1, 6, 5), tg.nn.ReLU(), tg.nn.MaxPool2d(2),
                         tg.nn.Conv2d(6, 16, 5), tg.nn.ReLU(), tg.nn.MaxPool2d(2),
                         tg.nn.Flatten(), tg.nn.Linear(256, 120), tg.nn.ReLU(),
                         tg.nn.Linear(120, 10))
    opt = tg.optim.Adam(m.parameters(), lr=1e-3)
    x, y = tg.randn(32, 1, 28, 28), tg.randint(0, 10, (32,))

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        return loss
    return step, (x, y), None, None, None


def _jax_dispatch(jax_step, params, data):
    if jax_step is None:
        return None, None
    jitted = jax.jit(jax_step, donate_argnums=(0,))
    state = {"p": [jnp.asarray(a) for a in params]}
    x, y = (jnp.asarray(a) for a in data)

    def call():
        state["p"], loss = jitted(state["p"], x, y)
        return float(loss)
    first = float(call())
    return call, first


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    rows = []
    for name, build in (("seed net, SGD", _seed), ("MLP, SGD momentum", _mlp),
                        ("CNN, Adam", _cnn)):
        step, inputs, jax_step, params, data = build()
        compiled = tg.compile(step)
        first_loss = None
        for _ in range(4):
            loss = compiled(*inputs)
            first_loss = loss.item() if first_loss is None else first_loss
        entry = next(e for e in compiled._cache.values() if e.trace is not None)
        flat = list(zip(entry.paths, inputs, strict=False))
        jax_call, jax_first = _jax_dispatch(jax_step, params, data)
        cands = {
            "guards": lambda e=entry, f=flat: e.check_guards(f),
            "step": lambda c=compiled, i=inputs: c(*i).item(),
        }
        if jax_call is not None:
            cands["jax step"] = jax_call
        t = compare(cands, rounds=args.rounds, min_batch_s=0.05)
        agree = "n/a" if jax_first is None else \
            f"{abs(first_loss - jax_first) / max(abs(jax_first), 1e-12):.1e}"
        jd = t["jax step"].median if "jax step" in t else None
        rows.append([name, len(entry.guards), fmt_time(t["guards"].median, "us"),
                     fmt_time(t["step"].median, "ms"), fmt_time(jd, "ms"),
                     "n/a" if jd is None else f"{t['step'].median / jd:.2f}x", agree])
        assert compiled.cache_info().entries == 1, compiled.recompile_reasons
    footer = [ln for ln in env_lines() if not ln.startswith("torch")]
    footer.append(f"threads {THREADS}, process pinned to one CPU; a step is a call and "
                  "reading its loss")
    print_table("tracegrad.compile cache hits: host cost outside XLA (median of rounds)",
                ["step", "guards", "check", "tracegrad step", "jax.jit step", "ratio",
                 "loss rel diff"], rows, footer)


if __name__ == "__main__":
    sys.exit(main())
