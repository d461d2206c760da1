"""One flat buffer for the parameters of a group (per device and dtype), so that an elementwise update of all of
them is one kernel per tensor it writes, not one per parameter.

At construction the optimizer copies the parameters end to end into a flat buffer and makes each parameter a view
of its slice (``tensor_shared.share``): modules keep the same Tensor objects, and reading or assigning one works as
before. The state is made by the subclass's own ``init_state`` over the flat tensor, and the subclass's own
``update`` runs once over the flat parameter, the flat state and the gradients laid end to end: the same float
operations per element as the per-tensor update, so the results are bit for bit the same. ``state[p]`` holds views
of the flat state (a step counter is one tensor that every parameter of the bucket shares). The gradients are
written into a flat buffer too, by the kernels that compute them, and ``p.grad`` becomes a view of its slice
(overwritten by the next step's gradient, as torch's ``zero_grad(set_to_none=False)`` reuses it).

A bucket gives up (its state is copied into tensors of each parameter's own, and the per-tensor update takes over)
when the parameters stop moving together: a step where only some of them have a gradient, a parameter replaced
behind the optimizer's back (moved to another device), or a loaded state dict whose step counts differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..ir import dtypes
from ..schedule.schedule import as_contiguous_buffer
from ..tensor import Tensor
from ..tensor_shared import share, shared_view


def flat_concat(tensors: Sequence[Tensor]) -> Tensor:
    """The tensors flattened and laid end to end, every element exactly as it was: a chain of selects between
    padded pieces, where ``cat``'s sum of padded pieces would turn -0.0 into 0.0. Fuses into its reader."""
    total = sum(t.numel() for t in tensors)
    out: Tensor | None = None
    offset = 0
    for t in tensors:
        n = t.numel()
        pads = [(offset, total - offset - n)]
        piece = _flattened(t).pad(pads)
        if out is None:
            out = piece
        else:
            inside = Tensor.ones(n, dtype=dtypes.bool_, device=t.device).pad(pads)
            out = piece.where(inside, out)
        offset += n
    assert out is not None
    return out


def _flattened(t: Tensor) -> Tensor:
    """``t.reshape(-1)``, read straight from its buffer when it is a whole one: a reshape of a reshape is index
    arithmetic (a division and a modulo per element) that the padding's shift keeps from folding away."""
    buf = as_contiguous_buffer(t.node)
    return Tensor._from_node(buf) if buf is not None and buf.shape == (t.numel(),) else t.reshape(-1)


class FlatBucket:
    """The parameters of one group on one device with one dtype, kept in one flat buffer."""

    def __init__(self, params: list[Tensor], group: dict[str, Any]):
        from .optimizer import _new_buffer

        self.params = params
        self.group = group
        self.offsets: list[int] = []
        total = 0
        for p in params:
            self.offsets.append(total)
            total += p.numel()
        first = params[0]
        self.flat = _new_buffer(first.device, (total,), first.dtype)
        self.flat.assign(flat_concat([p.detach() for p in params])).realize()
        for p, offset in zip(params, self.offsets):
            share(p, self.flat, offset)
        self.grad = _new_buffer(first.device, (total,), first.dtype)  # the gradients, end to end
        self.grad_views: list[Tensor | None] = [None] * len(params)
        self.state: dict[str, Any] | None = None  # made by the optimizer's init_state at the first step

    def take_grads(self) -> list[Tensor]:
        """Make each ``p.grad`` a view of its slice of the flat gradient, writing the gradient there (lazily:
        returns the writes to realize). A gradient straight from ``backward()`` is computed by its own kernel into
        the slice, so the flat gradient costs no kernel of its own."""
        writes: list[Tensor] = []
        for i, p in enumerate(self.params):
            view = self.grad_views[i]
            if view is None or shared_view(view) is None:
                view = Tensor._from_node(self.grad.node).shrink(((self.offsets[i], self.offsets[i] + p.numel()),))
                view = view.reshape(p.shape)
                share(view, self.grad, self.offsets[i])
                self.grad_views[i] = view
            assert p.grad is not None
            if p.grad is not view:
                view.assign(p.grad.detach())
                p.grad = view
            writes.append(view)  # also realizes a write to the view made by the caller
        return writes

    def intact(self) -> bool:
        """Whether every parameter is still a view of the flat buffer."""
        return all(shared_view(p) is not None for p in self.params)

    def param_state(self, index: int) -> dict[str, Any]:
        """The state of parameter ``index`` as ``Optimizer.state`` shows it: views of the flat state tensors (a
        scalar tensor such as a step counter is shared), Python values as they are now."""
        assert self.state is not None
        p, offset, total = self.params[index], self.offsets[index], self.flat.numel()
        out: dict[str, Any] = {}
        for key, value in self.state.items():
            if isinstance(value, Tensor) and value.shape == (total,):
                piece = Tensor._from_node(value.node).shrink(((offset, offset + p.numel()),)).reshape(p.shape)
                share(piece, value, offset)
                out[key] = piece
            else:
                out[key] = value
        return out

    def load(self, states: list[dict[str, Any]]) -> bool:
        """Write per-parameter states (tensors of each parameter's own) into the flat state; False, and nothing
        written, when they do not share their scalar values (a step count) as a bucket's parameters must."""
        assert self.state is not None
        total = self.flat.numel()
        flat_keys, scalar_keys = [], []
        for key, value in self.state.items():
            values = [s.get(key) for s in states]
            if isinstance(value, Tensor) and value.shape == (total,):
                if any(not isinstance(v, Tensor) or v.numel() != p.numel() for v, p in zip(values, self.params)):
                    return False
                flat_keys.append(key)
            elif isinstance(value, Tensor):
                if any(not isinstance(v, Tensor) or v.shape != value.shape for v in values):
                    return False
                if len({bytes(v.cast(value.dtype).contiguous()._raw()) for v in values}) != 1:
                    return False
                scalar_keys.append(key)
            elif any(v != values[0] for v in values):
                return False
        writes = []
        for key, value in self.state.items():
            values = [s[key] for s in states]
            if key in flat_keys:
                pieces = [v.to(device=value.device).cast(value.dtype) for v in values]
                writes.append(value.assign(flat_concat(pieces)))
            elif key in scalar_keys:
                writes.append(value.assign(values[0].to(device=value.device)))
            else:
                self.state[key] = values[0]
        Tensor.realize_all(writes)
        return True


def buckets_of(params: list[Tensor], group: dict[str, Any]) -> list[FlatBucket]:
    """Flat buckets for a group's parameters that require grad, one per device and dtype with two or more (one
    parameter alone gains nothing); the others stay per tensor."""
    by_kind: dict[tuple[str, dtypes.DType], list[Tensor]] = {}
    for p in params:
        if p.requires_grad and p.numel() > 0 and shared_view(p) is None:
            by_kind.setdefault((p.device, p.dtype), []).append(p)
    return [FlatBucket(ps, group) for ps in by_kind.values() if len(ps) > 1]
