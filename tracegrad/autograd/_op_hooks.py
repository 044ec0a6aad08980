"""The slow path of ``tensor.apply`` and of the backward engine.

Forward-mode AD, the profiler and anomaly mode all need to see every primitive
call (and every backward node). Instead of three checks on the hot path, each of
them sets a field here and ``refresh()`` folds them into one flag, ``state.active``:
``apply`` and the engine test only that flag, and take the hooked path while it
is set. With all three off, a primitive call pays one attribute check.
"""
from __future__ import annotations

import time


class _State:
    active = False        # any of the fields below is on
    fw_level = None       # forward_ad: the open dual level (an int), or None
    fw_paused = False     # inside a JVP rule: its ops do not propagate tangents
    profiler = None       # the recording profiler (profiler._Recorder), or None
    anomaly = False       # anomaly mode: record forward sites, check backward results
    anomaly_check_nan = True


state = _State()


def refresh() -> None:
    state.active = (state.fw_level is not None or state.profiler is not None
                    or state.anomaly)


_NS = time.perf_counter_ns


class _Impl:
    """The hooks' implementations, set by their modules when they load (they import
    this module, so it cannot import them)."""

    apply = None             # tensor.apply
    propagate = None         # forward_ad.propagate
    note_forward = None      # anomaly_mode.note_forward
    run_node_checked = None  # anomaly_mode.run_node_checked


impl = _Impl()


def apply_hooked(prim, args, params, name):
    """``tensor.apply`` while a hook is on: time it, record the forward site, push
    tangents through it."""
    rec = state.profiler
    if rec is None:
        out = impl.apply(prim, args, params, name, _hooked=True)
    else:
        frame = rec.push(rec.op_name(prim))
        try:
            out = impl.apply(prim, args, params, name, _hooked=True)
        finally:
            rec.pop(frame)
    if state.anomaly and out.grad_fn is not None:
        impl.note_forward(out.grad_fn)
    if state.fw_level is not None and not state.fw_paused and prim.differentiable:
        for a in args:
            if a._fw_grad is not None:
                impl.propagate(prim, args, params, out)
                break
    return out


def run_node_hooked(node, g):
    """The engine's ``node.apply`` while a hook is on."""
    rec = state.profiler
    if rec is not None:
        frame = rec.push(node.name())
    try:
        if state.anomaly:
            return impl.run_node_checked(node, g)
        return node.apply(g) if node._n_out == 1 else node.apply(*g)
    finally:
        if rec is not None:
            rec.pop(frame)


def on_inplace(self, out) -> None:
    """The tail of ``commit_inplace``: ``self`` now holds ``out``'s value."""
    if state.fw_level is not None and not state.fw_paused:
        from .forward_ad import _attach
        fw = out._fw_grad
        if fw is not None or self._fw_grad is not None:
            _attach(self, fw)
    if state.anomaly:
        from .anomaly_mode import note_inplace
        note_inplace(self, out)


def copy_tangent(dst, src) -> None:
    """``dst`` is a private copy of ``src``'s value (a snapshot): it gets the tangent too."""
    if state.fw_level is not None:
        from .forward_ad import _attach
        _attach(dst, src._fw_grad)
