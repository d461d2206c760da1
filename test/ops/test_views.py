"""Views as PyTorch's: each program below runs once on torch and once on boltgrad, and both must print the same.

A program gets ``lib`` (``torch`` or ``boltgrad``) and ``settle`` (``realize`` for boltgrad, nothing for torch), and
returns what it observed. ``settle`` marks where boltgrad computes: the result must not depend on it.
"""

import pytest
import torch

import boltgrad
from boltgrad.schedule.schedule import as_contiguous_buffer


def _as_list(v):
    if isinstance(v, tuple | list):
        return [_as_list(x) for x in v]
    if isinstance(v, torch.Tensor | boltgrad.Tensor):
        return v.tolist()
    return v


def _same(program):
    theirs = _as_list(program(torch, lambda t: t))
    ours = _as_list(program(boltgrad, lambda t: t.realize()))
    assert ours == theirs


def _row_of_lazy_zeros(lib, settle):
    z = lib.zeros(3, 3)
    z[0].fill_(1)
    z[:, 2].add_(2)
    return z


def _view_of_a_value_not_computed_yet(lib, settle):
    z = lib.tensor([1.0, 2.0, 3.0]) * 2
    v = z[1:]
    v.mul_(10)  # writes z
    z.add_(1)  # and v shows z's new values
    return z, v


def _view_read_by_an_op_after_its_base_is_written(lib, settle):
    w = settle(lib.tensor([1.0, 2.0, 3.0]).contiguous())
    v = w[0:2]
    w.add_(1)
    y = v * 2  # built after the write: the new values
    return y, v


def _values_before_a_write_keep_the_old_ones(lib, settle):
    w = settle(lib.tensor([1.0, 2.0, 3.0]).contiguous())
    v = w[1:]
    before = v * 1  # a value: computed from the old w
    v.fill_(0)
    return before, w


def _strided_slices_and_diagonals_are_views(lib, settle):
    x = settle(lib.zeros(4, 4).contiguous())
    x[:, ::2].fill_(1)
    x.diagonal().add_(10)
    x[1:3][:, 1::2].mul_(-1)
    return x


def _views_of_views_and_transposes(lib, settle):
    x = lib.arange(12.0).reshape(3, 4)
    t = x.T
    t[0].fill_(-1)  # x[:, 0]
    row = x[2]
    part = row[1:3]
    part.zero_()
    x.mul_(2)
    return x, row, t[3]


def _detach_and_data_write_the_tensor(lib, settle):
    p = lib.ones(2, 3, requires_grad=True)
    p.detach()[0].fill_(5)
    p.data[1, 1:].mul_(3)
    return p.detach()


def _a_write_to_a_view_reaches_the_gradient(lib, settle):
    x = lib.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    z = x * 2
    z.T[0].mul_(3)  # z[:, 0] *= 3, recorded: its gradient is 6, the rest's 2
    (z * z).sum().backward()
    return z.detach(), x.grad


def _a_value_written_into_a_view_gets_its_gradient(lib, settle):
    x = lib.ones(3, requires_grad=True)
    y = x * 1
    y[1:].mul_(x[1:] * 5)
    y.sum().backward()
    return y.detach(), x.grad


def _a_write_under_no_grad_to_a_leaf_view(lib, settle):
    p = lib.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    with lib.no_grad():
        p[0].fill_(0)
    (p * p).sum().backward()
    return p.detach(), p.grad, p.requires_grad


def _copies_stay_copies(lib, settle):
    x = settle(lib.tensor([1.0, 2.0, 3.0, 4.0]).contiguous())
    flipped, rep, padded, picked = x.flip(0), x.repeat(2), lib.nn.functional.pad(x, (1, 1)), x[[0, 2]]
    for c in (flipped, rep, padded, picked, x.clone(), x * 1):
        c.add_(10)
    x.add_(1)  # and the copies keep what they had
    return x, flipped, rep, padded, picked


def _copies_made_of_view_ops_keep_the_old_values(lib, settle):
    x = settle(lib.tensor([1.0, 2.0, 3.0]).contiguous())
    rep, picked, flipped = x.repeat(2), x[[0, 1]], x.flip(0)  # values of their own, not computed yet
    x.add_(1)
    return rep, picked, flipped, x


PROGRAMS = [
    _row_of_lazy_zeros,
    _view_of_a_value_not_computed_yet,
    _view_read_by_an_op_after_its_base_is_written,
    _values_before_a_write_keep_the_old_ones,
    _strided_slices_and_diagonals_are_views,
    _views_of_views_and_transposes,
    _detach_and_data_write_the_tensor,
    _a_write_to_a_view_reaches_the_gradient,
    _a_value_written_into_a_view_gets_its_gradient,
    _a_write_under_no_grad_to_a_leaf_view,
    _copies_stay_copies,
    _copies_made_of_view_ops_keep_the_old_values,
]


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.__name__.strip("_") for p in PROGRAMS])
def test_views_behave_as_torch_views(program):
    _same(program)


def test_writing_a_view_of_a_leaf_that_requires_grad_is_refused_as_in_torch():
    for lib in (torch, boltgrad):
        p = lib.ones(2, 2, requires_grad=True)
        with pytest.raises(RuntimeError, match="view of a leaf"):
            p[0].mul_(2)


def test_writing_an_expanded_view_is_refused_with_the_fix():
    x = boltgrad.Tensor.arange(4.0).contiguous().realize()
    for view in (x[0:1].expand(3), x.unfold(0, 2, 1)[0]):
        with pytest.raises(RuntimeError, match="made with expand"):
            view.fill_(9)
    assert x.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_a_view_of_a_value_nobody_else_holds_computes_only_itself():
    x = boltgrad.Tensor.arange(4096.0).reshape(64, 64)
    last = (x * 2)[-1]  # the product is held by nothing but the view: only its last row is computed
    boltgrad.stats.reset()
    assert last.tolist()[:2] == [8064.0, 8066.0]
    assert boltgrad.stats.kernels == 1 and last._base is None
    assert as_contiguous_buffer(last.node).arg.size == 64


def test_a_tensor_forgets_its_dead_views():
    w = boltgrad.Tensor.zeros(8, 8).contiguous().realize()
    for _ in range(1000):
        w.T.sum()  # a view made and dropped, as a forward pass does with a weight
    assert len(w._views or ()) <= 32


def test_a_view_of_all_of_a_value_computes_that_value_and_stays_a_view():
    """A permutation (a convolution's output in its batch-first order) of a value nobody else holds: the value is
    computed once, and the view reads it where it is, with no copy."""
    x = boltgrad.Tensor.arange(12.0).reshape(3, 4)
    t = (x * 2).T
    boltgrad.stats.reset()
    t.realize()
    assert boltgrad.stats.kernels == 1 and t._base is not None and as_contiguous_buffer(t._base.node) is not None
    assert t.tolist() == (x * 2).numpy().T.tolist()


def test_a_jitted_step_writes_its_state_through_views():
    def program(lib, jit):
        s = lib.zeros(3, 4)

        def step(x):
            s[1].add_(x)
            s.T[0].mul_(2)
            return (s * 1).sum()

        step = jit(step)
        return [step(lib.ones(4) * i).item() for i in range(1, 6)], s

    theirs = _as_list(program(torch, lambda f: f))
    ours = _as_list(program(boltgrad, boltgrad.jit))
    assert ours == theirs
