"""The engine: memory planning, one compile per realize, DEBUG output, caching of realized values."""

import numpy as np

import boltgrad
from boltgrad import Tensor
from boltgrad.engine.realize import _plan_memory
from boltgrad.schedule.schedule import create_schedule


def test_temporaries_share_memory_once_their_readers_ran():
    x = Tensor(np.arange(64, dtype=np.float32)).realize()
    a = (x + 1).contiguous()
    b = (a * 2).contiguous()
    c = (b * 3).contiguous()
    d = c + 1
    sched = create_schedule([d.node])
    _plan_memory(sched)
    temps = sched.temporaries
    assert len(temps) == 3
    # a is dead once b is computed, so c can live in a's memory; b overlaps both and needs its own
    bases = [t.base for t in temps]
    assert bases[0] is bases[2] and bases[1] is not bases[0]
    assert d.tolist() == [((v + 1) * 2 * 3) + 1 for v in range(64)]


def test_one_compiler_call_per_realize():
    x = Tensor(np.random.rand(8, 8).astype(np.float32)).realize()
    boltgrad.stats.reset()
    outs = [(x * k).sum(1) for k in (3.5, 7.25)] + [(x + 11.5).amax(0), x.T * 13.0]
    Tensor.realize_all(outs)
    assert boltgrad.stats.kernels == 4
    assert boltgrad.stats.compiles <= 1


def test_debug_levels_print(monkeypatch, capsys):
    x = Tensor([1.0, 2.0, 3.0]).realize()
    monkeypatch.setenv("DEBUG", "2")
    (x * 123.0).realize()
    err = capsys.readouterr().err
    assert "realize: 1 kernels" in err and "GFLOP/s" in err
    monkeypatch.setenv("DEBUG", "4")
    (x * 321.0).realize()
    assert "void " in capsys.readouterr().err


def test_a_realized_value_is_reused_until_its_input_is_overwritten():
    w = Tensor([1.0, 2.0]).realize()
    y = (w * 2).exp2()
    z = y + 1  # z's graph holds y's old graph
    y.realize()
    boltgrad.stats.reset()
    assert z.tolist() == [5.0, 17.0]
    assert boltgrad.stats.kernels == 1  # z reads y's buffer rather than recomputing it
    w.assign(w + 1).realize()
    again = (w * 2).exp2() + 1  # the same node as y's old graph: w's buffer is the same, its contents are not
    assert again.tolist() == [17.0, 65.0]  # w changed: the remembered value of y is stale, so it is recomputed


def test_a_given_toposort_resolves_realized_parts_as_the_walk_of_its_own():
    """``create_schedule`` takes the targets' toposort from its caller (one walk serves the read versions, the
    realized parts and the structure); the graph it schedules is the same as with a walk of its own."""
    from boltgrad.ir.node import toposort
    from boltgrad.schedule.schedule import _resolve

    w = Tensor([1.0, 2.0, 3.0]).realize()
    y = (w * 2).exp2()
    z = (y + 1) * (w - 1)
    fresh = [z.node]
    assert _resolve(fresh, {}) == _resolve(fresh, {}, toposort(fresh)) == (fresh, False)
    y.realize()  # z's graph now holds a realized part
    walked, given = _resolve(fresh, {}), _resolve(fresh, {}, toposort(fresh))
    assert walked == given and given[1] and given[0] != fresh
    assert Tensor._from_node(given[0][0]).tolist() == [0.0, 17.0, 130.0]


def test_assign_reads_before_overwrite():
    w = Tensor([[1.0, 2.0], [3.0, 4.0]]).realize()
    y = w * 2
    w.assign(w.T + 0)
    Tensor.realize_all([w, y])
    assert y.tolist() == [[2.0, 4.0], [6.0, 8.0]]
    assert w.tolist() == [[1.0, 3.0], [2.0, 4.0]]


def test_copy_between_devices_counts_bytes_not_kernels():
    x = Tensor([1.0, 2.0, 3.0, 4.0]).realize()
    boltgrad.stats.reset()
    y = x.to("PYTHON").realize()
    assert boltgrad.stats.kernels == 0 and boltgrad.stats.copy_bytes == 2 * 16
    assert y.device == "PYTHON" and (y + 1).tolist() == [2.0, 3.0, 4.0, 5.0]


def test_a_constant_realized_into_an_assigned_buffer_is_not_reused_after_the_assign():
    t = Tensor.zeros(5)
    t.assign(Tensor([1.0, 2, 3, 4, 5]) * 1.0 + 2.0)
    t.realize()
    t.assign(Tensor([10.0, 20, 30, 40, 50]) + 0.0)
    assert t.tolist() == [10.0, 20.0, 30.0, 40.0, 50.0]
    assert (Tensor.zeros(5) + 1).tolist() == [1.0] * 5


def test_repeated_lazy_assigns_apply_once_each():
    a = Tensor([0.0]).contiguous().realize()
    for _ in range(3):
        a.assign(a + 1)
    assert a.item() == 3.0


def test_backward_after_reading_the_loss():
    x = Tensor([1.0, 2.0], requires_grad=True)
    loss = (x * x).sum()
    assert loss.item() == 5.0
    loss.backward()
    assert x.grad.tolist() == [2.0, 4.0]
    Tensor.realize_all([x.grad, x.grad])  # the same tensor twice is fine


def test_an_expression_of_variables_computes_on_the_device_of_its_reader():
    # constants beside a Variable are of no device, and a stored expression of Variables goes where it is read:
    # realized first as a CPU value, the same graph read by a PYTHON kernel must not hand it the CPU buffer
    last = boltgrad.Variable("engine_last", 0, 3).bind(2)
    index = (last * 2 - 1).contiguous()
    assert index.item() == 3  # on the default device, and remembered there
    for device in ("CPU", "PYTHON"):
        x = Tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]], device=device)
        y = x + (last * 2 - 1).contiguous()
        sched = create_schedule([y.node])
        assert {b.device for item in sched.items for b in item.buffers} == {device}
        assert y.tolist() == [[4.0, 5.0], [6.0, 7.0], [8.0, 9.0], [10.0, 11.0]]
        assert x[last].tolist() == [5.0, 6.0]


def test_empty_cache_returns_the_blocks_the_allocator_kept():
    from boltgrad.device.registry import get_device

    allocator = get_device("CPU").allocator
    handle = allocator.alloc(1 << 20)
    allocator.free(handle, 1 << 20)  # kept for reuse
    assert allocator._cached_bytes >= 1 << 20
    boltgrad.empty_cache()
    assert allocator._cached_bytes == 0
    assert (Tensor([1.0, 2.0]) * 2).tolist() == [2.0, 4.0]  # the device still works
