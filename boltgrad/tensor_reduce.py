"""Reductions, matmul and concatenation, written with REDUCE (sum, max, prod) and the elementwise primitives.

Sums of integers and bools give int64, sums of float16/bfloat16 accumulate in float32 (as PyTorch does);
min is max of the negation (or of the bitwise complement for integers, which reverses order without
overflow); arg-max takes the first index that attains the maximum, NaN counting as the largest value.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from .autograd import is_grad_enabled, reduce_gradient, with_gradient
from .codegen.lower import PACK
from .device.registry import get_device
from .helpers import prod
from .ir import dtypes
from .ir.node import Node
from .ir.ops import Op
from .tensor_movement import normalize_axis

if TYPE_CHECKING:
    from .tensor import Tensor


# A reduction of at least this many elements to a single value is split: SPLIT_PARTS partial reductions (one
# kernel whose rows the threads share), then one over the partials. Unsplit, its one output row would run on one
# thread (a 16M-element sum: 5 ms at one core's bandwidth).
SPLIT_MIN_ELEMENTS = 1 << 20
SPLIT_PARTS = (64, 32, 16)


def _split_parts(shape: tuple[int, ...]) -> int:
    """How many partial reductions a full reduction of ``shape`` is split into (0: none)."""
    n = prod(shape)
    if n < SPLIT_MIN_ELEMENTS:
        return 0
    return next((p for p in SPLIT_PARTS if n % p == 0), 0)


class ValuesIndices(NamedTuple):
    values: Tensor
    indices: Tensor


def pick_dims(dim: Any, axis: Any, ndim: int) -> tuple[int, ...] | None:
    """``dim`` or its alias ``axis`` (not both) -> sorted positive axes, or None for all."""
    if dim is not None and axis is not None:
        raise TypeError("give dim or axis, not both")
    d = dim if dim is not None else axis
    if d is None:
        return None
    items = d if isinstance(d, Sequence) else (d,)
    if len(items) == 0:  # dim=() reduces every dim, as in torch
        return None
    return tuple(sorted({normalize_axis(int(x), ndim) for x in items}))


def pick_keepdim(keepdim: bool | None, keepdims: bool | None) -> bool:
    if keepdim is not None and keepdims is not None:
        raise TypeError("give keepdim or keepdims, not both")
    return bool(keepdim if keepdim is not None else keepdims)


class ReduceMixin:
    __slots__ = ()
    node: Node

    def _reduce(self, rop: Op, dims: tuple[int, ...] | None, keepdim: bool) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        axes = tuple(range(me.ndim)) if dims is None else dims
        if not axes:
            return me
        parts = _split_parts(me.shape) if len(axes) == me.ndim else 0
        if parts:  # a long reduction to one value: partial results in parallel first, then their reduction
            flat = me.reshape(parts, -1)
            partial = Node(Op.REDUCE, me.dtype, (flat.node,), (rop, (1,)))  # (parts, 1), stored:
            partial = Node(Op.CONTIGUOUS, me.dtype, (partial,))  # a kernel of its own, rows across threads
            total = Node(Op.REDUCE, me.dtype, (partial,), (rop, (0, 1)))
            out = me._from_node(total).reshape((1,) * me.ndim)
            # its gradient is the plain reduction's (a broadcast), not one through the partials, whose index
            # arithmetic (flat index // part size) would cost a division per element of the backward pass
            plain = Node(Op.REDUCE, me.dtype, (me.node,), (rop, axes))
            out = with_gradient(out, (me,), lambda x, o, g: reduce_gradient(plain, x, o, g))
        else:
            out = me._from_node(Node(Op.REDUCE, me.dtype, (me.node,), (rop, axes)))
        if keepdim:
            return out
        return out.reshape(tuple(s for i, s in enumerate(me.shape) if i not in axes))

    def sum(self, dim: Any = None, keepdim: bool | None = None, dtype: Any = None, *, axis: Any = None,
            keepdims: bool | None = None) -> Tensor:  # fmt: skip
        me: Tensor = self  # type: ignore[assignment]
        dims, keep = pick_dims(dim, axis, me.ndim), pick_keepdim(keepdim, keepdims)
        if dtype is not None:
            return me.cast(dtypes.to_dtype(dtype)).sum(dims, keep)
        if not me.dtype.is_float:
            return me.cast(dtypes.int64)._reduce(Op.ADD, dims, keep)
        if me.dtype.itemsize < 4:
            return me.cast(dtypes.float32)._reduce(Op.ADD, dims, keep).cast(me.dtype)
        return me._reduce(Op.ADD, dims, keep)

    def mean(self, dim: Any = None, keepdim: bool | None = None, dtype: Any = None, *, axis: Any = None,
             keepdims: bool | None = None) -> Tensor:  # fmt: skip
        me: Tensor = self  # type: ignore[assignment]
        dims, keep = pick_dims(dim, axis, me.ndim), pick_keepdim(keepdim, keepdims)
        src = me.cast(dtypes.to_dtype(dtype)) if dtype is not None else me
        if not src.dtype.is_float:
            raise TypeError(f"mean: expected a floating point input, got {src.dtype.name}; pass dtype=float32")
        count = 1
        for i in range(me.ndim) if dims is None else dims:
            count *= me.shape[i]
        total = src.sum(dims, keep)
        return total * (1.0 / count) if count else total * float("nan")

    def prod(self, dim: Any = None, keepdim: bool | None = None, dtype: Any = None, *, axis: Any = None,
             keepdims: bool | None = None) -> Tensor:  # fmt: skip
        me: Tensor = self  # type: ignore[assignment]
        dims, keep = pick_dims(dim, axis, me.ndim), pick_keepdim(keepdim, keepdims)
        src = me.cast(dtypes.to_dtype(dtype)) if dtype is not None else me
        if not src.dtype.is_float:
            src = src.cast(dtypes.int64)
        return src._reduce(Op.MUL, dims, keep)

    def amax(self, dim: Any = None, keepdim: bool | None = None, *, axis: Any = None,
             keepdims: bool | None = None) -> Tensor:  # fmt: skip
        me: Tensor = self  # type: ignore[assignment]
        dims = pick_dims(dim, axis, me.ndim)
        _check_nonempty(me, dims, "amax")
        return me._reduce(Op.MAX, dims, pick_keepdim(keepdim, keepdims))

    def amin(self, dim: Any = None, keepdim: bool | None = None, *, axis: Any = None,
             keepdims: bool | None = None) -> Tensor:  # fmt: skip
        me: Tensor = self  # type: ignore[assignment]
        dims = pick_dims(dim, axis, me.ndim)
        _check_nonempty(me, dims, "amin")
        keep = pick_keepdim(keepdim, keepdims)
        if me.dtype.is_float:
            return -((-me)._reduce(Op.MAX, dims, keep))
        return me.bitwise_not()._reduce(Op.MAX, dims, keep).bitwise_not()

    def max(self, dim: Any = None, keepdim: bool | None = None, *, axis: Any = None,
            keepdims: bool | None = None) -> Any:  # fmt: skip
        """``x.max()`` is a scalar tensor; ``x.max(dim)`` is ``(values, indices)``; ``x.max(other)`` is maximum."""
        if MathLike.is_tensor(dim):
            return self.maximum(dim)  # type: ignore[attr-defined]
        if dim is None and axis is None:
            return self.amax()
        keep = pick_keepdim(keepdim, keepdims)
        values, indices = self.amax(dim, keep, axis=axis), self.argmax(dim, keep, axis=axis)
        return ValuesIndices(_to_index(self, values, indices, dim if dim is not None else axis, keep), indices)

    def min(self, dim: Any = None, keepdim: bool | None = None, *, axis: Any = None,
            keepdims: bool | None = None) -> Any:  # fmt: skip
        if MathLike.is_tensor(dim):
            return self.minimum(dim)  # type: ignore[attr-defined]
        if dim is None and axis is None:
            return self.amin()
        keep = pick_keepdim(keepdim, keepdims)
        values, indices = self.amin(dim, keep, axis=axis), self.argmin(dim, keep, axis=axis)
        return ValuesIndices(_to_index(self, values, indices, dim if dim is not None else axis, keep), indices)

    def argmax(self, dim: Any = None, keepdim: bool | None = None, *, axis: Any = None,
               keepdims: bool | None = None) -> Tensor:  # fmt: skip
        me: Tensor = self  # type: ignore[assignment]
        keep = pick_keepdim(keepdim, keepdims)
        dims = pick_dims(dim, axis, me.ndim)
        if dims is None:
            return me.reshape(-1).argmax(0)
        if len(dims) != 1:
            raise ValueError("argmax: dim must be a single int")
        d = dims[0]
        _check_nonempty(me, dims, "argmax")
        n = me.shape[d]
        best = me.amax(d, keepdim=True)
        hit = (me == best).logical_or(me.isnan()) if me.dtype.is_float else me == best
        # the first hit has the largest (n - index); bake the index in along dim d
        countdown = _arange_along(me, n, d)
        first = hit._select(countdown, 0)._reduce(Op.MAX, (d,), keep)
        return (n - first).cast(dtypes.int64)

    def argmin(self, dim: Any = None, keepdim: bool | None = None, *, axis: Any = None,
               keepdims: bool | None = None) -> Tensor:  # fmt: skip
        me: Tensor = self  # type: ignore[assignment]
        flipped = -me if me.dtype.is_float else me.bitwise_not()
        return flipped.argmax(dim, keepdim, axis=axis, keepdims=keepdims)

    def var(self, dim: Any = None, *, correction: float = 1, keepdim: bool | None = None, axis: Any = None,
            keepdims: bool | None = None, unbiased: bool | None = None) -> Tensor:  # fmt: skip
        """Variance with Bessel's ``correction`` (1 by default, as in torch)."""
        me: Tensor = self  # type: ignore[assignment]
        if unbiased is not None:
            correction = 1 if unbiased else 0
        dims, keep = pick_dims(dim, axis, me.ndim), pick_keepdim(keepdim, keepdims)
        count = 1
        for i in range(me.ndim) if dims is None else dims:
            count *= me.shape[i]
        x = me._floating()
        centered = x - x.mean(dims, keepdim=True)
        return centered.square().sum(dims, keep) / max(count - correction, 0)

    def std(self, dim: Any = None, *, correction: float = 1, keepdim: bool | None = None, axis: Any = None,
            keepdims: bool | None = None, unbiased: bool | None = None) -> Tensor:  # fmt: skip
        # torch's gradient is 0 where std is 0 (all values equal), not NaN
        return sqrt_zero_grad(self.var(dim, correction=correction, keepdim=keepdim, axis=axis, keepdims=keepdims,
                                       unbiased=unbiased))  # fmt: skip

    def logsumexp(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None) -> Tensor:
        """log(sum(exp(x))) computed stably: the max is subtracted first (and infinities handled)."""
        me: Tensor = self  # type: ignore[assignment]
        dims = pick_dims(dim, axis, me.ndim)
        x = me._floating()
        m = x.amax(dims, keepdim=True).detach()
        m = m.isinf()._select(0.0, m)
        out = (x - m).exp().sum(dims, keepdim=True).log() + m
        return out if keepdim else out.squeeze(dims if dims is not None else None)

    def softmax(self, dim: int = -1, dtype: Any = None) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        x = me.cast(dtypes.to_dtype(dtype)) if dtype is not None else me._floating()
        e = (x - x.amax(dim, keepdim=True).detach()).exp()
        return e / e.sum(dim, keepdim=True)

    def log_softmax(self, dim: int = -1, dtype: Any = None) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        x = me.cast(dtypes.to_dtype(dtype)) if dtype is not None else me._floating()
        shifted = x - x.amax(dim, keepdim=True).detach()
        return shifted - shifted.exp().sum(dim, keepdim=True).log()

    # ---- linear algebra ----

    def matmul(self, other: Tensor) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        if not MathLike.is_tensor(other):
            raise TypeError(f"matmul: expected a Tensor, got {type(other).__name__}")
        if me.ndim == 0 or other.ndim == 0:
            raise ValueError(f"matmul: both arguments need at least 1 dim, got shapes {me.shape} and {other.shape}")
        a = me.reshape(1, me.shape[0]) if me.ndim == 1 else me
        b = other.reshape(other.shape[0], 1) if other.ndim == 1 else other
        if a.shape[-1] != b.shape[-2]:
            raise ValueError(f"matmul: shapes {me.shape} and {other.shape} don't match: {a.shape[-1]} != {b.shape[-2]}")
        try:
            broadcast_shape(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ValueError(f"matmul: batch dims of shapes {me.shape} and {other.shape} cannot broadcast") from None
        dt = dtypes.promote_types(a.dtype, b.dtype)
        acc = dtypes.float32 if dt.is_float and dt.itemsize < 4 else dt
        # (..., n, 1, k) * (..., 1, m, k) summed over k
        left = a.cast(acc).unsqueeze(-2)
        right = _packed_columns(b.cast(acc), prod(a.shape[:-1]) // max(1, prod(b.shape[:-2])))
        right = right.transpose(-1, -2).unsqueeze(-3)
        products = left * right
        out = products._reduce(Op.ADD, (products.ndim - 1,), False).cast(dt)
        if me.ndim == 1:
            out = out.squeeze(-2)
        if other.ndim == 1:
            out = out.squeeze(-1)
        return out

    def __matmul__(self, other: Tensor) -> Tensor:
        return self.matmul(other)

    def __rmatmul__(self, other: Tensor) -> Tensor:
        return other.matmul(self)  # type: ignore[arg-type]

    def dot(self, other: Tensor) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        if me.ndim != 1 or other.ndim != 1:
            raise ValueError(f"dot: expected 1-d tensors, got shapes {me.shape} and {other.shape}")
        return self.matmul(other)


def _packed_columns(b: Tensor, rows: int) -> Tensor:
    """The right operand of a matmul on the CPU, copied first into strips of 16 columns, (..., N/16, K, 16), and
    read back as (..., K, N): each step of the register tile's reduce then reads 64 contiguous bytes of one
    strip, where in b itself the next k is a whole row away (a new page every step for N >= 1024: the caches'
    and TLB's worst case). The copy is one pass over b; the matmul reads each strip ``rows / 6`` times.
    Measured on a 2-core AVX-512 machine: 1024^3 134 -> 153 GFLOP/s, ``x @ w.T`` at 1024^3 99 -> 159, with
    128 rows 69 -> 83; slower for row-major b below about 512^3 and for few rows (``x @ w.T`` with 16 rows 38
    -> 32). So only float32 views of realized buffers on the C renderer's devices, with enough rows to pay for
    the copy, and on the PYTHON device, which runs the same kernels one scalar at a time (the CPU's results
    bit for bit). The gradient passes straight to b: the strips are a view of the same values."""
    k, n = b.shape[-2], b.shape[-1]
    if b.dtype != dtypes.float32 or n % PACK or n < 4 * PACK or k < 64 or rows < 128:
        return b
    view, transposed = b.node, False
    while view.op in (Op.RESHAPE, Op.PERMUTE):
        transposed = transposed or view.op is Op.PERMUTE
        view = view.src[0]
    if view.op is not Op.BUFFER or get_device(view.arg.device).renderer not in ("c", "python"):
        return b
    if not transposed and (rows < 256 or rows * n * k < 1 << 27):  # row-major b: the tiles read it well below
        return b
    return packed_strips(b)


def packed_strips(b: Tensor) -> Tensor:
    """b (..., K, N), N a multiple of 16, copied into strips of 16 columns, (..., N/16, K, 16), and read back
    through a view as (..., K, N); its gradient is b's."""
    k, n = b.shape[-2], b.shape[-1]
    lead = b.shape[:-2]
    d = len(lead)
    strips = b.reshape(*lead, k, n // PACK, PACK).permute(*range(d), d + 1, d, d + 2).contiguous()
    packed = strips.permute(*range(d), d + 1, d, d + 2).reshape(b.shape)
    return with_gradient(packed, (b,), lambda _, __, g: (g,))


def broadcast_shape(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    from .tensor_math import broadcast_shape as bs

    return bs(*shapes)


class MathLike:
    @staticmethod
    def is_tensor(x: Any) -> bool:
        from .tensor_math import MathMixin

        return isinstance(x, MathMixin)


def _check_nonempty(t: Tensor, dims: tuple[int, ...] | None, name: str) -> None:
    axes = range(t.ndim) if dims is None else dims
    if any(t.shape[i] == 0 for i in axes):
        raise IndexError(f"{name}(): cannot reduce over an empty dimension of shape {t.shape}")


def _arange_along(t: Tensor, n: int, dim: int) -> Tensor:
    """n, n-1, ..., 1 along ``dim``, broadcast to t's shape, as int64."""
    ramp = t._from_node(Node(Op.ARANGE, dtypes.int64, (), n))
    countdown = n - ramp
    shape = [1] * t.ndim
    shape[dim] = n
    return countdown.reshape(shape).expand(t.shape)


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Concatenate along ``dim``: each input padded to the full size, then summed (one fused kernel)."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty sequence of tensors")
    first = tensors[0]
    d = normalize_axis(dim, first.ndim)
    dt = first.dtype
    for t in tensors[1:]:
        dt = dtypes.promote_types(dt, t.dtype)
        if t.ndim != first.ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != d):
            raise ValueError(f"cat: shapes {first.shape} and {t.shape} differ outside dim {d}")
    total = sum(t.shape[d] for t in tensors)
    out: Tensor | None = None
    offset = 0
    for t in tensors:
        n = t.shape[d]
        pairs = [(0, 0)] * t.ndim
        pairs[d] = (offset, total - offset - n)
        piece = t.cast(dt).pad(pairs)
        out = piece if out is None else out._binary(Op.OR if dt == dtypes.bool_ else Op.ADD, piece)
        offset += n
    assert out is not None
    return out


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty sequence of tensors")
    for t in tensors[1:]:
        if t.shape != tensors[0].shape:
            raise ValueError(f"stack: all tensors need one shape, got {tensors[0].shape} and {t.shape}")
    d = normalize_axis(dim, tensors[0].ndim + 1)
    return cat([t.unsqueeze(d) for t in tensors], d)


def hstack(tensors: Sequence[Tensor]) -> Tensor:
    """cat along dim 1 (dim 0 for 1-d tensors), as torch.hstack."""
    tensors = list(tensors)
    return cat(tensors, 0 if tensors and tensors[0].ndim == 1 else 1)


def vstack(tensors: Sequence[Tensor]) -> Tensor:
    """cat along dim 0, 1-d tensors taken as rows, as torch.vstack."""
    return cat([t.reshape(1, -1) if t.ndim <= 1 else t for t in tensors], 0)


def sqrt_zero_grad(x: Tensor) -> Tensor:
    """sqrt(x) whose gradient is 0 where the result is 0 (torch's for norm and std at zero, not inf * 0)."""
    return with_gradient(x.sqrt(), (x,), _sqrt_zero_grad)


def _sqrt_zero_grad(inputs: list[Tensor], out: Tensor, g: Tensor) -> tuple[Tensor]:
    return ((out == 0)._select(0.0, g / (out * 2)),)


def _to_index(x: Tensor, values: Tensor, indices: Tensor, dim: Any, keepdim: bool) -> Tensor:
    """``values`` of max(dim)/min(dim) with torch's gradient: all of it to the element at ``indices`` (amax
    splits it between ties). ``* 1`` gives the values a node of their own, so amax keeps its rule."""
    if not (is_grad_enabled() and x.requires_grad):
        return values
    d = normalize_axis(dim if isinstance(dim, int) else dim[0], x.ndim)
    return with_gradient(values * 1, (x,), functools.partial(_index_grad, indices, d, keepdim))


def _index_grad(indices: Tensor, d: int, keepdim: bool, inputs: list[Tensor], out: Tensor, g: Tensor) -> tuple[Tensor]:
    (x,) = inputs
    idx, g = (indices, g) if keepdim else (indices.unsqueeze(d), g.unsqueeze(d))
    position = x.shape[d] - _arange_along(x, x.shape[d], d)  # 0, 1, ... along d
    return ((position == idx)._select(g, 0.0),)
