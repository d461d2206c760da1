"""torch.nn.functional's names and signatures, written with Tensor operations."""

from __future__ import annotations
