"""The CUDA renderer: GPU-lowered linear programs (``codegen/gpu.py``) -> CUDA C for NVRTC or nvcc.

Each kernel is ``extern "C" __global__ void __launch_bounds__(T) name(T0 *b0, const T1 *b1, ..., int64_t
var_x)``: buffer pointers in parameter order (those it never stores to are ``const``), then the values of its
variables. ``T`` is its block size; the CUDA device reads the block size from there and launches ``size / T``
blocks. The block and thread ranges are ``blockIdx.x`` and ``threadIdx.x``.

float16 and bfloat16 are stored as their 16-bit patterns, computed in float and rounded after every op, as the
CPU renderer and the PYTHON device do: half conversions are the PTX ``cvt`` instructions (no header needed),
bfloat16 the same bit operations as the C renderer. The source includes nothing under NVRTC (which has no
system headers), so it compiles the same with NVRTC and with nvcc.

Tensor cores (``codegen/gpu_mma.py``) are inline PTX ``mma.sync.aligned.m16n8k16``, which needs no header
either. The WMMA API (``mma.h``) would need its header under NVRTC and leaves its fragment layout unspecified,
so the PYTHON_GPU emulation could not follow it; the PTX instruction's layout is documented, and emulated.
"""

from __future__ import annotations

from ..codegen.linearize import LinearProgram
from ..ir.dtypes import bfloat16, float16, float32, float64, int32, int64
from ..ir.node import Node
from ..ir.ops import ALU, Op
from ..ir.symbolic import vrange
from .c_source import f2i_helpers
from .cstyle import CStyleRenderer, _KernelWriter

CUDA_PREAMBLE = (
    """#ifdef __CUDACC_RTC__
typedef signed char int8_t;
typedef unsigned char uint8_t;
typedef short int16_t;
typedef unsigned short uint16_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long long int64_t;
typedef unsigned long long uint64_t;
#else
#include <stdint.h>
#endif
#pragma nv_diag_suppress 177
#define BOLT_FN static __device__ __forceinline__
#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif
#ifndef NAN
#define NAN __int_as_float(0x7fffffff)
#endif
#ifndef INT64_MIN
#define INT64_MIN (-9223372036854775807LL - 1)
#endif
BOLT_FN float bolt_half_to_float(uint16_t h) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f; }
BOLT_FN uint16_t bolt_float_to_half(float f) { uint16_t h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
BOLT_FN float bolt_round_half(float f) { return bolt_half_to_float(bolt_float_to_half(f)); }
BOLT_FN float bolt_bf16_to_float(uint16_t b) { return __uint_as_float((uint32_t)b << 16); }
BOLT_FN uint16_t bolt_float_to_bf16(float f) {
  uint32_t u = __float_as_uint(f);
  if (f != f) return 0x7FC0;
  u += 0x7FFF + ((u >> 16) & 1);
  return (uint16_t)(u >> 16);
}
BOLT_FN float bolt_round_bf16(float f) { return bolt_bf16_to_float(bolt_float_to_bf16(f)); }
BOLT_FN int64_t bolt_idiv(int64_t a, int64_t b) { return b == 0 ? 0 : (b == -1 ? -a : a / b); }
BOLT_FN int64_t bolt_imod(int64_t a, int64_t b) { return (b == 0 || b == -1) ? 0 : a % b; }
BOLT_FN int32_t bolt_bitcast_float32_int32(float x) { return __float_as_int(x); }
BOLT_FN float bolt_bitcast_int32_float32(int32_t x) { return __int_as_float(x); }
BOLT_FN uint32_t bolt_bitcast_float32_uint32(float x) { return __float_as_uint(x); }
BOLT_FN float bolt_bitcast_uint32_float32(uint32_t x) { return __uint_as_float(x); }
BOLT_FN int64_t bolt_bitcast_float64_int64(double x) { return __double_as_longlong(x); }
BOLT_FN double bolt_bitcast_int64_float64(int64_t x) { return __longlong_as_double(x); }
BOLT_FN int16_t bolt_bitcast_float16_int16(float x) { return (int16_t)bolt_float_to_half(x); }
BOLT_FN int16_t bolt_bitcast_bfloat16_int16(float x) { return (int16_t)bolt_float_to_bf16(x); }
/* warp shuffles over every type a kernel holds (the hardware moves 32 or 64 bits) */
template <typename T> BOLT_FN T bolt_shfl_down(T v, int k) { return __shfl_down_sync(0xffffffffu, v, k); }
template <typename T> BOLT_FN T bolt_shfl_idx(T v, int k) { return __shfl_sync(0xffffffffu, v, k); }
#define BOLT_NARROW_SHUFFLE(T) \\
  template <> __device__ __forceinline__ T bolt_shfl_down<T>(T v, int k) { \\
    return (T)__shfl_down_sync(0xffffffffu, (int)v, k); } \\
  template <> __device__ __forceinline__ T bolt_shfl_idx<T>(T v, int k) { \\
    return (T)__shfl_sync(0xffffffffu, (int)v, k); }
BOLT_NARROW_SHUFFLE(bool)
BOLT_NARROW_SHUFFLE(int8_t)
BOLT_NARROW_SHUFFLE(uint8_t)
BOLT_NARROW_SHUFFLE(int16_t)
"""
    + f2i_helpers().replace("static inline", "BOLT_FN")
    + "\n\n"
)


