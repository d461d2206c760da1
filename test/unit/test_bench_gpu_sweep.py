"""``python -m bench.gpu --sweep`` runs only on a lent GPU, so its code is checked here on PYTHON_GPU (GPU-lowered
kernels with GPU semantics): every GPU target it sweeps is valid, and a variant is compiled, run and checked
against torch. Values only; nothing about speed."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

import bench.gpu as bench_gpu
from boltgrad.codegen import gpu


def test_every_swept_target_is_valid():
    for variants in bench_gpu.SWEEP.values():
        for fields in variants:
            replace(gpu.CUDA_TARGET, **fields)  # GPUTarget checks its tiles split evenly over the threads


def test_a_sweep_runs_each_variant_with_fresh_compiles_and_checks_it(monkeypatch):
    monkeypatch.setattr(bench_gpu, "DEVICE", "PYTHON_GPU")
    monkeypatch.setitem(bench_gpu.SWEEP, "softmax", [{"reduce_block": 32}, {"reduce_block": 64}])
    rows_of = np.random.default_rng(0).standard_normal((3, 70)).astype(np.float32)
    rows = bench_gpu.sweep_targets(torch, {"softmax": (lambda t: t.softmax(-1), [rows_of], 1e-5)}, 0.0, "python_gpu")
    assert [r.name for r in rows] == ["  softmax: reduce_block=32", "  softmax: reduce_block=64"]
    assert all(r.ok for r in rows)
    (winner,) = bench_gpu.sweep_winners(rows)
    fastest = min(rows, key=lambda r: r.bolt_ms)
    assert winner.startswith(f"fastest softmax: {fastest.name.strip().split(': ')[1]} (")
    assert gpu.GPU_TARGETS["python_gpu"] is gpu.EMULATED_TARGET  # the default is back
