"""Stochastic gradient descent with momentum, dampening, Nesterov momentum and weight decay, as torch.optim.SGD."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..tensor import Tensor
from .optimizer import Optimizer


class SGD(Optimizer):
    r"""Stochastic gradient descent, step by step as ``torch.optim.SGD``:

    .. math::
        g &\leftarrow \nabla_\theta + \lambda \theta \\
        b &\leftarrow \mu b + (1 - \tau) g \quad (b = g \text{ on the first step}) \\
        g &\leftarrow g + \mu b \text{ (nesterov) or } b \\
        \theta &\leftarrow \theta - \gamma g

    with learning rate :math:`\gamma`, momentum :math:`\mu`, dampening :math:`\tau` and weight decay
    :math:`\lambda`; ``maximize`` ascends instead.

        >>> import boltgrad
        >>> w = boltgrad.Tensor([1.0, -2.0], requires_grad=True)
        >>> opt = SGD([w], lr=0.1, momentum=0.9)
        >>> (w * w).sum().backward()
        >>> opt.step()
        >>> [round(v, 4) for v in w.tolist()]
        [0.8, -1.6]

    The parameters of a group (per device and dtype) are kept in one flat buffer and updated as one tensor:
    kernels per step and group, one without momentum, two with it (the buffer and the parameters);
    ``foreach=False`` updates each parameter on its own (as many kernels per parameter).
    """

    elementwise = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,  # False: the per-tensor update (one kernel per tensor written)
        differentiable: bool = False,
        fused: bool | None = None,
    ):
        if differentiable:
            raise NotImplementedError("SGD: differentiable=True is not supported")
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay,
                    "nesterov": nesterov, "maximize": maximize}  # fmt: skip
        super().__init__(params, defaults, foreach=foreach)

    def check_group(self, group: dict[str, Any]) -> None:
        super().check_group(group)
        if group["momentum"] < 0:
            raise ValueError(f"SGD: invalid momentum value: {group['momentum']}")
        if group["weight_decay"] < 0:
            raise ValueError(f"SGD: invalid weight_decay value: {group['weight_decay']}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum and zero dampening")

    def init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        if group["momentum"] == 0:
            return {}
        return {"momentum_buffer": self.zeros_state(param), "step": 0}

    def update(self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> Tensor:
        momentum, weight_decay = group["momentum"], group["weight_decay"]
        if weight_decay != 0:
            grad = grad + param * weight_decay
        if momentum != 0:
            buf = state["momentum_buffer"]
            # torch starts the buffer as the first gradient; the same kernel does that with bound coefficients
            # (a jit records its second call, so a replay always runs the later steps' coefficients)
            first = state.get("step", 1) == 0
            keep = self.scalar("momentum", 0.0 if first else momentum, param)
            take = self.scalar("dampening", 1.0 if first else 1.0 - group["dampening"], param)
            buf.assign(buf * keep + grad * take)
            state["step"] = state.get("step", 1) + 1
            grad = grad + buf * momentum if group["nesterov"] else buf
        return param - grad * self.lr(group, param)
