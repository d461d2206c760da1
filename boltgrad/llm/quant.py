"""GGUF weight types: packed blocks kept packed in memory, dequantized by tensor ops inside the kernels that use them.

A quantized matrix (rows, cols) is stored row by row in blocks of ``block`` values along the columns. Each block
is a few scale fields (float16) and packed integers. At load the fields of every block are split into one tensor
each (``QuantizedWeight.parts``): the float16 scales ``d`` of all blocks, the packed bytes ``qs`` of all blocks,
... This keeps the bytes as they are (a Q4_1 matrix takes 5 bits a weight in memory as in the file) and gives
the kernels contiguous arrays to read. ``dequantize()`` is a lazy float32 tensor built from them with shifts,
masks and multiplies, so it fuses into the matmul that consumes it: no float copy of a weight is ever stored.

Block layouts (``ggml`` names; ``d``/``m`` are float16, ``q`` the packed integers):

========  ======  =====  ===============================================================================
type      values  bytes  layout and value
========  ======  =====  ===============================================================================
Q8_0      32      34     d, q[32] int8: d * q
Q4_0      32      18     d, qs[16]: value j is the low nibble of qs[j] (j < 16), the high one of qs[j-16]: d * (q - 8)
Q4_1      32      20     d, m, qs[16] (nibbles as Q4_0): d * q + m
Q4_K      256     144    d, dmin, 12 bytes of 6-bit scales and mins for 8 groups of 32, qs[128]
Q5_K      256     176    as Q4_K plus qh[32], the fifth bit of each value
Q6_K      256     210    ql[128] low 4 bits, qh[64] high 2 bits, 16 int8 scales, d: d * scale * (q - 32)
========  ======  =====  ===============================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .. import DType, bfloat16, float16, float32, int8, uint8
from ..nn.state import disk_tensor
from ..tensor import Tensor
from ..tensor_reduce import cat

F32, F16, Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K, BF16 = 0, 1, 2, 3, 8, 12, 13, 14, 30


@dataclass(frozen=True)
class GGMLType:
    name: str
    block: int  # values per block
    nbytes: int  # bytes per block


GGML_TYPES: dict[int, GGMLType] = {
    F32: GGMLType("F32", 1, 4),
    F16: GGMLType("F16", 1, 2),
    BF16: GGMLType("BF16", 1, 2),
    Q4_0: GGMLType("Q4_0", 32, 18),
    Q4_1: GGMLType("Q4_1", 32, 20),
    Q8_0: GGMLType("Q8_0", 32, 34),
    Q4_K: GGMLType("Q4_K", 256, 144),
    Q5_K: GGMLType("Q5_K", 256, 176),
    Q6_K: GGMLType("Q6_K", 256, 210),
}
# ggml type ids this loader does not read, named so the error can say what the file holds
OTHER_GGML_TYPES = {
    6: "Q5_0", 7: "Q5_1", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS",
    18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16",
    26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
}  # fmt: skip
_PLAIN = {F32: float32, F16: float16, BF16: bfloat16}

# field name -> (dtype, first byte in the block, number of elements) for each packed type
_FIELDS: dict[int, dict[str, tuple[DType, int, int]]] = {
    Q8_0: {"d": (float16, 0, 1), "qs": (int8, 2, 32)},
    Q4_0: {"d": (float16, 0, 1), "qs": (uint8, 2, 16)},
    Q4_1: {"d": (float16, 0, 1), "m": (float16, 2, 1), "qs": (uint8, 4, 16)},
    Q4_K: {"d": (float16, 0, 1), "dmin": (float16, 2, 1), "scales": (uint8, 4, 12),
           "qs": (uint8, 16, 128)},
    Q5_K: {"d": (float16, 0, 1), "dmin": (float16, 2, 1), "scales": (uint8, 4, 12),
           "qh": (uint8, 16, 32), "qs": (uint8, 48, 128)},
    Q6_K: {"ql": (uint8, 0, 128), "qh": (uint8, 128, 64), "scales": (int8, 192, 16),
           "d": (float16, 208, 1)},
}  # fmt: skip


def type_name(type_id: int) -> str:
    known = GGML_TYPES.get(type_id)
    return known.name if known else OTHER_GGML_TYPES.get(type_id, f"type id {type_id}")


def is_supported(type_id: int) -> bool:
    return type_id in GGML_TYPES


def tensor_nbytes(type_id: int, shape: tuple[int, ...]) -> int:
    """Bytes a tensor of ``shape`` (torch order, innermost last) takes in the file."""
    t = GGML_TYPES[type_id]
    numel = 1
    for s in shape:
        numel *= s
    return numel // t.block * t.nbytes


class QuantizedWeight:
    """A (rows, cols) matrix kept as its packed block fields; ``dequantize()`` gives the float32 values lazily.

    ``parts`` maps each field to a tensor of shape (rows, blocks per row, elements per block); the float16
    scales are (rows, blocks per row).
    """

    def __init__(self, type_id: int, shape: tuple[int, int], parts: dict[str, Tensor]):
        self.type_id, self.shape, self.parts = type_id, shape, parts

    @property
    def type_name(self) -> str:
        return type_name(self.type_id)

    @property
    def nbytes(self) -> int:
        return sum(p.numel() * p.dtype.itemsize for p in self.parts.values())

    def dequantize(self) -> Tensor:
        rows, cols = self.shape
        return _DEQUANTIZE[self.type_id](self.parts).reshape(rows, cols)

    def linear(self, x: Tensor) -> Tensor:
        """``x @ W.T`` for x (..., cols) -> (..., rows), dequantizing inside the kernel.

        Every type sums over (blocks, bytes of a block) in one reduce, each weight dequantized where it is
        read, so the weights cross memory once as packed bytes.
        """
        fast = _LINEAR.get(self.type_id)
        if fast is None:
            return x @ self.dequantize().T
        if x.shape[-1] != self.shape[1]:
            raise RuntimeError(f"linear: input of shape {x.shape} does not fit a ({self.shape[0]}, {self.shape[1]}) "
                               f"{self.type_name} weight")  # fmt: skip
        blocks = self.shape[1] // GGML_TYPES[self.type_id].block
        # x is read once per row of the weight: computed into a buffer first, never recomputed per row
        return fast(x.cast(float32).contiguous().reshape(*x.shape[:-1], 1, blocks, -1), self.parts)

    def map_rows(self, fn: Callable[[Tensor], Tensor]) -> QuantizedWeight:
        """The same weight with its rows rearranged by ``fn``, a view applied to every part along dim 0."""
        return QuantizedWeight(self.type_id, self.shape, {k: fn(v) for k, v in self.parts.items()})

    def realize(self) -> QuantizedWeight:
        parts = dict(self.parts)
        if "scales" in parts and self.type_id in (Q4_K, Q5_K):
            # the 6-bit scales and mins unpacked to a byte each once, here, not in every matmul's inner loop:
            # 16 bytes a block instead of 12 (Q4_K: 148 bytes per 256 weights instead of 144)
            parts["sc"], parts["mn"] = _k_scale_bytes(parts.pop("scales"))
        parts = {k: v.contiguous() for k, v in parts.items()}
        Tensor.realize_all(list(parts.values()))
        self.parts = parts
        return self

    def __repr__(self) -> str:
        return f"QuantizedWeight({self.type_name}, shape={self.shape}, {self.nbytes} bytes)"


def load_tensor(file, offset: int, type_id: int, shape: tuple[int, ...], device: str) -> Tensor | QuantizedWeight:
    """The tensor at byte ``offset`` of a mapped file, lazily copied from the DISK device to ``device``.

    Plain types give a Tensor of their own dtype (float16 and bfloat16 stay 16-bit); packed types give a
    QuantizedWeight whose parts are views of the file, still to be copied (call ``realize()``).
    """
    if type_id in _PLAIN:
        return disk_tensor(file, offset, shape, _PLAIN[type_id], device)
    t = GGML_TYPES[type_id]
    if len(shape) != 2 or shape[1] % t.block:
        raise ValueError(f"GGUF: a {t.name} tensor must be 2-d with rows of whole {t.block}-value blocks, "
                         f"got shape {shape}")  # fmt: skip
    rows, blocks = shape[0], shape[1] // t.block
    parts, views = {}, {}
    for name, (dtype, start, count) in _FIELDS[type_id].items():
        # the whole matrix seen as elements of the field's dtype, (rows, blocks, block bytes / itemsize); fields
        # of one dtype share a view, so the bytes cross from the file once per dtype
        if dtype not in views:
            views[dtype] = disk_tensor(file, offset, (rows, blocks, t.nbytes // dtype.itemsize), dtype, device)
        view = views[dtype]
        first = start // dtype.itemsize
        part = view[:, :, first : first + count]
        parts[name] = part.reshape(rows, blocks) if count == 1 else part
    return QuantizedWeight(type_id, (shape[0], shape[1]), parts)


# ---------------------------------------------------------------- dequantization, in tensor ops


def _nibbles(qs: Tensor) -> Tensor:
    """(..., n) bytes -> (..., 2, n): the low nibbles of all n bytes, then the high ones."""
    shift = Tensor([[0], [4]], dtype=uint8, device=qs.device)  # (2, 1)
    return (qs.unsqueeze(-2) >> shift) & 15


def _f32(t: Tensor) -> Tensor:
    return t.cast(float32)


def _dequant_q8_0(p: dict[str, Tensor]) -> Tensor:
    return _q8_0_values(p["qs"], p)


def _dequant_q4_0(p: dict[str, Tensor]) -> Tensor:
    return _q4_0_values(_nibbles(p["qs"]).flatten(-2), p)


def _dequant_q4_1(p: dict[str, Tensor]) -> Tensor:
    return _q4_1_values(_nibbles(p["qs"]).flatten(-2), p)


# the value of quants q (rows, blocks, n) of a block: one formula for dequantize() and the linear kernels


def _q8_0_values(q: Tensor, p: dict[str, Tensor]) -> Tensor:
    return _f32(q) * _f32(p["d"]).unsqueeze(-1)


def _q4_0_values(q: Tensor, p: dict[str, Tensor]) -> Tensor:
    return (_f32(q) - 8.0) * _f32(p["d"]).unsqueeze(-1)


def _q4_1_values(q: Tensor, p: dict[str, Tensor]) -> Tensor:
    return _f32(q) * _f32(p["d"]).unsqueeze(-1) + _f32(p["m"]).unsqueeze(-1)


def _k_scale_bytes(scales: Tensor) -> tuple[Tensor, Tensor]:
    """The 8 six-bit scales and mins of a Q4_K/Q5_K block from its 12 bytes, (..., 12) -> two (..., 8) uint8.

    Groups 0-3 keep scale and min in the low 6 bits of bytes 0-3 and 4-7; groups 4-7 take their low 4 bits
    from bytes 8-11 and their top 2 bits from the spare top bits of bytes 0-3 (scales) and 4-7 (mins).
    """
    s0, s1, s2 = scales[..., 0:4], scales[..., 4:8], scales[..., 8:12]
    scale = cat([s0 & 63, (s2 & 15) | ((s0 >> 6) << 4)], dim=-1)
    minimum = cat([s1 & 63, (s2 >> 4) | ((s1 >> 6) << 4)], dim=-1)
    return scale, minimum


def _k_scales(p: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """A Q4_K/Q5_K weight's scales and mins (..., 8) as float32: unpacked at ``realize()``, or from the bytes."""
    scale, minimum = (p["sc"], p["mn"]) if "sc" in p else _k_scale_bytes(p["scales"])
    return _f32(scale), _f32(minimum)


