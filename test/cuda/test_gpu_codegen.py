"""GPU code generation checked on PYTHON_GPU: the GPU-lowered kernels run with GPU semantics (blocks, lockstep
threads, shared memory, barriers, warp shuffles) in Python and must give the CPU's values. The op-suite modules
run on PYTHON_GPU too (``helpers.GPU_EMULATED_MODULES``); this file covers what their shapes do not reach."""

from __future__ import annotations

import numpy as np
import pytest

import boltgrad
import boltgrad.nn as nn
from boltgrad import Tensor
from boltgrad.codegen.gpu import EMULATED_TARGET, GPUTarget, lower_for_gpu
from boltgrad.codegen.linearize import LinearProgram
from boltgrad.device.python import GPUProgram
from boltgrad.engine import realize
from boltgrad.ir.dtypes import float32, int64
from boltgrad.ir.node import Node, const
from boltgrad.ir.ops import Op
from boltgrad.render.cuda import CUDARenderer
from boltgrad.schedule.schedule import create_schedule

DEV = "PYTHON_GPU"


def kernels(t: Tensor) -> list[LinearProgram]:
    """The GPU-lowered kernels that realizing ``t`` runs (on PYTHON_GPU's target: emulated sizes)."""
    return [lower_for_gpu(item.ast, EMULATED_TARGET) for item in create_schedule([t.node]).items]


def kind_of(lin: LinearProgram) -> str:
    """How a kernel was mapped: row (block reduces, then a loop over the row), tiled (FMA), mma (tiled on tensor
    cores), block_reduce or per_thread."""
    ops = {n.op for n in lin.instructions}
    if Op.MMA in ops:
        return "mma"
    if Op.SHUFFLE in ops:
        return "row" if any(n.op is Op.RANGE and n.arg[1] == "loop" for n in lin.instructions) else "block_reduce"
    return "tiled" if Op.BARRIER in ops else "per_thread"


def mapping(t: Tensor) -> str:
    """How the kernel that computes ``t`` was mapped (``kind_of``)."""
    return kind_of(kernels(t)[-1])


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + sum(shape)).uniform(-1, 1, shape).astype(np.float32)


@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (8, 4, 4), (9, 7, 5), (13, 17, 3), (16, 33, 12)])
def test_tiled_matmul_matches_numpy(m, k, n):
    a, b = rand(m, k), rand(k, n, seed=1)
    out = Tensor(a, device=DEV) @ Tensor(b, device=DEV)
    kind = mapping(out)
    assert kind == ("tiled" if min(m, n, k) >= EMULATED_TARGET.matmul_min else kind)
    np.testing.assert_allclose(out.numpy(), a @ b, rtol=1e-5, atol=1e-5)


def test_tiled_matmul_with_transposed_operand_epilogue_and_batch():
    x, w, bias = rand(11, 9), rand(6, 9, seed=1), rand(6, seed=2)
    out = (Tensor(x, device=DEV) @ Tensor(w, device=DEV).T + Tensor(bias, device=DEV)).relu()
    assert mapping(out) == "tiled"
    np.testing.assert_allclose(out.numpy(), np.maximum(x @ w.T + bias, 0), rtol=1e-5, atol=1e-5)
    a, b = rand(3, 5, 7), rand(3, 7, 6, seed=3)
    out = Tensor(a, device=DEV) @ Tensor(b, device=DEV)
    assert mapping(out) == "tiled"
    np.testing.assert_allclose(out.numpy(), a @ b, rtol=1e-5, atol=1e-5)


