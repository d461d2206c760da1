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


def _builtin_hashes() -> tuple[Any, Any]:
    """(sha1, sha256) from the interpreter's own hash modules, without importing ``hashlib``: hashlib loads its
    OpenSSL binding at import, and libcrypto alone is about 3.4 MB of resident memory (an LLM process counts it)."""
    try:
        from _sha1 import sha1

        try:
            from _sha2 import sha256  # Python 3.12+
        except ImportError:
            from _sha256 import sha256  # Python 3.11
        return sha1, sha256
    except ImportError:  # an interpreter built without them
        import hashlib

        return hashlib.sha1, hashlib.sha256


sha1, sha256 = _builtin_hashes()
