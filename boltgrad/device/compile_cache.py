"""An on-disk cache of compiled artifacts (shared libraries, binaries), keyed by a hash of everything that shaped them.

The key is the sha256 of the source, the toolchain (compiler path and version), the flags and the CPU's
identity, so a compiler upgrade, a new flag or a cache folder copied to another machine never serves a stale
binary. Each entry is two files in ``<cache_dir>/<namespace>/``::

    <key><suffix>        the artifact itself, loadable in place (dlopen needs a plain file)
    <key><suffix>.sum    "<sha256 of the artifact> <length>", written after the artifact

Both are written atomically (a temp file in the same folder, fsync, ``os.replace``), so a reader sees either
nothing or a whole file. An entry whose checksum file is missing or does not match (a crash between the two
writes, a truncated copy, a damaged disk) is rebuilt, never trusted. Processes building the same key take a
file lock, so the second one finds the first one's result instead of compiling again; without locks (a
read-only folder, a platform without ``fcntl``) the atomic writes alone keep concurrent builds correct.

If the cache folder cannot be written (read-only, full, not a folder), entries go to a temporary folder for the
rest of the process, with one warning naming the folder and the reason.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence

from boltgrad import config

from ..helpers import sha256

try:
    import fcntl
except ImportError:  # not POSIX: fall back to atomic writes alone
    fcntl = None  # type: ignore[assignment]

FORMAT_VERSION = "boltgrad-cache-v1"  # bump when the entry layout or key recipe changes
_LOCK_STRIPES = 2  # hex digits of the key that name its lock file: 256 lock files at most, not one per entry


def artifact_key(source: str, toolchain: str, flags: Sequence[str], cpu: str | None = None) -> str:
    """The hex sha256 naming the artifact built from ``source`` by ``toolchain`` with ``flags`` on this CPU.

    ``toolchain`` should name the compiler and its version (``"/usr/bin/gcc\\ngcc (Debian 12.2.0) ..."``).
    Every part is length-prefixed, so no two different inputs hash the same bytes.
    """
    digest = sha256()
    for part in (FORMAT_VERSION, source, toolchain, "\0".join(flags), cpu_identity() if cpu is None else cpu):
        data = part.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


@functools.cache
def cpu_identity() -> str:
    """What ``-march=native`` depends on: the CPU model and its feature flags, as far as the OS tells them."""
    parts = [platform.system(), platform.machine(), platform.processor()]
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            wanted = ("model name", "flags", "features", "cpu implementer", "cpu part", "isa", "uarch")
            seen: set[str] = set()
            for line in f:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name in wanted and name not in seen:  # the first core speaks for all of them
                    seen.add(name)
                    parts.append(f"{name}={value.strip()}")
    except OSError:
        pass
    if platform.system() == "Darwin":
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            brand = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=10
            )
            parts.append(brand.stdout.strip())
    return "\n".join(parts)


def get_or_build(key: str, build: Callable[[], bytes], suffix: str = "", namespace: str = "lib") -> str:
    """The path of the cached artifact for ``key``, calling ``build()`` for its bytes only on a miss.

    ``build`` runs at most once per call; its exceptions (a compile error) pass through unchanged.
    """
    primary = os.path.join(config.cache_dir(), namespace)
    path = _find_entry(primary, key, suffix)
    if path is not None:
        return path
    if _state.fallback_root is not None:
        path = _find_entry(_fallback_folder(namespace), key, suffix)
        if path is not None:
            return path
    if primary not in _state.unwritable:
        try:
            return _build_into(primary, key, suffix, build)
        except _CacheWriteError as e:
            _state.unwritable.add(primary)
            _warn_fallback(primary, e.reason)
            if e.data is not None:  # do not compile twice: store what was already built
                return _store(_fallback_folder(namespace), key, suffix, e.data)
    return _build_into(_fallback_folder(namespace), key, suffix, build, raise_os_errors=True)


def find_entry(key: str, suffix: str = "", namespace: str = "lib") -> str | None:
    """The path of the verified entry for ``key`` (in the cache folder or this process's fallback), or None."""
    path = _find_entry(os.path.join(config.cache_dir(), namespace), key, suffix)
    if path is None and _state.fallback_root is not None:
        path = _find_entry(_fallback_folder(namespace), key, suffix)
    return path


def entry_path(key: str, suffix: str = "", namespace: str = "lib") -> str:
    """Where the entry for ``key`` lives in the configured cache folder (whether or not it exists)."""
    return os.path.join(config.cache_dir(), namespace, key + suffix)


# ---------------------------------------------------------------- reading entries


def _find_entry(folder: str, key: str, suffix: str) -> str | None:
    """The artifact's path if the entry exists and its bytes match its checksum file, else None."""
    path = os.path.join(folder, key + suffix)
    try:
        stat = os.stat(path)
    except OSError:
        return None
    # Hashing a library costs far more than a stat, so an entry verified once is trusted until its file changes.
    fingerprint = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if _state.verified.get(path) == fingerprint:
        return path
    if not _verify(path):
        return None
    _state.verified[path] = fingerprint
    return path


def _verify(path: str) -> bool:
    try:
        with open(path + ".sum", encoding="ascii") as f:
            expected_hash, expected_size = f.read().split()
        with open(path, "rb") as f:
            data = f.read()
    except (OSError, ValueError):
        return False
    return str(len(data)) == expected_size and sha256(data).hexdigest() == expected_hash


# ---------------------------------------------------------------- writing entries


class _CacheWriteError(Exception):
    """The cache folder could not be written; ``data`` holds the artifact if it was already built."""

    def __init__(self, reason: OSError, data: bytes | None):
        super().__init__(str(reason))
        self.reason = reason
        self.data = data


def _build_into(folder: str, key: str, suffix: str, build: Callable[[], bytes], raise_os_errors: bool = False) -> str:
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        if raise_os_errors:
            raise
        raise _CacheWriteError(e, None) from e
    with _key_lock(folder, key):
        path = _find_entry(folder, key, suffix)  # another process may have built it while we waited
        if path is not None:
            return path
        data = build()
        try:
            return _store(folder, key, suffix, data)
        except OSError as e:
            if raise_os_errors:
                raise
            raise _CacheWriteError(e, data) from e


def _store(folder: str, key: str, suffix: str, data: bytes) -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, key + suffix)
    _atomic_write(path, data)
    # The checksum goes last: a reader that finds it also finds the whole artifact it describes.
    _atomic_write(path + ".sum", f"{sha256(data).hexdigest()} {len(data)}\n".encode("ascii"))
    _fsync_folder(folder)
    return path


