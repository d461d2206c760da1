"""assign and in-place writes as the schedule orders them: reads of the old value, swaps, chains of writes."""

import numpy as np
import pytest

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


# ---- block writes: assign_at and x[basic index] = v


@pytest.mark.parametrize("device", ["CPU", "PYTHON"])
def test_block_write_touches_only_the_block(device):
    x = Tensor(np.arange(24, dtype=np.float32).reshape(2, 3, 4), device=device).contiguous().realize()
    buffer = x._contiguous_buffer()
    want = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    x[1, 0:2, 1:3] = Tensor([[-1.0, -2.0], [-3.0, -4.0]], device=device)
    want[1, 0:2, 1:3] = [[-1, -2], [-3, -4]]
    x[..., 3] = 9.0
    want[..., 3] = 9
    x[0, -1] += 100.0
    want[0, -1] += 100
    np.testing.assert_array_equal(x.numpy(), want)
    assert x._contiguous_buffer() is buffer


def test_block_write_is_one_small_kernel():
    from boltgrad.engine.realize import start_capture, stop_capture

    x = Tensor.zeros(512, 512).contiguous().realize()
    x[3:5, 7:9] = Tensor([[1.0, 2.0], [3.0, 4.0]])
    start_capture()
    try:
        x.realize()
    finally:
        launches = stop_capture()
    assert len(launches) == 1 and launches[0].launch.size * launches[0].launch.cost <= 4  # the loop covers the block
    assert x[3:5, 7:9].tolist() == [[1.0, 2.0], [3.0, 4.0]] and x.sum().item() == 10.0


