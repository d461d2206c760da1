"""Buffer: device memory for ``size`` elements of one dtype, allocated on first use, freed with the object."""

from __future__ import annotations

import itertools
from typing import Any

from .. import stats
from ..ir.dtypes import DType
from .registry import get_device

_uids = itertools.count()


class Buffer:
    __slots__ = ("device", "size", "dtype", "handle", "uid", "base", "version", "__weakref__")

    def __init__(self, device: str, size: int, dtype: DType, base: Buffer | None = None):
        self.device = device
        self.size = size
        self.dtype = dtype
        self.handle: Any = None
        self.uid = next(_uids)
        # a buffer with a base uses the base's memory (the memory planner shares it between temporaries)
        self.base = base
        self.version = 0  # bumped whenever an assign overwrites the contents

    def __repr__(self) -> str:
        state = "allocated" if self.handle is not None else "lazy"
        return f"<Buffer #{self.uid} {self.device} {self.dtype.name}[{self.size}] {state}>"

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def allocated(self) -> bool:
        return self.handle is not None

    def ensure_allocated(self) -> Buffer:
        if self.handle is None:
            if self.base is not None:
                self.handle = self.base.ensure_allocated().handle
            else:
                self.handle = get_device(self.device).allocator.alloc(self.nbytes)
        return self

    def allocate_zeroed(self) -> Buffer:
        """Allocate now, as memory that reads as zeros (``Allocator.alloc_zeroed``)."""
        if self.handle is not None or self.base is not None:
            raise ValueError(f"allocate_zeroed: {self!r} already has memory")
        self.handle = get_device(self.device).allocator.alloc_zeroed(self.nbytes)
        return self

    def copyin(self, data: bytes | bytearray | memoryview) -> Buffer:
        mv = memoryview(data).cast("B")
        if len(mv) != self.nbytes:
            raise ValueError(f"copyin: {len(mv)} bytes given for a buffer of {self.nbytes} bytes")
        self.ensure_allocated()
        get_device(self.device).allocator.copyin(self.handle, mv)
        stats.copy_bytes += self.nbytes
        return self

    def copyout(self) -> bytearray:
        out = bytearray(self.nbytes)
        self.ensure_allocated()
        get_device(self.device).allocator.copyout(memoryview(out), self.handle)
        stats.copy_bytes += self.nbytes
        return out

    def __del__(self) -> None:
        if self.handle is not None and self.base is None:
            try:
                get_device(self.device).allocator.free(self.handle, self.nbytes)
            except Exception:  # interpreter shutdown: the device may already be gone
                pass
            self.handle = None
