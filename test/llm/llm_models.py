"""Test models made at run time: tiny random Llama/Qwen2/Qwen3 checkpoints saved by transformers, and GGUF
files written from their weights with the `gguf` package as llama.cpp's converter lays them out."""

from __future__ import annotations

import os

import numpy as np
import pytest

FAMILIES = ("llama", "qwen2", "qwen3")

# Hugging Face name (after model.layers.N.) -> GGUF name (after blk.N.)
LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias", "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight", "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight",
}  # fmt: skip


def tiny_config(family: str, **overrides):
    transformers = pytest.importorskip("transformers", reason="the tiny-model oracles need transformers")
    cls = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config, "qwen3": transformers.Qwen3Config}
    kwargs = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=1000, max_position_embeddings=256, rms_norm_eps=1e-5,
                  initializer_range=0.2, bos_token_id=1, eos_token_id=2, pad_token_id=0)  # fmt: skip
    if family == "qwen3":
        kwargs["head_dim"] = 32  # explicit, and not hidden / heads
    kwargs.update(overrides)
    return cls[family](**kwargs)


def make_tiny(family: str, folder: str, seed: int = 0, **overrides):
    """A random transformers model saved to ``folder``; returns the torch model (eval mode)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family, **overrides)).eval()
    with torch.no_grad():  # rms norm weights start at 1: make them random so a wrong norm shows
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.copy_(1 + 0.3 * torch.randn_like(p))
    model.save_pretrained(folder)
    return model


def permute_for_gguf(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's converter order of q/k rows (its rope pairs neighbouring dims)."""
    rows = w.shape[0]
    return w.reshape(heads, 2, rows // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(model, path: str, quant=None) -> None:
    """The torch model as a GGUF file: F32 tensors (or 2-d weights quantized as ``quant``, a
    gguf.GGMLQuantizationType), metadata as llama.cpp's converter writes it."""
    import gguf

    cfg = model.config
    arch = cfg.model_type
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    w = gguf.GGUFWriter(path, arch)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_bos_token_id(cfg.bos_token_id)
    w.add_eos_token_id(cfg.eos_token_id)
    for name, tensor in model.state_dict().items():
        data = tensor.detach().float().numpy()
        if name == "model.embed_tokens.weight":
            gname = "token_embd.weight"
        elif name == "model.norm.weight":
            gname = "output_norm.weight"
        elif name == "lm_head.weight":
            if cfg.tie_word_embeddings:
                continue
            gname = "output.weight"
        else:
            _, _, layer, rest = name.split(".", 3)
            gname = f"blk.{layer}.{LAYER_NAMES[rest]}"
            if arch == "llama" and rest.startswith(("self_attn.q_proj", "self_attn.k_proj")):
                heads = cfg.num_attention_heads if "q_proj" in rest else cfg.num_key_value_heads
                data = permute_for_gguf(data, heads)
        if quant is not None and data.ndim == 2:
            w.add_tensor(gname, gguf.quants.quantize(data, quant), raw_dtype=quant)
        else:
            w.add_tensor(gname, np.ascontiguousarray(data))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def greedy_reference(model, ids: list[int], n: int) -> list[int]:
    """n greedy tokens after ``ids`` from the torch model."""
    import torch

    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                             pad_token_id=0, eos_token_id=None)  # fmt: skip
    return out[0, len(ids) :].tolist()


def tmp_folder(tmp_path_factory, name: str) -> str:
    return os.fspath(tmp_path_factory.mktemp(name))
