"""tracegrad.utils.data against torch.utils.data: same batches (values, dtypes, shapes) in
the same order for the same seed, the default generator left in step, torch's errors;
worker processes give what the main process gives; and torch.multinomial /
Tensor.exponential_ (what WeightedRandomSampler draws with) as torch's CPU kernels draw.
"""
from __future__ import annotations

import collections
import contextlib
import gc
import io
import multiprocessing
import os
import pathlib
import random
import time
import warnings

import numpy as np
import pytest

import tracegrad as tg

torch = pytest.importorskip("torch")

ROOT = pathlib.Path(__file__).resolve().parents[1]
SEEDS = [0, 1, 123]


def plain(x):
    """A comparable form of a batch: tensors as (dtype, shape, values), containers kept."""
    if isinstance(x, (tg.Tensor, torch.Tensor)):
        return ("tensor", str(x.dtype), tuple(x.shape), x.tolist())
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return (type(x).__name__,) + tuple(plain(v) for v in x)
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, [plain(v) for v in x])
    if isinstance(x, np.generic):
        return (type(x).__name__, x.item())
    return x


def both(fn, seed=0):
    """fn(lib) under tracegrad and torch, each after manual_seed(seed); the results are
    compared in plain form, and so is a draw after it (the generator left in step)."""
    out = []
    for lib in (tg, torch):
        lib.manual_seed(seed)
        out.append([plain(fn(lib)), lib.rand(3).tolist()])
    assert out[0] == out[1]
    return out[0]


def error_of(fn):
    try:
        fn()
    except Exception as e:
        return type(e).__name__, str(e)
    return None


def both_raise(fn):
    ours, theirs = error_of(lambda: fn(tg)), error_of(lambda: fn(torch))
    assert ours is not None and ours == theirs
    return ours


# --------------------------------------------------------------------------------
# loader configurations: two epochs each, with draws from the default generator between

def _ds(lib, n=10):
    return lib.utils.data.TensorDataset(lib.randn(n, 3), lib.arange(n) * 10)


def _epochs(lib, make_loader, epochs=2):
    loader = make_loader(lib, lib.utils.data)
    out = []
    for _ in range(epochs):
        out.append([plain(b) for b in loader])
        out.append(lib.rand(1).tolist())  # in between: the global stream stays in step
    return out


Pair = collections.namedtuple("Pair", "a b")


class _Mixed:
    """A dataset of mixed samples: ints, floats, bools, NumPy values, strings, containers."""

    def __init__(self, lib, n=7):
        self.lib, self.n = lib, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"i": i, "f": i / 4, "b": i % 2 == 0, "np32": np.float32(i) / 3,
                "arr": np.arange(3, dtype=np.int32) + i, "s": f"item{i}",
                "pair": Pair(i, self.lib.full((2,), float(i))), "l": [i, (i, 0.5)]}


class _Stream:
    """An iterable dataset of dict samples (len defined), for any lib."""

    def __new__(cls, lib, n=8):
        class S(lib.utils.data.IterableDataset):
            def __iter__(self):
                for i in range(n):
                    yield {"x": lib.rand(2), "i": i}

            def __len__(self):
                return n
        return S()


