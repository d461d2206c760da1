"""Lazy readers of memory about to be overwritten: the tensors a realize must compute before it writes.

A lazy tensor is computed when it is read, not when it is built. So in

    y = w * 2
    w += 1
    y.tolist()

``y`` would see the new ``w`` if it were computed at ``tolist()``; PyTorch computes ``w * 2`` at once and gives
the old ``w``'s double, and so must we (``prev = w.clone(); w.add_(1)`` keeps the old values in ``prev``). A realize
that overwrites a buffer (an ASSIGN in its graph) therefore first finds the live tensors whose lazy graphs read
that buffer and realizes them in the same schedule, which runs every read of a buffer before the write. A jit
replay, which writes without a realize, asks the same before it runs.

A *view* of a buffer (``w[0]``, ``w.T``, ``w.detach()``: ``tensor_views.py``) is not a value of its own: as in
PyTorch it reads the buffer's current contents, so it is left alone.

The live tensors that may hold a lazy graph are kept weakly in a list: every op's result and every tensor an
assign makes lazy again is appended (a reference, O(1)). Views and dead tensors are dropped whenever the list has
doubled since it was last pruned, and whenever it is searched.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .device.buffer import Buffer
from .ir.node import Node, toposort
from .ir.ops import Op
from .schedule.schedule import as_contiguous_buffer
from .tensor_views import aliases, memory_of

if TYPE_CHECKING:
    from .tensor import Tensor

tracked: list[weakref.ref] = []
prune_past = 512  # prune when the list is longer: twice its length after the last pruning, and at least 512


def track(t: Any) -> None:
    """Remember ``t`` (weakly) as a tensor whose node may be a lazy graph (``Tensor._from_node`` inlines this)."""
    tracked.append(weakref.ref(t))
    if len(tracked) > prune_past:
        live_lazy()


def live_lazy() -> list[Tensor]:
    """The tracked tensors that are alive and lazy (their node is not a view), pruning the rest from the list."""
    global prune_past
    if not tracked:
        return []
    # (a tensor an assign made lazy again is listed twice: keep one, by identity; == on tensors is elementwise)
    live = list({id(t): t for r in tracked if (t := r()) is not None and not _settled(t)}.values())
    tracked[:] = [weakref.ref(t) for t in live]
    prune_past = max(512, 2 * len(tracked))
    return live


def _settled(t: Tensor) -> bool:
    """Whether ``t`` needs no computing before a write: in memory of its own, or a view (of another tensor, which is
    the one computed, or of a shared buffer). A copy made by view ops (``repeat``, ``x[[0, 1]]``) is a value."""
    return as_contiguous_buffer(t.node) is not None or aliases(t)


def written_buffers(order: Iterable[Node]) -> set[int]:
    """The ids of the buffers the ASSIGNs among ``order`` (a graph's nodes) overwrite."""
    return {id(m) for n in order if n.op is Op.ASSIGN and (m := memory_of(n.src[0])) is not None}


def readers_of_batch(todo: list[Tensor], order: list[Node] | None = None) -> list[Tensor]:
    """The live lazy tensors outside ``todo`` whose graphs read a buffer that realizing ``todo`` overwrites;
    ``order`` is the toposort of ``todo``'s nodes where the caller has it."""
    skip = {id(t) for t in todo}
    candidates = [t for t in _values() if id(t) not in skip]
    if not candidates:
        return []
    return _reading(candidates, written_buffers(toposort([t.node for t in todo]) if order is None else order))


def readers_of(buffers: Iterable[Buffer]) -> list[Tensor]:
    """The live lazy tensors whose graphs read one of ``buffers`` (a jit replay's writes)."""
    candidates = _values()
    return _reading(candidates, {id(b) for b in buffers}) if candidates else []


def _values() -> list[Tensor]:
    """The live lazy tensors that are values of their own: a view (of a tensor, of a shared buffer) is not, it
    reads what is written."""
    return [t for t in live_lazy() if not aliases(t)]


def _reading(candidates: list[Tensor], written: set[int]) -> list[Tensor]:
    """The candidates whose graphs read a buffer with its id in ``written`` (one walk over all their graphs)."""
    if not written:
        return []
    reads: dict[Node, bool] = {}
    for n in toposort([t.node for t in candidates]):
        if n.op is Op.BUFFER:
            reads[n] = id(n.arg) in written
        else:
            reads[n] = any(reads[s] for s in n.src)
    return [t for t in candidates if reads[t.node]]
