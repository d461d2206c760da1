"""The workloads: what each framework computes, on which inputs, and how much memory or arithmetic that is.

A workload names its inputs (made by numpy from a seed derived from the workload's name, so every peer gets
the same numbers) and one function per framework family. The key ``"tensor"`` serves every family whose tensors
have PyTorch-style methods (boltgrad, torch, tinygrad); a family's own key overrides it. Adding a workload is
one ``Workload(...)`` entry in ``WORKLOADS``:

    Workload("relu_16M", (Input((N_16M,)),), {"tensor": lambda a: a.relu(), "numpy": lambda a: np.maximum(a, 0)},
             bytes_moved=2 * 4 * N_16M)

For the lazy frameworks a function only builds the graph; the peer adapter (``peers.py``) realizes it and waits.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

N_16M = 16 * 1024 * 1024
F32 = 4  # bytes per float32


@dataclass(frozen=True)
class Input:
    shape: tuple[int, ...]
    low: float = -1.0  # uniform on [low, high); normal=True draws a standard normal instead
    high: float = 1.0
    normal: bool = False


@dataclass(frozen=True)
class Workload:
    name: str
    inputs: tuple[Input, ...]
    # family ("boltgrad", "numpy", "torch", "tinygrad" or "tensor") -> fn; None: that family skips the workload
    impls: dict[str, Callable[..., Any] | None]
    bytes_moved: int = 0  # the least DRAM traffic the workload needs (inputs read once, output written once)
    flops: int = 0  # floating-point operations, for GFLOP/s
    atol: float | None = None  # how far a peer's output may be from numpy's; default 1e-4 of its largest value

    def impl_for(self, family: str) -> Callable[..., Any] | None:
        if family in self.impls:
            return self.impls[family]
        return self.impls.get("tensor") if family != "numpy" else None

    def make_inputs(self) -> list[np.ndarray]:
        """float32 arrays, the same in every process: the seed is a hash of the workload's name."""
        rng = np.random.default_rng(zlib.crc32(self.name.encode()))
        arrays = []
        for spec in self.inputs:
            if spec.normal:
                arrays.append(rng.standard_normal(spec.shape, dtype=np.float32))
            else:
                arrays.append(rng.random(spec.shape, dtype=np.float32) * (spec.high - spec.low) + spec.low)
        return arrays


# ---------------------------------------------------------------- the functions, per family


def chain_tensor(a, b):
    return ((a * 2 + 1).relu().exp() * b + a).sqrt()


def chain_numpy(a, b):
    return np.sqrt(np.exp(np.maximum(a * 2 + 1, 0)) * b + a)  # one temporary per step, as numpy does


def softmax_boltgrad(x):
    e = (x - x.max(1, keepdim=True).values).exp()
    return e / e.sum(1, keepdim=True)


def softmax_numpy(x):
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def small_kernel_tensor(x):
    return (x * 3 + 1).relu().sum(1)


def small_kernel_numpy(x):
    return np.maximum(x * 3 + 1, 0).sum(1)


# ---- training-shaped workloads: forward and backward, the gradients are the result


def _grad_inputs(family: str, tensors: list[Any]) -> list[Any]:
    """The input tensors as leaves that collect gradients, with last call's gradients dropped."""
    for t in tensors:
        t.grad = None
        if family == "tinygrad":
            t.requires_grad = True
        else:
            t.requires_grad_(True)
    return tensors


def _finish_grads(family: str, grads: list[Any]) -> Any:
    """One tensor the peer's runner waits for; the lazy frameworks compute the others in the same realize."""
    return grads[0] if family == "torch" else grads[0].realize(*grads[1:])


def _with_grad(family: str):
    if family == "torch":
        import torch

        return torch.enable_grad()
    import contextlib

    return contextlib.nullcontext()


def conv2d_train(family: str):
    def fn(x, w):
        with _with_grad(family):
            x, w = _grad_inputs(family, [x, w])
            out = _conv(family, x, w)
            (out * out).sum().backward()
            return _finish_grads(family, [w.grad, x.grad])

    return fn


def _conv(family: str, x, w):
    if family == "torch":
        import torch

        return torch.nn.functional.conv2d(x, w, padding=1)
    if family == "boltgrad":
        import boltgrad.nn.functional as F

        return F.conv2d(x, w, padding=1)
    return x.conv2d(w, padding=1)


def conv2d_forward(family: str):
    return lambda x, w: _conv(family, x, w)


def mlp_train(family: str):
    """One step's gradients of a 784-256-10 MLP on a batch of 128 (cross-entropy against soft targets)."""

    def fn(x, target, w1, b1, w2, b2):
        with _with_grad(family):
            w1, b1, w2, b2 = _grad_inputs(family, [w1, b1, w2, b2])
            logits = (x @ w1.T + b1).relu() @ w2.T + b2
            loss = -(logits.log_softmax(1) * target).sum(1).mean()
            loss.backward()
            return _finish_grads(family, [w1.grad, b1.grad, w2.grad, b2.grad])

    return fn


