"""Creation, elementwise math and bad input, compared with PyTorch on the CPU and PYTHON devices."""

# ruff: noqa: B023
# (check() calls each lambda at once, inside its loop: late binding of loop variables cannot bite)

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import batch, check, lib, on_devices

import boltgrad
from boltgrad import Tensor

NAN, INF = math.nan, math.inf

# PYTHON interprets one scalar at a time: its shapes stay at 64 elements or fewer
SMALL_SHAPES = [(), (1,), (0,), (5,), (3, 4), (2, 1, 3), (4, 0, 2)]
CPU_SHAPES = SMALL_SHAPES + [(17, 33), (3, 5, 7)]

# values where functions have edges: signed zeros, halves (rounding), infinities, NaN, tiny and large
SPECIAL = np.array(
    [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 3.7, -3.7, 100.0, -100.0, 1e-30, INF, -INF, NAN],
    dtype=np.float32,
)


# Python data and what torch.tensor makes of it: float lists are float32, int lists int64, bool lists bool
PYTHON_DATA = [[1.0, 2.5, -3.0], [1, 2, 3], [True, False], [[1, 2], [3, 4]], [[1.5], [2.0]], 3.5, 7, True, [], [[]],
               [1, 2.5], [True, 2]]  # fmt: skip


def shapes_for(device: str) -> list[tuple[int, ...]]:
    return CPU_SHAPES if device == "CPU" else SMALL_SHAPES


# ---------------------------------------------------------------- creation


@on_devices
def test_tensor_from_python_data(device):
    for data in PYTHON_DATA:
        t = Tensor(data, device=device)
        want = torch.tensor(data)
        assert t.shape == tuple(want.shape), data
        assert t.dtype.name == str(want.dtype).removeprefix("torch."), data
        assert t.tolist() == want.tolist(), data
        assert t.device == device


@on_devices
def test_tensor_from_numpy_keeps_dtype(device):
    for name in ("bool", "int8", "uint8", "int16", "int32", "uint32", "int64", "float16", "float32", "float64"):
        arr = (np.arange(-3, 9).reshape(3, 4) % (2 if name == "bool" else 100)).astype(name)
        t = Tensor(arr, device=device)
        assert t.dtype.name == name and t.shape == (3, 4)
        np.testing.assert_array_equal(t.numpy(), arr)
        assert t.numpy().dtype == arr.dtype
    # non-contiguous numpy input and a 0-d array
    arr = np.arange(12, dtype=np.float32).reshape(3, 4).T
    np.testing.assert_array_equal(Tensor(arr, device=device).numpy(), arr)
    assert Tensor(np.float64(2.5), device=device).item() == 2.5


@on_devices
def test_tensor_dtype_argument(device):
    t = Tensor([1, 2, 3], dtype=boltgrad.float16, device=device)
    assert t.dtype == boltgrad.float16 and t.tolist() == [1.0, 2.0, 3.0]
    t = Tensor([1.7, -1.7, 300.0], dtype="int16", device=device)
    assert t.tolist() == [1, -1, 300]
    t = Tensor(np.array([1.5, 2.5]), dtype=boltgrad.float32, device=device)
    assert t.dtype == boltgrad.float32 and t.tolist() == [1.5, 2.5]


@on_devices
def test_constant_creation(device):
    with batch():
        for shape in [(), (0,), (2, 3), (1, 4, 1)]:
            check(lambda: boltgrad.zeros(shape, device=device), torch_fn=lambda: torch.zeros(shape))
            check(lambda: boltgrad.ones(*shape, device=device), torch_fn=lambda: torch.ones(shape))
        check(
            lambda: boltgrad.zeros(2, 3, dtype=boltgrad.int32, device=device),
            torch_fn=lambda: torch.zeros(2, 3, dtype=torch.int32),
        )
        check(
            lambda: boltgrad.ones((2,), dtype=boltgrad.bool_, device=device),
            torch_fn=lambda: torch.ones((2,), dtype=torch.bool),
        )
        for value in (7, 2.5, True, -0.5):
            check(lambda: boltgrad.full((2, 3), value, device=device), torch_fn=lambda: torch.full((2, 3), value))
        check(
            lambda: boltgrad.full((3,), 2, dtype=boltgrad.float64, device=device),
            torch_fn=lambda: torch.full((3,), 2, dtype=torch.float64),
        )


