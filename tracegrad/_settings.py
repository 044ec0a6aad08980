"""Process-wide settings real scripts set at the top: deterministic algorithms, float32
matmul precision, thread counts (``torch.use_deterministic_algorithms`` & co.).

tracegrad's eager ops are deterministic already (NumPy on the host), so the deterministic
flags are recorded and reported, as PyTorch reports them, and change no result. Matmul
precision is recorded too (``backends.cuda.matmul.allow_tf32`` reads and writes it, as in
PyTorch); NumPy's float32 matmul is always full precision. ``set_num_threads`` sets the
BLAS thread pool NumPy's matmul runs on (through threadpoolctl); XLA's CPU threads are
fixed when jax starts, so compiled functions keep theirs.

``config`` (``tracegrad.config``) holds tracegrad's own settings: where compiled programs
persist between processes (``config.cache_dir``).
"""
from __future__ import annotations

import os

__all__ = ["use_deterministic_algorithms", "are_deterministic_algorithms_enabled",
           "is_deterministic_algorithms_warn_only_enabled", "set_deterministic_debug_mode",
           "get_deterministic_debug_mode", "set_float32_matmul_precision",
           "get_float32_matmul_precision", "get_num_threads", "set_num_threads",
           "get_num_interop_threads", "set_num_interop_threads", "config"]


class _Settings:
    deterministic = False
    warn_only = False
    matmul_precision = "highest"
    interop_threads = None  # None until set: the default is the CPU count
    blas_limits = None      # the threadpoolctl limiter set_num_threads installed


_s = _Settings()


def use_deterministic_algorithms(mode: bool, *, warn_only: bool = False) -> None:
    if not isinstance(mode, bool):
        raise TypeError(f"_set_deterministic_algorithms(): argument 'mode' (position 1) must "
                        f"be bool, not {type(mode).__name__}")
    _s.deterministic, _s.warn_only = mode, bool(warn_only) and mode


def are_deterministic_algorithms_enabled() -> bool:
    return _s.deterministic


def is_deterministic_algorithms_warn_only_enabled() -> bool:
    return _s.warn_only


_DEBUG_MODES = {"default": 0, "warn": 1, "error": 2}


def set_deterministic_debug_mode(debug_mode) -> None:
    if isinstance(debug_mode, str):
        if debug_mode not in _DEBUG_MODES:
            raise RuntimeError("invalid value of debug_mode, expected one of `default`, `warn`, "
                               f"`error`, but got {debug_mode}")
        debug_mode = _DEBUG_MODES[debug_mode]
    if debug_mode not in (0, 1, 2):
        raise RuntimeError("invalid value of debug_mode, expected 0, 1, or 2, but got "
                           f"{debug_mode}")
    use_deterministic_algorithms(debug_mode != 0, warn_only=debug_mode == 1)


def get_deterministic_debug_mode() -> int:
    return 0 if not _s.deterministic else 1 if _s.warn_only else 2


def set_float32_matmul_precision(precision: str) -> None:
    """'highest', 'high' or 'medium' (recorded; tracegrad's float32 matmul is always full
    precision). Another string warns and changes nothing, as in PyTorch."""
    if not isinstance(precision, str):
        raise RuntimeError(f"set_float32_matmul_precision expects a str, but got "
                           f"{type(precision).__name__}")
    if precision not in ("highest", "high", "medium"):
        import warnings
        warnings.warn(f"{precision} is not one of 'highest', 'high', or 'medium'; the current"
                      "setFloat32MatmulPrecision call has no effect.", stacklevel=2)
        return
    _s.matmul_precision = precision


def get_float32_matmul_precision() -> str:
    return _s.matmul_precision


def _blas_threads() -> int | None:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # threadpoolctl is a dependency; be usable without it all the same
        return None
    counts = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    return max(counts) if counts else None


def get_num_threads() -> int:
    """The number of threads NumPy's BLAS (tracegrad's eager matmul) uses."""
    n = _blas_threads()
    return n if n is not None else os.cpu_count() or 1


