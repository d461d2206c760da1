"""Every layer against torch's with the same weights: outputs, input gradients and parameter gradients."""

import numpy as np
import pytest
import torch
from helpers import batch
from nn_oracle import check_module

from boltgrad import Tensor, nn


def ids(shape, high, seed=0):
    return np.random.default_rng(seed).integers(0, high, size=shape).astype(np.int64)


def test_linear_and_shape_layers():
    torch.manual_seed(0)
    with batch():
        check_module(torch.nn.Linear(3, 4), nn.Linear(3, 4), (2, 3))
        check_module(torch.nn.Linear(3, 4, bias=False), nn.Linear(3, 4, bias=False), (2, 5, 3))
        check_module(torch.nn.Identity(7), nn.Identity(7), (2, 3))
        check_module(torch.nn.Flatten(), nn.Flatten(), (2, 3, 2))
        check_module(torch.nn.Unflatten(1, (2, 3)), nn.Unflatten(1, (2, 3)), (2, 6))
        seq = [torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)]
        ours = [nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2)]
        check_module(torch.nn.Sequential(*seq), nn.Sequential(*ours), (3, 4))


@pytest.mark.parametrize(
    "make",
    [
        lambda m: m.Conv1d(2, 4, 3, stride=2, padding=1),
        lambda m: m.Conv1d(4, 4, 3, padding="same", groups=2, bias=False),
        lambda m: m.Conv2d(2, 3, 3, stride=2, padding=1),
        lambda m: m.Conv2d(4, 2, (3, 2), dilation=(1, 2), groups=2, padding=1),
        lambda m: m.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"),
        lambda m: m.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1),
    ],
    ids=["conv1d", "conv1d_same_groups", "conv2d", "conv2d_dilated_groups", "conv2d_reflect", "conv_transpose2d"],
)
def test_convolutions(make):
    torch.manual_seed(0)
    theirs = make(torch.nn)
    shape = (2, theirs.in_channels, 7) if isinstance(theirs, torch.nn.Conv1d) else (2, theirs.in_channels, 6, 5)
    # the input gradient through a reflect pad takes seconds to compile: only the weights' gradients here
    check_module(theirs, make(nn), shape, input_grad=theirs.padding_mode == "zeros")


def test_pooling():
    with batch():
        check_module(torch.nn.MaxPool2d(3, 2, padding=1), nn.MaxPool2d(3, 2, padding=1), (1, 2, 6, 5))
        check_module(torch.nn.AvgPool2d(3, 2, 1, count_include_pad=False),
                     nn.AvgPool2d(3, 2, 1, count_include_pad=False), (1, 2, 5, 5))  # fmt: skip
        check_module(torch.nn.AdaptiveAvgPool2d((2, 3)), nn.AdaptiveAvgPool2d((2, 3)), (2, 2, 5, 7))


def test_normalization_layers():
    torch.manual_seed(0)
    pairs = [
        (torch.nn.LayerNorm(6), nn.LayerNorm(6), (2, 3, 6)),
        (torch.nn.LayerNorm((3, 4), elementwise_affine=False), nn.LayerNorm((3, 4), elementwise_affine=False),
         (2, 3, 4)),
        (torch.nn.LayerNorm(5, bias=False), nn.LayerNorm(5, bias=False), (4, 5)),
        (torch.nn.RMSNorm(6), nn.RMSNorm(6), (2, 3, 6)),
        (torch.nn.RMSNorm(6, eps=1e-3), nn.RMSNorm(6, eps=1e-3), (3, 6)),
        (torch.nn.GroupNorm(2, 4), nn.GroupNorm(2, 4), (2, 4, 3, 2)),
        (torch.nn.BatchNorm1d(3), nn.BatchNorm1d(3), (4, 3)),
        (torch.nn.BatchNorm1d(3, affine=False), nn.BatchNorm1d(3, affine=False), (4, 3, 5)),
        (torch.nn.BatchNorm2d(3), nn.BatchNorm2d(3), (2, 3, 4, 3)),
    ]  # fmt: skip
    with batch():
        for theirs, ours, shape in pairs:
            with torch.no_grad():  # non-trivial affine parameters
                for p in theirs.parameters():
                    p.add_(torch.rand(p.shape) * 0.5)
            check_module(theirs, ours, shape, atol=1e-4, rtol=1e-4)


def test_batchnorm_eval_uses_running_statistics():
    torch.manual_seed(0)
    theirs = torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        theirs.running_mean.copy_(torch.randn(3))
        theirs.running_var.copy_(torch.rand(3) + 0.5)
        theirs.weight.copy_(torch.randn(3))
    ours = nn.BatchNorm2d(3)
    theirs.eval()
    ours.eval()
    check_module(theirs, ours, (2, 3, 2, 2))


