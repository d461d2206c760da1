"""Movement, indexing, concatenation, matmul and conversions out of boltgrad, compared with torch."""

# ruff: noqa: B023
# (check() calls each lambda at once, inside its loop: late binding of loop variables cannot bite)

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import batch, check, lib, on_devices

import boltgrad
from boltgrad import Tensor

ARANGE_234 = np.arange(24, dtype=np.float32).reshape(2, 3, 4)  # distinct values: a wrong index shows


@on_devices
def test_reshape_and_view(device):
    with batch():
        for shape in [(24,), (4, 6), (6, -1), (-1, 2, 2), (2, 3, 4), (1, 24, 1), (3, 8)]:
            check(lambda x: x.reshape(shape), ARANGE_234, device=device)
            check(lambda x: x.view(*shape), ARANGE_234, device=device)
        check(lambda x: x.reshape(()), np.array([5.0], np.float32), device=device)
        check(lambda x: x.reshape(-1), (), device=device)
        check(lambda x: x.reshape(0, 5), (0, 1), device=device)
        # reshapes of non-contiguous views
        check(lambda x: x.T.reshape(-1), (3, 4), device=device)
        check(lambda x: x.permute(2, 0, 1).reshape(4, 6), ARANGE_234, device=device)
        check(lambda x: x[:, 1:].reshape(2, 2, 4), ARANGE_234, device=device)
        check(lambda x: x.expand(3, 4).reshape(2, 6), (1, 4), device=device)
        check(lambda x: x.reshape(6, 4).T.reshape(3, 8).sum(1), ARANGE_234, device=device)


@on_devices
def test_permute_transpose(device):
    with batch():
        for order in [(0, 1, 2), (2, 1, 0), (1, 2, 0), (-1, 0, 1)]:
            check(lambda x: x.permute(order), ARANGE_234, device=device)
            check(lambda x: x.permute(*order) + 1, ARANGE_234, device=device)
        check(lambda x: x.transpose(0, 2), ARANGE_234, device=device)
        check(lambda x: x.transpose(-1, 1), ARANGE_234, device=device)
        check(lambda x: x.transpose(1, 1), ARANGE_234, device=device)
        check(lambda x: x.T, (3, 5), device=device)
        check(lambda x: x.T, (4,), device=device, torch_fn=lambda x: x)  # torch deprecates .T below 2-d
        check(lambda x: x.T.T, (3, 5), device=device)
        check(lambda x: x.mT, ARANGE_234, device=device)
        check(lambda x: x.permute(1, 0), (0, 3), device=device)
        check(lambda x: x.t(), (3, 5), device=device)
        check(lambda x: x.t(), (4,), device=device)


@on_devices
def test_expand(device):
    with batch():
        check(lambda x: x.expand(3, 4), (1, 4), device=device)
        check(lambda x: x.expand(2, 3, 4), (3, 1), device=device)
        check(lambda x: x.expand(-1, 5), (3, 1), device=device)
        check(lambda x: x.expand(2, -1, -1), (3, 4), device=device)
        check(lambda x: x.expand(()), (), device=device)
        check(lambda x: x.expand(4, 2), (), device=device)
        check(lambda x: x.expand(0, 4), (1, 4), device=device)
        check(lambda x, y: x.expand_as(y), (1, 3), (2, 3), device=device)
        check(lambda x: x.T.expand(2, 4, 3) * 2, (3, 4), device=device)
    with pytest.raises(ValueError):
        Tensor(np.zeros((2, 3), np.float32)).expand(4, 3)


@on_devices
def test_squeeze_unsqueeze_flatten(device):
    with batch():
        for dim in (None, 0, 2, -1, (0, 2), 1):
            check(lambda x: x.squeeze() if dim is None else x.squeeze(dim), (1, 3, 1), device=device)
        check(lambda x: x.squeeze(), (), device=device)
        check(lambda x: x.squeeze(0), (), device=device)
        for dim in (0, 1, 2, -1, -3):
            check(lambda x: x.unsqueeze(dim), (2, 3), device=device)
        check(lambda x: x.unsqueeze(0), (), device=device)
        check(lambda x: x.unsqueeze(-1), (), device=device)
        for args in [(), (1,), (0, 1), (1, 2), (-2, -1), (0, -1)]:
            check(lambda x: x.flatten(*args), ARANGE_234, device=device)
        check(lambda x: x.flatten(), (), device=device)
        check(lambda x: x.T.flatten(), (3, 4), device=device)
        check(lambda x: x.unflatten(1, (3, 1)), (2, 3), device=device)


