"""Indexing: ``x[...]`` and ``x[...] = v`` with torch's rules, masks, nonzero, one-hot encodings.

Ints, slices, None and ... are views. Advanced indices (lists, int tensors, bool masks) are one-hot
reductions over the dims they index (see ``tensor_gather``): reading ``m`` elements out of indexed dims of
total size ``n`` costs O(m * n); writing them too.

Indices given as Python ints and lists are checked, and so are index tensors whose values are in host memory
(see ``tensor_gather``); a lazy index tensor is not: an index outside [-n, n) reads 0 and writes nothing, where
torch raises. Ops whose output shape depends on the data (bool masks,
``nonzero``, ``masked_select``, ``one_hot`` without ``num_classes``, ``repeat_interleave`` with a tensor of
repeats) realize that data; their docstrings say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .helpers import prod
from .ir import dtypes
from .ir.node import Node
from .tensor_gather import arange_like, check_bounds, inverse_permutation, known_range, scatter_last, take_along
from .tensor_math import broadcast_shape
from .tensor_movement import slice_dim, unslice_dim

if TYPE_CHECKING:
    from .tensor import Tensor


@dataclass
class _Adv:
    """An advanced (tensor) index over one dim; ``checked`` when its values are known to be in range."""

    index: Tensor
    checked: bool = False
    values: list[int] | None = None  # the values, when they came from a Python list


def _is_tensor(x: Any) -> bool:
    return isinstance(x, IndexMixin)


def _linear_index(items: list[_Adv], sizes: list[int]) -> Tensor:
    """One int64 index into the flattened advanced dims (row-major); negatives wrap, out of range gives -1."""
    try:
        shape = broadcast_shape(*[it.index.shape for it in items])
    except ValueError:
        shapes = ", ".join(str(list(it.index.shape)) for it in items)
        raise IndexError(
            f"shape mismatch: indexing tensors could not be broadcast together with shapes {shapes}"
        ) from None
    lin: Tensor | None = None
    valid: Tensor | None = None
    for it, n in zip(items, sizes):
        idx = it.index.cast(dtypes.int64)._broadcast_to(shape)
        wrapped = (idx < 0)._select(idx + n, idx)
        lin = wrapped if lin is None else lin * n + wrapped
        if not it.checked:
            ok = (wrapped < 0).logical_not().logical_and(wrapped < n)
            valid = ok if valid is None else valid.logical_and(ok)
    assert lin is not None
    return lin if valid is None else valid._select(lin, -1)


def _as_index(me: Tensor, item: Any) -> Any:
    """An index item as None, Ellipsis, slice, int, bool, or a tensor (lists and arrays become int64 tensors)."""
    if item is None or item is Ellipsis or isinstance(item, slice | bool | int):
        return item
    if _is_tensor(item):
        if item.dtype.is_float:
            raise IndexError(f"tensors used as indices must be long, int, byte or bool tensors, not {item.dtype.name}")
        return item
    if isinstance(item, list | tuple) or type(item).__module__ == "numpy":
        if hasattr(item, "ndim") and item.ndim == 0 and hasattr(item, "__index__"):
            return int(item)  # a numpy integer scalar
        values = _flat(item)
        if any(not isinstance(v, bool | int) and not hasattr(v, "__index__") for v in values):
            raise IndexError(f"indices given as a list must be ints or bools, got {item!r}")
        t = type(me)(item, device=me.device)
        if t.dtype == dtypes.bool_:
            return t
        return _Adv(t.cast(dtypes.int64), values=[int(v) for v in values])
    if hasattr(item, "__index__"):
        return item.__index__()
    raise TypeError(
        f"index of type {type(item).__name__} is not supported; use ints, slices, None, ..., lists or tensors"
    )


def _flat(x: Any) -> list[Any]:
    if isinstance(x, list | tuple):
        return [v for e in x for v in _flat(e)]
    if type(x).__module__ == "numpy" and getattr(x, "ndim", 0) > 0:
        return _flat(x.tolist())
    return [x]


def _is_mask(item: Any) -> bool:
    return _is_tensor(item) and item.dtype in (dtypes.bool_, dtypes.uint8)  # uint8: torch's old masks


def _normalize(me: Tensor, index: Any) -> tuple[Tensor, list[Any], list[int | None]]:
    """``me`` with a size-1 dim inserted for each None or bool, and one item per dim of that tensor: an int, a
    slice or an ``_Adv``; bool masks are realized and become one ``_Adv`` per dim they cover. Also, per dim,
    the dim of ``me`` it is (None for inserted dims), for error messages."""
    raw = [_as_index(me, it) for it in (index if isinstance(index, tuple) else (index,))]
    consumes_none = (type(None), type(Ellipsis), bool)
    used = sum(it.ndim if _is_mask(it) else 1 for it in raw if not isinstance(it, consumes_none))
    if used > me.ndim:
        raise IndexError(f"too many indices for tensor of dimension {me.ndim}")
    ellipses = [i for i, it in enumerate(raw) if it is Ellipsis]
    if len(ellipses) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    fill: list[Any] = [slice(None)] * (me.ndim - used)
    if ellipses:
        raw[ellipses[0] : ellipses[0] + 1] = fill
    else:
        raw += fill
    shape: list[int] = []
    items: list[Any] = []
    origin: list[int | None] = []
    dim = 0
    for it in raw:
        if _is_mask(it) and it.ndim == 0:
            it = bool(it.item())  # realizes: a 0-d mask keeps everything or nothing
        if it is None or isinstance(it, bool):
            shape.append(1)
            origin.append(None)
            items.append(slice(None) if it is None else _Adv(_int_tensor(me, [0] if it else []), checked=True))
        elif _is_mask(it):
            want = me.shape[dim : dim + it.ndim]
            if it.shape != want:
                raise IndexError(
                    f"the shape of the mask {list(it.shape)} does not match the shape {list(want)} of the indexed "
                    f"tensor at dims {dim}..{dim + it.ndim - 1} (tensor shape {list(me.shape)})"
                )
            for coord in it.nonzero(as_tuple=True):  # realizes the mask
                shape.append(me.shape[dim])
                origin.append(dim)
                items.append(_Adv(coord, checked=True))
                dim += 1
        else:
            n = me.shape[dim]
            if isinstance(it, _Adv) and it.values is not None:  # a Python list: check it now, as torch does
                for v in it.values:
                    if not -n <= v < n:
                        raise IndexError(f"index {v} is out of bounds for dimension {dim} with size {n}")
                it.checked = True
            if _is_tensor(it):
                it = _Adv(it, checked=check_bounds(it, n, dim, "", negative=True))
            shape.append(n)
            origin.append(dim)
            items.append(it)
            dim += 1
    advanced = [d for d, it in enumerate(items) if isinstance(it, _Adv)]
    if len(advanced) == 1:  # a lone list in arithmetic progression reads like a slice: make it a view
        d = advanced[0]
        items[d] = _as_slice(items[d], shape[d]) or items[d]
    return me.reshape(shape), items, origin


def _advanced(index: Any) -> bool:
    """Whether an index has an advanced part: a list, or an index tensor or array of one or more dims."""
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(it, list) or getattr(it, "ndim", 0) > 0 for it in items)


def _as_slice(it: _Adv, n: int) -> slice | None:
    """The slice that picks the same elements as a 1-d list index, if there is one."""
    if it.values is None or it.index.ndim != 1 or not it.values:
        return None
    vals = [v % n for v in it.values]
    step = vals[1] - vals[0] if len(vals) > 1 else 1
    if step == 0 or any(b - a != step for a, b in zip(vals, vals[1:])):
        return None
    stop = vals[-1] + step
    return slice(vals[0], stop if stop >= 0 else None, step)


def _int_tensor(me: Tensor, values: list[int]) -> Tensor:
    return type(me)(values, device=me.device, dtype=dtypes.int64)


def _basic(xu: Tensor, items: list[Any], origin: list[int | None]) -> tuple[Tensor, list[Any]]:
    """Apply the ints and slices (ints drop their dim); returns the view and the items of the dims left."""
    out = xu
    keep = []
    for d, it in enumerate(items):
        if isinstance(it, int):
            n = xu.shape[d]
            if not -n <= it < n:
                raise IndexError(f"index {it} is out of bounds for dimension {origin[d]} with size {n}")
            out = out.shrink([None] * d + [(it % n, it % n + 1)])
        else:
            if isinstance(it, slice):
                out = slice_dim(out, d, it)
            keep.append(d)
    return out.reshape(tuple(out.shape[d] for d in keep)), [items[d] for d in keep]


def _advanced_layout(y: Tensor, items: list[Any]) -> tuple[list[int], list[int], int]:
    """(advanced dims, other dims, where the advanced result dims go): in place of the advanced indices when
    they are adjacent, first otherwise (numpy's and torch's rule)."""
    adv = [d for d, it in enumerate(items) if isinstance(it, _Adv)]
    others = [d for d in range(y.ndim) if d not in adv]
    adjacent = adv == list(range(adv[0], adv[-1] + 1))
    return adv, others, adv[0] if adjacent else 0


def _read(xu: Tensor, items: list[Any], origin: list[int | None]) -> Tensor:
    y, rest = _basic(xu, items, origin)
    if not any(isinstance(it, _Adv) for it in rest):
        return y
    adv, others, pos = _advanced_layout(y, rest)
    sizes = [y.shape[d] for d in adv]
    lin = _linear_index([rest[d] for d in adv], sizes)
    order = others[:pos] + adv + others[pos:]
    other_shape = [y.shape[d] for d in others]
    flat = y.permute(order).reshape(tuple(other_shape[:pos]) + (prod(sizes),) + tuple(other_shape[pos:]))
    return take_along(flat, pos, lin)


def _value(me: Tensor, value: Any, shape: tuple[int, ...]) -> Tensor:
    """The value to write, cast to me's dtype and broadcast to the shape of the indexed result."""
    v = _value_tensor(me, value)
    while v.ndim > len(shape) and v.shape[0] == 1:  # torch drops leading 1s of the value
        v = v.reshape(v.shape[1:])
    try:
        ok = broadcast_shape(v.shape, shape) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"shape mismatch: value tensor of shape {list(v.shape)} cannot be broadcast to indexing result of "
            f"shape {list(shape)}"
        )
    return v.cast(me.dtype)._broadcast_to(tuple(shape))


