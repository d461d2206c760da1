"""Text generation: one prefill pass over the prompt, then one token at a time from a jitted decode step.

Sampling runs on the device, so each step sends back one token id. The decode step reads its position from a
``boltgrad.Variable``: the first call runs it, the second records its kernels and from the third on the recording
is replayed as one launch list, whatever the position.

    >>> model, tokenizer = boltgrad.llm.load("SmolLM2-135M-Instruct.Q4_1.gguf")         # doctest: +SKIP
    >>> "".join(t.text for t in generate(model, tokenizer, "The capital of France is", 5))  # doctest: +SKIP
    ' Paris. The capital'
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .. import Variable, float32, int64, manual_seed
from ..jit import jit
from ..tensor import Tensor
from .model import Transformer

TOP_P_BISECTIONS = 16  # halvings of the search for the top-p threshold: to 1/65536 of the largest probability


@dataclass(frozen=True)
class Sampling:
    """How the next token is picked from the logits: greedy at temperature 0, else a draw from
    softmax(logits / temperature) restricted to the ``top_k`` likeliest tokens (0: all), to the smallest set
    whose probability reaches ``top_p``, and to tokens at least ``min_p`` times as likely as the likeliest."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0

    def __post_init__(self) -> None:
        if self.temperature < 0 or not math.isfinite(self.temperature):
            raise ValueError(f"sampling: temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"sampling: top_k must be >= 0 (0 keeps all tokens), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"sampling: top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.min_p <= 1:
            raise ValueError(f"sampling: min_p must be in [0, 1], got {self.min_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def sample(logits: Tensor, s: Sampling) -> Tensor:
    """The next token of each row of ``logits`` (B, V) as int64 (B,), computed on the device."""
    if s.greedy:
        return logits.argmax(-1)
    logits = logits.cast(float32) / s.temperature
    vocab = logits.shape[-1]
    if 0 < s.top_k < vocab:
        kth = logits.topk(s.top_k, dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.where(logits >= kth, -math.inf)
    probs = logits.softmax(-1)
    keep = probs > 0
    if s.min_p > 0:
        keep = keep & (probs >= probs.amax(-1, keepdim=True) * s.min_p)
    if s.top_p < 1:
        keep = keep & (probs >= _top_p_threshold(probs, s.top_p))
    # Gumbel-max: the argmax of logits + Gumbel noise is a draw from softmax(logits) over the kept tokens
    noise = -(-Tensor.rand(logits.shape, device=logits.device).log()).log()
    return (logits + noise).where(keep, -math.inf).argmax(-1)


def _top_p_threshold(probs: Tensor, top_p: float) -> Tensor:
    """The largest probability t such that the tokens with probability >= t hold at least ``top_p`` of the mass
    (B, 1), found by bisection over [0, max]: no sort of the vocabulary."""
    low = probs.zeros_like().sum(-1, keepdim=True)  # t = 0 keeps everything: always enough
    high = probs.amax(-1, keepdim=True)
    for _ in range(TOP_P_BISECTIONS):
        mid = (low + high) * 0.5
        enough = probs.where(probs >= mid, 0.0).sum(-1, keepdim=True) >= top_p
        low, high = mid.where(enough, low), high.where(enough, mid)
    return low


@dataclass
class GeneratedToken:
    id: int
    text: str  # the text this token completes ("" while it is part of an unfinished UTF-8 character)


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    generated: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0  # decode steps after the first two (the plain run and the recording)
    timed_steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def prefill_tok_s(self) -> float:
        return self.prompt_tokens / self.prefill_s if self.prefill_s else 0.0

    @property
    def decode_tok_s(self) -> float:
        return self.timed_steps / self.decode_s if self.decode_s else 0.0


class Generator:
    """The decode machinery of one model: its position Variable and a jitted step per sampling setting."""

    def __init__(self, model: Transformer):
        self.model = model
        self.pos = Variable(f"pos_ctx{model.ctx}", 0, model.ctx - 1)
        self.steps: dict[Sampling, Callable[..., Tensor]] = {}

    def step_fn(self, sampling: Sampling, use_jit: bool) -> Callable[..., Tensor]:
        model = self.model

        def step(token: Tensor, pos: Tensor) -> Tensor:
            nxt = sample(model(token, start_pos=pos)[:, -1, :], sampling).reshape(-1, 1)
            Tensor.realize_all([nxt, *model.caches()])
            return nxt

        if not use_jit:
            return step
        if sampling not in self.steps:
            self.steps[sampling] = jit(step)
        return self.steps[sampling]


def _generator(model: Transformer) -> Generator:
    gen = model.__dict__.get("_generator")
    if gen is None or gen.model is not model or gen.pos.max != model.ctx - 1:
        gen = Generator(model)
        object.__setattr__(model, "_generator", gen)
    return gen


def generate(model: Transformer, tokenizer: Any, prompt: str | list[int], max_tokens: int = 256,
             temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0,
             seed: int | None = None, stop_at_eos: bool = True, use_jit: bool = True,
             stats: GenerationStats | None = None) -> Iterator[GeneratedToken]:  # fmt: skip
    """Yield up to ``max_tokens`` tokens that follow ``prompt`` (text, or a list of token ids), one at a time.

    Greedy by default; ``temperature`` > 0 samples (see ``Sampling``), reproducibly for a given ``seed``. Stops
    after an end-of-sequence token (which is yielded) unless ``stop_at_eos`` is false. ``stats``, if given, is
    filled with token counts and prefill/decode timings.
    """
    sampling = Sampling(temperature, top_k, top_p, min_p)
    ids = list(prompt) if isinstance(prompt, list | tuple) else tokenizer.encode(prompt)
    if not ids:
        raise ValueError("generate: the prompt is empty (give at least one token, e.g. BOS)")
    if len(ids) + max_tokens > model.ctx:
        raise ValueError(f"generate: {len(ids)} prompt tokens + {max_tokens} new ones do not fit the context of "
                         f"{model.ctx} tokens (load the model with a larger ctx)")  # fmt: skip
    if seed is not None:
        manual_seed(seed)
    stats = stats if stats is not None else GenerationStats()
    stats.prompt_tokens = len(ids)
    gen = _generator(model)
    step = gen.step_fn(sampling, use_jit)
    eos = set(getattr(tokenizer, "eos_token_ids", ()) or ())
    decoder = _TextStream(tokenizer, ids)

    start = time.perf_counter()
    model.reset_cache(1)
    token = sample(model(Tensor([ids], dtype=int64), start_pos=0)[:, -1, :], sampling).reshape(1, 1)
    Tensor.realize_all([token, *model.caches()])
    position = len(ids)
    for i in range(max_tokens):
        token_id = int(token.item())
        if i == 0:
            stats.prefill_s = time.perf_counter() - start
        elif i >= 3:  # steps 1 and 2 run the step plainly and record it
            stats.decode_s += time.perf_counter() - start
            stats.timed_steps += 1
        stats.generated = i + 1
        yield GeneratedToken(token_id, decoder.add(token_id))
        if (stop_at_eos and token_id in eos) or i == max_tokens - 1:
            return
        start = time.perf_counter()
        token = step(token, gen.pos.bind(position))
        position += 1


class _TextStream:
    """Turns token ids into text pieces: decodes the whole generation and hands out what is new, holding back
    an unfinished UTF-8 character (shown as U+FFFD by the decoder) until its last byte arrives."""

    def __init__(self, tokenizer: Any, prompt: list[int]):
        self.tokenizer = tokenizer if tokenizer else None
        self.ids: list[int] = []
        self.sent = 0

    def add(self, token_id: int) -> str:
        if self.tokenizer is None:
            return ""
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids)
        if text.endswith("\ufffd"):
            return ""
        piece, self.sent = text[self.sent :], len(text)
        return piece
