"""Reductions (sum mean prod max min amax amin argmax argmin) with every way of naming dims, compared with torch."""

# ruff: noqa: B023
# (check() calls each lambda at once, inside its loop: late binding of loop variables cannot bite)

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import batch, check, on_devices

import boltgrad
from boltgrad import Tensor
from boltgrad.ir.ops import Op

NAN = math.nan

# (dim, keepdim) combinations for a 3-d input; None reduces everything
DIMS = [None, 0, 1, -1, (0, 2), (-1, 0), (0, 1, 2), ()]

REDUCE = {
    "sum": lambda x, **kw: x.sum(**kw),
    "mean": lambda x, **kw: x.mean(**kw),
    "prod": lambda x, **kw: x.prod(**kw),
    "amax": lambda x, **kw: x.amax(**kw),
    "amin": lambda x, **kw: x.amin(**kw),
}


def _prod_many(x, dim, keepdim):
    """The oracle for prod over several dims: one dim at a time (torch.prod takes a single int)."""
    if dim is None:
        out = x.prod()
        return out.reshape([1] * x.ndim) if keepdim else out
    dims = sorted({d % x.ndim for d in ((dim,) if isinstance(dim, int) else dim)}, reverse=True)
    for d in dims:
        x = x.prod(d, keepdim=True)
    return x.reshape([s for i, s in enumerate(x.shape) if i not in dims]) if not keepdim else x


@on_devices
@pytest.mark.parametrize("name", REDUCE)
def test_reduce_dims(name, device):
    op = REDUCE[name]
    with batch():
        for dim in DIMS:
            if dim == () and name == "prod":
                continue  # torch.prod takes a single int dim
            for keepdim in (False, True):
                kw = {} if dim is None else {"dim": dim}
                torch_fn = None
                if name == "prod" and not isinstance(dim, int):
                    torch_fn = lambda x: _prod_many(x, dim, keepdim)
                elif dim is None:  # torch takes keepdim only together with dim
                    torch_fn = lambda x: op(x, dim=tuple(range(x.ndim)), keepdim=keepdim)
                check(lambda x: op(x, keepdim=keepdim, **kw), (2, 3, 4), device=device, torch_fn=torch_fn)


def test_empty_dim_tuple_reduces_everything():
    """As in torch, ``dim=()`` means every dim (numpy would reduce nothing)."""
    x = Tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert x.sum(dim=()).tolist() == 15.0
    assert x.amax(dim=(), keepdim=True).tolist() == [[5.0]]


@on_devices
@pytest.mark.parametrize("name", REDUCE)
def test_reduce_shapes(name, device):
    op = REDUCE[name]
    shapes = [(), (1,), (5,), (1, 1), (3, 1, 2)] + ([(17, 33), (4, 257), (1000,)] if device == "CPU" else [])
    with batch():
        for shape in shapes:
            kw = {"low": 0.5, "high": 1.5} if name == "prod" else {}
            check(lambda x: op(x), shape, device=device, torch_fn=lambda x: REDUCE[name](x), rtol=1e-4, **kw)
            if len(shape) >= 1:
                check(lambda x: op(x, dim=-1), shape, device=device, rtol=1e-4, **kw)
            if len(shape) >= 2:
                check(lambda x: op(x, dim=0), shape, device=device, rtol=1e-4, **kw)
        # reductions of views: transposed, sliced, expanded, flipped
        check(lambda x: op(x.T, dim=1), (3, 5), device=device)
        check(lambda x: op(x[::2, 1:], dim=0), (5, 4), device=device)
        check(lambda x: op(x.expand(4, 3), dim=0), (1, 3), device=device)
        check(
            lambda x: op(x.permute(1, 2, 0), dim=(0, 2)),
            (2, 3, 4),
            device=device,
            torch_fn=(lambda x: _prod_many(x.permute(1, 2, 0), (0, 2), False)) if name == "prod" else None,
        )


@on_devices
def test_reduce_empty(device):
    with batch():
        check(lambda x: x.sum(), (0,), device=device)
        check(lambda x: x.sum(0), (0, 3), device=device)
        check(lambda x: x.sum(1), (0, 3), device=device)
        check(lambda x: x.sum(1, keepdim=True), (3, 0), device=device)
        check(lambda x: x.prod(1), (3, 0), device=device)
        check(lambda x: x.mean(1), (3, 0), device=device)
        check(lambda x: x.amax(1), (0, 3), device=device)
        check(lambda x: x.sum(), (0,), device=device, dtype="int32")
    x = Tensor(np.zeros((0, 3), np.float32), device=device)
    for fn in (lambda: x.amax(0), lambda: x.max(), lambda: x.argmax(0), lambda: x.min(0), lambda: x.amin()):
        with pytest.raises((IndexError, RuntimeError)):
            fn()


