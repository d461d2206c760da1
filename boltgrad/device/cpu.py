"""The CPU device: C source compiled by the system's C compiler, loaded with ctypes, run by our own C runtime.

Kernels are C functions over a slice of their outer loop::

    void kernel(void **bufs, const int64_t *vars, int64_t start, int64_t end);

``runtime/bolt_runtime.c`` (compiled once per machine through the same cache as kernels) owns a persistent
thread pool and runs a whole list of launches in one native call, splitting each large launch's ``[0, size)``
across the threads. Buffers are plain 64-byte aligned host memory; a handle is the buffer's address (an int),
so a view into a buffer is just ``handle + offset``.

    >>> dev = CPUDevice()
    >>> lib = dev.compiler.compile("#include <stdint.h>\\n"
    ...     "void twice(void **b, const int64_t *v, int64_t s, int64_t e) {"
    ...     " for (int64_t i = s; i < e; i++) ((float *)b[0])[i] = 2 * ((float *)b[1])[i]; }")
    >>> kernel = dev.program(lib, "twice")
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from boltgrad import config, stats
from boltgrad.device import compile_cache, cpu_features
from boltgrad.device.base import CachingAllocator, Compiler, Device, Launch
from boltgrad.errors import CompileError, DeviceUnavailable

RUNTIME_SOURCE = Path(__file__).with_name("runtime") / "bolt_runtime.c"

# ---------------------------------------------------------------- platform details


def shared_library_suffix() -> str:
    return ".dylib" if platform.system() == "Darwin" else ".so"


def native_cpu_flags() -> list[str]:
    """Tune for this machine's CPU: x86 compilers spell it -march, ARM and POWER ones -mcpu."""
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64", "i386", "i686"):
        return ["-march=native"]
    if machine.startswith(("arm", "aarch64", "ppc", "powerpc")):
        return ["-mcpu=native"]
    return []  # an unknown target: portable code beats a compiler that rejects the flag


# -O2 without -ffast-math: NaN and inf must behave as IEEE says. -fno-math-errno lets sqrt and friends inline.
# -O3 -fno-trapping-math: lets the vectoriser if-convert branches (our exp2/log2, bounds guards); we never read
# floating point exception flags. -ffp-contract=off: the compiler fuses no a*b+c on its own, so results match
# the PYTHON device; the fused multiply-adds of sums of products are explicit in the source (fmaf and its vector
# form, see codegen/linearize.py), where the PYTHON device fuses them too. -fwrapv: integer overflow wraps, the
# semantics the renderers promise.
KERNEL_FLAGS = (
    "-O3",
    *native_cpu_flags(),
    "-fPIC",
    "-shared",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-ffp-contract=off",
    "-fwrapv",
)
RUNTIME_FLAGS = ("-O2", "-std=gnu11", "-fPIC", "-shared", "-pthread")
LINK_FLAGS = ("-lm",)

# "fix:" is where the device registry's probe (and `boltgrad doctor`) splits the problem from its fix.
INSTALL_HINT = (
    "fix: install a C compiler (Debian/Ubuntu: apt-get install gcc; Fedora: dnf install gcc; "
    "macOS: xcode-select --install) or set BOLT_CC to the compiler's path"
)
MAX_SOURCE_LINES_IN_ERROR = 300


# ---------------------------------------------------------------- compiler


def find_c_compiler() -> list[str]:
    """The C compiler's command line (BOLT_CC may hold a wrapper such as ``ccache gcc``), resolved on PATH."""
    wanted = config.c_compiler()
    if wanted:
        command = shlex.split(wanted)
        found = shutil.which(command[0]) if command else None
        if found is None:
            raise DeviceUnavailable(f"CPU: the C compiler BOLT_CC={wanted!r} was not found. {INSTALL_HINT}")
        return [found, *command[1:]]
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found is not None:
            return [found]
    raise DeviceUnavailable(f"CPU: no C compiler (cc, gcc or clang) on PATH. {INSTALL_HINT}")


@functools.cache
def compiler_version(command: tuple[str, ...]) -> str:
    """What ``<compiler> --version`` prints: part of every cache key, so an upgraded compiler rebuilds kernels."""
    try:
        result = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        raise DeviceUnavailable(f"CPU: cannot run the C compiler {command[0]} ({e}). {INSTALL_HINT}") from e
    return result.stdout.strip()


