"""tracegrad demo: ``python -m tracegrad.demo`` (or the ``tracegrad-demo`` script).

Part 1 trains the two-layer network of PyTorch's "Tensors and autograd" tutorial
with raw tensors and a hand-written SGD step. Part 2 trains a small classifier
on 2-D spirals with ``nn.Sequential``, ``nn.CrossEntropyLoss`` and an optimizer
from ``tracegrad.optim``. Part 3 runs Part 1's step through ``tracegrad.compile``
beside eager: both loss curves and a timing table. Each part is one function returning its final
numbers, so callers (and tests) can run them on their own.

    python -m tracegrad.demo --steps 100 --clf-steps 50
"""
from __future__ import annotations

import argparse
import math
import time

import tracegrad as tg
from tracegrad import _checkout, nn  # noqa: F401  (_checkout: NOTE: [Checkout folder])

WARMUP_CALLS = 3  # trace, trace again (the .grad slots now exist), XLA compile


def two_layer_step(x, y, w1, w2, learning_rate):
    """One step of the tutorial's loop: forward, loss, backward, in-place SGD update."""
    y_pred = x.mm(w1).clamp(min=0).mm(w2)
    loss = (y_pred - y).pow(2).sum()
    loss.backward()
    with tg.no_grad():
        w1 -= learning_rate * w1.grad
        w2 -= learning_rate * w2.grad
        w1.grad.zero_()
        w2.grad.zero_()
    return loss


def train_two_layer_net(steps: int = 500, seed: int = 0, compiled: bool = False):
    """Train the two-layer net; returns (losses, seconds per step after the first
    WARMUP_CALLS, seconds of those calls). ``compiled`` runs the step via tracegrad.compile:
    its first call traces (and runs eagerly), the second traces again now that the
    .grad tensors exist, the third compiles with XLA."""
    tg.manual_seed(seed)
    N, D_in, H, D_out = 64, 1000, 100, 10
    x = tg.randn(N, D_in)
    y = tg.randn(N, D_out)
    w1 = tg.randn(D_in, H, requires_grad=True)
    w2 = tg.randn(H, D_out, requires_grad=True)
    step = tg.compile(two_layer_step) if compiled else two_layer_step
    losses, first, start = [], 0.0, time.perf_counter()
    for t in range(steps):
        if t == WARMUP_CALLS:
            first, start = time.perf_counter() - start, time.perf_counter()
        losses.append(step(x, y, w1, w2, 1e-6).item())
    if steps <= WARMUP_CALLS:
        return losses, math.nan, time.perf_counter() - start
    return losses, (time.perf_counter() - start) / (steps - WARMUP_CALLS), first


def two_layer_net(steps: int = 500, log_every: int = 50, seed: int = 0) -> float:
    """Fit random data with y = relu(x @ w1) @ w2 by gradient descent; returns the last loss.

    N is the batch size, D_in the input width, H the hidden width, D_out the output width.
    """
    print(f"== two-layer net: raw tensors, autograd, manual SGD ({steps} steps) ==")
    losses, _, _ = train_two_layer_net(steps, seed)
    for t, loss_value in enumerate(losses):
        if t % log_every == 0 or t == steps - 1:
            print(f"step {t:4d}  loss {loss_value:.6g}")
    return losses[-1] if losses else math.nan


def compiled_two_layer_net(steps: int = 500, log_every: int = 50, seed: int = 0) -> dict:
    """The same net, eager and through tracegrad.compile: both loss curves and timings."""
    print(f"== the same net, eager vs @tracegrad.compile ({steps} steps) ==")
    eager, eager_step, eager_first = train_two_layer_net(steps, seed)
    comp, comp_step, comp_first = train_two_layer_net(steps, seed, compiled=True)
    print(f"{'step':>6}  {'eager loss':>14}  {'compiled loss':>14}")
    for t in range(steps):
        if t % log_every == 0 or t == steps - 1:
            print(f"{t:6d}  {eager[t]:14.6g}  {comp[t]:14.6g}")
    print(f"\n{'':24}{'eager':>12}{'compiled':>12}{'speedup':>10}")
    label = f"first {WARMUP_CALLS} calls (ms)"
    print(f"{label:24}{eager_first * 1e3:12.1f}{comp_first * 1e3:12.1f}")
    speedup = eager_step / comp_step if comp_step else math.nan
    print(f"{'ms per step after':24}{eager_step * 1e3:12.3f}{comp_step * 1e3:12.3f}"
          f"{speedup:9.2f}x")
    return {"eager": eager, "compiled": comp, "speedup": speedup}


