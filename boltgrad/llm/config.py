"""The shape of a decoder-only transformer (Llama, Qwen2, Qwen3), read from a Hugging Face ``config.json`` or
from GGUF metadata.

Every field the model needs is here, so ``model.py`` never looks at a file format. Two layouts of the Hugging
Face config are read: the older one (``rope_theta`` and ``rope_scaling`` at the top level) and the one
transformers 5 writes (``rope_parameters`` holding ``rope_theta``, ``rope_type`` and the scaling fields).

    >>> cfg = ModelConfig.from_hf({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
    ...     "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000})
    >>> cfg.head_dim, cfg.rope_theta, cfg.attention_bias
    (16, 10000.0, False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# family -> (q/k/v projections carry a bias, q and k are RMS-normalised per head)
FAMILIES: dict[str, tuple[bool, bool]] = {
    "llama": (False, False),
    "mistral": (False, False),
    "qwen2": (True, False),
    "qwen3": (False, True),
}
ROPE_TYPES = ("default", "linear", "llama3")


@dataclass(frozen=True)
class RopeScaling:
    """How rotary frequencies are stretched for long contexts (``rope_type`` as transformers names it)."""

    rope_type: str = "default"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclass(frozen=True)
class ModelConfig:
    family: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling = field(default_factory=RopeScaling)
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # q, k and v projections have a bias (Qwen2; Llama's attention_bias)
    output_bias: bool = False  # the o projection has a bias too (Llama's attention_bias)
    mlp_bias: bool = False
    qk_norm: bool = False  # RMSNorm over each head of q and k before rope (Qwen3)
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    rope_freq_divisors: tuple[float, ...] = ()  # GGUF's rope_freqs tensor: each frequency divided by its entry

    def __post_init__(self) -> None:
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"model config: {self.num_heads} attention heads cannot be shared by "
                             f"{self.num_kv_heads} key/value heads (it must divide them)")  # fmt: skip
        if self.head_dim % 2:
            raise ValueError(f"model config: head_dim {self.head_dim} must be even for rotary embeddings")
        if self.rope_scaling.rope_type not in ROPE_TYPES:
            raise ValueError(f"model config: rope type {self.rope_scaling.rope_type!r} is not supported "
                             f"(supported: {', '.join(ROPE_TYPES)})")  # fmt: skip

    # ------------------------------------------------------------ Hugging Face config.json

    @classmethod
    def from_hf(cls, cfg: dict[str, Any]) -> ModelConfig:
        """From the dict of a Hugging Face ``config.json``."""
        family = cfg.get("model_type")
        if family not in FAMILIES:
            raise ValueError(f"model config: architecture {family!r} is not supported "
                             f"(supported model_type: {', '.join(FAMILIES)})")  # fmt: skip
        qkv_bias, qk_norm = FAMILIES[family]

        def need(key: str) -> Any:
            if key not in cfg:
                raise ValueError(f"model config: config.json of a {family} model lacks {key!r}")
            return cfg[key]

        hidden, heads = int(need("hidden_size")), int(need("num_attention_heads"))
        # transformers 5 moves rope_theta and the scaling into rope_parameters; older configs keep them on top
        rope = dict(cfg.get("rope_parameters") or {})
        scaling = dict(cfg.get("rope_scaling") or {})
        theta = rope.get("rope_theta", cfg.get("rope_theta", 10000.0))
        scaling.update({k: v for k, v in rope.items() if k != "rope_theta"})
        attention_bias = bool(cfg.get("attention_bias", qkv_bias))
        return cls(
            family=family,
            hidden_size=hidden,
            intermediate_size=int(need("intermediate_size")),
            num_layers=int(need("num_hidden_layers")),
            num_heads=heads,
            num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or hidden // heads),
            vocab_size=int(need("vocab_size")),
            rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            rope_theta=float(theta),
            rope_scaling=_rope_scaling(scaling),
            max_position_embeddings=int(cfg.get("max_position_embeddings", 4096)),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            attention_bias=attention_bias or qkv_bias,
            output_bias=family in ("llama", "mistral") and attention_bias,
            mlp_bias=bool(cfg.get("mlp_bias", False)),
            qk_norm=qk_norm,
            bos_token_id=cfg.get("bos_token_id"),
            eos_token_ids=_id_tuple(cfg.get("eos_token_id")),
        )

    # ------------------------------------------------------------ GGUF metadata

    @classmethod
    def from_gguf(cls, meta: dict[str, Any], tensor_shapes: dict[str, tuple[int, ...]]) -> ModelConfig:
        """From GGUF metadata (``general.architecture`` and the ``<arch>.*`` keys) and the tensors' shapes
        (torch order), which give the vocabulary size and tied embeddings where the metadata does not."""
        arch = meta.get("general.architecture")
        if arch not in FAMILIES:
            raise ValueError(f"GGUF: architecture {arch!r} is not supported (supported: {', '.join(FAMILIES)})")
        qkv_bias, qk_norm = FAMILIES[arch]

        def key(name: str, default: Any = None) -> Any:
            value = meta.get(f"{arch}.{name}", default)
            if value is None:
                raise ValueError(f"GGUF: metadata lacks {arch}.{name}")
            return value

        hidden, heads = int(key("embedding_length")), int(key("attention.head_count"))
        kv_heads = int(key("attention.head_count_kv", heads))
        head_dim = int(meta.get(f"{arch}.attention.key_length") or hidden // heads)
        embed = tensor_shapes.get("token_embd.weight")
        if embed is None:
            raise ValueError("GGUF: the file has no token_embd.weight tensor")
        vocab = int(meta.get(f"{arch}.vocab_size") or embed[0])
        scaling_type = meta.get(f"{arch}.rope.scaling.type", "none")
        factor = float(meta.get(f"{arch}.rope.scaling.factor", 1.0) or 1.0)
        if scaling_type in ("none", None) or factor == 1.0:
            scaling = RopeScaling()
        elif scaling_type == "linear":
            scaling = RopeScaling("linear", factor)
        else:
            raise ValueError(f"GGUF: rope scaling type {scaling_type!r} is not supported (supported: none, linear)")
        return cls(
            family=arch,
            hidden_size=hidden,
            intermediate_size=int(key("feed_forward_length")),
            num_layers=int(key("block_count")),
            num_heads=heads,
            num_kv_heads=kv_heads,
            head_dim=head_dim,
            vocab_size=vocab,
            rms_norm_eps=float(key("attention.layer_norm_rms_epsilon", 1e-6)),
            rope_theta=float(key("rope.freq_base", 10000.0)),
            rope_scaling=scaling,
            max_position_embeddings=int(key("context_length", 4096)),
            tie_word_embeddings="output.weight" not in tensor_shapes,
            attention_bias=qkv_bias or "blk.0.attn_q.bias" in tensor_shapes,
            output_bias="blk.0.attn_output.bias" in tensor_shapes,
            mlp_bias="blk.0.ffn_up.bias" in tensor_shapes,
            qk_norm=qk_norm,
            bos_token_id=meta.get("tokenizer.ggml.bos_token_id"),
            eos_token_ids=_id_tuple(meta.get("tokenizer.ggml.eos_token_id")),
        )

    # ------------------------------------------------------------ rotary embedding

    def inv_freq(self) -> list[float]:
        """The rotary frequency of each of the ``head_dim / 2`` pairs, scaled as ``rope_scaling`` says."""
        half = self.head_dim // 2
        freqs = [1.0 / self.rope_theta ** (2 * i / self.head_dim) for i in range(half)]
        s = self.rope_scaling
        if s.rope_type == "linear":
            return [f / s.factor for f in freqs]
        if s.rope_type == "llama3":  # long wavelengths slowed by `factor`, short kept, smooth in between
            low_wavelen = s.original_max_position_embeddings / s.low_freq_factor
            high_wavelen = s.original_max_position_embeddings / s.high_freq_factor
            out = []
            for f in freqs:
                wavelen = 2 * math.pi / f
                if wavelen < high_wavelen:
                    out.append(f)
                elif wavelen > low_wavelen:
                    out.append(f / s.factor)
                else:
                    smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (
                        s.high_freq_factor - s.low_freq_factor
                    )
                    out.append((1 - smooth) * f / s.factor + smooth * f)
            return out
        if self.rope_freq_divisors:
            if len(self.rope_freq_divisors) != half:
                raise ValueError(f"model config: {len(self.rope_freq_divisors)} rope frequency divisors for "
                                 f"head_dim {self.head_dim} (expected {half})")  # fmt: skip
            return [f / d for f, d in zip(freqs, self.rope_freq_divisors)]
        return freqs


def _rope_scaling(fields: dict[str, Any]) -> RopeScaling:
    kind = fields.get("rope_type", fields.get("type", "default")) or "default"
    if kind not in ROPE_TYPES:
        raise ValueError(f"model config: rope type {kind!r} is not supported (supported: {', '.join(ROPE_TYPES)})")
    base = RopeScaling()
    return RopeScaling(
        rope_type=kind,
        factor=float(fields.get("factor", base.factor)),
        low_freq_factor=float(fields.get("low_freq_factor", base.low_freq_factor)),
        high_freq_factor=float(fields.get("high_freq_factor", base.high_freq_factor)),
        original_max_position_embeddings=int(
            fields.get("original_max_position_embeddings", base.original_max_position_embeddings)
        ),
    )


def _id_tuple(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        return tuple(int(v) for v in value)
    return (int(value),)
