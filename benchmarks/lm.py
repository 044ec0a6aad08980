"""Language-model training steps, tracegrad beside its peers: one table from one run.

    python benchmarks/lm.py [--rounds N] [--min-batch S] [--threads N] [--only NAME]

Each row is one Adam training step (forward, backward, update) of a character-level LM,
batch 16, sequence 32, vocabulary 64:

* LSTM LM: Embedding(64, 64), a 2-layer LSTM(64, 128) (batch_first), Linear(128, 64);
* Transformer LM: Embedding + learned positions (d 64), a 2-layer pre-norm
  TransformerEncoder (4 heads, feed-forward 256, GELU, dropout 0, causal mask with
  ``is_causal=True``), LayerNorm, Linear(64, 64).

Candidates: tracegrad eager and torch eager (the same step, written once against a module
``lib`` that is ``tracegrad`` or ``torch``), ``tracegrad.compile`` and ``torch.compile`` of
that step, and a hand-written ``jax.jit`` step (``lax.scan`` over time for the LSTM,
``jax.nn.dot_product_attention`` for the Transformer) with the same Adam update. All start
from the same weights (tracegrad's init under ``manual_seed(0)``, copied) and data; the
first three losses of every candidate are compared before timing ("loss agree": the largest
relative difference to torch eager's). Times are the median of interleaved rounds
(``_util.compare``), pinned to one CPU with one thread per library. The time of the
first three calls (the compilers' tracing and building) is printed beside.
"""
from __future__ import annotations

import argparse
import sys
import time

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
    set_torch_threads,
)

import tracegrad as tg  # noqa: E402  (after pin_threads)

jax.config.update("jax_enable_x64", True)   # tracegrad's lowering mode; the peer runs alike

BATCH, SEQ, VOCAB = 16, 32, 64
LSTM = {"emb": 64, "hidden": 128, "layers": 2}
TRANSFORMER = {"d": 64, "heads": 4, "ff": 256, "layers": 2}
LR, B1, B2, EPS = 1e-3, 0.9, 0.999, 1e-8


def data():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, VOCAB, (BATCH, SEQ + 1))
    return tokens[:, :-1].copy(), tokens[:, 1:].copy()


def lstm_model(lib):
    nn = lib.nn

    class LSTMLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(VOCAB, LSTM["emb"])
            self.lstm = nn.LSTM(LSTM["emb"], LSTM["hidden"], LSTM["layers"], batch_first=True)
            self.head = nn.Linear(LSTM["hidden"], VOCAB)

        def forward(self, x):
            return self.head(self.lstm(self.emb(x))[0])

    return LSTMLM()


def transformer_model(lib):
    nn = lib.nn
    d = TRANSFORMER["d"]

    class TransformerLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(VOCAB, d)
            self.pos = nn.Embedding(SEQ, d)
            layer = nn.TransformerEncoderLayer(d, TRANSFORMER["heads"], TRANSFORMER["ff"],
                                               dropout=0.0, activation="gelu",
                                               batch_first=True, norm_first=True)
            self.blocks = nn.TransformerEncoder(layer, TRANSFORMER["layers"], nn.LayerNorm(d),
                                                enable_nested_tensor=False)
            self.head = nn.Linear(d, VOCAB)
            self.register_buffer("positions", lib.arange(SEQ))
            self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(SEQ))

        def forward(self, x):
            h = self.emb(x) + self.pos(self.positions)
            return self.head(self.blocks(h, mask=self.mask, is_causal=True))

    return TransformerLM()


def initial_weights(build):
    tg.manual_seed(0)
    return {k: v.numpy().copy() for k, v in build(tg).state_dict().items()}


def lib_step(lib, build, weights, compiled=None):
    """A step over ``lib`` from ``weights``; ``compiled``: that library's compile."""
    model = build(lib)
    model.load_state_dict({k: lib.tensor(v) for k, v in weights.items()})
    opt = lib.optim.Adam(model.parameters(), lr=LR)
    F = lib.nn.functional

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1))
        loss.backward()
        opt.step()
        return loss

    run = compiled(step) if compiled is not None else step
    x, y = (lib.tensor(a) for a in data())
    return lambda: run(x, y).item()   # .item(): until the work is done


