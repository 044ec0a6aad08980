"""A small GPT training step, a function with a graph break and a recompile: what the
``tracegrad`` command shows.

    tracegrad viz examples/see_the_step.py -o report.html
    tracegrad explain examples/see_the_step.py

In the report: the step's equations in three bands (forward, backward, optimizer), each
grouped by module (``model`` > ``blocks.1`` > ``attn``) and then by source line;
inputs named by where they come from (``model.blocks.1.attn.qkv.weight``,
``opt.state[model.head.weight].exp_avg``); the guards, the recompile (``x: shape
(8, 32) -> (4, 32)``) and the graph break (``accuracy``'s ``.item()``, with its line).
"""
import argparse
import math

import tracegrad as tg
from tracegrad import nn
from tracegrad.nn import functional as F


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x, mask):
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d // self.heads))
        att = F.softmax(att.masked_fill(mask, float("-inf")), dim=-1)
        return self.proj((att @ v).transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = Attention(d, heads)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x, mask):
        x = x + self.attn(self.ln1(x), mask)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, vocab=64, d=32, heads=4, layers=4, seq=32):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(seq, d)
        self.blocks = nn.ModuleList([Block(d, heads) for _ in range(layers)])
        self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, vocab)

    def forward(self, idx):
        t = idx.shape[1]
        mask = tg.triu(tg.ones(t, t, dtype=tg.bool), diagonal=1)
        x = self.tok(idx) + self.pos(tg.arange(t))
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.ln(x))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args()

    tg.manual_seed(0)
    model = GPT(layers=args.layers)
    opt = tg.optim.AdamW(model.parameters(), lr=3e-3)

    @tg.compile
    def train_step(x, y):
        opt.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        opt.step()
        return loss

    @tg.compile
    def accuracy(x, y):
        hits = (model(x).argmax(-1) == y).float().mean()
        return hits.item()  # a Python float: a graph break, so this runs eagerly

    data = tg.randint(0, 64, (8, 33))
    x, y = data[:, :-1].clone(), data[:, 1:].clone()
    for _ in range(args.steps):
        loss = train_step(x, y)
    print(f"step {args.steps - 1}  loss {loss.item():.4f}  accuracy {accuracy(x, y):.3f}")
    loss = train_step(x[:4], y[:4])  # another batch size: a recompile
    print(f"half batch  loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