def _dequant_k(p: dict[str, Tensor], q: Tensor) -> Tensor:
    """Q4_K/Q5_K: ``q`` (..., 8 groups, 32) -> d * scale * q - dmin * min per group."""
    scale, minimum = _k_scales(p)
    d, dmin = _f32(p["d"]).unsqueeze(-1), _f32(p["dmin"]).unsqueeze(-1)
    return (_f32(q) * (d * scale).unsqueeze(-1) - (dmin * minimum).unsqueeze(-1)).flatten(-2)


def _q4_k_values(qs: Tensor) -> Tensor:
    """(..., 128) bytes -> (..., 8, 32) 4-bit values: byte chunk c (32 bytes) holds group 2c low, 2c+1 high."""
    return _nibbles(qs.unflatten(-1, (4, 32))).flatten(-3, -2)


def _dequant_q4_k(p: dict[str, Tensor]) -> Tensor:
    return _dequant_k(p, _q4_k_values(p["qs"]))


def _dequant_q5_k(p: dict[str, Tensor]) -> Tensor:
    # group g's fifth bits are bit g of the 32 qh bytes
    shift = Tensor.arange(8, dtype=uint8, device=p["qh"].device).reshape(8, 1)
    high = (p["qh"].unsqueeze(-2) >> shift) & 1  # (..., 8, 32)
    return _dequant_k(p, _q4_k_values(p["qs"]) | (high << 4))


