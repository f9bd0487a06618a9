"""Reading IDX files (the format of MNIST, Fashion-MNIST and KMNIST), gzipped or not.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number
of dimensions), one big-endian uint32 per dimension, then the data.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

import zoo

UNSIGNED_BYTE = 0x08


def find(directory: Path, stem: str) -> Path:
    """`stem.gz` or `stem` in `directory` (also the `stem-idx...` spelling with a dot)."""
    for name in (f"{stem}.gz", stem, f"{stem.replace('-idx', '.idx')}.gz", stem.replace("-idx", ".idx")):
        path = Path(directory) / name
        if path.is_file():
            return path
    raise zoo.DataError(f"{directory}: missing {stem}.gz (or {stem}); expected the four IDX files of the dataset there")


def read(path: Path, expected_dims: int) -> np.ndarray:
    """The uint8 array stored in an IDX file; a DataError names the file and what is wrong."""
    try:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rb") as stream:
            raw = stream.read()
    except (OSError, EOFError) as exc:  # a truncated or corrupt gzip stream
        raise zoo.DataError(f"{path}: cannot read ({exc}); the file is truncated or not gzip") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise zoo.DataError(f"{path}: not an IDX file (its header does not start with two zero bytes)")
    type_code, dims = raw[2], raw[3]
    if type_code != UNSIGNED_BYTE or dims != expected_dims:
        raise zoo.DataError(
            f"{path}: IDX header says type 0x{type_code:02x} with {dims} dimensions; "
            f"expected unsigned bytes (0x08) with {expected_dims}"
        )
    header = 4 + 4 * dims
    if len(raw) < header:
        raise zoo.DataError(f"{path}: truncated inside its header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise zoo.DataError(
            f"{path}: holds {len(raw)} bytes but its header {shape} needs {expected}; the file is truncated or damaged"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def write(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzipped if the name ends in .gz); used by tests."""
    array = np.ascontiguousarray(array, np.uint8)
    header = bytes([0, 0, UNSIGNED_BYTE, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as stream:
        stream.write(header + array.tobytes())


def read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W, 1) and labels (N,) from an images file and its labels file."""
    images, labels = read(images_path, 3), read(labels_path, 1)
    if len(images) != len(labels):
        raise zoo.DataError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    return images[..., None], labels
