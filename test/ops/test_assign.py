"""assign and in-place writes as the schedule orders them: reads of the old value, swaps, chains of writes."""

import numpy as np

import boltgrad
from boltgrad import Tensor


def test_swap_two_tensors_in_one_realize():
    """Each assign reads the other's old value: the scheduler snapshots one read instead of ordering wrongly."""
    a, b = Tensor([1.0, 2.0, 3.0]), Tensor([10.0, 20.0, 30.0])
    buf_a, buf_b = a._contiguous_buffer(), b._contiguous_buffer()
    old_a, old_b = a * 1, b * 1
    a.assign(old_b)
    b.assign(old_a)
    Tensor.realize_all([a, b])
    assert a.tolist() == [10.0, 20.0, 30.0] and b.tolist() == [1.0, 2.0, 3.0]
    assert a._contiguous_buffer() is buf_a and b._contiguous_buffer() is buf_b  # still in place


def test_assign_reading_old_and_new_values():
    # b's value reads a's old value directly and a's new value through the assign: as torch's eager order gives
    a, b = Tensor([1.0, 2.0]), Tensor([5.0, 6.0])
    old_a, old_b = a + 0, b + 0
    a.assign(old_b * 2)
    b.assign(old_a + a)
    Tensor.realize_all([b, a])
    assert a.tolist() == [10.0, 12.0] and b.tolist() == [11.0, 14.0]


def test_three_way_rotation():
    ts = [Tensor([float(i)]) for i in range(3)]
    olds = [t * 1 for t in ts]
    for i, t in enumerate(ts):
        t.assign(olds[(i + 1) % 3])
    Tensor.realize_all(ts)
    assert [t.item() for t in ts] == [1.0, 2.0, 0.0]


def test_an_assign_realized_through_another_tensor_is_not_repeated():
    x = Tensor([1.0, 2.0])
    x += 1  # pending
    view = x[0:1] * 1
    assert view.tolist() == [2.0]  # runs the assign as part of view's graph
    assert x.tolist() == [2.0, 3.0]  # realizing x itself must not add 1 again
    x += 1
    assert x.tolist() == [3.0, 4.0]


def test_optimizer_like_updates_with_shared_reads():
    rng = np.random.default_rng(0)
    w0, m0, g0 = (rng.standard_normal(4).astype(np.float32) for _ in range(3))
    w, m, g = Tensor(w0), Tensor(m0), Tensor(g0)
    with boltgrad.no_grad():
        m.assign(m * 0.9 + g)
        w.assign(w - m * 0.1)  # reads m's new value through the assign
    Tensor.realize_all([w, m])
    np.testing.assert_allclose(m.numpy(), m0 * 0.9 + g0, rtol=1e-6)
    np.testing.assert_allclose(w.numpy(), w0 - (m0 * 0.9 + g0) * 0.1, rtol=1e-6)
