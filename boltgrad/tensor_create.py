"""Creating tensors: constants, ranges, identity matrices and random numbers.

Constant tensors are a CONST node broadcast to the shape: nothing is allocated until a kernel writes them.
Random numbers come from a counter-based generator computed inside kernels: element ``i`` of a draw is a hash
of (seed, counter + i). The seed and the counter are kernel *variables*, bound per launch, so every draw
reuses one compiled kernel, the same on every device, and a replayed step draws fresh numbers by binding
new counter values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .device.registry import Device_
from .helpers import prod
from .ir import dtypes
from .ir.dtypes import DType, to_dtype
from .ir.node import Node, var
from .ir.ops import Op

if TYPE_CHECKING:
    from .tensor import Tensor

RNG_SEED_VAR = "rng_seed"
RNG_COUNTER_VAR = "rng_counter"
_MAX_COUNTER = 2**62


class _RngState:
    seed = 0
    counter = 0


def manual_seed(seed: int) -> None:
    """Seed the generator: the same seed gives the same draws, on every device."""
    _RngState.seed = int(seed) & 0xFFFFFFFF
    _RngState.counter = 0


def const_node(value: Any, dtype: DType, device: str) -> Node:
    """A scalar constant living on ``device`` (shape ())."""
    return Node(Op.CONST, dtype, (Node(Op.DEVICE, dtype, (), device),), dtypes.cast_scalar(value, dtype))


def arange_node(n: int, dtype: DType, device: str) -> Node:
    return Node(Op.ARANGE, dtype, (Node(Op.DEVICE, dtype, (), device),), n)


def _shape_of(args: tuple[Any, ...]) -> tuple[int, ...]:
    if len(args) == 1 and isinstance(args[0], Sequence):
        args = tuple(args[0])
    shape = tuple(args)
    for s in shape:
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            raise ValueError(f"sizes must be non-negative ints, got {shape}")
    return shape


def _mix32(x: Tensor) -> Tensor:
    """A 32-bit finaliser (xor-shift-multiply): every input bit affects every output bit."""
    x = x ^ (x >> 16)
    x = x * 0x7FEB352D
    x = x ^ (x >> 15)
    x = x * 0x846CA68B
    return x ^ (x >> 16)


class CreationMixin:
    __slots__ = ()
    node: Node

    @classmethod
    def _const(cls, value: Any, shape: tuple[int, ...], dtype: DType, device: str | None) -> Tensor:
        out = cls._from_node(const_node(value, dtype, Device_.canonicalize(device)))  # type: ignore[attr-defined]
        return out.reshape((1,) * len(shape)).expand(shape) if shape else out

    @classmethod
    def full(cls, shape: Sequence[int] | int, fill_value: Any, dtype: Any = None, device: str | None = None,
             requires_grad: bool = False) -> Tensor:  # fmt: skip
        shp = _shape_of((shape,) if isinstance(shape, int) else tuple(shape))
        dt = to_dtype(dtype) if dtype is not None else to_dtype(type(fill_value))
        out = cls._const(fill_value, shp, dt, device)
        if requires_grad:
            out.requires_grad = True
        return out

    @classmethod
    def zeros(cls, *shape: Any, dtype: Any = None, device: str | None = None, requires_grad: bool = False) -> Tensor:
        return cls.full(_shape_of(shape), 0.0, dtype or dtypes.default_float, device, requires_grad)

    @classmethod
    def ones(cls, *shape: Any, dtype: Any = None, device: str | None = None, requires_grad: bool = False) -> Tensor:
        return cls.full(_shape_of(shape), 1.0, dtype or dtypes.default_float, device, requires_grad)

    @classmethod
    def empty(cls, *shape: Any, dtype: Any = None, device: str | None = None) -> Tensor:
        return cls.zeros(*shape, dtype=dtype, device=device)

    def zeros_like(self, dtype: Any = None, device: str | None = None) -> Tensor:
        return self.full_like(0, dtype=dtype, device=device)

    def ones_like(self, dtype: Any = None, device: str | None = None) -> Tensor:
        return self.full_like(1, dtype=dtype, device=device)

    def full_like(self, fill_value: Any, dtype: Any = None, device: str | None = None) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        return type(me).full(me.shape, fill_value, dtype or me.dtype, device or me.device)

    def rand_like(self, dtype: Any = None, device: str | None = None) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        return type(me).rand(me.shape, dtype=dtype or me.dtype, device=device or me.device)

    def randn_like(self, dtype: Any = None, device: str | None = None) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        return type(me).randn(me.shape, dtype=dtype or me.dtype, device=device or me.device)

    @classmethod
    def arange(cls, start: Any, end: Any = None, step: Any = 1, dtype: Any = None,
               device: str | None = None) -> Tensor:  # fmt: skip
        if end is None:
            start, end = 0, start
        if step == 0:
            raise ValueError("arange: step must be nonzero")
        count = max(0, -(-(end - start) // step)) if all(isinstance(v, int) for v in (start, end, step)) else None
        if count is None:
            import math

            count = max(0, math.ceil((end - start) / step))
        is_float = any(isinstance(v, float) for v in (start, end, step))
        dt = to_dtype(dtype) if dtype is not None else dtypes.default_float if is_float else dtypes.default_int
        ramp = cls._from_node(arange_node(count, dtypes.int64, Device_.canonicalize(device)))  # type: ignore
        out = ramp * step + start if (step != 1 or start != 0) else ramp
        return out.cast(dt)

    @classmethod
    def eye(cls, n: int, m: int | None = None, dtype: Any = None, device: str | None = None) -> Tensor:
        m = n if m is None else m
        rows = cls.arange(n, device=device).reshape(n, 1)
        cols = cls.arange(m, device=device).reshape(1, m)
        return (rows == cols).cast(to_dtype(dtype) if dtype is not None else dtypes.default_float)

    @classmethod
    def _random_bits(cls, shape: tuple[int, ...], device: str | None) -> Tensor:
        """uint32 random bits of ``shape``; advances the global counter by the number of elements."""
        n = prod(shape)
        dev = Device_.canonicalize(device)
        counter = Node(Op.BIND, dtypes.int64, (var(RNG_COUNTER_VAR, 0, _MAX_COUNTER),), _RngState.counter)
        seed = Node(Op.BIND, dtypes.int64, (var(RNG_SEED_VAR, 0, 0xFFFFFFFF),), _RngState.seed)
        _RngState.counter = (_RngState.counter + n) % _MAX_COUNTER
        index = cls.arange(n, device=dev) + cls._from_node(counter)  # type: ignore[attr-defined]
        lo = index.cast(dtypes.uint32)
        hi = (index >> 32).cast(dtypes.uint32)
        key = _mix32(index._const_like(0, dtypes.uint32, ()) + cls._from_node(seed).cast(dtypes.uint32) ^ 0x9E3779B9)
        bits = _mix32(_mix32(lo ^ key) ^ hi ^ (key * 0x85EBCA6B))
        return bits.reshape(shape)

    @classmethod
    def rand(cls, *shape: Any, dtype: Any = None, device: str | None = None, requires_grad: bool = False) -> Tensor:
        """Uniform on [0, 1)."""
        shp = _shape_of(shape)
        dt = to_dtype(dtype) if dtype is not None else dtypes.default_float
        if not dt.is_float:
            raise TypeError(f"rand: dtype must be floating point, got {dt.name}")
        # as many random bits as the type's mantissa holds -> exactly representable values in [0, 1)
        mantissa = {"float16": 11, "bfloat16": 8}.get(dt.name, 24)
        bits = cls._random_bits(shp, device)
        out = (bits >> (32 - mantissa)).cast(dtypes.float32) * (1.0 / (1 << mantissa))
        out = out.cast(dt).contiguous()
        if requires_grad:
            out.requires_grad = True
        return out

    @classmethod
    def randn(cls, *shape: Any, dtype: Any = None, device: str | None = None, requires_grad: bool = False) -> Tensor:
        """Standard normal, by the Box-Muller transform of two uniform draws."""
        import math

        shp = _shape_of(shape)
        dt = to_dtype(dtype) if dtype is not None else dtypes.default_float
        u = cls.rand((2,) + shp, device=device)
        u1, u2 = u[0], u[1]
        radius = ((1 - u1).log() * -2).sqrt()  # 1 - u1 is in (0, 1]: no log(0)
        out = (radius * (u2 * (2 * math.pi)).cos()).cast(dt).contiguous()
        if requires_grad:
            out.requires_grad = True
        return out

    @classmethod
    def randint(cls, low: int, high: int | None = None, size: Sequence[int] = (), dtype: Any = None,
                device: str | None = None) -> Tensor:  # fmt: skip
        if high is None:
            low, high = 0, low
        if high <= low:
            raise ValueError(f"randint: high ({high}) must be greater than low ({low})")
        u = cls.rand(_shape_of(tuple(size)), dtype=dtypes.float64, device=device)
        out = (u * (high - low)).floor().cast(dtypes.int64) + low
        return out.cast(to_dtype(dtype)) if dtype is not None else out
