"""Tokenizers: a folder's ``tokenizer.json`` through the ``tokenizers`` library; a GGUF file's byte-level BPE
vocabulary and merges in our own compact tables (``bpe.py``: about 1 MB where ``tokenizers`` takes 19 MB), which
hand the rare text their patterns cannot split exactly to ``tokenizers``. Chat templates (Jinja) are rendered
with ``jinja2`` when it is installed.

A model folder without a tokenizer still loads: its tokenizer is a ``MissingTokenizer`` that raises a clear error
the first time it is asked to tokenize, so a caller that passes token ids never needs one.
"""

from __future__ import annotations

import json
import os
from typing import Any

from .bpe import ByteLevelBPE

# Pre-tokenizer split patterns of the byte-level BPE vocabularies GGUF files name in ``tokenizer.ggml.pre``.
# They are the published splitting rules of these model families (data, as in their tokenizer.json files).
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
    r"\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_SPLITS = {"llama-bpe": _LLAMA3_SPLIT, "llama3": _LLAMA3_SPLIT, "qwen2": _QWEN2_SPLIT, "qwen35": _QWEN2_SPLIT}
_CONTROL, _USER_DEFINED = 3, 4  # tokenizer.ggml.token_type values of special tokens


def _require_tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError:
        raise ImportError(
            "boltgrad.llm: tokenizing needs the 'tokenizers' package: pip install tokenizers "
            "(or pip install 'boltgrad[llm]')"
        ) from None
    return tokenizers


class Tokenizer:
    """Text <-> token ids, plus what generation needs: BOS/EOS ids and the chat template."""

    def __init__(self, backend: Any, bos_token_id: int | None = None, eos_token_ids: tuple[int, ...] = (),
                 add_bos: bool = False, chat_template: str | None = None):  # fmt: skip
        self.backend = backend
        self.bos_token_id, self.eos_token_ids, self.add_bos = bos_token_id, tuple(eos_token_ids), add_bos
        self.chat_template = chat_template

    # ------------------------------------------------------------ constructors

    @classmethod
    def from_folder(cls, folder: str, eos_token_ids: tuple[int, ...] = ()) -> Tokenizer | MissingTokenizer:
        """From ``tokenizer.json`` (and ``tokenizer_config.json`` for BOS, EOS and the chat template)."""
        path = os.path.join(folder, "tokenizer.json")
        if not os.path.isfile(path):
            return MissingTokenizer(f"model folder {folder} has no tokenizer.json")
        backend = _require_tokenizers().Tokenizer.from_file(path)
        config = _read_json(os.path.join(folder, "tokenizer_config.json"))

        def token_id(entry: Any) -> int | None:
            text = entry.get("content") if isinstance(entry, dict) else entry
            return backend.token_to_id(text) if isinstance(text, str) else None

        bos = token_id(config.get("bos_token"))
        eos = token_id(config.get("eos_token"))
        eos_ids = tuple(dict.fromkeys(((eos,) if eos is not None else ()) + tuple(eos_token_ids)))
        # tokenizer.json's post-processor adds BOS itself where the model wants it (add_special_tokens=True)
        template = _template_text(config.get("chat_template"))
        template_file = os.path.join(folder, "chat_template.jinja")  # where transformers 5 saves it
        if template is None and os.path.isfile(template_file):
            with open(template_file, encoding="utf-8") as f:
                template = f.read()
        return cls(backend, bos, eos_ids, add_bos=False, chat_template=template)

    @classmethod
    def from_gguf(cls, meta: dict[str, Any]) -> Tokenizer | MissingTokenizer:
        """Built from ``tokenizer.ggml.*`` metadata: byte-level BPE ("gpt2": SmolLM2, Llama 3, Qwen)."""
        kind = meta.get("tokenizer.ggml.model")
        if kind is None:
            return MissingTokenizer("the GGUF file has no tokenizer metadata (tokenizer.ggml.model)")
        if kind != "gpt2":
            return MissingTokenizer(f"GGUF tokenizer model {kind!r} is not supported yet (supported: gpt2, the "
                                    "byte-level BPE of SmolLM2, Llama 3 and Qwen)")  # fmt: skip
        tokens = meta.get("tokenizer.ggml.tokens")
        merges = meta.get("tokenizer.ggml.merges")
        if not isinstance(tokens, list) or not isinstance(merges, list):
            raise ValueError("GGUF: tokenizer metadata lacks tokenizer.ggml.tokens or tokenizer.ggml.merges")
        pre = str(meta.get("tokenizer.ggml.pre", ""))
        types = meta.get("tokenizer.ggml.token_type") or []
        special = [i for i, t in enumerate(types) if t in (_CONTROL, _USER_DEFINED)]

        def fallback(toks: list[str], mrgs: list[str]) -> Any:
            return _hf_byte_level(toks, mrgs, pre, [toks[i] for i in special])

        backend = ByteLevelBPE(tokens, merges, pre, special, fallback)
        bos = meta.get("tokenizer.ggml.bos_token_id")
        eos = meta.get("tokenizer.ggml.eos_token_id")
        eos_ids = tuple(dict.fromkeys(i for i in (eos, meta.get("tokenizer.ggml.eot_token_id")) if i is not None))
        return cls(backend, bos, eos_ids, add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", False)),
                   chat_template=meta.get("tokenizer.chat_template"))  # fmt: skip

    # ------------------------------------------------------------ use

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text``; with ``add_special_tokens`` BOS goes first where the model wants it."""
        ids = self.backend.encode(text, add_special_tokens=add_special_tokens).ids
        if add_special_tokens and self.add_bos and self.bos_token_id is not None and ids[:1] != [self.bos_token_id]:
            ids = [self.bos_token_id] + ids
        return ids

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The prompt text for a conversation, from the model's Jinja chat template (needs ``jinja2``)."""
        if not self.chat_template:
            raise ValueError("tokenizer: the model has no chat template")
        try:
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ImportError:
            raise ImportError("chat templates need the 'jinja2' package: pip install jinja2") from None

        def raise_exception(message: str) -> None:
            raise ValueError(f"chat template: {message}")

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        env.filters["tojson"] = lambda value, indent=None: json.dumps(value, indent=indent, ensure_ascii=False)
        bos = self.decode([self.bos_token_id]) if self.bos_token_id is not None else ""
        eos = self.decode([self.eos_token_ids[0]]) if self.eos_token_ids else ""
        return env.from_string(self.chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=eos
        )


