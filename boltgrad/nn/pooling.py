"""Pooling and resampling: max and average pooling over window views (one fused reduce), adaptive pooling,
and ``interpolate``.

Adaptive pooling with uneven windows and interpolation are separable per spatial dim: each dim is mixed by a
small constant (out, in) matrix (averaging or interpolation weights), applied as a broadcast multiply and a sum
over ``in``. That costs ``out*in`` multiply-adds per row instead of a gather's few, which is fine at the sizes
these are used at; integer-factor nearest resizing and even pooling are pure views instead.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

from ..tensor import Tensor
from .conv import IntOrTuple, check_rank, flat_padding, ntuple, sliding_windows


def _pool_geometry(x: Tensor, nd: int, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool,
                   name: str) -> tuple[tuple[int, ...], ...]:  # fmt: skip
    """(kernel, stride, padding, dilation, out sizes, extra right padding for ceil_mode) per spatial dim."""
    kernel = ntuple(kernel_size, nd, f"{name}: kernel_size")
    strides = kernel if stride is None or (not isinstance(stride, int) and len(stride) == 0) else stride
    strides = ntuple(strides, nd, f"{name}: stride")
    pads, dil = ntuple(padding, nd, f"{name}: padding"), ntuple(dilation, nd, f"{name}: dilation")
    if any(v <= 0 for v in kernel + strides + dil):
        raise ValueError(f"{name}: kernel_size {kernel}, stride {strides} and dilation {dil} must be positive")
    for p, k, d in zip(pads, kernel, dil):
        if p < 0 or p > (d * (k - 1) + 1) // 2:
            raise RuntimeError(
                f"{name}: pad should be at most half of the effective kernel size, but got padding {pads}, "
                f"kernel_size {kernel} and dilation {dil}"
            )
    outs, extras = [], []
    for i, k, s, p, d in zip(x.shape[-nd:], kernel, strides, pads, dil):
        span = i + 2 * p - d * (k - 1) - 1
        o = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (o - 1) * s >= i + p:  # the last window must start inside the input or the left pad
            o -= 1
        outs.append(o)
        extras.append(max(0, (o - 1) * s + d * (k - 1) + 1 - (i + 2 * p)))
    if any(o <= 0 for o in outs):
        raise RuntimeError(f"{name}: input of shape {x.shape} gives an output size {tuple(outs)} that is too small")
    return kernel, strides, pads, dil, tuple(outs), tuple(extras)


def _windows(x: Tensor, kernel, strides, pads, dil, outs, extras, value: Any) -> Tensor:
    """The pooling windows (..., *out, *kernel) of x padded with ``value``, cut to exactly ``outs``."""
    padded = x.pad(flat_padding([(p, p + e) for p, e in zip(pads, extras)]), value=value)
    win = sliding_windows(padded, kernel, strides, dil)
    nd = len(kernel)
    lead = win.ndim - 2 * nd
    return win.shrink([None] * lead + [(0, o) for o in outs])


def _tiles(x: Tensor, kernel, strides, pads, dil, outs, extras) -> Tensor | None:
    """Windows that tile the input (stride = kernel, no padding or dilation) as a view (..., o1, k1, o2, k2, ...)
    made by one shrink and one reshape, where the general window view takes a pad and several movement ops per
    dim (the 2x2 pooling of a CNN, forward and backward: 7.3-7.5 ms against 8.0-9.0 ms); None for other
    windows."""
    if strides != kernel or any(pads) or any(d != 1 for d in dil) or any(extras):
        return None
    nd = len(kernel)
    lead = x.ndim - nd
    x = x.shrink([None] * lead + [(0, o * k) for o, k in zip(outs, kernel)])
    return x.reshape(x.shape[:lead] + tuple(v for o, k in zip(outs, kernel) for v in (o, k)))


def _lowest(x: Tensor) -> Any:
    if x.dtype.is_float:
        return -math.inf
    return 0 if x.dtype.is_unsigned or x.dtype.name == "bool" else -(1 << (x.dtype.bits - 1))


def max_pool_nd(input: Tensor, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool,  # noqa: A002
                return_indices: bool, nd: int, name: str) -> Any:  # fmt: skip
    check_rank(input, nd, name)
    geometry = _pool_geometry(input, nd, kernel_size, stride, padding, dilation, ceil_mode, name)
    kernel, outs = geometry[0], geometry[4]
    tiles = None if return_indices else _tiles(input, *geometry)
    if tiles is not None:  # 2x2 pooling of a CNN
        return tiles.amax(tuple(range(tiles.ndim - 2 * nd + 1, tiles.ndim, 2)))
    win = _windows(input, *geometry, value=_lowest(input))
    axes = tuple(range(win.ndim - nd, win.ndim))
    values = win.amax(axes)
    if not return_indices:
        return values
    # the flat index (over the input's spatial dims) of each window's first maximum; padding gets index -1
    numel = math.prod(input.shape[-nd:])
    positions = Tensor.arange(numel, device=input.device).reshape(input.shape[-nd:])
    pos_win = _windows(positions, *geometry, value=-1)  # (*out, *kernel)
    flat_win = win.reshape(win.shape[: win.ndim - nd] + (-1,))
    first = flat_win.argmax(-1)  # (..., *out) position inside the window
    window_numel = math.prod(kernel)
    pick = first.unsqueeze(-1) == Tensor.arange(window_numel, device=input.device)
    indices = pos_win.reshape(tuple(outs) + (window_numel,)).where(pick, 0).sum(-1)
    return values, indices


def max_pool1d(input: Tensor, kernel_size: IntOrTuple, stride: IntOrTuple | None = None,  # noqa: A002
               padding: IntOrTuple = 0, dilation: IntOrTuple = 1, ceil_mode: bool = False,
               return_indices: bool = False) -> Any:  # fmt: skip
    """Max over windows of (N, C, L); ``return_indices`` also gives each maximum's position in L."""
    return max_pool_nd(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 1, "max_pool1d")


