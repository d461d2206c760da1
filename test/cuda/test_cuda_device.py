"""The CUDA device where there is no GPU (it says why it cannot open), NVRTC where it is installed (it needs no
driver), and the device itself where a GPU works (``scripts/gpu_check.sh`` runs these on a lent GPU)."""

from __future__ import annotations

import numpy as np
import pytest

import boltgrad
from boltgrad import Tensor
from boltgrad.cli.main import main
from boltgrad.device.registry import canonicalize, probe
from boltgrad.engine import realize
from boltgrad.errors import CompileError, DeviceUnavailable
from boltgrad.render.cuda import CUDARenderer

CUDA_OK = probe("CUDA").ok
needs_gpu = pytest.mark.skipif(not CUDA_OK, reason="no working CUDA device here (see `boltgrad doctor`)")


def nvrtc_or_skip():
    from boltgrad.device.nvrtc import NVRTC

    try:
        return NVRTC()
    except DeviceUnavailable as e:
        pytest.skip(f"NVRTC is not installed (pip install 'boltgrad[cuda]'): {e}")


def test_cuda_device_names():
    assert canonicalize("cuda") == "CUDA" and canonicalize("cuda:0") == "CUDA" and canonicalize("Cuda:1") == "CUDA:1"


@pytest.mark.skipif(CUDA_OK, reason="a CUDA device works here")
def test_without_a_gpu_the_device_says_why_and_doctor_shows_it(capsys):
    status = probe("CUDA")
    assert not status.ok and status.fix
    assert any(why in status.detail for why in ("no NVIDIA driver", "sees no GPU", "NVRTC"))
    with pytest.raises(DeviceUnavailable, match="CUDA: "):
        Tensor([1.0, 2.0], device="CUDA").numpy()
    main(["doctor"])
    line = next(x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("-- CUDA"))
    assert status.detail in line


def test_nvrtc_compiles_a_rendered_kernel_to_a_cubin_and_ptx():
    from boltgrad.device.nvrtc import NVRTCCompiler

    nvrtc = nvrtc_or_skip()
    x = Tensor(np.ones((3, 300), np.float32), device="NULL:CUDA")
    x.softmax(1).realize()
    kernels = {ck.name: ck for (dev, _, _), ck in realize._compiled.items() if dev == "NULL:CUDA"}
    unit = CUDARenderer.preamble + "\n\n".join(ck.source for ck in kernels.values())
    cubin = nvrtc.compile(unit, 80, True, NVRTCCompiler.OPTIONS)
    assert cubin[:4] == b"\x7fELF"
    ptx = nvrtc.compile(unit, 90, False, NVRTCCompiler.OPTIONS)
    assert b".target sm_90" in ptx and b"shfl.sync.down" in ptx and b"bar.sync" in ptx
    library = NVRTCCompiler(90, nvrtc).compile(unit)  # through the disk cache, with each kernel's block size
    assert library.path.endswith(".cubin")
    assert library.blocks == {name: ck.linear.meta["gpu"][1] for name, ck in kernels.items()}


def test_an_nvrtc_error_shows_the_log_and_the_source():
    nvrtc = nvrtc_or_skip()
    source = 'extern "C" __global__ void __launch_bounds__(32) broken(float *b0) {\n  b0[0] = undefined_name;\n}\n'
    with pytest.raises(CompileError) as info:
        nvrtc.compile(source, 80, True, [])
    message = str(info.value)
    assert "NVRTC failed" in message and "undefined_name" in message and "identifier" in message
    assert "    2 |   b0[0] = undefined_name;" in message


# ---------------------------------------------------------------- on a GPU


@needs_gpu
def test_copies_are_counted_and_round_trip():
    x = np.arange(1000, dtype=np.float32)
    before = boltgrad.stats.copy_bytes
    t = Tensor(x).to("CUDA")
    back = (t * 2).to("CPU").numpy()
    np.testing.assert_array_equal(back, x * 2)
    assert boltgrad.stats.copy_bytes - before >= 2 * x.nbytes


