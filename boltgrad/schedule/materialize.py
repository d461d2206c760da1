"""Which nodes of a graph become buffers of their own; every other node fuses into the kernel that reads it.

A node is *materialized* when it is a realize target, an explicit CONTIGUOUS, an ASSIGN, a COPY between devices
(and the source of a copy), or a REDUCE that cannot fuse into its consumer: one read by several nodes (directly
or through views: the two halves a rotary embedding reads), or one reached through an EXPAND (a broadcast
reduce would be recomputed for every element it is broadcast to), or one the bodies of two kernels would both
contain. An elementwise value with an exponential, logarithm or sine in it that a reduce reads through an
EXPAND is materialized too (attention's probabilities, broadcast over the head dim of ``probs @ V``): it would
be recomputed per broadcast element; so is one making several float reads that a reduce reads 16+ times (a
relu layer's masked gradient, read by its weight gradient). Everything else fuses: elementwise chains into
their consumer, a reduce with its elementwise prologue and epilogue, movement ops as index arithmetic.

On a GPU, a reduce over a tensor's innermost dims that an elementwise kernel reads broadcast back over those
dims fuses into it as a *row kernel* (softmax, layer norm: one kernel, one block per row, that reduces and
then writes the row; ``codegen.gpu``).
"""

from __future__ import annotations

from ..codegen.gpu import GPUTarget, gpu_target
from ..device.registry import Device_, get_device
from ..helpers import prod
from ..ir.node import Node, toposort
from ..ir.ops import ELEMENTWISE, MOVEMENT, Op


def as_contiguous_buffer(n: Node) -> Node | None:
    """The BUFFER node when n is a contiguous view of a whole buffer (reshapes of it), else None."""
    if n.op is Op.BUFFER:
        return n
    below = n
    while below.op is Op.RESHAPE:
        below = below.src[0]
    return below if below.op is Op.BUFFER and prod(n.shape) == below.arg.size else None


def device_of(n: Node) -> str:
    """The device a graph computes on (``Node.device``: that of its buffers and constants; a COPY names its target
    device). "" for a graph of Variables and constants of no device, which computes wherever the graph that reads
    it does."""
    return n.device


def materialized(targets: list[Node], nodes: list[Node]) -> set[Node]:
    """The nodes that get buffers of their own; ``nodes`` is the toposort of the targets."""
    users: dict[Node, list[Node]] = {}
    for n in nodes:
        for s in set(n.src):
            users.setdefault(s, []).append(n)
    # reads of each node, counting a view's reads as reads of what it views
    reads: dict[Node, int] = {}
    for n in reversed(nodes):
        reads[n] = sum(reads[u] if u.op in MOVEMENT else 1 for u in users.get(n, ()))
    chosen: set[Node] = {t for t in targets if as_contiguous_buffer(t) is None}
    for n in nodes:
        if n.op in (Op.CONTIGUOUS, Op.ASSIGN, Op.COPY):
            chosen.add(n)
        if n.op is Op.COPY and as_contiguous_buffer(n.src[0]) is None:
            chosen.add(n.src[0])  # a copy moves a whole buffer
        if n.op is Op.REDUCE and reads[n] > 1:
            chosen.add(n)
    # a reduce read through an EXPAND (or as the source of a GATHER) from its kernel's root would be recomputed
    # per broadcast (or gathered) element; so would an expensive elementwise value a reduce reads broadcast.
    # On a GPU, a reduce over the innermost dims broadcast back over them fuses into an elementwise root: a row
    # kernel, one block per row, reduces first and then computes the row (``codegen.gpu``). ``expanded`` is
    # False, True, or the number of leading row dims while the walk is under such a row broadcast.
    roots = list(chosen)
    seen: set[tuple] = set()
    while roots:
        root = roots.pop()
        value = root.src[-1] if root.op in (Op.CONTIGUOUS, Op.ASSIGN) else root
        target = _row_target(device_of(root)) if value.op is not Op.REDUCE else None
        shape = value.shape if target is not None and _elementwise_root(value, chosen) else None
        stack = [(s, False, root.op is Op.REDUCE) for s in root.src]
        while stack:
            n, expanded, in_reduce = stack.pop()
            key = (n, expanded, in_reduce, shape)
            if key in seen or n.op is Op.BUFFER:
                continue
            seen.add(key)
            if n in chosen:
                if (n, None, None, None) not in seen:
                    seen.add((n, None, None, None))
                    roots.append(n)
                continue
            if n.op is Op.REDUCE and expanded is not False:
                if not (_is_rows(expanded) and _row_reduce(n, shape, expanded, reads[n])):
                    chosen.add(n)
                    roots.append(n)
                    continue
                expanded, in_reduce = False, True  # its body runs once per row element, as the root's does
            if n.op is Op.EXPAND and in_reduce and expanded is False:
                inner = _costly_broadcast(n, chosen)
                if inner is not None:
                    chosen.add(inner)
                    roots.append(inner)
            if _is_rows(expanded):
                expanded = expanded if n.op in ELEMENTWISE or n.op is Op.DETACH or _unit_reshape(n) else True
            elif n.op is Op.EXPAND and expanded is False:
                expanded = _row_broadcast(n, shape, target) if shape is not None else True
            in_reduce = in_reduce or n.op is Op.REDUCE
            for i, s in enumerate(n.src):
                stack.append((s, expanded if expanded is not False else n.op is Op.GATHER and i == 0, in_reduce))
    _shared_reduces(chosen)
    return chosen