def test_run_time_start_from_a_variable_and_clamping():
    cache = Tensor.zeros(5, 3).contiguous().realize()
    pos = boltgrad.Variable("assign_pos", 0, 4)
    for i in range(5):
        cache[pos.bind(i)] = Tensor([float(i)] * 3)
    assert cache.numpy()[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    block = Tensor.zeros(4).contiguous().realize()
    block.assign_at((Tensor(3) + 0,), Tensor([7.0, 8.0])).realize()  # 3 + 2 > 4: clamped to start 2
    assert block.tolist() == [0.0, 0.0, 7.0, 8.0]
    with pytest.raises(IndexError, match="outside dim 0"):
        block.assign_at((3,), Tensor([1.0, 2.0]))


def test_jitted_decode_writes_one_row_per_step():
    ctx, dim = 8, 4
    cache = Tensor.zeros(ctx, dim).contiguous().realize()
    pos = boltgrad.Variable("assign_decode_pos", 0, ctx - 1)

    @boltgrad.jit
    def step(row):
        cache[pos] = row
        cache.realize()
        return (cache * (boltgrad.arange(ctx) <= pos).float().reshape(ctx, 1)).sum(0)

    outs = []
    for i in range(ctx):
        pos.bind(i)
        outs.append(step(Tensor([float(i + 1)] * dim)).tolist())
    assert outs[-1] == [float(sum(range(1, ctx + 1)))] * dim
    assert outs[2] == [6.0] * dim
    assert cache.numpy()[:, 0].tolist() == [float(i + 1) for i in range(ctx)]


def test_tensors_built_alike_do_not_share_what_is_written():
    """Equal graphs realize to one buffer; the first write to one of the tensors gives it a copy of its own."""
    a, b = Tensor.zeros(4).contiguous(), Tensor.zeros(4).contiguous()
    Tensor.realize_all([a, b])
    a.assign(Tensor.ones(4)).realize()
    assert a.tolist() == [1.0] * 4 and b.tolist() == [0.0] * 4
    e, f = Tensor.empty(4).zero_(), Tensor.empty(4).zero_()
    e.realize()
    f.realize()
    e += 1
    assert e.tolist() == [1.0] * 4 and f.tolist() == [0.0] * 4
    c, d = Tensor.zeros(3).contiguous(), Tensor.zeros(3).contiguous()
    Tensor.realize_all([c, d])
    c[1] = 5.0
    assert c.tolist() == [0.0, 5.0, 0.0] and d.tolist() == [0.0] * 3
    buf = c._contiguous_buffer()
    c[2] = 6.0  # now the sole holder: written in place
    assert c._contiguous_buffer() is buf and c.tolist() == [0.0, 5.0, 6.0]


# ---- values computed before a write keep the old values (torch's eager order); views see the new ones


def test_a_value_computed_before_a_write_keeps_the_old_values():
    w = Tensor([1.0, 2.0, 3.0]).contiguous().realize()
    doubled = w * 2
    prev = w.clone()
    w += 1
    w.realize()
    assert doubled.tolist() == [2.0, 4.0, 6.0] and prev.tolist() == [1.0, 2.0, 3.0]
    assert (w - prev).tolist() == [1.0, 1.0, 1.0]
    for _ in range(3):  # a snapshot stays as it was through later writes
        w.add_(1)
        w.realize()
    assert prev.tolist() == [1.0, 2.0, 3.0] and w.tolist() == [5.0, 6.0, 7.0]


def test_views_of_a_written_tensor_read_its_new_values():
    w = Tensor([1.0, 2.0, 3.0, 4.0]).contiguous().realize()
    head, grid, cut, flipped = w[0:2], w.reshape(2, 2).T, w.detach(), w.flip(0)
    w += 10
    w.realize()
    assert head.tolist() == [11.0, 12.0] and grid.tolist() == [[11.0, 13.0], [12.0, 14.0]]
    assert cut.tolist() == [11.0, 12.0, 13.0, 14.0]
    assert flipped.tolist() == [4.0, 3.0, 2.0, 1.0]  # flip is a copy (as in torch): computed before the write


def test_values_between_pending_writes_see_the_writes_before_them():
    w = Tensor([1.0, 2.0]).contiguous().realize()
    w.add_(1)  # pending
    after_one = w * 10  # reads the first write's value
    w.add_(1)
    w.realize()
    assert after_one.tolist() == [20.0, 30.0] and w.tolist() == [3.0, 4.0]


def test_a_write_inside_another_graph_is_also_a_write():
    """The write runs as part of another tensor's graph: values computed before it still get the old values."""
    w = Tensor([1.0, 2.0]).contiguous().realize()
    before = w + 0.5
    w.add_(1)
    through = w[0:1] * 3  # realizing this runs w's pending write
    assert through.tolist() == [6.0]
    assert before.tolist() == [1.5, 2.5] and w.tolist() == [2.0, 3.0]


def test_the_model_output_read_after_the_optimizer_step_is_that_of_the_old_weights():
    from boltgrad import nn, optim
    from boltgrad.nn import functional as F

    boltgrad.manual_seed(0)
    rng = np.random.default_rng(0)
    x, y = Tensor(rng.standard_normal((8, 5)).astype(np.float32)), Tensor(rng.integers(0, 3, 8))
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = optim.Adam(model.parameters(), lr=0.1)
    weights = [p.numpy() for p in model.parameters()]
    out = model(x)
    loss = F.cross_entropy(out, y)
    loss.backward()
    opt.step()
    assert not np.allclose(weights[0], model[0].weight.numpy())  # the step changed the weights
    want = np.maximum(x.numpy() @ weights[0].T + weights[1], 0) @ weights[2].T + weights[3]
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-5)


def test_a_jitted_step_leaves_values_computed_before_it_as_they_were():
    w = Tensor([1.0, 2.0]).contiguous().realize()

    @boltgrad.jit
    def step(x):
        w.assign(w + x)
        return (w * 1).realize()

    snapshots = []
    for i in range(5):  # a plain call, the recording, then replays
        snapshots.append((w * 100, i))
        step(Tensor([1.0, 1.0]))
    assert step.captured is not None
    for snap, i in snapshots:
        assert snap.tolist() == [100.0 * (1 + i), 100.0 * (2 + i)]
    assert w.tolist() == [6.0, 7.0]


def test_the_list_of_lazy_tensors_stays_short():
    from boltgrad import tensor_readers

    x = Tensor([1.0]).contiguous().realize()
    for _ in range(5000):
        x * 2 + 1  # built and dropped, never realized
    assert len(tensor_readers.tracked) <= 2 * 512


