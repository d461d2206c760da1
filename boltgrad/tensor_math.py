"""Elementwise math, written with the primitives (EXP2, LOG2, SIN, SQRT, RECIP, NEG, TRUNC, ADD, MUL, MAX, ...).

Broadcasting and type promotion follow PyTorch: Python scalars are weak (they lift the category only),
integer inputs to float functions compute in the default float type, comparisons return bool.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .autograd import with_gradient
from .ir import dtypes
from .ir.dtypes import DType, promote_types, result_type_with_scalar
from .ir.node import Node
from .ir.ops import Op
from .tensor_create import const_node

if TYPE_CHECKING:
    from .tensor import Tensor

LOG2_E = 1.4426950408889634
LN_2 = 0.6931471805599453


def broadcast_shape(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    ndim = max((len(s) for s in shapes), default=0)
    out = [1] * ndim
    for shape in shapes:
        for i, size in enumerate(shape, ndim - len(shape)):
            if size != 1 and size != out[i]:
                if out[i] != 1:
                    listed = " and ".join(str(tuple(s)) for s in shapes)
                    raise ValueError(f"shapes {listed} cannot be broadcast together")
                out[i] = size
    return tuple(out)


def compute_types(x: Tensor) -> tuple[Tensor, DType]:
    """x in the float type to compute in, and the type of the result: half types compute in float32 and
    integers in the default float type, as torch's elementwise math does (rounding once, at the end)."""
    out = x.dtype if x.dtype.is_float else dtypes.default_float
    work = dtypes.float32 if out.itemsize < 4 else out
    return x.cast(work), out


