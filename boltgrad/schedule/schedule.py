"""The scheduler: which nodes become buffers (``materialize.py``), and the kernels that fill them, in order.

Each kernel is described by an *AST*: ``STORE(PARAM 0, value)`` where every materialized input is a
``PARAM(i, shape)`` placeholder. Kernels with equal ASTs are the same hash-consed node, so compiled programs
are looked up by AST identity. A graph of the same structure as one scheduled before (the same graph over other
buffers: the next training step) reuses that schedule (``cache.py``); ``realized.py`` remembers which nodes were
computed before, so a graph that reads them reads their buffers.
"""

from __future__ import annotations

import functools

from ..device.buffer import Buffer
from ..device.registry import Device_
from ..helpers import prod
from ..ir.node import Node, toposort
from ..ir.ops import ELEMENTWISE, Op
from . import cache as schedule_cache
from .items import CopyItem, KernelItem, Schedule
from .materialize import as_contiguous_buffer, device_of, materialized
from .realized import bump_version, realized_as, record_assigns


def toposort_until(root: Node, stop: set[Node]) -> list[Node]:
    """Like ``root.toposort()``, without descending below nodes in ``stop`` (they are still listed)."""
    return toposort(root, stop=stop)


def _resolve(targets: list[Node], memo: dict[Node, Node], order: list[Node] | None = None) -> tuple[list[Node], bool]:
    """The targets with subgraphs that were realized before replaced by their buffers (one walk for all), and
    whether anything was replaced; ``memo`` receives each node's replacement. ``order``, the targets' toposort
    where the caller has it, is walked whole (below a realized node too, where the walk of its own would stop)."""

    def below(n: Node) -> tuple[Node, ...]:
        hit = realized_as(n)
        if hit is not None:
            memo[n] = hit
            return ()
        return n.src

    asked = order is None  # the walk of our own asks each node as it goes; a given order is asked here
    if order is None:
        order = toposort(targets, children=below)
    changed = any(hit is not n for n, hit in memo.items())
    for n in order:
        if n in memo:
            continue
        if not asked and (hit := realized_as(n)) is not None:
            memo[n] = hit
            changed = changed or hit is not n
        elif changed and any(memo[s] is not s for s in n.src):
            memo[n] = n.replace(src=tuple(memo[s] for s in n.src))
        else:
            memo[n] = n
    return [memo[t] for t in targets], changed


def _target_buffer(assign: Node) -> Buffer:
    target = as_contiguous_buffer(assign.src[0])
    if target is None:
        raise ValueError("assign: the target must be a realized, contiguous tensor; call .contiguous() first")
    return target.arg


def _assign_reads_shifted(assign: Node, chosen: set[Node], body: list[Node]) -> bool:
    """Whether the value written by ``assign`` reads its own target at other positions than it writes;
    ``body`` is the assign's kernel body (``toposort_until(assign, chosen)``).

    Writing in place is safe when every read of the target is at the element being written: the target's
    buffer is read whole-shape and only elementwise ops sit above it.
    """
    target = _target_buffer(assign)
    if assign.src[-1] in chosen:
        return False
    nodes = [n for n in body if n is not assign]
    parents: dict[Node, list[Node]] = {}
    for n in nodes:
        for s in n.src:
            parents.setdefault(s, []).append(n)
    for n in nodes:
        if n.op is not Op.BUFFER or n.arg is not target:
            continue
        for view in parents.get(n, []):
            whole = view if view.shape == assign.shape else None
            if view.op is Op.RESHAPE and whole is not None:
                users = parents.get(view, [])
            elif view.op in ELEMENTWISE and n.shape == assign.shape:
                users = [view]
            else:
                return True
            if any(u.op not in ELEMENTWISE for u in users):
                return True
    return False


