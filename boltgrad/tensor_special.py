"""Special functions written with the primitives and accurate to a few ulp: expm1, log1p, sigmoid, tanh, erf,
erfc, atan, atan2 (and the inverse trigonometric and hyperbolic functions built on them).

Three rules hold for every function here:

- float16 and bfloat16 compute in float32 and round once at the end (as torch does); integers compute in the
  default float type. float64 has coefficient sets of its own, accurate to about 1e-16.
- Every branch of a WHERE stays finite, and so do its derivatives, for every input. The branch not taken gets a
  zero gradient, but 0 * inf is NaN, so the input of each branch is first moved into that branch's own range
  with another WHERE (``small._select(x, 0)``), never computed on values it cannot take.
- Relative accuracy near 0 is kept: expm1 is a Taylor polynomial for |x| < 1/2, log1p uses Kahan's
  ``log(u) * x / (u - 1)`` with ``u = 1 + x`` (the rounding of u cancels), and tanh is built on expm1.

The polynomials (``_Poly``) were fitted for this project: near-minimax relative-error fits (Lawson's iteratively
reweighted least squares on Chebyshev nodes, in 50-digit arithmetic with mpmath as the reference), written as
monomials in a variable ``s`` mapped onto [-1, 1]. Measured maximum errors against mpmath, float32 (float64):
erf 6e-8 absolute (2e-16), atan 1.2e-7 relative (2e-16).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from .autograd import with_gradient
from .ir import dtypes
from .ir.node import Node
from .tensor_math import compute_types

if TYPE_CHECKING:
    from .tensor import Tensor


class _Poly(NamedTuple):
    """p(s) with s = (u - mid) / half, coefficients from the highest power down."""

    mid: float
    half: float
    coeffs: tuple[float, ...]

    def __call__(self, u: Tensor) -> Tensor:
        s = u * (1.0 / self.half) - self.mid / self.half
        return _horner(s, self.coeffs)


def _horner(x: Tensor, coeffs: tuple[float, ...]) -> Tensor:
    acc = x * coeffs[0] + coeffs[1]
    for c in coeffs[2:]:
        acc = acc * x + c
    return acc


# erf(x) / x as a polynomial in u = x^2 on [0, 1]; relative errors of the fits 1.2e-9 and 1.3e-19
_ERF_SMALL_32 = _Poly(0.5, 0.5, (
    1.2271572317680904e-06, -1.7668859554932633e-05, 0.0002175187053928426, -0.0022854198051677974,
    0.019852495209893264, -0.14053609721261573, 0.9654687387765503,
))  # fmt: skip
_ERF_SMALL_64 = _Poly(0.5, 0.5, (
    1.45147575173671e-14, -3.807865660807518e-13, 9.167706915535155e-12, -2.0352284518414063e-10,
    4.115800485070844e-09, -7.511569286131776e-08, 1.2233827384107206e-06, -1.7537169441126875e-05,
    0.00021751715604158742, -0.002285485561144113, 0.019852496688983708, -0.1405360890227171, 0.9654687386698673,
))  # fmt: skip
# erfcx(x) = erfc(x) * exp(x^2) as a polynomial in t = 1/x, for 1 <= x <= 4 (float32; 1.5e-8) and 1 <= x <= 6
# (float64; 4.1e-16). Beyond those, erfc(x) is below half an ulp of 1 and erf(x) rounds to 1.
_ERFCX_32 = _Poly(0.625, 0.375, (
    4.502885913240289e-06, -2.717057937006498e-06, -2.9622719558642466e-05, 0.00012408513945472255,
    -0.0003469565657150344, 0.00046001417091219023, 0.0023076991407112064, -0.024242850480303852,
    0.14335643863617506, 0.3059529892291644,
))  # fmt: skip
_ERFCX_64 = _Poly(0.5833333333333334, 0.4166666666666667, (
    1.6128902035635593e-11, 1.5403337524120017e-09, -4.35746413948499e-09, 3.027707439361759e-10,
    1.0515490714731821e-08, -1.881853187657382e-08, 4.09741938942101e-08, -9.4611003751624e-08,
    1.311569681945737e-07, 1.31992592384048e-09, -6.657552233693425e-07, 2.5831342489592365e-06,
    -6.497319536307573e-06, 1.0882635318052595e-05, -4.046780287681179e-06, -5.528649260779759e-05,
    0.0002656054877653958, -0.0007383867433294944, 0.0010344322250729948, 0.0028211318978954877,
    -0.030831050508399946, 0.16536269001261444, 0.2897221163234641,
))  # fmt: skip
# atan(a) / a as a polynomial in u = a^2 for 0 <= a <= tan(pi/8); relative errors 6e-10 and 3.3e-17
_ATAN_32 = _Poly(0.08578643762690495, 0.08578643762690495, (
    -2.803826891131424e-07, 4.324615458058576e-06, -6.97994949866113e-05, 0.0012335813343894043,
    -0.025900195622227697, 0.9727918179467526,
))  # fmt: skip
_ATAN_64 = _Poly(0.08578643762690495, 0.08578643762690495, (
    4.570002431215494e-13, -6.378718899401213e-12, 8.891231156787902e-11, -1.274763529141164e-09,
    1.8605792105609257e-08, -2.780682332395326e-07, 4.296549734433792e-06, -6.980070655106896e-05,
    0.001233591879009692, -0.02590019545981344, 0.9727918173603545,
))  # fmt: skip
_TAN_PI_8 = 0.41421356237309503
# expm1(x) / x = sum x^k / (k+1)! for |x| < 1/2: 8 terms leave 1.1e-8 (float32), 15 terms 1.5e-18 (float64)
_EXPM1_32 = tuple(1 / math.factorial(k + 1) for k in reversed(range(8)))
_EXPM1_64 = tuple(1 / math.factorial(k + 1) for k in reversed(range(15)))


def _is64(x: Tensor) -> bool:
    return x.dtype == dtypes.float64


def _sign_bit(x: Tensor) -> Tensor:
    """True for negative numbers and -0.0 (1 / -0.0 is -inf); no gradient flows through a comparison."""
    return (x < 0).logical_or((x == 0).logical_and(x.reciprocal() < 0))


def expm1(x: Tensor) -> Tensor:
    small = x.abs() < 0.5
    xs = small._select(x, 0.0)
    xl = small._select(0.0, x)
    series = xs * _horner(xs, _EXPM1_64 if _is64(x) else _EXPM1_32)
    return small._select(series, xl.exp() - 1)


def log1p(x: Tensor) -> Tensor:
    # Kahan: u = 1 + x is rounded, but log(u) / (u - 1) is smooth in u, so log(u) * (x / (u - 1)) is accurate.
    # Where u rounds to 1 the answer is x; where x is inf, x / (u - 1) would be inf / inf. The ratio's gradient
    # cancels the rounding of u in log(u)'s (so both stay), except at x = -1, where it would be -inf * 0.
    u = x + 1
    d = u - 1
    exact = d == 0
    special = exact.logical_or(x == math.inf)
    ratio = special._select(1.0, x) / special._select(1.0, d)
    ratio = (u == 0)._select(ratio.detach(), ratio)
    return exact._select(x, u.log() * ratio)


def sigmoid(x: Tensor) -> Tensor:
    neg = x < 0
    e = neg._select(x, -x).exp()  # exp(-|x|) in (0, 1]: never overflows
    r = (e + 1).reciprocal()
    return neg._select(e * r, r)


def tanh(x: Tensor) -> Tensor:
    # tanh(|x|) = -expm1(-2|x|) / (2 + expm1(-2|x|)): accurate near 0, exactly 1 for large |x| (no inf / inf)
    neg = x < 0
    e = expm1(neg._select(x, -x) * 2)
    t = -e / (e + 2)
    return neg._select(-t, t)


def erf(x: Tensor) -> Tensor:
    big64 = _is64(x)
    small = x.abs() < 1
    xs = small._select(x, 0.0)
    series = xs * (_ERF_SMALL_64 if big64 else _ERF_SMALL_32)(xs * xs)
    return small._select(series, _erf_tail(x, small))


def _erf_tail(x: Tensor, small: Tensor) -> Tensor:
    """erf(x) for |x| >= 1: sign(x) * (1 - exp(-x^2) * erfcx(|x|))."""
    cap = 6.0 if _is64(x) else 4.0
    neg = x < 0
    ax = neg._select(-x, x)
    xl = small._select(1.0, (ax > cap)._select(cap, ax))
    tail = 1 - (-(xl * xl)).exp() * (_ERFCX_64 if _is64(x) else _ERFCX_32)(xl.reciprocal())
    return neg._select(-tail, tail)


def erfc(x: Tensor) -> Tensor:
    """1 - erf(x); for x >= 1 computed directly, keeping its relative accuracy where erf(x) rounds to 1."""
    cap = 27.5 if _is64(x) else 10.5  # erfc underflows to 0 beyond these
    far = x >= 1
    xl = far._select((x > cap)._select(cap, x), 1.0)
    direct = (-(xl * xl)).exp() * _erfcx_far(xl)
    return far._select((x > cap)._select(0.0, direct), 1 - erf(x))


def _erfcx_far(x: Tensor) -> Tensor:
    """erfcx(x) for x >= 1: the fitted polynomial up to its range, then the continued fraction
    erfcx(x) = 1 / (sqrt(pi) (x + (1/2) / (x + 1 / (x + (3/2) / (x + ...))))), which converges fast there."""
    fit_end, terms = (6.0, 14) if _is64(x) else (4.0, 8)
    inside = x <= fit_end
    near = inside._select(x, 1.0)
    far = inside._select(fit_end, x)
    fitted = (_ERFCX_64 if _is64(x) else _ERFCX_32)(near.reciprocal())
    f = far
    for k in range(terms, 0, -1):
        f = far + (k / 2) / f
    return inside._select(fitted, (f * math.sqrt(math.pi)).reciprocal())


def _atan_unit(r: Tensor) -> Tensor:
    """atan(r) for 0 <= r <= 1: atan(r) = pi/4 + atan((r - 1) / (r + 1)) above tan(pi/8)."""
    upper = r > _TAN_PI_8
    z = upper._select((r - 1) / (r + 1), r)
    near = z * (_ATAN_64 if _is64(r) else _ATAN_32)(z * z)
    return upper._select(near + r._const_like(math.pi / 4), near)  # (not near + 0: atan(-0.0) is -0.0)


def atan(x: Tensor) -> Tensor:
    neg = _sign_bit(x)
    a = neg._select(-x, x)
    big = a > 1
    r = big._select(big._select(a, 1.0).reciprocal(), a)  # atan(a) = pi/2 - atan(1/a) for a > 1
    t = _atan_unit(r)
    t = big._select(math.pi / 2 - t, t)
    return neg._select(-t, t)


def atan2(y: Tensor, x: Tensor) -> Tensor:
    """The angle of (x, y), in [-pi, pi], with C's signed zeros and infinities."""
    neg_y, neg_x = _sign_bit(y), _sign_bit(x)
    ay, ax = neg_y._select(-y, y), neg_x._select(-x, x)
    steep = ay > ax
    num, den = steep._select(ax, ay), steep._select(ay, ax)
    both_inf = ax.isinf().logical_and(ay.isinf())
    # num <= den, so den == 0 means 0 / 0: the angle is 0 (or pi); both infinite: the diagonal, ratio 1
    ratio = both_inf._select(1.0, num) / (den == 0).logical_or(both_inf)._select(1.0, den)
    t = _atan_unit(ratio)
    t = steep._select(math.pi / 2 - t, t)
    t = neg_x._select(math.pi - t, t)
    return neg_y._select(-t, t)


