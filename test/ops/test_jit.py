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


def test_returning_a_state_tensor_is_refused():
    w = Tensor([1.0, 2.0]).realize()

    @boltgrad.jit
    def f(x):
        w.assign(w + x).realize()
        return w

    f(Tensor([1.0, 1.0]))
    with pytest.raises(RuntimeError, match="did not compute"):
        f(Tensor([1.0, 1.0]))
