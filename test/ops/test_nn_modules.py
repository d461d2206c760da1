"""The Module base: registration, state dicts (torch's names), loading, modes, devices, repr and containers."""

import numpy as np
import pytest
import torch
from nn_oracle import assert_close

import boltgrad
from boltgrad import Tensor, nn


def block(lib):
    """The same little model from torch.nn or boltgrad.nn."""
    m = lib.Module()
    m.conv = lib.Conv2d(2, 3, 3, padding=1)
    m.bn = lib.BatchNorm2d(3)
    m.heads = lib.ModuleList([lib.Linear(3, 2), lib.Linear(3, 2, bias=False)])
    m.named = lib.ModuleDict({"act": lib.ReLU(), "proj": lib.Linear(2, 2)})
    m.scale = lib.Parameter((torch.tensor if lib is torch.nn else Tensor)([1.0, 2.0]))
    return m


def test_state_dict_names_and_shapes_match_torch():
    ours, theirs = block(nn), block(torch.nn)
    got = [(k, tuple(v.shape)) for k, v in ours.state_dict().items()]
    want = [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
    assert got == want
    assert ours.state_dict()["bn.num_batches_tracked"].dtype == boltgrad.int64
    assert [k for k, _ in ours.named_parameters()] == [k for k, _ in theirs.named_parameters()]
    assert [k for k, _ in ours.named_buffers()] == [k for k, _ in theirs.named_buffers()]
    assert [k for k, _ in ours.named_modules()] == [k for k, _ in theirs.named_modules()]
    assert [k for k, _ in ours.named_children()] == ["conv", "bn", "heads", "named"]


def test_load_state_dict_from_torch_keeps_parameter_objects():
    ours, theirs = block(nn), block(torch.nn)
    with torch.no_grad():
        theirs.bn.running_mean.uniform_()
        theirs.bn.num_batches_tracked.fill_(7)
    before = {k: id(v) for k, v in ours.named_parameters()}
    result = ours.load_state_dict(theirs.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert {k: id(v) for k, v in ours.named_parameters()} == before
    for key, value in theirs.state_dict().items():
        assert_close(ours.state_dict()[key], value, atol=0, rtol=0)
    assert ours.bn.num_batches_tracked.item() == 7
    assert all(p.requires_grad and p.is_leaf for p in ours.parameters())


def test_load_state_dict_accepts_numpy_and_boltgrad_values():
    lin = nn.Linear(2, 3)
    w = np.arange(6, dtype=np.float64).reshape(3, 2)  # float64 is cast to the parameter's dtype
    lin.load_state_dict({"weight": w, "bias": Tensor([1.0, 2.0, 3.0])})
    assert lin.weight.dtype == boltgrad.float32
    assert lin.weight.tolist() == w.tolist() and lin.bias.tolist() == [1.0, 2.0, 3.0]
    other = nn.Linear(2, 3)
    other.load_state_dict(lin.state_dict())
    assert other.weight.tolist() == w.tolist()
    # a bfloat16 torch tensor goes through float32 (numpy has no bfloat16)
    lin.load_state_dict({"weight": torch.ones(3, 2, dtype=torch.bfloat16), "bias": torch.zeros(3)})
    assert lin.weight.tolist() == [[1.0, 1.0]] * 3
    # and the loaded parameters train: gradients reach them
    lin(Tensor.ones(4, 2)).sum().backward()
    assert lin.weight.grad.tolist() == [[4.0, 4.0]] * 3


def test_load_state_dict_errors_like_torch():
    lin = nn.Linear(2, 3)
    good = {"weight": np.zeros((3, 2), np.float32), "bias": np.zeros(3, np.float32)}
    with pytest.raises(RuntimeError) as e:
        lin.load_state_dict({"weight": good["weight"], "extra": np.zeros(1)})
    assert str(e.value) == (
        'Error(s) in loading state_dict for Linear:\n\tMissing key(s) in state_dict: "bias".\n\t'
        'Unexpected key(s) in state_dict: "extra".'
    )
    with pytest.raises(RuntimeError, match=r"size mismatch for weight: copying a param with shape \(2, 3\) from "
                                           r"checkpoint, the shape in current model is \(3, 2\)"):  # fmt: skip
        lin.load_state_dict({"weight": np.zeros((2, 3), np.float32), "bias": good["bias"]}, strict=False)
    result = lin.load_state_dict({"weight": good["weight"], "other": np.ones(2)}, strict=False)
    assert result.missing_keys == ["bias"] and result.unexpected_keys == ["other"]
    assert lin.weight.tolist() == [[0.0, 0.0]] * 3  # the keys that matched were loaded


def test_registration_rules():
    m = nn.Module()
    m.w = nn.Parameter(Tensor([1.0, 2.0]))
    m.leaf = Tensor([3.0], requires_grad=True)  # a leaf that requires grad counts as a parameter
    m.plain = Tensor([1.0])  # a plain tensor is an ordinary attribute
    m.register_buffer("stat", Tensor([0.0]))
    m.register_buffer("scratch", Tensor([0.0]), persistent=False)
    m.child = nn.Linear(1, 1)
    assert [k for k, _ in m.named_parameters()] == ["w", "leaf", "child.weight", "child.bias"]
    assert [k for k, _ in m.named_buffers()] == ["stat", "scratch"]
    assert list(m.state_dict()) == ["w", "leaf", "stat", "child.weight", "child.bias"]
    with pytest.raises(TypeError, match="cannot assign 'Tensor' as parameter 'w'"):
        m.w = Tensor([1.0])
    m.w = None
    assert "w" not in dict(m.named_parameters()) and m.w is None
    m.stat = Tensor([5.0])  # a buffer is replaced by assignment
    assert m.state_dict()["stat"].tolist() == [5.0]
    del m.child
    assert not hasattr(m, "child") and list(m.children()) == []
    with pytest.raises(KeyError, match="attribute 'plain' already exists"):
        m.register_buffer("plain", Tensor([1.0]))
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        _ = m.nothing
    with pytest.raises(NotImplementedError, match='missing the required "forward"'):
        m(Tensor([1.0]))


def test_shared_parameters_are_listed_once():
    a = nn.Linear(3, 3)
    net = nn.Sequential(a, nn.ReLU(), a)
    assert len(list(net.parameters())) == 2
    assert list(net.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]  # as torch: under each name
    net.load_state_dict({k: np.ones(v.shape, np.float32) for k, v in net.state_dict().items()})
    assert a.bias.tolist() == [1.0, 1.0, 1.0]


def test_parameter_operations_give_plain_tensors():
    p = nn.Parameter(Tensor([1.0, 2.0]))
    assert p.requires_grad and p.is_leaf
    assert type(p * 2) is Tensor and type(p.exp()) is Tensor and type(p[0]) is Tensor
    assert repr(p).startswith("Parameter containing:\ntensor([1.0, 2.0]")
    frozen = nn.Parameter(Tensor([1.0]), requires_grad=False)
    assert not frozen.requires_grad


def test_train_eval_and_dropout():
    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    assert net.training and net[1].training
    assert net.eval() is net and not net[1].training and not net[0].training
    x = Tensor.ones(200, 50)
    assert net[1](x).tolist() == x.tolist()  # identity in eval
    net.train()
    y = net[1](x).numpy()
    assert set(np.unique(y)) == {0.0, 2.0}  # kept values are scaled by 1 / (1 - p)
    assert 0.45 < (y == 0).mean() < 0.55


def _bn_pair(momentum, affine=True, track=True):
    torch.manual_seed(0)
    theirs = torch.nn.BatchNorm1d(3, momentum=momentum, affine=affine, track_running_stats=track)
    ours = nn.BatchNorm1d(3, momentum=momentum, affine=affine, track_running_stats=track)
    return theirs, ours


@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum", "cumulative"])
def test_batchnorm_running_statistics_follow_torch(momentum):
    theirs, ours = _bn_pair(momentum)
    rng = np.random.default_rng(0)
    for step in range(3):
        x = rng.normal(step, 1 + step, (5, 3, 2)).astype(np.float32)
        assert_close(ours(Tensor(x)), theirs(torch.from_numpy(x)), atol=1e-5)
    assert_close(ours.running_mean, theirs.running_mean, atol=1e-6)
    assert_close(ours.running_var, theirs.running_var, atol=1e-5)
    assert ours.num_batches_tracked.item() == 3
    ours.eval()
    theirs.eval()
    x = rng.normal(0, 1, (2, 3)).astype(np.float32)
    assert_close(ours(Tensor(x)), theirs(torch.from_numpy(x)), atol=1e-5)


def test_batchnorm_without_running_statistics():
    theirs, ours = _bn_pair(0.1, affine=False, track=False)
    assert list(ours.state_dict()) == [] and ours.running_mean is None
    x = np.random.default_rng(1).normal(0, 2, (4, 3)).astype(np.float32)
    ours.eval()
    theirs.eval()
    assert_close(ours(Tensor(x)), theirs(torch.from_numpy(x)), atol=1e-5)  # batch statistics even in eval


def test_to_device_keeps_parameter_identity():
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    ours = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ours.load_state_dict(theirs.state_dict())
    params = list(ours.parameters())
    assert ours.to("PYTHON") is ours
    assert [id(p) for p in ours.parameters()] == [id(p) for p in params]
    assert all(t.device == "PYTHON" for t in [*ours.parameters(), *ours.buffers()])
    assert all(p.requires_grad and p.is_leaf for p in params)
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    out = ours(Tensor(x, device="PYTHON"))
    out.sum().backward()
    want = theirs(torch.from_numpy(x))
    want.sum().backward()
    assert_close(out, want, atol=1e-5)
    assert params[0].grad.device == "PYTHON"
    assert_close(params[0].grad, theirs[0].weight.grad, atol=1e-5)
    ours.to("cpu")
    assert params[0].device == "CPU" and params[0].grad.device == "CPU"


def test_to_dtype_casts_floating_tensors_only():
    bn = nn.BatchNorm1d(2).to(boltgrad.float16)
    assert bn.weight.dtype == boltgrad.float16 and bn.running_var.dtype == boltgrad.float16
    assert bn.num_batches_tracked.dtype == boltgrad.int64
    assert bn.weight.requires_grad


def test_grad_helpers_and_apply():
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    net(Tensor.ones(1, 2)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "Linear", "Sequential"]


def test_repr_matches_torch():
    def build(lib):
        return lib.Sequential(
            lib.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
            lib.BatchNorm2d(8),
            lib.ReLU(),
            lib.MaxPool2d(2),
            lib.Flatten(),
            lib.Linear(8, 4),
            lib.Dropout(0.1),
            lib.Sequential(lib.LayerNorm(4), lib.GELU()),
            lib.Embedding(10, 4, padding_idx=0),
            lib.LSTM(4, 5, num_layers=2, batch_first=True),
        )

    assert repr(build(nn)) == repr(build(torch.nn))


def test_sequential_container():
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    seq = nn.Sequential(a, b)
    assert len(seq) == 2 and seq[0] is a and seq[-1] is b
    seq.append(c)
    assert list(seq) == [a, b, c] and isinstance(seq[1:], nn.Sequential) and list(seq[1:]) == [b, c]
    assert seq(Tensor.ones(4, 2)).shape == (4, 1)
    del seq[1]
    assert [k for k, _ in seq.named_children()] == ["0", "1"] and seq[1] is c
    with pytest.raises(IndexError):
        seq[5]
    from collections import OrderedDict

    named = nn.Sequential(OrderedDict([("fc", a), ("act", b)]))
    assert list(named.state_dict()) == ["fc.weight", "fc.bias"] and named.fc is a


def test_module_list_and_dict():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(layers) == 3 and len(list(layers.parameters())) == 6
    layers.append(nn.Linear(2, 1))
    layers.insert(0, nn.Identity())
    assert isinstance(layers[0], nn.Identity) and list(layers.state_dict())[0] == "1.weight"
    assert isinstance(layers[1:3], nn.ModuleList) and len(layers[1:3]) == 2
    del layers[0]
    assert list(layers.state_dict())[0] == "0.weight"
    d = nn.ModuleDict({"enc": nn.Linear(2, 2)})
    d["dec"] = nn.Linear(2, 3)
    assert list(d) == ["enc", "dec"] and "dec" in d and list(d.state_dict())[-1] == "dec.bias"
    assert d.pop("enc").out_features == 2 and list(d.keys()) == ["dec"]


def test_custom_module_like_nanogpt():
    class MLP(nn.Module):
        def __init__(self, n_embd):
            super().__init__()
            self.c_fc = nn.Linear(n_embd, 4 * n_embd)
            self.gelu = nn.GELU()
            self.c_proj = nn.Linear(4 * n_embd, n_embd)

        def forward(self, x):
            return self.c_proj(self.gelu(self.c_fc(x)))

    mlp = MLP(4)
    assert list(mlp.state_dict()) == ["c_fc.weight", "c_fc.bias", "c_proj.weight", "c_proj.bias"]
    assert mlp(Tensor.ones(2, 3, 4)).shape == (2, 3, 4)
    assert "(c_fc): Linear(in_features=4, out_features=16, bias=True)" in repr(mlp)
