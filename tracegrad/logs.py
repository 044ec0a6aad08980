"""TRACEGRAD_LOGS=graphs,recompiles,breaks prints what the compiler does, as it happens.

    graphs      each traced graph, when it is traced
    stages      the graph after every pass, when a trace is compiled (verbose)
    recompiles  why a function was traced again (once per call site)
    breaks      where a graph break sent a call back to eager, and why
    all         everything above

``tracegrad explain SCRIPT.py`` reports the same things after the script ends.
"""
from __future__ import annotations

import os
import sys

_KINDS = {"graphs", "stages", "recompiles", "breaks", "all"}


def enabled(kind: str) -> bool:
    wanted = {k.strip() for k in os.environ.get("TRACEGRAD_LOGS", "").split(",") if k.strip()}
    return kind in wanted or "all" in wanted


def log(kind: str, message: str) -> None:
    if enabled(kind):
        print(f"[tracegrad:{kind}] {message}", file=sys.stderr)
