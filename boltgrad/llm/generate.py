"""Text generation: the prompt in fixed-size chunks through a jitted prefill step, then one token at a time from
a jitted decode step.

Sampling runs on the device, so each step sends back one token id. Both steps read their positions from
``boltgrad.Variable``s and the sampling settings from a small tensor on the device, so one recording of each serves
every prompt, position and setting of the same shape (greedy or not, ``top_k``, whether min-p, top-p and the
penalties are on): a step is recorded on its first call and replayed as one launch list from then on. Penalties
for repeated tokens read a per-token count kept on the device too (``TokenHistory``), and stop strings are found in
the decoded text on the host.

    >>> model, tokenizer = boltgrad.llm.load("SmolLM2-135M-Instruct.Q4_1.gguf")         # doctest: +SKIP
    >>> "".join(t.text for t in generate(model, tokenizer, "The capital of France is", 5))  # doctest: +SKIP
    ' Paris. The capital'
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import Variable, float32, int64, manual_seed
from ..jit import jit
from ..tensor import Tensor
from .model import Transformer

TOP_P_BISECTIONS = 16  # halvings of the search for the top-p threshold: to 1/65536 of the largest probability
MAX_RECORDINGS = 8  # jitted steps kept per model (prefill steps, and a decode step per span, per sampling structure)
# the cache rows a decode step attends over: the smallest of these (or the whole context) past the position, so a
# short generation in a long context reads 512 rows per layer, not ctx; one recording per span
DECODE_SPANS = (512, 1024, 2048)
# Prefill chunk lengths, longest first: a prompt goes through the longest chunk while at least half of one is
# left, the rest through the short one (a short prompt costs a short chunk, not a long padded one)
PREFILL_CHUNKS = (64, 8)
# the sampling settings a step reads from the device, in this order
KNOBS = ("temperature", "top_p", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty")


@dataclass(frozen=True)
class Sampling:
    """How the next token is picked from the logits: greedy at temperature 0, else a draw from
    softmax(logits / temperature) restricted to the ``top_k`` likeliest tokens (0: all), to the smallest set
    whose probability reaches ``top_p``, and to tokens at least ``min_p`` times as likely as the likeliest."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    # Penalties for tokens already seen, applied to the logits before anything else. repetition_penalty (as in
    # transformers and llama.cpp; 1 is off) divides a positive logit of a token in the prompt or the output by it
    # and multiplies a negative one; presence_penalty and frequency_penalty (as in OpenAI's API; 0 is off)
    # subtract from the logit of each generated token a constant and its count times the penalty.
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    def __post_init__(self) -> None:
        if self.temperature < 0 or not math.isfinite(self.temperature):
            raise ValueError(f"sampling: temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"sampling: top_k must be >= 0 (0 keeps all tokens), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"sampling: top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.min_p <= 1:
            raise ValueError(f"sampling: min_p must be in [0, 1], got {self.min_p}")
        if not 0 < self.repetition_penalty < math.inf:
            raise ValueError(f"sampling: repetition_penalty must be > 0 (1 is off), got {self.repetition_penalty}")
        for name in ("presence_penalty", "frequency_penalty"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"sampling: {name} must be a finite number (0 is off), got {getattr(self, name)}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def penalized(self) -> bool:
        return self.repetition_penalty != 1 or self.presence_penalty != 0 or self.frequency_penalty != 0

    @property
    def structure(self) -> tuple:
        """What shapes the kernels of a sampling step; the values of the settings are inputs (``knobs``)."""
        if self.greedy:
            return ("greedy", self.penalized)
        return ("draw", self.penalized, self.top_k, self.min_p > 0, self.top_p < 1)

    def knob_values(self) -> list[float]:
        return [float(getattr(self, name)) for name in KNOBS]

    def knobs(self, device: str) -> Tensor:
        """The settings as a float32 tensor (len(KNOBS),) on ``device``, in the order of ``KNOBS``."""
        return Tensor(self.knob_values(), dtype=float32, device=device)


class TokenHistory:
    """The tokens a generation has seen, as the penalties need them: which ids the prompt holds and how often
    each id was generated, two (1, vocab) float32 tensors on the device. They are written in place (``assign``),
    so a jitted decode step that updates them keeps doing so in every replay: only the new token's count is
    written (a block write at an index computed on the device), and no id comes back to the host for it."""

    def __init__(self, vocab: int, device: str):
        self.vocab = vocab
        self.in_prompt = Tensor.zeros(1, vocab, device=device).contiguous().realize()
        self.counts = Tensor.zeros(1, vocab, device=device).contiguous().realize()

    def start(self, prompt: list[int]) -> None:
        """Forget the last generation and mark the ids of ``prompt``."""
        ids = Tensor([prompt], dtype=int64, device=self.counts.device).reshape(-1, 1)
        hits = (ids == Tensor.arange(self.vocab, device=ids.device)).any(0, keepdim=True)  # (1, vocab)
        self.in_prompt.assign(hits.cast(float32))
        self.counts.assign(self.counts.zeros_like())
        Tensor.realize_all([self.in_prompt, self.counts])

    def add(self, token: Tensor, amount: int | Tensor = 1) -> Tensor:
        """Count ``token`` (1, 1) ``amount`` times (0 or 1: a Variable lets one recording count or not), lazily;
        returns the count tensor to realize."""
        return self.counts.assign_at((0, token.reshape(())), self.counts.gather(1, token) + amount)


def sample(logits: Tensor, s: Sampling, history: TokenHistory | None = None, knobs: Tensor | None = None) -> Tensor:
    """The next token of each row of ``logits`` (B, V) as int64 (B,), computed on the device. Penalized
    sampling needs the ``history`` of the generation (batch 1). The values of the settings are read from
    ``knobs`` (``Sampling.knobs``: a jitted step passes a device tensor it overwrites between generations), by
    default the ones of ``s``; ``s`` decides only which filters and penalties run."""
    knobs = s.knobs(logits.device) if knobs is None else knobs
    if s.penalized:
        if history is None:
            raise ValueError("sample: repetition, presence and frequency penalties need the TokenHistory of the "
                             "generation")  # fmt: skip
        logits = penalize(logits, s, history, knobs)
    if s.greedy:
        return logits.argmax(-1)
    temperature, top_p, min_p = (knobs[KNOBS.index(name)] for name in ("temperature", "top_p", "min_p"))
    logits = logits.cast(float32) / temperature
    vocab = logits.shape[-1]
    if 0 < s.top_k < vocab:
        kth = logits.topk(s.top_k, dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.where(logits >= kth, -math.inf)
    probs = logits.softmax(-1)
    keep = probs > 0
    if s.min_p > 0:
        keep = keep & (probs >= probs.amax(-1, keepdim=True) * min_p)
    if s.top_p < 1:
        keep = keep & (probs >= _top_p_threshold(probs, top_p))
    # Gumbel-max: the argmax of logits + Gumbel noise is a draw from softmax(logits) over the kept tokens
    noise = -(-Tensor.rand(logits.shape, device=logits.device).log()).log()
    return (logits + noise).where(keep, -math.inf).argmax(-1)


def penalize(logits: Tensor, s: Sampling, history: TokenHistory, knobs: Tensor | None = None) -> Tensor:
    """``logits`` (1, V) with the penalties of ``s`` (their values from ``knobs``, by default the ones of ``s``)
    for the tokens in ``history``, as float32. All three are applied: at their neutral values (1, 0, 0) they
    leave the logits exactly as they are."""
    knobs = s.knobs(logits.device) if knobs is None else knobs
    repetition, presence, frequency = (knobs[KNOBS.index(name)] for name in KNOBS[3:])
    logits = logits.cast(float32)
    counts = history.counts
    seen = (history.in_prompt + counts) > 0
    shrunk = (logits * repetition).where(logits < 0, logits / repetition)
    logits = shrunk.where(seen, logits)
    return logits - (counts > 0).cast(float32) * presence - counts * frequency


def _top_p_threshold(probs: Tensor, top_p: float | Tensor) -> Tensor:
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
    decode_s: float = 0.0  # decode steps after the first (which records the jitted step)
    timed_steps: int = 0
    finish_reason: str = ""  # "stop" (an end-of-sequence token or a stop string) or "length" (max_tokens)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def prefill_tok_s(self) -> float:
        return self.prompt_tokens / self.prefill_s if self.prefill_s else 0.0

    @property
    def decode_tok_s(self) -> float:
        return self.timed_steps / self.decode_s if self.decode_s else 0.0


class Generator:
    """The generation machinery of one model: the Variables of its positions, the token history the penalties
    read, the sampling settings on the device, and the jitted steps (a prefill step per chunk length and a
    decode step, per sampling structure). A recording holds the buffers of the KV caches, the history and the
    settings it read, so these are reused from one generation to the next, and the recordings are dropped if
    the caches change."""

    def __init__(self, model: Transformer):
        self.model = model
        self.pos = Variable(f"pos_ctx{model.ctx}", 0, model.ctx - 1)
        self.chunks = tuple(sorted({min(c, model.ctx) for c in PREFILL_CHUNKS}, reverse=True))
        # where a chunk starts in the cache, which of its rows is the prompt's last, and whether it is the last
        # chunk (only then is its sampled token counted for the penalties)
        self.chunk_start = {c: Variable(f"chunk{c}_start_ctx{model.ctx}", 0, model.ctx - c) for c in self.chunks}
        self.chunk_last = {c: Variable(f"chunk{c}_last", 0, c - 1) for c in self.chunks}
        self.final = Variable("prefill_final", 0, 1)
        self.steps: dict[tuple, Callable[..., Tensor]] = {}
        self.history = TokenHistory(model.config.vocab_size, model.device)
        self.knobs = Tensor.zeros(len(KNOBS), device=model.device).contiguous().realize()
        self.caches: list[Tensor] = []

    def prepare(self, sampling: Sampling) -> None:
        """KV caches for one sequence: the ones of the last generation when they still fit (the prefill
        overwrites what the new prompt needs, the mask hides the rest), else fresh ones and no recordings; and
        the values of ``sampling`` in the knobs the steps read."""
        model = self.model
        if model.cache_batch != 1:
            model.reset_cache(1)
        caches = model.caches()
        if len(caches) != len(self.caches) or any(a is not b for a, b in zip(caches, self.caches)):
            self.steps.clear()
            self.caches = caches
            Tensor.realize_all(caches)  # before a recording: a step that made them would zero them every replay
        self.knobs.assign(sampling.knobs(model.device)).realize()

    def state(self, token: Tensor, sampling: Sampling, counted: int | Tensor = 1) -> list[Tensor]:
        """What a step that sampled ``token`` must realize: the token, the caches and, when it is penalized, the
        count of the token (``counted`` times)."""
        out = [token, *self.model.caches()]
        return out + [self.history.add(token, counted)] if sampling.penalized else out

    def _jitted(self, key: tuple, fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        if key not in self.steps:
            if len(self.steps) >= MAX_RECORDINGS:  # the least recently used goes, with its recording's memory
                del self.steps[next(iter(self.steps))]
            self.steps[key] = jit(fn, warmup=False)  # caches, history and knobs exist: record on the first call
        self.steps[key] = self.steps.pop(key)  # now the most recently used
        return self.steps[key]

    def span_for(self, position: int) -> int:
        """The cache rows a decode step at ``position`` attends over (see DECODE_SPANS)."""
        return next((s for s in DECODE_SPANS if position < s < self.model.ctx), self.model.ctx)

    def step_key(self, sampling: Sampling, span: int) -> tuple:
        return ("decode", span, sampling.structure)

    def step_fn(self, sampling: Sampling, use_jit: bool, span: int | None = None) -> Callable[..., Tensor]:
        """The decode step: ``step(token (1, 1), pos)`` -> the next token (1, 1), attending over the first
        ``span`` rows of the cache (all of them by default); ``pos`` must be below ``span``."""
        model, history, knobs = self.model, self.history, self.knobs
        span = span or model.ctx

        def step(token: Tensor, pos: Tensor) -> Tensor:
            logits = model(token, start_pos=pos, span=span)[:, -1, :]
            nxt = sample(logits, sampling, history, knobs).reshape(-1, 1)
            Tensor.realize_all(self.state(nxt, sampling))
            return nxt

        return self._jitted(self.step_key(sampling, span), step) if use_jit else step

    def prefill_fn(self, sampling: Sampling, chunk: int) -> Callable[..., Tensor]:
        """The prefill step of ``chunk`` tokens: ``prefill(ids (1, chunk), start, last, final)`` writes the
        chunk's rows of the KV caches and returns the token sampled after row ``last`` (1, 1)."""
        model, history, knobs = self.model, self.history, self.knobs

        def prefill(ids: Tensor, start: Tensor, last: Tensor, final: Tensor) -> Tensor:
            logits = model(ids, start_pos=start, last=last)[:, -1, :]
            token = sample(logits, sampling, history, knobs).reshape(1, 1)
            Tensor.realize_all(self.state(token, sampling, final))
            return token

        return self._jitted(("prefill", chunk, sampling.structure), prefill)

    def prefill(self, ids: list[int], sampling: Sampling) -> Tensor:
        """Run the prompt through the prefill steps; returns the first generated token (1, 1)."""
        token: Tensor | None = None
        done, ctx = 0, self.model.ctx
        while done < len(ids):
            left = len(ids) - done
            chunk = next((c for c in self.chunks if left >= c // 2), self.chunks[-1])
            # the chunk's rows past the prompt are padding: written to the cache, where the mask hides them until
            # the decode steps overwrite them; near the end of the cache the chunk moves back over rows already
            # written (recomputing them gives the same values) rather than past the end
            start = min(done, ctx - chunk)
            rows = ids[start : start + chunk]
            real = len(rows)
            final = start + real == len(ids)
            step = self.prefill_fn(sampling, chunk)
            token = step(Tensor([rows + [0] * (chunk - real)], dtype=int64, device=self.model.device),
                         self.chunk_start[chunk].bind(start), self.chunk_last[chunk].bind(real - 1),
                         self.final.bind(int(final)))  # fmt: skip
            done = start + real
        assert token is not None
        return token


def _generator(model: Transformer) -> Generator:
    gen = model.__dict__.get("_generator")
    if gen is None or gen.model is not model or gen.pos.max != model.ctx - 1:
        gen = Generator(model)
        object.__setattr__(model, "_generator", gen)
    return gen


def generate(model: Transformer, tokenizer: Any, prompt: str | list[int], max_tokens: int = 256,
             temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0,
             repetition_penalty: float = 1.0, presence_penalty: float = 0.0, frequency_penalty: float = 0.0,
             seed: int | None = None, stop: Sequence[str] = (), stop_at_eos: bool = True, use_jit: bool = True,
             stats: GenerationStats | None = None) -> Iterator[GeneratedToken]:  # fmt: skip
    """Yield up to ``max_tokens`` tokens that follow ``prompt`` (text, or a list of token ids), one at a time.

    Greedy by default; ``temperature`` > 0 samples (see ``Sampling``, also for the penalties), reproducibly for
    a given ``seed``. Stops after an end-of-sequence token (which is yielded) unless ``stop_at_eos`` is false,
    and at the first of the ``stop`` strings the text contains: the text of the tokens then ends just before
    it. A piece of text that may be the start of a stop string is held back until the next tokens tell (its
    token's ``text`` is ""). ``stats``, if given, is filled with token counts, prefill/decode timings and the
    finish reason.
    """
    sampling = Sampling(temperature, top_k, top_p, min_p, repetition_penalty, presence_penalty, frequency_penalty)
    stops = [s for s in stop if s]
    if stops and not tokenizer:
        raise ValueError("generate: stop strings need a tokenizer to decode the tokens")
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
    gen.prepare(sampling)
    eos = set(getattr(tokenizer, "eos_token_ids", ()) or ())
    decoder = _TextStream(tokenizer, stops)

    start = time.perf_counter()
    if sampling.penalized:
        gen.history.start(ids)
    if use_jit:
        token = gen.prefill(ids, sampling)
    else:  # one plain pass over the prompt, attending over the filled part of the cache only
        logits = model(Tensor([ids], dtype=int64), start_pos=0, last=len(ids) - 1)[:, -1, :]
        token = sample(logits, sampling, gen.history, gen.knobs).reshape(1, 1)
        Tensor.realize_all(gen.state(token, sampling))
    position = len(ids)
    recording = False
    for i in range(max_tokens):
        token_id = int(token.item())
        if i == 0:
            stats.prefill_s = time.perf_counter() - start
        elif not recording:  # a step that records a jitted step (or its plain first run) is not timed
            stats.decode_s += time.perf_counter() - start
            stats.timed_steps += 1
        stats.generated = i + 1
        at_eos = stop_at_eos and token_id in eos
        last = at_eos or i == max_tokens - 1
        text = decoder.add(token_id, last)
        if decoder.stopped or last:
            stats.finish_reason = "stop" if decoder.stopped or at_eos else "length"
            yield GeneratedToken(token_id, text)
            return
        yield GeneratedToken(token_id, text)
        start = time.perf_counter()
        span = gen.span_for(position)
        recording = not use_jit and i == 0 or use_jit and gen.step_key(sampling, span) not in gen.steps
        token = gen.step_fn(sampling, use_jit, span)(token, gen.pos.bind(position))
        position += 1


class _TextStream:
    """Turns token ids into text pieces: decodes the whole generation and hands out what is new, holding back
    an unfinished UTF-8 character (shown as U+FFFD by the decoder) until its last byte arrives, and text that
    may be the start of a stop string until it is known not to be. Once a stop string appears, the text ends
    before it and ``stopped`` is set."""

    def __init__(self, tokenizer: Any, stops: list[str]):
        self.tokenizer = tokenizer if tokenizer else None
        self.stops = stops
        self.ids: list[int] = []
        self.decoded = 0  # characters of the decoded text taken from the decoder
        self.pending = ""  # taken, but not handed out yet: it may begin a stop string
        self.stopped = False

    def add(self, token_id: int, last: bool = False) -> str:
        """The text that ``token_id`` adds; ``last``: no token follows, so nothing is held back."""
        if self.tokenizer is None:
            return ""
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids)
        if text.endswith("\ufffd") and not last:
            return ""
        self.pending += text[self.decoded :]
        self.decoded = len(text)
        found = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if found:
            self.stopped = True
            return self.pending[: min(found)]
        keep = 0 if last else _stop_prefix_length(self.pending, self.stops)
        piece, self.pending = self.pending[: len(self.pending) - keep], self.pending[len(self.pending) - keep :]
        return piece


def _stop_prefix_length(text: str, stops: list[str]) -> int:
    """The length of the longest end of ``text`` that is the beginning of a stop string (0 if none)."""
    for length in range(min(len(text), max((len(s) for s in stops), default=0)), 0, -1):
        if any(s.startswith(text[-length:]) for s in stops):
            return length
    return 0
