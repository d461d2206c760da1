"""Process-wide counters: what ran, what compiled, what moved.

>>> import boltgrad
>>> boltgrad.stats.reset()
>>> (boltgrad.Tensor([1.0, 2.0]) * 2).sum().item()
6.0
>>> boltgrad.stats.kernels
1
"""

from __future__ import annotations

kernels = 0  # kernels launched (copies between devices never count)
compiles = 0  # compiler invocations (disk-cache misses)
copy_bytes = 0  # bytes moved between host and a device or between devices
realizes = 0  # calls into the engine that ran a schedule
round_trips = 0  # requests a REMOTE device sent and waited for
link_bytes_out = 0  # bytes sent to device servers, headers included
link_bytes_in = 0  # bytes received from them
graph_launches = 0  # device graphs submitted as one launch (a CUDA graph of a jitted step's replay)
schedules_reused = 0  # realizes that reused the schedule of an equally shaped graph (schedule/cache.py)


def reset() -> None:
    global kernels, compiles, copy_bytes, realizes, round_trips, link_bytes_out, link_bytes_in, graph_launches
    global schedules_reused
    kernels = compiles = copy_bytes = realizes = round_trips = link_bytes_out = link_bytes_in = graph_launches = 0
    schedules_reused = 0


def snapshot() -> dict[str, int]:
    return {"kernels": kernels, "compiles": compiles, "copy_bytes": copy_bytes, "realizes": realizes,
            "round_trips": round_trips, "link_bytes_out": link_bytes_out, "link_bytes_in": link_bytes_in,
            "graph_launches": graph_launches, "schedules_reused": schedules_reused}  # fmt: skip
