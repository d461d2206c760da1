"""boltgrad.nn.init: bounds and statistics of each fill, torch's gains and fans, and layers' default init."""

import math

import numpy as np
import pytest
import torch

import boltgrad
from boltgrad import Tensor, nn
from boltgrad.nn import init


def fresh(*shape):
    return Tensor.zeros(*shape).contiguous().realize()


def test_calculate_gain_matches_torch():
    for name in ("linear", "conv2d", "sigmoid", "tanh", "relu", "selu"):
        assert init.calculate_gain(name) == pytest.approx(torch.nn.init.calculate_gain(name))
    assert init.calculate_gain("leaky_relu") == pytest.approx(torch.nn.init.calculate_gain("leaky_relu"))
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(torch.nn.init.calculate_gain("leaky_relu", 0.2))
    with pytest.raises(ValueError, match="unsupported nonlinearity"):
        init.calculate_gain("swish")


def test_fills_and_statistics():
    boltgrad.manual_seed(0)
    w = fresh(64, 50)
    assert init.uniform_(w, -0.5, 1.5) is w
    v = w.numpy()
    assert v.min() >= -0.5 and v.max() < 1.5 and abs(v.mean() - 0.5) < 0.05
    v = init.normal_(fresh(64, 50), 1.0, 2.0).numpy()
    assert abs(v.mean() - 1.0) < 0.1 and abs(v.std() - 2.0) < 0.1
    assert init.constant_(fresh(2, 3), 0.25).tolist() == [[0.25] * 3] * 2
    assert init.ones_(fresh(2)).tolist() == [1.0, 1.0]
    assert init.zeros_(init.ones_(fresh(2))).tolist() == [0.0, 0.0]
    assert init.eye_(fresh(2, 3)).tolist() == [[1, 0, 0], [0, 1, 0]]


@pytest.mark.parametrize(
    "shape, fill, bound_or_std, uniform",
    [
        ((40, 30), lambda w: init.xavier_uniform_(w, gain=2.0), 2.0 * math.sqrt(6 / 70), True),
        ((40, 30), lambda w: init.xavier_normal_(w), math.sqrt(2 / 70), False),
        ((16, 8, 3, 3), lambda w: init.kaiming_uniform_(w, a=math.sqrt(5)), 1 / math.sqrt(72), True),
        ((16, 8, 3, 3), lambda w: init.kaiming_uniform_(w, mode="fan_out", nonlinearity="relu"),
         math.sqrt(2) * math.sqrt(3 / 144), True),
        ((64, 40), lambda w: init.kaiming_normal_(w, nonlinearity="relu"), math.sqrt(2 / 40), False),
    ],
    ids=["xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_uniform_fan_out", "kaiming_normal"],
)  # fmt: skip
def test_scaled_fills(shape, fill, bound_or_std, uniform):
    boltgrad.manual_seed(1)
    v = fill(fresh(*shape)).numpy()
    if uniform:
        assert np.abs(v).max() <= bound_or_std
        assert np.abs(v).max() > 0.95 * bound_or_std  # the whole range is used
        assert v.std() == pytest.approx(bound_or_std / math.sqrt(3), rel=0.1)
    else:
        assert v.std() == pytest.approx(bound_or_std, rel=0.1) and abs(v.mean()) < 0.2 * bound_or_std


def test_trunc_normal():
    boltgrad.manual_seed(2)
    v = init.trunc_normal_(fresh(100, 50), mean=0.5, std=1.0, a=-0.5, b=1.0).numpy()
    assert v.min() >= -0.5 and v.max() <= 1.0
    want = torch.nn.init.trunc_normal_(torch.empty(200, 100), 0.5, 1.0, -0.5, 1.0)
    assert v.mean() == pytest.approx(want.mean().item(), abs=0.02)
    assert v.std() == pytest.approx(want.std().item(), abs=0.02)
    v = init.trunc_normal_(fresh(100, 50), std=0.02).numpy()  # the usual transformer init: bounds far out
    assert v.std() == pytest.approx(0.02, rel=0.05)


def test_orthogonal():
    pytest.importorskip("numpy")
    boltgrad.manual_seed(3)
    wide = init.orthogonal_(fresh(3, 5), gain=2.0).numpy()
    np.testing.assert_allclose(wide @ wide.T, 4 * np.eye(3), atol=1e-5)
    tall = init.orthogonal_(fresh(6, 2, 2)).numpy().reshape(6, 4)
    np.testing.assert_allclose(tall.T @ tall, np.eye(4), atol=1e-5)


def test_fans_need_two_dims():
    with pytest.raises(ValueError, match="2 or more dims"):
        init.xavier_uniform_(fresh(5))
    with pytest.raises(ValueError, match="mode must be"):
        init.kaiming_uniform_(fresh(2, 2), mode="fan")


def test_same_seed_same_values_and_parameters_stay_leaves():
    boltgrad.manual_seed(7)
    a = nn.Linear(5, 3)
    boltgrad.manual_seed(7)
    b = nn.Linear(5, 3)
    assert a.weight.tolist() == b.weight.tolist() and a.bias.tolist() == b.bias.tolist()
    init.normal_(a.weight)
    assert a.weight.is_leaf and a.weight.requires_grad
    a(Tensor.ones(2, 5)).sum().backward()
    assert a.weight.grad.tolist() == [[2.0] * 5] * 3


def test_default_layer_init_like_torch():
    boltgrad.manual_seed(4)
    lin = nn.Linear(50, 40)
    w, b = lin.weight.numpy(), lin.bias.numpy()
    bound = 1 / math.sqrt(50)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound and np.abs(b).max() <= bound
    conv = nn.ConvTranspose2d(4, 6, 3)  # torch takes fan_in from weight.shape[1]: 6 * 3 * 3
    assert np.abs(conv.weight.numpy()).max() <= 1 / math.sqrt(54)
    emb = nn.Embedding(100, 20).weight.numpy()
    assert abs(emb.std() - 1) < 0.05
    lstm = nn.LSTM(3, 16)
    assert all(np.abs(p.numpy()).max() <= 0.25 for p in lstm.parameters())
    mha = nn.MultiheadAttention(8, 2)
    assert np.abs(mha.in_proj_weight.numpy()).max() <= math.sqrt(6 / 32)
    assert mha.in_proj_bias.tolist() == [0.0] * 24 and mha.out_proj.bias.tolist() == [0.0] * 8
    bn = nn.BatchNorm2d(3)
    assert bn.weight.tolist() == [1.0] * 3 and bn.bias.tolist() == [0.0] * 3
    assert bn.running_var.tolist() == [1.0] * 3 and bn.num_batches_tracked.item() == 0
