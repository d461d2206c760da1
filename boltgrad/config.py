"""Every environment variable boltgrad reads, with its default and one line of doc.

Nothing else in the package reads ``os.environ``; other modules import the values from here.
``docs/config.md`` lists the same variables for users.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class EnvVar:
    name: str
    default: str
    doc: str

    def get(self) -> str:
        return os.environ.get(self.name, self.default)


DEBUG_VAR = EnvVar("DEBUG", "0", "0 quiet; 1 a line per realize; 2 a line per kernel; 3 the schedule; 4 kernel source")
DEVICE_VAR = EnvVar("BOLT_DEVICE", "CPU", "the default device for new tensors (CPU, PYTHON, NULL, ...)")
CACHE_DIR_VAR = EnvVar("BOLT_CACHE_DIR", "", "folder for compiled kernels; default ~/.cache/boltgrad (XDG_CACHE_HOME)")
CC_VAR = EnvVar("BOLT_CC", "", "the C compiler for the CPU device; default: cc, gcc or clang found on PATH")
CFLAGS_VAR = EnvVar("BOLT_CFLAGS", "", "extra flags appended to the C compiler's command line")
THREADS_VAR = EnvVar("BOLT_THREADS", "0", "worker threads of the CPU runtime; 0 means one per core")
XDG_CACHE_VAR = EnvVar("XDG_CACHE_HOME", "", "the user's cache root, used when BOLT_CACHE_DIR is not set")
REMOTE_ADDRESS = "127.0.0.1:7077"  # where a device server listens, and a REMOTE device looks, unless told
REMOTE_TOKEN_VAR = EnvVar("BOLT_REMOTE_TOKEN", "", "the token a device server requires and REMOTE clients present")
REMOTE_TIMEOUT_VAR = EnvVar("BOLT_REMOTE_TIMEOUT", "3", "seconds without a word from a device server before DeviceLost")
REMOTE_TLS_VAR = EnvVar("BOLT_REMOTE_TLS", "", "REMOTE over TLS: 1 trusts the system's CAs, a path that PEM file")
REMOTE_LINK_VAR = EnvVar("BOLT_REMOTE_LINK", "", "model a slower link on the client, e.g. 'latency_us=100,gbit=24'")
SEARCH_VAR = EnvVar("BOLT_SEARCH", "0", "beam width of the kernel search timed on the device (0: the heuristic only)")
NVRTC_VAR = EnvVar("BOLT_NVRTC", "", "the NVRTC library of the CUDA device; default: found in wheels or CUDA_HOME")
CUDA_HOME_VAR = EnvVar("CUDA_HOME", "", "a CUDA toolkit's folder: one place the CUDA device looks for NVRTC")
SCHEDULE_CACHE_VAR = EnvVar("BOLT_SCHEDULE_CACHE", "1", "1: a graph shaped like an earlier one reuses its schedule")
CUDA_GRAPHS_VAR = EnvVar("BOLT_CUDA_GRAPHS", "1", "1: CUDA replays a jitted step as a CUDA graph; 0: launch by launch")

ALL_VARS = (DEBUG_VAR, DEVICE_VAR, CACHE_DIR_VAR, CC_VAR, CFLAGS_VAR, THREADS_VAR, XDG_CACHE_VAR, REMOTE_TOKEN_VAR,
            REMOTE_TIMEOUT_VAR, REMOTE_TLS_VAR, REMOTE_LINK_VAR, SEARCH_VAR, NVRTC_VAR, CUDA_HOME_VAR,
            CUDA_GRAPHS_VAR, SCHEDULE_CACHE_VAR)  # fmt: skip


def debug_level() -> int:
    """The DEBUG level, read each time so tests and users can change it at run time."""
    try:
        return int(DEBUG_VAR.get() or 0)
    except ValueError:
        return 0


def default_device() -> str:
    return DEVICE_VAR.get().upper() or "CPU"


def cache_dir() -> str:
    if CACHE_DIR_VAR.get():
        return CACHE_DIR_VAR.get()
    root = XDG_CACHE_VAR.get() or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "boltgrad")


def c_compiler() -> str:
    return CC_VAR.get()


def extra_cflags() -> list[str]:
    return CFLAGS_VAR.get().split()


def cpu_threads() -> int:
    try:
        n = int(THREADS_VAR.get() or 0)
    except ValueError:
        n = 0
    return n if n > 0 else (os.cpu_count() or 1)


def remote_token() -> str:
    return REMOTE_TOKEN_VAR.get()


def remote_timeout() -> float:
    try:
        return max(float(REMOTE_TIMEOUT_VAR.get() or 3), 0.1)
    except ValueError:
        return 3.0


def remote_link() -> dict[str, float]:
    """The link model: ``latency_us`` added to every round trip (each way) and ``gbit`` of bandwidth."""
    out: dict[str, float] = {}
    for part in REMOTE_LINK_VAR.get().split(","):
        key, _, value = part.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            continue
    return out


def remote_tls() -> str:
    return REMOTE_TLS_VAR.get()


def search_width() -> int:
    """BOLT_SEARCH: 0 (or unset) keeps the heuristic's kernels; n > 0 searches with a beam of n. Read each time."""
    try:
        return max(int(SEARCH_VAR.get() or 0), 0)
    except ValueError:
        return 0


def nvrtc_library() -> str:
    return NVRTC_VAR.get()


def cuda_home() -> str:
    return CUDA_HOME_VAR.get()


def cuda_graphs() -> bool:
    """BOLT_CUDA_GRAPHS: anything but 0 (the default 1) lets a CUDA replay use a CUDA graph. Read at every replay."""
    return CUDA_GRAPHS_VAR.get().strip() != "0"


def schedule_cache() -> bool:
    """BOLT_SCHEDULE_CACHE: anything but 0 (the default 1) lets a graph reuse the schedule of an equally shaped one.
    Read at every realize."""
    return SCHEDULE_CACHE_VAR.get().strip() != "0"
