"""Time per training epoch of the Fashion-MNIST MLP and CNN: boltgrad eager and jitted against PyTorch at 1 and
2 threads, with the same model, initial weights, batches and optimizer, in one run.

    python -m bench.train [--steps 100] [--batch 64] [--models mlp cnn] [--json out.json]

The models and optimizer are those of ``boltgrad train fashion-mnist`` (Adam, learning rate 1e-3 for the MLP and
2e-3 for the CNN). The parent process makes the initial weights (boltgrad's initialisation, seed 0) and the batches
(the first training images of Fashion-MNIST, normalised as ``train`` does, or random images when the data is not
installed) and saves them; each framework then trains in a process of its own, so no thread pool competes with
another's. A step is timed from the batch's numpy arrays to the loss read back as a float, as a training loop
does; after warm-up (a jitted step replays from its third call), the median step time times the steps of an epoch
(60000 / batch, the last partial batch dropped) is the epoch time. Each worker also reports its loss after the
last step: the frameworks train the same model on the same data, so these agree to a few digits.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .run import REPO_ROOT, _load_average, machine_info

TRAIN_IMAGES = 60000
LEARNING_RATE = {"mlp": 1e-3, "cnn": 2e-3}  # boltgrad train's defaults
WARMUP = 5
CONFIGS = ("boltgrad-eager", "boltgrad-jit", "torch-1t", "torch-2t")


# ---------------------------------------------------------------- the parent: inputs


def make_inputs(steps: int, batch: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(images (n, 1, 28, 28) float32 normalised, labels (n,) int64, where they came from) for ``steps`` batches."""
    from boltgrad.cli.train import MEAN, STD

    n = steps * batch
    try:
        from boltgrad.data.mnist import load_fashion_mnist

        images, labels = load_fashion_mnist(None, split="train")
        pixels, targets, source = images[:n].numpy(), labels[:n].numpy().astype(np.int64), "Fashion-MNIST"
    except (FileNotFoundError, ValueError) as e:
        print(f"[bench] Fashion-MNIST not found ({e}); random images instead", file=sys.stderr)
        rng = np.random.default_rng(0)
        pixels, targets, source = rng.integers(0, 256, (n, 28, 28), np.uint8), rng.integers(0, 10, n), "random"
    x = ((pixels.reshape(n, 1, 28, 28).astype(np.float32) * (1 / 255) - MEAN) * (1 / STD)).astype(np.float32)
    return x, targets.astype(np.int64), source


def initial_weights(kind: str) -> dict[str, np.ndarray]:
    import boltgrad
    from boltgrad.cli.train import build_model

    boltgrad.manual_seed(0)
    return {k: v.numpy() for k, v in build_model(kind).state_dict().items()}


# ---------------------------------------------------------------- the workers


def boltgrad_step(kind: str, weights: dict[str, np.ndarray], use_jit: bool) -> Callable:
    import boltgrad
    import boltgrad.nn.functional as F
    from boltgrad import Tensor, optim
    from boltgrad.cli.train import build_model

    model = build_model(kind)
    model.load_state_dict(weights)
    opt = optim.Adam(model.parameters(), lr=LEARNING_RATE[kind])

    def step(x: Tensor, y: Tensor) -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()  # the loss is computed with the update (see autograd.backward)
        return loss

    run = boltgrad.jit(step) if use_jit else step
    return lambda x, y: run(Tensor(x), Tensor(y)).item()


