"""The graph layer without a compiler: hash-consing, the rewrite engine, and symbolic index simplification.

Simplification is checked two ways: known index patterns must reach a known form, and random expressions must
keep their value (C semantics: IDIV and MOD truncate toward zero) and stay inside their computed bounds over
every value of their loop counters and variables.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from boltgrad.ir.dtypes import bool_, float32, int8, int32, int64
from boltgrad.ir.node import Node, const, var
from boltgrad.ir.ops import Op
from boltgrad.ir.rewrite import Pat, PatternMatcher, graph_rewrite, substitute
from boltgrad.ir.symbolic import simplify, vmax, vmin


def loop(n: int, loop_id: int) -> Node:
    return Node(Op.RANGE, int64, (const(n),), (loop_id, "loop"))


I, J = loop(4, 0), loop(12, 1)  # i in [0, 4), j in [0, 12)
V = var("v", -3, 3)  # a variable that can be negative
X = Node(Op.LOAD, int64, (), "x")  # a value read from memory: no bounds known


def neg(n: Node) -> Node:
    return n.alu(Op.NEG)


def ops_in(n: Node) -> set[Op]:
    return {x.op for x in n.toposort()}


# ---------------------------------------------------------------- evaluation with C semantics, on every point


def grid() -> dict[Node, np.ndarray]:
    """Every (i, j, v) combination as flat int64 arrays."""
    i, j, v = np.meshgrid(np.arange(4), np.arange(12), np.arange(-3, 4), indexing="ij")
    return {I: i.ravel(), J: j.ravel(), V: v.ravel(), X: np.resize(np.arange(-50, 51, 3), i.size)}


def c_idiv(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (b < 0), -q, q)


def evaluate(root: Node, env: dict[Node, np.ndarray]) -> np.ndarray:
    values: dict[Node, np.ndarray] = {}
    for n in root.toposort():
        if n in env:
            values[n] = env[n]
            continue
        s = [values[x] for x in n.src]
        op = n.op
        if op is Op.CONST:
            values[n] = np.asarray(n.arg, dtype=np.int64 if n.dtype != bool_ else bool)
        elif op is Op.ADD:
            values[n] = s[0] + s[1]
        elif op is Op.MUL:
            values[n] = s[0] * s[1]
        elif op is Op.NEG:
            values[n] = -s[0]
        elif op is Op.IDIV:
            values[n] = c_idiv(s[0], s[1])
        elif op is Op.MOD:
            values[n] = s[0] - s[1] * c_idiv(s[0], s[1])
        elif op is Op.MAX:
            values[n] = np.maximum(s[0], s[1])
        elif op is Op.CMPLT:
            values[n] = s[0] < s[1]
        elif op is Op.CMPNE:
            values[n] = s[0] != s[1]
        elif op is Op.AND:
            values[n] = s[0] & s[1]
        elif op is Op.WHERE:
            values[n] = np.where(s[0], s[1], s[2])
        elif op is Op.CAST:
            values[n] = s[0].astype(np.int64)
        else:
            raise AssertionError(f"the test evaluator lacks {op}")
    return np.broadcast_to(values[root], env[I].shape)


def random_expr(rng: random.Random, depth: int) -> Node:
    if depth == 0 or rng.random() < 0.2:
        return rng.choice([I, J, V, I, J, X, const(rng.randint(-5, 12))])
    kind = rng.choice(["add", "add", "mul", "div", "div", "mod", "mod", "neg", "max", "where"])
    a = random_expr(rng, depth - 1)
    if kind == "add":
        return a + random_expr(rng, depth - 1)
    if kind == "mul":
        return a * (rng.choice([-3, -1, 2, 3, 4, 12]) if rng.random() < 0.7 else random_expr(rng, 0))
    if kind == "div":
        return a // rng.choice([1, 2, 3, 4, 6, 12, 48, -2, -4])
    if kind == "mod":
        return a % rng.choice([1, 2, 3, 4, 6, 12, 48, -3])
    if kind == "neg":
        return -a
    if kind == "max":
        return a.alu(Op.MAX, random_expr(rng, depth - 1))
    b, c = random_expr(rng, depth - 1), random_expr(rng, depth - 1)
    return a.lt(b).where(c, a)


def test_random_expressions_keep_their_value_and_bounds():
    rng = random.Random(1234)
    env = grid()
    changed = 0
    for _ in range(300):
        expr = random_expr(rng, 4)
        want = evaluate(expr, env)
        out = simplify(expr)
        got = evaluate(out, env)
        assert np.array_equal(got, want), f"simplify changed the value of\n{expr}\ninto\n{out}"
        assert vmin(expr) <= want.min() and want.max() <= vmax(expr), f"bounds of {expr}"
        assert vmin(out) <= got.min() and got.max() <= vmax(out), f"bounds of {out}"
        changed += out is not expr
    assert changed > 100  # the generator makes expressions that simplify


# ---------------------------------------------------------------- index patterns


def test_divmod_recombines():
    flat = I * 12 + J
    expr = ((flat // 12) * 12) + flat % 12
    out = simplify(expr)
    assert out is simplify(flat)
    assert Op.IDIV not in ops_in(out) and Op.MOD not in ops_in(out)


def test_divmod_recombines_with_scale_and_offset():
    flat = I * 12 + J
    expr = (flat // 12) * 24 + (flat % 12) * 2 + 5
    out = simplify(expr)
    assert Op.IDIV not in ops_in(out) and Op.MOD not in ops_in(out)
    assert np.array_equal(evaluate(out, grid()), evaluate(I * 24 + J * 2 + 5, grid()))


def test_a_flat_index_taken_apart_into_three_dims_recombines():
    """r -> (r // 1024, (r // 32) % 32, r % 32) -> back to the flat index: what a reshape of a permuted view of a
    permuted view leaves in a load (a conv's output gradient read as (channels, positions))."""
    r = loop(32768, 2)
    expr = r % 32 + ((r // 32) % 32) * 32 + (r // 1024) * 1024
    assert simplify(expr) is r
    two = simplify(r % 32 + ((r // 32) % 32) * 32)  # two dims only: the low 1024 of the index
    assert Op.IDIV not in ops_in(two) and simplify(two + (r // 1024) * 1024) is r
    flat = I * 12 + J  # with a scale and an offset, and dims that do not line up with a loop
    expr = (flat % 3) * 2 + ((flat // 3) % 2) * 6 + (flat // 6) * 12 + 1
    out = simplify(expr)
    assert Op.IDIV not in ops_in(out) and Op.MOD not in ops_in(out)
    assert np.array_equal(evaluate(out, grid()), evaluate(flat * 2 + 1, grid()))


def test_div_splits_over_an_affine_sum():
    out = simplify((I * 12 + J) // 4)
    assert out is simplify(I * 3 + J // 4)
    assert simplify((I * 12 + J) // 12) is I
    assert simplify((I * 12 + J) % 12) is J
    assert simplify((I * 12 + J * 4) // 4) is simplify(I * 3 + J)
    assert simplify((J // 2) // 3) is simplify(J // 6)


def test_div_and_mod_by_a_multiple_of_a_row():
    """A flat index over (i, j) of 12 columns, divided by two rows (a 2x2 pooling window's row): the column
    part is smaller than a row, so ``(i*12 + j) // 24`` is ``i // 2`` and ``% 24`` is ``(i % 2)*12 + j``."""
    flat = I * 12 + J
    assert simplify(flat // 24) is simplify(I // 2)
    assert simplify(flat % 24) is simplify((I % 2) * 12 + J)
    assert simplify((flat + 36) // 24) is simplify((I + 3) // 2)
    env = grid()
    for e in (flat // 24, flat % 24, (flat * 2 + 7) // 48, (flat + 36) % 24, (flat * 3 + 1) % 72):
        np.testing.assert_array_equal(evaluate(simplify(e), env), evaluate(e, env))


def test_mod_and_div_of_values_in_range():
    assert simplify(J % 12) is J
    assert simplify(J % 100) is J
    assert simplify(J // 12).op is Op.CONST and simplify(J // 12).arg == 0
    assert simplify(I % 1).arg == 0 and simplify(I // 1) is I
    assert simplify((J + 12) % 12) is J
    assert simplify((I * 12 + J) % 4) is simplify(J % 4)


def test_negative_operands_are_left_alone():
    """Truncating and flooring division differ below zero: no rewrite may assume non-negative operands."""
    for expr in ((V * 4 + J) // 4, (V + 3) % 3, (I - 2) // 2, (J - 6) % 4):
        out = simplify(expr)
        assert np.array_equal(evaluate(out, grid()), evaluate(expr, grid())), expr


def test_divisions_of_unbounded_values():
    """A value with no known bounds may be negative: (x // 2 + 4) // 4 must keep C's truncation for x < 0."""
    env = grid()
    for expr in ((X // 2 + 4) // 4, (X % 3 + 4) // 4, (X // 2 + 8) % 4, ((X // 3) * 3 + X % 3) // 2):
        assert not np.isnan(vmin(expr)) and not np.isnan(vmax(expr)), f"bounds of {expr} are NaN"
        assert np.array_equal(evaluate(simplify(expr), env), evaluate(expr, env)), f"simplify changed {expr}"
    assert (vmin(X // 2), vmax(X // 2)) == (-np.inf, np.inf)


def test_bounds():
    assert (vmin(I * 12 + J), vmax(I * 12 + J)) == (0, 47)
    assert (vmin((I * 12 + J) // 4), vmax((I * 12 + J) // 4)) == (0, 11)
    assert (vmin(J % 5), vmax(J % 5)) == (0, 4)
    assert (vmin(V * -2), vmax(V * -2)) == (-6, 6)
    assert (vmin(-I), vmax(-I)) == (-3, 0)
    assert (vmin(I.alu(Op.MAX, V)), vmax(I.alu(Op.MAX, V))) == (0, 3)
    assert (vmin(J.lt(3)), vmax(J.lt(3))) == (0, 1)


# ---------------------------------------------------------------- constant folding and identities


def test_constant_folding():
    assert simplify(const(3) + const(4)) is const(7)
    assert simplify(const(3) * const(4) + const(-2)) is const(10)
    assert simplify(const(-7) // const(2)) is const(-3)  # C truncation, not Python's floor
    assert simplify(const(-7) % const(2)) is const(-1)
    assert simplify(const(7) % const(-2)) is const(1)
    assert simplify(Node(Op.ADD, int8, (const(127, int8), const(1, int8)))) is const(-128, int8)
    assert simplify(Node(Op.MUL, int32, (const(2**30, int32), const(4, int32)))) is const(0, int32)
    assert simplify(const(3).lt(const(4))) is const(True, bool_)
    assert simplify(const(3).ne(const(3))) is const(False, bool_)
    assert simplify(Node(Op.SQRT, float32, (const(4.0, float32),))) is const(2.0, float32)
    assert simplify(Node(Op.ADD, float32, (const(0.1, float32), const(0.2, float32)))).arg == pytest.approx(0.3)
    assert simplify(Node(Op.CAST, int64, (const(2.9, float32),))) is const(2)
    assert simplify(Node(Op.CAST, int8, (const(300),))) is const(44, int8)


def test_identities():
    assert simplify(J + 0) is J and simplify(0 + J) is J
    assert simplify(J * 1) is J and simplify(J * 0) is const(0)
    assert simplify(J - J) is const(0)
    assert simplify(J + I - J) is I
    assert simplify(const(True, bool_).where(I, J)) is I
    assert simplify(const(False, bool_).where(I, J)) is J
    assert simplify(J.lt(5).where(I, I)) is I
    assert simplify(const(True, bool_).logical_and(J.lt(5))) is simplify(J.lt(5))
    # floats are not rewritten by integer identities: x * 0 is NaN for an infinite x
    x = Node(Op.LOAD, float32, (), "x")
    assert simplify(Node(Op.MUL, float32, (x, const(0.0, float32)))).op is Op.MUL


def test_comparisons_folded_by_ranges():
    assert simplify(I.lt(4)) is const(True, bool_)
    assert simplify(I.lt(0)) is const(False, bool_)
    assert simplify((I * 12 + J).lt(48)) is const(True, bool_)
    assert simplify((I - 10).lt(0)) is const(True, bool_)
    assert simplify(V.lt(-3)) is const(False, bool_)
    assert simplify(J.lt(6)).op is Op.CMPLT  # undecided: stays a comparison
    assert simplify(V.lt(0)).op is Op.CMPLT


# ---------------------------------------------------------------- the rewrite engine


def test_nodes_are_hash_consed():
    assert Node(Op.ADD, int64, (I, J)) is I + J
    assert const(1) is const(1) and const(1) is not const(1, int32)
    assert const(1.0, float32) is not const(1, float32)  # 1 == 1.0 in Python; the nodes must still differ
    assert const(0.0, float32) is not const(-0.0, float32)
    assert const(True, bool_) is not const(1, bool_)
    with pytest.raises(AttributeError):
        I.op = Op.ADD


def test_pattern_binds_names_and_matches_commuted_sources():
    rules = PatternMatcher([(Pat(Op.ADD, src=(Pat.const(0), Pat.any("x"))), lambda x: x)])
    assert graph_rewrite(J + 0, rules) is J  # the pattern has the constant first; the node has it second
    twice = PatternMatcher([(Pat(Op.ADD, src=(Pat.any("x"), Pat.any("x"))), lambda x: x * 2)])
    assert graph_rewrite(J + J, twice) is J * 2
    assert graph_rewrite(J + I, twice) is J + I  # a name binds one node only


def test_pattern_filters():
    seen = []
    rules = PatternMatcher(
        [
            (Pat(Op.ADD, dtype=int32, name="n"), lambda n: seen.append(("dtype", n)) or None),
            (Pat(Op.MUL, name="n", predicate=lambda n: n.src[1].op is Op.CONST), lambda n: n.src[0]),
        ]
    )
    assert graph_rewrite(J * 5, rules) is J
    assert graph_rewrite(J * I, rules) is J * I
    graph_rewrite(I + J, rules)
    assert seen == []  # int64 ADD does not match an int32 pattern
    a = Node(Op.ADD, int32, (const(1, int32), const(2, int32)))
    graph_rewrite(a, rules)
    assert seen == [("dtype", a)]


def test_rewrite_reaches_a_fixed_point_bottom_up():
    rules = PatternMatcher(
        [
            # x << k  ->  x * 2**k
            (Pat(Op.SHL, src=(Pat.any("x"), Pat.const(name="k"))), lambda x, k: x * (2**k.arg)),
            # (x * a) * b  ->  x * (a*b): needs the output of the rule above
            (
                Pat(Op.MUL, src=(Pat(Op.MUL, src=(Pat.any("x"), Pat.const(name="a"))), Pat.const(name="b"))),
                lambda x, a, b: x * (a.arg * b.arg),
            ),
            (Pat(Op.NEG, src=(Pat(Op.NEG, src=(Pat.any("x"),)),)), lambda x: x),
        ]
    )
    shifted = J.alu(Op.SHL, 1).alu(Op.SHL, 2).alu(Op.SHL, 3)
    assert graph_rewrite(shifted, rules) is J * 64
    assert graph_rewrite(neg(neg(neg(neg(I)))), rules) is I
    assert graph_rewrite(neg(neg(neg(I))) + J, rules) is neg(I) + J


def test_substitute():
    expr = (I * 12 + J) // 4
    out = substitute(expr, {J: const(7)})
    assert J not in out.toposort()
    assert simplify(out) is simplify(I * 3 + 1)
    assert substitute(expr, {}) is expr
