"""Gradient clipping (torch.nn.utils.clip_grad_norm_ and clip_grad_value_), lazy: it fuses into the next step."""

from __future__ import annotations

import math
from collections.abc import Iterable

from ..autograd import no_grad
from ..tensor import Tensor


def _with_grads(parameters: Tensor | Iterable[Tensor]) -> list[Tensor]:
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    return [p for p in params if p.grad is not None]


def clip_grad_norm_(
    parameters: Tensor | Iterable[Tensor],
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> Tensor:
    r"""Scale the gradients so that their joint norm is at most ``max_norm``; returns the norm before scaling.

    The norm is taken over all gradients together, as if they were one vector:
    :math:`\|g\|_p = (\sum_i \|g_i\|_p^p)^{1/p}` (``norm_type=inf``: the largest absolute value). Each gradient
    is multiplied by :math:`\min(1, \text{max\_norm} / (\|g\|_p + 10^{-6}))`.

    Nothing is computed here: ``p.grad`` becomes a lazy product, so the norm and the scaling run inside the
    optimizer's next step (or when the returned norm is read). ``error_if_nonfinite=True`` has to look at the
    norm, so it realizes it at once.

        >>> import boltgrad
        >>> w = boltgrad.Tensor([3.0, 4.0], requires_grad=True)
        >>> (w * w).sum().backward()  # grad [6, 8], norm 10
        >>> round(clip_grad_norm_([w], max_norm=5.0).item(), 4)
        10.0
        >>> [round(v, 4) for v in w.grad.tolist()]
        [3.0, 4.0]
    """
    params = _with_grads(parameters)
    norm_type = float(norm_type)
    if not params:
        return Tensor(0.0)
    with no_grad():
        grads = [p.grad.detach() for p in params]
        if math.isinf(norm_type):
            per_grad = [g.abs().amax() if g.numel() else g.sum() for g in grads]
            total = per_grad[0]
            for n in per_grad[1:]:
                total = total.maximum(n)
        else:
            total = None
            for g in grads:
                part = g.square().sum() if norm_type == 2.0 else (g.abs() ** norm_type).sum()
                part = part.float()
                total = part if total is None else total + part
            assert total is not None
            total = total.sqrt() if norm_type == 2.0 else total ** (1.0 / norm_type)
        total = total.float()
        if error_if_nonfinite and not math.isfinite(total.item()):
            raise RuntimeError(
                f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is non-finite, so it cannot "
                "be clipped; pass error_if_nonfinite=False to scale by it anyway"
            )
        scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for p, g in zip(params, grads):
            p.grad = (g * scale).cast(g.dtype)
    return total


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float, foreach: bool | None = None) -> None:
    """Clamp every gradient element into ``[-clip_value, clip_value]`` (lazily, like ``clip_grad_norm_``)."""
    clip_value = float(clip_value)
    with no_grad():
        for p in _with_grads(parameters):
            p.grad = p.grad.detach().clamp(-clip_value, clip_value)
