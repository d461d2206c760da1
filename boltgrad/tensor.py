"""Tensor: a lazy value. Operations build a graph; reading a value realizes it.

    >>> from boltgrad import Tensor
    >>> a = Tensor([[1.0, 2.0], [3.0, 4.0]])
    >>> ((a * 2 + 1).relu()).sum(dim=1).tolist()
    [8.0, 16.0]

The class is assembled from mixins by concept: creation (``tensor_create``), elementwise math
(``tensor_math``), movement and indexing (``tensor_movement``) and reductions and matmul (``tensor_reduce``).
Every operation is written with the graph's primitives; a backend never sees anything else.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from . import autograd, tensor_readers
from .device.buffer import Buffer
from .device.registry import Device_, canonicalize
from .engine.realize import realize as engine_realize
from .helpers import prod
from .ir import dtypes
from .ir.dtypes import DType, bfloat16, to_dtype
from .ir.node import Node, toposort
from .ir.ops import Op
from .schedule.materialize import as_contiguous_buffer
from .schedule.realized import buffer_view, input_versions, record_realized
from .tensor_create import CreationMixin
from .tensor_gather import GatherMixin
from .tensor_host import from_numpy, infer_list, list_dtype, nest, pack_values, unpack_values
from .tensor_index import IndexMixin
from .tensor_inplace import InplaceMixin
from .tensor_math import MathMixin
from .tensor_movement import MovementMixin
from .tensor_nn import NNMixin
from .tensor_readers import readers_of_batch, track, tracked
from .tensor_reduce import ReduceMixin
from .tensor_shared import settle, shared_view, write
from .tensor_sort import SortMixin
from .tensor_special import SpecialMixin
from .tensor_views import follow, has_memory, moves_all_of_its_base, register, shares_its_base, view_chain
from .tensor_views import write as write_view

Scalar = bool | int | float


# the tensors that a realize handed each buffer to (see Tensor._own_memory)
# (by id: a WeakSet would compare tensors with ==, which is elementwise)
_holders: weakref.WeakKeyDictionary[Buffer, dict[int, weakref.ref]] = weakref.WeakKeyDictionary()
_track_ref = tracked.append


class Tensor(
    CreationMixin,
    SpecialMixin,
    MathMixin,
    MovementMixin,
    ReduceMixin,
    IndexMixin,
    GatherMixin,
    SortMixin,
    NNMixin,
    InplaceMixin,
):
    """A multi-dimensional array whose operations are recorded lazily and compiled into fused kernels."""

    __slots__ = ("node", "_leaf_grad", "grad", "_base", "_views", "__weakref__")
    __array_priority__ = 1000  # numpy defers to our reflected operators

    def __init__(
        self,
        data: Any,
        device: str | None = None,
        dtype: DType | str | None = None,
        requires_grad: bool = False,
    ):
        want = to_dtype(dtype) if dtype is not None else None
        dev = Device_.canonicalize(device)
        lazy = isinstance(data, Node | Tensor)  # a graph, maybe: tracked for the writes to come (tensor_readers.py)
        if isinstance(data, Node):
            node = data
        elif isinstance(data, Tensor):
            node = data.node if want is None else data.cast(want).node
        elif type(data).__module__ == "numpy" or type(data).__name__ == "ndarray":
            node = from_numpy(data, dev, want)
        elif isinstance(data, bytes | bytearray | memoryview):
            dt = want or dtypes.uint8
            raw = memoryview(data).cast("B")  # copied once, into the buffer (a weight can be tens of megabytes)
            if len(raw) % dt.itemsize:
                raise ValueError(f"Tensor: {len(raw)} bytes is not a whole number of {dt.name} elements")
            buf = Buffer(dev, len(raw) // dt.itemsize, dt).copyin(raw)
            node = Node(Op.BUFFER, dt, (), buf)
        else:
            shape, values = infer_list(data)
            dt = want or (list_dtype(values) if shape else dtypes.to_dtype(type(values[0])))
            buf = Buffer(dev, len(values), dt)
            buf.copyin(pack_values(values, dt))
            node = buffer_view(Node(Op.BUFFER, dt, (), buf), shape)
        self.node: Node = node
        self._leaf_grad = False
        self.grad: Tensor | None = None
        self._base: Tensor | None = None  # the tensor this one is a view of (tensor_views.py)
        self._views: list[weakref.ref] | None = None  # this tensor's views, weakly (tensor_views.py)
        if lazy:
            track(self)
        if requires_grad:
            self.requires_grad = True

    @classmethod
    def _from_node(cls, node: Node) -> Tensor:
        if not autograd.grad_mode.enabled and node.op is not Op.DETACH and autograd.needs_grad(node):
            node = Node(Op.DETACH, node.dtype, (node,))  # work under no_grad() passes no gradient
        t = object.__new__(cls)
        t.node = node
        t._leaf_grad = False
        t.grad = None
        t._base = t._views = None
        _track_ref(weakref.ref(t))  # (tensor_readers.track, inlined: this runs for every op)
        if len(tracked) > tensor_readers.prune_past:
            tensor_readers.live_lazy()  # (prunes the list)
        return t

    # ---- autograd ----

    @property
    def requires_grad(self) -> bool:
        """True for a leaf created with requires_grad=True, and for any result computed from one."""
        return self._leaf_grad or autograd.needs_grad(self.node)

    @requires_grad.setter
    def requires_grad(self, flag: bool) -> None:
        if flag and not self.dtype.is_float:
            raise RuntimeError(f"only floating point tensors can require gradients, not {self.dtype.name}")
        if flag and not self._leaf_grad:
            if autograd.needs_grad(self.node):
                raise RuntimeError("requires_grad can only be set on a leaf; call .detach() first")
            # a leaf is known by its node, so it needs a buffer of its own (two zeros(3) are one node)
            if as_contiguous_buffer(self.node) is None and shared_view(self) is None:
                self._base = None  # a copy of its own
                self._set_node(self.contiguous().node)
                self.realize()
            autograd.register_leaf(self.node, self)
        elif not flag and self._leaf_grad:
            autograd.unregister_leaf(self.node)
        self._leaf_grad = bool(flag)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        self.requires_grad = requires_grad
        return self

    @property
    def is_leaf(self) -> bool:
        return self._leaf_grad or not self.requires_grad

    def detach(self) -> Tensor:
        """The same value, cut off from the graph: no gradient flows through it. A view: it shares this tensor's
        memory (an in-place write to it writes this tensor)."""
        out = Tensor._from_node(Node(Op.DETACH, self.dtype, (self.node,)))
        register(out, self._base if self._base is not None else self)
        return out

    @property
    def data(self) -> Tensor:
        """This tensor's values outside autograd: a view, as ``detach()`` (``p.data.mul_(0.5)`` writes ``p``)."""
        return self.detach()

    @data.setter
    def data(self, value: Any) -> None:
        """``p.data = t``: p takes t's values (a copy; torch shares t's memory), its shape and dtype included;
        a leaf stays the same leaf."""
        if isinstance(value, Tensor) and value._base is self and (chain := view_chain(value)) is not None:
            if all(n.op is Op.DETACH for n in chain):  # p.data -= x: p's data was written in place, through the view
                return
        src = value.detach() if isinstance(value, Tensor) else Tensor(value, device=self.device)
        if src.shape == self.shape and src.dtype == self.dtype and src.device == self.device:
            with autograd.no_grad():
                self.assign(src).realize()
            return
        fresh = src.contiguous().realize()
        leaf = self._leaf_grad
        if leaf:
            self.requires_grad = False  # a leaf is known by its node: forget the old one...
        self._base = None
        self._set_node(fresh.node)  # (its views, of another shape, dtype or device, keep the old values)
        if leaf:
            self.requires_grad = True  # ...and register the new one

    def backward(self, gradient: Tensor | None = None) -> None:
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad (lazily)."""
        autograd.backward(self, gradient)

    # ---- properties ----

    @property
    def shape(self) -> tuple[int, ...]:
        return self.node.shape

    @property
    def dtype(self) -> DType:
        return self.node.dtype

    @property
    def device(self) -> str:
        return self.node.device or Device_.DEFAULT

    @property
    def ndim(self) -> int:
        return len(self.node.shape)

    def dim(self) -> int:
        return self.ndim

    def is_floating_point(self) -> bool:
        return self.dtype.is_float

    def element_size(self) -> int:
        return self.dtype.itemsize

    def is_contiguous(self) -> bool:
        """True: a boltgrad tensor has no strides; views become index arithmetic in the kernel that reads them."""
        return True

    def numel(self) -> int:
        return prod(self.shape)

    def size(self, dim: int | None = None) -> tuple[int, ...] | int:
        return self.shape if dim is None else self.shape[self._axis(dim)]

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __repr__(self) -> str:
        try:
            body = repr(self.tolist())
        except Exception as e:  # repr must never raise
            body = f"<unrealized: {e}>"
        extra = f", dtype={self.dtype!r}" if self.dtype != dtypes.float32 else ""
        return f"tensor({body}{extra}, device={self.device!r})"

    def __hash__(self) -> int:
        return id(self)

    def __bool__(self) -> bool:
        if self.numel() != 1:
            raise RuntimeError(f"the truth value of a tensor with {self.numel()} elements is ambiguous")
        return bool(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if not self.dtype.is_int:
            raise TypeError("only integer tensors of a single element can be used as an index")
        return int(self.item())

    # ---- running ----

    def realize(self, *others: Tensor) -> Tensor:
        """Compute this tensor (and ``others``) now; the value stays in a device buffer."""
        Tensor.realize_all([self, *others])
        return self

    @staticmethod
    def realize_all(tensors: Sequence[Tensor]) -> None:
        tensors = [*tensors, *autograd.take_pending_roots()]  # a loss goes with its gradients (autograd.py)
        # a view stays a view (tensor_views.py): its base is realized in its place, and the view follows it
        viewed = [(t, chain) for t in tensors if t._base is not None and (chain := view_chain(t)) is not None]
        if viewed:
            bases: dict[int, Tensor] = {}
            for t, chain in viewed:
                if shares_its_base(t) or has_memory(t._base) or moves_all_of_its_base(t, chain):  # type: ignore[arg-type]
                    bases[id(t._base)] = t._base  # type: ignore[assignment]
                else:
                    t._base = None  # a part, or a reshape, of a value nothing else holds: computed alone
            skip = {id(t) for t, _ in viewed if t._base is not None} | bases.keys()
            tensors = [t for t in tensors if id(t) not in skip] + list(bases.values())
        # a view of a shared buffer (tensor_shared.py) stays that view: realized, it only writes what is pending
        settled = [(t, r) for t in tensors if (r := shared_view(t)) is not None]
        if settled:
            shared = {id(t) for t, _ in settled}
            writes = [Tensor(r.pending) for _, r in settled if r.pending is not None]
            tensors = [t for t in tensors if id(t) not in shared] + writes
        todo = list(
            {id(t): t for t in tensors if as_contiguous_buffer(t.node) is None or t.node.op is Op.ASSIGN}.values()
        )
        if not todo:
            for t, r in settled:
                settle(t, r)
            return
        computed = [t.node for t in todo if t.node.op is not Op.ASSIGN]
        # one walk of the graph serves the versions of its reads and the schedule (when nothing is assigned)
        order = toposort(computed) if len(computed) == len(todo) else None
        # lazy values that read what this overwrites are computed with it, from the old values (tensor_readers.py)
        if readers := readers_of_batch(todo, order):
            todo += readers
            computed = [t.node for t in todo if t.node.op is not Op.ASSIGN]
            order = toposort(computed) if len(computed) == len(todo) else None
        reads = dict(zip(computed, input_versions(computed, order)))
        versions = [reads.get(t.node, ()) for t in todo]
        out = engine_realize([t.node for t in todo], order)
        for t, v in zip(todo, versions):
            buf = out[t.node]
            view = buffer_view(Node(Op.BUFFER, buf.dtype, (), buf), t.shape)
            if t.node.op is Op.ASSIGN:
                # graphs built from the assign's node read the written buffer, as long as nothing overwrote it since
                record_realized(t.node, view, ((buf, buf.version),))
            elif autograd.needs_grad(t.node):
                # backward() after .item() still walks the graph: the view stands for it. The record holds the
                # view weakly, since the alias holds the graph (and so the record's key) as long as the view lives
                autograd.alias(view, t.node)
                record_realized(t.node, view, v + ((buf, buf.version),), weak=True)
            elif v:
                # the result's own buffer is versioned too: an assign that later overwrites it voids the record.
                # A graph that reads no buffer (constants) is not remembered: recomputing it costs less than a
                # load, and a step recorded later must not depend on which constants some earlier code realized
                record_realized(t.node, view, v + ((buf, buf.version),))
            t._set_node(view)
            _holders.setdefault(buf, {})[id(t)] = weakref.ref(t)
        for t, r in settled:
            settle(t, r)

    def _set_node(self, node: Node) -> None:
        """Replace this tensor's node in place (a new value, or its value in memory now): its views follow."""
        old, self.node = self.node, node
        if self._views:
            follow(self, old)

    def _contiguous_buffer(self) -> Buffer:
        self.realize()
        buf_node = as_contiguous_buffer(self.node)
        if buf_node is None:  # a view (of a tensor, or of a shared buffer) stays one: read a copy
            return self.detach().contiguous()._contiguous_buffer()
        return buf_node.arg

    def _raw(self) -> bytearray:
        if self.numel() == 0:
            return bytearray()
        return self._contiguous_buffer().copyout()

    def tolist(self) -> Any:
        return nest(unpack_values(self._raw(), self.dtype), self.shape)

    def item(self) -> Scalar:
        if self.numel() != 1:
            raise ValueError(f"item(): the tensor has {self.numel()} elements, not 1 (shape {self.shape})")
        return unpack_values(self._raw(), self.dtype)[0]

    def numpy(self) -> Any:
        """A numpy array with a copy of the values (bfloat16 comes back as float32; numpy has no bfloat16)."""
        import numpy as np

        if self.dtype == bfloat16:
            return self.cast(dtypes.float32).numpy()
        np_dtype = np.dtype(self.dtype.name if self.dtype != dtypes.bool_ else "bool")
        return np.frombuffer(bytes(self._raw()), dtype=np_dtype).reshape(self.shape).copy()

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        arr = self.numpy()
        return arr if dtype is None else arr.astype(dtype)

    def to(self, *args: Any, **kwargs: Any) -> Tensor:
        """``to(device)``, ``to(dtype)`` or ``to(device, dtype)``, as in torch."""
        device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
        if kwargs:
            raise TypeError(f"to(): unexpected arguments {sorted(kwargs)}")
        for a in args:
            if isinstance(a, DType):
                dtype = a
            elif isinstance(a, str) and a.split(":")[0].upper() in ("CPU", "PYTHON", "NULL", "CUDA", "REMOTE"):
                device = a
            else:
                dtype = to_dtype(a)
        out = self
        if dtype is not None:
            out = out.cast(to_dtype(dtype))
        if device is not None and canonicalize(device) != self.device:
            src = out.contiguous() if as_contiguous_buffer(out.node) is None else out
            out = Tensor._from_node(Node(Op.COPY, src.dtype, (src.node,), canonicalize(device)))
        return out

    # ---- in place ----

    def assign(self, value: Any) -> Tensor:
        """Write ``value`` into this tensor's memory (lazily: it happens when this tensor is realized).

        Tensors computed from this one before the assign keep the old values, as in torch: when the write is
        realized, the live ones not yet computed are computed with it, before it (``tensor_readers.py``). Views
        of it (``t[0]``, ``t.T``, ``t.detach()``) share its memory and read the new values.

        Autograd, as torch's in-place ops: with grad enabled, when this tensor requires grad (and is not a leaf)
        or ``value`` does, the assign makes a new version of the tensor whose graph is ``value``'s, so
        gradients flow through it; nothing is written in place then (so write state that must stay in place, such
        as a KV cache, under ``no_grad()`` or from values that need no grad). On a leaf that requires grad (optimizers
        update parameters this way; torch forbids it) and under ``no_grad()`` the value is written and autograd
        keeps seeing the tensor as it was: a leaf stays that leaf.
        """
        src = value if isinstance(value, Tensor) else Tensor(value, device=self.device, dtype=self.dtype)
        if src.device != self.device:
            raise RuntimeError(f"assign: value is on {src.device} but the tensor is on {self.device}")
        if src.shape != self.shape:
            try:
                src = src._broadcast_to(self.shape)
            except ValueError:
                msg = f"assign: value of shape {src.shape} does not fit a tensor of shape {self.shape}"
                raise ValueError(msg) from None
        src = src.cast(self.dtype)
        if self._base is not None and (chain := view_chain(self)) is not None:
            if shares_its_base(self):
                write_view(self, src, chain)  # a view: the write goes to its base (and so to all its views)
                return self
            self._base = None  # the only way to that value: its own, written as any tensor's
        if autograd.is_grad_enabled() and not self._leaf_grad and (self.requires_grad or src.requires_grad):
            self._set_node(src.node)
            track(self)
            return self
        if (record := shared_view(self)) is not None:
            write(self, record, src)
            return self
        self._own_memory()
        old = self.node
        self._set_node(Node(Op.ASSIGN, self.dtype, (old, src.node)))
        track(self)
        if autograd.needs_grad(old):
            autograd.alias(self.node, old)
        return self

    def assign_at(self, starts: Sequence[int | Tensor], value: Any) -> Tensor:
        """Write ``value`` as a block into this tensor's memory at ``starts`` (one per dim), lazily, touching only
        the block: ``cache.assign_at((0, pos, 0), kv)`` writes one row of a KV cache. A start may be an int or a
        0-d integer tensor (a ``boltgrad.Variable``, or a value computed on the device), known only when the
        kernel runs; such a start is clamped so that the block stays inside the tensor.

        ``value`` is broadcast to a block shape of its own rank padded with 1s in front, no larger than this
        tensor. Autograd does not see the write: use it for state (caches, buffers), or where no gradient flows.
        """
        src = value if isinstance(value, Tensor) else Tensor(value, device=self.device, dtype=self.dtype)
        if len(starts) != self.ndim:
            raise ValueError(f"assign_at: {len(starts)} starts given for a tensor of {self.ndim} dims")
        if src.ndim > self.ndim:
            raise ValueError(f"assign_at: a block of shape {src.shape} has more dims than the tensor {self.shape}")
        block = (1,) * (self.ndim - src.ndim) + src.shape
        for d, (st, size, full) in enumerate(zip(starts, block, self.shape)):
            if size > full:
                raise ValueError(f"assign_at: a block of shape {src.shape} does not fit a tensor of shape {self.shape}")
            if isinstance(st, int) and not 0 <= st <= full - size:
                raise IndexError(f"assign_at: a block of size {size} at {st} is outside dim {d} of size {full}")
            if isinstance(st, Tensor) and (st.ndim != 0 or not st.dtype.is_int):
                msg = f"assign_at: a start must be an int or a 0-d integer tensor, got {st.dtype.name}{st.shape}"
                raise TypeError(msg)
        if src.device != self.device:
            raise RuntimeError(f"assign_at: value is on {src.device} but the tensor is on {self.device}")
        src = src.reshape(block).cast(self.dtype)
        viewing = self._base is not None and view_chain(self) is not None
        if viewing and not shares_its_base(self):
            viewing, self._base = False, None  # the only way to that memory: its own (see assign)
        record = shared_view(self)
        if record is not None or viewing:
            # a view (of a shared buffer, of a tensor): the whole view is written, the block selected into it
            if any(isinstance(st, Tensor) for st in starts):
                raise NotImplementedError("assign_at: starts given as tensors on a view (of a tensor, or of an "
                                          "optimizer's parameter in its shared buffer); pass ints")  # fmt: skip
            pads = [(st, full - st - size) for st, size, full in zip(starts, block, self.shape)]
            inside = Tensor.ones(*block, dtype=dtypes.bool_, device=self.device).pad(pads)
            merged = src.pad(pads).where(inside, self.detach())
            if record is not None:
                write(self, record, merged)
            else:
                with autograd.no_grad():
                    self.assign(merged)
            return self
        self._own_memory()
        dynamic = tuple(st.cast(dtypes.int64).node for st in starts if isinstance(st, Tensor))
        arg = tuple(st if isinstance(st, int) else None for st in starts)
        old = self.node
        self._set_node(Node(Op.ASSIGN, self.dtype, (old, *dynamic, src.node), arg))
        track(self)
        if autograd.needs_grad(old):
            autograd.alias(self.node, old)
        return self

    def _own_memory(self) -> None:
        """Realize this tensor and make sure no other tensor holds its buffer before it is written: two tensors
        built alike are one graph, so realizing them together hands them one buffer, which is right until one
        of them is assigned to. Then that one gets a copy of its own first (copy on write)."""
        if as_contiguous_buffer(self.node) is None:
            self.realize()
        buf_node = as_contiguous_buffer(self.node)
        assert buf_node is not None
        buf = buf_node.arg
        holders = _holders.get(buf)
        if holders is None or not any(r() is not None and key != id(self) for key, r in list(holders.items())):
            return
        holders.pop(id(self), None)
        fresh = Buffer(buf.device, buf.size, buf.dtype)
        target = buffer_view(Node(Op.BUFFER, buf.dtype, (), fresh), self.shape)
        self._set_node(Node(Op.ASSIGN, self.dtype, (target, self.node)))
        self.realize()

    def cpu(self) -> Tensor:
        return self.to("CPU")

    def type(self, dtype: DType | str | None = None) -> Any:
        """``x.type(dtype)`` casts; ``x.type()`` names the dtype (torch's ``'torch.FloatTensor'`` is not copied)."""
        return self.dtype.name if dtype is None else self.cast(dtype)

    def type_as(self, other: Tensor) -> Tensor:
        return self.cast(other.dtype)

    def cast(self, dtype: DType | str) -> Tensor:
        if dtype is self.node.dtype:  # the usual case, before to_dtype and DType's (Python-level) ==
            return self
        dt = to_dtype(dtype)
        return self if dt == self.dtype else self._from_node(Node(Op.CAST, dt, (self.node,)))

    def contiguous(self) -> Tensor:
        return self._from_node(Node(Op.CONTIGUOUS, self.dtype, (self.node,)))

    def clone(self) -> Tensor:
        return self.contiguous()

    def float(self) -> Tensor:
        return self.cast(dtypes.float32)

    def half(self) -> Tensor:
        return self.cast(dtypes.float16)

    def bfloat16(self) -> Tensor:
        return self.cast(dtypes.bfloat16)

    def short(self) -> Tensor:
        return self.cast(dtypes.int16)

    def byte(self) -> Tensor:
        return self.cast(dtypes.uint8)

    def char(self) -> Tensor:
        return self.cast(dtypes.int8)

    def double(self) -> Tensor:
        return self.cast(dtypes.float64)

    def int(self) -> Tensor:
        return self.cast(dtypes.int32)

    def long(self) -> Tensor:
        return self.cast(dtypes.int64)

    def bool(self) -> Tensor:
        return self.cast(dtypes.bool_)


