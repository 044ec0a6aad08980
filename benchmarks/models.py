"""Training steps of real models, tracegrad beside its peers: one table from one run.

    python benchmarks/models.py [--rounds N] [--min-batch S] [--threads N] [--no-gpt]

Each row is one training step (forward, backward, optimizer update) of one model:

* seed net: PyTorch's two-layer tutorial net, 64x1000x100x10, squared error, by-hand SGD;
* MLP: 512x784x1024x10, Linear + ReLU + Linear, cross_entropy, optim.SGD(momentum=0.9);
* CNN: LeNet-style, 32x1x28x28, two Conv2d(5) + ReLU + MaxPool2d(2), two Linear, Adam;
* GPT: 2 pre-norm blocks, d 128, 4 heads, seq 64, batch 16, vocab 256, AdamW, dropout 0
  (Embedding, LayerNorm, Linear, softmax attention with a causal mask, GELU).

Candidates: tracegrad eager, torch eager (the same script: the step is written once
against a module ``lib`` that is either ``tracegrad`` or ``torch``), ``tracegrad.compile``
of that step, and a hand-written ``jax.jit(value_and_grad)`` step with the same update
(seed net, MLP and CNN). All start from the same initial weights and data; the first
three losses of every candidate are compared before timing (the "loss agree" column is
the largest relative difference to torch's). Times are the median of interleaved rounds
(``_util.compare``); "spread" is the min-max of the per-round eager/torch ratios. The
process runs pinned to one CPU with one thread per library (``--threads 1``, the default).
"""
from __future__ import annotations

import argparse
import math
import sys

from _util import pin_threads

THREADS = pin_threads()  # before numpy and jax are imported (and pins to one CPU)

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
    ratio,
    set_torch_threads,
)

import tracegrad as tg  # noqa: E402  (after pin_threads)

# tracegrad lowers with 64-bit types enabled; the jax peer runs in the same mode
jax.config.update("jax_enable_x64", True)


# ---- shared initial weights and data ----------------------------------------------------

def _uniform(rng, shape, fan_in):
    b = 1 / math.sqrt(fan_in)
    return rng.uniform(-b, b, shape).astype(np.float32)


def _load(lib, params, arrays):
    """Copy NumPy arrays into the parameters (same order), so every library starts alike."""
    with lib.no_grad():
        for p, a in zip(params, arrays, strict=True):
            assert tuple(p.shape) == a.shape, (tuple(p.shape), a.shape)
            p.copy_(lib.tensor(a))


def _linear_init(rng, fan_out, fan_in):
    return [_uniform(rng, (fan_out, fan_in), fan_in), _uniform(rng, (fan_out,), fan_in)]


# ---- seed net -------------------------------------------------------------------------------

SEED = (64, 1000, 100, 10)
SEED_LR = 1e-6


def seed_data():
    rng = np.random.default_rng(0)
    n, d_in, h, d_out = SEED
    return ([rng.standard_normal((d_in, h), np.float32), rng.standard_normal((h, d_out),
                                                                            np.float32)],
            (rng.standard_normal((n, d_in), np.float32),
             rng.standard_normal((n, d_out), np.float32)))


def seed_lib(lib):
    (w1a, w2a), (xa, ya) = seed_data()
    w1 = lib.tensor(w1a, requires_grad=True)
    w2 = lib.tensor(w2a, requires_grad=True)

    def step(x, y):
        loss = (x.mm(w1).clamp(min=0).mm(w2) - y).pow(2).sum()
        loss.backward()
        with lib.no_grad():
            w1.sub_(SEED_LR * w1.grad)
            w2.sub_(SEED_LR * w2.grad)
            w1.grad.zero_()
            w2.grad.zero_()
        return loss

    return step, (lib.tensor(xa), lib.tensor(ya))


def seed_jax():
    params, (xa, ya) = seed_data()

    def loss_fn(p, x, y):
        return jnp.sum((jnp.maximum(x @ p[0], 0) @ p[1] - y) ** 2)

    def step(state, x, y):
        loss, g = jax.value_and_grad(loss_fn)(state, x, y)
        return [p - SEED_LR * d for p, d in zip(state, g, strict=True)], loss

    return step, [jnp.asarray(p) for p in params], (jnp.asarray(xa), jnp.asarray(ya))


