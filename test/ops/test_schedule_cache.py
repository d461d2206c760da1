"""Schedules reused by graph structure (schedule/cache.py): a repeated graph over new buffers and Variable values
computes what scheduling it from scratch computes."""

import numpy as np
import pytest

import boltgrad
from boltgrad import Tensor, nn, optim
from boltgrad.nn import functional as F
from boltgrad.schedule import cache


def _train(steps: int) -> tuple[list[float], list[np.ndarray]]:
    """A few Adam steps of a small MLP with dropout (random bits: Variable values change every step)."""
    boltgrad.manual_seed(3)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Dropout(0.25), nn.Linear(16, 5))
    opt = optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(steps):
        x = Tensor(rng.standard_normal((8, 12)).astype(np.float32))
        y = Tensor(rng.integers(0, 5, 8))
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, [p.numpy() for p in model.parameters()]


def test_training_steps_reuse_their_schedules_and_compute_the_same(monkeypatch):
    monkeypatch.setenv("BOLT_SCHEDULE_CACHE", "0")
    boltgrad.stats.reset()
    losses, params = _train(4)
    assert boltgrad.stats.schedules_reused == 0
    monkeypatch.setenv("BOLT_SCHEDULE_CACHE", "1")
    cache.clear()
    boltgrad.stats.reset()
    cached_losses, cached_params = _train(4)
    # every step after the first builds the graphs of the one before over new buffers
    assert boltgrad.stats.schedules_reused >= 3 * 2
    assert cached_losses == losses
    for a, b in zip(cached_params, params):
        np.testing.assert_array_equal(a, b)
    assert len(set(losses)) == len(losses)  # the steps did differ


def test_buffers_aliased_differently_schedule_apart():
    # writing b reversed into a is one kernel; writing a reversed into a itself needs a temporary first (an
    # in-place flip would read elements it already overwrote). The two graphs differ only in which buffers
    # are the same one, so they must not share a schedule.
    a = Tensor(np.arange(6, dtype=np.float32)).contiguous().realize()
    b = Tensor(np.arange(6, dtype=np.float32) * 10).contiguous().realize()
    a.assign(b.flip(0)).realize()
    assert a.tolist() == [50.0, 40.0, 30.0, 20.0, 10.0, 0.0]
    a.assign(a.flip(0)).realize()
    assert a.tolist() == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]
    c = Tensor(np.arange(6, dtype=np.float32)).contiguous().realize()
    c.assign(c.flip(0)).realize()  # the aliased graph again, over another buffer: its own schedule, reused
    assert c.tolist() == [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]


def test_a_reused_schedule_binds_each_graph_s_variable_values():
    pos = boltgrad.Variable("cache_pos", 0, 15)
    x = Tensor(np.arange(16, dtype=np.float32)).realize()
    boltgrad.stats.reset()
    sums = [(x * (boltgrad.arange(16) <= pos.bind(p)).float()).sum().item() for p in (3, 9, 0, 15)]
    assert sums == [6.0, 45.0, 0.0, 120.0]
    assert boltgrad.stats.schedules_reused == 3


def test_a_reused_schedule_with_a_copy_between_devices():
    outs = []
    for k in range(3):
        x = Tensor(np.full(4, k, np.float32))
        outs.append(((x * 2).to("PYTHON") + 1).tolist())
    assert outs == [[1.0] * 4, [3.0] * 4, [5.0] * 4]


def test_assigned_values_stay_current_when_the_assign_s_schedule_is_reused():
    w = Tensor([1.0, 2.0]).contiguous().realize()
    for step in range(3):
        tripled = w * 3
        later = tripled + 0.5  # holds tripled's graph, which realize() records as computed from w's version now
        tripled.realize()
        y = w * 2
        new = w.assign(w + 1)
        z = new * 5
        Tensor.realize_all([y, z])  # one schedule, the assign realized through z: y reads w before it
        assert y.tolist() == [2.0 * (1 + step), 2.0 * (2 + step)]
        assert z.tolist() == [5.0 * (2 + step), 5.0 * (3 + step)]
        # later, built before the assign, was computed with it from the old w (as torch computes it at once)
        assert later.tolist() == [3.0 * (1 + step) + 0.5, 3.0 * (2 + step) + 0.5]
        # the assign gave w a new version, which voids the record: tripled's graph built again reads the new w
        assert (w * 3 + 0.5).tolist() == [3.0 * (2 + step) + 0.5, 3.0 * (3 + step) + 0.5]
        assert new.tolist() == [2.0 + step, 3.0 + step]  # still the ASSIGN node: reads the buffer, writes no more


def test_templates_are_bounded(monkeypatch):
    monkeypatch.setattr(cache, "MAX_TEMPLATES", 4)
    cache.clear()
    for n in range(1, 10):
        assert (Tensor.ones(n) * 3).sum().item() == pytest.approx(3.0 * n)
    assert len(cache._templates) == 4