def _value_tensor(me: Tensor, value: Any) -> Tensor:
    if _is_tensor(value):
        return value
    if isinstance(value, bool | int | float):
        return me._const_like(value, shape=())
    return type(me)(value, device=me.device, dtype=me.dtype)


def _write(xu: Tensor, items: list[Any], origin: list[int | None], value: Any, accumulate: bool) -> Tensor:
    """xu with ``value`` written (or added) at ``items``."""
    y, rest = _basic(xu, items, origin)
    if not any(isinstance(it, _Adv) for it in rest):
        v = _value(xu, value, y.shape)
        new_y = y + v if accumulate else v
    else:
        adv, others, pos = _advanced_layout(y, rest)
        sizes = [y.shape[d] for d in adv]
        lin = _linear_index([rest[d] for d in adv], sizes)
        other_shape = tuple(y.shape[d] for d in others)
        result_shape = other_shape[:pos] + lin.shape + other_shape[pos:]
        v = _value(xu, value, result_shape)
        b = lin.ndim
        v = v.permute(list(range(pos, pos + b)) + list(range(pos)) + list(range(pos + b, v.ndim)))  # (B, others)
        m = prod(lin.shape)
        # rows of the flattened advanced dims, scattered along the last dim: y2 (others, N), v2 (others, M)
        y2 = y.permute(others + adv).reshape(other_shape + (prod(sizes),))
        v2 = v.reshape((m,) + other_shape).permute(list(range(1, len(others) + 1)) + [0])
        new2 = scatter_last(y2, lin.reshape(m), v2, "sum" if accumulate else None, include_self=True)
        new_y = new2.reshape(other_shape + tuple(sizes)).permute(inverse_permutation(others + adv))
    # put the written view back where _basic took it from
    sizes_left = iter(new_y.shape)
    full = new_y.reshape(tuple(1 if isinstance(it, int) else next(sizes_left) for it in items))
    inside = full._const_like(True, dtypes.bool_)
    changed = False
    for d, it in enumerate(items):
        n = xu.shape[d]
        if isinstance(it, int):
            full, inside = (
                t.pad([None] * d + [(it % n, n - 1 - it % n)] + [None] * (t.ndim - d - 1)) for t in (full, inside)
            )
            changed = changed or n > 1
        elif isinstance(it, slice) and it.indices(n) != (0, n, 1):
            full, inside = (unslice_dim(t, d, it, n) for t in (full, inside))
            changed = True
    return inside._select(full, xu) if changed else full


