"""The engine: schedule a graph, compile what is new, plan memory, launch.

Kernels are compiled once per process (looked up by their AST node) and once per machine (the device's
compiler caches by content hash). All kernels that miss the process cache in one realize are rendered into
one source file and compiled in one compiler call. Consecutive launches on one device go to the device in one
``run`` call: on the CPU that is one native call for the whole realize.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from .. import config, stats
from ..codegen.blocking import KernelOpts
from ..codegen.gpu import gpu_target, lower_for_gpu
from ..codegen.linearize import LinearProgram, linearize, program_text
from ..codegen.lower import lower_kernel
from ..codegen.search import cached_search, has_choices
from ..device.base import Launch
from ..device.buffer import Buffer
from ..device.registry import get_device
from ..helpers import sha1
from ..ir.dtypes import uint8
from ..ir.node import Node
from ..ir.ops import ALU, Op
from ..render.cstyle import RENDERERS as C_RENDERERS
from ..render.cuda import CUDARenderer
from ..schedule.schedule import CopyItem, KernelItem, Schedule, create_schedule
from . import kernel_index


@dataclass
class CompiledKernel:
    name: str
    program: Any
    linear: LinearProgram
    flops_per_iteration: int
    source: str


# which renderer writes a device's source (``Device.renderer``); ``gpu_target`` says which of them lower for a GPU
RENDERERS = {**C_RENDERERS, "cuda": CUDARenderer}

# by (device, device instance, kernel AST): a device opened anew (a REMOTE after reconnect) compiles again
_compiled: dict[tuple[str, int, Node], CompiledKernel] = {}


@dataclass
class CapturedLaunch:
    device: str
    launch: Launch
    buffers: list[Buffer]  # the Buffer objects behind launch.buffers, output first
    variables: list[Node]  # the VAR behind each of launch.var_values
    overwrites: bool  # writes a buffer that existed before (an ASSIGN)


@dataclass
class CapturedCopy:
    dest: Buffer
    src: Buffer


# while a JIT captures a step, every launch and copy the engine runs is also recorded here
_capture: list[CapturedLaunch | CapturedCopy] | None = None


def start_capture() -> None:
    global _capture
    if _capture is not None:
        raise RuntimeError("jit: a capture is already running (a jitted function called another one)")
    _capture = []


def stop_capture() -> list[CapturedLaunch | CapturedCopy]:
    global _capture
    ops, _capture = _capture or [], None
    return ops


def realize(targets: list[Node], order: list[Node] | None = None) -> dict[Node, Buffer]:
    """Compute every target node (``order``: their toposort, where the caller has it); returns the buffer that
    holds each one's value."""
    sched = create_schedule(targets, order)
    run_schedule(sched)
    return sched.outputs


def run_schedule(sched: Schedule) -> None:
    if not sched.items:
        sched.commit()
        return
    debug = config.debug_level()
    t0 = time.perf_counter()
    kernels = [it for it in sched.items if isinstance(it, KernelItem)]
    compiled = _compile_all(kernels, debug)
    _plan_memory(sched)
    if debug >= 3:
        _print_schedule(sched, compiled)
    batch: list[tuple[KernelItem, CompiledKernel]] = []
    n_kernels = 0
    for item in sched.items:
        if isinstance(item, CopyItem):
            n_kernels += _flush(batch, debug)
            _copy(item)
            continue
        if batch and batch[-1][0].device != item.device:
            n_kernels += _flush(batch, debug)
        batch.append((item, compiled[id(item)]))
    n_kernels += _flush(batch, debug)
    sched.commit()
    stats.realizes += 1
    if debug >= 1:
        ms = (time.perf_counter() - t0) * 1e3
        print(f"realize: {n_kernels} kernels, {len(sched.items) - len(kernels)} copies, {ms:.2f} ms", file=sys.stderr)


def _flush(batch: list[tuple[KernelItem, CompiledKernel]], debug: int) -> int:
    if not batch:
        return 0
    device = get_device(batch[0][0].device)
    launches = []
    for item, ck in batch:
        if ck.linear.outer_size == 0:
            continue
        handles = tuple(b.ensure_allocated().handle for b in item.buffers)
        values = tuple(item.var_values[v] for v in ck.linear.variables)
        launches.append((Launch(ck.program, handles, values, ck.linear.outer_size, ck.linear.cost), item, ck))
    if debug >= 2:
        for launch, item, ck in launches:
            t = time.perf_counter()
            device.run([launch])
            device.synchronize()
            _print_kernel_line(ck, item, time.perf_counter() - t)
    else:
        device.run([launch for launch, _, _ in launches])
    if _capture is not None:
        for launch, item, ck in launches:
            _capture.append(CapturedLaunch(item.device, launch, item.buffers, ck.linear.variables, item.overwrites))
    stats.kernels += len(launches)
    batch.clear()
    return len(launches)


