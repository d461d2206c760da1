"""boltgrad.nn.functional's convolutions, pooling and resampling against torch.nn.functional, values and gradients.

Each case runs the same call on both sides (``F`` is ours, ``TF`` torch's); ``with batch()`` compiles a whole
group of cases at once. Kernel counts pin the fusion that makes convolution fast: a forward conv2d is one kernel.
"""

# ruff: noqa: B023
# (check() calls each lambda at once, inside its loop: late binding of loop variables cannot bite)

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from helpers import batch, check, same

import boltgrad.nn.functional as F
from boltgrad import Tensor, stats

# (input shape, weight shape, keyword arguments)
CONV2D = [
    ((2, 3, 7, 6), (4, 3, 3, 3), {"stride": 2, "padding": 1}),
    ((1, 4, 7, 6), (6, 2, 3, 2), {"stride": (1, 2), "padding": (2, 1), "dilation": (2, 1), "groups": 2}),
    ((1, 2, 5, 6), (3, 2, 4, 3), {"padding": "same", "dilation": 2}),
    ((2, 4, 5, 5), (4, 1, 3, 3), {"padding": 1, "groups": 4}),  # depthwise
    ((3, 5, 5), (2, 3, 1, 1), {}),  # unbatched input, 1x1 kernel
    ((1, 2, 9, 9), (2, 2, 2, 2), {"stride": 2}),  # windows that do not overlap
    ((1, 1, 8, 8), (1, 1, 2, 2), {"stride": 3, "padding": 1}),  # stride larger than the kernel
]


def test_conv2d_values_and_gradients():
    with batch():
        for x_shape, w_shape, kw in CONV2D:
            check(same("conv2d", **kw), x_shape, w_shape, grad=True)
        check(same("conv2d", padding="valid"), (2, 3, 6, 5), (4, 3, 3, 3), (4,), grad=True)  # with bias


def test_conv1d_and_conv3d():
    with batch():
        check(same("conv1d"), (2, 3, 9), (4, 3, 3), (4,), grad=True)
        check(same("conv1d", stride=3, padding=1, dilation=2), (2, 2, 11), (3, 2, 2), grad=True)
        check(same("conv1d", padding="same", groups=2), (1, 4, 7), (2, 2, 4), grad=True)
        check(same("conv3d", stride=(1, 2, 1), padding=1), (1, 2, 4, 5, 4), (3, 2, 2, 3, 2), (3,), grad=True)


CONV_TRANSPOSE2D = [
    ((2, 4, 4, 5), (4, 3, 3, 3), {}),
    ((2, 4, 4, 5), (4, 3, 3, 3), {"stride": 2, "padding": 1, "output_padding": 1}),
    ((1, 4, 3, 5), (4, 2, 3, 2), {"stride": (2, 1), "padding": (0, 2), "groups": 2, "dilation": 2}),
    ((1, 2, 3, 3), (2, 1, 2, 2), {"stride": 3, "output_padding": (2, 1)}),
    ((2, 3, 3), (2, 3, 3, 3), {"padding": 2}),  # unbatched; padding crops the full output
]


def test_conv_transpose_values_and_gradients():
    with batch():
        for x_shape, w_shape, kw in CONV_TRANSPOSE2D:
            check(same("conv_transpose2d", **kw), x_shape, w_shape, grad=True)
        check(same("conv_transpose2d", stride=2), (1, 2, 3, 3), (2, 3, 3, 3), (3,), grad=True)
        check(same("conv_transpose1d", stride=2, padding=1, output_padding=1), (2, 3, 5), (3, 2, 3), (2,), grad=True)


def test_unfold_is_im2col():
    with batch():
        check(same("unfold", 3), (2, 3, 5, 4), grad=True)
        check(same("unfold", (2, 3), dilation=(1, 2), padding=1, stride=(2, 1)), (1, 2, 5, 6), grad=True)


def test_conv2d_forward_is_one_kernel_and_backward_few():
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32), requires_grad=True)
    w = Tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), requires_grad=True)
    b = Tensor(rng.standard_normal(4).astype(np.float32), requires_grad=True)
    forward = F.conv2d(x, w, b, stride=1, padding=1).relu()
    stats.reset()
    forward.realize()
    # the windows copied once (im2col), a matmul with the bias as its epilogue written as (B, O, H, W) (stored
    # for the backward pass), and the relu
    assert stats.kernels == 3
    # (a graph built on a realized tensor starts from its buffer, so the backward graph is built anew)
    F.conv2d(x, w, b, stride=1, padding=1).relu().sum().backward()
    stats.reset()
    Tensor.realize_all([x.grad, w.grad, b.grad])
    # the forward again up to the matmul (stored once: the relu's gradient reads it through a view); the output's
    # gradient materialized; the weight's (in the stored layout, then put back) and the bias's; the windows' (a
    # matmul) and the input's (the windows' gradient folded back: one shifted copy per kernel position, summed)
    assert stats.kernels <= 9
    want = TF.conv2d(torch.from_numpy(x.numpy()), torch.from_numpy(w.numpy()), torch.from_numpy(b.numpy()), padding=1)
    np.testing.assert_allclose(forward.numpy(), want.relu().numpy(), rtol=1e-5, atol=1e-5)


