"""torch.nn.functional's names and signatures, written with Tensor operations (imported as ``F``).

    >>> import boltgrad.nn.functional as F
    >>> from boltgrad import Tensor
    >>> F.relu(Tensor([-1.0, 2.0])).tolist()
    [0.0, 2.0]

Everything here builds graph from Tensor operations, so it is lazy, fuses like any other graph and is
differentiable without gradient rules of its own. Convolution and pooling live in ``conv`` and ``pooling``,
normalization in ``norm`` and the losses in ``losses``; this module gathers them into one namespace and adds
the activations, linear layers, dropout, embeddings and attention.

``inplace=True`` is accepted where torch has it, for compatibility, and ignored: the result is a new tensor
(the graph fuses the operation into its consumer anyway).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

from .. import where
from ..tensor import Tensor
from ..tensor_gather import check_bounds, take_along
from .conv import conv1d, conv2d, conv3d, conv_transpose1d, conv_transpose2d, conv_transpose3d, unfold
from .losses import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    huber_loss,
    kl_div,
    l1_loss,
    mse_loss,
    nll_loss,
    smooth_l1_loss,
    stable_softplus,
)
from .norm import batch_norm, cosine_similarity, group_norm, instance_norm, layer_norm, normalize, rms_norm
from .pooling import (
    adaptive_avg_pool1d,
    adaptive_avg_pool2d,
    adaptive_avg_pool3d,
    adaptive_max_pool1d,
    adaptive_max_pool2d,
    avg_pool1d,
    avg_pool2d,
    avg_pool3d,
    interpolate,
    max_pool1d,
    max_pool2d,
    max_pool3d,
    upsample,
)

# ---- activations ----
# Most are Tensor methods (relu, gelu, silu, elu, leaky_relu, softplus, hardtanh, relu6, hardsigmoid, hardswish,
# mish, glu, softmax, ...); the rest are written here from Tensor operations.


def relu(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002 - torch's parameter names
    return input.relu()


def sigmoid(input: Tensor) -> Tensor:  # noqa: A002
    return input.sigmoid()


def tanh(input: Tensor) -> Tensor:  # noqa: A002
    return input.tanh()


def gelu(input: Tensor, approximate: str = "none") -> Tensor:  # noqa: A002
    """``x * Phi(x)`` (exact, with erf) or its tanh approximation (``approximate='tanh'``)."""
    return input.gelu(approximate=approximate)


def silu(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """``x * sigmoid(x)`` (swish)."""
    return input.silu()


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:  # noqa: A002
    return input.elu(alpha=alpha)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:  # noqa: A002
    return input.leaky_relu(negative_slope=negative_slope)


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:  # noqa: A002
    """``log(1 + exp(beta x)) / beta``, and x itself where ``beta x > threshold``."""
    return input.softplus(beta=beta, threshold=threshold)


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:  # noqa: A002
    """``x`` clamped to ``[min_val, max_val]``."""
    return input.hardtanh(min_val, max_val)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """``min(max(x, 0), 6)``."""
    return input.relu6()


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """``relu6(x + 3) / 6``."""
    return input.hardsigmoid()


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """``x * relu6(x + 3) / 6`` (MobileNetV3)."""
    return input.hardswish()


def mish(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """``x * tanh(softplus(x))``."""
    return input.mish()


def logsigmoid(input: Tensor) -> Tensor:  # noqa: A002
    """``log(sigmoid(x)) = -softplus(-x)``, computed without overflow."""
    return -stable_softplus(-input)


def glu(input: Tensor, dim: int = -1) -> Tensor:  # noqa: A002
    """Gated linear unit: split ``dim`` in halves a, b and return ``a * sigmoid(b)``."""
    return input.glu(dim)


def _negative_exp_branch(x: Tensor) -> Tensor:
    """exp(x) - 1 for the x <= 0 side of elu-like functions; clamped so the unused side cannot overflow (an inf
    there would turn its zero gradient into NaN)."""
    return x.minimum(0).exp() - 1


def selu(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    alpha, scale = 1.6732632423543772, 1.0507009873554805
    return where(input > 0, input, _negative_exp_branch(input) * alpha) * scale


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:  # noqa: A002
    if alpha == 0:
        raise ValueError("celu: alpha must not be 0")
    return where(input > 0, input, _negative_exp_branch(input / alpha) * alpha)


def softsign(input: Tensor) -> Tensor:  # noqa: A002
    return input / (input.abs() + 1)


def tanhshrink(input: Tensor) -> Tensor:  # noqa: A002
    return input - input.tanh()


def softshrink(input: Tensor, lambd: float = 0.5) -> Tensor:  # noqa: A002
    return where(input > lambd, input - lambd, where(input < -lambd, input + lambd, 0))


def hardshrink(input: Tensor, lambd: float = 0.5) -> Tensor:  # noqa: A002
    return where(input.abs() > lambd, input, 0)


def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:  # noqa: A002
    """x where ``x > threshold``, else ``value``."""
    return where(input > threshold, input, value)


def prelu(input: Tensor, weight: Tensor) -> Tensor:  # noqa: A002
    """``max(0, x) + weight * min(0, x)`` with one weight, or one per channel (dim 1)."""
    if weight.numel() != 1:
        channels = input.shape[1] if input.ndim >= 2 else input.shape[0]
        if weight.numel() != channels:
            raise RuntimeError(f"prelu: weight of {weight.numel()} elements does not match {channels} channels "
                               f"of input {input.shape}")  # fmt: skip
        dim = 1 if input.ndim >= 2 else 0
        weight = weight.reshape([channels if d == dim else 1 for d in range(input.ndim)])
    return where(input > 0, input, input * weight)


def _softmax_dim(input: Tensor, dim: int | None, name: str) -> int:
    if dim is not None:
        return dim
    warnings.warn(f"{name}: implicit dimension choice is deprecated; pass dim", UserWarning, stacklevel=3)
    return 0 if input.ndim in (0, 1, 3) else 1


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Tensor:  # noqa: A002
    return input.softmax(_softmax_dim(input, dim, "softmax"), dtype=dtype)


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Tensor:  # noqa: A002
    return input.log_softmax(_softmax_dim(input, dim, "log_softmax"), dtype=dtype)


def softmin(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Tensor:  # noqa: A002
    x = input.float() if dtype is None else input.cast(dtype)
    return (-x).softmax(_softmax_dim(input, dim, "softmin"))


# ---- linear layers ----


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:  # noqa: A002
    """``input @ weight.T + bias``: input (..., in), weight (out, in), bias (out,)."""
    if input.ndim == 0 or weight.ndim not in (1, 2) or input.shape[-1] != weight.shape[-1]:
        rows = math.prod(input.shape[:-1]) if input.ndim else 1
        cols = input.shape[-1] if input.ndim else 1
        transposed = "x".join(map(str, reversed(weight.shape)))
        raise RuntimeError(
            f"linear: mat1 and mat2 shapes cannot be multiplied ({rows}x{cols} and {transposed}); "
            f"input has shape {input.shape}, weight {weight.shape}"
        )
    out = input @ (weight.T if weight.ndim == 2 else weight)
    return out if bias is None else out + bias


def bilinear(input1: Tensor, input2: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``out[..., o] = sum_ij input1[..., i] * weight[o, i, j] * input2[..., j] + bias[o]``."""
    if weight.ndim != 3 or input1.shape[-1] != weight.shape[1] or input2.shape[-1] != weight.shape[2]:
        raise RuntimeError(f"bilinear: inputs {input1.shape} and {input2.shape} do not fit weight {weight.shape} "
                           "(out, in1, in2)")  # fmt: skip
    left = (input1.unsqueeze(-2).unsqueeze(-2) @ weight).squeeze(-2)  # (..., out, in2)
    out = (left * input2.unsqueeze(-2)).sum(-1)
    return out if bias is None else out + bias


