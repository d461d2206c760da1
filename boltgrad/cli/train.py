"""``boltgrad train fashion-mnist``: train an MLP or a small CNN on Fashion-MNIST, end to end.

    boltgrad train fashion-mnist --model cnn --epochs 3 --checkpoint run.safetensors
    boltgrad train fashion-mnist --resume --checkpoint run.safetensors     # continue a killed run

Each epoch shows a progress bar with the loss and throughput, then the test accuracy. The checkpoint (model,
optimizer state, and where in which epoch's data order the run is) is written atomically after every epoch
and every ``--checkpoint-every`` steps, so a killed run resumes exactly: the data order of an epoch is a
function of the seed and the epoch, and every kernel is deterministic, so a resumed run ends with the same
weights as one that was never interrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boltgrad
from boltgrad import Tensor

if TYPE_CHECKING:
    from boltgrad import nn, optim

MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST pixel statistics, for normalising inputs


def build_model(kind: str) -> nn.Module:
    from boltgrad import nn

    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    if kind == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (N, 16, 14, 14)
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (N, 32, 7, 7)
            nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
        )  # fmt: skip
    raise ValueError(f"unknown model {kind!r}; choose mlp or cnn")


@dataclass
class Split:
    images: bytes  # N * 784 uint8
    labels: bytes  # N * 8 int64 (little endian)
    count: int


def load_split(root: str | None, split: str) -> Split:
    from boltgrad.data.mnist import load_fashion_mnist

    images, labels = load_fashion_mnist(root, split=split)
    n = images.shape[0]
    return Split(bytes(images.contiguous()._raw()), bytes(labels.cast(boltgrad.int64).contiguous()._raw()), n)


def make_batch(data: Split, indices: list[int], device: str) -> tuple[Tensor, Tensor]:
    pixels = b"".join(data.images[i * 784 : (i + 1) * 784] for i in indices)
    labels = b"".join(data.labels[i * 8 : (i + 1) * 8] for i in indices)
    x = Tensor(pixels, dtype=boltgrad.uint8, device=device).reshape(len(indices), 1, 28, 28)
    y = Tensor(labels, dtype=boltgrad.int64, device=device)
    return ((x.float() * (1 / 255) - MEAN) * (1 / STD)).contiguous().realize(), y.realize()


def epoch_order(seed: int, epoch: int, n: int) -> list[int]:
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


# ---- checkpoints ----


def save_checkpoint(path: str, model: nn.Module, opt: optim.Optimizer, meta: dict[str, Any]) -> None:
    from boltgrad.nn.state import safe_save

    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_state = opt.state_dict()
    for index, state in opt_state["state"].items():
        for key, value in state.items():
            if isinstance(value, Tensor):
                tensors[f"optim.{index}.{key}"] = value
            else:
                meta.setdefault("optim_scalars", {}).setdefault(str(index), {})[key] = value
    meta["param_groups"] = [{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]}
                            for g in opt_state["param_groups"]]  # fmt: skip
    safe_save(tensors, path, metadata={"boltgrad_train": json.dumps(meta)})


def load_checkpoint(path: str, model_kind: str, model: nn.Module, opt: optim.Optimizer, device: str) -> dict[str, Any]:
    """Load a checkpoint of ``train`` into the model and optimizer; a ValueError says why one doesn't fit."""
    from boltgrad.nn.state import safe_load

    tensors, metadata = safe_load(path, device=device, with_metadata=True)
    if "boltgrad_train" not in metadata:
        raise ValueError(f"{path} is a safetensors file, but not a checkpoint written by 'boltgrad train'")
    meta = json.loads(metadata["boltgrad_train"])
    if meta["model"] != model_kind:
        raise ValueError(f"{path} holds a {meta['model']} model, not {model_kind}; pass --model {meta['model']}")
    model.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, scalars in meta.get("optim_scalars", {}).items():
        state.setdefault(int(index), {}).update(scalars)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta


# ---- the run ----


