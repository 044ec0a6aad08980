"""``torch.backends.mkldnn``: reported as a CPU PyTorch reports it; tracegrad does not use
oneDNN (eager ops are NumPy's), so ``enabled`` changes nothing."""

enabled = True
deterministic = False


def is_available() -> bool:
    return True