@needs_gpu
def test_out_of_memory_names_the_device_the_size_and_what_is_free():
    from boltgrad.device.registry import get_device

    dev = get_device("CUDA")
    free, total = dev.memory_info()
    with pytest.raises(MemoryError, match=r"CUDA: out of device memory allocating \d+ bytes .* MiB are free"):
        dev.allocator.alloc(total * 2)


@needs_gpu
def test_a_large_matmul_softmax_and_layernorm_match_torch():
    import torch

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((300, 257), np.float32), rng.standard_normal((257, 190), np.float32)
    got = (Tensor(a, device="CUDA") @ Tensor(b, device="CUDA")).numpy()
    np.testing.assert_allclose(got, a @ b, rtol=1e-4, atol=1e-4)
    x = rng.standard_normal((64, 1000), np.float32)
    want = torch.softmax(torch.from_numpy(x), 1).numpy()
    np.testing.assert_allclose(Tensor(x, device="CUDA").softmax(1).numpy(), want, rtol=1e-5, atol=1e-6)
    want = torch.nn.functional.layer_norm(torch.from_numpy(x), (1000,)).numpy()
    got = boltgrad.nn.functional.layer_norm(Tensor(x, device="CUDA"), (1000,)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # row kernels (one block per row: the reductions, then the row) for a longer row and a gradient
    x, g = rng.standard_normal((8, 4096), np.float32), rng.standard_normal((8, 4096), np.float32)
    want = torch.log_softmax(torch.from_numpy(x), 1).numpy()
    np.testing.assert_allclose(Tensor(x, device="CUDA").log_softmax(1).numpy(), want, rtol=1e-5, atol=1e-5)
    grads = []
    for device in ("CPU", "CUDA"):
        t = Tensor(x, device=device, requires_grad=True)
        (t.softmax(1) * Tensor(g, device=device)).sum().backward()
        grads.append(t.grad.numpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-4, atol=1e-6)


@needs_gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_tensor_core_matmuls_match_numpy(dtype):
    """The MMA tiles (``codegen/gpu_mma.py``) on the hardware: inputs exact in the 16-bit type, so numpy's
    float64 product is the answer and float32 accumulation the tolerance; sizes the 128 x 128 tiles and the k
    step of 32 do not divide, a batch, a transposed operand, a prologue cast and an epilogue."""
    rng = np.random.default_rng(1)
    dt = getattr(boltgrad, dtype)

    def exact(*shape: int) -> np.ndarray:
        x = rng.standard_normal(shape).astype(np.float32)
        return x.astype(np.float16).astype(np.float32) if dtype == "float16" else (
            (x.view(np.uint32) & 0xFFFF0000).view(np.float32))  # fmt: skip

    def cuda(x: np.ndarray) -> Tensor:
        return Tensor(x, device="CUDA").cast(dt)

    before = set(realize._compiled)
    pairs = [(exact(m, k), exact(k, n)) for m, k, n in ((300, 257, 190), (128, 128, 128), (64, 64, 64), (65, 97, 100))]
    pairs.append((exact(2, 70, 65), exact(2, 65, 66)))  # a batch
    outs = [cuda(a).float() @ cuda(b).float() for a, b in pairs]
    x, w, bias = exact(200, 96), exact(72, 96), exact(72)
    linear = (Tensor(x, device="CUDA").cast(dt) @ Tensor(w, device="CUDA").cast(dt).T).float() * 0.5
    outs.append((linear + Tensor(bias, device="CUDA")).relu())
    Tensor.realize_all(outs)  # one NVRTC call for all the kernels
    for (a, b), out in zip(pairs, outs):
        np.testing.assert_allclose(out.numpy(), a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)
    exact_sum = (x.astype(np.float64) @ w.T.astype(np.float64)).astype(np.float32)
    want = np.maximum(Tensor(exact_sum, device="CPU").cast(dt).float().numpy() * 0.5 + bias, 0)
    ulp = 2**-10 if dtype == "float16" else 2**-7  # a sum may round to the neighbouring 16-bit value
    assert (np.abs(outs[-1].numpy() - want) <= ulp * np.abs(exact_sum) + 1e-5).all()
    sources = [ck.source for key, ck in realize._compiled.items() if key not in before and key[0] == "CUDA"]
    assert sum("mma.sync.aligned.m16n8k16" in src for src in sources) >= 5


@needs_gpu
def test_a_model_trained_on_cuda_runs_on_the_cpu_in_the_same_program():
    from boltgrad import nn

    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((32, 8), np.float32), rng.standard_normal((32, 2), np.float32)
    losses, outputs = {}, {}
    for device in ("CPU", "CUDA"):
        boltgrad.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2)).to(device)
        opt = boltgrad.optim.Adam(model.parameters(), lr=0.01)
        xs, ys = Tensor(x, device=device), Tensor(y, device=device)
        losses[device] = []
        for _ in range(5):
            opt.zero_grad()
            loss = (model(xs) - ys).square().mean()
            loss.backward()
            opt.step()
            losses[device].append(loss.item())
        outputs[device] = model(xs).numpy()
    np.testing.assert_allclose(losses["CUDA"], losses["CPU"], rtol=1e-4)
    before = boltgrad.stats.copy_bytes
    model.to("CPU")  # the CUDA-trained model, for inference on the CPU
    assert all(p.device == "CPU" for p in model.parameters())
    assert boltgrad.stats.copy_bytes - before >= sum(p.numel() * 4 for p in model.parameters())
    np.testing.assert_allclose(model(Tensor(x)).numpy(), outputs["CUDA"], rtol=1e-5, atol=1e-6)


