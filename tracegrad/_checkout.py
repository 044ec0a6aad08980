"""A clear error when ``tracegrad`` is a folder holding a checkout, not the package.

NOTE: [Checkout folder]. Run from a folder that holds the repository checked out as
``tracegrad/`` (so the package is ``tracegrad/tracegrad``), Python takes the checkout
folder, which has no ``__init__.py``, for a namespace package ``tracegrad``; with an
editable install the submodules still load from the real package, but its
``__init__`` never runs, so the first import that needs it fails deep inside with a
circular-import error. The entry points (``python -m tracegrad``, ``python -m
tracegrad.demo``) import this module first and say what happened instead.
"""
from __future__ import annotations

import os
import sys


def check() -> None:
    pkg = sys.modules.get("tracegrad")
    if pkg is None or getattr(pkg, "__file__", None) is not None:
        return
    shadow = next(iter(getattr(pkg, "__path__", None) or ()), "tracegrad")
    real = os.path.dirname(os.path.abspath(__file__))
    raise ImportError(
        f"'import tracegrad' found the folder {shadow} (a checkout of the repository, with "
        f"no __init__.py) instead of the package {real}. Run from inside the checkout "
        f"(cd {shadow}) or from any other folder, or rename the checkout folder.")


check()
