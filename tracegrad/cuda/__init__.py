"""``torch.cuda`` as a CPU-only PyTorch reports it: no CUDA device.

tracegrad's eager tensors live on the CPU; compiled functions (``tracegrad.compile``) run on
whatever device jax has (``jax.devices()``), with no call here needed. So the device lines
at the top of training scripts run unchanged:

>>> import tracegrad as torch
>>> device = 'cuda' if torch.cuda.is_available() else 'cpu'
>>> device
'cpu'

Queries answer as PyTorch built without CUDA does: ``is_available()`` False,
``device_count()`` 0, memory counters 0; seeding and cache calls do nothing; calls that need
a device (``current_device``, ``get_device_name``, ``synchronize``, ...) raise PyTorch's
"Torch not compiled with CUDA enabled" (an AssertionError that is also a RuntimeError).
"""
from __future__ import annotations

from ..functions import _no_device_error
from . import amp

__all__ = ["is_available", "device_count", "is_initialized", "init", "current_device",
           "get_device_name", "get_device_properties", "get_device_capability", "set_device",
           "synchronize", "empty_cache", "manual_seed", "manual_seed_all", "seed", "seed_all",
           "memory_allocated", "max_memory_allocated", "memory_reserved",
           "max_memory_reserved", "reset_peak_memory_stats", "reset_max_memory_allocated",
           "is_bf16_supported", "amp", "device", "mem_get_info", "current_stream",
           "Stream", "Event", "memory_stats", "memory_summary", "get_rng_state",
           "set_rng_state", "initial_seed", "ipc_collect", "is_built"]


def is_available() -> bool:
    """False: tracegrad computes on the CPU (compiled functions on jax's device)."""
    return False


def is_built() -> bool:
    return False


def device_count() -> int:
    return 0


def is_initialized() -> bool:
    return False


def _needs_cuda(*_, **__):
    raise _no_device_error("cuda")


# calls that need a CUDA device
init = current_device = get_device_name = get_device_properties = _needs_cuda
get_device_capability = set_device = synchronize = mem_get_info = current_stream = _needs_cuda
get_rng_state = set_rng_state = initial_seed = _needs_cuda


class _NeedsCuda:
    """``torch.cuda.Stream`` / ``Event`` / ``device``: constructing one needs a device."""

    def __init__(self, *args, **kwargs):
        _needs_cuda()


class Stream(_NeedsCuda):
    pass


class Event(_NeedsCuda):
    pass


class device(_NeedsCuda):  # noqa: N801  (torch.cuda.device, a context manager)
    pass


def _nothing(*_, **__) -> None:
    """Harmless without CUDA, as in PyTorch: there is nothing to seed, free or reset."""
    return None


manual_seed = manual_seed_all = seed = seed_all = empty_cache = ipc_collect = _nothing
reset_peak_memory_stats = reset_max_memory_allocated = reset_accumulated_memory_stats = _nothing


def memory_allocated(device=None) -> int:
    return 0


def max_memory_allocated(device=None) -> int:
    return 0


def memory_reserved(device=None) -> int:
    return 0


def max_memory_reserved(device=None) -> int:
    return 0


def memory_stats(device=None) -> dict:
    return {}


def memory_summary(device=None, abbreviated: bool = False) -> str:
    return "No CUDA device: tracegrad's eager tensors live on the CPU.\n"


def is_bf16_supported(including_emulation: bool = True) -> bool:
    return False