class SpecialMixin:
    __slots__ = ()
    node: Node

    def _special(self, fn: Callable[[Tensor], Tensor]) -> Tensor:
        x, out = compute_types(self)  # type: ignore[arg-type]
        return fn(x).cast(out)

    def expm1(self) -> Tensor:
        """exp(x) - 1, accurate for small |x|."""
        return self._special(expm1)

    def log1p(self) -> Tensor:
        """log(1 + x), accurate for small |x|."""
        return self._special(log1p)

    def sigmoid(self) -> Tensor:
        """1 / (1 + exp(-x)), computed without overflow on either side."""
        return self._special(sigmoid)

    def tanh(self) -> Tensor:
        return self._special(tanh)

    def erf(self) -> Tensor:
        """The error function 2/sqrt(pi) * integral_0^x exp(-t^2) dt (absolute error ~6e-8 in float32)."""
        return self._special(erf)

    def erfc(self) -> Tensor:
        """1 - erf(x), with relative accuracy for large x."""
        return self._special(erfc)

    def atan(self) -> Tensor:
        return self._special(atan)

    def arctan(self) -> Tensor:
        return self.atan()

    def atan2(self, other: Tensor | float) -> Tensor:
        """The angle of the point (other, self): torch.atan2(input=y, other=x), in [-pi, pi]."""
        y, x = self._operands(other)  # type: ignore[attr-defined]
        y, out = compute_types(y)
        x, _ = compute_types(x)
        return with_gradient(atan2(y, x), (y, x), _atan2_grad).cast(out)

    def arctan2(self, other: Tensor | float) -> Tensor:
        return self.atan2(other)

    def asin(self) -> Tensor:
        """atan2(x, sqrt((1 - x)(1 + x))): NaN outside [-1, 1]."""
        x, out = compute_types(self)  # type: ignore[arg-type]
        return with_gradient(atan2(x, ((1 - x) * (1 + x)).sqrt()), (x,), _asin_grad).cast(out)

    def acos(self) -> Tensor:
        x, out = compute_types(self)  # type: ignore[arg-type]
        return with_gradient(atan2(((1 - x) * (1 + x)).sqrt(), x), (x,), _acos_grad).cast(out)

    def arcsin(self) -> Tensor:
        return self.asin()

    def arccos(self) -> Tensor:
        return self.acos()

    def sinh(self) -> Tensor:
        """(e^x - e^-x) / 2 from expm1, so small |x| keeps its relative accuracy."""
        x, out = compute_types(self)  # type: ignore[arg-type]
        return _sinh(x).cast(out)

    def cosh(self) -> Tensor:
        x, out = compute_types(self)  # type: ignore[arg-type]
        a = (x < 0)._select(-x, x)  # (abs's gradient rule would turn an infinite gradient into NaN)
        moderate = a < 20  # beyond, e^-|x| / 2 is below an ulp of e^|x| / 2
        e = expm1(moderate._select(a, 0.0))
        near = e * e / ((e + 1) * 2) + 1  # (e^a + e^-a) / 2 with e = e^a - 1: its gradient keeps sinh's accuracy
        return moderate._select(near, (a - math.log(2)).exp()).cast(out)  # e^a / 2 without early overflow

    def asinh(self) -> Tensor:
        """sign(x) * log1p(|x| + x^2 / (1 + sqrt(1 + x^2)))."""
        x, out = compute_types(self)  # type: ignore[arg-type]
        neg = _sign_bit(x)
        a = neg._select(-x, x)
        huge = a > 1e18 if not _is64(x) else a > 1e150  # x^2 would overflow: asinh(a) = log(2a)
        am = huge._select(1.0, a)
        moderate = log1p(am + am * am / (1 + (1 + am * am).sqrt()))
        r = huge._select((huge._select(a, 1.0)).log() + math.log(2), moderate)
        return neg._select(-r, r).cast(out)

    def acosh(self) -> Tensor:
        """log(x + sqrt(x^2 - 1)) = log1p((x - 1) + sqrt((x - 1)(x + 1))); NaN below 1."""
        x, out = compute_types(self)  # type: ignore[arg-type]
        huge = x > (1e18 if not _is64(x) else 1e150)
        xm = huge._select(1.0, x)
        moderate = log1p((xm - 1) + ((xm - 1) * (xm + 1)).sqrt())
        r = huge._select(huge._select(x, 1.0).log() + math.log(2), moderate)
        return with_gradient((x < 1)._select(math.nan, r), (x,), _acosh_grad).cast(out)

    def atanh(self) -> Tensor:
        """log1p(2x / (1 - x)) / 2; +-inf at +-1, NaN beyond."""
        x, out = compute_types(self)  # type: ignore[arg-type]
        neg = x < 0
        a = neg._select(-x, x)
        r = log1p(a * 2 / (1 - a)) * 0.5
        return with_gradient(neg._select(-r, r), (x,), _atanh_grad).cast(out)

    def arcsinh(self) -> Tensor:
        return self.asinh()

    def arccosh(self) -> Tensor:
        return self.acosh()

    def arctanh(self) -> Tensor:
        return self.atanh()


