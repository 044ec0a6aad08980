"""``torch.amp``: autocast (mixed precision on the CPU, in bfloat16 or float16) and
GradScaler (loss scaling), with PyTorch's CPU-build behaviour.

>>> import tracegrad as tg
>>> lin = tg.nn.Linear(3, 2)
>>> with tg.autocast('cpu', dtype=tg.bfloat16):
...     y = lin(tg.ones(4, 3))
>>> y.dtype
torch.bfloat16
"""
from .autocast_mode import (
    autocast,
    custom_bwd,
    custom_fwd,
    get_autocast_dtype,
    is_autocast_available,
    is_autocast_enabled,
    set_autocast_dtype,
    set_autocast_enabled,
)
from .grad_scaler import GradScaler

__all__ = ["autocast", "GradScaler", "custom_fwd", "custom_bwd", "is_autocast_available",
           "is_autocast_enabled", "get_autocast_dtype", "set_autocast_enabled",
           "set_autocast_dtype"]