def _kernel_order(
    nodes: list[Node], chosen: set[Node], bodies: dict[Node, list[Node]]
) -> tuple[list[Node], list[tuple[Node, Buffer]]]:
    """Materialized nodes in an order where inputs come first and every read of a buffer that an ASSIGN
    overwrites runs before the ASSIGN. ``bodies`` has each kernel's nodes (``toposort_until``).

    Also returns the conflicts: (kernel, buffer) where the kernel reads the buffer's old value directly but must
    run after the ASSIGN that overwrites it (two assigns that read each other's target, as in a swap). The
    caller snapshots those reads and schedules again."""
    first_seen = [n for n in nodes if n in chosen]
    position = {n: i for i, n in enumerate(first_seen)}
    deps: dict[Node, set[Node]] = {}
    reads: dict[Node, set[int]] = {}
    for c in first_seen:
        body = bodies[c]
        deps[c] = {x for x in body if x in chosen and x is not c}
        reads[c] = {id(x.arg) for x in body if x.op is Op.BUFFER}
        if c.op is Op.ASSIGN and not _value_reads_target(c, body):
            reads[c].discard(id(_target_buffer(c)))  # an assign's target is written, not read
    conflicts: list[tuple[Node, Buffer]] = []
    for a in first_seen:
        if a.op is not Op.ASSIGN:
            continue
        target = _target_buffer(a)
        for c in first_seen:
            if c is a or id(target) not in reads[c]:
                continue
            if _depends_on(c, a, deps):
                conflicts.append((c, target))
            else:
                deps[a].add(c)
    if conflicts:
        return [], conflicts
    # depth-first post-order with an explicit stack (a recursive closure would keep graphs alive in a cycle)
    order: list[Node] = []
    done: set[Node] = set()
    for start in first_seen:
        stack: list[tuple[Node, bool]] = [(start, False)]
        active: set[Node] = set()
        while stack:
            n, expanded = stack.pop()
            if expanded:
                active.discard(n)
                if n not in done:
                    done.add(n)
                    order.append(n)
                continue
            if n in done:
                continue
            if n in active:
                raise RuntimeError("internal: schedule: the kernels' dependencies form a cycle")
            active.add(n)
            stack.append((n, True))
            stack.extend((d, False) for d in sorted(deps[n], key=position.__getitem__, reverse=True) if d not in done)
    return order, []


def _value_reads_target(assign: Node, body: list[Node]) -> bool:
    """Whether the value of ``assign`` reads its target; ``body`` is the assign's kernel body."""
    view = assign.src[0]
    if assign.src[-1] is view:  # the value is the target itself (equal graphs realized to the same buffer)
        return True
    for n in body:
        if n is assign or n is view:
            continue
        for s in n.src:
            if s is view or (s.op is Op.BUFFER and s is as_contiguous_buffer(view)):
                return True
    return False


def _snapshot_reads(resolved: list[Node], conflicts: list[tuple[Node, Buffer]], chosen: set[Node]) -> list[Node]:
    """The targets with each conflicting kernel reading a copy of the buffer (a CONTIGUOUS, which the next
    scheduling orders before the ASSIGN that overwrites the buffer) instead of the buffer itself."""
    snap: dict[Node, set[int]] = {}
    for c, buf in conflicts:
        snap.setdefault(c, set()).add(id(buf))
    memo: dict[Node, Node] = {}
    for n in toposort(resolved):
        if n in snap:
            memo[n] = _with_snapshots(n, snap[n], chosen, memo)
        else:
            new_src = tuple(memo[s] for s in n.src)
            memo[n] = n if new_src == n.src else n.replace(src=new_src)
    return [memo[r] for r in resolved]


