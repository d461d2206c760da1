"""The tensor-core instruction of the GPU matmul: PTX ``mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}``.

One instruction, issued by all 32 threads of a warp together, computes ``D = A @ B + C`` for a 16x16 tile of A
(rows x k, float16 or bfloat16), a 16x8 tile of B (k x columns, the same type) and a 16x8 float32 tile C.
Each thread holds a fixed part of each tile, its *fragment*. With ``g = lane // 4`` and ``t = lane % 4``, the
PTX ISA ("Matrix Fragments for mma.m16n8k16 with floating point type") places them so:

    A: 4 registers of two halves each (the lower k in the low 16 bits); register r holds
       row g + 8 * (r % 2), k 2t and 2t + 1, plus 8 for r >= 2
    B: 2 registers; register r holds column g, k 2t and 2t + 1, plus 8 for r = 1
    C, D: 4 float32; value r is row g + 8 * (r // 2), column 2t + r % 2

Every register is two neighbours along k. So the lowering keeps its shared-memory tiles as 32-bit words of
two halves along k, A as rows x k-words and B as columns x k-words (B column-major: the ``.col`` of the
instruction), and a fragment register is one 32-bit read of shared memory.

In the IR one instruction is four ``MMA`` nodes, one per value of D: ``src = (a0, a1, a2, a3, b0, b1, c0, c1,
c2, c3)`` (registers of A and B as uint32 words, C as float32) and ``arg = ("m16n8k16", element dtype, r)``.
The four share their sources; the CUDA renderer writes them as one instruction, the PYTHON_GPU device
gathers the warp's fragments and computes the product once (``device/python.py``, its own reading of the
PTX layout, so a lowering that disagrees with the hardware's layout fails the emulated tests).
"""

from __future__ import annotations

from ..ir.dtypes import DType, bfloat16, float16, float32, int16, uint32
from ..ir.node import Node, const
from ..ir.ops import Op

SHAPE = "m16n8k16"
M, N, K = 16, 8, 16  # one instruction: a 16x16 tile of A (M x K) times a 16x8 tile of B (K x N)
ELEMENTS = (float16, bfloat16)


def half_operands(reduce: Node, x: Node, y: Node) -> tuple[Node, Node, DType] | None:
    """(x, y as float16 or bfloat16 values, their dtype) when the matmul sums in float32 products of two casts
    from the same 16-bit float type (``a.half() @ b.half()`` after the frontend's upcast to float32 for the
    sum); None otherwise. The product of two such values is exact in float32, so the instruction computes what
    the FMA loop computes but for the order of the sum."""
    if reduce.dtype != float32 or x.op is not Op.CAST or y.op is not Op.CAST:
        return None
    hx, hy = x.src[0], y.src[0]
    if hx.dtype != hy.dtype or hx.dtype not in ELEMENTS:
        return None
    return hx, hy, hx.dtype


def a_fragment(g: Node, t: Node) -> list[tuple[Node, Node]]:
    """(row, k-word) of each A register of the thread at ``g``, ``t`` (k-word w holds k 2w and 2w + 1)."""
    return [(g + 8 * (r % 2), t + 4 * (r // 2)) for r in range(4)]


def b_fragment(g: Node, t: Node) -> list[tuple[Node, Node]]:
    """(column, k-word) of each B register."""
    return [(g, t + 4 * r) for r in range(2)]


def c_fragment(g: Node, t: Node) -> list[tuple[Node, Node]]:
    """(row, column) of each C and D value."""
    return [(g + 8 * (r // 2), t * 2 + r % 2) for r in range(4)]


def half_bits(value: Node) -> Node:
    """The 16 bits of a float16/bfloat16 value in the low half of a uint32."""
    bits = Node(Op.CAST, uint32, (Node(Op.BITCAST, int16, (value,)),))
    return Node(Op.AND, uint32, (bits, const(0xFFFF, uint32)))


def pack_word(low: Node, high: Node) -> Node:
    """A register of two halves: ``low`` (the lower k, from ``half_bits``) in bits 0-15, ``high`` above."""
    return Node(Op.OR, uint32, (low, Node(Op.SHL, uint32, (high, const(16, uint32)))))


def mma(a: list[Node], b: list[Node], element: DType) -> list[Node]:
    """The four D values of ``A @ B`` (C is zero: the lowering adds D to its accumulators as a sum, which the
    CUDA renderer writes as the instruction's C operand)."""
    zero = const(0.0, float32)
    srcs = tuple(a) + tuple(b) + (zero,) * 4
    return [Node(Op.MMA, float32, srcs, (SHAPE, element, r)) for r in range(4)]