def set_num_threads(num: int) -> None:
    """Set the BLAS thread pool's size (torch.set_num_threads)."""
    if isinstance(num, bool) or not isinstance(num, int):
        raise RuntimeError(f"set_num_threads expects an int, but got {type(num).__name__}")
    if num <= 0:
        raise RuntimeError("set_num_threads expects a positive integer")
    from threadpoolctl import threadpool_limits
    _s.blas_limits = threadpool_limits(limits=num, user_api="blas")


def get_num_interop_threads() -> int:
    return _s.interop_threads if _s.interop_threads is not None else os.cpu_count() or 1


def set_num_interop_threads(num: int) -> None:
    """Recorded, once, as PyTorch allows it once (tracegrad runs ops one at a time)."""
    if isinstance(num, bool) or not isinstance(num, int):
        raise RuntimeError(f"set_num_interop_threads expects an int, but got "
                           f"{type(num).__name__}")
    if num <= 0:
        raise RuntimeError("set_num_interop_threads expects a positive integer")
    if _s.interop_threads is not None:
        raise RuntimeError("Error: cannot set number of interop threads after parallel work "
                           "has started or set_num_interop_threads called")
    _s.interop_threads = num


# ---- tracegrad.config ------------------------------------------------------------------

_OFF = ("", "0", "off", "false", "no", "none")
_UNSET = object()


def _default_cache_dir() -> str | None:
    """``$TRACEGRAD_CACHE_DIR`` (empty, "0" or "off" disable the cache), else the per-user
    cache folder: ``$XDG_CACHE_HOME/tracegrad/jax`` or ``~/.cache/tracegrad/jax``."""
    env = os.environ.get("TRACEGRAD_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in _OFF else os.path.expanduser(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tracegrad", "jax")


class Config:
    """tracegrad's own settings, read when they are used.

    ``cache_dir``: the folder where XLA programs that ``tracegrad.compile`` builds are kept
    between processes, so a second run of a script loads its compiled step instead of
    compiling it again (jax's persistent compilation cache, scoped to tracegrad's programs:
    a user's own ``jax.jit`` keeps jax's settings). ``None`` disables it. The default comes
    from ``TRACEGRAD_CACHE_DIR`` (a folder; empty, ``0`` or ``off`` disable), else
    ``$XDG_CACHE_HOME/tracegrad/jax``, else ``~/.cache/tracegrad/jax``. A change applies
    to programs compiled afterwards. Entries are written whole (a temporary file, then a
    rename), so processes can share the folder; delete it to reclaim the space.

    >>> import tracegrad
    >>> tracegrad.config.cache_dir = None     # compile every program afresh
    >>> tracegrad.config.cache_dir = "/tmp/tg-cache"
    """

    __slots__ = ("_cache_dir",)

    def __init__(self):
        self._cache_dir = _UNSET

    @property
    def cache_dir(self) -> str | None:
        if self._cache_dir is _UNSET:
            return _default_cache_dir()
        return self._cache_dir

    @cache_dir.setter
    def cache_dir(self, path) -> None:
        if path is None or path is False:
            self._cache_dir = None
            return
        if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"tracegrad.config.cache_dir must be a folder path (str or "
                            f"os.PathLike) or None to disable the cache, not "
                            f"{type(path).__name__}")
        path = os.path.expanduser(os.fspath(path))
        if not path:
            raise ValueError("tracegrad.config.cache_dir: an empty path; give a folder, or "
                             "None to disable the cache")
        if os.path.exists(path) and not os.path.isdir(path):
            raise ValueError(f"tracegrad.config.cache_dir: {path!r} is a file, not a folder; "
                             "give a folder (it is created when first needed), or None to "
                             "disable the cache")
        self._cache_dir = path

    def __setattr__(self, name, value):
        if name not in ("cache_dir", "_cache_dir"):
            raise AttributeError(f"tracegrad.config has no setting {name!r}; its settings: "
                                 "cache_dir")
        object.__setattr__(self, name, value)

    def reset(self) -> None:
        """Back to the defaults (``TRACEGRAD_CACHE_DIR`` or the per-user folder)."""
        self._cache_dir = _UNSET

    def __repr__(self) -> str:
        return f"tracegrad.config(cache_dir={self.cache_dir!r})"


