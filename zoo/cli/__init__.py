"""The `zoo` command and the Python API (`zoo.train`, `zoo.load`, `zoo.build`, `zoo.compare`):
the top layer, over everything else."""