def _copy(item: CopyItem) -> None:
    src, dest = get_device(item.src.device), get_device(item.dest.device)
    transfer = getattr(dest.allocator, "transfer", None)  # device to device without the host (CUDA to CUDA)
    if transfer is not None and type(src) is type(dest):
        transfer(item.dest.ensure_allocated().handle, item.src.ensure_allocated().handle, item.dest.nbytes, src)
        stats.copy_bytes += item.dest.nbytes
    else:
        item.dest.copyin(item.src.copyout())
    if _capture is not None:
        _capture.append(CapturedCopy(item.dest, item.src))


def _plan_memory(sched: Schedule) -> None:
    """Temporaries share memory: one whose last reader has run hands its memory to the next one."""
    temporaries = {id(b) for b in sched.temporaries}
    last_use: dict[int, int] = {}
    for i, item in enumerate(sched.items):
        for b in _buffers_of(item):
            last_use[id(b)] = i
    free: dict[tuple[str, int], list[Buffer]] = {}
    for i, item in enumerate(sched.items):
        bufs = _buffers_of(item)
        out = bufs[0]
        if id(out) in temporaries and out.base is None and not out.allocated:
            pool = free.get((out.device, out.nbytes))
            out.base = pool.pop() if pool else Buffer(out.device, out.nbytes, uint8)
        for b in bufs:
            if id(b) in temporaries and last_use[id(b)] == i and b.base is not None:
                free.setdefault((b.device, b.nbytes), []).append(b.base)


def _buffers_of(item: KernelItem | CopyItem) -> list[Buffer]:
    return item.buffers if isinstance(item, KernelItem) else [item.dest, item.src]


def _compile_all(kernels: list[KernelItem], debug: int) -> dict[int, CompiledKernel]:
    out: dict[int, CompiledKernel] = {}
    missing: dict[str, dict[Node, list[KernelItem]]] = {}
    for item in kernels:
        hit = _compiled.get((item.device, get_device(item.device).instance, item.ast))
        if hit is not None:
            out[id(item)] = hit
        else:
            missing.setdefault(item.device, {}).setdefault(item.ast, []).append(item)
    for device_name, by_ast in missing.items():
        device = get_device(device_name)
        linears = []
        gpu = gpu_target(device.renderer, device.arch)
        index_keys: dict[Node, str] = {}  # kernels to enter into the on-disk index once compiled
        library_key = ""
        for ast, items in by_ast.items():
            if gpu is not None:
                linears.append((ast, lower_for_gpu(ast, gpu)))
                continue
            opts = _searched_opts(ast, items[0], device, debug)
            key = _index_key(ast, device, opts)
            if key is not None:
                hit = _indexed_kernel(key, ast, device)
                if hit is not None:
                    _compiled[(device_name, device.instance, ast)] = hit
                    for item in items:
                        out[id(item)] = hit
                    continue
                index_keys[ast] = key
            lin = linearize(lower_kernel(ast, opts))
            lin.meta["contract"] = bool(opts and opts.contract)
            linears.append((ast, lin))
        empty = [(ast, lin) for ast, lin in linears if lin.outer_size == 0]
        linears = [(ast, lin) for ast, lin in linears if lin.outer_size != 0]
        for ast, lin in empty:  # no iterations (an empty tensor): never launched (_flush), so never compiled
            index_keys.pop(ast, None)
            ck = CompiledKernel(_kernel_name(ast, lin), None, lin, 0, "")
            _compiled[(device_name, device.instance, ast)] = ck
            for item in by_ast[ast]:
                out[id(item)] = ck
        if not linears:
            continue
        named = [(_kernel_name(ast, lin), lin) for ast, lin in linears]
        unique = dict(named)  # equal names mean equal code: two graphs that lower to the same program
        if device.renderer in ("python", "python_gpu"):
            library = device.compiler.compile(unique)
            sources = ["" for _ in named]
        else:
            renderer = renderer_for(device)
            rendered = {name: renderer.render_kernel(lin, name) for name, lin in unique.items()}
            sources = [rendered[name] for name, _ in named]
            unit = renderer.unit(list(rendered.values()))
            if debug >= 4:
                print(unit, file=sys.stderr)
            library = device.compiler.compile(unit)
            if index_keys:
                library_key = device.compiler.library_key(unit)
        for (ast, lin), (name, _), src in zip(linears, named, sources):
            ck = CompiledKernel(name, device.program(library, name), lin, _flop_count(lin), src)
            _compiled[(device_name, device.instance, ast)] = ck
            for item in by_ast[ast]:
                out[id(item)] = ck
            if ast in index_keys:
                entry = {"library": library_key, "name": name, "flops": ck.flops_per_iteration,
                         "outer_size": lin.outer_size, "cost": lin.cost, "contract": bool(lin.meta.get("contract")),
                         "variables": kernel_index.variable_names(lin.variables)}  # fmt: skip
                kernel_index.store(index_keys[ast], entry)
    return out


