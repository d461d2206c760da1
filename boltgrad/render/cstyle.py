"""Renderers: a linear program -> source code.

``CStyleRenderer`` prints the parts every C-like language shares (declarations, loops, accumulators, the op
table); a backend overrides strings: type names, the kernel signature, how loops are split, math functions.
float16 and bfloat16 values are computed in float and rounded back to their type after every operation, so
every device agrees with the PYTHON device, which does the same. Integer arithmetic wraps (the CPU compiles
with -fwrapv) and division by zero gives 0 instead of a crash.
"""

from __future__ import annotations

import functools
import math

from ..codegen.linearize import LinearProgram
from ..codegen.vectorize import WIDTHS, Pack, VectorPlan, plan_vectors
from ..ir.dtypes import DType, bfloat16, bool_, float16, float32, float64, int32
from ..ir.node import Node
from ..ir.ops import Op
from .c_source import C_PREAMBLE, INTRINSIC_HELPERS, X86_INTRINSICS, vector_helpers


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
        return self.unit([self.render_kernel(p, name) for name, p in kernels])

    def unit(self, kernels: list[str]) -> str:
        """The source file of rendered kernels: the preamble, then the kernels."""
        return self.preamble + "\n\n".join(kernels) + "\n"


class _KernelWriter:
    """Prints one kernel: declarations, then the instructions in order, each followed by the vector packs the plan
    places after it; scalar instructions that a pack replaced are left out."""

    def __init__(self, renderer: CStyleRenderer, prog: LinearProgram):
        self.r, self.prog = renderer, prog
        self.plan = plan_vectors(prog, renderer.vector_widths) if renderer.vector_widths else VectorPlan()
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


class CRenderer(CStyleRenderer):
    """vector_widths: float32 lanes per pack, widest first, as the device's CPU holds them (``Device.vector_widths``;
    (16, 8, 4) with AVX-512); the vector types and helpers of exactly those widths start every unit."""

    def __init__(self, vector_widths: tuple[int, ...] = ()):
        self.vector_widths = tuple(vector_widths) or WIDTHS
        self.preamble = _preamble(self.vector_widths)

    def unit(self, kernels: list[str]) -> str:
        uses = any(helper in k for k in kernels for helper in INTRINSIC_HELPERS)
        return self.preamble + (X86_INTRINSICS if uses else "") + "\n\n".join(kernels) + "\n"


@functools.cache
def _preamble(widths: tuple[int, ...]) -> str:
    return C_PREAMBLE + vector_helpers(widths) + "\n\n"


RENDERERS = {"c": CRenderer}
