"""``torch.nn.parallel``: DataParallel and DistributedDataParallel for one CPU process.

With no GPUs, PyTorch's ``DataParallel`` wraps the module and forwards calls to it; so does
tracegrad's (``.module`` is the wrapped module; its state_dict keys start with
``module.``). ``DistributedDataParallel`` needs an initialised process group
(``tracegrad.distributed.init_process_group``, a world of one process); it then wraps the
module the same way, the gradient all-reduce over one replica being the gradient itself.
"""
from __future__ import annotations

import contextlib

from ..module import Module

__all__ = ["DataParallel", "DistributedDataParallel", "data_parallel"]


class DataParallel(Module):
    """Wraps ``module`` and forwards calls to it (no GPUs: PyTorch's CPU behaviour).

    >>> import tracegrad as tg
    >>> dp = tg.nn.DataParallel(tg.nn.Linear(2, 1))
    >>> dp(tg.ones(3, 2)).shape
    torch.Size([3, 1])
    """

    def __init__(self, module: Module, device_ids=None, output_device=None, dim: int = 0):
        super().__init__()
        self.module = module
        self.device_ids = []
        self.output_device = None
        self.dim = dim

    def forward(self, *inputs, **kwargs):
        return self.module(*inputs, **kwargs)


def data_parallel(module, inputs, device_ids=None, output_device=None, dim: int = 0,
                  module_kwargs=None):
    """``nn.parallel.data_parallel``: without GPUs, ``module(*inputs)``."""
    if not isinstance(inputs, tuple):
        inputs = (inputs,)
    return module(*inputs, **(module_kwargs or {}))


class DistributedDataParallel(Module):
    """One replica of ``module`` in a process group of one (see tracegrad.distributed)."""

    def __init__(self, module: Module, device_ids=None, output_device=None, dim: int = 0,
                 broadcast_buffers: bool = True, process_group=None,
                 bucket_cap_mb=None, find_unused_parameters: bool = False,
                 check_reduction: bool = False, gradient_as_bucket_view: bool = False,
                 static_graph: bool = False, **kwargs):
        from ... import distributed as dist
        world = process_group or dist._world()  # raises PyTorch's error when uninitialised
        if not any(p.requires_grad for p in module.parameters()):
            raise RuntimeError("DistributedDataParallel is not needed when a module doesn't "
                               "have any parameter that requires a gradient.")
        super().__init__()
        self.module = module
        self.process_group = world
        self.device_ids = None
        self.output_device = None
        self.dim = dim
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters

    def forward(self, *inputs, **kwargs):
        return self.module(*inputs, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        """Skip the gradient all-reduce inside the block (over one replica: nothing)."""
        yield