class CUDARenderer(CStyleRenderer):
    types = {**CStyleRenderer.types, "bool": "bool"}
    storage_types = {"float16": "uint16_t", "bfloat16": "uint16_t"}
    math_float = {Op.EXP2: "exp2f", Op.LOG2: "log2f", Op.SIN: "sinf", Op.SQRT: "sqrtf", Op.TRUNC: "truncf"}
    fma_float, fma_double = "fmaf", "fma"
    preamble = CUDA_PREAMBLE

    def render_kernel(self, prog: LinearProgram, name: str) -> str:
        if "gpu" not in prog.meta:
            raise ValueError(f"CUDA renderer: kernel {name} was not lowered for a GPU (codegen/gpu.py)")
        return _CUDAKernelWriter(self, prog).write(name)


class _CUDAKernelWriter(_KernelWriter):
    """Index arithmetic is int64 in the program; a GPU does 64-bit integer math in several instructions and
    registers, so an int64 value whose range (``ir.symbolic.vrange``) and operands' ranges fit 32 bits is
    computed and kept as ``int`` (the same values: no intermediate result leaves that range)."""

    def fits32(self, n: Node) -> bool:
        lo, hi = vrange(n)
        return n.dtype in (int64, int32) and -(2**31) <= lo and hi < 2**31

    def ref32(self, n: Node) -> str:
        if n.op is Op.CONST and n.dtype == int64 and self.fits32(n):
            return str(int(n.arg))
        return self.ref(n)

    def narrow(self, n: Node) -> bool:
        """Whether an op on int64 values can be done in 32 bits: its operands and (int) result fit."""
        ints = [s for s in n.src if s.dtype == int64]
        if not ints or n.op not in ALU or n.op in (Op.SHL, Op.SHR):
            return False
        if n.dtype == int64 and not self.fits32(n):
            return False
        return all(self.fits32(s) and (s.op is Op.CONST or s in self.narrowed) for s in ints)

    def write(self, name: str) -> str:
        r, prog = self.r, self.prog
        _, block = prog.meta["gpu"]
        written = {n.src[0].arg for n in prog.instructions if n.op is Op.STORE and n.src[0].op is Op.PARAM}
        args = [f"{'' if i in written else 'const '}{r.storage(dt)} *__restrict__ b{i}"
                for i, dt in enumerate(prog.params)]  # fmt: skip
        for v in prog.variables:
            self.names[v] = f"var_{v.arg[0]}"
            args.append(f"const int64_t var_{v.arg[0]}")
        bounds = f"{block}, {prog.meta['blocks_per_sm']}" if prog.meta.get("blocks_per_sm") else f"{block}"
        self.lines.append(f'extern "C" __global__ void __launch_bounds__({bounds}) {name}({", ".join(args)}) {{')
        specials = {s for n in prog.instructions for s in n.src if s.op is Op.RANGE and s.arg[1] in ("block", "thread")}
        self.narrowed: set[Node] = set()
        users = _users(prog)
        self.fusable = _summands(prog, users)
        self.mma_sums = _mma_sums(prog, users)
        # float16/bfloat16 loads only taken as bits (the MMA tiles' words): not converted to float and back
        self.bits_only = {n for n in users if _param_load(n) and all(_as_bits(u) for u in users[n])}
        self.mma_done: set[tuple[Node, ...]] = set()  # the sources of the MMA instructions written so far
        for s in sorted(specials, key=lambda s: s.arg[1]):
            self.names[s] = "gpu_block" if s.arg[1] == "block" else "gpu_thread"
            source = "blockIdx.x" if s.arg[1] == "block" else "threadIdx.x"
            if self.fits32(s):
                self.narrowed.add(s)
                self.emit(f"const int {self.names[s]} = (int){source};")
            else:
                self.emit(f"const int64_t {self.names[s]} = (int64_t){source};")
        for n in prog.instructions:
            self.scalar(n)
        self.lines.append("}")
        return "\n".join(self.lines)

    def scalar(self, n: Node) -> None:
        r, op, ref = self.r, n.op, self.ref
        if op is Op.RANGE and self.fits32(n):
            v = self.names[n] = self.fresh("r")
            self.narrowed.add(n)
            self.emit(f"for (int {v} = 0; {v} < {self.ref32(n.src[0])}; {v}++) {{")
            self.indent += 1
        elif op in ALU and self.narrow(n):
            v = self.names[n] = self.fresh("alu")
            if n.dtype == int64:
                self.narrowed.add(n)
            ctype = "int" if n.dtype == int64 else r.ctype(n.dtype)
            self.emit(f"{ctype} {v} = {r.alu(n, [self.ref32(s) for s in n.src])};")
        elif op is Op.MUL and n.dtype in (float32, float64) and n not in self.fusable:
            # __fmul_rn is never fused into an fma: a * b + c rounds twice, as torch and the CPU compute it
            v = self.names[n] = self.fresh("alu")
            fn = "__fmul_rn" if n.dtype == float32 else "__dmul_rn"
            self.emit(f"{r.ctype(n.dtype)} {v} = {fn}({ref(n.src[0])}, {ref(n.src[1])});")
        elif op is Op.LOCAL:
            v = self.names[n] = self.fresh("smem")
            self.emit(f"__shared__ __align__(16) {r.ctype(n.dtype)} {v}[{n.arg[1]}];")
        elif op is Op.BARRIER:
            self.emit("__syncthreads();")
        elif op is Op.SHUFFLE:
            v = self.names[n] = self.fresh("alu")
            mode, k = n.arg
            self.emit(f"{r.ctype(n.dtype)} {v} = bolt_shfl_{mode}({ref(n.src[0])}, {k});")
        elif op is Op.MMA:
            if n not in self.mma_sums:  # else it is written where its sums are
                self.mma(n)
        elif op is Op.ACC_UPDATE and n.src[1] in self.mma_sums:
            self.mma(n.src[1])
        elif op is Op.LOAD and n in self.bits_only:
            return
        elif _as_bits(n) and _param_load(n.src[0]):
            # the 16 bits as stored: converting the loaded float back would cost two conversions per value
            v = self.names[n] = self.fresh("alu")
            load = n.src[0]
            bits = f"({r.ctype(n.dtype)}){ref(load.src[0])}[{ref(load.src[1])}]"
            if len(load.src) == 3:
                bits = f"({ref(load.src[2])} ? {bits} : ({r.ctype(n.dtype)})0)"
            self.emit(f"{r.ctype(n.dtype)} {v} = {bits};")
        elif op is Op.LOAD and n.src[0].op is Op.LOCAL:
            v = self.names[n] = self.fresh("val")
            self.emit(f"{r.ctype(n.dtype)} {v} = {ref(n.src[0])}[{ref(n.src[1])}];")
        elif op is Op.STORE and n.src[0].op is Op.LOCAL:
            gate = f"if ({ref(n.src[3])}) " if len(n.src) == 4 else ""
            self.emit(f"{gate}{ref(n.src[0])}[{ref(n.src[1])}] = {ref(n.src[2])};")
        elif op is Op.STORE and len(n.src) == 4:
            store = r.store_expr(ref(n.src[0]), ref(n.src[1]), ref(n.src[2]), n.src[2].dtype)
            self.emit(f"if ({ref(n.src[3])}) {store}")
        else:
            super().scalar(n)

    def mma(self, n: Node) -> None:
        """The tensor-core instruction of MMA node ``n`` and of the three other values of its D
        (``codegen/gpu_mma.py``), written once. Where the four values are only summed (``_mma_sums``), the
        sums' accumulators are the instruction's C and D (``+f``): no addition follows it."""
        srcs = n.src
        if srcs in self.mma_done:
            return
        self.mma_done.add(srcs)
        shape, element, _ = n.arg
        kind = {float16: "f16", bfloat16: "bf16"}[element]
        inputs = [f'"r"({self.ref(s)})' for s in srcs[:6]]
        accs = self.mma_sums.get(n)
        if accs is not None:
            c = "%0, %1, %2, %3"
            outputs = [f'"+f"({self.names[acc]})' for acc in accs]
        else:
            c = "%10, %11, %12, %13"
            values = [self.fresh("mma") for _ in range(4)]
            self.emit(f"float {', '.join(values)};")
            outputs = [f'"=f"({v})' for v in values]
            inputs += [f'"f"({self.ref(s)})' for s in srcs[6:]]
            for r, v in enumerate(values):
                self.names[Node(Op.MMA, n.dtype, srcs, (shape, element, r))] = v
        self.emit(f'asm("mma.sync.aligned.{shape}.row.col.f32.{kind}.{kind}.f32 {{%0, %1, %2, %3}}, '
                  f'{{%4, %5, %6, %7}}, {{%8, %9}}, {{{c}}};"')  # fmt: skip
        self.emit(f"    : {', '.join(outputs)} : {', '.join(inputs)});")


