"""Renderers: a linear program -> source code.

``CStyleRenderer`` prints the parts every C-like language shares (declarations, loops, accumulators, the op
table); a backend overrides strings: type names, the kernel signature, how loops are split, math functions.
float16 and bfloat16 values are computed in float and rounded back to their type after every operation, so
every device agrees with the PYTHON device, which does the same. Integer arithmetic wraps (the CPU compiles
with -fwrapv) and division by zero gives 0 instead of a crash.
"""

from __future__ import annotations

import math

from ..codegen.linearize import LinearProgram
from ..codegen.vectorize import WIDTHS, Pack, VectorPlan, plan_vectors
from ..ir.dtypes import DType, bfloat16, bool_, float16, float32, float64, int32
from ..ir.node import Node
from ..ir.ops import Op


class CStyleRenderer:
    kernel_prefix = ""
    types = {
        "bool": "_Bool",
        "int8": "int8_t",
        "uint8": "uint8_t",
        "int16": "int16_t",
        "int32": "int32_t",
        "uint32": "uint32_t",
        "int64": "int64_t",
        "float16": "float",
        "bfloat16": "float",
        "float32": "float",
        "float64": "double",
    }
    storage_types = {"float16": "half_t", "bfloat16": "uint16_t"}
    math_float = {Op.EXP2: "bolt_exp2f", Op.LOG2: "bolt_log2f", Op.SIN: "sinf", Op.SQRT: "sqrtf", Op.TRUNC: "truncf"}
    math_double = {Op.EXP2: "exp2", Op.LOG2: "log2", Op.SIN: "sin", Op.SQRT: "sqrt", Op.TRUNC: "trunc"}
    fma_float, fma_double = "__builtin_fmaf", "__builtin_fma"  # MULACC: a * b + c rounded once
    infix = {
        Op.ADD: "+",
        Op.MUL: "*",
        Op.CMPLT: "<",
        Op.CMPNE: "!=",
        Op.AND: "&",
        Op.OR: "|",
        Op.XOR: "^",
        Op.SHL: "<<",
        Op.SHR: ">>",
        Op.FDIV: "/",
    }
    preamble = ""

    # ---- values ----

    def ctype(self, dtype: DType) -> str:
        return self.types[dtype.name]

    def storage(self, dtype: DType) -> str:
        return self.storage_types.get(dtype.name, self.types[dtype.name])

    def literal(self, value: object, dtype: DType) -> str:
        if dtype == bool_:
            return "1" if value else "0"
        if dtype.is_float:
            v = float(value)  # type: ignore[arg-type]
            if math.isnan(v):
                return "NAN"
            if math.isinf(v):
                return "INFINITY" if v > 0 else "(-INFINITY)"
            text = repr(v)
            return f"{text}f" if dtype != float64 else text
        if dtype.name == "int64":
            return f"{int(value)}LL"  # type: ignore[call-overload]
        if dtype.is_unsigned:
            return f"{int(value)}u"  # type: ignore[call-overload]
        return str(int(value))  # type: ignore[call-overload]

    def round_to(self, expr: str, dtype: DType) -> str:
        """Round a float-computed value to float16/bfloat16 precision (identity for other types)."""
        if dtype == float16:
            return f"bolt_round_half({expr})"
        if dtype == bfloat16:
            return f"bolt_round_bf16({expr})"
        return expr

    def load_expr(self, ptr: str, index: str, dtype: DType) -> str:
        if dtype == float16:
            return f"bolt_half_to_float({ptr}[{index}])"
        if dtype == bfloat16:
            return f"bolt_bf16_to_float({ptr}[{index}])"
        return f"{ptr}[{index}]"

    def store_expr(self, ptr: str, index: str, value: str, dtype: DType) -> str:
        if dtype == float16:
            return f"{ptr}[{index}] = bolt_float_to_half({value});"
        if dtype == bfloat16:
            return f"{ptr}[{index}] = bolt_float_to_bf16({value});"
        return f"{ptr}[{index}] = {value};"

    def alu(self, n: Node, a: list[str]) -> str:
        op, dt = n.op, n.dtype
        src_dt = n.src[0].dtype
        if op in self.infix:
            if op in (Op.AND, Op.OR, Op.XOR) and dt == bool_:
                return f"({a[0]} {self.infix[op]} {a[1]})"
            return self.round_to(f"({a[0]} {self.infix[op]} {a[1]})", dt)
        if op is Op.NEG:
            return f"(!{a[0]})" if dt == bool_ else self.round_to(f"(-{a[0]})", dt)
        if op is Op.RECIP:
            one = "1.0" if dt == float64 else "1.0f"
            return self.round_to(f"({one} / {a[0]})", dt)
        if op in self.math_float:
            fn = (self.math_double if dt == float64 else self.math_float)[op]
            return self.round_to(f"{fn}({a[0]})", dt)
        if op is Op.MAX:  # integers; a float max is two statements (``_KernelWriter.float_max``)
            return f"({a[0]} > {a[1]} ? {a[0]} : {a[1]})"
        if op in (Op.IDIV, Op.MOD):
            if dt.is_float:
                return self.round_to(f"fmod{'f' if dt != float64 else ''}({a[0]}, {a[1]})", dt)
            if n.src[1].op is Op.CONST and n.src[1].arg not in (0, -1):
                return f"({a[0]} {'/' if op is Op.IDIV else '%'} {a[1]})"
            fn = "bolt_idiv" if op is Op.IDIV else "bolt_imod"
            return f"(({self.ctype(dt)}){fn}((int64_t)({a[0]}), (int64_t)({a[1]})))"
        if op is Op.WHERE:
            return f"({a[0]} ? {a[1]} : {a[2]})"
        if op is Op.MULACC and dt.is_float:  # one rounding; 16-bit floats fused in float32, then rounded
            fn = self.fma_double if dt == float64 else self.fma_float
            return self.round_to(f"{fn}({a[0]}, {a[1]}, {a[2]})", dt)
        if op is Op.MULACC:
            return f"({a[0]} * {a[1]} + {a[2]})"
        if op is Op.CAST:
            if dt == bool_:
                return f"({a[0]} != 0)"
            if dt.is_float and src_dt == bool_:  # as a select: GCC turns (float)(bool) after a float compare
                one, zero = self.literal(1.0, dt), self.literal(0.0, dt)  # into branches (10x slower on random data)
                return f"({a[0]} ? {one} : {zero})"
            if dt.is_float:
                return self.round_to(f"({self.ctype(dt)})({a[0]})", dt)
            if src_dt.is_float:  # float -> int: NaN and out-of-range values give 0, not undefined behaviour
                return f"bolt_f2i_{dt.name}((double)({a[0]}))"
            return f"({self.ctype(dt)})({a[0]})"
        if op is Op.BITCAST:
            return f"bolt_bitcast_{src_dt.name}_{dt.name}({a[0]})"
        raise NotImplementedError(f"renderer has no rule for {op.name}")

    # ---- whole kernels ----

    def signature(self, name: str) -> str:
        return f"void {name}(void **restrict bufs, const int64_t *restrict vars, int64_t start, int64_t end)"

    def render_kernel(self, prog: LinearProgram, name: str) -> str:
        return _KernelWriter(self, prog).write(name)

    # ---- vector packs (see codegen/vectorize.py); a renderer without vector types keeps vector_widths empty ----

    vector_widths: tuple[int, ...] = ()

    # Integer lanes (bytes of packed weights) are held widened to int32 lanes: x86 has no byte-wise vector
    # shifts or conversions, while 32-bit ones are single instructions. A result that could leave its type's
    # range (a shift left, a sum, a product) is wrapped back to it, as the scalar program's stores wrap.

    def vtype(self, p: Pack) -> str:
        return f"bolt_{'f' if p.dtype == float32 else 'i'}32x{p.width}"

    def splat(self, p: Pack, scalar: str) -> str:
        if p.mask:
            return f"bolt_splat_i32x{p.width}(-(int32_t)({scalar}))"
        if p.dtype != float32:
            return f"bolt_splat_i32x{p.width}((int32_t)({scalar}))"
        return f"bolt_splat_f32x{p.width}({scalar})"

    def vector_load(self, p: Pack, address: str) -> str:
        stored = p.lanes[0].dtype  # 16-bit floats load as float32 lanes, small integers as int32 lanes
        if stored in (float32, int32):
            return f"bolt_load_{'f' if stored == float32 else 'i'}32x{p.width}({address})"
        return f"bolt_widen_{_LANE_CODES[stored.name]}x{p.width}({address})"

    def vector_alu(self, op: Op, p: Pack, a: list[str]) -> str:
        w = p.width
        if p.mask:
            if op is Op.CMPLT:
                return f"({a[0]} < {a[1]})"
            if op in (Op.CMPNE, Op.CAST):
                return f"({a[0]} != {a[1]})" if op is Op.CMPNE else f"({a[0]} != bolt_splat_f32x{w}(0.0f))"
            if op is Op.NEG:
                return f"(~{a[0]})"
            if op is Op.WHERE:
                return f"(({a[0]} & {a[1]}) | (~{a[0]} & {a[2]}))"
            return f"({a[0]} {self.infix[op]} {a[1]})"
        if p.dtype != float32:  # integer lanes, widened to int32
            value = f"({a[0]} {self.infix[op]} {a[1]})"
            bits = 8 * p.dtype.itemsize
            if bits == 32 or op not in (Op.SHL, Op.ADD, Op.MUL):
                return value
            if p.dtype.is_unsigned:
                return f"({value} & bolt_splat_i32x{w}({(1 << bits) - 1}))"
            return f"(({value} << bolt_splat_i32x{w}({32 - bits})) >> bolt_splat_i32x{w}({32 - bits}))"
        if op is Op.NEG:
            return f"(-{a[0]})"
        if op is Op.RECIP:
            return f"(bolt_splat_f32x{w}(1.0f) / {a[0]})"
        if op is Op.MAX:
            return f"bolt_max_f32x{w}({a[0]}, {a[1]})"
        if op in (Op.EXP2, Op.LOG2):
            return f"{self.math_float[op]}_x{w}({a[0]})"
        if op is Op.WHERE:
            return f"bolt_select_f32x{w}({a[0]}, {a[1]}, {a[2]})"
        if op is Op.CAST and p.srcs[0].mask:  # bool lanes (-1/0) -> 1.0f/0.0f
            return f"__builtin_convertvector({a[0]} & 1, bolt_f32x{w})"
        if op is Op.CAST:  # integer lanes -> float32, rounded as the scalar conversion rounds
            return f"__builtin_convertvector({a[0]}, bolt_f32x{w})"
        return f"({a[0]} {self.infix[op]} {a[1]})"

    def render_unit(self, kernels: list[tuple[str, LinearProgram]]) -> str:
        """One source file holding several kernels, compiled in one compiler call."""
        return self.preamble + "\n\n".join(self.render_kernel(p, name) for name, p in kernels) + "\n"


