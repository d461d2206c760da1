"""The one graph node type: immutable and hash-consed.

``Node(op, dtype, src, arg)`` returns the existing node when an equal one is alive, so two equal subgraphs
are the same object and identity is equality. The intern table holds nodes weakly: a graph nobody refers to
is freed. Buffers, random draws and allocations carry a unique object in ``arg`` (a Buffer, a fresh token),
so they are never merged.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from .dtypes import DType, bool_, int64
from .ops import ALU, MOVEMENT, Op

_intern: weakref.WeakValueDictionary[tuple, Node] = weakref.WeakValueDictionary()


def _arg_key(arg: Any) -> Any:
    # 1 == 1.0 == True and -0.0 == 0.0 in Python; constants that print differently must not merge.
    if isinstance(arg, float):
        return ("f", arg, math.copysign(1.0, arg))
    if isinstance(arg, bool):
        return ("b", arg)
    return arg


class Node:
    __slots__ = ("op", "dtype", "src", "arg", "_shape", "__weakref__")
    op: Op
    dtype: DType
    src: tuple[Node, ...]
    arg: Any

    def __new__(cls, op: Op, dtype: DType, src: tuple[Node, ...] = (), arg: Any = None) -> Node:
        key = (op, dtype, src, _arg_key(arg))
        node = _intern.get(key)
        if node is None:
            node = object.__new__(cls)
            object.__setattr__(node, "op", op)
            object.__setattr__(node, "dtype", dtype)
            object.__setattr__(node, "src", src)
            object.__setattr__(node, "arg", arg)
            object.__setattr__(node, "_shape", None)
            _intern[key] = node
        return node

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Node is immutable")

    def __reduce__(self):  # pickling rebuilds through the intern table
        return Node, (self.op, self.dtype, self.src, self.arg)

    def __repr__(self) -> str:
        return _pretty(self, 0, {})

    # ---- shapes of tensor-level nodes ----

    @property
    def shape(self) -> tuple[int, ...]:
        if self._shape is None:
            object.__setattr__(self, "_shape", _infer_shape(self))
        return self._shape  # type: ignore[return-value]

    def replace(self, **kwargs: Any) -> Node:
        fields = {"op": self.op, "dtype": self.dtype, "src": self.src, "arg": self.arg, **kwargs}
        return Node(fields["op"], fields["dtype"], fields["src"], fields["arg"])

    def toposort(self) -> list[Node]:
        """Every node of the graph below self (self included), children before parents."""
        return toposort(self)

    # ---- scalar arithmetic on index expressions (used by codegen) ----

    def alu(self, op: Op, *others: Node | int | float) -> Node:
        srcs = (self,) + tuple(o if isinstance(o, Node) else const(o, self.dtype) for o in others)
        out_dtype = bool_ if op in (Op.CMPLT, Op.CMPNE) else srcs[-1].dtype if op is Op.WHERE else self.dtype
        return Node(op, out_dtype, srcs)

    def __add__(self, x: Node | int) -> Node:
        return self.alu(Op.ADD, x)

    def __radd__(self, x: int) -> Node:
        return self.alu(Op.ADD, x)

    def __mul__(self, x: Node | int) -> Node:
        return self.alu(Op.MUL, x)

    def __rmul__(self, x: int) -> Node:
        return self.alu(Op.MUL, x)

    def __floordiv__(self, x: Node | int) -> Node:
        return self.alu(Op.IDIV, x)

    def __mod__(self, x: Node | int) -> Node:
        return self.alu(Op.MOD, x)

    def __neg__(self) -> Node:
        return self.alu(Op.NEG)

    def __sub__(self, x: Node | int) -> Node:
        return self + (-x if isinstance(x, int) else x.alu(Op.NEG))

    def __rsub__(self, x: int) -> Node:
        return self.alu(Op.NEG) + x

    def lt(self, x: Node | int) -> Node:
        return self.alu(Op.CMPLT, x)

    def ne(self, x: Node | int) -> Node:
        return self.alu(Op.CMPNE, x)

    def logical_and(self, x: Node) -> Node:
        return self.alu(Op.AND, x)

    def where(self, a: Node, b: Node) -> Node:
        return Node(Op.WHERE, a.dtype, (self, a, b))

    def cast(self, dtype: DType) -> Node:
        return self if dtype == self.dtype else Node(Op.CAST, dtype, (self,))


def toposort(root: Node | Sequence[Node], children: Callable[[Node], tuple[Node, ...]] | None = None,
             stop: set[Node] | None = None) -> list[Node]:  # fmt: skip
    """Nodes below ``root`` (included), children first; ``root`` may be a sequence of roots, each listed after
    its subgraph, in order. ``children`` replaces ``node.src`` as the edges; nodes in ``stop`` are listed but not
    descended into (roots always are)."""
    roots = (root,) if isinstance(root, Node) else tuple(root)
    order: list[Node] = []
    seen: set[Node] = set()
    stack: list[tuple[Node, bool]] = [(r, False) for r in reversed(roots)]
    always = set(roots) if stop else None
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if node in seen:
            continue
        seen.add(node)
        stack.append((node, True))
        if not stop or node not in stop or node in always:  # type: ignore[operator]
            srcs = node.src if children is None else children(node)
            stack.extend((s, False) for s in reversed(srcs) if s not in seen)
    return order


def const(value: Any, dtype: DType = int64) -> Node:
    return Node(Op.CONST, dtype, (), value)


def var(name: str, lo: int, hi: int) -> Node:
    return Node(Op.VAR, int64, (), (name, lo, hi))


# ---- shape inference ----


def _infer_shape(n: Node) -> tuple[int, ...]:
    op = n.op
    if op in ALU or op in (Op.CAST, Op.BITCAST, Op.CONTIGUOUS, Op.COPY, Op.ASSIGN, Op.DETACH):
        return n.src[0].shape
    if op is Op.BUFFER:
        return (n.arg.size,)
    if op is Op.ARANGE:
        return (n.arg,)
    if op in (Op.CONST, Op.VAR, Op.BIND):
        return ()
    if op is Op.PARAM:  # a kernel input or output as the schedule hands it to codegen: arg = (index, shape)
        return n.arg[1]
    if op is Op.STORE:
        return n.src[0].shape
    if op is Op.REDUCE:
        axes = n.arg[1]
        return tuple(1 if i in axes else s for i, s in enumerate(n.src[0].shape))
    if op in (Op.RESHAPE, Op.EXPAND):
        return tuple(n.arg)
    if op is Op.PERMUTE:
        return tuple(n.src[0].shape[i] for i in n.arg)
    if op is Op.PAD:
        return tuple(s + b + a for s, (b, a) in zip(n.src[0].shape, n.arg, strict=True))
    if op is Op.SHRINK:
        return tuple(e - b for b, e in n.arg)
    if op is Op.FLIP:
        return n.src[0].shape
    if op is Op.GATHER:
        return n.src[1].shape
    return ()


# ---- printing ----


def _pretty(n: Node, depth: int, names: dict[Node, str]) -> str:
    if n in names:
        return names[n]
    if depth > 6:
        return f"<{n.op.name} ...>"
    names[n] = f"<{n.op.name}#{len(names)}>"
    arg = ""
    if n.arg is not None:
        arg = f", arg={n.arg!r}" if n.op not in MOVEMENT else f", {n.arg}"
    if not n.src:
        return f"{n.op.name}({n.dtype.name}{arg})"
    inner = ", ".join(_pretty(s, depth + 1, names) for s in n.src)
    return f"{n.op.name}({n.dtype.name}{arg}, [{inner}])"