@on_devices
def test_arange(device):
    cases = [(5,), (2, 10, 3), (10, 0, -3), (0, 1, 0.25), (0,), (-3, 3), (1.5, 4.0), (0, 10, 4), (3, 3)]
    with batch():
        for args in cases:
            check(lambda: boltgrad.arange(*args, device=device), torch_fn=lambda: torch.arange(*args))
        check(
            lambda: boltgrad.arange(4, dtype=boltgrad.float32, device=device),
            torch_fn=lambda: torch.arange(4, dtype=torch.float32),
        )
        check(
            lambda: boltgrad.arange(1, 4, dtype=boltgrad.int8, device=device),
            torch_fn=lambda: torch.arange(1, 4, dtype=torch.int8),
        )
    with pytest.raises(ValueError):
        boltgrad.arange(0, 5, 0)


@on_devices
def test_eye(device):
    with batch():
        for args in [(3,), (2, 4), (4, 2), (1,), (0,)]:
            check(lambda: boltgrad.eye(*args, device=device), torch_fn=lambda: torch.eye(*args))
        check(
            lambda: boltgrad.eye(3, dtype=boltgrad.int32, device=device),
            torch_fn=lambda: torch.eye(3, dtype=torch.int32),
        )


@on_devices
def test_like_functions(device):
    x = np.arange(6, dtype=np.int16).reshape(2, 3)
    with batch():
        check(lambda t: lib(t).zeros_like(t), x, device=device)
        check(lambda t: lib(t).ones_like(t), x, device=device)
        check(lambda t: lib(t).full_like(t, 9), x, device=device)
        check(lambda t: t.zeros_like(), x, device=device, torch_fn=lambda t: torch.zeros_like(t))
        check(lambda t: lib(t).zeros_like(t, dtype=lib(t).float64), x, device=device)
        check(lambda t: lib(t).ones_like(t), np.zeros((0, 2), np.float32), device=device)
    f = Tensor(np.zeros((2, 3), np.float16), device=device)
    for r in (boltgrad.rand_like(f), boltgrad.randn_like(f), f.rand_like()):
        assert r.shape == (2, 3) and r.dtype == boltgrad.float16 and r.device == device


def test_manual_seed_reproducible():
    boltgrad.manual_seed(1234)
    a, b = boltgrad.rand(50).numpy(), boltgrad.rand(50).numpy()
    boltgrad.manual_seed(1234)
    a2, b2 = boltgrad.rand(50).numpy(), boltgrad.rand(50).numpy()
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_array_equal(b, b2)
    assert not np.array_equal(a, b)  # two draws differ
    boltgrad.manual_seed(1235)
    assert not np.array_equal(a, boltgrad.rand(50).numpy())  # another seed differs
    boltgrad.manual_seed(7)
    n1 = boltgrad.randn(3, 4).numpy()
    boltgrad.manual_seed(7)
    np.testing.assert_array_equal(n1, boltgrad.randn(3, 4).numpy())


def test_rand_distribution():
    boltgrad.manual_seed(0)
    u = boltgrad.rand(100, 100)
    n = boltgrad.randn(10_000)
    Tensor.realize_all([u, n])
    u, n = u.numpy(), n.numpy()
    assert u.shape == (100, 100) and u.dtype == np.float32
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.std() - math.sqrt(1 / 12)) < 0.01
    assert np.histogram(u, bins=10, range=(0, 1))[0].min() > 900  # no empty or starved bin
    assert abs(n.mean()) < 0.03 and abs(n.std() - 1) < 0.03
    assert np.isfinite(n).all() and (np.abs(n) > 2).mean() == pytest.approx(0.0455, abs=0.01)
    assert len(np.unique(u)) > 9900  # not a short cycle


def test_rand_same_bits_on_cpu_and_python():
    boltgrad.manual_seed(42)
    cpu_u, cpu_n = boltgrad.rand(4, 8, device="CPU").numpy(), boltgrad.randn(16, device="CPU").numpy()
    boltgrad.manual_seed(42)
    py_u, py_n = boltgrad.rand(4, 8, device="PYTHON").numpy(), boltgrad.randn(16, device="PYTHON").numpy()
    assert cpu_u.tobytes() == py_u.tobytes()
    np.testing.assert_allclose(cpu_n, py_n, rtol=1e-6, atol=1e-6)  # randn goes through log and cos