class _KernelWriter:
    """Prints one kernel: declarations, then the instructions in order, each followed by the vector packs the plan
    places after it; scalar instructions that a pack replaced are left out."""

    def __init__(self, renderer: CStyleRenderer, prog: LinearProgram):
        self.r, self.prog = renderer, prog
        self.plan = plan_vectors(prog) if renderer.vector_widths else VectorPlan()
        self.names: dict[Node, str] = {}
        self.lines: list[str] = []
        self.indent = 1
        self.counts: dict[str, int] = {}

    def fresh(self, prefix: str) -> str:
        self.counts[prefix] = self.counts.get(prefix, 0) + 1
        return f"{prefix}{self.counts[prefix] - 1}"

    def ref(self, n: Node) -> str:
        if n.op is Op.CONST:
            return self.r.literal(n.arg, n.dtype)
        return self.names[n]

    def emit(self, text: str) -> None:
        self.lines.append("  " * self.indent + text)

    def write(self, name: str) -> str:
        r, prog = self.r, self.prog
        if prog.meta.get("contract"):  # the search chose fused multiply-adds for this kernel (see cpu.py's flags)
            self.lines.append(f"BOLT_CONTRACT {r.signature(name)} {{")
            self.lines.append("  BOLT_CONTRACT_BODY")
        else:
            self.lines.append(r.signature(name) + " {")
        for i, dt in enumerate(prog.params):
            self.emit(f"{r.storage(dt)} *restrict b{i} = ({r.storage(dt)} *)bufs[{i}];")
        for k, v in enumerate(prog.variables):
            self.names[v] = f"var_{v.arg[0]}"
            self.emit(f"const int64_t var_{v.arg[0]} = vars[{k}];")
        if prog.global_range is None:
            self.emit("if (start >= end) return;")
        for i, n in enumerate(prog.instructions):
            if n not in self.plan.skip:
                self.scalar(n)
            for p in self.plan.packs_after.get(i, ()):
                self.vector(p)
        self.lines.append("}")
        return "\n".join(self.lines)

    def scalar(self, n: Node) -> None:
        r, op, ref = self.r, n.op, self.ref
        if op in (Op.CONST, Op.VAR):
            return
        if op is Op.PARAM:
            self.names[n] = f"b{n.arg}"
        elif op is Op.RANGE:
            v = self.names[n] = self.fresh("r")
            lo, hi = ("start", "end") if n is self.prog.global_range else ("0", ref(n.src[0]))
            self.emit(f"for (int64_t {v} = {lo}; {v} < {hi}; {v}++) {{")
            self.indent += 1
        elif op is Op.ENDRANGE:
            self.indent -= 1
            self.emit("}")
        elif op is Op.LOAD:
            v = self.names[n] = self.fresh("val")
            load = r.load_expr(ref(n.src[0]), ref(n.src[1]), n.dtype)
            if len(n.src) == 3:
                load = f"({ref(n.src[2])} ? {load} : {r.literal(0, n.dtype)})"
            self.emit(f"{r.ctype(n.dtype)} {v} = {load};")
        elif op is Op.STORE:
            self.emit(r.store_expr(ref(n.src[0]), ref(n.src[1]), ref(n.src[2]), n.src[2].dtype))
        elif op is Op.ACC:
            v = self.names[n] = self.fresh("acc")
            self.emit(f"{r.ctype(n.dtype)} {v} = {ref(n.src[0])};")
        elif op is Op.ACC_UPDATE:
            acc = n.src[0]
            if n.arg is Op.MAX and n.dtype.is_float:
                self.float_max(ref(acc), ref(acc), ref(n.src[1]), n.dtype)
                return
            if n.arg is Op.MULACC:  # acc = fma(a, b, acc)
                fused = Node(Op.MULACC, n.dtype, (n.src[1], n.src[2], acc))
                self.emit(f"{ref(acc)} = {r.alu(fused, [ref(n.src[1]), ref(n.src[2]), ref(acc)])};")
                return
            combined = r.alu(Node(n.arg, n.dtype, (acc, n.src[1])), [ref(acc), ref(n.src[1])])
            self.emit(f"{ref(acc)} = {combined};")
        elif op is Op.ACC_READ:
            packed = self.plan.acc_lane.get(n.src[0])
            if packed is None:
                self.names[n] = self.names[n.src[0]]
            else:  # one lane of a vector accumulator
                v = self.names[n] = self.fresh("acc")
                self.emit(f"{r.ctype(n.dtype)} {v} = {packed[0].name}[{packed[1]}];")
        elif op is Op.MAX and n.dtype.is_float:
            v = self.names[n] = self.fresh("alu")
            self.emit(f"{r.ctype(n.dtype)} {v};")
            self.float_max(v, ref(n.src[0]), ref(n.src[1]), n.dtype)
        else:
            v = self.names[n] = self.fresh("alu")
            self.emit(f"{r.ctype(n.dtype)} {v} = {r.alu(n, [ref(s) for s in n.src])};")

    def float_max(self, out: str, a: str, b: str, dtype: DType) -> None:
        """``out = max(a, b)`` with a NaN in ``a`` winning (torch.maximum; float16/bfloat16 are computed in float,
        and a max needs no rounding), as two selects: the larger, then ``a`` where it is NaN. Written as one
        ``(a > b || a != a) ? a : b``, GCC compiled the scalar code to branches, which random data mispredicts
        (2x2 max pooling ran 8x slower); as two selects it uses a max and a blend. ``out`` may be ``a`` (an
        accumulator): ``a`` is read before it is written."""
        t = self.fresh("mx")
        self.emit(f"{self.r.ctype(dtype)} {t} = ({a} > {b} ? {a} : {b});")
        self.emit(f"{out} = ({a} != {a} ? {a} : {t});")

    def vexpr(self, p: Pack) -> str:
        """The value of a pack as an expression: its variable, or a splat or constant vector written inline."""
        if p.kind == "splat":
            return self.r.splat(p, self.ref(p.lanes[0]))
        if p.kind == "ramp":
            steps = ", ".join(str(k) for k in range(p.width))
            return f"(bolt_splat_i32x{p.width}((int32_t)({self.ref(p.lanes[0])})) + (bolt_i32x{p.width}){{{steps}}})"
        if p.kind == "read":
            return p.srcs[0].name
        if not p.name:  # a gather of constants only
            return self.gather(p)
        return p.name

    def gather(self, p: Pack) -> str:
        lanes = [self.ref(n) for n in p.lanes]
        if p.mask:
            lanes = [f"-(int32_t)({x})" for x in lanes]
        return f"({self.r.vtype(p)}){{{', '.join(lanes)}}}"

    def vector(self, p: Pack) -> None:
        r, first = self.r, p.lanes[0]
        if p.kind == "store":
            ptr, index = self.ref(first.src[0]), self.ref(first.src[1])
            self.emit(f"bolt_store_f32x{p.width}({ptr} + {index}, {self.vexpr(p.srcs[0])});")
            return
        if p.kind == "update" and first.arg is Op.MULACC:  # acc = fma(a, b, acc)
            acc, a, b = p.srcs
            self.emit(f"{acc.name} = bolt_fma_f32x{p.width}({self.vexpr(a)}, {self.vexpr(b)}, {acc.name});")
            return
        if p.kind == "update":
            acc, body = p.srcs
            combined = r.vector_alu(first.arg, acc, [acc.name, self.vexpr(body)])
            self.emit(f"{acc.name} = {combined};")
            return
        p.name = self.fresh("v")
        if p.kind == "acc":
            value = self.vexpr(p.srcs[0]) if p.srcs else r.splat(p, self.ref(first.src[0]))
        elif p.kind == "load":
            value = r.vector_load(p, f"{self.ref(first.src[0])} + {self.ref(first.src[1])}")
            if len(first.src) == 3:
                value = f"({self.ref(first.src[2])} ? {value} : bolt_splat_f32x{p.width}(0.0f))"
        elif p.kind == "mload":
            ptr = f"{self.ref(first.src[0])} + {self.ref(first.src[1])}"
            value = f"bolt_mload_f32x{p.width}({ptr}, {self.vexpr(p.srcs[0])})"
        elif p.kind == "gather":
            value = self.gather(p)
        else:
            value = r.vector_alu(first.op, p, [self.vexpr(s) for s in p.srcs])
        self.emit(f"{r.vtype(p)} {p.name} = {value};")


