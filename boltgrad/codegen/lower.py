"""Lowering: one scheduled kernel (a tensor-level graph) -> a scalar graph over loop counters.

The kernel's value is evaluated at a symbolic multi-index, one RANGE per output dimension. Each tensor op
maps the index it is asked for to the indices of its sources ("index propagation"): a permute reorders
them, an expand pins broadcast dims to 0, a pad shifts them and guards the read, a reshape goes through the
flat index. Movement ops therefore never copy; they become index arithmetic, which ``ir.symbolic`` folds back
into affine form. A fused REDUCE opens loops of its own over the reduced dims.

Adjacent output dimensions are merged where the merge introduces no division or modulo, so an elementwise
kernel over a contiguous tensor is a single flat loop the C compiler vectorises.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ..helpers import prod
from ..ir.dtypes import DType, bool_, int64, min_value
from ..ir.node import Node, const
from ..ir.ops import ALU, Op
from ..ir.rewrite import substitute
from ..ir.symbolic import affine_terms, simplify
from .blocking import KernelOpts, block_reduce


@dataclass
class LoweredKernel:
    store: Node  # STORE(PARAM 0, index, value) over the output ranges
    ranges: list[Node]  # output loop counters, outermost first; ranges[0] is split across threads
    outer_size: int  # trip count of the outer loop (1 for a scalar output)
    cost: int  # rough work per outer iteration (elements touched)
    params: list[DType]  # element type of each buffer parameter, output first


def reduce_identity(rop: Op, dtype: DType) -> bool | int | float:
    if rop is Op.ADD:
        return False if dtype == bool_ else 0.0 if dtype.is_float else 0
    if rop is Op.MUL:
        return True if dtype == bool_ else 1.0 if dtype.is_float else 1
    return min_value(dtype)


class _Lowerer:
    def __init__(self, reduce_upcast: bool = True, max_lanes: int = 16) -> None:
        self.reduce_upcast = reduce_upcast
        self.max_lanes = max_lanes
        self.memo: dict[tuple, Node] = {}
        self.next_range = 0
        self.reduce_work = 1  # the largest trip count of one output's reduce loops, for the cost estimate
        self.params: dict[int, DType] = {}

    def new_range(self, extent: int, kind: str) -> Node:
        r = Node(Op.RANGE, int64, (const(extent),), (self.next_range, kind))
        self.next_range += 1
        return r

    def param(self, index: int, dtype: DType) -> Node:
        self.params[index] = dtype
        return Node(Op.PARAM, dtype, (), index)

    def lower(self, n: Node, idx: tuple[Node, ...], valid: Node | None) -> Node:
        key = (n, idx, valid)
        hit = self.memo.get(key)
        if hit is None:
            hit = self._lower(n, idx, valid)
            self.memo[key] = hit
        return hit

    def _lower(self, n: Node, idx: tuple[Node, ...], valid: Node | None) -> Node:
        op = n.op
        if op is Op.MUL and n.dtype.is_float and n.src[1].op is Op.RECIP:
            # a * (1/b) is how the frontend spells division; render it as a correctly rounded a / b
            return Node(Op.FDIV, n.dtype, (self.lower(n.src[0], idx, valid), self.lower(n.src[1].src[0], idx, valid)))
        if op in ALU or op in (Op.CAST, Op.BITCAST):
            return Node(op, n.dtype, tuple(self.lower(s, idx, valid) for s in n.src), n.arg)
        if op is Op.PARAM:
            index = flat_index(idx, n.shape)
            srcs = (self.param(n.arg[0], n.dtype), index) + ((valid,) if valid is not None else ())
            return Node(Op.LOAD, n.dtype, srcs)
        if op is Op.CONST:
            return const(n.arg, n.dtype)
        if op is Op.VAR:
            return n.cast(n.dtype)
        if op is Op.ARANGE:
            return idx[0].cast(n.dtype)
        if op in (Op.CONTIGUOUS, Op.ASSIGN, Op.DETACH):
            return self.lower(n.src[-1], idx, valid)
        if op is Op.RESHAPE:
            src = n.src[0]
            while src.op is Op.RESHAPE:  # a reshape of a reshape is one reshape: no index round trip between them
                src = src.src[0]
            return self.lower(src, reshape_index(idx, n.shape, src.shape), valid)
        if op is Op.PERMUTE:
            src_idx: list[Node] = [const(0)] * len(idx)
            for i, axis in enumerate(n.arg):
                src_idx[axis] = idx[i]
            return self.lower(n.src[0], tuple(src_idx), valid)
        if op is Op.EXPAND:
            src_shape = n.src[0].shape
            src_idx = tuple(const(0) if s == 1 and t != 1 else i for i, s, t in zip(idx, src_shape, n.shape))
            return self.lower(n.src[0], src_idx, valid)
        if op is Op.SHRINK:
            return self.lower(n.src[0], tuple(i + b for i, (b, _) in zip(idx, n.arg)), valid)
        if op is Op.FLIP:
            flips = n.arg
            src_idx = tuple((s - 1) - i if f else i for i, s, f in zip(idx, n.shape, flips))
            return self.lower(n.src[0], src_idx, valid)
        if op is Op.PAD:
            return self._lower_pad(n, idx, valid)
        if op is Op.GATHER:
            return self._lower_gather(n, idx, valid)
        if op is Op.REDUCE:
            return self._lower_reduce(n, idx, valid)
        raise NotImplementedError(f"codegen cannot lower {op.name} inside a kernel")

    def _lower_pad(self, n: Node, idx: tuple[Node, ...], valid: Node | None) -> Node:
        src_shape = n.src[0].shape
        cond: Node | None = None
        src_idx = []
        for i, s, (before, _) in zip(idx, src_shape, n.arg):
            inside = const(before - 1).lt(i).logical_and(i.lt(before + s))
            inside = simplify(inside)
            if not (inside.op is Op.CONST and inside.arg):
                cond = inside if cond is None else cond.logical_and(inside)
            src_idx.append(i - before)
        if cond is None:
            return self.lower(n.src[0], tuple(src_idx), valid)
        inner_valid = cond if valid is None else valid.logical_and(cond)
        value = self.lower(n.src[0], tuple(src_idx), inner_valid)
        return cond.where(value, const(reduce_identity(Op.ADD, n.dtype), n.dtype))

    def _lower_gather(self, n: Node, idx: tuple[Node, ...], valid: Node | None) -> Node:
        """The index tensor is loaded at this output position and its value becomes the source's index on
        ``dim``; a value outside the source reads nothing (the load is guarded) and gives 0."""
        dim, size = n.arg, n.src[0].shape[n.arg]
        pos = self.lower(n.src[1], idx, valid)
        pos = pos if pos.dtype == int64 else pos.cast(int64)
        inside = simplify(const(-1).lt(pos).logical_and(pos.lt(size)))
        src_idx = idx[:dim] + (pos,) + idx[dim + 1 :]
        inner_valid = inside if valid is None else valid.logical_and(inside)
        value = self.lower(n.src[0], src_idx, inner_valid)
        return inside.where(value, const(reduce_identity(Op.ADD, n.dtype), n.dtype))

    def _lower_reduce(self, n: Node, idx: tuple[Node, ...], valid: Node | None) -> Node:
        rop, axes = n.arg
        src = n.src[0]
        src_idx = list(idx)
        for axis in axes:
            src_idx[axis] = const(0)
        big = [axis for axis in axes if src.shape[axis] != 1]
        if not big:
            return self.lower(src, tuple(src_idx), valid)
        ranges = []
        for axis in big[:-1]:
            src_idx[axis] = r = self.new_range(src.shape[axis], "reduce")
            ranges.append(r)
        last, extent = big[-1], src.shape[big[-1]]
        lanes = 1
        if self.reduce_upcast:
            lanes = min(reduce_lanes(extent, n.dtype, len(src.toposort())), self.max_lanes)
            if lanes == 1 and len(big) > 1:
                # a short innermost axis under longer ones (the values of one quantized block, the blocks of a
                # row): the lanes split that axis evenly and keep their sums across the outer reduce loops
                total = prod(src.shape[a] for a in big)
                lanes = min(reduce_lanes(total, n.dtype, len(src.toposort())), self.max_lanes, extent)
                while lanes > 1 and extent % lanes:
                    lanes //= 2
                lanes = lanes if lanes >= 4 else 1
        r = self.new_range(-(-extent // lanes), "reduce")
        ranges.append(r)
        self.reduce_work = max(self.reduce_work, prod(src.shape[a] for a in big))
        # ``lanes`` accumulators over one loop: independent chains the C compiler turns into vector adds
        partials = []
        for lane in range(lanes):
            pos = r * lanes + lane if lanes > 1 else r
            guard = simplify(pos.lt(extent)) if extent % lanes else None
            if guard is not None and guard.op is Op.CONST and guard.arg:
                guard = None
            src_idx[last] = pos
            body = self.lower(src, tuple(src_idx), valid if guard is None else _and(valid, guard))
            if guard is not None:
                body = guard.where(body, const(reduce_identity(rop, n.dtype), n.dtype))
            partials.append(Node(Op.REDUCE, n.dtype, (body, *ranges), rop))
        while len(partials) > 1:  # combine as a balanced tree
            partials = [Node(rop, n.dtype, (a, b)) for a, b in zip(partials[::2], partials[1::2])] + (
                [partials[-1]] if len(partials) % 2 else []
            )
        return partials[0]


def _and(a: Node | None, b: Node) -> Node:
    return b if a is None else a.logical_and(b)


def reduce_lanes(extent: int, dtype: DType, body_size: int) -> int:
    """How many accumulators a reduce loop keeps: enough for a vector register, fewer for big bodies."""
    if extent < 32:
        return 1
    lanes = 16 if dtype.itemsize <= 4 and extent >= 256 else 8
    while lanes > 2 and lanes * body_size > 400:
        lanes //= 2
    return lanes


def strides_of(shape: tuple[int, ...]) -> tuple[int, ...]:
    out, acc = [], 1
    for s in reversed(shape):
        out.append(acc)
        acc *= s
    return tuple(reversed(out))


def flat_index(idx: tuple[Node, ...], shape: tuple[int, ...]) -> Node:
    total = const(0)
    for i, st, s in zip(idx, strides_of(shape), shape):
        if s != 1:
            total = total + i * st
    return simplify(total)


def unflatten_index(flat: Node, shape: tuple[int, ...]) -> tuple[Node, ...]:
    # the outermost index needs no modulo: an index in bounds is below its size, one out of bounds is masked
    return tuple(
        const(0) if s == 1 else simplify(flat // st if i == 0 else (flat // st) % s)
        for i, (st, s) in enumerate(zip(strides_of(shape), shape))
    )


def reshape_index(idx: tuple[Node, ...], shape: tuple[int, ...], src_shape: tuple[int, ...]) -> tuple[Node, ...]:
    """The source index of a reshape: dims equal at the front and at the back pass through unchanged; only the
    middle is flattened and split again (fewer and smaller div/mod expressions to simplify)."""
    n = min(len(shape), len(src_shape))
    lead = 0
    while lead < n and shape[lead] == src_shape[lead]:
        lead += 1
    tail = 0
    while tail < n - lead and shape[len(shape) - 1 - tail] == src_shape[len(src_shape) - 1 - tail]:
        tail += 1
    middle = flat_index(idx[lead : len(idx) - tail], shape[lead : len(shape) - tail])
    inner = unflatten_index(middle, src_shape[lead : len(src_shape) - tail])
    return tuple(idx[:lead]) + inner + tuple(idx[len(idx) - tail :])


def _count_divmod(n: Node) -> int:
    return sum(1 for x in n.toposort() if x.op in (Op.IDIV, Op.MOD) and x.dtype == int64)


def lower_kernel(ast: Node, opts: KernelOpts | None = None) -> LoweredKernel:
    """ast = STORE(PARAM output, value) at tensor level, as the scheduler builds it.

    Two register-level choices are made from the loads' index expressions: a reduce whose loads are contiguous
    along its loop keeps several accumulators over that loop (``reduce_lanes``); a reduce whose loads are
    strided along its loop but contiguous along the innermost output dim computes several outputs per loop
    instead (an output upcast), so each iteration reads a contiguous run, as a column sum or a matmul wants.
    A long reduce of that second kind is then cache blocked (``blocking.block_reduce``). ``opts`` overrides
    the heuristic's choices (the search tries several).
    """
    opts = opts or KernelOpts()
    store, ranges, _ = _lower_once(ast, reduce_upcast=False)
    upcasts = _output_upcasts(store, ranges, opts)
    dot_tile = [] if upcasts else _dot_tile(store, ranges)
    if not upcasts and not dot_tile:
        upcasts = _divided_upcast(store, ranges)
    # a dot tile keeps one vector of partial sums per output (8 lanes, 16 with AVX-512), not two
    store, ranges, lw = _lower_once(ast, reduce_upcast=not upcasts, max_lanes=_vector_lanes() if dot_tile else 16)
    strided = bool(upcasts)
    upcasts = upcasts or dot_tile
    stores = [store]
    for position, factor in sorted(upcasts):  # outer dims first: the innermost lanes end up adjacent
        # compute ``factor`` neighbouring outputs of this dim per iteration: their loads share the loop
        dim = ranges[position]
        extent = int(dim.src[0].arg)
        blocked = Node(Op.RANGE, int64, (const(-(-extent // factor)),), (lw.next_range, "loop"))
        lw.next_range += 1
        stores = [simplify(substitute(s, {dim: _clamped(blocked * factor + u, extent)})) for s in stores
                  for u in range(factor)]  # fmt: skip
        ranges = ranges[:position] + [blocked] + ranges[position + 1 :]
    reduce_work = lw.reduce_work
    if strided:
        before = ranges
        stores, ranges, reduce_work = block_reduce(stores, ranges, lw, opts, dict(upcasts))
        if ranges is before:
            ranges = _columns_outside(ranges, dict(upcasts), reduce_work)
    if len(stores) > 1:
        store = Node(Op.SINK, store.dtype, tuple(stores))
    else:
        store = stores[0]
    outer = int(ranges[0].src[0].arg) if ranges else 1
    inner_size = prod(int(r.src[0].arg) for r in ranges[1:])
    declared = {n.arg[0]: n.dtype for n in ast.toposort() if n.op is Op.PARAM}
    params = [declared[i] for i in range(max(declared) + 1)]
    cost = min(max(1, inner_size * reduce_work * len(stores)), 1 << 40)
    return LoweredKernel(store, ranges, outer, cost, params)


def _divided_upcast(store: Node, ranges: list[Node]) -> list[tuple[int, int]]:
    """An elementwise kernel that reads at its innermost index divided (``x // 2``: max pooling's or nearest
    upsampling's gradient, the pooled value spread over its window) computes 8 or 4 neighbouring outputs per
    loop, the most that divides the dim. The lanes that read the same pooled element then share its node (so a
    value fused in there, a whole col2im sum, is computed once per window, not per output), the contiguous reads
    and the stores become vector operations, and the pooled reads are gathered. The C compiler vectorises none
    of it on its own (the division, the guarded reads). A CNN's max pooling gradient with conv2's col2im and
    relu's mask fused in, (16, 128, 28, 28), went from 7.9 to 2.6 ms on a 2-core AVX-512 machine."""
    if not ranges:
        return []
    inner = ranges[-1]
    nodes = store.toposort()
    if any(n.op is Op.RANGE and n.arg[1] == "reduce" for n in nodes):
        return []
    divided = [n.src[0].toposort() for n in nodes if n.op is Op.IDIV and n.dtype == int64]
    if not any(inner in below for below in divided):
        return []
    factor = next((f for f in (8, 4) if int(inner.src[0].arg) % f == 0), 1)
    if factor > 1:
        return [(len(ranges) - 1, factor)]
    rows = ranges[-2] if len(ranges) >= 2 else None
    if rows is not None and int(inner.src[0].arg) % 2 == 0 and int(rows.src[0].arg) % 2 == 0:
        # a window of 2 x 2 (14 x 14 outputs): no vector lanes, but the window's outputs still share its value
        if any(rows in below for below in divided):
            return [(len(ranges) - 2, 2), (len(ranges) - 1, 2)]
    return []


def _clamped(index: Node, extent: int) -> Node:
    """index, or extent - 1 where it runs past the end: a register tile that does not divide its dim recomputes
    (and stores again) the last row instead of needing a guarded store. Folds away where it cannot run past."""
    return simplify(index.lt(extent).where(index, const(extent - 1)))


def _lower_once(ast: Node, reduce_upcast: bool, max_lanes: int = 16) -> tuple[Node, list[Node], _Lowerer]:
    out, value, *offsets = ast.src
    lw = _Lowerer(reduce_upcast, max_lanes)
    if ast.arg is None:
        # a reshape keeps the flat order, so the loops may as well run over its source's dims: (heads, head dim)
        # rather than their product, which would need a division and a modulo to find the head again
        while value.op is Op.RESHAPE:
            value = value.src[0]
    shape = value.shape
    dims = [k for k, s in enumerate(shape) if s != 1]
    ranges = [lw.new_range(shape[k], "loop") for k in dims]
    idx = [const(0)] * len(shape)
    for k, r in zip(dims, ranges):
        idx[k] = r
    store_value = simplify(lw.lower(value, tuple(idx), None))
    if ast.arg is None:
        address = flat_index(tuple(idx), shape)
    elif len(ast.arg) != len(shape):  # a whole tensor laid into a 1-d output at a start (a shared buffer)
        address = simplify(flat_index(tuple(idx), shape) + ast.arg[0])
    else:  # assign_at: a block of the output
        address = _block_address(lw, ast.arg, offsets, idx, shape, out)
    store = Node(Op.STORE, value.dtype, (lw.param(out.arg[0], out.dtype), address, store_value))
    store, ranges = _merge_ranges(lw, store, ranges)
    return store, ranges, lw


def _block_address(lw: _Lowerer, starts: tuple, offsets: list[Node], idx: list[Node], block: tuple, out: Node) -> Node:
    """Where element ``idx`` of a block written at ``starts`` lands in the whole output (``assign_at``). A start
    known only at run time (None in ``starts``, the next of ``offsets``) is clamped to keep the block inside."""
    full = out.arg[1]
    dynamic = iter(offsets)
    where: list[Node] = []
    for i, st, size, extent in zip(idx, starts, block, full):
        if st is None:
            o = simplify(lw.lower(next(dynamic), (), None))
            hi = const(extent - size)
            where.append(i + hi.lt(o).where(hi, o.lt(0).where(const(0), o)))
        else:
            where.append(i + st)
    return simplify(flat_index(tuple(where), full))


def _output_upcasts(store: Node, ranges: list[Node], opts: KernelOpts) -> list[tuple[int, int]]:
    """Which output dims one reduce loop should compute several outputs of: [(position in ranges, factor)].

    The innermost dim is upcast when a load walks the reduce loop with a stride but that dim contiguously (a
    column sum; B in a matmul): each iteration then reads a contiguous run. The dim outside it is upcast too
    when some load ignores the innermost dim but depends on this one (A in a matmul): every B value loaded is
    then used for several rows, a register tile.
    """
    nodes = store.toposort()
    reduce_ranges = {n for n in nodes if n.op is Op.RANGE and n.arg[1] == "reduce"}
    if not ranges or not reduce_ranges:
        return []
    inner = ranges[-1]
    loads, lane, across = _split_load_terms(store, nodes, inner)
    strided = any(
        t.get(lane) == 1 and any(r in t for r in reduce_ranges) and all(t.get(r) != 1 for r in reduce_ranges)
        for t in loads
    )
    # reduces too short for reduce lanes (a 3x3 convolution window) read a contiguous run along the innermost
    # output dim just as well: several outputs per loop, their loads one (masked) vector
    short = prod(int(r.src[0].arg) for r in reduce_ranges) < 32
    if not strided and not (short and any(t.get(lane) == 1 for t in loads)):
        return []
    out = []
    # two vectors per row of the tile: 16 columns, or 32 where a vector holds 16 floats (AVX-512)
    widest = (32, 16, 8, 4, 2) if _vector_lanes() >= 16 else (16, 8, 4, 2)
    j = opts.cols if opts.cols is not None else _factor(inner.src[0].arg, widest)
    if j > 1:
        out.append((len(ranges) - 1, j))
    if len(ranges) >= 2:
        rows = ranges[-2]
        reuse = any(rows in t and not across & t.keys() and any(r in t for r in reduce_ranges) for t in loads)
        i = _tile_rows(int(rows.src[0].arg), prod(int(r.src[0].arg) for r in reduce_ranges)) if reuse else 1
        if reuse and opts.rows is not None:
            i = opts.rows if int(rows.src[0].arg) >= opts.rows else 1
        if i > 1:
            out.append((len(ranges) - 2, i))
    return out


PACK = 16  # the register tile's columns, so a packed operand's strips (``Tensor.matmul``: (N/16, K, 16))


def _split_load_terms(store: Node, nodes: list[Node], inner: Node) -> tuple[list[dict[Node, int]], Node, set[Node]]:
    """The loads' index expressions as affine terms, for the choice of output upcasts: (terms per load, the
    range that counts as the innermost dim's lanes, the ranges standing for the innermost dim).

    A packed operand is read at ``(j // 16) * K * 16 + k * 16 + j % 16``, not affine in the column j; with j
    split as ``16 * hi + lo`` it is, and ``lo`` walks it contiguously. Upcasting j by 16 makes that split."""
    loads = [n.src[1] for n in nodes if n.op is Op.LOAD]
    extent = int(inner.src[0].arg)
    if extent % PACK or not any(_count_divmod(x) for x in loads):
        return [affine_terms(x)[0] for x in loads], inner, {inner}
    hi = Node(Op.RANGE, int64, (const(extent // PACK),), (-2, "loop"))
    lo = Node(Op.RANGE, int64, (const(PACK),), (-1, "loop"))
    split = {inner: hi * PACK + lo}
    return [affine_terms(simplify(substitute(x, split)))[0] for x in loads], lo, {hi, lo}


def _columns_outside(ranges: list[Node], upcasts: dict[int, int], reduce_work: int) -> list[Node]:
    """The loop order of a register tile over (rows, columns) with a short reduce: when the rows' operand (every
    row by the reduce) fits in L1 and there are many more column tiles than row tiles (a convolution: 32
    output channels by 12544 positions, a reduce of 144), the column loop goes outside. Each column strip of
    the other operand is then read from memory once and used by every row tile while it is in L1, instead of
    the whole operand streaming from memory once per row tile; the strips are what the threads share out."""
    if len(ranges) != 2:
        return ranges
    rows, cols = (int(r.src[0].arg) for r in ranges)
    if reduce_work < 64 or rows * upcasts.get(0, 1) * reduce_work * 4 > 32 * 1024 or cols < 8 * rows:
        return ranges
    return [ranges[1], ranges[0]]


def _tile_rows(extent: int, reduce_extent: int) -> int:
    """Rows of a register tile whose rows are two vectors of columns (16 columns, 32 with AVX-512): 6 rows (12
    vector accumulators, 2 vector loads and 6 broadcasts per step) for long reduces, also where 6 does not divide
    the rows (the last tile recomputes the last row, at most 5 of ``extent`` rows: little waste from 48 rows on);
    4 or 2 rows otherwise.

    A CPU with 32 vector registers (x86 with AVX-512) holds 8 rows (16 accumulators): every strip of the other
    operand is read for 8 rows instead of 4 or 6. Short reduces gain most, since re-reading that operand is
    most of their time: a 3x3 convolution's products (reduce 27 to 144) ran 1.2-1.7x faster than with 4 or 6
    rows on a 2-core AVX-512 machine, even where 27 rows make the last tile recompute 5; a 1024^3 matmul ran
    the same."""
    if _vector_registers() >= 32 and reduce_extent >= 16 and (extent % 8 == 0 or extent >= 24):
        return 8
    if reduce_extent >= 64 and (extent % 6 == 0 and extent >= 12 or extent >= 48):
        return 6
    if reduce_extent >= 16 and extent >= 8 and _factor(extent, (4, 2)) == 1:
        return 4  # an odd number of rows (27 = 3 channels x 3 x 3): the last tile recomputes a row
    return _factor(extent, (4, 2))


@functools.cache
def _vector_registers() -> int:
    """Vector registers for the widest packs on this CPU (``device/cpu_features.py``)."""
    from ..device.cpu_features import vector_registers

    return vector_registers()


def _vector_lanes() -> int:
    """float32 lanes of this CPU's widest vector (16 with AVX-512, else 8): a register tile's row is two."""
    from ..device.cpu_features import vector_widths

    return vector_widths()[0]


def _dot_tile(store: Node, ranges: list[Node]) -> list[tuple[int, int]]:
    """A register tile for dot products (both operands contiguous along the reduce: ``x @ w.T``).

    Each output keeps its own vector of partial sums along the reduce; computing a 4 x 2 block of outputs per
    loop lets every row's vector load serve two columns and every column's serve four rows (6 loads per 8
    multiply-adds instead of 2 per 1). Only when one load depends on the rows but not the columns and another
    the other way round, and the reduce is long enough to use vector lanes.
    """
    if len(ranges) < 2:
        return []
    nodes = store.toposort()
    reduce_ranges = [n for n in nodes if n.op is Op.RANGE and n.arg[1] == "reduce"]
    if not reduce_ranges or max(int(r.src[0].arg) for r in reduce_ranges) < 64:
        return []
    rows, cols = ranges[-2], ranges[-1]
    loads = [affine_terms(n.src[1])[0] for n in nodes if n.op is Op.LOAD]
    contiguous = [t for t in loads if any(t.get(r) == 1 for r in reduce_ranges)]
    row_only = any(rows in t and cols not in t for t in contiguous)
    col_only = any(cols in t and rows not in t for t in contiguous)
    if not (row_only and col_only):
        return []
    out = []
    j = _factor(cols.src[0].arg, (2,))
    if j > 1:
        out.append((len(ranges) - 1, j))
    i = _factor(rows.src[0].arg, (4, 2))
    if i > 1:
        out.append((len(ranges) - 2, i))
    return out


def _factor(extent: int, choices: tuple[int, ...]) -> int:
    return next((f for f in choices if extent % f == 0 and extent >= 2 * f), 1)


def _merge_ranges(lw: _Lowerer, store: Node, ranges: list[Node]) -> tuple[Node, list[Node]]:
    """Merge adjacent output loops, innermost pair first, where that adds no div/mod."""
    k = len(ranges) - 2
    while k >= 0:
        a, b = ranges[k], ranges[k + 1]
        na, nb = a.src[0].arg, b.src[0].arg
        merged = lw.new_range(na * nb, "loop")
        candidate = simplify(substitute(store, {a: merged // nb, b: merged % nb}))
        if _count_divmod(candidate) <= _count_divmod(store):
            store = candidate
            ranges[k : k + 2] = [merged]
        k -= 1
    return store, ranges
