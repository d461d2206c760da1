"""Python values and numpy arrays as tensor memory: nested lists checked and flattened, scalars packed into a
buffer's bytes and read back, numpy arrays copied into a new buffer."""

from __future__ import annotations

import array
import struct
from typing import Any

from .device.buffer import Buffer
from .helpers import prod
from .ir import dtypes
from .ir.dtypes import DType, bf16_bits_to_float, bfloat16, float_to_bf16_bits
from .ir.node import Node
from .ir.ops import Op
from .schedule.realized import buffer_view


def infer_list(data: Any) -> tuple[tuple[int, ...], list[Any]]:
    """Shape and flat values of a nested list, checking that it is rectangular."""
    if isinstance(data, list | tuple):
        if len(data) == 0:
            return (0,), []
        parts = [infer_list(x) for x in data]
        shape0 = parts[0][0]
        for p in parts:
            if p[0] != shape0:
                raise ValueError(f"Tensor: ragged nested sequence: found shapes {shape0} and {p[0]} at one level")
        return (len(data),) + shape0, [v for p in parts for v in p[1]]
    if hasattr(data, "item") and hasattr(data, "dtype") and getattr(data, "shape", None) == ():
        data = data.item()  # numpy/torch scalars inside lists
    if not isinstance(data, bool | int | float):
        raise TypeError(f"Tensor: cannot build a tensor from an element of type {type(data).__name__}")
    return (), [data]


def list_dtype(values: list[Any]) -> DType:
    if any(isinstance(v, float) for v in values):
        return dtypes.default_float
    if values and all(isinstance(v, bool) for v in values):
        return dtypes.bool_
    if not values:
        return dtypes.default_float
    return dtypes.default_int


def pack_values(values: list[Any], dtype: DType) -> bytes:
    """Python scalars -> the bytes of a buffer of ``dtype`` (ints wrap, as a cast would)."""
    if dtype == bfloat16:
        return array.array("H", [float_to_bf16_bits(float(v)) for v in values]).tobytes()
    if dtype == dtypes.bool_:
        return bytes(1 if v else 0 for v in values)
    conv = [dtypes.cast_scalar(v, dtype) for v in values]
    if dtype == dtypes.float16:
        return struct.pack(f"<{len(conv)}e", *conv)
    return array.array(dtype.fmt, conv).tobytes()


def unpack_values(raw: bytes | bytearray, dtype: DType) -> list[Any]:
    if dtype == bfloat16:
        return [bf16_bits_to_float(b) for b in memoryview(raw).cast("H")]
    if dtype == dtypes.bool_:
        return [bool(b) for b in raw]
    if dtype == dtypes.float16:  # memoryview cannot cast to "e"
        return list(struct.unpack(f"<{len(raw) // 2}e", raw))
    return memoryview(raw).cast(dtype.fmt).tolist()


def nest(flat: list[Any], shape: tuple[int, ...]) -> Any:
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return flat
    step = prod(shape[1:])
    return [nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def from_numpy(arr: Any, device: str, want: DType | None) -> Node:
    import numpy as np

    shape = np.shape(arr)
    arr = np.ascontiguousarray(arr).reshape(shape)  # ascontiguousarray turns 0-d into 1-d
    if not arr.dtype.isnative:  # big-endian data (from a file written elsewhere): the bytes are copied as they are
        arr = arr.astype(arr.dtype.newbyteorder("="))
    name = "bool" if arr.dtype == np.bool_ else arr.dtype.name
    if name not in dtypes.BY_NAME:
        raise TypeError(f"Tensor: numpy dtype {arr.dtype} is not supported; use one of {list(dtypes.BY_NAME)}")
    dt = dtypes.BY_NAME[name]
    buf = Buffer(device, arr.size, dt)
    if arr.size:
        buf.copyin(memoryview(arr))  # (arr.tobytes() would copy it once more first)
    node = buffer_view(Node(Op.BUFFER, dt, (), buf), tuple(arr.shape))
    return node if want is None or want == dt else Node(Op.CAST, want, (node,))
