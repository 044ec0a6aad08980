"""The pipeline's folders import only downward: ir -> passes -> codegen -> runtime.

Every import is read, function-local ones included, so a layer cannot reach up
into a later one, and no two layers import each other.
"""
from __future__ import annotations

import ast
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parent.parent / "tracegrad"
LAYERS = ["ir", "passes", "codegen", "runtime"]


def _imports(path: pathlib.Path):
    """(line, imported module as a dotted name under tracegrad) for each import in path."""
    rel = path.relative_to(PKG.parent).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            yield node.lineno, mod
            for a in node.names:  # ``from . import passes`` imports a module too
                yield node.lineno, f"{mod}.{a.name}"
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" \
                and node.args and isinstance(node.args[0], ast.Constant):
            yield node.lineno, node.args[0].value


def _layer(module: str):
    parts = module.split(".")
    if len(parts) >= 2 and parts[0] == "tracegrad" and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return None


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_only_layers_before_it(layer):
    mine = LAYERS.index(layer)
    upward = []
    for path in sorted((PKG / layer).rglob("*.py")):
        for line, mod in _imports(path):
            other = _layer(mod)
            if other is not None and other > mine:
                upward.append(f"{path.relative_to(PKG.parent)}:{line} imports {mod}")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_the_reader_sees_function_local_and_relative_imports(tmp_path):
    # the checker itself: a function-local relative import of a later layer is found
    probe = PKG / "ir" / "graph.py"
    found = [m for _, m in _imports(probe)]
    assert any(m.startswith("tracegrad.") for m in found)
    assert _layer("tracegrad.runtime.entry") == 3 and _layer("tracegrad.tensor") is None
