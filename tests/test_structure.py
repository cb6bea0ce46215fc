"""The package's shape as a specification: absolute imports that resolve from the installed tree, every module
importable on its own, and functions short enough to read at once."""

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import aligngemini_sdk

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_FOLDERS = ("sdk", "runtimes", "export")


def _sources(folders=PACKAGE_FOLDERS):
    return [p for d in folders for p in sorted((ROOT / d).rglob("*.py"))]


def test_imports_across_the_package_are_absolute():
    relative = [f"{p.relative_to(ROOT)}:{n.lineno}" for p in _sources() + _sources(("training",))
                for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.ImportFrom) and n.level]
    assert relative == []


@pytest.mark.parametrize("name", sorted(m.name for m in pkgutil.walk_packages(aligngemini_sdk.__path__,
                                                                              "aligngemini_sdk.")
                                        if not m.name.endswith("__main__")))
def test_every_module_imports_from_the_installed_tree(name):
    importlib.import_module(name)  # optional backends (llama.cpp, TensorRT) load when used, not when imported


def test_no_function_is_longer_than_60_lines():
    """The package, the recipes and the benchmarks alike (a model card's template counts as code)."""
    long = [f"{p.relative_to(ROOT)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for p in _sources((*PACKAGE_FOLDERS, "training", "benchmarks")) for n in ast.walk(ast.parse(p.read_text()))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60]
    assert long == []
