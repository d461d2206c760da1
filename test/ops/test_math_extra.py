"""Special functions, activations, scans, logical reductions, norms, bmm/outer and einsum against torch: values,
gradients, dtypes, edge shapes and the accuracy near 0 that the plain formulas lose."""

# ruff: noqa: B023
# (check() calls each lambda at once, inside its loop: late binding of loop variables cannot bite)

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import batch, check, lib

import boltgrad
from boltgrad import Tensor

NAN, INF = math.nan, math.inf
SPECIAL = np.array(
    [0.0, -0.0, 1e-30, -1e-30, 1e-8, -1e-8, 1e-4, 0.3, -0.3, 0.5, -0.5, 0.9, 1.0, -1.0, 2.5, -3.7, 8.0, -8.0, 30.0,
     -30.0, 100.0, -100.0, 1e30, -1e30, INF, -INF, NAN], dtype=np.float32,
)  # fmt: skip

# name -> (function, low, high): inputs drawn in [low, high] for the random checks
SPECIAL_FNS = {
    "expm1": (lambda x: x.expm1(), -3, 3),
    "log1p": (lambda x: x.log1p(), -0.9, 5),
    "sigmoid": (lambda x: x.sigmoid(), -10, 10),
    "tanh": (lambda x: x.tanh(), -5, 5),
    "erf": (lambda x: x.erf(), -4, 4),
    "erfc": (lambda x: x.erfc(), -3, 6),
    "atan": (lambda x: x.atan(), -5, 5),
    "asin": (lambda x: x.asin(), -0.95, 0.95),
    "acos": (lambda x: x.acos(), -0.95, 0.95),
    "sinh": (lambda x: x.sinh(), -5, 5),
    "cosh": (lambda x: x.cosh(), -5, 5),
    "asinh": (lambda x: x.asinh(), -5, 5),
    "acosh": (lambda x: x.acosh(), 1.05, 5),
    "atanh": (lambda x: x.atanh(), -0.95, 0.95),
}

ACTIVATIONS = {
    "relu6": (lambda x: x.relu6(), lambda x: torch.nn.functional.relu6(x)),
    "leaky_relu": (lambda x: x.leaky_relu(), lambda x: torch.nn.functional.leaky_relu(x)),
    "leaky_relu_0.2": (lambda x: x.leaky_relu(0.2), lambda x: torch.nn.functional.leaky_relu(x, 0.2)),
    "elu": (lambda x: x.elu(), lambda x: torch.nn.functional.elu(x)),
    "elu_2": (lambda x: x.elu(alpha=2.0), lambda x: torch.nn.functional.elu(x, alpha=2.0)),
    # torch's vectorized float32 GELU gives nan at +inf on AVX-512 CPUs (its scalar path and float64 give inf)
    "gelu": (lambda x: x.gelu(), lambda x: torch.nn.functional.gelu(x.double()).to(x.dtype)),
    "gelu_tanh": (lambda x: x.gelu(approximate="tanh"), lambda x: torch.nn.functional.gelu(x, approximate="tanh")),
    "silu": (lambda x: x.silu(), lambda x: torch.nn.functional.silu(x)),
    "hardswish": (lambda x: x.hardswish(), lambda x: torch.nn.functional.hardswish(x)),
    "hardsigmoid": (lambda x: x.hardsigmoid(), lambda x: torch.nn.functional.hardsigmoid(x)),
    "softplus": (lambda x: x.softplus(), lambda x: torch.nn.functional.softplus(x)),
    "softplus_b2_t5": (lambda x: x.softplus(2.0, 5.0), lambda x: torch.nn.functional.softplus(x, 2.0, 5.0)),
    "mish": (lambda x: x.mish(), lambda x: torch.nn.functional.mish(x)),
    "glu": (lambda x: x.glu(), lambda x: torch.nn.functional.glu(x)),
    "glu_0": (lambda x: x.glu(0), lambda x: torch.nn.functional.glu(x, 0)),
}


def _torch_name(name):
    return lambda x: getattr(torch, name)(x)


# ---------------------------------------------------------------- special functions


def _grid(low: float, high: float, dtype: str) -> np.ndarray:
    """A dense grid of [low, high] plus magnitudes from 1e-12 to 1 of both signs inside it."""
    x = np.concatenate([np.linspace(low, high, 2001), np.geomspace(1e-12, 1, 150), -np.geomspace(1e-12, 1, 150)])
    return x[(x >= low) & (x <= high)].astype(dtype)


