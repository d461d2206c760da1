"""``@boltgrad.jit``: capture the kernels of a step once, then replay them without Python in between.

    >>> @boltgrad.jit
    ... def step(x, y):
    ...     opt.zero_grad()
    ...     loss = F.cross_entropy(model(x), y)
    ...     loss.backward()
    ...     opt.step()
    ...     return loss

The first call runs the function normally. The second runs it again and records every kernel launch and copy
the engine makes, with the buffers each one touched (``jit(warmup=False)`` records on the first call already).
From the third call on the function is not called at all: the recorded launches are replayed, on the CPU as one
native call into the runtime's launch list, on CUDA as one CUDA graph launch, with the new inputs' buffers
patched in, fresh output buffers allocated, and the random-number counter advanced (and the seed of
`manual_seed` rebound) so each replay draws new numbers.

What a replay keeps and what it does not:
- Tensors the step closes over and updates with ``assign`` (weights, optimizer state) keep their values across
  replays: their buffers are part of the recording.
- Outputs are new tensors on every call.
- Inputs are checked: a call whose tensor inputs differ in shape, dtype or device from the recording, or whose
  other (non-tensor) arguments differ, is captured again (two calls: one plain, one recording).
- ``boltgrad.Variable`` values are launch arguments: a replay uses the value each Variable holds at the call
  (an argument's, or a closed-over one's current binding), so one recording serves every position of a
  generation. Shapes are concrete: a Variable is never a dimension.
- Python the step runs is *not* re-run on replay: values read with ``.item()`` or ``.numpy()`` inside the step,
  branches on them, and Python-side state changed by the step (counters, lists) are frozen at the recording.
  Keep such state in tensors (``assign``) or outside the jitted function.
- Work the step leaves lazy (neither returned nor realized inside it) is not part of the recording.
"""

from __future__ import annotations

import functools
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import config
from .device.buffer import Buffer
from .device.registry import get_device
from .engine.realize import CapturedCopy, CapturedLaunch, start_capture, stop_capture
from .ir.node import Node
from .ir.ops import Op
from .schedule.materialize import as_contiguous_buffer
from .schedule.realized import buffer_view
from .tensor import Tensor
from .tensor_create import RNG_COUNTER_VAR, RNG_SEED_VAR, _RngState
from .tensor_readers import live_lazy, readers_of
from .variable import Variable, variable_named

_replay_hooks: weakref.WeakSet = weakref.WeakSet()


def register_replay_hook(obj: Any) -> None:
    """``obj.before_replay()`` runs before every replay: an object whose Python-side settings feed a recorded
    step (an optimizer's learning rate) writes them into their device buffers there, outside the recording."""
    _replay_hooks.add(obj)


def _flatten_args(args: tuple, kwargs: dict) -> tuple[list[Tensor], dict[str, int], tuple]:
    """The tensor arguments, the values of the Variable arguments by kernel name, and a hashable key of
    everything else."""
    tensors: list[Tensor] = []
    bound: dict[str, int] = {}
    key: list[Any] = []
    for name, value in [(None, a) for a in args] + sorted(kwargs.items()):
        if isinstance(value, Variable):
            bound[value.var.arg[0]] = value.value
            key.append((name, "V", value.var))
        elif isinstance(value, Tensor):
            tensors.append(value)
            key.append((name, "T"))
        else:
            try:
                hash(value)
                key.append((name, value))
            except TypeError:
                key.append((name, repr(value)))
    return tensors, bound, tuple(key)


