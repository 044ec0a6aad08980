"""Train the standard small CNN on synthetic 28x28 images, eagerly and compiled.

    python examples/train_cnn.py --steps 30
    tracegrad explain examples/train_cnn.py

The data are two classes of synthetic "digits" (a vertical or a horizontal bar at a
random place, plus noise), so nothing is downloaded. The model is the one written
for MNIST with ``import torch``: Conv2d-BatchNorm2d-ReLU-MaxPool2d-Conv2d-ReLU-
AdaptiveAvgPool2d-Flatten-Linear; ``train_step`` (forward, backward, the SGD update
and BatchNorm's running statistics) compiles to one XLA program.
"""
import argparse

import numpy as np

import tracegrad as torch
from tracegrad import nn


def bars(n: int, seed: int):
    """n images (n, 1, 28, 28) with a vertical (label 0) or horizontal (1) bar."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.3, (n, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 2, n)
    for i, (label, at) in enumerate(zip(y, rng.integers(4, 24, n), strict=True)):
        if label == 0:
            x[i, 0, :, at - 1:at + 2] += 1.0
        else:
            x[i, 0, at - 1:at + 2, :] += 1.0
    return torch.tensor(x), torch.tensor(y)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--eager", action="store_true", help="do not compile the step")
    args = parser.parse_args()

    torch.manual_seed(0)
    x, y = bars(64, seed=0)
    x_test, y_test = bars(128, seed=1)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3), nn.ReLU(), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
        nn.Linear(32, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def train_step(x, y):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    step = train_step if args.eager else torch.compile(train_step)
    for i in range(args.steps):
        loss = step(x, y)
        if i % 10 == 0 or i == args.steps - 1:
            print(f"step {i:3d}  loss {loss.item():.4f}")
    model.eval()
    with torch.no_grad():
        acc = (model(x_test).argmax(dim=1) == y_test).float().mean()
    print(f"test accuracy {acc.item():.2f}")


if __name__ == "__main__":
    main()
