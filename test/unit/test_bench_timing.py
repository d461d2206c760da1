"""The bench's timing rule (``bench/timing.py``): how many calls are warm-up and how many are timed. Counts only;
no assertion on how fast anything runs."""

from __future__ import annotations

import time

from bench.timing import Budget, measure


def _counting(seconds_per_call: float):
    calls = []

    def run_once():
        calls.append(time.perf_counter())
        time.sleep(seconds_per_call)
        return len(calls)

    return run_once, calls


def test_warm_up_lasts_its_calls_and_its_seconds():
    run_once, calls = _counting(0.001)
    budget = Budget(warmup=3, repeats=5, min_repeats=1, seconds=1.0, warmup_seconds=0.05)
    timing, out = measure(run_once, budget)
    assert len(timing.runs_s) == 5 and out == len(calls) == timing.calls
    warm_up = calls[: timing.calls - 5]
    assert len(warm_up) >= 3 + 1  # 3 calls take 3 ms, less than the 50 ms asked for
    assert calls[len(warm_up)] - calls[1] >= 0.05  # the timed calls start once the warm-up has taken 50 ms


def test_a_slow_workload_gets_the_first_call_and_its_minimum():
    run_once, calls = _counting(0.06)
    budget = Budget(warmup=3, repeats=9, min_repeats=1, seconds=0.1, warmup_seconds=0.5)
    timing, _ = measure(run_once, budget)
    # the first call spent half the budget: no warm-up; timed calls until they pass the budget
    assert len(timing.runs_s) == 2 and timing.calls == 3