def max_pool2d(input: Tensor, kernel_size: IntOrTuple, stride: IntOrTuple | None = None,  # noqa: A002
               padding: IntOrTuple = 0, dilation: IntOrTuple = 1, ceil_mode: bool = False,
               return_indices: bool = False) -> Any:  # fmt: skip
    """Max over (kh, kw) windows of (N, C, H, W) (stride defaults to the kernel size; padding counts as -inf).

    With ``return_indices`` also the flat index ``h*W + w`` of each window's first maximum. The gradient is
    shared evenly between equal maxima of one window (torch gives it all to the first).
    """
    return max_pool_nd(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 2, "max_pool2d")


def max_pool3d(input: Tensor, kernel_size: IntOrTuple, stride: IntOrTuple | None = None,  # noqa: A002
               padding: IntOrTuple = 0, dilation: IntOrTuple = 1, ceil_mode: bool = False,
               return_indices: bool = False) -> Any:  # fmt: skip
    return max_pool_nd(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 3, "max_pool3d")


def _avg_divisors(sizes: Sequence[int], geometry: tuple, count_include_pad: bool) -> list[list[int]]:
    """For each spatial dim, the number of elements each output averages (torch's rule: padding counts when
    ``count_include_pad``, the overhang of ceil_mode never does)."""
    kernel, strides, pads, _, outs, _ = geometry
    per_dim = []
    for i, k, s, p, o in zip(sizes, kernel, strides, pads, outs):
        counts = []
        for j in range(o):
            start = j * s - p
            end = min(start + k, i + p)
            counts.append(end - start if count_include_pad else min(end, i) - max(start, 0))
        per_dim.append(counts)
    return per_dim


