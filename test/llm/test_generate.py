"""Generation on a tiny random Llama: penalties for repeated tokens against a reference on transformers' logits,
stop strings (also split across tokens), end of sequence, the context limit, and several generations in a row
on one model (the jitted step's recording reuses the KV caches)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from llm_models import greedy_reference, make_tiny, tmp_folder

import boltgrad.llm as llm
from boltgrad import Tensor
from boltgrad.llm.generate import TokenHistory, penalize

torch = pytest.importorskip("torch")
pytest.importorskip("transformers", reason="the tiny-model oracles need transformers")

PROMPT = [1, 17, 923, 5, 301, 77, 2, 640]


class Words:
    """A stand-in tokenizer whose token i reads "w<i> ": each token's text is known, and a stop string can span
    two tokens."""

    def __init__(self, eos_token_ids: tuple[int, ...] = ()):
        self.eos_token_ids = eos_token_ids

    def decode(self, ids: list[int]) -> str:
        return "".join(f"w{i} " for i in ids)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_folder(tmp_path_factory, "tiny_generate")
    ref = make_tiny("llama", folder)
    model, _ = llm.load(folder, ctx=64, progress=False)
    return ref, model


def penalized_reference(ref, ids: list[int], n: int, repetition=1.0, presence=0.0, frequency=0.0) -> list[int]:
    """n greedy tokens from the torch model's logits, penalized in numpy: repetition over the prompt and the
    output, presence and frequency over the output."""
    out: list[int] = []
    for _ in range(n):
        with torch.no_grad():
            logits = ref(torch.tensor([ids + out])).logits[0, -1].double().numpy()
        seen = np.zeros_like(logits, dtype=bool)
        seen[ids + out] = True
        logits = np.where(seen, np.where(logits < 0, logits * repetition, logits / repetition), logits)
        counts = np.bincount(out, minlength=logits.size)
        logits = logits - presence * (counts > 0) - frequency * counts
        out.append(int(logits.argmax()))
    return out


def test_repetition_penalty_matches_transformers(tiny):
    ref, model = tiny
    # a random model seldom wants a token it has seen, so a penalty below 1 (a bonus) is what changes its tokens
    with torch.no_grad():
        out = ref.generate(torch.tensor([PROMPT]), max_new_tokens=12, min_new_tokens=12, do_sample=False,
                           repetition_penalty=0.5, pad_token_id=0, eos_token_id=None)  # fmt: skip
    expected = out[0, len(PROMPT) :].tolist()
    assert expected != greedy_reference(ref, PROMPT, 12)
    got = [t.id for t in llm.generate(model, None, PROMPT, max_tokens=12, repetition_penalty=0.5, stop_at_eos=False)]
    assert got == expected


@pytest.mark.parametrize("use_jit", [True, False], ids=["jit", "plain"])
def test_presence_and_frequency_penalties_match_a_reference(tiny, use_jit):
    ref, model = tiny
    # a bonus for the prompt's tokens (repetition < 1) and a net penalty for each repeat of an output token
    expected = penalized_reference(ref, PROMPT, 12, repetition=0.7, presence=-0.5, frequency=1.0)
    assert expected != penalized_reference(ref, PROMPT, 12, repetition=0.7)
    got = [t.id for t in llm.generate(model, None, PROMPT, max_tokens=12, repetition_penalty=0.7, presence_penalty=-0.5,
                                      frequency_penalty=1.0, stop_at_eos=False, use_jit=use_jit)]  # fmt: skip
    assert got == expected


def test_penalize_against_numpy():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((1, 1000)).astype(np.float32) * 3
    history = TokenHistory(1000, "CPU")
    history.start([3, 7, 7])
    for token in (7, 11, 11, 11, 40):
        history.add(Tensor([[token]])).realize()
    assert history.counts.numpy()[0, [7, 11, 40]].tolist() == [1, 3, 1]
    s = llm.Sampling(repetition_penalty=0.7, presence_penalty=-0.5, frequency_penalty=1.0)
    counts = np.bincount([7, 11, 11, 11, 40], minlength=1000)
    seen = (counts > 0) | np.isin(np.arange(1000), [3, 7])
    expected = np.where(seen, np.where(logits < 0, logits * 0.7, logits / 0.7), logits)
    expected = expected + 0.5 * (counts > 0) - 1.0 * counts
    np.testing.assert_allclose(penalize(Tensor(logits), s, history).numpy(), expected, rtol=1e-6, atol=1e-6)
    history.start([0])  # a new generation forgets the counts
    assert history.counts.numpy().sum() == 0 and history.in_prompt.numpy()[0].nonzero()[0].tolist() == [0]


def test_generations_in_a_row_reuse_the_recording(tiny):
    ref, model = tiny
    other = [1, 44, 55, 66, 77, 88, 99, 100]  # as long as PROMPT: the same prefill kernels
    for prompt in (PROMPT, other, PROMPT):  # the third replays the step recorded in the first
        got = [t.id for t in llm.generate(model, None, prompt, max_tokens=8, stop_at_eos=False)]
        assert got == greedy_reference(ref, prompt, 8)


def test_stop_string_split_across_tokens_ends_the_text_before_it(tiny):
    ref, model = tiny
    expected = greedy_reference(ref, PROMPT, 10)
    full = Words().decode(expected)
    # from the middle of the 4th token's text into the 5th's: "<4th id's last digit> w<5th id's first digit>"
    stop = f"{expected[3] % 10} w{str(expected[4])[0]}"
    assert full.count(stop) == 1
    stats = llm.GenerationStats()
    tokens = list(llm.generate(model, Words(), PROMPT, max_tokens=10, stop=["never", stop], stats=stats))
    assert [t.id for t in tokens] == expected[:5]  # the 5th token completes the stop string
    assert "".join(t.text for t in tokens) == full[: full.index(stop)]
    assert stats.finish_reason == "stop"


def test_held_back_text_is_released_when_no_stop_string_follows(tiny):
    ref, model = tiny
    expected = greedy_reference(ref, PROMPT, 6)
    # "w<2nd id> w" could begin the stop string until the 3rd token's digits differ from it
    stop = f"w{expected[1]} w{expected[2]}x"
    stats = llm.GenerationStats()
    tokens = list(llm.generate(model, Words(), PROMPT, max_tokens=6, stop=[stop], stats=stats))
    texts = [t.text for t in tokens]
    assert "".join(texts) == Words().decode(expected)
    assert texts[1] == "" and texts[2] == f"w{expected[1]} w{expected[2]} "  # held, then released together
    assert stats.finish_reason == "length"


def test_end_of_sequence_stops_after_yielding_it(tiny):
    ref, model = tiny
    expected = greedy_reference(ref, PROMPT, 8)
    stats = llm.GenerationStats()
    tokens = list(llm.generate(model, Words(eos_token_ids=(expected[2],)), PROMPT, max_tokens=8, stats=stats))
    assert [t.id for t in tokens] == expected[: expected.index(expected[2]) + 1]
    assert stats.finish_reason == "stop"


def test_a_prompt_past_the_context_is_a_clear_error(tiny):
    _, model = tiny
    with pytest.raises(ValueError, match="60 prompt tokens \\+ 8 new ones do not fit the context of 64 tokens"):
        next(llm.generate(model, None, list(range(60)), max_tokens=8))
    with pytest.raises(ValueError, match="repetition_penalty must be > 0"):
        next(llm.generate(model, None, PROMPT, repetition_penalty=0))


def test_sampling_with_penalties_is_seeded(tiny):
    _, model = tiny

    def run(seed: int) -> list[int]:
        return [t.id for t in llm.generate(model, None, PROMPT, max_tokens=4, temperature=1.0, frequency_penalty=1.0,
                                           seed=seed, stop_at_eos=False)]  # fmt: skip

    first = run(3)
    assert run(3) == first and run(4) != first


@pytest.mark.parametrize("penalized", [False, True], ids=["greedy", "penalized"])
def test_prefill_in_chunks_padded_and_moved_back_at_the_end_of_the_cache(tiny, monkeypatch, penalized):
    ref, model = tiny
    # chunks of 24 and 8 in a cache of 64: a 60-token prompt runs [0, 24) and [24, 48), then [40, 64) moved back
    # over 8 rows already written (rows 60..63 padding); a 13-token one [0, 8) and [8, 16) with 3 rows of padding
    monkeypatch.setattr(importlib.import_module("boltgrad.llm.generate"), "PREFILL_CHUNKS", (24, 8))
    model.__dict__.pop("_generator", None)
    rng = np.random.default_rng(5)
    for length, new in ((60, 4), (13, 6)):
        prompt = [1] + rng.integers(2, 1000, size=length - 1).tolist()
        kwargs = {"repetition_penalty": 0.7, "frequency_penalty": 1.0} if penalized else {}
        got = [t.id for t in llm.generate(model, None, prompt, max_tokens=new, stop_at_eos=False, **kwargs)]
        if penalized:
            assert got == penalized_reference(ref, prompt, new, repetition=0.7, frequency=1.0)
        else:
            assert got == greedy_reference(ref, prompt, new)
    model.__dict__.pop("_generator", None)


def test_new_sampling_values_replay_the_same_recording(tiny):
    ref, model = tiny
    expected = greedy_reference(ref, PROMPT, 6)
    list(llm.generate(model, None, PROMPT, max_tokens=6, temperature=1.0, top_p=0.9, seed=1, stop_at_eos=False))
    gen = model.__dict__["_generator"]
    recorded = {key: step.captured for key, step in gen.steps.items()}
    # a temperature this low makes the draw the argmax: the value is read at every replay, not baked in
    got = [t.id for t in llm.generate(model, None, PROMPT, max_tokens=6, temperature=1e-4, top_p=0.5, seed=2,
                                      stop_at_eos=False)]  # fmt: skip
    assert got == expected
    assert {key: step.captured for key, step in gen.steps.items()} == recorded  # no new recording


def test_decode_steps_attend_over_a_span_of_the_cache_and_switch_at_its_end(tiny, monkeypatch):
    """A decode step reads the first ``span`` cache rows past its position (spans of 16 and 32 here, in a cache
    of 64): the tokens of a generation that crosses from one span into the next equal transformers', and each
    span is one recording."""
    ref, model = tiny
    monkeypatch.setattr(importlib.import_module("boltgrad.llm.generate"), "DECODE_SPANS", (16, 32))
    model.__dict__.pop("_generator", None)
    prompt = [1] + np.random.default_rng(9).integers(2, 1000, size=11).tolist()  # decoding from position 12
    got = [t.id for t in llm.generate(model, None, prompt, max_tokens=30, stop_at_eos=False)]
    assert got == greedy_reference(ref, prompt, 30)
    gen = model.__dict__["_generator"]
    assert sorted(key[1] for key in gen.steps if key[0] == "decode") == [16, 32, 64]
    model.__dict__.pop("_generator", None)