# ---- dropout ----


def _check_p(p: float, name: str) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}: dropout probability has to be between 0 and 1, but got {p}")


def _drop(input: Tensor, p: float, mask_shape: tuple[int, ...]) -> Tensor:  # noqa: A002
    if p == 1.0:
        return input * 0.0
    keep = Tensor.rand(mask_shape, device=input.device) >= p  # the in-kernel counter-based generator
    return input.where(keep, 0) * (1.0 / (1.0 - p))


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:  # noqa: A002
    """Zero each element with probability p and scale the rest by ``1/(1-p)``; identity when not training.
    The mask is drawn inside the kernel, so a replayed step draws a fresh one."""
    _check_p(p, "dropout")
    if not training or p == 0.0:
        return input
    return _drop(input, p, input.shape)


def _channel_dropout(input: Tensor, p: float, training: bool, nd: int, name: str) -> Tensor:  # noqa: A002
    _check_p(p, name)
    if input.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(f"{name}: expected a {nd + 1}-d or {nd + 2}-d input, got shape {input.shape}")
    if not training or p == 0.0:
        return input
    channel_dims = input.ndim - nd
    return _drop(input, p, input.shape[:channel_dims] + (1,) * nd)


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:  # noqa: A002
    """Zero whole channels of (N, C, L) with probability p."""
    return _channel_dropout(input, p, training, 1, "dropout1d")


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:  # noqa: A002
    """Zero whole channels of (N, C, H, W) with probability p."""
    return _channel_dropout(input, p, training, 2, "dropout2d")