LOADERS = {
    "shuffle": lambda lib, D: D.DataLoader(_ds(lib), batch_size=3, shuffle=True),
    "shuffle_drop_last": lambda lib, D: D.DataLoader(_ds(lib), batch_size=4, shuffle=True,
                                                     drop_last=True),
    "sequential": lambda lib, D: D.DataLoader(_ds(lib), batch_size=4),
    "no_batching": lambda lib, D: D.DataLoader(_ds(lib, 5), batch_size=None, shuffle=True),
    "generator": lambda lib, D: D.DataLoader(_ds(lib), batch_size=3, shuffle=True,
                                             generator=lib.Generator().manual_seed(7)),
    "replacement": lambda lib, D: D.DataLoader(
        _ds(lib), batch_size=8, sampler=D.RandomSampler(_ds(lib), True, num_samples=45)),
    "more_samples_than_data": lambda lib, D: D.DataLoader(
        _ds(lib), batch_size=6, sampler=D.RandomSampler(_ds(lib), num_samples=25)),
    "sampler_generator": lambda lib, D: D.DataLoader(_ds(lib), batch_size=5, sampler=(
        D.RandomSampler(range(10), generator=lib.Generator().manual_seed(3)))),
    "subset_random": lambda lib, D: D.DataLoader(
        _ds(lib), batch_size=2, sampler=D.SubsetRandomSampler([1, 3, 5, 7, 9])),
    "weighted": lambda lib, D: D.DataLoader(_ds(lib), batch_size=4, sampler=(
        D.WeightedRandomSampler([0.1, 0.9, 0.4, 0.7, 3.0, 0.6, 0, 1, 2, 0.5], 14))),
    "weighted_no_replacement": lambda lib, D: D.DataLoader(_ds(lib), batch_size=4, sampler=(
        D.WeightedRandomSampler([0.1, 0.9, 0.4, 0.7, 3.0, 0.6, 0.2, 1, 2, 0.5], 7,
                                replacement=False))),
    "weighted_one": lambda lib, D: D.DataLoader(_ds(lib), batch_size=None, sampler=(
        D.WeightedRandomSampler([1.0, 2.0, 3.0], 1))),
    "batch_sampler": lambda lib, D: D.DataLoader(
        _ds(lib), batch_sampler=D.BatchSampler(D.RandomSampler(range(10)), 3, False)),
    "collate_fn": lambda lib, D: D.DataLoader(_ds(lib, 4), batch_size=3, shuffle=True,
                                              collate_fn=lambda b: b),
    "split_fractions": lambda lib, D: D.DataLoader(
        D.random_split(_ds(lib), [0.5, 0.3, 0.2])[1], batch_size=2, shuffle=True),
    "split_lengths_generator": lambda lib, D: D.DataLoader(D.random_split(
        _ds(lib), [6, 4], generator=lib.Generator().manual_seed(5))[0], batch_size=4),
    "concat": lambda lib, D: D.DataLoader(_ds(lib, 3) + _ds(lib, 4), batch_size=3,
                                          shuffle=True),
    "stack_dict": lambda lib, D: D.DataLoader(
        D.StackDataset(x=_ds(lib, 5), y=lib.arange(5.0)), batch_size=2, shuffle=True),
    "stack_tuple": lambda lib, D: D.DataLoader(
        D.StackDataset(lib.arange(4), D.Subset(_ds(lib, 6), [5, 0, 2, 1])), batch_size=3),
    "mixed_samples": lambda lib, D: D.DataLoader(_Mixed(lib), batch_size=3, shuffle=True),
    "mixed_no_batching": lambda lib, D: D.DataLoader(_Mixed(lib, 2), batch_size=None),
    "iterable": lambda lib, D: D.DataLoader(_Stream(lib), batch_size=3),
    "iterable_drop_last": lambda lib, D: D.DataLoader(_Stream(lib), batch_size=3,
                                                      drop_last=True),
    "chain": lambda lib, D: D.DataLoader(_Stream(lib, 2) + _Stream(lib, 3), batch_size=2),
    "distributed": lambda lib, D: D.DataLoader(
        _ds(lib), batch_size=2, sampler=D.distributed.DistributedSampler(
            _ds(lib), num_replicas=3, rank=1, seed=4)),
    "distributed_drop_last": lambda lib, D: D.DataLoader(
        _ds(lib), batch_size=2, sampler=D.DistributedSampler(
            _ds(lib), num_replicas=4, rank=3, drop_last=True)),
    "distributed_no_shuffle": lambda lib, D: D.DataLoader(
        _ds(lib, 5), batch_size=2, sampler=D.DistributedSampler(
            _ds(lib, 5), num_replicas=3, rank=2, shuffle=False)),
}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", list(LOADERS))
def test_loader_batches_match_torch(name, seed):
    both(lambda lib: _epochs(lib, LOADERS[name]), seed)


