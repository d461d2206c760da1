"""Fusion is part of the contract: the kernels a graph becomes are counted (``boltgrad.stats``), and values checked."""

from __future__ import annotations

import numpy as np
import pytest

import boltgrad
from boltgrad import Tensor, stats

RNG = np.random.default_rng(0)


def inputs(*shapes: tuple[int, ...], device: str = "CPU") -> list[Tensor]:
    """Realized input tensors (buffers already on the device), so only the graph under test makes kernels."""
    ts = [Tensor(RNG.uniform(-2, 2, s).astype(np.float32), device=device) for s in shapes]
    Tensor.realize_all(ts)
    return ts


def count_kernels(*outs: Tensor) -> int:
    stats.reset()
    Tensor.realize_all(list(outs))
    return stats.kernels


def test_elementwise_and_reduce_fuse_into_one_kernel():
    a, b, c = inputs((4, 5), (4, 5), (5,))
    out = (a * b + c).relu().sum()
    assert count_kernels(out) == 1
    want = np.maximum(a.numpy() * b.numpy() + c.numpy(), 0).sum()
    assert out.item() == pytest.approx(float(want), rel=1e-5)


def test_reduce_with_epilogue_is_one_kernel():
    (x,) = inputs((8, 3))
    out = x.sum() / x.shape[0]
    assert count_kernels(out) == 1
    assert out.item() == pytest.approx(float(x.numpy().sum() / 8), rel=1e-5, abs=1e-6)
    (y,) = inputs((6, 7))
    out = (y.sum(1) * 2 + 1).exp()  # a reduction along a dim with an elementwise epilogue
    assert count_kernels(out) == 1
    np.testing.assert_allclose(out.numpy(), np.exp(y.numpy().sum(1) * 2 + 1), rtol=1e-5)


def test_long_elementwise_chain_is_one_kernel():
    a, b = inputs((16,), (16,))
    x = a
    for i in range(10):  # ten ops, alternating with a second input and constants
        x = (x * b) if i % 3 == 0 else (x + 0.5) if i % 3 == 1 else x.relu()
    assert count_kernels(x) == 1
    want = a.numpy()
    for i in range(10):
        want = want * b.numpy() if i % 3 == 0 else want + 0.5 if i % 3 == 1 else np.maximum(want, 0)
    np.testing.assert_allclose(x.numpy(), want, rtol=1e-6)


def test_softmax_numerator_is_two_kernels():
    (x,) = inputs((4, 6))
    out = (x - x.max(1, keepdim=True)[0]).exp()
    assert count_kernels(out) == 2  # the max, then the broadcast subtract and exp
    xn = x.numpy()
    np.testing.assert_allclose(out.numpy(), np.exp(xn - xn.max(1, keepdims=True)), rtol=1e-6)


def test_matmul_with_bias_and_activation_is_one_kernel():
    a, b, bias = inputs((3, 4), (4, 5), (5,))
    out = (a @ b + bias).relu()
    assert count_kernels(out) == 1
    # atol: the inputs come from a module-wide generator, so they depend on test order; a sum of 5 terms of up
    # to 8 that cancels to near 0 differs from numpy's (another summation order) by a few float32 ulps of 8
    want = np.maximum(a.numpy() @ b.numpy() + bias.numpy(), 0)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-5)


def test_views_fuse_into_their_reader():
    (x,) = inputs((4, 6))
    out = x.T.reshape(3, 8).flip(0)[1:, ::2].pad((1, 1)) * 2
    assert count_kernels(out) == 1
    want = np.pad(x.numpy().T.reshape(3, 8)[::-1][1:, ::2], ((0, 0), (1, 1))) * 2
    np.testing.assert_array_equal(out.numpy(), want)


def test_cat_is_one_kernel():
    a, b, c = inputs((2, 3), (4, 3), (1, 3))
    out = boltgrad.cat([a, b, c]) + 1
    assert count_kernels(out) == 1
    np.testing.assert_array_equal(out.numpy(), np.concatenate([a.numpy(), b.numpy(), c.numpy()]) + 1)


def test_contiguous_makes_its_own_kernel():
    (x,) = inputs((5, 5))
    mid = (x * 2).contiguous()
    out = mid + 1
    assert count_kernels(out) == 2
    np.testing.assert_array_equal(out.numpy(), x.numpy() * 2 + 1)


def test_realized_tensors_cost_nothing():
    (x,) = inputs((3, 3))
    y = (x + 1).realize()
    assert count_kernels(y) == 0
    stats.reset()
    y.numpy(), y.tolist(), x.numpy()
    assert stats.kernels == 0 and stats.compiles == 0
    z = y * 3  # reuses y's buffer instead of recomputing x + 1
    assert count_kernels(z) == 1
    np.testing.assert_allclose(z.numpy(), (x.numpy() + 1) * 3, rtol=1e-6)


