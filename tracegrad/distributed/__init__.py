"""``torch.distributed``: the process-group API, for one process.

tracegrad runs in one process. ``init_process_group`` with a world of one (rank 0, the
'gloo' backend or none named; what a script gets when launched without torchrun) works,
and the collectives over that world are what they are over one process: ``all_reduce``,
``broadcast``, ``reduce``, ``barrier`` leave tensors as they are, ``all_gather`` copies.
So ``DistributedDataParallel`` works too (one replica). A larger world, or the NCCL
backend, is refused with an error that says so. Before ``init_process_group`` the calls
that need a group raise PyTorch's ValueError ("Default process group has not been
initialized ...").

>>> import tracegrad.distributed as dist
>>> dist.is_available(), dist.is_initialized()
(True, False)

Layout of this package: the process group (this file: state, init/destroy, queries,
collectives). Sharding compiled functions across jax devices is a separate concern beside
it (``spmd.py``: ``mesh()``, ``initialize()``, ``gather()``; docs/distributed.md).
"""
from __future__ import annotations

import enum
import os

from . import spmd as _spmd
from .spmd import initialize, mesh, process_count, process_index

__all__ = ["mesh", "initialize", "process_count", "process_index", "is_available",
           "is_initialized", "is_nccl_available", "is_gloo_available", "is_mpi_available",
           "is_torchelastic_launched", "init_process_group", "destroy_process_group", "get_rank",
           "get_world_size", "get_backend", "new_group", "barrier", "all_reduce", "reduce",
           "broadcast", "all_gather", "all_gather_object", "broadcast_object_list", "gather",
           "scatter", "ReduceOp", "group", "GroupMember", "ProcessGroup", "Work",
           "get_node_local_rank"]

# ----------------------------------------------------------------------------------
# the process group

_NOT_INITIALIZED = ("Default process group has not been initialized, please make sure to "
                    "call init_process_group.")


class ProcessGroup:
    """A group of processes: here always the one process, rank 0."""

    def __init__(self, backend: str):
        self._backend = backend

    def rank(self) -> int:
        return 0

    def size(self) -> int:
        return 1

    def __repr__(self):
        return f"ProcessGroup(backend={self._backend!r}, world_size=1)"


class Work:
    """What an ``async_op=True`` collective returns: already complete."""

    def wait(self, timeout=None) -> bool:
        return True

    def is_completed(self) -> bool:
        return True

    def is_success(self) -> bool:
        return True


class group:  # noqa: N801  (torch.distributed.group.WORLD)
    WORLD = None


GroupMember = group


class _RedOpType(enum.Enum):
    SUM = 0
    AVG = 1
    PRODUCT = 2
    MIN = 3
    MAX = 4
    BAND = 5
    BOR = 6
    BXOR = 7
    PREMUL_SUM = 8
    UNUSED = 9

    def __repr__(self):
        return f"<RedOpType.{self.name}: {self.value}>"


_RedOpType.__name__ = _RedOpType.__qualname__ = "RedOpType"


class ReduceOp:
    """``torch.distributed.ReduceOp``: SUM, AVG, PRODUCT, MIN, MAX, BAND, BOR, BXOR."""

    RedOpType = _RedOpType
    SUM, AVG, PRODUCT, MIN, MAX = (_RedOpType.SUM, _RedOpType.AVG, _RedOpType.PRODUCT,
                                   _RedOpType.MIN, _RedOpType.MAX)
    BAND, BOR, BXOR, PREMUL_SUM = (_RedOpType.BAND, _RedOpType.BOR, _RedOpType.BXOR,
                                   _RedOpType.PREMUL_SUM)


def is_available() -> bool:
    return True


def is_nccl_available() -> bool:
    return False


def is_gloo_available() -> bool:
    return True


def is_mpi_available() -> bool:
    return False


def is_torchelastic_launched() -> bool:
    return os.environ.get("TORCHELASTIC_RUN_ID") is not None


def is_initialized() -> bool:
    return group.WORLD is not None


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    if value is None:
        raise ValueError(f"Error initializing torch.distributed using env:// rendezvous: "
                         f"environment variable {name} expected, but not set")
    return int(value)


