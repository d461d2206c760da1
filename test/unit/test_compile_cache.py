"""The on-disk cache of compiled artifacts: hits, corruption, concurrent builders, an unwritable folder."""

from __future__ import annotations

import ctypes
import errno
import multiprocessing
import os
import uuid
import warnings

import pytest

from boltgrad import stats
from boltgrad.device import compile_cache
from boltgrad.errors import DeviceUnavailable


def _have_c_compiler() -> bool:
    from boltgrad.device.cpu import find_c_compiler

    try:
        find_c_compiler()
    except DeviceUnavailable:
        return False
    return True


needs_compiler = pytest.mark.skipif(not _have_c_compiler(), reason="no C compiler (cc, gcc, clang or BOLT_CC)")


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    """Every test starts from an empty cache folder and a process that has verified nothing yet."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("BOLT_CACHE_DIR", str(folder))
    compile_cache.reset_process_state()
    yield folder
    compile_cache.reset_process_state()


class CountingBuilder:
    def __init__(self, data: bytes = b"artifact bytes"):
        self.data = data
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        return self.data


def _unique_source(body: str = "") -> str:
    # A source no earlier run has cached, whatever cache folder the machine uses.
    return f"/* {uuid.uuid4().hex} */\n#include <stdint.h>\nint64_t answer(void) {{ return 42; }}\n{body}"


def test_key_depends_on_every_part():
    base = compile_cache.artifact_key("src", "gcc 12", ["-O2"], cpu="zen4")
    assert base == compile_cache.artifact_key("src", "gcc 12", ["-O2"], cpu="zen4")
    variants = [
        compile_cache.artifact_key("src2", "gcc 12", ["-O2"], cpu="zen4"),
        compile_cache.artifact_key("src", "gcc 13", ["-O2"], cpu="zen4"),
        compile_cache.artifact_key("src", "gcc 12", ["-O3"], cpu="zen4"),
        compile_cache.artifact_key("src", "gcc 12", ["-O2"], cpu="skylake"),
        # length prefixes keep a boundary shift from hashing the same bytes
        compile_cache.artifact_key("sr", "cgcc 12", ["-O2"], cpu="zen4"),
    ]
    assert len({base, *variants}) == len(variants) + 1


def test_hit_returns_same_path_without_building(fresh_cache):
    builder = CountingBuilder()
    first = compile_cache.get_or_build("ab" * 32, builder, ".so")
    compile_cache.reset_process_state()  # a new process: the hit must come from disk, verified again
    second = compile_cache.get_or_build("ab" * 32, builder, ".so")
    assert first == second == str(fresh_cache / "lib" / ("ab" * 32 + ".so"))
    assert builder.calls == 1
    with open(first, "rb") as f:
        assert f.read() == builder.data


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "no_checksum", "bad_checksum", "leftover_temp"])
def test_damaged_entry_is_rebuilt(damage):
    data = bytes(range(256)) * 8
    builder = CountingBuilder(data)
    path = compile_cache.get_or_build("cd" * 32, builder, ".so")
    if damage == "truncate":
        with open(path, "r+b") as f:
            f.truncate(len(data) // 2)
    elif damage == "flip_byte":
        with open(path, "r+b") as f:
            f.seek(100)
            f.write(b"\xff")
    elif damage == "no_checksum":
        os.unlink(path + ".sum")
    elif damage == "bad_checksum":
        with open(path + ".sum", "w") as f:
            f.write("not a checksum")
    else:  # a crash after the temp file was written but before the rename: the entry itself is missing
        os.rename(path, os.path.join(os.path.dirname(path), ".stale.tmp"))
    compile_cache.reset_process_state()
    assert compile_cache.get_or_build("cd" * 32, builder, ".so") == path
    assert builder.calls == 2
    with open(path, "rb") as f:
        assert f.read() == data


def test_damage_seen_in_the_same_process_too():
    builder = CountingBuilder()
    path = compile_cache.get_or_build("ef" * 32, builder)
    with open(path, "ab") as f:
        f.write(b"junk")  # changes size and mtime, so the remembered verification no longer applies
    compile_cache.get_or_build("ef" * 32, builder)
    assert builder.calls == 2


def test_build_errors_pass_through_and_store_nothing(fresh_cache):
    def failing_build() -> bytes:
        raise RuntimeError("compiler said no")

    with pytest.raises(RuntimeError, match="compiler said no"):
        compile_cache.get_or_build("aa" * 32, failing_build, ".so")
    assert not (fresh_cache / "lib" / ("aa" * 32 + ".so")).exists()


def test_unwritable_folder_falls_back_with_one_warning(tmp_path, monkeypatch):
    # A path below a regular file: makedirs fails even for root, for whom chmod would change nothing.
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    unwritable = blocker / "cache"
    monkeypatch.setenv("BOLT_CACHE_DIR", str(unwritable))
    builder = CountingBuilder()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = compile_cache.get_or_build("12" * 32, builder, ".so")
        second = compile_cache.get_or_build("34" * 32, builder, ".so")
        again = compile_cache.get_or_build("12" * 32, builder, ".so")
    ours = [w for w in caught if "boltgrad" in str(w.message)]
    assert len(ours) == 1
    message = str(ours[0].message)
    assert str(unwritable) in message and "Not a directory" in message
    assert not first.startswith(str(tmp_path)) and os.path.isfile(first) and os.path.isfile(second)
    assert os.path.dirname(os.path.dirname(first)) in message  # the warning names the fallback folder
    assert again == first and builder.calls == 2


def test_full_disk_falls_back_without_building_twice(fresh_cache, monkeypatch):
    real_write = compile_cache._atomic_write

    def write_or_fail(path: str, data: bytes) -> None:
        if path.startswith(str(fresh_cache)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        real_write(path, data)

    monkeypatch.setattr(compile_cache, "_atomic_write", write_or_fail)
    builder = CountingBuilder()
    with pytest.warns(RuntimeWarning, match="No space left on device"):
        path = compile_cache.get_or_build("9a" * 32, builder, ".so")
    assert builder.calls == 1  # the bytes built for the full folder are stored in the fallback, not rebuilt
    assert not path.startswith(str(fresh_cache))
    with open(path, "rb") as f:
        assert f.read() == builder.data


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes through chmod 0555")
def test_read_only_folder_serves_hits_and_falls_back_for_misses(fresh_cache):
    builder = CountingBuilder()
    cached = compile_cache.get_or_build("56" * 32, builder)
    os.chmod(fresh_cache / "lib", 0o555)
    try:
        compile_cache.reset_process_state()
        assert compile_cache.get_or_build("56" * 32, builder) == cached
        with pytest.warns(RuntimeWarning, match="Permission denied"):
            new = compile_cache.get_or_build("78" * 32, builder)
        assert not new.startswith(str(fresh_cache))
    finally:
        os.chmod(fresh_cache / "lib", 0o755)
    assert builder.calls == 2


@needs_compiler
def test_compiler_hit_does_not_compile():
    from boltgrad.device.cpu import CCompiler

    source = _unique_source()
    before = stats.compiles
    first = CCompiler().compile(source)
    assert stats.compiles == before + 1
    compile_cache.reset_process_state()
    assert CCompiler().compile(source) == first
    assert stats.compiles == before + 1
    assert ctypes.CDLL(first).answer() == 42


@needs_compiler
def test_compiler_rebuilds_a_truncated_library():
    from boltgrad.device.cpu import CCompiler

    source = _unique_source()
    path = CCompiler().compile(source)
    with open(path, "r+b") as f:
        f.truncate(64)  # what a crash in a cache without checksums could leave behind: dlopen would fail
    compile_cache.reset_process_state()
    before = stats.compiles
    assert CCompiler().compile(source) == path
    assert stats.compiles == before + 1
    assert ctypes.CDLL(path).answer() == 42


def _compile_in_child(source: str, start, results) -> None:
    """Runs in a spawned process: wait for the sibling, compile the same source, load it, call it."""
    try:
        from boltgrad import stats as child_stats
        from boltgrad.device.cpu import CCompiler

        compiler = CCompiler()  # finding the compiler first, so both children reach compile() together
        start.wait(timeout=60)
        path = compiler.compile(source)
        results.put(("ok", path, ctypes.CDLL(path).answer(), child_stats.compiles))
    except BaseException as e:  # report to the parent instead of dying silently
        results.put(("error", repr(e), None, None))


@needs_compiler
def test_processes_compiling_the_same_source_at_once():
    source = _unique_source("int64_t padding(void) { return 7; }")
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(2), context.Queue()
    children = [context.Process(target=_compile_in_child, args=(source, start, results)) for _ in range(2)]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=60)
    assert all(outcome[0] == "ok" for outcome in outcomes), outcomes
    paths = {outcome[1] for outcome in outcomes}
    assert len(paths) == 1 and all(outcome[2] == 42 for outcome in outcomes)
    # The build lock makes the second process wait and then find the first one's library.
    assert sum(outcome[3] for outcome in outcomes) == 1
    assert ctypes.CDLL(paths.pop()).padding() == 7
