"""Byte-level BPE (GPT-2's scheme: SmolLM2, Llama 3, Qwen) from a GGUF file's vocabulary, in compact tables.

The ``tokenizers`` library holds a 49K vocabulary in about 14 MB (and 4.5 MB of its own code); these tables take
about 1 MB: the merges as two sorted integer arrays (pair -> rank and merged id, looked up by bisection), the
token strings as one string and an array of offsets. Encoding: special tokens are cut out first, the rest is
split by the family's pre-tokenizer pattern, each piece's UTF-8 bytes become GPT-2's printable characters,
and the lowest-ranked adjacent pair merges (leftmost first) until none is in the table.

Python's ``re`` has no ``\\p{L}``/``\\p{N}``. In its Unicode tables ``\\w`` is exactly letters, numbers and ``_``
and ``\\d`` exactly the decimal digits (Nd), so the patterns are written with those; they equal the originals on
every text without a letter-like number (categories Nl, No: superscripts, fractions, Roman numerals), a
character unassigned in Python's Unicode version, or U+001C-U+001F (``\\s`` to Python, not to the original).
A text with one of those is encoded by the ``tokenizers`` library, built from the same tables when first needed.
"""

from __future__ import annotations

import re
import unicodedata
from array import array
from bisect import bisect_left
from collections.abc import Callable
from typing import Any


