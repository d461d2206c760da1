"""Data types and PyTorch's type promotion.

Promotion follows ``torch.result_type``: categories order bool < integer < floating; within a category the
wider type wins; uint8 with a signed type goes to the smallest signed type that holds both; float16 with
bfloat16 gives float32. Python scalars are *weak*: they only lift the category (an int tensor times 2.5 is
float32, a float16 tensor times 2.5 stays float16).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass


@dataclass(frozen=True, eq=True)
class DType:
    name: str
    itemsize: int
    kind: str  # "b" bool, "i" signed int, "u" unsigned int, "f" float
    fmt: str  # struct/array format character ("e" for float16; bfloat16 is stored as "H" bits)
    rank: int  # order inside its category, for promotion

    def __repr__(self) -> str:
        return f"boltgrad.{self.name}"

    @property
    def is_float(self) -> bool:
        return self.kind == "f"

    @property
    def is_int(self) -> bool:
        return self.kind in "iu"

    @property
    def is_unsigned(self) -> bool:
        return self.kind == "u"

    @property
    def bits(self) -> int:
        return 8 * self.itemsize


bool_ = DType("bool", 1, "b", "?", 0)
int8 = DType("int8", 1, "i", "b", 1)
uint8 = DType("uint8", 1, "u", "B", 1)
int16 = DType("int16", 2, "i", "h", 2)
int32 = DType("int32", 4, "i", "i", 3)
uint32 = DType("uint32", 4, "u", "I", 3)
int64 = DType("int64", 8, "i", "q", 4)
float16 = DType("float16", 2, "f", "e", 1)
bfloat16 = DType("bfloat16", 2, "f", "H", 1)
float32 = DType("float32", 4, "f", "f", 2)
float64 = DType("float64", 8, "f", "d", 3)

ALL: tuple[DType, ...] = (bool_, int8, uint8, int16, int32, uint32, int64, float16, bfloat16, float32, float64)
BY_NAME: dict[str, DType] = {d.name: d for d in ALL}
BY_NAME.update({"bool_": bool_, "half": float16, "float": float32, "double": float64, "long": int64, "int": int32})
BY_NAME.update({"short": int16, "bf16": bfloat16, "fp16": float16})

default_float = float32
default_int = int64


def to_dtype(x: DType | str | type | object) -> DType:
    """A DType from a DType, a name ("float32"), a Python type or a numpy/torch dtype."""
    if isinstance(x, DType):
        return x
    if x is bool:
        return bool_
    if x is int:
        return default_int
    if x is float:
        return default_float
    name = x if isinstance(x, str) else getattr(x, "name", None) or str(x)
    name = name.removeprefix("torch.").removeprefix("boltgrad.")
    if name in BY_NAME:
        return BY_NAME[name]
    raise TypeError(f"unknown dtype {x!r}; use one of {', '.join(d.name for d in ALL)}")


_CATEGORY = {"b": 0, "i": 1, "u": 1, "f": 2}


def promote_types(a: DType, b: DType) -> DType:
    """The dtype of a binary op between two tensors of dtypes a and b (torch.promote_types)."""
    if a == b:
        return a
    ca, cb = _CATEGORY[a.kind], _CATEGORY[b.kind]
    if ca != cb:
        return a if ca > cb else b
    if a.is_float:
        if {a, b} == {float16, bfloat16}:
            return float32
        return a if a.rank > b.rank else b
    # both integers
    if a.is_unsigned == b.is_unsigned:
        return a if a.itemsize > b.itemsize else b
    unsigned, signed = (a, b) if a.is_unsigned else (b, a)
    if signed.itemsize > unsigned.itemsize:
        return signed
    return {1: int16, 2: int32, 4: int64}.get(unsigned.itemsize, int64)


def scalar_category(value: object) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return 1
    return 2


def result_type_with_scalar(dtype: DType, value: object) -> DType:
    """The dtype of a tensor of ``dtype`` combined with a Python scalar (a weak type)."""
    cat = scalar_category(value)
    if cat <= _CATEGORY[dtype.kind]:
        return dtype
    return default_int if cat == 1 else default_float


def min_value(dtype: DType) -> int | float:
    if dtype.is_float:
        return float("-inf")
    if dtype == bool_:
        return False
    if dtype.is_unsigned:
        return 0
    return -(2 ** (dtype.bits - 1))


def max_value(dtype: DType) -> int | float:
    if dtype.is_float:
        return float("inf")
    if dtype == bool_:
        return True
    if dtype.is_unsigned:
        return 2**dtype.bits - 1
    return 2 ** (dtype.bits - 1) - 1


def python_type(dtype: DType) -> type:
    return float if dtype.is_float else bool if dtype == bool_ else int


_FLOAT32 = struct.Struct("f")
_INT64_RANGE = range(-(2**63), 2**63)


def cast_scalar(value: object, dtype: DType) -> bool | int | float:
    """Convert a Python scalar as a store to ``dtype`` would: ints wrap, floats truncate toward zero."""
    # the usual cases first, by identity (DType's == is a Python function): every scalar operand of a tensor op
    # becomes a constant through here
    if dtype is float32 and type(value) is float and math.isfinite(value):
        try:
            return _FLOAT32.unpack(_FLOAT32.pack(value))[0]  # rounded to the nearest float32
        except OverflowError:
            pass
    elif dtype is int64 and type(value) is int and value in _INT64_RANGE:
        return value
    if dtype == bool_:
        return bool(value)
    if dtype.is_float:
        return round_float(float(value), dtype)  # type: ignore[arg-type]
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return 0
        value = int(value)
    v = int(value)  # type: ignore[call-overload]
    return wrap_int(v, dtype)


def wrap_int(v: int, dtype: DType) -> int:
    mask = (1 << dtype.bits) - 1
    v &= mask
    if not dtype.is_unsigned and v >= 1 << (dtype.bits - 1):
        v -= 1 << dtype.bits
    return v


def round_float(v: float, dtype: DType) -> float:
    """Round a Python float to the nearest value of a float dtype (overflow gives inf, as in C)."""
    if dtype == float64 or v != v or math.isinf(v):
        return v
    if dtype == bfloat16:
        return bf16_bits_to_float(float_to_bf16_bits(v))
    try:
        return struct.unpack(dtype.fmt, struct.pack(dtype.fmt, v))[0]
    except OverflowError:
        return math.copysign(math.inf, v)


def float_to_bf16_bits(v: float) -> int:
    """float -> bfloat16 bits: round the float32 bits to nearest even, keep NaN a NaN."""
    try:
        bits = struct.unpack("<I", struct.pack("<f", v))[0]
    except OverflowError:
        return 0x7F80 if v > 0 else 0xFF80
    if v != v:
        return 0x7FC0
    bits += 0x7FFF + ((bits >> 16) & 1)
    return (bits >> 16) & 0xFFFF


def bf16_bits_to_float(bits: int) -> float:
    return struct.unpack("<f", struct.pack("<I", (bits & 0xFFFF) << 16))[0]
