"""Saving and loading tensors: safetensors files, read lazily through the DISK device, and state-dict helpers.

A safetensors file is an 8-byte little-endian header length, a JSON header naming each tensor's dtype, shape and
byte range (``data_offsets``, relative to the end of the header), then the raw little-endian data::

    >>> import os, tempfile, boltgrad
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> safe_save({"w": boltgrad.Tensor([[1.0, 2.0]]), "step": boltgrad.Tensor([7])}, path)
    >>> loaded = safe_load(path)  # nothing is read yet
    >>> loaded["w"].tolist()        # reads the 8 bytes of "w" only
    [[1.0, 2.0]]

``safe_load`` maps the file on the DISK device and returns tensors whose graph is a COPY of their byte range to
``device``: a tensor is read when it is first realized, and one that is never used is never read.
``device="DISK"`` returns the DISK views themselves (move them with ``.to(...)`` before computing on them).
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from typing import Any

from ..device.disk import DiskFile, file_buffer, map_file
from ..helpers import prod
from ..ir import dtypes
from ..ir.dtypes import DType
from ..ir.node import Node
from ..ir.ops import Op
from ..tensor import Tensor

SAFETENSORS_DTYPES: dict[str, DType] = {
    "BOOL": dtypes.bool_,
    "U8": dtypes.uint8,
    "I8": dtypes.int8,
    "I16": dtypes.int16,
    "I32": dtypes.int32,
    "U32": dtypes.uint32,
    "I64": dtypes.int64,
    "F16": dtypes.float16,
    "BF16": dtypes.bfloat16,
    "F32": dtypes.float32,
    "F64": dtypes.float64,
}
_NAME_OF = {dt: name for name, dt in SAFETENSORS_DTYPES.items()}
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors reference refuses larger headers too


def disk_tensor(file: DiskFile, offset: int, shape: tuple[int, ...], dtype: DType, device: str = "CPU") -> Tensor:
    """The tensor stored at byte ``offset`` of a mapped file: a DISK view, or a lazy copy of it to ``device``."""
    buf = file_buffer(file, offset, prod(shape), dtype)
    view = Tensor(Node(Op.BUFFER, dtype, (), buf)).reshape(shape)
    return view if device.upper() == "DISK" else view.to(device=device)


def tensor_bytes(t: Tensor) -> bytes:
    """The tensor's elements in row-major order as raw little-endian bytes (realizes it)."""
    return bytes(t._raw())


# ---------------------------------------------------------------- safetensors


