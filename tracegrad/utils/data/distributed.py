"""``DistributedSampler``: each of ``num_replicas`` processes reads its own share of a
dataset (``torch.utils.data.distributed``). ``num_replicas`` and ``rank`` default to the
processes of a multi-process run (``tracegrad.distributed.initialize``), else to one
replica of rank 0.

>>> s = DistributedSampler(range(10), num_replicas=3, rank=1, shuffle=False)
>>> list(s)
[1, 4, 7, 0]
"""
from __future__ import annotations

import math
from collections.abc import Iterator

from .dataset import Dataset
from .sampler import Sampler

__all__ = ["DistributedSampler"]


def _processes() -> tuple[int, int]:
    """(process count, this process's index) of a multi-process jax run, else (1, 0);
    jax is not imported for it (a process that imported none joined no run)."""
    import sys
    jax = sys.modules.get("jax")
    if jax is None:
        return 1, 0
    return jax.process_count(), jax.process_index()


class DistributedSampler(Sampler):
    """The indices for replica ``rank`` of ``num_replicas``: a ``randperm`` seeded with
    ``seed + epoch`` (call ``set_epoch`` each epoch) when ``shuffle``, padded by repeating
    indices to a multiple of ``num_replicas`` (or cut to one with ``drop_last``), then every
    ``num_replicas``-th from ``rank``: torch's indices for torch's arguments."""

    def __init__(self, dataset: Dataset, num_replicas: int | None = None,
                 rank: int | None = None, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False) -> None:
        # torch asks the default process group; here the processes are jax's (joined by
        # tracegrad.distributed.initialize), and a process that joined none is the only one
        if num_replicas is None or rank is None:
            count, index = _processes()
            num_replicas = count if num_replicas is None else num_replicas
            rank = index if rank is None else rank
        if rank >= num_replicas or rank < 0:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval "
                             f"[0, {num_replicas - 1}]")
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.drop_last = drop_last
        n = len(self.dataset)
        if self.drop_last and n % self.num_replicas != 0:
            self.num_samples = math.ceil((n - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas
        self.shuffle = shuffle
        self.seed = seed

    def __iter__(self) -> Iterator[int]:
        import tracegrad as tg
        n = len(self.dataset)
        if self.shuffle:
            g = tg.Generator()
            g.manual_seed(self.seed + self.epoch)
            indices = tg.randperm(n, generator=g).tolist()
        else:
            indices = list(range(n))
        if self.drop_last:
            indices = indices[:self.total_size]
        else:
            pad = self.total_size - len(indices)
            indices += (indices * math.ceil(pad / len(indices)))[:pad] if pad else []
        return iter(indices[self.rank:self.total_size:self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch: with ``shuffle``, each epoch gets its own order."""
        self.epoch = epoch