class CCompiler(Compiler):
    """C source -> the path of a shared library, through the on-disk cache.

    Several kernels may share one source: compiling them in one call costs one compiler start, not several.
    ``compile`` may run in several threads at once (each call is its own compiler process and scratch folder): the
    kernel search compiles its candidates that way. A realize's new kernels stay one source: split in two and
    compiled concurrently they were no faster on a busy 2-core machine (12 kernels of an MLP step: 1.1-1.9 s
    either way).
    """

    parallel_compiles = True

    def __init__(self, flags: Sequence[str] = KERNEL_FLAGS):
        self.command = find_c_compiler()
        self.flags = [*flags, *config.extra_cflags()]
        self.version = compiler_version(tuple(self.command))
        self.toolchain = "\n".join([os.path.realpath(self.command[0]), *self.command[1:], self.version])
        self.suffix = shared_library_suffix()

    def compile(self, source: str) -> str:
        key = self.library_key(source)
        return compile_cache.get_or_build(key, lambda: self._build(source), self.suffix, namespace="c")

    def library_key(self, source: str) -> str:
        """The compile cache's key of the library built from ``source``."""
        return compile_cache.artifact_key(source, self.toolchain, [*self.flags, *LINK_FLAGS])

    def cached_library(self, key: str) -> str | None:
        """The library stored under ``key`` (see ``library_key``) if the cache holds it, without its source."""
        return compile_cache.find_entry(key, self.suffix, namespace="c")

    def cache_identity(self) -> str:
        """Everything besides the source that shapes a library: toolchain, flags and CPU."""
        return "\n".join([self.toolchain, *self.flags, *LINK_FLAGS, compile_cache.cpu_identity()])

    def _build(self, source: str) -> bytes:
        # Compile in a private scratch folder, not in the cache: a full or read-only cache folder must show up as
        # an OSError of the cache (which falls back), not as a compiler error.
        scratch = tempfile.mkdtemp(prefix="boltgrad-cc-")
        keep_scratch = False
        try:
            source_path = os.path.join(scratch, "kernel.c")
            output_path = os.path.join(scratch, "kernel" + self.suffix)
            with open(source_path, "w", encoding="utf-8") as f:
                f.write(source)
            command = [*self.command, *self.flags, "-o", output_path, source_path, *LINK_FLAGS]
            stats.compiles += 1
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                keep_scratch = True  # so the failing source can be opened and compiled by hand
                raise CompileError(_compile_error_message(command, result, source, source_path))
            with open(output_path, "rb") as f:
                return f.read()
        finally:
            if not keep_scratch:
                shutil.rmtree(scratch, ignore_errors=True)


def _compile_error_message(
    command: list[str], result: subprocess.CompletedProcess[str], source: str, source_path: str
) -> str:
    lines = source.splitlines()
    shown = [f"{number:5d} | {line}" for number, line in enumerate(lines[:MAX_SOURCE_LINES_IN_ERROR], start=1)]
    if len(lines) > MAX_SOURCE_LINES_IN_ERROR:
        shown.append(f"      ... {len(lines) - MAX_SOURCE_LINES_IN_ERROR} more lines in {source_path}")
    output = (result.stderr + result.stdout).strip()
    return "\n".join(
        [
            f"CPU: the C compiler failed (exit {result.returncode}); the source is kept at {source_path}",
            f"command: {shlex.join(command)}",
            output,
            "source:",
            *shown,
        ]
    )


# ---------------------------------------------------------------- the runtime library


class CPURuntime:
    """The loaded bolt_runtime library with typed entry points. One per process: its thread pool is global."""

    def __init__(self, library_path: str):
        lib = ctypes.CDLL(library_path)
        lib.bolt_init.argtypes = [ctypes.c_int]
        lib.bolt_init.restype = ctypes.c_int
        lib.bolt_threads.argtypes = []
        lib.bolt_threads.restype = ctypes.c_int
        lib.bolt_run.argtypes = [ctypes.c_void_p, ctypes.c_int64]
        lib.bolt_run.restype = None
        lib.bolt_alloc.argtypes = [ctypes.c_int64]
        lib.bolt_alloc.restype = ctypes.c_void_p
        lib.bolt_alloc_zeroed.argtypes = [ctypes.c_int64]
        lib.bolt_alloc_zeroed.restype = ctypes.c_void_p
        lib.bolt_free.argtypes = [ctypes.c_void_p, ctypes.c_int64]
        lib.bolt_free.restype = None
        lib.bolt_shutdown.argtypes = []
        lib.bolt_shutdown.restype = None
        self.library = lib
        self.path = library_path
        self.init = lib.bolt_init
        self.run = lib.bolt_run
        self.alloc = lib.bolt_alloc
        self.alloc_zeroed = lib.bolt_alloc_zeroed
        self.free = lib.bolt_free
        self.shutdown = lib.bolt_shutdown

    @property
    def threads(self) -> int:
        return self.library.bolt_threads()


