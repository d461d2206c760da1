"""Loading PyTorch checkpoints (``.pt``/``.pth``) without torch and without running code from the file.

Two formats are read:

* zip (torch >= 1.6): ``<name>/data.pkl`` is a pickle of the object; each storage is the member
  ``<name>/data/<key>``, raw little-endian bytes;
* legacy (``_use_new_zipfile_serialization=False``): five pickles in a row (magic number, protocol version,
  system info, the object, the list of storage keys), then each storage as an 8-byte element count and its
  bytes.

The pickles are read by an unpickler that resolves only a short whitelist of globals (``find_class``): torch's
tensor and parameter rebuild functions, its storage types and dtypes, ``collections.OrderedDict`` and a few
builtins for plain containers. Those names are mapped to our own functions; torch is never imported. Any other
global, such as the ``os.system`` of a malicious ``__reduce__``, raises ``pickle.UnpicklingError`` naming it.

Tensors come back lazily, as ``safe_load``'s do: stored (uncompressed) storages are mapped with the DISK
device and a tensor is read when it is first realized on ``device``.

    >>> sd = torch_load("model.pt")  # doctest: +SKIP
    >>> sd["fc.weight"].shape  # doctest: +SKIP
    (10, 784)
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass, field
from typing import Any

from ..device.disk import map_file
from ..helpers import prod
from ..ir import dtypes
from ..ir.dtypes import DType
from ..tensor import Tensor
from .state import disk_tensor

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

STORAGE_DTYPES: dict[str, DType] = {
    "FloatStorage": dtypes.float32,
    "DoubleStorage": dtypes.float64,
    "HalfStorage": dtypes.float16,
    "BFloat16Storage": dtypes.bfloat16,
    "LongStorage": dtypes.int64,
    "IntStorage": dtypes.int32,
    "ShortStorage": dtypes.int16,
    "CharStorage": dtypes.int8,
    "ByteStorage": dtypes.uint8,
    "BoolStorage": dtypes.bool_,
    "UntypedStorage": dtypes.uint8,
}
TORCH_DTYPES: dict[str, DType] = {
    "float32": dtypes.float32, "float": dtypes.float32, "float64": dtypes.float64, "double": dtypes.float64,
    "float16": dtypes.float16, "half": dtypes.float16, "bfloat16": dtypes.bfloat16, "int64": dtypes.int64,
    "long": dtypes.int64, "int32": dtypes.int32, "int": dtypes.int32, "int16": dtypes.int16, "short": dtypes.int16,
    "int8": dtypes.int8, "uint8": dtypes.uint8, "bool": dtypes.bool_, "uint32": dtypes.uint32,
}  # fmt: skip


# ---------------------------------------------------------------- what the pickle builds


@dataclass(frozen=True)
class _StorageType:
    name: str
    dtype: DType


@dataclass
class _Storage:
    """A storage named in the pickle; where its bytes are is known once the file's layout has been read."""

    key: str
    dtype: DType
    numel: int
    source: Any = None  # ("disk", DiskFile, byte offset) | ("bytes", bytes)
    root: _Storage | None = None  # a legacy view: ``element_offset`` elements into another storage
    element_offset: int = 0


@dataclass
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    requires_grad: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _rebuild_tensor(storage: Any, storage_offset: int, size: Any, stride: Any, *rest: Any) -> _TensorRef:
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError(f"torch_load: a tensor's storage is a {type(storage).__name__}, not a storage")
    requires_grad = bool(rest[0]) if rest else False
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride), requires_grad)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None, *state: Any) -> Any:
    return data  # a Parameter is its tensor here


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes; only the latin-1 codec is allowed."""
    if encoding.replace("-", "").lower() not in ("latin1", "iso88591") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"torch_load: _codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


def _torch_device(*args: Any) -> str:
    return ":".join(str(a) for a in args)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch", "Size"): tuple,
    ("torch", "device"): _torch_device,
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "tuple"): tuple,
    ("builtins", "list"): list,
    ("builtins", "dict"): dict,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): bytearray,
}
for _name, _dt in STORAGE_DTYPES.items():
    _ALLOWED[("torch", _name)] = _StorageType(_name, _dt)
_ALLOWED[("torch.storage", "UntypedStorage")] = _StorageType("UntypedStorage", dtypes.uint8)
for _name, _dt in TORCH_DTYPES.items():
    _ALLOWED[("torch", _name)] = _dt


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the whitelisted globals; storages come through ``persistent_load``."""

    def __init__(self, file: Any, path: str, storages: dict[str, _Storage]):
        super().__init__(file, encoding="utf-8")
        self.path = path
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(
                f"torch_load: {self.path} asks for the global '{module}.{name}', which is not allowed: a checkpoint "
                "may hold only tensors, numbers, strings and containers (other globals can run code when unpickled)"
            )
        return allowed

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise pickle.UnpicklingError(f"torch_load: {self.path}: unsupported persistent id {pid!r:.100}")
        storage_type, key, numel = pid[1], str(pid[2]), pid[4]
        if not isinstance(storage_type, _StorageType) or not isinstance(numel, int):
            raise pickle.UnpicklingError(f"torch_load: {self.path}: unsupported storage {pid!r:.100}")
        if key not in self.storages:
            self.storages[key] = _Storage(key, storage_type.dtype, numel)
        storage = self.storages[key]
        view = pid[5] if len(pid) > 5 else None
        if view is not None:  # legacy: (view key, element offset, view size) into the root storage
            view_key, offset, view_size = view
            return _Storage(str(view_key), storage.dtype, int(view_size), root=storage, element_offset=int(offset))
        return storage


