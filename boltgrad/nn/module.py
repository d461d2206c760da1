"""Module, the base of every layer, and Parameter, a tensor a module learns.

A module keeps three ordered tables, filled by plain attribute assignment as in torch:

- parameters: ``Parameter`` objects (or any leaf tensor that requires grad) -> ``parameters()``, the state dict;
- buffers: tensors registered with ``register_buffer`` (BatchNorm's running statistics) -> the state dict too,
  unless registered with ``persistent=False``;
- submodules: other modules, whose tables are walked recursively, their names joined with dots
  (``layers.0.weight``), exactly as torch names them so that torch checkpoints load by name.

    >>> from boltgrad import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> [name for name, _ in net.named_parameters()]
    ['0.weight', '0.bias', '2.weight', '2.bias']

Loading a state dict and moving a module to another device write into the existing tensors, so references held
elsewhere (an optimizer's list of parameters) stay valid.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from .. import Device
from ..autograd import no_grad
from ..tensor import Tensor


class Parameter(Tensor):
    """A tensor that a Module registers as a parameter; it requires grad unless told otherwise.

    It shares memory with ``data`` (as torch's does). Operations on it give plain tensors.
    """

    __slots__ = ()

    def __init__(self, data: Any = None, requires_grad: bool = True):
        if data is None:
            data = Tensor.empty(0)
        if isinstance(data, Tensor) and data.requires_grad:
            data = data.detach()  # a leaf is known by its node: the parameter must not take over data's
        super().__init__(data)
        if requires_grad:
            self.requires_grad = True

    @classmethod
    def _from_node(cls, node: Any) -> Tensor:
        return Tensor._from_node(node)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


def empty_parameter(*shape: int, dtype: Any = None, device: str | None = None) -> Parameter:
    """A parameter of ``shape`` over fresh zeroed memory, filled by no kernel (an init function fills it next)."""
    dt = Tensor.zeros(0, dtype=dtype).dtype  # the default float unless told (a constant: allocates nothing)
    count = 1
    for s in shape:
        count *= s
    raw = Tensor(bytes(count * dt.itemsize), dtype=dt, device=device)
    return Parameter(raw.reshape(shape))


class _IncompatibleKeys(NamedTuple):
    missing_keys: list[str]
    unexpected_keys: list[str]


def _is_parameter(value: Any) -> bool:
    return isinstance(value, Parameter) or (isinstance(value, Tensor) and value._leaf_grad)


class Module:
    """The base class of layers and models: subclass it, assign layers and parameters in ``__init__``, and write
    ``forward``. Calling the module calls ``forward``."""

    training: bool
    _parameters: dict[str, Tensor | None]
    _buffers: dict[str, Tensor | None]
    _non_persistent: set[str]
    _modules: dict[str, Module | None]

    def __init__(self) -> None:
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", {})

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "forward" function')

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # ---- attributes: parameters, buffers and submodules live in their tables ----

    def __getattr__(self, name: str) -> Any:
        # called only when ordinary lookup fails
        for table in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(table)
            if entries is not None and name in entries:
                return entries[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __setattr__(self, name: str, value: Any) -> None:
        params = self.__dict__.get("_parameters")
        if params is None and (_is_parameter(value) or isinstance(value, Module)):
            raise AttributeError(f"cannot assign {type(value).__name__} '{name}' before Module.__init__() call")
        if _is_parameter(value):
            if name not in params:  # type: ignore[operator]
                self._forget(name)  # replacing keeps the name's place in the table (and the state dict order)
            params[name] = value  # type: ignore[index]
        elif params is not None and name in params:
            if value is not None:
                msg = f"cannot assign '{type(value).__name__}' as parameter '{name}' (Parameter or None expected)"
                raise TypeError(msg)
            params[name] = None
        elif isinstance(value, Module):
            if name not in self._modules:
                self._forget(name)
            self._modules[name] = value
        elif params is not None and name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module '{name}' (Module or None)")
            self._modules[name] = None
        elif params is not None and name in self._buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' (Tensor or None)")
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if not self._forget(name):
            object.__delattr__(self, name)

    def _forget(self, name: str) -> bool:
        """Remove ``name`` from every table and the instance dict; whether it was anywhere."""
        found = False
        for table in (self._parameters, self._buffers, self._modules, self.__dict__):
            if name in table:
                del table[name]
                found = True
        self._non_persistent.discard(name)
        return found

    def _check_new_name(self, kind: str, name: str, table: dict[str, Any]) -> None:
        if not isinstance(name, str):
            raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
        if not name or "." in name:
            raise KeyError(f'{kind} name can\'t be empty or contain ".", got {name!r}')
        if name not in table and hasattr(self, name):
            raise KeyError(f"attribute '{name}' already exists")

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """A tensor that belongs to the module's state but is not learned (saved unless ``persistent=False``)."""
        if "_buffers" not in self.__dict__:
            raise AttributeError("cannot assign buffer before Module.__init__() call")
        self._check_new_name("buffer", name, self._buffers)
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{type(tensor).__name__}' as buffer '{name}' (Tensor or None expected)")
        self._forget(name)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent.add(name)

    def register_parameter(self, name: str, param: Tensor | None) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError("cannot assign parameter before Module.__init__() call")
        self._check_new_name("parameter", name, self._parameters)
        if param is not None and not _is_parameter(param):
            raise TypeError(f"cannot assign '{type(param).__name__}' as parameter '{name}' (Parameter or None)")
        self._forget(name)
        self._parameters[name] = param

    def add_module(self, name: str, module: Module | None) -> None:
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._check_new_name("module", name, self._modules)
        self._forget(name)
        self._modules[name] = module

    register_module = add_module

    def get_submodule(self, target: str) -> Module:
        """The submodule at a dotted path (``"encoder.layers.0"``); ``""`` is the module itself."""
        module: Module = self
        for part in target.split(".") if target else []:
            child = module._modules.get(part)
            if child is None:
                raise AttributeError(f"{type(module).__name__} has no submodule '{part}' (looking up '{target}')")
            module = child
        return module

    # ---- walking the tree ----

    def named_modules(self, memo: set[int] | None = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Module]]:  # fmt: skip
        """(dotted name, module) for this module and every submodule, depth first, each once."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(memo, f"{prefix}.{name}" if prefix else name, remove_duplicate)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen: set[int] = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self) -> Iterator[Module]:
        for _, child in self.named_children():
            yield child

    def _named_tensors(self, table: str, prefix: str, recurse: bool,
                       remove_duplicate: bool) -> Iterator[tuple[str, Tensor]]:  # fmt: skip
        seen: set[int] = set()
        owners = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        for owner_name, owner in owners:
            for name, t in getattr(owner, table).items():
                if t is None or (remove_duplicate and id(t) in seen):
                    continue
                seen.add(id(t))
                yield (f"{owner_name}.{name}" if owner_name else name), t

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, Tensor]]:  # fmt: skip
        """(dotted name, parameter) for every parameter; one shared by several modules comes once."""
        return self._named_tensors("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Tensor]]:  # fmt: skip
        return self._named_tensors("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Call ``fn`` on every submodule (children first) and then on this module, as torch does."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ---- state dicts ----

    def state_dict(self, destination: dict[str, Any] | None = None, prefix: str = "",
                   keep_vars: bool = False) -> dict[str, Tensor]:  # fmt: skip
        """Parameters and persistent buffers by dotted name (a shared tensor appears under each of its names).

        Values are detached tensors unless ``keep_vars=True``, which gives the parameters themselves.
        """
        out: dict[str, Tensor] = {} if destination is None else destination
        for name, p in self._parameters.items():
            if p is not None:
                out[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent:
                out[prefix + name] = b if keep_vars else b.detach()
        for name, child in self._modules.items():
            if child is not None:
                child.state_dict(out, prefix + name + ".", keep_vars)
        return out

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Copy values into the module's parameters and buffers, by name; the tensors stay the same objects.

        Values may be boltgrad tensors, numpy arrays or torch tensors (converted through numpy). With ``strict``
        every name must match; a shape mismatch is always an error. Returns (missing_keys, unexpected_keys).
        ``assign`` is accepted for torch's signature; values are always copied into the existing tensors.
        """
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors, writes = [], {}
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = _as_tensor(state_dict[key], target)
            if tuple(value.shape) != tuple(target.shape):
                errors.append(f"size mismatch for {key}: copying a param with shape {tuple(value.shape)} from "
                              f"checkpoint, the shape in current model is {tuple(target.shape)}.")  # fmt: skip
                continue
            writes[id(target)] = (target, value)  # a tensor shared under two names is written once
        if strict:
            if unexpected:
                errors.insert(0, f"Unexpected key(s) in state_dict: {_quoted(unexpected)}.")
            if missing:
                errors.insert(0, f"Missing key(s) in state_dict: {_quoted(missing)}.")
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t" + "\n\t".join(errors))
        with no_grad():
            for target, value in writes.values():
                target.assign(value)
        # realized now: a leaf whose node is still an unrealized assign is not the leaf autograd knows
        Tensor.realize_all([target for target, _ in writes.values()])
        return _IncompatibleKeys(missing, unexpected)

    # ---- modes, devices, gradients ----

    def train(self, mode: bool = True) -> Module:
        """Set training mode (dropout active, batch norm on batch statistics) here and in every submodule."""
        if not isinstance(mode, bool):
            raise ValueError(f"train: mode must be a bool, got {type(mode).__name__}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if p.grad is not None:
                p.grad = None if set_to_none else p.grad.zeros_like()

    def to(self, *args: Any, **kwargs: Any) -> Module:
        """``to(device)``, ``to(dtype)`` or both, in place: every parameter and buffer keeps its identity.

        A dtype applies to floating point tensors only (integer buffers such as counters keep theirs).
        """
        device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
        if kwargs:
            raise TypeError(f"to(): unexpected arguments {sorted(kwargs)}")
        for a in args:
            if isinstance(a, str) and _is_device_name(a):
                device = a
            else:
                dtype = a
        for t in [*self.parameters(), *self.buffers()]:
            _move(t, device, dtype if t.dtype.is_float else None)
        return self

    def cpu(self) -> Module:
        return self.to("CPU")

    def float(self) -> Module:
        return self.to(dtype="float32")

    def half(self) -> Module:
        return self.to(dtype="float16")

    def double(self) -> Module:
        return self.to(dtype="float64")

    def bfloat16(self) -> Module:
        return self.to(dtype="bfloat16")

    # ---- printing ----

    def extra_repr(self) -> str:
        """The text between the parentheses of this module's repr; layers override it with their settings."""
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        extra = self.extra_repr()
        lines = extra.split("\n") if extra else []
        for name, child in self._modules.items():
            lines.append(f"({name}): " + repr(child).replace("\n", "\n  "))
        if not self._modules:
            return f"{self._get_name()}({extra})"
        return f"{self._get_name()}(\n  " + "\n  ".join(lines) + "\n)"

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules))


