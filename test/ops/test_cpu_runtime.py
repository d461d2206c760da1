"""The CPU device and its C runtime, driven by hand-written kernels: thread splitting, ordering, errors, memory."""

from __future__ import annotations

import re
import sys
from array import array

import pytest

import boltgrad
from boltgrad import stats
from boltgrad.device.base import Launch
from boltgrad.device.registry import get_device
from boltgrad.errors import CompileError, DeviceUnavailable

try:
    from boltgrad.device.cpu import CPUDevice, find_c_compiler

    find_c_compiler()
except DeviceUnavailable as e:
    pytest.skip(f"CPU device unavailable: {e}", allow_module_level=True)

KERNELS = r"""
#include <stdint.h>

/* out[i] = a[i] * 2 + i; every call also logs its [start, end) chunk: log[0] counts calls, then pairs follow. */
void scale_add_index(void **bufs, const int64_t *vars, int64_t start, int64_t end) {
  float *out = bufs[0];
  const float *a = bufs[1];
  int64_t *log = bufs[2];
  int64_t call = __atomic_fetch_add(&log[0], 1, __ATOMIC_RELAXED);
  log[1 + 2 * call] = start;
  log[2 + 2 * call] = end;
  for (int64_t i = start; i < end; i++) out[i] = a[i] * 2 + (float)i;
}

void add_one(void **bufs, const int64_t *vars, int64_t start, int64_t end) {
  double *b = bufs[0];
  const double *a = bufs[1];
  for (int64_t i = start; i < end; i++) b[i] = a[i] + 1;
}

/* One outer iteration: sums all n values of b, so it must see every chunk of the launch before it. */
void total(void **bufs, const int64_t *vars, int64_t start, int64_t end) {
  double *sum = bufs[0];
  const double *b = bufs[1];
  for (int64_t unused = start; unused < end; unused++) {
    double s = 0;
    for (int64_t i = 0; i < vars[0]; i++) s += b[i];
    sum[0] = s;
  }
}

/* Reads b backwards (chunks written by other threads) and the serial launch's sum. */
void reverse_twice_plus_total(void **bufs, const int64_t *vars, int64_t start, int64_t end) {
  double *d = bufs[0];
  const double *b = bufs[1];
  const double *sum = bufs[2];
  for (int64_t i = start; i < end; i++) d[i] = b[vars[0] - 1 - i] * 2 + sum[0];
}

void fill_var(void **bufs, const int64_t *vars, int64_t start, int64_t end) {
  int64_t *out = bufs[0];
  for (int64_t i = start; i < end; i++) out[i] = vars[0] + i;
}

void mark_called(void **bufs, const int64_t *vars, int64_t start, int64_t end) {
  ((int64_t *)bufs[0])[0] += 1;
}
"""


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("kernel-cache")


@pytest.fixture
def make_device(cache_dir, monkeypatch):
    monkeypatch.setenv("BOLT_CACHE_DIR", str(cache_dir))

    def make(threads: int = 3) -> CPUDevice:
        monkeypatch.setenv("BOLT_THREADS", str(threads))
        return CPUDevice()

    return make


@pytest.fixture
def device(make_device):
    # 3 threads even on a 2-core machine: uneven chunks (1e6 % 3 != 0) and more threads than cores.
    return make_device(3)


@pytest.fixture
def kernels(device):
    library = device.compiler.compile(KERNELS)
    return {name: device.program(library, name) for name in re.findall(r"^void (\w+)\(", KERNELS, re.M)}


def upload(device, values: array) -> int:
    handle = device.allocator.alloc(len(values) * values.itemsize)
    device.allocator.copyin(handle, memoryview(values))
    return handle


def download(device, handle: int, typecode: str, count: int) -> array:
    out = array(typecode, bytes(count * array(typecode).itemsize))
    device.allocator.copyout(memoryview(out), handle)
    return out


def logged_chunks(device, log: int) -> list[tuple[int, int]]:
    entries = download(device, log, "q", 1 + 2 * 64)
    return sorted(zip(entries[1 : 1 + 2 * entries[0] : 2], entries[2 : 2 + 2 * entries[0] : 2]))


def chunks_per_thread() -> int:
    from boltgrad.device.cpu import RUNTIME_SOURCE

    return int(re.search(r"#define BOLT_CHUNKS_PER_THREAD (\d+)", RUNTIME_SOURCE.read_text()).group(1))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_large_launch_is_split_into_a_few_chunks_per_thread(make_device, threads):
    device = make_device(threads)
    assert device.threads == threads
    kernel = device.program(device.compiler.compile(KERNELS), "scale_add_index")
    n = 1_000_000
    a = upload(device, array("f", [i % 7 - 3 for i in range(n)]))
    out = device.allocator.alloc(4 * n)
    log = upload(device, array("q", bytes(8 * 129)))
    device.run([Launch(kernel, (out, a, log), (), size=n)])
    result = download(device, out, "f", n)
    assert result == array("f", [(i % 7 - 3) * 2 + i for i in range(n)])  # exact: all values below 2**24
    chunks = logged_chunks(device, log)
    assert len(chunks) == (1 if threads == 1 else threads * chunks_per_thread())
    assert chunks[0][0] == 0 and chunks[-1][1] == n
    assert all(chunks[i][1] == chunks[i + 1][0] for i in range(len(chunks) - 1))  # contiguous, no gaps or overlaps
    assert max(end - start for start, end in chunks) - min(end - start for start, end in chunks) <= 1


