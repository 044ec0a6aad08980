"""Train a small classifier from a DataLoader: the usual PyTorch script, run by tracegrad.

    python examples/train_dataloader.py

With ``import torch`` in place of the first import, PyTorch prints the same lines:
the same split, the same shuffled batches, the same dropout masks and losses
(tests/test_data.py runs the script both ways and compares what they print).
"""
import tracegrad as torch

nn = torch.nn
data = torch.utils.data


def main(epochs: int = 4) -> None:
    torch.manual_seed(0)
    x = torch.randn(200, 10)
    y = (x @ torch.randn(10, 3)).argmax(dim=1)  # labels from a random linear map
    train_set, val_set = data.random_split(data.TensorDataset(x, y), [0.8, 0.2])
    loader = data.DataLoader(train_set, batch_size=32, shuffle=True, drop_last=True)
    val_loader = data.DataLoader(val_set, batch_size=64)

    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        total, seen = 0.0, 0
        for xb, yb in loader:
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
            seen += len(xb)
        model.eval()
        correct = 0
        with torch.no_grad():
            for xb, yb in val_loader:
                correct += (model(xb).argmax(dim=1) == yb).sum().item()
        print(f"epoch {epoch}: {len(loader)} batches, train loss {total / seen:.4f}, "
              f"val accuracy {correct / len(val_set):.4f}")


if __name__ == "__main__":
    main()