def _quoted(keys: list[str]) -> str:
    return ", ".join('"' + k + '"' for k in keys)


def _is_device_name(name: str) -> bool:
    try:
        Device.canonicalize(name)
    except ValueError:
        return False
    return True


def _move(t: Tensor, device: str | None, dtype: Any) -> None:
    """Give ``t`` a copy of its value on ``device`` (and in ``dtype``) in place of its own."""
    with no_grad():
        moved = t.to(device=device, dtype=dtype)
        if moved is t:
            return
        moved.realize()
    leaf = t._leaf_grad
    if leaf:
        t.requires_grad = False  # a leaf is known by its node: forget the old one...
    t._base = None  # a copy of its own
    t._set_node(moved.node)  # (its views, on the old device, keep the old values)
    if leaf:
        t.requires_grad = True  # ...and register the new one
    if t.grad is not None:
        t.grad = t.grad.to(device=device, dtype=dtype)


def _as_tensor(value: Any, like: Tensor) -> Tensor:
    """A state dict value as a boltgrad tensor on ``like``'s device (numpy arrays and torch tensors too)."""
    if isinstance(value, Tensor):
        return value.to(like.device) if value.device != like.device else value
    if type(value).__module__.startswith("torch"):
        value = value.detach().cpu()
        value = (value.float() if str(value.dtype) == "torch.bfloat16" else value).numpy()  # numpy has no bfloat16
    return Tensor(value, device=like.device, dtype=like.dtype)