# the type code of packed small integers in vector type names: bolt_u8x8, ...
_LANE_CODES = {"int16": "i16", "int8": "i8", "uint8": "u8", "float16": "f16", "bfloat16": "bf16"}


def _vector_helpers(widths: tuple[int, ...]) -> str:
    """Vector types of 4 and 8 float32 (and int32 mask) lanes in the GCC/Clang vector extension, and of 4 and 8
    small integers (bytes of packed weights); unaligned loads and stores through memcpy, which compilers turn
    into one unaligned vector move."""
    out = []
    for w in widths:
        inline = "static inline __attribute__((always_inline))"
        small = (("u8", "uint8_t", 1), ("i8", "int8_t", 1), ("i16", "int16_t", 2), ("u16", "uint16_t", 2))
        for code, ctype, size in small:
            t = f"bolt_{code}x{w}"
            out.append(f"typedef {ctype} {t} __attribute__((vector_size({size * w})));")
    for w in widths:
        f, i = f"bolt_f32x{w}", f"bolt_i32x{w}"
        inline = "static inline __attribute__((always_inline))"
        out += [
            f"typedef float {f} __attribute__((vector_size({4 * w})));",
            f"typedef int32_t {i} __attribute__((vector_size({4 * w})));",
            f"{inline} {f} bolt_load_{f[5:]}(const float *p) {{ {f} v; __builtin_memcpy(&v, p, sizeof v); return v; }}",
            f"{inline} void bolt_store_{f[5:]}(float *p, {f} v) {{ __builtin_memcpy(p, &v, sizeof v); }}",
            f"{inline} {f} bolt_splat_{f[5:]}(float s) {{ return ({f}){{{', '.join(['s'] * w)}}}; }}",
            f"{inline} {i} bolt_splat_{i[5:]}(int32_t s) {{ return ({i}){{{', '.join(['s'] * w)}}}; }}",
            f"{inline} {i} bolt_load_{i[5:]}(const int32_t *p) {{ {i} v; __builtin_memcpy(&v, p, sizeof v); "
            "return v; }",
            f"{inline} {f} bolt_select_{f[5:]}({i} m, {f} a, {f} b) {{ return ({f})((m & ({i})a) | (~m & ({i})b)); }}",
            f"{inline} {f} bolt_max_{f[5:]}({f} a, {f} b) {{ return bolt_select_{f[5:]}((a > b) | (a != a), a, b); }}",
        ]
    out.append(_MASKED_LOADS)
    out.append(_WIDENING_LOADS)
    out += [_VECTOR_FMA.replace("{W}", str(w)) for w in widths]
    out += [_VECTOR_MATH.replace("{W}", str(w)) for w in widths]
    return "\n".join(out)


