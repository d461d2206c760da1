"""The JIT: replay equals eager execution bit for bit, fresh outputs, fresh random numbers, recapture rules."""

import numpy as np
import pytest

import boltgrad
from boltgrad import Tensor


def _train(steps: int, use_jit: bool) -> tuple[list[float], np.ndarray]:
    rng = np.random.default_rng(0)
    w = Tensor(rng.standard_normal((8, 4)).astype(np.float32), requires_grad=True)
    xs = [Tensor(rng.standard_normal((16, 8)).astype(np.float32)) for _ in range(steps)]

    def step(x):
        w.grad = None
        loss = ((x @ w).relu() - 1).square().mean()
        loss.backward()
        with boltgrad.no_grad():
            w.assign(w - 0.1 * w.grad)
        w.realize()
        return loss

    fn = boltgrad.jit(step) if use_jit else step
    losses = [fn(x).item() for x in xs]
    return losses, w.numpy()


def test_replay_matches_eager_bit_for_bit():
    eager_losses, eager_w = _train(8, use_jit=False)
    jit_losses, jit_w = _train(8, use_jit=True)
    assert jit_losses == eager_losses
    assert np.array_equal(jit_w, eager_w)


def test_replay_launches_without_calling_the_function():
    calls = []

    @boltgrad.jit
    def f(x):
        calls.append(1)
        return (x * 2 + 1).sum(0)

    xs = [Tensor(np.full((4, 3), float(i), np.float32)) for i in range(5)]
    outs = [f(x) for x in xs]
    assert len(calls) == 2  # a plain run, then the recording; later calls replay
    assert [o.tolist() for o in outs] == [[(2 * i + 1) * 4.0] * 3 for i in range(5)]
    assert outs[3] is not outs[4] and outs[3].tolist() != outs[4].tolist()  # fresh outputs, no aliasing


def test_changed_input_shape_recaptures():
    calls = []

    @boltgrad.jit
    def f(x):
        calls.append(x.shape)
        return x + 1

    for n in (3, 3, 3, 5, 5, 5):
        assert f(Tensor([1.0] * n)).tolist() == [2.0] * n
    assert calls == [(3,), (3,), (5,), (5,)]


def test_dropout_like_randomness_is_fresh_on_every_replay():
    @boltgrad.jit
    def noisy(x):
        return x + Tensor.rand(*x.shape)

    x = Tensor(np.zeros((64,), np.float32))
    draws = [noisy(x).numpy() for _ in range(5)]
    for i in range(len(draws)):
        for j in range(i + 1, len(draws)):
            assert not np.array_equal(draws[i], draws[j])


def test_without_warmup_the_first_call_records():
    calls = []

    @boltgrad.jit(warmup=False)
    def f(x):
        calls.append(x.shape)
        return (x * 3).sum(0)

    for n in (3, 3, 3, 5, 5):
        assert f(Tensor(np.full((2, n), float(n), np.float32))).tolist() == [6.0 * n] * n
    assert calls == [(2, 3), (2, 5)]  # one recording per input shape, no plain run before it


def test_a_replay_draws_from_the_seed_set_since_the_recording():
    @boltgrad.jit
    def noisy(x):
        return x + Tensor.rand(*x.shape)

    x = Tensor(np.zeros((16,), np.float32))

    def draws(seed: int) -> np.ndarray:
        boltgrad.manual_seed(seed)
        return np.stack([noisy(x).numpy() for _ in range(3)])

    first = draws(3)  # the plain run, the recording and a replay
    assert np.array_equal(draws(3), first)  # replays only: the same seed repeats the draws
    assert not np.array_equal(draws(4), first)


def test_returning_a_state_tensor_is_refused():
    w = Tensor([1.0, 2.0]).realize()

    @boltgrad.jit
    def f(x):
        w.assign(w + x).realize()
        return w

    f(Tensor([1.0, 1.0]))
    with pytest.raises(RuntimeError, match="did not compute"):
        f(Tensor([1.0, 1.0]))


