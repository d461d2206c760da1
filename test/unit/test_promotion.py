"""Type promotion against torch: every pair of dtypes, tensors with Python scalars, and the result dtypes of ops.

Nothing here runs a kernel: a result's dtype is known as soon as the graph is built.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import boltgrad
from boltgrad import Tensor

NAMES = ["bool", "int8", "uint8", "int16", "int32", "uint32", "int64", "float16", "bfloat16", "float32", "float64"]
SCALARS = [True, 2, -3, 2.5, 0.0]


def ours(name: str) -> boltgrad.DType:
    return getattr(boltgrad, "bool_" if name == "bool" else name)


def theirs(name: str) -> torch.dtype:
    return getattr(torch, name)


def tensor_pair(name: str) -> tuple[Tensor, torch.Tensor]:
    return Tensor([1, 0], dtype=ours(name)), torch.tensor([1, 0], dtype=theirs(name))


def torch_name(d: torch.dtype) -> str:
    return str(d).removeprefix("torch.")


def promoted(a: str, b: str) -> str:
    """torch.promote_types; numpy's rule where torch refuses (uint32 with a signed or bool type)."""
    try:
        return torch_name(torch.promote_types(theirs(a), theirs(b)))
    except RuntimeError:
        return np.promote_types(a, b).name


@pytest.mark.parametrize("a", NAMES)
def test_promote_types_every_pair(a):
    for b in NAMES:
        want = promoted(a, b)
        assert boltgrad.promote_types(ours(a), ours(b)).name == want, (a, b)


@pytest.mark.parametrize("a", NAMES)
def test_binary_op_result_dtypes(a):
    ta, _ = tensor_pair(a)
    for b in NAMES:
        tb, _ = tensor_pair(b)
        want = promoted(a, b)
        if a != "bool" or b != "bool":
            assert (ta + tb).dtype.name == want, (a, "+", b)
            assert (ta * tb).dtype.name == want, (a, "*", b)
            assert boltgrad.where(Tensor([True, False]), ta, tb).dtype.name == want, ("where", a, b)
            assert boltgrad.cat([ta, tb]).dtype.name == want, ("cat", a, b)
        assert (ta < tb).dtype == boltgrad.bool_ and (ta == tb).dtype == boltgrad.bool_
        # true division always gives a float: float32 unless a float operand is wider
        div_want = want if want.startswith(("float", "bfloat")) else "float32"
        assert (ta / tb).dtype.name == div_want, (a, "/", b)


@pytest.mark.parametrize("name", NAMES)
def test_tensor_scalar_result_dtypes(name):
    """Python scalars are weak: they lift the category (bool < int < float) and nothing more."""
    t, w = tensor_pair(name)
    for s in SCALARS:
        want = torch_name(torch.result_type(w, s))
        for op in ("add", "mul"):
            assert getattr(t, op)(s).dtype.name == want, (name, op, s)
        assert (t + s).dtype.name == want and (s + t).dtype.name == want, (name, s)
        assert (t * s).dtype.name == want and (s * t).dtype.name == want, (name, s)
        if name != "bool" or isinstance(s, float) or not isinstance(s, bool):
            assert (t - s).dtype.name == want and (s - t).dtype.name == want, (name, "-", s)
        assert (t < s).dtype == boltgrad.bool_ and (s > t).dtype == boltgrad.bool_
        assert boltgrad.where(Tensor([True, False]), t, s).dtype.name == want, ("where", name, s)


def test_weak_scalar_examples():
    assert (Tensor([1, 2], dtype=boltgrad.int32) * 2.5).dtype == boltgrad.float32
    assert (Tensor([1, 2], dtype=boltgrad.int8) * 1000).dtype == boltgrad.int8
    assert (Tensor([1.0], dtype=boltgrad.float16) + 1.0).dtype == boltgrad.float16
    assert (Tensor([1.0], dtype=boltgrad.bfloat16) * 3).dtype == boltgrad.bfloat16
    assert (Tensor([True]) + 1).dtype == boltgrad.int64
    assert (Tensor([True]) + 1.5).dtype == boltgrad.float32
    assert (Tensor([1], dtype=boltgrad.uint8) + Tensor([1], dtype=boltgrad.int8)).dtype == boltgrad.int16
    assert (Tensor([1], dtype=boltgrad.uint32) + Tensor([1], dtype=boltgrad.int32)).dtype == boltgrad.int64
    assert (Tensor([1.0], dtype=boltgrad.float16) + Tensor([1.0], dtype=boltgrad.bfloat16)).dtype == boltgrad.float32


