"""The module oracle: a torch module and ours with the same weights must agree on outputs and gradients.

    check_module(torch.nn.Linear(3, 4), nn.Linear(3, 4), (2, 3))

``check_module`` loads the torch module's state dict into ours with ``load_state_dict`` (so names and shapes
must match torch's exactly), runs both on the same random inputs, backpropagates the same weighted sum of the
outputs, and compares the outputs, the inputs' gradients and every parameter's gradient (by name), all realized
together (one compiler call; the checks inside ``with helpers.batch():`` share one). Inputs are given as in
``helpers.check``: a tuple of ints is a shape (random float32 values), a numpy array is used as it is, anything
else passes through unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import helpers
import numpy as np
import torch
from helpers import _backward_both, _Case, _finish, _flatten, random_array

from boltgrad import Tensor


def make_inputs(inputs: tuple[Any, ...], device: str, seed: int, grad: bool) -> tuple[list[Any], list[Any]]:
    rng = np.random.default_rng(seed)
    theirs: list[Any] = []
    ours: list[Any] = []
    for spec in inputs:
        if isinstance(spec, tuple) and all(isinstance(s, int) for s in spec):
            spec = random_array(spec, "float32", -2, 2, rng)
        if isinstance(spec, np.ndarray):
            t, o = torch.from_numpy(spec.copy()), Tensor(spec, device=device)
            if grad and spec.dtype.kind == "f":
                t.requires_grad_(True)
                o.requires_grad_(True)
            theirs.append(t)
            ours.append(o)
        else:
            theirs.append(spec)
            ours.append(spec)
    return theirs, ours


def check_module(
    torch_module: torch.nn.Module,
    our_module: Any,
    *inputs: Any,
    forward: Callable[..., Any] | None = None,
    device: str = "CPU",
    grad: bool = True,
    input_grad: bool = True,
    atol: float | None = None,
    rtol: float | None = None,
    seed: int = 0,
) -> None:
    """Compare ``forward(module, *inputs)`` (default: ``module(*inputs)``) of torch's module and ours.

    ``grad=False`` compares outputs only; ``input_grad=False`` compares parameter gradients but not the inputs'.
    """
    want_keys = [(k, tuple(v.shape)) for k, v in torch_module.state_dict().items()]
    got_keys = [(k, tuple(v.shape)) for k, v in our_module.state_dict().items()]
    assert got_keys == want_keys, f"state dict {got_keys} != torch's {want_keys}"
    our_module.load_state_dict(torch_module.state_dict())
    our_module.to(device)
    torch_inputs, our_inputs = make_inputs(inputs, device, seed, input_grad)
    call = forward or (lambda m, *xs: m(*xs))
    torch_out = call(torch_module, *torch_inputs)
    our_out = call(our_module, *our_inputs)
    want, ours = _flatten(torch_out), _flatten(our_out)
    if grad:
        torch_module.zero_grad()
        _backward_both(torch_out, our_out, seed)
        for i, (t, o) in enumerate(zip(torch_inputs, our_inputs)):
            if isinstance(t, torch.Tensor) and t.requires_grad:
                want.append((f"input_grad[{i}]", t.grad if t.grad is not None else torch.zeros_like(t)))
                ours.append((f"input_grad[{i}]", o.grad if o.grad is not None else o.detach() * 0))
        our_params = dict(our_module.named_parameters())
        for name, p in torch_module.named_parameters():
            if p.grad is not None:
                want.append((f"{name}.grad", p.grad))
                ours.append((f"{name}.grad", our_params[name].grad))
    case = _Case(f"{type(torch_module).__name__} on {device}", ours, want, atol, rtol)
    if helpers._active:  # inside `with helpers.batch():` every case is realized together at the end
        helpers._active[-1].cases.append(case)
    else:
        _finish([case])


def assert_close(got: Any, want: Any, atol: float = 1e-5, rtol: float = 1e-5) -> None:
    """A boltgrad tensor (or anything numpy takes) against a torch tensor or array."""
    got_np = got.numpy() if isinstance(got, Tensor) else np.asarray(got)
    want_np = want.detach().numpy() if isinstance(want, torch.Tensor) else np.asarray(want)
    assert got_np.shape == want_np.shape, f"shape {got_np.shape} != {want_np.shape}"
    np.testing.assert_allclose(got_np, want_np, atol=atol, rtol=rtol)