def _users(prog: LinearProgram) -> dict[Node, list[Node]]:
    users: dict[Node, list[Node]] = {}
    for n in prog.instructions:
        for s in n.src:
            users.setdefault(s, []).append(n)
    return users


def _param_load(n: Node) -> bool:
    return n.op is Op.LOAD and n.src[0].op is Op.PARAM


def _as_bits(n: Node) -> bool:
    """Whether ``n`` is the bits of a float16/bfloat16 value (``codegen/gpu_mma.half_bits``)."""
    return n.op is Op.BITCAST and n.src[0].dtype in (float16, bfloat16) and n.dtype.is_int


def _mma_sums(prog: LinearProgram, users: dict[Node, list[Node]]) -> dict[Node, tuple[Node, ...]]:
    """{MMA node: the accumulators of its instruction's four values, in order} for the instructions whose C is
    zero and whose values each feed one sum and nothing else (the tiled matmul's ``REDUCE(ADD, MMA)``)."""
    groups: dict[tuple[Node, ...], list[Node]] = {}
    for n in prog.instructions:
        if n.op is Op.MMA:
            groups.setdefault(n.src, []).append(n)
    out: dict[Node, tuple[Node, ...]] = {}
    for srcs, values in groups.items():
        values.sort(key=lambda v: v.arg[2])
        uses = [users.get(v, []) for v in values]
        if len(values) != 4 or any(c.op is not Op.CONST or c.arg != 0 for c in srcs[6:]):
            continue
        if all(len(u) == 1 and u[0].op is Op.ACC_UPDATE and u[0].arg is Op.ADD for u in uses):
            accs = tuple(u[0].src[0] for u in uses)
            out.update({v: accs for v in values})
    return out


def _summands(prog: LinearProgram, users: dict[Node, list[Node]]) -> set[Node]:
    """The float products that only feed a reduction's sum (an ADD accumulator, through other ADDs of the same
    sum: matmul, dot products). They may fuse into the sum as fma: a GPU sums in another order than the CPU
    anyway. Every other float product is rendered so it rounds on its own."""
    in_sum: set[Node] = set()  # ADDs whose every use is part of a sum; users come later, so walk backwards

    def feeds_sum(n: Node) -> bool:
        return all(u in in_sum or (u.op is Op.ACC_UPDATE and u.arg is Op.ADD) for u in users.get(n, ()))

    for n in reversed(prog.instructions):
        if n.op is Op.ADD and n.dtype.is_float and feeds_sum(n):
            in_sum.add(n)
    return {n for n in users if n.op is Op.MUL and feeds_sum(n)}
