"""Movement and indexing: views that become index arithmetic in the kernel that reads them, never copies.

Primitives: RESHAPE, PERMUTE, EXPAND, PAD, SHRINK, FLIP. Slicing with a step is a shrink, a pad to a multiple
of the step, a reshape and a shrink again; concatenation pads each input to the full size and adds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .helpers import prod
from .ir.node import Node
from .ir.ops import Op

if TYPE_CHECKING:
    from .tensor import Tensor


def _shape_arg(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Accept ``f(2, 3)`` and ``f((2, 3))`` alike."""
    if len(args) == 1 and isinstance(args[0], Sequence | tuple | list) and not isinstance(args[0], str):
        return tuple(args[0])
    return tuple(args)


def normalize_axis(dim: int, ndim: int) -> int:
    lo, hi = (-ndim, ndim - 1) if ndim else (-1, 0)
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    if not lo <= dim <= hi:
        raise IndexError(f"Dimension out of range (expected to be in range of [{lo}, {hi}], but got {dim})")
    return dim % ndim if ndim else 0


class MovementMixin:
    __slots__ = ()
    node: Node

    def _axis(self, dim: int) -> int:
        return normalize_axis(dim, len(self.node.shape))

    def _view(self, op: Op, arg: Any) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        return me._from_node(Node(op, me.dtype, (me.node,), arg))

    def reshape(self, *shape: Any) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        new = list(_shape_arg(shape))
        for s in new:
            if not isinstance(s, int) or isinstance(s, bool):
                raise TypeError(f"reshape: sizes must be ints, got {new}")
        if new.count(-1) > 1:
            raise ValueError(f"reshape: only one dimension can be -1, got {tuple(new)}")
        numel = me.numel()
        if -1 in new:
            known = prod(s for s in new if s != -1)
            if known == 0 or numel % known:
                raise ValueError(f"shape '{list(new)}' is invalid for input of size {numel}")
            new[new.index(-1)] = numel // known
        if any(s < 0 for s in new) or prod(new) != numel:
            raise ValueError(f"shape '{list(new)}' is invalid for input of size {numel}")
        target = tuple(new)
        return me if target == me.shape else self._view(Op.RESHAPE, target)

    def view(self, *shape: Any) -> Tensor:
        return self.reshape(*shape)

    def permute(self, *dims: Any) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        order = tuple(self._axis(d) for d in _shape_arg(dims))
        if sorted(order) != list(range(me.ndim)):
            raise ValueError(f"permute: {tuple(_shape_arg(dims))} is not a permutation of the {me.ndim} dims")
        return me if order == tuple(range(me.ndim)) else self._view(Op.PERMUTE, order)

    def transpose(self, dim0: int = -2, dim1: int = -1) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        order = list(range(me.ndim))
        a, b = self._axis(dim0), self._axis(dim1)
        order[a], order[b] = order[b], order[a]
        return self.permute(order)

    @property
    def T(self) -> Tensor:  # noqa: N802 - torch's name
        me: Tensor = self  # type: ignore[assignment]
        return self.permute(tuple(reversed(range(me.ndim))))

    @property
    def mT(self) -> Tensor:  # noqa: N802
        return self.transpose(-2, -1)

    def expand(self, *shape: Any) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        new = _shape_arg(shape)
        if len(new) < me.ndim:
            raise ValueError(f"expand: the target {tuple(new)} has fewer dims than the tensor's shape {me.shape}")
        src = (1,) * (len(new) - me.ndim) + me.shape
        out = []
        for s, t in zip(src, new):
            if t == -1:
                t = s
            if s != t and s != 1:
                raise ValueError(f"expand: the size {s} of shape {me.shape} cannot be expanded to {t} in {tuple(new)}")
            out.append(t)
        base = me if src == me.shape else me.reshape(src)
        return base if tuple(out) == src else base._view(Op.EXPAND, tuple(out))

    def expand_as(self, other: Tensor) -> Tensor:
        return self.expand(other.shape)

    def squeeze(self, dim: int | Sequence[int] | None = None) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        if me.ndim == 0:
            return me
        if dim is None:
            dims = {i for i, s in enumerate(me.shape) if s == 1}
        else:
            dims = {self._axis(d) for d in (dim if isinstance(dim, Sequence) else [dim])}
            dims = {d for d in dims if me.shape[d] == 1}
        return self.reshape(tuple(s for i, s in enumerate(me.shape) if i not in dims))

    def unsqueeze(self, dim: int) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        d = normalize_axis(dim, me.ndim + 1)
        return self.reshape(me.shape[:d] + (1,) + me.shape[d:])

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        if me.ndim == 0:
            return self.reshape(1)
        a, b = self._axis(start_dim), self._axis(end_dim)
        return self.reshape(me.shape[:a] + (prod(me.shape[a : b + 1]),) + me.shape[b + 1 :])

    def unflatten(self, dim: int, sizes: Sequence[int]) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        d = self._axis(dim)
        return self.reshape(me.shape[:d] + tuple(sizes) + me.shape[d + 1 :])

    def shrink(self, bounds: Sequence[tuple[int, int] | None]) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        bounds = list(bounds) + [None] * (me.ndim - len(bounds))
        arg = tuple((0, s) if b is None else (int(b[0]), int(b[1])) for b, s in zip(bounds, me.shape))
        for (lo, hi), s in zip(arg, me.shape):
            if not 0 <= lo <= hi <= s:
                raise IndexError(f"shrink: bounds {arg} are outside shape {me.shape}")
        return me if all(b == (0, s) for b, s in zip(arg, me.shape)) else self._view(Op.SHRINK, arg)

    def flip(self, *dims: Any) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        axes = {self._axis(d) for d in _shape_arg(dims)}
        flags = tuple(i in axes and me.shape[i] > 1 for i in range(me.ndim))
        return self._view(Op.FLIP, flags) if any(flags) else me

    def pad(self, pad: Sequence[Any], mode: str = "constant", value: Any = 0) -> Tensor:
        """torch's flat ``(left, right, top, bottom, ...)`` from the last dim, or numpy's ``((before, after), ...)``
        pairs from dim 0 (told apart by element type). Negative widths crop."""
        me: Tensor = self  # type: ignore[assignment]
        pairs = _pad_pairs(pad, me.ndim)
        if mode != "constant":
            return _pad_mode(me, pairs, mode)
        crop = tuple((max(-b, 0), s - max(-a, 0)) for (b, a), s in zip(pairs, me.shape))
        base = me.shrink(crop) if any(b < 0 or a < 0 for b, a in pairs) else me
        widths = tuple((max(b, 0), max(a, 0)) for b, a in pairs)
        if not any(b or a for b, a in widths):
            return base
        out = base._view(Op.PAD, widths)
        if value != 0:
            inside = base._const_like(True, _bool())._view(Op.PAD, widths)
            out = inside._select(out, value)
        return out

    def __getitem__(self, index: Any) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        items = list(index) if isinstance(index, tuple) else [index]
        for it in items:
            if not (it is None or it is Ellipsis or isinstance(it, int | slice)):
                raise NotImplementedError(
                    f"indexing with {type(it).__name__} is not supported yet; use ints, slices, None and ..."
                )
        n_real = sum(1 for it in items if it is not None and it is not Ellipsis)
        if n_real > me.ndim:
            raise IndexError(f"too many indices for tensor of dimension {me.ndim}")
        ellipses = [i for i, it in enumerate(items) if it is Ellipsis]
        if len(ellipses) > 1:
            raise IndexError("an index can only have a single ellipsis ('...')")
        fill = [slice(None)] * (me.ndim - n_real)
        if ellipses:
            items[ellipses[0] : ellipses[0] + 1] = fill
        else:
            items += fill
        out: Tensor = me
        final_shape: list[int] = []
        dim = 0
        for it in items:
            if it is None:
                final_shape.append(1)
                continue
            size = out.shape[dim]
            if isinstance(it, int):
                if not -size <= it < size:
                    raise IndexError(f"index {it} is out of bounds for dimension {dim} with size {size}")
                i = it % size
                out = out.shrink([None] * dim + [(i, i + 1)])
            else:
                out = _slice_dim(out, dim, it)
                final_shape.append(out.shape[dim])
            dim += 1
        return out.reshape(tuple(final_shape))

    def split(self, split_size_or_sections: int | Sequence[int], dim: int = 0) -> tuple[Tensor, ...]:
        me: Tensor = self  # type: ignore[assignment]
        d = self._axis(dim)
        n = me.shape[d]
        if isinstance(split_size_or_sections, int):
            step = split_size_or_sections
            if step <= 0:
                raise ValueError(f"split: split_size must be positive, got {step}")
            sizes = [min(step, n - i) for i in range(0, n, step)] or [0]
        else:
            sizes = list(split_size_or_sections)
            if sum(sizes) != n:
                raise ValueError(f"split: sections {sizes} do not add up to the size {n} of dim {d}")
        out, start = [], 0
        for s in sizes:
            out.append(me.shrink([None] * d + [(start, start + s)]))
            start += s
        return tuple(out)

    def chunk(self, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
        me: Tensor = self  # type: ignore[assignment]
        n = me.shape[self._axis(dim)]
        return self.split(max(1, -(-n // chunks)), dim)


def _bool():
    from .ir.dtypes import bool_

    return bool_


def _pad_pairs(pad: Sequence[Any], ndim: int) -> list[tuple[int, int]]:
    pad = list(pad)
    if pad and all(isinstance(p, Sequence) or p is None for p in pad):
        if len(pad) != ndim:
            raise ValueError(f"pad: {len(pad)} (before, after) pairs given for a {ndim}-d tensor")
        return [(0, 0) if p is None else (int(p[0]), int(p[1])) for p in pad]
    if len(pad) % 2 or len(pad) // 2 > ndim:
        raise ValueError(f"pad: a flat pad needs an even length of at most {2 * ndim}, got {len(pad)}")
    pairs = [(0, 0)] * ndim
    for i in range(len(pad) // 2):
        pairs[ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    return pairs


def _pad_mode(t: Tensor, pairs: list[tuple[int, int]], mode: str) -> Tensor:
    """reflect, replicate and circular padding, built from slices and concatenation."""
    from .tensor_reduce import cat

    if mode not in ("reflect", "replicate", "circular"):
        raise ValueError(f"pad: mode must be constant, reflect, replicate or circular, not {mode!r}")
    out = t
    for d, (before, after) in enumerate(pairs):
        if before == 0 and after == 0:
            continue
        n = out.shape[d]
        if before < 0 or after < 0:
            raise ValueError(f"pad: negative widths are only allowed in constant mode, got {pairs}")
        if mode == "reflect" and (before >= n or after >= n):
            raise ValueError(f"pad: reflect widths {before, after} must be smaller than the size {n} of dim {d}")
        pieces = []

        def take(lo: int, hi: int, _out: Tensor = out, _d: int = d) -> Tensor:
            return _out.shrink([None] * _d + [(lo, hi)])

        if mode == "reflect":
            left = take(1, before + 1).flip(d) if before else None
            right = take(n - 1 - after, n - 1).flip(d) if after else None
        elif mode == "replicate":
            shape = list(out.shape)
            left = take(0, 1).expand(shape[:d] + [before] + shape[d + 1 :]) if before else None
            right = take(n - 1, n).expand(shape[:d] + [after] + shape[d + 1 :]) if after else None
        else:
            if before > n or after > n:
                raise ValueError(f"pad: circular widths {before, after} exceed the size {n} of dim {d}")
            left = take(n - before, n) if before else None
            right = take(0, after) if after else None
        pieces = [p for p in (left, out, right) if p is not None]
        out = cat(pieces, dim=d)
    return out


def _slice_dim(t: Tensor, dim: int, s: slice) -> Tensor:
    n = t.shape[dim]
    start, stop, step = s.indices(n)
    if step < 0:
        t = t.flip(dim)
        start, stop, step = n - 1 - start, n - 1 - stop, -step
    count = max(0, -(-(stop - start) // step))
    if count == 0:
        return t.shrink([None] * dim + [(0, 0)])
    if step == 1:
        return t.shrink([None] * dim + [(start, start + count)])
    # take every step-th element: crop, pad to count*step, fold the step into a new dim, keep its first entry
    last = start + (count - 1) * step + 1
    cropped = t.shrink([None] * dim + [(start, last)])
    padded = cropped.pad([None] * dim + [(0, count * step - (last - start))] + [None] * (t.ndim - dim - 1))
    folded = padded.reshape(t.shape[:dim] + (count, step) + t.shape[dim + 1 :])
    return folded.shrink([None] * (dim + 1) + [(0, 1)]).reshape(t.shape[:dim] + (count,) + t.shape[dim + 1 :])
