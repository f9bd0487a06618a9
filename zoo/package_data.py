"""The data files shipped inside the zoo package: registry.yaml (the named variants),
suites/*.yaml (the benchmark suites) and web/ (the page of `zoo serve` and `zoo export-web`).

They are found through importlib.resources rather than by a path relative to the checkout,
so an installed wheel reads its own copies whatever the working directory.

registry.yaml is kept at the root of the checkout, where a reader of the repository looks
for it; the build (setup.py) copies it into the wheel as zoo/registry.yaml. An installed
wheel reads that copy, a checkout (or an editable install of one) the root's file.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from zoo.errors import ZooError

REGISTRY_FILE = "registry.yaml"


def package_path(*parts: str) -> Path:
    """A file or folder of the zoo package as a path on disk.

    Recipe files and suites are read as paths (every error names the file), which a
    package installed as files gives; a package imported from a zip archive does not.
    """
    resource = resources.files("zoo")
    for part in parts:
        resource = resource.joinpath(part)
    if not isinstance(resource, Path):
        raise ZooError(
            f"the zoo's data file {'/'.join(parts)} is not on disk ({resource!r}); install the zoo unzipped (pip install)"
        )
    return resource


def registry_path() -> Path:
    """The shipped registry.yaml: the wheel's copy inside the package, else the checkout's at its root."""
    shipped = package_path(REGISTRY_FILE)
    if shipped.is_file():
        return shipped
    return package_path().parent / REGISTRY_FILE
