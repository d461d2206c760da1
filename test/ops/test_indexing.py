"""Indexing against torch: advanced reads and writes, gathers and scatters, masks, sorting, and the view-built
ops (triangles, diagonals, sliding windows, repeats, rolls), forward and gradients."""

# ruff: noqa: B023
# (check() calls each lambda at once, inside its loop: late binding of loop variables cannot bite)

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import batch, check, lib

import boltgrad
import boltgrad.tensor_sort as tensor_sort
from boltgrad import Tensor

I64 = np.int64


def idx(*values, dtype=I64) -> np.ndarray:
    """An index array (becomes an int tensor on both sides)."""
    return np.array(values, dtype=dtype)


# index expressions torch takes as they are: (description, index)
READS = [
    [1, 0, 1],
    [-1, 0, -2],
    [],
    (0, slice(None), [1, 2]),
    (slice(None), 0, [1, 2]),
    ([0, 1], slice(None), 0),
    ([0, 1], [2, 0]),
    ([0, 1], slice(None), [3, 0]),  # separated advanced indices: their dim goes first
    ([[0], [1]], slice(1, None), [0, 2, 3]),  # broadcast (2, 1) with (3,)
    (slice(None), [0, 0, 2], slice(None, None, 2)),  # duplicates
    (Ellipsis, [3, 1]),
    (Ellipsis, [1, 0], [3, 1]),
    (None, [1], slice(None), [0, 1]),
    ([0, 1], None, [0, 1]),
    (slice(None), None, [0, 2]),
    (True,),
    (False,),
    (1, True),
    ([True, False],),
    (slice(None), [True, False, True]),
    ([[True, False, True], [False, False, True]],),
    (slice(None, None, 2), [-1]),
    (1, [2, 1], slice(1, 3)),
]


def test_advanced_reads_and_gradients():
    with batch():
        for index in READS:
            check(lambda x: x[index], (2, 3, 4), grad=True)
        # non-contiguous inputs
        check(lambda x: x.permute(2, 1, 0)[[0, 2], 1], (2, 3, 4), grad=True)
        check(lambda x: x[:, ::2][[1, 0, 1]], (3, 4), grad=True)
        check(lambda x: x.expand(3, 4)[[2, 0], [1, 1]], (1, 4), grad=True)
        check(lambda x: x.flip(0)[[0, 3]] * 2, (4, 2), grad=True)
        # 0-d and 1-element
        check(lambda x: x[[0, 0, 0]], (1,), grad=True)
        check(lambda x: x[None][[0, 0]], (), grad=True)


def test_tensor_indices():
    with batch():
        check(lambda x, i: x[i], (5, 3), idx(4, -1, 0, -5), grad=True)
        check(lambda x, i: x[i], (5, 3), idx(2, 0, dtype=np.int32), grad=True)
        check(lambda x, i: x[i], (5, 3), idx([1, 2], [3, 4]), grad=True)
        check(lambda x, i: x[:, i], (5, 3), idx(2, 0, 2, 1), grad=True)
        check(lambda x, i, j: x[i, :, j], (4, 3, 5), idx([0], [3]), idx(1, 4, 0), grad=True)
        check(lambda x, i: x[i], (5, 3), np.array(3, dtype=I64), grad=True)  # a 0-d index
        check(lambda x, i: x[i], (5, 3), np.zeros(0, dtype=I64), grad=True)
        check(lambda x, i: x[..., i], (2, 3, 4), idx([[3, 2], [1, 0]]), grad=True)
        check(lambda x, m: x[m], (4, 3), np.array([True, False, True, True]), grad=True)
        check(lambda x, m: x[m], (4, 3), np.arange(12).reshape(4, 3) % 5 == 1, grad=True)
        check(lambda x, m: x[m], (4, 3), np.zeros((4, 3), bool), grad=True)
        check(lambda x, m: x[1:, m], (4, 3), np.array([True, False, True]), grad=True)
        check(lambda x, i: x[i], (6,), idx(1, 5, 2), dtype="int32")
        check(lambda x, i: x[i], (6,), idx(1, 5, 2), dtype="bool")


