"""A reader of GGUF files (the llama.cpp model format), mapped through the DISK device.

Layout (all little-endian)::

    "GGUF"  u32 version (2 or 3)  u64 tensor count  u64 metadata count
    metadata:  string key, u32 value type, value            (strings are u64 length + UTF-8 bytes)
    tensors:   string name, u32 n_dims, u64 dims[n_dims] (innermost first), u32 ggml type, u64 offset
    padding to `general.alignment` (default 32), then the tensor data; each offset is relative to its start

Value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool, 8 string, 9 array (u32 item type,
u64 count, items), 10 u64, 11 i64, 12 f64.

    >>> g = GGUFFile.open(path)                              # doctest: +SKIP
    >>> g.metadata["general.architecture"], g.tensors["output_norm.weight"].shape   # doctest: +SKIP
    ('llama', (576,))

Nothing of the tensor data is read when the file is opened: ``load(name)`` gives a lazy copy of one tensor
from the mapped file (see ``quant.load_tensor``).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any

from ..nn.state import map_file
from ..tensor import Tensor
from .quant import GGML_TYPES, QuantizedWeight, is_supported, load_tensor, tensor_nbytes, type_name

MAGIC = b"GGUF"
_SCALARS: dict[int, struct.Struct] = {
    0: struct.Struct("<B"), 1: struct.Struct("<b"), 2: struct.Struct("<H"), 3: struct.Struct("<h"),
    4: struct.Struct("<I"), 5: struct.Struct("<i"), 6: struct.Struct("<f"), 7: struct.Struct("<?"),
    10: struct.Struct("<Q"), 11: struct.Struct("<q"), 12: struct.Struct("<d"),
}  # fmt: skip
STRING, ARRAY = 8, 9
MAX_DIMS = 4  # ggml tensors have at most 4 dims
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # torch order: outermost first (GGUF lists dims innermost first)
    type_id: int
    offset: int  # absolute byte offset in the file
    nbytes: int

    @property
    def type_name(self) -> str:
        return type_name(self.type_id)


class _Reader:
    """A cursor over the start of a mapped file that reads more of it as the header needs."""

    def __init__(self, file: Any, path: str):
        self.file, self.path, self.pos = file, path, 0
        self.buf = b""

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if end > self.file.size:
            raise ValueError(f"GGUF file {self.path}: truncated: reading {what} needs bytes [{self.pos}, {end}), "
                             f"but the file has {self.file.size} bytes")  # fmt: skip
        if end > len(self.buf):  # read ahead in doubling chunks: the header of a real model is megabytes
            want = min(self.file.size, max(end, 2 * len(self.buf), 1 << 16))
            self.buf += self.file.read(len(self.buf), want - len(self.buf))
        out = self.buf[self.pos : end]
        self.pos = end
        return out

    def scalar(self, kind: int, what: str) -> Any:
        s = _SCALARS[kind]
        return s.unpack(self.take(s.size, what))[0]

    def u32(self, what: str) -> int:
        return _U32.unpack(self.take(4, what))[0]

    def u64(self, what: str) -> int:
        return _U64.unpack(self.take(8, what))[0]

    def string(self, what: str) -> str:
        n = self.u64(f"the length of {what}")
        if n > self.file.size - self.pos:
            raise ValueError(f"GGUF file {self.path}: {what} claims {n} bytes, more than the rest of the file "
                             "(truncated or corrupt)")  # fmt: skip
        raw = self.take(n, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("utf-8", errors="replace")  # some vocabularies hold partial UTF-8 sequences

    def strings(self, count: int, what: str) -> list[str]:
        """``count`` strings in a row (a vocabulary: 100k of them), in one loop over the buffer."""
        out: list[str] = []
        unpack, buf, pos = _U64.unpack_from, self.buf, self.pos
        for i in range(count):
            if pos + 8 > len(buf):
                self.pos = pos
                self.take(8, f"the length of item {i} of {what}")
                buf = self.buf
            (n,) = unpack(buf, pos)
            end = pos + 8 + n
            if end > len(buf):
                self.pos = pos + 8
                if n > self.file.size - self.pos:
                    raise ValueError(f"GGUF file {self.path}: item {i} of {what} claims {n} bytes, more than the "
                                     "rest of the file (truncated or corrupt)")  # fmt: skip
                self.take(n, f"item {i} of {what}")
                buf = self.buf
            raw = buf[pos + 8 : end]
            try:
                out.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                out.append(raw.decode("utf-8", errors="replace"))  # vocabularies may hold partial UTF-8 sequences
            pos = end
        self.pos = pos
        return out

    def value(self, kind: int, what: str) -> Any:
        if kind in _SCALARS:
            return self.scalar(kind, what)
        if kind == STRING:
            return self.string(what)
        if kind == ARRAY:
            item = self.u32(f"the item type of {what}")
            count = self.u64(f"the length of {what}")
            if count > self.file.size - self.pos:  # every item takes at least a byte
                raise ValueError(f"GGUF file {self.path}: array {what} claims {count} items, more than the "
                                 "rest of the file (truncated or corrupt)")  # fmt: skip
            if item in _SCALARS:  # one unpack for the whole array
                s = _SCALARS[item]
                raw = self.take(s.size * count, what)
                return list(struct.unpack(f"<{count}{s.format[1:]}", raw))
            if item == STRING:
                return self.strings(count, what)
            return [self.value(item, what) for _ in range(count)]
        raise ValueError(f"GGUF file {self.path}: {what} has unknown value type {kind} (corrupt file?)")


class GGUFFile:
    """The parsed header of a GGUF file: ``metadata`` (key -> value), ``tensors`` (name -> TensorInfo)."""

    def __init__(self, path: str, file: Any, version: int, metadata: dict[str, Any], tensors: dict[str, TensorInfo]):
        self.path, self.file, self.version = path, file, version
        self.metadata, self.tensors = metadata, tensors

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> GGUFFile:
        """Parse the header; raises ValueError naming the file and the problem for a truncated or corrupt one."""
        path = os.fspath(path)
        file = map_file(path)
        r = _Reader(file, path)
        magic = r.take(4, "the magic") if file.size >= 4 else b""
        if magic != MAGIC:
            raise ValueError(f"GGUF file {path}: not a GGUF file (starts with {magic!r}, expected {MAGIC!r})")
        version = r.u32("the version")
        if version not in (2, 3):
            raise ValueError(f"GGUF file {path}: version {version} is not supported (supported: 2, 3)")
        n_tensors, n_kv = r.u64("the tensor count"), r.u64("the metadata count")
        if n_tensors > file.size or n_kv > file.size:
            raise ValueError(f"GGUF file {path}: header claims {n_tensors} tensors and {n_kv} metadata entries, "
                             f"more than a {file.size}-byte file can hold (corrupt)")  # fmt: skip
        metadata: dict[str, Any] = {}
        for i in range(n_kv):
            key = r.string(f"metadata key {i}")
            metadata[key] = r.value(r.u32(f"the type of {key}"), key)
        infos = []
        for i in range(n_tensors):
            name = r.string(f"tensor name {i}")
            n_dims = r.u32(f"the dims of {name}")
            if not 1 <= n_dims <= MAX_DIMS:
                raise ValueError(f"GGUF file {path}: tensor {name!r} has {n_dims} dims (1 to {MAX_DIMS} allowed)")
            dims = [r.u64(f"the dims of {name}") for _ in range(n_dims)]
            infos.append((name, tuple(reversed(dims)), r.u32(f"the type of {name}"), r.u64(f"the offset of {name}")))
        alignment = metadata.get("general.alignment", 32)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise ValueError(f"GGUF file {path}: general.alignment {alignment!r} is not a power of two")
        data_start = -(-r.pos // alignment) * alignment
        tensors = {}
        for name, shape, type_id, offset in infos:
            if not is_supported(type_id):
                tensors[name] = TensorInfo(name, shape, type_id, data_start + offset, -1)  # fails on load
                continue
            block = GGML_TYPES[type_id].block
            if shape[-1] % block:
                raise ValueError(f"GGUF file {path}: tensor {name!r} of type {type_name(type_id)} has rows of "
                                 f"{shape[-1]} values, not a multiple of its {block}-value blocks")  # fmt: skip
            nbytes = tensor_nbytes(type_id, shape)
            if offset % alignment:
                raise ValueError(f"GGUF file {path}: tensor {name!r} starts at offset {offset}, which is not "
                                 f"aligned to {alignment} bytes (corrupt)")  # fmt: skip
            end = data_start + offset + nbytes
            if end > file.size:
                raise ValueError(f"GGUF file {path}: tensor {name!r} ({type_name(type_id)}, shape {shape}) ends at "
                                 f"byte {end}, beyond the end of the file ({file.size} bytes): the file is "
                                 "truncated")  # fmt: skip
            tensors[name] = TensorInfo(name, shape, type_id, data_start + offset, nbytes)
        return cls(path, file, version, metadata, tensors)

    def load(self, name: str, device: str = "CPU") -> Tensor | QuantizedWeight:
        """Tensor ``name``, a lazy copy from the file: a Tensor (F32, F16, BF16) or a QuantizedWeight."""
        info = self.tensors.get(name)
        if info is None:
            raise KeyError(f"GGUF file {self.path}: no tensor named {name!r}")
        if not is_supported(info.type_id):
            supported = ", ".join(t.name for t in GGML_TYPES.values())
            raise ValueError(f"GGUF file {self.path}: tensor {name!r} has type {info.type_name}, which boltgrad "
                             f"cannot read (supported: {supported})")  # fmt: skip
        return load_tensor(self.file, info.offset, info.type_id, info.shape, device)
