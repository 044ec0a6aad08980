"""tracegrad.utils.data: PyTorch's data pipeline (``torch.utils.data``).

Datasets, samplers, ``default_collate`` and ``DataLoader`` (in the main process or in worker
processes) behave as PyTorch's, and their random draws are PyTorch's draws: after
``tracegrad.manual_seed(s)`` a shuffled loader yields the batches torch's yields after
``torch.manual_seed(s)``.

>>> import tracegrad as tg
>>> from tracegrad.utils.data import DataLoader, TensorDataset
>>> _ = tg.manual_seed(0)
>>> ds = TensorDataset(tg.arange(6))
>>> [b.tolist() for (b,) in DataLoader(ds, batch_size=4, shuffle=True)]
[[0, 4, 3, 5], [2, 1]]
"""
from . import _utils  # noqa: F401
from .dataloader import DataLoader, _DatasetKind, default_collate, default_convert, get_worker_info
from .dataset import (
                         ChainDataset,
                         ConcatDataset,
                         Dataset,
                         IterableDataset,
                         StackDataset,
                         Subset,
                         TensorDataset,
                         random_split,
)
from .distributed import DistributedSampler
from .sampler import (
                         BatchSampler,
                         RandomSampler,
                         Sampler,
                         SequentialSampler,
                         SubsetRandomSampler,
                         WeightedRandomSampler,
)

__all__ = ["BatchSampler", "ChainDataset", "ConcatDataset", "DataLoader", "Dataset",
           "DistributedSampler", "IterableDataset", "RandomSampler", "Sampler",
           "SequentialSampler", "StackDataset", "Subset", "SubsetRandomSampler",
           "TensorDataset", "WeightedRandomSampler", "_DatasetKind", "default_collate",
           "default_convert", "get_worker_info", "random_split"]
