"""The closed set of operations.

The frontend writes every tensor operation with the *primitives* below; a backend sees nothing else. The
*lowering* ops exist only inside a kernel after codegen has turned views into index arithmetic: buffer
parameters, loops, loads, stores and accumulators, plus FDIV (a * recip(b) rendered as a true division).
GPU kernels add shared memory, barriers and warp shuffles; a LOAD from a LOCAL is ``(local, index, barrier)``:
the barrier it reads after.
"""

from __future__ import annotations

from enum import Enum, auto


class Op(Enum):
    # unary
    EXP2 = auto()
    LOG2 = auto()
    SIN = auto()
    SQRT = auto()
    RECIP = auto()
    NEG = auto()
    TRUNC = auto()
    # binary
    ADD = auto()
    MUL = auto()
    MAX = auto()
    MOD = auto()  # C semantics: truncates toward zero, sign of the dividend
    IDIV = auto()  # C semantics: truncates toward zero
    CMPLT = auto()
    CMPNE = auto()
    AND = auto()
    OR = auto()
    XOR = auto()
    SHL = auto()
    SHR = auto()
    # ternary
    WHERE = auto()  # src = (cond, a, b)
    MULACC = auto()  # src = (a, b, c): a * b + c rounded once (a fused multiply-add)
    # reduction: arg = (Op.ADD | Op.MAX | Op.MUL, axes)
    REDUCE = auto()
    # movement (views): arg is the new shape / order / widths / bounds / flipped axes
    RESHAPE = auto()
    PERMUTE = auto()
    EXPAND = auto()
    PAD = auto()
    SHRINK = auto()
    FLIP = auto()
    # a data-dependent read: src = (x, index), arg = dim; out[i] = x[i with i[dim] replaced by index[i]], so the
    # shape is the index's (x has the same rank; its other dims are at least as large); outside [0, n) reads 0
    GATHER = auto()
    # buffers and values
    BUFFER = auto()  # arg = a device Buffer; shape (size,)
    CONST = auto()  # arg = a Python scalar; shape (); src = (DEVICE,) in tensor graphs
    ARANGE = auto()  # arg = n; shape (n,), value i at index i (iota: the index as a value); src = (DEVICE,)
    DEVICE = auto()  # arg = a device name: where a constant or a range lives (it has no buffer to say so)
    CAST = auto()
    BITCAST = auto()
    COPY = auto()  # arg = target device name
    ASSIGN = auto()  # src = (target BUFFER view, value): value is written into the target's buffer
    CONTIGUOUS = auto()
    DETACH = auto()  # the value of its source, through which no gradient flows
    VAR = auto()  # a symbolic integer: arg = (name, min, max)
    BIND = auto()  # src = (VAR,), arg = the value bound for this use

    # lowering ops (inside one kernel)
    PARAM = auto()  # arg = index of the buffer parameter; dtype = element type
    RANGE = auto()  # src = (end,), arg = (loop id, kind): a loop counter 0..end-1
    LOAD = auto()  # src = (param, index) or (param, index, valid): 0 where not valid
    STORE = auto()  # src = (param, index, value)
    ACC = auto()  # arg = (acc id, reduce op); src = (init, *ranges it loops over)
    ACC_UPDATE = auto()  # src = (acc, value): acc = acc <op> value, inside the loops of the acc; with arg MULACC,
    # src = (acc, a, b): acc = fma(a, b, acc)
    ACC_READ = auto()  # src = (acc,): the accumulated value after its loops close
    ENDRANGE = auto()  # src = (range,)
    FDIV = auto()  # a / b for floats
    SINK = auto()  # src = the stores of a kernel that writes several places
    # GPU kernels (codegen/gpu.py): a STORE may carry a 4th source, a bool gate (stored only where true)
    LOCAL = auto()  # arg = (id, size): a block's shared memory of ``size`` elements of dtype
    BARRIER = auto()  # src = the LOCAL stores before it: every thread of the block waits here
    SHUFFLE = auto()  # src = (value,), arg = ("down", k) lane + k of the warp (own value past its end) | ("idx", k)
    # a warp's tensor-core D = A @ B + C (codegen/gpu_mma.py): src = this thread's fragment registers (A and B as
    # uint32 words of two 16-bit floats, C as float32), arg = (shape, element dtype, r): the node is D's value r
    MMA = auto()


UNARY = frozenset({Op.EXP2, Op.LOG2, Op.SIN, Op.SQRT, Op.RECIP, Op.NEG, Op.TRUNC})
BINARY = frozenset(
    {Op.ADD, Op.MUL, Op.MAX, Op.MOD, Op.IDIV, Op.CMPLT, Op.CMPNE, Op.AND, Op.OR, Op.XOR, Op.SHL, Op.SHR, Op.FDIV}
)
TERNARY = frozenset({Op.WHERE, Op.MULACC})
ALU = UNARY | BINARY | TERNARY
ELEMENTWISE = ALU | {Op.CAST, Op.BITCAST}
COMMUTATIVE = frozenset({Op.ADD, Op.MUL, Op.MAX, Op.CMPNE, Op.AND, Op.OR, Op.XOR})
COMPARISON = frozenset({Op.CMPLT, Op.CMPNE})
MOVEMENT = frozenset({Op.RESHAPE, Op.PERMUTE, Op.EXPAND, Op.PAD, Op.SHRINK, Op.FLIP})
REDUCE_OPS = frozenset({Op.ADD, Op.MAX, Op.MUL})
