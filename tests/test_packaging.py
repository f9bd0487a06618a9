"""`pip install .` away from the checkout: the wheel holds the zoo, its first-party plugins (the
checkout's plugins/, installed as vae_zoo_plugins) and its package data (the root's registry.yaml,
copied in as zoo/registry.yaml; zoo/suites/, zoo/web/), found through importlib.resources, and
the `zoo` command works from an empty directory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "registry.yaml", "zoo", "plugins")


def build_wheel(tmp_path: Path) -> tuple[Path, str]:
    """The wheel of a copy of the sources (the build writes build/ and *.egg-info beside them,
    and stale files there must not reach the wheel), and the build's output."""
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / name, source / name)
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-v",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    return next((tmp_path / "dist").glob("vae_zoo-*.whl")), build.stdout + build.stderr


def fresh_venv(path: Path) -> Path:
    """A new virtual environment whose dependencies come from this one: a .pth file adds this
    interpreter's site-packages after the venv's own (a venv's --system-site-packages would
    reach the base interpreter's, not this venv's). Its .pth files are not run, so an editable
    install of the checkout there stays out."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    own = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    (Path(own) / "dependencies_of_the_test_environment.pth").write_text("\n".join(ours) + "\n")
    return python


@pytest.mark.slow  # builds the wheel and installs it in a fresh venv
def test_the_installed_wheel_works_from_an_empty_directory(tmp_path):
    wheel, build_output = build_wheel(tmp_path)
    warnings = [line for line in build_output.splitlines() if re.search(r"\w*Warning\b", line)]
    assert not warnings, "the build warned:\n" + "\n".join(warnings)
    names = set(zipfile.ZipFile(wheel).namelist())
    for data in (
        "zoo/registry.yaml",
        "zoo/suites/quick.yaml",
        "zoo/suites/quadrants.yaml",
        "zoo/web/index.html",
        "zoo/web/app.js",
        "zoo/web/decoder.js",
        "zoo/web/style.css",
        "vae_zoo_plugins/base/mlp.py",
        "vae_zoo_plugins/families/vq.py",
        "vae_zoo_plugins/layers/dense.py",
    ):
        assert data in names, f"{data} is not in the wheel"
    assert not any(name.split("/")[0] in ("plugins", "registry.yaml") for name in names)  # no top-level collisions

    python = fresh_venv(tmp_path / "venv")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VAE_ZOO_REGISTRY")}
    zoo_command = tmp_path / "venv" / "bin" / "zoo"

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(args, cwd=empty, env=env, capture_output=True, text=True, timeout=300)
        assert not check or done.returncode == 0, done.stdout + done.stderr
        return done

    where = run(
        str(python),
        "-c",
        "import zoo, vae_zoo_plugins, zoo.evaluation.bench, zoo.web.serve; print(zoo.__file__); "
        "print(vae_zoo_plugins.__file__); "
        "print(zoo.evaluation.bench.SUITES_DIR); print(len(zoo.web.serve.web_asset('index.html')))",
    ).stdout.split()
    site = str(tmp_path / "venv")
    assert all(path.startswith(site) for path in where[:3]), where  # the installed copy, not the checkout
    assert int(where[3]) > 0
    listing = run(str(zoo_command), "list").stdout
    assert re.search(r"^variant\s+vae_mlp\s+VAE, MLP", listing, flags=re.M)
    assert re.search(r"^encoder\s+mlp\s", listing, flags=re.M) and re.search(
        r"^objective\s+gsnn\s", listing, flags=re.M
    )
    shown = run(str(zoo_command), "show", "vae_mlp").stdout
    assert "variant: vae_mlp" in shown and "latent_dim: 16" in shown and "name: bernoulli" in shown
    help_text = run(str(zoo_command), "bench", "quick", "--help").stdout
    assert "usage: zoo bench" in help_text and "--out" in help_text
    misspelt = run(str(zoo_command), "bench", "quik", check=False)  # the suites are found in the package
    assert misspelt.returncode == 2 and "unknown suite 'quik' (did you mean 'quick'?)" in misspelt.stderr
    assert os.listdir(empty) == []


def make_dry_run(target: str, venv: Path) -> list[str]:
    """The commands `make TARGET` would run on a machine with no venv yet (make -n runs none)."""
    done = subprocess.run(
        ["make", "-n", target, f"VENV={venv}"], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.splitlines()


def test_make_run_installs_only_what_the_main_job_needs(tmp_path):
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    installs = [
        line
        for line in make_dry_run("run", tmp_path / "venv")
        if " pip install " in line and "--upgrade pip" not in line
    ]
    assert installs == [f"{tmp_path / 'venv'}/bin/python -m pip install --quiet -c constraints.txt -e ."]
    test_installs = [
        line
        for line in make_dry_run("test", tmp_path / "venv")
        if " pip install " in line and "--upgrade pip" not in line
    ]
    assert test_installs[-1].endswith('-e ".[test,perf]"')  # the extras, on top of the main job's install
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    main_needs = {re.split(r"[<>=!~\[ ]", requirement)[0].lower() for requirement in project["dependencies"]}
    assert not main_needs & {"torch", "selenium", "pytest", "hypothesis", "ruff", "mypy"}
    assert any(r.startswith("torch") for r in project["optional-dependencies"]["perf"])
    assert any(r.startswith("selenium") for r in project["optional-dependencies"]["test"])


def test_make_run_is_one_command_that_prints_the_table_once(tmp_path):
    commands = [line for line in make_dry_run("run", tmp_path / "venv") if "/bin/zoo " in line]
    assert commands == [
        f"{tmp_path / 'venv'}/bin/zoo bench quick --out runs/bench/quick --report runs/bench/quick/report"
    ]


def test_the_package_list_names_every_package_folder():
    """pyproject.toml lists the packages by hand (plugins/ is installed under another name, which
    setuptools' find cannot give): a new subpackage must be added there, or the wheel lacks it."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    installed_as = {folder: package for package, folder in setuptools["package-dir"].items()}
    folders = [REPO / "zoo" / "suites"] + [
        init.parent for top in ("zoo", "plugins") for init in (REPO / top).rglob("__init__.py")
    ]
    expected = set()
    for folder in folders:
        top, *rest = folder.relative_to(REPO).parts
        expected.add(".".join([installed_as.get(top, top), *rest]))
    assert sorted(setuptools["packages"]) == sorted(expected)