_runtime: CPURuntime | None = None


def load_runtime() -> CPURuntime:
    """Compile (once per machine, then from the cache) and load the C runtime for this process."""
    global _runtime
    if _runtime is None:
        if ctypes.sizeof(ctypes.c_void_p) != 8:
            raise DeviceUnavailable("CPU: the runtime needs a 64-bit Python (launch records are int64)")
        path = CCompiler(RUNTIME_FLAGS).compile(RUNTIME_SOURCE.read_text(encoding="utf-8"))
        _runtime = CPURuntime(path)
    return _runtime


# ---------------------------------------------------------------- allocator


class CPUAllocator(CachingAllocator):
    """64-byte aligned host memory from bolt_alloc; a handle is the address as an int."""

    def __init__(self, runtime: CPURuntime):
        super().__init__()
        self._runtime_alloc = runtime.alloc
        self._runtime_alloc_zeroed = runtime.alloc_zeroed
        self._runtime_free = runtime.free

    def _raw_alloc(self, nbytes: int) -> int:
        address = self._runtime_alloc(nbytes)
        if not address:
            raise MemoryError(f"CPU: cannot allocate {nbytes} bytes")
        return address

    def _raw_free(self, handle: int, nbytes: int) -> None:
        self._runtime_free(handle, nbytes)

    def alloc_zeroed(self, nbytes: int) -> int:
        """Fresh memory, never a cached block: a large one is zero pages that take no memory until written."""
        address = self._runtime_alloc_zeroed(nbytes)
        if not address:
            self.free_cached()
            address = self._runtime_alloc_zeroed(nbytes)
        if not address:
            raise MemoryError(f"CPU: cannot allocate {nbytes} bytes")
        return address

    def copyin(self, handle: int, src: memoryview) -> None:
        src = src.cast("B") if src.format != "B" or src.ndim != 1 else src
        if src.nbytes:
            _view(handle, src.nbytes)[:] = src

    def copyout(self, dest: memoryview, handle: int) -> None:
        dest = dest.cast("B") if dest.format != "B" or dest.ndim != 1 else dest
        if dest.nbytes:
            dest[:] = _view(handle, dest.nbytes)

    def as_host_view(self, handle: int, nbytes: int) -> memoryview:
        """A writable view of the buffer's bytes; valid only until the buffer is freed."""
        return _view(handle, nbytes)


def return_free_memory() -> None:
    """Hand the C library's free heap memory back to the OS (glibc's ``malloc_trim``; elsewhere nothing).

    Loading a model frees many blocks of many sizes (staging copies, the parsed metadata); the heap keeps them
    for reuse and they count as resident until returned."""
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): its allocator returns memory its own way
        return
    trim.argtypes = [ctypes.c_size_t]
    trim(0)


def _view(address: int, nbytes: int) -> memoryview:
    return memoryview((ctypes.c_char * nbytes).from_address(address)).cast("B")


# ---------------------------------------------------------------- programs and launch lists


@dataclass(frozen=True, slots=True)
class CPUProgram:
    """A kernel's entry point; ``library`` keeps its shared library mapped while the program lives."""

    name: str
    address: int
    library: ctypes.CDLL


