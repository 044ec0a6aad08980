"""NOTE: [Default BLAS threads]: one BLAS thread unless the user chose (environment,
TRACEGRAD_NUM_THREADS, set_num_threads)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = ("import tracegrad as tg\n"
         "from threadpoolctl import threadpool_info\n"
         "blas = [p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas']\n"
         "print(tg.get_num_threads(), max(blas))\n")
USER_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
             "TRACEGRAD_NUM_THREADS")


def _threads(**env):
    base = {k: v for k, v in os.environ.items() if k not in USER_VARS}
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                       timeout=120, env={**base, "PYTHONPATH": ROOT, **env})
    if r.returncode:
        return r.stderr
    return tuple(int(v) for v in r.stdout.split())


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 CPUs to tell the counts apart")
@pytest.mark.parametrize("env, want", [
    ({}, (1, 1)),                                   # the default: one thread
    ({"TRACEGRAD_NUM_THREADS": "2"}, (2, 2)),       # tracegrad's own variable
    ({"OPENBLAS_NUM_THREADS": "2"}, (2, 2)),        # the user's BLAS setting is kept
    ({"OMP_NUM_THREADS": "2"}, (2, 2)),
])
def test_default_and_user_thread_counts(env, want):
    assert _threads(**env) == want


def test_bad_tracegrad_num_threads_is_a_clear_error():
    err = _threads(TRACEGRAD_NUM_THREADS="many")
    assert "TRACEGRAD_NUM_THREADS must be a positive integer, got 'many'" in err
