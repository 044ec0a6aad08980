"""``torch.backends.cudnn``: not available; its flags are settable, with PyTorch's defaults."""
from __future__ import annotations

import contextlib

enabled = True
benchmark = False
benchmark_limit = 10
deterministic = False
allow_tf32 = True


def is_available() -> bool:
    return False


def version():
    return None


@contextlib.contextmanager
def flags(enabled=False, benchmark=False, benchmark_limit=10, deterministic=False,
          allow_tf32=True):
    """Set the flags for a block and restore them after it."""
    names = ("enabled", "benchmark", "benchmark_limit", "deterministic", "allow_tf32")
    g = globals()
    old = {k: g[k] for k in names}
    g.update(zip(names, (enabled, benchmark, benchmark_limit, deterministic, allow_tf32),
                 strict=True))
    try:
        yield
    finally:
        g.update(old)
