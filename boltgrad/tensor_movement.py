"""Movement: views that become index arithmetic in the kernel that reads them, never copies.

Primitives: RESHAPE, PERMUTE, EXPAND, PAD, SHRINK, FLIP. Slicing with a step is a shrink, a pad to a multiple
of the step, a reshape and a shrink again (``slice_dim``; ``unslice_dim`` is its inverse, used to write into a
slice); concatenation pads each input to the full size and adds them. Repeats, rolls, sliding windows,
diagonals and triangles are views too (a triangle is a view of the input and a comparison of two ranges).
Indexing (``x[...]``) lives in ``tensor_index``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .helpers import prod
from .ir.node import Node
from .ir.ops import Op
from .tensor_views import register

if TYPE_CHECKING:
    from .tensor import Tensor


def _shape_arg(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Accept ``f(2, 3)`` and ``f((2, 3))`` alike."""
    if len(args) != 1 or isinstance(args[0], int):  # the usual cases, before the slow Sequence check
        return tuple(args)
    if isinstance(args[0], tuple | list) or (isinstance(args[0], Sequence) and not isinstance(args[0], str)):
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
        node = self.node
        out = self._from_node(Node(op, node.dtype, (node,), arg))  # type: ignore[attr-defined]
        base = self._base  # type: ignore[attr-defined]
        register(out, base if base is not None else self)  # a view of this tensor (tensor_views.py)
        return out

    def _fresh(self, op: Op, arg: Any) -> Tensor:
        """A movement op's result as a tensor of its own, not a view: flip and pad (torch's are copies), and the
        operands broadcast for an op (nobody else sees them)."""
        return self._from_node(Node(op, self.node.dtype, (self.node,), arg))  # type: ignore[attr-defined]

    def reshape(self, *shape: Any) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        new = _shape_arg(shape)
        for s in new:
            if type(s) is not int and (not isinstance(s, int) or isinstance(s, bool)):
                raise TypeError(f"reshape: sizes must be ints, got {list(new)}")
        old = me.node.shape
        if new == old:
            return me
        if -1 in new:
            if new.count(-1) > 1:
                raise ValueError(f"reshape: only one dimension can be -1, got {new}")
            numel = prod(old)
            known = prod(s for s in new if s != -1)
            if known == 0 or numel % known:
                raise ValueError(f"shape '{list(new)}' is invalid for input of size {numel}")
            new = tuple(numel // known if s == -1 else s for s in new)
            if new == old:
                return me
        if any(s < 0 for s in new) or prod(new) != prod(old):
            raise ValueError(f"shape '{list(new)}' is invalid for input of size {prod(old)}")
        return self._view(Op.RESHAPE, new)

    def view(self, *shape: Any) -> Tensor:
        return self.reshape(*shape)

    def permute(self, *dims: Any) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        ndim = len(me.node.shape)
        order = tuple(normalize_axis(d, ndim) for d in _shape_arg(dims))
        identity = tuple(range(ndim))
        if order == identity:
            return me
        if sorted(order) != list(identity):
            raise ValueError(f"permute: {tuple(_shape_arg(dims))} is not a permutation of the {ndim} dims")
        return self._view(Op.PERMUTE, order)

    def transpose(self, dim0: int = -2, dim1: int = -1) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        order = list(range(me.ndim))
        a, b = self._axis(dim0), self._axis(dim1)
        order[a], order[b] = order[b], order[a]
        return self.permute(order)

    def swapaxes(self, axis0: int, axis1: int) -> Tensor:
        return self.transpose(axis0, axis1)

    def swapdims(self, dim0: int, dim1: int) -> Tensor:
        return self.transpose(dim0, dim1)

    def movedim(self, source: int | Sequence[int], destination: int | Sequence[int]) -> Tensor:
        """Move the dims ``source`` to the positions ``destination``; the other dims keep their order."""
        me: Tensor = self  # type: ignore[assignment]
        src = [self._axis(d) for d in ((source,) if isinstance(source, int) else source)]
        dst = [self._axis(d) for d in ((destination,) if isinstance(destination, int) else destination)]
        if len(src) != len(dst) or len(set(src)) != len(src) or len(set(dst)) != len(dst):
            raise ValueError(f"movedim: source {source} and destination {destination} must be as many distinct dims")
        rest = iter(d for d in range(me.ndim) if d not in src)
        placed = dict(zip(dst, src))
        return self.permute([placed[i] if i in placed else next(rest) for i in range(me.ndim)])

    def moveaxis(self, source: int | Sequence[int], destination: int | Sequence[int]) -> Tensor:
        return self.movedim(source, destination)

    @property
    def T(self) -> Tensor:  # noqa: N802 - torch's name
        me: Tensor = self  # type: ignore[assignment]
        return self.permute(tuple(reversed(range(me.ndim))))

    @property
    def mT(self) -> Tensor:  # noqa: N802
        return self.transpose(-2, -1)

    def t(self) -> Tensor:
        """torch's ``t()``: a 2-d tensor transposed (a view); 0-d and 1-d ones as they are."""
        me: Tensor = self  # type: ignore[assignment]
        if me.ndim > 2:
            raise ValueError(f"t() expects a tensor of at most 2 dims, got {me.ndim}: use transpose(dim0, dim1) or .mT")
        return self.T

    def expand(self, *shape: Any) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        new = _shape_arg(shape)
        if new == me.node.shape:
            return me
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
        shape = me.node.shape
        arg = tuple((0, s) if b is None else (int(b[0]), int(b[1])) for b, s in zip(bounds, shape))
        if len(arg) < len(shape):
            arg += tuple((0, s) for s in shape[len(arg) :])
        whole = True
        for (lo, hi), s in zip(arg, shape):
            if not 0 <= lo <= hi <= s:
                raise IndexError(f"shrink: bounds {arg} are outside shape {shape}")
            whole = whole and lo == 0 and hi == s
        return me if whole else self._view(Op.SHRINK, arg)

    def flip(self, *dims: Any) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        axes = {self._axis(d) for d in _shape_arg(dims)}
        flags = tuple(i in axes and me.shape[i] > 1 for i in range(me.ndim))
        return self._fresh(Op.FLIP, flags) if any(flags) else me  # a copy, as torch's

    def pad(self, pad: Sequence[Any], mode: str = "constant", value: Any = 0) -> Tensor:
        """torch's flat ``(left, right, top, bottom, ...)`` from the last dim, or numpy's ``((before, after), ...)``
        pairs from dim 0 (told apart by element type). Negative widths crop."""
        me: Tensor = self  # type: ignore[assignment]
        pairs = _pad_pairs(pad, me.ndim)
        if mode != "constant":
            return _pad_mode(me, pairs, mode)
        base, widths = me, tuple(pairs)
        if any(b < 0 or a < 0 for b, a in pairs):
            base = me.shrink(tuple((max(-b, 0), s - max(-a, 0)) for (b, a), s in zip(pairs, me.shape)))
            widths = tuple((max(b, 0), max(a, 0)) for b, a in pairs)
        if not any(b or a for b, a in widths):
            return base
        out = base._fresh(Op.PAD, widths)  # a copy, as torch's (a strided slice's pad is a view: slice_dim)
        if value != 0:
            inside = base._const_like(True, _bool())._fresh(Op.PAD, widths)
            out = inside._select(out, value)
        return out

    def split(self, split_size_or_sections: int | Sequence[int] | None = None, dim: int = 0, *,
              split_size: int | Sequence[int] | None = None) -> tuple[Tensor, ...]:  # fmt: skip
        """Pieces of ``split_size`` along ``dim`` (the last may be smaller), or of the given sizes
        (``split_size`` is the name torch's method uses, ``split_size_or_sections`` torch.split's)."""
        me: Tensor = self  # type: ignore[assignment]
        if (split_size_or_sections is None) == (split_size is None):
            raise TypeError("split: give the split size (or the sections) once")
        if split_size_or_sections is None:
            split_size_or_sections = split_size
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

    # ---- repeats and sliding windows ----

    def repeat(self, *sizes: Any) -> Tensor:
        """Tile the tensor ``sizes[i]`` times along dim i (``sizes`` may have more dims than the tensor).

        Each dim becomes a broadcast of a new leading axis, then the two are merged: index arithmetic, no copy,
        though not a view (a write to it does not change this tensor, as in torch).
        """
        me: Tensor = self  # type: ignore[assignment]
        reps = _shape_arg(sizes)
        if len(reps) < me.ndim:
            raise ValueError(f"repeat: {len(reps)} repeat sizes {tuple(reps)} given for a {me.ndim}-d tensor")
        if any(not isinstance(r, int) or r < 0 for r in reps):
            raise ValueError(f"repeat: sizes must be non-negative ints, got {tuple(reps)}")
        shape = (1,) * (len(reps) - me.ndim) + me.shape
        paired = me.reshape([v for s in shape for v in (1, s)])  # (1, s0, 1, s1, ...)
        tiled = paired.expand([v for r, s in zip(reps, shape) for v in (r, s)])  # (r0, s0, r1, s1, ...)
        out = tiled.reshape([r * s for r, s in zip(reps, shape)])
        out._base = None  # type: ignore[attr-defined]  # a value of its own, as torch's copy: writable
        return out

    def tile(self, *dims: Any) -> Tensor:
        """``repeat``, except that fewer sizes than dims repeat the last dims (missing sizes count as 1)."""
        me: Tensor = self  # type: ignore[assignment]
        reps = _shape_arg(dims)
        return self.repeat((1,) * (me.ndim - len(reps)) + tuple(reps))

    def roll(self, shifts: int | Sequence[int], dims: int | Sequence[int] | None = None) -> Tensor:
        """Shift elements along ``dims`` by ``shifts``, wrapping around; without dims, over the flattened tensor."""
        me: Tensor = self  # type: ignore[assignment]
        shift_list = [shifts] if isinstance(shifts, int) else list(shifts)
        if dims is None:
            if len(shift_list) != 1:
                raise ValueError(f"roll: {len(shift_list)} shifts given without dims; give one shift or the dims")
            return me.reshape(-1).roll(shift_list[0], 0).reshape(me.shape)
        dim_list = [dims] if isinstance(dims, int) else list(dims)
        if len(shift_list) != len(dim_list):
            raise ValueError(f"roll: shifts {tuple(shift_list)} and dims {tuple(dim_list)} differ in length")
        from .tensor_reduce import cat

        out = me
        for shift, dim in zip(shift_list, dim_list):
            d = self._axis(dim)
            n = me.shape[d]
            k = shift % n if n else 0
            if k:
                out = cat([out.shrink([None] * d + [(n - k, n)]), out.shrink([None] * d + [(0, n - k)])], d)
        return out

    def unfold(self, dimension: int, size: int, step: int) -> Tensor:
        """Sliding windows (torch's ``Tensor.unfold``): dim ``dimension`` becomes the window count
        ``(n - size) // step + 1`` and a new last dim holds each window. A view, so cost is that of the output.

            >>> Tensor([1, 2, 3, 4, 5]).unfold(0, 2, 2).tolist()
            [[1, 2], [3, 4]]
        """
        me: Tensor = self  # type: ignore[assignment]
        if me.ndim == 0:  # torch: the one element is one window, without a window dim
            self._axis(dimension)
            if size not in (0, 1) or step <= 0:
                raise ValueError(f"unfold: a 0-d tensor takes size 0 or 1 and a positive step, not {size} and {step}")
            return me.reshape(1).shrink([(0, size)])
        d = self._axis(dimension)
        n = me.shape[d]
        if not 0 <= size <= n:
            raise ValueError(f"unfold: size {size} must be in [0, {n}] (the size of dim {d}) for shape {me.shape}")
        if step <= 0:
            raise ValueError(f"unfold: step must be positive, got {step}")
        rest = [i for i in range(me.ndim) if i != d]
        batch = tuple(me.shape[i] for i in rest)
        last = me.permute(rest + [d])  # (..., n)
        # size copies of each row, re-read with a stride of n + 1: window[j][i] = row[i + j]
        copies = last.unsqueeze(-2).expand(batch + (size, n)).reshape(batch + (size * n,))
        skewed = copies._view(Op.PAD, ((0, 0),) * len(batch) + ((0, size),)) if size else copies
        skewed = skewed.reshape(batch + (size, n + 1))
        windows = skewed.shrink([None] * len(batch) + [None, (0, n - size + 1)])  # (..., size, starts)
        windows = slice_dim(windows, len(batch) + 1, slice(None, None, step)).transpose(-1, -2)  # (..., count, size)
        order = list(range(len(batch)))
        order.insert(d, len(batch))
        return windows.permute(order + [len(batch) + 1])

    # ---- diagonals and triangles ----

    def diagonal(self, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Tensor:
        """The diagonal ``x[..., i, i + offset]`` of dims ``dim1`` and ``dim2``, as a new last dim (a view)."""
        me: Tensor = self  # type: ignore[assignment]
        a, b = self._axis(dim1), self._axis(dim2)
        if a == b:
            raise ValueError(f"diagonal: dim1 and dim2 must differ, both are {a}")
        rest = [i for i in range(me.ndim) if i not in (a, b)]
        batch = tuple(me.shape[i] for i in rest)
        square = me.permute(rest + [a, b])  # (..., rows, cols)
        rows, cols = square.shape[-2:]
        lo_r, lo_c = min(max(-offset, 0), rows), min(max(offset, 0), cols)
        length = max(0, min(rows - lo_r, cols - lo_c))
        square = square.shrink([None] * len(batch) + [(lo_r, lo_r + length), (lo_c, lo_c + length)])
        # row-major, the diagonal is every (length + 1)-th element: pad to length * (length + 1) and fold
        flat = square.reshape(batch + (length * length,))
        flat = flat._view(Op.PAD, ((0, 0),) * len(batch) + ((0, length),)) if length else flat  # a view, as torch's
        return (
            flat.reshape(batch + (length, length + 1))
            .shrink([None] * len(batch) + [None, (0, 1)])
            .reshape(batch + (length,))
        )

    def diag(self, diagonal: int = 0) -> Tensor:
        """A 1-d tensor -> the square matrix with it on diagonal ``diagonal``; a 2-d one -> that diagonal."""
        me: Tensor = self  # type: ignore[assignment]
        if me.ndim == 2:
            return self.diagonal(diagonal)
        if me.ndim != 1:
            raise ValueError(f"diag: expected a 1-d or 2-d tensor, got shape {me.shape}")
        n = me.shape[0]
        eye = type(me).eye(n, dtype=_bool(), device=me.device)
        square = eye._select(me.reshape(1, n), me._const_like(0))  # (n, n), x[j] where i == j
        k = abs(diagonal)
        return square.pad(((0, k), (k, 0)) if diagonal >= 0 else ((k, 0), (0, k)))

    def tril(self, diagonal: int = 0) -> Tensor:
        """Zero the elements above diagonal ``diagonal`` of the last two dims."""
        return _triangle(self, diagonal, lower=True)  # type: ignore[arg-type]

    def triu(self, diagonal: int = 0) -> Tensor:
        """Zero the elements below diagonal ``diagonal`` of the last two dims."""
        return _triangle(self, diagonal, lower=False)  # type: ignore[arg-type]


def _bool():
    from .ir.dtypes import bool_

    return bool_


def _pad_pairs(pad: Sequence[Any], ndim: int) -> list[tuple[int, int]]:
    pad = list(pad)
    if pad and all(type(p) is tuple or p is None or isinstance(p, Sequence) for p in pad):  # (tuple: the usual)
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


def slice_dim(t: Tensor, dim: int, s: slice) -> Tensor:
    """``t[..., s, ...]`` with ``s`` on ``dim``; the dim stays (maybe with size 0)."""
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
    widths = ((0, 0),) * dim + ((0, count * step - (last - start)),) + ((0, 0),) * (t.ndim - dim - 1)
    padded = cropped._view(Op.PAD, widths) if widths[dim][1] else cropped  # a view, as torch's strided slice
    folded = padded.reshape(t.shape[:dim] + (count, step) + t.shape[dim + 1 :])
    return folded.shrink([None] * (dim + 1) + [(0, 1)]).reshape(t.shape[:dim] + (count,) + t.shape[dim + 1 :])


def unslice_dim(t: Tensor, dim: int, s: slice, n: int) -> Tensor:
    """The inverse of ``slice_dim``: ``t`` (the slice) placed where ``s`` takes it from a dim of size ``n``, zero
    (False) elsewhere. Views only: a pad, a fold of the step into a new dim, a pad again."""
    start, stop, step = s.indices(n)
    flipped = step < 0
    if flipped:  # slice_dim flips first, then steps forward
        start, step = n - 1 - start, -step
    count = t.shape[dim]
    before, after = [None] * dim, [None] * (t.ndim - dim - 1)
    if step > 1 and count:
        spread = t.unsqueeze(dim + 1).pad(before + [None, (0, step - 1)] + after)  # (.., count, step, ..)
        t = spread.reshape(t.shape[:dim] + (count * step,) + t.shape[dim + 1 :])
    width = t.shape[dim]
    out = t.pad(before + [(start if count else 0, n - width - (start if count else 0))] + after)  # may crop the tail
    return out.flip(dim) if flipped else out


def _triangle(t: Tensor, diagonal: int, lower: bool) -> Tensor:
    name = "tril" if lower else "triu"
    if t.ndim < 2:
        raise ValueError(f"{name}: expected a tensor of at least 2 dims, got shape {t.shape}")
    rows, cols = t.shape[-2:]
    from .ir import dtypes
    from .tensor_create import arange_node

    r = t._from_node(arange_node(rows, dtypes.int64, t.device)).reshape(rows, 1)
    c = t._from_node(arange_node(cols, dtypes.int64, t.device)).reshape(1, cols)
    keep = (c - r <= diagonal) if lower else (c - r >= diagonal)
    return keep._select(t, t._const_like(0))