def _mask_write(me: Tensor, index: Any, value: Any, accumulate: bool) -> Tensor | None:
    """``x[mask] = v`` without realizing the mask, when the mask is the only index (beside full slices and
    ...) and v is the same for every selected element: where(mask, v, x). None when it does not apply."""
    raw = list(index) if isinstance(index, tuple) else [index]
    masks = [i for i, it in enumerate(raw) if _is_tensor(it) and it.dtype == dtypes.bool_ and it.ndim > 0]
    others = [it for i, it in enumerate(raw) if i != (masks[0] if masks else -1)]
    if len(masks) != 1 or not all(it is Ellipsis or (isinstance(it, slice) and it == slice(None)) for it in others):
        return None
    mask = raw[masks[0]]
    k = mask.ndim
    used = len(others) - sum(it is Ellipsis for it in others) + k
    if used > me.ndim:
        return None
    ellipsis_before = any(it is Ellipsis for it in raw[: masks[0]])
    d = masks[0] - ellipsis_before + (me.ndim - used if ellipsis_before else 0)
    if mask.shape != me.shape[d : d + k]:
        return None
    v = _value_tensor(me, value)
    n_out = me.ndim - k + 1  # rank of the indexed result: me.shape[:d] + (count,) + me.shape[d + k:]
    while v.ndim > n_out and v.shape[0] == 1:
        v = v.reshape(v.shape[1:])
    full = (1,) * (n_out - v.ndim) + v.shape
    if v.ndim > n_out or full[d] != 1:
        return None
    v = v.cast(me.dtype).reshape(full[:d] + (1,) * k + full[d + 1 :])
    try:
        if broadcast_shape(v.shape, me.shape) != me.shape:
            return None
    except ValueError:
        return None
    m = mask.reshape((1,) * d + mask.shape + (1,) * (me.ndim - d - k))
    return m._select(me + v if accumulate else v, me)


