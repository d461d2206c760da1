"""Loss functions, as in torch.nn.functional: the same arguments, reductions and edge cases.

Class-index targets pick their class with a comparison against ``arange(C)`` (a one-hot mask that fuses into
the reduction), never with a data-dependent read. So a target outside ``[0, C)`` (other than ``ignore_index``)
cannot raise without a round trip to the device; its loss is NaN instead, which the mean carries to the result.
"""

from __future__ import annotations

import math

from .. import where
from ..ir import dtypes
from ..tensor import Tensor

_REDUCTIONS = ("none", "mean", "sum")


def _legacy_reduction(size_average: bool | None, reduce: bool | None, reduction: str) -> str:
    """torch's deprecated ``size_average`` and ``reduce`` flags, when given, decide the reduction."""
    if size_average is None and reduce is None:
        return reduction
    if reduce is False:
        return "none"
    return "sum" if size_average is False else "mean"


def _reduce(loss: Tensor, reduction: str, name: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{name}: {reduction!r} is not a valid value for reduction; use one of {_REDUCTIONS}")


def _check_reduction(reduction: str, name: str, allowed: tuple[str, ...] = _REDUCTIONS) -> None:
    if reduction not in allowed:
        raise ValueError(f"{name}: {reduction!r} is not a valid value for reduction; use one of {allowed}")


def _along(t: Tensor, ndim: int, dim: int) -> Tensor:
    """A vector laid along ``dim`` of an ``ndim``-d tensor, for broadcasting."""
    return t.reshape([t.shape[0] if d == dim else 1 for d in range(ndim)])


def _check_class_target(input: Tensor, target: Tensor, cdim: int, name: str) -> None:  # noqa: A002
    want = input.shape[:cdim] + input.shape[cdim + 1 :]
    if target.dtype.is_float or target.dtype == dtypes.bool_:
        raise RuntimeError(f"{name}: expected integer class indices as target, got {target.dtype.name}; "
                           "convert labels with .long()")  # fmt: skip
    if input.ndim >= 2 and target.ndim >= 1 and target.shape[0] != input.shape[0]:
        raise ValueError(
            f"{name}: expected input batch_size ({input.shape[0]}) to match target batch_size ({target.shape[0]})"
        )
    if target.shape != want:
        raise RuntimeError(f"{name}: expected target of shape {list(want)} for input {list(input.shape)}, "
                           f"got {list(target.shape)}")  # fmt: skip


def _class_losses(logp: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int,
                  cdim: int) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """Per-element ``-weight[t] * logp[t]``, the weight each element counts with in a mean, and the valid mask
    (target != ignore_index); an out-of-range target gives NaN."""
    classes = logp.shape[cdim]
    hit = target.unsqueeze(cdim) == _along(Tensor.arange(classes, device=logp.device), logp.ndim, cdim)
    if weight is not None:
        if weight.shape != (classes,):
            raise RuntimeError(f"weight: expected a tensor of shape ({classes},) (one weight per class), "
                               f"got {weight.shape}")  # fmt: skip
        class_weight = _along(weight, logp.ndim, cdim).cast(logp.dtype)
        picked = (logp * class_weight).where(hit, 0).sum(cdim)
        counted = class_weight.where(hit, 0).sum(cdim)
    else:
        picked = logp.where(hit, 0).sum(cdim)
        counted = hit.cast(logp.dtype).sum(cdim)
    valid = target != ignore_index
    out_of_range = valid & ((target < 0) | (target >= classes))
    loss = (-picked).where(valid, 0).where(out_of_range.logical_not(), math.nan)
    return loss, counted.where(valid, 0), valid


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average: bool | None = None,  # noqa: A002
             ignore_index: int = -100, reduce: bool | None = None, reduction: str = "mean") -> Tensor:  # fmt: skip
    """Negative log likelihood of class indices: ``-weight[t] * input[n, t]`` for log-probabilities (N, C, ...).

    'mean' divides by the total weight of the targets that are not ``ignore_index``.
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction, "nll_loss")
    if input.ndim < 1:
        raise ValueError(f"nll_loss: expected an input of at least 1 dim (C) or (N, C, ...), got shape {input.shape}")
    cdim = 0 if input.ndim == 1 else 1
    _check_class_target(input, target, cdim, "nll_loss")
    loss, counted, _ = _class_losses(input, target, weight, ignore_index, cdim)
    if reduction == "mean":
        return loss.sum() / counted.sum()
    return _reduce(loss, reduction, "nll_loss")


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,  # noqa: A002
                  size_average: bool | None = None, ignore_index: int = -100, reduce: bool | None = None,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:  # fmt: skip
    """Cross entropy of logits (N, C, ...) or (C,) against class indices (N, ...) or class probabilities
    (the input's shape), as torch computes it: ``log_softmax`` over dim 1 and then the NLL.

    With ``label_smoothing`` e the loss is ``(1 - e) * nll + e/C * sum_c(-weight[c] * logp[c])``, both parts
    reduced alike; for probability targets the targets are mixed with the uniform distribution instead.

        >>> import boltgrad.nn.functional as F
        >>> from boltgrad import Tensor
        >>> round(F.cross_entropy(Tensor([[0.0, 0.0]]), Tensor([1])).item(), 4)
        0.6931
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction, "cross_entropy")
    if input.ndim < 1:
        raise ValueError(f"cross_entropy: expected an input of at least 1 dim, got shape {input.shape}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
    cdim = 0 if input.ndim == 1 else 1
    classes = input.shape[cdim]
    logp = input.log_softmax(cdim)
    class_weight = _along(weight, input.ndim, cdim).cast(logp.dtype) if weight is not None else None
    if target.dtype.is_float:  # class probabilities
        if target.shape != input.shape:
            labels = target.shape == input.shape[:cdim] + input.shape[cdim + 1 :]
            hint = "; class indices must be an integer tensor: convert labels with .long()" if labels else ""
            raise RuntimeError(f"cross_entropy: a {target.dtype.name} target is class probabilities, which must have "
                               f"the input's shape {list(input.shape)}, got {list(target.shape)}{hint}")  # fmt: skip
        if ignore_index >= 0:
            raise RuntimeError("cross_entropy: ignore_index is not supported for probability (floating point) targets")
        if weight is not None and weight.shape != (classes,):
            raise RuntimeError(f"cross_entropy: expected weight of shape ({classes},), got {weight.shape}")
        probs = target * (1 - label_smoothing) + label_smoothing / classes if label_smoothing > 0 else target
        terms = logp * probs if class_weight is None else logp * probs * class_weight
        return _reduce(-terms.sum(cdim), reduction, "cross_entropy")  # 'mean' averages over the batch elements
    _check_class_target(input, target, cdim, "cross_entropy")
    loss, counted, valid = _class_losses(logp, target, weight, ignore_index, cdim)
    if reduction == "mean":
        total = counted.sum()
        loss = loss.sum() / total
    else:
        loss = _reduce(loss, reduction, "cross_entropy")
    if label_smoothing <= 0:
        return loss
    smooth = -(logp if class_weight is None else logp * class_weight).sum(cdim)
    smooth = smooth.where(valid, 0)
    smooth = smooth.sum() / total if reduction == "mean" else _reduce(smooth, reduction, "cross_entropy")
    return loss * (1 - label_smoothing) + smooth * (label_smoothing / classes)


def stable_softplus(x: Tensor) -> Tensor:
    """``log(1 + e^x)`` as ``m + log(e^-m + e^(x-m))`` with ``m = max(x, 0)``: no overflow on either side, and
    the exact gradient (sigmoid) everywhere, 0 included."""
    m = x.relu()
    return m + ((-m).exp() + (x - m).exp()).log()


def _check_same_shape(input: Tensor, target: Tensor, name: str) -> None:  # noqa: A002
    if target.shape != input.shape:
        raise ValueError(
            f"{name}: using a target size ({list(target.shape)}) that is different to the input size "
            f"({list(input.shape)}) is not supported; please ensure they have the same size"
        )


def _weighted(loss: Tensor, weight: Tensor | None) -> Tensor:
    return loss if weight is None else loss * weight


def mse_loss(input: Tensor, target: Tensor, size_average: bool | None = None, reduce: bool | None = None,  # noqa: A002
             reduction: str = "mean", weight: Tensor | None = None) -> Tensor:  # fmt: skip
    """Mean squared error ``(input - target)^2`` (broadcast), reduced by 'mean', 'sum' or 'none'."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    return _reduce(_weighted((input - target).square(), weight), reduction, "mse_loss")


def l1_loss(input: Tensor, target: Tensor, size_average: bool | None = None, reduce: bool | None = None,  # noqa: A002
            reduction: str = "mean", weight: Tensor | None = None) -> Tensor:  # fmt: skip
    """Mean absolute error ``|input - target|``."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    return _reduce(_weighted((input - target).abs(), weight), reduction, "l1_loss")


def smooth_l1_loss(input: Tensor, target: Tensor, size_average: bool | None = None,  # noqa: A002
                   reduce: bool | None = None, reduction: str = "mean", beta: float = 1.0) -> Tensor:  # fmt: skip
    """``0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta`` (``d = input - target``); beta=0 is L1."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if beta < 0:
        raise RuntimeError(f"smooth_l1_loss: beta must be non-negative, got {beta}")
    d = (input - target).abs()
    if beta == 0:
        return _reduce(d, reduction, "smooth_l1_loss")
    loss = where(d < beta, d.square() * (0.5 / beta), d - 0.5 * beta)
    return _reduce(loss, reduction, "smooth_l1_loss")


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0,  # noqa: A002
               weight: Tensor | None = None) -> Tensor:  # fmt: skip
    """``0.5 d^2`` where ``|d| < delta``, else ``delta * (|d| - 0.5 delta)``."""
    if delta <= 0:
        raise RuntimeError(f"huber_loss: delta must be positive, got {delta}")
    d = (input - target).abs()
    loss = where(d < delta, d.square() * 0.5, (d - 0.5 * delta) * delta)
    return _reduce(_weighted(loss, weight), reduction, "huber_loss")


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,  # noqa: A002
                         size_average: bool | None = None, reduce: bool | None = None,
                         reduction: str = "mean") -> Tensor:  # fmt: skip
    """``-(t log x + (1 - t) log(1 - x))`` for probabilities x; each log is clamped at -100, as in torch."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_same_shape(input, target, "binary_cross_entropy")
    x = input._floating()
    loss = -(target * x.log().maximum(-100) + (1 - target) * (1 - x).log().maximum(-100))
    return _reduce(_weighted(loss, weight), reduction, "binary_cross_entropy")


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None,  # noqa: A002
                                     size_average: bool | None = None, reduce: bool | None = None,
                                     reduction: str = "mean", pos_weight: Tensor | None = None) -> Tensor:  # fmt: skip
    """BCE of ``sigmoid(input)`` computed stably from the logits: ``(1 - t) x + (1 + (p - 1) t) softplus(-x)``,
    with ``p = pos_weight`` (broadcast over the last dim, the classes) weighting the positive examples."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_same_shape(input, target, "binary_cross_entropy_with_logits")
    x = input._floating()
    softplus_neg = stable_softplus(-x)  # -log(sigmoid(x))
    scale = 1 if pos_weight is None else (pos_weight - 1) * target + 1
    loss = (1 - target) * x + scale * softplus_neg
    return _reduce(_weighted(loss, weight), reduction, "binary_cross_entropy_with_logits")


def kl_div(input: Tensor, target: Tensor, size_average: bool | None = None, reduce: bool | None = None,  # noqa: A002
           reduction: str = "mean", log_target: bool = False) -> Tensor:  # fmt: skip
    """KL divergence with ``input`` as log-probabilities: ``target * (log target - input)`` (0 where target is
    0), or ``exp(t) * (t - input)`` with ``log_target``. Use reduction='batchmean' for the true KL."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction, "kl_div", _REDUCTIONS + ("batchmean",))
    if log_target:
        loss = target.exp() * (target - input)
    else:
        positive = target > 0
        safe = target.where(positive, 1)  # log(1) = 0: no -inf*0 in the value or its gradient
        loss = (target * safe.log()).where(positive, 0) - target * input
    if reduction == "batchmean":
        return loss.sum() / (input.shape[0] if input.ndim else 1)
    return _reduce(loss, reduction, "kl_div")