# ---- MLP -------------------------------------------------------------------------------------

MLP = (512, 784, 1024, 10)
MLP_LR, MLP_MOMENTUM = 0.01, 0.9


def mlp_data():
    rng = np.random.default_rng(1)
    b, d, h, c = MLP
    params = _linear_init(rng, h, d) + _linear_init(rng, c, h)
    return params, (rng.standard_normal((b, d), np.float32), rng.integers(0, c, b))


def mlp_lib(lib):
    b, d, h, c = MLP
    params, (xa, ya) = mlp_data()
    model = lib.nn.Sequential(lib.nn.Linear(d, h), lib.nn.ReLU(), lib.nn.Linear(h, c))
    _load(lib, list(model.parameters()), params)
    opt = lib.optim.SGD(model.parameters(), lr=MLP_LR, momentum=MLP_MOMENTUM)

    def step(x, y):
        opt.zero_grad()
        loss = lib.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step, (lib.tensor(xa), lib.tensor(ya))


def _cross_entropy(logits, y):
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def mlp_jax():
    params, (xa, ya) = mlp_data()

    def loss_fn(p, x, y):
        h = jnp.maximum(x @ p[0].T + p[1], 0)
        return _cross_entropy(h @ p[2].T + p[3], y)

    def step(state, x, y):
        params, bufs = state
        loss, g = jax.value_and_grad(loss_fn)(params, x, y)
        # torch's SGD momentum: buf = g on the first step, then momentum * buf + g; with
        # zero buffers the first step's momentum * 0 + g is the same
        bufs = [MLP_MOMENTUM * b + d for b, d in zip(bufs, g, strict=True)]
        return ([p - MLP_LR * b for p, b in zip(params, bufs, strict=True)], bufs), loss

    params = [jnp.asarray(p) for p in params]
    return step, (params, [jnp.zeros_like(p) for p in params]), (jnp.asarray(xa),
                                                                 jnp.asarray(ya))


# ---- CNN -------------------------------------------------------------------------------------

CNN_BATCH = 32
CNN_LR = 1e-3
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8


def cnn_data():
    rng = np.random.default_rng(2)
    params = [_uniform(rng, (6, 1, 5, 5), 25), _uniform(rng, (6,), 25),
              _uniform(rng, (16, 6, 5, 5), 150), _uniform(rng, (16,), 150),
              *_linear_init(rng, 120, 256), *_linear_init(rng, 10, 120)]
    return params, (rng.standard_normal((CNN_BATCH, 1, 28, 28), np.float32),
                    rng.integers(0, 10, CNN_BATCH))


def cnn_lib(lib):
    nn = lib.nn
    params, (xa, ya) = cnn_data()
    model = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 10))
    _load(lib, list(model.parameters()), params)
    opt = lib.optim.Adam(model.parameters(), lr=CNN_LR)

    def step(x, y):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step, (lib.tensor(xa), lib.tensor(ya))


def _adam(params, grads, m, v, t, lr, weight_decay=0.0):
    """torch.optim.Adam / AdamW (decoupled weight decay when weight_decay > 0)."""
    m = [ADAM_B1 * a + (1 - ADAM_B1) * g for a, g in zip(m, grads, strict=True)]
    v = [ADAM_B2 * a + (1 - ADAM_B2) * g * g for a, g in zip(v, grads, strict=True)]
    bc1, bc2 = 1 - ADAM_B1 ** t, 1 - ADAM_B2 ** t
    out = []
    for p, a, b in zip(params, m, v, strict=True):
        if weight_decay:
            p = p * (1 - lr * weight_decay)
        out.append(p - (lr / bc1) * a / (jnp.sqrt(b) / jnp.sqrt(bc2) + ADAM_EPS))
    return out, m, v