def test_special_functions_values_and_gradients():
    """Dense grids, values and gradients, float32 and float64: each branch's gradient must be right too."""
    with batch():
        for fn, low, high in SPECIAL_FNS.values():
            check(fn, _grid(low, high, "float32"), grad=True)
            check(fn, _grid(low, high, "float64"), grad=True, rtol=1e-11)
        check(SPECIAL_FNS["tanh"][0], np.array(0.3, np.float32), grad=True)  # 0-d


def test_special_functions_half_types_compute_in_float32():
    with batch():
        for fn, low, high in SPECIAL_FNS.values():
            check(fn, (40,), dtype="float16", low=low, high=high, atol=2e-3, rtol=2e-3)
            check(fn, (40,), dtype="bfloat16", low=low, high=high, atol=1e-2, rtol=1e-2)


def test_special_functions_at_edges():
    """Signed zeros, tiny and huge magnitudes, infinities and NaN, forward; gradients where they are finite."""
    with batch():
        for name, (fn, _, _) in SPECIAL_FNS.items():
            check(fn, SPECIAL, rtol=2e-5)
            if name in ("expm1", "log1p", "sigmoid", "tanh", "erf", "erfc", "atan"):
                check(fn, SPECIAL.astype(np.float64), rtol=1e-12, atol=1e-300)
            check(fn, np.zeros((0, 3), np.float32))
        finite = SPECIAL[np.isfinite(SPECIAL) & (np.abs(SPECIAL) < 50)]
        for name in ("expm1", "log1p", "tanh", "erf"):
            inputs = finite[finite > -1] if name == "log1p" else finite
            check(SPECIAL_FNS[name][0], inputs, grad=True, rtol=1e-4, atol=1e-6)
        # no NaN gradients where the value saturates
        for fn in (lambda x: x.tanh(), lambda x: x.sigmoid(), lambda x: x.erf(), lambda x: x.atan()):
            check(fn, np.array([-INF, -1e30, -200.0, 200.0, 1e30, INF], np.float32), grad=True)


def test_relative_accuracy_near_zero():
    """tanh, expm1, log1p, sinh, asinh, atanh, atan, erf of tiny x are x-like values: exact to float32 precision."""
    tiny = np.array([1e-8, -1e-8, 3e-12, 1e-20, -2.5e-30, 1e-38, 1e-6, -7e-5], np.float32)
    with batch():
        for name in ("tanh", "expm1", "log1p", "sinh", "asinh", "atanh", "atan", "erf"):
            check(SPECIAL_FNS[name][0], tiny, atol=0, rtol=3e-7)
            check(SPECIAL_FNS[name][0], tiny.astype(np.float64), atol=0, rtol=1e-15)


def test_accuracy_in_ulps():
    """Maximum errors in float32 ulps against torch in float64; erf also absolute (~1e-7) on a dense grid."""
    limits = {"tanh": 4, "expm1": 16, "sigmoid": 16, "atan": 4, "erf": 4, "log1p": 4, "asinh": 4, "atanh": 5}
    inputs, outputs = {}, {}
    for name in limits:
        fn, low, high = SPECIAL_FNS[name]
        inputs[name] = _grid(low, high, "float32")
        outputs[name] = fn(Tensor(inputs[name]))
    erf_x = np.linspace(-6, 6, 120_001).astype(np.float32)
    erf32, erf64 = Tensor(erf_x).erf(), Tensor(erf_x.astype(np.float64)).erf()
    Tensor.realize_all([*outputs.values(), erf32, erf64])
    for name, limit in limits.items():
        want = SPECIAL_FNS[name][0](torch.from_numpy(inputs[name]).double()).numpy()
        ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
        assert (np.abs(outputs[name].numpy() - want) / ulp).max() <= limit, name
    want = torch.erf(torch.from_numpy(erf_x).double()).numpy()
    assert np.abs(erf32.numpy() - want).max() < 1.2e-7
    assert np.abs(erf64.numpy() - want).max() < 1e-15


