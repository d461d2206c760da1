"""CUDA graphs for JIT replay, against the stand-in driver (``fake_driver.c``): it runs no kernels but logs every
kernel run, launched directly or as a node of a launched graph, with its arguments. So these tests check which
arguments a replayed graph hands its kernels (the same as plain launches would, with new inputs, outputs and
Variable values), how often it launches, that the switch turns it off, that a driver that cannot build a graph
leaves the step on plain launches, and that the graph is freed with its step. Values are checked on a real GPU
(test_cuda_device.py)."""

from __future__ import annotations

import pytest
from fake_cuda import needs_cc, run_against_fake_driver

# A toy decode step: a KV-cache-like state written at a Variable position, an output read up to it, and a step
# counter whose kernel's arguments never change. `replay(...)` returns the kernel runs the fake logged for one
# call, with the call's input and output addresses replaced by "x" and "out".
PRELUDE = r"""
import contextlib, ctypes, gc, io, os
import numpy as np
import boltgrad
from boltgrad import Tensor
from boltgrad.device import cuda
from boltgrad.jit import _buffer_of

fake = ctypes.CDLL("libcuda.so.1")
counts = lambda: (fake.fake_launch_count(), fake.fake_graph_launch_count(), fake.fake_node_updates())

def runs_since(start):
    name, params = ctypes.create_string_buffer(128), (ctypes.c_uint64 * 32)()
    grid, block = ctypes.c_uint(), ctypes.c_uint()
    out = []
    for i in range(start, fake.fake_runs()):
        n = fake.fake_run(i, name, ctypes.byref(grid), ctypes.byref(block), params)
        assert n >= 0, i
        out.append((name.value.decode(), grid.value, block.value, tuple(params[:n])))
    return out

MAX_LEN, DIM = 8, 4
cache = Tensor.zeros(MAX_LEN, DIM, device="CUDA").contiguous().realize()
steps = Tensor.zeros(1, device="CUDA").contiguous().realize()
pos = boltgrad.Variable("pos", 0, MAX_LEN - 1)

def step(x, p):
    rows = Tensor.arange(MAX_LEN, device="CUDA").reshape(MAX_LEN, 1)
    cache.assign(boltgrad.where(rows == p, x.reshape(1, DIM), cache)).realize()
    steps.assign(steps + 1).realize()
    seen = (rows <= p).float()
    return (cache * seen).sum(0) / (p + 1).float()

jitted = boltgrad.jit(step)
xs = [Tensor(np.full(DIM, float(i), np.float32), device="CUDA").realize() for i in range(12)]
kept = []

def replay(x, p, keep=True):
    pos.bind(p)
    start = fake.fake_runs()
    out = jitted(x, pos)
    if keep:
        kept.append(out)  # a kept output's buffer is not reused: the next replay's output has a new address
    names = {_buffer_of(x).handle: "x", _buffer_of(out).handle: "out"}
    return [(k, g, b, tuple(names.get(v, v) for v in params)) for k, g, b, params in runs_since(start)]

jitted(xs[0], pos.bind(0))
jitted(xs[1], pos.bind(1))  # recorded
assert jitted.captured is not None
"""

GRAPH_REPLAYS = (
    PRELUDE
    + r"""
launches0, graphs0, updates0 = counts()
stats0 = boltgrad.stats.graph_launches
logs = []
for i in range(2, 6):
    logs.append(replay(xs[i], i))
    launches, graphs, updates = counts()
    assert (launches, graphs) == (launches0, graphs0 + i - 1), (launches, graphs, launches0, graphs0)
assert boltgrad.stats.graph_launches == stats0 + 4
n = len(logs[0])
assert n >= 3 and all(len(log) == n for log in logs), logs
assert fake.fake_live_graphs() == 2  # one graph and its instantiation: the step is one segment on one device

# the graph's kernels got each replay's position, input and output ...
for p, log in zip(range(2, 6), logs):
    assert any("x" in params and p in params for _, _, _, params in log), (p, log)
    assert any("out" in params and p in params for _, _, _, params in log), (p, log)
# ... and, after the first replay built the graph, only the nodes whose arguments changed were updated (those
# reading the input, the output or the position, 3 in the second replay): the step counter's kernel never is
changed = sum(any(v in ("x", "out", 3) for v in params) for _, _, _, params in logs[1])
assert 0 < changed < n and counts()[2] - updates0 == 3 * changed, (changed, n, counts()[2] - updates0)

# the same replays launch by launch (the switch read at each replay) hand the kernels the same arguments
os.environ["BOLT_CUDA_GRAPHS"] = "0"
for p, log in zip(range(2, 6), logs):
    assert replay(xs[p], p) == log, p
launches, graphs, _ = counts()
assert (launches, graphs) == (launches0 + 4 * n, graphs0 + 4)

# back on: the graph catches up with what the plain replays changed; an unchanged replay updates nothing
os.environ["BOLT_CUDA_GRAPHS"] = "1"
kept.clear()
log = replay(xs[7], 7, keep=False)
before = counts()[2]
assert replay(xs[7], 7, keep=False) == log  # the output's buffer came back from the allocator's cache
assert counts()[2] == before, "nothing changed, yet nodes were updated"
only_position = replay(xs[7], 6, keep=False)  # a replay that changes the position alone, then the input alone
only_input = replay(xs[8], 6, keep=False)
assert only_position != log and only_input == only_position  # "x": the graph's kernel read the new input
os.environ["BOLT_CUDA_GRAPHS"] = "0"
assert replay(xs[7], 7, keep=False) == log
assert replay(xs[7], 6, keep=False) == only_position
assert replay(xs[8], 6, keep=False) == only_input
print("graphs: ok")
"""
)