def test_half_matmul_accumulates_in_float():
    a, b = rand(10, 12).astype(np.float16), rand(12, 9, seed=1).astype(np.float16)
    out = Tensor(a, device=DEV) @ Tensor(b, device=DEV)
    assert mapping(out) == "mma" and out.dtype == boltgrad.float16  # tensor cores (test_mma.py)
    want = (a.astype(np.float32) @ b.astype(np.float32)).astype(np.float16)
    np.testing.assert_allclose(out.numpy().astype(np.float32), want.astype(np.float32), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("length", [4, 31, 32, 33, 100])
def test_block_reductions_sum_max_and_argmax(length):
    x = rand(3, length)
    t = Tensor(x, device=DEV)
    total = t.sum(1)
    assert mapping(total) == "block_reduce"
    np.testing.assert_allclose(total.numpy(), x.sum(1), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(t.max(1)[0].numpy(), x.max(1))
    np.testing.assert_array_equal(t.argmax(1).numpy(), x.argmax(1))
    ints = Tensor((x * 100).astype(np.int32), device=DEV)
    np.testing.assert_array_equal(ints.sum(1).numpy(), (x * 100).astype(np.int32).sum(1))


def test_strided_reduce_over_many_outputs_stays_per_thread():
    x = rand(40, 30)
    out = Tensor(x, device=DEV).sum(0)
    assert mapping(out) == "per_thread"
    np.testing.assert_allclose(out.numpy(), x.sum(0), rtol=1e-5, atol=1e-5)


def test_softmax_and_layernorm_rows():
    x = rand(5, 70)
    t = Tensor(x, device=DEV)
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(t.softmax(1).numpy(), e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)
    mean, var = x.mean(1, keepdims=True), x.var(1, keepdims=True)
    got = nn.functional.layer_norm(t, (70,)).numpy()
    np.testing.assert_allclose(got, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(3, 4), (5, 70), (2, 3, 33), (4, 1, 64), (1, 129)])
def test_softmax_log_softmax_and_layer_norm_are_one_row_kernel(shape):
    x = rand(*shape)
    t = Tensor(x, device=DEV)
    e = np.exp(x - x.max(-1, keepdims=True))
    soft = e / e.sum(-1, keepdims=True)
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    w, b = rand(shape[-1], seed=1), rand(shape[-1], seed=2)
    cases = [
        (t.softmax(-1), soft, 2),  # the max, then the sum of exponentials
        (t.log_softmax(-1), np.log(soft), 2),
        (nn.functional.layer_norm(t, shape[-1], Tensor(w, device=DEV), Tensor(b, device=DEV)),
         (x - mean) / np.sqrt(var + 1e-5) * w + b, 2),  # the mean, then the variance
        (nn.functional.rms_norm(t, shape[-1], eps=1e-6), x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-6), 1),
    ]  # fmt: skip
    for out, want, reduces in cases:
        (lin,) = kernels(out)
        assert kind_of(lin) == "row"
        combines = sum(n.op is Op.SHUFFLE and n.arg == ("idx", 0) for n in lin.instructions)
        assert combines == reduces  # each reduce computed once per row, not once per element
        np.testing.assert_allclose(out.numpy(), want, rtol=1e-4, atol=1e-5)


def test_row_kernels_backward_matches_the_cpu():
    x, g = rand(6, 37), rand(6, 37, seed=3)
    grads = []
    for device in ("CPU", DEV):
        t = Tensor(x, device=device, requires_grad=True)
        w = Tensor(rand(37, seed=1), device=device, requires_grad=True)
        out = t.softmax(-1) * Tensor(g, device=device) + nn.functional.layer_norm(t, 37, w).square()
        out.sum().backward()
        grads.append((t.grad.numpy(), w.grad.numpy()))
    for cpu, gpu in zip(*grads):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-5)


def test_broadcast_reduces_that_stay_kernels_of_their_own():
    x = rand(40, 6)
    t = Tensor(x, device=DEV)
    # over the outer dim the row would be strided: the max and the sum keep their kernels
    e = np.exp(x - x.max(0, keepdims=True))
    out = t.softmax(0)
    assert len(kernels(out)) == 3
    np.testing.assert_allclose(out.numpy(), e / e.sum(0, keepdims=True), rtol=1e-5, atol=1e-6)
    # a reduce that reads the probabilities (attention's probs @ V) is not a row kernel; the softmax before it is
    q, v = rand(2, 5, 8), rand(2, 5, 8, seed=1)
    probs = (Tensor(q, device=DEV) @ Tensor(q, device=DEV).transpose(-1, -2)).softmax(-1)
    out = probs @ Tensor(v, device=DEV)
    assert [kind_of(lin) for lin in kernels(out)] == ["tiled", "row", "tiled"]
    s = q @ q.transpose(0, 2, 1)
    p = np.exp(s - s.max(-1, keepdims=True))
    np.testing.assert_allclose(out.numpy(), p / p.sum(-1, keepdims=True) @ v, rtol=1e-4, atol=1e-5)
    # on the CUDA target a row shorter than a block reduce's minimum keeps three kernels; the CPU always does
    for device, shape, count in (("NULL:CUDA", (64, 100), 3), ("NULL:CUDA", (64, 128), 1), ("CPU", (4, 4096), 3)):
        assert len(create_schedule([Tensor(rand(*shape), device=device).softmax(-1).node]).items) == count


