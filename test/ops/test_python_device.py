"""The PYTHON device is the executable spec: the same programs on CPU and PYTHON give the same bits where IEEE
fixes the result (+ - * / sqrt are correctly rounded), close values for transcendental functions, and identical
integer semantics (C truncation of IDIV and MOD, fixed-width wraparound)."""

from __future__ import annotations

import numpy as np
import pytest

from boltgrad import Tensor

RNG = np.random.default_rng(7)


def on_both(fn, *arrays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run ``fn`` (returning a tuple of tensors) on the CPU and on PYTHON; each side realizes in one go."""
    results = []
    for device in ("CPU", "PYTHON"):
        outs = fn(*(Tensor(a, device=device) for a in arrays))
        Tensor.realize_all(list(outs))
        results.append([o.numpy() for o in outs])
    return results[0], results[1]


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_correctly_rounded_ops_are_bit_identical(dtype):
    a = RNG.uniform(-10, 10, (6, 8)).astype(np.float32)
    b = RNG.uniform(0.1, 10, (6, 8)).astype(np.float32)
    a[0, :4] = [0.0, -0.0, 1e-30, 3.0]  # signed zeros and a tiny value

    def program(x, y):
        x, y = x.cast(dtype), y.cast(dtype)
        return x + y, x - y, x * y, x / y, y.sqrt(), (x * y + x) / (y - 0.5), x * 1e-3 + 1e3, -x

    cpu, py = on_both(program, a, b)
    for i, (c, p) in enumerate(zip(cpu, py)):
        assert same_bits(c, p), f"output {i} ({dtype}) differs: CPU {c.ravel()[:6]} PYTHON {p.ravel()[:6]}"


def test_special_values_are_bit_identical():
    a = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 3e38], dtype=np.float32)
    b = np.array([0.0, 0.0, np.inf, 2.0, 1.0, -0.0, np.inf, 3e38], dtype=np.float32)

    def program(x, y):
        return x + y, x * y, x / y, x.sqrt(), x.maximum(y), x < y, x == y, x.isnan()

    cpu, py = on_both(program, a, b)
    for i, (c, p) in enumerate(zip(cpu, py)):
        assert c.dtype == p.dtype and np.array_equal(c, p, equal_nan=c.dtype.kind == "f"), (i, c, p)


def test_transcendental_functions_agree_closely():
    x = RNG.uniform(-4, 4, (5, 9)).astype(np.float32)
    pos = RNG.uniform(1e-3, 50, (5, 9)).astype(np.float32)

    def program(a, p):
        return a.exp(), a.exp2(), p.log(), p.log2(), a.sin(), a.cos(), a.tanh(), a.sigmoid(), p.rsqrt()

    cpu, py = on_both(program, x, pos)
    for i, (c, p) in enumerate(zip(cpu, py)):
        np.testing.assert_allclose(c, p, rtol=2e-6, atol=1e-6, err_msg=f"output {i}")


def test_integer_division_truncates_and_wraps_identically():
    a = np.array([-128, -127, -9, -7, -1, 0, 1, 7, 9, 100, 127], dtype=np.int8).reshape(-1, 1)
    b = np.array([-7, -3, -1, 1, 2, 5], dtype=np.int8)

    def program(x, y):
        return (
            x.div(y, rounding_mode="trunc"),  # IDIV: toward zero
            x.fmod(y),  # MOD: the sign of the dividend
            x // y,
            x % y,
            x + 100,  # wraps in int8
            x * y,
            -x,  # -(-128) wraps to -128
            x.cast("int32") * 40_000_000,  # wraps in int32
            x.cast("uint8") - 200,
        )

    cpu, py = on_both(program, a, b)
    for i, (c, p) in enumerate(zip(cpu, py)):
        assert same_bits(c, p), f"output {i}: CPU {c.ravel()[:8]} PYTHON {p.ravel()[:8]}"
    trunc, fmod = cpu[0], cpu[1]
    np.testing.assert_array_equal(trunc, np.trunc(a.astype(np.float64) / b).astype(np.int64).astype(np.int8))
    np.testing.assert_array_equal(fmod, np.fmod(a, b))
    assert cpu[6][0, 0] == -128 and cpu[4][-1, 0] == np.int8(127 + 100 - 256)


def test_casts_are_bit_identical():
    f = np.array([0.5, -0.5, 1.5, 2.5, -2.7, 100.99, -128.4, 127.9, 65504.0, 1e-8, 3.3e38], dtype=np.float32)

    def program(x):
        return (
            x.cast("int8"),
            x.cast("int32"),
            x.cast("float16"),
            x.cast("bfloat16"),
            x.cast("float64"),
            x.cast("bool"),
            x.cast("int64").cast("uint8"),
        )

    cpu, py = on_both(program, f)
    for i, (c, p) in enumerate(zip(cpu, py)):
        if i in (0, 1):  # float -> int is defined only in range: compare those
            ok = np.abs(f) < 127
            c, p = c[ok], p[ok]
        assert same_bits(c, p), f"cast {i}: CPU {c} PYTHON {p}"


def test_reductions_match():
    x = RNG.uniform(-1, 1, (4, 16)).astype(np.float32)
    i = RNG.integers(-100, 100, (4, 16)).astype(np.int32)

    def program(a, b):
        return a.sum(1), a.amax(0), a.argmax(1), b.sum(0), b.prod(1), b.amin(1), (a * a).mean()

    cpu, py = on_both(program, x, i)
    for k, (c, p) in enumerate(zip(cpu, py)):
        if c.dtype.kind == "f":
            np.testing.assert_allclose(c, p, rtol=1e-6, atol=1e-6, err_msg=f"output {k}")  # summation order may differ
        else:
            assert same_bits(c, p), f"output {k}: CPU {c} PYTHON {p}"
