"""The one graph node type: immutable and hash-consed.

``Node(op, dtype, src, arg)`` returns the existing node when an equal one is alive, so two equal subgraphs
are the same object and identity is equality. The intern table holds nodes weakly: a graph nobody refers to
is freed. Buffers, random draws and allocations carry a unique object in ``arg`` (a Buffer, a fresh token),
so they are never merged.
"""

from __future__ import annotations

import math
import operator
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from .dtypes import DType, bool_, int64
from .ops import ALU, MOVEMENT, Op


class _InternRef(weakref.ref):
    """A weak reference to an interned node that knows its key (``weakref.KeyedRef`` sets it in Python-level
    __new__ and __init__, which cost more than the rest of making a node)."""

    __slots__ = ("key",)


# The intern table: key -> a weak reference to the node, dropped by the reference's callback when the node dies.
# A plain dict rather than a WeakValueDictionary, whose Python-level get and set cost more than the rest of
# making a node (nodes are made for every tensor op). Nothing iterates the table.
_intern: dict[tuple, _InternRef] = {}


def _forget(ref: _InternRef) -> None:
    if _intern.get(ref.key) is ref:  # an equal node made since the old one died has its own entry
        del _intern[ref.key]


class WeakNodeTable(dict):
    """A table of values by node that holds its nodes weakly, as a WeakKeyDictionary, but whose reads are C-level
    dict operations (a WeakKeyDictionary's are Python methods, and autograd and the realize cache ask their tables
    of every node an op or a schedule touches). It is keyed by weak references: read it with
    ``table.get(weak_key(node))`` or ``weak_key(node) in table`` (two live references to one node are equal keys),
    write it with ``table.put(node, value)``; an entry goes when its node dies."""

    def __init__(self) -> None:
        super().__init__()
        self._drop = lambda key: self.pop(key, None)

    def put(self, node: Node, value: Any) -> None:
        self[weakref.ref(node, self._drop)] = value  # (an entry already there keeps its key, with its callback)


weak_key = weakref.ref  # the key a WeakNodeTable finds a node by


def _arg_key(arg: Any) -> Any:
    # 1 == 1.0 == True and -0.0 == 0.0 in Python; constants that print differently must not merge.
    if isinstance(arg, float):
        return ("f", arg, math.copysign(1.0, arg))
    if isinstance(arg, bool):
        return ("b", arg)
    return arg


class Node:
    __slots__ = ("op", "dtype", "src", "arg", "_shape", "_device", "__weakref__")
    op: Op
    dtype: DType
    src: tuple[Node, ...]
    arg: Any

    def __new__(cls, op: Op, dtype: DType, src: tuple[Node, ...] = (), arg: Any = None) -> Node:
        # The op's number and the dtype's name stand for them in the key: both are unique, and their hashes are
        # C-level (an Enum's and a dataclass's __hash__ are Python functions). The usual args skip _arg_key.
        arg_type = type(arg)
        usual = arg is None or arg_type is tuple or arg_type is int
        key = (op._value_, dtype.name, src, arg if usual else _arg_key(arg))
        ref = _intern.get(key)
        if ref is not None:
            node = ref()
            if node is not None:
                return node
        node = object.__new__(cls)
        _set_op(node, op)
        _set_dtype(node, dtype)
        _set_src(node, src)
        _set_arg(node, arg)
        _set_shape(node, None)
        _set_device(node, None)
        ref = _intern[key] = _InternRef(node, _forget)
        ref.key = key
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
            _set_shape(self, _infer_shape(self))
        return self._shape  # type: ignore[return-value]

    @property
    def device(self) -> str:
        """The device a tensor-level graph computes on: that of its buffers and constants (a COPY names its target
        device); "" for a graph of Variables and constants of no device, which computes wherever the graph that
        reads it does. Memoised like ``shape``: every op asks it of its operands, and walking down to a buffer
        each time would cost the depth of the graph per op."""
        if self._device is None:
            _infer_device(self)
        return self._device  # type: ignore[return-value]

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


# The slots' own setters, for __new__ and the memoised shape and device (__setattr__ refuses every write); quicker
# than object.__setattr__, and nodes are made for every tensor op
_set_op, _set_dtype, _set_src, _set_arg, _set_shape, _set_device = (
    Node.__dict__[name].__set__ for name in ("op", "dtype", "src", "arg", "_shape", "_device")
)


