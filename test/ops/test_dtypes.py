"""Every dtype: creation round trips, casts between all pairs, arithmetic with rounding and wraparound as torch
does it, and the dtypes that mixed operations produce."""

# ruff: noqa: B023
# (check() calls each lambda at once, inside its loop: late binding of loop variables cannot bite)

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import batch, check, on_devices

import boltgrad
from boltgrad import Tensor

DTYPES = ["bool", "int8", "uint8", "int16", "int32", "uint32", "int64", "float16", "bfloat16", "float32", "float64"]
INTS = ["int8", "uint8", "int16", "int32", "uint32", "int64"]
FLOATS = ["float16", "bfloat16", "float32", "float64"]


def dt(x, name: str):
    """The dtype called ``name`` from torch or boltgrad, whichever ``x`` belongs to."""
    return getattr(torch if isinstance(x, torch.Tensor) else boltgrad, name)


def _range(name: str) -> tuple[float, float]:
    if name == "bool":
        return 0, 1
    if name in FLOATS:
        return -math.inf, math.inf
    info = np.iinfo(name)
    return info.min, info.max


def cast_values(src: str, dst: str) -> np.ndarray:
    """Values of ``src`` whose cast to ``dst`` is defined: ints wrap, floats truncate when the result fits."""
    if src == "bool":
        return np.array([False, True, True, False])
    if src in INTS:
        candidates = [
            0,
            1,
            2,
            7,
            100,
            127,
            200,
            255,
            300,
            65535,
            70000,
            4_000_000_000,
            -1,
            -2,
            -7,
            -100,
            -128,
            -300,
            -40000,
            2**40 + 5,
            -(2**40) - 3,
        ]
        lo, hi = _range(src)
        return np.array([v for v in candidates if lo <= v <= hi], dtype=src)
    values = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.75, -2.75, 100.25, -99.5, 127.5, 126.0, 1000.5, -1000.5, 65504.0]
    if dst in FLOATS or dst == "bool":
        values += [math.inf, -math.inf, math.nan, 1e-3, 3e38 if src not in ("float16",) else 60000.0]
    lo, hi = _range(dst)
    keep = [v for v in values if math.isnan(v) or math.isinf(v) or lo - 1 < v < hi + 1]
    if src == "float16":
        keep = [v for v in keep if abs(v) <= 65504 or math.isinf(v) or math.isnan(v)]
    return np.array(keep, dtype=np.float32 if src == "bfloat16" else src)


def _as_src(x, src: str):
    return x.to(dt(x, "bfloat16")) if src == "bfloat16" else x


@on_devices
@pytest.mark.parametrize("src", DTYPES)
def test_casts_to_every_dtype(src, device):
    with batch():
        for dst in DTYPES:
            values = cast_values(src, dst)
            if dst == "uint32" or src == "uint32":
                # torch has no uint32 arithmetic but casts through int64 well enough: use numpy where it cannot
                check(
                    lambda x: _as_src(x, src).to(dt(x, dst)),
                    values,
                    device=device,
                    torch_fn=lambda x: _numpy_cast(x, src, dst),
                )
            else:
                check(lambda x: _as_src(x, src).to(dt(x, dst)), values, device=device)


def _numpy_cast(x: torch.Tensor, src: str, dst: str) -> np.ndarray:
    a = _as_src(x, src)
    a = a.float() if src == "bfloat16" else a
    arr = a.numpy()
    if dst == "bool":
        return arr != 0
    if dst in INTS and arr.dtype.kind == "f":
        arr = np.trunc(arr).astype(np.int64)
    if dst == "bfloat16":
        return torch.from_numpy(arr.astype(np.float64)).to(torch.bfloat16)
    with np.errstate(over="ignore"):
        return arr.astype(np.int64).astype(dst) if dst in INTS else arr.astype(dst)


