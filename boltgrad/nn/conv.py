"""Convolutions: pad, take every window of the input as a view, copy the windows into a buffer laid out as
(channels, *kernel, batch, *out) (im2col, one kernel), then multiply by the broadcast weight and sum over
(channels, kernel): a matmul of the weight (out channels x channels*kernel) by the windows (channels*kernel x
batch*positions), whose columns are contiguous and many, as the register tiles want (a multiple of 8 wherever
the batch is). The output is stored as (out channels, batch, *out) and read through a permute as (batch, out
channels, *out); its gradient is stored in the same layout, so the windows' gradient is again a tiled matmul
(the transposed weight by the output's gradient) and the weight's gradient sums products of two rows that are
both contiguous along batch*positions (dot products, or a tile over strips of the output's gradient:
``_product_grads``). The windows' gradient is folded back into the input's
(``_col2im``: one shifted copy per kernel position, summed in one kernel) rather than derived from the view's
index arithmetic.

The window view of one spatial dim of size ``i`` (kernel ``k``, stride ``s``, dilation ``d``, ``o`` outputs)
is built from movement ops only: repeat the dim ``e`` times and flatten it, so that element ``f`` of the long
row is ``x[f mod i]``; cut the row into ``k`` rows of length ``w = m*i + d``. Row ``kk`` then starts at
``x[kk*d mod i]``, and every ``s``-th element of it is ``x[kk*d + oo*s]``, the window element wanted. The index
arithmetic simplifies back to ``kk*d + oo*s`` in the kernel, so the trick costs nothing at run time.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from ..autograd import needs_grad, with_gradient
from ..codegen.lower import PACK
from ..device.registry import get_device
from ..helpers import prod
from ..ir import dtypes
from ..ir.ops import Op
from ..tensor import Tensor
from ..tensor_reduce import packed_strips

IntOrTuple = int | Sequence[int]


def ntuple(value: Any, n: int, name: str) -> tuple[int, ...]:
    """An int or a sequence of ``n`` ints (or of one int) -> a tuple of ``n`` ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * n
    items = tuple(value)
    if len(items) == 1:
        items = items * n
    if len(items) != n or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise ValueError(f"{name} must be an int or a tuple of {n} ints, got {value!r}")
    return items


def check_rank(x: Tensor, nd: int, name: str, batched_only: bool = False) -> None:
    ranks = (nd + 2,) if batched_only else (nd + 1, nd + 2)
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a Tensor input, got {type(x).__name__}")
    if x.ndim not in ranks:
        want = " or ".join(f"{r}-d" for r in ranks)
        raise RuntimeError(f"{name}: expected a {want} input (batch, channels, {nd} spatial dims), got shape {x.shape}")


def _window_dim(x: Tensor, dim: int, k: int, s: int, d: int) -> Tensor:
    """Replace dim ``dim`` (size i) by two dims (k, o) with out[kk, oo] = x[kk*d + oo*s], a view."""
    i = x.shape[dim]
    o = (i - d * (k - 1) - 1) // s + 1
    pre, post = x.shape[:dim], x.shape[dim + 1 :]
    lead = [None] * dim
    if d == 1 and s >= k:  # windows that do not overlap: fold the dim into (o, s) and keep the first k of each
        x = x.pad(lead + [(0, max(0, o * s - i))] + [None] * len(post)).shrink(lead + [(0, o * s)])
        x = x.reshape(pre + (o, s) + post).shrink(lead + [None, (0, k)])
        return x.transpose(dim, dim + 1)
    m = 1
    while m * i + d < o * s:  # rows must be long enough to hold o strided steps
        m += 1
    w = m * i + d
    e = -(-k * w // i)
    x = x.unsqueeze(dim).expand(pre + (e, i) + post).reshape(pre + (e * i,) + post)  # x repeated e times
    x = x.shrink(lead + [(0, k * w)]).reshape(pre + (k, w) + post)  # row kk starts at x[kk*d]
    if s == 1:
        return x.shrink(lead + [None, (0, o)])
    x = x.shrink(lead + [None, (0, o * s)]).reshape(pre + (k, o, s) + post)
    return x.shrink(lead + [None, None, (0, 1)]).reshape(pre + (k, o) + post)


def sliding_windows(x: Tensor, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int]) -> Tensor:
    """(..., *spatial) -> (..., *out, *kernel): every window of the last len(kernel) dims, as a view.

    ``out[..., o1, o2, k1, k2] = x[..., o1*s1 + k1*d1, o2*s2 + k2*d2]``; the caller pads first.
    """
    n = len(kernel)
    lead = x.ndim - n
    for j in reversed(range(n)):  # last dim first, so the positions of earlier dims do not move
        x = _window_dim(x, lead + j, kernel[j], stride[j], dilation[j])
    # now (..., k1, o1, k2, o2, ...): bring the outputs forward, the kernel dims last
    order = list(range(lead)) + [lead + 2 * j + 1 for j in range(n)] + [lead + 2 * j for j in range(n)]
    return x.permute(order)


