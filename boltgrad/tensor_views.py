"""Views: tensors that share the memory of another tensor, their *base*, as PyTorch's views do.

``x[0]``, ``x[:, 1:3]``, ``x.T``, ``x.reshape(...)``, ``x.unsqueeze(0)``, ``x.detach()`` and ``x.data`` are views of
``x``: their node is a chain of ``RESHAPE``, ``PERMUTE``, ``SHRINK``, ``EXPAND`` and ``DETACH`` over x's node, and
the tensor remembers x (``Tensor._base``). When x has memory (a buffer, or a slice of an optimizer's shared buffer),
a view reads its base's current values (it is never computed into a copy
of its own: realizing it leaves it a view), and an in-place write to it writes the base (``write_through``):

    >>> w = Tensor.zeros(2, 3).contiguous()
    >>> w[0].add_(1)          # w's first row
    >>> w.T[2, 1] = 5.0       # w[1, 2]
    >>> w.data.mul_(2)        # all of w, outside autograd

A strided slice (``x[:, ::2]``), a diagonal, ``flip``, ``pad`` and ``repeat`` are copies, as in PyTorch (their nodes
pad, flip, or reshape a broadcast). A write to an expanded view is refused, as PyTorch refuses it: several of its
elements are one element of the base. Views of a tensor not computed yet (``(x * 2)[0]``) are values of their own,
as before it has memory: writing one does not change the tensor (PyTorch's would).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from .ir.node import Node
from .ir.ops import Op
from .tensor_shared import shared_view

if TYPE_CHECKING:
    from .tensor import Tensor

VIEW_OPS = frozenset({Op.RESHAPE, Op.PERMUTE, Op.SHRINK, Op.EXPAND, Op.DETACH})


def is_view(node: Node) -> bool:
    """True for a buffer seen through view ops: its value is the buffer's current contents."""
    while node.op in VIEW_OPS:
        node = node.src[0]
    return node.op is Op.BUFFER


def view_chain(view: Tensor) -> list[Node] | None:
    """The view ops from ``view``'s node down to its base's node (top first), or None when ``view`` is not (or no
    longer) a view of its base: a copy was made of it, or of the base."""
    base = view._base
    if base is None:
        return None
    memory = memory_of(base.node)
    if memory is None and shared_view(base) is None:
        # the base has no memory (yet): a constant broadcast (``full``), a value not computed. Its views are values
        return None
    chain, node = [], view.node
    while True:
        if node is base.node:
            return chain
        # a view made before the base's memory was written (an assign, pending or realized) still shows it
        if memory is not None and node.shape == base.shape and memory_of(node) is memory:
            return chain
        if node.op not in VIEW_OPS:
            return None
        chain.append(node)
        node = node.src[0]


def memory_of(node: Node) -> object | None:
    """The buffer a node is the whole of (through reshapes, and assigns to it), or None."""
    while node.op in (Op.RESHAPE, Op.ASSIGN):
        node = node.src[0]
    return node.arg if node.op is Op.BUFFER else None


def aliases(t: Tensor) -> bool:
    """Whether ``t`` shows memory it does not own: a view of a tensor (above), or of an optimizer's shared buffer."""
    return shared_view(t) is not None or (t._base is not None and view_chain(t) is not None)


def shares_its_base(view: Tensor) -> bool:
    """Whether anything but ``view`` holds its base: the tensor it was made from, or another view of it. When
    nothing does (``Tensor(buffer).reshape(shape)``: the base was a step of making this tensor), nobody could see a
    write to the base's memory other than through ``view``, which then owns that memory as its own."""
    return sys.getrefcount(view._base) > 2  # (view._base, and the argument of getrefcount)


def write_through(view: Tensor, value: Tensor, chain: list[Node]) -> None:
    """Write ``value`` (of ``view``'s shape and dtype) into the elements of ``view``'s base that ``view`` shows,
    now; ``chain`` is ``view_chain(view)``. The base gets a buffer of its own first if it shared one."""
    from .autograd import no_grad
    from .tensor import Tensor

    base = view._base
    assert base is not None
    if any(n.op is Op.EXPAND for n in chain):
        raise RuntimeError(f"in-place write to a {list(view.shape)} view that expands its base {list(base.shape)}: "
                           "several of its elements are one element of the base. fix: write to a copy "
                           "(.contiguous()) or to the base")  # fmt: skip
    with no_grad():
        inside = Tensor.ones(*view.shape, dtype="bool", device=view.device)
        for n in chain:  # top first: from each op's shape back to its source's
            value, inside = _unview(n, value), _unview(n, inside)
        base.assign(inside._select(value, base.detach()))
        base.realize()
    rebase(view, chain)  # the base's memory may be a copy of its own now


def rebase(view: Tensor, chain: list[Node]) -> None:
    """Point ``view``'s ``chain`` (from ``view_chain``) at its base's node as it is now (realized since)."""
    base = view._base
    assert base is not None
    node = base.node
    for n in reversed(chain):
        node = Node(n.op, n.dtype, (node,), n.arg)
    view.node = node


def _unview(n: Node, t: Tensor) -> Tensor:
    """``t``, of the shape of view op ``n``, placed in the shape of its source (padding where ``n`` cut)."""
    src = n.src[0].shape
    if n.op is Op.RESHAPE:
        return t.reshape(src)
    if n.op is Op.PERMUTE:
        return t.permute(sorted(range(len(n.arg)), key=n.arg.__getitem__))
    if n.op is Op.SHRINK:
        return t.pad(tuple((lo, size - hi) for (lo, hi), size in zip(n.arg, src)))
    return t  # DETACH