@on_devices
def test_flip(device):
    with batch():
        for dims in [(0,), (1,), (-1,), (0, 2), (0, 1, 2), ()]:
            check(lambda x: x.flip(dims), ARANGE_234, device=device)
        check(lambda x: x.flip(0, 1), ARANGE_234, device=device)
        check(lambda x: x.flip(0), (1, 3), device=device)
        check(lambda x: x.flip(0), (0, 3), device=device)
        check(lambda x: x.T.flip(1), (3, 4), device=device)
        check(lambda x: x.flip(0).sum(0), (5, 3), device=device)


@on_devices
def test_pad_constant(device):
    with batch():
        for pad in [(1, 2), (0, 0, 1, 1), (2, 0, 0, 3), (1, 1, 1, 1, 1, 1), (-1, 2), (-1, -1, 1, 0), (0, -3)]:
            check(lambda x: x.pad(pad), ARANGE_234, device=device, torch_fn=lambda x: F.pad(x, pad))
            check(
                lambda x: x.pad(pad, value=-2.5),
                ARANGE_234,
                device=device,
                torch_fn=lambda x: F.pad(x, pad, value=-2.5),
            )
        # numpy-style (before, after) pairs from dim 0
        check(
            lambda x: x.pad(((1, 0), (0, 2), (1, 1))),
            ARANGE_234,
            device=device,
            torch_fn=lambda x: F.pad(x, (1, 1, 0, 2, 1, 0)),
        )
        check(
            lambda x: x.pad(((0, 0), (-1, 1), (2, -2))),
            ARANGE_234,
            device=device,
            torch_fn=lambda x: F.pad(x, (2, -2, -1, 1, 0, 0)),
        )
        check(lambda x: x.pad((1, 1)), (3, 0), device=device, torch_fn=lambda x: F.pad(x, (1, 1)))
        check(
            lambda x: x.pad((2, 1), value=7),
            (4,),
            device=device,
            dtype="int32",
            torch_fn=lambda x: F.pad(x, (2, 1), value=7),
        )
        check(lambda x: x.T.pad((1, 0, 0, 2)), (3, 4), device=device, torch_fn=lambda x: F.pad(x.T, (1, 0, 0, 2)))
        check(lambda x: x.pad((1, 1)).sum(), (3, 4), device=device, torch_fn=lambda x: F.pad(x, (1, 1)).sum())


@on_devices
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_pad_modes(mode, device):
    x3 = np.arange(10, dtype=np.float32).reshape(1, 2, 5)  # (N, C, W)
    x4 = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)  # (N, C, H, W)
    with batch():
        for pad in [(1, 2), (0, 3), (2, 0), (4, 4) if mode != "reflect" else (4, 3)]:
            check(lambda x: x.pad(pad, mode=mode), x3, device=device, torch_fn=lambda x: F.pad(x, pad, mode=mode))
        for pad in [(1, 1, 2, 0), (0, 2, 1, 1), (3, 3, 2, 2)]:
            check(lambda x: x.pad(pad, mode=mode), x4, device=device, torch_fn=lambda x: F.pad(x, pad, mode=mode))
        check(
            lambda x: x.pad(((0, 0), (0, 0), (1, 2)), mode=mode),
            x3,
            device=device,
            torch_fn=lambda x: F.pad(x, (1, 2), mode=mode),
        )
        check(
            lambda x: x.transpose(2, 3).pad((1, 2, 2, 0), mode=mode),
            x4,
            device=device,
            torch_fn=lambda x: F.pad(x.transpose(2, 3), (1, 2, 2, 0), mode=mode),
        )
    with pytest.raises(ValueError):
        Tensor(x3).pad((-1, 1), mode=mode)


def test_pad_bad_input():
    x = Tensor(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError):
        x.pad((1, 2, 3))
    with pytest.raises(ValueError):
        x.pad((1, 1), mode="wrap")
    with pytest.raises(ValueError):
        x.pad((3, 0), mode="reflect")  # reflect needs the width below the size


# slices that torch can take directly
SLICES = [
    lambda x: x[1],
    lambda x: x[-1],
    lambda x: x[0, 2],
    lambda x: x[1, -1, 3],
    lambda x: x[:, 1:3],
    lambda x: x[..., 1:],
    lambda x: x[..., 0],
    lambda x: x[:, ::2],
    lambda x: x[:, :, 1::3],
    lambda x: x[:, -2:],
    lambda x: x[None],
    lambda x: x[:, None, 1],
    lambda x: x[..., None],
    lambda x: x[None, ..., None, 2],
    lambda x: x[1:1],
    lambda x: x[:, 5:1],
    lambda x: x[:, 1:100],
    lambda x: x[-100:],
    lambda x: x[:, :, ::5],
    lambda x: x[1, 1:2, ::2],
    lambda x: x[()],
    lambda x: x[...],
]


