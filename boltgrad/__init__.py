"""boltgrad: PyTorch-style tensors, compiled lazily into fused kernels.

>>> import boltgrad
>>> from boltgrad import Tensor
>>> y = (Tensor([1.0, -2.0, 3.0]) * 2).relu().sum()
>>> y.item()
8.0
"""

from . import stats
from .device.registry import Device_ as Device
from .errors import CompileError, DeviceLost, DeviceUnavailable
from .ir.dtypes import (
    DType,
    bfloat16,
    bool_,
    float16,
    float32,
    float64,
    int8,
    int16,
    int32,
    int64,
    promote_types,
    uint8,
    uint32,
)
from .tensor import Tensor, synchronize
from .tensor_create import manual_seed
from .tensor_reduce import cat, stack

half = float16
float = float32  # noqa: A001 - torch's alias
double = float64
long = int64
int = int32  # noqa: A001
bool = bool_  # noqa: A001
short = int16

tensor = Tensor
zeros = Tensor.zeros
ones = Tensor.ones
full = Tensor.full
empty = Tensor.empty
arange = Tensor.arange
eye = Tensor.eye
rand = Tensor.rand
randn = Tensor.randn
randint = Tensor.randint


def zeros_like(t: Tensor, dtype=None, device=None) -> Tensor:
    return t.zeros_like(dtype=dtype, device=device)


def ones_like(t: Tensor, dtype=None, device=None) -> Tensor:
    return t.ones_like(dtype=dtype, device=device)


def full_like(t: Tensor, fill_value, dtype=None, device=None) -> Tensor:
    return t.full_like(fill_value, dtype=dtype, device=device)


def rand_like(t: Tensor, dtype=None, device=None) -> Tensor:
    return t.rand_like(dtype=dtype, device=device)


def randn_like(t: Tensor, dtype=None, device=None) -> Tensor:
    return t.randn_like(dtype=dtype, device=device)


def where(condition: Tensor, x, y) -> Tensor:
    if not isinstance(condition, Tensor):
        raise TypeError(f"where: the condition must be a Tensor, got {type(condition).__name__}")
    return condition._select(x, y)


def matmul(a: Tensor, b: Tensor) -> Tensor:
    return a.matmul(b)


def maximum(a: Tensor, b) -> Tensor:
    return a.maximum(b)


def minimum(a: Tensor, b) -> Tensor:
    return a.minimum(b)


__all__ = [
    "Tensor", "Device", "DType", "stats", "manual_seed", "synchronize", "cat", "stack", "where", "matmul",
    "CompileError", "DeviceLost", "DeviceUnavailable", "promote_types",
    "bool_", "int8", "uint8", "int16", "int32", "uint32", "int64", "float16", "bfloat16", "float32", "float64",
]  # fmt: skip
