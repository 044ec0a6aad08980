"""Scale-out over jax devices: meshes, multi-host start-up, and the collective read.

``tracegrad.compile(step, mesh=m)`` runs the same traced step over the devices of ``m``
with XLA's SPMD partitioner inserting the collectives (runtime/sharding.py places the
inputs and state). This module is what a user calls around that:

* ``mesh(devices=None, axis_names=("data",))``: a ``jax.sharding.Mesh`` (a user's own
  ``Mesh`` works as well);
* ``initialize(coordinator_address, num_processes, process_id)``: multi-host, one
  process per host running the same script (``jax.distributed.initialize``);
* ``gather(*objs)``: the collective read of state sharded over devices other processes
  own (NOTE: [Reading sharded state]).

>>> import tracegrad.distributed as dist
>>> m = dist.mesh()
>>> m.axis_names
('data',)
"""
from __future__ import annotations

__all__ = ["mesh", "initialize", "gather", "process_count", "process_index"]


def mesh(devices=None, axis_names=("data",)):
    """A ``jax.sharding.Mesh`` over ``devices`` (default: every jax device, of every
    process), shaped by ``axis_names``: one name lays the devices out in a line; for
    more names, pass ``devices`` as a nested list or NumPy array of that many
    dimensions (``np.array(jax.devices()).reshape(4, 2)``)."""
    import jax
    import numpy as np
    from jax.sharding import Mesh

    if isinstance(axis_names, str):
        axis_names = (axis_names,)
    axis_names = tuple(axis_names)
    if not axis_names or not all(isinstance(a, str) and a for a in axis_names):
        raise ValueError(f"tracegrad.distributed.mesh: axis_names must be non-empty strings, "
                         f"got {axis_names!r}")
    if len(set(axis_names)) != len(axis_names):
        raise ValueError(f"tracegrad.distributed.mesh: axis_names {axis_names} repeat a name")
    grid = np.array(jax.devices() if devices is None else devices, dtype=object)
    if grid.ndim == 1 and len(axis_names) > 1:
        raise ValueError(f"tracegrad.distributed.mesh: {len(axis_names)} axis names "
                         f"{axis_names} need devices shaped with {len(axis_names)} dimensions; "
                         f"got a flat list of {grid.size}: pass e.g. "
                         f"np.array(devices).reshape(...)")
    if grid.ndim != len(axis_names):
        raise ValueError(f"tracegrad.distributed.mesh: devices have shape {grid.shape} but "
                         f"axis_names {axis_names} name {len(axis_names)} dimension(s)")
    if grid.size == 0:
        raise ValueError("tracegrad.distributed.mesh: no devices given")
    return Mesh(grid, axis_names)


def initialize(coordinator_address: str, num_processes: int, process_id: int,
               local_device_ids=None) -> None:
    """Join a multi-process run (``jax.distributed.initialize``): call it first, in every
    process, with the same ``coordinator_address`` (``host:port`` of process 0) and
    ``num_processes``, and this process's ``process_id``. Afterwards ``mesh()`` spans the
    devices of every process, and a compiled step with ``mesh=`` takes each process's
    own slice of the batch. On CPU the collectives between processes run over gloo."""
    import jax

    if not isinstance(num_processes, int) or num_processes < 1:
        raise ValueError(f"tracegrad.distributed.initialize: num_processes must be a "
                         f"positive int, got {num_processes!r}")
    if not isinstance(process_id, int) or not 0 <= process_id < num_processes:
        raise ValueError(f"tracegrad.distributed.initialize: process_id must be in "
                         f"[0, {num_processes - 1}], got {process_id!r}")
    jax.distributed.initialize(coordinator_address, num_processes=num_processes,
                               process_id=process_id, local_device_ids=local_device_ids)


def process_count() -> int:
    """How many processes take part (1 unless ``initialize`` joined more)."""
    import jax
    return jax.process_count()


def process_index() -> int:
    """This process's index among ``process_count()``."""
    import jax
    return jax.process_index()


# NOTE: [Reading sharded state]. State a compiled call leaves on the devices keeps its
# sharding (replicated, or split along dim 0 with shard_state=True). An eager read copies
# the device value into the tensor's host array; over one process's devices that gathers
# the shards. Over several processes, a shard another process owns can only come to this
# one if that process sends it: the read must be a collective that every process calls at
# the same point, which is ``gather``. A lone eager read of such a tensor is an error
# naming it (``_storage.host_value``); replicated state reads locally.

def gather(*objs):
    """Copy the full value of every tensor in ``objs`` (tensors, modules: their parameters
    and buffers, optimizers: their state, or lists of these) from the devices into its
    host array. With several processes this is a collective: every process calls it, with
    the same objects, at the same point. Returns ``objs[0]`` for one argument, else
    ``objs``."""
    from .. import _storage

    tensors = []
    for o in objs:
        _collect(o, tensors)
    for t in tensors:
        pair = _storage.lazy(t)
        if pair is None:
            continue
        value = pair[1]
        if not getattr(value, "is_fully_addressable", True):
            from jax.experimental import multihost_utils
            full = multihost_utils.process_allgather(value, tiled=True)
            _storage.materialise(t, full)
        else:
            _storage.materialise(t)
    return objs[0] if len(objs) == 1 else objs


def _collect(o, out):
    from ..nn.module import Module
    from ..optim.optimizer import Optimizer
    from ..tensor import Tensor

    if isinstance(o, Tensor):
        out.append(o)
        if o._grad is not None:
            out.append(o._grad)
    elif isinstance(o, Module):
        for t in [*o.parameters(), *o.buffers()]:
            _collect(t, out)
    elif isinstance(o, Optimizer):
        for st in o.state.values():
            for v in st.values():
                if isinstance(v, Tensor):
                    out.append(v)
    elif isinstance(o, (list, tuple)):
        for x in o:
            _collect(x, out)
    elif isinstance(o, dict):
        for x in o.values():
            _collect(x, out)
    else:
        raise TypeError(f"tracegrad.distributed.gather: cannot gather a "
                        f"{type(o).__name__}; pass tensors, modules, optimizers or lists "
                        "of them")
