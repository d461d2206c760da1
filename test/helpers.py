"""The oracle helper: run one function on PyTorch tensors and on boltgrad tensors, and compare what comes out.

    check(lambda x, y: (x * y).relu(), (3, 4), (4,))                # random float32 inputs of these shapes
    check(lambda x: x // 3, (5,), dtype="int8", low=-9, high=9)       # random int8 in [-9, 9]
    check(lambda x: x.T.exp(), np.array([[1.0, 2.0]]), device="PYTHON")

``fn`` receives torch tensors once and boltgrad tensors once, so it is written with the API both share; module
functions come from ``lib(t)`` (``lib(x).cat([x, y])`` is ``torch.cat`` or ``boltgrad.cat``). Where the two APIs
differ on purpose, ``torch_fn`` is the oracle; it may return numpy arrays (for what torch cannot compute, such
as uint32 arithmetic). Outputs may be a tensor, Python scalars or nested tuples and lists of them; shapes,
dtype names and values must agree.

Compiling costs tens of milliseconds per compiler call, so ``with batch():`` defers the boltgrad side of every
``check`` inside it to one realize (one compile) and reports every case that differs at the end.

Only the forward pass is compared for now. Gradients will be one more option (``grad=True``): the inputs are
made in ``_make_inputs`` (where ``requires_grad`` goes) and every comparison goes through ``_compare_leaf``, so
backward needs a second pass over the same pieces, not a second helper.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

import boltgrad
import boltgrad.device.registry
from boltgrad import Tensor

# BOLT_TEST_REMOTE=REMOTE:host:port adds a device server's device to every test that runs on each device
DEVICES = ("CPU", "PYTHON") + ((os.environ["BOLT_TEST_REMOTE"],) if os.environ.get("BOLT_TEST_REMOTE") else ())
# CUDA joins where it works (BOLT_TEST_CUDA=1 demands it: a test then fails, not skips, if it does not)
if os.environ.get("BOLT_TEST_CUDA") == "1" or boltgrad.device.registry.probe("CUDA").ok:
    DEVICES += ("CUDA",)
# these op-suite modules also run on PYTHON_GPU: GPU-lowered kernels run with GPU semantics, no GPU needed
GPU_EMULATED_MODULES = {"test_ops", "test_reduce", "test_movement", "test_dtypes", "test_gather"}


def on_devices(fn: Callable[..., Any]) -> Any:
    """Decorate a test that takes ``device``: it runs on each of DEVICES (and PYTHON_GPU in some modules)."""
    emulated = fn.__module__.rsplit(".", 1)[-1] in GPU_EMULATED_MODULES
    return pytest.mark.parametrize("device", DEVICES + (("PYTHON_GPU",) if emulated else ()))(fn)


# default tolerance by output dtype: (atol, rtol); integers and bools always compare exactly
TOLERANCE = {
    "float64": (1e-12, 1e-10),
    "float32": (1e-5, 1e-5),
    "float16": (1e-3, 1e-3),
    "bfloat16": (1e-2, 1e-2),
}


def lib(t: Any) -> Any:
    """The module that goes with a tensor: ``torch`` for a torch tensor, ``boltgrad`` for ours."""
    return torch if isinstance(t, torch.Tensor) else boltgrad


def dtype_name(t: Any) -> str:
    """'float32', 'bool', ... for a torch tensor, a numpy array or a boltgrad tensor."""
    if isinstance(t, torch.Tensor):
        return str(t.dtype).removeprefix("torch.")
    if isinstance(t, np.ndarray | np.generic):
        return t.dtype.name
    return t.dtype.name


def to_numpy(t: Any) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        t = t.detach()
        return (t.float() if t.dtype == torch.bfloat16 else t).numpy()
    if isinstance(t, np.ndarray | np.generic):
        return np.asarray(t)
    return t.numpy()


def random_array(shape: tuple[int, ...], dtype: str, low: float, high: float, rng: np.random.Generator) -> np.ndarray:
    """Random values of ``dtype`` in [low, high] (integers inclusive); bfloat16 comes as float32 values that
    bfloat16 holds exactly, so torch and boltgrad start from the same numbers."""
    if dtype == "bool":
        return np.asarray(rng.random(shape) < 0.5)  # (a 0-d comparison gives a numpy scalar, not an array)
    info = np.iinfo(dtype) if dtype not in ("float16", "float32", "float64", "bfloat16") else None
    if info is not None:
        lo, hi = max(int(low), info.min), min(int(high), info.max)
        return rng.integers(lo, hi, size=shape, endpoint=True).astype(dtype)
    values = rng.uniform(low, high, size=shape)
    if dtype == "bfloat16":
        return torch.from_numpy(values.astype(np.float32)).bfloat16().float().numpy()
    return values.astype(dtype)


@dataclass
class _Case:
    description: str
    ours: list[tuple[str, Any]]  # (path, boltgrad tensor or Python value)
    want: list[tuple[str, Any]]  # (path, torch tensor, numpy array or Python value)
    atol: float | None
    rtol: float | None


@dataclass
class _Batch:
    cases: list[_Case] = field(default_factory=list)


_active: list[_Batch] = []

# One realize per batch is the point of batching; False realizes case by case (to tell apart a failure of the
# batch as a whole, such as a compile error, from the cases inside it).
REALIZE_TOGETHER = True


@contextlib.contextmanager
def batch() -> Iterator[None]:
    """Realize every ``check`` inside the block together (one compiler call), then compare them all."""
    b = _Batch()
    _active.append(b)
    try:
        yield
    finally:
        _active.pop()
    _finish(b.cases)


def check(
    fn: Callable[..., Any],
    *inputs: Any,
    device: str = "CPU",
    dtype: str = "float32",
    atol: float | None = None,
    rtol: float | None = None,
    low: float = -2,
    high: float = 2,
    torch_fn: Callable[..., Any] | None = None,
    seed: int = 0,
    grad: bool = False,
) -> None:
    """Compare ``fn`` on boltgrad (on ``device``) with ``torch_fn or fn`` on PyTorch.

    ``inputs``: a tuple is a shape (random values of ``dtype`` in [low, high]); a numpy array is used as is;
    anything else (a Python scalar, a list, a dtype) is passed to both sides unchanged. ``atol``/``rtol`` default
    by the output dtype (``TOLERANCE``); ``atol=0, rtol=0`` demands equal values (NaN equals NaN).

    ``grad=True`` also compares gradients: every floating point input tensor requires grad, the float outputs
    are reduced to a scalar with fixed random weights (so each output element gets its own gradient), and the
    inputs' ``.grad`` must match torch's.
    """
    torch_inputs, our_inputs = _make_inputs(inputs, device, dtype, low, high, seed)
    leaves = [i for i, t in enumerate(torch_inputs) if grad and isinstance(t, torch.Tensor) and t.is_floating_point()]
    for i in leaves:
        torch_inputs[i].requires_grad_(True)
        our_inputs[i].requires_grad_(True)
    torch_out = (torch_fn or fn)(*torch_inputs)
    our_out = fn(*our_inputs)
    want = _flatten(torch_out)
    ours = _flatten(our_out)
    if leaves:
        _backward_both(torch_out, our_out, seed)
        for i in leaves:
            torch_grad = torch_inputs[i].grad
            want.append((f"grad[{i}]", torch_grad if torch_grad is not None else torch.zeros_like(torch_inputs[i])))
            our_grad = our_inputs[i].grad
            ours.append((f"grad[{i}]", our_grad if our_grad is not None else our_inputs[i].detach() * 0))
    args = ", ".join(f"{dtype_name(a)}{tuple(a.shape)}" if _is_tensor(a) else repr(a) for a in torch_inputs)
    case = _Case(f"{_name_of(fn)}({args}) on {device}", ours, want, atol, rtol)
    if _active:
        _active[-1].cases.append(case)
    else:
        _finish([case])


def _backward_both(torch_out: Any, our_out: Any, seed: int) -> None:
    """Backpropagate sum(out * w) over every float output, with the same random w on both sides."""
    rng = np.random.default_rng(seed + 1)
    pairs = [
        (t, o)
        for (_, t), (_, o) in zip(_flatten(torch_out), _flatten(our_out))
        if isinstance(t, torch.Tensor) and t.is_floating_point() and t.requires_grad
    ]
    torch_loss, our_loss = None, None
    for t, o in pairs:
        w = rng.uniform(0.5, 1.5, tuple(t.shape)).astype(np.float32)
        tl = (t.float() * torch.from_numpy(w)).sum()
        ol = (o.float() * Tensor(w, device=o.device)).sum()
        torch_loss = tl if torch_loss is None else torch_loss + tl
        our_loss = ol if our_loss is None else our_loss + ol
    if torch_loss is not None:
        torch_loss.backward()
        our_loss.backward()


def _make_inputs(
    inputs: tuple[Any, ...], device: str, dtype: str, low: float, high: float, seed: int
) -> tuple[list[Any], list[Any]]:
    rng = np.random.default_rng(seed)
    torch_inputs: list[Any] = []
    our_inputs: list[Any] = []
    for spec in inputs:
        if isinstance(spec, tuple) and all(isinstance(s, int) for s in spec):
            spec = random_array(spec, dtype, low, high, rng)
            if dtype == "bfloat16":
                torch_inputs.append(torch.from_numpy(spec.copy()).bfloat16())
                our_inputs.append(Tensor(spec, device=device).cast(boltgrad.bfloat16))
                continue
        if isinstance(spec, np.ndarray):
            torch_inputs.append(torch.from_numpy(spec.copy()))
            our_inputs.append(Tensor(spec, device=device))
        else:
            torch_inputs.append(spec)
            our_inputs.append(spec)
    return torch_inputs, our_inputs


def _name_of(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__name__", "fn")
    if name == "<lambda>":
        code = fn.__code__
        return f"<lambda at {code.co_filename.rsplit('/', 1)[-1]}:{code.co_firstlineno}>"
    return name


def _is_tensor(x: Any) -> bool:
    return isinstance(x, torch.Tensor | Tensor | np.ndarray | np.generic)


def _flatten(out: Any, path: str = "out") -> list[tuple[str, Any]]:
    """Tensors and Python values with their place in the output (``out[1][0]``)."""
    if isinstance(out, tuple | list) and not isinstance(out, torch.Size):
        leaves = [leaf for i, x in enumerate(out) for leaf in _flatten(x, f"{path}[{i}]")]
        return leaves or [(path, type(out).__name__ + "()")]
    if isinstance(out, torch.Size):
        return [(path, tuple(out))]
    return [(path, out)]


def _finish(cases: list[_Case]) -> None:
    # realize every boltgrad output of every case in one go: one schedule, one compiler call
    groups = [cases] if REALIZE_TOGETHER else [[case] for case in cases]
    for group in groups:
        Tensor.realize_all([x for case in group for _, x in case.ours if isinstance(x, Tensor)])
    problems = []
    for case in cases:
        err = _compare_case(case)
        if err:
            problems.append(f"{case.description}: {err}")
    if problems:
        raise AssertionError(f"{len(problems)} of {len(cases)} cases differ from torch:\n" + "\n".join(problems))


def _compare_case(case: _Case) -> str | None:
    our_paths = [p for p, _ in case.ours]
    want_paths = [p for p, _ in case.want]
    if our_paths != want_paths:
        return f"output structure {our_paths} != torch's {want_paths}"
    for (path, got), (_, want) in zip(case.ours, case.want):
        err = _compare_leaf(got, want, case.atol, case.rtol)
        if err:
            return f"{path}: {err}"
    return None


def _compare_leaf(got: Any, want: Any, atol: float | None, rtol: float | None) -> str | None:
    if _is_tensor(want):
        if not isinstance(got, Tensor):
            return f"expected a tensor, got {type(got).__name__} {got!r}"
        if tuple(got.shape) != tuple(want.shape):
            return f"shape {tuple(got.shape)} != torch's {tuple(want.shape)}"
        if dtype_name(got) != dtype_name(want):
            return f"dtype {dtype_name(got)} != torch's {dtype_name(want)}"
        return _compare_values(got.numpy(), to_numpy(want), dtype_name(want), atol, rtol)
    if isinstance(got, Tensor):
        return f"expected {type(want).__name__} {want!r}, got a tensor"
    if type(got) is not type(want):
        return f"type {type(got).__name__} ({got!r}) != torch's {type(want).__name__} ({want!r})"
    if isinstance(want, float) and math.isnan(want):
        return None if math.isnan(got) else f"{got!r} != nan"
    if isinstance(want, float) and atol != 0:
        a, r = TOLERANCE["float32"]
        return None if math.isclose(got, want, rel_tol=rtol or r, abs_tol=atol or a) else f"{got!r} != {want!r}"
    return None if got == want else f"{got!r} != {want!r}"


def _compare_values(got: np.ndarray, want: np.ndarray, dt: str, atol: float | None, rtol: float | None) -> str | None:
    if got.size == 0:
        return None
    exact = dt not in TOLERANCE or (atol == 0 and rtol == 0)
    if exact:
        same = (got == want) | (np.isnan(got) & np.isnan(want)) if got.dtype.kind == "f" else got == want
    else:
        a, r = TOLERANCE[dt]
        a, r = a if atol is None else atol, r if rtol is None else rtol
        with np.errstate(invalid="ignore"):
            same = np.isclose(got.astype(np.float64), want.astype(np.float64), atol=a, rtol=r, equal_nan=True)
    if np.all(same):
        return None
    bad = [tuple(int(i) for i in ix) for ix in np.argwhere(~np.asarray(same))] if got.ndim else [()]
    shown = "; ".join(f"at {ix}: got {got[ix]!r}, torch {want[ix]!r}" for ix in bad[:4])
    return f"{len(bad)} of {got.size} values differ (dtype {dt}): {shown}" + (" ..." if len(bad) > 4 else "")


# ---- IDX (MNIST) files


def idx_file(magic: int, dims: tuple[int, ...], data: bytes) -> bytes:
    return struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims) + data


def write_mnist(folder, split="train", n=5, gz=False, images_data=None, images=None, labels=None):
    """Write an MNIST-style split of ``n`` images (a fixed pattern, or the given uint8 arrays) to ``folder``;
    ``images_data`` replaces the image bytes (to write a broken file). Returns (images, labels)."""
    prefix = "train" if split == "train" else "t10k"
    if images is None:
        images = (np.arange(n * 28 * 28, dtype=np.uint32).reshape(n, 28, 28) % 251).astype(np.uint8)
    if labels is None:
        labels = np.arange(n) % 10
    files = {
        f"{prefix}-images-idx3-ubyte": idx_file(0x803, (n, 28, 28), images_data or images.astype(np.uint8).tobytes()),
        f"{prefix}-labels-idx1-ubyte": idx_file(0x801, (n,), labels.astype(np.uint8).tobytes()),
    }
    for name, content in files.items():
        if gz:
            with gzip.open(os.path.join(folder, name + ".gz"), "wb") as f:
                f.write(content)
        else:
            with open(os.path.join(folder, name), "wb") as f:
                f.write(content)
    return images.astype(np.uint8), labels


def same(name: str, *args, **kwargs):
    """A function of the tensors that calls ``F.name`` on ours and torch's ``F.name`` on torch's, with the same
    extra arguments: ``check(same("softmax", dim=1), (3, 4))``."""
    import torch.nn.functional as torch_functional

    import boltgrad.nn.functional as bolt_functional

    def call(*tensors):
        lib = torch_functional if isinstance(tensors[0], torch.Tensor) else bolt_functional
        return getattr(lib, name)(*tensors, *args, **kwargs)

    call.__name__ = f"{name}({', '.join([*map(repr, args), *(f'{k}={v!r}' for k, v in kwargs.items())])})"
    return call
