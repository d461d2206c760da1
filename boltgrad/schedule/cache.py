"""Schedules reused by the structure of their graph.

An eager training step builds the same graph every step over new buffers (the batch, the gradients) and new
Variable values (the random counter). Scheduling it walks the graph a dozen times: which nodes get buffers, each
kernel's body, their order. The *structure* of a graph is its toposort with every buffer replaced by a slot
(numbered in the order the walk meets them, with device, size and dtype) and every Variable's bound value left
out; graphs of equal structure schedule alike, since the scheduler only ever compares buffers by identity.

So the first schedule of a structure is kept as a template: each item's AST, which buffers it reads and writes
(an input slot or the k-th new buffer) and which Variables it binds. A later graph of the same structure gets its
schedule by filling in its own buffers and values: one walk instead of a dozen. ``BOLT_SCHEDULE_CACHE=0`` turns
this off (every graph is scheduled from scratch).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

from .. import config, stats
from ..device.buffer import Buffer
from ..device.registry import Device_
from ..ir.dtypes import DType
from ..ir.node import Node, _arg_key, toposort
from ..ir.ops import Op
from .items import CopyItem, KernelItem, Schedule
from .realized import bump_version, record_assigns

MAX_TEMPLATES = 512  # structures remembered, least recently used dropped first


@dataclass
class Structure:
    key: tuple
    nodes: list[Node]  # the graph's toposort, the order the key lists them in
    inputs: list[Buffer]  # the buffers it reads, by slot
    binds: dict[Node, int]  # VAR -> the value bound to it


class Step(NamedTuple):
    """One schedule item. A buffer reference ``r`` is input slot ``r`` when ``r >= 0``, else new buffer ``~r``."""

    node: int  # the position in the toposort of the node the item computes
    ast: Node | None  # None for a copy
    buffers: tuple[int, ...]  # a kernel's output and inputs; a copy's destination and source
    variables: tuple[Node, ...]  # the VARs a kernel binds
    device: str
    overwrites: bool


def structure(targets: list[Node], nodes: list[Node] | None = None) -> Structure | None:
    """The structure of the graph of ``targets`` (``nodes``: its toposort, where the caller has it), or None when
    it is not to be cached (caching is off, or one Variable is bound to two values)."""
    if not config.schedule_cache():
        return None
    if nodes is None:
        nodes = toposort(targets)
    index: dict[Node, int] = {}
    slots: dict[Buffer, int] = {}
    inputs: list[Buffer] = []
    binds: dict[Node, int] = {}
    parts = []
    position = index.__getitem__
    for i, n in enumerate(nodes):
        index[n] = i
        op, arg = n.op, n.arg
        if op is Op.BUFFER:
            slot = slots.get(arg)
            if slot is None:
                slot = slots[arg] = len(inputs)
                inputs.append(arg)
            arg = (slot, arg.device, arg.size, arg.dtype)
        elif op is Op.BIND:
            if binds.setdefault(n.src[0], arg) != arg:
                return None
            arg = None
        elif not (arg is None or type(arg) is tuple or type(arg) is int):  # the usual args need no _arg_key
            arg = _arg_key(arg)
        # the op's number and the dtype's name: unique, with C-level hashes (an Enum's and a dataclass's are Python)
        parts.append((op._value_, n.dtype.name, arg, tuple(map(position, n.src))))
    key = (Device_.DEFAULT, tuple(index[t] for t in targets), tuple(parts))
    return Structure(key, nodes, inputs, binds)


_templates: OrderedDict[tuple, Template] = OrderedDict()


def lookup(shape: Structure) -> Template | None:
    template = _templates.get(shape.key)
    if template is not None:
        _templates.move_to_end(shape.key)
    return template


def store(
    shape: Structure, targets: list[Node], sched: Schedule, order: list[Node], buffers: dict[Node, Buffer]
) -> None:
    """Keep ``sched``, the schedule of a graph of structure ``shape``, as the template for that structure;
    ``order`` has the node each item computes and ``buffers`` the buffer each one writes."""
    template = Template.of(shape, targets, sched, order, buffers)
    if template is None:
        return
    _templates[shape.key] = template
    if len(_templates) > MAX_TEMPLATES:
        _templates.popitem(last=False)


def clear() -> None:
    _templates.clear()


@dataclass
class Template:
    steps: list[Step]
    new: list[tuple[str, int, DType]]  # device, size and dtype of each new buffer
    outputs: list[int]  # the buffer holding each target's value
    temporaries: list[int]  # new buffers only the schedule itself reads

    @staticmethod
    def of(
        shape: Structure, targets: list[Node], sched: Schedule, order: list[Node], buffers: dict[Node, Buffer]
    ) -> Template | None:
        refs = {id(b): slot for slot, b in enumerate(shape.inputs)}
        new: list[tuple[str, int, DType]] = []
        for n in order:
            b = buffers[n]
            if id(b) not in refs:
                refs[id(b)] = ~len(new)
                new.append((b.device, b.size, b.dtype))
        index = {n: i for i, n in enumerate(shape.nodes)}
        steps = []
        try:
            for item, n in zip(sched.items, order, strict=True):
                if isinstance(item, CopyItem):
                    steps.append(Step(index[n], None, (refs[id(item.dest)], refs[id(item.src)]), (), "", False))
                    continue
                if any(shape.binds.get(v) != value for v, value in item.var_values.items()):
                    return None
                bufs = tuple(refs[id(b)] for b in item.buffers)
                steps.append(Step(index[n], item.ast, bufs, tuple(item.var_values), item.device, item.overwrites))
            outputs = [refs[id(sched.outputs[t])] for t in targets]
        except KeyError:  # a buffer the graph does not name, a node outside it: not a schedule to repeat
            return None
        temporaries = [~refs[id(b)] for b in sched.temporaries]
        return Template(steps, new, outputs, temporaries)

    def instantiate(self, shape: Structure, targets: list[Node], memo: dict[Node, Node]) -> Schedule:
        """The schedule of a graph of this template's structure: ``shape``, whose nodes ``targets`` are; ``memo``
        maps the targets' original subgraphs to the resolved ones (as for a schedule built from scratch)."""
        inputs = shape.inputs
        new = [Buffer(device, size, dtype) for device, size, dtype in self.new]

        def buffer(r: int) -> Buffer:
            return inputs[r] if r >= 0 else new[~r]

        sched = Schedule()
        order: list[Node] = []
        written: dict[Node, Buffer] = {}
        for step in self.steps:
            node = shape.nodes[step.node]
            order.append(node)
            bufs = [buffer(r) for r in step.buffers]
            written[node] = bufs[0]
            if step.ast is None:
                sched.items.append(CopyItem(bufs[0], bufs[1]))
                continue
            values = {v: shape.binds[v] for v in step.variables}
            sched.items.append(KernelItem(step.ast, bufs, values, step.device, step.overwrites))
            if step.overwrites:
                sched.on_commit.append(functools.partial(bump_version, bufs[0]))
        sched.on_commit.append(functools.partial(record_assigns, order, written, memo))
        sched.temporaries = [new[k] for k in self.temporaries]
        sched.outputs = {t: buffer(r) for t, r in zip(targets, self.outputs)}
        stats.schedules_reused += 1
        return sched
