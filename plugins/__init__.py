"""First-party plugins of vae-zoo.

Each module registers its components through the public hook
`register_components(register)` and an entry point of group `vae_zoo` in
pyproject.toml, exactly as a third-party package would.
"""
