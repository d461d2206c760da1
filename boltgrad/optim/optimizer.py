"""The optimizer base: parameter groups, per-parameter state, and one fused realize per step.

A subclass writes only the update of one tensor (as MLX's optimizers do); the base walks the groups, makes the
state, and realizes everything together::

    class SignSGD(Optimizer):
        def __init__(self, params, lr=0.01):
            super().__init__(params, {"lr": lr})

        def update(self, param, grad, state, group):
            return param - grad.sign() * self.lr(group, param)

A step is lazy and fused. ``step()`` first realizes the gradients (so no update kernel reads a parameter that
another update overwrites), then builds ``param.assign(new)`` and ``state_tensor.assign(new)`` for every parameter
under ``no_grad()`` and realizes all of them with one ``Tensor.realize_all``: one kernel per tensor written.

An optimizer whose update is elementwise (SGD, Adam, AdamW: ``elementwise = True``) goes further: it keeps the
parameters of each group, device and dtype in one flat buffer, each parameter a view of its slice (``flat.py``),
and runs ``update`` once over the flat parameter, the flat state and the gradients laid end to end. Adam's step is
then four kernels per group (step counter, m, v, parameters), however many parameters the group has, and bit for
bit the per-tensor result. ``foreach=False`` keeps the per-tensor update.

Nothing that changes from step to step is a constant in a kernel, so step 2 onwards compiles nothing, and a step
replayed by ``boltgrad.jit`` (which does not re-run Python) still sees the current values:

* the learning rate lives in a one-element float64 buffer per group and device (``self.lr(group, like)``),
  written with a plain copy whenever ``group["lr"]`` is set (a scheduler, or your own code);
* step counters are state tensors incremented by the step's own kernels; bias corrections are computed from
  them inside the kernels, in float64;
* the rare per-step switch that only Python knows (SGD's first step) is a kernel variable (``bound_scalar``:
  an ``Op.BIND`` of a VAR, as the random-number counter is bound).

Hyperparameters that stay fixed (betas, eps, momentum, weight decay) are ordinary constants.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any

from ..autograd import enable_grad, no_grad
from ..device.buffer import Buffer
from ..helpers import prod
from ..ir import dtypes
from ..ir.node import Node, var
from ..ir.ops import Op
from ..tensor import Tensor
from .flat import FlatBucket, buckets_of

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_F64 = struct.Struct("<d")
_I64 = struct.Struct("<q")


def bound_scalar(name: str, value: float, dtype: dtypes.DType = dtypes.float32) -> Tensor:
    """A float that a kernel reads from its launch variables: a new value reuses the compiled kernel.

    The result has shape () and no device (it is at home with any tensor it meets); combine it with a tensor
    before doing arithmetic with Python numbers on it. ``name`` must be a C identifier; a kernel may bind each
    name only once.
    """
    bits = _I64.unpack(_F64.pack(float(value)))[0]
    bind = Node(Op.BIND, dtypes.int64, (var(f"opt_{name}", _INT64_MIN, _INT64_MAX),), bits)
    out = Tensor._from_node(Node(Op.BITCAST, dtypes.float64, (bind,)))
    return out.cast(dtype)


def compute_dtype(dtype: dtypes.DType) -> dtypes.DType:
    """Updates of half-precision parameters are computed in float32 and rounded once, when written."""
    return dtype if dtype in (dtypes.float32, dtypes.float64) else dtypes.float32


class LiveScalar:
    """A float64 number in a one-element device buffer that kernels read; ``set`` writes it with a plain copy (no
    kernel), so even launches replayed by a jit see the new value."""

    def __init__(self, value: float, device: str):
        self.buffer = Buffer(device, 1, dtypes.float64)
        self.tensor = Tensor(Node(Op.BUFFER, dtypes.float64, (), self.buffer)).reshape(())
        self.value: float | None = None
        self.set(value)

    def set(self, value: float) -> None:
        value = float(value)
        if value != self.value:
            self.buffer.copyin(_F64.pack(value))
            self.buffer.version += 1  # graphs realized from the old value must not be reused
            self.value = value


class ParamGroup(dict):
    """A parameter group: a dict (as in torch) whose ``"lr"``, when set, is also written to the buffers kernels
    read it from."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.live_lr: dict[str, LiveScalar] = {}  # device -> the rate on that device

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        if key == "lr":
            self.sync()

    def sync(self) -> None:
        for live in self.live_lr.values():
            live.set(self["lr"])

    def lr_on(self, device: str) -> Tensor:
        live = self.live_lr.get(device)
        if live is None:
            live = self.live_lr[device] = LiveScalar(self["lr"], device)
        return live.tensor


