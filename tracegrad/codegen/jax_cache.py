"""The persistent compilation cache for tracegrad's XLA programs (``tracegrad.config.cache_dir``).

NOTE: [Persistent compilation cache]
A compiled step's first call spends most of its time in XLA's compiler. jax can keep the
compiled executables on disk, keyed by the program (StableHLO without source locations), the
compile options, the backend and jax's version, so a second process running the same script
loads the executable instead of compiling it. tracegrad turns that on for its own programs
only, around the call that compiles them (``Lowered``'s first call):

* jax's settings are thread-local states, set for that call: the folder, no minimum compile
  time (jax's default of 1 s would skip the small programs a warm start is made of), no
  minimum entry size. A user's own ``jax.jit`` keeps jax's global settings: jax's one cache
  object is reset before and after the call, so it is rebuilt from those settings when the
  user's code next compiles.
* Entries are written whole: to a temporary file in the same folder, then renamed over the
  final name (atomic on POSIX and Windows). jax's own file cache writes the final file in
  place when no size limit is set, so a process reading while another writes can read half
  an entry (it warns and recompiles); with a size limit it takes a file lock and scans the
  whole folder on every write. Two processes compiling the same program both write; the
  second rename replaces an identical entry.
* A folder that cannot be created or written is a warning, once, and programs are compiled
  as without the cache.
* jax's cache object is one per process: tracegrad's compiles take a lock among themselves,
  but a user's own jax compile running in another thread during one of them would read
  and write tracegrad's folder.

What of tracegrad's own work is reused across processes: nothing but XLA's. A trace is the
function's first call run for real (its results are eager's), and the guards it leaves
refer to the live objects of this process (modules, optimizers, tensors by identity), so it
cannot be loaded from disk. The passes and the source generation are a few percent of a
first call (``benchmarks/warm_start.py`` prints the split) and would need the traced graph
to look up anyway.
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
import threading
import warnings

_LOCK = threading.RLock()  # jax's cache object is process-wide: one tracegrad compile at a time
_warned: set = set()


def cache_dir() -> str | None:
    from .._settings import config
    return config.cache_dir


class AtomicFileCache:
    """jax's cache interface (``get``, ``put``) over one folder, one file per key; writes
    are a temporary file renamed into place, so a reader sees a whole entry or none."""

    suffix = "-cache"  # (jax's own file cache names entries the same way)

    def __init__(self, path: str):
        self._path = pathlib.Path(path)
        self._path.mkdir(parents=True, exist_ok=True)
        if not os.access(self._path, os.W_OK):
            raise PermissionError(f"cannot write to {str(self._path)!r}")

    def _file(self, key: str) -> pathlib.Path:
        if not key or os.sep in key or (os.altsep and os.altsep in key):
            raise ValueError(f"bad compilation cache key {key!r}")
        return self._path / f"{key}{self.suffix}"

    def get(self, key: str) -> bytes | None:
        try:
            return self._file(key).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, key: str, value: bytes) -> None:
        final = self._file(key)
        if final.exists():
            return
        fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}-", suffix=".tmp", dir=self._path)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(value)
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def clear(self) -> None:
        for f in self._path.glob(f"*{self.suffix}"):
            with contextlib.suppress(OSError):
                f.unlink()


@contextlib.contextmanager
def persistent_cache():
    """Within: jax compiles (or loads) programs with tracegrad's cache folder, if one is set.

    Does nothing when ``tracegrad.config.cache_dir`` is None, or when this jax's cache
    internals are not the ones this was written against (the programs compile as usual).
    """
    path = cache_dir()
    if path is None:
        yield
        return
    try:
        from jax._src import compilation_cache as cc, config as jc
        states = (jc.enable_compilation_cache(True), jc.compilation_cache_dir(str(path)),
                  jc.persistent_cache_min_compile_time_secs(0.0),
                  jc.persistent_cache_min_entry_size_bytes(-1))
    except (ImportError, AttributeError):
        states = None
    if states is None or not all(hasattr(cc, n) for n in ("reset_cache", "_cache",
                                                          "_cache_initialized")):
        yield
        return
    with _LOCK:
        try:
            cache = AtomicFileCache(path)
        except (OSError, ValueError) as e:
            if path not in _warned:
                _warned.add(path)
                warnings.warn(f"tracegrad: the compilation cache folder {path!r} cannot be "
                              f"used ({e}); compiling without it. Set tracegrad.config."
                              "cache_dir (or TRACEGRAD_CACHE_DIR) to a writable folder, or "
                              "to None / 'off' to disable the cache", stacklevel=4)
            yield
            return
        cc.reset_cache()
        cc._cache, cc._cache_initialized = cache, True
        try:
            with contextlib.ExitStack() as stack:
                for s in states:
                    stack.enter_context(s)
                yield
        finally:
            cc.reset_cache()  # the user's jax code rebuilds jax's cache from its settings