def _dequant_q6_k(p: dict[str, Tensor]) -> Tensor:
    # Two halves of 128 values; in half h, quarter k (32 values) takes its low 4 bits from ql bytes
    # [64h + 32(k%2), +32) (low nibble for k < 2, high for k >= 2) and its top 2 bits from bits 2k..2k+1 of
    # qh bytes [32h, 32h+32). Each 16 values share an int8 scale.
    dev = p["ql"].device
    ql = p["ql"].unflatten(-1, (2, 1, 2, 32))  # (..., half, 1, k % 2, 32)
    nib = Tensor([0, 4], dtype=uint8, device=dev).reshape(2, 1, 1)  # by k // 2
    low = ((ql >> nib) & 15).flatten(-3, -2)  # (..., half, 4, 32)
    qh = p["qh"].unflatten(-1, (2, 1, 32))  # (..., half, 1, 32)
    shift = Tensor([0, 2, 4, 6], dtype=uint8, device=dev).reshape(4, 1)
    high = (qh >> shift) & 3  # (..., half, 4, 32)
    q = _f32(low | (high << 4)) - 32.0
    scale = _f32(p["scales"]).unflatten(-1, (2, 4, 2, 1)) * _f32(p["d"]).reshape(p["d"].shape + (1, 1, 1, 1))
    return (q.unflatten(-1, (2, 16)) * scale).flatten(-4)


