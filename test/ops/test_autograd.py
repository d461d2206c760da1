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


# ---- backward through realized values and in-place ops ----


def test_backward_after_realizing_an_intermediate():
    def f(x, w):
        y = (x @ w).relu()
        if isinstance(y, Tensor):
            y.realize()  # the realized view stands for its graph: backward still reaches x and w
        z = y.exp() * 2
        if isinstance(z, Tensor):
            assert z.requires_grad
            z.numpy()
        return (z * y).sum(1)

    check(f, (3, 4), (4, 5), grad=True, low=-1, high=1)


def test_backward_after_item_and_realize_of_the_loss():
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * x
    y.realize()
    loss = y.sum()
    assert loss.item() == 14.0
    loss.backward()
    assert x.grad.tolist() == [2.0, 4.0, 6.0]


def _inplace_chain(x, v):
    y = x * 2
    y[0] += v
    y[1:, 1] = v[:2] * 3
    y *= 3
    y.clamp_(-1, 5)
    y[y > 4] = 0.5  # a bool mask
    return y


def _inplace_after_realize(x, v):
    y = x.sin()  # (torch refuses exp here: its backward reads the output, which the write changes)
    if isinstance(y, Tensor):
        y.realize()
    y[1] = v * 3
    y.add_(x)
    return y


def test_inplace_on_non_leaves_keeps_the_gradient():
    with batch():
        check(_inplace_chain, (3, 4), (4,), grad=True)
        check(_inplace_after_realize, (3, 4), (4,), grad=True)


def test_inplace_write_of_a_value_that_requires_grad():
    def f(x):
        buf = lib_zeros(x, (3,))
        buf[1] = x[0] * 2
        buf += x.sum()
        return buf

    check(f, (4,), grad=True)


def lib_zeros(like, shape):
    return torch.zeros(shape) if isinstance(like, torch.Tensor) else boltgrad.zeros(shape)


def test_inplace_on_a_leaf_that_requires_grad():
    x = Tensor([1.0, 2.0], requires_grad=True)
    for op in (lambda: x.add_(1), lambda: x.__setitem__(0, 5.0), lambda: x.zero_(), lambda: x.uniform_()):
        with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
            op()
    with boltgrad.no_grad():
        x += 1
        x[0] = 10.0
    assert x.tolist() == [10.0, 3.0] and x.is_leaf and x.requires_grad
    x.assign(x * 0 + 4)  # assign on a leaf works (a deliberate difference from torch) and keeps the leaf
    (x * 3).sum().backward()
    assert x.tolist() == [4.0, 4.0] and x.grad.tolist() == [3.0, 3.0]


def test_inplace_under_no_grad_keeps_the_tensors_graph():
    x = Tensor([1.0, 2.0], requires_grad=True)
    xt = torch.tensor([1.0, 2.0], requires_grad=True)
    for lib_x, lib in ((x, boltgrad), (xt, torch)):
        y = lib_x * 3
        with lib.no_grad():
            y.mul_(0.5)  # torch keeps y's grad_fn: the gradient is that of x * 3
        (y * y).sum().backward()
    assert y.requires_grad
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy())


def test_integer_outputs_have_no_gradient():
    x = Tensor([1.5, 2.5], requires_grad=True)
    assert not (x * 2).long().requires_grad
    with pytest.raises(RuntimeError, match="int64 tensor has no gradient"):
        (x * 2).long().sum().backward()
    with pytest.raises(RuntimeError, match="shape \\(2,\\).*y.backward\\(gradient\\)"):
        (x * 2).backward()


# ---- edge points: NaN where torch is finite (or infinite), and ties ----


def test_edge_gradients_match_torch():
    unit = np.array([-1.0, -0.5, 0.0, 0.5, 1.0], np.float32)
    zeros = np.zeros((2, 3), np.float32)
    base = np.array([0.0, 0.0, 2.0, 0.0], np.float32)
    expo = np.array([2.0, 0.0, 0.5, -1.0], np.float32)
    with batch():
        check(lambda x: x.asin(), unit, grad=True)
        check(lambda x: x.acos(), unit, grad=True)
        check(lambda x: x.atanh(), unit, grad=True)
        check(lambda x: (x + 2).acosh(), unit, grad=True)
        check(lambda x: x.sqrt(), np.array([0.0, 4.0], np.float32), grad=True)
        check(lambda x: x.abs(), np.array([0.0, -1.0, 2.0], np.float32), grad=True)
        check(lambda x: x.norm(), zeros, grad=True)
        check(lambda x: x.norm(dim=1), np.array([[0.0, 0.0], [3.0, 4.0]], np.float32), grad=True)
        check(lambda x: x.norm(p=3, dim=0), np.array([[0.0, 1.0], [0.0, -2.0]], np.float32), grad=True)
        check(lambda x: x.std(1), np.array([[1.0, 1.0], [1.0, 2.0]], np.float32), grad=True)
        check(lambda a, b: a**b, base, expo, grad=True)
        check(lambda a: a**1.5, base, grad=True)
        check(lambda b: 2.0**b, expo, grad=True)
        check(lambda b: 0.0**b, expo, grad=True, torch_fn=lambda b: torch.pow(0.0, b))
        check(lambda y, x: y.atan2(x), np.array([0.0, 1.0, 0.0], np.float32), np.array([0.0, 0.0, -2.0], np.float32),
              grad=True)  # fmt: skip
        check(lambda x: x.floor() + x.round(), np.array([1.5, -0.3], np.float32), grad=True)


def test_tie_gradients_match_torch():
    tied = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]], np.float32)
    with batch():
        check(lambda x: x.max(), tied, grad=True)  # split between the ties
        check(lambda x: x.amax(1), tied, grad=True)
        check(lambda x: x.max(1)[0], tied, grad=True)  # all to the returned index
        check(lambda x: x.min(1, keepdim=True)[0], tied, grad=True)
        check(lambda a, b: a.maximum(b), tied, tied.T.copy().reshape(2, 3), grad=True)
        check(lambda a, b: a.minimum(b), tied, np.full((2, 3), 2.0, np.float32), grad=True)
        check(lambda x: x.clamp(1.0, 2.0), tied, grad=True)  # bounds included
        check(lambda x: x.clamp(max=2.0), tied, grad=True)
        check(lambda x, lo: x.clamp(min=lo), tied, np.full((3,), 2.0, np.float32), grad=True)
        check(lambda x: x.relu() + (x - 2).relu(), tied, grad=True)  # relu at 0 passes nothing


def test_requires_grad_of_a_new_op_does_not_walk_the_graph(monkeypatch):
    """needs_grad is memoised per node: an op on known sources is answered without a walk (was one per op)."""
    from boltgrad import autograd

    x = Tensor([1.0], requires_grad=True)
    y = x * 2
    assert y.requires_grad
    walks = []
    real = autograd.toposort
    monkeypatch.setattr(autograd, "toposort", lambda *a, **k: walks.append(1) or real(*a, **k))
    with boltgrad.no_grad():  # every op asks whether its result needs grad, to detach it
        z = y
        for _ in range(300):
            z = z * 1.5 + 1
    assert not z.requires_grad and len(walks) <= 2, len(walks)
    w = y
    for _ in range(300):
        w = w * 1.5 + 1
    assert w.requires_grad and len(walks) <= 4, len(walks)


def test_sign_and_pow_zero_have_torch_zero_gradients():
    check(lambda x: x.sign() * 2, (3, 4), grad=True)
    check(lambda x: x**0 + x.sign(), (5,), grad=True)
