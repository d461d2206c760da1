"""What a schedule is made of: kernels to launch and copies between devices, in order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..device.buffer import Buffer
from ..ir.node import Node


@dataclass
class KernelItem:
    ast: Node  # STORE(PARAM(0, shape), value)
    buffers: list[Buffer]  # output first, then inputs in PARAM order
    var_values: dict[Node, int]  # VAR -> bound value
    device: str
    overwrites: bool = False  # an ASSIGN: the output buffer existed before and holds state


@dataclass
class CopyItem:
    dest: Buffer
    src: Buffer


@dataclass
class Schedule:
    items: list[KernelItem | CopyItem] = field(default_factory=list)
    outputs: dict[Node, Buffer] = field(default_factory=dict)  # target node -> buffer holding its value
    temporaries: list[Buffer] = field(default_factory=list)  # buffers only this schedule reads
    # what running the schedule changes in the realize cache (assigned buffers' versions, realized assigns):
    # the engine calls ``commit`` once every item ran, so a schedule that fails (a compile error, a lost
    # device) leaves the tensors as they were and can be realized again
    on_commit: list[Callable[[], None]] = field(default_factory=list)

    def commit(self) -> None:
        for fn in self.on_commit:
            fn()
        self.on_commit.clear()