def safe_save(tensors: dict[str, Tensor], path: str | os.PathLike[str], metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` to a safetensors file, atomically: a reader sees the old file or the whole new one.

    ``metadata`` (strings to strings) goes into the header's ``__metadata__``.
    """
    path = os.fspath(path)
    for name, t in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"safe_save: tensor names must be strings other than '__metadata__', got {name!r}")
        if not isinstance(t, Tensor):
            raise TypeError(f"safe_save: {name!r} is a {type(t).__name__}, not a Tensor")
        if t.dtype not in _NAME_OF:
            raise TypeError(f"safe_save: {name!r} has dtype {t.dtype.name}, which safetensors cannot store")
    if metadata is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise TypeError("safe_save: metadata must map strings to strings")
    names = sorted(tensors)
    Tensor.realize_all([tensors[n] for n in names])
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name in names:
        t = tensors[name]
        nbytes = t.numel() * t.dtype.itemsize
        header[name] = {"dtype": _NAME_OF[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned, as the reference writer does
    with atomic_write(path) as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for name in names:
            f.write(tensor_bytes(tensors[name]))


class atomic_write:  # noqa: N801 - used as a context manager, like open()
    """Write to a temporary file beside ``path``, fsync it, then rename it over ``path`` (on success only)."""

    def __init__(self, path: str):
        self.path = path
        self.tmp = ""
        self.file: Any = None

    def __enter__(self) -> Any:
        folder = os.path.dirname(os.path.abspath(self.path))
        fd, self.tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(self.path)}.", suffix=".tmp")
        self.file = os.fdopen(fd, "wb")
        return self.file

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self.file.flush()
                os.fsync(self.file.fileno())
            self.file.close()
            if exc_type is None:
                os.replace(self.tmp, self.path)
                _fsync_folder(os.path.dirname(os.path.abspath(self.path)))
        finally:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable (POSIX); not every platform can open a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_header(path: str) -> tuple[DiskFile, int, dict[str, Any]]:
    """The mapped file, where its data starts, and its parsed header (checked for the problems it can have)."""
    f = map_file(path)
    if f.size < 8:
        raise ValueError(f"safetensors file {path}: {f.size} bytes is too short for the 8-byte header length")
    (length,) = struct.unpack("<Q", f.read(0, 8))
    if length > f.size - 8:
        raise ValueError(f"safetensors file {path}: header length {length} goes beyond the file ({f.size} bytes); "
                         "the file is truncated or not a safetensors file")  # fmt: skip
    if length > MAX_HEADER_BYTES:
        raise ValueError(f"safetensors file {path}: header of {length} bytes is larger than {MAX_HEADER_BYTES}")
    try:
        header = json.loads(f.read(8, length).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"safetensors file {path}: the header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise ValueError(f"safetensors file {path}: the header is a {type(header).__name__}, not a JSON object")
    return f, 8 + length, header


def _check_entry(path: str, name: str, entry: Any, data_bytes: int) -> tuple[DType, tuple[int, ...], int]:
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
        raise ValueError(f"safetensors file {path}: entry {name!r} lacks dtype, shape or data_offsets")
    dtype = SAFETENSORS_DTYPES.get(entry["dtype"])
    if dtype is None:
        raise ValueError(f"safetensors file {path}: tensor {name!r} has dtype {entry['dtype']!r}, which boltgrad "
                         f"does not support (supported: {', '.join(SAFETENSORS_DTYPES)})")  # fmt: skip
    shape, offsets = entry["shape"], entry["data_offsets"]
    if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise ValueError(f"safetensors file {path}: tensor {name!r} has an invalid shape {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]):  # fmt: skip
        raise ValueError(f"safetensors file {path}: tensor {name!r} has invalid data_offsets {offsets!r}")
    begin, end = offsets
    if end > data_bytes:
        raise ValueError(f"safetensors file {path}: tensor {name!r} ends at byte {end} of the data, which has only "
                         f"{data_bytes} bytes (offsets out of range: the file is truncated or corrupt)")  # fmt: skip
    want = prod(shape) * dtype.itemsize
    if end - begin != want:
        raise ValueError(f"safetensors file {path}: tensor {name!r} of shape {tuple(shape)} and dtype "
                         f"{entry['dtype']} needs {want} bytes, but data_offsets span {end - begin}")  # fmt: skip
    return dtype, tuple(shape), begin


def safe_load(path: str | os.PathLike[str], device: str = "CPU", with_metadata: bool = False) -> Any:
    """The tensors of a safetensors file, by name, read lazily (see the module docstring); with
    ``with_metadata``, the pair ``(tensors, metadata)``.

    Raises ValueError naming the file and the problem for a truncated or corrupt file (a header length beyond
    the file, offsets out of range or not matching the shape, an unknown dtype).
    """
    path = os.fspath(path)
    f, data_start, header = _read_header(path)
    out: dict[str, Tensor] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, begin = _check_entry(path, name, entry, f.size - data_start)
        out[name] = disk_tensor(f, data_start + begin, shape, dtype, device)
    return (out, _metadata_of(path, header)) if with_metadata else out


def safe_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``__metadata__`` strings of a safetensors file (empty when it has none)."""
    path = os.fspath(path)
    return _metadata_of(path, _read_header(path)[2])


def _metadata_of(path: str, header: dict[str, Any]) -> dict[str, str]:
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ValueError(f"safetensors file {path}: __metadata__ is not an object of strings")
    return dict(meta)


# ---------------------------------------------------------------- state dicts of plain objects


def get_state_dict(obj: Any, prefix: str = "") -> dict[str, Tensor]:
    """Every tensor reachable from ``obj``, by dotted path: a module's ``state_dict()``, else the tensors in its
    attributes, dicts, lists and tuples (``{"layers.0.weight": ...}``)."""
    if isinstance(obj, Tensor):
        return {prefix.rstrip("."): obj}
    if hasattr(obj, "state_dict") and callable(obj.state_dict) and not isinstance(obj, type):
        sd = obj.state_dict()
        if all(isinstance(v, Tensor) for v in sd.values()):
            return {prefix + k: v for k, v in sd.items()}
    items: list[tuple[str, Any]]
    if isinstance(obj, dict):
        items = [(str(k), v) for k, v in obj.items()]
    elif isinstance(obj, list | tuple):
        items = [(str(i), v) for i, v in enumerate(obj)]
    elif hasattr(obj, "__dict__"):
        items = list(vars(obj).items())
    else:
        return {}
    out: dict[str, Tensor] = {}
    for key, value in items:
        out.update(get_state_dict(value, f"{prefix}{key}."))
    return out


def load_state_dict(obj: Any, state_dict: dict[str, Tensor], strict: bool = True) -> tuple[list[str], list[str]]:
    """Copy ``state_dict`` into the tensors of ``obj`` (found as ``get_state_dict`` finds them), in one realize.

    A module's own ``load_state_dict`` does the work when it has one. Values are moved to each tensor's device
    and cast to its dtype. Returns ``(missing, unexpected)`` keys; ``strict`` makes either an error, as does a
    shape that differs.
    """
    own = getattr(obj, "load_state_dict", None)
    if callable(own) and not isinstance(obj, type):
        result = own(state_dict, strict=strict)
        return (list(result[0]), list(result[1])) if isinstance(result, tuple) else ([], [])
    mine = get_state_dict(obj)
    missing = [k for k in mine if k not in state_dict]
    unexpected = [k for k in state_dict if k not in mine]
    if strict and (missing or unexpected):
        raise RuntimeError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
    targets = []
    for key, target in mine.items():
        if key not in state_dict:
            continue
        value = state_dict[key]
        value = value if isinstance(value, Tensor) else Tensor(value)
        if value.shape != target.shape:
            raise RuntimeError(f"load_state_dict: {key!r} has shape {value.shape} in the state dict, {target.shape} "
                               "in the model")  # fmt: skip
        targets.append(target.assign(value.to(device=target.device).cast(target.dtype)))
    Tensor.realize_all(targets)
    return missing, unexpected
