"""docs/plugins.md against the code: its contract section is generated from the Protocols of
zoo/core/interfaces.py, it names every member of every Protocol, each worked example is a plugin
that passes the conformance suite, its complete plugin package installs and registers its
component, and its conformance snippet runs as pasted."""

import os
import re
import shlex
import subprocess
import sys
import types
import typing

import pytest

from tests.conftest import REPO, first_party_registry
from tests.plugin_packages import install_on_path
from zoo.core import plugin_manager
from zoo.core import interfaces
from zoo.core.contract import DOCUMENTED, contract_markdown, protocol_members
from zoo.core.registry import KINDS
from zoo.testing import check_component

DOC = (REPO / "docs" / "plugins.md").read_text()
BEGIN, END = "<!-- contract: begin -->\n", "<!-- contract: end -->"
EXAMPLES = re.findall(r"<!-- example: (\w+) (\w+) -->\n```python\n(.*?)```", DOC, flags=re.S)
# The complete plugin package: its files by name, as the page shows them.
PACKAGE = dict(re.findall(r"<!-- package: (\S+) -->\n```\w+\n(.*?)```", DOC, flags=re.S))
SNIPPET = re.search(r"<!-- conformance snippet -->\n```python\n(.*?)```", DOC, flags=re.S).group(1)


def test_contract_section_is_generated_from_the_protocols():
    section = DOC[DOC.index(BEGIN) + len(BEGIN) : DOC.index(END)]
    assert section == contract_markdown(), (
        "docs/plugins.md is stale: paste the output of `python -m zoo.core.contract` between its contract markers"
    )


def test_doc_lists_every_member_of_every_protocol():
    protocols = [
        v
        for v in vars(interfaces).values()
        if isinstance(v, type) and getattr(v, "_is_protocol", False) and v is not typing.Protocol
    ]
    assert {p.__name__ for p in protocols} <= {name for _, names in DOCUMENTED for name in names}
    assert sorted(kind for kind, _ in DOCUMENTED) == sorted(KINDS)
    for protocol in protocols:
        assert f"`zoo.core.interfaces.{protocol.__name__}`" in DOC
        for member in protocol_members(protocol):
            assert re.search(rf"^- `{re.escape(member)}[`(]", DOC, flags=re.M), (
                f"{protocol.__name__}.{member} is not in docs/plugins.md"
            )


def test_every_kind_has_a_worked_example():
    assert sorted(kind for kind, _, _ in EXAMPLES) == sorted(KINDS)


@pytest.mark.slow  # the full conformance of each worked example
@pytest.mark.parametrize(("kind", "name", "code"), EXAMPLES, ids=[f"{k}:{n}" for k, n, _ in EXAMPLES])
def test_worked_example_passes_the_conformance_suite(kind, name, code):
    module = types.ModuleType(f"docs_example_{name}")
    exec(compile(code, f"docs/plugins.md:{kind}:{name}", "exec"), module.__dict__)
    registry = first_party_registry(module)
    assert registry.get(kind, name).plugin == module.__name__
    assert check_component(registry, kind, name)


def zoo_on(site, *args):
    """`zoo ARGS` in a subprocess that finds the packages under `site` as installed ones."""
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "zoo.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": path},
        timeout=300,
    )


