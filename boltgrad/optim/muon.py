"""Muon: momentum whose update is orthogonalised by a Newton-Schulz iteration, for the matrices of a network.

Muon only makes sense for weight matrices (linear layers; convolution kernels, flattened to (out, in*kh*kw)).
Biases, norm gains and embeddings must be optimized by something else: either a separate optimizer (AdamW) or a
group of this one with ``use_muon=False``, which runs AdamW with the group's ``lr``, ``weight_decay``,
``adamw_betas`` and ``adamw_eps``::

    opt = Muon([
        {"params": [w for w in model.parameters() if w.ndim >= 2]},
        {"params": [b for b in model.parameters() if b.ndim < 2], "use_muon": False, "lr": 3e-4},
    ], lr=0.02)

A parameter with fewer than two dimensions in a Muon group is an error that says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ..ir import dtypes
from ..tensor import Tensor
from .adam import adam_state, adam_update, check_adam_group
from .optimizer import Optimizer, compute_dtype, lerp

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(update: Tensor, coefficients: tuple[float, float, float], steps: int, eps: float) -> Tensor:
    r"""Approximately orthogonalise a matrix (``U S V^T -> U S' V^T`` with ``S'`` near 1) without an SVD.

    Scale to spectral norm <= 1 (by the Frobenius norm), then iterate the quintic
    :math:`X \leftarrow aX + (bA + cA^2)X` with :math:`A = XX^T`, on the wide orientation of the matrix.
    Computed in float32 (the reference and torch use bfloat16).
    """
    a, b, c = coefficients
    x = update.float()
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    # each iterate is materialized: every kernel then reads plain buffers, so the kernels are the same for every
    # optimizer setting and parameter of a shape (compiled once) and X is not recomputed inside the matmuls
    x = (x / x.square().sum().sqrt().clamp(min=eps)).contiguous()
    for _ in range(steps):
        gram = x @ x.T  # (rows, rows), rows <= cols
        x = (x * a + (gram * b + (gram @ gram) * c) @ x).contiguous()
    return x.T if tall else x


def adjusted_lr(lr: float, adjust_lr_fn: str | None, rows: int, cols: int) -> float:
    """The rate applied to the orthogonalised update: ``"original"`` (the default) scales by
    ``sqrt(max(1, rows/cols))``, ``"match_rms_adamw"`` by ``0.2 * sqrt(max(rows, cols))`` (as torch.optim.Muon)."""
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return lr * math.sqrt(max(1.0, rows / cols))
    if adjust_lr_fn == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(rows, cols))
    raise ValueError(f"Muon: unknown adjust_lr_fn {adjust_lr_fn!r}; use 'original' or 'match_rms_adamw'")


class Muon(Optimizer):
    r"""MomentUm Orthogonalized by Newton-Schulz (Keller Jordan et al.), with torch.optim.Muon's options:

    .. math::
        b &\leftarrow \mu b + (1 - \mu) g \\
        u &\leftarrow \text{NS}_5(g + \mu (b - g)) \text{ (nesterov) or } \text{NS}_5(b) \\
        \theta &\leftarrow \theta (1 - \gamma\lambda) - \gamma \sqrt{\max(1, \text{rows}/\text{cols})}\, u

    Newton-Schulz runs ``ns_steps`` (5) iterations with coefficients (3.4445, -4.7750, 2.0315). See the module
    docstring for the parameters Muon must not get, and the ``use_muon=False`` AdamW groups.

        >>> import boltgrad
        >>> w = boltgrad.Tensor([[1.0, 0.0], [0.0, 2.0]], requires_grad=True)
        >>> opt = Muon([w], lr=0.1, weight_decay=0.0)
        >>> (w * w).sum().backward()
        >>> opt.step()
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
        eps: float = 1e-7,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
        *,
        adamw_betas: tuple[float, float] = (0.9, 0.95),
        adamw_eps: float = 1e-10,
    ):
        defaults = {"lr": lr, "weight_decay": weight_decay, "momentum": momentum, "nesterov": nesterov,
                    "ns_coefficients": tuple(ns_coefficients), "eps": eps, "ns_steps": ns_steps,
                    "adjust_lr_fn": adjust_lr_fn, "use_muon": True, "adamw_betas": tuple(adamw_betas),
                    "adamw_eps": adamw_eps}  # fmt: skip
        super().__init__(params, defaults)

    def check_group(self, group: dict[str, Any]) -> None:
        super().check_group(group)
        if not group["use_muon"]:
            check_adam_group("Muon (AdamW group)", _adamw_view(group))
            return
        if not 0.0 <= group["momentum"] < 1.0:
            raise ValueError(f"Muon: invalid momentum value: {group['momentum']}")
        if group["weight_decay"] < 0:
            raise ValueError(f"Muon: invalid weight_decay value: {group['weight_decay']}")
        if len(group["ns_coefficients"]) != 3:
            raise ValueError(f"Muon: ns_coefficients must be three numbers, got {group['ns_coefficients']}")
        adjusted_lr(1.0, group["adjust_lr_fn"], 1, 1)  # an unknown name fails here, not at the first step
        for p in group["params"]:
            if p.ndim < 2:
                raise ValueError(
                    f"Muon: a parameter of shape {p.shape} is not a matrix; Muon orthogonalises 2-D weights (conv "
                    "kernels are flattened). Give biases, norm weights and embeddings to AdamW, or put them in a "
                    "group with use_muon=False"
                )

    def init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        if not group["use_muon"]:
            return adam_state(self, param, group)
        return {"momentum_buffer": self.zeros_state(param)}

    def update(self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> Tensor:
        if not group["use_muon"]:
            return adam_update(self, param, grad, state, group, True, "adamw_betas", "adamw_eps")
        momentum, weight_decay = group["momentum"], group["weight_decay"]
        buf = state["momentum_buffer"]
        buf.assign(lerp(buf, grad, 1 - momentum))
        direction = lerp(grad, buf, momentum) if group["nesterov"] else buf
        rows, cols = param.shape[0], param.numel() // param.shape[0]
        ortho = newton_schulz(direction.reshape(rows, cols), group["ns_coefficients"], group["ns_steps"], group["eps"])
        live_lr = self.lr(group, param, dtypes.float64)  # as torch computes these rates, in Python floats
        rate = live_lr * adjusted_lr(1.0, group["adjust_lr_fn"], rows, cols)
        step = ortho.reshape(param.shape) * rate.cast(compute_dtype(param.dtype))
        if weight_decay != 0:
            param = param * (1 - live_lr * weight_decay).cast(compute_dtype(param.dtype))
        return param - step


def _adamw_view(group: dict[str, Any]) -> dict[str, Any]:
    return {**group, "betas": group["adamw_betas"], "eps": group["adamw_eps"], "amsgrad": False}
