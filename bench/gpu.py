"""The GPU benchmark: boltgrad on CUDA against PyTorch on the same GPU, in one process.

    python -m bench.gpu                  # the table (about a minute on an H100)
    python -m bench.gpu --quick          # smaller inputs, fewer calls
    python -m bench.gpu --sweep          # also time other GPU targets: matmul and tensor-core tiles, row blocks
    python -m bench.gpu --json out.json

Rows: float32 matmul 4096 (PyTorch with TF32 off, so both do IEEE float32 math), float16 matmul 4096, an
elementwise chain against the device's measured bandwidth (a device-to-device copy), softmax and layer norm
against PyTorch eager. A boltgrad call is a replay of a ``boltgrad.jit`` recording (on CUDA one CUDA graph
launch unless ``BOLT_CUDA_GRAPHS=0``; the ``graph`` column says whether they were); every timing is the
mean of back-to-back calls between two synchronizations, after warm-up. Each result is checked against
PyTorch's (``!`` marks one that differs). Never a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

import boltgrad
from boltgrad.codegen import gpu
from boltgrad.device.registry import get_device, probe
from boltgrad.engine import realize


@dataclass
class Row:
    name: str
    bolt_ms: float
    peer_ms: float
    rate: str  # what the boltgrad time means: TFLOP/s or GB/s
    ratio: float  # peer_ms / bolt_ms (>1: boltgrad is faster)
    target: str
    ok: bool  # values agree with PyTorch's
    meets: bool
    graph: bool = False  # every replay of the boltgrad recording launched device graphs (CUDA graphs)


def timed(call: Callable[[], Any], sync: Callable[[], None], budget_s: float, warmup: int = 3) -> float:
    """Seconds per call: back-to-back calls until the budget is spent (at least 3), between synchronizations."""
    for _ in range(warmup):
        call()
    sync()
    start = time.perf_counter()
    calls = 0
    while calls < 3 or time.perf_counter() - start < budget_s:
        call()
        calls += 1
        if calls % 10 == 0:
            sync()
    sync()
    return (time.perf_counter() - start) / calls


DEVICE = "CUDA"  # boltgrad's device; torch runs on "cuda" with it, on the CPU otherwise


def bolt_and_torch(
    fn: Callable[..., Any],
    arrays: list[np.ndarray],
    torch: Any,
    budget_s: float,
    torch_fn: Callable[..., Any] | None = None,
    atol: float = 1e-3,
) -> tuple[float, float, bool, bool]:
    """(boltgrad s, torch s, values agree, every replay was a device-graph launch) for ``fn`` of the arrays on the
    device."""
    ours = [boltgrad.Tensor(a, device=DEVICE).realize() for a in arrays]
    theirs = [torch.from_numpy(a).to(torch_device()) for a in arrays]
    step = boltgrad.jit(fn)
    result: list[Any] = [None]
    calls = [0]

    def bolt_call() -> None:
        result[0] = step(*ours)
        calls[0] += 1

    graph_launches = boltgrad.stats.graph_launches
    bolt_s = timed(bolt_call, get_device(DEVICE).synchronize, budget_s)
    replays = calls[0] - 2  # the first call runs plainly, the second records
    graph = replays > 0 and boltgrad.stats.graph_launches - graph_launches >= replays
    peer = torch_fn or fn
    torch_sync = torch.cuda.synchronize if torch_device() == "cuda" else lambda: None
    torch_s = timed(lambda: peer(*theirs), torch_sync, budget_s)
    got = result[0].numpy().astype(np.float32)
    want = peer(*theirs).float().cpu().numpy()
    ok = bool(np.allclose(got, want, rtol=1e-2, atol=atol, equal_nan=True))
    return bolt_s, torch_s, ok, graph


def torch_device() -> str:
    return "cuda" if DEVICE.startswith("CUDA") else "cpu"


def device_bandwidth(nbytes: int, budget_s: float) -> float:
    """GB/s of a device-to-device copy (read + write) on boltgrad's device (a host memcpy off CUDA)."""
    dev = get_device(DEVICE)
    if not hasattr(dev.allocator, "transfer"):
        src, dst = np.ones(nbytes, np.uint8), np.empty(nbytes, np.uint8)
        return 2 * nbytes / timed(lambda: np.copyto(dst, src), lambda: None, budget_s) / 1e9
    src, dst = dev.allocator.alloc(nbytes), dev.allocator.alloc(nbytes)
    seconds = timed(lambda: dev.allocator.transfer(dst, src, nbytes, dev), dev.synchronize, budget_s)
    dev.allocator.free(src, nbytes)
    dev.allocator.free(dst, nbytes)
    return 2 * nbytes / seconds / 1e9