def byte_chars() -> list[str]:
    """GPT-2's printable stand-in for each byte: printable Latin-1 bytes are themselves, the rest 256 + n."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    out, extra = [""] * 256, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


_L, _N, _NOT_LN = r"[^\W\d_]", r"\d", r"(?:[^\s\w]|_)"
# the pre-tokenizer patterns in Python's terms (see the module doc; GPT-2's is the byte-level default)
_GPT2_PY = rf"'s|'t|'re|'ve|'m|'ll|'d| ?{_L}+| ?{_N}+| ?{_NOT_LN}+|\s+(?!\S)|\s+"
_LLAMA3_PY = (
    rf"(?i:'s|'t|'re|'ve|'m|'ll|'d)|(?:[^\r\n\w]|_)?{_L}+|{_N}{{1,3}}| ?{_NOT_LN}+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_PY = rf"(?i:'s|'t|'re|'ve|'m|'ll|'d)|(?:[^\r\n\w]|_)?{_L}+|{_N}| ?{_NOT_LN}+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
PY_SPLITS = {"llama-bpe": _LLAMA3_PY, "llama3": _LLAMA3_PY, "qwen2": _QWEN2_PY, "qwen35": _QWEN2_PY}
_INEXACT = frozenset({"Nl", "No", "Cn"})


def exact_in_python(text: str) -> bool:
    """Whether the Python patterns split ``text`` as the originals do (see the module doc)."""
    if text.isascii():
        return not any("\x1c" <= c <= "\x1f" for c in text)
    return not any(("\x1c" <= c <= "\x1f") or (not c.isascii() and unicodedata.category(c) in _INEXACT) for c in text)


class ByteLevelBPE:
    """``encode(text).ids``, ``decode(ids)`` and ``get_vocab_size()``, as a ``tokenizers.Tokenizer`` offers them.

    tokens: the vocabulary (GPT-2 characters); merges: "a b" lines, by rank; pre: the GGUF pre-tokenizer name;
    special: ids of the special tokens, cut out of a text before splitting it; fallback: builds the
    ``tokenizers`` equivalent (from ``tokens`` and ``merges`` lists) for a text the Python patterns would split
    differently."""

    def __init__(self, tokens: list[str], merges: list[str], pre: str, special: list[int],
                 fallback: Callable[[list[str], list[str]], Any]):  # fmt: skip
        self._text = "".join(tokens)
        self._starts = array("I", [0])
        for t in tokens:
            self._starts.append(self._starts[-1] + len(t))
        index = {t: i for i, t in enumerate(tokens)}
        chars = byte_chars()
        self._byte_ids = [index.get(c, -1) for c in chars]
        self._char_byte = {c: b for b, c in enumerate(chars)}
        width = max(len(tokens), 1).bit_length()
        self._width = width
        pairs: dict[int, int] = {}  # a pair listed twice keeps its last rank, as in ``tokenizers``
        for rank, line in enumerate(merges):
            a, _, b = line.partition(" ")
            ia, ib, merged = index.get(a), index.get(b), index.get(a + b)
            if ia is None or ib is None or merged is None:
                raise ValueError(f"GGUF tokenizer: merge {rank} ({line!r}) names a token not in the vocabulary")
            pairs[(ia << width) | ib] = (rank << width) | merged
        del index
        self._keys = array("q", sorted(pairs))
        self._values = array("q", [pairs[k] for k in self._keys])
        del pairs
        self._special = {self.token(i): i for i in special}
        self._special_ids = frozenset(special)
        by_length = sorted(self._special, key=len, reverse=True)
        self._special_re = re.compile("|".join(map(re.escape, by_length))) if by_length else None
        if pre in PY_SPLITS:
            self._split = re.compile(PY_SPLITS[pre]).findall
        else:  # GPT-2's own pattern (ByteLevel's), after SmolLM2's digit split where named
            gpt2 = re.compile(_GPT2_PY).findall
            if pre == "smollm":
                self._split = lambda s: [p for part in re.split(r"(\d)", s) if part for p in gpt2(part)]
            else:
                self._split = gpt2
        self._fallback_builder = fallback
        self._fallback: Any = None

    # ------------------------------------------------------------ tables

    def get_vocab_size(self) -> int:
        return len(self._starts) - 1

    def token(self, i: int) -> str:
        return self._text[self._starts[i] : self._starts[i + 1]]

    def _tables(self) -> tuple[list[str], list[str]]:
        """The vocabulary and the merges as lists again (for the fallback)."""
        tokens = [self.token(i) for i in range(self.get_vocab_size())]
        mask = (1 << self._width) - 1
        order = sorted(range(len(self._keys)), key=lambda j: self._values[j])
        merges = [f"{tokens[self._keys[j] >> self._width]} {tokens[self._keys[j] & mask]}" for j in order]
        return tokens, merges

    # ------------------------------------------------------------ encode

    def _merge(self, ids: list[int]) -> list[int]:
        keys, values, width = self._keys, self._values, self._width
        n = len(keys)
        while len(ids) > 1:
            best, at, merged = -1, -1, -1
            for j in range(len(ids) - 1):
                key = (ids[j] << width) | ids[j + 1]
                k = bisect_left(keys, key)
                if k < n and keys[k] == key:
                    rank = values[k] >> width
                    if best < 0 or rank < best:
                        best, at, merged = rank, j, values[k] & ((1 << width) - 1)
            if at < 0:
                break
            ids[at : at + 2] = [merged]
        return ids

    def _encode_plain(self, text: str) -> list[int]:
        out: list[int] = []
        byte_ids = self._byte_ids
        for piece in self._split(text):
            ids = [byte_ids[b] for b in piece.encode("utf-8")]
            if -1 in ids:
                raise ValueError(f"tokenizer: a byte of {piece!r} has no token in this vocabulary")
            out += self._merge(ids)
        return out

    def encode(self, text: str, add_special_tokens: bool = True) -> Any:
        if not exact_in_python(text):
            if self._fallback is None:
                self._fallback = self._fallback_builder(*self._tables())
            return self._fallback.encode(text, add_special_tokens=add_special_tokens)
        ids: list[int] = []
        pos = 0
        for m in self._special_re.finditer(text) if self._special_re is not None else ():
            ids += self._encode_plain(text[pos : m.start()])
            ids.append(self._special[m.group()])
            pos = m.end()
        ids += self._encode_plain(text[pos:])
        return _Encoding(ids)

    # ------------------------------------------------------------ decode

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        out = bytearray()
        char_byte = self._char_byte
        vocab = self.get_vocab_size()
        for i in ids:
            if not 0 <= i < vocab or (skip_special_tokens and i in self._special_ids):
                continue  # an id past the vocabulary decodes to nothing, as in ``tokenizers``
            for c in self.token(i):
                b = char_byte.get(c)
                if b is None:
                    out += c.encode("utf-8")
                else:
                    out.append(b)
        return out.decode("utf-8", errors="replace")


class _Encoding:
    __slots__ = ("ids",)

    def __init__(self, ids: list[int]):
        self.ids = ids
