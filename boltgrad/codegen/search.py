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

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from ..helpers import sha1
from .blocking import KernelOpts
from .linearize import LinearProgram, linearize, program_text
from .lower import lower_kernel

TIME_LIMIT_S = 30.0  # per kernel for the beam, compiles included (a final check of the best few follows)
RUNS = 5  # timed runs per candidate (after one warm-up); the minimum counts
RUN_BUDGET_S = 0.3  # past this, a candidate stops after two runs
CONTRACT_GAIN = 1.05
ACTIONS: dict[str, tuple] = {  # most promising first: a round cut short by the time limit tries these
    "contract": (False, True),
    "rows": (1, 2, 4, 6, 8),
    "k_block": (0, 64, 128, 192, 256, 384, 512),
    "col_block": (0, 64, 128, 256, 512, 1024),
    "cols": (8, 16, 24, 32),
}

# times (name, program, options) candidates in seconds; inf for any it could not build or run before the deadline
Timer = Callable[..., list[float]]


def neighbours(opts: KernelOpts) -> list[KernelOpts]:
    """Every option set one action away from ``opts``."""
    out = []
    for field, values in ACTIONS.items():
        for value in values:
            if getattr(opts, field) != value:
                out.append(replace(opts, **{field: value}))
    return out


def beam_search(ast, width: int, timer: Timer, time_limit: float | None = None, log=None) -> KernelOpts:
    """The fastest options found for ``ast``; ``timer`` times a list of (name, program, options) in seconds."""
    deadline = time.monotonic() + (TIME_LIMIT_S if time_limit is None else time_limit)
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
        times = timer([(f"s{i}", lin, opts) for i, (_, lin, opts) in enumerate(batch)], deadline)
        for (code, _, opts), t in zip(batch, times):
            seen[code] = (t * (CONTRACT_GAIN if opts.contract else 1.0), opts)
        ranked = sorted(seen.values(), key=lambda x: x[0])
        if log is not None:
            top = ", ".join(f"{t * 1e3:.2f} ms {o.key() or 'defaults'}" for t, o in ranked[:3])
            log(f"search: {len(seen)} tried; best {top}")
        if ranked[0][0] >= best_time:
            break
        best_time = ranked[0][0]
        beam = [opts for _, opts in ranked[:width]]
        frontier = [n for opts in beam for n in neighbours(opts)]
    return _confirm(ast, sorted(seen.values(), key=lambda x: x[0]), timer, log)


def _confirm(ast, ranked: list[tuple[float, KernelOpts]], timer: Timer, log) -> KernelOpts:
    """Time the default and the best few again, interleaved, and keep the fastest: on a busy machine one
    lucky measurement must not pick the kernel for good."""
    finalists = [KernelOpts()] + [o for t, o in ranked[:3] if t < float("inf") and o != KernelOpts()]
    if len(finalists) == 1:
        return finalists[0]
    lins = [(f"f{i}", linearize(lower_kernel(ast, o)), o) for i, o in enumerate(finalists)]
    best = [float("inf")] * len(finalists)
    for _ in range(3):
        best = [min(b, t * (CONTRACT_GAIN if o.contract else 1.0)) for b, t, o in zip(best, timer(lins), finalists)]
    winner = min(range(len(finalists)), key=best.__getitem__)
    if log is not None:
        log(f"search: confirmed {finalists[winner].key() or 'defaults'} at {best[winner] * 1e3:.2f} ms "
            f"(defaults {best[0] * 1e3:.2f} ms)")  # fmt: skip
    return finalists[winner]


def has_choices(ast) -> bool:
    """Whether the options change this kernel's code at all (elementwise kernels have nothing to search)."""
    base = linearize(lower_kernel(ast))
    if base.variables:  # timing needs the variables' values; keep the heuristic
        return False
    key = program_key(base)
    probes = (KernelOpts(rows=1), KernelOpts(cols=8), KernelOpts(k_block=0), KernelOpts(k_block=64))
    return any(program_key(linearize(lower_kernel(ast, o))) != key for o in probes)


def program_key(lin: LinearProgram) -> str:
    """Names the program's code: two options that lower to the same code are timed once."""
    return sha1(program_text(lin).encode()).hexdigest()


# ---------------------------------------------------------------- timing on a CPU-like device


def cpu_timer(device, renderer, buffer_sizes: Sequence[int]) -> Timer:
    """Times candidates on ``device`` with zero-filled scratch buffers of the kernel's sizes (zeros: an index
    read from a buffer stays in bounds). Each candidate is its own source, compiled in parallel processes."""
    from ..device.base import Launch

    def timer(candidates: list[tuple[str, LinearProgram, KernelOpts]], deadline: float = float("inf")) -> list[float]:
        for _, lin, opts in candidates:
            lin.meta["contract"] = opts.contract
        libraries = compile_in_parallel(device.compiler, renderer, [(name, lin) for name, lin, _ in candidates])
        handles = [device.allocator.alloc(max(n, 4)) for n in buffer_sizes]
        try:
            for h, n in zip(handles, buffer_sizes):
                device.allocator.copyin(h, memoryview(bytes(max(n, 4))))
            out = []
            for (name, lin, _), library in zip(candidates, libraries):
                if library is None or lin.variables or time.monotonic() > deadline:
                    out.append(float("inf"))
                    continue
                launch = Launch(device.program(library, name), tuple(handles), (), lin.outer_size, lin.cost)
                out.append(_time_launch(device.graph([launch])))
            return out
        finally:
            for h, n in zip(handles, buffer_sizes):
                device.allocator.free(h, max(n, 4))

    return timer


def compile_in_parallel(
    compiler, renderer, kernels: list[tuple[str, LinearProgram]], parts: int = 0, strict: bool = False
) -> list:
    """Compile kernels as ``parts`` sources (default: one per core) in concurrent compiler processes; returns
    each kernel's library. strict: a compiler error is raised; otherwise a failing source is retried kernel by
    kernel and a kernel that fails maps to None (a search candidate the compiler rejects is skipped)."""
    parts = max(1, min(parts or os.cpu_count() or 1, len(kernels)))
    chunks = [kernels[i::parts] for i in range(parts)]

    def build(chunk: list[tuple[str, LinearProgram]]) -> list:
        try:
            library = compiler.compile(renderer.render_unit(chunk))
            return [library] * len(chunk)
        except Exception as e:
            if strict:
                raise
            if len(chunk) == 1:
                print(f"search: a candidate failed to compile: {str(e).splitlines()[0]}", file=sys.stderr)
                return [None]
            return [build([k])[0] for k in chunk]

    import concurrent.futures  # here: it imports logging, which nothing else of a run needs

    with concurrent.futures.ThreadPoolExecutor(parts) as pool:  # each compile runs in its own compiler process
        built = list(pool.map(build, chunks))
    out: list = [None] * len(kernels)
    for i, libraries in enumerate(built):
        for j, library in enumerate(libraries):
            out[i + j * parts] = library
    return out


def _time_launch(graph) -> float:
    graph.run()  # warm-up: caches, page faults
    best, spent = float("inf"), 0.0
    for i in range(RUNS):
        if i >= 2 and spent > RUN_BUDGET_S:  # a slow kernel gets fewer runs
            break
        t = time.perf_counter()
        graph.run()
        elapsed = time.perf_counter() - t
        best, spent = min(best, elapsed), spent + elapsed
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