def zeroed(shape: tuple[int, ...], dtype: DType, device: str | None = None) -> Tensor:
    """A tensor of zeros in memory of its own, allocated as zeros: on the CPU a large one is fresh pages that take
    no resident memory until written (a KV cache of the whole context costs the positions used). Two calls give
    two buffers, unlike ``zeros(shape).contiguous()``, which is one expression however often it is built."""
    dev = Device_.canonicalize(device)
    buf = Buffer(dev, prod(shape), dtype).allocate_zeroed()
    return Tensor(buffer_view(Node(Op.BUFFER, dtype, (), buf), tuple(shape)))


def synchronize() -> None:
    """Wait for all queued work on every opened device."""
    from .device.registry import _opened

    for dev in list(_opened.values()):
        dev.synchronize()


def empty_cache() -> None:
    """Give memory held for reuse back: the freed blocks every opened device's allocator keeps, and (glibc) the
    C heap's free memory. Like ``torch.cuda.empty_cache()``; ``boltgrad.llm.load`` calls it once loading is done."""
    from .device.cpu import return_free_memory
    from .device.registry import _opened

    for dev in list(_opened.values()):
        free_cached = getattr(getattr(dev, "allocator", None), "free_cached", None)
        if free_cached is not None:
            free_cached()
    return_free_memory()