def _sinh(x: Tensor) -> Tensor:
    # sinh(a) = (e + e / (e + 1)) / 2 with e = expm1(a), a = |x|: no cancellation near 0; large a overflows
    # where sinh does (e / (e + 1) is then inf / inf, so that branch reads a clamped value)
    neg = x < 0
    a = neg._select(-x, x)
    e = expm1(a)
    finite = e < 1e30 if not _is64(x) else e < 1e300
    ef = finite._select(e, 1.0)
    r = finite._select((ef + ef / (ef + 1)) * 0.5, e * 0.5)
    return neg._select(-r, r)


# torch's gradient formulas for the functions above, where the gradients of the primitives they are built from
# would give NaN instead of torch's infinities (asin at +-1) or zeros (atan2 at the origin)


def _asin_grad(inputs: list[Tensor], out: Tensor, g: Tensor) -> tuple[Tensor]:
    (x,) = inputs
    return (g * ((1 - x) * (1 + x)).rsqrt(),)


def _acos_grad(inputs: list[Tensor], out: Tensor, g: Tensor) -> tuple[Tensor]:
    (x,) = inputs
    return (-g * ((1 - x) * (1 + x)).rsqrt(),)


def _acosh_grad(inputs: list[Tensor], out: Tensor, g: Tensor) -> tuple[Tensor]:
    (x,) = inputs
    return (g * ((x - 1) * (x + 1)).rsqrt(),)


def _atanh_grad(inputs: list[Tensor], out: Tensor, g: Tensor) -> tuple[Tensor]:
    (x,) = inputs
    return (g / ((1 - x) * (1 + x)),)


def _atan2_grad(inputs: list[Tensor], out: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    y, x = inputs
    r2 = x * x + y * y
    scale = (r2 == 0)._select(0.0, g / r2)  # at the origin torch passes 0
    return scale * x, -scale * y