def _atomic_write(path: str, data: bytes) -> None:
    folder, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a shared cache folder should serve every user
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _fsync_folder(folder: str) -> None:
    # Makes the renames durable across a power cut; some systems cannot open a folder, which only costs that.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _key_lock(folder: str, key: str) -> Iterator[None]:
    """Hold an exclusive lock shared by every key with the same first hex digits, where locks are possible."""
    if fcntl is None:
        yield
        return
    lock_folder = os.path.join(folder, ".locks")
    try:
        os.makedirs(lock_folder, exist_ok=True)
        fd = os.open(os.path.join(lock_folder, key[:_LOCK_STRIPES] + ".lock"), os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        yield  # a folder we may read but not lock in: atomic writes still keep entries whole
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# ---------------------------------------------------------------- fallback folder


class _CacheState:
    """Per-process memory of the cache: verified entries, folders found unwritable, the fallback folder."""

    def __init__(self) -> None:
        self.verified: dict[str, tuple[int, int, int]] = {}
        self.unwritable: set[str] = set()
        self.fallback_root: str | None = None
        self.warned = False


_state = _CacheState()


def _fallback_folder(namespace: str) -> str:
    if _state.fallback_root is None:
        _state.fallback_root = tempfile.mkdtemp(prefix="boltgrad-cache-")
        atexit.register(shutil.rmtree, _state.fallback_root, True)
    return os.path.join(_state.fallback_root, namespace)


def _warn_fallback(folder: str, reason: OSError) -> None:
    _fallback_folder("")
    fallback = _state.fallback_root
    if _state.warned:
        return
    _state.warned = True
    warnings.warn(
        f"boltgrad: cannot write the kernel cache folder {folder} ({reason.strerror or reason}); "
        f"compiled kernels go to the temporary folder {fallback} for this process and are lost at exit. "
        "Set BOLT_CACHE_DIR to a writable folder to keep them.",
        RuntimeWarning,
        stacklevel=3,
    )


def reset_process_state() -> None:
    """Forget verified entries, unwritable folders and the fallback warning (for tests)."""
    global _state
    _state = _CacheState()
