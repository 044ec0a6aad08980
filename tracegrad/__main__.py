"""``python -m tracegrad``: the ``tracegrad`` command (tracegrad/cli.py)."""
import sys

from .cli import main

sys.exit(main())