def test_atan2():
    y = [0.0, -0.0, 0.0, -0.0, 1.0, -1.0, 1.0, -1.0, INF, -INF, INF, 2.0, 0.0, NAN, 1.0, 1e-30, 3.0]
    x = [0.0, 0.0, -0.0, -0.0, 1.0, 1.0, -1.0, -1.0, INF, INF, -INF, 0.0, -3.0, 1.0, NAN, -1e30, -INF]
    y, x = np.array(y, np.float32), np.array(x, np.float32)
    with batch():
        check(lambda a, b: a.atan2(b), y, x, rtol=2e-7, atol=0)
        check(lambda a, b: a.atan2(b), y.astype(np.float64), x.astype(np.float64), rtol=1e-15, atol=0)
        check(lambda a, b: lib(a).atan2(a, b), (5, 6), (5, 6), grad=True, low=-3, high=3)
        check(lambda a, b: lib(a).atan2(a, b), (3, 1), (1, 4), grad=True, dtype="float64")
        check(lambda a: a.atan2(0.5), (4,), grad=True, torch_fn=lambda a: a.atan2(torch.tensor(0.5)))
        check(lambda a, b: a.atan2(b), (8,), (8,), dtype="float16", atol=2e-3, rtol=2e-3)
        check(lambda a, b: a.arctan2(b), (3,), (3,))


def test_lerp():
    with batch():
        for w in (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, -0.5):
            check(lambda a, b: a.lerp(b, w), (3, 4), (3, 4), grad=True)
        check(lambda a, b, w: lib(a).lerp(a, b, w), (3, 4), (4,), (3, 1), grad=True, low=-1, high=2)
        check(lambda a, b: a.lerp(b, 0.3), (5,), (5,), dtype="float64", grad=True)
        check(lambda a, b: a.lerp(b, 0.3), (5,), (5,), dtype="float16")
    # exact at both ends, as torch is
    a, b = Tensor([1e8, -3.3]), Tensor([1.0, 7.7])
    assert a.lerp(b, 1.0).tolist() == b.tolist() and a.lerp(b, 0.0).tolist() == a.tolist()


# ---------------------------------------------------------------- activations


def test_activations_values_and_gradients():
    with batch():
        for name, (fn, torch_fn) in ACTIVATIONS.items():
            check(fn, (6, 8), torch_fn=torch_fn, low=-8, high=8, grad=True)
            check(fn, (6, 8), torch_fn=torch_fn, dtype="float64", low=-8, high=8)
            check(fn, (6, 8), torch_fn=torch_fn, dtype="float16", low=-8, high=8)
            if not name.startswith("glu"):
                check(fn, SPECIAL, torch_fn=torch_fn)
        for name in ("gelu", "gelu_tanh", "silu", "hardswish", "softplus"):
            fn, torch_fn = ACTIVATIONS[name]
            # (torch's hard* gradients use float32 constants: 3e-8 off in float64)
            check(fn, (6, 8), torch_fn=torch_fn, dtype="float64", low=-8, high=8, grad=True, rtol=1e-7)
            check(fn, (6, 8), torch_fn=torch_fn, dtype="bfloat16", low=-8, high=8)
        check(lambda x: x.softplus(), np.array([-40.0, 19.9, 20.0, 20.5, 1e30], np.float32), grad=True,
              torch_fn=lambda x: torch.nn.functional.softplus(x))  # fmt: skip
        check(lambda x: x.gelu(), (), grad=True, torch_fn=lambda x: torch.nn.functional.gelu(x))
        check(lambda x: x.silu(), (0, 4), torch_fn=lambda x: torch.nn.functional.silu(x))


def test_activations_on_non_contiguous_input():
    with batch():
        for name in ("gelu", "softplus", "glu_0", "hardswish"):
            fn, torch_fn = ACTIVATIONS[name]
            check(lambda x: fn(x.T[1:, ::3]), (6, 5), torch_fn=lambda x: torch_fn(x.T[1:, ::3]), low=-4, high=4,
                  grad=True)  # fmt: skip


def test_activation_corners_pass_no_gradient_like_torch():
    corners = np.array([-3.0, 0.0, 3.0, 6.0, -1.0, 1.0], np.float32)
    with batch():
        for name in ("relu6", "hardswish", "hardsigmoid", "leaky_relu", "elu"):
            check(ACTIVATIONS[name][0], corners, torch_fn=ACTIVATIONS[name][1], grad=True)
        check(lambda x: x.hardtanh(-1.0, 1.0), corners, torch_fn=lambda x: torch.nn.functional.hardtanh(x),
              grad=True)  # fmt: skip


