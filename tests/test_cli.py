"""The ``tracegrad`` command on examples/train_mlp.py: dump, explain, viz, errors, logs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tracegrad import cli

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = str(ROOT / "examples" / "train_mlp.py")
QUICK = ["--", "--steps", "3"]

BREAKING = """
import tracegrad as tg

@tg.compile
def clipped(x):
    y = (x * 2).sum()
    if y.item() > 100:     # Python needs the value: a graph break
        y = y / 10
    return y

for _ in range(2):
    clipped(tg.ones(3))
"""


def _script(tmp_path, text, name="script.py"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return str(p)


def test_dump_text_to_stdout_shows_every_stage_and_the_jax_source(capsys):
    assert cli.main(["dump", EXAMPLE, "--fn", "train_step", *QUICK]) == 0
    out = capsys.readouterr().out
    for stage in ("traced", "autodiff", "dce", "cse", "simplify", "fusion", "final"):
        assert f"# ==== train_step[0] forward {stage} ====" in out
    assert "def train_step(" in out and "fusion(" in out
    assert "# ==== train_step[0] jax source ====" in out and "jnp." in out
    assert "evaluate" not in out.split("loss")[-1]


@pytest.mark.parametrize("fmt,ext", [("text", "py"), ("dot", "dot"), ("json", "json")])
def test_dump_writes_one_file_per_function_and_stage(tmp_path, fmt, ext):
    out = tmp_path / "dump"
    assert cli.main(["dump", EXAMPLE, "--format", fmt, "-o", str(out), *QUICK]) == 0
    names = sorted(os.listdir(out))
    assert f"train_step.0.forward.traced.{ext}" in names
    assert f"evaluate.1.forward.final.{ext}" in names     # the second batch shape
    assert "train_step.0.jax.py" in names
    text = (out / f"train_step.0.forward.fusion.{ext}").read_text()
    if fmt == "json":
        data = json.loads(text)
        assert data["stage"] == "fusion" and any(n["op"] == "fusion" for n in data["nodes"])
    elif fmt == "dot":
        assert text.startswith("digraph") and "cluster_" in text
    else:
        assert text.startswith("# stage: fusion") and "def train_step(" in text


def test_dump_one_stage_with_hlo(tmp_path):
    out = tmp_path / "dump"
    assert cli.main(["dump", EXAMPLE, "--stage", "fusion", "--fn", "evaluate", "--hlo",
                     "-o", str(out), *QUICK]) == 0
    names = sorted(os.listdir(out))
    assert names == ["evaluate.0.forward.fusion.py", "evaluate.0.forward.hlo.txt",
                     "evaluate.1.forward.fusion.py", "evaluate.1.forward.hlo.txt"]
    hlo = (out / "evaluate.1.forward.hlo.txt").read_text()
    assert "module" in hlo and "40x8" in hlo


def test_dump_bad_stage_or_function_name(capsys):
    assert cli.main(["dump", EXAMPLE, "--stage", "nope", *QUICK]) == 1
    assert "no stage named 'nope'; stages: traced, autodiff" in capsys.readouterr().err
    assert cli.main(["dump", EXAMPLE, "--fn", "nope", *QUICK]) == 1
    assert "no compiled function named 'nope'" in capsys.readouterr().err


def test_explain_reports_compilations_reasons_and_stage_table(capsys):
    assert cli.main(["explain", EXAMPLE, *QUICK]) == 0
    out = capsys.readouterr().out
    assert "train_step: 2 trace(s), 1 compiled program(s)" in out
    # the first step makes the .grad slots and Adam's buffers: traced again
    assert "new tensor(s) kept in Python state" in out
    assert "evaluate: 2 trace(s), 2 compiled program(s)" in out
    assert "x: shape (64, 8) -> (40, 8)" in out and "arg0" not in out
    assert "fusion" in out and "final (codegen)" in out


def test_explain_shows_graph_breaks_with_file_and_line(tmp_path, capsys):
    path = _script(tmp_path, BREAKING)
    with pytest.warns(UserWarning, match="graph break"):
        assert cli.main(["explain", path]) == 0
    out = capsys.readouterr().out
    assert "graph breaks:" in out and f"{path}:7: item() needs the value" in out
    assert "runs eagerly: graph break at" in out


def test_viz_writes_one_self_contained_html(tmp_path):
    out = tmp_path / "report.html"
    assert cli.main(["viz", EXAMPLE, "-o", str(out), *QUICK]) == 0
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and 'id="tg-data"' in page
    assert "<script src" not in page and "<link" not in page
    data = json.loads(page.split('type="application/json">')[1].split("</script>")[0]
                      .replace("<\\/", "</"))
    titles = [v["title"] for v in data["views"]]
    assert titles == ["train_step[0]: forward + backward + optimizer", "evaluate[0]: forward",
                      "evaluate[1]: forward"]


def test_viz_shows_a_compiled_models_backward_graph(tmp_path):
    path = _script(tmp_path, """
        import tracegrad as tg
        model = tg.compile(tg.nn.Linear(3, 2))
        for _ in range(2):
            model(tg.randn(4, 3)).sum().backward()
        """)
    out = tmp_path / "report.html"
    assert cli.main(["viz", path, "-o", str(out)]) == 0
    data = json.loads(out.read_text().split('type="application/json">')[1]
                      .split("</script>")[0].replace("<\\/", "</"))
    parts = [v["title"].split()[-1] for v in data["views"]]
    assert parts == ["forward", "backward"]  # "Linear[0]: forward", "Linear[0] backward"
    kinds = {data["nodes"][k][1] for k in data["views"][1]["stages"][0]["pos"]
             if k in data["nodes"]}
    assert "gradient" in kinds
    bands = [data["views"][1]["stages"][0]["groups"][k][0]
             for k in data["views"][1]["stages"][0]["kids"][""]]
    assert bands == ["inputs", "backward"]


@pytest.mark.parametrize("text,message", [
    (None, "no such script"),
    ("raise ValueError('boom')", "raised ValueError"),
    ("import sys; sys.exit(3)", "exited with status 3"),
    ("print('hello')", "made no tracegrad.compile function"),
])
def test_errors_are_one_line_and_nonzero(tmp_path, capsys, text, message):
    path = str(tmp_path / "missing.py") if text is None else _script(tmp_path, text)
    assert cli.main(["explain", path]) == 1
    err = capsys.readouterr().err
    assert f"tracegrad explain: error: {path}" in err or "no such script" in err
    assert message in err


def test_console_script_and_python_m_agree(tmp_path):
    path = _script(tmp_path, "print('hello')")
    r = subprocess.run([sys.executable, "-m", "tracegrad", "explain", path],
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 1 and "made no tracegrad.compile function" in r.stderr
    assert 'tracegrad = "tracegrad.cli:main"' in (ROOT / "pyproject.toml").read_text()


def test_tracegrad_logs_cover_graphs_stages_recompiles_and_breaks(tmp_path):
    path = _script(tmp_path, BREAKING + """