def evaluate(model: nn.Module, data: Split, device: str, batch_size: int = 1000) -> float:
    correct = 0
    with boltgrad.no_grad():
        for start in range(0, data.count, batch_size):
            x, y = make_batch(data, list(range(start, min(start + batch_size, data.count))), device)
            correct += int((model(x).argmax(1) == y).sum().item())
    return correct / data.count


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except boltgrad.DeviceLost as e:
        where = (
            f"; the last checkpoint is {args.checkpoint}: add --resume once the device is back"
            if args.checkpoint
            else ""
        )
        print(f"train: {e}{where}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    import boltgrad.nn.functional as F
    from boltgrad import optim

    if args.dataset != "fashion-mnist":
        print(f"train: unknown dataset {args.dataset!r}; the one built in is fashion-mnist", file=sys.stderr)
        return 2
    boltgrad.manual_seed(args.seed)
    device = boltgrad.Device.canonicalize(args.device)
    train, test = load_split(args.data, "train"), load_split(args.data, "test")
    model = build_model(args.model).to(device)
    opt = optim.Adam(model.parameters(), lr=args.lr)
    start_epoch, start_step = 0, 0
    if args.resume:
        if not args.checkpoint or not os.path.exists(args.checkpoint):
            print(f"train: --resume needs an existing --checkpoint file (got {args.checkpoint!r})", file=sys.stderr)
            return 2
        try:
            meta = load_checkpoint(args.checkpoint, args.model, model, opt, device)
        except (ValueError, RuntimeError) as e:
            print(f"train: cannot resume from {args.checkpoint}: {e}", file=sys.stderr)
            return 2
        start_epoch, start_step = meta["epoch"], meta["step"]
        boltgrad.tensor_create._RngState.counter = meta["rng_counter"]
        print(f"resuming at epoch {start_epoch + 1}, step {start_step}", file=sys.stderr)

    def train_step(x: Tensor, y: Tensor) -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()  # the loss is computed with the update, from the weights before it (see autograd.backward)
        return loss

    step_fn = boltgrad.jit(train_step) if args.jit else train_step
    steps_per_epoch = train.count // args.batch_size  # the last partial batch is dropped
    history: list[dict[str, float]] = []
    epoch_seconds: list[float] = []
    bar_cls = _progress_bar()
    for epoch in range(start_epoch, args.epochs):
        order = epoch_order(args.seed, epoch, train.count)
        first = start_step if epoch == start_epoch else 0
        t0 = time.perf_counter()
        bar = bar_cls(total=steps_per_epoch, initial=first, desc=f"epoch {epoch + 1}/{args.epochs}", file=sys.stderr)
        losses: list[float] = []
        for step in range(first, steps_per_epoch):
            idx = order[step * args.batch_size : (step + 1) * args.batch_size]
            loss = step_fn(*make_batch(train, idx, device)).item()
            if not math.isfinite(loss):
                print(f"train: the loss became {loss} at epoch {epoch + 1}, step {step}", file=sys.stderr)
                return 1
            losses.append(loss)
            elapsed = max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{(step + 1 - first) * args.batch_size / elapsed:.0f}")
            bar.update(1)
            if args.checkpoint and args.checkpoint_every and (step + 1) % args.checkpoint_every == 0:
                save_checkpoint(args.checkpoint, model, opt, _meta(args, epoch, step + 1))
        bar.close()
        epoch_seconds.append(time.perf_counter() - t0)
        accuracy = evaluate(model, test, device)
        mean_loss = sum(losses) / max(len(losses), 1)
        history.append({"epoch": epoch + 1, "loss": mean_loss, "test_accuracy": accuracy})
        print(f"epoch {epoch + 1}: loss {mean_loss:.4f}, test accuracy {accuracy:.4f}, "
              f"{epoch_seconds[-1]:.1f} s", file=sys.stderr)  # fmt: skip
        if args.checkpoint:
            save_checkpoint(args.checkpoint, model, opt, _meta(args, epoch + 1, 0))
    if args.plot:
        _plot(history, args.plot)
    final = history[-1]["test_accuracy"] if history else evaluate(model, test, device)
    if args.json:
        per_epoch = sum(epoch_seconds) / len(epoch_seconds) if epoch_seconds else 0.0
        print(json.dumps({"test_accuracy": final, "epochs": args.epochs, "seconds_per_epoch": per_epoch,
                          "model": args.model, "history": history}))  # fmt: skip
    return 0


def _meta(args: argparse.Namespace, epoch: int, step: int) -> dict[str, Any]:
    counter = boltgrad.tensor_create._RngState.counter
    return {"model": args.model, "epoch": epoch, "step": step, "seed": args.seed, "rng_counter": counter}


def _progress_bar() -> Any:
    try:
        from tqdm import tqdm

        return tqdm
    except ImportError:
        return _QuietBar


class _QuietBar:
    """Stands in for tqdm when it is not installed: prints nothing per step."""

    def __init__(self, **kwargs: Any):
        pass

    def set_postfix(self, **kwargs: Any) -> None:
        pass

    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _plot(history: list[dict[str, float]], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("train: --plot needs matplotlib (pip install matplotlib); no plot written", file=sys.stderr)
        return
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, [h["loss"] for h in history], marker="o")
    left.set_xlabel("epoch")
    left.set_ylabel("training loss")
    right.plot(epochs, [h["test_accuracy"] for h in history], marker="o", color="tab:green")
    right.set_xlabel("epoch")
    right.set_ylabel("test accuracy")
    fig.tight_layout()
    fig.savefig(path)
    print(f"wrote {path}", file=sys.stderr)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train a model on a dataset (fashion-mnist)")
    p.add_argument("dataset", help="fashion-mnist")
    p.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    p.add_argument("--epochs", type=int, default=None, help="default: 2 for the MLP, 3 for the CNN")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=None, help="Adam's learning rate; default 1e-3 (MLP), 2e-3 (CNN)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="CPU (default), PYTHON, ...")
    p.add_argument("--data", default=None, help="folder with the IDX files (default: Debian's dataset package)")
    p.add_argument("--checkpoint", default=None, help="safetensors file written after each epoch")
    p.add_argument("--checkpoint-every", type=int, default=200, help="also write it every N steps (0: never)")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--plot", default=None, help="draw loss and accuracy curves to this PNG (needs matplotlib)")
    p.add_argument("--json", action="store_true", help="print one JSON object with the results as the last line")
    p.add_argument("--no-jit", dest="jit", action="store_false", help="run every step through the scheduler")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    if args.lr is None:
        args.lr = 1e-3 if args.model == "mlp" else 2e-3
    if args.epochs is None:
        args.epochs = 2 if args.model == "mlp" else 3
    return run(args)
