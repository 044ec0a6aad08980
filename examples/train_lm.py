"""A small character-level language model, an LSTM or a Transformer, trained with Adam.

    python examples/train_lm.py [--model lstm|transformer] [--steps N] [--compile]

The corpus is made here: sentences from a tiny grammar, so the script needs no files.
Batches are random windows of it (``torch.randint``); the model predicts each next
character. The Transformer is a decoder-only GPT-style stack (``nn.TransformerEncoder``
with a causal mask, pre-norm, learned positions); the LSTM a two-layer ``nn.LSTM``. With
``import torch`` in place of the first import PyTorch prints the same losses
(tests/test_examples.py runs it both ways and under ``--compile``). Dropout is 0 so that
compiled steps, which draw their own dropout masks, print the same numbers too.
"""
import argparse
import random

import tracegrad as torch

nn = torch.nn
F = nn.functional

WORDS = {"noun": ["cat", "dog", "bird", "fish"], "verb": ["sees", "likes", "chases"],
         "adj": ["red", "big", "small"]}


def make_corpus(n_sentences=400, seed=0):
    """'the big cat sees a dog. ...' from a fixed Python RNG: the same text everywhere."""
    rng = random.Random(seed)

    def phrase():
        adj = rng.choice(WORDS["adj"]) + " " if rng.random() < 0.5 else ""
        return f"{rng.choice(['the', 'a'])} {adj}{rng.choice(WORDS['noun'])}"

    return " ".join(f"{phrase()} {rng.choice(WORDS['verb'])} {phrase()}."
                    for _ in range(n_sentences))


class LSTMLM(nn.Module):
    def __init__(self, vocab, dim=32, layers=2):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.lstm = nn.LSTM(dim, dim, num_layers=layers, batch_first=True)
        self.head = nn.Linear(dim, vocab)

    def forward(self, x):
        out, _ = self.lstm(self.emb(x))
        return self.head(out)


class TransformerLM(nn.Module):
    def __init__(self, vocab, dim=32, heads=4, layers=2, context=32):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(context, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, nn.LayerNorm(dim),
                                            enable_nested_tensor=False)
        self.head = nn.Linear(dim, vocab)

    def forward(self, x):
        t = x.shape[1]
        h = self.emb(x) + self.pos(torch.arange(t))
        mask = nn.Transformer.generate_square_subsequent_mask(t)
        return self.head(self.blocks(h, mask=mask, is_causal=True))


def batches(data, steps, batch=16, context=32):
    for _ in range(steps):
        starts = torch.randint(0, len(data) - context - 1, (batch,))
        idx = starts[:, None] + torch.arange(context)
        yield data[idx], data[idx + 1]   # (two arrays: a compiled step's inputs share no memory)


def train(kind="transformer", steps=30, compiled=False, log_every=5, context=32):
    torch.manual_seed(0)
    text = make_corpus()
    chars = sorted(set(text))
    data = torch.tensor([chars.index(c) for c in text])
    vocab = len(chars)
    model = LSTMLM(vocab) if kind == "lstm" else TransformerLM(vocab, context=context)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.detach()

    run = torch.compile(step) if compiled else step
    losses = []
    for i, (x, y) in enumerate(batches(data, steps, context=context)):
        losses.append(float(run(x, y)))
        if i % log_every == 0 or i == steps - 1:
            print(f"{kind} step {i:3d} loss {losses[-1]:.4f}")
    return losses


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["lstm", "transformer"], default="transformer")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--compile", action="store_true")
    args = p.parse_args(argv)
    losses = train(args.model, args.steps, args.compile)
    print(f"{args.model}: loss {losses[0]:.4f} -> {losses[-1]:.4f}")


if __name__ == "__main__":
    main()
