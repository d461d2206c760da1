"""Activations, scans, logical reductions, vector norms, bmm/outer and einsum, written with the primitives.

Activations with more than one operation compute float16 and bfloat16 in float32 and round once (as torch does).
Piecewise functions select with WHERE and feed each branch only the values it is meant for, so that the branch
not taken can neither overflow nor turn its zero gradient into NaN.

Scans (cumsum, cumprod) are *blocked triangular reductions*: a row of n splits into blocks of
``_SCAN_BLOCK``; inside a block, element i reduces the elements j <= i of an expanded (block, block) view (a
masked REDUCE that fuses into one kernel); the block totals are scanned the same way (recursively), shifted by
one and combined back. O(n * block) work in a handful of kernels; rows up to ``2 * _SCAN_BLOCK`` use one
triangular reduction.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .autograd import with_gradient
from .ir import dtypes
from .ir.node import Node
from .ir.ops import Op
from .tensor_math import compute_types
from .tensor_reduce import pick_dims, pick_keepdim, sqrt_zero_grad

if TYPE_CHECKING:
    from .tensor import Tensor

_SCAN_BLOCK = 64


class NNMixin:
    __slots__ = ()
    node: Node

    # ---- activations ----

    def relu6(self) -> Tensor:
        """min(max(x, 0), 6); the gradient is 0 at both corners, as in torch."""
        return _hardtanh(self, 0, 6)  # type: ignore[arg-type]

    def hardtanh(self, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
        if min_val > max_val:
            raise ValueError(f"hardtanh: min_val ({min_val}) cannot be greater than max_val ({max_val})")
        return _hardtanh(self, min_val, max_val)  # type: ignore[arg-type]

    def leaky_relu(self, negative_slope: float = 0.01) -> Tensor:
        x: Tensor = self._floating()  # type: ignore[attr-defined]
        return (x > 0)._select(x, x * negative_slope)

    def elu(self, alpha: float = 1.0) -> Tensor:
        """x for x > 0, alpha * (exp(x) - 1) below."""
        x, out = compute_types(self)  # type: ignore[arg-type]
        pos = x > 0
        return pos._select(x, pos._select(0.0, x).expm1() * alpha).cast(out)

    def gelu(self, approximate: str = "none") -> Tensor:
        """x * Phi(x) with Phi the standard normal CDF: exactly, by erf, or by torch's tanh formula."""
        x, out = compute_types(self)  # type: ignore[arg-type]
        if approximate == "none":
            return (x * 0.5 * ((x * math.sqrt(0.5)).erf() + 1)).cast(out)
        if approximate == "tanh":
            inner = (x + x * x * x * 0.044715) * math.sqrt(2 / math.pi)
            return (x * 0.5 * (inner.tanh() + 1)).cast(out)
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', not {approximate!r}")

    def silu(self) -> Tensor:
        """x * sigmoid(x) (swish)."""
        x, out = compute_types(self)  # type: ignore[arg-type]
        return (x * x.sigmoid()).cast(out)

    def hardsigmoid(self) -> Tensor:
        """relu6(x + 3) / 6."""
        x, out = compute_types(self)  # type: ignore[arg-type]
        return (_hardtanh(x + 3, 0, 6) * (1 / 6)).cast(out)

    def hardswish(self) -> Tensor:
        """x * relu6(x + 3) / 6 (MobileNetV3)."""
        x, out = compute_types(self)  # type: ignore[arg-type]
        return (x * _hardtanh(x + 3, 0, 6) * (1 / 6)).cast(out)

    def softplus(self, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
        """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold."""
        x, out = compute_types(self)  # type: ignore[arg-type]
        bx = x * beta
        linear = bx > threshold
        soft = linear._select(0.0, bx).exp().log1p() * (1 / beta)
        return linear._select(x, soft).cast(out)

    def mish(self) -> Tensor:
        """x * tanh(softplus(x))."""
        x, out = compute_types(self)  # type: ignore[arg-type]
        return (x * x.softplus().tanh()).cast(out)

    def glu(self, dim: int = -1) -> Tensor:
        """Gated linear unit: split ``dim`` in halves a, b and return a * sigmoid(b)."""
        me: Tensor = self  # type: ignore[assignment]
        if me.ndim == 0:
            raise RuntimeError("glu does not support 0-d tensors")
        d = me._axis(dim)
        if me.shape[d] % 2:
            raise RuntimeError(f"glu: halving dimension must be even, but dimension {d} is size {me.shape[d]}")
        half = me.shape[d] // 2
        a, b = me.split([half, half], d)
        x, out = compute_types(a)
        return (x * compute_types(b)[0].sigmoid()).cast(out)

    def lerp(self, end: Any, weight: Any) -> Tensor:
        """self + weight * (end - self), computed from the nearer end as torch does (exact at weight 0 and 1)."""
        start, stop = self._operands(end)  # type: ignore[attr-defined]
        w = weight.cast(start.dtype) if self._is_tensor(weight) else start._const_like(weight)  # type: ignore
        diff = stop - start
        near_start = w.abs() < 0.5
        return near_start._select(start + w * diff, stop - diff * (1 - w))

    # ---- scans ----

    def cumsum(self, dim: Any = None, dtype: Any = None, *, axis: Any = None) -> Tensor:
        """Running sums along ``dim`` (integers and bools sum in int64, half types in float32)."""
        return _scan_dim(self, Op.ADD, dim, axis, dtype, "cumsum")  # type: ignore[arg-type]

    def cumprod(self, dim: Any = None, dtype: Any = None, *, axis: Any = None) -> Tensor:
        """Running products along ``dim`` (exact zeros in the input get torch's gradient: REDUCE's product rule)."""
        return _scan_dim(self, Op.MUL, dim, axis, dtype, "cumprod")  # type: ignore[arg-type]

    # ---- logical reductions and norms ----

    def any(self, dim: Any = None, keepdim: bool | None = None, *, axis: Any = None,
            keepdims: bool | None = None) -> Tensor:  # fmt: skip
        """Whether any element is nonzero (NaN counts); bool, or uint8 for a uint8 input, as in torch."""
        me: Tensor = self  # type: ignore[assignment]
        dims, keep = pick_dims(dim, axis, me.ndim), pick_keepdim(keepdim, keepdims)
        flag = me if me.dtype == dtypes.bool_ else me != 0
        out = flag._reduce(Op.MAX, dims, keep)
        return out.cast(dtypes.uint8) if me.dtype == dtypes.uint8 else out

    def all(self, dim: Any = None, keepdim: bool | None = None, *, axis: Any = None,
            keepdims: bool | None = None) -> Tensor:  # fmt: skip
        """Whether every element is nonzero; True for an empty input."""
        me: Tensor = self  # type: ignore[assignment]
        dims, keep = pick_dims(dim, axis, me.ndim), pick_keepdim(keepdim, keepdims)
        zero = me.logical_not()
        out = zero._reduce(Op.MAX, dims, keep).logical_not()
        return out.cast(dtypes.uint8) if me.dtype == dtypes.uint8 else out

    def count_nonzero(self, dim: Any = None, *, axis: Any = None) -> Tensor:
        me: Tensor = self  # type: ignore[assignment]
        return (me != 0).sum(pick_dims(dim, axis, me.ndim))

    def norm(self, p: Any = "fro", dim: Any = None, keepdim: bool | None = None, dtype: Any = None, *,
             axis: Any = None, keepdims: bool | None = None) -> Tensor:  # fmt: skip
        """The vector p-norm over ``dim`` (all elements by default): p = 'fro' or 2, 1, inf, -inf, 0 (the count
        of nonzeros) or any other number (sum |x|^p)^(1/p). Half types accumulate in float32."""
        me: Tensor = self  # type: ignore[assignment]
        x = me.cast(dtypes.to_dtype(dtype)) if dtype is not None else me
        if not x.dtype.is_float:
            raise TypeError(f"norm: expected a floating point input, got {x.dtype.name}; pass dtype=float32")
        dims, keepdim = pick_dims(dim, axis, x.ndim), pick_keepdim(keepdim, keepdims)
        work, out = compute_types(x)
        if p == "fro" or p == 2:
            result = sqrt_zero_grad((work * work).sum(dims, keepdim))
        elif p == "nuc":
            raise NotImplementedError("norm: the nuclear norm needs an SVD, which boltgrad does not have yet")
        elif isinstance(p, str):
            raise ValueError(f"norm: p must be a number, 'fro' or 'nuc', not {p!r}")
        elif p == math.inf:
            result = _where_abs(work).amax(dims, keepdim)
        elif p == -math.inf:
            result = _where_abs(work).amin(dims, keepdim)
        elif p == 0:
            result = (work != 0).cast(work.dtype).sum(dims, keepdim)
        elif p == 1:
            result = work.abs().sum(dims, keepdim)
        else:
            total = work.abs().pow(float(p)).sum(dims, keepdim)
            result = with_gradient(total.pow(1.0 / float(p)), (total,), functools.partial(_root_grad, float(p)))
        return result.cast(out)

    # ---- linear algebra ----

    def bmm(self, mat2: Tensor) -> Tensor:
        """Batched matrix product of (b, n, m) and (b, m, p) tensors (no broadcasting, as in torch)."""
        me: Tensor = self  # type: ignore[assignment]
        if me.ndim != 3 or mat2.ndim != 3:
            raise RuntimeError(f"bmm: expected 3-d tensors, got shapes {me.shape} and {tuple(mat2.shape)}")
        if me.shape[0] != mat2.shape[0] or me.shape[2] != mat2.shape[1]:
            raise RuntimeError(f"bmm: shapes {me.shape} and {mat2.shape} don't match: batch sizes must be equal "
                               f"and {me.shape[2]} must equal {mat2.shape[1]}")  # fmt: skip
        return me.matmul(mat2)

    def outer(self, vec2: Tensor) -> Tensor:
        """The (n, m) table of products of two 1-d tensors."""
        me: Tensor = self  # type: ignore[assignment]
        if me.ndim != 1 or vec2.ndim != 1:
            raise RuntimeError(f"outer: expected 1-d tensors, got shapes {me.shape} and {tuple(vec2.shape)}")
        return me.reshape(-1, 1) * vec2.reshape(1, -1)

    def ger(self, vec2: Tensor) -> Tensor:
        return self.outer(vec2)


def _hardtanh(x: Tensor, lo: float, hi: float) -> Tensor:
    """clamp(x, lo, hi) with torch's gradient: 0 outside (lo, hi), corners included; NaN passes through."""
    return (x <= lo)._select(x._const_like(lo), (x >= hi)._select(x._const_like(hi), x))


def _root_grad(p: float, inputs: list[Tensor], out: Tensor, g: Tensor) -> tuple[Tensor]:
    # d/ds s^(1/p) = s^(1/p) / (p s), 0 where s == 0 (as torch's norm gradient)
    (total,) = inputs
    return ((total == 0)._select(0.0, g * out / (total * p)),)


def _where_abs(x: Tensor) -> Tensor:
    return (x < 0)._select(-x, x)


# ---- scans ----


def _scan_dim(x: Tensor, op: Op, dim: Any, axis: Any, dtype: Any, name: str) -> Tensor:
    if dim is not None and axis is not None:
        raise TypeError(f"{name}: give dim or axis, not both")
    d = dim if dim is not None else axis
    if d is None:
        raise TypeError(f"{name}() missing the dimension to scan along: pass dim")
    if dtype is not None:
        x = x.cast(dtypes.to_dtype(dtype))
    elif not x.dtype.is_float:
        x = x.cast(dtypes.int64)
    out_dtype = x.dtype
    if x.dtype.is_float and x.dtype.itemsize < 4:
        x = x.cast(dtypes.float32)
    if x.ndim == 0:
        x._axis(d)  # validates dim
        return x.cast(out_dtype)
    axis_ = x._axis(d)
    last = x.ndim - 1
    order = list(range(x.ndim))
    order[axis_], order[last] = order[last], order[axis_]
    moved = x.permute(order)
    return _scan_last(moved, op).permute(order).cast(out_dtype)


def _scan_last(x: Tensor, op: Op) -> Tensor:
    """Inclusive scan (ADD or MUL) along the last dim: blocked triangular reductions."""
    n = x.shape[-1]
    if n <= 2 * _SCAN_BLOCK:
        return _triangular(x, op)
    b = _SCAN_BLOCK
    nb = -(-n // b)
    identity = 0 if op is Op.ADD else 1
    lead = [(0, 0)] * (x.ndim - 1)
    blocks = x.pad(lead + [(0, nb * b - n)], value=identity).reshape(x.shape[:-1] + (nb, b))  # (..., nb, b)
    inner = _triangular(blocks, op)
    totals = blocks._reduce(op, (blocks.ndim - 1,), False)  # (..., nb)
    # what comes before each block: the inclusive scan of the totals, shifted right by one
    before = _scan_last(totals, op).pad(lead + [(1, 0)], value=identity).shrink([None] * (x.ndim - 1) + [(0, nb)])
    combined = inner._binary(op, before.unsqueeze(-1))
    return combined.reshape(x.shape[:-1] + (nb * b,)).shrink([None] * (x.ndim - 1) + [(0, n)])


def _triangular(x: Tensor, op: Op) -> Tensor:
    """out[..., i] = reduce(x[..., j] for j <= i): one masked reduction over an (n, n) view."""
    from .tensor_create import arange_node

    n = x.shape[-1]
    idx = x._from_node(arange_node(n, dtypes.int64, x.device))
    keep = idx.reshape(1, n) <= idx.reshape(n, 1)  # (i, j)
    terms = keep._select(x.unsqueeze(-2), 0 if op is Op.ADD else 1)  # (..., i, j)
    return terms._reduce(op, (terms.ndim - 1,), False)


# ---- einsum ----

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def einsum(equation: Any, *operands: Any) -> Tensor:
    """Einstein summation, as torch.einsum: ``einsum("bij,bjk->bik", a, b)``.

    Subscripts are letters; a letter repeated within one operand takes its diagonal; ``...`` stands for
    broadcast dims (right-aligned across operands); without ``->`` the output is ``...`` followed by the letters
    that appear once, in alphabetical order (uppercase first). Dims of size 1 broadcast. Also accepts the
    operands as one list and torch's sublist form ``einsum(a, [0, 1], b, [1, 2], [0, 2])``.

    Operands are contracted left to right; each step is a broadcast multiply and a sum over the letters no later
    operand or the output needs, which fuses into one reduction kernel (as matmul does).
    """
    from .tensor import Tensor

    if not isinstance(equation, str):
        equation, operands = _sublist_equation((equation, *operands))
    if len(operands) == 1 and isinstance(operands[0], list | tuple):
        operands = tuple(operands[0])
    if not operands:
        raise ValueError("einsum(): must provide at least one operand")
    for t in operands:
        if not isinstance(t, Tensor):
            raise TypeError(f"einsum(): operands must be Tensors, got {type(t).__name__}")
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    specs = lhs.split(",")
    if len(specs) != len(operands):
        raise ValueError(f"einsum(): {len(specs)} subscripts in {equation!r} but {len(operands)} operands")
    labeled = [_labels(spec, t.ndim, equation) for spec, t in zip(specs, operands)]
    n_ellipsis = max((sum(1 for lab in labs if lab.startswith(".")) for labs in labeled), default=0)
    # ellipsis dims are right-aligned: an operand with k of them takes the last k of the n_ellipsis labels
    aligned = []
    for labs in labeled:
        k = sum(1 for lab in labs if lab.startswith("."))
        aligned.append([f".{int(lab[1:]) + n_ellipsis - k}" if lab.startswith(".") else lab for lab in labs])
    output = _output_labels(rhs if arrow else None, aligned, n_ellipsis, equation)

    dt = operands[0].dtype
    for t in operands[1:]:
        dt = dtypes.promote_types(dt, t.dtype)
    work = dtypes.float32 if dt.is_float and dt.itemsize < 4 else dt
    terms = [_diagonals(t.cast(work), labs) for t, labs in zip(operands, aligned)]
    _check_sizes(terms, equation)

    current, cur_labels = terms[0]
    for i in range(len(terms)):
        needed = set(output).union(*(labs for _, labs in terms[i + 1 :]))
        union = cur_labels + ([lab for lab in terms[i][1] if lab not in cur_labels] if i else [])
        kept = [lab for lab in union if lab in needed]
        summed = [lab for lab in union if lab not in needed]
        # summed labels go last, so each step reduces its trailing axes as matmul does
        product = _align(current, cur_labels, kept + summed)
        if i:
            product = product * _align(*terms[i], kept + summed)
        if summed:
            product = product._reduce(Op.ADD, tuple(range(len(kept), len(kept) + len(summed))), False)
        current, cur_labels = product, kept
    return current.permute([cur_labels.index(lab) for lab in output]).cast(dt)


def _labels(spec: str, ndim: int, equation: str) -> list[str]:
    """The subscripts of one operand as a list: letters, and '.0', '.1', ... for the dims under '...'."""
    if spec.count("...") > 1 or spec.replace("...", "").count(".") > 0:
        raise ValueError(f"einsum(): malformed ellipsis in {equation!r}")
    head, dots, tail = spec.partition("...")
    for ch in head + tail:
        if ch not in _LETTERS:
            raise ValueError(f"einsum(): subscripts must be letters [a-zA-Z], got {ch!r} in {equation!r}")
    n_named = len(head) + len(tail)
    if (not dots and n_named != ndim) or (dots and n_named > ndim):
        raise ValueError(f"einsum(): subscripts {spec!r} do not match an operand of {ndim} dims in {equation!r}")
    middle = [f".{i}" for i in range(ndim - n_named)] if dots else []
    return list(head) + middle + list(tail)


def _output_labels(rhs: str | None, inputs: list[list[str]], n_ellipsis: int, equation: str) -> list[str]:
    every = [lab for labs in inputs for lab in labs]
    ellipsis = [f".{i}" for i in range(n_ellipsis)]
    if rhs is None:
        once = sorted({lab for lab in every if not lab.startswith(".") and every.count(lab) == 1})
        return ellipsis + once
    head, dots, tail = rhs.partition("...")
    if "." in head + tail:
        raise ValueError(f"einsum(): malformed ellipsis in the output of {equation!r}")
    # without '...' in the output, the ellipsis dims are summed away (as torch does)
    out = list(head) + (ellipsis if dots else []) + list(tail)
    for lab in head + tail:
        if lab not in _LETTERS:
            raise ValueError(f"einsum(): subscripts must be letters [a-zA-Z], got {lab!r} in {equation!r}")
        if lab not in every:
            raise ValueError(f"einsum(): output subscript {lab!r} does not appear in the inputs of {equation!r}")
        if out.count(lab) > 1:
            raise ValueError(f"einsum(): output subscript {lab!r} appears more than once in {equation!r}")
    return out


def _diagonals(t: Tensor, labels: list[str]) -> tuple[Tensor, list[str]]:
    """Fold each repeated label of one operand into its diagonal (a view: pad, reshape and shrink)."""
    labels = list(labels)
    while True:
        repeated = next((lab for lab in labels if labels.count(lab) > 1), None)
        if repeated is None:
            return t, labels
        i = labels.index(repeated)
        j = labels.index(repeated, i + 1)
        n = t.shape[i]
        if t.shape[j] != n:
            raise ValueError(f"einsum(): subscript {repeated!r} is repeated with sizes {n} and {t.shape[j]}")
        rest = [a for a in range(t.ndim) if a not in (i, j)]
        moved = t.permute(rest + [i, j])
        lead = moved.shape[:-2]
        flat = moved.reshape(lead + (n * n,)).pad([(0, 0)] * len(lead) + [(0, n)])
        t = flat.reshape(lead + (n, n + 1)).shrink([None] * len(lead) + [None, (0, 1)]).reshape(lead + (n,))
        labels = [labels[a] for a in rest] + [repeated]


def _check_sizes(terms: list[tuple[Tensor, list[str]]], equation: str) -> None:
    sizes: dict[str, int] = {}
    for t, labels in terms:
        for lab, s in zip(labels, t.shape):
            known = sizes.get(lab, 1)
            if s != 1 and known != 1 and s != known:
                shown = "..." if lab.startswith(".") else repr(lab)
                raise ValueError(f"einsum(): subscript {shown} has sizes {known} and {s} in {equation!r}")
            sizes[lab] = max(known, s) if s != 1 else known


def _align(t: Tensor, labels: list[str], union: list[str]) -> Tensor:
    present = [lab for lab in union if lab in labels]
    moved = t.permute([labels.index(lab) for lab in present])
    return moved.reshape([t.shape[labels.index(lab)] if lab in labels else 1 for lab in union])


def _sublist_equation(args: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
    """torch's ``einsum(op0, sublist0, op1, sublist1, ..., [out])`` -> an equation string and the operands."""

    def letters(sub: Sequence[Any]) -> str:
        text = ""
        for s in sub:
            if s is Ellipsis:
                text += "..."
            elif isinstance(s, int) and 0 <= s < len(_LETTERS):
                text += _LETTERS[s]
            else:
                raise ValueError(f"einsum(): sublist subscripts must be ints in [0, 52) or ..., got {s!r}")
        return text

    operands = args[0::2]
    subs = args[1::2]
    out = None
    if len(args) % 2:
        operands, out = args[0:-1:2], args[-1]
    equation = ",".join(letters(s) for s in subs[: len(operands)])
    if out is not None:
        equation += "->" + letters(out)
    return equation, tuple(operands)
