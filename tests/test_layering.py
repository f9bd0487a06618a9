"""The package's layering (DESIGN.md): zoo/ (the core) imports nothing of the first-party
plugins, its subpackages import only downward in LAYERS, and no modules import each other
in a circle."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLUGINS = "vae_zoo_plugins"  # the checkout's plugins/ folder, as installed

# The zoo's layers, lowest first: a module may import its own layer and the layers below,
# never one above. Each entry names modules and packages (a package stands for all of it).
LAYERS = (
    (
        "foundation",
        ("zoo.errors", "zoo.config", "zoo.files", "zoo.progress", "zoo.version", "zoo.package_data", "zoo.images"),
    ),
    ("core", ("zoo.core",)),
    ("training", ("zoo.training",)),
    ("evaluation", ("zoo.evaluation",)),
    ("web", ("zoo.web",)),
    ("interface", ("zoo.cli", "zoo.testing", "zoo")),
)


def imported_modules(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            # `from zoo.training import runs` imports the module zoo.training.runs
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def zoo_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted((REPO / "zoo").rglob("*.py"))}


def import_graph() -> dict[str, set[str]]:
    """Every zoo module -> the zoo modules it imports (at its top or inside a function alike)."""
    modules = zoo_modules()
    return {
        name: {imported for imported in imported_modules(path) if imported in modules and imported != name}
        for name, path in modules.items()
    }


def layer_of(module: str) -> int:
    """The index in LAYERS of a module: the layer naming the longest prefix of it."""
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    assert best is not None, f"{module} is in no layer of LAYERS: add it to one"
    return best[0]


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One circle of imports (its modules in order, the first repeated at the end), or []."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> list[str]:
        state[module] = "open"
        path.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                return path[path.index(imported) :] + [imported]
            if imported not in state:
                cycle = visit(imported)
                if cycle:
                    return cycle
        state[module] = "done"
        path.pop()
        return []

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return []


def test_core_source_never_imports_plugins():
    offenders = [
        f"{path.relative_to(REPO)}: {module}"
        for path in sorted((REPO / "zoo").rglob("*.py"))
        for module in imported_modules(path)
        if module.split(".")[0] in ("plugins", PLUGINS)
    ]
    assert offenders == []


def test_every_zoo_module_imports_only_its_own_layer_or_below():
    graph = import_graph()
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {imported} ({LAYERS[layer_of(imported)][0]})"
        for module, imports in sorted(graph.items())
        for imported in sorted(imports)
        if layer_of(imported) > layer_of(module)
    ]
    assert upward == [], "imports that run up the layers:\n" + "\n".join(upward)


def test_no_modules_import_each_other_in_a_circle():
    cycle = find_cycle(import_graph())
    assert cycle == [], "a circle of imports: " + " -> ".join(cycle)


def test_the_layer_check_names_an_upward_import_and_a_circle():
    assert layer_of("zoo.core.model") < layer_of("zoo.training.loop") < layer_of("zoo.cli.main")
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_importing_the_core_loads_no_plugin_module():
    code = (
        "import sys, zoo, zoo.training.loop, zoo.training.experiment, zoo.cli.api, zoo.evaluation.trained_run, "
        "zoo.cli.main, zoo.evaluation.evaluate, zoo.testing; "
        f"print([m for m in sys.modules if m.split('.')[0] in ('plugins', {PLUGINS!r})])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO / "tests")
    assert out.stdout.strip() == "[]"


def test_import_and_help_load_no_heavy_module():
    # `import zoo` and `zoo --help` stay fast: JAX, flax, distrax and numpy load on first use of a name.
    code = (
        "import sys, zoo, zoo.cli.main; zoo.cli.main.build_parser().format_help(); "
        "print(sorted(m for m in ('jax', 'flax', 'distrax', 'optax', 'numpy', 'pluggy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO / "tests")
    assert out.stdout.strip() == "[]"


def test_every_public_name_resolves_lazily():
    import pytest

    import zoo
    from zoo.core.registry import Registry

    assert all(getattr(zoo, name) is not None for name in zoo.__all__)
    assert zoo.Registry is Registry and zoo.recipes.validate and zoo.core.recipes.validate  # names and modules
    assert set(zoo.__all__) == set(zoo._PUBLIC) and set(zoo.__all__) <= set(dir(zoo))
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        zoo.no_such_name  # noqa: B018


def test_loading_the_plugins_starts_no_jax_backend():
    # `zoo train --distributed` loads every plugin (the registry) before jax.distributed.initialize,
    # which must come before the XLA backend starts: no plugin may compute with JAX at import
    # (a module-level jnp array did, and the two-host tests of test_parallel failed).
    code = (
        "from zoo.core.plugin_manager import default_registry; from jax._src import xla_bridge; "
        "registry = default_registry(); print(len(registry) > 0, xla_bridge.backends_are_initialized())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO / "tests")
    assert out.stdout.strip() == "True False", out.stdout + out.stderr[-2000:]
