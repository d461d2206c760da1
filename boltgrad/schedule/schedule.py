"""The scheduler: which nodes become buffers, and the kernels that fill them, in order.

A node is *materialized* (gets a buffer of its own) when it is a realize target, an explicit CONTIGUOUS, an
ASSIGN, a COPY between devices, or a REDUCE that cannot fuse into its consumer: one read by several nodes, or
one reached through an EXPAND (a broadcast reduce would be recomputed for every element it is broadcast to).
Everything else fuses: elementwise chains into their consumer, a reduce with its elementwise prologue and
epilogue, movement ops as index arithmetic.

Each kernel is described by an *AST*: ``STORE(PARAM 0, value)`` where every materialized input is a
``PARAM(i, shape)`` placeholder. Kernels with equal ASTs are the same hash-consed node, so compiled programs
are looked up by AST identity.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

from ..device.buffer import Buffer
from ..device.registry import Device_
from ..helpers import prod
from ..ir.node import Node
from ..ir.ops import ELEMENTWISE, Op


@dataclass
class KernelItem:
    ast: Node  # STORE(PARAM(0, shape), value)
    buffers: list[Buffer]  # output first, then inputs in PARAM order
    var_values: dict[Node, int]  # VAR -> bound value
    device: str


@dataclass
class CopyItem:
    dest: Buffer
    src: Buffer


@dataclass
class Schedule:
    items: list[KernelItem | CopyItem] = field(default_factory=list)
    outputs: dict[Node, Buffer] = field(default_factory=dict)  # target node -> buffer holding its value
    temporaries: list[Buffer] = field(default_factory=list)  # buffers only this schedule reads


# nodes realized earlier, so a graph that still refers to them reads their buffer instead of recomputing
_realized: weakref.WeakKeyDictionary[Node, Node] = weakref.WeakKeyDictionary()


def buffer_view(buf_node: Node, shape: tuple[int, ...]) -> Node:
    return buf_node if shape == buf_node.shape else Node(Op.RESHAPE, buf_node.dtype, (buf_node,), shape)


def realized_as(node: Node) -> Node | None:
    """The BUFFER view that holds ``node``'s value, if it was realized."""
    return _realized.get(node)


def record_realized(node: Node, view: Node) -> None:
    _realized[node] = view


def as_contiguous_buffer(n: Node) -> Node | None:
    """The BUFFER node when n is a contiguous view of a whole buffer (a reshape of it), else None."""
    if n.op is Op.BUFFER:
        return n
    if n.op is Op.RESHAPE and n.src[0].op is Op.BUFFER and prod(n.shape) == n.src[0].arg.size:
        return n.src[0]
    return None


def device_of(n: Node) -> str:
    """The device a graph computes on: that of its buffers (COPY nodes name theirs)."""
    for x in n.toposort():
        if x.op is Op.BUFFER:
            return x.arg.device
        if x.op in (Op.COPY, Op.DEVICE):
            return x.arg
    return ""


def _resolve(root: Node, memo: dict[Node, Node]) -> Node:
    """Replace subgraphs that were realized before with their buffers."""
    for n in root.toposort():
        if n in memo:
            continue
        hit = _realized.get(n)
        if hit is not None:
            memo[n] = hit
            continue
        new_src = tuple(memo[s] for s in n.src)
        memo[n] = n if new_src == n.src else n.replace(src=new_src)
    return memo[root]


def _materialized(targets: list[Node]) -> set[Node]:
    """The nodes that get buffers of their own."""
    parents: dict[Node, set[Node]] = {}
    for t in targets:
        for n in t.toposort():
            for s in n.src:
                parents.setdefault(s, set()).add(n)
    chosen: set[Node] = {t for t in targets if as_contiguous_buffer(t) is None}
    for t in targets:
        for n in t.toposort():
            if n.op in (Op.CONTIGUOUS, Op.ASSIGN, Op.COPY):
                chosen.add(n)
            if n.op is Op.COPY:
                chosen.add(n.src[0])  # a copy moves a whole buffer
            if n.op is Op.REDUCE and len(parents.get(n, ())) > 1:
                chosen.add(n)
    # a reduce read through an EXPAND from its kernel's root would be recomputed per broadcast element
    roots = list(chosen)
    seen: set[tuple[Node, bool]] = set()
    while roots:
        root = roots.pop()
        stack = [(s, False) for s in root.src]
        while stack:
            n, expanded = stack.pop()
            if (n, expanded) in seen or n.op is Op.BUFFER:
                continue
            seen.add((n, expanded))
            if n in chosen:
                if (n, None) not in seen:
                    seen.add((n, None))  # type: ignore[arg-type]
                    roots.append(n)
                continue
            if n.op is Op.REDUCE and expanded:
                chosen.add(n)
                roots.append(n)
                continue
            passes_expand = expanded or n.op is Op.EXPAND
            stack.extend((s, passes_expand) for s in n.src)
    return chosen