def avg_pool_nd(input: Tensor, kernel_size: Any, stride: Any, padding: Any, ceil_mode: bool,  # noqa: A002
                count_include_pad: bool, divisor_override: int | None, nd: int, name: str) -> Tensor:  # fmt: skip
    check_rank(input, nd, name)
    geometry = _pool_geometry(input, nd, kernel_size, stride, padding, 1, ceil_mode, name)
    win = _windows(input._floating(), *geometry, value=0)
    total = win.sum(tuple(range(win.ndim - nd, win.ndim)))
    if divisor_override is not None:
        if divisor_override == 0:
            raise RuntimeError(f"{name}: divisor_override must be non-zero")
        return total / divisor_override
    per_dim = _avg_divisors(input.shape[-nd:], geometry, count_include_pad)
    if all(len(set(counts)) == 1 for counts in per_dim):  # the usual case: one divisor for every output
        return total / math.prod(counts[0] for counts in per_dim)
    divisor: Tensor | None = None
    for j, counts in enumerate(per_dim):
        shape = [1] * nd
        shape[j] = len(counts)
        factor = Tensor(counts, device=input.device, dtype=total.dtype).reshape(shape)
        divisor = factor if divisor is None else divisor * factor
    assert divisor is not None
    return total / divisor


def avg_pool1d(input: Tensor, kernel_size: IntOrTuple, stride: IntOrTuple | None = None,  # noqa: A002
               padding: IntOrTuple = 0, ceil_mode: bool = False, count_include_pad: bool = True) -> Tensor:  # fmt: skip
    return avg_pool_nd(input, kernel_size, stride, padding, ceil_mode, count_include_pad, None, 1, "avg_pool1d")


