"""Views: tensors that share the value of another tensor, their *base*, as PyTorch's views share its memory.

``x[0]``, ``x[:, 1:3]``, ``x[:, ::2]``, ``x.T``, ``x.reshape(...)``, ``x.unsqueeze(0)``, ``x.diagonal()``,
``x.expand(...)``, ``x.detach()`` and ``x.data`` are views of ``x``: their node is a chain of view ops
(``VIEW_OPS``) over x's node, and the tensor remembers x (``Tensor._base``, the first tensor of the chain: a
view of a view has the same base). x remembers its views weakly (``Tensor._views``).

- **Reading.** Whenever x's node is replaced in place (realized, assigned, written through a view, a new version
  under autograd), its live views are rebased on the new node (``follow``): a view always shows its base's current
  value, lazy or not, as torch's does. Realizing a view realizes its base in its place, and the view stays a chain
  of view ops over the base's buffer; a view of a part of a value nothing else holds (``shares_its_base``) owns
  that value and is computed alone.
- **Writing.** An in-place write to a view writes its base (``write``): the value is mapped back through the chain
  (a reshape back, the inverse permutation, a pad where a shrink cut, a shrink where a pad added) and selected
  into the base with a mask, one kernel. A base in memory is assigned, lazily; a base not computed yet, or one
  whose gradient history must see the write, gets a new version of its graph, so gradients flow as torch's do
  through a write to a view. A write to a view of a leaf that requires grad is refused, as torch refuses it.

Copies, as in torch: ``flip`` (and negative steps), ``pad``, ``repeat``, ``contiguous``/``clone``, advanced
indexing. A write to an expanded view is refused: several of its elements are one element of the base.

    >>> w = Tensor.zeros(2, 3)
    >>> w[0].add_(1)          # w's first row
    >>> w.T[2, 1] = 5.0       # w[1, 2]
    >>> w.data.mul_(2)        # all of w, outside autograd
"""

from __future__ import annotations

import sys
import weakref
from typing import TYPE_CHECKING

from . import autograd
from .ir import dtypes
from .ir.node import Node
from .ir.ops import Op
from .tensor_shared import shared_view

if TYPE_CHECKING:
    from .tensor import Tensor

# ops that show their source's elements (or a subset, or one element several times, for EXPAND) in place; PAD
# only as a strided slice and a diagonal use it, padding, folding and cutting (no padded element is one of the
# view's): ``pad()``'s own result is a copy, and not a view of anything
VIEW_OPS = frozenset({Op.RESHAPE, Op.PERMUTE, Op.SHRINK, Op.EXPAND, Op.DETACH, Op.PAD})


def memory_of(node: Node) -> object | None:
    """The buffer a node is the whole of (through reshapes, and assigns to it), or None."""
    while node.op in (Op.RESHAPE, Op.ASSIGN):
        node = node.src[0]
    return node.arg if node.op is Op.BUFFER else None


def has_memory(t: Tensor) -> bool:
    """Whether ``t`` is in memory: a buffer (maybe with a write pending) or a slice of an optimizer's shared one."""
    return memory_of(t.node) is not None or shared_view(t) is not None


def register(view: Tensor, base: Tensor) -> None:
    """``view`` (a new tensor) is a view of ``base`` (``Tensor._view`` and ``detach`` call this)."""
    view._base = base
    views = base._views
    if views is None:
        base._views = [weakref.ref(view)]
    else:
        views.append(weakref.ref(view))
        if len(views) >= 16 and not len(views) & (len(views) - 1):  # at 16, 32, 64...: drop the dead
            views[:] = [r for r in views if r() is not None]


def view_chain(view: Tensor) -> list[Node] | None:
    """The view ops from ``view``'s node down to its base's node (top first), or None when ``view`` is not (or no
    longer) a view: it has no base, or was given a value of its own, or its base was (a new shape or device)."""
    base = view._base
    return None if base is None else _chain(view.node, base.node)


def _chain(node: Node, bottom: Node) -> list[Node] | None:
    chain = []
    while node is not bottom:
        if node.op not in VIEW_OPS:
            return None
        chain.append(node)
        node = node.src[0]
    return chain


def aliases(t: Tensor) -> bool:
    """Whether ``t`` shows a value it does not own: a view of a tensor (above), or of an optimizer's shared buffer."""
    return shared_view(t) is not None or (t._base is not None and view_chain(t) is not None)


