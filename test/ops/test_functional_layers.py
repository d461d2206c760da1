"""boltgrad.nn.functional's activations, linear layers, normalization, dropout, embeddings and attention against
torch.nn.functional, values and gradients."""

# ruff: noqa: B023
# (check() calls each lambda at once, inside its loop: late binding of loop variables cannot bite)

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from helpers import batch, check, same

import boltgrad
import boltgrad.nn.functional as F
from boltgrad import Tensor

ACTIVATIONS = [
    ("relu", {}), ("sigmoid", {}), ("tanh", {}), ("relu6", {}), ("hardtanh", {"min_val": -0.5, "max_val": 1.5}),
    ("hardsigmoid", {}), ("hardswish", {}), ("mish", {}), ("logsigmoid", {}), ("selu", {}), ("celu", {"alpha": 0.7}),
    ("softsign", {}), ("tanhshrink", {}), ("softshrink", {"lambd": 0.3}), ("hardshrink", {"lambd": 0.3}),
    ("gelu", {}), ("gelu", {"approximate": "tanh"}), ("silu", {}), ("elu", {"alpha": 0.5}),
    ("leaky_relu", {"negative_slope": 0.2}), ("softplus", {"beta": 2.0, "threshold": 3.0}),
]  # fmt: skip


def test_activations():
    with batch():
        for name, kw in ACTIVATIONS:
            # (values away from the kinks at -3, 0, 3, where torch and a composition may pick different sides)
            check(same(name, **kw), np.linspace(-5.9, 5.8, 24, dtype=np.float32).reshape(4, 6) + 0.013, grad=True)
        check(same("threshold", 0.4, -2.0), (3, 5), grad=True)
        check(same("glu"), (3, 6), grad=True)
        check(same("glu", dim=0), (4, 3), grad=True)
        check(same("prelu"), (2, 3, 4), np.array([0.1, -0.2, 0.3], dtype=np.float32), grad=True)
        check(same("softmax", dim=1), (2, 5, 3), grad=True)
        check(same("log_softmax", dim=-1), (2, 5), grad=True)
        check(same("softmin", dim=0), (4, 3), grad=True)


def test_linear_and_bilinear():
    with batch():
        check(same("linear"), (4, 3), (5, 3), (5,), grad=True)
        check(same("linear"), (2, 4, 3), (5, 3), grad=True)
        check(same("linear"), (3,), (5, 3), (5,), grad=True)
        check(same("bilinear"), (4, 3), (4, 2), (5, 3, 2), (5,), grad=True)


def test_normalization():
    with batch():
        check(lambda x, w, b: lib(x).layer_norm(x, (4,), w, b), (3, 4), (4,), (4,), grad=True)
        check(same("layer_norm", (3, 4), eps=1e-3), (2, 3, 4), grad=True)
        check(lambda x, w: lib(x).rms_norm(x, (4,), w), (3, 4), (4,), grad=True)
        check(same("rms_norm", (2, 4), eps=1e-4), (3, 2, 4), grad=True)
        check(lambda x, w, b: lib(x).group_norm(x, 2, w, b), (2, 4, 3), (4,), (4,), grad=True)
        check(same("group_norm", 3), (2, 6, 2, 2), grad=True)
        check(lambda x, w, b: lib(x).instance_norm(x, weight=w, bias=b), (2, 3, 5), (3,), (3,), grad=True)
        check(same("normalize"), (3, 4), grad=True)
        check(same("normalize", p=1.0, dim=0), (3, 4), grad=True)
        check(same("normalize", p=3.0, dim=-1), (3, 4), grad=True)
        check(same("cosine_similarity"), (3, 4), (3, 4), grad=True)
        check(same("cosine_similarity", dim=-1), (2, 3, 4), (3, 4), grad=True)
        check(same("pairwise_distance"), (3, 4), (3, 4), grad=True)


