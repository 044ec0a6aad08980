"""The demo: each part trains (loss falls), main() parses argv, and the module runs."""
import re
import subprocess
import sys

import numpy as np
import pytest

from tracegrad import demo


def _losses(text):
    return [float(m) for m in re.findall(r"loss ([-+0-9.e]+)", text)]


def test_two_layer_net_loss_falls(capsys):
    final = demo.two_layer_net(steps=30, log_every=10)
    out = capsys.readouterr().out
    steps = [int(s) for s in re.findall(r"step +(\d+)", out)]
    assert steps == [0, 10, 20, 29]
    losses = _losses(out)
    assert losses == sorted(losses, reverse=True) and losses[-1] < losses[0] / 100
    assert final == pytest.approx(losses[-1], rel=1e-5)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_spiral_classifier_learns(optimizer, capsys):
    loss, acc = demo.spiral_classifier(steps=60, log_every=20, optimizer=optimizer)
    out = capsys.readouterr().out
    assert "Sequential(" in out and "accuracy" in out
    assert loss < 0.5 and acc > 0.85


def test_spirals_are_seeded_and_balanced():
    x1, y1 = demo.make_spirals(n_per_class=10, seed=3)
    x2, y2 = demo.make_spirals(n_per_class=10, seed=3)
    assert x1.shape == (30, 2) and y1.tolist() == [0] * 10 + [1] * 10 + [2] * 10
    assert x1.tolist() == x2.tolist() and y1.tolist() == y2.tolist()


def test_main_accepts_argv(capsys):
    assert demo.main(["--steps", "3", "--clf-steps", "2", "--log-every", "1",
                      "--optimizer", "sgd"]) == 0
    out = capsys.readouterr().out
    assert "two-layer net" in out and "spiral classifier" in out and "final" in out


@pytest.mark.parametrize("argv", [["--steps", "0"], ["--optimizer", "rmsprop"], ["--bogus"]])
def test_main_rejects_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as e:
        demo.main(argv)
    assert e.value.code == 2


def test_runs_as_module():
    proc = subprocess.run([sys.executable, "-m", "tracegrad.demo", "--steps", "2",
                           "--clf-steps", "2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "accuracy" in proc.stdout


def test_compiled_part_matches_eager(capsys):
    result = demo.compiled_two_layer_net(steps=6, log_every=2)
    assert np.allclose(result["eager"], result["compiled"], rtol=1e-4)
    out = capsys.readouterr().out
    assert "compiled loss" in out and "ms per step" in out


_EDITABLE_RUN = '''
import importlib.util, os, runpy, sys
ROOT = sys.argv[1]
# an editable install's finder, pointed at this worktree (drop the installed one)
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
class Finder:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "tracegrad" and not name.startswith("tracegrad."):
            return None
        p = os.path.join(ROOT, *name.split("."))
        if os.path.isdir(p):
            return importlib.util.spec_from_file_location(
                name, os.path.join(p, "__init__.py"), submodule_search_locations=[p])
        if os.path.exists(p + ".py"):
            return importlib.util.spec_from_file_location(name, p + ".py")
        return None
sys.meta_path.append(Finder)
sys.argv = [sys.argv[2], "--steps", "2"]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
'''


@pytest.mark.parametrize("module", ["tracegrad.demo", "tracegrad"])
def test_running_from_the_folder_that_holds_a_checkout_says_how_to_fix_it(tmp_path, module):
    """NOTE: [Checkout folder]: ``parent/tracegrad`` is the repository (no __init__.py),
    the package is found by an editable install's finder; without the check the demo died
    with "partially initialized module 'tracegrad.functions' ... circular import"."""
    import os
    from pathlib import Path
    root = Path(demo.__file__).resolve().parents[1]
    (tmp_path / "tracegrad").mkdir()
    (tmp_path / "tracegrad" / "pyproject.toml").write_text("[project]\nname = 'tracegrad'\n")
    script = tmp_path / "run.py"
    script.write_text(_EDITABLE_RUN)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, str(script), str(root), module], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode != 0
    assert "circular import" not in r.stderr
    assert (f"'import tracegrad' found the folder {tmp_path / 'tracegrad'} (a checkout of the "
            f"repository, with no __init__.py) instead of the package {root / 'tracegrad'}. "
            f"Run from inside the checkout") in r.stderr
