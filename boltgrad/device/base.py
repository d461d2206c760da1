"""What every device gives the engine: an allocator, a compiler, programs, and a way to wait.

A device runs what it is given and knows nothing of tensors, schedules or renderers. The engine renders
source for it (which renderer serves which device is the engine's table), asks the device's compiler for a
library, takes programs out of the library by name and launches them over raw buffers.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

_instances = itertools.count()


@dataclass(frozen=True)
class Launch:
    """One kernel launch: a program, the buffer handles it reads and writes, its variable values.

    ``size`` is the trip count of the kernel's outer loop, the range a device may split across threads or
    blocks; ``cost`` estimates the work of one outer iteration so a device can tell small launches (run on one
    thread) from large ones.
    """

    program: Any
    buffers: tuple[Any, ...]
    var_values: tuple[int, ...]
    size: int
    cost: int = 1


class Allocator:
    """Raw device memory. Handles are opaque to everyone but the device."""

    def alloc(self, nbytes: int) -> Any:
        raise NotImplementedError

    def free(self, handle: Any, nbytes: int) -> None:
        raise NotImplementedError

    def alloc_zeroed(self, nbytes: int) -> Any:
        """Memory that reads as zeros (a device with zero pages gives them untouched)."""
        handle = self.alloc(nbytes)
        self.copyin(handle, memoryview(bytes(nbytes)))
        return handle

    def copyin(self, handle: Any, src: memoryview) -> None:
        """Copy host bytes into the buffer (``len(src)`` bytes from offset 0)."""
        raise NotImplementedError

    def copyout(self, dest: memoryview, handle: Any) -> None:
        """Copy ``len(dest)`` bytes from the start of the buffer into host memory."""
        raise NotImplementedError

    def as_host_view(self, handle: Any, nbytes: int) -> memoryview | None:
        """A zero-copy view of the buffer when it lives in host memory, else None."""
        return None


class CachingAllocator(Allocator):
    """Keeps freed blocks by size and hands them out again.

    A training or decode step frees and allocates the same sizes every step; fresh memory from the OS costs a
    page fault per page on first touch (a 64 MB buffer: tens of milliseconds), reused memory costs nothing.
    Subclasses implement ``_raw_alloc`` and ``_raw_free``; at most ``cache_limit`` bytes stay cached.
    """

    cache_limit = 1 << 30

    def __init__(self) -> None:
        self._cache: dict[int, list[Any]] = {}
        self._cached_bytes = 0

    def _raw_alloc(self, nbytes: int) -> Any:
        raise NotImplementedError

    def _raw_free(self, handle: Any, nbytes: int) -> None:
        raise NotImplementedError

    def alloc(self, nbytes: int) -> Any:
        blocks = self._cache.get(nbytes)
        if blocks:
            self._cached_bytes -= nbytes
            return blocks.pop()
        try:
            return self._raw_alloc(nbytes)
        except MemoryError:
            self.free_cached()
            return self._raw_alloc(nbytes)

    def free(self, handle: Any, nbytes: int) -> None:
        if self._cached_bytes + nbytes <= self.cache_limit:
            self._cache.setdefault(nbytes, []).append(handle)
            self._cached_bytes += nbytes
        else:
            self._raw_free(handle, nbytes)

    def free_cached(self) -> None:
        for nbytes, blocks in self._cache.items():
            for handle in blocks:
                self._raw_free(handle, nbytes)
        self._cache.clear()
        self._cached_bytes = 0


class Compiler:
    """Source -> an opaque library. Implementations cache by content hash."""

    def compile(self, source: str) -> Any:
        raise NotImplementedError


class Device:
    """A device as the engine sees it. Subclasses set the class attributes and implement the methods."""

    name: str = ""
    renderer: str = ""  # which renderer writes its source: "c", "python" ("" means it runs nothing)
    arch: int | None = None  # a CUDA GPU's compute capability, 10 * major + minor (the code it may use)
    vector_widths: tuple[int, ...] = ()  # float32 lanes per vector its C code may use, widest first (() = 8, 4)

    def __init__(self, name: str):
        self.name = name
        self.instance = next(_instances)  # tells a device opened anew from the one before it

    @property
    def allocator(self) -> Allocator:
        raise NotImplementedError

    @property
    def compiler(self) -> Compiler:
        raise NotImplementedError

    def program(self, library: Any, name: str) -> Any:
        """The kernel ``name`` out of a compiled library."""
        raise NotImplementedError

    def run(self, launches: list[Launch]) -> None:
        """Run launches in order; each sees the writes of the ones before it."""
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait until everything queued on this device has finished."""

    def graph(self, launches: list[Launch]) -> LaunchGraph:
        """Launches packed for repeated replay; devices with a native form (the CPU's launch list, a CUDA graph)
        override."""
        return LaunchGraph(self, launches)


class LaunchGraph:
    """A replayable list of launches whose buffers and variable values can be patched between runs."""

    def __init__(self, device: Device, launches: list[Launch]):
        self.device = device
        self.launches = list(launches)

    def __len__(self) -> int:
        return len(self.launches)

    def set_buffer(self, launch_index: int, slot: int, handle: Any) -> None:
        launch = self.launches[launch_index]
        buffers = list(launch.buffers)
        buffers[slot] = handle
        self.launches[launch_index] = Launch(
            launch.program, tuple(buffers), launch.var_values, launch.size, launch.cost
        )

    def set_var(self, launch_index: int, slot: int, value: int) -> None:
        launch = self.launches[launch_index]
        values = list(launch.var_values)
        values[slot] = value
        self.launches[launch_index] = Launch(launch.program, launch.buffers, tuple(values), launch.size, launch.cost)

    def run(self) -> None:
        self.device.run(self.launches)
