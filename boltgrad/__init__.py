"""boltgrad: PyTorch-style tensors, compiled lazily into fused kernels.

>>> import boltgrad
>>> from boltgrad import Tensor
>>> y = (Tensor([1.0, -2.0, 3.0]) * 2).relu().sum()
>>> y.item()
8.0
"""

from . import stats
from .autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .device.registry import Device_ as Device
from .errors import CompileError, DeviceLost, DeviceUnavailable
from .ir.dtypes import (
    DType,
    bfloat16,
    bool_,
    float16,
    float32,
    float64,
    int8,
    int16,
    int32,
    int64,
    promote_types,
    uint8,
    uint32,
)
from .jit import jit
from .tensor import Tensor, empty_cache, synchronize
from .tensor_create import bernoulli, manual_seed, multinomial, normal, randperm
from .tensor_nn import einsum
from .tensor_reduce import cat, hstack, stack, vstack
from .variable import Variable

half = float16
float = float32  # noqa: A001 - torch's alias
double = float64
long = int64
int = int32  # noqa: A001
bool = bool_  # noqa: A001
short = int16

tensor = Tensor
zeros = Tensor.zeros
ones = Tensor.ones
full = Tensor.full
empty = Tensor.empty
arange = Tensor.arange
eye = Tensor.eye
rand = Tensor.rand
randn = Tensor.randn
randint = Tensor.randint
linspace = Tensor.linspace


def zeros_like(t: Tensor, dtype=None, device=None) -> Tensor:
    return t.zeros_like(dtype=dtype, device=device)


def ones_like(t: Tensor, dtype=None, device=None) -> Tensor:
    return t.ones_like(dtype=dtype, device=device)


def full_like(t: Tensor, fill_value, dtype=None, device=None) -> Tensor:
    return t.full_like(fill_value, dtype=dtype, device=device)


def rand_like(t: Tensor, dtype=None, device=None) -> Tensor:
    return t.rand_like(dtype=dtype, device=device)


def randn_like(t: Tensor, dtype=None, device=None) -> Tensor:
    return t.randn_like(dtype=dtype, device=device)


def where(condition: Tensor, x, y) -> Tensor:
    if not isinstance(condition, Tensor):
        raise TypeError(f"where: the condition must be a Tensor, got {type(condition).__name__}")
    return condition._select(x, y)


def pow(input, exponent) -> Tensor:  # noqa: A001 - torch's name
    """``input ** exponent``; input may be a Python number when exponent is a Tensor, as in torch."""
    if isinstance(input, Tensor):
        return input.pow(exponent)
    if not isinstance(exponent, Tensor):
        raise TypeError(f"pow: expected a Tensor as the base or the exponent, got {type(input).__name__}")
    return exponent.__rpow__(input)


def _function_of(name: str):
    """``boltgrad.NAME(x, ...)`` as ``x.NAME(...)``, as torch has both."""
    method = getattr(Tensor, name)

    def function(input: Tensor, *args, **kwargs):  # noqa: A002 - torch's parameter name
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: expected a Tensor as the first argument, got {type(input).__name__}")
        return method(input, *args, **kwargs)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = method.__doc__
    return function


_FUNCTIONS = """abs add sub mul div floor_divide remainder fmod neg sign exp exp2 expm1 log log2 log1p sqrt rsqrt
sin cos tan sigmoid tanh relu reciprocal square floor ceil round trunc clamp clip maximum minimum logical_and
logical_or logical_xor logical_not bitwise_and bitwise_or bitwise_xor bitwise_not isnan isinf isfinite eq ne lt
le gt ge sum mean prod amax amin argmax argmin max min matmul dot reshape permute transpose flatten unflatten
squeeze unsqueeze flip split chunk
erf erfc atan atan2 arctan arctan2 asin acos arcsin arccos sinh cosh asinh acosh atanh arcsinh arccosh arctanh lerp
cumsum cumprod any all norm count_nonzero bmm outer ger
gather scatter scatter_add scatter_reduce index_select index_add index_fill index_put masked_fill masked_select
masked_scatter nonzero take_along_dim tril triu diag diagonal sort argsort msort topk roll repeat_interleave
tile std var logsumexp softmax log_softmax clone detach movedim moveaxis swapaxes swapdims""".split()
for _name in _FUNCTIONS:
    globals()[_name] = _function_of(_name)
del _name


__all__ = [
    "Tensor", "Variable", "Device", "DType", "stats", "manual_seed", "synchronize", "empty_cache", "cat", "stack",
    "hstack", "vstack",
    "where", "matmul",
    "einsum", "randperm", "bernoulli", "multinomial", "normal",
    "CompileError", "DeviceLost", "DeviceUnavailable", "promote_types",
    "bool_", "int8", "uint8", "int16", "int32", "uint32", "int64", "float16", "bfloat16", "float32", "float64",
]  # fmt: skip

_SUBMODULES = ("nn", "optim", "data")


def __getattr__(name: str):
    """``boltgrad.nn``, ``boltgrad.optim`` and ``boltgrad.data`` without importing them, as with torch; they load
    on first use so that ``import boltgrad`` stays fast."""
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'boltgrad' has no attribute {name!r}")