def test_distributed_sampler_epochs():
    def run(lib):
        s = lib.utils.data.DistributedSampler(range(11), num_replicas=2, rank=0, seed=9)
        out = []
        for epoch in range(3):
            s.set_epoch(epoch)
            out.append(list(s))
        return out + [len(s)]
    both(run)


def test_lengths_match_torch():
    def run(lib):
        D = lib.utils.data
        ds = _ds(lib)
        loaders = [D.DataLoader(ds, batch_size=3), D.DataLoader(ds, batch_size=3, drop_last=True),
                   D.DataLoader(ds, batch_size=None), D.DataLoader(_Stream(lib, 8), batch_size=3),
                   D.DataLoader(_Stream(lib, 8), batch_size=3, drop_last=True),
                   D.DataLoader(ds, sampler=D.RandomSampler(ds, True, 33), batch_size=4),
                   D.DataLoader(ds, batch_sampler=D.BatchSampler(range(7), 2, True))]
        return [len(x) for x in loaders] + [len(D.ConcatDataset([ds, ds])),
                                            len(D.ChainDataset([_Stream(lib, 2)] * 3))]
    both(run)


def test_iterable_length_warning():
    class Long(tg.utils.data.IterableDataset):
        def __iter__(self):
            return iter(range(4))

        def __len__(self):
            return 2
    loader = tg.utils.data.DataLoader(Long(), batch_size=None)
    assert len(loader) == 2
    with pytest.warns(UserWarning, match=r"was reported to be 2\(when accessing len"):
        assert list(loader) == [0, 1, 2, 3]