@on_devices
def test_slicing(device):
    with batch():
        for fn in SLICES:
            check(fn, ARANGE_234, device=device)
        check(lambda x: x[()], (), device=device)
        check(lambda x: x[None], (), device=device)
        check(lambda x: x[...], (), device=device)
        check(lambda x: x.T[1:, ::2], (5, 4), device=device)
        check(lambda x: x[::2][1], (5, 4), device=device)
        check(lambda x: x[:, 1][::2] * 2, (5, 4), device=device)
        check(lambda x: x.expand(4, 3)[1:3, 2], (1, 3), device=device)


@on_devices
def test_negative_step_slicing(device):
    """torch has no negative steps; numpy is the oracle."""
    slices = [
        (slice(None, None, -1),),
        (slice(None), slice(None, None, -2)),
        (slice(None, None, -1), 1, slice(3, 0, -1)),
        (slice(1, None, -1), slice(-1, -4, -1)),
        (Ellipsis, slice(None, None, -3)),
        (slice(0, 1, -1),),  # empty
    ]
    with batch():
        for index in slices:
            check(lambda x: x[index], ARANGE_234, device=device, torch_fn=lambda x: x.numpy()[index].copy())


def test_bad_indexing():
    x = Tensor(ARANGE_234)
    for index in (2, -3, (0, 3), (0, 0, 4), (0, 0, 0, 0)):
        with pytest.raises(IndexError):
            x[index]
    with pytest.raises(IndexError):
        x[..., 0, ...]
    with pytest.raises(ValueError):
        x[::0]


@on_devices
def test_cat_and_stack(device):
    with batch():
        for dim in (0, 1, -1, 2):
            check(lambda a, b: lib(a).cat([a, b], dim), (2, 3, 4), (2, 3, 4), device=device)
            check(lambda a, b, c: lib(a).cat([a, b, c], dim=dim), (2, 3, 4), (2, 3, 4), (2, 3, 4), device=device)
            check(lambda a, b: lib(a).stack([a, b], dim), (2, 3, 4), (2, 3, 4), device=device)
        check(lambda a, b: lib(a).cat([a, b], 1), (2, 3), (2, 5), device=device)
        check(lambda a, b: lib(a).cat([a, b]), (0, 3), (2, 3), device=device)
        check(lambda a: lib(a).cat([a]), (2, 3), device=device)
        check(lambda a, b: lib(a).cat([a.T, b], 0), (3, 2), (1, 3), device=device)
        check(lambda a: lib(a).cat([a[:, :1], a[:, 2:], a.flip(1)], 1), (3, 4), device=device)
        check(lambda a, b: lib(a).stack([a, b], -1), (), (), device=device)
        check(lambda a, b: lib(a).stack([a, b.expand(3)]), (3,), (1,), device=device)
        check(lambda a, b: lib(a).cat([a, b]), (3,), (2,), device=device, dtype="int32")
        check(lambda a, b: lib(a).cat([a, b]), (3,), (2,), device=device, dtype="bool")
        check(lambda a, b: lib(a).cat([a, b.int()]), (3,), (2,), device=device)  # promotes to float32
        check(lambda a, b: lib(a).stack([a, b.half()], 1), (3,), (3,), device=device)
        check(lambda a, b: lib(a).cat([a, b], 0).sum(0), (2, 3), (4, 3), device=device)
    nan = np.array([np.nan, 1.0], dtype=np.float32)
    check(lambda a, b: lib(a).cat([a, b]), nan, nan, device=device)  # padding with zeros must not eat NaN
    check(lambda a: lib(a).cat([a, a]), np.array([-0.0, np.inf], np.float32), device=device)


@on_devices
def test_split_and_chunk(device):
    with batch():
        for size in (1, 2, 3, 5, 7):
            check(lambda x: x.split(size), (5, 2), device=device)
        check(lambda x: x.split(2, dim=1), (3, 5), device=device)
        check(lambda x: x.split([1, 3, 1], dim=-1), (3, 5), device=device)
        check(lambda x: x.split([0, 3]), (3, 2), device=device)
        for chunks in (1, 2, 3, 4, 6):
            check(lambda x: x.chunk(chunks), (5, 2), device=device)
            check(lambda x: x.chunk(chunks, dim=1), (2, 6), device=device)
        check(lambda x: x.T.split(2), (3, 5), device=device)
    with pytest.raises(ValueError):
        Tensor(np.zeros(5, np.float32)).split([2, 2])