@pytest.mark.parametrize(
    ("size", "cost", "expected_calls"), [(100, 1, 1), (1, 10**9, 1), (100, 10**6, 6), (5, 10**6, 5)]
)
def test_small_work_runs_in_one_call(device, kernels, size, cost, expected_calls):
    assert chunks_per_thread() == 2  # expected_calls: 3 threads * 2 chunks, or one chunk per outer iteration
    a = upload(device, array("f", [1.0] * size))
    out = device.allocator.alloc(4 * size)
    log = upload(device, array("q", bytes(8 * 129)))
    device.run([Launch(kernels["scale_add_index"], (out, a, log), (), size=size, cost=cost)])
    chunks = logged_chunks(device, log)
    assert len(chunks) == expected_calls
    assert chunks[0][0] == 0 and chunks[-1][1] == size
    assert download(device, out, "f", size) == array("f", [2.0 + i for i in range(size)])


def test_dependent_launches_run_in_order(device, kernels):
    # parallel -> serial -> parallel: each launch reads what the one before wrote, across threads' chunks.
    n = 200_003
    b, d, total = device.allocator.alloc(8 * n), device.allocator.alloc(8 * n), device.allocator.alloc(8)
    for trial in range(10):  # repeated with new inputs: a missing barrier shows as stale or partial values
        values = array("d", [float((i * 31 + trial) % 1000) for i in range(n)])
        a = upload(device, values)
        launches = [
            Launch(kernels["add_one"], (b, a), (), size=n),
            Launch(kernels["total"], (total, b), (n,), size=1),
            Launch(kernels["reverse_twice_plus_total"], (d, b, total), (n,), size=n),
        ]
        device.run(launches)
        expected_total = sum(values) + n
        assert download(device, total, "d", 1)[0] == expected_total
        assert download(device, d, "d", n) == array(
            "d", [(values[n - 1 - i] + 1) * 2 + expected_total for i in range(n)]
        )
        device.allocator.free(a, 8 * n)


def test_long_chains_of_dependent_launches_see_every_write(device, kernels):
    # 3 threads on 2 cores: a thread descheduled mid-list must still hold back every launch after its chunk.
    n = 40_000  # just parallel: chunks are short, so threads race from launch to launch
    x, y = upload(device, array("d", [float(i) for i in range(n)])), device.allocator.alloc(8 * n)
    total = device.allocator.alloc(8)
    steps = []
    for i in range(60):  # x -> y -> x ... with a serial launch reading the whole buffer every few steps
        src, dst = (x, y) if i % 2 == 0 else (y, x)
        steps.append(Launch(kernels["add_one"], (dst, src), (), size=n))
        if i % 7 == 3:
            steps.append(Launch(kernels["total"], (total, dst), (n,), size=1))
    for trial in range(20):
        device.run(steps)
        got = download(device, x, "d", n)
        assert got == array("d", [float(i + 60 * (trial + 1)) for i in range(n)])
    assert download(device, total, "d", 1)[0] == sum(got)  # the last serial launch summed x after the last step


def test_compile_error_shows_compiler_message_and_source_path(device):
    source = "#include <stdint.h>\nvoid broken(void **b, const int64_t *v, int64_t s, int64_t e) { int x = ; }\n"
    before = stats.compiles
    with pytest.raises(CompileError) as info:
        device.compiler.compile(source)
    message = str(info.value)
    assert stats.compiles == before + 1
    assert "error" in message and "expected expression" in message
    assert "int x = ;" in message  # the kernel source itself is shown
    source_path = re.search(r"the source is kept at (\S+)", message).group(1)
    with open(source_path) as f:
        assert f.read() == source


def test_size_zero_launch_calls_nothing(device, kernels):
    calls = upload(device, array("q", [0]))
    empty = device.allocator.alloc(0)
    out = device.allocator.alloc(8 * 4)
    device.run(
        [
            Launch(kernels["mark_called"], (calls,), (), size=0),
            Launch(kernels["fill_var"], (empty,), (5,), size=0),
            Launch(kernels["fill_var"], (out,), (10,), size=4),
        ]
    )
    assert download(device, calls, "q", 1)[0] == 0
    assert download(device, out, "q", 4) == array("q", [10, 11, 12, 13])
    device.run([])
    device.allocator.free(empty, 0)