# A masked load reads no lane whose mask is clear (no fault past a buffer's end); AVX has it as one instruction.
# w packed small integers -> w int32 lanes. Through a small vector and __builtin_convertvector, GCC moves the
# bytes through a general register one by one; x86's zero/sign-extending loads do it in one instruction.
_WIDENING_LOADS = """#if defined(__AVX2__)
#include <immintrin.h>
#define bolt_widen_u8x8(p) ((bolt_i32x8)_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p))))
#define bolt_widen_i8x8(p) ((bolt_i32x8)_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p))))
#define bolt_widen_i16x8(p) ((bolt_i32x8)_mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i *)(p))))
#define BOLT_FMADD_8 _mm256_fmadd_ps
#define BOLT_FMADD_4 _mm_fmadd_ps
#define bolt_widen_bf16x8(p) \\
  ((bolt_f32x8)(((bolt_i32x8)_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p)))) << 16))
#else
#define bolt_widen_bf16x8(p) bolt_widen_bf16_generic(bolt_u16x8, bolt_i32x8, bolt_f32x8, p)
#define bolt_widen_u8x8(p) bolt_widen_generic(bolt_u8x8, bolt_i32x8, p)
#define bolt_widen_i8x8(p) bolt_widen_generic(bolt_i8x8, bolt_i32x8, p)
#define bolt_widen_i16x8(p) bolt_widen_generic(bolt_i16x8, bolt_i32x8, p)
#endif
#define bolt_widen_u8x4(p) bolt_widen_generic(bolt_u8x4, bolt_i32x4, p)
#define bolt_widen_i8x4(p) bolt_widen_generic(bolt_i8x4, bolt_i32x4, p)
#define bolt_widen_i16x4(p) bolt_widen_generic(bolt_i16x4, bolt_i32x4, p)
#define bolt_widen_bf16x4(p) bolt_widen_bf16_generic(bolt_u16x4, bolt_i32x4, bolt_f32x4, p)
#if defined(__F16C__)
#define bolt_widen_f16x8(p) ((bolt_f32x8)_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p))))
#define bolt_widen_f16x4(p) ((bolt_f32x4)_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(p))))
#else
#define bolt_widen_f16x8(p) bolt_widen_f16_generic(bolt_f32x8, 8, p)
#define bolt_widen_f16x4(p) bolt_widen_f16_generic(bolt_f32x4, 4, p)
#endif
#define bolt_widen_f16_generic(wide, w, p) ({ \\
  wide bolt_v_; \\
  for (int bolt_k_ = 0; bolt_k_ < (w); bolt_k_++) bolt_v_[bolt_k_] = bolt_half_to_float((p)[bolt_k_]); \\
  bolt_v_; })
#define bolt_widen_bf16_generic(small, wide, fwide, p) ({ \\
  small bolt_v_; __builtin_memcpy(&bolt_v_, (p), sizeof bolt_v_); \\
  (fwide)(__builtin_convertvector(bolt_v_, wide) << 16); })
#define bolt_widen_generic(small, wide, p) \\
  ({ small bolt_v_; __builtin_memcpy(&bolt_v_, (p), sizeof bolt_v_); __builtin_convertvector(bolt_v_, wide); })
"""

