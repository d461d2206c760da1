"""Weight initialisation, as ``torch.nn.init``: each function fills a tensor in place and returns it.

    >>> import boltgrad
    >>> from boltgrad.nn import init
    >>> w = boltgrad.zeros(64, 32)
    >>> init.kaiming_uniform_(w, a=5**0.5).abs().max().item() <= 1 / 32**0.5
    True

Random values come from boltgrad's own generator (``boltgrad.manual_seed`` makes them repeatable), drawn inside
kernels on the tensor's device. A fill is realized at once, as torch's is eager; inside ``with batched():``
the fills wait and are realized together at the end of the block, which compiles one program instead of one per
tensor (layers use it in their constructors).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

from ..autograd import no_grad
from ..tensor import Tensor

__all__ = [
    "calculate_gain", "uniform_", "normal_", "zeros_", "ones_", "constant_", "eye_", "xavier_uniform_",
    "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "trunc_normal_", "orthogonal_", "batched",
]  # fmt: skip


class _Pending:
    depth = 0
    tensors: list[Tensor] = []


@contextlib.contextmanager
def batched() -> Iterator[None]:
    """Realize every fill made inside the block together when the block ends (blocks may nest)."""
    _Pending.depth += 1
    try:
        yield
    finally:
        _Pending.depth -= 1
        if _Pending.depth == 0:
            todo, _Pending.tensors = _Pending.tensors, []
            Tensor.realize_all(todo)


def _fill(tensor: Tensor, value: Tensor | float) -> Tensor:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"init: expected a Tensor, got {type(tensor).__name__}")
    with no_grad():
        tensor.assign(value)
    # an unrealized assign is not the leaf autograd knows, so the fill must be realized before the tensor is used
    if _Pending.depth:
        if all(t is not tensor for t in _Pending.tensors):
            _Pending.tensors.append(tensor)
    else:
        tensor.realize()
    return tensor


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The factor that keeps activations' variance steady through ``nonlinearity`` (torch's table)."""
    if nonlinearity in ("linear", "identity", "sigmoid") or nonlinearity.startswith("conv"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, int | float):
            raise ValueError(f"calculate_gain: negative_slope {slope!r} is not a number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _fans(tensor: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight laid out (out, in, *kernel), as torch computes them."""
    if tensor.ndim < 2:
        raise ValueError(f"init: fan in and fan out need a tensor of 2 or more dims, not shape {tensor.shape}")
    receptive = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _fan(tensor: Tensor, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"init: mode must be 'fan_in' or 'fan_out', not {mode!r}")
    fan_in, fan_out = _fans(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _uniform_values(tensor: Tensor, a: float, b: float) -> Tensor:
    return Tensor.rand(tensor.shape, device=tensor.device) * (b - a) + a


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, generator: Any = None) -> Tensor:
    """Fill with values drawn uniformly from [a, b)."""
    return _fill(tensor, _uniform_values(tensor, a, b))


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator: Any = None) -> Tensor:
    """Fill with values drawn from N(mean, std²)."""
    return _fill(tensor, Tensor.randn(tensor.shape, device=tensor.device) * std + mean)


def constant_(tensor: Tensor, val: float) -> Tensor:
    return _fill(tensor, val)


def zeros_(tensor: Tensor) -> Tensor:
    return _fill(tensor, 0.0)


def ones_(tensor: Tensor) -> Tensor:
    return _fill(tensor, 1.0)


def eye_(tensor: Tensor) -> Tensor:
    """Fill a 2-d tensor with the identity matrix."""
    if tensor.ndim != 2:
        raise ValueError(f"eye_: expected a 2-d tensor, got shape {tensor.shape}")
    return _fill(tensor, Tensor.eye(*tensor.shape, device=tensor.device))


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator: Any = None) -> Tensor:
    """U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot and Bengio, 2010)."""
    fan_in, fan_out = _fans(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return _fill(tensor, _uniform_values(tensor, -bound, bound))


def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator: Any = None) -> Tensor:
    """N(0, std²) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def kaiming_uniform_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator: Any = None) -> Tensor:  # fmt: skip
    """U(-bound, bound) with bound = gain * sqrt(3 / fan) (He et al., 2015); ``a`` is leaky_relu's slope.

    Linear and Conv layers use ``a=sqrt(5)``, which makes the bound 1 / sqrt(fan_in).
    """
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / _fan(tensor, mode))
    return _fill(tensor, _uniform_values(tensor, -bound, bound))


def kaiming_normal_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator: Any = None) -> Tensor:  # fmt: skip
    """N(0, std²) with std = gain / sqrt(fan)."""
    return normal_(tensor, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode)))


def trunc_normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0,
                  generator: Any = None) -> Tensor:  # fmt: skip
    """N(mean, std²) restricted to [a, b], drawn by inverting the normal CDF on a uniform draw."""
    if not a < b:
        raise ValueError(f"trunc_normal_: the lower bound a={a} must be below the upper bound b={b}")

    def cdf(x: float) -> float:  # of the standard normal
        return 0.5 * (1 + math.erf((x - mean) / std / math.sqrt(2)))

    lo, hi = 2 * cdf(a) - 1, 2 * cdf(b) - 1  # the bounds in erf's range (-1, 1)
    u = _uniform_values(tensor, lo, hi).cast("float32")
    values = _erfinv(u) * (std * math.sqrt(2)) + mean
    return _fill(tensor, values.clamp(a, b))


def _erfinv(x: Tensor) -> Tensor:
    """Inverse error function on (-1, 1): M. Giles' single-precision polynomials (2010), relative error ~1e-7."""
    w = -((1 - x) * (1 + x)).log()
    central = w - 2.5
    p = central * 0 + 2.81022636e-08
    for c in (3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087, -0.00125372503, -0.00417768164,
              0.246640727, 1.50140941):  # fmt: skip
        p = p * central + c
    tail = w.clamp(min=5).sqrt() - 3  # clamped so the unused branch stays finite
    q = tail * 0 - 0.000200214257
    for c in (0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773, -0.0076224613, 0.00943887047,
              1.00167406, 2.83297682):  # fmt: skip
        q = q * tail + c
    return p.where(w < 5, q) * x


def orthogonal_(tensor: Tensor, gain: float = 1.0, generator: Any = None) -> Tensor:
    """A (semi-)orthogonal matrix (Saxe et al., 2013): the Q of a QR factorisation of a normal draw.

    The draw is boltgrad's; the factorisation runs on the host with numpy, which must be installed.
    """
    import numpy as np

    if tensor.ndim < 2:
        raise ValueError(f"orthogonal_: expected a tensor of 2 or more dims, got shape {tensor.shape}")
    rows = tensor.shape[0]
    cols = tensor.numel() // rows
    flat = Tensor.randn(rows, cols, dtype="float64", device=tensor.device).numpy()
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q = q * np.sign(np.diag(r))  # makes the factorisation unique, so Q is uniformly distributed
    if rows < cols:
        q = q.T
    values = Tensor(np.ascontiguousarray(q * gain), device=tensor.device).reshape(tensor.shape)
    return _fill(tensor, values)


def default_(weight: Tensor, bias: Tensor | None, fan_in: int) -> None:
    """torch's default initialization of a Linear or convolution: kaiming-uniform weight (a = sqrt(5)) and a
    bias uniform in +-1/sqrt(fan_in), drawn together."""
    with batched():
        kaiming_uniform_(weight, a=math.sqrt(5))
        if bias is not None:
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            uniform_(bias, -bound, bound)