def _kernel_shapes(t: Tensor) -> list[tuple[int, ...]]:
    from boltgrad.schedule.schedule import create_schedule

    return [it.ast.shape for it in create_schedule([t.node]).items if hasattr(it, "ast")]


@pytest.mark.parametrize("groups", [1, 2])
def test_conv_weight_gradient_through_strips_of_output_channels(groups):
    """16 output channels per group and 2 x 3 x 3 = 18 window elements: the output's gradient is copied into
    strips of 16 channels, (G, O/16, P, 16), and the weight's gradient is the windows times them (a register
    tile), equal bit for bit on the PYTHON device; 1 x 3 x 3 = 9 elements keep the dot products."""
    rng = np.random.default_rng(groups)
    x = rng.standard_normal((2, 2 * groups, 6, 7)).astype(np.float32)
    w = rng.standard_normal((16 * groups, 2, 3, 3)).astype(np.float32)
    grads = {}
    for device in ("CPU", "PYTHON"):
        xt, wt = Tensor(x, device=device, requires_grad=True), Tensor(w, device=device, requires_grad=True)
        (F.conv2d(xt, wt, padding=1, groups=groups) ** 2).sum().backward()
        if device == "CPU":
            assert (groups, 1, 2 * 6 * 7, 16) in _kernel_shapes(wt.grad)
        grads[device] = (xt.grad.numpy(), wt.grad.numpy())
    np.testing.assert_array_equal(grads["CPU"][1], grads["PYTHON"][1])
    np.testing.assert_array_equal(grads["CPU"][0], grads["PYTHON"][0])
    xr, wr = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
    (TF.conv2d(xr, wr, padding=1, groups=groups) ** 2).sum().backward()
    np.testing.assert_allclose(grads["CPU"][1], wr.grad.numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(grads["CPU"][0], xr.grad.numpy(), rtol=1e-4, atol=1e-3)
    wt = Tensor(w[:, :1], requires_grad=True)
    F.conv2d(Tensor(x[:, :groups]), wt, padding=1, groups=groups).sum().backward()
    assert not any(len(s) == 4 and s[-1] == 16 for s in _kernel_shapes(wt.grad))


def test_max_pool_one_kernel():
    x = Tensor(np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)).realize()
    stats.reset()
    F.max_pool2d(x, 3, 2, 1).realize()
    assert stats.kernels == 1


POOL2D = [
    (2, {}),
    (3, {"stride": 2, "padding": 1}),
    ((3, 2), {"stride": (2, 1), "padding": (1, 1)}),
    (2, {"ceil_mode": True}),
    (3, {"stride": 2, "padding": 1, "ceil_mode": True}),
]


def test_max_pool2d():
    with batch():
        for kernel, kw in POOL2D:
            check(same("max_pool2d", kernel, **kw), (2, 3, 7, 8), grad=True)
        check(same("max_pool2d", 3, 2, 1, ceil_mode=True, return_indices=True), (1, 2, 7, 6))
        check(same("max_pool2d", (3, 2), (2, 1), (1, 1), dilation=(1, 2), return_indices=True), (1, 2, 7, 8), grad=True)
        check(same("max_pool2d", 2), (3, 6, 6), grad=True)  # unbatched
        check(same("max_pool1d", 3, 2, 1, return_indices=True), (2, 3, 9))
        check(same("max_pool3d", 2, ceil_mode=True), (1, 2, 3, 5, 4), grad=True)
        check(same("max_pool2d", 2), (1, 2, 4, 4), dtype="int32", low=-50, high=50)


def test_avg_pool2d():
    with batch():
        for kernel, kw in POOL2D:
            check(same("avg_pool2d", kernel, count_include_pad=kernel == 2, **kw), (2, 3, 8, 7), grad=True)
        check(same("avg_pool2d", 3, 2, 1, divisor_override=4), (1, 2, 6, 6), grad=True)
        check(same("avg_pool1d", 3, 2, 1, ceil_mode=True, count_include_pad=False), (2, 3, 8), grad=True)
        check(same("avg_pool3d", 2, 1), (1, 2, 3, 4, 3), grad=True)


def test_adaptive_pooling():
    with batch():
        for size in [1, (3, 2), (5, 4), (None, 3), (7, 6)]:
            check(same("adaptive_avg_pool2d", size), (2, 3, 7, 6), grad=True)
        check(same("adaptive_avg_pool1d", 4), (2, 3, 10), grad=True)
        check(same("adaptive_max_pool2d", (5, 4)), (2, 3, 7, 6), grad=True)
        check(same("adaptive_max_pool1d", 3), (2, 3, 8), grad=True)


