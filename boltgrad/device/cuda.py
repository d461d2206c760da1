"""The CUDA device: NVIDIA GPUs through the driver API (libcuda) and NVRTC, both loaded with ctypes.

Why ctypes and not NVIDIA's ``cuda-bindings``: the device needs about thirty C functions with plain
signatures (handles, sizes, pointers). ctypes reaches them with nothing installed beyond the driver, which
every machine with an NVIDIA GPU has, and NVRTC, a single shared library; ``cuda-bindings`` would add a
compiled dependency whose releases must match the driver's CUDA major version, for no capability we use.
The price is that we declare the signatures ourselves (``_DRIVER`` and ``_NVRTC`` below).

- **Memory**: ``cuMemAlloc`` through the caching allocator (freed blocks are reused by size). Out of memory:
  the cached blocks are freed and the allocation tried once more; then the error names the device, the size
  asked and what is free.
- **Copies**: host memory is staged through two pinned buffers (``cuMemHostAlloc``), so uploads are
  asynchronous on the device's stream; a download waits for the stream. Device-to-device copies are
  ``cuMemcpyDtoDAsync`` (``cuMemcpyPeerAsync`` between two GPUs).
- **Kernels**: CUDA C (``render/cuda.py``) compiled by NVRTC to a cubin for this GPU's architecture (PTX for
  a GPU newer than the NVRTC), cached on disk like C kernels, loaded with ``cuModuleLoadData`` and launched
  with ``cuLaunchKernel`` on one stream per device, in order. A kernel's block size is its
  ``__launch_bounds__``; a launch of ``size`` threads runs ``size / block`` blocks.
- **NVRTC** is found, in order: ``BOLT_NVRTC``; the ``nvidia-cuda-nvrtc`` wheel (``pip install
  boltgrad[cuda]``; ``nvidia/cu13/lib`` or ``nvidia/cuda_nvrtc/lib`` on ``sys.path``), which is also where an
  installed PyTorch's NVIDIA wheels put it; ``CUDA_HOME``; ``/usr/local/cuda``; the system's library path.

Without a driver, a GPU or NVRTC the device cannot be opened and says which is missing and how to fix it
(``boltgrad doctor`` shows it); importing this module never fails.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

from boltgrad import config, stats
from boltgrad.device import compile_cache
from boltgrad.device.base import CachingAllocator, Compiler, Device, Launch
from boltgrad.errors import CompileError, DeviceUnavailable

DRIVER_FIX = "fix: install the NVIDIA driver (it provides libcuda.so.1), or use another device (CPU)"
NVRTC_FIX = "fix: pip install 'boltgrad[cuda]' (the nvidia-cuda-nvrtc wheel), or set BOLT_NVRTC to libnvrtc's path"
MAX_SOURCE_LINES_IN_ERROR = 300
STAGING_BYTES = 16 << 20  # each of the two pinned staging buffers

_c = ctypes
_p = ctypes.c_void_p
_size = ctypes.c_size_t
_ptr = ctypes.c_uint64  # CUdeviceptr
# name: (argument types); every driver call returns a CUresult (int)
_DRIVER = {
    "cuInit": [_c.c_uint],
    "cuDriverGetVersion": [_c.POINTER(_c.c_int)],
    "cuDeviceGetCount": [_c.POINTER(_c.c_int)],
    "cuDeviceGet": [_c.POINTER(_c.c_int), _c.c_int],
    "cuDeviceGetName": [_c.c_char_p, _c.c_int, _c.c_int],
    "cuDeviceGetAttribute": [_c.POINTER(_c.c_int), _c.c_int, _c.c_int],
    "cuDeviceTotalMem_v2": [_c.POINTER(_size), _c.c_int],
    "cuDevicePrimaryCtxRetain": [_c.POINTER(_p), _c.c_int],
    "cuCtxSetCurrent": [_p],
    "cuCtxSynchronize": [],
    "cuMemAlloc_v2": [_c.POINTER(_ptr), _size],
    "cuMemFree_v2": [_ptr],
    "cuMemGetInfo_v2": [_c.POINTER(_size), _c.POINTER(_size)],
    "cuMemHostAlloc": [_c.POINTER(_p), _size, _c.c_uint],
    "cuMemFreeHost": [_p],
    "cuMemcpyHtoDAsync_v2": [_ptr, _p, _size, _p],
    "cuMemcpyDtoHAsync_v2": [_p, _ptr, _size, _p],
    "cuMemcpyDtoDAsync_v2": [_ptr, _ptr, _size, _p],
    "cuMemcpyPeerAsync": [_ptr, _p, _ptr, _p, _size, _p],
    "cuModuleLoadData": [_c.POINTER(_p), _c.c_char_p],
    "cuModuleUnload": [_p],
    "cuModuleGetFunction": [_c.POINTER(_p), _p, _c.c_char_p],
    # function, grid x y z, block x y z, shared memory bytes, stream, kernel parameters, extra
    "cuLaunchKernel": [_p, *[_c.c_uint] * 7, _p, _c.POINTER(_p), _c.POINTER(_p)],
    "cuStreamCreate": [_c.POINTER(_p), _c.c_uint],
    "cuStreamSynchronize": [_p],
    "cuEventCreate": [_c.POINTER(_p), _c.c_uint],
    "cuEventRecord": [_p, _p],
    "cuEventSynchronize": [_p],
    "cuEventElapsedTime": [_c.POINTER(_c.c_float), _p, _p],
    "cuEventDestroy_v2": [_p],
    "cuGetErrorName": [_c.c_int, _c.POINTER(_c.c_char_p)],
    "cuGetErrorString": [_c.c_int, _c.POINTER(_c.c_char_p)],
}
_NVRTC = {
    "nvrtcVersion": [_c.POINTER(_c.c_int), _c.POINTER(_c.c_int)],
    "nvrtcGetNumSupportedArchs": [_c.POINTER(_c.c_int)],
    "nvrtcGetSupportedArchs": [_c.POINTER(_c.c_int)],
    "nvrtcCreateProgram": [_c.POINTER(_p), _c.c_char_p, _c.c_char_p, _c.c_int, _p, _p],
    "nvrtcCompileProgram": [_p, _c.c_int, _c.POINTER(_c.c_char_p)],
    "nvrtcGetProgramLogSize": [_p, _c.POINTER(_size)],
    "nvrtcGetProgramLog": [_p, _c.c_char_p],
    "nvrtcGetCUBINSize": [_p, _c.POINTER(_size)],
    "nvrtcGetCUBIN": [_p, _c.c_char_p],
    "nvrtcGetPTXSize": [_p, _c.POINTER(_size)],
    "nvrtcGetPTX": [_p, _c.c_char_p],
    "nvrtcDestroyProgram": [_c.POINTER(_p)],
}
CUDA_ERROR_OUT_OF_MEMORY = 2
CUDA_ERROR_NO_DEVICE = 100
ATTR_CC_MAJOR, ATTR_CC_MINOR, ATTR_SM_COUNT = 75, 76, 16
CU_MEMHOSTALLOC_PORTABLE = 1


def _bind(lib: ctypes.CDLL, table: dict[str, list], restype: Any) -> Any:
    class Functions:
        pass

    out = Functions()
    for name, argtypes in table.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, restype
        setattr(out, name, fn)
    return out


# ---------------------------------------------------------------- the driver


class Driver:
    """libcuda's functions, each raising RuntimeError with the driver's own name and text for a failure."""

    def __init__(self) -> None:
        try:
            lib = ctypes.CDLL("libcuda.so.1" if sys.platform != "win32" else "nvcuda.dll")
        except OSError as e:
            raise DeviceUnavailable(f"CUDA: no NVIDIA driver: libcuda.so.1 cannot be loaded ({e}). {DRIVER_FIX}") from e
        self.fn = _bind(lib, _DRIVER, ctypes.c_int)
        result = self.fn.cuInit(0)
        if result == CUDA_ERROR_NO_DEVICE:
            raise DeviceUnavailable("CUDA: the NVIDIA driver is installed but sees no GPU (CUDA_ERROR_NO_DEVICE). "
                                    "fix: check nvidia-smi and CUDA_VISIBLE_DEVICES")  # fmt: skip
        self.check(result, "cuInit")

    def error_text(self, result: int) -> str:
        name, text = ctypes.c_char_p(), ctypes.c_char_p()
        self.fn.cuGetErrorName(result, ctypes.byref(name))
        self.fn.cuGetErrorString(result, ctypes.byref(text))
        decode = lambda s: s.value.decode() if s.value else "?"  # noqa: E731
        return f"{decode(name)} ({result}): {decode(text)}"

    def check(self, result: int, what: str) -> None:
        if result != 0:
            raise RuntimeError(f"CUDA: {what} failed: {self.error_text(result)}")

    def call(self, name: str, *args: Any) -> None:
        self.check(getattr(self.fn, name)(*args), name)


_driver: Driver | None = None


def driver() -> Driver:
    global _driver
    if _driver is None:
        _driver = Driver()
    return _driver


# ---------------------------------------------------------------- NVRTC


def nvrtc_candidates() -> list[str]:
    """Where NVRTC may be, most specific first (see the module's docstring)."""
    found = []
    if config.nvrtc_library():
        found.append(config.nvrtc_library())
    for folder in sys.path:
        for sub in ("nvidia/cu13/lib", "nvidia/cu12/lib", "nvidia/cuda_nvrtc/lib"):
            found += sorted(glob.glob(os.path.join(folder or ".", sub, "libnvrtc.so*")), reverse=True)
    for home in (config.cuda_home(), "/usr/local/cuda"):
        if home:
            for lib in ("lib64", "lib"):
                found += sorted(glob.glob(os.path.join(home, lib, "libnvrtc.so*")), reverse=True)
    system = ctypes.util.find_library("nvrtc")
    if system:
        found.append(system)
    return [p for p in dict.fromkeys(found) if "builtins" not in os.path.basename(p) and not p.endswith(".alt.so")]


class NVRTC:
    """The NVRTC library: CUDA C -> cubin (or PTX). Needs no driver and no GPU."""

    def __init__(self, path: str | None = None):
        candidates = [path] if path else nvrtc_candidates()
        errors = []
        for candidate in candidates:
            try:
                lib = ctypes.CDLL(candidate)
                self.fn = _bind(lib, _NVRTC, ctypes.c_int)
                lib.nvrtcGetErrorString.argtypes, lib.nvrtcGetErrorString.restype = [ctypes.c_int], ctypes.c_char_p
                self.error_string = lib.nvrtcGetErrorString
                self.path = candidate
                break
            except (OSError, AttributeError) as e:
                errors.append(f"{candidate}: {e}")
        else:
            looked = "; ".join(errors) if errors else "no libnvrtc.so in wheels, CUDA_HOME or /usr/local/cuda"
            raise DeviceUnavailable(f"CUDA: NVRTC (the CUDA compiler library) was not found ({looked}). {NVRTC_FIX}")
        major, minor = ctypes.c_int(), ctypes.c_int()
        self.fn.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
        self.version = (major.value, minor.value)

    def supported_archs(self) -> list[int]:
        count = ctypes.c_int()
        if self.fn.nvrtcGetNumSupportedArchs(ctypes.byref(count)) != 0 or count.value <= 0:
            return []
        archs = (ctypes.c_int * count.value)()
        self.fn.nvrtcGetSupportedArchs(archs)
        return sorted(archs)

    def compile(self, source: str, arch: int, cubin: bool, options: list[str]) -> bytes:
        """``arch`` 90 for sm_90; ``cubin`` False gives PTX for compute_<arch> (the driver finishes it)."""
        prog = ctypes.c_void_p()
        self._check(self.fn.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"boltgrad.cu", 0, None, None),
                    "nvrtcCreateProgram")  # fmt: skip
        try:
            opts = [f"--gpu-architecture={'sm' if cubin else 'compute'}_{arch}", *options]
            array = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
            result = self.fn.nvrtcCompileProgram(prog, len(opts), array)
            if result != 0:
                raise CompileError(_compile_error_message(self, prog, result, source, opts))
            size = ctypes.c_size_t()
            get_size, get = (self.fn.nvrtcGetCUBINSize, self.fn.nvrtcGetCUBIN) if cubin else (
                self.fn.nvrtcGetPTXSize, self.fn.nvrtcGetPTX)  # fmt: skip
            self._check(get_size(prog, ctypes.byref(size)), "nvrtcGet(CUBIN|PTX)Size")
            out = ctypes.create_string_buffer(size.value)
            self._check(get(prog, out), "nvrtcGet(CUBIN|PTX)")
            return out.raw
        finally:
            self.fn.nvrtcDestroyProgram(ctypes.byref(prog))

    def log(self, prog: ctypes.c_void_p) -> str:
        size = ctypes.c_size_t()
        self.fn.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(max(size.value, 1))
        self.fn.nvrtcGetProgramLog(prog, buf)
        return buf.value.decode(errors="replace")

    def _check(self, result: int, what: str) -> None:
        if result != 0:
            raise RuntimeError(f"CUDA: {what} failed: {self.error_string(result).decode()}")


