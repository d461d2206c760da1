"""safetensors files through the DISK device, state-dict helpers, and PyTorch checkpoints without torch."""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

import boltgrad
from boltgrad import Tensor, stats
from boltgrad.nn.state import get_state_dict, load_state_dict, safe_load, safe_metadata, safe_save
from boltgrad.nn.torch_load import torch_load

torch = pytest.importorskip("torch")

ALL_DTYPES = ["bool", "uint8", "int8", "int16", "int32", "uint32", "int64", "float16", "bfloat16", "float32", "float64"]


def _sample(dtype: str, shape=(2, 3)) -> Tensor:
    values = np.arange(int(np.prod(shape))).reshape(shape) - 2
    if dtype == "bool":
        return Tensor(values % 2 == 0)
    if dtype in ("uint8", "uint32"):
        return Tensor(np.abs(values).astype(dtype))
    if dtype == "bfloat16":
        return Tensor((values * 0.5).astype(np.float32)).cast(boltgrad.bfloat16)
    return Tensor(values.astype(dtype) if dtype.startswith("int") else (values * 0.25).astype(dtype))


# ---- safetensors


def test_every_dtype_round_trips(tmp_path):
    tensors = {name: _sample(name) for name in ALL_DTYPES}
    tensors["scalar"] = Tensor(2.5)
    tensors["empty"] = Tensor(np.zeros((0, 4), np.float32))
    path = tmp_path / "all.safetensors"
    safe_save(tensors, path, metadata={"format": "pt", "note": "test"})
    loaded = safe_load(path)
    assert sorted(loaded) == sorted(tensors)
    for name, t in tensors.items():
        got = loaded[name]
        assert got.dtype == t.dtype and got.shape == t.shape and got.device == "CPU", name
        assert got.tolist() == t.tolist(), name
    assert safe_metadata(path) == {"format": "pt", "note": "test"}
    again, metadata = safe_load(path, with_metadata=True)
    assert metadata == {"format": "pt", "note": "test"} and sorted(again) == sorted(tensors)
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    assert (8 + length) % 8 == 0 and header["bfloat16"]["dtype"] == "BF16" and header["int64"]["shape"] == [2, 3]


def test_loading_is_lazy_and_reads_only_what_is_used(tmp_path):
    path = tmp_path / "two.safetensors"
    big = Tensor(np.arange(4096, dtype=np.float32))  # 16 KiB never read
    small = Tensor(np.arange(4, dtype=np.float32))
    safe_save({"big": big, "small": small}, path)
    stats.reset()
    loaded = safe_load(path)
    assert stats.copy_bytes == 0  # opening reads the header, nothing else
    assert loaded["small"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert 0 < stats.copy_bytes <= 3 * 16  # disk -> CPU and CPU -> host, of 16 bytes: never the big tensor


def test_disk_tensors_are_views_that_must_move_before_math(tmp_path):
    path = tmp_path / "d.safetensors"
    safe_save({"w": Tensor([[1.0, 2.0], [3.0, 4.0]])}, path)
    w = safe_load(path, device="DISK")["w"]
    assert w.device == "DISK"
    assert w.to("CPU").tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert w.tolist() == [[1.0, 2.0], [3.0, 4.0]]  # reading values needs no kernel
    with pytest.raises(RuntimeError, match=r"DISK.*\.to\('CPU'\)"):
        (w * 2).realize()
    with pytest.raises(RuntimeError, match="cannot be allocated"):
        Tensor([1.0], device="DISK")
    assert (w.to("CPU") * 2).sum().item() == 20.0


def test_save_is_atomic_and_overwrites(tmp_path):
    path = tmp_path / "m.safetensors"
    safe_save({"a": Tensor([1.0])}, path)
    with pytest.raises(TypeError):
        safe_save({"a": Tensor([2.0]), "b": "not a tensor"}, path)
    assert safe_load(path)["a"].tolist() == [1.0]  # the failed save left the old file
    safe_save({"a": Tensor([3.0])}, path)
    assert safe_load(path)["a"].tolist() == [3.0]
    assert os.listdir(tmp_path) == ["m.safetensors"]  # no temporary left behind


def _write_raw(path, header: dict | bytes, data: bytes = b"", length: int | None = None) -> None:
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(body) if length is None else length) + body + data)


