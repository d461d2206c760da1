"""Indexing beyond views: gathers, scatters, masks, sorting, triangular parts, repeats."""

from __future__ import annotations

from .ir.node import Node


class IndexMixin:
    __slots__ = ()
    node: Node
