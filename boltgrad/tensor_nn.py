"""Activations, scans, norms of vectors, einsum and random fills, written with the primitives."""

from __future__ import annotations

from .ir.node import Node


class NNMixin:
    __slots__ = ()
    node: Node