def matmul(a, b):
    return a @ b


TRAINING_FAMILIES = ("boltgrad", "torch", "tinygrad")


# ---------------------------------------------------------------- the list


WORKLOADS: list[Workload] = [
    Workload(
        "elementwise_chain_16M",
        (Input((N_16M,), 0.1, 1.0), Input((N_16M,), 0.1, 1.0)),
        {"tensor": chain_tensor, "numpy": chain_numpy},
        bytes_moved=3 * F32 * N_16M,
    ),
    Workload(
        "sum_16M",
        (Input((N_16M,)),),
        {"tensor": lambda a: a.sum(), "numpy": lambda a: a.sum()},
        bytes_moved=F32 * N_16M,
        atol=2.0,  # float32 sums of 16M values in different orders differ by ~0.1 (the sum is ~1e3)
    ),
    Workload(
        "sum_axis1_4096x4096",
        (Input((4096, 4096), normal=True),),
        {"tensor": lambda x: x.sum(1), "numpy": lambda x: x.sum(1)},
        bytes_moved=F32 * (4096 * 4096 + 4096),
    ),
    Workload(
        "softmax_4096x4096",
        (Input((4096, 4096), normal=True),),
        {"boltgrad": softmax_boltgrad, "tensor": lambda x: x.softmax(1), "numpy": softmax_numpy},
        bytes_moved=2 * F32 * 4096 * 4096,
    ),
    *[
        Workload(
            f"matmul_{n}",
            (Input((n, n), normal=True), Input((n, n), normal=True)),
            {"tensor": matmul, "numpy": matmul},
            flops=2 * n**3,
            atol=1e-3 * n**0.5,  # float32 dot products of n terms, summed in different orders
        )
        for n in (256, 512, 1024, 2048)
    ],
    Workload(  # tinygrad's default would take about half a minute a call here; its 256-2048 rows stand for it
        "matmul_4096",
        (Input((4096, 4096), normal=True), Input((4096, 4096), normal=True)),
        {"tensor": matmul, "numpy": matmul, "tinygrad": None},
        flops=2 * 4096**3,
        atol=1e-3 * 4096**0.5,
    ),
    Workload(
        "batched_matmul_16x256",
        (Input((16, 256, 256), normal=True), Input((16, 256, 256), normal=True)),
        {"tensor": matmul, "numpy": matmul},
        flops=2 * 16 * 256**3,
        atol=1e-2,
    ),
    Workload(
        "conv2d_32x3x32x32_k3",
        (Input((32, 3, 32, 32), normal=True), Input((32, 3, 3, 3), normal=True)),
        {f: conv2d_forward(f) for f in TRAINING_FAMILIES},
        flops=2 * 32 * 32 * 32 * 32 * 27,
        atol=1e-3,
    ),
    Workload(
        "conv2d_train_32x3x32x32_k3",
        (Input((32, 3, 32, 32), normal=True), Input((32, 3, 3, 3), normal=True)),
        {f: conv2d_train(f) for f in TRAINING_FAMILIES},
        flops=3 * 2 * 32 * 32 * 32 * 32 * 27,  # forward, input gradient, weight gradient
        atol=1.0,  # weight gradients are sums of 32K products of magnitude ~30
    ),
    Workload(
        "mlp_train_128x784_256_10",
        (
            Input((128, 784), 0.0, 1.0),
            Input((128, 10), 0.0, 0.2),
            Input((256, 784), -0.05, 0.05),
            Input((256,), -0.05, 0.05),
            Input((10, 256), -0.1, 0.1),
            Input((10,), -0.1, 0.1),
        ),
        {f: mlp_train(f) for f in TRAINING_FAMILIES},
        flops=3 * 2 * 128 * (784 * 256 + 256 * 10),
        atol=1e-4,
    ),
]

# The kernel that the first-call rows compile: small, so the time is the compiler's and the framework's, not
# the arithmetic's. Each first-call measurement runs it once in a fresh process.
FIRST_CALL = Workload(
    "first_call_kernel",
    (Input((64, 256)),),
    {"tensor": small_kernel_tensor, "numpy": small_kernel_numpy},
)

# Rows measured across processes rather than in one (see run.py): a cold compile, a warm start, the import.
PROCESS_ROWS = ("first_call_cold", "first_call_warm", "import")
PROCESS_GROUP = "first_call"  # the name --only uses for all three


def by_name(names: list[str] | None) -> tuple[list[Workload], bool]:
    """The workloads ``--only`` picked, and whether the first-call rows are in; raises ValueError naming the options."""
    if not names:
        return list(WORKLOADS), True
    known = {w.name: w for w in WORKLOADS}
    process_names = (PROCESS_GROUP, *PROCESS_ROWS)  # any of them runs all three rows: they share processes
    unknown = [n for n in names if n not in known and n not in process_names]
    if unknown:
        options = ", ".join([*known, PROCESS_GROUP])
        raise ValueError(f"unknown workload {', '.join(unknown)}; choose from: {options}")
    return [known[n] for n in names if n in known], any(n in process_names for n in names)
