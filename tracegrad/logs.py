"""TRACEGRAD_LOGS=graphs,recompiles,breaks prints what the compiler does, as it happens."""
from __future__ import annotations

import os
import sys

_KINDS = {"graphs", "recompiles", "breaks", "all"}


def enabled(kind: str) -> bool:
    wanted = {k.strip() for k in os.environ.get("TRACEGRAD_LOGS", "").split(",") if k.strip()}
    return kind in wanted or "all" in wanted


def log(kind: str, message: str) -> None:
    if enabled(kind):
        print(f"[tracegrad:{kind}] {message}", file=sys.stderr)
