"""docs/plugins.md against the code: its contract section is generated from the Protocols of
zoo/core/interfaces.py, it names every member of every Protocol, and each worked example is a plugin
that passes the conformance suite."""

import re
import types
import typing

import pytest

from tests.conftest import REPO, first_party_registry
from zoo.core import interfaces
from zoo.core.contract import DOCUMENTED, contract_markdown, protocol_members
from zoo.core.registry import KINDS
from zoo.testing import check_component

DOC = (REPO / "docs" / "plugins.md").read_text()
BEGIN, END = "<!-- contract: begin -->\n", "<!-- contract: end -->"
EXAMPLES = re.findall(r"<!-- example: (\w+) (\w+) -->\n```python\n(.*?)```", DOC, flags=re.S)


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
