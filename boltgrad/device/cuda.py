"""The CUDA device: NVIDIA GPUs through the driver API (libcuda) and NVRTC, both loaded with ctypes.

Why ctypes and not NVIDIA's ``cuda-bindings``: the device needs about thirty C functions with plain
signatures (handles, sizes, pointers). ctypes reaches them with nothing installed beyond the driver, which
every machine with an NVIDIA GPU has, and NVRTC, a single shared library; ``cuda-bindings`` would add a
compiled dependency whose releases must match the driver's CUDA major version, for no capability we use.
The price is that we declare the signatures ourselves (``_DRIVER`` below, ``_NVRTC`` in ``nvrtc.py``).

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
- **Graphs**: a jitted step's launches replay as one CUDA graph (``CUDAGraph``): built once from kernel nodes,
  launched with ``cuGraphLaunch``; a replay's new buffer addresses and Variable values update only the nodes
  that read them. ``BOLT_CUDA_GRAPHS=0``, or a driver that cannot build the graph, replays launch by launch.
- **NVRTC** (``nvrtc.py``) compiles the kernels; it needs no driver and no GPU.

Without a driver, a GPU or NVRTC the device cannot be opened and says which is missing and how to fix it
(``boltgrad doctor`` shows it); importing this module never fails.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import weakref
from dataclasses import dataclass
from typing import Any

from boltgrad import config, stats
from boltgrad.device.base import CachingAllocator, Device, Launch, LaunchGraph
from boltgrad.device.nvrtc import CUDALibrary, NVRTCCompiler, bind_functions, nvrtc_status
from boltgrad.errors import DeviceUnavailable

DRIVER_FIX = "fix: install the NVIDIA driver (it provides libcuda.so.1), or use another device (CPU)"
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


class KernelNodeParams(ctypes.Structure):
    """CUDA_KERNEL_NODE_PARAMS in its CUDA 12 (``_v2``) layout; ``kern`` and ``ctx`` stay NULL (``func`` is set)."""

    _fields_ = [("func", _p), ("grid", _c.c_uint * 3), ("block", _c.c_uint * 3), ("shared_bytes", _c.c_uint),
                ("params", _c.POINTER(_p)), ("extra", _p), ("kern", _p), ("ctx", _p)]  # fmt: skip


# CUDA graphs, bound on first use and apart from _DRIVER: a driver without them (before CUDA 12, which brought the
# _v2 node functions) still runs kernels, and a jitted step replays on it launch by launch
_GRAPH_DRIVER = {
    "cuGraphCreate": [_c.POINTER(_p), _c.c_uint],
    # node, graph, dependencies, how many, parameters
    "cuGraphAddKernelNode_v2": [_c.POINTER(_p), _p, _c.POINTER(_p), _size, _c.POINTER(KernelNodeParams)],
    "cuGraphInstantiateWithFlags": [_c.POINTER(_p), _p, _c.c_ulonglong],
    "cuGraphExecKernelNodeSetParams_v2": [_p, _p, _c.POINTER(KernelNodeParams)],
    "cuGraphLaunch": [_p, _p],
    "cuGraphExecDestroy": [_p],
    "cuGraphDestroy": [_p],
}
CUDA_ERROR_OUT_OF_MEMORY = 2
CUDA_ERROR_NO_DEVICE = 100
ATTR_CC_MAJOR, ATTR_CC_MINOR, ATTR_SM_COUNT = 75, 76, 16
CU_MEMHOSTALLOC_PORTABLE = 1


# ---------------------------------------------------------------- the driver


class CUDAError(RuntimeError):
    """A driver call failed; ``result`` is its CUresult (None: the driver lacks the function)."""

    def __init__(self, message: str, result: int | None):
        super().__init__(message)
        self.result = result


class Driver:
    """libcuda's functions; a failure raises CUDAError (a RuntimeError) with the driver's own name and text."""

    def __init__(self) -> None:
        try:
            lib = ctypes.CDLL("libcuda.so.1" if sys.platform != "win32" else "nvcuda.dll")
        except OSError as e:
            raise DeviceUnavailable(f"CUDA: no NVIDIA driver: libcuda.so.1 cannot be loaded ({e}). {DRIVER_FIX}") from e
        self.lib = lib
        self.fn = bind_functions(lib, _DRIVER, ctypes.c_int)
        self._graph_fn: Any = None
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
            raise CUDAError(f"CUDA: {what} failed: {self.error_text(result)}", result)

    def call(self, name: str, *args: Any) -> None:
        self.check(getattr(self.fn, name)(*args), name)

    def graph_functions(self) -> Any:
        """The CUDA graph functions (``_GRAPH_DRIVER``); a CUDAError if this driver lacks one."""
        if self._graph_fn is None:
            try:
                self._graph_fn = bind_functions(self.lib, _GRAPH_DRIVER, ctypes.c_int)
            except AttributeError as e:
                raise CUDAError(f"CUDA: this driver has no CUDA graph API of CUDA 12 ({e})", None) from None
        return self._graph_fn


_driver: Driver | None = None


def driver() -> Driver:
    global _driver
    if _driver is None:
        _driver = Driver()
    return _driver


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
            params, _values = _kernel_params(launch)
            grid = launch.size // prog.block
            result = launch_kernel(prog.function, grid, 1, 1, prog.block, 1, 1, 0, self.stream, params, None)
            if result != 0:
                self.drv.check(result, f"launching {prog.name} ({grid} blocks of {prog.block})")

    def graph(self, launches: list[Launch]) -> CUDAGraph:
        """Launches packed for repeated replay: a CUDA graph (see ``CUDAGraph``)."""
        return CUDAGraph(self, launches)

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


def _kernel_params(launch: Launch) -> tuple[ctypes.Array, list]:
    """cuLaunchKernel's ``kernelParams``: a pointer to each argument (buffer addresses, then the int64 variable
    values), and the arguments themselves, which must outlive the call that reads them."""
    values = [ctypes.c_uint64(h) for h in launch.buffers] + [ctypes.c_int64(v) for v in launch.var_values]
    return (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values]), values


class CUDAGraph(LaunchGraph):
    """A replayed batch of launches as one CUDA graph: built and instantiated on its first run, then launched with
    one ``cuGraphLaunch`` per run, where plain launches cost one driver call from Python each.

    The graph is built from kernel nodes (``cuGraphAddKernelNode``), each depending on the one before it, so it
    runs the launches in order as the stream would. Why not stream capture: updating one launch's arguments needs
    its node, which building hands back in launch order (a captured graph's nodes would have to be looked up), and
    while a capture is in progress some calls elsewhere in the process are illegal (in the default global mode, a
    synchronizing call from another thread, such as a library's on the shared primary context).

    Arguments are copied into an instantiated graph, so a run after ``set_buffer`` or ``set_var`` changed a
    launch's arguments first updates that launch's node (``cuGraphExecKernelNodeSetParams``); unchanged launches
    cost nothing. A CUDA error while building or instantiating (a driver without the graph API or too old for
    it) leaves this batch on plain launches for good, said once at ``DEBUG=1``; ``BOLT_CUDA_GRAPHS=0`` runs it
    launch by launch too.
    """

    device: CUDADevice

    def __init__(self, device: CUDADevice, launches: list[Launch]):
        super().__init__(device, launches)
        self.exec: ctypes.c_void_p | None = None
        self.nodes: list[ctypes.c_void_p] = []
        self.changed: set[int] = set()  # launches whose arguments differ from their node's
        self.fallback: str | None = None  # why this batch runs without a graph

    def set_buffer(self, launch_index: int, slot: int, handle: Any) -> None:
        if self.launches[launch_index].buffers[slot] != handle:
            super().set_buffer(launch_index, slot, handle)
            self.changed.add(launch_index)

    def set_var(self, launch_index: int, slot: int, value: int) -> None:
        if self.launches[launch_index].var_values[slot] != value:
            super().set_var(launch_index, slot, value)
            self.changed.add(launch_index)

    def run(self) -> None:
        if self.fallback is None and config.cuda_graphs() and (self.exec is not None or self._try_instantiate()):
            self._launch()
        else:
            self.device.run(self.launches)

    def _try_instantiate(self) -> bool:
        try:
            self._instantiate()
            return True
        except CUDAError as e:
            self.fallback = str(e)
            if config.debug_level() >= 1:
                print(f"{self.device.name}: {len(self)} launches replay without a CUDA graph: {e}", file=sys.stderr)
            return False

    def _launch(self) -> None:
        self.device.make_current()
        drv = self.device.drv
        fn = drv.graph_functions()
        for index in sorted(self.changed):
            launch = self.launches[index]
            node_params, _values = self._node_params(launch)
            result = fn.cuGraphExecKernelNodeSetParams_v2(self.exec, self.nodes[index], ctypes.byref(node_params))
            drv.check(result, f"updating {launch.program.name} in a CUDA graph")
        self.changed.clear()
        drv.check(fn.cuGraphLaunch(self.exec, self.device.stream), f"cuGraphLaunch of {len(self)} kernels")
        stats.graph_launches += 1

    def _node_params(self, launch: Launch) -> tuple[KernelNodeParams, list]:
        prog: CUDAProgram = launch.program
        params, values = _kernel_params(launch)
        grid, block = (launch.size // prog.block, 1, 1), (prog.block, 1, 1)
        node_params = KernelNodeParams(func=prog.function, grid=grid, block=block, shared_bytes=0,
                                       params=ctypes.cast(params, ctypes.POINTER(ctypes.c_void_p)))  # fmt: skip
        return node_params, [params, values]  # the driver copies the arguments during the call that reads them

    def _instantiate(self) -> None:
        self.device.make_current()
        drv = self.device.drv
        fn = drv.graph_functions()
        graph = ctypes.c_void_p()
        drv.check(fn.cuGraphCreate(ctypes.byref(graph), 0), "cuGraphCreate")
        try:
            nodes: list[ctypes.c_void_p] = []
            for launch in self.launches:
                node = ctypes.c_void_p()
                node_params, _values = self._node_params(launch)
                previous, count = (ctypes.byref(nodes[-1]), 1) if nodes else (None, 0)  # each after the one before
                params = ctypes.byref(node_params)
                result = fn.cuGraphAddKernelNode_v2(ctypes.byref(node), graph, previous, count, params)
                drv.check(result, f"adding {launch.program.name} to a CUDA graph")
                nodes.append(node)
            graph_exec = ctypes.c_void_p()
            result = fn.cuGraphInstantiateWithFlags(ctypes.byref(graph_exec), graph, 0)
            drv.check(result, f"cuGraphInstantiateWithFlags of {len(nodes)} kernels")
        except BaseException:
            fn.cuGraphDestroy(graph)
            raise
        self.exec, self.nodes = graph_exec, nodes
        self.changed.clear()
        # the nodes are the graph's, which cuGraphExecKernelNodeSetParams names them by: both live as long as this
        weakref.finalize(self, _destroy_graph, fn, graph.value, graph_exec.value)


def _destroy_graph(fn: Any, graph: int, graph_exec: int) -> None:
    fn.cuGraphExecDestroy(graph_exec)  # a launch still running finishes first: the driver frees it afterwards
    fn.cuGraphDestroy(graph)


_SELF_CHECK_SOURCE = """typedef long long int64_t;
extern "C" __global__ void __launch_bounds__(256) bolt_self_check(int64_t *out, const int64_t k) {
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < 1000) out[i] = k * (i + 1);
}
"""
