"""The node's own machinery, without a compiler: the intern table, the walk order, the memoised device, the weak
tables keyed by node, and which buffers a set of graphs reads."""

from __future__ import annotations

import gc
import random
import sys

from boltgrad.device.buffer import Buffer
from boltgrad.ir import node as node_module
from boltgrad.ir.dtypes import bool_, float32, int64
from boltgrad.ir.node import Node, WeakNodeTable, const, toposort, weak_key
from boltgrad.ir.ops import Op
from boltgrad.schedule.realized import input_versions


def depth_first(roots: list[Node], children=None, stop=frozenset()) -> list[Node]:
    """The order toposort promises, as the recursive walk states it."""
    order: list[Node] = []
    seen: set[Node] = set()

    def visit(n: Node) -> None:
        if n in seen:
            return
        seen.add(n)
        if n not in stop or n in roots:  # roots are descended into, also where another root reaches them
            for s in n.src if children is None else children(n):
                visit(s)
        order.append(n)

    for r in roots:
        visit(r)
    return order


def random_graph(rng: random.Random, size: int) -> list[Node]:
    nodes = [const(i) for i in range(4)]
    ops = (Op.ADD, Op.MUL, Op.MAX, Op.NEG, Op.WHERE)
    while len(nodes) < size:
        op = rng.choice(ops)
        arity = {Op.NEG: 1, Op.WHERE: 3}.get(op, 2)
        nodes.append(Node(op, int64, tuple(rng.choice(nodes[-12:]) for _ in range(arity))))
    return nodes


def test_toposort_is_the_recursive_depth_first_order():
    rng = random.Random(0)
    for _ in range(50):
        nodes = random_graph(rng, 40)
        roots = rng.sample(nodes, 3)
        stop = set(rng.sample(nodes, 5)) | {roots[1]}  # a root in stop is still descended into
        keep_first = lambda n: n.src[:1]  # noqa: E731 - edges other than src
        assert toposort(roots) == depth_first(roots)
        assert toposort(roots, children=keep_first) == depth_first(roots, keep_first)
        assert toposort(roots, stop=stop) == depth_first(roots, stop=stop)
        assert toposort(roots[0]) == depth_first(roots[:1])


def test_toposort_of_a_deep_chain_needs_no_recursion():
    x = const(1)
    for _ in range(3 * sys.getrecursionlimit()):
        x = Node(Op.NEG, int64, (x,))
    order = toposort(x)
    assert len(order) == 3 * sys.getrecursionlimit() + 1 and order[0].op is Op.CONST and order[-1] is x


def test_interning_merges_equal_nodes_only():
    assert Node(Op.ADD, int64, (const(1), const(2))) is Node(Op.ADD, int64, (const(1), const(2)))
    values = [const(1, float32), const(1.0, float32), const(True, float32), const(0.0, float32), const(-0.0, float32)]
    assert len({id(n) for n in values}) == 5  # 1 == 1.0 == True and 0.0 == -0.0, but they print differently
    assert Node(Op.CAST, float32, (const(1),)) is not Node(Op.CAST, bool_, (const(1),))


def test_interned_nodes_are_freed_with_their_graph():
    gc.collect()
    before = len(node_module._intern)
    x = const(7)
    for _ in range(1000):
        x = Node(Op.NEG, int64, (x,))
    assert len(node_module._intern) >= before + 1000
    del x
    gc.collect()
    assert len(node_module._intern) <= before + 1  # (const(7) may be kept by nothing else: then it goes too)


def test_device_is_that_of_the_graphs_buffers_and_copies():
    cpu = Node(Op.BUFFER, float32, (), Buffer("NULL", 4, float32))
    here = Node(Op.DEVICE, float32, (), "NULL")
    nowhere = Node(Op.DEVICE, float32, (), "")
    free = Node(Op.CONST, float32, (nowhere,), 2.0)  # a constant beside a Variable: of no device
    graphs = [
        cpu,
        Node(Op.ADD, float32, (free, cpu)),  # the device is found past a source of none
        Node(Op.COPY, float32, (cpu,), "NULL:1"),
        Node(Op.MUL, float32, (Node(Op.CONST, float32, (here,), 3.0), free)),
        Node(Op.NEG, float32, (free,)),
    ]
    deep = cpu
    for _ in range(3 * sys.getrecursionlimit()):  # asked at the top first: walked, not recursed
        deep = Node(Op.NEG, float32, (Node(Op.ADD, float32, (free, deep)),))
    assert [g.device for g in graphs] == ["NULL", "NULL", "NULL:1", "NULL", ""]
    assert deep.device == "NULL"
    assert all(n.device == "NULL" for n in toposort(deep) if n.op is not Op.CONST and n.op is not Op.DEVICE)


def test_weak_node_table_drops_an_entry_when_its_node_dies():
    table = WeakNodeTable()
    a, b = Node(Op.NEG, int64, (const(11),)), Node(Op.NEG, int64, (const(12),))
    table.put(a, "a")
    table.put(b, "b")
    table.put(a, "a again")
    assert table.get(weak_key(a)) == "a again" and weak_key(b) in table and len(table) == 2
    del b
    gc.collect()
    assert len(table) == 1 and table.get(weak_key(a)) == "a again"


def test_input_versions_of_several_graphs_are_each_graphs_own():
    bufs = [Buffer("NULL", 4, float32) for _ in range(4)]
    leaves = [Node(Op.BUFFER, float32, (), b) for b in bufs]
    bufs[2].version = 5
    x = Node(Op.ADD, float32, (leaves[0], leaves[1]))
    y = Node(Op.MUL, float32, (x, leaves[2]))
    z = Node(Op.NEG, float32, (leaves[3],))
    found = input_versions([y, x, z])
    assert [sorted((id(b), v) for b, v in reads) for reads in found] == [
        sorted((id(b), v) for b, v in [(bufs[0], 0), (bufs[1], 0), (bufs[2], 5)]),
        sorted((id(b), 0) for b in bufs[:2]),
        [(id(bufs[3]), 0)],
    ]
    assert input_versions([y]) == [tuple((b, b.version) for b in bufs[:3])]
