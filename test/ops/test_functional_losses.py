"""boltgrad.nn.functional's losses against torch.nn.functional: every reduction, weights, ignore_index, label
smoothing, probability targets; values and gradients."""

# ruff: noqa: B023
# (check() calls each lambda at once, inside its loop: late binding of loop variables cannot bite)

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from helpers import batch, check, same

import boltgrad.nn.functional as F
from boltgrad import Tensor

REDUCTIONS = ("mean", "sum", "none")
RNG = np.random.default_rng(7)
TARGET = np.array([2, 0, 4, 1, 2, 3])  # classes of 6 samples, C = 5
TARGET_2D = RNG.integers(0, 4, size=(2, 3, 2))  # (N, d1, d2) for a (N, C=4, d1, d2) input
CLASS_WEIGHT = RNG.uniform(0.5, 2.0, 5).astype(np.float32)


def probabilities(shape, dim=1):
    p = RNG.uniform(0.1, 1.0, shape).astype(np.float32)
    return p / p.sum(axis=dim, keepdims=True)


def test_cross_entropy_with_class_indices():
    with batch():
        for reduction in REDUCTIONS:
            check(same("cross_entropy", reduction=reduction), (6, 5), TARGET, grad=True)
            check(lambda x, t: lib(x).cross_entropy(x, t, like(x, CLASS_WEIGHT), ignore_index=2, reduction=reduction),
                  (6, 5), TARGET, grad=True)  # fmt: skip
            check(same("cross_entropy", reduction=reduction, label_smoothing=0.2), (6, 5), TARGET, grad=True)
        check(lambda x, t: lib(x).cross_entropy(x, t, like(x, CLASS_WEIGHT), ignore_index=0, label_smoothing=0.1),
              (6, 5), TARGET, grad=True)  # fmt: skip
        check(same("cross_entropy"), (2, 4, 3, 2), TARGET_2D, grad=True)  # spatial targets
        check(same("cross_entropy", reduction="none", label_smoothing=0.3), (2, 4, 3, 2), TARGET_2D, grad=True)
        check(same("cross_entropy"), (5,), np.array(3), grad=True)  # one unbatched sample


def test_cross_entropy_with_probability_targets():
    with batch():
        for reduction in REDUCTIONS:
            check(same("cross_entropy", reduction=reduction), (4, 5), probabilities((4, 5)), grad=True)
        check(lambda x, t: lib(x).cross_entropy(x, t, like(x, CLASS_WEIGHT), label_smoothing=0.25), (4, 5),
              probabilities((4, 5)), grad=True)  # fmt: skip
        check(same("cross_entropy"), (2, 3, 4), probabilities((2, 3, 4)), grad=True)


def test_nll_loss():
    with batch():
        for reduction in REDUCTIONS:
            check(lambda x, t: lib(x).nll_loss(x.log_softmax(1), t, like(x, CLASS_WEIGHT), reduction=reduction,
                                               ignore_index=4), (6, 5), TARGET, grad=True)  # fmt: skip
        check(same("nll_loss"), (2, 4, 3, 2), TARGET_2D, grad=True)


def test_all_targets_ignored_gives_nan_like_torch():
    out = F.cross_entropy(Tensor.ones(2, 3), Tensor([1, 1]), ignore_index=1)
    assert math.isnan(out.item())
    assert F.cross_entropy(Tensor.ones(2, 3), Tensor([1, 1]), ignore_index=1, reduction="sum").item() == 0


def test_target_out_of_range_gives_nan():
    loss = F.cross_entropy(Tensor.ones(2, 3), Tensor([1, 3]), reduction="none").numpy()
    assert math.isfinite(loss[0]) and math.isnan(loss[1])
    assert math.isnan(F.nll_loss(Tensor.ones(2, 3), Tensor([-1, 0])).item())


def lib(x):
    return TF if isinstance(x, torch.Tensor) else F


def like(x, array):
    """A constant of the same library as x."""
    return torch.from_numpy(array) if isinstance(x, torch.Tensor) else Tensor(array)


def test_regression_losses():
    with batch():
        for reduction in REDUCTIONS:
            check(same("mse_loss", reduction=reduction), (3, 4), (3, 4), grad=True)
            check(same("l1_loss", reduction=reduction), (3, 4), (3, 4), grad=True)
            check(same("smooth_l1_loss", reduction=reduction, beta=0.5), (3, 4), (3, 4), grad=True)
            check(same("huber_loss", reduction=reduction, delta=0.7), (3, 4), (3, 4), grad=True)
        check(same("smooth_l1_loss", beta=0.0), (3, 4), (3, 4), grad=True)
        check(same("mse_loss", weight=None), (2, 3), (2, 3), grad=True)
        check(same("l1_loss", size_average=False), (2, 3), (2, 3), grad=True)  # torch's legacy flags


