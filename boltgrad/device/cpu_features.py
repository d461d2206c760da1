"""What the C code generator tunes for on this machine's CPU, read from the feature flags ``-march=native``
sees (``compile_cache.cpu_identity``).

float32 lanes per vector: 16 with AVX-512 (a zmm register), else 8 (AVX, or two 128-bit NEON registers, which
the compilers handle well as one 8-lane vector). Vector registers for those: 32 with AVX-512 (zmm0-31), else 16
(AVX2's ymm0-15; ARM's 32 NEON registers hold 16 8-lane values); the register tiles of ``codegen/lower.py`` are
sized to fit them.
"""

from __future__ import annotations

import functools
import re

from .compile_cache import cpu_identity


def _flags() -> set[str]:
    found = re.search(r"^flags=(.*)$", cpu_identity(), re.MULTILINE)
    return set(found.group(1).split()) if found else set()


@functools.cache
def vector_widths() -> tuple[int, ...]:
    """float32 lanes per vector pack the renderer may print, widest first. A wider generic vector than the CPU
    holds is split by the compilers badly (16 lanes on AVX2 went through the stack), so 16 only with AVX-512."""
    return (16, 8, 4) if "avx512f" in _flags() else (8, 4)


@functools.cache
def vector_registers() -> int:
    """Vector registers the compiler may allocate for the widest packs: 32 with AVX-512, else 16 (AVX2's
    ymm0-15; ARM's 32 NEON registers hold 16 8-lane values)."""
    return 32 if "avx512f" in _flags() else 16
