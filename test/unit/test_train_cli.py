"""``boltgrad train``: a run killed mid-epoch resumes to the same weights, the JSON line, and its errors.

The runs use a small synthetic dataset (IDX files written here), so they take seconds, not minutes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import write_mnist

from boltgrad.cli import train as train_cli
from boltgrad.cli.main import main
from boltgrad.nn.state import safe_load

N_TRAIN, N_TEST, BATCH = 320, 64, 32  # 10 steps per epoch


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        images[np.arange(n), labels * 2, :] = 250  # a bright row that says the class
        write_mnist(folder, split, n=n, images=images, labels=labels)
    return str(folder)


def _args(data: str, checkpoint: str, *extra: str) -> list[str]:
    return ["train", "fashion-mnist", "--data", data, "--checkpoint", checkpoint, "--batch-size", str(BATCH),
            "--epochs", "2", "--checkpoint-every", "3", "--lr", "0.01", *extra]  # fmt: skip


def _weights(path: str) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in safe_load(path).items()}


class _Killed(BaseException):
    """What a kill looks like to the run: it stops between two steps and writes nothing more."""


@pytest.mark.parametrize("use_jit", [True, False], ids=["jit", "no-jit"])
def test_killed_mid_epoch_and_resumed_ends_with_the_same_weights(data, tmp_path, monkeypatch, capsys, use_jit):
    flags = () if use_jit else ("--no-jit",)
    whole = str(tmp_path / "whole.safetensors")
    assert main(_args(data, whole, "--json", *flags)) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["epochs"] == 2 and 0.0 <= result["test_accuracy"] <= 1.0 and result["seconds_per_epoch"] > 0

    broken = str(tmp_path / "broken.safetensors")
    real_make_batch = train_cli.make_batch
    batches = {"n": 0}

    def dying_make_batch(*a, **kw):
        batches["n"] += 1
        if batches["n"] == 15:  # epoch 2, step 5: the last checkpoint was written after step 3
            raise _Killed
        return real_make_batch(*a, **kw)

    monkeypatch.setattr(train_cli, "make_batch", dying_make_batch)
    with pytest.raises(_Killed):
        main(_args(data, broken, *flags))
    monkeypatch.setattr(train_cli, "make_batch", real_make_batch)
    meta = json.loads(safe_load(broken, with_metadata=True)[1]["boltgrad_train"])
    assert (meta["epoch"], meta["step"]) == (1, 3)  # mid-epoch, not at a boundary

    assert main(_args(data, broken, "--resume", *flags)) == 0
    assert "resuming at epoch 2, step 3" in capsys.readouterr().err
    want, got = _weights(whole), _weights(broken)
    assert want.keys() == got.keys()
    for key in want:
        assert np.array_equal(want[key], got[key]), key


def test_the_model_learns_the_synthetic_task(data, tmp_path, capsys):
    assert main(_args(data, str(tmp_path / "c.safetensors"), "--json", "--epochs", "3")) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["test_accuracy"] > 0.5  # chance is 0.1


def test_resume_from_another_models_checkpoint_says_so(data, tmp_path, capsys):
    ckpt = str(tmp_path / "mlp.safetensors")
    assert main(_args(data, ckpt, "--epochs", "1")) == 0
    assert main(_args(data, ckpt, "--resume", "--model", "cnn")) == 2
    err = capsys.readouterr().err
    assert "cnn" in err and "mlp" in err


def test_resume_without_a_checkpoint_file_names_the_fix(data, tmp_path, capsys):
    assert main(_args(data, str(tmp_path / "missing.safetensors"), "--resume")) == 2
    assert "--resume needs an existing --checkpoint file" in capsys.readouterr().err


def test_truncated_dataset_is_a_clear_error(tmp_path):
    write_mnist(tmp_path, "train", n=4, images_data=bytes(4 * 28 * 28 - 5))
    write_mnist(tmp_path, "test", n=4)
    with pytest.raises(ValueError, match="train-images-idx3-ubyte"):
        main(_args(str(tmp_path), str(tmp_path / "c.safetensors")))
    assert not (tmp_path / "c.safetensors").exists()
