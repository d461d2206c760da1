"""Lane packing: which scalar instructions of a linear program a C-like renderer prints as vector operations.

The lowering computes several neighbouring outputs per loop iteration (an output upcast) or several partial
sums (reduce lanes) by copying the scalar computation once per lane; the copies differ only in constant index
offsets. A C compiler's straight-line vectoriser is asked to rediscover them and often does not (big bodies,
branches, a mix of broadcast and contiguous operands: the weight gradient of a linear layer spilled 64 scalar
accumulators to the stack). This pass finds the lanes again, from two kinds of seeds:

- runs of float32 accumulators over the same loops (one tile row of a matmul, the partial sums of a dot);
- runs of float32 stores to consecutive addresses (the outputs of an upcast dim).

From a seed it packs the operands recursively: lanes that are one node become a broadcast, loads from
consecutive addresses a vector load, lanes doing the same arithmetic a vector operation on packed operands;
anything else is gathered from its scalar lanes. Besides float32 values and bool masks, lanes may hold small
integers: bytes loaded from packed (quantized) weights, masked and shifted by constants and converted to
float32 lane-wise, so a dequantizing dot product reads its bytes as vectors.

A vector operation does exactly what its lanes' scalar operations do (the same IEEE operation per lane,
nothing reassociated), so the result is bit for bit the scalar program's, which is what the PYTHON device
interprets.

The plan names, per instruction, the packs to print after it and the scalar instructions that are no longer
needed; the renderer turns packs into source.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.dtypes import DType, bfloat16, bool_, float16, float32, int8, int16, int32, int64, uint8
from ..ir.node import Node
from ..ir.ops import Op
from ..ir.symbolic import affine_terms, vmax, vmin
from .linearize import LinearProgram

WIDTHS = (8, 4)  # lanes per pack, widest first, unless the renderer says otherwise: 8 float32 lanes fill an AVX
# register. A CPU device with AVX-512 gives (16, 8, 4) (``device/cpu_features.py``)

# elementwise ops a pack may do lane-wise; everything else is gathered from scalar lanes
VECTOR_FLOAT_OPS = {Op.ADD, Op.MUL, Op.FDIV, Op.NEG, Op.MAX, Op.WHERE, Op.RECIP, Op.CMPLT, Op.CMPNE, Op.CAST,
                    Op.EXP2, Op.LOG2}  # fmt: skip
VECTOR_MASK_OPS = {Op.AND, Op.OR, Op.XOR, Op.NEG, Op.WHERE, Op.CMPLT, Op.CMPNE, Op.CAST}
# integer lanes: wrapping arithmetic and bit operations give what the scalar program's C arithmetic gives once
# the result is stored back to the lane type (shifts only by a constant below the type's width)
INT_LANE_DTYPES = (uint8, int8, int16, int32)
# 16-bit floats are computed in float32 and rounded after every operation; lanes of them are only loaded (and
# converted, exactly) to float32 lanes: the weights of a half-precision model, a half-precision KV cache
HALF_LANE_DTYPES = (float16, bfloat16)
VECTOR_INT_OPS = {Op.ADD, Op.MUL, Op.AND, Op.OR, Op.XOR, Op.SHL, Op.SHR}


@dataclass(eq=False)
class Pack:
    """``width`` lanes computed by one vector statement (or expression).

    kind: "splat" (every lane the same scalar), "ramp" (integers i, i+1, ..., held as int32 lanes: the key
    positions a causal mask compares), "load" (consecutive addresses), "mload" (consecutive addresses,
    each lane read only where its mask is set), "gather" (built from scalar
    lanes), "alu" (a lane-wise op on packed sources), "acc" (vector accumulator), "update" (its update inside
    the loops: srcs (acc, value), or (acc, a, b) for a fused multiply-add), "read" (its value after them),
    "store" (consecutive addresses).
    """

    kind: str
    lanes: tuple[Node, ...]
    dtype: DType  # float32, bool_ (held as int32 -1/0 lanes), one of INT_LANE_DTYPES or HALF_LANE_DTYPES
    srcs: tuple[Pack, ...] = ()
    anchor: int = -1  # print after instruction number ``anchor``; -1: an inline expression, no statement
    name: str = ""

    @property
    def width(self) -> int:
        return len(self.lanes)

    @property
    def mask(self) -> bool:
        return self.dtype == bool_


@dataclass
class VectorPlan:
    packs_after: dict[int, list[Pack]] = field(default_factory=dict)  # instruction number -> packs to print
    skip: set[Node] = field(default_factory=set)  # scalar instructions a pack replaced and nothing else reads
    acc_lane: dict[Node, tuple[Pack, int]] = field(default_factory=dict)  # packed ACC -> (its pack, its lane)

    def __bool__(self) -> bool:
        return bool(self.packs_after)


def plan_vectors(prog: LinearProgram, widths: tuple[int, ...] = WIDTHS) -> VectorPlan:
    """widths: float32 lanes per pack the renderer prints, widest first."""
    return _Packer(prog.instructions, widths).plan()


class _Packer:
    def __init__(self, instructions: list[Node], widths: tuple[int, ...]):
        self.ins = instructions
        self.widths = widths
        self.pos: dict[Node, int] = {}
        self.scope: dict[Node, tuple[Node, ...]] = {}
        stack: list[Node] = []
        for i, n in enumerate(instructions):
            self.pos[n] = i
            self.scope[n] = tuple(stack)
            if n.op is Op.RANGE:
                stack.append(n)
            elif n.op is Op.ENDRANGE:
                stack.pop()
        self.update_of = {n.src[0]: n for n in instructions if n.op is Op.ACC_UPDATE}
        self.memo: dict[tuple[Node, ...], Pack] = {}
        self.acc_packs: dict[tuple[Node, ...], Pack] = {}  # committed accumulator packs by their ACC lanes
        self.roots: list[Pack] = []

    # ---- seeds ----

    def plan(self) -> VectorPlan:
        for run in self._acc_runs():
            self._take_runs(run, self._try_accs)
        for run in self._store_runs():
            self._take_runs(run, self._try_stores)
        return self._finish() if self.roots else VectorPlan()

    def _acc_runs(self) -> list[list[Node]]:
        """float32 accumulators declared together (they share loops), in program order."""
        runs: list[list[Node]] = [[]]
        for n in self.ins:
            if n.op is Op.ACC and n.dtype == float32 and n in self.update_of:
                runs[-1].append(n)
            elif runs[-1]:
                runs.append([])
        return [r for r in runs if len(r) >= min(self.widths)]

    def _store_runs(self) -> list[list[Node]]:
        """float32 stores, per (buffer, loop nest), in program order."""
        runs: dict[tuple, list[Node]] = {}
        for n in self.ins:
            if n.op is Op.STORE and n.src[2].dtype == float32:
                runs.setdefault((n.src[0], self.scope[n]), []).append(n)
        return [r for r in runs.values() if len(r) >= min(self.widths)]

    def _take_runs(self, run: list[Node], attempt) -> None:
        i = 0
        while i < len(run):
            for w in self.widths:
                if i + w <= len(run) and attempt(tuple(run[i : i + w])):
                    i += w
                    break
            else:
                i += 1

    def _try_accs(self, accs: tuple[Node, ...]) -> bool:
        if len({a.arg[1] for a in accs}) != 1:
            return False
        updates = tuple(self.update_of[a] for a in accs)
        if len({self.scope[u] for u in updates}) != 1 or len({(u.arg, len(u.src)) for u in updates}) != 1:
            return False
        # the update's operands: the value added, or the two factors of a fused multiply-add
        operands = tuple(self.pack(tuple(u.src[k] for u in updates)) for k in range(1, len(updates[0].src)))
        if any(p.dtype != float32 for p in operands) or not any(_has_vector_load(p) for p in operands):
            return False
        # a blocked reduce continues from values read back (one per lane): a vector load before the loops
        init = self.pack(tuple(a.src[0] for a in accs))
        if init.dtype != float32 or init.kind not in ("splat", "load") or init.anchor > min(self.pos[a] for a in accs):
            return False
        acc = Pack("acc", accs, float32, (init,) if init.kind != "splat" else (), anchor=max(self.pos[a] for a in accs))
        update = Pack("update", updates, float32, (acc, *operands), anchor=max(self.pos[u] for u in updates))
        self.acc_packs[accs] = acc
        self.roots += [acc, update]
        return True

    def _try_stores(self, stores: tuple[Node, ...]) -> bool:
        if not _consecutive([s.src[1] for s in stores]):
            return False
        value = self.pack(tuple(s.src[2] for s in stores))
        if value.dtype != float32 or not _has_vector_load(value):
            return False
        self.roots.append(Pack("store", stores, float32, (value,), anchor=max(self.pos[s] for s in stores)))
        return True

    # ---- packing operands ----

    def pack(self, lanes: tuple[Node, ...]) -> Pack:
        hit = self.memo.get(lanes)
        if hit is None:
            hit = self.memo[lanes] = self._pack(lanes)
        return hit

    def _pack(self, lanes: tuple[Node, ...]) -> Pack:
        first = lanes[0]
        dtype = float32 if first.dtype in HALF_LANE_DTYPES else first.dtype  # computed in float32 (render/cstyle)
        if all(n is first for n in lanes):
            return Pack("splat", lanes, dtype)
        if dtype in (int64, int32) and first in self.pos and _fits_int32(first, lanes[-1]) and _consecutive(lanes):
            return Pack("ramp", lanes, int32)
        if not self._same_shape(lanes):
            return self._gather(lanes, dtype)
        op = first.op
        if dtype == bool_ and op in (Op.CMPLT, Op.CMPNE) and first.src[0].dtype in (int64, int32):
            # integer comparisons of index ramps and launch values (key <= position): int32 lanes
            srcs = tuple(self.pack(tuple(n.src[k] for n in lanes)) for k in range(2))
            if all(p.kind == "ramp" or (p.kind == "splat" and _fits_int32(p.lanes[0])) for p in srcs):
                return Pack("alu", lanes, dtype, srcs, anchor=self._anchor(lanes))
            return self._gather(lanes, dtype)
        if op is Op.LOAD and dtype != bool_:
            valid = {n.src[2] if len(n.src) == 3 else None for n in lanes}
            if not _consecutive([n.src[1] for n in lanes]):
                return self._gather(lanes, dtype)
            if valid == {None} or (len(valid) == 1 and dtype == float32):
                return Pack("load", lanes, dtype, anchor=self._anchor(lanes))
            if None in valid or dtype != float32:
                return self._gather(lanes, dtype)
            # lanes valid one by one (a padded edge): a masked load, which reads no invalid lane
            lane_mask = self.pack(tuple(n.src[2] for n in lanes))
            return Pack("mload", lanes, dtype, (lane_mask,), anchor=self._anchor(lanes))
        if op is Op.ACC_READ:
            acc = self.acc_packs.get(tuple(n.src[0] for n in lanes))
            return Pack("read", lanes, dtype, (acc,)) if acc is not None else self._gather(lanes, dtype)
        if not self._vector_op(first):
            return self._gather(lanes, dtype)
        srcs = tuple(self.pack(tuple(n.src[k] for n in lanes)) for k in range(len(first.src)))
        return Pack("alu", lanes, dtype, srcs, anchor=self._anchor(lanes))

    def _same_shape(self, lanes: tuple[Node, ...]) -> bool:
        first = lanes[0]
        if first not in self.pos or first.dtype not in (float32, bool_, *INT_LANE_DTYPES, *HALF_LANE_DTYPES):
            return False
        if first.dtype in HALF_LANE_DTYPES and first.op is not Op.LOAD:
            return False
        shape = (first.op, first.dtype, first.arg, len(first.src), self.scope[first])
        return all(n in self.pos and (n.op, n.dtype, n.arg, len(n.src), self.scope[n]) == shape for n in lanes)

    @staticmethod
    def _vector_op(n: Node) -> bool:
        if n.dtype == float32:
            if n.op is Op.CAST:
                return n.src[0].dtype in (bool_, *INT_LANE_DTYPES, *HALF_LANE_DTYPES)
            if n.op is Op.WHERE:
                return n.src[0].dtype == bool_
            return n.op in VECTOR_FLOAT_OPS and n.op not in (Op.CMPLT, Op.CMPNE)
        if n.dtype in INT_LANE_DTYPES:
            if n.op in (Op.SHL, Op.SHR):
                count = n.src[1]
                return count.op is Op.CONST and 0 <= count.arg < 8 * n.dtype.itemsize
            return n.op in VECTOR_INT_OPS
        # bool lanes: comparisons of float32 values, logic on bools
        if n.op in (Op.CMPLT, Op.CMPNE):
            return n.src[0].dtype == float32
        if n.op is Op.CAST:
            return n.src[0].dtype == float32
        return n.op in VECTOR_MASK_OPS and all(s.dtype == bool_ for s in n.src[-2:])

    def _gather(self, lanes: tuple[Node, ...], dtype: DType) -> Pack:
        placed = [n for n in lanes if n in self.pos]
        return Pack("gather", lanes, dtype, anchor=max((self.pos[n] for n in placed), default=-1))

    def _anchor(self, lanes: tuple[Node, ...]) -> int:
        return max(self.pos[n] for n in lanes)

    # ---- the plan ----

    def _finish(self) -> VectorPlan:
        plan = VectorPlan()
        emitted: list[Pack] = []
        seen: set[int] = set()

        def visit(p: Pack) -> None:
            if id(p) in seen:
                return
            seen.add(id(p))
            for s in p.srcs:
                visit(s)
            emitted.append(p)

        for root in self.roots:
            visit(root)
        replaced: set[Node] = set()
        scalar_roots: list[Node] = []
        for p in emitted:
            if p.kind == "acc":
                replaced.update(p.lanes)
                for lane, acc in enumerate(p.lanes):
                    plan.acc_lane[acc] = (p, lane)
            elif p.kind in ("update", "store"):
                replaced.update(p.lanes)
            if p.kind in ("splat", "ramp"):
                scalar_roots.append(p.lanes[0])
            elif p.kind == "gather":
                scalar_roots.extend(p.lanes)
            elif p.kind == "load":
                scalar_roots.extend(p.lanes[0].src)
            elif p.kind == "mload":
                scalar_roots.extend(p.lanes[0].src[:2])
            elif p.kind == "store":
                scalar_roots.extend(p.lanes[0].src[:2])
            if p.anchor >= 0 and p.kind not in ("splat", "read"):
                plan.packs_after.setdefault(p.anchor, []).append(p)
        effects = [n for n in self.ins if n.op in (Op.STORE, Op.ACC_UPDATE) and n not in replaced]
        needed: set[Node] = set()
        stack = effects + scalar_roots
        while stack:
            n = stack.pop()
            if n in needed:
                continue
            needed.add(n)
            if n.op is Op.ACC_READ and n.src[0] in plan.acc_lane:
                continue  # read out of the vector accumulator
            stack.extend(n.src)
        plan.skip = {n for n in self.ins if n.op not in (Op.RANGE, Op.ENDRANGE, Op.PARAM) and n not in needed}
        return plan


def _consecutive(indices: list[Node]) -> bool:
    """Whether index k is index 0 plus k, for every k."""
    terms0, c0 = affine_terms(indices[0])
    for k, idx in enumerate(indices[1:], start=1):
        terms, c = affine_terms(idx)
        if c != c0 + k or terms != terms0:
            return False
    return True


def _fits_int32(lo: Node, hi: Node | None = None) -> bool:
    return -(2**31) <= vmin(lo) and vmax(hi if hi is not None else lo) < 2**31


def _has_vector_load(p: Pack) -> bool:
    """A pack worth printing reads memory as vectors (or a vector accumulator); all-gather packs are not."""
    stack, seen = [p], set()
    while stack:
        q = stack.pop()
        if id(q) in seen:
            continue
        seen.add(id(q))
        if q.kind in ("load", "mload", "read"):
            return True
        stack.extend(q.srcs)
    return False
