"""Optimizers, schedulers and gradient clipping against torch.optim, plus the fusion and no-recompile contract."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import boltgrad  # noqa: E402
from boltgrad import Tensor, stats  # noqa: E402
from boltgrad.optim import SGD, Adam, AdamW, Muon, clip_grad_norm_, clip_grad_value_, lr_scheduler  # noqa: E402

torch_schedules = torch.optim.lr_scheduler
SHAPES = [(4, 5), (5,), (3, 2)]
STEPS = 5


def _data(shapes=SHAPES, steps=STEPS, seed=0):
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(steps)]
    return weights, grads


def _run_pair(ours_cls, torch_cls, kwargs, shapes=SHAPES, steps=STEPS, torch_kwargs=None, device="CPU"):
    """The same start and gradients through both optimizers; returns (ours, torch's) final parameters."""
    weights, grads = _data(shapes, steps)
    ours = [Tensor(w, device=device, requires_grad=True) for w in weights]
    theirs = [torch.tensor(w, requires_grad=True) for w in weights]
    opt_ours = ours_cls(ours, **kwargs)
    opt_theirs = torch_cls(theirs, **(torch_kwargs if torch_kwargs is not None else kwargs))
    for step_grads in grads:
        for p, g in zip(ours, step_grads):
            p.grad = Tensor(g, device=device)
        for p, g in zip(theirs, step_grads):
            p.grad = torch.tensor(g)
        opt_ours.step()
        opt_theirs.step()
    return [p.numpy() for p in ours], [p.detach().numpy() for p in theirs]


def _assert_close(ours, theirs, atol=1e-5, rtol=1e-5):
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, atol=atol, rtol=rtol)


SGD_CASES = [
    {"lr": 0.1},
    {"lr": 0.1, "momentum": 0.9},
    {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01},
    {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.1},
    {"lr": 0.1, "momentum": 0.5, "weight_decay": 0.2, "maximize": True},
]