class CPULaunchList:
    """Launches packed once into the runtime's ``bolt_launch`` records; ``run()`` replays them in one native call.

    The records, buffer-pointer and variable arrays are ``array('q')`` objects owned here, so they stay alive
    (and at fixed addresses) for every run. ``set_buffer`` and ``set_var`` patch a slot in place, which lets a
    replayed step point at new input buffers or variable values without repacking.
    """

    RECORD = 5  # int64 fields per launch: fn, bufs, vars, size, cost (the layout of bolt_launch)

    def __init__(self, runtime: CPURuntime, launches: Sequence[Launch]):
        self._run = runtime.run
        self._count = len(launches)
        self._buffers = array("q", [handle for launch in launches for handle in launch.buffers])
        self._vars = array("q", [value for launch in launches for value in launch.var_values])
        buffers_base, vars_base = self._buffers.buffer_info()[0], self._vars.buffer_info()[0]
        self._buffer_offsets: list[int] = []
        self._var_offsets: list[int] = []
        fields: list[int] = []
        buffer_offset = var_offset = 0
        for launch in launches:
            self._buffer_offsets.append(buffer_offset)
            self._var_offsets.append(var_offset)
            fields += (
                launch.program.address,
                buffers_base + 8 * buffer_offset,
                vars_base + 8 * var_offset,
                launch.size,
                launch.cost,
            )
            buffer_offset += len(launch.buffers)
            var_offset += len(launch.var_values)
        self._records = array("q", fields)
        self._records_address = self._records.buffer_info()[0]

    def __len__(self) -> int:
        return self._count

    def run(self) -> None:
        if self._count:
            self._run(self._records_address, self._count)

    def set_buffer(self, launch_index: int, slot: int, handle: int) -> None:
        self._buffers[self._buffer_offsets[launch_index] + slot] = handle

    def set_var(self, launch_index: int, slot: int, value: int) -> None:
        self._vars[self._var_offsets[launch_index] + slot] = value


# ---------------------------------------------------------------- the device


class CPUDevice(Device):
    """Runs C kernels on every core of this machine.

    The thread count comes from ``BOLT_THREADS`` (``config.cpu_threads()``) when the device is made; the pool is
    one per process, so the most recently made CPUDevice sets it.
    """

    renderer = "c"

    def __init__(self, name: str = "CPU"):
        super().__init__(name)
        self._compiler = CCompiler()
        self._runtime = load_runtime()
        self.threads = self._runtime.init(config.cpu_threads())
        self._allocator = CPUAllocator(self._runtime)
        self._libraries: dict[str, ctypes.CDLL] = {}
        self.vector_widths = cpu_features.vector_widths()

    @property
    def allocator(self) -> CPUAllocator:
        return self._allocator

    @property
    def compiler(self) -> CCompiler:
        return self._compiler

    def program(self, library: str, name: str) -> CPUProgram:
        """The kernel ``name`` in the shared library at path ``library`` (each library is loaded once)."""
        lib = self._libraries.get(library)
        if lib is None:
            lib = self._libraries[library] = ctypes.CDLL(library)
        try:
            function = getattr(lib, name)
        except AttributeError:
            raise ValueError(f"CPU: no kernel named {name!r} in {library}") from None
        address = ctypes.cast(function, ctypes.c_void_p).value
        assert address is not None
        return CPUProgram(name, address, lib)

    def graph(self, launches: Sequence[Launch]) -> CPULaunchList:
        """Pack launches once for repeated replay (the CPU's Graph)."""
        return CPULaunchList(self._runtime, launches)

    def run(self, launches: list[Launch]) -> None:
        """Run the launches in order, in one native call; returns when all of them have finished."""
        CPULaunchList(self._runtime, launches).run()

    def synchronize(self) -> None:
        """Nothing to wait for: ``run`` (bolt_run) returns only after every launch has finished."""

    def self_check(self) -> str:
        """Compile, run and check one small kernel; returns what works, for ``boltgrad doctor``."""
        library = self._compiler.compile(_SELF_CHECK_SOURCE)
        n = 100_000  # large enough to be split across the pool
        out = self._allocator.alloc(8 * n)
        try:
            self.run([Launch(self.program(library, "bolt_self_check"), (out,), (3,), size=n)])
            values = self._allocator.as_host_view(out, 8 * n).cast("q")
            if values[0] != 3 or values[n - 1] != 3 * n:
                raise RuntimeError(f"CPU: self-check kernel computed {values[0]}, {values[n - 1]}, not 3, {3 * n}")
            del values
        finally:
            self._allocator.free(out, 8 * n)
        version = self._compiler.version.splitlines()[0] if self._compiler.version else self._compiler.command[0]
        return f"{version}; {self.threads} threads; vectors of {self.vector_widths[0]} floats"


_SELF_CHECK_SOURCE = """#include <stdint.h>
void bolt_self_check(void **bufs, const int64_t *vars, int64_t start, int64_t end) {
  for (int64_t i = start; i < end; i++) ((int64_t *)bufs[0])[i] = vars[0] * (i + 1);
}
"""