def _restricted_load(data: Any, path: str, storages: dict[str, _Storage]) -> Any:
    stream = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    try:
        return RestrictedUnpickler(stream, path, storages).load()
    except pickle.UnpicklingError:
        raise
    except (EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError, struct.error) as e:
        raise ValueError(f"torch_load: {path}: the pickle is corrupt or truncated ({type(e).__name__}: {e})") from None


# ---------------------------------------------------------------- the two file formats


def torch_load(path: str | os.PathLike[str], device: str = "CPU") -> Any:
    """Load a PyTorch checkpoint: the saved object with every tensor a boltgrad Tensor on ``device`` (lazy).

    Parameters come back as plain tensors (``requires_grad`` is not restored). Raises ValueError for a file that
    is neither format or is truncated, and ``pickle.UnpicklingError`` for a pickle that names a forbidden global.
    """
    path = os.fspath(path)
    if zipfile.is_zipfile(path):
        obj = _load_zip(path)
    else:
        obj = _load_legacy(path)
    return _materialize(obj, device, path, {})


def _load_zip(path: str) -> Any:
    with zipfile.ZipFile(path) as zf:
        pickles = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ValueError(f"torch_load: {path} is a zip file but not a PyTorch checkpoint (no <name>/data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        if prefix + "byteorder" in zf.namelist():
            order = zf.read(prefix + "byteorder").decode().strip()
            if order != "little":
                raise ValueError(f"torch_load: {path} was saved {order}-endian; only little-endian is supported")
        storages: dict[str, _Storage] = {}
        obj = _restricted_load(zf.read(pickles[0]), path, storages)
        disk = map_file(path)
        for key, storage in storages.items():
            name = f"{prefix}data/{key}"
            try:
                info = zf.getinfo(name)
            except KeyError:
                raise ValueError(f"torch_load: {path}: storage {key!r} is missing (no member {name})") from None
            want = storage.numel * storage.dtype.itemsize
            if info.file_size < want:
                raise ValueError(f"torch_load: {path}: storage {key!r} has {info.file_size} bytes, expected {want}")
            if info.compress_type == zipfile.ZIP_STORED:
                storage.source = ("disk", disk, _member_data_offset(disk, info, path))
            else:
                storage.source = ("bytes", zf.read(name))
    return obj


def _member_data_offset(disk: Any, info: zipfile.ZipInfo, path: str) -> int:
    """Where a stored zip member's bytes start: after its local header (30 bytes, its name and extra field)."""
    local = disk.read(info.header_offset, 30) if info.header_offset + 30 <= disk.size else b""
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise ValueError(f"torch_load: {path}: broken zip entry {info.filename}")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    start = info.header_offset + 30 + name_len + extra_len
    if start + info.file_size > disk.size:
        raise ValueError(f"torch_load: {path}: zip entry {info.filename} runs past the end of the file (truncated)")
    return start


def _load_legacy(path: str) -> Any:
    storages: dict[str, _Storage] = {}
    with open(path, "rb") as f:
        try:
            magic = _restricted_load(f, path, {})
        except (ValueError, pickle.UnpicklingError):
            magic = None
        if magic != LEGACY_MAGIC:
            raise ValueError(f"torch_load: {path} is not a PyTorch checkpoint (neither a zip archive nor the legacy "
                             "format's magic number)")  # fmt: skip
        protocol = _restricted_load(f, path, {})
        if protocol != LEGACY_PROTOCOL:
            raise ValueError(f"torch_load: {path}: unsupported legacy protocol version {protocol!r}")
        sys_info = _restricted_load(f, path, {})
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise ValueError(f"torch_load: {path} was saved big-endian; only little-endian is supported")
        obj = _restricted_load(f, path, storages)
        keys = _restricted_load(f, path, {})
        disk = map_file(path)
        offset = f.tell()
    for key in keys:
        storage = storages.get(str(key))
        if offset + 8 > disk.size:
            raise ValueError(f"torch_load: {path}: truncated before storage {key!r}")
        (count,) = struct.unpack("<q", disk.read(offset, 8))
        nbytes = count * (storage.dtype.itemsize if storage is not None else 1)
        if offset + 8 + nbytes > disk.size:
            raise ValueError(f"torch_load: {path}: storage {key!r} needs {nbytes} bytes at offset {offset + 8}, the "
                             f"file has {disk.size} (truncated)")  # fmt: skip
        if storage is not None:
            storage.source = ("disk", disk, offset + 8)
        offset += 8 + nbytes
    return obj


# ---------------------------------------------------------------- tensors out of storages


def _materialize(obj: Any, device: str, path: str, memo: dict[int, Any]) -> Any:
    """The loaded object with every tensor reference replaced by a Tensor (shared ones stay shared)."""
    if id(obj) in memo:
        return memo[id(obj)]
    if isinstance(obj, _TensorRef):
        out: Any = _to_tensor(obj, device, path)
    elif isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _materialize(v, device, path, memo)
        if hasattr(obj, "__dict__") and vars(obj):  # torch's state dicts carry _metadata
            out.__dict__.update(vars(obj))
    elif isinstance(obj, list):
        out = [_materialize(v, device, path, memo) for v in obj]
    elif isinstance(obj, tuple):
        out = tuple(_materialize(v, device, path, memo) for v in obj)
    else:
        out = obj
    memo[id(obj)] = out
    return out


def _to_tensor(ref: _TensorRef, device: str, path: str) -> Tensor:
    storage = ref.storage
    root = storage.root or storage
    dtype = storage.dtype
    if root.source is None:
        raise ValueError(f"torch_load: {path}: no data for storage {storage.key!r}")
    size, stride = ref.size, ref.stride
    numel = prod(size)
    if numel == 0:
        return Tensor.zeros(size, dtype=dtype, device=device)
    span = 1 + sum((s - 1) * st for s, st in zip(size, stride))
    start = storage.element_offset + ref.offset
    if start < 0 or start + span > root.numel or any(st < 0 for st in stride):
        raise ValueError(f"torch_load: {path}: a tensor of size {size} and stride {stride} at offset {ref.offset} "
                         f"does not fit its storage of {root.numel} elements")  # fmt: skip
    layout = _movement_layout(size, stride)
    if layout is None:  # an arbitrary strided view (a slice with a step): gather on the host
        return _gather(root, start, size, stride, dtype).to(device=device)
    order, sizes = layout
    flat = _read(root, start, prod(sizes), dtype, device)  # the block the view reads, and no more
    t = flat.reshape(sizes).permute(order)
    return t if t.shape == size else t.expand(size)


def _movement_layout(size: tuple[int, ...], stride: tuple[int, ...]) -> tuple[list[int], tuple[int, ...]] | None:
    """When the view is a permutation of a contiguous block, possibly broadcast along stride-0 dims: the order
    that makes it contiguous, and the block's shape in that order (broadcast dims as 1); else None."""
    dims = sorted(range(len(size)), key=lambda d: (-stride[d], d))
    expected = 1
    for d in reversed(dims):
        if size[d] == 1 or stride[d] == 0:
            continue
        if stride[d] != expected:
            return None
        expected *= size[d]
    sizes = tuple(1 if stride[d] == 0 else size[d] for d in dims)
    inverse = [0] * len(dims)
    for i, d in enumerate(dims):
        inverse[d] = i
    return inverse, sizes


def _read(storage: _Storage, start: int, count: int, dtype: DType, device: str) -> Tensor:
    """Elements [start, start + count) of a storage: a lazy copy of its DISK view, or a tensor of its bytes."""
    if storage.source[0] == "disk":
        _, disk, byte_offset = storage.source
        return disk_tensor(disk, byte_offset + start * dtype.itemsize, (count,), dtype, device)
    return Tensor(_bytes(storage, start, count, dtype), dtype=dtype, device=device)


def _bytes(storage: _Storage, start: int, count: int, dtype: DType) -> bytes:
    begin, nbytes = start * dtype.itemsize, count * dtype.itemsize
    if storage.source[0] == "disk":
        _, disk, byte_offset = storage.source
        return disk.read(byte_offset + begin, nbytes)
    return storage.source[1][begin : begin + nbytes]


def _gather(storage: _Storage, start: int, size: tuple[int, ...], stride: tuple[int, ...], dtype: DType) -> Tensor:
    span = 1 + sum((s - 1) * st for s, st in zip(size, stride))
    block = _bytes(storage, start, span, dtype)
    item = dtype.itemsize
    offsets = [0]
    for s, st in zip(size, stride):
        offsets = [o + i * st for o in offsets for i in range(s)]
    raw = b"".join(block[o * item : (o + 1) * item] for o in offsets)
    return Tensor(raw, dtype=dtype).reshape(size)
