"""Shared fixtures. In-process tests never load the machine's installed entry
points: they register the first-party plugin modules on a fresh plugin manager
(the way llm's tests do), and `default_registry()` is pointed at that registry."""

from __future__ import annotations

from pathlib import Path

import pytest


import zoo  # noqa: E402
from zoo import plugin_manager  # noqa: E402

import plugins.conditions  # noqa: E402
import plugins.conv  # noqa: E402
import plugins.digits  # noqa: E402
import plugins.likelihoods  # noqa: E402
import plugins.mlp  # noqa: E402
import plugins.priors  # noqa: E402

FIRST_PARTY = [plugins.mlp, plugins.conv, plugins.priors, plugins.likelihoods, plugins.conditions, plugins.digits]
REPO = Path(__file__).resolve().parent.parent


def first_party_registry(*extra) -> zoo.Registry:
    """A registry of the zoo's own plugins (and `extra` test plugins), no entry points."""
    return zoo.fill_registry(zoo.make_plugin_manager(entry_points=False, plugins=[*FIRST_PARTY, *extra]))


@pytest.fixture(scope="session")
def registry() -> zoo.Registry:
    return first_party_registry()


@pytest.fixture(autouse=True)
def _no_installed_entry_points(registry, monkeypatch):
    monkeypatch.setattr(plugin_manager, "_DEFAULT", registry)


@pytest.fixture(scope="session")
def book() -> zoo.RecipeBook:
    return zoo.RecipeBook([REPO / "registry.yaml"])
