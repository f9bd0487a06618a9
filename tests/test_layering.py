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
    code = "import sys, zoo, zoo.training, zoo.experiment, zoo.api, zoo.trained_run, zoo.cli, zoo.evaluate, zoo.testing; print([m for m in sys.modules if m == 'plugins' or m.startswith('plugins.')])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO / "tests")
    assert out.stdout.strip() == "[]"


def test_import_and_help_load_no_heavy_module():
    # `import zoo` and `zoo --help` stay fast: JAX, flax, distrax and numpy load on first use of a name.
    code = (
        "import sys, zoo, zoo.cli; zoo.cli.build_parser().format_help(); "
        "print(sorted(m for m in ('jax', 'flax', 'distrax', 'optax', 'numpy', 'pluggy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO / "tests")
    assert out.stdout.strip() == "[]"


def test_every_public_name_resolves_lazily():
    import pytest

    import zoo
    from zoo.registry import Registry

    assert all(getattr(zoo, name) is not None for name in zoo.__all__)
    assert zoo.Registry is Registry and zoo.recipes.validate  # names and submodules
    assert set(zoo.__all__) == set(zoo._PUBLIC) and set(zoo.__all__) <= set(dir(zoo))
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        zoo.no_such_name  # noqa: B018