@on_devices
def test_dim_and_axis_aliases(device):
    x = np.random.default_rng(1).uniform(-1, 1, (2, 3, 4)).astype(np.float32)
    with batch():
        for name in ("sum", "mean", "amax", "amin"):
            check(
                lambda t: getattr(t, name)(axis=1, keepdims=True),
                x,
                device=device,
                torch_fn=lambda t: getattr(t, name)(dim=1, keepdim=True),
            )
            check(
                lambda t: getattr(t, name)(axis=(0, -1)),
                x,
                device=device,
                torch_fn=lambda t: getattr(t, name)(dim=(0, -1)),
            )
        check(
            lambda t: t.argmax(axis=2, keepdims=True),
            x,
            device=device,
            torch_fn=lambda t: t.argmax(dim=2, keepdim=True),
        )
        check(lambda t: t.max(axis=0), x, device=device, torch_fn=lambda t: t.max(dim=0))
    t = Tensor(x, device=device)
    for name in ("sum", "mean", "prod", "amax", "amin", "argmax", "argmin", "max", "min"):
        with pytest.raises(TypeError):
            getattr(t, name)(dim=0, axis=0)
    with pytest.raises(TypeError):
        t.sum(0, keepdim=True, keepdims=True)


@on_devices
def test_max_min_values_and_indices(device):
    ties = np.array([[3, 1, 3, 0], [2, 2, 2, 2], [-1, 5, 5, -1]], dtype=np.int32)  # first index wins ties
    with batch():
        for dim in (0, 1, -1):
            for keepdim in (False, True):
                check(lambda x: x.max(dim, keepdim=keepdim), (3, 4, 2), device=device)
                check(lambda x: x.min(dim, keepdim=keepdim), (3, 4, 2), device=device)
                check(lambda x: x.max(dim=dim, keepdim=keepdim), ties[..., None], device=device)
                check(lambda x: x.min(dim=dim, keepdim=keepdim), ties[..., None], device=device)
        check(lambda x: x.max(), (3, 4), device=device)
        check(lambda x: x.min(), (3, 4), device=device)
        check(lambda x: x.max(0).values + x.max(0).indices, (3, 4), device=device)
        check(lambda x: x.min(dim=0)[1], ties, device=device)


@on_devices
def test_argmax_argmin(device):
    ties = np.array([[3, 1, 3, 0], [2, 2, 2, 2], [-1, 5, 5, -1]], dtype=np.int64)
    with batch():
        for fn in (
            lambda x: x.argmax(),
            lambda x: x.argmin(),
            lambda x: x.argmax(0),
            lambda x: x.argmin(-1),
            lambda x: x.argmax(1, keepdim=True),
            lambda x: x.argmin(dim=0, keepdim=True),
        ):
            check(fn, (3, 5), device=device)
            check(fn, ties, device=device)
            check(fn, ties.astype(np.uint8), device=device)
            check(fn, ties.astype(np.float16), device=device)
        check(lambda x: x.argmax(), (), device=device)
        check(lambda x: x.argmax(0), (1,), device=device)
        check(lambda x: x.T.argmax(0), (4, 3), device=device)


@on_devices
def test_reductions_with_nan_and_inf(device):
    x = np.array([[1.0, NAN, 3.0], [-math.inf, 2.0, 0.5], [NAN, NAN, 1.0], [math.inf, -1.0, math.inf]], np.float32)
    with batch():
        for fn in (
            lambda t: t.sum(1),
            lambda t: t.amax(1),
            lambda t: t.amin(1),
            lambda t: t.max(1),
            lambda t: t.min(1),
            lambda t: t.argmax(1),
            lambda t: t.argmin(1),
            lambda t: t.max(),
            lambda t: t.amin(0),
            lambda t: t.prod(1),
            lambda t: t.mean(1),
        ):
            check(fn, x, device=device)


