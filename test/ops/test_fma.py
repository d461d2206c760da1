"""Sums of products accumulate with fused multiply-adds: one rounding per step, in C and on the PYTHON device.

The inputs are chosen so that a multiply then an add (two roundings) gives another float32 than the fused
step: 1 + 2^-11 + 2^-24 is exactly halfway between two float32 values, so rounding the product alone goes to the
even one, while the exact sum with 2^-30 lies above the midpoint and rounds up.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import random
from fractions import Fraction

import numpy as np
import pytest

import boltgrad.codegen.lower as lower
from boltgrad import Tensor
from boltgrad.codegen.linearize import linearize
from boltgrad.codegen.lower import lower_kernel
from boltgrad.ir.dtypes import float16, float32, float64
from boltgrad.ir.ops import Op
from boltgrad.ir.symbolic import fused_multiply_add
from boltgrad.render.cstyle import CRenderer
from boltgrad.schedule.schedule import create_schedule

HALF_ULP = 1 + 2**-12  # squared: 1 + 2^-11 + 2^-24, a float32 midpoint
FUSED = np.float32(1 + 2**-11 + 2**-23)  # 2^-30 + HALF_ULP^2 rounded once
UNFUSED = np.float32(1 + 2**-11)  # the product rounded to even, then 2^-30 lost


def _libm():
    path = ctypes.util.find_library("m")
    if path is None:
        pytest.skip("no C math library to compare with")
    lib = ctypes.CDLL(path)
    lib.fmaf.restype, lib.fmaf.argtypes = ctypes.c_float, [ctypes.c_float] * 3
    lib.fma.restype, lib.fma.argtypes = ctypes.c_double, [ctypes.c_double] * 3
    return lib


def _f32(x: float) -> float:
    return float(np.float32(x))


def test_fused_multiply_add_is_c_fmaf():
    lib = _libm()
    rng = random.Random(0)
    cases = [(HALF_ULP, HALF_ULP, 2**-30), (HALF_ULP, HALF_ULP, -(2**-30)), (0.0, -1.0, 0.0), (-0.0, 1.0, -0.0),
             (math.inf, 0.0, 1.0), (3e38, 2.0, -3e38), (1e-30, 1e-30, 1e-45), (1.5, 2.0, math.nan)]  # fmt: skip
    for _ in range(20000):
        a, b = (_f32(rng.gauss(0, 1) * 2.0 ** rng.randint(-40, 40)) for _ in range(2))
        c = rng.choice([_f32(rng.gauss(0, 1) * 2.0 ** rng.randint(-40, 40)), -_f32(a * b), _f32(a * b * (1 + 2**-24))])
        cases.append((a, b, c))
    for a, b, c in cases:
        a, b, c = _f32(a), _f32(b), _f32(c)
        want, got = lib.fmaf(a, b, c), fused_multiply_add(a, b, c, float32)
        assert (want == got and math.copysign(1, want) == math.copysign(1, got)) or (want != want and got != got)
    assert fused_multiply_add(HALF_ULP, HALF_ULP, 2**-30, float32) == FUSED


def test_fused_multiply_add_in_float64_and_half():
    lib = _libm()
    rng = random.Random(1)
    for _ in range(2000):
        a, b, c = (rng.gauss(0, 1) * 2.0 ** rng.randint(-300, 300) for _ in range(3))
        assert fused_multiply_add(a, b, c, float64) == lib.fma(a, b, c)
    a = 1 + 2**-27
    assert fused_multiply_add(a, a, -1.0, float64) == float(Fraction(a) ** 2 - 1) == 2**-26 + 2**-54
    assert math.isnan(fused_multiply_add(math.inf, 0.0, 1.0, float64))
    # 16-bit floats: the float32 fma, rounded to half
    assert fused_multiply_add(1.5, 1.5, 0.25, float16) == float(np.float16(np.float32(2.5)))


def _sources(out: Tensor) -> list[str]:
    items = [it for it in create_schedule([out.node]).items if hasattr(it, "ast")]
    return [CRenderer().render_kernel(linearize(lower_kernel(it.ast)), f"k{i}") for i, it in enumerate(items)]


@pytest.mark.parametrize("device", ["CPU", "PYTHON"])
def test_a_dot_product_rounds_once_per_step(device):
    x = np.array([2**-15, HALF_ULP], np.float32)
    out = (Tensor(x, device=device) * Tensor(x, device=device)).sum()
    assert out.numpy() == FUSED != UNFUSED


@pytest.mark.parametrize("device", ["CPU", "PYTHON"])
def test_matmul_tiles_accumulate_with_vector_fma(device):
    """16 columns per loop: the register tile's update is one vector fma per 8 columns; 3 columns: scalar fmaf."""
    a = np.array([[2**-15, HALF_ULP]] * 6, np.float32)
    for n in (16, 3):
        b = np.tile(np.array([[2**-15], [HALF_ULP]], np.float32), (1, n))
        out = Tensor(a, device=device) @ Tensor(b, device=device)
        np.testing.assert_array_equal(out.numpy(), np.full((6, n), FUSED, np.float32))
    assert "bolt_fma_f32x8(" in "".join(_sources(Tensor(a) @ Tensor(np.ones((2, 16), np.float32))))
    assert "__builtin_fmaf(" in "".join(_sources((Tensor(a[0]) * Tensor(a[0])).sum()))


def test_only_float32_sums_of_products_fuse():
    def updates(out: Tensor) -> list:
        items = [it for it in create_schedule([out.node]).items if hasattr(it, "ast")]
        return [n.arg for n in linearize(lower_kernel(items[-1].ast)).instructions if n.op is Op.ACC_UPDATE]

    x = np.arange(6, dtype=np.float32)
    assert set(updates((Tensor(x) * Tensor(x)).sum())) == {Op.MULACC}
    assert Op.MULACC not in updates((Tensor(x) + Tensor(x)).sum())  # a sum of sums
    assert Op.MULACC not in updates((Tensor(x) * Tensor(x)).max())  # not a sum
    assert Op.MULACC not in updates((Tensor(x.astype(np.float64)) * Tensor(x.astype(np.float64))).sum())


def test_eight_row_tiles_only_with_32_vector_registers(monkeypatch):
    monkeypatch.setattr(lower, "_vector_registers", lambda: 32)
    assert lower._tile_rows(32, 27) == 8 and lower._tile_rows(27, 32) == 8 and lower._tile_rows(1024, 1024) == 8
    assert lower._tile_rows(12, 64) == 6  # 8 would recompute a third of the rows
    monkeypatch.setattr(lower, "_vector_registers", lambda: 16)  # AVX2: 16 accumulators would not fit
    assert lower._tile_rows(32, 27) == 4 and lower._tile_rows(1024, 1024) == 6
