"""The PYTHON device: interprets the linear program, one scalar at a time. The executable spec.

It follows the semantics every compiled backend must match: each result is rounded to its dtype (float16 and
bfloat16 included), fixed-width integers wrap, integer division truncates toward zero as C does and division
by zero gives 0. It is slow by design; tests keep its shapes small.

PYTHON_GPU (``PythonGPUDevice``) runs the programs a GPU would get (``codegen/gpu.py``) with GPU semantics:
each block in turn, its threads as generators that run in lockstep from one barrier, warp shuffle or
tensor-core MMA to the next, with the block's shared memory; it reports threads that diverge at a barrier
and reads of shared memory no thread wrote. An MMA gathers each warp's fragments by the PTX ISA's layout.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from typing import Any

from ..ir.dtypes import (
    DType,
    bf16_bits_to_float,
    bfloat16,
    cast_scalar,
    float16,
    float32,
    float_to_bf16_bits,
    wrap_int,
)
from ..ir.node import Node
from ..ir.ops import Op
from ..ir.symbolic import eval_alu
from .base import Allocator, Compiler, Device, Launch


class PythonAllocator(Allocator):
    def alloc(self, nbytes: int) -> bytearray:
        return bytearray(nbytes)

    def free(self, handle: Any, nbytes: int) -> None:
        pass

    def copyin(self, handle: bytearray, src: memoryview) -> None:
        handle[: len(src)] = src

    def copyout(self, dest: memoryview, handle: bytearray) -> None:
        dest[:] = memoryview(handle)[: len(dest)]

    def as_host_view(self, handle: bytearray, nbytes: int) -> memoryview:
        return memoryview(handle)[:nbytes]


class PythonCompiler(Compiler):
    def compile(self, source: Any) -> Any:
        return source  # the "source" is the linear program itself


_HALF = struct.Struct("<e")
_BITS16 = struct.Struct("<H")


def _view(buf: bytearray, dtype: DType) -> memoryview:
    # bool as bytes; float16 and bfloat16 as their 16-bit patterns (memoryview has no half format)
    fmt = "B" if dtype.name == "bool" else "H" if dtype in (float16, bfloat16) else dtype.fmt
    return memoryview(buf).cast(fmt)


def _read(view: memoryview, index: int, dtype: DType) -> Any:
    v = view[index]
    if dtype == bfloat16:
        return bf16_bits_to_float(v)
    if dtype == float16:
        return _HALF.unpack(_BITS16.pack(v))[0]
    if dtype.name == "bool":
        return bool(v)
    return v


def _write(view: memoryview, index: int, value: Any, dtype: DType) -> None:
    if dtype == bfloat16:
        view[index] = float_to_bf16_bits(value)
    elif dtype == float16:
        view[index] = _BITS16.unpack(_HALF.pack(value))[0]
    elif dtype.name == "bool":
        view[index] = 1 if value else 0
    else:
        view[index] = value


class PythonProgram:
    """A linear program made runnable: instructions resolved to indices, loop jumps precomputed."""

    def __init__(self, prog: Any):
        self.prog = prog
        self.instructions: list[Node] = prog.instructions
        self.position = {n: i for i, n in enumerate(self.instructions)}
        self.loop_end: dict[int, int] = {}
        self.loop_start: dict[int, int] = {}
        for i, n in enumerate(self.instructions):
            if n.op is Op.ENDRANGE:
                start = self.position[n.src[0]]
                self.loop_end[start] = i
                self.loop_start[i] = start

    def __call__(self, buffers: tuple[bytearray, ...], var_values: tuple[int, ...], start: int, end: int) -> None:
        views = [_view(b, dt) for b, dt in zip(buffers, self.prog.params)]
        values: dict[Node, Any] = {v: val for v, val in zip(self.prog.variables, var_values)}
        for _ in self.execute(views, values, start, end, {}):
            raise RuntimeError(f"PYTHON: kernel {self.prog.name} waits at a barrier, but it was not launched on a GPU")

    def execute(self, views: list[memoryview], values: dict[Node, Any], start: int, end: int,
                shared: dict[Node, list]) -> Iterator[tuple[int, Any]]:  # fmt: skip
        """Run the instructions for one thread. At a BARRIER, SHUFFLE or MMA it yields ``(position, value)`` and
        takes what the block gives back (a shuffled value, a value of the warp's product), so a block's threads
        can run in lockstep."""
        prog = self.prog
        if prog.global_range is None and start >= end:
            return
        bounds: dict[Node, int] = {}
        ins = self.instructions
        pc = 0
        while pc < len(ins):
            n = ins[pc]
            op = n.op
            if op is Op.RANGE:
                if n is prog.global_range:
                    first, stop = start, end
                else:
                    first, stop = 0, self._value(n.src[0], values)
                if first >= stop:
                    pc = self.loop_end[pc] + 1
                    continue
                values[n] = first
                bounds[n] = stop
            elif op is Op.ENDRANGE:
                r = n.src[0]
                values[r] += 1
                if values[r] < bounds[r]:
                    pc = self.loop_start[pc] + 1
                    continue
            elif op is Op.PARAM:
                values[n] = views[n.arg]
            elif op is Op.LOAD:
                if n.src[0].op is Op.LOCAL:
                    values[n] = _read_shared(shared[n.src[0]], self._value(n.src[1], values), prog.name)
                elif len(n.src) < 3 or self._value(n.src[2], values):
                    values[n] = _read(values[n.src[0]], self._value(n.src[1], values), n.dtype)
                else:
                    values[n] = cast_scalar(0, n.dtype)
            elif op is Op.STORE:
                if len(n.src) < 4 or self._value(n.src[3], values):
                    value = self._value(n.src[2], values)
                    if n.src[0].op is Op.LOCAL:
                        _write_shared(shared[n.src[0]], self._value(n.src[1], values), value, prog.name)
                    else:
                        _write(values[n.src[0]], self._value(n.src[1], values), value, n.src[2].dtype)
            elif op is Op.ACC:
                values[n] = self._value(n.src[0], values)
            elif op is Op.ACC_UPDATE:
                acc = n.src[0]
                if n.arg is Op.MULACC:  # acc = fma(a, b, acc)
                    factors = [self._value(n.src[1], values), self._value(n.src[2], values)]
                    values[acc] = eval_alu(Op.MULACC, n.dtype, factors + [values[acc]])
                else:
                    values[acc] = eval_alu(n.arg, n.dtype, [values[acc], self._value(n.src[1], values)])
            elif op is Op.ACC_READ:
                values[n] = values[n.src[0]]
            elif op is Op.BITCAST:
                values[n] = _bitcast(self._value(n.src[0], values), n.src[0].dtype, n.dtype)
            elif op is Op.BARRIER:
                yield pc, None
            elif op is Op.SHUFFLE:
                values[n] = yield pc, self._value(n.src[0], values)
            elif op is Op.MMA:
                values[n] = yield pc, tuple(self._value(s, values) for s in n.src)
            elif op not in (Op.CONST, Op.VAR, Op.LOCAL):
                values[n] = eval_alu(op, n.dtype, [self._value(s, values) for s in n.src])
            pc += 1

    @staticmethod
    def _value(n: Node, values: dict[Node, Any]) -> Any:
        return n.arg if n.op is Op.CONST else values[n]


def _read_shared(memory: list, index: int, kernel: str) -> Any:
    if not 0 <= index < len(memory):
        raise IndexError(f"PYTHON_GPU: kernel {kernel} reads shared memory [{index}] past its {len(memory)} elements")
    value = memory[index]
    if value is None:
        raise RuntimeError(f"PYTHON_GPU: kernel {kernel} reads shared memory [{index}] before any thread wrote it")
    return value


def _write_shared(memory: list, index: int, value: Any, kernel: str) -> None:
    if not 0 <= index < len(memory):
        raise IndexError(f"PYTHON_GPU: kernel {kernel} writes shared memory [{index}] past its {len(memory)} elements")
    memory[index] = value


class GPUProgram(PythonProgram):
    """A GPU-lowered program (``prog.meta["gpu"] = (grid, block)``) run as the GPU would: every block in turn,
    its threads in lockstep from barrier to barrier, each with its own values of the block and thread ranges.

    A barrier, shuffle or MMA that some threads of a block reach and others do not, or reach at different
    places, is an error (on a GPU it hangs or reads garbage); so is reading shared memory no thread wrote, or a
    shuffle from a lane the block does not have."""

    WARP = 32

    def __init__(self, prog: Any):
        super().__init__(prog)
        _, self.block = prog.meta["gpu"]
        specials = {s for n in self.instructions for s in n.src if s.op is Op.RANGE and s.arg[1] in ("block", "thread")}
        self.block_range = next((s for s in specials if s.arg[1] == "block"), None)
        self.thread_range = next((s for s in specials if s.arg[1] == "thread"), None)
        self.locals = [n for n in self.instructions if n.op is Op.LOCAL]
        self._last_mma: tuple | None = None  # (sources, fragments, D per thread) of the last MMA computed

    def __call__(self, buffers: tuple[bytearray, ...], var_values: tuple[int, ...], start: int, end: int) -> None:
        views = [_view(b, dt) for b, dt in zip(buffers, self.prog.params)]
        for block_id in range(end // self.block):
            shared = {n: [None] * n.arg[1] for n in self.locals}
            threads = []
            for thread_id in range(self.block):
                values: dict[Node, Any] = dict(zip(self.prog.variables, var_values))
                values[self.block_range] = block_id
                values[self.thread_range] = thread_id
                threads.append(self.execute(views, values, 0, 1, shared))
            self._run_block(threads)

    def _run_block(self, threads: list[Iterator[tuple[int, Any]]]) -> None:
        replies: list[Any] = [None] * len(threads)
        while True:
            arrived: list[tuple[int, Any] | None] = []
            for t, thread in enumerate(threads):
                try:
                    arrived.append(thread.send(replies[t]))  # send(None) starts a thread or resumes a barrier
                except StopIteration:
                    arrived.append(None)
            if all(a is None for a in arrived):
                return
            places = {a[0] if a is not None else None for a in arrived}
            if len(places) != 1:
                where = sorted(f"{self.instructions[p].op.name}@{p}" if p is not None else "the end" for p in places)
                raise RuntimeError(f"PYTHON_GPU: kernel {self.prog.name}: the threads of a block diverge at a "
                                   f"barrier or shuffle (they are at {', '.join(where)})")  # fmt: skip
            pc = places.pop()
            n = self.instructions[pc]
            if n.op is Op.BARRIER:
                replies = [None] * len(threads)
                continue
            values = [a[1] for a in arrived]  # type: ignore[index]
            if n.op is Op.MMA:
                replies = self._mma(n, values)
                continue
            replies = [self._shuffle(n, values, t) for t in range(len(threads))]

    def _mma(self, n: Node, fragments: list[tuple]) -> list[float]:
        """Value ``n.arg[2]`` of D for every thread, each warp's product computed from its threads' fragments.
        The four MMA nodes of one instruction share their sources: the product is computed once for them."""
        shape, element, r = n.arg
        if shape != "m16n8k16" or len(fragments) % self.WARP:
            raise RuntimeError(f"PYTHON_GPU: kernel {self.prog.name}: an MMA {shape} of {len(fragments)} threads "
                               "(only m16n8k16, by whole warps)")  # fmt: skip
        if self._last_mma is None or self._last_mma[:2] != (n.src, fragments):
            warps = [fragments[w : w + self.WARP] for w in range(0, len(fragments), self.WARP)]
            self._last_mma = (n.src, fragments, [d for lanes in warps for d in _mma_m16n8k16(lanes, element)])
        return [d[r] for d in self._last_mma[2]]

    def _shuffle(self, n: Node, values: list[Any], t: int) -> Any:
        mode, k = n.arg
        lane, base = t % self.WARP, t - t % self.WARP
        source = lane + k if mode == "down" else k
        if mode == "down" and source >= self.WARP:
            return values[t]
        if base + source >= len(values):
            raise RuntimeError(f"PYTHON_GPU: kernel {self.prog.name} shuffles from lane {source} of a warp that has "
                               f"only {len(values) - base} threads")  # fmt: skip
        return values[base + source]


def _mma_m16n8k16(lanes: list[tuple], element: DType) -> list[tuple[float, ...]]:
    """D = A @ B + C for one warp, from its 32 lanes' MMA sources ``(a0..a3, b0, b1, c0..c3)``: the A and B
    registers hold two elements each, the lower-numbered in the low 16 bits (a0 and a1 in the first). Each
    element's place follows the PTX ISA ("Matrix Fragments for mma.m16n8k16 with floating point type"), with
    group = lane >> 2 and pair = lane % 4:

        A (16 x 16) a_i: row group, + 8 for i in 2, 3, 6, 7;    column pair * 2 + (i & 1), + 8 for i >= 4
        B (16 x 8)  b_i: row pair * 2 + (i & 1), + 8 for i >= 2; column group
        C, D (16 x 8) c_i: row group, + 8 for i >= 2;           column pair * 2 + (i & 1)

    The products of 16-bit floats are exact; each value of D is their exact sum with C, rounded to float32
    (the hardware adds in an order and precision of its own: the tests allow float32 rounding)."""
    a = [[0.0] * 16 for _ in range(16)]
    b = [[0.0] * 8 for _ in range(16)]
    c = [[0.0] * 8 for _ in range(16)]
    for lane, srcs in enumerate(lanes):
        group, pair = lane >> 2, lane % 4
        for i, v in enumerate(_halves(srcs[0:4], element)):
            a[group + (8 if i in (2, 3, 6, 7) else 0)][pair * 2 + (i & 1) + (8 if i >= 4 else 0)] = v
        for i, v in enumerate(_halves(srcs[4:6], element)):
            b[pair * 2 + (i & 1) + (8 if i >= 2 else 0)][group] = v
        for i, v in enumerate(srcs[6:10]):
            c[group + (8 if i >= 2 else 0)][pair * 2 + (i & 1)] = v
    d = [[cast_scalar(math.fsum([c[row][col]] + [a[row][k] * b[k][col] for k in range(16)]), float32)
          for col in range(8)] for row in range(16)]  # fmt: skip
    return [tuple(d[(lane >> 2) + (8 if i >= 2 else 0)][(lane % 4) * 2 + (i & 1)] for i in range(4))
            for lane in range(len(lanes))]  # fmt: skip


def _halves(words: tuple, element: DType) -> list[float]:
    """The 16-bit floats of 32-bit registers, the low half of each first."""
    bits = [w >> shift & 0xFFFF for w in words for shift in (0, 16)]
    if element == bfloat16:
        return [bf16_bits_to_float(h) for h in bits]
    return [_HALF.unpack(_BITS16.pack(h))[0] for h in bits]


def _bitcast(value: Any, src: DType, dst: DType) -> Any:
    raw = struct.pack(src.fmt if src != bfloat16 else "H", value if src != bfloat16 else float_to_bf16_bits(value))
    out = struct.unpack(dst.fmt if dst != bfloat16 else "H", raw)[0]
    if dst == bfloat16:
        return bf16_bits_to_float(out)
    return wrap_int(out, dst) if dst.is_int else out


class PythonDevice(Device):
    renderer = "python"

    def __init__(self, name: str):
        super().__init__(name)
        self._allocator = PythonAllocator()
        self._compiler = PythonCompiler()

    @property
    def allocator(self) -> Allocator:
        return self._allocator

    @property
    def compiler(self) -> Compiler:
        return self._compiler

    def program(self, library: Any, name: str) -> PythonProgram:
        return PythonProgram(library[name])

    def run(self, launches: list[Launch]) -> None:
        for launch in launches:
            launch.program(launch.buffers, launch.var_values, 0, launch.size)

    def self_check(self) -> str:
        return "interprets kernels in Python (slow; the reference for the others)"


class PythonGPUDevice(PythonDevice):
    """PYTHON_GPU: the engine lowers its kernels for a GPU (``codegen/gpu.py``: blocks, threads, shared memory,
    barriers, warp shuffles, with small blocks and tiles) and this device runs them with GPU semantics, so GPU
    code generation is checked where there is no GPU."""

    renderer = "python_gpu"

    def program(self, library: Any, name: str) -> PythonProgram:
        prog = library[name]
        return GPUProgram(prog) if "gpu" in prog.meta else PythonProgram(prog)

    def self_check(self) -> str:
        return "runs GPU-lowered kernels in Python with GPU semantics (grid, blocks, shared memory, barriers)"