# ---- hand-written jax peers --------------------------------------------------------------

def _cross_entropy(logits, y):
    logp = jax.nn.log_softmax(logits.reshape(-1, VOCAB), axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, y.reshape(-1, 1), axis=1))


def _lstm_loss(p, x, y):
    h = p["emb.weight"][x]                           # (B, T, E)
    for layer in range(LSTM["layers"]):
        w_ih, w_hh = p[f"lstm.weight_ih_l{layer}"], p[f"lstm.weight_hh_l{layer}"]
        b = p[f"lstm.bias_ih_l{layer}"] + p[f"lstm.bias_hh_l{layer}"]
        xw = h @ w_ih.T + b                          # the whole sequence's input projection

        def cell(carry, xw_t, w_hh=w_hh):
            h_t, c_t = carry
            i, f, g, o = jnp.split(xw_t + h_t @ w_hh.T, 4, axis=-1)
            c_t = jax.nn.sigmoid(f) * c_t + jax.nn.sigmoid(i) * jnp.tanh(g)
            h_t = jax.nn.sigmoid(o) * jnp.tanh(c_t)
            return (h_t, c_t), h_t

        zeros = jnp.zeros((x.shape[0], LSTM["hidden"]), xw.dtype)
        _, hs = jax.lax.scan(cell, (zeros, zeros), jnp.swapaxes(xw, 0, 1))
        h = jnp.swapaxes(hs, 0, 1)
    return _cross_entropy(h @ p["head.weight"].T + p["head.bias"], y)


def _layer_norm(x, w, b, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps) * w + b