_DEQUANTIZE: dict[int, Callable[[dict[str, Tensor]], Tensor]] = {
    Q8_0: _dequant_q8_0,
    Q4_0: _dequant_q4_0,
    Q4_1: _dequant_q4_1,
    Q4_K: _dequant_q4_k,
    Q5_K: _dequant_q5_k,
    Q6_K: _dequant_q6_k,
}


# ---------------------------------------------------------------- x @ W.T, dequantizing in the kernel
# Each function takes x as blocks (..., 1, blocks, values per block) against parts of shape (rows, blocks, ...)
# and sums over the blocks and their values in one reduce: its innermost loop walks a block's bytes, which the
# lowering splits into vector lanes whose sums carry across blocks (no horizontal sum per block).


def _linear_q8_0(xb: Tensor, p: dict[str, Tensor]) -> Tensor:
    return (xb * _q8_0_values(p["qs"], p)).sum((-2, -1))


def _linear_nibbles(xb: Tensor, p: dict[str, Tensor], values: Callable[..., Tensor]) -> Tensor:
    """Q4_0/Q4_1: values 0-15 of a block are the low nibbles of its 16 bytes, values 16-31 the high ones; one
    loop over the bytes reads each byte once for both."""
    qs = p["qs"]
    return (xb[..., :16] * values(qs & 15, p) + xb[..., 16:] * values(qs >> 4, p)).sum((-2, -1))


def _linear_q4_0(xb: Tensor, p: dict[str, Tensor]) -> Tensor:
    return _linear_nibbles(xb, p, _q4_0_values)


def _linear_q4_1(xb: Tensor, p: dict[str, Tensor]) -> Tensor:
    return _linear_nibbles(xb, p, _q4_1_values)