def lerp(start: Tensor, end: Tensor, weight: float) -> Tensor:
    """``start + weight * (end - start)``, rounded as torch's lerp rounds (from the nearer end)."""
    if weight < 0.5:
        return start + (end - start) * weight
    return end - (end - start) * (1 - weight)


def _new_buffer(device: str, shape: tuple[int, ...], dtype: dtypes.DType) -> Tensor:
    """An unwritten tensor in a fresh buffer (write it with assign)."""
    buf = Buffer(device, prod(shape), dtype)
    return Tensor(Node(Op.BUFFER, dtype, (), buf)).reshape(shape)


def _loaded_state(value: Any, like: Tensor) -> Tensor:
    """A saved state value (a tensor, array or number) in a new buffer shaped and typed like ``like``."""
    if not isinstance(value, Tensor):
        if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, from a torch state dict
            value = value.detach().cpu().numpy()
        value = Tensor(value, dtype=like.dtype)
    if value.shape != like.shape:
        raise ValueError(f"load_state_dict: a saved state of shape {value.shape} where {like.shape} is expected")
    return _new_buffer(like.device, like.shape, like.dtype).assign(value.to(device=like.device).cast(like.dtype))


class Optimizer:
    """Base of all optimizers: ``params`` is an iterable of tensors or of dicts (parameter groups).

    A group dict holds ``"params"`` and any per-group options; options it leaves out come from ``defaults``.
    ``state`` maps each parameter to its own dict (tensors and Python numbers). Subclasses implement
    ``init_state`` (optional) and ``update``; one whose update is elementwise in the parameter, the gradient and
    every state tensor shaped like the parameter sets ``elementwise = True`` to get the flat update (see the
    module docstring). ``foreach=False`` asks for the per-tensor update anyway.
    """

    elementwise = False

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        defaults: dict[str, Any],
        *,
        foreach: bool | None = None,
    ):
        self.defaults = dict(defaults)
        self.flat_update = foreach is not False and self._updates_elementwise()
        self._buckets: list[FlatBucket] = []
        self.state: dict[Tensor, dict[str, Any]] = {}  # Tensor hashes by identity
        self.param_groups: list[dict[str, Any]] = []
        if isinstance(params, Tensor):
            raise TypeError(f"{type(self).__name__}: params must be an iterable of tensors or dicts, not a Tensor")
        items = list(params)
        if not items:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        groups = items if isinstance(items[0], dict) else [{"params": items}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines + [")"])

    # ---- groups ----

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own options (those it leaves out come from the defaults)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"add_param_group: expected a dict, got {type(param_group).__name__}")
        group = ParamGroup(param_group)
        params = group.get("params")
        if params is None:
            raise ValueError("add_param_group: the group has no 'params'")
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set | frozenset):
            raise TypeError("optimizer parameters must be an ordered collection (a list), not a set")
        params = list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, got {type(p).__name__}")
            if not p.dtype.is_float:
                raise TypeError(f"optimizer can only optimize floating point tensors, got {p.dtype.name}")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or any(id(p) in seen for p in params):
            raise ValueError("some parameters appear more than once (in one group or in several)")
        group["params"] = params
        for key, default in self.defaults.items():
            group.setdefault(key, default)
        self.check_group(group)
        self.param_groups.append(group)
        if self.flat_update:
            self._buckets += buckets_of(params, group)

    def _updates_elementwise(self) -> bool:
        """Whether ``update`` may run once over parameters laid end to end: the class that says ``elementwise =
        True`` must be the one whose ``update`` and ``init_state`` run (a subclass that overrides them says again)."""
        for cls in type(self).__mro__:
            if "elementwise" in vars(cls):
                methods = ("update", "init_state")
                return bool(cls.elementwise) and all(getattr(type(self), m) is getattr(cls, m) for m in methods)
        return False

    def check_group(self, group: dict[str, Any]) -> None:
        """Validate a group's options (subclasses raise ValueError with the option's name)."""
        lr = group.get("lr", 0.0)
        if isinstance(lr, int | float) and lr < 0:
            raise ValueError(f"invalid learning rate: {lr}")

    # ---- what a subclass writes ----

    def init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        """The state of a parameter before its first step. Tensors here are given buffers of their own."""
        return {}

    def update(self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> Tensor:
        """The parameter's new value. State tensors are updated with ``state[k].assign(...)``. Python numbers in
        ``state`` may be changed too, but a jit replay does not run this method: keep anything that must change
        every step (a step counter) in a tensor."""
        raise NotImplementedError

    @staticmethod
    def lr(group: dict[str, Any], like: Tensor, dtype: dtypes.DType | None = None) -> Tensor:
        """The group's learning rate, read from its live buffer on ``like``'s device: a scalar tensor in the dtype
        ``like``'s update is computed in, or ``dtype`` (float64 for further scalar arithmetic, as torch does it)."""
        live = group.lr_on(like.device)  # type: ignore[attr-defined]
        return live.cast(dtype or compute_dtype(like.dtype))

    @staticmethod
    def scalar(name: str, value: float, like: Tensor) -> Tensor:
        """``value`` bound as a kernel variable, in the dtype ``like``'s update is computed in."""
        return bound_scalar(name, value, compute_dtype(like.dtype))

    @staticmethod
    def zeros_state(param: Tensor, shape: tuple[int, ...] | None = None, dtype: dtypes.DType | None = None) -> Tensor:
        """A zero tensor like ``param`` (or of ``shape`` and ``dtype`` on its device) in a buffer of its own.

        ``Tensor.zeros(...).contiguous()`` would not do: equal graphs are one node, so two states of one shape
        would share a buffer.
        """
        return _new_buffer(param.device, param.shape if shape is None else shape, dtype or param.dtype).zero_()

    @staticmethod
    def step_counter(param: Tensor) -> Tensor:
        """A float64 scalar state tensor counting steps on the device (exact up to 2**53 steps)."""
        return Optimizer.zeros_state(param, (), dtypes.float64)

    # ---- stepping ----

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: set ``.grad`` to None (default) or to zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                p.grad = None if set_to_none else p.grad.zeros_like()

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; returns ``closure()`` when one is given."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            group.sync()  # an "lr" changed with dict.update() or in place
        flat = self._flat_buckets()
        in_flat = {id(p) for b in flat for p in b.params}
        work = [(p, group) for group in self.param_groups for p in group["params"]
                if p.grad is not None and id(p) not in in_flat]  # fmt: skip
        with no_grad():
            grads = [p.grad for p, _ in work] + [g for b in flat for g in b.take_grads()]
        # The gradients first: an update kernel that read another parameter through a lazy gradient could not be
        # ordered around that parameter's own update. A write to a flat parameter that is still pending goes too.
        Tensor.realize_all(grads + [p for b in self._buckets for p in b.params])
        with no_grad():
            fresh = []
            for p, group in work:
                if p not in self.state:
                    self.state[p] = self.init_state(p, group)
                    fresh += [v for v in self.state[p].values() if isinstance(v, Tensor)]
            new_buckets = [b for b in flat if b.state is None]
            for b in new_buckets:
                b.state = self.init_state(b.flat, b.group)
                fresh += [v for v in b.state.values() if isinstance(v, Tensor)]
            Tensor.realize_all(fresh)
            for b in new_buckets:
                for i, p in enumerate(b.params):
                    self.state[p] = b.param_state(i)
            targets: list[Tensor] = []
            for p, group in work:
                state = self.state[p]
                grad = p.grad.detach()
                if group.get("maximize", False):
                    grad = -grad
                # (no name holds the new value: a live lazy tensor that reads the parameter would be realized on
                # its own, before the assign)
                targets.append(p.assign(self.update(p, grad, state, group)))
                targets += [v for v in state.values() if isinstance(v, Tensor) and v.node.op is Op.ASSIGN]
            for b in flat:
                assert b.state is not None
                grad = b.grad.detach()
                if b.group.get("maximize", False):
                    grad = -grad
                targets.append(b.flat.assign(self.update(b.flat, grad, b.state, b.group)))
                targets += [v for v in b.state.values() if isinstance(v, Tensor) and v.node.op is Op.ASSIGN]
            Tensor.realize_all(targets)
            for b in flat:  # Python values of the state (SGD's step count) as the update left them
                numbers = {k: v for k, v in b.state.items() if not isinstance(v, Tensor)}
                for p in b.params:
                    self.state[p].update(numbers)
        return loss

    def _flat_buckets(self) -> list[FlatBucket]:
        """The buckets that step as one this time (all their parameters have gradients). A bucket some of whose
        parameters have one and some not, or whose parameter was replaced, goes back to the per-tensor update."""
        out = []
        for b in list(self._buckets):
            has_grad = [p.grad is not None for p in b.params]
            if not any(has_grad):
                continue
            if all(has_grad) and b.intact():
                out.append(b)
            else:
                self._unflatten(b)
        return out

    def _unflatten(self, bucket: FlatBucket) -> None:
        """Give each parameter of ``bucket`` a state of its own (copies of its views of the flat state) and leave
        it to the per-tensor update from now on."""
        self._buckets.remove(bucket)
        copies: list[Tensor] = []
        for p in bucket.params:
            if p in self.state:
                own = {k: _loaded_state(v, v) if isinstance(v, Tensor) else v for k, v in self.state[p].items()}
                copies += [v for v in own.values() if isinstance(v, Tensor)]
                self.state[p] = own
        Tensor.realize_all(copies)

    # ---- saving and loading ----

    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {name: value}}, "param_groups": [{option: value, "params": [index, ...]}]}``.

        Parameters are numbered in group order, as torch does. State tensors are the live ones (later steps
        overwrite them): ``.clone()`` them for a snapshot.
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            for p in group["params"]:
                index.setdefault(id(p), len(index))
            saved = {k: v for k, v in group.items() if k != "params"}
            saved["params"] = [index[id(p)] for p in group["params"]]
            groups.append(saved)
        state = {index[id(p)]: dict(s) for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore options and state saved by ``state_dict`` (from this optimizer class, same parameter layout)."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"load_state_dict: {len(groups)} parameter groups saved, the optimizer has "
                             f"{len(self.param_groups)}")  # fmt: skip
        by_index: dict[int, Tensor] = {}
        by_group: dict[int, dict[str, Any]] = {}
        for mine, saved in zip(self.param_groups, groups):
            if len(mine["params"]) != len(saved["params"]):
                raise ValueError(f"load_state_dict: a saved group has {len(saved['params'])} parameters, the "
                                 f"optimizer's has {len(mine['params'])}")  # fmt: skip
            for i, p in zip(saved["params"], mine["params"]):
                by_index[int(i)] = p
                by_group[id(p)] = mine
        new_state: dict[Tensor, dict[str, Any]] = {}
        copies: list[Tensor] = []
        for i, saved in state_dict["state"].items():
            p = by_index.get(int(i))
            if p is None:
                raise ValueError(f"load_state_dict: state for parameter {i}, which no group holds")
            # the tensors this optimizer expects (zeros where the saved state has none), Python values as saved
            fresh = self.init_state(p, by_group[id(p)])
            entry = {k: v for k, v in fresh.items() if isinstance(v, Tensor)}
            for name, value in saved.items():
                like = entry.get(name)
                entry[name] = _loaded_state(value, like) if isinstance(like, Tensor) else value
            copies += [v for v in entry.values() if isinstance(v, Tensor)]
            new_state[p] = entry
        Tensor.realize_all(copies)
        for mine, saved in zip(self.param_groups, groups):
            mine.update({k: v for k, v in saved.items() if k != "params"})
            mine.sync()
        for b in list(self._buckets):
            states = [new_state.get(p) for p in b.params]
            if all(s is None for s in states):
                b.state = None  # made afresh at the next step
                continue
            if all(s is not None for s in states):
                if b.state is None:
                    b.state = self.init_state(b.flat, b.group)
                    Tensor.realize_all([v for v in b.state.values() if isinstance(v, Tensor)])
                if b.load(states):  # type: ignore[arg-type]
                    for i, p in enumerate(b.params):
                        new_state[p] = b.param_state(i)
                    continue
            self._buckets.remove(b)  # states that differ in their step counts stay each parameter's own
        self.state = new_state