def _compile_error_message(nvrtc: NVRTC, prog: Any, result: int, source: str, options: list[str]) -> str:
    """NVRTC's log, then the source: all of it when short, else the lines around each line the log names."""
    log = nvrtc.log(prog).strip()
    lines = source.splitlines()
    numbered = [f"{number:5d} | {line}" for number, line in enumerate(lines, start=1)]
    if len(lines) > MAX_SOURCE_LINES_IN_ERROR:
        named = sorted({int(m) for m in re.findall(r"boltgrad\.cu\((\d+)\)", log)})[:5]
        keep = sorted({i for n in named for i in range(max(n - 6, 0), min(n + 3, len(lines)))})
        numbered = [numbered[i] for i in keep] or numbered[:MAX_SOURCE_LINES_IN_ERROR]
        numbered.append(f"      ({len(lines)} lines in all; the lines around those the log names are shown)")
    head = f"CUDA: NVRTC failed ({nvrtc.error_string(result).decode()}), options {' '.join(options)}"
    return "\n".join([head, log, "source:", *numbered])


@dataclass(frozen=True)
class CUDALibrary:
    """A compiled module on disk and the block size of each of its kernels (from their ``__launch_bounds__``)."""

    path: str
    blocks: dict[str, int]


_LAUNCH_BOUNDS = re.compile(r"__launch_bounds__\((\d+)(?:,\s*\d+)?\)\s+(\w+)\s*\(")