def avg_pool2d(input: Tensor, kernel_size: IntOrTuple, stride: IntOrTuple | None = None,  # noqa: A002
               padding: IntOrTuple = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> Tensor:  # fmt: skip
    """Mean over (kh, kw) windows of (N, C, H, W); padding is zeros, counted in the divisor when
    ``count_include_pad`` (windows hanging over the edge in ``ceil_mode`` never count the overhang)."""
    return avg_pool_nd(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, 2,
                       "avg_pool2d")  # fmt: skip


def avg_pool3d(input: Tensor, kernel_size: IntOrTuple, stride: IntOrTuple | None = None,  # noqa: A002
               padding: IntOrTuple = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> Tensor:  # fmt: skip
    return avg_pool_nd(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, 3,
                       "avg_pool3d")  # fmt: skip


# ---- separable resampling: one (out, in) matrix per spatial dim ----


def _mix(x: Tensor, matrix: list[list[float]], dim: int) -> Tensor:
    """out[..., o, ...] = sum_i matrix[o][i] * x[..., i, ...] along ``dim``."""
    o, i = len(matrix), len(matrix[0])
    m = Tensor(matrix, device=x.device, dtype=x.dtype)
    m = m.reshape((1,) * dim + (o, i) + (1,) * (x.ndim - dim - 1))
    return (x.unsqueeze(dim) * m).sum(dim + 1).cast(x.dtype)  # (integer sums come back as int64)


def _adaptive_output_size(x: Tensor, output_size: Any, nd: int, name: str) -> tuple[int, ...]:
    sizes = (output_size,) * nd if isinstance(output_size, int) or output_size is None else tuple(output_size)
    if len(sizes) != nd:
        raise ValueError(f"{name}: output_size must be an int or a tuple of {nd}, got {output_size!r}")
    sizes = tuple(i if o is None else o for o, i in zip(sizes, x.shape[-nd:]))
    if any(not isinstance(o, int) or o <= 0 for o in sizes):
        raise ValueError(f"{name}: output_size must be positive, got {output_size!r}")
    return sizes


def _adaptive_bounds(i: int, o: int) -> list[tuple[int, int]]:
    """torch's adaptive windows: [floor(j*i/o), ceil((j+1)*i/o)) for output j."""
    return [((j * i) // o, -(-((j + 1) * i) // o)) for j in range(o)]


def adaptive_avg_pool_nd(input: Tensor, output_size: Any, nd: int, name: str) -> Tensor:  # noqa: A002
    check_rank(input, nd, name)
    outs = _adaptive_output_size(input, output_size, nd, name)
    x = input._floating()
    sizes = x.shape[-nd:]
    if all(i % o == 0 for i, o in zip(sizes, outs)):  # even windows: plain average pooling, a view and a mean
        kernel = tuple(i // o for i, o in zip(sizes, outs))
        win = sliding_windows(x, kernel, kernel, (1,) * nd)
        return win.mean(tuple(range(win.ndim - nd, win.ndim)))
    for j, (i, o) in enumerate(zip(sizes, outs)):
        if i == o:
            continue
        rows = [[1.0 / (hi - lo) if lo <= t < hi else 0.0 for t in range(i)] for lo, hi in _adaptive_bounds(i, o)]
        x = _mix(x, rows, x.ndim - nd + j)
    return x


def adaptive_avg_pool1d(input: Tensor, output_size: int | Sequence[int]) -> Tensor:  # noqa: A002
    return adaptive_avg_pool_nd(input, output_size, 1, "adaptive_avg_pool1d")


def adaptive_avg_pool2d(input: Tensor, output_size: Any) -> Tensor:  # noqa: A002
    """Average pooling to a fixed output size (windows ``[floor(j*i/o), ceil((j+1)*i/o))``, as in torch);
    an entry None keeps that input size. ``adaptive_avg_pool2d(x, 1)`` is the global average pool."""
    return adaptive_avg_pool_nd(input, output_size, 2, "adaptive_avg_pool2d")


def adaptive_avg_pool3d(input: Tensor, output_size: Any) -> Tensor:  # noqa: A002
    return adaptive_avg_pool_nd(input, output_size, 3, "adaptive_avg_pool3d")


def adaptive_max_pool_nd(input: Tensor, output_size: Any, return_indices: bool, nd: int, name: str) -> Tensor:  # noqa: A002
    check_rank(input, nd, name)
    if return_indices:
        raise NotImplementedError(f"{name}: return_indices is not supported yet")
    outs = _adaptive_output_size(input, output_size, nd, name)
    x = input
    low = _lowest(x)
    for j, o in enumerate(outs):  # the max over a box is the max over each dim in turn
        dim = x.ndim - nd + j
        i = x.shape[dim]
        if i == o:
            continue
        inside = [[lo <= t < hi for t in range(i)] for lo, hi in _adaptive_bounds(i, o)]
        mask = Tensor(inside, device=x.device).reshape((1,) * dim + (o, i) + (1,) * (x.ndim - dim - 1))
        x = x.unsqueeze(dim).where(mask, low).amax(dim + 1)
    return x


def adaptive_max_pool1d(input: Tensor, output_size: Any, return_indices: bool = False) -> Tensor:  # noqa: A002
    return adaptive_max_pool_nd(input, output_size, return_indices, 1, "adaptive_max_pool1d")


def adaptive_max_pool2d(input: Tensor, output_size: Any, return_indices: bool = False) -> Tensor:  # noqa: A002
    return adaptive_max_pool_nd(input, output_size, return_indices, 2, "adaptive_max_pool2d")


# ---- interpolate ----

_MODES_ND = {"linear": 1, "bilinear": 2, "trilinear": 3}


def _f32(v: float) -> float:
    """Round to float32, as torch's index arithmetic does for float inputs."""
    return struct.unpack("f", struct.pack("f", v))[0]


def _nearest_rows(i: int, o: int, scale: float, exact: bool) -> list[int]:
    if o == i:
        return list(range(o))
    if not exact and o == 2 * i:
        return [j // 2 for j in range(o)]
    s = _f32(scale)
    offset = 0.5 if exact else 0.0
    return [min(int(math.floor(_f32((j + offset) * s))), i - 1) for j in range(o)]


def _linear_rows(i: int, o: int, scale: float, align_corners: bool) -> list[list[float]]:
    rows = []
    for j in range(o):
        if align_corners:
            src = j * ((i - 1) / (o - 1) if o > 1 else 0.0)
        else:
            src = max((j + 0.5) * scale - 0.5, 0.0)
        lo = min(int(math.floor(src)), i - 1)
        hi = min(lo + 1, i - 1)
        frac = src - lo
        row = [0.0] * i
        row[lo] += 1.0 - frac
        row[hi] += frac
        rows.append(row)
    return rows


def _resize_nearest(x: Tensor, dim: int, o: int, scale: float, exact: bool) -> Tensor:
    i = x.shape[dim]
    src = _nearest_rows(i, o, scale, exact)
    if src == list(range(o)):
        return x
    if o % i == 0 and src == [j // (o // i) for j in range(o)]:  # integer upscale: repeat each element, a view
        pre, post = x.shape[:dim], x.shape[dim + 1 :]
        return x.unsqueeze(dim + 1).expand(pre + (i, o // i) + post).reshape(pre + (o,) + post)
    step = src[1] - src[0] if o > 1 else 1
    if step >= 1 and src == [src[0] + j * step for j in range(o)]:  # every step-th element: a strided slice
        return x[(slice(None),) * dim + (slice(src[0], src[0] + (o - 1) * step + 1, step),)]
    return _mix(x, [[1.0 if t == s else 0.0 for t in range(i)] for s in src], dim)


def interpolate(input: Tensor, size: Any = None, scale_factor: Any = None, mode: str = "nearest",  # noqa: A002
                align_corners: bool | None = None, recompute_scale_factor: bool | None = None,
                antialias: bool = False) -> Tensor:  # fmt: skip
    """Resize the spatial dims of (N, C, *spatial) to ``size``, or by ``scale_factor``.

    Modes: 'nearest', 'nearest-exact', 'linear' (3-d input), 'bilinear' (4-d), 'trilinear' (5-d) with
    ``align_corners``, and 'area' (adaptive average pooling). Source positions follow torch exactly.
    """
    if not isinstance(input, Tensor):
        raise TypeError(f"interpolate: expected a Tensor input, got {type(input).__name__}")
    nd = input.ndim - 2
    if nd < 1:
        raise ValueError(f"interpolate: expected a 3-d, 4-d or 5-d input (N, C, *spatial), got shape {input.shape}")
    if antialias:
        raise NotImplementedError("interpolate: antialias=True is not supported")
    if mode in _MODES_ND and _MODES_ND[mode] != nd:
        raise ValueError(f"interpolate: mode {mode!r} needs a {_MODES_ND[mode] + 2}-d input, got shape {input.shape}")
    if mode not in ("nearest", "nearest-exact", "area") and mode not in _MODES_ND:
        raise NotImplementedError(f"interpolate: mode {mode!r} is not supported (nearest, nearest-exact, linear, "
                                  "bilinear, trilinear, area)")  # fmt: skip
    if align_corners is not None and mode not in _MODES_ND:
        raise ValueError("interpolate: align_corners can only be set with the modes linear, bilinear and trilinear")
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of size and scale_factor")
    sizes = input.shape[2:]
    if size is not None:
        outs = ntuple(size, nd, "interpolate: size")
        scales = [i / o for i, o in zip(sizes, outs)]
    else:
        factors = (scale_factor,) * nd if isinstance(scale_factor, int | float) else tuple(scale_factor)
        if len(factors) != nd:
            raise ValueError(f"interpolate: scale_factor must be a number or a tuple of {nd}, got {scale_factor!r}")
        outs = tuple(int(math.floor(i * f)) for i, f in zip(sizes, factors))
        scales = [i / o if recompute_scale_factor else 1.0 / f for i, o, f in zip(sizes, outs, factors)]
    if any(o <= 0 for o in outs):
        raise ValueError(f"interpolate: output size {outs} must be positive (input {input.shape})")
    if mode == "area":
        return adaptive_avg_pool_nd(input, outs, nd, "interpolate")
    x = input if mode.startswith("nearest") else input._floating()
    for j, (i, o, scale) in enumerate(zip(sizes, outs, scales)):
        dim = 2 + j
        if mode.startswith("nearest"):
            x = _resize_nearest(x, dim, o, scale, mode == "nearest-exact")
        else:
            rows = _linear_rows(i, o, scale, bool(align_corners))
            if rows != [[float(t == j) for t in range(i)] for j in range(o)]:  # (the identity leaves x as it is)
                x = _mix(x, rows, dim)
    return x


def upsample(input: Tensor, size: Any = None, scale_factor: Any = None, mode: str = "nearest",  # noqa: A002
             align_corners: bool | None = None) -> Tensor:  # fmt: skip
    return interpolate(input, size, scale_factor, mode, align_corners)