def test_batchnorm_running_statistics_come_from_the_weights_before_each_step():
    """The running statistics are updated in the forward pass, from the weights of that step; the optimizer's
    update, realized before they are read, must not change them (they are computed with it, from the old weights)."""
    from boltgrad import optim
    from boltgrad.nn import functional as F

    torch.manual_seed(0)
    theirs = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                 torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 5))  # fmt: skip
    ours = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)
    )
    for p, tp in zip(ours.parameters(), theirs.parameters()):
        p.assign(Tensor(tp.detach().numpy())).realize()
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 1, 6, 6)).astype(np.float32), rng.integers(0, 5, 8)
    opt, topt = optim.SGD(ours.parameters(), lr=0.5), torch.optim.SGD(theirs.parameters(), lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(ours(Tensor(x)), Tensor(y)).backward()
        opt.step()
        topt.zero_grad()
        torch.nn.functional.cross_entropy(theirs(torch.tensor(x)), torch.tensor(y)).backward()
        topt.step()
    bn, tbn = ours[1], theirs[1]
    np.testing.assert_allclose(bn.running_mean.numpy(), tbn.running_mean.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bn.running_var.numpy(), tbn.running_var.numpy(), rtol=1e-4, atol=1e-6)


def test_embedding():
    torch.manual_seed(0)
    with batch():
        check_module(torch.nn.Embedding(10, 4), nn.Embedding(10, 4), ids((2, 3), 10))
        # the padding row gets no gradient
        check_module(torch.nn.Embedding(6, 3, padding_idx=1), nn.Embedding(6, 3, padding_idx=1),
                     np.array([[1, 2, 1], [0, 5, 1]]))  # fmt: skip


def test_embedding_padding_row_starts_at_zero():
    emb = nn.Embedding(5, 3, padding_idx=-1)
    assert emb.padding_idx == 4
    w = emb.weight.numpy()
    assert np.all(w[4] == 0) and np.all(w[:4] != 0)


def test_activations():
    # every activation on the same input: one check, whose input gradient sums all of theirs
    def build(lib):
        return lib.ModuleList([
            lib.ReLU(), lib.ReLU6(), lib.LeakyReLU(), lib.LeakyReLU(0.2), lib.ELU(), lib.ELU(0.5), lib.GELU(),
            lib.GELU("tanh"), lib.SiLU(), lib.Mish(), lib.Hardswish(), lib.Sigmoid(), lib.Tanh(), lib.Softplus(),
            lib.Softplus(2.0, 1.0), lib.Softmax(dim=1), lib.LogSoftmax(dim=-1),
        ])  # fmt: skip

    check_module(build(torch.nn), build(nn), (2, 3, 4), forward=lambda m, x: [f(x) for f in m], atol=1e-5, rtol=1e-4)


def test_losses():
    rng = np.random.default_rng(3)
    logits, classes = (4, 5), ids((4,), 5)
    probs = rng.uniform(0.05, 0.95, (3, 4)).astype(np.float32)
    targets01 = (rng.random((3, 4)) < 0.5).astype(np.float32)
    weight = rng.uniform(0.5, 2, 5).astype(np.float32)
    with batch():
        check_module(torch.nn.CrossEntropyLoss(), nn.CrossEntropyLoss(), logits, classes)
        check_module(torch.nn.CrossEntropyLoss(torch.from_numpy(weight), label_smoothing=0.1),
                     nn.CrossEntropyLoss(Tensor(weight), label_smoothing=0.1),
                     logits, classes)  # fmt: skip
        check_module(torch.nn.NLLLoss(reduction="sum"), nn.NLLLoss(reduction="sum"), logits, classes)
        check_module(torch.nn.MSELoss(), nn.MSELoss(), (3, 4), (3, 4))
        check_module(torch.nn.L1Loss(reduction="none"), nn.L1Loss(reduction="none"), (3, 4), (3, 4))
        check_module(torch.nn.SmoothL1Loss(beta=0.5), nn.SmoothL1Loss(beta=0.5), (3, 4), (3, 4))
        check_module(torch.nn.BCELoss(), nn.BCELoss(), probs, targets01)
        check_module(torch.nn.BCEWithLogitsLoss(pos_weight=torch.full((4,), 2.0)),
                     nn.BCEWithLogitsLoss(pos_weight=Tensor.full((4,), 2.0)),
                     (3, 4), targets01)  # fmt: skip
