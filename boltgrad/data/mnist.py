"""MNIST and Fashion-MNIST from their standard IDX files (plain or gzipped).

    >>> from boltgrad.data.mnist import load_fashion_mnist
    >>> images, labels = load_fashion_mnist(split="test")  # doctest: +SKIP
    >>> images.shape, images.dtype, labels.dtype  # doctest: +SKIP
    ((10000, 28, 28), boltgrad.uint8, boltgrad.int64)

Where the files are looked for: the folder ``root`` when one is given (only there); else, for Fashion-MNIST,
Debian's ``/usr/share/datasets/fashion-mnist/`` (``apt-get install dataset-fashion-mnist``). The files are
``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
``t10k-labels-idx1-ubyte``, each optionally ending in ``.gz``.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions), each dimension as
a big-endian uint32, then the data. Images are magic 2051 (unsigned bytes, 3 dimensions), labels 2049 (unsigned
bytes, 1 dimension). Uncompressed files are mapped with the DISK device and read when first used.
"""

from __future__ import annotations

import gzip
import os
import struct

from ..device.disk import map_file
from ..helpers import prod
from ..ir import dtypes
from ..nn.state import disk_tensor
from ..tensor import Tensor

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
SPLIT_PREFIX = {"train": "train", "test": "t10k"}

_HOW_TO_GET = {
    "fashion-mnist": (
        "install Debian's package (apt-get install dataset-fashion-mnist, which puts the files in "
        f"{DEBIAN_FASHION_MNIST}), or download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz from the Fashion-MNIST project "
        "(github.com/zalandoresearch/fashion-mnist) into a folder and pass it as root="
    ),
    "mnist": (
        "download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
        "t10k-labels-idx1-ubyte.gz (the MNIST database's IDX files) into a folder and pass it as root="
    ),
}


def read_idx(path: str, magic: int, device: str = "CPU") -> Tensor:
    """An IDX file of unsigned bytes as a uint8 tensor of its dimensions, after checking its magic and size."""
    if path.endswith(".gz"):
        try:
            with gzip.open(path, "rb") as f:
                raw = f.read()
        except (OSError, EOFError) as e:
            raise ValueError(f"IDX file {path}: cannot decompress it ({e}); the download may be truncated") from None
        shape, start = _parse_header(path, raw[:4], raw, magic)
        _check_size(path, shape, start, len(raw))
        return Tensor(raw[start:], dtype=dtypes.uint8, device=device).reshape(shape)
    with open(path, "rb") as f:
        head = f.read(4 + 4 * 4)
        size = os.fstat(f.fileno()).st_size
    shape, start = _parse_header(path, head[:4], head, magic)
    _check_size(path, shape, start, size)
    return disk_tensor(map_file(path), start, shape, dtypes.uint8, device)


def _parse_header(path: str, magic_bytes: bytes, head: bytes, magic: int) -> tuple[tuple[int, ...], int]:
    if len(magic_bytes) < 4:
        raise ValueError(f"IDX file {path}: {len(head)} bytes is too short for the 4-byte magic number")
    (found,) = struct.unpack(">I", magic_bytes)
    if found != magic:
        raise ValueError(f"IDX file {path}: magic number {found:#010x}, expected {magic:#010x} "
                         f"({'images' if magic == IMAGES_MAGIC else 'labels'} of unsigned bytes)")  # fmt: skip
    ndim = magic & 0xFF
    start = 4 + 4 * ndim
    if len(head) < start:
        raise ValueError(f"IDX file {path}: truncated in its header (expected {start} bytes, found {len(head)})")
    return struct.unpack(f">{ndim}I", head[4:start]), start


def _check_size(path: str, shape: tuple[int, ...], start: int, actual: int) -> None:
    expected = start + prod(shape)
    if actual != expected:
        what = "truncated" if actual < expected else "longer than its header says"
        raise ValueError(f"IDX file {path}: {what}: expected {expected} bytes for shape {shape}, found {actual}")


def _find(folders: list[str], name: str) -> str | None:
    for folder in folders:
        for candidate in (name, name + ".gz"):
            path = os.path.join(folder, candidate)
            if os.path.isfile(path):
                return path
    return None


def _load(dataset: str, folders: list[str], split: str, normalize: bool, device: str) -> tuple[Tensor, Tensor]:
    if split not in SPLIT_PREFIX:
        raise ValueError(f"{dataset}: split must be 'train' or 'test', got {split!r}")
    prefix = SPLIT_PREFIX[split]
    paths = {}
    for kind, idx in (("images", 3), ("labels", 1)):
        name = f"{prefix}-{kind}-idx{idx}-ubyte"
        path = _find(folders, name)
        if path is None:
            raise FileNotFoundError(
                f"{dataset}: {name}[.gz] was not found in {', '.join(folders) or 'any folder'}. To get it: "
                f"{_HOW_TO_GET[dataset]}"
            )
        paths[kind] = path
    images = read_idx(paths["images"], IMAGES_MAGIC, device)
    labels = read_idx(paths["labels"], LABELS_MAGIC, device)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{dataset}: {images.shape[0]} images in {paths['images']} but {labels.shape[0]} labels "
                         f"in {paths['labels']}")  # fmt: skip
    labels = labels.cast(dtypes.int64)
    if normalize:
        images = images.cast(dtypes.float32) * (1.0 / 255.0)
    return images, labels


def load_fashion_mnist(
    root: str | os.PathLike[str] | None = None, split: str = "train", normalize: bool = False, device: str = "CPU"
) -> tuple[Tensor, Tensor]:
    """Fashion-MNIST ``(images, labels)``: uint8 images (N, 28, 28), or float32 in [0, 1] with ``normalize``,
    and int64 labels (N,). ``split`` is "train" (60,000) or "test" (10,000). Raises FileNotFoundError saying
    how to get the files when they are missing, ValueError for a corrupt or truncated file."""
    folders = [os.fspath(root)] if root is not None else [DEBIAN_FASHION_MNIST]
    return _load("fashion-mnist", folders, split, normalize, device)


def load_mnist(
    root: str | os.PathLike[str] | None = None, split: str = "train", normalize: bool = False, device: str = "CPU"
) -> tuple[Tensor, Tensor]:
    """MNIST digits, as ``load_fashion_mnist``. No system package ships MNIST: pass the folder with its IDX files
    as ``root``."""
    folders = [os.fspath(root)] if root is not None else []
    return _load("mnist", folders, split, normalize, device)