MATMUL_SHAPES = [
    ((4,), (4,)),
    ((3,), (3, 5)),
    ((3, 4), (4,)),
    ((3, 4), (4, 5)),
    ((1, 1), (1, 1)),
    ((2, 3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (5, 4, 2)),
    ((4,), (2, 4, 3)),
    ((2, 3, 4), (4,)),
    ((0, 4), (4, 3)),
    ((3, 0), (0, 2)),
]


@on_devices
def test_matmul(device):
    with batch():
        for sa, sb in MATMUL_SHAPES:
            check(lambda a, b: a @ b, sa, sb, device=device)
        check(lambda a, b: lib(a).matmul(a, b), (3, 4), (4, 2), device=device)
        check(lambda a, b: a.matmul(b), (3, 4), (4, 2), device=device)
        check(lambda a, b: a.T @ b.T, (4, 3), (2, 4), device=device)
        check(lambda a, b: a[::2] @ b[:, 1:], (6, 3), (3, 4), device=device)
        check(lambda a, b: a.expand(2, 3, 4) @ b, (3, 4), (4, 2), device=device)
        check(lambda a, b: a @ b, (2, 3), (3, 4), device=device, dtype="int32", low=-5, high=5)
        check(lambda a, b: a @ b, (2, 3), (3, 2), device=device, dtype="float16")
        check(lambda a, b: a @ b.double(), (2, 3), (3, 2), device=device, torch_fn=lambda a, b: a.double() @ b.double())
        check(lambda a, b: a.dot(b), (5,), (5,), device=device)
        check(lambda a, b: (a @ b).relu() + 1, (3, 4), (4, 5), device=device)
    if device == "CPU":
        with batch():
            check(lambda a, b: a @ b, (17, 33), (33, 19), rtol=1e-4)
            check(lambda a, b: a @ b, (3, 65, 70), (70, 9), rtol=1e-4)
            check(lambda a, b: a.T @ b, (128, 40), (128, 24), rtol=1e-4)
    with pytest.raises(ValueError):
        Tensor(np.zeros(3, np.float32)) @ Tensor(np.zeros(4, np.float32))
    with pytest.raises(ValueError):
        Tensor(np.float32(1.0)) @ Tensor(np.zeros(4, np.float32))


@on_devices
def test_cast_and_to(device):
    with batch():
        check(lambda x: x.to(lib(x).int32), (3, 4), device=device, low=-9, high=9)
        check(lambda x: x.to(lib(x).float16), (3, 4), device=device)
        check(lambda x: x.to(dtype=lib(x).float64), (3, 4), device=device)
        check(lambda x: x.int(), (3, 4), device=device, low=-9, high=9)
        check(lambda x: x.long(), (3, 4), device=device, low=-9, high=9)
        check(lambda x: x.float(), (3, 4), device=device, dtype="int16", low=-99, high=99)
        check(lambda x: x.double(), (3, 4), device=device)
        check(lambda x: x.half(), (3, 4), device=device)
        check(lambda x: x.bool(), np.array([0.0, -0.0, 0.5, np.nan, -3.0], np.float32), device=device)
        check(lambda x: x.T.int() * 2, (3, 4), device=device, low=-9, high=9)
    x = Tensor([1.5, -2.5], device=device)
    assert x.cast(boltgrad.int8).tolist() == [1, -2]
    assert x.cast("float64").dtype == boltgrad.float64
    assert x.to("cpu").device == "CPU" and x.to("cpu").tolist() == [1.5, -2.5]
    assert x.to("CPU", boltgrad.int32).tolist() == [1, -2]


@on_devices
def test_contiguous_and_clone(device):
    with batch():
        check(lambda x: x.T.contiguous(), (3, 4), device=device)
        check(lambda x: x[::2].contiguous() + 1, (5, 4), device=device)
        check(lambda x: x.clone(), (3, 4), device=device)
        check(lambda x: x.expand(3, 4).contiguous(), (1, 4), device=device)


@on_devices
def test_conversions_out(device):
    x = Tensor(ARANGE_234, device=device)
    view = x.permute(2, 0, 1)[1:, :, ::2]
    np.testing.assert_array_equal(view.numpy(), ARANGE_234.transpose(2, 0, 1)[1:, :, ::2])
    assert view.tolist() == ARANGE_234.transpose(2, 0, 1)[1:, :, ::2].tolist()
    assert x[1, 2, 3].item() == 23.0 and isinstance(x[1, 2, 3].item(), float)
    assert Tensor([7], device=device).item() == 7 and isinstance(Tensor([7], device=device).item(), int)
    assert Tensor([True], device=device).item() is True
    assert Tensor(np.float32(2.5), device=device).tolist() == 2.5
    assert Tensor(np.zeros((2, 0), np.float32), device=device).tolist() == [[], []]
    assert Tensor(np.zeros((2, 0), np.float32), device=device).numpy().shape == (2, 0)
    assert np.asarray(x).shape == (2, 3, 4)
    i = Tensor(np.array([[1, 2]], np.int16), device=device)
    assert i.numpy().dtype == np.int16 and i.tolist() == [[1, 2]]
    assert float(Tensor([2.5], device=device)) == 2.5 and int(Tensor([3], device=device)) == 3
    assert len(x) == 2 and x.ndim == 3 and x.numel() == 24 and x.size() == (2, 3, 4) and x.size(-1) == 4


def test_len_of_0d_is_type_error():
    with pytest.raises(TypeError):
        len(Tensor(1.0))


def test_movement_errors():
    x = Tensor(ARANGE_234)
    with pytest.raises(ValueError):
        x.reshape(5, 5)
    with pytest.raises(ValueError):
        x.reshape(-1, -1)
    with pytest.raises((ValueError, RuntimeError)):
        x.permute(0, 1)
    with pytest.raises((ValueError, RuntimeError)):
        x.permute(0, 0, 1)
    with pytest.raises(ValueError, match=r"\(2, 3, 4\)"):
        x.expand(2, 5, 4)
    with pytest.raises(ValueError):
        boltgrad.cat([])
    with pytest.raises((ValueError, RuntimeError)):
        boltgrad.cat([x, Tensor(np.zeros((2, 3), np.float32))])


def test_views_that_change_nothing_are_the_tensor_itself():
    x = Tensor(ARANGE_234)
    same = [x.reshape(2, 3, 4), x.reshape(2, -1, 4), x.expand(2, 3, 4), x.expand(-1, 3, -1), x.permute(0, 1, 2),
            x.permute(-3, -2, -1), x.shrink(((0, 2), None, (0, 4))), x.pad(((0, 0),) * 3), x.cast(x.dtype)]  # fmt: skip
    assert all(y is x for y in same)


def test_reshape_errors_name_the_sizes():
    x = Tensor(ARANGE_234)
    with pytest.raises(TypeError, match=r"sizes must be ints, got \[True, 24\]"):
        x.reshape(True, 24)
    with pytest.raises(ValueError, match="only one dimension can be -1"):
        x.reshape(-1, -1)
    with pytest.raises(ValueError, match=r"shape '\[5, 5\]' is invalid for input of size 24"):
        x.reshape(5, 5)
    with pytest.raises(ValueError, match=r"shape '\[-1, 7\]' is invalid for input of size 24"):
        x.reshape(-1, 7)
    with pytest.raises(ValueError, match=r"shape '\[-2, -12\]' is invalid for input of size 24"):
        x.reshape(-2, -12)


def test_movement_is_lazy_views():
    """Movement ops on a realized tensor compile nothing until their value is read."""
    x = Tensor(ARANGE_234)
    boltgrad.stats.reset()
    y = x.permute(2, 0, 1).reshape(4, 6).flip(0)[1:3].pad((1, 1)).expand(2, 2, 8)
    assert boltgrad.stats.kernels == 0 and boltgrad.stats.compiles == 0
    assert y.shape == (2, 2, 8)
    want = F.pad(torch.from_numpy(ARANGE_234).permute(2, 0, 1).reshape(4, 6).flip(0)[1:3], (1, 1)).expand(2, 2, 8)
    np.testing.assert_array_equal(y.numpy(), want.numpy())


def test_torch_aliases_and_keywords():
    with batch():
        check(lambda x: x.swapaxes(0, 2), ARANGE_234)
        check(lambda x: x.swapdims(-1, 0), ARANGE_234)
        check(lambda x: x.movedim(0, -1), ARANGE_234, grad=True)
        check(lambda x: x.movedim((0, 1), (2, 0)), ARANGE_234)
        check(lambda x: lib(x).moveaxis(x, 2, 0), ARANGE_234)
        check(lambda x: x.split(split_size=2, dim=2), ARANGE_234)
        check(lambda x: lib(x).split(x, [1, 2], dim=1), ARANGE_234)
        check(lambda x: lib(x).hstack([x, x * 2]), ARANGE_234)
        check(lambda x: lib(x).vstack([x[0, 0], x[1, 1]]), ARANGE_234)
        check(lambda x: lib(x).hstack([x[0, 0], x[1, 1]]), ARANGE_234)
    with pytest.raises(ValueError, match="distinct"):
        Tensor(ARANGE_234).movedim((0, 0), (1, 2))