@tg.compile
def double(x):
    return x * 2

double(tg.ones(3)); double(tg.ones(3)); double(tg.ones(4)); double(tg.ones(4))
""")
    env = dict(os.environ, TRACEGRAD_LOGS="graphs,stages,recompiles,breaks",
               PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, path], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    err = r.stderr
    assert "[tracegrad:breaks] tracegrad.compile: graph break at" in err and "item()" in err
    assert "[tracegrad:graphs] tracegrad.compile: traced double:" in err
    assert "[tracegrad:stages] tracegrad.compile: double after fusion:" in err
    assert "[tracegrad:recompiles] tracegrad.compile: recompiling double at" in err
    assert "x: shape (3,) -> (4,)" in err
    quiet = subprocess.run([sys.executable, path], capture_output=True, text=True,
                           env=dict(os.environ, TRACEGRAD_LOGS="", PYTHONPATH=str(ROOT)),
                           timeout=120)
    assert "[tracegrad:" not in quiet.stderr


def test_explain_counts_traces_programs_and_eager_fallbacks_honestly():
    import warnings

    import tracegrad as tg
    from tracegrad.cli import explain_text
    f = tg.compile(lambda x: x * 2 if x.sum().item() > 0 else x)  # .item(): a graph break
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(3):
            f(tg.ones(2))
    text = explain_text([f])
    assert ("1 trace(s), 0 compiled program(s), 1 signature(s) running eagerly (graph break "
            "or side effect); calls: 1 traced, 0 compiled, 2 eager") in text


def test_viz_lists_a_graph_broken_function_with_its_reason_and_line(tmp_path):
    path = _script(tmp_path, BREAKING + """
@tg.compile
def double(x):
    return x * 2

double(tg.ones(3)); double(tg.ones(3)); double(tg.ones(4))
""")
    out = tmp_path / "report.html"
    with pytest.warns(UserWarning, match="graph break"):
        assert cli.main(["viz", path, "-o", str(out), "--no-hlo"]) == 0
    data = json.loads(out.read_text().split('type="application/json">')[1]
                      .split("</script>")[0].replace("<\\/", "</"))
    views = {v["title"]: v for v in data["views"]}
    broken = views["clipped[0] (runs eagerly)"]
    assert broken["stages"] == [] and f"{path}:7: item() needs the value" in broken["eager"]
    assert broken["panels"]["breaks"] == [f"{path}:7: item() needs the value of a traced "
                                          "tensor"]
    double = views["double[1]: forward"]["panels"]
    assert double["recompiles"] == ["x: shape (3,) -> (4,)"]
    assert double["jax"].startswith("def double(x)") and double["hlo"] == ""
    assert double["guards"][0].startswith("x: tensor shape (4,)")
