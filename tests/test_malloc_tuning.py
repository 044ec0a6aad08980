"""NOTE: [Allocator thresholds]: importing tracegrad keeps freed multi-MB blocks mapped for
reuse (glibc), and TRACEGRAD_MALLOC_TUNING=0 leaves malloc alone."""
import os
import platform
import subprocess
import sys

import pytest

import tracegrad._settings as settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# the resident size kept after one 8 MB block is made and freed: glibc's default serves it
# with mmap and unmaps it on free (0 MB kept); above it stays on the heap for reuse
PROBE = """
import numpy as np
import tracegrad
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
before = rss()
a = np.ones(8 << 20, np.uint8)
del a
print(tracegrad._settings.MALLOC_TUNED, (rss() - before) >> 20)
"""

glibc_linux = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")


def _probe(**env):
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": ROOT, **env}).stdout.split()
    return out[0] == "True", int(out[1])


@glibc_linux
def test_import_keeps_freed_blocks_for_reuse():
    tuned, kept_mb = _probe()
    assert tuned and kept_mb >= 7


@glibc_linux
def test_env_var_leaves_malloc_alone():
    tuned, kept_mb = _probe(TRACEGRAD_MALLOC_TUNING="0")
    assert not tuned and kept_mb <= 1


def test_tune_malloc_is_off_with_the_env_var(monkeypatch):
    monkeypatch.setenv("TRACEGRAD_MALLOC_TUNING", "off")
    assert settings.tune_malloc() is False