def test_cuda_source_of_a_row_kernel():
    Tensor(rand(64, 1000), device="NULL:CUDA").softmax(-1).realize()
    ck = next(ck for (dev, _, _), ck in realize._compiled.items()
              if dev == "NULL:CUDA" and ck.name.startswith("r_64_1000"))  # fmt: skip
    assert ck.linear.meta["gpu"] == (64, 256)
    assert ck.source.count("__syncthreads();") == 2  # one per block reduce (the max, the sum)
    lines = ck.source.splitlines()
    loops = [i for i, line in enumerate(lines) if line.strip().startswith("for (")]
    store = next(i for i, line in enumerate(lines) if line.strip().startswith("if (") and "b0[" in line)
    assert len(loops) == 3 and loops[-1] < store  # the two reduces' loops, then the row's columns


def test_cuda_source_of_a_block_reduce_uses_shuffles_and_one_barrier():
    x = Tensor(rand(4, 1000), device="NULL:CUDA")
    out = x.sum(1)
    out.realize()
    ck = next(ck for (dev, _, _), ck in realize._compiled.items() if dev == "NULL:CUDA" and ck.name.startswith("r_4"))
    assert ck.linear.meta["gpu"] == (4, 256)
    assert "__launch_bounds__(256)" in ck.source and ck.source.count("__syncthreads();") == 1
    assert ck.source.count("bolt_shfl_down(") == 5 + 3 and "bolt_shfl_idx(" in ck.source  # 8 warps: 5, then 3
    assert CUDARenderer.preamble.count("__shfl_down_sync") >= 1


def test_target_rejects_a_tile_its_threads_cannot_load():
    with pytest.raises(ValueError, match="must split evenly"):
        GPUTarget(tile=(3, 3, 1, 1, 4))


def test_lowering_a_scalar_and_an_empty_kernel():
    assert Tensor(rand(7), device=DEV).sum().item() == pytest.approx(float(rand(7).sum()), rel=1e-5)
    assert Tensor(np.zeros((0, 3), np.float32), device=DEV).sum(0).numpy().tolist() == [0.0, 0.0, 0.0]
    # an empty elementwise kernel is never launched, so the CUDA renderer is never asked to write it
    empty = (Tensor(np.zeros((0, 3), np.float32), device="NULL:CUDA") * 2).realize()
    assert empty.shape == (0, 3)


def _program(instructions: list[Node], block: int) -> GPUProgram:
    prog = LinearProgram("hand_made", instructions, [float32], [], None, block, 1)
    prog.meta["gpu"] = (1, block)
    return GPUProgram(prog)


def test_emulator_reports_a_barrier_only_some_threads_reach():
    thread = Node(Op.RANGE, int64, (const(4),), (0, "thread"))
    end = thread + 1  # thread t loops t + 1 times: the threads reach the barrier a different number of times
    loop = Node(Op.RANGE, int64, (end,), (1, "reduce"))
    barrier = Node(Op.BARRIER, int64, ())
    program = _program([end, loop, barrier, Node(Op.ENDRANGE, int64, (loop,))], 4)
    with pytest.raises(RuntimeError, match="diverge at a barrier or shuffle"):
        program((bytearray(4),), (), 0, 4)


def test_emulator_reports_a_read_of_shared_memory_nobody_wrote():
    thread = Node(Op.RANGE, int64, (const(2),), (0, "thread"))
    local = Node(Op.LOCAL, float32, (), (0, 2))
    written = Node(Op.STORE, float32, (local, const(0), const(1.0, float32), thread.lt(1)))
    barrier = Node(Op.BARRIER, int64, (written,))
    read = Node(Op.LOAD, float32, (local, thread, barrier))  # thread 1 reads slot 1: never written
    program = _program([local, thread.lt(1), written, barrier, read], 2)
    with pytest.raises(RuntimeError, match=r"reads shared memory \[1\] before any thread wrote it"):
        program((bytearray(4),), (), 0, 2)