def test_variable_is_a_launch_argument_not_a_constant():
    pos = boltgrad.Variable("jit_pos_a", 0, 15)
    counts = []
    for p in (3, 9, 0, 15):
        counts.append((boltgrad.arange(16) <= pos.bind(p)).sum().item())
    assert counts == [4, 10, 1, 16]
    assert pos.item() == 15 and pos.tolist() == 15 and (pos * 2 + 1).item() == 31
    with pytest.raises(ValueError, match="outside its bounds"):
        pos.bind(16)
    with pytest.raises(ValueError, match="already exists"):
        boltgrad.Variable("jit_pos_a", 0, 7)


def _decode_steps(use_jit: bool) -> list[list[float]]:
    """A toy decode loop: write a row of a cache at a symbolic position, then average the rows up to it."""
    max_len, dim = 8, 4
    cache = Tensor.zeros(max_len, dim).contiguous().realize()
    pos = boltgrad.Variable("jit_decode_pos", 0, max_len - 1)

    def step(x, p):
        rows = boltgrad.arange(max_len).reshape(max_len, 1)
        cache.assign(boltgrad.where(rows == p, x.reshape(1, dim), cache)).realize()
        seen = (rows <= p).float()
        return (cache * seen).sum(0) / (p + 1).float()

    fn = boltgrad.jit(step) if use_jit else step
    outs = []
    for i in range(max_len):
        pos.bind(i)
        x = Tensor(np.full(dim, float(i * i), np.float32))
        outs.append(fn(x, pos).tolist())
    return outs


def test_one_recording_serves_every_position():
    eager = _decode_steps(use_jit=False)
    assert eager[3] == [sum(i * i for i in range(4)) / 4] * 4
    assert _decode_steps(use_jit=True) == eager


def test_closed_over_variable_is_read_at_each_replay():
    max_len = 6
    pos = boltgrad.Variable("jit_closed_pos", 0, max_len - 1)
    calls = []

    @boltgrad.jit
    def f(x):
        calls.append(1)
        return (x * (boltgrad.arange(max_len) <= pos).float()).sum()

    x = Tensor(np.ones(max_len, np.float32))
    got = []
    for i in range(max_len):
        pos.bind(i)
        got.append(f(x).item())
    assert got == [float(i + 1) for i in range(max_len)]
    assert len(calls) == 2


def test_memory_plan_shares_intermediates():
    w = Tensor(np.ones((64, 64), np.float32)).realize()

    @boltgrad.jit
    def f(x):
        h = x
        for _ in range(6):  # each layer's output is an intermediate the next one frees
            h = (h @ w).relu().contiguous() * 0.5
        return h.sum(1)

    x = Tensor(np.ones((32, 64), np.float32))
    with pytest.raises(RuntimeError, match="nothing is recorded"):
        f.memory()
    for _ in range(3):
        f(x)
    plan = f.memory()
    assert plan.inputs == 32 * 64 * 4 and plan.outputs == 32 * 4 and plan.state == 64 * 64 * 4
    assert 0 < plan.intermediates < plan.intermediates_unshared
    assert plan.peak == plan.inputs + plan.outputs + plan.state + plan.intermediates
    assert "peak" in str(plan)


def test_a_recording_does_not_depend_on_constants_realized_before_it():
    # a realized constant (the 0.5 and 0 below) is not remembered: the recorded step computes its constants
    # inline instead of reading buffers some earlier, unrelated code happened to realize
    kept = [Tensor.full((), v) for v in (0.5, 0.0)]
    nodes = [t.node for t in kept]
    Tensor.realize_all(kept)
    w = Tensor(np.ones((8, 8), np.float32)).realize()

    @boltgrad.jit
    def f(x):
        return ((x @ w).relu() * 0.5).sum(1)

    x = Tensor(np.ones((4, 8), np.float32))
    for _ in range(3):
        f(x)
    assert f.memory().state == 8 * 8 * 4  # w only
    assert nodes  # the constants' graphs stayed alive through the recording
