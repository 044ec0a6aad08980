"""The viz report in headless Chromium: the graph is drawn, and stepping through stages
changes it as each pass did; phases are bands, a search finds a parameter, a module group
expands, the side panes hold guards and the generated code, and a function that runs
eagerly shows why. Skips where no Chromium is installed."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tracegrad import cli
from tracegrad.ir.inspect import node_count, stage_diff
from tracegrad.viz import View, render_html

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium installed (apt-get install chromium)")


def page_dom(exe: str, html: Path, fragment: str, profile: Path) -> tuple[dict, str]:
    """Load the page (JS runs), dump the DOM; (the viewer's status line, the DOM)."""
    r = subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000",
                        "--dump-dom", f"{html.as_uri()}#{fragment}"],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r'<pre id="status">([^<]*)</pre>', r.stdout)
    assert m, f"the viewer did not run:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    dom_nodes = len(re.findall(r'<g class="node[ "]', r.stdout))
    status = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert status["drawn"] == dom_nodes
    return status, r.stdout


def page_status(exe: str, html: Path, fragment: str, profile: Path) -> dict:
    return page_dom(exe, html, fragment, profile)[0]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    exe = browser()
    cfs = cli.run_script(str(ROOT / "examples" / "train_mlp.py"), ["--steps", "3"])
    comp = cli.compilations(cfs, "train_step")[0]
    stages = comp.parts["forward"]
    tmp = tmp_path_factory.mktemp("viz")
    html = tmp / "report.html"
    eager = View("broken (runs eagerly)", [], eager="graph break at model.py:7: item() needs "
                 "the value of a traced tensor")
    html.write_text(render_html([View("train_step", stages, comp.sources,
                                      panels=cli.panels(comp, "forward", hlo=False)), eager]))
    return exe, html, stages, tmp / "profile"


def test_every_node_of_the_traced_graph_is_drawn(report):
    exe, html, stages, profile = report
    status = page_status(exe, html, "stage=traced", profile)
    assert status["stage"] == "traced"
    assert status["drawn"] == status["count"] == node_count(stages[0][1])


def test_next_stage_changes_the_drawing_as_the_pass_did(report):
    exe, html, stages, profile = report
    names = [n for n, _, _ in stages]
    i = names.index("fusion")
    before, after = stages[i - 1][1], stages[i][1]
    status = page_status(exe, html, f"stage={names[i - 1]}&click=next", profile)
    assert status["stage"] == "fusion"
    assert status["drawn"] == node_count(after) < node_count(before)
    diff = stage_diff(before, after)
    assert status["marked_added"] == status["added"] == len(diff["added"]) == after.count("fusion")
    assert status["fused"] == len(diff["fused"]) > 0


def test_phases_are_labelled_bands(report):
    exe, html, stages, profile = report
    status, dom = page_dom(exe, html, "stage=traced", profile)
    assert status["bands"] == ["inputs", "forward", "backward", "optimizer"]
    for phase in ("forward", "backward", "optimizer"):
        assert re.search(rf'<g class="frame band" data-key="[^"]*" data-phase="{phase}">', dom)
        assert f"{phase}  \u00b7  {status['phases'][phase]} equations" in dom
    assert sum(status["phases"].values()) == len(stages[0][1].eqns)


def test_search_finds_a_parameter_and_reveals_it(report):
    exe, html, stages, profile = report
    status = page_status(exe, html, "stage=fusion&click=collapse&search=model.0.weight", profile)
    assert status["found"] >= 1
    assert status["selected"] == "model.0.weight" and status["selected_drawn"]


def test_a_module_group_expands(report):
    exe, html, stages, profile = report
    closed, dom = page_dom(exe, html, "stage=traced&click=collapse", profile)
    assert closed["expanded"] == 4  # the bands only
    # a Sequential's layers are module groups (an index stays with its container's name)
    assert '<g class="node container group-module" data-key="Gforward/model.0#0">' in dom
    opened, dom = page_dom(exe, html, "stage=traced&click=collapse&open=model.0", profile)
    assert opened["drawn"] > closed["drawn"]
    assert re.search(r'<g class="frame module" data-key="Gforward/model.0#0"', dom)
    assert "model.0  (" in dom


def test_side_panes_hold_guards_recompiles_and_the_jax_source(report):
    exe, html, stages, profile = report
    _, dom = page_dom(exe, html, "stage=traced", profile)
    assert 'id="panel-guards"' in dom and "model.0.weight: shape (32, 8)" in dom
    assert "new tensor(s) kept in Python state" in dom
    assert '<pre id="jax" class="code">def train_step(' in dom


def test_a_function_that_runs_eagerly_shows_its_reason_and_line(report):
    exe, html, stages, profile = report
    status, dom = page_dom(exe, html, "view=1", profile)
    assert status["eager"].startswith("graph break at model.py:7: item()")
    assert "runs eagerly" in dom and "model.py:7" in dom
