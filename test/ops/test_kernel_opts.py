"""The CPU kernel optimisations (register tiles, vector packs, loop order) against the PYTHON device and numpy.

The PYTHON device interprets the same linear program one scalar at a time, rounding to float32 after every
operation; the C kernels must compute the same operations lane by lane, so for sums and products of float32 the
two agree bit for bit. Shapes include sizes that no tile divides (1, 3, 17, 33, 127), transposed and strided
operands, fused epilogues and reductions over outer axes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import check

import boltgrad
import boltgrad.nn.functional as F
from boltgrad import Tensor
from boltgrad.codegen import search
from boltgrad.codegen.blocking import KernelOpts
from boltgrad.codegen.linearize import linearize
from boltgrad.codegen.lower import _tile_rows, _vector_lanes, lower_kernel
from boltgrad.codegen.search import beam_search, neighbours
from boltgrad.codegen.vectorize import plan_vectors
from boltgrad.device.base import Launch
from boltgrad.device.registry import get_device
from boltgrad.ir.ops import Op
from boltgrad.render.cstyle import CRenderer
from boltgrad.schedule.schedule import KernelItem, create_schedule

SIZES = (1, 3, 4, 8, 17, 33)


def _arrays(seed: int, *shapes: tuple[int, ...]) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


def _same_on_python(fn, *arrays: np.ndarray) -> np.ndarray:
    """fn on CPU and on the PYTHON device: equal bit for bit. Returns the CPU result."""
    cpu = fn(*[Tensor(a) for a in arrays]).numpy()
    spec = fn(*[Tensor(a, device="PYTHON") for a in arrays]).numpy()
    np.testing.assert_array_equal(cpu, spec)
    return cpu


def _close(got: np.ndarray, want: np.ndarray, k: int = 1) -> None:
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale * max(1, k) ** 0.5)


def _kernel_sources(out: Tensor) -> list[str]:
    sched = create_schedule([out.node])
    items = [it for it in sched.items if hasattr(it, "ast")]
    renderer = CRenderer()
    return [renderer.render_kernel(linearize(lower_kernel(it.ast)), f"k{i}") for i, it in enumerate(items)]


# ---------------------------------------------------------------- matmul


@pytest.mark.parametrize("m", SIZES)
@pytest.mark.parametrize("n", (1, 7, 16, 33))
@pytest.mark.parametrize("k", (1, 5, 17, 64))
def test_matmul_odd_shapes_match_the_spec(m, n, k):
    a, b = _arrays(m * 1000 + n * 10 + k, (m, k), (k, n))
    got = _same_on_python(lambda x, y: x @ y, a, b)
    _close(got, a.astype(np.float64) @ b, k)


@pytest.mark.parametrize(
    "m,k,n", [(127, 255, 129), (256, 256, 256), (96, 784, 40), (5, 1024, 300), (300, 64, 8), (128, 10, 256)]
)
def test_matmul_larger_shapes_match_numpy(m, k, n):
    a, b = _arrays(m + k + n, (m, k), (k, n))
    got = (Tensor(a) @ Tensor(b)).numpy()
    _close(got, a.astype(np.float64) @ b, k)


@pytest.mark.parametrize("form", ["a.T@b", "a@b.T", "a.T@b.T"])
@pytest.mark.parametrize("m,k,n", [(17, 33, 9), (64, 40, 48), (3, 128, 33)])
def test_transposed_operands(form, m, k, n):
    ta = form.startswith("a.T")
    tb = "b.T" in form
    a, b = _arrays(m * n * k, (k, m) if ta else (m, k), (n, k) if tb else (k, n))

    def fn(x, y):
        return (x.T if ta else x) @ (y.T if tb else y)

    got = _same_on_python(fn, a, b) if m * n * k < 30_000 else fn(Tensor(a), Tensor(b)).numpy()
    want = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b)
    _close(got, want, k)


def test_strided_and_sliced_operands():
    a, b = _arrays(7, (70, 41), (33, 90))

    def fn(x, y):
        return x[::2, 3:36] @ y[:, 1::3]  # rows stepped, cols offset; B's columns strided by 3

    got = _same_on_python(fn, a, b)
    _close(got, a[::2, 3:36].astype(np.float64) @ b[:, 1::3], 33)


@pytest.mark.parametrize("batch,m,k,n", [(3, 17, 9, 33), (4, 8, 16, 24), (2, 1, 31, 5)])
def test_batched_matmul(batch, m, k, n):
    a, b = _arrays(batch + m, (batch, m, k), (batch, k, n))
    got = _same_on_python(lambda x, y: x @ y, a, b)
    _close(got, np.einsum("bmk,bkn->bmn", a.astype(np.float64), b), k)


def test_batched_matmul_with_permuted_operand():
    a, b = _arrays(11, (5, 3, 17), (3, 17, 20))
    got = _same_on_python(lambda x, y: x.permute(1, 0, 2) @ y, a, b)
    _close(got, np.einsum("mbk,bkn->bmn", a.astype(np.float64), b), 17)


@pytest.mark.parametrize("m,k,n", [(33, 17, 20), (4, 64, 16), (128, 100, 10)])
def test_linear_with_bias_relu_epilogue(m, k, n):
    x, w, bias = _arrays(m + n, (m, k), (n, k), (n,))
    got = _same_on_python(lambda x, w, b: (x @ w.T + b).relu(), x, w, bias)
    _close(got, np.maximum(x.astype(np.float64) @ w.T + bias, 0), k)


def test_matmul_epilogue_with_where_and_max():
    a, b, c = _arrays(3, (9, 20), (20, 24), (9, 24))

    def fn(x, y, z):
        p = x @ y
        return (p * 2).where(p > z, z).maximum(p - 1)  # torch-style: self where cond, else other

    got = _same_on_python(fn, a, b, c)
    p = a.astype(np.float64) @ b
    _close(got, np.maximum(np.where(p > c, p * 2, c), p - 1), 20)


def test_int_and_half_matmuls_stay_correct():
    rng = np.random.default_rng(5)
    a = rng.integers(-5, 5, (17, 9)).astype(np.int32)
    b = rng.integers(-5, 5, (9, 33)).astype(np.int32)
    np.testing.assert_array_equal(_same_on_python(lambda x, y: x @ y, a, b), a @ b)
    check(lambda x, y: x @ y, (17, 24), (24, 16), dtype="float16", atol=2e-2, rtol=2e-2)


# ---------------------------------------------------------------- reductions over outer axes


@pytest.mark.parametrize("shape", [(128, 33), (5, 17), (64, 256), (3, 8), (127, 1)])
@pytest.mark.parametrize("op", ["sum", "amax"])
def test_reduce_outer_axis(shape, op):
    (x,) = _arrays(shape[0] * shape[1], shape)
    got = _same_on_python(lambda t: getattr(t, op)(0), x)
    want = x.astype(np.float64).sum(0) if op == "sum" else x.max(0)
    _close(got, want, shape[0])


@pytest.mark.parametrize("b,o,i", [(128, 10, 256), (33, 17, 40), (7, 3, 9), (64, 24, 1)])
def test_weight_gradient_pattern(b, o, i):
    """sum over the batch of g[b, o] * relu'(h)[b, o] * x[b, i]: the reduce is the outer, strided axis."""
    g, h, x = _arrays(b + o + i, (b, o), (b, o), (b, i))
    got = _same_on_python(lambda g, h, x: (g * (h > 0)).T @ x, g, h, x)
    _close(got, (g * (h > 0)).astype(np.float64).T @ x, b)