def test_activation_errors():
    with pytest.raises(ValueError):
        Tensor([1.0]).gelu(approximate="fast")
    with pytest.raises(RuntimeError):
        Tensor([1.0, 2.0, 3.0]).glu()
    with pytest.raises(RuntimeError):
        Tensor(1.0).glu()


# ---------------------------------------------------------------- scans


def test_cumsum_cumprod():
    with batch():
        for op in ("cumsum", "cumprod"):
            kw = {"low": 0.5, "high": 1.5} if op == "cumprod" else {}
            for shape, dim in [((7,), 0), ((2, 3, 4), -2), ((4, 1), 1)]:
                check(lambda x: getattr(x, op)(dim), shape, grad=True, **kw)
            check(lambda x: getattr(x, op)(0), (), grad=True, **kw)
            check(lambda x: getattr(x, op)(1), (3, 0), **kw)
            check(lambda x: getattr(lib(x), op)(x.T, 1), (5, 3), grad=True, **kw)  # non-contiguous
            check(lambda x: getattr(x, op)(-1), (2, 200), grad=True, rtol=1e-4, **kw)  # blocked: 4 blocks of 64
            check(lambda x: getattr(x, op)(1), (3, 9), dtype="float64", grad=True, **kw)
            check(lambda x: getattr(x, op)(1), (3, 9), dtype="float16", atol=1e-2, rtol=1e-2, **kw)
            for dt in ("int32", "bool", "uint8"):
                check(lambda x: getattr(x, op)(1), (3, 6), dtype=dt, low=-3, high=3)
            check(lambda x: getattr(x, op)(1, dtype=lib(x).float64), (2, 5), dtype="int32", low=-3, high=3)
        zeros = np.array([[2.0, 0.0, 3.0, 0.0, 5.0], [1.5, -2.0, 0.0, 4.0, 1.0]], np.float32)
        check(lambda x: x.cumprod(1), zeros, grad=True)  # gradients through exact zeros, as torch's
        long_zeros = np.random.default_rng(1).uniform(0.5, 1.5, (2, 200)).astype(np.float32)
        long_zeros[0, 7] = long_zeros[1, 150] = 0
        check(lambda x: x.cumprod(1), long_zeros, grad=True, rtol=1e-4)


