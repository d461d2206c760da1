"""Normalisation layers: BatchNorm1d/2d (with running statistics), LayerNorm, RMSNorm and GroupNorm.

The affine weight starts at one and the bias at zero. BatchNorm keeps torch's buffers (``running_mean``,
``running_var``, ``num_batches_tracked``) and updates them exactly as torch does: in training, with the batch's
mean and unbiased variance, by ``momentum`` (or by a cumulative average when ``momentum`` is None).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..tensor import Tensor
from . import functional as F
from .module import Module, Parameter


def _filled(shape: tuple[int, ...], value: float, dtype: Any, device: str | None) -> Tensor:
    """A tensor of ``shape`` full of ``value`` in memory of its own, copied in from the host (no kernel runs)."""
    count = 1
    for s in shape:
        count *= s
    return Tensor([value] * count, dtype=dtype, device=device).reshape(shape)


def _affine_parameters(module: Module, shape: tuple[int, ...], affine: bool, bias: bool, device: str | None,
                       dtype: Any) -> None:  # fmt: skip
    """weight (ones) and bias (zeros) of ``shape``, or None where they are turned off."""
    module.register_parameter("weight", Parameter(_filled(shape, 1.0, dtype, device)) if affine else None)
    module.register_parameter("bias", Parameter(_filled(shape, 0.0, dtype, device)) if affine and bias else None)


class _BatchNorm(Module):
    _input_dims: tuple[int, ...] = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device: str | None = None, dtype: Any = None, *,
                 bias: bool = True):  # fmt: skip
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats, self._bias = affine, track_running_stats, affine and bias
        _affine_parameters(self, (num_features,), affine, bias, device, dtype)
        if track_running_stats:
            self.register_buffer("running_mean", _filled((num_features,), 0.0, dtype, device))
            self.register_buffer("running_var", _filled((num_features,), 1.0, dtype, device))
            self.register_buffer("num_batches_tracked", Tensor(0, dtype="int64", device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1.0)
            self.num_batches_tracked.zero_()
            Tensor.realize_all([self.running_mean, self.running_var, self.num_batches_tracked])

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim not in self._input_dims:
            dims = " or ".join(f"{d}D" for d in self._input_dims)
            raise ValueError(f"{type(self).__name__}: expected {dims} input (got {x.ndim}D input)")
        momentum: Any = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            # last step's updates are written first: an assign whose value reads a pending assign runs that one again
            Tensor.realize_all([self.running_mean, self.running_var, self.num_batches_tracked])
            self.num_batches_tracked.assign(self.num_batches_tracked + 1)
            if self.momentum is None:  # a cumulative average: the n-th batch weighs 1/n
                self.num_batches_tracked.realize()  # (the factor must read the count, not its pending assign)
                momentum = 1.0 / self.num_batches_tracked.cast(x.dtype)
        # batch statistics in training, and in eval when there are no running statistics to use
        use_batch_stats = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return F.batch_norm(x, self.running_mean if track else None, self.running_var if track else None,
                            self.weight, self.bias, use_batch_stats, momentum, self.eps)  # fmt: skip

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self._bias}, track_running_stats={self.track_running_stats}")  # fmt: skip


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L): statistics per channel C over the other dims."""

    _input_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W): statistics per channel C over N, H and W."""

    _input_dims = (4,)


class LayerNorm(Module):
    """Normalises over the last dims (``normalized_shape``) of each sample, then scales and shifts."""

    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device: str | None = None, dtype: Any = None):  # fmt: skip
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape, self.eps, self.elementwise_affine = shape, eps, elementwise_affine
        self._bias = elementwise_affine and bias
        _affine_parameters(self, shape, elementwise_affine, bias, device, dtype)

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, bias={self._bias}"
        )


class RMSNorm(Module):
    """x / sqrt(mean(x², over the last dims) + eps) * weight; ``eps=None`` uses the input dtype's machine eps."""

    def __init__(self, normalized_shape: int | Sequence[int], eps: float | None = None,
                 elementwise_affine: bool = True, device: str | None = None, dtype: Any = None):  # fmt: skip
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape, self.eps, self.elementwise_affine = shape, eps, elementwise_affine
        _affine_parameters(self, shape, elementwise_affine, False, device, dtype)

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class GroupNorm(Module):
    """Splits the channels of (N, C, ...) into ``num_groups`` groups and normalises each group of each sample."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 device: str | None = None, dtype: Any = None, *, bias: bool = True):  # fmt: skip
        super().__init__()
        if num_groups <= 0 or num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels ({num_channels}) must be divisible by num_groups ({num_groups})")
        self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
        self._bias = affine and bias
        _affine_parameters(self, (num_channels,), affine, bias, device, dtype)

    def forward(self, x: Tensor) -> Tensor:
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, bias={self._bias}"