def _with_snapshots(kernel: Node, bufs: set[int], chosen: set[Node], outer: dict[Node, Node]) -> Node:
    """``kernel`` reading a copy of each buffer in ``bufs``; ``outer`` has the new versions of other kernels."""
    value = kernel.src[-1] if kernel.op in (Op.ASSIGN, Op.CONTIGUOUS) else kernel
    local: dict[Node, Node] = {}
    for n in toposort_until(value, chosen):
        if n in chosen and n is not value:
            local[n] = outer[n]
        elif n.op is Op.BUFFER and id(n.arg) in bufs:
            local[n] = Node(Op.CONTIGUOUS, n.dtype, (n,))
        else:
            new_src = tuple(local[s] for s in n.src)
            local[n] = n if new_src == n.src else n.replace(src=new_src)
    if value is kernel:
        return local[value]
    return kernel.replace(src=tuple(outer[s] for s in kernel.src[:-1]) + (local[value],))


def _depends_on(node: Node, other: Node, deps: dict[Node, set[Node]]) -> bool:
    stack, seen = [node], set()
    while stack:
        x = stack.pop()
        if x is other:
            return True
        for d in deps.get(x, ()):
            if d not in seen:
                seen.add(d)
                stack.append(d)
    return False


def create_schedule(targets: list[Node], order: list[Node] | None = None) -> Schedule:
    """The schedule of ``targets``; ``order``, their toposort where the caller has it, saves walking the graph
    again (it is the resolved graph's too when no part of it was realized before)."""
    memo: dict[Node, Node] = {}
    resolved, changed = _resolve(targets, memo, order)
    shape = schedule_cache.structure(resolved, None if changed or order is None else order)
    if shape is not None:
        hit = schedule_cache.lookup(shape)
        if hit is not None:
            return hit.instantiate(shape, targets, memo)
    nodes = shape.nodes if shape is not None else toposort(resolved)
    sched, order, buffers, snapshots = _build(targets, resolved, nodes, memo)
    if shape is not None and not snapshots:
        schedule_cache.store(shape, targets, sched, order, buffers)
    return sched


def _build(
    targets: list[Node], resolved: list[Node], nodes: list[Node], memo: dict[Node, Node]
) -> tuple[Schedule, list[Node], dict[Node, Buffer], bool]:
    """The schedule of ``resolved`` (``nodes`` is its toposort), the materialized nodes in kernel order, the
    buffer of each, and whether reads had to be snapshotted (the kernels then are of a rewritten graph)."""
    snapshots = False
    for _ in range(8):
        chosen = materialized(resolved, nodes)
        bodies = {c: toposort_until(c, chosen) for c in chosen}
        shifted = [c for c in chosen if c.op is Op.ASSIGN and _assign_reads_shifted(c, chosen, bodies[c])]
        if shifted:
            chosen.update(c.src[-1] for c in shifted)  # compute the new value into a temporary first, then write it
            bodies = {c: toposort_until(c, chosen) for c in chosen}
        order, conflicts = _kernel_order(nodes, chosen, bodies)
        if not conflicts:
            break
        resolved = _snapshot_reads(resolved, conflicts, chosen)
        nodes = toposort(resolved)
        snapshots = True
    else:
        raise RuntimeError("schedule: assigns in one realize read each other's targets in a way that cannot be ordered")
    sched = Schedule()
    buffers: dict[Node, Buffer] = {}
    devices = _kernel_devices(order, chosen, bodies)

    for n in order:
        if n.op is Op.COPY:
            src_buf = _buffer_for(n.src[0], buffers)
            dest = Buffer(n.arg, prod(n.shape), n.dtype)
            buffers[n] = dest
            sched.items.append(CopyItem(dest, src_buf))
            continue
        if n.op is Op.ASSIGN:
            out = _target_buffer(n)
            sched.on_commit.append(functools.partial(bump_version, out))
        else:
            out = Buffer(devices[n], prod(n.shape), n.dtype)
        buffers[n] = out
        sched.items.append(_kernel_item(n, out, chosen, buffers, bodies[n]))
        sched.items[-1].overwrites = n.op is Op.ASSIGN

    sched.on_commit.append(functools.partial(record_assigns, order, buffers, memo))
    keep = {id(buffers[r]) for r in resolved if r in buffers}
    sched.temporaries = [b for n, b in buffers.items() if n.op is not Op.ASSIGN and id(b) not in keep]
    for t, r in zip(targets, resolved):
        if r in buffers:
            sched.outputs[t] = buffers[r]
        else:
            buf_node = as_contiguous_buffer(r)
            assert buf_node is not None
            sched.outputs[t] = buf_node.arg
    return sched, order, buffers, snapshots


