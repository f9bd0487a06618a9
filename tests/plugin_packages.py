"""A plugin package put where `importlib.metadata` finds it, as `pip install` leaves it, without pip:
its modules, and a dist-info folder with the distribution's name, version and entry points read
from its pyproject.toml. A `zoo` subprocess with PYTHONPATH=SITE then loads it as any installed
plugin (tests/test_cli.py pip-installs one for real, in the slow tier)."""

from __future__ import annotations

from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None  # type: ignore[assignment]


def install_on_path(site: Path, pyproject: str, modules: dict[str, str]) -> tuple[str, str]:
    """Write `modules` (relative path -> source) and the distribution's metadata under `site`;
    returns (distribution name, version)."""
    if tomllib is None:
        import pytest

        pytest.skip("reading pyproject.toml needs tomllib (Python 3.11)")
    project = tomllib.loads(pyproject)["project"]
    name, version = project["name"], project["version"]
    for relative, source in modules.items():
        (site / relative).parent.mkdir(parents=True, exist_ok=True)
        (site / relative).write_text(source)
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, points in project.get("entry-points", {}).items():
        lines += [f"[{group}]", *(f"{key} = {value}" for key, value in points.items()), ""]
    (info / "entry_points.txt").write_text("\n".join(lines))
    return name, version
