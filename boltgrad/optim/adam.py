"""Adam and AdamW, step by step as torch.optim.Adam and torch.optim.AdamW (bias correction included)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ..ir import dtypes
from ..tensor import Tensor
from .optimizer import Optimizer, compute_dtype, lerp


class Adam(Optimizer):
    r"""Adam (Kingma & Ba), as ``torch.optim.Adam``:

    .. math::
        g &\leftarrow \nabla_\theta + \lambda \theta \\
        m &\leftarrow \beta_1 m + (1 - \beta_1) g, \qquad v \leftarrow \beta_2 v + (1 - \beta_2) g^2 \\
        \hat v &\leftarrow \max(\hat v, v) \text{ (amsgrad) or } v \\
        \theta &\leftarrow \theta - \frac{\gamma}{1 - \beta_1^t} \cdot
            \frac{m}{\sqrt{\hat v} / \sqrt{1 - \beta_2^t} + \epsilon}

    ``AdamW`` decays the weights instead (:math:`\theta \leftarrow \theta (1 - \gamma\lambda)` before the step).

        >>> import boltgrad
        >>> w = boltgrad.Tensor([1.0, -2.0], requires_grad=True)
        >>> opt = Adam([w], lr=0.1)
        >>> (w * w).sum().backward()
        >>> opt.step()
        >>> [round(v, 4) for v in w.tolist()]
        [0.9, -1.9]

    The learning rate is read from a device buffer and the bias corrections are computed in the kernels from a
    step counter on the device, so later steps and new rates reuse the compiled kernels (and a jit replay stays
    right). The parameters of a group (per device and dtype) are kept in one flat buffer and updated as one tensor:
    kernels per step and group, four (step counter, m, v and the parameters), five with amsgrad;
    ``foreach=False`` updates each parameter on its own (as many kernels per parameter).
    """

    elementwise = True

    decoupled_weight_decay = False

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,  # False: the per-tensor update (four kernels per parameter)
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ):
        if differentiable:
            raise NotImplementedError(f"{type(self).__name__}: differentiable=True is not supported")
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay, "amsgrad": amsgrad,
                    "maximize": maximize}  # fmt: skip
        super().__init__(params, defaults, foreach=foreach)

    def check_group(self, group: dict[str, Any]) -> None:
        super().check_group(group)
        check_adam_group(type(self).__name__, group)

    def init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        return adam_state(self, param, group)

    def update(self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> Tensor:
        return adam_update(self, param, grad, state, group, self.decoupled_weight_decay)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW`` (weight_decay 0.01)."""

    decoupled_weight_decay = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        **kwargs: Any,
    ):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, **kwargs)


def check_adam_group(name: str, group: dict[str, Any]) -> None:
    beta1, beta2 = group["betas"]
    if not 0.0 <= beta1 < 1.0 or not 0.0 <= beta2 < 1.0:
        raise ValueError(f"{name}: invalid betas {group['betas']}: each must be in [0, 1)")
    if group["eps"] < 0:
        raise ValueError(f"{name}: invalid epsilon value: {group['eps']}")
    if group["weight_decay"] < 0:
        raise ValueError(f"{name}: invalid weight_decay value: {group['weight_decay']}")


def adam_state(opt: Optimizer, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = {"step": opt.step_counter(param), "exp_avg": opt.zeros_state(param),
                             "exp_avg_sq": opt.zeros_state(param)}  # fmt: skip
    if group.get("amsgrad", False):
        state["max_exp_avg_sq"] = opt.zeros_state(param)
    return state


def adam_update(
    opt: Optimizer,
    param: Tensor,
    grad: Tensor,
    state: dict[str, Any],
    group: dict[str, Any],
    decoupled: bool,
    betas_key: str = "betas",
    eps_key: str = "eps",
) -> Tensor:
    """One Adam or AdamW step of one tensor (also Muon's fallback for the parameters it does not orthogonalise,
    whose options are named ``adamw_betas`` and ``adamw_eps``)."""
    (beta1, beta2), eps, weight_decay = group[betas_key], group[eps_key], group["weight_decay"]
    dtype = compute_dtype(param.dtype)
    step = state["step"]
    step.assign(step + 1)
    # the scalars torch computes in Python doubles, computed in float64 inside the kernels from the step counter
    # and the live learning rate: nothing here changes a kernel from one step to the next
    lr = opt.lr(group, param, dtypes.float64)
    correction1 = 1 - (step * math.log2(beta1)).exp2() if beta1 > 0 else step.ones_like()  # 1 - beta1**step
    step_size = (lr / correction1).cast(dtype)
    correction2_sqrt = (1 - (step * math.log2(beta2)).exp2()).sqrt().cast(dtype) if beta2 > 0 else 1.0
    if weight_decay != 0 and not decoupled:
        grad = grad + param * weight_decay
    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    exp_avg.assign(lerp(exp_avg, grad, 1 - beta1))
    exp_avg_sq.assign(exp_avg_sq * beta2 + grad * (1 - beta2) * grad)
    second = exp_avg_sq
    if group.get("amsgrad", False):
        second = state["max_exp_avg_sq"]
        second.assign(second.maximum(exp_avg_sq))
    denom = second.sqrt() / correction2_sqrt + eps
    if weight_decay != 0 and decoupled:
        param = param * (1 - lr * weight_decay).cast(dtype)
    return param - exp_avg / denom * step_size