def test_emulator_shuffles_within_warps():
    # 64 threads: each adds the value of the thread 16 lanes on, within its warp of 32 (its own past the end)
    thread = Node(Op.RANGE, int64, (const(64),), (0, "thread"))
    moved = Node(Op.SHUFFLE, int64, (thread,), ("down", 16))
    out = Node(Op.PARAM, int64, (), 0)
    store = Node(Op.STORE, int64, (out, thread, moved))
    prog = LinearProgram("shuffle", [out, moved, store], [int64], [], None, 64, 1)
    prog.meta["gpu"] = (1, 64)
    buf = bytearray(8 * 64)
    GPUProgram(prog)((buf,), (), 0, 64)
    got = list(memoryview(buf).cast("q"))
    want = [t + 16 if t % 32 < 16 else t for t in range(64)]
    assert got == want


def test_a_model_moves_between_the_gpu_emulation_and_the_cpu():
    boltgrad.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    model.to(DEV)
    x = rand(4, 6)
    opt = boltgrad.optim.SGD(model.parameters(), lr=0.1)
    loss = model(Tensor(x, device=DEV)).square().mean()
    loss.backward()
    opt.step()
    on_gpu = model(Tensor(x, device=DEV)).numpy()
    before = boltgrad.stats.copy_bytes
    model.to("CPU")
    assert all(p.device == "CPU" for p in model.parameters())
    assert boltgrad.stats.copy_bytes - before >= sum(p.numel() * 4 for p in model.parameters())
    np.testing.assert_allclose(model(Tensor(x)).numpy(), on_gpu, rtol=1e-5, atol=1e-6)
    model.to(DEV)
    np.testing.assert_allclose(model(Tensor(x, device=DEV)).numpy(), on_gpu, rtol=1e-5, atol=1e-6)


def test_every_lowering_gives_the_linear_program_its_launch():
    a = Tensor(rand(5, 6), device=DEV)
    for t in (a + 1, a.sum(1), a @ a.T):
        t.realize()
    launched = [(key[2], ck.linear) for key, ck in realize._compiled.items() if key[0] == DEV and ck.linear.outer_size]
    assert launched and all(p.outer_size == p.meta["gpu"][0] * p.meta["gpu"][1] for _, p in launched)
    ast = launched[0][0]
    assert lower_for_gpu(ast, EMULATED_TARGET).meta["gpu"]


def test_cuda_products_fuse_into_fma_only_inside_a_sum():
    a, b = (Tensor(rand(16, 16), device="NULL:CUDA") for _ in range(2))
    (a * b + a).realize()
    (a @ b).realize()
    sources = {ck.name[0]: ck.source for (dev, _, _), ck in realize._compiled.items()
               if dev == "NULL:CUDA" and ck.name.startswith(("e_16_16_", "r_16_16_"))}  # fmt: skip
    assert "__fmul_rn(" in sources["e"]  # elementwise a * b + c rounds twice, as on the CPU and in torch
    assert "__fmul_rn(" not in sources["r"] and " * " in sources["r"]  # matmul products may become fma


def test_tiled_matmul_fills_its_tiles_once_per_step_outside_the_k_loop():
    a = Tensor(rand(256, 256), device="NULL:CUDA")
    (a @ a.T).realize()
    ck = next(
        ck
        for (dev, _, _), ck in realize._compiled.items()
        if dev == "NULL:CUDA" and ck.name.startswith("r_256_256_") and ck.linear.meta.get("blocks_per_sm")
    )
    lines = ck.source.splitlines()
    loops = [i for i, line in enumerate(lines) if line.strip().startswith("for (")]
    barrier = next(i for i, line in enumerate(lines) if "__syncthreads();" in line)
    fills = [i for i, line in enumerate(lines) if line.strip().startswith("smem") and "] = " in line]
    assert len(loops) == 2 and loops[0] < min(fills) and max(fills) < barrier < loops[1]  # step loop, k loop
    assert ck.source.startswith('extern "C" __global__ void __launch_bounds__(256, 2)')
