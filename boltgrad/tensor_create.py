"""Creating tensors: constants, ranges, identity matrices and random numbers.

Constant tensors are a CONST node broadcast to the shape: nothing is allocated until a kernel writes them.
Random numbers come from a counter-based generator computed inside kernels: element ``i`` of a draw is a hash
of (seed, counter + i). The seed and the counter are kernel *variables*, bound per launch, so every draw
reuses one compiled kernel, the same on every device, and a replayed step draws fresh numbers by binding
new counter values.
"""

from __future__ import annotations

import math
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
    """A scalar constant living on ``device`` (shape ()); on no device with ``device=""`` (beside a Variable: the
    kernel that reads it decides where it is computed)."""
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
        if shape:
            out = out.reshape((1,) * len(shape)).expand(shape)
            out._base = None  # a value of its own, whose views (zeros(2, 3)[0]) show it
        return out

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

    def new_full(self, size: Sequence[int], fill_value: Any, dtype: Any = None, device: str | None = None) -> Tensor:
        """A tensor of ``size`` filled with ``fill_value``, with this tensor's dtype and device by default."""
        me: Tensor = self  # type: ignore[assignment]
        return type(me).full(tuple(size), fill_value, dtype or me.dtype, device or me.device)

    def new_zeros(self, *size: Any, dtype: Any = None, device: str | None = None) -> Tensor:
        return self.new_full(_shape_of(size), 0, dtype, device)

    def new_ones(self, *size: Any, dtype: Any = None, device: str | None = None) -> Tensor:
        return self.new_full(_shape_of(size), 1, dtype, device)

    def new_empty(self, *size: Any, dtype: Any = None, device: str | None = None) -> Tensor:
        return self.new_zeros(*size, dtype=dtype, device=device)

    def new_tensor(self, data: Any, dtype: Any = None, device: str | None = None) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        return type(me)(data, dtype=dtype or me.dtype, device=device or me.device)

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
    def linspace(cls, start: float, end: float, steps: int, dtype: Any = None, device: str | None = None) -> Tensor:
        """``steps`` values evenly spaced from start to end, both included (the upper half counted from end, as
        torch does, so the last value is end exactly)."""
        if steps < 0:
            raise ValueError(f"linspace: steps must be non-negative, got {steps}")
        dt = to_dtype(dtype) if dtype is not None else dtypes.default_float
        work = dtypes.float64 if dt == dtypes.float64 else dtypes.float32
        step = (end - start) / (steps - 1) if steps > 1 else 0.0
        i = cls.arange(steps, device=device).cast(work)
        return (i < steps // 2)._select(i * step + start, end - (steps - 1 - i) * step).cast(dt)

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

    # ---- in-place fills and draws shaped like a tensor ----

    def _uniform_like(self, work: DType) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        return type(me).rand(me.shape, dtype=work, device=me.device)

    def uniform_(self, a: float = 0.0, b: float = 1.0) -> Tensor:
        """Fill in place with numbers uniform on [a, b)."""
        me: Tensor = self  # type: ignore[assignment]
        work = _draw_type(me, "uniform_")
        return me._inplace(me._uniform_like(work) * (b - a) + a)

    def normal_(self, mean: float = 0.0, std: float = 1.0) -> Tensor:
        """Fill in place with normal numbers of the given mean and standard deviation."""
        me: Tensor = self  # type: ignore[assignment]
        work = _draw_type(me, "normal_")
        return me._inplace(type(me).randn(me.shape, dtype=work, device=me.device) * std + mean)

    def exponential_(self, lambd: float = 1.0) -> Tensor:
        """Fill in place with exponential numbers of rate ``lambd`` (mean 1 / lambd)."""
        me: Tensor = self  # type: ignore[assignment]
        work = _draw_type(me, "exponential_")
        return me._inplace((1 - me._uniform_like(work)).log() * (-1.0 / lambd))  # 1 - u is in (0, 1]: no log(0)

    def bernoulli(self, p: Any = None) -> Tensor:
        """0 or 1 in self's dtype, 1 with probability ``p`` (a number or tensor), or self's values if p is None."""
        me: Tensor = self  # type: ignore[assignment]
        probs = me if p is None else p
        work = dtypes.float64 if me.dtype == dtypes.float64 else dtypes.float32
        draw = (me._uniform_like(work) < probs).cast(me.dtype)
        return draw.detach()

    def bernoulli_(self, p: Any = 0.5) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        return me._inplace(me.bernoulli(p))

    def multinomial(self, num_samples: int, replacement: bool = False) -> Tensor:
        """Indices drawn from the categories of the last dim, with probabilities proportional to self (1-d or 2-d,
        non-negative, need not sum to 1). With replacement: inverse CDF, counting the running sums at or below a
        uniform draw. Without: the k largest keys log(u) / p (Efraimidis-Spirakis, i.e. Gumbel-top-k)."""
        me: Tensor = self  # type: ignore[assignment]
        if me.ndim not in (1, 2):
            raise RuntimeError(f"multinomial: probabilities must be 1-d or 2-d, got shape {me.shape}")
        n = me.shape[-1]
        if n == 0:
            raise RuntimeError("multinomial: the probability distribution has no categories")
        if num_samples <= 0:
            raise RuntimeError(f"multinomial: num_samples must be positive, got {num_samples}")
        if not replacement and num_samples > n:
            raise RuntimeError(f"multinomial: cannot draw {num_samples} samples without replacement from {n} "
                               "categories")  # fmt: skip
        probs = (me if me.ndim == 2 else me.reshape(1, n)).detach()
        probs = probs.cast(dtypes.float64 if probs.dtype == dtypes.float64 else dtypes.float32)
        rows = probs.shape[0]
        if replacement:
            cdf = probs.cumsum(-1)  # (rows, n)
            u = type(me).rand(rows, num_samples, dtype=probs.dtype, device=me.device) * cdf[:, n - 1 : n]
            count = (cdf.unsqueeze(1) <= u.unsqueeze(2)).sum(-1)  # (rows, samples): categories passed
            ramp = type(me).arange(n, device=me.device).reshape(1, n)
            last = (probs > 0)._select(ramp, 0).amax(-1, keepdim=True)  # a draw of exactly the total lands here
            out = count.minimum(last)
        else:
            u = type(me).rand(rows, n, dtype=probs.dtype, device=me.device)
            positive = probs > 0
            keys = positive._select((1 - u).log() / positive._select(probs, 1.0), -math.inf)
            out = keys.argmax(-1, keepdim=True) if num_samples == 1 else keys.topk(num_samples, -1).indices
        return out if me.ndim == 2 else out.reshape(num_samples)

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


def _draw_type(t: Tensor, name: str) -> DType:
    """The type to draw floats in for ``t``: float64 for float64, else float32 (rounded to t's type after)."""
    if not t.dtype.is_float:
        raise TypeError(f"{name}: expected a floating point tensor, got {t.dtype.name}")
    return dtypes.float64 if t.dtype == dtypes.float64 else dtypes.float32


def randperm(n: int, dtype: Any = None, device: str | None = None) -> Tensor:
    """A random permutation of 0..n-1: the order that sorts n random 63-bit keys."""
    from .tensor import Tensor

    if not isinstance(n, int) or n < 0:
        raise ValueError(f"randperm: n must be a non-negative int, got {n!r}")
    bits = Tensor._random_bits((2, n), device).cast(dtypes.int64)
    keys = ((bits[0] >> 1) << 32) | bits[1]
    out = keys.argsort() if n > 1 else Tensor.arange(n, device=device)
    return out.cast(to_dtype(dtype)) if dtype is not None else out


def bernoulli(input: Tensor, p: Any = None) -> Tensor:  # noqa: A002 - torch's parameter name
    """0 or 1 with probability ``input`` (or ``p``), in input's dtype."""
    return input.bernoulli(p)


def multinomial(input: Tensor, num_samples: int, replacement: bool = False) -> Tensor:  # noqa: A002
    return input.multinomial(num_samples, replacement)


def normal(mean: Any = 0.0, std: Any = 1.0, size: Sequence[int] | None = None, *, dtype: Any = None,
           device: str | None = None) -> Tensor:  # fmt: skip
    """Normal numbers with the given mean and std, each a number or a tensor (broadcast together), or of
    ``size`` when both are numbers."""
    from .tensor import Tensor
    from .tensor_math import broadcast_shape

    tensors = [t for t in (mean, std) if isinstance(t, Tensor)]
    if size is not None:
        shape = _shape_of((tuple(size),))
    elif tensors:
        shape = broadcast_shape(*(t.shape for t in tensors))
    else:
        raise TypeError("normal: give size when mean and std are both numbers")
    dev = device or (tensors[0].device if tensors else None)
    dt = to_dtype(dtype) if dtype is not None else (tensors[0].dtype if tensors else dtypes.default_float)
    work = dtypes.float64 if dt == dtypes.float64 else dtypes.float32
    draw = Tensor.randn(shape, dtype=work, device=dev)
    return (draw * std + mean).cast(dt).detach()  # torch passes no gradient to mean or std