def _hf_byte_level(tokens: list[str], merges: list[str], pre: str, special: list[str]) -> Any:
    """The same byte-level BPE in the ``tokenizers`` library (``ByteLevelBPE``'s fallback)."""
    tk = _require_tokenizers()
    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    backend = tk.Tokenizer(tk.models.BPE(vocab, pairs, fuse_unk=False, ignore_merges=False))
    split = _SPLITS.get(pre)
    byte_level = tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=split is None)
    steps = [byte_level]
    if split is not None:
        steps.insert(0, tk.pre_tokenizers.Split(tk.Regex(split), behavior="isolated"))
    elif pre == "smollm":
        steps.insert(0, tk.pre_tokenizers.Digits(individual_digits=True))
    backend.pre_tokenizer = tk.pre_tokenizers.Sequence(steps)
    backend.decoder = tk.decoders.ByteLevel()
    backend.add_special_tokens([tk.AddedToken(t, special=True, normalized=False) for t in special])
    return backend


class MissingTokenizer:
    """Stands in for a model's tokenizer when it has none: every use raises an error saying why."""

    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    chat_template: str | None = None

    def __init__(self, reason: str):
        self.reason = reason

    def _fail(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError(f"tokenizer: {self.reason}; pass token ids instead of text, or add a tokenizer.json")

    encode = decode = apply_chat_template = _fail

    def __bool__(self) -> bool:
        return False


def _read_json(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from None
    return data if isinstance(data, dict) else {}


def _template_text(template: Any) -> str | None:
    """tokenizer_config's chat_template: a string, or a list of named templates (the "default" one is used)."""
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        return named.get("default") or next(iter(named.values()), None)
    return template if isinstance(template, str) else None
