"""Attention layers: MultiheadAttention and TransformerEncoderLayer, with torch's parameters and arguments.

MultiheadAttention packs the query, key and value projections in one ``in_proj_weight`` (3 * E, E) and
``in_proj_bias`` (3 * E,), followed by ``out_proj`` (a Linear), so torch's state dicts load by name. Shapes are
(L, N, E) by default and (N, L, E) with ``batch_first=True``; unbatched (L, E) inputs work too.
"""

from __future__ import annotations

import math
from typing import Any

from ..tensor import Tensor
from . import functional as F
from . import init
from .layers import Dropout, Linear
from .module import Module, empty_parameter
from .modules_norm import LayerNorm


def _additive_mask(mask: Tensor | None, dtype: Any) -> Tensor | None:
    """A boolean mask (True = may not attend) as 0 / -inf to add to the scores; a float mask as it is."""
    if mask is None:
        return None
    if mask.dtype.name == "bool":
        return Tensor.full(mask.shape, float("-inf"), dtype=dtype, device=mask.device).where(mask, 0.0)
    return mask.cast(dtype)


class NonDynamicallyQuantizableLinear(Linear):
    """MultiheadAttention's output projection: a Linear under torch's name for it (which its repr shows)."""


class MultiheadAttention(Module):
    """Attention from ``query`` to ``key``/``value`` with ``num_heads`` heads of embed_dim // num_heads each.

    ``forward`` returns (output, weights): the weights are the softmax scores averaged over the heads (N, L, S),
    or per head (N, num_heads, L, S) with ``average_attn_weights=False``, or None with ``need_weights=False``
    (which lets ``F.scaled_dot_product_attention`` do the work). ``attn_mask`` is (L, S) or (N * num_heads, L, S)
    and ``key_padding_mask`` is (N, S); boolean masks mark with True what may not be attended, float masks are
    added to the scores.

        >>> from boltgrad import nn, Tensor
        >>> mha = nn.MultiheadAttention(8, 2, batch_first=True)
        >>> out, w = mha(Tensor.ones(3, 5, 8), Tensor.ones(3, 4, 8), Tensor.ones(3, 4, 8))
        >>> out.shape, w.shape
        ((3, 5, 8), (3, 5, 4))
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = False, device: str | None = None,
                 dtype: Any = None):  # fmt: skip
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim ({embed_dim}) must be divisible by num_heads "
                             f"({num_heads})")  # fmt: skip
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError("MultiheadAttention: add_bias_kv and add_zero_attn are not supported")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.dropout, self.batch_first = dropout, batch_first
        with init.batched():
            if self._qkv_same_embed_dim:
                self.in_proj_weight = empty_parameter(3 * embed_dim, embed_dim, dtype=dtype, device=device)
                self.register_parameter("q_proj_weight", None)
                self.register_parameter("k_proj_weight", None)
                self.register_parameter("v_proj_weight", None)
            else:
                self.register_parameter("in_proj_weight", None)
                self.q_proj_weight = empty_parameter(embed_dim, embed_dim, dtype=dtype, device=device)
                self.k_proj_weight = empty_parameter(embed_dim, self.kdim, dtype=dtype, device=device)
                self.v_proj_weight = empty_parameter(embed_dim, self.vdim, dtype=dtype, device=device)
            if bias:
                self.in_proj_bias = empty_parameter(3 * embed_dim, dtype=dtype, device=device)
            else:
                self.register_parameter("in_proj_bias", None)
            self.out_proj = NonDynamicallyQuantizableLinear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype)
            self._reset_parameters()

    def _reset_parameters(self) -> None:
        with init.batched():
            if self._qkv_same_embed_dim:
                init.xavier_uniform_(self.in_proj_weight)
            else:
                for w in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                    init.xavier_uniform_(w)
            if self.in_proj_bias is not None:
                init.zeros_(self.in_proj_bias)
                init.zeros_(self.out_proj.bias)

    def _projections(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        e = self.embed_dim
        b = self.in_proj_bias
        b_q, b_k, b_v = (None, None, None) if b is None else (b[:e], b[e : 2 * e], b[2 * e :])
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            w_q, w_k, w_v = w[:e], w[e : 2 * e], w[2 * e :]
        else:
            w_q, w_k, w_v = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        return F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None,
                need_weights: bool = True, attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Tensor, Tensor | None]:  # fmt: skip
        unbatched = query.ndim == 2
        if unbatched:  # (L, E): a batch of one
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:  # (L, N, E) -> (N, L, E)
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        if query.ndim != 3 or query.shape[-1] != self.embed_dim:
            raise ValueError(f"MultiheadAttention: query of shape {query.shape} does not end in embed_dim "
                             f"{self.embed_dim}")  # fmt: skip
        n, l, s, h, d = query.shape[0], query.shape[1], key.shape[1], self.num_heads, self.head_dim
        q, k, v = self._projections(query, key, value)
        q = q.reshape(n, l, h, d).transpose(1, 2)  # (N, h, L, d)
        k = k.reshape(n, s, h, d).transpose(1, 2)  # (N, h, S, d)
        v = v.reshape(n, s, h, d).transpose(1, 2)  # (N, h, S, d)

        mask = self._merged_mask(attn_mask, key_padding_mask, is_causal, n, l, s, q.dtype)
        dropout_p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d))  # (N, h, L, S)
            if mask is not None:
                scores = scores + mask
            weights = scores.softmax(-1)
            if dropout_p > 0:
                weights = F.dropout(weights, dropout_p, True)  # torch returns the weights after dropout too
            out = weights @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        out = self.out_proj(out.transpose(1, 2).reshape(n, l, self.embed_dim))  # (N, L, E)

        if weights is not None and average_attn_weights:
            weights = weights.mean(1)
        if unbatched:
            out = out.squeeze(0)
            weights = weights.squeeze(0) if weights is not None else None
        elif not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights

    def _merged_mask(self, attn_mask: Tensor | None, key_padding_mask: Tensor | None, is_causal: bool, n: int,
                     l: int, s: int, dtype: Any) -> Tensor | None:  # fmt: skip
        """attn_mask, key_padding_mask and a causal mask as one additive mask broadcast to (N, h, L, S)."""
        if is_causal and attn_mask is None:
            rows = Tensor.arange(l, device=self.out_proj.weight.device).reshape(l, 1)
            cols = Tensor.arange(s, device=self.out_proj.weight.device).reshape(1, s)
            attn_mask = cols > rows
        mask = _additive_mask(attn_mask, dtype)
        if mask is not None and mask.ndim == 3:  # (N * h, L, S)
            mask = mask.reshape(n, self.num_heads, l, s)
        padding = _additive_mask(key_padding_mask, dtype)
        if padding is not None:
            if padding.shape != (n, s):
                raise ValueError(f"MultiheadAttention: key_padding_mask of shape {padding.shape}, expected {(n, s)}")
            padding = padding.reshape(n, 1, 1, s)
            mask = padding if mask is None else mask + padding
        return mask


class TransformerEncoderLayer(Module):
    """Self-attention and a feed-forward block, each with a residual connection and layer norm.

    ``norm_first=False`` (torch's default) normalises after each residual addition, ``norm_first=True`` before
    each block (the pre-norm arrangement of GPT-2). ``activation`` is "relu", "gelu" or a callable.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: Any = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, device: str | None = None,
                 dtype: Any = None):  # fmt: skip
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        with init.batched():
            self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first,
                                                **kw)  # fmt: skip
            self.linear1 = Linear(d_model, dim_feedforward, bias=bias, **kw)
            self.dropout = Dropout(dropout)
            self.linear2 = Linear(dim_feedforward, d_model, bias=bias, **kw)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        if activation == "relu":
            self.activation = F.relu
        elif activation == "gelu":
            self.activation = F.gelu
        elif callable(activation):
            self.activation = activation  # a Module is registered as the submodule "activation", as in torch
        else:
            raise ValueError(f"TransformerEncoderLayer: activation must be 'relu', 'gelu' or a callable, "
                             f"not {activation!r}")  # fmt: skip

    def forward(self, src: Tensor, src_mask: Tensor | None = None, src_key_padding_mask: Tensor | None = None,
                is_causal: bool = False) -> Tensor:  # fmt: skip
        x = src
        if self.norm_first:
            x = x + self._self_attention(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._feed_forward(self.norm2(x))
        else:
            x = self.norm1(x + self._self_attention(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._feed_forward(x))
        return x

    def _self_attention(self, x: Tensor, mask: Tensor | None, padding: Tensor | None, is_causal: bool) -> Tensor:
        out, _ = self.self_attn(x, x, x, attn_mask=mask, key_padding_mask=padding, need_weights=False,
                                is_causal=is_causal)  # fmt: skip
        return self.dropout1(out)

    def _feed_forward(self, x: Tensor) -> Tensor:
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))
