"""The persistent compilation cache (tracegrad.config.cache_dir, TRACEGRAD_CACHE_DIR).

NOTE: [Persistent compilation cache] in tracegrad/codegen/jax_cache.py. Every folder here is
a tmp dir; no timing is asserted (benchmarks/warm_start.py measures the speed-up).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import tracegrad as tg
from tracegrad._settings import _default_cache_dir
from tracegrad.codegen.jax_cache import AtomicFileCache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def cache(tmp_path):
    """tracegrad.config.cache_dir pointed at a fresh folder for one test."""
    folder = tmp_path / "cache"
    old = tg.config._cache_dir
    tg.config.cache_dir = folder
    yield folder
    object.__setattr__(tg.config, "_cache_dir", old)


def entries(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _step_fn(scale):
    w = tg.randn(5, 3, requires_grad=True)

    @tg.compile
    def step(x):
        loss = ((x @ w) * scale).tanh().sum()
        loss.backward()
        with tg.no_grad():
            w.sub_(0.1 * w.grad)
            w.grad.zero_()
        return loss
    return step, w


# ---- the setting --------------------------------------------------------------------------

@pytest.mark.parametrize("env, xdg, want", [
    ("/some/where", None, "/some/where"),
    ("", None, None), ("0", None, None), ("off", None, None), ("OFF", None, None),
    (None, "/xdg", os.path.join("/xdg", "tracegrad", "jax")),
    (None, None, os.path.join(os.path.expanduser("~"), ".cache", "tracegrad", "jax")),
])
def test_the_default_folder_comes_from_the_environment(monkeypatch, env, xdg, want):
    for var, value in (("TRACEGRAD_CACHE_DIR", env), ("XDG_CACHE_HOME", xdg)):
        if value is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, value)
    assert _default_cache_dir() == want
    config = type(tg.config)()  # a fresh one reads the environment when asked
    assert config.cache_dir == want


def test_the_suite_never_uses_the_home_cache():
    home = os.path.join(os.path.expanduser("~"), ".cache")
    assert not os.path.realpath(tg.config.cache_dir).startswith(os.path.realpath(home))


def test_setting_checks_its_value(tmp_path):
    config = type(tg.config)()
    config.cache_dir = tmp_path / "x"
    assert config.cache_dir == str(tmp_path / "x")
    config.cache_dir = None
    assert config.cache_dir is None
    with pytest.raises(TypeError, match="must be a folder path .* or None"):
        config.cache_dir = 3
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        config.cache_dir = f
    with pytest.raises(ValueError, match="empty path"):
        config.cache_dir = ""
    assert config.cache_dir is None  # a refused value leaves the setting as it was
    with pytest.raises(AttributeError, match="no setting 'cache_size'; its settings: cache_dir"):
        config.cache_size = 1
    config.reset()
    assert config.cache_dir == _default_cache_dir()


# ---- the folder -----------------------------------------------------------------------------

def test_a_compiled_step_leaves_entries_and_nothing_half_written(cache):
    step, _ = _step_fn(0.5)
    x = tg.randn(4, 5)
    for _ in range(4):
        step(x)
    assert step.cache_info().hits >= 1
    names = entries(cache)
    assert names and all(n.endswith("-cache") for n in names), names  # no temporary files


def test_disabled_writes_nothing(cache, monkeypatch):
    tg.config.cache_dir = None
    step, _ = _step_fn(0.25)
    x = tg.randn(4, 5)
    for _ in range(4):
        step(x)
    assert step.cache_info().hits >= 1
    assert entries(cache) == []
    monkeypatch.setenv("TRACEGRAD_CACHE_DIR", "off")  # the variable disables it too
    tg.config.reset()
    assert tg.config.cache_dir is None
    step, _ = _step_fn(0.75)
    for _ in range(4):
        step(x)
    assert entries(cache) == []


def test_the_users_own_jax_keeps_jax_settings(cache):
    import jax
    import jax.numpy as jnp
    from jax._src import compilation_cache as cc
    before = (jax.config.jax_compilation_cache_dir,
              jax.config.jax_persistent_cache_min_compile_time_secs,
              jax.config.jax_persistent_cache_min_entry_size_bytes)
    step, _ = _step_fn(1.5)
    x = tg.randn(4, 5)
    for _ in range(4):
        step(x)
    n = len(entries(cache))
    assert n
    assert cc._cache is None  # jax's cache object is rebuilt from jax's settings
    assert (jax.config.jax_compilation_cache_dir,
            jax.config.jax_persistent_cache_min_compile_time_secs,
            jax.config.jax_persistent_cache_min_entry_size_bytes) == before
    jax.jit(lambda a: jnp.sin(a) * 7.5 + 0.125)(jnp.ones(3)).block_until_ready()
    assert len(entries(cache)) == n  # not written into tracegrad's folder


def test_an_unusable_folder_warns_once_and_compiles(cache, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    object.__setattr__(tg.config, "_cache_dir", str(blocker / "sub"))  # (as from the env)
    step, w = _step_fn(2.0)
    x = tg.randn(4, 5)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        losses = [float(step(x)) for _ in range(4)]
        step2, _ = _step_fn(3.0)
        for _ in range(4):
            step2(x)
    texts = [str(m.message) for m in got if "compilation cache folder" in str(m.message)]
    assert len(texts) == 1 and "cannot be used" in texts[0] and "TRACEGRAD_CACHE_DIR" in texts[0]
    assert step.cache_info().hits >= 1 and all(np.isfinite(losses))


def test_atomic_file_cache(tmp_path):
    c = AtomicFileCache(str(tmp_path / "c"))
    assert c.get("k1") is None
    c.put("k1", b"abc")
    c.put("k1", b"other")  # an entry is never rewritten
    assert c.get("k1") == b"abc"
    assert entries(tmp_path / "c") == ["k1-cache"]
    with pytest.raises(ValueError, match="bad compilation cache key"):
        c.put("../x", b"")
    c.clear()
    assert c.get("k1") is None


# ---- across processes ----------------------------------------------------------------------

SCRIPT = textwrap.dedent("""
    import json, warnings
    warnings.simplefilter("error")   # a cache read or write problem would be a warning
    import jax.monitoring
    events = []
    jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
    import tracegrad as tg
    from tracegrad import nn
    tg.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    opt = tg.optim.Adam(model.parameters(), lr=0.01)
    x, y = tg.randn(8, 6), tg.randint(0, 3, (8,))

    @tg.compile
    def step(x, y):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    losses = [step(x, y).item() for _ in range(5)]
    print(json.dumps({"losses": losses, "hits": step.cache_info().hits,
                      "disk_hits": events.count("/jax/compilation_cache/cache_hits")}))
""")


def _run(folder, n=1):
    env = dict(os.environ, TRACEGRAD_CACHE_DIR=str(folder),
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(n)]
    out = []
    for p in procs:
        so, se = p.communicate(timeout=240)
        assert p.returncode == 0, se
        out.append(json.loads(so.strip().splitlines()[-1]))
    return out


def test_processes_share_the_folder_and_a_later_one_loads_from_it(tmp_path):
    folder = tmp_path / "shared"
    first = _run(folder, n=2)  # two at once, compiling the same programs into one folder
    names = entries(folder)
    assert names and all(n.endswith("-cache") for n in names), names
    later, = _run(folder)
    assert later["disk_hits"] >= 1  # loaded, not compiled
    assert entries(folder) == names  # nothing new: every program came from the folder
    for r in first:
        assert r["hits"] >= 1
        assert r["losses"] == later["losses"]  # the loaded program computes the same
