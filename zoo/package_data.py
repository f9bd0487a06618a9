"""The data files shipped inside the zoo package: registry.yaml (the named variants),
suites/*.yaml (the benchmark suites) and web/ (the page of `zoo serve` and `zoo export-web`).

They are found through importlib.resources rather than by a path relative to the checkout,
so an installed wheel reads its own copies whatever the working directory.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from zoo.errors import ZooError


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
