"""Datasets: anything with ``__len__`` and ``__getitem__``, as torch.utils.data.Dataset.

``TensorDataset`` can also hand out a whole batch at once (``get_batch``): it gathers the rows on the host into
one new buffer, so every batch is a fresh tensor of the same shape and the model's kernels compile once. A lazy
slice of the big tensor would be a different graph (a different offset) each batch, and compile each time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..tensor import Tensor


class Dataset:
    """A map-style dataset: ``dataset[i]`` for ``0 <= i < len(dataset)``. Subclasses implement both methods."""

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError


class TensorDataset(Dataset):
    """Samples are rows of tensors that share their first dimension: ``dataset[i] == (t[i] for t in tensors)``.

    >>> from boltgrad import Tensor
    >>> ds = TensorDataset(Tensor([[1, 2], [3, 4], [5, 6]]), Tensor([0, 1, 0]))
    >>> x, y = ds.get_batch([2, 0])
    >>> x.tolist(), y.tolist()
    ([[5, 6], [1, 2]], [0, 0])
    """

    def __init__(self, *tensors: Tensor):
        if not tensors:
            raise ValueError("TensorDataset: needs at least one tensor")
        for t in tensors:
            if not isinstance(t, Tensor):
                raise TypeError(f"TensorDataset: expected Tensors, got {type(t).__name__}")
            if t.ndim == 0 or t.shape[0] != tensors[0].shape[0]:
                raise ValueError(f"TensorDataset: all tensors need the same first dimension, got "
                                 f"{[t.shape for t in tensors]}")  # fmt: skip
        self.tensors = tuple(tensors)
        self._host: list[bytes | None] = [None] * len(tensors)  # each tensor's bytes, read once for batching

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        return tuple(t[index] for t in self.tensors)

    def get_batch(self, indices: Sequence[int]) -> tuple[Tensor, ...]:
        """The rows at ``indices`` of every tensor, stacked: tensors of shape ``(len(indices), *row_shape)``."""
        n = len(self)
        for i in indices:
            if not -n <= i < n:
                raise IndexError(f"TensorDataset: index {i} is out of range for {n} samples")
        out = []
        for k, t in enumerate(self.tensors):
            host = self._host[k]
            if host is None:
                host = self._host[k] = bytes(t._raw())  # one read of the whole tensor, then host gathers
            row = len(host) // n if n else 0
            picked = b"".join(host[(i % n) * row : (i % n + 1) * row] for i in indices)
            out.append(Tensor(picked, dtype=t.dtype, device=t.device).reshape((len(indices), *t.shape[1:])))
        return tuple(out)
