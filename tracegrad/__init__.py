"""tracegrad: torch-style eager autograd, and a tracing compiler to jax/XLA.

``import tracegrad as torch`` runs the torch.autograd tutorials unchanged.
"""
from __future__ import annotations

from . import dtypes
from .dtypes import (DType as dtype, bool_ as bool, bfloat16, float16, float32, float64,
                     get_default_dtype, int8, int16, int32, int64, set_default_dtype, uint8)
from .tensor import Size, Tensor
from .functions import *  # noqa: F401,F403  (the torch.* namespace)
from .functions import (Generator, default_generator, device, initial_seed, manual_seed, seed,
                        max, min, sum, abs, all, any, round, pow)
from ._format import set_printoptions
from .control_flow import cond, fori_loop, scan, while_loop  # noqa: E402,F401
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


# devices/creation helper: the device and runtime modules real scripts touch at the top
# (torch.cuda, torch.backends, torch.distributed, ...), loaded on first use
_DEVICE_MODULES = ("cuda", "backends", "accelerator", "amp", "distributed", "onnx", "jit", "hub",
                   "utils")
from ._settings import (  # noqa: E402
    are_deterministic_algorithms_enabled,
    config,
    get_deterministic_debug_mode,
    get_float32_matmul_precision,
    get_num_interop_threads,
    get_num_threads,
    is_deterministic_algorithms_warn_only_enabled,
    set_deterministic_debug_mode,
    set_float32_matmul_precision,
    set_num_interop_threads,
    set_num_threads,
    use_deterministic_algorithms,
)
from .amp import autocast  # noqa: E402
from .amp.autocast_mode import (  # noqa: E402
    get_autocast_dtype,
    is_autocast_available,
    is_autocast_enabled,
    set_autocast_dtype,
    set_autocast_enabled,
)


def __getattr__(name):
    if name in ("nn", "optim", "ir", "passes", "codegen", "random", "profiler",
                "serialization", "special", "linalg") or name in _DEVICE_MODULES:
        mod = _lazy(name)
        globals()[name] = mod
        return mod
    # ---- serialization: tracegrad.save / tracegrad.load (torch's checkpoint format) ----
    if name in ("save", "load"):
        fn = getattr(_lazy("serialization"), name)
        globals()[name] = fn
        return fn
    if name in _FROM_FUNCTIONAL:
        fn = getattr(_lazy("nn").functional, _FROM_FUNCTIONAL[name])
        globals()[name] = fn
        return fn
    raise AttributeError(f"module 'tracegrad' has no attribute {name!r}")


from .runtime import compile  # noqa: E402,A001  (tracegrad.compile, as torch.compile)
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