@pytest.mark.parametrize(
    "header, data, length, message",
    [
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"", 10**6, "header length 1000000 goes"),
        ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8, None, "offsets out of range"),
        ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, None, "needs 12 bytes"),
        ({"a": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}}, b"\0", None, "dtype 'F8_E4M3'"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, b"\0" * 4, None, "invalid data_offsets"),
        (b"{not json", b"", None, "not valid JSON"),
    ],
    ids=["header-length", "truncated-data", "shape-mismatch", "unknown-dtype", "bad-offsets", "bad-json"],
)
def test_corrupt_files_raise_value_errors_naming_file_and_problem(tmp_path, header, data, length, message):
    path = tmp_path / "bad.safetensors"
    _write_raw(path, header, data, length)
    with pytest.raises(ValueError, match=message) as err:
        safe_load(path)
    assert str(path) in str(err.value)


def test_reads_files_written_by_the_safetensors_package(tmp_path):
    st = pytest.importorskip("safetensors.numpy", reason="the safetensors package is not installed")
    path = str(tmp_path / "ref.safetensors")
    arrays = {"x": np.arange(6, dtype=np.float16).reshape(2, 3), "y": np.array([1, -2], dtype=np.int64)}
    st.save_file(arrays, path)
    loaded = safe_load(path)
    for k, v in arrays.items():
        np.testing.assert_array_equal(loaded[k].numpy(), v)
    safe_save({"z": Tensor([[1.5, 2.5]])}, path)
    np.testing.assert_array_equal(st.load_file(path)["z"], np.array([[1.5, 2.5]], np.float32))


# ---- state dicts of plain objects


class _Tiny:
    def __init__(self, scale: float):
        self.layers = [{"w": Tensor([[scale, 0.0]]).contiguous()}, {"w": Tensor([[0.0, scale]]).contiguous()}]
        self.bias = Tensor([scale]).contiguous()
        Tensor.realize_all([self.layers[0]["w"], self.layers[1]["w"], self.bias])


def test_get_and_load_state_dict_of_plain_objects(tmp_path):
    a, b = _Tiny(1.0), _Tiny(5.0)
    sd = get_state_dict(a)
    assert sorted(sd) == ["bias", "layers.0.w", "layers.1.w"]
    safe_save(sd, tmp_path / "tiny.safetensors")
    missing, unexpected = load_state_dict(b, safe_load(tmp_path / "tiny.safetensors"))
    assert (missing, unexpected) == ([], [])
    assert b.layers[1]["w"].tolist() == [[0.0, 1.0]] and b.bias.tolist() == [1.0]
    with pytest.raises(RuntimeError, match="missing keys"):
        load_state_dict(b, {"bias": Tensor([0.0])})


@pytest.mark.skipif(not hasattr(boltgrad.nn, "Linear"), reason="boltgrad.nn.Linear is not built yet")
def test_module_state_dict_round_trips_through_a_file(tmp_path):
    a, b = boltgrad.nn.Linear(3, 2), boltgrad.nn.Linear(3, 2)
    safe_save(get_state_dict(a), tmp_path / "linear.safetensors")
    load_state_dict(b, safe_load(tmp_path / "linear.safetensors"))
    x = Tensor(np.ones((1, 3), np.float32))
    np.testing.assert_array_equal(b(x).numpy(), a(x).numpy())


# ---- PyTorch checkpoints


