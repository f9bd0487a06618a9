"""The core: the components' contract and registry, the plugin hooks, recipes, model
assembly, objectives and datasets. It imports nothing of the other subpackages."""
