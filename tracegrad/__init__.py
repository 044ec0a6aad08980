"""tracegrad: torch-style eager autograd, and a tracing compiler to jax/XLA.

``import tracegrad as torch`` runs the torch.autograd tutorials unchanged.
"""
from __future__ import annotations

from . import dtypes
from .dtypes import (DType as dtype, bool_ as bool, float16, float32, float64, get_default_dtype,
                     int8, int16, int32, int64, set_default_dtype, uint8)
from .tensor import Size, Tensor
from .functions import *  # noqa: F401,F403  (the torch.* namespace)
from .functions import (Generator, default_generator, device, initial_seed, manual_seed, seed,
                        max, min, sum, abs, all, any, round, pow)
from ._format import set_printoptions
from . import autograd
from .autograd import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled

float = float32
double = float64
half = float16
long = int64
int = int32
short = int16

__version__ = "0.1.0"


def sin_(input):
    """In-place sine (refused on a leaf that requires grad, as in PyTorch)."""
    return input.sin_()


def _lazy(name):
    import importlib
    return importlib.import_module(f".{name}", __name__)


# torch.* names whose code lives in nn.functional
_FROM_FUNCTIONAL = {"conv1d": "conv1d", "conv2d": "conv2d", "conv3d": "conv3d",
                    "max_pool1d": "max_pool1d", "max_pool2d": "max_pool2d",
                    "max_pool3d": "max_pool3d", "avg_pool1d": "avg_pool1d",
                    "adaptive_avg_pool1d": "adaptive_avg_pool1d",
                    "adaptive_max_pool1d": "_torch_adaptive_max_pool1d",
                    "batch_norm": "_torch_batch_norm",
                    # structural ops (opsb)
                    "conv_transpose1d": "conv_transpose1d", "conv_transpose2d": "conv_transpose2d",
                    "conv_transpose3d": "conv_transpose3d"}


def __getattr__(name):
    if name in ("nn", "optim", "ir", "passes", "codegen", "random", "profiler", "linalg"):
        mod = _lazy(name)
        globals()[name] = mod
        return mod
    if name in _FROM_FUNCTIONAL:
        fn = getattr(_lazy("nn").functional, _FROM_FUNCTIONAL[name])
        globals()[name] = fn
        return fn
    raise AttributeError(f"module 'tracegrad' has no attribute {name!r}")


from .compile import compile  # noqa: E402,A001  (tracegrad.compile, as torch.compile)
from .ir.tracer import trace as _trace_fn  # noqa: E402  (the tracer imports the namespace above)


def trace(fn_or_input, *args, **kwargs):
    """``tracegrad.trace(fn, *args)`` -> the traced Graph; ``tracegrad.trace(matrix)`` ->
    the sum of its diagonal (``torch.trace``)."""
    if isinstance(fn_or_input, Tensor):
        from .functions import trace as matrix_trace
        return matrix_trace(fn_or_input, *args, **kwargs)
    return _trace_fn(fn_or_input, *args, **kwargs)


from .autograd.graph import _late  # noqa: E402
_late.load()  # the names autograd's nodes use, bound now that every module is loaded