def test_same_graph_twice_compiles_nothing_new():
    a, b = inputs((6, 7), (7,))
    first = ((a - b).abs().sum(1) * 3).sqrt()
    first.realize()
    stats.reset()
    again = ((a - b).abs().sum(1) * 3).sqrt()
    again.realize()
    assert stats.compiles == 0 and stats.kernels == 1
    # new data of the same shapes and dtypes is the same kernel too
    c, d = inputs((6, 7), (7,))
    stats.reset()
    other = ((c - d).abs().sum(1) * 3).sqrt()
    other.realize()
    assert stats.compiles == 0 and stats.kernels == 1
    np.testing.assert_allclose(other.numpy(), np.sqrt(np.abs(c.numpy() - d.numpy()).sum(1) * 3), rtol=1e-5)


def test_two_kernels_with_the_same_code_in_one_realize():
    """Two outputs whose kernels differ only in shape, realized together (one compile of both)."""
    a = Tensor(np.full((1,), 2.0, np.float32))
    b = Tensor(np.full((1, 1), 3.0, np.float32))
    s1, s2 = a.sum(), b.sum()
    Tensor.realize_all([s1, s2])
    assert (s1.item(), s2.item()) == (2.0, 3.0)


def test_copies_are_not_kernels():
    (x,) = inputs((4, 4))
    stats.reset()
    moved = x.to("PYTHON")
    moved.realize()
    assert stats.kernels == 0 and stats.copy_bytes >= 64
    assert moved.device == "PYTHON"
    np.testing.assert_array_equal(moved.numpy(), x.numpy())
    stats.reset()
    back = (moved * 2).to("CPU")
    back.realize()
    assert stats.kernels == 1  # the multiply on PYTHON; the copy back is free
    np.testing.assert_array_equal(back.numpy(), x.numpy() * 2)


def test_null_device_schedules_without_running():
    a, b, c = inputs((4, 5), (4, 5), (5,), device="NULL")
    stats.reset()
    out = (a * b + c).relu().sum()
    out.realize()
    assert stats.kernels == 1
    x = inputs((4, 6), device="NULL")[0]
    assert count_kernels((x - x.max(1, keepdim=True)[0]).exp()) == 2
    assert count_kernels(x.T.reshape(3, 8).flip(0) * 2, x.sum(0)) == 2
    assert out.shape == () and out.device == "NULL"


def _step_kernels(model, x, y, foreach=None, steps=3):
    """Kernels per training step (forward, backward, Adam), checking that reading the loss after the step runs
    none: it was computed in the same schedule as the gradients (no second forward pass)."""
    from boltgrad import optim
    from boltgrad.nn import functional as F

    opt = optim.Adam(model.parameters(), lr=1e-3, foreach=foreach)
    counts = []
    for _ in range(steps):
        stats.reset()
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        before_read = stats.kernels
        assert loss.item() > 0
        assert stats.kernels == before_read, "reading the loss after the step ran kernels again"
        counts.append(stats.kernels)
    assert counts[1] == counts[2], counts
    return counts[-1]


def test_training_step_is_a_bounded_number_of_kernels_and_the_loss_rides_along():
    """An MLP step: forward and backward are 14 kernels, and Adam updates all four parameters in 4 (step counter,
    m, v, parameters over the optimizer's flat buffers; the gradient kernels store into its flat gradient) where
    one kernel per tensor written made 16."""
    import numpy as np

    from boltgrad import nn

    x = Tensor(np.random.default_rng(0).standard_normal((32, 784)).astype(np.float32))
    y = Tensor(np.arange(32) % 10)
    flat = _step_kernels(nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)), x, y)
    per_tensor = _step_kernels(nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)), x, y, False)
    assert flat == per_tensor - 4 * 4 + 4 and flat <= 18, (flat, per_tensor)


def test_cnn_training_step_is_a_bounded_number_of_kernels():
    """The small Fashion-MNIST CNN (two convolutions with pooling, a linear layer; six parameters): forward and
    backward are 28 kernels (the first convolution's 9-long reduce stores its weight with the output channels
    innermost: a copy forward, and its gradient copied back into the flat gradient), Adam 4 more, not 24."""
    import numpy as np

    from boltgrad import nn

    def cnn():
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(8 * 2 * 2, 10),
        )  # fmt: skip

    x = Tensor(np.random.default_rng(0).standard_normal((8, 1, 8, 8)).astype(np.float32))
    y = Tensor(np.arange(8) % 10)
    flat, per_tensor = _step_kernels(cnn(), x, y), _step_kernels(cnn(), x, y, False)
    assert flat == per_tensor - 6 * 4 + 4 and flat <= 32, (flat, per_tensor)


def test_a_reduce_read_by_two_kernels_is_computed_once():
    """logits (a matmul) read through an elementwise chain by a max and by an arg-max: materialized once,
    not recomputed inside both reductions."""
    import numpy as np

    from boltgrad.schedule.schedule import create_schedule

    h, w = Tensor(np.ones((1, 64), np.float32)), Tensor(np.ones((512, 64), np.float32))
    scaled = (h @ w.T) * 0.5  # the chain the two reductions share
    sched = create_schedule([scaled.amax(-1).node, scaled.argmax(-1).node])  # scheduled, not run
    over_k = [it for it in sched.items if any(n.op.name == "REDUCE" and n.src[0].shape[-1] == 64
                                              for n in it.ast.toposort())]  # fmt: skip
    assert len(over_k) == 1
    assert scaled.amax(-1).item() == 32.0 and scaled.argmax(-1).item() == 0
