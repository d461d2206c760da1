"""GPU lowering: a scheduled kernel -> a linear program for a grid of thread blocks.

The kernel is lowered as for the CPU but without register-level choices (``lower._lower_once`` with no lanes,
upcasts or blocking); then its output loops are mapped to blocks and threads. ``RANGE`` nodes of kind
``"block"`` and ``"thread"`` stand for ``blockIdx.x`` and ``threadIdx.x``: no instruction opens them, every
thread of the grid runs the whole instruction list with its own values. Five mappings, tried in order:

- **tiled matmul**: a kernel whose one reduce sums ``x * y`` where ``x`` depends on the rows and the reduce
  but not the columns and ``y`` the other way round (any prologue: casts, dequantization). A block computes a
  ``TM x TN`` tile, each thread ``UM x UN`` outputs in runs of 4 neighbours (``_spread``: 16-byte reads of
  shared memory, free of bank conflicts). Per step of ``TK``, the block's threads store ``x`` for ``TM x TK``
  and ``y`` for ``TK x TN`` positions into shared memory (out-of-range positions store 0), each thread a run
  of neighbours (coalesced reads), wait at a barrier and read them back in a loop over the step's ``k``: per
  ``k``, a thread reads its ``UM + UN`` values and updates its ``UM x UN`` sums, so only those are live
  (unrolled over the step instead, the values of the whole step were live: 195 registers, one block per SM).
  ``__launch_bounds__`` asks for ``matmul_blocks_per_sm`` blocks per SM (2: at most 128 registers a thread).
  The two tiles are double-buffered by the step's parity, so one barrier per step is enough: a thread that
  overwrites a buffer two steps later has passed the barrier every thread reaches only after reading it.
- **tiled matmul on tensor cores** (``tiled_mma``), where the target has them (``GPUTarget.mma``: sm_80 and
  later) and ``x`` and ``y`` are casts to float32 of float16 (or of bfloat16) values summed in float32, as
  ``a.half() @ b.half()`` is: the same tiles, double buffering and one barrier per step, but the products are
  warp-level ``mma.sync`` m16n8k16 instructions (``gpu_mma``) instead of per-thread FMAs. The tiles hold the
  16-bit values themselves, as 32-bit words of two neighbours along k (A rows x k-words, B columns x k-words:
  a fragment register is one read; rows padded to 4 mod 8 words, so a warp's fragment read touches 32
  different banks). Each thread fills whole words (two 16-bit reads of global memory, packed), neighbouring
  threads on neighbouring words. Per 16 of the step's k, a warp reads its fragments of A (4 registers per 16
  rows) and B (2 per 8 columns) and issues one instruction per 16x8 part of its outputs; each value of D is
  a REDUCE of an ``MMA`` node, which the CUDA renderer writes as the instruction's own accumulator (C = D).
  Sizes for sm_80/sm_90 (``mma_tile``): 8 warps as 2 x 4, each 64 x 32 outputs (4 x 4 instructions), so a
  block computes 128 x 128; per 16 of k a warp reads 24 words of shared memory for 16 instructions, and a
  thread keeps 64 float32 sums: 120-128 registers (ptxas), so two blocks (16 warps) fit on an SM, one's
  global reads and barrier overlapping the other's instructions. The k step of 32 takes 2 x 2 x 128 rows of
  20 words: 40 KiB of shared memory per block (the static limit is 48 KiB), 80 KiB for two. Both
  architectures run the same ``mma.sync``; Hopper's faster asynchronous ``wgmma`` is not used.
- **row kernel**: a kernel whose reduces depend on some output dims only (the rows), read broadcast over the
  others (the columns): softmax, layer norm and their gradients, which the scheduler fuses on a GPU. One block
  per row; each reduce is a block reduce (below) whose result every thread receives, inner ones first (the max
  before the sum of exponentials that reads it); then the threads loop over the row's columns, neighbouring
  threads on neighbouring columns. The row is read once per reduce and once more for the output, from the
  cache after the first pass, instead of from memory by three kernels.
- **block reduce**: one block per output. Each thread reduces every ``T``-th element of the reduce, then the
  warp combines its threads' partial values with shuffles (``__shfl_down_sync``), each warp's first lane writes
  its value to shared memory, and after a barrier the first warp's lanes combine those; a last shuffle hands
  the result to every thread, which computes the epilogue; thread 0 stores.
- **per thread**: the flat output index is ``block * T + thread``; threads past the end recompute the last
  output and do not store it. Reduce loops stay in each thread.

Every thread of a block runs every barrier, shuffle and MMA (none sits under a condition), which the
PYTHON_GPU device checks as it runs the same programs with GPU semantics.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..helpers import prod
from ..ir.dtypes import DType, float32, int64, uint32
from ..ir.node import Node, const
from ..ir.ops import Op
from ..ir.rewrite import substitute
from ..ir.symbolic import affine_terms, simplify
from . import gpu_mma
from .linearize import LinearProgram, linearize
from .lower import LoweredKernel, _lower_once, reduce_identity, unflatten_index


@dataclass(frozen=True)
class GPUTarget:
    """The shape of the code for one kind of GPU (or for the PYTHON_GPU emulation, which wants small blocks)."""

    block: int = 256  # threads of a per-thread block
    reduce_block: int = 256  # most threads of a block that reduces one output
    warp: int = 32
    block_reduce_min: int = 128  # reduces at least this long get a block per output ...
    few_outputs: int = 2048  # ... when their loads are contiguous along the reduce, or outputs are this few
    # a reduce broadcast back over its innermost dims fuses into a row kernel when a row holds this many elements
    # (shorter: the three kernels of a softmax waste fewer threads; longer: one block per row is too few threads)
    row_min: int = 128
    row_max: int = 1 << 16
    tile: tuple[int, int, int, int, int] = (16, 16, 8, 8, 8)  # matmul: threads (y, x), outputs (y, x), k step
    matmul_min: int = 64  # rows, columns and reduce at least this for the tiled matmul
    # blocks of the tiled matmul that must fit on one SM at once (the compiler caps registers to allow it: 2
    # blocks of 256 threads get 128 registers each; uncapped, 195 registers left one block, 8 warps, per SM)
    matmul_blocks_per_sm: int = 2
    pad: int = 4  # shared memory row padding of the tiles (keeps their stores free of bank conflicts)
    # tensor cores (PTX mma.sync m16n8k16, sm_80 and later) for float16/bfloat16 matmuls summed in float32
    mma: bool = False
    # warps (y, x), 16x8 instructions per warp (y, x), k step: 2x4 warps of 64x32 make a 128x128 tile
    mma_tile: tuple[int, int, int, int, int] = (2, 4, 4, 4, 32)
    mma_blocks_per_sm: int = 2

    def __post_init__(self) -> None:
        ty, tx, um, un, tk = self.tile
        if (ty * um * tk) % (ty * tx) or (tx * un * tk) % (ty * tx):
            raise ValueError(f"GPUTarget: tile {self.tile}: TM*TK and TK*TN must split evenly over TY*TX threads")
        wy, wx, sy, sx, mk = self.mma_tile
        words, threads = mk // 2, wy * wx * self.warp
        if mk % gpu_mma.K or (wy * sy * gpu_mma.M * words) % threads or (wx * sx * gpu_mma.N * words) % threads:
            raise ValueError(f"GPUTarget: mma_tile {self.mma_tile}: the k step must be a multiple of 16 and the "
                             "words of both tiles must split evenly over the threads")  # fmt: skip


CUDA_TARGET = GPUTarget(mma=True)  # sm_80 and later (A100, H100, H200); ``gpu_target`` drops mma before that
# PYTHON_GPU runs every thread in Python: small blocks and tiles, and low thresholds, so that the op suite's
# small shapes take every path (several warps, partial tiles, partial blocks; 2x2 warps of 2x2 instructions)
EMULATED_TARGET = GPUTarget(block=64, reduce_block=64, block_reduce_min=4, few_outputs=16, row_min=4, row_max=200,
                            tile=(4, 2, 2, 2, 4), matmul_min=2, pad=1, mma=True, mma_tile=(2, 2, 2, 2, 32))  # fmt: skip
GPU_TARGETS = {"cuda": CUDA_TARGET, "python_gpu": EMULATED_TARGET}
MMA_MIN_ARCH = 80  # mma.sync m16n8k16 on float16 and bfloat16 needs sm_80


@functools.cache  # asked per kernel root when scheduling: the older GPU's target is made once
def gpu_target(renderer: str, arch: int | None = None) -> GPUTarget | None:
    """The target a device with this renderer lowers for (None: not a GPU). ``arch`` is a CUDA device's compute
    capability as 10 * major + minor: before sm_80 its float16 matmuls keep the FMA tiles."""
    target = GPU_TARGETS.get(renderer)
    if target is not None and target.mma and arch is not None and arch < MMA_MIN_ARCH:
        return replace(target, mma=False)
    return target


def lower_for_gpu(ast: Node, target: GPUTarget, name: str = "kernel") -> LinearProgram:
    """ast = STORE(PARAM output, value) at tensor level -> a linear program with ``meta["gpu"] = (grid, block)``.

    ``outer_size`` of the result is the number of threads launched (grid * block)."""
    store, ranges, lw = _lower_once(ast, reduce_upcast=False)
    declared = {n.arg[0]: n.dtype for n in ast.toposort() if n.op is Op.PARAM}
    params = [declared[i] for i in range(max(declared) + 1)]
    mapper = _Mapper(store, ranges, target, lw.next_range)
    if prod(mapper.extents) == 0:
        return linearize(LoweredKernel(store, ranges, 0, 1, params), name, fuse_mul_add=False)
    mapped, grid, block = mapper.map()
    # sums of products stay ACC_UPDATE(ADD, MUL): the tensor-core matcher looks for them, and the CUDA renderer
    # lets a product that only feeds a sum fuse into it (render/cuda.py, _summands)
    lin = linearize(LoweredKernel(mapped, mapper.loops, grid * block, 1, params), name, fuse_mul_add=False)
    lin.global_range = None  # loops a thread runs (a row kernel's columns) are not split across CPU threads
    lin.meta["gpu"] = (grid, block)
    if mapper.blocks_per_sm:
        lin.meta["blocks_per_sm"] = mapper.blocks_per_sm
    return lin


class _Mapper:
    def __init__(self, store: Node, ranges: list[Node], target: GPUTarget, next_id: int):
        self.store, self.ranges, self.t = store, ranges, target
        self.extents = [int(r.src[0].arg) for r in ranges]
        self.next_id = next_id
        self.locals = 0
        self.blocks_per_sm = 0  # blocks that must fit on one SM at once (0: as many as the registers allow)
        self.loops: list[Node] = []  # loops every thread runs around the stores (a row kernel's columns)

    def new_range(self, extent: int, kind: str) -> Node:
        self.next_id += 1
        return Node(Op.RANGE, int64, (const(extent),), (self.next_id - 1, kind))

    def new_local(self, dtype: DType, size: int) -> Node:
        self.locals += 1
        return Node(Op.LOCAL, dtype, (), (self.locals - 1, size))

    def map(self) -> tuple[Node, int, int]:
        plan = _matmul_parts(self.store, self.ranges, self.t)
        if plan is not None:
            halves = gpu_mma.half_operands(*plan[:3]) if self.t.mma else None
            return self.tiled_mma(plan[0], *halves, plan[3]) if halves else self.tiled_matmul(*plan)
        rows = _row_ranges(self.store, self.ranges)
        if rows is not None:
            return self.row_kernel(rows)
        reduces = _top_reduces(self.store)
        if reduces and self._wants_block_reduce(reduces):
            return self.block_reduce()
        return self.per_thread()

    # ---- per thread

    def per_thread(self) -> tuple[Node, int, int]:
        total = prod(self.extents)
        block = min(self.t.block, total)
        grid = -(-total // block)
        flat = self.new_range(grid, "block") * block + self.new_range(block, "thread")
        inside = None
        if grid * block != total:  # the last block's extra threads recompute the last output, unstored
            inside = flat.lt(total)
            flat = inside.where(flat, const(total - 1))
        idx = unflatten_index(simplify(flat), tuple(self.extents)) if self.ranges else ()
        store = simplify(substitute(self.store, dict(zip(self.ranges, idx))))
        return (_gate_stores(store, simplify(inside)) if inside is not None else store), grid, block

    # ---- block reduce

    def _wants_block_reduce(self, reduces: list[Node]) -> bool:
        lengths = [prod(int(r.src[0].arg) for r in _reduce_ranges(n)) for n in reduces]
        if max(lengths) < self.t.block_reduce_min:
            return False
        if prod(self.extents) <= self.t.few_outputs:
            return True
        rranges = {r for n in reduces for r in _reduce_ranges(n)}
        loads = [affine_terms(n.src[1])[0] for n in self.store.toposort() if n.op is Op.LOAD]
        return any(t.get(r) == 1 for t in loads for r in rranges)

    def block_reduce(self) -> tuple[Node, int, int]:
        grid = prod(self.extents)
        bid = self.new_range(grid, "block")
        idx = unflatten_index(bid, tuple(self.extents)) if self.ranges else ()
        store = simplify(substitute(self.store, dict(zip(self.ranges, idx))))
        reduces = _top_reduces(store)
        longest = max(prod(int(r.src[0].arg) for r in _reduce_ranges(n)) for n in reduces)
        block = self.t.warp
        while block < min(longest, self.t.reduce_block):
            block *= 2
        tid = self.new_range(block, "thread")
        combined = {n: self._combine(self._partial(n, tid, block), n.arg, tid, block) for n in reduces}
        store = substitute(store, combined)
        return _gate_stores(store, tid.lt(1)), grid, block

    # ---- row kernel

    def row_kernel(self, rows: list[Node]) -> tuple[Node, int, int]:
        """One block per row: the reduces that depend on the row only (softmax's max and sum, layer norm's mean
        and variance) are block reduces every thread receives, in order; then the threads loop over the row's
        columns, neighbouring threads on neighbouring columns, the last step's extra threads recomputing the
        last column without storing it."""
        cols = [r for r in self.ranges if r not in rows]
        row_extents = tuple(int(r.src[0].arg) for r in rows)
        col_extents = tuple(int(r.src[0].arg) for r in cols)
        grid, width = prod(row_extents), prod(col_extents)
        longest = max([width] + [_length(n) for n in self.store.toposort() if n.op is Op.REDUCE])
        block = self.t.warp
        while block < min(longest, self.t.reduce_block):
            block *= 2
        bid, tid = self.new_range(grid, "block"), self.new_range(block, "thread")
        step = self.new_range(-(-width // block), "loop")
        self.loops = [step]
        flat, inside = step * block + tid, None
        if width % block:
            inside = simplify(flat.lt(width))
            flat = inside.where(flat, const(width - 1))
        at = dict(zip(rows, unflatten_index(bid, row_extents)))
        at.update(zip(cols, unflatten_index(simplify(flat), col_extents)))
        store = simplify(substitute(self.store, at))
        done: dict[Node, Node] = {}
        for n in store.toposort():  # inner reduces first: softmax's sum reads the max
            if n.op is Op.REDUCE and _free_ranges(n) <= {bid}:
                done[n] = self._combine(self._partial(substitute(n, done), tid, block), n.arg, tid, block)
        store = substitute(store, done)
        return (_gate_stores(store, inside) if inside is not None else store), grid, block

    def _partial(self, n: Node, tid: Node, block: int) -> Node:
        """This thread's share of reduce ``n``: elements tid, tid + block, ... of its flattened loops."""
        rranges = _reduce_ranges(n)
        extents = tuple(int(r.src[0].arg) for r in rranges)
        length = prod(extents)
        step = self.new_range(-(-length // block), "reduce")
        flat = step * block + tid
        body = substitute(n.src[0], dict(zip(rranges, unflatten_index(flat, extents))))
        if length % block:
            inside = simplify(flat.lt(length))
            body = inside.where(_gate_loads(body, inside, step), const(reduce_identity(n.arg, n.dtype), n.dtype))
        return Node(Op.REDUCE, n.dtype, (simplify(body), step), n.arg)

    def _combine(self, value: Node, rop: Op, tid: Node, block: int) -> Node:
        """Combine one value per thread of the block into the block's result, which every thread receives."""
        warp, dt = self.t.warp, value.dtype
        value = _shuffle_reduce(value, rop, warp)
        if block > warp:
            warps = block // warp
            lane, which = simplify(tid % warp), simplify(tid // warp)
            shared = self.new_local(dt, warps)
            barrier = Node(Op.BARRIER, int64, (_store(shared, which, value, lane.lt(1)),))
            mine = Node(Op.LOAD, dt, (shared, simplify(lane.lt(warps).where(lane, const(warps - 1))), barrier))
            value = lane.lt(warps).where(mine, const(reduce_identity(rop, dt), dt))
            value = _shuffle_reduce(value, rop, warps)
        return Node(Op.SHUFFLE, dt, (value,), ("idx", 0))

    # ---- tiled matmul

    def _tiles(self, reduce: Node, k: Node, tm: int, tn: int, block: int) -> _Tiles:
        """One block per ``tm x tn`` tile of the output (of each batch): the grid and where each block's is."""
        rows, cols, batch = self.ranges[-2], self.ranges[-1], self.ranges[:-2]
        m, n = int(rows.src[0].arg), int(cols.src[0].arg)
        tiles_m, tiles_n = -(-m // tm), -(-n // tn)
        batches = tuple(self.extents[:-2])
        grid = prod(batches) * tiles_m * tiles_n
        bid, tid = self.new_range(grid, "block"), self.new_range(block, "thread")
        tile_n, tile_m = bid % tiles_n, (bid // tiles_n) % tiles_m
        batch_idx = unflatten_index(bid // (tiles_n * tiles_m), batches) if batch else ()
        placeholder = Node(Op.VAR, reduce.dtype, (), ("gpu_tile_acc", 0, 0))
        epilogue = substitute(self.store, {reduce: placeholder})
        return _Tiles(rows, cols, m, n, k, int(k.src[0].arg), tm, tn, grid, tid, tile_m * tm, tile_n * tn,
                      dict(zip(batch, batch_idx)), epilogue, placeholder)  # fmt: skip

    def tiled_matmul(self, reduce: Node, x: Node, y: Node, k: Node) -> tuple[Node, int, int]:
        ty_n, tx_n, um, un, tk = self.t.tile
        pad = self.t.pad
        self.blocks_per_sm = self.t.matmul_blocks_per_sm
        block = ty_n * tx_n
        tiles = self._tiles(reduce, k, ty_n * um, tx_n * un, block)
        tid = tiles.tid
        step = self.new_range(-(-tiles.k_total // tk), "reduce")
        parity = step % 2
        a_stride, b_stride = tiles.tm + pad, tiles.tn + pad
        a_local, b_local = self.new_local(x.dtype, 2 * tk * a_stride), self.new_local(y.dtype, 2 * tk * b_stride)
        stores = []
        for expr, along, width, stride, local in (
            (x, tiles.rows, tiles.tm, a_stride, a_local),
            (y, tiles.cols, tiles.tn, b_stride, b_local),
        ):
            k_fast = any(t.get(k) == 1 for t in _load_terms(expr))  # neighbouring threads read along k
            parts = width * tk // block
            for part in range(parts):
                e = tid * parts + part  # a thread's elements are neighbours: one vector load where aligned
                pos, kk = (e // tk, e % tk) if k_fast else (e % width, e // width)
                value = tiles.operand(expr, along, pos, step * tk + kk, tk)
                address = parity * (tk * stride) + kk * stride + pos
                stores.append(_store(local, simplify(address), simplify(value), None))
        barrier = Node(Op.BARRIER, int64, tuple(stores))
        ty, tx = simplify(tid // tx_n), simplify(tid % tx_n)

        # the k step's loop is the inner loop of the reduce: per k, a thread reads its UM + UN values and updates
        # its UM x UN sums, so only those values and the sums are live (not the whole step's values)
        kr = self.new_range(tk, "reduce")

        def shared(local: Node, stride: int, pos: Node) -> Node:
            return Node(Op.LOAD, local.dtype, (local, simplify(parity * (tk * stride) + kr * stride + pos), barrier))

        a_vals = [shared(a_local, a_stride, _spread(ty, ty_n, um, i)) for i in range(um)]
        b_vals = [shared(b_local, b_stride, _spread(tx, tx_n, un, j)) for j in range(un)]
        dt = reduce.src[0].dtype
        out_stores = []
        for i in range(um):
            for j in range(un):
                acc = Node(Op.REDUCE, reduce.dtype, (Node(Op.MUL, dt, (a_vals[i], b_vals[j])), step, kr), Op.ADD)
                out_stores.append(tiles.output(_spread(ty, ty_n, um, i), _spread(tx, tx_n, un, j), acc))
        return Node(Op.SINK, self.store.dtype, tuple(out_stores)), tiles.grid, block

    def tiled_mma(self, reduce: Node, x: Node, y: Node, element: DType, k: Node) -> tuple[Node, int, int]:
        """The tiled matmul on tensor cores: ``x`` and ``y`` are float16 or bfloat16 values (``gpu_mma``)."""
        warps_y, warps_x, per_warp_y, per_warp_x, tk = self.t.mma_tile
        self.blocks_per_sm = self.t.mma_blocks_per_sm
        warp_m, warp_n = per_warp_y * gpu_mma.M, per_warp_x * gpu_mma.N  # the outputs of one warp
        block = warps_y * warps_x * self.t.warp
        tiles = self._tiles(reduce, k, warps_y * warp_m, warps_x * warp_n, block)
        tid = tiles.tid
        words = tk // 2  # a row (of A) or column (of B) of a tile holds the step's k as words of two halves
        # a row is words + 4 apart (4 mod 8): the 8 rows x 4 words that one fragment read of a warp touches fall
        # in 32 different banks of shared memory
        stride = words + 4
        step = self.new_range(-(-tiles.k_total // tk), "reduce")
        parity = step % 2
        a_local, b_local = self.new_local(uint32, 2 * tiles.tm * stride), self.new_local(uint32, 2 * tiles.tn * stride)
        stores = []
        for expr, along, width, local in ((x, tiles.rows, tiles.tm, a_local), (y, tiles.cols, tiles.tn, b_local)):
            k_fast = any(terms.get(k) == 1 for terms in _load_terms(expr))
            for part in range(width * words // block):
                e = part * block + tid  # neighbouring threads on neighbouring words: coalesced reads
                pos, word = (e // words, e % words) if k_fast else (e % width, e // width)
                low, high = (tiles.operand(expr, along, pos, step * tk + word * 2 + h, tk, gpu_mma.half_bits)
                             for h in (0, 1))  # fmt: skip
                address = parity * (width * stride) + pos * stride + word
                stores.append(_store(local, simplify(address), simplify(gpu_mma.pack_word(low, high)), None))
        barrier = Node(Op.BARRIER, int64, tuple(stores))
        warp, lane = tid // self.t.warp, tid % self.t.warp
        g, t = lane // 4, lane % 4
        warp_row, warp_col = warp // warps_x * warp_m, warp % warps_x * warp_n
        kr = self.new_range(tk // gpu_mma.K, "reduce")  # the instructions' k within the step

        def register(local: Node, width: int, pos: Node, word: Node) -> Node:
            index = parity * (width * stride) + pos * stride + kr * (gpu_mma.K // 2) + word
            return Node(Op.LOAD, uint32, (local, simplify(index), barrier))

        a_regs = [[register(a_local, tiles.tm, warp_row + i * gpu_mma.M + row, word)
                   for row, word in gpu_mma.a_fragment(g, t)] for i in range(per_warp_y)]  # fmt: skip
        b_regs = [[register(b_local, tiles.tn, warp_col + j * gpu_mma.N + col, word)
                   for col, word in gpu_mma.b_fragment(g, t)] for j in range(per_warp_x)]  # fmt: skip
        out_stores = []
        for i in range(per_warp_y):
            for j in range(per_warp_x):
                d = gpu_mma.mma(a_regs[i], b_regs[j], element)
                for value, (row, col) in zip(d, gpu_mma.c_fragment(g, t)):
                    acc = Node(Op.REDUCE, float32, (value, step, kr), Op.ADD)
                    out_stores.append(tiles.output(warp_row + i * gpu_mma.M + row, warp_col + j * gpu_mma.N + col, acc))
        return Node(Op.SINK, self.store.dtype, tuple(out_stores)), tiles.grid, block


@dataclass(frozen=True)
class _Tiles:
    """A matmul's output in tiles of ``tm x tn``, one per block (``_Mapper._tiles``), reduced in steps of k."""

    rows: Node
    cols: Node
    m: int
    n: int
    k: Node
    k_total: int
    tm: int
    tn: int
    grid: int
    tid: Node
    row0: Node  # the first row and column of this block's tile
    col0: Node
    at_batch: dict[Node, Node]
    epilogue: Node  # the kernel's stores, the reduce replaced by ``placeholder``
    placeholder: Node

    def operand(self, expr: Node, along: Node, pos: Node, kpos: Node, tk: int,
                convert: Callable[[Node], Node] | None = None) -> Node:  # fmt: skip
        """``expr`` (x along the rows, y along the columns) at ``pos`` of the tile and ``kpos`` of k, through
        ``convert``; 0 past the matrix (a partial tile or k step), where it reads nothing."""
        rows = along is self.rows
        extent, width, where = (self.m, self.tm, self.row0 + pos) if rows else (self.n, self.tn, self.col0 + pos)
        inside = _and(where.lt(extent) if extent % width else None,
                      kpos.lt(self.k_total) if self.k_total % tk else None)  # fmt: skip
        value = substitute(expr, {along: where, self.k: kpos, **self.at_batch})
        convert = convert or (lambda v: v)
        if inside is None:
            return convert(value)
        value = convert(_gate_loads(value, inside))
        return inside.where(value, const(0, value.dtype))

    def output(self, row: Node, col: Node, acc: Node) -> Node:
        """The kernel's stores at ``row``, ``col`` of the tile with ``acc`` as the reduce; none past the output."""
        row, col = self.row0 + row, self.col0 + col
        inside = _and(row.lt(self.m) if self.m % self.tm else None, col.lt(self.n) if self.n % self.tn else None)
        out = simplify(substitute(self.epilogue, {self.rows: row, self.cols: col, **self.at_batch}))
        if inside is not None:
            out = _gate_stores(_gate_loads(out, simplify(inside)), simplify(inside))
        return substitute(out, {self.placeholder: acc})


# ---------------------------------------------------------------- helpers


def _spread(thread: Node, threads: int, outputs: int, i: int) -> Node:
    """The position in the tile of a thread's ``i``-th output along one dim: runs of 4 neighbours (one vector
    read of shared memory), the runs of the threads side by side, then the next runs: thread t of 16 with 8
    outputs has 4t..4t+3 and 64+4t..64+4t+3, so a warp's reads of one run are contiguous (no bank conflicts)."""
    run = 4 if outputs % 4 == 0 else outputs
    return thread * run + (i // run) * (threads * run) + i % run


def _reduce_ranges(n: Node) -> tuple[Node, ...]:
    return tuple(s for s in n.src[1:] if s.op is Op.RANGE)


def _length(n: Node) -> int:
    return prod(int(r.src[0].arg) for r in _reduce_ranges(n))


def _free_ranges(n: Node) -> set[Node]:
    """The ranges a REDUCE's value depends on: those in it but not looped over by it or a reduce inside it."""
    nodes = n.toposort()
    bound = {r for m in nodes if m.op is Op.REDUCE for r in _reduce_ranges(m)}
    return {m for m in nodes if m.op is Op.RANGE} - bound


def _row_ranges(store: Node, ranges: list[Node]) -> list[Node] | None:
    """The output ranges of a row kernel's rows (none: one row): those its reduces depend on, when some output
    ranges (the columns) are not among them and every reduce depends on the rows only or sits in the body of
    one that does (an inner loop of it); None for any other kernel."""
    reduces = [n for n in store.toposort() if n.op is Op.REDUCE]
    if not reduces or not ranges:
        return None
    outputs = set(ranges)
    free = {n: _free_ranges(n) for n in reduces}
    row_reduces = [n for n in reduces if free[n] <= outputs]
    rows = set().union(*(free[n] for n in row_reduces))
    inner = {m for n in row_reduces for m in n.src[0].toposort() if m.op is Op.REDUCE}
    if rows == outputs or any(n not in inner and not free[n] <= rows for n in reduces):
        return None
    return [r for r in ranges if r in rows]


def _top_reduces(store: Node) -> list[Node]:
    """The REDUCE nodes not inside another reduce's body (those are per-thread loops wherever they sit)."""
    reduces = [n for n in store.toposort() if n.op is Op.REDUCE]
    inner = {m for n in reduces for m in n.src[0].toposort() if m.op is Op.REDUCE}
    return [n for n in reduces if n not in inner]


def _load_terms(expr: Node) -> list[dict[Node, int]]:
    return [affine_terms(n.src[1])[0] for n in expr.toposort() if n.op is Op.LOAD]


def _matmul_parts(store: Node, ranges: list[Node], t: GPUTarget) -> tuple[Node, Node, Node, Node] | None:
    """(reduce, x, y, k) when the kernel is a matmul the tiles serve: its only reduce sums x * y over one loop
    k, x depends on the rows (not the columns), y on the columns (not the rows); None otherwise."""
    if len(ranges) < 2:
        return None
    reduces = [n for n in store.toposort() if n.op is Op.REDUCE]
    if len(reduces) != 1 or reduces[0].arg is not Op.ADD or len(_reduce_ranges(reduces[0])) != 1:
        return None
    reduce = reduces[0]
    body, k = reduce.src[0], _reduce_ranges(reduce)[0]
    if body.op is not Op.MUL or not body.dtype.is_float or len(reduce.src) != 2:
        return None
    rows, cols = ranges[-2], ranges[-1]
    if min(int(rows.src[0].arg), int(cols.src[0].arg), int(k.src[0].arg)) < t.matmul_min:
        return None
    x, y = body.src
    dx, dy = _ranges_in(x), _ranges_in(y)
    if cols in dx or rows in dy:
        x, y, dx, dy = y, x, dy, dx
    if cols in dx or rows in dy or rows not in dx or cols not in dy or k not in dx or k not in dy:
        return None
    return reduce, x, y, k


def _ranges_in(n: Node) -> set[Node]:
    return {m for m in n.toposort() if m.op is Op.RANGE}


def _shuffle_reduce(value: Node, rop: Op, width: int) -> Node:
    """Lane 0 of each group of ``width`` lanes ends with the group's combined value (a tree over shuffles)."""
    offset = width // 2
    while offset >= 1:
        value = Node(rop, value.dtype, (value, Node(Op.SHUFFLE, value.dtype, (value,), ("down", offset))))
        offset //= 2
    return value


def _store(local: Node, index: Node, value: Node, gate: Node | None) -> Node:
    srcs = (local, index, value) + ((gate,) if gate is not None else ())
    return Node(Op.STORE, value.dtype, srcs)


def _and(a: Node | None, b: Node | None) -> Node | None:
    if a is None or b is None:
        return a if b is None else b
    return a.logical_and(b)


def _gate_loads(expr: Node, cond: Node, along: Node | None = None) -> Node:
    """``expr`` with every load of a buffer parameter valid only where ``cond`` holds (reads nothing elsewhere);
    with ``along``, only the loads that depend on that range (those of a reduce computed earlier in the kernel,
    a row kernel's max in the body of its sum, read where they are valid anyway and must stay as they are)."""
    mapping = {}
    for n in expr.toposort():
        if n.op is Op.LOAD and n.src[0].op is Op.PARAM and (along is None or along in n.toposort()):
            valid = cond if len(n.src) < 3 else n.src[2].logical_and(cond)
            mapping[n] = Node(Op.LOAD, n.dtype, (n.src[0], n.src[1], valid))
    return substitute(expr, mapping) if mapping else expr


def _gate_stores(root: Node, cond: Node) -> Node:
    """Every global store under ``root`` (a STORE or a SINK of them) done only where ``cond`` holds."""
    if root.op is Op.SINK:
        return Node(Op.SINK, root.dtype, tuple(_gate_stores(s, cond) for s in root.src))
    gate = cond if len(root.src) < 4 else root.src[3].logical_and(cond)
    return Node(Op.STORE, root.dtype, root.src[:3] + (gate,))
