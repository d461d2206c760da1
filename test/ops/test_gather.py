"""The GATHER primitive: data-dependent reads, fused with what computes the source and what reads the result."""

import numpy as np
import pytest
import torch
from helpers import check, on_devices

import boltgrad.nn.functional as F
from boltgrad import Tensor, stats
from boltgrad.tensor_gather import take_along


@on_devices
def test_embedding_matches_torch_with_gradients(device):
    ids = np.array([[3, 0, 7], [7, 7, 1]])
    check(lambda w: torch.nn.functional.embedding(torch.from_numpy(ids), w) if isinstance(w, torch.Tensor)
          else F.embedding(Tensor(ids, device=w.device), w), (9, 5), device=device)  # fmt: skip


@on_devices
def test_take_along_of_a_lazy_source_reads_only_gathered_positions(device):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((50, 6)).astype(np.float32)
    ids = np.array([49, 0, 13, 13])
    src = (Tensor(w, device=device) * 2 + 1).exp()  # stays lazy: evaluated at the gathered rows only
    got = take_along(src, 0, Tensor(ids, device=device)).numpy()
    np.testing.assert_allclose(got, np.exp(w[ids] * 2 + 1), rtol=1e-6)


@on_devices
def test_gather_along_inner_dims_and_out_of_range_reads_zero(device):
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    idx = np.array([[[3, 0], [1, 1]], [[0, 2], [3, 3]]])
    check(lambda t, i: t.gather(2, i), x, idx, device=device, grad=False)
    lazy_bad = Tensor(np.array([5, -1, 2]), device=device) + 0  # not known until run: no bounds check
    assert take_along(Tensor([1.0, 2.0, 3.0], device=device), 0, lazy_bad).tolist() == [0.0, 0.0, 3.0]


def test_known_out_of_range_index_raises():
    with pytest.raises(IndexError, match="index 9 is out of bounds for dimension 0 with size 9"):
        F.embedding(Tensor([1, 9]), Tensor.ones(9, 4))


def test_embedding_of_a_big_vocabulary_is_one_cheap_kernel():
    vocab, dim = 32768, 64
    w = Tensor.randn(vocab, dim).realize()
    ids = Tensor([5, 32767, 0])
    stats.reset()
    out = F.embedding(ids, w * 0.5)  # the scale fuses into the gather
    got = out.numpy()
    assert stats.kernels == 1
    np.testing.assert_allclose(got, w.numpy()[[5, 32767, 0]] * 0.5, rtol=1e-6)


def test_gather_gradient_accumulates_duplicates():
    w = Tensor(np.ones((4, 2), np.float32), requires_grad=True)
    out = take_along(w, 0, Tensor([2, 2, 0]))
    (out * Tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])).sum().backward()
    assert w.grad.tolist() == [[5.0, 6.0], [0.0, 0.0], [4.0, 6.0], [0.0, 0.0]]