def dropout3d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:  # noqa: A002
    return _channel_dropout(input, p, training, 3, "dropout3d")


# ---- embeddings and one-hot ----


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 (..., num_classes) with a 1 at each value's class. ``num_classes=-1`` takes max + 1, which
    realizes the input to read it; a value outside [0, num_classes) gives a row of zeros."""
    return tensor.one_hot(num_classes)


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None, max_norm: float | None = None,  # noqa: A002
              norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:  # fmt: skip
    """Rows of ``weight`` (num_embeddings, dim) picked by the integer ``input`` -> (*input.shape, dim).

    The row at ``padding_idx`` gets no gradient. A gather: each output element loads its index and the weight
    element it names, fused with whatever computes the weight (dequantization) and whatever reads the rows.
    Known indices are bounds-checked; an index out of range that could not be checked gives NaN.
    """
    if input.dtype.is_float:
        raise RuntimeError(f"embedding: expected integer indices, got {input.dtype.name}")
    if weight.ndim != 2:
        raise RuntimeError(f"embedding: expected a 2-d weight (num_embeddings, embedding_dim), got {weight.shape}")
    if max_norm is not None or scale_grad_by_freq:
        raise NotImplementedError("embedding: max_norm and scale_grad_by_freq are not supported")
    rows = weight.shape[0]
    row_ids = Tensor.arange(rows, device=weight.device)
    if padding_idx is not None:
        if not -rows <= padding_idx < rows:
            raise ValueError(f"embedding: padding_idx {padding_idx} must be within num_embeddings ({rows})")
        is_padding = (row_ids == padding_idx % rows).unsqueeze(-1)
        weight = weight.detach().where(is_padding, weight)  # same values; no gradient for the padding row
    check_bounds(input, rows, 0, "embedding")
    out = take_along(weight, 0, input)  # (..., dim): one gathered load per element
    in_range = ((input >= 0) & (input < rows)).unsqueeze(-1)
    return out.where(in_range, math.nan)


# ---- padding and distances ----


def pad(input: Tensor, pad: Sequence[int], mode: str = "constant", value: float | None = None) -> Tensor:  # noqa: A002
    """torch's flat ``(left, right, top, bottom, ...)`` pad from the last dim; modes constant, reflect,
    replicate and circular."""
    return input.pad(pad, mode=mode, value=0 if value is None else value)


def pairwise_distance(x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> Tensor:
    """``||x1 - x2 + eps||_p`` over the last dim."""
    diff = (x1 - x2 + eps).abs()
    if p == float("inf"):
        return diff.amax(-1, keepdim=keepdim)
    return diff.pow(p).sum(-1, keepdim=keepdim).pow(1.0 / p)


# ---- attention ----


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                                 dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> Tensor:  # fmt: skip
    """``softmax(q @ k^T * scale + mask) @ v`` over (..., L, E) queries and (..., S, E) keys and values.

    ``attn_mask``: bool (True = attend) or float (added to the scores), broadcast to (..., L, S). ``is_causal``:
    query i attends keys 0..i. ``enable_gqa``: key/value may have fewer heads (dim -3) than the query; each
    serves ``Hq/Hkv`` consecutive query heads. A query row that may attend nothing gives zeros, as torch does.
    """
    if query.ndim < 2 or key.ndim < 2 or value.ndim < 2:
        raise ValueError(f"scaled_dot_product_attention: q, k, v need at least 2 dims, got {query.shape}, "
                         f"{key.shape}, {value.shape}")  # fmt: skip
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise RuntimeError(f"scaled_dot_product_attention: shapes q {query.shape}, k {key.shape}, v {value.shape} "
                           "do not fit (..., L, E), (..., S, E), (..., S, Ev)")  # fmt: skip
    if is_causal and attn_mask is not None:
        raise RuntimeError("scaled_dot_product_attention: an explicit attn_mask should not be set when is_causal=True")
    if enable_gqa and query.ndim >= 3 and key.shape[-3] != query.shape[-3]:
        heads, kv_heads = query.shape[-3], key.shape[-3]
        if heads % kv_heads or value.shape[-3] != kv_heads:
            raise RuntimeError(f"scaled_dot_product_attention: {heads} query heads cannot share {kv_heads} key heads "
                               f"and {value.shape[-3]} value heads")  # fmt: skip
        key, value = _repeat_heads(key, heads // kv_heads), _repeat_heads(value, heads // kv_heads)
    length, source = query.shape[-2], key.shape[-2]
    scores = (query @ key.transpose(-2, -1)) * (1.0 / math.sqrt(query.shape[-1]) if scale is None else scale)
    if is_causal:
        rows = Tensor.arange(length, device=query.device).reshape(length, 1)
        attn_mask = Tensor.arange(source, device=query.device).reshape(1, source) <= rows
    if attn_mask is not None:
        if attn_mask.dtype.name == "bool":
            scores = scores.where(attn_mask, -math.inf)
        else:
            scores = scores + attn_mask
    weights = scores.softmax(-1)
    if attn_mask is not None:  # rows with nothing to attend: 0/0 -> zeros (torch's safe softmax)
        weights = weights.where(scores.amax(-1, keepdim=True) != -math.inf, 0)
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p)
    return weights @ value


def _repeat_heads(t: Tensor, times: int) -> Tensor:
    """(..., H, S, E) -> (..., H*times, S, E), each head repeated ``times`` times in a row."""
    shape = t.shape
    expanded = t.unsqueeze(-3).expand(shape[:-2] + (times,) + shape[-2:])
    return expanded.reshape(shape[:-3] + (shape[-3] * times,) + shape[-2:])


__all__ = [
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "avg_pool1d", "avg_pool2d", "avg_pool3d", "batch_norm", "bilinear", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "celu", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
    "conv_transpose3d", "cosine_similarity", "cross_entropy", "dropout", "dropout1d", "dropout2d", "dropout3d",
    "elu", "embedding", "gelu", "glu", "group_norm", "hardshrink", "hardsigmoid", "hardswish", "hardtanh",
    "huber_loss", "instance_norm", "interpolate", "kl_div", "l1_loss", "layer_norm", "leaky_relu", "linear",
    "log_softmax", "logsigmoid", "max_pool1d", "max_pool2d", "max_pool3d", "mish", "mse_loss", "nll_loss",
    "normalize", "one_hot", "pad", "pairwise_distance", "prelu", "relu", "relu6", "rms_norm",
    "scaled_dot_product_attention", "selu", "sigmoid", "silu", "smooth_l1_loss", "softmax", "softmin", "softplus",
    "softshrink", "softsign", "tanh", "tanhshrink", "threshold", "unfold", "upsample",
]  # fmt: skip
