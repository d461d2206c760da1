"""The C every kernel unit of the C renderer starts with (``C_PREAMBLE`` and ``vector_helpers``): 16-bit float
conversions, exp2 and log2 in plain arithmetic, integer division that cannot trap, float -> int conversions
and bit casts, and the vector types the packs print (loads, stores, masked and widening loads, fma, exp2 and
log2 lane by lane). The CUDA renderer shares the float -> int conversions."""

from __future__ import annotations


def vector_helpers(widths: tuple[int, ...]) -> str:
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
    if 16 in widths:
        out.append(_SIXTEEN_LANES)
    out += [_VECTOR_FMA.replace("{W}", str(w)) for w in widths]
    out += [_VECTOR_MATH.replace("{W}", str(w)) for w in widths]
    return "\n".join(out)


# <immintrin.h> takes gcc about 110 ms to parse, most of the time a unit of a few small kernels takes. The helpers
# that need it (widening loads, 16-lane masked loads) are macros, so a unit includes it after the preamble only
# where its kernels call one of them; the fmas and 8-lane masked loads are compiler builtins and need no header.
X86_INTRINSICS = "#if defined(__AVX2__)\n#include <immintrin.h>\n#endif\n"
INTRINSIC_HELPERS = ("bolt_widen_", "bolt_mload_f32x16")

# A masked load reads no lane whose mask is clear (no fault past a buffer's end); AVX has it as one instruction.
# w packed small integers -> w int32 lanes. Through a small vector and __builtin_convertvector, GCC moves the
# bytes through a general register one by one; x86's zero/sign-extending loads do it in one instruction.
_WIDENING_LOADS = """#if defined(__AVX2__)
#define bolt_widen_u8x8(p) ((bolt_i32x8)_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p))))
#define bolt_widen_i8x8(p) ((bolt_i32x8)_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p))))
#define bolt_widen_i16x8(p) ((bolt_i32x8)_mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i *)(p))))
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
#if defined(__AVX2__) && defined(__FMA__)
#define BOLT_FMADD_8 __builtin_ia32_vfmaddps256
#define BOLT_FMADD_4 __builtin_ia32_vfmaddps
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
_VECTOR_FMA = """#if defined(BOLT_FMADD_{W})
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

# 16 float32 lanes: one zmm register with AVX-512 (``device/cpu_features.py`` asks for them only there); the
# masked load's mask is a k register, set from the lanes' -1/0; masked-off lanes are not read (no fault)
_SIXTEEN_LANES = """#if defined(__AVX512F__)
#define BOLT_FMADD_16(a, b, c) __builtin_ia32_vfmaddps512_mask((a), (b), (c), (unsigned short)-1, 4)
#define bolt_mload_f32x16(p, m) \\
  ((bolt_f32x16)_mm512_maskz_loadu_ps(_mm512_cmpneq_epi32_mask((__m512i)(m), _mm512_setzero_si512()), (p)))
#define bolt_widen_u8x16(p) ((bolt_i32x16)_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p))))
#define bolt_widen_i8x16(p) ((bolt_i32x16)_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p))))
#define bolt_widen_i16x16(p) ((bolt_i32x16)_mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)(p))))
#define bolt_widen_bf16x16(p) \\
  ((bolt_f32x16)(((bolt_i32x16)_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p)))) << 16))
#define bolt_widen_f16x16(p) ((bolt_f32x16)_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p))))
#else
static inline bolt_f32x16 bolt_mload_f32x16(const float *p, bolt_i32x16 m) {
  bolt_f32x16 v; for (int i = 0; i < 16; i++) v[i] = m[i] ? p[i] : 0.0f; return v;
}
#define bolt_widen_u8x16(p) bolt_widen_generic(bolt_u8x16, bolt_i32x16, p)
#define bolt_widen_i8x16(p) bolt_widen_generic(bolt_i8x16, bolt_i32x16, p)
#define bolt_widen_i16x16(p) bolt_widen_generic(bolt_i16x16, bolt_i32x16, p)
#define bolt_widen_bf16x16(p) bolt_widen_bf16_generic(bolt_u16x16, bolt_i32x16, bolt_f32x16, p)
#define bolt_widen_f16x16(p) bolt_widen_f16_generic(bolt_f32x16, 16, p)
#endif"""

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


def f2i_helpers() -> str:
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


def bitcast_helpers() -> str:
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
    + f2i_helpers()
    + "\n"
    + bitcast_helpers()
    + "\n\n"
)