def create_schedule(targets: list[Node]) -> Schedule:
    memo: dict[Node, Node] = {}
    resolved = [_resolve(t, memo) for t in targets]
    chosen = _materialized(resolved)
    sched = Schedule()
    buffers: dict[Node, Buffer] = {}
    order: list[Node] = []
    seen: set[Node] = set()
    for t in resolved:
        for n in t.toposort():
            if n in chosen and n not in seen:
                seen.add(n)
                order.append(n)

    for n in order:
        if n.op is Op.COPY:
            src_buf = _buffer_for(n.src[0], buffers)
            dest = Buffer(n.arg, prod(n.shape), n.dtype)
            buffers[n] = dest
            sched.items.append(CopyItem(dest, src_buf))
            continue
        if n.op is Op.ASSIGN:
            target = as_contiguous_buffer(n.src[0])
            if target is None:
                raise ValueError("assign: the target must be a realized, contiguous tensor; call .contiguous() first")
            out = target.arg
        else:
            out = Buffer(device_of(n) or Device_.DEFAULT, prod(n.shape), n.dtype)
        buffers[n] = out
        sched.items.append(_kernel_item(n, out, chosen, buffers))

    keep = {id(buffers[r]) for r in resolved if r in buffers}
    sched.temporaries = [b for n, b in buffers.items() if n.op is not Op.ASSIGN and id(b) not in keep]
    for t, r in zip(targets, resolved):
        if r in buffers:
            sched.outputs[t] = buffers[r]
        else:
            buf_node = as_contiguous_buffer(r)
            assert buf_node is not None
            sched.outputs[t] = buf_node.arg
    return sched


def _buffer_for(n: Node, buffers: dict[Node, Buffer]) -> Buffer:
    if n in buffers:
        return buffers[n]
    buf_node = as_contiguous_buffer(n)
    if buf_node is None:
        raise RuntimeError(f"internal: {n.op.name} was not materialized before use")
    return buf_node.arg


def _kernel_item(root: Node, out: Buffer, chosen: set[Node], buffers: dict[Node, Buffer]) -> KernelItem:
    """Build the AST of the kernel computing ``root``: materialized inputs become PARAM placeholders."""
    value = root.src[-1] if root.op in (Op.CONTIGUOUS, Op.ASSIGN) else root
    params: dict[Buffer, Node] = {}
    bufs: list[Buffer] = [out]
    var_values: dict[Node, int] = {}
    memo: dict[Node, Node] = {}

    def param_for(buf: Buffer, shape: tuple[int, ...], dtype) -> Node:
        key = params.get(buf)
        if key is None:
            bufs.append(buf)
            key = params[buf] = Node(Op.PARAM, dtype, (), (len(bufs) - 1, (buf.size,)))
        return key if shape == (buf.size,) else Node(Op.RESHAPE, dtype, (key,), shape)

    for n in value.toposort():
        if (n in chosen and n is not value and n is not root) or n.op is Op.BUFFER:
            buf = buffers[n] if n in buffers else n.arg
            memo[n] = param_for(buf, n.shape, n.dtype)
        elif n.op is Op.BIND:
            var = n.src[0]
            var_values[var] = n.arg
            memo[n] = var
        elif n.op in ELEMENTWISE or n.src:
            new_src = tuple(memo[s] for s in n.src)
            memo[n] = n if new_src == n.src else n.replace(src=new_src)
        else:
            memo[n] = n
    out_param = Node(Op.PARAM, out.dtype, (), (0, root.shape))
    ast = Node(Op.STORE, out.dtype, (out_param, memo[value]))
    return KernelItem(ast, bufs, var_values, out.device)
