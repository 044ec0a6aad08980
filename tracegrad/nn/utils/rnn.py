"""``torch.nn.utils.rnn``: padding and packing variable-length sequences.

Composites over ``cat``/``stack``/slicing, so gradients flow back to the sequences. The
lengths and ``batch_sizes`` are read on the host (as PyTorch requires CPU lengths), so under
``tracegrad.compile`` packing a tensor of lengths is a graph break.

>>> import tracegrad as tg
>>> seqs = [tg.ones(3), tg.ones(1), tg.ones(2)]
>>> pad_sequence(seqs, batch_first=True)
tensor([[1., 1., 1.],
        [1., 0., 0.],
        [1., 1., 0.]])
>>> pack_sequence(seqs, enforce_sorted=False).batch_sizes
tensor([3, 2, 1])
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from ... import dtypes, functions as T
from ...tensor import Tensor

__all__ = ["PackedSequence", "invert_permutation", "pack_padded_sequence",
           "pad_packed_sequence", "pad_sequence", "unpad_sequence", "pack_sequence",
           "unpack_sequence"]


class PackedSequence_(NamedTuple):
    data: Tensor
    batch_sizes: Tensor
    sorted_indices: Tensor | None
    unsorted_indices: Tensor | None


class PackedSequence(PackedSequence_):
    """The time steps of a batch of sequences, sorted by length, laid end to end:
    ``data`` holds step 0 of every sequence, then step 1 of those that long, ...;
    ``batch_sizes[t]`` is how many sequences have a step ``t``."""

    def __new__(cls, data, batch_sizes=None, sorted_indices=None, unsorted_indices=None):
        if unsorted_indices is None:
            unsorted_indices = invert_permutation(sorted_indices)
        if batch_sizes is None:
            if not (isinstance(data, (list, tuple)) and len(data) == 2):
                raise AssertionError("Expected data to be a list or tuple of length 2")
            data, batch_sizes = data
        return super().__new__(cls, data, batch_sizes, sorted_indices, unsorted_indices)

    # NOTE: [Host batch sizes] the packing functions remember the batch sizes and the
    # unsorting permutation as host values beside the tensors, so a layer or
    # pad_packed_sequence reading them is no read of a traced tensor under compile.
    _host: tuple | None = None

    def _host_sizes(self) -> tuple[list[int], np.ndarray | None]:
        if self._host is not None:
            return self._host
        unsorted = self.unsorted_indices
        return ([int(b) for b in self.batch_sizes.tolist()],
                None if unsorted is None else unsorted.numpy())

    def to(self, *args, **kwargs) -> PackedSequence:
        data = self.data.to(*args, **kwargs)
        if data is self.data:
            return self
        return type(self)(data, self.batch_sizes, self.sorted_indices, self.unsorted_indices)

    def cpu(self) -> PackedSequence:
        return self

    def double(self) -> PackedSequence:
        return self.to(dtype=dtypes.float64)

    def float(self) -> PackedSequence:
        return self.to(dtype=dtypes.float32)

    @property
    def is_cuda(self) -> bool:
        return False


def invert_permutation(permutation: Tensor | None) -> Tensor | None:
    """The permutation that undoes ``permutation``."""
    if permutation is None:
        return None
    inv = np.empty_like(permutation.numpy())
    inv[permutation.numpy()] = np.arange(inv.size)
    return T.tensor(inv)


def _host_lengths(lengths) -> np.ndarray:
    if isinstance(lengths, Tensor):
        if lengths.ndim != 1 or lengths.dtype.is_floating_point:
            raise RuntimeError("'lengths' argument should be a 1D CPU int64 tensor, but got "
                               f"{lengths.ndim}D cpu {lengths.dtype} tensor")
        return lengths.numpy().astype(np.int64)
    return np.asarray(list(lengths), dtype=np.int64)


def pack_padded_sequence(input: Tensor, lengths, batch_first: bool = False,
                         enforce_sorted: bool = True) -> PackedSequence:
    """Pack a padded (T, B, *) batch (B, T, * with ``batch_first``) of sequences with the
    given lengths; ``enforce_sorted=False`` sorts them by decreasing length first."""
    lens = _host_lengths(lengths)
    sorted_indices = unsorted_indices = inverse = None
    if not enforce_sorted:
        order = np.argsort(-lens, kind="stable")  # PyTorch's CPU sort is stable
        lens = lens[order]
        inverse = np.argsort(order)
        sorted_indices = T.tensor(order.astype(np.int64))
        unsorted_indices = T.tensor(inverse.astype(np.int64))
        input = T.index_select(input, 0 if batch_first else 1, sorted_indices)
    if batch_first:
        input = T.transpose(input, 0, 1)
    if input.numel() == 0:
        raise RuntimeError("Cannot pack empty tensors.")
    batch = input.shape[1]
    if lens.shape[0] != batch:
        raise RuntimeError(f"Expected `len(lengths)` to be equal to batch_size, but got "
                           f"{lens.shape[0]} (batch_size={batch})")
    if lens[-1] <= 0:
        raise RuntimeError("Length of all samples has to be greater than 0, but found an "
                           "element in 'lengths' that is <= 0")
    if np.any(lens[1:] > lens[:-1]):
        raise RuntimeError("`lengths` array must be sorted in decreasing order when "
                           "`enforce_sorted` is True. You can pass `enforce_sorted=False` to "
                           "pack_padded_sequence and/or pack_sequence to sidestep this "
                           "requirement if you do not need ONNX exportability.")
    if lens[0] > input.shape[0]:
        raise RuntimeError(f"pack_padded_sequence: a length ({lens[0]}) is larger than the "
                           f"padded sequence length ({input.shape[0]})")
    batch_sizes = [int((lens > t).sum()) for t in range(int(lens[0]))]
    data = T.cat([input[t, :bs] for t, bs in enumerate(batch_sizes)], 0)
    packed = PackedSequence(data, T.tensor(batch_sizes, dtype=dtypes.int64), sorted_indices,
                            unsorted_indices)
    packed._host = (batch_sizes, inverse)
    return packed


def pad_packed_sequence(sequence: PackedSequence, batch_first: bool = False,
                        padding_value: float = 0.0,
                        total_length: int | None = None) -> tuple[Tensor, Tensor]:
    """Undo ``pack_padded_sequence``: (padded batch, lengths), in the original order."""
    batch_sizes, unsorted = sequence._host_sizes()
    max_len = len(batch_sizes)
    if total_length is not None:
        if total_length < max_len:
            raise ValueError("Expected total_length to be at least the length of the longest "
                             f"sequence in input, but got total_length={total_length} and max "
                             f"sequence length being {max_len}")
        max_len = total_length
    data = sequence.data
    batch, trailing = batch_sizes[0], tuple(data.shape[1:])
    steps, offset = [], 0
    for bs in batch_sizes:
        piece = data[offset:offset + bs]
        offset += bs
        if bs < batch:
            fill = T.full((batch - bs,) + trailing, padding_value, dtype=data.dtype)
            piece = T.cat([piece, fill], 0)
        steps.append(piece)
    for _ in range(max_len - len(batch_sizes)):
        steps.append(T.full((batch,) + trailing, padding_value, dtype=data.dtype))
    padded = T.stack(steps, 0)
    if batch_first:
        padded = T.transpose(padded, 0, 1)
    lengths = np.array([sum(bs > b for bs in batch_sizes) for b in range(batch)], np.int64)
    if sequence.unsorted_indices is not None:
        padded = T.index_select(padded, 0 if batch_first else 1, sequence.unsorted_indices)
        lengths = lengths[unsorted]
    return padded, T.tensor(lengths)


def pad_sequence(sequences, batch_first: bool = False, padding_value: float = 0.0,
                 padding_side: str = "right") -> Tensor:
    """Stack sequences of shapes (L_i, *) into (max L, B, *) (or (B, max L, *)), filling
    with ``padding_value`` on the right (or the left)."""
    if not isinstance(sequences, Iterable):
        raise RuntimeError("pad_sequence: Expected iterable for input sequences, but got arg "
                           f"of type: {type(sequences)}")
    sequences = tuple(sequences)
    if not sequences:
        raise RuntimeError("received an empty list of sequences")
    if padding_side not in ("left", "right"):
        raise RuntimeError("Expected padding_side to be one of left or right, but got "
                           f"{padding_side}.")
    dtype = sequences[0].dtype
    trailing = tuple(sequences[0].shape[1:])
    max_len = max(s.shape[0] for s in sequences)
    rows = []
    for s in sequences:
        if tuple(s.shape[1:]) != trailing:
            raise RuntimeError(f"pad_sequence: every sequence must have the trailing shape "
                               f"{list(trailing)} of the first, but got {list(s.shape)}")
        s = T.cast(s, dtype) if s.dtype != dtype else s
        n = max_len - s.shape[0]
        if n:
            fill = T.full((n,) + trailing, padding_value, dtype=dtype)
            s = T.cat([s, fill] if padding_side == "right" else [fill, s], 0)
        rows.append(s)
    out = T.stack(rows, 0)
    return out if batch_first else T.transpose(out, 0, 1)


def unpad_sequence(padded_sequences: Tensor, lengths: Tensor,
                   batch_first: bool = False) -> list[Tensor]:
    """Split a padded batch back into its sequences of the given lengths."""
    if not batch_first:
        padded_sequences = T.transpose(padded_sequences, 0, 1)
    return [seq[:int(n)] for seq, n in zip(padded_sequences, _host_lengths(lengths),
                                           strict=True)]


def pack_sequence(sequences, enforce_sorted: bool = True) -> PackedSequence:
    """``pack_padded_sequence(pad_sequence(sequences), lengths)``."""
    lengths = [s.size(0) for s in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)


def unpack_sequence(packed_sequences: PackedSequence) -> list[Tensor]:
    """Undo ``pack_sequence``: the list of sequences, in their original order."""
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return unpad_sequence(padded, lengths, batch_first=True)