def test_cumsum_long_rows():
    """Rows of thousands use the blocked scan (recursing on the block totals past 128 blocks, as 9000 does)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4096)).astype(np.float32)
    ints = rng.integers(-100, 100, 9000)
    got, got_ints = Tensor(x).cumsum(1), Tensor(ints).cumsum(0)
    Tensor.realize_all([got, got_ints])
    np.testing.assert_allclose(got.numpy(), np.cumsum(x.astype(np.float64), 1), atol=2e-4, rtol=1e-5)
    assert got_ints.tolist() == np.cumsum(ints).tolist()


def test_scan_errors():
    with pytest.raises(TypeError):
        Tensor([1.0, 2.0]).cumsum()
    with pytest.raises(IndexError):
        Tensor([1.0, 2.0]).cumsum(1)
    assert Tensor([[1, 2], [3, 4]]).cumsum(axis=1).tolist() == [[1, 3], [3, 7]]


# ---------------------------------------------------------------- logical reductions and norms


def test_any_all_count_nonzero():
    x = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [NAN, 0.0, -2.0], [3.0, 4.0, 5.0]], np.float32)
    with batch():
        for op in ("any", "all"):
            check(lambda t: getattr(t, op)(), x)
            for dim in (0, 1, -1):
                for keepdim in (False, True):
                    check(lambda t: getattr(t, op)(dim, keepdim=keepdim), x)
            check(lambda t: getattr(lib(t), op)(t, dim=(0, 1)), x)
            for dt in ("bool", "int32", "uint8", "float16"):
                check(lambda t: getattr(t, op)(1), (3, 4), dtype=dt, low=0, high=1)
            check(lambda t: getattr(t, op)(), np.zeros((0, 3), np.float32))
            check(lambda t: getattr(t, op)(1), np.zeros((2, 0), np.float32))
            check(lambda t: getattr(t, op)(), np.array(2.0, np.float32))
        check(lambda t: t.count_nonzero(), x)
        check(lambda t: lib(t).count_nonzero(t, dim=1), x)
        check(lambda t: t.count_nonzero(dim=(0, 1)), x)


NORM_PS = [2, 1, 3, 0.5, INF, -INF, 0, "fro"]


def test_norm():
    with batch():
        for p in NORM_PS:
            check(lambda x: x.norm(p, dim=1), (3, 4), grad=p != 0)
            check(lambda x: lib(x).norm(x, p, dim=(0, 1), keepdim=True), (3, 4))
        check(lambda x: x.norm(3, dim=0), (3, 4), dtype="float64", grad=True)
        check(lambda x: x.norm(), (3, 4), grad=True)
        for keepdim in (False, True):
            check(lambda x: x.norm(dim=-1, keepdim=keepdim), (3, 4), grad=True)
        for p in (2, INF):
            check(lambda x: x.norm(p), (8,), dtype="float16", atol=1e-2, rtol=1e-2)
            check(lambda x: x.norm(p), (8,), dtype="bfloat16", atol=3e-2, rtol=3e-2)
        check(lambda x: x.norm(), (0, 3))
        check(lambda x: x.norm(dim=0), (0, 3))
        check(lambda x: x.norm(2, dtype=lib(x).float64), (4,))
    with pytest.raises(NotImplementedError):
        Tensor([[1.0]]).norm("nuc")
    with pytest.raises(TypeError):
        Tensor([1, 2]).norm()


# ---------------------------------------------------------------- bmm, outer, einsum


def test_bmm_outer():
    with batch():
        check(lambda a, b: a.bmm(b), (2, 3, 4), (2, 4, 5), grad=True)
        check(lambda a, b: lib(a).bmm(a, b), (1, 1, 3), (1, 3, 2), grad=True)
        check(lambda a, b: a.bmm(b), (2, 0, 4), (2, 4, 3))
        check(lambda a, b: a.bmm(b), (2, 3, 4), (2, 4, 5), dtype="float16", atol=1e-2, rtol=1e-2)
        check(lambda a, b: a.outer(b), (4,), (3,), grad=True)
        check(lambda a, b: lib(a).outer(a, b), (0,), (3,))
        check(lambda a, b: a.ger(b), (2,), (5,), dtype="float64", grad=True)
        check(lambda a, b: lib(a).outer(a, b), (3,), (2,), dtype="int32", low=-5, high=5)
    with pytest.raises(RuntimeError):
        Tensor.ones(2, 3, 4).bmm(Tensor.ones(3, 4, 5))
    with pytest.raises(RuntimeError):
        Tensor.ones(3, 4).bmm(Tensor.ones(4, 5))
    with pytest.raises(RuntimeError):
        Tensor.ones(2, 2).outer(Tensor.ones(2))


EINSUM = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("ij,jk", [(3, 4), (4, 5)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("ii->i", [(4, 4)]),
    ("ii", [(4, 4)]),
    ("ij->ji", [(2, 3)]),
    ("ij->", [(2, 3)]),
    ("i,i->", [(5,), (5,)]),
    ("i,j->ij", [(3,), (4,)]),
    ("...ij->...ji", [(2, 3, 4, 5)]),
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)]),
    ("b...,b...->b", [(2, 3, 4), (2, 3, 4)]),
    ("i...->...", [(3, 2, 2)]),
    ("...ii->...i", [(2, 3, 3)]),
    ("...ii->i", [(2, 3, 3)]),
    ("iij->j", [(3, 3, 4)]),
    ("ijii->ij", [(2, 3, 2, 2)]),
    ("iii->i", [(3, 3, 3)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
    ("ab,bc,ca->", [(2, 3), (3, 4), (4, 2)]),
    ("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)]),
    ("i,i,i->i", [(4,), (4,), (4,)]),
    ("ij,ij->ij", [(3, 1), (1, 4)]),
    ("Ab,ba", [(2, 3), (3, 2)]),
    (" i j , j k -> i k ", [(2, 3), (3, 2)]),
    ("ij,jk->ik", [(3, 0), (0, 4)]),
    ("i->", [(0,)]),
]


def test_einsum():
    with batch():
        for i, (eq, shapes) in enumerate(EINSUM):
            check(lambda *ops: lib(ops[0]).einsum(eq, *ops), *shapes, grad=i % 2 == 0)
        check(lambda a, b: lib(a).einsum("ij,jk->ik", [a, b]), (2, 3), (3, 2))  # operands as one list
        check(lambda a, b: lib(a).einsum(a, [0, 1], b, [1, 2], [0, 2]), (2, 3), (3, 4), grad=True)
        check(lambda a, b: lib(a).einsum(a, [Ellipsis, 0], b, [Ellipsis, 0]), (2, 3), (2, 3))
        check(lambda a, b: lib(a).einsum("ij,jk->ik", a, b), (3, 4), (4, 2), dtype="float16", atol=1e-2, rtol=1e-2)
        check(lambda a, b: lib(a).einsum("ij,jk->ik", a, b), (3, 4), (4, 2), dtype="int64", low=-4, high=4)
        check(lambda a: lib(a).einsum("ij->j", a.T), (3, 4), grad=True)


def test_einsum_errors():
    a, b = Tensor.ones(2, 3), Tensor.ones(4, 5)
    for eq, ops in [
        ("ij,jk->ik", (a, b)),  # sizes of j differ
        ("ij->ik", (a,)),  # k is not an input
        ("ij->ii", (a,)),  # repeated output
        ("ijk->i", (a,)),  # too many subscripts
        ("i->i", (a,)),  # too few
        ("ij,jk->ik", (a,)),  # operand count
        ("i1->i", (a,)),  # not a letter
        ("....->", (a,)),
        ("ii->i", (a,)),  # a diagonal of a non-square pair
    ]:
        with pytest.raises(ValueError):
            boltgrad.einsum(eq, *ops)


# ---------------------------------------------------------------- module level and the PYTHON device


def test_module_level_functions():
    x = Tensor([[0.5, -1.0], [2.0, 0.25]])
    names = ("erf", "erfc", "atan", "asin", "sinh", "cosh", "asinh", "atanh", "expm1", "log1p", "tanh")
    xc = x.clamp(-0.9, 0.9)
    outs = {name: getattr(boltgrad, name)(xc) for name in names}
    others = [
        boltgrad.cumsum(x, 0), boltgrad.cumprod(x, dim=1), boltgrad.any(x > 1), boltgrad.all(x > 1),
        boltgrad.norm(x, 1), boltgrad.outer(Tensor([1.0, 2.0]), Tensor([3.0])),
        boltgrad.lerp(Tensor([0.0]), Tensor([10.0]), 0.25), boltgrad.count_nonzero(x),
        boltgrad.atan2(Tensor([1.0]), Tensor([1.0])),
    ]  # fmt: skip
    Tensor.realize_all([*outs.values(), *others])
    for name in names:
        want = getattr(torch, name)(torch.tensor(xc.numpy())).numpy()
        np.testing.assert_allclose(outs[name].numpy(), want, rtol=2e-6)
    assert others[0].tolist() == [[0.5, -1.0], [2.5, -0.75]]
    assert others[1].tolist() == [[0.5, -0.5], [2.0, 0.5]]
    assert others[2].item() is True and others[3].item() is False
    assert others[4].item() == 3.75 and others[5].tolist() == [[3.0], [6.0]]
    assert others[6].tolist() == [2.5] and others[7].item() == 4
    assert others[8].item() == pytest.approx(math.pi / 4)
    assert boltgrad.bmm(x.reshape(1, 2, 2), x.reshape(1, 2, 2)).shape == (1, 2, 2)
    with pytest.raises(TypeError):
        boltgrad.erf(0.5)


def test_python_device_subset():
    with batch():
        for name in ("tanh", "erf", "expm1", "log1p", "atan", "sigmoid"):
            check(SPECIAL_FNS[name][0], (5,), device="PYTHON", low=-0.9, high=2, grad=True)
        check(SPECIAL_FNS["tanh"][0], np.array([1e-8, -30.0, INF, 0.2], np.float32), device="PYTHON", rtol=3e-7)
        check(lambda x: x.gelu(), (6,), device="PYTHON", grad=True, torch_fn=lambda x: torch.nn.functional.gelu(x))
        check(lambda x: x.cumsum(1), (2, 5), device="PYTHON", grad=True)
        check(lambda x: x.cumprod(0), (4, 2), device="PYTHON", grad=True, low=0.5, high=1.5)
        check(lambda x: x.norm(dim=1), (3, 4), device="PYTHON", grad=True)
        check(lambda x: x.any(1), (3, 2), device="PYTHON", dtype="bool")
        check(lambda a, b: lib(a).einsum("ij,jk->ik", a, b), (2, 3), (3, 2), device="PYTHON", grad=True)
        check(lambda a, b: a.atan2(b), (5,), (5,), device="PYTHON", grad=True)