def test_rand_dtypes():
    boltgrad.manual_seed(3)
    for dt in (boltgrad.float16, boltgrad.bfloat16, boltgrad.float64):
        r = boltgrad.rand(256, dtype=dt)
        assert r.dtype == dt
        v = r.numpy()
        assert v.min() >= 0 and v.max() < 1, dt
    with pytest.raises(TypeError):
        boltgrad.rand(3, dtype=boltgrad.int32)


# ---------------------------------------------------------------- elementwise: unary

UNARY = {
    "neg": lambda x: -x,
    "abs": lambda x: x.abs(),
    "sign": lambda x: x.sign(),
    "exp": lambda x: x.exp(),
    "exp2": lambda x: x.exp2(),
    "log": lambda x: x.log(),
    "log2": lambda x: x.log2(),
    "sqrt": lambda x: x.sqrt(),
    "rsqrt": lambda x: x.rsqrt(),
    "sin": lambda x: x.sin(),
    "cos": lambda x: x.cos(),
    "tan": lambda x: x.tan(),
    "sigmoid": lambda x: x.sigmoid(),
    "tanh": lambda x: x.tanh(),
    "relu": lambda x: x.relu(),
    "reciprocal": lambda x: x.reciprocal(),
    "square": lambda x: x.square(),
    "floor": lambda x: x.floor(),
    "ceil": lambda x: x.ceil(),
    "round": lambda x: x.round(),
    "trunc": lambda x: x.trunc(),
}
POSITIVE_ONLY = {"log", "log2", "sqrt", "rsqrt"}


@on_devices
@pytest.mark.parametrize("name", UNARY)
def test_unary(name, device):
    op = UNARY[name]
    low = 0.05 if name in POSITIVE_ONLY else -3
    with batch():
        for shape in shapes_for(device):
            check(op, shape, device=device, low=low, high=3)
        check(lambda x: op(x.T), (3, 5), device=device, low=low, high=3)  # transposed
        check(lambda x: op(x[1::2, ::3]), (5, 7), device=device, low=low, high=3)  # strided slice
        check(lambda x: op(x.expand(3, 4)), (1, 4), device=device, low=low, high=3)  # broadcast view
        check(lambda x: op(x.permute(2, 0, 1)[:, 1]), (2, 3, 4), device=device, low=low, high=3)


@on_devices
@pytest.mark.parametrize("name", UNARY)
def test_unary_special_values(name, device):
    # torch.sign(nan) is 0 on the CPU, an accident of its vector code; NaN in, NaN out is the sane rule there
    values = SPECIAL[~np.isnan(SPECIAL)] if name == "sign" else SPECIAL
    check(UNARY[name], values, device=device)


@on_devices
@pytest.mark.parametrize("dtype", ["int8", "int32", "int64", "uint8"])
def test_unary_on_integers(dtype, device):
    """Float functions of integers compute in float32; the rest keep the integer dtype."""
    with batch():
        for name in (
            "neg",
            "abs",
            "sign",
            "exp",
            "sqrt",
            "sin",
            "sigmoid",
            "relu",
            "square",
            "reciprocal",
            "floor",
            "ceil",
            "round",
            "trunc",
        ):
            if name == "neg" and dtype == "uint8":
                continue
            check(UNARY[name], (2, 5), device=device, dtype=dtype, low=-9, high=9)


def test_trig_large_arguments():
    x = np.array([100.0, -250.0, 1000.0, 4096.5, -1e4, 12345.0], dtype=np.float32)
    with batch():
        for name in ("sin", "cos", "tan"):
            check(UNARY[name], x, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- elementwise: binary

BROADCAST_PAIRS = [
    ((3, 4), (3, 4)),
    ((3, 1), (1, 4)),
    ((), (3,)),
    ((2, 3, 4), (4,)),
    ((2, 1, 4), (3, 1)),
    ((0, 3), (1, 3)),
    ((1,), (0,)),
    ((), ()),
]

BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "maximum": lambda a, b: lib(a).maximum(a, b),
    "minimum": lambda a, b: lib(a).minimum(a, b),
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "floordiv": lambda a, b: a // b,
    "mod": lambda a, b: a % b,
    "pow": lambda a, b: a.abs() ** b,
}