def test_getitems_is_used_and_subset_rule():
    class Batched(tg.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitems__(self, indices):
            return [("batched", i) for i in indices]
    batches = list(tg.utils.data.DataLoader(Batched(), batch_size=4))
    assert batches[1][0] == ("batched", "batched")
    assert batches[1][1].tolist() == [4, 5]

    def run(lib):
        class Bad(lib.utils.data.Subset):
            def __getitem__(self, i):
                return i
        return Bad(range(3), [0])
    both_raise(run)


def test_worker_info_is_none_in_main_process():
    assert tg.utils.data.get_worker_info() is None


# --------------------------------------------------------------------------------
# collation

COLLATE = {
    "ints": [1, 2, 3],
    "floats": [1.5, 2.0],
    "bools": [True, False],
    "tensors": lambda lib: [lib.arange(3), lib.arange(3) + 1],
    "float_tensors": lambda lib: [lib.ones(2, 2, dtype=lib.float64), lib.zeros(2, 2,
                                                                              dtype=lib.float64)],
    "mixed_dtype_tensors": lambda lib: [lib.zeros(2), lib.ones(2, dtype=lib.float64)],
    "numpy_arrays": [np.arange(4, dtype=np.float32), np.ones(4, dtype=np.float32)],
    "numpy_int_arrays": [np.arange(2), np.arange(2)],
    "numpy_scalars_f64": [np.float64(1.5), np.float64(2)],
    "numpy_scalars_f32": [np.float32(1.5), np.float32(2)],
    "numpy_scalars_i32": [np.int32(1), np.int32(2)],
    "numpy_bools": [np.bool_(True), np.bool_(False)],
    "strings": ["a", "bc"],
    "bytes": [b"a", b"b"],
    "tuples": [(1, 2.0, "x"), (3, 4.0, "y")],
    "lists": [[1, [2.5]], [3, [4.5]]],
    "dicts": [{"a": 1, "b": {"c": 0.5}}, {"a": 2, "b": {"c": 1.5}}],
    "ordered_dict": [collections.OrderedDict(x=1, y=2.0), collections.OrderedDict(x=3, y=4.0)],
    "namedtuples": [Pair(1, 2.5), Pair(3, 4.5)],
    "mixed": lambda lib: [_Mixed(lib)[i] for i in range(3)],
}


@pytest.mark.parametrize("name", list(COLLATE))
def test_default_collate_matches_torch(name):
    case = COLLATE[name]
    both(lambda lib: [lib.utils.data.default_collate(case(lib) if callable(case) else case)])


CONVERT = {
    "numpy_array": np.arange(3.0),
    "numpy_scalar": np.float64(2.5),
    "numpy_strings": np.array(["a", "b"]),
    "dict": {"a": np.arange(2), "b": "s"},
    "tuple": (np.int64(1), 2),
    "namedtuple": Pair(np.float32(1), [np.arange(2)]),
    "list": [1.5, np.ones(2)],
}


@pytest.mark.parametrize("name", list(CONVERT))
def test_default_convert_matches_torch(name):
    both(lambda lib: [lib.utils.data.default_convert(CONVERT[name])])


@pytest.mark.parametrize("batch", [
    [object(), object()],
    [[1, 2], [3]],
    [np.array(["a"]), np.array(["b"])],
    [{"a": object()}],
], ids=["object", "ragged", "numpy_strings", "nested_object"])
def test_default_collate_errors_match_torch(batch):
    both_raise(lambda lib: lib.utils.data.default_collate(batch))


def test_default_collate_keeps_autograd_and_makes_new_memory():
    def run(lib):
        w = lib.ones(2, requires_grad=True)
        batch = lib.utils.data.default_collate([w * 2, w * 3])
        x = lib.zeros(2)
        fresh = lib.utils.data.default_collate([x, x])
        x.add_(1)
        return [batch.requires_grad, type(batch.grad_fn).__name__, fresh]
    both(run)


def test_custom_collate_fn_map():
    from tracegrad.utils.data._utils.collate import collate, default_collate_fn_map
    fn_map = {**default_collate_fn_map, str: lambda batch, *, collate_fn_map: "".join(batch)}
    assert collate([("a", 1), ("b", 2)], collate_fn_map=fn_map)[0] == "ab"


# --------------------------------------------------------------------------------
# errors: torch's types and messages

ERRORS = {
    "batch_sampler_with_batch_size": lambda lib, D: D.DataLoader(
        _ds(lib), batch_size=2, batch_sampler=D.BatchSampler(range(10), 2, False)),
    "batch_sampler_with_shuffle": lambda lib, D: D.DataLoader(
        _ds(lib), shuffle=True, batch_sampler=D.BatchSampler(range(10), 2, False)),
    "batch_sampler_with_drop_last": lambda lib, D: D.DataLoader(
        _ds(lib), drop_last=True, batch_sampler=D.BatchSampler(range(10), 2, False)),
    "shuffle_with_sampler": lambda lib, D: D.DataLoader(_ds(lib), shuffle=True,
                                                        sampler=range(10)),
    "no_batching_drop_last": lambda lib, D: D.DataLoader(_ds(lib), batch_size=None,
                                                         drop_last=True),
    "iterable_shuffle": lambda lib, D: D.DataLoader(_Stream(lib), shuffle=True),
    "iterable_sampler": lambda lib, D: D.DataLoader(_Stream(lib), sampler=[0, 1]),
    "iterable_batch_sampler": lambda lib, D: D.DataLoader(_Stream(lib),
                                                          batch_sampler=[[0, 1]]),
    "negative_workers": lambda lib, D: D.DataLoader(_ds(lib), num_workers=-1),
    "negative_timeout": lambda lib, D: D.DataLoader(_ds(lib), timeout=-1),
    "timeout_without_workers": lambda lib, D: iter(D.DataLoader(_ds(lib), timeout=1)),
    "prefetch_without_workers": lambda lib, D: D.DataLoader(_ds(lib), prefetch_factor=2),
    "negative_prefetch": lambda lib, D: D.DataLoader(_ds(lib), num_workers=1,
                                                     prefetch_factor=-1),
    "prefetch_zero": lambda lib, D: iter(D.DataLoader(_ds(lib), num_workers=1,
                                                      prefetch_factor=0)),
    "persistent_without_workers": lambda lib, D: D.DataLoader(_ds(lib),
                                                              persistent_workers=True),
    "context_without_workers": lambda lib, D: D.DataLoader(_ds(lib),
                                                           multiprocessing_context="fork"),
    "bad_context": lambda lib, D: D.DataLoader(_ds(lib), num_workers=1,
                                               multiprocessing_context="nope"),
    "set_batch_size": lambda lib, D: setattr(D.DataLoader(_ds(lib)), "batch_size", 3),
    "batch_size_zero": lambda lib, D: D.BatchSampler(range(3), 0, False),
    "batch_size_bool": lambda lib, D: D.BatchSampler(range(3), True, False),
    "drop_last_not_bool": lambda lib, D: D.BatchSampler(range(3), 2, 1),
    "random_replacement_not_bool": lambda lib, D: D.RandomSampler(range(3), replacement=1),
    "random_num_samples": lambda lib, D: D.RandomSampler(range(3), num_samples=0),
    "weighted_num_samples": lambda lib, D: D.WeightedRandomSampler([1.0], 0),
    "weighted_replacement": lambda lib, D: D.WeightedRandomSampler([1.0], 1, replacement=0),
    "weighted_2d": lambda lib, D: D.WeightedRandomSampler([[1.0, 2.0]], 1),
    "weighted_too_many": lambda lib, D: list(D.WeightedRandomSampler([1.0, 2.0], 3, False)),
    "weighted_negative": lambda lib, D: list(D.WeightedRandomSampler([1.0, -2.0], 3)),
    "tensor_dataset_sizes": lambda lib, D: D.TensorDataset(lib.zeros(3), lib.zeros(4)),
    "stack_both_kinds": lambda lib, D: D.StackDataset(range(2), x=range(2)),
    "stack_nothing": lambda lib, D: D.StackDataset(),
    "stack_sizes": lambda lib, D: D.StackDataset(range(2), range(3)),
    "concat_empty": lambda lib, D: D.ConcatDataset([]),
    "concat_iterable": lambda lib, D: D.ConcatDataset([_Stream(lib)]),
    "concat_index": lambda lib, D: D.ConcatDataset([range(2)])[-3],
    "chain_map_style": lambda lib, D: list(D.ChainDataset([range(2)])),
    "split_lengths": lambda lib, D: D.random_split(range(5), [2, 2]),
    "split_fraction": lambda lib, D: D.random_split(range(5), [1.5, -0.5]),
    "distributed_rank": lambda lib, D: D.DistributedSampler(range(4), num_replicas=2, rank=2),
    "dataset_getitem": lambda lib, D: D.Dataset()[0],
    "sampler_arguments": lambda lib, D: D.Sampler(range(3)),
    "collate_in_loader": lambda lib, D: list(D.DataLoader([object()], batch_size=1)),
}


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # torch's
@pytest.mark.parametrize("name", list(ERRORS))  # __del__ after its prefetch_factor=0 error
def test_errors_match_torch(name):
    both_raise(lambda lib: ERRORS[name](lib, lib.utils.data))


def test_pin_memory_and_too_many_workers_warn_as_torch():
    with pytest.warns(UserWarning, match="'pin_memory' argument is set as true but no "
                                         "accelerator is found"):
        assert len(list(tg.utils.data.DataLoader(range(4), pin_memory=True))) == 4
    def caught(lib):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            iter(lib.utils.data.DataLoader(range(3), pin_memory=True, pin_memory_device="cuda"))
        return [str(w.message) for w in seen]
    assert caught(tg) == caught(torch) and len(caught(tg)) == 2
    with pytest.warns(UserWarning, match="This DataLoader will create 1000 worker processes"):
        tg.utils.data.DataLoader(range(4), num_workers=1000)


def test_random_split_warns_for_empty_split():
    with pytest.warns(UserWarning, match="Length of split at index 1 is 0"):
        tg.utils.data.random_split(range(2), [1.0, 0.0])


# --------------------------------------------------------------------------------
# worker processes (kept few: each starts processes)

class _Seeds:
    """Samples that show the worker's seeding: its draws from tracegrad/torch, NumPy and
    Python's random, its initial seed and its id."""

    def __init__(self, lib, n=9):
        self.lib, self.n = lib, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        info = self.lib.utils.data.get_worker_info()
        return {"i": i, "x": self.lib.rand(2), "np": np.random.rand(), "py": random.random(),
                "seed": self.lib.initial_seed(), "worker": info.id if info else -1,
                "n": info.num_workers if info else 0}


class _Index:
    def __init__(self, lib, n=11):
        self.lib, self.n = lib, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i, self.lib.full((2,), i / 2), {"s": str(i)}


def _draw_in_init(lib):
    def init(worker_id):
        lib.manual_seed(lib.initial_seed() + 100 * worker_id)
    return init


class _Shards:
    """An iterable dataset each worker reads its own share of."""

    def __new__(cls, lib, n=10):
        class Shards(lib.utils.data.IterableDataset):
            def __iter__(self):
                info = lib.utils.data.get_worker_info()
                start, step = (0, 1) if info is None else (info.id, info.num_workers)
                yield from range(start, n, step)
        return Shards()


def _no_children():
    for _ in range(50):
        gc.collect()
        if not multiprocessing.active_children():
            return True
        time.sleep(0.1)
    return False


# a worker that hangs (a fork of a process whose jax threads held a lock, say) fails the
# test after this many seconds instead of hanging the suite
HANG = 120

# jax warns at every fork once it has started (earlier tests ran compiled functions); the
# workers here run NumPy code only
pytestmark = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")


@pytest.fixture
def reap_workers():
    yield
    assert _no_children(), multiprocessing.active_children()


def test_workers_match_torch_and_main_process(reap_workers):
    def run(lib, workers):
        D = lib.utils.data
        hang = {"timeout": HANG} if workers else {}
        loaders = [D.DataLoader(_Seeds(lib), batch_size=2, shuffle=True, num_workers=workers,
                                worker_init_fn=_draw_in_init(lib) if workers else None, **hang),
                   D.DataLoader(_Index(lib), batch_size=3, shuffle=True, num_workers=workers,
                                **({"persistent_workers": True, "prefetch_factor": 1, **hang}
                                   if workers else {})),
                   D.DataLoader(_Shards(lib), batch_size=2, num_workers=workers, **hang)]
        out = []
        for loader in loaders:
            for _ in range(2):
                out += [list(loader), lib.rand(1)]
            lib.manual_seed(4)  # in the main process, _Seeds drew from the default generator
        return out
    with_workers = both(lambda lib: run(lib, 2), seed=3)[0][1]
    tg.manual_seed(3)
    in_main = plain(run(tg, 0))[1]
    # the default generator moves as in the main process (the loaders draw their seeds
    # there), the index order is the same, and so are samples that do not depend on the
    # worker's seeds
    assert [b["i"] for b in with_workers[0][1]] == [b["i"] for b in in_main[0][1]]
    assert with_workers[4:6] == in_main[4:6] and with_workers[9::2] == in_main[9::2]
    # persistent workers draw no new base seed for a later epoch (as torch's): the
    # default generator is one draw behind a loader that restarts its workers
    assert with_workers[7] != in_main[7]
    # each worker reads its own shard, as in torch
    assert [b[3] for b in with_workers[8][1]] == [[0, 2], [1, 3], [4, 6], [5, 7], [8], [9]]


class _Fails:
    def __init__(self, lib, bad=5):
        self.bad = bad

    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == self.bad:
            raise ValueError(f"no sample {i}")
        return i


def test_worker_exception_is_reraised_with_its_traceback(reap_workers):
    loader = tg.utils.data.DataLoader(_Fails(tg), batch_size=2, num_workers=2, timeout=HANG)
    it = iter(loader)
    assert [next(it).tolist(), next(it).tolist()] == [[0, 1], [2, 3]]
    with pytest.raises(ValueError) as info:
        next(it)
    msg = str(info.value)
    assert msg.startswith("Caught ValueError in DataLoader worker process 0.\n"
                          "Original Traceback (most recent call last):\n")
    assert 'raise ValueError(f"no sample {i}")' in msg and msg.rstrip().endswith(
        "ValueError: no sample 5")
    assert next(it).tolist() == [6, 7]  # as in torch, the loader goes on
    assert list(it) == []


def test_worker_init_error_and_dead_worker(reap_workers):
    D = tg.utils.data
    with pytest.raises(ZeroDivisionError, match="Caught ZeroDivisionError in DataLoader worker"):
        list(D.DataLoader(range(4), num_workers=1, worker_init_fn=_divide_by_zero,
                          timeout=HANG))
    with pytest.raises(RuntimeError, match=r"DataLoader worker \(pid\(s\) \d+\) exited "
                                           "unexpectedly"):
        list(D.DataLoader(_Exits(), num_workers=1))  # no timeout: the death is noticed
    with pytest.raises(RuntimeError, match="DataLoader timed out after 0.1 seconds"):
        list(D.DataLoader(_Slow(), num_workers=1, timeout=0.1))


def _divide_by_zero(worker_id):
    return 1 / 0


class _Exits:
    def __len__(self):
        return 2

    def __getitem__(self, i):
        os._exit(3)


class _Slow:
    def __len__(self):
        return 1

    def __getitem__(self, i):
        time.sleep(1.0)
        return i


def test_unpicklable_worker_arguments_warn_as_torch(reap_workers):
    # spawn pickles the worker's arguments in this process, before any child starts
    def run(lib):
        loader = lib.utils.data.DataLoader(range(2), num_workers=1, worker_init_fn=lambda w: w,
                                           multiprocessing_context="spawn")
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            error = error_of(lambda: iter(loader))
        return error[0], [str(w.message) for w in seen]
    ours = run(tg)
    assert ours == run(torch) and ours[1][0].startswith("Got pickle error")


def test_workers_stop_when_the_epoch_ends(reap_workers):
    it = iter(tg.utils.data.DataLoader(range(6), batch_size=2, num_workers=2, timeout=HANG))
    workers = list(it._workers)
    assert [b.tolist() for b in it] == [[0, 1], [2, 3], [4, 5]]
    assert not any(w.is_alive() for w in workers)
    it = iter(tg.utils.data.DataLoader(range(6), batch_size=2, num_workers=2, in_order=False,
                                       timeout=HANG))
    assert next(it).tolist() in ([0, 1], [2, 3])
    del it  # a half-read iterator stops its workers when it is collected


# --------------------------------------------------------------------------------
# multinomial and exponential_: the draws WeightedRandomSampler uses

MULTINOMIAL = [
    ([1.0, 2.0, 3.0, 4.0], 2, False),
    ([1.0, 2.0, 3.0, 4.0], 4, False),
    ([1.0, 2.0, 3.0, 4.0], 1, True),
    ([0.1, 0.9, 0.4, 0.7, 3.0, 0.6], 40, True),
    ([0.0, 1.0, 0.0, 2.0], 10, True),
    ([[1.0, 2.0, 3.0], [3.0, 0.0, 1.0]], 2, False),
    ([[1.0, 2.0, 3.0], [3.0, 0.0, 1.0]], 7, True),
    ("wide", 300, True),
    ("wide", 100, False),
    ("wide", 1, False),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("probs,n,replacement", MULTINOMIAL)
def test_multinomial_matches_torch(probs, n, replacement, dtype):
    def run(lib):
        p = (lib.rand(1000, dtype=getattr(lib, dtype)) if probs == "wide"
             else lib.tensor(probs, dtype=getattr(lib, dtype)))
        g = lib.Generator().manual_seed(11)
        return [lib.multinomial(p, n, replacement), p.multinomial(n, replacement),
                lib.multinomial(p, n, replacement, generator=g)]
    for seed in SEEDS:
        both(run, seed)


@pytest.mark.parametrize("k", [3, 7, 8])
def test_multinomial_zero_weights_come_in_torchs_order(k):
    # more samples than non-zero weights: the zeros tie, and torch's topk (libstdc++'s
    # nth_element and sort) leaves them in an order of its own
    weights = [1.0, 0, 0, 0, 1, 0, 0, 2.0]
    for seed in SEEDS:
        both(lambda lib: [lib.multinomial(lib.tensor(weights), k),
                          list(lib.utils.data.WeightedRandomSampler(weights, k, False))], seed)


@pytest.mark.parametrize("n,k,levels", [(7, 7, 2), (40, 30, 3), (300, 4, 2), (300, 250, 5),
                                        (1000, 15, 3), (17, 16, 1)])
def test_topk_order_of_ties_matches_torch(n, k, levels):
    from tracegrad.random import _topk_order
    values = np.random.default_rng(n + k).integers(0, levels, n).astype(np.float64)
    assert _topk_order(values, k) == torch.topk(torch.tensor(values), k).indices.tolist()


@pytest.mark.parametrize("args", [
    ([1.0, -1.0], 1, False), ([0.0, 0.0], 1, False), ([0.0, 0.0], 2, True),
    ([1.0, -1.0], 2, True), ([1.0, float("inf")], 2, True), ([float("nan"), 1.0], 2, True),
    ([1.0, float("nan")], 1, False), ([1.0, 2.0], 3, False), ([1.0, 2.0], 0, False),
    ([[1.0], [0.0]], 1, False), ([[1.0, 1.0], [0.0, -1.0]], 2, True),
], ids=str)
def test_multinomial_errors_match_torch(args):
    probs, n, replacement = args
    both_raise(lambda lib: lib.multinomial(lib.tensor(probs), n, replacement))


def test_multinomial_argument_errors_match_torch():
    both_raise(lambda lib: lib.multinomial(lib.tensor([1, 2]), 1))
    both_raise(lambda lib: lib.multinomial(lib.tensor(1.0), 1))
    both_raise(lambda lib: lib.multinomial(lib.ones(2, 2, 2), 1))
    both_raise(lambda lib: lib.multinomial(lib.ones(2), 1, generator=3))
    both(lambda lib: [lib.multinomial(lib.ones(0, 3), 2)])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("lambd", [1.0, 2.5, 0.1])
def test_exponential_matches_torch(dtype, lambd):
    def run(lib):
        g = lib.Generator().manual_seed(2)
        return [lib.empty(100, dtype=getattr(lib, dtype)).exponential_(lambd),
                lib.empty(3, 2, dtype=getattr(lib, dtype)).exponential_(generator=g)]
    both(run, 5)


def test_exponential_errors_match_torch():
    both_raise(lambda lib: lib.empty(3).exponential_(0))
    both_raise(lambda lib: lib.empty(3).exponential_(-1.0))
    both_raise(lambda lib: lib.empty(3, dtype=lib.int64).exponential_())


def test_multinomial_and_exponential_in_a_compiled_function():
    p = tg.tensor([1.0, 2.0, 3.0])
    f = tg.compile(lambda p: tg.multinomial(p, 2))
    tg.manual_seed(0)
    with pytest.warns(UserWarning, match="torch.multinomial inside a compiled function"):
        compiled = [f(p).tolist() for _ in range(3)]
    tg.manual_seed(0)
    assert compiled == [tg.multinomial(p, 2).tolist() for _ in range(3)]  # run eagerly

    g = tg.compile(lambda x: x.exponential_(2.0))
    tg.manual_seed(0)
    draws = [g(tg.zeros(50)) for _ in range(3)]
    tg.manual_seed(0)
    assert draws[0].tolist() == tg.zeros(50).exponential_(2.0).tolist()  # the tracing call
    assert draws[1].tolist() != draws[2].tolist()  # compiled calls draw afresh
    assert all(bool((d > 0).all()) for d in draws)


# --------------------------------------------------------------------------------
# the example script prints what the same script prints under torch

def test_example_prints_what_torch_prints():
    path = ROOT / "examples" / "train_dataloader.py"
    source = path.read_text()
    assert "import tracegrad as torch\n" in source
    printed = []
    for src in (source, source.replace("import tracegrad as torch\n", "import torch\n")):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            exec(compile(src, str(path), "exec"), {"__name__": "__main__"})
        printed.append(out.getvalue())
    assert printed[0] == printed[1]
    assert printed[0].count("train loss") == 4
