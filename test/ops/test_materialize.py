"""What the scheduler stores once instead of letting a fused kernel recompute it, and how the lowering loops over
an output written through a reshape. Each case is a pattern of a transformer's decode step."""

from __future__ import annotations

import numpy as np

import boltgrad.nn.functional as F
from boltgrad import Tensor
from boltgrad.codegen.lower import lower_kernel
from boltgrad.ir.ops import Op
from boltgrad.schedule.schedule import create_schedule

RNG = np.random.default_rng(0)


def _t(*shape: int) -> Tensor:
    return Tensor(RNG.standard_normal(shape).astype(np.float32)).realize()


def _kernels(*outs: Tensor) -> list:
    return [it for it in create_schedule([o.node for o in outs]).items if hasattr(it, "ast")]


def _ops(item, op: Op) -> int:
    return sum(n.op is op for n in item.ast.toposort())


def test_attention_probabilities_are_stored_not_recomputed_per_head_dim():
    """softmax(scores) @ V broadcasts each probability over the 64 values of a head: the exponentials are
    computed once into a buffer, and the weighted sum only reads them."""
    scores, v = _t(1, 9, 1, 512), _t(1, 9, 512, 64)
    out = scores.softmax(-1) @ v
    kernels = _kernels(out)
    weighted = [k for k in kernels if k.ast.src[1].shape == (1, 9, 1, 64)]
    assert len(weighted) == 1 and _ops(weighted[0], Op.EXP2) == 0
    assert sum(_ops(k, Op.EXP2) for k in kernels) >= 1
    want = np.exp(scores.numpy() - scores.numpy().max(-1, keepdims=True))
    want = (want / want.sum(-1, keepdims=True)) @ v.numpy()
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-6)


def test_cheap_broadcasts_still_fuse():
    """A broadcast of plain arithmetic (a bias, a scale) is recomputed, as before: no extra kernel."""
    x, w, b = _t(8, 32), _t(16, 32), _t(16)
    assert len(_kernels((x @ w.T + b * 2).relu())) == 1


def test_a_masked_gradient_read_by_many_output_columns_is_stored_once():
    """The gradient of a relu layer's weight reads relu's mask times the incoming gradient (three inputs) once
    per 16 output columns of its register tile: it is stored once instead. With one input, or repeated fewer
    than 16 times, it still fuses."""
    h, b, g, x = _t(128, 256), _t(256), _t(128, 256), _t(128, 784)
    masked = g.where((h + b) > 0, 0.0)  # torch.where order: g where the mask holds, else 0
    grad_w = masked.T @ x  # each element read by 784 output columns
    kernels = _kernels(grad_w)
    assert len(kernels) == 2 and _ops(kernels[0], Op.REDUCE) == 0 and _ops(kernels[1], Op.CMPLT) == 0
    want = np.where(h.numpy() + b.numpy() > 0, g.numpy(), 0.0).T @ x.numpy()
    np.testing.assert_allclose(grad_w.numpy(), want, rtol=1e-4, atol=1e-3)
    assert len(_kernels(g.relu().T @ x)) == 1  # one input
    assert len(_kernels(masked.T @ x[:, :10])) == 1  # 10 columns


def test_a_projection_read_twice_through_views_is_computed_once():
    """A rotary embedding reads both halves of a projection (q[:, :32] and q[:, 32:]) in one kernel: the
    projection is stored, not computed twice per output."""
    x, w, cos, sin = _t(1, 64), _t(64, 64), _t(1, 32), _t(1, 32)
    q = x @ w.T
    q1, q2 = q[:, :32], q[:, 32:]
    out = F.pad(q1 * cos - q2 * sin, (0, 32)) + F.pad(q2 * cos + q1 * sin, (32, 0))
    kernels = _kernels(out)
    assert len(kernels) == 2  # the projection, then the rotation reading it
    assert _ops(kernels[0], Op.REDUCE) == 1 and _ops(kernels[1], Op.REDUCE) == 0
    qn = x.numpy() @ w.numpy().T
    a, b = qn[:, :32], qn[:, 32:]
    want = np.concatenate([a * cos.numpy() - b * sin.numpy(), b * cos.numpy() + a * sin.numpy()], -1)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-5)


def test_output_written_through_a_reshape_loops_over_its_source_dims():
    """(B, H, T, E) -> (B, T, H*E) for the output projection: the kernel loops over heads and head dims (no
    division or modulo to recover them from the flat index), and the weighted sum keeps its vector tile."""
    p, v = _t(1, 9, 1, 512), _t(1, 3, 512, 64)
    values = v.reshape(1, 3, 1, 512, 64).expand(1, 3, 3, 512, 64).reshape(1, 9, 512, 64)
    out = (p @ values).transpose(1, 2).reshape(1, 1, 576).contiguous()
    (kernel,) = _kernels(out)
    lowered = lower_kernel(kernel.ast)
    divmods = [n for n in lowered.store.toposort() if n.op in (Op.IDIV, Op.MOD) and n.src[1].arg in (64, 192)]
    assert not divmods
    want = (p.numpy() @ np.repeat(v.numpy(), 3, axis=1)).transpose(0, 2, 1, 3).reshape(1, 1, 576)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-5)
