"""The NULL device: compiles nothing and runs nothing.

Kernels are still rendered (its renderer is C), so scheduling and fusion can be tested by counting kernels
without a compiler. Its memory is ordinary bytearrays, so copies in and out round-trip; kernels never touch it,
so what a kernel would have written is simply not there.
"""

from __future__ import annotations

from dataclasses import dataclass

from boltgrad.device.base import Allocator, Compiler, Device, Launch


class NullAllocator(Allocator):
    """A handle is a bytearray of the buffer's size."""

    def alloc(self, nbytes: int) -> bytearray:
        return bytearray(nbytes)

    def free(self, handle: bytearray, nbytes: int = 0) -> None:
        pass  # the garbage collector owns the bytearray

    def copyin(self, handle: bytearray, src: memoryview) -> None:
        src = src.cast("B") if src.format != "B" or src.ndim != 1 else src
        if src.nbytes > len(handle):  # a bytearray slice would silently grow; real memory would overflow
            raise ValueError(f"NULL: copying {src.nbytes} bytes into a buffer of {len(handle)}")
        handle[: src.nbytes] = src

    def copyout(self, dest: memoryview, handle: bytearray) -> None:
        dest = dest.cast("B") if dest.format != "B" or dest.ndim != 1 else dest
        dest[:] = memoryview(handle)[: dest.nbytes]

    def as_host_view(self, handle: bytearray, nbytes: int) -> memoryview:
        return memoryview(handle)[:nbytes]


class NullCompiler(Compiler):
    """Returns the source itself as the "library"."""

    def compile(self, source: str) -> str:
        return source


@dataclass(frozen=True, slots=True)
class NullProgram:
    name: str
    source: str


class NullDevice(Device):
    renderer = "c"

    def __init__(self, name: str = "NULL"):
        super().__init__(name)
        if name.partition(":")[2] == "CUDA":  # NULL:CUDA lowers for a GPU and renders CUDA (compile-checks, no GPU)
            self.renderer = "cuda"
        self._allocator = NullAllocator()
        self._compiler = NullCompiler()

    @property
    def allocator(self) -> NullAllocator:
        return self._allocator

    @property
    def compiler(self) -> NullCompiler:
        return self._compiler

    def program(self, library: str, name: str) -> NullProgram:
        return NullProgram(name, library)

    def run(self, launches: list[Launch]) -> None:
        pass

    def synchronize(self) -> None:
        pass