def make_spirals(n_per_class: int = 100, n_classes: int = 3, noise: float = 0.2,
                 seed: int = 0) -> tuple[tg.Tensor, tg.Tensor]:
    """Interleaved 2-D spiral arms, one per class: points (N, 2) and labels (N,)."""
    tg.manual_seed(seed)
    points, labels = [], []
    for k in range(n_classes):
        radius = tg.linspace(0.0, 1.0, n_per_class)
        angle = tg.linspace(k * 4.0, (k + 1) * 4.0, n_per_class) + noise * tg.randn(n_per_class)
        points.append(tg.stack([radius * tg.sin(angle), radius * tg.cos(angle)], dim=1))
        labels.append(tg.full((n_per_class,), k, dtype=tg.int64))
    return tg.cat(points), tg.cat(labels)


def accuracy(logits: tg.Tensor, labels: tg.Tensor) -> float:
    return (logits.argmax(dim=1) == labels).float().mean().item()


def spiral_classifier(steps: int = 300, log_every: int = 50, optimizer: str = "adam",
                      seed: int = 0) -> tuple[float, float]:
    """Train an MLP on the spirals with full-batch steps; returns (loss, accuracy)."""
    print(f"== spiral classifier: nn.Sequential + CrossEntropyLoss + {optimizer} "
          f"({steps} steps) ==")
    x, labels = make_spirals(seed=seed)
    tg.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(2, 64), nn.ReLU(),
        nn.Linear(64, 64), nn.ReLU(),
        nn.Linear(64, 3),
    )
    print(model)
    loss_fn = nn.CrossEntropyLoss()
    if optimizer == "adam":
        opt = tg.optim.Adam(model.parameters(), lr=1e-2)
    else:
        opt = tg.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    loss_value, acc = math.nan, math.nan
    for t in range(steps):
        opt.zero_grad()
        logits = model(x)
        loss = loss_fn(logits, labels)
        loss.backward()
        opt.step()
        if t % log_every == 0 or t == steps - 1:
            loss_value, acc = loss.item(), accuracy(logits, labels)
            print(f"step {t:4d}  loss {loss_value:.4f}  accuracy {acc:.3f}")
    model.eval()
    with tg.no_grad():
        final_logits = model(x)
        loss_value = loss_fn(final_logits, labels).item()
        acc = accuracy(final_logits, labels)
    print(f"final     loss {loss_value:.4f}  accuracy {acc:.3f}")
    return loss_value, acc


def _parse_args(argv):
    parser = argparse.ArgumentParser(prog="tracegrad-demo", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=500,
                        help="training steps of the two-layer net (default 500)")
    parser.add_argument("--clf-steps", type=int, default=300,
                        help="training steps of the spiral classifier (default 300)")
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam",
                        help="optimizer for the classifier (default adam)")
    parser.add_argument("--log-every", type=int, default=50, help="print every N steps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("steps", "clf_steps", "log_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run both parts; ``argv`` defaults to the command line."""
    args = _parse_args(argv)
    start = time.perf_counter()
    two_layer_net(args.steps, args.log_every, args.seed)
    print()
    spiral_classifier(args.clf_steps, args.log_every, args.optimizer, args.seed)
    print()
    compiled_two_layer_net(args.steps, args.log_every, args.seed)
    print(f"\ndone in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
