"""Normalization: layer, RMS, batch, group and instance norm, and ``normalize`` (unit p-norm vectors).

Statistics of float16/bfloat16 inputs are computed in float32 and the result cast back, as torch does on the
CPU. Variances are biased (divide by n) for normalizing; batch norm's running variance is unbiased (n - 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..tensor import Tensor
from ..tensor_math import broadcast_shape

# torch.finfo(dtype).eps, the default epsilon of rms_norm
_EPS = {"float16": 0.0009765625, "bfloat16": 0.0078125, "float32": 1.1920928955078125e-07,
        "float64": 2.220446049250313e-16}  # fmt: skip


def _wide(x: Tensor) -> Tensor:
    """Compute statistics of half-precision inputs in float32."""
    x = x._floating()
    return x.float() if x.dtype.itemsize < 4 else x


def _normalized(x: Tensor, dims: tuple[int, ...], eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """(x - mean) / sqrt(var + eps) over ``dims``, with the mean and the biased variance (kept dims)."""
    mean = x.mean(dims, keepdim=True)
    centered = x - mean
    var = centered.square().mean(dims, keepdim=True)
    return centered * (var + eps).rsqrt(), mean, var


def _affine(out: Tensor, weight: Tensor | None, bias: Tensor | None, shape: tuple[int, ...]) -> Tensor:
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


def layer_norm(input: Tensor, normalized_shape: int | Sequence[int], weight: Tensor | None = None,  # noqa: A002
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:  # fmt: skip
    """Normalize over the last ``len(normalized_shape)`` dims: ``(x - mean) / sqrt(var + eps) * weight + bias``."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    n = len(shape)
    if n == 0 or input.shape[input.ndim - n :] != shape or input.ndim < n:
        raise RuntimeError(
            f"layer_norm: given normalized_shape={list(shape)}, expected input with shape [*, "
            f"{', '.join(map(str, shape))}], but got input of size {list(input.shape)}"
        )
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.shape != shape:
            raise RuntimeError(f"layer_norm: expected {name} of shape {shape}, got {t.shape}")
    out, _, _ = _normalized(_wide(input), tuple(range(-n, 0)), eps)
    return _affine(out, weight, bias, shape).cast(input._floating().dtype)


