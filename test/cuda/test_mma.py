"""Tensor-core matmuls (``codegen/gpu_mma.py``) checked on PYTHON_GPU, which runs each warp's MMA with the
fragment layout of the PTX ISA: a lowering that puts a value in another register than the hardware reads it
from gives wrong products here. The inputs are exact in float16/bfloat16, so numpy's float64 product is the
exact answer and the tolerance is float32 accumulation's."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

import boltgrad
from boltgrad import Tensor
from boltgrad.codegen.gpu import CUDA_TARGET, EMULATED_TARGET, GPUTarget, lower_for_gpu
from boltgrad.codegen.linearize import LinearProgram
from boltgrad.device.python import GPUProgram
from boltgrad.engine import realize
from boltgrad.ir.dtypes import bfloat16, float16, float32, uint32
from boltgrad.ir.node import Node, const
from boltgrad.ir.ops import Op
from boltgrad.render.cuda import CUDARenderer
from boltgrad.schedule.schedule import create_schedule

DEV = "PYTHON_GPU"
DTYPES = {"float16": boltgrad.float16, "bfloat16": boltgrad.bfloat16}


def exact(shape: tuple[int, ...], dtype: str, seed: int) -> np.ndarray:
    """float32 values that float16 (or bfloat16) holds exactly, in [-2, 2)."""
    x = np.random.default_rng(seed).uniform(-2, 2, shape).astype(np.float32)
    if dtype == "float16":
        return x.astype(np.float16).astype(np.float32)
    return (x.view(np.uint32) & 0xFFFF0000).view(np.float32)  # the top 16 bits: a bfloat16


def on_gpu(x: np.ndarray, dtype: str) -> Tensor:
    return Tensor(x, device=DEV).cast(DTYPES[dtype]).realize()


def lowered(t: Tensor) -> list[LinearProgram]:
    return [lower_for_gpu(item.ast, EMULATED_TARGET) for item in create_schedule([t.node]).items]


def uses_mma(lin: LinearProgram) -> bool:
    return any(n.op is Op.MMA for n in lin.instructions)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("m, k, n", [(16, 16, 8), (5, 3, 2), (17, 20, 9), (33, 37, 18), (70, 45, 40)])
def test_mma_matmul_matches_numpy(dtype, m, k, n):
    # (70, 45, 40): 2 x 2 blocks of 64 x 32, two k steps of 32 (the second partial, k odd)
    a, b = exact((m, k), dtype, 1), exact((k, n), dtype, 2)
    out = on_gpu(a, dtype).float() @ on_gpu(b, dtype).float()  # float32 out: no rounding after the sum
    (lin,) = lowered(out)
    assert uses_mma(lin)
    want = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-5)
    half = on_gpu(a, dtype) @ on_gpu(b, dtype)  # the result in the inputs' type: rounded once, from the sum
    assert half.dtype == DTYPES[dtype] and uses_mma(lowered(half)[-1])
    np.testing.assert_allclose(half.float().numpy(), out.cast(DTYPES[dtype]).float().numpy(), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_mma_with_prologue_cast_epilogue_transpose_and_batch(dtype):
    x, w, bias = exact((19, 24), dtype, 3), exact((13, 24), dtype, 4), exact((13,), dtype, 5)
    xt, wt, bt = (Tensor(v, device=DEV) for v in (x, w, bias))  # float32 in memory: the casts are the prologue
    dt = DTYPES[dtype]
    out = ((xt.cast(dt) @ wt.cast(dt).T).float() * 0.5 + bt).relu()
    (lin,) = lowered(out)  # one kernel: the casts, the matmul and the epilogue
    assert uses_mma(lin)
    exact_sum = (x.astype(np.float64) @ w.astype(np.float64).T).astype(np.float32)
    rounded = Tensor(exact_sum).cast(dt).float().numpy()  # the matmul's output type, then the epilogue
    ulp = {"float16": 2**-10, "bfloat16": 2**-7}[dtype]  # a sum may round to the neighbouring 16-bit value
    assert (np.abs(out.numpy() - np.maximum(rounded * 0.5 + bias, 0)) <= ulp * np.abs(exact_sum) + 1e-6).all()
    a, b = exact((3, 17, 21), dtype, 6), exact((3, 21, 9), dtype, 7)
    batched = on_gpu(a, dtype).float() @ on_gpu(b, dtype).float()
    assert uses_mma(lowered(batched)[-1])
    np.testing.assert_allclose(batched.numpy(), a.astype(np.float64) @ b.astype(np.float64), rtol=1e-5, atol=1e-5)
    p, q = exact((21, 34), dtype, 8), exact((18, 21), dtype, 9)  # A strided along k, B contiguous along k
    transposed = on_gpu(p, dtype).float().T @ on_gpu(q, dtype).float().T
    assert uses_mma(lowered(transposed)[-1])
    np.testing.assert_allclose(transposed.numpy(), p.T.astype(np.float64) @ q.T, rtol=1e-5, atol=1e-5)


def test_float32_and_mixed_matmuls_keep_the_fma_tiles():
    a, b = exact((12, 10), "bfloat16", 8), exact((10, 9), "bfloat16", 9)  # exact in float16 too
    assert (a.astype(np.float16) == a).all() and (b.astype(np.float16) == b).all()
    for out in (
        Tensor(a, device=DEV) @ Tensor(b, device=DEV),  # float32
        on_gpu(a, "float16").float() @ on_gpu(b, "bfloat16").float(),  # two 16-bit types: no one instruction
        on_gpu(a, "float16").float() @ Tensor(b, device=DEV),  # one operand float32
    ):
        (lin,) = lowered(out)
        assert not uses_mma(lin) and any(n.op is Op.BARRIER for n in lin.instructions)  # the FMA tiles
        np.testing.assert_allclose(out.numpy(), a @ b, rtol=1e-5, atol=1e-5)
    a16 = on_gpu(a, "float16")
    (lin,) = [lower_for_gpu(item.ast, GPUTarget()) for item in create_schedule([(a16 @ a16.T).node]).items]
    assert not uses_mma(lin)  # a target without tensor cores


@pytest.mark.parametrize("dtype, kind", [(boltgrad.float16, "f16"), (boltgrad.bfloat16, "bf16")])
def test_cuda_source_of_a_half_matmul_uses_the_mma_instruction(dtype, kind):
    a = boltgrad.ones((256, 200), device="NULL:CUDA", dtype=dtype).contiguous().realize()
    b = boltgrad.ones((200, 192), device="NULL:CUDA", dtype=dtype).contiguous().realize()
    (a @ b).realize()
    ck = next(ck for (dev, _, _), ck in realize._compiled.items()
              if dev == "NULL:CUDA" and ck.name.startswith("r_256_192_") and ck.linear.params[1] == dtype)  # fmt: skip
    instruction = f"mma.sync.aligned.m16n8k16.row.col.f32.{kind}.{kind}.f32"
    warps_y, warps_x, per_y, per_x, tk = CUDA_TARGET.mma_tile
    # one instruction per 16x8 tile of a warp and 16 of the k step (the loop over the step's two is not unrolled)
    assert ck.source.count(instruction) == per_y * per_x
    assert ck.source.count("__syncthreads();") == 1 and '"+f"(acc' in ck.source  # sums are the C operand
    assert ck.linear.meta["gpu"] == (2 * 2, warps_y * warps_x * 32)  # 128 x 128 tiles of 256 x 192
    assert ck.source.startswith('extern "C" __global__ void __launch_bounds__(256, 2)')
    assert "bolt_half_to_float(b1" not in ck.source  # the tiles take the stored 16 bits, unconverted


def _mma_program(a_words: list[list[int]], b_words: list[list[int]], c: list[list[float]], element) -> LinearProgram:
    """One warp: lane l's MMA gets a_words[l], b_words[l] and c[l] as constants chosen by its lane (a WHERE
    over the lanes) and stores its four D values at 4 * l + r."""
    lane = Node(Op.RANGE, boltgrad.int64, (const(32),), (0, "thread"))

    def per_lane(values: list, dtype) -> Node:
        out = const(values[31], dtype)
        for i in range(30, -1, -1):
            out = lane.lt(i + 1).where(const(values[i], dtype), out)
        return out

    srcs = [per_lane([a_words[t][r] for t in range(32)], uint32) for r in range(4)]
    srcs += [per_lane([b_words[t][r] for t in range(32)], uint32) for r in range(2)]
    srcs += [per_lane([c[t][r] for t in range(32)], float32) for r in range(4)]
    d = [Node(Op.MMA, float32, tuple(srcs), ("m16n8k16", element, r)) for r in range(4)]
    out = Node(Op.PARAM, float32, (), 0)
    stores = [Node(Op.STORE, float32, (out, lane * 4 + r, d[r])) for r in range(4)]
    order = Node(Op.SINK, float32, tuple(stores)).toposort()
    instructions = [n for n in order if n.op not in (Op.CONST, Op.RANGE, Op.SINK)]
    prog = LinearProgram("mma_by_hand", instructions, [float32], [], None, 32, 1)
    prog.meta["gpu"] = (1, 32)
    return prog


def _word(low: float, high: float, element) -> int:
    """A register of two 16-bit floats, ``low`` in bits 0-15."""

    def bits(x: float) -> int:
        return int(np.float16(x).view(np.uint16)) if element == float16 else int(np.float32(x).view(np.uint32)) >> 16

    return bits(low) | bits(high) << 16


def test_emulated_mma_places_fragments_as_the_ptx_figures_show():
    """Spot checks read off the PTX ISA's figures for m16n8k16 (A: figure 'MMA .m16n8k16 fragment layout for
    matrix A with .f16/.bf16 type', and those of B and C/D), independent of the emulator's formulas: lane 0
    holds A[0][0:2], A[8][0:2], A[0][8:10], A[8][8:10]; lane 6 (group 1, pair 2) A[1][4:6] first; B register 1
    of lane 6 is B[12:14][1]; D value 3 of lane 6 is D[9][5]."""
    rng = np.random.default_rng(0)
    a = rng.integers(-4, 5, (16, 16)).astype(np.float32)  # small integers: every sum is exact
    b = rng.integers(-4, 5, (16, 8)).astype(np.float32)
    c = rng.integers(-4, 5, (16, 8)).astype(np.float32)
    for element in (float16, bfloat16):
        a_words, b_words, cs = [], [], []
        for lane in range(32):
            g, t = lane // 4, lane % 4
            a_words.append([_word(a[r][k], a[r][k + 1], element)
                            for r, k in ((g, 2 * t), (g + 8, 2 * t), (g, 2 * t + 8), (g + 8, 2 * t + 8))])  # fmt: skip
            b_words.append([_word(b[k][g], b[k + 1][g], element) for k in (2 * t, 2 * t + 8)])
            cs.append([float(c[g][2 * t]), float(c[g][2 * t + 1]), float(c[g + 8][2 * t]), float(c[g + 8][2 * t + 1])])
        assert a_words[0] == [_word(a[r][k], a[r][k + 1], element) for r, k in ((0, 0), (8, 0), (0, 8), (8, 8))]
        assert a_words[6][0] == _word(a[1][4], a[1][5], element)
        assert b_words[6][1] == _word(b[12][1], b[13][1], element)
        buf = bytearray(4 * 128)
        GPUProgram(_mma_program(a_words, b_words, cs, element))((buf,), (), 0, 32)
        got = np.frombuffer(buf, np.float32).reshape(32, 4)
        d = a @ b + c
        assert got[6][3] == d[9][5]
        want = [[d[lane // 4 + 8 * (r // 2)][lane % 4 * 2 + r % 2] for r in range(4)] for lane in range(32)]
        np.testing.assert_array_equal(got, np.array(want, np.float32))


def test_an_mma_that_is_not_summed_renders_with_its_own_c():
    prog = _mma_program([[0] * 4] * 32, [[0] * 2] * 32, [[1.0] * 4] * 32, float16)
    prog.meta["gpu"] = (1, 32)
    source = CUDARenderer().render_kernel(prog, "mma_by_hand")
    assert source.count("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32") == 1
    assert "{%10, %11, %12, %13}" in source and source.count('"=f"(') == 4


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH (the CUDA toolkit is not installed)")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_nvcc_compiles_an_mma_with_its_own_c(arch, tmp_path):
    source = tmp_path / "mma.cu"
    prog = _mma_program([[1] * 4] * 32, [[2] * 2] * 32, [[float(t)] * 4 for t in range(32)], bfloat16)
    source.write_text(CUDARenderer().render_unit([("mma_by_hand", prog)]))
    command = ["nvcc", f"-arch={arch}", "-cubin", "-o", str(tmp_path / "mma.cubin"), str(source)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-4000:]


def test_target_rejects_an_mma_tile_its_threads_cannot_fill():
    with pytest.raises(ValueError, match="mma_tile"):
        GPUTarget(mma_tile=(2, 2, 1, 1, 24))
    with pytest.raises(ValueError, match="mma_tile"):
        GPUTarget(mma_tile=(4, 4, 1, 1, 16))  # 512 threads, 64 x 32 tiles of 8 words a row: not every thread


def test_gpus_before_sm_80_keep_the_fma_tiles():
    from boltgrad.codegen.gpu import CUDA_TARGET, gpu_target

    assert gpu_target("cuda", 90) is CUDA_TARGET and CUDA_TARGET.mma
    assert gpu_target("cuda", None) is CUDA_TARGET
    older = gpu_target("cuda", 75)  # Turing: mma.sync m16n8k16 on halves is sm_80's
    assert older is not None and not older.mma and older.tile == CUDA_TARGET.tile
    assert gpu_target("c", 90) is None