def shares_its_base(view: Tensor) -> bool:
    """Whether anything but ``view`` holds its base: the tensor it was made from, or another view of it. When
    nothing does (``Tensor(buffer).reshape(shape)``, or ``model(x)[:, -1]``: the base was a step of making this
    tensor), nobody could see a write to the base other than through ``view``, which then owns it as its own."""
    return sys.getrefcount(view._base) > 2  # (view._base, and the argument of getrefcount)


def moves_all_of_its_base(view: Tensor, chain: list[Node]) -> bool:
    """Whether ``view`` shows all of its base's elements, moved (a convolution's batch-first output, a permutation of
    the value it computes): realizing the base costs no more, and the view then needs no copy. (A reshape is
    computed as the view itself: the same kernel, in the view's own shape.)"""
    base = view._base
    assert base is not None
    return base.numel() <= view.numel() and any(n.op not in (Op.RESHAPE, Op.DETACH) for n in chain)


def follow(base: Tensor, old: Node) -> None:
    """``base``'s node was ``old`` and is replaced in place (same shape, device and dtype; new values or the same
    ones in memory now): its live views are rebased on the new node. Views of ``old`` that are no longer (given a
    value of their own since), and all of them when the base changed shape, dtype or device, are forgotten."""
    new = base.node
    same_kind = new.shape == old.shape and new.dtype == old.dtype and new.device == old.device
    keep = []
    for r in base._views or ():
        v = r()
        if v is None or v._base is not base:
            continue
        chain = _chain(v.node, old) if same_kind else None
        if chain is None:
            v._base = None  # a value of its own
            continue
        node = new
        for n in reversed(chain):
            node = Node(n.op, n.dtype, (node,), n.arg)
        v.node = node
        keep.append(r)
    base._views = keep or None


def write(view: Tensor, value: Tensor, chain: list[Node]) -> None:
    """Write ``value`` (of ``view``'s shape and dtype) into the elements of ``view``'s base that ``view`` shows;
    ``chain`` is ``view_chain(view)``. The base, and so every view of it, shows the new values."""
    base = view._base
    assert base is not None
    if any(n.op is Op.EXPAND for n in chain):
        raise RuntimeError(f"in-place write to a {list(view.shape)} view of a {list(base.shape)} tensor made with "
                           "expand (or unfold): one element of the tensor may be several of the view's. fix: write "
                           "to a copy (.contiguous()) or to the tensor itself")  # fmt: skip
    grad = autograd.is_grad_enabled() and (view.requires_grad or value.requires_grad)  # (not through .detach())
    if grad and base._leaf_grad:
        raise RuntimeError(f"in-place write to a view of a leaf tensor that requires grad ({list(base.shape)}): "
                           "autograd cannot see it. fix: write under boltgrad.no_grad() (as an initialization "
                           "does), or to a copy (.clone())")  # fmt: skip
    from .tensor_readers import track

    with autograd.no_grad():
        inside = view._const_like(True, dtypes.bool_)
        for n in chain:  # top first: from each op's shape back to its source's
            inside = _unview(n, inside)
    if grad or not has_memory(base):
        # a new version of the base's graph: the write is a value autograd sees, and so is the rest of the base
        with autograd.set_grad_enabled(grad or base.requires_grad):
            value = value if grad else value.detach()
            for n in chain:
                value = _unview(n, value)
            merged = inside._select(value, base)
        base._set_node(merged.node)
        track(base)
        return
    with autograd.no_grad():
        for n in chain:
            value = _unview(n, value)
        base.assign(inside._select(value, base.detach()))


def _unview(n: Node, t: Tensor) -> Tensor:
    """``t``, of the shape of chain op ``n``, placed in the shape of its source (padding where ``n`` cut)."""
    src = n.src[0].shape
    if n.op is Op.RESHAPE:
        return t.reshape(src)
    if n.op is Op.PERMUTE:
        return t.permute(sorted(range(len(n.arg)), key=n.arg.__getitem__))
    if n.op is Op.SHRINK:
        return t.pad(tuple((lo, size - hi) for (lo, hi), size in zip(n.arg, src)))
    if n.op is Op.PAD:
        return t.shrink(tuple((before, before + size) for (before, _), size in zip(n.arg, src)))
    return t  # DETACH