@pytest.fixture(scope="module")
def fake_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fake_cuda")


@needs_cc
def test_a_replay_is_one_graph_launch_with_the_arguments_plain_launches_get(fake_folder):
    assert "graphs: ok" in run_against_fake_driver(GRAPH_REPLAYS, fake_folder)


SWITCHED_OFF = (
    PRELUDE
    + r"""
launches0, graphs0, _ = counts()
log = replay(xs[2], 2)
assert counts()[:2] == (launches0 + len(log), graphs0) and fake.fake_live_graphs() == 0
assert boltgrad.stats.graph_launches == 0
print("switched off: ok")
"""
)


@needs_cc
def test_the_switch_turns_graphs_off(fake_folder):
    out = run_against_fake_driver(SWITCHED_OFF, fake_folder, env={"BOLT_CUDA_GRAPHS": "0"})
    assert "switched off: ok" in out


FAILING_INSTANTIATE = (
    PRELUDE
    + r"""
fake.fake_fail_instantiate(801)  # CUDA_ERROR_NOT_SUPPORTED
launches0, graphs0, _ = counts()
said = io.StringIO()
with contextlib.redirect_stderr(said):
    logs = [replay(xs[i], i) for i in range(2, 5)]
assert counts()[:2] == (launches0 + sum(map(len, logs)), graphs0)  # plain launches, every replay
assert fake.fake_live_graphs() == 0  # the graph that failed to instantiate was destroyed
lines = [line for line in said.getvalue().splitlines() if "without a CUDA graph" in line]
assert len(lines) == 1 and "CUDA_ERROR_NOT_SUPPORTED (801)" in lines[0], said.getvalue()
fake.fake_fail_instantiate(0)
assert replay(xs[5], 5) and counts()[1] == graphs0  # the step stays on plain launches
print("fallback: ok")
"""
)


@needs_cc
def test_a_graph_that_fails_to_instantiate_falls_back_to_plain_launches_and_says_why_once(fake_folder):
    assert "fallback: ok" in run_against_fake_driver(FAILING_INSTANTIATE, fake_folder, env={"DEBUG": "1"})


NO_GRAPH_API = (
    PRELUDE
    + r"""
launches0, _, _ = counts()
said = io.StringIO()
with contextlib.redirect_stderr(said):
    log = replay(xs[2], 2)
assert counts()[0] == launches0 + len(log)
assert "no CUDA graph API" in said.getvalue() and "cuGraph" in said.getvalue(), said.getvalue()
print("no graph api: ok")
"""
)


@needs_cc
def test_a_driver_without_the_graph_api_runs_kernels_and_replays_without_graphs(tmp_path):
    script = NO_GRAPH_API
    out = run_against_fake_driver(script, tmp_path, env={"DEBUG": "1"}, defines=["FAKE_NO_GRAPHS"])
    assert "no graph api: ok" in out


FREED_AND_ERRORS = (
    PRELUDE
    + r"""
replay(xs[2], 2)
assert fake.fake_live_graphs() == 2
jitted.reset()
gc.collect()
assert fake.fake_live_graphs() == 0, "the step is gone but its CUDA graph is not"

# an error that is not the driver's is raised, not taken for an old driver
def broken(self):
    raise ValueError("not a CUDA error")
cuda.CUDAGraph._instantiate = broken
jitted(xs[0], pos.bind(0))
jitted(xs[1], pos.bind(1))
try:
    replay(xs[2], 2)
    raise SystemExit("the ValueError was swallowed")
except ValueError as e:
    assert "not a CUDA error" in str(e)
print("freed: ok")
"""
)


@needs_cc
def test_the_graph_is_freed_with_its_step_and_other_errors_are_not_swallowed(fake_folder):
    assert "freed: ok" in run_against_fake_driver(FREED_AND_ERRORS, fake_folder)