def renderer_for(device: Any) -> Any:
    """The renderer of ``device``'s source, told what the device's vector registers hold."""
    cls = RENDERERS[device.renderer or "c"]
    return cls(device.vector_widths) if cls in C_RENDERERS.values() else cls()


def _index_key(ast: Node, device: Any, opts: KernelOpts | None) -> str | None:
    """The kernel index's key of ``ast`` on ``device`` (``kernel_index``), or None where the index is not used:
    a compiler that cannot find a library by key, an AST with an arg of no stable spelling, or DEBUG=4 (which
    prints the source)."""
    identity = getattr(device.compiler, "cache_identity", None)
    if identity is None or not hasattr(device.compiler, "cached_library") or device.renderer not in RENDERERS:
        return None
    if config.debug_level() >= 4:
        return None
    ast_hash = kernel_index.structural_hash(ast)
    if ast_hash is None:
        return None
    # the vector widths pick the source's packs; a device's are its CPU's, which its identity names, unless set
    renderer = f"{device.renderer}:{','.join(map(str, device.vector_widths))}"
    return kernel_index.index_key(ast_hash, renderer, identity(), opts.key() if opts else "")


def _indexed_kernel(key: str, ast: Node, device: Any) -> CompiledKernel | None:
    """The program an earlier process compiled for this key, without lowering or rendering; None on a miss."""
    entry = kernel_index.lookup(key)
    if entry is None:
        return None
    try:
        library = device.compiler.cached_library(entry["library"])
        variables = kernel_index.variables_of(ast, entry["variables"])
        if library is None or variables is None:
            return None
        lin = LinearProgram(entry["name"], [], [], variables, None, entry["outer_size"], entry["cost"],
                            {"contract": entry["contract"], "indexed": True})  # fmt: skip
        return CompiledKernel(entry["name"], device.program(library, entry["name"]), lin, entry["flops"], "")
    except (KeyError, TypeError, ValueError):  # an entry of another shape: lower the kernel again
        return None


def _searched_opts(ast: Node, item: KernelItem, device: Any, debug: int) -> KernelOpts | None:
    """BOLT_SEARCH: the options a search timed on this device found for a kernel that has choices (cached on
    disk per machine); None (the heuristic) otherwise."""
    width = config.search_width()
    local_c = device.renderer == "c" and getattr(device.compiler, "parallel_compiles", False)
    if not width or not local_c or not has_choices(ast):
        return None
    log = (lambda line: print(line, file=sys.stderr)) if debug >= 1 else None
    sizes = [b.nbytes for b in item.buffers]
    return cached_search(ast, width, device, renderer_for(device), sizes, log=log)


def _kernel_name(ast: Node, lin: LinearProgram) -> str:
    kind = "r" if any(n.op is Op.ACC for n in lin.instructions) else "e"
    shape = "_".join(str(s) for s in ast.shape) or "1"
    digest = sha1(program_text(lin).encode()).hexdigest()[:8]
    return f"{kind}_{shape}_{digest}"


def _flop_count(lin: LinearProgram) -> int:
    """Floating point operations of one launch: each float ALU op times the trips of the loops around it."""
    trips, total = 1, 0
    stack: list[int] = []
    for n in lin.instructions:
        if n.op is Op.RANGE:
            extent = lin.outer_size if n is lin.global_range else int(n.src[0].arg)
            stack.append(extent)
            trips *= max(extent, 1)
        elif n.op is Op.ENDRANGE:
            trips //= max(stack.pop(), 1)
        elif (n.op in ALU and n.dtype.is_float) or n.op is Op.ACC_UPDATE:
            total += trips * (2 if n.op is Op.MULACC or n.arg is Op.MULACC else 1)
    return total * (lin.outer_size if "gpu" in lin.meta else 1)  # a GPU program's instructions are per thread


def _print_kernel_line(ck: CompiledKernel, item: KernelItem, seconds: float) -> None:
    gflops = ck.flops_per_iteration / max(seconds, 1e-9) / 1e9
    nbytes = sum(b.nbytes for b in item.buffers)
    gbs = nbytes / max(seconds, 1e-9) / 1e9
    print(
        f"  {ck.name:<32} {seconds * 1e6:9.1f} us  {gflops:8.2f} GFLOP/s  {gbs:8.2f} GB/s  on {item.device}",
        file=sys.stderr,
    )


def _print_schedule(sched: Schedule, compiled: dict[int, CompiledKernel]) -> None:
    print(f"schedule: {len(sched.items)} items", file=sys.stderr)
    for i, item in enumerate(sched.items):
        if isinstance(item, CopyItem):
            print(f"  [{i}] copy {item.src} -> {item.dest}", file=sys.stderr)
        else:
            ck = compiled[id(item)]
            bufs = ", ".join(f"#{b.uid}" for b in item.buffers)
            print(f"  [{i}] {ck.name} out/in: {bufs}", file=sys.stderr)
