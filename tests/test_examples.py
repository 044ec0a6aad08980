"""examples/train_resume.py, the usual script shape, under tracegrad and under torch:
the same printed lines, checkpoints each can load from the other, and compiled steps."""
from __future__ import annotations

import contextlib
import io
import pathlib
import re
import warnings

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PATH = ROOT / "examples" / "train_resume.py"


def _module(as_torch: bool) -> dict:
    src = PATH.read_text()
    assert "import tracegrad as torch\n" in src
    if as_torch:
        src = src.replace("import tracegrad as torch\n", "import torch\n")
    ns = {"__name__": "train_resume"}
    exec(compile(src, str(PATH), "exec"), ns)
    return ns


def _run(ns, *args, **kwargs) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ns[args[0]](*args[1:], **kwargs)
    return out.getvalue()


def _numbers(text):
    return [float(v) for v in re.findall(r"-?\d+\.\d+", text)]


def test_the_script_prints_what_torch_prints(tmp_path):
    pytest.importorskip("torch")
    ours = _run(_module(False), "main", [])
    theirs = _run(_module(True), "main", [])
    assert ours == theirs
    assert ours.count("epoch") == 10 and "resumed from epoch 2" in ours


def test_checkpoints_load_across_libraries(tmp_path):
    pytest.importorskip("torch")
    tg_ns, torch_ns = _module(False), _module(True)
    for ns, d in ((tg_ns, tmp_path / "tg"), (torch_ns, tmp_path / "torch")):
        d.mkdir()
        _run(ns, "train", 6, 0, str(d), "cpu")
    # each resumes from the other's epoch-2 checkpoint and prints what it would from its own
    for ns, own, other in ((tg_ns, "tg", "torch"), (torch_ns, "torch", "tg")):
        out_dir = tmp_path / f"{own}-resumed"
        out_dir.mkdir()
        from_other = _run(ns, "train", 6, 0, str(out_dir), "cpu",
                          resume=str(tmp_path / other / "epoch2.pt"))
        from_own = _run(ns, "train", 6, 0, str(out_dir), "cpu",
                        resume=str(tmp_path / own / "epoch2.pt"))
        assert from_other == from_own
        assert "resumed from epoch 2" in from_other


def test_compiled_steps_give_the_eager_losses(tmp_path):
    ns = _module(False)
    eager = _run(ns, "main", [])
    compiled = _run(ns, "main", ["--compile"])
    assert len(_numbers(eager)) == len(_numbers(compiled))
    for a, b in zip(_numbers(eager), _numbers(compiled), strict=True):
        assert abs(a - b) <= 2e-4 + 1e-3 * abs(a), (eager, compiled)