def documented_command(prefix):
    """The command line of the page that begins with `prefix`, as words."""
    lines = [line for line in DOC.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, f"docs/plugins.md shows {len(lines)} commands beginning {prefix!r}"
    return shlex.split(lines[0].split("  #")[0])


def test_the_plugin_package_is_complete():
    """Its tree, pyproject.toml (with [build-system] and the zoo's entry point group) and module."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11

    tree = re.search(r"```\nzoo-student-t/\n(.*?)```", DOC, flags=re.S).group(1)
    assert sorted(re.findall(r"[\w.-]+\.(?:toml|py)", tree)) == sorted(PACKAGE)
    pyproject = tomllib.loads(PACKAGE["pyproject.toml"])
    assert pyproject["build-system"]["build-backend"] == "setuptools.build_meta"
    group = plugin_manager.hookspecs.ENTRY_POINT_GROUP
    assert pyproject["project"]["entry-points"][group] == {"student_t": "zoo_student_t"}
    assert documented_command("pip install") == ["pip", "install", "-e", "./zoo-student-t"]


def test_the_plugin_package_installed_registers_its_component_and_a_set_tries_it(tmp_path):
    name, version = install_on_path(
        tmp_path, PACKAGE["pyproject.toml"], {"zoo_student_t.py": PACKAGE["zoo_student_t.py"]}
    )
    listing = zoo_on(tmp_path, "plugins")
    assert listing.returncode == 0, listing.stderr
    plugins = listing.stdout.splitlines()
    assert plugins[plugins.index(f"student_t  ({name} {version})") + 1] == "    likelihood:student_t"
    shown = zoo_on(tmp_path, *documented_command("zoo show vae_mlp --set 'likelihood={name: student_t")[1:])
    assert shown.returncode == 0, shown.stderr
    assert "likelihood: {name: student_t, df: 5.0}" in shown.stdout.splitlines()
    assert "pixels: grayscale" in shown.stdout


@pytest.mark.slow  # the snippet runs the full conformance suite on the encoder it names
def test_the_conformance_snippet_runs_as_pasted(monkeypatch):
    """In a namespace of its own (nothing imported for it), with the worked example it names installed."""
    kind, name = re.search(r'check_component\(zoo.default_registry\(\), "(\w+)", "(\w+)"', SNIPPET).groups()
    code = next(code for k, n, code in EXAMPLES if (k, n) == (kind, name))
    module = types.ModuleType(f"docs_example_{name}")
    exec(compile(code, f"docs/plugins.md:{kind}:{name}", "exec"), module.__dict__)
    monkeypatch.setattr(plugin_manager, "_DEFAULT", first_party_registry(module))
    exec(compile(SNIPPET, "docs/plugins.md:conformance snippet", "exec"), {})


@pytest.mark.slow  # the full conformance suite on the package's likelihood
def test_the_plugin_packages_component_passes_the_conformance_suite():
    module = types.ModuleType("zoo_student_t")
    exec(compile(PACKAGE["zoo_student_t.py"], "docs/plugins.md:zoo_student_t.py", "exec"), module.__dict__)
    assert check_component(first_party_registry(module), "likelihood", "student_t")


@pytest.mark.slow  # pip builds and installs the package, then a short training with it
def test_the_plugin_package_pip_installs_and_trains(tmp_path):
    source = tmp_path / "zoo-student-t"
    source.mkdir()
    for file, text in PACKAGE.items():
        (source / file).write_text(text)
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
    subprocess.run([*pip, "--target", str(site), str(source)], check=True, capture_output=True, timeout=300)
    listing = zoo_on(site, "list", "likelihood").stdout
    assert "student_t            Student's t likelihood (decoder outputs location and scale)" in listing
    train = documented_command("zoo train vae_mlp --set 'likelihood={name: student_t}'")[1:]
    train[train.index("--workdir") + 1] = str(tmp_path / "run")
    trained = zoo_on(site, *train, "--set", "train.steps=20", "--set", "train.log_every=10", "--quiet")
    assert trained.returncode == 0, trained.stderr


def test_the_page_says_which_data_each_likelihood_suits(registry):
    """Every registered likelihood is in the table of the data it suits, and the page says TFP's are allowed."""
    section = DOC[DOC.index("## Which data a likelihood suits") :]
    section = section[: section.index("\n## ")]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    named = {name for row in rows for name in re.findall(r"`(\w+)`", row.split("|")[1])}
    assert set(registry.names("likelihood")) <= named, set(registry.names("likelihood")) - named
    assert "distrax.as_distribution" in DOC and "tensorflow_probability.substrates.jax" in DOC
