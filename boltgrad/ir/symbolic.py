"""Symbolic simplification of integer index expressions, and constant folding.

Index expressions come from views: a reshape turns indices into ``(i*W + j) // W`` and ``% W``, a pad adds
bounds checks. The rules here fold them back into plain affine arithmetic using the value ranges of loop
counters and variables (``vmin``/``vmax``), so a kernel over a contiguous tensor reads ``buf[i*W + j]`` and
a bounds check that is always true disappears.

Integer division and modulo truncate toward zero as in C; the rules only rewrite where the operands are
provably non-negative, where truncation and floor agree.
"""

from __future__ import annotations

import math
import struct
import weakref
from fractions import Fraction

from .dtypes import DType, bool_, cast_scalar, float32, float64
from .node import Node, const
from .ops import ALU, Op
from .rewrite import Pat, PatternMatcher, graph_rewrite

_range_cache: weakref.WeakKeyDictionary[Node, tuple[float, float]] = weakref.WeakKeyDictionary()

_INF = math.inf


def vrange(n: Node) -> tuple[float, float]:
    """Bounds (lo, hi) on the value of an integer or bool expression; +-inf where unknown."""
    hit = _range_cache.get(n)
    if hit is None:
        hit = _compute_range(n)
        _range_cache[n] = hit
    return hit


def vmin(n: Node) -> float:
    return vrange(n)[0]


def vmax(n: Node) -> float:
    return vrange(n)[1]


def _compute_range(n: Node) -> tuple[float, float]:
    op = n.op
    if op is Op.CONST:
        v = n.arg
        return (v, v) if isinstance(v, int | bool) else (-_INF, _INF)
    if n.dtype.is_float:
        return (-_INF, _INF)
    if op is Op.RANGE:
        end = n.src[0]
        return (0, vmax(end) - 1)
    if op is Op.VAR:
        return (n.arg[1], n.arg[2])
    if op in (Op.CMPLT, Op.CMPNE, Op.AND, Op.OR) and n.dtype == bool_:
        return (0, 1)
    if op is Op.ADD:
        (a0, a1), (b0, b1) = vrange(n.src[0]), vrange(n.src[1])
        return (a0 + b0, a1 + b1)
    if op is Op.MUL:
        (a0, a1), (b0, b1) = vrange(n.src[0]), vrange(n.src[1])
        products = [x * y for x in (a0, a1) for y in (b0, b1) if not (math.isinf(x) or math.isinf(y))]
        if len(products) < 4:
            return (-_INF, _INF)
        return (min(products), max(products))
    if op is Op.NEG:
        lo, hi = vrange(n.src[0])
        return (-hi, -lo)
    if op is Op.IDIV and n.src[1].op is Op.CONST and n.src[1].arg > 0:
        lo, hi = vrange(n.src[0])
        c = n.src[1].arg
        return (_trunc_div(lo, c), _trunc_div(hi, c))
    if op is Op.MOD and n.src[1].op is Op.CONST and n.src[1].arg > 0:
        lo, hi = vrange(n.src[0])
        c = n.src[1].arg
        if lo >= 0:
            return (0, min(hi, c - 1))
        return (-(c - 1), c - 1 if hi > 0 else 0)
    if op is Op.MAX:
        (a0, a1), (b0, b1) = vrange(n.src[0]), vrange(n.src[1])
        return (max(a0, b0), max(a1, b1))
    if op is Op.WHERE:
        (a0, a1), (b0, b1) = vrange(n.src[1]), vrange(n.src[2])
        return (min(a0, b0), max(a1, b1))
    if op is Op.CAST and not n.src[0].dtype.is_float:
        return vrange(n.src[0])
    return (-_INF, _INF)


def _trunc_div(v: float, c: int) -> float:
    """v / c truncated toward zero, for a bound that may be infinite (inf // c is NaN in Python)."""
    if math.isinf(v):
        return v
    q = abs(int(v)) // c
    return q if v >= 0 else -q


# ---- affine sums: sum of coef * term + constant ----


def _terms(n: Node) -> tuple[dict[Node, int], int]:
    """Split an integer expression into {term: coefficient} and a constant."""
    terms: dict[Node, int] = {}
    total = 0
    stack: list[tuple[Node, int]] = [(n, 1)]
    while stack:
        x, k = stack.pop()
        if x.op is Op.ADD:
            stack.extend((s, k) for s in x.src)
        elif x.op is Op.CONST:
            total += k * x.arg
        elif x.op is Op.MUL and x.src[1].op is Op.CONST:
            stack.append((x.src[0], k * x.src[1].arg))
        elif x.op is Op.MUL and x.src[0].op is Op.CONST:
            stack.append((x.src[1], k * x.src[0].arg))
        elif x.op is Op.NEG:
            stack.append((x.src[0], -k))
        else:
            terms[x] = terms.get(x, 0) + k
    return {t: k for t, k in terms.items() if k != 0}, total


