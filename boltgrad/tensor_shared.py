"""Tensors that stay views into part of a buffer they share with other tensors.

An optimizer keeps the parameters of a group in one flat buffer (and its state likewise), so that its update of
all of them is one kernel per tensor it writes instead of one per parameter. Each parameter stays the Tensor object
its module holds, now a view of its slice of that buffer::

    flat = <a 1-d tensor in a buffer of its own, holding w's values at 0 and b's after them>
    share(w, flat, 0)
    share(b, flat, w.numel())

A shared view is a view of memory that no tensor owns (a view of a tensor is ``tensor_views.py``'s). Realizing it
(``.numpy()``, ``.item()``) reads a copy but keeps the view: a computed tensor realized swaps its graph for a buffer
of its own, which the next update of the shared buffer would not reach. And ``assign`` writes the view's block of
the shared buffer (a block write), so an in-place change (``load_state_dict``, ``nn.init``, ``with no_grad():
w.add_(...)``) lands where the owner of the buffer reads it. A tensor whose graph is replaced some other way
(``Module.to`` moving it to another device) stops being a shared view; the owner finds that out with
``shared_view`` and copies it back or gives up sharing.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import autograd
from .helpers import prod
from .ir.node import Node
from .ir.ops import Op
from .schedule.schedule import as_contiguous_buffer

if TYPE_CHECKING:
    from .tensor import Tensor


@dataclass
class SharedView:
    ref: weakref.ref  # the tensor
    whole: Node  # the shared buffer's 1-d BUFFER node
    offset: int  # where the tensor's elements start in it
    view: Node  # the tensor's node while nothing is pending: the slice, reshaped
    pending: Node | None = None  # a block ASSIGN of the slice, not realized yet
    pending_view: Node | None = None  # the tensor's node while that write is pending

    def view_of(self, node: Node, shape: tuple[int, ...]) -> Node:
        """The tensor's slice of ``node`` (the buffer, or an assign of it), in the tensor's shape."""
        n = prod(shape)
        if (self.offset, n) != (0, node.shape[0]):
            node = Node(Op.SHRINK, node.dtype, (node,), ((self.offset, self.offset + n),))
        return node if node.shape == shape else Node(Op.RESHAPE, node.dtype, (node,), shape)


# id(tensor) -> its record (by id: a WeakKeyDictionary would compare tensors with ==, which is elementwise)
_shared: dict[int, SharedView] = {}


def share(t: Tensor, whole: Tensor, offset: int) -> None:
    """Make ``t`` a view of ``whole`` (a 1-d tensor in a buffer of its own) at ``offset`` from now on. The caller has
    written ``t``'s value there. A leaf stays the same leaf: autograd knows it by its new node."""
    buf = as_contiguous_buffer(whole.node)
    if buf is None or whole.ndim != 1 or whole.dtype != t.dtype or not 0 <= offset <= whole.numel() - t.numel():
        raise ValueError(f"share: a {t.dtype.name}{t.shape} tensor does not fit {whole.dtype.name}{whole.shape} "
                         f"at {offset}; the shared tensor must be a 1-d buffer of the same dtype")  # fmt: skip
    record = SharedView(weakref.ref(t, functools.partial(_forget, id(t))), buf, offset, buf)
    record.view = record.view_of(buf, t.shape)
    if t._leaf_grad:
        autograd.unregister_leaf(t.node)
        autograd.register_leaf(record.view, t)
    t._base = None  # a view of the shared buffer now, and of nothing else
    t._set_node(record.view)
    _shared[id(t)] = record


def _forget(key: int, _: weakref.ref) -> None:
    _shared.pop(key, None)


def shared_view(t: Tensor) -> SharedView | None:
    """``t``'s record while it is a shared view (its node is the view, or a write of it still pending)."""
    record = _shared.get(id(t))
    if record is None or record.ref() is not t:
        return None
    if t.node is not record.view and t.node is not record.pending_view:
        del _shared[id(t)]  # given another value some other way: no longer a view of the buffer
        return None
    return record


def write(t: Tensor, record: SharedView, value: Tensor) -> None:
    """``t.assign(value)`` for a shared view: a pending write of its slice (``value`` has ``t``'s shape and dtype).

    The ASSIGN's value keeps ``t``'s shape, a block of another rank than the 1-d buffer at one start: its kernel
    loops over ``t``'s dims and stores at the start plus the flat index, so a gradient written into an optimizer's
    flat buffer keeps the loops (and the register tiles) it has when written to a buffer of its own."""
    old = t.node
    block = Node(Op.ASSIGN, t.dtype, (record.whole, value.node), (record.offset,))
    record.pending_view = record.view_of(block, t.shape)
    t._set_node(record.pending_view)
    record.pending = block
    if autograd.needs_grad(old):
        autograd.alias(t.node, old)


def settle(t: Tensor, record: SharedView) -> None:
    """After the pending write was realized: ``t`` is the plain view again."""
    t._set_node(record.view)
    record.pending = record.pending_view = None
