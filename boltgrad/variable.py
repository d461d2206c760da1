"""``boltgrad.Variable``: a named integer that kernels read when they launch, not when they are compiled.

    >>> import boltgrad
    >>> pos = boltgrad.Variable("pos", 0, 15)
    >>> mask = boltgrad.arange(16) <= pos.bind(3)
    >>> mask.sum().item()
    4
    >>> (boltgrad.arange(16) <= pos.bind(9)).sum().item()  # same kernel, new value
    10

A Variable is a 0-d int64 tensor, so it mixes with tensors anywhere a 0-d tensor does (arithmetic, comparisons,
masks, ``where``). Its value is a launch argument of the kernels that use it: binding a new value reuses the
compiled kernels, and a jitted step replays with the value each Variable holds at the call. That is how one
recording serves every step of a generation: the position in a KV cache is a Variable, the cache has its full
length, and the step masks what lies past the position.

Shapes stay concrete: a Variable is a value, never a dimension. ``min`` and ``max`` bound the values it may take
(the index algebra relies on them), so ``bind`` rejects anything outside them.
"""

from __future__ import annotations

import weakref

from .ir import dtypes
from .ir.node import Node, var
from .ir.ops import Op
from .tensor import Tensor

_PREFIX = "v_"  # kernel-side names: the user's name cannot clash with the runtime's own variables
_live: weakref.WeakValueDictionary[str, Variable] = weakref.WeakValueDictionary()


class Variable(Tensor):
    """A named int64 scalar in ``[min, max]``, bound to a value with ``bind``; see the module docstring."""

    __slots__ = ("name", "min", "max", "var", "_value")

    def __init__(self, name: str, min: int, max: int, value: int | None = None):  # noqa: A002 - torch-style
        if not name.isidentifier() or not name.isascii():
            raise ValueError(f"Variable: the name must be an identifier (letters, digits, _), got {name!r}")
        if not (isinstance(min, int) and isinstance(max, int)) or min > max:
            raise ValueError(f"Variable {name!r}: needs integer bounds with min <= max, got [{min!r}, {max!r}]")
        other = _live.get(name)
        if other is not None and (other.min, other.max) != (min, max):
            raise ValueError(
                f"Variable {name!r} already exists with bounds [{other.min}, {other.max}]; give the new one "
                "another name or the same bounds"
            )
        self.name, self.min, self.max = name, min, max
        self.var = var(_PREFIX + name, min, max)
        self._leaf_grad = False
        self.grad = None
        self._base = self._views = None
        self.bind(min if value is None else value)
        _live[name] = self

    @classmethod
    def _from_node(cls, node: Node) -> Tensor:
        return Tensor._from_node(node)  # what is computed from a Variable is a plain tensor

    def bind(self, value: int) -> Variable:
        """Set the value that kernels built from now on read; returns the Variable."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"Variable {self.name!r}: bind takes an int, got {type(value).__name__}")
        if not self.min <= value <= self.max:
            raise ValueError(f"Variable {self.name!r}: {value} is outside its bounds [{self.min}, {self.max}]")
        self._value = value
        return self

    @property  # type: ignore[override]
    def node(self) -> Node:
        """Always the binding of the current value (a Tensor's node is replaced by its buffer when realized; a
        Variable's never is, so graphs built from it keep reading the launch argument)."""
        return Node(Op.BIND, dtypes.int64, (self.var,), self._value)

    @node.setter
    def node(self, _: Node) -> None:
        pass

    @property
    def value(self) -> int:
        return self._value

    def _contiguous_buffer(self):
        return Tensor._from_node(self.node)._contiguous_buffer()  # a fresh buffer holding the value

    def item(self) -> int:
        return self._value

    def __repr__(self) -> str:
        return f"Variable({self.name!r}, {self.min}, {self.max}, value={self.value})"


def variable_named(kernel_name: str) -> Variable | None:
    """The live Variable behind a kernel variable's name, if it is one of the user's."""
    if not kernel_name.startswith(_PREFIX):
        return None
    return _live.get(kernel_name[len(_PREFIX) :])
