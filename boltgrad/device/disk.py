"""The DISK device: files mapped into memory, read-only. A buffer is a byte range of a mapped file.

A safetensors or checkpoint file is opened once (``map_file``) and each tensor in it becomes a DISK buffer whose
handle is ``(file, offset)``: nothing is read when it is made. Moving the tensor to a compute device copies only
its bytes (a COPY, counted in ``stats.copy_bytes``), so a loader that touches one tensor of a large file reads
one tensor's pages.

DISK runs no kernels: a graph that computes on DISK tensors fails with an error saying to move them first
(``t.to("CPU")``). Loaders therefore hand out tensors on a compute device whose graph is a COPY of the DISK view:
nothing is read until such a tensor is realized. Writing to DISK is not supported either (write files with
``boltgrad.nn.state.safe_save``).

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "raw.bin")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(bytes(range(16)))
    >>> from boltgrad.ir import dtypes
    >>> buf = file_buffer(path, offset=4, size=2, dtype=dtypes.uint8)
    >>> bytes(buf.copyout())
    b'\\x04\\x05'
"""

from __future__ import annotations

import mmap
import os
import threading
import weakref
from dataclasses import dataclass
from typing import Any

from ..ir.dtypes import DType
from .base import Allocator, Compiler, Device, Launch
from .buffer import Buffer

NOT_COMPUTABLE = (
    "DISK: tensors on DISK are views of a file and cannot be computed on; move them to a compute device first "
    "with .to('CPU') (or load them with device='CPU')"
)


class DiskFile:
    """One file mapped read-only. Buffers hold it alive; it is unmapped when the last of them is freed."""

    def __init__(self, path: str):
        self.path = path
        with open(path, "rb") as f:
            self.size = os.fstat(f.fileno()).st_size
            # mmap cannot map an empty file; an empty file has no bytes to read anyway
            self.map: mmap.mmap | None = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if self.size else None

    def __repr__(self) -> str:
        return f"<DiskFile {self.path!r} {self.size} bytes>"

    def read_into(self, dest: memoryview, offset: int) -> None:
        n = dest.nbytes
        if n == 0:
            return
        # a file truncated after it was mapped would crash the process (SIGBUS) on a read past its new end
        current = self.map.size() if self.map is not None else 0
        if offset < 0 or offset + n > min(current, self.size):
            raise ValueError(
                f"DISK: reading bytes [{offset}, {offset + n}) of {self.path}, which has {current} bytes "
                f"(it had {self.size} when it was opened; was it changed on disk?)"
            )
        assert self.map is not None
        with memoryview(self.map) as view:
            dest[:] = view[offset : offset + n]

    def read(self, offset: int, nbytes: int) -> bytes:
        out = bytearray(nbytes)
        self.read_into(memoryview(out), offset)
        return bytes(out)


_files: weakref.WeakValueDictionary[tuple[Any, ...], DiskFile] = weakref.WeakValueDictionary()
_files_lock = threading.Lock()


def map_file(path: str | os.PathLike[str]) -> DiskFile:
    """The mapped file at ``path``; a file already mapped (and unchanged on disk) is shared."""
    real = os.path.realpath(os.fspath(path))
    st = os.stat(real)
    key = (real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    with _files_lock:
        f = _files.get(key)
        if f is None:
            f = DiskFile(real)
            _files[key] = f
        return f


@dataclass(frozen=True, slots=True)
class DiskHandle:
    """A DISK buffer's memory: ``nbytes`` bytes of ``file`` from ``offset``."""

    file: DiskFile
    offset: int


def file_buffer(path: str | os.PathLike[str] | DiskFile, offset: int, size: int, dtype: DType) -> Buffer:
    """A DISK buffer of ``size`` elements of ``dtype`` at byte ``offset`` of a file (nothing is read)."""
    f = path if isinstance(path, DiskFile) else map_file(path)
    nbytes = size * dtype.itemsize
    if offset < 0 or size < 0 or offset + nbytes > f.size:
        raise ValueError(f"DISK: bytes [{offset}, {offset + nbytes}) are outside {f.path} ({f.size} bytes)")
    buf = Buffer("DISK", size, dtype)
    buf.handle = DiskHandle(f, offset)
    return buf


class DiskAllocator(Allocator):
    def alloc(self, nbytes: int) -> Any:
        raise RuntimeError(
            "DISK: a DISK buffer is a view of a file and cannot be allocated; open files with "
            "boltgrad.nn.state.safe_load (or disk.file_buffer), and write them with safe_save"
        )

    def free(self, handle: Any, nbytes: int) -> None:
        pass  # the handle's reference to the file was the only thing held

    def copyin(self, handle: Any, src: memoryview) -> None:
        raise RuntimeError("DISK: files are mapped read-only; write tensors to a file with boltgrad.nn.state.safe_save")

    def copyout(self, dest: memoryview, handle: DiskHandle) -> None:
        dest = dest.cast("B") if dest.format != "B" or dest.ndim != 1 else dest
        handle.file.read_into(dest, handle.offset)


class DiskCompiler(Compiler):
    def compile(self, source: str) -> Any:
        raise RuntimeError(NOT_COMPUTABLE)


class DiskDevice(Device):
    """Holds files, runs nothing (its renderer is empty)."""

    renderer = ""

    def __init__(self, name: str = "DISK"):
        super().__init__(name)
        self._allocator = DiskAllocator()
        self._compiler = DiskCompiler()

    @property
    def allocator(self) -> DiskAllocator:
        return self._allocator

    @property
    def compiler(self) -> DiskCompiler:
        return self._compiler

    def program(self, library: Any, name: str) -> Any:
        raise RuntimeError(NOT_COMPUTABLE)

    def run(self, launches: list[Launch]) -> None:
        if launches:
            raise RuntimeError(NOT_COMPUTABLE)

    def self_check(self) -> str:
        return "maps files read-only (safetensors and checkpoints); runs no kernels"
