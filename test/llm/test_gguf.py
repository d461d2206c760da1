"""GGUF: the reader, dequantization against the gguf package's own, tiny models written as F32 (and quantized)
GGUF files against transformers, and clear errors for broken files."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
from llm_models import FAMILIES, greedy_reference, make_tiny, write_gguf

import boltgrad.llm as llm
from boltgrad import Tensor
from boltgrad.llm import quant
from boltgrad.nn.state import map_file

gguf = pytest.importorskip("gguf", reason="GGUF tests write and dequantize files with the gguf package")
torch = pytest.importorskip("torch")

PROMPT = [1, 17, 923, 5, 301, 77, 2, 640]
QUANT_TYPES = {"Q8_0": quant.Q8_0, "Q4_0": quant.Q4_0, "Q4_1": quant.Q4_1, "Q4_K": quant.Q4_K, "Q5_K": quant.Q5_K,
               "Q6_K": quant.Q6_K}  # fmt: skip


def random_blocks(type_id: int, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """Random bytes in the block layout of ``type_id``, with finite float16 scales."""
    t = quant.GGML_TYPES[type_id]
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, size=(rows, cols // t.block, t.nbytes), dtype=np.uint8)
    for dtype, start, _ in quant._FIELDS[type_id].values():
        if dtype.name == "float16":
            scales = rng.uniform(-1, 1, size=raw.shape[:2]).astype(np.float16)
            raw[:, :, start : start + 2] = scales.view(np.uint8).reshape(*raw.shape[:2], 2)
    return raw.reshape(rows, -1)


@pytest.mark.parametrize("name", list(QUANT_TYPES))
def test_dequantize_matches_gguf_package(tmp_path, name):
    type_id = QUANT_TYPES[name]
    rows, cols = 3, 512
    raw = random_blocks(type_id, rows, cols)
    path = tmp_path / f"{name}.bin"
    raw.tofile(path)
    w = quant.load_tensor(map_file(path), 0, type_id, (rows, cols), "CPU").realize()
    expected = gguf.quants.dequantize(raw, getattr(gguf.GGMLQuantizationType, name))
    np.testing.assert_array_equal(w.dequantize().numpy(), expected)
    # the matmul that factors the block scales out gives the same product
    x = np.random.default_rng(1).standard_normal((2, cols)).astype(np.float32)
    np.testing.assert_allclose(w.linear(Tensor(x)).numpy(), x @ expected.T, rtol=1e-4, atol=1e-3)


@pytest.fixture(scope="module", params=FAMILIES)
def tiny_gguf(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"gguf_{request.param}")
    ref = make_tiny(request.param, os.fspath(folder))
    path = os.fspath(folder / "model.f32.gguf")
    write_gguf(ref, path)
    model, tokenizer = llm.load(path, ctx=64, progress=False)
    return ref, model, tokenizer


def test_f32_gguf_matches_transformers(tiny_gguf):
    ref, model, tokenizer = tiny_gguf
    with torch.no_grad():
        expected = ref(torch.tensor([PROMPT])).logits.numpy()
    np.testing.assert_allclose(model(Tensor([PROMPT])).numpy(), expected, atol=1e-4, rtol=0)
    got = [t.id for t in llm.generate(model, tokenizer, PROMPT, max_tokens=20, stop_at_eos=False)]
    assert got == greedy_reference(ref, PROMPT, 20)
    assert isinstance(tokenizer, llm.MissingTokenizer)  # the file has no tokenizer metadata


def test_q8_0_gguf_is_close_to_transformers(tmp_path):
    ref = make_tiny("llama", os.fspath(tmp_path), seed=7)
    path = os.fspath(tmp_path / "model.q8_0.gguf")
    write_gguf(ref, path, quant=gguf.GGMLQuantizationType.Q8_0)
    model, _ = llm.load(path, ctx=32, progress=False)
    assert isinstance(model.model.layers[0].self_attn.q_proj.qweight, llm.QuantizedWeight)
    with torch.no_grad():
        expected = ref(torch.tensor([PROMPT])).logits.numpy()
    got = model(Tensor([PROMPT])).numpy()
    assert np.abs(got - expected).max() < 0.05 * np.abs(expected).max()  # 8-bit weights: close, not equal


# ---------------------------------------------------------------- broken files


def write_small_gguf(path, tensors=None, arch="llama") -> None:
    w = gguf.GGUFWriter(os.fspath(path), arch)
    w.add_uint32("test.value", 7)
    w.add_array("test.list", ["a", "bc"])
    for name, data in (tensors or {"a.weight": np.arange(64, dtype=np.float32).reshape(2, 32)}).items():
        w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_reader_reads_metadata_and_tensors(tmp_path):
    path = tmp_path / "small.gguf"
    write_small_gguf(path)
    g = llm.GGUFFile.open(path)
    assert g.metadata["test.value"] == 7 and g.metadata["test.list"] == ["a", "bc"]
    assert g.metadata["general.architecture"] == "llama"
    info = g.tensors["a.weight"]
    assert info.shape == (2, 32) and info.type_name == "F32" and info.offset % 32 == 0
    np.testing.assert_array_equal(g.load("a.weight").numpy(), np.arange(64, dtype=np.float32).reshape(2, 32))


def test_truncated_gguf_is_a_clear_error(tmp_path):
    path = tmp_path / "small.gguf"
    write_small_gguf(path)
    data = path.read_bytes()
    (tmp_path / "cut_data.gguf").write_bytes(data[:-16])
    with pytest.raises(ValueError, match="'a.weight'.*beyond the end of the file.*truncated"):
        llm.GGUFFile.open(tmp_path / "cut_data.gguf")
    (tmp_path / "cut_header.gguf").write_bytes(data[:40])
    with pytest.raises(ValueError, match="cut_header.gguf: .*truncated"):
        llm.GGUFFile.open(tmp_path / "cut_header.gguf")


def test_corrupt_gguf_is_a_clear_error(tmp_path):
    (tmp_path / "bad_magic.gguf").write_bytes(b"GGML" + bytes(60))
    with pytest.raises(ValueError, match="not a GGUF file"):
        llm.GGUFFile.open(tmp_path / "bad_magic.gguf")
    (tmp_path / "version.gguf").write_bytes(b"GGUF" + struct.pack("<I", 99) + bytes(16))
    with pytest.raises(ValueError, match="version 99 is not supported"):
        llm.GGUFFile.open(tmp_path / "version.gguf")
    huge = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1 << 40) + b"key"
    (tmp_path / "huge.gguf").write_bytes(huge)
    with pytest.raises(ValueError, match="claims 1099511627776 bytes"):
        llm.GGUFFile.open(tmp_path / "huge.gguf")
    with pytest.raises(ValueError, match="not a GGUF file"):
        llm.load(tmp_path / "bad_magic.gguf", progress=False)


def test_unsupported_quant_type_is_named(tmp_path):
    path = tmp_path / "q5_0.gguf"
    data = gguf.quants.quantize(np.ones((2, 32), np.float32), gguf.GGMLQuantizationType.Q5_0)
    w = gguf.GGUFWriter(os.fspath(path), "llama")
    w.add_tensor("a.weight", data, raw_dtype=gguf.GGMLQuantizationType.Q5_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    g = llm.GGUFFile.open(path)
    with pytest.raises(ValueError, match="'a.weight' has type Q5_0, which boltgrad cannot read"):
        g.load("a.weight")


def test_unsupported_architecture_is_named(tmp_path):
    path = tmp_path / "mamba.gguf"
    write_small_gguf(path, arch="mamba")
    with pytest.raises(ValueError, match="architecture 'mamba' is not supported"):
        llm.load(path, progress=False)
