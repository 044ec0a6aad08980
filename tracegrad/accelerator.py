"""``torch.accelerator``: none (eager tensors live on the CPU; compiled functions run on
whatever device jax has)."""
from __future__ import annotations

from .functions import _WHERE

__all__ = ["is_available", "current_accelerator", "device_count", "current_device_index",
           "set_device_index", "synchronize"]


def is_available() -> bool:
    return False


def current_accelerator(check_available: bool = False):
    return None


def device_count() -> int:
    return 0


def current_device_index(*_, **__) -> int:
    raise RuntimeError("Cannot access accelerator device when none is available. (" + _WHERE
                       + ")")


set_device_index = set_device_idx = synchronize = current_device_idx = current_device_index