def _linear_k(xb: Tensor, p: dict[str, Tensor], high: Tensor | None = None) -> Tensor:
    """Q4_K/Q5_K: a block's 128 bytes are 4 chunks of 32; chunk c holds group 2c in its low nibbles and group
    2c+1 in its high ones (plus, for Q5_K, the fifth bits ``high`` (..., 4, 2, 32)). One reduce over (blocks,
    chunks, bytes) reads each byte once for both groups."""
    scale, minimum = _k_scales(p)  # (rows, blocks, 8), group 2c + h at (c, h)
    d, dmin = _f32(p["d"]).unsqueeze(-1), _f32(p["dmin"]).unsqueeze(-1)
    mul = (d * scale).unflatten(-1, (4, 2)).unsqueeze(-1)  # (rows, blocks, 4, 2, 1)
    sub = (dmin * minimum).unflatten(-1, (4, 2)).unsqueeze(-1)
    qs = p["qs"].unflatten(-1, (4, 32))  # (rows, blocks, 4, 32)
    lo, hi = qs & 15, qs >> 4
    if high is not None:
        lo, hi = lo | (high[..., 0, :] << 4), hi | (high[..., 1, :] << 4)
    x = xb.unflatten(-1, (4, 2, 32))  # (..., 1, blocks, 4, 2, 32)
    low_part = x[..., 0, :] * (_f32(lo) * mul[..., 0, :] - sub[..., 0, :])
    high_part = x[..., 1, :] * (_f32(hi) * mul[..., 1, :] - sub[..., 1, :])
    return (low_part + high_part).sum((-3, -2, -1))


def _linear_q4_k(xb: Tensor, p: dict[str, Tensor]) -> Tensor:
    return _linear_k(xb, p)


def _linear_q5_k(xb: Tensor, p: dict[str, Tensor]) -> Tensor:
    # group g's fifth bits are bit g of the 32 qh bytes: (rows, blocks, 4, 2, 32) by chunk and half
    shift = Tensor.arange(8, dtype=uint8, device=p["qh"].device).reshape(4, 2, 1)
    return _linear_k(xb, p, (p["qh"].unsqueeze(-2).unsqueeze(-2) >> shift) & 1)


def _linear_q6_k(xb: Tensor, p: dict[str, Tensor]) -> Tensor:
    """Q6_K: in half h of a block, byte j (of 32) of qh and bytes j and 32 + j of the half's 64 ql bytes hold
    the values 32k + j of quarters k = 0..3 (ql low nibbles for k < 2, high ones for k >= 2; qh bits 2k, 2k+1).
    One reduce over (blocks, halves, bytes) reads each byte once for its four values; the int8 scale of 16
    values is the one of (h, k, j // 16)."""
    ql = p["ql"].unflatten(-1, (2, 2, 2, 16))  # (rows, blocks, h, k % 2, j // 16, j % 16)
    qh = p["qh"].unflatten(-1, (2, 2, 16))  # (rows, blocks, h, j // 16, j % 16)
    a, b = ql[..., 0, :, :], ql[..., 1, :, :]
    quarters = (
        a & 15 | (qh & 3) << 4,
        b & 15 | (qh >> 2 & 3) << 4,
        a >> 4 | (qh >> 4 & 3) << 4,
        b >> 4 | (qh >> 6) << 4,
    )
    d = _f32(p["d"]).reshape(p["d"].shape + (1, 1, 1))
    scale = (_f32(p["scales"]).unflatten(-1, (2, 4, 2)) * d).unsqueeze(-1)  # (rows, blocks, h, k, j // 16, 1)
    x = xb.unflatten(-1, (2, 4, 2, 16))  # (..., 1, blocks, h, k, j // 16, j % 16)
    terms = [x[..., k, :, :] * ((_f32(q) - 32.0) * scale[..., k, :, :]) for k, q in enumerate(quarters)]
    return (terms[0] + terms[1] + terms[2] + terms[3]).sum((-4, -3, -2, -1))


_LINEAR: dict[int, Callable[[Tensor, dict[str, Tensor]], Tensor]] = {
    Q8_0: _linear_q8_0,
    Q4_0: _linear_q4_0,
    Q4_1: _linear_q4_1,
    Q4_K: _linear_q4_k,
    Q5_K: _linear_q5_k,
    Q6_K: _linear_q6_k,
}
