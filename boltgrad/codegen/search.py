"""Kernel search: a beam search over lowering options, each candidate compiled and timed on the device.

``BOLT_SEARCH=<width>`` turns it on. Starting from the heuristic's choice, each round applies every single
action (a register tile's rows or columns, the reduce's block length, the column block, letting the compiler
fuse multiply-adds) to each of the ``width`` best options so far; the candidates of a round are compiled in
parallel compiler processes and timed on scratch buffers (minimum of a few runs). The search stops when a round
finds nothing faster or its time limit is spent. The winner is kept in the on-disk cache, keyed by the kernel's
code and the machine, so a kernel is searched once per machine.

Options that change the rounding (``contract``: a * b + c as one fused operation) are only kept when they are
at least ``CONTRACT_GAIN`` faster, and never by the heuristic: the default path stays bit for bit equal to the
PYTHON device.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from .blocking import KernelOpts
from .linearize import LinearProgram, linearize, program_text
from .lower import lower_kernel

TIME_LIMIT_S = 60.0  # per kernel, compiles included
RUNS = 5  # timed runs per candidate (after one warm-up); the minimum counts
CONTRACT_GAIN = 1.05
ACTIONS: dict[str, tuple] = {
    "rows": (1, 2, 4, 6, 8),
    "cols": (8, 16, 24, 32),
    "k_block": (0, 64, 128, 192, 256, 384, 512),
    "col_block": (0, 64, 128, 256, 512, 1024),
    "contract": (False, True),
}

Timer = Callable[[list[tuple[str, LinearProgram, KernelOpts]]], list[float]]


def neighbours(opts: KernelOpts) -> list[KernelOpts]:
    """Every option set one action away from ``opts``."""
    out = []
    for field, values in ACTIONS.items():
        for value in values:
            if getattr(opts, field) != value:
                out.append(replace(opts, **{field: value}))
    return out


def beam_search(ast, width: int, timer: Timer, time_limit: float = TIME_LIMIT_S, log=None) -> KernelOpts:
    """The fastest options found for ``ast``; ``timer`` times a list of (name, program, options) in seconds."""
    deadline = time.monotonic() + time_limit
    seen: dict[str, tuple[float, KernelOpts]] = {}  # program structure -> (time, options)
    default = KernelOpts()
    beam = [default]
    best_time = float("inf")
    frontier = [default]
    while frontier and time.monotonic() < deadline:
        batch = []
        for opts in frontier:
            try:
                lin = linearize(lower_kernel(ast, opts))
            except (ValueError, AssertionError, ZeroDivisionError):
                continue
            code = program_key(lin) + ("|fma" if opts.contract else "")
            if code in seen:
                continue
            seen[code] = (float("inf"), opts)
            batch.append((code, lin, opts))
        if not batch:
            break
        times = timer([(f"s{i}", lin, opts) for i, (_, lin, opts) in enumerate(batch)])
        for (code, _, opts), t in zip(batch, times):
            seen[code] = (t * (CONTRACT_GAIN if opts.contract else 1.0), opts)
        ranked = sorted(seen.values(), key=lambda x: x[0])
        if log is not None:
            log(f"search: {len(seen)} tried, best {ranked[0][0] * 1e3:.3f} ms with {ranked[0][1].key() or 'defaults'}")
        if ranked[0][0] >= best_time:
            break
        best_time = ranked[0][0]
        beam = [opts for _, opts in ranked[:width]]
        frontier = [n for opts in beam for n in neighbours(opts)]
    ranked = sorted(seen.values(), key=lambda x: x[0])
    return ranked[0][1] if ranked and ranked[0][0] < float("inf") else beam[0]


def program_key(lin: LinearProgram) -> str:
    """Names the program's code: two options that lower to the same code are timed once."""
    return hashlib.sha1(program_text(lin).encode()).hexdigest()


# ---------------------------------------------------------------- timing on a CPU-like device


def cpu_timer(device, renderer, buffer_sizes: Sequence[int]) -> Timer:
    """Times candidates on ``device`` with zero-filled scratch buffers of the kernel's sizes (zeros: an index
    read from a buffer stays in bounds). Each candidate is its own source, compiled in parallel processes."""
    from ..device.base import Launch

    def timer(candidates: list[tuple[str, LinearProgram, KernelOpts]]) -> list[float]:
        sources = []
        for name, lin, opts in candidates:
            lin.meta["contract"] = opts.contract
            sources.append(renderer.preamble + renderer.render_kernel(lin, name) + "\n")
        workers = max(1, min(len(sources), os.cpu_count() or 1))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:  # each compile is a compiler process
            libraries = list(pool.map(_compile_or_none(device), sources))
        handles = [device.allocator.alloc(max(n, 4)) for n in buffer_sizes]
        try:
            for h, n in zip(handles, buffer_sizes):
                device.allocator.copyin(h, memoryview(bytes(max(n, 4))))
            out = []
            for (name, lin, _), library in zip(candidates, libraries):
                if library is None or lin.variables:
                    out.append(float("inf"))
                    continue
                launch = Launch(device.program(library, name), tuple(handles), (), lin.outer_size, lin.cost)
                out.append(_time_launch(device.graph([launch])))
            return out
        finally:
            for h, n in zip(handles, buffer_sizes):
                device.allocator.free(h, max(n, 4))

    return timer


def _compile_or_none(device):
    def compile_one(source: str):
        try:
            return device.compiler.compile(source)
        except Exception as e:  # a candidate the compiler rejects is skipped, not fatal
            print(f"search: a candidate failed to compile: {str(e).splitlines()[0]}", file=sys.stderr)
            return None

    return compile_one


def _time_launch(graph) -> float:
    graph.run()  # warm-up: caches, page faults
    best = float("inf")
    for _ in range(RUNS):
        t = time.perf_counter()
        graph.run()
        best = min(best, time.perf_counter() - t)
    return best


# ---------------------------------------------------------------- the on-disk record of results


def cached_search(ast, width: int, device, renderer, buffer_sizes: Sequence[int], log=None) -> KernelOpts:
    """The searched options for ``ast`` on this machine: from the cache, or searched now and stored."""
    from ..device import compile_cache

    default_code = program_key(linearize(lower_kernel(ast)))
    toolchain = getattr(device.compiler, "toolchain", "")
    key = compile_cache.artifact_key(f"search:{default_code}:{width}", toolchain, list(map(str, buffer_sizes)))

    def build() -> bytes:
        best = beam_search(ast, width, cpu_timer(device, renderer, buffer_sizes), log=log)
        return json.dumps(best.__dict__).encode()

    path = compile_cache.get_or_build(key, build, ".json", namespace="search")
    with open(path, encoding="utf-8") as f:
        return KernelOpts(**json.load(f))
