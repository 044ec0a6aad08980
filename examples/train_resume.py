"""A training script in the usual PyTorch shape: checkpoints every epoch, resumes from one.

    python examples/train_resume.py [--dir DIR] [--compile]

The usual lines: a device chosen by ``torch.cuda.is_available()``, a ``DataLoader`` over
a ``TensorDataset`` with shuffling, AdamW with a cosine schedule, ``clip_grad_norm_``,
``torch.save`` of a checkpoint dict every epoch, then a second run that ``torch.load``s
the epoch-2 checkpoint and trains on to the end. With ``import torch`` in place of the
first import PyTorch prints the same lines, and each can load the other's checkpoints
(tests/test_examples.py runs it both ways). ``--compile`` puts the step under
``torch.compile`` (tracegrad.compile): the same losses to float rounding.
"""
import argparse
import os
import tempfile

import tracegrad as torch

nn = torch.nn
data = torch.utils.data


def make(device):
    torch.manual_seed(0)
    x = torch.randn(256, 16)
    y = (x[:, :4].sum(1, keepdim=True) > 0).float()
    loader = data.DataLoader(data.TensorDataset(x, y), batch_size=32, shuffle=True)
    model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.LayerNorm(32), nn.Linear(32, 1))
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=6 * len(loader))
    return loader, model, opt, sched


def train(epochs, start, ckpt_dir, device, compiled=False, resume=None):
    loader, model, opt, sched = make(device)
    loss_fn = nn.BCEWithLogitsLoss()

    def step(xb, yb):
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        opt.step()
        return loss.detach(), norm

    run = torch.compile(step) if compiled else step
    if resume is not None:
        ck = torch.load(resume)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        torch.set_rng_state(ck["rng"])
        start = ck["epoch"] + 1
        print(f"resumed from epoch {ck['epoch']} (loss {ck['loss']:.4f})")
    for epoch in range(start, epochs):
        total = 0.0
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            loss, norm = run(xb, yb)
            sched.step()
            total += loss.item()
        mean = total / len(loader)
        print(f"epoch {epoch}: loss {mean:.4f} lr {sched.get_last_lr()[0]:.6f} "
              f"grad norm {float(norm):.4f}")
        torch.save({"epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "rng": torch.get_rng_state(),
                    "loss": mean}, os.path.join(ckpt_dir, f"epoch{epoch}.pt"))
    return model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=None, help="where checkpoints go (default: a temp dir)")
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device: {device}")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt_dir = args.dir or tmp
        train(6, 0, ckpt_dir, device, args.compile)
        resumed = train(6, 0, ckpt_dir, device, args.compile,
                        resume=os.path.join(ckpt_dir, "epoch2.pt"))
        print("final weight sum", f"{float(resumed[0].weight.detach().sum()):.4f}")


if __name__ == "__main__":
    main()