def cnn_jax():
    params, (xa, ya) = cnn_data()

    def conv(x, w, b):
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "VALID",
                                         dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return y + b[None, :, None, None]

    def pool(x):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2),
                                     "VALID")

    def loss_fn(p, x, y):
        h = pool(jnp.maximum(conv(x, p[0], p[1]), 0))
        h = pool(jnp.maximum(conv(h, p[2], p[3]), 0)).reshape(x.shape[0], -1)
        h = jnp.maximum(h @ p[4].T + p[5], 0)
        return _cross_entropy(h @ p[6].T + p[7], y)

    def step(state, x, y):
        params, m, v, t = state
        loss, g = jax.value_and_grad(loss_fn)(params, x, y)
        t = t + 1
        params, m, v = _adam(params, g, m, v, t, CNN_LR)
        return (params, m, v, t), loss

    params = [jnp.asarray(p) for p in params]
    m, v = ([jnp.zeros_like(p) for p in params] for _ in range(2))  # distinct buffers
    return step, (params, m, v, jnp.asarray(0.0, jnp.float32)), \
        (jnp.asarray(xa), jnp.asarray(ya))


# ---- GPT -------------------------------------------------------------------------------------

GPT = {"layers": 2, "d": 128, "heads": 4, "seq": 64, "batch": 16, "vocab": 256}
GPT_LR, GPT_WD = 3e-4, 0.01


def gpt_data():
    rng = np.random.default_rng(3)
    d, seq, vocab = GPT["d"], GPT["seq"], GPT["vocab"]
    params = [rng.normal(0, 0.02, (vocab, d)).astype(np.float32),   # token embedding
              rng.normal(0, 0.02, (seq, d)).astype(np.float32)]     # position embedding
    for _ in range(GPT["layers"]):
        params += [np.ones(d, np.float32), np.zeros(d, np.float32),  # ln1
                   *_linear_init(rng, 3 * d, d), *_linear_init(rng, d, d),  # qkv, proj
                   np.ones(d, np.float32), np.zeros(d, np.float32),  # ln2
                   *_linear_init(rng, 4 * d, d), *_linear_init(rng, d, 4 * d)]  # mlp
    params += [np.ones(d, np.float32), np.zeros(d, np.float32), *_linear_init(rng, vocab, d)]
    tokens = rng.integers(0, vocab, (GPT["batch"], seq + 1))
    return params, (tokens[:, :-1], tokens[:, 1:])


