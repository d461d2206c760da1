"""What was computed before: nodes realized earlier and the buffers that hold their values.

A graph that still refers to a realized node reads its buffer instead of computing it again, as long as none of
the buffers it read was overwritten since (each buffer has a version an assign bumps).
"""

from __future__ import annotations

import weakref

from ..device.buffer import Buffer
from ..ir.node import Node, WeakNodeTable, toposort, weak_key
from ..ir.ops import Op

# nodes realized earlier, so a graph that still refers to them reads their buffer instead of recomputing;
# each entry remembers the versions of the buffers it read, and is void once any of them is overwritten.
# node -> (its view, or a weakref to it; the versions), asked of every node of every graph realized
_realized = WeakNodeTable()


def buffer_view(buf_node: Node, shape: tuple[int, ...]) -> Node:
    return buf_node if shape == buf_node.shape else Node(Op.RESHAPE, buf_node.dtype, (buf_node,), shape)


def realized_as(node: Node) -> Node | None:
    """The BUFFER view that holds ``node``'s value, if it was realized and its inputs are unchanged since."""
    hit = _realized.get(weak_key(node))
    if hit is None:
        return None
    view, versions = hit
    if isinstance(view, weakref.ref):
        view = view()
    if view is None or any(buf.version != v for buf, v in versions):
        _realized.pop(weak_key(node), None)
        return None
    if view.device != node.device:  # equal graphs on two devices: each device keeps its own value
        return None
    return view


def record_realized(node: Node, view: Node, versions: tuple[tuple[Buffer, int], ...], weak: bool = False) -> None:
    """Remember that ``node``'s value is in ``view`` (held weakly with ``weak``: the record lasts while it lives).
    A graph of no device (a Variable's expression) is not remembered: which device's buffer would stand for it
    depends on the graph that reads it."""
    if node.device:
        _realized.put(node, (weakref.ref(view) if weak else view, versions))


def input_versions(nodes: list[Node], order: list[Node] | None = None) -> list[tuple[tuple[Buffer, int], ...]]:
    """The buffers each graph of ``nodes`` reads, with their versions now; ``order`` is ``toposort(nodes)`` where
    the caller has it. One walk for all of them: graphs realized together share most of their nodes (a loss and
    its gradients), so each node gets a bit mask of the buffers below it, the union of its sources' masks."""
    if order is None:
        order = toposort(nodes)
    if len(nodes) == 1:
        return [tuple((x.arg, x.arg.version) for x in order if x.op is Op.BUFFER)]
    below: dict[Node, int] = {}
    buffers: list[Buffer] = []
    for n in order:
        if n.op is Op.BUFFER:
            below[n] = 1 << len(buffers)
            buffers.append(n.arg)
            continue
        mask = 0
        for s in n.src:
            mask |= below[s]
        below[n] = mask
    found = []
    for n in nodes:
        mask, reads = below[n], []
        while mask:  # the set bits, lowest first
            buf = buffers[(mask & -mask).bit_length() - 1]
            reads.append((buf, buf.version))
            mask &= mask - 1
        found.append(tuple(reads))
    return found


def bump_version(buf: Buffer) -> None:
    buf.version += 1


def record_assigns(order: list[Node], buffers: dict[Node, Buffer], memo: dict[Node, Node]) -> None:
    """Remember each buffer's last assign in this schedule as realized, so that a graph still holding the
    ASSIGN node (a tensor assigned but realized only through another one) reads the buffer, never writes again."""
    last: dict[int, Node] = {}
    for n in order:
        if n.op is Op.ASSIGN:
            last[id(buffers[n])] = n
    if not last:
        return
    original = {new: old for old, new in memo.items() if new.op is Op.ASSIGN}
    for n in last.values():
        buf = buffers[n]
        view = buffer_view(Node(Op.BUFFER, buf.dtype, (), buf), n.shape)
        record_realized(original.get(n, n), view, ((buf, buf.version),))
