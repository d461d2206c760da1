"""Loading a model: a Hugging Face folder (``config.json`` and safetensors) or a GGUF file, both read through the
DISK device. Every weight the model uses is copied to the compute device once, here; weights it does not use
are never read.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from ..nn.state import safe_load
from ..tensor import Tensor
from .config import ModelConfig
from .gguf import GGUFFile
from .model import Transformer, Weight
from .quant import _FIELDS, _PLAIN, GGML_TYPES, QuantizedWeight


def load_hf_folder(folder: str, device: str = "CPU", ctx: int | None = None, progress: bool = True) -> Transformer:
    """The model in a Hugging Face folder: ``config.json`` plus ``model.safetensors``, or shards listed in
    ``model.safetensors.index.json`` (any ``*.safetensors`` files otherwise)."""
    config_path = os.path.join(folder, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"model folder {folder}: no config.json (is it a Hugging Face model folder?)")
    try:
        with open(config_path, encoding="utf-8") as f:
            cfg = ModelConfig.from_hf(json.load(f))
    except json.JSONDecodeError as e:
        raise ValueError(f"model folder {folder}: config.json is not valid JSON ({e})") from None
    tensors: dict[str, Tensor] = {}
    for path in _safetensors_files(folder):
        tensors.update(safe_load(path, device=device))
    model = Transformer(cfg, tensors.get, ctx=ctx, device=device)
    realize_weights(model, progress)
    return model


def _safetensors_files(folder: str) -> list[str]:
    index_path = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(index_path):
        try:
            with open(index_path, encoding="utf-8") as f:
                weight_map = json.load(f)["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(
                f"model folder {folder}: model.safetensors.index.json has no valid weight_map ({e})"
            ) from None
        names = sorted(set(weight_map.values()))
        missing = [n for n in names if not os.path.isfile(os.path.join(folder, n))]
        if missing:
            raise FileNotFoundError(f"model folder {folder}: shards listed in model.safetensors.index.json are "
                                    f"missing: {', '.join(missing)}")  # fmt: skip
        return [os.path.join(folder, n) for n in names]
    files = sorted(n for n in os.listdir(folder) if n.endswith(".safetensors"))
    if not files:
        raise FileNotFoundError(f"model folder {folder}: no *.safetensors files")
    return [os.path.join(folder, n) for n in files]


# ---------------------------------------------------------------- GGUF

# Hugging Face name -> GGUF name, per layer and for the rest
_GGUF_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.o_proj.bias": "attn_output.bias",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_GGUF_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
               "lm_head.weight": "output.weight"}  # fmt: skip
# llama.cpp's converter reorders the rows of each head of q and k in Llama models (its rope pairs neighbours,
# Hugging Face's pairs dim i with i + head_dim/2); Qwen files keep the Hugging Face order
_PERMUTED_FAMILIES = ("llama", "mistral")


def gguf_name(hf_name: str) -> str | None:
    if hf_name in _GGUF_NAMES:
        return _GGUF_NAMES[hf_name]
    parts = hf_name.split(".", 3)  # model, layers, N, rest
    if len(parts) == 4 and parts[:2] == ["model", "layers"] and parts[3] in _GGUF_LAYER_NAMES:
        return f"blk.{parts[2]}.{_GGUF_LAYER_NAMES[parts[3]]}"
    return None


def unpermute_rows(t: Tensor, heads: int) -> Tensor:
    """Undo llama.cpp's q/k row order: within each head, rows (pair, 2) -> (2, pair); t is (rows, ...)."""
    rows, rest = t.shape[0], t.shape[1:]
    return t.reshape((heads, rows // heads // 2, 2) + rest).transpose(1, 2).reshape(t.shape)


def load_gguf(path: str, device: str = "CPU", ctx: int | None = None, progress: bool = True,
              opened: GGUFFile | None = None) -> tuple[Transformer, GGUFFile]:  # fmt: skip
    """The model in a GGUF file, and the parsed file (its metadata holds the tokenizer). ``opened``: the file's
    header, already parsed (``GGUFFile.open``)."""
    g = opened if opened is not None else GGUFFile.open(path)
    cfg = ModelConfig.from_gguf(g.metadata, {name: info.shape for name, info in g.tensors.items()})
    if "rope_freqs.weight" in g.tensors:  # Llama 3.1 files store the rope scaling as per-frequency divisors
        divisors = g.load("rope_freqs.weight", device)
        if not isinstance(divisors, Tensor):
            raise ValueError(f"GGUF file {path}: rope_freqs.weight is quantized ({divisors.type_name})")
        cfg = replace(cfg, rope_freq_divisors=tuple(float(v) for v in divisors.flatten().tolist()))

    # each weight is read into device memory when the model asks for it, so the host holds one tensor's bytes
    # at a time; the largest (the embedding) comes first, while little else is resident
    loaded: dict[str, Weight] = {}
    bar = _progress(len(g.tensors), "loading weights") if progress else None

    def weights(hf_name: str) -> Weight | None:
        name = gguf_name(hf_name)
        if name is None or name not in g.tensors:
            return None
        if name in loaded:
            return loaded[name]
        w = read_gguf_tensor(g, name, device)
        if cfg.family in _PERMUTED_FAMILIES and (".attn_q." in name or ".attn_k." in name):
            heads = cfg.num_heads if ".attn_q." in name else cfg.num_kv_heads
            if isinstance(w, QuantizedWeight):
                w = w.map_rows(lambda t: unpermute_rows(t, heads)).realize()
            else:
                w = unpermute_rows(w, heads).contiguous().realize()
        loaded[name] = w
        if bar is not None:
            bar.update(1)
        return w

    model = Transformer(cfg, weights, ctx=ctx, device=device)
    if bar is not None:
        bar.close()
    return model, g


def read_gguf_tensor(g: GGUFFile, name: str, device: str = "CPU") -> Weight:
    """Tensor ``name`` of a GGUF file, read into memory of ``device`` now: a Tensor of its dtype, or a
    QuantizedWeight whose block fields are split apart on the host (one strided byte copy per byte of a block).

    The bytes are read with plain file reads, not through the file's memory map, and go to the device in one
    copy per field: no page of the file stays in this process's resident memory, and no device temporary is
    left behind (a whole-matrix copy per field dtype, as the lazy DISK path makes, would stay in the allocator's
    cache), so loading takes little more memory than the weights themselves.
    """
    info = g.tensors[name]
    packed = GGML_TYPES.get(info.type_id)
    if packed is None or info.nbytes < 0 or (info.type_id not in _PLAIN and len(info.shape) != 2):
        return g.load(name, device)  # a type or shape the reader rejects: its error names the problem
    with open(g.path, "rb") as f:
        f.seek(info.offset)
        raw = f.read(info.nbytes)
    if len(raw) != info.nbytes:
        raise ValueError(f"GGUF file {g.path}: tensor {name!r} is cut short ({len(raw)} of {info.nbytes} bytes; "
                         "was the file changed after it was opened?)")  # fmt: skip
    if info.type_id in _PLAIN:
        return Tensor(raw, dtype=_PLAIN[info.type_id], device=device).reshape(info.shape)
    rows, cols = info.shape
    blocks = rows * (cols // packed.block)
    parts = {}
    for field, (dtype, start, count) in _FIELDS[info.type_id].items():
        width = count * dtype.itemsize  # bytes of this field in a block
        out = bytearray(blocks * width)
        for j in range(width):
            out[j::width] = raw[start + j :: packed.nbytes]
        part = Tensor(out, dtype=dtype, device=device)
        parts[field] = part.reshape(rows, -1) if count == 1 else part.reshape(rows, -1, count)
        del out
    return QuantizedWeight(info.type_id, (rows, cols), parts)


# ---------------------------------------------------------------- copying the weights in


def _model_weights(model: Transformer) -> Iterable[tuple[Any, str]]:
    """(owner, attribute) of every weight the model holds, each once."""
    seen: set[int] = set()
    for module in model.modules():
        for attr in ("weight", "bias", "qweight", "table"):
            w = module.__dict__.get(attr)
            if w is None:
                w = module._buffers.get(attr) if attr in ("weight", "bias") else None
            if w is not None and id(w) not in seen:
                seen.add(id(w))
                yield module, attr


def realize_weights(model: Transformer, progress: bool = True) -> None:
    """Copy every weight to the compute device now (the packed parts of a quantized one made contiguous)."""
    items = list(_model_weights(model))
    bar = _progress(len(items), "loading weights") if progress else None
    for module, attr in items:
        w = module.__dict__.get(attr) if attr in ("qweight", "table") else module._buffers[attr]
        w.realize()  # a Tensor's node becomes its buffer; a QuantizedWeight's parts become contiguous buffers
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()


def _progress(total: int, desc: str) -> Any:
    """A progress bar on stderr, when stderr is a terminal (a log or a pipe gets none: tqdm costs 2 MB)."""
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="tensor", file=sys.stderr, leave=False)
