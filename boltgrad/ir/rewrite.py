"""Pattern rewriting: the one tool for simplification, lowering and validation.

A ``Pat`` describes a node (its op or ops, dtype, arg, children and a name to bind it to); a
``PatternMatcher`` holds ``(pattern, fn)`` rules, and ``graph_rewrite`` rewrites a graph bottom-up until no
rule applies. ``fn`` receives the bound nodes as keyword arguments and returns a replacement or None.

    >>> rules = PatternMatcher([(Pat(Op.ADD, src=(Pat.any("x"), Pat.const(0))), lambda x: x)])
    >>> graph_rewrite(x + 0, rules) is x    # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .dtypes import DType
from .node import Node
from .ops import COMMUTATIVE, Op


@dataclass(frozen=True)
class Pat:
    ops: frozenset[Op] | None = None
    src: tuple[Pat, ...] | None = None
    name: str | None = None
    arg: Any = None
    dtype: DType | None = None
    match_arg: bool = False
    predicate: Callable[[Node], bool] | None = None

    def __init__(
        self,
        op: Op | Iterable[Op] | None = None,
        src: tuple[Pat, ...] | None = None,
        name: str | None = None,
        arg: Any = None,
        dtype: DType | None = None,
        match_arg: bool = False,
        predicate: Callable[[Node], bool] | None = None,
    ):
        ops = frozenset([op]) if isinstance(op, Op) else frozenset(op) if op is not None else None
        object.__setattr__(self, "ops", ops)
        object.__setattr__(self, "src", src)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "arg", arg)
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "match_arg", match_arg or arg is not None)
        object.__setattr__(self, "predicate", predicate)

    @staticmethod
    def any(name: str | None = None) -> Pat:
        return Pat(name=name)

    @staticmethod
    def const(value: Any = None, name: str | None = None) -> Pat:
        return Pat(Op.CONST, name=name, arg=value)

    def match(self, node: Node, bound: dict[str, Node]) -> bool:
        if self.ops is not None and node.op not in self.ops:
            return False
        if self.dtype is not None and node.dtype != self.dtype:
            return False
        if self.match_arg and node.arg != self.arg:
            return False
        if self.predicate is not None and not self.predicate(node):
            return False
        if self.name is not None:
            prev = bound.get(self.name)
            if prev is not None and prev is not node:
                return False
        if self.src is not None:
            if len(self.src) != len(node.src):
                return False
            orders = [node.src]
            if node.op in COMMUTATIVE and len(node.src) == 2:
                orders.append(node.src[::-1])
            for srcs in orders:
                trial = dict(bound)
                if all(p.match(s, trial) for p, s in zip(self.src, srcs, strict=True)):
                    if self.name is not None:
                        trial[self.name] = node
                    bound.clear()
                    bound.update(trial)
                    return True
            return False
        if self.name is not None:
            bound[self.name] = node
        return True


Rule = tuple[Pat, Callable[..., Node | None]]


class PatternMatcher:
    """Rules indexed by op, tried in order; the first that returns a node wins."""

    def __init__(self, rules: list[Rule]):
        self.rules = rules
        self.by_op: dict[Op | None, list[Rule]] = {}
        for pat, fn in rules:
            for op in pat.ops if pat.ops is not None else [None]:
                self.by_op.setdefault(op, []).append((pat, fn))

    def __add__(self, other: PatternMatcher) -> PatternMatcher:
        return PatternMatcher(self.rules + other.rules)

    def rewrite(self, node: Node) -> Node | None:
        for pat, fn in self.by_op.get(node.op, []) + self.by_op.get(None, []):
            bound: dict[str, Node] = {}
            if pat.match(node, bound):
                out = fn(**bound)
                if out is not None and out is not node:
                    return out
        return None


def graph_rewrite(root: Node, matcher: PatternMatcher, max_passes: int = 100) -> Node:
    """Rewrite bottom-up: children first, then the node, again until it is stable."""
    return _Rewriter(matcher, max_passes).visit(root)


class _Rewriter:
    def __init__(self, matcher: PatternMatcher, max_passes: int):
        self.matcher = matcher
        self.max_passes = max_passes
        self.memo: dict[Node, Node] = {}

    def visit(self, root: Node) -> Node:
        memo = self.memo
        for n in root.toposort():
            if n in memo:
                continue
            new_src = tuple(memo[s] for s in n.src)
            cur = n if new_src == n.src else n.replace(src=new_src)
            for _ in range(self.max_passes):
                out = self.matcher.rewrite(cur)
                if out is None:
                    break
                # a rewrite may build new children that themselves need rewriting
                cur = memo[out] if out in memo else self.visit(out)
            memo[n] = cur
        return memo[root]


def substitute(root: Node, mapping: dict[Node, Node]) -> Node:
    """The graph with every node in ``mapping`` replaced, parents rebuilt above it."""
    memo: dict[Node, Node] = dict(mapping)
    for n in root.toposort():
        if n in memo:
            continue
        new_src = tuple(memo[s] for s in n.src)
        memo[n] = n if new_src == n.src else n.replace(src=new_src)
    return memo[root]