def torch_model(kind: str) -> Any:
    """The same layers as ``boltgrad.cli.train.build_model``, with the same state dict names."""
    import torch.nn as tnn

    if kind == "mlp":
        return tnn.Sequential(tnn.Flatten(), tnn.Linear(784, 256), tnn.ReLU(), tnn.Linear(256, 10))
    return tnn.Sequential(
        tnn.Conv2d(1, 16, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(16, 32, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Flatten(), tnn.Linear(32 * 7 * 7, 10),
    )  # fmt: skip


def torch_step(kind: str, weights: dict[str, np.ndarray], threads: int) -> Callable:
    import torch

    torch.set_num_threads(threads)
    model = torch_model(kind)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE[kind])

    def step(x: np.ndarray, y: np.ndarray) -> float:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        opt.step()
        return loss.item()

    return step


def worker_main(config: str, kind: str, inputs_path: str, batch: int, out_path: str) -> None:
    data = np.load(inputs_path)
    x, y = data["x"], data["y"]
    weights = {k[len("w.") :]: data[k] for k in data.files if k.startswith("w.")}
    if config.startswith("boltgrad"):
        step = boltgrad_step(kind, weights, use_jit=config == "boltgrad-jit")
    else:
        step = torch_step(kind, weights, threads=int(config.split("-")[1][:-1]))
    steps = len(x) // batch
    times, loss = [], float("nan")
    for i in range(WARMUP + steps):
        j = i % steps
        xb, yb = x[j * batch : (j + 1) * batch], y[j * batch : (j + 1) * batch]
        start = time.perf_counter()
        loss = step(xb, yb)
        if i >= WARMUP:
            times.append(time.perf_counter() - start)
    Path(out_path).write_text(json.dumps({"step_s": times, "final_loss": loss}))


# ---------------------------------------------------------------- the parent: run and report


def run_config(config: str, kind: str, inputs_path: str, batch: int, scratch: str) -> dict[str, Any] | None:
    out_path = os.path.join(scratch, f"{config}-{kind}.json")
    cmd = [sys.executable, "-m", "bench.train", "--worker", config, kind, inputs_path, str(batch), out_path]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"[bench] {config} {kind} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    result = json.loads(Path(out_path).read_text())
    step_s = statistics.median(result["step_s"])
    return {"step_ms": step_s * 1e3, "epoch_s": step_s * (TRAIN_IMAGES // batch), "final_loss": result["final_loss"],
            "timed_steps": len(result["step_s"])}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        config, kind, inputs_path, batch, out_path = argv[1:6]
        worker_main(config, kind, inputs_path, int(batch), out_path)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="timed steps per framework and model (default 100)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--models", nargs="+", choices=["mlp", "cnn"], default=["mlp", "cnn"])
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--json", default=None, help="write every number (and the machine) to this file")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch < 1:
        parser.error("--steps and --batch must be at least 1")
    load_before = _load_average()
    x, y, source = make_inputs(args.steps, args.batch)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as scratch:
        for kind in args.models:
            inputs_path = os.path.join(scratch, f"{kind}.npz")
            np.savez(inputs_path, x=x, y=y, **{f"w.{k}": v for k, v in initial_weights(kind).items()})
            results[kind] = {}
            for config in args.configs:
                print(f"[bench] {kind} {config} ...", file=sys.stderr, flush=True)
                results[kind][config] = run_config(config, kind, inputs_path, args.batch, scratch)
    steps_per_epoch = TRAIN_IMAGES // args.batch
    load = f"; load average {load_before:.1f} before the run" if load_before is not None else ""
    print(f"Fashion-MNIST training ({source} batches), batch {args.batch}, Adam: seconds per epoch "
          f"({steps_per_epoch} steps x the median of {args.steps} steps after {WARMUP} warm-up){load}")  # fmt: skip
    print("| model | " + " | ".join(args.configs) + " | torch-1t / jit | torch-2t / jit |")
    print("|---" * (len(args.configs) + 3) + "|")
    for kind, row in results.items():
        cells = [f"{r['epoch_s']:.2f}" if r else "-" for r in row.values()]
        jit = row.get("boltgrad-jit")
        ratios = [f"{row[p]['epoch_s'] / jit['epoch_s']:.2f}" if jit and row.get(p) else "-"
                  for p in ("torch-1t", "torch-2t")]  # fmt: skip
        print(f"| {kind} | " + " | ".join(cells + ratios) + " |")
    print("(ratio > 1: boltgrad jitted is faster). Loss after the last step: " + "; ".join(
        f"{kind} " + ", ".join(f"{c} {r['final_loss']:.4f}" for c, r in row.items() if r)
        for kind, row in results.items()))  # fmt: skip
    if args.json:
        report = {"batch": args.batch, "steps": args.steps, "warmup": WARMUP, "data": source,
                  "steps_per_epoch": steps_per_epoch, "load_average_before": load_before,
                  "load_average_after": _load_average(), "machine": machine_info(), "results": results}  # fmt: skip
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0 if all(r for row in results.values() for r in row.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