def im2col(xp: Tensor, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int]) -> Tensor:
    """The windows of a padded (B, C, *spatial) input, materialized as (C, *kernel, B, *out): per channel and
    kernel position, the whole batch of inputs shifted."""
    nd = len(kernel)
    windows = sliding_windows(xp, kernel, stride, dilation)  # (B, C, *out, *kernel)
    cols = windows.permute([1, *range(2 + nd, 2 + 2 * nd), 0, *range(2, 2 + nd)]).contiguous()
    shape = xp.shape
    return with_gradient(cols, (xp,), lambda _, __, g: (_col2im(g, shape, kernel, stride, dilation),))


def _product_grads(cols: Tensor, w: Tensor, g: Tensor) -> tuple[Tensor | None, Tensor | None]:
    """Gradients of ``(cols * w).sum(2)`` (cols (G, 1, D, P), w (G, O, D, 1)) from g (G, O, P): the windows'
    (a register-tiled product over the output channels, as autograd would build it) and the weight's."""
    groups, channels, positions = g.shape
    g4 = g.reshape((groups, channels, 1, positions))
    d_cols = (w * g4).sum(1, keepdim=True) if needs_grad(cols.node) else None
    if not needs_grad(w.node):
        return d_cols, None
    depth = cols.shape[2]
    if not _tiled_weight_grad(g, depth):  # dot products of two rows contiguous along the positions
        return d_cols, (cols * g4).sum(3, keepdim=True)
    # g's rows copied into strips of 16 output channels, (G, O/16, P, 16), and read as (G, P, O) (the matmul's
    # packing): the weight's gradient (transposed) is then the windows (D x P) times that, a register tile (8 rows
    # by two vectors of columns) over a reduce whose every step reads one broadcast per row and whole strip rows
    g_t = packed_strips(g.permute(0, 2, 1)).reshape((groups, 1, positions, channels))
    d_w = (cols.reshape((groups, depth, positions, 1)) * g_t).sum(2).contiguous()  # (G, D, O)
    return d_cols, d_w.permute(0, 2, 1).reshape(w.shape)


def _tiled_weight_grad(g: Tensor, depth: int) -> bool:
    """Whether the weight's gradient takes the strips (``_product_grads``) rather than dot products: on the C
    renderer's devices (the PYTHON device runs the same kernels), for float32, whole strips of output channels
    and 16+ window elements. Measured on a 2-core AVX-512 machine, kernels' minimum times: 32 x 144 over 25088
    positions 3058 -> 1355 us (copy included), 32 x 27 over 32768 825 -> 483 us; 16 x 9 over 100352 went from
    437 to 672 us, so fewer window elements keep the dot products."""
    channels, positions = g.shape[1], g.shape[2]
    if g.dtype != dtypes.float32 or channels % PACK or depth < 16 or positions < 64:
        return False
    return get_device(g.device).renderer in ("c", "python")