def _attention_decode(device: str, steps: int) -> np.ndarray:
    """A jitted decode step (a cache written at a Variable position, attention over the rows up to it) called
    with a new input and position each time: a plain run, the recording, then replays."""
    max_len, dim = 16, 64
    rng = np.random.default_rng(0)
    cache = Tensor.zeros(max_len, dim, device=device).contiguous().realize()
    w = Tensor(rng.standard_normal((dim, dim), np.float32), device=device).realize()
    pos = boltgrad.Variable("cuda_graph_pos", 0, max_len - 1)

    @boltgrad.jit
    def step(x, p):
        rows = Tensor.arange(max_len, device=device)
        cache.assign(boltgrad.where(rows.reshape(max_len, 1) == p, (x @ w).reshape(1, dim), cache)).realize()
        scores = (cache @ x.reshape(dim, 1)).reshape(max_len) / 8
        scores = boltgrad.where(rows <= p, scores, -1e9)
        return (scores.softmax(0).reshape(max_len, 1) * cache).sum(0)

    xs, outs = [], []
    for i in range(steps):
        xs.append(Tensor(rng.standard_normal(dim).astype(np.float32), device=device))  # kept: new addresses
        outs.append(step(xs[-1], pos.bind(i)).numpy())
    return np.stack(outs)


def test_the_decode_step_of_the_cuda_graph_test_runs_on_the_cpu():
    """The GPU test below, on the CPU: its step is valid and its replays follow the Variable."""
    got = _attention_decode("CPU", 5)
    assert got.shape == (5, 64) and len({row.tobytes() for row in got}) == 5


@needs_gpu
def test_a_jitted_step_replays_as_a_cuda_graph_with_the_results_of_plain_launches(monkeypatch):
    """CUDA graphs on (the default) and off give the same bits; the Variable and the inputs change every replay."""
    steps = 8
    results, graph_launches = {}, {}
    for graphs in ("1", "0"):
        monkeypatch.setenv("BOLT_CUDA_GRAPHS", graphs)
        before = boltgrad.stats.graph_launches
        results[graphs] = _attention_decode("CUDA", steps)
        graph_launches[graphs] = boltgrad.stats.graph_launches - before
    assert graph_launches["0"] == 0 and graph_launches["1"] >= steps - 2, graph_launches  # every replay was a graph
    np.testing.assert_array_equal(results["1"], results["0"])
    np.testing.assert_allclose(results["1"], _attention_decode("CPU", steps), rtol=1e-4, atol=1e-5)
