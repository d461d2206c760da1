"""A few-second smoke test, collected first: the package imports, a fused kernel compiles and runs on the CPU,
the PYTHON device interprets the same program, and the torch oracle helper works."""

from __future__ import annotations

import numpy as np
from helpers import check

import boltgrad
from boltgrad import Tensor


def test_cpu_kernel_runs():
    y = (Tensor([1.0, -2.0, 3.0]) * 2).relu().sum()
    assert y.item() == 8.0
    assert y.dtype == boltgrad.float32 and y.shape == ()


def test_python_device_matches_cpu():
    data = np.array([[1.5, -2.0, 0.25], [4.0, 5.5, -6.0]], dtype=np.float32)
    cpu = (Tensor(data) * 3 - 1).sum(1).numpy()
    py = (Tensor(data, device="PYTHON") * 3 - 1).sum(1).numpy()
    np.testing.assert_array_equal(cpu, py)
    np.testing.assert_array_equal(cpu, np.array([-3.75, 7.5], dtype=np.float32))


def test_oracle_helper():
    check(lambda x, y: (x * y + 1).relu().sum(0), (3, 4), (4,))