# fma lane by lane, each lane's result C's fmaf's: one instruction where the CPU has it (x86 FMA3, which
# -march=native enables), else a loop the compiler may vectorise
_VECTOR_FMA = """#if defined(__AVX2__) && defined(__FMA__) && ({W} == 8 || {W} == 4)
#define bolt_fma_f32x{W}(a, b, c) ((bolt_f32x{W})BOLT_FMADD_{W}((a), (b), (c)))
#else
static inline __attribute__((always_inline))
bolt_f32x{W} bolt_fma_f32x{W}(bolt_f32x{W} a, bolt_f32x{W} b, bolt_f32x{W} c) {
  bolt_f32x{W} r;
  for (int k = 0; k < {W}; k++) r[k] = __builtin_fmaf(a[k], b[k], c[k]);
  return r;
}
#endif"""

# bolt_exp2f and bolt_log2f (see C_PREAMBLE) lane by lane: the same operations in the same order on every lane,
# branches as selects, floorf as a truncation corrected downwards (exact on the clamped range), so each lane's
# result is bit for bit the scalar function's.
_VECTOR_MATH = """static inline bolt_f32x{W} bolt_exp2f_x{W}(bolt_f32x{W} x) {
  bolt_f32x{W} lo = bolt_splat_f32x{W}(-150.0f), hi = bolt_splat_f32x{W}(128.0f);
  bolt_f32x{W} xc = bolt_select_f32x{W}(x < lo, lo, bolt_select_f32x{W}(x > hi, hi, x));
  bolt_f32x{W} y = xc + bolt_splat_f32x{W}(0.5f);
  bolt_i32x{W} valid = x == x;
  bolt_i32x{W} yi = __builtin_convertvector(bolt_select_f32x{W}(valid, y, bolt_splat_f32x{W}(0.0f)), bolt_i32x{W});
  bolt_f32x{W} t = __builtin_convertvector(yi, bolt_f32x{W});
  bolt_f32x{W} n = bolt_select_f32x{W}(t > y, t - bolt_splat_f32x{W}(1.0f), t), f = xc - n;
  bolt_f32x{W} p = bolt_splat_f32x{W}(1.5252734e-05f);
  p = p * f + bolt_splat_f32x{W}(1.5403530e-04f); p = p * f + bolt_splat_f32x{W}(1.3333558e-03f);
  p = p * f + bolt_splat_f32x{W}(9.6181291e-03f); p = p * f + bolt_splat_f32x{W}(5.5504109e-02f);
  p = p * f + bolt_splat_f32x{W}(2.4022651e-01f); p = p * f + bolt_splat_f32x{W}(6.9314718e-01f);
  p = p * f + bolt_splat_f32x{W}(1.0f);
  bolt_i32x{W} ni = __builtin_convertvector(bolt_select_f32x{W}(valid, n, bolt_splat_f32x{W}(0.0f)), bolt_i32x{W});
  bolt_i32x{W} n1 = ni >> 1, n2 = ni - n1;
  bolt_f32x{W} f1 = (bolt_f32x{W})((n1 + 127) << 23), f2 = (bolt_f32x{W})((n2 + 127) << 23);
  return bolt_select_f32x{W}(valid, p * f1 * f2, x);
}
static inline bolt_f32x{W} bolt_log2f_x{W}(bolt_f32x{W} x) {
  bolt_i32x{W} tiny = x < bolt_splat_f32x{W}(1.17549435e-38f);
  bolt_f32x{W} xs = bolt_select_f32x{W}(tiny, x * bolt_splat_f32x{W}(8388608.0f), x);
  bolt_i32x{W} u = (bolt_i32x{W})xs;
  bolt_i32x{W} e = ((u >> 23) & 0xFF) - 127;
  bolt_f32x{W} m = (bolt_f32x{W})((u & 0x007FFFFF) | 0x3F800000);
  bolt_i32x{W} big = m > bolt_splat_f32x{W}(1.41421356f);
  m = bolt_select_f32x{W}(big, m * bolt_splat_f32x{W}(0.5f), m);
  e = e + (big & 1);
  bolt_f32x{W} t = (m - bolt_splat_f32x{W}(1.0f)) / (m + bolt_splat_f32x{W}(1.0f)), t2 = t * t;
  bolt_f32x{W} p = bolt_splat_f32x{W}(0.22222222f);
  p = p * t2 + bolt_splat_f32x{W}(0.28571429f); p = p * t2 + bolt_splat_f32x{W}(0.4f);
  p = p * t2 + bolt_splat_f32x{W}(0.66666667f); p = p * t2 + bolt_splat_f32x{W}(2.0f);
  bolt_f32x{W} r = __builtin_convertvector(e - (tiny & 23), bolt_f32x{W}) + p * t * bolt_splat_f32x{W}(1.44269504f);
  r = bolt_select_f32x{W}(x == bolt_splat_f32x{W}(0.0f), bolt_splat_f32x{W}(-INFINITY), r);
  r = bolt_select_f32x{W}((x < bolt_splat_f32x{W}(0.0f)) | (x != x), bolt_splat_f32x{W}(NAN), r);
  return bolt_select_f32x{W}(x == bolt_splat_f32x{W}(INFINITY), bolt_splat_f32x{W}(INFINITY), r);
}
"""

