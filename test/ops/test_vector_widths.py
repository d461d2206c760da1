"""Vector packs of 16 float32 lanes (one AVX-512 register) next to the 8- and 4-lane ones.

Which widths the C renderer prints is the device's (``Device.vector_widths``, from the CPU's flags in
``device/cpu_features.py``). A pack computes each lane as the scalar program does, so the widths change no bit of
any result: these tests run the same programs with (16, 8, 4) and (8, 4) packs and compare both with the PYTHON
device. On a CPU without AVX-512 the 16-lane forms are the portable ones, so the tests run everywhere.
"""

from __future__ import annotations

import ctypes
import platform
import subprocess

import numpy as np
import pytest

import boltgrad
from boltgrad import Tensor
from boltgrad.codegen.linearize import linearize
from boltgrad.codegen.lower import lower_kernel
from boltgrad.device import cpu_features
from boltgrad.device.registry import get_device
from boltgrad.render.cstyle import CRenderer
from boltgrad.schedule.schedule import create_schedule

WIDE, NARROW = (16, 8, 4), (8, 4)


def _arrays(seed: int, *shapes: tuple[int, ...]) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


def _int8s(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).integers(-128, 128, shape, dtype=np.int8)


def _sources(out: Tensor, widths: tuple[int, ...]) -> str:
    items = [it for it in create_schedule([out.node]).items if hasattr(it, "ast")]
    renderer = CRenderer(widths)
    return "\n".join(renderer.render_kernel(linearize(lower_kernel(it.ast)), f"k{i}") for i, it in enumerate(items))


def _run_with_widths(monkeypatch, fn, arrays, widths):
    monkeypatch.setattr(get_device("CPU"), "vector_widths", widths)
    return fn(*[Tensor(a) for a in arrays]).numpy()


def _windows_conv(x, w):
    from boltgrad.nn.conv import sliding_windows

    windows = sliding_windows(x.pad((1, 1, 1, 1)), (3, 3), (1, 1), (1, 1))  # (2, 3, 8, 32, 3, 3)
    return (windows.unsqueeze(1) * w.reshape(1, 4, 3, 1, 1, 3, 3)).sum((2, 5, 6))