class MathMixin:
    __slots__ = ()
    node: Node

    # ---- plumbing ----

    @staticmethod
    def _is_tensor(x: Any) -> bool:
        return isinstance(x, MathMixin)

    def _to_tensor(self, x: Any) -> Tensor:
        from .tensor import Tensor

        return x if isinstance(x, Tensor) else Tensor(x, device=self.device)  # type: ignore[attr-defined]

    def _broadcast_to(self, shape: tuple[int, ...]) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        mine = me.node.shape
        if mine == shape:
            return me
        padded = (1,) * (len(shape) - len(mine)) + mine
        if len(padded) != len(shape) or any(t < 0 or (s != 1 and s != t) for s, t in zip(padded, shape)):
            return me.reshape(padded).expand(shape)  # which says what does not fit
        # the nodes and tensors reshape(padded).expand(shape) makes, without checking again what was just checked
        if padded != mine:
            me = me._fresh(Op.RESHAPE, padded)  # type: ignore[attr-defined]
        return me if padded == shape else me._fresh(Op.EXPAND, tuple(shape))  # type: ignore[attr-defined]

    def _const_like(self, value: Any, dtype: DType | None = None, shape: tuple[int, ...] | None = None) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        dt = dtype or me.node.dtype
        # a constant beside a graph of Variables only is of no device either: the graph stays at home anywhere
        node = const_node(value, dt, me.node.device)
        target = me.node.shape if shape is None else tuple(shape)
        if target:  # the nodes reshape((1,) * n).expand(target) makes, without the checks and the tensors between
            ones = (1,) * len(target)
            node = Node(Op.RESHAPE, dt, (node,), ones)
            if target != ones:
                node = Node(Op.EXPAND, dt, (node,), target)
        return me._from_node(node)

    def _operands(self, other: Any, reverse: bool = False, dtype: DType | None = None) -> tuple[Tensor, Tensor]:
        """Both operands broadcast to one shape and promoted to one dtype (or ``dtype``)."""
        me: Tensor = self  # type: ignore[assignment]
        if not isinstance(other, MathMixin):
            if isinstance(other, bool | int | float):
                dt = dtype or result_type_with_scalar(me.node.dtype, other)
                a = me.cast(dt)
                b = a._const_like(other, dt)
                return (b, a) if reverse else (a, b)
            other = self._to_tensor(other)
        mine, theirs = me.node.device, other.node.device
        if mine and theirs and mine != theirs:  # "": a graph of variables only, at home anywhere
            raise RuntimeError(f"expected all tensors on one device, got {mine} and {theirs}")
        a, b = me.node, other.node
        # usually both are of one dtype and shape already: nothing to cast or broadcast
        if a.dtype is not b.dtype or (dtype is not None and dtype is not a.dtype) or a.shape != b.shape:
            dt = dtype or (a.dtype if a.dtype is b.dtype else promote_types(a.dtype, b.dtype))
            shape = broadcast_shape(a.shape, b.shape)
            me, other = me.cast(dt)._broadcast_to(shape), other.cast(dt)._broadcast_to(shape)
        return (other, me) if reverse else (me, other)

    def _binary(self, op: Op, other: Any, reverse: bool = False, dtype: DType | None = None) -> Tensor:
        a, b = self._operands(other, reverse, dtype)
        out_dtype = dtypes.bool_ if op is Op.CMPLT or op is Op.CMPNE else a.node.dtype
        return a._from_node(Node(op, out_dtype, (a.node, b.node)))

    def _unary(self, op: Op) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        return me._from_node(Node(op, me.dtype, (me.node,)))

    def _floating(self) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        return me if me.dtype.is_float else me.cast(dtypes.default_float)

    # ---- arithmetic ----

    def add(self, other: Any, alpha: Any = 1) -> Tensor:
        return self._binary(Op.ADD, other if alpha == 1 else other * alpha)

    def sub(self, other: Any, alpha: Any = 1) -> Tensor:
        a, b = self._operands(other if alpha == 1 else other * alpha)
        if a.dtype == dtypes.bool_:
            raise TypeError("subtraction of bool tensors is not supported; use logical_xor or ~")
        return a._binary(Op.ADD, b._unary(Op.NEG))

    def mul(self, other: Any) -> Tensor:
        return self._binary(Op.MUL, other)

    def div(self, other: Any, rounding_mode: str | None = None) -> Tensor:
        if rounding_mode == "floor":
            return self.floor_divide(other)
        if rounding_mode == "trunc":
            a, b = self._operands(other)
            return a._binary(Op.IDIV, b) if a.dtype.is_int else a.div(b).trunc()
        if rounding_mode is not None:
            raise ValueError(f"div: rounding_mode must be None, 'floor' or 'trunc', not {rounding_mode!r}")
        a, b = self._operands(other)
        a, b = a._floating(), b._floating()
        return a._binary(Op.MUL, b._unary(Op.RECIP))  # codegen renders a * (1/b) as a true division

    def floor_divide(self, other: Any) -> Tensor:
        a, b = self._operands(other)
        if a.dtype.is_float:
            return a.div(b).floor()
        q = a._binary(Op.IDIV, b)
        # IDIV truncates; step down where the signs differ and the division was inexact
        inexact = a._binary(Op.MOD, b)._binary(Op.CMPNE, 0)
        signs_differ = (a < 0)._binary(Op.CMPNE, b < 0)
        return inexact.logical_and(signs_differ)._select(q - 1, q)

    def remainder(self, other: Any) -> Tensor:
        a, b = self._operands(other)
        if a.dtype.is_float:
            return a - a.div(b).floor() * b
        r = a._binary(Op.MOD, b)
        fix = r._binary(Op.CMPNE, 0).logical_and((r < 0)._binary(Op.CMPNE, b < 0))
        return fix._select(r + b, r)

    def fmod(self, other: Any) -> Tensor:
        a, b = self._operands(other)
        return a._binary(Op.MOD, b)

    def neg(self) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        if me.dtype == dtypes.bool_:
            raise TypeError("negation of a bool tensor is not supported; use logical_not or ~")
        return self._unary(Op.NEG)

    def reciprocal(self) -> Tensor:
        return self._floating()._unary(Op.RECIP)

    def square(self) -> Tensor:
        return self * self

    def abs(self) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        if me.dtype == dtypes.bool_ or me.dtype.is_unsigned:
            return me
        return me._binary(Op.MAX, me._unary(Op.NEG))

    def sign(self) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        if me.dtype == dtypes.bool_:
            return me
        return _zero_gradient((me > 0).cast(me.dtype) - (me < 0).cast(me.dtype), me)

    def pow(self, exponent: Any) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        if isinstance(exponent, int | float) and not isinstance(exponent, bool):
            if exponent == 0:  # 1 everywhere, NaN and inf included, with a zero gradient (as torch)
                one = me._const_like(1, result_type_with_scalar(me.dtype, exponent))
                return _zero_gradient((me != me)._select(one, one), me)
            if isinstance(exponent, int) or float(exponent).is_integer():
                n = int(exponent)
                if 0 < n <= 8 and (me.dtype.is_int or isinstance(exponent, int) or me.dtype.is_float):
                    base = me if isinstance(exponent, int) or me.dtype.is_float else me._floating()
                    return _power_by_squaring(base, n)
                if -8 <= n < 0:
                    return _power_by_squaring(me._floating(), -n).reciprocal()
            if exponent == 0.5:
                return me._floating().sqrt()
        a, b = self._operands(exponent)
        if a.dtype.is_int:
            return _integer_pow(a, b)
        base = (b * a.abs().log2()).exp2()
        b_int = b.trunc() == b
        b_odd = b_int.logical_and(b.fmod(2) != 0)
        negative = (a < 0)._select(b_int._select(b_odd._select(-base, base), a._const_like(math.nan)), base)
        return with_gradient((b == 0)._select(a._const_like(1), negative), (a, b), _pow_grad)

    def __pow__(self, x: Any) -> Tensor:
        return self.pow(x)

    def __rpow__(self, x: Any) -> Tensor:
        a, b = self._operands(x, reverse=True)
        return a.pow(b)

    # ---- transcendental ----

    def exp(self) -> Tensor:
        x, out = compute_types(self)  # type: ignore[arg-type]
        return (x * LOG2_E)._unary(Op.EXP2).cast(out)

    def exp2(self) -> Tensor:
        return self._floating()._unary(Op.EXP2)

    def log(self) -> Tensor:
        x, out = compute_types(self)  # type: ignore[arg-type]
        return (x._unary(Op.LOG2) * LN_2).cast(out)

    def log2(self) -> Tensor:
        return self._floating()._unary(Op.LOG2)

    def sqrt(self) -> Tensor:
        return self._floating()._unary(Op.SQRT)

    def rsqrt(self) -> Tensor:
        x, out = compute_types(self)  # type: ignore[arg-type]
        return x._unary(Op.SQRT)._unary(Op.RECIP).cast(out)

    def sin(self) -> Tensor:
        return self._floating()._unary(Op.SIN)

    def cos(self) -> Tensor:
        # sin(pi/2 - x): the subtraction is done in float64 so that it loses nothing for float32 inputs
        x = self._floating()
        wide = (math.pi / 2 - x.cast(dtypes.float64))._unary(Op.SIN)
        return wide.cast(x.dtype)

    def tan(self) -> Tensor:
        x = self._floating()
        wide = x.cast(dtypes.float64)
        return (wide._unary(Op.SIN) / (math.pi / 2 - wide)._unary(Op.SIN)).cast(x.dtype)

    def relu(self) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        return me._binary(Op.MAX, 0)

    # ---- rounding ----

    def trunc(self) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        return me._unary(Op.TRUNC) if me.dtype.is_float else me

    def floor(self) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        if not me.dtype.is_float:
            return me
        t = me.trunc()
        return (t > me)._select(t - 1, t)

    def ceil(self) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        if not me.dtype.is_float:
            return me
        t = me.trunc()
        return (t < me)._select(t + 1, t)

    def round(self) -> Tensor:
        """Round half to even, as torch.round does."""
        me: Tensor = self  # type: ignore[assignment]
        if not me.dtype.is_float:
            return me
        f = me.floor()
        diff = me - f
        odd = f.fmod(2) != 0
        up = (diff > 0.5).logical_or((diff == 0.5).logical_and(odd))
        return up._select(f + 1, f)

    # ---- comparisons and logic ----

    def __lt__(self, x: Any) -> Tensor:
        return self._binary(Op.CMPLT, x)

    def __gt__(self, x: Any) -> Tensor:
        return self._binary(Op.CMPLT, x, reverse=True)

    def __le__(self, x: Any) -> Tensor:
        return _not_unless_nan(self > x, lambda: (self < x).logical_or(self == x))

    def __ge__(self, x: Any) -> Tensor:
        return _not_unless_nan(self < x, lambda: (self > x).logical_or(self == x))

    def __eq__(self, x: Any) -> Tensor:  # type: ignore[override]
        return self._binary(Op.CMPNE, x).logical_not()

    def __ne__(self, x: Any) -> Tensor:  # type: ignore[override]
        return self._binary(Op.CMPNE, x)

    def lt(self, x: Any) -> Tensor:
        return self < x

    def gt(self, x: Any) -> Tensor:
        return self > x

    def le(self, x: Any) -> Tensor:
        return self <= x

    def ge(self, x: Any) -> Tensor:
        return self >= x

    def eq(self, x: Any) -> Tensor:
        return self == x

    def ne(self, x: Any) -> Tensor:
        return self != x

    def isnan(self) -> Tensor:
        return self != self

    def isinf(self) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        if not me.dtype.is_float:
            return me._const_like(False, dtypes.bool_)
        return (me == math.inf).logical_or(me == -math.inf)

    def isfinite(self) -> Tensor:
        return (self.isnan().logical_or(self.isinf())).logical_not()

    def logical_not(self) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        flag = me if me.dtype == dtypes.bool_ else me._binary(Op.CMPNE, 0)
        return flag._binary(Op.XOR, True)

    def logical_and(self, x: Any) -> Tensor:
        return self.bool()._binary(Op.AND, self._to_tensor(x).bool() if self._is_tensor(x) else bool(x))

    def logical_or(self, x: Any) -> Tensor:
        return self.bool()._binary(Op.OR, self._to_tensor(x).bool() if self._is_tensor(x) else bool(x))

    def logical_xor(self, x: Any) -> Tensor:
        return self.bool()._binary(Op.XOR, self._to_tensor(x).bool() if self._is_tensor(x) else bool(x))

    def _check_integral(self, name: str) -> None:
        me: Tensor = self  # type: ignore[assignment]
        if me.dtype.is_float:
            raise TypeError(f"{name} is only defined for integer and bool tensors, not {me.dtype.name}")

    def bitwise_and(self, x: Any) -> Tensor:
        self._check_integral("bitwise_and")
        return self._binary(Op.AND, x)

    def bitwise_or(self, x: Any) -> Tensor:
        self._check_integral("bitwise_or")
        return self._binary(Op.OR, x)

    def bitwise_xor(self, x: Any) -> Tensor:
        self._check_integral("bitwise_xor")
        return self._binary(Op.XOR, x)

    def bitwise_not(self) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        self._check_integral("bitwise_not")
        if me.dtype == dtypes.bool_:
            return me._binary(Op.XOR, True)
        return me._binary(Op.XOR, dtypes.max_value(me.dtype) if me.dtype.is_unsigned else -1)

    def bitwise_left_shift(self, x: Any) -> Tensor:
        self._check_integral("<<")
        return self._binary(Op.SHL, x)

    def bitwise_right_shift(self, x: Any) -> Tensor:
        self._check_integral(">>")
        return self._binary(Op.SHR, x)

    def maximum(self, x: Any) -> Tensor:
        return self._binary(Op.MAX, x)

    def minimum(self, x: Any) -> Tensor:
        a, b = self._operands(x)
        if a.dtype.is_float:
            return -((-a)._binary(Op.MAX, -b))  # MAX propagates NaN; keep that
        return (a < b)._select(a, b)

    def clamp(self, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002 - torch's names
        if min is None and max is None:
            raise ValueError("clamp: at least one of min and max must be given")
        # selects, not maximum/minimum: torch's gradient reaches x where min <= x <= max (bounds included) and
        # a tensor bound where it is the result; NaN in x passes through
        out: Tensor = self  # type: ignore[assignment]
        if min is not None:
            a, lo = out._operands(min)
            out = (a < lo)._select(lo, a)
        if max is not None:
            a, hi = out._operands(max)
            out = (a > hi)._select(hi, a)
        return out

    def clip(self, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002
        return self.clamp(min, max)

    def where(self, condition: Any, other: Any) -> Tensor:
        """torch's method: self where ``condition`` is true, else ``other``."""
        cond = condition if self._is_tensor(condition) else self._to_tensor(condition)
        return cond._select(self, other)

    def _select(self, x: Any, y: Any) -> Tensor:
        """``cond._select(x, y)``: x where self (the condition) is true, else y; broadcast and promoted."""
        me: Tensor = self  # type: ignore[assignment]
        cond = me if me.node.dtype is dtypes.bool_ else me.bool()
        x_t = x if self._is_tensor(x) else None
        y_t = y if self._is_tensor(y) else None
        if x_t is not None and y_t is not None:
            dt = x_t.dtype if x_t.dtype is y_t.dtype else promote_types(x_t.dtype, y_t.dtype)
        elif x_t is not None:
            dt = result_type_with_scalar(x_t.dtype, y)
        elif y_t is not None:
            dt = result_type_with_scalar(y_t.dtype, x)
        else:
            dt = dtypes.default_float if isinstance(x, float) or isinstance(y, float) else dtypes.default_int
            if isinstance(x, bool) and isinstance(y, bool):
                dt = dtypes.bool_
        shapes = [cond.shape] + [t.shape for t in (x_t, y_t) if t is not None]
        shape = broadcast_shape(*shapes)
        xs = x_t.cast(dt)._broadcast_to(shape) if x_t is not None else cond._const_like(x, dt, shape)
        ys = y_t.cast(dt)._broadcast_to(shape) if y_t is not None else cond._const_like(y, dt, shape)
        c = cond._broadcast_to(shape)
        return c._from_node(Node(Op.WHERE, dt, (c.node, xs.node, ys.node)))

    # ---- operators ----

    def __add__(self, x: Any) -> Tensor:
        return self.add(x)

    def __radd__(self, x: Any) -> Tensor:
        return self._binary(Op.ADD, x, reverse=True)

    def __sub__(self, x: Any) -> Tensor:
        return self.sub(x)

    def __rsub__(self, x: Any) -> Tensor:
        a, b = self._operands(x, reverse=True)
        return a.sub(b)

    def __mul__(self, x: Any) -> Tensor:
        return self.mul(x)

    def __rmul__(self, x: Any) -> Tensor:
        return self._binary(Op.MUL, x, reverse=True)

    def __truediv__(self, x: Any) -> Tensor:
        return self.div(x)

    def __rtruediv__(self, x: Any) -> Tensor:
        a, b = self._operands(x, reverse=True)
        return a.div(b)

    def __floordiv__(self, x: Any) -> Tensor:
        return self.floor_divide(x)

    def __rfloordiv__(self, x: Any) -> Tensor:
        a, b = self._operands(x, reverse=True)
        return a.floor_divide(b)

    def __mod__(self, x: Any) -> Tensor:
        return self.remainder(x)

    def __rmod__(self, x: Any) -> Tensor:
        a, b = self._operands(x, reverse=True)
        return a.remainder(b)

    def __neg__(self) -> Tensor:
        return self.neg()

    def __abs__(self) -> Tensor:
        return self.abs()

    def __and__(self, x: Any) -> Tensor:
        return self.bitwise_and(x)

    def __or__(self, x: Any) -> Tensor:
        return self.bitwise_or(x)

    def __xor__(self, x: Any) -> Tensor:
        return self.bitwise_xor(x)

    def __rand__(self, x: Any) -> Tensor:
        return self.bitwise_and(x)

    def __ror__(self, x: Any) -> Tensor:
        return self.bitwise_or(x)

    def __rxor__(self, x: Any) -> Tensor:
        return self.bitwise_xor(x)

    def __invert__(self) -> Tensor:
        return self.bitwise_not()

    def __lshift__(self, x: Any) -> Tensor:
        return self.bitwise_left_shift(x)

    def __rshift__(self, x: Any) -> Tensor:
        return self.bitwise_right_shift(x)


def _integer_pow(base: Tensor, exponent: Tensor) -> Tensor:
    """Exact integer power by squaring, one step per exponent bit (wrapping like torch on overflow);
    a negative exponent gives 0, except for bases 1 and -1."""
    result = base._const_like(1)
    e = exponent.abs()
    b = base
    for _ in range(base.dtype.bits if base.dtype.bits < 64 else 63):
        result = (e & 1)._binary(Op.CMPNE, 0)._select(result * b, result)
        b = b * b
        e = e >> 1
    negative = exponent < 0
    odd = (exponent & 1)._binary(Op.CMPNE, 0)
    small = (base == 1)._select(1, (base == -1)._select(odd._select(-1, 1), 0)).cast(base.dtype)
    return negative._select(small, result)


def _pow_grad(inputs: list[Tensor], out: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    """torch's gradients of a ** b: b * a^(b-1) (0 where b == 0), and a^b * log(a) (0 where a == 0 and b >= 0;
    NaN for a < 0)."""
    a, b = inputs
    da = (b == 0)._select(0.0, g * b * a.pow(b - 1))
    db = (a == 0).logical_and(b >= 0)._select(0.0, g * out * a.log())
    return da, db


def _power_by_squaring(x: Tensor, n: int) -> Tensor:
    result: Tensor | None = None
    base = x
    while n:
        if n & 1:
            result = base if result is None else result * base
        n >>= 1
        if n:
            base = base * base
    assert result is not None
    return result


def _zero_gradient(out: Tensor, x: Tensor) -> Tensor:
    """``out``, computed from ``x`` without a differentiable path, with torch's zero gradient for ``x`` (so it
    requires grad when x does, as in torch)."""
    from .autograd import with_gradient

    return with_gradient(out, (x,), lambda inputs, _, g: (inputs[0].zeros_like(),))


def _not_unless_nan(opposite: Tensor, with_floats: Callable[[], Tensor]) -> Tensor:
    """``a <= b`` as ``not (a > b)`` where the compared values are integers or bools: one comparison (a causal
    mask's ``key <= position`` in every attention kernel); floats need both, since NaN compares false either way."""
    node = opposite.node
    if node.op is Op.CMPLT and not node.src[0].dtype.is_float:
        return opposite.logical_not()
    return with_floats()