def rms_norm(input: Tensor, normalized_shape: int | Sequence[int], weight: Tensor | None = None,  # noqa: A002
             eps: float | None = None) -> Tensor:  # fmt: skip
    """``x / sqrt(mean(x^2) + eps) * weight`` over the last dims; eps defaults to the dtype's machine epsilon."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    n = len(shape)
    if n == 0 or input.shape[input.ndim - n :] != shape or input.ndim < n:
        raise RuntimeError(
            f"rms_norm: given normalized_shape={list(shape)}, expected input with shape [*, "
            f"{', '.join(map(str, shape))}], but got input of size {list(input.shape)}"
        )
    if weight is not None and weight.shape != shape:
        raise RuntimeError(f"rms_norm: expected weight of shape {shape}, got {weight.shape}")
    dtype = input._floating().dtype
    x = _wide(input)
    eps = _EPS.get(dtype.name, _EPS["float32"]) if eps is None else eps
    out = x * (x.square().mean(tuple(range(-n, 0)), keepdim=True) + eps).rsqrt()
    return _affine(out, weight, None, shape).cast(dtype)


def _channel_shape(x: Tensor) -> tuple[int, ...]:
    """(1, C, 1, ...): a per-channel vector broadcast over (N, C, *spatial)."""
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,  # noqa: A002
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:  # fmt: skip
    """Normalize each channel of (N, C, *spatial) over the batch and spatial dims.

    ``training=True`` uses the batch's statistics and, when running statistics are given, updates them in place
    (``.assign``, lazily: they are written when realized): ``running = (1 - momentum)*running + momentum*batch``,
    the variance unbiased. ``training=False`` normalizes with the running statistics.
    """
    if input.ndim < 2:
        raise ValueError(f"batch_norm: expected an input of at least 2 dims (N, C, ...), got shape {input.shape}")
    channels = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):  # fmt: skip
        if t is not None and t.numel() != channels:
            raise RuntimeError(f"batch_norm: {name} should contain {channels} elements, not {t.numel()}")
    shape = _channel_shape(input)
    dims = (0,) + tuple(range(2, input.ndim))
    dtype = input._floating().dtype
    x = _wide(input)
    if training:
        count = input.numel() // channels
        if count <= 1:
            raise ValueError(
                f"batch_norm: expected more than 1 value per channel when training, got input of shape {input.shape}"
            )
        out, mean, var = _normalized(x, dims, eps)
        if running_mean is not None:
            batch_mean = mean.detach().reshape(running_mean.shape).cast(running_mean.dtype)
            running_mean.assign(running_mean.detach() * (1 - momentum) + batch_mean * momentum)
        if running_var is not None:
            unbiased = (var.detach() * (count / (count - 1))).reshape(running_var.shape).cast(running_var.dtype)
            running_var.assign(running_var.detach() * (1 - momentum) + unbiased * momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: running_mean and running_var are needed when training=False")
        mean = running_mean.detach().reshape(shape).cast(x.dtype)  # running statistics get no gradient
        out = (x - mean) * (running_var.detach().reshape(shape).cast(x.dtype) + eps).rsqrt()
    return _affine(out, weight, bias, shape).cast(dtype)


def instance_norm(input: Tensor, running_mean: Tensor | None = None, running_var: Tensor | None = None,  # noqa: A002
                  weight: Tensor | None = None, bias: Tensor | None = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5) -> Tensor:  # fmt: skip
    """Normalize each (sample, channel) of (N, C, *spatial) over its spatial dims."""
    if input.ndim < 3:
        raise ValueError(f"instance_norm: expected an input of at least 3 dims (N, C, *spatial), got {input.shape}")
    if not use_input_stats:
        return batch_norm(input, running_mean, running_var, weight, bias, False, momentum, eps)
    dtype = input._floating().dtype
    dims = tuple(range(2, input.ndim))
    out, mean, var = _normalized(_wide(input), dims, eps)  # mean, var: (N, C, 1, ...)
    # running statistics, when given, move toward the batch's average of the per-instance ones
    count = input.numel() // (input.shape[0] * input.shape[1])
    if running_mean is not None:
        batch_mean = mean.detach().mean(0).reshape(running_mean.shape).cast(running_mean.dtype)
        running_mean.assign(running_mean.detach() * (1 - momentum) + batch_mean * momentum)
    if running_var is not None:
        unbiased = var.detach().mean(0) * (count / max(count - 1, 1))
        unbiased = unbiased.reshape(running_var.shape).cast(running_var.dtype)
        running_var.assign(running_var.detach() * (1 - momentum) + unbiased * momentum)
    return _affine(out, weight, bias, _channel_shape(input)).cast(dtype)


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None, bias: Tensor | None = None,  # noqa: A002
               eps: float = 1e-5) -> Tensor:  # fmt: skip
    """Split the C channels of (N, C, *spatial) into ``num_groups`` groups and normalize each group of each
    sample; ``weight`` and ``bias`` are per channel."""
    if input.ndim < 2:
        raise ValueError(f"group_norm: expected an input of at least 2 dims (N, C, ...), got shape {input.shape}")
    channels = input.shape[1]
    if num_groups <= 0 or channels % num_groups:
        raise RuntimeError(
            f"group_norm: expected number of channels in input to be divisible by num_groups, but got input of "
            f"shape {list(input.shape)} and num_groups={num_groups}"
        )
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.shape != (channels,):
            raise RuntimeError(f"group_norm: expected {name} of shape ({channels},), got {t.shape}")
    dtype = input._floating().dtype
    grouped = _wide(input).reshape(input.shape[0], num_groups, -1)
    out, _, _ = _normalized(grouped, (2,), eps)
    return _affine(out.reshape(input.shape), weight, bias, _channel_shape(input)).cast(dtype)


def _norm(x: Tensor, p: float, dim: Any) -> Tensor:
    return x.norm(p, dim, keepdim=True)  # Tensor.norm has torch's gradient at a zero vector (0, not NaN)


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12) -> Tensor:  # noqa: A002
    """``x / max(||x||_p, eps)`` along ``dim``."""
    x = input._floating()
    return x / _norm(x, p, dim).maximum(eps)


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """``sum(x1 * x2) / (max(||x1||, eps) * max(||x2||, eps))`` along ``dim`` (inputs broadcast first)."""
    try:
        shape = broadcast_shape(x1.shape, x2.shape)
    except ValueError:
        raise RuntimeError(f"cosine_similarity: shapes {x1.shape} and {x2.shape} cannot be broadcast") from None
    a, b = x1._floating().expand(shape), x2._floating().expand(shape)
    na, nb = _norm(a, 2, dim).maximum(eps), _norm(b, 2, dim).maximum(eps)
    return ((a / na) * (b / nb)).sum(dim)