def gpt_lib(lib):
    nn, F = lib.nn, lib.nn.functional
    d, heads, seq, vocab = GPT["d"], GPT["heads"], GPT["seq"], GPT["vocab"]

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(d)
            self.qkv = nn.Linear(d, 3 * d)
            self.proj = nn.Linear(d, d)
            self.ln2 = nn.LayerNorm(d)
            self.fc = nn.Linear(d, 4 * d)
            self.out = nn.Linear(4 * d, d)

        def forward(self, x, mask):
            b, t, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
            q, k, v = (z.view(b, t, heads, d // heads).transpose(1, 2) for z in (q, k, v))
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d // heads))
            att = F.softmax(att.masked_fill(mask, float("-inf")), dim=-1)
            y = (att @ v).transpose(1, 2).reshape(b, t, d)
            x = x + self.proj(y)
            return x + self.out(F.gelu(self.fc(self.ln2(x))))

    class GPTModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(vocab, d)
            self.pos = nn.Embedding(seq, d)
            self.blocks = nn.ModuleList([Block() for _ in range(GPT["layers"])])
            self.ln = nn.LayerNorm(d)
            self.head = nn.Linear(d, vocab)

        def forward(self, idx, pos, mask):
            x = self.tok(idx) + self.pos(pos)
            for blk in self.blocks:
                x = blk(x, mask)
            return self.head(self.ln(x))

    params, (xa, ya) = gpt_data()
    model = GPTModel()
    _load(lib, list(model.parameters()), params)
    opt = lib.optim.AdamW(model.parameters(), lr=GPT_LR, weight_decay=GPT_WD)
    pos = lib.arange(seq)
    mask = lib.triu(lib.ones(seq, seq, dtype=lib.bool), diagonal=1)

    def step(x, y):
        opt.zero_grad()
        logits = model(x, pos, mask)
        loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        loss.backward()
        opt.step()
        return loss

    return step, (lib.tensor(xa), lib.tensor(ya))


# ---- running and checking --------------------------------------------------------------------

MODELS = {
    "seed net 64x1000x100x10, manual SGD": (seed_lib, seed_jax),
    "MLP 512x784x1024x10, SGD momentum": (mlp_lib, mlp_jax),
    "CNN LeNet 32x1x28x28, Adam": (cnn_lib, cnn_jax),
    "GPT 2x d128 h4 seq64 b16, AdamW": (gpt_lib, None),
}


def jax_runner(build):
    step, state, data = build()
    jitted = jax.jit(step, donate_argnums=0)
    box = [state]

    def run():
        box[0], loss = jitted(box[0], *data)
        jax.block_until_ready((box[0], loss))
        return float(loss)
    return run


def candidates(lib_build, jax_build, torch):
    """name -> zero-argument callable running one step and returning its loss as a float."""
    out = {}
    step, args = lib_build(tg)
    out["tracegrad eager"] = lambda: step(*args).item()
    if torch is not None:
        tstep, targs = lib_build(torch)
        out["torch eager"] = lambda: tstep(*targs).item()
    cstep, cargs = lib_build(tg)
    cstep = tg.compile(cstep)
    out["tracegrad.compile"] = lambda: cstep(*cargs).item()  # .item(): until XLA is done
    if jax_build is not None:
        out["jax.jit"] = jax_runner(jax_build)
    return out


def first_losses(cands, n=3):
    """The first n losses of each candidate, from its fresh initial state."""
    return {name: [fn() for _ in range(n)] for name, fn in cands.items()}


def agreement(losses) -> str:
    ref = losses.get("torch eager") or losses["tracegrad eager"]
    worst = max(abs(a - b) / max(abs(b), 1e-12)
                for ls in losses.values() for a, b in zip(ls, ref, strict=True))
    return f"{worst:.1e}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=11, help="interleaved timing rounds")
    ap.add_argument("--min-batch", type=float, default=0.2,
                    help="seconds of calls per candidate per round")
    ap.add_argument("--threads", type=int, default=1, help="threads per library")
    ap.add_argument("--no-gpt", action="store_true", help="skip the GPT row")
    ap.add_argument("--only", help="run only the models whose name contains this")
    args = ap.parse_args(argv)
    torch = optional_torch()
    set_torch_threads(torch, THREADS)

    rows, cpu_notes, bad = [], [], []
    for label, (lib_build, jax_build) in MODELS.items():
        if args.no_gpt and label.startswith("GPT"):
            continue
        if args.only and args.only.lower() not in label.lower():
            continue
        cands = candidates(lib_build, jax_build, torch)
        losses = first_losses(cands)
        agree = agreement(losses)
        if float(agree) > 1e-3:
            bad.append(f"{label}: losses disagree: {losses}")
        t = compare(cands, rounds=args.rounds, warmup=2, min_batch_s=args.min_batch)
        e, c = t["tracegrad eager"], t["tracegrad.compile"]
        peers = [k for k in ("torch eager", "jax.jit") if k in t]
        best = min(peers, key=lambda k: t[k].median) if peers else None
        if "torch eager" in t:
            r, lo, hi = ratio(e, t["torch eager"])
            eager_cells = [fmt_time(t["torch eager"].median, "ms"), f"{r:.2f}x",
                           f"{lo:.2f}-{hi:.2f}x"]
        else:
            eager_cells = ["n/a", "n/a", "n/a"]
        comp_cells = [fmt_time(t["jax.jit"].median, "ms") if "jax.jit" in t else "n/a",
                      f"{c.median / t[best].median:.2f}x ({best})" if best else "n/a"]
        rows.append([label, fmt_time(e.median, "ms"), *eager_cells, fmt_time(c.median, "ms"),
                     *comp_cells, agree])
        cpu_notes.append(f"  {label}: " + cpu_line(t).split(": ", 1)[1])

    footer = [f"times: ms per step, median of {args.rounds} interleaved rounds; spread = "
              "min-max of the per-round eager/torch ratios; loss agree = largest relative "
              "difference of the first 3 losses to torch eager's (same initial weights and data)",
              "CPU/wall per candidate (process CPU time / wall time, median of rounds; "
              "pinned to one CPU, below 1 = waited):", *cpu_notes, *env_lines(torch)]
    print_table("training steps (fwd + bwd + optimizer): tracegrad vs torch eager and jax.jit",
                ["model", "tg eager", "torch eager", "tg/torch", "spread", "tg.compile",
                 "jax.jit", "compile/best peer", "loss agree"], rows, footer)
    if bad:
        print("\n".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