def nvrtc_status() -> str:
    """One line on NVRTC for a report: its version and where it is, or that it is missing."""
    try:
        nvrtc = NVRTC()
    except DeviceUnavailable:
        return "NVRTC: not found either (pip install 'boltgrad[cuda]')"
    return f"NVRTC {nvrtc.version[0]}.{nvrtc.version[1]} found at {nvrtc.path}"


class NVRTCCompiler(Compiler):
    """CUDA source -> the path of a cubin (or PTX) for one architecture, through the on-disk cache."""

    OPTIONS = ["--std=c++17", "--diag-suppress=177"]  # 177: a helper of the preamble this unit does not use

    def __init__(self, arch: int, nvrtc: NVRTC | None = None):
        self.nvrtc = nvrtc or NVRTC()
        supported = self.nvrtc.supported_archs()
        # a GPU newer than this NVRTC gets PTX of the newest architecture NVRTC knows; the driver compiles it
        self.cubin = not supported or arch in supported
        self.arch = arch if self.cubin else max(a for a in supported if a <= arch) if min(supported) <= arch else arch
        self.toolchain = f"nvrtc {self.nvrtc.version[0]}.{self.nvrtc.version[1]}"

    def compile(self, source: str) -> CUDALibrary:
        kind = "cubin" if self.cubin else "ptx"
        key = compile_cache.artifact_key(source, self.toolchain, [kind, str(self.arch), *self.OPTIONS], cpu="")
        build = lambda: self._build(source)  # noqa: E731
        path = compile_cache.get_or_build(key, build, "." + kind, namespace="cuda")
        blocks = {m.group(2): int(m.group(1)) for m in _LAUNCH_BOUNDS.finditer(source)}
        return CUDALibrary(path, blocks)

    def _build(self, source: str) -> bytes:
        stats.compiles += 1
        data = self.nvrtc.compile(source, self.arch, self.cubin, self.OPTIONS)
        return data if self.cubin else data.rstrip(b"\0") + b"\0"


