"""Gathers and scatters along a dim.

A read at data-dependent positions is the GATHER primitive: each output element loads its index and then the
element it names, O(1) per element, fused with whatever computes the source and whatever reads the result
(an embedding lookup, ``x[idx]``, ``gather``, ``index_select``). The graph has no data-dependent *store*, so a
scatter is a *one-hot reduction*: ``new[j] = combine over b with index[b] == j of src[b]``, one fused kernel,
O(m * n) for m sources into a dim of size n. The gradient of a gather is such a scatter-add, and the gradient
of a scatter flows through its WHERE and reduction.

Index tensors whose values are known are bounds-checked, with torch's IndexError: those already realized in
host memory (made from Python lists or numpy arrays, or realized on the CPU or PYTHON device). An index that is
still lazy (computed in the same graph) or lives on another device is not read back to check it: there an
index outside [0, n) reads 0 and writes nothing, where torch raises.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .ir import dtypes
from .ir.node import Node
from .ir.ops import Op
from .schedule.schedule import as_contiguous_buffer
from .tensor_create import arange_node
from .tensor_math import broadcast_shape

if TYPE_CHECKING:
    from .tensor import Tensor


def _is_tensor(x: Any) -> bool:
    from .tensor_math import MathMixin

    return isinstance(x, MathMixin)


def _check_int_index(index: Any, name: str) -> Tensor:
    if not _is_tensor(index):
        raise TypeError(f"{name}: index must be a Tensor, got {type(index).__name__}")
    if not index.dtype.is_int:
        raise TypeError(f"{name}: index must be an integer tensor, got {index.dtype.name}")
    return index


def known_range(index: Tensor) -> tuple[int, int] | None:
    """(min, max) of an integer index tensor whose values are already in host memory, else None."""
    buf_node = as_contiguous_buffer(index.node)
    if buf_node is None or index.numel() == 0 or not index.dtype.is_int:
        return None
    buf = buf_node.arg
    if buf.device.split(":")[0] not in _HOST_DEVICES:
        return None
    values = memoryview(buf.copyout()).cast(index.dtype.fmt)
    return min(values), max(values)


_HOST_DEVICES = ("CPU", "PYTHON")


def check_bounds(index: Tensor, n: int, dim: int, name: str, negative: bool = False) -> bool:
    """Raise torch's IndexError when known index values fall outside [0, n) (or [-n, n) with ``negative``);
    True when they were known and in range."""
    known = known_range(index)
    if known is None:
        return False
    lo, hi = known
    if hi >= n or lo < (-n if negative else 0):
        bad = hi if hi >= n else lo
        where = f"{name}: " if name else ""
        raise IndexError(f"{where}index {bad} is out of bounds for dimension {dim} with size {n}")
    return True


def _pick(hits: Tensor, values: Tensor, dtype: dtypes.DType) -> Tensor:
    """sum over the last axis of where(hits, values, 0): the one value whose hit is set (0 if none)."""
    return hits._select(values, values._const_like(0, shape=())).sum(-1).cast(dtype)


def gather_node(x: Tensor, dim: int, index: Tensor) -> Tensor:
    """The GATHER primitive: ``out[i] = x[i with i[dim] = index[i]]``, shape index.shape (same rank as x, no
    larger outside ``dim``); an index outside [0, n) reads 0."""
    return x._from_node(Node(Op.GATHER, x.dtype, (x.node, index.node), dim))


def take_along(x: Tensor, dim: int, index: Tensor) -> Tensor:
    """``x[..., index, ...]`` with an int tensor ``index`` of any shape on ``dim``: the result has shape
    ``x.shape[:dim] + index.shape + x.shape[dim+1:]``; an index outside [0, n) reads 0. One GATHER: each output
    element loads its index, then the element of x it names (x may be a lazy expression; it is evaluated only
    at the gathered positions)."""
    if index.ndim == 0:
        return take_along(x, dim, index.reshape(1)).reshape(x.shape[:dim] + x.shape[dim + 1 :])
    n, pre, post, k = x.shape[dim], x.shape[:dim], x.shape[dim + 1 :], index.ndim
    xs = x.reshape(pre + (1,) * (k - 1) + (n,) + post).expand(pre + index.shape[:-1] + (n,) + post)
    idx = index.reshape((1,) * len(pre) + index.shape + (1,) * len(post)).expand(pre + index.shape + post)
    return gather_node(xs, len(pre) + k - 1, idx)


def scatter_add_along(g: Tensor, dim: int, index: Tensor, n: int) -> Tensor:
    """The gradient of a GATHER on ``dim`` of a source of extent ``n`` there: ``out[.., j, ..]`` is the sum of
    ``g`` over the positions whose index is j (g and index have one shape). A one-hot reduction over the
    index's extent, O(numel(g) * n)."""
    order = [i for i in range(g.ndim) if i != dim] + [dim]
    gm, im = g.permute(order), index.permute(order)  # (..., m)
    hits = arange_like(g, n).unsqueeze(-1) == im.cast(dtypes.int64).unsqueeze(-2)  # (..., n, m)
    return _pick(hits, gm.unsqueeze(-2), g.dtype).permute(inverse_permutation(order))