@on_devices
@pytest.mark.parametrize("dtype", DTYPES)
def test_creation_round_trip(dtype, device):
    values = [0, 1, -1, 3, 100, -100, 127, 255, 1.5, -2.25, 1.00390625, 1.0009765625, 3.14159, 65519.0, 70000.0]
    if dtype == "bool":
        values = [True, False, True]
    elif dtype in INTS:
        lo, hi = _range(dtype)
        values = [int(v) for v in values if float(v).is_integer() and lo <= v <= hi]
    want = torch.tensor(values, dtype=getattr(torch, dtype))
    got = Tensor(values, dtype=dtype, device=device)
    assert got.dtype.name == dtype and got.shape == (len(values),)
    assert got.tolist() == want.tolist()  # float16/bfloat16 round to nearest even, like torch
    assert Tensor(values[1], dtype=dtype, device=device).item() == want[1].item()
    if dtype != "bfloat16":
        np.testing.assert_array_equal(got.numpy(), want.numpy())
        arr = want.numpy()
        np.testing.assert_array_equal(Tensor(arr, device=device).numpy(), arr)
    else:
        np.testing.assert_array_equal(got.numpy(), want.float().numpy())


@on_devices
@pytest.mark.parametrize("dtype", [d for d in INTS if d != "uint32"])
def test_integer_arithmetic_wraps(dtype, device):
    lo, hi = _range(dtype)
    with batch():
        for op in (lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b):
            check(op, (4, 5), (5,), device=device, dtype=dtype, low=lo, high=hi)
        check(lambda a: a + 1, (6,), device=device, dtype=dtype, low=lo, high=hi)
        check(lambda a: a * 3 - 7, (6,), device=device, dtype=dtype, low=lo, high=hi)
        check(lambda a: -a, (6,), device=device, dtype=dtype, low=lo, high=hi) if dtype != "uint8" else None
        edge = np.array([lo, hi, 0, -1 if lo < 0 else 1], dtype=dtype)
        check(lambda a: a + 1, edge, device=device)
        check(lambda a: a - 1, edge, device=device)
        check(lambda a, b: a * b, edge, edge[::-1].copy(), device=device)
        check(lambda a: a.abs(), edge, device=device)


