"""Cache blocking of long reductions, and the options that steer lowering (the heuristic's or the search's).

A matmul-like kernel (``C[i, j] = sum_k A[i, k] * B[k, j]``, B strided along k) computes a register tile of
outputs per loop (see ``lower._output_upcasts``). With the whole of k in one loop, every tile streams a
k x 16 strip of B whose rows lie a full row of B apart: for N = 2048 that is 2048 lines 8 KiB apart, which
map to a handful of cache sets and as many pages; caches and the TLB thrash. Blocking splits the reduce and
the columns:

    for jo in cols / col_block:          # ranges[0]: split across threads
      for ko in k / k_block:
        for i in rows / tile_rows:
          for ji in col_block / tile_cols:
            acc = ko == 0 ? 0 : C[tile]    # the partial sums so far, read back from the output
            for ki in k_block: acc += A[i, k] * B[k, j]
            C[tile] = ko == last ? epilogue(acc) : acc

so a k_block x col_block block of B stays in L2 while every row of A passes over it, and the rows of A the
tile reads stay in L1. Accumulating through the output adds the products in the same order as one long loop,
so the result is bit for bit the unblocked one (and the PYTHON device's).

In the lowered graph a REDUCE that continues from a value is ``REDUCE(body, init, *ranges)`` (``init`` is the
one source that is not a RANGE); ``reduce_parts`` reads either form.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir.dtypes import int64
from ..ir.node import Node, const
from ..ir.ops import Op
from ..ir.rewrite import substitute
from ..ir.symbolic import simplify

L2_BLOCK_BYTES = 128 * 1024  # the B block kept in L2 (most x86 cores have 512 KiB to 2 MiB of L2 per core)


@dataclass(frozen=True)
class KernelOpts:
    """Lowering choices; None leaves one to the heuristic. The search (``codegen/search.py``) sets them.

    rows, cols: outputs per loop along the second-innermost and innermost output dims (the register tile);
    k_block: the reduce's block length (0: no blocking); col_block: output columns per block (0: none);
    contract: let the C compiler fuse any a * b + c (sums of products are fused anyway, explicitly; this adds
    the epilogue's and the body's: no longer bit-equal to the PYTHON device).
    """

    rows: int | None = None
    cols: int | None = None
    k_block: int | None = None
    col_block: int | None = None
    contract: bool = False

    def key(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.__dict__.items() if v is not None and v is not False)


def reduce_parts(n: Node) -> tuple[Node, Node | None, tuple[Node, ...]]:
    """A lowered REDUCE's (body, initial value or None, ranges)."""
    rest = n.src[1:]
    init = next((s for s in rest if s.op is not Op.RANGE), None)
    return n.src[0], init, tuple(s for s in rest if s.op is Op.RANGE)


def block_reduce(
    stores: list[Node], ranges: list[Node], lw, opts: KernelOpts, upcasts: dict[int, int]
) -> tuple[list[Node], list[Node], int]:
    """Block the reduce and the columns of a register-tiled kernel (see the module doc).

    Returns (stores, output ranges, trip count of the reduce loop). Leaves the kernel alone unless every store
    writes one float sum over one long loop (plus an elementwise epilogue) into a buffer of the sum's type.
    """
    unchanged = stores, ranges, lw.reduce_work
    if len(ranges) < 2:
        return unchanged
    plan = _reduce_of_each_store(stores)
    if plan is None:
        return unchanged
    loop = plan[0][1].src[1]
    extent = int(loop.src[0].arg)
    k_block = opts.k_block if opts.k_block is not None else _default_k_block(extent)
    if not k_block or extent % k_block or extent < 2 * k_block:
        return unchanged
    cols = ranges[-1]
    tile_cols = upcasts.get(len(ranges) - 1, 1)
    col_block = opts.col_block if opts.col_block is not None else _default_col_block(k_block, cols, tile_cols)
    ko = _new_range(lw, extent // k_block, "loop")
    ki = _new_range(lw, k_block, "reduce")
    last = extent // k_block - 1
    out = []
    for store, red in plan:
        param, index, value = store.src
        body = simplify(substitute(red.src[0], {loop: ko * k_block + ki}))
        init = Node(Op.LOAD, red.dtype, (param, index, const(0).lt(ko)))
        blocked = Node(Op.REDUCE, red.dtype, (body, init, ki), red.arg)
        new_value = substitute(value, {red: blocked})
        if value is not red:  # the epilogue (bias, activation) applies once, to the finished sum
            new_value = ko.lt(last).where(blocked, new_value)
        out.append(Node(Op.STORE, store.dtype, (param, index, new_value)))
    per_block = col_block // tile_cols if col_block else 0
    n_cols = int(cols.src[0].arg)
    if per_block and n_cols % per_block == 0 and n_cols // per_block >= 2:
        jo, ji = _new_range(lw, n_cols // per_block, "loop"), _new_range(lw, per_block, "loop")
        out = [simplify(substitute(s, {cols: jo * per_block + ji})) for s in out]
        ranges = ranges[:-2] + [jo, ko, ranges[-2], ji]
    else:  # the rows stay outermost (split across threads), the reduce blocks inside them
        ranges = ranges[:-1] + [ko, cols]
    return out, ranges, k_block


def _reduce_of_each_store(stores: list[Node]) -> list[tuple[Node, Node]] | None:
    """[(store, its one REDUCE)] when every store's value is one float32 sum over one shared loop."""
    plan, loop = [], None
    for store in stores:
        if store.op is not Op.STORE:
            return None
        reds = [n for n in store.src[2].toposort() if n.op is Op.REDUCE]
        if len(reds) != 1:
            return None
        red = reds[0]
        body, init, red_ranges = reduce_parts(red)
        if red.arg is not Op.ADD or init is not None or len(red_ranges) != 1 or not red.dtype.is_float:
            return None
        if store.src[2].dtype != red.dtype or red.dtype.itemsize != 4:
            return None
        if loop is None:
            loop = red_ranges[0]
        elif red_ranges[0] is not loop:
            return None
        plan.append((store, red))
    return plan or None


def _default_k_block(extent: int) -> int:
    """Blocks of 128 to 256 reduce steps: the tile's rows of A (6 x 256 floats) stay in L1."""
    for k_block in (256, 192, 128):
        if extent % k_block == 0 and extent >= 2 * k_block:
            return k_block
    return 0


def _default_col_block(k_block: int, cols: Node, tile_cols: int) -> int:
    """Columns per block: a k_block x col_block block of B fits L2_BLOCK_BYTES."""
    n = int(cols.src[0].arg) * tile_cols
    col_block = max(tile_cols, L2_BLOCK_BYTES // (4 * k_block) // tile_cols * tile_cols)
    while col_block > tile_cols and n < 2 * col_block:
        col_block //= 2
    return col_block if n % col_block == 0 else 0


def _new_range(lw, extent: int, kind: str) -> Node:
    r = Node(Op.RANGE, int64, (const(extent),), (lw.next_range, kind))
    lw.next_range += 1
    return r