def test_reduce_outer_axis_of_a_3d_tensor():
    (x,) = _arrays(2, (6, 13, 40))
    got = _same_on_python(lambda t: (t * 2).sum((0, 1)), x)
    _close(got, (x.astype(np.float64) * 2).sum((0, 1)), 78)


# ---------------------------------------------------------------- layers, forward and backward


@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 0), (1, 0)])
def test_conv2d_forward_backward(stride, padding):
    check(
        lambda x, w: (
            F.conv2d(x, w, stride=stride, padding=padding)
            if isinstance(x, Tensor)
            else torch.nn.functional.conv2d(x, w, stride=stride, padding=padding)
        ),
        (2, 3, 11, 13),
        (5, 3, 3, 3),
        grad=True,
        atol=1e-4,
        rtol=1e-4,
    )


@pytest.mark.parametrize("width", [5, 8, 17, 32])
def test_padded_conv_forward_matches_the_spec(width):
    """Output lanes along the width read the input with a masked vector load at the padded edges."""
    x, w = _arrays(width, (2, 3, 6, width), (4, 3, 3, 3))
    got = _same_on_python(lambda x, w: F.conv2d(x, w, padding=1), x, w)
    want = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()
    _close(got, want, 27)


@pytest.mark.parametrize("channels, out_channels", [(3, 32), (3, 5), (1, 16)])
def test_short_reduce_conv_tiles_over_positions(channels, out_channels):
    """3 channels x 3 x 3 = 27 is too short for reduce lanes: the forward tiles output channels by runs of 16
    positions (batch x height x width), and the windows' gradient 27 rows (the last tile recomputes a row) by
    runs of positions too. Both exact against the PYTHON device."""
    x, w, g = _arrays(channels, (2, channels, 8, 10), (out_channels, channels, 3, 3), (2, out_channels, 8, 10))

    def fn(x, w, g):
        w = w.detach().requires_grad_()
        out = F.conv2d(x, w, padding=1)
        (out * g).sum().backward()
        return out.realize(), w.grad

    cpu = fn(*[Tensor(a) for a in (x, w, g)])
    spec = fn(*[Tensor(a, device="PYTHON") for a in (x, w, g)])
    for a, b in zip(cpu, spec):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    tw = torch.from_numpy(w).requires_grad_()
    out = torch.nn.functional.conv2d(torch.from_numpy(x), tw, padding=1)
    (out * torch.from_numpy(g)).sum().backward()
    _close(cpu[0].numpy(), out.detach().numpy(), 27)
    _close(cpu[1].numpy(), tw.grad.numpy(), 180)
    forward = _kernel_sources(F.conv2d(Tensor(x), Tensor(w), padding=1))
    assert any("bolt_splat_f32x8(0.0f)" in src and "bolt_store_f32x8" in src for src in forward)  # a tile