@on_devices
@pytest.mark.parametrize("dtype", ["bool", "int8", "uint8", "int32", "int64", "float16", "bfloat16", "float64"])
def test_reduce_dtypes(dtype, device):
    """Sums of ints and bools are int64; float16/bfloat16 sums stay float16/bfloat16; max keeps the dtype."""
    lo, hi = (-100, 100) if dtype not in ("float16", "bfloat16", "float64") else (-2, 2)
    with batch():
        check(lambda x: x.sum(), (3, 4), device=device, dtype=dtype, low=lo, high=hi)
        check(lambda x: x.sum(1), (3, 4), device=device, dtype=dtype, low=lo, high=hi)
        if dtype != "bool":
            check(lambda x: x.amax(0), (3, 4), device=device, dtype=dtype, low=lo, high=hi)
            check(lambda x: x.amin(1), (3, 4), device=device, dtype=dtype, low=lo, high=hi)
            check(lambda x: x.max(0), (3, 4), device=device, dtype=dtype, low=lo, high=hi)
            check(lambda x: x.prod(1), (3, 2), device=device, dtype=dtype, low=-3, high=3)
        if dtype in ("float16", "bfloat16", "float64"):
            check(lambda x: x.mean(0), (3, 4), device=device, dtype=dtype, low=lo, high=hi)
        check(
            lambda x: x.sum(dtype=torch.float64 if isinstance(x, torch.Tensor) else boltgrad.float64),
            (3, 4),
            device=device,
            dtype=dtype,
            low=lo,
            high=hi,
        )


def test_integer_extremes():
    x = np.array([[-128, 127, 0], [5, -128, -128]], dtype=np.int8)
    big = np.array([2**40, -(2**41), 3], dtype=np.int64)
    with batch():
        check(lambda t: t.amax(1), x)
        check(lambda t: t.amin(1), x)
        check(lambda t: t.sum(1), x)  # int64: no wraparound
        check(lambda t: t.max(1), x)
        check(lambda t: t.min(0), x)
        check(lambda t: t.sum(), big)
        check(lambda t: t.amin(), big)
        check(lambda t: t.amax(), np.array([0, 4_000_000_000, 7], dtype=np.uint32), torch_fn=lambda t: np.uint32(4e9))


def test_mean_of_integers_needs_a_float_dtype():
    x = Tensor([1, 2, 4])
    with pytest.raises((TypeError, RuntimeError)):
        x.mean()
    assert x.mean(dtype=boltgrad.float32).item() == pytest.approx(7 / 3)


def test_large_sums_are_accurate():
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, (3, 100_000)).astype(np.float32)
    with batch():
        check(lambda t: t.sum(1), x, rtol=1e-5)
        check(lambda t: t.mean(), x, rtol=1e-5)
        check(lambda t: t.T.sum(0), x, rtol=1e-5)


@pytest.mark.parametrize("n", [1 << 20, (1 << 20) + 1])
def test_a_long_reduction_to_one_value_is_split_into_parallel_partials(n):
    from boltgrad import stats
    from boltgrad.tensor_reduce import SPLIT_MIN_ELEMENTS

    assert n >= SPLIT_MIN_ELEMENTS
    a = np.random.default_rng(3).standard_normal(n).astype(np.float32)
    x = Tensor(a.reshape(-1, 1) if n % 2 else a.reshape(1024, -1), requires_grad=True).realize()
    stats.reset()
    total = x.sum()
    assert total.shape == () and x.sum(keepdim=True).shape == (1, 1)
    assert abs(total.item() - a.astype(np.float64).sum()) < 1e-2
    assert stats.kernels == (1 if n % 64 else 2)  # partials (rows across threads), then their sum
    assert x.amax().item() == a.max() and x.amin().item() == a.min()
    (x.mean() * 2).backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(x.shape, 2 / n, np.float32), rtol=1e-6)


@pytest.mark.parametrize("op", ["sum", "amax"])
def test_the_gradient_of_a_split_reduction_is_the_plain_broadcast(op):
    """The backward pass sees one reduction: no partials, whose index arithmetic costs a division per element."""
    a = np.random.default_rng(4).standard_normal((1024, 1024)).astype(np.float32)
    x = Tensor(a, requires_grad=True)
    getattr(x * x, op)().backward()
    if op == "sum":  # (amax's gradient reads the forward's value, which the partials compute)
        assert not any(n.op is Op.CONTIGUOUS or (n.shape and n.shape[0] == 64) for n in x.grad.node.toposort())
    want = 2 * a if op == "sum" else np.where(a * a == (a * a).max(), 2 * a, 0)
    np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-6)