def _written(index):
    """f(x, v): a copy of x with v written at index (torch and boltgrad alike)."""

    def write(x, v):
        y = x.clone()
        y[index] = v
        return y

    return write


WRITES = [
    (0, ()),
    ((slice(None), 1), (4,)),
    ((slice(None), 1), (2, 1)),
    ((slice(None), slice(None, None, 2), slice(1, None, 2)), ()),
    ((1, [0, 2]), (4,)),
    ((slice(None), [2, 0, 1]), (4,)),  # not a progression: a scatter
    (([0, 1], slice(None), [1, 3]), (2, 3)),
    ((Ellipsis, [0, 3]), (2,)),
    ((slice(None), None, [2]), (1, 4)),
    ((0, 1, 2), ()),
    ((slice(1, None), [[0], [2]], [1, 3]), (2, 2)),
    (([1, 0], [2, 0]), (2, 4)),
    ([-1], (1, 1, 3, 4)),  # leading 1s of the value are dropped
    ((slice(None), [True, False, True]), (1,)),
    ([], ()),
]


def test_setitem_values_and_gradients():
    with batch():
        for index, value_shape in WRITES:
            check(_written(index), (2, 3, 4), value_shape, grad=True)
        check(_written(1), (3,), 7.5, grad=True)
        check(_written([0, 2]), (3,), 2, dtype="int32")


def test_setitem_in_place():
    x = Tensor(np.arange(12, dtype=np.float32).reshape(3, 4))
    buffer = x._contiguous_buffer()
    x[1] = 0.0
    x[:, -1] = Tensor([7.0, 8.0, 9.0])
    x[[0, 0], [1, 2]] = Tensor([5.0, 6.0])
    x[Tensor(np.eye(3, 4, dtype=bool))] = -1.0  # where(mask, v, x): the mask is not realized
    x[::2, 1] += 100.0
    want = np.arange(12, dtype=np.float32).reshape(3, 4)
    want[1] = 0
    want[:, -1] = [7, 8, 9]
    want[[0, 0], [1, 2]] = [5, 6]
    want[np.eye(3, 4, dtype=bool)] = -1
    want[::2, 1] += 100
    np.testing.assert_array_equal(x.numpy(), want)
    assert x._contiguous_buffer() is buffer  # written with assign, in the same memory
    # duplicates: the last value wins (torch leaves it unspecified)
    y = Tensor(np.zeros(4, np.float32))
    y[[1, 3, 1]] = Tensor([1.0, 2.0, 3.0])
    assert y.tolist() == [0.0, 3.0, 0.0, 2.0]
    z = Tensor(np.zeros(3, np.int64))
    z[Tensor([2, 0])] = 2.9  # cast to the tensor's dtype
    assert z.tolist() == [2, 0, 2]


