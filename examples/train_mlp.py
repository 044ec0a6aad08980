"""Train a small MLP with a compiled training step; quick (about a second).

    python examples/train_mlp.py --steps 50
    tracegrad explain examples/train_mlp.py
    tracegrad viz examples/train_mlp.py -o report.html

``train_step`` (forward, backward and the optimizer update) compiles to one XLA
program. Its first call traces; the second traces again because the first made
the ``.grad`` tensors, and from then on calls hit the cache. ``evaluate`` runs
on a test set of another size, so it compiles once per batch shape.
"""
import argparse

import tracegrad as tg
from tracegrad import nn


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    tg.manual_seed(0)
    x, y = tg.randn(64, 8), tg.randint(0, 3, (64,))
    x_test, y_test = tg.randn(40, 8), tg.randint(0, 3, (40,))
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
    opt = tg.optim.Adam(model.parameters(), lr=1e-2)

    @tg.compile
    def train_step(x, y):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    @tg.compile
    def evaluate(x, y):
        with tg.no_grad():
            return (model(x).argmax(dim=1) == y).float().mean()

    for step in range(args.steps):
        loss = train_step(x, y)
        if step % 10 == 0 or step == args.steps - 1:
            print(f"step {step:3d}  loss {loss.item():.4f}  "
                  f"train acc {evaluate(x, y).item():.2f}  "
                  f"test acc {evaluate(x_test, y_test).item():.2f}")


if __name__ == "__main__":
    main()