@pytest.mark.parametrize("kwargs", SGD_CASES, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
def test_sgd_matches_torch(kwargs):
    _assert_close(*_run_pair(SGD, torch.optim.SGD, kwargs))


ADAM_CASES = [
    {"lr": 0.01},
    {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.05},
    {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1, "maximize": True},
]


@pytest.mark.parametrize("kwargs", ADAM_CASES, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
@pytest.mark.parametrize("cls", ["Adam", "AdamW"])
def test_adam_and_adamw_match_torch(cls, kwargs):
    ours_cls, torch_cls = {"Adam": (Adam, torch.optim.Adam), "AdamW": (AdamW, torch.optim.AdamW)}[cls]
    _assert_close(*_run_pair(ours_cls, torch_cls, kwargs))


def test_adamw_default_weight_decay_is_torchs():
    _assert_close(*_run_pair(AdamW, torch.optim.AdamW, {"lr": 0.05}))


def test_optimizer_on_the_python_device():
    ours, theirs = _run_pair(Adam, torch.optim.Adam, {"lr": 0.1, "amsgrad": True}, [(3,), (2, 2)], 2, device="PYTHON")
    _assert_close(ours, theirs)


# ---- Muon


def _muon_reference(weights, grads, lr, weight_decay, momentum, nesterov, steps=5, eps=1e-7, adjust=None):
    """torch.optim.Muon's algorithm in float32 (torch itself runs Newton-Schulz in bfloat16)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    params = [torch.tensor(w) for w in weights]
    bufs = [torch.zeros_like(p) for p in params]
    for step_grads in grads:
        for p, buf, g in zip(params, bufs, step_grads):
            g = torch.tensor(g)
            buf.lerp_(g, 1 - momentum)
            update = g.lerp(buf, momentum) if nesterov else buf.clone()
            x = update.reshape(update.shape[0], -1)
            tall = x.shape[0] > x.shape[1]
            if tall:
                x = x.T
            x = x / x.norm().clamp(min=eps)
            for _ in range(steps):
                gram = x @ x.T
                x = a * x + (b * gram + c * gram @ gram) @ x
            if tall:
                x = x.T
            rows, cols = x.shape
            ratio = math.sqrt(max(1, rows / cols)) if adjust is None else 0.2 * math.sqrt(max(rows, cols))
            p.mul_(1 - lr * weight_decay)
            p.add_(x.reshape(p.shape), alpha=-lr * ratio)
    return [p.numpy() for p in params]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": 0.02, "weight_decay": 0.0, "momentum": 0.95, "nesterov": True},
        {"lr": 0.05, "weight_decay": 0.1, "momentum": 0.9, "nesterov": False, "adjust_lr_fn": "match_rms_adamw"},
    ],
    ids=["nesterov", "plain-momentum-match-rms-adamw"],
)
def test_muon_matches_the_reference_algorithm(kwargs):
    shapes = [(6, 4), (3, 8), (2, 2, 3)]  # tall, wide, and a conv-like kernel flattened to (2, 6)
    weights, grads = _data(shapes, 3)
    ours = [Tensor(w, requires_grad=True) for w in weights]
    opt = Muon(ours, **kwargs)
    for step_grads in grads:
        for p, g in zip(ours, step_grads):
            p.grad = Tensor(g)
        opt.step()
    want = _muon_reference(weights, grads, kwargs["lr"], kwargs["weight_decay"], kwargs["momentum"],
                           kwargs["nesterov"], adjust=kwargs.get("adjust_lr_fn"))  # fmt: skip
    _assert_close([p.numpy() for p in ours], want, atol=2e-5)


def test_muon_agrees_with_torch_muon_up_to_its_bfloat16():
    kwargs = {"lr": 0.02, "weight_decay": 0.1, "momentum": 0.95}
    ours, theirs = _run_pair(Muon, torch.optim.Muon, kwargs, shapes=[(6, 4), (3, 8)], steps=3)
    _assert_close(ours, theirs, atol=3e-3, rtol=0)


def test_muon_rejects_vectors_and_runs_adamw_groups():
    bias = Tensor([0.5, -0.5], requires_grad=True)
    with pytest.raises(ValueError, match="not a matrix.*use_muon=False"):
        Muon([bias])
    weight = Tensor(np.ones((3, 2), np.float32), requires_grad=True)
    opt = Muon([{"params": [weight]}, {"params": [bias], "use_muon": False, "lr": 0.1, "weight_decay": 0.0}], lr=0.02)
    tb = torch.tensor([0.5, -0.5], requires_grad=True)
    ref = torch.optim.AdamW([tb], lr=0.1, betas=(0.9, 0.95), eps=1e-10, weight_decay=0.0)
    for g in ([1.0, 2.0], [-1.0, 0.5]):
        weight.grad = Tensor(np.ones((3, 2), np.float32))
        bias.grad, tb.grad = Tensor(g), torch.tensor(g)
        opt.step()
        ref.step()
    np.testing.assert_allclose(bias.numpy(), tb.detach().numpy(), atol=1e-6)


# ---- the fusion contract


def _realized_grads(params, rng):
    for p in params:
        p.grad = Tensor(rng.standard_normal(p.shape).astype(np.float32))
    Tensor.realize_all([p.grad for p in params])


@pytest.mark.parametrize(
    "make, per_tensor",
    [
        (lambda ps, **kw: SGD(ps, lr=0.1, **kw), 1),
        (lambda ps, **kw: SGD(ps, lr=0.1, momentum=0.9, nesterov=True, **kw), 2),
        (lambda ps, **kw: Adam(ps, lr=0.01, **kw), 4),  # step counter, m, v, parameter
        (lambda ps, **kw: AdamW(ps, lr=0.01, amsgrad=True, **kw), 5),
    ],
    ids=["sgd", "sgd-momentum", "adam", "adamw-amsgrad"],
)
@pytest.mark.parametrize("foreach", [None, False], ids=["flat", "per-tensor"])
def test_a_step_is_one_kernel_per_tensor_written_and_compiles_once(make, per_tensor, foreach):
    """The flat update writes each state tensor and the parameters once for the whole group; ``foreach=False``
    writes them once per parameter. Gradients set by hand (buffers of their own) are copied into the flat
    gradient first, one kernel each (from backward() they are computed there: see the test below)."""
    rng = np.random.default_rng(1)
    shapes = [(8, 4), (4,), (4, 4), (4,), (4, 2), (2,)]
    params = [Tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True) for s in shapes]
    opt = make(params, foreach=foreach)
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    for step in range(5):
        _realized_grads(params, rng)
        stats.reset()
        opt.step()
        sched.step()  # a new learning rate every step: read from a buffer, not compiled in
        if step == 0:
            continue  # the first step also zero-fills the new state tensors
        assert stats.compiles == 0, f"step {step + 1} compiled {stats.compiles} times"
        if foreach is False:
            assert (stats.realizes, stats.kernels) == (1, per_tensor * len(params))
        else:
            assert (stats.realizes, stats.kernels) == (2, len(params) + per_tensor)


@pytest.mark.parametrize(
    "make",
    [
        lambda ps, **kw: SGD(ps, lr=0.1, momentum=0.9, dampening=0.2, weight_decay=0.01, maximize=True, **kw),
        lambda ps, **kw: SGD(ps, lr=0.05, momentum=0.8, nesterov=True, **kw),
        lambda ps, **kw: Adam(ps, lr=0.02, betas=(0.8, 0.99), weight_decay=0.05, **kw),
        lambda ps, **kw: AdamW(ps, lr=0.01, amsgrad=True, **kw),
    ],
    ids=["sgd-momentum-maximize", "sgd-nesterov", "adam-l2", "adamw-amsgrad"],
)
def test_the_flat_update_is_bit_for_bit_the_per_tensor_update(make):
    """Same float operations per element: the flat buffer changes no bit of any parameter or state, -0.0
    included, and the parameters stay the tensors the caller holds."""
    rng = np.random.default_rng(4)
    shapes = [(5, 3), (3,), (2, 2, 2), (7,)]
    start = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    start[1][0] = -0.0
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(4)]
    grads[0][3][2] = -0.0
    runs = []
    for foreach in (None, False):
        params = [Tensor(w, requires_grad=True) for w in start]
        opt = make(params, foreach=foreach)
        for step_grads in grads:
            for p, g in zip(params, step_grads):
                p.grad = Tensor(g)
            opt.step()
        state = [{k: v.numpy() if isinstance(v, Tensor) else v for k, v in s.items()}
                 for s in opt.state_dict()["state"].values()]  # fmt: skip
        runs.append(([p.numpy() for p in params], state, opt))
    (flat, flat_state, flat_opt), (per_tensor, per_tensor_state, _) = runs
    assert len(flat_opt._buckets) == 1 and flat_opt.flat_update
    for a, b in zip(flat, per_tensor):
        assert a.tobytes() == b.tobytes()
    for a, b in zip(flat_state, per_tensor_state):
        assert a.keys() == b.keys()
        for key in a:
            assert np.asarray(a[key]).tobytes() == np.asarray(b[key]).tobytes(), key


def test_flat_gradients_are_written_by_the_kernels_that_compute_them():
    """Gradients from backward() are stored into the flat gradient buffer by their own kernels (tiled and
    blocked matmuls included: the reduce over a batch of 640 is split into blocks), so the step costs no copy,
    and training matches the per-tensor update bit for bit."""
    from boltgrad import nn
    from boltgrad.nn import functional as F

    rng = np.random.default_rng(5)
    x = Tensor(rng.standard_normal((640, 64)).astype(np.float32))
    y = Tensor(rng.integers(0, 10, 640))
    runs = []
    for foreach in (None, False):
        boltgrad.manual_seed(3)
        model = nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))
        opt = Adam(model.parameters(), lr=0.01, foreach=foreach)
        for _ in range(3):
            stats.reset()
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        kernels = stats.kernels  # (reading a view of the flat buffers below is a copy kernel)
        runs.append(([p.numpy() for p in model.parameters()], [p.grad.numpy() for p in model.parameters()], kernels))
    (flat, flat_grads, flat_kernels), (per_tensor, per_tensor_grads, per_tensor_kernels) = runs
    assert flat_kernels == per_tensor_kernels - 4 * 4 + 4  # four parameters: 16 update kernels become 4
    for a, b in zip(flat + flat_grads, per_tensor + per_tensor_grads):
        assert a.tobytes() == b.tobytes()


def test_flat_parameters_stay_the_callers_tensors():
    """Module parameters become views of the optimizer's flat buffer: reading, assigning, loading a state dict
    and autograd all act on the same objects, and the optimizer sees what was written."""
    from boltgrad import nn

    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    before = [p for p in model.parameters()]
    values = [p.numpy() for p in before]
    opt = SGD(model.parameters(), lr=0.5)
    assert [p for p in model.parameters()] == before and len(opt._buckets) == 1
    for p, v in zip(model.parameters(), values):
        np.testing.assert_array_equal(p.numpy(), v)  # read twice: still views of the flat buffer
        np.testing.assert_array_equal(p.numpy(), v)
    model.load_state_dict({k: v * 0 + 1 for k, v in model.state_dict().items()})
    with boltgrad.no_grad():
        model[0].bias.add_(1.0)
    x = Tensor(np.ones((2, 3), np.float32))
    model(x).sum().backward()
    opt.step()
    # layer 2's weight gradient: relu(3 + 2) = 5 per row and column, twice (batch of 2)
    np.testing.assert_array_equal(model[2].weight.numpy(), np.full((2, 4), 1 - 0.5 * 10, np.float32))
    # layer 0's bias: d(out)/d(h) is 2 per sample (layer 2's two rows of ones)
    np.testing.assert_array_equal(model[0].bias.numpy(), np.full(4, 2 - 0.5 * 2 * 2, np.float32))
    np.testing.assert_array_equal(opt._buckets[0].flat.numpy()[:12], model[0].weight.numpy().reshape(-1))


@pytest.mark.skipif(getattr(boltgrad, "jit", None) is None, reason="boltgrad.jit is not built yet")
def test_a_flat_parameter_as_a_jit_input_names_the_fix():
    """A parameter is a view of the optimizer's buffer, which a replay reads as state: passing it in as an input
    (whose buffer a replay would patch) is an error that says what to do instead."""
    w = Tensor(np.ones((2, 3), np.float32), requires_grad=True)
    SGD([w, Tensor(np.ones(3, np.float32), requires_grad=True)], lr=0.1)
    total = boltgrad.jit(lambda x: (x * 2).sum())
    with pytest.raises(TypeError, match=r"float32\[2, 3\].*view of a shared buffer.*contiguous"):
        for _ in range(3):
            total(w)
    assert total(w.contiguous()).item() == 12.0


def test_a_parameter_without_gradient_sends_its_group_back_to_the_per_tensor_update():
    weights, grads = _data([(3, 2), (2,), (4,)], 4)
    ours = [Tensor(w, requires_grad=True) for w in weights]
    theirs = [torch.tensor(w, requires_grad=True) for w in weights]
    opt, ref = Adam(ours, lr=0.05), torch.optim.Adam(theirs, lr=0.05)
    for step, step_grads in enumerate(grads):
        for i, (p, q, g) in enumerate(zip(ours, theirs, step_grads)):
            missing = step >= 2 and i == 1  # from step 3 the bias gets no gradient: torch leaves it alone
            p.grad, q.grad = (None, None) if missing else (Tensor(g), torch.tensor(g))
        opt.step()
        ref.step()
    assert not opt._buckets
    assert [opt.state[p]["step"].item() for p in ours] == [4, 2, 4]
    _assert_close([p.numpy() for p in ours], [p.detach().numpy() for p in theirs])


def test_step_with_lazy_gradients_from_backward():
    """Gradients straight from backward(), two parameters multiplied elementwise (each gradient reads the other)."""
    rng = np.random.default_rng(2)
    a0, b0, x0 = (rng.standard_normal(s).astype(np.float32) for s in [(3, 4), (3, 4), (2, 3)])
    a, b, x = Tensor(a0, requires_grad=True), Tensor(b0, requires_grad=True), Tensor(x0)
    ta, tb, tx = torch.tensor(a0, requires_grad=True), torch.tensor(b0, requires_grad=True), torch.tensor(x0)
    opt, ref = Adam([a, b], lr=0.05), torch.optim.Adam([ta, tb], lr=0.05)
    for _ in range(3):
        opt.zero_grad()
        ref.zero_grad()
        ((x @ (a * b)).relu() ** 2).mean().backward()
        ((tx @ (ta * tb)).relu() ** 2).mean().backward()
        opt.step()
        ref.step()
    _assert_close([a.numpy(), b.numpy()], [ta.detach().numpy(), tb.detach().numpy()])


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.skipif(getattr(boltgrad, "jit", None) is None, reason="boltgrad.jit is not built yet")
def test_a_jit_replayed_step_sees_new_rates_and_step_counts():
    """A replay runs no Python: the bias corrections and a scheduler's rates must come from device buffers."""
    rng = np.random.default_rng(3)
    w0, x0 = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((5, 4)).astype(np.float32)
    w, x, tw, tx = Tensor(w0, requires_grad=True), Tensor(x0), torch.tensor(w0, requires_grad=True), torch.tensor(x0)
    opt, ref = Adam([w], lr=0.05), torch.optim.Adam([tw], lr=0.05)
    sched, ref_sched = lr_scheduler.StepLR(opt, 2, 0.5), torch_schedules.StepLR(ref, 2, 0.5)

    @boltgrad.jit
    def train_step(x):
        opt.zero_grad()
        ((x @ w).relu() ** 2).mean().backward()
        opt.step()

    for _ in range(6):
        train_step(x)
        ref.zero_grad()
        ((tx @ tw).relu() ** 2).mean().backward()
        ref.step()
        sched.step()
        ref_sched.step()
    np.testing.assert_allclose(w.numpy(), tw.detach().numpy(), atol=1e-6)


# ---- groups, state dicts, errors


def test_param_groups_have_their_own_options():
    weights, grads = _data([(3,), (2,)], 3)
    ours = [Tensor(w, requires_grad=True) for w in weights]
    theirs = [torch.tensor(w, requires_grad=True) for w in weights]
    opt = SGD([{"params": [ours[0]]}, {"params": [ours[1]], "lr": 0.5, "momentum": 0.9}], lr=0.1)
    ref = torch.optim.SGD([{"params": [theirs[0]]}, {"params": [theirs[1]], "lr": 0.5, "momentum": 0.9}], lr=0.1)
    assert opt.param_groups[1]["momentum"] == 0.9 and opt.param_groups[0]["momentum"] == 0.0
    for step_grads in grads:
        for p, q, g in zip(ours, theirs, step_grads):
            p.grad, q.grad = Tensor(g), torch.tensor(g)
        opt.step()
        ref.step()
    _assert_close([p.numpy() for p in ours], [p.detach().numpy() for p in theirs])
    extra = Tensor([1.0], requires_grad=True)
    opt.add_param_group({"params": extra, "lr": 0.01})
    assert opt.param_groups[2]["params"] == [extra] and opt.param_groups[2]["lr"] == 0.01
    with pytest.raises(ValueError, match="more than once"):
        opt.add_param_group({"params": [extra]})


def test_state_dict_round_trip_continues_identically():
    weights, grads = _data([(3, 2), (2,)], 6)
    a = [Tensor(w, requires_grad=True) for w in weights]
    opt_a = AdamW(a, lr=0.03, amsgrad=True)
    for step_grads in grads[:3]:
        for p, g in zip(a, step_grads):
            p.grad = Tensor(g)
        opt_a.step()
    sd = opt_a.state_dict()
    assert set(sd) == {"state", "param_groups"} and set(sd["state"]) == {0, 1}
    assert sd["state"][0]["step"] == 3 and isinstance(sd["state"][0]["exp_avg"], Tensor)
    assert sd["param_groups"][0]["params"] == [0, 1] and sd["param_groups"][0]["lr"] == 0.03
    b = [Tensor(p.numpy(), requires_grad=True) for p in a]
    opt_b = AdamW(b, lr=0.5)
    opt_b.load_state_dict(sd)
    assert opt_b.param_groups[0]["lr"] == 0.03
    assert opt_b.state[b[0]]["exp_avg"] is not sd["state"][0]["exp_avg"]  # its own buffers
    for step_grads in grads[3:]:
        for pa, pb, g in zip(a, b, step_grads):
            pa.grad, pb.grad = Tensor(g), Tensor(g)
        opt_a.step()
        opt_b.step()
    _assert_close([p.numpy() for p in b], [p.numpy() for p in a], atol=0, rtol=0)


def test_zero_grad_and_parameters_without_grad():
    p, q = Tensor([1.0, 2.0], requires_grad=True), Tensor([3.0], requires_grad=True)
    opt = SGD([p, q], lr=1.0)
    p.grad = Tensor([0.5, 0.5])
    opt.step()  # q has no gradient: left alone
    assert p.tolist() == [0.5, 1.5] and q.tolist() == [3.0]
    opt.zero_grad(set_to_none=False)
    assert p.grad.tolist() == [0.0, 0.0] and q.grad is None
    opt.zero_grad()
    assert p.grad is None


def test_invalid_options_are_errors():
    p = Tensor([1.0], requires_grad=True)
    with pytest.raises(ValueError, match="learning rate"):
        SGD([p], lr=-1)
    with pytest.raises(ValueError, match="Nesterov"):
        SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        Adam([p], betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="empty"):
        Adam([])
    with pytest.raises(TypeError, match="floating point"):
        SGD([Tensor([1, 2])], lr=0.1)


# ---- gradient clipping


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
def test_clip_grad_norm_matches_torch(norm_type):
    weights, grads = _data([(4, 3), (5,)], 1)
    ours = [Tensor(w, requires_grad=True) for w in weights]
    theirs = [torch.tensor(w, requires_grad=True) for w in weights]
    for p, q, g in zip(ours, theirs, grads[0]):
        p.grad, q.grad = Tensor(g), torch.tensor(g)
    total = clip_grad_norm_(ours, max_norm=1.0, norm_type=norm_type)
    want = torch.nn.utils.clip_grad_norm_(theirs, max_norm=1.0, norm_type=norm_type)
    assert total.item() == pytest.approx(want.item(), rel=1e-5)
    _assert_close([p.grad.numpy() for p in ours], [q.grad.numpy() for q in theirs], atol=1e-6)
    clip_grad_value_(ours, 0.05)
    torch.nn.utils.clip_grad_value_(theirs, 0.05)
    _assert_close([p.grad.numpy() for p in ours], [q.grad.numpy() for q in theirs], atol=0)


def test_clip_grad_norm_small_norms_are_left_alone_and_nonfinite_can_raise():
    p = Tensor([0.3, 0.4], requires_grad=True)
    p.grad = Tensor([0.3, 0.4])
    assert clip_grad_norm_([p], 10.0).item() == pytest.approx(0.5)
    assert p.grad.tolist() == pytest.approx([0.3, 0.4])
    p.grad = Tensor([math.inf, 1.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(p, 1.0, error_if_nonfinite=True)


# ---- learning-rate schedules


def _lr_sequences(make_ours, make_theirs, steps=14, groups=2):
    def groups_of(lib, cls, tensor):
        params = [tensor([1.0], requires_grad=True) for _ in range(groups)]
        return cls([{"params": [p], "lr": 0.1 * (i + 1)} for i, p in enumerate(params)], lr=0.1)

    opt_ours = groups_of(boltgrad, SGD, Tensor)
    opt_theirs = groups_of(torch, torch.optim.SGD, torch.tensor)
    ours, theirs = make_ours(opt_ours), make_theirs(opt_theirs)
    seq_ours, seq_theirs = [], []
    for _ in range(steps):
        seq_ours.append(ours.get_last_lr())
        seq_theirs.append(theirs.get_last_lr())
        opt_theirs.step()
        ours.step()
        theirs.step()
    return seq_ours, seq_theirs, ours


SCHEDULES = {
    "step": lambda m, o: m.StepLR(o, step_size=3, gamma=0.5),
    "cosine": lambda m, o: m.CosineAnnealingLR(o, T_max=5, eta_min=0.01),
    "linear": lambda m, o: m.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=4),
    "lambda": lambda m, o: m.LambdaLR(o, lr_lambda=lambda e: 0.9**e),
    "warmup-then-cosine": lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.1, total_iters=3), m.CosineAnnealingLR(o, T_max=6)], milestones=[3]
    ),
    "three-phases": lambda m, o: m.SequentialLR(
        o,
        [m.LinearLR(o, start_factor=0.5, total_iters=2), m.StepLR(o, 2, 0.5), m.LambdaLR(o, lambda e: 1 / (e + 1))],
        milestones=[2, 6],
    ),
}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedules_match_torch(name):
    make = SCHEDULES[name]
    seq_ours, seq_theirs, _ = _lr_sequences(lambda o: make(lr_scheduler, o), lambda o: make(torch_schedules, o))
    flat_ours, flat_theirs = [lr for lrs in seq_ours for lr in lrs], [lr for lrs in seq_theirs for lr in lrs]
    assert flat_ours == pytest.approx(flat_theirs, rel=1e-12, abs=0)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_scheduler_state_dict_resumes():
    make = SCHEDULES["warmup-then-cosine"]
    seq, _, sched = _lr_sequences(lambda o: make(lr_scheduler, o), lambda o: make(torch_schedules, o), 5)
    state = sched.state_dict()
    assert state["last_epoch"] == 5
    opt = SGD([{"params": [Tensor([1.0], requires_grad=True)], "lr": 0.1 * (i + 1)} for i in range(2)], lr=0.1)
    again = make(lr_scheduler, opt)
    again.load_state_dict(state)
    opt.load_state_dict(sched.optimizer.state_dict())  # the rates live in the optimizer, as in torch
    assert again.get_last_lr() == sched.get_last_lr()
    sched.step()
    again.step()
    assert again.get_last_lr() == sched.get_last_lr()
