"""NumPy's floating point warnings, off for one call (NOTE: [Quiet NumPy kernels]).

PyTorch computes 1 / 0, log(0), exp(1000), inf - inf silently; NumPy warns
(``RuntimeWarning: divide by zero ...``). The primitives whose kernels can raise a
floating point flag run with NumPy's error state set to "ignore" for that call only, so
the user's own ``np.seterr`` / ``np.errstate`` is left alone. ``np.errstate`` costs ~1 us
a call; setting the context variable it sets costs ~0.1 us, so that is used where NumPy
has it (``tensor.apply`` sets it around a primitive's raw kernel, without a wrapper call;
every other caller of ``prim.impl`` gets the wrapped kernel).
"""
from __future__ import annotations

import warnings

import numpy as np

try:
    from numpy._core._ufunc_config import _extobj_contextvar, _make_extobj

    QUIET = _make_extobj(all="ignore")
    enter = _extobj_contextvar.set
    leave = _extobj_contextvar.reset
except ImportError:  # another NumPy layout: the public (slower) context manager
    QUIET = None

    def enter(_):
        state = np.errstate(all="ignore")
        state.__enter__()
        return state

    def leave(state):
        state.__exit__(None, None, None)


# The hottest kernels (add, sub, mul, sum: primitives._CANNOT_WARN) skip the switch above
# (it costs ~0.15 us of their ~1.6 us); the rare warning they raise (inf - inf, inf * 0,
# overflow) is dropped by this filter instead, which costs nothing until NumPy warns. A
# ufunc's warning names the module whose Python code called it: tracegrad.tensor, where
# ``apply`` runs the kernels (eagerly, and in backward), or tracegrad.primitives (sum's
# kernel). A user's own ``warnings.simplefilter("error")`` put in front of it still wins,
# and a ``warnings.catch_warnings()`` block open while tracegrad is imported (pytest's
# collection) drops it on exit.
def drop_hot_kernel_warnings() -> None:
    warnings.filterwarnings(
        "ignore", message=r"(overflow|invalid value|divide by zero|underflow) encountered in",
        category=RuntimeWarning, module=r"tracegrad\.(tensor|primitives)\Z")


drop_hot_kernel_warnings()


def quiet(impl):
    """``impl`` with NumPy's floating point warnings off while it runs."""
    def run(*args, **params):
        token = enter(QUIET)
        try:
            return impl(*args, **params)
        finally:
            leave(token)
    run.__name__ = getattr(impl, "__name__", "impl")
    return run
