"""The CUDA device's host side against a stand-in driver (``fake_driver.c``: memory is host memory, launches run
nothing but are recorded), so its ctypes plumbing, staging, launch geometry and out-of-memory path are checked
where there is no GPU. The script runs in a fresh process: libcuda.so.1 is found through LD_LIBRARY_PATH."""

from __future__ import annotations

from fake_cuda import needs_cc, run_against_fake_driver

SCRIPT = r"""
import ctypes, os
import numpy as np
import boltgrad
from boltgrad import Tensor
from boltgrad.device.registry import get_device, probe
from boltgrad.device import cuda

fake = ctypes.CDLL("libcuda.so.1")
dev = get_device("cuda")
assert (dev.gpu_name, dev.arch) == ("Fake GPU", 90), (dev.gpu_name, dev.arch)

# round trips, one of them longer than a staging buffer (chunked), counted in copy_bytes
for n in (10, cuda.STAGING_BYTES // 4 + 1000):
    x = np.arange(n, dtype=np.float32)
    before = boltgrad.stats.copy_bytes
    t = Tensor(x, device="CUDA")
    np.testing.assert_array_equal(t.numpy(), x)
    assert boltgrad.stats.copy_bytes - before == 2 * x.nbytes, boltgrad.stats.copy_bytes - before

# a kernel: compiled (the fake NVRTC), loaded, launched with the geometry of its GPU lowering
y = (Tensor(np.ones(1000, np.float32), device="CUDA") * 3).realize()
assert fake.fake_launch_count() == 1
grid, block, first = ctypes.c_uint(), ctypes.c_uint(), ctypes.c_uint64()
fake.fake_last_launch(ctypes.byref(grid), ctypes.byref(block), ctypes.byref(first))
assert (grid.value, block.value) == (4, 256), (grid.value, block.value)
assert first.value != 0  # the output buffer's device address

# a device-to-device copy (as between two GPUs' buffers, and the benchmark's bandwidth measure)
src, dst = dev.allocator.alloc(64), dev.allocator.alloc(64)
dev.allocator.copyin(src, memoryview(bytes(range(64))))
dev.allocator.transfer(dst, src, 64, dev)
back = bytearray(64)
dev.allocator.copyout(memoryview(back), dst)
assert bytes(back) == bytes(range(64))

# a model's round trip to the CPU (the fake runs no kernels: the copies alone move its weights)
model = boltgrad.nn.Linear(3, 2)
model.to("CUDA")
assert all(p.device == "CUDA" for p in model.parameters())
model.to("CPU")
assert all(p.device == "CPU" for p in model.parameters())

# out of memory: the cached blocks are freed and the allocation tried again, then a clear error
try:
    dev.allocator.alloc(2 << 30)
    raise SystemExit("no MemoryError")
except MemoryError as e:
    message = str(e)
assert "CUDA: out of device memory allocating 2147483648 bytes" in message and "MiB are free" in message, message

# a compile error shows the log and the source; a GPU the machine lacks is named
try:
    dev.compiler.compile("#error broken\nint x;\n")
    raise SystemExit("no CompileError")
except boltgrad.errors.CompileError as e:
    assert "fake: #error found" in str(e) and "    1 | #error broken" in str(e), str(e)
status = probe("CUDA:1")
assert not status.ok and "no GPU number 1: this machine has 1" in status.detail, status
# the doctor's self-check launches a kernel; the fake runs none, so its result is wrong and it says so
status = probe("CUDA")
assert not status.ok and "self-check kernel computed" in status.detail, status
print("fake driver: ok")
"""


@needs_cc
def test_cuda_device_host_side_against_a_stand_in_driver(tmp_path):
    assert "fake driver: ok" in run_against_fake_driver(SCRIPT, tmp_path)