def _is_rows(expanded: bool | int) -> bool:
    return not isinstance(expanded, bool)


def _row_target(device: str) -> GPUTarget | None:
    """The GPU target of ``device``; None for a device without row kernels (the CPU: there a broadcast reduce
    gets a buffer, and the loops stay simple for the register tiles)."""
    dev = get_device(device or Device_.DEFAULT)
    return gpu_target(dev.renderer, dev.arch)


def _elementwise_root(value: Node, chosen: set[Node]) -> bool:
    """Whether the kernel computing ``value`` reads no reduce except through an EXPAND (it is not a reduce)."""
    stack, seen = [value], set()
    while stack:
        n = stack.pop()
        if n in seen or n.op is Op.BUFFER or (n is not value and n in chosen):
            continue
        seen.add(n)
        if n.op is Op.REDUCE:
            return False
        if n.op is not Op.EXPAND:
            stack.extend(n.src[1:] if n.op is Op.GATHER else n.src)
    return True


def _row_broadcast(expand: Node, shape: tuple[int, ...], target: GPUTarget) -> bool | int:
    """For an EXPAND to a row kernel's root shape: where the row's dims start (the number of leading dims, size-1
    dims included) when it broadcasts the leading dims' values over all the innermost dims, a row of a length
    the target's row kernels take; True (a plain broadcast) otherwise."""
    if expand.shape != shape:
        return True
    src = expand.src[0].shape
    dims = [i for i, s in enumerate(shape) if s != 1]
    rows = 0
    while rows < len(dims) and src[dims[rows]] == shape[dims[rows]]:
        rows += 1
    cols = dims[rows:]
    if not cols or any(src[i] != 1 for i in cols):
        return True
    return cols[0] if target.row_min <= prod(shape[i] for i in cols) <= target.row_max else True


def _unit_reshape(n: Node) -> bool:
    """A RESHAPE that only adds or removes dims of size 1 (index arithmetic stays the same)."""
    return n.op is Op.RESHAPE and [s for s in n.shape if s != 1] == [s for s in n.src[0].shape if s != 1]


def _row_reduce(n: Node, shape: tuple[int, ...] | None, rows: int, reads: int) -> bool:
    """Whether REDUCE ``n``, reached under a row broadcast of ``rows`` leading dims, reduces exactly the row's
    innermost dims of the root shape (a row kernel computes it once per row), and nothing else reads it."""
    if shape is None or reads > 1 or n.src[0].shape != shape:
        return False
    return all(n.shape[i] == (s if i < rows else 1) for i, s in enumerate(shape))


COSTLY = frozenset({Op.EXP2, Op.LOG2, Op.SIN})  # library-call-sized math: not worth repeating per broadcast
# an elementwise value that makes this many reads (of buffers, other kernels' outputs, through any views) is
# stored when a reduce would compute each element this many times or more: the gradient of a relu layer's
# weight reads relu's mask times the incoming gradient (three reads) once per 16 output columns of its tile.
# (In an elementwise kernel the same rule did not pay: max pooling's gradient broadcasts a convolution's input
# gradient, 9 shifted reads, over each 2x2 window, and storing it once made the CNN step no faster.)
COMBINED_READS, COMBINED_REPEATS = 2, 16


def _costly_broadcast(expand: Node, chosen: set[Node]) -> Node | None:
    """The elementwise value under ``expand`` (through views) when the broadcast repeats each element several
    times and computing it involves COSTLY math, or makes ``COMBINED_READS`` float reads and is repeated
    ``COMBINED_REPEATS`` times or more; None otherwise. (A dequantization, which reads integers, stays fused
    into the matmul that reads it.)"""
    inner = expand.src[0]
    while inner.op in MOVEMENT:
        inner = inner.src[0]
    if inner.op not in ELEMENTWISE or inner in chosen or prod(inner.shape) < 2:
        return None
    repeats = prod(expand.shape) // max(1, prod(expand.src[0].shape))
    if repeats < 4:
        return None
    reads: set[Node] = set()  # each view of a buffer, reduce or other kernel's output: one load of the kernel
    floats = True
    stack, seen = [inner], set()
    while stack:  # the elementwise body: down to buffers, reduces and other kernels' outputs
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op in COSTLY:
            return inner
        for s in n.src:
            base = s
            while base.op in MOVEMENT:
                base = base.src[0]
            if base in chosen or base.op in (Op.REDUCE, Op.BUFFER):
                reads.add(s)
                floats = floats and base.dtype.is_float
            elif base.src:  # (a constant's DEVICE is no read)
                stack.append(base)
    return inner if floats and len(reads) >= COMBINED_READS and repeats >= COMBINED_REPEATS else None


def _shared_reduces(chosen: set[Node]) -> None:
    """Choose every REDUCE that the bodies of two or more kernels would contain: one read through an
    elementwise chain by several kernels (the logits of a sampler, read by a max and by an arg-max) would
    otherwise be computed again in each."""
    while True:
        owners: dict[Node, int] = {}
        for root in chosen:
            for n in toposort(root, stop=chosen):
                if n.op is Op.REDUCE and n is not root and n not in chosen:
                    owners[n] = owners.get(n, 0) + 1
        shared = [n for n, k in owners.items() if k > 1]
        if not shared:
            return
        chosen.update(shared)
