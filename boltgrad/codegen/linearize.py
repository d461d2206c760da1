"""Linearize: a lowered kernel's scalar graph -> an ordered list of instructions with explicit loops.

Every node is placed inside exactly the loops it depends on, so loop-invariant work (a bias load, a
normalising constant) is hoisted out of inner loops, also out of the inner loops of a reduce over several
(what uses only its outer loop runs before the inner one opens). A REDUCE becomes an accumulator declared
before its loops, updated inside them and read after them:

    ACC            acc = identity (or the value a blocked reduce continues from)
    RANGE r        for r in range(n):
      ...body...
      ACC_UPDATE     acc = acc <op> body
    ENDRANGE r
    ACC_READ       (the reduced value)

A float32 sum of products (matmul, convolution, dot products) accumulates with fused multiply-adds:
``ACC_UPDATE(acc, a, b)`` with arg ``MULACC`` is ``acc = fma(a, b, acc)``, one rounding per step. That is what
BLAS libraries compute, and it is a single instruction where a multiply then an add are two, each rounded.
The fusion is explicit in the program, so a C compiler and the PYTHON device compute the same bits.

The instruction list is what renderers print and what the PYTHON device interprets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.dtypes import DType, float32, int64
from ..ir.node import Node, const, toposort
from ..ir.ops import Op
from .blocking import reduce_parts
from .lower import LoweredKernel, reduce_identity


@dataclass
class LinearProgram:
    name: str
    instructions: list[Node]
    params: list[DType]  # element type of each buffer parameter, output first
    variables: list[Node]  # VAR nodes, in the order their values are passed
    global_range: Node | None  # the outer loop, split across threads; None for a single-iteration kernel
    outer_size: int
    cost: int
    meta: dict = field(default_factory=dict)


def linearize(kernel: LoweredKernel, name: str = "kernel", fuse_mul_add: bool = True) -> LinearProgram:
    """fuse_mul_add: float32 sums of products accumulate with fused multiply-adds (see the module doc)."""
    store = kernel.store
    # 1. REDUCE -> ACC / ACC_UPDATE / ACC_READ, innermost reduces first
    memo: dict[Node, Node] = {}
    reduces: dict[Node, tuple[tuple[Node, ...], Node]] = {}  # acc -> (its ranges, its update)
    for n in store.toposort():
        new_src = tuple(memo[s] for s in n.src)
        if n.op is Op.REDUCE:
            _, init, ranges = reduce_parts(n)
            body = memo[n.src[0]]
            start = memo[init] if init is not None else const(reduce_identity(n.arg, n.dtype), n.dtype)
            acc = Node(Op.ACC, n.dtype, (start,), (len(reduces), n.arg))
            if fuse_mul_add and n.arg is Op.ADD and n.dtype == float32 and body.op is Op.MUL and body.dtype == float32:
                update = Node(Op.ACC_UPDATE, n.dtype, (acc, *body.src), Op.MULACC)
            else:
                update = Node(Op.ACC_UPDATE, n.dtype, (acc, body), n.arg)
            reduces[acc] = (ranges, update)
            memo[n] = Node(Op.ACC_READ, n.dtype, (acc,))
        else:
            memo[n] = n if new_src == n.src else n.replace(src=new_src)
    store = memo[store]

    # accumulators over the same loops share them: one loop nest updates every accumulator of a group
    groups: dict[tuple[Node, ...], list[Node]] = {}
    for acc, (ranges, _) in reduces.items():
        groups.setdefault(ranges, []).append(acc)
    group_of = {acc: ranges for ranges, accs in groups.items() for acc in accs}

    def deps(n: Node) -> tuple[Node, ...]:
        if n.op is Op.ACC_READ:
            accs = groups[group_of[n.src[0]]]
            return tuple(accs) + tuple(reduces[a][1] for a in accs)
        return n.src

    order = toposort(store, children=deps)

    # 2. which loops each node depends on
    owner: dict[Node, tuple[Node, ...]] = {r: ranges for ranges in groups for r in ranges}
    depends: dict[Node, frozenset[Node]] = {}
    for n in order:
        if n.op is Op.RANGE:
            depends[n] = frozenset([n])
            continue
        d = frozenset().union(*(depends[s] for s in deps(n))) if deps(n) else frozenset()
        if n.op is Op.ACC_READ:
            d = d - frozenset(group_of[n.src[0]])
        elif n.op is Op.ACC_UPDATE:
            d = d | frozenset(group_of[n.src[0]])
        depends[n] = d

    # 3. nesting: a node sits in the innermost reduce loops it uses, else in the output loop nest
    def scope_of(n: Node) -> tuple[Node, ...] | None:
        best: tuple[Node, ...] | None = None
        for r in depends[n]:
            group = owner.get(r)
            if group is not None and (best is None or _nested_in(group, best, groups, depends, owner)):
                best = group
        return best

    out_ranges = kernel.ranges
    level_of = {r: i + 1 for i, r in enumerate(out_ranges)}
    placed: dict[tuple[tuple[Node, ...] | None, int], list[Node]] = {}
    for n in order:
        if n.op in (Op.RANGE, Op.ACC, Op.SINK):
            continue
        scope = scope_of(n)
        if scope is None:  # in the output loop nest, under the innermost output loop it uses
            level = max((level_of.get(r, 0) for r in depends[n]), default=0)
        else:  # in a reduce's loops, under the innermost of them it uses
            level = max((i + 1 for i, r in enumerate(scope) if r in depends[n]), default=len(scope))
        placed.setdefault((scope, level), []).append(n)

    instructions: list[Node] = []

    emitter = _Emitter(placed, group_of, groups, instructions)
    emitter.emit((None, 0))
    for i, r in enumerate(out_ranges):
        instructions.append(r)
        emitter.emit((None, i + 1))
    instructions.extend(Node(Op.ENDRANGE, int64, (r,)) for r in reversed(out_ranges))

    variables = sorted({n for n in order if n.op is Op.VAR}, key=lambda v: v.arg[0])
    global_range = out_ranges[0] if out_ranges else None
    return LinearProgram(name, instructions, kernel.params, variables, global_range, kernel.outer_size, kernel.cost)


class _Emitter:
    """Writes placed nodes in order, opening a reduce group's loops where its result is first read."""

    def __init__(self, placed: dict, group_of: dict, groups: dict, instructions: list[Node]):
        self.placed, self.group_of, self.groups, self.out = placed, group_of, groups, instructions
        self.opened: set[tuple[Node, ...]] = set()

    def emit(self, key: tuple[tuple[Node, ...] | None, int]) -> None:
        for n in self.placed.get(key, []):
            if n.op is Op.ACC_READ and self.group_of[n.src[0]] not in self.opened:
                ranges = self.group_of[n.src[0]]
                self.opened.add(ranges)
                self.out.extend(self.groups[ranges])
                for i, r in enumerate(ranges):
                    self.out.append(r)
                    self.emit((ranges, i + 1))
                self.out.extend(Node(Op.ENDRANGE, int64, (r,)) for r in reversed(ranges))
            self.out.append(n)


def _nested_in(inner: tuple[Node, ...], outer: tuple[Node, ...], groups: dict, depends: dict, owner: dict) -> bool:
    """Whether the loops of reduce group ``inner`` are opened inside the loops of group ``outer``."""
    seen = set()
    cur: tuple[Node, ...] | None = inner
    while cur is not None and cur not in seen:
        seen.add(cur)
        read = Node(Op.ACC_READ, groups[cur][0].dtype, (groups[cur][0],))
        parents = [owner[r] for r in depends.get(read, ()) if r in owner]
        if outer in parents:
            return True
        cur = parents[0] if parents else None
    return False


def program_text(lin: LinearProgram) -> str:
    """A text that changes whenever the kernel's code would (names kernels; keys the search's results)."""
    index = {n: i for i, n in enumerate(lin.instructions)}
    parts = []
    for n in lin.instructions:
        srcs = ",".join(str(index[s]) if s in index else f"{s.op.name}:{s.arg!r}:{s.dtype.name}" for s in n.src)
        parts.append(f"{n.op.name}:{n.dtype.name}:{n.arg!r}:{srcs}")
    return ";".join(parts) + "|" + ",".join(d.name for d in lin.params) + ("|fma" if lin.meta.get("contract") else "")