def test_binary_cross_entropy():
    probs = RNG.uniform(0.05, 0.95, (3, 4)).astype(np.float32)
    targets = RNG.uniform(0, 1, (3, 4)).astype(np.float32)
    with batch():
        for reduction in REDUCTIONS:
            # (torch has no gradient for the target of binary_cross_entropy: it is a constant here)
            check(lambda x: lib(x).binary_cross_entropy(x, like(x, targets), reduction=reduction), probs, grad=True)
            check(same("binary_cross_entropy_with_logits", reduction=reduction), (3, 4), targets, grad=True, low=-30,
                  high=30)  # fmt: skip
        weight = RNG.uniform(0.5, 1.5, (3, 4)).astype(np.float32)
        check(lambda x: lib(x).binary_cross_entropy(x, like(x, targets), like(x, weight)), probs, grad=True)
        pos = RNG.uniform(0.2, 3, 4).astype(np.float32)
        check(lambda x, t: lib(x).binary_cross_entropy_with_logits(x, t, like(x, weight), pos_weight=like(x, pos)),
              (3, 4), targets, grad=True)  # fmt: skip
    # log is clamped at -100: a certain, wrong prediction costs 100, not inf
    assert F.binary_cross_entropy(Tensor([0.0, 1.0]), Tensor([1.0, 0.0])).item() == 100.0


def test_kl_div():
    log_q = np.log(probabilities((3, 4)))
    with batch():
        for reduction in ("mean", "sum", "none", "batchmean"):
            check(same("kl_div", reduction=reduction), log_q, probabilities((3, 4)), grad=True)
            check(same("kl_div", reduction=reduction, log_target=True), log_q, np.log(probabilities((3, 4))),
                  grad=True)  # fmt: skip
        zeros = probabilities((3, 4))
        zeros[0, 1] = 0.0  # a zero target contributes 0, not NaN (torch's gradient for that target is NaN)
        check(lambda x: lib(x).kl_div(x, like(x, zeros), reduction="batchmean"), log_q, grad=True)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: F.cross_entropy(Tensor.ones(3, 4), Tensor([1, 2])), ValueError, r"batch_size \(3\).*\(2\)"),
        (lambda: F.cross_entropy(Tensor.ones(2, 4, 3), Tensor([[1, 2]] * 2)), RuntimeError, r"\[2, 3\]"),
        (lambda: F.cross_entropy(Tensor.ones(2, 4), Tensor.ones(2, 3)), RuntimeError, "input's shape"),
        (lambda: F.cross_entropy(Tensor.ones(2, 4), Tensor([1, 2]), weight=Tensor.ones(3)), RuntimeError, r"\(4,\)"),
        (lambda: F.cross_entropy(Tensor.ones(2, 4), Tensor([1, 2]), reduction="avg"), ValueError, "'avg'"),
        (lambda: F.cross_entropy(Tensor.ones(2, 4), Tensor([1, 2]), label_smoothing=1.5), ValueError, "smoothing"),
        (lambda: F.nll_loss(Tensor.ones(2, 4), Tensor([1.0, 2.0])), RuntimeError, "integer class indices"),
        # labels of the wrong dtype: float labels of the batch's shape, bool labels
        (lambda: F.cross_entropy(Tensor.ones(2, 4), Tensor([1.0, 2.0])), RuntimeError, r"\[2, 4\].*\.long\(\)"),
        (lambda: F.cross_entropy(Tensor.ones(2, 4), Tensor([True, False])), RuntimeError, r"got bool.*\.long\(\)"),
        (lambda: F.binary_cross_entropy(Tensor.ones(2, 3) * 0.5, Tensor.ones(3)), ValueError, "same size"),
        (lambda: F.kl_div(Tensor.ones(2), Tensor.ones(2), reduction="max"), ValueError, "'max'"),
    ],
)
def test_bad_arguments_name_the_problem(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_python_device_subset():
    with batch():
        check(same("cross_entropy", label_smoothing=0.1), (3, 4), np.array([0, 3, 1]), grad=True, device="PYTHON")
        check(same("binary_cross_entropy_with_logits"), (2, 3), (2, 3), grad=True, device="PYTHON", low=-1, high=1)
