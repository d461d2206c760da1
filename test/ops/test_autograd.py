"""Gradients against PyTorch, and the autograd API: accumulation, no_grad, detach, errors, kernel counts."""

import numpy as np
import pytest
import torch
from helpers import batch, check

import boltgrad
from boltgrad import Tensor

UNARY = {
    "neg": lambda x: -x,
    "exp": lambda x: x.exp(),
    "log": lambda x: (x.abs() + 0.5).log(),
    "sqrt": lambda x: (x.abs() + 0.5).sqrt(),
    "sin": lambda x: x.sin(),
    "cos": lambda x: x.cos(),
    "sigmoid": lambda x: x.sigmoid(),
    "tanh": lambda x: x.tanh(),
    "relu": lambda x: x.relu(),
    "reciprocal": lambda x: (x.abs() + 0.5).reciprocal(),
    "square": lambda x: x.square(),
    "abs": lambda x: x.abs(),
    "pow3": lambda x: x**3,
    "powf": lambda x: (x.abs() + 0.5) ** 1.7,
    "clamp": lambda x: x.clamp(-0.5, 0.7),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_grad(name):
    check(UNARY[name], (3, 5), grad=True)


BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (b.abs() + 0.5),
    "maximum": lambda a, b: a.maximum(b),
    "minimum": lambda a, b: a.minimum(b),
    "where": lambda a, b: (a > b).float().bool().logical_not().logical_not() * 0 + a.where(a > b, b),
    "pow": lambda a, b: (a.abs() + 0.5) ** b,
    "matmul": lambda a, b: a @ b.T,
}


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_grad(name):
    check(BINARY[name], (4, 3), (4, 3), grad=True)


def test_broadcast_and_movement_grads():
    with batch():
        check(lambda a, b: a * b, (4, 1, 3), (5, 1), grad=True)
        check(lambda a: a.reshape(6, 2).T.flip(0)[1:, ::2].sum(0), (3, 4), grad=True)
        check(lambda a: a.permute(2, 0, 1).expand(2, 3, 4, 2).contiguous() * 2, (4, 2, 1), grad=True)
        check(lambda a: a.pad((1, 2, 0, 1)) * 3, (2, 3), grad=True,
              torch_fn=lambda a: torch.nn.functional.pad(a, (1, 2, 0, 1)) * 3)  # fmt: skip
        check(lambda a, b: boltgrad.cat([a, b], 1) if isinstance(a, Tensor) else torch.cat([a, b], 1),
              (2, 3), (2, 4), grad=True)  # fmt: skip


def test_reduction_grads():
    with batch():
        check(lambda a: a.sum(1), (3, 4), grad=True)
        check(lambda a: a.mean(), (3, 4), grad=True)
        check(lambda a: a.amax(0), (3, 4), grad=True)
        check(lambda a: a.amin(1, keepdim=True), (3, 4), grad=True)
        check(lambda a: a.prod(1), (3, 4), grad=True, low=0.5, high=1.5)
        check(lambda a, b: (a @ b).relu().sum(), (5, 7), (7, 3), grad=True)


def test_max_grad_splits_ties_like_torch():
    x = np.array([1.0, 3.0, 3.0, 2.0], np.float32)
    check(lambda a: a.amax(), x, grad=True)


def test_grad_accumulates_and_can_be_reset():
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x * x).sum().backward()
    (x * 3).sum().backward()
    assert x.grad.tolist() == [5.0, 7.0, 9.0]
    x.grad = None
    (x * 2).sum().backward()
    assert x.grad.tolist() == [2.0, 2.0, 2.0]


def test_backward_with_gradient_argument():
    x = Tensor([1.0, 2.0], requires_grad=True)
    (x * x).backward(Tensor([10.0, 100.0]))
    assert x.grad.tolist() == [20.0, 400.0]


def test_no_grad_and_detach():
    x = Tensor([1.0, 2.0], requires_grad=True)
    assert (x * 2).requires_grad and not (x * 2).detach().requires_grad
    with boltgrad.no_grad():
        y = x * 2
    assert not y.requires_grad
    z = (x.detach() * x).sum()
    z.backward()
    assert x.grad.tolist() == [1.0, 2.0]  # the detached factor passes no gradient

    @boltgrad.no_grad()
    def f(t):
        return t * 3

    assert not f(x).requires_grad
    assert not x.grad.requires_grad


def test_numpy_on_a_tensor_that_requires_grad():
    x = Tensor([1.0, 2.0], requires_grad=True)
    assert (x * 2).numpy().tolist() == [2.0, 4.0]


def test_backward_errors():
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor([1.0, 2.0]).sum().backward()
    x = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="scalar"):
        (x * 2).backward()
    with pytest.raises(RuntimeError, match="floating point"):
        Tensor([1, 2], requires_grad=True)


def test_two_equal_lazy_leaves_get_their_own_grads():
    a = Tensor.zeros(3, requires_grad=True)
    b = Tensor.zeros(3, requires_grad=True)
    (a * 2 + b * 5).sum().backward()
    assert a.grad.tolist() == [2.0] * 3 and b.grad.tolist() == [5.0] * 3


def test_mlp_backward_is_a_few_fused_kernels():
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((16, 32)).astype(np.float32))
    w1 = Tensor(rng.standard_normal((32, 64)).astype(np.float32), requires_grad=True)
    w2 = Tensor(rng.standard_normal((64, 10)).astype(np.float32), requires_grad=True)
    loss = ((x @ w1).relu() @ w2).square().mean()
    loss.backward()
    boltgrad.stats.reset()
    Tensor.realize_all([loss, w1.grad, w2.grad])
    # forward matmuls, the loss, and one kernel per weight gradient plus the shared upstream gradient
    assert boltgrad.stats.kernels <= 8, boltgrad.stats.kernels
    xt = torch.tensor(x.numpy())
    w1t = torch.tensor(w1.numpy(), requires_grad=True)
    w2t = torch.tensor(w2.numpy(), requires_grad=True)
    ((xt @ w1t).relu() @ w2t).square().mean().backward()
    np.testing.assert_allclose(w1.grad.numpy(), w1t.grad.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(w2.grad.numpy(), w2t.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_softmax_family_and_moments():
    with batch():
        check(lambda a: a.softmax(1), (4, 6), grad=True)
        check(lambda a: a.log_softmax(-1), (4, 6), grad=True)
        check(lambda a: a.logsumexp(1), (4, 6), grad=True)
        check(lambda a: a.var(1), (4, 6), grad=True)
        check(lambda a: a.std(0, keepdim=True), (4, 6), grad=True)
        check(lambda a: a.var(correction=0), (4, 6), grad=True)


def test_prod_grad_with_zeros_matches_torch():
    x = np.array([[1.5, 0.0, 2.0], [0.0, 0.0, 3.0], [1.0, 2.0, -4.0]], np.float32)
    with batch():
        check(lambda a: a.prod(1), x, grad=True)
        check(lambda a: a.prod(), x, grad=True)
