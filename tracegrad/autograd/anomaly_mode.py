"""Anomaly detection: name the forward line behind a bad backward.

While anomaly mode is on, every backward node made by a primitive records where
the user's code created it (``node.metadata["traceback_"]``), every in-place op
records its line, and the engine checks each node's results:

* a node whose gradients contain NaN raises ``RuntimeError("Function
  'DivBackward0' returned nan values in its 0th output.")`` followed by the
  forward call that created the node;
* any other error in a node (an in-place modification of a saved tensor, say)
  is re-raised with that forward call, and the in-place error names the line of
  the in-place op.

>>> import tracegrad as tg
>>> x = tg.zeros(1, requires_grad=True)
>>> with tg.autograd.detect_anomaly():
...     y = (x / x).sum()
...     try:
...         y.backward()
...     except RuntimeError as e:
...         print(str(e).splitlines()[0])
Function 'DivBackward0' returned nan values in its 0th output.

It costs a frame walk per recorded op and a NaN scan per backward node
(benchmarks/anomaly.py measures it).
"""
from __future__ import annotations

import linecache
import os
import sys
import warnings

import numpy as np

from ._op_hooks import impl as _hook_impl, refresh, state

__all__ = ["detect_anomaly", "set_detect_anomaly", "is_anomaly_enabled",
           "is_anomaly_check_nan_enabled"]

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MAX_FRAMES = 8
_inplace_sites: dict = {}  # id(version counter) -> (counter, version, site)


def is_anomaly_enabled() -> bool:
    return state.anomaly


def is_anomaly_check_nan_enabled() -> bool:
    return state.anomaly_check_nan


def _set(mode: bool, check_nan: bool) -> None:
    state.anomaly = bool(mode)
    state.anomaly_check_nan = bool(check_nan)
    if not state.anomaly:
        _inplace_sites.clear()
    refresh()


class set_detect_anomaly:
    """Turn anomaly mode on or off: a function call, a context manager, a decorator."""

    def __init__(self, mode: bool, check_nan: bool = True):
        self.prev = (state.anomaly, state.anomaly_check_nan)
        _set(mode, check_nan)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _set(*self.prev)
        return False


class detect_anomaly:
    """Context manager (and decorator) that turns anomaly mode on.

    >>> import tracegrad as tg
    >>> @tg.autograd.detect_anomaly()
    ... def step(x):
    ...     return (x * 2).sum()
    """

    def __init__(self, check_nan: bool = True):
        self.check_nan = check_nan
        self.prev = None

    def __enter__(self):
        warnings.warn("Anomaly Detection has been enabled. This mode will increase the runtime "
                      "and should only be enabled for debugging.", stacklevel=2)
        self.prev = (state.anomaly, state.anomaly_check_nan)
        _set(True, self.check_nan)
        return self

    def __exit__(self, *exc):
        _set(*self.prev)
        return False

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with detect_anomaly(self.check_nan):
                return fn(*args, **kwargs)
        return wrapper


# ----------------------------------------------------------------------------
# recording (called from _op_hooks while anomaly mode is on)

_is_user_code: dict = {}  # code object -> whether it is outside tracegrad


def _user_frames(limit: int = _MAX_FRAMES) -> list:
    """(code, line) of the innermost frames outside tracegrad (formatted on error)."""
    f = sys._getframe(1)
    frames = []
    while f is not None and len(frames) < limit:
        code = f.f_code
        user = _is_user_code.get(code)
        if user is None:
            fn = code.co_filename
            user = _is_user_code[code] = not (fn.startswith(_PKG_DIR) or "importlib" in fn
                                               or "<frozen" in fn)
        if user:
            frames.append((code, f.f_lineno))
        f = f.f_back
    return frames


def note_forward(node) -> None:
    """Remember where the user's code created ``node``."""
    meta = node.metadata
    if meta is None:
        node.metadata = meta = {}
    if "traceback_" not in meta:
        meta["traceback_"] = _user_frames()


def note_inplace(t, out) -> None:
    """Remember the line of the in-place op that made ``t``'s current version."""
    site = _site(_user_frames(1))
    _inplace_sites[id(t._vc)] = (t._vc, t._vc[0], site)
    node = out.grad_fn
    if node is not None:
        if node.metadata is None:
            node.metadata = {}
        node.metadata["inplace_site"] = site


def _site(frames) -> str:
    if not frames:
        return "<unknown>"
    code, line = frames[0]
    return f"{code.co_filename}:{line}"


def format_forward_trace(node) -> str:
    frames = (node.metadata or {}).get("traceback_")
    if not frames:
        return ("No forward pass information available. Enable detect anomaly during the "
                "forward pass for more information.")
    lines = ["Traceback of forward call that caused the error (innermost last):"]
    for code, line in reversed(frames):
        fn = code.co_filename
        lines.append(f'  File "{fn}", line {line}, in {code.co_name}')
        src = linecache.getline(fn, line).strip()
        if src:
            lines.append(f"    {src}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------
# checking (the engine's node.apply while anomaly mode is on)

def _note_modified_inputs(node) -> None:
    """Before a node runs: if a tensor it saved was modified in place, put the line
    of that in-place op where graph._raise_modified looks for it."""
    saved = getattr(node, "_saved", None) or ()
    counters = [vc for vc, expected, _ in saved if vc[0] != expected]
    out_vc = getattr(node, "_out_vc", None)
    if out_vc is not None and out_vc[0] != node._out_version:
        counters.append(out_vc)
    for vc in counters:
        hit = _inplace_sites.get(id(vc))
        if hit is not None and hit[0] is vc:
            if node.metadata is None:
                node.metadata = {}
            node.metadata["inplace_site"] = hit[2]
            return


def run_node_checked(node, g):
    _note_modified_inputs(node)
    try:
        grads = node.apply(g) if node._n_out == 1 else node.apply(*g)
    except RuntimeError as e:
        if getattr(e, "_anomaly_noted", False):
            raise
        err = RuntimeError(f"{e}\n\nError detected in {node.name()}. "
                           f"{format_forward_trace(node)}")
        err._anomaly_noted = True
        raise err from e
    if state.anomaly_check_nan:
        for i, gi in enumerate(grads):
            if gi is None:
                continue
            data = gi._data
            if data.dtype.kind == "f" and np.isnan(data).any():
                err = RuntimeError(f"Function '{node.name()}' returned nan values in its {i}th "
                                   f"output.\n{format_forward_trace(node)}")
                err._anomaly_noted = True
                raise err
    return grads


_hook_impl.note_forward = note_forward
_hook_impl.run_node_checked = run_node_checked
