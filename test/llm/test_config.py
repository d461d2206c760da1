"""Model configs from Hugging Face config.json dicts (old and transformers-5 layouts) and GGUF metadata."""

from __future__ import annotations

import math

import pytest

from boltgrad.llm import ModelConfig

BASE = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 1000}  # fmt: skip


def test_older_and_transformers5_layouts_agree():
    scaling = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    old = ModelConfig.from_hf({**BASE, "model_type": "llama", "rope_theta": 5e5,
                               "rope_scaling": {"rope_type": "llama3", **scaling}})  # fmt: skip
    new = ModelConfig.from_hf({**BASE, "model_type": "llama",
                               "rope_parameters": {"rope_theta": 5e5, "rope_type": "llama3", **scaling}})  # fmt: skip
    assert old == new
    assert new.rope_theta == 5e5 and new.rope_scaling.factor == 8.0
    assert old.inv_freq() == new.inv_freq()
    # the older key "type" names the rope type too
    linear = ModelConfig.from_hf({**BASE, "model_type": "llama", "rope_scaling": {"type": "linear", "factor": 2.0}})
    plain = ModelConfig.from_hf({**BASE, "model_type": "llama"})
    assert linear.inv_freq() == [f / 2 for f in plain.inv_freq()]


def test_family_switches():
    qwen2 = ModelConfig.from_hf({**BASE, "model_type": "qwen2", "tie_word_embeddings": True})
    assert qwen2.attention_bias and not qwen2.output_bias and not qwen2.qk_norm and qwen2.tie_word_embeddings
    qwen3 = ModelConfig.from_hf({**BASE, "model_type": "qwen3", "head_dim": 32, "rms_norm_eps": 1e-5})
    assert qwen3.qk_norm and not qwen3.attention_bias and qwen3.head_dim == 32 and qwen3.rms_norm_eps == 1e-5
    llama = ModelConfig.from_hf({**BASE, "model_type": "llama", "attention_bias": True, "eos_token_id": [2, 9]})
    assert llama.attention_bias and llama.output_bias and llama.eos_token_ids == (2, 9)
    assert llama.head_dim == 16 and llama.num_kv_heads == 2


def test_llama3_frequencies():
    cfg = ModelConfig.from_hf({**BASE, "model_type": "llama", "rope_parameters": {
        "rope_theta": 10000.0, "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 64}})  # fmt: skip
    plain = [1 / 10000 ** (2 * i / 16) for i in range(8)]
    got = cfg.inv_freq()
    assert got[0] == plain[0]  # short wavelengths stay
    assert math.isclose(got[-1], plain[-1] / 8)  # long ones slow down by the factor


def test_bad_configs_are_named():
    with pytest.raises(ValueError, match="'gpt2' is not supported"):
        ModelConfig.from_hf({**BASE, "model_type": "gpt2"})
    with pytest.raises(ValueError, match="lacks 'vocab_size'"):
        ModelConfig.from_hf({k: v for k, v in BASE.items() if k != "vocab_size"} | {"model_type": "llama"})
    with pytest.raises(ValueError, match="rope type 'yarn' is not supported"):
        ModelConfig.from_hf({**BASE, "model_type": "qwen2", "rope_scaling": {"rope_type": "yarn", "factor": 4.0}})
    with pytest.raises(ValueError, match="cannot be shared"):
        ModelConfig.from_hf({**BASE, "model_type": "llama", "num_key_value_heads": 3})


def test_from_gguf_metadata():
    meta = {"general.architecture": "qwen3", "qwen3.embedding_length": 64, "qwen3.attention.head_count": 4,
            "qwen3.attention.head_count_kv": 2, "qwen3.attention.key_length": 32, "qwen3.block_count": 2,
            "qwen3.feed_forward_length": 128, "qwen3.rope.freq_base": 1e6, "qwen3.context_length": 512,
            "qwen3.attention.layer_norm_rms_epsilon": 1e-6, "tokenizer.ggml.eos_token_id": 7}  # fmt: skip
    cfg = ModelConfig.from_gguf(meta, {"token_embd.weight": (1000, 64)})
    assert (cfg.family, cfg.head_dim, cfg.vocab_size, cfg.rope_theta) == ("qwen3", 32, 1000, 1e6)
    assert cfg.tie_word_embeddings and cfg.qk_norm and cfg.eos_token_ids == (7,)
    with pytest.raises(ValueError, match="architecture 'mamba' is not supported"):
        ModelConfig.from_gguf({"general.architecture": "mamba"}, {})
    with pytest.raises(ValueError, match="lacks qwen3.block_count"):
        partial = {k: v for k, v in meta.items() if k != "qwen3.block_count"}
        ModelConfig.from_gguf(partial, {"token_embd.weight": (9, 64)})