def test_conv_forward_reads_the_windows_without_division():
    """The windows' buffer, reshaped to (groups, 1, channels*kernel, positions), is read at an affine index: a
    reshape of a reshape is lowered as one (a round trip through the flat index left a division and a modulo
    per load, which made the convolution ten times slower)."""
    x, w = Tensor(np.ones((2, 16, 14, 14), np.float32)), Tensor(np.ones((32, 16, 3, 3), np.float32))
    items = create_schedule([F.conv2d(x, w, padding=1).node]).items
    (product,) = [it for it in items if any(n.op.name == "REDUCE" for n in it.ast.toposort())]
    lowered = lower_kernel(product.ast)
    assert not [n for n in lowered.store.toposort() if n.op.name in ("IDIV", "MOD")]


def test_wide_tile_with_a_short_operand_loops_over_columns_outside():
    """16 rows x 64 by 64 x 2048: the rows' operand (4 KB) stays in L1, so the loop over column tiles is the outer
    one (split across threads) and each column strip is read once; exact against the PYTHON device."""
    a, b = _arrays(3, (16, 64), (64, 2048))
    items = create_schedule([(Tensor(a) @ Tensor(b)).node]).items
    lowered = lower_kernel(items[-1].ast)
    tile = _tile_rows(16, 64)  # 8 rows on a CPU with 32 vector registers, else 4
    cols = 2 * _vector_lanes()  # two vectors per row: 32 columns with AVX-512, else 16
    assert [int(r.src[0].arg) for r in lowered.ranges] == [2048 // cols, 16 // tile]
    _close(_same_on_python(lambda x, y: x @ y, a, b), a @ b, 64)


@pytest.mark.parametrize("size, upcasts", [(16, [8]), (12, [4]), (14, [2, 2])])
def test_pooling_gradient_computes_a_window_of_outputs_per_loop(size, upcasts):
    """Max pooling's gradient reads the pooled gradient at x // 2: 8 or 4 neighbouring outputs per loop where
    that divides the width, else a 2 x 2 window, so the outputs of one window share its pooled value; values
    equal bit for bit on the PYTHON device and match torch."""
    from boltgrad.codegen.lower import _divided_upcast, _lower_once

    x, g = _arrays(size, (2, 3, size, size), (2, 3, size // 2, size // 2))

    def grad(xt: Tensor, gt: Tensor) -> Tensor:
        xt.requires_grad_(True)
        (F.max_pool2d(xt.relu(), 2) * gt).sum().backward()
        return xt.grad

    got = _same_on_python(grad, x, g)
    xr = torch.from_numpy(x).requires_grad_(True)
    (torch.nn.functional.max_pool2d(xr.relu(), 2) * torch.from_numpy(g)).sum().backward()
    np.testing.assert_allclose(got, xr.grad.numpy(), rtol=1e-6, atol=1e-6)
    xt = Tensor(x, requires_grad=True)
    (F.max_pool2d(xt.relu(), 2) * Tensor(g)).sum().backward()
    chosen = []
    for item in create_schedule([xt.grad.node]).items:
        if hasattr(item, "ast") and item.ast.shape == x.shape:
            factors = [f for _, f in _divided_upcast(*_lower_once(item.ast, reduce_upcast=False)[:2])]
            store = lower_kernel(item.ast).store  # one store per output of the loop
            chosen.append((factors, len(store.src) if store.op is Op.SINK else 1))
    assert (upcasts, int(np.prod(upcasts))) in chosen


def test_scalar_max_and_bool_to_float_are_selects():
    """GCC compiled ``(a > b || a != a) ? a : b`` and ``(float)(a != b)`` in scalar loops into branches, which random
    data mispredicts (2x2 max pooling ran 8x slower). The C source keeps them as selects; values stay exact."""
    x = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
    x[0, 0, 0, 0] = np.nan
    pooled = F.max_pool2d(Tensor(x), 2)
    equal = (Tensor(x) == Tensor(x).relu()).float()
    sources = _kernel_sources(pooled) + _kernel_sources(equal)
    assert not any(" || " in src for src in sources)
    assert any("? 1.0f : 0.0f)" in src for src in sources)
    want = torch.nn.functional.max_pool2d(torch.from_numpy(x), 2).numpy()
    np.testing.assert_array_equal(_same_on_python(lambda t: F.max_pool2d(t, 2), x), want)
    np.testing.assert_array_equal(_same_on_python(lambda t: (t == t.relu()).float(), x), (x == np.maximum(x, 0)))


def test_padded_conv_kernel_uses_masked_loads():
    from boltgrad.nn.conv import sliding_windows

    # a convolution fused straight over the padded window view (conv2d itself copies the windows first)
    x, w = Tensor(np.ones((2, 3, 16, 16), np.float32)), Tensor(np.ones((4, 3, 3, 3), np.float32))
    windows = sliding_windows(x.pad((1, 1, 1, 1)), (3, 3), (1, 1), (1, 1))  # (2, 3, 16, 16, 3, 3)
    out = (windows.unsqueeze(1) * w.reshape(1, 4, 3, 1, 1, 3, 3)).sum((2, 5, 6))
    sources = _kernel_sources(out)
    assert any("bolt_mload_f32x8" in src for src in sources)


def test_mlp_training_gradients():
    check(
        lambda x, w1, w2: (x @ w1.T).relu() @ w2.T,
        (17, 33),
        (20, 33),
        (3, 20),
        grad=True,
        atol=1e-4,
        rtol=1e-4,
    )


# ---------------------------------------------------------------- the generated code


def test_matmul_kernel_uses_vector_packs():
    out = Tensor(np.ones((64, 64), np.float32)) @ Tensor(np.ones((64, 64), np.float32))
    (source,) = _kernel_sources(out)
    assert "bolt_load_f32x8" in source and "bolt_store_f32x8" in source


def test_weight_gradient_kernel_uses_vector_accumulators():
    g, x = Tensor(np.ones((128, 10), np.float32)), Tensor(np.ones((128, 256), np.float32))
    (source,) = _kernel_sources(g.T @ x)
    assert "bolt_splat_f32x8(0.0f)" in source  # vector accumulators, not 32 scalar ones


def test_no_packs_for_non_consecutive_lanes():
    x = Tensor(np.ones((16, 16), np.float32))
    sched = create_schedule([(x.T * 2).contiguous().node])
    (item,) = [it for it in sched.items if hasattr(it, "ast")]
    assert not plan_vectors(linearize(lower_kernel(item.ast)))


def test_float64_reduce_stays_scalar_and_correct():
    x = np.random.default_rng(1).standard_normal((40, 24))
    got = _same_on_python(lambda t: t.sum(0), x)
    np.testing.assert_allclose(got, x.sum(0), rtol=1e-12)
    assert boltgrad.float64 == Tensor(x).dtype


# ---------------------------------------------------------------- options the heuristic or the search can pick


def _run_with_opts(fn, arrays: list[np.ndarray], opts: list[KernelOpts], device: str) -> list[np.ndarray]:
    """fn (one kernel) lowered with each of ``opts`` and run on ``device``; the C variants compile as one unit."""
    out = fn(*[Tensor(a, device=device) for a in arrays])
    sched = create_schedule([out.node])
    (item,) = [it for it in sched.items if isinstance(it, KernelItem)]
    lins = {}
    for i, o in enumerate(opts):
        lins[f"k{i}"] = linearize(lower_kernel(item.ast, o))
        lins[f"k{i}"].meta["contract"] = o.contract
    dev = get_device(device)
    if device == "PYTHON":
        library = dev.compiler.compile(lins)
    else:
        renderer = CRenderer()
        library = dev.compiler.compile(renderer.render_unit(list(lins.items())))
    handles = tuple(b.ensure_allocated().handle for b in item.buffers)
    results = []
    for name, lin in lins.items():
        dev.run([Launch(dev.program(library, name), handles, (), lin.outer_size, lin.cost)])
        flat = np.frombuffer(item.buffers[0].copyout(), dtype=np.float32)
        results.append(flat[: int(np.prod(out.shape))].reshape(out.shape).copy())
    return results


def _opts_grid() -> list[KernelOpts]:
    """Register tiles that divide and that don't, short and long reduce blocks, column blocks, none."""
    out = []
    for rows in (4, 6):
        for cols in (8, 16):
            for k_block, col_block in ((0, 0), (8, 16), (16, 32)):
                out.append(KernelOpts(rows=rows, cols=cols, k_block=k_block, col_block=col_block))
    return out


@pytest.mark.parametrize("m,k,n", [(1, 48, 16), (3, 32, 32), (17, 48, 64), (13, 64, 48), (29, 96, 32)])
@pytest.mark.parametrize("epilogue", [False, True])
def test_every_tiling_matches_the_spec(m, k, n, epilogue):
    """Every tile and block the search can pick computes the PYTHON device's values bit for bit: sizes that 6 does
    not divide recompute the last row; a blocked reduce continues from the partial sums it stored."""
    a, b, bias = _arrays(m * k + n, (m, k), (k, n), (n,))

    def fn(x, y, z):
        return (x @ y + z).relu() if epilogue else x @ y

    spec, blocked = _run_with_opts(fn, [a, b, bias], [KernelOpts(k_block=0), KernelOpts(rows=6, k_block=16)], "PYTHON")
    want = a.astype(np.float64) @ b
    _close(spec, np.maximum(want + bias, 0) if epilogue else want, k)
    np.testing.assert_array_equal(blocked, spec)
    grid = _opts_grid()
    for opts, got in zip(grid, _run_with_opts(fn, [a, b, bias], grid, "CPU")):
        np.testing.assert_array_equal(got, spec, err_msg=opts.key())


@pytest.mark.parametrize("m,k,n", [(127, 512, 129), (129, 384, 127), (3, 1024, 17), (130, 768, 48)])
def test_default_blocking_of_long_reduces_matches_numpy(m, k, n):
    a, b = _arrays(m + k + n, (m, k), (k, n))
    _close((Tensor(a) @ Tensor(b)).numpy(), a.astype(np.float64) @ b, k)


def test_blocked_matmul_is_exact_and_reads_back_partial_sums():
    a, b, bias = _arrays(9, (13, 512), (512, 32), (32,))
    fn = lambda x, y, z: (x @ y + z).relu()  # noqa: E731
    (source,) = _kernel_sources(fn(Tensor(a), Tensor(b), Tensor(bias)))
    assert "(0LL < r" in source  # the first block starts from zero, the others from the stored sums
    cpu = fn(Tensor(a), Tensor(b), Tensor(bias)).numpy()
    np.testing.assert_array_equal(cpu, _run_with_opts(fn, [a, b, bias], [KernelOpts(k_block=0)], "CPU")[0])


def test_blocked_transposed_and_strided_operands():
    a, b = _arrays(4, (300, 40), (300, 70))
    fn = lambda x, y: x[:, 4:36].T @ y[:, 1::2]  # noqa: E731  (32 x 300) @ (300 x 35): A read down its columns
    opts = [KernelOpts(), KernelOpts(rows=6, k_block=20, col_block=16), KernelOpts(k_block=60, col_block=0)]
    for got in _run_with_opts(fn, [a, b], opts, "CPU"):
        _close(got, a[:, 4:36].T.astype(np.float64) @ b[:, 1::2], 300)


def test_contracted_candidates_match_numpy():
    a, b = _arrays(1, (33, 256), (256, 64))
    opts = [KernelOpts(contract=True), KernelOpts(rows=6, cols=32, k_block=64, contract=True)]
    for got in _run_with_opts(lambda x, y: x @ y, [a, b], opts, "CPU"):
        _close(got, a.astype(np.float64) @ b, 256)


def test_search_neighbours_change_one_action_each():
    base = KernelOpts()
    for n in neighbours(base):
        assert sum(getattr(n, f) != getattr(base, f) for f in base.__dict__) == 1


def _matmul_ast(m: int, k: int, n: int):
    out = Tensor(np.zeros((m, k), np.float32)) @ Tensor(np.zeros((k, n), np.float32))
    (item,) = [it for it in create_schedule([out.node]).items if isinstance(it, KernelItem)]
    return item


def test_beam_search_follows_the_timer_to_the_fastest_options():
    """A fake timer that rewards rows=2 and k_block=64 together: two rounds of single actions find both."""
    item = _matmul_ast(12, 128, 16)

    def timer(candidates, deadline=float("inf")):
        return [1.0 - 0.3 * (o.rows == 2) - 0.3 * (o.k_block == 64) + 0.5 * o.contract for _, _, o in candidates]

    best = beam_search(item.ast, 1, timer, time_limit=60)
    assert (best.rows, best.k_block, best.contract) == (2, 64, False)


def test_search_runs_once_per_kernel_and_machine(monkeypatch, tmp_path):
    monkeypatch.setenv("BOLT_SEARCH", "1")
    monkeypatch.setenv("BOLT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(search, "TIME_LIMIT_S", 2.0)
    a, b = _arrays(3, (40, 256), (256, 48))
    _close((Tensor(a) @ Tensor(b)).numpy(), a.astype(np.float64) @ b, 256)
    (record,) = (tmp_path / "search").glob("*.json")
    calls = []
    monkeypatch.setattr(search, "beam_search", lambda *args, **kw: calls.append(1))
    item = _matmul_ast(40, 256, 48)
    opts = search.cached_search(item.ast, 1, get_device("CPU"), CRenderer(), [bf.nbytes for bf in item.buffers])
    assert not calls and isinstance(opts, KernelOpts) and record.exists()


# ---------------------------------------------------------------- packed integers (quantized weights)


@pytest.mark.parametrize("rows, blocks", [(1, 1), (7, 3), (33, 18)])
@pytest.mark.parametrize("kind", ["Q4_1", "Q8_0"])
def test_dequantizing_dot_reads_bytes_as_vectors(rows, blocks, kind):
    """x @ W.T for block-quantized W: one reduce over (blocks, bytes of a block) whose lanes split the bytes;
    the bytes are loaded as vectors, widened, masked and shifted lane-wise. Bit for bit the PYTHON device's."""
    from boltgrad.llm import quant

    rng = np.random.default_rng(rows * 100 + blocks)
    d = (rng.standard_normal((rows, blocks)) * 0.1).astype(np.float16)
    if kind == "Q4_1":
        m = (rng.standard_normal((rows, blocks)) * 0.1).astype(np.float16)
        qs = rng.integers(0, 256, (rows, blocks, 16), dtype=np.uint8)
        arrays, type_id, names = [d, m, qs], quant.Q4_1, ("d", "m", "qs")
    else:
        qs = rng.integers(-128, 128, (rows, blocks, 32), dtype=np.int8)
        arrays, type_id, names = [d, qs], quant.Q8_0, ("d", "qs")
    x = rng.standard_normal((2, blocks * 32)).astype(np.float32)

    def weight(device):
        parts = {n: Tensor(a, device=device) for n, a in zip(names, arrays)}
        return quant.QuantizedWeight(type_id, (rows, blocks * 32), parts)

    cpu = weight("CPU").linear(Tensor(x)).numpy()
    np.testing.assert_array_equal(cpu, weight("PYTHON").linear(Tensor(x, device="PYTHON")).numpy())
    _close(cpu, x @ weight("CPU").dequantize().numpy().T, k=blocks * 32)
    sources = "\n".join(_kernel_sources(weight("CPU").linear(Tensor(x))))
    if qs.size // rows >= 32:  # a reduce long enough for lanes (one Q4 block is 16 bytes: scalar)
        widen = "bolt_widen_u8x8" if kind == "Q4_1" else "bolt_widen_i8x8"
        assert widen in sources and "__builtin_convertvector" in sources


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16])
def test_integer_lanes_wrap_as_the_scalar_program(dtype):
    """Lane-wise shifts, sums and products of small integers are computed in int32 lanes and wrapped back to
    their type where they could leave it, as the scalar program's stores wrap."""
    rng = np.random.default_rng(3)
    info = np.iinfo(dtype)
    a = rng.integers(info.min, info.max, (5, 6, 16), endpoint=True).astype(dtype)
    b = rng.integers(info.min, info.max, (5, 6, 16), endpoint=True).astype(dtype)

    def fn(p, q):
        mixed = ((p << 3) + q * 7) ^ (p >> 2) | (q & 13)
        return mixed.cast(boltgrad.float32).sum((-2, -1))

    got = _same_on_python(fn, a, b)
    wide_a, wide_b = a.astype(np.int64), b.astype(np.int64)
    mixed = (((wide_a << 3) + wide_b * 7).astype(dtype).astype(np.int64) ^ (wide_a >> 2)) | (wide_b & 13)
    np.testing.assert_allclose(got, mixed.astype(dtype).astype(np.float64).sum((-2, -1)), rtol=1e-5)
    (source,) = _kernel_sources(fn(Tensor(a), Tensor(b)))
    assert "bolt_widen_" in source


def test_vector_exp2_and_log2_equal_the_scalar_functions_bit_for_bit():
    """Packs call lane-wise versions of the C preamble's exp2/log2 (so a softmax's exponentials vectorise); every
    lane must give the scalar function's bits, edge values included."""
    import ctypes

    from boltgrad.device.cpu import CCompiler

    source = CRenderer().unit(
        [
            """
void bolt_test_math(const float *x, float *vec, float *scalar, int64_t n) {
  for (int64_t i = 0; i + 8 <= n; i += 8) {
    bolt_store_f32x8(vec + 2 * i, bolt_exp2f_x8(bolt_load_f32x8(x + i)));
    bolt_store_f32x4(vec + 2 * i + 8, bolt_log2f_x4(bolt_load_f32x4(x + i)));
    bolt_store_f32x4(vec + 2 * i + 12, bolt_log2f_x4(bolt_load_f32x4(x + i + 4)));
    for (int k = 0; k < 8; k++) {
      scalar[2 * i + k] = bolt_exp2f(x[i + k]);
      scalar[2 * i + 8 + k] = bolt_log2f(x[i + k]);
    }
  }
}
"""
        ]
    )
    lib = ctypes.CDLL(CCompiler().compile(source))
    rng = np.random.default_rng(0)
    edges = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -1e-40, 1e-45, 127.9, 128.0, 129.0, -149.0, -150.0, -151.0,
             -0.5, 0.5, 1.5, -1.5, 1.41421356, 3.4e38, -3.4e38, 0.999999]  # fmt: skip
    x = np.concatenate([np.array(edges, np.float32), (rng.standard_normal(4000) * 60).astype(np.float32),
                        rng.integers(0, 2**32, 4000, dtype=np.uint64).astype(np.uint32).view(np.float32)])  # fmt: skip
    x = np.ascontiguousarray(x[: len(x) // 8 * 8])
    vec, scalar = np.zeros(2 * len(x), np.float32), np.ones(2 * len(x), np.float32)
    ptr = lambda a: a.ctypes.data_as(ctypes.c_void_p)
    lib.bolt_test_math(ptr(x), ptr(vec), ptr(scalar), ctypes.c_int64(len(x)))
    np.testing.assert_array_equal(vec.view(np.uint32), scalar.view(np.uint32))  # NaNs are the same NaN too


def test_softmax_exponentials_are_vector_lanes():
    x = Tensor(np.ones((9, 512), np.float32))
    sources = "\n".join(_kernel_sources(x.softmax(-1)))
    assert "bolt_exp2f_x8" in sources


@pytest.mark.parametrize("position", [0, 5, 37, 63])
def test_causal_mask_compares_index_ramps_in_vector_lanes(position):
    """``key <= position`` (a Variable) in a softmax over keys: one integer comparison per key, made on int32
    lanes of consecutive key indices."""
    from boltgrad import Variable

    pos = Variable("pos_test", 0, 63).bind(position)
    scores = np.random.default_rng(position).standard_normal((3, 64)).astype(np.float32)

    def fn(s):
        mask = Tensor.arange(64, device=s.device).reshape(1, -1) <= pos
        return s.where(mask, -np.inf).softmax(-1)

    got = fn(Tensor(scores)).numpy()  # exp2 is within 2 ulp of the PYTHON device's, not bit for bit
    spec = fn(Tensor(scores, device="PYTHON")).numpy()
    want = torch.tensor(scores).masked_fill(torch.arange(64) > position, -np.inf).softmax(-1).numpy()
    np.testing.assert_array_equal(got == 0, want == 0)  # masked keys get exactly 0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got, spec, rtol=1e-6, atol=1e-8)
    sources = "\n".join(_kernel_sources(fn(Tensor(scores))))
    assert "(bolt_i32x8){0, 1, 2, 3, 4, 5, 6, 7}" in sources


def test_widening_loads_agree_with_and_without_x86_extensions(tmp_path):
    """The widening loads (packed bytes, 16-bit floats) have an AVX2/F16C form and a portable one (other CPUs):
    both give the scalar conversions' values."""
    import ctypes
    import platform
    import subprocess

    from boltgrad.device.cpu import find_c_compiler

    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the x86 forms only exist on x86-64")
    source = CRenderer().unit(
        [
            """
void bolt_test_widen(const void *p, float *out) {
  bolt_f32x8 a = __builtin_convertvector(bolt_widen_u8x8((const uint8_t *)p), bolt_f32x8);
  bolt_f32x8 b = __builtin_convertvector(bolt_widen_i8x8((const int8_t *)p), bolt_f32x8);
  bolt_f32x8 c = __builtin_convertvector(bolt_widen_i16x8((const int16_t *)p), bolt_f32x8);
  bolt_f32x8 d = bolt_widen_f16x8((const half_t *)p), e = bolt_widen_bf16x8((const uint16_t *)p);
  bolt_f32x4 f = bolt_widen_f16x4((const half_t *)p), g = bolt_widen_bf16x4((const uint16_t *)p);
  bolt_store_f32x8(out, a); bolt_store_f32x8(out + 8, b); bolt_store_f32x8(out + 16, c);
  bolt_store_f32x8(out + 24, d); bolt_store_f32x8(out + 32, e); bolt_store_f32x4(out + 40, f);
  bolt_store_f32x4(out + 44, g);
}
"""
        ]
    )
    (tmp_path / "w.c").write_text(source)
    data = np.random.default_rng(0).integers(0, 256, 16, dtype=np.uint8)
    data[1] = 0x80  # a negative int8 and a half with the sign bit set
    results = []
    for march in ("-march=native", "-march=x86-64"):
        lib = tmp_path / f"w{len(results)}.so"
        subprocess.run([*find_c_compiler(), "-O2", march, "-fPIC", "-shared", "-fwrapv", str(tmp_path / "w.c"),
                        "-o", str(lib), "-lm"], check=True)  # fmt: skip
        out = np.zeros(48, np.float32)
        ctypes.CDLL(str(lib)).bolt_test_widen(data.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p))
        results.append(out)
    halves = data.view(np.float16).astype(np.float32)
    bf16 = (data.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    want = np.concatenate([data[:8], data[:8].view(np.int8), data.view(np.int16), halves, bf16, halves[:4],
                           bf16[:4]]).astype(np.float32)  # fmt: skip
    for out in results:
        np.testing.assert_array_equal(out.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_weights_load_as_vector_lanes(dtype):
    """x @ W.T with W stored in 16 bits (a half-precision checkpoint): W's rows load 8 at a time, converted
    exactly to float32 lanes; bit for bit the PYTHON device's result."""
    rng = np.random.default_rng(1)
    w = Tensor(rng.standard_normal((37, 96)).astype(np.float32)).cast(getattr(boltgrad, dtype)).realize()
    x = rng.standard_normal((1, 96)).astype(np.float32)
    fn = lambda x, w: x @ w.T.cast(boltgrad.float32)
    got = fn(Tensor(x), w).numpy()
    np.testing.assert_array_equal(got, fn(Tensor(x, device="PYTHON"), w.to("PYTHON")).numpy())
    _close(got, x @ w.float().numpy().T, k=96)
    (source,) = _kernel_sources(fn(Tensor(x), w))
    assert f"bolt_widen_{'f16' if dtype == 'float16' else 'bf16'}x8" in source
    # loads guarded by a padded edge are gathered from scalar lanes, still as float32 values
    padded = lambda x, w: x @ F.pad(w, (0, 4)).T.cast(boltgrad.float32)
    x4 = rng.standard_normal((3, 100)).astype(np.float32)
    got = padded(Tensor(x4), w).numpy()
    np.testing.assert_array_equal(got, padded(Tensor(x4, device="PYTHON"), w.to("PYTHON")).numpy())
    _close(got, x4[:, :96] @ w.float().numpy().T, k=96)