def affine_terms(n: Node) -> tuple[dict[Node, int], int]:
    """An integer expression as ({term: coefficient}, constant)."""
    return _terms(n)


def _combine_divmod(terms: dict[Node, int]) -> dict[Node, int]:
    """(x // c) * (c*k) + (x % c) * k  ->  x * k, and ((x // c) % b) * (c*k) + (x % c) * k  ->  (x % (c*b)) * k
    (a flat index taken apart into a shape's dims and put back together), applied until nothing changes."""
    changed = True
    while changed:
        changed = False
        for t, k in list(terms.items()):
            if t.op is not Op.MOD or t.src[1].op is not Op.CONST:
                continue
            x, c = t.src[0], t.src[1].arg
            div = Node(Op.IDIV, t.dtype, (x, t.src[1]))
            if vmin(x) < 0:
                continue
            outer = next((u for u, uk in terms.items() if uk == c * k and u.op is Op.MOD and u.src[0] is div
                          and u.src[1].op is Op.CONST and u.src[1].arg > 0), None)  # fmt: skip
            if outer is not None:
                del terms[t], terms[outer]
                wider = Node(Op.MOD, t.dtype, (x, const(c * outer.src[1].arg, t.dtype)))
                terms[wider] = terms.get(wider, 0) + k
                terms = {a: b for a, b in terms.items() if b != 0}
                changed = True
                break
            if terms.get(div) == c * k:
                del terms[t], terms[div]
                for sub, sk in _terms(x)[0].items():
                    terms[sub] = terms.get(sub, 0) + sk * k
                extra = _terms(x)[1] * k
                if extra:
                    terms[const(1, t.dtype)] = terms.get(const(1, t.dtype), 0) + extra
                terms = {a: b for a, b in terms.items() if b != 0}
                changed = True
                break
    return terms


def _build(terms: dict[Node, int], total: int, dtype: DType) -> Node:
    out: Node | None = None
    # a stable order keeps equal expressions equal nodes
    for t, k in sorted(terms.items(), key=lambda tk: _order_key(tk[0])):
        piece = t if k == 1 else Node(Op.MUL, dtype, (t, const(k, dtype)))
        out = piece if out is None else Node(Op.ADD, dtype, (out, piece))
    if out is None:
        return const(total, dtype)
    return out if total == 0 else Node(Op.ADD, dtype, (out, const(total, dtype)))


def _order_key(n: Node) -> tuple:
    if n.op is Op.RANGE:
        return (0, n.arg[0])
    if n.op is Op.VAR:
        return (1, n.arg[0])
    return (2, n.op.value, id(n))


def _simplify_add(x: Node) -> Node | None:
    if x.dtype.is_float or x.dtype == bool_:
        return None
    terms, total = _terms(x)
    terms = _combine_divmod(terms)
    if const(1, x.dtype) in terms:
        total += terms.pop(const(1, x.dtype))
    out = _build(terms, total, x.dtype)
    return None if out is x else out


