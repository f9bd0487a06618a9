"""zoo/ (the core) imports nothing from plugins/ (DESIGN.md's layering)."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def imported_modules(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_core_source_never_imports_plugins():
    offenders = [
        f"{path.relative_to(REPO)}: {module}"
        for path in sorted((REPO / "zoo").rglob("*.py"))
        for module in imported_modules(path)
        if module == "plugins" or module.startswith("plugins.")
    ]
    assert offenders == []


def test_importing_the_core_loads_no_plugin_module():
    code = "import sys, zoo, zoo.train, zoo.cli, zoo.evaluate, zoo.testing; print([m for m in sys.modules if m == 'plugins' or m.startswith('plugins.')])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO / "tests")
    assert out.stdout.strip() == "[]"
