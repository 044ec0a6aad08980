"""Take docs/viz.png: the viz report of examples/train_mlp.py in headless Chromium.

    python tools/viz_screenshot.py [--stage fusion] [-o docs/viz.png]

Prints the report size and how long Chromium took to load, run and capture it.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tracegrad import cli  # noqa: E402  (after the sys.path insert)
from tracegrad.viz import View, render_html  # noqa: E402  (after the sys.path insert)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--script", default=str(ROOT / "examples" / "train_mlp.py"))
    p.add_argument("--stage", default="fusion")
    p.add_argument("-o", "--output", default=str(ROOT / "docs" / "viz.png"))
    p.add_argument("--size", default="1400,900")
    ns = p.parse_args()
    exe = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                if shutil.which(b)), None)
    if exe is None:
        print("no Chromium found", file=sys.stderr)
        return 1
    cfs = cli.run_script(ns.script, ["--steps", "3"])
    views = [View(f"{c.label} {part}", stages, c.sources, f"{c.cf.name}, compilation {c.index}")
             for c in cli.compilations(cfs) for part, stages in c.parts.items()]
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "report.html"
        html.write_text(render_html(views))
        t0 = time.perf_counter()
        subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", f"--user-data-dir={tmp}/profile", "--hide-scrollbars",
                        f"--window-size={ns.size}", f"--screenshot={ns.output}",
                        f"{html.as_uri()}#stage={ns.stage}"], check=True, capture_output=True,
                       timeout=120)
        print(f"{ns.output}: report {html.stat().st_size / 1e3:.0f} kB, Chromium "
              f"{time.perf_counter() - t0:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
