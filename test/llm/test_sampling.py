"""Sampling on the device: greedy, temperature, top-k, top-p and min-p, and seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

import boltgrad
from boltgrad import Tensor
from boltgrad.llm import Sampling, sample

PROBS = [0.5, 0.3, 0.2, 0.0]
ROWS = 4000  # identical rows: one call draws ROWS samples


def frequencies(s: Sampling, probs=PROBS, seed=0) -> np.ndarray:
    boltgrad.manual_seed(seed)
    logits = Tensor([[math.log(p) if p else -math.inf for p in probs]]).expand(ROWS, len(probs))
    ids = sample(logits, s).numpy()
    return np.bincount(ids, minlength=len(probs)) / ROWS


def test_greedy_is_argmax():
    logits = np.random.default_rng(0).standard_normal((3, 50)).astype(np.float32)
    assert sample(Tensor(logits), Sampling()).tolist() == logits.argmax(-1).tolist()
    assert sample(Tensor(logits), Sampling(temperature=1.0, top_k=1)).tolist() == logits.argmax(-1).tolist()


def test_temperature_one_follows_the_softmax():
    np.testing.assert_allclose(frequencies(Sampling(temperature=1.0)), PROBS, atol=0.03)


def test_low_temperature_sharpens():
    freq = frequencies(Sampling(temperature=0.25))
    sharp = np.array(PROBS) ** 4 / (np.array(PROBS) ** 4).sum()
    np.testing.assert_allclose(freq, sharp, atol=0.03)


@pytest.mark.parametrize("s", [Sampling(1.0, top_k=2), Sampling(1.0, top_p=0.6), Sampling(1.0, min_p=0.5)],
                         ids=["top_k", "top_p", "min_p"])  # fmt: skip
def test_filters_keep_the_two_likeliest(s):
    np.testing.assert_allclose(frequencies(s), [0.625, 0.375, 0, 0], atol=0.03)


def test_top_p_keeps_exactly_enough_mass():
    # 0.5 alone reaches top_p=0.5: only the likeliest token stays
    assert frequencies(Sampling(1.0, top_p=0.5))[0] == 1.0
    assert frequencies(Sampling(1.0, top_p=0.99))[2] > 0.1


def test_seeds_reproduce_draws():
    a, b = frequencies(Sampling(1.0), seed=5), frequencies(Sampling(1.0), seed=5)
    np.testing.assert_array_equal(a, b)
    boltgrad.manual_seed(1)
    logits = Tensor.zeros(1, 1000)
    first = [sample(logits, Sampling(1.0)).item() for _ in range(3)]
    boltgrad.manual_seed(1)
    assert [sample(logits, Sampling(1.0)).item() for _ in range(3)] == first
    assert len(set(first)) > 1  # successive draws differ


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="temperature"):
        Sampling(temperature=-1)
    with pytest.raises(ValueError, match="top_p"):
        Sampling(1.0, top_p=0)
    with pytest.raises(ValueError, match="top_k"):
        Sampling(1.0, top_k=-3)