@dataclass
class _Segment:
    """Consecutive launches on one device, packed into the device's graph."""

    device: str
    graph: Any
    launches: list[CapturedLaunch]


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes a replay touches, by role. Intermediates of one realize share memory (the engine's planner):
    ``intermediates`` is what they take, ``intermediates_unshared`` what they would take each on its own."""

    inputs: int
    outputs: int  # allocated fresh by every replay
    state: int  # buffers the step keeps across calls: weights, optimizer state, gradients
    intermediates: int
    intermediates_unshared: int

    @property
    def peak(self) -> int:
        return self.inputs + self.outputs + self.state + self.intermediates

    def __str__(self) -> str:
        mb = 1 / 2**20
        return (
            f"peak {self.peak * mb:.2f} MiB: inputs {self.inputs * mb:.2f}, outputs {self.outputs * mb:.2f}, "
            f"state {self.state * mb:.2f}, intermediates {self.intermediates * mb:.2f} "
            f"(unshared {self.intermediates_unshared * mb:.2f})"
        )


@dataclass
class CapturedStep:
    signature: tuple
    ops: list[CapturedLaunch | CapturedCopy]
    input_buffers: list[Buffer]
    output_buffers: list[Buffer]  # fresh per replay
    output_structure: Any  # how to rebuild the return value: shapes in a nested structure
    rng_draws: int  # how far one step advances the random counter
    rng_start: int
    segments: list[Any] = field(default_factory=list)
    patch_points: dict[int, list[tuple[int, int, int]]] = field(default_factory=dict)  # buffer id -> places
    rng_points: list[tuple[int, int, int, int]] = field(default_factory=list)  # (segment, launch, slot, offset)
    seed_points: list[tuple[int, int, int]] = field(default_factory=list)  # (segment, launch, slot)
    var_points: list[tuple[int, int, int, str, int]] = field(default_factory=list)  # (..., slot, name, captured)
    overwritten: list[Buffer] = field(default_factory=list)  # buffers the step's assigns write

    def __post_init__(self) -> None:
        self.overwritten = list({id(op.buffers[0]): op.buffers[0] for op in self.ops
                                 if isinstance(op, CapturedLaunch) and op.overwrites}.values())  # fmt: skip
        current: list[CapturedLaunch] = []
        pieces: list[Any] = []
        for op in self.ops:
            if isinstance(op, CapturedLaunch) and current and current[-1].device != op.device:
                pieces.append(current)
                current = []
            if isinstance(op, CapturedLaunch):
                current.append(op)
            else:
                if current:
                    pieces.append(current)
                    current = []
                pieces.append(op)
        if current:
            pieces.append(current)
        patchable = {id(b) for b in self.input_buffers + self.output_buffers}
        for piece in pieces:
            if isinstance(piece, CapturedCopy):
                self.segments.append(piece)
                continue
            seg_index = len(self.segments)
            graph = get_device(piece[0].device).graph([op.launch for op in piece])
            self.segments.append(_Segment(piece[0].device, graph, piece))
            for li, op in enumerate(piece):
                for slot, buf in enumerate(op.buffers):
                    if id(buf) in patchable:
                        self.patch_points.setdefault(id(buf), []).append((seg_index, li, slot))
                for slot, (var_node, value) in enumerate(zip(op.variables, op.launch.var_values)):
                    if var_node.arg[0] == RNG_COUNTER_VAR:
                        self.rng_points.append((seg_index, li, slot, value - self.rng_start))
                    elif var_node.arg[0] == RNG_SEED_VAR:
                        self.seed_points.append((seg_index, li, slot))
                    elif variable_named(var_node.arg[0]) is not None:
                        self.var_points.append((seg_index, li, slot, var_node.arg[0], value))

    def memory(self) -> MemoryPlan:
        inputs = {id(b): b for b in self.input_buffers}
        outputs = {id(b): b for b in self.output_buffers}
        others: dict[int, Buffer] = {}
        for op in self.ops:
            for b in op.buffers if isinstance(op, CapturedLaunch) else (op.dest, op.src):
                if id(b) not in inputs and id(b) not in outputs:
                    others[id(b)] = b
        planned = [b for b in others.values() if b.base is not None]
        blocks = {id(b.base): b.base for b in planned}
        return MemoryPlan(
            inputs=sum(b.nbytes for b in inputs.values()),
            outputs=sum(b.nbytes for b in outputs.values()),
            state=sum(b.nbytes for b in others.values() if b.base is None),
            intermediates=sum(b.nbytes for b in blocks.values()),
            intermediates_unshared=sum(b.nbytes for b in planned),
        )

    def replay(self, inputs: list[Tensor], bound: dict[str, int]) -> Any:
        for hook in list(_replay_hooks):
            hook.before_replay()
        handles: dict[int, Buffer] = {}
        for captured, new in zip(self.input_buffers, inputs):
            handles[id(captured)] = _buffer_of(new)
        for captured in self.output_buffers:
            handles[id(captured)] = Buffer(captured.device, captured.size, captured.dtype).ensure_allocated()
        for captured_id, new_buf in handles.items():
            for seg, li, slot in self.patch_points.get(captured_id, []):
                self.segments[seg].graph.set_buffer(li, slot, new_buf.handle)
        base = _RngState.counter
        for seg, li, slot, offset in self.rng_points:
            self.segments[seg].graph.set_var(li, slot, base + offset)
        _RngState.counter += self.rng_draws
        for seg, li, slot in self.seed_points:  # manual_seed since the recording: draw from the new seed
            self.segments[seg].graph.set_var(li, slot, _RngState.seed)
        for seg, li, slot, name, captured in self.var_points:
            live = variable_named(name)
            value = bound[name] if name in bound else live.value if live is not None else captured
            self.segments[seg].graph.set_var(li, slot, value)
        if readers := readers_of(self.overwritten):  # as a realize of the assigns would: old values first
            Tensor.realize_all(readers)
        for buf in self.overwritten:  # ... and cached reads of the old values are void
            buf.version += 1
        for seg in self.segments:
            if isinstance(seg, CapturedCopy):
                src = handles.get(id(seg.src), seg.src)
                dest = handles.get(id(seg.dest), seg.dest)
                dest.copyin(src.copyout())
            else:
                seg.graph.run()
        from . import stats

        stats.kernels += sum(len(s.launches) for s in self.segments if isinstance(s, _Segment))
        outputs = iter([handles[id(b)] for b in self.output_buffers])
        return _rebuild(self.output_structure, outputs)


def _buffer_of(t: Tensor) -> Buffer:
    node = as_contiguous_buffer(t.node)
    if node is None:  # inputs and outputs are realized before this: only a view of a shared buffer stays a view
        raise TypeError(
            f"jit: a {t.dtype.name}{list(t.shape)} tensor that is a view of a shared buffer (a parameter an optimizer "
            "keeps in its flat buffer) cannot be an input or output of a jitted function: use it inside the function "
            "(a step reads the parameters it uses), or pass and return .contiguous() copies"
        )
    return node.arg


def _structure_of(out: Any, buffers: list[Buffer]) -> Any:
    if isinstance(out, Tensor):
        buffers.append(_buffer_of(out))
        return ("T", out.shape)
    if isinstance(out, tuple | list):
        return (type(out), [_structure_of(o, buffers) for o in out])
    if out is None:
        return None
    raise TypeError(f"jit: a jitted function may return tensors, tuples and lists of them, or None, not {type(out)}")


def _rebuild(structure: Any, outputs: Any) -> Any:
    if structure is None:
        return None
    if structure[0] == "T":
        buf = next(outputs)
        return Tensor._from_node(buffer_view(Node(Op.BUFFER, buf.dtype, (), buf), structure[1]))
    kind, items = structure
    return kind(_rebuild(s, outputs) for s in items)


class JitFunction:
    """A function whose kernels are captured on its second call (its first with ``warmup=False``) and replayed
    from then on."""

    def __init__(self, fn: Callable[..., Any], warmup: bool = True):
        self.fn = fn
        self.warmup = warmup
        self.captured: CapturedStep | None = None
        self._seen: tuple | None = None
        functools.update_wrapper(self, fn)

    def reset(self) -> None:
        """Forget the recording: the next two calls run the function again."""
        self.captured = None
        self._seen = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        inputs, bound, key = _flatten_args(args, kwargs)
        for t in inputs:
            if as_contiguous_buffer(t.node) is None:
                t._base = None  # an input is read from a buffer of its own: a view of another tensor is copied
                t.realize()
        Tensor.realize_all([t.contiguous() if as_contiguous_buffer(t.node) is None else t for t in inputs])
        signature = (key, tuple((t.shape, t.dtype, t.device) for t in inputs))
        if self.captured is not None and self.captured.signature == signature:
            return self.captured.replay(inputs, bound)
        if self._seen != signature and self.warmup:  # first call with these inputs: run plainly
            self._seen = signature
            self.captured = None
            return self._run_and_realize(args, kwargs)
        self._seen = signature
        return self._capture(args, kwargs, inputs, signature)

    def _run_and_realize(self, args: tuple, kwargs: dict) -> Any:
        out = self.fn(*args, **kwargs)
        tensors: list[Tensor] = []
        _collect(out, tensors)
        for t in tensors:
            t._base = None  # outputs are fresh tensors of their own: a view of another tensor is copied
        Tensor.realize_all(tensors)
        return out

    def _capture(self, args: tuple, kwargs: dict, inputs: list[Tensor], signature: tuple) -> Any:
        input_buffers = [_buffer_of(t) for t in inputs]
        # lazy tensors from before the step are computed now, outside the recording: a realize inside it that
        # overwrites what they read would compute them first, and every replay would compute them again
        if pending := live_lazy():
            Tensor.realize_all(pending)
        rng_start = _RngState.counter
        start_capture()
        try:
            out = self._run_and_realize(args, kwargs)
        finally:
            ops = stop_capture()
        outputs: list[Buffer] = []
        structure = _structure_of(out, outputs)
        fresh = _fresh_buffers(ops, input_buffers)
        output_buffers = [b for b in outputs if id(b) in fresh]
        if len(output_buffers) != len(outputs):
            raise RuntimeError(
                "jit: the step returns a tensor it did not compute (an input or a state tensor); return a copy "
                "(.contiguous()) or read it outside the jitted function"
            )
        self.captured = CapturedStep(
            signature, ops, input_buffers, output_buffers, structure, _RngState.counter - rng_start, rng_start
        )
        if config.debug_level() >= 1:
            launches = sum(len(s.launches) for s in self.captured.segments if isinstance(s, _Segment))
            print(
                f"jit: captured {self.fn.__qualname__}: {launches} kernels in {len(self.captured.segments)} "
                f"device graphs; {self.captured.memory()}",
                file=sys.stderr,
            )
        return out

    def memory(self) -> MemoryPlan:
        """The memory a replay of the recording uses, by role (after the second call)."""
        if self.captured is None:
            raise RuntimeError("jit: nothing is recorded yet; the recording is made on the second call")
        return self.captured.memory()


def _collect(out: Any, into: list[Tensor]) -> None:
    if isinstance(out, Tensor):
        into.append(out)
    elif isinstance(out, tuple | list):
        for o in out:
            _collect(o, into)


def _fresh_buffers(ops: list[CapturedLaunch | CapturedCopy], inputs: list[Buffer]) -> set[int]:
    """Buffers the step creates: first written by a plain kernel (not an assign) or a copy."""
    seen: set[int] = {id(b) for b in inputs}
    fresh: set[int] = set()
    for op in ops:
        if isinstance(op, CapturedCopy):
            reads, writes, creates = [op.src], op.dest, True
        else:
            reads, writes, creates = op.buffers[1:], op.buffers[0], not op.overwrites
        for b in reads:
            seen.add(id(b))
        if id(writes) not in seen:
            seen.add(id(writes))
            if creates:
                fresh.add(id(writes))
    return fresh


def jit(fn: Callable[..., Any] | None = None, *, warmup: bool = True) -> Any:
    """Decorator: capture the function's kernels on its second call and replay them from the third.

    ``warmup=False`` records on the first call and replays from the second. It saves one run of the Python (a
    model's graph built and scheduled once, not twice), but everything the step reads and does not create must
    exist in a buffer before that call: a tensor the first call would realize (lazy state, a weight still to be
    loaded) would be computed by every replay instead. ``@jit(warmup=False)`` or ``jit(fn, warmup=False)``.
    """
    if fn is None:
        return lambda f: JitFunction(f, warmup)
    return JitFunction(fn, warmup)