def scatter_last(x: Tensor, index: Tensor, src: Tensor, reduce: str | None, include_self: bool) -> Tensor:
    """Scatter along the last dim: x (..., n), index and src (..., m), batch dims broadcastable to x's.

    reduce None writes the last src of each duplicate (torch leaves the choice unspecified); "sum", "prod",
    "mean", "amax", "amin" combine every src aimed at a position (and the old value when include_self).
    Cost O(batch * m * n).
    """
    n, m, dt = x.shape[-1], index.shape[-1], x.dtype
    if m == 0:
        return x
    hits = index.cast(dtypes.int64).unsqueeze(-1) == arange_like(x, n)  # (..., m, n)
    s = src.cast(dt).unsqueeze(-1)  # (..., m, 1)
    if reduce is None:
        slot = arange_like(x, m).reshape(m, 1)
        last = hits._select(slot, -1).amax(-2)  # (..., n): the last src slot aimed at each position, or -1
        chosen = slot == last.unsqueeze(-2)
        return (last < 0)._select(x, _pick(chosen.transpose(-1, -2), s.transpose(-1, -2), dt))
    count = hits.sum(-2)  # (..., n) int64
    if reduce == "sum":
        red = _pick(hits.transpose(-1, -2), s.transpose(-1, -2), dt)
        return x + red if include_self else (count > 0)._select(red, x)
    if reduce == "prod":
        red = hits._select(s, s._const_like(1)).prod(-2).cast(dt)
        return x * red if include_self else (count > 0)._select(red, x)
    if reduce == "mean":
        total = _pick(hits.transpose(-1, -2), s.transpose(-1, -2), dt) + (x if include_self else 0)
        cnt = count + 1 if include_self else count.maximum(1)
        mean = (total // cnt if not dt.is_float else total / cnt).cast(dt)
        return mean if include_self else (count > 0)._select(mean, x)
    if reduce in ("amax", "amin"):
        fill = dtypes.min_value(dt) if reduce == "amax" else dtypes.max_value(dt)
        cand = hits._select(s, s._const_like(fill))  # (..., m, n)
        if include_self:  # the old value is one more candidate, so ties share the gradient evenly as in torch
            from .tensor_reduce import cat

            shape = broadcast_shape(cand.shape[:-2], x.shape[:-1])
            cand = cat([cand._broadcast_to(shape + (m, n)), x.unsqueeze(-2)._broadcast_to(shape + (1, n))], -2)
        red = cand.amax(-2) if reduce == "amax" else cand.amin(-2)
        return red if include_self else (count > 0)._select(red, x)
    raise ValueError(f"scatter: reduce must be one of sum, prod, mean, amax, amin, not {reduce!r}")


def _check_sizes(name: str, me: Tensor, index: Tensor, d: int, src: Tensor | None = None) -> None:
    if index.ndim != me.ndim:
        raise ValueError(f"{name}: index of shape {index.shape} needs as many dims as the tensor's shape {me.shape}")
    for i, (a, b) in enumerate(zip(index.shape, me.shape)):
        if i != d and a > b:
            raise ValueError(f"{name}: index of shape {index.shape} is larger than the tensor's {me.shape} at dim {i}")
    if src is not None and (src.ndim != index.ndim or any(a > b for a, b in zip(index.shape, src.shape))):
        raise ValueError(f"{name}: index of shape {index.shape} is larger than src of shape {src.shape}")


def _scatter(
    me: Tensor, dim: int, index: Tensor, src: Any, reduce: str | None, include_self: bool, name: str
) -> Tensor:
    index = _check_int_index(index, name)
    if me.ndim == 0:
        src1 = src.reshape(-1) if _is_tensor(src) else src
        return _scatter(me.reshape(1), 0, index.reshape(-1), src1, reduce, include_self, name).reshape(())
    d = me._axis(dim)
    _check_sizes(name, me, index, d, src if _is_tensor(src) else None)
    check_bounds(index, me.shape[d], d, name)
    if _is_tensor(src):
        src = src.shrink([(0, s) for s in index.shape])
    else:
        src = me._const_like(src, shape=index.shape)
    region = tuple(me.shape[d] if i == d else s for i, s in enumerate(index.shape))
    order = [i for i in range(me.ndim) if i != d] + [d]
    part = me.shrink([(0, s) for s in region])
    new = scatter_last(part.permute(order), index.permute(order), src.permute(order), reduce, include_self)
    new = new.permute(inverse_permutation(order))
    if region == me.shape:
        return new
    widths = [(0, s - r) for s, r in zip(me.shape, region)]
    inside = new._const_like(True, dtypes.bool_).pad(widths)
    return inside._select(new.pad(widths), me)


def _without(shape: tuple[int, ...], d: int) -> tuple[int, ...]:
    return shape[:d] + shape[d + 1 :]


def inverse_permutation(order: list[int]) -> list[int]:
    inv = [0] * len(order)
    for i, o in enumerate(order):
        inv[o] = i
    return inv


def arange_like(like: Tensor, n: int) -> Tensor:
    """0, 1, ..., n-1 as int64 on like's device."""
    return like._from_node(arange_node(n, dtypes.int64, like.device))


class GatherMixin:
    __slots__ = ()
    node: Node

    def gather(self, dim: int, index: Tensor, *, sparse_grad: bool = False) -> Tensor:
        """``out[i][j][k] = x[i][index[i][j][k]][k]`` (for dim 1): index has x's number of dims and is no
        larger than x outside ``dim``. O(numel(index) * x.shape[dim]); the gradient is the matching scatter-add.
        """
        me: Tensor = self  # type: ignore[assignment]
        index = _check_int_index(index, "gather")
        if me.ndim == 0:
            return me.reshape(1).gather(0, index.reshape(-1)).reshape(index.shape)
        d = me._axis(dim)
        _check_sizes("gather", me, index, d)
        check_bounds(index, me.shape[d], d, "gather")
        return gather_node(me, d, index)

    def take_along_dim(self, indices: Tensor, dim: int | None = None) -> Tensor:
        """``gather`` with x and indices broadcast against each other outside ``dim``; without dim, over the
        flattened tensor."""
        me: Tensor = self  # type: ignore[assignment]
        indices = _check_int_index(indices, "take_along_dim")
        if dim is None:
            return me.reshape(-1).gather(0, indices.reshape(-1))
        d = me._axis(dim)
        if indices.ndim != me.ndim:
            raise ValueError(
                f"take_along_dim: indices of shape {indices.shape} and x of shape {me.shape} differ in rank"
            )
        outside = broadcast_shape(_without(me.shape, d), _without(indices.shape, d))  # the dims other than d
        x = me._broadcast_to(outside[:d] + (me.shape[d],) + outside[d:])
        return x.gather(d, indices._broadcast_to(outside[:d] + (indices.shape[d],) + outside[d:]))

    def index_select(self, dim: int, index: Tensor) -> Tensor:
        """The entries ``index`` (a 1-d int tensor) of dim ``dim``. O(numel(out) * x.shape[dim])."""
        me: Tensor = self  # type: ignore[assignment]
        index = _check_int_index(index, "index_select")
        if index.ndim > 1:
            raise ValueError(f"index_select: index must be 0-d or 1-d, got shape {index.shape}")
        d = me._axis(dim) if me.ndim else 0
        check_bounds(index, me.shape[d] if me.ndim else 1, d, "index_select")
        if me.ndim == 0:
            return take_along(me.reshape(1), 0, index.reshape(-1)).reshape(index.shape)
        return take_along(me, d, index.reshape(-1))

    def scatter(self, dim: int, index: Tensor, src: Any = None, *, value: Any = None,
                reduce: str | None = None) -> Tensor:  # fmt: skip
        """``out[i][index[i][j][k]][k] = src[i][j][k]`` (for dim 1); ``src`` may be a scalar (or pass
        ``value``), cast to x's dtype. ``reduce="add"`` or ``"multiply"`` combines instead of replacing. With
        duplicate indices the last src wins (torch leaves it unspecified) and only that one gets a gradient
        (torch's gradient reaches every duplicate). O(numel(index) * x.shape[dim])."""
        me: Tensor = self  # type: ignore[assignment]
        if src is None:
            src = value
        if src is None:
            raise TypeError("scatter: give src (a tensor or a scalar) or value")
        modes = {None: None, "add": "sum", "multiply": "prod"}
        if reduce not in modes:
            raise ValueError(f"scatter: reduce must be None, 'add' or 'multiply', not {reduce!r}")
        return _scatter(me, dim, index, src, modes[reduce], True, "scatter")

    def scatter_add(self, dim: int, index: Tensor, src: Tensor) -> Tensor:
        """``scatter`` that adds: every src element is added to the position its index names."""
        me: Tensor = self  # type: ignore[assignment]
        return _scatter(me, dim, index, src, "sum", True, "scatter_add")

    def scatter_reduce(self, dim: int, index: Tensor, src: Tensor, reduce: str, *,
                       include_self: bool = True) -> Tensor:  # fmt: skip
        """``scatter`` combining with ``reduce`` in sum, prod, mean, amax, amin; with ``include_self`` the
        old value takes part. Integer means floor, as torch's do."""
        me: Tensor = self  # type: ignore[assignment]
        if reduce not in ("sum", "prod", "mean", "amax", "amin"):
            raise ValueError(f"scatter_reduce: reduce must be one of sum, prod, mean, amax, amin, not {reduce!r}")
        return _scatter(me, dim, index, src, reduce, include_self, "scatter_reduce")

    def index_add(self, dim: int, index: Tensor, source: Tensor, *, alpha: Any = 1) -> Tensor:
        """Add ``alpha * source[..., i, ...]`` to ``x[..., index[i], ...]`` (duplicates add up)."""
        me: Tensor = self  # type: ignore[assignment]
        index = _check_int_index(index, "index_add")
        d = me._axis(dim)
        if index.ndim > 1 or source.ndim != me.ndim or index.numel() != source.shape[d]:
            raise ValueError(
                f"index_add: index {index.shape} and source {source.shape} don't fit x {me.shape} at dim {d}"
            )
        idx = index.reshape([-1 if i == d else 1 for i in range(me.ndim)])._broadcast_to(source.shape)
        return _scatter(me, d, idx, source * alpha if alpha != 1 else source, "sum", True, "index_add")

    def index_fill(self, dim: int, index: Tensor, value: Any) -> Tensor:
        """``value`` in the entries ``index`` of dim ``dim``."""
        me: Tensor = self  # type: ignore[assignment]
        index = _check_int_index(index, "index_fill")
        d = me._axis(dim) if me.ndim else 0
        hit = (index.reshape(-1, 1).cast(dtypes.int64) == arange_like(me, me.shape[d] if me.ndim else 1)).sum(0) > 0
        return me.masked_fill(hit.reshape([-1 if i == d else 1 for i in range(me.ndim)]), value)
