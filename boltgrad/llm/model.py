"""One decoder-only transformer for the Llama, Qwen2 and Qwen3 families, driven by a ``ModelConfig``.

    x = embed(ids)                                              # (B, T, D)
    for each layer:
        x = x + attention(rms_norm(x))                          # GQA, rotary positions, KV cache
        x = x + down(silu(gate(rms_norm(x))) * up(rms_norm(x)))  # the SwiGLU MLP
    logits = lm_head(rms_norm(x))                                # (B, T, vocab)

The families differ only in switches of the config: Qwen2 adds biases to the q, k and v projections, Qwen3
RMS-normalises each head of q and k before the rotation, some models tie the output matrix to the embedding.
Module and weight names are those of Hugging Face checkpoints (``model.layers.0.self_attn.q_proj.weight``), so a
safetensors file maps onto the modules by name; GGUF names are translated to them on load.

Weights are given, not initialised: each is a float Tensor (any float dtype; computed in float32) or a
``QuantizedWeight`` kept packed and dequantized inside the matmul kernels.

The KV cache of each layer is a pair of tensors of the full context length (B, kv_heads, ctx, head_dim),
allocated on the first call and written with ``assign``. It holds ``Transformer.kv_dtype``: float16 for a model
with quantized weights (as llama.cpp does: half the memory, and half the bytes a decode step reads from the cache),
else float32; attention computes in float32 either way. ``start_pos`` is where ``ids`` start in it: a Python
int (prefill, or plain decoding) or a ``boltgrad.Variable`` (a jitted decode step, one recording for every
position: the step attends over the whole cache and masks what lies past the position).
"""

from __future__ import annotations

from collections.abc import Callable

from .. import DType, float16, float32
from ..nn import Module, ModuleList
from ..nn import functional as F
from ..tensor import Tensor, zeroed
from ..tensor_reduce import cat
from .config import ModelConfig
from .quant import QuantizedWeight

Weight = Tensor | QuantizedWeight
WeightSource = Callable[[str], Weight | None]  # HF name -> weight, or None when the file has no such tensor


def as_float(w: Weight) -> Tensor:
    """The weight's values as a lazy float32 tensor (dequantized inside the consumer's kernel)."""
    if isinstance(w, QuantizedWeight):
        return w.dequantize()
    return w if w.dtype == float32 else w.cast(float32)


# From this many rows of input on (a prefill chunk), a quantized weight is dequantized into a float32 buffer once
# and multiplied with the float matmul kernels (register tiles, blocking), instead of being dequantized again for
# every row by the quantized matrix-vector kernel
DEQUANTIZE_ROWS = 32


def _rows(x: Tensor) -> int:
    rows = 1
    for s in x.shape[:-1]:
        rows *= s
    return rows


class Linear(Module):
    """``x @ weight.T + bias`` for a given weight (out_features, in_features), plain or quantized."""

    def __init__(self, weight: Weight, bias: Tensor | None = None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        if isinstance(weight, QuantizedWeight):
            self.qweight = weight
        else:
            self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)

    @property
    def packed(self) -> Weight:
        return self.qweight if "qweight" in self.__dict__ else self.weight

    def forward(self, x: Tensor) -> Tensor:
        w = self.packed
        if isinstance(w, QuantizedWeight) and _rows(x) >= DEQUANTIZE_ROWS:
            out = x.contiguous() @ w.dequantize().contiguous().T
        elif isinstance(w, QuantizedWeight):
            out = w.linear(x)
        else:
            out = x @ as_float(w).T
        return out if self.bias is None else out + as_float(self.bias)


class RMSNorm(Module):
    def __init__(self, weight: Tensor, eps: float):
        super().__init__()
        self.register_buffer("weight", weight)
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, x.shape[-1], as_float(self.weight), self.eps)


class Embedding(Module):
    def __init__(self, weight: Weight):
        super().__init__()
        self.table = weight  # a plain attribute: tied to lm_head in some models, and possibly quantized

    def forward(self, ids: Tensor) -> Tensor:
        return F.embedding(ids, as_float(self.table))


