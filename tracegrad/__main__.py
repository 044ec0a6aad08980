"""``python -m tracegrad``: the ``tracegrad`` command (tracegrad/cli.py)."""
import sys

from . import _checkout  # noqa: F401  (a clear error from a checkout's parent)
from .cli import main

sys.exit(main())
