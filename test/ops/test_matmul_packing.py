"""A matmul's right operand copied into strips of 16 columns (``tensor_reduce._packed_columns``), which the CPU's
6 x 16 register tile reads contiguously: when it applies, the values it gives and the gradient through it."""

from __future__ import annotations

import numpy as np

from boltgrad import Tensor
from boltgrad.codegen.blocking import KernelOpts
from boltgrad.codegen.lower import _lower_once, _output_upcasts, _tile_rows, _vector_lanes
from boltgrad.schedule.schedule import KernelItem, create_schedule
from boltgrad.tensor_reduce import _packed_columns


def _arrays(seed: int, *shapes: tuple[int, ...]) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


def _kernels(out: Tensor) -> list[KernelItem]:
    return [it for it in create_schedule([out.node]).items if isinstance(it, KernelItem)]


def test_a_linear_layer_s_weight_is_packed_and_read_by_the_register_tile():
    x, w = _arrays(1, (128, 96), (64, 96))
    out = Tensor(x) @ Tensor(w).T
    pack, matmul = _kernels(out)
    assert pack.ast.shape == (4, 96, 16)  # (N/16, K, 16)
    store, ranges, _ = _lower_once(matmul.ast, reduce_upcast=False)
    # two vectors of columns per loop (16, or 32 with AVX-512), 6 rows (8 with 32 vector registers): the packed
    # read (j // 16) * K * 16 + k * 16 + j % 16 is affine once j is split by 16, and contiguous along its low part
    tile = [(0, _tile_rows(128, 96)), (1, 2 * _vector_lanes())]
    assert sorted(_output_upcasts(store, ranges, KernelOpts())) == tile
    np.testing.assert_allclose(out.numpy(), x.astype(np.float64) @ w.T.astype(np.float64), rtol=1e-5, atol=1e-4)


def test_operands_that_are_not_worth_packing_are_read_in_place():
    def packed(b: Tensor, rows: int) -> bool:
        return _packed_columns(b, rows) is not b

    w = Tensor(_arrays(2, (64, 96))[0])
    assert packed(w.T, 128)
    assert not packed(w.T, 127)  # too few rows to pay for the copy
    assert not packed(Tensor(_arrays(3, (72, 96))[0]).T, 128)  # 72 columns: not whole strips
    assert not packed((w * 2).T, 128)  # a computed operand: the matmul kernel computes it as it reads
    assert not packed(w.T.half(), 128)
    assert not packed(Tensor(_arrays(4, (64, 96))[0], device="PYTHON_GPU").T, 128)  # GPUs tile their own way
    b = Tensor(_arrays(5, (512, 512))[0])  # row-major: its rows are read contiguously as they are ...
    assert not packed(b, 255) and packed(b, 512)  # ... so it takes more rows (and a larger product) to pay


def test_packed_operands_give_the_spec_s_values_bit_for_bit():
    # the PYTHON device runs the same kernels one scalar at a time; the row-major case is also bit-equal to the
    # unpacked kernel (the same tile and order of the sum)
    x, b, w = _arrays(6, (13, 64), (64, 80), (80, 64))
    for right in (b, w.T.copy()):
        cpu = (Tensor(x) @ _packed_columns(Tensor(right), 128)).numpy()
        spec = (Tensor(x, device="PYTHON") @ _packed_columns(Tensor(right, device="PYTHON"), 128)).numpy()
        np.testing.assert_array_equal(cpu, spec)
        np.testing.assert_allclose(cpu, x.astype(np.float64) @ right, rtol=1e-5, atol=1e-4)
    packed, plain = Tensor(x) @ _packed_columns(Tensor(b), 128), Tensor(x) @ Tensor(b)
    np.testing.assert_array_equal(packed.numpy(), plain.numpy())


def test_the_gradient_reaches_the_operand_through_its_strips():
    x, w, g = _arrays(7, (128, 96), (64, 96), (128, 64))
    xt, wt = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
    out = xt @ wt.T
    assert len(_kernels(out)) == 2
    (out * Tensor(g)).sum().backward()
    np.testing.assert_allclose(wt.grad.numpy(), g.T.astype(np.float64) @ x, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(xt.grad.numpy(), g.astype(np.float64) @ w, rtol=1e-5, atol=1e-4)
