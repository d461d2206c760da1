"""What the JIT buys: launch overhead per replayed kernel, and the Fashion-MNIST MLP training step eager, jitted,
and in PyTorch's eager mode at 1 and 2 threads, in one run.

    python -m bench.steps [--steps 30] [--json out.json]

Medians after warm-up. The launch-overhead row times a jitted chain of 256 tiny kernels (16 floats each, every
one a kernel of its own) and divides by 256; the same chain in PyTorch is 256 small eager ops.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

CHAIN = 256
BATCH = 128


def _median_time(fn: Callable[[], object], reps: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def boltgrad_rows(steps: int) -> dict[str, float]:
    import boltgrad
    from boltgrad import Tensor

    x16 = Tensor(np.ones(16, np.float32))

    def chain(x):
        for _ in range(CHAIN):
            x = (x + 1).contiguous()
        return x

    jchain = boltgrad.jit(chain)
    out = {"launch_us_per_kernel": _median_time(lambda: jchain(x16).realize(), steps) / CHAIN * 1e6}

    xs, ys = mlp_batch(BATCH)
    for label, use_jit in (("mlp_step_eager_ms", False), ("mlp_step_jit_ms", True)):
        fn = mlp_step("CPU", use_jit)
        out[label] = _median_time(lambda fn=fn: fn(Tensor(xs), Tensor(ys)).item(), steps) * 1e3
    return out


def mlp_batch(batch: int) -> tuple[np.ndarray, np.ndarray]:
    """A Fashion-MNIST-shaped batch of random inputs and labels, the same in every run."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((batch, 784)).astype(np.float32), rng.integers(0, 10, batch)


def mlp_step(device: str, use_jit: bool) -> Callable:
    """The Fashion-MNIST MLP (784-256-10) training step with Adam, on ``device``, jitted or not."""
    import boltgrad
    from boltgrad import nn, optim
    from boltgrad.nn import functional as F

    boltgrad.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)).to(device)
    opt = optim.Adam(model.parameters(), lr=1e-3)

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()  # the loss is computed with the update (see autograd.backward)
        return loss

    return boltgrad.jit(step) if use_jit else step


def torch_rows(steps: int, threads: int) -> dict[str, float]:
    import torch

    torch.set_num_threads(threads)
    x16 = torch.ones(16)

    def chain():
        x = x16
        for _ in range(CHAIN):
            x = x + 1
        return x

    out = {"launch_us_per_kernel": _median_time(chain, steps) / CHAIN * 1e6}
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((BATCH, 784)).astype(np.float32)
    ys = rng.integers(0, 10, BATCH)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(xs)), torch.from_numpy(ys))
        loss.backward()
        opt.step()
        return loss.item()

    out["mlp_step_eager_ms"] = _median_time(step, steps) * 1e3
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    results = {"boltgrad": boltgrad_rows(args.steps)}
    try:
        results["torch-1t"] = torch_rows(args.steps, 1)
        results["torch-2t"] = torch_rows(args.steps, 2)
    except ImportError:
        print("torch is not installed: PyTorch columns skipped", file=sys.stderr)
    ours = results["boltgrad"]
    print(f"launch overhead per replayed kernel: {ours['launch_us_per_kernel']:.2f} us (jit, {CHAIN} tiny kernels)")
    for peer in ("torch-1t", "torch-2t"):
        if peer in results:
            print(f"  {peer} eager small op: {results[peer]['launch_us_per_kernel']:.2f} us")
    print(f"MLP 784-256-10 training step, batch {BATCH}, Adam (ms, median of {args.steps}):")
    print(f"  boltgrad eager {ours['mlp_step_eager_ms']:.2f}, jit {ours['mlp_step_jit_ms']:.2f} "
          f"(jit speedup {ours['mlp_step_eager_ms'] / ours['mlp_step_jit_ms']:.1f}x)")  # fmt: skip
    for peer in ("torch-1t", "torch-2t"):
        if peer in results:
            t = results[peer]["mlp_step_eager_ms"]
            print(f"  {peer} eager {t:.2f}  (boltgrad jit / {peer}: {ours['mlp_step_jit_ms'] / t:.2f}x the time)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
