"""Datasets: the embedded digits, dSprites-style shapes, the MNIST family (IDX files)."""