@on_devices
@pytest.mark.parametrize("name", BINARY)
def test_binary(name, device):
    op = BINARY[name]
    with batch():
        for sa, sb in BROADCAST_PAIRS:
            check(op, sa, sb, device=device, low=-3, high=3)
            check(op, sb, sa, device=device, low=-3, high=3)
        check(lambda a, b: op(a.T, b), (4, 3), (3, 4), device=device)  # transposed
        check(
            lambda a, b: op(a[::2], b[1:, ::-1].flip(1)),
            (5, 4),
            (4, 4),
            device=device,
            torch_fn=lambda a, b: op(a[::2], b[1:]),
        )
        check(lambda a, b: op(a, b.expand(2, 3, 4)), (2, 3, 4), (3, 1), device=device)
        if device == "CPU":
            check(op, (17, 33), (17, 1), device=device, low=-3, high=3)


@on_devices
@pytest.mark.parametrize("name", BINARY)
def test_binary_with_python_scalars(name, device):
    op = BINARY[name]
    with batch():
        for scalar in (2, -1.5, 0.5):
            check(
                lambda a: op(a, scalar), (2, 3), device=device, low=-3, high=3, torch_fn=lambda a: op(a, weak(scalar))
            )
            if name not in ("pow", "maximum", "minimum"):  # torch.maximum(2, t) does not exist
                check(
                    lambda a: op(scalar, a),
                    (2, 3),
                    device=device,
                    low=-3,
                    high=3,
                    torch_fn=lambda a: op(weak(scalar), a),
                )
        check(
            lambda a: op(a, 3), (2, 3), device=device, dtype="int32", low=-9, high=9, torch_fn=lambda a: op(a, weak(3))
        )


def weak(scalar):
    """torch.maximum and friends take no Python scalars; a 0-d tensor promotes as weakly as a scalar does."""
    return torch.tensor(scalar)


def test_binary_special_values():
    a = np.repeat(SPECIAL, len(SPECIAL))
    b = np.tile(SPECIAL, len(SPECIAL))
    with batch():
        for name in ("add", "sub", "mul", "div", "maximum", "minimum", "lt", "le", "gt", "ge", "eq", "ne"):
            check(BINARY[name], a, b)


@on_devices
def test_nan_comparisons(device):
    a = np.array([NAN, 1.0, NAN, -INF, INF, 0.0, -0.0, 2.0], dtype=np.float32)
    b = np.array([NAN, NAN, 1.0, -INF, INF, -0.0, 0.0, 3.0], dtype=np.float32)
    with batch():
        for name in ("lt", "le", "gt", "ge", "eq", "ne"):
            check(BINARY[name], a, b, device=device)
            check(lambda x: BINARY[name](x, NAN), a, device=device)
            check(lambda x: BINARY[name](x, 1.0), a, device=device)
        check(lambda x: x.isnan(), a, device=device)
        check(lambda x: x.isinf(), a, device=device)
        check(lambda x: x.isinf(), np.array([1, -5], np.int32), device=device)
        check(lambda x: x.isnan(), np.array([1, -5], np.int64), device=device)


@on_devices
def test_comparisons_of_integers(device):
    with batch():
        for name in ("lt", "le", "gt", "ge", "eq", "ne"):
            check(BINARY[name], (4, 5), (5,), device=device, dtype="int32", low=-3, high=3)
            check(BINARY[name], (4, 5), (5,), device=device, dtype="uint8", low=0, high=3)
            check(lambda a: BINARY[name](a, 2.5), (6,), device=device, dtype="int64", low=-4, high=4)
            check(lambda a, b: BINARY[name](a, b.float() / 2), (6,), (6,), device=device, dtype="int64", low=-4, high=4)


INT_DIVISORS = np.array([-7, -2, -1, 1, 2, 3], dtype=np.int64)
INT_DIVIDENDS = np.array([-17, -9, -7, -6, -1, 0, 1, 7, 9, 100], dtype=np.int64)  # 10 x 6: PYTHON-sized


