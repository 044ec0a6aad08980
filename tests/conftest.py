"""Shared fixtures for the op tests."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # op_table is importable as a module
