"""Timing and reporting helpers shared by the benchmark scripts.

One timing routine, ``compare``: every candidate is calibrated to a batch of
calls that takes at least ``min_batch_s``, then the candidates take turns, one
batch each per round, so a neighbour's job slowing the machine down slows all
of them alike. Tables report the median round of each and the ratio of those
medians; the range of the per-round (paired) ratios is reported beside it as the
noise. Each round also records the process's CPU time beside the wall time: with
the process pinned to one CPU (``pin_threads``), CPU/wall below 1 means the
candidate waited (another job had the core, or it blocked on a worker thread),
and above 1 means it ran threads on other cores.
"""
from __future__ import annotations

import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Timing:
    """Seconds per call, one value per round (each the mean over a batch of calls)."""

    per_round: list[float] = field(default_factory=list)
    calls_per_round: int = 1
    cpu_per_round: list[float] = field(default_factory=list)  # process CPU s per call

    @property
    def cpu_over_wall(self) -> float:
        """Median over the rounds of the process's CPU time / wall time."""
        return statistics.median(c / w for c, w in zip(self.cpu_per_round, self.per_round,
                                                        strict=True))

    @property
    def median(self) -> float:
        return statistics.median(self.per_round)

    @property
    def min(self) -> float:
        return min(self.per_round)

    @property
    def spread(self) -> float:
        """(max - min) / median over the rounds: how noisy this measurement was."""
        return (max(self.per_round) - min(self.per_round)) / self.median


def _batch(fn: Callable[[], object], n: int) -> float:
    return _timed_batch(fn, n)[0]