class IndexMixin:
    __slots__ = ()
    node: Node

    # ---- x[...] ----

    def __getitem__(self, index: Any) -> Tensor:
        """torch's indexing: ints, slices (any step, also negative), None, ..., and advanced indices (lists of
        ints, int tensors of any shape, bool masks). The dims of several advanced indices broadcast together
        and go in place of the indexed dims when those are adjacent, first otherwise.

        Basic indexing is a view. An advanced index costs O(numel(out) * n), n the product of the sizes of the
        dims it indexes (a one-hot reduction, see the module docstring); a bool mask is realized to find the
        positions it keeps. Ints, lists and index tensors in host memory are bounds-checked; a lazy index tensor is
        not (out of range reads 0).
        """
        me: Tensor = self  # type: ignore[assignment]
        out = _read(*_normalize(me, index))
        if out._base is not None and _advanced(index):
            out._base = None  # a list read as a slice (x[[0, 2]] as x[0:3:2]) is still a copy, as torch's
        return out

    def __setitem__(self, index: Any, value: Any) -> None:
        """``x[index] = value``: value (a scalar or a tensor broadcast to ``x[index]``) is cast to x's dtype
        and written with ``assign``. With duplicate advanced indices the last value wins (torch leaves it
        unspecified). Costs as for reading, with n the size of the indexed dims; ``x[mask] = scalar`` does
        not realize the mask. ``x[i]`` with basic indices is a view, as in torch: ``x[i] += 1`` and ``v = x[i];
        v += 1`` both write x (``tensor_views.py``). When the value requires grad, the write is recorded in the
        graph instead (torch's semantics).
        """
        me: Tensor = self  # type: ignore[assignment]
        block = _basic_block(me, index)
        if block is not None and _writes_in_place(me, value):
            starts, sizes, kept = block
            v = _value(me, value, tuple(sz for sz, k in zip(sizes, kept) if k))
            me.assign_at(starts, v.reshape(sizes))  # only the block is written: O(block), not O(x)
            return
        _store(me, me.index_put(index, value))

    def index_put(self, indices: Any, values: Any, accumulate: bool = False) -> Tensor:
        """A copy of x with ``values`` written at ``indices`` (a tuple, as for ``x[indices]``); with
        ``accumulate`` they are added instead, duplicates adding up (scatter-add)."""
        me: Tensor = self  # type: ignore[assignment]
        fast = _mask_write(me, indices, values, accumulate)
        if fast is not None:
            return fast
        xu, items, origin = _normalize(me, indices)
        return _write(xu, items, origin, values, accumulate).reshape(me.shape)

    def index_put_(self, indices: Any, values: Any, accumulate: bool = False) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        _store(me, me.index_put(indices, values, accumulate))
        return me

    def masked_fill(self, mask: Tensor, value: Any) -> Tensor:
        """``value`` where the bool ``mask`` (broadcast to x's shape) is set, x elsewhere."""
        me: Tensor = self  # type: ignore[assignment]
        mask = _check_mask(me, mask, "masked_fill")
        if _is_tensor(value):
            if value.ndim != 0:
                raise ValueError(f"masked_fill: value must be a scalar or a 0-d tensor, got shape {value.shape}")
            v = value.cast(me.dtype)
        else:
            v = me._const_like(value, shape=())
        return mask._select(v, me)

    def masked_select(self, mask: Tensor) -> Tensor:
        """A 1-d tensor of the elements where ``mask`` is set (x and mask broadcast together). Realizes the
        mask (the output's size depends on it); O(count * numel)."""
        me: Tensor = self  # type: ignore[assignment]
        if not _is_tensor(mask) or mask.dtype != dtypes.bool_:
            raise TypeError(f"masked_select: the mask must be a bool tensor, got {_describe(mask)}")
        shape = broadcast_shape(me.shape, mask.shape)
        (positions,) = mask._broadcast_to(shape).reshape(-1).nonzero(as_tuple=True)
        return take_along(me._broadcast_to(shape).reshape(-1), 0, positions)

    def nonzero(self, *, as_tuple: bool = False) -> Any:
        """The indices of the non-zero elements, as a (count, ndim) int64 tensor in row-major order, or with
        ``as_tuple`` one 1-d tensor per dim. Realizes x and reads it back (the output's size depends on it)."""
        me: Tensor = self  # type: ignore[assignment]
        flags = me if me.dtype == dtypes.bool_ else me != 0
        raw = flags._raw()
        flat = [i for i, b in enumerate(raw) if b]
        coords = _unravel(flat, me.shape or (1,))
        if as_tuple:
            return tuple(_int_tensor(me, c) for c in coords)
        rows = [v for i in range(len(flat)) for v in (c[i] for c in coords)] if me.ndim else []
        return _int_tensor(me, rows).reshape(len(flat), me.ndim)

    def masked_scatter(self, mask: Tensor, source: Tensor) -> Tensor:
        """The elements of ``source``, in order, where ``mask`` is set. Realizes the mask."""
        me: Tensor = self  # type: ignore[assignment]
        mask = _check_mask(me, mask, "masked_scatter")
        (positions,) = mask._broadcast_to(me.shape).reshape(-1).nonzero(as_tuple=True)
        if positions.numel() > source.numel():
            raise ValueError(
                f"masked_scatter: the mask selects {positions.numel()} elements, source has {source.numel()}"
            )
        src = source.reshape(-1).shrink([(0, positions.numel())])
        flat = scatter_last(me.reshape(-1), positions, src, None, True)
        return flat.reshape(me.shape)

    # ---- encodings and repeats ----

    def one_hot(self, num_classes: int = -1) -> Tensor:
        """int64 tensor of shape x.shape + (num_classes,) with a 1 at each value of x. Without num_classes it
        is max(x) + 1, which realizes x. Values outside [0, num_classes) raise as in torch when x is in host
        memory (see ``tensor_gather``); a lazy x gives all-zero rows for them instead."""
        me: Tensor = self  # type: ignore[assignment]
        if not me.dtype.is_int:
            raise TypeError(f"one_hot: expected an integer tensor, got {me.dtype.name}")
        if num_classes < 0:
            if me.numel() == 0:
                raise ValueError("one_hot: cannot infer the number of classes from an empty tensor; pass num_classes")
            num_classes = int(me.max().item()) + 1
        known = known_range(me)
        if known is not None and known[0] < 0:
            raise RuntimeError(f"one_hot: class values must be non-negative, got {known[0]}")
        if known is not None and known[1] >= num_classes:
            raise RuntimeError(f"one_hot: class values must be below num_classes ({num_classes}), got {known[1]}")
        return (me.cast(dtypes.int64).unsqueeze(-1) == arange_like(me, num_classes)).cast(dtypes.int64)

    def repeat_interleave(self, repeats: Any, dim: int | None = None, *, output_size: int | None = None) -> Tensor:
        """Repeat each element ``repeats`` times along ``dim`` (flattened without dim). An int is a view; a
        tensor or list of repeats (one per element) is realized to size the output, then gathered."""
        me: Tensor = self  # type: ignore[assignment]
        x = me.reshape(-1) if dim is None else me
        d = 0 if dim is None else x._axis(dim)
        n = x.shape[d]
        if isinstance(repeats, int):
            out_shape = x.shape[:d] + (n * repeats,) + x.shape[d + 1 :]
            return x.unsqueeze(d + 1).expand(x.shape[: d + 1] + (repeats,) + x.shape[d + 1 :]).reshape(out_shape)
        counts = _flat(repeats.tolist() if _is_tensor(repeats) else repeats)
        if len(counts) == 1:
            return self.repeat_interleave(int(counts[0]), dim)
        if len(counts) != n or any(c < 0 for c in counts):
            raise ValueError(f"repeat_interleave: repeats {counts} must be {n} non-negative counts for dim {d}")
        positions = [i for i, c in enumerate(counts) for _ in range(c)]
        return take_along(x, d, _int_tensor(me, positions))