@pytest.fixture(scope="module")
def torch_state():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    model(torch.randn(8, 4))  # running statistics that are not the defaults
    sd = model.state_dict()
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    sd["transposed"] = base.T
    sd["sliced"] = base[1:3, 2:5]  # an offset and a row stride: gathered
    sd["broadcast"] = torch.tensor([1.0, 2.0]).reshape(2, 1).expand(2, 3)
    sd["half"] = torch.tensor([0.5, -1.5], dtype=torch.float16)
    sd["bf16"] = torch.tensor([0.5, 3.0], dtype=torch.bfloat16)
    sd["mask"] = torch.tensor([True, False, True])
    sd["shared"] = base  # the same storage as transposed
    return sd


def _to_numpy(t):
    return t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_torch_load_reads_torch_save(tmp_path, torch_state, zip_format):
    path = tmp_path / "model.pt"
    torch.save(torch_state, path, _use_new_zipfile_serialization=zip_format)
    loaded = torch_load(path)
    assert list(loaded) == list(torch_state)
    for name, want in torch_state.items():
        got = loaded[name]
        assert isinstance(got, Tensor) and got.shape == tuple(want.shape), name
        assert got.dtype.name == str(want.dtype).removeprefix("torch."), name
        np.testing.assert_array_equal(got.numpy(), _to_numpy(want), err_msg=name)
    assert int(loaded["1.num_batches_tracked"].item()) == 1


def test_torch_load_containers_parameters_and_laziness(tmp_path):
    layer = torch.nn.Linear(3, 2)
    obj = {"model": layer.state_dict(), "params": list(layer.parameters()), "epoch": 7, "name": "run", "lr": 0.5,
           "tags": ("a", b"raw"), "big": torch.zeros(10000)}  # fmt: skip
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path)
    stats.reset()
    loaded = torch_load(path)
    assert stats.copy_bytes == 0  # tensors are mapped, not read
    assert loaded["epoch"] == 7 and loaded["name"] == "run" and loaded["tags"] == ("a", b"raw")
    np.testing.assert_array_equal(loaded["params"][0].numpy(), layer.weight.detach().numpy())
    assert stats.copy_bytes < 10000  # the 40 KB tensor was never read
    assert loaded["big"].sum().item() == 0.0


@pytest.mark.skipif(not hasattr(boltgrad.nn, "BatchNorm1d"), reason="boltgrad.nn layers are not built yet")
def test_a_torch_checkpoint_loads_into_our_modules(tmp_path, torch_state):
    theirs = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    model_keys = list(theirs.state_dict())
    theirs.load_state_dict({k: torch_state[k] for k in model_keys})
    path = tmp_path / "seq.pth"
    torch.save(theirs.state_dict(), path)
    ours = boltgrad.nn.Sequential(boltgrad.nn.Linear(4, 3), boltgrad.nn.BatchNorm1d(3))
    load_state_dict(ours, torch_load(path))
    ours.eval()
    theirs.eval()
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_allclose(ours(Tensor(x)).numpy(), theirs(torch.tensor(x)).detach().numpy(), atol=1e-5)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/boltgrad-pwned",))


def test_malicious_pickles_are_refused_naming_the_global(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.ones(2), "payload": _Exploit()}, path)  # a zip checkpoint whose pickle calls os.system
    with pytest.raises(pickle.UnpicklingError, match=r"'(posix|nt|os)\.system'.*not allowed"):
        torch_load(path)
    assert not os.path.exists("/tmp/boltgrad-pwned")
    legacy = tmp_path / "evil_legacy.pt"
    torch.save({"payload": _Exploit()}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(pickle.UnpicklingError, match="system"):
        torch_load(legacy)
    raw = tmp_path / "evil.pkl"  # a bare pickle: refused before anything runs, as not a checkpoint
    raw.write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises((pickle.UnpicklingError, ValueError)):
        torch_load(raw)


def test_torch_load_rejects_truncated_and_foreign_files(tmp_path, torch_state):
    path = tmp_path / "legacy.pt"
    torch.save({"w": torch.arange(100, dtype=torch.float32)}, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    path.write_bytes(data[:-40])
    with pytest.raises(ValueError, match="truncated"):
        torch_load(path)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        torch_load(other)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        torch_load(text)