def test_setitem_autograd():
    leaf = Tensor(np.ones(3, np.float32), requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        leaf[0] = 2.0
    with boltgrad.no_grad():
        leaf[0] = 2.0  # allowed, as in torch
    assert leaf.tolist() == [2.0, 1.0, 1.0]
    out = Tensor.zeros(2, 3)
    out[1] = leaf * 3
    out.sum().backward()
    assert leaf.grad.tolist() == [3.0, 3.0, 3.0] and out.tolist() == [[0.0] * 3, [6.0, 3.0, 3.0]]


def test_index_put():
    with batch():
        for accumulate in (False, True):
            check(lambda x, i, v: x.index_put((i,), v, accumulate), (5, 2), idx(4, 0), (2, 2), grad=True)
            check(lambda x, i, j, v: x.index_put((i, j), v, accumulate), (4, 3), idx(1, 3), idx(2, 0), (2,), grad=True)
        check(lambda x, i, v: x.index_put((i,), v, accumulate=True), (4,), idx(1, 1, 3, 1), (4,), grad=True)
        check(lambda x, m: x.index_put((m,), torch.tensor(2.0)), (3, 2), np.array([[1, 0], [0, 0], [1, 1]], bool),
              torch_fn=lambda x, m: x.index_put((m,), torch.tensor(2.0)))  # fmt: skip


def test_gather_and_scatter():
    i23 = idx([0, 2, 1], [3, 0, 0])
    with batch():
        check(lambda x, i: x.gather(1, i), (2, 4), i23, grad=True)
        check(lambda x, i: x.gather(0, i), (4, 3), idx([0, 2, 1], [3, 0, 0]), grad=True)
        check(lambda x, i: x.gather(-1, i), (3, 5, 4), np.array([[[1], [0]], [[3], [2]]]), grad=True)  # smaller
        check(lambda x, i: x.T.gather(0, i), (3, 4), idx([1, 0, 2]), grad=True)
        check(lambda x, i: x.gather(0, i), (4,), idx(3, 3, 0, 1, 2), dtype="int32")
        check(lambda x, i: x.take_along_dim(i, 1), (2, 4), np.array([[1], [3]]), grad=True)
        check(lambda x, i: x.take_along_dim(i), (2, 4), idx(7, 0, 3), grad=True)
        check(lambda x, i: x.take_along_dim(i, 0), (3, 4), np.array([[2, 0, 1, 1]]), grad=True)
        check(lambda x, i: x.index_select(0, i), (4, 3), idx(3, 1, 3), grad=True)
        check(lambda x, i: x.index_select(-1, i), (2, 3, 4), idx(2), grad=True)
        check(lambda x, i: x.index_select(0, i), (4,), np.array(1), grad=True)
        # scatter: unique targets (torch's result with duplicates is unspecified; see test_scatter_duplicates)
        check(lambda x, i, s: x.scatter(1, i, s), (2, 4), idx([2, 0], [1, 3]), (2, 2), grad=True)
        check(lambda x, i: x.scatter(0, i, 9.5), (4, 2), idx([3, 1], [0, 2]), grad=True)
        for reduce, torch_reduce in [("add", "sum"), ("multiply", "prod")]:  # torch deprecates scatter's reduce
            check(lambda x, i, s: x.scatter(0, i, s, reduce=reduce), (3, 2), idx([1, 1], [1, 0]), (2, 2),
                  torch_fn=lambda x, i, s: x.scatter_reduce(0, i, s, torch_reduce))  # fmt: skip
        check(lambda x, i, s: x.scatter_add(1, i, s), (2, 5), idx([4, 4, 0], [1, 2, 1]), (2, 3), grad=True)
        check(lambda x, i, s: x.scatter_add(0, i, s), (3, 4), idx([0, 2], [0, 0]), (3, 3))  # torch: no grad
        check(lambda x, i, s: x.index_add(0, i, s), (4, 2), idx(3, 0, 3), (3, 2), grad=True)
        check(lambda x, i, s: x.index_add(1, i, s, alpha=2.0), (2, 4), idx(1, 1), (2, 2), grad=True)
        check(lambda x, i: x.index_fill(1, i, -3.0), (2, 4), idx(0, 3, 0), grad=True)
        check(lambda x, i, s: x.scatter(1, i, s), (3, 4), idx([0, 1], [2, 3], [1, 0]), (3, 2), dtype="int32")


@pytest.mark.parametrize("reduce", ["sum", "prod", "mean", "amax", "amin"])
def test_scatter_reduce(reduce):
    index = idx([0, 2, 0, 3], [1, 1, 1, 0])
    ties = np.array([[1.0, 2.0, 1.0, 0.5], [3.0, 3.0, 3.0, 1.0]], np.float32)  # equal values share gradients
    with batch():
        for include_self in (True, False):
            check(lambda x, i, s: x.scatter_reduce(1, i, s, reduce, include_self=include_self), (2, 5), index,
                  (2, 4), grad=True, low=0.5)  # fmt: skip
            # (with include_self=False, torch's gradient still counts the old value among the ties; boltgrad's
            # does not, so the old value differs from the ties there)
            old = np.full((2, 5), 3.0 if include_self else 9.0, np.float32)
            check(lambda x, i, s: x.scatter_reduce(1, i, s, reduce, include_self=include_self), old, index, ties,
                  grad=True)  # fmt: skip
            check(lambda x, i, s: x.scatter_reduce(0, i, s, reduce, include_self=include_self), (4,), idx(1, 1, 3),
                  (3,), dtype="int32", low=-9, high=9)  # fmt: skip


def test_scatter_duplicates():
    """Writes to one position: torch does not say which src wins; boltgrad takes the last one."""
    out = Tensor([0.0, 0.0, 0.0]).scatter(0, Tensor([2, 0, 2, 2]), Tensor([1.0, 2.0, 3.0, 4.0]))
    assert out.tolist() == [2.0, 0.0, 4.0]
    added = Tensor([0.0, 0.0, 0.0]).scatter_add(0, Tensor([2, 0, 2, 2]), Tensor([1.0, 2.0, 3.0, 4.0]))
    assert added.tolist() == [2.0, 0.0, 8.0]


def test_masks():
    mask = np.array([[True, False, True, False], [False, False, True, True], [True, True, True, False]])
    with batch():
        check(lambda x, m: x.masked_fill(m, -1.5), (3, 4), mask, grad=True)
        check(lambda x, m: x.masked_fill(m, float("-inf")).softmax(-1), (3, 4), mask, grad=True)
        check(lambda x, m: x.masked_fill(m, 2), (3, 4), mask[0], dtype="int32")
        check(lambda x, m, v: x.masked_fill(m, v[0]), (3, 4), mask[:, :1], (1,), grad=True)
        check(lambda x, m: x.masked_select(m), (3, 4), mask, grad=True)
        check(lambda x, m: x.masked_select(m), (4,), mask, grad=True)  # broadcast together to (3, 4)
        check(lambda x, m: x.masked_select(m), (3, 4), np.zeros((3, 4), bool), grad=True)
        check(lambda x, m, s: x.masked_scatter(m, s), (3, 4), mask, (3, 3), grad=True)
        check(lambda x: x.nonzero(), np.array([[0, 1.5, 0], [2, 0, -1]], np.float32))
        check(lambda x: x.nonzero(as_tuple=True), np.array([[0, 1, 0], [1, 0, 1]], np.int32))
        check(lambda x: x.nonzero(), (0, 3))
        check(lambda x: x.nonzero(), np.array(2.0, np.float32))
        check(lambda x: x.nonzero(), np.array([True, False, True]))


def test_one_hot_and_repeat_interleave():
    with batch():
        check(lambda x: x.one_hot(5), idx([0, 4], [2, 2]), torch_fn=lambda x: F.one_hot(x, 5))
        check(lambda x: x.one_hot(), idx(1, 3, 0), torch_fn=lambda x: F.one_hot(x))
        check(lambda x: x.one_hot(3), np.zeros(0, I64), torch_fn=lambda x: F.one_hot(x, 3))
        check(lambda x: x.repeat_interleave(2), (2, 3), grad=True)
        check(lambda x: x.repeat_interleave(3, dim=1), (2, 3), grad=True)
        check(lambda x: x.repeat_interleave(lib(x).tensor([1, 0, 2]), dim=-1), (2, 3), grad=True)
        check(lambda x: x.repeat_interleave([2], dim=0), (2, 3), grad=True,
              torch_fn=lambda x: x.repeat_interleave(torch.tensor([2]), dim=0))  # fmt: skip


def test_view_built_ops():
    with batch():
        for k in (0, 2, -1):
            check(lambda x: x.tril(k), (3, 4), grad=True)
            check(lambda x: x.triu(k), (2, 3, 4), grad=True)
            check(lambda x: x.diag(k), (4,), grad=True)
            check(lambda x: x.diag(k), (3, 5), grad=True)
        check(lambda x: x.diag(-5), (3, 5), grad=True)  # past the corner: empty
        check(lambda x: x.diagonal(1, 0, 2), (3, 2, 4), grad=True)
        check(lambda x: x.diagonal(1, -1, -2), (2, 3, 4), grad=True)
        check(lambda x: x.triu(), (3, 3), dtype="bool")
        check(lambda x: x.T.tril(), (3, 4), grad=True)
        for args in [(0, 2, 1), (0, 3, 2), (-1, 2, 3), (1, 4, 1), (1, 0, 2)]:
            check(lambda x: x.unfold(*args), (5, 4), grad=True)
        check(lambda x: x.T.unfold(0, 3, 2), (5, 4), grad=True)
        check(lambda x: x.unfold(0, 1, 1), (), grad=True)
        for sizes in [(2, 1), (1, 3), (2, 2, 2), (0, 1), (3,)]:
            if len(sizes) >= 2:
                check(lambda x: x.repeat(*sizes), (2, 3), grad=True)
            check(lambda x: x.tile(sizes), (2, 3), grad=True)
        check(lambda x: x.repeat(2, 3), (), grad=True)
        for shifts, dims in [(1, 0), (-1, 1), (5, 1), ((1, 2), (0, 1)), (3, None), (0, 0), (-7, None)]:
            check(lambda x: x.roll(shifts, dims), (3, 4), grad=True)
        check(lambda x: x.roll(1, 0), (0, 2))


def _torch_sort(stable_values):
    return lambda x, *a, **k: x.sort(*a, **k, stable=True) if stable_values else x.sort(*a, **k)


SORT_INPUTS = [
    (3, 7),
    np.array([[3.0, np.nan, 1.0, 3.0, -np.inf, np.nan, 1.0, 0.0, -0.0, np.inf]], np.float32),  # NaN, ties, inf
    np.array([2, 0, 2, 1, 0, 2], np.int32),
    np.array([[1], [0]], np.int8),
]


def test_sort():
    with batch():
        for x in SORT_INPUTS:
            for descending in (False, True):
                check(lambda x: x.sort(descending=descending), x, grad=True,
                      torch_fn=lambda x: x.sort(descending=descending, stable=True))  # fmt: skip
                check(lambda x: x.argsort(dim=0, descending=descending), x,
                      torch_fn=lambda x: x.argsort(dim=0, descending=descending, stable=True))  # fmt: skip
        check(lambda x: x.sort(1), (2, 5, 3), grad=True)
        check(lambda x: x.T.sort(stable=True), (5, 3), grad=True)
        check(lambda x: x.sort(), np.array([True, False, True, False]),
              torch_fn=lambda x: x.sort(stable=True))  # fmt: skip
        check(lambda x: x.msort(), (5, 2), grad=True)
        check(lambda x: x.sort(), (), grad=True)
        check(lambda x: x.sort(), (0,), grad=True)


def test_sort_long_rows(monkeypatch):
    """Rows longer than RANK_SORT_MAX go through the bitonic network (made to apply here to short rows)."""
    monkeypatch.setattr(tensor_sort, "RANK_SORT_MAX", 2)
    with batch():
        for descending in (False, True):
            check(lambda x: x.sort(descending=descending), SORT_INPUTS[1], grad=True,
                  torch_fn=lambda x: x.sort(descending=descending, stable=True))  # fmt: skip
        check(lambda x: x.argsort(), SORT_INPUTS[2], torch_fn=lambda x: x.argsort(stable=True))
        check(lambda x: x.topk(3), SORT_INPUTS[1], grad=True,
              torch_fn=lambda x: tuple(t[:, :3] for t in x.sort(descending=True, stable=True)))  # fmt: skip


@pytest.mark.parametrize("algorithm", ["rank", "chunked"])
def test_topk(algorithm, monkeypatch):
    if algorithm == "chunked":
        monkeypatch.setattr(tensor_sort, "TOPK_CHUNK", 4)
    distinct = np.random.default_rng(3).permutation(40).reshape(2, 20).astype(np.float32)  # torch's ties vary
    with batch():
        for k in (1, 3, 20):
            check(lambda x: x.topk(k), distinct, grad=True)
            check(lambda x: x.topk(k, largest=False), distinct, grad=True)
        check(lambda x: x.topk(2, dim=0), distinct, grad=True)
        check(lambda x: x.topk(0), distinct, grad=True)
        check(lambda x: x.topk(1), (), grad=True)
        check(lambda x: x.topk(3, largest=False), np.array([5, 1, 9, -2, 7], np.int64))
        # ties and NaN: compare with a stable sort (torch's topk leaves the order of ties unspecified)
        ties = np.array([[1.0, np.nan, 3.0, 1.0, 3.0, 0.0, np.nan, 1.0, 3.0, 2.0, 1.0, 0.0]], np.float32)
        for largest in (True, False):
            check(lambda x: x.topk(5, largest=largest), ties, grad=True,
                  torch_fn=lambda x: tuple(t[:, :5] for t in x.sort(descending=largest, stable=True)))  # fmt: skip


def test_bad_input():
    x = Tensor(np.arange(12, dtype=np.float32).reshape(3, 4))
    with pytest.raises(IndexError, match="index 3 is out of bounds for dimension 0 with size 3"):
        x[[0, 3]]
    with pytest.raises(IndexError, match="out of bounds for dimension 1"):
        x[:, [-5]]
    with pytest.raises(IndexError, match="long, int, byte or bool"):
        x[Tensor([0.0])]
    with pytest.raises(IndexError, match=r"mask \[4\] does not match"):
        x[Tensor([True, False, True, True])]
    with pytest.raises(IndexError, match="could not be broadcast"):
        x[Tensor([0, 1]), Tensor([0, 1, 2])]
    with pytest.raises(IndexError, match="too many indices"):
        x[0, 0, [0]]
    with pytest.raises(TypeError):
        x["a"]
    with pytest.raises(
        ValueError, match=r"value tensor of shape \[3\] cannot be broadcast to indexing result of shape"
    ):
        x[0] = Tensor([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="cannot be broadcast"):
        x[[0, 1]] = Tensor([1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="integer tensor"):
        x.gather(0, Tensor([[0.0]]))
    with pytest.raises(ValueError, match="larger than the tensor"):
        x.gather(0, Tensor([[0, 1, 2, 0, 1]]))
    with pytest.raises(ValueError, match="as many dims"):
        x.gather(0, Tensor([0, 1]))
    with pytest.raises(ValueError, match="larger than src"):
        x.scatter(0, Tensor([[0, 1]]), Tensor([[1.0]]))
    with pytest.raises(ValueError, match="reduce"):
        x.scatter_reduce(0, Tensor([[0]]), x, "max")
    with pytest.raises(TypeError, match="bool tensor"):
        x.masked_fill(Tensor([1, 0, 1, 0]), 0.0)
    with pytest.raises(ValueError, match="does not broadcast"):
        x.masked_fill(Tensor([True, False, True]), 0.0)
    with pytest.raises(ValueError, match="0-d"):
        x.masked_fill(Tensor([True]), Tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="1-d"):
        x.index_select(0, Tensor([[0]]))
    with pytest.raises(IndexError, match="k=5"):
        x.topk(5)
    with pytest.raises(ValueError, match="size 6"):
        x.unfold(1, 6, 1)
    with pytest.raises(ValueError, match="step"):
        x.unfold(1, 2, 0)
    with pytest.raises(ValueError, match="1-d or 2-d"):
        Tensor.zeros(2, 2, 2).diag()
    with pytest.raises(ValueError, match="at least 2 dims"):
        Tensor.zeros(3).tril()
    with pytest.raises(ValueError, match="repeat"):
        x.repeat(2)
    with pytest.raises(TypeError, match="integer"):
        x.one_hot(3)


def test_known_tensor_indices_are_bounds_checked():
    """Index tensors already in host memory are checked like torch; the message names the index, dim and size."""
    x = Tensor(np.arange(12, dtype=np.float32).reshape(3, 4))
    with pytest.raises(IndexError, match="^index 3 is out of bounds for dimension 0 with size 3"):
        x[Tensor([0, 3])]
    with pytest.raises(IndexError, match="^index -5 is out of bounds for dimension 1 with size 4"):
        x[:, Tensor([[-5]])]
    with pytest.raises(IndexError, match="index 4 is out of bounds for dimension 1 with size 4"):
        x[Tensor([0]), Tensor([4])] = 1.0
    with pytest.raises(IndexError, match="gather: index 4 is out of bounds for dimension 1 with size 4"):
        x.gather(1, Tensor([[0], [4]]))
    with pytest.raises(IndexError, match="gather: index -1 is out of bounds"):  # gather takes no negatives
        x.gather(-1, Tensor([[-1]]))
    with pytest.raises(IndexError, match="index_select: index 3 is out of bounds for dimension 0 with size 3"):
        x.index_select(0, Tensor([3]))
    with pytest.raises(IndexError, match="scatter_add: index 9 is out of bounds for dimension 0"):
        x.scatter_add(0, Tensor([[9]]), x)
    with pytest.raises(IndexError, match="scatter: index 3 is out of bounds"):
        x.scatter(0, Tensor(np.array([[3]])), 0.0)
    realized = (Tensor([1, 2]) * 2).realize()  # realized on the CPU: known too
    with pytest.raises(IndexError, match="index 4 is out of bounds for dimension 1 with size 4"):
        x[:, realized]
    assert x[:, Tensor([-1, 0])].tolist() == [[3.0, 0.0], [7.0, 4.0], [11.0, 8.0]]  # negatives wrap, as in torch
    with pytest.raises(RuntimeError, match="below num_classes \\(3\\), got 3"):
        Tensor([0, 3]).one_hot(3)
    with pytest.raises(RuntimeError, match="non-negative, got -1"):
        Tensor([-1, 0]).one_hot(3)


def test_lazy_tensor_index_out_of_range_reads_zero():
    """A lazy index is not read back to check it: out of range reads 0 and writes nothing (torch raises)."""
    x = Tensor([1.0, 2.0, 3.0])
    assert x[Tensor([5, -4, 1]) * 1].tolist() == [0.0, 0.0, 2.0]
    y = Tensor([1.0, 2.0, 3.0])
    y[Tensor([7, 0]) + 0] = 9.0
    assert y.tolist() == [9.0, 2.0, 3.0]


def test_python_device():
    with batch():
        check(lambda x: x[[1, 0, 1], 1:], (2, 3), device="PYTHON", grad=True)
        check(lambda x, m: x[m], (2, 3), np.array([[True, False, True], [False, True, False]]), device="PYTHON")
        check(_written(([0, 1], [2, 0])), (2, 3), (2,), device="PYTHON", grad=True)
        check(lambda x, i, s: x.scatter_add(1, i, s), (2, 3), idx([2, 2], [0, 1]), (2, 2), device="PYTHON")
        check(lambda x: x.sort(descending=True), np.array([3.0, np.nan, 1.0, 3.0], np.float32), device="PYTHON",
              torch_fn=lambda x: x.sort(descending=True, stable=True))  # fmt: skip
        check(lambda x: x.topk(2), (2, 5), device="PYTHON", grad=True)
        check(lambda x: x.unfold(1, 2, 1).tril(), (2, 4), device="PYTHON", grad=True)
        check(lambda x: x.diag(1).roll(1, 0), (3,), device="PYTHON")