def _col2im(g: Tensor, shape: tuple[int, ...], kernel: Sequence[int], stride: Sequence[int],
            dilation: Sequence[int]) -> Tensor:  # fmt: skip
    """The gradient of ``im2col``: each kernel position's slice of ``g`` (C, *kernel, B, *out), placed where
    its window elements came from in the padded input (B, C, *spatial), and summed."""
    nd = len(kernel)
    g = g.permute([1 + nd, 0, *range(1, 1 + nd), *range(2 + nd, 2 + 2 * nd)])  # (B, C, *kernel, *out)
    out = g.shape[2 + nd :]
    total: Tensor | None = None
    lead, tail = [(0, n) for n in g.shape[:2]], [(0, n) for n in out]  # the dims each piece keeps whole
    for ks in itertools.product(*(range(k) for k in kernel)):
        # the bounds are in range by construction: the views are made directly (a backward step builds 9 per 3x3
        # convolution, and the checks of shrink, reshape and pad were most of their cost)
        piece = g._view(Op.SHRINK, tuple(lead + [(k, k + 1) for k in ks] + tail)) if prod(kernel) > 1 else g
        piece = piece._view(Op.RESHAPE, g.shape[:2] + out)
        if all(s == 1 for s in stride):  # each window element moved by its kernel offset: one pad for all dims
            starts = [k * d for k, d in zip(ks, dilation)]
            widths = ((0, 0), (0, 0)) + tuple((a, n - a - o) for a, n, o in zip(starts, shape[2:], out))
            piece = piece._view(Op.PAD, widths) if any(b or a for b, a in widths) else piece
        else:
            for j in range(nd):
                piece = _place(piece, 2 + j, ks[j] * dilation[j], stride[j], shape[2 + j])
        total = piece if total is None else total + piece
    assert total is not None
    return total


def _place(t: Tensor, dim: int, start: int, step: int, size: int) -> Tensor:
    """Element o of dim ``dim`` moved to position ``start + o * step`` of a dim of ``size``, zeros elsewhere."""
    o = t.shape[dim]
    if step > 1 and o > 1:
        pre, post = t.shape[:dim], t.shape[dim + 1 :]
        t = t.unsqueeze(dim + 1).pad([(0, 0)] * (dim + 1) + [(0, step - 1)] + [(0, 0)] * len(post))
        t = t.reshape(pre + (o * step,) + post).shrink([None] * dim + [(0, (o - 1) * step + 1)])
    span = t.shape[dim]
    return t.pad([(0, 0)] * dim + [(start, size - start - span)] + [(0, 0)] * (t.ndim - dim - 1))


def flat_padding(pairs: Sequence[tuple[int, int]]) -> list[int]:
    """((before, after) per spatial dim, first dim first) -> torch's flat pad list (last dim first)."""
    return [p for before, after in reversed(pairs) for p in (before, after)]