def _timed_batch(fn: Callable[[], object], n: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of n calls."""
    c0 = time.process_time()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return time.perf_counter() - t0, time.process_time() - c0


def _calibrate(fn: Callable[[], object], min_batch_s: float) -> int:
    n = 1
    while True:
        dt = _batch(fn, n)
        if dt >= min_batch_s or n >= 1 << 20:
            return n
        n = max(n * 2, int(n * min_batch_s / max(dt, 1e-9) * 1.2))


def compare(candidates: dict[str, Callable[[], object]], *, rounds: int = 7,
            warmup: int = 3, min_batch_s: float = 0.1) -> dict[str, Timing]:
    """Time each zero-argument callable, interleaved round by round.

    Each callable must finish its work before returning (block on async results).
    A full garbage collection runs before each batch; inside batches the collector
    stays on, as in real use (tracegrad's tape makes many small Python objects, and
    collecting them is part of its cost).
    """
    counts = {}
    for name, fn in candidates.items():
        for _ in range(warmup):
            fn()
        counts[name] = _calibrate(fn, min_batch_s)
    out = {name: Timing(calls_per_round=n) for name, n in counts.items()}
    for _ in range(rounds):
        for name, fn in candidates.items():
            gc.collect()
            wall, cpu = _timed_batch(fn, counts[name])
            out[name].per_round.append(wall / counts[name])
            out[name].cpu_per_round.append(cpu / counts[name])
    return out


def ratio(a: Timing, b: Timing) -> tuple[float, float, float]:
    """a/b of the median rounds, and the min and max of a/b over the paired rounds."""
    r = [x / y for x, y in zip(a.per_round, b.per_round, strict=False)]
    return a.median / b.median, min(r), max(r)


def cpu_line(timings: dict[str, Timing], names: dict[str, str] | None = None) -> str:
    """One footer line: CPU time / wall time of each candidate (median over rounds)."""
    names = names or {}
    parts = [f"{names.get(k, k)} {t.cpu_over_wall:.2f}" for k, t in timings.items()
             if t.cpu_per_round]
    return "CPU/wall (process CPU time over wall time, median of rounds): " + ", ".join(parts)


def time_once(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ---- threads, peers and environment ----------------------------------------------

THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def pin_threads(argv: list[str] | None = None, default: int = 1) -> int:
    """Read ``--threads N`` and give numpy's BLAS, XLA and torch N threads each.

    Must run before numpy or jax is imported: BLAS and XLA read their thread
    counts from the environment when they load. The default is one thread, because
    on a small machine shared with other jobs a multi-threaded BLAS mostly measures
    the scheduler (threads spin-waiting on a busy core). With one thread the whole
    process is also pinned to one CPU (``os.sched_setaffinity``): XLA keeps worker
    threads of its own whatever the flags say, and pinned they share the one core
    with the caller, as torch's single thread does.
    """
    import argparse
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--threads", type=int, default=default)
    n = ap.parse_known_args(argv)[0].threads
    if os.environ.get("OPENBLAS_NUM_THREADS") == str(n) and "numpy" in sys.modules:
        return n  # already pinned (one benchmark script importing another)
    if "numpy" in sys.modules:
        raise RuntimeError("pin_threads must run before numpy is imported")
    for var in THREAD_ENV:
        os.environ[var] = str(n)
    if n == 1:
        pin_cpu()
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1").strip()
    return n


def pin_cpu() -> int | None:
    """Pin this process (all its threads, present and future) to one CPU it may run on.

    Returns the CPU, or None where the OS has no affinity call (then nothing is pinned).
    """
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    cpu = _idlest(allowed)
    os.sched_setaffinity(0, {cpu})
    return cpu


def _idlest(cpus: list[int], window_s: float = 0.2) -> int:
    """The CPU of ``cpus`` that was idlest over a short window (/proc/stat), else the first:
    on a shared machine, pinning every benchmark to CPU 0 would stack them on one core."""
    def idle():
        out = {}
        try:
            with open("/proc/stat") as f:
                for ln in f:
                    name, *vals = ln.split()
                    if name.startswith("cpu") and name[3:].isdigit():
                        out[int(name[3:])] = int(vals[3]) + int(vals[4])  # idle + iowait
        except (OSError, ValueError, IndexError):
            return {}
        return out
    a = idle()
    time.sleep(window_s)
    b = idle()
    scored = [(b[c] - a[c], -c) for c in cpus if c in a and c in b]
    return -max(scored)[1] if scored else cpus[0]


def pinned_cpus() -> str:
    if not hasattr(os, "sched_getaffinity"):
        return "affinity unknown (no os.sched_getaffinity)"
    cpus = sorted(os.sched_getaffinity(0))
    return f"process pinned to CPU {cpus[0]}" if len(cpus) == 1 else \
        f"process may run on CPUs {cpus}"


def set_torch_threads(torch, n: int) -> None:
    if torch is not None:
        torch.set_num_threads(n)
        try:
            torch.set_num_interop_threads(n)
        except RuntimeError:  # only settable before torch runs parallel work
            pass


def optional_torch():
    """torch if installed (a benchmark peer only), else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def blas_summary() -> str:
    """numpy's BLAS and its thread count, as briefly as we can tell."""
    import numpy as np
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = None
    if threadpool_info is not None:
        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            return ", ".join(f"{p['internal_api']} {p.get('version', '')} "
                             f"{p['num_threads']} threads" for p in pools)
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        name = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # numpy < 1.26 has no dict mode; the name is only informative
        name = "unknown BLAS"
    env = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
    threads = f"{env} thread(s) (set by env; threadpoolctl not installed to confirm)" if env \
        else "threads: library default (threadpoolctl not installed)"
    return f"{name}, {threads}"


def tracegrad_source() -> str:
    """Where the imported tracegrad lives, and its git commit (+ "dirty") if in a repo."""
    import subprocess

    import tracegrad
    pkg = os.path.dirname(os.path.abspath(tracegrad.__file__))
    try:
        def git(*a):
            return subprocess.run(["git", "-C", pkg, *a], capture_output=True, text=True,
                                  check=True, timeout=10).stdout.strip()
        commit = git("rev-parse", "--short", "HEAD")
        dirty = " + uncommitted changes" if git("status", "--porcelain", "--", pkg) else ""
        return f"{pkg} at {commit}{dirty}"
    except (OSError, subprocess.SubprocessError):
        return f"{pkg} (not a git checkout)"


def env_lines(torch=None) -> list[str]:
    import numpy as np
    cores = os.cpu_count()
    lines = [f"python {platform.python_version()}, numpy {np.__version__}, {cores} cores, "
             f"{pinned_cpus()}, load average {os.getloadavg()[0]:.2f} at start"]
    lines.append(f"tracegrad: {tracegrad_source()}")
    lines.append(f"numpy BLAS: {blas_summary()}")
    if "jax" in sys.modules:
        jax = sys.modules["jax"]
        lines.append(f"jax {jax.__version__} on {jax.devices()[0].platform}, XLA_FLAGS="
                     f"{os.environ.get('XLA_FLAGS', '')!r}")
    if torch is not None:
        lines.append(f"torch {torch.__version__}, torch.get_num_threads() = "
                     f"{torch.get_num_threads()}")
    else:
        lines.append("torch not installed: its column shows n/a")
    return lines


# ---- the one table ----------------------------------------------------------------

def fmt_time(seconds: float | None, unit: str) -> str:
    if seconds is None:
        return "n/a"
    scale = {"s": 1.0, "ms": 1e3, "us": 1e6}[unit]
    v = seconds * scale
    return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"


def print_table(title: str, headers: list[str], rows: list[list[str]],
                footer: list[str] = ()) -> None:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=False)))

    rule = "-" * len(line(headers))
    print(title)
    print(rule)
    print(line(headers))
    print(rule)
    for r in rows:
        print(line(r))
    print(rule)
    for f in footer:
        print(f)
    sys.stdout.flush()