def test_allocator_alignment_copies_and_host_view(device):
    allocator = device.allocator
    handles = [allocator.alloc(nbytes) for nbytes in (0, 1, 63, 64, 1000)]
    assert all(handle % 64 == 0 for handle in handles)
    handle = handles[-1]
    allocator.copyin(handle, memoryview(bytes(range(200)) * 5))
    view = allocator.as_host_view(handle, 1000)
    assert view[199] == 199 and not view.readonly
    view[0:4] = b"\x01\x02\x03\x04"
    back = bytearray(8)
    allocator.copyout(memoryview(back), handle)
    assert bytes(back) == b"\x01\x02\x03\x04\x04\x05\x06\x07"
    del view
    for nbytes, h in zip((0, 1, 63, 64, 1000), handles):
        allocator.free(h, nbytes)


def test_launch_list_replays_with_patched_slots(device, kernels):
    first, second = device.allocator.alloc(8 * 40_000), device.allocator.alloc(8 * 40_000)
    graph = device.graph([Launch(kernels["fill_var"], (first,), (100,), size=40_000)])
    graph.run()
    graph.set_buffer(0, 0, second)
    graph.set_var(0, 0, -7)
    graph.run()
    assert download(device, first, "q", 40_000) == array("q", [100 + i for i in range(40_000)])
    assert download(device, second, "q", 40_000) == array("q", [-7 + i for i in range(40_000)])


def test_unknown_kernel_name_is_a_clear_error(device, kernels):
    library = device.compiler.compile(KERNELS)
    with pytest.raises(ValueError, match="no kernel named 'nope'"):
        device.program(library, "nope")


def test_missing_compiler_says_how_to_install_one(monkeypatch):
    monkeypatch.setenv("BOLT_CC", "no-such-compiler-bolt")
    with pytest.raises(DeviceUnavailable, match=r"BOLT_CC='no-such-compiler-bolt'.*apt-get install gcc"):
        find_c_compiler()


def test_self_check_runs_a_kernel(device):
    assert f"{device.threads} threads" in device.self_check()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_zeroed_memory_reads_as_zeros_and_takes_no_memory_until_written():
    from boltgrad.tensor import zeroed

    def resident_mb() -> float:
        status = dict(line.split(":", 1) for line in open("/proc/self/status"))
        return int(status["VmRSS"].split()[0]) / 1024

    before = resident_mb()
    big = zeroed((16 << 20,), boltgrad.float32)  # 64 MB of fresh pages
    assert resident_mb() - before < 16
    assert big[-5:].tolist() == [0.0] * 5 and big.sum().item() == 0.0
    other = zeroed((16 << 20,), boltgrad.float32)
    assert other.node.arg is not big.node.arg  # two calls, two buffers
    small = get_device("CPU").allocator
    dirty = small.alloc(256)
    small.copyin(dirty, memoryview(b"\xff" * 256))
    small.free(dirty, 256)  # cached: the next alloc(256) would get these bytes back
    clean = small.alloc_zeroed(256)
    assert bytes(small.as_host_view(clean, 256)) == bytes(256)
    small.free(clean, 256)


def _huge_page_mode() -> str:
    """'always', 'madvise' or 'never': when the OS backs anonymous memory with transparent huge pages."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled", encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return "never"
    return text[text.index("[") + 1 : text.index("]")]


@pytest.mark.skipif(_huge_page_mode() == "never", reason="the OS gives no transparent huge pages")
def test_large_blocks_ask_for_huge_pages_and_zeroed_ones_do_not(device):
    """A block of 8 MB is backed by 2 MB pages once written (fewer TLB misses for a kernel streaming it); a
    zeroed block keeps small pages where the OS only gives huge ones on request, so what is never written
    takes no memory."""

    def huge_kb(address: int) -> int:  # of the mapping that holds the address (neighbours may have merged)
        found, kb = False, 0
        for line in open("/proc/self/smaps"):
            head = line.split(" ", 1)[0]
            if "-" in head and ":" not in head:
                lo, hi = (int(x, 16) for x in head.split("-"))
                found = lo <= address < hi
            elif found and line.startswith("AnonHugePages:"):
                kb = int(line.split()[1])
        return kb

    allocator, nbytes = device.allocator, 8 << 20
    block, zeroed = allocator.alloc(nbytes), allocator.alloc_zeroed(nbytes)
    try:
        allocator.copyin(block, memoryview(b"\x01" * nbytes))
        allocator.copyin(zeroed, memoryview(b"\x01" * nbytes))
        assert huge_kb(block) >= 2048
        if _huge_page_mode() == "madvise":
            assert huge_kb(zeroed) == 0
    finally:
        allocator.free(block, nbytes)
        allocator.free(zeroed, nbytes)