def _simplify_div(x: Node, c: Node) -> Node | None:
    cv = c.arg
    if not isinstance(cv, int) or cv <= 0 or x.dtype.is_float:
        return None
    if cv == 1:
        return x
    lo, hi = vrange(x)
    if lo >= 0 and hi < cv:
        return const(0, x.dtype)
    if x.op is Op.IDIV and x.src[1].op is Op.CONST and x.src[1].arg > 0 and vmin(x.src[0]) >= 0:
        return Node(Op.IDIV, x.dtype, (x.src[0], const(x.src[1].arg * cv, x.dtype)))
    if lo < 0:
        return None
    terms, total = _terms(x)
    split = _small_part(terms, total, cv, x.dtype)
    if split is not None:  # (g*b + s) // (g*k) = b // k
        g, big, _ = split
        return Node(Op.IDIV, x.dtype, (big, const(cv // g, x.dtype))) if cv > g else big
    outside = {t: k // cv for t, k in terms.items() if k % cv == 0}
    inside = {t: k for t, k in terms.items() if k % cv != 0}
    quotient_const, rest_total = divmod(total, cv)
    if not outside and quotient_const == 0:
        return None
    rest = _build(inside, rest_total, x.dtype)
    if vmin(rest) < 0:
        return None
    quotient = _build(outside, quotient_const, x.dtype)
    return quotient + Node(Op.IDIV, x.dtype, (rest, c)) if inside else quotient


def _small_part(terms: dict[Node, int], total: int, cv: int, dtype: DType) -> tuple[int, Node, Node] | None:
    """For a non-negative ``sum(terms) + total`` divided by ``cv``: ``(g, b, s)`` with the sum ``g*b + s``, ``g``
    a divisor of ``cv`` (the largest coefficient that divides it), ``b >= 0`` and ``0 <= s < g`` (the terms whose
    coefficients ``g`` does not divide): a flat index ``(y*W + x) // (2*W)`` with ``x < W`` is then ``y // 2``.
    None where no such split exists."""
    for g in sorted({abs(k) for k in terms.values() if k > 1 and cv % k == 0}, reverse=True):
        big = {t: k // g for t, k in terms.items() if k % g == 0}
        small_terms = {t: k for t, k in terms.items() if k % g != 0}
        if not big or not small_terms:
            continue
        small = _build(small_terms, total % g, dtype)
        b = _build(big, total // g, dtype)
        if vmin(small) >= 0 and vmax(small) < g and vmin(b) >= 0:
            return g, b, small
    return None


def _simplify_mod(x: Node, c: Node) -> Node | None:
    cv = c.arg
    if not isinstance(cv, int) or cv <= 0 or x.dtype.is_float:
        return None
    if cv == 1:
        return const(0, x.dtype)
    lo, hi = vrange(x)
    if lo < 0:
        return None
    if hi < cv:
        return x
    terms, total = _terms(x)
    split = _small_part(terms, total, cv, x.dtype)
    if split is not None:  # (g*b + s) % (g*k) = g*(b % k) + s
        g, big, small = split
        wrapped = Node(Op.MOD, x.dtype, (big, const(cv // g, x.dtype))) if cv > g else const(0, x.dtype)
        return wrapped * g + small
    kept = {t: k % cv for t, k in terms.items() if k % cv != 0}
    rest = _build(kept, total % cv, x.dtype)
    if vmin(rest) < 0:
        return None
    if vmax(rest) < cv:
        return rest
    if rest is x:
        return None
    return Node(Op.MOD, x.dtype, (rest, c))


def _fold_const(n: Node) -> Node | None:
    vals = [s.arg for s in n.src]
    try:
        v = eval_alu(n.op, n.dtype, vals)
    except (ZeroDivisionError, OverflowError, ValueError):
        return None
    return const(v, n.dtype)


def eval_alu(op: Op, dtype: DType, vals: list) -> bool | int | float:
    """Evaluate one op on Python scalars with C's semantics (the PYTHON device uses this too)."""
    a = vals[0]
    if op is Op.CAST:
        return cast_scalar(a, dtype)
    if op is Op.ADD:
        r = a + vals[1]
    elif op is Op.MUL:
        r = a * vals[1]
    elif op is Op.MAX:
        r = a if (a != a) or a >= vals[1] else vals[1]
    elif op is Op.NEG:
        r = not a if dtype == bool_ else -a
    elif op is Op.CMPLT:
        return a < vals[1]
    elif op is Op.CMPNE:
        return a != vals[1]
    elif op is Op.WHERE:
        return vals[1] if a else vals[2]
    elif op is Op.IDIV:
        r = _c_idiv(a, vals[1])
    elif op is Op.MOD:
        r = (a - vals[1] * _c_idiv(a, vals[1]) if vals[1] else 0) if not isinstance(a, float) else _fmod(a, vals[1])
    elif op is Op.AND:
        r = a & vals[1]
    elif op is Op.OR:
        r = a | vals[1]
    elif op is Op.XOR:
        r = a ^ vals[1]
    elif op is Op.SHL:
        r = a << vals[1]
    elif op is Op.SHR:
        r = a >> vals[1]
    elif op is Op.MULACC:
        r = fused_multiply_add(a, vals[1], vals[2], dtype) if dtype.is_float else a * vals[1] + vals[2]
    elif op is Op.RECIP:
        r = 1.0 / a if a != 0 else math.copysign(math.inf, a)
    elif op is Op.FDIV:
        b = vals[1]
        r = a / b if b != 0 else (math.nan if a == 0 or a != a else math.copysign(math.inf, a) * math.copysign(1, b))
    elif op is Op.SQRT:
        r = math.sqrt(a) if a >= 0 else math.nan
    elif op is Op.EXP2:
        try:
            r = 2.0**a
        except OverflowError:
            r = math.inf
    elif op is Op.LOG2:
        r = math.log2(a) if a > 0 else (-math.inf if a == 0 else math.nan)
    elif op is Op.SIN:
        r = math.sin(a) if not math.isinf(a) else math.nan
    elif op is Op.TRUNC:
        r = float(math.trunc(a)) if not (math.isinf(a) or a != a) else a
    else:
        raise ValueError(f"cannot evaluate {op}")
    return cast_scalar(r, dtype)


def fused_multiply_add(a: float, b: float, c: float, dtype: DType) -> float:
    """C's ``fmaf(a, b, c)`` (``fma`` for float64): a * b + c rounded once. 16-bit floats are computed in float32
    and then rounded, as the renderers compute them.

    float32: a * b is exact in a double (24 + 24 bits), and so is the rounding error of adding c (TwoSum). The
    double sum rounded to odd (where it is inexact, the neighbour whose last bit is 1) then rounds to float32
    exactly as the exact sum would: a double has more than 24 + 2 bits."""
    if dtype == float64:
        if not all(math.isfinite(v) for v in (a, b, c)):
            return a * b + c
        return float(Fraction(a) * Fraction(b) + Fraction(c))
    p = a * b
    s = p + c
    if math.isfinite(s):
        t = s - p
        err = (p - (s - t)) + (c - t)
        if err != 0 and not struct.unpack("<q", struct.pack("<d", s))[0] & 1:
            s = math.nextafter(s, math.inf if err > 0 else -math.inf)
    return cast_scalar(cast_scalar(s, float32), dtype)


def _c_idiv(a: int, b: int) -> int:
    if b == 0:  # the renderers guard division by zero to 0 rather than crash the process
        return 0
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _fmod(a: float, b: float) -> float:
    return math.fmod(a, b) if b != 0 and not math.isinf(a) else math.nan


def _where_const(c: Node, a: Node, b: Node) -> Node | None:
    if c.op is Op.CONST:
        return a if c.arg else b
    if a is b:
        return a
    return None


def _cmplt(a: Node, b: Node) -> Node | None:
    if a.dtype.is_float:
        return None
    (a0, a1), (b0, b1) = vrange(a), vrange(b)
    if a1 < b0:
        return const(True, bool_)
    if a0 >= b1:
        return const(False, bool_)
    return None


def _and(a: Node, b: Node) -> Node | None:
    if a.dtype != bool_:
        return None
    for x, y in ((a, b), (b, a)):
        if x.op is Op.CONST:
            return y if x.arg else const(False, bool_)
    return a if a is b else None


def _mul_identity(x: Node, c: Node) -> Node | None:
    if c.arg == 1 and not x.dtype == bool_:
        return x
    if c.arg == 0 and not x.dtype.is_float:
        return const(0, x.dtype)
    return None


_X, _C = Pat.any("x"), Pat.const(name="c")

symbolic_rules = PatternMatcher(
    [
        (Pat(ALU | {Op.CAST}, name="n", predicate=lambda n: all(s.op is Op.CONST for s in n.src)), _fold_const),
        (Pat(Op.ADD, name="x", predicate=lambda n: n.dtype.is_int), _simplify_add),
        (Pat(Op.ADD, src=(_X, Pat.const(0))), lambda x: x),
        (Pat(Op.MUL, src=(_X, _C)), _mul_identity),
        (Pat(Op.MUL, name="x", predicate=lambda n: n.dtype.is_int), _simplify_add),
        (Pat(Op.IDIV, src=(_X, _C)), _simplify_div),
        (Pat(Op.MOD, src=(_X, _C)), _simplify_mod),
        (Pat(Op.WHERE, src=(Pat.any("c"), Pat.any("a"), Pat.any("b"))), _where_const),
        (Pat(Op.CMPLT, src=(Pat.any("a"), Pat.any("b"))), _cmplt),
        (Pat(Op.AND, src=(Pat.any("a"), Pat.any("b"))), _and),
        (Pat(Op.CAST, src=(_X,), name="n"), lambda n, x: x if x.dtype == n.dtype else None),
    ]
)


def simplify(node: Node) -> Node:
    return graph_rewrite(node, symbolic_rules)