# ---------------------------------------------------------------- memory


class CUDAAllocator(CachingAllocator):
    """Device memory; a handle is the device address (an int). Host copies go through pinned staging."""

    cache_limit = 4 << 30

    def __init__(self, device: CUDADevice):
        super().__init__()
        self.device = device
        self.drv = device.drv
        self.staging: list[tuple[int, Any]] = []  # (pinned address, event of the last copy out of it)
        self.next_staging = 0

    def _raw_alloc(self, nbytes: int) -> int:
        self.device.make_current()
        address = ctypes.c_uint64()
        result = self.drv.fn.cuMemAlloc_v2(ctypes.byref(address), max(nbytes, 1))
        if result == CUDA_ERROR_OUT_OF_MEMORY:
            free, total = self.device.memory_info()
            cached = self._cached_bytes
            raise MemoryError(f"{self.device.name}: out of device memory allocating {nbytes} bytes "
                              f"({nbytes / 2**20:.1f} MiB); {free / 2**20:.1f} MiB of {total / 2**20:.1f} MiB are free "
                              f"(and {cached / 2**20:.1f} MiB cached for reuse). "
                              "fix: use smaller batches or tensors, or drop tensors no longer needed")  # fmt: skip
        self.drv.check(result, f"cuMemAlloc of {nbytes} bytes on {self.device.name}")
        return address.value

    def _raw_free(self, handle: int, nbytes: int = 0) -> None:
        self.device.synchronize()  # a kernel still queued may read it (a cached block is free only to the host)
        self.drv.call("cuMemFree_v2", handle)

    def _staging_buffer(self) -> tuple[int, Any]:
        """The next of the two pinned buffers, once the copy that last used it has finished."""
        if not self.staging:
            for _ in range(2):
                host = ctypes.c_void_p()
                self.drv.call("cuMemHostAlloc", ctypes.byref(host), STAGING_BYTES, CU_MEMHOSTALLOC_PORTABLE)
                self.staging.append((host.value, self.device.new_event()))
        address, event = self.staging[self.next_staging]
        self.next_staging = (self.next_staging + 1) % len(self.staging)
        self.drv.call("cuEventSynchronize", event)
        return address, event

    def copyin(self, handle: int, src: memoryview) -> None:
        src = src.cast("B") if src.format != "B" or src.ndim != 1 else src
        self.device.make_current()
        for offset in range(0, src.nbytes, STAGING_BYTES):
            chunk = src[offset : offset + STAGING_BYTES]
            host, event = self._staging_buffer()
            _host_view(host, chunk.nbytes)[:] = chunk
            self.drv.call("cuMemcpyHtoDAsync_v2", handle + offset, host, chunk.nbytes, self.device.stream)
            self.drv.call("cuEventRecord", event, self.device.stream)

    def copyout(self, dest: memoryview, handle: int) -> None:
        dest = dest.cast("B") if dest.format != "B" or dest.ndim != 1 else dest
        self.device.make_current()
        for offset in range(0, dest.nbytes, STAGING_BYTES):
            n = min(STAGING_BYTES, dest.nbytes - offset)
            host, event = self._staging_buffer()
            self.drv.call("cuMemcpyDtoHAsync_v2", host, handle + offset, n, self.device.stream)
            self.drv.call("cuStreamSynchronize", self.device.stream)
            dest[offset : offset + n] = _host_view(host, n)

    def transfer(self, dest: int, src: int, nbytes: int, src_device: Device) -> None:
        """Copy ``nbytes`` from a buffer of ``src_device`` (this device or another CUDA device) into ``dest``."""
        self.device.make_current()
        if src_device is self.device:
            self.drv.call("cuMemcpyDtoDAsync_v2", dest, src, nbytes, self.device.stream)
            return
        assert isinstance(src_device, CUDADevice)
        src_device.synchronize()  # the source's own stream may still be writing it
        self.drv.call("cuMemcpyPeerAsync", dest, self.device.context, src, src_device.context, nbytes,
                      self.device.stream)  # fmt: skip