_MASKED_LOADS = """#if defined(__AVX__)
#define bolt_mload_f32x8(p, m) ((bolt_f32x8)__builtin_ia32_maskloadps256((const bolt_f32x8 *)(p), (m)))
#define bolt_mload_f32x4(p, m) ((bolt_f32x4)__builtin_ia32_maskloadps((const bolt_f32x4 *)(p), (m)))
#else
static inline bolt_f32x8 bolt_mload_f32x8(const float *p, bolt_i32x8 m) {
  bolt_f32x8 v; for (int i = 0; i < 8; i++) v[i] = m[i] ? p[i] : 0.0f; return v;
}
static inline bolt_f32x4 bolt_mload_f32x4(const float *p, bolt_i32x4 m) {
  bolt_f32x4 v; for (int i = 0; i < 4; i++) v[i] = m[i] ? p[i] : 0.0f; return v;
}
#endif"""


def _f2i_helpers() -> str:
    out = []
    limits = {
        "int8": ("int8_t", -128.0, 127.0),
        "uint8": ("uint8_t", 0.0, 255.0),
        "int16": ("int16_t", -32768.0, 32767.0),
        "int32": ("int32_t", -2147483648.0, 2147483647.0),
        "uint32": ("uint32_t", 0.0, 4294967295.0),
        "int64": ("int64_t", -9223372036854775808.0, 9223372036854774784.0),
    }
    for name, (ct, lo, hi) in limits.items():
        # in-range values truncate; out-of-range wrap through int64 like numpy/torch on x86 do for narrow types
        out.append(
            f"static inline {ct} bolt_f2i_{name}(double x) {{ return (x != x) ? 0 : "
            f"(x >= {lo!r} && x <= {hi!r}) ? ({ct})x : "
            f"(x > -9.2e18 && x < 9.2e18) ? ({ct})(int64_t)x : ({ct})INT64_MIN; }}"
        )
    return "\n".join(out)


