"""The order PyTorch's CPU kernels leave tied values in, replayed step by step.

Distinct values have one sorted order; among equal ones, ``topk``, ``kthvalue`` and
``sort(stable=False)`` return whichever index their algorithm leaves in place: libstdc++'s
``std::partial_sort`` / ``std::nth_element`` / ``std::sort`` (``topk``, ``sort``) and the
Sedgewick quickselect of ATen's ``Sorting.cpp`` (``kthvalue``). Each function takes a row of
values and returns indices; rows without ties take NumPy's fast path (same answer).

>>> import numpy as np
>>> topk_order(np.array([3., 1., 3., 2.]), 2, largest=True, sorted=True)
[2, 0]
"""
from __future__ import annotations

import math

import numpy as np


def _greater(a, b) -> bool:
    # NaN is the largest value (numpy's order), as in ATen's comparators
    return (a[0] != a[0] and b[0] == b[0]) or a[0] > b[0]


def _less(a, b) -> bool:
    return (a[0] == a[0] and b[0] != b[0]) or a[0] < b[0]


def _distinct(values: np.ndarray) -> bool:
    return len(np.unique(values)) == len(values)  # NaNs count as one value


def _pairs(values: np.ndarray) -> list:
    return list(zip(values.tolist(), range(len(values)), strict=True))


def topk_order(values: np.ndarray, k: int, *, largest: bool, sorted: bool) -> list[int]:
    """The indices ATen's CPU ``topk`` returns for one row: ``std::partial_sort`` when
    ``k * 64 <= n``, else ``std::nth_element`` at k - 1, then (``sorted``) ``std::sort`` of
    the first k - 1."""
    n = len(values)
    if k == 0:
        return []
    comp = _greater if largest else _less
    q = _pairs(values)
    if k * 64 <= n:
        if _distinct(values):
            return _fast(values, largest)[:k]
        _heap_select(q, 0, k, n, comp)
        _sort_heap(q, 0, k, comp)
    else:
        if sorted and _distinct(values):
            return _fast(values, largest)[:k]
        _nth_element(q, 0, k - 1, n, comp)
        if sorted:
            _sort(q, 0, k - 1, comp)
    return [i for _, i in q[:k]]


def sort_order(values: np.ndarray, *, descending: bool) -> list[int]:
    """The indices of libstdc++'s (unstable) ``std::sort`` of one row."""
    if _distinct(values):
        return _fast(values, descending)
    q = _pairs(values)
    _sort(q, 0, len(q), _greater if descending else _less)
    return [i for _, i in q]


def _fast(values: np.ndarray, descending: bool) -> list[int]:
    if not descending:
        return np.argsort(values, kind="stable").tolist()
    n = len(values)
    return (n - 1 - np.argsort(values[::-1], kind="stable")[::-1]).tolist()


def kthvalue_index(values: np.ndarray, k: int) -> int:
    """The index ATen's CPU ``kthvalue`` picks for the k-th smallest (k from 0): its
    quickselect (median of three, NaN the largest)."""
    n = len(values)
    if _distinct(values):
        return int(np.argsort(values, kind="stable")[k])
    arr = values.tolist()
    idx = list(range(n))

    def gt(a, b):
        return (math.isnan(a) and not math.isnan(b)) or a > b

    def swap(i, j):
        arr[i], arr[j] = arr[j], arr[i]
        idx[i], idx[j] = idx[j], idx[i]

    lo, hi = 0, n - 1
    while hi > lo:
        if hi == lo + 1:
            if gt(arr[lo], arr[hi]):
                swap(lo, hi)
            break
        swap((lo + hi) >> 1, lo + 1)
        if gt(arr[lo + 1], arr[hi]):
            swap(lo + 1, hi)
        if gt(arr[lo], arr[hi]):
            swap(lo, hi)
        if gt(arr[lo + 1], arr[lo]):
            swap(lo + 1, lo)
        i, j, piv = lo + 1, hi, arr[lo]
        while True:
            i += 1
            while gt(piv, arr[i]):
                i += 1
            j -= 1
            while gt(arr[j], piv):
                j -= 1
            if j < i:
                break
            swap(i, j)
        swap(lo, j)
        if j <= k:
            lo = i
        if j >= k:
            hi = j - 1
    return idx[k]