def _host_view(address: int, nbytes: int) -> memoryview:
    return memoryview((ctypes.c_char * nbytes).from_address(address)).cast("B")


# ---------------------------------------------------------------- programs and the device


@dataclass(frozen=True)
class CUDAProgram:
    name: str
    function: int
    block: int
    module: Any  # keeps the module loaded while the program lives


class CUDADevice(Device):
    """One NVIDIA GPU: ``CUDA`` is GPU 0, ``CUDA:1`` the second."""

    renderer = "cuda"

    def __init__(self, name: str = "CUDA"):
        super().__init__(name)
        try:
            self.drv = driver()
        except DeviceUnavailable as e:  # say too whether the compiler is there, so one fix does not hide the next
            problem, _, fix = str(e).partition(" fix: ")
            raise DeviceUnavailable(f"{problem} {nvrtc_status()}. fix: {fix}") from None
        index = int(name.partition(":")[2] or 0)
        count = ctypes.c_int()
        self.drv.call("cuDeviceGetCount", ctypes.byref(count))
        if not 0 <= index < count.value:
            raise DeviceUnavailable(f"CUDA: no GPU number {index}: this machine has {count.value}. "
                                    f"fix: use CUDA:0 to CUDA:{max(count.value - 1, 0)}")  # fmt: skip
        handle = ctypes.c_int()
        self.drv.call("cuDeviceGet", ctypes.byref(handle), index)
        self.handle = handle.value
        self.context = ctypes.c_void_p()
        self.drv.call("cuDevicePrimaryCtxRetain", ctypes.byref(self.context), self.handle)  # shared with PyTorch's
        self.make_current()
        self.stream = ctypes.c_void_p()
        self.drv.call("cuStreamCreate", ctypes.byref(self.stream), 0)
        self.arch = 10 * self.attribute(ATTR_CC_MAJOR) + self.attribute(ATTR_CC_MINOR)
        name_buf = ctypes.create_string_buffer(256)
        self.drv.call("cuDeviceGetName", name_buf, 256, self.handle)
        self.gpu_name = name_buf.value.decode()
        self._compiler = NVRTCCompiler(self.arch)
        self._allocator = CUDAAllocator(self)
        self._modules: dict[str, Any] = {}

    def make_current(self) -> None:
        self.drv.call("cuCtxSetCurrent", self.context)

    def attribute(self, attr: int) -> int:
        out = ctypes.c_int()
        self.drv.call("cuDeviceGetAttribute", ctypes.byref(out), attr, self.handle)
        return out.value

    def memory_info(self) -> tuple[int, int]:
        self.make_current()
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        self.drv.call("cuMemGetInfo_v2", ctypes.byref(free), ctypes.byref(total))
        return free.value, total.value

    def new_event(self, timing: bool = False) -> Any:
        event = ctypes.c_void_p()
        self.drv.call("cuEventCreate", ctypes.byref(event), 0 if timing else 2)  # 2: CU_EVENT_DISABLE_TIMING
        return event

    @property
    def allocator(self) -> CUDAAllocator:
        return self._allocator

    @property
    def compiler(self) -> NVRTCCompiler:
        return self._compiler

    def program(self, library: CUDALibrary, name: str) -> CUDAProgram:
        """The kernel ``name`` of a compiled module; each module is loaded once."""
        module = self._modules.get(library.path)
        if module is None:
            with open(library.path, "rb") as f:
                image = f.read()
            self.make_current()
            module = ctypes.c_void_p()
            self.drv.call("cuModuleLoadData", ctypes.byref(module), image)
            self._modules[library.path] = module
        if name not in library.blocks:
            raise ValueError(f"{self.name}: kernel {name} has no __launch_bounds__ (its block size) in its source")
        function = ctypes.c_void_p()
        self.drv.call("cuModuleGetFunction", ctypes.byref(function), module, name.encode())
        return CUDAProgram(name, function.value, library.blocks[name], module)

    def run(self, launches: list[Launch]) -> None:
        """Queue the launches on this device's stream, in order; returns before they finish."""
        self.make_current()
        launch_kernel = self.drv.fn.cuLaunchKernel
        for launch in launches:
            prog: CUDAProgram = launch.program
            values = [ctypes.c_uint64(h) for h in launch.buffers] + [ctypes.c_int64(v) for v in launch.var_values]
            params = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
            grid = launch.size // prog.block
            result = launch_kernel(prog.function, grid, 1, 1, prog.block, 1, 1, 0, self.stream, params, None)
            if result != 0:
                self.drv.check(result, f"launching {prog.name} ({grid} blocks of {prog.block})")

    def synchronize(self) -> None:
        self.make_current()
        self.drv.call("cuStreamSynchronize", self.stream)

    def self_check(self) -> str:
        """Compile, run and check one small kernel; returns what works, for ``boltgrad doctor``."""
        library = self._compiler.compile(_SELF_CHECK_SOURCE)
        n = 1000
        out = self._allocator.alloc(8 * n)
        try:
            self.run([Launch(self.program(library, "bolt_self_check"), (out,), (3,), size=1024)])
            result = memoryview(bytearray(8 * n))
            self._allocator.copyout(result, out)
            values = result.cast("q")
            if values[0] != 3 or values[n - 1] != 3 * n:
                raise RuntimeError(f"CUDA: self-check kernel computed {values[0]}, {values[n - 1]}, not 3, {3 * n}")
        finally:
            self._allocator.free(out, 8 * n)
        free, total = self.memory_info()
        kind = "cubin" if self._compiler.cubin else "PTX"
        return (f"{self.gpu_name} (sm_{self.arch}), {free / 2**30:.1f} of {total / 2**30:.1f} GiB free; "
                f"NVRTC {self._compiler.nvrtc.version[0]}.{self._compiler.nvrtc.version[1]} ({kind}) at "
                f"{self._compiler.nvrtc.path}")  # fmt: skip


_SELF_CHECK_SOURCE = """typedef long long int64_t;
extern "C" __global__ void __launch_bounds__(256) bolt_self_check(int64_t *out, const int64_t k) {
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < 1000) out[i] = k * (i + 1);
}
"""