def toposort(root: Node | Sequence[Node], children: Callable[[Node], tuple[Node, ...]] | None = None,
             stop: set[Node] | None = None) -> list[Node]:  # fmt: skip
    """Nodes below ``root`` (included), children first; ``root`` may be a sequence of roots, each listed after
    its subgraph, in order. ``children`` replaces ``node.src`` as the edges; nodes in ``stop`` are listed but not
    descended into (roots always are). The order is that of a recursive depth-first walk visiting sources in order.
    """
    roots = (root,) if isinstance(root, Node) else tuple(root)
    if not stop:
        return _toposort(roots, children or _sources)
    always = set(roots)

    def edges(n: Node) -> tuple[Node, ...]:
        if n in stop and n not in always:
            return ()
        return n.src if children is None else children(n)

    return _toposort(roots, edges)


_sources = operator.attrgetter("src")


def _toposort(roots: tuple[Node, ...], edges: Callable[[Node], tuple[Node, ...]]) -> list[Node]:
    order: list[Node] = []
    seen: set[Node] = set()
    for r in roots:
        if r in seen:
            continue
        seen.add(r)
        # a stack of (node, iterator over the edges left to visit): no recursion limit on deep graphs
        stack = [(r, iter(edges(r)))]
        while stack:
            node, todo = stack[-1]
            for s in todo:
                if s not in seen:
                    seen.add(s)
                    stack.append((s, iter(edges(s))))
                    break
            else:
                stack.pop()
                order.append(node)
    return order


def const(value: Any, dtype: DType = int64) -> Node:
    return Node(Op.CONST, dtype, (), value)


def var(name: str, lo: int, hi: int) -> Node:
    return Node(Op.VAR, int64, (), (name, lo, hi))


# ---- shape inference ----


# ops whose result has the shape of their first source (by the op's number: an Enum's hash is a Python function)
_SHAPE_OF_FIRST_SOURCE = frozenset(
    op._value_ for op in (*ALU, Op.CAST, Op.BITCAST, Op.CONTIGUOUS, Op.COPY, Op.ASSIGN, Op.DETACH, Op.STORE, Op.FLIP)
)


def _infer_shape(n: Node) -> tuple[int, ...]:
    op = n.op  # (the frequent ops first)
    if op._value_ in _SHAPE_OF_FIRST_SOURCE:
        return n.src[0].shape
    if op is Op.RESHAPE or op is Op.EXPAND:
        return tuple(n.arg)
    if op is Op.REDUCE:
        axes = n.arg[1]
        return tuple(1 if i in axes else s for i, s in enumerate(n.src[0].shape))
    if op is Op.PERMUTE:
        return tuple(n.src[0].shape[i] for i in n.arg)
    if op is Op.PAD:
        return tuple(s + b + a for s, (b, a) in zip(n.src[0].shape, n.arg, strict=True))
    if op is Op.SHRINK:
        return tuple(e - b for b, e in n.arg)
    if op is Op.BUFFER:
        return (n.arg.size,)
    if op is Op.ARANGE:
        return (n.arg,)
    if op is Op.PARAM:  # a kernel input or output as the schedule hands it to codegen: arg = (index, shape)
        return n.arg[1]
    if op is Op.GATHER:
        return n.src[1].shape
    return ()  # CONST, VAR, BIND and the lowering ops


# ---- devices of tensor-level nodes ----

_FEW_NEW = 8  # nodes of unknown device below a node that are asked in turn rather than walked


def _device_below(n: Node, budget: list[int]) -> str | None:
    """n's device, from its op or else from the first of its sources that has one, asking unknown sources in turn
    as long as at most ``budget[0]`` nodes are new (a chain of views, a constant reshaped and expanded); None once
    more are."""
    if n._device is not None:
        return n._device
    if budget[0] == 0:
        return None
    budget[0] -= 1
    if n.op is Op.BUFFER:
        found = n.arg.device
    elif (n.op is Op.COPY or n.op is Op.DEVICE) and n.arg:
        found = n.arg
    else:
        found = ""
        for s in n.src:
            below = _device_below(s, budget)
            if below is None:
                return None
            if below:
                found = below
                break
    _set_device(n, found)
    return found


def _unknown_sources(n: Node) -> tuple[Node, ...]:
    return () if n._device is not None else n.src


def _infer_device(root: Node) -> None:
    if _device_below(root, [_FEW_NEW]) is None:  # a larger graph of unknown devices below: walked, sources first
        for n in toposort(root, children=_unknown_sources):
            _device_below(n, [1])


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
