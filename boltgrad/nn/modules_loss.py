"""Loss functions as modules: each holds its options and calls the function of the same name in ``F``.

``reduction`` is ``"mean"`` (the default), ``"sum"`` or ``"none"``. Class weights are buffers, as in torch, so
they follow the module's ``to()`` and appear in its state dict.
"""

from __future__ import annotations

from ..tensor import Tensor
from . import functional as F
from .module import Module

_REDUCTIONS = ("none", "mean", "sum")


class _Loss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction must be one of {_REDUCTIONS}, not {reduction!r}")
        self.reduction = reduction


class _WeightedLoss(_Loss):
    def __init__(self, weight: Tensor | None = None, reduction: str = "mean"):
        super().__init__(reduction)
        self.register_buffer("weight", weight)


class CrossEntropyLoss(_WeightedLoss):
    """Cross entropy of logits (N, C, ...) against class ids (N, ...) or class probabilities (N, C, ...).

    >>> from boltgrad import nn, Tensor
    >>> round(nn.CrossEntropyLoss()(Tensor([[0.0, 0.0]]), Tensor([1])).item(), 4)
    0.6931
    """

    def __init__(self, weight: Tensor | None = None, size_average: None = None, ignore_index: int = -100,
                 reduce: None = None, reduction: str = "mean", label_smoothing: float = 0.0):  # fmt: skip
        super().__init__(weight, reduction)
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002 - torch's parameter name
        return F.cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)  # fmt: skip


class NLLLoss(_WeightedLoss):
    """Negative log likelihood of log-probabilities (N, C, ...) against class ids (N, ...)."""

    def __init__(self, weight: Tensor | None = None, size_average: None = None, ignore_index: int = -100,
                 reduce: None = None, reduction: str = "mean"):  # fmt: skip
        super().__init__(weight, reduction)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index, reduction=self.reduction)


class MSELoss(_Loss):
    """(input - target)²."""

    def __init__(self, size_average: None = None, reduce: None = None, reduction: str = "mean"):
        super().__init__(reduction)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """|input - target|."""

    def __init__(self, size_average: None = None, reduce: None = None, reduction: str = "mean"):
        super().__init__(reduction)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return F.l1_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(_Loss):
    """Quadratic (0.5 d² / beta) for |d| < beta, linear (|d| - beta / 2) beyond, with d = input - target."""

    def __init__(self, size_average: None = None, reduce: None = None, reduction: str = "mean", beta: float = 1.0):
        super().__init__(reduction)
        self.beta = beta

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class BCELoss(_WeightedLoss):
    """Binary cross entropy of probabilities in [0, 1] against targets in [0, 1]."""

    def __init__(self, weight: Tensor | None = None, size_average: None = None, reduce: None = None,
                 reduction: str = "mean"):  # fmt: skip
        super().__init__(weight, reduction)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return F.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross entropy of logits, computed stably (sigmoid and log fused); ``pos_weight`` scales positives."""

    def __init__(self, weight: Tensor | None = None, size_average: None = None, reduce: None = None,
                 reduction: str = "mean", pos_weight: Tensor | None = None):  # fmt: skip
        super().__init__(reduction)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return F.binary_cross_entropy_with_logits(input, target, weight=self.weight, reduction=self.reduction,
                                                  pos_weight=self.pos_weight)  # fmt: skip