@on_devices
@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64"])
def test_integer_floordiv_and_mod_floor(dtype, device):
    """// and % floor like Python and torch, also with negative operands (IDIV/MOD truncate like C)."""
    a = INT_DIVIDENDS.astype(dtype).reshape(-1, 1)
    b = INT_DIVISORS.astype(dtype).reshape(1, -1)
    with batch():
        check(lambda x, y: x // y, a, b, device=device)
        check(lambda x, y: x % y, a, b, device=device)
        for s in (3, -3, 1, -1):
            check(lambda x: x // s, a, device=device)
            check(lambda x: x % s, a, device=device)
        check(lambda y: 7 // y, b, device=device)
        check(lambda y: -7 % y, b, device=device)
        check(lambda x, y: x.div(y, rounding_mode="trunc"), a, b, device=device)
        check(lambda x, y: x.div(y, rounding_mode="floor"), a, b, device=device)
        check(lambda x, y: x.fmod(y), a, b, device=device)
        # chains: the simplifier sees divisions of values it cannot bound
        check(lambda x: (x.div(2, rounding_mode="trunc") + 4).div(4, rounding_mode="trunc"), a, device=device)
        check(lambda x: (x // 3 + 4) // 4, a, device=device)
        check(lambda x: (x % 5 + x // 7) % 3, a, device=device)
        check(lambda x: (x.fmod(-3) + 8) % 4, a, device=device)


@on_devices
def test_unsigned_floordiv_and_mod(device):
    a = np.array([0, 1, 7, 200, 255], dtype=np.uint8).reshape(-1, 1)
    b = np.array([1, 2, 7, 255], dtype=np.uint8)
    with batch():
        check(lambda x, y: x // y, a, b, device=device)
        check(lambda x, y: x % y, a, b, device=device)
        check(lambda x: x // 3, a, device=device)


@on_devices
def test_float_floordiv_and_mod(device):
    a = np.array([-7.5, -7.0, -0.5, 0.0, 0.5, 3.0, 7.5, 9.25], dtype=np.float32).reshape(-1, 1)
    b = np.array([-2.0, -0.75, 0.5, 2.0, 3.0], dtype=np.float32)
    with batch():
        check(lambda x, y: x // y, a, b, device=device)
        check(lambda x, y: x % y, a, b, device=device)
        check(lambda x, y: x.fmod(y), a, b, device=device)
        check(lambda x: x % -2.5, a, device=device)


@on_devices
def test_integer_division_gives_float32(device):
    a = np.array([7, -7, 1, 0, 9], dtype=np.int64)
    b = np.array([2, 2, 3, 5, -4], dtype=np.int32)
    with batch():
        check(lambda x, y: x / y, a, b, device=device)
        check(lambda x: x / 2, a, device=device)
        check(lambda x: 1 / x, b, device=device)
        check(lambda x, y: x / y, np.array([True, False]), np.array([True, True]), device=device)


@on_devices
def test_pow(device):
    with batch():
        for e in (2, 3, -1, 0.5, 0, 2.5, -0.5, 1, 4.0, 8):
            check(lambda x: x**e, (2, 3), device=device, low=0.1, high=3)
        check(lambda x, y: x**y, (3, 4), (4,), device=device, low=0.1, high=2)
        # negative bases: integer exponents keep the sign, fractional ones give NaN
        base = np.array([-3.0, -2.0, -0.5, 0.0, 2.0], dtype=np.float32).reshape(-1, 1)
        expo = np.array([2.0, 3.0, -1.0, 0.5, 0.0], dtype=np.float32)
        check(lambda x, y: x**y, base, expo, device=device)
        check(lambda x: x**3, base, device=device)
        check(lambda x: 2**x, (5,), device=device)
        check(lambda x: 2.5**x, (5,), device=device)
        # integer powers stay integers
        ints = np.array([-3, -1, 0, 2, 5], dtype=np.int64)
        check(lambda x: x**2, ints, device=device)
        check(lambda x: x**3, ints.astype(np.int32), device=device)
        check(lambda x, y: x**y, ints, np.array([0, 1, 2, 3, 4], dtype=np.int64), device=device)
        check(lambda x: x**0.5, np.array([1, 4, 9], np.int32), device=device)


def test_integer_pow_is_exact():
    a = np.array([3, 7, -5, 2, 10], dtype=np.int64)
    b = np.array([15, 8, 9, 40, 12], dtype=np.int64)
    check(lambda x, y: x**y, a, b)


@on_devices
def test_maximum_minimum_clamp(device):
    nan_a = np.array([NAN, 1.0, -2.0, INF, NAN], dtype=np.float32)
    nan_b = np.array([0.0, NAN, -3.0, -INF, NAN], dtype=np.float32)
    with batch():
        check(lambda a, b: lib(a).maximum(a, b), nan_a, nan_b, device=device)
        check(lambda a, b: lib(a).minimum(a, b), nan_a, nan_b, device=device)
        check(lambda a, b: lib(a).maximum(a, b), (3, 4), (4,), device=device, dtype="int16", low=-50, high=50)
        check(lambda a, b: lib(a).minimum(a, b), (3, 4), (4,), device=device, dtype="uint8", low=0, high=255)
        check(lambda a: a.clamp(-1, 0.5), (4, 5), device=device)
        check(lambda a: a.clamp(min=0.25), (4, 5), device=device)
        check(lambda a: a.clamp(max=-0.25), (4, 5), device=device)
        check(lambda a: a.clamp(-1, 1), nan_a, device=device)
        check(lambda a, lo, hi: a.clamp(lo, hi), (3, 4), (4,), (3, 1), device=device)
        check(lambda a: a.clamp(-3, 4), (10,), device=device, dtype="int32", low=-9, high=9)
        check(lambda a: a.clip(0, 1), (10,), device=device)


@on_devices
def test_where(device):
    cond = np.array([[True], [False], [True]])
    with batch():
        check(lambda c, x, y: lib(x).where(c, x, y), cond, (3, 4), (4,), device=device)
        check(lambda c, x, y: lib(x).where(c > 0, x, y), (2, 3), (2, 3), (), device=device)
        check(lambda c, x: lib(x).where(c, x, 0.0), cond, (3, 4), device=device)
        check(lambda c, x: lib(x).where(c, 1.5, x), cond, (1, 4), device=device)
        check(lambda c: lib(c).where(c, 2, 3), cond, device=device)
        check(lambda c: lib(c).where(c, 2.0, 3), cond, device=device)
        check(lambda c, x: lib(x).where(c, x, 2.5), cond, (3, 2), device=device, dtype="int32")
        check(lambda c, x, y: lib(x).where(c, x, y), cond, (3, 2), (2,), device=device, dtype="int8")
        check(lambda c, x, y: lib(x).where(c, x.int(), y), cond, (3, 2), (2,), device=device)
        check(lambda c, x, y: lib(x).where(c.T, x.T, y), cond, (1, 3), (3, 3), device=device)


@on_devices
def test_where_method_is_torch_style(device):
    """torch's ``x.where(condition, y)``: x where the condition holds, else y."""
    check(lambda x, c, y: x.where(c > 0, y), (2, 3), (2, 3), (2, 3), device=device)


@on_devices
def test_logical_ops(device):
    a = np.array([True, True, False, False])
    b = np.array([True, False, True, False])
    f = np.array([0.0, -0.0, 2.5, NAN, -1.0, 0.0], dtype=np.float32)
    g = np.array([1.0, 0.0, 0.0, 0.0, NAN, 3.0], dtype=np.float32)
    with batch():
        for name in ("logical_and", "logical_or", "logical_xor"):
            check(lambda x, y: getattr(x, name)(y), a, b, device=device)
            check(lambda x, y: getattr(x, name)(y), f, g, device=device)
            check(lambda x, y: getattr(x, name)(y), (3, 4), (4,), device=device, dtype="int32", low=-1, high=1)
        check(lambda x: x.logical_not(), a, device=device)
        check(lambda x: x.logical_not(), f, device=device)
        check(lambda x: x.logical_not(), np.array([0, 3, -1], np.int8), device=device)


@on_devices
@pytest.mark.parametrize("dtype", ["bool", "int8", "uint8", "int16", "int32", "int64"])
def test_bitwise(dtype, device):
    with batch():
        check(lambda a, b: a & b, (3, 4), (4,), device=device, dtype=dtype, low=-100, high=100)
        check(lambda a, b: a | b, (3, 4), (3, 1), device=device, dtype=dtype, low=-100, high=100)
        check(lambda a, b: a ^ b, (3, 4), (), device=device, dtype=dtype, low=-100, high=100)
        check(lambda a: ~a, (3, 4), device=device, dtype=dtype, low=-100, high=100)
        check(lambda a: ~a.T, (3, 4), device=device, dtype=dtype, low=-100, high=100)
        if dtype != "bool":
            check(lambda a: a & 6, (5,), device=device, dtype=dtype, low=-100, high=100)
            check(lambda a: 5 ^ a, (5,), device=device, dtype=dtype, low=-100, high=100)
        else:
            check(lambda a: a & True, (5,), device=device, dtype=dtype)


@on_devices
@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "int32", "int64"])
def test_shifts(dtype, device):
    bits = np.dtype(dtype).itemsize * 8
    a = np.array([-100, -5, -1, 0, 1, 3, 77, 100], dtype=np.int64).astype(dtype).reshape(-1, 1)
    s = np.array([0, 1, 2, 3, bits - 1], dtype=dtype)
    with batch():
        check(lambda x, y: x << y, a, s, device=device)
        check(lambda x, y: x >> y, a, s, device=device)
        check(lambda x: x << 2, a, device=device)
        check(lambda x: x >> 1, a, device=device)


MODULE_FUNCTIONS = """
abs add sub mul div floor_divide remainder fmod pow neg sign exp exp2 log log2 sqrt rsqrt sin cos tan sigmoid
tanh relu reciprocal square floor ceil round trunc maximum minimum clamp where logical_and logical_or
logical_xor logical_not bitwise_and bitwise_or bitwise_xor bitwise_not isnan isinf eq ne lt le gt ge sum mean
prod amax amin argmax argmin max min matmul dot reshape permute transpose flatten squeeze unsqueeze flip split
chunk cat stack
""".split()


def test_module_level_functions():
    """torch's module functions exist at the top level too (``boltgrad.fmod(x, y)``) and agree with the methods."""
    missing = [name for name in MODULE_FUNCTIONS if not callable(getattr(boltgrad, name, None))]
    assert not missing, f"boltgrad lacks these torch module functions: {missing}"
    x, y = Tensor([-7.0, 5.5]), Tensor([2.0, -2.0])
    assert boltgrad.fmod(x, y).tolist() == [-1.0, 1.5]
    assert boltgrad.div(x, y, rounding_mode="floor").tolist() == [-4.0, -3.0]
    assert boltgrad.logical_and(x, y > 0).tolist() == [True, False]


def test_bitwise_rejects_floats():
    x = Tensor([1.0, 2.0])
    for fn in (lambda: x & x, lambda: x | 1, lambda: ~x, lambda: x << 1):
        with pytest.raises(TypeError):
            fn()


@on_devices
def test_long_elementwise_chain(device):
    def chain(x, y):
        return ((x * 1.5 - y).relu() + (x / (y.abs() + 1)).sigmoid()).tanh() * 2 - x.sqrt().exp() ** 2

    check(chain, (3, 5), (5,), device=device, low=0.1, high=2)


# ---------------------------------------------------------------- bad input


def test_broadcast_mismatch_names_the_shapes():
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5,\)"):
        Tensor(np.zeros((3, 4), np.float32)) + Tensor(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        boltgrad.where(Tensor([True, False]), Tensor(np.zeros((2, 3), np.float32)), 1.0)


def test_matmul_mismatch_names_the_shapes():
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5, 6\)"):
        Tensor(np.zeros((3, 4), np.float32)) @ Tensor(np.zeros((5, 6), np.float32))
    with pytest.raises(ValueError, match=r"\(3,\).*\(4,\)"):
        Tensor([1.0, 2.0, 3.0]).dot(Tensor([1.0, 2.0, 3.0, 4.0]))
    with pytest.raises(ValueError, match=r"\(2, 2, 3\).*\(3, 3, 4\)"):
        Tensor(np.zeros((2, 2, 3), np.float32)) @ Tensor(np.zeros((3, 3, 4), np.float32))


def test_cat_mismatch_names_the_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        boltgrad.cat([Tensor(np.zeros((2, 3), np.float32)), Tensor(np.zeros((2, 4), np.float32))], dim=0)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3,\)"):
        boltgrad.stack([Tensor(np.zeros((2, 3), np.float32)), Tensor(np.zeros(3, np.float32))])


def test_bad_dim_is_index_error():
    x = Tensor(np.zeros((2, 3), np.float32))
    for fn in (
        lambda: x.sum(2),
        lambda: x.sum(-3),
        lambda: x.max(5),
        lambda: x.transpose(0, 2),
        lambda: x.unsqueeze(3),
        lambda: x.squeeze(2),
        lambda: x.flip(2),
        lambda: x.permute(0, 2),
        lambda: boltgrad.cat([x, x], 2),
        lambda: x.argmax(-3),
        lambda: x[2],
        lambda: x[0, -4],
        lambda: x[0, 0, 0],
        lambda: x.sum((0, 4)),
    ):
        with pytest.raises(IndexError):
            fn()


def test_unknown_device_and_dtype():
    with pytest.raises(ValueError, match="GPU9"):
        Tensor([1.0], device="GPU9")
    with pytest.raises(ValueError):
        boltgrad.zeros(2, device="TPU")
    with pytest.raises(TypeError, match="float7"):
        Tensor([1.0], dtype="float7")
    with pytest.raises(TypeError):
        Tensor([1.0]).cast("complex64")
    with pytest.raises(TypeError):
        boltgrad.zeros(3, dtype="int4")
    assert Tensor([1.0], device="cpu").device == "CPU"
    assert Tensor([1.0], device="python").device == "PYTHON"


def test_item_needs_one_element():
    with pytest.raises((ValueError, RuntimeError)):
        Tensor([1.0, 2.0]).item()
    with pytest.raises((ValueError, RuntimeError)):
        Tensor(np.zeros((0,), np.float32)).item()
    assert Tensor([[3.5]]).item() == 3.5
    with pytest.raises((ValueError, RuntimeError)):
        bool(Tensor([True, False]))


def test_ragged_and_unsupported_data():
    with pytest.raises(ValueError):
        Tensor([[1.0, 2.0], [3.0]])
    with pytest.raises(TypeError):
        Tensor(["a", "b"])
    with pytest.raises((ValueError, TypeError)):
        boltgrad.zeros(-1)
    with pytest.raises(ValueError):
        Tensor(np.zeros(6, np.float32)).reshape(4, -1)
    with pytest.raises(TypeError):
        Tensor([True]) - Tensor([False])


def test_mixing_devices_is_an_error():
    with pytest.raises(RuntimeError):
        Tensor([1.0], device="CPU") + Tensor([1.0], device="PYTHON")


def test_more_torch_names():
    with batch():
        for args in [(0, 1, 5), (-2.0, 3.0, 7), (1, 1, 1), (0, 1, 0), (5, -5, 4)]:
            check(lambda: lib_of_torch().linspace(*args), torch_fn=lambda: torch.linspace(*args))
        check(lambda x: x.new_zeros(2, 3), (4,), torch_fn=lambda x: x.new_zeros(2, 3))
        check(lambda x: [x.new_ones((2,)), x.new_full((3,), 7.0), x.new_tensor([1.0, 2.0]), x.type_as(x.long())], (4,))
        check(lambda x: x.clone().abs_().neg_().exp_().sqrt_(), (3, 4))
        check(lambda x: x.clone().sigmoid_().tanh_().square_().pow_(2), (3, 4))
        check(lambda x: x.clone().relu_().masked_fill_(x > 1, 0.5), (3, 4))
        check(lambda x: lib(x).pow(2.0, x), (3,))
        check(lambda x: [lib(x).std(x, 1), lib(x).var(x), lib(x).logsumexp(x, 0), lib(x).softmax(x, 1)], (3, 4))
    x = Tensor([1.0, 2.0])
    assert x.is_floating_point() and not x.long().is_floating_point()
    assert x.element_size() == 4 and x.half().element_size() == 2 and x.is_contiguous()
    assert x.type() == "float32" and x.type(boltgrad.int32).dtype == boltgrad.int32


def lib_of_torch():
    return boltgrad