@on_devices
def test_uint32_arithmetic(device):
    """torch has no uint32 arithmetic; numpy wraps the same way."""
    a = np.array([0, 1, 7, 2**31, 2**32 - 1, 123456789], dtype=np.uint32)
    b = np.array([1, 2**32 - 1, 3, 2**31, 2, 987654], dtype=np.uint32)
    with batch(), np.errstate(over="ignore"):
        check(lambda x, y: x + y, a, b, device=device, torch_fn=lambda x, y: x.numpy() + y.numpy())
        check(lambda x, y: x * y, a, b, device=device, torch_fn=lambda x, y: x.numpy() * y.numpy())
        check(lambda x, y: x - y, a, b, device=device, torch_fn=lambda x, y: x.numpy() - y.numpy())
        check(lambda x, y: x // y, a, b, device=device, torch_fn=lambda x, y: x.numpy() // y.numpy())
        check(lambda x, y: x % y, a, b, device=device, torch_fn=lambda x, y: x.numpy() % y.numpy())
        check(lambda x, y: x < y, a, b, device=device, torch_fn=lambda x, y: x.numpy() < y.numpy())
        check(lambda x, y: x >> 3, a, b, device=device, torch_fn=lambda x, y: x.numpy() >> 3)
        check(lambda x: x.amax(), a, device=device, torch_fn=lambda x: x.numpy().max())
        check(lambda x: x.sum(), a, device=device, torch_fn=lambda x: x.numpy().astype(np.int64).sum())


def test_wraparound_examples():
    assert (Tensor([127], dtype="int8") + 1).tolist() == [-128]
    assert (Tensor([127], dtype="int8") + Tensor([1], dtype="int8")).tolist() == [-128]
    assert (Tensor([0], dtype="uint8") - 1).tolist() == [255]
    assert (Tensor([2**31 - 1], dtype="int32") + 1).tolist() == [-(2**31)]
    assert (Tensor([2**63 - 1]) + 1).tolist() == [-(2**63)]
    assert (Tensor([100], dtype="int8") * 3).tolist() == [44]
    both = Tensor([200], dtype="uint8") + Tensor([-100], dtype="int8")
    assert both.dtype == boltgrad.int16 and both.tolist() == [100]


@on_devices
@pytest.mark.parametrize("dtype", FLOATS)
def test_float_arithmetic_rounds_like_torch(dtype, device):
    """Every op rounds to its dtype (also inside one fused kernel), so results equal torch's bit for bit."""
    exact = {"atol": 0, "rtol": 0}
    with batch():
        for op in (lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b, lambda a, b: a / b):
            check(op, (4, 6), (6,), device=device, dtype=dtype, low=-3, high=3, **exact)
        check(lambda a, b, c: a * b + c, (4, 6), (4, 6), (6,), device=device, dtype=dtype, **exact)
        check(lambda a, b, c: (a + b) * c - a, (4, 6), (4, 6), (6,), device=device, dtype=dtype, **exact)
        check(lambda a: a * 0.1 + 1000, (4, 6), device=device, dtype=dtype, **exact)
        check(lambda a, b: (a + b) + (a - b), (30,), (30,), device=device, dtype=dtype, low=-1e3, high=1e3, **exact)
        # torch's float32 sqrt is not always correctly rounded (sqrt(60.663) is 1 ulp off); numpy's float64 is
        check(
            lambda a: a.sqrt(),
            (4, 6),
            device=device,
            dtype=dtype,
            low=0,
            high=100,
            **exact,
            torch_fn=lambda a: torch.from_numpy(np.sqrt(a.double().numpy())).to(a.dtype),
        )
        check(lambda a: a.exp(), (4, 6), device=device, dtype=dtype)
        check(lambda a: a.sum(1), (4, 6), device=device, dtype=dtype)


def test_float16_overflow_and_subnormals():
    big = np.array([60000.0, 65504.0, 1e-7, -1e-7, 6e-8], dtype=np.float32)
    with batch():
        check(lambda x: x.half() * 2, big, atol=0, rtol=0)
        check(lambda x: x.half() + 1e-4, big, atol=0, rtol=0)
        check(lambda x: x.to(dt(x, "bfloat16")) * 1e30, big, atol=0, rtol=0)


def test_conversion_methods():
    x = Tensor([1.5, -2.0])
    for name in ("float", "double", "half", "bfloat16", "int", "long", "short", "bool"):
        want = getattr(torch.tensor([1.5, -2.0]), name)()
        got = getattr(x, name)()
        assert got.dtype.name == str(want.dtype).removeprefix("torch."), name
        assert got.tolist() == want.tolist(), name


@on_devices
def test_bool_arithmetic(device):
    a = np.array([True, False, True, False])
    b = np.array([True, True, False, False])
    with batch():
        check(lambda x, y: x + y, a, b, device=device)
        check(lambda x, y: x * y, a, b, device=device)
        check(lambda x: x + 1, a, device=device)
        check(lambda x: x * 2.5, a, device=device)
        check(lambda x, y: x & y, a, b, device=device)
        check(lambda x: x.sum(), a, device=device)
        check(lambda x, y: lib_maximum(x, y), a, b, device=device)


def lib_maximum(x, y):
    return (torch if isinstance(x, torch.Tensor) else boltgrad).maximum(x, y)


# ---------------------------------------------------------------- promotion of mixed operations


@on_devices
def test_mixed_dtype_values(device):
    """The promoted result is computed in the promoted dtype: values, not only the dtype name, agree."""
    with batch():
        check(lambda a, b: a + b, np.array([200, 17], np.uint8), np.array([-100, -7], np.int8), device=device)
        check(lambda a, b: a * b, np.array([3, -5], np.int32), np.array([1.5, 2.25], np.float16), device=device)
        check(lambda a, b: a / b, np.array([3, -5], np.int64), np.array([2, 4], np.int8), device=device)
        check(lambda a: a * 2.5, np.array([3, -5], np.int16), device=device)
        check(lambda a: a + 1.0, np.array([1.5, 2.0], np.float16), device=device)
        check(lambda a: a + 1, np.array([True, False]), device=device)
        check(lambda a: a * 1000, np.array([100, 50], np.int8), device=device)  # weak int: stays int8 and wraps
        check(lambda a, b: a - b, np.array([0.1], np.float16), np.array([0.1], np.float64), device=device)
        check(lambda a, b: a + b, np.array([1], np.uint8), np.array([300], np.int16), device=device)


@pytest.mark.parametrize("code", [">f4", ">f8", ">f2", ">i2", ">i4", ">i8", ">u4"])
def test_big_endian_arrays_load_by_value(code):
    """An array in the other byte order (read from a file written on another machine) gives its values, not its
    bytes reinterpreted."""
    values = np.array([0, 1, 250, 3, 1000, 7]).astype(code.replace(">", "<"))
    data = values.astype(code)
    got = Tensor(data[::2]).numpy()  # strided too
    assert got.dtype.isnative
    np.testing.assert_array_equal(got, values[::2].astype(got.dtype))
