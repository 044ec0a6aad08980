"""Take docs/viz.png and docs/viz-bands.png: the viz report of examples/see_the_step.py
in headless Chromium.

    python tools/viz_screenshot.py [--script examples/see_the_step.py] [-o docs]

docs/viz.png opens ``model.blocks.1.attn`` and zooms on ``model.blocks.1`` (after the
fusion pass); docs/viz-bands.png is the whole step as the report first opens it. Prints
the report size and how long Chromium took to load, run and capture each.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tracegrad import cli  # noqa: E402  (after the sys.path insert)

SHOTS = [
    ("viz.png", "stage=fusion&open=model.blocks.1.attn&focus=model.blocks.1&zoom=0.9"),
    ("viz-bands.png", "stage=fusion"),
]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--script", default=str(ROOT / "examples" / "see_the_step.py"))
    p.add_argument("-o", "--output", default=str(ROOT / "docs"))
    p.add_argument("--size", default="1600,1000")
    ns = p.parse_args()
    exe = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                if shutil.which(b)), None)
    if exe is None:
        print("no Chromium found", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "report.html"
        with contextlib.redirect_stdout(io.StringIO()):
            if cli.main(["viz", ns.script, "-o", str(html)]) != 0:
                return 1
        for name, fragment in SHOTS:
            out = Path(ns.output) / name
            t0 = time.perf_counter()
            subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                            "--disable-background-networking", "--disable-component-update",
                            "--disable-sync", f"--user-data-dir={tmp}/profile",
                            "--hide-scrollbars", "--virtual-time-budget=10000",
                            f"--window-size={ns.size}", f"--screenshot={out}",
                            f"{html.as_uri()}#{fragment}"], check=True, capture_output=True,
                           timeout=180)
            print(f"{out}: report {html.stat().st_size / 1e3:.0f} kB, Chromium "
                  f"{time.perf_counter() - t0:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
