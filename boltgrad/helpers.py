"""Small helpers every layer may use."""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable
from typing import Any


def prod(xs: Iterable[Any]) -> Any:
    return functools.reduce(operator.mul, xs, 1)


def flatten(xss: Iterable[Iterable[Any]]) -> list[Any]:
    return [x for xs in xss for x in xs]


def all_same(xs: list[Any]) -> bool:
    return all(x == xs[0] for x in xs)
