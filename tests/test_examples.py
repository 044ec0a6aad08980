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


# ---- examples/train_lm.py (issue 13): an LSTM and a Transformer language model --------------

LM_PATH = ROOT / "examples" / "train_lm.py"


def _lm_module(as_torch: bool) -> dict:
    src = LM_PATH.read_text()
    assert "import tracegrad as torch\n" in src
    if as_torch:
        src = src.replace("import tracegrad as torch\n", "import torch\n")
    ns = {"__name__": "train_lm"}
    exec(compile(src, str(LM_PATH), "exec"), ns)
    return ns


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_language_models_train_as_torch_eager_and_compiled(kind):
    """The same losses step by step under torch, tracegrad eager and tracegrad.compile
    (a short context: the compiled LSTM's time loop unrolls, and XLA's time grows with it)."""
    pytest.importorskip("torch")
    steps, kw = 5, {"context": 4 if kind == "lstm" else 8}
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = _lm_module(True)["train"](kind, steps, **kw)
        ns = _lm_module(False)
        eager = ns["train"](kind, steps, **kw)
        warnings.filterwarnings("error", "tracegrad.compile")  # a graph break runs eagerly
        compiled = ns["train"](kind, steps, compiled=True, **kw)
    assert eager[-1] < eager[0]
    for a, b, c in zip(theirs, eager, compiled, strict=True):
        assert abs(a - b) <= 1e-5 * abs(a), (theirs, eager)
        assert abs(b - c) <= 1e-5 * abs(b), (eager, compiled)


def test_language_model_script_runs():
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _lm_module(False)["main"](["--model", "lstm", "--steps", "3"])
    assert re.search(r"lstm: loss \d+\.\d+ -> \d+\.\d+", out.getvalue())
