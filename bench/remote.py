"""What the link costs: a jitted Fashion-MNIST MLP training step on the CPU, and on the same CPU behind a
``boltgrad device-server`` over loopback, with and without 100 µs of added latency each way.

    python -m bench.remote [--steps 30] [--json out.json]

Each variant runs in this process against a server in a subprocess; the table gives the median step time after
warm-up and its ratio to the local step, and the round trips and bytes per step from ``boltgrad.stats``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _server() -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "boltgrad.cli.main", "device-server", "--listen", "127.0.0.1:0"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, env=env, text=True)
    line = proc.stderr.readline()
    match = re.search(r"listening on (\S+)", line)
    if not match:
        raise RuntimeError(f"the device server did not start: {line}")
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    return proc, f"REMOTE:{match.group(1)}"


def mlp_step_times(device: str, steps: int, batch: int = 128) -> tuple[list[float], dict[str, float]]:
    from boltgrad import Tensor, stats

    from .steps import mlp_batch, mlp_step

    step = mlp_step(device, use_jit=True)
    xs, ys = mlp_batch(batch)
    times = []
    for i in range(steps + 5):
        if i == 5:
            stats.reset()
        t0 = time.perf_counter()
        step(Tensor(xs, device=device), Tensor(ys, device=device)).item()
        if i >= 5:
            times.append(time.perf_counter() - t0)
    per_step = {
        k: v / steps for k, v in stats.snapshot().items() if k in ("round_trips", "link_bytes_out", "link_bytes_in")
    }
    return times, per_step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    from boltgrad.device.registry import reconnect

    rows = []
    local, _ = mlp_step_times("CPU", args.steps)
    rows.append(("local CPU", statistics.median(local), {}))
    proc, name = _server()
    try:
        times, link = mlp_step_times(name, args.steps)
        rows.append(("REMOTE, loopback", statistics.median(times), link))
        os.environ["BOLT_REMOTE_LINK"] = "latency_us=100"
        reconnect(name)
        times, link = mlp_step_times(name, args.steps)
        rows.append(("REMOTE, loopback + 100 us each way", statistics.median(times), link))
    finally:
        os.environ.pop("BOLT_REMOTE_LINK", None)
        proc.kill()
    base = rows[0][1]
    print(f"MLP 784-256-10 training step, batch 128, Adam, jitted; median of {args.steps} after 5 warm-up steps")
    print(f"{'where':<38}{'ms/step':>10}{'x local':>10}{'trips':>8}{'B out':>10}{'B in':>8}")
    for label, t, link in rows:
        print(f"{label:<38}{t * 1e3:>10.2f}{t / base:>10.2f}{link.get('round_trips', 0):>8.1f}"
              f"{link.get('link_bytes_out', 0):>10.0f}{link.get('link_bytes_in', 0):>8.0f}")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                [{"where": label, "seconds": t, "ratio": t / base, **link} for label, t, link in rows], f, indent=1
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