def _bitcast_helpers() -> str:
    pairs = [
        ("float32", "float", "int32", "int32_t"),
        ("int32", "int32_t", "float32", "float"),
        ("float32", "float", "uint32", "uint32_t"),
        ("uint32", "uint32_t", "float32", "float"),
        ("float64", "double", "int64", "int64_t"),
        ("int64", "int64_t", "float64", "double"),
    ]
    return "\n".join(
        f"static inline {tt} bolt_bitcast_{a}_{b}({ft} x) {{ {tt} y; __builtin_memcpy(&y, &x, sizeof y); return y; }}"
        for a, ft, b, tt in pairs
    )


C_PREAMBLE = (
    """#include <stdint.h>
#include <math.h>
typedef _Float16 half_t;
static inline float bolt_half_to_float(half_t h) { return (float)h; }
static inline half_t bolt_float_to_half(float f) { return (half_t)f; }
static inline float bolt_round_half(float f) { return (float)(half_t)f; }
static inline float bolt_bf16_to_float(uint16_t b) {
  uint32_t u = (uint32_t)b << 16; float f; __builtin_memcpy(&f, &u, 4); return f;
}
static inline uint16_t bolt_float_to_bf16(float f) {
  uint32_t u; __builtin_memcpy(&u, &f, 4);
  if (f != f) return 0x7FC0;
  u += 0x7FFF + ((u >> 16) & 1);
  return (uint16_t)(u >> 16);
}
static inline float bolt_round_bf16(float f) { return bolt_bf16_to_float(bolt_float_to_bf16(f)); }
/* exp2 and log2 in plain arithmetic, so loops that call them vectorise (libm's do not); within 2 ulp. */
static inline float bolt_exp2f(float x) {
  float xc = x < -150.0f ? -150.0f : (x > 128.0f ? 128.0f : x);
  float n = __builtin_floorf(xc + 0.5f), f = xc - n;
  float p = 1.5252734e-05f;
  p = p * f + 1.5403530e-04f; p = p * f + 1.3333558e-03f; p = p * f + 9.6181291e-03f;
  p = p * f + 5.5504109e-02f; p = p * f + 2.4022651e-01f; p = p * f + 6.9314718e-01f; p = p * f + 1.0f;
  int32_t ni = (int32_t)(x == x ? n : 0.0f), n1 = ni >> 1, n2 = ni - n1;
  uint32_t s1 = (uint32_t)(n1 + 127) << 23, s2 = (uint32_t)(n2 + 127) << 23;
  float f1, f2; __builtin_memcpy(&f1, &s1, 4); __builtin_memcpy(&f2, &s2, 4);
  return x == x ? p * f1 * f2 : x;
}
static inline float bolt_log2f(float x) {
  int tiny = x < 1.17549435e-38f;
  float xs = tiny ? x * 8388608.0f : x; /* lift denormals into the normal range (2^23) */
  uint32_t u; __builtin_memcpy(&u, &xs, 4);
  int32_t e = (int32_t)((u >> 23) & 0xFF) - 127;
  uint32_t mu = (u & 0x007FFFFFu) | 0x3F800000u; float m; __builtin_memcpy(&m, &mu, 4);
  if (m > 1.41421356f) { m = m * 0.5f; e = e + 1; }
  float t = (m - 1.0f) / (m + 1.0f), t2 = t * t;
  float p = 0.22222222f; p = p * t2 + 0.28571429f; p = p * t2 + 0.4f; p = p * t2 + 0.66666667f; p = p * t2 + 2.0f;
  float r = (float)(e - (tiny ? 23 : 0)) + p * t * 1.44269504f;
  r = x == 0.0f ? -INFINITY : r;
  r = (x < 0.0f || x != x) ? NAN : r;
  return x == INFINITY ? INFINITY : r;
}
/* a kernel the search compiled with every a * b + c fused (by default only sums of products are, explicitly) */
#if defined(__clang__)
#define BOLT_CONTRACT
#define BOLT_CONTRACT_BODY _Pragma("clang fp contract(fast)")
#else
#define BOLT_CONTRACT __attribute__((optimize("fp-contract=fast")))
#define BOLT_CONTRACT_BODY
#endif
static inline int64_t bolt_idiv(int64_t a, int64_t b) { return b == 0 ? 0 : (b == -1 ? -a : a / b); }
static inline int64_t bolt_imod(int64_t a, int64_t b) { return (b == 0 || b == -1) ? 0 : a % b; }
"""
    + _f2i_helpers()
    + "\n"
    + _bitcast_helpers()
    + "\n\n"
)


class CRenderer(CStyleRenderer):
    vector_widths = WIDTHS
    preamble = C_PREAMBLE + _vector_helpers(WIDTHS) + "\n\n"


RENDERERS = {"c": CRenderer}
