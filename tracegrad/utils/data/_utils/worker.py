"""DataLoader worker processes (``torch.utils.data._utils.worker``).

NOTE: [Worker seeding]. Each ``iter(loader)`` draws one ``base_seed`` (an int64
``random_()`` of the loader's generator, else the default one). Worker ``i`` seeds Python's
``random`` and tracegrad's default generator with ``base_seed + i`` and NumPy's global
generator with ``_numpy_seed(base_seed, i)``, all as PyTorch's workers do, so
``tracegrad.initial_seed()``, random draws in a dataset or ``worker_init_fn`` and NumPy's
draws there equal torch's.
"""
from __future__ import annotations

import os
import queue
import random
import sys
import traceback
from dataclasses import dataclass

from . import fetch

__all__ = ["WorkerInfo", "get_worker_info", "ExceptionWrapper"]

_POLL_INTERVAL = 0.2  # seconds between an idle worker's checks that it should stop


@dataclass(frozen=True)
class WorkerInfo:
    """What ``get_worker_info()`` returns inside a worker: its ``id``, ``num_workers``, the
    ``seed`` it was seeded with and its copy of the ``dataset`` (and, as torch 2.13's,
    ``rng=None`` and ``worker_method``)."""
    id: int
    num_workers: int
    seed: int
    dataset: object
    rng: object | None = None
    worker_method: str | None = "multiprocessing"


_worker_info: WorkerInfo | None = None


def get_worker_info() -> WorkerInfo | None:
    """In a DataLoader worker process, its ``WorkerInfo``; in the main process, None."""
    return _worker_info


@dataclass(frozen=True)
class _IterableDatasetStopIteration:
    worker_id: int


@dataclass(frozen=True)
class _ResumeIteration:
    """Sent to persistent workers when a new epoch starts: rebuild the fetcher."""


class ExceptionWrapper:
    """An exception raised in a worker, with its traceback as text, re-raised in the main
    process as the same type with the worker's traceback in its message."""

    def __init__(self, exc_info=None, where: str = "in background") -> None:
        exc_info = sys.exc_info() if exc_info is None else exc_info
        self.exc_type = exc_info[0]
        self.exc_msg = "".join(traceback.format_exception(*exc_info))
        self.where = where

    def reraise(self):
        msg = f"Caught {self.exc_type.__name__} {self.where}.\nOriginal {self.exc_msg}"
        if self.exc_type is KeyError:
            msg = _KeyErrorMessage(msg)
        try:
            exc = self.exc_type(msg)
        except Exception:  # an exception type whose constructor wants other arguments
            raise RuntimeError(msg) from None
        raise exc


class _KeyErrorMessage(str):
    """KeyError shows its argument's repr; this keeps the traceback's newlines."""

    def __repr__(self):
        return self


def _numpy_seed(base_seed: int, worker_id: int) -> list[int]:
    """PyTorch's ``_generate_state``: four 32-bit words for ``np.random.seed``, hashed from
    the worker id and the base seed as NumPy's SeedSequence hashes its entropy."""
    mask = 0xFFFFFFFF
    mult_a, mult_b = 0x931E8875, 0x58F38DED
    hash_a = [0x43B0D7E5]

    def hash_word(value: int) -> int:
        value = (value ^ hash_a[0]) & mask
        hash_a[0] = (hash_a[0] * mult_a) & mask
        value = (value * hash_a[0]) & mask
        return (value ^ (value >> 16)) & mask

    def mix(x: int, y: int) -> int:
        r = ((0xCA01F9DD * x) - (0x4973F715 * y)) & mask
        return (r ^ (r >> 16)) & mask

    pool = [hash_word(w) for w in (worker_id, base_seed & mask, base_seed >> 32, 0)]
    for src in range(4):
        for dst in range(4):
            if src != dst:
                pool[dst] = mix(pool[dst], hash_word(pool[src]))
    hash_b, state = 0x8B51F9DD, []
    for word in pool:
        word = (word ^ hash_b) & mask
        hash_b = (hash_b * mult_b) & mask
        word = (word * hash_b) & mask
        state.append((word ^ (word >> 16)) & mask)
    return state


def _worker_loop(iterable: bool, dataset, index_queue, data_queue, done_event,
                 auto_collation: bool, collate_fn, drop_last: bool, base_seed: int, init_fn,
                 worker_id: int, num_workers: int) -> None:
    """A worker's life: seed (NOTE: [Worker seeding]), run ``init_fn``, then answer
    ``(task index, indices)`` requests with ``(task index, batch)`` until told to stop
    (None, or ``done_event`` while idle) or the loader's process is gone."""
    global _worker_info
    try:
        import numpy as np

        import tracegrad
        seed = base_seed + worker_id
        random.seed(seed)
        tracegrad.manual_seed(seed)
        np.random.seed(_numpy_seed(base_seed, worker_id))
        _worker_info = WorkerInfo(id=worker_id, num_workers=num_workers, seed=seed,
                                  dataset=dataset)
        init_error = None
        fetcher = None
        try:
            if init_fn is not None:
                init_fn(worker_id)
            fetcher = fetch.create_fetcher(iterable, dataset, auto_collation, collate_fn,
                                           drop_last)
        except Exception:
            init_error = ExceptionWrapper(where=f"in DataLoader worker process {worker_id}")
        ended = False
        parent = os.getppid()
        while os.getppid() == parent:
            try:
                r = index_queue.get(timeout=_POLL_INTERVAL)
            except queue.Empty:
                # NOTE: the loader also sets done_event on shutdown: its None may never come
                # when the iterator is collected with its queues (their feeder threads are
                # finalized first)
                if done_event.is_set():
                    break
                continue
            if isinstance(r, _ResumeIteration):
                data_queue.put((r, None))
                ended = False
                if init_error is None:
                    fetcher = fetch.create_fetcher(iterable, dataset, auto_collation,
                                                   collate_fn, drop_last)
                continue
            if r is None:
                break
            if done_event.is_set() or ended:
                continue
            idx, index = r
            if init_error is not None:
                data, init_error = init_error, None
            else:
                try:
                    data = fetcher.fetch(index)
                except Exception as e:
                    if isinstance(e, StopIteration) and iterable:
                        data = _IterableDatasetStopIteration(worker_id)
                        ended = True
                    else:
                        data = ExceptionWrapper(
                            where=f"in DataLoader worker process {worker_id}")
            data_queue.put((idx, data))
            del data, idx, index, r
    except KeyboardInterrupt:
        pass
    if done_event.is_set():
        data_queue.cancel_join_thread()
        data_queue.close()