def _transformer_loss(p, x, y):
    d, heads = TRANSFORMER["d"], TRANSFORMER["heads"]
    bsz, t = x.shape
    h = p["emb.weight"][x] + p["pos.weight"][:t]
    for layer in range(TRANSFORMER["layers"]):
        q = f"blocks.layers.{layer}."
        a = _layer_norm(h, p[q + "norm1.weight"], p[q + "norm1.bias"])
        qkv = a @ p[q + "self_attn.in_proj_weight"].T + p[q + "self_attn.in_proj_bias"]
        qs, ks, vs = (z.reshape(bsz, t, heads, d // heads) for z in jnp.split(qkv, 3, -1))
        att = jax.nn.dot_product_attention(qs, ks, vs, is_causal=True).reshape(bsz, t, d)
        h = h + att @ p[q + "self_attn.out_proj.weight"].T + p[q + "self_attn.out_proj.bias"]
        a = _layer_norm(h, p[q + "norm2.weight"], p[q + "norm2.bias"])
        a = jax.nn.gelu(a @ p[q + "linear1.weight"].T + p[q + "linear1.bias"],
                        approximate=False)
        h = h + a @ p[q + "linear2.weight"].T + p[q + "linear2.bias"]
    h = _layer_norm(h, p["blocks.norm.weight"], p["blocks.norm.bias"])
    return _cross_entropy(h @ p["head.weight"].T + p["head.bias"], y)


def jax_step(loss_fn, weights):
    names = [k for k in weights if not k.endswith(("positions", "mask"))]

    def step(state, x, y):
        params, m, v, t = state
        loss, g = jax.value_and_grad(loss_fn)(params, x, y)
        t = t + 1
        m = jax.tree_util.tree_map(lambda a, b: B1 * a + (1 - B1) * b, m, g)
        v = jax.tree_util.tree_map(lambda a, b: B2 * a + (1 - B2) * b * b, v, g)
        bc1, bc2 = 1 - B1 ** t, 1 - B2 ** t
        params = jax.tree_util.tree_map(
            lambda p, a, b: p - (LR / bc1) * a / (jnp.sqrt(b) / jnp.sqrt(bc2) + EPS),
            params, m, v)
        return (params, m, v, t), loss

    params = {k: jnp.asarray(weights[k]) for k in names}
    m, v = ({k: jnp.zeros_like(a) for k, a in params.items()} for _ in range(2))  # distinct
    box = [(params, m, v, jnp.asarray(0.0, jnp.float32))]
    jitted = jax.jit(step, donate_argnums=0)
    x, y = (jnp.asarray(a) for a in data())

    def run():
        box[0], loss = jitted(box[0], x, y)
        return float(loss)
    return run


MODELS = {
    f"LSTM LM 2x{LSTM['hidden']}, seq {SEQ}, b {BATCH}": (lstm_model, _lstm_loss),
    f"Transformer LM 2x d{TRANSFORMER['d']} h{TRANSFORMER['heads']}, seq {SEQ}, b {BATCH}":
        (transformer_model, _transformer_loss),
}


def candidates(build, loss_fn, torch):
    weights = initial_weights(build)
    out = {"tracegrad eager": lib_step(tg, build, weights),
           "tracegrad.compile": lib_step(tg, build, weights, tg.compile)}
    if torch is not None:
        out["torch eager"] = lib_step(torch, build, weights)
        out["torch.compile"] = lib_step(torch, build, weights, torch.compile)
    out["jax.jit"] = jax_step(loss_fn, weights)
    return out


def first_losses(cands, n=3):
    """The first n losses of each candidate, from its fresh initial state, and the time
    those n calls took (for the compilers: tracing and building, which tracegrad.compile
    does on its third call, after Adam's first step has made its state)."""
    losses, first = {}, {}
    for name, fn in cands.items():
        t0 = time.perf_counter()
        losses[name] = [fn() for _ in range(n)]
        first[name] = time.perf_counter() - t0
    return losses, first


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=11, help="interleaved timing rounds")
    ap.add_argument("--min-batch", type=float, default=0.2,
                    help="seconds of calls per candidate per round")
    ap.add_argument("--threads", type=int, default=1, help="threads per library")
    ap.add_argument("--only", help="run only the models whose name contains this")
    args = ap.parse_args(argv)
    torch = optional_torch()
    set_torch_threads(torch, THREADS)

    order = ["tracegrad eager", "torch eager", "tracegrad.compile", "torch.compile", "jax.jit"]
    rows, first_rows, cpu_notes, bad = [], [], [], []
    for label, (build, loss_fn) in MODELS.items():
        if args.only and args.only.lower() not in label.lower():
            continue
        cands = candidates(build, loss_fn, torch)
        losses, first = first_losses(cands)
        ref = losses.get("torch eager") or losses["tracegrad eager"]
        worst = max(abs(a - b) / abs(b) for ls in losses.values()
                    for a, b in zip(ls, ref, strict=True))
        if worst > 1e-3:
            bad.append(f"{label}: losses disagree: {losses}")
        t = compare(cands, rounds=args.rounds, warmup=2, min_batch_s=args.min_batch)
        cells = [fmt_time(t[k].median, "ms") if k in t else "n/a" for k in order]
        best_peer = min((k for k in ("torch eager", "torch.compile", "jax.jit") if k in t),
                        key=lambda k: t[k].median)
        rows.append([label, *cells,
                     f"{t['tracegrad eager'].median / t['torch eager'].median:.2f}x"
                     if "torch eager" in t else "n/a",
                     f"{t['tracegrad.compile'].median / t[best_peer].median:.2f}x ({best_peer})",
                     f"{worst:.1e}"])
        first_rows.append(f"  {label}: " + ", ".join(
            f"{k} {first[k]:.2f} s" for k in order if k in first))
        cpu_notes.append(f"  {label}: " + cpu_line(t).split(": ", 1)[1])

    footer = [f"times: ms per step, median of {args.rounds} interleaved rounds; loss agree = "
              "largest relative difference of the first 3 losses to torch eager's (same "
              "initial weights and data)",
              "first 3 calls (s; for the compilers: tracing and building):", *first_rows,
              "CPU/wall per candidate (process CPU time / wall time, median of rounds; "
              "pinned to one CPU, below 1 = waited):", *cpu_notes, *env_lines(torch)]
    print_table("LM training steps (fwd + bwd + Adam): tracegrad vs torch and jax.jit",
                ["model", *order, "tg eager/torch eager", "tg.compile/best peer",
                 "loss agree"], rows, footer)
    if bad:
        print("\n".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