def _kernel_devices(order: list[Node], chosen: set[Node], bodies: dict[Node, list[Node]]) -> dict[Node, str]:
    """The device of each kernel: its graph's, or for a graph of no device (an expression of Variables that is
    stored, such as an index read twice) the device of the kernel that reads it (the default device if none)."""
    devices = {n: device_of(n) for n in order}
    for n in reversed(order):  # readers before what they read
        devices[n] = devices[n] or Device_.DEFAULT
        for m in bodies.get(n, ()):
            if m in chosen and m is not n and not devices[m]:
                devices[m] = devices[n]
    return devices


def _buffer_for(n: Node, buffers: dict[Node, Buffer]) -> Buffer:
    if n in buffers:
        return buffers[n]
    buf_node = as_contiguous_buffer(n)
    if buf_node is None:
        raise RuntimeError(f"internal: {n.op.name} was not materialized before use")
    return buf_node.arg


def _kernel_item(
    root: Node, out: Buffer, chosen: set[Node], buffers: dict[Node, Buffer], body: list[Node]
) -> KernelItem:
    """Build the AST of the kernel computing ``root``: materialized inputs become PARAM placeholders.
    ``body`` is ``toposort_until(root, chosen)``."""
    value = root.src[-1] if root.op in (Op.CONTIGUOUS, Op.ASSIGN) else root
    # the target, when the value reads it (x.assign(x * 2)), is read through the output's own pointer: two
    # pointers to one buffer would break the kernel's promise that its pointers do not alias (restrict)
    params: dict[Buffer, Node] = {out: Node(Op.PARAM, out.dtype, (), (0, (out.size,)))}
    bufs: list[Buffer] = [out]
    var_values: dict[Node, int] = {}
    memo: dict[Node, Node] = {}

    def param_for(buf: Buffer, shape: tuple[int, ...], dtype) -> Node:
        key = params.get(buf)
        if key is None:
            bufs.append(buf)
            key = params[buf] = Node(Op.PARAM, dtype, (), (len(bufs) - 1, (buf.size,)))
        return key if shape == (buf.size,) else Node(Op.RESHAPE, dtype, (key,), shape)

    if value in chosen and value is not root:
        order = [value]
    elif value is root:
        order = body
    elif root.op is Op.CONTIGUOUS:
        order = body[:-1]  # a CONTIGUOUS's body is its value's, then itself
    elif _value_reads_target(root, body):
        order = body[:-1]
    else:  # an assign's body lists its target's view first; the value does not read it
        view = root.src[0]
        skip = (view, view.src[0]) if view.src else (view,)
        order = [n for n in body[:-1] if not any(n is k for k in skip)]

    def visit(n: Node) -> None:
        if (n in chosen and n is not root) or n.op is Op.BUFFER:
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

    for n in order:
        visit(n)
    offsets = root.src[1:-1] if root.op is Op.ASSIGN else ()  # the run-time starts of a block write
    for o in offsets:
        for n in toposort_until(o, chosen):
            if n not in memo:
                visit(n)
    out_param = Node(Op.PARAM, out.dtype, (), (0, root.shape))
    block = root.arg if root.op is Op.ASSIGN else None  # assign_at: the value is a block at these starts
    ast = Node(Op.STORE, out.dtype, (out_param, memo[value], *(memo[o] for o in offsets)), block)
    return KernelItem(ast, bufs, var_values, out.device)
