"""DataLoader: batches of a dataset in a seeded, reproducible and resumable order.

The order of epoch ``e`` is ``list(range(len(dataset)))`` shuffled by ``random.Random(f"boltgrad.data:{seed}:{e}")``
(or not shuffled), so it depends only on the seed and the epoch number: a training run restarted from a
checkpoint sees exactly the batches it would have seen. The loader's position is ``(epoch, batch)``::

    loader = DataLoader(dataset, batch_size=64, shuffle=True, seed=0)
    for x, y in loader:          # epoch 0; the next ``for`` runs epoch 1, and so on
        ...
        checkpoint["data"] = loader.state_dict()   # {"seed": 0, "epoch": 0, "batch": k}: k batches done

    loader.load_state_dict(checkpoint["data"])     # the next ``for`` continues epoch 0 at batch k

``epoch_order(e)`` is the order itself, ``batches(epoch, start)`` iterates any epoch from any batch, and
``set_epoch(e)`` picks the epoch the next ``for`` runs.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..tensor import Tensor
from ..tensor_reduce import stack


def default_collate(samples: Sequence[Any]) -> Any:
    """Stack a list of samples into a batch: tensors with ``stack``, numbers into a tensor, numpy arrays with
    ``numpy.stack``; tuples, lists and dicts field by field; anything else stays a list.

    Stacking tensors is lazy; when every sample is a view at a different offset of one big tensor, the stacked
    graph differs per batch and recompiles: give such datasets a ``get_batch`` (as ``TensorDataset`` has).
    """
    first = samples[0]
    if isinstance(first, Tensor):
        return stack(list(samples))
    if isinstance(first, bool | int | float):
        return Tensor(list(samples))
    if type(first).__module__ == "numpy":
        import numpy as np

        return Tensor(np.stack([np.asarray(s) for s in samples]))
    if isinstance(first, dict):
        return {k: default_collate([s[k] for s in samples]) for k in first}
    if isinstance(first, tuple | list):
        if any(len(s) != len(first) for s in samples):
            raise ValueError("default_collate: samples have different numbers of fields")
        fields = [default_collate([s[i] for s in samples]) for i in range(len(first))]
        return tuple(fields) if isinstance(first, tuple) else fields
    return list(samples)


class DataLoader:
    """Iterate over ``dataset`` in batches of ``batch_size``, as torch.utils.data.DataLoader.

    ``shuffle`` draws a new order each epoch from ``seed`` (see the module docstring); without a seed one is
    drawn from Python's ``random`` module (so ``random.seed`` makes it reproducible) or from ``generator``, a
    ``random.Random``. ``drop_last`` skips a final short batch. ``collate_fn`` turns a list of samples into a
    batch; without it, a dataset with ``get_batch(indices)`` makes whole batches itself, and
    ``default_collate`` stacks the others. Batches are made in the calling process (``num_workers`` and
    ``pin_memory`` are accepted and ignored).
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int | None = None,
        generator: random.Random | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
    ):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if seed is not None and generator is not None:
            raise ValueError("DataLoader: give a seed or a generator, not both")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.collate_fn = collate_fn
        self.seed = int(seed) if seed is not None else (generator or random).getrandbits(63)
        self.epoch = 0  # the epoch the next ``for`` runs
        self._start_batch = 0  # where that epoch starts (set by load_state_dict)
        self._position: tuple[int, int] | None = None  # (epoch, batches done) of the epoch in progress

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch_order(self, epoch: int) -> list[int]:
        """The sample indices of ``epoch`` in the order they are batched."""
        order = list(range(len(self.dataset)))
        if self.shuffle:
            random.Random(f"boltgrad.data:{self.seed}:{epoch}").shuffle(order)
        return order

    def batch_indices(self, epoch: int) -> list[list[int]]:
        order = self.epoch_order(epoch)
        return [order[i : i + self.batch_size] for i in range(0, len(self) * self.batch_size, self.batch_size)]

    def _make_batch(self, indices: list[int]) -> Any:
        if self.collate_fn is not None:
            return self.collate_fn([self.dataset[i] for i in indices])
        get_batch = getattr(self.dataset, "get_batch", None)
        if get_batch is not None:
            return get_batch(indices)
        return default_collate([self.dataset[i] for i in indices])

    def batches(self, epoch: int, start: int = 0) -> Iterator[Any]:
        """The batches of ``epoch`` from batch number ``start`` on (does not move the loader's position)."""
        for indices in self.batch_indices(epoch)[start:]:
            yield self._make_batch(indices)

    def __iter__(self) -> Iterator[Any]:
        epoch, start = self.epoch, self._start_batch
        self.epoch, self._start_batch = epoch + 1, 0
        groups = self.batch_indices(epoch)
        self._position = (epoch, start)
        for k in range(start, len(groups)):
            batch = self._make_batch(groups[k])
            self._position = (epoch, k + 1)
            yield batch

    def set_epoch(self, epoch: int) -> None:
        """Run ``epoch`` next (from its first batch)."""
        self.epoch, self._start_batch, self._position = int(epoch), 0, None

    def state_dict(self) -> dict[str, int]:
        """``{"seed", "epoch", "batch"}``: where the loader is, counted in batches already handed out."""
        if self._position is None:
            epoch, batch = self.epoch, self._start_batch
        else:
            epoch, batch = self._position
            if batch >= len(self):  # a finished epoch: the next one starts from scratch
                epoch, batch = epoch + 1, 0
        return {"seed": self.seed, "epoch": epoch, "batch": batch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue where ``state`` says: the next ``for`` runs its epoch from its batch on."""
        self.seed = int(state["seed"])
        self.epoch, self._start_batch, self._position = int(state["epoch"]), int(state["batch"]), None