config = Config()


# ---- perf (issue 14): the allocator's thresholds ------------------------------------------
# NOTE: [Allocator thresholds]. Eager ops make a fresh NumPy array per result, and training
# steps make and free arrays of a few MB each (a GPT's 16x64x512 activations are 2 MB).
# glibc's malloc serves blocks above its mmap threshold (128 KB, raised on the fly to the
# largest block freed so far) with mmap and trims the top of its heap back to the system
# past twice that, so such blocks went back to the kernel and every new one page-faulted
# its memory in again: a 2 MB multiply took 0.45 ms in a GPT step against 0.05 ms into a
# reused buffer, about a quarter of the step. Fixed thresholds keep blocks up to 32 MB on
# the heap and up to 64 MB of freed memory mapped for reuse (peak memory is unchanged: it
# only stops returning freed memory below 64 MB to the system). torch's CPU allocator is
# malloc too, so it gains a little from the same setting. TRACEGRAD_MALLOC_TUNING=0 leaves
# malloc alone; it is only done on glibc, once, when tracegrad is imported.

MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # malloc.h


def tune_malloc() -> bool:
    """Set glibc malloc's mmap and trim thresholds (NOTE: [Allocator thresholds]).

    Returns whether they were set (False off glibc or with TRACEGRAD_MALLOC_TUNING=0)."""
    if os.environ.get("TRACEGRAD_MALLOC_TUNING", "1").strip().lower() in ("0", "false", "no",
                                                                          "off"):
        return False
    import platform
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    import ctypes
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) & \
        bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


MALLOC_TUNED = tune_malloc()


# ---- perf (issue 14): the default BLAS thread count ----------------------------------------
# NOTE: [Default BLAS threads]. NumPy's OpenBLAS starts one thread per core, and its idle
# threads spin-wait for work. On a machine whose cores are busy with other jobs, every
# matmul then waits for threads that cannot run: on a 2-core machine under load, the seed
# net's eager step took 140 ms with 2 BLAS threads and 0.54 ms with one (a 64x1000x100x10
# net; an MLP 3x slower, a LeNet 6x). Eager steps are many small ops, so tracegrad starts
# NumPy's BLAS with one thread, unless the user chose: OPENBLAS_NUM_THREADS,
# OMP_NUM_THREADS, MKL_NUM_THREADS or BLIS_NUM_THREADS in the environment are left to the
# library, TRACEGRAD_NUM_THREADS=n sets n, and ``tracegrad.set_num_threads(n)`` (as
# torch.set_num_threads) changes it at any time. Compiled functions run on XLA's threads.

_USER_THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS")


def _default_blas_threads() -> int | None:
    """The BLAS thread count tracegrad sets at import, or None to leave it alone."""
    n = os.environ.get("TRACEGRAD_NUM_THREADS", "").strip()
    if n:
        try:
            value = int(n)
        except ValueError:
            raise RuntimeError(f"TRACEGRAD_NUM_THREADS must be a positive integer, got "
                               f"{n!r}") from None
        if value <= 0:
            raise RuntimeError(f"TRACEGRAD_NUM_THREADS must be a positive integer, got {n!r}")
        return value
    if any(os.environ.get(v, "").strip() for v in _USER_THREAD_ENV):
        return None
    return 1


def _apply_default_threads() -> None:
    n = _default_blas_threads()
    if n is None:
        return
    try:
        set_num_threads(n)
    except ImportError:  # threadpoolctl is a dependency; stay importable without it
        pass


_apply_default_threads()
