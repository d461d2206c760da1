"""Reverse-mode autograd over the graph: one gradient rule per primitive, gradients built as lazy graphs.

``loss.backward()`` walks the loss's graph from the output back to the leaves (tensors created with
``requires_grad=True``), asking each primitive's rule for the gradients of its sources. The rules are written
with Tensor operations, so a gradient is just more graph: nothing runs until a ``.grad`` is read, and then the
backward kernels fuse exactly as forward ones do. Composite operations (softmax, matmul, conv) need no rule of
their own.

A leaf is identified by its node: setting ``requires_grad`` realizes the tensor, so its node is a view of a
buffer of its own. ``detach()`` and work done under ``no_grad()`` insert a DETACH node, through which no
gradient flows.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .ir.node import Node, WeakNodeTable, toposort, weak_key
from .ir.ops import Op

if TYPE_CHECKING:
    from .tensor import Tensor

# ---- grad mode ----


class _GradMode(threading.local):
    enabled = True  # each thread starts with grad enabled (a class default: getattr's miss path is slow)


grad_mode = _GradMode()  # grad_mode.enabled is is_grad_enabled(), read without a call by every new tensor


def is_grad_enabled() -> bool:
    return grad_mode.enabled


class set_grad_enabled:  # noqa: N801 - torch's name; a context manager and a decorator
    def __init__(self, mode: bool):
        self.mode = bool(mode)
        self.prev = True

    def __enter__(self) -> None:
        self.prev = is_grad_enabled()
        grad_mode.enabled = self.mode

    def __exit__(self, *exc: Any) -> None:
        grad_mode.enabled = self.prev

    def __call__(self, fn: Callable) -> Callable:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with type(self)(self.mode):
                return fn(*args, **kwargs)

        wrapped.__name__ = getattr(fn, "__name__", "wrapped")
        wrapped.__doc__ = fn.__doc__
        return wrapped


class no_grad(set_grad_enabled):  # noqa: N801
    """``with boltgrad.no_grad():`` or ``@boltgrad.no_grad()``: results do not require grad."""

    def __init__(self) -> None:
        super().__init__(False)

    def __call__(self, fn: Callable) -> Callable:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with no_grad():
                return fn(*args, **kwargs)

        wrapped.__name__ = getattr(fn, "__name__", "wrapped")
        wrapped.__doc__ = fn.__doc__
        return wrapped


class enable_grad(set_grad_enabled):  # noqa: N801
    def __init__(self) -> None:
        super().__init__(True)


# ---- leaves, aliases, and which nodes depend on them ----
#
# Autograd walks the node graph with two changes to its edges. A node *aliased* to another stands for it: a
# realized result's buffer view stands for the graph it was computed from (so ``y.realize()`` does not cut
# ``y`` off from its inputs), and an ``assign`` that autograd does not record (on a leaf, or under no_grad)
# stands for the tensor it overwrote. A DETACH has no edges.

_leaves = WeakNodeTable()  # node -> weakref to its tensor
_aliases = WeakNodeTable()  # node -> the node it stands for
_needs = WeakNodeTable()  # node -> needs_grad(node), memoised


def _forget_memo(*_: Any) -> None:
    _needs.clear()


def register_leaf(node: Node, tensor: Tensor) -> None:
    _leaves.put(node, weakref.ref(tensor, _forget_memo))  # a dead leaf no longer makes its graphs need grad
    _needs.clear()  # graphs built before this leaf was marked may now depend on it


def unregister_leaf(node: Node) -> None:
    if _leaves.pop(weak_key(node), None) is not None:
        _needs.clear()


def leaf_tensor(node: Node) -> Tensor | None:
    ref = _leaves.get(weak_key(node))
    t = ref() if ref is not None else None
    return t if t is not None and t._leaf_grad else None


def alias(node: Node, stands_for: Node) -> None:
    """For autograd, ``node`` is ``stands_for`` (same shape): gradients reaching it go there."""
    _aliases.put(node, _aliases.get(weak_key(stands_for), stands_for))
    if weak_key(node) in _needs:
        _needs.clear()


# composite operations whose gradient is given by a formula instead of by the primitives they are built from
# (where the primitives' gradients would give NaN at points where torch's formula is finite, or vice versa):
# node -> (input nodes, rule(inputs, out, grad) -> one gradient per input)
_custom = WeakNodeTable()


def with_gradient(out: Tensor, inputs: tuple[Tensor, ...], rule: Callable) -> Tensor:
    """``out`` (computed from ``inputs``) with its gradient given by ``rule(inputs, out, grad)``, which returns one
    gradient (or None) per input. ``rule`` must not hold ``out`` (the table is weak in its key only)."""
    node = out.node
    if not is_grad_enabled() or node.op is Op.DETACH or any(node is t.node for t in inputs):
        return out
    if not any(needs_grad(t.node) for t in inputs):
        return out
    _custom.put(node, (tuple(t.node for t in inputs), rule))
    _needs.put(node, True)
    return out


def _edges(n: Node) -> tuple[Node, ...]:
    if n.op is Op.DETACH:
        return ()
    key = weak_key(n)
    target = _aliases.get(key)
    if target is not None:
        return (target,)
    custom = _custom.get(key)
    return n.src if custom is None else custom[0]


_FEW_NEW = 8  # new nodes below a node that are asked in turn rather than walked (a constant broadcast is 4)


def needs_grad(node: Node) -> bool:
    """Whether a gradient can flow from this node to some leaf that requires grad (integer and bool values carry
    none, as in torch).

    Memoised per node, and the walk stops at nodes already known, so each node is looked at once: asking about
    every op as it is built costs O(1) per op, not a walk of the whole graph. A few new nodes below (a constant
    broadcast to the op's shape) are asked in turn; only a larger unknown graph is walked."""
    hit = _needs.get(weak_key(node))
    if hit is None:
        hit = _needs_below(node, [_FEW_NEW])
    return hit if hit is not None else _walk_needs(node)


def _walk_needs(node: Node) -> bool:
    """``needs_grad`` of a node with many new nodes below: one walk, which stops at nodes already known."""
    # (local tables: a dying leaf's weakref callback may clear the memo during the walk)
    found: dict[Node, bool] = {}
    edges: dict[Node, tuple[Node, ...]] = {}  # the edges of the nodes not known yet

    def unknown_edges(n: Node) -> tuple[Node, ...]:
        hit = _needs.get(weak_key(n))
        if hit is not None:
            found[n] = hit
            return ()
        srcs = edges[n] = _edges(n)
        return srcs

    for n in toposort(node, children=unknown_edges):  # sources first: each finds its sources in found
        if n in edges:
            found[n] = n.dtype.is_float and (leaf_tensor(n) is not None or any(found[s] for s in edges[n]))
    for n in edges:
        _needs.put(n, found[n])
    return found[node]


def _needs_below(node: Node, budget: list[int]) -> bool | None:
    """``needs_grad`` asked of the sources first, recursively, as long as at most ``budget[0]`` nodes are new;
    None once more are (they are walked then)."""
    hit = _needs.get(weak_key(node))
    if hit is not None:
        return hit
    if budget[0] == 0:
        return None
    budget[0] -= 1
    known = []
    for s in _edges(node):
        found = _needs_below(s, budget)
        if found is None:
            return None
        known.append(found)
    hit = node.dtype.is_float and (any(known) or leaf_tensor(node) is not None)
    _needs.put(node, hit)
    return hit


# ---- gradient rules, one per primitive ----
# Each takes (the node, its sources as tensors, its value as a tensor, the incoming gradient) and returns one
# gradient (or None) per source.

Rule = Callable[["Node", list["Tensor"], "Tensor", "Tensor"], tuple[Any, ...]]
_RULES: dict[Op, Rule] = {}


def rule(*ops: Op) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for op in ops:
            _RULES[op] = fn
        return fn

    return register


@rule(Op.ADD)
def _add(n, x, out, g):
    return g, g


@rule(Op.MUL)
def _mul(n, x, out, g):
    # (a gradient no source takes is not built: a matmul's input or a mask times a weight needs one side only)
    return g * x[1] if needs_grad(n.src[0]) else None, g * x[0] if needs_grad(n.src[1]) else None


@rule(Op.NEG)
def _neg(n, x, out, g):
    return (-g,)


@rule(Op.RECIP)
def _recip(n, x, out, g):
    return (-g * out * out,)


@rule(Op.SQRT)
def _sqrt(n, x, out, g):
    return (g / (out * 2),)


@rule(Op.EXP2)
def _exp2(n, x, out, g):
    return (g * out * math.log(2),)


@rule(Op.LOG2)
def _log2(n, x, out, g):
    return (g / (x[0] * math.log(2)),)


@rule(Op.SIN)
def _sin(n, x, out, g):
    return (g * x[0].cos(),)


@rule(Op.TRUNC)
def _trunc(n, x, out, g):
    return (g._const_like(0),)  # zero almost everywhere; torch gives zeros too (not None)


@rule(Op.MAX)
def _max(n, x, out, g):
    a, b = x
    if n.src[1].op in (Op.CONST, Op.EXPAND, Op.RESHAPE) and _is_constant(n.src[1]):
        return (g * (a > b).cast(g.dtype), None)  # a threshold (relu, clamp): ties pass nothing, as in torch
    tie = (a == b).cast(g.dtype) * 0.5
    da = g * ((a > b).cast(g.dtype) + tie) if needs_grad(n.src[0]) else None
    return da, g * ((b > a).cast(g.dtype) + tie) if needs_grad(n.src[1]) else None


@rule(Op.WHERE)
def _where(n, x, out, g):
    cond = x[0]
    zero = g._const_like(0)
    da = cond._select(g, zero) if needs_grad(n.src[1]) else None
    return None, da, cond._select(zero, g) if needs_grad(n.src[2]) else None


@rule(Op.MULACC)
def _mulacc(n, x, out, g):
    return g * x[1] if needs_grad(n.src[0]) else None, g * x[0] if needs_grad(n.src[1]) else None, g


@rule(Op.MOD)
def _mod(n, x, out, g):  # C fmod: x - trunc(x / y) * y
    return g, -g * (x[0] / x[1]).trunc() if needs_grad(n.src[1]) else None


@rule(Op.CMPLT, Op.CMPNE, Op.AND, Op.OR, Op.XOR, Op.SHL, Op.SHR, Op.IDIV, Op.BITCAST)
def _no_grad(n, x, out, g):
    return tuple(None for _ in x)


@rule(Op.CAST)
def _cast(n, x, out, g):
    return (g.cast(x[0].dtype) if x[0].dtype.is_float else None,)


@rule(Op.ASSIGN)
def _assign(n, x, out, g):  # the new value replaces the old one entirely, or the block it was written to
    if n.arg is None:
        return None, g
    block = x[-1].shape
    starts = n.arg
    grad = None if None in starts else g.shrink([(st, st + b) for st, b in zip(starts, block)])
    return (None,) * (len(x) - 1) + (grad,)


@rule(Op.CONTIGUOUS, Op.COPY)
def _identity(n, x, out, g):
    # the gradient is materialised where the forward value was, so backward graphs stay as small as forward ones
    return (g.to(x[0].device) if n.op is Op.COPY else g.contiguous(),)


@rule(Op.REDUCE)
def reduce_gradient(n, x, out, g):
    rop, axes = n.arg
    src = x[0]
    if rop is Op.ADD:
        return (g.expand(src.shape),)
    if rop is Op.MAX:  # split evenly between the elements that attain the max, as torch's amax does
        hit = (src == out.expand(src.shape)).cast(g.dtype)
        count = hit._reduce(Op.ADD, axes, True)
        return ((g / count).expand(src.shape) * hit,)
    # product: d/dx_i is the product of the others. Dividing out/x_i fails at zeros, so count them: with no
    # zero it is out / x_i; with one zero only that element gets the product of the rest; with more, nothing.
    zero = src == 0
    zeros = zero.cast(g.dtype)._reduce(Op.ADD, axes, True).expand(src.shape)
    rest = zero._select(1.0, src)._reduce(Op.MUL, axes, True).expand(src.shape)
    others = (zeros == 0)._select(
        out.expand(src.shape) / zero._select(1.0, src), (zeros == 1).logical_and(zero)._select(rest, 0.0)
    )
    return (g.expand(src.shape) * others,)


@rule(Op.RESHAPE)
def _reshape(n, x, out, g):
    return (g.reshape(x[0].shape),)


@rule(Op.PERMUTE)
def _permute(n, x, out, g):
    inverse = [0] * len(n.arg)
    for i, a in enumerate(n.arg):
        inverse[a] = i
    return (g.permute(inverse),)


@rule(Op.EXPAND)
def _expand(n, x, out, g):
    src_shape = x[0].shape
    axes = tuple(i for i, (s, t) in enumerate(zip(src_shape, n.shape)) if s != t)
    return (g._reduce(Op.ADD, axes, True) if axes else g,)


@rule(Op.PAD)
def _pad(n, x, out, g):
    return (g.shrink([(b, b + s) for (b, _), s in zip(n.arg, x[0].shape)]),)


@rule(Op.SHRINK)
def _shrink(n, x, out, g):
    return (g.pad([(b, s - e) for (b, e), s in zip(n.arg, x[0].shape)]),)


@rule(Op.FLIP)
def _flip(n, x, out, g):
    return (g.flip([i for i, f in enumerate(n.arg) if f]),)


@rule(Op.GATHER)
def _gather(n, x, out, g):
    """A scatter-add of the gradient back to the gathered positions, as a one-hot reduction over the index's
    extent on ``dim`` (the graph has no data-dependent store)."""
    from .tensor_gather import scatter_add_along

    grad = scatter_add_along(g, n.arg, x[1], x[0].shape[n.arg])  # the index's extent outside dim
    if grad.shape != x[0].shape:
        grad = grad.pad([(0, s - t) for s, t in zip(x[0].shape, grad.shape)])
    return grad, None


def _is_constant(n: Node) -> bool:
    while n.op in (Op.EXPAND, Op.RESHAPE):
        n = n.src[0]
    return n.op is Op.CONST


# ---- the backward pass ----


def backward(root: Tensor, gradient: Tensor | None) -> None:
    from .tensor import Tensor

    graph = root.node
    if not needs_grad(graph):
        if not root.dtype.is_float:
            raise RuntimeError(f"backward: a {root.dtype.name} tensor has no gradient; only floating point ones do")
        raise RuntimeError("backward: the tensor does not require grad (no input of it has requires_grad=True)")
    if gradient is None:
        if root.numel() != 1:
            raise RuntimeError(
                f"backward: grad can be implicitly created only for scalar outputs, not shape {root.shape}; "
                "pass a gradient of the output's shape: y.backward(gradient)"
            )
        gradient = root._const_like(1.0)
    elif not isinstance(gradient, Tensor):
        gradient = Tensor(gradient, device=root.device, dtype=root.dtype)
    if gradient.shape != root.shape:
        raise ValueError(f"backward: gradient of shape {gradient.shape} does not match the output {root.shape}")
    flows: dict[Node, tuple[Node, ...]] = {}  # node -> the sources a gradient flows to from it

    def gradient_edges(n: Node) -> tuple[Node, ...]:
        kept = flows[n] = tuple(s for s in _edges(n) if needs_grad(s))
        return kept

    order = toposort(graph, children=gradient_edges)
    grads: dict[Node, list[Tensor]] = {graph: [gradient.cast(root.dtype)]}
    for n in reversed(order):
        pieces = grads.pop(n, None)
        if not pieces:
            continue
        g = pieces[0]
        for p in pieces[1:]:
            g = g + p
        leaf = leaf_tensor(n)
        if leaf is not None:
            update = Tensor._from_node(Node(Op.DETACH, g.dtype, (g.node,)))
            leaf.grad = update if leaf.grad is None else leaf.grad + update
            continue
        key = weak_key(n)
        target = _aliases.get(key)
        if target is not None:  # a realized value or an unrecorded assign: the gradient goes to what it stands for
            grads.setdefault(target, []).append(g)
            continue
        custom = _custom.get(key)
        if custom is not None:
            inputs, formula = custom
            for s, sg in zip(inputs, formula([Tensor._from_node(s) for s in inputs], Tensor._from_node(n), g)):
                if sg is not None and s in flows[n]:
                    grads.setdefault(s, []).append(sg.cast(s.dtype))
            continue
        rule_fn = _RULES.get(n.op)
        if rule_fn is None:
            if n.op is Op.BUFFER:  # the buffer of a leaf that was freed or set requires_grad=False since
                continue
            raise RuntimeError(f"backward: no gradient rule for {n.op.name}")
        srcs = [Tensor._from_node(s) for s in n.src]
        for s, sg in zip(n.src, rule_fn(n, srcs, Tensor._from_node(n), g)):
            if sg is not None and s in flows[n]:  # (a source that takes a gradient is a float)
                grads.setdefault(s, []).append(sg.cast(s.dtype))
    _pending_roots.append(weakref.ref(root))


# Roots of backward() calls, taken by the next realize: a loss read after the optimizer step (``loss.backward();
# opt.step(); loss.item()``) is then computed in the same schedule as the gradients and shares the forward
# kernels with them, instead of running the forward pass a second time. Its value is that of the weights
# before the step: the schedule runs every read of a buffer before the assign that overwrites it.
_pending_roots: list[weakref.ref] = []


def take_pending_roots() -> list[Tensor]:
    global _pending_roots
    roots = [t for t in (r() for r in _pending_roots) if t is not None]
    _pending_roots = []
    return roots
