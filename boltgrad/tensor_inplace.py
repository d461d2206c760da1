"""In-place methods (``add_``, ``x += y``, ...): each computes the new value lazily and ``assign``s it, so a
non-leaf's write becomes a new version of the tensor in the graph and backpropagates like torch's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import autograd

if TYPE_CHECKING:
    from .tensor import Tensor


class InplaceMixin:
    __slots__ = ()

    def _inplace(self, value: Any) -> Tensor:
        """``assign`` for the in-place methods, which torch forbids on a leaf that requires grad."""
        if self._leaf_grad and autograd.is_grad_enabled():
            raise RuntimeError(
                "a leaf tensor that requires grad is used in an in-place operation; do it under boltgrad.no_grad(), "
                "or call .assign() to overwrite the leaf's value"
            )
        return self.assign(value)

    def add_(self, other: Any, alpha: Any = 1) -> Tensor:
        return self._inplace(self.add(other, alpha=alpha))

    def sub_(self, other: Any, alpha: Any = 1) -> Tensor:
        return self._inplace(self.sub(other, alpha=alpha))

    def mul_(self, other: Any) -> Tensor:
        return self._inplace(self * other)

    def div_(self, other: Any) -> Tensor:
        return self._inplace(self / other)

    def clamp_(self, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002 - torch's names
        return self._inplace(self.clamp(min, max))

    def zero_(self) -> Tensor:
        return self._inplace(self._const_like(0))

    def fill_(self, value: Any) -> Tensor:
        return self._inplace(self._const_like(value))

    def copy_(self, src: Any) -> Tensor:
        return self._inplace(src)

    def abs_(self) -> Tensor:
        return self._inplace(self.abs())

    def neg_(self) -> Tensor:
        return self._inplace(-self)

    def square_(self) -> Tensor:
        return self._inplace(self.square())

    def sqrt_(self) -> Tensor:
        return self._inplace(self.sqrt())

    def exp_(self) -> Tensor:
        return self._inplace(self.exp())

    def log_(self) -> Tensor:
        return self._inplace(self.log())

    def relu_(self) -> Tensor:
        return self._inplace(self.relu())

    def sigmoid_(self) -> Tensor:
        return self._inplace(self.sigmoid())

    def tanh_(self) -> Tensor:
        return self._inplace(self.tanh())

    def pow_(self, exponent: Any) -> Tensor:
        return self._inplace(self.pow(exponent))

    def masked_fill_(self, mask: Tensor, value: Any) -> Tensor:
        return self._inplace(self.masked_fill(mask, value))

    def __iadd__(self, other: Any) -> Tensor:
        return self.add_(other)

    def __isub__(self, other: Any) -> Tensor:
        return self.sub_(other)

    def __imul__(self, other: Any) -> Tensor:
        return self.mul_(other)

    def __itruediv__(self, other: Any) -> Tensor:
        return self.div_(other)
