"""Warm-up, then the median of several timed runs: the one timing rule every workload and peer shares.

The first call is timed on its own (for boltgrad it compiles the kernels; for the peers it pays for lazy
initialisation and first-touch page faults) and is never part of the median.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Budget:
    """How long to measure one workload in one peer."""

    warmup: int  # calls before the timed ones, the first call included
    repeats: int  # timed calls at most
    min_repeats: int  # timed calls at least, however slow each is
    seconds: float  # stop adding timed calls once they have taken this long (after min_repeats)
    warmup_seconds: float = 0.0  # and warm-up calls until they have taken this long, too (within half the budget)


# Warm-up is counted in calls and in time: right after a first call that compiled (boltgrad, tinygrad) the kernels
# run up to 1.7x slower for the next tens of milliseconds (a conv step's kernels: 1.4 ms for seven calls, then
# 0.8 ms; with no compile first, 0.8 ms from the second call), so a millisecond workload needs more than two calls
# to be past it. The steady state is what the table compares (the first call has a column of its own); every peer
# gets the same warm-up.
FULL = Budget(warmup=2, repeats=15, min_repeats=3, seconds=4.0, warmup_seconds=0.5)
# quick: a median of up to 9 calls within 0.4 s; a workload of a few milliseconds still gets all 9 (a median of 3
# moved with every noisy minute of a shared VM), a slow one (a tinygrad matmul of seconds) one
QUICK = Budget(warmup=3, repeats=9, min_repeats=1, seconds=0.4, warmup_seconds=0.25)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@dataclass
class Timing:
    first_s: float  # the first call, alone
    runs_s: list[float] = field(default_factory=list)  # the timed calls after warm-up
    calls: int = 1  # every call made, the first and the warm-up ones included

    @property
    def median_s(self) -> float:
        return median(self.runs_s)

    @property
    def min_s(self) -> float:
        return min(self.runs_s)

    def as_dict(self) -> dict[str, Any]:
        return {
            "first_s": self.first_s,
            "median_s": self.median_s,
            "min_s": self.min_s,
            "runs_s": self.runs_s,
            "calls": self.calls,
        }


def timed(run_once: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = run_once()
    return time.perf_counter() - start, out


def measure(run_once: Callable[[], Any], budget: Budget) -> tuple[Timing, Any]:
    """Time ``run_once`` (which must return only when its result is computed) and return the last output.

    A slow workload (one call longer than the budget) gets the first call plus ``min_repeats`` timed calls;
    warm-up calls beyond the first are skipped once they would take more than half the budget.

    The garbage collector is off during the calls, as ``timeit`` does, so a collection never lands inside one;
    between calls (untimed) the previous output is dropped and the young generation collected. That matters for
    the lazy frameworks: a graph kept alive by a reference cycle is remembered as realized, and building the same
    expression again would return that buffer instead of computing anything.
    """
    out: Any = None

    def call() -> float:
        nonlocal out
        out = None
        gc.collect(0)
        elapsed, out = timed(run_once)
        return elapsed

    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        timing = Timing(call())
        warm_start = time.perf_counter()
        while timing.calls < budget.warmup or time.perf_counter() - warm_start < budget.warmup_seconds:
            if time.perf_counter() - warm_start + timing.first_s > budget.seconds / 2:
                break
            call()
            timing.calls += 1
        while len(timing.runs_s) < budget.repeats:
            if len(timing.runs_s) >= budget.min_repeats and sum(timing.runs_s) > budget.seconds:
                break
            timing.runs_s.append(call())
            timing.calls += 1
    finally:
        if gc_was_enabled:
            gc.enable()
    return timing, out