# NOTE: [libstdc++ sorting]. The functions below follow GCC's bits/stl_algo.h and
# bits/stl_heap.h for a strict comparison ``comp`` on (value, index) pairs, on a list q
# with half-open ranges [first, last): introsort (threshold 16, depth 2*lg n, median of
# three into first, unguarded partition), insertion sorts, introselect, heap select.

def _insertion_sort(q, first, last, comp) -> None:
    for i in range(first + 1, last):
        if comp(q[i], q[first]):  # a new first: shift the sorted prefix right
            val = q[i]
            q[first + 1:i + 1] = q[first:i]
            q[first] = val
        else:
            _linear_insert(q, i, comp)


def _linear_insert(q, last, comp) -> None:
    val = q[last]
    nxt = last - 1
    while comp(val, q[nxt]):
        q[last] = q[nxt]
        last, nxt = nxt, nxt - 1
    q[last] = val


def _final_insertion_sort(q, first, last, comp) -> None:
    if last - first > 16:
        _insertion_sort(q, first, first + 16, comp)
        for i in range(first + 16, last):
            _linear_insert(q, i, comp)
    else:
        _insertion_sort(q, first, last, comp)


def _median_to_first(q, result, a, b, c, comp) -> None:
    if comp(q[a], q[b]):
        if comp(q[b], q[c]):
            m = b
        elif comp(q[a], q[c]):
            m = c
        else:
            m = a
    elif comp(q[a], q[c]):
        m = a
    elif comp(q[b], q[c]):
        m = c
    else:
        m = b
    q[result], q[m] = q[m], q[result]


def _partition_pivot(q, first, last, comp) -> int:
    mid = first + (last - first) // 2
    _median_to_first(q, first, first + 1, mid, last - 1, comp)
    pivot, lo, hi = q[first], first + 1, last
    while True:
        while comp(q[lo], pivot):
            lo += 1
        hi -= 1
        while comp(pivot, q[hi]):
            hi -= 1
        if not lo < hi:
            return lo
        q[lo], q[hi] = q[hi], q[lo]
        lo += 1


def _sort(q, first, last, comp) -> None:
    if last - first < 1:
        return
    _introsort(q, first, last, 2 * ((last - first).bit_length() - 1), comp)
    _final_insertion_sort(q, first, last, comp)


def _introsort(q, first, last, depth, comp) -> None:
    while last - first > 16:
        if depth == 0:
            _heap_select(q, first, last, last, comp)
            _sort_heap(q, first, last, comp)
            return
        depth -= 1
        cut = _partition_pivot(q, first, last, comp)
        _introsort(q, cut, last, depth, comp)
        last = cut


def _nth_element(q, first, nth, last, comp) -> None:
    if first == last or nth == last:
        return
    depth = 2 * ((last - first).bit_length() - 1)
    while last - first > 3:
        if depth == 0:
            _heap_select(q, first, nth + 1, last, comp)
            q[first], q[nth] = q[nth], q[first]
            return
        depth -= 1
        cut = _partition_pivot(q, first, last, comp)
        if cut <= nth:
            first = cut
        else:
            last = cut
    _insertion_sort(q, first, last, comp)


def _adjust_heap(q, first, hole, length, value, comp) -> None:
    top, child = hole, hole
    while child < (length - 1) // 2:
        child = 2 * (child + 1)
        if comp(q[first + child], q[first + child - 1]):
            child -= 1
        q[first + hole] = q[first + child]
        hole = child
    if length % 2 == 0 and child == (length - 2) // 2:
        child = 2 * (child + 1)
        q[first + hole] = q[first + child - 1]
        hole = child - 1
    parent = (hole - 1) // 2
    while hole > top and comp(q[first + parent], value):
        q[first + hole] = q[first + parent]
        hole = parent
        parent = (hole - 1) // 2
    q[first + hole] = value


def _make_heap(q, first, last, comp) -> None:
    length = last - first
    if length < 2:
        return
    for parent in range((length - 2) // 2, -1, -1):
        _adjust_heap(q, first, parent, length, q[first + parent], comp)


def _pop_heap(q, first, last, result, comp) -> None:
    value = q[result]
    q[result] = q[first]
    _adjust_heap(q, first, 0, last - first, value, comp)


def _heap_select(q, first, middle, last, comp) -> None:
    _make_heap(q, first, middle, comp)
    for i in range(middle, last):
        if comp(q[i], q[first]):
            _pop_heap(q, first, middle, i, comp)


def _sort_heap(q, first, last, comp) -> None:
    while last - first > 1:
        last -= 1
        _pop_heap(q, first, last, last, comp)