def _conv_padding(padding: Any, kernel: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...],
                  name: str) -> list[tuple[int, int]]:  # fmt: skip
    nd = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return [(0, 0)] * nd
        if padding != "same":
            raise ValueError(f"{name}: padding must be 'valid', 'same', an int or a tuple, got {padding!r}")
        if any(s != 1 for s in stride):
            raise ValueError(f"{name}: padding='same' is not supported for strided convolutions (stride {stride})")
        pairs = []
        for k, d in zip(kernel, dilation):
            total = d * (k - 1)
            pairs.append((total // 2, total - total // 2))  # an odd total puts the extra element on the right
        return pairs
    pads = ntuple(padding, nd, f"{name}: padding")
    if any(p < 0 for p in pads):
        raise RuntimeError(f"{name}: negative padding is not supported, got {pads}")
    return [(p, p) for p in pads]


def conv_nd(input: Tensor, weight: Tensor, bias: Tensor | None, stride: Any, padding: Any, dilation: Any,  # noqa: A002
            groups: int, nd: int, name: str) -> Tensor:  # fmt: skip
    check_rank(input, nd, name)
    if weight.ndim != nd + 2:
        raise RuntimeError(f"{name}: expected a {nd + 2}-d weight (out, in/groups, *kernel), got shape {weight.shape}")
    unbatched = input.ndim == nd + 1
    x = input.unsqueeze(0) if unbatched else input
    batch, channels, spatial = x.shape[0], x.shape[1], x.shape[2:]
    out_channels, group_channels, kernel = weight.shape[0], weight.shape[1], weight.shape[2:]
    if not isinstance(groups, int) or groups <= 0:
        raise ValueError(f"{name}: groups must be a positive int, got {groups!r}")
    if channels != group_channels * groups:
        raise RuntimeError(
            f"{name}: given groups={groups} and weight of shape {weight.shape}, expected input of shape {x.shape} "
            f"to have {group_channels * groups} channels, but got {channels} channels instead"
        )
    if out_channels % groups:
        raise RuntimeError(
            f"{name}: given groups={groups}, the weight's dim 0 must be divisible by {groups}, but the weight has "
            f"shape {weight.shape}"
        )
    stride, dilation = ntuple(stride, nd, f"{name}: stride"), ntuple(dilation, nd, f"{name}: dilation")
    if any(s <= 0 for s in stride) or any(d <= 0 for d in dilation):
        raise RuntimeError(f"{name}: stride {stride} and dilation {dilation} must be positive")
    pairs = _conv_padding(padding, kernel, stride, dilation, name)
    padded = [s + b + a for s, (b, a) in zip(spatial, pairs)]
    reach = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    if any(p < r for p, r in zip(padded, reach)):
        raise RuntimeError(
            f"{name}: calculated padded input size per channel: {tuple(padded)}; kernel size (with dilation): "
            f"{tuple(reach)}. The kernel can't be greater than the padded input (input {x.shape}, weight "
            f"{weight.shape})"
        )
    cols = im2col(x.pad(flat_padding(pairs)), kernel, stride, dilation)  # (C, *kernel, B, *out)
    out_spatial = cols.shape[2 + nd :]
    depth, positions = group_channels * prod(kernel), batch * prod(out_spatial)
    # (G, 1, Cg*k, B*P) times (G, O/G, Cg*k, 1) summed over Cg*k: per group, output channels by positions
    cols = cols.reshape((groups, 1, depth, positions))
    w = weight.reshape((groups, out_channels // groups, depth, 1))
    out = (cols * w).sum(2)  # (G, O/G, B*P)
    # (the rule takes its inputs as given, not from this frame: a tensor held here would stay a live lazy graph that
    # reads the weights, which the optimizer's update would then compute again)
    out = with_gradient(out, (cols, w), lambda inputs, _, g: _product_grads(*inputs, g))
    out = out.reshape((out_channels, batch) + out_spatial)
    if bias is not None:
        if bias.shape != (out_channels,):
            raise RuntimeError(f"{name}: expected a bias of shape ({out_channels},), got {bias.shape}")
        out = out + bias.reshape((out_channels,) + (1,) * (nd + 1))
    # stored, so a backward pass reads it instead of computing the convolution again, and its gradient is
    # stored in the same layout (CONTIGUOUS's gradient): both gradients are products over plain buffers
    out = out.contiguous().permute([1, 0, *range(2, 2 + nd)])
    return out[0] if unbatched else out


def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntOrTuple = 1,  # noqa: A002
           padding: IntOrTuple | str = 0, dilation: IntOrTuple = 1, groups: int = 1) -> Tensor:  # fmt: skip
    """1-d convolution (cross-correlation, as in torch): input (N, C, L), weight (O, C/groups, k)."""
    return conv_nd(input, weight, bias, stride, padding, dilation, groups, 1, "conv1d")


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntOrTuple = 1,  # noqa: A002
           padding: IntOrTuple | str = 0, dilation: IntOrTuple = 1, groups: int = 1) -> Tensor:  # fmt: skip
    """2-d convolution: input (N, C, H, W) or (C, H, W), weight (O, C/groups, kh, kw), bias (O,).

    ``out[n, o, y, x] = bias[o] + sum_{c, i, j} input[n, g*C/groups + c, y*sh + i*dh - ph, x*sw + j*dw - pw]
    * weight[o, c, i, j]`` with g the group of o; padding may be an int, a tuple, 'valid' or 'same'.

        >>> import boltgrad.nn.functional as F
        >>> from boltgrad import Tensor
        >>> F.conv2d(Tensor.ones(1, 1, 3, 3), Tensor.ones(1, 1, 2, 2)).tolist()
        [[[[4.0, 4.0], [4.0, 4.0]]]]
    """
    return conv_nd(input, weight, bias, stride, padding, dilation, groups, 2, "conv2d")


def conv3d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntOrTuple = 1,  # noqa: A002
           padding: IntOrTuple | str = 0, dilation: IntOrTuple = 1, groups: int = 1) -> Tensor:  # fmt: skip
    """3-d convolution: input (N, C, D, H, W), weight (O, C/groups, kd, kh, kw)."""
    return conv_nd(input, weight, bias, stride, padding, dilation, groups, 3, "conv3d")


def conv_transpose_nd(input: Tensor, weight: Tensor, bias: Tensor | None, stride: Any, padding: Any,  # noqa: A002
                      output_padding: Any, groups: int, dilation: Any, nd: int, name: str) -> Tensor:  # fmt: skip
    """The gradient of a convolution as a convolution: spread the input out by the stride (zeros between its
    elements), pad by ``dilation*(k-1) - padding``, and convolve with the flipped, transposed kernel."""
    check_rank(input, nd, name)
    if weight.ndim != nd + 2:
        raise RuntimeError(f"{name}: expected a {nd + 2}-d weight (in, out/groups, *kernel), got shape {weight.shape}")
    unbatched = input.ndim == nd + 1
    x = input.unsqueeze(0) if unbatched else input
    channels, spatial = x.shape[1], x.shape[2:]
    in_channels, group_out, kernel = weight.shape[0], weight.shape[1], weight.shape[2:]
    if not isinstance(groups, int) or groups <= 0:
        raise ValueError(f"{name}: groups must be a positive int, got {groups!r}")
    if channels != in_channels:
        raise RuntimeError(
            f"{name}: given transposed weight of shape {weight.shape}, expected input of shape {x.shape} to have "
            f"{in_channels} channels, but got {channels} channels instead"
        )
    if in_channels % groups:
        raise RuntimeError(f"{name}: the weight's dim 0 ({in_channels}) must be divisible by groups={groups}")
    stride, dilation = ntuple(stride, nd, f"{name}: stride"), ntuple(dilation, nd, f"{name}: dilation")
    pads = ntuple(padding, nd, f"{name}: padding")
    extra = ntuple(output_padding, nd, f"{name}: output_padding")
    if any(s <= 0 for s in stride) or any(d <= 0 for d in dilation) or any(p < 0 for p in pads + extra):
        raise RuntimeError(f"{name}: stride {stride} and dilation {dilation} must be positive, padding non-negative")
    for op, s, d in zip(extra, stride, dilation):
        if op >= max(s, d):
            raise RuntimeError(
                f"{name}: output padding must be smaller than either stride or dilation, but got output_padding "
                f"{extra}, stride {stride}, dilation {dilation}"
            )
    out_size = [(i - 1) * s - 2 * p + d * (k - 1) + op + 1
                for i, s, p, d, k, op in zip(spatial, stride, pads, dilation, kernel, extra)]  # fmt: skip
    if any(o <= 0 for o in out_size):
        raise RuntimeError(f"{name}: input {x.shape} and weight {weight.shape} give an empty output {tuple(out_size)}")
    lead = x.ndim - nd
    for j, s in enumerate(stride):  # spread: (i,) -> (i, s) with zeros after each element -> ((i-1)*s + 1,)
        if s == 1:
            continue
        dim = lead + j
        i, pre, post = x.shape[dim], x.shape[:dim], x.shape[dim + 1 :]
        x = x.reshape(pre + (i, 1) + post).pad([None] * (dim + 1) + [(0, s - 1)] + [None] * len(post))
        x = x.reshape(pre + (i * s,) + post).shrink([None] * dim + [(0, (i - 1) * s + 1)])
    edge = [d * (k - 1) - p for d, k, p in zip(dilation, kernel, pads)]
    x = x.pad(flat_padding([(e, e + op) for e, op in zip(edge, extra)]))  # negative widths crop
    # (G*Cg_in, Og, *k) -> (G*Og, Cg_in, *k), flipped in space
    w = weight.reshape((groups, in_channels // groups, group_out) + kernel).transpose(1, 2)
    w = w.reshape((groups * group_out, in_channels // groups) + kernel).flip(list(range(2, 2 + nd)))
    out = conv_nd(x, w, bias, 1, 0, dilation, groups, nd, name)
    return out[0] if unbatched else out


def conv_transpose1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntOrTuple = 1,  # noqa: A002
                     padding: IntOrTuple = 0, output_padding: IntOrTuple = 0, groups: int = 1,
                     dilation: IntOrTuple = 1) -> Tensor:  # fmt: skip
    """Transposed 1-d convolution: input (N, C, L), weight (C, O/groups, k)."""
    return conv_transpose_nd(input, weight, bias, stride, padding, output_padding, groups, dilation, 1,
                             "conv_transpose1d")  # fmt: skip


def conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntOrTuple = 1,  # noqa: A002
                     padding: IntOrTuple = 0, output_padding: IntOrTuple = 0, groups: int = 1,
                     dilation: IntOrTuple = 1) -> Tensor:  # fmt: skip
    """Transposed 2-d convolution (the gradient of conv2d): input (N, C, H, W), weight (C, O/groups, kh, kw).

    Output size per dim: ``(i - 1)*stride - 2*padding + dilation*(k - 1) + output_padding + 1``.
    """
    return conv_transpose_nd(input, weight, bias, stride, padding, output_padding, groups, dilation, 2,
                             "conv_transpose2d")  # fmt: skip


def conv_transpose3d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntOrTuple = 1,  # noqa: A002
                     padding: IntOrTuple = 0, output_padding: IntOrTuple = 0, groups: int = 1,
                     dilation: IntOrTuple = 1) -> Tensor:  # fmt: skip
    """Transposed 3-d convolution: input (N, C, D, H, W), weight (C, O/groups, kd, kh, kw)."""
    return conv_transpose_nd(input, weight, bias, stride, padding, output_padding, groups, dilation, 3,
                             "conv_transpose3d")  # fmt: skip


def unfold(input: Tensor, kernel_size: IntOrTuple, dilation: IntOrTuple = 1, padding: IntOrTuple = 0,  # noqa: A002
           stride: IntOrTuple = 1) -> Tensor:  # fmt: skip
    """im2col: (N, C, H, W) -> (N, C*kh*kw, L), every sliding block as a column (L blocks)."""
    check_rank(input, 2, "unfold")
    x = input.unsqueeze(0) if input.ndim == 3 else input
    kernel, dil = ntuple(kernel_size, 2, "unfold: kernel_size"), ntuple(dilation, 2, "unfold: dilation")
    pads, strides = ntuple(padding, 2, "unfold: padding"), ntuple(stride, 2, "unfold: stride")
    if any(v <= 0 for v in kernel + dil + strides) or any(p < 0 for p in pads):
        raise RuntimeError(f"unfold: kernel_size {kernel}, dilation {dil}, stride {strides} must be positive")
    padded = [s + 2 * p for s, p in zip(x.shape[2:], pads)]
    if any(p < d * (k - 1) + 1 for p, k, d in zip(padded, kernel, dil)):
        raise RuntimeError(f"unfold: the kernel {kernel} (dilation {dil}) is larger than the padded input {padded}")
    windows = sliding_windows(
        x.pad(flat_padding([(p, p) for p in pads])), kernel, strides, dil
    )  # (N, C, oh, ow, kh, kw)
    n, c, oh, ow = windows.shape[:4]
    out = windows.permute(0, 1, 4, 5, 2, 3).reshape(n, c * kernel[0] * kernel[1], oh * ow)
    return out[0] if input.ndim == 3 else out
