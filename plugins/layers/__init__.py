"""Layers shared by the first-party networks; they register no component."""
