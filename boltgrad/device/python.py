"""The PYTHON device: interprets the linear program, one scalar at a time. The executable spec.

It follows the semantics every compiled backend must match: each result is rounded to its dtype (float16 and
bfloat16 included), fixed-width integers wrap, integer division truncates toward zero as C does and division
by zero gives 0. It is slow by design; tests keep its shapes small.
"""

from __future__ import annotations

import struct
from typing import Any

from ..ir.dtypes import DType, bf16_bits_to_float, bfloat16, cast_scalar, float16, float_to_bf16_bits, wrap_int
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
        prog = self.prog
        views = [_view(b, dt) for b, dt in zip(buffers, prog.params)]
        values: dict[Node, Any] = {v: val for v, val in zip(prog.variables, var_values)}
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
                ok = len(n.src) < 3 or self._value(n.src[2], values)
                if ok:
                    values[n] = _read(values[n.src[0]], self._value(n.src[1], values), n.dtype)
                else:
                    values[n] = cast_scalar(0, n.dtype)
            elif op is Op.STORE:
                dt = n.src[2].dtype
                _write(values[n.src[0]], self._value(n.src[1], values), self._value(n.src[2], values), dt)
            elif op is Op.ACC:
                values[n] = self._value(n.src[0], values)
            elif op is Op.ACC_UPDATE:
                acc = n.src[0]
                values[acc] = eval_alu(n.arg, n.dtype, [values[acc], self._value(n.src[1], values)])
            elif op is Op.ACC_READ:
                values[n] = values[n.src[0]]
            elif op is Op.BITCAST:
                values[n] = _bitcast(self._value(n.src[0], values), n.src[0].dtype, n.dtype)
            elif op not in (Op.CONST, Op.VAR):
                values[n] = eval_alu(op, n.dtype, [self._value(s, values) for s in n.src])
            pc += 1

    @staticmethod
    def _value(n: Node, values: dict[Node, Any]) -> Any:
        return n.arg if n.op is Op.CONST else values[n]


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