INTERPOLATE = [
    ((1, 2, 3, 4), {"scale_factor": 2}),
    ((1, 2, 3, 4), {"size": (5, 7)}),
    ((1, 2, 6, 7), {"scale_factor": 0.6}),
    ((1, 2, 6, 7), {"scale_factor": (1.5, 0.5), "mode": "nearest-exact"}),
    ((1, 2, 3, 4), {"size": (5, 7), "mode": "bilinear"}),
    ((1, 2, 3, 4), {"scale_factor": 2, "mode": "bilinear"}),
    ((1, 2, 3, 4), {"scale_factor": 1.7, "mode": "bilinear", "align_corners": True}),
    ((1, 2, 6, 7), {"scale_factor": 0.6, "mode": "bilinear"}),
    ((1, 2, 6, 7), {"scale_factor": 0.6, "mode": "bilinear", "recompute_scale_factor": True}),
    ((2, 3, 5), {"size": 8, "mode": "linear"}),
    ((2, 3, 5), {"size": 3, "mode": "linear", "align_corners": True}),
    ((1, 1, 2, 3, 4), {"scale_factor": 1.5, "mode": "trilinear"}),
    ((1, 2, 6, 6), {"size": (4, 3), "mode": "area"}),
]


def test_interpolate():
    with batch():
        for shape, kw in INTERPOLATE:
            check(same("interpolate", **kw), shape, grad=True)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: F.conv2d(Tensor.ones(1, 3, 5, 5), Tensor.ones(4, 2, 3, 3)), RuntimeError, "3 channels"),
        (lambda: F.conv2d(Tensor.ones(1, 4, 5, 5), Tensor.ones(3, 2, 3, 3), groups=2), RuntimeError, "divisible"),
        (lambda: F.conv2d(Tensor.ones(4, 5), Tensor.ones(1, 1, 3, 3)), RuntimeError, r"3-d or 4-d input"),
        (lambda: F.conv2d(Tensor.ones(1, 1, 2, 2), Tensor.ones(1, 1, 3, 3)), RuntimeError, "kernel can't be greater"),
        (lambda: F.conv2d(Tensor.ones(1, 1, 5, 5), Tensor.ones(1, 1, 3)), RuntimeError, "4-d weight"),
        (
            lambda: F.conv2d(Tensor.ones(1, 1, 5, 5), Tensor.ones(1, 1, 3, 3), stride=2, padding="same"),
            ValueError,
            "strided",
        ),  # fmt: skip
        (lambda: F.conv2d(Tensor.ones(1, 1, 5, 5), Tensor.ones(1, 1, 3, 3), padding="full"), ValueError, "'full'"),
        (lambda: F.conv2d(Tensor.ones(1, 1, 5, 5), Tensor.ones(2, 1, 3, 3), Tensor.ones(3)), RuntimeError, r"\(2,\)"),
        (lambda: F.conv2d(Tensor.ones(1, 1, 5, 5), Tensor.ones(1, 1, 3, 3), stride=(1, 2, 3)), ValueError, "2 ints"),
        (lambda: F.conv_transpose2d(Tensor.ones(1, 3, 5, 5), Tensor.ones(4, 2, 3, 3)), RuntimeError, "4 channels"),
        (
            lambda: F.conv_transpose2d(Tensor.ones(1, 2, 5, 5), Tensor.ones(2, 2, 3, 3), output_padding=1),
            RuntimeError,
            "output padding",
        ),  # fmt: skip
        (lambda: F.max_pool2d(Tensor.ones(1, 1, 5, 5), 3, padding=2), RuntimeError, "half of the effective kernel"),
        (lambda: F.max_pool2d(Tensor.ones(1, 1, 2, 2), 3), RuntimeError, "too small"),
        (lambda: F.max_pool2d(Tensor.ones(5, 5), 2), RuntimeError, r"3-d or 4-d input"),
        (lambda: F.avg_pool2d(Tensor.ones(1, 1, 5, 5), 0), ValueError, "must be positive"),
        (lambda: F.interpolate(Tensor.ones(1, 1, 4, 4)), ValueError, "exactly one"),
        (lambda: F.interpolate(Tensor.ones(1, 1, 4, 4), size=2, mode="linear"), ValueError, "3-d input"),
        (lambda: F.interpolate(Tensor.ones(1, 1, 4, 4), size=2, align_corners=True), ValueError, "align_corners"),
    ],
)
def test_bad_arguments_name_the_problem(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_python_device_subset():
    with batch():
        check(same("conv2d", stride=2, padding=1), (1, 2, 5, 4), (3, 2, 3, 3), (3,), grad=True, device="PYTHON")
        check(same("max_pool2d", 2, ceil_mode=True), (1, 2, 5, 3), grad=True, device="PYTHON")
        check(same("avg_pool2d", 3, 2, 1), (1, 1, 4, 5), grad=True, device="PYTHON")
        check(same("conv_transpose2d", stride=2), (1, 2, 2, 3), (2, 1, 2, 2), grad=True, device="PYTHON")
        check(same("interpolate", size=(3, 5), mode="bilinear"), (1, 1, 2, 3), grad=True, device="PYTHON")