def write_rows(cache: Tensor, rows: Tensor, start: int | Tensor) -> Tensor:
    """Write ``rows`` (B, H, T, E) into ``cache`` (B, H, ctx, E) at positions ``start .. start+T`` in place.

    ``start`` is an int or a 0-d integer tensor (a Variable, known when the kernel runs). A block write: the
    kernel touches the T rows only, not the whole cache.
    """
    return cache.assign_at((0, 0, start, 0), rows)


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary embedding of x (B, H, T, E) by angles given as cos/sin (T, E/2), pairing dim i with i + E/2."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Attention(Module):
    def __init__(self, cfg: ModelConfig, get: Callable[[str], Weight], get_opt: WeightSource):
        super().__init__()
        self.cfg = cfg
        self.q_proj = Linear(get("q_proj.weight"), get_opt("q_proj.bias"))
        self.k_proj = Linear(get("k_proj.weight"), get_opt("k_proj.bias"))
        self.v_proj = Linear(get("v_proj.weight"), get_opt("v_proj.bias"))
        self.o_proj = Linear(get("o_proj.weight"), get_opt("o_proj.bias"))
        if cfg.qk_norm:
            self.q_norm = RMSNorm(get("q_norm.weight"), cfg.rms_norm_eps)
            self.k_norm = RMSNorm(get("k_norm.weight"), cfg.rms_norm_eps)
        self.cache_k: Tensor | None = None
        self.cache_v: Tensor | None = None

    def forward(self, x: Tensor, start_pos: int | Tensor, cos: Tensor, sin: Tensor, span: int | None = None) -> Tensor:
        cfg = self.cfg
        batch, length, _ = x.shape
        q = self.q_proj(x).reshape(batch, length, cfg.num_heads, cfg.head_dim)
        k = self.k_proj(x).reshape(batch, length, cfg.num_kv_heads, cfg.head_dim)
        v = self.v_proj(x).reshape(batch, length, cfg.num_kv_heads, cfg.head_dim)
        if cfg.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, E)
        # k and v are computed once into buffers: the cache write reads them at every position of the cache
        q, k, v = rotate(q, cos, sin).contiguous(), rotate(k, cos, sin).contiguous(), v.contiguous()
        assert self.cache_k is not None and self.cache_v is not None
        keys = write_rows(self.cache_k, k.cast(self.cache_k.dtype), start_pos).cast(float32)
        values = write_rows(self.cache_v, v.cast(self.cache_v.dtype), start_pos).cast(float32)
        ctx = keys.shape[2]
        if isinstance(start_pos, int):  # attend over the filled part only
            if start_pos + length > ctx:
                raise ValueError(f"attention: positions up to {start_pos + length} do not fit the context of {ctx}")
            keys, values = keys[:, :, : start_pos + length], values[:, :, : start_pos + length]
        elif span is not None and span < ctx:  # a position known only at run time, below ``span``
            keys, values = keys[:, :, :span], values[:, :, :span]
        query_pos = Tensor.arange(length, device=x.device).reshape(length, 1) + start_pos
        mask = Tensor.arange(keys.shape[2], device=x.device).reshape(1, -1) <= query_pos  # (T, S)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, enable_gqa=True)
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, cfg.num_heads * cfg.head_dim))


class MLP(Module):
    def __init__(self, get: Callable[[str], Weight], get_opt: WeightSource):
        super().__init__()
        self.gate_proj = Linear(get("gate_proj.weight"), get_opt("gate_proj.bias"))
        self.up_proj = Linear(get("up_proj.weight"), get_opt("up_proj.bias"))
        self.down_proj = Linear(get("down_proj.weight"), get_opt("down_proj.bias"))

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(Module):
    def __init__(self, cfg: ModelConfig, get: Callable[[str], Weight], get_opt: WeightSource):
        super().__init__()
        self.input_layernorm = RMSNorm(get("input_layernorm.weight"), cfg.rms_norm_eps)
        self.self_attn = Attention(cfg, _prefixed(get, "self_attn."), _prefixed(get_opt, "self_attn."))
        self.post_attention_layernorm = RMSNorm(get("post_attention_layernorm.weight"), cfg.rms_norm_eps)
        self.mlp = MLP(_prefixed(get, "mlp."), _prefixed(get_opt, "mlp."))

    def forward(self, x: Tensor, start_pos: int | Tensor, cos: Tensor, sin: Tensor, span: int | None = None) -> Tensor:
        # the residual stream is stored after each step: every later kernel reads it instead of recomputing
        # the projections that produced it
        x = (x + self.self_attn(self.input_layernorm(x), start_pos, cos, sin, span)).contiguous()
        return (x + self.mlp(self.post_attention_layernorm(x))).contiguous()


class Backbone(Module):
    def __init__(self, cfg: ModelConfig, get: Callable[[str], Weight], get_opt: WeightSource):
        super().__init__()
        self.embed_tokens = Embedding(get("embed_tokens.weight"))
        layer = [(_prefixed(get, f"layers.{i}."), _prefixed(get_opt, f"layers.{i}.")) for i in range(cfg.num_layers)]
        self.layers = ModuleList([Block(cfg, *getters) for getters in layer])
        self.norm = RMSNorm(get("norm.weight"), cfg.rms_norm_eps)