CASES = {
    # a register tile of fused multiply-adds over packed strips (two 16-lane vectors per row)
    "matmul": (lambda a, b: a @ b, lambda: _arrays(1, (40, 96), (96, 64)), "bolt_fma_f32x16"),
    # a padded 3x3 convolution fused over the window view: edge reads are masked loads
    "conv": (lambda x, w: _windows_conv(x, w), lambda: _arrays(2, (2, 3, 8, 32), (4, 3, 3, 3)), "bolt_mload_f32x16"),
    # exponentials and logarithms lane by lane
    "log_softmax": (lambda x: x.log_softmax(-1), lambda: _arrays(3, (5, 256)), "bolt_exp2f_x16"),
    # int8 bytes and float16 values widened to float32 lanes
    "int8_dot": (
        lambda x, q: (q.cast(boltgrad.float32) * x).sum(-1),
        lambda: [_arrays(4, (256,))[0], _int8s(5, (24, 256))],
        "bolt_widen_i8x16",
    ),
    "half_dot": (
        lambda x, h: (h.cast(boltgrad.float32) * x).sum(-1),
        lambda: [_arrays(5, (256,))[0], _arrays(6, (24, 256))[0].astype(np.float16)],
        "bolt_widen_f16x16",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_sixteen_lane_packs_change_no_bit(monkeypatch, case):
    fn, make, marker = CASES[case]
    arrays = make()
    wide = _run_with_widths(monkeypatch, fn, arrays, WIDE)
    narrow = _run_with_widths(monkeypatch, fn, arrays, NARROW)
    np.testing.assert_array_equal(wide.view(np.uint32), narrow.view(np.uint32))
    spec = fn(*[Tensor(a, device="PYTHON") for a in arrays]).numpy()
    if case == "log_softmax":  # exp2 and log2 are within 2 ulp of the PYTHON device's, not bit for bit
        np.testing.assert_allclose(wide, spec, rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_array_equal(wide, spec)
    tensors = [Tensor(a) for a in arrays]
    assert marker in _sources(fn(*tensors), WIDE)
    assert "x16" not in _sources(fn(*tensors), NARROW)


def test_the_widths_follow_the_cpu_flags(monkeypatch):
    def widths_for(flags: str) -> tuple[tuple[int, ...], int]:
        monkeypatch.setattr(cpu_features, "cpu_identity", lambda: f"Linux\nx86_64\nflags={flags}")
        cpu_features.vector_widths.cache_clear()
        cpu_features.vector_registers.cache_clear()
        return cpu_features.vector_widths(), cpu_features.vector_registers()

    try:
        assert widths_for("fpu sse2 avx avx2 fma avx512f avx512vl") == ((16, 8, 4), 32)
        assert widths_for("fpu sse2 avx avx2 fma") == ((8, 4), 16)
        assert widths_for("") == ((8, 4), 16)  # an OS that does not say: the portable widths
    finally:
        cpu_features.vector_widths.cache_clear()
        cpu_features.vector_registers.cache_clear()


def test_sixteen_lane_helpers_agree_with_and_without_avx512(tmp_path):
    """The 16-lane masked loads, widening loads and fma have an AVX-512 form and a portable one (any other
    CPU): both give the scalar values, masked-off lanes are 0 and the fma rounds once."""
    from boltgrad.device.cpu import find_c_compiler

    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the x86 forms only exist on x86-64")
    source = CRenderer(WIDE).unit(
        [
            """
void bolt_test_sixteen(const void *p, const float *x, float *out) {
  bolt_store_f32x16(out, __builtin_convertvector(bolt_widen_u8x16((const uint8_t *)p), bolt_f32x16));
  bolt_store_f32x16(out + 16, __builtin_convertvector(bolt_widen_i8x16((const int8_t *)p), bolt_f32x16));
  bolt_store_f32x16(out + 32, __builtin_convertvector(bolt_widen_i16x16((const int16_t *)p), bolt_f32x16));
  bolt_store_f32x16(out + 48, bolt_widen_f16x16((const half_t *)p));
  bolt_store_f32x16(out + 64, bolt_widen_bf16x16((const uint16_t *)p));
  bolt_i32x16 lanes = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  bolt_store_f32x16(out + 80, bolt_mload_f32x16(x + 16, lanes < bolt_splat_i32x16(5)));
  bolt_f32x16 a = bolt_load_f32x16(x), b = bolt_load_f32x16(x + 16);
  bolt_store_f32x16(out + 96, bolt_fma_f32x16(a, b, bolt_splat_f32x16(-1.0f)));
}
"""
        ]
    )
    (tmp_path / "s.c").write_text(source)
    data = np.random.default_rng(0).integers(0, 256, 32, dtype=np.uint8)
    data[1] = 0x80  # a negative int8 and a half with the sign bit set
    x = np.zeros(32, np.float32)
    x[:16] = 1 + 2.0**-11  # a * b - 1 is 2^-11 + 2^-13 + 2^-24 fused, 2^-11 + 2^-13 unfused
    x[16:] = 1 + 2.0**-13
    halves = data.view(np.float16).astype(np.float32)
    bf16 = (data.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    fused = np.float32(np.float64(x[0]) * np.float64(x[16]) - 1.0)
    masked = np.where(np.arange(16) < 5, x[16:], 0).astype(np.float32)
    want = np.concatenate([data[:16], data[:16].view(np.int8), data.view(np.int16), halves, bf16, masked,
                           np.full(16, fused)]).astype(np.float32)  # fmt: skip
    for march in ("-march=native", "-march=x86-64"):
        lib = tmp_path / f"s{march[7:]}.so"
        subprocess.run([*find_c_compiler(), "-O2", march, "-fPIC", "-shared", "-fwrapv", "-ffp-contract=off",
                        str(tmp_path / "s.c"), "-o", str(lib), "-lm"], check=True)  # fmt: skip
        out = np.zeros(112, np.float32)
        ptr = lambda a: a.ctypes.data_as(ctypes.c_void_p)
        ctypes.CDLL(str(lib)).bolt_test_sixteen(ptr(data), ptr(x), ptr(out))
        np.testing.assert_array_equal(out.view(np.uint32), want.view(np.uint32), err_msg=march)


def test_doctor_names_the_vector_width():
    from boltgrad.device.registry import probe

    status = probe("CPU")
    assert status.ok and f"vectors of {cpu_features.vector_widths()[0]} floats" in status.detail


def test_a_unit_includes_the_intrinsics_header_only_where_a_kernel_needs_it():
    """<immintrin.h> is most of a small unit's compile time: only kernels that call a helper written with the x86
    intrinsics (a widening load, a 16-lane masked load) bring it in; fmas are compiler builtins. Both kinds of
    unit compile."""
    from boltgrad.device.cpu import CCompiler

    renderer = CRenderer(WIDE)
    fma_only = """void k(float *out, const float *x) {
  bolt_store_f32x8(out, bolt_fma_f32x8(bolt_load_f32x8(x), bolt_load_f32x8(x), bolt_splat_f32x8(1.0f)));
  bolt_store_f32x16(out, bolt_fma_f32x16(bolt_load_f32x16(x), bolt_load_f32x16(x), bolt_splat_f32x16(1.0f)));
}"""
    widening = """void k(float *out, const int8_t *q) {
  bolt_store_f32x8(out, __builtin_convertvector(bolt_widen_i8x8(q), bolt_f32x8));
}"""
    assert "immintrin" not in renderer.unit([fma_only])
    assert "#include <immintrin.h>" in renderer.unit([fma_only, widening])
    for unit in (renderer.unit([fma_only]), renderer.unit([widening])):
        ctypes.CDLL(CCompiler().compile(unit))
