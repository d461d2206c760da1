"""The kernels behind bench/gpu.py's slowest rows, for Nsight Compute: the float32 matmul 4096 and softmax 8192x4096,
each realized once on CUDA (no timing, no jit). ``scripts/gpu_check.sh`` runs it under ``ncu`` when
``GPU_CHECK_PROFILE=1``:

    ncu --section SpeedOfLight --section Occupancy --section LaunchStats -k regex:'^r_' python -m bench.gpu_profile
"""

from __future__ import annotations

import numpy as np

from boltgrad import Tensor
from boltgrad.device.registry import get_device


def main() -> None:
    rng = np.random.default_rng(0)
    a, b = (Tensor(rng.standard_normal((4096, 4096), np.float32), device="CUDA").realize() for _ in range(2))
    (a @ b).realize()
    x = Tensor(rng.standard_normal((8192, 4096), np.float32), device="CUDA").realize()
    x.softmax(1).realize()
    get_device("CUDA").synchronize()


if __name__ == "__main__":
    main()
