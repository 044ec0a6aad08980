"""``torch.autocast`` on the CPU.

NOTE: [Autocast]. Inside ``autocast('cpu', dtype=torch.bfloat16)`` (or float16), the ops
PyTorch's CPU autocast runs in lower precision (matmul, mm, bmm, addmm, linear, conv1d/2d/
3d) first cast their floating inputs that are not float64 to that dtype, so their results
are of it; the losses it runs in float32 (mse_loss, l1_loss, nll_loss, cross_entropy,
binary_cross_entropy(_with_logits)) first cast bfloat16/float16 inputs to float32. Every
other op runs on its inputs' dtypes, as in PyTorch. The casts are ordinary recorded casts,
so gradients flow back to float32 parameters in float32. ``autocast('cuda')`` has no
device to run on: it warns and does nothing, as a CPU-only PyTorch does. The wrappers in
functions.py and nn/functional.py check ``state.enabled`` (one attribute read) and call
``lower``/``upper``.
"""
from __future__ import annotations

import functools
import warnings

from .. import dtypes

__all__ = ["autocast", "is_autocast_available", "is_autocast_enabled", "get_autocast_dtype",
           "set_autocast_enabled", "set_autocast_dtype"]


class _State:
    enabled = False              # CPU autocast on
    dtype = dtypes.bfloat16      # the CPU autocast dtype
    cuda_dtype = dtypes.float16  # what torch.get_autocast_dtype('cuda') reports


state = _State()
_CPU_DTYPES = (dtypes.bfloat16, dtypes.float16)


def _device_type(device_type) -> str:
    if not isinstance(device_type, str):
        raise ValueError(f"Expected `device_type` of type `str`, got: `{type(device_type)}`")
    from ..functions import device
    return device(device_type).type  # an unknown name raises PyTorch's error


def is_autocast_available(device_type: str) -> bool:
    return _device_type(device_type) == "cpu"


def is_autocast_enabled(device_type: str | None = None) -> bool:
    """``torch.is_autocast_enabled()``: the CUDA flag (always False here), or a device's."""
    if device_type is None or _device_type(device_type) != "cpu":
        return False
    return state.enabled


def set_autocast_enabled(device_type, enabled=None) -> None:
    if enabled is None:  # the old one-argument form sets the CUDA flag: nothing to set
        return
    if _device_type(device_type) == "cpu":
        state.enabled = bool(enabled)


def get_autocast_dtype(device_type: str):
    return state.dtype if _device_type(device_type) == "cpu" else state.cuda_dtype


def set_autocast_dtype(device_type: str, dtype) -> None:
    if _device_type(device_type) == "cpu":
        state.dtype = dtypes.as_dtype(dtype)


class autocast:  # noqa: N801  (torch's name)
    """``torch.autocast(device_type, dtype=None, enabled=True, cache_enabled=None)``: a
    context manager and a decorator (NOTE: [Autocast]). On 'cpu' the default dtype is
    ``get_autocast_dtype('cpu')`` (bfloat16); only bfloat16 and float16 are supported.

    >>> import tracegrad as tg
    >>> with tg.autocast('cpu'):
    ...     (tg.ones(2, 2) @ tg.ones(2, 2)).dtype
    torch.bfloat16
    """

    def __init__(self, device_type: str, dtype=None, enabled: bool = True,
                 cache_enabled: bool | None = None):
        self.device = _device_type(device_type)
        self.fast_dtype = dtypes.as_dtype(dtype) if dtype is not None else \
            get_autocast_dtype(self.device)
        self._enabled = bool(enabled)
        if self.device == "cuda" and self._enabled:
            warnings.warn("CUDA is not available or torch_xla is imported. Disabling autocast.",
                          stacklevel=2)
            self._enabled = False
        elif self.device not in ("cpu", "cuda"):
            raise RuntimeError(f"User specified an unsupported autocast device_type "
                               f"'{self.device}': tracegrad autocasts on the CPU only")
        elif self._enabled and self.fast_dtype not in _CPU_DTYPES:
            warnings.warn("In CPU autocast, but the target dtype is not supported. Disabling "
                          "autocast.\nCPU Autocast only supports dtypes of torch.bfloat16, "
                          "torch.float16 currently.", stacklevel=2)
            self._enabled = False
        self._saved = []

    def __enter__(self):
        if self.device == "cpu":
            self._saved.append((state.enabled, state.dtype))
            state.enabled = self._enabled
            if self._enabled:
                state.dtype = self.fast_dtype
        return self

    def __exit__(self, *exc):
        if self.device == "cpu":
            state.enabled, state.dtype = self._saved.pop()
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def autocast_fn(*args, **kwargs):
            with self:
                return fn(*args, **kwargs)
        return autocast_fn


def lower(*tensors):
    """The inputs of a lower-precision op under autocast: floating tensors other than
    float64 cast to the autocast dtype (None and non-floating ones as they are)."""
    from ..functions import cast
    target = state.dtype
    return tuple(cast(t, target) if t is not None and getattr(t, "dtype", None) is not None
                 and t.dtype.is_floating_point and t.dtype is not dtypes.float64
                 and t.dtype is not target else t for t in tensors)


def upper(*tensors):
    """The inputs of a float32 op under autocast: bfloat16/float16 tensors cast to float32."""
    from ..functions import cast
    return tuple(cast(t, dtypes.float32) if t is not None and getattr(t, "dtype", None)
                 in _CPU_DTYPES else t for t in tensors)


def custom_fwd(fwd=None, *, device_type: str = "cuda", cast_inputs=None):
    """``torch.amp.custom_fwd``: decorates a custom Function's forward. With CPU autocast on
    and ``cast_inputs`` given, floating tensor arguments are cast to it and the forward runs
    with autocast off; otherwise the forward runs as is (there is no CUDA autocast)."""
    if fwd is None:
        return functools.partial(custom_fwd, device_type=device_type, cast_inputs=cast_inputs)
    device = _device_type(device_type)

    @functools.wraps(fwd)
    def decorate_fwd(*args, **kwargs):
        if device != "cpu" or cast_inputs is None or not state.enabled:
            return fwd(*args, **kwargs)
        from ..functions import cast
        target = dtypes.as_dtype(cast_inputs)

        def to(v):
            dt = getattr(v, "dtype", None)
            return cast(v, target) if dt is not None and getattr(dt, "is_floating_point", 0) \
                else v
        with autocast(device, enabled=False):
            return fwd(*[to(a) for a in args], **{k: to(v) for k, v in kwargs.items()})
    return decorate_fwd


def custom_bwd(bwd=None, *, device_type: str = "cuda"):
    """``torch.amp.custom_bwd``: the backward runs as is."""
    if bwd is None:
        return functools.partial(custom_bwd, device_type=device_type)
    return bwd