# ---- writes through views (torch's aliasing): x[0], x.T, reshape, detach, .data


def test_an_in_place_write_to_a_view_writes_its_base():
    x = Tensor(np.arange(12, dtype=np.float32).reshape(3, 4))
    want = np.arange(12, dtype=np.float32).reshape(3, 4)
    row = x[1]
    row += 100  # a view: x's row 1
    want[1] += 100
    x.T[3, 0] = -1.0  # x[0, 3]
    want[0, 3] = -1
    col = x[:, 2]
    col.mul_(2)
    want[:, 2] *= 2
    x.detach().reshape(12)[5:7].zero_()
    want.reshape(12)[5:7] = 0
    np.testing.assert_array_equal(x.numpy(), want)
    np.testing.assert_array_equal(row.numpy(), want[1])  # and the views show the base
    np.testing.assert_array_equal(col.numpy(), want[:, 2])
    x += 1  # a write to the base: its views show it too
    np.testing.assert_array_equal(row.numpy(), want[1] + 1)


def test_data_is_a_view_outside_autograd():
    p = Tensor([1.0, 2.0], requires_grad=True)
    ema = Tensor([0.0, 0.0])
    p.data.mul_(3)
    ema.data.mul_(0.5).add_(p.data, alpha=0.5)  # the EMA idiom
    assert p.tolist() == [3.0, 6.0] and ema.tolist() == [1.5, 3.0]
    p.data -= 1  # p.data = p.data.__isub__(1): the view was written, the setter keeps it
    assert p.tolist() == [2.0, 5.0] and p.is_leaf and p.requires_grad
    p.data = p.data.flip(0)  # a view of p's own memory that is not p's values: they are written
    assert p.tolist() == [5.0, 2.0]
    p.data = Tensor([7.0, 8.0, 9.0])  # another shape: p takes it, and stays the same leaf
    (p * p).sum().backward()
    assert p.tolist() == [7.0, 8.0, 9.0] and p.grad.tolist() == [14.0, 16.0, 18.0]


def test_copies_are_not_views_and_expanded_views_refuse_writes():
    x = Tensor([1.0, 2.0, 3.0, 4.0]).contiguous().realize()
    for copy in (x.flip(0), x[::-1], x.repeat(2), x.pad((1, 1)), x * 1, x.clone(), x[[0, 2]]):
        copy += 10
    assert x.tolist() == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(RuntimeError, match="made with expand"):
        x[0:1].expand(3).add_(1)
    fresh = Tensor.full((4,), 2.0)  # a constant broadcast has no memory: not a view of anything
    fresh += 1
    assert fresh.tolist() == [3.0] * 4


def test_a_view_realized_stays_a_view_and_two_views_alias():
    x = Tensor([1.0, 2.0, 3.0, 4.0]).contiguous().realize()
    a, b = x[0:2], x[1:3]
    assert a.tolist() == [1.0, 2.0] and b.tolist() == [2.0, 3.0]  # read: still views
    a += 10
    assert b.tolist() == [12.0, 3.0] and x.tolist() == [11.0, 12.0, 3.0, 4.0]
    shared = (x * 1).realize()
    twin = (x * 1).realize()  # an equal graph: one buffer for both, until one is written
    shared[0:1].fill_(0.0)
    assert shared.tolist() == [0.0, 12.0, 3.0, 4.0] and twin.tolist() == [11.0, 12.0, 3.0, 4.0]


def test_an_in_place_kernel_reads_its_target_through_its_output_pointer():
    """The kernel's pointers promise not to alias (``restrict``): the target is one parameter, read and written."""
    from boltgrad.schedule.schedule import create_schedule

    x, b = Tensor.arange(8.0).contiguous().realize(), Tensor.ones(8).contiguous().realize()
    x.assign(x * 2 + b)
    (item,) = create_schedule([x.node]).items
    assert len(item.buffers) == len({id(buf) for buf in item.buffers}) == 2
    assert x.tolist() == [2.0 * i + 1 for i in range(8)]
