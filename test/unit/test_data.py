"""Datasets, the seeded resumable DataLoader, and the IDX (MNIST) reader on synthetic and real files."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
from helpers import idx_file, write_mnist

from boltgrad import Tensor, int64, uint8
from boltgrad.data import DataLoader, Dataset, TensorDataset, default_collate
from boltgrad.data.mnist import DEBIAN_FASHION_MNIST, load_fashion_mnist, load_mnist


def _dataset(n: int = 10) -> TensorDataset:
    x = Tensor(np.arange(n * 2, dtype=np.float32).reshape(n, 2))
    y = Tensor(np.arange(n, dtype=np.int64))
    return TensorDataset(x, y)


def test_tensor_dataset_rows_and_batches():
    ds = _dataset(5)
    assert len(ds) == 5
    x, y = ds[3]
    assert x.tolist() == [6.0, 7.0] and y.item() == 3
    bx, by = ds.get_batch([4, 0, 4])
    assert bx.shape == (3, 2) and bx.tolist() == [[8.0, 9.0], [0.0, 1.0], [8.0, 9.0]] and by.tolist() == [4, 0, 4]
    with pytest.raises(ValueError, match="same first dimension"):
        TensorDataset(Tensor([1, 2, 3]), Tensor([1, 2]))
    with pytest.raises(IndexError):
        ds.get_batch([5])


def test_loader_in_order_with_and_without_drop_last():
    ds = _dataset(10)
    loader = DataLoader(ds, batch_size=4)
    assert len(loader) == 3
    assert [y.tolist() for _, y in loader] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    loader = DataLoader(ds, batch_size=4, drop_last=True)
    assert len(loader) == 2 and [y.tolist() for _, y in loader] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(ds, batch_size=0)


def test_shuffle_is_seeded_per_epoch_and_reproducible():
    ds = _dataset(10)
    a = DataLoader(ds, batch_size=3, shuffle=True, seed=7)
    b = DataLoader(ds, batch_size=3, shuffle=True, seed=7)
    epoch0 = [y.tolist() for _, y in a]
    epoch1 = [y.tolist() for _, y in a]
    assert epoch0 == [y.tolist() for _, y in b]
    assert sorted(v for batch in epoch0 for v in batch) == list(range(10))
    assert epoch0 != epoch1  # a new order each epoch
    assert [v for batch in epoch1 for v in batch] == a.epoch_order(1)
    expected = list(range(10))
    random.Random("boltgrad.data:7:0").shuffle(expected)
    assert a.epoch_order(0) == expected  # the documented recipe, so other tools can rebuild an order
    assert DataLoader(ds, shuffle=True, seed=8).epoch_order(0) != a.epoch_order(0)
    g1, g2 = (
        DataLoader(ds, shuffle=True, generator=random.Random(3)),
        DataLoader(ds, shuffle=True, generator=random.Random(3)),
    )
    assert g1.epoch_order(0) == g2.epoch_order(0)


def test_resuming_mid_epoch_gives_the_same_batches():
    ds = _dataset(11)
    reference = DataLoader(ds, batch_size=2, shuffle=True, seed=1)
    full = [y.tolist() for _, y in reference] + [y.tolist() for _, y in reference]  # epochs 0 and 1
    first = DataLoader(ds, batch_size=2, shuffle=True, seed=1)
    seen = [y.tolist() for _, y in first]  # epoch 0
    for k, (_, y) in enumerate(first):  # epoch 1, interrupted after 3 batches
        seen.append(y.tolist())
        if k == 2:
            break
    state = first.state_dict()
    assert state == {"seed": 1, "epoch": 1, "batch": 3}
    resumed = DataLoader(ds, batch_size=2, shuffle=True, seed=99)
    resumed.load_state_dict(state)
    seen += [y.tolist() for _, y in resumed]
    assert seen == full
    assert resumed.state_dict() == {"seed": 1, "epoch": 2, "batch": 0}
    assert [y.tolist() for _, y in reference.batches(1, start=5)] == full[6 + 5 :]


class _Pairs(Dataset):
    def __len__(self) -> int:
        return 5

    def __getitem__(self, i: int):
        return float(i) / 2, i, {"even": i % 2 == 0, "sq": np.array([i, i * i], dtype=np.int32)}


def test_default_collate_and_a_custom_collate_fn():
    halves, ints, info = next(iter(DataLoader(_Pairs(), batch_size=3)))
    assert halves.tolist() == [0.0, 0.5, 1.0] and ints.dtype == int64 and ints.tolist() == [0, 1, 2]
    assert info["even"].tolist() == [True, False, True] and info["sq"].tolist() == [[0, 0], [1, 1], [2, 4]]
    stacked = default_collate([Tensor([1.0, 2.0]), Tensor([3.0, 4.0])])
    assert stacked.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    sizes = [len(b) for b in DataLoader(_Pairs(), batch_size=2, collate_fn=lambda samples: samples)]
    assert sizes == [2, 2, 1]


# ---- IDX files


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_load_mnist_from_synthetic_idx_files(tmp_path, gz):
    want_images, want_labels = write_mnist(tmp_path, "test", n=6, gz=gz)
    images, labels = load_mnist(root=tmp_path, split="test")
    assert images.shape == (6, 28, 28) and images.dtype == uint8 and labels.dtype == int64
    np.testing.assert_array_equal(images.numpy(), want_images)
    assert labels.tolist() == want_labels.tolist()
    floats, _ = load_fashion_mnist(root=tmp_path, split="test", normalize=True)
    np.testing.assert_allclose(floats.numpy(), want_images / 255.0, rtol=1e-6)
    ds = TensorDataset(images, labels)
    assert [y.tolist() for _, y in DataLoader(ds, batch_size=4)] == [[0, 1, 2, 3], [4, 5]]


def test_idx_errors_name_the_file_and_the_problem(tmp_path):
    write_mnist(tmp_path, "train", n=3, images_data=bytes(3 * 28 * 28 - 10))
    path = os.path.join(tmp_path, "train-images-idx3-ubyte")
    with pytest.raises(ValueError, match=f"{path}: truncated: expected 2368 bytes.*found 2358"):
        load_mnist(root=tmp_path)
    with open(os.path.join(tmp_path, "train-labels-idx1-ubyte"), "wb") as f:
        f.write(idx_file(0x803, (3,), bytes(3)))
    with open(path, "wb") as f:
        f.write(idx_file(0x803, (3, 28, 28), bytes(3 * 28 * 28)))
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte: magic number 0x00000803, expected 0x00000801"):
        load_mnist(root=tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_mnist(root=tmp_path, split="validation")


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(root=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"t10k-images-idx3-ubyte\[\.gz\] was not found.*pass it as root="):
        load_mnist(root=tmp_path, split="test")


@pytest.mark.skipif(
    not os.path.isdir(DEBIAN_FASHION_MNIST),
    reason=f"Fashion-MNIST is not installed in {DEBIAN_FASHION_MNIST} (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist_from_debian():
    images, labels = load_fashion_mnist(split="test")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    counts = np.bincount(labels.numpy(), minlength=10)
    assert counts.tolist() == [1000] * 10  # the test split is balanced
    first = images[0].numpy()
    assert first.dtype == np.uint8 and 0 < first.mean() < 255
