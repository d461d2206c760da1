"""The on-disk kernel index: a new process finds compiled kernels by their AST without lowering or rendering them."""

import subprocess
import sys

import numpy as np
import pytest

import boltgrad
from boltgrad import Tensor
from boltgrad.codegen.blocking import KernelOpts
from boltgrad.device import compile_cache
from boltgrad.device.registry import get_device
from boltgrad.engine import kernel_index, realize
from boltgrad.ir import dtypes
from boltgrad.ir.node import Node, const, var
from boltgrad.ir.ops import Op


@pytest.fixture
def new_process(tmp_path, monkeypatch):
    """A fresh cache folder, and a way to forget the kernels compiled in this process (as a new one would)."""
    monkeypatch.setenv("BOLT_CACHE_DIR", str(tmp_path / "cache"))
    compile_cache.reset_process_state()
    saved = dict(realize._compiled)

    def forget() -> None:
        realize._compiled.clear()

    forget()
    yield forget
    realize._compiled.clear()
    realize._compiled.update(saved)
    compile_cache.reset_process_state()


def _lowering_forbidden(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a kernel was lowered though the index holds it")

    monkeypatch.setattr(realize, "lower_kernel", fail)


def test_a_new_process_skips_lowering_and_gets_the_same_values(new_process, monkeypatch):
    x = Tensor(np.arange(12, dtype=np.float32).reshape(3, 4)).realize()
    pos = boltgrad.Variable("kernel_index_pos", 0, 3)
    expected = ((x * 2.5).sum(1) + pos.bind(2)).numpy()
    new_process()
    _lowering_forbidden(monkeypatch)
    boltgrad.stats.reset()
    again = ((x * 2.5).sum(1) + pos.bind(3)).numpy()  # a Variable's value is still a launch argument
    np.testing.assert_array_equal(again, expected + 1)
    assert boltgrad.stats.compiles == 0


def test_other_options_or_code_miss_the_index(new_process, monkeypatch):
    device = get_device("CPU")
    x = Tensor(np.ones(8, dtype=np.float32)).realize()
    (x * 3.0).realize()
    ast = next(iter(realize._compiled))[2]
    key = realize._index_key(ast, device, None)
    assert kernel_index.lookup(key) is not None
    assert realize._index_key(ast, device, KernelOpts(rows=2)) != key
    monkeypatch.setattr(kernel_index, "code_fingerprint", lambda: "edited")
    assert realize._index_key(ast, device, None) != key


def test_a_missing_library_falls_back_to_lowering(new_process, monkeypatch):
    x = Tensor(np.arange(6, dtype=np.float32)).realize()
    assert (x * 7.0).tolist() == [7.0 * i for i in range(6)]
    new_process()
    monkeypatch.setattr(get_device("CPU").compiler, "cached_library", lambda key: None)
    lowered = []
    original = realize.lower_kernel
    monkeypatch.setattr(realize, "lower_kernel", lambda *a, **k: lowered.append(1) or original(*a, **k))
    assert (x * 7.0).tolist() == [7.0 * i for i in range(6)]
    assert lowered


def test_structural_hash_is_the_same_in_another_process():
    code = (
        "from boltgrad.ir import dtypes\n"
        "from boltgrad.ir.node import Node, const, var\n"
        "from boltgrad.ir.ops import Op\n"
        "from boltgrad.engine.kernel_index import structural_hash\n"
        "v = var('v_n', 0, 9)\n"
        "e = Node(Op.ADD, dtypes.int64, (v, const(3, dtypes.int64)))\n"
        "print(structural_hash(Node(Op.MUL, dtypes.float32, (e.cast(dtypes.float32), const(-0.0, dtypes.float32)))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    v = var("v_n", 0, 9)
    e = Node(Op.ADD, dtypes.int64, (v, const(3, dtypes.int64)))
    minus = Node(Op.MUL, dtypes.float32, (e.cast(dtypes.float32), const(-0.0, dtypes.float32)))
    here = kernel_index.structural_hash(minus)
    assert out == here
    # constants that compare equal in Python but print differently hash apart
    plus = Node(Op.MUL, dtypes.float32, (e.cast(dtypes.float32), const(0.0, dtypes.float32)))
    assert kernel_index.structural_hash(plus) != here


def test_an_arg_without_a_stable_spelling_is_not_indexed():
    token = Node(Op.CONST, dtypes.float32, (), object())
    assert kernel_index.structural_hash(token) is None
