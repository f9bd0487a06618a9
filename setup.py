"""The one build step pyproject.toml cannot declare: registry.yaml lives at the root of the
checkout (the project's specified top level), and the wheel ships it inside the zoo package
as zoo/registry.yaml, where zoo.package_data.registry_path finds it once installed."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

REGISTRY = "registry.yaml"


class BuildPyWithRegistry(build_py):
    """build_py, then the root's registry.yaml copied into the built zoo package."""

    def run(self) -> None:
        super().run()
        # An editable install reads the checkout's own file; only a built copy needs one.
        if not self.editable_mode:
            self.copy_file(REGISTRY, str(Path(self.build_lib) / "zoo" / REGISTRY))


setup(cmdclass={"build_py": BuildPyWithRegistry})
