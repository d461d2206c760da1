"""Tiny random Llama, Qwen2 and Qwen3 models saved by transformers: boltgrad's logits and greedy tokens against
transformers' own, from safetensors (single file, sharded, tied embeddings)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from llm_models import FAMILIES, greedy_reference, make_tiny, tmp_folder

import boltgrad
import boltgrad.llm as llm
from boltgrad import Tensor

torch = pytest.importorskip("torch")
pytest.importorskip("transformers", reason="the tiny-model oracles need transformers")

PROMPT = [1, 17, 923, 5, 301, 77, 2, 640]


@pytest.fixture(scope="module", params=FAMILIES)
def tiny(request, tmp_path_factory):
    folder = tmp_folder(tmp_path_factory, f"tiny_{request.param}")
    ref = make_tiny(request.param, folder)
    model, tokenizer = llm.load(folder, ctx=64, progress=False)
    return request.param, ref, model, tokenizer, folder


def torch_logits(ref, ids):
    with torch.no_grad():
        return ref(torch.tensor(ids)).logits.numpy()


def test_logits_match_transformers(tiny):
    family, ref, model, _, _ = tiny
    out = model(Tensor([PROMPT]), start_pos=0).numpy()
    assert out.shape == (1, len(PROMPT), 1000)
    np.testing.assert_allclose(out, torch_logits(ref, [PROMPT]), atol=1e-4, rtol=0)
    # one more token through the KV cache, at position len(PROMPT)
    step = model(Tensor([[42]]), start_pos=len(PROMPT)).numpy()
    np.testing.assert_allclose(step[0, 0], torch_logits(ref, [PROMPT + [42]])[0, -1], atol=1e-4, rtol=0)


def test_batch_of_two(tiny):
    _, ref, model, _, _ = tiny
    ids = [PROMPT[:5], PROMPT[3:]]
    np.testing.assert_allclose(model(Tensor(ids)).numpy(), torch_logits(ref, ids), atol=1e-4, rtol=0)


@pytest.mark.parametrize("use_jit", [True, False], ids=["jit", "plain"])
def test_greedy_tokens_match_transformers(tiny, use_jit):
    _, ref, model, tokenizer, _ = tiny
    got = [t.id for t in llm.generate(model, tokenizer, PROMPT, max_tokens=20, stop_at_eos=False, use_jit=use_jit)]
    assert got == greedy_reference(ref, PROMPT, 20)


def test_folder_without_tokenizer_loads_but_cannot_tokenize(tiny):
    _, _, _, tokenizer, folder = tiny
    assert not os.path.exists(os.path.join(folder, "tokenizer.json"))
    assert isinstance(tokenizer, llm.MissingTokenizer)
    with pytest.raises(ValueError, match="no tokenizer.json"):
        tokenizer.encode("hello")
    with pytest.raises(ValueError, match="no tokenizer.json"):
        list(llm.generate(tiny[2], tokenizer, "hello", max_tokens=2))


def test_sharded_checkpoint_with_index(tmp_path):
    ref = make_tiny("llama", os.fspath(tmp_path), seed=1)
    ref.save_pretrained(os.fspath(tmp_path), max_shard_size="60KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) > 1
    for stale in tmp_path.glob("model.safetensors"):
        stale.unlink()  # the single-file save of make_tiny
    model, _ = llm.load(tmp_path, ctx=32, progress=False)
    np.testing.assert_allclose(model(Tensor([PROMPT])).numpy(), torch_logits(ref, [PROMPT]), atol=1e-4, rtol=0)


def test_missing_shard_is_named(tmp_path):
    ref = make_tiny("llama", os.fspath(tmp_path), seed=1)
    ref.save_pretrained(os.fspath(tmp_path), max_shard_size="60KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    victim = sorted(set(index["weight_map"].values()))[-1]
    (tmp_path / victim).unlink()
    with pytest.raises(FileNotFoundError, match=victim):
        llm.load(tmp_path, progress=False)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_tied_embeddings(tmp_path, family):
    ref = make_tiny(family, os.fspath(tmp_path), seed=2, tie_word_embeddings=True)
    model, _ = llm.load(tmp_path, ctx=32, progress=False)
    assert model.lm_head.weight is model.model.embed_tokens.table
    np.testing.assert_allclose(model(Tensor([PROMPT])).numpy(), torch_logits(ref, [PROMPT]), atol=1e-4, rtol=0)


def test_llama3_rope_scaling_and_bf16_weights(tmp_path):
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 16, "rope_theta": 500000.0}  # fmt: skip
    ref = make_tiny("llama", os.fspath(tmp_path), seed=3, rope_parameters=scaling)
    ref.to(torch.bfloat16).save_pretrained(os.fspath(tmp_path))
    from transformers import AutoModelForCausalLM

    # the reference: the bf16 weights in float32 (the rotary frequencies computed afresh, not rounded to bf16)
    ref = AutoModelForCausalLM.from_pretrained(os.fspath(tmp_path), dtype=torch.float32).eval()
    model, _ = llm.load(tmp_path, ctx=64, progress=False)
    assert model.config.rope_scaling.rope_type == "llama3"
    assert model.model.layers[0].self_attn.q_proj.weight.dtype == boltgrad.bfloat16  # stays 16-bit in memory
    ids = list(range(3, 40))  # past original_max_position_embeddings, where the scaling matters
    np.testing.assert_allclose(model(Tensor([ids])).numpy(), torch_logits(ref, [ids]), atol=1e-4, rtol=0)


def test_truncated_safetensors_is_a_clear_error(tmp_path):
    make_tiny("qwen2", os.fspath(tmp_path), seed=4)
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(ValueError, match="model.safetensors.*(truncated|out of range)"):
        llm.load(tmp_path, progress=False)
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ValueError, match="not valid JSON"):
        llm.load(tmp_path, progress=False)


def test_unsupported_architecture_is_named(tmp_path):
    make_tiny("llama", os.fspath(tmp_path), seed=5)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["model_type"] = "gpt_neox"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="'gpt_neox' is not supported"):
        llm.load(tmp_path, progress=False)
