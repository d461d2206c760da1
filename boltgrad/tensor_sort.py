"""Sorting: sort, argsort, msort and topk, computed in kernels with torch's orders.

NaN sorts as the largest value. Ties keep their original order: both algorithms compare (value, index) pairs,
a strict total order, so every sort is stable whatever ``stable`` says (torch may order ties differently
when ``stable=False``; its topk leaves the order of ties unspecified).

Algorithms, picked by the length n of the sorted dim:

- n <= ``RANK_SORT_MAX``: *rank counting*. ``rank[i] = #{j : x[j] comes before x[i]}``, one O(n^2) reduction
  per row; then output slot r takes the element whose rank is r, another O(n^2) (O(n * k) for topk) one-hot
  reduction. A few kernels, whatever n; 0.1 s for 4 rows of 4096 on 2 cores.
- longer rows: a *bitonic sorting network* over (value, index) pairs, padded to a power of two P: log2(P) *
  (log2(P) + 1) / 2 compare-exchange stages, each an elementwise kernel over P elements built from
  reshape/flip views and WHERE. O(P log^2 P) work in O(log^2 P) launches (136 for P = 65536); stages of
  equal shape share a compiled kernel, so only O(log P) distinct kernels compile.
- topk of a long row (n > 2 * ``TOPK_CHUNK``) with small k (4k <= TOPK_CHUNK): the top k of each chunk of
  TOPK_CHUNK elements by rank counting, then the top k of those candidates, recursively: O(n * TOPK_CHUNK)
  (0.1 s for top-50 of two rows of 49152).

Values carry gradients (to the element each came from). Through the rank path they flow back through the
one-hot reduction; the network's stages would inline each other in the backward pass, so when the input
requires grad the network's values are re-read by ``gather`` with the sorted indices (O(n^2) per row).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import autograd
from .ir import dtypes
from .ir.node import Node
from .tensor_gather import arange_like
from .tensor_reduce import ValuesIndices

if TYPE_CHECKING:
    from .tensor import Tensor

RANK_SORT_MAX = 4096  # rows up to this length sort by rank counting, longer ones by the bitonic network
TOPK_CHUNK = 256  # topk of a long row with small k: the top k of each chunk of this size, then of those


def _before(a: Tensor, ia: Tensor, b: Tensor, ib: Tensor, descending: bool) -> Tensor:
    """Whether value a (at original index ia) goes before b (at ib): NaN is the largest value, ties by index."""
    lo, hi = (b, a) if descending else (a, b)
    less = lo < hi
    same = a == b
    if a.dtype.is_float:
        nan_lo, nan_hi = lo.isnan(), hi.isnan()
        less = less.logical_or(nan_hi.logical_and(nan_lo.logical_not()))
        same = same.logical_or(nan_lo.logical_and(nan_hi))
    return less.logical_or(same.logical_and(ia < ib))


def _rank_sort(x: Tensor, descending: bool, k: int) -> tuple[Tensor, Tensor]:
    """The first k of the sorted last dim of x, by rank counting: O(n^2) per row."""
    n = x.shape[-1]
    idx = arange_like(x, n)
    # (..., i, j): does x[j] come before x[i]? Summed over j, the rank of x[i].
    rank = _before(x.unsqueeze(-2), idx.reshape(1, n), x.unsqueeze(-1), idx.reshape(n, 1), descending).sum(-1)
    hits = rank.unsqueeze(-2) == arange_like(x, k).reshape(k, 1)  # (..., r, i): x[i] goes to slot r
    values = hits._select(x.unsqueeze(-2), x._const_like(0, shape=())).sum(-1).cast(x.dtype)
    indices = hits._select(idx.reshape(1, n), 0).sum(-1)
    return values, indices


def _bitonic_sort(x: Tensor, descending: bool) -> tuple[Tensor, Tensor]:
    """The sorted last dim of x by a bitonic network over (value, index) pairs: O(n log^2 n) per row."""
    n = x.shape[-1]
    size = 1 << max(n - 1, 0).bit_length()
    batch = x.shape[:-1]
    values = _pad_last(x, size, descending).contiguous()
    indices = arange_like(x, size).cast(dtypes.int32).reshape((1,) * len(batch) + (size,)).expand(values.shape)
    block = 2
    while block <= size:  # merge sorted runs of block/2 into runs of block: a mirror stage, then half-cleaners
        values, indices = _exchange(values, indices, block, True, descending)
        half = block // 4
        while half >= 1:
            values, indices = _exchange(values, indices, 2 * half, False, descending)
            half //= 2
        block *= 2
    keep = [None] * len(batch) + [(0, n)]
    return values.shrink(keep), indices.shrink(keep).cast(dtypes.int64)


def _pad_last(x: Tensor, size: int, descending: bool) -> Tensor:
    """x's last dim padded to ``size`` with a value that sorts last (NaN, or the largest/smallest value); the
    padding also sits at larger indices than every real element, so it loses every tie."""
    if x.dtype.is_float:
        fill: Any = float("-inf") if descending else float("nan")
    else:
        fill = dtypes.min_value(x.dtype) if descending else dtypes.max_value(x.dtype)
    return x.pad([None] * (x.ndim - 1) + [(0, size - x.shape[-1])], value=fill)


def _topk_chunked(x: Tensor, descending: bool, k: int) -> tuple[Tensor, Tensor]:
    """The first k of the sorted last dim of a long row, for k <= TOPK_CHUNK / 4: the first k of each chunk
    (rank counting, O(n * TOPK_CHUNK)), then the first k of those candidates, recursively (each level is at
    least 4 times shorter). Candidates stay in index order among equal values, so ties resolve as a sort's."""
    n, c = x.shape[-1], TOPK_CHUNK
    chunks = -(-n // c)
    batch = x.shape[:-1]
    blocks = _pad_last(x, chunks * c, descending).reshape(batch + (chunks, c))
    values, local = _rank_sort(blocks, descending, k)  # (..., chunks, k)
    where = local + arange_like(x, chunks).reshape(chunks, 1) * c
    values, where = values.reshape(batch + (chunks * k,)), where.reshape(batch + (chunks * k,))
    if chunks * k > c:
        values, picked = _topk_chunked(values, descending, k)
    else:
        values, picked = _rank_sort(values, descending, k)
    return values, where.gather(-1, picked)


def _exchange(v: Tensor, i: Tensor, block: int, mirror: bool, descending: bool) -> tuple[Tensor, Tensor]:
    """One compare-exchange stage: within each block of ``block`` elements, element j of the first half meets
    element block-1-j (``mirror``) or j + block/2; the first half keeps the one that goes first."""
    shape = v.shape
    batch, size = shape[:-1], shape[-1]
    halves = batch + (size // block, 2, block // 2)

    def partner(t: Tensor) -> Tensor:
        if mirror:
            return t.reshape(batch + (size // block, block)).flip(-1).reshape(shape)
        return t.reshape(halves).flip(-2).reshape(shape)

    pv, pi = partner(v), partner(i)
    first = v._const_like(True, dtypes.bool_, (size // block, 1, block // 2))
    first = first.pad([None, (0, 1), None]).reshape(size)  # (size,): in the first half of its block
    take = first._select(_before(pv, pi, v, i, descending), _before(v, i, pv, pi, descending))
    return take._select(pv, v).contiguous(), take._select(pi, i).contiguous()


def _sort_last(x: Tensor, descending: bool, k: int) -> tuple[Tensor, Tensor]:
    """The first k entries of the sorted last dim of x, as (values, int64 indices)."""
    n = x.shape[-1]
    if n == 0 or k == 0:
        empty = x.shrink([None] * (x.ndim - 1) + [(0, 0)])
        return empty, empty.cast(dtypes.int64)
    src = x.cast(dtypes.uint8) if x.dtype == dtypes.bool_ else x
    if n > 2 * TOPK_CHUNK and 4 * k <= TOPK_CHUNK:
        values, indices = _topk_chunked(src, descending, k)
    elif n <= RANK_SORT_MAX:
        values, indices = _rank_sort(src, descending, k)
    else:
        values, indices = _bitonic_sort(src, descending)
        keep = [None] * (x.ndim - 1) + [(0, k)]
        values, indices = values.shrink(keep), indices.shrink(keep)
        if autograd.is_grad_enabled() and autograd.needs_grad(x.node):
            values = x.gather(-1, indices)
    return values.cast(x.dtype), indices


class SortMixin:
    __slots__ = ()
    node: Node

    def sort(self, dim: int = -1, descending: bool = False, stable: bool = False) -> ValuesIndices:
        """``(values, indices)`` sorted along ``dim``; always stable (see the module docstring for costs)."""
        me: Tensor = self  # type: ignore[assignment]
        if me.ndim == 0:
            return ValuesIndices(me, me._const_like(0, dtypes.int64))
        d = me._axis(dim)
        values, indices = _sort_last(me.transpose(d, -1), descending, me.shape[d])
        return ValuesIndices(values.transpose(d, -1), indices.transpose(d, -1))

    def argsort(self, dim: int = -1, descending: bool = False, stable: bool = False) -> Tensor:
        """The int64 indices that sort x along ``dim`` (stable)."""
        return self.sort(dim, descending, stable).indices

    def msort(self) -> Tensor:
        """x sorted along dim 0."""
        return self.sort(0).values

    def topk(self, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> ValuesIndices:  # noqa: A002
        """The k largest (or with ``largest=False`` smallest) entries along ``dim`` as ``(values, indices)``,
        in that order (always sorted; equal values in index order)."""
        me: Tensor = self  # type: ignore[assignment]
        n = me.shape[me._axis(dim)] if me.ndim else 1
        if not isinstance(k, int) or not 0 <= k <= n:
            raise IndexError(f"topk: k={k} is out of range for a dim of size {n}")
        if me.ndim == 0:
            return ValuesIndices(me, me._const_like(0, dtypes.int64))
        d = me._axis(dim)
        values, indices = _sort_last(me.transpose(d, -1), largest, k)
        return ValuesIndices(values.transpose(d, -1), indices.transpose(d, -1))