def run(device: str, quick: bool, sweep: bool) -> list[Row]:
    import torch

    global DEVICE
    DEVICE = device
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    smoke = not device.startswith("CUDA")  # the script's own check on a machine without a GPU: tiny sizes
    budget = 0.05 if smoke else 0.3 if quick else 1.0
    rng = np.random.default_rng(0)
    rows: list[Row] = []
    n = 256 if smoke else 2048 if quick else 4096

    for dtype, target in ((np.float32, 0.5), (np.float16, 0.5)):
        a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
        bolt_s, torch_s, ok, graph = bolt_and_torch(lambda x, y: x @ y, [a, b], torch, budget, atol=0.5)
        tflops = 2 * n**3 / bolt_s / 1e12
        name = f"matmul {np.dtype(dtype).name} {n}"
        goal = "must" if dtype == np.float32 else "stretch"
        rows.append(Row(name, bolt_s * 1e3, torch_s * 1e3, f"{tflops:.1f} TFLOP/s", torch_s / bolt_s,
                        f"{goal} >= {target}x torch", ok, torch_s / bolt_s >= target, graph))  # fmt: skip

    size = (1 << 18) if smoke else (1 << 24) if quick else (1 << 26)
    x, y, z = (rng.standard_normal(size).astype(np.float32) for _ in range(3))
    bandwidth = device_bandwidth(4 * size, budget)
    chain = lambda p, q, r: ((p * q + r).relu() * 0.5 - q).abs()  # noqa: E731
    bolt_s, torch_s, ok, graph = bolt_and_torch(chain, [x, y, z], torch, budget)
    gbs = 4 * 4 * size / bolt_s / 1e9  # three inputs read, one output written
    rows.append(Row(f"elementwise chain {size >> 20}M", bolt_s * 1e3, torch_s * 1e3,
                    f"{gbs:.0f} GB/s of {bandwidth:.0f} (copy)", torch_s / bolt_s, ">= 80% of bandwidth", ok,
                    gbs >= 0.8 * bandwidth, graph))  # fmt: skip

    rows_n = 64 if smoke else 2048 if quick else 8192
    m = rng.standard_normal((rows_n, 4096)).astype(np.float32)
    bolt_s, torch_s, ok, graph = bolt_and_torch(lambda t: t.softmax(-1), [m], torch, budget, atol=1e-5)
    rows.append(Row(f"softmax {rows_n}x4096", bolt_s * 1e3, torch_s * 1e3, f"{2 * m.nbytes / bolt_s / 1e9:.0f} GB/s",
                    torch_s / bolt_s, ">= 1.0x torch eager", ok, torch_s / bolt_s >= 1.0, graph))  # fmt: skip
    layer_norm = lambda t: (boltgrad.nn.functional if isinstance(t, boltgrad.Tensor) else torch.nn.functional  # noqa: E731
                            ).layer_norm(t, (4096,))  # fmt: skip
    bolt_s, torch_s, ok, graph = bolt_and_torch(layer_norm, [m], torch, budget)
    rows.append(Row(f"layernorm {rows_n}x4096", bolt_s * 1e3, torch_s * 1e3, f"{2 * m.nbytes / bolt_s / 1e9:.0f} GB/s",
                    torch_s / bolt_s, ">= 1.0x torch eager", ok, torch_s / bolt_s >= 1.0, graph))  # fmt: skip

    if sweep and not smoke:
        a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
        workloads = {"matmul float32": (lambda x, y: x @ y, [a, b], 0.5),
                     "matmul float16": (lambda x, y: x @ y, [a.astype(np.float16), b.astype(np.float16)], 0.5),
                     "softmax": (lambda t: t.softmax(-1), [m], 1e-5), "layernorm": (layer_norm, [m], 1e-3)}  # fmt: skip
        rows += sweep_targets(torch, workloads, budget / 3)
    return rows


