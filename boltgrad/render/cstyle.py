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
from ..ir.dtypes import DType, bfloat16, bool_, float16, float64
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
        if op is Op.MAX:
            if dt.is_float:  # NaN wins, as in torch.maximum
                return f"(({a[0]} > {a[1]} || {a[0]} != {a[0]}) ? {a[0]} : {a[1]})"
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
        if op is Op.MULACC:
            return self.round_to(f"({a[0]} * {a[1]} + {a[2]})", dt)
        if op is Op.CAST:
            if dt == bool_:
                return f"({a[0]} != 0)"
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
        names: dict[Node, str] = {}
        lines: list[str] = [self.signature(name) + " {"]
        indent = 1
        counts: dict[str, int] = {}

        def fresh(prefix: str) -> str:
            counts[prefix] = counts.get(prefix, 0) + 1
            return f"{prefix}{counts[prefix] - 1}"

        def ref(n: Node) -> str:
            if n.op is Op.CONST:
                return self.literal(n.arg, n.dtype)
            return names[n]

        def emit(text: str) -> None:
            lines.append("  " * indent + text)

        for i, dt in enumerate(prog.params):
            emit(f"{self.storage(dt)} *restrict b{i} = ({self.storage(dt)} *)bufs[{i}];")
        for k, v in enumerate(prog.variables):
            names[v] = f"var_{v.arg[0]}"
            emit(f"const int64_t var_{v.arg[0]} = vars[{k}];")
        if prog.global_range is None:
            emit("if (start >= end) return;")
        for n in prog.instructions:
            op = n.op
            if op in (Op.CONST, Op.VAR):
                continue
            if op is Op.PARAM:
                names[n] = f"b{n.arg}"
            elif op is Op.RANGE:
                r = names[n] = fresh("r")
                lo, hi = ("start", "end") if n is prog.global_range else ("0", ref(n.src[0]))
                emit(f"for (int64_t {r} = {lo}; {r} < {hi}; {r}++) {{")
                indent += 1
            elif op is Op.ENDRANGE:
                indent -= 1
                emit("}")
            elif op is Op.LOAD:
                v = names[n] = fresh("val")
                load = self.load_expr(ref(n.src[0]), ref(n.src[1]), n.dtype)
                if len(n.src) == 3:
                    load = f"({ref(n.src[2])} ? {load} : {self.literal(0, n.dtype)})"
                emit(f"{self.ctype(n.dtype)} {v} = {load};")
            elif op is Op.STORE:
                emit(self.store_expr(ref(n.src[0]), ref(n.src[1]), ref(n.src[2]), n.src[2].dtype))
            elif op is Op.ACC:
                v = names[n] = fresh("acc")
                emit(f"{self.ctype(n.dtype)} {v} = {ref(n.src[0])};")
            elif op is Op.ACC_UPDATE:
                acc = n.src[0]
                combined = self.alu(Node(n.arg, n.dtype, (acc, n.src[1])), [ref(acc), ref(n.src[1])])
                emit(f"{ref(acc)} = {combined};")
            elif op is Op.ACC_READ:
                names[n] = names[n.src[0]]
            else:
                v = names[n] = fresh("alu")
                emit(f"{self.ctype(n.dtype)} {v} = {self.alu(n, [ref(s) for s in n.src])};")
        lines.append("}")
        return "\n".join(lines)

    def render_unit(self, kernels: list[tuple[str, LinearProgram]]) -> str:
        """One source file holding several kernels, compiled in one compiler call."""
        return self.preamble + "\n\n".join(self.render_kernel(p, name) for name, p in kernels) + "\n"


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
static inline int64_t bolt_idiv(int64_t a, int64_t b) { return b == 0 ? 0 : (b == -1 ? -a : a / b); }
static inline int64_t bolt_imod(int64_t a, int64_t b) { return (b == 0 || b == -1) ? 0 : a % b; }
"""
    + _f2i_helpers()
    + "\n"
    + _bitcast_helpers()
    + "\n\n"
)


class CRenderer(CStyleRenderer):
    preamble = C_PREAMBLE


RENDERERS = {"c": CRenderer}