def test_batch_and_instance_norm_update_running_statistics():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 2, 2)).astype(np.float32)
    w, b = rng.uniform(0.5, 1.5, 3).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    mean, var = rng.standard_normal(3).astype(np.float32), rng.uniform(0.5, 2, 3).astype(np.float32)
    t_mean, t_var = torch.from_numpy(mean.copy()), torch.from_numpy(var.copy())
    o_mean, o_var = Tensor(mean), Tensor(var)
    t_x, o_x = torch.from_numpy(x).requires_grad_(), Tensor(x, requires_grad=True)
    t_out = TF.batch_norm(t_x, t_mean, t_var, torch.from_numpy(w), torch.from_numpy(b), training=True, momentum=0.3)
    o_out = F.batch_norm(o_x, o_mean, o_var, Tensor(w), Tensor(b), training=True, momentum=0.3)
    np.testing.assert_allclose(o_out.numpy(), t_out.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(o_mean.numpy(), t_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(o_var.numpy(), t_var.numpy(), rtol=1e-5, atol=1e-6)
    t_out = TF.instance_norm(t_x, t_mean, t_var, momentum=0.2)
    o_out = F.instance_norm(o_x, o_mean, o_var, momentum=0.2)
    np.testing.assert_allclose(o_out.numpy(), t_out.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(o_mean.numpy(), t_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(o_var.numpy(), t_var.numpy(), rtol=1e-5, atol=1e-6)
    # evaluation with the updated statistics, and the gradients of both modes
    with batch():
        check(lambda x, m, v, w, b: F.batch_norm(x, m, v, w, b), x, o_mean.numpy(), o_var.numpy(), w, b, grad=True,
              torch_fn=lambda x, m, v, w, b: TF.batch_norm(x, m.detach(), v.detach(), w, b))  # fmt: skip
        check(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), (5, 3), (3,), (3,), grad=True,
              torch_fn=lambda x, w, b: TF.batch_norm(x, None, None, w, b, training=True))  # fmt: skip


def test_dropout():
    boltgrad.manual_seed(0)
    x = Tensor.ones(100, 100)
    out = F.dropout(x, 0.3).numpy()
    kept = out != 0
    assert 0.67 < kept.mean() < 0.73
    np.testing.assert_allclose(out[kept], 1 / 0.7, rtol=1e-6)
    assert not np.array_equal(kept, F.dropout(x, 0.3).numpy() != 0)  # a fresh mask per call
    assert F.dropout(x, 0.3, training=False) is x
    assert np.all(F.dropout(x, 1.0).numpy() == 0)
    channels = F.dropout2d(Tensor.ones(4, 50, 3, 3), 0.5).numpy()
    assert np.all(channels.min(axis=(2, 3)) == channels.max(axis=(2, 3)))  # whole channels kept or dropped
    assert 0.3 < (channels[:, :, 0, 0] != 0).mean() < 0.7
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout(x, 1.5)


def test_dropout_gradient_follows_the_mask():
    boltgrad.manual_seed(1)
    x = Tensor.ones(64, requires_grad=True)
    out = F.dropout(x, 0.5)
    out.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), out.numpy())  # 2 where kept, 0 where dropped


def test_embedding_and_one_hot():
    idx = np.array([[0, 3, 1], [4, 4, 2]])
    with batch():
        check(same("embedding"), idx, (5, 3), grad=True)
        check(same("embedding", padding_idx=4), idx, (5, 3), grad=True)
        check(same("embedding", padding_idx=-2), idx, (5, 3), grad=True)
        check(same("one_hot", 6), idx)
        check(same("one_hot"), idx)
    with pytest.raises(IndexError, match="index 7 is out of bounds for dimension 0 with size 5"):
        F.embedding(Tensor([1, 7, -1]), Tensor.ones(5, 2))  # known indices are checked, as torch does
    out = F.embedding(Tensor([1, 7, -1]) + 0, Tensor.ones(5, 2)).numpy()  # lazy: not read back to check
    assert np.all(out[0] == 1) and np.all(np.isnan(out[1:]))  # an index out of range gives NaN
    with pytest.raises(TypeError, match="integer"):
        F.one_hot(Tensor([1.0]))
    with pytest.raises(ValueError, match="padding_idx"):
        F.embedding(Tensor([1]), Tensor.ones(5, 2), padding_idx=5)


def test_pad_modes():
    with batch():
        check(same("pad", (1, 2)), (2, 3), grad=True)
        check(same("pad", (1, 0, 2, 1), value=-1.5), (2, 3, 4), grad=True)
        for mode in ("reflect", "replicate", "circular"):
            check(same("pad", (2, 1, 1, 2), mode=mode), (1, 2, 3, 4), grad=True)


ATTENTION = [
    ({}, (2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 5)),
    ({"is_causal": True}, (2, 2, 5, 4), (2, 2, 5, 4), (2, 2, 5, 4)),
    ({"is_causal": True, "scale": 0.3}, (1, 2, 3, 4), (1, 2, 5, 4), (1, 2, 5, 4)),  # causal aligned top-left
    ({"enable_gqa": True}, (1, 4, 3, 4), (1, 2, 5, 4), (1, 2, 5, 6)),
    ({}, (3, 4), (5, 4), (5, 2)),  # no batch or head dims
]


def test_scaled_dot_product_attention():
    rng = np.random.default_rng(3)
    bool_mask = rng.random((3, 6)) < 0.7
    bool_mask[:, 0] = True
    float_mask = rng.standard_normal((2, 1, 3, 6)).astype(np.float32)
    with batch():
        for kw, *shapes in ATTENTION:
            check(same("scaled_dot_product_attention", **kw), *shapes, grad=True)
        q, k, v = (1, 2, 3, 4), (1, 2, 6, 4), (1, 2, 6, 4)
        check(lambda q, k, v, m: lib_sdpa(q, k, v, attn_mask=m), q, k, v, bool_mask, grad=True)
        check(lambda q, k, v, m: lib_sdpa(q, k, v, attn_mask=m), (2, 2, 3, 4), k, v, float_mask, grad=True)
        empty_row = bool_mask.copy()
        empty_row[1] = False  # a query that may attend nothing gets zeros, as in torch
        check(lambda q, k, v, m: lib_sdpa(q, k, v, attn_mask=m), q, k, v, empty_row)


def lib(x):
    return TF if isinstance(x, torch.Tensor) else F


def lib_sdpa(q, k, v, **kw):
    lib = TF if isinstance(q, torch.Tensor) else F
    return lib.scaled_dot_product_attention(q, k, v, **kw)


def test_attention_dropout_keeps_rows_summing_to_the_kept_weight():
    boltgrad.manual_seed(2)
    q, k = Tensor.zeros(1, 1, 4, 8), Tensor.zeros(1, 1, 16, 8)
    v = Tensor.ones(1, 1, 16, 8)
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5).numpy()
    # uniform weights 1/16, each kept with scale 2: every output is 2 * (kept count) / 16
    counts = out * 8
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-5)
    assert 0 < out.mean() < 2


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: F.linear(Tensor.ones(2, 3), Tensor.ones(4, 5)), RuntimeError, r"2x3 and 5x4"),
        (lambda: F.layer_norm(Tensor.ones(2, 3), (4,)), RuntimeError, r"\[\*, 4\].*\[2, 3\]"),
        (lambda: F.group_norm(Tensor.ones(2, 6, 4), 4), RuntimeError, "divisible by num_groups"),
        (lambda: F.batch_norm(Tensor.ones(1, 3), None, None, training=True), ValueError, "more than 1 value"),
        (lambda: F.batch_norm(Tensor.ones(2, 3), Tensor.zeros(4), Tensor.ones(4)), RuntimeError, "3 elements, not 4"),
        (lambda: F.glu(Tensor.ones(2, 5)), RuntimeError, "even"),
        (lambda: F.scaled_dot_product_attention(Tensor.ones(1, 4, 3, 2), Tensor.ones(1, 3, 3, 2),
                                                Tensor.ones(1, 3, 3, 2), enable_gqa=True), RuntimeError, "heads"),
        (lambda: F.scaled_dot_product_attention(Tensor.ones(3, 2), Tensor.ones(3, 2), Tensor.ones(3, 2),
                                                attn_mask=Tensor.ones(3, 3), is_causal=True), RuntimeError, "causal"),
    ],
)  # fmt: skip
def test_bad_arguments_name_the_problem(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_python_device_subset():
    with batch():
        check(lambda x, w, b: lib(x).layer_norm(x, (4,), w, b), (3, 4), (4,), (4,), grad=True, device="PYTHON")
        check(same("hardswish"), (2, 5), grad=True, device="PYTHON")
        check(same("embedding"), np.array([2, 0, 2]), (3, 4), grad=True, device="PYTHON")
        check(same("scaled_dot_product_attention", is_causal=True), (1, 3, 2), (1, 3, 2), (1, 3, 2), grad=True,
              device="PYTHON")  # fmt: skip
    assert math.isfinite(F.dropout(Tensor.ones(8, device="PYTHON"), 0.5).sum().item())