def init_process_group(backend: str | None = None, init_method: str | None = None,
                       timeout=None, world_size: int = -1, rank: int = -1, store=None,
                       group_name: str = "", pg_options=None, device_id=None) -> None:
    """Start the default group: a world of one process (rank 0) is supported."""
    if is_initialized():
        raise ValueError("trying to initialize the default process group twice!")
    name = (backend or "gloo").lower()
    if "nccl" in name:
        raise RuntimeError("Distributed package doesn't have NCCL built in: tracegrad runs on "
                           "the CPU in one process; use backend='gloo' with world_size=1, or "
                           "run without a process group")
    if name not in ("gloo", "cpu:gloo"):
        raise ValueError(f"Invalid backend: '{backend}'; tracegrad's process group is 'gloo' "
                         "with one process")
    if world_size == -1:
        world_size = _env_int("WORLD_SIZE") if store is None and init_method in (
            None, "env://") and "WORLD_SIZE" in os.environ else -1
    if rank == -1:
        rank = _env_int("RANK") if world_size != -1 or "RANK" in os.environ else -1
    if world_size == -1 and rank == -1:
        _env_int("RANK")  # raises PyTorch's env:// error
    if world_size != 1 or rank != 0:
        raise RuntimeError(f"tracegrad's process group holds one process (rank 0 of a world "
                           f"of 1); got rank={rank}, world_size={world_size}. Run one process, "
                           "or compute across devices with jax (compiled functions run on "
                           "whatever devices jax has)")
    group.WORLD = ProcessGroup(name)


def destroy_process_group(group_=None) -> None:
    if group.WORLD is None:
        raise AssertionError("Process group cannot be None")
    group.WORLD = None


def _world(group_=None) -> ProcessGroup:
    if group.WORLD is None:
        raise ValueError(_NOT_INITIALIZED)
    return group.WORLD


def get_rank(group=None) -> int:
    return _world(group).rank()


def get_world_size(group=None) -> int:
    return _world(group).size()


def get_node_local_rank(fallback_rank: int | None = None) -> int:
    if "LOCAL_RANK" in os.environ:
        return int(os.environ["LOCAL_RANK"])
    if fallback_rank is not None:
        return int(fallback_rank)
    raise RuntimeError("LOCAL_RANK is not in the environment. Consider passing fallback_rank "
                       "to allow `get_node_local_rank` to work, assuming you are not running "
                       "in a multi-device context and want the code to run locally instead.")


def get_backend(group=None) -> str:
    return _world(group)._backend.removeprefix("cpu:")


def new_group(ranks=None, timeout=None, backend=None, pg_options=None, **kwargs):
    world = _world()
    if ranks is not None and sorted(ranks) != [0]:
        raise ValueError(f"new_group: ranks {list(ranks)} are not all in the world of one "
                         "process (rank 0)")
    return world


# ----------------------------------------------------------------------------------
# collectives over a world of one: each rank's contribution is its own

def _done(async_op: bool):
    return Work() if async_op else None


def barrier(group=None, async_op: bool = False, device_ids=None):
    _world(group)
    return _done(async_op)


def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op: bool = False):
    """The reduction over one rank is the tensor itself (SUM, AVG, MIN, ... alike)."""
    _world(group)
    return _done(async_op)


def reduce(tensor, dst: int = 0, op=ReduceOp.SUM, group=None, async_op: bool = False):
    _world(group)
    _check_rank(dst, "dst")
    return _done(async_op)


def broadcast(tensor, src: int = 0, group=None, async_op: bool = False):
    _world(group)
    _check_rank(src, "src")
    return _done(async_op)


def all_gather(tensor_list, tensor, group=None, async_op: bool = False):
    _world(group)
    if len(tensor_list) != 1:
        raise ValueError(f"all_gather: tensor_list must hold one tensor per rank (1), got "
                         f"{len(tensor_list)}")
    tensor_list[0].copy_(tensor)
    return _done(async_op)


def gather(tensor, gather_list=None, dst: int = 0, group=None, async_op: bool = False):
    """torch's ``gather`` over the one-process group; called with tensors (modules,
    optimizers) alone, the collective read of state sharded over devices
    (``tracegrad.distributed.spmd.gather``, NOTE: [Reading sharded state]): on the
    destination rank torch needs a ``gather_list``, so the two never meet."""
    if gather_list is None and dst == 0 and group is None and not async_op:
        return _spmd.gather(tensor)
    _world(group)
    _check_rank(dst, "dst")
    if gather_list is not None:
        all_gather(gather_list, tensor)
    return _done(async_op)


def scatter(tensor, scatter_list=None, src: int = 0, group=None, async_op: bool = False):
    _world(group)
    _check_rank(src, "src")
    if scatter_list is not None:
        if len(scatter_list) != 1:
            raise ValueError("scatter: scatter_list must hold one tensor per rank (1)")
        tensor.copy_(scatter_list[0])
    return _done(async_op)


def all_gather_object(object_list, obj, group=None) -> None:
    _world(group)
    if len(object_list) != 1:
        raise ValueError("all_gather_object: object_list must have one entry per rank (1)")
    object_list[0] = obj


def broadcast_object_list(object_list, src: int = 0, group=None, device=None) -> None:
    _world(group)
    _check_rank(src, "src")


def _check_rank(r: int, what: str) -> None:
    if r != 0:
        raise ValueError(f"{what}={r} is not a rank of the world of one process (rank 0)")