# (what it varies, GPUTarget fields): each is timed with fresh compiles, to choose the defaults from one GPU run.
# Matmul tiles: threads (y, x), outputs per thread (y, x), k step, and the blocks that must fit on an SM; tensor
# cores: warps (y, x), 16x8 instructions per warp (y, x), k step; row kernels: threads per row (reduce_block)
SWEEP = {
    "matmul float32": [{"tile": t, "matmul_blocks_per_sm": b} for t, b in [
        ((16, 16, 8, 8, 8), 1), ((16, 16, 8, 8, 8), 2), ((16, 16, 8, 8, 16), 2), ((16, 16, 4, 4, 16), 3),
        ((16, 16, 4, 4, 16), 4), ((16, 8, 8, 8, 8), 4), ((8, 16, 8, 8, 16), 4)]],
    "matmul float16": [{"mma_tile": t, "mma_blocks_per_sm": b} for t, b in [
        ((2, 4, 4, 4, 32), 1), ((2, 4, 4, 4, 32), 2), ((2, 4, 4, 4, 16), 2), ((2, 2, 4, 4, 32), 3),
        ((4, 2, 2, 4, 32), 2)]],
    "softmax": [{"reduce_block": b} for b in (128, 256, 512, 1024)],
    "layernorm": [{"reduce_block": b} for b in (128, 256, 512, 1024)],
}  # fmt: skip


def sweep_targets(torch: Any, workloads: dict[str, tuple[Callable[..., Any], list[np.ndarray], float]], budget: float,
                  renderer: str = "cuda") -> list[Row]:  # fmt: skip
    """Each workload (name: function, inputs, atol) with the GPU target's variants in ``SWEEP`` (fresh compiles)."""
    default = gpu.GPU_TARGETS[renderer]
    out = []
    try:
        for name, (fn, arrays, atol) in workloads.items():
            for fields in SWEEP[name]:
                gpu.GPU_TARGETS[renderer] = replace(default, **fields)
                realize._compiled.clear()
                bolt_s, torch_s, ok, graph = bolt_and_torch(fn, arrays, torch, budget, atol=atol)
                label = " ".join(f"{k}={v}" for k, v in fields.items())
                out.append(Row(f"  {name}: {label}", bolt_s * 1e3, torch_s * 1e3, "", torch_s / bolt_s, "(sweep)", ok,
                               True, graph))  # fmt: skip
    finally:
        gpu.GPU_TARGETS[renderer] = default
        realize._compiled.clear()
    return out


def print_table(rows: list[Row]) -> None:
    print(f"{'workload':<28} {'boltgrad ms':>11} {'torch ms':>9} {'torch/bolt':>10} {'graph':>5}  {'rate':<30} target")
    for r in rows:
        flag = "" if r.ok else " !"
        mark = "yes" if r.meets else "NO"
        graph = "yes" if r.graph else "no"
        print(f"{r.name:<28} {r.bolt_ms:>11.3f} {r.peer_ms:>9.3f} {r.ratio:>10.2f} {graph:>5}  {r.rate:<30} "
              f"{r.target}: {mark}{flag}")  # fmt: skip


def sweep_winners(rows: list[Row]) -> list[str]:
    """One line per swept workload: its fastest variant whose values agree with torch's (the default is among the
    variants), so that one GPU run says which defaults to change."""
    best: dict[str, Row] = {}
    for r in rows:
        if r.target == "(sweep)" and r.ok:
            name = r.name.strip().split(":")[0]
            if name not in best or r.bolt_ms < best[name].bolt_ms:
                best[name] = r
    return [f"fastest {name}: {r.name.strip().split(': ', 1)[1]} ({r.bolt_ms:.3f} ms, {r.ratio:.2f}x torch)"
            for name, r in best.items()]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sweep", action="store_true", help="also time other matmul tiles and row blocks")
    parser.add_argument("--json", default=None, help="write the rows here")
    parser.add_argument("--device", default="CUDA", help="CUDA; another device (CPU) runs tiny sizes: a smoke test")
    args = parser.parse_args(argv)
    status = probe(args.device)
    if not status.ok:
        print(f"bench.gpu: no {args.device} device: {status.detail} {status.fix}", file=sys.stderr)
        return 2
    print(f"{args.device}: {status.detail}")
    rows = run(args.device, args.quick, args.sweep)
    print_table(rows)
    for line in sweep_winners(rows):
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": status.detail, "rows": [asdict(r) for r in rows]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
