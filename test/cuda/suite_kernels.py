"""The CUDA source of every kernel the op suite makes, collected without a GPU.

Each device test of the op-suite modules is called with ``device="NULL:CUDA"``: the NULL device runs nothing,
but lowers every kernel for a GPU and renders it with the CUDA renderer. Values are not checked (NULL computes
none), so the comparisons fail and are ignored; what counts is that every kernel the test makes gets rendered.
"""

from __future__ import annotations

import importlib.util
import inspect
import itertools
from pathlib import Path

import pytest

import boltgrad
from boltgrad import Tensor
from boltgrad.engine import realize
from boltgrad.render.cuda import CUDARenderer

OPS_DIR = Path(__file__).resolve().parents[1] / "ops"
# the op suite's per-device modules (test_dtypes brings float16/bfloat16, test_gather data-dependent reads)
SUITE = ("test_ops", "test_reduce", "test_movement", "test_dtypes", "test_gather", "test_math_extra")
DEVICE = "NULL:CUDA"


def _calls(fn):
    """Every argument combination of a test's parametrize marks, with ``device`` set to NULL:CUDA."""
    names = list(inspect.signature(fn).parameters)
    axes: dict[str, list] = {}
    for mark in getattr(fn, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        argnames, argvalues = mark.args[0], mark.args[1]
        argnames = [a.strip() for a in argnames.split(",")] if isinstance(argnames, str) else list(argnames)
        values = [v.values if hasattr(v, "values") else v for v in argvalues]
        values = [v if len(argnames) > 1 else (v,) for v in values]
        key = ",".join(argnames)
        axes[key] = [dict(zip(argnames, v)) for v in values]
    if "device" not in names or any(n not in {a for k in axes for a in k.split(",")} for n in names):
        return []  # not a per-device test, or it needs fixtures
    combos = itertools.product(*axes.values())
    return [{k: (DEVICE if k == "device" else v) for part in combo for k, v in part.items()} for combo in combos]


def collect_suite_sources() -> dict[str, str]:
    """{kernel name: CUDA source} for every kernel of the suite's device tests."""
    for name in SUITE:
        spec = importlib.util.spec_from_file_location(f"nvcc_suite_{name}", OPS_DIR / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for attr in dir(module):
            fn = getattr(module, attr)
            if not attr.startswith("test_") or not callable(fn):
                continue
            for kwargs in _calls(fn):
                try:
                    fn(**kwargs)
                except (Exception, pytest.skip.Exception, pytest.fail.Exception):
                    pass  # NULL computes no values: the comparisons fail; the kernels were rendered before
    _matmuls()
    _rows()
    compiled = realize._compiled.items()  # a kernel of no iterations (empty tensors) has no source: never compiled
    return {ck.name: ck.source for (device, _, _), ck in compiled if device == DEVICE and ck.source}


def _matmuls() -> None:
    """Matmuls large enough for the shared-memory tiles (the suite's shapes are smaller): float32 (FMA tiles),
    float16 and bfloat16 (tensor cores), a transposed operand with a bias and relu epilogue, batched, and sizes
    the tiles do not divide (k odd too); half casts of float32 operands as the prologue of tensor-core tiles."""
    shapes = [((256, 256), (256, 256)), ((130, 70), (70, 200)), ((3, 96, 64), (3, 64, 80)), ((100, 77), (77, 72))]
    outs = []
    for a_shape, b_shape in shapes:
        for dtype in (boltgrad.float32, boltgrad.float16, boltgrad.bfloat16):
            a = boltgrad.ones(a_shape, device=DEVICE, dtype=dtype).contiguous().realize()
            b = boltgrad.ones(b_shape, device=DEVICE, dtype=dtype).contiguous().realize()
            outs.append(a @ b)
    x, w, bias = (boltgrad.ones(s, device=DEVICE).contiguous().realize() for s in ((200, 96), (72, 96), (72,)))
    outs.append((x @ w.T + bias).relu())
    for dtype in (boltgrad.float16, boltgrad.bfloat16):
        outs.append(((x.cast(dtype) @ w.cast(dtype).T).float() + bias).relu())
    Tensor.realize_all(outs)


def _rows() -> None:
    """Row kernels (the suite's rows are shorter than the CUDA target's minimum): softmax, log-softmax and layer
    norm over rows of 1000 and 4096, float32 and float16, and their gradients."""
    outs = []
    for shape in ((64, 1000), (8, 4096)):
        for dtype in (boltgrad.float32, boltgrad.float16):
            x = boltgrad.ones(shape, device=DEVICE, dtype=dtype).contiguous().realize().requires_grad_()
            w = boltgrad.ones(shape[-1], device=DEVICE, dtype=dtype).contiguous().realize().requires_grad_()
            y = x.softmax(-1) + x.log_softmax(-1) + boltgrad.nn.functional.layer_norm(x, shape[-1], w)
            y.sum().backward()
            outs += [y, x.grad, w.grad]
    Tensor.realize_all(outs)


def cuda_unit(sources: dict[str, str]) -> str:
    return CUDARenderer.preamble + "\n\n".join(sources[name] for name in sorted(sources)) + "\n"