def _unravel(flat: list[int], shape: tuple[int, ...]) -> list[list[int]]:
    coords: list[list[int]] = [[] for _ in shape]
    for p in flat:
        for d in range(len(shape) - 1, -1, -1):
            p, r = divmod(p, shape[d])
            coords[d].append(r)
    return coords


def _describe(x: Any) -> str:
    return f"a {x.dtype.name} tensor" if _is_tensor(x) else type(x).__name__


def _check_mask(me: Tensor, mask: Any, name: str) -> Tensor:
    if not _is_tensor(mask) or mask.dtype != dtypes.bool_:
        raise TypeError(f"{name}: the mask must be a bool tensor, got {_describe(mask)}")
    try:
        ok = broadcast_shape(mask.shape, me.shape) == me.shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{name}: a mask of shape {mask.shape} does not broadcast to the tensor's shape {me.shape}")
    return mask


def _writes_in_place(me: Tensor, value: Any) -> bool:
    """Whether ``me[...] = value`` writes memory (rather than making a new version in the graph for autograd,
    or raising on a leaf that requires grad): the in-place rule of ``assign``."""
    from . import autograd

    if not autograd.is_grad_enabled():
        return True
    return not me.requires_grad and not (_is_tensor(value) and value.requires_grad)


def _basic_block(me: Tensor, index: Any) -> tuple[list[Any], tuple[int, ...], tuple[bool, ...]] | None:
    """For an index of ints, 0-d integer tensors (known at run time only, such as a Variable), unit-step
    slices and ``...``: the block it names as (start per dim, size per dim, whether the dim is kept in the
    result), or None for anything else (steps, None, lists, tensor and mask indices)."""
    items = list(index) if isinstance(index, tuple) else [index]
    ellipses = [i for i, it in enumerate(items) if it is Ellipsis]  # `is`: `in` would compare tensors with ==
    if len(ellipses) > 1:
        return None
    if ellipses:
        at = ellipses[0]
        items[at : at + 1] = [slice(None)] * (me.ndim - (len(items) - 1))
    if len(items) > me.ndim:
        return None
    items += [slice(None)] * (me.ndim - len(items))
    starts: list[Any] = []
    sizes: list[int] = []
    kept: list[bool] = []
    for d, (it, n) in enumerate(zip(items, me.shape)):
        if isinstance(it, bool) or it is None:
            return None
        if isinstance(it, int):
            if not -n <= it < n:
                raise IndexError(f"index {it} is out of bounds for dimension {d} with size {n}")
            starts.append(it % n)
            sizes.append(1)
            kept.append(False)
        elif isinstance(it, slice):
            lo, hi, step = it.indices(n)
            if step != 1:
                return None
            starts.append(lo)
            sizes.append(max(hi - lo, 0))
            kept.append(True)
        elif _is_tensor(it) and it.ndim == 0 and it.dtype.is_int and it.dtype != dtypes.bool_:
            starts.append(it)
            sizes.append(1)
            kept.append(False)
        else:
            return None
    if 0 in sizes:
        return None
    return starts, tuple(sizes), tuple(kept)


def _store(me: Tensor, new: Tensor) -> None:
    """Make ``new`` x's value: written in place, or a new version of x in the graph when either needs grad."""
    me._inplace(new)