class Transformer(Module):
    """The language model: ``model(ids, start_pos=0)`` -> logits (batch, seq, vocab) for int ids (batch, seq).

    ``weights(name)`` gives each weight by its Hugging Face name (None when the file lacks it); ``ctx`` is the
    length of the KV cache (by default the config's maximum, at most 4096).
    """

    def __init__(self, cfg: ModelConfig, weights: WeightSource, ctx: int | None = None, device: str = "CPU"):
        super().__init__()
        self.config, self.device = cfg, device
        self.ctx = ctx or min(cfg.max_position_embeddings, 4096)

        def get(name: str) -> Weight:
            w = weights(name)
            if w is None:
                raise ValueError(f"model weights: {name!r} is missing (a {cfg.family} model needs it)")
            return w

        self.model = Backbone(cfg, _prefixed(get, "model."), _prefixed(weights, "model."))
        head = weights("lm_head.weight")
        if head is None:
            if not cfg.tie_word_embeddings:
                raise ValueError("model weights: 'lm_head.weight' is missing and the config does not tie it to the "
                                 "embedding (tie_word_embeddings is false)")  # fmt: skip
            head = self.model.embed_tokens.table
        self.lm_head = Linear(head)
        self.inv_freq = Tensor(cfg.inv_freq(), dtype=float32, device=device)
        quantized = any(hasattr(m, "qweight") for m in self.modules())
        self.kv_dtype: DType = float16 if quantized else float32  # the KV cache's; reset_cache() after changing it
        self.cache_batch = 0

    def reset_cache(self, batch: int = 1, ctx: int | None = None) -> None:
        """Fresh zeroed KV caches for ``batch`` sequences of up to ``ctx`` tokens."""
        self.ctx = ctx or self.ctx
        cfg = self.config
        shape = (batch, cfg.num_kv_heads, self.ctx, cfg.head_dim)
        for block in self.model.layers:
            block.self_attn.cache_k = zeroed(shape, self.kv_dtype, self.device)
            block.self_attn.cache_v = zeroed(shape, self.kv_dtype, self.device)
        self.cache_batch = batch

    def caches(self) -> list[Tensor]:
        out = []
        for block in self.model.layers:
            out += [block.self_attn.cache_k, block.self_attn.cache_v]
        return out

    def forward(self, ids: Tensor, start_pos: int | Tensor = 0, last: int | Tensor | None = None,
                span: int | None = None) -> Tensor:  # fmt: skip
        """Logits (B, T, vocab) of every position of ``ids`` (B, T); with ``last`` (an int or a 0-d int tensor,
        such as a Variable) only those of position ``last`` of ``ids``, (B, 1, vocab): the output matrix is
        multiplied with one row, not T. ``span``: with a ``start_pos`` known only at run time, the caller's
        promise that ``start_pos + T <= span``; attention then reads the first ``span`` rows of the cache, not
        all ``ctx`` (a decode step recorded per span costs what the position needs, not the whole context)."""
        if ids.ndim != 2 or ids.dtype.is_float:
            raise ValueError(f"Transformer: expected integer ids of shape (batch, seq), got {ids.dtype.name} "
                             f"{ids.shape}")  # fmt: skip
        batch, length = ids.shape
        if isinstance(start_pos, int) and start_pos + length > self.ctx:
            raise ValueError(f"Transformer: {start_pos + length} tokens do not fit the context of {self.ctx} "
                             "(reset_cache(ctx=...) for a longer one)")  # fmt: skip
        if self.cache_batch != batch:
            self.reset_cache(batch)
        positions = Tensor.arange(length, device=self.device) + start_pos  # (T,)
        angles = positions.cast(float32).reshape(length, 1) * self.inv_freq  # (T, E/2)
        cos, sin = angles.cos().contiguous(), angles.sin().contiguous()  # once, not inside every layer's kernels
        x = self.model.embed_tokens(ids)
        for block in self.model.layers:
            x = block(x, start_pos, cos, sin, span)
        if last is not None:
            x = x[:, last].reshape(batch, 1, -1)
        return self.lm_head(self.model.norm(x))


def _prefixed(get: Callable[[str], Weight | None], prefix: str) -> Callable[[str], Weight | None]:
    return lambda name: get(prefix + name)


__all__ = ["Transformer", "Linear", "RMSNorm", "Embedding", "Attention", "MLP", "Block", "write_rows"]