UNARY_FLOAT = ["exp", "exp2", "log", "log2", "sqrt", "rsqrt", "sin", "cos", "tan", "sigmoid", "tanh", "reciprocal"]


@pytest.mark.parametrize("name", [n for n in NAMES if n != "bool"])
def test_unary_result_dtypes(name):
    t, w = tensor_pair(name)
    for op in UNARY_FLOAT:
        if name == "uint32":
            want = "float32"  # torch has no uint32 kernels to ask; an integer input computes in float32
        else:
            want = torch_name(getattr(w, op)().dtype)
        assert getattr(t, op)().dtype.name == want, (name, op)
    for op in ("abs", "floor", "ceil", "round", "trunc", "relu", "square", "sign"):
        if name == "uint32" or (op == "relu" and name in ("uint32",)):
            continue
        assert getattr(t, op)().dtype.name == torch_name(getattr(w, op)().dtype), (name, op)


@pytest.mark.parametrize("name", NAMES)
def test_reduction_result_dtypes(name):
    t, w = tensor_pair(name)
    if name != "uint32":
        assert t.sum().dtype.name == torch_name(w.sum().dtype), name
        assert t.prod().dtype.name == torch_name(w.prod().dtype), name
        if name != "bool":
            assert t.amax().dtype.name == torch_name(w.amax().dtype), name
            assert t.max(0).values.dtype.name == torch_name(w.max(0).values.dtype), name
    assert t.argmax().dtype == boltgrad.int64
    assert t.sum(dtype=boltgrad.float64).dtype == boltgrad.float64
    if name in ("float16", "bfloat16", "float32", "float64"):
        assert t.mean().dtype.name == name


def test_integer_division_and_pow_dtypes():
    i = Tensor([1, 2])
    assert (i / 2).dtype == boltgrad.float32
    assert (i / Tensor([2], dtype=boltgrad.int8)).dtype == boltgrad.float32
    assert (i // 2).dtype == boltgrad.int64 and (i % 2).dtype == boltgrad.int64
    assert (i**2).dtype == boltgrad.int64 and (i**0.5).dtype == boltgrad.float32
    assert (2**i).dtype == boltgrad.int64 and (2.0**i).dtype == boltgrad.float32
    assert (Tensor([1.0], dtype=boltgrad.float64) / 2).dtype == boltgrad.float64
    assert (Tensor([True]) / Tensor([True])).dtype == boltgrad.float32


def test_python_data_dtypes():
    assert Tensor([1, 2]).dtype == boltgrad.int64
    assert Tensor([1.0, 2]).dtype == boltgrad.float32
    assert Tensor([True, False]).dtype == boltgrad.bool_
    assert Tensor(3).dtype == boltgrad.int64 and Tensor(3.0).dtype == boltgrad.float32
    assert Tensor(np.zeros(2, np.float64)).dtype == boltgrad.float64
    assert Tensor(np.zeros(2, np.int32)).dtype == boltgrad.int32
    assert boltgrad.full((2,), 3).dtype == boltgrad.int64
    assert boltgrad.arange(3).dtype == boltgrad.int64 and boltgrad.arange(0.5, 3).dtype == boltgrad.float32


def test_dtype_names_and_aliases():
    for name in NAMES:
        assert ours(name).name == name
    assert boltgrad.half == boltgrad.float16 and boltgrad.double == boltgrad.float64
    assert boltgrad.long == boltgrad.int64 and boltgrad.float == boltgrad.float32
    for a, b in itertools.product(["float32", "float", "torch.float32", boltgrad.float32], repeat=2):
        assert Tensor([1.0], dtype=a).dtype == Tensor([1.0], dtype=b).dtype
    assert Tensor([1.0], dtype=torch.float16).dtype == boltgrad.float16  # torch dtypes are understood too
    assert Tensor([1], dtype=np.dtype("int8")).dtype == boltgrad.int8
