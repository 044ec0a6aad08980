"""The viz report in headless Chromium: the graph is drawn, and stepping through stages
changes it as each pass did. Skips where no Chromium is installed."""
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


def page_status(exe: str, html: Path, fragment: str, profile: Path) -> dict:
    """Load the page (JS runs), dump the DOM, read the viewer's status line."""
    r = subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000",
                        "--dump-dom", f"{html.as_uri()}#{fragment}"],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r'<pre id="status">([^<]*)</pre>', r.stdout)
    assert m, f"the viewer did not run:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    dom_nodes = len(re.findall(r'<g class="node[ "]', r.stdout))
    status = json.loads(m.group(1).replace("&quot;", '"'))
    assert status["drawn"] == dom_nodes
    return status


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    exe = browser()
    cfs = cli.run_script(str(ROOT / "examples" / "train_mlp.py"), ["--steps", "3"])
    comp = cli.compilations(cfs, "train_step")[0]
    stages = comp.parts["forward"]
    tmp = tmp_path_factory.mktemp("viz")
    html = tmp / "report.html"
    html.write_text(render_html([View("train_step", stages, comp.sources)]))
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
